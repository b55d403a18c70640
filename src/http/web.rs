//! `--web.config.file` at work: TLS (rustls) and basic auth on every path of the main
//! listener. As exporter-toolkit does, the file is read again while the exporter runs: each
//! new connection looks at the modification times of the file and of the certificate, key
//! and CA files it names, and rebuilds the TLS setup when one changed, so a rotated
//! certificate is served without a restart. A change that does not load (a half-written
//! file) is logged once and the last good setup stays; so does a change that would turn TLS
//! or basic auth off, which takes a restart (a truncated file must not open the port).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::config::web::{ClientAuth, TlsServerConfig, TlsVersion, WebConfig};

/// Successful credential checks remembered, so that a scrape does not pay bcrypt's cost
/// (tens of milliseconds) every time.
const AUTH_CACHE: usize = 1024;

/// bcrypt checks run at once, at most: each takes tens of milliseconds of CPU.
const BCRYPT_AT_ONCE: usize = 2;

/// A file's identity for change detection: modification time, length and (on Unix) inode
/// and change time, so that a Kubernetes Secret's symlink swap is seen.
type Identity = (Option<SystemTime>, Option<u64>, u64, i64);

/// A file and its identity when it was read.
type Stamp = (PathBuf, Identity);

fn stamp(path: &Path) -> Stamp {
    (path.to_path_buf(), identity(path))
}

fn identity(path: &Path) -> Identity {
    let meta = std::fs::metadata(path).ok();
    #[cfg(unix)]
    let (inode, ctime) = {
        use std::os::unix::fs::MetadataExt;
        meta.as_ref().map_or((0, 0), |m| {
            (m.ino(), m.ctime_nsec() + m.ctime() * 1_000_000_000)
        })
    };
    #[cfg(not(unix))]
    let (inode, ctime) = (0, 0);
    (
        meta.as_ref().and_then(|m| m.modified().ok()),
        meta.map(|m| m.len()),
        inode,
        ctime,
    )
}

/// What one version of the web config file sets up.
pub struct Loaded {
    pub config: WebConfig,
    pub tls: Option<Arc<ServerConfig>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    stamps: Vec<Stamp>,
    /// The users' costliest hash, checked for unknown users so that they take as long as
    /// known ones (the result is ignored).
    dummy: Option<String>,
}

/// The web config of the main listener.
pub struct WebFront {
    path: PathBuf,
    current: RwLock<Arc<Loaded>>,
    /// The stamps of the last version that did not load, so it is tried (and logged) once.
    failed: Mutex<Option<Vec<Stamp>>>,
    passed: Mutex<HashSet<[u8; 32]>>,
    bcrypt: tokio::sync::Semaphore,
}

