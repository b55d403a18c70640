//! The demo: the real binary serves every family of the contract, promtool-clean, labelled
//! as demo data; and over a simulated hour the incident schedule produces the shapes the
//! alert rules are meant to catch.

mod common;

use std::sync::Arc;
use std::time::Duration;

use apigateway_exporter::app;
use apigateway_exporter::config::{AccessLogsMode, Config};
use apigateway_exporter::demo::{self, INCIDENT_CYCLE};
use apigateway_exporter::poll::{Clock, ManualClock, Poller};
use apigateway_exporter::render::{self, SnapshotCollector};
use apigateway_exporter::selfmetrics::SelfMetrics;
use apigateway_exporter::snapshot::SharedSnapshot;
use common::{Exporter, Metrics};
use prometheus::Registry;

/// Every family the exporter serves today (METRICS.md minus the route-level families, which
/// arrive with per-route visibility). Kept equal to the README's metric list by a test below.
const FAMILIES: &[&str] = &[
    "aws_apigateway_requests_total",
    "aws_apigateway_4xx_errors_total",
    "aws_apigateway_5xx_errors_total",
    "aws_apigateway_cache_hits_total",
    "aws_apigateway_cache_misses_total",
    "aws_apigateway_processed_bytes_total",
    "aws_apigateway_websocket_connects_total",
    "aws_apigateway_websocket_messages_total",
    "aws_apigateway_websocket_client_errors_total",
    "aws_apigateway_websocket_integration_errors_total",
    "aws_apigateway_websocket_execution_errors_total",
    "aws_apigateway_throttled_requests_total",
    "aws_apigateway_latency_seconds",
    "aws_apigateway_latency_seconds_sum",
    "aws_apigateway_latency_seconds_count",
    "aws_apigateway_latency_max_seconds",
    "aws_apigateway_integration_latency_seconds",
    "aws_apigateway_integration_latency_seconds_sum",
    "aws_apigateway_integration_latency_seconds_count",
    "aws_apigateway_integration_latency_max_seconds",
    "aws_apigateway_api_info",
    "aws_apigateway_stage_info",
    "aws_apigateway_throttle_rate_limit",
    "aws_apigateway_throttle_burst_limit",
    "aws_apigateway_integration_timeout_seconds",
    "aws_apigateway_exporter_build_info",
    "aws_apigateway_exporter_up",
    "aws_apigateway_exporter_target_up",
    "aws_apigateway_exporter_cycle_duration_seconds_bucket",
    "aws_apigateway_exporter_last_success_timestamp_seconds",
    "aws_apigateway_exporter_data_age_seconds",
    "aws_apigateway_exporter_cloudwatch_requests_total",
    "aws_apigateway_exporter_cloudwatch_metrics_requested_total",
    "aws_apigateway_exporter_aws_requests_total",
    "aws_apigateway_exporter_query_errors_total",
    "aws_apigateway_exporter_period_value_decreases_total",
    "aws_apigateway_exporter_rest_name_conflicts",
    "aws_apigateway_exporter_series",
    "aws_apigateway_exporter_apis",
    "aws_apigateway_exporter_cycles_skipped_total",
    "aws_apigateway_exporter_config_last_reload_successful",
    "aws_apigateway_exporter_config_last_reload_success_timestamp_seconds",
    "aws_apigateway_exporter_otlp_exports_total",
];

/// Families that exist only after something happened (a discovery call, a query error).
const ON_EVENT: &[&str] = &[
    "aws_apigateway_exporter_aws_requests_total",
    "aws_apigateway_exporter_query_errors_total",
    "aws_apigateway_exporter_otlp_exports_total",
];

