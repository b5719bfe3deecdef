//! The queue of updates a device owes other nodes:
//!
//! - `q | about hash | target` -> [`PendingUpdate`]: container stats owed to
//!   account servers; a newer update replaces an older one in place.
//! - `p | sequence` -> [`PendingUpdate`]: listing rows owed by object
//!   writes, queued in the same batch as the object record (a crash cannot
//!   keep one without the other), in the order they were queued.
//!
//! The updater delivers entries and removes them. Rows are ordered so that
//! it can read on from where it stopped ([`DeviceDb::rows_floor`]) instead
//! of stepping again over the deletions of every row already delivered,
//! which RocksDB keeps until compaction and which a busy node makes by the
//! hundred thousand.

use super::keyspace::{Db, Durability, KeySpace};
use super::{DbResult, DeviceDb};
use crate::records::{PendingUpdate, Target};
use ring_tools::NameHash;
use rocksdb::{Direction, IteratorMode, WriteBatch};
use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

const QUEUE: KeySpace<PendingUpdate> = KeySpace::new(b'q');
const OWED_ROWS: KeySpace<PendingUpdate> = KeySpace::new(b'p');

fn row_key(seq: u64) -> Vec<u8> {
    OWED_ROWS.key(&[&seq.to_be_bytes()])
}

/// Sequence numbers of owed rows: the next one, and those handed out to
/// writes not yet committed (which may still appear below rows already
/// visible).
pub(super) struct RowSequence {
    state: Mutex<(u64, BTreeSet<u64>)>,
}

impl RowSequence {
    /// Continues after the last row a device holds.
    pub(super) fn open(db: &Db) -> DbResult<RowSequence> {
        let end = [
            OWED_ROWS.tag(),
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
        ];
        let mut next = 0;
        if let Some(item) = db
            .rocks
            .iterator(IteratorMode::From(&end, Direction::Reverse))
            .next()
        {
            let (k, _) = item?;
            if k.first() == Some(&OWED_ROWS.tag()) {
                let seq = <[u8; 8]>::try_from(&k[1..])
                    .map_err(|_| super::DbError::Malformed(hex::encode(&k)))?;
                next = u64::from_be_bytes(seq) + 1;
            }
        }
        Ok(RowSequence {
            state: Mutex::new((next, BTreeSet::new())),
        })
    }

    fn lock(&self) -> MutexGuard<'_, (u64, BTreeSet<u64>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Row sequence numbers held by a write until it has committed or failed.
pub(super) struct RowReservation<'a> {
    sequence: &'a RowSequence,
    seqs: Vec<u64>,
}

impl Drop for RowReservation<'_> {
    fn drop(&mut self) {
        let mut st = self.sequence.lock();
        for s in &self.seqs {
            st.1.remove(s);
        }
    }
}

fn queue_key(about: &NameHash, target: &Target) -> Vec<u8> {
    let t =
        blake3::hash(format!("{}/{}/{}", target.addr, target.device, target.partition).as_bytes());
    QUEUE.key(&[&about.0, &t.as_bytes()[..8]])
}

