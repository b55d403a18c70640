//! Whole-process benchmark: runs the release binary of the exporter as a user runs it, against
//! a fast stand-in for AWS served from this process, and prints what the process costs at
//! several fleet sizes, as a Markdown table.
//!
//!     cargo build --release --bin apigateway-exporter
//!     cargo run --release --example procbench
//!     cargo run --release --example procbench -- --sizes 10000 --env MALLOC_ARENA_MAX=2
//!
//! The binary is `target/release/apigateway-exporter`, found next to this example's own
//! executable (`target/release/examples/procbench`); `--exporter PATH` runs another one.
//!
//! For each size (series, as below):
//!
//! 1. the stand-in answers, on 127.0.0.1 (ephemeral port), every call the exporter makes:
//!    STS `GetCallerIdentity` (query protocol, XML); API Gateway `GetRestApis` (none),
//!    `GetAccount`, `GetUsagePlans` (none); API Gateway v2 `GetApis` (paged by
//!    `maxResults`/`nextToken`), `GetStages`, `GetRoutes` and `GetIntegrations` (none) for a
//!    fleet of HTTP APIs with `--stages` stages each (no detailed metrics, no throttles);
//!    CloudWatch `GetMetricData` over Smithy RPC v2 CBOR, every query answered with a point
//!    for each period of the requested window up to now, `Complete`, the two newest periods
//!    still growing with the wall clock (CloudWatch's late data) so every cycle tops counters
//!    up; and `ListMetrics` (none), should it be called. Any other request is an error.
//! 2. the exporter runs with a config pointing every endpoint at the stand-in (default poll
//!    settings but `poll.interval: --interval` and the largest discovery budget (10 calls a
//!    second, so a 100k fleet is discovered in minutes), default latency statistics, no request rate
//!    limit), dummy credentials from the environment, and `--env` settings;
//! 3. once `/-/ready` and the expected series are there, `--warmup` cycles pass; then, from
//!    a moment between two cycles (no GetMetricData for a while, no CPU tick of the exporter)
//!    to another such moment at least `--span` seconds and `--cycles` cycles later:
//!    CPU per cycle is the exporter's utime + stime (`/proc/<pid>/stat`) over the cycles it
//!    counted itself (`aws_apigateway_exporter_cycle_duration_seconds_count`), wall per cycle
//!    from the same histogram's `_sum`; RSS is sampled (`VmRSS`) through the span and read
//!    at its end, between cycles (steady);
//! 4. `--scrapes` sequential scrapes of `/metrics` on one keep-alive connection (or
//!    `--scrape-secs`), latency from writing the request to the last byte of the body; then
//!    `VmHWM` (peak), threads, `RssAnon`/`RssFile` and `/proc/<pid>/smaps_rollup`.
//!
//! Series are the sample lines of `/metrics` without the exporter's own
//! `aws_apigateway_exporter_*` lines (what Prometheus stores): an HTTP stage exports 17 with
//! the default latency statistics (16 from CloudWatch plus `stage_info`), an HTTP API one
//! more (`api_info`), and the account throttle 2; the fleet is sized to come closest to each
//! size and the count is checked in the exposition. The stand-in runs on a 1-worker runtime
//! of this process, whose CPU is not counted: the exporter is the child process alone (they
//! share the machine's cores). Only loopback traffic; every loop is bounded in count and
//! time, and the child is killed on every way out (errors, panics, SIGINT and SIGTERM).

#[path = "../benches/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener as StdTcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use minicbor::data::{IanaTag, Tag, Type};
use minicbor::{Decoder, Encoder};
use support::{count_series, ms, percentile};
use tokio::net::TcpListener;

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "111122223333";
/// Stages of an HTTP API: 16 series from CloudWatch (default latency statistics) and
/// `stage_info`.
const SERIES_PER_STAGE: usize = 17;
/// `aws_apigateway_account_throttle_*` (rate and burst), from GetAccount.
const ACCOUNT_SERIES: usize = 2;
const CYCLES_METRIC: &str = "aws_apigateway_exporter_cycle_duration_seconds_count";
const CYCLE_SECONDS_METRIC: &str = "aws_apigateway_exporter_cycle_duration_seconds_sum";
const SKIPPED_METRIC: &str = "aws_apigateway_exporter_cycles_skipped_total";
/// Between two cycles: no GetMetricData answered for this long...
const IDLE_CALLS: Duration = Duration::from_millis(300);
/// ... and no CPU tick of the exporter for this long.
const IDLE_CPU: Duration = Duration::from_millis(150);

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    sizes: Vec<usize>,
    stages: usize,
    interval_secs: u64,
    warmup: u64,
    cycles: u64,
    span_secs: f64,
    max_span_secs: f64,
    scrapes: usize,
    scrape_secs: f64,
    ready_secs: f64,
    exporter: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sizes: vec![1_000, 10_000, 100_000],
            stages: 2,
            interval_secs: 2,
            warmup: 3,
            cycles: 10,
            span_secs: 30.0,
            max_span_secs: 300.0,
            scrapes: 200,
            scrape_secs: 60.0,
            ready_secs: 300.0,
            exporter: None,
            env: Vec::new(),
        }
    }
}

