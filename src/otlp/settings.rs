//! The effective OTLP settings: the `otlp` config section, completed from the standard
//! `OTEL_*` environment variables where the file is silent.
//!
//! Pure: the environment comes in as a function, so tests feed a map. Precedence, highest
//! first (also in `docs/otlp.md`):
//!
//! | setting | 1. config | 2. signal env | 3. generic env | 4. default |
//! |---|---|---|---|---|
//! | endpoint | `otlp.endpoint` | `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (as is) | `OTEL_EXPORTER_OTLP_ENDPOINT` | `http://localhost:4317` (grpc), `http://localhost:4318` (http) |
//! | protocol | `otlp.protocol` | `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` | `OTEL_EXPORTER_OTLP_PROTOCOL` | `grpc` |
//! | headers (per name) | `otlp.headers` | `OTEL_EXPORTER_OTLP_METRICS_HEADERS` | `OTEL_EXPORTER_OTLP_HEADERS` | none |
//! | timeout | — | `OTEL_EXPORTER_OTLP_METRICS_TIMEOUT` | `OTEL_EXPORTER_OTLP_TIMEOUT` | 10 s |
//! | compression | — | `OTEL_EXPORTER_OTLP_METRICS_COMPRESSION` | `OTEL_EXPORTER_OTLP_COMPRESSION` | none |
//! | CA, client cert, key | — | `OTEL_EXPORTER_OTLP_METRICS_{CERTIFICATE,CLIENT_CERTIFICATE,CLIENT_KEY}` | `OTEL_EXPORTER_OTLP_{…}` | system roots |
//! | resource (per key) | `otlp.resource_attributes` | `OTEL_SERVICE_NAME` (service.name) | `OTEL_RESOURCE_ATTRIBUTES` | service.name, service.version, service.instance.id |
//!
//! For `http`, `/v1/metrics` is appended to the path of `otlp.endpoint` and of
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (base URLs, as the OTLP spec defines the generic variable);
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` is used as it is. As the spec asks, an environment
//! value that cannot be used is ignored with a warning (which names the variable, never a
//! header value) and the next level applies.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{OtlpConfig, OtlpProtocol, check_header};

/// The export timeout when the environment sets none (the OTLP spec's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Request compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

/// Where TLS material comes from, beyond the system's root certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file of extra trusted CA certificates.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain and key, for mutual TLS (both or neither).
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Everything the OTLP exporter needs to know, resolved once at startup.
///
/// `Debug` shows header names only: the values are credentials.
#[derive(Clone, PartialEq)]
pub struct Settings {
    pub protocol: OtlpProtocol,
    /// The full URL: for `http` the one requests are POSTed to, for `grpc` the origin.
    pub endpoint: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub compression: Compression,
    /// Lower-case header name → value, sent with every export.
    pub headers: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
    pub tls: TlsFiles,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("protocol", &self.protocol)
            .field("endpoint", &redact_url(&self.endpoint))
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("resource", &self.resource)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The resolved settings and the environment values that were ignored (one message each).
#[derive(Debug)]
pub struct Resolved {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

/// The environment variables of one setting, signal-specific first.
fn vars(suffix: &str) -> [String; 2] {
    [
        format!("OTEL_EXPORTER_OTLP_METRICS_{suffix}"),
        format!("OTEL_EXPORTER_OTLP_{suffix}"),
    ]
}

/// Resolves `config` (already validated) against the environment `env`. `instance` is the
/// default `service.instance.id`.
pub fn resolve(
    config: &OtlpConfig,
    instance: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Resolved {
    let mut warnings = Vec::new();
    // Unset and empty are the same to the OTel spec.
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());

    let protocol = config.protocol.unwrap_or_else(|| {
        vars("PROTOCOL")
            .iter()
            .find_map(|var| {
                let value = env(var)?;
                match value.trim() {
                    "grpc" => Some(OtlpProtocol::Grpc),
                    "http/protobuf" => Some(OtlpProtocol::Http),
                    "http/json" => {
                        warnings.push(format!(
                            "{var}=http/json is not supported (use grpc or http/protobuf); ignored"
                        ));
                        None
                    }
                    other => {
                        warnings.push(format!(
                            "{var}={other:?} is not an OTLP protocol (grpc or http/protobuf); ignored"
                        ));
                        None
                    }
                }
            })
            .unwrap_or_default()
    });

    let base = |url: &str| match protocol {
        OtlpProtocol::Grpc => url.to_string(),
        OtlpProtocol::Http => metrics_path(url),
    };
    let endpoint = if let Some(url) = &config.endpoint {
        base(url)
    } else {
        let [signal, generic] = vars("ENDPOINT");
        let mut from_env = None;
        for (var, as_is) in [(signal, true), (generic, false)] {
            let Some(url) = env(&var) else { continue };
            let url = url.trim().to_string();
            if is_http_url(&url) {
                from_env = Some(if as_is { url } else { base(&url) });
                break;
            }
            warnings.push(format!(
                "{var}={:?} is not an http:// or https:// URL; ignored",
                redact_url(&url)
            ));
        }
        from_env.unwrap_or_else(|| match protocol {
            OtlpProtocol::Grpc => "http://localhost:4317".to_string(),
            OtlpProtocol::Http => "http://localhost:4318/v1/metrics".to_string(),
        })
    };

    let mut headers = BTreeMap::new();
    for var in vars("HEADERS").iter().rev() {
        if let Some(text) = env(var) {
            parse_pairs(var, &text, &mut warnings, |name, value| {
                check_header(name, value)?;
                headers.insert(name.to_ascii_lowercase(), value.to_string());
                Ok(())
            });
        }
    }
    for (name, value) in &config.headers {
        headers.insert(name.to_ascii_lowercase(), value.clone());
    }

    let timeout = vars("TIMEOUT")
        .iter()
        .find_map(|var| {
            let value = env(var)?;
            match value.trim().parse::<u64>() {
                // At most an hour: a timeout no export could sensibly wait for is a typo.
                Ok(ms) if (1..=3_600_000).contains(&ms) => Some(Duration::from_millis(ms)),
                _ => {
                    warnings.push(format!(
                        "{var}={value:?} is not a timeout in milliseconds (1 to 3600000); ignored"
                    ));
                    None
                }
            }
        })
        .unwrap_or(DEFAULT_TIMEOUT);

    let compression = vars("COMPRESSION")
        .iter()
        .find_map(|var| {
            let value = env(var)?;
            match value.trim() {
                "gzip" => Some(Compression::Gzip),
                "none" => Some(Compression::None),
                other => {
                    warnings.push(format!(
                        "{var}={other:?} is not a compression (gzip or none); ignored"
                    ));
                    None
                }
            }
        })
        .unwrap_or_default();

    let file = |suffix: &str| vars(suffix).iter().find_map(|v| env(v)).map(PathBuf::from);
    let client = match (file("CLIENT_CERTIFICATE"), file("CLIENT_KEY")) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            warnings.push(
                "OTEL_EXPORTER_OTLP_[METRICS_]CLIENT_CERTIFICATE and _CLIENT_KEY go together; \
                 only one is set, so no client certificate is sent"
                    .to_string(),
            );
            None
        }
    };
    let tls = TlsFiles {
        ca: file("CERTIFICATE"),
        client,
    };

    let mut resource = BTreeMap::from([
        (
            "service.name".to_string(),
            "apigateway-exporter".to_string(),
        ),
        (
            "service.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("service.instance.id".to_string(), instance.to_string()),
    ]);
    if let Some(text) = env("OTEL_RESOURCE_ATTRIBUTES") {
        parse_pairs("OTEL_RESOURCE_ATTRIBUTES", &text, &mut warnings, |k, v| {
            resource.insert(k.to_string(), v.to_string());
            Ok(())
        });
    }
    if let Some(name) = env("OTEL_SERVICE_NAME") {
        resource.insert("service.name".to_string(), name.trim().to_string());
    }
    for (k, v) in &config.resource_attributes {
        resource.insert(k.clone(), v.clone());
    }

    Resolved {
        settings: Settings {
            protocol,
            endpoint,
            interval: config.interval.get(),
            timeout,
            compression,
            headers,
            resource,
            tls,
        },
        warnings,
    }
}

/// An `http://` or `https://` URL with a host (what `otlp.endpoint` validation accepts).
fn is_http_url(url: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        url.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    }) && !url.contains(char::is_whitespace)
}