impl DeviceDb {
    /// Queues the listing rows an object write owes into its batch, each
    /// under a key of its own. The reservation must live until the batch
    /// is written (or has failed).
    pub(super) fn queue_rows_into(
        &self,
        batch: &mut WriteBatch,
        owed: &[PendingUpdate],
    ) -> RowReservation<'_> {
        let seqs: Vec<u64> = {
            let mut st = self.rows.lock();
            let first = st.0;
            st.0 += owed.len() as u64;
            let seqs: Vec<u64> = (first..st.0).collect();
            st.1.extend(&seqs);
            seqs
        };
        for (seq, update) in seqs.iter().zip(owed) {
            OWED_ROWS.put(batch, &row_key(*seq), update);
        }
        RowReservation {
            sequence: &self.rows,
            seqs,
        }
    }

    /// Where the updater's next look at the rows may start: every row
    /// queued from here on, or still being committed, is at or after it.
    /// Taken before a look, the start of the next is the lowest of this,
    /// the first row that look left behind, and the end of what it read.
    pub fn rows_floor(&self) -> Vec<u8> {
        let st = self.rows.lock();
        row_key(st.1.first().copied().unwrap_or(st.0))
    }

    /// The start of the rows (after a restart, or for a full look).
    pub fn rows_start() -> Vec<u8> {
        row_key(0)
    }

    /// Whether a queue key is an owed row's (not container stats').
    pub fn is_owed_row(key: &[u8]) -> bool {
        key.first() == Some(&OWED_ROWS.tag())
    }

    /// The key just after `key`.
    pub fn after(key: &[u8]) -> Vec<u8> {
        let mut k = key.to_vec();
        k.push(0);
        k
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

    /// Up to `max` queued updates with their keys: container stats, then
    /// owed rows from `rows_from` on, in the order they were queued.
    pub fn queued(&self, rows_from: &[u8], max: usize) -> DbResult<Vec<(Vec<u8>, PendingUpdate)>> {
        let mut out = Vec::new();
        for (space, from) in [(&QUEUE, QUEUE.key(&[])), (&OWED_ROWS, rows_from.to_vec())] {
            let iter = self
                .db
                .rocks
                .iterator(IteratorMode::From(&from, Direction::Forward));
            for item in iter {
                let (k, v) = item?;
                if k.first() != Some(&space.tag()) || out.len() >= max {
                    break;
                }
                out.push((k.to_vec(), space.decode(&k, &v)?));
            }
        }
        Ok(out)
    }

    pub fn queue_depth(&self) -> DbResult<u64> {
        let mut n = 0;
        for space in [&QUEUE, &OWED_ROWS] {
            for item in self.db.rocks.prefix_iterator(space.key(&[])) {
                if item?.0.first() != Some(&space.tag()) {
                    break;
                }
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes delivered updates: the owed rows (each under a key of its
    /// own) in one batch, stats one by one, each unless a newer one
    /// replaced it meanwhile. Deferred: losing a removal only means sending
    /// the update again.
    pub fn dequeue_all(&self, delivered: &[(Vec<u8>, PendingUpdate)]) -> DbResult<()> {
        let mut rows = WriteBatch::default();
        for (key, update) in delivered {
            if key.first() == Some(&OWED_ROWS.tag()) {
                rows.delete(key);
            } else {
                self.dequeue_stats(key, update)?;
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        self.db.write(rows, Durability::Deferred)
    }

    /// Removes delivered stats, compared under their key's lock.
    fn dequeue_stats(&self, key: &[u8], delivered: &PendingUpdate) -> DbResult<()> {
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
                link: None,
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
        let q = db.queued(&DeviceDb::rows_start(), 10).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(
            q[0].1,
            stats(20),
            "an older update does not replace a newer"
        );
        // A newer update arrives while the older is being delivered: the
        // delivery does not remove it.
        db.queue(&[(about, stats(30))], true).unwrap();
        db.dequeue_all(&q[..1]).unwrap();
        assert_eq!(db.queue_depth().unwrap(), 1);
        let q = db.queued(&DeviceDb::rows_start(), 10).unwrap();
        db.dequeue_all(&q[..1]).unwrap();
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
        let q = db.queued(&DeviceDb::rows_start(), 10).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].1, stats(7));
        // New rows go after it, never under its key.
        db.put_object(
            2,
            &hash_of("p"),
            &record("p", 8, ObjectKind::Data),
            &[stats(8)],
        )
        .unwrap();
        let q = db.queued(&DeviceDb::rows_start(), 10).unwrap();
        assert_eq!(
            q.iter().map(|e| e.1.clone()).collect::<Vec<_>>(),
            [stats(7), stats(8)]
        );
        assert!(q[0].0 < q[1].0);
    }

    #[test]
    fn the_rows_floor_stays_below_rows_not_yet_committed() {
        let (_dir, db) = open();
        let start = db.rows_floor();
        let mut batch = WriteBatch::default();
        let held = db.queue_rows_into(&mut batch, &[stats(1)]);
        // A later write commits first: a look now must not move past the
        // row still being written.
        db.put_object(
            2,
            &hash_of("x"),
            &record("x", 5, ObjectKind::Data),
            &[stats(5)],
        )
        .unwrap();
        assert_eq!(db.rows_floor(), start);
        let seen = db.queued(&start, 10).unwrap();
        assert_eq!(seen.len(), 1);
        db.db.write(batch, Durability::Synced).unwrap();
        drop(held);
        assert!(db.rows_floor() > DeviceDb::after(&seen[0].0));
        // Read on from the lowest of the floor taken before and the end of
        // what was read: the late row is found.
        let from = std::cmp::min(start, DeviceDb::after(&seen[0].0));
        let again = db.queued(&from, 10).unwrap();
        assert!(again.iter().any(|e| e.1 == stats(1)));
    }
}
