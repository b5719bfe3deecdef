//! Object records and per-suffix hashes on a device.
//!
//! - `o | part | suffix | hash` -> [`ObjectRecord`] (data or tombstone)
//! - `s | part | suffix` -> blake3 of the suffix's (name, timestamp, kind)
//!   entries, which the replicator compares between devices.
//! - `b | part | suffix | hash` -> the raw body of an inline object (a
//!   record with `inline` set).
//!
//! A record, its inline body and its suffix hash change in one batch under
//! the suffix's lock stripe: a body never outlives its record, and a
//! record never points at a body that is not there. [`DeviceDb::objects`] walks every record of the device and
//! yields errors rather than skipping them.

use super::keyspace::{Db, Durability, KeySpace};
use super::{DbError, DbResult, DeviceDb, SyncTicket};
use crate::records::{fold_link_rows, LinkOutcome, ObjectKind, ObjectRecord, PendingUpdate};
use crate::version_names::is_version_link;
use ring_tools::NameHash;
use rocksdb::{Direction, IteratorMode, WriteBatch};
use service_kit::timestamp::Timestamp;
use std::collections::BTreeMap;

const OBJECTS: KeySpace<ObjectRecord> = KeySpace::new(b'o');

/// What a POST changes of an object's metadata.
pub enum MetaChange {
    /// Swift's POST: user metadata and stored headers replaced as a whole,
    /// the expiry set, the content type changed when given; system
    /// metadata stays.
    Replace {
        headers: BTreeMap<String, String>,
        delete_at: Option<u64>,
        content_type: Option<String>,
    },
    /// System metadata items (`x-object-sysmeta-*`) set, an empty value
    /// removing one; everything else stays (S3's object tagging).
    System(BTreeMap<String, String>),
}
/// Values are raw 32-byte hashes, read and written directly.
const SUFFIX_HASHES: KeySpace<()> = KeySpace::new(b's');
/// Values are raw bodies, read and written directly.
const INLINE_BODIES: KeySpace<()> = KeySpace::new(b'b');

/// The low 12 bits of a name hash: its suffix directory (`NameHash::suffix`).
pub fn suffix_of(hash: &NameHash) -> u16 {
    (u16::from(hash.0[14] & 0x0f) << 8) | u16::from(hash.0[15])
}

fn suffix_key(part: u32, suffix: u16) -> Vec<u8> {
    SUFFIX_HASHES.key(&[&part.to_be_bytes(), &suffix.to_be_bytes()])
}

fn suffix_prefix(part: u32, suffix: u16) -> Vec<u8> {
    OBJECTS.key(&[&part.to_be_bytes(), &suffix.to_be_bytes()])
}

fn object_key(part: u32, hash: &NameHash) -> Vec<u8> {
    OBJECTS.key(&[&part.to_be_bytes(), &suffix_of(hash).to_be_bytes(), &hash.0])
}

fn body_key(part: u32, hash: &NameHash) -> Vec<u8> {
    INLINE_BODIES.key(&[&part.to_be_bytes(), &suffix_of(hash).to_be_bytes(), &hash.0])
}

/// The current record of an object that a version's write makes a link
/// to that version, in the same batch ([`DeviceDb::write_version`]).
pub struct LinkWrite<'a> {
    pub hash: NameHash,
    pub record: &'a ObjectRecord,
    /// The link's listing rows.
    pub owed: &'a [PendingUpdate],
}

/// One object record of a device, with where it lives.
#[derive(Clone, Debug)]
pub struct StoredObject {
    pub part: u32,
    pub hash: NameHash,
    pub record: ObjectRecord,
}

impl DeviceDb {
    pub fn object(&self, part: u32, hash: &NameHash) -> DbResult<Option<ObjectRecord>> {
        OBJECTS.get(&self.db, &object_key(part, hash))
    }

