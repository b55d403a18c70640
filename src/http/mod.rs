//! The HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready` and a landing page. Handlers only
//! read the latest snapshot; they never call AWS, so a slow cycle never slows a scrape.
//! [`firehose`] is the metric stream endpoint, on a port of its own.

pub mod firehose;
pub mod web;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

use crate::render::{self, Exposition};
use crate::snapshot::SharedSnapshot;

/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 256;

/// A request to re-read the config file (SIGHUP or `POST /-/reload`); the HTTP handler
/// waits for the outcome, the signal handler does not.
pub struct ReloadRequest {
    pub respond: Option<oneshot::Sender<Result<(), String>>>,
}

/// What the handlers read.
pub struct AppState {
    pub exposition: Arc<Exposition>,
    pub shared: Arc<SharedSnapshot>,
    pub demo: bool,
    /// Where `POST /-/reload` sends its request; `None` disables the endpoint.
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
    /// `--web.enable-lifecycle`: without it `POST /-/reload` answers 403 (SIGHUP reloads).
    pub lifecycle: bool,
    /// `--web.config.file`: TLS, basic auth and headers.
    pub web: Option<Arc<web::WebFront>>,
}

/// A response body of one or more chunks, sent one after the other with their total length:
/// `/metrics` sends the snapshot's kept text as slices of it, not a copy per scrape.
#[derive(Debug, Default)]
pub struct Body {
    chunks: std::collections::VecDeque<Bytes>,
}

impl Body {
    pub fn chunks(chunks: impl IntoIterator<Item = Bytes>) -> Body {
        Body {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
        }
    }
}

impl<T: Into<Bytes>> From<T> for Body {
    fn from(bytes: T) -> Body {
        Body::chunks([bytes.into()])
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.get_mut()
                .chunks
                .pop_front()
                .map(|c| Ok(hyper::body::Frame::data(c))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let len: usize = self.chunks.iter().map(Bytes::len).sum();
        hyper::body::SizeHint::with_exact(u64::try_from(len).unwrap_or(u64::MAX))
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Routes one request as the web config says: basic auth on every path (as exporter-toolkit
/// does), then [`reload`] or [`handle`], and the configured response headers.
pub async fn route(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &hyper::HeaderMap,
) -> Response<Body> {
    let Some(front) = &state.web else {
        return reload(state, method, path).await;
    };
    let loaded = front.current();
    let mut r = if front
        .authorized(&loaded, headers.get(hyper::header::AUTHORIZATION))
        .await
    {
        reload(state, method, path).await
    } else {
        let mut r = respond(StatusCode::UNAUTHORIZED, TEXT, "Unauthorized\n");
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic"),
        );
        r
    };
    for (name, value) in &loaded.headers {
        r.headers_mut().insert(name.clone(), value.clone());
    }
    r
}

/// [`handle`], plus `POST /-/reload`, which waits for the reload (403 without
/// `--web.enable-lifecycle`).
async fn reload(state: &AppState, method: &Method, path: &str) -> Response<Body> {
    if path != "/-/reload" || !matches!(*method, Method::POST | Method::PUT) {
        return handle(state, method, path);
    }
    if !state.lifecycle {
        return respond(
            StatusCode::FORBIDDEN,
            TEXT,
            "Lifecycle API is not enabled: start with --web.enable-lifecycle, or send SIGHUP\n",
        );
    }
    let Some(reload) = &state.reload else {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "reload is not available\n",
        );
    };
    let (tx, rx) = oneshot::channel();
    if reload
        .send(ReloadRequest { respond: Some(tx) })
        .await
        .is_err()
    {
        return respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "shutting down\n");
    }
    match rx.await {
        Ok(Ok(())) => respond(StatusCode::OK, TEXT, "config reloaded\n"),
        Ok(Err(e)) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            format!("config reload rejected: {e}\n"),
        ),
        Err(_) => respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "shutting down\n"),
    }
}

