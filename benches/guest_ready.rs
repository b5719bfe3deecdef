//! From an API call to a guest that is usable on its network: a Linux
//! guest (`tests/common/linux_guest.rs`: Debian's kernel and busybox)
//! launched through the compute API from a warm template cache on the
//! `private` network, until its console shows it has its DHCP address and
//! has read its metadata from the metadata service (`MD-USER`), against
//! the same guest booted by plain QEMU (same base under a qcow2 overlay,
//! the same config drive, the same software emulation, QEMU's own user
//! network for DHCP) until the same line. The difference is what Nubo
//! adds (scheduling, the agent's overlay, config drive, tap, DHCP entry,
//! firewall, the driver); target: under 1 s.
//!
//! Needs root: it runs itself again inside a network namespace of its own
//! (as tests/guest_network.rs), so that the bridge, dnsmasq and every
//! guest packet stay there (QEMU's user network finds no route out of it).
//!
//! Full run: `cargo bench --bench guest_ready` (5 launches each). Under
//! `cargo test` it runs once each as a smoke test.

#[path = "../tests/common/mod.rs"]
mod common;

use common::glance::Glance;
use common::linux_guest::linux_disk;
use common::nova::{upload_image, Nova};
use common::own_namespace;
use common::Cluster;
use image_registry::inspect::DiskFormat;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const READY: &str = "MD-USER";
const LIMIT: Duration = Duration::from_secs(300);

fn main() {
    let full_run = std::env::args().any(|a| a == "--bench");
    if own_namespace::inside() {
        return inside(if full_run { 5 } else { 1 });
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    assert!(
        own_namespace::rerun_inside("nubo-gr", &args),
        "the benchmark inside the namespace failed"
    );
}

/// The guest's milestones on its console, in order; the last is READY.
const MILESTONES: [&str; 6] = [
    "NUBO-READY",
    "DRIVE-END",
    "DHCP-BOUND",
    "NET-UP",
    "MD-META",
    READY,
];

/// Waits until `log` has the ready line; when each milestone showed
/// (seconds since `started`), READY's last.
fn ready(log: &Path, started: Instant) -> Vec<f64> {
    let mut seen = vec![None; MILESTONES.len()];
    loop {
        let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
        for (i, m) in MILESTONES.iter().enumerate() {
            if seen[i].is_none() && text.contains(m) {
                seen[i] = Some(started.elapsed().as_secs_f64());
            }
        }
        if let Some(t) = seen[MILESTONES.len() - 1] {
            return seen.iter().map(|s| s.unwrap_or(t)).collect();
        }
        assert!(started.elapsed() < LIMIT, "no {READY} in {}", log.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Each milestone's median time (ACTIVE's first).
fn medians(runs: &[Vec<f64>]) -> Vec<f64> {
    (0..=MILESTONES.len())
        .map(|i| median(runs.iter().map(|r| r[i]).collect()))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn inside(runs: usize) {
    let cluster = Cluster::start_with(1, &["--compute-driver", "qemu", "--guest-bridge", "nubr0"]);
    let (g, nova) = (Glance::new(&cluster), Nova::new(&cluster));
    let dir = tempfile::tempdir().unwrap();
    let disk = linux_disk(dir.path(), "NUBO-READY");
    let image = upload_image(&g, "ready", "raw", &std::fs::read(disk).unwrap());
    let instances = cluster.data_dir().join("compute-host/instances");

    // Through the API. The first launch fills the cache (not counted) and
    // lends its config drive to the plain runs.
    let drive = dir.path().join("disk.config");
    let mut nubo = Vec::new();
    for i in 0..=runs {
        let started = Instant::now();
        let id = nova.create(&format!("ready-{i}"), &image, "1", json!({}));
        // ACTIVE: the launch path is done and the guest's QEMU runs.
        let active = loop {
            if nova.show(&id)["status"] == "ACTIVE" {
                break started.elapsed().as_secs_f64();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut t = ready(&instances.join(&id).join("console.log"), started);
        t.insert(0, active);
        if i == 0 {
            std::fs::copy(instances.join(&id).join("disk.config"), &drive).unwrap();
        } else {
            nubo.push(t);
        }
        nova.delete(&id);
        nova.wait_gone(&id, LIMIT);
    }

    // Plain QEMU: the same base, drive and emulation, its own network.
    let base = cluster.data_dir().join("compute-host/_base").join(&image);
    let mut plain = Vec::new();
    for i in 0..runs {
        let overlay = dir.path().join(format!("plain-{i}.qcow2"));
        compute::overlay::create(&base, DiskFormat::Raw, &overlay, 1 << 30).unwrap();
        let log = dir.path().join(format!("plain-{i}.log"));
        let started = Instant::now();
        let mut qemu = Command::new("qemu-system-x86_64")
            .args(["-machine", "pc,accel=tcg", "-m", "512", "-smp", "1"])
            .arg("-drive")
            .arg(format!("file={},format=qcow2,if=virtio", overlay.display()))
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,readonly=on",
                drive.display()
            ))
            .args([
                "-netdev",
                "user,id=n0",
                "-device",
                "virtio-net-pci,netdev=n0",
            ])
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .args(["-display", "none", "-monitor", "none", "-nodefaults"])
            .spawn()
            .unwrap();
        let mut t = ready(&log, started);
        t.insert(0, 0.0);
        plain.push(t);
        let _ = qemu.kill();
        let _ = qemu.wait();
    }

    let (nubo, plain) = (medians(&nubo), medians(&plain));
    let last = MILESTONES.len();
    println!(
        "guest_ready: API call to a Linux guest with its address and metadata (warm cache, TCG)"
    );
    println!(
        "  through Nubo {:.0} ms (median of {runs}); plain QEMU with a config drive {:.0} ms; overhead {:.0} ms (target < 1000)",
        nubo[last] * 1e3,
        plain[last] * 1e3,
        (nubo[last] - plain[last]) * 1e3
    );
    println!(
        "    ACTIVE      Nubo {:>6.0} ms   (the API's launch path)",
        nubo[0] * 1e3
    );
    for (i, m) in MILESTONES.iter().enumerate() {
        let i = i + 1;
        println!(
            "    {m:<11} Nubo {:>6.0} ms   plain {:>6.0} ms",
            nubo[i] * 1e3,
            plain[i] * 1e3
        );
    }
}
