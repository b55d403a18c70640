//! The Firehose HTTP endpoint, on a port of its own so that it can sit behind its own HTTPS
//! ingress. Two delivery streams can deliver to it, each with its own access key: CloudWatch
//! Metric Streams (`stream.enabled`) to any path but `/access-logs`, and API Gateway access
//! logs (`access_logs.mode: firehose`) to `/access-logs`.
//!
//! The protocol, as Amazon Data Firehose documents it: a `POST` with the headers
//! `X-Amz-Firehose-Request-Id` and `X-Amz-Firehose-Access-Key`, optionally
//! `Content-Encoding: gzip`, and the JSON body `{requestId, timestamp, records: [{data}]}`
//! (`data` in base64). The answer is `{requestId, timestamp}` with 200, else an
//! `errorMessage`: Firehose retries anything but 200 (413 is final), with the same request id,
//! and times out after 3 minutes, so a request is read completely or not at all and a retry
//! of one already read is answered 200 without reading it again.

use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header::{ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::warn;

use crate::clock::Clock;
use crate::config::AccessKey;
use crate::selfmetrics::SelfMetrics;
use crate::source::delivered::{Delivered, LogBuffer, decode_record};
use crate::source::recent::Recent;
use crate::source::stream::{StreamBuffer, decode};

/// The path access log deliveries come to; metric streams use any other.
pub const ACCESS_LOGS_PATH: &str = "/access-logs";

/// The largest request body read, as sent: Firehose buffers at most 64 MiB, which base64
/// makes 85.4 MiB, plus the envelope.
pub const MAX_BODY: usize = 96 << 20;

/// The largest body after gzip is undone: a small compressed body must not expand without
/// bound.
pub const MAX_DECODED: usize = 96 << 20;

/// Request ids are UUIDs; anything empty or much longer is not Firehose's.
const MAX_REQUEST_ID: usize = 256;

/// Deliveries read at once; further ones wait (Firehose waits up to 3 minutes).
const CONCURRENT_DELIVERIES: usize = 2;

/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;

/// Firehose request ids remembered per delivery stream, to answer a retried delivery without
/// reading it again (Firehose retries for up to two hours, by default five minutes; at one
/// delivery a second that is the last three hours).
const REQUEST_IDS: usize = 10_000;

const ACCESS_KEY: &str = "x-amz-firehose-access-key";
const REQUEST_ID: &str = "x-amz-firehose-request-id";

/// What the endpoint needs: where records go, the expected keys and the self-metrics.
pub struct Receiver {
    buffer: Arc<StreamBuffer>,
    /// SHA-256 of the metric stream's access key (`None`: no metric stream, its path answers
    /// 404): comparing digests in constant time tells nothing about the key, not even its
    /// length. A reload may replace it (a rotated Secret).
    key: std::sync::RwLock<Option<[u8; 32]>>,
    /// Access log deliveries (`/access-logs`), with their own key.
    logs: Option<Arc<LogBuffer>>,
    logs_key: std::sync::RwLock<Option<[u8; 32]>>,
    metrics: SelfMetrics,
    clock: Arc<dyn Clock>,
    reading: Semaphore,
    /// The request ids of deliveries read, per [`Kind`]: a retry is answered without being
    /// read again.
    read: [Mutex<Recent<String>>; 2],
}

/// Which delivery stream a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Metrics,
    AccessLogs,
}

