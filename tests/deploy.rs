//! Deployment artefacts: Dockerfile, .dockerignore, deploy/kubernetes, deploy/iam-policy.json
//! and the scrape config in docs/deploy.md.
//!
//! Real tools, no skipping: kubernetes-validate (`APIGW_TEST_KUBERNETES_VALIDATE`), hadolint
//! (`APIGW_TEST_HADOLINT`) and promtool (`APIGW_TEST_PROMTOOL`); `scripts/setup-tools.sh`
//! installs them and `eval "$(scripts/emulators.sh env)"` exports the variables. The real
//! exporter binary answers the probe paths and checks the ConfigMap's config.
//!
//! No Docker engine and no kustomize run here: the image build is not run (the Dockerfile is
//! linted and its build step compared with the release build), and the kustomization is
//! "rendered" by reading its resource list (it uses no transformers; the test refuses any).
//! Prometheus Operator resources are CRDs that kubernetes-validate has no schema for: they
//! are checked structurally and against the Service / pod they select.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::manifests::{
    CONFIG_FILE_ARG, HEALTHY, Manifest, READY, aws_unreachable, cargo_package_field,
    check_allowed_keys, check_scrape_target, describe, duration_secs, exporter_containers,
    kubernetes_validate, label_map, named_port, read, repo, run, seq_of, str_of, tool, yaml_docs,
};
use common::{KillOnDrop, free_port};
use yaml_serde::Value;

const BIN: &str = env!("CARGO_BIN_EXE_apigateway-exporter");
const CONFIG_DIR: &str = "/etc/apigateway-exporter";
/// The only IAM actions the exporter may be granted.
const ALLOWED_ACTIONS: [&str; 3] = [
    "cloudwatch:GetMetricData",
    "cloudwatch:ListMetrics",
    "apigateway:GET",
];
/// The only API Gateway resources `apigateway:GET` may cover: the account's settings
/// (throttle limits), API / stage discovery, and the methods, routes and integrations that
/// carry integration timeouts.
const ALLOWED_APIGATEWAY_RESOURCES: [&str; 9] = [
    "arn:aws:apigateway:*::/account",
    "arn:aws:apigateway:*::/usageplans",
    "arn:aws:apigateway:*::/restapis",
    "arn:aws:apigateway:*::/restapis/*/stages",
    "arn:aws:apigateway:*::/restapis/*/resources",
    "arn:aws:apigateway:*::/apis",
    "arn:aws:apigateway:*::/apis/*/stages",
    "arn:aws:apigateway:*::/apis/*/routes",
    "arn:aws:apigateway:*::/apis/*/integrations",
];

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

fn k8s_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// Every manifest file of deploy/kubernetes (all `*.yaml` but kustomization.yaml).
fn manifest_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(k8s_dir())
        .expect("deploy/kubernetes exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| (n.ends_with(".yaml") || n.ends_with(".yml")) && n != "kustomization.yaml")
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/kubernetes");
    files
}

fn load_file(file: &str) -> Vec<Manifest> {
    let docs = yaml_docs(&read(&k8s_dir().join(file)), file);
    assert!(!docs.is_empty(), "{file}: no YAML document");
    docs.into_iter()
        .map(|doc| Manifest {
            file: file.to_string(),
            doc,
        })
        .collect()
}

fn load_all() -> Vec<Manifest> {
    manifest_files().iter().flat_map(|f| load_file(f)).collect()
}

fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    manifests
        .iter()
        .find(|m| m.kind() == kind && m.name() == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in deploy/kubernetes"))
}

/// (manifest, pod spec, exporter container) for every exporter container in deploy/.
fn all_exporter_containers(manifests: &[Manifest]) -> Vec<(&Manifest, &Value, &Value)> {
    let mut out = Vec::new();
    for m in manifests {
        if let Some(pod) = m.pod_spec() {
            for c in exporter_containers(pod) {
                out.push((m, pod, c));
            }
        }
    }
    // Both variants must be present, or the checks below would pass on nothing.
    let files: BTreeSet<&str> = out.iter().map(|(m, _, _)| m.file.as_str()).collect();
    for expected in ["deployment.yaml", "sidecar-deployment.yaml"] {
        assert!(
            files.contains(expected),
            "{expected} has no apigateway-exporter container (found them in {files:?})"
        );
    }
    out
}

fn container_name(c: &Value) -> &str {
    str_of(&c["name"], "container name")
}

/// The default of `--web.listen-address`, from the binary's own `--help`.
fn default_listen_port() -> u16 {
    let out = run(Command::new(BIN).arg("--help"));
    assert!(out.status.success(), "--help failed: {}", describe(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    let line = help
        .lines()
        .find(|l| l.contains("--web.listen-address"))
        .unwrap_or_else(|| panic!("--help does not mention --web.listen-address:\n{help}"));
    let default = line
        .split("[default: ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no [default: ...] on the --web.listen-address line: {line}"));
    let port = default
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("default listen address without a port: {default}"));
    assert_eq!(port, 9743, "the documented default port is 9743 (README)");
    port
}

// ---------------------------------------------------------------------------------------
// kubernetes-validate
// ---------------------------------------------------------------------------------------

#[test]
fn kubernetes_manifests_validate_strictly() {
    let mut core = Vec::new();
    for file in manifest_files() {
        let manifests = load_file(&file);
        let mut docs = Vec::new();
        for m in &manifests {
            if m.is_crd() {
                // Checked in prometheus_operator_resources_are_well_formed.
                assert!(
                    manifests.iter().all(Manifest::is_crd),
                    "{file}: keep CRD resources in files of their own"
                );
            } else {
                docs.push(m.doc.clone());
            }
        }
        if !docs.is_empty() {
            core.push((file, docs));
        }
    }
    let names: Vec<&str> = core.iter().map(|(f, _)| f.as_str()).collect();
    for expected in [
        "serviceaccount.yaml",
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "sidecar-deployment.yaml",
    ] {
        assert!(names.contains(&expected), "{expected} was not validated");
    }
    if let Err(e) = kubernetes_validate(&k8s_dir(), &core) {
        panic!("{e}");
    }
}

