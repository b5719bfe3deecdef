//! The queue of updates a device owes other nodes (listing rows for
//! container servers, container stats for account servers):
//! `q | about hash | target | [timestamp]` -> [`PendingUpdate`].
//!
//! An object write queues its rows in the same batch as the object record,
//! so a crash cannot keep one without the other. The updater delivers
//! entries and removes each unless a newer one replaced it meanwhile.

use super::keyspace::{Db, Durability, KeySpace};
use super::{DbResult, DeviceDb};
use crate::records::{PendingUpdate, Target};
use ring_tools::NameHash;
use rocksdb::WriteBatch;
use std::sync::MutexGuard;

const QUEUE: KeySpace<PendingUpdate> = KeySpace::new(b'q');

fn queue_key(about: &NameHash, target: &Target) -> Vec<u8> {
    let t =
        blake3::hash(format!("{}/{}/{}", target.addr, target.device, target.partition).as_bytes());
    QUEUE.key(&[&about.0, &t.as_bytes()[..8]])
}

/// The queue key of a listing row owed by an object write.
pub fn owed_row_key(about: &NameHash, update: &PendingUpdate) -> Vec<u8> {
    let mut key = queue_key(about, &update.target);
    key.extend_from_slice(&update.update.timestamp().0.to_be_bytes());
    key
}

impl DeviceDb {
    /// Queues a listing row with the object write that owes it. Each write's
    /// row has its own key (the row's timestamp is part of it): this path
    /// does not hold the queue key's lock, so it must never overwrite an
    /// entry that the updater may be removing.
    pub(super) fn queue_into(
        &self,
        batch: &mut WriteBatch,
        about: &NameHash,
        update: &PendingUpdate,
    ) {
        QUEUE.put(batch, &owed_row_key(about, update), update);
    }

    /// Queues updates on their own (container stats owed to accounts), in
    /// one batch, synced unless the caller syncs after. A newer update for
    /// the same thing and target replaces an older one.
    pub fn queue(&self, updates: &[(NameHash, PendingUpdate)], sync: bool) -> DbResult<()> {
        let keyed: Vec<(Vec<u8>, &PendingUpdate)> = updates
            .iter()
            .map(|(about, u)| (queue_key(about, &u.target), u))
            .collect();
        // Hold every key's stripe until the batch is written: otherwise the
        // updater could compare, find the entry it delivered, and delete the
        // newer one written in between. Stripes are taken in ascending order
        // (no caller holds one while queueing), so two queuers cannot deadlock.
        let mut stripes: Vec<usize> = keyed.iter().map(|(k, _)| Db::stripe(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _guards: Vec<MutexGuard<'_, ()>> =
            stripes.iter().map(|&i| self.db.lock_stripe(i)).collect();
        let mut batch = WriteBatch::default();
        for (key, u) in keyed {
            if let Some(old) = QUEUE.get(&self.db, &key)? {
                if old.update.timestamp() > u.update.timestamp() {
                    continue;
                }
            }
            QUEUE.put(&mut batch, &key, u);
        }
        let durability = if sync {
            Durability::Synced
        } else {
            Durability::Deferred
        };
        self.db.write(batch, durability)
    }

    /// Up to `max` queued updates, with their keys.
    pub fn queued(&self, max: usize) -> DbResult<Vec<(Vec<u8>, PendingUpdate)>> {
        let mut out = Vec::new();
        for item in self.db.rocks.prefix_iterator(QUEUE.key(&[])) {
            let (k, v) = item?;
            if k.first() != Some(&QUEUE.tag()) || out.len() >= max {
                break;
            }
            out.push((k.to_vec(), QUEUE.decode(&k, &v)?));
        }
        Ok(out)
    }

    pub fn queue_depth(&self) -> DbResult<u64> {
        let mut n = 0;
        for item in self.db.rocks.prefix_iterator(QUEUE.key(&[])) {
            if item?.0.first() != Some(&QUEUE.tag()) {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Removes a delivered update unless a newer one replaced it meanwhile.
    /// Deferred: losing a removal only means sending the update again.
    pub fn dequeue(&self, key: &[u8], delivered: &PendingUpdate) -> DbResult<()> {
        let _g = self.db.lock(key);
        if QUEUE.get(&self.db, key)?.as_ref() == Some(delivered) {
            let mut batch = WriteBatch::default();
            batch.delete(key);
            self.db.write(batch, Durability::Deferred)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hash_of, open, record};
    use super::*;
    use crate::records::{ObjectKind, ObjectRow, Update};
    use service_kit::timestamp::Timestamp;

    fn stats(ts: u64) -> PendingUpdate {
        PendingUpdate {
            target: Target {
                addr: "127.0.0.1:1".into(),
                device: "d1".into(),
                partition: 3,
            },
            update: Update::ObjectRow {
                account: "a".into(),
                container: "c".into(),
                object: "o".into(),
                row: ObjectRow {
                    timestamp: Timestamp(ts),
                    deleted: false,
                    size: 1,
                    etag: String::new(),
                    content_type: String::new(),
                },
            },
            immediate: false,
        }
    }

    #[test]
    fn newer_updates_replace_older_and_delivery_removes_them() {
        let (_dir, db) = open();
        let about = hash_of("a/c");
        db.queue(&[(about, stats(20))], true).unwrap();
        db.queue(&[(about, stats(10))], true).unwrap();
        let q = db.queued(10).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(
            q[0].1,
            stats(20),
            "an older update does not replace a newer"
        );
        // A newer update arrives while the older is being delivered: the
        // delivery does not remove it.
        db.queue(&[(about, stats(30))], true).unwrap();
        db.dequeue(&q[0].0, &q[0].1).unwrap();
        assert_eq!(db.queue_depth().unwrap(), 1);
        let q = db.queued(10).unwrap();
        db.dequeue(&q[0].0, &q[0].1).unwrap();
        assert_eq!(db.queue_depth().unwrap(), 0);
    }

    #[test]
    fn rows_owed_by_a_write_survive_reopening_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let db = DeviceDb::open(&path).unwrap();
            let h = hash_of("o");
            db.put_object(2, &h, &record("o", 7, ObjectKind::Data), &[stats(7)])
                .unwrap();
            // Dropped without a flush: the synced batch is in the WAL.
        }
        let db = DeviceDb::open(&path).unwrap();
        assert!(db.object(2, &hash_of("o")).unwrap().is_some());
        let q = db.queued(10).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].0, owed_row_key(&hash_of("o"), &stats(7)));
    }
}
