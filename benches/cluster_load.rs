//! Load generator for a local 3-node cluster, through the Swift API and
//! through the S3 API (requests signed with `aws-sigv4`): PUT then GET at a
//! fixed concurrency for 4 KiB and 16 MiB objects, plus one 1 GiB object
//! (S3: a multipart upload), reporting ops/s, MB/s, p50/p99 latency, the
//! CPU time the nodes and the proxy spent per operation and per MB, the
//! nodes' WAL syncs per operation (`nubo_group_syncs_total`) and the
//! services' peak RSS.
//!
//! Full run (figures in README): `cargo bench --bench cluster_load`
//! (`-- --swift` or `-- --s3` for one API, `-- --small` for the 4 KiB
//! phases only, `-- --size N` for N-byte objects only,
//! `-- --versioning-cost` for 4 KiB PUTs and GETs in a plain and a
//! versioned container in alternating rounds). Under `cargo test` it runs a few
//! operations of each kind as a smoke test. Bounded: a fixed count per
//! phase and a time cap per phase.

#[path = "../tests/common/mod.rs"]
mod common;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use common::Cluster;
use http::{Method, Request};
use http_body_util::BodyExt;
use service_kit::client::{HttpClient, Timeouts};
use service_kit::http_util::{empty, full};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How requests are addressed and authenticated.
#[derive(Clone)]
enum Api {
    Swift {
        path: String,
        token: String,
    },
    /// `sse`: object PUTs ask for SSE-S3.
    S3 {
        identity: Identity,
        sse: bool,
    },
}

impl Api {
    fn name(&self) -> &'static str {
        match self {
            Api::Swift { .. } => "swift",
            Api::S3 { .. } => "s3",
        }
    }

    /// A request for `rel` (`container[/object][?query]`), ready to send.
    fn request(
        &self,
        addr: &str,
        method: Method,
        rel: &str,
        body: Bytes,
    ) -> Request<service_kit::http_util::Body> {
        let uri = match self {
            Api::Swift { path, .. } => format!("{path}/{rel}"),
            Api::S3 { .. } => format!("/{rel}"),
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header("host", addr)
            .header("content-length", body.len())
            .body(())
            .unwrap();
        match self {
            Api::Swift { token, .. } => {
                req.headers_mut()
                    .insert("x-auth-token", token.parse().unwrap());
            }
            Api::S3 { identity, sse } => {
                if *sse && method == Method::PUT && rel.contains('/') {
                    req.headers_mut()
                        .insert("x-amz-server-side-encryption", "AES256".parse().unwrap());
                }
                // The payload is not hashed (UNSIGNED-PAYLOAD), as SDKs do over TLS;
                // the Swift path does not hash bodies either.
                let mut settings = SigningSettings::default();
                settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
                let params = v4::SigningParams::builder()
                    .identity(identity)
                    .region("us-east-1")
                    .name("s3")
                    .time(SystemTime::now())
                    .settings(settings)
                    .build()
                    .unwrap()
                    .into();
                let url = format!("http://{addr}{uri}");
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.to_str().unwrap()));
                let signable = SignableRequest::new(
                    method.as_str(),
                    &url,
                    headers,
                    SignableBody::UnsignedPayload,
                )
                .unwrap();
                let (instructions, _) = sign(signable, &params).unwrap().into_parts();
                instructions.apply_to_request_http1x(&mut req);
            }
        }
        let (parts, ()) = req.into_parts();
        Request::from_parts(parts, if body.is_empty() { empty() } else { full(body) })
    }
}

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

