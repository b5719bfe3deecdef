//! Fault test 7: the cluster with each storage node on its own network
//! namespace (its own address, the same port on every "host"), joined by a
//! bridge, so that nothing assumes one host or loopback. Where namespaces
//! cannot be created (no root, no CAP_NET_ADMIN) the test says so and skips.

mod common;
use common::Swift;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NODES: usize = 3;
const NODE_PORT: u16 = 6200;

/// Namespaces `<tag>n<i>` with a veth pair each, their host ends on bridge
/// `<tag>br` which holds `<subnet>.1`; node i is `<subnet>.<10+i>`.
/// Everything is removed on drop.
struct Network {
    tag: String,
    subnet: String,
    made: Vec<Vec<String>>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Network {
    fn create() -> Result<Network, String> {
        let pid = std::process::id();
        let mut net = Network {
            tag: format!("nb{}", pid % 100_000),
            subnet: format!("10.213.{}", pid % 250),
            made: Vec::new(),
        };
        let br = format!("{}br", net.tag);
        ip(&["link", "add", "name", &br, "type", "bridge"])?;
        net.made.push(vec!["link".into(), "del".into(), br.clone()]);
        ip(&["addr", "add", &format!("{}.1/24", net.subnet), "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        for i in 0..NODES {
            let ns = net.ns(i);
            ip(&["netns", "add", &ns])?;
            net.made
                .push(vec!["netns".into(), "del".into(), ns.clone()]);
            let (host, inner) = (format!("{}h{i}", net.tag), format!("{}v{i}", net.tag));
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner])?;
            net.made
                .push(vec!["link".into(), "del".into(), host.clone()]);
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &host, "master", &br])?;
            ip(&["link", "set", &host, "up"])?;
            let addr = format!("{}/24", net.addr(i));
            for args in [
                vec!["addr", "add", addr.as_str(), "dev", inner.as_str()],
                vec!["link", "set", inner.as_str(), "up"],
                vec!["link", "set", "lo", "up"],
            ] {
                let mut full = vec!["netns", "exec", ns.as_str(), "ip"];
                full.extend(args);
                ip(&full)?;
            }
        }
        Ok(net)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, 10 + i)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for args in self.made.iter().rev() {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = ip(&args);
        }
    }
}

