//! Sustained load on the metric stream endpoint, in process: `cargo run --release --example
//! streamload [metrics] [hours]`. A simulated clock moves one minute per round; each round
//! delivers one minute of every metric as gzipped Firehose requests of 500 JSON records (every
//! tenth request is delivered twice, as a retry), through the same handler the server uses.
//! Prints, per simulated half hour, the metrics held, the resident memory, and the handler's
//! time per request, so that a memory that keeps growing shows.

mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use apigateway_exporter::clock::{Clock, ManualClock};
use apigateway_exporter::config::AccessKey;
use apigateway_exporter::http::firehose::Receiver;
use apigateway_exporter::selfmetrics::SelfMetrics;
use apigateway_exporter::source::stream::StreamBuffer;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use support::rss_mb;

const METRICS: [&str; 5] = [
    "Count",
    "4XXError",
    "5XXError",
    "Latency",
    "IntegrationLatency",
];
const KEY: &str = "load-test-access-key";

fn request(id: &str, lines: &[String]) -> http::Request<Full<Bytes>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = serde_json::json!({
        "requestId": id,
        "timestamp": 0,
        "records": [{"data": b64.encode(lines.join("\n"))}],
    })
    .to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).expect("gzip");
    let body = gz.finish().expect("gzip");
    http::Request::post("/")
        .header("x-amz-firehose-request-id", id)
        .header("x-amz-firehose-access-key", KEY)
        .header("content-encoding", "gzip")
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let metrics: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let hours: i64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(6);
    let stages = metrics.div_ceil(METRICS.len());
    let start = 1_700_000_000 / 60 * 60;
    let clock = Arc::new(ManualClock::new(start));
    let buffer = Arc::new(StreamBuffer::new(start, 25 * 60, 10 * 60));
    let registry = prometheus::Registry::new();
    let self_metrics = SelfMetrics::new(&registry, false).expect("metrics");
    let key: AccessKey = serde_json::from_str(&format!("{KEY:?}")).expect("key");
    let receiver = Receiver::new(
        Arc::clone(&buffer),
        &key,
        self_metrics.clone(),
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    println!(
        "{metrics} metrics ({stages} stages × {}), {hours} simulated hours, 500 records a request, every 10th retried",
        METRICS.len()
    );
    println!("| minute | requests | records | metrics held | RSS MB | handler p50 / p99 ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let (mut requests, mut records, mut n) = (0u64, 0u64, 0u64);
    let mut times: Vec<f64> = Vec::new();
    for minute in 0..hours * 60 {
        let now = start + minute * 60;
        clock.set(now + 90);
        let lines: Vec<String> = (0..stages)
            .flat_map(|s| {
                METRICS.iter().map(move |m| {
                    format!(
                        r#"{{"account_id":"123456789012","region":"us-east-1","namespace":"AWS/ApiGateway","metric_name":"{m}","dimensions":{{"ApiName":"api-{}","Stage":"s{s}"}},"timestamp":{},"value":{{"max":9.0,"min":1.0,"sum":{}.0,"count":{}.0}},"unit":"Count"}}"#,
                        s / 4,
                        now * 1000,
                        s % 97 + 1,
                        s % 89 + 1
                    )
                })
            })
            .take(metrics)
            .collect();
        for chunk in lines.chunks(500) {
            n += 1;
            let id = format!("req-{n}");
            let repeats = if n % 10 == 0 { 2 } else { 1 };
            for _ in 0..repeats {
                let req = request(&id, chunk);
                let t = Instant::now();
                let resp = receiver.handle(req).await;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(resp.status(), 200);
                requests += 1;
            }
            records += chunk.len() as u64;
        }
        if (minute + 1) % 30 == 0 {
            times.sort_by(f64::total_cmp);
            let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
            println!(
                "| {} | {requests} | {records} | {} | {:.1} | {:.2} / {:.2} |",
                minute + 1,
                buffer.series(),
                rss_mb(),
                pct(0.5),
                pct(0.99)
            );
            times.clear();
        }
    }
    let dup = self_metrics
        .stream_requests
        .with_label_values(&["duplicate"])
        .get();
    println!("duplicates answered without reading: {dup}");
}