const USAGE: &str = "usage: procbench [--sizes 1000,10000,100000] [--stages 2] [--interval 2] \
     [--warmup 3] [--cycles 10] [--span 30] [--max-span 300] [--scrapes 200] \
     [--scrape-secs 60] [--ready-secs 300] [--exporter PATH] [--env NAME=VALUE]...";

fn parse_args() -> Result<Options> {
    fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T> {
        v.trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{flag}: not a number: {v}\n{USAGE}"))
    }
    let mut o = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value\n{USAGE}"))?;
        match arg.as_str() {
            "--sizes" => {
                o.sizes = value
                    .split(',')
                    .map(|s| number(&arg, s))
                    .collect::<Result<_>>()?
            }
            "--stages" => o.stages = number(&arg, &value)?,
            "--interval" => o.interval_secs = number(&arg, &value)?,
            "--warmup" => o.warmup = number(&arg, &value)?,
            "--cycles" => o.cycles = number(&arg, &value)?,
            "--span" => o.span_secs = number(&arg, &value)?,
            "--max-span" => o.max_span_secs = number(&arg, &value)?,
            "--scrapes" => o.scrapes = number(&arg, &value)?,
            "--scrape-secs" => o.scrape_secs = number(&arg, &value)?,
            "--ready-secs" => o.ready_secs = number(&arg, &value)?,
            "--exporter" => o.exporter = Some(PathBuf::from(value)),
            "--env" => {
                let (name, v) = value
                    .split_once('=')
                    .with_context(|| format!("--env {value}: write NAME=VALUE"))?;
                o.env.push((name.to_string(), v.to_string()));
            }
            _ => bail!("unknown argument {arg}\n{USAGE}"),
        }
    }
    ensure!(
        !o.sizes.is_empty() && o.sizes.iter().all(|&s| (1..=1_000_000).contains(&s)),
        "--sizes: between 1 and 1,000,000 series each"
    );
    o.stages = o.stages.clamp(1, 20);
    o.interval_secs = o.interval_secs.clamp(1, 600);
    o.warmup = o.warmup.clamp(1, 100);
    o.cycles = o.cycles.clamp(1, 10_000);
    o.span_secs = o.span_secs.clamp(0.0, 3600.0);
    o.max_span_secs = o.max_span_secs.clamp(o.span_secs + 1.0, 7200.0);
    o.scrapes = o.scrapes.clamp(1, 100_000);
    o.scrape_secs = o.scrape_secs.clamp(0.1, 600.0);
    o.ready_secs = o.ready_secs.clamp(1.0, 3600.0);
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// The fleet and the stand-in for AWS
// ---------------------------------------------------------------------------------------

/// HTTP APIs `0..apis`, each with the same stages.
#[derive(Debug, Clone)]
struct Fleet {
    apis: usize,
    stages: Vec<String>,
}

impl Fleet {
    /// The fleet whose exposition comes closest to `series`.
    fn for_series(series: usize, stages: usize) -> Fleet {
        let per_api = 1 + SERIES_PER_STAGE * stages;
        let apis = (series.saturating_sub(ACCOUNT_SERIES) + per_api / 2) / per_api;
        let names = ["prod", "staging", "dev", "test"];
        Fleet {
            apis: apis.max(1),
            stages: (0..stages)
                .map(|i| match names.get(i) {
                    Some(n) => n.to_string(),
                    None => format!("stage{i}"),
                })
                .collect(),
        }
    }

    fn expected_series(&self) -> usize {
        self.apis * (1 + SERIES_PER_STAGE * self.stages.len()) + ACCOUNT_SERIES
    }

    fn api_id(i: usize) -> String {
        format!("{i:010x}")
    }

    fn api_index(id: &str) -> Option<usize> {
        (id.len() == 10)
            .then(|| usize::from_str_radix(id, 16).ok())
            .flatten()
    }
}

/// What the stand-in has answered, read by the measuring thread.
struct StandIn {
    fleet: Fleet,
    started: Instant,
    metric_data_calls: AtomicU64,
    metric_data_queries: AtomicU64,
    /// When the last GetMetricData was answered: milliseconds since `started`.
    last_metric_data_ms: AtomicU64,
    other_calls: AtomicU64,
    /// Requests it could not answer (the exporter called something unexpected).
    unexpected: Mutex<Vec<String>>,
}

type Body = Full<Bytes>;

impl StandIn {
    fn new(fleet: Fleet) -> StandIn {
        StandIn {
            fleet,
            started: Instant::now(),
            metric_data_calls: AtomicU64::new(0),
            metric_data_queries: AtomicU64::new(0),
            last_metric_data_ms: AtomicU64::new(0),
            other_calls: AtomicU64::new(0),
            unexpected: Mutex::new(Vec::new()),
        }
    }