/// Routes every request but reloads. Never panics and never waits on anything but the
/// snapshot lock.
pub fn handle(state: &AppState, method: &Method, path: &str) -> Response<Body> {
    let allow = match path {
        "/" | "/metrics" | "/-/healthy" | "/-/ready" => "GET, HEAD",
        "/-/reload" => "POST, PUT",
        _ => return respond(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    };
    if !allow.split(", ").any(|m| m == method.as_str()) {
        let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        return r;
    }
    match path {
        "/metrics" => match state.exposition.encode_chunks() {
            Ok(chunks) => respond(StatusCode::OK, render::CONTENT_TYPE, Body::chunks(chunks)),
            Err(e) => {
                warn!(error = %e, "cannot encode metrics");
                respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    TEXT,
                    format!("cannot encode metrics: {e}\n"),
                )
            }
        },
        "/-/healthy" => respond(StatusCode::OK, TEXT, "Healthy\n"),
        "/-/ready" if state.shared.is_ready() => respond(StatusCode::OK, TEXT, "Ready\n"),
        "/-/ready" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "Not ready: no poll cycle has reached AWS yet\n",
        ),
        _ => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            landing(state.demo),
        ),
    }
}

fn landing(demo: bool) -> String {
    let banner = if demo {
        "<p style=\"background:#fde68a;padding:.5em\"><strong>DEMO MODE</strong>: every value \
         here is synthetic, generated without AWS. Do not use it for anything real.</p>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>API Gateway Exporter</title></head>\
         <body><h1>API Gateway Exporter</h1>{banner}<p>Version {version}</p>\
         <ul><li><a href=\"/metrics\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li>\
         <li><a href=\"/-/ready\">Readiness</a></li></ul>\
         <p>Reload the config with SIGHUP, or with <code>POST /-/reload</code> when started with <code>--web.enable-lifecycle</code>.</p></body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// Serves until `shutdown` resolves. The listener is injected so tests can bind port 0.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // A scrape that stalls mid-body must not hold a slot forever.
    let limits = Limits {
        connections: MAX_CONNECTIONS,
        connection_time: Duration::from_secs(60),
    };
    let web = state.web.clone();
    serve_with(listener, limits, web, shutdown, move |req| {
        let state = Arc::clone(&state);
        async move { route(&state, req.method(), req.uri().path(), req.headers()).await }
    })
    .await;
}

/// How many connections are served at once, and for how long each at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub connection_time: Duration,
}

/// Accepts connections until `shutdown` resolves, at most `limits.connections` at once (more
/// wait in the accept queue), and serves each over HTTP/1.1 with `handler`; over TLS when the
/// web config sets it up (read again for each connection).
pub async fn serve_with<H, F>(
    listener: TcpListener,
    limits: Limits,
    web: Option<Arc<web::WebFront>>,
    shutdown: impl std::future::Future<Output = ()>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handler = handler.clone();
        let web = web.clone();
        tokio::spawn(async move {
            // Off the accept loop: a changed web config is rebuilt here.
            let loaded = web.as_ref().map(|w| w.current());
            let service = service_fn(move |req: Request<Incoming>| {
                let response = handler(req);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let builder = {
                let mut b = http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10));
                b
            };
            let served = async {
                match loaded.as_ref().and_then(|l| l.tls.clone().map(|t| (l, t))) {
                    None => builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                        .map_err(|e| e.to_string()),
                    Some((loaded, tls)) => {
                        // As slow as a request's headers may be, and no slower.
                        let handshake = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
                        let tls = tokio::time::timeout(Duration::from_secs(10), handshake)
                            .await
                            .map_err(|_| "TLS handshake timed out".to_string())?
                            .map_err(|e| format!("TLS handshake: {e}"))?;
                        if !web::WebFront::client_allowed(
                            loaded,
                            tls.get_ref().1.peer_certificates(),
                        ) {
                            return Err("client certificate not in client_allowed_sans".to_string());
                        }
                        builder
                            .serve_connection(TokioIo::new(tls), service)
                            .await
                            .map_err(|e| e.to_string())
                    }
                }
            };
            match tokio::time::timeout(limits.connection_time, served).await {
                Ok(Err(e)) => debug!(%peer, error = %e, "connection error"),
                Err(_) => debug!(%peer, "connection timed out"),
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
}
