//! Load generator for the Swift API of a local 3-node cluster: PUT then GET
//! at a fixed concurrency, for 4 KiB and 16 MiB objects, reporting ops/s,
//! MB/s, p50/p99 latency and the storage nodes' peak RSS.
//!
//! Full run (figures in README): `cargo bench --bench swift_load`.
//! Under `cargo test` it runs a few operations of each kind as a smoke test.
//! Bounded: a fixed count per phase and a time cap per phase.

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::Bytes;
use common::Cluster;
use http::{Method, Request};
use http_body_util::BodyExt;
use object_store::http_util::{empty, full};
use object_store::node_client::{NodeClient, Timeouts};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Phase {
    name: &'static str,
    method: Method,
    size: usize,
    count: usize,
}

struct Outcome {
    ops: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    client: Arc<NodeClient>,
    addr: String,
    path: String,
    token: String,
    phase: &Phase,
    body: Bytes,
    concurrency: usize,
    cap: Duration,
) -> Outcome {
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, addr, path, token, next, body) = (
            client.clone(),
            addr.clone(),
            path.clone(),
            token.clone(),
            next.clone(),
            body.clone(),
        );
        let (method, count) = (phase.method.clone(), phase.count);
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count || start.elapsed() > cap {
                    break;
                }
                let t = Instant::now();
                let req_body = if method == Method::PUT {
                    full(body.clone())
                } else {
                    empty()
                };
                let mut b = Request::builder()
                    .method(method.clone())
                    .uri(format!("{path}/obj-{i:06}"))
                    .header("host", &addr)
                    .header("x-auth-token", &token);
                if method == Method::PUT {
                    b = b.header("content-length", body.len());
                }
                match client.send(&addr, b.body(req_body).unwrap()).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let got = resp
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes().len())
                            .unwrap_or(0);
                        if !ok || (method == Method::GET && got != body.len()) {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    latencies.sort();
    Outcome {
        ops: latencies.len(),
        errors,
        elapsed: start.elapsed(),
        latencies,
    }
}

fn percentile(l: &[Duration], p: f64) -> Duration {
    if l.is_empty() {
        return Duration::ZERO;
    }
    l[((l.len() as f64 - 1.0) * p).round() as usize]
}

/// Peak resident set (VmHWM), in MiB, of the process started with `config`.
fn peak_rss_of(config: &std::path::Path) -> Option<u64> {
    let out = std::process::Command::new("pgrep")
        .arg("-f")
        .arg(config)
        .output()
        .ok()?;
    let pid = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024)
}

fn node_peak_rss(c: &Cluster) -> Vec<u64> {
    (0..c.nodes)
        .filter_map(|n| peak_rss_of(&c.node_config(n)))
        .collect()
}

fn main() {
    let full_run = std::env::args().any(|a| a == "--bench");
    let cluster = Cluster::start(3);
    let (url, token) = cluster.login();
    let path = url
        .split_once("://")
        .map(|(_, r)| r.split_once('/').map(|(_, p)| format!("/{p}")).unwrap())
        .unwrap();
    let addr = format!("127.0.0.1:{}", cluster.proxy_port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Arc::new(NodeClient::new(Timeouts {
        connect: Duration::from_secs(2),
        node: Duration::from_secs(120),
    }));
    let concurrency = 16;
    let cap = Duration::from_secs(if full_run { 90 } else { 30 });
    let (small, large) = if full_run { (20_000, 96) } else { (64, 2) };
    let mut phases = vec![
        Phase {
            name: "PUT 4 KiB",
            method: Method::PUT,
            size: 4096,
            count: small,
        },
        Phase {
            name: "GET 4 KiB",
            method: Method::GET,
            size: 4096,
            count: small,
        },
        Phase {
            name: "PUT 16 MiB",
            method: Method::PUT,
            size: 16 << 20,
            count: large,
        },
        Phase {
            name: "GET 16 MiB",
            method: Method::GET,
            size: 16 << 20,
            count: large,
        },
    ];
    if full_run {
        // One object far larger than any buffer: memory must stay flat.
        phases.push(Phase {
            name: "PUT 1 GiB",
            method: Method::PUT,
            size: 1 << 30,
            count: 1,
        });
        phases.push(Phase {
            name: "GET 1 GiB",
            method: Method::GET,
            size: 1 << 30,
            count: 1,
        });
    }
    println!(
        "swift load: 3 nodes, concurrency {concurrency}{}",
        if full_run {
            ""
        } else {
            " (smoke run; `cargo bench --bench swift_load` for figures)"
        }
    );
    println!(
        "{:<11} {:>7} {:>10} {:>9} {:>9} {:>9} {:>6}",
        "phase", "ops", "ops/s", "MB/s", "p50 ms", "p99 ms", "errors"
    );
    let mut total_errors = 0;
    for p in &phases {
        let container = format!("{path}/load-{}", p.size);
        let body = Bytes::from(vec![0x5au8; p.size]);
        rt.block_on(async {
            let req = Request::builder()
                .method(Method::PUT)
                .uri(&container)
                .header("host", &addr)
                .header("x-auth-token", &token)
                .header("content-length", 0)
                .body(empty())
                .unwrap();
            let _ = client
                .send(&addr, req)
                .await
                .unwrap()
                .into_body()
                .collect()
                .await;
        });
        let o = rt.block_on(run_phase(
            client.clone(),
            addr.clone(),
            container,
            token.clone(),
            p,
            body,
            concurrency,
            cap,
        ));
        let secs = o.elapsed.as_secs_f64();
        println!(
            "{:<11} {:>7} {:>10.0} {:>9.1} {:>9.2} {:>9.2} {:>6}",
            p.name,
            o.ops,
            o.ops as f64 / secs,
            (o.ops * p.size) as f64 / secs / 1e6,
            percentile(&o.latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&o.latencies, 0.99).as_secs_f64() * 1e3,
            o.errors
        );
        total_errors += o.errors;
    }
    println!(
        "peak RSS (MiB): storage nodes {:?}, proxy {:?}",
        node_peak_rss(&cluster),
        peak_rss_of(&cluster.data_dir().join("proxy.toml"))
    );
    assert_eq!(total_errors, 0, "every operation must succeed");
}
