//! The demo: the real binary serves every family of the contract, promtool-clean, labelled
//! as demo data; and over a simulated hour the incident schedule produces the shapes the
//! alert rules are meant to catch.

mod common;

use std::sync::Arc;
use std::time::Duration;

use apigateway_exporter::app;
use apigateway_exporter::clock::{Clock, ManualClock};
use apigateway_exporter::config::Config;
use apigateway_exporter::contract;
use apigateway_exporter::demo::{self, INCIDENT_CYCLE};
use apigateway_exporter::poll::Poller;
use apigateway_exporter::render::Exposition;
use common::{Exporter, Metrics};

/// Families that exist only when enabled (OTLP) or while something goes wrong (an API whose
/// discovery reads fail; the demo's never do).
const ON_EVENT: &[&str] = &[
    "aws_apigateway_exporter_otlp_exports_total",
    "aws_apigateway_exporter_discovery_api_failures",
];

#[test]
fn the_demo_binary_serves_every_family_promtool_clean_and_labelled_as_demo() {
    let exporter = Exporter::start("", &["--demo", "--demo.seed=42"]);
    exporter.wait_ready(Duration::from_secs(20));
    let m = exporter.scrape();
    // Every family of the contract is served (the README is checked against the same
    // contract by tests/contract.rs), and nothing else is.
    let served: Vec<&str> = m
        .samples
        .iter()
        .map(|s| {
            contract::family_of(&s.name)
                .unwrap_or_else(|| panic!("{} is served but not in the contract", s.name))
                .name
        })
        .collect();
    for def in contract::ALL.iter().filter(|d| !ON_EVENT.contains(&d.name)) {
        assert!(
            served.contains(&def.name),
            "{} missing from the demo output",
            def.name
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
    // The demo account is a monitoring account with two source accounts: one read with a
    // role (ids joined to names), one without (a REST API by its name only, an HTTP API by
    // its id only: the label discovery cannot learn is absent).
    let of = |labels: &[(&str, &str)]| m.find("aws_apigateway_requests_total", labels);
    let shipping = of(&[
        ("account_id", demo::SOURCE_WITH_ROLE),
        ("api_name", "shipping"),
    ]);
    assert!(!shipping.is_empty());
    assert!(
        shipping
            .iter()
            .all(|s| s.labels.get("api_id").map(String::as_str) == Some("g7h8j9k0m1"))
    );
    let ledger = of(&[
        ("account_id", demo::SOURCE_WITHOUT_ROLE),
        ("api_name", "ledger"),
    ]);
    assert!(!ledger.is_empty());
    assert!(ledger.iter().all(|s| !s.labels.contains_key("api_id")));
    let notifications = of(&[
        ("account_id", demo::SOURCE_WITHOUT_ROLE),
        ("api_id", "t7u8v9w0x1"),
    ]);
    assert!(!notifications.is_empty());
    assert!(
        notifications
            .iter()
            .all(|s| !s.labels.contains_key("api_name"))
    );
    for (account, discovery) in [
        (demo::SOURCE_WITH_ROLE, "role"),
        (demo::SOURCE_WITHOUT_ROLE, "metrics"),
    ] {
        assert_eq!(
            m.value(
                "aws_apigateway_exporter_source_account_up",
                &[("account_id", account), ("discovery", discovery)]
            ),
            Some(1.0)
        );
    }
    let (status, landing) = exporter.get("/").unwrap();
    assert_eq!(status, 200);
    assert!(landing.contains("DEMO MODE"), "{landing}");
    let complaints = common::promtool_check_metrics(&m.text);
    assert!(
        complaints.is_empty(),
        "promtool check metrics:\n{complaints}"
    );
}

struct Sim {
    poller: Poller,
    registry: Arc<Exposition>,
    clock: Arc<ManualClock>,
}

fn simulation(seed: u64, start: i64) -> Sim {
    let mut config = Config::default();
    assert_eq!(
        config.poll.settle(),
        180,
        "the default settle the schedule is timed for"
    );
    app::demo_config(&mut config);
    let (registry, shared, metrics) = app::exposition(true).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let targets = app::demo_targets(&config, seed, clock.clone(), &metrics);
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
        Metrics::parse(&String::from_utf8(self.registry.encode().unwrap()).unwrap())
    }
}

fn value(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.value(name, labels)
        .unwrap_or_else(|| panic!("{name} {labels:?} missing"))
}

/// The longest run of consecutive `true`s.
fn longest_run(flags: &[bool]) -> usize {
    flags.split(|f| !f).map(<[bool]>::len).max().unwrap_or(0)
}

#[tokio::test]
async fn over_a_simulated_hour_the_incidents_fire_and_resolve() {
    // Start at a cycle boundary, 30 s into the minute.
    let start = 1_795_392_000 + 16 * 3600 - (1_795_392_000 + 16 * 3600) % INCIDENT_CYCLE + 30;
    let mut sim = simulation(3, start);
    sim.poller.cycle().await;
    let mut previous = sim.scrape();
    let payments = [("api_name", "payments"), ("stage", "prod")];
    let orders = [("api_name", "orders"), ("stage", "$default")];
    let chat = [("api_name", "chat"), ("stage", "production")];
    let reports = [("api_name", "reports"), ("stage", "prod")];
    let (mut burst_ratios, mut quiet_ratios) = (Vec::new(), Vec::new());
    let (mut throttled_in, mut throttled_out) = (0.0, 0.0);
    let (mut near_limit, mut near_timeout_warn, mut near_timeout_crit, mut ws_errors) =
        (vec![], vec![], vec![], vec![]);
    let mut fourxx = Vec::new();
    let (mut timeouts, mut failing, mut authorizer, mut lambda_throttled) =
        (vec![], vec![], vec![], vec![]);
    let webhooks = [("api_name", "webhooks"), ("stage", "prod")];
    let mut max_outside: f64 = 0.0;
    let mut canary_worse = Vec::new();
    for _ in 0..60 {
        sim.clock.advance(60);
        sim.poller.cycle().await;
        let now = sim.scrape();
        // The minute of the schedule this cycle ends in: counts of a period arrive over the
        // two minutes after its start, so this cycle's increase comes from periods m-2 .. m.
        let m = (sim.clock.now() % INCIDENT_CYCLE) / 60;
        let core = |i: &demo::Incident| i.minutes.contains(&(m - 2)) && i.minutes.contains(&m);
        let outside = |i: &demo::Incident| !(i.minutes.start..i.minutes.end + 3).contains(&m);
        let delta = |name: &str, labels: &[(&str, &str)]| {
            value(&now, name, labels) - value(&previous, name, labels)
        };
        let requests = delta("aws_apigateway_requests_total", &payments);
        let ratio = delta("aws_apigateway_5xx_errors_total", &payments) / requests;
        if core(&demo::FIVE_XX_BURST) {
            burst_ratios.push(ratio);
        } else if outside(&demo::FIVE_XX_BURST) && m >= 2 {
            quiet_ratios.push(ratio);
        }
        let throttled = delta(
            "aws_apigateway_throttled_requests_total",
            &[orders[0], orders[1], ("reason", "throttled")],
        );
        if core(&demo::THROTTLING) {
            throttled_in += throttled;
        } else if outside(&demo::THROTTLING) {
            throttled_out += throttled;
        }
        let orders_rps = delta("aws_apigateway_requests_total", &orders) / 60.0;
        let limit = value(
            &now,
            "aws_apigateway_throttle_rate_limit",
            &[orders[0], orders[1], ("scope", "stage")],
        );
        near_limit.push(orders_rps > 0.8 * limit);
        fourxx.push(delta("aws_apigateway_4xx_errors_total", &orders) / (orders_rps * 60.0) > 0.05);
        let errors = delta("aws_apigateway_websocket_integration_errors_total", &chat);
        ws_errors.push(errors / delta("aws_apigateway_websocket_messages_total", &chat) > 0.05);
        // The latency alert's signal: the integration max of the latest settled period.
        let max = now
            .value(
                "aws_apigateway_integration_latency_max_seconds",
                &[reports[0], reports[1]],
            )
            .unwrap_or(0.0);
        near_timeout_warn.push(max > 0.8 * 29.0);
        near_timeout_crit.push(max > 0.93 * 29.0);
        let settled_minute = (m - 4).rem_euclid(60);
        if !(demo::LATENCY_CREEP.minutes.start..demo::LATENCY_CREEP.minutes.end + 1)
            .contains(&settled_minute)
        {
            max_outside = max_outside.max(max);
        }
        // The cause alerts' signals: responses of one type over the stage's requests.
        let total = |m: &Metrics, name: &str, labels: &[(&str, &str)]| -> f64 {
            m.find(name, labels).iter().map(|s| s.value).sum()
        };
        let cause = |stage: &[(&str, &str); 2], response_type: &str| {
            let labels = [stage[0], stage[1], ("response_type", response_type)];
            (total(&now, "aws_apigateway_responses_total", &labels)
                - total(&previous, "aws_apigateway_responses_total", &labels))
                / delta("aws_apigateway_requests_total", stage)
        };
        timeouts.push(cause(&reports, "INTEGRATION_TIMEOUT") > 0.005);
        failing.push(cause(&payments, "INTEGRATION_FAILURE") > 0.01);
        authorizer.push(cause(&webhooks, "AUTHORIZER_FAILURE") > 0.005);
        // The canary alert's signal: the canary's 5XX ratio (every canary response counted)
        // minus the stage's, with its traffic guard.
        let canary_total = |m: &Metrics, status: Option<&str>| {
            m.find("aws_apigateway_canary_responses_total", &payments)
                .iter()
                .filter(|s| status.is_none_or(|p| s.labels["status"].starts_with(p)))
                .map(|s| s.value)
                .sum::<f64>()
        };
        let canary_requests = canary_total(&now, None) - canary_total(&previous, None);
        let canary_ratio =
            (canary_total(&now, Some("5")) - canary_total(&previous, Some("5"))) / canary_requests;
        canary_worse.push(canary_requests / 60.0 >= 0.5 && canary_ratio - ratio > 0.02);
        let function = [("function_name", "chat-handler")];
        let throttles = delta("aws_lambda_throttles_total", &function);
        lambda_throttled.push(
            throttles / (throttles + delta("aws_lambda_invocations_total", &function)) > 0.01,
        );
        previous = now;
    }
    assert_eq!(burst_ratios.len(), 10, "the burst's core minutes");
    assert!(
        burst_ratios.iter().all(|r| *r > 0.05),
        "5XX ratio during the burst: {burst_ratios:?}"
    );
    assert!(
        quiet_ratios.iter().all(|r| *r < 0.01),
        "5XX ratio outside: {quiet_ratios:?}"
    );
    assert!(
        throttled_in > 10_000.0,
        "429s during the throttling episode: {throttled_in}"
    );
    assert_eq!(throttled_out, 0.0);
    // Each alert's condition holds longer than its `for:`, then clears.
    assert!(
        longest_run(&near_limit) >= 15,
        "above 80 % of the limit: {near_limit:?}"
    );
    assert!(
        longest_run(&fourxx) >= 18,
        "4XX ratio above 5 %: {fourxx:?}"
    );
    assert!(
        longest_run(&near_timeout_warn) >= 12,
        "max above 80 % of 29 s: {near_timeout_warn:?}"
    );
    assert!(
        longest_run(&near_timeout_crit) >= 8,
        "max above 93 % of 29 s: {near_timeout_crit:?}"
    );
    assert!(
        longest_run(&ws_errors) >= 6,
        "WebSocket integration errors above 5 %: {ws_errors:?}"
    );
    // The causes: timeouts while reports' latency passes its timeout, 502s in the 5XX burst,
    // webhooks' authorizer failing, chat's Lambda function throttled.
    for (name, flags, at_least) in [
        ("integration timeouts above 0.5 %", &timeouts, 10),
        ("integration failures above 1 %", &failing, 8),
        ("authorizer failures above 0.5 %", &authorizer, 8),
        ("Lambda throttles above 1 %", &lambda_throttled, 6),
        (
            "the canary's 5XX ratio 2 points above the stage's",
            &canary_worse,
            15,
        ),
    ] {
        assert!(longest_run(flags) >= at_least, "{name}: {flags:?}");
    }
    for flags in [
        &near_limit,
        &fourxx,
        &near_timeout_warn,
        &ws_errors,
        &timeouts,
        &failing,
        &authorizer,
        &lambda_throttled,
        &canary_worse,
    ] {
        assert!(
            flags.iter().filter(|f| !**f).count() >= 20,
            "each incident resolves: {flags:?}"
        );
    }
    assert!(
        max_outside < 10.0,
        "integration max outside the incident stays far below the 23.2 s threshold: {max_outside} s"
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

/// The environment of a running process, as the kernel shows it.
fn environ_of(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// Starts the demo binary with `env` set and the allocator variables not in it removed;
/// returns the environment its pid runs with once it has re-executed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn allocator_env_of_demo(env: &[(&str, &str)]) -> Vec<String> {
    use std::process::{Command, Stdio};
    let mut command = Command::new(env!("CARGO_BIN_EXE_apigateway-exporter"));
    command
        .args(["--demo", "--web.listen-address=127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for name in ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("start exporter");
    let pid = child.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let seen = loop {
        let seen = environ_of(pid);
        let set = |name: &str| seen.iter().any(|v| v.starts_with(&format!("{name}=")));
        if set("MALLOC_ARENA_MAX") && set("MALLOC_MMAP_THRESHOLD_") {
            break seen;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("pid {pid} never ran with both allocator variables set: {seen:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let still_running = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(still_running, "the re-executed process exited");
    seen
}

/// The binary sets glibc's allocator settings itself (one arena, a fixed mmap threshold:
/// docs/performance.md) by re-executing once under the same pid; a value the user set wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_binary_runs_with_its_allocator_settings_and_keeps_the_users_own() {
    let has = |env: &[String], v: &str| env.iter().any(|e| e == v);
    let defaults = allocator_env_of_demo(&[]);
    assert!(has(&defaults, "MALLOC_ARENA_MAX=1"), "{defaults:?}");
    assert!(
        has(&defaults, "MALLOC_MMAP_THRESHOLD_=262144"),
        "{defaults:?}"
    );
    let own = allocator_env_of_demo(&[("MALLOC_MMAP_THRESHOLD_", "131072")]);
    assert!(has(&own, "MALLOC_ARENA_MAX=1"), "{own:?}");
    assert!(
        has(&own, "MALLOC_MMAP_THRESHOLD_=131072"),
        "the user's value is kept: {own:?}"
    );
    assert!(!has(&own, "MALLOC_MMAP_THRESHOLD_=262144"), "{own:?}");
}
