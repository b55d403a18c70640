//! Load harness: runs the exporter's pipeline over a synthetic fleet at several sizes and
//! prints what it costs, as a Markdown table (the one in `docs/performance.md`).
//!
//!     cargo run --release --example loadtest
//!     cargo run --release --example loadtest -- --sizes 1000,10000 --clients 8 --requests 400
//!
//! Each size runs in a child process of its own, so that its peak RSS is its own. A child:
//!
//! 1. builds the pipeline as `app::run` wires it (an `Exposition` of the self-metrics'
//!    registry and the shared snapshot; a poller with one target) over `support`'s fleet: APIs
//!    alternately HTTP and REST, two stages each, a synthetic source answering every query
//!    with a point for every period of the 10-minute window;
//! 2. runs the first cycle (discovery and baseline; wall time), then cycles back to back on a
//!    current-thread runtime for at least `--cycle-secs` and 10 cycles, the clock one period
//!    further each time, and reads the thread's CPU time before and after
//!    (`/proc/thread-self/schedstat`); then times the source alone over the same batches;
//!    the exporter's CPU per cycle is the difference;
//! 3. renders `/metrics` after each of `--renders` further cycles: once cold (a snapshot
//!    never rendered) and three times cached, and once through the protobuf path, checking
//!    that both give the same bytes;
//! 4. reads VmRSS (steady) and VmHWM (peak) from `/proc/self/status`;
//! 5. serves `/metrics` with `http::serve` on 127.0.0.1:0 (a 2-worker runtime, as the
//!    binary's on this machine) while the parent process scrapes it from `--clients`
//!    keep-alive connections, `--requests` requests or `--scrape-secs` seconds at most, first
//!    with the poll loop idle, then with cycles running back to back on another thread;
//!    latency is from writing the request to the last byte of the body. The clients live in
//!    the parent so that the child's RSS and CPU are the exporter's alone (both processes
//!    share the machine's two cores).
//!
//! Series are the sample lines of the exposition without the exporter's own
//! `aws_apigateway_exporter_*` lines (what Prometheus stores); see `benches/support`.
//! Only loopback traffic; every loop is bounded in count and time.

#[path = "../benches/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader as StdBufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apigateway_exporter::http::{self, AppState};
use apigateway_exporter::render;
use prometheus::{Encoder, TextEncoder};
use support::{PERIOD, World, ms, percentile};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
struct Options {
    sizes: Vec<usize>,
    clients: usize,
    requests: usize,
    scrape_secs: f64,
    cycle_secs: f64,
    renders: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sizes: support::SIZES.to_vec(),
            clients: 8,
            requests: 400,
            scrape_secs: 20.0,
            cycle_secs: 3.0,
            renders: 10,
        }
    }
}

fn parse_args() -> (Options, Option<usize>) {
    let mut o = Options::default();
    let mut child = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        let number = |v: String| -> f64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("not a number: {v}")))
        };
        match arg.as_str() {
            "--sizes" => {
                o.sizes = value()
                    .split(',')
                    .map(|s| number(s.to_string()) as usize)
                    .collect()
            }
            "--clients" => o.clients = number(value()) as usize,
            "--requests" => o.requests = number(value()) as usize,
            "--scrape-secs" => o.scrape_secs = number(value()),
            "--cycle-secs" => o.cycle_secs = number(value()),
            "--renders" => o.renders = number(value()) as usize,
            "--child" => child = Some(number(value()) as usize),
            "-h" | "--help" => usage(""),
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    o.clients = o.clients.clamp(1, 64);
    o.requests = o.requests.clamp(1, 100_000);
    o.scrape_secs = o.scrape_secs.clamp(0.1, 120.0);
    o.cycle_secs = o.cycle_secs.clamp(0.0, 120.0);
    o.renders = o.renders.clamp(1, 1000);
    (o, child)
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: loadtest [--sizes 1000,10000,100000] [--clients 8] [--requests 400] \
         [--scrape-secs 20] [--cycle-secs 3] [--renders 10]"
    );
    std::process::exit(2)
}

fn main() {
    let (options, child) = parse_args();
    match child {
        Some(size) => measure(size, &options),
        None => parent(&options),
    }
}

// ---------------------------------------------------------------------------------------
// Measurements from /proc
// ---------------------------------------------------------------------------------------

/// CPU time of the calling thread, in nanoseconds: the first field of
/// `/proc/thread-self/schedstat` (time on CPU, user and system).
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat (Linux with schedstats)");
    let ns: u64 = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat format");
    Duration::from_nanos(ns)
}

