//! Compute on a real cluster (`nubo up`: registry, compute API, one
//! agent; more agents started by the tests), with real QEMU under software
//! emulation, through libvirt or directly. The guests are generated boot
//! sectors that print a marker on COM1 (and power off, or idle).

mod common;
use common::corpus;
use common::glance::{import, Glance};
use common::nova::{upload_image, Nova};
use common::Cluster;
use compute::boot_disk::{idle_marker_disk, marker_disk};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(90);

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// The libvirt domains whose names contain `id`.
fn domains_of(id: &str) -> Vec<String> {
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system", "list", "--all", "--name"])
        .output()
        .expect("virsh");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(id))
        .map(str::to_string)
        .collect()
}

/// QEMU processes whose command line names `path`.
fn qemu_processes(path: &Path) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-a", "-f", &format!("qemu-system.*{}", path.display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// One value of a Prometheus text page (the sum over label sets when
/// `name` has none).
fn metric(url: &str, name: &str) -> f64 {
    let text = ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn md5_hex(b: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(b))
}

fn agent_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn hypervisors(nova: &Nova) -> Vec<Value> {
    let (st, v) = nova.call("GET", "/os-hypervisors/detail", None);
    assert_eq!(st, 200, "{v}");
    v["hypervisors"].as_array().unwrap().clone()
}

