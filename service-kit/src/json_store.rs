//! Records as JSON in a RocksDB database, each write synced: the store the
//! image registry and compute keep their records in. Keys are text
//! (`<kind>/<id>`); every call runs through [`blocking`] because callers
//! are async handlers.
//!
//! Read-modify-writes ([`JsonStore::update`], [`JsonStore::insert`]) hold
//! one writer lock, so two requests on one record (two uploads to one
//! image, a heartbeat and a delete) cannot both win a state transition or
//! write back a stale copy. [`JsonStore::locked`] lends that lock and the
//! database to a caller with records of its own encoding.

use crate::server::blocking;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB failed (I/O, corruption it detected).
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A record under this key does not parse as its type.
    #[error("corrupt record {0}: {1}")]
    Corrupt(String, serde_json::Error),
    /// The file system failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What [`JsonStore::update`] did.
#[derive(Debug)]
pub enum Updated<T, E> {
    /// The change was made; the record as written.
    Done(Box<T>),
    /// The change refused itself (a state it does not apply to); nothing
    /// was written.
    Refused(E),
    /// No such record.
    Missing,
}

/// One RocksDB database of JSON records.
pub struct JsonStore {
    db: rocksdb::DB,
    writer: Mutex<()>,
}

/// Write options that reach the disk before the call returns.
pub fn synced() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(true);
    w
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value)
        .map_err(|e| StoreError::Corrupt(String::from_utf8_lossy(key).into_owned(), e))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialize")
}

impl JsonStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<JsonStore, StoreError> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(4 << 20);
        opts.set_keep_log_file_num(2);
        Ok(JsonStore {
            db: rocksdb::DB::open(&opts, path)?,
            writer: Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record under `key`, if any.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match blocking(|| self.db.get_pinned(key))? {
            None => Ok(None),
            Some(v) => decode(key.as_bytes(), &v).map(Some),
        }
    }

    /// Writes a record whatever was there.
    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let v = encode(value);
        blocking(|| {
            let _held = self.lock();
            Ok(self.db.put_opt(key, v, &synced())?)
        })
    }

    /// Writes a new record; `false` (and nothing written) if the key is taken.
    pub fn insert<T: Serialize>(&self, key: &str, value: &T) -> Result<bool, StoreError> {
        let v = encode(value);
        blocking(|| {
            let _held = self.lock();
            if self.db.get_pinned(key)?.is_some() {
                return Ok(false);
            }
            self.db.put_opt(key, v, &synced())?;
            Ok(true)
        })
    }

    /// Reads the record, lets `change` modify it (or refuse), and writes
    /// it, atomically with respect to every other write: the
    /// compare-and-set state transitions go through.
    pub fn update<T, E>(
        &self,
        key: &str,
        change: impl FnOnce(&mut T) -> Result<(), E>,
    ) -> Result<Updated<T, E>, StoreError>
    where
        T: Serialize + DeserializeOwned,
    {
        blocking(|| {
            let _held = self.lock();
            let Some(v) = self.db.get_pinned(key)? else {
                return Ok(Updated::Missing);
            };
            let mut record: T = decode(key.as_bytes(), &v)?;
            if let Err(e) = change(&mut record) {
                return Ok(Updated::Refused(e));
            }
            self.db.put_opt(key, encode(&record), &synced())?;
            Ok(Updated::Done(Box::new(record)))
        })
    }

    /// Deletes the record (under the writer lock, so no update is lost into
    /// a record that is gone).
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        blocking(|| {
            let _held = self.lock();
            Ok(self.db.delete_opt(key, &synced())?)
        })
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, StoreError> {
        blocking(|| {
            let mut out = Vec::new();
            for item in self.db.prefix_iterator(prefix) {
                let (k, v) = item?;
                if !k.starts_with(prefix.as_bytes()) {
                    break;
                }
                out.push(decode(&k, &v)?);
            }
            Ok(out)
        })
    }

    /// Runs `f` with the writer lock held and the database lent, for
    /// records of the caller's own encoding (blocking).
    pub fn locked<R>(&self, f: impl FnOnce(&rocksdb::DB) -> R) -> R {
        blocking(|| {
            let _held = self.lock();
            f(&self.db)
        })
    }

    /// Runs `f` with the database lent, without the writer lock (reads).
    pub fn read<R>(&self, f: impl FnOnce(&rocksdb::DB) -> R) -> R {
        blocking(|| f(&self.db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a temporary directory, written by `fill`, then reopened.
    fn reopened(fill: impl FnOnce(&JsonStore)) -> (tempfile::TempDir, JsonStore) {
        let dir = tempfile::tempdir().unwrap();
        fill(&JsonStore::open(dir.path()).unwrap());
        let store = JsonStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn records_survive_reopening_and_prefixes_stay_apart() {
        let (_dir, s) = reopened(|s| {
            s.put("a/1", &1u32).unwrap();
            s.put("a/2", &2u32).unwrap();
            s.put("b/1", &"other kind").unwrap();
            assert!(s.insert("a/3", &3u32).unwrap());
            assert!(!s.insert("a/3", &30u32).unwrap(), "taken");
            s.delete("a/2").unwrap();
        });
        assert_eq!(s.scan::<u32>("a/").unwrap(), [1, 3]);
        assert_eq!(
            s.get::<String>("b/1").unwrap().as_deref(),
            Some("other kind")
        );
        assert!(s.get::<u32>("a/2").unwrap().is_none());
        assert!(matches!(
            s.get::<u32>("b/1"),
            Err(StoreError::Corrupt(k, _)) if k == "b/1"
        ));
    }

    #[test]
    fn updates_refuse_or_apply_atomically() {
        let (_dir, s) = reopened(|s| s.put("n", &0u64).unwrap());
        let s = std::sync::Arc::new(s);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        s.update::<u64, ()>("n", |n| {
                            *n += 1;
                            Ok(())
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.get::<u64>("n").unwrap(), Some(200), "no update lost");
        let refused = s.update::<u64, &str>("n", |_| Err("no")).unwrap();
        assert!(matches!(refused, Updated::Refused("no")));
        assert!(matches!(
            s.update::<u64, ()>("missing", |_| Ok(())).unwrap(),
            Updated::Missing
        ));
    }
}
