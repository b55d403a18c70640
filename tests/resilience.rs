//! Reload, shutdown, and bad input of every kind: the exporter keeps serving what it knows,
//! says what it does not, and never panics.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use apigateway_exporter::config::Config;
use apigateway_exporter::http::{AppState, handle};
use apigateway_exporter::snapshot::SharedSnapshot;
use common::{Exporter, request};
use hyper::Method;
use proptest::prelude::*;

const WAIT: Duration = Duration::from_secs(30);

fn demo_config(types: &str) -> String {
    format!(
        "poll:\n  interval: 1s\ntargets:\n  - regions: [us-east-1]\n    apis:\n      types: [{types}]\n"
    )
}

fn payments(m: &common::Metrics) -> Option<f64> {
    m.value(
        "aws_apigateway_requests_total",
        &[("api_name", "payments"), ("stage", "prod")],
    )
}

#[test]
fn reload_applies_a_valid_config_rejects_an_invalid_one_and_keeps_counters() {
    let exporter = Exporter::start(&demo_config("rest"), &["--demo", "--web.enable-lifecycle"]);
    exporter.wait_ready(WAIT);
    let m = exporter.scrape_until(WAIT, |m| payments(m).is_some_and(|v| v > 0.0));
    assert!(
        m.find("aws_apigateway_api_info", &[("api_type", "http")])
            .is_empty()
    );

    // An invalid file is rejected with its reason; the running config carries on.
    exporter.write_config("poll:\n  intervall: 1s\n");
    let (status, body) = request(exporter.port, "POST", "/-/reload").unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("intervall"), "{body}");
    let m = exporter.scrape();
    assert_eq!(
        m.value("aws_apigateway_exporter_config_last_reload_successful", &[]),
        Some(0.0)
    );
    let before = payments(&m).unwrap();

    // A valid file, by SIGHUP: HTTP APIs appear, REST counters carry on from where they were.
    exporter.write_config(&demo_config("rest, http"));
    exporter.signal("HUP");
    let m = exporter.scrape_until(WAIT, |m| {
        !m.find("aws_apigateway_api_info", &[("api_type", "http")])
            .is_empty()
            && m.value("aws_apigateway_exporter_config_last_reload_successful", &[]) == Some(1.0)
    });
    assert!(payments(&m).unwrap() >= before, "counters survive a reload");

    // And by POST.
    exporter.write_config(&demo_config("websocket"));
    let (status, body) = request(exporter.port, "POST", "/-/reload").unwrap();
    assert_eq!((status, body.as_str()), (200, "config reloaded\n"));
    let m = exporter.scrape_until(WAIT, |m| {
        m.find("aws_apigateway_api_info", &[("api_type", "rest")])
            .is_empty()
    });
    assert!(
        payments(&m).is_none(),
        "series of APIs no longer selected leave the output"
    );
    assert_eq!(request(exporter.port, "GET", "/-/reload").unwrap().0, 405);
}

#[test]
fn post_reload_is_forbidden_without_the_lifecycle_flag_and_sighup_still_reloads() {
    let exporter = Exporter::start(&demo_config("rest"), &["--demo"]);
    exporter.wait_ready(WAIT);
    exporter.write_config(&demo_config("rest, http"));
    let (status, body) = request(exporter.port, "POST", "/-/reload").unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--web.enable-lifecycle"), "{body}");
    let m = exporter.scrape();
    assert!(
        m.find("aws_apigateway_api_info", &[("api_type", "http")])
            .is_empty(),
        "a forbidden reload changed nothing"
    );
    exporter.signal("HUP");
    exporter.scrape_until(WAIT, |m| {
        !m.find("aws_apigateway_api_info", &[("api_type", "http")])
            .is_empty()
    });
}

