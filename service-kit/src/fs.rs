//! File-system tools every service uses: a file system's free space,
//! small files written atomically, and image-sized files written sparsely.

use std::io;
use std::path::Path;

/// Free (for unprivileged writers) and total bytes of a file system.
#[derive(Clone, Copy, Debug)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub free: u64,
    /// The file system's size.
    pub total: u64,
}

/// The space of the file system holding `path`; `None` if it cannot be read.
pub fn space(path: &Path) -> Option<Space> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is a plain C struct of integers; all-zero is valid.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(Space {
        free: s.f_bavail as u64 * s.f_frsize as u64,
        total: s.f_blocks as u64 * s.f_frsize as u64,
    })
}

/// Runs of zeros at least this long are left as holes.
const HOLE_MIN: usize = 4096;

/// Whether `bytes` is worth leaving as a hole (long and all zero).
pub fn is_hole(bytes: &[u8]) -> bool {
    bytes.len() >= HOLE_MIN && bytes.iter().all(|b| *b == 0)
}

/// Appends `bytes` at the file's position, as a hole when [`is_hole`]. A
/// file written this way must end with `set_len` to what was appended, so
/// that a trailing hole counts (blocking; the storage nodes', the
/// registry's and compute's writers of large files).
pub fn write_sparse(file: &mut std::fs::File, bytes: &[u8]) -> io::Result<()> {
    use std::io::{Seek, Write};
    if is_hole(bytes) {
        file.seek(io::SeekFrom::Current(bytes.len() as i64))?;
        Ok(())
    } else {
        file.write_all(bytes)
    }
}

/// Writes a small file whole or not at all: a temporary file beside it,
/// synced, renamed over `path`, and the directory synced (so that a crash
/// leaves the old content or the new, never a torn or empty file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        hex::encode(crate::ids::rand_bytes::<6>())
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_become_holes_and_the_length_stays() {
        use std::io::{Read, Seek};
        let mut f = tempfile::tempfile().unwrap();
        write_sparse(&mut f, &[1u8; 10]).unwrap();
        write_sparse(&mut f, &vec![0u8; 1 << 20]).unwrap();
        f.set_len(10 + (1 << 20)).unwrap();
        let mut data = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut data).unwrap();
        assert_eq!(data.len(), 10 + (1 << 20));
        assert!(data[10..].iter().all(|b| *b == 0));
        assert!(!is_hole(&[0u8; 100]), "short runs are written");
        let root = space(Path::new("/")).expect("statvfs of /");
        assert!(root.total >= root.free);
    }
}
