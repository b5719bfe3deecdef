//! Container and account listings on a device.
//!
//! - `c | part | hash` -> [`ContainerRecord`] (timestamps, metadata, counts)
//! - `r | container hash | object name` -> [`ObjectRow`]
//! - `a | part | hash` -> [`AccountRecord`]
//! - `R | account hash | container name` -> [`ContainerRow`]
//!
//! A row and its parent's counters change in one batch under the parent's
//! lock stripe. [`list`] is Swift's listing over any of the row spaces.

use super::keyspace::{Db, Durability, KeySpace};
use super::{DbError, DbResult, DeviceDb};
use crate::records::{
    merge_meta, AccountRecord, ContainerRecord, ContainerRow, MetaMap, ObjectRow,
};
use ring_tools::NameHash;
use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::de::DeserializeOwned;
use serde::Serialize;
use service_kit::timestamp::Timestamp;
use std::collections::HashMap;

/// One object row to apply to its container's listing.
pub struct RowToApply<'a> {
    pub part: u32,
    pub container_hash: NameHash,
    pub account: &'a str,
    pub container: &'a str,
    pub object: &'a str,
    pub row: &'a ObjectRow,
}

/// How many of another replica's rows are merged in one write.
const MERGE_BATCH: usize = 512;

const CONTAINERS: KeySpace<ContainerRecord> = KeySpace::new(b'c');
const OBJECT_ROWS: KeySpace<ObjectRow> = KeySpace::new(b'r');
const ACCOUNTS: KeySpace<AccountRecord> = KeySpace::new(b'a');
const CONTAINER_ROWS: KeySpace<ContainerRow> = KeySpace::new(b'R');

fn record_key<V>(space: &KeySpace<V>, part: u32, hash: &NameHash) -> Vec<u8> {
    space.key(&[&part.to_be_bytes(), &hash.0])
}

fn row_key<V>(space: &KeySpace<V>, parent: &NameHash, name: &str) -> Vec<u8> {
    space.key(&[&parent.0, name.as_bytes()])
}

/// What a listing asks for (Swift's query parameters, already validated).
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub prefix: String,
    /// Names with this after the prefix are grouped into one `subdir`
    /// (any length, as Swift and S3 allow).
    pub delimiter: Option<String>,
    /// Swift's `path=`: names one level under the prefix only; deeper
    /// names are skipped rather than grouped, and the prefix's own name
    /// is left out.
    pub path_only: bool,
    pub marker: String,
    pub end_marker: String,
    pub limit: usize,
    pub reverse: bool,
}

/// One listing entry: a row, or a `subdir` that groups rows under a delimiter.
#[derive(Clone, Debug, PartialEq)]
pub enum Listed<R> {
    Row(String, R),
    Subdir(String),
}

/// A page of a listing.
pub type Page<R> = DbResult<Vec<Listed<R>>>;

/// Which listings: containers (rows are objects) or accounts (rows are
/// containers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ListingKind {
    Containers,
    Accounts,
}

/// Another replica's container or account: its record and every row.
#[derive(Clone, Debug)]
pub enum Replica {
    Container(ContainerRecord, Vec<(String, ObjectRow)>),
    Account(AccountRecord, Vec<(String, ContainerRow)>),
}

/// A change to a container record.
pub enum ContainerChange {
    Put(Timestamp, MetaMap),
    Post(MetaMap),
    Delete(Timestamp),
}

/// The name hashes of the records `tag | part | hash` of a partition.
fn names_in_partition<V: Serialize + DeserializeOwned>(
    db: &Db,
    space: &KeySpace<V>,
    part: u32,
) -> DbResult<Vec<NameHash>> {
    space
        .keys(db, &space.key(&[&part.to_be_bytes()]))?
        .into_iter()
        .map(|k| {
            <[u8; 16]>::try_from(&k[5..])
                .map(NameHash)
                .map_err(|_| DbError::Malformed(hex::encode(&k)))
        })
        .collect()
}

