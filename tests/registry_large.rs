//! Images beyond one object (5 GiB): a 12 GiB sparse raw image through
//! every path on a real cluster. Upload (stored as 12 segments of 1 GiB
//! and a Static Large Object manifest), ranged download, download through
//! an empty cache (fetched back from the segments), import with conversion
//! to qcow2, and a compute host's template fetch, each checked against the
//! source. The source and every copy stay sparse (holes on the storage
//! nodes, in the registry's staging and cache, on the host), so the test
//! costs seconds of disk, not 48 GiB. Slow (a few minutes), bounded by the
//! registry's own limits.

mod common;
#[path = "../image-registry/tests/corpus/mod.rs"]
mod corpus;
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
    let swift = common::Swift::registry_service(&c);
    for n in 1..=12 {
        let seg = format!("/images/{id}-{n:05}");
        assert_eq!(swift.req("HEAD", &seg, &[], b"").status, 200, "{seg}");
    }
    assert_eq!(
        swift
            .req("HEAD", &format!("/images/{id}-00013"), &[], b"")
            .status,
        404
    );
    let manifest = swift.req("HEAD", &format!("/images/{id}"), &[], b"");
    assert_eq!(manifest.header("x-static-large-object"), Some("True"));
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
    // Deleting takes every segment with the manifest.
    assert_eq!(
        g.call("DELETE", &format!("/v2/images/{id}"), None, b"").0,
        204
    );
    for n in [1, 12] {
        let seg = format!("/images/{id}-{n:05}");
        assert_eq!(swift.req("HEAD", &seg, &[], b"").status, 404, "{seg}");
    }
    eprintln!("12 GiB image on every path in {:?}", started.elapsed());
}
