//! The alert and recording rules in `alerts/`: promtool accepts them, their unit tests
//! (`alerts/tests/*.test.yml`) pass and cover every alert, the PrometheusRule carries the same
//! groups, alert names, labels and annotations are the documented interface, thresholds live
//! in one group, and every metric they use is in the metric contract.
//!
//! Needs `promtool` (Debian `prometheus`): `APIGW_TEST_PROMTOOL`, else `promtool` on PATH.
//! Fails, never skips, when it is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

/// Alert names are an interface: people route and silence on them.
const ALERTS: &[&str] = &[
    "ApiGateway5xxErrorRateHigh",
    "ApiGateway5xxErrorBudgetBurn",
    "ApiGateway4xxErrorRateHigh",
    "ApiGatewayWebSocketErrorRateHigh",
    "ApiGatewayThrottling",
    "ApiGatewayNearThrottleLimit",
    "ApiGatewayLatencyNearTimeout",
    "ApiGatewayIntegrationTimeouts",
    "ApiGatewayAuthorizerFailing",
    "ApiGatewayIntegrationFailing",
    "ApiGatewayBackendThrottled",
    "ApiGatewayCanary5xxWorseThanBase",
    "ApiGatewayExporterDown",
    "ApiGatewayExporterCycleFailing",
    "ApiGatewayExporterDataStale",
    "ApiGatewayExporterCloudWatchThrottled",
    "ApiGatewayExporterDiscoveryThrottled",
    "ApiGatewayExporterDiscoveryApiFailing",
    "ApiGatewayExporterStreamDeliveriesRefused",
    "ApiGatewayExporterStreamSilent",
];
const ANNOTATIONS: [&str; 4] = ["summary", "description", "runbook_url", "dashboard_url"];
const THRESHOLD_GROUP: &str = "apigateway.thresholds";
const RUNBOOK: &str = "https://github.com/apigateway-exporter/apigateway-exporter/blob/main/docs/dashboards-and-alerts.md#";

#[derive(Debug, Deserialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    record: Option<String>,
    alert: Option<String>,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct UnitTestFile {
    rule_files: Vec<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    tests: Vec<UnitTest>,
}

#[derive(Debug, Deserialize)]
struct UnitTest {
    name: String,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
}

#[derive(Debug, Deserialize)]
struct AlertTest {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rules_path() -> PathBuf {
    repo().join("alerts/apigateway.rules.yml")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn rules() -> RuleFile {
    yaml_serde::from_str(&read(&rules_path())).expect("alerts/apigateway.rules.yml parses")
}

fn alerting_rules(file: &RuleFile) -> Vec<&Rule> {
    file.groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| r.alert.is_some())
        .collect()
}

fn interface() -> BTreeSet<&'static str> {
    ALERTS.iter().copied().collect()
}

/// A tool from `$env`, else from PATH; panics with what to install when neither has it.
fn tool(env: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: set {env} or put {name} on PATH (Debian package `prometheus`; \
                 scripts/setup-tools.sh installs it, `scripts/emulators.sh env` exports {env})"
            )
        })
}

fn promtool(args: &[&str]) -> (bool, String) {
    let bin = tool("APIGW_TEST_PROMTOOL", "promtool");
    let out = Command::new(&bin)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn unit_test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("alerts/tests"))
        .expect("alerts/tests exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no alerts/tests/*.test.yml");
    files
}

fn docs() -> String {
    read(&repo().join("docs/dashboards-and-alerts.md"))
}

#[test]
fn promtool_accepts_the_rules() {
    let (ok, out) = promtool(&["check", "rules", "alerts/apigateway.rules.yml"]);
    assert!(ok, "promtool check rules:\n{out}");
}

