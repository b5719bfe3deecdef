//! Swapping in a changed ring file while a service keeps running.
//!
//! Readers call [`LiveRing::current`] per request and get an `Arc<Ring>` that
//! stays valid for as long as they hold it; a reload replaces the pointer
//! atomically, so a request never sees half of one ring and half of another.
//! A file that fails to load (mid-copy, corrupt, wrong cluster) is refused and
//! the old ring stays in service.

use crate::error::{Error, Result};
use crate::placement::HashSecret;
use crate::ring::Ring;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

/// What we compare to notice a new file cheaply, before reading it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Result<FileStamp> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

pub struct LiveRing {
    path: PathBuf,
    secret: Option<HashSecret>,
    current: ArcSwap<Ring>,
    seen: Mutex<FileStamp>,
}

impl LiveRing {
    /// Loads the ring at `path`; with `secret`, a ring for another cluster is refused.
    pub fn open(path: impl Into<PathBuf>, secret: Option<HashSecret>) -> Result<LiveRing> {
        let path = path.into();
        let seen = stamp(&path)?;
        let ring = Self::load(&path, secret.as_ref())?;
        Ok(LiveRing {
            path,
            secret,
            current: ArcSwap::from_pointee(ring),
            seen: Mutex::new(seen),
        })
    }

    fn load(path: &Path, secret: Option<&HashSecret>) -> Result<Ring> {
        match secret {
            Some(s) => Ring::load_for_cluster(path, s),
            None => Ring::load(path),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ring in service now.
    pub fn current(&self) -> Arc<Ring> {
        self.current.load_full()
    }

    /// Reloads if the file changed. `Ok(true)`: a different ring is now in
    /// service. On error the ring in service is unchanged.
    pub fn reload_if_changed(&self) -> Result<bool> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamp(&self.path)?;
        if now == *seen {
            return Ok(false);
        }
        let ring = Self::load(&self.path, self.secret.as_ref())?;
        *seen = now;
        if ring.checksum() == self.current.load().checksum() {
            return Ok(false);
        }
        tracing::info!(
            path = %self.path.display(),
            generation = ring.generation(),
            checksum = %ring.checksum_hex(),
            "ring file changed; new ring in service"
        );
        self.current.store(Arc::new(ring));
        Ok(true)
    }

    /// Polls the file every `interval` on a background thread, which ends when
    /// the last `Arc<LiveRing>` is dropped.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> std::thread::JoinHandle<()> {
        let weak: Weak<LiveRing> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("ring-watch".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(live) = weak.upgrade() else { return };
                if let Err(e) = live.reload_if_changed() {
                    tracing::warn!(path = %live.path.display(), error = %e, "ring file not reloaded; keeping the ring in service");
                }
            })
            .expect("spawn ring watcher thread")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{NewDevice, RebalanceOptions, RingBuilder};

    fn ring_with(devices: u32) -> Ring {
        let secret = HashSecret::new("watch-prefix", "watch-suffix").unwrap();
        let mut b = RingBuilder::new(6, 1, 0, secret).unwrap();
        for n in 0..devices {
            b.add_device(NewDevice {
                region: 1,
                zone: n,
                ip: "127.0.0.1".into(),
                port: 6200 + n as u16,
                device: "d1".into(),
                weight: 1.0,
                meta: String::new(),
            })
            .unwrap();
        }
        b.rebalance(RebalanceOptions {
            seed: 0,
            now_minutes: 1,
        })
        .unwrap();
        b.build_ring().unwrap()
    }

    #[test]
    fn swaps_in_a_changed_ring_and_refuses_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.ring");
        let (a, b) = (ring_with(2), ring_with(3));
        a.save(&path).unwrap();
        let live = LiveRing::open(&path, None).unwrap();
        let held = live.current();
        assert!(!live.reload_if_changed().unwrap(), "unchanged file");

        b.save(&path).unwrap();
        assert!(live.reload_if_changed().unwrap());
        assert_eq!(live.current().checksum(), b.checksum());
        assert_eq!(
            held.checksum(),
            a.checksum(),
            "a reader keeps the ring it took"
        );

        std::fs::write(&path, b"half a ring").unwrap();
        assert!(live.reload_if_changed().is_err());
        assert_eq!(
            live.current().checksum(),
            b.checksum(),
            "the broken file is not served"
        );

        // A ring built for another cluster's secret is refused.
        let strict = LiveRing::open(dir.path().join("missing"), None);
        assert!(strict.is_err());
        a.save(&path).unwrap();
        let other = HashSecret::new("another-cluster", "x").unwrap();
        assert!(matches!(
            LiveRing::open(&path, Some(other)),
            Err(Error::SecretMismatch)
        ));
    }

    #[test]
    fn the_watcher_thread_notices_and_ends_with_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object.ring");
        ring_with(2).save(&path).unwrap();
        let live = Arc::new(LiveRing::open(&path, None).unwrap());
        let handle = live.watch(Duration::from_millis(10));
        let next = ring_with(4);
        next.save(&path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while live.current().checksum() != next.checksum() {
            assert!(
                std::time::Instant::now() < deadline,
                "watcher never reloaded"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(live);
        handle.join().unwrap();
    }
}
