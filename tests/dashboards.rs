//! The Grafana dashboards in `dashboards/`: generated from `dashboards/build.py`, importable
//! (`__inputs`, `__requires`, stable uid), every panel titled, described, with a unit and the
//! datasource variable; every rate over `$__rate_interval`; averages from `_sum`/`_count`;
//! only contract metrics; every query parses (promtool); every panel documented.
//!
//! `tests/dashboard_queries.py` reads the JSON (no JSON parser here) and prints the facts
//! linted below; its `queries` mode is the reusable list of queries for live checks.
//! Needs python3 and promtool (`APIGW_TEST_PROMTOOL`, else PATH); fails, never skips.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use regex::Regex;

/// File name → stable uid (alerts' dashboard_url and data links use these).
const DASHBOARDS: [(&str, &str); 3] = [
    ("apigateway-overview.json", "apigateway-overview"),
    ("apigateway-api.json", "apigateway-api"),
    ("apigateway-exporter.json", "apigateway-exporter"),
];
const DATASOURCES: [&str; 2] = ["${datasource}", "${DS_PROMETHEUS}"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files() -> Vec<String> {
    DASHBOARDS
        .iter()
        .map(|(f, _)| format!("dashboards/{f}"))
        .collect()
}

/// Runs `python3 ARGS` in the repository with `stdin`; returns its exit code and output.
fn python(args: &[String], stdin: &str) -> (i32, String, String) {
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
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn helper(mode: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec!["tests/dashboard_queries.py".to_string()];
    args.extend(mode.iter().map(|s| s.to_string()));
    args.extend(files());
    let (code, out, err) = python(&args, "");
    assert_eq!(code, 0, "dashboard_queries.py {mode:?}: {err}");
    out.lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Facts of one kind (`panel`, `target`, ...), without the kind column.
fn facts(kind: &str) -> Vec<Vec<String>> {
    helper(&["facts"])
        .into_iter()
        .filter(|f| f[0] == kind)
        .map(|f| f[1..].to_vec())
        .collect()
}

/// Every PromQL expression (targets, then variable queries), keyed by dashboard uid.
fn expressions() -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = facts("target")
        .into_iter()
        .map(|t| {
            (
                t[0].clone(),
                format!("panel {} {}", t[1], t[2]),
                t[4].clone(),
            )
        })
        .collect();
    for v in facts("variable") {
        if v[2] == "query" {
            out.push((v[0].clone(), format!("variable {}", v[1]), v[6].clone()));
        }
    }
    out
}

fn promtool() -> PathBuf {
    if let Some(path) = std::env::var_os("APIGW_TEST_PROMTOOL") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("promtool"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "promtool not found: set APIGW_TEST_PROMTOOL or put promtool on PATH (Debian \
                 package `prometheus`; scripts/setup-tools.sh installs it)"
            )
        })
}

