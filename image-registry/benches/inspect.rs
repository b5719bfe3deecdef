//! Inspection time for 10 GiB sparse images (target: under 10 ms each):
//! `cargo bench -p image-registry --bench inspect`. The images are made
//! with qemu-img in a temp dir; inspection reads only headers and tables.

use criterion::{criterion_group, criterion_main, Criterion};
use image_registry::inspect::{inspect, FileSource, Limits};
use std::process::Command;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    for (fmt, opts) in [
        ("qcow2", ""),
        ("vmdk", ""),
        ("vmdk", "subformat=streamOptimized"),
        ("vhdx", ""),
        ("vpc", ""),
        ("vdi", ""),
    ] {
        let path = dir.path().join(format!("ten-gib.{fmt}{}", opts.len()));
        let mut cmd = Command::new("qemu-img");
        cmd.args(["create", "-q", "-f", fmt]);
        if !opts.is_empty() {
            cmd.args(["-o", opts]);
        }
        assert!(cmd.arg(&path).arg("10G").status().unwrap().success());
        let name = if opts.is_empty() {
            fmt.to_string()
        } else {
            format!("{fmt} {opts}")
        };
        c.bench_function(&format!("inspect 10 GiB {name}"), |b| {
            b.iter(|| {
                // Opening the file is part of what an upload pays.
                let src = FileSource::open(&path).unwrap();
                let info = inspect(&src, &limits).unwrap();
                assert!(info.virtual_size >= 10 << 30);
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
