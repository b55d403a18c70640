//! A synthetic API Gateway fleet for the benchmarks and the load harness
//! (`examples/loadtest.rs`): an in-memory [`Discovery`] with `n` APIs, alternately HTTP and
//! REST with two stages each, and a [`MetricSource`] that answers every query at once with a
//! datapoint for every period of the window, counts still growing in the last two periods
//! (CloudWatch's late data), so every cycle tops counters up.
//!
//! Series, as counted everywhere here, are the sample lines of the `/metrics` exposition
//! without the exporter's own `aws_apigateway_exporter_*` metrics: what Prometheus stores. With
//! the default latency statistics (p50, p90, p99, max) and access logs off, an HTTP stage
//! exports 16 (4 counters; 2 summaries of 3 quantiles, `_sum` and `_count`; 2 max gauges) from
//! 16 CloudWatch queries, a REST stage 15 from 15, plus one `stage_info` per stage and one
//! `api_info` per API: an HTTP API 35, a REST API 33.

#![allow(dead_code)] // Each bench uses part of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apigateway_exporter::clock::ManualClock;

use apigateway_exporter::inventory::{
    ApiFilter, Discovered, Discovery, DiscoveryError, RawApi, RawStage,
};
use apigateway_exporter::model::{ApiType, Stat};
use apigateway_exporter::plan::Query;
use apigateway_exporter::poll::{PollSettings, Poller, Target};
use apigateway_exporter::render::Exposition;
use apigateway_exporter::selfmetrics::SelfMetrics;
use apigateway_exporter::snapshot::SharedSnapshot;
use apigateway_exporter::source::{MetricSource, Outcome, SourceError, Window};
use async_trait::async_trait;
use prometheus::Registry;

/// 2026-11-21T10:00:30Z: thirty seconds into a period.
pub const START: i64 = 1_795_428_030;
pub const PERIOD: i64 = 60;
pub const LOOKBACK: i64 = 600;

/// The fleet sizes of the issue, by series.
pub const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// Series an API exports (see the module doc).
pub fn series_of_api(i: usize) -> usize {
    if i.is_multiple_of(2) { 35 } else { 33 }
}

/// The number of APIs whose series come closest to `series`.
pub fn apis_for(series: usize) -> usize {
    let (mut n, mut total) = (0, 0);
    while total + series_of_api(n) / 2 < series {
        total += series_of_api(n);
        n += 1;
    }
    n.max(1)
}

/// Series `n` APIs export.
pub fn series_of(n: usize) -> usize {
    (0..n).map(series_of_api).sum()
}

/// `n` APIs, alternately HTTP and REST, with the stages `prod` and `staging`.
pub fn fleet(n: usize) -> Vec<RawApi> {
    (0..n)
        .map(|i| {
            let api_type = if i % 2 == 0 {
                ApiType::Http
            } else {
                ApiType::Rest
            };
            RawApi {
                id: format!("{i:010x}"),
                name: format!("service-{i}"),
                api_type,
                endpoint_type: "REGIONAL".into(),
                tags: BTreeMap::new(),
                stages: Some(
                    ["prod", "staging"]
                        .iter()
                        .map(|s| RawStage {
                            name: s.to_string(),
                            deployment_id: None,
                            detailed_metrics: false,
                            cache_enabled: false,
                            throttle: None,
                            route_throttles: vec![],
                            access_log_group: None,
                            access_log_stream: None,
                            access_log_format: None,
                            canary: None,
                            routes: vec![],
                        })
                        .collect(),
                ),
                integrations: vec![],
            }
        })
        .collect()
}

/// Discovery that returns a fixed fleet.
pub struct FleetDiscovery(pub Vec<RawApi>);

#[async_trait]
impl Discovery for FleetDiscovery {
    async fn account_id(&self) -> Result<String, DiscoveryError> {
        Ok("111122223333".into())
    }
    async fn discover(&self, _: &ApiFilter) -> Result<Discovered, DiscoveryError> {
        Ok(Discovered {
            apis: self.0.clone(),
            account_throttle: None,
            usage_plans: vec![],
            linked: Vec::new(),
        })
    }
}

/// A source that computes its answers, cheaply, from the query and the period.
pub struct SyntheticSource {
    pub clock: Arc<ManualClock>,
}

