//! CloudWatch Metric Streams through the Firehose HTTP endpoint, against the real binary:
//! discovery from LocalStack (REST) and moto (HTTP API), metric data only from Firehose
//! requests built as AWS documents the protocol and both record formats.
//!
//! Emulator gap: LocalStack's Firehose does deliver to HTTP endpoints, but without the
//! `X-Amz-Firehose-Access-Key` and `X-Amz-Firehose-Request-Id` headers and with a timestamp
//! in seconds (localstack/services/firehose/provider.py), and neither emulator runs metric
//! streams; so the requests are generated here, from the documented formats.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::{
    Exporter, Metrics, create_rest_api, create_v2_api, emulator_config, free_port, now_secs, post,
    unique,
};

const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "firehose-test-key-0123456789";
const ACCOUNT: &str = "000000000000";

/// One minute of one metric, as a stream would send it.
#[derive(Clone)]
struct Minute {
    /// (dimension name, value) of the API: ApiName for REST, ApiId for HTTP.
    api: (&'static str, String),
    stage: &'static str,
    metric: &'static str,
    namespace: &'static str,
    /// Unix seconds.
    t: i64,
    sum: f64,
    count: f64,
    max: f64,
}

impl Minute {
    fn dimensions(&self) -> Vec<(String, String)> {
        vec![
            (self.api.0.to_string(), self.api.1.clone()),
            ("Stage".to_string(), self.stage.to_string()),
        ]
    }

    fn json(&self) -> String {
        let dims: BTreeMap<String, String> = self.dimensions().into_iter().collect();
        serde_json::json!({
            "metric_stream_name": "apigw",
            "account_id": ACCOUNT,
            "region": "us-east-1",
            "namespace": self.namespace,
            "metric_name": self.metric,
            "dimensions": dims,
            "timestamp": self.t * 1000,
            "value": {"max": self.max, "min": 0.0, "sum": self.sum, "count": self.count},
            "unit": "Count",
        })
        .to_string()
    }

