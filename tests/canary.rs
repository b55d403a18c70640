//! REST canary releases against LocalStack, which keeps `canarySettings` on a stage (moto
//! does not): discovery exports the canary's traffic share and deployment while it exists,
//! and nothing once it is removed (a rollback); the canary's own series come from its access
//! log group (the stage's with `/Canary` appended, where AWS writes every canary request),
//! exactly and apart from the stage's CloudWatch and access-log series.
//!
//! Emulator gap: LocalStack routes canary traffic but writes no access logs and publishes no
//! `AWS/ApiGateway` metrics, so the test writes the events and datapoints API Gateway would:
//! access log lines in the README's format, and the stage's `Count` and `5XXError`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Datum, Exporter, Metrics, create_rest_api, emulator_config, now_secs, put, unique};

const WAIT: Duration = Duration::from_secs(60);

fn canary(m: &common::Metrics, api_id: &str) -> Vec<(String, String, f64)> {
    m.find(
        "aws_apigateway_stage_canary_traffic_percent",
        &[("api_id", api_id)],
    )
    .iter()
    .map(|s| {
        (
            s.labels.get("stage").cloned().unwrap_or_default(),
            s.labels.get("deployment_id").cloned().unwrap_or_default(),
            s.value,
        )
    })
    .collect()
}

/// Rolls a canary back: removes the stage's canary settings.
async fn roll_back(api_id: &str, stage: &str) {
    common::apigateway()
        .update_stage()
        .rest_api_id(api_id)
        .stage_name(stage)
        .patch_operations(
            aws_sdk_apigateway::types::PatchOperation::builder()
                .op(aws_sdk_apigateway::types::Op::Remove)
                .path("/canarySettings")
                .build(),
        )
        .send()
        .await
        .expect("UpdateStage remove /canarySettings");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_is_exported_while_it_exists_and_leaves_with_a_rollback() {
    let tag = unique("cn");
    let id = create_rest_api(&format!("canary-{tag}"), &["prod", "beta"]).await;
    let gw = common::apigateway();
    // A canary deployment on prod: 25 % of its requests.
    let deployment = gw
        .create_deployment()
        .rest_api_id(&id)
        .stage_name("prod")
        .canary_settings(
            aws_sdk_apigateway::types::DeploymentCanarySettings::builder()
                .percent_traffic(25.0)
                .use_stage_cache(false)
                .build(),
        )
        .send()
        .await
        .expect("CreateDeployment with canary settings")
        .id()
        .expect("deployment id")
        .to_string();
    let config = emulator_config(&tag, "");
    let plan = common::check_config(&config);
    assert!(
        plan.lines().any(|l| l.contains("stage prod:")
            && l.contains(&format!(
                "canary: 25 % of requests to deployment {deployment}"
            ))),
        "{plan}"
    );
    assert!(
        !plan
            .lines()
            .any(|l| l.contains("stage beta:") && l.contains("canary")),
        "{plan}"
    );
    let exporter = Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);
    let m = exporter.scrape_until(WAIT, |m| !canary(m, &id).is_empty());
    assert_eq!(
        canary(&m, &id),
        vec![("prod".to_string(), deployment.clone(), 25.0)],
        "only prod has a canary"
    );
    let s = &m.find(
        "aws_apigateway_stage_canary_traffic_percent",
        &[("api_id", &id)],
    )[0];
    assert_eq!(
        s.labels.get("use_stage_cache").map(String::as_str),
        Some("false")
    );
    assert_eq!(s.labels.get("api_type").map(String::as_str), Some("rest"));

    // Rolling back removes the canary settings; the series leaves with the next discovery.
    roll_back(&id, "prod").await;
    let m = exporter.scrape_until(WAIT, |m| canary(m, &id).is_empty());
    assert_eq!(
        m.find("aws_apigateway_stage_info", &[("api_id", &id)])
            .len(),
        2,
        "both stages stay"
    );
}

/// Writes access log lines `(minute start, status, response type, latency)` into `group`.
async fn put_lines(group: &str, api: &str, lines: &[(i64, u16, &str, &str)]) {
    put_formatted(
        group,
        api,
        apigateway_exporter::model::ACCESS_LOG_FORMAT,
        lines,
    )
    .await;
}

