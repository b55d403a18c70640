//! A whole poll cycle against the synthetic fleet at 1k, 10k and 100k series (sample lines of
//! `/metrics` without the exporter's own metrics): read every batch, ingest, retain, build
//! and publish the snapshot. `source_only` is the synthetic source's share of it (answering
//! every batch of the plan); the exporter's own time is the difference. A cycle spawns
//! nothing, so it runs on one thread (a current-thread runtime).
//!
//!     cargo bench --bench cycle

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use support::{PERIOD, World};

fn cycle(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("cycle");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for size in support::SIZES {
        group.sample_size(if size >= 100_000 { 10 } else { 20 });
        let apis = support::apis_for(size);
        let series = support::series_of(apis);
        let mut world = World::new(apis);
        // Discovery and the baseline read, then one counted cycle: the steady state.
        for _ in 0..2 {
            rt.block_on(world.poller.cycle());
            world.clock.advance(PERIOD);
        }
        group.throughput(Throughput::Elements(series as u64));
        group.bench_function(BenchmarkId::new("full", series), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    let report = rt.block_on(world.poller.cycle());
                    assert!(report.complete());
                    world.clock.advance(PERIOD);
                }
                t.elapsed()
            })
        });
        group.bench_function(BenchmarkId::new("source_only", series), |b| {
            b.iter(|| black_box(world.answer_all()))
        });
    }
    group.finish();
}

criterion_group!(benches, cycle);
criterion_main!(benches);
