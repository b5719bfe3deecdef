//! The ring crate's one error type: every failure an operator or a service can meet.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a {expected} file (bad magic number)")]
    BadMagic { expected: &'static str },
    #[error("unsupported {kind} file version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        kind: &'static str,
        found: u32,
        supported: u32,
    },
    #[error("file is truncated: header says {expected} bytes, found {actual}")]
    Truncated { expected: u64, actual: u64 },
    #[error("checksum mismatch: the file is corrupt")]
    ChecksumMismatch,
    #[error("malformed file: {0}")]
    Malformed(String),
    #[error("the ring has no hash secret: refusing to place names without one")]
    MissingSecret,
    #[error("the ring's hash secret differs from the configured cluster secret")]
    SecretMismatch,
    #[error("part power {0} is out of range (1..=32)")]
    InvalidPartPower(u32),
    #[error("replica count {0} is out of range (1..=255)")]
    InvalidReplicas(u32),
    #[error("unknown device id {0}")]
    UnknownDevice(u32),
    #[error("weight {0} is invalid: it must be a finite number >= 0")]
    InvalidWeight(f64),
    #[error("invalid device: {0}")]
    InvalidDevice(String),
    #[error("cannot place {replicas} replicas: {reason}")]
    CannotPlace { replicas: u32, reason: String },
    #[error("the ring has not been rebalanced yet")]
    NotRebalanced,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
