//! Deployment artefacts as the tests read them: the repository's files, the external tools the
//! suite installs (a missing one fails the test, never skips it), YAML documents and the
//! accessors that name what they expected, kubernetes-validate, and the exporter container of
//! a pod. Shared by tests/deploy.rs (deploy/kubernetes), tests/helm.rs (the chart's renders)
//! and tests/cloudformation.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;
use yaml_serde::Value;

/// Kubernetes versions the manifests must validate against: an old one still in EKS
/// extended support and the newest kubernetes-validate ships schemas for.
pub const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
/// The exporter's liveness probe path.
pub const HEALTHY: &str = "/-/healthy";
/// The exporter's readiness probe path.
pub const READY: &str = "/-/ready";
/// The config file argument of every exporter container.
pub const CONFIG_FILE_ARG: &str = "--config.file=/etc/apigateway-exporter/config.yaml";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A tool the suite installs; missing means the test fails, never skips.
pub fn tool(var: &str) -> PathBuf {
    let hint = "run scripts/setup-tools.sh, then eval \"$(scripts/emulators.sh env)\"";
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: {hint}"));
    assert!(
        path.is_file(),
        "{var}={} does not exist: {hint}",
        path.display()
    );
    path
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The environment of an exporter that must find AWS out of reach: test credentials, no
/// instance metadata, every endpoint a closed port, no profile or shared config of the user's.
pub fn aws_unreachable(cmd: &mut Command) -> &mut Command {
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CONFIG_FILE")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
}

/// A value of Cargo.toml's `[package]` table.
pub fn cargo_package_field(key: &str) -> String {
    let manifest = read(&repo().join("Cargo.toml"));
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if k.trim() == key => return v.trim().trim_matches('"').to_string(),
            _ => {}
        }
    }
    panic!("Cargo.toml [package] has no {key}");
}

// ---------------------------------------------------------------------------------------
// YAML
// ---------------------------------------------------------------------------------------

/// Every non-empty YAML document of a text, or the first error.
pub fn try_yaml_docs(text: &str) -> Result<Vec<Value>, yaml_serde::Error> {
    yaml_serde::Deserializer::from_str(text)
        .map(Value::deserialize)
        .filter(|doc| !matches!(doc, Ok(v) if v.is_null()))
        .collect()
}

/// Every non-empty YAML document of a file.
pub fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    try_yaml_docs(text).unwrap_or_else(|e| panic!("{what}: invalid YAML: {e}"))
}

pub fn yaml(v: &Value) -> String {
    yaml_serde::to_string(v).unwrap()
}

pub fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

pub fn seq_of<'a>(v: &'a Value, what: &str) -> &'a [Value] {
    v.as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{what}: expected a list, got {v:?}"))
}

pub fn keys(v: &Value) -> BTreeSet<String> {
    v.as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A mapping of strings (ConfigMap data, labels); a value that is not a string fails, naming
/// its key.
pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    strings_by_key(v, "")
}

/// [`string_map`] of labels: a failure names the label.
pub fn label_map(v: &Value) -> BTreeMap<String, String> {
    strings_by_key(v, "label ")
}