/// A small deterministic spread per series, from its API id.
fn spread(q: &Query) -> f64 {
    let h = q
        .labels
        .api_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    (h % 1000) as f64
}

impl SyntheticSource {
    /// The answers to one batch, as the poll loop gets them.
    pub fn answer(&self, queries: &[Query], window: Window, now: i64) -> Vec<Outcome> {
        queries
            .iter()
            .map(|q| {
                let base = 100.0 + spread(q);
                let points = (window.start..window.end)
                    .step_by(window.period as usize)
                    .filter(|t| *t <= now)
                    .map(|t| {
                        // Counts arrive over the period and the minute after it.
                        let arrived = ((now - t) as f64 / (2 * PERIOD) as f64).clamp(0.1, 1.0);
                        let minute = ((t / PERIOD) % 7) as f64;
                        let v = match q.stat {
                            Stat::Sum | Stat::SampleCount => {
                                ((base + minute) * 10.0 * arrived).floor()
                            }
                            Stat::Maximum => base * 3.0 + minute,
                            Stat::Percentile(p) => base * f64::from(p) / 10_000.0 + minute,
                        };
                        (t, v)
                    })
                    .collect();
                Outcome::Points(points)
            })
            .collect()
    }
}

#[async_trait]
impl MetricSource for SyntheticSource {
    async fn fetch(&self, queries: &[Query], window: Window) -> Result<Vec<Outcome>, SourceError> {
        use apigateway_exporter::clock::Clock as _;
        Ok(self.answer(queries, window, self.clock.now()))
    }
}

/// Poll settings of the default config (60 s period, 10 min lookback, 3 min settle, the
/// default latency statistics, access logs off), as `app::run` makes them.
pub fn settings() -> PollSettings {
    apigateway_exporter::app::settings(&apigateway_exporter::config::Config::default())
}

/// The exporter's pipeline over a synthetic fleet of `apis` APIs, wired as `app::run` wires
/// it: the self-metrics' registry and the snapshot, behind one exposition.
pub struct World {
    pub poller: Poller,
    pub exposition: Arc<Exposition>,
    pub shared: Arc<SharedSnapshot>,
    pub clock: Arc<ManualClock>,
    pub source: Arc<SyntheticSource>,
}

impl World {
    pub fn new(apis: usize) -> World {
        let registry = Registry::new();
        let shared = SharedSnapshot::new();
        let metrics = SelfMetrics::new(&registry, false).expect("self-metrics");
        let exposition = Arc::new(Exposition::new(registry, Arc::clone(&shared)));
        let clock = Arc::new(ManualClock::new(START));
        let source = Arc::new(SyntheticSource {
            clock: Arc::clone(&clock),
        });
        let target = Target::new(
            "eu-west-1".into(),
            ApiFilter::new(&Default::default()),
            Arc::new(FleetDiscovery(fleet(apis))),
            Arc::clone(&source) as Arc<dyn MetricSource>,
        );
        let poller = Poller::new(
            vec![target],
            settings(),
            Arc::clone(&clock) as Arc<dyn apigateway_exporter::clock::Clock>,
            Arc::clone(&shared),
            metrics,
        );
        World {
            poller,
            exposition,
            shared,
            clock,
            source,
        }
    }

    /// The current cycle's window.
    pub fn window(&self) -> Window {
        use apigateway_exporter::clock::Clock as _;
        Window::at(self.clock.now(), PERIOD, LOOKBACK)
    }

    /// Only the source's share of a cycle: the answers to every batch of the plan.
    pub fn answer_all(&self) -> usize {
        use apigateway_exporter::clock::Clock as _;
        let (window, now) = (self.window(), self.clock.now());
        let mut n = 0;
        for target in self.poller.targets() {
            for batch in target.plan().batches() {
                n += std::hint::black_box(self.source.answer(batch, window, now)).len();
            }
        }
        n
    }
}

/// A current-thread runtime: a cycle spawns nothing, so all of its work runs on the thread
/// that blocks on it, and that thread's CPU time is the cycle's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Milliseconds of a duration, for tables.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `p` quantile (0–1) of sorted durations, nearest rank; zero for none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Sample lines of an exposition outside the exporter's own metrics.
pub fn count_series(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter(|l| !l.starts_with("aws_apigateway_exporter_"))
        .count()
}
