//! Image records in RocksDB (`image/<id>` -> JSON), each write synced.
//! Calls come from async handlers: each runs through `blocking`, so a
//! synced write does not stall the runtime's other tasks.
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

    /// Deletes the record if `allow` accepts it as it is now.
    pub fn delete_if<E>(
        &self,
        id: &str,
        allow: impl FnOnce(&Image) -> Result<(), E>,
    ) -> Result<Updated<E>, DbError> {
        blocking(|| {
            let _held = self.lock();
            let Some(v) = self.db.get_pinned(key(id))? else {
                return Ok(Updated::Missing);
            };
            let img: Image =
                serde_json::from_slice(&v).map_err(|e| DbError::Corrupt(id.to_string(), e))?;
            if let Err(e) = allow(&img) {
                return Ok(Updated::Refused(e));
            }
            let mut w = rocksdb::WriteOptions::default();
            w.set_sync(true);
            self.db.delete_opt(key(id), &w)?;
            Ok(Updated::Done(Box::new(img)))
        })
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