/// Rows `tag | parent hash | name`, deleted ones included.
fn rows_of<V: Serialize + DeserializeOwned>(
    db: &Db,
    space: &KeySpace<V>,
    parent: &NameHash,
) -> DbResult<Vec<(String, V)>> {
    let prefix = space.key(&[&parent.0]);
    Ok(space
        .scan(db, &prefix)?
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k[prefix.len()..]).into_owned(), v))
        .collect())
}

/// Swift listing semantics over the rows of `parent` in `space`: prefix,
/// delimiter (rows grouped into `subdir`s), marker / end_marker
/// (exclusive), limit and reverse; rows `visible` rejects are skipped.
pub fn list<R: Serialize + DeserializeOwned>(
    db: &Db,
    space: &KeySpace<R>,
    parent: &NameHash,
    p: &ListParams,
    visible: impl Fn(&R) -> bool,
) -> Page<R> {
    let prefix_key = space.key(&[&parent.0]);
    let key_of = |name: &str| {
        let mut k = prefix_key.clone();
        k.extend_from_slice(name.as_bytes());
        k
    };
    let mut out = Vec::new();
    if p.limit == 0 {
        return Ok(out);
    }
    // Where to start: after the marker (or before it, in reverse) and
    // inside the prefix.
    let mut start = if p.reverse {
        // Keys below this bound, inclusive of everything under the prefix.
        let mut upper = key_of(&p.prefix);
        upper.extend_from_slice(&[0xff; 8]);
        if !p.marker.is_empty() && key_of(&p.marker) < upper {
            upper = key_of(&p.marker);
        }
        upper
    } else {
        let lower = key_of(&p.prefix);
        if !p.marker.is_empty() && key_of(&p.marker) >= lower {
            let mut m = key_of(&p.marker);
            m.push(0); // strictly after the marker
            m
        } else {
            lower
        }
    };
    loop {
        let mode = if p.reverse {
            IteratorMode::From(&start, Direction::Reverse)
        } else {
            IteratorMode::From(&start, Direction::Forward)
        };
        let mut jumped = false;
        for item in db.rocks.iterator(mode) {
            let (k, v) = item?;
            if p.reverse && k[..] >= start[..] {
                continue; // seek_for_prev is inclusive; the bound is not
            }
            if !k.starts_with(&prefix_key) {
                return Ok(out);
            }
            let name = String::from_utf8_lossy(&k[prefix_key.len()..]).into_owned();
            if !name.starts_with(&p.prefix) {
                return Ok(out);
            }
            if !p.end_marker.is_empty() {
                let past = if p.reverse {
                    name <= p.end_marker
                } else {
                    name >= p.end_marker
                };
                if past {
                    return Ok(out);
                }
            }
            if p.path_only && name == p.prefix {
                continue;
            }
            if let Some(d) = p.delimiter.as_deref().filter(|d| !d.is_empty()) {
                if let Some(i) = name[p.prefix.len()..].find(d) {
                    let subdir = name[..p.prefix.len() + i + d.len()].to_string();
                    let is_marker_row = p.path_only && subdir == name;
                    // As Swift: a subdir equal to the marker was the
                    // last entry of the previous page.
                    if !is_marker_row {
                        if !p.path_only && p.marker != subdir {
                            out.push(Listed::Subdir(subdir.clone()));
                            if out.len() >= p.limit {
                                return Ok(out);
                            }
                        }
                        // Jump over everything under the subdir.
                        start = if p.reverse {
                            key_of(&subdir)
                        } else {
                            let mut s = key_of(&subdir);
                            s.extend_from_slice(&[0xff; 8]);
                            s
                        };
                        jumped = true;
                        break;
                    }
                }
            }
            let row = space.decode(&k, &v)?;
            if visible(&row) {
                out.push(Listed::Row(name, row));
                if out.len() >= p.limit {
                    return Ok(out);
                }
            }
        }
        if !jumped {
            return Ok(out);
        }
    }
}

impl DeviceDb {
    /// Partitions that hold listings of a kind on this device.
    pub fn listing_partitions(&self, kind: ListingKind) -> DbResult<Vec<u32>> {
        self.partitions_under(match kind {
            ListingKind::Containers => CONTAINERS.tag(),
            ListingKind::Accounts => ACCOUNTS.tag(),
        })
    }