    /// The body of an inline object, if the device holds one.
    pub fn inline_body(&self, part: u32, hash: &NameHash) -> DbResult<Option<Vec<u8>>> {
        Ok(self.db.rocks.get(body_key(part, hash))?)
    }

    /// Stores a newer object version (data or tombstone) with the updates it
    /// owes container servers, in one synced batch, and refreshes the suffix
    /// hash. Returns the version it replaced.
    pub fn put_object(
        &self,
        part: u32,
        hash: &NameHash,
        record: &ObjectRecord,
        owed: &[PendingUpdate],
    ) -> DbResult<Option<ObjectRecord>> {
        self.put_object_with_body(part, hash, record, None, owed)
    }

    /// [`Self::put_object`] with the body of an inline record in the same
    /// batch.
    pub fn put_object_with_body(
        &self,
        part: u32,
        hash: &NameHash,
        record: &ObjectRecord,
        body: Option<&[u8]>,
        owed: &[PendingUpdate],
    ) -> DbResult<Option<ObjectRecord>> {
        let (old, ticket) = self.write_object(part, hash, record, body, owed)?;
        self.db.wait(ticket)?;
        Ok(old)
    }

    /// Writes a newer object version (with its inline body, if any) and the
    /// updates it owes, without waiting for their WAL sync: they are durable
    /// once the returned ticket is ([`DeviceDb::durable`]). Concurrent
    /// writers share that sync, so small objects cost one shared sync per
    /// device. The version it replaced may only be acted on (its file
    /// removed) once the ticket is durable.
    pub fn write_object(
        &self,
        part: u32,
        hash: &NameHash,
        record: &ObjectRecord,
        body: Option<&[u8]>,
        owed: &[PendingUpdate],
    ) -> DbResult<(Option<ObjectRecord>, SyncTicket)> {
        let (old, _, ticket) = self.write_version(part, hash, record, body, owed, None)?;
        Ok((old, ticket))
    }

    /// [`Self::write_object`] for a version, which may make its object's
    /// current record a link to it in the same batch ([`LinkWrite`]): the
    /// link is written unless the current record is as new or newer, or
    /// is a plain object (a null version, which must first be kept as a
    /// version: [`LinkOutcome::NullCurrent`]). The version is stored in
    /// every case.
    pub fn write_version(
        &self,
        part: u32,
        hash: &NameHash,
        record: &ObjectRecord,
        body: Option<&[u8]>,
        owed: &[PendingUpdate],
        link: Option<&LinkWrite<'_>>,
    ) -> DbResult<(Option<ObjectRecord>, Option<LinkOutcome>, SyncTicket)> {
        debug_assert_eq!(record.inline, body.is_some());
        let key = object_key(part, hash);
        let suffix = suffix_of(hash);
        // Both suffixes' stripes, in order (once if they share one).
        let mut stripes = vec![Db::stripe(&suffix_key(part, suffix))];
        if let Some(l) = link {
            stripes.push(Db::stripe(&suffix_key(part, suffix_of(&l.hash))));
        }
        stripes.sort_unstable();
        stripes.dedup();
        let _g: Vec<_> = stripes.iter().map(|s| self.db.lock_stripe(*s)).collect();
        let old = OBJECTS.get(&self.db, &key)?;
        if let Some(old) = &old {
            if old.timestamp >= record.timestamp {
                return Err(DbError::Conflict(old.timestamp));
            }
        }
        let mut batch = WriteBatch::default();
        let mut changed: Vec<(u16, Vec<u8>, &ObjectRecord)> = vec![(suffix, key.clone(), record)];
        Self::put_record(&mut batch, part, hash, record, body, old.as_ref());
        let outcome = match link {
            None => None,
            Some(l) => {
                let link_key = object_key(part, &l.hash);
                let current = OBJECTS.get(&self.db, &link_key)?;
                let outcome = match &current {
                    Some(c) if c.timestamp >= l.record.timestamp => LinkOutcome::Older,
                    Some(c) if c.kind == ObjectKind::Data && !is_version_link(c) => {
                        LinkOutcome::NullCurrent
                    }
                    _ => LinkOutcome::Linked,
                };
                if outcome == LinkOutcome::Linked {
                    Self::put_record(
                        &mut batch,
                        part,
                        &l.hash,
                        l.record,
                        Some(b""),
                        current.as_ref(),
                    );
                    changed.push((suffix_of(&l.hash), link_key, l.record));
                }
                Some(outcome)
            }
        };
        // The link's rows ride with the version's, one queue entry per
        // target. Reserved until the batch is written.
        let _rows = match (link, outcome) {
            (Some(l), Some(LinkOutcome::Linked)) => {
                self.queue_rows_into(&mut batch, &fold_link_rows(owed, l.owed))
            }
            _ => self.queue_rows_into(&mut batch, owed),
        };
        let mut suffixes: Vec<u16> = changed.iter().map(|c| c.0).collect();
        suffixes.dedup();
        for s in suffixes {
            let within: Vec<(&[u8], &ObjectRecord)> = changed
                .iter()
                .filter(|c| c.0 == s)
                .map(|c| (&c.1[..], c.2))
                .collect();
            let suffix_hash = self
                .suffix_hash_after(part, s, &[], &within)?
                .expect("holds the new record");
            batch.put(suffix_key(part, s), suffix_hash);
        }
        let ticket = self.db.write_unsynced(batch)?;
        Ok((old, outcome, ticket))
    }

