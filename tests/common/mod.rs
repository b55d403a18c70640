//! Shared harness of the integration tests: emulator endpoints, SDK clients for seeding, the
//! real exporter binary, and a scraper with a small exposition parser. Deployment artefacts
//! (YAML manifests, the tools that check them) are read with [`manifests`].
//!
//! Emulators are started by `scripts/test.sh`; a test that needs one and finds no endpoint
//! fails with a message saying how to run it. It never skips.
#![allow(dead_code)]

pub mod fleet;
pub mod manifests;
pub mod metric_stream;
pub mod proxy;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

pub const REGION: &str = "us-east-1";

fn endpoint(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: this test needs {what}. Run the suite with `scripts/test.sh`, \
             which installs and starts the emulators and exports {var}."
        )
    })
}

/// LocalStack: CloudWatch (CBOR), REST API Gateway, STS.
pub fn localstack() -> String {
    endpoint("APIGW_TEST_LOCALSTACK", "LocalStack")
}

/// moto: apigatewayv2 (HTTP and WebSocket APIs).
pub fn moto() -> String {
    endpoint("APIGW_TEST_MOTO", "moto")
}

/// `promtool`, from the Debian `prometheus` package.
pub fn promtool() -> String {
    std::env::var("APIGW_TEST_PROMTOOL").unwrap_or_else(|_| "promtool".into())
}

/// A name unique to this test run, so tests sharing one emulator never collide.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}{:x}{:05x}", std::process::id(), nanos >> 12)
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn sdk(endpoint: &str) -> SdkConfig {
    sdk_as(endpoint, "test")
}

/// LocalStack takes a 12-digit access key as the account it acts in (docs/emulators.md).
fn sdk_as(endpoint: &str, access_key: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                access_key, "test", None, None, "tests",
            )),
        )
        .build()
}

/// REST API Gateway of another LocalStack account.
pub fn apigateway_in(account: &str) -> aws_sdk_apigateway::Client {
    aws_sdk_apigateway::Client::new(&sdk_as(&localstack(), account))
}

pub fn cloudwatch() -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&sdk(&localstack()))
}

pub fn apigateway() -> aws_sdk_apigateway::Client {
    aws_sdk_apigateway::Client::new(&sdk(&localstack()))
}

pub fn logs() -> aws_sdk_cloudwatchlogs::Client {
    aws_sdk_cloudwatchlogs::Client::new(&sdk(&localstack()))
}

pub fn apigatewayv2() -> aws_sdk_apigatewayv2::Client {
    aws_sdk_apigatewayv2::Client::new(&sdk(&moto()))
}

/// A config pointing at the emulators, selecting only APIs whose name or id matches
/// `include` (each test's unique marker). Percentiles are left out: LocalStack fails a whole
/// GetMetricData call that asks for one (they are covered with `aws-smithy-mocks`).
pub fn emulator_config(include: &str, extra: &str) -> String {
    format!(
        "poll:\n  interval: 1s\n  period: 60s\n  lookback: 10m\n  settle: 0s\n\
         discovery:\n  refresh_interval: 2s\n  max_requests_per_second: 10\n\
         latency:\n  statistics: [max]\n\
         targets:\n  - regions: [{REGION}]\n    apis:\n      include: ['{include}']\n\
         aws:\n  endpoints:\n    cloudwatch: {ls}\n    apigateway: {ls}\n    apigatewayv2: {moto}\n    sts: {ls}\n    logs: {ls}\n{extra}",
        ls = localstack(),
        moto = moto(),
    )
}

/// Creates a REST API with a MOCK `GET /` and deploys it to each stage; returns its id.
pub async fn create_rest_api(name: &str, stages: &[&str]) -> String {
    create_rest_api_with(&apigateway(), name, stages).await
}

/// [`create_rest_api`] with `gw`'s account.
pub async fn create_rest_api_with(
    gw: &aws_sdk_apigateway::Client,
    name: &str,
    stages: &[&str],
) -> String {
    let api = gw
        .create_rest_api()
        .name(name)
        .send()
        .await
        .expect("CreateRestApi");
    let id = api.id().expect("rest api id").to_string();
    let resources = gw
        .get_resources()
        .rest_api_id(&id)
        .send()
        .await
        .expect("GetResources");
    let root = resources
        .items()
        .iter()
        .find(|r| r.path() == Some("/"))
        .and_then(|r| r.id())
        .expect("root resource")
        .to_string();
    gw.put_method()
        .rest_api_id(&id)
        .resource_id(&root)
        .http_method("GET")
        .authorization_type("NONE")
        .send()
        .await
        .expect("PutMethod");
    gw.put_integration()
        .rest_api_id(&id)
        .resource_id(&root)
        .http_method("GET")
        .r#type(aws_sdk_apigateway::types::IntegrationType::Mock)
        .send()
        .await
        .expect("PutIntegration");
    for stage in stages {
        gw.create_deployment()
            .rest_api_id(&id)
            .stage_name(*stage)
            .send()
            .await
            .expect("CreateDeployment");
    }
    id
}