/// The validator setup above must be able to fail: an unknown field (needs --strict) and an
/// unknown kind (kubernetes-validate only warns) are both rejected.
#[test]
fn kubernetes_validation_rejects_unknown_fields_and_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let good = load_file("deployment.yaml").remove(0).doc;

    let mut unknown_field = good.clone();
    unknown_field["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] =
        Value::String("Always".into());
    let mut unknown_kind = good.clone();
    unknown_kind["kind"] = Value::String("Deploymnt".into());

    for (file, doc) in [
        ("unknown-field.yaml", unknown_field),
        ("unknown-kind.yaml", unknown_kind),
    ] {
        std::fs::write(dir.path().join(file), yaml_serde::to_string(&doc).unwrap()).unwrap();
        let res = kubernetes_validate(dir.path(), &[(file.to_string(), vec![doc])]);
        assert!(res.is_err(), "{file} passed validation: {res:?}");
    }
    std::fs::write(
        dir.path().join("good.yaml"),
        yaml_serde::to_string(&good).unwrap(),
    )
    .unwrap();
    if let Err(e) = kubernetes_validate(dir.path(), &[("good.yaml".into(), vec![good])]) {
        panic!("the unmodified deployment failed: {e}");
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus Operator resources (CRDs)
// ---------------------------------------------------------------------------------------

fn check_metadata(m: &Manifest) {
    let what = format!("{} {}", m.file, m.kind());
    check_allowed_keys(&m.doc, &["apiVersion", "kind", "metadata", "spec"], &what);
    assert_eq!(m.api_version(), "monitoring.coreos.com/v1", "{what}");
    assert!(!m.name().is_empty(), "{what}: empty metadata.name");
    check_allowed_keys(
        &m.doc["metadata"],
        &["name", "namespace", "labels", "annotations"],
        &format!("{what} metadata"),
    );
}

/// One scrape endpoint of a ServiceMonitor / PodMonitor: named port, /metrics, durations.
fn check_scrape_endpoint(ep: &Value, ports: &BTreeSet<String>, what: &str) {
    check_allowed_keys(
        ep,
        &[
            "port",
            "path",
            "interval",
            "scrapeTimeout",
            "scheme",
            "honorLabels",
            "relabelings",
            "metricRelabelings",
            "tlsConfig",
            "basicAuth",
        ],
        what,
    );
    // HTTPS needs the CA to trust; basic auth needs both halves of the credentials.
    if ep["scheme"].as_str() == Some("https") {
        assert!(
            ep["tlsConfig"]["ca"].is_mapping(),
            "{what}: scheme https without tlsConfig.ca"
        );
    }
    if !ep["basicAuth"].is_null() {
        for half in ["username", "password"] {
            assert!(
                ep["basicAuth"][half]["name"].is_string()
                    && ep["basicAuth"][half]["key"].is_string(),
                "{what}: basicAuth.{half} needs a Secret name and key"
            );
        }
    }
    check_scrape_target(ep, ports, what);
    for key in ["interval", "scrapeTimeout"] {
        if let Some(d) = ep[key].as_str() {
            let secs = duration_secs(d, key, what);
            assert!(secs > 0, "{what}: {key} is zero");
        }
    }
    if let (Some(i), Some(t)) = (ep["interval"].as_str(), ep["scrapeTimeout"].as_str()) {
        let n = |s: &str| s.trim_end_matches('s').parse::<u64>().unwrap();
        assert!(n(t) <= n(i), "{what}: scrapeTimeout exceeds interval");
    }
}

fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>, what: &str) -> bool {
    check_allowed_keys(selector, &["matchLabels"], &format!("{what} selector"));
    let want = label_map(&selector["matchLabels"]);
    assert!(
        !want.is_empty(),
        "{what}: empty selector selects everything"
    );
    want.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn check_service_monitor(m: &Manifest, all: &[Manifest]) {
    check_metadata(m);
    let what = format!("{} ServiceMonitor", m.file);
    let spec = &m.doc["spec"];
    check_allowed_keys(
        spec,
        &["selector", "endpoints", "namespaceSelector", "jobLabel"],
        &what,
    );
    let services: Vec<&Manifest> = all
        .iter()
        .filter(|s| {
            s.kind() == "Service"
                && selector_matches(
                    &spec["selector"],
                    &label_map(&s.doc["metadata"]["labels"]),
                    &what,
                )
        })
        .collect();
    assert_eq!(
        services.len(),
        1,
        "{what}: selects {} Services, want exactly the exporter's",
        services.len()
    );
    let ports: BTreeSet<String> = seq_of(&services[0].doc["spec"]["ports"], "Service ports")
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    let endpoints = seq_of(&spec["endpoints"], &format!("{what}: endpoints"));
    assert!(!endpoints.is_empty(), "{what}: no endpoints");
    for (i, ep) in endpoints.iter().enumerate() {
        check_scrape_endpoint(ep, &ports, &format!("{what} endpoints[{i}]"));
    }
}

fn check_pod_monitor(m: &Manifest, all: &[Manifest]) {
    check_metadata(m);
    let what = format!("{} PodMonitor", m.file);
    let spec = &m.doc["spec"];
    check_allowed_keys(
        spec,
        &[
            "selector",
            "podMetricsEndpoints",
            "namespaceSelector",
            "jobLabel",
        ],
        &what,
    );
    let pods: Vec<&Manifest> = all
        .iter()
        .filter(|w| {
            w.pod_spec().is_some()
                && selector_matches(
                    &spec["selector"],
                    &label_map(&w.doc["spec"]["template"]["metadata"]["labels"]),
                    &what,
                )
        })
        .collect();
    assert_eq!(
        pods.len(),
        1,
        "{what}: selects {} workloads, want 1",
        pods.len()
    );
    let pod = pods[0].pod_spec().unwrap();
    assert!(
        !exporter_containers(pod).is_empty(),
        "{what}: selects {}, which has no exporter container",
        pods[0].file
    );
    // Only the exporter's ports: a PodMonitor on the application's port scrapes the app.
    let ports: BTreeSet<String> = exporter_containers(pod)
        .iter()
        .flat_map(|c| seq_of(&c["ports"], "ports").iter())
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    let endpoints = seq_of(&spec["podMetricsEndpoints"], &format!("{what}: endpoints"));
    assert!(!endpoints.is_empty(), "{what}: no podMetricsEndpoints");
    for (i, ep) in endpoints.iter().enumerate() {
        check_scrape_endpoint(ep, &ports, &format!("{what} podMetricsEndpoints[{i}]"));
    }
}

fn check_prometheus_rule(m: &Manifest) {
    check_metadata(m);
    let what = format!("{} PrometheusRule", m.file);
    check_allowed_keys(&m.doc["spec"], &["groups"], &what);
    let groups = seq_of(&m.doc["spec"]["groups"], &format!("{what}: groups"));
    assert!(!groups.is_empty(), "{what}: no groups");
    for g in groups {
        let name = str_of(&g["name"], &format!("{what}: group name"));
        let rules = seq_of(&g["rules"], &format!("{what} {name}: rules"));
        assert!(!rules.is_empty(), "{what} {name}: no rules");
        for r in rules {
            str_of(&r["expr"], &format!("{what} {name}: expr"));
            assert!(
                r["alert"].is_string() != r["record"].is_string(),
                "{what} {name}: each rule is exactly one of alert / record: {r:?}"
            );
        }
    }
}

#[test]
fn prometheus_operator_resources_are_well_formed() {
    let all = load_all();
    let mut seen = BTreeSet::new();
    for m in all.iter().filter(|m| m.is_crd()) {
        match m.kind() {
            "ServiceMonitor" => check_service_monitor(m, &all),
            "PodMonitor" => check_pod_monitor(m, &all),
            "PrometheusRule" => check_prometheus_rule(m),
            other => panic!(
                "{}: no structural check for {} {other}; add one to tests/deploy.rs",
                m.file,
                m.api_version()
            ),
        }
        seen.insert(m.kind().to_string());
    }
    for kind in ["ServiceMonitor", "PodMonitor"] {
        assert!(seen.contains(kind), "no {kind} in deploy/kubernetes");
    }
}

// ---------------------------------------------------------------------------------------
// kustomization
// ---------------------------------------------------------------------------------------

/// Without a kustomize binary, the kustomization is rendered by reading its resource list;
/// the test therefore refuses any feature it does not model (patches, generators, ...).
#[test]
fn kustomization_renders_the_standalone_variant() {
    let text = read(&k8s_dir().join("kustomization.yaml"));
    let k = yaml_serde::from_str::<Value>(&text).expect("kustomization.yaml parses");
    assert_eq!(
        k["apiVersion"].as_str(),
        Some("kustomize.config.k8s.io/v1beta1")
    );
    assert_eq!(k["kind"].as_str(), Some("Kustomization"));
    check_allowed_keys(
        &k,
        &["apiVersion", "kind", "resources", "namespace", "images"],
        "kustomization.yaml (this test renders only these keys)",
    );

    let mut rendered: Vec<Manifest> = Vec::new();
    let mut listed = BTreeSet::new();
    for r in seq_of(&k["resources"], "kustomization resources") {
        let file = str_of(r, "resource");
        assert!(
            !file.contains('/') && !file.starts_with('.'),
            "{file}: resources are files of deploy/kubernetes"
        );
        assert!(
            k8s_dir().join(file).is_file(),
            "kustomization.yaml lists {file}, which does not exist"
        );
        assert!(listed.insert(file.to_string()), "{file} listed twice");
        rendered.extend(load_file(file));
    }

    // Every manifest is either rendered or named as an alternative in a comment.
    let mentioned: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .map(|w| w.trim_matches(|c| matches!(c, ',' | ';' | ':' | '(' | ')' | '`')))
        .collect();
    for file in manifest_files() {
        assert!(
            listed.contains(&file) || mentioned.contains(file.as_str()),
            "{file} is neither listed in kustomization.yaml nor mentioned as an alternative"
        );
    }

    // No resource twice, and the rendered set validates.
    let mut ids = BTreeSet::new();
    for m in &rendered {
        assert!(
            ids.insert((m.kind().to_string(), m.name().to_string())),
            "{} {} rendered twice",
            m.kind(),
            m.name()
        );
    }
    let core: Vec<(String, Vec<Value>)> = listed
        .iter()
        .map(|f| {
            let docs: Vec<Value> = load_file(f)
                .into_iter()
                .filter(|m| !m.is_crd())
                .map(|m| m.doc)
                .collect();
            (f.clone(), docs)
        })
        .filter(|(_, d)| !d.is_empty())
        .collect();
    if let Err(e) = kubernetes_validate(&k8s_dir(), &core) {
        panic!("rendered kustomization: {e}");
    }

    // Exactly one exporter, the standalone one with one replica: each exporter polls and
    // bills CloudWatch on its own.
    let exporters: Vec<&Manifest> = rendered
        .iter()
        .filter(|m| {
            m.pod_spec()
                .is_some_and(|p| !exporter_containers(p).is_empty())
        })
        .collect();
    assert_eq!(
        exporters
            .iter()
            .map(|m| m.file.as_str())
            .collect::<Vec<_>>(),
        ["deployment.yaml"],
        "the default renders exactly the standalone exporter"
    );
    let deployment = exporters[0];
    let pod = deployment.pod_spec().unwrap();

    // References resolve inside the rendered set.
    let sa = str_of(&pod["serviceAccountName"], "serviceAccountName");
    find(&rendered, "ServiceAccount", sa);
    for v in seq_of(&pod["volumes"], "volumes") {
        if let Some(cm) = v["configMap"]["name"].as_str() {
            find(&rendered, "ConfigMap", cm);
        }
    }
    let pod_labels = label_map(&deployment.doc["spec"]["template"]["metadata"]["labels"]);
    let services: Vec<&Manifest> = rendered.iter().filter(|m| m.kind() == "Service").collect();
    assert_eq!(services.len(), 1, "one Service in the default");
    let selector = label_map(&services[0].doc["spec"]["selector"]);
    assert!(
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "service.yaml's selector {selector:?} does not select the exporter pod {pod_labels:?}"
    );
    let exporter = exporter_containers(pod)[0];
    for p in seq_of(&services[0].doc["spec"]["ports"], "Service ports") {
        let target = &p["targetPort"];
        let ok = match target {
            Value::String(name) => named_port(exporter, name).is_some(),
            Value::Number(n) => named_port(exporter, "metrics") == n.as_i64(),
            _ => false,
        };
        assert!(ok, "Service targetPort {target:?} is not an exporter port");
    }
    assert!(
        rendered.iter().any(|m| m.kind() == "ServiceMonitor"),
        "the default scrapes through a ServiceMonitor"
    );
    assert!(
        !listed.contains("sidecar-deployment.yaml") && !listed.contains("podmonitor.yaml"),
        "the sidecar variant is an alternative, not part of the default"
    );
}

// ---------------------------------------------------------------------------------------
// workload invariants
// ---------------------------------------------------------------------------------------

/// The value of a security setting: the container's, else the pod's (for the fields the
/// pod-level securityContext also sets).
fn effective<'a>(pod: &'a Value, c: &'a Value, key: &str) -> &'a Value {
    let own = &c["securityContext"][key];
    if own.is_null() {
        &pod["securityContext"][key]
    } else {
        own
    }
}

fn probe(c: &Value, kind: &str) -> Option<(String, Value)> {
    let p = &c[kind];
    if p.is_null() {
        return None;
    }
    let what = format!("{} {kind}", container_name(c));
    let path = str_of(&p["httpGet"]["path"], &format!("{what}: httpGet.path")).to_string();
    Some((path, p["httpGet"]["port"].clone()))
}

#[test]
fn exporter_containers_are_locked_down() {
    let all = load_all();
    let dockerfile_uid = dockerfile_user().0;
    for (m, pod, c) in all_exporter_containers(&all) {
        let what = format!("{} container {}", m.file, container_name(c));
        assert_eq!(
            effective(pod, c, "runAsNonRoot").as_bool(),
            Some(true),
            "{what}: runAsNonRoot"
        );
        assert_eq!(
            effective(pod, c, "runAsUser").as_u64(),
            Some(dockerfile_uid.into()),
            "{what}: runAsUser is the image's USER"
        );
        let sc = &c["securityContext"];
        assert_eq!(
            sc["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{what}: readOnlyRootFilesystem"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{what}: allowPrivilegeEscalation"
        );
        assert_ne!(sc["privileged"].as_bool(), Some(true), "{what}: privileged");
        let drop: Vec<&str> = sc["capabilities"]["drop"]
            .as_sequence()
            .map(|s| s.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(drop.contains(&"ALL"), "{what}: capabilities.drop lacks ALL");
        assert!(
            sc["capabilities"]["add"]
                .as_sequence()
                .is_none_or(Vec::is_empty),
            "{what}: adds capabilities"
        );
        assert_eq!(
            effective(pod, c, "seccompProfile")["type"].as_str(),
            Some("RuntimeDefault"),
            "{what}: seccompProfile"
        );
        for host in ["hostNetwork", "hostPID", "hostIPC"] {
            assert_ne!(pod[host].as_bool(), Some(true), "{what}: {host}");
        }

        // Pinned image, sized, configured from the ConfigMap.
        let image = str_of(&c["image"], &format!("{what}: image"));
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or_default();
        assert!(
            !tag.is_empty() && !tag.contains('/') && tag != "latest",
            "{what}: image {image} needs a pinned tag"
        );
        for (section, key) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
        ] {
            assert!(
                c["resources"][section][key].is_string(),
                "{what}: resources.{section}.{key} missing"
            );
        }
        let args: Vec<&str> = seq_of(&c["args"], &format!("{what}: args"))
            .iter()
            .map(|a| str_of(a, "arg"))
            .collect();
        assert!(args.contains(&CONFIG_FILE_ARG), "{what}: args {args:?}");
        assert!(args.contains(&"--log.format=json"), "{what}: args {args:?}");
        let mount = seq_of(&c["volumeMounts"], &format!("{what}: volumeMounts"))
            .iter()
            .find(|v| v["mountPath"].as_str() == Some(CONFIG_DIR))
            .unwrap_or_else(|| panic!("{what}: nothing mounted at {CONFIG_DIR}"));
        assert_eq!(
            mount["readOnly"].as_bool(),
            Some(true),
            "{what}: config mount"
        );
        let volume = seq_of(&pod["volumes"], "volumes")
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("{what}: no volume {:?}", mount["name"]));
        let cm = str_of(&volume["configMap"]["name"], &format!("{what}: configMap"));
        assert!(
            find(&all, "ConfigMap", cm).doc["data"]["config.yaml"].is_string(),
            "{what}: ConfigMap {cm} has no config.yaml"
        );
        let sa = str_of(
            &pod["serviceAccountName"],
            &format!("{what}: serviceAccountName"),
        );
        let sa = find(&all, "ServiceAccount", sa);
        let role = str_of(
            &sa.doc["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
            "IRSA annotation",
        );
        let account = role
            .strip_prefix("arn:aws:iam::")
            .and_then(|r| r.split_once(":role/"))
            .map(|(acct, _)| acct);
        assert!(
            account.is_some_and(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit())),
            "IRSA annotation is not a role ARN: {role}"
        );

        // One replica: every replica polls and bills CloudWatch.
        assert_eq!(
            m.doc["spec"]["replicas"].as_i64(),
            Some(1),
            "{what}: replicas"
        );

        // Probes on the named port; the sidecar has no readiness probe (its 503 would take
        // the application's pod out of its Service).
        let sidecar = seq_of(&pod["containers"], "containers").len() > 1;
        let liveness = probe(c, "livenessProbe").unwrap_or_else(|| panic!("{what}: liveness"));
        assert_eq!(liveness.0, HEALTHY, "{what}: livenessProbe path");
        let mut probes = vec![liveness];
        if sidecar {
            assert!(
                probe(c, "readinessProbe").is_none(),
                "{what}: a sidecar's readinessProbe would gate the application pod"
            );
            let startup = probe(c, "startupProbe").unwrap_or_else(|| panic!("{what}: startup"));
            assert_eq!(startup.0, HEALTHY, "{what}: startupProbe path");
            probes.push(startup);
        } else {
            let readiness =
                probe(c, "readinessProbe").unwrap_or_else(|| panic!("{what}: readiness"));
            assert_eq!(readiness.0, READY, "{what}: readinessProbe path");
            probes.push(readiness);
        }
        for (_, port) in probes {
            assert_eq!(
                port.as_str(),
                Some("metrics"),
                "{what}: probes use the named port"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// the real binary
// ---------------------------------------------------------------------------------------

/// The exporter, killed on drop.
struct Exporter {
    child: KillOnDrop,
    log: PathBuf,
}

/// GET over plain HTTP/1.1; returns the status code.
fn http_get(port: u16, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    s.flush()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let _ = s.shutdown(Shutdown::Both);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {resp:?}")))?;
    Ok(status)
}

fn start_demo(dir: &Path) -> (Exporter, u16) {
    let port = free_port();
    let log = dir.join("exporter.log");
    let child = Command::new(BIN)
        .args(["--demo", &format!("--web.listen-address=127.0.0.1:{port}")])
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the exporter");
    let mut exporter = Exporter {
        child: KillOnDrop(child),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http_get(port, HEALTHY).is_ok() {
            return (exporter, port);
        }
        if let Some(status) = exporter.child.try_wait().unwrap() {
            panic!(
                "the exporter exited ({status}) before serving:\n{}",
                read(&exporter.log)
            );
        }
        assert!(
            Instant::now() < deadline,
            "the exporter did not serve {HEALTHY} on port {port} within 30s:\n{}",
            read(&exporter.log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn probe_and_scrape_paths_are_served_by_the_binary() {
    let all = load_all();
    let mut paths = BTreeSet::new();
    for (_, _, c) in all_exporter_containers(&all) {
        for kind in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if let Some((path, _)) = probe(c, kind) {
                paths.insert(path);
            }
        }
    }
    for m in all.iter().filter(|m| m.is_crd()) {
        for key in ["endpoints", "podMetricsEndpoints"] {
            for ep in m.doc["spec"][key].as_sequence().into_iter().flatten() {
                paths.insert(str_of(&ep["path"], "scrape path").to_string());
            }
        }
    }
    assert_eq!(
        paths,
        BTreeSet::from([HEALTHY.to_string(), READY.to_string(), "/metrics".into()]),
        "the manifests use exactly the exporter's probe and scrape paths"
    );

    let dir = tempfile::tempdir().unwrap();
    let (exporter, port) = start_demo(dir.path());
    for path in &paths {
        let status = http_get(port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let ok: &[u16] = if path == READY { &[200, 503] } else { &[200] };
        assert!(
            ok.contains(&status),
            "GET {path} answered {status}, want one of {ok:?}\n{}",
            read(&exporter.log)
        );
    }
    let status = http_get(port, "/-/no-such-probe").unwrap();
    assert_eq!(status, 404, "an unknown path must not look healthy");
}

#[test]
fn container_port_is_the_default_listen_port() {
    let port = default_listen_port();
    let all = load_all();
    for (m, _, c) in all_exporter_containers(&all) {
        let what = format!("{} container {}", m.file, container_name(c));
        assert_eq!(
            named_port(c, "metrics"),
            Some(i64::from(port)),
            "{what}: containerPort of the `metrics` port"
        );
        let args = seq_of(&c["args"], "args");
        assert!(
            !args.iter().any(|a| a
                .as_str()
                .unwrap_or_default()
                .starts_with("--web.listen-address")),
            "{what}: overrides --web.listen-address; keep the default so the port matches"
        );
    }
    let service = find(&all, "Service", "apigateway-exporter");
    for p in seq_of(&service.doc["spec"]["ports"], "Service ports") {
        assert_eq!(p["port"].as_i64(), Some(i64::from(port)), "Service port");
    }
    let expose = dockerfile_final_stage()
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .map(|(_, rest)| rest.clone())
        .collect::<Vec<_>>();
    assert_eq!(expose, [port.to_string()], "Dockerfile EXPOSE");
}

/// The ConfigMap's config.yaml, with each exporter container's own arguments, passes
/// `check-config` (exit 0) even though AWS is unreachable; a broken copy exits 2.
#[test]
fn configmap_config_passes_check_config() {
    let all = load_all();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (m, pod, c) in all_exporter_containers(&all) {
        let mount = seq_of(&c["volumeMounts"], "volumeMounts")
            .iter()
            .find(|v| v["mountPath"].as_str() == Some(CONFIG_DIR))
            .expect("config mount");
        let volume = seq_of(&pod["volumes"], "volumes")
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("config volume");
        let cm = find(
            &all,
            "ConfigMap",
            str_of(&volume["configMap"]["name"], "cm"),
        );
        let config = str_of(&cm.doc["data"]["config.yaml"], "config.yaml");

        let parsed = yaml_serde::from_str::<Value>(config).expect("config.yaml parses");
        let targets = seq_of(&parsed["targets"], "config targets");
        assert_eq!(targets.len(), 1, "one target in the example config");
        let regions: Vec<&str> = seq_of(&targets[0]["regions"], "regions")
            .iter()
            .map(|r| str_of(r, "region"))
            .collect();
        assert_eq!(regions, ["us-east-1"]);

        let path = dir.path().join(format!("{}-config.yaml", m.name()));
        std::fs::write(&path, config).unwrap();
        let mut bad = config.to_string();
        bad.push_str("no_such_key: true\n");
        let bad_path = dir.path().join(format!("{}-broken.yaml", m.name()));
        std::fs::write(&bad_path, bad).unwrap();

        for (file, want) in [(&path, 0), (&bad_path, 2)] {
            let args: Vec<String> = seq_of(&c["args"], "args")
                .iter()
                .map(|a| {
                    let a = str_of(a, "arg");
                    if a == CONFIG_FILE_ARG {
                        format!("--config.file={}", file.display())
                    } else {
                        a.to_string()
                    }
                })
                .collect();
            let out = run(aws_unreachable(
                Command::new(BIN).arg("check-config").args(&args),
            ));
            assert_eq!(
                out.status.code(),
                Some(want),
                "check-config {args:?} (AWS unreachable):\n{}",
                describe(&out)
            );
            if want == 0 {
                assert!(
                    String::from_utf8_lossy(&out.stdout).contains(": valid"),
                    "check-config did not report the file valid:\n{}",
                    describe(&out)
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 2, "both variants' configs are checked");
}

// ---------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------

/// Instructions of the Dockerfile as (INSTRUCTION, arguments): comments dropped,
/// continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text = read(&repo().join("Dockerfile"));
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (instr, rest) = current
            .split_once(char::is_whitespace)
            .unwrap_or((current.as_str(), ""));
        out.push((instr.to_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    assert!(current.is_empty(), "Dockerfile ends inside a continuation");
    out
}

/// Instructions per stage, each stage starting with its FROM.
fn dockerfile_stages() -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for (i, rest) in dockerfile() {
        if i == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .unwrap_or_else(|| panic!("Dockerfile: {i} before the first FROM"))
            .push((i, rest));
    }
    stages
}

fn dockerfile_final_stage() -> Vec<(String, String)> {
    dockerfile_stages().pop().expect("a stage")
}

/// The final stage's USER as (uid, gid).
fn dockerfile_user() -> (u32, Option<u32>) {
    let users: Vec<String> = dockerfile_final_stage()
        .into_iter()
        .filter(|(i, _)| i == "USER")
        .map(|(_, r)| r)
        .collect();
    let last = users.last().expect("the final stage sets USER");
    let (uid, gid) = match last.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (last.as_str(), None),
    };
    let num = |s: &str| -> u32 {
        s.parse()
            .unwrap_or_else(|_| panic!("USER {last}: must be numeric for runAsNonRoot"))
    };
    let uid = num(uid);
    assert_ne!(uid, 0, "USER must not be root");
    (uid, gid.map(num))
}

/// `key="value"` pairs of a LABEL instruction.
fn label_pairs(rest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| !c.is_whitespace()).collect();
        }
        out.push((key.trim().to_string(), value));
    }
    out
}

#[test]
fn dockerfile_passes_hadolint() {
    let hadolint = tool("APIGW_TEST_HADOLINT");
    let dir = tempfile::tempdir().unwrap();
    // An empty config, so no user or repo config can silence rules.
    let config = dir.path().join("hadolint.yaml");
    std::fs::write(&config, "{}\n").unwrap();
    let lint = |dockerfile: &Path| {
        run(Command::new(&hadolint)
            .arg("--no-color")
            .arg("--config")
            .arg(&config)
            .args(["--failure-threshold", "info"])
            .args([
                "--require-label",
                "org.opencontainers.image.title:text",
                "--require-label",
                "org.opencontainers.image.description:text",
                "--require-label",
                "org.opencontainers.image.source:url",
                "--require-label",
                "org.opencontainers.image.licenses:spdx",
                "--require-label",
                "org.opencontainers.image.version:text",
            ])
            .arg(dockerfile))
    };
    let out = lint(&repo().join("Dockerfile"));
    assert!(
        out.status.success(),
        "hadolint Dockerfile:\n{}",
        describe(&out)
    );
    // The same invocation rejects a bad Dockerfile, so a pass above means something.
    let bad = dir.path().join("Dockerfile.bad");
    std::fs::write(&bad, "FROM debian\nRUN apt-get install curl\n").unwrap();
    let out = lint(&bad);
    assert!(
        !out.status.success(),
        "hadolint accepted a bad Dockerfile:\n{}",
        describe(&out)
    );
}

#[test]
fn dockerfile_builds_the_release_binary_and_runs_unprivileged() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 2, "multi-stage build");
    let (build, runtime) = (&stages[stages.len() - 2], &stages[stages.len() - 1]);

    // Build stage: official Rust image on bookworm (the glibc of distroless debian12).
    let from = &build[0].1;
    let (image, alias) = from
        .split_once(" AS ")
        .or_else(|| from.split_once(" as "))
        .unwrap_or_else(|| panic!("the build stage needs a name: FROM {from}"));
    let tag = image
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("build stage is not an official rust image: {image}"));
    let major = tag.split(['.', '-']).next().unwrap_or_default();
    assert!(major == "1", "rust image pins major 1: {image}");
    assert!(
        tag.ends_with("-bookworm"),
        "rust image on bookworm: {image}"
    );

    // Every cargo build is exactly the release build; the last one follows the sources.
    let runs: Vec<(usize, &String)> = build
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "RUN")
        .map(|(n, (_, r))| (n, r))
        .collect();
    let mut builds = Vec::new();
    for (n, script) in &runs {
        for cmd in script.split("&&") {
            let words: Vec<&str> = cmd
                .split_whitespace()
                .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                .collect();
            if words.first() == Some(&"cargo") && words.get(1) == Some(&"build") {
                assert_eq!(
                    words.join(" "),
                    "cargo build --release --locked",
                    "Dockerfile builds differently from the release build"
                );
                builds.push((*n, cmd.trim().to_string()));
            }
        }
    }
    let copy_src = build
        .iter()
        .position(|(i, r)| i == "COPY" && r.split_whitespace().next() == Some("src"))
        .expect("the build stage copies src");
    let (last_build, last_cmd) = builds.last().expect("a cargo build");
    assert!(
        *last_build > copy_src,
        "the final cargo build runs after COPY src"
    );
    assert!(
        builds.len() >= 2 && builds[0].0 < copy_src,
        "a dependency layer builds before the sources are copied"
    );

    // The revision reaches build.rs through the variable it reads, from a build ARG.
    assert!(
        read(&repo().join("build.rs")).contains("\"APIGW_EXPORTER_REVISION\""),
        "build.rs no longer reads APIGW_EXPORTER_REVISION"
    );
    let arg = last_cmd
        .split_whitespace()
        .find_map(|w| w.strip_prefix("APIGW_EXPORTER_REVISION="))
        .and_then(|v| v.trim_matches('"').strip_prefix("${"))
        .and_then(|v| v.strip_suffix('}'))
        .unwrap_or_else(|| panic!("the release build gets no APIGW_EXPORTER_REVISION: {last_cmd}"));
    assert!(
        build[..*last_build]
            .iter()
            .any(|(i, r)| i == "ARG" && r.split('=').next() == Some(arg)),
        "ARG {arg} is not declared before the release build"
    );

    // Runtime stage: distroless cc on Debian 12, the binary from the build stage.
    assert_eq!(
        runtime[0].1, "gcr.io/distroless/cc-debian12:nonroot",
        "runtime base"
    );
    assert!(
        runtime.iter().any(|(i, r)| i == "COPY"
            && r == &format!(
                "--from={alias} /src/target/release/apigateway-exporter /usr/local/bin/apigateway-exporter"
            )),
        "the runtime stage copies the release binary from stage {alias}"
    );
    assert!(
        build.iter().any(|(i, r)| i == "WORKDIR" && r == "/src"),
        "the build stage works in /src"
    );
    let (uid, gid) = dockerfile_user();
    assert_eq!((uid, gid), (65532, Some(65532)), "distroless nonroot user");
    let entrypoints: Vec<&String> = runtime
        .iter()
        .filter(|(i, _)| i == "ENTRYPOINT")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(
        entrypoints
            .last()
            .map(|e| yaml_serde::from_str::<Vec<String>>(e).unwrap()),
        Some(vec!["/usr/local/bin/apigateway-exporter".to_string()]),
        "exec-form ENTRYPOINT"
    );
    assert!(
        !runtime.iter().any(|(i, _)| i == "RUN"),
        "distroless has no shell: the runtime stage cannot RUN"
    );

    // OCI labels agree with Cargo.toml.
    let labels: BTreeMap<String, String> = runtime
        .iter()
        .filter(|(i, _)| i == "LABEL")
        .flat_map(|(_, r)| label_pairs(r))
        .collect();
    let want = [
        (
            "org.opencontainers.image.title",
            cargo_package_field("name"),
        ),
        (
            "org.opencontainers.image.description",
            cargo_package_field("description"),
        ),
        (
            "org.opencontainers.image.source",
            cargo_package_field("repository"),
        ),
        (
            "org.opencontainers.image.licenses",
            cargo_package_field("license"),
        ),
        ("org.opencontainers.image.version", "${VERSION}".to_string()),
    ];
    for (key, value) in want {
        assert_eq!(labels.get(key), Some(&value), "LABEL {key}");
    }
    assert!(
        runtime
            .iter()
            .any(|(i, r)| i == "ARG" && r.split('=').next() == Some("VERSION")),
        "the runtime stage declares ARG VERSION"
    );
}

/// A tiny .dockerignore matcher: `*` and `?` within a path segment, `**` across segments,
/// a pattern also covers everything below a matching directory, `!` re-includes.
fn glob(pattern: &[u8], path: &[u8]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(b'*'), _) if pattern.get(1) == Some(&b'*') => {
            let rest = pattern[2..].strip_prefix(b"/").unwrap_or(&pattern[2..]);
            (0..=path.len()).any(|i| glob(rest, &path[i..]))
        }
        (Some(b'*'), _) => {
            glob(&pattern[1..], path)
                || (path.first().is_some_and(|c| *c != b'/') && glob(pattern, &path[1..]))
        }
        (Some(b'?'), Some(c)) if *c != b'/' => glob(&pattern[1..], &path[1..]),
        (Some(p), Some(c)) if p == c => glob(&pattern[1..], &path[1..]),
        _ => false,
    }
}

fn docker_ignored(patterns: &[String], path: &str) -> bool {
    let mut ignored = false;
    for p in patterns {
        let (negate, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, p.as_str()),
        };
        let p = p.trim_start_matches('/').trim_end_matches('/');
        let hit = path
            .match_indices('/')
            .map(|(i, _)| &path[..i])
            .chain([path])
            .any(|prefix| glob(p.as_bytes(), prefix.as_bytes()));
        if hit {
            ignored = !negate;
        }
    }
    ignored
}

fn files_below(dir: &Path, base: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            files_below(&path, base, out);
        } else {
            out.push(
                path.strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

#[test]
fn docker_build_context_holds_what_the_build_copies() {
    let patterns: Vec<String> = read(&repo().join(".dockerignore"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    // The matcher itself.
    assert!(docker_ignored(&["**/*.log".into()], "a/b/c.log"));
    assert!(docker_ignored(&[".venv*".into()], ".venv-lint/bin/python"));
    assert!(!docker_ignored(
        &["src/*.rs".into(), "!src/main.rs".into()],
        "src/main.rs"
    ));

    for heavy in ["target/release/apigateway-exporter", ".git/HEAD"] {
        assert!(
            docker_ignored(&patterns, heavy),
            ".dockerignore lets {heavy} in"
        );
    }

    // Every COPY source (from the context) exists and is not ignored.
    let mut sources = Vec::new();
    for (i, rest) in dockerfile() {
        if i != "COPY" || rest.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = rest
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        sources.extend(words[..words.len() - 1].iter().map(|s| s.to_string()));
    }
    for must in ["Cargo.toml", "Cargo.lock", "build.rs", "src"] {
        assert!(
            sources.iter().any(|s| s == must),
            "the Dockerfile does not COPY {must}"
        );
    }
    for src in &sources {
        let path = repo().join(src);
        assert!(path.exists(), "COPY {src}: no such file in the repo");
        let mut files = Vec::new();
        if path.is_dir() {
            files_below(&path, &repo(), &mut files);
        } else {
            files.push(src.clone());
        }
        for f in files {
            assert!(
                !docker_ignored(&patterns, &f),
                ".dockerignore drops {f}, which the build copies"
            );
        }
    }

    // The dependency layer builds against stubs, from Cargo.toml and Cargo.lock alone: cargo
    // wants the file of every target Cargo.toml declares explicitly (a [[bench]] with
    // harness = false, a second [[bin]], ...), so that build fails unless the layer creates
    // a stub for each. The stubs of targets the image does not build stay for the final build,
    // which needs the files as much.
    let (created, removed) = dependency_layer_stubs();
    for stub in ["src/main.rs", "src/lib.rs"] {
        assert!(
            created.iter().any(|c| c == stub),
            "the dependency layer does not create {stub}"
        );
        assert!(
            repo().join(stub).is_file(),
            "{stub} is gone: update the Dockerfile's stubs"
        );
    }
    let declared = declared_targets(&read(&repo().join("Cargo.toml")));
    for (kind, path) in &declared {
        assert!(
            repo().join(path).is_file(),
            "Cargo.toml declares [[{kind}]] at {path}, which does not exist"
        );
        assert!(
            created.iter().any(|c| c == path),
            "Cargo.toml declares [[{kind}]] at {path}: the Dockerfile's dependency layer must \
             create a stub for it"
        );
        assert!(
            !removed
                .iter()
                .any(|r| path == r || path.starts_with(&format!("{r}/"))),
            "the dependency layer deletes the stub {path}, which the final build needs"
        );
    }
    // The parsers themselves.
    assert_eq!(
        declared_targets(
            "[package]\nname = \"x\"\n\n[[bench]]\nname = \"a\"\nharness = false\n\n\
             [[example]]\nname = \"b\"\npath = \"ex/b.rs\"\n[dependencies]\nname = \"1\"\n"
        ),
        [
            ("bench".to_string(), "benches/a.rs".to_string()),
            ("example".to_string(), "ex/b.rs".to_string())
        ]
    );
}

/// The explicitly declared targets of a Cargo.toml as (kind, file), with cargo's default
/// file for a target that names no `path`.
fn declared_targets(toml: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, Option<String>, Option<String>)> = None;
    let flush = |c: Option<(String, Option<String>, Option<String>)>, out: &mut Vec<_>| {
        if let Some((kind, name, path)) = c {
            let name = name.unwrap_or_else(|| panic!("a [[{kind}]] without a name"));
            let dir = match kind.as_str() {
                "bench" => "benches",
                "example" => "examples",
                "test" => "tests",
                "bin" => "src/bin",
                other => panic!("unexpected [[{other}]] in Cargo.toml"),
            };
            out.push((kind, path.unwrap_or_else(|| format!("{dir}/{name}.rs"))));
        }
    };
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(current.take(), &mut out);
            if let Some(kind) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
                current = Some((kind.trim().to_string(), None, None));
            }
            continue;
        }
        let Some((_, name, path)) = current.as_mut() else {
            continue;
        };
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"').to_string();
            match key.trim() {
                "name" => *name = Some(value),
                "path" => *path = Some(value),
                _ => {}
            }
        }
    }
    flush(current, &mut out);
    out
}

/// The files the dependency layer (the build stage's first RUN with a cargo build) creates
/// with `echo ... > FILE` or `touch FILE`, and the paths it deletes with `rm -rf`.
fn dependency_layer_stubs() -> (Vec<String>, Vec<String>) {
    let stages = dockerfile_stages();
    let build = &stages[stages.len() - 2];
    let script = build
        .iter()
        .find(|(i, r)| i == "RUN" && r.contains("cargo build"))
        .map(|(_, r)| r.clone())
        .expect("a RUN with cargo build in the build stage");
    let (mut created, mut removed) = (Vec::new(), Vec::new());
    for cmd in script.split("&&").map(str::trim) {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            ["touch", files @ ..] => created.extend(files.iter().map(|f| f.to_string())),
            ["rm", "-rf", paths @ ..] => removed.extend(paths.iter().map(|p| p.to_string())),
            [.., ">", file] if words[0] == "echo" => created.push(file.to_string()),
            _ => {}
        }
    }
    (created, removed)
}

