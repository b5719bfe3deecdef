//! What the proxy's one pass over a PUT body costs, with and without each
//! S3 checksum: the ETag (MD5) and blake3 it always computes, plus CRC32,
//! CRC32C, CRC64NVME (the default for S3 writes), SHA-1 or SHA-256.
//!
//! Run: `cargo bench --bench body_digests` (figures in README, next to the
//! cluster's CPU per MB for 16 MiB S3 PUTs from `cluster_load -- --s3`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use object_store::proxy::backend::BodyDigests;
use object_store::proxy::checksums::{Algorithm, ChecksumCheck, Expected};
use std::hint::black_box;
use std::time::Duration;

const BODY: usize = 16 << 20;
/// The proxy sees a body in frames of about this size.
const FRAME: usize = 64 << 10;

fn pass(body: &[u8], checksum: Option<Algorithm>) {
    let mut d = BodyDigests::new(checksum.map(|algorithm| ChecksumCheck {
        algorithm,
        expected: Expected::Nothing,
    }));
    for frame in body.chunks(FRAME) {
        d.update(frame);
    }
    black_box(d.finish().ok());
}

fn digests(c: &mut Criterion) {
    let body: Vec<u8> = (0..BODY).map(|i| (i * 31 % 251) as u8).collect();
    let mut g = c.benchmark_group("16 MiB body");
    g.throughput(Throughput::Bytes(BODY as u64))
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    g.bench_function("md5+blake3", |b| b.iter(|| pass(&body, None)));
    for a in Algorithm::ALL {
        g.bench_function(format!("md5+blake3+{}", a.name()), |b| {
            b.iter(|| pass(&body, Some(a)))
        });
    }
    g.finish();
}

criterion_group!(benches, digests);
criterion_main!(benches);