    fn since_last_metric_data(&self) -> Duration {
        let last = Duration::from_millis(self.last_metric_data_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    fn unexpected(&self) -> Vec<String> {
        self.unexpected
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default()
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let what = format!("{} {}", parts.method, parts.uri);
        let answer = match body.collect().await {
            Ok(body) => self.answer(&parts.method, &parts.uri, &body.to_bytes()),
            Err(e) => Err(anyhow::anyhow!("reading the body: {e}")),
        };
        answer.unwrap_or_else(|e| {
            let message = format!("{what}: {e:#}");
            if let Ok(mut u) = self.unexpected.lock()
                && u.len() < 20
            {
                u.push(message.clone());
            }
            let mut r = Response::new(Full::new(Bytes::from(message)));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        })
    }

    fn answer(&self, method: &Method, uri: &hyper::Uri, body: &[u8]) -> Result<Response<Body>> {
        const CLOUDWATCH: &str = "/service/GraniteServiceVersion20100801/operation/";
        let path = uri.path();
        let query = uri.query().unwrap_or_default();
        if *method == Method::POST
            && let Some(operation) = path.strip_prefix(CLOUDWATCH)
        {
            return match operation {
                "GetMetricData" => self.get_metric_data(body),
                "ListMetrics" => {
                    self.other_calls.fetch_add(1, Ordering::Relaxed);
                    let mut e = Encoder::new(Vec::new());
                    e.map(1)?.str("Metrics")?.array(0)?;
                    cbor(e.into_writer())
                }
                _ => bail!("no such CloudWatch operation here"),
            };
        }
        self.other_calls.fetch_add(1, Ordering::Relaxed);
        match (method, path) {
            (&Method::POST, "/") if contains(body, b"Action=GetCallerIdentity") => {
                let xml = format!(
                    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
                     <GetCallerIdentityResult><Arn>arn:aws:iam::{ACCOUNT}:user/procbench</Arn>\
                     <UserId>AIDAPROCBENCH</UserId><Account>{ACCOUNT}</Account>\
                     </GetCallerIdentityResult><ResponseMetadata><RequestId>procbench</RequestId>\
                     </ResponseMetadata></GetCallerIdentityResponse>"
                );
                respond("text/xml", xml.into_bytes())
            }
            (&Method::GET, "/restapis" | "/usageplans") => json(&serde_json::json!({"item": []})),
            (&Method::GET, "/account") => json(&serde_json::json!({
                "apiKeyVersion": "4",
                "features": ["UsagePlans"],
                "throttleSettings": {"burstLimit": 5000, "rateLimit": 10000.0},
            })),
            (&Method::GET, "/v2/apis") => {
                let (range, next) = page(self.fleet.apis, query, 100)?;
                let items: Vec<serde_json::Value> = range
                    .map(|i| {
                        let id = Fleet::api_id(i);
                        serde_json::json!({
                            "apiEndpoint": format!("https://{id}.execute-api.{REGION}.amazonaws.com"),
                            "apiId": id,
                            "apiKeySelectionExpression": "$request.header.x-api-key",
                            "disableExecuteApiEndpoint": false,
                            "name": format!("service-{i}"),
                            "protocolType": "HTTP",
                            "routeSelectionExpression": "$request.method $request.path",
                            "tags": {},
                        })
                    })
                    .collect();
                json(&with_next(serde_json::json!({"items": items}), next))
            }
            (&Method::GET, p) if p.starts_with("/v2/apis/") => {
                let rest = &p["/v2/apis/".len()..];
                let (id, what) = rest.split_once('/').context("no such path")?;
                Fleet::api_index(id)
                    .filter(|&i| i < self.fleet.apis)
                    .context("no such API")?;
                match what {
                    "stages" => {
                        let (range, next) = page(self.fleet.stages.len(), query, 25)?;
                        let items: Vec<serde_json::Value> = self.fleet.stages[range]
                            .iter()
                            .map(|name| {
                                serde_json::json!({
                                    "apiGatewayManaged": false,
                                    "autoDeploy": true,
                                    "defaultRouteSettings": {"detailedMetricsEnabled": false},
                                    "routeSettings": {},
                                    "stageName": name,
                                    "stageVariables": {},
                                    "tags": {},
                                })
                            })
                            .collect();
                        json(&with_next(serde_json::json!({"items": items}), next))
                    }
                    "routes" | "integrations" => json(&serde_json::json!({"items": []})),
                    _ => bail!("no such path"),
                }
            }
            _ => bail!("not an operation the stand-in knows"),
        }
    }

    fn get_metric_data(&self, body: &[u8]) -> Result<Response<Body>> {
        let request = MetricDataRequest::decode(body).context("GetMetricData request")?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
        let answer = request.answer(now)?;
        self.metric_data_calls.fetch_add(1, Ordering::Relaxed);
        self.metric_data_queries
            .fetch_add(request.queries.len() as u64, Ordering::Relaxed);
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_metric_data_ms.fetch_max(ms, Ordering::Relaxed);
        cbor(answer)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The items of one page: `maxResults` (else `default`) from the offset in `nextToken`.
fn page(
    len: usize,
    query: &str,
    default: usize,
) -> Result<(std::ops::Range<usize>, Option<String>)> {
    let mut size = default;
    let mut from: usize = 0;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("maxResults", v)) => size = v.parse().context("maxResults")?,
            Some(("nextToken", v)) => from = v.parse().context("nextToken")?,
            _ => {}
        }
    }
    let end = from.saturating_add(size.max(1)).min(len);
    let from = from.min(end);
    Ok((from..end, (end < len).then(|| end.to_string())))
}

fn with_next(mut v: serde_json::Value, next: Option<String>) -> serde_json::Value {
    if let (Some(next), Some(map)) = (next, v.as_object_mut()) {
        map.insert("nextToken".into(), next.into());
    }
    v
}

fn respond(content_type: &str, body: Vec<u8>) -> Result<Response<Body>> {
    Ok(Response::builder()
        .header("content-type", content_type)
        .header("x-amzn-requestid", "procbench")
        .body(Full::new(Bytes::from(body)))?)
}

fn json(v: &serde_json::Value) -> Result<Response<Body>> {
    respond("application/json", serde_json::to_vec(v)?)
}

fn cbor(body: Vec<u8>) -> Result<Response<Body>> {
    let mut r = respond("application/cbor", body)?;
    r.headers_mut().insert(
        "smithy-protocol",
        hyper::header::HeaderValue::from_static("rpc-v2-cbor"),
    );
    Ok(r)
}

/// One query of a GetMetricData request, as far as the answer needs it.
struct MetricQuery<'b> {
    id: &'b str,
    period: i64,
    stat: &'b str,
    /// The CBOR of the query's `Metric` (namespace, name, dimensions): what sets its values
    /// apart from other series'.
    metric: &'b [u8],
}

