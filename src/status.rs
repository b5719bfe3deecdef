//! `nubo cluster status`: a one-screen summary of every storage node in the
//! ring, from each node's `/metrics` (like `swift-recon`).

use anyhow::{Context, Result};
use http::{Method, Request};
use http_body_util::BodyExt;
use service_kit::client::{HttpClient, Timeouts};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The ring file (a cluster started with `nubo up` keeps it in its data directory).
    #[arg(long, default_value = "./nubo-data/object.ring")]
    pub ring: PathBuf,
}

/// Metric name (with labels) -> value.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn sum(m: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

pub fn run(args: StatusArgs) -> Result<()> {
    let ring = ring_tools::Ring::load(&args.ring)
        .with_context(|| format!("loading {}", args.ring.display()))?;
    let nodes = ring.node_addrs();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = HttpClient::new(Timeouts {
        connect: Duration::from_secs(1),
        node: Duration::from_secs(5),
    });
    println!(
        "ring generation {} ({} devices, {} nodes, {} replicas)",
        ring.generation(),
        ring.devices().len(),
        nodes.len(),
        ring.replicas()
    );
    println!(
        "{:<22} {:>5} {:>8} {:>12} {:>11} {:>9} {:>16}",
        "node", "up", "ring gen", "repl. age s", "quarantined", "queued", "disk used"
    );
    let (mut up, mut quarantined) = (0, 0.0);
    for addr in &nodes {
        let metrics = rt.block_on(async {
            let req = Request::builder()
                .method(Method::GET)
                .uri("/metrics")
                .header("host", addr.as_str())
                .body(service_kit::http_util::empty())
                .ok()?;
            let resp = client.send(addr, req).await.ok()?;
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            Some(parse_metrics(&String::from_utf8_lossy(&body)))
        });
        match metrics {
            None => println!("{addr:<22} {:>5}", "DOWN"),
            Some(m) => {
                up += 1;
                let q = sum(&m, "nubo_objects_quarantined_total");
                quarantined += q;
                let used = sum(&m, "nubo_device_used_bytes");
                let size = sum(&m, "nubo_device_size_bytes");
                let age = m
                    .get("nubo_replication_last_pass_age_seconds")
                    .copied()
                    .unwrap_or(-1.0);
                let gen = m.get("nubo_ring_generation").copied().unwrap_or(-1.0);
                let stale = if gen as u64 != ring.generation() {
                    "*"
                } else {
                    ""
                };
                println!(
                    "{addr:<22} {:>5} {:>7}{stale:1} {:>12} {:>11} {:>9} {:>15.1}%",
                    "up",
                    gen as i64,
                    if age < 0.0 {
                        "never".to_string()
                    } else {
                        format!("{age:.0}")
                    },
                    q as u64,
                    sum(&m, "nubo_updates_queued") as u64,
                    if size > 0.0 { used / size * 100.0 } else { 0.0 }
                );
            }
        }
    }
    println!(
        "{up}/{} nodes up, {} files quarantined; * = node serves another ring generation",
        nodes.len(),
        quarantined as u64
    );
    Ok(())
}