#[test]
fn promtool_unit_tests_pass() {
    let files = unit_test_files();
    let mut args = vec!["test".to_string(), "rules".to_string()];
    args.extend(files.iter().map(|p| p.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = promtool(&args);
    assert!(ok, "promtool test rules:\n{out}");
}

#[test]
fn alert_names_are_the_interface() {
    let file = rules();
    let names: BTreeSet<&str> = alerting_rules(&file)
        .iter()
        .filter_map(|r| r.alert.as_deref())
        .collect();
    assert_eq!(names, interface());
}

#[test]
fn every_alert_has_severity_annotations_and_a_documented_runbook() {
    let file = rules();
    let docs = docs();
    for rule in alerting_rules(&file) {
        let name = rule.alert.as_deref().unwrap_or_default();
        let severity = rule.labels.get("severity").map(String::as_str);
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}: severity must be critical or warning, is {severity:?}"
        );
        for key in ANNOTATIONS {
            let value = rule.annotations.get(key).map(|v| v.trim()).unwrap_or("");
            assert!(!value.is_empty(), "{name}: annotation {key} is missing");
        }
        assert_eq!(
            rule.annotations["runbook_url"],
            format!("{RUNBOOK}{}", name.to_lowercase()),
            "{name}: runbook_url"
        );
        assert!(
            docs.lines().any(|l| l.trim() == format!("### {name}")),
            "{name}: docs/dashboards-and-alerts.md has no `### {name}` heading (the runbook anchor)"
        );
        assert!(
            rule.annotations["dashboard_url"].starts_with("/d/apigateway-"),
            "{name}: dashboard_url must point at one of the shipped dashboards"
        );
        assert!(rule.for_.is_some(), "{name}: no `for`");
    }
}

