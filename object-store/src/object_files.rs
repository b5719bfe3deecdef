//! Object bodies on a device's file system.
//!
//! Layout (as Swift's): `<device>/objects/<partition>/<suffix>/<hash>/<timestamp>.data`.
//! A body is written to `<device>/tmp/`, fsynced, renamed into place and the
//! directory fsynced before the write is acknowledged, so an acknowledged
//! object survives a crash and a torn write leaves only a temp file, which
//! is removed when the node starts.
//!
//! Bodies are written sparsely: a received chunk of at least 4 KiB of
//! zero bytes becomes a hole ([`service_kit::fs::is_hole`]) rather than written zeros (reads return the
//! same bytes), so a disk image that is mostly empty costs only its data
//! on each replica.

use ring_tools::NameHash;
use service_kit::fs::{is_hole, Space};
use service_kit::timestamp::Timestamp;
use std::io;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

#[derive(Clone, Debug)]
pub struct ObjectFiles {
    root: PathBuf,
}

impl ObjectFiles {
    /// Opens a device directory, removing temp files a crash left behind.
    pub fn open(root: &Path) -> io::Result<ObjectFiles> {
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        std::fs::create_dir_all(root.join("objects"))?;
        Ok(ObjectFiles {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Free (for unprivileged writers) and total bytes of the device's file system.
    pub fn space(&self) -> Option<Space> {
        service_kit::fs::space(&self.root)
    }

    /// Whether `incoming` more bytes fit while keeping `reserve` free. A
    /// device whose space cannot be read is given the benefit of the doubt:
    /// a real shortage still fails the write with ENOSPC.
    pub fn has_room(&self, incoming: u64, reserve: u64) -> bool {
        self.space()
            .is_none_or(|s| s.free >= incoming.saturating_add(reserve))
    }

    pub fn object_dir(&self, part: u32, hash: &NameHash) -> PathBuf {
        self.root
            .join("objects")
            .join(part.to_string())
            .join(hash.suffix())
            .join(hash.to_hex())
    }

    pub fn data_path(&self, part: u32, hash: &NameHash, ts: Timestamp) -> PathBuf {
        self.object_dir(part, hash).join(format!("{ts}.data"))
    }

    pub async fn create_temp(&self) -> io::Result<TempObject> {
        let name = format!("{}.{}.tmp", Timestamp::now(), std::process::id());
        let path = self.root.join("tmp").join(name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(TempObject {
            file: Some(file),
            path,
            len: 0,
        })
    }

    /// Removes an older version's body (after the newer one is committed).
    pub async fn remove(&self, part: u32, hash: &NameHash, ts: Timestamp) {
        let path = self.data_path(part, hash, ts);
        if let Err(e) = tokio::fs::remove_file(&path).await {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "could not remove old object version");
            }
        }
        // Leave empty directories; the replicator and reclaimer prune them.
    }
}

/// A body being received. Dropped without `commit`, its file is removed.
pub struct TempObject {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    /// Bytes received so far (holes included).
    len: u64,
}

impl TempObject {
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self.file.as_mut().expect("written after commit");
        if is_hole(bytes) {
            // The write before must be done before the position moves.
            file.flush().await?;
            file.seek(io::SeekFrom::Current(bytes.len() as i64)).await?;
        } else {
            file.write_all(bytes).await?;
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// fsync, rename into place, fsync the directory.
    pub async fn commit(mut self, dest: PathBuf) -> io::Result<()> {
        let mut file = self.file.take().expect("committed once");
        file.flush().await?;
        // A body that ends in a hole is as long as what was received.
        file.set_len(self.len).await?;
        file.sync_data().await?;
        drop(file);
        let from = self.path.clone();
        tokio::task::spawn_blocking(move || install(&from, &dest))
            .await
            .map_err(io::Error::other)??;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl ObjectFiles {
    /// Writes a body already in memory durably, all in the calling (blocking)
    /// thread: one hop to the blocking pool instead of one per system call.
    pub fn write_whole(&self, dest: &Path, data: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let temp = self.root.join("tmp").join(format!(
            "{}.{}.tmp",
            service_kit::timestamp::Timestamp::now(),
            std::process::id()
        ));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            f.write_all(data)?;
            f.sync_data()?;
            drop(f);
            install(&temp, dest)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

/// Renames a synced temp file into place and makes the new name durable:
/// the object's directory is fsynced, and so is the parent of every
/// directory this had to create.
fn install(from: &Path, dest: &Path) -> io::Result<()> {
    let dir = dest.parent().expect("data paths have a parent");
    match std::fs::rename(from, dest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut created = Vec::new();
            let mut d = dir;
            while !d.exists() {
                created.push(d.to_path_buf());
                d = d.parent().expect("the device root exists");
            }
            for c in created.iter().rev() {
                match std::fs::create_dir(c) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            std::fs::rename(from, dest)?;
            for c in &created {
                std::fs::File::open(c.parent().expect("has a parent"))?.sync_all()?;
            }
        }
        Err(e) => return Err(e),
    }
    std::fs::File::open(dir)?.sync_all()
}

impl Drop for TempObject {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
