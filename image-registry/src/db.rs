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

use crate::image::Image;
use object_store::server::blocking;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt image record {0}: {1}")]
    Corrupt(String, serde_json::Error),
}

pub struct ImageDb {
    db: rocksdb::DB,
    /// Held across every read-modify-write and insert.
    writer: std::sync::Mutex<()>,
}

/// What [`ImageDb::update`] did.
#[derive(Debug)]
pub enum Updated<E> {
    /// The change was made; the record as written.
    Done(Box<Image>),
    /// The change refused itself (a state it does not apply to); nothing
    /// was written.
    Refused(E),
    /// No such image.
    Missing,
}

fn key(id: &str) -> Vec<u8> {
    format!("image/{id}").into_bytes()
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
    pub fn open(path: &Path) -> Result<ImageDb, DbError> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(4 << 20);
        opts.set_keep_log_file_num(2);
        Ok(ImageDb {
            db: rocksdb::DB::open(&opts, path)?,
            writer: std::sync::Mutex::new(()),
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<Image>, DbError> {
        match blocking(|| self.db.get_pinned(key(id)))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| DbError::Corrupt(id.to_string(), e)),
        }
    }

    fn write(&self, img: &Image) -> Result<(), DbError> {
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        let v = serde_json::to_vec(img).expect("images serialize");
        Ok(self.db.put_opt(key(&img.id), v, &w)?)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a new record; `false` (and nothing written) if the id is taken.
    pub fn insert(&self, img: &Image) -> Result<bool, DbError> {
        blocking(|| {
            let _held = self.lock();
            if self.db.get_pinned(key(&img.id))?.is_some() {
                return Ok(false);
            }
            self.write(img).map(|()| true)
        })
    }

    /// Reads the record, lets `change` modify it (or refuse), and writes
    /// it, atomically with respect to every other write: the
    /// compare-and-set that state transitions go through.
    pub fn update<E>(
        &self,
        id: &str,
        change: impl FnOnce(&mut Image) -> Result<(), E>,
    ) -> Result<Updated<E>, DbError> {
        blocking(|| {
            let _held = self.lock();
            let Some(v) = self.db.get_pinned(key(id))? else {
                return Ok(Updated::Missing);
            };
            let mut img: Image =
                serde_json::from_slice(&v).map_err(|e| DbError::Corrupt(id.to_string(), e))?;
            if let Err(e) = change(&mut img) {
                return Ok(Updated::Refused(e));
            }
            self.write(&img)?;
            Ok(Updated::Done(Box::new(img)))
        })
    }

    /// Deletes the record (under the writer lock, so no update is lost
    /// into a record that is gone).
    pub fn delete(&self, id: &str) -> Result<(), DbError> {
        blocking(|| {
            let _held = self.lock();
            let mut w = rocksdb::WriteOptions::default();
            w.set_sync(true);
            Ok(self.db.delete_opt(key(id), &w)?)
        })
    }

    /// Pins chunk `chunk` for `image` (once per image however often the
    /// image repeats it): whether the uploader must store the chunk, which
    /// is until someone has ([`Self::chunk_stored`]).
    pub fn pin_chunk(&self, image: &str, chunk: &str) -> Result<bool, DbError> {
        blocking(|| self.pin_chunk_now(image, chunk))
    }

    fn pin_chunk_now(&self, image: &str, chunk: &str) -> Result<bool, DbError> {
        let _held = self.lock();
        let record = self
            .db
            .get_pinned(chunk_key(chunk))?
            .map(|v| ChunkRecord::decode(&v));
        let mut record = record.unwrap_or_default();
        let held_key = held_key(image, chunk);
        if self.db.get_pinned(&held_key)?.is_none() {
            record.holders += 1;
            let mut batch = rocksdb::WriteBatch::default();
            batch.put(&held_key, b"");
            batch.put(chunk_key(chunk), record.encode());
            // Not synced on its own: the synced write that makes the image
            // active syncs the log up to it, and a pin lost in a crash
            // belonged to an upload that never finished.
            self.db.write(batch)?;
        }
        Ok(!record.stored)
    }

    /// Records that chunk `chunk` is in the store.
    pub fn chunk_stored(&self, chunk: &str) -> Result<(), DbError> {
        blocking(|| self.chunk_stored_now(chunk))
    }

    fn chunk_stored_now(&self, chunk: &str) -> Result<(), DbError> {
        let _held = self.lock();
        if let Some(v) = self.db.get_pinned(chunk_key(chunk))? {
            let mut record = ChunkRecord::decode(&v);
            record.stored = true;
            // Unsynced, as pins are: a flag lost in a crash only means the
            // chunk is stored again by its next upload.
            self.db.put(chunk_key(chunk), record.encode())?;
        }
        Ok(())
    }

    /// Releases every chunk `image` pinned; the chunks no image holds any
    /// more (their records gone), for the collector.
    pub fn release_chunks(&self, image: &str) -> Result<Vec<String>, DbError> {
        blocking(|| self.release_chunks_now(image))
    }

    fn release_chunks_now(&self, image: &str) -> Result<Vec<String>, DbError> {
        let _held = self.lock();
        let prefix = held_key(image, "");
        let mut batch = rocksdb::WriteBatch::default();
        let mut unheld = Vec::new();
        for item in self.db.prefix_iterator(&prefix) {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let chunk = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            batch.delete(&k);
            let mut record = self
                .db
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
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        self.db.write_opt(batch, &w)?;
        Ok(unheld)
    }

    /// How many images hold chunk `chunk`.
    pub fn chunk_holders(&self, chunk: &str) -> Result<u64, DbError> {
        Ok(blocking(|| self.db.get_pinned(chunk_key(chunk)))?
            .map_or(0, |v| ChunkRecord::decode(&v).holders))
    }

    pub fn all(&self) -> Result<Vec<Image>, DbError> {
        blocking(|| self.scan())
    }

    fn scan(&self) -> Result<Vec<Image>, DbError> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(b"image/") {
            let (k, v) = item?;
            if !k.starts_with(b"image/") {
                break;
            }
            let id = String::from_utf8_lossy(&k[6..]).into_owned();
            out.push(serde_json::from_slice(&v).map_err(|e| DbError::Corrupt(id, e))?);
        }
        Ok(out)
    }
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