    fn otel(&self) -> Vec<u8> {
        common::metric_stream::otel_record(&common::metric_stream::OtelPoint {
            account_id: ACCOUNT,
            region: "us-east-1",
            namespace: self.namespace,
            metric_name: self.metric,
            dimensions: &self.dimensions(),
            start: self.t as u64,
            sum: self.sum,
            count: self.count as u64,
            min: 0.0,
            max: self.max,
            quantiles: &[],
        })
    }
}

/// A Firehose delivery of `records` (each one Firehose record's data).
fn deliver(port: u16, id: &str, key: &str, records: &[Vec<u8>], gzip: bool) -> (u16, String) {
    let records: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let body = common::metric_stream::firehose_body(id, now_secs() * 1000, &records).into_bytes();
    let mut headers = vec![
        ("X-Amz-Firehose-Request-Id", id),
        ("X-Amz-Firehose-Access-Key", key),
        ("X-Amz-Firehose-Protocol-Version", "1.0"),
    ];
    let body = if gzip {
        headers.push(("Content-Encoding", "gzip"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&body).expect("gzip");
        gz.finish().expect("gzip")
    } else {
        body
    };
    post(port, "/", &headers, &body).expect("the stream endpoint answers")
}

fn json_records(minutes: &[Minute]) -> Vec<Vec<u8>> {
    // Several metrics per Firehose record, one per line, as metric streams write them.
    vec![
        minutes
            .iter()
            .map(Minute::json)
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
    ]
}

fn otel_records(minutes: &[Minute]) -> Vec<Vec<u8>> {
    vec![minutes.iter().flat_map(Minute::otel).collect()]
}

/// What the exporter should count: per (api dimension, stage, metric), the sum over minutes
/// of each minute's newest aggregate (the one with most samples), less, for a minute before
/// the exporter started (`before` and earlier), its first aggregate: a baseline, as a polled
/// series' first read.
fn truth(
    sent: &[Minute],
    before: i64,
) -> BTreeMap<(String, &'static str, &'static str), (f64, f64)> {
    type Minutes = BTreeMap<(String, &'static str, &'static str, i64), ((f64, f64), (f64, f64))>;
    let mut minutes: Minutes = BTreeMap::new();
    for m in sent {
        let e = minutes
            .entry((m.api.1.clone(), m.stage, m.metric, m.t))
            .or_insert(((m.sum, m.count), (m.sum, m.count)));
        if m.count > e.1.1 || (m.count == e.1.1 && m.sum > e.1.0) {
            e.1 = (m.sum, m.count);
        }
    }
    let mut out = BTreeMap::new();
    for ((api, stage, metric, t), (first, newest)) in minutes {
        let base = if t <= before { first } else { (0.0, 0.0) };
        let e: &mut (f64, f64) = out.entry((api, stage, metric)).or_default();
        e.0 += newest.0 - base.0;
        e.1 += newest.1 - base.1;
    }
    out
}

fn requests(m: &Metrics, api_id: &str, stage: &str) -> f64 {
    m.value(
        "aws_apigateway_requests_total",
        &[("api_id", api_id), ("stage", stage)],
    )
    .unwrap_or(-1.0)
}

fn stream_count(m: &Metrics, family: &str, result: &str) -> f64 {
    m.value(family, &[("result", result)]).unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_counters_equal_the_records_sent_with_duplicates_out_of_order_and_late_records() {
    let tag = unique("st");
    let rest_name = format!("stream-{tag}");
    let rest_id = create_rest_api(&rest_name, &["prod", "beta"]).await;
    let http_id = create_v2_api(&format!("streamh-{tag}"), false, &["$default"]).await;
    let port = free_port();
    let config = emulator_config(
        &tag,
        &format!(
            "stream:\n  enabled: true\n  listen_address: 127.0.0.1:{port}\n  access_key: {KEY}\n"
        ),
    );
    // Every query is answered by the stream (the emulator config reads no percentiles).
    let plan = common::check_config(&config);
    assert!(
        plan.contains("metric stream: 28 queries answered from the stream, 0 polled"),
        "{plan}"
    );
    assert!(
        plan.contains("with a metric stream (stream.percentiles: false)"),
        "{plan}"
    );
    // Minutes count from the one the exporter starts in, taken before it starts: every
    // minute before it is then before the start, however long the start takes.
    let start = (now_secs() / 60) * 60;
    let mut exporter = Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);

    let minute = |ago: i64| start - 60 * ago;
    // Every minute before this one is before the exporter's start.
    let before = minute(1);
    let rest = |stage, metric, t, sum: f64, count: f64, max: f64| Minute {
        api: ("ApiName", rest_name.clone()),
        stage,
        metric,
        namespace: "AWS/ApiGateway",
        t,
        sum,
        count,
        max,
    };
    let http_count = |t, sum: f64| Minute {
        api: ("ApiId", http_id.clone()),
        stage: "$default",
        metric: "Count",
        namespace: "AWS/ApiGateway",
        t,
        sum,
        count: sum,
        max: 1.0,
    };
    let requests_family = "aws_apigateway_exporter_stream_requests_total";
    let records_family = "aws_apigateway_exporter_stream_records_total";
    let mut sent: Vec<Minute> = Vec::new();
    let check = |m: &Metrics, sent: &[Minute]| {
        let want = truth(sent, before);
        let count = |api: &str, stage, metric| {
            want.get(&(api.to_string(), stage, metric))
                .map_or(0.0, |v| v.0)
        };
        let latency = want
            .get(&(rest_name.clone(), "prod", "Latency"))
            .copied()
            .unwrap_or_default();
        requests(m, &rest_id, "prod") == count(&rest_name, "prod", "Count")
            && requests(m, &rest_id, "beta") == count(&rest_name, "beta", "Count")
            && requests(m, &http_id, "$default") == count(&http_id, "$default", "Count")
            && m.value(
                "aws_apigateway_5xx_errors_total",
                &[("api_id", &rest_id), ("stage", "prod")],
            ) == Some(count(&rest_name, "prod", "5XXError"))
            && m.value(
                "aws_apigateway_latency_seconds_count",
                &[("api_id", &rest_id), ("stage", "prod")],
            ) == Some(latency.1)
            && m.value(
                "aws_apigateway_latency_seconds_sum",
                &[("api_id", &rest_id), ("stage", "prod")],
            )
            .is_some_and(|v| (v - latency.0 / 1000.0).abs() < 1e-9)
    };

    // Wrong key and bad bodies first: refused, nothing counted.
    let probe = json_records(&[rest("prod", "Count", minute(0), 1.0, 1.0, 1.0)]);
    let (status, body) = deliver(port, "r0", "wrong-key", &probe, false);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"requestId\":\"r0\""), "{body}");
    let (status, body) = deliver(
        port,
        "r0",
        KEY,
        &[b"{\"not\": \"a metric\"}".to_vec()],
        false,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("errorMessage"), "{body}");

