//! Random access to an image's bytes. Inspection reads only headers and
//! tables through this, so a 10 GiB image costs a few small reads.

use super::InspectError;
use std::io;

/// The most a single inspection read may ask for: tables and descriptors
/// bigger than this are refused rather than allocated.
pub const MAX_READ: u64 = 4 << 20;

pub trait Source {
    /// Total length in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; the caller has checked the range is inside.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// Bytes in memory (tests, fuzzing, small uploads).
impl Source for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start
            .checked_add(buf.len())
            .filter(|e| *e <= self.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&self[start..end]);
        Ok(())
    }
}

impl Source for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_exact_at(offset, buf)
    }
}

/// A file on disk, read with `pread` (no shared cursor).
pub struct FileSource {
    file: std::fs::File,
    size: u64,
}

impl FileSource {
    pub fn open(path: &std::path::Path) -> io::Result<FileSource> {
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        Ok(FileSource { file, size })
    }
}

impl Source for FileSource {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }
}

/// A window `[start, start + len)` of another source (a member of an OVA).
pub struct Window<'a> {
    pub inner: &'a dyn Source,
    pub start: u64,
    pub len: u64,
}

impl Source for Window<'_> {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.inner.read_exact_at(self.start + offset, buf)
    }
}

/// `len` bytes at `offset`, or a clear error when the image is shorter
/// than that (the header claims more than the file holds) or the read is
/// unreasonably large.
pub fn read(
    src: &dyn Source,
    format: &'static str,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, InspectError> {
    if len > MAX_READ {
        return Err(InspectError::unsafe_image(
            format,
            format!("has a {len}-byte structure (more than {MAX_READ} allowed)"),
        ));
    }
    within(src, format, offset, len)?;
    let mut buf = vec![0u8; len as usize];
    src.read_exact_at(offset, &mut buf)
        .map_err(|e| InspectError::Io(e.to_string()))?;
    Ok(buf)
}

/// Rule 11: `[offset, offset + len)` lies inside the image. An end past any
/// possible file (the sum overflows) is past this one too.
pub fn within(
    src: &dyn Source,
    format: &'static str,
    offset: u64,
    len: u64,
) -> Result<(), InspectError> {
    let end = offset.saturating_add(len);
    if end > src.size() {
        return Err(InspectError::Truncated {
            format,
            needed: end,
            size: src.size(),
        });
    }
    Ok(())
}

/// Like [`read`], but `None` when the range is past the end (for probing magic bytes).
pub fn peek(src: &dyn Source, offset: u64, len: usize) -> Option<Vec<u8>> {
    if offset.checked_add(len as u64)? > src.size() {
        return None;
    }
    let mut buf = vec![0u8; len];
    src.read_exact_at(offset, &mut buf).ok()?;
    Some(buf)
}

pub fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
pub fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
pub fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
pub fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
pub fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
