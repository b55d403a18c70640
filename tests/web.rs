//! `--web.config.file` and `--web.enable-lifecycle` against the real binary (`--demo`), a
//! real Prometheus (2.42 from Debian) and curl: TLS with basic auth succeeds and fails as it
//! should, every path with and without credentials, a rotated certificate served without a
//! restart, client certificates, and bad web config files refused with the key.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Exporter, Prometheus, free_port};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

const WAIT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "s3cret-scrape-password";

/// A CA, and a server certificate for 127.0.0.1 and localhost that it signed, written as
/// `<name>-ca.pem`, `<name>-cert.pem`, `<name>-key.pem`.
fn server_certs(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{name} server"));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// `curl` over HTTPS: the status code, or 0 when the connection or TLS failed.
fn curl(port: u16, path: &str, ca: &Path, user: Option<&str>, method: &str) -> u16 {
    let mut cmd = common::curl_http_code();
    cmd.args(["--max-time", "10"])
        .args(["-X", method, "--cacert"])
        .arg(ca)
        .arg(format!("https://127.0.0.1:{port}{path}"));
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    let out = cmd.output().expect("curl is installed");
    common::http_code(&out)
}

/// Prometheus scraping the exporter every second with three jobs: right credentials and
/// CA, a wrong password, and a wrong CA.
fn start_prometheus(target: u16, ca: &Path, other_ca: &Path) -> Prometheus {
    let job = |name: &str, password: &str, ca: &Path| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: prometheus\n      password: {password}\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n",
            ca.display()
        )
    };
    Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}{}",
        job("right", PASSWORD, ca),
        job("wrong_password", "guess", ca),
        job("wrong_ca", PASSWORD, other_ca),
    ))
}

