//! Durability under faults that change the cluster's shape or its disks:
//! a device that fills up, nodes added to a running cluster, reclaim of
//! tombstones and quarantined files, and nodes on separate network
//! namespaces. Each test starts its own cluster on loopback (or on private
//! addresses inside namespaces it creates) and is bounded in time.

mod common;
use common::{Cluster, Swift};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A small tmpfs mounted over a device directory, unmounted on drop.
struct SmallDisk {
    at: PathBuf,
}

impl SmallDisk {
    /// Moves the device's contents onto a new `size`-byte tmpfs at the same
    /// path. `None` where mounting is not allowed.
    fn replace(dev: &Path, size: &str) -> Option<SmallDisk> {
        // Lets the fallback (no mount) be exercised where mounting works.
        if std::env::var_os("NUBO_TEST_NO_MOUNT").is_some() {
            return None;
        }
        let aside = dev.with_extension("orig");
        std::fs::rename(dev, &aside).unwrap();
        std::fs::create_dir(dev).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dev)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            std::fs::remove_dir(dev).unwrap();
            std::fs::rename(&aside, dev).unwrap();
            return None;
        }
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", aside.display()))
            .arg(dev)
            .status()
            .unwrap();
        assert!(copied.success(), "copying the device onto the small disk");
        Some(SmallDisk {
            at: dev.to_path_buf(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap()
}

/// Fault test 6: a device that runs out of space refuses object writes with
/// 507, the proxy writes those replicas to handoffs, and what the device
/// already held is untouched and still served.
#[test]
fn a_full_device_refuses_writes_and_handoffs_take_them() {
    let mut c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/full", &[], b"").status, 201);
    let body = |i: usize| {
        let mut b = format!("object {i} ").repeat(256 * 1024 / 10).into_bytes();
        b.truncate(256 * 1024);
        b
    };
    for i in 0..20 {
        assert_eq!(
            s.req("PUT", &format!("/full/before{i}"), &[], &body(i))
                .status,
            201
        );
    }
    // Node 0's device d1 moves onto a 40 MiB disk that keeps 2 MiB free.
    // Where mounting is not allowed, d1 stays where it is and its reserve is
    // set to all but 24 MiB of the free space, which fills it the same way
    // (through the same statvfs check, without a real ENOSPC).
    c.kill_node(0);
    let dev = c.device_dir(0, "d1");
    let disk = SmallDisk::replace(&dev, "40m");
    let reserve: u64 = if disk.is_some() {
        2 << 20
    } else {
        eprintln!("no tmpfs mount allowed here: d1 is filled by its reserve instead");
        free_bytes(&dev).saturating_sub(24 << 20)
    };
    c.set_node_config(0, "fallocate_reserve_bytes", &reserve.to_string());
    c.restart_node(0);
    let on_d1 = |name: &str| -> Option<u32> {
        c.placement("AUTH_test", "full", name)
            .into_iter()
            .find(|(port, d, h)| *port == c.node_base_port && d == "d1" && h.is_primary)
            .map(|(_, _, h)| h.partition)
    };

    // Fill it: a third of all replicas land on d1's node, so a few hundred
    // objects of 256 KiB overflow it. Writing goes on a while after d1 is full.
    let full = |dev: &Path| free_bytes(dev) < reserve + (256 << 10);
    let mut written = 0;
    let mut refused = 0;
    let mut after_full = 0;
    while after_full < 40 {
        assert!(written < 600, "d1 never filled up");
        let st = s
            .req("PUT", &format!("/full/o{written}"), &[], &body(written))
            .status;
        if st != 201 {
            refused += 1;
        }
        written += 1;
        if full(&dev) {
            after_full += 1;
        }
    }
    assert_eq!(refused, 0, "every write is acknowledged (handoffs)");
    let free = free_bytes(&dev);
    // The node now refuses an object write to d1 outright.
    let part = on_d1("o0").unwrap_or(0);
    let head = format!(
        "PUT /obj/d1/{part}/AUTH_test/full/direct HTTP/1.1\r\nHost: x\r\nX-Timestamp: 1700000000.00000\r\nContent-Length: 262144\r\nConnection: close\r\n\r\n"
    );
    let r = common::raw(c.node_base_port, &head, &body(0));
    assert_eq!(r.status, 507, "{}", r.text());

    // Each object d1 should hold but refused sits on a handoff, and has
    // three copies in all.
    let mut on_handoffs = 0;
    let mut d1_held = 0;
    for i in 0..written {
        let name = format!("o{i}");
        let places = c.placement("AUTH_test", "full", &name);
        let held: Vec<_> = places
            .iter()
            .filter(|(port, d, h)| {
                c.internal_head(*port, d, h.partition, "AUTH_test", "full", &name) == 200
            })
            .collect();
        assert!(held.len() >= 3, "{name}: only {} copies", held.len());
        if on_d1(&name).is_some() {
            if held
                .iter()
                .any(|(p, d, _)| *p == c.node_base_port && d == "d1")
            {
                d1_held += 1;
            } else {
                assert!(held.iter().any(|(_, _, h)| !h.is_primary));
                on_handoffs += 1;
            }
        }
        assert_eq!(
            s.req("GET", &format!("/full/{name}"), &[], b"").body,
            body(i)
        );
    }
    assert!(on_handoffs > 0, "d1 never filled up");
    let metrics = common::raw(
        c.proxy_port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    )
    .text();
    let handoff_writes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("nubo_proxy_handoff_writes_total "))
        .and_then(|v| v.parse().ok())
        .expect("the proxy reports handoff writes");
    assert!(handoff_writes >= on_handoffs, "{metrics}");
    assert!(
        metrics.contains("nubo_proxy_requests_total{api=\"swift\",method=\"PUT\",status=\"201\"}")
    );
    // What d1 held before is intact, read straight from d1.
    let mut intact = 0;
    for i in 0..20 {
        let name = format!("before{i}");
        if let Some(part) = on_d1(&name) {
            let got = c.internal_get(c.node_base_port, "d1", part, "AUTH_test", "full", &name);
            assert_eq!(got.as_deref(), Some(&body(i)[..]), "{name} on d1");
            intact += 1;
        }
        assert_eq!(
            s.req("GET", &format!("/full/{name}"), &[], b"").body,
            body(i)
        );
    }
    eprintln!(
        "full disk: {written} written, {written} acknowledged, 0 lost; d1 took {d1_held} and \
         refused {on_handoffs} (now on handoffs, {free} bytes free); {intact} earlier objects \
         on d1 intact"
    );
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fault test 3: two nodes join a running cluster. After `nubo ring
/// rebalance` and `nubo ring push`, every object stays readable while the
/// replicators move partitions, and afterwards each object sits on exactly
/// its new primaries, with no copy left anywhere else.
#[test]
fn growing_by_two_nodes_moves_data_to_the_new_primaries() {
    let mut c = Cluster::start_with(3, &["--min-part-hours", "0"]);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/grow", &[], b"").status, 201);
    let objects = 300;
    let body = |i: usize| format!("grow {i} ").repeat(40 + i % 90).into_bytes();
    for i in 0..objects {
        assert_eq!(
            s.req("PUT", &format!("/grow/o{i}"), &[], &body(i)).status,
            201
        );
    }
    let new_nodes = [
        c.start_extra_node(&["d7", "d8"]),
        c.start_extra_node(&["d9", "d10"]),
    ];
    let builder = c.data_dir().join("object.builder");
    let b = builder.to_str().unwrap();
    for (zone, (port, devs)) in [
        (4, (new_nodes[0], ["d7", "d8"])),
        (5, (new_nodes[1], ["d9", "d10"])),
    ] {
        for d in devs {
            common::ring_add(b, zone, "127.0.0.1", port, d);
        }
    }
    let new_ring = c.data_dir().join("grown.ring");
    common::nubo_ok(&["ring", "rebalance", b, "--ring", new_ring.to_str().unwrap()]);
    common::nubo_ok(&["ring", "push", new_ring.to_str().unwrap()]);
    // The proxy reloads its ring file within 2 s.
    std::thread::sleep(Duration::from_millis(2500));

    let all_ports: Vec<u16> = (0..3)
        .map(|n| c.node_base_port + n)
        .chain(new_nodes)
        .collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (reads, bad_reads) = (
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    );
    let started = Instant::now();
    let mut moved = 0;
    let mut passes = 0;
    std::thread::scope(|scope| {
        // A reader goes over every object, again and again, during the move.
        scope.spawn(|| {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let got = s.req("GET", &format!("/grow/o{i}"), &[], b"").body;
                reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if got != body(i) {
                    eprintln!("o{i} unreadable during the move");
                    bad_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                i = (i + 1) % objects;
            }
        });
        for _ in 0..8 {
            passes += 1;
            let mut pushed = 0;
            let mut dropped = 0;
            for &port in &all_ports {
                let st = c.replicate_at(port);
                pushed += st["objects_pushed"].as_u64().unwrap();
                dropped += st["handoffs_removed"].as_u64().unwrap();
            }
            moved += pushed;
            eprintln!("replication pass {passes}: {pushed} pushed, {dropped} partitions dropped");
            if pushed == 0 && dropped == 0 {
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let converged = started.elapsed();

    let mut misplaced = 0;
    let mut new_node_copies = 0;
    for i in 0..objects {
        let name = format!("o{i}");
        assert_eq!(
            s.req("GET", &format!("/grow/{name}"), &[], b"").body,
            body(i)
        );
        for (port, device, holds) in c.placement("AUTH_test", "grow", &name) {
            let has =
                c.internal_head(port, &device, holds.partition, "AUTH_test", "grow", &name) == 200;
            if has != holds.is_primary {
                eprintln!(
                    "{name}: {device} on {port} primary={} holds={has}",
                    holds.is_primary
                );
                misplaced += 1;
            }
            if has && new_nodes.contains(&port) {
                new_node_copies += 1;
            }
        }
    }
    // The container's listing moved too: every new primary lists everything.
    let mut names: Vec<String> = (0..objects).map(|i| format!("o{i}\n")).collect();
    names.sort();
    let listing: String = names.concat();
    assert_eq!(s.req("GET", "/grow", &[], b"").text(), listing);
    for replica in c.container_replicas("AUTH_test", "grow") {
        assert_eq!(replica, listing, "a container replica after the move");
    }
    let (reads, bad_reads) = (reads.into_inner(), bad_reads.into_inner());
    eprintln!(
        "grow: {objects} objects, {moved} replicas moved in {passes} passes ({converged:?}); \
         {reads} reads during the move, {bad_reads} failed; {new_node_copies} copies now on the \
         new nodes, {misplaced} misplaced"
    );
    assert_eq!(bad_reads, 0, "objects unreadable during the move");
    assert_eq!(misplaced, 0, "copies off their primaries or missing");
    assert!(new_node_copies > 0);
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Tombstones and deleted listing rows go after `reclaim_age_secs` on every
/// replica at once (no replica pushes them back), quarantined files after
/// `quarantine_reclaim_age_secs`; live objects are untouched.
#[test]
fn tombstones_deleted_rows_and_quarantined_files_are_reclaimed() {
    let mut c = Cluster::start(3);
    for n in 0..3 {
        c.set_node_config(n, "reclaim_age_secs", "2");
        c.set_node_config(n, "quarantine_reclaim_age_secs", "0");
        c.kill_node(n);
        c.restart_node(n);
    }
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/reclaim", &[], b"").status, 201);
    for i in 0..10 {
        let path = format!("/reclaim/o{i}");
        assert_eq!(s.req("PUT", &path, &[], path.as_bytes()).status, 201);
    }
    for i in 0..5 {
        assert_eq!(
            s.req("DELETE", &format!("/reclaim/o{i}"), &[], b"").status,
            204
        );
    }
    // Listing rows are delivered in the background; wait for the deletions.
    wait_until("deleted rows", Duration::from_secs(10), || {
        s.req("GET", "/reclaim", &[], b"").text().lines().count() == 5
    });
    // Young tombstones stay.
    let young: u64 = (0..3)
        .map(|n| c.replicate(n)["tombstones_reclaimed"].as_u64().unwrap())
        .sum();
    assert_eq!(young, 0);
    std::thread::sleep(Duration::from_millis(2200));
    let stats: Vec<_> = (0..3).map(|n| c.replicate(n)).collect();
    let sum = |k: &str| -> u64 { stats.iter().map(|s| s[k].as_u64().unwrap()).sum() };
    let (tombstones, rows) = (sum("tombstones_reclaimed"), sum("rows_reclaimed"));
    eprintln!("reclaimed {tombstones} tombstones and {rows} listing rows");
    assert_eq!(tombstones, 15, "5 deletions x 3 replicas");
    assert!(
        rows >= 10,
        "deleted rows on the container's replicas: {rows}"
    );
    assert_eq!(sum("objects_pushed"), 0, "nothing is pushed back");
    let again: Vec<_> = (0..3).map(|n| c.replicate(n)).collect();
    for st in &again {
        assert_eq!(st["objects_pushed"], 0);
        assert_eq!(st["tombstones_reclaimed"], 0);
    }
    for i in 5..10 {
        let path = format!("/reclaim/o{i}");
        assert_eq!(s.req("GET", &path, &[], b"").body, path.as_bytes());
    }
    for i in 0..5 {
        assert_eq!(
            s.req("GET", &format!("/reclaim/o{i}"), &[], b"").status,
            404
        );
    }

    // A quarantined file is removed at the next pass (age 0 here), and the
    // replicator has put a good copy back. (Bodies up to 64 KiB are kept
    // inline with their records, so this one is larger, to have a file.)
    let big: Vec<u8> = b"/reclaim/o7"
        .iter()
        .copied()
        .cycle()
        .take(100 << 10)
        .collect();
    assert_eq!(s.req("PUT", "/reclaim/o7", &[], &big).status, 201);
    let (port, device, holds) = c
        .placement("AUTH_test", "reclaim", "o7")
        .into_iter()
        .find(|(_, _, h)| h.is_primary)
        .unwrap();
    let n = port - c.node_base_port;
    let dev = c.device_dir(n, &device);
    let mut files = Vec::new();
    collect_files(
        &dev.join("objects").join(holds.partition.to_string()),
        &mut files,
    );
    let victim = files
        .iter()
        .find(|f| std::fs::read(f).unwrap() == big)
        .expect("o7's file on its primary");
    let mut bad = big.clone();
    bad[5000] ^= 1;
    std::fs::write(victim, bad).unwrap();
    assert_eq!(c.audit(n)["quarantined"], 1);
    let quarantine = dev.join("quarantined").join("objects");
    assert_eq!(files_in(&quarantine), 1);
    let files_reclaimed: u64 = (0..3)
        .map(|n| c.replicate(n)["files_reclaimed"].as_u64().unwrap())
        .sum();
    assert_eq!(files_reclaimed, 1);
    assert_eq!(files_in(&quarantine), 0);
    assert_eq!(
        c.internal_get(port, &device, holds.partition, "AUTH_test", "reclaim", "o7")
            .as_deref(),
        Some(&big[..])
    );
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// `nubo up` killed outright (SIGKILL, no chance to stop its services)
/// leaves no service running: each one gets SIGTERM when it goes.
#[test]
fn services_do_not_outlive_a_killed_nubo_up() {
    let c = Cluster::start(3);
    let dir = c.data_dir().display().to_string();
    let running = || {
        let out = Command::new("pgrep")
            .args(["-f", &format!("{dir}/")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(
        running(),
        8,
        "3 storage nodes, the proxy, the registry, the compute API and agent, identity"
    );
    let st = Command::new("pkill")
        .args(["-KILL", "-f", &format!("nubo up --data-dir {dir}")])
        .status()
        .unwrap();
    assert!(st.success());
    wait_until("the services to stop", Duration::from_secs(15), || {
        running() == 0
    });
}

/// The replicator keeps to `replicator_bytes_per_sec`: node 1 misses 4 MiB
/// of writes while it is down, and node 0, limited to 1 MiB/s, takes at
/// least as long to push them as the limit allows. (Every node's first
/// background pass comes 30 s after it starts, so only the pass asked for
/// here runs.)
#[test]
fn the_replicator_keeps_to_its_byte_rate() {
    let mut c = Cluster::start(3);
    let s = Swift::new(&c);
    assert_eq!(s.req("PUT", "/rate", &[], b"").status, 201);
    c.kill_node(1);
    let body = vec![7u8; 256 << 10];
    for i in 0..16 {
        assert_eq!(s.req("PUT", &format!("/rate/o{i}"), &[], &body).status, 201);
    }
    c.restart_node(1);
    const RATE: u64 = 1 << 20;
    c.kill_node(0);
    c.set_node_config(0, "replicator_bytes_per_sec", &RATE.to_string());
    c.restart_node(0);
    let started = Instant::now();
    let stats = c.replicate(0);
    let elapsed = started.elapsed().as_secs_f64();
    let pushed = stats["bytes_pushed"].as_u64().unwrap();
    assert!(
        pushed >= 2 << 20,
        "node 0 pushed what node 1 missed: {stats}"
    );
    // The limiter lets the first chunk through at once; the rest waits.
    let allowed = (pushed - (256 << 10)) as f64 / RATE as f64;
    assert!(
        elapsed >= 0.9 * allowed,
        "{pushed} bytes in {elapsed:.2} s: faster than {RATE} bytes/s"
    );
    // Enough went for the limit to matter: over loopback, unlimited, these
    // bytes take a small fraction of a second.
    assert!(allowed > 1.5, "{stats}");
}
