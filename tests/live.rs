//! Dashboards and alert rules against a real Prometheus: it scrapes the exporter in demo
//! mode with the rules loaded; every dashboard query must evaluate without error and return
//! data, every rule must evaluate healthy, and every metric name the dashboards and rules use
//! must exist in the exporter's output, so a rename cannot silently break a panel.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Exporter, Prometheus};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Prometheus scraping the exporter every second, with the alert rules loaded.
fn start_prometheus(target_port: u16) -> Prometheus {
    Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {ROOT}/alerts/apigateway.rules.yml\n\
         scrape_configs:\n  - job_name: apigateway-exporter\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    ))
}

/// Prometheus' HTTP API, as the checks below use it.
trait Api {
    fn api(&self, path: &str) -> serde_json::Value;
    fn query(&self, expr: &str) -> Result<usize, String>;
}

impl Api for Prometheus {
    fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = common::get(self.port, path).expect("prometheus answers");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(status, 200, "{path}: {body}");
        v
    }

    /// Evaluates an instant query: `Err` with Prometheus' error, or the number of results.
    fn query(&self, expr: &str) -> Result<usize, String> {
        let (status, body) =
            common::get(self.port, &format!("/api/v1/query?query={}", encode(expr)))
                .expect("prometheus answers");
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().map_or(1, Vec::len))
    }
}

use common::encode;

/// `(dashboard uid, panel id, refId, expr)` of every dashboard query, variables set to `vars`.
fn dashboard_queries(vars: &[(&str, &str)]) -> Vec<(String, String, String, String)> {
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(ROOT).join("tests/dashboard_queries.py"))
        .args(["queries", "--demo", "--rate-interval", "30s"]);
    for (k, v) in vars {
        cmd.arg("--var").arg(format!("{k}={v}"));
    }
    for d in [
        "apigateway-overview",
        "apigateway-api",
        "apigateway-exporter",
    ] {
        cmd.arg(Path::new(ROOT).join(format!("dashboards/{d}.json")));
    }
    let out = cmd.output().expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(5, '\t').collect();
            assert_eq!(f.len(), 5, "{l}");
            (
                f[0].to_string(),
                format!("{} {}", f[1], f[2]),
                f[3].to_string(),
                f[4].to_string(),
            )
        })
        .collect()
}

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("aws_apigateway_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let before_ok = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b':');
        if before_ok {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

#[test]
fn every_dashboard_query_and_rule_works_on_a_real_prometheus_scraping_the_demo() {
    // Six minutes into the hourly incident schedule: the 5XX burst is on, so even the "top
    // APIs by errors" panels have something to show.
    let exporter = Exporter::start(
        "poll:\n  interval: 1s\n",
        &["--demo", "--demo.start-time=2026-11-21T16:06:00Z"],
    );
    exporter.wait_ready(Duration::from_secs(20));
    let prometheus = start_prometheus(exporter.port);
    // Enough scrapes for 30 s rate windows to have several samples.
    let deadline = Instant::now() + Duration::from_secs(60);
    while prometheus
        .query("count(rate(aws_apigateway_requests_total[30s]) > 0)")
        .unwrap_or(0)
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "prometheus has no rates after 60 s"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(12));

    // The API dashboard shows one stage of one API type at a time: a query must have data
    // for at least one of the demo's REST, HTTP and WebSocket stages.
    let variable_sets: [&[(&str, &str)]; 3] = [
        &[
            ("api_name", "payments"),
            ("stage", "prod"),
            ("api_type", "rest"),
        ],
        &[
            ("api_name", "orders"),
            ("stage", "$default"),
            ("api_type", "http"),
        ],
        &[
            ("api_name", "chat"),
            ("stage", "production"),
            ("api_type", "websocket"),
        ],
    ];
    type Outcomes = BTreeMap<(String, String, String), (String, Vec<Result<usize, String>>)>;
    let mut results: Outcomes = BTreeMap::new();
    for vars in variable_sets {
        for (uid, panel, ref_id, expr) in dashboard_queries(vars) {
            let r = prometheus.query(&expr);
            results
                .entry((uid, panel, ref_id))
                .or_insert_with(|| (expr, Vec::new()))
                .1
                .push(r);
        }
    }
    assert!(
        results.len() > 40,
        "only {} dashboard queries found",
        results.len()
    );
    let mut failures = Vec::new();
    for ((uid, panel, ref_id), (expr, outcomes)) in &results {
        if let Some(Err(e)) = outcomes.iter().find(|o| o.is_err()) {
            failures.push(format!("{uid} {panel} {ref_id}: error {e}\n    {expr}"));
        } else if panel.starts_with("annotation") {
            // Alert annotations have data only while an alert fires: evaluating is enough.
        } else if outcomes.iter().all(|o| o.as_ref().is_ok_and(|n| *n == 0)) {
            failures.push(format!("{uid} {panel} {ref_id}: no data\n    {expr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );

    // Every rule evaluates without error.
    let rules = prometheus.api("/api/v1/rules");
    let mut count = 0;
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            count += 1;
            assert_eq!(
                rule["health"], "ok",
                "rule {} in {}: {}",
                rule["name"], group["name"], rule["lastError"]
            );
        }
    }
    assert!(count > 20, "only {count} rules loaded");

    // Every metric name the dashboards and rules use is served.
    let served: BTreeSet<String> = exporter
        .scrape()
        .samples
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let mut used = metric_names(
        &std::fs::read_to_string(Path::new(ROOT).join("alerts/apigateway.rules.yml")).unwrap(),
    );
    for (expr, _) in results.values() {
        used.extend(metric_names(expr));
    }
    // Series there only while an API's discovery reads fail (the demo's never do; its
    // alert is tested by promtool in tests/alerts.rs).
    let on_event = ["aws_apigateway_exporter_discovery_api_failures"];
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !served.contains(*n) && !on_event.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "used by dashboards or rules but not served: {missing:?}"
    );
    eprintln!(
        "{} dashboard queries, {count} rules, {} metric names checked",
        results.len(),
        used.len()
    );
}
