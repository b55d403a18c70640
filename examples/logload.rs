//! Sustained load on the access log endpoint (`access_logs.mode: firehose`), in process:
//! `cargo run --release --example logload [stages] [lines per second] [minutes]`, by default
//! 1,000 stages, 10,000 lines a second, 10 minutes.
//!
//! A simulated clock moves one second per round. Each round's lines go out the two ways AWS
//! sends them: REST stages' lines as API Gateway's own records (one line each), HTTP stages'
//! as gzipped CloudWatch Logs subscription envelopes of 100 events; 2,000 lines a request,
//! gzipped as Firehose does, through the same handler the server uses. Like Firehose, every
//! 20th request is delivered twice (a retry with the same request id), 0.5 % of the lines
//! come back in a later request (at least once), and 1 % arrive 90 s late. One REST stage in
//! ten has a canary: its lines say `isCanaryRequest`. Once a simulated minute the poll
//! loop's read runs over every stage, as a cycle would.
//!
//! Prints, per simulated minute, the stages held, the resident memory, the handler's time per
//! request and the read's time; at the end, whether every line counted once: the lines the
//! endpoint accepted against the distinct lines sent, and the error responses the read gives
//! against those sent.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use apigateway_exporter::clock::{Clock, ManualClock};
use apigateway_exporter::config::{AccessKey, PollConfig, Statuses};
use apigateway_exporter::http::firehose::{ACCESS_LOGS_PATH, Receiver};
use apigateway_exporter::model::{ApiType, Family, SeriesLabels, Stat};
use apigateway_exporter::plan::Query;
use apigateway_exporter::selfmetrics::SelfMetrics;
use apigateway_exporter::source::delivered::{DeliveredSource, LogBuffer};
use apigateway_exporter::source::{MetricSource, Outcome, Window};
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use rand::{Rng, SeedableRng};
use support::rss_mb;

const KEY: &str = "load-test-access-key";
const LINES_PER_REQUEST: usize = 2_000;
const EVENTS_PER_ENVELOPE: usize = 100;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

/// One line, as it travels.
#[derive(Clone)]
struct Sent {
    stage: usize,
    time_ms: i64,
    text: String,
}

fn stage_id(s: usize) -> (String, String) {
    (format!("api{:04}", s / 4), format!("s{}", s % 4))
}

fn is_rest(s: usize) -> bool {
    s.is_multiple_of(2)
}

fn has_canary(s: usize) -> bool {
    s.is_multiple_of(20)
}

/// A Firehose HTTP endpoint delivery of `lines`: REST lines as records of their own, the
/// others as CloudWatch Logs envelopes.
fn request(id: &str, lines: &[Sent]) -> http::Request<Full<Bytes>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut records = Vec::new();
    let (rest, other): (Vec<&Sent>, Vec<&Sent>) = lines.iter().partition(|l| is_rest(l.stage));
    for l in rest {
        records.push(serde_json::json!({"data": b64.encode(format!("{}\n", l.text))}));
    }
    for chunk in other.chunks(EVENTS_PER_ENVELOPE) {
        let envelope = serde_json::json!({
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": "/aws/apigateway/http",
            "logStream": "stream",
            "subscriptionFilters": ["to-firehose"],
            "logEvents": chunk.iter().enumerate().map(|(i, l)| serde_json::json!({
                "id": i.to_string(), "timestamp": l.time_ms, "message": l.text,
            })).collect::<Vec<_>>(),
        });
        records
            .push(serde_json::json!({"data": b64.encode(gzip(envelope.to_string().as_bytes()))}));
    }
    let body = serde_json::json!({"requestId": id, "timestamp": 0, "records": records}).to_string();
    http::Request::post(ACCESS_LOGS_PATH)
        .header("x-amz-firehose-request-id", id)
        .header("x-amz-firehose-access-key", KEY)
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from(gzip(body.as_bytes()))))
        .expect("request")
}

