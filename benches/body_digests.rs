//! What the proxy's one pass over a PUT body costs, with and without each
//! S3 checksum: the ETag (MD5) and blake3 it always computes, plus CRC32,
//! CRC32C, CRC64NVME (the default for S3 writes), SHA-1 or SHA-256; and
//! with the body sealed for SSE-S3 (AES-256-GCM, plus the plaintext's MD5).
//!
//! Run: `cargo bench --bench body_digests` (figures in README, next to the
//! cluster's CPU per MB for 16 MiB S3 PUTs from `cluster_load -- --s3`).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use object_store::proxy::backend::BodyDigests;
use object_store::proxy::checksums::{Algorithm, ChecksumCheck, Expected};
use object_store::proxy::encryption::Key;
use std::hint::black_box;
use std::time::Duration;

const BODY: usize = 16 << 20;
/// The proxy sees a body in frames of about this size.
const FRAME: usize = 64 << 10;

fn pass(frames: &[Bytes], checksum: Option<Algorithm>, seal: Option<&Key>) {
    let mut d = BodyDigests::new(checksum.map(|algorithm| ChecksumCheck {
        algorithm,
        expected: Expected::Nothing,
    }));
    if let Some(key) = seal {
        d = d.sealed(key, true, None);
    }
    for frame in frames {
        black_box(d.pass(frame.clone()));
    }
    black_box(d.finish().ok());
}

fn digests(c: &mut Criterion) {
    let body = Bytes::from((0..BODY).map(|i| (i * 31 % 251) as u8).collect::<Vec<u8>>());
    let frames: Vec<Bytes> = (0..BODY)
        .step_by(FRAME)
        .map(|i| body.slice(i..(i + FRAME).min(BODY)))
        .collect();
    let mut g = c.benchmark_group("16 MiB body");
    g.throughput(Throughput::Bytes(BODY as u64))
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    g.bench_function("md5+blake3", |b| b.iter(|| pass(&frames, None, None)));
    for a in Algorithm::ALL {
        g.bench_function(format!("md5+blake3+{}", a.name()), |b| {
            b.iter(|| pass(&frames, Some(a), None))
        });
    }
    let key = Key::random();
    g.bench_function("md5+blake3+crc64nvme+sse-s3", |b| {
        b.iter(|| pass(&frames, Some(Algorithm::Crc64Nvme), Some(&key)))
    });
    g.finish();
}

criterion_group!(benches, digests);
criterion_main!(benches);