/// Sends one request and reads the whole answer; `Some(body length)` on success.
async fn call(
    client: &HttpClient,
    addr: &str,
    req: Request<service_kit::http_util::Body>,
) -> Option<(http::StatusCode, Bytes)> {
    let resp = client.send(addr, req).await.ok()?;
    let status = resp.status();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    client: Arc<HttpClient>,
    addr: String,
    api: Api,
    container: String,
    phase: &Phase,
    body: Bytes,
    concurrency: usize,
    cap: Duration,
) -> Outcome {
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, addr, api, container, next, body) = (
            client.clone(),
            addr.clone(),
            api.clone(),
            container.clone(),
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
                let send = if method == Method::PUT {
                    body.clone()
                } else {
                    Bytes::new()
                };
                let req = api.request(
                    &addr,
                    method.clone(),
                    &format!("{container}/obj-{i:06}"),
                    send,
                );
                match call(&client, &addr, req).await {
                    Some((st, got))
                        if st.is_success()
                            && (method != Method::GET || got.len() == body.len()) => {}
                    _ => errors += 1,
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

/// One large object through S3 multipart: parts uploaded 4 at a time.
async fn multipart_upload(
    client: Arc<HttpClient>,
    addr: String,
    api: Api,
    key: &str,
    size: usize,
    part_size: usize,
) -> Result<Duration, String> {
    let start = Instant::now();
    let (st, body) = call(
        &client,
        &addr,
        api.request(&addr, Method::POST, &format!("{key}?uploads"), Bytes::new()),
    )
    .await
    .ok_or("create failed")?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let upload_id = text
        .split("<UploadId>")
        .nth(1)
        .and_then(|r| r.split("</UploadId>").next())
        .ok_or(format!("no upload id ({st}): {text}"))?
        .to_string();
    let part = Bytes::from(vec![0x33u8; part_size]);
    let parts = size.div_ceil(part_size);
    let etags = futures_util::future::join_all((1..=parts).map(|n| {
        let (client, addr, api, part, upload_id) = (
            client.clone(),
            addr.clone(),
            api.clone(),
            part.clone(),
            upload_id.clone(),
        );
        let key = key.to_string();
        async move {
            let _ = &upload_id;
            let req = api.request(
                &addr,
                Method::PUT,
                &format!("{key}?partNumber={n}&uploadId={upload_id}"),
                part,
            );
            let resp = client.send(&addr, req).await.ok()?;
            let etag = resp.headers().get("etag")?.to_str().ok()?.to_string();
            resp.into_body().collect().await.ok()?;
            Some((n, etag))
        }
    }))
    .await;
    let mut xml = String::from("<CompleteMultipartUpload>");
    for e in etags {
        let (n, etag) = e.ok_or("a part failed")?;
        xml.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let (st, body) = call(
        &client,
        &addr,
        api.request(
            &addr,
            Method::POST,
            &format!("{key}?uploadId={upload_id}"),
            Bytes::from(xml),
        ),
    )
    .await
    .ok_or("complete failed")?;
    if !st.is_success() || !String::from_utf8_lossy(&body).contains("<ETag>") {
        return Err(format!("complete: {st} {}", String::from_utf8_lossy(&body)));
    }
    Ok(start.elapsed())
}

fn percentile(l: &[Duration], p: f64) -> Duration {
    if l.is_empty() {
        return Duration::ZERO;
    }
    l[((l.len() as f64 - 1.0) * p).round() as usize]
}

/// The pid of the process started with `config`.
fn pid_of(config: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("pgrep")
        .arg("-f")
        .arg(config)
        .output()
        .ok()?;
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()?
            .trim()
            .to_string(),
    )
}

/// CPU seconds (user and system) used so far by the process started with
/// `config`.
fn cpu_seconds_of(config: &std::path::Path) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid_of(config)?)).ok()?;
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// What the services spent so far: CPU seconds of the nodes and of the
/// proxy, and the nodes' WAL syncs for object writes.
fn service_costs(cluster: &Cluster) -> (f64, f64, u64) {
    let nodes = (0..3)
        .filter_map(|n| cpu_seconds_of(&cluster.node_config(n)))
        .sum();
    let proxy = cpu_seconds_of(&cluster.data_dir().join("proxy.toml")).unwrap_or(0.0);
    let syncs = (0..3)
        .map(|n| cluster.node_metric(n, "nubo_group_syncs_total"))
        .sum();
    (nodes, proxy, syncs)
}