/// Waits until the API sees exactly `up` hosts up.
fn wait_hosts_up(nova: &Nova, up: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hs = hypervisors(nova);
        let mut now_up: Vec<String> = hs
            .iter()
            .filter(|h| h["state"] == "up")
            .map(|h| h["hypervisor_hostname"].as_str().unwrap().to_string())
            .collect();
        now_up.sort();
        let mut want: Vec<String> = up.iter().map(|s| s.to_string()).collect();
        want.sort();
        if now_up == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "hosts up {now_up:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Edits a service's TOML config.
fn edit_toml(path: &Path, changes: &[(&str, toml::Value)]) {
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (k, v) in changes {
        t.insert(k.to_string(), v.clone());
    }
    std::fs::write(path, toml::to_string(&t).unwrap()).unwrap();
}

fn text(v: &str) -> toml::Value {
    toml::Value::String(v.into())
}

/// Starts one more compute agent (another "host" on loopback), from the
/// cluster's agent config with `changes`; its config path and port.
fn start_agent(c: &mut Cluster, host: &str, changes: &[(&str, toml::Value)]) -> (PathBuf, u16) {
    let port = common::ports(1);
    let path = c.data_dir().join(format!("compute-agent-{host}.toml"));
    std::fs::copy(c.data_dir().join("compute-agent.toml"), &path).unwrap();
    let data = c.data_dir().join(format!("compute-host-{host}"));
    let mut all = vec![
        ("host", text(host)),
        ("port", toml::Value::Integer(port.into())),
        ("data_dir", text(&data.display().to_string())),
    ];
    all.extend(changes.iter().cloned());
    edit_toml(&path, &all);
    c.start_service("compute-agent", &path, port);
    (path, port)
}

/// Kills a service, applies `changes` to its config, starts it again.
fn restart_service(
    c: &mut Cluster,
    role: &str,
    config: &Path,
    port: u16,
    changes: &[(&str, toml::Value)],
) {
    c.signal_service(config, "KILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "{role} did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    edit_toml(config, changes);
    c.start_service(role, config, port);
}

fn restart_api(c: &mut Cluster, changes: &[(&str, toml::Value)]) {
    let (path, port) = (c.data_dir().join("compute-api.toml"), c.compute_port);
    restart_service(c, "compute-api", &path, port, changes);
}

/// Writes a generated guest disk and converts it with qemu-img.
fn guest_image(dir: &Path, disk: &[u8], format: &str) -> Vec<u8> {
    let raw = dir.join("guest.raw");
    std::fs::write(&raw, disk).unwrap();
    if format == "raw" {
        return disk.to_vec();
    }
    let out = dir.join(format!("guest.{format}"));
    let st = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", format])
        .arg(&raw)
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(&out).unwrap()
}

/// The whole path for one driver: a boot sector converted to VMDK and
/// uploaded, either imported (the registry converts it to qcow2) or stored
/// as it is (the agent converts it when it caches it), launched (the agent
/// fetches, caches, overlays and boots it); the guest prints its marker and
/// powers off, which the API learns from the host; started again it prints
/// again; deleted, nothing of it is left.
fn boot_sector_guest_through_the_api(driver: &str, registry_converts: bool) {
    let c = Cluster::start_with(1, &["--compute-driver", driver]);
    let (g, nova) = (Glance::new(&c), Nova::new(&c));
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("NUBO-BOOT-{}", driver.to_uppercase());
    let vmdk = guest_image(dir.path(), &marker_disk(&marker, 1 << 20), "vmdk");
    let image = if registry_converts {
        let img = import(&g, &vmdk, "vmdk", "bare", Some("qcow2"));
        assert_eq!(img["status"], "active", "{img}");
        assert_eq!(img["disk_format"], "qcow2");
        img["id"].as_str().unwrap().to_string()
    } else {
        upload_image(&g, "marker", "vmdk", &vmdk)
    };
    let image = image.as_str();

    let id = nova.create("marker", image, "1", json!({}));
    let server = nova.wait_status(&id, &["SHUTOFF"], BOOT);
    assert_eq!(server["OS-EXT-SRV-ATTR:host"], hostname());
    assert_eq!(server["OS-EXT-AZ:availability_zone"], "nova");
    assert_eq!(server["flavor"]["original_name"], "m1.tiny");
    assert_eq!(server["OS-EXT-STS:power_state"], 4);
    if driver == "libvirt" {
        // The name the API shows is the hypervisor's.
        assert_eq!(
            domains_of(&id),
            [server["OS-EXT-SRV-ATTR:instance_name"].as_str().unwrap()]
        );
    }
    assert!(nova.console(&id).contains(&marker));
    let h = &hypervisors(&nova)[0];
    assert_eq!(h["nubo:driver"], driver);
    assert_eq!(h["nubo:cached_images"], json!([image]));
    let base = c.data_dir().join("compute-host/_base").join(image);
    // Kept as qcow2 either way: converted by the registry or by the agent.
    let base_info = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(&base)
        .output()
        .unwrap();
    let base_info: Value = serde_json::from_slice(&base_info.stdout).unwrap();
    assert_eq!(base_info["format"], "qcow2");
    let overlay = c
        .data_dir()
        .join(format!("compute-host/instances/{id}/disk.qcow2"));
    let info = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(&overlay)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["backing-filename"], base.display().to_string());
    assert_eq!(info["virtual-size"], 1u64 << 30, "grown to m1.tiny's disk");

    let (st, _) = nova.action(&id, json!({"os-start": null}));
    assert_eq!(st, 202);
    nova.wait_console(&id, &marker, 2, BOOT);
    nova.wait_status(&id, &["SHUTOFF"], BOOT);

    nova.delete(&id);
    nova.wait_gone(&id, BOOT);
    assert!(domains_of(&id).is_empty());
    assert!(!overlay.parent().unwrap().exists());
    assert!(qemu_processes(c.data_dir()).is_empty());
}

#[test]
fn a_boot_sector_guest_runs_through_the_api_on_libvirt() {
    boot_sector_guest_through_the_api("libvirt", true);
}

#[test]
fn a_boot_sector_guest_runs_through_the_api_on_qemu() {
    boot_sector_guest_through_the_api("qemu", false);
}

#[test]
fn actions_diagnostics_and_metrics_follow_nova() {
    let c = Cluster::start(1);
    let (g, nova) = (Glance::new(&c), Nova::new(&c));
    let image = upload_image(&g, "idle", "raw", &idle_marker_disk("NUBO-IDLE", 1 << 20));
    let id = nova.create("idle", &image, "1", json!({"metadata": {"role": "test"}}));
    let s = nova.wait_status(&id, &["ACTIVE"], BOOT);
    assert_eq!(s["metadata"]["role"], "test");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    nova.wait_console(&id, "NUBO-IDLE", 1, BOOT);

    let (st, d) = nova.call("GET", &format!("/servers/{id}/diagnostics"), None);
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["state"], "running");
    assert_eq!(d["num_cpus"], 1);
    assert_eq!(d["memory_details"]["maximum"], 512);
    assert!(d["cpu_details"][0]["time"].as_u64().unwrap() > 0, "{d}");
    assert!(
        d["disk_details"][0]["read_bytes"].as_u64().unwrap() >= 512,
        "{d}"
    );
    let agent = agent_url(c.agent_port);
    assert!(metric(&agent, "nubo_instance_cpu_seconds_total") > 0.0);
    assert_eq!(metric(&agent, "nubo_agent_instances"), 1.0);

    // Not allowed from ACTIVE: 409 in Nova's words.
    let (st, v) = nova.action(&id, json!({"os-start": null}));
    assert_eq!(st, 409, "{v}");
    assert!(v["conflictingRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("vm_state active"));
    let (st, _) = nova.action(&id, json!({"reboot": {"type": "WARM"}}));
    assert_eq!(st, 400);
    let (st, _) = nova.action(&id, json!({"os-frobnicate": null}));
    assert_eq!(st, 400);

    // Hard reboot: the guest boots again.
    let (st, _) = nova.action(&id, json!({"reboot": {"type": "HARD"}}));
    assert_eq!(st, 202);
    assert!(matches!(
        nova.show(&id)["status"].as_str().unwrap(),
        "HARD_REBOOT" | "ACTIVE"
    ));
    nova.wait_console(&id, "NUBO-IDLE", 2, BOOT);
    nova.wait_status(&id, &["ACTIVE"], BOOT);
    // Soft reboot: the guest ignores ACPI, so after the shutdown timeout
    // it is powered off and on.
    let (st, _) = nova.action(&id, json!({"reboot": {"type": "SOFT"}}));
    assert_eq!(st, 202);
    assert_eq!(nova.show(&id)["status"], "REBOOT");
    nova.wait_console(&id, "NUBO-IDLE", 3, BOOT);
    nova.wait_status(&id, &["ACTIVE"], BOOT);
    // Stop and start.
    let (st, _) = nova.action(&id, json!({"os-stop": null}));
    assert_eq!(st, 202);
    let s = nova.wait_status(&id, &["SHUTOFF"], BOOT);
    assert_eq!(s["OS-EXT-STS:power_state"], 4);
    let (st, _) = nova.action(&id, json!({"os-stop": null}));
    assert_eq!(st, 409);
    let (st, _) = nova.action(&id, json!({"os-start": null}));
    assert_eq!(st, 202);
    nova.wait_status(&id, &["ACTIVE"], BOOT);
    nova.wait_console(&id, "NUBO-IDLE", 4, BOOT);
    // The last lines only.
    let (_, v) = nova.action(&id, json!({"os-getConsoleOutput": {"length": 1}}));
    assert_eq!(
        v["output"].as_str().unwrap().matches("NUBO-IDLE").count(),
        1,
        "{v}"
    );

    // Listings, and the API's metrics.
    let (_, list) = nova.call("GET", "/servers", None);
    assert_eq!(list["servers"][0]["id"], id.as_str());
    let (_, list) = nova.call("GET", "/servers/detail?status=SHUTOFF", None);
    assert!(list["servers"].as_array().unwrap().is_empty());
    assert_eq!(
        metric(&c.compute_url(), "nubo_servers{status=\"ACTIVE\"}"),
        1.0
    );
    assert_eq!(metric(&c.compute_url(), "nubo_launches_total"), 1.0);

    nova.delete(&id);
    nova.wait_gone(&id, BOOT);
    assert!(qemu_processes(c.data_dir()).is_empty());
}

#[test]
fn ten_instances_share_one_fetch_and_leave_nothing_behind() {
    let mut c = Cluster::start(1);
    let (g, nova) = (Glance::new(&c), Nova::new(&c));
    let image = upload_image(&g, "idle", "raw", &idle_marker_disk("NUBO-TEN", 1 << 20));
    let ids: Vec<String> = (0..10)
        .map(|i| nova.create(&format!("vm-{i}"), &image, "1", json!({})))
        .collect();
    for id in &ids {
        nova.wait_status(id, &["ACTIVE"], Duration::from_secs(180));
    }
    let agent = agent_url(c.agent_port);
    assert_eq!(metric(&agent, "nubo_template_fetches_total"), 1.0);
    assert_eq!(metric(&agent, "nubo_template_cache_hits_total"), 9.0);
    let base = c.data_dir().join("compute-host/_base").join(&image);
    let before = md5_hex(&std::fs::read(&base).unwrap());
    for id in &ids {
        nova.wait_console(id, "NUBO-TEN", 1, BOOT);
        assert!(c
            .data_dir()
            .join(format!("compute-host/instances/{id}/disk.qcow2"))
            .exists());
    }
    // The host reports its domains with each heartbeat, as Nova's resource
    // tracker does periodically: the counts follow within a few beats.
    let deadline = Instant::now() + Duration::from_secs(60);
    let h = loop {
        let h = hypervisors(&nova).remove(0);
        if h["running_vms"] == 10 || Instant::now() > deadline {
            break h;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(h["running_vms"], 10, "{h}");
    assert_eq!(h["vcpus_used"], 10);
    assert_eq!(h["memory_mb_used"], 10 * 512);

    for id in &ids {
        nova.delete(id);
    }
    for id in &ids {
        nova.wait_gone(id, BOOT);
        assert!(domains_of(id).is_empty(), "domain of {id} left");
    }
    assert_eq!(md5_hex(&std::fs::read(&base).unwrap()), before);
    let left: Vec<_> = std::fs::read_dir(c.data_dir().join("compute-host/instances"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "instance directories left: {left:?}");
    assert!(qemu_processes(c.data_dir()).is_empty());
    // The next heartbeat shows nothing allocated.
    let deadline = Instant::now() + Duration::from_secs(15);
    while hypervisors(&nova)[0]["running_vms"] != 0 {
        assert!(Instant::now() < deadline, "allocations left");
        std::thread::sleep(Duration::from_millis(200));
    }
    let h = &hypervisors(&nova)[0];
    assert_eq!(h["vcpus_used"], 0);
    assert_eq!(h["memory_mb_used"], 0);
    assert_eq!(h["nubo:cached_images"], json!([image]));

    // The cache manager: with nothing using it for a second, the base goes.
    let (agent_cfg, port) = (c.data_dir().join("compute-agent.toml"), c.agent_port);
    restart_service(
        &mut c,
        "compute-agent",
        &agent_cfg,
        port,
        &[("base_unused_secs", toml::Value::Integer(1))],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while base.exists() || hypervisors(&nova)[0]["nubo:cached_images"] != json!([]) {
        assert!(Instant::now() < deadline, "the unused base was not removed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The host each server ended on.
fn host_of(nova: &Nova, id: &str) -> String {
    let s = nova.wait_status(id, &["ACTIVE", "SHUTOFF", "ERROR"], BOOT);
    assert_ne!(s["status"], "ERROR", "{s}");
    s["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string()
}

fn delete_all(nova: &Nova, ids: &[String]) {
    for id in ids {
        nova.delete(id);
    }
    for id in ids {
        nova.wait_gone(id, BOOT);
    }
}

#[test]
fn two_hosts_each_policy_places_as_specified_and_failures_move_on() {
    let mut c = Cluster::start(1);
    let (g, nova) = (Glance::new(&c), Nova::new(&c));
    let image = upload_image(&g, "off", "raw", &marker_disk("NUBO-TWO", 1 << 20));
    let a = hostname();
    // Host b: another zone, far more RAM than this machine (so spreading
    // prefers it), the qemu driver.
    let (b_cfg, b_port) = start_agent(
        &mut c,
        "host-b",
        &[
            ("availability_zone", text("az-b")),
            ("driver", text("qemu")),
            ("ram_mb", toml::Value::Integer(1 << 20)),
        ],
    );
    wait_hosts_up(&nova, &[&a, "host-b"]);
    let (_, zones) = nova.call("GET", "/os-availability-zone", None);
    let names: Vec<&str> = zones["availabilityZoneInfo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["zoneName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["az-b", "nova"]);

    // filter_weigher, spreading (the default): the host with more free RAM.
    let one = nova.create("spread", &image, "1", json!({}));
    assert_eq!(host_of(&nova, &one), "host-b");
    // The requested zone wins over the weights.
    let two = nova.create("zoned", &image, "1", json!({"availability_zone": "nova"}));
    assert_eq!(host_of(&nova, &two), a);
    // Anti-affinity: a second member of a group goes elsewhere.
    let g1 = nova.create("g1", &image, "1", json!({}));
    let g1_host = host_of(&nova, &g1);
    let (st, v) = nova.call(
        "POST",
        "/servers",
        Some(json!({"server": {"name": "g2", "imageRef": image, "flavorRef": "1"}, "os:scheduler_hints": {"group": "web"}})),
    );
    assert_eq!(st, 202, "{v}");
    let g2 = v["server"]["id"].as_str().unwrap().to_string();
    let (_, v) = nova.call(
        "POST",
        "/servers",
        Some(json!({"server": {"name": "g3", "imageRef": image, "flavorRef": "1"}, "os:scheduler_hints": {"group": "web"}})),
    );
    let g3 = v["server"]["id"].as_str().unwrap().to_string();
    assert_ne!(host_of(&nova, &g2), host_of(&nova, &g3));
    let _ = g1_host;
    delete_all(&nova, &[one, two, g1, g2, g3]);

    // Packing (negative multiplier): the host with less free RAM.
    restart_api(
        &mut c,
        &[(
            "scheduler",
            toml::Value::Table(
                toml::from_str("policy = \"filter_weigher\"\nweights = { free_ram = -1.0, free_vcpus = 0.0, instances = 0.0 }").unwrap(),
            ),
        )],
    );
    wait_hosts_up(&nova, &[&a, "host-b"]);
    let packed: Vec<String> = (0..2)
        .map(|i| nova.create(&format!("pack-{i}"), &image, "1", json!({})))
        .collect();
    for id in &packed {
        assert_eq!(host_of(&nova, id), a);
    }
    // least_loaded: the host with fewer instances (b has none).
    restart_api(
        &mut c,
        &[(
            "scheduler",
            toml::Value::Table(toml::from_str("policy = \"least_loaded\"").unwrap()),
        )],
    );
    wait_hosts_up(&nova, &[&a, "host-b"]);
    let least = nova.create("least", &image, "1", json!({}));
    assert_eq!(host_of(&nova, &least), "host-b");
    // az_random: always in the zone asked for.
    restart_api(
        &mut c,
        &[(
            "scheduler",
            toml::Value::Table(toml::from_str("policy = \"az_random\"").unwrap()),
        )],
    );
    wait_hosts_up(&nova, &[&a, "host-b"]);
    let mut in_zone = Vec::new();
    for i in 0..3 {
        let id = nova.create(
            &format!("az-{i}"),
            &image,
            "1",
            json!({"availability_zone": "az-b"}),
        );
        assert_eq!(host_of(&nova, &id), "host-b");
        in_zone.push(id);
    }
    // random: a host that passes the filters, never one that is down.
    restart_api(
        &mut c,
        &[
            (
                "scheduler",
                toml::Value::Table(toml::from_str("policy = \"random\"").unwrap()),
            ),
            // Three heartbeats (nubo up beats every 2 s): a busy machine
            // delays a beat, it does not lose a live host.
            ("host_down_after_secs", toml::Value::Integer(6)),
        ],
    );
    wait_hosts_up(&nova, &[&a, "host-b"]);
    c.signal_service(&b_cfg, "STOP");
    wait_hosts_up(&nova, &[&a]);
    let mut random = Vec::new();
    for i in 0..4 {
        let id = nova.create(&format!("rnd-{i}"), &image, "1", json!({}));
        assert_eq!(
            host_of(&nova, &id),
            a,
            "a host that is down got an instance"
        );
        random.push(id);
    }
    // Only the down host is in az-b: no valid host.
    let id = nova.create("nowhere", &image, "1", json!({"availability_zone": "az-b"}));
    let s = nova.wait_status(&id, &["ERROR"], BOOT);
    let msg = s["fault"]["message"].as_str().unwrap();
    assert!(msg.contains("No valid host was found"), "{msg}");
    assert!(msg.contains("host-b: host is down"), "{msg}");
    c.signal_service(&b_cfg, "CONT");
    wait_hosts_up(&nova, &[&a, "host-b"]);
    delete_all(
        &nova,
        &[packed, vec![least], in_zone, random, vec![id]].concat(),
    );

    // A host whose launches fail: the scheduler moves on to the next one.
    restart_service(
        &mut c,
        "compute-agent",
        &b_cfg,
        b_port,
        &[("qemu_binary", text("/bin/false"))],
    );
    let port = b_port;
    restart_api(
        &mut c,
        &[(
            "scheduler",
            toml::Value::Table(toml::from_str("policy = \"filter_weigher\"").unwrap()),
        )],
    );
    wait_hosts_up(&nova, &[&a, "host-b"]);
    let retried = nova.create("retried", &image, "1", json!({}));
    assert_eq!(host_of(&nova, &retried), a);
    assert_eq!(
        metric(&c.compute_url(), "nubo_launch_attempts_failed_total"),
        1.0
    );
    assert_eq!(
        metric(
            &agent_url(port),
            "nubo_agent_launches_total{result=\"failed\"}"
        ),
        1.0
    );
    // Host b is left with nothing of it.
    assert!(
        std::fs::read_dir(c.data_dir().join("compute-host-host-b/instances"))
            .unwrap()
            .next()
            .is_none()
    );
    delete_all(&nova, &[retried]);
}

#[test]
fn bad_requests_get_nova_faults_and_boot_nothing() {
    let c = Cluster::start(1);
    let (g, nova) = (Glance::new(&c), Nova::new(&c));
    let image = upload_image(&g, "off", "raw", &marker_disk("NUBO-BAD", 1 << 20));
    let create = |body: Value| nova.call("POST", "/servers", Some(body));
    let server = |image: &str, flavor: &str| json!({"server": {"name": "x", "imageRef": image, "flavorRef": flavor}});

    let (st, v) = create(server("5fd2e3a0-0000-4000-8000-000000000000", "1"));
    assert_eq!(st, 400, "{v}");
    assert!(v["badRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("could not be found"));
    let (st, v) = create(server(&image, "no-such-flavor"));
    assert_eq!(st, 400, "{v}");
    assert!(v["badRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("Flavor"));
    let (st, _) = create(json!({"server": {"imageRef": image, "flavorRef": "1"}}));
    assert_eq!(st, 400, "a name is required");
    let (st, _) = create(
        json!({"server": {"name": "x", "imageRef": image, "flavorRef": "1", "availability_zone": "atlantis"}}),
    );
    assert_eq!(st, 400, "an unknown zone");
    let (st, _) = nova.call("GET", "/servers/5fd2e3a0-0000-4000-8000-000000000000", None);
    assert_eq!(st, 404);
    // Malformed JSON.
    let r = ureq::post(&format!("{}/servers", nova.url))
        .set("X-Auth-Token", &nova.token)
        .send_string("{not json");
    assert_eq!(r.unwrap_err().into_response().unwrap().status(), 400);
    // No token.
    assert_eq!(
        ureq::get(&format!("{}/servers", nova.url))
            .call()
            .unwrap_err()
            .into_response()
            .unwrap()
            .status(),
        401
    );

    // A user without .admin (Swift's test:tester3) uses servers but does
    // not manage flavors or see hosts.
    let user = Nova {
        token: common::login_as(&c.url(), "test:tester3", "testing3").1,
        ..Nova::new(&c)
    };
    let (st, _) = user.call("GET", "/flavors/detail", None);
    assert_eq!(st, 200);
    let (st, v) = user.call(
        "POST",
        "/flavors",
        Some(json!({"flavor": {"name": "mine", "vcpus": 1, "ram": 64, "disk": 1}})),
    );
    assert_eq!(st, 403, "{v}");
    assert!(v["forbidden"]["message"].is_string());
    assert_eq!(user.call("DELETE", "/flavors/1", None).0, 403);
    assert_eq!(user.call("GET", "/os-hypervisors", None).0, 403);

    // Key pairs and user data, refused as Nova refuses them; nothing boots.
    let keypair = |body: Value| nova.call("POST", "/os-keypairs", Some(body));
    for bad in [
        json!({"keypair": {"name": "k", "public_key": "ssh-ed25519 AAAA"}}),
        json!({"keypair": {"name": "k/1"}}),
        json!({"keypair": {"name": ""}}),
        json!({"keypair": {"name": "k", "type": "x509"}}),
        json!({"keypair": {}}),
    ] {
        let (st, v) = keypair(bad.clone());
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(v["badRequest"]["message"].is_string(), "{v}");
    }
    let (st, v) = nova.call("GET", "/os-keypairs/nothing", None);
    assert_eq!(st, 404, "{v}");
    assert_eq!(nova.call("DELETE", "/os-keypairs/nothing", None).0, 404);
    // Sixteen racing creators of one name: exactly one wins.
    let answers: Vec<u16> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..16)
            .map(|_| s.spawn(|| keypair(json!({"keypair": {"name": "raced"}})).0))
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(
        answers.iter().filter(|s| **s == 200).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|s| **s == 409).count(),
        15,
        "{answers:?}"
    );
    let with = |extra: Value| {
        let mut body = server(&image, "1");
        body["server"]
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        create(body)
    };
    let (st, v) = with(json!({"key_name": "no-such-key"}));
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["badRequest"]["message"], "Invalid key_name provided.");
    let (st, v) = with(json!({"user_data": "not base64!"}));
    assert_eq!(st, 400, "{v}");
    let (st, v) = with(json!({"user_data": "QUFB".repeat(16384)}));
    assert_eq!(st, 400, "user data over 65535 characters: {v}");
    let (st, v) = with(json!({"config_drive": "maybe"}));
    assert_eq!(st, 400, "{v}");
    assert_eq!(nova.call("DELETE", "/os-keypairs/raced", None).0, 202);
    let (_, listed) = nova.call("GET", "/servers", None);
    assert_eq!(listed["servers"], json!([]), "a refused server was made");

    // An image still queued: 409.
    let queued = g.create(json!({"name": "q", "disk_format": "raw", "container_format": "bare"}));
    let (st, v) = create(server(&queued, "1"));
    assert_eq!(st, 409, "{v}");

    // A flavor larger than any host: ERROR, "no valid host".
    let (st, f) = nova.call(
        "POST",
        "/flavors",
        Some(json!({"flavor": {"name": "huge", "vcpus": 4, "ram": 1 << 30, "disk": 10}})),
    );
    assert_eq!(st, 200, "{f}");
    let huge = f["flavor"]["id"].as_str().unwrap().to_string();
    let (st, _) = nova.call(
        "POST",
        "/flavors",
        Some(json!({"flavor": {"name": "huge", "vcpus": 1, "ram": 1, "disk": 1}})),
    );
    assert_eq!(st, 409, "duplicate flavor name");
    let (st, _) = nova.call(
        "POST",
        "/flavors",
        Some(json!({"flavor": {"name": "neg", "vcpus": -1, "ram": 1, "disk": 1}})),
    );
    assert_eq!(st, 400);
    let (st, v) = create(server(&image, &huge));
    assert_eq!(st, 202, "{v}");
    let id = v["server"]["id"].as_str().unwrap().to_string();
    let s = nova.wait_status(&id, &["ERROR"], BOOT);
    let msg = s["fault"]["message"].as_str().unwrap();
    assert!(
        msg.contains("No valid host was found") && msg.contains("not enough RAM"),
        "{msg}"
    );
    assert!(s["OS-EXT-SRV-ATTR:host"].is_null());
    nova.delete(&id);
    nova.wait_gone(&id, BOOT);
    let (st, _) = nova.call("DELETE", &format!("/flavors/{huge}"), None);
    assert_eq!(st, 202);

    // A base that fails re-inspection on the host (here: it gained a
    // backing file after it was cached): ERROR, and nothing boots.
    let first = nova.create("first", &image, "1", json!({}));
    nova.wait_status(&first, &["SHUTOFF", "ACTIVE"], BOOT);
    let base = c.data_dir().join("compute-host/_base").join(&image);
    let hostile = tempfile::tempdir().unwrap();
    corpus::qcow2_with_backing_file(&hostile.path().join("b.qcow2"), "/etc/shadow");
    std::fs::copy(hostile.path().join("b.qcow2"), &base).unwrap();
    let bad = nova.create("tampered", &image, "1", json!({}));
    let s = nova.wait_status(&bad, &["ERROR"], BOOT);
    let msg = s["fault"]["message"].as_str().unwrap();
    assert!(msg.contains("backing"), "{msg}");
    assert!(domains_of(&bad).is_empty());
    assert!(!c
        .data_dir()
        .join(format!("compute-host/instances/{bad}"))
        .exists());
    delete_all(&nova, &[first, bad]);
}

#[test]
fn the_nubo_server_cli_launches_with_a_key_and_user_data() {
    let c = Cluster::start(1);
    let g = Glance::new(&c);
    let image = upload_image(&g, "idle", "raw", &idle_marker_disk("NUBO-CLI-UP", 1 << 20));
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let out = c.nubo_server().args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str]| {
        let (ok, out, err) = cli(args);
        assert!(ok, "nubo server {args:?}: {err}");
        out
    };
    // A key pair made by the API, its private key written 0600; one
    // imported from ssh-keygen.
    let private = dir.path().join("made");
    let made = ok(&[
        "keypair",
        "create",
        "made",
        "--private-key",
        private.to_str().unwrap(),
    ]);
    assert!(made.starts_with("made "), "{made}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&private).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    common::run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.path().join("id")),
    );
    ok(&[
        "keypair",
        "import",
        "mine",
        "--public-key",
        dir.path().join("id.pub").to_str().unwrap(),
    ]);
    let listed = ok(&["keypair", "list"]);
    assert!(
        listed.contains("made ") && listed.contains("mine "),
        "{listed}"
    );
    let (refused, _, err) = cli(&["keypair", "create", "made"]);
    assert!(!refused && err.contains("already exists"), "{err}");
    ok(&["keypair", "delete", "made"]);
    assert!(!ok(&["keypair", "list"]).contains("made "));

    // A server with the imported key and user data, waited for.
    std::fs::write(dir.path().join("user-data"), "#cloud-config\n").unwrap();
    let created = ok(&[
        "create",
        "cli-vm",
        "--image",
        &image,
        "--flavor",
        "m1.tiny",
        "--key-name",
        "mine",
        "--user-data",
        dir.path().join("user-data").to_str().unwrap(),
        "--network",
        "private=10.42.0.9",
        "--wait",
        "120",
    ]);
    let id = created.split_whitespace().next().unwrap().to_string();
    assert!(created.contains(" ACTIVE"), "{created}");
    let listed = ok(&["list"]);
    assert!(listed.contains(&id) && listed.contains("mine"), "{listed}");
    assert!(listed.contains("private=10.42.0.9"), "{listed}");
    let shown: Value = serde_json::from_str(&ok(&["show", &id])).unwrap();
    assert_eq!(shown["key_name"], "mine");
    let nova = Nova::new(&c);
    nova.wait_console(&id, "NUBO-CLI-UP", 1, BOOT);
    assert!(ok(&["console-log", &id]).contains("NUBO-CLI-UP"));
    // Refused: an unknown key (by the API), an unknown network (by the CLI).
    for (option, value, why) in [
        ("--key-name", "gone", "Invalid key_name"),
        ("--network", "nowhere", "no network nowhere"),
    ] {
        let (refused, _, err) = cli(&[
            "create", "x", "--image", &image, "--flavor", "m1.tiny", option, value,
        ]);
        assert!(!refused && err.contains(why), "{err}");
    }
    ok(&["delete", &id]);
    nova.wait_gone(&id, BOOT);
}

#[test]
fn after_a_restart_the_api_reconciles_with_the_hosts() {
    let mut c = Cluster::start(1);
    let (g, nova) = (Glance::new(&c), Nova::new(&c));
    let image = upload_image(&g, "idle", "raw", &idle_marker_disk("NUBO-RECON", 1 << 20));
    let kept = nova.create("kept", &image, "1", json!({}));
    let lost = nova.create("lost", &image, "1", json!({}));
    let vanished = nova.create("vanished", &image, "1", json!({}));
    for id in [&kept, &lost, &vanished] {
        nova.wait_status(id, &["ACTIVE"], BOOT);
    }
    // The API forgets "lost" (its record is removed while it is down) and
    // the host loses "vanished" (its domain and directory are removed
    // behind the agent's back).
    let api_cfg = c.data_dir().join("compute-api.toml");
    c.signal_service(&api_cfg, "KILL");
    let deadline = Instant::now() + Duration::from_secs(10);
    let db = loop {
        // The database opens once the killed API has let go of it.
        match compute::db::ComputeDb::open(&c.data_dir().join("compute-api/compute.db")) {
            Ok(db) => break db,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    db.delete(compute::db::Kind::Server, &lost).unwrap();
    drop(db);
    for d in domains_of(&vanished) {
        Command::new("virsh")
            .args(["-c", "qemu:///system", "destroy", &d])
            .output()
            .unwrap();
        Command::new("virsh")
            .args(["-c", "qemu:///system", "undefine", &d])
            .output()
            .unwrap();
    }
    std::fs::remove_dir_all(
        c.data_dir()
            .join(format!("compute-host/instances/{vanished}")),
    )
    .unwrap();
    let port = c.compute_port;
    c.start_service("compute-api", &api_cfg, port);

    // The host's next heartbeat settles both, each logged.
    let s = nova.wait_status(&vanished, &["ERROR"], Duration::from_secs(30));
    assert!(s["fault"]["message"]
        .as_str()
        .unwrap()
        .contains("no longer on its host"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while nova.call("GET", &format!("/servers/{lost}"), None).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the lost instance was not adopted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = nova.wait_status(&lost, &["ACTIVE"], BOOT);
    assert_eq!(s["name"], "lost");
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], hostname());
    assert_eq!(nova.wait_status(&kept, &["ACTIVE"], BOOT)["name"], "kept");
    assert!(metric(&c.compute_url(), "nubo_reconciled_total") >= 2.0);
    delete_all(&nova, &[kept, lost, vanished]);
    assert!(qemu_processes(c.data_dir()).is_empty());
}

/// Guest networks through the API: `os-networks` lists the configured
/// network; a server gets an address from it (shown in `addresses` and
/// `os-interface`, with a stable MAC); a taken fixed address is 409 and an
/// unknown network or an address outside it 400, with nothing booted;
/// `none` gives no interface; deleting a server frees its address for the
/// next one that asks for it.
#[test]
fn networks_hand_out_addresses_once_and_take_them_back() {
    let c = Cluster::start(1);
    let (g, nova) = (Glance::new(&c), Nova::new(&c));
    let image = upload_image(&g, "idle", "raw", &idle_marker_disk("NUBO-NET", 1 << 20));
    let (st, nets) = nova.call("GET", "/os-networks", None);
    assert_eq!(st, 200, "{nets}");
    assert_eq!(nets["networks"][0]["label"], "private", "{nets}");
    assert_eq!(nets["networks"][0]["cidr"], "10.42.0.0/24", "{nets}");
    let net_id = nets["networks"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        nova.call("GET", &format!("/os-networks/{net_id}"), None).0,
        200
    );
    assert_eq!(nova.call("GET", "/os-networks/nope", None).0, 404);

    let a = nova.create("a", &image, "1", json!({}));
    let shown = nova.wait_status(&a, &["ACTIVE"], BOOT);
    let addr = &shown["addresses"]["private"][0];
    assert_eq!(addr["addr"], "10.42.0.2", "{shown}");
    assert_eq!(addr["version"], 4);
    assert_eq!(addr["OS-EXT-IPS:type"], "fixed");
    let mac = addr["OS-EXT-IPS-MAC:mac_addr"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(mac.starts_with("fa:16:3e:"), "{mac}");
    let (st, ifaces) = nova.call("GET", &format!("/servers/{a}/os-interface"), None);
    assert_eq!(st, 200, "{ifaces}");
    let iface = &ifaces["interfaceAttachments"][0];
    assert_eq!(iface["mac_addr"], mac.as_str());
    assert_eq!(iface["net_id"], net_id.as_str());
    assert_eq!(iface["fixed_ips"][0]["ip_address"], "10.42.0.2");
    let port = iface["port_id"].as_str().unwrap();
    let (st, one) = nova.call("GET", &format!("/servers/{a}/os-interface/{port}"), None);
    assert_eq!(st, 200, "{one}");
    assert_eq!(
        nova.call("GET", &format!("/servers/{a}/os-interface/nope"), None)
            .0,
        404
    );

    let create = |networks: Value| {
        nova.call(
            "POST",
            "/servers",
            Some(json!({"server": {"name": "b", "imageRef": image, "flavorRef": "1", "networks": networks}})),
        )
    };
    let (st, v) = create(json!([{"uuid": net_id, "fixed_ip": "10.42.0.2"}]));
    assert_eq!(st, 409, "a taken address: {v}");
    assert!(v["conflictingRequest"]["message"]
        .as_str()
        .unwrap()
        .contains(&a));
    for bad in [
        json!([{"uuid": "5fd2e3a0-0000-4000-8000-000000000000"}]),
        json!([{"uuid": net_id, "fixed_ip": "10.42.1.5"}]),
        json!([{"uuid": net_id, "fixed_ip": "10.42.0.1"}]),
        json!([{"uuid": net_id, "fixed_ip": "not an address"}]),
        json!([{"port": "5fd2e3a0-0000-4000-8000-000000000000"}]),
        json!("everything"),
    ] {
        let (st, v) = create(bad.clone());
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(v["badRequest"]["message"].is_string(), "{v}");
    }
    let (_, list) = nova.call("GET", "/servers", None);
    assert_eq!(
        list["servers"].as_array().unwrap().len(),
        1,
        "refused requests booted nothing: {list}"
    );
    let (st, v) = create(json!("none"));
    assert_eq!(st, 202, "{v}");
    let none = v["server"]["id"].as_str().unwrap().to_string();
    let shown = nova.wait_status(&none, &["ACTIVE"], BOOT);
    assert_eq!(shown["addresses"], json!({}), "{shown}");

    nova.delete(&a);
    nova.wait_gone(&a, BOOT);
    let (st, v) = create(json!([{"uuid": net_id, "fixed_ip": "10.42.0.2"}]));
    assert_eq!(st, 202, "the deleted server's address is free again: {v}");
    let again = v["server"]["id"].as_str().unwrap().to_string();
    let shown = nova.wait_status(&again, &["ACTIVE"], BOOT);
    assert_eq!(shown["addresses"]["private"][0]["addr"], "10.42.0.2");
    delete_all(&nova, &[none, again]);
}

/// Security groups through the API, as nova-network answers: each project
/// has its `default` (members reach each other), groups and rules are
/// checked with Nova's messages, a name is taken once even by racing
/// creates, a group in use or `default` cannot go, servers name their
/// groups on create and by actions, and another project sees none of it.
/// (The hosts' enforcement is tests/guest_network.rs.)
#[test]
fn security_groups_follow_nova_network() {
    let c = Cluster::start(1);
    let (g, nova) = (Glance::new(&c), Nova::new(&c));
    let (st, v) = nova.call("GET", "/os-security-groups", None);
    assert_eq!(st, 200, "{v}");
    let groups = v["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{v}");
    let default = &groups[0];
    assert_eq!(default["name"], "default");
    assert_eq!(default["tenant_id"], "AUTH_test");
    let default_id = default["id"].as_str().unwrap().to_string();
    assert_eq!(default["rules"][0]["group"]["name"], "default", "{default}");
    assert_eq!(default["rules"][0]["ip_protocol"], Value::Null);

    // Sixteen racing creates of one name: exactly one group.
    let created: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let nova = &nova;
                s.spawn(move || {
                    nova.call(
                        "POST",
                        "/os-security-groups",
                        Some(json!({"security_group": {"name": "web", "description": format!("try {i}")}})),
                    )
                    .0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        created.iter().filter(|s| **s == 200).count(),
        1,
        "{created:?}"
    );
    assert!(
        created.iter().all(|s| *s == 200 || *s == 400),
        "{created:?}"
    );
    let (_, v) = nova.call("GET", "/os-security-groups", None);
    let web = v["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "web")
        .unwrap()
        .clone();
    let web_id = web["id"].as_str().unwrap().to_string();
    let (st, v) = nova.call(
        "POST",
        "/os-security-groups",
        Some(json!({"security_group": {"name": "web", "description": ""}})),
    );
    assert_eq!(
        (st, v["badRequest"]["message"].as_str()),
        (400, Some("Security group web already exists"))
    );
    for bad in [
        json!({"security_group": {"name": "", "description": ""}}),
        json!({"security_group": {"name": "x".repeat(256), "description": ""}}),
        json!({"security_group": {"description": "no name"}}),
        json!({}),
    ] {
        assert_eq!(
            nova.call("POST", "/os-security-groups", Some(bad.clone()))
                .0,
            400,
            "{bad}"
        );
    }

    // Rules, refused as Nova refuses them.
    let rule = |body: Value| {
        let mut r = body;
        r["parent_group_id"] = json!(web_id);
        nova.call(
            "POST",
            "/os-security-group-rules",
            Some(json!({"security_group_rule": r})),
        )
    };
    let (st, ssh) =
        rule(json!({"ip_protocol": "tcp", "from_port": 22, "to_port": "22", "cidr": "10.9.8.7/8"}));
    assert_eq!(st, 200, "{ssh}");
    let ssh = &ssh["security_group_rule"];
    assert_eq!(ssh["ip_range"]["cidr"], "10.0.0.0/8");
    assert_eq!(
        (ssh["from_port"].as_i64(), ssh["to_port"].as_i64()),
        (Some(22), Some(22))
    );
    assert_eq!(ssh["parent_group_id"], web_id.as_str());
    let ssh_id = ssh["id"].as_str().unwrap().to_string();
    for (body, message) in [
        (
            json!({"ip_protocol": "tcp", "from_port": 22, "to_port": 22, "cidr": "10.0.0.0/8"}),
            "This rule already exists in group",
        ),
        (
            json!({"ip_protocol": "gre", "from_port": 1, "to_port": 2}),
            "Invalid IP protocol gre.",
        ),
        (
            json!({"ip_protocol": "tcp", "from_port": 90, "to_port": 80}),
            "Invalid port range 90:80. Former value cannot be greater than the later",
        ),
        (
            json!({"ip_protocol": "udp", "from_port": 0, "to_port": 80}),
            "Valid UDP ports should be between 1-65535",
        ),
        (
            json!({"ip_protocol": "icmp", "from_port": 300, "to_port": 0}),
            "For ICMP, the type:code must be valid",
        ),
        (
            json!({"ip_protocol": "tcp", "from_port": 1, "to_port": 2, "cidr": "10.0.0.0/40"}),
            "10.0.0.0/40 is not a valid IP network.",
        ),
        (
            json!({"cidr": "10.0.0.0/8"}),
            "Not enough parameters to build a valid rule.",
        ),
    ] {
        let (st, v) = rule(body.clone());
        assert_eq!(st, 400, "{body}: {v}");
        let got = v["badRequest"]["message"].as_str().unwrap();
        assert!(got.contains(message), "{body}: {got}");
    }
    let (st, v) = rule(json!({"group_id": "no-such-group"}));
    assert_eq!(st, 404, "{v}");
    let (st, members) = rule(json!({"group_id": default_id}));
    assert_eq!(st, 200, "{members}");
    assert_eq!(members["security_group_rule"]["group"]["name"], "default");
    let (st, _) = nova.call(
        "POST",
        "/os-security-group-rules",
        Some(json!({"security_group_rule": {"parent_group_id": "nope", "ip_protocol": "tcp", "from_port": 1, "to_port": 2}})),
    );
    assert_eq!(st, 404);
    let (_, shown) = nova.call("GET", &format!("/os-security-groups/{web_id}"), None);
    assert_eq!(
        shown["security_group"]["rules"].as_array().unwrap().len(),
        2,
        "{shown}"
    );
    assert_eq!(
        nova.call(
            "DELETE",
            &format!("/os-security-group-rules/{ssh_id}"),
            None
        )
        .0,
        202
    );
    assert_eq!(
        nova.call(
            "DELETE",
            &format!("/os-security-group-rules/{ssh_id}"),
            None
        )
        .0,
        404
    );

    // Servers: default unless named; an unknown group refuses the create.
    let image = upload_image(&g, "idle", "raw", &idle_marker_disk("NUBO-SG", 1 << 20));
    let (st, v) = nova.call(
        "POST",
        "/servers",
        Some(json!({"server": {"name": "x", "imageRef": image, "flavorRef": "1", "security_groups": [{"name": "nope"}]}})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v["badRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("Security group nope not found"));
    // Changes are pushed to the hosts at once (not only with the next
    // heartbeat): counted by the agent once the pushes settle.
    let agent = format!("http://127.0.0.1:{}", c.agent_port);
    let settled_pushes = || {
        let mut pushes = metric(&agent, "nubo_agent_firewall_pushes_total");
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = metric(&agent, "nubo_agent_firewall_pushes_total");
            if now == pushes {
                return pushes;
            }
            pushes = now;
        }
    };
    let pushed_after = |before: f64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(&agent, "nubo_agent_firewall_pushes_total") <= before {
            assert!(Instant::now() < deadline, "no firewall push after {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let before_launches = settled_pushes();
    let plain = nova.create("plain", &image, "1", json!({}));
    let webby = nova.create(
        "webby",
        &image,
        "1",
        json!({"security_groups": [{"name": "web"}, {"name": web_id}]}),
    );
    assert_eq!(
        nova.show(&plain)["security_groups"],
        json!([{"name": "default"}])
    );
    assert_eq!(
        nova.show(&webby)["security_groups"],
        json!([{"name": "web"}])
    );
    let (st, v) = nova.call("GET", &format!("/servers/{webby}/os-security-groups"), None);
    assert_eq!(st, 200);
    assert_eq!(v["security_groups"][0]["id"], web_id.as_str());
    let (st, v) = nova.action(&webby, json!({"addSecurityGroup": {"name": "web"}}));
    assert_eq!(st, 400, "{v}");
    assert!(v["badRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("already associated"));
    assert_eq!(
        nova.action(&webby, json!({"addSecurityGroup": {"name": "nope"}}))
            .0,
        404
    );
    // (Counted once the launches' own pushes have landed: one each.)
    nova.wait_status(&plain, &["ACTIVE"], BOOT);
    nova.wait_status(&webby, &["ACTIVE"], BOOT);
    let pushes = settled_pushes();
    assert!(
        pushes >= before_launches + 2.0,
        "launches pushed {} times",
        pushes - before_launches
    );
    assert_eq!(
        nova.action(&webby, json!({"addSecurityGroup": {"name": "default"}}))
            .0,
        202
    );
    pushed_after(pushes, "addSecurityGroup");
    assert_eq!(
        nova.action(&webby, json!({"removeSecurityGroup": {"name": "web"}}))
            .0,
        202
    );
    let (st, v) = nova.action(&webby, json!({"removeSecurityGroup": {"name": "web"}}));
    assert_eq!(st, 400, "{v}");
    assert!(v["badRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("not associated"));
    assert_eq!(
        nova.show(&webby)["security_groups"],
        json!([{"name": "default"}])
    );

    // default and groups in use stay.
    let (st, v) = nova.call("DELETE", &format!("/os-security-groups/{default_id}"), None);
    assert_eq!(
        (st, v["badRequest"]["message"].as_str()),
        (400, Some("Removing default security group not allowed."))
    );
    assert_eq!(
        nova.action(&plain, json!({"addSecurityGroup": {"name": "web"}}))
            .0,
        202
    );
    let (st, v) = nova.call("DELETE", &format!("/os-security-groups/{web_id}"), None);
    assert_eq!(
        (st, v["badRequest"]["message"].as_str()),
        (400, Some("Security group is still in use"))
    );

    // Another project: its own default, nothing of ours.
    let other = Nova {
        token: common::login_as(&c.url(), "test2:tester2", "testing2").1,
        ..Nova::new(&c)
    };
    let (_, v) = other.call("GET", "/os-security-groups", None);
    let theirs = v["security_groups"].as_array().unwrap();
    assert_eq!(theirs.len(), 1, "{v}");
    assert_ne!(theirs[0]["id"], default_id.as_str());
    assert_eq!(
        other
            .call("GET", &format!("/os-security-groups/{web_id}"), None)
            .0,
        404
    );
    assert_eq!(
        other
            .call("DELETE", &format!("/os-security-groups/{web_id}"), None)
            .0,
        404
    );

    // Once no server is in it, it goes.
    let before_deletes = settled_pushes();
    delete_all(&nova, &[plain, webby]);
    pushed_after(before_deletes, "a delete");
    assert_eq!(
        nova.call("DELETE", &format!("/os-security-groups/{web_id}"), None)
            .0,
        202
    );
    assert_eq!(
        nova.call("GET", &format!("/os-security-groups/{web_id}"), None)
            .0,
        404
    );
}
