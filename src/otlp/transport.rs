//! Sending one request: OTLP/gRPC through tonic's generated client, OTLP/HTTP as a protobuf
//! POST. Both run over the same hyper-util client and rustls (the stack the AWS SDK already
//! brings), so OTLP adds no second HTTP or TLS implementation.

use std::error::Error as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

use super::settings::{Compression, Settings};
use crate::config::OtlpProtocol;

/// Why the exporter cannot be set up at all (reported at startup).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("otlp endpoint {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("otlp TLS: {0}")]
    Tls(String),
    #[error("otlp header {name}: {reason}")]
    Header { name: String, reason: String },
}

/// Why one export failed. Never contains a header value.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("gRPC status {code:?}: {message}")]
    Grpc { code: tonic::Code, message: String },
    #[error("HTTP status {0}")]
    Status(http::StatusCode),
    #[error("{0}")]
    Transport(String),
}

/// What the collector answered to a successful export (OTLP partial success).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    pub rejected: i64,
    pub message: String,
}

type Https<B> = Client<HttpsConnector<HttpConnector>, B>;

enum Kind {
    Grpc {
        client: MetricsServiceClient<Https<tonic::body::Body>>,
        metadata: MetadataMap,
    },
    Http {
        client: Https<Full<Bytes>>,
        uri: Uri,
        headers: HeaderMap,
        gzip: bool,
    },
}

/// A connection-pooling sender for one endpoint.
pub struct Transport {
    kind: Kind,
}

/// Responses larger than this are not read (a response carries at most a short message).
const MAX_RESPONSE: usize = 64 * 1024;

impl Transport {
    pub fn new(settings: &Settings) -> Result<Transport, SetupError> {
        let endpoint_error = |reason: String| SetupError::Endpoint {
            endpoint: super::settings::redact_url(&settings.endpoint),
            reason,
        };
        let uri: Uri = settings
            .endpoint
            .parse()
            .map_err(|e: http::uri::InvalidUri| endpoint_error(e.to_string()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(endpoint_error("must be an http:// or https:// URL".into())),
        };
        let tls = tls_config(settings, https)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.timeout));
        let builder = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let mut client = Client::builder(TokioExecutor::new());
        client
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90));
        let header_error = |name: &str, reason: String| SetupError::Header {
            name: name.to_string(),
            reason,
        };
        let kind = match settings.protocol {
            OtlpProtocol::Grpc => {
                let connector = builder.enable_http2().wrap_connector(http);
                let hyper = client.http2_only(true).build(connector);
                let mut grpc = MetricsServiceClient::with_origin(hyper, uri);
                if settings.compression == Compression::Gzip {
                    grpc = grpc.send_compressed(CompressionEncoding::Gzip);
                }
                let mut metadata = MetadataMap::new();
                for (name, value) in &settings.headers {
                    let key = MetadataKey::from_bytes(name.as_bytes())
                        .map_err(|_| header_error(name, "not a gRPC metadata key".into()))?;
                    let mut value: MetadataValue<_> = value
                        .parse()
                        .map_err(|_| header_error(name, "not a printable ASCII value".into()))?;
                    value.set_sensitive(true);
                    metadata.insert(key, value);
                }
                Kind::Grpc {
                    client: grpc,
                    metadata,
                }
            }
            OtlpProtocol::Http => {
                let connector = builder.enable_all_versions().wrap_connector(http);
                let mut headers = HeaderMap::new();
                for (name, value) in &settings.headers {
                    let key = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| header_error(name, "not an HTTP header name".into()))?;
                    let mut value = HeaderValue::from_str(value)
                        .map_err(|_| header_error(name, "not a printable ASCII value".into()))?;
                    value.set_sensitive(true);
                    headers.insert(key, value);
                }
                Kind::Http {
                    client: client.build(connector),
                    uri,
                    headers,
                    gzip: settings.compression == Compression::Gzip,
                }
            }
        };
        Ok(Transport { kind })
    }

    /// Sends `request`, giving up after `timeout` (connecting included).
    pub async fn export(
        &self,
        request: ExportMetricsServiceRequest,
        timeout: Duration,
    ) -> Result<Accepted, ExportError> {
        let send = async {
            match &self.kind {
                Kind::Grpc { client, metadata } => {
                    let mut client = client.clone();
                    let mut request = tonic::Request::new(request);
                    *request.metadata_mut() = metadata.clone();
                    request.set_timeout(timeout);
                    let response = client
                        .export(request)
                        .await
                        .map_err(|s| ExportError::Grpc {
                            code: s.code(),
                            message: with_sources(
                                s.message().to_string(),
                                std::error::Error::source(&s),
                            ),
                        })?;
                    Ok(accepted(response.into_inner()))
                }
                Kind::Http {
                    client,
                    uri,
                    headers,
                    gzip,
                } => {
                    let mut body = request.encode_to_vec();
                    if *gzip {
                        body =
                            compress(&body).map_err(|e| ExportError::Transport(e.to_string()))?;
                    }
                    let mut req = Request::post(uri.clone())
                        .body(Full::new(Bytes::from(body)))
                        .map_err(|e| ExportError::Transport(e.to_string()))?;
                    let h = req.headers_mut();
                    h.extend(headers.clone());
                    h.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/x-protobuf"),
                    );
                    h.insert(
                        USER_AGENT,
                        HeaderValue::from_static(concat!(
                            env!("CARGO_PKG_NAME"),
                            "/",
                            env!("CARGO_PKG_VERSION")
                        )),
                    );
                    if *gzip {
                        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    }
                    let response = client.request(req).await.map_err(|e| {
                        ExportError::Transport(with_sources(e.to_string(), e.source()))
                    })?;
                    let status = response.status();
                    let body = Limited::new(response.into_body(), MAX_RESPONSE)
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    if !status.is_success() {
                        return Err(ExportError::Status(status));
                    }
                    // An empty or undecodable body (say, JSON) is a full success.
                    Ok(ExportMetricsServiceResponse::decode(body)
                        .map(accepted)
                        .unwrap_or_default())
                }
            }
        };
        tokio::time::timeout(timeout, send)
            .await
            .unwrap_or(Err(ExportError::Timeout(timeout)))
    }
}

