//! Group commit: writers write to RocksDB without a sync, then wait for a
//! WAL sync that started after their write. One syncer thread per device
//! makes those syncs, each covering every write made while it waited, so
//! concurrent writers (and the listing rows queued with them) share one
//! sync. Async writers wait without holding a thread ([`GroupSync::durable`]):
//! a blocking-pool thread per waiting writer, and its wake-ups, cost a
//! loaded node more than the syncs did.

use super::{DbError, DbResult};
use rocksdb::DB;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long the syncer waits for writers already inside RocksDB to finish,
/// so that their writes share its sync.
const GROUP_WINDOW: Duration = Duration::from_micros(500);

/// A write is durable once WAL sync number `self.0` has finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[must_use = "a write is durable only once its ticket is waited for"]
pub struct SyncTicket(u64);

/// What the syncer has done so far, published after each sync.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    /// Every write made before sync number `finished` started is durable.
    finished: u64,
    /// The last sync that failed (0: none).
    failed: u64,
}

impl Progress {
    /// `None` while `t`'s sync is still to finish.
    fn outcome(&self, t: SyncTicket) -> Option<DbResult<()>> {
        if self.finished >= t.0 {
            Some(Ok(()))
        } else if self.failed >= t.0 {
            Some(Err(DbError::SyncFailed(format!("sync {}", self.failed))))
        } else {
            None
        }
    }
}

#[derive(Default)]
struct State {
    /// Syncs started.
    started: u64,
    /// The highest sync number a writer waits for.
    requested: u64,
    /// Writers between the start and the end of their unsynced write.
    writing: usize,
    /// The syncer sleeps on `wake_syncer`.
    syncer_waiting: bool,
    stop: bool,
    progress: Progress,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the syncer: a sync is requested, or the last writer it waits
    /// for is done.
    wake_syncer: Condvar,
    /// Wakes blocking waiters when a sync ends.
    synced: Condvar,
    /// Wakes async waiters when a sync ends.
    progress: watch::Sender<Progress>,
    syncs: AtomicU64,
    writes: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One device's group commit and its syncer thread (stopped on drop).
pub struct GroupSync {
    shared: Arc<Shared>,
    syncer: Option<JoinHandle<()>>,
}

impl GroupSync {
    pub fn start(rocks: Arc<DB>) -> GroupSync {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake_syncer: Condvar::new(),
            synced: Condvar::new(),
            progress: watch::Sender::new(Progress::default()),
            syncs: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        });
        let s = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("wal-syncer".into())
            .spawn(move || run_syncer(&s, &rocks))
            .expect("cannot start a thread");
        GroupSync {
            shared,
            syncer: Some(syncer),
        }
    }

    /// Runs `write` (an unsynced RocksDB write) and returns the ticket of
    /// the sync that makes it durable.
    pub fn write<T>(&self, write: impl FnOnce() -> DbResult<T>) -> DbResult<(T, SyncTicket)> {
        let s = &self.shared;
        s.writes.fetch_add(1, Ordering::Relaxed);
        s.lock().writing += 1;
        let written = write();
        let mut st = s.lock();
        st.writing -= 1;
        let ticket = request(s, st);
        Ok((written?, ticket))
    }

    /// The ticket of a sync that covers every write made so far.
    pub fn sync_point(&self) -> SyncTicket {
        request(&self.shared, self.shared.lock())
    }

    /// Waits (blocking the thread) until `t`'s sync has finished.
    pub fn wait(&self, t: SyncTicket) -> DbResult<()> {
        let s = &self.shared;
        let mut st = s.lock();
        loop {
            if let Some(outcome) = st.progress.outcome(t) {
                return outcome;
            }
            st = s.synced.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits (without holding a thread) until `t`'s sync has finished.
    pub async fn durable(&self, t: SyncTicket) -> DbResult<()> {
        let mut rx = self.shared.progress.subscribe();
        let seen = rx
            .wait_for(|p| p.outcome(t).is_some())
            .await
            .map_err(|_| DbError::SyncFailed("the syncer stopped".into()))?;
        seen.outcome(t).unwrap_or(Ok(()))
    }

    /// (WAL syncs made, grouped writes): their ratio is how many writes
    /// share a sync.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.syncs.load(Ordering::Relaxed),
            self.shared.writes.load(Ordering::Relaxed),
        )
    }
}

impl Drop for GroupSync {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake_syncer.notify_one();
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

/// Asks for the sync after the current one (any sync that starts from now
/// on covers what was written before) and wakes the syncer if it sleeps.
fn request(s: &Shared, mut st: MutexGuard<'_, State>) -> SyncTicket {
    let need = st.started + 1;
    let idle = st.requested <= st.started;
    st.requested = st.requested.max(need);
    // Asleep with nothing to do, or waiting for the last writer (gone now).
    if st.syncer_waiting && (idle || st.writing == 0) {
        st.syncer_waiting = false;
        s.wake_syncer.notify_one();
    }
    SyncTicket(need)
}

/// The syncer: sleeps until a sync is requested, lets writers already
/// inside RocksDB finish (at most [`GROUP_WINDOW`]), syncs the WAL and
/// publishes the result. Exits once stopped with nothing left to sync.
fn run_syncer(s: &Shared, rocks: &DB) {
    let mut st = s.lock();
    loop {
        if st.requested <= st.started {
            if st.stop {
                return;
            }
            st.syncer_waiting = true;
            st = s.wake_syncer.wait(st).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        let deadline = Instant::now() + GROUP_WINDOW;
        while st.writing > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            st.syncer_waiting = true;
            st = s
                .wake_syncer
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.syncer_waiting = false;
        st.started += 1;
        let mine = st.started;
        drop(st);
        let synced = rocks.flush_wal(true);
        s.syncs.fetch_add(1, Ordering::Relaxed);
        st = s.lock();
        match synced {
            Ok(()) => st.progress.finished = mine,
            Err(e) => {
                tracing::error!("WAL sync failed: {e}");
                st.progress.failed = mine;
            }
        }
        s.progress.send_replace(st.progress);
        s.synced.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::super::keyspace::Db;
    use rocksdb::WriteBatch;
    use std::sync::Arc;

    /// Writers that wait for their ticket asynchronously all land, each
    /// answered after a sync that started after its write, and they share
    /// syncs; a dropped database stops its syncer (the test would hang).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_waiters_share_syncs_and_see_their_writes_synced() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        let db = Arc::new(Db::new(rocksdb::DB::open(&opts, dir.path()).unwrap()));
        let mut tasks = Vec::new();
        for t in 0..16 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    let d = db.clone();
                    let ticket = tokio::task::spawn_blocking(move || {
                        let mut batch = WriteBatch::default();
                        batch.put(format!("k{t}-{i}"), b"v");
                        d.write_unsynced(batch).unwrap()
                    })
                    .await
                    .unwrap();
                    db.durable(ticket).await.unwrap();
                    // Answered: its sync (or a later one) has finished.
                    assert!(db.sync_point() > ticket);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let (syncs, writes) = db.group_counts();
        assert_eq!(writes, 16 * 40);
        assert!(
            syncs >= 1 && syncs < writes,
            "{syncs} syncs for {writes} writes"
        );
        for t in 0..16 {
            for i in 0..40 {
                assert!(db.rocks.get(format!("k{t}-{i}")).unwrap().is_some());
            }
        }
        drop(db);
        // The syncer let go of RocksDB: it opens again at once.
        rocksdb::DB::open(&opts, dir.path()).unwrap();
    }
}
