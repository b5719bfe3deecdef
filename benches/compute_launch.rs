//! Launching instances on a local cluster (`nubo up`: registry, compute
//! API, one agent, libvirt with software emulation):
//! - warm cache: API call to ACTIVE, against the hypervisor's own start
//!   (the same guest launched straight through the driver); target: under
//!   1 s more than the hypervisor;
//! - cold cache: the first launch of a large image, its transfer rate
//!   against the registry's own download rate; target: at least 70%;
//! - 20 concurrent launches of one new image: time to all ACTIVE, fetches.
//!
//! Full run: `cargo bench --bench compute_launch` (512 MiB image, 20
//! concurrent). Under `cargo test` it runs small as a smoke test.
//! Overlay creation alone: `cargo bench -p compute --bench overlay`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::glance::Glance;
use common::nova::{upload_image, Nova};
use common::Cluster;
use compute::boot_disk::idle_marker_disk;
use compute::driver::libvirt::LibvirtDriver;
use compute::driver::{Driver, InstanceSpec, PowerState};
use image_registry::inspect::DiskFormat;
use serde_json::json;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(600);

/// An idle boot-sector guest followed by incompressible data, `size` bytes.
fn image(size: usize, marker: &str) -> Vec<u8> {
    let mut disk = idle_marker_disk(marker, size);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in disk[1 << 20..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = chunk.len();
        chunk.copy_from_slice(&x.to_le_bytes()[..n]);
    }
    disk
}

/// Seconds from the create call to ACTIVE.
fn launch(nova: &Nova, image: &str, name: &str) -> (String, f64) {
    let started = Instant::now();
    let id = nova.create(name, image, "1", json!({}));
    loop {
        let s = nova.show(&id);
        match s["status"].as_str().unwrap() {
            "ACTIVE" => return (id, started.elapsed().as_secs_f64()),
            "ERROR" => panic!("launch failed: {s}"),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// One value from a Prometheus page at `url`.
fn metric(url: &str, name: &str) -> f64 {
    let page = ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {page}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The hypervisor's own start: the same guest, on an overlay of the same
/// base, launched straight through the libvirt driver until it runs.
fn hypervisor_start(base: &std::path::Path, runs: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("nubo-bench-{}-", std::process::id());
    let driver = LibvirtDriver::new("qemu:///system", false, &prefix).unwrap();
    let mut times = Vec::new();
    for i in 0..runs {
        let disk = dir.path().join(format!("{i}.qcow2"));
        compute::overlay::create(base, DiskFormat::Raw, &disk, 1 << 30).unwrap();
        let spec = InstanceSpec {
            name: format!("{prefix}{i}"),
            vcpus: 1,
            ram_mb: 512,
            disk,
            console_log: dir.path().join(format!("{i}.log")),
            console_socket: None,
            config_drive: None,
            nics: Vec::new(),
        };
        let started = Instant::now();
        driver.launch(&spec).unwrap();
        assert_eq!(driver.state(&spec.name).unwrap(), PowerState::Running);
        times.push(started.elapsed().as_secs_f64());
        driver.destroy(&spec.name).unwrap();
    }
    median(times)
}

fn main() {
    let full_run = std::env::args().any(|a| a == "--bench");
    let (size, warm_runs, concurrent) = if full_run {
        (512usize << 20, 7, 20)
    } else {
        (8 << 20, 2, 3)
    };
    let cluster = Cluster::start(1);
    let (g, nova) = (Glance::new(&cluster), Nova::new(&cluster));
    let data = image(size, "NUBO-BENCH");
    let id = upload_image(&g, "bench", "raw", &data);

    // The registry's own download rate (its cache warm, as the agent's
    // fetch finds it after the upload).
    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let (st, body) = g.call("GET", &format!("/v2/images/{id}/file"), None, b"");
        assert_eq!(st, 200);
        assert_eq!(body.len(), size);
        rates.push(size as f64 / started.elapsed().as_secs_f64());
    }
    let registry_rate = median(rates);

    // Cold: the first launch fetches the image; warm: the rest do not.
    let agent = format!("http://127.0.0.1:{}", cluster.agent_port);
    let (first, cold) = launch(&nova, &id, "cold");
    let fetch_seconds = metric(&agent, "nubo_template_fetch_seconds_total");
    let fetched = metric(&agent, "nubo_template_fetched_bytes_total");
    assert_eq!(fetched as usize, size);
    let mut servers = vec![first];
    let mut warm = Vec::new();
    for i in 0..warm_runs {
        let (s, t) = launch(&nova, &id, &format!("warm-{i}"));
        servers.push(s);
        warm.push(t);
    }
    let warm = median(warm);
    let base = cluster.data_dir().join("compute-host/_base").join(&id);
    let hv = hypervisor_start(&base, warm_runs);
    let fetch_rate = size as f64 / fetch_seconds;
    for s in &servers {
        nova.delete(s);
    }
    for s in &servers {
        nova.wait_gone(s, LIMIT);
    }

    // Concurrent launches of one new image.
    let id2 = upload_image(&g, "bench-2", "raw", &image(size, "NUBO-BENCH-2"));
    let started = Instant::now();
    let ids: Vec<String> = (0..concurrent)
        .map(|i| nova.create(&format!("c-{i}"), &id2, "1", json!({})))
        .collect();
    for s in &ids {
        nova.wait_status(s, &["ACTIVE"], LIMIT);
    }
    let all_active = started.elapsed().as_secs_f64();
    let fetches = metric(&agent, "nubo_template_fetches_total");
    for s in &ids {
        nova.delete(s);
    }
    for s in &ids {
        nova.wait_gone(s, LIMIT);
    }

    let mib = |r: f64| r / (1 << 20) as f64;
    println!("compute_launch: image {} MiB", size >> 20);
    println!(
        "  warm: API call to ACTIVE {:.0} ms (median of {warm_runs}); hypervisor start alone {:.0} ms; overhead {:.0} ms (target < 1000)",
        warm * 1e3,
        hv * 1e3,
        (warm - hv) * 1e3
    );
    println!(
        "  cold: API call to ACTIVE {cold:.2} s; the agent's fetch (download, hash check, inspection) {fetch_seconds:.2} s = {:.0} MiB/s vs the registry's download {:.0} MiB/s: {:.0}% (target >= 70%)",
        mib(fetch_rate),
        mib(registry_rate),
        100.0 * fetch_rate / registry_rate
    );
    println!(
        "  {concurrent} concurrent launches of a new image: all ACTIVE in {all_active:.2} s; template fetches so far {fetches} (one per image)"
    );
}