/// The read of one cycle: the stage's responses, and its canary's and base's where it has one.
fn queries(stages: usize) -> Vec<Query> {
    let mut out = Vec::new();
    for s in 0..stages {
        let (api, stage) = stage_id(s);
        let labels = Arc::new(SeriesLabels {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            api_id: api.clone(),
            api_name: api.clone(),
            api_type: if is_rest(s) {
                ApiType::Rest
            } else {
                ApiType::Http
            },
            stage: Some(stage.clone()),
            route: None,
            cause: None,
            function: None,
            receiver: Some("load".into()),
        });
        let mut families = vec![(Family::Responses, false)];
        if has_canary(s) {
            families.push((Family::CanaryResponses, true));
            families.push((Family::CanaryBaseResponses, true));
        }
        for (family, canary_split) in families {
            out.push(Query {
                namespace: Arc::from("AWS/ApiGateway"),
                family,
                stat: Stat::Sum,
                metric_name: Arc::from("AccessLogLines"),
                dimensions: vec![("ApiId", api.clone()), ("Stage", stage.clone())].into(),
                labels: Arc::clone(&labels),
                log_group: None,
                delivered: true,
                canary_split,
                streamed: false,
                account: None,
            });
        }
    }
    out
}

/// The stages' totals of the responses family's answers, per minute.
fn stage_totals(queries: &[Query], outcomes: &[Outcome]) -> BTreeMap<i64, u64> {
    let mut out = BTreeMap::new();
    for (_, o) in queries
        .iter()
        .zip(outcomes)
        .filter(|(q, _)| q.family == Family::Responses)
    {
        if let Outcome::Split(parts) = o {
            for p in parts.iter().filter(|p| p.route.is_none()) {
                for &(t, v) in &p.points {
                    *out.entry(t).or_default() += v as u64;
                }
            }
        }
    }
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let stages: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let rate: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let minutes: i64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let poll = PollConfig::DEFAULT;
    let (retention, lookback) = (poll.stream_retention(), poll.lookback());
    let start = 1_700_000_000 / 60 * 60;
    let clock = Arc::new(ManualClock::new(start));
    let buffer = Arc::new(LogBuffer::new(retention, lookback));
    let registry = prometheus::Registry::new();
    let self_metrics = SelfMetrics::new(&registry, false).expect("metrics");
    let key: AccessKey = serde_json::from_str(&format!("{KEY:?}")).expect("key");
    let receiver = Receiver::access_logs_only(
        Arc::clone(&buffer),
        &key,
        self_metrics.clone(),
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    let statuses = Statuses::default();
    let source = DeliveredSource {
        buffer: Arc::clone(&buffer),
        statuses: statuses.clone(),
    };
    let plan = queries(stages);
    println!(
        "{stages} stages (half REST, half HTTP; a canary on every 20th), {rate} lines/s for {minutes} simulated minutes, {LINES_PER_REQUEST} lines a request, every 20th request retried, 0.5 % of lines sent twice, 1 % 90 s late"
    );
    println!(
        "| minute | requests | lines | stages held | RSS MB | handler p50 / p99 / max ms | read of {} queries ms |",
        plan.len()
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut rng = rand::rngs::StdRng::seed_from_u64(26);
    let (mut requests, mut n, mut distinct) = (0u64, 0u64, 0u64);
    let mut errors: BTreeMap<i64, u64> = BTreeMap::new();
    let mut delayed: HashMap<i64, Vec<Sent>> = HashMap::new();
    let mut again: Vec<Sent> = Vec::new();
    let mut times: Vec<f64> = Vec::new();
    let mut line_id = 0u64;
    let statuses_sent = [
        (200, "-"),
        (404, "-"),
        (429, "THROTTLED"),
        (500, "-"),
        (504, "INTEGRATION_TIMEOUT"),
    ];
    let end = minutes * 60;
    for second in 0..end + 120 {
        let now = start + second;
        clock.set(now);
        let mut batch: Vec<Sent> = std::mem::take(&mut again);
        batch.extend(delayed.remove(&second).unwrap_or_default());
        if second < end {
            for _ in 0..rate {
                let s = rng.random_range(0..stages);
                let (api, stage) = stage_id(s);
                let pick = rng.random_range(0..1000);
                let (status, response_type) = statuses_sent[match pick {
                    0..950 => 0,
                    950..975 => 1,
                    975..985 => 2,
                    985..995 => 3,
                    _ => 4,
                }];
                line_id += 1;
                let time_ms = now * 1000 + rng.random_range(0..1000);
                let canary = if is_rest(s) {
                    format!(
                        r#","isCanaryRequest":"{}""#,
                        has_canary(s) && rng.random_range(0..10) == 0
                    )
                } else {
                    String::new()
                };
                let route = if is_rest(s) {
                    format!(
                        r#""resourcePath":"/items/{{id}}","httpMethod":"{}","routeKey":"-""#,
                        ["GET", "POST"][line_id as usize % 2]
                    )
                } else {
                    format!(
                        r#""resourcePath":"-","httpMethod":"-","routeKey":"{} /items/{{id}}""#,
                        ["GET", "POST"][line_id as usize % 2]
                    )
                };
                let text = format!(
                    r#"{{"requestId":"{line_id:016x}-{s}","requestTimeEpoch":{time_ms},"apiId":"{api}","stage":"{stage}","status":{status},"responseLatency":"{}","responseType":"{response_type}",{route}{canary}}}"#,
                    rng.random_range(5..900)
                );
                distinct += 1;
                if statuses.contains(status) {
                    *errors.entry(now / 60 * 60).or_default() += 1;
                }
                let sent = Sent {
                    stage: s,
                    time_ms,
                    text,
                };
                match rng.random_range(0..1000) {
                    0..5 => {
                        again.push(sent.clone());
                        batch.push(sent);
                    }
                    5..15 => delayed.entry(second + 90).or_default().push(sent),
                    _ => batch.push(sent),
                }
            }
        }
        for chunk in batch.chunks(LINES_PER_REQUEST) {
            n += 1;
            let id = format!("req-{n}");
            let repeats = if n % 20 == 0 { 2 } else { 1 };
            for _ in 0..repeats {
                let req = request(&id, chunk);
                let t = Instant::now();
                let resp = receiver.handle(req).await;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(resp.status(), 200, "delivery {id}");
                requests += 1;
            }
        }
        if (second + 1) % 60 == 0 {
            let window = Window::at(now, poll.period(), lookback);
            let t = Instant::now();
            let answers = source.fetch(&plan, window).await.expect("read");
            let read_ms = t.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(answers.len(), plan.len());
            times.sort_by(f64::total_cmp);
            let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
            let lines: f64 = self_metrics
                .access_log_lines
                .with_label_values(&["accepted"])
                .get()
                + self_metrics
                    .access_log_lines
                    .with_label_values(&["late"])
                    .get();
            println!(
                "| {} | {requests} | {lines} | {} | {:.1} | {:.1} / {:.1} / {:.1} | {read_ms:.1} |",
                (second + 1) / 60,
                buffer.stages(),
                rss_mb(),
                pct(0.5),
                pct(0.99),
                times.last().copied().unwrap_or_default(),
            );
            times.clear();
        }
    }
    let count = |result: &str| {
        self_metrics
            .access_log_lines
            .with_label_values(&[result])
            .get()
    };
    // Every minute the buffer still holds, read as a catch-up would: each minute's error
    // responses against those sent in it.
    let last = start + end + 119;
    let oldest = (last - retention).div_euclid(60) * 60 + 60;
    let window = Window {
        start: oldest,
        end: last,
        period: 60,
        keep_from: oldest,
    };
    let answers = source.fetch(&plan, window).await.expect("read");
    let read_back = stage_totals(&plan, &answers);
    let sent: BTreeMap<i64, u64> = errors.range(oldest..).map(|(&t, &n)| (t, n)).collect();
    let deliveries = |result: &str| {
        self_metrics
            .access_log_deliveries
            .with_label_values(&[result])
            .get()
    };
    println!(
        "deliveries: {} read, {} retries answered without reading, {} refused",
        deliveries("accepted"),
        deliveries("duplicate"),
        deliveries("invalid") + deliveries("unauthorized") + deliveries("too_large"),
    );
    println!(
        "lines: {distinct} distinct sent; counted {} ({} of them late), {} duplicates dropped, {} out of range, {} invalid, {} refused",
        count("accepted") + count("late"),
        count("late"),
        count("duplicate"),
        count("out_of_range"),
        count("invalid"),
        count("refused"),
    );
    println!(
        "error responses of the {} minutes held: {} sent, {} read back",
        sent.len(),
        sent.values().sum::<u64>(),
        read_back.values().sum::<u64>()
    );
    let exact = count("accepted") + count("late") == distinct as f64
        && read_back == sent
        && count("invalid") + count("refused") + count("out_of_range") == 0.0;
    println!(
        "{}",
        if exact {
            "every line counted exactly once"
        } else {
            "LINES LOST OR COUNTED TWICE"
        }
    );
    if !exact {
        std::process::exit(1);
    }
}
