//! The typed key-space abstraction every part of a device's database is
//! built on: a one-byte tag per key space, keys that sort as their parts
//! (big-endian integers, then names), JSON values, and the lock stripes and
//! batches that writes go through, written once.

use super::group_sync::{GroupSync, SyncTicket};
use super::{DbError, DbResult};
use rocksdb::{WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

/// One key space: keys `tag | ...` holding values of type `V`.
pub struct KeySpace<V> {
    tag: u8,
    value: PhantomData<fn() -> V>,
}

impl<V> KeySpace<V> {
    pub const fn new(tag: u8) -> KeySpace<V> {
        KeySpace {
            tag,
            value: PhantomData,
        }
    }

    /// The key of parts, in order (`tag | part0 | part1 ...`).
    pub fn key(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
        k.push(self.tag);
        for p in parts {
            k.extend_from_slice(p);
        }
        k
    }

    pub fn tag(&self) -> u8 {
        self.tag
    }
}

impl<V: Serialize + DeserializeOwned> KeySpace<V> {
    pub fn encode(&self, value: &V) -> Vec<u8> {
        serde_json::to_vec(value).expect("records always serialize")
    }

    pub fn decode(&self, key: &[u8], bytes: &[u8]) -> DbResult<V> {
        serde_json::from_slice(bytes).map_err(|source| DbError::Corrupt {
            key: hex::encode(key),
            source,
        })
    }

    pub fn get(&self, db: &Db, key: &[u8]) -> DbResult<Option<V>> {
        match db.rocks.get_pinned(key)? {
            Some(v) => Ok(Some(self.decode(key, &v)?)),
            None => Ok(None),
        }
    }

    pub fn put(&self, batch: &mut WriteBatch, key: &[u8], value: &V) {
        batch.put(key, self.encode(value));
    }

    /// Writes one record on its own.
    pub fn store(&self, db: &Db, key: &[u8], value: &V, durability: Durability) -> DbResult<()> {
        let mut batch = WriteBatch::default();
        self.put(&mut batch, key, value);
        db.write(batch, durability)
    }

    /// Every `(key, value)` whose key starts with `prefix` (a key of this
    /// space), in key order; a record that does not parse is an error.
    pub fn scan(&self, db: &Db, prefix: &[u8]) -> DbResult<Vec<(Vec<u8>, V)>> {
        let mut out = Vec::new();
        for item in db.rocks.prefix_iterator(prefix) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), self.decode(&k, &v)?));
        }
        Ok(out)
    }

    /// The keys under `prefix`, values unread.
    pub fn keys(&self, db: &Db, prefix: &[u8]) -> DbResult<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for item in db.rocks.prefix_iterator(prefix) {
            let (k, _) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(k.to_vec());
        }
        Ok(out)
    }
}

const STRIPES: usize = 256;

/// The RocksDB instance with its lock stripes: writers that
/// read-modify-write take the stripe of what they modify, so unrelated
/// writes still commit in parallel and RocksDB can group their WAL syncs.
pub struct Db {
    pub rocks: Arc<DB>,
    stripes: Vec<Mutex<()>>,
    group: GroupSync,
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

/// Whether a batch reaches the disk before the call returns.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Durability {
    Synced,
    /// Durable before the call returns, through a WAL sync shared with
    /// concurrent writers ([`GroupSync`]).
    Grouped,
    /// A later [`Db::sync`] (or synced write) makes it durable.
    Deferred,
}

impl Db {
    pub fn new(rocks: DB) -> Db {
        let rocks = Arc::new(rocks);
        Db {
            group: GroupSync::start(rocks.clone()),
            rocks,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// WAL syncs made for grouped writes, and grouped writes: their ratio
    /// is how many writes share a sync.
    pub fn group_counts(&self) -> (u64, u64) {
        self.group.counts()
    }

    pub fn stripe(key: &[u8]) -> usize {
        blake3::hash(key).as_bytes()[0] as usize % STRIPES
    }

    /// The lock stripe of `key`.
    pub fn lock(&self, key: &[u8]) -> MutexGuard<'_, ()> {
        self.lock_stripe(Self::stripe(key))
    }

    pub fn lock_stripe(&self, stripe: usize) -> MutexGuard<'_, ()> {
        self.stripes[stripe]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a batch atomically.
    pub fn write(&self, batch: WriteBatch, durability: Durability) -> DbResult<()> {
        match durability {
            Durability::Synced => self.rocks.write_opt(batch, &synced())?,
            Durability::Grouped => self.write_grouped(batch)?,
            Durability::Deferred => self.rocks.write(batch)?,
        }
        Ok(())
    }

    /// Writes without a sync of its own; durable once the returned ticket
    /// is ([`Self::durable`]).
    pub fn write_unsynced(&self, batch: WriteBatch) -> DbResult<SyncTicket> {
        let ((), ticket) = self.group.write(|| Ok(self.rocks.write(batch)?))?;
        Ok(ticket)
    }

    /// Writes without a sync of its own, then waits for a sync that
    /// started after the write.
    fn write_grouped(&self, batch: WriteBatch) -> DbResult<()> {
        let ticket = self.write_unsynced(batch)?;
        self.group.wait(ticket)
    }

    /// The ticket of a WAL sync that covers every write made so far.
    pub fn sync_point(&self) -> SyncTicket {
        self.group.sync_point()
    }

    /// Makes every write so far durable (after a series of deferred
    /// writes), with a WAL sync shared with concurrent callers.
    pub fn sync(&self) -> DbResult<()> {
        self.group.wait(self.group.sync_point())
    }

    /// Blocks until `ticket`'s sync has finished.
    pub fn wait(&self, ticket: SyncTicket) -> DbResult<()> {
        self.group.wait(ticket)
    }

    /// Waits, without holding a thread, until `ticket`'s sync has finished.
    pub async fn durable(&self, ticket: SyncTicket) -> DbResult<()> {
        self.group.durable(ticket).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concurrent grouped writes all land, each returns only after a sync
    /// that started after it, and they share syncs rather than each making
    /// its own.
    #[test]
    fn concurrent_grouped_writes_share_their_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let db = Db::new(DB::open(&opts, dir.path()).unwrap());
        let (threads, each) = (8, 50);
        std::thread::scope(|s| {
            for t in 0..threads {
                let db = &db;
                s.spawn(move || {
                    for i in 0..each {
                        let mut batch = WriteBatch::default();
                        batch.put(format!("k{t}-{i}"), b"v");
                        db.write(batch, Durability::Grouped).unwrap();
                    }
                });
            }
        });
        let (syncs, writes) = db.group_counts();
        assert_eq!(writes, threads * each);
        // Eight writers at once: some must have shared a sync.
        assert!(
            syncs >= 1 && syncs < writes,
            "{syncs} syncs for {writes} writes"
        );
        for t in 0..threads {
            for i in 0..each {
                assert!(db.rocks.get(format!("k{t}-{i}")).unwrap().is_some());
            }
        }
        eprintln!("{writes} grouped writes, {syncs} syncs");
    }
}
