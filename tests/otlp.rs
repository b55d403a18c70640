//! OTLP push, end to end: the real binary on the demo source pushes to in-process OTLP
//! receivers — gRPC (the generated `MetricsServiceServer` on hyper's HTTP/2 server, plain
//! and with TLS) and HTTP/protobuf (a hyper HTTP/1.1 server decoding with prost) — and its
//! stderr is captured to check what it logs.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apigateway_exporter::contract;
use bytes::Bytes;
use common::{Metrics, free_port, get};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, metric, number_data_point,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::codegen::Service;

const TOKEN: &str = "Bearer t0ken";
const GRPC_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

// ---------------------------------------------------------------------------------------
// Receivers

/// One export as a receiver saw it.
#[derive(Clone, Debug)]
struct Export {
    received: SystemTime,
    path: String,
    headers: BTreeMap<String, String>,
    request: ExportMetricsServiceRequest,
}

type Log = Arc<Mutex<Vec<Export>>>;

#[derive(Clone)]
enum Protocol {
    Grpc,
    GrpcTls(Arc<rustls::ServerConfig>),
    Http,
}

/// An OTLP receiver on its own runtime; dropping it closes the port and every connection,
/// like a collector going down.
struct Receiver {
    port: u16,
    log: Log,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    /// Listens on `127.0.0.1:port` (0: any free port).
    fn start(port: u16, protocol: Protocol) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        // tokio sets SO_REUSEADDR, so a port can be taken again right after a receiver stops.
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap_or_else(|e| panic!("receiver cannot listen on port {port}: {e}"));
        let port = listener.local_addr().expect("receiver address").port();
        let log: Log = Arc::default();
        runtime.spawn(serve(listener, protocol, Arc::clone(&log)));
        Receiver {
            port,
            log,
            runtime: Some(runtime),
        }
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn exports(&self) -> Vec<Export> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the exports received satisfy `check`; panics with `what` otherwise.
    fn wait(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&[Export]) -> bool,
    ) -> Vec<Export> {
        let deadline = Instant::now() + timeout;
        loop {
            let exports = self.exports();
            if check(&exports) {
                return exports;
            }
            assert!(
                Instant::now() < deadline,
                "receiver on port {}: {what} not seen within {timeout:?} ({} exports received)",
                self.port,
                exports.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, protocol: Protocol, log: Log) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (protocol, log) = (protocol.clone(), Arc::clone(&log));
        tokio::spawn(async move {
            match protocol {
                Protocol::Grpc => serve_grpc(stream, log).await,
                Protocol::GrpcTls(config) => {
                    if let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                        serve_grpc(tls, log).await;
                    }
                }
                Protocol::Http => {
                    let service = service_fn(move |req| http_export(req, Arc::clone(&log)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

/// The generated gRPC service, served over HTTP/2 (h2c, or inside TLS).
async fn serve_grpc<S>(io: S, log: Log)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let server =
        MetricsServiceServer::new(Recorder(log)).accept_compressed(CompressionEncoding::Gzip);
    let service = service_fn(move |req: Request<Incoming>| {
        let mut server = server.clone();
        async move { server.call(req).await }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

struct Recorder(Log);

#[tonic::async_trait]
impl MetricsService for Recorder {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let headers = header_map(&request.metadata().clone().into_headers());
        self.0.lock().unwrap().push(Export {
            received: SystemTime::now(),
            path: GRPC_PATH.to_string(),
            headers,
            request: request.into_inner(),
        });
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// OTLP/HTTP: a protobuf `ExportMetricsServiceRequest`, gzip or not.
async fn http_export(
    req: Request<Incoming>,
    log: Log,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let headers = header_map(req.headers());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .map(|_| Bytes::from(out))
            .unwrap_or_default()
    } else {
        body
    };
    let response = match ExportMetricsServiceRequest::decode(body) {
        Ok(request) => {
            log.lock().unwrap().push(Export {
                received: SystemTime::now(),
                path,
                headers,
                request,
            });
            Response::builder()
                .header("content-type", "application/x-protobuf")
                .body(Full::new(Bytes::from(
                    ExportMetricsServiceResponse::default().encode_to_vec(),
                )))
        }
        Err(e) => Response::builder()
            .status(400)
            .body(Full::new(Bytes::from(e.to_string()))),
    };
    Ok(response.expect("response"))
}

fn header_map(headers: &http::HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or("<binary>").to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The exporter process, with its stderr captured

struct Exporter {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Runs the binary on the demo with `config` and `env` (no other `OTEL_*` variable of
    /// this process leaks in); waits until it listens.
    fn start(config: &str, env: &[(&str, &str)]) -> Exporter {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).expect("write config");
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_apigateway-exporter"));
        command
            .arg(format!("--config.file={}", path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--demo")
            // As verbose as anyone troubleshooting would run it: secrets must not show.
            .arg("--log.level=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")) {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("start exporter");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let exporter = Exporter {
            child,
            port,
            stderr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while get(port, "/-/healthy").is_none() {
            assert!(
                Instant::now() < deadline,
                "exporter did not start listening on {port}; its log:\n{}",
                exporter.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        exporter
    }

    fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `/metrics`, checked to answer 200 within `within`.
    fn scrape_within(&self, within: Duration) -> Metrics {
        let started = Instant::now();
        let (status, body) = get(self.port, "/metrics").expect("scrape");
        let took = started.elapsed();
        assert_eq!(status, 200, "{body}");
        assert!(
            took < within,
            "/metrics took {took:?} (more than {within:?})"
        );
        Metrics::parse(&body)
    }

    fn scrape(&self) -> Metrics {
        self.scrape_within(Duration::from_secs(10))
    }

    fn exports_counted(&self, result: &str) -> f64 {
        self.scrape()
            .value(
                "aws_apigateway_exporter_otlp_exports_total",
                &[("result", result)],
            )
            .unwrap_or(0.0)
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that accepts connections and never answers (a hung collector); closed on drop.
struct BlackHole {
    port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
    held: Arc<Mutex<Vec<std::net::TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (stopping, holder) = (Arc::clone(&stop), Arc::clone(&held));
        // The thread owns the listener, so stopping it closes the port.
        let thread = std::thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => holder.lock().unwrap().push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        BlackHole {
            port,
            stop,
            held,
            thread: Some(thread),
        }
    }

    fn connections(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.held.lock().unwrap().clear();
    }
}

/// A demo config polling every `poll`, pushing to `endpoint` every `interval`.
fn config(poll: &str, endpoint: &str, protocol: &str, interval: &str) -> String {
    format!(
        "poll: {{interval: {poll}}}\n\
         otlp:\n  enabled: true\n  endpoint: {endpoint}\n  protocol: {protocol}\n  \
         interval: {interval}\n  headers: {{authorization: \"{TOKEN}\"}}\n  \
         resource_attributes: {{deployment.environment: test}}\n"
    )
}

// ---------------------------------------------------------------------------------------
// Reading exports

fn string(value: &Option<AnyValue>) -> Option<&str> {
    match value {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        }) => Some(s),
        _ => None,
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                string(&kv.value).expect("string attribute").to_string(),
            )
        })
        .collect()
}

fn resource(e: &Export) -> BTreeMap<String, String> {
    let rm = &e.request.resource_metrics;
    assert_eq!(rm.len(), 1, "one resource per export");
    attributes(&rm[0].resource.as_ref().expect("resource").attributes)
}

fn metrics(e: &Export) -> impl Iterator<Item = &Metric> {
    e.request
        .resource_metrics
        .iter()
        .flat_map(|r| r.scope_metrics.iter())
        .flat_map(|s| s.metrics.iter())
}

fn find<'a>(e: &'a Export, name: &str) -> &'a Metric {
    metrics(e)
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} missing from the export"))
}

fn number(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => f64::NAN,
    }
}

/// The export's API Gateway series as `/metrics` samples: (name, labels) → value.
fn as_samples(e: &Export) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut out = BTreeMap::new();
    for m in metrics(e).filter(|m| is_api_gateway(&m.name)) {
        let points: &[NumberDataPoint] = match &m.data {
            Some(metric::Data::Sum(s)) => &s.data_points,
            Some(metric::Data::Gauge(g)) => &g.data_points,
            other => panic!("{}: unexpected data {other:?}", m.name),
        };
        for p in points.iter().filter(|p| p.flags == 0) {
            let key = (m.name.clone(), attributes(&p.attributes));
            assert!(
                out.insert(key.clone(), number(p)).is_none(),
                "duplicate {key:?}"
            );
        }
    }
    out
}

fn scraped_samples(m: &Metrics) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    m.samples
        .iter()
        .filter(|s| is_api_gateway(&s.name))
        .map(|s| ((s.name.clone(), s.labels.clone()), s.value))
        .collect()
}

fn is_api_gateway(name: &str) -> bool {
    name.starts_with("aws_apigateway_") && !name.starts_with("aws_apigateway_exporter_")
}

/// The collection time of an export (every point carries it).
fn collected(e: &Export) -> SystemTime {
    let nanos = metrics(e)
        .find_map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.data_points.first().map(|p| p.time_unix_nano),
            Some(metric::Data::Gauge(g)) => g.data_points.first().map(|p| p.time_unix_nano),
            _ => None,
        })
        .expect("a point");
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

fn has_requests(e: &Export) -> bool {
    metrics(e).any(|m| {
        m.name == "aws_apigateway_requests_total"
            && matches!(&m.data, Some(metric::Data::Sum(s)) if !s.data_points.is_empty())
    })
}

/// Every API Gateway series of an export equals `/metrics` showing the same snapshot:
/// scrape, take an export collected after that scrape, scrape again; when both scrapes
/// agree (no poll in between), the export must show exactly the same series and values.
fn assert_export_matches_metrics(exporter: &Exporter, receiver: &Receiver) -> Export {
    let grown = |samples: &BTreeMap<(String, BTreeMap<String, String>), f64>, name: &str| {
        samples.iter().any(|((n, _), v)| n == name && *v > 0.0)
    };
    for _ in 0..40 {
        let before = scraped_samples(&exporter.scrape());
        // The first cycle is a baseline (all counters 0): compare once they have grown.
        if !grown(&before, "aws_apigateway_requests_total")
            || !grown(&before, "aws_apigateway_latency_seconds_sum")
        {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let after_before = SystemTime::now();
        let exports = receiver.wait(Duration::from_secs(10), "an export after a scrape", |es| {
            es.iter().any(|e| collected(e) > after_before)
        });
        let before_after = SystemTime::now();
        let after = scraped_samples(&exporter.scrape());
        if before != after {
            continue; // a poll cycle landed in between; try again
        }
        let export = exports
            .iter()
            .rev()
            .find(|e| collected(e) > after_before && collected(e) < before_after)
            .expect("export within the window");
        let pushed = as_samples(export);
        assert!(
            !pushed.is_empty(),
            "the export carries no API Gateway series"
        );
        if pushed != before {
            let only_pushed: Vec<_> = pushed
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .collect();
            let only_scraped: Vec<_> = before
                .iter()
                .filter(|(k, v)| pushed.get(*k) != Some(v))
                .collect();
            panic!(
                "OTLP and /metrics disagree on the same snapshot.\nonly (or different) in OTLP: {only_pushed:#?}\nonly (or different) in /metrics: {only_scraped:#?}"
            );
        }
        return export.clone();
    }
    panic!(
        "no pair of equal scrapes with grown counters (the demo counters stay at 0, or \
         /metrics changed between every pair); cannot compare with an export"
    );
}

/// Types, temporality, units, attributes and resource of a demo export.
fn assert_contract_shape(e: &Export, exporter_port: u16) {
    // Every metric is a family of the contract (or a series of one), with its unit; and
    // every self-metric of the contract is pushed.
    let names: Vec<&str> = e
        .request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| {
            let def = contract::family_of(&m.name)
                .unwrap_or_else(|| panic!("{} is not in the contract", m.name));
            assert_eq!(m.unit, def.unit_of(&m.name), "unit of {}", m.name);
            def.name
        })
        .collect();
    // (Failing discovery reads have a series only while they fail; the demo's never do.)
    for def in contract::ALL.iter().filter(|d| {
        d.level == contract::Level::Exporter
            && d.name != contract::EXPORTER_DISCOVERY_API_FAILURES.name
    }) {
        assert!(names.contains(&def.name), "{} is not pushed", def.name);
    }
    let sum = |name: &str| match &find(e, name).data {
        Some(metric::Data::Sum(s)) => s.clone(),
        other => panic!("{name} is not a Sum: {other:?}"),
    };
    let gauge = |name: &str| match &find(e, name).data {
        Some(metric::Data::Gauge(g)) => g.clone(),
        other => panic!("{name} is not a Gauge: {other:?}"),
    };
    for name in [
        "aws_apigateway_requests_total",
        "aws_apigateway_5xx_errors_total",
        "aws_apigateway_latency_seconds_sum",
        "aws_apigateway_latency_seconds_count",
        "aws_apigateway_integration_latency_seconds_count",
        "aws_apigateway_throttled_requests_total",
        "aws_apigateway_exporter_otlp_exports_total",
        "aws_apigateway_exporter_periods_lost_total",
    ] {
        let s = sum(name);
        assert!(s.is_monotonic, "{name} must be monotonic");
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32,
            "{name} must be cumulative"
        );
        for p in &s.data_points {
            assert!(
                p.start_time_unix_nano > 0 && p.start_time_unix_nano < p.time_unix_nano,
                "{name}: start {} must precede time {}",
                p.start_time_unix_nano,
                p.time_unix_nano
            );
        }
    }
    for name in [
        "aws_apigateway_latency_seconds",
        "aws_apigateway_latency_max_seconds",
        "aws_apigateway_integration_latency_max_seconds",
        "aws_apigateway_api_info",
        "aws_apigateway_stage_info",
        "aws_apigateway_throttle_rate_limit",
        "aws_apigateway_throttle_burst_limit",
        "aws_apigateway_exporter_up",
    ] {
        assert!(!gauge(name).data_points.is_empty(), "{name} has no points");
    }
    let quantiles: Vec<String> = gauge("aws_apigateway_latency_seconds")
        .data_points
        .iter()
        .map(|p| attributes(&p.attributes)["quantile"].clone())
        .collect();
    for q in ["0.5", "0.9", "0.99"] {
        assert!(
            quantiles.iter().any(|x| x == q),
            "quantile {q} missing: {quantiles:?}"
        );
    }
    match &find(e, "aws_apigateway_exporter_cycle_duration_seconds").data {
        Some(metric::Data::Histogram(h)) => assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        ),
        other => panic!("cycle_duration_seconds is not a Histogram: {other:?}"),
    }
    for (name, unit) in [
        ("aws_apigateway_requests_total", "{request}"),
        ("aws_apigateway_processed_bytes_total", "By"),
        ("aws_apigateway_latency_seconds", "s"),
        ("aws_apigateway_latency_seconds_sum", "s"),
        ("aws_apigateway_latency_seconds_count", "{request}"),
        ("aws_apigateway_latency_max_seconds", "s"),
        ("aws_apigateway_throttle_rate_limit", "{request}/s"),
        ("aws_apigateway_api_info", ""),
    ] {
        assert_eq!(find(e, name).unit, unit, "unit of {name}");
    }
    let requests = sum("aws_apigateway_requests_total");
    let stage_level = requests
        .data_points
        .iter()
        .map(|p| attributes(&p.attributes))
        .find(|a| a.contains_key("stage"))
        .expect("a stage-level requests series");
    let keys: Vec<&str> = stage_level.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "account_id",
            "api_id",
            "api_name",
            "api_type",
            "region",
            "stage"
        ],
        "attributes of aws_apigateway_requests_total"
    );
    assert!(["rest", "http"].contains(&stage_level["api_type"].as_str()));

    let r = resource(e);
    assert_eq!(r["service.name"], "apigateway-exporter");
    assert_eq!(r["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["deployment.environment"], "test");
    assert!(
        r["service.instance.id"].ends_with(&format!(":{exporter_port}")),
        "service.instance.id {:?} should be <host>:<port>",
        r["service.instance.id"]
    );
}

fn assert_secret_not_logged(exporter: &Exporter) {
    let logs = exporter.logs();
    assert!(
        logs.contains("OTLP push enabled"),
        "stderr was not captured:\n{logs}"
    );
    assert!(
        !logs.contains("t0ken"),
        "the authorization header leaked into the logs:\n{logs}"
    );
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn grpc_push_carries_the_metric_contract_consistent_with_metrics() {
    let receiver = Receiver::start(0, Protocol::Grpc);
    // Polls every 3 s and pushes every second, so some exports share a snapshot with a
    // pair of scrapes.
    let exporter = Exporter::start(&config("3s", &receiver.url("http"), "grpc", "1s"), &[]);
    receiver.wait(
        Duration::from_secs(30),
        "an export with API Gateway series",
        |es| es.iter().any(has_requests),
    );
    let export = assert_export_matches_metrics(&exporter, &receiver);
    assert_contract_shape(&export, exporter.port);
    assert_eq!(export.path, GRPC_PATH);
    assert_eq!(
        export.headers.get("authorization").map(String::as_str),
        Some(TOKEN)
    );

    // Cumulative series keep their start time from export to export.
    let exports = receiver.exports();
    let starts = |e: &Export| -> BTreeMap<BTreeMap<String, String>, u64> {
        match &find(e, "aws_apigateway_requests_total").data {
            Some(metric::Data::Sum(s)) => s
                .data_points
                .iter()
                .map(|p| (attributes(&p.attributes), p.start_time_unix_nano))
                .collect(),
            _ => BTreeMap::new(),
        }
    };
    let first = exports.iter().find(|e| has_requests(e)).expect("first");
    let last = exports.last().expect("last");
    for (series, start) in starts(first) {
        assert_eq!(
            starts(last).get(&series),
            Some(&start),
            "start of {series:?} moved"
        );
    }
    assert!(exporter.exports_counted("success") >= 2.0);
    assert_eq!(exporter.exports_counted("error"), 0.0);
    assert_secret_not_logged(&exporter);
}

#[test]
fn http_protobuf_push_carries_the_metric_contract_consistent_with_metrics() {
    let receiver = Receiver::start(0, Protocol::Http);
    let exporter = Exporter::start(
        &config("3s", &receiver.url("http"), "http", "1s"),
        &[
            // Filled in from the environment: the config is silent on both.
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-scope-orgid=tenant%2D1"),
        ],
    );
    receiver.wait(
        Duration::from_secs(30),
        "an export with API Gateway series",
        |es| es.iter().any(has_requests),
    );
    let export = assert_export_matches_metrics(&exporter, &receiver);
    assert_contract_shape(&export, exporter.port);
    assert_eq!(export.path, "/v1/metrics");
    let h = &export.headers;
    assert_eq!(
        h.get("content-type").map(String::as_str),
        Some("application/x-protobuf")
    );
    assert_eq!(h.get("content-encoding").map(String::as_str), Some("gzip"));
    assert_eq!(h.get("authorization").map(String::as_str), Some(TOKEN));
    assert_eq!(h.get("x-scope-orgid").map(String::as_str), Some("tenant-1"));
    assert!(exporter.exports_counted("success") >= 2.0);
    assert_secret_not_logged(&exporter);
}

#[test]
fn the_standard_environment_variables_apply_where_the_config_is_silent() {
    let receiver = Receiver::start(0, Protocol::Http);
    let url = receiver.url("http");
    let exporter = Exporter::start(
        "poll: {interval: 1s}\notlp: {enabled: true, interval: 1s}\n",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
                "authorization=Bearer%20t0ken",
            ),
            ("OTEL_SERVICE_NAME", "gateway-metrics"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=staging,team=payments",
            ),
        ],
    );
    let exports = receiver.wait(Duration::from_secs(30), "an export", |es| !es.is_empty());
    let e = &exports[0];
    assert_eq!(e.path, "/v1/metrics", "the generic endpoint is a base URL");
    assert_eq!(
        e.headers.get("authorization").map(String::as_str),
        Some(TOKEN)
    );
    let r = resource(e);
    assert_eq!(r["service.name"], "gateway-metrics");
    assert_eq!(r["deployment.environment"], "staging");
    assert_eq!(r["team"], "payments");
    assert_secret_not_logged(&exporter);
}

#[test]
fn a_collector_that_is_slow_or_down_never_blocks_and_pushing_resumes() {
    // Slow: a listener that accepts and never answers. Exports time out after 3 s; /metrics
    // must answer far sooner and the poll loop must keep going meanwhile.
    let black_hole = BlackHole::start();
    let port = black_hole.port;
    let exporter = Exporter::start(
        &config("1s", &format!("http://127.0.0.1:{port}"), "grpc", "1s"),
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "3000")],
    );
    let requests = |m: &Metrics| -> f64 {
        m.find("aws_apigateway_requests_total", &[])
            .iter()
            .map(|s| s.value)
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = exporter.scrape_within(Duration::from_secs(1));
    loop {
        let m = exporter.scrape_within(Duration::from_secs(1));
        let errors = m
            .value(
                "aws_apigateway_exporter_otlp_exports_total",
                &[("result", "error")],
            )
            .unwrap_or(0.0);
        if errors >= 2.0 && requests(&m) > requests(&first) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no timed-out exports counted, or the poll loop stalled:\n{}",
            m.text
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(black_hole.connections() > 0, "the exporter never connected");

    // Down: nothing listens (connection refused).
    drop(black_hole);
    let errors_before = exporter.exports_counted("error");
    let deadline = Instant::now() + Duration::from_secs(30);
    while exporter.exports_counted("error") < errors_before + 3.0 {
        assert!(Instant::now() < deadline, "refused exports are not counted");
        exporter.scrape_within(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(exporter.exports_counted("success"), 0.0);

    // Up again on the same port: pushing resumes.
    let receiver = Receiver::start(port, Protocol::Grpc);
    receiver.wait(
        Duration::from_secs(30),
        "an export after the outage",
        |es| es.iter().any(has_requests),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while exporter.exports_counted("success") < 2.0 {
        assert!(
            Instant::now() < deadline,
            "successful exports are not counted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Failures are logged with backoff (1st, 2nd, 4th, 8th, …), and the recovery once.
    let logs = exporter.logs();
    let errors = exporter.exports_counted("error");
    let warned = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("OTLP export failed"))
        .count() as f64;
    assert!(warned >= 1.0, "no failure was logged:\n{logs}");
    assert!(
        warned <= errors.log2().floor() + 1.0,
        "{warned} warnings for {errors} failures: not backing off\n{logs}"
    );
    assert!(logs.contains("OTLP export succeeded again"), "{logs}");
    assert_secret_not_logged(&exporter);
}

#[test]
fn sigterm_flushes_a_final_export() {
    let receiver = Receiver::start(0, Protocol::Grpc);
    // A long interval: after the first export, the only one is the shutdown flush.
    let mut exporter = Exporter::start(&config("1s", &receiver.url("http"), "grpc", "60s"), &[]);
    receiver.wait(Duration::from_secs(30), "the first export", |es| {
        !es.is_empty()
    });
    // Let a few poll cycles move the counters past what the first export showed.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        receiver.exports().len(),
        1,
        "a second export before the signal"
    );
    let signalled = SystemTime::now();
    exporter.terminate();
    assert_eq!(
        exporter.wait_exit(Duration::from_secs(20)),
        Some(0),
        "exit after SIGTERM; log:\n{}",
        exporter.logs()
    );
    let exports = receiver.exports();
    assert_eq!(
        exports.len(),
        2,
        "expected exactly the first export and the flush"
    );
    let flush = &exports[1];
    assert!(
        flush.received > signalled,
        "the flush arrived before the signal"
    );
    assert!(
        has_requests(flush),
        "the flush carries no API Gateway series"
    );
    let total = |e: &Export| -> f64 {
        match &find(e, "aws_apigateway_requests_total").data {
            Some(metric::Data::Sum(s)) => s.data_points.iter().map(number).sum(),
            _ => 0.0,
        }
    };
    assert!(
        total(flush) > total(&exports[0]),
        "the flush must show the latest counters (they grow with every demo poll)"
    );
    assert!(
        exporter.logs().contains("final export"),
        "{}",
        exporter.logs()
    );
}

#[test]
fn https_endpoints_use_tls_with_the_system_or_a_given_ca() {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "otlp test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&key, &ca).unwrap();

    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec()];
    let receiver = Receiver::start(0, Protocol::GrpcTls(Arc::new(server)));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let exporter = Exporter::start(
        &config("1s", &receiver.url("https"), "grpc", "1s"),
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file.to_str().unwrap())],
    );
    let exports = receiver.wait(Duration::from_secs(30), "an export over TLS", |es| {
        es.iter().any(has_requests)
    });
    assert_eq!(
        exports[0].headers.get("authorization").map(String::as_str),
        Some(TOKEN)
    );
    assert_secret_not_logged(&exporter);
}
