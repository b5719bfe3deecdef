//! The compute agent: one per host. It registers with the compute API and
//! heartbeats (capacity, allocations, cached images, and every instance it
//! has, which is what the API reconciles against), and serves a small
//! internal API the compute API calls to launch, stop, start, reboot and
//! delete instances, read consoles and diagnostics. Each instance is a
//! directory `instances/<id>/` (its record, its qcow2 overlay on a base in
//! `_base/`, its console log) plus whatever the driver keeps.

use crate::config::AgentConfig;
use crate::driver::libvirt::LibvirtDriver;
use crate::driver::qemu::QemuDriver;
use crate::driver::{console_tail, Driver, DriverError, InstanceSpec, PowerState};
use crate::host_firewall::{HostFirewall, Port};
use crate::host_network::{HostNetwork, NetError};
use crate::instance::{Flavor, GuestData, InstanceReport};
use crate::rest::call;
use crate::security_groups::GuardedNic;
use crate::template_cache::{ImageRef, TemplateCache};
use http::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use service_kit::auth::constant_time_eq;
use service_kit::client::{HttpClient, Timeouts};
use service_kit::http_util::json_response;
use service_kit::http_util::{collect_limited, header_str, query_pairs, Body};
use service_kit::server::blocking;
use service_kit::server::RequestBody;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The header the API and the agents authenticate each other with.
pub const AGENT_KEY_HEADER: &str = "x-nubo-agent-key";

/// An instance as its host keeps it (`instances/<id>/instance.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub id: String,
    pub name: String,
    pub account: String,
    pub user: String,
    pub image: ImageRef,
    pub flavor: Flavor,
    pub group: Option<String>,
    pub created: String,
    /// The server's metadata (Nova's `meta` in the guest's metadata).
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// What the guest is given: key, user data, a config drive.
    #[serde(default)]
    pub guest: GuestData,
}

/// What the API sends to launch an instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LaunchRequest {
    pub instance: Placed,
    /// Where to fetch the image, and the owner's token to fetch it with.
    pub registry_url: String,
    pub token: String,
    /// What this host's guest interfaces let in, the new one's included
    /// ([`crate::host_firewall`]), as of the launch.
    #[serde(default)]
    pub firewall: Option<Vec<GuardedNic>>,
}

/// The API's answer to a heartbeat, and its push between heartbeats
/// (`PUT /firewall`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    /// What this host's guest interfaces let in; absent (an API that says
    /// nothing of it, `{}`): the host keeps what it has.
    #[serde(default)]
    pub firewall: Option<Vec<GuardedNic>>,
}

/// A host's heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub name: String,
    pub availability_zone: String,
    /// Where the API reaches this agent.
    pub url: String,
    pub driver: String,
    pub architecture: String,
    pub vcpus: u32,
    pub ram_mb: u64,
    pub disk_gb: u64,
    pub vcpus_used: u32,
    pub ram_used_mb: u64,
    pub disk_used_gb: u64,
    pub cached_images: Vec<String>,
    pub instances: Vec<InstanceReport>,
}

/// The actions of `POST /instances/<id>/action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum HostAction {
    Stop,
    Start,
    Reboot { hard: bool },
}

pub struct Agent {
    pub config: AgentConfig,
    pub host: String,
    driver: Box<dyn Driver>,
    pub templates: TemplateCache,
    /// Bridges, taps and DHCP for the guests' interfaces.
    pub network: HostNetwork,
    /// Security groups on those interfaces (hosts with bridges only).
    firewall: Option<HostFirewall>,
    client: HttpClient,
    capacity: (u32, u64, u64),
    launches_ok: AtomicU64,
    launches_failed: AtomicU64,
    /// Security group pushes received from the API (`PUT /firewall`).
    firewall_pushes: AtomicU64,
    /// Instances whose serial console has a client ([`crate::serial_console`]).
    pub(crate) console_sessions: std::sync::Mutex<HashSet<String>>,
}

/// An instance's console socket, unless its path is too long for a Unix
/// socket address (108 bytes with the NUL): a deep data directory then
/// gives a logged console only, not a guest that fails to launch.
fn console_socket_path(dir: &std::path::Path) -> Option<PathBuf> {
    let path = dir.join("console.sock");
    (path.as_os_str().len() < 100).then_some(path)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The machine's hostname, for a host name nobody configured.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// vCPUs, RAM (MiB) and disk (GiB) of this machine, where not configured.
fn measure_capacity(config: &AgentConfig) -> (u32, u64, u64) {
    let vcpus = config
        .vcpus
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let ram = config.ram_mb.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .map_or(1024, |kib| kib / 1024)
    });
    let disk = config
        .disk_gb
        .unwrap_or_else(|| service_kit::fs::space(&config.data_dir).map_or(0, |s| s.total >> 30));
    (vcpus, ram, disk)
}