    /// A record and its inline body (if any) into `batch`, over `old`.
    fn put_record(
        batch: &mut WriteBatch,
        part: u32,
        hash: &NameHash,
        record: &ObjectRecord,
        body: Option<&[u8]>,
        old: Option<&ObjectRecord>,
    ) {
        OBJECTS.put(batch, &object_key(part, hash), record);
        match body {
            Some(b) => batch.put(body_key(part, hash), b),
            None if old.is_some_and(|o| o.inline) => batch.delete(body_key(part, hash)),
            None => {}
        }
    }

    /// Changes an object's metadata (a POST) if `timestamp` is newer than
    /// its last metadata change.
    pub fn post_object(
        &self,
        part: u32,
        hash: &NameHash,
        timestamp: Timestamp,
        change: MetaChange,
        now_secs: u64,
    ) -> DbResult<ObjectRecord> {
        let key = object_key(part, hash);
        let _g = self.db.lock(&suffix_key(part, suffix_of(hash)));
        let mut rec = OBJECTS.get(&self.db, &key)?.ok_or(DbError::NotFound)?;
        // An expired object is gone for a POST too: changing its expiry
        // must not bring it back.
        if rec.kind == ObjectKind::Tombstone || rec.is_expired(now_secs) {
            return Err(DbError::NotFound);
        }
        if rec.meta_timestamp.max(rec.timestamp) >= timestamp {
            return Err(DbError::Conflict(rec.meta_timestamp.max(rec.timestamp)));
        }
        let system = |k: &str| k.starts_with("x-object-sysmeta-") || k == "x-static-large-object";
        match change {
            MetaChange::Replace {
                headers,
                delete_at,
                content_type,
            } => {
                // System metadata (large-object flags, S3 state) is not the
                // client's to change with a POST; user metadata is replaced
                // as a whole.
                let mut kept: BTreeMap<String, String> = rec
                    .headers
                    .iter()
                    .filter(|(k, _)| system(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                kept.extend(headers.into_iter().filter(|(k, _)| !system(k)));
                rec.headers = kept;
                rec.delete_at = delete_at;
                if let Some(t) = content_type {
                    rec.content_type = t;
                }
            }
            MetaChange::System(items) => {
                for (k, v) in items {
                    if !k.starts_with("x-object-sysmeta-") {
                        continue;
                    }
                    if v.is_empty() {
                        rec.headers.remove(&k);
                    } else {
                        rec.headers.insert(k, v);
                    }
                }
            }
        }
        rec.meta_timestamp = timestamp;
        OBJECTS.store(&self.db, &key, &rec, Durability::Grouped)?;
        Ok(rec)
    }

    /// blake3 over the suffix's entries sorted by (name, timestamp, kind),
    /// as they will be once the records under `removed` are gone and each
    /// `(key, record)` of `new` is written; `None` when the suffix would be
    /// empty.
    fn suffix_hash_after(
        &self,
        part: u32,
        suffix: u16,
        removed: &[&[u8]],
        new: &[(&[u8], &ObjectRecord)],
    ) -> DbResult<Option<[u8; 32]>> {
        let mut entries: Vec<(String, Timestamp, ObjectKind)> = OBJECTS
            .scan(&self.db, &suffix_prefix(part, suffix))?
            .into_iter()
            .filter(|(k, _)| !removed.contains(&&k[..]) && !new.iter().any(|n| n.0 == &k[..]))
            .map(|(_, rec)| (full_name(&rec), rec.timestamp, rec.kind))
            .collect();
        entries.extend(new.iter().map(|(_, p)| (full_name(p), p.timestamp, p.kind)));
        Ok((!entries.is_empty()).then(|| hash_entries(entries)))
    }

    /// The current hash of every suffix of a partition that holds objects.
    pub fn suffix_hashes(&self, part: u32) -> DbResult<Vec<(u16, [u8; 32])>> {
        let prefix = SUFFIX_HASHES.key(&[&part.to_be_bytes()]);
        let mut out = Vec::new();
        for item in self.db.rocks.prefix_iterator(&prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let (Ok(suffix), Ok(hash)) =
                (<[u8; 2]>::try_from(&k[5..]), <[u8; 32]>::try_from(&v[..]))
            else {
                return Err(DbError::Malformed(hex::encode(&k)));
            };
            out.push((u16::from_be_bytes(suffix), hash));
        }
        Ok(out)
    }

    /// Partitions that hold objects (or tombstones) on this device.
    pub fn object_partitions(&self) -> DbResult<Vec<u32>> {
        self.partitions_under(SUFFIX_HASHES.tag())
    }

    /// Distinct partitions of keys `tag | part(4) | ...`, by seeking past each.
    pub(super) fn partitions_under(&self, tag: u8) -> DbResult<Vec<u32>> {
        let mut out = Vec::new();
        let mut start = vec![tag];
        loop {
            let mut iter = self
                .db
                .rocks
                .iterator(IteratorMode::From(&start, Direction::Forward));
            let Some(item) = iter.next() else { break };
            let (k, _) = item?;
            if k.first() != Some(&tag) || k.len() < 5 {
                break;
            }
            let part = u32::from_be_bytes([k[1], k[2], k[3], k[4]]);
            out.push(part);
            match part.checked_add(1) {
                Some(next) => {
                    start = vec![tag];
                    start.extend_from_slice(&next.to_be_bytes());
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Every object record in one suffix of a partition, with its name hash.
    pub fn objects_in_suffix(
        &self,
        part: u32,
        suffix: u16,
    ) -> DbResult<Vec<(NameHash, ObjectRecord)>> {
        let prefix = suffix_prefix(part, suffix);
        OBJECTS
            .scan(&self.db, &prefix)?
            .into_iter()
            .map(|(k, rec)| {
                let hash = <[u8; 16]>::try_from(&k[prefix.len()..])
                    .map_err(|_| DbError::Malformed(hex::encode(&k)))?;
                Ok((NameHash(hash), rec))
            })
            .collect()
    }

    /// Every object record of the device (tombstones too), suffix by
    /// suffix. A read that fails is yielded as an error, and the walk goes
    /// on with the next suffix.
    pub fn objects(&self) -> DeviceObjects<'_> {
        DeviceObjects {
            db: self,
            parts: None,
            suffixes: Vec::new().into_iter(),
            records: Vec::new().into_iter(),
        }
    }

    /// Forgets a partition's objects (after a handoff has pushed them to
    /// their primaries). Returns the records removed, so their files can go.
    pub fn remove_object_partition(&self, part: u32) -> DbResult<Vec<(NameHash, ObjectRecord)>> {
        let mut removed = Vec::new();
        let mut batch = WriteBatch::default();
        for (suffix, _) in self.suffix_hashes(part)? {
            let _g = self.db.lock(&suffix_key(part, suffix));
            for (hash, rec) in self.objects_in_suffix(part, suffix)? {
                batch.delete(object_key(part, &hash));
                if rec.inline {
                    batch.delete(body_key(part, &hash));
                }
                removed.push((hash, rec));
            }
            batch.delete(suffix_key(part, suffix));
        }
        self.db.write(batch, Durability::Synced)?;
        Ok(removed)
    }

    /// Removes one object's record (the auditor found its file bad, or a
    /// tombstone is old enough to reclaim) if it is still the version seen,
    /// so the replicator sees it missing and restores it from another
    /// replica.
    pub fn forget_object(&self, part: u32, hash: &NameHash, seen: Timestamp) -> DbResult<bool> {
        let key = object_key(part, hash);
        let suffix = suffix_of(hash);
        let _g = self.db.lock(&suffix_key(part, suffix));
        match OBJECTS.get(&self.db, &key)? {
            Some(rec) if rec.timestamp == seen => {
                let mut batch = WriteBatch::default();
                batch.delete(&key);
                if rec.inline {
                    batch.delete(body_key(part, hash));
                }
                match self.suffix_hash_after(part, suffix, &[&key[..]], &[])? {
                    Some(h) => batch.put(suffix_key(part, suffix), h),
                    None => batch.delete(suffix_key(part, suffix)),
                }
                self.db.write(batch, Durability::Synced)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// The walk of [`DeviceDb::objects`].
pub struct DeviceObjects<'a> {
    db: &'a DeviceDb,
    /// `None` until the partitions are read.
    parts: Option<std::vec::IntoIter<u32>>,
    suffixes: std::vec::IntoIter<(u32, u16)>,
    records: std::vec::IntoIter<StoredObject>,
}

impl Iterator for DeviceObjects<'_> {
    type Item = DbResult<StoredObject>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.records.next() {
                return Some(Ok(r));
            }
            if let Some((part, suffix)) = self.suffixes.next() {
                match self.db.objects_in_suffix(part, suffix) {
                    Ok(records) => {
                        self.records = records
                            .into_iter()
                            .map(|(hash, record)| StoredObject { part, hash, record })
                            .collect::<Vec<_>>()
                            .into_iter();
                    }
                    Err(e) => return Some(Err(e)),
                }
                continue;
            }
            let parts = match &mut self.parts {
                Some(p) => p,
                None => match self.db.object_partitions() {
                    Ok(p) => self.parts.insert(p.into_iter()),
                    Err(e) => {
                        self.parts = Some(Vec::new().into_iter());
                        return Some(Err(e));
                    }
                },
            };
            let part = parts.next()?;
            match self.db.suffix_hashes(part) {
                Ok(s) => {
                    self.suffixes = s
                        .into_iter()
                        .map(|(suffix, _)| (part, suffix))
                        .collect::<Vec<_>>()
                        .into_iter();
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// blake3 over (name, timestamp, kind) entries sorted by name: equal on two
/// devices exactly when they hold the same versions.
fn hash_entries(mut entries: Vec<(String, Timestamp, ObjectKind)>) -> [u8; 32] {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = blake3::Hasher::new();
    for (name, ts, kind) in entries {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&ts.0.to_le_bytes());
        h.update(&[kind as u8]);
    }
    *h.finalize().as_bytes()
}

fn full_name(r: &ObjectRecord) -> String {
    format!("/{}/{}/{}", r.account, r.container, r.object)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hash_of, open, record};
    use super::*;

    #[test]
    fn newer_versions_win_and_suffix_hashes_follow() {
        let (_dir, db) = open();
        let h = hash_of("x");
        assert!(db
            .put_object(3, &h, &record("x", 10, ObjectKind::Data), &[])
            .unwrap()
            .is_none());
        let first = db.suffix_hashes(3).unwrap();
        assert_eq!(first.len(), 1);
        assert!(matches!(
            db.put_object(3, &h, &record("x", 10, ObjectKind::Data), &[]),
            Err(DbError::Conflict(_))
        ));
        let old = db
            .put_object(3, &h, &record("x", 20, ObjectKind::Tombstone), &[])
            .unwrap();
        assert_eq!(old.unwrap().timestamp, Timestamp(10));
        assert_ne!(db.suffix_hashes(3).unwrap(), first);
        assert!(
            !db.forget_object(3, &h, Timestamp(10)).unwrap(),
            "not the version seen"
        );
        assert!(db.forget_object(3, &h, Timestamp(20)).unwrap());
        assert!(db.suffix_hashes(3).unwrap().is_empty());
        assert_eq!(db.object_partitions().unwrap(), Vec::<u32>::new());
    }

    /// The suffix hash a device would have with only these records, each
    /// written on its own.
    fn hashes_of(records: &[(&NameHash, &ObjectRecord, Option<&[u8]>)]) -> Vec<(u16, [u8; 32])> {
        let (_dir, db) = open();
        for (h, r, b) in records {
            db.put_object_with_body(3, h, r, *b, &[]).unwrap();
        }
        db.suffix_hashes(3).unwrap()
    }

    /// A version's rows and its link's are queued as one entry per
    /// container device when the link is written, and the version's alone
    /// when it is not.
    #[test]
    fn a_linked_versions_rows_share_queue_entries() {
        use crate::records::{ObjectRow, Target, Update};
        let (_dir, db) = open();
        let owed = |container: &str, object: &str, ts: u64, device: &str| PendingUpdate {
            target: Target {
                addr: "127.0.0.1:1".into(),
                device: device.into(),
                partition: 9,
            },
            update: Update::ObjectRow {
                account: "a".into(),
                container: container.into(),
                object: object.into(),
                row: ObjectRow {
                    timestamp: Timestamp(ts),
                    deleted: false,
                    size: 4,
                    etag: String::new(),
                    content_type: String::new(),
                },
                link: None,
            },
            immediate: true,
        };
        let write = |name: &str, ts: u64| {
            let mut version = record(name, ts, ObjectKind::Data);
            version.inline = true;
            let mut link = record("obj", ts, ObjectKind::Data);
            link.headers
                .insert(crate::version_names::LINK_MARK.into(), "1".into());
            let version_rows = [owed("v", name, ts, "d1"), owed("v", name, ts, "d2")];
            let link_rows = [owed("c", "obj", ts, "d1"), owed("c", "obj", ts, "d2")];
            let w = LinkWrite {
                hash: hash_of("obj"),
                record: &link,
                owed: &link_rows,
            };
            db.write_version(
                3,
                &hash_of(name),
                &version,
                Some(b"body"),
                &version_rows,
                Some(&w),
            )
            .map(|(_, outcome, _)| outcome)
            .unwrap()
        };
        let links = |from: usize| -> Vec<Option<String>> {
            let queued = db.queued(&DeviceDb::rows_start(), 100).unwrap();
            queued[from..]
                .iter()
                .map(|(_, u)| match &u.update {
                    Update::ObjectRow { link, .. } => link.as_ref().map(|l| l.object.clone()),
                    Update::ContainerRow { .. } => panic!("only rows are queued"),
                })
                .collect()
        };
        assert_eq!(write("v2", 20), Some(LinkOutcome::Linked));
        assert_eq!(links(0), vec![Some("obj".to_string()); 2]);
        assert_eq!(write("v1", 10), Some(LinkOutcome::Older));
        assert_eq!(links(2), vec![None, None], "no link, no link row");
        let queued = db.queued(&DeviceDb::rows_start(), 100).unwrap();
        assert!(db.rows_floor() > queued[3].0, "nothing is still reserved");
    }

    #[test]
    fn a_version_and_its_link_are_written_together_unless_something_newer_or_null_is_current() {
        let (_dir, db) = open();
        let version = |name: &str, ts| {
            let mut r = record(name, ts, ObjectKind::Data);
            r.inline = true;
            r
        };
        let link = |ts| {
            let mut r = version("obj", ts);
            r.headers
                .insert(crate::version_names::LINK_MARK.into(), "1".into());
            r
        };
        let (v1, v2, v3, obj) = (hash_of("v1"), hash_of("v2"), hash_of("v3"), hash_of("obj"));
        let write = |h: &NameHash, r: &ObjectRecord, l: &ObjectRecord| {
            let w = LinkWrite {
                hash: obj,
                record: l,
                owed: &[],
            };
            db.write_version(3, h, r, Some(b"body"), &[], Some(&w))
                .map(|(_, outcome, _)| outcome)
        };
        // Nothing current: linked, both records and the suffix hashes as
        // if each had been written alone.
        assert_eq!(
            write(&v2, &version("v2", 20), &link(20)).unwrap(),
            Some(LinkOutcome::Linked)
        );
        assert_eq!(
            db.object(3, &obj).unwrap().unwrap().timestamp,
            Timestamp(20)
        );
        assert_eq!(db.inline_body(3, &obj).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(
            db.suffix_hashes(3).unwrap(),
            hashes_of(&[
                (&v2, &version("v2", 20), Some(b"body")),
                (&obj, &link(20), Some(b"")),
            ])
        );
        // An older version is stored, its link is not.
        assert_eq!(
            write(&v1, &version("v1", 10), &link(10)).unwrap(),
            Some(LinkOutcome::Older)
        );
        assert!(db.object(3, &v1).unwrap().is_some());
        assert_eq!(
            db.object(3, &obj).unwrap().unwrap().timestamp,
            Timestamp(20)
        );
        // A plain object current (the null version) is never replaced.
        db.put_object_with_body(3, &obj, &version("obj", 25), Some(b"null"), &[])
            .unwrap();
        assert_eq!(
            write(&v3, &version("v3", 30), &link(30)).unwrap(),
            Some(LinkOutcome::NullCurrent)
        );
        assert!(db.object(3, &v3).unwrap().is_some());
        assert_eq!(
            db.inline_body(3, &obj).unwrap().as_deref(),
            Some(&b"null"[..])
        );
        // A version older than one stored under its own name conflicts,
        // and nothing is written.
        assert!(matches!(
            write(&v3, &version("v3", 30), &link(31)),
            Err(DbError::Conflict(_))
        ));
        assert_eq!(
            db.object(3, &obj).unwrap().unwrap().timestamp,
            Timestamp(25)
        );
    }

    #[test]
    fn an_inline_body_lives_and_goes_with_its_record() {
        let (_dir, db) = open();
        let h = hash_of("small");
        let mut rec = record("small", 10, ObjectKind::Data);
        rec.inline = true;
        db.put_object_with_body(2, &h, &rec, Some(b"tiny body"), &[])
            .unwrap();
        assert_eq!(
            db.inline_body(2, &h).unwrap().as_deref(),
            Some(&b"tiny body"[..])
        );
        // An older inline write loses, and leaves the body alone.
        let mut older = rec.clone();
        older.timestamp = Timestamp(5);
        assert!(db
            .put_object_with_body(2, &h, &older, Some(b"old"), &[])
            .is_err());
        assert_eq!(
            db.inline_body(2, &h).unwrap().as_deref(),
            Some(&b"tiny body"[..])
        );
        // Replaced by a file-backed version or a tombstone: the body goes.
        db.put_object(2, &h, &record("small", 20, ObjectKind::Tombstone), &[])
            .unwrap();
        assert_eq!(db.inline_body(2, &h).unwrap(), None);
        // Forgotten (quarantine) or moved off (handoff): the body goes too.
        rec.timestamp = Timestamp(30);
        db.put_object_with_body(2, &h, &rec, Some(b"again"), &[])
            .unwrap();
        assert!(db.forget_object(2, &h, Timestamp(30)).unwrap());
        assert_eq!(db.inline_body(2, &h).unwrap(), None);
        rec.timestamp = Timestamp(40);
        db.put_object_with_body(2, &h, &rec, Some(b"moved"), &[])
            .unwrap();
        assert_eq!(db.remove_object_partition(2).unwrap().len(), 1);
        assert_eq!(db.inline_body(2, &h).unwrap(), None);
    }

    #[test]
    fn posts_keep_system_metadata_and_refuse_older_times() {
        let (_dir, db) = open();
        let h = hash_of("x");
        let mut rec = record("x", 10, ObjectKind::Data);
        rec.headers
            .insert("x-object-sysmeta-slo-etag".into(), "e".into());
        rec.headers.insert("x-object-meta-a".into(), "1".into());
        db.put_object(1, &h, &rec, &[]).unwrap();
        let mut new = BTreeMap::new();
        new.insert("x-object-meta-b".to_string(), "2".to_string());
        new.insert(
            "x-object-sysmeta-slo-etag".to_string(),
            "forged".to_string(),
        );
        let after = db
            .post_object(
                1,
                &h,
                Timestamp(11),
                MetaChange::Replace {
                    headers: new.clone(),
                    delete_at: None,
                    content_type: Some("text/new".into()),
                },
                0,
            )
            .unwrap();
        assert_eq!(after.content_type, "text/new");
        assert_eq!(after.headers["x-object-sysmeta-slo-etag"], "e");
        assert_eq!(after.headers["x-object-meta-b"], "2");
        assert!(!after.headers.contains_key("x-object-meta-a"));
        assert!(matches!(
            db.post_object(
                1,
                &h,
                Timestamp(11),
                MetaChange::Replace {
                    headers: new.clone(),
                    delete_at: None,
                    content_type: None,
                },
                0,
            ),
            Err(DbError::Conflict(_))
        ));
        // Once expired, a POST finds nothing and changes nothing.
        let expiring = MetaChange::Replace {
            headers: new.clone(),
            delete_at: Some(100),
            content_type: None,
        };
        db.post_object(1, &h, Timestamp(12), expiring, 0).unwrap();
        let revive = MetaChange::Replace {
            headers: new,
            delete_at: None,
            content_type: None,
        };
        assert!(matches!(
            db.post_object(1, &h, Timestamp(13), revive, 101),
            Err(DbError::NotFound)
        ));
    }

    #[test]
    fn the_device_walk_sees_every_record_and_reports_corruption() {
        let (_dir, db) = open();
        for (i, part) in [(0, 1u32), (1, 1), (2, 9), (3, 400)] {
            let name = format!("o{i}");
            db.put_object(
                part,
                &hash_of(&name),
                &record(&name, 5, ObjectKind::Data),
                &[],
            )
            .unwrap();
        }
        let mut seen: Vec<(u32, String)> = db
            .objects()
            .map(|o| o.map(|o| (o.part, o.record.object)))
            .collect::<DbResult<_>>()
            .unwrap();
        seen.sort();
        assert_eq!(
            seen,
            [
                (1, "o0".into()),
                (1, "o1".into()),
                (9, "o2".into()),
                (400, "o3".into())
            ]
        );
        // A record that does not parse is reported, and the walk goes on.
        let bad = object_key(9, &hash_of("o2"));
        db.db.rocks.put(&bad, b"not json").unwrap();
        let items: Vec<_> = db.objects().collect();
        assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
        assert_eq!(items.iter().filter(|i| i.is_ok()).count(), 3);
    }
}
