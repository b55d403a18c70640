//! `--web.config.file`: TLS and basic auth for `/metrics`, in the file format of the
//! Prometheus exporter-toolkit (what node_exporter and Prometheus read), with its keys and
//! meanings. What rustls cannot do (TLS 1.0 and 1.1, CBC cipher suites, the P-521 curve,
//! accepting client certificates without verifying them) is refused by name rather than
//! silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// The whole web config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    pub tls_server_config: Option<TlsServerConfig>,
    pub http_server_config: HttpServerConfig,
    /// User name → bcrypt hash of the password.
    pub basic_auth_users: BTreeMap<String, String>,
    /// exporter-toolkit's request rate limit: not supported, refused by name.
    #[serde(default, deserialize_with = "refuse_rate_limit")]
    pub rate_limit: Option<()>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsServerConfig {
    /// exporter-toolkit's request rate limit: not supported, refused by name.
    #[serde(default, deserialize_with = "refuse_rate_limit")]
    pub rate_limit: Option<()>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The certificate itself (PEM), instead of `cert_file`.
    pub cert: Option<String>,
    /// The key itself (PEM), instead of `key_file`.
    pub key: Option<String>,
    pub client_auth_type: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    /// The CA itself (PEM), instead of `client_ca_file`.
    pub client_ca: Option<String>,
    pub client_allowed_sans: Vec<String>,
    pub min_version: Option<TlsVersion>,
    pub max_version: Option<TlsVersion>,
    pub cipher_suites: Vec<String>,
    pub prefer_server_cipher_suites: Option<bool>,
    pub curve_preferences: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpServerConfig {
    /// Accepted for compatibility; the exporter serves HTTP/1.1.
    pub http2: Option<bool>,
    pub headers: BTreeMap<String, String>,
}

/// exporter-toolkit's `client_auth_type` values that rustls can honour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    #[default]
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl<'de> Deserialize<'de> for ClientAuth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ClientAuth, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "" | "NoClientCert" => Ok(ClientAuth::NoClientCert),
            "VerifyClientCertIfGiven" => Ok(ClientAuth::VerifyClientCertIfGiven),
            "RequireAndVerifyClientCert" => Ok(ClientAuth::RequireAndVerifyClientCert),
            "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => {
                Err(serde::de::Error::custom(format!(
                    "{s} is not supported (it accepts client certificates without verifying them): use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                )))
            }
            other => Err(serde::de::Error::custom(format!(
                "{other:?} is not a client_auth_type: NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TlsVersion, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            "TLS10" | "TLS11" => Err(serde::de::Error::custom(format!(
                "{s} is not supported (rustls speaks TLS 1.2 and 1.3): use TLS12 or TLS13"
            ))),
            other => Err(serde::de::Error::custom(format!(
                "{other:?} is not a TLS version: TLS12 or TLS13"
            ))),
        }
    }
}

fn refuse_rate_limit<'de, D: serde::Deserializer<'de>>(_: D) -> Result<Option<()>, D::Error> {
    Err(serde::de::Error::custom(
        "is not supported by this exporter: limit request rates in front of it (an ingress or proxy)",
    ))
}

/// The response headers exporter-toolkit lets a web config set.
pub const SETTABLE_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

impl WebConfig {
    /// Reads and checks a web config file. Errors name the key.
    pub fn load(path: &Path) -> Result<WebConfig, ConfigError> {
        WebConfig::parse(&super::read(path)?)
    }

