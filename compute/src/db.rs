//! The compute API's records, as JSON under a key per kind
//! (`flavor/<id>`, `server/<id>`, `host/<name>`, `keypair/<user>/<name>`,
//! `fixed_ip/<network>/<address>`, `security_group/<account>/<name>`)
//! in the shared [`JsonStore`] (each write synced).

use serde::de::DeserializeOwned;
use serde::Serialize;
use service_kit::json_store::{JsonStore, StoreError};
use std::path::Path;

/// The kinds of record, each its own key prefix.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Flavor,
    Server,
    Host,
    /// Key pairs, by `<hex of the user id>/<name>`: a user's own prefix.
    KeyPair,
    /// Addresses handed out, by `<network id>/<address>`.
    FixedIp,
    /// Security groups with their rules, by `<hex of the account>/<hex of
    /// the name>`: a name is taken once, however many create it at once.
    SecurityGroup,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Flavor => "flavor/",
            Kind::Server => "server/",
            Kind::Host => "host/",
            Kind::KeyPair => "keypair/",
            Kind::FixedIp => "fixed_ip/",
            Kind::SecurityGroup => "security_group/",
        }
    }

    fn key(self, id: &str) -> String {
        format!("{}{id}", self.prefix())
    }
}

pub struct ComputeDb {
    store: JsonStore,
}

impl ComputeDb {
    pub fn open(path: &Path) -> Result<ComputeDb, StoreError> {
        Ok(ComputeDb {
            store: JsonStore::open(path)?,
        })
    }

    pub fn get<T: DeserializeOwned>(&self, kind: Kind, id: &str) -> Result<Option<T>, StoreError> {
        self.store.get(&kind.key(id))
    }

    pub fn put<T: Serialize>(&self, kind: Kind, id: &str, value: &T) -> Result<(), StoreError> {
        self.store.put(&kind.key(id), value)
    }

    /// Writes a new record; `false` (and nothing written) if the id is taken.
    pub fn insert<T: Serialize>(
        &self,
        kind: Kind,
        id: &str,
        value: &T,
    ) -> Result<bool, StoreError> {
        self.store.insert(&kind.key(id), value)
    }

    /// Changes a record atomically with respect to every other write
    /// (`change` may refuse).
    pub fn update<T, E>(
        &self,
        kind: Kind,
        id: &str,
        change: impl FnOnce(&mut T) -> Result<(), E>,
    ) -> Result<service_kit::json_store::Updated<T, E>, StoreError>
    where
        T: Serialize + DeserializeOwned,
    {
        self.store.update(&kind.key(id), change)
    }

    pub fn delete(&self, kind: Kind, id: &str) -> Result<(), StoreError> {
        self.store.delete(&kind.key(id))
    }

    /// Every record of a kind, in key order.
    pub fn all<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>, StoreError> {
        self.store.scan(kind.prefix())
    }

    /// The records of a kind whose ids start with `prefix`, in key order.
    pub fn all_under<T: DeserializeOwned>(
        &self,
        kind: Kind,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.store.scan(&kind.key(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{classic_flavors, Flavor};

    /// The store itself is tested in service-kit; this checks the kinds.
    #[test]
    fn kinds_are_prefixes_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let db = ComputeDb::open(&dir.path().join("compute")).unwrap();
        for f in classic_flavors() {
            db.put(Kind::Flavor, &f.id, &f).unwrap();
        }
        db.put(Kind::Host, "1", &"a host, not a flavor").unwrap();
        db.delete(Kind::Flavor, "2").unwrap();
        let names: Vec<String> = db
            .all::<Flavor>(Kind::Flavor)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["m1.tiny", "m1.medium"]);
        assert!(db.get::<Flavor>(Kind::Flavor, "1").unwrap().is_some());
        assert!(
            db.get::<Flavor>(Kind::Host, "1").is_err(),
            "a host is no flavor"
        );
    }
}
