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
    assert_eq!(
        c.discovery.refresh_interval.get(),
        Duration::from_secs(1800)
    );
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