/// Replaces settings of a REST stage (`PATCH` operations of UpdateStage).
pub async fn patch_stage(rest_id: &str, stage: &str, patches: &[(&str, &str)]) {
    use aws_sdk_apigateway::types::{Op, PatchOperation};
    let mut req = apigateway()
        .update_stage()
        .rest_api_id(rest_id)
        .stage_name(stage);
    for (path, value) in patches {
        req = req.patch_operations(
            PatchOperation::builder()
                .op(Op::Replace)
                .path(*path)
                .value(*value)
                .build(),
        );
    }
    req.send().await.expect("UpdateStage");
}

/// Creates an HTTP or WebSocket API in moto with the given stages; returns its id.
pub async fn create_v2_api(name: &str, websocket: bool, stages: &[&str]) -> String {
    use aws_sdk_apigatewayv2::types::ProtocolType;
    let gw = apigatewayv2();
    let mut req = gw.create_api().name(name);
    req = if websocket {
        req.protocol_type(ProtocolType::Websocket)
            .route_selection_expression("$request.body.action")
    } else {
        req.protocol_type(ProtocolType::Http)
    };
    let id = req
        .send()
        .await
        .expect("CreateApi")
        .api_id()
        .expect("api id")
        .to_string();
    for stage in stages {
        gw.create_stage()
            .api_id(&id)
            .stage_name(*stage)
            .send()
            .await
            .expect("CreateStage");
    }
    id
}

/// One datapoint for PutMetricData.
pub struct Datum<'a> {
    pub metric: &'a str,
    pub dims: &'a [(&'a str, &'a str)],
    pub at: i64,
    pub value: f64,
}

/// Creates a CloudWatch Logs group with one stream, `s1`, to write access log lines into.
pub async fn log_group(name: &str) {
    let logs = logs();
    logs.create_log_group()
        .log_group_name(name)
        .send()
        .await
        .expect("CreateLogGroup");
    logs.create_log_stream()
        .log_group_name(name)
        .log_stream_name("s1")
        .send()
        .await
        .expect("CreateLogStream");
}

/// Writes `(timestamp in ms, message)` events, in timestamp order, into a group made by
/// [`log_group`].
pub async fn put_events(group: &str, events: &[(i64, String)]) {
    let events: Vec<aws_sdk_cloudwatchlogs::types::InputLogEvent> = events
        .iter()
        .map(|(ms, message)| {
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(*ms)
                .message(message)
                .build()
                .expect("log event")
        })
        .collect();
    logs()
        .put_log_events()
        .log_group_name(group)
        .log_stream_name("s1")
        .set_log_events(Some(events))
        .send()
        .await
        .expect("PutLogEvents");
}