fn digest(key: &AccessKey) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Receiver {
    pub fn new(
        buffer: Arc<StreamBuffer>,
        key: &AccessKey,
        metrics: SelfMetrics,
        clock: Arc<dyn Clock>,
    ) -> Receiver {
        Receiver {
            buffer,
            key: std::sync::RwLock::new(Some(digest(key))),
            logs: None,
            logs_key: std::sync::RwLock::new(None),
            metrics,
            clock,
            reading: Semaphore::new(CONCURRENT_DELIVERIES),
            read: request_ids(),
        }
    }

    /// An endpoint for access logs only: its metric stream path answers 404.
    pub fn access_logs_only(
        logs: Arc<LogBuffer>,
        key: &AccessKey,
        metrics: SelfMetrics,
        clock: Arc<dyn Clock>,
    ) -> Receiver {
        let r = Receiver {
            buffer: Arc::new(StreamBuffer::new(0, 60, 60)),
            key: std::sync::RwLock::new(None),
            logs: None,
            logs_key: std::sync::RwLock::new(None),
            metrics,
            clock,
            reading: Semaphore::new(CONCURRENT_DELIVERIES),
            read: request_ids(),
        };
        r.with_access_logs(logs, key)
    }

    /// Takes access log deliveries too, on `/access-logs`, with their own key.
    pub fn with_access_logs(mut self, logs: Arc<LogBuffer>, key: &AccessKey) -> Receiver {
        self.logs = Some(logs);
        *self.logs_key.write().unwrap_or_else(|e| e.into_inner()) = Some(digest(key));
        self
    }

    /// Whether the endpoint takes a metric stream.
    pub fn takes_metric_stream(&self) -> bool {
        self.expected(Kind::Metrics).is_some()
    }

    /// The access log buffer, when the endpoint takes access logs.
    pub fn access_logs(&self) -> Option<&Arc<LogBuffer>> {
        self.logs.as_ref()
    }

    /// Replaces the access logs' key (a reload).
    pub fn set_access_logs_key(&self, key: &AccessKey) {
        if self.logs.is_some() {
            *self.logs_key.write().unwrap_or_else(|e| e.into_inner()) = Some(digest(key));
        }
    }

    /// The buffer deliveries go to, which the poll loop reads.
    pub fn buffer(&self) -> &Arc<StreamBuffer> {
        &self.buffer
    }

    /// Replaces the metric stream's access key (a reload).
    pub fn set_key(&self, key: &AccessKey) {
        let mut held = self.key.write().unwrap_or_else(|e| e.into_inner());
        if held.is_some() {
            *held = Some(digest(key));
        }
    }

    /// Whether `kind` is taken here, and the key it expects.
    fn expected(&self, kind: Kind) -> Option<[u8; 32]> {
        let lock = match kind {
            Kind::Metrics => &self.key,
            Kind::AccessLogs => &self.logs_key,
        };
        *lock.read().unwrap_or_else(|e| e.into_inner())
    }

    fn authorized(&self, expected: [u8; 32], presented: Option<&HeaderValue>) -> bool {
        let Some(presented) = presented else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&expected).into()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    request_id: String,
    /// When Firehose sent the request, in milliseconds.
    #[serde(default)]
    timestamp: i64,
    records: Vec<EnvelopeRecord>,
}

#[derive(Deserialize)]
struct EnvelopeRecord {
    data: String,
}

use super::Body;

fn answer(
    status: StatusCode,
    request_id: &str,
    now_ms: i64,
    error: Option<&str>,
) -> Response<Body> {
    let mut body = serde_json::json!({ "requestId": request_id, "timestamp": now_ms });
    if let Some(e) = error {
        body["errorMessage"] = serde_json::Value::from(e);
    }
    super::respond(status, "application/json", body.to_string())
}

