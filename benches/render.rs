//! Rendering `/metrics` at 1k, 10k and 100k series (sample lines without the exporter's own
//! metrics), after a few cycles of the synthetic fleet:
//!
//! - `encode_cold`: `Exposition::encode` of a snapshot never rendered before (the first
//!   scrape after a cycle): writes the snapshot's text, keeps it, merges the self-metrics in;
//! - `encode_cached`: `Exposition::encode` again (every later scrape of that snapshot);
//! - `encode_protobuf`: the `prometheus` crate all the way, `TextEncoder` over
//!   `Exposition::gather()` (protobuf families built from the snapshot on every scrape);
//! - `encode_prebuilt`: `TextEncoder` over protobuf families built once beforehand: what a
//!   scrape would cost if each cycle built the crate's families and scrapes only encoded.
//!
//!     cargo bench --bench render

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prometheus::{Encoder, TextEncoder};
use support::{PERIOD, World};

fn render(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("render");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for size in support::SIZES {
        group.sample_size(if size >= 100_000 { 10 } else { 30 });
        let apis = support::apis_for(size);
        let mut world = World::new(apis);
        for _ in 0..5 {
            rt.block_on(world.poller.cycle());
            world.clock.advance(PERIOD);
        }
        let text = world.exposition.encode().expect("encode");
        let series = support::count_series(std::str::from_utf8(&text).expect("utf-8"));
        assert_eq!(series, support::series_of(apis));
        let snapshot = world.shared.load();
        group.throughput(Throughput::Elements(series as u64));
        group.bench_function(BenchmarkId::new("encode_cold", series), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    // A fresh, never rendered snapshot, as after a cycle (outside the timing).
                    world.shared.store((*snapshot).clone());
                    let t = Instant::now();
                    black_box(world.exposition.encode().expect("encode"));
                    spent += t.elapsed();
                }
                spent
            })
        });
        group.bench_function(BenchmarkId::new("encode_cached", series), |b| {
            b.iter(|| black_box(world.exposition.encode().expect("encode")))
        });
        group.bench_function(BenchmarkId::new("encode_protobuf", series), |b| {
            b.iter(|| {
                let mut buf = Vec::with_capacity(64 * 1024);
                TextEncoder::new()
                    .encode(&world.exposition.gather(), &mut buf)
                    .expect("encode");
                black_box(buf)
            })
        });
        let prebuilt = world.exposition.gather();
        group.bench_function(BenchmarkId::new("encode_prebuilt", series), |b| {
            b.iter(|| {
                let mut buf = Vec::with_capacity(64 * 1024);
                TextEncoder::new()
                    .encode(&prebuilt, &mut buf)
                    .expect("encode");
                black_box(buf)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