/// What this host's domains are named with. Several agents may share one
/// libvirt daemon (tests run two): each owns only the domains named with
/// its own prefix.
pub fn domain_prefix(host: &str) -> String {
    let safe: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("nubo-{safe}-")
}

/// The hypervisor's name for instance `id` on `host`.
pub fn domain_name(host: &str, id: &str) -> String {
    format!("{}{id}", domain_prefix(host))
}

/// The driver the config asks for; `auto` takes libvirt where its daemon
/// answers and falls back to running QEMU directly.
fn open_driver(config: &AgentConfig, host: &str) -> Result<Box<dyn Driver>, DriverError> {
    let prefix = domain_prefix(host);
    let qemu = || -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(QemuDriver::with_binary(
            &config.data_dir.join("qemu-state"),
            config.kvm,
            &config.qemu_binary,
        )?))
    };
    match config.driver.as_str() {
        "qemu" => qemu(),
        "libvirt" => Ok(Box::new(LibvirtDriver::new(
            &config.libvirt_uri,
            config.kvm,
            &prefix,
        )?)),
        "auto" => match LibvirtDriver::new(&config.libvirt_uri, config.kvm, &prefix) {
            Ok(d) => Ok(Box::new(d)),
            Err(e) => {
                tracing::warn!(error = %e, "no libvirt daemon answers; using the qemu driver");
                qemu()
            }
        },
        other => Err(DriverError::Hypervisor(format!(
            "unknown driver {other:?} (libvirt, qemu or auto)"
        ))),
    }
}

/// The agent's error answer, `{"error": "..."}` (the API reads `error`).
pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json_response(status, &json!({"error": message.to_string()}))
}