    pub fn parse(text: &str) -> Result<WebConfig, ConfigError> {
        let config: WebConfig = super::deserialize(super::document(text)?)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = &self.tls_server_config {
            let k = |name: &str| format!("tls_server_config.{name}");
            match (&t.cert_file, &t.cert) {
                (None, None) => {
                    return Err(invalid(k("cert_file"), "missing: set cert_file or cert"));
                }
                (Some(_), Some(_)) => {
                    return Err(invalid(k("cert"), "set cert_file or cert, not both"));
                }
                _ => {}
            }
            match (&t.key_file, &t.key) {
                (None, None) => return Err(invalid(k("key_file"), "missing: set key_file or key")),
                (Some(_), Some(_)) => {
                    return Err(invalid(k("key"), "set key_file or key, not both"));
                }
                _ => {}
            }
            let verifies = t.client_auth_type != ClientAuth::NoClientCert;
            if t.client_ca_file.is_some() && t.client_ca.is_some() {
                return Err(invalid(
                    k("client_ca"),
                    "set client_ca_file or client_ca, not both",
                ));
            }
            let has_ca = t.client_ca_file.is_some() || t.client_ca.is_some();
            if verifies && !has_ca {
                return Err(invalid(
                    k("client_ca_file"),
                    "required to verify client certificates",
                ));
            }
            if !verifies && has_ca {
                return Err(invalid(
                    k("client_auth_type"),
                    "client_ca_file is set: use VerifyClientCertIfGiven or RequireAndVerifyClientCert",
                ));
            }
            if !verifies && !t.client_allowed_sans.is_empty() {
                return Err(invalid(
                    k("client_allowed_sans"),
                    "needs client certificates: set client_auth_type VerifyClientCertIfGiven or RequireAndVerifyClientCert",
                ));
            }
            if let (Some(min), Some(max)) = (t.min_version, t.max_version)
                && min > max
            {
                return Err(invalid(k("max_version"), "is below min_version"));
            }
        }
        for (name, value) in &self.http_server_config.headers {
            let key = format!("http_server_config.headers.{name}");
            if !SETTABLE_HEADERS.contains(&name.as_str()) {
                return Err(invalid(
                    key,
                    format!("cannot be set; settable: {}", SETTABLE_HEADERS.join(", ")),
                ));
            }
            if value.is_empty() {
                return Err(invalid(key, "is empty: leave the header out instead"));
            }
            // The values exporter-toolkit allows for these two.
            let allowed: &[&str] = match name.as_str() {
                "X-Frame-Options" => &["deny", "sameorigin"],
                "X-Content-Type-Options" => &["nosniff"],
                _ => &[],
            };
            if !allowed.is_empty() && !allowed.contains(&value.to_ascii_lowercase().as_str()) {
                return Err(invalid(
                    key,
                    format!("must be one of {}", allowed.join(", ")),
                ));
            }
        }
        for (user, hash) in &self.basic_auth_users {
            if user.is_empty() || user.contains(':') {
                return Err(invalid(
                    "basic_auth_users",
                    format!("{user:?} is not a user name (not empty, no ':')"),
                ));
            }
            if bcrypt::HashParts::from_str(hash).is_err() {
                return Err(invalid(
                    format!("basic_auth_users.{user}"),
                    "is not a bcrypt hash (such as `htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        WebConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_exporter_toolkit_format() {
        let c = WebConfig::parse(
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: TLS13\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: [scraper]\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519]\nhttp_server_config:\n  http2: false\n  headers: {Strict-Transport-Security: max-age=31536000}\nbasic_auth_users:\n  prometheus: $2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi\n",
        )
        .unwrap();
        let t = c.tls_server_config.unwrap();
        assert_eq!(t.min_version, Some(TlsVersion::Tls13));
        assert_eq!(t.client_auth_type, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(c.basic_auth_users.len(), 1);
        assert!(WebConfig::parse("").unwrap().tls_server_config.is_none());
    }

    #[test]
    fn bad_files_name_the_key() {
        assert!(err("tls_server_config: {cert_file: c}\n").contains("tls_server_config.key_file"));
        assert!(
            err("tls_server_config: {cert_file: c, key_file: k, min_version: TLS11}\n")
                .contains("tls_server_config.min_version: TLS11 is not supported")
        );
        assert!(err("tls_server_config: {cert_file: c, key_file: k, client_auth_type: RequireAnyClientCert}\n").contains("not supported"));
        assert!(err("tls_server_config: {cert_file: c, key_file: k, client_auth_type: RequireAndVerifyClientCert}\n").contains("client_ca_file"));
        assert!(
            err("tls_server_config: {cert_file: c, key_file: k, cert_fiel: x}\n")
                .contains("unknown field `cert_fiel`")
        );
        assert!(
            err("basic_auth_users: {alice: secret}\n")
                .contains("basic_auth_users.alice: is not a bcrypt hash")
        );
        assert!(
            err("http_server_config: {headers: {Server: x}}\n")
                .contains("http_server_config.headers.Server")
        );
        assert!(err("tsl_server_config: {}\n").contains("unknown field `tsl_server_config`"));
        assert!(
            err("http_server_config: {headers: {X-Frame-Options: allow-from}}\n")
                .contains("must be one of deny, sameorigin")
        );
        assert!(
            err("http_server_config: {headers: {x-frame-options: deny}}\n")
                .contains("cannot be set")
        );
        assert!(
            err("http_server_config: {headers: {Strict-Transport-Security: \"\"}}\n")
                .contains("http_server_config.headers.Strict-Transport-Security: is empty")
        );
        assert!(
            err("tls_server_config: {cert_file: c, key_file: k, rate_limit: {interval: 1s}}\n")
                .contains("tls_server_config.rate_limit: is not supported")
        );
        assert!(
            err("rate_limit: {interval: 1s, burst: 5}\n").contains("rate_limit: is not supported")
        );
        assert!(err("tls_server_config: {cert_file: c, key_file: k, client_auth_type: RequireClientCert}\n").contains("not supported"));
    }
}
