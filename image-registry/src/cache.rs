//! A local cache of image files in front of the object store, as
//! glance-cache keeps one:
//! - only complete files are served (`complete/<id>`); a download or upload
//!   in progress lives in `incomplete/` and is renamed in when whole;
//! - last access is the file's mtime (touched on every hit), and a pruner
//!   removes the least recently used files while the total exceeds the cap;
//! - concurrent requests for one uncached image fetch it once.
//!
//! The compute hosts use the same module for their template cache.

#![cfg(feature = "service")]

use service_kit::server::blocking;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub struct Cache {
    /// Complete files, one per image id.
    complete: PathBuf,
    /// Files being written.
    incomplete: PathBuf,
    max_bytes: u64,
    /// One lock per image being fetched, so a second request waits for the
    /// first fetch instead of starting its own.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub pruned: AtomicU64,
}

/// One cached file.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Entry {
    pub id: String,
    /// The image's length.
    pub size: u64,
    /// What the copy takes on disk (a sparse image far less than its
    /// length): what the cap counts.
    pub disk_bytes: u64,
    /// Seconds since the Unix epoch.
    pub last_accessed: u64,
}

/// Which entries go so that the rest fit in `max_bytes`: least recently
/// used first.
pub fn victims(entries: &[Entry], max_bytes: u64) -> Vec<String> {
    let mut by_age: Vec<&Entry> = entries.iter().collect();
    by_age.sort_by_key(|e| (e.last_accessed, e.id.clone()));
    let mut total: u64 = entries.iter().map(|e| e.disk_bytes).sum();
    let mut out = Vec::new();
    for e in by_age {
        if total <= max_bytes {
            break;
        }
        total -= e.disk_bytes;
        out.push(e.id.clone());
    }
    out
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Cache {
    /// A cache in `root/complete` and `root/incomplete` (the registry's).
    pub fn open(root: &Path, max_bytes: u64) -> std::io::Result<Cache> {
        Cache::open_in(&root.join("complete"), &root.join("incomplete"), max_bytes)
    }

    /// A cache whose complete files are `dir/<id>` and whose partial ones
    /// are in `dir/.incomplete` (a compute host's `_base`).
    pub fn open_flat(dir: &Path, max_bytes: u64) -> std::io::Result<Cache> {
        Cache::open_in(dir, &dir.join(".incomplete"), max_bytes)
    }

    fn open_in(complete: &Path, incomplete: &Path, max_bytes: u64) -> std::io::Result<Cache> {
        // Partial files from before a restart are never served.
        if incomplete.exists() {
            std::fs::remove_dir_all(incomplete)?;
        }
        std::fs::create_dir_all(incomplete)?;
        std::fs::create_dir_all(complete)?;
        Ok(Cache {
            complete: complete.to_path_buf(),
            incomplete: incomplete.to_path_buf(),
            max_bytes,
            fetching: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
            pruned: AtomicU64::new(0),
        })
    }

    fn complete_path(&self, id: &str) -> Option<PathBuf> {
        valid_id(id).then(|| self.complete.join(id))
    }

    /// A complete cached file, its access time refreshed; counts a hit.
    pub fn lookup(&self, id: &str) -> Option<PathBuf> {
        blocking(|| self.touch(id))
    }

    /// The complete cached file of `id`, if there is one, without counting
    /// a hit (a read of one chunk of it).
    pub fn peek(&self, id: &str) -> Option<PathBuf> {
        self.complete_path(id).filter(|p| p.is_file())
    }

    fn touch(&self, id: &str) -> Option<PathBuf> {
        let path = self.complete_path(id)?;
        let f = std::fs::File::options().write(true).open(&path).ok()?;
        let _ = f.set_modified(SystemTime::now());
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(path)
    }

    /// A fresh path for a file being written.
    pub fn incomplete_path(&self, id: &str) -> PathBuf {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).expect("the OS random source works");
        self.incomplete.join(format!("{id}.{}", hex::encode(r)))
    }

    /// Makes a fully written (and synced) file the cached copy of `id`.
    pub fn commit(&self, written: &Path, id: &str) -> std::io::Result<PathBuf> {
        blocking(|| self.rename_in(written, id))
    }

    fn rename_in(&self, written: &Path, id: &str) -> std::io::Result<PathBuf> {
        let dest = self
            .complete_path(id)
            .ok_or_else(|| std::io::Error::other("invalid image id"))?;
        // A manifest beside the file (its chunks, for later fetches) moves
        // with it; the file goes first, so a sidecar never names a file
        // that is not yet whole.
        let _ = std::fs::remove_file(crate::chunks::sidecar(&dest));
        std::fs::rename(written, &dest)?;
        let _ = std::fs::rename(
            crate::chunks::sidecar(written),
            crate::chunks::sidecar(&dest),
        );
        self.prune();
        Ok(dest)
    }

    /// The cached file of `id`, fetching it with `fetch` (which writes the
    /// given path) if absent. Concurrent callers for one id share one fetch.
    pub async fn get_or_fetch<F, Fut, E>(&self, id: &str, fetch: F) -> Result<PathBuf, E>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<u64, E>>,
        E: From<std::io::Error>,
    {
        if let Some(p) = self.lookup(id) {
            return Ok(p);
        }
        let lock = self
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone();
        let _one = lock.lock().await;
        let result = async {
            if let Some(p) = self.lookup(id) {
                return Ok(p);
            }
            self.misses.fetch_add(1, Ordering::Relaxed);
            let temp = self.incomplete_path(id);
            match fetch(temp.clone()).await {
                Ok(bytes) => {
                    self.bytes_fetched.fetch_add(bytes, Ordering::Relaxed);
                    Ok(self.commit(&temp, id)?)
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    Err(e)
                }
            }
        }
        .await;
        self.fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        result
    }

    pub fn entries(&self) -> Vec<Entry> {
        blocking(|| self.list())
    }

    fn list(&self) -> Vec<Entry> {
        let Ok(dir) = std::fs::read_dir(&self.complete) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| {
                let id = e.file_name().to_string_lossy().into_owned();
                let meta = e.metadata().ok()?;
                if !meta.is_file() || !valid_id(&id) {
                    return None;
                }
                let last = meta
                    .modified()
                    .ok()?
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()?
                    .as_secs();
                Some(Entry {
                    id,
                    size: meta.len(),
                    disk_bytes: std::os::unix::fs::MetadataExt::blocks(&meta) * 512,
                    last_accessed: last,
                })
            })
            .collect()
    }

    /// Removes least recently used files until the cache fits its cap.
    pub fn prune(&self) -> Vec<String> {
        let gone = victims(&self.entries(), self.max_bytes);
        for id in &gone {
            self.remove(id);
            self.pruned.fetch_add(1, Ordering::Relaxed);
        }
        gone
    }

    /// Removes partial files (interrupted downloads and uploads) untouched
    /// for `stall` or longer, as Glance's cache cleaner does with stalled
    /// images; how many went. A partial file still being written is
    /// touched by its writer and stays.
    pub fn clean(&self, stall: std::time::Duration) -> usize {
        blocking(|| {
            let Ok(dir) = std::fs::read_dir(&self.incomplete) else {
                return 0;
            };
            let now = std::time::SystemTime::now();
            let mut cleaned = 0;
            for e in dir.flatten() {
                let stalled = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age >= stall);
                if !stalled {
                    continue;
                }
                let p = e.path();
                let gone = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                cleaned += usize::from(gone.is_ok());
            }
            cleaned
        })
    }

    /// Drops one image from the cache; whether it was there.
    pub fn remove(&self, id: &str) -> bool {
        self.complete_path(id).is_some_and(|p| {
            blocking(|| {
                let _ = std::fs::remove_file(crate::chunks::sidecar(&p));
                std::fs::remove_file(p)
            })
            .is_ok()
        })
    }

    /// Where complete copies live (their sidecars beside them).
    pub fn complete_dir(&self) -> &Path {
        &self.complete
    }

    /// Drops everything cached.
    pub fn purge(&self) -> usize {
        self.entries().iter().filter(|e| self.remove(&e.id)).count()
    }

    /// What the cached copies take on disk.
    pub fn used_bytes(&self) -> u64 {
        self.entries().iter().map(|e| e.disk_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: &str, size: u64, last: u64) -> Entry {
        Entry {
            id: id.into(),
            size,
            disk_bytes: size,
            last_accessed: last,
        }
    }

    #[test]
    fn the_least_recently_used_go_first() {
        let entries = [e("a", 40, 3), e("b", 40, 1), e("c", 40, 2)];
        assert_eq!(victims(&entries, 120), Vec::<String>::new());
        assert_eq!(victims(&entries, 100), ["b"]);
        assert_eq!(victims(&entries, 40), ["b", "c"]);
        assert_eq!(victims(&entries, 0), ["b", "c", "a"]);
    }

    #[tokio::test]
    async fn concurrent_misses_fetch_once_and_partials_are_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(dir.path(), 1 << 20).unwrap());
        let fetches = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("img-1", |path| async move {
                        fetches.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        std::fs::write(&path, b"whole image")?;
                        Ok::<u64, std::io::Error>(11)
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(std::fs::read(t.await.unwrap()).unwrap(), b"whole image");
        }
        assert_eq!(fetches.load(Ordering::Relaxed), 1);
        // A failed fetch leaves nothing behind and nothing is served.
        let failed = cache
            .get_or_fetch("img-2", |path| async move {
                std::fs::write(&path, b"half")?;
                Err::<u64, _>(std::io::Error::other("connection lost"))
            })
            .await;
        assert!(failed.is_err());
        assert!(cache.lookup("img-2").is_none());
        assert_eq!(
            std::fs::read_dir(dir.path().join("incomplete"))
                .unwrap()
                .count(),
            0
        );
        assert!(cache.lookup("../etc").is_none());
    }

    #[test]
    fn the_cap_is_enforced_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        // The cap counts disk blocks: three one-block files, room for two.
        let cache = Cache::open(dir.path(), 10_000).unwrap();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            let p = cache.incomplete_path(id);
            std::fs::write(&p, [1u8; 4096]).unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(100 + i as u64))
                .unwrap();
            cache.commit(&p, id).unwrap();
        }
        let mut left: Vec<String> = cache.entries().into_iter().map(|e| e.id).collect();
        left.sort();
        assert_eq!(left, ["b", "c"]);
    }
}