    /// The name hashes of a partition's containers or accounts.
    pub fn listing_names(&self, kind: ListingKind, part: u32) -> DbResult<Vec<NameHash>> {
        match kind {
            ListingKind::Containers => names_in_partition(&self.db, &CONTAINERS, part),
            ListingKind::Accounts => names_in_partition(&self.db, &ACCOUNTS, part),
        }
    }

    // ---- containers ----

    pub fn container(&self, part: u32, hash: &NameHash) -> DbResult<Option<ContainerRecord>> {
        CONTAINERS.get(&self.db, &record_key(&CONTAINERS, part, hash))
    }

    fn container_or_new(
        &self,
        key: &[u8],
        account: &str,
        container: &str,
    ) -> DbResult<ContainerRecord> {
        Ok(CONTAINERS
            .get(&self.db, key)?
            .unwrap_or_else(|| ContainerRecord {
                account: account.to_string(),
                container: container.to_string(),
                ..Default::default()
            }))
    }

    /// Every listing row of a container, deleted ones included.
    pub fn container_rows(&self, container_hash: &NameHash) -> DbResult<Vec<(String, ObjectRow)>> {
        rows_of(&self.db, &OBJECT_ROWS, container_hash)
    }

    /// Creates or updates a container record: put/delete timestamps and
    /// metadata merge newest-wins. Deleting a non-empty container is refused.
    /// Returns the record after the change.
    pub fn update_container(
        &self,
        part: u32,
        hash: &NameHash,
        account: &str,
        container: &str,
        change: ContainerChange,
    ) -> DbResult<ContainerRecord> {
        let key = record_key(&CONTAINERS, part, hash);
        let _g = self.db.lock(&key);
        let mut rec = self.container_or_new(&key, account, container)?;
        match change {
            ContainerChange::Put(ts, meta) => {
                rec.put_timestamp = rec.put_timestamp.max(ts);
                merge_meta(&mut rec.meta, &meta);
            }
            ContainerChange::Post(meta) => {
                if !rec.exists() {
                    return Err(DbError::NotFound);
                }
                merge_meta(&mut rec.meta, &meta);
            }
            ContainerChange::Delete(ts) => {
                if !rec.exists() {
                    return Err(DbError::NotFound);
                }
                if rec.object_count > 0 {
                    return Err(DbError::NotEmpty);
                }
                if ts <= rec.put_timestamp {
                    return Err(DbError::Conflict(rec.put_timestamp));
                }
                rec.delete_timestamp = ts;
                rec.meta.clear();
            }
        }
        CONTAINERS.store(&self.db, &key, &rec, Durability::Synced)?;
        Ok(rec)
    }

    /// Applies one object row ([`Self::apply_object_rows`]).
    #[cfg(test)]
    pub fn apply_object_row(
        &self,
        part: u32,
        container_hash: &NameHash,
        account: &str,
        container: &str,
        object: &str,
        row: &ObjectRow,
    ) -> DbResult<Option<ContainerRecord>> {
        let one = RowToApply {
            part,
            container_hash: *container_hash,
            account,
            container,
            object,
            row,
        };
        Ok(self.apply_object_rows(&[one])?.into_iter().next())
    }

