//! S3's additional checksums (CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256):
//! computed as a body passes the proxy, checked against the value the
//! client sent (in a header before the body, or in an aws-chunked trailer
//! after it), and kept with the object as system metadata. A body whose
//! checksum differs is refused before any node commits it.
//!
//! Multipart objects get a checksum of their part checksums: for SHA-1,
//! SHA-256 and (by default) CRC32/CRC32C the "composite" checksum, the
//! checksum of the concatenated binary part checksums with `-N`
//! appended; for CRC64NVME (and CRC32/CRC32C on request) the checksum of
//! the whole object, combined from the parts' CRCs and lengths, as S3
//! specifies.

use base64::Engine;
use crc_fast::{CrcAlgorithm, Digest as Crc};
use sha1::Digest as _;

/// A checksum algorithm S3 defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// The lower-case name in header names (`x-amz-checksum-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "crc32",
            Algorithm::Crc32c => "crc32c",
            Algorithm::Crc64Nvme => "crc64nvme",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
        }
    }

    /// From a name as clients write it (`CRC32`, `crc64nvme`...).
    pub fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The header (and trailer) that carries a value.
    pub fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name())
    }

    /// The system metadata key a stored value lives under.
    pub fn sysmeta_key(self) -> String {
        format!("s3-checksum-{}", self.name())
    }

    /// Bytes in a value.
    fn len(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }

    fn crc(self) -> Option<CrcAlgorithm> {
        match self {
            Algorithm::Crc32 => Some(CrcAlgorithm::Crc32IsoHdlc),
            Algorithm::Crc32c => Some(CrcAlgorithm::Crc32Iscsi),
            Algorithm::Crc64Nvme => Some(CrcAlgorithm::Crc64Nvme),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
    }

    /// Whether a value is well formed: base64 of the right length.
    pub fn decode(self, value: &str) -> Option<Vec<u8>> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()?;
        (raw.len() == self.len()).then_some(raw)
    }
}

/// The checksum of one body, as it passes.
pub struct Hasher {
    algorithm: Algorithm,
    state: State,
}

enum State {
    Crc(Crc),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        let state = match algorithm.crc() {
            Some(c) => State::Crc(Crc::new(c)),
            None if algorithm == Algorithm::Sha1 => State::Sha1(sha1::Sha1::new()),
            None => State::Sha256(sha2::Sha256::new()),
        };
        Hasher { algorithm, state }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc(c) => c.update(data),
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
        }
    }

    /// The value, base64 as S3 writes it.
    pub fn finish(self) -> String {
        let raw = match self.state {
            State::Crc(c) => crc_bytes(self.algorithm, c.finalize()),
            State::Sha1(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
        };
        encode(&raw)
    }
}

fn crc_bytes(algorithm: Algorithm, crc: u64) -> Vec<u8> {
    let be = crc.to_be_bytes();
    be[8 - algorithm.len()..].to_vec()
}

fn encode(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Where the value a body is checked against comes from.
pub enum Expected {
    /// Nothing to check: the value is computed and kept.
    Nothing,
    /// A header sent before the body.
    Value(String),
    /// A trailer, readable once the body has ended (`None`: it never came).
    Trailer(Box<dyn FnOnce() -> Option<String> + Send + Sync>),
}

/// The checksum a write computes, checks and keeps.
pub struct ChecksumCheck {
    pub algorithm: Algorithm,
    pub expected: Expected,
}

/// A body whose checksum is not the one the client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The {} you specified did not match the calculated checksum.", .algorithm.name().to_uppercase())]
pub struct Mismatch {
    pub algorithm: Algorithm,
}

impl ChecksumCheck {
    /// Checks the computed value; the value to keep.
    pub fn verify(self, computed: String) -> Result<String, Mismatch> {
        let sent = match self.expected {
            Expected::Nothing => return Ok(computed),
            Expected::Value(v) => Some(v),
            Expected::Trailer(read) => read(),
        };
        match sent {
            Some(v) if v.trim() == computed => Ok(computed),
            _ => Err(Mismatch {
                algorithm: self.algorithm,
            }),
        }
    }
}

/// How a multipart object's checksum covers its parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultipartKind {
    /// The checksum of the part checksums, `-N` appended.
    Composite,
    /// The checksum of the whole object (CRCs only).
    FullObject,
}

impl MultipartKind {
    pub fn parse(v: &str) -> Option<MultipartKind> {
        match v.trim().to_ascii_uppercase().as_str() {
            "COMPOSITE" => Some(MultipartKind::Composite),
            "FULL_OBJECT" => Some(MultipartKind::FullObject),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MultipartKind::Composite => "COMPOSITE",
            MultipartKind::FullObject => "FULL_OBJECT",
        }
    }