fn driver_error(e: DriverError) -> Response<Body> {
    match e {
        DriverError::NotFound(_) => error(StatusCode::NOT_FOUND, e),
        DriverError::Exists(_) => error(StatusCode::CONFLICT, e),
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

impl Agent {
    pub fn open(config: AgentConfig) -> Result<Agent, DriverError> {
        std::fs::create_dir_all(config.data_dir.join("instances"))?;
        let host = config.host.clone().unwrap_or_else(hostname);
        let driver = open_driver(&config, &host)?;
        let templates = TemplateCache::open(&config.data_dir.join("_base"))?;
        // Guests on a bridge are guarded or not launched at all.
        let firewall = if config.bridges.is_empty() {
            None
        } else {
            Some(HostFirewall::new().map_err(|e| {
                DriverError::Hypervisor(format!("security groups need nftables: {e}"))
            })?)
        };
        Ok(Agent {
            firewall,
            capacity: measure_capacity(&config),
            host,
            driver,
            templates,
            network: HostNetwork::new(config.bridges.clone(), &config.data_dir),
            client: HttpClient::new(Timeouts {
                connect: Duration::from_secs(2),
                node: Duration::from_secs(10),
            }),
            launches_ok: AtomicU64::new(0),
            launches_failed: AtomicU64::new(0),
            firewall_pushes: AtomicU64::new(0),
            console_sessions: std::sync::Mutex::new(HashSet::new()),
            config,
        })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("instances").join(id)
    }

    fn domain(&self, id: &str) -> String {
        domain_name(&self.host, id)
    }

    fn spec(&self, p: &Placed) -> InstanceSpec {
        let dir = self.dir(&p.id);
        InstanceSpec {
            name: self.domain(&p.id),
            vcpus: p.flavor.vcpus,
            ram_mb: p.flavor.ram,
            disk: dir.join("disk.qcow2"),
            console_log: dir.join("console.log"),
            console_socket: console_socket_path(&dir),
            config_drive: p.guest.config_drive.then(|| dir.join("disk.config")),
            nics: self.network.specs(&p.id, &p.guest.nics),
        }
    }

    /// Applies security groups to the guest interfaces this host has, with
    /// the API's latest word on them (`guarded`) or the one before.
    fn refresh_firewall(&self, guarded: Option<Vec<GuardedNic>>) -> Result<(), NetError> {
        let Some(firewall) = &self.firewall else {
            return Ok(());
        };
        let ports: Vec<Port> = self
            .placed()
            .iter()
            .flat_map(|p| self.network.ports(&p.id, &p.guest.nics))
            .collect();
        firewall.update(guarded, &ports)
    }

    /// The instances this host keeps.
    pub fn placed(&self) -> Vec<Placed> {
        let Ok(dir) = std::fs::read_dir(self.config.data_dir.join("instances")) else {
            return Vec::new();
        };
        let mut out: Vec<Placed> = dir
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("instance.json")).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Where the serial console of an instance this host keeps listens.
    pub(crate) fn console_socket(&self, id: &str) -> Option<PathBuf> {
        self.load(id).and_then(|p| self.spec(&p).console_socket)
    }

    fn load(&self, id: &str) -> Option<Placed> {
        if !valid_id(id) {
            return None;
        }
        let bytes = std::fs::read(self.dir(id).join("instance.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Every instance with its power state; one the hypervisor no longer
    /// knows (its domain was undefined behind our back) counts as off.
    pub fn reports(&self) -> Vec<InstanceReport> {
        self.placed()
            .into_iter()
            .map(|p| {
                let power = self
                    .driver
                    .state(&self.domain(&p.id))
                    .unwrap_or(PowerState::Shutoff);
                InstanceReport {
                    id: p.id,
                    name: p.name,
                    account: p.account,
                    user: p.user,
                    image_id: p.image.id,
                    flavor: p.flavor,
                    group: p.group,
                    power_state: power,
                    created: p.created,
                }
            })
            .collect()
    }

    pub fn report(&self) -> HostReport {
        let instances = blocking(|| self.reports());
        let (vcpus, ram_mb, disk_gb) = self.capacity;
        HostReport {
            name: self.host.clone(),
            availability_zone: self.config.availability_zone.clone(),
            url: format!("http://{}:{}", self.config.bind_ip, self.config.port),
            driver: self.driver.name().into(),
            architecture: std::env::consts::ARCH.into(),
            vcpus,
            ram_mb,
            disk_gb,
            vcpus_used: instances.iter().map(|i| i.flavor.vcpus).sum(),
            ram_used_mb: instances.iter().map(|i| i.flavor.ram).sum(),
            disk_used_gb: instances.iter().map(|i| i.flavor.disk).sum(),
            cached_images: self.templates.cached(),
            instances,
        }
    }

    /// Fetches (or finds) the base, creates the overlay, boots the guest.
    /// On failure nothing of the instance is left.
    pub async fn launch(&self, req: LaunchRequest) -> Result<(), (StatusCode, String)> {
        let p = req.instance;
        if !valid_id(&p.id) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("invalid instance id {:?}", p.id),
            ));
        }
        let dir = self.dir(&p.id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err((
                    StatusCode::CONFLICT,
                    format!("instance {} exists on {}", p.id, self.host),
                ))
            }
            Err(e) => return Err((StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        }
        let result = self
            .build(&p, &req.registry_url, &req.token, req.firewall)
            .await;
        if let Err(e) = &result {
            tracing::warn!(instance = %p.id, error = %e, "launch failed");
            let name = self.domain(&p.id);
            blocking(|| {
                let _ = self.driver.destroy(&name);
                self.network.unplug(&p.id, &p.guest.nics);
                let _ = std::fs::remove_dir_all(&dir);
            });
            self.launches_failed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.launches_ok.fetch_add(1, Ordering::Relaxed);
        }
        result.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))
    }

    async fn build(
        &self,
        p: &Placed,
        registry_url: &str,
        token: &str,
        firewall: Option<Vec<GuardedNic>>,
    ) -> Result<(), String> {
        let (base, format) = self
            .templates
            .base(&p.image, registry_url, token)
            .await
            .map_err(|e| e.to_string())?;
        let spec = self.spec(p);
        blocking(|| -> Result<(), String> {
            crate::overlay::create(&base, format, &spec.disk, p.flavor.disk << 30)
                .map_err(|e| e.to_string())?;
            if let Some(drive) = &spec.config_drive {
                let mut random_seed = [0u8; 512];
                getrandom::fill(&mut random_seed).expect("the OS random source works");
                let view = crate::metadata::GuestView {
                    instance: p,
                    availability_zone: &self.config.availability_zone,
                    random_seed: &random_seed,
                };
                crate::config_drive::write(drive, &view.files()).map_err(|e| e.to_string())?;
            }
            // The record first: a host that stops half-way still knows the
            // instance, and reports it.
            let record = self.dir(&p.id).join("instance.json");
            std::fs::write(&record, serde_json::to_vec(p).expect("json"))
                .map_err(|e| e.to_string())?;
            let hostname = crate::metadata::hostname(&p.name, &p.id);
            self.network
                .plug(&p.id, &hostname, &p.guest.nics)
                .map_err(|e| format!("guest network: {e}"))?;
            self.refresh_firewall(firewall)
                .map_err(|e| format!("guest firewall: {e}"))?;
            self.driver.launch(&spec).map_err(|e| e.to_string())
        })
    }

    /// Asks the guest to power off, waits up to the configured time, then
    /// powers it off outright.
    fn clean_stop(&self, name: &str) -> Result<(), DriverError> {
        if self.driver.state(name)? == PowerState::Shutoff {
            return Ok(());
        }
        self.driver.request_shutdown(name)?;
        let deadline =
            std::time::Instant::now() + Duration::from_secs(self.config.shutdown_timeout_secs);
        while std::time::Instant::now() < deadline {
            if self.driver.state(name)? == PowerState::Shutoff {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.driver.stop(name)
    }

    pub fn act(&self, id: &str, action: HostAction) -> Result<(), DriverError> {
        if self.load(id).is_none() {
            return Err(DriverError::NotFound(id.into()));
        }
        let name = self.domain(id);
        match action {
            HostAction::Stop => self.clean_stop(&name),
            HostAction::Start => self.driver.start(&name),
            // Nova's soft reboot: a clean shutdown, then power on; hard:
            // power off at once, then on.
            HostAction::Reboot { hard } => {
                if hard {
                    self.driver.stop(&name)?;
                } else {
                    self.clean_stop(&name)?;
                }
                self.driver.start(&name)
            }
        }
    }

    /// Destroys the guest and removes its disk, console and record. An
    /// instance this host does not have counts as deleted.
    pub fn delete(&self, id: &str) -> Result<(), DriverError> {
        if !valid_id(id) {
            return Err(DriverError::NotFound(id.into()));
        }
        match self.driver.destroy(&self.domain(id)) {
            Ok(()) | Err(DriverError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let placed = self.load(id);
        if let Some(p) = &placed {
            self.network.unplug(id, &p.guest.nics);
        }
        match std::fs::remove_dir_all(self.dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        if placed.is_some() {
            if let Err(e) = self.refresh_firewall(None) {
                tracing::warn!(instance = %id, error = %e, "the firewall still has its rules");
            }
        }
        Ok(())
    }

    fn console(&self, id: &str, lines: Option<usize>) -> Result<String, DriverError> {
        let p = self
            .load(id)
            .ok_or_else(|| DriverError::NotFound(id.into()))?;
        // Nova returns at most the last 100 KiB, then the last `length` lines.
        let tail = console_tail(&self.spec(&p).console_log, 100 << 10)?;
        let text = String::from_utf8_lossy(&tail).into_owned();
        Ok(match lines {
            None => text,
            Some(n) => {
                let all: Vec<&str> = text.split_inclusive('\n').collect();
                all[all.len().saturating_sub(n)..].concat()
            }
        })
    }

    fn diagnostics(&self, id: &str) -> Result<Value, DriverError> {
        let p = self
            .load(id)
            .ok_or_else(|| DriverError::NotFound(id.into()))?;
        let name = self.domain(id);
        let state = self.driver.state(&name)?;
        let stats = self.driver.stats(&name)?;
        // Nova's diagnostics (microversion 2.48 shape).
        Ok(json!({
            "state": match state {
                PowerState::Running => "running",
                PowerState::Paused => "paused",
                PowerState::Shutoff => "shutdown",
            },
            "driver": self.driver.name(),
            "hypervisor": if self.config.kvm { "kvm" } else { "qemu" },
            "hypervisor_os": "linux",
            "config_drive": false,
            "num_cpus": p.flavor.vcpus,
            "num_disks": 1,
            "num_nics": 0,
            "cpu_details": [{"id": 0, "time": stats.cpu_time_ns, "utilisation": null}],
            "memory_details": {
                "maximum": stats.memory_max_kib / 1024,
                "used": stats.memory_used_kib / 1024,
            },
            "disk_details": [{
                "read_bytes": stats.disk_read_bytes,
                "read_requests": stats.disk_read_requests,
                "write_bytes": stats.disk_write_bytes,
                "write_requests": stats.disk_write_requests,
                "errors_count": 0,
            }],
            "nic_details": [],
        }))
    }

    fn metrics(&self) -> String {
        let (fetches, hits, bytes, seconds) = self.templates.counters();
        let mut out = String::new();
        // Prometheus values are floats; Display prints whole ones bare.
        let mut line = |name: &str, labels: &str, v: f64| {
            out.push_str(&format!("{name}{labels} {v}\n"));
        };
        line("nubo_template_fetches_total", "", fetches as f64);
        line("nubo_template_cache_hits_total", "", hits as f64);
        line("nubo_template_fetched_bytes_total", "", bytes as f64);
        line("nubo_template_fetch_seconds_total", "", seconds);
        line(
            "nubo_template_bases",
            "",
            self.templates.cached().len() as f64,
        );
        let ok = self.launches_ok.load(Ordering::Relaxed);
        let failed = self.launches_failed.load(Ordering::Relaxed);
        line("nubo_agent_launches_total", "{result=\"ok\"}", ok as f64);
        line(
            "nubo_agent_launches_total",
            "{result=\"failed\"}",
            failed as f64,
        );
        line(
            "nubo_agent_firewall_pushes_total",
            "",
            self.firewall_pushes.load(Ordering::Relaxed) as f64,
        );
        let placed = self.placed();
        line("nubo_agent_instances", "", placed.len() as f64);
        for p in placed {
            let Ok(s) = self.driver.stats(&self.domain(&p.id)) else {
                continue;
            };
            let l = format!("{{instance=\"{}\"}}", p.id);
            line(
                "nubo_instance_cpu_seconds_total",
                &l,
                s.cpu_time_ns as f64 / 1e9,
            );
            line(
                "nubo_instance_memory_used_bytes",
                &l,
                (s.memory_used_kib * 1024) as f64,
            );
            line(
                "nubo_instance_disk_read_bytes_total",
                &l,
                s.disk_read_bytes as f64,
            );
            line(
                "nubo_instance_disk_write_bytes_total",
                &l,
                s.disk_write_bytes as f64,
            );
        }
        out
    }

    /// Removes bases no instance has used for the configured time.
    pub fn prune_bases(&self) -> Vec<String> {
        let in_use: HashSet<String> = self.placed().into_iter().map(|p| p.image.id).collect();
        let gone = self.templates.prune(&in_use, self.config.base_unused_secs);
        for id in &gone {
            tracing::info!(image = %id, "removed an unused base");
        }
        gone
    }

    /// One heartbeat to the API.
    pub async fn heartbeat(&self) -> Result<(), String> {
        let report = self.report();
        let (status, body) = call(
            &self.client,
            &self.config.api_url,
            Method::POST,
            "/internal/heartbeat",
            &[(AGENT_KEY_HEADER, &self.config.agent_key)],
            Some(&serde_json::to_value(&report).expect("json")),
        )
        .await
        .map_err(|e| e.to_string())?;
        if status.is_success() {
            let answer: HeartbeatAnswer = serde_json::from_value(body)
                .map_err(|e| format!("a malformed heartbeat answer: {e}"))?;
            blocking(|| self.refresh_firewall(answer.firewall))
                .map_err(|e| format!("applying security groups: {e}"))
        } else {
            Err(format!("the API answered {status}: {body}"))
        }
    }
}

pub async fn handle(agent: Arc<Agent>, req: Request<RequestBody>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let method = req.method().clone();
    match parts.as_slice() {
        ["healthcheck"] => return service_kit::http_util::text(StatusCode::OK, "OK"),
        // Opened by the console's user with the API's token, not the agent key.
        ["instances", id, "serial"] if method == Method::GET => {
            let id = id.to_string();
            return crate::serial_console::serve(agent, &id, req).await;
        }
        ["metrics"] => {
            let text = blocking(|| agent.metrics());
            return service_kit::http_util::text(StatusCode::OK, text);
        }
        _ => {}
    }
    let key = header_str(req.headers(), AGENT_KEY_HEADER).unwrap_or_default();
    if !constant_time_eq(key.as_bytes(), agent.config.agent_key.as_bytes()) {
        return error(StatusCode::UNAUTHORIZED, "a valid agent key is required");
    }
    let query = req.uri().query().map(str::to_string);
    let result = match (method, parts.as_slice()) {
        (Method::GET, ["instances"]) => {
            let reports = blocking(|| agent.reports());
            return json_response(StatusCode::OK, &json!({"instances": reports}));
        }
        (Method::POST, ["instances"]) => {
            let Some(body) = collect_limited(req.into_body(), 1 << 20).await else {
                return error(StatusCode::BAD_REQUEST, "body too large");
            };
            let launch: LaunchRequest = match serde_json::from_slice(&body) {
                Ok(l) => l,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            return match agent.launch(launch).await {
                Ok(()) => json_response(StatusCode::CREATED, &json!({})),
                Err((status, msg)) => error(status, msg),
            };
        }
        (Method::POST, ["instances", id, "action"]) => {
            let id = id.to_string();
            let Some(body) = collect_limited(req.into_body(), 4096).await else {
                return error(StatusCode::BAD_REQUEST, "body too large");
            };
            let action: HostAction = match serde_json::from_slice(&body) {
                Ok(a) => a,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            blocking(|| agent.act(&id, action)).map(|()| json!({}))
        }
        (Method::DELETE, ["instances", id]) => blocking(|| agent.delete(id)).map(|()| json!({})),
        // The API's word on security groups between heartbeats.
        (Method::PUT, ["firewall"]) => {
            let Some(body) = collect_limited(req.into_body(), 16 << 20).await else {
                return error(StatusCode::BAD_REQUEST, "body too large");
            };
            let answer: HeartbeatAnswer = match serde_json::from_slice(&body) {
                Ok(a) => a,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            agent.firewall_pushes.fetch_add(1, Ordering::Relaxed);
            return match blocking(|| agent.refresh_firewall(answer.firewall)) {
                Ok(()) => json_response(StatusCode::OK, &json!({})),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
            };
        }
        (Method::GET, ["instances", id, "console"]) => {
            let lines = query_pairs(query.as_deref())
                .into_iter()
                .find(|(k, _)| k == "length")
                .and_then(|(_, v)| v.parse().ok());
            agent.console(id, lines).map(|text| json!({"output": text}))
        }
        (Method::GET, ["instances", id, "diagnostics"]) => blocking(|| agent.diagnostics(id)),
        _ => return error(StatusCode::NOT_FOUND, "no such resource"),
    };
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => driver_error(e),
    }
}

/// Serves the agent's API, heartbeats, and prunes unused bases, until
/// Ctrl-C or SIGTERM. Instances keep running when the agent stops.
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    use anyhow::Context;
    let addr = format!("{}:{}", config.bind_ip, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let agent = Arc::new(Agent::open(config).context("starting the compute agent")?);
    tracing::info!(%addr, host = %agent.host, driver = agent.driver.name(), "compute agent listening");
    if !agent.config.bridges.is_empty() {
        tokio::spawn(crate::metadata_service::run(agent.clone()));
    }
    // Heartbeats keep their own beat: a fixed period from the previous
    // beat's start, not a pause after it and after pruning (a slow prune
    // or a busy machine must not make a live host look down).
    let beat = agent.clone();
    tokio::spawn(async move {
        let every = Duration::from_secs(beat.config.heartbeat_secs.max(1));
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticks.tick().await;
            match beat.heartbeat().await {
                Ok(()) if failing => {
                    tracing::info!("the compute API answers heartbeats again");
                    failing = false;
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "heartbeat failed");
                    failing = true;
                }
                Err(_) => {}
            }
            // Until the API answers (it may be starting too), try again soon.
            if failing {
                tokio::time::sleep(every.min(Duration::from_millis(500))).await;
                ticks.reset_immediately();
            }
        }
    });
    let pruner = agent.clone();
    tokio::spawn(async move {
        let every = Duration::from_secs(pruner.config.heartbeat_secs.max(1));
        loop {
            let agent = pruner.clone();
            let _ = tokio::task::spawn_blocking(move || agent.prune_bases()).await;
            tokio::time::sleep(every).await;
        }
    });
    service_kit::server::serve(
        listener,
        agent,
        handle,
        service_kit::server::shutdown_signal(),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names_are_safe_for_both_drivers() {
        assert_eq!(
            domain_name("compute-1.example.org", "5fd2e3a0"),
            "nubo-compute-1-example-org-5fd2e3a0"
        );
        assert!(domain_name("h", "x").starts_with(&domain_prefix("h")));
    }
}
