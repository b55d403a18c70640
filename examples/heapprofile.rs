//! Heap profile of the pipeline at a fleet size, with `dhat`:
//! `cargo run --release --example heapprofile -- [series] [out.json]` (100,000 and
//! `dhat-heap.json` by default), then `python3 scripts/heap_owners.py dhat-heap.json`.
//!
//! The pipeline as `app::run` wires it (discovery, plan, store, snapshot, the exposition and
//! its kept text) over the synthetic fleet and source of the benchmarks
//! (`benches/support`), run until the lookback window is full (twelve cycles a period apart)
//! and scraped once, so that the snapshot's text is kept as in a running exporter. What is
//! live when the profile ends is the steady state. The AWS SDK, its HTTP stack and the
//! runtime are not in it: `procbench` measures the whole process.

#[path = "../benches/support/mod.rs"]
mod support;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let series: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let out = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "dhat-heap.json".into());
    let profiler = dhat::Profiler::builder().file_name(&out).build();
    let rt = support::runtime();
    let mut world = support::World::new(support::apis_for(series));
    for result in rt.block_on(world.poller.refresh_all()) {
        result.expect("discovery");
    }
    for _ in 0..12 {
        world.clock.advance(support::PERIOD);
        rt.block_on(world.poller.cycle());
    }
    let text = world.exposition.encode().expect("render");
    let exported = support::count_series(&String::from_utf8_lossy(&text));
    drop(text);
    let stats = dhat::HeapStats::get();
    println!(
        "{exported} series: {:.1} MB live ({} blocks), peak {:.1} MB; {:.0} bytes live per series",
        stats.curr_bytes as f64 / 1e6,
        stats.curr_blocks,
        stats.max_bytes as f64 / 1e6,
        stats.curr_bytes as f64 / exported as f64
    );
    // The profile is written while the pipeline is still alive: its end is the steady state.
    drop(profiler);
    drop(world);
}