/// Why a delivery was refused: its status, the `result` label, and the message.
struct Refused(StatusCode, &'static str, String);

impl Receiver {
    /// Answers one request. Never panics; nothing of a refused request is kept.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let now_ms = self.clock.now().saturating_mul(1000);
        let header_id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let id = header_id.clone().unwrap_or_default();
        if req.method() == Method::GET && req.uri().path() == "/-/healthy" {
            return super::respond(StatusCode::OK, super::TEXT, "Healthy\n");
        }
        if req.method() != Method::POST {
            let mut r = answer(
                StatusCode::METHOD_NOT_ALLOWED,
                &id,
                now_ms,
                Some("Firehose delivers with POST"),
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return r;
        }
        let kind = if req.uri().path() == ACCESS_LOGS_PATH {
            Kind::AccessLogs
        } else {
            Kind::Metrics
        };
        let Some(expected) = self.expected(kind) else {
            let what = match kind {
                Kind::Metrics => "no metric stream is configured here (stream.enabled)",
                Kind::AccessLogs => "no access logs are taken here (access_logs.mode firehose)",
            };
            return answer(StatusCode::NOT_FOUND, &id, now_ms, Some(what));
        };
        if !self.authorized(expected, req.headers().get(ACCESS_KEY)) {
            self.count(kind, "unauthorized");
            return answer(
                StatusCode::UNAUTHORIZED,
                &id,
                now_ms,
                Some("missing or wrong X-Amz-Firehose-Access-Key"),
            );
        }
        let delivered = match kind {
            Kind::Metrics => self.deliver(req, header_id).await,
            Kind::AccessLogs => self.deliver_logs(req, header_id).await,
        };
        match delivered {
            Ok((id, result)) => {
                self.count(kind, result);
                answer(StatusCode::OK, &id, now_ms, None)
            }
            Err(Refused(status, result, message)) => {
                self.count(kind, result);
                let what = match kind {
                    Kind::Metrics => "metric stream",
                    Kind::AccessLogs => "access log",
                };
                warn!(request_id = %id, %status, error = %message, "{what} delivery refused");
                answer(status, &id, now_ms, Some(&message))
            }
        }
    }

    fn count(&self, kind: Kind, result: &str) {
        let family = match kind {
            Kind::Metrics => &self.metrics.stream_requests,
            Kind::AccessLogs => &self.metrics.access_log_deliveries,
        };
        family.with_label_values(&[result]).inc();
    }

    /// The request ids of the deliveries of `kind` read.
    fn read_ids(&self, kind: Kind) -> MutexGuard<'_, Recent<String>> {
        // A poisoned lock holds ids only: keep them.
        self.read[kind as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Reads a delivery's body, a request at a time per [`CONCURRENT_DELIVERIES`], and
    /// decodes its records with `record` off the runtime's threads. A retry of a request
    /// already read is answered before its body is read (`Err` with its id); a request read
    /// completely is remembered, so a retry of a refused one is read again.
    async fn read_delivery<B, T>(
        &self,
        req: Request<B>,
        header_id: Option<String>,
        kind: Kind,
        record: fn(&[u8]) -> Result<Vec<T>, String>,
    ) -> Result<Result<(String, Vec<T>, i64), String>, Refused>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        T: Send + 'static,
    {
        let too_large = |what: &str, limit: usize| {
            Refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("{what} is larger than {} MiB", limit >> 20),
            )
        };
        let invalid = |m: String| Refused(StatusCode::BAD_REQUEST, "invalid", m);
        if let Some(id) = &header_id {
            check_id(id).map_err(invalid)?;
            if self.read_ids(kind).contains(id.as_str()) {
                return Ok(Err(id.clone()));
            }
        }
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY) {
            return Err(too_large("the body", MAX_BODY));
        }
        let gzip = match req
            .headers()
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("" | "identity") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "Content-Encoding {other:?} is not supported (gzip or none)"
                )));
            }
        };
        let _reading = self.reading.acquire().await.map_err(|_| {
            Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "invalid",
                "shutting down".into(),
            )
        })?;
        let body = Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large("the body", MAX_BODY)
                } else {
                    invalid(format!("cannot read the body: {e}"))
                }
            })?
            .to_bytes();
        // Decompressing and decoding megabytes is CPU work: off the runtime's threads, so
        // scrapes and the poll loop keep going meanwhile.
        let decoded =
            tokio::task::spawn_blocking(move || decode_body(body, gzip, header_id, record))
                .await
                .map_err(|e| invalid(format!("decoding stopped: {e}")))??;
        // Two copies of one request read at once: the second is the retry.
        if !self.read_ids(kind).insert(decoded.0.clone()) {
            return Ok(Err(decoded.0));
        }
        Ok(Ok(decoded))
    }

    /// Reads, checks and counts one delivery of access log lines; returns its request id and
    /// `result`.
    async fn deliver_logs<B>(
        &self,
        req: Request<B>,
        header_id: Option<String>,
    ) -> Result<(String, &'static str), Refused>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(logs) = &self.logs else {
            return Err(Refused(
                StatusCode::NOT_FOUND,
                "invalid",
                "no access logs are taken here".into(),
            ));
        };
        let (id, lines, sent_ms) = match self
            .read_delivery(req, header_id, Kind::AccessLogs, |data| {
                decode_record(data).map_err(|e| e.to_string())
            })
            .await?
        {
            Ok(decoded) => decoded,
            Err(retry) => return Ok((retry, "duplicate")),
        };
        let lines: Vec<Delivered> = lines;
        let n = logs.ingest(lines, sent_ms, self.clock.now());
        for (result, count) in n.by_result() {
            self.metrics
                .access_log_lines
                .with_label_values(&[result])
                .inc_by(count as f64);
        }
        if n.refused > 0 {
            warn!(
                refused = n.refused,
                "access logs: more stages than the buffer holds; deliver only the stages the exporter reads"
            );
        }
        Ok((id, "accepted"))
    }

    /// Reads, checks and keeps one metric stream delivery; returns its request id and
    /// `result`.
    async fn deliver<B>(
        &self,
        req: Request<B>,
        header_id: Option<String>,
    ) -> Result<(String, &'static str), Refused>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (id, records, _) = match self
            .read_delivery(req, header_id, Kind::Metrics, |data| {
                decode(data).map_err(|e| e.to_string())
            })
            .await?
        {
            Ok(decoded) => decoded,
            Err(retry) => return Ok((retry, "duplicate")),
        };
        let now = self.clock.now();
        let n = self.buffer.ingest(records, now);
        let m = &self.metrics;
        for (result, count) in n.by_result() {
            m.stream_records
                .with_label_values(&[result])
                .inc_by(count as f64);
        }
        if n.refused > 0 {
            warn!(
                refused = n.refused,
                "metric stream: more metrics than the buffer holds; narrow the stream's include filter to AWS/ApiGateway and the Lambda metrics read"
            );
        }
        m.stream_series.set(self.buffer.series() as f64);
        m.stream_last_delivery.set(now as f64);
        Ok((id, "accepted"))
    }
}