/// A GetMetricData request (`GetMetricDataInput` as the SDK's CBOR serializer writes it).
struct MetricDataRequest<'b> {
    start: i64,
    end: i64,
    queries: Vec<MetricQuery<'b>>,
}

/// Calls `f` with each key of the map at the decoder's position (definite or indefinite
/// length), the decoder at the key's value; `f` consumes the value.
fn entries<'b>(
    d: &mut Decoder<'b>,
    mut f: impl FnMut(&mut Decoder<'b>, &'b str) -> Result<()>,
) -> Result<()> {
    match d.map()? {
        Some(n) => {
            for _ in 0..n {
                let key = d.str()?;
                f(d, key)?;
            }
        }
        None => {
            while d.datatype()? != Type::Break {
                let key = d.str()?;
                f(d, key)?;
            }
            d.set_position(d.position() + 1);
        }
    }
    Ok(())
}

/// Calls `f` with the decoder at each item of the array at its position.
fn items<'b>(d: &mut Decoder<'b>, mut f: impl FnMut(&mut Decoder<'b>) -> Result<()>) -> Result<()> {
    match d.array()? {
        Some(n) => {
            for _ in 0..n {
                f(d)?;
            }
        }
        None => {
            while d.datatype()? != Type::Break {
                f(d)?;
            }
            d.set_position(d.position() + 1);
        }
    }
    Ok(())
}

/// A Smithy timestamp: tag 1, then epoch seconds as an integer or a float.
fn timestamp(d: &mut Decoder<'_>) -> Result<i64> {
    let tag = d.tag()?;
    ensure!(
        tag == Tag::from(IanaTag::Timestamp),
        "expected tag 1, got {tag:?}"
    );
    Ok(match d.datatype()? {
        Type::F16 | Type::F32 | Type::F64 => d.f64()?.floor() as i64,
        _ => d.i64()?,
    })
}