/// Puts datapoints into `AWS/ApiGateway`.
pub async fn put(data: &[Datum<'_>]) {
    put_in("AWS/ApiGateway", data).await;
}

/// Puts datapoints into a namespace.
pub async fn put_in(namespace: &str, data: &[Datum<'_>]) {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    let cw = cloudwatch();
    for chunk in data.chunks(20) {
        let datums: Vec<MetricDatum> = chunk
            .iter()
            .map(|d| {
                MetricDatum::builder()
                    .metric_name(d.metric)
                    .set_dimensions(Some(
                        d.dims
                            .iter()
                            .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
                            .collect(),
                    ))
                    .timestamp(aws_smithy_types::DateTime::from_secs(d.at))
                    .value(d.value)
                    .build()
            })
            .collect();
        cw.put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(datums))
            .send()
            .await
            .expect("PutMetricData");
    }
}

/// A free loopback port (bound, then released for the exporter to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process, killed (and reaped) on drop.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real exporter binary, killed on drop.
pub struct Exporter {
    child: KillOnDrop,
    pub port: u16,
    /// The Firehose endpoint's port (`stream.listen_address`), when the test set one.
    pub stream_port: Option<u16>,
    pub config_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Starts the binary with `config` (YAML text) and extra flags; waits until it listens.
    pub fn start(config: &str, flags: &[&str]) -> Exporter {
        Exporter::spawn(config, flags, |port| get(port, "/-/healthy").is_some())
    }

    /// Starts the binary serving TLS (`--web.config.file` in `flags`); waits until its port
    /// accepts connections, since a plain `/-/healthy` cannot tell.
    pub fn start_tls(config: &str, flags: &[&str]) -> Exporter {
        Exporter::spawn(config, flags, |port| {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    fn spawn(config: &str, flags: &[&str], listening: impl Fn(u16) -> bool) -> Exporter {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_apigateway-exporter"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn,apigateway_exporter=info")
            .args(flags)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start exporter");
        let exporter = Exporter {
            child: KillOnDrop(child),
            port,
            stream_port: None,
            config_path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !listening(port) {
            assert!(
                Instant::now() < deadline,
                "exporter did not start listening on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        exporter
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        get(self.port, path)
    }

    /// Records the port the test gave its Firehose endpoint (`stream.listen_address`).
    pub fn with_stream_port(mut self, port: u16) -> Exporter {
        self.stream_port = Some(port);
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Replaces the config file (for reload tests).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("write config");
    }

    /// Waits until `/-/ready` answers 200 and the first discovery has read every API (the
    /// exporter is ready as soon as it serves what it has read; a paced discovery adds APIs
    /// as it reads them, and a series' first read is its baseline: data a test puts before
    /// that is not counted).
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.get("/-/ready").map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "exporter not ready after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        self.scrape_until(left, |m| {
            !m.find(
                "aws_apigateway_exporter_discovery_last_success_timestamp_seconds",
                &[],
            )
            .is_empty()
        });
    }

    pub fn scrape(&self) -> Metrics {
        let (status, body) = self.get("/metrics").expect("scrape");
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    /// Scrapes until `check` holds, or panics with the last scrape after `timeout`.
    pub fn scrape_until(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.scrape();
            if check(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "condition not met after {timeout:?}; last scrape:\n{}",
                    m.text
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sends a signal to the process (`kill -s SIG`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// curl printing nothing but the response's HTTP status code; [`http_code`] reads it.
pub fn curl_http_code() -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
    cmd
}

/// The status a [`curl_http_code`] printed: 0 when the connection or TLS failed.
pub fn http_code(out: &std::process::Output) -> u16 {
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A minimal HTTP/1.1 GET (`Connection: close`); `None` when nothing listens.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    request(port, "GET", path)
}

pub fn request(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    send(port, method, path, &[], None)
}

/// A minimal HTTP/1.1 POST with headers and a JSON body (`Connection: close`).
pub fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<(u16, String)> {
    send(port, "POST", path, headers, Some(body))
}

/// One HTTP/1.1 request (`Connection: close`): the status and the (dechunked) body.
fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body.unwrap_or_default()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    response(&String::from_utf8_lossy(&buf))
}

/// An HTTP/1.1 response as read to its end: the status and the (dechunked) body; `None`
/// when it has no status.
pub fn response(text: &str) -> Option<(u16, String)> {
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    Some((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
}

/// Decodes a chunked HTTP/1.1 body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// One sample of the text exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().unwrap_or(f64::NAN);
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => (name.to_string(), parse_labels(rest.trim_end_matches('}'))),
            };
            samples.push(Sample {
                name,
                labels,
                value,
            });
        }
        Metrics {
            text: text.to_string(),
            samples,
        }
    }

    /// Samples of `name` carrying all of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample of `name` with `labels`; `None` if absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, labels);
        assert!(
            found.len() <= 1,
            "more than one {name} with {labels:?}: {found:?}"
        );
        found.first().map(|s| s.value)
    }
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').to_string(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// Runs `promtool check metrics` on an exposition; returns its complaints (empty when clean).
pub fn promtool_check_metrics(text: &str) -> String {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/setup-tools.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let mut report = String::from_utf8_lossy(&out.stdout).to_string();
    report.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        String::new()
    } else {
        report
    }
}

/// A TCP forwarder in front of an emulator that can be closed like an outage: while blocked
/// it drops new connections and cuts the established ones (pooled keep-alive connections
/// included). Runs on its own thread and runtime.
pub struct Gate {
    pub port: u16,
    blocked: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Gate {
    /// Forwards `127.0.0.1:<port>` to the `http://host:port` of `upstream`.
    pub fn start(upstream: &str) -> Gate {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind gate");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    let mut rx = rx.clone();
                    if *rx.borrow() {
                        drop(inbound);
                        continue;
                    }
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await
                        else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = rx.wait_for(|b| *b) => {}
                        }
                    });
                }
            });
        });
        Gate {
            port,
            blocked: std::sync::Arc::new(tx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn block(&self, blocked: bool) {
        self.blocked.send_replace(blocked);
    }
}

/// What `check-config` prints for `config`.
pub fn check_config(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apigateway-exporter"))
        .args([
            "check-config",
            "--log.level=error",
            &format!("--config.file={}", path.display()),
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    stdout
}

/// A real Prometheus (`APIGW_TEST_PROMETHEUS`, else `prometheus` on PATH) with `config`
/// (prometheus.yml text), its storage in a temporary directory; killed on drop.
pub struct Prometheus {
    child: KillOnDrop,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// `s` as a URL query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Prometheus {
    /// The samples of an instant query: each one's labels and value.
    pub fn vector(&self, expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let (status, body) = get(self.port, &format!("/api/v1/query?query={}", encode(expr)))
            .expect("prometheus answers");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{expr}: {e}: {body}"));
        assert_eq!(status, 200, "{expr}: {body}");
        v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                let value = r["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect()
    }

    pub fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("prometheus.yml");
        std::fs::write(&path, config).expect("write prometheus.yml");
        let port = free_port();
        let child = Command::new(
            std::env::var("APIGW_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".into()),
        )
        .arg(format!("--config.file={}", path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("prometheus must be installed (scripts/setup-tools.sh installs it)");
        let p = Prometheus {
            child: KillOnDrop(child),
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(port, "/-/ready").map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }
}
