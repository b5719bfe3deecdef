//! The envelope and primitive encoding shared by ring and builder files.
//!
//! A file is `magic(8) | version u32 | total length u64 | body | blake3(32)`,
//! all little-endian. The length lets a truncated file be named as such; the
//! trailing blake3 covers everything before it, so a file is verified whole
//! before a single field is trusted. The encoding has no maps and no floats
//! formatted as text, so equal values always give byte-identical files.

use crate::error::{Error, Result};

const HEADER_LEN: usize = 8 + 4 + 8;
const CHECKSUM_LEN: usize = 32;

/// Wraps `body` in the envelope.
pub(crate) fn seal(magic: &[u8; 8], version: u32, body: &[u8]) -> Vec<u8> {
    let total = (HEADER_LEN + body.len() + CHECKSUM_LEN) as u64;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Checks the envelope and returns the body and its blake3 (the file's identity).
pub(crate) fn open<'a>(
    kind: &'static str,
    magic: &[u8; 8],
    version: u32,
    bytes: &'a [u8],
) -> Result<(&'a [u8], [u8; 32])> {
    if bytes.len() < 8 || &bytes[..8] != magic {
        return Err(Error::BadMagic { expected: kind });
    }
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(Error::Truncated {
            expected: (HEADER_LEN + CHECKSUM_LEN) as u64,
            actual: bytes.len() as u64,
        });
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if found != version {
        return Err(Error::UnsupportedVersion {
            kind,
            found,
            supported: version,
        });
    }
    let total = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    if total != bytes.len() as u64 {
        if total > bytes.len() as u64 {
            return Err(Error::Truncated {
                expected: total,
                actual: bytes.len() as u64,
            });
        }
        return Err(Error::Malformed(format!(
            "header says {total} bytes but the file has {} (trailing data)",
            bytes.len()
        )));
    }
    let (content, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let computed = blake3::hash(content);
    // Not secret material, so a plain comparison is fine here.
    if computed.as_bytes() != sum {
        return Err(Error::ChecksumMismatch);
    }
    Ok((&content[HEADER_LEN..], *computed.as_bytes()))
}

#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    /// A string of at most 64 KiB, length-prefixed.
    pub fn str16(&mut self, s: &str) {
        let len = u16::try_from(s.len()).expect("caller validated string length");
        self.u16(len);
        self.buf.extend_from_slice(s.as_bytes());
    }
    pub fn str32(&mut self, s: &str) {
        self.u32(u32::try_from(s.len()).expect("string under 4 GiB"));
        self.buf.extend_from_slice(s.as_bytes());
    }
    pub fn u16_slice(&mut self, v: &[u16]) {
        self.buf.reserve(v.len() * 2);
        for x in v {
            self.u16(*x);
        }
    }
    pub fn u32_slice(&mut self, v: &[u32]) {
        self.buf.reserve(v.len() * 4);
        for x in v {
            self.u32(*x);
        }
    }
}

/// Bounds-checked reading: every read of hostile bytes ends in a value or an error.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| Error::Malformed(format!("{what} runs past the end of the file")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    pub fn f64(&mut self, what: &str) -> Result<f64> {
        Ok(f64::from_bits(self.u64(what)?))
    }
    pub fn str16(&mut self, what: &str) -> Result<String> {
        let n = self.u16(what)? as usize;
        self.utf8(n, what)
    }
    pub fn str32(&mut self, what: &str) -> Result<String> {
        let n = self.u32(what)? as usize;
        self.utf8(n, what)
    }
    fn utf8(&mut self, n: usize, what: &str) -> Result<String> {
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::Malformed(format!("{what} is not valid UTF-8")))
    }
    /// Reads `count` u16s; the length is checked against the file before allocating.
    pub fn u16_vec(&mut self, count: usize, what: &str) -> Result<Vec<u16>> {
        let bytes = self.take(
            count
                .checked_mul(2)
                .ok_or_else(|| Error::Malformed(format!("{what} is too large")))?,
            what,
        )?;
        Ok(bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    }
    pub fn u32_vec(&mut self, count: usize, what: &str) -> Result<Vec<u32>> {
        let bytes = self.take(
            count
                .checked_mul(4)
                .ok_or_else(|| Error::Malformed(format!("{what} is too large")))?,
            what,
        )?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }
    pub fn finish(&self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(Error::Malformed(format!(
                "{} unexpected bytes after the last field",
                self.buf.len() - self.pos
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"TESTFILE";

    #[test]
    fn round_trip_and_every_damage_is_named() {
        let sealed = seal(MAGIC, 3, b"hello");
        let (body, _) = open("test", MAGIC, 3, &sealed).unwrap();
        assert_eq!(body, b"hello");

        assert!(matches!(
            open("test", MAGIC, 4, &sealed),
            Err(Error::UnsupportedVersion { found: 3, .. })
        ));
        assert!(matches!(
            open("test", b"OTHERMAG", 3, &sealed),
            Err(Error::BadMagic { .. })
        ));
        for cut in [0, 5, 10, 20, sealed.len() - 1] {
            let r = open("test", MAGIC, 3, &sealed[..cut]);
            assert!(
                matches!(
                    r,
                    Err(Error::Truncated { .. }) | Err(Error::BadMagic { .. })
                ),
                "cut at {cut}: {r:?}"
            );
        }
        for i in 20..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert!(matches!(
                open("test", MAGIC, 3, &bad),
                Err(Error::ChecksumMismatch)
            ));
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(matches!(
            open("test", MAGIC, 3, &longer),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut w = Writer::default();
        w.u32(1_000_000); // claims a huge vector
        let mut r = Reader::new(&w.buf);
        let n = r.u32("count").unwrap() as usize;
        assert!(r.u16_vec(n, "table").is_err());
        let mut r = Reader::new(&[0xff, 0xff]);
        assert!(r.str16("name").is_err());
    }
}
