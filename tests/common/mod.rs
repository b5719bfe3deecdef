//! A real local cluster for integration tests: `nubo up` on free loopback
//! ports with a temporary data directory. It stops when the test process
//! exits (`nubo up` follows its parent).
#![allow(dead_code)]

#[path = "../../image-registry/tests/corpus/mod.rs"]
pub mod corpus;
pub mod glance;
pub mod linux_guest;
pub mod nova;
pub mod own_namespace;

#[allow(unused_imports)]
pub use corpus::run_ok;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The checkout, read when the test runs: the build directory is shared by
/// every clone on the machine, and a test binary built in another clone is
/// reused while the sources are the same, so a path baked in at build time
/// may be another clone's.
pub fn checkout() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo test"))
}

pub fn nubo() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nubo"))
}

/// Where a cluster keeps its data: a temp dir removed on drop, or a fixed
/// directory (for a cluster shared by a whole test binary, which is never
/// dropped) cleared when the next run starts.
pub enum DataDir {
    Temp(tempfile::TempDir),
    Fixed(PathBuf),
}

impl DataDir {
    pub fn path(&self) -> &Path {
        match self {
            DataDir::Temp(t) => t.path(),
            DataDir::Fixed(p) => p,
        }
    }
}

pub struct Cluster {
    child: Child,
    pub dir: DataDir,
    pub proxy_port: u16,
    pub registry_port: u16,
    pub compute_port: u16,
    pub agent_port: u16,
    pub identity_port: u16,
    pub node_base_port: u16,
    pub nodes: u16,
    restarted: Vec<Child>,
}

fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `count` consecutive free ports, distinct across the tests of this process.
pub fn ports(count: u16) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Below Linux's ephemeral range (32768+), so that no outgoing connection
    // can take a port between this check and the service binding it.
    let seed = (std::process::id() % 700) as u16 * 16;
    loop {
        let base = 20_000 + seed.wrapping_add(NEXT.fetch_add(count, Ordering::Relaxed)) % 12_000;
        if (base..base + count).all(free) {
            return base;
        }
    }
}

/// (storage URL, token) for the dev user from the proxy at `url`.
pub fn login(url: &str) -> (String, String) {
    login_as(url, "test:tester", "testing")
}

/// (storage URL, token) for any user.
pub fn login_as(url: &str, user: &str, key: &str) -> (String, String) {
    let r = ureq::get(&format!("{url}/auth/v1.0"))
        .set("X-Auth-User", user)
        .set("X-Auth-Key", key)
        .call()
        .expect("auth");
    (
        r.header("x-storage-url").unwrap().to_string(),
        r.header("x-auth-token").unwrap().to_string(),
    )
}

