//! Configuration files of the storage node and the proxy (TOML).
//! `nubo up` writes them; a real deployment writes its own.

use serde::{Deserialize, Serialize};
use service_kit::auth::AuthConfig;
use service_kit::config::{check_positive, check_set, Validate};
use std::path::PathBuf;
use std::time::Duration;

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
#[serde(deny_unknown_fields)]
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
    /// Seconds between lifecycle passes (S3 lifecycle rules), and the most
    /// listings and deletions a pass makes per second (0: unlimited).
    #[serde(default = "hour")]
    pub lifecycle_interval_secs: u64,
    #[serde(default = "hundred")]
    pub lifecycle_ops_per_sec: u64,
}

fn hundred() -> u64 {
    100
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
#[serde(deny_unknown_fields)]
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
    /// The cluster's key for SSE-S3 (32 bytes, base64); without one, SSE-S3
    /// writes are refused. Every proxy of a cluster has the same.
    #[serde(default)]
    pub sse_master_key: Option<String>,
}

fn s3_domain() -> String {
    "s3.localhost".into()
}

pub fn timeouts(connect_ms: u64, node_ms: u64) -> service_kit::client::Timeouts {
    service_kit::client::Timeouts {
        connect: Duration::from_millis(connect_ms),
        node: Duration::from_millis(node_ms),
    }
}

/// The fields the storage node and the proxy share: where they listen,
/// how often they look at the ring, how long they wait for nodes.
fn shared_fields(c: (u16, u64, u64, u64)) -> [(&'static str, u64); 4] {
    [
        ("port", c.0.into()),
        ("ring_check_secs", c.1),
        ("connect_timeout_ms", c.2),
        ("node_timeout_ms", c.3),
    ]
}

impl Validate for NodeConfig {
    fn validate(&self) -> Result<(), String> {
        check_positive(&shared_fields((
            self.port,
            self.ring_check_secs,
            self.connect_timeout_ms,
            self.node_timeout_ms,
        )))?;
        check_positive(&[
            ("replicator_interval_secs", self.replicator_interval_secs),
            ("expirer_interval_secs", self.expirer_interval_secs),
            ("auditor_interval_secs", self.auditor_interval_secs),
            ("reclaim_age_secs", self.reclaim_age_secs),
        ])
    }
}

impl Validate for ProxyConfig {
    fn validate(&self) -> Result<(), String> {
        check_positive(&shared_fields((
            self.port,
            self.ring_check_secs,
            self.connect_timeout_ms,
            self.node_timeout_ms,
        )))?;
        check_set(&[("s3_domain", &self.s3_domain)])?;
        if let Some(k) = &self.sse_master_key {
            if crate::proxy::encryption::Key::from_base64(k).is_none() {
                return Err("sse_master_key: must be 32 bytes in base64".into());
            }
        }
        self.auth.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(extra: &str) -> Result<NodeConfig, String> {
        let text = format!("port = 6200\ndevices_root = \"/d\"\nring = \"/r\"\n{extra}");
        let c: NodeConfig = toml::from_str(&text).map_err(|e| e.message().to_string())?;
        c.validate().map(|()| c)
    }

    #[test]
    fn node_configs_refuse_typos_and_zero_intervals() {
        assert!(node("").is_ok());
        let zero = node("replicator_interval_secs = 0").unwrap_err();
        assert_eq!(zero, "replicator_interval_secs: must be above 0");
        let typo = node("replicator_intervall_secs = 5").unwrap_err();
        assert!(
            typo.contains("unknown field `replicator_intervall_secs`"),
            "{typo}"
        );
        assert_eq!(
            node("node_timeout_ms = 0").unwrap_err(),
            "node_timeout_ms: must be above 0"
        );
    }
}
