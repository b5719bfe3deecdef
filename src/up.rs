//! `nubo up`: a whole local cluster in one command. Builds a ring for the
//! local nodes on first run, writes each service's config under the data
//! directory, and runs every service as its own process (so one node can be
//! killed and restarted alone), until Ctrl-C.

use anyhow::{bail, Context, Result};
use object_store::config::{NodeConfig, ProxyConfig};
use ring_tools::builder::NewDevice;
use ring_tools::{HashSecret, RebalanceOptions, RingBuilder};
use service_kit::auth::{AuthConfig, User};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where data, rings, configs and logs live; reused across runs.
    #[arg(long, default_value = "./nubo-data")]
    pub data_dir: PathBuf,
    /// Storage nodes to run (used when the ring is first built).
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    #[arg(long, default_value_t = 8080)]
    pub proxy_port: u16,
    #[arg(long, default_value_t = 6200)]
    pub node_base_port: u16,
    /// The image registry (Glance API).
    #[arg(long, default_value_t = 9292)]
    pub registry_port: u16,
    /// The compute API (Nova API v2.1).
    #[arg(long, default_value_t = 8774)]
    pub compute_port: u16,
    /// The local compute agent's internal API.
    #[arg(long, default_value_t = 8779)]
    pub agent_port: u16,
    /// The local agent's hypervisor driver: libvirt, qemu, or auto
    /// (libvirt where its daemon answers).
    #[arg(long, default_value = "auto")]
    pub compute_driver: String,
    /// The identity service (Keystone API v3).
    #[arg(long, default_value_t = 5000)]
    pub identity_port: u16,
    /// The ring's min_part_hours when it is first built.
    #[arg(long, default_value_t = 1)]
    pub min_part_hours: u32,
    /// The Linux bridge the local host puts guests of the `private`
    /// network (10.42.0.0/24) on, made with the gateway 10.42.0.1 and a
    /// DHCP server (dnsmasq), security groups enforced with nftables;
    /// `none`: guests get no interface. Needs root (CAP_NET_ADMIN),
    /// dnsmasq and nft, else guests get none either.
    #[arg(long, default_value = "nubr0")]
    pub guest_bridge: String,
}