#[test]
fn sigterm_drops_readiness_and_exits_0() {
    let mut exporter = Exporter::start(&demo_config("rest, http, websocket"), &["--demo"]);
    exporter.wait_ready(WAIT);
    exporter.signal("TERM");
    assert_eq!(exporter.wait_exit(Duration::from_secs(15)), Some(0));
    assert!(exporter.get("/-/healthy").is_none(), "no longer listening");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_apigateway-exporter"))
        .args(["--demo", &format!("--web.listen-address={addr}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("cannot listen"),
        "{stderr}"
    );
    // Logs that are not read at a terminal (here a pipe, as under `kubectl logs`) carry no
    // colour codes.
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escapes in piped logs: {stderr:?}"
    );
}

#[test]
fn missing_credentials_say_which_chain_was_tried() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    std::fs::write(&config, "targets:\n  - regions: [eu-west-1]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_apigateway-exporter"))
        .args([
            "check-config",
            "--log.level=error",
            &format!("--config.file={}", config.display()),
        ])
        .env_clear()
        .env("HOME", dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a valid file is valid even without AWS: {stdout}"
    );
    assert!(stdout.contains("credential chain tried"), "{stdout}");
}

#[test]
fn memory_and_file_descriptors_stay_flat_over_a_soak() {
    // Bounded: about 40 s of 1 s cycles and 20 scrapes a second, on loopback only.
    let exporter = Exporter::start(&demo_config("rest, http, websocket"), &["--demo"]);
    exporter.wait_ready(WAIT);
    let sample = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", exporter.pid())).unwrap();
        let rss_kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        let fds = std::fs::read_dir(format!("/proc/{}/fd", exporter.pid()))
            .unwrap()
            .count();
        (rss_kb / 1024.0, fds)
    };
    let soak = |secs: u64| {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut scrapes = 0;
        while Instant::now() < end {
            assert_eq!(exporter.get("/metrics").unwrap().0, 200);
            scrapes += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        scrapes
    };
    soak(10);
    let (rss_warm, fds_warm) = sample();
    let scrapes = soak(30);
    let (rss_end, fds_end) = sample();
    let cycles = exporter
        .scrape()
        .value("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
        .unwrap();
    eprintln!(
        "soak: {scrapes} scrapes, {cycles} cycles; RSS {rss_warm:.1} -> {rss_end:.1} MiB; fds {fds_warm} -> {fds_end}"
    );
    assert!(
        rss_end < rss_warm * 1.2 + 2.0,
        "RSS grew from {rss_warm:.1} to {rss_end:.1} MiB"
    );
    assert!(
        fds_end <= fds_warm + 2,
        "file descriptors grew from {fds_warm} to {fds_end}"
    );
}

fn state() -> AppState {
    let shared = SharedSnapshot::new();
    AppState {
        exposition: std::sync::Arc::new(apigateway_exporter::render::Exposition::new(
            prometheus::Registry::new(),
            std::sync::Arc::clone(&shared),
        )),
        shared,
        demo: false,
        reload: None,
        lifecycle: false,
        web: None,
    }
}

proptest! {
    #[test]
    fn the_http_handler_answers_anything_without_panicking(
        method in "[A-Z]{1,10}",
        path in "/[ -~]{0,40}",
    ) {
        let state = state();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let status = handle(&state, &method, &path).status().as_u16();
        prop_assert!([200, 404, 405, 503].contains(&status), "{status}");
        if !["/", "/metrics", "/-/healthy", "/-/ready", "/-/reload"].contains(&path.as_str()) {
            prop_assert_eq!(status, 404);
        }
    }

    #[test]
    fn the_config_parser_rejects_garbage_without_panicking(text in "[ -~\n\t]{0,200}") {
        let _ = Config::parse(&text, |_| None);
    }

    #[test]
    fn the_config_parser_survives_mutated_valid_configs(cut in 0usize..600, junk in "[ -~\n]{0,8}") {
        let valid = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/config/full.ok.yml")).unwrap();
        let at = valid.char_indices().map(|(i, _)| i).nth(cut % valid.chars().count()).unwrap_or(0);
        let mutated = format!("{}{}{}", &valid[..at], junk, &valid[at..]);
        let _ = Config::parse(&mutated, |_| Some("x".into()));
    }
}

#[test]
fn readiness_is_503_until_a_cycle_reached_aws() {
    let state = state();
    assert_eq!(
        handle(&state, &Method::GET, "/-/ready").status().as_u16(),
        503
    );
    state.shared.set_ready(true);
    assert_eq!(
        handle(&state, &Method::GET, "/-/ready").status().as_u16(),
        200
    );
    assert_eq!(
        handle(&state, &Method::HEAD, "/metrics").status().as_u16(),
        200
    );
    assert_eq!(
        handle(&state, &Method::DELETE, "/metrics").headers()["allow"],
        "GET, HEAD"
    );
}
