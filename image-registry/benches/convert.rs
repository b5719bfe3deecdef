//! Conversion through the registry's path (the verdict: inspector, then
//! qemu-img info and measure under prlimit; conversion under its size cap;
//! re-inspection of the output) against plain
//! `qemu-img convert` of the same file (target: ratio at most 1.05).
//! `cargo bench -p image-registry --bench convert` (a 1 GiB vmdk; under
//! `cargo test`, 16 MiB).

use image_registry::convert;
use image_registry::inspect::{DiskFormat, Limits};
use image_registry::verify::{verify, Declared};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let full_run = std::env::args().any(|a| a == "--bench");
    let size: u64 = if full_run { 1 << 30 } else { 16 << 20 };
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&raw).unwrap());
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut block = vec![0u8; 1 << 20];
        for i in 0..size >> 20 {
            // Half the blocks hold data, half are zero, as disks do.
            if i % 2 == 0 {
                for chunk in block.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    chunk.copy_from_slice(&x.to_le_bytes());
                }
            } else {
                block.fill(0);
            }
            f.write_all(&block).unwrap();
        }
    }
    let src = dir.path().join("src.vmdk");
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "vmdk"])
        .arg(&raw)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let limits = Limits::default();
    let runs = if full_run { 3 } else { 1 };
    let mut plain = Vec::new();
    let mut ours = Vec::new();
    // Each run starts with no dirty pages from the previous one (sync), the
    // two paths take turns going first, and outputs are removed.
    let sync = || assert!(Command::new("sync").status().unwrap().success());
    for i in 0..runs * 2 {
        let out = dir.path().join("out.qcow2");
        let _ = std::fs::remove_file(&out);
        sync();
        let t = Instant::now();
        if (i % 2 == 0) == (i / 2 % 2 == 0) {
            let st = Command::new("qemu-img")
                .args(["convert", "-q", "-f", "vmdk", "-O", "qcow2"])
                .arg(&src)
                .arg(&out)
                .status()
                .unwrap();
            assert!(st.success());
            plain.push(t.elapsed());
        } else {
            let declared = Declared {
                disk_format: Some("vmdk"),
                container_format: Some("bare"),
            };
            let v = verify(&src, declared, &limits, &dir.path().join("work")).unwrap();
            convert::convert(
                &src,
                &v.disk_info,
                &out,
                DiskFormat::Qcow2,
                &limits,
                Duration::from_secs(600),
            )
            .unwrap();
            ours.push(t.elapsed());
        }
    }
    let best = |v: &[Duration]| v.iter().min().copied().unwrap();
    println!(
        "vmdk -> qcow2, {} MiB: plain qemu-img {:.3} s, registry path {:.3} s, ratio {:.3} (target <= 1.05; best of {runs})",
        size >> 20,
        best(&plain).as_secs_f64(),
        best(&ours).as_secs_f64(),
        best(&ours).as_secs_f64() / best(&plain).as_secs_f64()
    );
}