    /// Applies object rows where newer than the container's (a row as new
    /// or older changes nothing), with each container's counters, in one
    /// batch under the containers' lock stripes (not synced: the caller
    /// asks for a sync point). Returns the records of the containers that
    /// changed, once each, whose stats are now owed to their account.
    pub fn apply_object_rows(&self, rows: &[RowToApply<'_>]) -> DbResult<Vec<ContainerRecord>> {
        let ckeys: Vec<Vec<u8>> = rows
            .iter()
            .map(|r| record_key(&CONTAINERS, r.part, &r.container_hash))
            .collect();
        // Every stripe at once, in ascending order (as every taker of
        // several does), so that two batches cannot deadlock.
        let mut stripes: Vec<usize> = ckeys.iter().map(|k| Db::stripe(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _g: Vec<_> = stripes.iter().map(|s| self.db.lock_stripe(*s)).collect();
        // What this batch has changed so far: a row may come twice.
        let mut records: Vec<(Vec<u8>, ContainerRecord)> = Vec::new();
        let mut record_of: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut written: HashMap<Vec<u8>, ObjectRow> = HashMap::new();
        let mut batch = WriteBatch::default();
        for (r, ckey) in rows.iter().zip(ckeys) {
            let rkey = row_key(&OBJECT_ROWS, &r.container_hash, r.object);
            let old = match written.get(&rkey) {
                Some(w) => Some(w.clone()),
                None => OBJECT_ROWS.get(&self.db, &rkey)?,
            };
            if old.as_ref().is_some_and(|o| o.timestamp >= r.row.timestamp) {
                continue;
            }
            let i = match record_of.get(&ckey) {
                Some(i) => *i,
                None => {
                    let rec = self.container_or_new(&ckey, r.account, r.container)?;
                    record_of.insert(ckey.clone(), records.len());
                    records.push((ckey, rec));
                    records.len() - 1
                }
            };
            let rec = &mut records[i].1;
            if let Some(o) = old.as_ref().filter(|o| !o.deleted) {
                rec.object_count = rec.object_count.saturating_sub(1);
                rec.bytes_used = rec.bytes_used.saturating_sub(o.size);
            }
            if !r.row.deleted {
                rec.object_count += 1;
                rec.bytes_used += r.row.size;
            }
            OBJECT_ROWS.put(&mut batch, &rkey, r.row);
            written.insert(rkey, r.row.clone());
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        for (ckey, rec) in &records {
            CONTAINERS.put(&mut batch, ckey, rec);
        }
        self.db.write(batch, Durability::Deferred)?;
        Ok(records.into_iter().map(|(_, rec)| rec).collect())
    }

    /// A page of a container's objects.
    pub fn list_objects(&self, container: &NameHash, p: &ListParams) -> Page<ObjectRow> {
        list(&self.db, &OBJECT_ROWS, container, p, |r| !r.deleted)
    }

    /// A digest of a container's or account's state (timestamps,
    /// metadata, rows): two replicas with equal digests need no sync.
    pub fn listing_digest(
        &self,
        kind: ListingKind,
        part: u32,
        hash: &NameHash,
    ) -> DbResult<Option<String>> {
        let mut h = blake3::Hasher::new();
        // (name, timestamp, deleted flag where rows have one)
        let rows: Vec<(String, Timestamp, Option<bool>)> = match kind {
            ListingKind::Containers => {
                let Some(rec) = self.container(part, hash)? else {
                    return Ok(None);
                };
                h.update(&rec.put_timestamp.0.to_le_bytes());
                h.update(&rec.delete_timestamp.0.to_le_bytes());
                h.update(&serde_json::to_vec(&rec.meta).expect("json"));
                let rows = self.container_rows(hash)?.into_iter();
                rows.map(|(n, r)| (n, r.timestamp, Some(r.deleted)))
                    .collect()
            }
            ListingKind::Accounts => {
                let Some(rec) = self.account(part, hash)? else {
                    return Ok(None);
                };
                h.update(&rec.put_timestamp.0.to_le_bytes());
                h.update(&serde_json::to_vec(&rec.meta).expect("json"));
                let rows = self.account_rows(hash)?.into_iter();
                rows.map(|(n, r)| (n, r.stats_timestamp, None)).collect()
            }
        };
        for (name, ts, deleted) in rows {
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(&ts.0.to_le_bytes());
            if let Some(d) = deleted {
                h.update(&[d as u8]);
            }
        }
        Ok(Some(h.finalize().to_hex().to_string()))
    }

    /// Merges another replica's container or account. A container's
    /// timestamps and metadata merge newest-wins, its rows newest-wins
    /// (counters follow the rows), with one WAL sync; an account's metadata
    /// merges per key and its container rows by newest stats (totals
    /// follow the rows).
    pub fn merge_replica(&self, part: u32, hash: &NameHash, theirs: &Replica) -> DbResult<()> {
        match theirs {
            Replica::Container(record, rows) => {
                // In batches as the container server applies rows: one
                // write, each container's counters once, per batch.
                for chunk in rows.chunks(MERGE_BATCH) {
                    let batch: Vec<RowToApply<'_>> = chunk
                        .iter()
                        .map(|(name, row)| RowToApply {
                            part,
                            container_hash: *hash,
                            account: &record.account,
                            container: &record.container,
                            object: name,
                            row,
                        })
                        .collect();
                    self.apply_object_rows(&batch)?;
                }
                let key = record_key(&CONTAINERS, part, hash);
                {
                    let _g = self.db.lock(&key);
                    let mut rec =
                        self.container_or_new(&key, &record.account, &record.container)?;
                    rec.put_timestamp = rec.put_timestamp.max(record.put_timestamp);
                    rec.delete_timestamp = rec.delete_timestamp.max(record.delete_timestamp);
                    merge_meta(&mut rec.meta, &record.meta);
                    CONTAINERS.store(&self.db, &key, &rec, Durability::Deferred)?;
                }
                self.sync()
            }
            Replica::Account(record, rows) => {
                for (name, row) in rows {
                    self.apply_container_row(part, hash, &record.account, name, row)?;
                }
                let put = (record.put_timestamp > Timestamp::ZERO).then_some(record.put_timestamp);
                self.update_account(part, hash, &record.account, put, &record.meta)?;
                Ok(())
            }
        }
    }

    /// Forgets a container or account replica (a handoff's, once the
    /// primaries have it): the record and all its rows.
    pub fn remove_replica(&self, kind: ListingKind, part: u32, hash: &NameHash) -> DbResult<()> {
        match kind {
            ListingKind::Containers => self.remove_listing(&CONTAINERS, &OBJECT_ROWS, part, hash),
            ListingKind::Accounts => self.remove_listing(&ACCOUNTS, &CONTAINER_ROWS, part, hash),
        }
    }

    /// Deletes a record and all its rows (a handoff's replica, once pushed).
    fn remove_listing<R, W>(
        &self,
        records: &KeySpace<R>,
        rows: &KeySpace<W>,
        part: u32,
        hash: &NameHash,
    ) -> DbResult<()>
    where
        W: Serialize + DeserializeOwned,
    {
        let mut batch = WriteBatch::default();
        for k in rows.keys(&self.db, &rows.key(&[&hash.0]))? {
            batch.delete(&k);
        }
        batch.delete(record_key(records, part, hash));
        self.db.write(batch, Durability::Synced)
    }

    /// Deletes the rows under a container that `old` selects, then the
    /// container if it is deleted, `old` too, and has no rows left; counts
    /// (rows, containers) removed. The container's lock is held throughout,
    /// so no newer row slips in between.
    pub(super) fn reclaim_container(
        &self,
        part: u32,
        hash: &NameHash,
        cutoff: Timestamp,
    ) -> DbResult<(u64, u64)> {
        let key = record_key(&CONTAINERS, part, hash);
        let _g = self.db.lock(&key);
        let rows = self.reclaim_rows(&OBJECT_ROWS, hash, |r| r.deleted && r.timestamp < cutoff)?;
        if let Some(rec) = CONTAINERS.get(&self.db, &key)? {
            if !rec.exists()
                && rec.delete_timestamp < cutoff
                && OBJECT_ROWS
                    .keys(&self.db, &OBJECT_ROWS.key(&[&hash.0]))?
                    .is_empty()
            {
                let mut batch = WriteBatch::default();
                batch.delete(&key);
                self.db.write(batch, Durability::Synced)?;
                return Ok((rows, 1));
            }
        }
        Ok((rows, 0))
    }

    /// Deletes an account's container rows that are deleted and older than
    /// `cutoff`; how many.
    pub(super) fn reclaim_account(
        &self,
        part: u32,
        hash: &NameHash,
        cutoff: Timestamp,
    ) -> DbResult<u64> {
        let _g = self.db.lock(&record_key(&ACCOUNTS, part, hash));
        self.reclaim_rows(&CONTAINER_ROWS, hash, |r| {
            !r.exists() && r.delete_timestamp < cutoff && r.stats_timestamp < cutoff
        })
    }

    /// Deletes the rows under a parent that `old` selects; the caller holds
    /// the parent's lock.
    fn reclaim_rows<V: Serialize + DeserializeOwned>(
        &self,
        space: &KeySpace<V>,
        parent: &NameHash,
        old: impl Fn(&V) -> bool,
    ) -> DbResult<u64> {
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for (k, v) in space.scan(&self.db, &space.key(&[&parent.0]))? {
            if old(&v) {
                batch.delete(&k);
                n += 1;
            }
        }
        if n > 0 {
            self.db.write(batch, Durability::Synced)?;
        }
        Ok(n)
    }

    // ---- accounts ----

    pub fn account(&self, part: u32, hash: &NameHash) -> DbResult<Option<AccountRecord>> {
        ACCOUNTS.get(&self.db, &record_key(&ACCOUNTS, part, hash))
    }

    fn account_or_new(&self, key: &[u8], account: &str) -> DbResult<AccountRecord> {
        Ok(ACCOUNTS
            .get(&self.db, key)?
            .unwrap_or_else(|| AccountRecord {
                account: account.to_string(),
                ..Default::default()
            }))
    }

    pub fn update_account(
        &self,
        part: u32,
        hash: &NameHash,
        account: &str,
        put: Option<Timestamp>,
        meta: &MetaMap,
    ) -> DbResult<AccountRecord> {
        let key = record_key(&ACCOUNTS, part, hash);
        let _g = self.db.lock(&key);
        let mut rec = self.account_or_new(&key, account)?;
        if let Some(ts) = put {
            rec.put_timestamp = rec.put_timestamp.max(ts);
        }
        merge_meta(&mut rec.meta, meta);
        ACCOUNTS.store(&self.db, &key, &rec, Durability::Synced)?;
        Ok(rec)
    }

    /// Applies a container's stats to its account listing if newer, keeping
    /// the account's totals. Accounts are created on first use (Swift's
    /// `account_autocreate`).
    pub fn apply_container_row(
        &self,
        part: u32,
        account_hash: &NameHash,
        account: &str,
        container: &str,
        row: &ContainerRow,
    ) -> DbResult<bool> {
        let akey = record_key(&ACCOUNTS, part, account_hash);
        let _g = self.db.lock(&akey);
        let rkey = row_key(&CONTAINER_ROWS, account_hash, container);
        let old = CONTAINER_ROWS.get(&self.db, &rkey)?;
        if old
            .as_ref()
            .is_some_and(|o| o.stats_timestamp >= row.stats_timestamp)
        {
            return Ok(false);
        }
        let mut rec = self.account_or_new(&akey, account)?;
        if rec.put_timestamp == Timestamp::ZERO {
            rec.put_timestamp = row.put_timestamp;
        }
        if let Some(o) = old.as_ref().filter(|o| o.exists()) {
            rec.container_count = rec.container_count.saturating_sub(1);
            rec.object_count = rec.object_count.saturating_sub(o.object_count);
            rec.bytes_used = rec.bytes_used.saturating_sub(o.bytes_used);
        }
        let mut row = row.clone();
        // Put/delete times merge newest-wins even when stats arrive out of order.
        if let Some(o) = &old {
            row.put_timestamp = row.put_timestamp.max(o.put_timestamp);
            row.delete_timestamp = row.delete_timestamp.max(o.delete_timestamp);
        }
        if row.exists() {
            rec.container_count += 1;
            rec.object_count += row.object_count;
            rec.bytes_used += row.bytes_used;
        }
        let mut batch = WriteBatch::default();
        CONTAINER_ROWS.put(&mut batch, &rkey, &row);
        ACCOUNTS.put(&mut batch, &akey, &rec);
        self.db.write(batch, Durability::Synced)?;
        Ok(true)
    }

    /// Every container row of an account, deleted ones included.
    pub fn account_rows(&self, account_hash: &NameHash) -> DbResult<Vec<(String, ContainerRow)>> {
        rows_of(&self.db, &CONTAINER_ROWS, account_hash)
    }

    /// A page of an account's containers.
    pub fn list_containers(&self, account: &NameHash, p: &ListParams) -> Page<ContainerRow> {
        list(&self.db, &CONTAINER_ROWS, account, p, |r| r.exists())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hash_of, open};
    use super::*;

    fn row(ts: u64, deleted: bool) -> ObjectRow {
        ObjectRow {
            timestamp: Timestamp(ts),
            deleted,
            size: 1,
            etag: String::new(),
            content_type: String::new(),
        }
    }

    /// A container holding `names` (live rows).
    fn container_with(db: &DeviceDb, names: &[&str]) -> NameHash {
        let c = hash_of("a/c");
        for (i, n) in names.iter().enumerate() {
            db.apply_object_row(1, &c, "a", "c", n, &row(10 + i as u64, false))
                .unwrap();
        }
        c
    }

    fn names(listed: &[Listed<ObjectRow>]) -> Vec<String> {
        listed
            .iter()
            .map(|l| match l {
                Listed::Row(n, _) => n.clone(),
                Listed::Subdir(s) => format!("{s}*"),
            })
            .collect()
    }

    fn params(f: impl FnOnce(&mut ListParams)) -> ListParams {
        let mut p = ListParams {
            limit: 100,
            ..Default::default()
        };
        f(&mut p);
        p
    }

    #[test]
    fn rows_applied_together_count_as_one_by_one() {
        let (_dir, db) = open();
        let (c, v) = (hash_of("a/c"), hash_of("a/v"));
        let mut big = row(20, false);
        big.size = 5;
        let rows = [
            // A newer row, then an older one of the same object: the older
            // changes nothing.
            (c, "c", "x", big.clone()),
            (c, "c", "x", row(10, false)),
            // An older row, then a newer deletion of the same object.
            (c, "c", "y", row(10, false)),
            (c, "c", "y", row(30, true)),
            (c, "c", "z", row(10, false)),
            // Another container.
            (v, "v", "x", row(10, false)),
        ];
        let batch: Vec<RowToApply<'_>> = rows
            .iter()
            .map(|(h, cont, obj, r)| RowToApply {
                part: 1,
                container_hash: *h,
                account: "a",
                container: cont,
                object: obj,
                row: r,
            })
            .collect();
        let changed = db.apply_object_rows(&batch).unwrap();
        let counts: Vec<(String, u64, u64)> = changed
            .iter()
            .map(|r| (r.container.clone(), r.object_count, r.bytes_used))
            .collect();
        assert_eq!(counts, [("c".into(), 2, 6), ("v".into(), 1, 1)]);
        let stored = db.container(1, &c).unwrap().unwrap();
        assert_eq!((stored.object_count, stored.bytes_used), (2, 6));
        let listed = db.list_objects(&c, &params(|_| {})).unwrap();
        assert_eq!(names(&listed), ["x", "z"]);
        // Delivered again: nothing changes, nothing is owed.
        assert!(db.apply_object_rows(&batch).unwrap().is_empty());
        let stored = db.container(1, &c).unwrap().unwrap();
        assert_eq!((stored.object_count, stored.bytes_used), (2, 6));
    }

    #[test]
    fn listings_order_page_and_group() {
        let (_dir, db) = open();
        let c = container_with(&db, &["b", "a/2", "a/1", "c/x/y", "a", "d"]);
        let all = db.list_objects(&c, &params(|_| {})).unwrap();
        assert_eq!(names(&all), ["a", "a/1", "a/2", "b", "c/x/y", "d"]);
        let paged = db
            .list_objects(
                &c,
                &params(|p| {
                    p.marker = "a/1".into();
                    p.end_marker = "c".into();
                }),
            )
            .unwrap();
        assert_eq!(names(&paged), ["a/2", "b"]);
        let grouped = db
            .list_objects(&c, &params(|p| p.delimiter = Some("/".into())))
            .unwrap();
        assert_eq!(names(&grouped), ["a", "a/*", "b", "c/*", "d"]);
        let under = db
            .list_objects(
                &c,
                &params(|p| {
                    p.prefix = "c/".into();
                    p.delimiter = Some("/".into());
                }),
            )
            .unwrap();
        assert_eq!(names(&under), ["c/x/*"]);
        let limited = db.list_objects(&c, &params(|p| p.limit = 2)).unwrap();
        assert_eq!(names(&limited), ["a", "a/1"]);
    }

    #[test]
    fn long_delimiters_and_path_listings() {
        let (_dir, db) = open();
        let c = container_with(
            &db,
            &[
                "d/", "d/a", "d/b/", "d/b/c", "d/e/f", "x--1--a", "x--1--b", "x--2", "x-3",
            ],
        );
        let long = db
            .list_objects(&c, &params(|p| p.delimiter = Some("--".into())))
            .unwrap();
        assert_eq!(
            names(&long),
            ["d/", "d/a", "d/b/", "d/b/c", "d/e/f", "x--*", "x-3"]
        );
        let deeper = db
            .list_objects(
                &c,
                &params(|p| {
                    p.prefix = "x--".into();
                    p.delimiter = Some("--".into());
                }),
            )
            .unwrap();
        assert_eq!(names(&deeper), ["x--1--*", "x--2"]);
        // Swift's `path=d`: what is directly in `d/`, a `d/b/` marker
        // object included, nothing deeper, no subdirs, not `d/` itself.
        let path = db
            .list_objects(
                &c,
                &params(|p| {
                    p.prefix = "d/".into();
                    p.delimiter = Some("/".into());
                    p.path_only = true;
                }),
            )
            .unwrap();
        assert_eq!(names(&path), ["d/a", "d/b/"]);
    }

    #[test]
    fn reverse_listings_with_an_object_named_like_a_subdir() {
        let (_dir, db) = open();
        // `a/` is an object and also the subdir of `a/x`. With a delimiter
        // it is part of that subdir whichever the order, as forward
        // listings (and Swift) have it; without one it is a row of its own.
        let c = container_with(&db, &["a", "a/", "a/x", "b"]);
        let cases: [(Option<&str>, &str, &[&str]); 4] = [
            (Some("/"), "", &["b", "a/*", "a"]),
            (None, "", &["b", "a/x", "a/", "a"]),
            (None, "a/x", &["a/", "a"]),
            // The previous page ended with the subdir: the next starts below it.
            (Some("/"), "a/", &["a"]),
        ];
        for (delimiter, marker, want) in cases {
            let page = db
                .list_objects(
                    &c,
                    &params(|p| {
                        p.reverse = true;
                        p.delimiter = delimiter.map(String::from);
                        p.marker = marker.into();
                    }),
                )
                .unwrap();
            assert_eq!(names(&page), want, "{delimiter:?} after {marker:?}");
        }
        let forward = db.list_objects(&c, &params(|p| p.delimiter = Some("/".into())));
        assert_eq!(names(&forward.unwrap()), ["a", "a/*", "b"]);
    }

    #[test]
    fn rows_keep_counters_and_newer_rows_win() {
        let (_dir, db) = open();
        let c = container_with(&db, &["x", "y"]);
        assert_eq!(db.container(1, &c).unwrap().unwrap().object_count, 2);
        assert!(
            db.apply_object_row(1, &c, "a", "c", "x", &row(5, true))
                .unwrap()
                .is_none(),
            "older than the row held"
        );
        let rec = db
            .apply_object_row(1, &c, "a", "c", "x", &row(50, true))
            .unwrap()
            .unwrap();
        assert_eq!((rec.object_count, rec.bytes_used), (1, 1));
        assert_eq!(names(&db.list_objects(&c, &params(|_| {})).unwrap()), ["y"]);
        assert!(
            matches!(
                db.update_container(1, &c, "a", "c", ContainerChange::Delete(Timestamp(60))),
                Err(DbError::NotFound)
            ),
            "a container made only by rows was never put"
        );
    }
}
