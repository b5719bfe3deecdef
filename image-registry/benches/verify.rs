//! What the full verdict costs an upload: `verify` (inspector, then
//! `qemu-img info` and `qemu-img measure` under prlimit) on 10 GiB sparse
//! images and a 64 MiB raw one, against the inspector alone:
//! `cargo bench -p image-registry --bench verify`.

use criterion::{criterion_group, criterion_main, Criterion};
use image_registry::inspect::{inspect, FileSource, Limits};
use image_registry::verify::{verify, Declared};
use std::process::Command;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    let mut group = c.benchmark_group("verify");
    group.sample_size(20);
    for (fmt, disk_format, size) in [
        ("qcow2", "qcow2", "10G"),
        ("vmdk", "vmdk", "10G"),
        ("vhdx", "vhdx", "10G"),
        ("raw", "raw", "64M"),
    ] {
        let path = dir.path().join(format!("image.{fmt}"));
        let ok = Command::new("qemu-img")
            .args(["create", "-q", "-f", fmt])
            .arg(&path)
            .arg(size)
            .status()
            .unwrap();
        assert!(ok.success());
        let declared = Declared {
            disk_format: Some(disk_format),
            container_format: Some("bare"),
        };
        let work = dir.path().join("work");
        group.bench_function(format!("{fmt} {size}: inspector and qemu-img"), |b| {
            b.iter(|| verify(&path, declared, &limits, &work).unwrap())
        });
        group.bench_function(format!("{fmt} {size}: inspector alone"), |b| {
            b.iter(|| inspect(&FileSource::open(&path).unwrap(), &limits).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