// ---------------------------------------------------------------------------------------
// IAM policy
// ---------------------------------------------------------------------------------------

fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(s) => s
            .iter()
            .map(|x| str_of(x, "policy entry").to_string())
            .collect(),
        other => panic!("expected a string or a list, got {other:?}"),
    }
}

#[test]
fn iam_policy_is_read_only_and_matches_the_readme() {
    let path = repo().join("deploy/iam-policy.json");
    let out = run(Command::new("python3").args(["-m", "json.tool"]).arg(&path));
    assert!(
        out.status.success(),
        "iam-policy.json is not JSON:\n{}",
        describe(&out)
    );
    let text = read(&path);
    let policy = yaml_serde::from_str::<Value>(&text).expect("JSON parses as YAML");

    check_allowed_keys(&policy, &["Version", "Statement"], "policy");
    assert_eq!(policy["Version"].as_str(), Some("2012-10-17"));
    let mut actions = BTreeSet::new();
    for st in seq_of(&policy["Statement"], "Statement") {
        check_allowed_keys(st, &["Sid", "Effect", "Action", "Resource"], "statement");
        assert_eq!(st["Effect"].as_str(), Some("Allow"), "{st:?}");
        let acts = as_list(&st["Action"]);
        for a in &acts {
            assert!(
                ALLOWED_ACTIONS.contains(&a.as_str()),
                "action {a} is not one of the read-only actions {ALLOWED_ACTIONS:?}"
            );
            actions.insert(a.clone());
        }
        if acts.iter().any(|a| a.starts_with("apigateway:")) {
            for r in as_list(&st["Resource"]) {
                assert!(
                    ALLOWED_APIGATEWAY_RESOURCES.contains(&r.as_str()),
                    "apigateway:GET on {r} is broader than discovery needs"
                );
            }
        }
    }
    assert_eq!(
        actions,
        ALLOWED_ACTIONS.iter().map(|s| s.to_string()).collect(),
        "the exporter needs all of these"
    );

    // Same policy as the README's IAM section.
    let readme = read(&repo().join("README.md"));
    let section = readme
        .split("## IAM policy")
        .nth(1)
        .expect("README has an IAM policy section");
    let block = section
        .split("```json")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README's IAM section has a json block");
    assert_eq!(
        yaml_serde::from_str::<Value>(block).expect("README policy parses"),
        policy,
        "deploy/iam-policy.json differs from README.md's IAM policy"
    );
}