fn request_ids() -> [Mutex<Recent<String>>; 2] {
    [(); 2].map(|()| Mutex::new(Recent::new(REQUEST_IDS)))
}

/// A request id must be Firehose's: not empty, not huge.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_REQUEST_ID {
        return Err(format!(
            "the request id must have 1 to {MAX_REQUEST_ID} bytes, not {}",
            id.len()
        ));
    }
    Ok(())
}

/// The request id, the records (each decoded by `record`) and the envelope's timestamp
/// (milliseconds) of a body read completely.
fn decode_body<T>(
    body: Bytes,
    gzip: bool,
    header_id: Option<String>,
    record: fn(&[u8]) -> Result<Vec<T>, String>,
) -> Result<(String, Vec<T>, i64), Refused> {
    let invalid = |m: String| Refused(StatusCode::BAD_REQUEST, "invalid", m);
    let json = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .take(MAX_DECODED as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| invalid(format!("the body is not valid gzip: {e}")))?;
        if out.len() > MAX_DECODED {
            return Err(Refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the decompressed body is larger than {} MiB",
                    MAX_DECODED >> 20
                ),
            ));
        }
        Bytes::from(out)
    } else {
        body
    };
    let envelope: Envelope = serde_json::from_slice(&json)
        .map_err(|e| invalid(format!("the body is not a Firehose request: {e}")))?;
    drop(json);
    let id = header_id.unwrap_or(envelope.request_id);
    check_id(&id).map_err(invalid)?;
    let mut records = Vec::new();
    for (i, r) in envelope.records.iter().enumerate() {
        let data = base64::engine::general_purpose::STANDARD
            .decode(r.data.as_bytes())
            .map_err(|e| invalid(format!("records[{i}].data is not base64: {e}")))?;
        records.extend(record(&data).map_err(|e| invalid(format!("records[{i}]: {e}")))?);
    }
    Ok((id, records, envelope.timestamp))
}

