//! The Helm chart in deploy/helm/apigateway-exporter, linted and rendered by Helm's own engine.
//!
//! There is no helm binary in CI: helm-python-sdk (Helm v4's Go SDK built as a C library, with
//! Python bindings) lints and renders the chart through `tests/helm_render.py`
//! (`APIGW_TEST_HELM_PYTHON`, the lint venv's Python). What is rendered is then checked with the
//! same real tools as tests/deploy.rs: kubernetes-validate --strict
//! (`APIGW_TEST_KUBERNETES_VALIDATE`), the exporter's own `check-config`, and the exporter
//! answering the rendered probes. `scripts/setup-tools.sh` installs the tools and
//! `eval "$(scripts/emulators.sh env)"` exports the variables; a missing tool fails, never
//! skips. Prometheus Operator resources have no schema in kubernetes-validate: they are checked
//! structurally and against the Service or pod they select, as in tests/deploy.rs.
//!
//! The value sets are the chart's defaults and every `ci/*-values.yaml` (Helm's convention,
//! also read by chart-testing).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::manifests::{
    CONFIG_FILE_ARG, HEALTHY, Manifest, READY, aws_unreachable, cargo_package_field,
    check_allowed_keys_showing, check_scrape_target, describe, duration_secs, exporter_containers,
    kubernetes_validate, named_port, read, repo, run, seq_of, str_of, string_map, tool,
    try_yaml_docs, yaml,
};
use common::{KillOnDrop, free_port};
use serde::Deserialize;
use yaml_serde::Value;

const BIN: &str = env!("CARGO_BIN_EXE_apigateway-exporter");
const RELEASE: &str = "apigateway-exporter";
const NAMESPACE: &str = "monitoring";
/// Where the chart mounts the config, the web config and the certificate.
const MOUNT: &str = "/etc/apigateway-exporter";
/// tests/helm_render.py's exit codes.
const EXIT_VALUES: i32 = 3;
const EXIT_RENDER: i32 = 4;
const SIDECAR_BEGIN: &str = "# --- apigateway-exporter sidecar: begin ---";
const SIDECAR_END: &str = "# --- apigateway-exporter sidecar: end ---";

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn chart_dir() -> PathBuf {
    repo().join("deploy/helm/apigateway-exporter")
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn chart_yaml() -> Value {
    yaml_serde::from_str(&read(&chart_dir().join("Chart.yaml"))).expect("Chart.yaml parses")
}

// ---------------------------------------------------------------------------------------
// Helm, through tests/helm_render.py
// ---------------------------------------------------------------------------------------

fn helm<I: AsRef<OsStr>>(args: impl IntoIterator<Item = I>) -> Output {
    run(Command::new(tool("APIGW_TEST_HELM_PYTHON"))
        .arg(repo().join("tests/helm_render.py"))
        .args(args))
}

/// One rendered value set.
struct Render {
    set: String,
    /// Template path (`apigateway-exporter/templates/x.yaml`) -> rendered text.
    manifests: BTreeMap<String, String>,
    /// The values the render used: the chart's coalesced with the set's.
    values: Value,
}

#[derive(Deserialize)]
struct Rendered {
    manifests: BTreeMap<String, String>,
    values: serde_json::Value,
}

/// Renders the chart with a values file (None: the defaults) as release apigateway-exporter in
/// namespace monitoring. Err((exit code, stderr)) when Helm refuses.
fn try_render(set: &str, values: Option<&Path>) -> Result<Render, (i32, String)> {
    try_render_chart(&chart_dir(), set, values)
}

/// try_render of another chart path (a packaged .tgz).
fn try_render_chart(
    chart: &Path,
    set: &str,
    values: Option<&Path>,
) -> Result<Render, (i32, String)> {
    let mut args: Vec<PathBuf> = vec!["render".into(), chart.into()];
    if let Some(v) = values {
        args.push("--values".into());
        args.push(v.into());
    }
    args.extend(["--name".into(), RELEASE.into()]);
    args.extend(["--namespace".into(), NAMESPACE.into()]);
    let out = helm(&args);
    if !out.status.success() {
        return Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let r: Rendered = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{set}: helm_render.py printed no render ({e}):\n{}",
            describe(&out)
        )
    });
    Ok(Render {
        set: set.to_string(),
        manifests: r.manifests,
        values: yaml_serde::to_value(r.values).expect("values convert"),
    })
}

fn render(set: &str, values: Option<&Path>) -> Render {
    try_render(set, values)
        .unwrap_or_else(|(code, err)| panic!("{set}: render failed (exit {code}):\n{err}"))
}

/// Renders with inline values (YAML text).
fn try_render_values(set: &str, values: &str) -> Result<Render, (i32, String)> {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), values).unwrap();
    try_render(set, Some(file.path()))
}

fn render_values(set: &str, values: &str) -> Render {
    try_render_values(set, values).unwrap_or_else(|(code, err)| {
        panic!("{set}: render failed (exit {code}):\n{values}\n{err}")
    })
}

/// The value sets: the defaults and every ci/*.yaml.
fn value_sets() -> Vec<(String, Option<PathBuf>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("the chart has a ci/ directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "at least three value sets besides the defaults in ci/, found {files:?}"
    );
    let mut sets = vec![("default".to_string(), None)];
    for f in files {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        sets.push((name, Some(f)));
    }
    sets
}

/// Every value set, rendered once for all tests of this binary.
fn renders() -> &'static [Render] {
    static RENDERS: OnceLock<Vec<Render>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        value_sets()
            .iter()
            .map(|(name, file)| render(name, file.as_deref()))
            .collect()
    })
}

fn render_of(set: &str) -> &'static Render {
    renders()
        .iter()
        .find(|r| r.set == set)
        .unwrap_or_else(|| panic!("no value set {set} in ci/"))
}

impl Render {
    /// Every rendered text, for failure messages.
    fn dump(&self) -> String {
        let mut out = format!("=== value set {}\n", self.set);
        for (path, text) in &self.manifests {
            if !text.trim().is_empty() {
                out.push_str(&format!("--- # {path}\n{text}\n"));
            }
        }
        out
    }

    /// A value, by dotted path (keys with dots cannot be reached; none is needed).
    fn value(&self, path: &str) -> &Value {
        path.split('.').fold(&self.values, |v, k| &v[k])
    }

    fn flag(&self, path: &str) -> bool {
        self.value(path)
            .as_bool()
            .unwrap_or_else(|| panic!("{}: values {path} is not a boolean", self.set))
    }

    fn text(&self, path: &str) -> &str {
        self.value(path).as_str().unwrap_or_default()
    }