/// Each job's target health and last error, once every job has been scraped.
fn targets(prometheus: &Prometheus) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((200, body)) = common::get(prometheus.port, "/api/v1/targets") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let targets: Vec<(String, String, String)> = v["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    (
                        t["labels"]["job"].as_str().unwrap_or_default().to_string(),
                        t["health"].as_str().unwrap_or_default().to_string(),
                        t["lastError"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            if targets.len() == 3 && targets.iter().all(|t| t.1 != "unknown") {
                return targets;
            }
        }
        assert!(Instant::now() < deadline, "prometheus scraped nothing");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn bcrypt_hash(password: &str) -> String {
    // Cost 4 keeps the test fast; the exporter reads whatever cost the hash says.
    bcrypt::hash(password, 4).unwrap()
}

#[test]
fn tls_and_basic_auth_work_with_prometheus_and_curl_and_certificates_rotate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = server_certs(dir.path(), "one");
    let (other_ca, other_cert, other_key) = server_certs(dir.path(), "two");
    let web = dir.path().join("web.yml");
    // The certificate as a Kubernetes Secret volume holds it: `tls.crt` → `..data/tls.crt`,
    // `..data` → a timestamped directory, swapped atomically on renewal.
    let secret = dir.path().join("secret");
    let version = |name: &str, cert: &Path, key: &Path| {
        let d = secret.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(cert, d.join("tls.crt")).unwrap();
        std::fs::write(d.join("tls.key"), std::fs::read(key).unwrap()).unwrap();
        let link = secret.join("..data_tmp");
        std::os::unix::fs::symlink(name, &link).unwrap();
        std::fs::rename(&link, secret.join("..data")).unwrap();
    };
    version("..2026_11_30_a", &cert, &key);
    let cert_path = secret.join("tls.crt");
    let key_path = secret.join("tls.key");
    std::os::unix::fs::symlink("..data/tls.crt", &cert_path).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", &key_path).unwrap();
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  min_version: TLS12\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  prometheus: {}\n",
            cert_path.display(),
            key_path.display(),
            bcrypt_hash(PASSWORD)
        ),
    )
    .unwrap();
    let web_flag = format!("--web.config.file={}", web.display());
    let exporter = Exporter::start_tls("", &["--demo", &web_flag]);
    let user = format!("prometheus:{PASSWORD}");

    // Every path, with and without credentials.
    for path in ["/", "/metrics", "/-/healthy", "/-/ready", "/nope"] {
        assert_eq!(curl(exporter.port, path, &ca, None, "GET"), 401, "{path}");
        assert_eq!(
            curl(exporter.port, path, &ca, Some("prometheus:wrong"), "GET"),
            401,
            "{path}"
        );
        assert_eq!(
            curl(exporter.port, path, &ca, Some("nobody:x"), "GET"),
            401,
            "{path}"
        );
    }
    let deadline = Instant::now() + WAIT;
    while curl(exporter.port, "/-/ready", &ca, Some(&user), "GET") != 200 {
        assert!(Instant::now() < deadline, "not ready over TLS");
        std::thread::sleep(Duration::from_millis(300));
    }
    for (path, want) in [
        ("/", 200),
        ("/metrics", 200),
        ("/-/healthy", 200),
        ("/nope", 404),
    ] {
        assert_eq!(
            curl(exporter.port, path, &ca, Some(&user), "GET"),
            want,
            "{path}"
        );
    }
    // Reload needs --web.enable-lifecycle; credentials first.
    assert_eq!(curl(exporter.port, "/-/reload", &ca, None, "POST"), 401);
    assert_eq!(
        curl(exporter.port, "/-/reload", &ca, Some(&user), "POST"),
        403
    );
    // The configured header, and the realm.
    let out = Command::new("curl")
        .args(["-s", "-i", "--cacert"])
        .arg(&ca)
        .args(["-u", &user])
        .arg(format!("https://127.0.0.1:{}/-/healthy", exporter.port))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.contains("x-frame-options: deny"), "{head}");
    // Plain HTTP to the TLS port, and the other CA, fail.
    assert!(common::get(exporter.port, "/-/healthy").is_none_or(|r| r.0 != 200));
    assert_eq!(
        curl(exporter.port, "/metrics", &other_ca, Some(&user), "GET"),
        0
    );

    // Prometheus: the right job is up; a wrong password is down with 401; a wrong CA is down.
    let prometheus = start_prometheus(exporter.port, &ca, &other_ca);
    let targets = targets(&prometheus);
    for (job, health, error) in &targets {
        match job.as_str() {
            "right" => assert_eq!((health.as_str(), error.as_str()), ("up", ""), "{job}"),
            "wrong_password" => {
                assert_eq!(health, "down", "{job}");
                assert!(error.contains("401"), "{job}: {error}");
            }
            "wrong_ca" => {
                assert_eq!(health, "down", "{job}");
                assert!(
                    error.contains("certificate") || error.contains("x509"),
                    "{job}: {error}"
                );
            }
            other => panic!("unexpected job {other}"),
        }
    }

    // Rotation: the Secret's `..data` moves to a certificate from the other CA; the next
    // connection is served with it, without a restart.
    version("..2026_11_30_b", &other_cert, &other_key);
    let deadline = Instant::now() + WAIT;
    while curl(exporter.port, "/metrics", &other_ca, Some(&user), "GET") != 200 {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate is not served"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(curl(exporter.port, "/metrics", &ca, Some(&user), "GET"), 0);
    // A half-written key keeps the last good setup.
    let broken = secret.join("..2026_11_30_c");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(&other_cert, broken.join("tls.crt")).unwrap();
    std::fs::write(
        broken.join("tls.key"),
        "-----BEGIN PRIVATE KEY-----\ntruncated",
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_30_c", secret.join("..data_tmp")).unwrap();
    std::fs::rename(secret.join("..data_tmp"), secret.join("..data")).unwrap();
    assert_eq!(
        curl(exporter.port, "/metrics", &other_ca, Some(&user), "GET"),
        200
    );
    // A truncated web config would turn TLS and basic auth off: not taken while running.
    std::fs::write(&web, "").unwrap();
    assert_eq!(curl(exporter.port, "/metrics", &other_ca, None, "GET"), 401);
    assert_eq!(
        curl(exporter.port, "/metrics", &other_ca, Some(&user), "GET"),
        200
    );
    assert!(common::get(exporter.port, "/metrics").is_none_or(|r| r.0 != 200));
}

#[test]
fn the_lifecycle_flag_enables_reload_over_tls_and_client_certificates_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = server_certs(dir.path(), "srv");
    // Client certificates from their own CA, one with the allowed SAN and one without.
    let mut client_ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    client_ca
        .distinguished_name
        .push(DnType::CommonName, "client CA");
    let client_ca = CertifiedIssuer::self_signed(client_ca, KeyPair::generate().unwrap()).unwrap();
    let client_ca_path = dir.path().join("client-ca.pem");
    std::fs::write(&client_ca_path, client_ca.pem()).unwrap();
    let client = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let c = p.signed_by(&key, &client_ca).unwrap();
        let (cp, kp) = (
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}-key.pem")),
        );
        std::fs::write(&cp, c.pem()).unwrap();
        std::fs::write(&kp, key.serialize_pem()).unwrap();
        (cp, kp)
    };
    let (scraper, scraper_key) = client("scraper.example");
    let (other, other_key) = client("intruder.example");
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n  client_allowed_sans: [scraper.example]\n",
            cert.display(),
            key.display(),
            client_ca_path.display()
        ),
    )
    .unwrap();
    let web_flag = format!("--web.config.file={}", web.display());
    let exporter = Exporter::start_tls("", &["--demo", &web_flag, "--web.enable-lifecycle"]);
    let with_cert = |cert: &Path, key: &Path, method: &str, path: &str| {
        let out = common::curl_http_code()
            .args(["-X", method, "--cacert"])
            .arg(&ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg(format!("https://127.0.0.1:{}{path}", exporter.port))
            .output()
            .unwrap();
        common::http_code(&out)
    };
    assert_eq!(with_cert(&scraper, &scraper_key, "GET", "/-/healthy"), 200);
    // No client certificate, or one without the allowed SAN: no answer.
    assert_eq!(curl(exporter.port, "/-/healthy", &ca, None, "GET"), 0);
    assert_eq!(with_cert(&other, &other_key, "GET", "/-/healthy"), 0);
    // With the flag, POST /-/reload works.
    assert_eq!(with_cert(&scraper, &scraper_key, "POST", "/-/reload"), 200);
}

#[test]
fn bad_web_config_files_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        (
            "tls_server_config:\n  cert_file: /nonexistent.pem\n  key_file: /nonexistent.pem\n",
            "tls_server_config.cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: a.pem\n",
            "tls_server_config.key_file",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
            "tls_server_config.min_version",
        ),
        (
            "basic_auth_users:\n  alice: plain-text\n",
            "basic_auth_users.alice",
        ),
        (
            "http_server_config:\n  headerz: {}\n",
            "unknown field `headerz`",
        ),
        ("tls_server_confg: {}\n", "unknown field `tls_server_confg`"),
        (": : :\n", "invalid config"),
    ] {
        let path = dir.path().join("web.yml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_apigateway-exporter"))
            .args(["--demo", "--log.level=error"])
            .arg(format!("--web.config.file={}", path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
        assert!(err.contains("--web.config.file"), "{text}: {err}");
    }
}