#[test]
fn the_demo_binary_serves_every_family_promtool_clean_and_labelled_as_demo() {
    let exporter = Exporter::start("", &["--demo", "--demo.seed=42"]);
    exporter.wait_ready(Duration::from_secs(20));
    let m = exporter.scrape();
    for family in FAMILIES.iter().filter(|f| !ON_EVENT.contains(f)) {
        assert!(
            m.samples.iter().any(|s| s.name == *family),
            "{family} missing from the demo output"
        );
    }
    for sample in &m.samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                sample
                    .name
                    .strip_suffix(s)
                    .filter(|b| FAMILIES.iter().any(|f| f.starts_with(b)))
            })
            .unwrap_or(&sample.name);
        assert!(
            FAMILIES
                .iter()
                .any(|f| *f == family || f.trim_end_matches("_bucket") == family),
            "{} is served but not in FAMILIES (and so maybe not in the README)",
            sample.name
        );
    }
    for reason in ["throttled", "quota_exceeded"] {
        assert!(
            !m.find(
                "aws_apigateway_throttled_requests_total",
                &[("reason", reason)]
            )
            .is_empty()
        );
    }
    assert_eq!(
        m.value("aws_apigateway_exporter_build_info", &[("demo", "true")]),
        Some(1.0),
        "demo data is labelled"
    );
    assert_eq!(
        m.value(
            "aws_apigateway_throttle_rate_limit",
            &[("scope", "account")]
        ),
        Some(10_000.0)
    );
    assert_eq!(
        m.value(
            "aws_apigateway_integration_timeout_seconds",
            &[("api_name", "catalog"), ("resource", "/items")]
        ),
        Some(60.0)
    );
    let (status, landing) = exporter.get("/").unwrap();
    assert_eq!(status, 200);
    assert!(landing.contains("DEMO MODE"), "{landing}");
    let complaints = common::promtool_check_metrics(&m.text);
    assert!(
        complaints.is_empty(),
        "promtool check metrics:\n{complaints}"
    );
}

#[test]
fn the_readme_lists_exactly_the_families_served() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Metrics")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a ## Metrics section");
    let mut listed: Vec<String> = Vec::new();
    for word in section.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("aws_apigateway_") && !listed.iter().any(|w| w == word) {
            listed.push(word.to_string());
        }
    }
    for family in FAMILIES {
        let base = family.trim_end_matches("_bucket");
        assert!(
            listed.iter().any(|w| w == base)
                || (base.ends_with("_sum") || base.ends_with("_count")),
            "{base} is served but not in the README's metric list"
        );
    }
    for word in &listed {
        let served = FAMILIES
            .iter()
            .any(|f| f == word || f.trim_end_matches("_bucket") == word);
        assert!(
            served,
            "the README lists {word}, which the exporter does not serve"
        );
    }
}

struct Sim {
    poller: Poller,
    registry: Registry,
    clock: Arc<ManualClock>,
}

fn simulation(seed: u64, start: i64) -> Sim {
    let mut config = Config::default();
    config.poll.settle = Duration::from_secs(180);
    config.access_logs.mode = AccessLogsMode::MetricFilter;
    let registry = Registry::new();
    let shared = SharedSnapshot::new();
    let metrics = SelfMetrics::new(&registry, true).unwrap();
    registry
        .register(Box::new(
            SnapshotCollector::new(Arc::clone(&shared)).unwrap(),
        ))
        .unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let targets = demo::targets(&config, seed, clock.clone());
    let poller = Poller::new(
        targets,
        app::settings(&config),
        clock.clone(),
        shared,
        metrics,
    );
    Sim {
        poller,
        registry,
        clock,
    }
}

impl Sim {
    fn scrape(&self) -> Metrics {
        Metrics::parse(&String::from_utf8(render::encode(&self.registry).unwrap()).unwrap())
    }
}

fn value(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.value(name, labels)
        .unwrap_or_else(|| panic!("{name} {labels:?} missing"))
}