fn accepted(response: ExportMetricsServiceResponse) -> Accepted {
    response
        .partial_success
        .map(|p| Accepted {
            rejected: p.rejected_data_points,
            message: p.error_message,
        })
        .unwrap_or_default()
}

fn compress(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body)?;
    encoder.finish()
}

/// `message` followed by the messages of `source` and its sources that it does not already
/// contain, `: `-separated (hyper's own message says little: the cause is in the sources).
fn with_sources(
    mut message: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

/// rustls with the system's roots plus `OTEL_EXPORTER_OTLP_CERTIFICATE`, and the client
/// certificate when one is configured. Plain-http endpoints get an empty root store.
fn tls_config(settings: &Settings, https: bool) -> Result<rustls::ClientConfig, SetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let pem = |path: &std::path::Path, e: rustls::pki_types::pem::Error| {
        SetupError::Tls(format!("{}: {e}", path.display()))
    };
    if https {
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(ca) = &settings.tls.ca {
            let certs = CertificateDer::pem_file_iter(ca).map_err(|e| pem(ca, e))?;
            for cert in certs {
                roots
                    .add(cert.map_err(|e| pem(ca, e))?)
                    .map_err(|e| SetupError::Tls(format!("{}: {e}", ca.display())))?;
            }
        }
        if roots.is_empty() {
            return Err(SetupError::Tls(
                "no trusted CA certificates: the system has none; install them or set \
                 OTEL_EXPORTER_OTLP_CERTIFICATE to a PEM file"
                    .into(),
            ));
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SetupError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&settings.tls.client, https) {
        (Some((cert, key)), true) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem(cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem(cert, e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| SetupError::Tls(format!("client certificate: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}