/// `base` with `/v1/metrics` appended to its path, unless it already ends with it.
fn metrics_path(base: &str) -> String {
    let (url, query) = match base.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (base, None),
    };
    let url = url.trim_end_matches('/');
    let mut out = if url.ends_with("/v1/metrics") {
        url.to_string()
    } else {
        format!("{url}/v1/metrics")
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Parses the OTel list format `k1=v1,k2=v2` (values percent-encoded), calling `add` for
/// each pair. A malformed entry is skipped with a warning naming the variable and the
/// entry's position, never its value (header values are credentials).
fn parse_pairs(
    var: &str,
    text: &str,
    warnings: &mut Vec<String>,
    mut add: impl FnMut(&str, &str) -> Result<(), String>,
) {
    for (i, entry) in text.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            warnings.push(format!("{var}: entry {} has no '='; ignored", i + 1));
            continue;
        };
        let key = key.trim();
        let value = match percent_decode(value.trim()) {
            Some(v) => v,
            None => {
                warnings.push(format!(
                    "{var}: entry {} ({key}) is not valid percent-encoded UTF-8; ignored",
                    i + 1
                ));
                continue;
            }
        };
        if key.is_empty() {
            warnings.push(format!("{var}: entry {} has an empty key; ignored", i + 1));
            continue;
        }
        if let Err(reason) = add(key, &value) {
            warnings.push(format!("{var}: entry {} ({key}): {reason}; ignored", i + 1));
        }
    }
}