/// Runs a client script of `tests/clients` (Python from the client venv,
/// or bash with the venv's tools first on PATH) against `c`, which it
/// finds in `NUBO_S3_ENDPOINT`; panics with its output if it fails.
pub fn run_client_script(c: &Cluster, script: &str) {
    let path = checkout().join("tests/clients").join(script);
    let python = venv_bin("python");
    let mut cmd = if script.ends_with(".sh") {
        Command::new("bash")
    } else {
        Command::new(&python)
    };
    let path_var = format!(
        "{}:{}",
        python.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The storage nodes, for scripts that run a maintenance pass now.
    let node_urls: Vec<String> = (0..c.nodes)
        .map(|n| format!("http://127.0.0.1:{}", c.node_base_port + n))
        .collect();
    let node_urls = node_urls.join(",");
    let out = cmd
        .arg(&path)
        .env("NUBO_S3_ENDPOINT", c.url())
        .env("NUBO_NODE_URLS", node_urls)
        .env("PATH", path_var)
        .output()
        .expect("the client runs");
    assert!(
        out.status.success(),
        "{script} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A program of the client venv `scripts/setup.sh` installs (`$NUBO_VENV`,
/// default `~/.cache/nubo-venv`): `python`, `swift`, `glance`, `aws`...
pub fn venv_bin(name: &str) -> PathBuf {
    let venv = std::env::var("NUBO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/nubo-venv"));
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing; run scripts/test.sh (it installs the client venv)",
        bin.display()
    );
    bin
}

/// `nubo ring add BUILDER` for one device of weight 100 in region 1.
pub fn ring_add(builder: &str, zone: u32, ip: &str, port: u16, device: &str) {
    nubo_ok(&[
        "ring",
        "add",
        builder,
        "--region",
        "1",
        "--zone",
        &zone.to_string(),
        "--ip",
        ip,
        "--port",
        &port.to_string(),
        "--device",
        device,
        "--weight",
        "100",
    ]);
}

/// Runs `nubo ARGS` and requires success; its stdout.
pub fn nubo_ok(args: &[&str]) -> String {
    let out = Command::new(nubo()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "nubo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Cluster {
    pub fn start(nodes: u16) -> Cluster {
        Cluster::start_in(
            DataDir::Temp(tempfile::tempdir().expect("temp dir")),
            nodes,
            &[],
        )
    }

    /// A cluster whose `nubo up` gets extra flags.
    pub fn start_with(nodes: u16, flags: &[&str]) -> Cluster {
        Cluster::start_in(
            DataDir::Temp(tempfile::tempdir().expect("temp dir")),
            nodes,
            flags,
        )
    }

    /// A cluster whose data lives in `name` under Cargo's target tmp dir.
    pub fn start_shared(name: &str, nodes: u16) -> Cluster {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Cluster::start_in(DataDir::Fixed(dir), nodes, &[])
    }

    fn start_in(dir: DataDir, nodes: u16, flags: &[&str]) -> Cluster {
        let base = ports(nodes + 5);
        let (proxy_port, registry_port, compute_port, agent_port, identity_port) =
            (base, base + 1, base + 2, base + 3, base + 4);
        let node_base_port = base + 5;
        // Guests get no bridge in the machine's own namespace: only a test
        // that runs the cluster inside a namespace of its own asks for one.
        let no_bridge: &[&str] = if flags.contains(&"--guest-bridge") {
            &[]
        } else {
            &["--guest-bridge", "none"]
        };
        let mut child = Command::new(nubo())
            .args(["up", "--data-dir"])
            .arg(dir.path())
            .args([
                "--nodes",
                &nodes.to_string(),
                "--proxy-port",
                &proxy_port.to_string(),
                "--node-base-port",
                &node_base_port.to_string(),
                "--registry-port",
                &registry_port.to_string(),
                "--compute-port",
                &compute_port.to_string(),
                "--agent-port",
                &agent_port.to_string(),
                "--identity-port",
                &identity_port.to_string(),
            ])
            .args(no_bridge)
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nubo up starts");
        // `nubo up` says it is up only once every service listens; until
        // then it treats a service that exits as a failed start, so tests
        // must not kill nodes before this line.
        let (up_tx, up_rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("Nubo is up") {
                    let _ = up_tx.send(());
                }
            }
        });
        let mut c = Cluster {
            child,
            dir,
            proxy_port,
            registry_port,
            compute_port,
            agent_port,
            identity_port,
            node_base_port,
            nodes,
            restarted: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!("nubo up exited ({status}) before the cluster was up");
            }
            if up_rx.recv_timeout(Duration::from_millis(50)).is_ok() {
                return c;
            }
        }
        panic!(
            "cluster did not start; logs in {}",
            c.dir.path().join("logs").display()
        );
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy_port)
    }

    /// `nubo image` pointed at this cluster's registry and proxy; add the
    /// subcommand and its arguments.
    pub fn nubo_image(&self) -> Command {
        let mut cmd = Command::new(nubo());
        cmd.arg("image").args([
            "--registry-url",
            &self.registry_url(),
            "--auth-url",
            &format!("{}/auth/v1.0", self.url()),
        ]);
        cmd
    }

    /// `nubo server` against this cluster's compute API.
    pub fn nubo_server(&self) -> Command {
        let mut cmd = Command::new(nubo());
        cmd.arg("server").args([
            "--compute-url",
            &format!("{}/v2.1", self.compute_url()),
            "--auth-url",
            &format!("{}/auth/v1.0", self.url()),
        ]);
        cmd
    }

    /// The Keystone v3 API (`OS_AUTH_URL`).
    pub fn identity_url(&self) -> String {
        format!("http://127.0.0.1:{}/v3", self.identity_port)
    }

    /// A token of a new user with the `member` role on a new project
    /// (made through the identity API as the operator `admin`): a
    /// stranger to the dev accounts who is no admin anywhere.
    pub fn member_of_new_project(&self, project: &str, user: &str) -> String {
        let base = self.identity_url();
        let login = |user: &str, password: &str, project: &str| {
            let body = serde_json::json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": user, "domain": {"id": "default"}, "password": password}}},
                "scope": {"project": {"name": project, "domain": {"id": "default"}}}}});
            ureq::post(&format!("{base}/auth/tokens"))
                .send_json(body)
                .expect("login")
                .header("x-subject-token")
                .expect("a token")
                .to_string()
        };
        let admin = login("admin", "admin", "admin");
        let post = |path: &str, body: serde_json::Value| -> serde_json::Value {
            ureq::post(&format!("{base}{path}"))
                .set("X-Auth-Token", &admin)
                .send_json(body)
                .expect(path)
                .into_json()
                .expect("JSON")
        };
        let p = post(
            "/projects",
            serde_json::json!({"project": {"name": project}}),
        );
        let project_id = p["project"]["id"].as_str().unwrap().to_string();
        let u = post(
            "/users",
            serde_json::json!({"user": {"name": user, "password": "pass-word"}}),
        );
        let user_id = u["user"]["id"].as_str().unwrap().to_string();
        let roles: serde_json::Value = ureq::get(&format!("{base}/roles?name=member"))
            .set("X-Auth-Token", &admin)
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        let role = roles["roles"][0]["id"].as_str().unwrap().to_string();
        ureq::put(&format!(
            "{base}/projects/{project_id}/users/{user_id}/roles/{role}"
        ))
        .set("X-Auth-Token", &admin)
        .call()
        .unwrap();
        login(user, "pass-word", project)
    }

    pub fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registry_port)
    }

    pub fn compute_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.compute_port)
    }

    /// Starts a process of `nubo <role> --config <config>` that lives as
    /// long as the cluster, and waits for it to listen on `port`.
    pub fn start_service(&mut self, role: &str, config: &Path, port: u16) {
        let child = Command::new(nubo())
            .arg(role)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("service starts");
        self.restarted.push(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "{role} did not start on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (KILL, STOP, CONT...) to the processes whose command
    /// line names `config`.
    pub fn signal_service(&self, config: &Path, signal: &str) {
        let st = Command::new("pkill")
            .arg(format!("-{signal}"))
            .arg("-f")
            .arg(config.to_string_lossy().as_ref())
            .status()
            .expect("pkill");
        assert!(st.success(), "no process for {}", config.display());
    }

    pub fn node_config(&self, n: u16) -> PathBuf {
        self.dir
            .path()
            .join(format!("node-{}.toml", self.node_base_port + n))
    }

    /// The directory of device `device` of storage node `n`.
    pub fn device_dir(&self, n: u16, device: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("node-{}", self.node_base_port + n))
            .join(device)
    }

    /// Sets `key = value` (TOML) in storage node `n`'s config; it takes
    /// effect when the node (re)starts.
    pub fn set_node_config(&self, n: u16, key: &str, value: &str) {
        let path = self.node_config(n);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut found = false;
        let mut out: Vec<String> = text
            .lines()
            .map(|l| {
                if l.split('=').next().map(str::trim) == Some(key) {
                    found = true;
                    format!("{key} = {value}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        if !found {
            out.insert(0, format!("{key} = {value}"));
        }
        std::fs::write(&path, out.join("\n") + "\n").unwrap();
    }

    /// Starts one more storage node, not yet in the ring, with `devices`
    /// (directories under its own root) and its own copy of the current
    /// ring, so that only `nubo ring push` tells it about a new one.
    /// Returns its port.
    pub fn start_extra_node(&mut self, devices: &[&str]) -> u16 {
        let port = ports(1);
        let mut cfg: object_store::config::NodeConfig =
            toml::from_str(&std::fs::read_to_string(self.node_config(0)).unwrap()).unwrap();
        let root = self.dir.path().join(format!("node-{port}"));
        for d in devices {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let ring = root.join("object.ring");
        std::fs::copy(self.dir.path().join("object.ring"), &ring).unwrap();
        cfg.port = port;
        cfg.devices_root = root;
        cfg.ring = ring;
        let path = self.dir.path().join(format!("node-{port}.toml"));
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
        let child = Command::new(nubo())
            .arg("storage-node")
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        self.restarted.push(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "node {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        port
    }

    /// SIGKILLs the image registry and starts it again as its own process.
    pub fn restart_registry_after_kill(&mut self) {
        let cfg = self.dir.path().join("registry.toml");
        let st = Command::new("pkill")
            .args(["-KILL", "-f"])
            .arg(cfg.to_string_lossy().as_ref())
            .status()
            .expect("pkill");
        assert!(st.success(), "no registry process");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.registry_port)).is_ok() {
            assert!(Instant::now() < deadline, "the registry did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let child = Command::new(nubo())
            .arg("registry")
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("registry starts");
        self.restarted.push(child);
        while TcpStream::connect(("127.0.0.1", self.registry_port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not restart");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs storage node `n` (0-based).
    pub fn kill_node(&self, n: u16) {
        let cfg = self.node_config(n);
        let st = Command::new("pkill")
            .args(["-KILL", "-f"])
            .arg(cfg.to_string_lossy().as_ref())
            .status()
            .expect("pkill");
        assert!(st.success(), "no process for {}", cfg.display());
        let port = self.node_base_port + n;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts storage node `n` again, as its own process.
    pub fn restart_node(&mut self, n: u16) {
        let child = Command::new(nubo())
            .arg("storage-node")
            .arg("--config")
            .arg(self.node_config(n))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        self.restarted.push(child);
        let port = self.node_base_port + n;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "node {n} did not restart");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// (storage URL, token) for the dev user.
    pub fn login(&self) -> (String, String) {
        login(&self.url())
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `POST path` to storage node `n` (the maintenance triggers); the JSON answer.
    fn post_node(&self, n: u16, path: &str) -> serde_json::Value {
        self.post_port(self.node_base_port + n, path)
    }

    fn post_port(&self, port: u16, path: &str) -> serde_json::Value {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let r = raw(port, &head, b"");
        assert_eq!(
            r.status,
            200,
            "POST {path} on the node at port {port}: {}",
            r.text()
        );
        serde_json::from_slice(&r.body).unwrap()
    }

    /// Runs one replication pass on storage node `n`; its statistics.
    pub fn replicate(&self, n: u16) -> serde_json::Value {
        self.post_node(n, "/replicate")
    }

    /// Runs one replication pass on the storage node listening on `port`.
    pub fn replicate_at(&self, port: u16) -> serde_json::Value {
        self.post_port(port, "/replicate")
    }

    /// Runs one expirer pass on storage node `n`; its statistics.
    pub fn expire(&self, n: u16) -> serde_json::Value {
        self.post_node(n, "/expire")
    }

    /// A counter from storage node `n`'s `/metrics`, summed over its
    /// labels (0 when it is absent).
    pub fn node_metric(&self, n: u16, name: &str) -> u64 {
        metric_at(self.node_base_port + n, name)
    }

    /// A counter from the proxy's `/metrics`, summed over its labels.
    pub fn proxy_metric(&self, name: &str) -> u64 {
        metric_at(self.proxy_port, name)
    }
}

/// A counter from the `/metrics` served at `port`, summed over its labels
/// (0 when it is absent).
fn metric_at(port: u16, name: &str) -> u64 {
    let head = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let r = raw(port, head, b"");
    assert_eq!(r.status, 200);
    r.text()
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.trim().parse::<u64>().ok()
        })
        .sum()
}

impl Cluster {
    /// Runs one auditor pass on storage node `n`; its statistics.
    pub fn audit(&self, n: u16) -> serde_json::Value {
        self.post_node(n, "/audit")
    }

    /// Every device of the ring for a name: (port, device, where), primaries
    /// first.
    pub fn placement(
        &self,
        account: &str,
        container: &str,
        object: &str,
    ) -> Vec<(u16, String, Holds)> {
        let v = self.lookup(&[account, container, object], "100");
        let partition = v["partition"].as_u64().unwrap() as u32;
        let mut all = Vec::new();
        for (key, is_primary) in [("primaries", true), ("handoffs", false)] {
            for d in v[key].as_array().unwrap() {
                all.push((
                    d["port"].as_u64().unwrap() as u16,
                    d["device"].as_str().unwrap().to_string(),
                    Holds {
                        partition,
                        is_primary,
                    },
                ));
            }
        }
        all
    }

    /// `nubo ring lookup --json` for a path of 1 to 3 names.
    fn lookup(&self, names: &[&str], handoffs: &str) -> serde_json::Value {
        let out = Command::new(nubo())
            .args(["ring", "lookup"])
            .arg(self.dir.path().join("object.ring"))
            .args(names)
            .args(["--handoffs", handoffs, "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The names each primary replica of an account (`["a"]`, its
    /// containers) or a container (`["a", "c"]`, its objects) lists, read
    /// straight from the storage nodes.
    fn replica_listings(&self, names: &[&str]) -> Vec<Vec<String>> {
        let v = self.lookup(names, "0");
        let part = v["partition"].as_u64().unwrap();
        let kind = if names.len() == 1 { "acct" } else { "cont" };
        v["primaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let head = format!(
                    "GET /{kind}/{}/{part}/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    d["device"].as_str().unwrap(),
                    names.join("/")
                );
                let r = raw(d["port"].as_u64().unwrap() as u16, &head, b"");
                let rows: Vec<serde_json::Value> =
                    serde_json::from_slice(&r.body).unwrap_or_default();
                rows.iter()
                    .map(|e| e["name"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .collect()
    }

    /// The plain listing of a container as each of its primary replicas holds it.
    pub fn container_replicas(&self, account: &str, container: &str) -> Vec<String> {
        self.replica_listings(&[account, container])
            .into_iter()
            .map(|names| names.iter().map(|n| format!("{n}\n")).collect())
            .collect()
    }

    /// An object's bytes on one device, through the internal API.
    pub fn internal_get(
        &self,
        port: u16,
        device: &str,
        partition: u32,
        a: &str,
        c: &str,
        o: &str,
    ) -> Option<Vec<u8>> {
        let head = format!("GET /obj/{device}/{partition}/{a}/{c}/{o} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = raw(port, &head, b"");
        (r.status == 200).then_some(r.body)
    }

    /// The container names each primary replica of an account lists.
    pub fn account_replicas(&self, account: &str) -> Vec<Vec<String>> {
        self.replica_listings(&[account])
    }

    /// HEAD of an object on one device, through the internal API.
    pub fn internal_head(
        &self,
        port: u16,
        device: &str,
        partition: u32,
        a: &str,
        c: &str,
        o: &str,
    ) -> u16 {
        let head = format!("HEAD /obj/{device}/{partition}/{a}/{c}/{o} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        raw(port, &head, b"").status
    }
}

/// Whether a device is a primary for a partition.
pub struct Holds {
    pub partition: u32,
    pub is_primary: bool,
}

impl Cluster {
    /// The end of each service's log, for a test that failed.
    fn print_log_tails(&self) {
        let Ok(logs) = std::fs::read_dir(self.data_dir().join("logs")) else {
            return;
        };
        for log in logs.flatten() {
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            if !tail.is_empty() {
                eprintln!("--- {} ---\n{}", log.path().display(), tail.join("\n"));
            }
        }
    }

    /// Guests outlive their agents (as on a real host), so a test that
    /// fails half-way would leave them running: every instance of this
    /// cluster's hosts is destroyed, its libvirt domain undefined.
    fn reap_guests(&self) {
        let Ok(dirs) = std::fs::read_dir(self.data_dir()) else {
            return;
        };
        let ids: Vec<String> = dirs
            .flatten()
            .filter(|d| d.file_name().to_string_lossy().starts_with("compute-host"))
            .filter_map(|d| std::fs::read_dir(d.path().join("instances")).ok())
            .flat_map(|i| i.flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !ids.is_empty() {
            let virsh = |args: &[&str]| {
                Command::new("virsh")
                    .args(["-c", "qemu:///system"])
                    .args(args)
                    .output()
            };
            if let Ok(out) = virsh(&["list", "--all", "--name"]) {
                for name in String::from_utf8_lossy(&out.stdout).lines() {
                    if ids.iter().any(|id| name.ends_with(id.as_str())) {
                        let _ = virsh(&["destroy", name]);
                        let _ = virsh(&["undefine", name]);
                    }
                }
            }
        }
        let _ = Command::new("pkill")
            .args(["-KILL", "-f"])
            .arg(format!("qemu-system.*{}", self.data_dir().display()))
            .status();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log_tails();
        }
        self.reap_guests();
        for c in self.restarted.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// A response: status, lower-case headers, body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP request over a raw socket: full control over what is sent
/// (bad paths, missing lengths), and any status is just a status.
pub fn raw(port: u16, head: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

fn parse_response(buf: &[u8]) -> Resp {
    // A connection closed before any response head (a transfer the server
    // cut off before its first byte) reads as status 0.
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Resp {
            status: 0,
            headers: HashMap::new(),
            body: Vec::new(),
        };
    };
    let head = String::from_utf8_lossy(&buf[..split]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    }
}

/// A client for the Swift API with a token.
pub struct Swift {
    pub url: String,
    pub token: String,
    agent: ureq::Agent,
}

impl Swift {
    pub fn new(cluster: &Cluster) -> Swift {
        Swift::at(&cluster.url())
    }

    /// A client of the proxy at `proxy_url`, logged in as the dev user.
    pub fn at(proxy_url: &str) -> Swift {
        Swift::logged_in(login(proxy_url))
    }

    fn logged_in((url, token): (String, String)) -> Swift {
        Swift {
            url,
            token,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(120))
                .build(),
        }
    }

    /// A client logged in as `user` (`account:user`) with `key`.
    pub fn as_user(cluster: &Cluster, user: &str, key: &str) -> Swift {
        Swift::logged_in(login_as(&cluster.url(), user, key))
    }

    /// A client logged in as the image registry's service user
    /// (`glance:glance`, whose key `nubo up` wrote), to see what the
    /// registry stored.
    pub fn registry_service(cluster: &Cluster) -> Swift {
        let key = std::fs::read_to_string(cluster.data_dir().join("registry-key"))
            .expect("nubo up wrote the registry's key");
        Swift::logged_in(login_as(&cluster.url(), "glance:glance", key.trim()))
    }

    /// `path` is appended to the storage URL (`""`, `/c`, `/c/o?x=y`).
    pub fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.send(method, &format!("{}{path}", self.url), headers, body, true)
    }

    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        with_token: bool,
    ) -> Resp {
        let mut r = self.agent.request(method, url);
        if with_token {
            r = r.set("X-Auth-Token", &self.token);
        }
        for (k, v) in headers {
            r = r.set(k, v);
        }
        let result = if body.is_empty() && matches!(method, "GET" | "HEAD" | "DELETE") {
            r.call()
        } else {
            r.send_bytes(body)
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .map(|n| {
                (
                    n.to_ascii_lowercase(),
                    resp.header(&n).unwrap_or("").to_string(),
                )
            })
            .collect();
        let mut body = Vec::new();
        resp.into_reader().read_to_end(&mut body).unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }
}
