//! Ring benchmarks: lookup latency and rebalance time at production sizes.
//!
//! Run: `cargo bench --bench ring` (figures in README). Sizes follow issue 2:
//! part power 18 with 100 devices in 5 zones, part power 20 with 1000 devices
//! in 10 zones, and an incremental rebalance adding 10 devices to the latter.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ring_tools::builder::NewDevice;
use ring_tools::{HashSecret, RebalanceOptions, RingBuilder};
use std::hint::black_box;
use std::time::Duration;

const NOW: u32 = 30_000_000;

/// `devices` devices spread over `zones` zones, 10 devices per host.
fn builder(part_power: u32, devices: u32, zones: u32) -> RingBuilder {
    let secret = HashSecret::new("bench-prefix", "bench-suffix").unwrap();
    let mut b = RingBuilder::new(part_power, 3, 1, secret).unwrap();
    for i in 0..devices {
        b.add_device(new_device(i, zones)).unwrap();
    }
    b
}

fn new_device(i: u32, zones: u32) -> NewDevice {
    let zone = 1 + i % zones;
    let host = i / (zones * 10);
    NewDevice {
        region: 1,
        zone,
        ip: format!("10.0.{zone}.{host}"),
        port: 6200,
        device: format!("sd{i}"),
        weight: 100.0 + (i % 3) as f64 * 50.0,
        meta: String::new(),
    }
}

fn opts() -> RebalanceOptions {
    RebalanceOptions {
        seed: 7,
        now_minutes: NOW,
    }
}

fn lookup(c: &mut Criterion) {
    let mut b = builder(18, 100, 5);
    b.rebalance(opts()).unwrap();
    let ring = b.build_ring().unwrap();
    let names: Vec<String> = (0..1024)
        .map(|i| format!("photos/2026/11/img_{i:06}.jpg"))
        .collect();
    let mut i = 0;
    c.bench_function("ring/lookup object -> partition + 3 primaries", |bench| {
        bench.iter(|| {
            i = (i + 1) & 1023;
            let (_, part) = ring.locate(&["AUTH_test", "media", &names[i]]);
            let mut ids = [0u16; 3];
            for (slot, d) in ids.iter_mut().zip(ring.primaries(part)) {
                *slot = d.id;
            }
            black_box(ids)
        })
    });
    c.bench_function("ring/first handoff", |bench| {
        bench.iter(|| {
            i = (i + 1) & 1023;
            black_box(ring.handoffs(i as u32).next().map(|d| d.id))
        })
    });
}

fn rebalance(c: &mut Criterion) {
    let mut g = c.benchmark_group("rebalance");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    let small = builder(18, 100, 5);
    g.bench_function(
        "from scratch: part power 18, 100 devices, 5 zones",
        |bench| {
            bench.iter_batched(
                || small.clone(),
                |mut b| black_box(b.rebalance(opts()).unwrap()),
                BatchSize::PerIteration,
            )
        },
    );
    let large = builder(20, 1000, 10);
    g.bench_function(
        "from scratch: part power 20, 1000 devices, 10 zones",
        |bench| {
            bench.iter_batched(
                || large.clone(),
                |mut b| black_box(b.rebalance(opts()).unwrap()),
                BatchSize::PerIteration,
            )
        },
    );
    let mut balanced = large.clone();
    balanced.rebalance(opts()).unwrap();
    for i in 1000..1010 {
        balanced.add_device(new_device(i, 10)).unwrap();
    }
    g.bench_function("add 10 devices to part power 20, 1000 devices", |bench| {
        bench.iter_batched(
            || balanced.clone(),
            |mut b| {
                let later = RebalanceOptions {
                    now_minutes: NOW + 120,
                    ..opts()
                };
                black_box(b.rebalance(later).unwrap())
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, lookup, rebalance);
criterion_main!(benches);
