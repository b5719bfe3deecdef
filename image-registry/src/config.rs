//! The registry's configuration file (TOML); `nubo up` writes one.

#![cfg(feature = "service")]

use crate::store::StoreConfig;
use serde::{Deserialize, Serialize};
use service_kit::auth::AuthConfig;
use service_kit::config::{check, check_positive, check_set, Validate};
use std::path::PathBuf;

fn localhost() -> String {
    "127.0.0.1".into()
}
fn port() -> u16 {
    9292
}
fn ten_gib() -> u64 {
    10 << 30
}
fn tib() -> u64 {
    1 << 40
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    #[serde(default = "localhost")]
    pub bind_ip: String,
    #[serde(default = "port")]
    pub port: u16,
    /// Metadata database, cache and staging area live here.
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    /// The same users and token secret as the proxy, so its tokens work here.
    pub auth: AuthConfig,
    #[serde(default = "ten_gib")]
    pub cache_max_bytes: u64,
    /// Partial cache files untouched this long are stalled: `POST
    /// /v2/cache/clean` removes them (Glance's `image_cache_stall_time`).
    #[serde(default = "one_day")]
    pub cache_stall_secs: u64,
    /// Largest virtual size an image may declare.
    #[serde(default = "tib")]
    pub max_virtual_size: u64,
    /// Largest image (Glance's `image_size_cap`, 1 TiB); it is stored as
    /// segments of `store.segment_bytes`, so it may exceed one object.
    #[serde(default = "tib")]
    pub max_image_size: u64,
    /// Accept raw images whose MBR/GPT looks invalid (Glance's option).
    #[serde(default)]
    pub allow_bad_partition_table: bool,
    /// What an import converts to: qcow2, raw or vmdk.
    #[serde(default = "qcow2")]
    pub convert_to: String,
    /// The longest a conversion may run.
    #[serde(default = "ten_minutes")]
    pub convert_timeout_secs: u64,
    /// The most a conversion may write, whatever the image.
    #[serde(default = "tib")]
    pub max_convert_bytes: u64,
    /// How many times its own size an image's data may take once
    /// converted (`qemu-img measure`)...
    #[serde(default = "sixty_four")]
    pub max_expansion: u64,
    /// ...above this floor.
    #[serde(default = "quarter_gib")]
    pub expansion_floor: u64,
    /// What the `web-download` import method may reach.
    #[serde(default)]
    pub web_download: crate::web_download::WebDownloadConfig,
}

fn one_day() -> u64 {
    86_400
}
fn sixty_four() -> u64 {
    64
}
fn quarter_gib() -> u64 {
    256 << 20
}

fn qcow2() -> String {
    "qcow2".into()
}
fn ten_minutes() -> u64 {
    600
}

impl Validate for RegistryConfig {
    fn validate(&self) -> Result<(), String> {
        check_positive(&[
            ("port", self.port.into()),
            ("convert_timeout_secs", self.convert_timeout_secs),
            ("max_expansion", self.max_expansion),
            ("max_virtual_size", self.max_virtual_size),
            ("max_image_size", self.max_image_size),
        ])?;
        check(
            matches!(self.convert_to.as_str(), "qcow2" | "raw" | "vmdk"),
            "convert_to",
            "must be qcow2, raw or vmdk",
        )?;
        check_set(&[("store.proxy", &self.store.proxy)])?;
        check(
            self.store.user.contains(':'),
            "store.user",
            "must be account:user",
        )?;
        self.auth.validate()
    }
}
