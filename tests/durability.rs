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
    c.kill_node(0);
    let dev = c.device_dir(0, "d1");
    let Some(_disk) = SmallDisk::replace(&dev, "40m") else {
        panic!("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)");
    };
    c.set_node_config(0, "fallocate_reserve_bytes", &(2u64 << 20).to_string());
    c.restart_node(0);
    let on_d1 = |name: &str| -> Option<u32> {
        c.placement("AUTH_test", "full", name)
            .into_iter()
            .find(|(port, d, h)| *port == c.node_base_port && d == "d1" && h.is_primary)
            .map(|(_, _, h)| h.partition)
    };

    // Fill it: a third of all replicas land on d1's node, so a few hundred
    // objects of 256 KiB overflow it. Writing goes on a while after d1 is full.
    let full = |dev: &Path| free_bytes(dev) < (2 << 20) + (256 << 10);
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

#[allow(dead_code)]
fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