/// Decodes `%XX` escapes; `None` for a broken escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A URL fit for a log line: user info and query (which may carry credentials) replaced.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, _)) => (r, true),
        None => (rest, false),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("<redacted>@{host}"),
        None => authority.to_string(),
    };
    let mut out = String::new();
    if let Some(s) = scheme {
        out.push_str(s);
        out.push_str("://");
    }
    out.push_str(&authority);
    out.push_str(path);
    if query {
        out.push_str("?<redacted>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> OtlpConfig {
        crate::config::Config::parse(yaml, |_| None).unwrap().otlp
    }

    fn resolve_with(yaml: &str, env: &[(&str, &str)]) -> Resolved {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(&config(yaml), "host:9743", |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_without_config_or_environment() {
        let r = resolve_with("otlp: {enabled: true}", &[]);
        let s = r.settings;
        assert!(r.warnings.is_empty());
        assert_eq!(s.protocol, OtlpProtocol::Grpc);
        assert_eq!(s.endpoint, "http://localhost:4317");
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(s.compression, Compression::None);
        assert!(s.headers.is_empty());
        assert_eq!(s.resource["service.name"], "apigateway-exporter");
        assert_eq!(s.resource["service.version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(s.resource["service.instance.id"], "host:9743");
        let s = resolve_with("otlp: {protocol: http}", &[]).settings;
        assert_eq!(s.endpoint, "http://localhost:4318/v1/metrics");
    }

    #[test]
    fn environment_fills_what_the_config_leaves_out() {
        let env = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://collector:4318/base/",
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20abc, x-tenant = t1",
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-tenant=t2"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,team=payments%2Capi",
            ),
            ("OTEL_SERVICE_NAME", "from-service-name"),
        ];
        let r = resolve_with("otlp: {enabled: true}", &env);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let s = r.settings;
        assert_eq!(s.protocol, OtlpProtocol::Http);
        assert_eq!(s.endpoint, "https://collector:4318/base/v1/metrics");
        assert_eq!(s.headers["authorization"], "Bearer abc");
        assert_eq!(s.headers["x-tenant"], "t2");
        assert_eq!(s.timeout, Duration::from_millis(2500));
        assert_eq!(s.compression, Compression::Gzip);
        assert_eq!(s.tls.ca, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(s.resource["service.name"], "from-service-name");
        assert_eq!(s.resource["team"], "payments,api");

        // The signal-specific endpoint is used as it is.
        let r = resolve_with(
            "otlp: {protocol: http}",
            &[
                (
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                    "http://c:4318/custom",
                ),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
            ],
        );
        assert_eq!(r.settings.endpoint, "http://c:4318/custom");
    }

    #[test]
    fn the_config_wins_over_the_environment() {
        let env = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://env:4318/v1/metrics",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=env,x-extra=1"),
            ("OTEL_SERVICE_NAME", "env-name"),
        ];
        let yaml = "otlp:\n  endpoint: http://file:4317\n  protocol: grpc\n  \
                    headers: {Authorization: file}\n  resource_attributes: {service.name: file-name}\n";
        let s = resolve_with(yaml, &env).settings;
        assert_eq!(s.protocol, OtlpProtocol::Grpc);
        assert_eq!(s.endpoint, "http://file:4317");
        assert_eq!(s.headers["authorization"], "file");
        assert_eq!(s.headers["x-extra"], "1");
        assert_eq!(s.resource["service.name"], "file-name");
        // http: the config endpoint is a base URL.
        let s = resolve_with("otlp: {endpoint: 'http://file:4318', protocol: http}", &[]).settings;
        assert_eq!(s.endpoint, "http://file:4318/v1/metrics");
        let s = resolve_with(
            "otlp: {endpoint: 'http://file:4318/v1/metrics', protocol: http}",
            &[],
        )
        .settings;
        assert_eq!(s.endpoint, "http://file:4318/v1/metrics");
    }

    #[test]
    fn unusable_environment_values_are_ignored_with_a_warning_that_hides_secrets() {
        let env = [
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer s3\u{7}cret,novalue,x=%zz",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"),
        ];
        let r = resolve_with("otlp: {enabled: true}", &env);
        assert_eq!(r.settings.protocol, OtlpProtocol::Grpc);
        assert_eq!(r.settings.endpoint, "http://localhost:4317");
        assert!(r.settings.headers.is_empty());
        assert_eq!(r.settings.timeout, DEFAULT_TIMEOUT);
        assert_eq!(r.settings.tls, TlsFiles::default());
        let all = r.warnings.join("\n");
        assert_eq!(r.warnings.len(), 9, "{all}");
        for var in [
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "CLIENT_KEY",
        ] {
            assert!(all.contains(var), "{var} not named in {all}");
        }
        assert!(!all.contains("Bearer"), "{all}");
    }

    #[test]
    fn headers_are_checked_without_echoing_values() {
        assert!(check_header("authorization", "Bearer x").is_ok());
        assert!(check_header("X-Scope-OrgID", "tenant-1").is_ok());
        for (name, value) in [
            ("", "v"),
            ("bad name", "v"),
            ("x-bin", "v"),
            ("grpc-timeout", "1S"),
            ("content-type", "x"),
            ("authorization", "Bearer s3cret\r\nx: y"),
            ("authorization", "Bearer s3crét"),
        ] {
            let reason = check_header(name, value).unwrap_err();
            assert!(!reason.contains("s3cr"), "{reason}");
        }
    }

    #[test]
    fn config_validation_names_the_header_and_hides_its_value() {
        for (yaml, key) in [
            (
                "otlp: {headers: {authorization: \"Bearer s3cret\\n\"}}",
                "otlp.headers.authorization",
            ),
            (
                "otlp: {headers: {Authorization: s3cret, authorization: s3cret}}",
                "otlp.headers.authorization",
            ),
            (
                "otlp: {headers: {\"bad name\": s3cret}}",
                "otlp.headers.bad name",
            ),
            (
                "otlp: {resource_attributes: {\"\": x}}",
                "otlp.resource_attributes",
            ),
        ] {
            let err = crate::config::Config::parse(yaml, |_| None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{yaml}: {err}");
            assert!(!err.contains("s3cret"), "{yaml}: {err}");
        }
    }

    #[test]
    fn urls_in_logs_hide_credentials() {
        assert_eq!(
            redact_url("https://user:pw@collector:4318/v1/metrics?api_key=k"),
            "https://<redacted>@collector:4318/v1/metrics?<redacted>"
        );
        assert_eq!(redact_url("http://collector:4317"), "http://collector:4317");
    }

    #[test]
    fn debug_never_shows_header_values() {
        let yaml = "otlp: {headers: {authorization: 'Bearer s3cret'}}";
        let s = resolve_with(yaml, &[]).settings;
        assert!(!format!("{s:?}").contains("s3cret"));
        assert!(!format!("{:?}", config(yaml)).contains("s3cret"));
        assert!(format!("{:?}", config(yaml)).contains("authorization"));
    }
}