#[tokio::test]
async fn over_a_simulated_hour_the_incidents_fire_and_resolve() {
    // Start at a cycle boundary, 30 s into the minute, at the daily traffic peak.
    let start = 1_795_392_000 + 16 * 3600 - (1_795_392_000 + 16 * 3600) % INCIDENT_CYCLE + 30;
    let mut sim = simulation(3, start);
    sim.poller.cycle().await;
    let mut previous = sim.scrape();
    let payments = [("api_name", "payments"), ("stage", "prod")];
    let orders = [("api_name", "orders"), ("stage", "$default")];
    let chat = [("api_name", "chat"), ("stage", "production")];
    let reports = [("api_name", "reports"), ("stage", "prod")];
    let (mut burst_ratios, mut quiet_ratios) = (Vec::new(), Vec::new());
    let mut throttled_in_episode = 0.0;
    let mut throttled_outside = 0.0;
    let mut ws_error_ratio_peak: f64 = 0.0;
    let mut p99_peak: f64 = 0.0;
    let mut p99_quiet_max: f64 = 0.0;
    for _ in 0..60 {
        sim.clock.advance(60);
        sim.poller.cycle().await;
        let now = sim.scrape();
        // The minute of the incident schedule this cycle's counts came from: counts of a
        // period arrive over the two minutes after its start, so a cycle at minute m adds
        // counts of periods m-2 .. m.
        let minute = (sim.clock.now() % INCIDENT_CYCLE) / 60;
        let delta = |name: &str, labels: &[(&str, &str)]| {
            value(&now, name, labels) - value(&previous, name, labels)
        };
        let ratio = delta("aws_apigateway_5xx_errors_total", &payments)
            / delta("aws_apigateway_requests_total", &payments);
        if (4..=6).contains(&minute) {
            burst_ratios.push(ratio);
        } else if (10..=19).contains(&minute) {
            quiet_ratios.push(ratio);
        }
        let throttled = delta(
            "aws_apigateway_throttled_requests_total",
            &[orders[0], orders[1], ("reason", "throttled")],
        );
        if (10..=11).contains(&minute) {
            throttled_in_episode += throttled;
        } else if !(8..=14).contains(&minute) {
            throttled_outside += throttled;
        }
        if minute == 17 {
            let errors = delta("aws_apigateway_websocket_integration_errors_total", &chat);
            let messages = delta("aws_apigateway_websocket_messages_total", &chat);
            ws_error_ratio_peak = ws_error_ratio_peak.max(errors / messages);
        }
        // Quantile gauges report the latest settled period (three minutes ago).
        let p99 = now.value(
            "aws_apigateway_integration_latency_seconds",
            &[reports[0], reports[1], ("quantile", "0.99")],
        );
        let settled_minute = (minute - 4).rem_euclid(20);
        if let Some(p99) = p99 {
            if (12..18).contains(&settled_minute) {
                p99_peak = p99_peak.max(p99);
            } else {
                p99_quiet_max = p99_quiet_max.max(p99);
            }
        }
        previous = now;
    }
    assert_eq!(
        burst_ratios.len(),
        9,
        "three bursts of three core minutes in an hour"
    );
    assert!(
        burst_ratios.iter().all(|r| *r > 0.05),
        "5XX ratio during bursts: {burst_ratios:?}"
    );
    assert!(
        quiet_ratios.iter().all(|r| *r < 0.01),
        "5XX ratio outside: {quiet_ratios:?}"
    );
    assert!(
        throttled_in_episode > 1000.0,
        "429s during the throttling episode: {throttled_in_episode}"
    );
    assert_eq!(throttled_outside, 0.0);
    assert!(
        ws_error_ratio_peak > 0.1,
        "WebSocket integration error ratio: {ws_error_ratio_peak}"
    );
    assert!(
        p99_peak > 0.8 * 29.0 && p99_peak < 29.0,
        "integration p99 peak {p99_peak} s"
    );
    assert!(
        p99_quiet_max < 5.0,
        "integration p99 outside the incident: {p99_quiet_max} s"
    );
}

#[tokio::test]
async fn the_same_seed_gives_the_same_data() {
    let api_lines = |m: &Metrics| -> Vec<String> {
        m.text
            .lines()
            .filter(|l| {
                l.starts_with("aws_apigateway_") && !l.starts_with("aws_apigateway_exporter_")
            })
            .map(str::to_string)
            .collect()
    };
    let mut runs = Vec::new();
    for seed in [9, 9, 10] {
        let mut sim = simulation(seed, 1_795_428_030);
        for _ in 0..3 {
            sim.poller.cycle().await;
            sim.clock.advance(60);
        }
        runs.push(api_lines(&sim.scrape()));
    }
    assert_eq!(runs[0], runs[1]);
    assert_ne!(runs[0], runs[2]);
}