impl WebFront {
    /// Reads and sets up the file; the error names the key or file at fault.
    pub fn load(path: &Path) -> Result<WebFront, String> {
        let loaded = build(path)?;
        Ok(WebFront {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(loaded)),
            failed: Mutex::new(None),
            passed: Mutex::new(HashSet::new()),
            bcrypt: tokio::sync::Semaphore::new(BCRYPT_AT_ONCE),
        })
    }

    /// The setup to use now: rebuilt if a file changed since.
    pub fn current(&self) -> Arc<Loaded> {
        let held = Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()));
        // Every request asks: the unchanged case allocates nothing.
        if held.stamps.iter().all(|(p, id)| identity(p) == *id) {
            return held;
        }
        let now: Vec<Stamp> = held.stamps.iter().map(|s| stamp(&s.0)).collect();
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.as_ref() == Some(&now) {
            return held;
        }
        let built = build(&self.path).and_then(|loaded| {
            if held.tls.is_some() && loaded.tls.is_none() {
                Err("it turns TLS off: that takes a restart".to_string())
            } else if !held.config.basic_auth_users.is_empty()
                && loaded.config.basic_auth_users.is_empty()
            {
                Err("it turns basic auth off: that takes a restart".to_string())
            } else {
                Ok(loaded)
            }
        });
        match built {
            Ok(loaded) => {
                *failed = None;
                let loaded = Arc::new(loaded);
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&loaded);
                self.passed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                loaded
            }
            Err(e) => {
                warn!(error = %e, "web config changed but is not taken; keeping the last good one");
                *failed = Some(now);
                held
            }
        }
    }

    /// Whether the request's `Authorization` passes `basic_auth_users` (always, without
    /// users). bcrypt runs on a blocking thread; successes are remembered.
    pub async fn authorized(&self, loaded: &Loaded, authorization: Option<&HeaderValue>) -> bool {
        let users = &loaded.config.basic_auth_users;
        if users.is_empty() {
            return true;
        }
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let hash = users.get(&user).cloned();
        // Each field length-prefixed, so no two (user, password, hash) share a key.
        let mut digest = Sha256::new();
        for field in [
            user.as_str(),
            password.as_str(),
            hash.as_deref().unwrap_or(""),
        ] {
            digest.update((field.len() as u64).to_be_bytes());
            digest.update(field.as_bytes());
        }
        let key: [u8; 32] = digest.finalize().into();
        if hash.is_some()
            && self
                .passed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&key)
        {
            return true;
        }
        // An unknown user costs a bcrypt check too, so timing does not tell users apart.
        let Ok(_turn) = self.bcrypt.acquire().await else {
            return false;
        };
        let dummy = loaded.dummy.clone();
        let checked = tokio::task::spawn_blocking(move || match &hash {
            Some(h) => bcrypt::verify(&password, h).unwrap_or(false),
            None => {
                if let Some(dummy) = &dummy {
                    let _ = bcrypt::verify(&password, dummy);
                }
                false
            }
        })
        .await
        .unwrap_or(false);
        if checked {
            let mut passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
            if passed.len() >= AUTH_CACHE {
                passed.clear();
            }
            passed.insert(key);
        }
        checked
    }

    /// Whether a client certificate carries one of `client_allowed_sans` (always, without
    /// them): a DNS name, URI or IP address equal to one of them, as exporter-toolkit
    /// compares (no wildcard matching).
    pub fn client_allowed(loaded: &Loaded, peer: Option<&[CertificateDer<'static>]>) -> bool {
        let Some(t) = &loaded.config.tls_server_config else {
            return true;
        };
        if t.client_allowed_sans.is_empty() {
            return true;
        }
        let Some(cert) = peer.and_then(|c| c.first()) else {
            return false;
        };
        let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
            return false;
        };
        t.client_allowed_sans.iter().any(|san| {
            cert.valid_dns_names().any(|n| n == san)
                || cert.valid_uri_names().any(|n| n == san)
                || (san.parse::<std::net::IpAddr>().is_ok()
                    && ServerName::try_from(san.as_str())
                        .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok()))
        })
    }
}

