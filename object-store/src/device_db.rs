//! The metadata database of one device: a RocksDB instance beside the
//! device's object files, holding object records, container and account
//! listings, per-suffix hashes for the replicator, and the queue of updates
//! owed to other nodes.
//!
//! Key layout (all integers big-endian so keys sort numerically):
//! - `o` part suffix hash  -> [`ObjectRecord`]
//! - `s` part suffix       -> blake3 of the suffix's (name, timestamp, kind) entries
//! - `c` part hash         -> [`ContainerRecord`]
//! - `r` container-hash name -> [`ObjectRow`]
//! - `a` part hash         -> [`AccountRecord`]
//! - `R` account-hash name -> [`ContainerRow`]
//! - `q` key               -> [`PendingUpdate`]
//!
//! Writers that read-modify-write (newest-timestamp checks, counters) take a
//! lock stripe chosen by what they modify, so unrelated writes still commit
//! in parallel and RocksDB can group their WAL syncs.

use crate::records::*;
use ring_tools::NameHash;
use rocksdb::{Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;
use service_kit::timestamp::Timestamp;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt record under key {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    /// The write is not newer than what the device holds.
    #[error("a newer version exists ({0})")]
    Conflict(Timestamp),
    #[error("not found")]
    NotFound,
    /// Deleted at this time.
    #[error("deleted at {0}")]
    Deleted(Timestamp),
    #[error("container is not empty")]
    NotEmpty,
}

pub type DbResult<T> = Result<T, DbError>;

/// What one reclaim pass removed from a device's database.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reclaimed {
    pub tombstones: u64,
    pub rows: u64,
    pub containers: u64,
}

const STRIPES: usize = 256;

pub struct DeviceDb {
    db: DB,
    stripes: Vec<Mutex<()>>,
}

/// The low 12 bits of a name hash: its suffix directory (`NameHash::suffix`).
pub fn suffix_of(hash: &NameHash) -> u16 {
    (u16::from(hash.0[14] & 0x0f) << 8) | u16::from(hash.0[15])
}

fn object_key(part: u32, hash: &NameHash) -> Vec<u8> {
    let mut k = suffix_prefix(b'o', part, suffix_of(hash));
    k.extend_from_slice(&hash.0);
    k
}

fn suffix_prefix(tag: u8, part: u32, suffix: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(23);
    k.push(tag);
    k.extend_from_slice(&part.to_be_bytes());
    k.extend_from_slice(&suffix.to_be_bytes());
    k
}

fn part_key(tag: u8, part: u32, hash: &NameHash) -> Vec<u8> {
    let mut k = Vec::with_capacity(21);
    k.push(tag);
    k.extend_from_slice(&part.to_be_bytes());
    k.extend_from_slice(&hash.0);
    k
}