impl<'b> MetricDataRequest<'b> {
    fn decode(body: &'b [u8]) -> Result<MetricDataRequest<'b>> {
        let mut d = Decoder::new(body);
        let (mut start, mut end) = (None, None);
        let mut queries = Vec::new();
        entries(&mut d, |d, key| {
            match key {
                "StartTime" => start = Some(timestamp(d)?),
                "EndTime" => end = Some(timestamp(d)?),
                "MetricDataQueries" => items(d, |d| {
                    queries.push(MetricQuery::decode(d, body)?);
                    Ok(())
                })?,
                _ => d.skip()?,
            }
            Ok(())
        })?;
        Ok(MetricDataRequest {
            start: start.context("no StartTime")?,
            end: end.context("no EndTime")?,
            queries,
        })
    }

    /// The CBOR of `GetMetricDataOutput`: for each query, a point for every period of the
    /// window that has begun by `now`, `Complete`.
    fn answer(&self, now: f64) -> Result<Vec<u8>> {
        let mut e = Encoder::new(Vec::with_capacity(64 + self.queries.len() * 256));
        e.map(2)?
            .str("MetricDataResults")?
            .array(self.queries.len() as u64)?;
        for q in &self.queries {
            let period = q.period.max(1);
            let first = self.start.div_euclid(period) * period;
            let first = if first < self.start {
                first + period
            } else {
                first
            };
            let times: Vec<i64> = (first..self.end)
                .step_by(usize::try_from(period).unwrap_or(60))
                .filter(|&t| t as f64 <= now)
                .collect();
            let spread = (fnv1a(q.metric) % 1000) as f64;
            e.map(4)?.str("Id")?.str(q.id)?;
            e.str("Timestamps")?.array(times.len() as u64)?;
            for &t in &times {
                e.tag(IanaTag::Timestamp)?.i64(t)?;
            }
            e.str("Values")?.array(times.len() as u64)?;
            for &t in &times {
                e.f64(value(q.stat, spread, t, period, now))?;
            }
            e.str("StatusCode")?.str("Complete")?;
        }
        e.str("Messages")?.array(0)?;
        Ok(e.into_writer())
    }
}

impl<'b> MetricQuery<'b> {
    fn decode(d: &mut Decoder<'b>, body: &'b [u8]) -> Result<MetricQuery<'b>> {
        let (mut id, mut period, mut stat, mut metric) = (None, None, None, &body[..0]);
        entries(d, |d, key| {
            match key {
                "Id" => id = Some(d.str()?),
                "MetricStat" => entries(d, |d, key| {
                    match key {
                        "Period" => period = Some(d.i64()?),
                        "Stat" => stat = Some(d.str()?),
                        "Metric" => {
                            let from = d.position();
                            d.skip()?;
                            metric = &body[from..d.position()];
                        }
                        _ => d.skip()?,
                    }
                    Ok(())
                })?,
                _ => d.skip()?,
            }
            Ok(())
        })?;
        Ok(MetricQuery {
            id: id.context("a query without Id")?,
            period: period.context("a query without MetricStat.Period")?,
            stat: stat.context("a query without MetricStat.Stat")?,
            metric,
        })
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The value of a period starting at `t`: counts arrive over the period and the one after
/// it, so the two newest periods grow with `now` and never shrink.
fn value(stat: &str, spread: f64, t: i64, period: i64, now: f64) -> f64 {
    let base = 100.0 + spread;
    let arrived = ((now - t as f64) / (2 * period) as f64).clamp(0.1, 1.0);
    let minute = (t.div_euclid(period) % 7) as f64;
    match stat {
        "Sum" | "SampleCount" => ((base + minute) * 10.0 * arrived).floor(),
        "Maximum" => base * 3.0 + minute,
        p => match p.strip_prefix('p').and_then(|n| n.parse::<f64>().ok()) {
            Some(pct) => base * pct / 100.0 + minute,
            None => base,
        },
    }
}

async fn serve(listener: TcpListener, stand_in: Arc<StandIn>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stand_in = Arc::clone(&stand_in);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let stand_in = Arc::clone(&stand_in);
                async move { Ok::<_, Infallible>(stand_in.handle(req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Stops a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------------------------------
// The exporter process
// ---------------------------------------------------------------------------------------

/// The pid of the running exporter (0: none), for [`kill_child_on_signal`].
static CHILD: AtomicU32 = AtomicU32::new(0);

/// On SIGINT or SIGTERM, kills the running exporter before exiting: `Drop` does not run
/// when a signal ends the process.
async fn kill_child_on_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    let pid = CHILD.swap(0, Ordering::SeqCst);
    if pid != 0 {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    eprintln!("procbench: interrupted");
    std::process::exit(130);
}

/// The exporter binary, killed when dropped.
struct Exporter {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        CHILD.store(0, Ordering::SeqCst);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exporter {
    fn start(binary: &Path, dir: &Path, aws: &str, o: &Options) -> Result<Exporter> {
        let config = format!(
            "poll:\n  interval: {interval}s\n\
             discovery:\n  max_requests_per_second: 10\n\
             targets:\n  - regions: [{REGION}]\n\
             aws:\n  max_requests_per_second: 0\n  endpoints:\n    cloudwatch: {aws}\n    \
             apigateway: {aws}\n    apigatewayv2: {aws}\n    sts: {aws}\n    logs: {aws}\n",
            interval = o.interval_secs,
        );
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, config)?;
        let log = dir.join("exporter.log");
        let port = StdTcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .env("AWS_ACCESS_KEY_ID", "procbench")
            .env("AWS_SECRET_ACCESS_KEY", "procbench")
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        for (name, value) in &o.env {
            command.env(name, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        CHILD.store(child.id(), Ordering::SeqCst);
        Ok(Exporter { child, port, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the end of its log, when the process has exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the exporter exited ({status}); its log ends:\n{}",
                tail.join("\n")
            );
        }
        Ok(())
    }

    fn get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        let mut conn = Conn::open(self.port)?;
        let mut body = Vec::new();
        let status = conn.get(path, &mut body)?;
        Ok((status, body))
    }

    fn scrape(&self) -> Result<Exposition> {
        let (status, body) = self.get("/metrics")?;
        ensure!(status == 200, "/metrics answered {status}");
        Ok(Exposition(String::from_utf8(body)?))
    }

    /// `/proc/<pid>/status` fields in kB (`VmRSS`, `VmHWM`, `RssAnon`, ...) and `Threads`.
    fn status(&self) -> Result<BTreeMap<String, u64>> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                let v = v.trim().trim_end_matches("kB").trim().parse().ok()?;
                Some((k.to_string(), v))
            })
            .collect())
    }

    fn status_mb(&self, field: &str) -> Result<f64> {
        let kb = self
            .status()?
            .get(field)
            .copied()
            .with_context(|| format!("{field} in /proc/<pid>/status"))?;
        Ok(kb as f64 / 1024.0)
    }

    /// utime + stime, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
    fn cpu_ticks(&self) -> Result<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        let rest = text
            .rfind(')')
            .map(|i| &text[i + 1..])
            .context("/proc/<pid>/stat format")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| -> Result<u64> {
            Ok(fields
                .get(i)
                .context("/proc/<pid>/stat: too few fields")?
                .parse()?)
        };
        // After the command name: state is field 3, utime 14 and stime 15.
        Ok(field(11)? + field(12)?)
    }

    /// Waits, at most until `deadline`, for a moment between two cycles: no GetMetricData
    /// answered for [`IDLE_CALLS`] and no CPU tick for [`IDLE_CPU`]. Whether it found one.
    fn wait_idle(&self, stand_in: &StandIn, deadline: Instant) -> Result<bool> {
        let mut ticks = self.cpu_ticks()?;
        let mut still_since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
            let now_ticks = self.cpu_ticks()?;
            if now_ticks != ticks {
                ticks = now_ticks;
                still_since = Instant::now();
            }
            if still_since.elapsed() >= IDLE_CPU && stand_in.since_last_metric_data() >= IDLE_CALLS
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A `/metrics` text.
struct Exposition(String);

impl Exposition {
    /// Sample lines that are not the exporter's own.
    fn series(&self) -> usize {
        count_series(&self.0)
    }

    /// The value of an unlabelled sample.
    fn value(&self, name: &str) -> Option<f64> {
        self.0.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(' ')?;
            rest.trim().parse().ok()
        })
    }

    fn cycles(&self) -> Result<u64> {
        let v = self
            .value(CYCLES_METRIC)
            .with_context(|| format!("{CYCLES_METRIC} not in /metrics"))?;
        Ok(v as u64)
    }
}

/// A keep-alive HTTP/1.1 connection to the exporter.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            reader: BufReader::with_capacity(256 * 1024, stream),
        })
    }

    /// One GET as Prometheus sends it; the body lands in `body`.
    fn get(&mut self, path: &str, body: &mut Vec<u8>) -> Result<u16> {
        write!(
            self.reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: procbench\r\n\
             Accept: text/plain;version=0.0.4;q=0.9,*/*;q=0.1\r\n\
             X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"
        )?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            ensure!(self.reader.read_line(&mut line)? > 0, "connection closed");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = Some(value.trim().parse::<usize>()?);
            }
        }
        let length = length.context("no content-length")?;
        body.resize(length, 0);
        self.reader.read_exact(body)?;
        Ok(status)
    }
}

// ---------------------------------------------------------------------------------------
// One size
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Row {
    series: usize,
    apis: usize,
    stages: usize,
    calls_per_cycle: f64,
    queries_per_cycle: f64,
    cycles: u64,
    span_secs: f64,
    aligned: bool,
    skipped: u64,
    cpu_ms_per_cycle: f64,
    /// One clock tick over the cycles measured.
    cpu_resolution_ms: f64,
    wall_ms_per_cycle: f64,
    rss_steady_mb: f64,
    rss_span_max_mb: f64,
    hwm_after_cycles_mb: f64,
    hwm_mb: f64,
    rss_anon_mb: f64,
    rss_file_mb: f64,
    threads: u64,
    scrapes: usize,
    scrape_p50_ms: f64,
    scrape_p99_ms: f64,
    scrape_max_ms: f64,
    scrape_bytes: usize,
    smaps: String,
}

/// Polls `check` every `every` until it says done, the exporter dies or `timeout` passes.
fn wait_for<T>(
    exporter: &mut Exporter,
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut(&Exporter) -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        exporter.check_alive()?;
        if let Some(v) = check(exporter) {
            return Ok(v);
        }
        ensure!(Instant::now() < deadline, "{what}: not after {timeout:?}");
        std::thread::sleep(every);
    }
}

fn measure(
    size: usize,
    o: &Options,
    binary: &Path,
    rt: &tokio::runtime::Runtime,
    clk_tck: f64,
) -> Result<Row> {
    let fleet = Fleet::for_series(size, o.stages);
    let expected = fleet.expected_series();
    eprintln!(
        "procbench: {size} series: {} HTTP APIs × {} stages, {expected} series expected",
        fleet.apis,
        fleet.stages.len()
    );
    let stand_in = Arc::new(StandIn::new(fleet.clone()));
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let aws = format!("http://{}", listener.local_addr()?);
    let _server = AbortOnDrop(rt.spawn(serve(listener, Arc::clone(&stand_in))));
    let dir = tempfile::tempdir()?;
    let mut exporter = Exporter::start(binary, dir.path(), &aws, o)?;
    let interval = Duration::from_secs(o.interval_secs);

    // Ready, with every series.
    let started = Instant::now();
    let ready_timeout = Duration::from_secs_f64(o.ready_secs);
    wait_for(
        &mut exporter,
        "/-/ready",
        ready_timeout,
        Duration::from_millis(100),
        |e| (e.get("/-/ready").ok()?.0 == 200).then_some(()),
    )?;
    let ready_after = started.elapsed();
    let series = wait_for(
        &mut exporter,
        "the expected series",
        ready_timeout,
        interval / 2,
        |e| {
            let n = e.scrape().ok()?.series();
            (n >= expected).then_some(n)
        },
    )?;
    eprintln!(
        "procbench:   ready after {:.1} s, {series} series; warming up for {} cycles",
        ready_after.as_secs_f64(),
        o.warmup
    );
    let warmup_timeout = interval * (o.warmup as u32 + 2) * 4 + Duration::from_secs(60);
    wait_for(
        &mut exporter,
        "the warm-up cycles",
        warmup_timeout,
        interval / 2,
        |e| (e.scrape().ok()?.cycles().ok()? >= o.warmup).then_some(()),
    )?;

    // The span: from one moment between cycles to another.
    let idle_timeout = interval * 3;
    let aligned_start = exporter.wait_idle(&stand_in, Instant::now() + idle_timeout)?;
    let before = exporter.scrape()?;
    let (c0, w0, s0) = (
        before.cycles()?,
        before.value(CYCLE_SECONDS_METRIC).unwrap_or_default(),
        before.value(SKIPPED_METRIC).unwrap_or_default(),
    );
    let calls0 = stand_in.metric_data_calls.load(Ordering::Relaxed);
    let queries0 = stand_in.metric_data_queries.load(Ordering::Relaxed);
    let (t0, ticks0) = (Instant::now(), exporter.cpu_ticks()?);
    eprintln!(
        "procbench:   measuring for {} s and {} cycles at least",
        o.span_secs, o.cycles
    );
    let min_span = Duration::from_secs_f64(o.span_secs).max(interval * o.cycles as u32);
    let max_span = Duration::from_secs_f64(o.max_span_secs).max(min_span + interval * 2);
    let mut rss_max: f64 = 0.0;
    while t0.elapsed() < min_span {
        exporter.check_alive()?;
        rss_max = rss_max.max(exporter.status_mb("VmRSS")?);
        std::thread::sleep(Duration::from_millis(100));
    }
    // The steady RSS is read there too, before the scrape that reads the cycle count.
    let (mut aligned_end, mut ticks1, mut t1, mut rss_steady, mut after);
    loop {
        exporter.check_alive()?;
        aligned_end = exporter.wait_idle(&stand_in, Instant::now() + idle_timeout)?;
        ticks1 = exporter.cpu_ticks()?;
        t1 = t0.elapsed();
        rss_steady = exporter.status_mb("VmRSS")?;
        rss_max = rss_max.max(rss_steady);
        after = exporter.scrape()?;
        if after.cycles()? >= c0 + o.cycles || t1 >= max_span {
            break;
        }
        std::thread::sleep(interval / 2);
    }
    let cycles = after.cycles()?.saturating_sub(c0);
    ensure!(cycles > 0, "no cycle completed in {t1:?}");
    let calls = stand_in.metric_data_calls.load(Ordering::Relaxed) - calls0;
    let queries = stand_in.metric_data_queries.load(Ordering::Relaxed) - queries0;
    let cpu_ms = (ticks1 - ticks0) as f64 * 1000.0 / clk_tck;
    let wall_s = after.value(CYCLE_SECONDS_METRIC).unwrap_or_default() - w0;
    let hwm_after_cycles = exporter.status_mb("VmHWM")?;
    if after.value("aws_apigateway_exporter_up") != Some(1.0) {
        eprintln!("procbench:   warning: aws_apigateway_exporter_up is not 1");
    }

    // Sequential scrapes on one keep-alive connection.
    eprintln!("procbench:   {} scrapes", o.scrapes);
    let mut conn = Conn::open(exporter.port)?;
    let mut body = Vec::new();
    let mut latencies = Vec::with_capacity(o.scrapes);
    let scrape_deadline = Instant::now() + Duration::from_secs_f64(o.scrape_secs);
    while latencies.len() < o.scrapes && Instant::now() < scrape_deadline {
        let t = Instant::now();
        let status = conn.get("/metrics", &mut body)?;
        latencies.push(t.elapsed());
        ensure!(status == 200, "/metrics answered {status}");
    }
    latencies.sort();
    let status = exporter.status()?;
    let kb_mb = |k: &str| status.get(k).copied().unwrap_or_default() as f64 / 1024.0;
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", exporter.pid()))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().ok()?;
            (kb > 0).then(|| format!("{k}={:.1}", kb as f64 / 1024.0))
        })
        .collect::<Vec<_>>()
        .join(" ");
    let unexpected = stand_in.unexpected();
    ensure!(
        unexpected.is_empty(),
        "the stand-in could not answer:\n{}",
        unexpected.join("\n")
    );
    exporter.check_alive()?;

    Ok(Row {
        series,
        apis: fleet.apis,
        stages: fleet.apis * fleet.stages.len(),
        calls_per_cycle: calls as f64 / cycles as f64,
        queries_per_cycle: queries as f64 / cycles as f64,
        cycles,
        span_secs: t1.as_secs_f64(),
        aligned: aligned_start && aligned_end,
        skipped: (after.value(SKIPPED_METRIC).unwrap_or_default() - s0) as u64,
        cpu_ms_per_cycle: cpu_ms / cycles as f64,
        cpu_resolution_ms: 1000.0 / clk_tck / cycles as f64,
        wall_ms_per_cycle: wall_s * 1000.0 / cycles as f64,
        rss_steady_mb: rss_steady,
        rss_span_max_mb: rss_max,
        hwm_after_cycles_mb: hwm_after_cycles,
        hwm_mb: kb_mb("VmHWM"),
        rss_anon_mb: kb_mb("RssAnon"),
        rss_file_mb: kb_mb("RssFile"),
        threads: status.get("Threads").copied().unwrap_or_default(),
        scrapes: latencies.len(),
        scrape_p50_ms: ms(percentile(&latencies, 0.5)),
        scrape_p99_ms: ms(percentile(&latencies, 0.99)),
        scrape_max_ms: ms(percentile(&latencies, 1.0)),
        scrape_bytes: body.len(),
        smaps,
    })
}

// ---------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------

/// `target/release/apigateway-exporter`, next to `target/release/examples/procbench`.
fn locate_binary(o: &Options) -> Result<PathBuf> {
    let path = match &o.exporter {
        Some(p) => p.clone(),
        None => {
            let exe = std::env::current_exe().context("this example's own path")?;
            exe.parent()
                .and_then(Path::parent)
                .context("this example is not in target/<profile>/examples")?
                .join(format!(
                    "apigateway-exporter{}",
                    std::env::consts::EXE_SUFFIX
                ))
        }
    };
    ensure!(
        path.is_file(),
        "the exporter binary {} is missing: build it first with \
         `cargo build --release --bin apigateway-exporter` (same CARGO_TARGET_DIR as this \
         example), or pass --exporter PATH",
        path.display()
    );
    Ok(path)
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("procbench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let o = parse_args()?;
    let binary = locate_binary(&o)?;
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|_| "?".into());
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default();
    let clk_tck = clock_ticks();
    // The stand-in's runtime: one worker, so the exporter keeps a core to itself.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("stand-in")
        .enable_all()
        .build()?;
    rt.spawn(kill_child_on_signal());
    let mut rows = Vec::new();
    for &size in &o.sizes {
        let row =
            measure(size, &o, &binary, &rt, clk_tck).with_context(|| format!("{size} series"))?;
        eprintln!("procbench:   {row:?}");
        rows.push(row);
    }

    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    writeln!(out)?;
    writeln!(
        out,
        "exporter: {} ({version}, built {built})",
        binary.display()
    )?;
    let env: Vec<String> = o.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(
        out,
        "poll.interval {} s, {} stages per HTTP API, default latency statistics; {cores} cores; \
         exporter env: {}",
        o.interval_secs,
        o.stages,
        if env.is_empty() {
            "(none added)".to_string()
        } else {
            env.join(" ")
        }
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| series | HTTP APIs (stages) | GetMetricData calls (queries) / cycle | cycles measured (s) | CPU ms / cycle ± 1 tick | cycle wall ms | RSS steady MB | RSS max in span MB | RSS peak MB (after cycles / after scrapes) | RssAnon / RssFile MB | threads | /metrics p50 / p99 / max ms (scrapes) | bytes / scrape |"
    )?;
    writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for r in &rows {
        writeln!(
            out,
            "| {} | {} ({}) | {:.1} ({:.0}) | {}{}{} ({:.1}) | {:.1} ± {:.1} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {:.2} / {:.2} / {:.2} ({}) | {} |",
            r.series,
            r.apis,
            r.stages,
            r.calls_per_cycle,
            r.queries_per_cycle,
            r.cycles,
            if r.aligned { "" } else { "*" },
            if r.skipped > 0 {
                format!(", {} skipped", r.skipped)
            } else {
                String::new()
            },
            r.span_secs,
            r.cpu_ms_per_cycle,
            r.cpu_resolution_ms,
            r.wall_ms_per_cycle,
            r.rss_steady_mb,
            r.rss_span_max_mb,
            r.hwm_after_cycles_mb,
            r.hwm_mb,
            r.rss_anon_mb,
            r.rss_file_mb,
            r.threads,
            r.scrape_p50_ms,
            r.scrape_p99_ms,
            r.scrape_max_ms,
            r.scrapes,
            r.scrape_bytes,
        )?;
    }
    if rows.iter().any(|r| !r.aligned) {
        writeln!(
            out,
            "\n* the span did not start or end between two cycles (the exporter was never idle): \
             CPU per cycle may be off by up to one cycle's share"
        )?;
    }
    writeln!(out, "\nsmaps_rollup (MB) after the scrapes:")?;
    for r in &rows {
        writeln!(out, "- {} series: {}", r.series, r.smaps)?;
    }
    print!("{out}");
    Ok(())
}
