//! The image registry on a local 3-node cluster: upload throughput of one
//! large image against the object store's own PUT of the same bytes
//! (target: at least 70%), and the latency of cache hits.
//!
//! Full run: `cargo bench --bench registry_load` (1 GiB). Under `cargo
//! test` it runs with 8 MiB as a smoke test. Conversion against plain
//! qemu-img: `cargo bench -p image-registry --bench convert`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::Cluster;
use http::{Method, Request};
use http_body_util::BodyExt;
use service_kit::client::{HttpClient, Timeouts};
use service_kit::http_util::{empty, file_body, full};
use std::path::Path;
use std::time::{Duration, Instant};

fn client() -> HttpClient {
    HttpClient::new(Timeouts {
        connect: Duration::from_secs(2),
        node: Duration::from_secs(600),
    })
}

/// Sends one request with a file body; its status and the time it took.
async fn put_file(
    c: &HttpClient,
    addr: &str,
    uri: &str,
    token: &str,
    file: &Path,
    extra: &[(&str, &str)],
) -> (u16, Duration) {
    let len = std::fs::metadata(file).unwrap().len();
    let f = tokio::fs::File::open(file).await.unwrap();
    let mut b = Request::builder()
        .method(Method::PUT)
        .uri(uri)
        .header("host", addr)
        .header("x-auth-token", token)
        .header("content-length", len);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let started = Instant::now();
    let conn = c.connect(addr).await.unwrap();
    let resp = conn
        .send_streaming(b.body(file_body(f, len)).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    (status, started.elapsed())
}

fn main() {
    let full_run = std::env::args().any(|a| a == "--bench");
    let size: u64 = if full_run { 1 << 30 } else { 8 << 20 };
    let cluster = Cluster::start(3);
    let (storage_url, token) = cluster.login();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image.raw");
    {
        // Incompressible content, written in 1 MiB blocks.
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..size >> 20 {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&block).unwrap();
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = client();
        let proxy = format!("127.0.0.1:{}", cluster.proxy_port);
        let registry = format!("127.0.0.1:{}", cluster.registry_port);
        let path = storage_url[storage_url.find("/v1/").unwrap()..].to_string();
        // The object store's own PUT of the same bytes.
        let req = Request::builder()
            .method(Method::PUT)
            .uri(format!("{path}/bench"))
            .header("host", &proxy)
            .header("x-auth-token", &token)
            .body(empty())
            .unwrap();
        let _ = c
            .send(&proxy, req)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await;
        let (st, store_time) = put_file(
            &c,
            &proxy,
            &format!("{path}/bench/image"),
            &token,
            &file,
            &[],
        )
        .await;
        assert_eq!(st, 201);
        // The registry: create, then upload (hashing, inspection, store, cache).
        let create = |name: &str| {
            Request::builder()
                .method(Method::POST)
                .uri("/v2/images")
                .header("host", &registry)
                .header("x-auth-token", &token)
                .header("content-type", "application/json")
                .body(full(format!(
                    r#"{{"name": "{name}", "disk_format": "raw", "container_format": "bare"}}"#
                )))
                .unwrap()
        };
        let resp = c.send(&registry, create("bench")).await.unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        let (st, reg_time) = put_file(
            &c,
            &registry,
            &format!("/v2/images/{id}/file"),
            &token,
            &file,
            &[("content-type", "application/octet-stream")],
        )
        .await;
        assert_eq!(st, 204);
        let mb = |t: Duration| size as f64 / t.as_secs_f64() / 1e6;
        println!("image upload of {} MiB, 3 nodes:", size >> 20);
        println!(
            "  object store PUT   {:>8.1} MB/s  ({:.2} s)",
            mb(store_time),
            store_time.as_secs_f64()
        );
        println!(
            "  registry upload    {:>8.1} MB/s  ({:.2} s)  = {:.0}% of the store's (target >= 70%)",
            mb(reg_time),
            reg_time.as_secs_f64(),
            100.0 * store_time.as_secs_f64() / reg_time.as_secs_f64()
        );
        // Cache hits: a small image, read again and again.
        let small = dir.path().join("small.raw");
        std::fs::write(&small, vec![0u8; 64 << 10]).unwrap();
        let resp = c.send(&registry, create("small")).await.unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        let small_id = v["id"].as_str().unwrap().to_string();
        let (st, _) = put_file(
            &c,
            &registry,
            &format!("/v2/images/{small_id}/file"),
            &token,
            &small,
            &[("content-type", "application/octet-stream")],
        )
        .await;
        assert_eq!(st, 204);
        let n = if full_run { 2000 } else { 50 };
        let mut lat = Vec::with_capacity(n);
        for _ in 0..n {
            let req = Request::builder()
                .uri(format!("/v2/images/{small_id}/file"))
                .header("host", &registry)
                .header("x-auth-token", &token)
                .body(empty())
                .unwrap();
            let t = Instant::now();
            let resp = c.send(&registry, req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            lat.push(t.elapsed());
            assert_eq!(body.len(), 64 << 10);
        }
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
        println!(
            "cache hit, 64 KiB image, {n} sequential GETs: p50 {:.2} ms, p99 {:.2} ms",
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3
        );
    });
}