fn strings_by_key(v: &Value, noun: &str) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let k = k.as_str().expect("string key").to_string();
                    let v = v
                        .as_str()
                        .unwrap_or_else(|| panic!("{noun}{k}: expected a string, got {v:?}"));
                    (k, v.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn check_allowed_keys(v: &Value, allowed: &[&str], what: &str) {
    allowed_keys(v, allowed, what, false);
}

/// [`check_allowed_keys`], the failure showing the value as YAML.
pub fn check_allowed_keys_showing(v: &Value, allowed: &[&str], what: &str) {
    allowed_keys(v, allowed, what, true);
}

fn allowed_keys(v: &Value, allowed: &[&str], what: &str, show: bool) {
    for k in keys(v) {
        assert!(
            allowed.contains(&k.as_str()),
            "{what}: unexpected key {k:?} (allowed: {allowed:?}){}",
            if show {
                format!("\n{}", yaml(v))
            } else {
                String::new()
            }
        );
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

/// Runs kubernetes-validate --strict on `files` (relative to `dir`) for every version in
/// KUBERNETES_VERSIONS. It exits 0 on a kind it has no schema for (printing WARN), so every
/// resource must also be reported as passed, and nothing may be reported otherwise.
pub fn kubernetes_validate(dir: &Path, files: &[(String, Vec<Value>)]) -> Result<String, String> {
    let mut cmd = Command::new(tool("APIGW_TEST_KUBERNETES_VALIDATE"));
    cmd.current_dir(dir).arg("--strict");
    for v in KUBERNETES_VERSIONS {
        cmd.args(["--kubernetes-version", v]);
    }
    cmd.args(files.iter().map(|(f, _)| f));
    let out = run(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = describe(&out);
    if !out.status.success() {
        return Err(format!("kubernetes-validate failed:\n{report}"));
    }
    if let Some(line) = stdout.lines().find(|l| !l.starts_with("INFO ")) {
        return Err(format!("kubernetes-validate reported: {line}\n{report}"));
    }
    for (file, docs) in files {
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap_or_default().to_lowercase();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            for v in KUBERNETES_VERSIONS {
                let minor = v.rsplit_once('.').map_or(v, |(mm, _)| mm);
                let want = format!(
                    "INFO {file} passed for resource {kind}/{name} against version {minor}"
                );
                if !stdout.lines().any(|l| l == want) {
                    return Err(format!("missing `{want}`\n{report}"));
                }
            }
        }
    }
    Ok(stdout)
}

/// A Kubernetes object and the file it came from: a manifest of deploy/kubernetes, a template
/// of the chart.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub file: String,
    pub doc: Value,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        str_of(
            &self.doc["apiVersion"],
            &format!("{}: apiVersion", self.file),
        )
    }
    pub fn kind(&self) -> &str {
        str_of(&self.doc["kind"], &format!("{}: kind", self.file))
    }
    pub fn name(&self) -> &str {
        str_of(
            &self.doc["metadata"]["name"],
            &format!("{}: metadata.name", self.file),
        )
    }
    /// A Prometheus Operator resource, which kubernetes-validate has no schema for.
    pub fn is_crd(&self) -> bool {
        self.api_version().starts_with("monitoring.coreos.com/")
    }
    /// The pod template's spec, for a workload.
    pub fn pod_spec(&self) -> Option<&Value> {
        let spec = &self.doc["spec"]["template"]["spec"];
        (!spec.is_null()).then_some(spec)
    }
}

/// A ServiceMonitor / PodMonitor endpoint scrapes /metrics on one of the target's named ports.
pub fn check_scrape_target(ep: &Value, ports: &BTreeSet<String>, what: &str) {
    let port = str_of(&ep["port"], &format!("{what}: port"));
    assert!(
        ports.contains(port),
        "{what}: port {port:?} is not among the target's named ports {ports:?}"
    );
    assert_eq!(ep["path"].as_str(), Some("/metrics"), "{what}: path");
}

/// A Prometheus Operator duration of whole seconds (`30s`), the endpoint's `key`.
pub fn duration_secs(d: &str, key: &str, what: &str) -> u64 {
    d.strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{what}: {key} {d:?} is not like 30s"))
}

/// The exporter's containers of a pod: those running an apigateway-exporter image.
pub fn exporter_containers(pod: &Value) -> Vec<&Value> {
    seq_of(&pod["containers"], "containers")
        .iter()
        .filter(|c| {
            let image = c["image"].as_str().unwrap_or_default();
            let repo = image.rsplit('/').next().unwrap_or_default();
            repo.split([':', '@']).next() == Some("apigateway-exporter")
        })
        .collect()
}

/// containerPort of the named port of a container.
pub fn named_port(c: &Value, name: &str) -> Option<i64> {
    c["ports"]
        .as_sequence()?
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
}
