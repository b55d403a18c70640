//! Access logs delivered by Firehose (`access_logs.mode: firehose`), against the real binary:
//! REST stages on LocalStack whose access log destination is a delivery stream, and an HTTP
//! API on moto whose log group a subscription filter forwards (CloudWatch Logs' envelope).
//! Lines go to the endpoint's `/access-logs` in Firehose's request envelope, gzipped and
//! plain, one line to a record and several, with a retried delivery, lines delivered twice,
//! out of order, late and too late; every counter equals the lines sent, per status,
//! response type and route, and the canary's and its base's equal their own lines. Then two
//! replicas each receive a share, and Prometheus adds them up as the rules do.
//!
//! Emulator gap: neither emulator delivers access logs (LocalStack's Firehose sends neither
//! the access key nor the request id), so the test builds the deliveries from AWS's
//! documented formats, as it does for metric streams.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use common::metric_stream::firehose_body;
use common::{Exporter, Metrics, create_rest_api, emulator_config, now_secs, unique};

const WAIT: Duration = Duration::from_secs(60);
const KEY: &str = "access-logs-key-0123456789";

/// One access log line, as API Gateway writes it in the README's format.
#[derive(Clone, Debug)]
struct Line {
    id: String,
    api: String,
    stage: String,
    status: u16,
    response_type: &'static str,
    /// REST resource and method, or an HTTP route key.
    route: (&'static str, &'static str),
    at_ms: i64,
    canary: Option<bool>,
    latency_ms: u32,
}

impl Line {
    fn json(&self) -> String {
        let (resource, method, route_key) = if self.route.0.starts_with('/') {
            (self.route.0, self.route.1, "-")
        } else {
            ("-", "-", self.route.0)
        };
        let canary = self
            .canary
            .map_or(String::new(), |c| format!(r#","isCanaryRequest":"{c}""#));
        format!(
            r#"{{"requestId":"{}","requestTimeEpoch":{},"apiId":"{}","stage":"{}","status":{},"responseLatency":"{}","responseType":"{}","resourcePath":"{resource}","httpMethod":"{method}","routeKey":"{route_key}"{canary}}}"#,
            self.id,
            self.at_ms,
            self.api,
            self.stage,
            self.status,
            self.latency_ms,
            self.response_type
        )
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// A CloudWatch Logs subscription's record: the envelope with the lines as events, gzipped.
fn cloudwatch_logs_record(group: &str, lines: &[Line]) -> Vec<u8> {
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::json!({"id": l.id, "timestamp": l.at_ms, "message": l.json()}))
        .collect();
    let envelope = serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": "000000000000",
        "logGroup": group,
        "logStream": "s1",
        "subscriptionFilters": ["to-firehose"],
        "logEvents": events,
    });
    gzip(envelope.to_string().as_bytes())
}

/// Posts one delivery of `records` to `port`'s `/access-logs`, gzipped or not.
fn deliver(port: u16, id: &str, key: &str, records: &[Vec<u8>], gzipped: bool) -> (u16, String) {
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let body = firehose_body(id, now_secs() * 1000, &refs).into_bytes();
    let mut headers = vec![
        ("X-Amz-Firehose-Request-Id", id),
        ("X-Amz-Firehose-Access-Key", key),
    ];
    let body = if gzipped {
        headers.push(("Content-Encoding", "gzip"));
        gzip(&body)
    } else {
        body
    };
    common::post(port, "/access-logs", &headers, &body).expect("POST /access-logs")
}

/// One line per record.
fn records(lines: &[Line]) -> Vec<Vec<u8>> {
    lines.iter().map(|l| l.json().into_bytes()).collect()
}

/// What the counters must show for `lines`: per (api, stage, status, response type) of the
/// counted statuses (>= 400), per route too, and per status of the canary and the base.
#[derive(Default, Debug)]
struct Expected {
    stage: BTreeMap<(String, String, String), f64>,
    route: BTreeMap<(String, String, String, String), f64>,
    canary: BTreeMap<(String, String, String), f64>,
    base: BTreeMap<(String, String, String), f64>,
    canary_latency_ms: f64,
    canary_with_latency: f64,
}

impl Expected {
    fn add(&mut self, l: &Line) {
        let status = l.status.to_string();
        // API Gateway writes `-` where the integration answered: the exporter's `none`.
        let kind = if l.response_type == "-" {
            "none"
        } else {
            l.response_type
        };
        if l.status >= 400 {
            *self
                .stage
                .entry((l.api.clone(), status.clone(), kind.to_string()))
                .or_default() += 1.0;
            *self
                .route
                .entry((
                    l.api.clone(),
                    l.route.0.to_string(),
                    status.clone(),
                    kind.to_string(),
                ))
                .or_default() += 1.0;
        }
        match l.canary {
            Some(true) => {
                *self
                    .canary
                    .entry((l.api.clone(), status, kind.to_string()))
                    .or_default() += 1.0;
                self.canary_latency_ms += f64::from(l.latency_ms);
                self.canary_with_latency += 1.0;
            }
            Some(false) => {
                *self
                    .base
                    .entry((l.api.clone(), status, kind.to_string()))
                    .or_default() += 1.0;
            }
            None => {}
        }
    }

