//! Overlay creation time on a 10 GiB sparse base, raw and qcow2 (target:
//! under 20 ms for any image size): `cargo bench -p compute --bench overlay`.
//! The base is inspected each time, as a launch does.

use compute::overlay;
use criterion::{criterion_group, criterion_main, Criterion};
use image_registry::inspect::DiskFormat;
use std::process::Command;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    for (fmt, format) in [("raw", DiskFormat::Raw), ("qcow2", DiskFormat::Qcow2)] {
        let base = dir.path().join(format!("base.{fmt}"));
        assert!(Command::new("qemu-img")
            .args(["create", "-q", "-f", fmt])
            .arg(&base)
            .arg("10G")
            .status()
            .unwrap()
            .success());
        let mut n = 0u64;
        c.bench_function(&format!("overlay on a 10 GiB {fmt} base"), |b| {
            b.iter(|| {
                n += 1;
                let o = dir.path().join(format!("vm-{fmt}-{n}.qcow2"));
                overlay::create(&base, format, &o, 20 << 30).unwrap();
                std::fs::remove_file(&o).unwrap();
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
