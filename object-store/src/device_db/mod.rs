//! The metadata database of one device: a RocksDB instance beside the
//! device's object files, in typed key spaces ([`keyspace`]), one module
//! each:
//!
//! - [`objects`]: `o` object records and `s` per-suffix hashes for the
//!   replicator, and the walk over every object of the device;
//! - [`listings`]: `c`/`r` container records and their object rows, `a`/`R`
//!   account records and their container rows, and Swift's listing order;
//! - [`queue`]: `q` updates owed to other nodes.
//!
//! Keys sort as their parts (integers big-endian). Writers that
//! read-modify-write (newest-timestamp checks, counters) take a lock stripe
//! chosen by what they modify, so unrelated writes still commit in parallel
//! and RocksDB can group their WAL syncs.

mod group_sync;
mod keyspace;
mod listings;
mod objects;
mod queue;

pub use group_sync::SyncTicket;
pub use listings::{ContainerChange, ListParams, Listed, ListingKind, Replica, RowToApply};
pub use objects::{LinkWrite, MetaChange};

use keyspace::Db;
use rocksdb::Options;
use service_kit::timestamp::Timestamp;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt record under key {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    /// A key or value of the wrong shape for its key space.
    #[error("malformed entry under key {0}")]
    Malformed(String),
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
    /// The WAL sync meant to make a write durable failed (or its syncer
    /// stopped): the write may be lost.
    #[error("WAL sync failed: {0}")]
    SyncFailed(String),
}

pub type DbResult<T> = Result<T, DbError>;

/// What one reclaim pass removed from a device's database.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reclaimed {
    pub tombstones: u64,
    pub rows: u64,
    pub containers: u64,
}

pub struct DeviceDb {
    db: Db,
    rows: queue::RowSequence,
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
        // Most point reads on the write path miss: a new object's earlier
        // record, a first version's link, a new listing row. Bloom filters
        // (in the tables and the memtable) answer those without searching
        // every table and level: 10 bits a key, about 1% false positives.
        let mut tables = rocksdb::BlockBasedOptions::default();
        tables.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&tables);
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.05);
        let db = Db::new(rocksdb::DB::open(&opts, path)?);
        Ok(DeviceDb {
            rows: queue::RowSequence::open(&db)?,
            db,
        })
    }

    /// Makes every write so far durable (after a series of deferred
    /// writes), with a WAL sync shared with concurrent writers.
    pub fn sync(&self) -> DbResult<()> {
        self.db.sync()
    }

    /// The ticket of a WAL sync that covers every write made so far: for
    /// an answer that rests on what others wrote (a conflict, a batch of
    /// deferred writes), awaited with [`Self::durable`].
    pub fn sync_point(&self) -> SyncTicket {
        self.db.sync_point()
    }

    /// Waits, without holding a thread, until `ticket`'s WAL sync (shared
    /// with concurrent writers) has finished.
    pub async fn durable(&self, ticket: SyncTicket) -> DbResult<()> {
        self.db.durable(ticket).await
    }

    /// (WAL syncs made for grouped writes and syncs, writes they covered).
    pub fn group_counts(&self) -> (u64, u64) {
        self.db.group_counts()
    }

    /// Removes what is kept only to win over older copies for a while:
    /// object tombstones, deleted listing rows, and deleted containers with
    /// no rows left, all older than `cutoff`.
    pub fn reclaim_before(&self, cutoff: Timestamp) -> DbResult<Reclaimed> {
        let mut out = Reclaimed::default();
        for item in self.objects() {
            let o = item?;
            if o.record.kind == crate::records::ObjectKind::Tombstone
                && o.record.timestamp < cutoff
                && self.forget_object(o.part, &o.hash, o.record.timestamp)?
            {
                out.tombstones += 1;
            }
        }
        for part in self.listing_partitions(ListingKind::Containers)? {
            for hash in self.listing_names(ListingKind::Containers, part)? {
                let (rows, containers) = self.reclaim_container(part, &hash, cutoff)?;
                out.rows += rows;
                out.containers += containers;
            }
        }
        for part in self.listing_partitions(ListingKind::Accounts)? {
            for hash in self.listing_names(ListingKind::Accounts, part)? {
                out.rows += self.reclaim_account(part, &hash, cutoff)?;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::records::{ObjectKind, ObjectRecord, ObjectRow};
    use ring_tools::NameHash;

    pub fn open() -> (tempfile::TempDir, DeviceDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = DeviceDb::open(&dir.path().join("db")).unwrap();
        (dir, db)
    }

    pub fn record(name: &str, ts: u64, kind: ObjectKind) -> ObjectRecord {
        ObjectRecord {
            account: "a".into(),
            container: "c".into(),
            object: name.into(),
            timestamp: Timestamp(ts),
            kind,
            size: 0,
            etag: String::new(),
            blake3: String::new(),
            chunk_hashes: Default::default(),
            inline: false,
            content_type: String::new(),
            headers: Default::default(),
            meta_timestamp: Timestamp(ts),
            delete_at: None,
        }
    }

    pub fn hash_of(name: &str) -> NameHash {
        let mut h = [0u8; 16];
        h.copy_from_slice(&blake3::hash(name.as_bytes()).as_bytes()[..16]);
        NameHash(h)
    }

    #[test]
    fn reclaim_removes_only_old_tombstones_and_deleted_rows() {
        let (_dir, db) = open();
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
