//! The compute API's records in RocksDB, as JSON under a key per kind
//! (`flavor/<id>`, `server/<id>`, `host/<name>`), each write synced, each
//! call through `blocking` (they come from async handlers).

use object_store::server::blocking;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("corrupt record {0}: {1}")]
    Corrupt(String, serde_json::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The kinds of record, each its own key prefix.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Flavor,
    Server,
    Host,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Flavor => "flavor/",
            Kind::Server => "server/",
            Kind::Host => "host/",
        }
    }
}

pub struct ComputeDb {
    db: rocksdb::DB,
}

fn key(kind: Kind, id: &str) -> Vec<u8> {
    format!("{}{id}", kind.prefix()).into_bytes()
}

fn synced() -> rocksdb::WriteOptions {
    let mut w = rocksdb::WriteOptions::default();
    w.set_sync(true);
    w
}

impl ComputeDb {
    pub fn open(path: &Path) -> Result<ComputeDb, DbError> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(4 << 20);
        opts.set_keep_log_file_num(2);
        Ok(ComputeDb {
            db: rocksdb::DB::open(&opts, path)?,
        })
    }

    pub fn get<T: DeserializeOwned>(&self, kind: Kind, id: &str) -> Result<Option<T>, DbError> {
        match blocking(|| self.db.get_pinned(key(kind, id)))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| DbError::Corrupt(format!("{}{id}", kind.prefix()), e)),
        }
    }

    pub fn put<T: Serialize>(&self, kind: Kind, id: &str, value: &T) -> Result<(), DbError> {
        let v = serde_json::to_vec(value).expect("records serialize");
        Ok(blocking(|| self.db.put_opt(key(kind, id), v, &synced()))?)
    }

    pub fn delete(&self, kind: Kind, id: &str) -> Result<(), DbError> {
        Ok(blocking(|| self.db.delete_opt(key(kind, id), &synced()))?)
    }

    /// Every record of a kind, in key order.
    pub fn all<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>, DbError> {
        blocking(|| self.scan(kind))
    }

    fn scan<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>, DbError> {
        let prefix = kind.prefix().as_bytes();
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(prefix) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(
                serde_json::from_slice(&v)
                    .map_err(|e| DbError::Corrupt(String::from_utf8_lossy(&k).into_owned(), e))?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{classic_flavors, Flavor};

    #[test]
    fn records_survive_reopening_and_kinds_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = ComputeDb::open(dir.path()).unwrap();
            for f in classic_flavors() {
                db.put(Kind::Flavor, &f.id, &f).unwrap();
            }
            db.put(Kind::Host, "1", &"not a flavor").unwrap();
            db.delete(Kind::Flavor, "2").unwrap();
        }
        let db = ComputeDb::open(dir.path()).unwrap();
        let flavors: Vec<Flavor> = db.all(Kind::Flavor).unwrap();
        assert_eq!(
            flavors.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["m1.tiny", "m1.medium"]
        );
        let h: Option<String> = db.get(Kind::Host, "1").unwrap();
        assert_eq!(h.as_deref(), Some("not a flavor"));
        assert!(db.get::<Flavor>(Kind::Flavor, "2").unwrap().is_none());
    }
}