    fn notes(&self) -> &str {
        self.manifests
            .iter()
            .find(|(p, _)| p.ends_with("/NOTES.txt"))
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("{}: no NOTES.txt rendered", self.set))
    }

    /// Every rendered object, from every template but NOTES.txt.
    fn objects(&self) -> Vec<Manifest> {
        let mut out = Vec::new();
        for (path, text) in &self.manifests {
            if path.ends_with("NOTES.txt") {
                continue;
            }
            let template = path.rsplit('/').next().unwrap().to_string();
            let what = format!("{}: {path}", self.set);
            let docs =
                try_yaml_docs(text).unwrap_or_else(|e| panic!("{what}: invalid YAML: {e}\n{text}"));
            for doc in docs {
                out.push(Manifest {
                    file: template.clone(),
                    doc,
                });
            }
        }
        out
    }

    fn of_kind(&self, kind: &str) -> Vec<Manifest> {
        self.objects()
            .into_iter()
            .filter(|o| o.kind() == kind)
            .collect()
    }

    fn find(&self, kind: &str, name: &str) -> Option<Manifest> {
        self.of_kind(kind).into_iter().find(|o| o.name() == name)
    }

    /// With sidecar.enabled, the workload a user builds from NOTES.txt: an application
    /// Deployment labelled with sidecar.podSelector, its own container, and the printed
    /// serviceAccountName, exporter container and volume.
    fn sidecar_workload(&self) -> Option<Manifest> {
        if !self.flag("sidecar.enabled") {
            return None;
        }
        let notes = self.notes();
        let snippet = notes
            .split_once(SIDECAR_BEGIN)
            .and_then(|(_, rest)| rest.split_once(SIDECAR_END))
            .map(|(s, _)| s)
            .unwrap_or_else(|| panic!("{}: NOTES.txt has no sidecar snippet:\n{notes}", self.set));
        let snippet: Value = yaml_serde::from_str(snippet).unwrap_or_else(|e| {
            panic!(
                "{}: the sidecar snippet is not YAML: {e}\n{snippet}",
                self.set
            )
        });
        check_allowed_keys_showing(
            &snippet,
            &["serviceAccountName", "containers", "volumes"],
            "sidecar snippet",
        );
        let labels = self.value("sidecar.podSelector").clone();
        let mut doc: Value = yaml_serde::from_str(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: example-app\n  namespace: {NAMESPACE}\n\
             spec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n        - name: app\n          \
             image: nginx:1.27\n          ports:\n            - {{name: http, containerPort: 80, protocol: TCP}}\n"
        ))
        .unwrap();
        doc["metadata"]["labels"] = labels.clone();
        doc["spec"]["selector"]["matchLabels"] = labels.clone();
        doc["spec"]["template"]["metadata"]["labels"] = labels;
        let pod = &mut doc["spec"]["template"]["spec"];
        pod["serviceAccountName"] = snippet["serviceAccountName"].clone();
        pod["volumes"] = snippet["volumes"].clone();
        let mut containers = pod["containers"].as_sequence().unwrap().clone();
        containers.extend(
            seq_of(&snippet["containers"], "snippet containers")
                .iter()
                .cloned(),
        );
        pod["containers"] = Value::Sequence(containers);
        Some(Manifest {
            file: "NOTES.txt (sidecar)".into(),
            doc,
        })
    }

    /// The rendered Deployments and StatefulSets, and the sidecar workload.
    fn workloads(&self) -> Vec<Manifest> {
        let mut out: Vec<Manifest> = self
            .objects()
            .into_iter()
            .filter(|o| o.pod_spec().is_some())
            .collect();
        out.extend(self.sidecar_workload());
        out
    }
}

/// The exporter container of a workload: exactly one.
fn exporter_of(w: &Manifest) -> &Value {
    let cs = exporter_containers(w.pod_spec().unwrap());
    assert_eq!(cs.len(), 1, "{}: one exporter container", w.file);
    cs[0]
}