/// Every alerting rule fires in some unit test, with its own labels (severity, scope) and
/// every label its annotations use; every alert name also has a test where it stays silent.
#[test]
fn unit_tests_cover_every_alert_firing_and_silent() {
    let file = rules();
    let groups: Vec<&str> = file.groups.iter().map(|g| g.name.as_str()).collect();
    let mut fired: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut silent: BTreeSet<String> = BTreeSet::new();
    for path in unit_test_files() {
        let test: UnitTestFile = yaml_serde::from_str(&read(&path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            test.rule_files,
            vec!["../apigateway.rules.yml"],
            "{}",
            path.display()
        );
        assert_eq!(
            test.group_eval_order,
            groups,
            "{}: group_eval_order must list every group in file order, so that recorded \
             series are evaluated before the alerts that read them",
            path.display()
        );
        for case in &test.tests {
            assert!(!case.name.is_empty());
            for a in &case.alert_rule_test {
                if a.exp_alerts.is_empty() {
                    silent.insert(a.alertname.clone());
                }
                for e in &a.exp_alerts {
                    fired.push((a.alertname.clone(), e.exp_labels.clone()));
                }
            }
        }
    }
    let label_ref = regex::Regex::new(r"\$labels\.(\w+)").expect("regex");
    for rule in alerting_rules(&file) {
        let name = rule.alert.as_deref().unwrap_or_default();
        assert!(
            silent.contains(name),
            "{name}: no unit test where it stays silent"
        );
        let conditional = rule.annotations.values().any(|v| v.contains("if $labels"));
        let used: BTreeSet<&str> = rule
            .annotations
            .values()
            .flat_map(|v| label_ref.captures_iter(v))
            .filter_map(|c| c.get(1).map(|m| m.as_str()))
            .collect();
        let matching: Vec<&BTreeMap<String, String>> = fired
            .iter()
            .filter(|(n, labels)| {
                n == name && rule.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .map(|(_, labels)| labels)
            .collect();
        assert!(
            !matching.is_empty(),
            "{name} {:?}: no unit test where this rule fires",
            rule.labels
        );
        if !conditional {
            for labels in matching {
                for l in &used {
                    assert!(
                        labels.contains_key(*l),
                        "{name} {:?}: annotations use $labels.{l}, which the alert does not carry",
                        rule.labels
                    );
                }
            }
        }
    }
}

#[test]
fn thresholds_live_in_one_group_and_are_documented() {
    let file = rules();
    let docs = docs();
    let group = file
        .groups
        .iter()
        .find(|g| g.name == THRESHOLD_GROUP)
        .expect("threshold group");
    let constant = regex::Regex::new(r"^vector\([0-9.]+\)$").expect("regex");
    for rule in &group.rules {
        let record = rule.record.as_deref().expect("only recording rules");
        assert!(record.starts_with("apigateway:"), "{record}");
        assert!(
            constant.is_match(rule.expr.trim()),
            "{record}: a threshold is a constant, `vector(N)`"
        );
        assert!(
            docs.contains(&format!("`{record}`")),
            "{record} is not documented in docs/dashboards-and-alerts.md"
        );
    }
    // No alert compares against a literal: thresholds come from the group above.
    let literal = regex::Regex::new(r"(>=|<=|>|<)\s*-?[0-9]").expect("regex");
    for rule in alerting_rules(&file) {
        assert!(
            !literal.is_match(&rule.expr),
            "{}: compares against a literal; record the threshold in {THRESHOLD_GROUP}",
            rule.alert.as_deref().unwrap_or_default()
        );
    }
    for g in file.groups.iter().filter(|g| g.name != THRESHOLD_GROUP) {
        for r in &g.rules {
            if let Some(record) = &r.record {
                assert!(
                    !record.starts_with("apigateway:threshold"),
                    "{record} outside {THRESHOLD_GROUP}"
                );
            }
        }
    }
}

#[test]
fn prometheus_rule_carries_the_same_groups() {
    let rules: yaml_serde::Value = yaml_serde::from_str(&read(&rules_path())).expect("rules parse");
    let path = repo().join("deploy/kubernetes/prometheusrule.yaml");
    let resource: yaml_serde::Value = yaml_serde::from_str(&read(&path)).expect("parses");
    assert_eq!(
        resource.get("apiVersion").and_then(|v| v.as_str()),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(
        resource.get("kind").and_then(|v| v.as_str()),
        Some("PrometheusRule")
    );
    assert!(
        resource
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .is_some_and(|n| !n.is_empty()),
        "metadata.name"
    );
    let spec = resource.get("spec").expect("spec");
    assert_eq!(
        spec.as_mapping().map(|m| m.len()),
        Some(1),
        "spec holds only groups"
    );
    assert!(
        spec.get("groups") == rules.get("groups"),
        "deploy/kubernetes/prometheusrule.yaml spec.groups differs from \
         alerts/apigateway.rules.yml groups: regenerate it (command in its header)"
    );
}

#[test]
fn rules_use_only_contract_metrics() {
    let file = rules();
    let recorded: Vec<&str> = file
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter_map(|r| r.record.as_deref())
        .collect();
    let mut input = String::new();
    for g in &file.groups {
        for r in &g.rules {
            let name = r.record.as_deref().or(r.alert.as_deref()).unwrap_or("?");
            let expr = r.expr.split_whitespace().collect::<Vec<_>>().join(" ");
            input.push_str(&format!("{} {name}\t{expr}\n", g.name));
        }
    }
    let mut args = vec!["tests/metric_contract.py".to_string(), "check".to_string()];
    for r in &recorded {
        args.push("--allow".into());
        args.push((*r).into());
    }
    let (code, out) = python(&args, &input);
    assert_eq!(
        code, 0,
        "metric names not in the contract (the README's ## Metrics section):\n{out}"
    );

    // Every recorded series the rules read is recorded by them, before or in the group.
    let used = regex::Regex::new(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+").expect("regex");
    for g in &file.groups {
        for r in &g.rules {
            for m in used.find_iter(&r.expr) {
                assert!(
                    recorded.contains(&m.as_str()),
                    "{}: reads {}, which no rule records",
                    g.name,
                    m.as_str()
                );
            }
        }
    }
}

/// Runs `python3 ARGS` in the repository with `stdin`; returns its exit code and output.
fn python(args: &[String], stdin: &str) -> (i32, String) {
    let mut child = Command::new("python3")
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is needed by this test: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
