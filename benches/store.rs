//! The store at 1k, 10k and 100k series: one cycle's ingest (every query of the plan, a
//! point for every period of the 10-minute window, counters topped up), the retain of live
//! series, and building the snapshot from the store. The source's answers are made outside
//! the timed part. Series are counted as in `support` (sample lines of `/metrics`).
//!
//!     cargo bench --bench store

mod support;

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apigateway_exporter::inventory::TargetInventory;
use apigateway_exporter::plan::Query;
use apigateway_exporter::snapshot;
use apigateway_exporter::source::{Outcome, Window};
use apigateway_exporter::store::{SeriesKey, Store};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use support::{PERIOD, World};

fn key(q: &Query) -> SeriesKey {
    SeriesKey {
        family: q.family,
        labels: Arc::clone(&q.labels),
    }
}

fn ingest(
    store: &mut Store,
    queries: &[Query],
    keys: &[SeriesKey],
    window: &Window,
    answers: &[Outcome],
) {
    for ((q, key), outcome) in queries.iter().zip(keys).zip(answers) {
        if let Outcome::Points(points) = outcome {
            black_box(store.ingest(key, q.stat, window, points));
        }
    }
}

fn store(c: &mut Criterion) {
    let rt = support::runtime();
    let mut group = c.benchmark_group("store");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for size in support::SIZES {
        group.sample_size(if size >= 100_000 { 10 } else { 30 });
        let apis = support::apis_for(size);
        let series = support::series_of(apis);
        let mut world = World::new(apis);
        rt.block_on(world.poller.refresh_all());
        let queries: Vec<Query> = world.poller.targets()[0].plan().queries.clone();
        let keys: Vec<SeriesKey> = queries.iter().map(key).collect();
        let inventories: Vec<TargetInventory> = world
            .poller
            .targets()
            .iter()
            .filter_map(|t| t.inventory().cloned())
            .collect();
        let mut store = Store::new();
        let mut now = support::START;
        let next_answers = |now: i64| {
            let window = Window::at(now, PERIOD, support::LOOKBACK);
            (window, world.source.answer(&queries, window, now))
        };
        // Baseline and one counted cycle, so the benchmark sees the steady state.
        for _ in 0..2 {
            let (w, a) = next_answers(now);
            ingest(&mut store, &queries, &keys, &w, &a);
            now += PERIOD;
        }
        group.throughput(Throughput::Elements(series as u64));
        group.bench_function(BenchmarkId::new("ingest_cycle", series), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let (w, a) = next_answers(now);
                    now += PERIOD;
                    let t = Instant::now();
                    ingest(&mut store, &queries, &keys, &w, &a);
                    spent += t.elapsed();
                }
                spent
            })
        });
        let live: HashSet<SeriesKey> = keys.iter().cloned().collect();
        group.bench_function(BenchmarkId::new("retain_live", series), |b| {
            b.iter(|| {
                // As the poll loop does it: the live set from the plan, then the retain.
                let live: HashSet<SeriesKey> = queries.iter().map(key).collect();
                store.retain(&live);
            })
        });
        assert_eq!(store.len(), live.len());
        let settled = (now - 180).div_euclid(PERIOD) * PERIOD - PERIOD;
        group.bench_function(BenchmarkId::new("snapshot_build", series), |b| {
            let inventories: Vec<&TargetInventory> = inventories.iter().collect();
            b.iter(|| black_box(snapshot::build(&store, &inventories, settled, &[])))
        });
    }
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