fn args_of(c: &Value) -> Vec<String> {
    seq_of(&c["args"], "args")
        .iter()
        .map(|a| str_of(a, "arg").to_string())
        .collect()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

// ---------------------------------------------------------------------------------------
// kubernetes-validate
// ---------------------------------------------------------------------------------------

/// Writes each file's documents under `dir` and validates them with kubernetes-validate.
fn write_and_validate(dir: &Path, files: &[(String, Vec<Value>)]) -> Result<String, String> {
    for (file, docs) in files {
        let text: Vec<String> = docs.iter().map(yaml).collect();
        std::fs::write(dir.join(file), text.join("---\n")).unwrap();
    }
    kubernetes_validate(dir, files)
}

/// Validates every core object of a render (and the sidecar workload) strictly.
fn validate_render(r: &Render) {
    let dir = tempfile::tempdir().unwrap();
    let mut files: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut objects = r.objects();
    objects.extend(r.sidecar_workload());
    for o in objects.iter().filter(|o| !o.is_crd()) {
        let file = o.file.replace([' ', '(', ')'], "");
        files.entry(file).or_default().push(o.doc.clone());
    }
    assert!(!files.is_empty(), "{}: nothing to validate", r.set);
    let files: Vec<(String, Vec<Value>)> = files.into_iter().collect();
    if let Err(e) = write_and_validate(dir.path(), &files) {
        panic!("{}: {e}\n{}", r.set, r.dump());
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus Operator resources (structural, as tests/deploy.rs)
// ---------------------------------------------------------------------------------------

fn check_scrape_endpoint(r: &Render, ep: &Value, ports: &BTreeSet<String>, what: &str) {
    check_allowed_keys_showing(
        ep,
        &[
            "port",
            "path",
            "interval",
            "scrapeTimeout",
            "scheme",
            "tlsConfig",
            "basicAuth",
        ],
        what,
    );
    check_scrape_target(ep, ports, what);
    let secs = |key: &str| duration_secs(str_of(&ep[key], &format!("{what}: {key}")), key, what);
    assert!(
        0 < secs("scrapeTimeout") && secs("scrapeTimeout") <= secs("interval"),
        "{what}: scrapeTimeout must be within interval"
    );
    // HTTPS exactly when the exporter serves TLS, trusting the CA of its certificate's Secret.
    let tls = r.flag("webConfig.tls.enabled");
    assert_eq!(
        ep["scheme"].as_str() == Some("https"),
        tls,
        "{what}: scheme"
    );
    if tls {
        let ca = &ep["tlsConfig"]["ca"]["secret"];
        assert_eq!(
            ca["name"].as_str(),
            Some(r.text("webConfig.tls.secretName")),
            "{what}: CA"
        );
        assert_eq!(
            ca["key"].as_str(),
            Some(r.text("webConfig.scrape.caKey")),
            "{what}: CA key"
        );
        assert!(
            ep["tlsConfig"]["serverName"].is_string(),
            "{what}: serverName"
        );
    }
    // Basic auth exactly when the exporter asks for it, from the scrape Secret.
    let auth = r.flag("webConfig.basicAuth.enabled");
    assert_eq!(!ep["basicAuth"].is_null(), auth, "{what}: basicAuth");
    if auth {
        for (half, key) in [("username", "username"), ("password", "password")] {
            assert_eq!(
                ep["basicAuth"][half]["name"].as_str(),
                Some(r.text("webConfig.scrape.basicAuthSecret")),
                "{what}: basicAuth.{half}"
            );
            assert_eq!(ep["basicAuth"][half]["key"].as_str(), Some(key));
        }
    }
}

fn check_monitor_metadata(o: &Manifest, what: &str) {
    check_allowed_keys_showing(&o.doc, &["apiVersion", "kind", "metadata", "spec"], what);
    assert_eq!(
        o.doc["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1"),
        "{what}"
    );
    check_allowed_keys_showing(
        &o.doc["metadata"],
        &["name", "namespace", "labels", "annotations"],
        &format!("{what} metadata"),
    );
}

/// Checks every ServiceMonitor, PodMonitor and PrometheusRule of a render; returns the kinds.
fn check_crds(r: &Render) -> BTreeSet<String> {
    let objects = r.objects();
    let workloads = r.workloads();
    let mut kinds = BTreeSet::new();
    for o in objects.iter().filter(|o| o.is_crd()) {
        let what = format!("{}: {} {}", r.set, o.kind(), o.file);
        check_monitor_metadata(o, &what);
        let spec = &o.doc["spec"];
        match o.kind() {
            "ServiceMonitor" => {
                check_allowed_keys_showing(spec, &["selector", "endpoints"], &what);
                let selector = string_map(&spec["selector"]["matchLabels"]);
                let services: Vec<&Manifest> = objects
                    .iter()
                    .filter(|s| s.kind() == "Service")
                    .filter(|s| selects(&selector, &string_map(&s.doc["metadata"]["labels"])))
                    .collect();
                assert_eq!(
                    services.len(),
                    1,
                    "{what}: selects {} Services, want exactly the metrics Service\n{}",
                    services.len(),
                    r.dump()
                );
                let ports: BTreeSet<String> = seq_of(&services[0].doc["spec"]["ports"], "ports")
                    .iter()
                    .filter_map(|p| p["name"].as_str().map(String::from))
                    .collect();
                for (i, ep) in seq_of(&spec["endpoints"], &what).iter().enumerate() {
                    check_scrape_endpoint(r, ep, &ports, &format!("{what} endpoints[{i}]"));
                }
            }
            "PodMonitor" => {
                check_allowed_keys_showing(spec, &["selector", "podMetricsEndpoints"], &what);
                let selector = string_map(&spec["selector"]["matchLabels"]);
                let pods: Vec<&Manifest> = workloads
                    .iter()
                    .filter(|w| {
                        selects(
                            &selector,
                            &string_map(&w.doc["spec"]["template"]["metadata"]["labels"]),
                        )
                    })
                    .collect();
                assert_eq!(
                    pods.len(),
                    1,
                    "{what}: selects {} workloads\n{}",
                    pods.len(),
                    r.dump()
                );
                // Only the exporter's ports: a PodMonitor on the application's scrapes the app.
                let ports: BTreeSet<String> = seq_of(&exporter_of(pods[0])["ports"], "ports")
                    .iter()
                    .filter_map(|p| p["name"].as_str().map(String::from))
                    .collect();
                for (i, ep) in seq_of(&spec["podMetricsEndpoints"], &what)
                    .iter()
                    .enumerate()
                {
                    check_scrape_endpoint(
                        r,
                        ep,
                        &ports,
                        &format!("{what} podMetricsEndpoints[{i}]"),
                    );
                }
            }
            "PrometheusRule" => {
                check_allowed_keys_showing(spec, &["groups"], &what);
                for g in seq_of(&spec["groups"], &what) {
                    for rule in seq_of(&g["rules"], &what) {
                        assert!(
                            rule["alert"].is_string() != rule["record"].is_string(),
                            "{what}: each rule is exactly one of alert / record: {rule:?}"
                        );
                        str_of(&rule["expr"], &format!("{what}: expr"));
                    }
                }
            }
            other => panic!("{what}: no structural check for {other}; add one to tests/helm.rs"),
        }
        kinds.insert(o.kind().to_string());
    }
    kinds
}

// ---------------------------------------------------------------------------------------
// the pod as the exporter sees it
// ---------------------------------------------------------------------------------------

/// The files the pod's projected volume would hold, written under a temporary directory that
/// stands for /etc/apigateway-exporter. Objects the chart does not render (existingConfigMap,
/// the TLS Secret, webConfig.existingSecret) get stand-ins: the default render's config, a
/// fresh self-signed certificate, a web config that names it. Paths under MOUNT in the files
/// point into the directory.
struct PodFiles {
    dir: tempfile::TempDir,
}

impl PodFiles {
    fn new(r: &Render, w: &Manifest) -> PodFiles {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().into_owned();
        let pod = w.pod_spec().unwrap();
        let c = exporter_of(w);
        let what = format!("{}: {}", r.set, w.file);
        let mounts = seq_of(&c["volumeMounts"], &format!("{what}: volumeMounts"));
        assert_eq!(mounts.len(), 1, "{what}: one volume, mounted at {MOUNT}");
        assert_eq!(mounts[0]["mountPath"].as_str(), Some(MOUNT), "{what}");
        assert_eq!(
            mounts[0]["readOnly"].as_bool(),
            Some(true),
            "{what}: read-only"
        );
        let volume = seq_of(&pod["volumes"], &format!("{what}: volumes"))
            .iter()
            .find(|v| v["name"] == mounts[0]["name"])
            .unwrap_or_else(|| panic!("{what}: no volume {:?}", mounts[0]["name"]));
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        for source in seq_of(
            &volume["projected"]["sources"],
            &format!("{what}: projected sources"),
        ) {
            let (kind, src) = if !source["configMap"].is_null() {
                ("ConfigMap", &source["configMap"])
            } else {
                ("Secret", &source["secret"])
            };
            let name = str_of(&src["name"], &format!("{what}: {kind} name"));
            let data: BTreeMap<String, String> = match r.find(kind, name) {
                Some(o) if kind == "ConfigMap" => string_map(&o.doc["data"]),
                Some(o) => string_map(&o.doc["stringData"]),
                None if kind == "ConfigMap" && name == r.text("existingConfigMap") => {
                    BTreeMap::from([("config.yaml".into(), default_config())])
                }
                None if name == r.text("webConfig.tls.secretName") => BTreeMap::from([
                    ("tls.crt".into(), cert.cert.pem()),
                    ("tls.key".into(), cert.signing_key.serialize_pem()),
                ]),
                None if name == r.text("webConfig.existingSecret") => BTreeMap::from([(
                    "web.yml".into(),
                    format!(
                        "tls_server_config:\n  cert_file: {MOUNT}/tls/tls.crt\n  key_file: {MOUNT}/tls/tls.key\n"
                    ),
                )]),
                None => panic!(
                    "{what}: the volume needs {kind} {name}, which is neither rendered nor given in values\n{}",
                    r.dump()
                ),
            };
            for item in seq_of(&src["items"], &format!("{what}: {kind} {name} items")) {
                let key = str_of(&item["key"], "item key");
                let text = data.get(key).unwrap_or_else(|| {
                    panic!("{what}: {kind} {name} has no key {key}\n{}", r.dump())
                });
                let path = dir.path().join(str_of(&item["path"], "item path"));
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, text.replace(MOUNT, &root)).unwrap();
            }
        }
        PodFiles { dir }
    }

    fn root(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    /// The container's arguments, with the mounted paths pointing into the directory.
    fn args(&self, c: &Value) -> Vec<String> {
        args_of(c)
            .iter()
            .map(|a| a.replace(MOUNT, &self.root()))
            .collect()
    }
}

/// The config of the default render, the stand-in for an existing ConfigMap.
fn default_config() -> String {
    let r = render_of("default");
    let cm = r.of_kind("ConfigMap");
    assert_eq!(cm.len(), 1, "the defaults render one ConfigMap");
    str_of(&cm[0].doc["data"]["config.yaml"], "config.yaml").to_string()
}

/// The container's environment as the kubelet would set it: values as they are, Secret keys
/// as a placeholder, the pod index as `pod_index`.
fn container_env(c: &Value, pod_index: u64) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for e in c["env"].as_sequence().into_iter().flatten() {
        let name = str_of(&e["name"], "env name").to_string();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_string()
        } else if !e["valueFrom"]["secretKeyRef"].is_null() {
            format!(
                "placeholder-{}",
                str_of(&e["valueFrom"]["secretKeyRef"]["key"], "key")
            )
        } else {
            let field = str_of(&e["valueFrom"]["fieldRef"]["fieldPath"], "fieldRef");
            assert_eq!(
                field, "metadata.labels['apps.kubernetes.io/pod-index']",
                "{name}"
            );
            pod_index.to_string()
        };
        env.push((name, value));
    }
    env
}

/// `check-config` with the container's own arguments and environment, AWS unreachable.
fn check_config(files: &PodFiles, c: &Value, pod_index: u64) -> Output {
    run(aws_unreachable(
        Command::new(BIN)
            .args(files.args(c))
            .arg("check-config")
            .envs(container_env(c, pod_index)),
    ))
}

/// The exporter, killed on drop.
struct Exporter {
    child: KillOnDrop,
    port: u16,
}

/// The exporter on its demo source with the container's web config (if any).
fn start_exporter(files: &PodFiles, c: &Value) -> Exporter {
    let port = free_port();
    let web: Vec<String> = files
        .args(c)
        .into_iter()
        .filter(|a| a.starts_with("--web.config.file="))
        .collect();
    let child = Command::new(BIN)
        .args(["--demo", "--log.level=warn"])
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(&web)
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the exporter");
    let mut exporter = Exporter {
        child: KillOnDrop(child),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = exporter.child.try_wait().unwrap() {
            panic!("the exporter exited ({status}) with {web:?}");
        }
        assert!(
            Instant::now() < deadline,
            "the exporter did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    exporter
}

/// One probe, as the kubelet runs it (HTTPS without verifying the certificate); the HTTP
/// status, or 0 for a TCP probe that connected. With `send_headers` false, the probe's
/// headers are left out.
fn run_probe(probe: &Value, port: u16, send_headers: bool) -> u16 {
    if !probe["tcpSocket"].is_null() {
        assert_eq!(probe["tcpSocket"]["port"].as_str(), Some("metrics"));
        TcpStream::connect(("127.0.0.1", port)).expect("the tcpSocket probe connects");
        return 0;
    }
    let get = &probe["httpGet"];
    assert_eq!(
        get["port"].as_str(),
        Some("metrics"),
        "probes use the named port"
    );
    let scheme = get["scheme"].as_str().unwrap_or("HTTP").to_lowercase();
    let path = str_of(&get["path"], "probe path");
    let mut cmd = common::curl_http_code();
    cmd.args(["-k", "--max-time", "10"]);
    if send_headers {
        for h in get["httpHeaders"].as_sequence().into_iter().flatten() {
            cmd.arg("-H").arg(format!(
                "{}: {}",
                str_of(&h["name"], "header"),
                str_of(&h["value"], "header value")
            ));
        }
    }
    cmd.arg(format!("{scheme}://127.0.0.1:{port}{path}"));
    let out = cmd
        .output()
        .expect("curl is installed (scripts/setup-tools.sh)");
    common::http_code(&out)
}

// ---------------------------------------------------------------------------------------
// the chart itself
// ---------------------------------------------------------------------------------------

/// Chart.yaml is a v2 chart of the exporter's version, and the rules file is the repository's
/// alerts/apigateway.rules.yml through a symlink, not a copy.
#[test]
fn chart_is_the_exporters_version_and_links_the_rules() {
    let chart = chart_yaml();
    assert_eq!(chart["apiVersion"].as_str(), Some("v2"));
    assert_eq!(chart["name"].as_str(), Some("apigateway-exporter"));
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(cargo_package_field("version").as_str()),
        "Chart.yaml appVersion must be Cargo.toml's package.version"
    );
    let link = chart_dir().join("files/apigateway.rules.yml");
    let meta = std::fs::symlink_metadata(&link).expect("files/apigateway.rules.yml exists");
    assert!(
        meta.file_type().is_symlink(),
        "{} must be a symlink, not a copy",
        link.display()
    );
    assert_eq!(
        std::fs::canonicalize(&link).unwrap(),
        std::fs::canonicalize(repo().join("alerts/apigateway.rules.yml")).unwrap(),
        "files/apigateway.rules.yml points elsewhere"
    );
    // The default config is the one deploy/kubernetes ships.
    let kustomize: Value =
        yaml_serde::from_str(&read(&repo().join("deploy/kubernetes/configmap.yaml"))).unwrap();
    let theirs: Value =
        yaml_serde::from_str(str_of(&kustomize["data"]["config.yaml"], "config.yaml")).unwrap();
    let ours: Value = yaml_serde::from_str(&default_config()).unwrap();
    assert_eq!(
        ours, theirs,
        "values.yaml config differs from deploy/kubernetes/configmap.yaml"
    );
}

#[derive(Debug, Deserialize)]
struct LintReport {
    total_charts_linted: u64,
    messages: Vec<LintMessage>,
    errors: Vec<String>,
    /// `fail` calls of the templates: Helm lints in lint mode, where they are only logged.
    fail_messages: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct LintMessage {
    severity: u8,
    path: String,
    error: String,
}

fn lint(values: Option<&Path>, kube_version: Option<&str>) -> LintReport {
    let mut args: Vec<PathBuf> = vec!["lint".into(), chart_dir()];
    if let Some(v) = values {
        args.extend(["--values".into(), v.into()]);
    }
    if let Some(k) = kube_version {
        args.extend(["--kube-version".into(), k.into()]);
    }
    let out = helm(&args);
    assert!(
        out.status.success(),
        "lint did not run:\n{}",
        describe(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("lint printed no report ({e}):\n{}", describe(&out)))
}

/// `helm lint` finds no error with any value set (warnings and infos are printed) and no
/// template calls `fail`; it does find bad values, and the sharded set's `fail` on a cluster
/// older than 1.28. (Helm's lint mode only logs `fail`, so its messages are read apart; a
/// plain render, below, fails on them.)
#[test]
fn lint_is_clean_for_every_value_set() {
    for (set, file) in value_sets() {
        let report = lint(file.as_deref(), None);
        assert_eq!(report.total_charts_linted, 1, "{set}: {report:?}");
        for m in &report.messages {
            let level = ["unknown", "INFO", "WARNING", "ERROR"].get(usize::from(m.severity));
            eprintln!(
                "helm lint {set}: {} {}: {}",
                level.unwrap_or(&"?"),
                m.path,
                m.error.trim()
            );
        }
        let errors: Vec<&LintMessage> =
            report.messages.iter().filter(|m| m.severity >= 3).collect();
        assert!(
            errors.is_empty() && report.errors.is_empty() && report.fail_messages.is_empty(),
            "{set}: helm lint errors: {errors:?} {:?} {:?}",
            report.errors,
            report.fail_messages
        );
    }

    let bad = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(bad.path(), "logFormat: xml\n").unwrap();
    let report = lint(Some(bad.path()), None);
    assert!(
        report.errors.iter().any(|e| e.contains("/logFormat")),
        "lint accepted logFormat: xml: {report:?}"
    );

    let sharded = chart_dir().join("ci/sharded-irsa-values.yaml");
    let old = lint(Some(&sharded), Some("v1.27.0"));
    assert!(
        old.fail_messages
            .iter()
            .any(|e| e.contains("sharding.enabled needs Kubernetes 1.28")),
        "sharding on Kubernetes 1.27 (no pod-index label) must fail: {old:?}"
    );
    let new = lint(Some(&sharded), Some("v1.30.0"));
    assert!(
        new.errors.is_empty() && new.fail_messages.is_empty(),
        "sharding on 1.30: {new:?}"
    );
}

// ---------------------------------------------------------------------------------------
// every value set
// ---------------------------------------------------------------------------------------

/// Every value set renders, every object validates strictly, carries the standard labels and
/// the release's namespace, and every reference (ServiceAccount, ConfigMap, Secret, Service
/// selector and ports, Ingress backend, monitors) resolves inside the render or to an
/// existing* value. Together the sets cover every kind the chart renders.
#[test]
fn every_value_set_renders_and_validates_strictly() {
    let chart = chart_yaml();
    let chart_label = format!(
        "apigateway-exporter-{}",
        str_of(&chart["version"], "Chart.yaml version")
    );
    let mut kinds = BTreeSet::new();
    for r in renders() {
        validate_render(r);
        kinds.extend(check_crds(r));
        for o in r.objects() {
            let what = format!("{}: {} {}", r.set, o.kind(), o.file);
            kinds.insert(o.kind().to_string());
            assert_eq!(
                o.doc["metadata"]["namespace"].as_str(),
                Some(NAMESPACE),
                "{what}"
            );
            let labels = string_map(&o.doc["metadata"]["labels"]);
            for (k, v) in [
                ("app.kubernetes.io/name", "apigateway-exporter"),
                ("app.kubernetes.io/instance", RELEASE),
                (
                    "app.kubernetes.io/version",
                    cargo_package_field("version").as_str(),
                ),
                ("app.kubernetes.io/managed-by", "Helm"),
                ("helm.sh/chart", chart_label.as_str()),
            ] {
                assert_eq!(
                    labels.get(k).map(String::as_str),
                    Some(v),
                    "{what}: label {k}\n{}",
                    yaml(&o.doc)
                );
            }
        }

        let workloads = r.workloads();
        assert_eq!(
            workloads.len(),
            1,
            "{}: exactly one exporter workload\n{}",
            r.set,
            r.dump()
        );
        let w = &workloads[0];
        let pod = w.pod_spec().unwrap();
        let c = exporter_of(w);
        let sa = str_of(&pod["serviceAccountName"], "serviceAccountName");
        if r.flag("serviceAccount.create") {
            let account = r
                .find("ServiceAccount", sa)
                .unwrap_or_else(|| panic!("{}: no ServiceAccount {sa}", r.set));
            let irsa =
                account.doc["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].as_str();
            let want = Some(r.text("serviceAccount.irsaRoleArn")).filter(|a| !a.is_empty());
            assert_eq!(
                irsa, want,
                "{}: the IRSA annotation is serviceAccount.irsaRoleArn",
                r.set
            );
        } else {
            assert_eq!(
                sa,
                r.text("serviceAccount.name"),
                "{}: the given ServiceAccount",
                r.set
            );
            assert!(
                r.of_kind("ServiceAccount").is_empty(),
                "{}: create: false",
                r.set
            );
        }
        // The volume's ConfigMap and Secrets resolve (PodFiles panics otherwise).
        PodFiles::new(r, w);

        // Services select the exporter pod, on the exporter's named ports.
        let pod_labels = string_map(&w.doc["spec"]["template"]["metadata"]["labels"]);
        for s in r.of_kind("Service") {
            let selector = string_map(&s.doc["spec"]["selector"]);
            assert!(
                selects(&selector, &pod_labels),
                "{}: Service {} selects {selector:?}, the pod is {pod_labels:?}",
                r.set,
                s.name()
            );
            for p in seq_of(&s.doc["spec"]["ports"], "ports") {
                let target = str_of(&p["targetPort"], "targetPort (a port name)");
                assert!(
                    named_port(c, target).is_some(),
                    "{}: Service {} targets {target}, not a port of the exporter",
                    r.set,
                    s.name()
                );
            }
        }
        for ing in r.of_kind("Ingress") {
            for rule in seq_of(&ing.doc["spec"]["rules"], "rules") {
                for p in seq_of(&rule["http"]["paths"], "paths") {
                    let backend = &p["backend"]["service"];
                    let svc = r
                        .find("Service", str_of(&backend["name"], "backend"))
                        .unwrap_or_else(|| {
                            panic!("{}: the Ingress backend is not rendered", r.set)
                        });
                    let port = str_of(&backend["port"]["name"], "backend port");
                    assert!(
                        seq_of(&svc.doc["spec"]["ports"], "ports")
                            .iter()
                            .any(|sp| sp["name"].as_str() == Some(port))
                    );
                }
            }
        }
    }
    for kind in [
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Deployment",
        "StatefulSet",
        "Service",
        "Ingress",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    ] {
        assert!(
            kinds.contains(kind),
            "no value set renders a {kind}: add one to ci/"
        );
    }
}

/// The validation above can fail: an unknown field in a rendered Deployment is refused.
#[test]
fn strict_validation_rejects_a_broken_render() {
    let r = render_of("default");
    let mut doc = r.of_kind("Deployment").remove(0).doc;
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] =
        Value::String("Always".into());
    let dir = tempfile::tempdir().unwrap();
    let res = write_and_validate(dir.path(), &[("broken.yaml".into(), vec![doc])]);
    assert!(res.is_err(), "an unknown field passed: {res:?}");
}

/// The exporter container of every workload is locked down like deploy/kubernetes, runs the
/// chart's image and arguments, and its probes match its mode: readiness on /-/ready for the
/// Deployment and StatefulSet, a startup probe instead in a sidecar; HTTPS under TLS; the
/// credentials or a TCP check under basic auth.
#[test]
fn exporter_containers_are_locked_down() {
    for r in renders() {
        for w in r.workloads() {
            let what = format!("{}: {}", r.set, w.file);
            let pod = w.pod_spec().unwrap();
            let c = exporter_of(&w);
            let sidecar = r.flag("sidecar.enabled");
            let sc = &c["securityContext"];
            for (key, want) in [
                ("runAsNonRoot", Value::Bool(true)),
                ("runAsUser", Value::from(65532)),
                ("readOnlyRootFilesystem", Value::Bool(true)),
                ("allowPrivilegeEscalation", Value::Bool(false)),
            ] {
                assert_eq!(sc[key], want, "{what}: securityContext.{key}");
            }
            assert_eq!(
                seq_of(&sc["capabilities"]["drop"], "drop"),
                [Value::from("ALL")],
                "{what}"
            );
            assert_eq!(
                sc["seccompProfile"]["type"].as_str(),
                Some("RuntimeDefault"),
                "{what}"
            );
            // A pod-level securityContext would also apply to the application's containers.
            assert_eq!(
                pod["securityContext"].is_null(),
                sidecar,
                "{what}: pod securityContext\n{}",
                yaml(&w.doc)
            );
            if !sidecar {
                assert_eq!(
                    pod["securityContext"]["fsGroup"].as_u64(),
                    Some(65532),
                    "{what}"
                );
            }

            let image = str_of(&c["image"], "image");
            assert_eq!(
                image,
                format!(
                    "ghcr.io/apigateway-exporter/apigateway-exporter:{}",
                    cargo_package_field("version")
                ),
                "{what}: the default image is the chart's appVersion"
            );
            assert_eq!(
                named_port(c, "metrics"),
                Some(9743),
                "{what}: the default listen port"
            );
            let args = args_of(c);
            assert!(
                args.contains(&CONFIG_FILE_ARG.to_string()),
                "{what}: {args:?}"
            );
            assert!(
                args.contains(&"--log.format=json".to_string()),
                "{what}: {args:?}"
            );
            let web = args
                .iter()
                .any(|a| a == "--web.config.file=/etc/apigateway-exporter/web/web.yml");
            let web_on = r.flag("webConfig.tls.enabled")
                || r.flag("webConfig.basicAuth.enabled")
                || !r.text("webConfig.existingSecret").is_empty();
            assert_eq!(web, web_on, "{what}: --web.config.file {args:?}");
            for extra in seq_of(r.value("extraArgs"), "extraArgs") {
                assert!(
                    args.iter().any(|a| Some(a.as_str()) == extra.as_str()),
                    "{what}: extraArgs"
                );
            }
            for key in ["requests", "limits"] {
                assert_eq!(
                    c["resources"][key],
                    r.value("resources")[key],
                    "{what}: resources.{key}"
                );
            }

            // The placement and extension values reach the pod (the sidecar's pod is the user's).
            for env in seq_of(r.value("extraEnv"), "extraEnv") {
                assert!(
                    seq_of(&c["env"], "env").contains(env),
                    "{what}: extraEnv {env:?}"
                );
            }
            if !sidecar {
                for key in [
                    "nodeSelector",
                    "tolerations",
                    "affinity",
                    "imagePullSecrets",
                ] {
                    let want = r.value(key);
                    let empty = want.as_mapping().is_some_and(|m| m.is_empty())
                        || want.as_sequence().is_some_and(|s| s.is_empty());
                    let got = &pod[key];
                    assert!(
                        if empty { got.is_null() } else { got == want },
                        "{what}: {key}"
                    );
                }
                let meta = &w.doc["spec"]["template"]["metadata"];
                for (field, value) in [("labels", "podLabels"), ("annotations", "podAnnotations")] {
                    let have = string_map(&meta[field]);
                    for (k, v) in string_map(r.value(value)) {
                        assert_eq!(have.get(&k), Some(&v), "{what}: {value}.{k}");
                    }
                }
            }

            if w.doc["kind"].as_str() == Some("Deployment") && !sidecar {
                assert_eq!(
                    w.doc["spec"]["replicas"].as_u64(),
                    Some(1),
                    "{what}: one poller"
                );
                assert_eq!(
                    w.doc["spec"]["strategy"]["type"].as_str(),
                    Some("Recreate"),
                    "{what}"
                );
            }

            let kinds: BTreeSet<&str> = ["readinessProbe", "livenessProbe", "startupProbe"]
                .into_iter()
                .filter(|k| !c[*k].is_null())
                .collect();
            let want: BTreeSet<&str> = if sidecar {
                BTreeSet::from(["startupProbe", "livenessProbe"])
            } else {
                BTreeSet::from(["readinessProbe", "livenessProbe"])
            };
            assert_eq!(kinds, want, "{what}: probes");
            let basic = r.flag("webConfig.basicAuth.enabled");
            let header = r.text("webConfig.basicAuth.probeAuthorization");
            for kind in kinds {
                let p = &c[kind];
                if basic && header.is_empty() {
                    assert!(
                        !p["tcpSocket"].is_null(),
                        "{what}: {kind} without credentials is a TCP check"
                    );
                    continue;
                }
                let path = str_of(&p["httpGet"]["path"], "path");
                assert_eq!(
                    path,
                    if kind == "readinessProbe" {
                        READY
                    } else {
                        HEALTHY
                    },
                    "{what}: {kind}"
                );
                let https = p["httpGet"]["scheme"].as_str() == Some("HTTPS");
                assert_eq!(
                    https,
                    r.flag("webConfig.tls.enabled"),
                    "{what}: {kind} scheme"
                );
                let sent = p["httpGet"]["httpHeaders"][0]["value"].as_str();
                assert_eq!(
                    sent,
                    basic.then_some(header),
                    "{what}: {kind} Authorization"
                );
            }
            if r.flag("sidecar.enabled") {
                assert!(
                    r.of_kind("Deployment").is_empty() && r.of_kind("StatefulSet").is_empty(),
                    "{what}: no workload of the chart's own in sidecar mode"
                );
            }
        }
    }
}

/// Every workload's config, with the container's arguments and environment, passes the
/// exporter's `check-config` (exit 0) with AWS unreachable; a broken copy exits 2.
#[test]
fn rendered_configs_pass_check_config() {
    let mut checked = 0;
    for r in renders() {
        for w in r.workloads() {
            let c = exporter_of(&w);
            let files = PodFiles::new(r, &w);
            let out = check_config(&files, c, 0);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}: check-config {:?}:\n{}\n{}\n{}",
                r.set,
                files.args(c),
                describe(&out),
                read(&files.dir.path().join("config.yaml")),
                r.dump()
            );
            assert!(
                String::from_utf8_lossy(&out.stdout).contains(": valid"),
                "{}: {}",
                r.set,
                describe(&out)
            );

            let config = files.dir.path().join("config.yaml");
            let good = read(&config);
            std::fs::write(&config, format!("{good}no_such_key: true\n")).unwrap();
            let out = check_config(&files, c, 0);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{}: a broken config passed:\n{}",
                r.set,
                describe(&out)
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "checked {checked} workloads");
}

/// The rendered probes, run the way the kubelet runs them against the exporter started with the
/// pod's web config: /-/healthy answers 200, /-/ready 200 or 503 (before the first poll). Under
/// basic auth the same request without the probe's header is refused, so the header matters,
/// and it holds the password of a user's bcrypt hash.
#[test]
fn rendered_probes_pass_against_the_exporter() {
    use base64::Engine;
    let mut with_auth = 0;
    for r in renders() {
        for w in r.workloads() {
            let what = format!("{}: {}", r.set, w.file);
            let c = exporter_of(&w);
            let files = PodFiles::new(r, &w);
            let exporter = start_exporter(&files, c);
            for kind in ["readinessProbe", "livenessProbe", "startupProbe"] {
                let p = &c[kind];
                if p.is_null() {
                    continue;
                }
                let status = run_probe(p, exporter.port, true);
                if p["tcpSocket"].is_null() {
                    let path = str_of(&p["httpGet"]["path"], "path");
                    let ok: &[u16] = if path == READY { &[200, 503] } else { &[200] };
                    assert!(
                        ok.contains(&status),
                        "{what}: {kind} {path} answered {status}\n{}",
                        yaml(p)
                    );
                    if !p["httpGet"]["httpHeaders"].is_null() {
                        assert_eq!(
                            run_probe(p, exporter.port, false),
                            401,
                            "{what}: {kind} without its header"
                        );
                        with_auth += 1;
                    }
                }
            }
            if r.flag("webConfig.basicAuth.enabled")
                && !r.text("webConfig.basicAuth.probeAuthorization").is_empty()
            {
                let header = r.text("webConfig.basicAuth.probeAuthorization");
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(header.strip_prefix("Basic ").expect("Basic credentials"))
                    .expect("base64");
                let decoded = String::from_utf8(decoded).unwrap();
                let (user, password) = decoded.split_once(':').expect("user:password");
                let hash = r.value("webConfig.basicAuth.users")[user]
                    .as_str()
                    .unwrap_or_else(|| {
                        panic!("{what}: the probes' user {user} is not in basicAuth.users")
                    });
                assert!(
                    bcrypt::verify(password, hash).unwrap(),
                    "{what}: the probe password does not match {user}'s hash"
                );
            }
        }
    }
    assert!(with_auth > 0, "no value set probes with credentials");
}

// ---------------------------------------------------------------------------------------
// sharding
// ---------------------------------------------------------------------------------------

/// The sharded value set: a StatefulSet of `shards` replicas behind a headless Service, no
/// Deployment, shard.total = shards in the config, the pod index in SHARD_INDEX; each index
/// below `shards` passes check-config and the next one does not. Another shard count follows.
#[test]
fn sharded_render_wires_the_pod_index() {
    let sharded = render_of("sharded-irsa-values");
    let five = render_values("five-shards", "sharding: {enabled: true, shards: 5}\n");
    for r in [sharded, &five] {
        let shards = r
            .value("sharding.shards")
            .as_u64()
            .expect("sharding.shards");
        assert!(r.flag("sharding.enabled"));
        assert!(
            r.of_kind("Deployment").is_empty(),
            "{}: no Deployment beside the shards",
            r.set
        );
        let sets = r.of_kind("StatefulSet");
        assert_eq!(sets.len(), 1, "{}", r.dump());
        let set = &sets[0].doc;
        assert_eq!(
            set["spec"]["replicas"].as_u64(),
            Some(shards),
            "{}: replicas\n{}",
            r.set,
            yaml(set)
        );
        // The metrics Service (metrics_service_is_the_same_in_every_mode) and the
        // StatefulSet's headless governing Service.
        let services = r.of_kind("Service");
        assert_eq!(services.len(), 2, "{}", r.dump());
        let headless = r
            .find("Service", &format!("{RELEASE}-headless"))
            .unwrap_or_else(|| panic!("{}: no headless Service\n{}", r.set, r.dump()));
        assert_eq!(
            headless.doc["spec"]["clusterIP"].as_str(),
            Some("None"),
            "headless"
        );
        assert_eq!(
            set["spec"]["serviceName"].as_str(),
            Some(headless.name()),
            "{}: the StatefulSet is governed by the headless Service",
            r.set
        );

        let cm = r.of_kind("ConfigMap");
        let config: Value =
            yaml_serde::from_str(str_of(&cm[0].doc["data"]["config.yaml"], "config")).unwrap();
        assert_eq!(
            config["shard"]["total"].as_u64(),
            Some(shards),
            "{}: shard.total\n{}",
            r.set,
            yaml(&config)
        );
        assert_eq!(config["shard"]["index"].as_str(), Some("${SHARD_INDEX}"));

        let w = Manifest {
            file: "statefulset.yaml".into(),
            doc: set.clone(),
        };
        let c = exporter_of(&w);
        let env = seq_of(&c["env"], "env");
        let index = env
            .iter()
            .find(|e| e["name"].as_str() == Some("SHARD_INDEX"))
            .unwrap_or_else(|| panic!("{}: no SHARD_INDEX\n{}", r.set, yaml(c)));
        assert_eq!(
            index["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            Some("metadata.labels['apps.kubernetes.io/pod-index']")
        );
        let files = PodFiles::new(r, &w);
        for i in 0..=shards {
            let out = check_config(&files, c, i);
            let want = if i < shards { 0 } else { 2 };
            assert_eq!(
                out.status.code(),
                Some(want),
                "{}: SHARD_INDEX={i}: {}",
                r.set,
                describe(&out)
            );
        }
    }
}

/// spec.clusterIP is immutable: the Service a `helm upgrade` turning sharding on or off keeps
/// must not change it (nor anything else of its spec), and the ServiceMonitor scrapes that
/// Service alone in both modes, never the headless one too (each pod twice).
#[test]
fn metrics_service_is_the_same_in_every_mode() {
    let monitor = "serviceMonitor: {enabled: true}\n";
    let sets = [
        render_values("default", monitor),
        render_values(
            "sharded",
            &format!("{monitor}sharding: {{enabled: true, shards: 3}}\n"),
        ),
        render_values(
            "sharded, NodePort",
            &format!("{monitor}sharding: {{enabled: true}}\nservice: {{type: NodePort}}\n"),
        ),
        render_values(
            "default, NodePort",
            &format!("{monitor}service: {{type: NodePort}}\n"),
        ),
    ];
    let service_of = |r: &Render| {
        r.find("Service", RELEASE)
            .unwrap_or_else(|| panic!("{}: no Service {RELEASE}\n{}", r.set, r.dump()))
    };
    for r in &sets {
        let svc = service_of(r);
        let spec = &svc.doc["spec"];
        assert!(
            spec["clusterIP"].is_null(),
            "{}: clusterIP is Kubernetes' to assign\n{}",
            r.set,
            yaml(&svc.doc)
        );
        assert_eq!(
            spec["type"].as_str(),
            Some(r.text("service.type")),
            "{}: type\n{}",
            r.set,
            yaml(&svc.doc)
        );
        let monitors = r.of_kind("ServiceMonitor");
        assert_eq!(monitors.len(), 1, "{}", r.set);
        let selector = string_map(&monitors[0].doc["spec"]["selector"]["matchLabels"]);
        let selected: Vec<String> = r
            .of_kind("Service")
            .iter()
            .filter(|s| selects(&selector, &string_map(&s.doc["metadata"]["labels"])))
            .map(|s| s.name().to_string())
            .collect();
        assert_eq!(
            selected,
            [RELEASE],
            "{}: the ServiceMonitor selects exactly the metrics Service\n{}",
            r.set,
            r.dump()
        );
    }
    for (a, b) in [(&sets[0], &sets[1]), (&sets[3], &sets[2])] {
        let (sa, sb) = (service_of(a), service_of(b));
        assert_eq!(
            sa.doc["spec"], sb.doc["spec"],
            "{} / {}: the Service's spec changes with sharding",
            a.set, b.set
        );
        assert_eq!(
            sa.doc["metadata"]["labels"], sb.doc["metadata"]["labels"],
            "{} / {}",
            a.set, b.set
        );
    }
    assert!(
        sets[0]
            .find("Service", &format!("{RELEASE}-headless"))
            .is_none(),
        "no headless Service without sharding"
    );
}

// ---------------------------------------------------------------------------------------
// rules, config checksum, Firehose
// ---------------------------------------------------------------------------------------

fn alert_groups() -> Value {
    let file: Value =
        yaml_serde::from_str(&read(&repo().join("alerts/apigateway.rules.yml"))).unwrap();
    file["groups"].clone()
}

fn rule_groups(r: &Render) -> Value {
    let rules = r.of_kind("PrometheusRule");
    assert_eq!(
        rules.len(),
        1,
        "{}: one PrometheusRule\n{}",
        r.set,
        r.dump()
    );
    rules[0].doc["spec"]["groups"].clone()
}

/// The rendered PrometheusRule carries exactly the groups of alerts/apigateway.rules.yml, in
/// every value set that enables it and from the packaged chart; prometheusRule.thresholds
/// replaces one threshold and nothing else, and an unknown threshold is refused with its name.
#[test]
fn prometheus_rule_is_the_alerts_file() {
    let want = alert_groups();
    assert!(!seq_of(&want, "groups").is_empty());
    let mut compared = 0;
    for r in renders()
        .iter()
        .filter(|r| r.flag("prometheusRule.enabled"))
    {
        let got = rule_groups(r);
        assert!(
            got == want,
            "{}: the PrometheusRule differs from alerts/apigateway.rules.yml:\n{}",
            r.set,
            yaml(&got)
        );
        compared += 1;
    }
    assert!(compared > 0, "no value set enables prometheusRule");

    // `helm package` stores the file behind the symlink: the archive renders the same rules.
    let dest = tempfile::tempdir().unwrap();
    let out = helm([
        OsStr::new("package"),
        chart_dir().as_os_str(),
        dest.path().as_os_str(),
    ]);
    assert!(out.status.success(), "helm package:\n{}", describe(&out));
    #[derive(Deserialize)]
    struct Packaged {
        archive: PathBuf,
    }
    let archive = serde_json::from_slice::<Packaged>(&out.stdout)
        .expect("archive path")
        .archive;
    let values = chart_dir().join("ci/tls-basic-auth-rules-values.yaml");
    let packaged = try_render_chart(&archive, "packaged", Some(&values))
        .unwrap_or_else(|(c, e)| panic!("the packaged chart does not render (exit {c}): {e}"));
    assert!(
        rule_groups(&packaged) == want,
        "the packaged chart's rules differ"
    );

    let record = "apigateway:threshold_5xx_error:ratio";
    let r = render_values(
        "threshold",
        &format!("prometheusRule:\n  enabled: true\n  thresholds:\n    {record}: 0.02\n"),
    );
    let mut expected = want.clone();
    let mut found = 0;
    for g in expected.as_sequence_mut().unwrap() {
        for rule in g["rules"].as_sequence_mut().unwrap() {
            if rule["record"].as_str() == Some(record) {
                assert_ne!(
                    rule["expr"].as_str(),
                    Some("vector(0.02)"),
                    "pick another test value"
                );
                rule["expr"] = Value::from("vector(0.02)");
                found += 1;
            }
        }
    }
    assert_eq!(
        found, 1,
        "alerts/apigateway.rules.yml records {record} once"
    );
    assert!(
        rule_groups(&r) == expected,
        "thresholds changed more or less than {record}:\n{}",
        yaml(&rule_groups(&r))
    );

    let (code, err) = try_render_values(
        "bad-threshold",
        "prometheusRule:\n  enabled: true\n  thresholds:\n    apigateway:no_such:ratio: 1\n",
    )
    .err()
    .expect("an unknown threshold renders");
    assert_eq!(code, EXIT_RENDER, "{err}");
    assert!(
        err.contains("prometheusRule.thresholds.apigateway:no_such:ratio"),
        "{err}"
    );
}

/// checksum/config is the SHA-256 of the ConfigMap's config.yaml, so a config change rolls the
/// pod and nothing else does.
#[test]
fn config_checksum_follows_the_config() {
    let checksum = |r: &Render| -> (String, String) {
        let w = &r.workloads()[0];
        let sum = str_of(
            &w.doc["spec"]["template"]["metadata"]["annotations"]["checksum/config"],
            "checksum/config",
        )
        .to_string();
        let config = str_of(
            &r.of_kind("ConfigMap")[0].doc["data"]["config.yaml"],
            "config",
        )
        .to_string();
        (sum, config)
    };
    let (sum, config) = checksum(render_of("default"));
    assert_eq!(
        sum,
        sha256_hex(&config),
        "checksum/config is not the config's SHA-256"
    );
    let changed = render_values("changed-config", "config:\n  poll:\n    interval: 120s\n");
    let (sum2, config2) = checksum(&changed);
    assert_ne!(config, config2);
    assert_eq!(sum2, sha256_hex(&config2));
    assert_ne!(sum, sum2, "a config change must change the checksum");
    let same = render_values("other-values", "podAnnotations: {a: b}\nlogLevel: debug\n");
    assert_eq!(checksum(&same).0, sum, "only the config moves the checksum");
    let existing = render_values("existing", "existingConfigMap: mine\n");
    assert!(existing.of_kind("ConfigMap").is_empty());
    assert!(existing.workloads()[0].doc["spec"]["template"]["metadata"]["annotations"]["checksum/config"].is_null(), "no checksum of a ConfigMap the chart does not know");
}

/// The Firehose value set: the endpoint's container port is the config's
/// stream.listen_address port, the Service and Ingress reach it, the access keys come from
/// the existing Secret, and the ServiceMonitor-style selection of the metrics Service leaves
/// the Firehose Service out (its component differs).
#[test]
fn firehose_endpoint_follows_the_config() {
    let r = render_of("firehose-podmonitor-values");
    let w = &r.workloads()[0];
    let c = exporter_of(w);
    let addr = r.text("config.stream.listen_address");
    let port: i64 = addr.rsplit(':').next().unwrap().parse().expect("a port");
    assert_eq!(named_port(c, "firehose"), Some(port), "{}", yaml(c));
    let svc = r
        .of_kind("Service")
        .into_iter()
        .find(|s| {
            s.doc["metadata"]["labels"]["app.kubernetes.io/component"].as_str() == Some("firehose")
        })
        .expect("the Firehose Service");
    assert_eq!(
        svc.doc["spec"]["ports"][0]["targetPort"].as_str(),
        Some("firehose")
    );
    let ingress = r.of_kind("Ingress");
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        ingress[0].doc["spec"]["rules"][0]["host"].as_str(),
        Some(r.text("firehose.ingress.host"))
    );
    assert_eq!(
        ingress[0].doc["spec"]["rules"][0]["http"]["paths"][0]["path"].as_str(),
        Some("/"),
        "metric streams on any path, access logs on /access-logs"
    );
    let secret = r.text("firehose.existingSecret");
    for (var, key) in [
        ("FIREHOSE_ACCESS_KEY", r.text("firehose.metricStreamKey")),
        ("FIREHOSE_ACCESS_LOGS_KEY", r.text("firehose.accessLogsKey")),
    ] {
        let env = seq_of(&c["env"], "env")
            .iter()
            .find(|e| e["name"].as_str() == Some(var))
            .unwrap_or_else(|| panic!("no {var}:\n{}", yaml(c)));
        assert_eq!(
            env["valueFrom"]["secretKeyRef"]["name"].as_str(),
            Some(secret)
        );
        assert_eq!(env["valueFrom"]["secretKeyRef"]["key"].as_str(), Some(key));
    }
    // The default port when the config names none.
    let default = render_values(
        "firehose-default-port",
        "config:\n  stream:\n    enabled: true\n    access_key: x\nfirehose:\n  enabled: true\n",
    );
    assert_eq!(
        named_port(exporter_of(&default.workloads()[0]), "firehose"),
        Some(9744)
    );
}

// ---------------------------------------------------------------------------------------
// bad values
// ---------------------------------------------------------------------------------------

/// values.schema.json refuses bad values at render (so at install), naming the key; the same
/// shapes with good values render.
#[test]
fn schema_rejects_bad_values() {
    let cases = [
        (
            "a wrong type",
            "serviceAccount:\n  create: \"yes\"\n",
            "/serviceAccount/create",
        ),
        (
            "an unknown top-level key",
            "replicaCount: 2\n",
            "'replicaCount'",
        ),
        (
            "a negative shard count",
            "sharding:\n  enabled: true\n  shards: -1\n",
            "/sharding/shards",
        ),
        ("a bad enum", "logFormat: xml\n", "/logFormat"),
        (
            "an image tag of another type",
            "image:\n  tag: [1]\n",
            "/image/tag",
        ),
        (
            "a password instead of a hash",
            "webConfig:\n  basicAuth:\n    enabled: true\n    users:\n      prometheus: secret\n",
            "/webConfig/basicAuth/users/prometheus",
        ),
        (
            "TLS without a certificate",
            "webConfig:\n  tls:\n    enabled: true\n",
            "/webConfig/tls/secretName",
        ),
        (
            "a sidecar selecting nothing",
            "sidecar:\n  enabled: true\n",
            "/sidecar/podSelector",
        ),
        (
            "an unknown nested key",
            "serviceMonitor:\n  enabled: true\n  intervall: 30s\n",
            "'intervall'",
        ),
        (
            "a bad duration",
            "podMonitor:\n  enabled: true\n  interval: 30\n",
            "/podMonitor/interval",
        ),
        (
            "a malformed role ARN",
            "serviceAccount:\n  irsaRoleArn: my-role\n",
            "/serviceAccount/irsaRoleArn",
        ),
    ];
    for (what, values, key) in cases {
        match try_render_values(what, values) {
            Ok(r) => panic!("{what} was accepted:\n{values}\n{}", r.dump()),
            Err((code, err)) => {
                assert_eq!(code, EXIT_VALUES, "{what}: not a schema error:\n{err}");
                assert!(
                    err.contains(key),
                    "{what}: the error does not name {key}:\n{err}"
                );
            }
        }
    }
    for good in [
        "serviceAccount:\n  create: true\n",
        "sharding:\n  enabled: true\n  shards: 1\n",
        "logFormat: text\n",
        "image:\n  tag: \"1.0\"\n",
        "sidecar:\n  enabled: true\n  podSelector: {app: x}\n",
        "serviceAccount:\n  irsaRoleArn: arn:aws-us-gov:iam::123456789012:role/x\n",
    ] {
        if let Err((code, err)) = try_render_values("good", good) {
            panic!("good values refused (exit {code}):\n{good}\n{err}");
        }
    }
}

/// image.tag may be a number (`--set image.tag=2`): the image reference gets it as a string,
/// whole numbers without a fraction or an exponent.
#[test]
fn numeric_image_tags_render_as_strings() {
    let repository = "ghcr.io/apigateway-exporter/apigateway-exporter";
    let app_version = cargo_package_field("version");
    for (values, tag) in [
        ("image:\n  tag: 2\n", "2"),
        ("image:\n  tag: 1.5\n", "1.5"),
        ("image:\n  tag: 20240101\n", "20240101"),
        ("image:\n  tag: \"1.0\"\n", "1.0"),
        // YAML's 1.0 is the number 1: the reason values.yaml says to quote decimals.
        ("image:\n  tag: 1.0\n", "1"),
        ("image:\n  tag: \"\"\n", app_version.as_str()),
    ] {
        let r = render_values("numeric tag", values);
        let deployments = r.of_kind("Deployment");
        assert_eq!(deployments.len(), 1, "{values}");
        let image = str_of(&exporter_of(&deployments[0])["image"], "image");
        assert_eq!(image, format!("{repository}:{tag}"), "{values}");
    }
}

/// Combinations the schema cannot express fail the render with a message naming the values.
#[test]
fn impossible_combinations_fail_the_render() {
    let cases = [
        (
            "sharding:\n  enabled: true\nsidecar:\n  enabled: true\n  podSelector: {app: x}\n",
            "sidecar.enabled",
        ),
        ("config:\n  shard: {index: 0, total: 2}\n", "config.shard"),
        (
            "serviceMonitor: {enabled: true}\npodMonitor: {enabled: true}\n",
            "podMonitor.enabled",
        ),
        (
            "sidecar:\n  enabled: true\n  podSelector: {app: x}\nserviceMonitor: {enabled: true}\n",
            "serviceMonitor.enabled",
        ),
        ("firehose: {enabled: true}\n", "config.stream.enabled"),
        (
            "sharding: {enabled: true, shards: 2}\nconfig:\n  stream: {enabled: true, access_key: x}\nfirehose: {enabled: true}\n",
            "sharding.enabled",
        ),
        (
            "extraArgs: [--web.listen-address=:80]\n",
            "--web.listen-address",
        ),
        (
            "serviceAccount:\n  create: false\n  irsaRoleArn: arn:aws:iam::123456789012:role/x\n",
            "serviceAccount.irsaRoleArn",
        ),
        (
            "webConfig:\n  basicAuth: {enabled: true}\n",
            "webConfig.basicAuth.users",
        ),
        (
            "webConfig:\n  existingSecret: w\n  basicAuth: {enabled: true}\nserviceMonitor: {enabled: true}\n",
            "webConfig.scrape.basicAuthSecret",
        ),
    ];
    for (values, key) in cases {
        match try_render_values("impossible", values) {
            Ok(r) => panic!("rendered:\n{values}\n{}", r.dump()),
            Err((code, err)) => {
                assert_eq!(code, EXIT_RENDER, "{values}: {err}");
                assert!(
                    err.contains(key),
                    "{values}: the error does not name {key}:\n{err}"
                );
            }
        }
    }
}