    /// S3's default for an algorithm, and whether it allows `self`.
    pub fn default_for(algorithm: Algorithm) -> MultipartKind {
        match algorithm {
            Algorithm::Crc64Nvme => MultipartKind::FullObject,
            _ => MultipartKind::Composite,
        }
    }

    pub fn allowed(self, algorithm: Algorithm) -> bool {
        match self {
            MultipartKind::Composite => algorithm != Algorithm::Crc64Nvme,
            MultipartKind::FullObject => algorithm.crc().is_some(),
        }
    }
}

/// A multipart object's checksum from its parts' `(value, length)`; `None`
/// if a part's value is malformed.
pub fn multipart(
    algorithm: Algorithm,
    kind: MultipartKind,
    parts: &[(String, u64)],
) -> Option<String> {
    match kind {
        MultipartKind::Composite => {
            let mut h = Hasher::new(algorithm);
            for (value, _) in parts {
                h.update(&algorithm.decode(value)?);
            }
            Some(format!("{}-{}", h.finish(), parts.len()))
        }
        MultipartKind::FullObject => {
            let crc = algorithm.crc()?;
            let mut whole: Option<u64> = None;
            for (value, len) in parts {
                let raw = algorithm.decode(value)?;
                let mut be = [0u8; 8];
                be[8 - raw.len()..].copy_from_slice(&raw);
                let part = u64::from_be_bytes(be);
                whole = Some(match whole {
                    None => part,
                    Some(w) => crc_fast::checksum_combine(crc, w, part, *len),
                });
            }
            let whole = whole.unwrap_or_else(|| Crc::new(crc).finalize());
            Some(encode(&crc_bytes(algorithm, whole)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(a: Algorithm, data: &[u8]) -> String {
        let mut h = Hasher::new(a);
        h.update(data);
        h.finish()
    }

    /// Values as AWS documents and its SDKs compute them for "hello world".
    #[test]
    fn known_values() {
        let d = b"hello world";
        assert_eq!(of(Algorithm::Crc32, d), "DUoRhQ==");
        assert_eq!(of(Algorithm::Crc32c, d), "yZRlqg==");
        assert_eq!(of(Algorithm::Crc64Nvme, d), "jSnVw/bqjr4=");
        assert_eq!(of(Algorithm::Sha1, d), "Kq5sNclPz7QV2+lfQIuc6R7oRu0=");
        assert_eq!(
            of(Algorithm::Sha256, d),
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
        );
    }

    #[test]
    fn a_wrong_or_missing_value_is_a_mismatch() {
        let check = |expected| {
            ChecksumCheck {
                algorithm: Algorithm::Crc32,
                expected,
            }
            .verify(of(Algorithm::Crc32, b"hello world"))
        };
        assert_eq!(
            check(Expected::Value("DUoRhQ==".into())).unwrap(),
            "DUoRhQ=="
        );
        assert!(check(Expected::Value("AAAAAA==".into())).is_err());
        assert!(check(Expected::Trailer(Box::new(|| None))).is_err());
        assert!(check(Expected::Trailer(Box::new(|| Some("DUoRhQ==".into())))).is_ok());
        assert_eq!(check(Expected::Nothing).unwrap(), "DUoRhQ==");
    }

    /// A full-object CRC combined from parts equals the CRC of the whole;
    /// a composite one is the checksum of the part checksums.
    #[test]
    fn multipart_checksums() {
        let (a, b) = (vec![7u8; 5 << 20], vec![9u8; 1234]);
        let whole: Vec<u8> = [a.clone(), b.clone()].concat();
        for alg in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let parts = [(of(alg, &a), a.len() as u64), (of(alg, &b), b.len() as u64)];
            assert_eq!(
                multipart(alg, MultipartKind::FullObject, &parts).unwrap(),
                of(alg, &whole)
            );
        }
        let parts = [
            (of(Algorithm::Sha256, &a), a.len() as u64),
            (of(Algorithm::Sha256, &b), b.len() as u64),
        ];
        let raw: Vec<u8> = parts
            .iter()
            .flat_map(|(v, _)| Algorithm::Sha256.decode(v).unwrap())
            .collect();
        assert_eq!(
            multipart(Algorithm::Sha256, MultipartKind::Composite, &parts).unwrap(),
            format!("{}-2", of(Algorithm::Sha256, &raw))
        );
        assert!(multipart(
            Algorithm::Sha1,
            MultipartKind::Composite,
            &[("bad".into(), 1)]
        )
        .is_none());
    }
}