    // Minutes from before the start (1 to 9 minutes ago): their first records are baselines,
    // as a polled series' first read; what later aggregates add counts. JSON with gzip,
    // OpenTelemetry 1.0, JSON without compression.
    let prod_before = vec![
        rest("prod", "Count", minute(3), 10.0, 10.0, 1.0),
        rest("prod", "Count", minute(2), 7.0, 7.0, 1.0),
        rest("prod", "Count", minute(1), 4.0, 4.0, 1.0),
        rest("prod", "Count", minute(9), 3.0, 3.0, 1.0),
        rest("prod", "5XXError", minute(2), 2.0, 7.0, 1.0),
        rest("prod", "Latency", minute(2), 700.0, 7.0, 300.0),
        rest("prod", "Latency", minute(1), 400.0, 4.0, 150.0),
    ];
    let beta_before = vec![
        rest("beta", "Count", minute(2), 5.0, 5.0, 1.0),
        rest("beta", "Count", minute(1), 6.0, 6.0, 1.0),
    ];
    let mut ec2 = http_count(minute(1), 8.0);
    ec2.namespace = "AWS/EC2";
    ec2.metric = "CPUUtilization";
    // The REST API's own aggregate over its stages: no query reads it.
    let api_level = rest("", "Count", minute(1), 10.0, 10.0, 1.0);
    for (id, records, gzip) in [
        ("r1", json_records(&prod_before), true),
        ("r2", otel_records(&beta_before), false),
        (
            "r3",
            json_records(&[http_count(minute(1), 8.0), ec2, api_level]),
            false,
        ),
    ] {
        let (status, body) = deliver(port, id, KEY, &records, gzip);
        assert_eq!(status, 200, "{id}: {body}");
    }
    sent.extend(prod_before.iter().cloned());
    sent.extend(beta_before.iter().cloned());
    sent.push(http_count(minute(1), 8.0));
    let m = exporter.scrape_until(WAIT, |m| {
        stream_count(m, requests_family, "accepted") == 3.0
    });
    let seen = m
        .value("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
        .unwrap_or(0.0);
    let m = exporter.scrape_until(WAIT, |n| {
        n.value("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
            .unwrap_or(0.0)
            >= seen + 2.0
    });
    assert!(check(&m, &sent));
    assert_eq!(requests(&m, &rest_id, "prod"), 0.0);
    // A newer aggregate of minute 3 adds 2; an older one after it, nothing; a record 12
    // minutes old is late (past the lookback).
    let newer = rest("prod", "Count", minute(3), 12.0, 12.0, 1.0);
    let older = rest("prod", "Count", minute(3), 9.0, 9.0, 1.0);
    let late = rest("beta", "Count", minute(12), 9.0, 9.0, 1.0);
    for (id, records) in [
        ("r5", otel_records(std::slice::from_ref(&newer))),
        ("r6", json_records(&[older.clone(), late.clone()])),
    ] {
        let (status, body) = deliver(port, id, KEY, &records, false);
        assert_eq!(status, 200, "{id}: {body}");
    }
    sent.extend([newer, older, late]);
    let m = exporter.scrape_until(WAIT, |m| check(m, &sent));
    assert_eq!(requests(&m, &rest_id, "prod"), 2.0);

    // Minutes since the start count in full: duplicates, a retried request, the same
    // records under a new id, an older aggregate after a newer one.
    let now = minute(0);
    let prod_now = vec![
        rest("prod", "Count", now, 5.0, 5.0, 1.0),
        rest("prod", "5XXError", now, 1.0, 5.0, 1.0),
        rest("prod", "Latency", now, 300.0, 3.0, 200.0),
    ];
    let beta_now = vec![rest("beta", "Count", now, 4.0, 4.0, 1.0)];
    for (id, records, gzip) in [
        ("r8", json_records(&prod_now), true),
        ("r9", otel_records(&beta_now), false),
        ("r10", json_records(&[http_count(now, 6.0)]), false),
        // A retry of r8, answered without reading it.
        ("r8", json_records(&prod_now), true),
        ("r11", json_records(&prod_now), false),
        (
            "r12",
            json_records(&[rest("prod", "Count", now, 7.0, 7.0, 1.0)]),
            false,
        ),
        (
            "r13",
            otel_records(&[rest("prod", "Count", now, 6.0, 6.0, 1.0)]),
            false,
        ),
    ] {
        let (status, body) = deliver(port, id, KEY, &records, gzip);
        assert_eq!(status, 200, "{id}: {body}");
    }
    sent.extend(prod_now.iter().cloned());
    sent.extend(beta_now.iter().cloned());
    sent.push(http_count(now, 6.0));
    sent.push(rest("prod", "Count", now, 7.0, 7.0, 1.0));
    sent.push(rest("prod", "Count", now, 6.0, 6.0, 1.0));
    let m = exporter.scrape_until(WAIT, |m| check(m, &sent));
    assert_eq!(requests(&m, &rest_id, "prod"), 9.0);
    assert_eq!(requests(&m, &rest_id, "beta"), 4.0);
    assert_eq!(requests(&m, &http_id, "$default"), 6.0);
    assert_eq!(stream_count(&m, requests_family, "unauthorized"), 1.0);
    assert_eq!(stream_count(&m, requests_family, "invalid"), 1.0);
    assert_eq!(stream_count(&m, requests_family, "duplicate"), 1.0);
    assert_eq!(stream_count(&m, requests_family, "accepted"), 11.0);
    assert_eq!(stream_count(&m, records_family, "ignored"), 2.0);
    assert_eq!(stream_count(&m, records_family, "late"), 1.0);
    // r6's older aggregate; r11's 3 records; r13's older aggregate.
    assert_eq!(stream_count(&m, records_family, "unchanged"), 5.0);
    assert_eq!(stream_count(&m, records_family, "accepted"), 17.0);

    // A reload (with a rotated access key) keeps the buffer and the counters; what arrives
    // afterwards is counted.
    let rotated = "firehose-rotated-key-9876543210";
    exporter.write_config(&config.replace(KEY, rotated));
    exporter.signal("HUP");
    let reloads = |m: &Metrics| {
        m.value(
            "aws_apigateway_exporter_config_last_reload_success_timestamp_seconds",
            &[],
        )
        .unwrap_or(0.0)
    };
    exporter.scrape_until(WAIT, |m| reloads(m) > 0.0);
    let after = rest("prod", "Count", now, 10.0, 10.0, 1.0);
    let records = json_records(std::slice::from_ref(&after));
    let (status, body) = deliver(port, "r14", KEY, &records, true);
    assert_eq!(status, 401, "the old key after the reload: {body}");
    let (status, body) = deliver(port, "r14", rotated, &records, true);
    assert_eq!(status, 200, "{body}");
    sent.push(after);
    let m = exporter.scrape_until(WAIT, |m| check(m, &sent));
    assert_eq!(requests(&m, &rest_id, "prod"), 12.0);
    // And stays so over further cycles.
    let cycles = |m: &Metrics| {
        m.value("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
            .unwrap_or(0.0)
    };
    let seen = cycles(&m);
    let m = exporter.scrape_until(WAIT, |n| cycles(n) >= seen + 3.0);
    assert!(check(&m, &sent));
    // Nothing was read with GetMetricData, and nothing went down.
    assert_eq!(
        m.value(
            "aws_apigateway_exporter_cloudwatch_metrics_requested_total",
            &[]
        ),
        Some(0.0)
    );
    assert_eq!(
        m.value("aws_apigateway_exporter_period_value_decreases_total", &[]),
        Some(0.0)
    );
    // prod's Count, 5XXError and Latency, beta's Count, the HTTP API's Count.
    assert_eq!(
        m.value("aws_apigateway_exporter_stream_series", &[]),
        Some(5.0)
    );
    exporter.signal("TERM");
    assert_eq!(exporter.wait_exit(Duration::from_secs(15)), Some(0));
}
