//! Config fixtures: every `testdata/config/*.ok.yml` loads, every `*.bad.yml` is refused with
//! the message its first line (`# expect: …`) names, both in-process and through the real
//! binary's `check-config`, which exits 2.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use apigateway_exporter::config::{Config, OtlpProtocol, StageSelection};

fn fixtures(suffix: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/config")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no {suffix} fixtures in {}",
        dir.display()
    );
    files
}

fn expectation(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("fixture");
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} must start with `# expect: <text>`", path.display()))
        .to_string()
}

fn env(name: &str) -> Option<String> {
    match name {
        "EXTERNAL_ID" => Some("ext-123".into()),
        "OTLP_TOKEN" => Some("s3cr3t".into()),
        "FIREHOSE_ACCESS_KEY" => Some("firehose-key-0123456789".into()),
        _ => None,
    }
}

#[test]
fn ok_fixtures_load() {
    for path in fixtures(".ok.yml") {
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = Config::parse(&text, env) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn full_fixture_sets_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/full.ok.yml");
    let c = Config::parse(&std::fs::read_to_string(path).unwrap(), env).unwrap();
    assert_eq!(c.poll.interval(), Duration::from_secs(30));
    assert_eq!(c.poll.period(), 120);
    assert_eq!(c.poll.lookback(), 900);
    assert_eq!(c.poll.settle(), 300);
    assert_eq!(c.poll.max_backfill(), 6 * 3600);
    let idle = c.poll.idle().expect("poll.idle");
    assert_eq!(
        (idle.after.get(), idle.interval.get()),
        (Duration::from_secs(3600), Duration::from_secs(600))
    );
    assert_eq!(c.discovery.refresh_interval(), Duration::from_secs(1800));
    assert_eq!(
        c.discovery.full_refresh_interval(),
        Duration::from_secs(2 * 86_400)
    );
    assert_eq!(c.discovery.max_requests_per_second().get(), 1.5);
    assert_eq!(c.targets.len(), 2);
    assert_eq!(c.targets[0].external_id.as_deref(), Some("ext-123"));
    assert_eq!(
        c.targets[0].apis.stages,
        StageSelection::Only(vec!["prod".into(), "$default".into()])
    );
    assert_eq!(c.targets[1].apis.stages, StageSelection::Only(vec![]));
    assert_eq!(c.latency.stats().len(), 3);
    assert_eq!(c.otlp.protocol, OtlpProtocol::Http);
    assert_eq!(c.otlp.headers["authorization"], "Bearer s3cr3t");
    assert_eq!(c.tags_as_labels, ["team", "cost-center"]);
    assert_eq!(c.access_logs.statuses.to_string(), "429,>=500");
    assert!(c.stream.enabled);
    assert_eq!(c.stream.listen_address.to_string(), "0.0.0.0:9800");
    assert!(!c.stream.percentiles);
    // The key is kept, and never printed.
    let key = c.stream.access_key.as_ref().expect("stream.access_key");
    assert_eq!(key.as_bytes(), b"firehose-key-0123456789");
    assert!(!format!("{c:?}").contains("firehose-key"));
    assert_eq!(
        c.aws.endpoints.sts.as_deref(),
        Some("http://127.0.0.1:4566")
    );
}

#[test]
fn bad_fixtures_name_the_problem() {
    for path in fixtures(".bad.yml") {
        let want = expectation(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        match Config::parse(&text, env) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => assert!(
                e.to_string().contains(&want),
                "{}: error {:?} does not contain {want:?}",
                path.display(),
                e.to_string()
            ),
        }
    }
}

fn check_config(path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_apigateway-exporter"))
        .args(["check-config", "--log.level=error"])
        .arg(format!("--config.file={}", path.display()))
        .env_remove("APIGW_SURELY_UNSET_VARIABLE")
        .output()
        .expect("run check-config")
}

#[test]
fn check_config_exits_2_with_the_key_for_every_bad_fixture() {
    for path in fixtures(".bad.yml") {
        let want = expectation(&path);
        let out = check_config(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
        assert!(
            stderr.contains(&want),
            "{}: {stderr:?} lacks {want:?}",
            path.display()
        );
    }
}

#[test]
fn check_config_accepts_a_valid_file_and_prints_the_plan() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/minimal.ok.yml");
    let out = check_config(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(stdout.contains("GetMetricData calls per cycle"), "{stdout}");
}

#[test]
fn unreadable_file_and_missing_flag_are_errors() {
    let out = check_config(Path::new("/nonexistent/config.yaml"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
    let out = Command::new(env!("CARGO_BIN_EXE_apigateway-exporter"))
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config.file"));
    let out = Command::new(env!("CARGO_BIN_EXE_apigateway-exporter"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `${VAR}` is expanded inside the parsed value: a quote, `#` or newline in the variable is
/// part of the value, never YAML (it once broke the file or rewrote the keys around it).
#[test]
fn an_environment_variable_is_taken_verbatim() {
    let nasty = "a\"b' # not a comment\nshard: {index: 1, total: 2}\n- x";
    let text = "targets:\n  - regions: [us-east-1]\n    role_arn: arn:aws:iam::123456789012:role/r\n    external_id: ${EXT}\n\
                otlp:\n  resource_attributes:\n    quoted: \"${EXT}\"\n";
    let c = Config::parse(text, |name| (name == "EXT").then(|| nasty.to_string())).unwrap();
    assert_eq!(c.targets[0].external_id.as_deref(), Some(nasty));
    assert_eq!(c.otlp.resource_attributes["quoted"], nasty);
    assert!(c.shard.is_none(), "the newline added no key");
    // Numbers and switches accept an expanded variable's text.
    let c = Config::parse(
        "shard:\n  index: '${I}'\n  total: ${T}\notlp:\n  enabled: ${ON}\n",
        |n| {
            Some(match n {
                "I" => "1".into(),
                "T" => "3".into(),
                _ => "false".into(),
            })
        },
    )
    .unwrap();
    let shard = c.shard.unwrap();
    assert_eq!((shard.index(), shard.total()), (1, 3));
}

mod random_values {
    use std::sync::Arc;

    use apigateway_exporter::app;
    use apigateway_exporter::clock::ManualClock;
    use apigateway_exporter::config::Config;
    use apigateway_exporter::poll::Poller;
    use apigateway_exporter::ratelimit::RateLimiter;
    use apigateway_exporter::selfmetrics::SelfMetrics;
    use apigateway_exporter::snapshot::SharedSnapshot;
    use proptest::prelude::*;

    /// Every scalar key of the file, as a YAML path.
    const KEYS: &[&str] = &[
        "poll.interval",
        "poll.period",
        "poll.lookback",
        "poll.settle",
        "poll.max_backfill",
        "poll.idle.after",
        "poll.idle.interval",
        "discovery.refresh_interval",
        "discovery.full_refresh_interval",
        "discovery.max_requests_per_second",
        "latency.statistics[0]",
        "otlp.enabled",
        "otlp.endpoint",
        "otlp.protocol",
        "otlp.interval",
        "aws.max_requests_per_second",
        "aws.endpoints.cloudwatch",
        "access_logs.mode",
        "access_logs.namespace",
        "access_logs.metric_name",
        "access_logs.log_group",
        "access_logs.filter_pattern",
        "access_logs.statuses",
        "shard.index",
        "shard.total",
        "cost.price_per_1000_metrics",
        "stream.enabled",
        "stream.listen_address",
        "stream.access_key",
        "stream.percentiles",
        "tags_as_labels[0]",
        "targets[0].regions[0]",
        "targets[0].role_arn",
        "targets[0].apis.include[0]",
        "targets[0].apis.stages",
        "targets[0].apis.detailed_metrics",
    ];

    /// Values chosen to break things: extremes of every numeric type, durations far past any
    /// timer, tiny and negative rates, non-numbers, and plain garbage.
    fn nasty() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("18446744073709551615s".to_string()),
            Just("584942417355years".to_string()),
            Just("0s".to_string()),
            Just("1ns".to_string()),
            Just("1.0e-30".to_string()),
            Just("-1".to_string()),
            Just("1e308".to_string()),
            Just(".nan".to_string()),
            Just("-.inf".to_string()),
            Just("4294967296".to_string()),
            Just("''".to_string()),
            Just("~".to_string()),
            Just("[]".to_string()),
            Just("{}".to_string()),
            (1u64..u64::MAX).prop_map(|n| format!("{n}s")),
            (1u64..100_000).prop_map(|n| format!("{n}m")),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            any::<i64>().prop_map(|n| n.to_string()),
            "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        ]
    }

    /// `a.b[0].c: v` as a YAML document (the value parsed as YAML, as a user would write it).
    fn yaml(key: &str, value: &str) -> String {
        use yaml_serde::{Mapping, Value};
        let mut leaf: Value =
            yaml_serde::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        for part in key.split('.').rev() {
            let (name, list) = match part.split_once('[') {
                Some((n, _)) => (n, true),
                None => (part, false),
            };
            if list {
                leaf = Value::Sequence(vec![leaf]);
            }
            let mut map = Mapping::new();
            map.insert(Value::String(name.to_string()), leaf);
            leaf = Value::Mapping(map);
        }
        yaml_serde::to_string(&leaf).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

        /// No value of any key panics: it is refused with an error that names a key, or it
        /// is accepted and everything built from it (rate limiter, poll settings, a demo
        /// cycle over the whole pipeline) runs.
        #[test]
        fn no_value_of_any_key_panics(key in proptest::sample::select(KEYS), value in nasty()) {
            let base = "targets:\n- regions: [us-east-1]\n";
            let doc = yaml(key, &value);
            let text = if key.starts_with("targets") {
                // The target needs its region to be a target at all.
                doc.replacen("targets:\n- ", "targets:\n- regions: [us-east-1]\n  ", usize::from(!key.contains("regions")))
            } else {
                format!("{base}{doc}")
            };
            match Config::parse(&text, |_| None) {
                Err(e) => {
                    let msg = e.to_string();
                    // Refused for the key it is about, not because the test wrote bad YAML.
                    let root = key.split(['.', '[']).next().unwrap_or_default();
                    prop_assert!(msg.starts_with("invalid config: "), "{msg}");
                    prop_assert!(msg.contains(root), "{text}\n=> {msg}");
                }
                Ok(config) => {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    runtime.block_on(async {
                        let _ = RateLimiter::new(config.aws.max_requests_per_second);
                        let settings = app::settings(&config);
                        let clock = Arc::new(ManualClock::new(1_795_428_030));
                        let registry = prometheus::Registry::new();
                        let metrics = SelfMetrics::new(&registry, true).unwrap();
                        let mut poller = Poller::new(app::demo_targets(&config, 1, clock.clone(), &metrics), settings.clone(), clock.clone(), SharedSnapshot::new(), metrics);
                        poller.cycle().await;
                        clock.advance(i64::try_from(settings.poll.interval().as_secs()).unwrap());
                        poller.cycle().await;
                        // The next tick of the loop, as `Poller::run` computes it.
                        let _ = tokio::time::Instant::now() + settings.poll.interval() * 2;
                    });
                }
            }
        }
    }

    /// Every key of the web config file (`--web.config.file`).
    const WEB_KEYS: &[&str] = &[
        "tls_server_config.cert_file",
        "tls_server_config.key_file",
        "tls_server_config.cert",
        "tls_server_config.key",
        "tls_server_config.client_auth_type",
        "tls_server_config.client_ca_file",
        "tls_server_config.client_allowed_sans[0]",
        "tls_server_config.min_version",
        "tls_server_config.max_version",
        "tls_server_config.cipher_suites[0]",
        "tls_server_config.prefer_server_cipher_suites",
        "tls_server_config.curve_preferences[0]",
        "http_server_config.http2",
        "http_server_config.headers.X-Frame-Options",
        "basic_auth_users.alice",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

        /// No value of any web config key panics, loading or setting up TLS: it is refused
        /// with an error that names its section, or it is accepted.
        #[test]
        fn no_value_of_any_web_config_key_panics(key in proptest::sample::select(WEB_KEYS), value in nasty()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("web.yml");
            std::fs::write(&path, yaml(key, &value)).unwrap();
            if let Err(e) = apigateway_exporter::http::web::WebFront::load(&path) {
                let root = key.split(['.', '[']).next().unwrap_or_default();
                prop_assert!(e.contains(root) || e.contains("invalid config"), "{key}: {value}\n=> {e}");
            }
        }
    }
}
