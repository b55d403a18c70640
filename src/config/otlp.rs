//! `otlp`: the push of the same metrics to an OpenTelemetry collector.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::Interval;
use super::types::number_or_text;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317 by convention).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318 by convention).
    Http,
}

/// `otlp.protocol == OtlpProtocol::Http` reads "the file sets protocol: http" (an unset
/// protocol equals neither: the environment decides, see [`crate::otlp`]).
impl PartialEq<OtlpProtocol> for Option<OtlpProtocol> {
    fn eq(&self, other: &OtlpProtocol) -> bool {
        self.as_ref() == Some(other)
    }
}

/// OTLP push of the snapshot and the self-metrics ([`crate::otlp`]). `endpoint`, `protocol`
/// and `headers` fall back to the standard `OTEL_EXPORTER_OTLP_*` environment variables
/// where the file is silent (precedence in `docs/otlp.md`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    #[serde(deserialize_with = "number_or_text")]
    pub enabled: bool,
    /// Collector URL; for `http` the base URL that `/v1/metrics` is appended to.
    pub endpoint: Option<String>,
    pub protocol: Option<OtlpProtocol>,
    pub interval: Interval,
    /// Sent with every export (auth tokens): never logged, and redacted from `Debug`.
    pub headers: BTreeMap<String, String>,
    pub resource_attributes: BTreeMap<String, String>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        const INTERVAL: Interval = Interval::from_secs(60);
        OtlpConfig {
            enabled: false,
            endpoint: None,
            protocol: None,
            interval: INTERVAL,
            headers: BTreeMap::new(),
            resource_attributes: BTreeMap::new(),
        }
    }
}

/// Header names only: their values are credentials.
impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("enabled", &self.enabled)
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("interval", &self.interval)
            .field(
                "headers",
                &self
                    .headers
                    .keys()
                    .map(|k| (k.as_str(), "<redacted>"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("resource_attributes", &self.resource_attributes)
            .finish()
    }
}

/// Checks a header for OTLP export (HTTP header or gRPC metadata). The reason never
/// contains the value.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(
            "not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)".to_string(),
        );
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with("-bin") || lower.starts_with("grpc-") {
        return Err("names ending in -bin or starting with grpc- are reserved by gRPC".into());
    }
    if matches!(
        lower.as_str(),
        "content-type" | "content-length" | "content-encoding" | "te" | "host" | "user-agent"
    ) {
        return Err("set by the exporter itself".into());
    }
    if !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
        return Err(
            "the value must be printable ASCII (no line breaks or control characters)".into(),
        );
    }
    Ok(())
}