/// A `/proc/self/status` field in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

// ---------------------------------------------------------------------------------------
// One size (child process)
// ---------------------------------------------------------------------------------------

fn measure(size: usize, o: &Options) {
    let mut out: BTreeMap<&str, String> = BTreeMap::new();
    let rss_start = status_bytes("VmRSS");
    let apis = support::apis_for(size);
    let rt = support::runtime();
    let mut world = World::new(apis);

    // First cycle: discovery, plan, baseline read.
    // (One cycle is too short for the tick-granular CPU clock: wall time, on an idle thread.)
    let t0 = Instant::now();
    let report = rt.block_on(world.poller.cycle());
    let first_cycle = t0.elapsed();
    assert!(report.complete(), "first cycle: {report:?}");
    world.clock.advance(PERIOD);
    let plan = world.poller.targets()[0].plan();
    out.insert("queries", plan.queries.len().to_string());
    out.insert("calls", plan.calls().to_string());
    out.insert("apis", apis.to_string());
    out.insert("first_cycle_wall_ms", format!("{:.2}", ms(first_cycle)));
    // One more cycle: from here on, every cycle tops counters up.
    rt.block_on(world.poller.cycle());
    world.clock.advance(PERIOD);

    // Steady cycles, back to back.
    let mut walls = Vec::new();
    let (t0, c0) = (Instant::now(), thread_cpu());
    while walls.len() < 10 || (t0.elapsed().as_secs_f64() < o.cycle_secs && walls.len() < 2000) {
        let t = Instant::now();
        let report = rt.block_on(world.poller.cycle());
        walls.push(t.elapsed());
        assert!(report.complete(), "cycle: {report:?}");
        world.clock.advance(PERIOD);
    }
    let cycles = walls.len();
    let cycle_cpu = (thread_cpu() - c0) / cycles as u32;
    let cycle_wall_total = t0.elapsed();
    // The source's share: the same answers, alone.
    let (t0, c0) = (Instant::now(), thread_cpu());
    let mut source_runs = 0;
    while source_runs < cycles.min(50)
        || (t0.elapsed().as_secs_f64() < o.cycle_secs / 4.0 && source_runs < 2000)
    {
        std::hint::black_box(world.answer_all());
        source_runs += 1;
    }
    let source_cpu = (thread_cpu() - c0) / source_runs as u32;
    walls.sort();
    out.insert("cycles", cycles.to_string());
    out.insert("cycle_cpu_ms", format!("{:.2}", ms(cycle_cpu)));
    out.insert("source_cpu_ms", format!("{:.2}", ms(source_cpu)));
    out.insert(
        "exporter_cpu_ms",
        format!("{:.2}", ms(cycle_cpu.saturating_sub(source_cpu))),
    );
    out.insert(
        "cycle_wall_p50_ms",
        format!("{:.2}", ms(percentile(&walls, 0.5))),
    );
    out.insert(
        "cycle_wall_max_ms",
        format!("{:.2}", ms(percentile(&walls, 1.0))),
    );
    out.insert(
        "cycle_wall_mean_ms",
        format!("{:.2}", ms(cycle_wall_total / cycles as u32)),
    );

    // Renders: cold (first scrape of a new snapshot), cached, and the protobuf path.
    let (mut cold, mut cached, mut protobuf) = (Vec::new(), Vec::new(), Vec::new());
    let mut body_len = 0;
    let mut series = 0;
    for round in 0..o.renders {
        rt.block_on(world.poller.cycle());
        world.clock.advance(PERIOD);
        let t = Instant::now();
        let body = world.exposition.encode().expect("encode");
        cold.push(t.elapsed());
        for _ in 0..3 {
            let t = Instant::now();
            std::hint::black_box(world.exposition.encode().expect("encode"));
            cached.push(t.elapsed());
        }
        let t = Instant::now();
        let mut general = Vec::with_capacity(64 * 1024);
        TextEncoder::new()
            .encode(&world.exposition.gather(), &mut general)
            .expect("encode");
        protobuf.push(t.elapsed());
        if round == 0 {
            assert!(
                body == general,
                "the cached text differs from TextEncoder's"
            );
            let text = std::str::from_utf8(&body).expect("utf-8");
            series = support::count_series(text);
            assert_eq!(series, support::series_of(apis), "series count");
            body_len = body.len();
        }
    }
    for v in [&mut cold, &mut cached, &mut protobuf] {
        v.sort();
    }
    let snapshot = world.shared.load();
    let own_text = render::encode_families(&snapshot.families).text.len();
    out.insert("series", series.to_string());
    out.insert("snapshot_samples", snapshot.series().to_string());
    out.insert("body_bytes", body_len.to_string());
    out.insert(
        "exposition_bytes_per_series",
        format!("{:.0}", own_text as f64 / series as f64),
    );
    out.insert(
        "render_cold_ms",
        format!("{:.2}", ms(percentile(&cold, 0.5))),
    );
    out.insert(
        "render_cold_max_ms",
        format!("{:.2}", ms(percentile(&cold, 1.0))),
    );
    out.insert(
        "render_cached_ms",
        format!("{:.3}", ms(percentile(&cached, 0.5))),
    );
    out.insert(
        "render_protobuf_ms",
        format!("{:.2}", ms(percentile(&protobuf, 0.5))),
    );
    drop(snapshot);

    let rss_steady = status_bytes("VmRSS");
    out.insert(
        "rss_start_mb",
        format!("{:.1}", rss_start as f64 / 1048576.0),
    );
    out.insert(
        "rss_steady_mb",
        format!("{:.1}", rss_steady as f64 / 1048576.0),
    );
    out.insert(
        "hwm_before_scrapes_mb",
        format!("{:.1}", status_bytes("VmHWM") as f64 / 1048576.0),
    );
    out.insert(
        "memory_bytes_per_series",
        format!(
            "{:.0}",
            rss_steady.saturating_sub(rss_start) as f64 / series as f64
        ),
    );

    // Concurrent scrapes over loopback. The clients run in the parent process, so that this
    // process's memory and CPU are the exporter's alone; it serves, and says when.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("server runtime");
    let listener = server
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let state = Arc::new(AppState {
        exposition: Arc::clone(&world.exposition),
        shared: Arc::clone(&world.shared),
        demo: false,
        reload: None,
        lifecycle: false,
        web: None,
    });
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    server.spawn(http::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let mut stdin = std::io::stdin().lines();
    let mut told = |expected: &str| -> usize {
        let line = stdin
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("the parent went away before `{expected}`"));
        line.strip_prefix(expected)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("expected `{expected} N`, got `{line}`"))
    };
    let cpu0 = process_cpu();
    println!("LISTEN {addr}");
    let requests = told("idle");
    let served_cpu = process_cpu().saturating_sub(cpu0);
    out.insert(
        "scrape_idle_server_cpu_ms",
        format!("{:.2}", ms(served_cpu) / requests.max(1) as f64),
    );

    // The same while the poll loop runs cycles back to back on its own thread.
    let running = Arc::new(AtomicBool::new(true));
    let World {
        mut poller, clock, ..
    } = world;
    let cycling = {
        let running = Arc::clone(&running);
        std::thread::spawn(move || {
            let rt = support::runtime();
            let mut n = 0;
            while running.load(Ordering::Relaxed) && n < 10_000 {
                rt.block_on(poller.cycle());
                clock.advance(PERIOD);
                n += 1;
            }
            n
        })
    };
    println!("CYCLING");
    told("busy");
    running.store(false, Ordering::Relaxed);
    let cycles_during = cycling.join().expect("poll thread");
    let _ = stop_server.send(());
    drop(server);
    out.insert("scrape_busy_cycles", cycles_during.to_string());
    out.insert(
        "rss_peak_mb",
        format!("{:.1}", status_bytes("VmHWM") as f64 / 1048576.0),
    );
    out.insert(
        "rss_end_mb",
        format!("{:.1}", status_bytes("VmRSS") as f64 / 1048576.0),
    );

    let line: Vec<String> = out.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("RESULT size={size} {}", line.join(" "));
}

