//! The README's metric tables against the metric contract (`src/contract.rs`): the same
//! families, both ways, and no label in the README that the contract does not give the family.
//! (The dashboards and alerts are checked against the README's names by
//! `tests/metric_contract.py`, and the served families against both by `tests/demo.rs`.)

use std::collections::BTreeSet;

use apigateway_exporter::contract::{self, Def, Level, Type};

fn metrics_section() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme.find("\n## Metrics").expect("a `## Metrics` section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// Every backticked `aws_apigateway_…` name, with the labels written in braces after it.
/// A name followed by `_` or `*` is a prefix in prose, not a name.
fn named(section: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for span in section.split('`').skip(1).step_by(2) {
        let Some(at) = ["aws_apigateway_", "aws_lambda_"]
            .iter()
            .filter_map(|p| span.find(p))
            .min()
        else {
            continue;
        };
        let tail = &span[at..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let after = &tail[name.len()..];
        if name.ends_with('_') || after.starts_with('*') {
            continue;
        }
        let labels = after
            .strip_prefix('{')
            .and_then(|l| l.split_once('}'))
            .map(|(inside, _)| {
                inside
                    .split([',', '|'])
                    .map(|l| l.trim().trim_end_matches('\\').trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        out.push((name, labels));
    }
    out
}

/// The labels a family's series may carry.
fn allowed(def: &Def) -> BTreeSet<&'static str> {
    let stage = [
        "account_id",
        "region",
        "api_id",
        "api_name",
        "api_type",
        "stage",
    ];
    let route = ["resource", "method", "route"];
    let mut labels: BTreeSet<&str> = def.labels.iter().copied().collect();
    match def.level {
        Level::Stage => labels.extend(stage),
        Level::Api => labels.extend(&stage[..5]),
        Level::Route => labels.extend(stage.iter().chain(&route)),
        Level::Scoped => labels.extend(
            stage
                .iter()
                .chain(&route)
                .chain(&["usage_plan_id", "usage_plan_name"]),
        ),
        Level::Exporter => {}
        Level::Function => labels.extend(["account_id", "region", "function_name"]),
    }
    if def.kind == Type::Summary {
        labels.insert("quantile");
    }
    labels
}

#[test]
fn the_readme_names_every_family_of_the_contract_and_no_other() {
    let section = metrics_section();
    let mut readme: BTreeSet<String> = BTreeSet::new();
    for (name, _) in named(&section) {
        // `_sum` and `_count` of a summary are written out in the tables; they belong to it.
        let family = contract::family_of(&name)
            .unwrap_or_else(|| panic!("README names `{name}`, which is not in the contract"));
        readme.insert(family.name.to_string());
    }
    let defined: BTreeSet<String> = contract::ALL.iter().map(|d| d.name.to_string()).collect();
    let missing: Vec<&String> = defined.difference(&readme).collect();
    assert!(
        missing.is_empty(),
        "families of the contract missing from README's ## Metrics: {missing:?}"
    );
}

#[test]
fn the_readme_gives_families_only_their_labels() {
    let mut checked = 0;
    for (name, labels) in named(&metrics_section()) {
        let Some(def) = contract::family_of(&name) else {
            continue; // reported by the other test
        };
        let allowed = allowed(def);
        for label in &labels {
            let ok = allowed.contains(label.as_str())
                || (label.starts_with("tag_") && allowed.contains("tag_*"));
            assert!(
                ok,
                "README gives `{name}` the label `{label}`, which the contract does not"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 20,
        "only {checked} labels found in README's tables"
    );
}

#[test]
fn the_parser_reads_names_labels_and_skips_prefixes() {
    let found = named(
        "| `aws_apigateway_throttle_rate_limit{scope}` | x `aws_apigateway_route_*` and \
         `aws_apigateway_exporter_` | `aws_apigateway_integration_timeout_seconds{resource, method | route}` |",
    );
    assert_eq!(
        found,
        [
            (
                "aws_apigateway_throttle_rate_limit".to_string(),
                vec!["scope".to_string()]
            ),
            (
                "aws_apigateway_integration_timeout_seconds".to_string(),
                vec!["resource".into(), "method".into(), "route".into()]
            ),
        ]
    );
}
