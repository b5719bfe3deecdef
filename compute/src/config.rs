//! The compute API's and the compute agent's configuration files (TOML);
//! `nubo up` writes both.

use crate::network::{Network, NetworkConfig};
use crate::scheduler::{AllocationRatios, Policy};
use serde::{Deserialize, Serialize};
use service_kit::auth::AuthConfig;
use service_kit::config::{check, check_positive, check_set, Validate};
use std::path::PathBuf;

fn localhost() -> String {
    "127.0.0.1".into()
}
fn api_port() -> u16 {
    8774
}
fn agent_port() -> u16 {
    8779
}
fn ten() -> u64 {
    10
}
fn sixty() -> u64 {
    60
}
fn day() -> u64 {
    86_400
}
fn three() -> u32 {
    3
}
fn nova() -> String {
    "nova".into()
}
fn auto() -> String {
    "auto".into()
}
fn qemu_system() -> String {
    "qemu-system-x86_64".into()
}
fn system_uri() -> String {
    "qemu:///system".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "localhost")]
    pub bind_ip: String,
    #[serde(default = "api_port")]
    pub port: u16,
    /// The server database lives here.
    pub data_dir: PathBuf,
    /// The same users and token secret as the proxy, so its tokens work here.
    pub auth: AuthConfig,
    /// The image registry (`http://host:port`); images are looked up there
    /// with the caller's token, and agents fetch them from it.
    pub registry_url: String,
    /// Shared with the agents: they present it, and the API presents it to them.
    pub agent_key: String,
    #[serde(default)]
    pub scheduler: Policy,
    #[serde(default)]
    pub allocation_ratios: AllocationRatios,
    /// A host whose last heartbeat is older than this is down (Nova's
    /// service_down_time).
    #[serde(default = "sixty")]
    pub host_down_after_secs: u64,
    /// Hosts tried per launch before the server goes to ERROR.
    #[serde(default = "three")]
    pub max_attempts: u32,
    /// Create m1.tiny, m1.small and m1.medium when there are no flavors.
    #[serde(default)]
    pub create_classic_flavors: bool,
    /// The guest networks addresses are handed out of; the first is the
    /// one `networks: "auto"` picks.
    #[serde(default = "crate::network::default_networks")]
    pub networks: Vec<NetworkConfig>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default = "localhost")]
    pub bind_ip: String,
    #[serde(default = "agent_port")]
    pub port: u16,
    /// The host's name in the API (defaults to the machine's hostname).
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "nova")]
    pub availability_zone: String,
    /// Bases (`_base/`), instance disks and consoles live here.
    pub data_dir: PathBuf,
    /// The compute API (`http://host:port`) this agent reports to.
    pub api_url: String,
    pub agent_key: String,
    /// `libvirt`, `qemu`, or `auto` (libvirt where its daemon answers).
    #[serde(default = "auto")]
    pub driver: String,
    #[serde(default = "system_uri")]
    pub libvirt_uri: String,
    /// Hardware acceleration (`kvm` domains); software emulation otherwise.
    #[serde(default)]
    pub kvm: bool,
    /// The emulator the qemu driver runs.
    #[serde(default = "qemu_system")]
    pub qemu_binary: String,
    /// What the host offers; measured from the machine when absent.
    #[serde(default)]
    pub vcpus: Option<u32>,
    #[serde(default)]
    pub ram_mb: Option<u64>,
    #[serde(default)]
    pub disk_gb: Option<u64>,
    #[serde(default = "ten")]
    pub heartbeat_secs: u64,
    /// How long a guest gets to power off when asked (ACPI) before it is
    /// powered off outright (Nova's shutdown_timeout).
    #[serde(default = "sixty")]
    pub shutdown_timeout_secs: u64,
    /// A base unused by any instance for this long is removed.
    #[serde(default = "day")]
    pub base_unused_secs: u64,
    /// The bridges that carry the API's networks on this host; an
    /// interface on a network without one here is not attached (the
    /// guest boots without it).
    #[serde(default)]
    pub bridges: Vec<HostBridge>,
}

/// A guest network's bridge on one host ([`crate::host_network`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostBridge {
    /// The network's name in the API's configuration.
    pub network: String,
    /// The Linux bridge (made if missing, with the network's gateway
    /// address and a DHCP server for the guests on it); at most 15 bytes.
    pub bridge: String,
    /// Outbound NAT for the network's guests (a production host's
    /// choice): traffic from the network's subnet to anywhere outside it
    /// is masqueraded behind the host's own address, and the host forwards
    /// IPv4. Off by default; `nubo up` never turns it on.
    #[serde(default)]
    pub masquerade: bool,
}

impl Validate for ApiConfig {
    fn validate(&self) -> Result<(), String> {
        check_positive(&[
            ("port", self.port.into()),
            ("host_down_after_secs", self.host_down_after_secs),
            ("max_attempts", self.max_attempts.into()),
        ])?;
        check_set(&[
            ("registry_url", &self.registry_url),
            ("agent_key", &self.agent_key),
        ])?;
        let r = &self.allocation_ratios;
        for (field, v) in [
            ("allocation_ratios.cpu", r.cpu),
            ("allocation_ratios.ram", r.ram),
            ("allocation_ratios.disk", r.disk),
        ] {
            check(v.is_finite() && v > 0.0, field, "must be a number above 0")?;
        }
        let mut names = std::collections::HashSet::new();
        for n in &self.networks {
            Network::parse(n).map_err(|e| format!("networks: {e}"))?;
            check(names.insert(&n.name), "networks", "names must differ")?;
        }
        self.auth.validate()
    }
}

impl Validate for AgentConfig {
    fn validate(&self) -> Result<(), String> {
        check_positive(&[
            ("port", self.port.into()),
            ("heartbeat_secs", self.heartbeat_secs),
        ])?;
        check_set(&[("api_url", &self.api_url), ("agent_key", &self.agent_key)])?;
        check(
            matches!(self.driver.as_str(), "auto" | "libvirt" | "qemu"),
            "driver",
            "must be auto, libvirt or qemu",
        )?;
        for b in &self.bridges {
            check(
                !b.bridge.is_empty()
                    && b.bridge.len() <= 15
                    && b.bridge
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
                "bridges",
                "a bridge name is 1 to 15 letters, digits, - or _",
            )?;
        }
        Ok(())
    }
}
