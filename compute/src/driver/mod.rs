//! Hypervisor drivers: what the compute agent asks of a host. Two
//! implementations share one test suite: `qemu` (runs qemu-system-x86_64
//! directly and talks QMP, for hosts without libvirt) and `libvirt`.

pub mod libvirt;
pub mod qemu;

use std::path::PathBuf;

/// What to run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstanceSpec {
    /// Unique on the host; names the domain / process.
    pub name: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    /// The instance's qcow2 overlay.
    pub disk: PathBuf,
    /// Where the serial console is logged.
    pub console_log: PathBuf,
    /// A Unix socket QEMU listens on for the serial console (logged to
    /// `console_log` all the same): the interactive console connects to it
    /// ([`crate::serial_console`]). None: the console is only logged.
    #[serde(default)]
    pub console_socket: Option<PathBuf>,
    /// A config drive to attach read-only as the second disk.
    #[serde(default)]
    pub config_drive: Option<PathBuf>,
    /// Network interfaces (virtio-net), each on a tap device the agent
    /// made and put on its network's bridge ([`crate::host_network`]).
    #[serde(default)]
    pub nics: Vec<NicSpec>,
}

/// One virtio-net interface on an existing tap device.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    pub tap: String,
    pub mac: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    Running,
    Paused,
    /// Stopped, by request or because the guest powered off.
    Shutoff,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("no instance {0} on this host")]
    NotFound(String),
    #[error("instance {0} already exists on this host")]
    Exists(String),
    #[error("launching {0} failed: {1}")]
    Launch(String, String),
    #[error("hypervisor: {0}")]
    Hypervisor(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the hypervisor measures of one instance (diagnostics, `/metrics`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstanceStats {
    /// CPU time the guest has used, all vCPUs together.
    pub cpu_time_ns: u64,
    /// Memory the guest was given, and what the host spends on it now.
    pub memory_max_kib: u64,
    pub memory_used_kib: u64,
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    pub disk_read_requests: u64,
    pub disk_write_requests: u64,
}

/// The operations the compute agent needs of a hypervisor.
pub trait Driver: Send + Sync {
    /// `libvirt` or `qemu` (diagnostics name the driver).
    fn name(&self) -> &'static str;
    fn launch(&self, spec: &InstanceSpec) -> Result<(), DriverError>;
    fn state(&self, name: &str) -> Result<PowerState, DriverError>;
    /// Asks the guest to power off (ACPI); returns at once. The caller
    /// waits, and calls `stop` if the guest ignores it.
    fn request_shutdown(&self, name: &str) -> Result<(), DriverError>;
    /// Powers off at once (Nova's os-stop on a guest that ignores ACPI).
    fn stop(&self, name: &str) -> Result<(), DriverError>;
    /// Powers a stopped instance on again, as it was launched.
    fn start(&self, name: &str) -> Result<(), DriverError>;
    /// Stops if running and forgets the instance (its disk is the caller's).
    fn destroy(&self, name: &str) -> Result<(), DriverError>;
    /// The instances this driver runs or has stopped.
    fn list(&self) -> Result<Vec<String>, DriverError>;
    /// CPU, memory and disk counters of a running instance (zeros when stopped).
    fn stats(&self, name: &str) -> Result<InstanceStats, DriverError>;
}

/// The last `max` bytes of a console log (Nova returns the tail).
pub fn console_tail(log: &std::path::Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::File::open(log) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}
