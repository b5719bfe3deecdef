//! Large images on a real cluster. A 12 GiB sparse raw image (beyond one
//! object's 5 GiB) through every path: upload (stored as content-defined
//! chunks and a manifest), ranged download, download through
//! an empty cache (fetched back from the segments), import with conversion
//! to qcow2, and a compute host's template fetch, each checked against the
//! source. The source and every copy stay sparse (holes on the storage
//! nodes, in the registry's staging and cache, on the host), so the test
//! costs seconds of disk, not 48 GiB. Slow (a few minutes), bounded by the
//! registry's own limits.

mod common;
use common::corpus;
use common::glance::Glance;
use common::Cluster;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
const SIZE: u64 = 12 * GIB;
/// Where the source has data (1 MiB of a pattern each); the rest is holes.
const DATA_AT: [u64; 4] = [0, 5 * GIB - 512 * 1024, 6 * GIB + 12345, SIZE - (1 << 20)];

fn pattern(at: u64) -> Vec<u8> {
    (0..1u64 << 20)
        .map(|i| ((at + i).wrapping_mul(2654435761) >> 13) as u8 | 1)
        .collect()
}

/// A 12 GiB sparse raw file with data at [`DATA_AT`]; its BLAKE3.
fn make_source(path: &Path) -> String {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(SIZE).unwrap();
    for at in DATA_AT {
        f.write_all_at(&pattern(at), at).unwrap();
    }
    blake3_of(std::fs::File::open(path).unwrap())
}

fn blake3_of(mut r: impl Read) -> String {
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            return h.finalize().to_hex().to_string();
        }
        h.update(&buf[..n]);
    }
}

/// Streams a file to `PUT path` (upload or stage).
fn put_file(g: &Glance, path: &str, file: &Path) -> u16 {
    let r = g
        .agent
        .put(&format!("{}{path}", g.url))
        .set("X-Auth-Token", &g.token)
        .set("Content-Type", "application/octet-stream")
        .set("Content-Length", &SIZE.to_string())
        .timeout(Duration::from_secs(900))
        .send(std::fs::File::open(file).unwrap());
    match r {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, r)) => panic!("{s}: {}", r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    }
}

fn range(g: &Glance, id: &str, at: u64, len: u64) -> Vec<u8> {
    let r = g
        .agent
        .get(&format!("{}/v2/images/{id}/file", g.url))
        .set("X-Auth-Token", &g.token)
        .set("Range", &format!("bytes={at}-{}", at + len - 1))
        .timeout(Duration::from_secs(900))
        .call()
        .unwrap();
    assert_eq!(r.status(), 206);
    let mut out = Vec::new();
    r.into_reader().read_to_end(&mut out).unwrap();
    out
}