/// Writes lines of the REST format, which says `isCanaryRequest`: `(minute start, status,
/// response type, latency, canary)`.
async fn put_split_lines(group: &str, api: &str, lines: &[(i64, u16, &str, &str, bool)]) {
    for canary in [true, false] {
        let some: Vec<_> = lines
            .iter()
            .filter(|l| l.4 == canary)
            .map(|l| (l.0, l.1, l.2, l.3))
            .collect();
        let format = apigateway_exporter::model::rest_access_log_format()
            .replace("$context.isCanaryRequest", &canary.to_string());
        put_formatted(group, api, &format, &some).await;
    }
}

async fn put_formatted(group: &str, api: &str, format: &str, lines: &[(i64, u16, &str, &str)]) {
    let mut lines = lines.to_vec();
    lines.sort_by_key(|l| l.0);
    let events: Vec<(i64, String)> = lines
        .iter()
        .enumerate()
        .map(|(i, (at, status, response_type, latency))| {
            let line = format
                .replace("$context.requestId", &format!("r{i}"))
                .replace("$context.requestTimeEpoch", &(at * 1000).to_string())
                .replace("$context.apiId", api)
                .replace("$context.stage", "prod")
                .replace("$context.status", &status.to_string())
                .replace("$context.responseLatency", latency)
                .replace("$context.error.responseType", response_type)
                .replace("$context.resourcePath", "/")
                .replace("$context.httpMethod", "GET")
                .replace("$context.routeKey", "-");
            (at * 1000 + 1_000 + i as i64, line)
        })
        .collect();
    common::put_events(group, &events).await;
}

