//! Image records in RocksDB (`image/<id>` -> JSON), each write synced.
//! Calls come from async handlers: each runs through `blocking`, so a
//! synced write does not stall the runtime's other tasks.
//!
//! Chunk reference counts live here too (`chunk/<blake3>` holders and
//! whether stored, `held/<image>/<blake3>` per holder): see
//! [`crate::chunks`].
//!
//! Every change to an existing record is a read-modify-write under one
//! writer lock ([`ImageDb::update`]), so two requests on one image (two
//! uploads, an upload and a PATCH) cannot both win a state transition or
//! overwrite each other's record with a stale copy.

#![cfg(feature = "service")]

use crate::image::Image;
use service_kit::json_store::{synced, JsonStore, StoreError};
use std::path::Path;

/// What [`ImageDb::update`] did.
pub type Updated<E> = service_kit::json_store::Updated<Image, E>;

/// Image records and chunk references, in the shared [`JsonStore`].
pub struct ImageDb {
    store: JsonStore,
}

fn key(id: &str) -> String {
    format!("image/{id}")
}

/// `chunk/<blake3>` -> [`ChunkRecord`].
fn chunk_key(chunk: &str) -> Vec<u8> {
    format!("chunk/{chunk}").into_bytes()
}

/// `held/<image>/<blake3>`: the image holds the chunk (empty value).
fn held_key(image: &str, chunk: &str) -> Vec<u8> {
    format!("held/{image}/{chunk}").into_bytes()
}

/// A chunk's holders (images) and whether it is known to be stored: 8
/// bytes little-endian, then one byte.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ChunkRecord {
    holders: u64,
    stored: bool,
}

impl ChunkRecord {
    fn decode(v: &[u8]) -> ChunkRecord {
        let holders = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        ChunkRecord {
            holders,
            stored: v.get(8) == Some(&1),
        }
    }

    fn encode(self) -> [u8; 9] {
        let mut out = [0u8; 9];
        out[..8].copy_from_slice(&self.holders.to_le_bytes());
        out[8] = u8::from(self.stored);
        out
    }
}

impl ImageDb {
    pub fn open(path: &Path) -> Result<ImageDb, StoreError> {
        Ok(ImageDb {
            store: JsonStore::open(path)?,
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<Image>, StoreError> {
        self.store.get(&key(id))
    }

    /// Writes a new record; `false` (and nothing written) if the id is taken.
    pub fn insert(&self, img: &Image) -> Result<bool, StoreError> {
        self.store.insert(&key(&img.id), img)
    }

    /// Reads the record, lets `change` modify it (or refuse), and writes
    /// it, atomically with respect to every other write.
    pub fn update<E>(
        &self,
        id: &str,
        change: impl FnOnce(&mut Image) -> Result<(), E>,
    ) -> Result<Updated<E>, StoreError> {
        self.store.update(&key(id), change)
    }

    /// Deletes the record.
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.store.delete(&key(id))
    }

    pub fn all(&self) -> Result<Vec<Image>, StoreError> {
        self.store.scan("image/")
    }

    /// Pins chunk `chunk` for `image` (once per image however often the
    /// image repeats it): whether the uploader must store the chunk, which
    /// is until someone has ([`Self::chunk_stored`]).
    pub fn pin_chunk(&self, image: &str, chunk: &str) -> Result<bool, StoreError> {
        self.store.locked(|db| pin_chunk(db, image, chunk))
    }

    /// Records that chunk `chunk` is in the store.
    pub fn chunk_stored(&self, chunk: &str) -> Result<(), StoreError> {
        self.store.locked(|db| {
            if let Some(v) = db.get_pinned(chunk_key(chunk))? {
                let mut record = ChunkRecord::decode(&v);
                record.stored = true;
                // Unsynced, as pins are: a flag lost in a crash only means the
                // chunk is stored again by its next upload.
                db.put(chunk_key(chunk), record.encode())?;
            }
            Ok(())
        })
    }

    /// Releases every chunk `image` pinned; the chunks no image holds any
    /// more (their records gone), for the collector.
    pub fn release_chunks(&self, image: &str) -> Result<Vec<String>, StoreError> {
        self.store.locked(|db| release_chunks(db, image))
    }

    /// How many images hold chunk `chunk`.
    pub fn chunk_holders(&self, chunk: &str) -> Result<u64, StoreError> {
        Ok(self
            .store
            .read(|db| {
                db.get_pinned(chunk_key(chunk))
                    .map(|v| v.map(|v| ChunkRecord::decode(&v)))
            })?
            .map_or(0, |r| r.holders))
    }
}

fn pin_chunk(db: &rocksdb::DB, image: &str, chunk: &str) -> Result<bool, StoreError> {
    let record = db
        .get_pinned(chunk_key(chunk))?
        .map(|v| ChunkRecord::decode(&v));
    let mut record = record.unwrap_or_default();
    let held_key = held_key(image, chunk);
    if db.get_pinned(&held_key)?.is_none() {
        record.holders += 1;
        let mut batch = rocksdb::WriteBatch::default();
        batch.put(&held_key, b"");
        batch.put(chunk_key(chunk), record.encode());
        // Not synced on its own: the synced write that makes the image
        // active syncs the log up to it, and a pin lost in a crash
        // belonged to an upload that never finished.
        db.write(batch)?;
    }
    Ok(!record.stored)
}

fn release_chunks(db: &rocksdb::DB, image: &str) -> Result<Vec<String>, StoreError> {
    let prefix = held_key(image, "");
    let mut batch = rocksdb::WriteBatch::default();
    let mut unheld = Vec::new();
    for item in db.prefix_iterator(&prefix) {
        let (k, _) = item?;
        if !k.starts_with(&prefix) {
            break;
        }
        let chunk = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        batch.delete(&k);
        let mut record = db
            .get_pinned(chunk_key(&chunk))?
            .map(|v| ChunkRecord::decode(&v))
            .unwrap_or_default();
        record.holders = record.holders.saturating_sub(1);
        if record.holders == 0 {
            batch.delete(chunk_key(&chunk));
            unheld.push(chunk);
        } else {
            batch.put(chunk_key(&chunk), record.encode());
        }
    }
    db.write_opt(batch, &synced())?;
    Ok(unheld)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_held_once_per_image_and_released_to_the_collector() {
        let dir = tempfile::tempdir().unwrap();
        let db = ImageDb::open(dir.path()).unwrap();
        assert!(
            db.pin_chunk("v1", "x").unwrap(),
            "a new chunk must be stored"
        );
        assert!(db.pin_chunk("v1", "x").unwrap(), "not stored yet");
        db.chunk_stored("x").unwrap();
        assert!(!db.pin_chunk("v2", "x").unwrap(), "stored: skip it");
        assert!(db.pin_chunk("v2", "y").unwrap());
        assert_eq!(db.chunk_holders("x").unwrap(), 2);
        assert_eq!(db.release_chunks("v1").unwrap(), Vec::<String>::new());
        assert_eq!(db.chunk_holders("x").unwrap(), 1);
        let mut unheld = db.release_chunks("v2").unwrap();
        unheld.sort();
        assert_eq!(unheld, ["x", "y"]);
        assert_eq!(db.chunk_holders("x").unwrap(), 0);
        assert!(
            db.pin_chunk("v3", "x").unwrap(),
            "a collected chunk is new again"
        );
    }
}