/// Serves Firehose deliveries until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    receiver: Arc<Receiver>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // Well within Firehose's 3-minute deadline; a stalled upload frees its slot.
    let limits = super::Limits {
        connections: MAX_CONNECTIONS,
        connection_time: Duration::from_secs(120),
    };
    super::serve_with(listener, limits, None, shutdown, move |req| {
        let receiver = Arc::clone(&receiver);
        async move { receiver.handle(req).await }
    })
    .await;
}

#[cfg(test)]
mod tests {
    /// The tests' own Firehose envelope, shared with `tests/stream.rs`.
    #[allow(dead_code)]
    mod metric_stream {
        include!("../../tests/common/metric_stream.rs");
    }

    use http_body_util::Full;
    use std::io::Write;

    use prometheus::Registry;

    use super::*;
    use crate::clock::Clock;

    struct Fixed(i64);
    impl Clock for Fixed {
        fn now(&self) -> i64 {
            self.0
        }
    }

    const NOW: i64 = 1_700_000_400;

    fn receiver() -> (Receiver, Arc<StreamBuffer>, SelfMetrics) {
        let buffer = Arc::new(StreamBuffer::new(0, 1800, 600));
        let metrics = SelfMetrics::new(&Registry::new(), false).unwrap();
        let key: AccessKey = serde_json::from_str("\"s3cret-key\"").unwrap();
        let r = Receiver::new(
            Arc::clone(&buffer),
            &key,
            metrics.clone(),
            Arc::new(Fixed(NOW)),
        );
        (r, buffer, metrics)
    }

    fn line(sum: f64) -> String {
        format!(
            r#"{{"account_id":"1","region":"r","namespace":"AWS/ApiGateway","metric_name":"Count","dimensions":{{"ApiName":"a","Stage":"prod"}},"timestamp":{},"value":{{"max":1,"min":1,"sum":{sum},"count":{sum}}},"unit":"Count"}}"#,
            (NOW - 120) * 1000
        )
    }

    fn body(id: &str, lines: &[String]) -> String {
        let records: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        metric_stream::firehose_body(id, NOW * 1000, &records)
    }

    fn request(key: Option<&str>, id: &str, body: Vec<u8>, gzip: bool) -> Request<Full<Bytes>> {
        let mut b = Request::post("/").header(REQUEST_ID, id);
        if let Some(k) = key {
            b = b.header(ACCESS_KEY, k);
        }
        if gzip {
            b = b.header(CONTENT_ENCODING, "gzip");
        }
        b.body(Full::new(Bytes::from(body))).unwrap()
    }

