//! The typed key-space abstraction every part of a device's database is
//! built on: a one-byte tag per key space, keys that sort as their parts
//! (big-endian integers, then names), JSON values, and the lock stripes and
//! batches that writes go through, written once.

use super::{DbError, DbResult};
use rocksdb::{WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard};

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
    pub rocks: DB,
    stripes: Vec<Mutex<()>>,
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
    /// A later [`Db::sync`] (or synced write) makes it durable.
    Deferred,
}

impl Db {
    pub fn new(rocks: DB) -> Db {
        Db {
            rocks,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
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
            Durability::Deferred => self.rocks.write(batch)?,
        }
        Ok(())
    }

    /// Makes every write so far durable (after a series of deferred writes).
    pub fn sync(&self) -> DbResult<()> {
        self.rocks.flush_wal(true)?;
        Ok(())
    }
}