/// The user and password of a `Basic` authorization header.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn build(path: &Path) -> Result<Loaded, String> {
    let file = stamp(path);
    let mut config = WebConfig::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // As exporter-toolkit: relative file names are relative to the web config file.
    if let (Some(dir), Some(t)) = (path.parent(), config.tls_server_config.as_mut()) {
        for p in [&mut t.cert_file, &mut t.key_file, &mut t.client_ca_file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }
    let mut stamps = vec![file];
    let tls = match &config.tls_server_config {
        None => None,
        Some(t) => {
            for p in [&t.cert_file, &t.key_file, &t.client_ca_file]
                .into_iter()
                .flatten()
            {
                stamps.push(stamp(p));
            }
            Some(Arc::new(
                server_config(t).map_err(|e| format!("{}: {e}", path.display()))?,
            ))
        }
    };
    let headers = config
        .http_server_config
        .headers
        .iter()
        .map(|(name, value)| {
            let key = format!("http_server_config.headers.{name}");
            Ok((
                HeaderName::try_from(name.as_str()).map_err(|e| format!("{key}: {e}"))?,
                HeaderValue::try_from(value.as_str()).map_err(|e| format!("{key}: {e}"))?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let dummy = config
        .basic_auth_users
        .values()
        .max_by_key(|h| bcrypt::HashParts::from_str(h).map_or(0, |p| p.get_cost()))
        .cloned();
    Ok(Loaded {
        config,
        tls,
        headers,
        stamps,
        dummy,
    })
}

/// Go's names of the TLS 1.2 suites and curves, as exporter-toolkit takes them.
fn suite_matches(wanted: &str, rustls_name: &str) -> bool {
    wanted == rustls_name || format!("{wanted}_SHA256") == rustls_name
}

fn curve_name(go: &str) -> Option<rustls::NamedGroup> {
    Some(match go {
        "X25519" => rustls::NamedGroup::X25519,
        "CurveP256" => rustls::NamedGroup::secp256r1,
        "CurveP384" => rustls::NamedGroup::secp384r1,
        "X25519MLKEM768" => rustls::NamedGroup::X25519MLKEM768,
        _ => return None,
    })
}

fn server_config(t: &TlsServerConfig) -> Result<ServerConfig, String> {
    let k = |name: &str| format!("tls_server_config.{name}");
    let mut provider: CryptoProvider = rustls::crypto::aws_lc_rs::default_provider();
    if !t.cipher_suites.is_empty() {
        for wanted in &t.cipher_suites {
            let known = provider.cipher_suites.iter().any(|s| {
                s.version() == &rustls::version::TLS12
                    && s.suite().as_str().is_some_and(|n| suite_matches(wanted, n))
            });
            if !known {
                return Err(format!(
                    "{}: {wanted:?} is not a TLS 1.2 cipher suite this exporter offers (ECDHE with AES-GCM or ChaCha20-Poly1305)",
                    k("cipher_suites")
                ));
            }
        }
        // As in Go, the list applies to TLS 1.2; TLS 1.3 suites are always on.
        provider.cipher_suites.retain(|s| {
            s.version() == &rustls::version::TLS13
                || t.cipher_suites
                    .iter()
                    .any(|w| s.suite().as_str().is_some_and(|n| suite_matches(w, n)))
        });
    }
    if !t.curve_preferences.is_empty() {
        let mut groups = Vec::new();
        for go in &t.curve_preferences {
            let name = curve_name(go).ok_or_else(|| {
                format!(
                    "{}: {go:?} is not supported: X25519, CurveP256, CurveP384 or X25519MLKEM768",
                    k("curve_preferences")
                )
            })?;
            if let Some(g) = provider.kx_groups.iter().find(|g| g.name() == name) {
                groups.push(*g);
            }
        }
        provider.kx_groups = groups;
    }
    let min = t.min_version.unwrap_or(TlsVersion::Tls12);
    let max = t.max_version.unwrap_or(TlsVersion::Tls13);
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| *v >= min && *v <= max)
    .map(|(_, p)| p)
    .collect();
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| {
            format!(
                "tls_server_config: versions, cipher suites and curves do not fit together: {e}"
            )
        })?;
    let builder = match t.client_auth_type {
        ClientAuth::NoClientCert => builder.with_no_client_auth(),
        auth => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in pem_certs(&t.client_ca_file, &t.client_ca, "client_ca")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", k("client_ca_file")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("{}: {e}", k("client_ca_file")))?,
            )
        }
    };
    let certs = pem_certs(&t.cert_file, &t.cert, "cert")?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", k("cert_file")));
    }
    let key = match (&t.key_file, &t.key) {
        (Some(path), _) => PrivateKeyDer::from_pem_file(path)
            .map_err(|e| format!("{} {}: {e}", k("key_file"), path.display()))?,
        (None, Some(pem)) => PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("{}: {e}", k("key")))?,
        (None, None) => return Err(format!("{}: missing", k("key_file"))),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", k("key_file")))?;
    // The exporter serves HTTP/1.1 (`http_server_config.http2` is accepted, not used).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(false);
    Ok(config)
}

/// The PEM certificates of `tls_server_config.<key>_file`, or of `<key>` inline; none
/// without either. Errors name the key.
fn pem_certs(
    file: &Option<PathBuf>,
    inline: &Option<String>,
    key: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    match (file, inline) {
        (Some(path), _) => CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect::<Result<_, _>>())
            .map_err(|e| format!("tls_server_config.{key}_file {}: {e}", path.display())),
        (None, Some(pem)) => CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls_server_config.{key}: {e}")),
        (None, None) => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_as_sent() {
        let v = HeaderValue::from_static("Basic YWxpY2U6czNjcjN0Onh5");
        assert_eq!(
            basic_credentials(&v),
            Some(("alice".into(), "s3cr3t:xy".into()))
        );
        for bad in ["Bearer abc", "Basic !!!", "Basic", "Basic YWxpY2U="] {
            assert_eq!(
                basic_credentials(&HeaderValue::from_static(bad)),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn go_cipher_suite_and_curve_names() {
        assert!(suite_matches(
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        ));
        assert!(suite_matches(
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        ));
        assert_eq!(curve_name("CurveP521"), None);
        let t = TlsServerConfig {
            cert: Some("x".into()),
            key: Some("y".into()),
            cipher_suites: vec!["TLS_RSA_WITH_AES_128_CBC_SHA".into()],
            ..TlsServerConfig::default()
        };
        let e = server_config(&t).unwrap_err();
        assert!(e.contains("tls_server_config.cipher_suites"), "{e}");
    }
}
