//! Image records in RocksDB (`image/<id>` -> JSON), each write synced.
//! Calls come from async handlers: each runs through `blocking`, so a
//! synced write does not stall the runtime's other tasks.

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

    pub fn put(&self, img: &Image) -> Result<(), DbError> {
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        let v = serde_json::to_vec(img).expect("images serialize");
        Ok(blocking(|| self.db.put_opt(key(&img.id), v, &w))?)
    }

    pub fn delete(&self, id: &str) -> Result<(), DbError> {
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(true);
        Ok(blocking(|| self.db.delete_opt(key(id), &w))?)
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
