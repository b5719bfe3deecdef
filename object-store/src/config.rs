//! Configuration files of the storage node and the proxy (TOML).
//! `nubo up` writes them; a real deployment writes its own.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

pub fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn localhost() -> String {
    "127.0.0.1".into()
}
fn two_seconds() -> u64 {
    2
}
fn connect_ms() -> u64 {
    500
}
fn node_ms() -> u64 {
    10_000
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeConfig {
    /// The address the ring knows this node by.
    #[serde(default = "localhost")]
    pub bind_ip: String,
    pub port: u16,
    /// Each device the ring assigns to this node is a directory here.
    pub devices_root: PathBuf,
    pub ring: PathBuf,
    #[serde(default = "two_seconds")]
    pub ring_check_secs: u64,
    #[serde(default = "connect_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "node_ms")]
    pub node_timeout_ms: u64,
    /// Seconds between replication passes.
    #[serde(default = "thirty")]
    pub replicator_interval_secs: u64,
    /// Seconds between expirer passes (X-Delete-At).
    #[serde(default = "minute")]
    pub expirer_interval_secs: u64,
    /// Seconds between auditor passes, and the rate it reads files at.
    #[serde(default = "hour")]
    pub auditor_interval_secs: u64,
    #[serde(default = "ten_mib")]
    pub auditor_bytes_per_sec: u64,
    /// The most the replicator sends per second (object bodies and listing
    /// states); 0 is unlimited.
    #[serde(default = "hundred_mib")]
    pub replicator_bytes_per_sec: u64,
    /// Tombstones and deleted listing rows older than this are removed.
    /// It must exceed the longest time a node may be down, or an object
    /// deleted meanwhile comes back from that node's stale copy (as in Swift).
    #[serde(default = "week")]
    pub reclaim_age_secs: u64,
    /// Quarantined files (kept for an operator to look at) are removed after this.
    #[serde(default = "week")]
    pub quarantine_reclaim_age_secs: u64,
    /// Free space a device keeps: an object PUT that would leave less is
    /// refused with 507 (Swift's `fallocate_reserve`), so that the metadata
    /// database and the data already stored always have room.
    #[serde(default = "reserve")]
    pub fallocate_reserve_bytes: u64,
}

fn hundred_mib() -> u64 {
    100 << 20
}

fn week() -> u64 {
    7 * 86_400
}

fn reserve() -> u64 {
    64 << 20
}

fn minute() -> u64 {
    60
}

fn hour() -> u64 {
    3600
}

fn ten_mib() -> u64 {
    10 << 20
}

fn thirty() -> u64 {
    30
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProxyConfig {
    #[serde(default = "localhost")]
    pub bind_ip: String,
    pub port: u16,
    pub ring: PathBuf,
    #[serde(default = "two_seconds")]
    pub ring_check_secs: u64,
    #[serde(default = "connect_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "node_ms")]
    pub node_timeout_ms: u64,
    pub auth: AuthConfig,
    /// Virtual-host style S3: `<bucket>.<s3_domain>` names a bucket.
    #[serde(default = "s3_domain")]
    pub s3_domain: String,
}

fn s3_domain() -> String {
    "s3.localhost".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthConfig {
    /// Signs tokens, so that any proxy of the cluster accepts any proxy's tokens.
    pub token_secret: String,
    #[serde(default = "day")]
    pub token_ttl_secs: u64,
    /// The URL clients are told to use (`X-Storage-Url` prefix); defaults to
    /// the address the request came in on.
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub users: Vec<User>,
}

fn day() -> u64 {
    86_400
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    /// Swift account name without the reseller prefix (`test` for `AUTH_test`).
    pub account: String,
    pub user: String,
    pub key: String,
    /// `.admin`: full control of the account.
    #[serde(default)]
    pub admin: bool,
}

pub fn timeouts(connect_ms: u64, node_ms: u64) -> crate::node_client::Timeouts {
    crate::node_client::Timeouts {
        connect: Duration::from_millis(connect_ms),
        node: Duration::from_millis(node_ms),
    }
}
