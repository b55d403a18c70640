//! An HTTP proxy in front of an emulator that counts calls as the server side sees them:
//! each request's operation and arrival time, taken when the request reaches the proxy,
//! never from the exporter's own counters. It can also answer a share of API Gateway
//! management calls with AWS's throttling error, as an account whose quota is spent does.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One request as the proxy received it.
#[derive(Debug, Clone)]
pub struct Call {
    /// When it arrived (comparable across proxies of one test).
    pub at: Instant,
    /// The AWS operation (`GetStages`, `GetResources`, `GetApis`, `ListMetrics`, …).
    pub operation: String,
    /// `apigateway`, `apigatewayv2`, `cloudwatch` or `other`.
    pub service: &'static str,
    pub path: String,
    /// Answered with TooManyRequestsException by the proxy instead of the emulator.
    pub throttled: bool,
    /// The request body as it arrived (CloudWatch's is CBOR).
    pub body: Bytes,
}

impl Call {
    /// A call against API Gateway's management quota, or route ListMetrics: what the
    /// exporter's discovery budget paces.
    pub fn is_management(&self) -> bool {
        matches!(self.service, "apigateway" | "apigatewayv2") || self.operation == "ListMetrics"
    }
}

/// The proxy; it runs on its own thread until the test ends.
pub struct Recorder {
    pub port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Percentage of management calls answered 429.
    throttle: Arc<AtomicU32>,
}

/// The operation of an AWS request by its method and path (REST-JSON apigateway and
/// apigatewayv2, CBOR CloudWatch); `other` for the rest (STS, logs).
pub fn classify(method: &str, path: &str) -> (&'static str, String) {
    let path = path.split('?').next().unwrap_or_default();
    if let Some(op) = path.strip_prefix("/service/GraniteServiceVersion20100801/operation/") {
        return ("cloudwatch", op.to_string());
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match (method, parts.as_slice()) {
        ("GET", ["restapis"]) => Some("GetRestApis"),
        ("GET", ["restapis", _, "stages"]) => Some("GetStages"),
        ("GET", ["restapis", _, "resources"]) => Some("GetResources"),
        ("GET", ["account"]) => Some("GetAccount"),
        ("GET", ["usageplans"]) => Some("GetUsagePlans"),
        _ => None,
    };
    if let Some(op) = rest {
        return ("apigateway", op.to_string());
    }
    let v2 = match (method, parts.as_slice()) {
        ("GET", ["v2", "apis"]) => Some("GetApis"),
        ("GET", ["v2", "apis", _, "stages"]) => Some("GetStages"),
        ("GET", ["v2", "apis", _, "routes"]) => Some("GetRoutes"),
        ("GET", ["v2", "apis", _, "integrations"]) => Some("GetIntegrations"),
        _ => None,
    };
    match v2 {
        Some(op) => ("apigatewayv2", op.to_string()),
        None => ("other", format!("{method} {path}")),
    }
}

impl Recorder {
    /// Proxies `127.0.0.1:<port>` to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Recorder {
        let upstream = upstream.trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let port = listener.local_addr().expect("recorder address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let throttle = Arc::new(AtomicU32::new(0));
        let (calls2, throttle2) = (Arc::clone(&calls), Arc::clone(&throttle));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("recorder runtime");
            rt.block_on(serve(listener, upstream, calls2, throttle2));
        });
        Recorder {
            port,
            calls,
            throttle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers `percent` % of management calls with TooManyRequestsException from now on.
    pub fn throttle(&self, percent: u32) {
        self.throttle.store(percent, Ordering::SeqCst);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }
}

/// What every connection of the proxy shares.
struct Shared {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: String,
    calls: Arc<Mutex<Vec<Call>>>,
    throttle: Arc<AtomicU32>,
    counter: AtomicU64,
}

async fn serve(
    listener: TcpListener,
    upstream: String,
    calls: Arc<Mutex<Vec<Call>>>,
    throttle: Arc<AtomicU32>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("recorder listener");
    let shared = Arc::new(Shared {
        client: Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>(),
        upstream,
        calls,
        throttle,
        counter: AtomicU64::new(0),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let shared = Arc::clone(&shared);
                async move {
                    let Shared {
                        client,
                        upstream,
                        calls,
                        throttle,
                        counter,
                    } = &*shared;
                    let at = Instant::now();
                    let path = req
                        .uri()
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default();
                    let (service, operation) = classify(req.method().as_str(), &path);
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let mut call = Call {
                        at,
                        operation,
                        service,
                        path: path.clone(),
                        throttled: false,
                        body: body.clone(),
                    };
                    // A deterministic 30 % (or whatever share): calls n with (n·p) mod 100 < p
                    // spread evenly, so a retry meets a different answer.
                    if matches!(service, "apigateway" | "apigatewayv2") {
                        let share = u64::from(throttle.load(Ordering::SeqCst));
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        call.throttled = share > 0 && (n * 37) % 100 < share;
                    }
                    let throttled = call.throttled;
                    calls.lock().expect("calls").push(call);
                    if throttled {
                        let response = Response::builder()
                            .status(429)
                            .header("content-type", "application/json")
                            .header("x-amzn-errortype", "TooManyRequestsException")
                            .body(Full::new(Bytes::from_static(
                                br#"{"message":"Too Many Requests"}"#,
                            )))
                            .expect("429 response");
                        return Ok::<_, hyper::Error>(response);
                    }
                    let mut forward = Request::builder()
                        .method(parts.method)
                        .uri(format!("{upstream}{path}"));
                    // The body is forwarded whole: its length is set anew.
                    for (name, value) in &parts.headers {
                        if !matches!(
                            name.as_str(),
                            "content-length" | "transfer-encoding" | "connection"
                        ) {
                            forward = forward.header(name, value);
                        }
                    }
                    let forward = forward.body(Full::new(body)).expect("forwarded request");
                    let response = match client.request(forward).await {
                        Ok(r) => {
                            let (mut parts, body) = r.into_parts();
                            let body = body.collect().await?.to_bytes();
                            parts.headers.remove("transfer-encoding");
                            parts.headers.remove("content-length");
                            Response::from_parts(parts, Full::new(body))
                        }
                        Err(e) => Response::builder()
                            .status(502)
                            .body(Full::new(Bytes::from(e.to_string())))
                            .expect("502 response"),
                    };
                    Ok(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The most calls of `calls` that fall in any window `[t, t + width)`.
pub fn busiest(calls: &[&Call], width: Duration) -> usize {
    super::fleet::most_within(calls.iter().map(|c| c.at).collect(), width)
}