#[test]
fn dashboards_match_their_generator() {
    let (code, _, err) = python(&["dashboards/build.py".into(), "--check".into()], "");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn dashboards_are_importable() {
    let dashboards = facts("dashboard");
    assert_eq!(dashboards.len(), DASHBOARDS.len());
    let inputs = facts("input");
    let requires = facts("require");
    let panels = facts("panel");
    for (file, uid) in DASHBOARDS {
        let d = dashboards
            .iter()
            .find(|d| d[0] == format!("dashboards/{file}"))
            .unwrap_or_else(|| panic!("{file} missing"));
        assert_eq!(d[1], uid, "{file}: uid must stay {uid}");
        assert!(d[2].starts_with("Amazon API Gateway / "), "{file}: title");
        assert_eq!(d[3], "null", "{file}: id must be null to import");
        assert!(d[4].parse::<u32>().is_ok(), "{file}: schemaVersion");
        assert!(
            inputs.iter().any(|i| i[0] == uid
                && i[1] == "DS_PROMETHEUS"
                && i[2] == "datasource"
                && i[3] == "prometheus"),
            "{file}: __inputs needs a Prometheus datasource input DS_PROMETHEUS"
        );
        let required: BTreeSet<(&str, &str)> = requires
            .iter()
            .filter(|r| r[0] == uid)
            .map(|r| (r[1].as_str(), r[2].as_str()))
            .collect();
        assert!(
            required.contains(&("grafana", "grafana")),
            "{file}: __requires grafana"
        );
        assert!(
            required.contains(&("datasource", "prometheus")),
            "{file}: __requires prometheus"
        );
        for p in panels.iter().filter(|p| p[0] == uid && p[2] != "row") {
            assert!(
                required.contains(&("panel", p[2].as_str())),
                "{file}: __requires lacks panel type {}",
                p[2]
            );
        }
    }
}

#[test]
fn every_panel_has_a_title_description_unit_and_the_datasource_variable() {
    let mut titles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut ids: BTreeSet<(String, String)> = BTreeSet::new();
    for p in facts("panel") {
        let (uid, id, kind, ds, unit, title, description) =
            (&p[0], &p[1], &p[2], &p[3], &p[4], &p[5], &p[6]);
        assert!(
            ids.insert((uid.clone(), id.clone())),
            "{uid}: panel id {id} twice"
        );
        assert_ne!(title, "-", "{uid} panel {id}: no title");
        if kind == "row" {
            continue;
        }
        assert!(
            titles.entry(uid.clone()).or_default().insert(title.clone()),
            "{uid}: two panels titled {title}"
        );
        assert!(
            description.len() > 20,
            "{uid} `{title}`: needs a description saying what it shows"
        );
        assert_ne!(unit, "-", "{uid} `{title}`: no unit");
        assert!(
            DATASOURCES.contains(&ds.as_str()),
            "{uid} `{title}`: datasource {ds}, not the datasource variable"
        );
    }
}

#[test]
fn every_query_uses_the_datasource_variable() {
    for t in facts("target") {
        assert!(
            DATASOURCES.contains(&t[3].as_str()),
            "{} panel {} {}: datasource {}",
            t[0],
            t[1],
            t[2],
            t[3]
        );
        assert_ne!(t[4], "-", "{} panel {} {}: empty query", t[0], t[1], t[2]);
    }
    for v in facts("variable") {
        match v[2].as_str() {
            "query" => assert!(
                DATASOURCES.contains(&v[3].as_str()),
                "{} variable {}: datasource {}",
                v[0],
                v[1],
                v[3]
            ),
            "datasource" => assert_eq!(v[6], "prometheus", "{} variable {}", v[0], v[1]),
            _ => {}
        }
    }
    for a in facts("annotation") {
        assert!(
            DATASOURCES.contains(&a[2].as_str()),
            "{} annotation {}: datasource {}",
            a[0],
            a[1],
            a[2]
        );
    }
    let undefined = facts("undefined");
    assert!(
        undefined.is_empty(),
        "references to undefined variables: {undefined:?}"
    );
}

#[test]
fn dashboards_have_their_variables() {
    let variables = facts("variable");
    let names = |uid: &str| -> Vec<String> {
        variables
            .iter()
            .filter(|v| v[0] == uid)
            .map(|v| v[1].clone())
            .collect()
    };
    assert_eq!(
        names("apigateway-overview"),
        [
            "datasource",
            "account_id",
            "region",
            "api_type",
            "api_name",
            "stage"
        ]
    );
    assert_eq!(
        names("apigateway-api"),
        ["datasource", "account_id", "region", "api_name", "stage"]
    );
    assert_eq!(
        names("apigateway-exporter"),
        [
            "datasource",
            "job",
            "instance",
            "price_per_1000_metrics",
            "price_per_1000_updates"
        ]
    );
    for v in &variables {
        if v[0] == "apigateway-overview" && v[2] == "query" {
            assert_eq!(
                (v[4].as_str(), v[5].as_str()),
                ("true", "true"),
                "overview variable {} is multi-value with All",
                v[1]
            );
        }
    }
}

/// Variables filter what they claim to: the overview and API dashboards select every API
/// Gateway series by account and region (and the overview by API), the exporter dashboard
/// by job and instance. Multi-value variables match with `=~` (Grafana regex-escapes their
/// values); single-value ones with `=` (their values are not escaped: `$default`).
#[test]
fn selectors_use_the_filter_variables() {
    let selector = Regex::new(r"(aws_apigateway_[a-z0-9_]+)(\{[^}]*\})?").expect("regex");
    let targets = facts("target").into_iter().map(|t| {
        (
            t[0].clone(),
            format!("panel {} {}", t[1], t[2]),
            t[4].clone(),
        )
    });
    for (uid, place, expr) in targets {
        for c in selector.captures_iter(&expr) {
            let metric = &c[1];
            let labels = c.get(2).map(|m| m.as_str()).unwrap_or("");
            let need: &[&str] = match (uid.as_str(), metric.starts_with("aws_apigateway_exporter_"))
            {
                ("apigateway-exporter", true) => &[r#"job=~"$job""#, r#"instance=~"$instance""#],
                ("apigateway-overview", false) if metric == "aws_apigateway_api_info" => {
                    &[r#"account_id=~"$account_id""#]
                }
                ("apigateway-overview", false) => &[
                    r#"account_id=~"$account_id""#,
                    r#"region=~"$region""#,
                    r#"api_name=~"$api_name""#,
                ],
                ("apigateway-api", false) if metric == "aws_apigateway_api_info" => &[],
                ("apigateway-api", false) => {
                    &[r#"account_id="$account_id""#, r#"region="$region""#]
                }
                _ => panic!("{uid} {place}: {metric} does not belong on this dashboard"),
            };
            for n in need {
                assert!(
                    labels.contains(n),
                    "{uid} {place}: {metric}{labels} lacks {n}"
                );
            }
        }
    }
}

#[test]
fn every_rate_uses_rate_interval() {
    let range = Regex::new(r"\[[^\]]*\]").expect("regex");
    for (uid, place, expr) in expressions() {
        for m in range.find_iter(&expr) {
            assert_eq!(
                m.as_str(),
                "[$__rate_interval]",
                "{uid} {place}: range {} in {expr}",
                m.as_str()
            );
        }
        assert!(!expr.contains("irate("), "{uid} {place}: irate");
    }
}

#[test]
fn averages_come_from_sum_and_count() {
    let sum = Regex::new(r"rate\(([a-z0-9_]+)_sum\{").expect("regex");
    for (uid, place, expr) in expressions() {
        for c in sum.captures_iter(&expr) {
            let base = &c[1];
            let sums = expr.matches(&format!("rate({base}_sum{{")).count();
            let counts = expr.matches(&format!("rate({base}_count{{")).count();
            assert_eq!(
                sums, counts,
                "{uid} {place}: every rate({base}_sum) needs its rate({base}_count)"
            );
        }
        for bad in ["avg(", "avg_over_time(", "avg by", "avg without"] {
            assert!(
                !expr.contains(bad),
                "{uid} {place}: {bad} — averages are rate(_sum) / rate(_count)"
            );
        }
    }
}

#[test]
fn dashboards_use_only_contract_metrics() {
    let lines: String = helper(&["queries"])
        .into_iter()
        .map(|q| format!("{} {} {} {}\t{}\n", q[0], q[1], q[2], q[3], q[4]))
        .collect();
    assert!(!lines.is_empty());
    // No --allow: dashboards must not depend on the alert rules' recorded series.
    let (code, out, err) = python(&["tests/metric_contract.py".into(), "check".into()], &lines);
    assert_eq!(
        code, 0,
        "not in the metric contract (the README's ## Metrics section):\n{out}{err}"
    );
    // The check itself catches an unknown name.
    let (code, out, _) = python(
        &["tests/metric_contract.py".into(), "check".into()],
        "probe\tsum(rate(aws_apigateway_no_such_family_total[5m]))\n",
    );
    assert_eq!(
        (code, out.trim()),
        (1, "probe\taws_apigateway_no_such_family_total")
    );
}

/// Every query, variables substituted, parses: written as recording rules and checked by
/// promtool (a real Prometheus evaluates them in the live check).
#[test]
fn every_query_parses() {
    let mut rules = Vec::new();
    for (i, q) in helper(&["queries", "--demo"]).into_iter().enumerate() {
        let mut rule = yaml_serde::Mapping::new();
        rule.insert("record".into(), format!("dashboard:query_{i}:check").into());
        rule.insert("expr".into(), q[4].clone().into());
        rules.push(yaml_serde::Value::Mapping(rule));
    }
    assert!(rules.len() > 50, "only {} queries", rules.len());
    let mut group = yaml_serde::Mapping::new();
    group.insert("name".into(), "dashboards".into());
    group.insert("rules".into(), yaml_serde::Value::Sequence(rules));
    let mut file = yaml_serde::Mapping::new();
    file.insert(
        "groups".into(),
        yaml_serde::Value::Sequence(vec![yaml_serde::Value::Mapping(group)]),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, yaml_serde::to_string(&file).expect("yaml")).expect("write");
    let bin = promtool();
    let out = Command::new(&bin)
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "promtool check rules on the dashboards' queries:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// docs/dashboards-and-alerts.md lists every panel under its dashboard's heading.
#[test]
fn every_panel_is_documented() {
    let docs = std::fs::read_to_string(repo().join("docs/dashboards-and-alerts.md"))
        .expect("docs/dashboards-and-alerts.md");
    for (file, uid) in DASHBOARDS {
        let section = section_of(&docs, file)
            .unwrap_or_else(|| panic!("docs: no `### ...` heading naming {file}"));
        for p in facts("panel") {
            if p[0] == uid && p[2] != "row" {
                assert!(
                    section.contains(&format!("**{}**", p[5])),
                    "docs, section of {file}: panel **{}** is not listed",
                    p[5]
                );
            }
        }
    }
}

/// The text from the `### ` heading that names `file` to the next `##`/`### ` heading.
fn section_of<'a>(docs: &'a str, file: &str) -> Option<&'a str> {
    let start = docs
        .match_indices("\n### ")
        .map(|(i, _)| i + 1)
        .find(|&i| docs[i..].lines().next().is_some_and(|l| l.contains(file)))?;
    let rest = &docs[start + 4..];
    let end = rest
        .find("\n## ")
        .into_iter()
        .chain(rest.find("\n### "))
        .min();
    Some(&rest[..end.unwrap_or(rest.len())])
}

#[test]
fn the_readme_lists_every_panel() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Dashboards and alerts")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Dashboards and alerts section");
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/dashboard_queries.py"
        ))
        .arg("facts")
        .args(
            [
                "apigateway-overview",
                "apigateway-api",
                "apigateway-exporter",
            ]
            .map(|d| format!("{}/dashboards/{d}.json", env!("CARGO_MANIFEST_DIR"))),
        )
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut missing = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f[0] == "panel" && f[3] != "row" && !section.contains(f[6]) {
            missing.push(format!("{}: {}", f[1], f[6]));
        }
    }
    assert!(
        missing.is_empty(),
        "panels missing from the README: {missing:?}"
    );
}