/// The storage node processes, killed on drop.
struct Nodes(Vec<Option<Child>>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_node(net: &Network, dir: &Path, i: usize) -> Child {
    let child = Command::new("ip")
        .args(["netns", "exec", &net.ns(i)])
        .arg(common::nubo())
        .arg("storage-node")
        .arg("--config")
        .arg(dir.join(format!("node{i}.toml")))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect((net.addr(i).as_str(), NODE_PORT)).is_err() {
        assert!(Instant::now() < deadline, "node {i} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn replicate(net: &Network, i: usize) -> serde_json::Value {
    let r = ureq::post(&format!("http://{}:{NODE_PORT}/replicate", net.addr(i)))
        .call()
        .unwrap();
    serde_json::from_reader(r.into_reader()).unwrap()
}

#[test]
fn a_cluster_across_network_namespaces() {
    let net = match Network::create() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("SKIPPED: network namespaces are not available here ({e})");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let builder = d.join("object.builder");
    let ring = d.join("object.ring");
    let b = builder.to_str().unwrap();
    common::nubo_ok(&[
        "ring",
        "create",
        b,
        "--part-power",
        "8",
        "--replicas",
        "3",
        "--min-part-hours",
        "0",
    ]);
    for i in 0..NODES {
        common::ring_add(b, i as u32 + 1, &net.addr(i), NODE_PORT, "sda");
    }
    common::nubo_ok(&["ring", "rebalance", b, "--ring", ring.to_str().unwrap()]);
    for i in 0..NODES {
        let root = d.join(format!("node{i}"));
        std::fs::create_dir_all(root.join("sda")).unwrap();
        // Each host has its own copy of the ring, as on separate machines.
        let own_ring = root.join("object.ring");
        std::fs::copy(&ring, &own_ring).unwrap();
        std::fs::write(
            d.join(format!("node{i}.toml")),
            format!(
                "bind_ip = \"{}\"\nport = {NODE_PORT}\ndevices_root = \"{}\"\nring = \"{}\"\n",
                net.addr(i),
                root.display(),
                own_ring.display()
            ),
        )
        .unwrap();
    }
    let proxy_port = common::ports(1);
    std::fs::write(
        d.join("proxy.toml"),
        format!(
            "port = {proxy_port}\nring = \"{}\"\n[auth]\ntoken_secret = \"netns-test\"\n\
             [[auth.users]]\naccount = \"test\"\nuser = \"tester\"\nkey = \"testing\"\nadmin = true\n",
            ring.display()
        ),
    )
    .unwrap();
    let mut nodes = Nodes((0..NODES).map(|i| Some(start_node(&net, d, i))).collect());
    let mut proxy = Command::new(common::nubo())
        .arg("proxy")
        .arg("--config")
        .arg(d.join("proxy.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let proxy_url = format!("http://127.0.0.1:{proxy_port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", proxy_port)).is_err() {
        assert!(Instant::now() < deadline, "proxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        exercise(&net, d, &proxy_url, &mut nodes)
    }));
    let _ = proxy.kill();
    let _ = proxy.wait();
    drop(nodes);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

fn exercise(net: &Network, d: &Path, proxy_url: &str, nodes: &mut Nodes) {
    let s = Swift::at(proxy_url);
    assert_eq!(s.req("PUT", "/spread", &[], b"").status, 201);
    let body = |i: usize| format!("across hosts {i} ").repeat(30 + i).into_bytes();
    let objects = 60;
    for i in 0..30 {
        assert_eq!(
            s.req("PUT", &format!("/spread/o{i}"), &[], &body(i)).status,
            201
        );
    }
    // One host goes away: writes and reads go on.
    let mut gone = nodes.0[1].take().unwrap();
    gone.kill().unwrap();
    gone.wait().unwrap();
    for i in 30..objects {
        assert_eq!(
            s.req("PUT", &format!("/spread/o{i}"), &[], &body(i)).status,
            201
        );
    }
    for i in 0..objects {
        assert_eq!(
            s.req("GET", &format!("/spread/o{i}"), &[], b"").body,
            body(i),
            "o{i}"
        );
    }
    nodes.0[1] = Some(start_node(net, d, 1));
    let started = Instant::now();
    let mut pushed_total = 0;
    for _ in 0..6 {
        let pushed: u64 = (0..NODES)
            .map(|i| replicate(net, i)["objects_pushed"].as_u64().unwrap())
            .sum();
        pushed_total += pushed;
        if pushed == 0 {
            break;
        }
    }
    // Every object on all three hosts, read straight from each.
    let mut copies = 0;
    for i in 0..objects {
        for h in 0..NODES {
            let head = lookup_partition(d, &format!("o{i}"));
            let url = format!(
                "http://{}:{NODE_PORT}/obj/sda/{head}/AUTH_test/spread/o{i}",
                net.addr(h)
            );
            let r = ureq::get(&url).call().unwrap();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut r.into_reader(), &mut got).unwrap();
            assert_eq!(got, body(i), "o{i} on host {h}");
            copies += 1;
        }
    }
    // Listings crossed hosts too.
    let mut want: Vec<String> = (0..objects).map(|i| format!("o{i}\n")).collect();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.req("GET", "/spread", &[], b"").text() != want.concat() {
        assert!(Instant::now() < deadline, "listing incomplete");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "network namespaces: {objects} written across {NODES} hosts, {objects} acknowledged, 0 \
         lost; {pushed_total} replicas restored in {:?}; {copies} copies checked on their hosts",
        started.elapsed()
    );
}

/// The partition of an object of the test container, from the ring file.
fn lookup_partition(d: &Path, object: &str) -> u64 {
    let out = common::nubo_ok(&[
        "ring",
        "lookup",
        d.join("object.ring").to_str().unwrap(),
        "AUTH_test",
        "spread",
        object,
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["partition"].as_u64().unwrap()
}