    async fn status_and_body(r: Response<Body>) -> (StatusCode, serde_json::Value) {
        let status = r.status();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn count(m: &SelfMetrics, result: &str) -> f64 {
        m.stream_requests.with_label_values(&[result]).get()
    }

    #[tokio::test]
    async fn keys_bodies_gzip_and_retries() {
        let (r, buffer, m) = receiver();
        let ok = body("req-1", &[line(3.0)]);
        // A wrong, missing or longer key: 401, nothing read.
        for key in [Some("s3cret-kez"), None, Some("s3cret-key-and-more")] {
            let (status, b) = status_and_body(
                r.handle(request(key, "req-1", ok.clone().into_bytes(), false))
                    .await,
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(b["requestId"], "req-1");
        }
        assert_eq!(count(&m, "unauthorized"), 3.0);
        assert_eq!(buffer.series(), 0);
        // Gzip, then the same request again (a retry): read once.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(ok.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        for expected in ["accepted", "duplicate"] {
            let (status, b) = status_and_body(
                r.handle(request(Some("s3cret-key"), "req-1", gz.clone(), true))
                    .await,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{b}");
            assert_eq!(b["requestId"], "req-1");
            assert_eq!(b["timestamp"], NOW * 1000);
            assert_eq!(count(&m, expected), 1.0);
        }
        assert_eq!(m.stream_records.with_label_values(&["accepted"]).get(), 1.0);
        assert_eq!(m.stream_last_delivery.get(), NOW as f64);
        // Bad bodies: 400 with a message, nothing kept, the id not remembered.
        for (bad, why) in [
            (b"{not json".to_vec(), "not a Firehose request"),
            (
                body("req-2", &["{\"x\":1}".into()]).into_bytes(),
                "records[0]",
            ),
            (
                br#"{"requestId":"req-2","timestamp":1,"records":[{"data":"@@@"}]}"#.to_vec(),
                "not base64",
            ),
        ] {
            let (status, b) = status_and_body(
                r.handle(request(Some("s3cret-key"), "req-2", bad, false))
                    .await,
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(b["errorMessage"].as_str().unwrap().contains(why), "{b}");
        }
        let (status, _) = status_and_body(
            r.handle(request(
                Some("s3cret-key"),
                "req-2",
                b"\x1f\x8b\x08garbage".to_vec(),
                true,
            ))
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(count(&m, "invalid"), 4.0);
        // A rotated key (a reload): the old one is refused, the new one accepted.
        r.set_key(&serde_json::from_str("\"rotated-key\"").unwrap());
        let (status, _) = status_and_body(
            r.handle(request(
                Some("s3cret-key"),
                "req-9",
                ok.clone().into_bytes(),
                false,
            ))
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        r.set_key(&serde_json::from_str("\"s3cret-key\"").unwrap());
        // A retry of a request already read is answered before its body is read: even a
        // garbage body.
        let (status, b) = status_and_body(
            r.handle(request(
                Some("s3cret-key"),
                "req-1",
                b"garbage".to_vec(),
                false,
            ))
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(count(&m, "duplicate"), 2.0);
        // An empty request id would make every later empty one a "duplicate": refused.
        let (status, b) = status_and_body(
            r.handle(request(
                Some("s3cret-key"),
                "",
                ok.clone().into_bytes(),
                false,
            ))
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            b["errorMessage"].as_str().unwrap().contains("request id"),
            "{b}"
        );
        // The id of a refused request is read when it comes again, valid.
        let (status, _) = status_and_body(
            r.handle(request(
                Some("s3cret-key"),
                "req-2",
                body("req-2", &[line(4.0)]).into_bytes(),
                false,
            ))
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(count(&m, "accepted"), 2.0);
    }

    #[tokio::test]
    async fn a_gzip_bomb_is_refused_with_413() {
        let (r, buffer, m) = receiver();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..(MAX_DECODED >> 20) + 1 {
            gz.write_all(&zeros).unwrap();
        }
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 1 << 20, "{}", gz.len());
        let (status, _) = status_and_body(
            r.handle(request(Some("s3cret-key"), "bomb", gz, true))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(count(&m, "too_large"), 1.0);
        assert_eq!(buffer.series(), 0);
        // A declared length past the limit is refused before anything is read.
        let req = Request::post("/")
            .header(ACCESS_KEY, "s3cret-key")
            .header(CONTENT_LENGTH, (MAX_BODY + 1).to_string())
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(r.handle(req).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn other_methods_and_the_health_path() {
        let (r, _, _) = receiver();
        let get = Request::get("/").body(Full::new(Bytes::new())).unwrap();
        let resp = r.handle(get).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[ALLOW], "POST");
        let health = Request::get("/-/healthy")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(r.handle(health).await.status(), StatusCode::OK);
    }
}