/// How many bytes a file really takes on disk.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn a_12_gib_image_works_on_every_path() {
    let started = Instant::now();
    let c = Cluster::start(3);
    let g = Glance::new(&c);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.raw");
    let want = make_source(&src);

    // Upload: 12 segments and a manifest, the record's hashes of the whole.
    let id = g.create(json!({"name": "big", "disk_format": "raw", "container_format": "bare"}));
    assert_eq!(put_file(&g, &format!("/v2/images/{id}/file"), &src), 204);
    let img = g.show(&id);
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["size"], SIZE);
    assert_eq!(img["virtual_size"], SIZE);
    assert_eq!(img["nubo_blake3"], want);
    // Stored as chunks: a manifest at <id> and, the holes being all alike,
    // a handful of distinct chunks.
    let (st, body) = g.call("GET", &format!("/v2/images/{id}/chunks"), None, b"");
    assert_eq!(st, 200);
    let manifest: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(manifest["size"], SIZE);
    let chunks = manifest["chunks"].as_array().unwrap();
    let distinct: std::collections::HashSet<&str> =
        chunks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    eprintln!("{} chunks, {} distinct", chunks.len(), distinct.len());
    assert!(distinct.len() < 20, "{} distinct chunks", distinct.len());
    let swift = common::Swift::registry_service(&c);
    let manifest_head = swift.req("HEAD", &format!("/images/{id}"), &[], b"");
    assert_eq!(
        manifest_head.header("x-object-meta-nubo-chunked"),
        Some("1")
    );
    eprintln!("upload done at {:?}", started.elapsed());

    // Ranged downloads across segment boundaries, from the cache and then
    // from the store through an emptied cache.
    let check_ranges = || {
        for at in DATA_AT {
            assert!(range(&g, &id, at, 1 << 20) == pattern(at), "at {at}");
        }
        let across = 5 * GIB - 100;
        let got = range(&g, &id, across, 200);
        assert_eq!(
            &got[..],
            &pattern(5 * GIB - 512 * 1024)[512 * 1024 - 100..512 * 1024 + 100]
        );
    };
    check_ranges();
    assert_eq!(g.call("DELETE", "/v2/cache", None, b"").0, 204);
    check_ranges();
    let cached = c.data_dir().join(format!("registry/cache/complete/{id}"));
    assert!(allocated(&cached) < GIB, "the cache copy stays sparse");
    eprintln!("downloads done at {:?}", started.elapsed());

    // A compute host's template fetch: the whole image, BLAKE3-checked by
    // the host, kept as a raw base.
    let host = dir.path().join("host");
    let cache = compute::template_cache::TemplateCache::open(&host).unwrap();
    let image = compute::template_cache::ImageRef {
        id: id.clone(),
        disk_format: "raw".into(),
        os_hash_value: img["os_hash_value"].as_str().map(str::to_string),
        checksum: img["checksum"].as_str().map(str::to_string),
        blake3: img["nubo_blake3"].as_str().map(str::to_string),
        size: Some(SIZE),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (base, _) = rt
        .block_on(cache.base(&image, &c.registry_url(), &g.token))
        .unwrap();
    assert_eq!(std::fs::metadata(&base).unwrap().len(), SIZE);
    assert_eq!(blake3_of(std::fs::File::open(&base).unwrap()), want);
    assert!(allocated(&base) < GIB, "the host's base stays sparse");
    eprintln!("template fetch done at {:?}", started.elapsed());

    // Import: staged, verified, converted to qcow2 (small), stored.
    let imported =
        g.create(json!({"name": "big-import", "disk_format": "raw", "container_format": "bare"}));
    assert_eq!(
        put_file(&g, &format!("/v2/images/{imported}/stage"), &src),
        204
    );
    let (st, v) = g.json(
        "POST",
        &format!("/v2/images/{imported}/import"),
        json!({"method": {"name": "glance-direct"}}),
    );
    assert_eq!(st, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(900);
    let done: Value = loop {
        let img = g.show(&imported);
        if img["status"] == "active" || img["status"] == "queued" {
            break img;
        }
        assert!(Instant::now() < deadline, "{img}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(done["status"], "active", "{done}");
    assert_eq!(done["disk_format"], "qcow2");
    assert_eq!(done["virtual_size"], SIZE);
    let qcow2 = dir.path().join("big.qcow2");
    let r = g
        .agent
        .get(&format!("{}/v2/images/{imported}/file", g.url))
        .set("X-Auth-Token", &g.token)
        .call()
        .unwrap();
    let mut out = std::fs::File::create(&qcow2).unwrap();
    std::io::copy(&mut r.into_reader(), &mut out).unwrap();
    out.flush().unwrap();
    corpus::qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "qcow2",
        src.to_str().unwrap(),
        qcow2.to_str().unwrap(),
    ]);
    // Deleting takes the manifest; the chunks only this image held go.
    assert_eq!(
        g.call("DELETE", &format!("/v2/images/{id}"), None, b"").0,
        204
    );
    assert_eq!(
        swift.req("HEAD", &format!("/images/{id}"), &[], b"").status,
        404
    );
    eprintln!("12 GiB image on every path in {:?}", started.elapsed());
}

/// One counter of the registry's `/metrics`.
fn metric(c: &Cluster, name: &str) -> u64 {
    let text = ureq::get(&format!("{}/metrics", c.registry_url()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// A file of `len` pseudo-random bytes (xorshift, from `seed`).
fn random_file(path: &Path, len: u64, seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = seed | 1;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..len >> 20 {
        for w in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    f.flush().unwrap();
}

fn upload_file(g: &Glance, name: &str, file: &Path) -> (String, f64) {
    let id = g.create(json!({"name": name, "disk_format": "raw", "container_format": "bare"}));
    let len = std::fs::metadata(file).unwrap().len();
    let t = Instant::now();
    let r = g
        .agent
        .put(&format!("{}/v2/images/{id}/file", g.url))
        .set("X-Auth-Token", &g.token)
        .set("Content-Type", "application/octet-stream")
        .set("Content-Length", &len.to_string())
        .timeout(Duration::from_secs(900))
        .send(std::fs::File::open(file).unwrap())
        .unwrap();
    assert_eq!(r.status(), 204);
    let secs = t.elapsed().as_secs_f64();
    (id, len as f64 / secs / 1e6)
}

/// Content-defined chunks: a new version of a 2 GiB image with 1% of it
/// rewritten (20 regions of 1 MiB) stores, and a host that has the first
/// version fetches, under 5% of the image; the registry's cache fills the
/// new version from the old one's chunks; deleting the first version
/// frees exactly its own chunks and leaves the second intact.
#[test]
fn a_new_version_moves_only_what_changed() {
    const SIZE2: u64 = 2 * GIB;
    let c = Cluster::start(3);
    let g = Glance::new(&c);
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (dir.path().join("v1.raw"), dir.path().join("v2.raw"));
    random_file(&v1, SIZE2, 0x9E37_79B9_7F4A_7C15);
    std::fs::copy(&v1, &v2).unwrap();
    {
        let f = std::fs::OpenOptions::new().write(true).open(&v2).unwrap();
        for i in 0..20u64 {
            let at = (i * 101 + 7) * (SIZE2 / 2048) % (SIZE2 - (1 << 20));
            let fresh: Vec<u8> = (0..1u32 << 20).map(|j| (j as u64 * 31 + i) as u8).collect();
            f.write_all_at(&fresh, at).unwrap();
        }
    }
    let new0 = metric(&c, "nubo_registry_chunk_bytes_new_total");
    let (id1, rate1) = upload_file(&g, "v1", &v1);
    let new1 = metric(&c, "nubo_registry_chunk_bytes_new_total");
    let (id2, rate2) = upload_file(&g, "v2", &v2);
    let new2 = metric(&c, "nubo_registry_chunk_bytes_new_total");
    let stored_v2 = new2 - new1;
    eprintln!(
        "v1: {} MB stored at {rate1:.1} MB/s; v2: {stored_v2} bytes stored ({:.2}%) at {rate2:.1} MB/s",
        (new1 - new0) / 1_000_000,
        stored_v2 as f64 * 100.0 / SIZE2 as f64
    );
    assert!(
        new1 - new0 >= SIZE2 * 99 / 100,
        "a first version stores its data"
    );
    assert!(stored_v2 < SIZE2 / 20, "v2 stored {stored_v2} new bytes");
    for (id, src) in [(&id1, &v1), (&id2, &v2)] {
        assert_eq!(
            g.show(id)["nubo_blake3"],
            blake3_of(std::fs::File::open(src).unwrap())
        );
    }

    // A host that has v1 fetches only v2's new chunks.
    let host = dir.path().join("host");
    let cache = compute::template_cache::TemplateCache::open(&host).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let image_ref = |id: &str| {
        let img = g.show(id);
        compute::template_cache::ImageRef {
            id: id.to_string(),
            disk_format: "raw".into(),
            os_hash_value: img["os_hash_value"].as_str().map(str::to_string),
            checksum: img["checksum"].as_str().map(str::to_string),
            blake3: img["nubo_blake3"].as_str().map(str::to_string),
            size: img["size"].as_u64(),
        }
    };
    let t = Instant::now();
    rt.block_on(cache.base(&image_ref(&id1), &c.registry_url(), &g.token))
        .unwrap();
    let cold = cache.network_bytes();
    let cold_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (base2, _) = rt
        .block_on(cache.base(&image_ref(&id2), &c.registry_url(), &g.token))
        .unwrap();
    let fetched_v2 = cache.network_bytes() - cold;
    eprintln!(
        "host: v1 fetched {cold} bytes in {cold_secs:.1} s; v2 fetched {fetched_v2} bytes ({:.2}%) in {:.1} s",
        fetched_v2 as f64 * 100.0 / SIZE2 as f64,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(cold, SIZE2);
    assert!(
        fetched_v2 < SIZE2 / 20,
        "the host fetched {fetched_v2} bytes of v2"
    );
    assert_eq!(
        blake3_of(std::fs::File::open(&base2).unwrap()),
        blake3_of(std::fs::File::open(&v2).unwrap())
    );

    // The registry's cache fills v2 from v1's chunks.
    assert_eq!(g.call("DELETE", "/v2/cache", None, b"").0, 204);
    let local0 = metric(&c, "nubo_registry_cache_chunk_bytes_local_total");
    assert!(range(&g, &id1, 0, 16) == std::fs::read(&v1).unwrap()[..16]);
    assert!(range(&g, &id2, 0, 16) == std::fs::read(&v2).unwrap()[..16]);
    let local = metric(&c, "nubo_registry_cache_chunk_bytes_local_total") - local0;
    assert!(
        local >= SIZE2 * 95 / 100,
        "the cache took {local} bytes of v2 locally"
    );

    // Deleting v1 frees its own chunks, and only those.
    let chunk_ids = |id: &str| -> std::collections::HashSet<String> {
        let (st, body) = g.call("GET", &format!("/v2/images/{id}/chunks"), None, b"");
        assert_eq!(st, 200);
        let m: Value = serde_json::from_slice(&body).unwrap();
        m["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (c1, c2) = (chunk_ids(&id1), chunk_ids(&id2));
    let only_v1: Vec<&String> = c1.difference(&c2).collect();
    assert!(!only_v1.is_empty());
    let collected0 = metric(&c, "nubo_registry_chunks_collected_total");
    assert_eq!(
        g.call("DELETE", &format!("/v2/images/{id1}"), None, b"").0,
        204
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(&c, "nubo_registry_chunks_collected_total") - collected0 < only_v1.len() as u64 {
        assert!(Instant::now() < deadline, "v1's chunks were not collected");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        metric(&c, "nubo_registry_chunks_collected_total") - collected0,
        only_v1.len() as u64
    );
    let swift = common::Swift::registry_service(&c);
    for id in &only_v1 {
        assert_eq!(
            swift
                .req("HEAD", &format!("/images/chunks/{id}"), &[], b"")
                .status,
            404
        );
    }
    for id in c2.iter().take(50) {
        assert_eq!(
            swift
                .req("HEAD", &format!("/images/chunks/{id}"), &[], b"")
                .status,
            200
        );
    }
    assert_eq!(g.call("DELETE", "/v2/cache", None, b"").0, 204);
    let r = g
        .agent
        .get(&format!("{}/v2/images/{id2}/file", g.url))
        .set("X-Auth-Token", &g.token)
        .timeout(Duration::from_secs(900))
        .call()
        .unwrap();
    assert_eq!(
        blake3_of(r.into_reader()),
        blake3_of(std::fs::File::open(&v2).unwrap())
    );
}