/// The local host's bridge for the first network, where it can make one.
fn guest_bridges(bridge: &str) -> Vec<compute::config::HostBridge> {
    if bridge == "none" {
        return Vec::new();
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let runs = |program: &str| {
        std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing = if !root {
        Some("root")
    } else if !runs("dnsmasq") {
        Some("dnsmasq")
    } else if compute::host_firewall::available().is_err() {
        Some("nftables and br_netfilter")
    } else {
        None
    };
    if let Some(missing) = missing {
        eprintln!("up: guests get no network interface (the bridge {bridge} needs {missing})");
        return Vec::new();
    }
    let network = compute::network::default_networks()
        .into_iter()
        .next()
        .map(|n| n.name)
        .unwrap_or_default();
    vec![compute::config::HostBridge {
        network,
        bridge: bridge.to_string(),
        masquerade: false,
    }]
}

const DEVICES_PER_NODE: u16 = 2;
const PART_POWER: u32 = 10;
const REPLICAS: u32 = 3;

/// What `up` prepared: config files to start services from.
pub struct Layout {
    pub node_configs: Vec<PathBuf>,
    /// The ports the storage nodes listen on.
    pub node_ports: Vec<u16>,
    pub proxy_config: PathBuf,
    pub registry_config: PathBuf,
    pub compute_api_config: PathBuf,
    pub compute_agent_config: PathBuf,
    pub identity_config: PathBuf,
    pub logs: PathBuf,
}

/// Builds the ring and writes configs (first run), or reuses them.
pub fn prepare(args: &UpArgs) -> Result<Layout> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let builder_path = dir.join("object.builder");
    let ring_path = dir.join("object.ring");
    if !ring_path.exists() {
        if args.nodes == 0 {
            bail!("--nodes must be at least 1");
        }
        let mut b = RingBuilder::new(
            PART_POWER,
            REPLICAS.min(u32::from(args.nodes * DEVICES_PER_NODE)),
            args.min_part_hours,
            HashSecret::generate(),
        )?;
        for n in 0..args.nodes {
            for d in 0..DEVICES_PER_NODE {
                b.add_device(NewDevice {
                    region: 1,
                    zone: u32::from(n) + 1,
                    ip: "127.0.0.1".into(),
                    port: args.node_base_port + n,
                    device: format!("d{}", n * DEVICES_PER_NODE + d + 1),
                    weight: 100.0,
                    meta: String::new(),
                })?;
            }
        }
        b.rebalance(RebalanceOptions {
            seed: 0,
            now_minutes: ring_tools::builder::now_minutes(),
        })?;
        b.build_ring()?.save(&ring_path)?;
        b.save(&builder_path)?;
    }
    let ring = ring_tools::Ring::load(&ring_path).context("loading the cluster ring")?;
    let mut ports: Vec<u16> = ring.devices().iter().map(|d| d.port).collect();
    ports.sort_unstable();
    ports.dedup();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut node_configs = Vec::new();
    let node_ports = ports.clone();
    for port in ports {
        let root = dir.join(format!("node-{port}"));
        for d in ring.devices().iter().filter(|d| d.port == port) {
            std::fs::create_dir_all(root.join(&d.device))?;
        }
        let cfg = NodeConfig {
            bind_ip: "127.0.0.1".into(),
            port,
            devices_root: abs(&root)?,
            ring: abs(&ring_path)?,
            ring_check_secs: 2,
            connect_timeout_ms: 500,
            node_timeout_ms: 10_000,
            replicator_interval_secs: 30,
            expirer_interval_secs: 60,
            auditor_interval_secs: 3600,
            auditor_bytes_per_sec: 10 << 20,
            replicator_bytes_per_sec: 100 << 20,
            reclaim_age_secs: 7 * 86_400,
            quarantine_reclaim_age_secs: 7 * 86_400,
            fallocate_reserve_bytes: 64 << 20,
            lifecycle_interval_secs: 3600,
            lifecycle_ops_per_sec: 100,
        };
        let path = dir.join(format!("node-{port}.toml"));
        std::fs::write(&path, toml::to_string(&cfg)?)?;
        node_configs.push(path);
    }
    let secret_path = dir.join("token-secret");
    keep_random_secret(&secret_path, &service_kit::ids::rand_bytes::<32>())?;
    let registry_key_path = dir.join("registry-key");
    keep_random_secret(&registry_key_path, &service_kit::ids::rand_bytes::<16>())?;
    let registry_key = std::fs::read_to_string(&registry_key_path)?
        .trim()
        .to_string();
    // The cluster's key for SSE-S3, made once and kept with the data (a
    // production cluster keeps it apart from the disks it protects).
    let sse_key_path = dir.join("sse-master-key");
    if !sse_key_path.exists() {
        std::fs::write(
            &sse_key_path,
            object_store::proxy::encryption::Key::random().to_base64(),
        )?;
    }
    let sse_master_key = Some(std::fs::read_to_string(&sse_key_path)?.trim().to_string());
    // The identity service's token keys, shared by every service (a
    // production cluster copies the repository to each host, as Keystone's
    // fernet keys).
    let key_dir = abs(&dir.join("token-keys"))?;
    service_kit::token::setup_keys(&key_dir)?;
    let identity_url = format!("http://127.0.0.1:{}", args.identity_port);
    let proxy = ProxyConfig {
        bind_ip: "127.0.0.1".into(),
        port: args.proxy_port,
        ring: abs(&ring_path)?,
        ring_check_secs: 2,
        connect_timeout_ms: 500,
        node_timeout_ms: 10_000,
        auth: AuthConfig {
            token_secret: std::fs::read_to_string(&secret_path)?.trim().to_string(),
            token_ttl_secs: 86_400,
            public_url: None,
            token_key_dir: Some(key_dir.clone()),
            identity_url: Some(identity_url.clone()),
            // S3 keys. Swift logins go to the identity service, seeded
            // with the same users. The development credentials of Swift's all-in-one setup
            // (test:tester3 is its user without .admin), and the registry's
            // service user, which owns the image container.
            users: vec![
                User {
                    account: "test".into(),
                    user: "tester".into(),
                    key: "testing".into(),
                    admin: true,
                    reseller_admin: false,
                },
                User {
                    account: "test".into(),
                    user: "tester3".into(),
                    key: "testing3".into(),
                    admin: false,
                    reseller_admin: false,
                },
                // A second account (Swift's dev test2:tester2), for what
                // one account must not reach of another's.
                User {
                    account: "test2".into(),
                    user: "tester2".into(),
                    key: "testing2".into(),
                    admin: true,
                    reseller_admin: false,
                },
                // The operator of Swift's all-in-one setup
                // (`admin:admin`, `.reseller_admin`): account quotas.
                User {
                    account: "admin".into(),
                    user: "admin".into(),
                    key: "admin".into(),
                    admin: true,
                    reseller_admin: true,
                },
                User {
                    account: "glance".into(),
                    user: "glance".into(),
                    key: registry_key.clone(),
                    admin: true,
                    reseller_admin: false,
                },
            ],
        },
        s3_domain: "s3.localhost".into(),
        sse_master_key,
    };
    let proxy_config = dir.join("proxy.toml");
    std::fs::write(&proxy_config, toml::to_string(&proxy)?)?;
    let registry = image_registry::config::RegistryConfig {
        bind_ip: "127.0.0.1".into(),
        port: args.registry_port,
        data_dir: abs(&dir.join("registry"))?,
        store: image_registry::store::StoreConfig {
            proxy: format!("127.0.0.1:{}", args.proxy_port),
            user: "glance:glance".into(),
            key: registry_key,
            container: "images".into(),
        },
        auth: proxy.auth.clone(),
        cache_max_bytes: 10 << 30,
        cache_stall_secs: 86_400,
        max_virtual_size: 1 << 40,
        max_image_size: 1 << 40,
        allow_bad_partition_table: false,
        convert_to: "qcow2".into(),
        convert_timeout_secs: 600,
        max_convert_bytes: 1 << 40,
        max_expansion: 64,
        expansion_floor: 256 << 20,
        web_download: Default::default(),
    };
    let registry_config = dir.join("registry.toml");
    std::fs::write(&registry_config, toml::to_string(&registry)?)?;
    let (compute_api_config, compute_agent_config) = prepare_compute(args, &proxy.auth)?;
    let identity_config = prepare_identity(args, &proxy.auth, key_dir, identity_url)?;
    Ok(Layout {
        identity_config,
        node_configs,
        node_ports,
        proxy_config,
        registry_config,
        compute_api_config,
        compute_agent_config,
        logs,
    })
}

/// The compute API's and the local agent's configs: the API shares the
/// proxy's users and token secret; the agent reports every 2 s, and a host
/// silent for 10 s is down.
fn prepare_compute(args: &UpArgs, auth: &AuthConfig) -> Result<(PathBuf, PathBuf)> {
    let dir = &args.data_dir;
    let key_path = dir.join("agent-key");
    if !key_path.exists() {
        std::fs::write(&key_path, hex::encode(service_kit::ids::rand_bytes::<16>()))?;
    }
    let agent_key = std::fs::read_to_string(&key_path)?.trim().to_string();
    let api_url = format!("http://127.0.0.1:{}", args.compute_port);
    let api = compute::config::ApiConfig {
        bind_ip: "127.0.0.1".into(),
        port: args.compute_port,
        data_dir: abs(&dir.join("compute-api"))?,
        auth: auth.clone(),
        registry_url: format!("http://127.0.0.1:{}", args.registry_port),
        agent_key: agent_key.clone(),
        scheduler: Default::default(),
        allocation_ratios: Default::default(),
        host_down_after_secs: 10,
        max_attempts: 3,
        create_classic_flavors: true,
        networks: compute::network::default_networks(),
    };
    let agent = compute::config::AgentConfig {
        bind_ip: "127.0.0.1".into(),
        port: args.agent_port,
        host: None,
        availability_zone: "nova".into(),
        data_dir: abs(&dir.join("compute-host"))?,
        api_url,
        agent_key,
        driver: args.compute_driver.clone(),
        libvirt_uri: "qemu:///system".into(),
        kvm: false,
        qemu_binary: "qemu-system-x86_64".into(),
        vcpus: None,
        ram_mb: None,
        disk_gb: None,
        heartbeat_secs: 2,
        shutdown_timeout_secs: 5,
        base_unused_secs: 86_400,
        bridges: guest_bridges(&args.guest_bridge),
    };
    let api_path = dir.join("compute-api.toml");
    std::fs::write(&api_path, toml::to_string(&api)?)?;
    let agent_path = dir.join("compute-agent.toml");
    std::fs::write(&agent_path, toml::to_string(&agent)?)?;
    Ok((api_path, agent_path))
}

/// The identity service's config: the dev users of the proxy's config as
/// users of projects of the same names (so `AUTH_test` stays the account of
/// project `test`), with Keystone roles for their TempAuth rights.
fn prepare_identity(
    args: &UpArgs,
    auth: &AuthConfig,
    key_dir: PathBuf,
    identity_url: String,
) -> Result<PathBuf> {
    let seed = auth
        .users
        .iter()
        .map(|u| identity::config::SeedUser {
            project: u.account.clone(),
            user: u.user.clone(),
            password: u.key.clone(),
            roles: match (u.admin, u.reseller_admin) {
                (_, true) => vec!["admin".into(), "ResellerAdmin".into()],
                (true, false) => vec!["admin".into()],
                (false, false) => vec!["member".into()],
            },
        })
        .collect();
    let config = identity::config::IdentityConfig {
        bind_ip: "127.0.0.1".into(),
        port: args.identity_port,
        data_dir: abs(&args.data_dir.join("identity"))?,
        key_dir,
        token_ttl_secs: 3600,
        region: "RegionOne".into(),
        catalog: identity::config::CatalogUrls {
            identity: identity_url,
            object_store: format!("http://127.0.0.1:{}", args.proxy_port),
            image: format!("http://127.0.0.1:{}", args.registry_port),
            compute: format!("http://127.0.0.1:{}", args.compute_port),
        },
        seed,
    };
    let path = args.data_dir.join("identity.toml");
    std::fs::write(&path, toml::to_string(&config)?)?;
    Ok(path)
}

fn abs(p: &Path) -> Result<PathBuf> {
    Ok(std::path::absolute(p)?)
}

fn spawn(role: &str, config: &Path, log: &Path) -> Result<Child> {
    let exe = std::env::current_exe()?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut cmd = Command::new(exe);
    cmd.arg(role)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // If `nubo up` itself is killed outright (it stops its services on a
    // signal it can catch), each service gets SIGTERM rather than running
    // on as an orphan.
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().with_context(|| format!("starting {role}"))
}

/// Polls the compute API's metrics until it counts a host up.
fn wait_for_compute_host(addr: &str, deadline: Instant) -> bool {
    use std::io::Read;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut page = String::new();
            let asked = write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").is_ok();
            if asked && s.read_to_string(&mut page).is_ok() {
                let up = page
                    .lines()
                    .find_map(|l| l.strip_prefix("nubo_compute_hosts{state=\"up\"} "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                if up > 0 {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn wait_healthy(addr: &str, deadline: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

pub fn run(args: UpArgs) -> Result<()> {
    let layout = prepare(&args)?;
    let mut children: Vec<(String, Child)> = Vec::new();
    children.push((
        "identity".into(),
        spawn(
            "identity-server",
            &layout.identity_config,
            &layout.logs.join("identity.log"),
        )?,
    ));
    for cfg in &layout.node_configs {
        let name = cfg
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let log = layout.logs.join(format!("{name}.log"));
        children.push((name, spawn("storage-node", cfg, &log)?));
    }
    children.push((
        "proxy".into(),
        spawn(
            "proxy",
            &layout.proxy_config,
            &layout.logs.join("proxy.log"),
        )?,
    ));
    children.push((
        "registry".into(),
        spawn(
            "registry",
            &layout.registry_config,
            &layout.logs.join("registry.log"),
        )?,
    ));
    for (role, cfg) in [
        ("compute-api", &layout.compute_api_config),
        ("compute-agent", &layout.compute_agent_config),
    ] {
        children.push((
            role.into(),
            spawn(role, cfg, &layout.logs.join(format!("{role}.log")))?,
        ));
    }
    let proxy_addr = format!("127.0.0.1:{}", args.proxy_port);
    let registry_addr = format!("127.0.0.1:{}", args.registry_port);
    let compute_addr = format!("127.0.0.1:{}", args.compute_port);
    let agent_addr = format!("127.0.0.1:{}", args.agent_port);
    let identity_addr = format!("127.0.0.1:{}", args.identity_port);
    // Up means every service listens; a service that exits while starting
    // (a port already taken, a bad device) fails the whole command.
    let addrs: Vec<String> = [
        identity_addr.clone(),
        proxy_addr.clone(),
        registry_addr.clone(),
        compute_addr.clone(),
        agent_addr,
    ]
    .into_iter()
    .chain(layout.node_ports.iter().map(|p| format!("127.0.0.1:{p}")))
    .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    for addr in &addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        let exited = children
            .iter_mut()
            .any(|(_, c)| matches!(c.try_wait(), Ok(Some(_))));
        if exited || !wait_healthy(addr, left) {
            stop(&mut children);
            bail!(
                "a service did not start (waiting for {addr}); see {}",
                layout.logs.display()
            );
        }
    }
    // Up also means the local compute host has registered, so that the
    // first launch finds a host.
    if !wait_for_compute_host(&compute_addr, deadline) {
        stop(&mut children);
        bail!(
            "the compute agent did not register with the compute API; see {}",
            layout.logs.display()
        );
    }
    println!(
        "Nubo is up ({} storage nodes, data in {}).",
        layout.node_configs.len(),
        args.data_dir.display()
    );
    println!("  Swift:  http://{proxy_addr}/auth/v1.0   user test:tester   key testing");
    println!("          swift -A http://{proxy_addr}/auth/v1.0 -U test:tester -K testing stat");
    println!("          operator (.reseller_admin, sets account quotas): admin:admin key admin");
    println!("  Glance: http://{registry_addr}/v2/images   (X-Auth-Token from the Swift login)");
    println!("  Nova:   http://{compute_addr}/v2.1/servers   (same token; flavors m1.tiny, m1.small, m1.medium)");
    println!("  Keystone: http://{identity_addr}/v3   (OS_USERNAME=tester OS_PASSWORD=testing OS_PROJECT_NAME=test,");
    println!("            OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default; admin/admin in project admin)");
    println!("  Logs:   {}", layout.logs.display());
    println!("Ctrl-C stops every service.");

    let stop_requested = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [libc_sigint(), libc_sigterm()] {
        signal_hook_flag(sig, stop_requested.clone())?;
    }
    // Stop with whoever launched us (a test harness, a terminal that closed).
    let parent = std::os::unix::process::parent_id();
    while !stop_requested.load(std::sync::atomic::Ordering::Relaxed)
        && std::os::unix::process::parent_id() == parent
    {
        for (name, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!(
                    "{name} exited ({status}); restart it with: nubo {} --config ...",
                    match name.as_str() {
                        "proxy" | "registry" | "compute-api" | "compute-agent" => name.as_str(),
                        "identity" => "identity-server",
                        _ => "storage-node",
                    }
                );
            }
        }
        children.retain_mut(|(_, c)| !matches!(c.try_wait(), Ok(Some(_))));
        std::thread::sleep(Duration::from_millis(200));
    }
    // stdout may be gone (a closed terminal or test harness): not worth failing over.
    let _ = writeln!(std::io::stdout(), "stopping...");
    stop(&mut children);
    Ok(())
}

fn stop(children: &mut [(String, Child)]) {
    for (_, c) in children.iter() {
        // SIGTERM: each service finishes what it is doing and exits.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, c) in children.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn libc_sigint() -> i32 {
    2
}
fn libc_sigterm() -> i32 {
    15
}

/// Sets `flag` when `signal` arrives, on a small tokio runtime thread.
fn signal_hook_flag(
    signal: i32,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        rt.block_on(async move {
            let mut s =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(signal))
                    .expect("signal handler");
            s.recv().await;
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    });
    Ok(())
}

/// Writes `fresh` (hex) to `path` unless a secret is already there: a
/// cluster keeps its secrets across `nubo up` runs.
fn keep_random_secret(path: &Path, fresh: &[u8]) -> std::io::Result<()> {
    if !path.exists() {
        std::fs::write(path, hex::encode(fresh))?;
    }
    Ok(())
}