/// Peak resident set (VmHWM), in MiB, of the process started with `config`.
fn peak_rss_of(config: &std::path::Path) -> Option<u64> {
    let pid = pid_of(config)?;
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

fn row(name: &str, ops: usize, size: usize, elapsed: Duration, lat: &[Duration], errors: usize) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{:<16} {:>7} {:>10.0} {:>9.1} {:>9.2} {:>9.2} {:>6}",
        name,
        ops,
        ops as f64 / secs,
        (ops * size) as f64 / secs / 1e6,
        percentile(lat, 0.5).as_secs_f64() * 1e3,
        percentile(lat, 0.99).as_secs_f64() * 1e3,
        errors
    );
}

/// One kind's totals over the rounds of `--versioning-cost`: operations,
/// seconds, latencies, errors, and what the services spent (the nodes' and
/// the proxy's CPU seconds, the nodes' WAL syncs).
#[derive(Clone, Default)]
struct KindTotals {
    ops: usize,
    secs: f64,
    latencies: Vec<Duration>,
    errors: usize,
    nodes_cpu: f64,
    proxy_cpu: f64,
    syncs: u64,
}

/// `--versioning-cost`: 4 KiB PUTs into a plain container and into a
/// versioned one of the same cluster, in alternating rounds (plain first,
/// then versioned first, and so on), so that the machine's drift in speed
/// between runs falls on both alike; then GETs of them the same way.
/// Prints each kind's totals and the change; returns the errors.
#[allow(clippy::too_many_arguments)]
fn versioning_cost(
    rt: &tokio::runtime::Runtime,
    client: &Arc<HttpClient>,
    cluster: &Cluster,
    addr: &str,
    api: &Api,
    swift: &Api,
    count: usize,
    concurrency: usize,
    cap: Duration,
) -> usize {
    const ROUNDS: usize = 10;
    let kinds = ["plain", "versioned"];
    for kind in kinds {
        let container = format!("cost-{}-{kind}", api.name());
        rt.block_on(call(
            client,
            addr,
            api.request(addr, Method::PUT, &container, Bytes::new()),
        ));
        if kind == "versioned" {
            let mut on = swift.request(addr, Method::POST, &container, Bytes::new());
            on.headers_mut()
                .insert("x-versions-enabled", "true".parse().unwrap());
            let done = rt.block_on(call(client, addr, on));
            assert!(
                done.is_some_and(|(s, _)| s.is_success()),
                "versioning enabled"
            );
        }
    }
    let phase = Phase {
        name: "PUT 4 KiB",
        method: Method::PUT,
        size: 4096,
        count: count.div_ceil(ROUNDS),
    };
    let body = Bytes::from(vec![0x5au8; phase.size]);
    let mut errors = 0;
    for method in [Method::PUT, Method::GET] {
        let phase = Phase {
            method: method.clone(),
            ..phase
        };
        let mut totals: Vec<KindTotals> = vec![KindTotals::default(); 2];
        // Per round, each kind's ops/s: the spread of the rounds' changes
        // shows how far one figure can be trusted on this machine.
        let mut round_rates: [Vec<f64>; 2] = Default::default();
        for round in 0..ROUNDS {
            for k in [round % 2, 1 - round % 2] {
                // Each round's objects under a prefix of their own: every
                // PUT makes a new object (or a key's first version).
                let container = format!("cost-{}-{}/r{round}", api.name(), kinds[k]);
                let before = service_costs(cluster);
                let o = rt.block_on(run_phase(
                    client.clone(),
                    addr.to_string(),
                    api.clone(),
                    container,
                    &phase,
                    body.clone(),
                    concurrency,
                    cap,
                ));
                let after = service_costs(cluster);
                let t = &mut totals[k];
                t.ops += o.ops;
                t.secs += o.elapsed.as_secs_f64();
                t.latencies.extend(o.latencies);
                t.errors += o.errors;
                t.nodes_cpu += after.0 - before.0;
                t.proxy_cpu += after.1 - before.1;
                t.syncs += after.2 - before.2;
                round_rates[k].push(o.ops as f64 / o.elapsed.as_secs_f64());
            }
        }
        let mut rates = Vec::new();
        for (k, t) in totals.iter_mut().enumerate() {
            t.latencies.sort();
            row(
                &format!("{} {method} {}", api.name(), kinds[k]),
                t.ops,
                phase.size,
                Duration::from_secs_f64(t.secs),
                &t.latencies,
                t.errors,
            );
            let (nodes, proxy, syncs) = (t.nodes_cpu, t.proxy_cpu, t.syncs);
            let ops = t.ops.max(1) as f64;
            println!(
                "{:<16} services' CPU {:.3} ms/op (nodes {:.3}, proxy {:.3}); WAL syncs {:.2}/op",
                "",
                (nodes + proxy) * 1e3 / ops,
                nodes * 1e3 / ops,
                proxy * 1e3 / ops,
                syncs as f64 / ops
            );
            rates.push(t.ops as f64 / t.secs);
        }
        let mut changes: Vec<f64> = round_rates[0]
            .iter()
            .zip(&round_rates[1])
            .map(|(plain, versioned)| (versioned / plain - 1.0) * 100.0)
            .collect();
        changes.sort_by(f64::total_cmp);
        println!(
            "{} versioning cost on 4 KiB {method}s ({ROUNDS} alternating rounds): {:+.1}% ops/s \
             (rounds: median {:+.1}%, from {:+.1}% to {:+.1}%)",
            api.name(),
            (rates[1] / rates[0] - 1.0) * 100.0,
            (changes[ROUNDS / 2 - 1] + changes[ROUNDS / 2]) / 2.0,
            changes[0],
            changes[ROUNDS - 1],
        );
        errors += totals.iter().map(|t| t.errors).sum::<usize>();
    }
    errors
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full_run = args.iter().any(|a| a == "--bench");
    let only = |name: &str| {
        !args.iter().any(|a| a == "--swift" || a == "--s3")
            || args.iter().any(|a| a == &format!("--{name}"))
    };
    let cluster = Cluster::start(3);
    let (url, token) = cluster.login();
    let swift_path = url
        .split_once("://")
        .map(|(_, r)| r.split_once('/').map(|(_, p)| format!("/{p}")).unwrap())
        .unwrap();
    let addr = format!("127.0.0.1:{}", cluster.proxy_port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Arc::new(HttpClient::new(Timeouts {
        connect: Duration::from_secs(2),
        node: Duration::from_secs(120),
    }));
    let concurrency = 16;
    let cap = Duration::from_secs(if full_run { 90 } else { 30 });
    let (small, large) = if full_run { (20_000, 96) } else { (64, 2) };
    let swift = Api::Swift {
        path: swift_path,
        token,
    };
    let mut apis = Vec::new();
    if only("swift") {
        apis.push(swift.clone());
    }
    if only("s3") {
        apis.push(Api::S3 {
            // `--sse`: the cost of SSE-S3 on object PUTs and GETs.
            sse: args.iter().any(|a| a == "--sse"),
            identity: Credentials::new("test:tester", "testing", None, None, "bench").into(),
        });
    }
    println!(
        "cluster load: 3 nodes, concurrency {concurrency}{}",
        if full_run {
            ""
        } else {
            " (smoke run; `cargo bench --bench cluster_load` for figures)"
        }
    );
    println!(
        "{:<16} {:>7} {:>10} {:>9} {:>9} {:>9} {:>6}",
        "phase", "ops", "ops/s", "MB/s", "p50 ms", "p99 ms", "errors"
    );
    let mut total_errors = 0;
    let cost_only = args.iter().any(|a| a == "--versioning-cost");
    // The smoke run (`cargo test`) runs a few of these too.
    if cost_only || !full_run {
        for api in &apis {
            total_errors += versioning_cost(
                &rt,
                &client,
                &cluster,
                &addr,
                api,
                &swift,
                small,
                concurrency,
                cap,
            );
        }
    }
    if cost_only {
        assert_eq!(total_errors, 0, "every operation must succeed");
        return;
    }
    for api in &apis {
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
        if full_run && matches!(api, Api::Swift { .. }) {
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
        if args.iter().any(|a| a == "--small") {
            phases.retain(|p| p.size == 4096);
        }
        // `--size N`: PUT then GET objects of N bytes only.
        if let Some(size) = args
            .iter()
            .position(|a| a == "--size")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<usize>().ok())
        {
            // At most 2 GiB written (6 GiB with replicas), so large sizes
            // stay within the disk: 128 objects of 16 MiB.
            let count = (small / 4).min(((2usize << 30) / size.max(1)).max(2));
            phases = vec![
                Phase {
                    name: "PUT sized",
                    method: Method::PUT,
                    size,
                    count,
                },
                Phase {
                    name: "GET sized",
                    method: Method::GET,
                    size,
                    count,
                },
            ];
        }
        for p in &phases {
            let container = format!("load-{}-{}", api.name(), p.size);
            let body = Bytes::from(vec![0x5au8; p.size]);
            rt.block_on(call(
                &client,
                &addr,
                api.request(&addr, Method::PUT, &container, Bytes::new()),
            ));
            let before = service_costs(&cluster);
            let o = rt.block_on(run_phase(
                client.clone(),
                addr.clone(),
                api.clone(),
                container,
                p,
                body,
                concurrency,
                cap,
            ));
            let after = service_costs(&cluster);
            row(
                &format!("{} {}", api.name(), p.name),
                o.ops,
                p.size,
                o.elapsed,
                &o.latencies,
                o.errors,
            );
            let ops = o.ops.max(1) as f64;
            let (nodes, proxy) = (after.0 - before.0, after.1 - before.1);
            let cpu = nodes + proxy;
            println!(
                "{:<16} services' CPU {:.3} ms/op (nodes {:.3}, proxy {:.3}), {:.2} ms/MB; WAL syncs {:.2}/op",
                "",
                cpu * 1e3 / ops,
                nodes * 1e3 / ops,
                proxy * 1e3 / ops,
                cpu * 1e3 / (ops * p.size as f64 / 1e6),
                (after.2 - before.2) as f64 / ops
            );
            total_errors += o.errors;
        }
        if matches!(api, Api::S3 { .. }) {
            let (size, part) = if full_run {
                (1 << 30, 64 << 20)
            } else {
                (12 << 20, 5 << 20)
            };
            rt.block_on(call(
                &client,
                &addr,
                api.request(&addr, Method::PUT, "load-s3-mpu", Bytes::new()),
            ));
            match rt.block_on(multipart_upload(
                client.clone(),
                addr.clone(),
                api.clone(),
                "load-s3-mpu/big",
                size,
                part,
            )) {
                Ok(t) => row("s3 multipart", 1, size, t, &[t], 0),
                Err(e) => {
                    println!("s3 multipart failed: {e}");
                    total_errors += 1;
                }
            }
        }
    }
    let nodes: Vec<u64> = (0..cluster.nodes)
        .filter_map(|n| peak_rss_of(&cluster.node_config(n)))
        .collect();
    println!(
        "peak RSS (MiB): storage nodes {nodes:?}, proxy {:?}",
        peak_rss_of(&cluster.data_dir().join("proxy.toml"))
    );
    assert_eq!(total_errors, 0, "every operation must succeed");
}