/// CPU time of the whole process (user and system, every thread), from `/proc/self/stat`;
/// in clock ticks of 10 ms, so only meaningful over many requests.
fn process_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &text[text.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<u64>().expect("stat field");
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// `o.clients` keep-alive connections scraping `/metrics` until `o.requests` responses or
/// `o.scrape_secs`; the sorted latencies.
fn scrape_load(
    rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    o: &Options,
) -> Vec<Duration> {
    let started = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(o.scrape_secs);
    let mut latencies = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..o.clients {
            let started = Arc::clone(&started);
            let requests = o.requests;
            tasks.push(tokio::spawn(async move {
                let stream = TcpStream::connect(addr)
                    .await
                    .expect("connect to the exporter");
                stream.set_nodelay(true).expect("nodelay");
                let mut conn = BufReader::with_capacity(256 * 1024, stream);
                let mut body = Vec::new();
                let mut latencies = Vec::new();
                while Instant::now() < deadline
                    && started.fetch_add(1, Ordering::Relaxed) < requests
                {
                    let t = Instant::now();
                    scrape(&mut conn, &mut body).await.expect("scrape");
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("client task"));
        }
        all
    });
    latencies.sort();
    latencies
}

/// One `GET /metrics` on a keep-alive connection; the body lands in `body`.
async fn scrape(conn: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> std::io::Result<()> {
    conn.get_mut()
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut line = String::new();
    let mut length = None;
    let mut status_line = true;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        if status_line {
            if !line.starts_with("HTTP/1.1 200") {
                return Err(std::io::Error::other(format!("unexpected status: {line}")));
            }
            status_line = false;
            continue;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("no content-length"))?;
    body.resize(length, 0);
    conn.read_exact(body).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The table (parent process)
// ---------------------------------------------------------------------------------------

fn parent(o: &Options) {
    let exe = std::env::current_exe().expect("current executable");
    // The load generator: one thread, apart from the measured process.
    let rt = support::runtime();
    let mut rows = Vec::new();
    for &size in &o.sizes {
        eprintln!("loadtest: {size} series ...");
        let mut child = Command::new(&exe)
            .args(["--child", &size.to_string()])
            .args(["--cycle-secs", &o.cycle_secs.to_string()])
            .args(["--renders", &o.renders.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run a child");
        let mut to_child = child.stdin.take().expect("child stdin");
        let mut from_child = StdBufReader::new(child.stdout.take().expect("child stdout")).lines();
        let mut wait_for = |prefix: &str| -> String {
            for line in from_child.by_ref() {
                let line = line.expect("child output");
                if let Some(rest) = line.strip_prefix(prefix) {
                    return rest.trim().to_string();
                }
                println!("{line}");
            }
            eprintln!("loadtest: the child for {size} series ended before `{prefix}`");
            std::process::exit(1);
        };
        let addr: std::net::SocketAddr = wait_for("LISTEN").parse().expect("address");
        let idle = scrape_load(&rt, addr, o);
        writeln!(to_child, "idle {}", idle.len()).expect("tell the child");
        wait_for("CYCLING");
        let busy = scrape_load(&rt, addr, o);
        writeln!(to_child, "busy {}", busy.len()).expect("tell the child");
        let line = wait_for("RESULT");
        let _ = child.wait();
        let mut row: BTreeMap<String, String> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (name, lat) in [("idle", &idle), ("busy", &busy)] {
            row.insert(format!("scrape_{name}_requests"), lat.len().to_string());
            for (p, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
                row.insert(
                    format!("scrape_{name}_{p}_ms"),
                    format!("{:.2}", ms(percentile(lat, q))),
                );
            }
        }
        let all: Vec<String> = row.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("RESULT {}", all.join(" "));
        rows.push(row);
    }
    let get = |r: &BTreeMap<String, String>, k: &str| r.get(k).cloned().unwrap_or_default();
    println!();
    println!(
        "clients: {} keep-alive connections; per scenario {} requests or {} s, whichever first",
        o.clients, o.requests, o.scrape_secs
    );
    println!();
    println!(
        "| series | APIs | queries (calls) / cycle | cycle CPU ms: exporter (+ source) | first cycle wall ms | render cold ms | render cached ms | render protobuf ms | scrape p50 / p99 ms, idle | scrape p50 / p99 ms, during cycles | server CPU ms / scrape | RSS steady MB | RSS peak MB | memory B/series | exposition B/series |"
    );
    println!("|---:|---:|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} ({}) | {} (+{}) | {} | {} | {} | {} | {} / {} | {} / {} | {} | {} | {} | {} | {} |",
            get(r, "series"),
            get(r, "apis"),
            get(r, "queries"),
            get(r, "calls"),
            get(r, "exporter_cpu_ms"),
            get(r, "source_cpu_ms"),
            get(r, "first_cycle_wall_ms"),
            get(r, "render_cold_ms"),
            get(r, "render_cached_ms"),
            get(r, "render_protobuf_ms"),
            get(r, "scrape_idle_p50_ms"),
            get(r, "scrape_idle_p99_ms"),
            get(r, "scrape_busy_p50_ms"),
            get(r, "scrape_busy_p99_ms"),
            get(r, "scrape_idle_server_cpu_ms"),
            get(r, "rss_steady_mb"),
            get(r, "rss_peak_mb"),
            get(r, "memory_bytes_per_series"),
            get(r, "exposition_bytes_per_series"),
        );
    }
}