fn row_prefix(tag: u8, parent: &NameHash) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + 64);
    k.push(tag);
    k.extend_from_slice(&parent.0);
    k
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records always serialize")
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> DbResult<T> {
    serde_json::from_slice(bytes).map_err(|source| DbError::Corrupt {
        key: hex::encode(key),
        source,
    })
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// What a listing asks for (Swift's query parameters, already validated).
#[derive(Clone, Debug, Default)]
pub struct ListParams {
    pub prefix: String,
    pub delimiter: Option<char>,
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

impl DeviceDb {
    pub fn open(path: &Path) -> DbResult<DeviceDb> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Bounded memory: node RSS must stay flat however much is stored.
        opts.set_write_buffer_size(8 << 20);
        opts.set_max_write_buffer_number(2);
        opts.set_max_open_files(256);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(2);
        let db = DB::open(&opts, path)?;
        Ok(DeviceDb {
            db,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    fn stripe(key: &[u8]) -> usize {
        blake3::hash(key).as_bytes()[0] as usize % STRIPES
    }

    fn lock(&self, key: &[u8]) -> MutexGuard<'_, ()> {
        self.stripes[Self::stripe(key)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> DbResult<Option<T>> {
        match self.db.get_pinned(key)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    // ---- objects ----

    pub fn object(&self, part: u32, hash: &NameHash) -> DbResult<Option<ObjectRecord>> {
        self.get(&object_key(part, hash))
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
        let key = object_key(part, hash);
        let suffix = suffix_of(hash);
        let _g = self.lock(&suffix_prefix(b's', part, suffix));
        let old: Option<ObjectRecord> = self.get(&key)?;
        if let Some(old) = &old {
            if old.timestamp >= record.timestamp {
                return Err(DbError::Conflict(old.timestamp));
            }
        }
        let mut batch = WriteBatch::default();
        batch.put(&key, encode(record));
        for update in owed {
            self.queue_into(&mut batch, hash, update);
        }
        let suffix_hash = self
            .suffix_hash_after(part, suffix, &key, Some(record))?
            .expect("holds the new record");
        batch.put(suffix_prefix(b's', part, suffix), suffix_hash);
        self.db.write_opt(batch, &synced())?;
        Ok(old)
    }

    /// Replaces an object's metadata (Swift's POST) if `timestamp` is newer
    /// than its last metadata change.
    pub fn post_object(
        &self,
        part: u32,
        hash: &NameHash,
        timestamp: Timestamp,
        headers: std::collections::BTreeMap<String, String>,
        delete_at: Option<u64>,
    ) -> DbResult<ObjectRecord> {
        let key = object_key(part, hash);
        let _g = self.lock(&suffix_prefix(b's', part, suffix_of(hash)));
        let mut rec: ObjectRecord = self.get(&key)?.ok_or(DbError::NotFound)?;
        if rec.kind == ObjectKind::Tombstone {
            return Err(DbError::NotFound);
        }
        if rec.meta_timestamp.max(rec.timestamp) >= timestamp {
            return Err(DbError::Conflict(rec.meta_timestamp.max(rec.timestamp)));
        }
        // System metadata (large-object flags, S3 state) is not the client's to
        // change with a POST; user metadata is replaced as a whole.
        let mut kept: std::collections::BTreeMap<String, String> = rec
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("x-object-sysmeta-") || *k == "x-static-large-object")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        kept.extend(
            headers.into_iter().filter(|(k, _)| {
                !k.starts_with("x-object-sysmeta-") && k != "x-static-large-object"
            }),
        );
        rec.headers = kept;
        rec.delete_at = delete_at;
        rec.meta_timestamp = timestamp;
        self.db.put_opt(&key, encode(&rec), &synced())?;
        Ok(rec)
    }

    /// blake3 over the suffix's entries sorted by (name, timestamp, kind), as
    /// they will be once the record under `key` is replaced by `new` (or
    /// removed, when `new` is `None`); `None` when the suffix would be empty.
    fn suffix_hash_after(
        &self,
        part: u32,
        suffix: u16,
        key: &[u8],
        new: Option<&ObjectRecord>,
    ) -> DbResult<Option<[u8; 32]>> {
        let prefix = suffix_prefix(b'o', part, suffix);
        let mut entries: Vec<(String, Timestamp, ObjectKind)> = Vec::new();
        for item in self.db.prefix_iterator(&prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if &k[..] != key {
                let rec: ObjectRecord = decode(&k, &v)?;
                entries.push((full_name(&rec), rec.timestamp, rec.kind));
            }
        }
        if let Some(p) = new {
            entries.push((full_name(p), p.timestamp, p.kind));
        }
        Ok((!entries.is_empty()).then(|| hash_entries(entries)))
    }

    /// The current hash of every suffix of a partition that holds objects.
    pub fn suffix_hashes(&self, part: u32) -> DbResult<Vec<(u16, [u8; 32])>> {
        let prefix = {
            let mut p = vec![b's'];
            p.extend_from_slice(&part.to_be_bytes());
            p
        };
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(&prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || k.len() != 7 || v.len() != 32 {
                break;
            }
            let suffix = u16::from_be_bytes([k[5], k[6]]);
            out.push((suffix, v[..].try_into().expect("length checked")));
        }
        Ok(out)
    }

    /// Partitions that hold objects (or tombstones) on this device.
    pub fn object_partitions(&self) -> DbResult<Vec<u32>> {
        self.partitions_under(b's')
    }

    /// Partitions that hold container records on this device.
    pub fn container_partitions(&self) -> DbResult<Vec<u32>> {
        self.partitions_under(b'c')
    }

    /// Distinct partitions of keys `tag | part(4) | ...`, by seeking past each.
    fn partitions_under(&self, tag: u8) -> DbResult<Vec<u32>> {
        let mut out = Vec::new();
        let mut start = vec![tag];
        loop {
            let mut iter = self
                .db
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

    /// The container records of a partition, with their name hashes.
    pub fn containers_in_partition(&self, part: u32) -> DbResult<Vec<(NameHash, ContainerRecord)>> {
        self.records_in_partition(b'c', part)
    }

    /// Every listing row of a container, deleted ones included.
    pub fn container_rows(&self, container_hash: &NameHash) -> DbResult<Vec<(String, ObjectRow)>> {
        self.rows_of(b'r', container_hash)
    }

    /// A digest of a container's state (timestamps, metadata, rows): two
    /// replicas with equal digests need no sync.
    pub fn container_digest(
        &self,
        part: u32,
        container_hash: &NameHash,
    ) -> DbResult<Option<String>> {
        let Some(rec) = self.container(part, container_hash)? else {
            return Ok(None);
        };
        let mut h = blake3::Hasher::new();
        h.update(&rec.put_timestamp.0.to_le_bytes());
        h.update(&rec.delete_timestamp.0.to_le_bytes());
        h.update(&encode(&rec.meta));
        for (name, row) in self.container_rows(container_hash)? {
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(&row.timestamp.0.to_le_bytes());
            h.update(&[row.deleted as u8]);
        }
        Ok(Some(h.finalize().to_hex().to_string()))
    }

    /// Merges another replica's container: timestamps and metadata newest
    /// wins, rows newest wins (counters follow the rows). One WAL sync.
    pub fn merge_container(
        &self,
        part: u32,
        container_hash: &NameHash,
        theirs: &ContainerRecord,
        rows: &[(String, ObjectRow)],
    ) -> DbResult<()> {
        for (name, row) in rows {
            self.apply_object_row(
                part,
                container_hash,
                &theirs.account,
                &theirs.container,
                name,
                row,
            )?;
        }
        let key = part_key(b'c', part, container_hash);
        {
            let _g = self.lock(&key);
            let mut rec: ContainerRecord = self.get(&key)?.unwrap_or_else(|| ContainerRecord {
                account: theirs.account.clone(),
                container: theirs.container.clone(),
                ..Default::default()
            });
            rec.put_timestamp = rec.put_timestamp.max(theirs.put_timestamp);
            rec.delete_timestamp = rec.delete_timestamp.max(theirs.delete_timestamp);
            merge_meta(&mut rec.meta, &theirs.meta);
            self.db.put(&key, encode(&rec))?;
        }
        self.sync()
    }

    /// Forgets a container replica (a handoff's, once the primaries have it).
    pub fn remove_container(&self, part: u32, container_hash: &NameHash) -> DbResult<()> {
        self.remove_listing(b'c', b'r', part, container_hash)
    }

    /// Every object record in one suffix of a partition, with its name hash.
    pub fn objects_in_suffix(
        &self,
        part: u32,
        suffix: u16,
    ) -> DbResult<Vec<(NameHash, ObjectRecord)>> {
        let prefix = suffix_prefix(b'o', part, suffix);
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(&prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || k.len() != prefix.len() + 16 {
                break;
            }
            let hash = NameHash(k[prefix.len()..].try_into().expect("length checked"));
            out.push((hash, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// Forgets a partition's objects (after a handoff has pushed them to
    /// their primaries). Returns the records removed, so their files can go.
    pub fn remove_object_partition(&self, part: u32) -> DbResult<Vec<(NameHash, ObjectRecord)>> {
        let mut removed = Vec::new();
        let mut batch = WriteBatch::default();
        for (suffix, _) in self.suffix_hashes(part)? {
            let _g = self.lock(&suffix_prefix(b's', part, suffix));
            for (hash, rec) in self.objects_in_suffix(part, suffix)? {
                batch.delete(object_key(part, &hash));
                removed.push((hash, rec));
            }
            batch.delete(suffix_prefix(b's', part, suffix));
        }
        self.db.write_opt(batch, &synced())?;
        Ok(removed)
    }

    /// Removes one object's record (the auditor found its file bad), so the
    /// replicator sees it missing and restores it from another replica.
    pub fn forget_object(&self, part: u32, hash: &NameHash, seen: Timestamp) -> DbResult<bool> {
        let key = object_key(part, hash);
        let suffix = suffix_of(hash);
        let _g = self.lock(&suffix_prefix(b's', part, suffix));
        match self.get::<ObjectRecord>(&key)? {
            Some(rec) if rec.timestamp == seen => {
                let mut batch = WriteBatch::default();
                batch.delete(&key);
                match self.suffix_hash_after(part, suffix, &key, None)? {
                    Some(h) => batch.put(suffix_prefix(b's', part, suffix), h),
                    None => batch.delete(suffix_prefix(b's', part, suffix)),
                }
                self.db.write_opt(batch, &synced())?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    // ---- reclaim ----

    /// Removes what is kept only to win over older copies for a while:
    /// object tombstones, deleted listing rows, and deleted containers with
    /// no rows left, all older than `cutoff`.
    pub fn reclaim_before(&self, cutoff: Timestamp) -> DbResult<Reclaimed> {
        let mut out = Reclaimed::default();
        for part in self.object_partitions()? {
            for (suffix, _) in self.suffix_hashes(part)? {
                for (hash, rec) in self.objects_in_suffix(part, suffix)? {
                    if rec.kind == ObjectKind::Tombstone
                        && rec.timestamp < cutoff
                        && self.forget_object(part, &hash, rec.timestamp)?
                    {
                        out.tombstones += 1;
                    }
                }
            }
        }
        for part in self.container_partitions()? {
            for (hash, _) in self.containers_in_partition(part)? {
                let key = part_key(b'c', part, &hash);
                let _g = self.lock(&key);
                out.rows += self.reclaim_rows::<ObjectRow>(b'r', &hash, |r| {
                    r.deleted && r.timestamp < cutoff
                })?;
                if let Some(rec) = self.get::<ContainerRecord>(&key)? {
                    if !rec.exists()
                        && rec.delete_timestamp < cutoff
                        && self.rows_of::<ObjectRow>(b'r', &hash)?.is_empty()
                    {
                        self.db.delete_opt(&key, &synced())?;
                        out.containers += 1;
                    }
                }
            }
        }
        for part in self.account_partitions()? {
            for (hash, _) in self.accounts_in_partition(part)? {
                let _g = self.lock(&part_key(b'a', part, &hash));
                out.rows += self.reclaim_rows::<ContainerRow>(b'R', &hash, |r| {
                    !r.exists() && r.delete_timestamp < cutoff && r.stats_timestamp < cutoff
                })?;
            }
        }
        Ok(out)
    }

    /// Deletes the rows under a parent that `old` selects; the caller holds
    /// the parent's lock, so no newer row slips in between.
    fn reclaim_rows<T: DeserializeOwned>(
        &self,
        tag: u8,
        parent: &NameHash,
        old: impl Fn(&T) -> bool,
    ) -> DbResult<u64> {
        let prefix = row_prefix(tag, parent);
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for item in self.db.prefix_iterator(&prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if old(&decode(&k, &v)?) {
                batch.delete(&k);
                n += 1;
            }
        }
        if n > 0 {
            self.db.write_opt(batch, &synced())?;
        }
        Ok(n)
    }

    // ---- containers ----

    pub fn container(&self, part: u32, hash: &NameHash) -> DbResult<Option<ContainerRecord>> {
        self.get(&part_key(b'c', part, hash))
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
        let key = part_key(b'c', part, hash);
        let _g = self.lock(&key);
        let mut rec: ContainerRecord = self.get(&key)?.unwrap_or_else(|| ContainerRecord {
            account: account.to_string(),
            container: container.to_string(),
            ..Default::default()
        });
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
        self.db.put_opt(&key, encode(&rec), &synced())?;
        Ok(rec)
    }

    /// Applies one object row to a container listing if it is newer than the
    /// row held, keeping the container's counters. Not synced: callers apply
    /// a batch of rows and then [`DeviceDb::sync`] once. Returns the container
    /// record after the change, or `None` when the row was not newer.
    pub fn apply_object_row(
        &self,
        part: u32,
        container_hash: &NameHash,
        account: &str,
        container: &str,
        object: &str,
        row: &ObjectRow,
    ) -> DbResult<Option<ContainerRecord>> {
        let ckey = part_key(b'c', part, container_hash);
        let _g = self.lock(&ckey);
        let mut rkey = row_prefix(b'r', container_hash);
        rkey.extend_from_slice(object.as_bytes());
        let old: Option<ObjectRow> = self.get(&rkey)?;
        if old.as_ref().is_some_and(|o| o.timestamp >= row.timestamp) {
            return Ok(None);
        }
        let mut rec: ContainerRecord = self.get(&ckey)?.unwrap_or_else(|| ContainerRecord {
            account: account.to_string(),
            container: container.to_string(),
            ..Default::default()
        });
        if let Some(o) = old.as_ref().filter(|o| !o.deleted) {
            rec.object_count = rec.object_count.saturating_sub(1);
            rec.bytes_used = rec.bytes_used.saturating_sub(o.size);
        }
        if !row.deleted {
            rec.object_count += 1;
            rec.bytes_used += row.size;
        }
        let mut batch = WriteBatch::default();
        batch.put(&rkey, encode(row));
        batch.put(&ckey, encode(&rec));
        self.db.write(batch)?;
        Ok(Some(rec))
    }

    pub fn list_objects(
        &self,
        container_hash: &NameHash,
        params: &ListParams,
    ) -> DbResult<Vec<Listed<ObjectRow>>> {
        self.list(
            &row_prefix(b'r', container_hash),
            params,
            |r: &ObjectRow| !r.deleted,
        )
    }

    // ---- accounts ----

    pub fn account(&self, part: u32, hash: &NameHash) -> DbResult<Option<AccountRecord>> {
        self.get(&part_key(b'a', part, hash))
    }

    pub fn update_account(
        &self,
        part: u32,
        hash: &NameHash,
        account: &str,
        put: Option<Timestamp>,
        meta: &MetaMap,
    ) -> DbResult<AccountRecord> {
        let key = part_key(b'a', part, hash);
        let _g = self.lock(&key);
        let mut rec = self.account_or_new(&key, account)?;
        if let Some(ts) = put {
            rec.put_timestamp = rec.put_timestamp.max(ts);
        }
        merge_meta(&mut rec.meta, meta);
        self.db.put_opt(&key, encode(&rec), &synced())?;
        Ok(rec)
    }

    fn account_or_new(&self, key: &[u8], account: &str) -> DbResult<AccountRecord> {
        Ok(self.get(key)?.unwrap_or_else(|| AccountRecord {
            account: account.to_string(),
            ..Default::default()
        }))
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
        let akey = part_key(b'a', part, account_hash);
        let _g = self.lock(&akey);
        let mut rkey = row_prefix(b'R', account_hash);
        rkey.extend_from_slice(container.as_bytes());
        let old: Option<ContainerRow> = self.get(&rkey)?;
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
        batch.put(&rkey, encode(&row));
        batch.put(&akey, encode(&rec));
        self.db.write_opt(batch, &synced())?;
        Ok(true)
    }

    /// Partitions that hold account records on this device.
    pub fn account_partitions(&self) -> DbResult<Vec<u32>> {
        self.partitions_under(b'a')
    }

    /// The account records of a partition, with their name hashes.
    pub fn accounts_in_partition(&self, part: u32) -> DbResult<Vec<(NameHash, AccountRecord)>> {
        self.records_in_partition(b'a', part)
    }

    /// Every container row of an account, deleted ones included.
    pub fn account_rows(&self, account_hash: &NameHash) -> DbResult<Vec<(String, ContainerRow)>> {
        self.rows_of(b'R', account_hash)
    }

    /// A digest of an account's state (timestamps, metadata, container rows).
    pub fn account_digest(&self, part: u32, account_hash: &NameHash) -> DbResult<Option<String>> {
        let Some(rec) = self.account(part, account_hash)? else {
            return Ok(None);
        };
        let mut h = blake3::Hasher::new();
        h.update(&rec.put_timestamp.0.to_le_bytes());
        h.update(&encode(&rec.meta));
        for (name, row) in self.account_rows(account_hash)? {
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(&row.stats_timestamp.0.to_le_bytes());
        }
        Ok(Some(h.finalize().to_hex().to_string()))
    }

    /// Merges another replica's account: metadata newest-wins per key,
    /// container rows newest stats win (totals follow the rows).
    pub fn merge_account(
        &self,
        part: u32,
        account_hash: &NameHash,
        theirs: &AccountRecord,
        rows: &[(String, ContainerRow)],
    ) -> DbResult<()> {
        for (name, row) in rows {
            self.apply_container_row(part, account_hash, &theirs.account, name, row)?;
        }
        let put = (theirs.put_timestamp > Timestamp::ZERO).then_some(theirs.put_timestamp);
        self.update_account(part, account_hash, &theirs.account, put, &theirs.meta)?;
        Ok(())
    }

    /// Forgets an account replica (a handoff's, once the primaries have it).
    pub fn remove_account(&self, part: u32, account_hash: &NameHash) -> DbResult<()> {
        self.remove_listing(b'a', b'R', part, account_hash)
    }

    /// Records `tag | part | hash` of a partition (containers, accounts).
    fn records_in_partition<T: DeserializeOwned>(
        &self,
        tag: u8,
        part: u32,
    ) -> DbResult<Vec<(NameHash, T)>> {
        let mut prefix = vec![tag];
        prefix.extend_from_slice(&part.to_be_bytes());
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(&prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || k.len() != 21 {
                break;
            }
            out.push((
                NameHash(k[5..].try_into().expect("length checked")),
                decode(&k, &v)?,
            ));
        }
        Ok(out)
    }

    /// Rows `tag | parent hash | name` (container or account listings).
    fn rows_of<T: DeserializeOwned>(
        &self,
        tag: u8,
        parent: &NameHash,
    ) -> DbResult<Vec<(String, T)>> {
        let prefix = row_prefix(tag, parent);
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(&prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push((
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                decode(&k, &v)?,
            ));
        }
        Ok(out)
    }

    /// Deletes a record and all its rows (a handoff's replica, once pushed).
    fn remove_listing(
        &self,
        record_tag: u8,
        row_tag: u8,
        part: u32,
        hash: &NameHash,
    ) -> DbResult<()> {
        let mut batch = WriteBatch::default();
        let prefix = row_prefix(row_tag, hash);
        for item in self.db.prefix_iterator(&prefix) {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            batch.delete(&k);
        }
        batch.delete(part_key(record_tag, part, hash));
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }

    pub fn list_containers(
        &self,
        account_hash: &NameHash,
        params: &ListParams,
    ) -> DbResult<Vec<Listed<ContainerRow>>> {
        self.list(
            &row_prefix(b'R', account_hash),
            params,
            |r: &ContainerRow| r.exists(),
        )
    }

    /// Swift listing semantics over the rows under `prefix_key`: prefix,
    /// delimiter (rows grouped into `subdir`s), marker / end_marker (exclusive),
    /// limit and reverse.
    fn list<R: DeserializeOwned>(
        &self,
        prefix_key: &[u8],
        p: &ListParams,
        visible: impl Fn(&R) -> bool,
    ) -> DbResult<Vec<Listed<R>>> {
        let key_of = |name: &str| {
            let mut k = prefix_key.to_vec();
            k.extend_from_slice(name.as_bytes());
            k
        };
        let mut out = Vec::new();
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
            let iter = self.db.iterator(mode);
            let mut jumped = false;
            for item in iter {
                let (k, v) = item?;
                if p.reverse && k[..] >= start[..] {
                    continue; // seek_for_prev is inclusive; the bound is not
                }
                if !k.starts_with(prefix_key) {
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
                if let Some(d) = p.delimiter {
                    if let Some(i) = name[p.prefix.len()..].find(d) {
                        let subdir = name[..p.prefix.len() + i + d.len_utf8()].to_string();
                        // As Swift: a subdir equal to the marker was the
                        // last entry of the previous page.
                        if p.marker != subdir {
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
                let row: R = decode(&k, &v)?;
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

    // ---- the queue of updates owed to other nodes ----

    /// Queues a listing row with the object write that owes it. Each write's
    /// row has its own key (the row's timestamp is part of it): this path
    /// does not hold the queue key's lock, so it must never overwrite an
    /// entry that the updater may be removing.
    fn queue_into(&self, batch: &mut WriteBatch, about: &NameHash, update: &PendingUpdate) {
        batch.put(owed_row_key(about, update), encode(update));
    }

    /// Queues updates on their own (container stats owed to accounts), in
    /// one batch, synced unless the caller syncs after. A newer update for the same thing and target
    /// replaces an older one.
    pub fn queue(&self, updates: &[(NameHash, PendingUpdate)], sync: bool) -> DbResult<()> {
        let keyed: Vec<(Vec<u8>, &PendingUpdate)> = updates
            .iter()
            .map(|(about, u)| (queue_key(about, &u.target), u))
            .collect();
        // Hold every key's stripe until the batch is written: otherwise the
        // updater could compare, find the entry it delivered, and delete the
        // newer one written in between. Stripes are taken in ascending order
        // (no caller holds one while queueing), so two queuers cannot deadlock.
        let mut stripes: Vec<usize> = keyed.iter().map(|(k, _)| Self::stripe(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _guards: Vec<MutexGuard<'_, ()>> = stripes
            .iter()
            .map(|&i| self.stripes[i].lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let mut batch = WriteBatch::default();
        for (key, u) in keyed {
            if let Some(old) = self.get::<PendingUpdate>(&key)? {
                if old.update.timestamp() > u.update.timestamp() {
                    continue;
                }
            }
            batch.put(key, encode(u));
        }
        if sync {
            self.db.write_opt(batch, &synced())?;
        } else {
            self.db.write(batch)?;
        }
        Ok(())
    }

    /// Makes every write so far durable (after a series of unsynced writes).
    pub fn sync(&self) -> DbResult<()> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Up to `max` queued updates, with their keys.
    pub fn queued(&self, max: usize) -> DbResult<Vec<(Vec<u8>, PendingUpdate)>> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(b"q") {
            let (k, v) = item?;
            if k.first() != Some(&b'q') || out.len() >= max {
                break;
            }
            out.push((k.to_vec(), decode(&k, &v)?));
        }
        Ok(out)
    }

    pub fn queue_depth(&self) -> DbResult<u64> {
        let mut n = 0;
        for item in self.db.prefix_iterator(b"q") {
            let (k, _) = item?;
            if k.first() != Some(&b'q') {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Removes a delivered update unless a newer one replaced it meanwhile.
    /// Not synced: losing a removal only means sending the update again.
    pub fn dequeue(&self, key: &[u8], delivered: &PendingUpdate) -> DbResult<()> {
        let _g = self.lock(key);
        if self.get::<PendingUpdate>(key)?.as_ref() == Some(delivered) {
            self.db.delete(key)?;
        }
        Ok(())
    }
}

/// The queue key of a listing row owed by an object write.
pub fn owed_row_key(about: &NameHash, update: &PendingUpdate) -> Vec<u8> {
    let mut key = queue_key(about, &update.target);
    key.extend_from_slice(&update.update.timestamp().0.to_be_bytes());
    key
}

fn queue_key(about: &NameHash, target: &Target) -> Vec<u8> {
    let mut k = vec![b'q'];
    k.extend_from_slice(&about.0);
    let t =
        blake3::hash(format!("{}/{}/{}", target.addr, target.device, target.partition).as_bytes());
    k.extend_from_slice(&t.as_bytes()[..8]);
    k
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

pub enum ContainerChange {
    Put(Timestamp, MetaMap),
    Post(MetaMap),
    Delete(Timestamp),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, ts: u64, kind: ObjectKind) -> ObjectRecord {
        ObjectRecord {
            account: "a".into(),
            container: "c".into(),
            object: name.into(),
            timestamp: Timestamp(ts),
            kind,
            size: 0,
            etag: String::new(),
            blake3: String::new(),
            content_type: String::new(),
            headers: Default::default(),
            meta_timestamp: Timestamp(ts),
            delete_at: None,
        }
    }

    fn hash_of(name: &str) -> NameHash {
        let mut h = [0u8; 16];
        h.copy_from_slice(&blake3::hash(name.as_bytes()).as_bytes()[..16]);
        NameHash(h)
    }

    #[test]
    fn reclaim_removes_only_old_tombstones_and_deleted_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = DeviceDb::open(&dir.path().join("db")).unwrap();
        let (old_ts, new_ts, cutoff) = (1_000, 3_000, Timestamp(2_000));
        for (name, ts, kind) in [
            ("old-tomb", old_ts, ObjectKind::Tombstone),
            ("new-tomb", new_ts, ObjectKind::Tombstone),
            ("old-data", old_ts, ObjectKind::Data),
        ] {
            db.put_object(7, &hash_of(name), &record(name, ts, kind), &[])
                .unwrap();
        }
        let c = hash_of("a/c");
        let row = |ts, deleted| ObjectRow {
            timestamp: Timestamp(ts),
            deleted,
            size: 1,
            etag: String::new(),
            content_type: String::new(),
        };
        db.apply_object_row(7, &c, "a", "c", "gone", &row(old_ts, true))
            .unwrap();
        db.apply_object_row(7, &c, "a", "c", "live", &row(old_ts, false))
            .unwrap();
        db.apply_object_row(7, &c, "a", "c", "just-gone", &row(new_ts, true))
            .unwrap();
        let hashes_before = db.suffix_hashes(7).unwrap();

        let got = db.reclaim_before(cutoff).unwrap();
        assert_eq!(
            got,
            Reclaimed {
                tombstones: 1,
                rows: 1,
                containers: 0
            }
        );
        assert!(db.object(7, &hash_of("old-tomb")).unwrap().is_none());
        assert!(db.object(7, &hash_of("new-tomb")).unwrap().is_some());
        assert!(db.object(7, &hash_of("old-data")).unwrap().is_some());
        let rows: Vec<String> = db
            .container_rows(&c)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(rows, ["just-gone", "live"]);
        // The suffix hash follows, so replicas that reclaimed agree.
        assert_ne!(db.suffix_hashes(7).unwrap(), hashes_before);
        assert_eq!(db.reclaim_before(cutoff).unwrap(), Reclaimed::default());
    }
}