    /// Whether the exporter's counters show exactly this.
    fn matches(&self, m: &Metrics) -> Result<(), String> {
        let r = [("receiver", "r0")];
        for ((api, status, kind), n) in &self.stage {
            let got = m.value(
                "aws_apigateway_responses_total",
                &[
                    ("api_id", api),
                    ("status", status),
                    ("response_type", kind),
                    r[0],
                ],
            );
            if got != Some(*n) {
                return Err(format!("{api} {status} {kind}: {got:?}, want {n}"));
            }
        }
        for ((api, route, status, kind), n) in &self.route {
            // REST resources, and HTTP route keys "GET /items", are labelled resource and
            // method; other route keys ("$default") route.
            let mut labels: Vec<(&str, &str)> = match route.split_once(' ') {
                Some((method, resource)) => vec![("resource", resource), ("method", method)],
                None if route.starts_with('/') => vec![("resource", route)],
                None => vec![("route", route)],
            };
            labels.extend([
                ("api_id", api.as_str()),
                ("status", status.as_str()),
                ("response_type", kind.as_str()),
            ]);
            let got = m.value("aws_apigateway_route_responses_total", &labels);
            if got != Some(*n) {
                return Err(format!("{api} {route} {status} {kind}: {got:?}, want {n}"));
            }
        }
        for (family, want) in [
            ("aws_apigateway_canary_responses_total", &self.canary),
            ("aws_apigateway_canary_base_responses_total", &self.base),
        ] {
            for ((api, status, kind), n) in want {
                let got = m.value(
                    family,
                    &[
                        ("api_id", api),
                        ("status", status),
                        ("response_type", kind),
                        r[0],
                    ],
                );
                if got != Some(*n) {
                    return Err(format!("{family} {api} {status}: {got:?}, want {n}"));
                }
            }
        }
        let count = m.value("aws_apigateway_canary_latency_seconds_count", &r);
        let sum = m.value("aws_apigateway_canary_latency_seconds_sum", &r);
        if count != Some(self.canary_with_latency)
            || sum.is_none_or(|s| (s - self.canary_latency_ms / 1000.0).abs() > 1e-9)
        {
            return Err(format!("canary latency: {count:?} {sum:?}"));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_line_delivered_by_firehose_counts_once_in_its_own_minute() {
    let tag = unique("fh");
    let format = apigateway_exporter::model::rest_access_log_format();
    let stream_arn =
        format!("arn:aws:firehose:us-east-1:000000000000:deliverystream/amazon-apigateway-{tag}");
    let a = create_rest_api(&format!("fha-{tag}"), &["prod"]).await;
    let b = create_rest_api(&format!("fhb-{tag}"), &["prod"]).await;
    let c = create_rest_api(&format!("fhc-{tag}"), &["prod"]).await;
    // c runs a canary on a fifth of its requests.
    common::apigateway()
        .create_deployment()
        .rest_api_id(&c)
        .stage_name("prod")
        .canary_settings(
            aws_sdk_apigateway::types::DeploymentCanarySettings::builder()
                .percent_traffic(20.0)
                .build(),
        )
        .send()
        .await
        .expect("CreateDeployment with canary settings");
    for id in [&a, &b, &c] {
        common::patch_stage(
            id,
            "prod",
            &[
                ("/accessLogSettings/destinationArn", &stream_arn),
                ("/accessLogSettings/format", &format),
            ],
        )
        .await;
    }
    // An HTTP API logs to CloudWatch Logs only; a subscription filter forwards its group.
    let group = format!("/aws/apigateway/{tag}");
    let h = common::create_v2_api(&format!("fhh-{tag}"), false, &[]).await;
    common::apigatewayv2()
        .create_stage()
        .api_id(&h)
        .stage_name("$default")
        .access_log_settings(
            aws_sdk_apigatewayv2::types::AccessLogSettings::builder()
                .destination_arn(format!(
                    "arn:aws:logs:us-east-1:000000000000:log-group:{group}"
                ))
                .format(apigateway_exporter::model::ACCESS_LOG_FORMAT)
                .build(),
        )
        .send()
        .await
        .expect("CreateStage (apigatewayv2)");

    let port = common::free_port();
    let config = emulator_config(
        &tag,
        &format!(
            "access_logs:\n  mode: firehose\n  access_key: {KEY}\n  receiver: r0\nstream:\n  listen_address: 127.0.0.1:{port}\n"
        ),
    );
    let plan = common::check_config(&config);
    assert!(
        plan.contains(&format!(
            "lines delivered by Firehose stream amazon-apigateway-{tag} to the endpoint's /access-logs, format ok"
        )) && plan.contains(&format!("once a subscription filter sends {group} to a Firehose stream"))
            && plan.contains("compared with its base: the stage's own lines split by isCanaryRequest"),
        "{plan}"
    );
    let exporter = Exporter::start(&config, &[]).with_stream_port(port);
    exporter.wait_ready(WAIT);

    let minute = (now_secs() / 60) * 60;
    let mut n = 0;
    let mut line = |api: &str, stage: &str, status, kind, route, ago: i64, canary| {
        n += 1;
        Line {
            id: format!("{tag}-{n}"),
            api: api.to_string(),
            stage: stage.to_string(),
            status,
            response_type: kind,
            route,
            at_ms: (minute - ago) * 1000 + 1234,
            canary,
            latency_ms: 20 + 7 * n,
        }
    };
    let causes = [
        (200, "-"),
        (404, "RESOURCE_NOT_FOUND"),
        (429, "THROTTLED"),
        (429, "QUOTA_EXCEEDED"),
        (500, "-"),
        (504, "INTEGRATION_TIMEOUT"),
    ];
    let mut by_stage: BTreeMap<&str, Vec<Line>> = BTreeMap::new();
    // Out of order: minutes -1, -3, 0, -2 in turn.
    let ago = [60, 180, 0, 120];
    for (i, &(status, kind)) in causes.iter().cycle().take(24).enumerate() {
        let route = if i % 2 == 0 {
            ("/a", "GET")
        } else {
            ("/b", "POST")
        };
        by_stage.entry("a").or_default().push(line(
            &a,
            "prod",
            status,
            kind,
            route,
            ago[i % 4],
            None,
        ));
        by_stage.entry("b").or_default().push(line(
            &b,
            "prod",
            status,
            kind,
            route,
            ago[(i + 1) % 4],
            None,
        ));
        // c: every fourth request to the canary, which fails more.
        let canary = i % 4 == 0;
        let (c_status, c_kind) = if canary && i % 8 == 0 {
            (502, "INTEGRATION_FAILURE")
        } else {
            (status, kind)
        };
        by_stage.entry("c").or_default().push(line(
            &c,
            "prod",
            c_status,
            c_kind,
            route,
            ago[(i + 2) % 4],
            Some(canary),
        ));
        let route = if i % 2 == 0 {
            ("GET /items", "")
        } else {
            ("$default", "")
        };
        by_stage.entry("h").or_default().push(line(
            &h,
            "$default",
            status,
            kind,
            route,
            ago[(i + 3) % 4],
            None,
        ));
    }
    let mut expected = Expected::default();
    for l in by_stage.values().flatten() {
        expected.add(l);
    }

    // a: one line to a record, plain; b: three lines to a record, gzipped; c: half plain,
    // half gzipped, one line to a record; h: CloudWatch Logs envelopes of four events.
    let lines = &by_stage;
    assert_eq!(
        deliver(port, "d-a", KEY, &records(&lines["a"]), false).0,
        200
    );
    let b_records: Vec<Vec<u8>> = lines["b"]
        .chunks(3)
        .map(|chunk| {
            chunk
                .iter()
                .map(Line::json)
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()
        })
        .collect();
    assert_eq!(deliver(port, "d-b", KEY, &b_records, true).0, 200);
    let (c1, c2) = lines["c"].split_at(12);
    assert_eq!(deliver(port, "d-c1", KEY, &records(c1), false).0, 200);
    assert_eq!(deliver(port, "d-c2", KEY, &records(c2), true).0, 200);
    let h_records: Vec<Vec<u8>> = lines["h"]
        .chunks(4)
        .map(|chunk| cloudwatch_logs_record(&group, chunk))
        .collect();
    assert_eq!(deliver(port, "d-h", KEY, &h_records, false).0, 200);
    // A retry of b's delivery (same request id) is answered without being read; two of a's
    // lines delivered again in another delivery count once.
    assert_eq!(deliver(port, "d-b", KEY, &b_records, true).0, 200);
    assert_eq!(
        deliver(port, "d-again", KEY, &records(&lines["a"][..2]), true).0,
        200
    );
    // Refused deliveries keep nothing: a wrong key, a record that is not base64.
    assert_eq!(
        deliver(port, "d-key", "wrong", &records(&lines["a"]), false).0,
        401
    );
    let bad = br#"{"requestId":"d-bad","timestamp":1,"records":[{"data":"not base64!"}]}"#;
    let (status, _) = common::post(
        port,
        "/access-logs",
        &[
            ("X-Amz-Firehose-Request-Id", "d-bad"),
            ("X-Amz-Firehose-Access-Key", KEY),
        ],
        bad,
    )
    .unwrap();
    assert_eq!(status, 400);
    // Metric stream deliveries have no place here.
    let (status, _) = common::post(port, "/", &[], b"{}").unwrap();
    assert_eq!(status, 404);

    let m = exporter.scrape_until(WAIT, |m| expected.matches(m).is_ok());
    let result = |m: &Metrics, family: &str, result: &str| {
        m.value(family, &[("result", result)]).unwrap_or(-1.0)
    };
    let lines_total = "aws_apigateway_exporter_access_log_lines_total";
    let deliveries = "aws_apigateway_exporter_access_log_deliveries_total";
    assert_eq!(result(&m, lines_total, "accepted"), 96.0);
    assert_eq!(result(&m, lines_total, "duplicate"), 2.0);
    assert_eq!(result(&m, deliveries, "accepted"), 6.0);
    assert_eq!(result(&m, deliveries, "duplicate"), 1.0);
    assert_eq!(result(&m, deliveries, "unauthorized"), 1.0);
    assert_eq!(result(&m, deliveries, "invalid"), 1.0);
    // 429s by reason, from the same lines.
    assert_eq!(
        m.value(
            "aws_apigateway_throttled_requests_total",
            &[("api_id", &a), ("reason", "throttled"), ("receiver", "r0")]
        ),
        Some(4.0)
    );
    assert_eq!(
        m.value(
            "aws_apigateway_throttled_requests_total",
            &[("api_id", &h), ("reason", "quota_exceeded")]
        ),
        Some(4.0)
    );

    // Late lines, into minutes already counted, and one too late to be read again.
    let late: Vec<Line> = (0..3)
        .map(|i| line(&b, "prod", 503, "-", ("/a", "GET"), 180 - 60 * i, None))
        .collect();
    for l in &late {
        expected.add(l);
    }
    let too_late = line(&b, "prod", 503, "-", ("/a", "GET"), 900, None);
    let mut last = records(&late);
    last.extend(records(std::slice::from_ref(&too_late)));
    assert_eq!(deliver(port, "d-late", KEY, &last, true).0, 200);
    let m = exporter.scrape_until(WAIT, |m| expected.matches(m).is_ok());
    assert_eq!(result(&m, lines_total, "late"), 1.0);
    assert_eq!(result(&m, lines_total, "accepted"), 99.0);
    // Nothing counted twice, nothing decreased.
    assert_eq!(
        m.value("aws_apigateway_exporter_period_value_decreases_total", &[]),
        Some(0.0)
    );
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(1));
        expected.matches(&exporter.scrape()).expect("stable");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_receiving_replicas_hold_shares_that_the_rules_add_up() {
    let tag = unique("fr");
    let stream_arn =
        format!("arn:aws:firehose:us-east-1:000000000000:deliverystream/amazon-apigateway-{tag}");
    let api = create_rest_api(&format!("fhr-{tag}"), &["prod"]).await;
    common::patch_stage(
        &api,
        "prod",
        &[
            ("/accessLogSettings/destinationArn", &stream_arn),
            (
                "/accessLogSettings/format",
                &apigateway_exporter::model::rest_access_log_format(),
            ),
        ],
    )
    .await;
    let replicas: Vec<Exporter> = ["r0", "r1"]
        .into_iter()
        .map(|receiver| {
            let port = common::free_port();
            Exporter::start(
                &emulator_config(
                    &tag,
                    &format!(
                        "access_logs:\n  mode: firehose\n  access_key: {KEY}\n  receiver: {receiver}\nstream:\n  listen_address: 127.0.0.1:{port}\n"
                    ),
                ),
                &[],
            )
            .with_stream_port(port)
        })
        .collect();
    for r in &replicas {
        r.wait_ready(WAIT);
    }
    let prometheus = common::Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: apigateway-exporter\n    static_configs:\n      - targets: ['127.0.0.1:{}', '127.0.0.1:{}']\n",
        replicas[0].port, replicas[1].port
    ));

    // Firehose spreads deliveries over the replicas behind its endpoint: 5 to r0, 3 to r1,
    // each of 10 lines, 30 % of them 500s.
    let minute = (now_secs() / 60) * 60;
    let mut sent: BTreeMap<String, f64> = BTreeMap::new();
    for d in 0..8 {
        let lines: Vec<Line> = (0..10)
            .map(|i| {
                let status = if i % 10 < 3 { 500 } else { 404 };
                *sent.entry(status.to_string()).or_default() += 1.0;
                Line {
                    id: format!("{tag}-{d}-{i}"),
                    api: api.clone(),
                    stage: "prod".into(),
                    status,
                    response_type: "-",
                    route: ("/a", "GET"),
                    at_ms: (minute - 60) * 1000,
                    canary: None,
                    latency_ms: 10,
                }
            })
            .collect();
        let to = &replicas[usize::from(d >= 5)];
        let port = to.stream_port.expect("stream port");
        assert_eq!(
            deliver(
                port,
                &format!("{tag}-d{d}"),
                KEY,
                &records(&lines),
                d % 2 == 0
            )
            .0,
            200
        );
    }
    // What the rules do: de-duplicate per receiver, then add the receivers up.
    let added = format!(
        "sum without (receiver) (max by (account_id, region, api_id, api_name, api_type, stage, status, response_type, receiver) (aws_apigateway_responses_total{{api_id=\"{api}\"}}))"
    );
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got: BTreeMap<String, f64> = prometheus
            .vector(&added)
            .into_iter()
            .map(|(labels, v)| (labels["status"].clone(), v))
            .collect();
        if got == sent {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus adds up {got:?}, sent {sent:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Each replica holds only its share: de-duplicating without the receiver would keep the
    // larger share, not the whole.
    let shares = prometheus.vector(&format!(
        "aws_apigateway_responses_total{{api_id=\"{api}\", status=\"500\"}}"
    ));
    let mut values: Vec<f64> = shares.iter().map(|(_, v)| *v).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, [9.0, 15.0]);
}