/// The cross-account policies (docs/cross-account.md): the monitoring account's reads only
/// CloudWatch, OAM's links and API Gateway, and assumes only roles; a source account's role
/// reads only API Gateway, and trusts only `sts:AssumeRole` and `sts:TagSession` (EKS Pod
/// Identity's session tags are transitive: an exporter running with Pod Identity passes them
/// on to the roles it assumes). The guide shows each file as it is.
#[test]
fn cross_account_policies_are_read_only_and_the_guide_shows_them() {
    let policy = |file: &str| -> Value {
        let text = read(&repo().join("deploy").join(file));
        yaml_serde::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let actions = |p: &Value| -> BTreeSet<String> {
        seq_of(&p["Statement"], "Statement")
            .iter()
            .flat_map(|st| as_list(&st["Action"]))
            .collect()
    };
    let monitoring = policy("iam-policy-monitoring-account.json");
    let allowed: BTreeSet<String> = ALLOWED_ACTIONS
        .iter()
        .chain(&["oam:ListSinks", "oam:ListAttachedLinks", "sts:AssumeRole"])
        .map(|s| s.to_string())
        .collect();
    assert_eq!(actions(&monitoring), allowed);
    for st in seq_of(&monitoring["Statement"], "Statement") {
        assert_eq!(st["Effect"].as_str(), Some("Allow"));
        let acts = as_list(&st["Action"]);
        if acts.iter().any(|a| a == "sts:AssumeRole") {
            for r in as_list(&st["Resource"]) {
                assert!(
                    r.starts_with("arn:aws:iam::") && r.contains(":role/"),
                    "{r}"
                );
            }
        }
        if acts.iter().any(|a| a.starts_with("apigateway:")) {
            for r in as_list(&st["Resource"]) {
                assert!(ALLOWED_APIGATEWAY_RESOURCES.contains(&r.as_str()), "{r}");
            }
        }
    }
    let source = policy("iam-policy-source-account.json");
    assert_eq!(
        actions(&source),
        BTreeSet::from(["apigateway:GET".to_string()])
    );
    let own = policy("iam-policy.json");
    let discovery = |p: &Value| {
        seq_of(&p["Statement"], "Statement")
            .iter()
            .find(|st| st["Sid"].as_str() == Some("ApiGatewayDiscovery"))
            .cloned()
            .expect("an ApiGatewayDiscovery statement")
    };
    assert_eq!(
        discovery(&source),
        discovery(&own),
        "the same reads as any target"
    );
    assert_eq!(discovery(&monitoring), discovery(&own));
    let trust = policy("iam-trust-source-account.json");
    assert_eq!(
        actions(&trust),
        BTreeSet::from(["sts:AssumeRole".to_string(), "sts:TagSession".to_string()])
    );
    // The guide's JSON blocks are the three files, in order.
    let guide = read(&repo().join("docs/cross-account.md"));
    let blocks: Vec<Value> = guide
        .split("```json")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .map(|b| yaml_serde::from_str::<Value>(b).expect("a JSON block"))
        .collect();
    assert_eq!(blocks, [monitoring, source, trust]);
}

// ---------------------------------------------------------------------------------------
// docs/deploy.md
// ---------------------------------------------------------------------------------------

/// The scrape configs in docs/deploy.md pass `promtool check config`. Debian's Prometheus is
/// built without Kubernetes service discovery, so a job using `kubernetes_sd_configs` is
/// checked without that key (its relabelling still is), and its keep rules must name the
/// manifests' exporter container and port.
#[test]
fn deploy_doc_scrape_configs_pass_promtool() {
    let promtool = tool("APIGW_TEST_PROMTOOL");
    let doc = read(&repo().join("docs/deploy.md"));
    let blocks: Vec<&str> = doc
        .split("```yaml")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.lines().any(|l| l.starts_with("scrape_configs:")))
        .collect();
    assert!(
        !blocks.is_empty(),
        "docs/deploy.md has no scrape_configs example"
    );
    let all = load_all();
    let containers: BTreeSet<&str> = all_exporter_containers(&all)
        .into_iter()
        .map(|(_, _, c)| container_name(c))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut static_port = false;
    for (i, block) in blocks.iter().enumerate() {
        let mut config = yaml_serde::from_str::<Value>(block).expect("scrape config parses");
        let jobs = config["scrape_configs"]
            .as_sequence_mut()
            .expect("scrape_configs is a list");
        for job in jobs.iter_mut() {
            for sc in job["static_configs"].as_sequence().into_iter().flatten() {
                for t in seq_of(&sc["targets"], "targets") {
                    static_port |= str_of(t, "target").ends_with(":9743");
                }
            }
            let Some(map) = job.as_mapping_mut() else {
                panic!("a scrape job is a mapping");
            };
            if map.remove("kubernetes_sd_configs").is_none() {
                continue;
            }
            let keeps: BTreeMap<String, String> = seq_of(&map["relabel_configs"], "relabel")
                .iter()
                .filter(|r| r["action"].as_str() == Some("keep"))
                .map(|r| {
                    let label = seq_of(&r["source_labels"], "source_labels")
                        .iter()
                        .map(|l| str_of(l, "label"))
                        .collect::<Vec<_>>()
                        .join(";");
                    (label, str_of(&r["regex"], "regex").to_string())
                })
                .collect();
            let container = keeps
                .get("__meta_kubernetes_pod_container_name")
                .expect("the pod discovery keeps the exporter container");
            assert_eq!(
                BTreeSet::from([container.as_str()]),
                containers,
                "the discovery job keeps containers named {container}"
            );
            assert_eq!(
                keeps
                    .get("__meta_kubernetes_pod_container_port_name")
                    .map(String::as_str),
                Some("metrics"),
                "the discovery job keeps the port named metrics"
            );
        }
        let file = dir.path().join(format!("prometheus-{i}.yml"));
        std::fs::write(&file, yaml_serde::to_string(&config).unwrap()).unwrap();
        let out = run(Command::new(&promtool).args(["check", "config"]).arg(&file));
        assert!(
            out.status.success(),
            "promtool check config on docs/deploy.md's block:\n{block}\n{}",
            describe(&out)
        );
    }
    assert!(static_port, "a static scrape config targets port 9743");
    for needle in [
        "kubectl apply -k deploy/kubernetes",
        "docker build -t apigateway-exporter .",
    ] {
        assert!(doc.contains(needle), "docs/deploy.md lacks `{needle}`");
    }
}