/// The canary's responses on `/metrics`, by status.
fn canary_responses(m: &Metrics, api: &str) -> BTreeMap<String, f64> {
    m.find("aws_apigateway_canary_responses_total", &[("api_id", api)])
        .iter()
        .map(|s| (s.labels["status"].clone(), s.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_canary_is_counted_from_its_own_access_logs_exactly_and_apart_from_the_stage() {
    let tag = unique("cl");
    let name = format!("canaryl-{tag}");
    let id = create_rest_api(&name, &["prod"]).await;
    let gw = common::apigateway();
    gw.create_deployment()
        .rest_api_id(&id)
        .stage_name("prod")
        .canary_settings(
            aws_sdk_apigateway::types::DeploymentCanarySettings::builder()
                .percent_traffic(20.0)
                .build(),
        )
        .send()
        .await
        .expect("CreateDeployment with canary settings");
    let group = format!("/aws/apigateway/canary/{tag}");
    let canary_group = format!("{group}/Canary");
    common::log_group(&group).await;
    common::patch_stage(
        &id,
        "prod",
        &[
            (
                "/accessLogSettings/destinationArn",
                &format!("arn:aws:logs:us-east-1:000000000000:log-group:{group}"),
            ),
            (
                "/accessLogSettings/format",
                apigateway_exporter::model::ACCESS_LOG_FORMAT,
            ),
        ],
    )
    .await;
    // CloudWatch Logs behind a gate, to cut it off like an outage.
    let gate = common::Gate::start(&common::localstack());
    let config = emulator_config(&tag, "access_logs:\n  mode: filter_log_events\n").replace(
        &format!("logs: {}", common::localstack()),
        &format!("logs: {}", gate.url()),
    );
    let plan = common::check_config(&config);
    assert!(
        plan.lines().any(|l| l.contains("stage prod:")
            && l.contains(&format!(
                "compared with the whole stage, from every event of {canary_group}"
            ))),
        "{plan}"
    );
    // The stage's two 429 queries and its responses, and the canary's responses and latency
    // (Sum, SampleCount, Maximum) come from two log groups.
    assert!(
        plan.contains("2 log groups read with FilterLogEvents each cycle (plus pages), answering 7 access-log queries"),
        "{plan}"
    );
    // The exporter starts first: what a log group holds before is a baseline, as after a
    // restart.
    let exporter = Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);
    // The canary's group does not exist until the canary logs: nothing to count, and no
    // failure either (every cycle succeeds).
    let m = exporter.scrape_until(WAIT, |m| {
        let cycles: f64 = m
            .find("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
            .iter()
            .map(|s| s.value)
            .sum();
        cycles >= 3.0
    });
    assert!(
        !m.find("aws_apigateway_stage_info", &[("api_id", &id)])
            .is_empty()
    );
    assert_eq!(m.value("aws_apigateway_exporter_up", &[]), Some(1.0));
    assert_eq!(
        m.value(
            "aws_apigateway_exporter_aws_requests_total",
            &[("operation", "FilterLogEvents"), ("result", "error")]
        ),
        Some(0.0)
    );
    assert!(canary_responses(&m, &id).is_empty());
    common::log_group(&canary_group).await;

    // Three minutes up to the current one, the same in each, so the settled minute that the
    // quantile gauges show has this mix whenever the test scrapes: per minute the canary
    // answers 17 requests, 3 of them 500s; latencies 10..=160 ms by tens and one of 2.5 s.
    // The stage's CloudWatch series count 80 requests and 4 5XX a minute, the canary's among
    // them. Its access log group has its own requests (3 500s and a 504 a minute among 200s)
    // and, as AWS writes them to both groups, every canary request too.
    let now = (now_secs() / 60) * 60;
    let minutes = [now - 120, now - 60, now];
    let mut canary = Vec::new();
    let mut production = Vec::new();
    let latencies: Vec<String> = (1..=16).map(|i| (i * 10).to_string()).collect();
    for &at in &minutes {
        for (i, ms) in latencies.iter().enumerate() {
            let (status, response_type) = if i < 3 { (500, "-") } else { (200, "-") };
            canary.push((at, status, response_type, ms.as_str()));
        }
        canary.push((at, 200, "-", "2500"));
        for _ in 0..3 {
            production.push((at, 500, "-", "15"));
        }
        production.push((at, 504, "INTEGRATION_TIMEOUT", "29000"));
        for _ in 0..5 {
            production.push((at, 200, "-", "40"));
        }
    }
    // A canary line whose latency API Gateway left unset still counts as a response.
    canary.push((now - 60, 404, "-", "-"));
    production.extend(canary.iter().cloned());
    put_lines(&canary_group, &id, &canary).await;
    put_lines(&group, &id, &production).await;
    let dims = [("ApiName", name.as_str()), ("Stage", "prod")];
    let mut data = Vec::new();
    for &at in &minutes {
        data.push(Datum {
            metric: "Count",
            dims: &dims,
            at,
            value: 80.0,
        });
        data.push(Datum {
            metric: "5XXError",
            dims: &dims,
            at,
            value: 4.0,
        });
    }
    put(&data).await;

    let want = BTreeMap::from([
        ("200".to_string(), 3.0 * 14.0),
        ("404".to_string(), 1.0),
        ("500".to_string(), 3.0 * 3.0),
    ]);
    let m = exporter.scrape_until(WAIT, |m| {
        canary_responses(m, &id) == want
            && m.value("aws_apigateway_requests_total", &[("api_id", &id)]) == Some(240.0)
            && m.value(
                "aws_apigateway_canary_latency_max_seconds",
                &[("api_id", &id)],
            )
            .is_some()
    });
    let one = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("api_id", id.as_str()), ("stage", "prod")];
        labels.extend_from_slice(extra);
        m.value(name, &labels)
    };
    // The canary's latency: 3 × (10 + 20 + … + 160 + 2500) ms, 3 × 17 requests.
    assert_eq!(
        one("aws_apigateway_canary_latency_seconds_count", &[]),
        Some(51.0)
    );
    let sum = one("aws_apigateway_canary_latency_seconds_sum", &[]).unwrap_or_default();
    assert!((sum - 3.0 * (1.36 + 2.5)).abs() < 1e-9, "{sum}");
    assert_eq!(
        one("aws_apigateway_canary_latency_max_seconds", &[]),
        Some(2.5)
    );
    // The stage's own series stay what CloudWatch and the stage's log group say (its 500s
    // and the canary's, 9 each): the canary's counts are never added to them again, nor
    // theirs to the canary's.
    assert_eq!(one("aws_apigateway_5xx_errors_total", &[]), Some(12.0));
    let stage = |status: &str| {
        one(
            "aws_apigateway_responses_total",
            &[("status", status), ("response_type", "none")],
        )
    };
    assert_eq!(stage("500"), Some(18.0));
    assert_eq!(stage("404"), Some(1.0));
    assert_eq!(
        one(
            "aws_apigateway_responses_total",
            &[("status", "504"), ("response_type", "INTEGRATION_TIMEOUT")]
        ),
        Some(3.0)
    );
    assert!(
        m.find(
            "aws_apigateway_responses_total",
            &[("api_id", &id), ("status", "200")]
        )
        .is_empty(),
        "the stage's group is read with the statuses' filter"
    );

    // Late canary events in a minute already counted add exactly what they are.
    let late = [
        (now - 120, 502, "INTEGRATION_FAILURE", "31"),
        (now - 120, 200, "-", "12"),
    ];
    put_lines(&canary_group, &id, &late).await;
    put_lines(&group, &id, &late).await;
    let mut want = want;
    *want.entry("200".into()).or_default() += 1.0;
    want.insert("502".into(), 1.0);
    let m = exporter.scrape_until(WAIT, |m| canary_responses(m, &id) == want);
    assert_eq!(
        m.value(
            "aws_apigateway_canary_latency_seconds_count",
            &[("api_id", &id)]
        ),
        Some(53.0)
    );
    let decreases: f64 = m
        .find("aws_apigateway_exporter_period_value_decreases_total", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(decreases, 0.0);

    // An outage of CloudWatch Logs: the canary's counters keep their values and the stage's
    // CloudWatch series go on; the first good cycle counts what the canary logged meanwhile,
    // once.
    gate.block(true);
    let up = |m: &Metrics| m.value("aws_apigateway_exporter_up", &[]);
    let cycles = |m: &Metrics| {
        m.find("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
            .iter()
            .map(|s| s.value)
            .sum::<f64>()
    };
    let m = exporter.scrape_until(WAIT, |m| up(m) == Some(0.0));
    let during = [(now - 120, 500, "-", "50"), (now - 120, 200, "-", "20")];
    put_lines(&canary_group, &id, &during).await;
    put_lines(&group, &id, &during).await;
    let seen = cycles(&m);
    let m = exporter.scrape_until(WAIT, |n| cycles(n) >= seen + 3.0);
    assert_eq!(canary_responses(&m, &id), want, "nothing lost or reset");
    assert_eq!(up(&m), Some(0.0));
    assert_eq!(
        m.value("aws_apigateway_requests_total", &[("api_id", &id)]),
        Some(240.0)
    );
    gate.block(false);
    *want.entry("200".into()).or_default() += 1.0;
    *want.entry("500".into()).or_default() += 1.0;
    let m = exporter.scrape_until(WAIT, |m| {
        canary_responses(m, &id) == want && up(m) == Some(1.0)
    });
    let seen = cycles(&m);
    let m = exporter.scrape_until(WAIT, |n| cycles(n) >= seen + 3.0);
    assert_eq!(
        canary_responses(&m, &id),
        want,
        "the catch-up counted nothing twice"
    );
    assert_eq!(
        m.value(
            "aws_apigateway_canary_latency_seconds_count",
            &[("api_id", &id)]
        ),
        Some(55.0)
    );

    // Percentiles: a reload asks for p50 and p99. The canary's come from its events; the
    // stage's from CloudWatch, where the emulators answer percentiles with an error (their
    // gap): the GetMetricData failure stays with the stage, whose counters keep their
    // values, and the canary goes on.
    exporter.write_config(&config.replace("statistics: [max]", "statistics: [max, p50, p99]"));
    exporter.signal("HUP");
    let quantile = |m: &Metrics, q: &str| {
        m.value(
            "aws_apigateway_canary_latency_seconds",
            &[("api_id", &id), ("quantile", q)],
        )
    };
    let m = exporter.scrape_until(WAIT, |m| quantile(m, "0.99").is_some());
    // Nearest rank over the settled minute's 17: the 9th is 90 ms, the 17th the 2.5 s one.
    assert_eq!(quantile(&m, "0.5"), Some(0.09));
    assert_eq!(quantile(&m, "0.99"), Some(2.5));
    assert_eq!(canary_responses(&m, &id), want);
    assert_eq!(
        m.value("aws_apigateway_requests_total", &[("api_id", &id)]),
        Some(240.0)
    );

    // A rollback removes the canary settings: the canary's series leave with the next
    // discovery, the stage's stay (its 500s: 9 of its own, 10 of the canary's).
    roll_back(&id, "prod").await;
    let m = exporter.scrape_until(WAIT, |m| {
        m.find(
            "aws_apigateway_canary_latency_seconds_count",
            &[("api_id", &id)],
        )
        .is_empty()
    });
    assert!(canary_responses(&m, &id).is_empty());
    assert_eq!(
        m.value(
            "aws_apigateway_responses_total",
            &[
                ("api_id", &id),
                ("status", "500"),
                ("response_type", "none")
            ]
        ),
        Some(19.0)
    );
}

/// The base's responses on `/metrics`, by status.
fn base_responses(m: &Metrics, api: &str) -> BTreeMap<String, f64> {
    m.find(
        "aws_apigateway_canary_base_responses_total",
        &[("api_id", api)],
    )
    .iter()
    .map(|s| (s.labels["status"].clone(), s.value))
    .collect()
}

/// Where the stage's format says `isCanaryRequest` (the README's REST format), the stage's
/// own log group alone gives the canary and its base, split line by line: one group read,
/// no `/Canary` group, every status of both counted, and the stage's responses (4XX and 5XX)
/// the sum of the two.
#[tokio::test(flavor = "multi_thread")]
async fn a_stage_format_with_is_canary_request_splits_the_canary_from_its_base() {
    let tag = unique("cs");
    let id = create_rest_api(&format!("canarys-{tag}"), &["prod"]).await;
    common::apigateway()
        .create_deployment()
        .rest_api_id(&id)
        .stage_name("prod")
        .canary_settings(
            aws_sdk_apigateway::types::DeploymentCanarySettings::builder()
                .percent_traffic(10.0)
                .build(),
        )
        .send()
        .await
        .expect("CreateDeployment with canary settings");
    let group = format!("/aws/apigateway/canarys/{tag}");
    common::log_group(&group).await;
    let format = apigateway_exporter::model::rest_access_log_format();
    common::patch_stage(
        &id,
        "prod",
        &[
            (
                "/accessLogSettings/destinationArn",
                &format!("arn:aws:logs:us-east-1:000000000000:log-group:{group}"),
            ),
            ("/accessLogSettings/format", &format),
        ],
    )
    .await;
    let config = emulator_config(&tag, "access_logs:\n  mode: filter_log_events\n");
    let plan = common::check_config(&config);
    assert!(
        plan.lines().any(|l| l.contains("stage prod:")
            && l.contains(
                "compared with its base: the stage's own lines split by isCanaryRequest"
            )),
        "{plan}"
    );
    assert!(
        plan.contains("1 log groups read with FilterLogEvents each cycle"),
        "{plan}"
    );
    let exporter = Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);

    // Two minutes: per minute the canary answers 4 (one 500), the base 10 (one 500, one 404).
    let now = (now_secs() / 60) * 60;
    let mut lines = Vec::new();
    for at in [now - 60, now] {
        lines.push((at, 500, "-", "30", true));
        for _ in 0..3 {
            lines.push((at, 200, "-", "20", true));
        }
        lines.push((at, 500, "-", "30", false));
        lines.push((at, 404, "-", "5", false));
        for _ in 0..8 {
            lines.push((at, 200, "-", "20", false));
        }
    }
    put_split_lines(&group, &id, &lines).await;
    let canary_want = BTreeMap::from([("200".to_string(), 6.0), ("500".to_string(), 2.0)]);
    let base_want = BTreeMap::from([
        ("200".to_string(), 16.0),
        ("404".to_string(), 2.0),
        ("500".to_string(), 2.0),
    ]);
    let m = exporter.scrape_until(WAIT, |m| {
        canary_responses(m, &id) == canary_want && base_responses(m, &id) == base_want
    });
    // The stage's own responses: every line of the group within access_logs.statuses.
    let stage = |status: &str| {
        m.value(
            "aws_apigateway_responses_total",
            &[
                ("api_id", &id),
                ("status", status),
                ("response_type", "none"),
            ],
        )
    };
    assert_eq!(stage("500"), Some(4.0));
    assert_eq!(stage("404"), Some(2.0));
    assert_eq!(
        m.value(
            "aws_apigateway_canary_latency_seconds_count",
            &[("api_id", &id)]
        ),
        Some(8.0),
        "the canary's latency from its lines only"
    );
    let logs_calls: f64 = m
        .find(
            "aws_apigateway_exporter_aws_requests_total",
            &[("operation", "FilterLogEvents"), ("result", "error")],
        )
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(logs_calls, 0.0, "every read of the stage's group succeeds");
}