#[test]
fn sharded_statefulset_validates_and_its_shards_cover_every_api_once() {
    let dir = k8s_dir().join("sharded");
    let kustomization = yaml_docs(
        &read(&dir.join("kustomization.yaml")),
        "sharded kustomization",
    );
    let files: Vec<String> = seq_of(&kustomization[0]["resources"], "resources")
        .iter()
        .map(|v| str_of(v, "resource").to_string())
        .collect();
    let docs: Vec<(String, Vec<Value>)> = files
        .iter()
        .map(|f| (f.clone(), yaml_docs(&read(&dir.join(f)), f)))
        .collect();
    if let Err(e) = kubernetes_validate(&dir, &docs) {
        panic!("{e}");
    }
    let doc = |kind: &str| {
        docs.iter()
            .flat_map(|(_, d)| d)
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} in sharded/"))
    };
    let set = doc("StatefulSet");
    let replicas = set["spec"]["replicas"].as_u64().expect("replicas");
    let config = str_of(&doc("ConfigMap")["data"]["config.yaml"], "config.yaml").to_string();
    assert!(
        config.contains(&format!("total: {replicas}")),
        "shard.total must equal the StatefulSet's replicas ({replicas}):\n{config}"
    );
    let env = &set["spec"]["template"]["spec"]["containers"][0]["env"][0];
    assert_eq!(env["name"].as_str(), Some("SHARD_INDEX"));
    assert_eq!(
        env["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.labels['apps.kubernetes.io/pod-index']")
    );
    // Each pod's config passes check-config with its own index; one past the last does not.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.yaml");
    std::fs::write(&path, &config).unwrap();
    for index in 0..=replicas {
        let out = run(Command::new(env!("CARGO_BIN_EXE_apigateway-exporter"))
            .args(["check-config", "--log.level=error"])
            .arg(format!("--config.file={}", path.display()))
            .env("SHARD_INDEX", index.to_string())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9"));
        let want = if index < replicas { 0 } else { 2 };
        assert_eq!(
            out.status.code(),
            Some(want),
            "SHARD_INDEX={index}: {}",
            describe(&out)
        );
    }
}
