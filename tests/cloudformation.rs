//! The AWS side as CloudFormation: deploy/aws/apigateway-exporter.yaml.
//!
//! Real tools, no skipping: cfn-lint (`APIGW_TEST_CFN_LINT`) and LocalStack's CloudFormation
//! (`APIGW_TEST_LOCALSTACK`, with the cloudformation, iam, s3, firehose and secretsmanager
//! services); `scripts/setup-tools.sh` installs them, `scripts/emulators.sh start` starts
//! LocalStack and `eval "$(scripts/emulators.sh env)"` exports the variables.
//!
//! What runs where:
//! - cfn-lint lints the whole template (every condition), informational checks included.
//! - The role's policy is deploy/iam-policy.json, in the template and as LocalStack's IAM holds
//!   it after the deployment.
//! - LocalStack deploys the role stack, and the real exporter, configured with the stack's role
//!   ARN as `targets[].role_arn`, assumes it through LocalStack's STS and discovers the REST API
//!   of the role's account (and not the one of its own account).
//! - LocalStack deploys the optional parts, except the resource types it has no provider for
//!   ([`UNSUPPORTED`]): it says so in the stack's events and creates nothing for them, and the
//!   test requires exactly that. The resources it does create are read back from its services.
//!
//! Emulator gaps (docs/cloudformation.md): LocalStack enforces neither parameter constraints
//! nor `Rules` (so [`bad_parameter_values_are_refused_by_their_constraints`] checks the
//! patterns itself), nor trust policies, nor even that an assumed role exists: the role test
//! shows that the exporter assumes the stack's role ARN and that IAM holds that role with its
//! policy, not that AWS would authorize the calls. LocalStack accepts, but does not apply, an
//! S3 bucket's lifecycle rules and a log group's retention.
//!
//! No CloudFormation SDK crate is a dependency: CloudFormation and IAM are called through their
//! query APIs, Firehose, Secrets Manager and CloudWatch Logs through their JSON APIs, over plain
//! HTTP ([`LocalStack`]). Requests carry an `Authorization` header naming the account (LocalStack
//! takes a 12-digit access key id as the account) with a dummy signature: LocalStack does not
//! verify signatures.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use apigateway_exporter::model::{ACCESS_LOG_FORMAT, ApiType, access_log_gaps};
use common::manifests::{repo, run, tool};
use serde_json::{Value as Json, json};
use yaml_serde::Value;

const TEMPLATE: &str = "deploy/aws/apigateway-exporter.yaml";
/// What `aws cloudformation deploy --template-file` may upload without an S3 bucket:
/// CreateStack's TemplateBody has "a maximum length of 51,200 bytes".
const TEMPLATE_BODY_MAX: usize = 51_200;
/// The template's resource types LocalStack community 4.14 has no CloudFormation provider for:
/// it reports each "not supported but was deployed as a fallback" and creates nothing.
const UNSUPPORTED: [&str; 2] = [
    "AWS::CloudWatch::MetricStream",
    "AWS::EKS::PodIdentityAssociation",
];
/// LocalStack services the stacks need.
const SERVICES: [&str; 8] = [
    "cloudformation",
    "iam",
    "sts",
    "s3",
    "firehose",
    "secretsmanager",
    "logs",
    "apigateway",
];
/// The exporter's own account: LocalStack's default ("test" credentials).
const EXPORTER_ACCOUNT: &str = "000000000000";
/// Accounts the stacks are deployed to, one per test, so that account-wide settings
/// (AWS::ApiGateway::Account) touch no other test.
const ROLE_ACCOUNT: &str = "246813579024";
const TRUST_ACCOUNT: &str = "135792468013";
const PARTS_ACCOUNT: &str = "975318642086";
const MONITORING_ACCOUNT: &str = "864209753186";
const WAIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// the template
// ---------------------------------------------------------------------------------------

fn template_text() -> String {
    std::fs::read_to_string(repo().join(TEMPLATE)).unwrap_or_else(|e| panic!("{TEMPLATE}: {e}"))
}

/// The template as YAML; CloudFormation's short forms (`!Ref`, `!Sub`) are tagged values.
fn template() -> Value {
    yaml_serde::from_str(&template_text()).unwrap_or_else(|e| panic!("{TEMPLATE}: {e}"))
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, key| {
        v.get(*key)
            .unwrap_or_else(|| panic!("{TEMPLATE}: no {} in {v:?}", path.join(".")))
    })
}

fn to_json(v: &Value) -> Json {
    serde_json::to_value(v).expect("YAML to JSON")
}

fn policy_file(file: &str) -> Json {
    let text = std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn iam_policy() -> Json {
    policy_file("deploy/iam-policy.json")
}

/// deploy/iam-policy-monitoring-account.json with its `SourceAccountRoles` resource (the
/// template's `SourceAccountRoleArns` parameter) replaced by `source_roles`, as CloudFormation
/// passes a CommaDelimitedList: a list.
fn monitoring_policy(source_roles: &[&str]) -> Json {
    let mut p = policy_file("deploy/iam-policy-monitoring-account.json");
    let statement = p["Statement"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["Sid"] == json!("SourceAccountRoles"))
        .expect("a SourceAccountRoles statement");
    statement["Resource"] = json!(source_roles);
    p
}

/// The exporter role's policy document as CloudFormation resolves it in the aws partition:
/// `!If [MonitoringAccount, ...]` by `monitoring`, `!Ref AWS::NoValue` dropped,
/// `!Ref SourceAccountRoleArns` the parameter's default (a list), and `!Sub` with
/// `${AWS::Partition}` = `aws`. A plain `arn:aws:` string fails: the partition is substituted.
fn resolve_role_policy(v: &Value, monitoring: bool, t: &Value) -> Option<Json> {
    let resolve = |v: &Value| resolve_role_policy(v, monitoring, t);
    match v {
        Value::Tagged(tagged) if tagged.tag == "If" => {
            let args = tagged.value.as_sequence().expect("!If [condition, a, b]");
            assert_eq!(args[0].as_str(), Some("MonitoringAccount"), "{v:?}");
            resolve(&args[if monitoring { 1 } else { 2 }])
        }
        Value::Tagged(tagged) if tagged.tag == "Ref" => match tagged.value.as_str() {
            Some("AWS::NoValue") => None,
            Some("SourceAccountRoleArns") => {
                let default = at(t, &["Parameters", "SourceAccountRoleArns", "Default"])
                    .as_str()
                    .unwrap();
                Some(json!(default.split(',').collect::<Vec<_>>()))
            }
            other => panic!("!Ref {other:?} in the role's policy"),
        },
        Value::Tagged(tagged) if tagged.tag == "Sub" => {
            let s = tagged.value.as_str().expect("!Sub STRING");
            let s = s.replace("${AWS::Partition}", "aws");
            assert!(!s.contains("${"), "{s}");
            Some(json!(s))
        }
        Value::Tagged(tagged) => panic!("{} in the role's policy", tagged.tag),
        Value::Sequence(items) => Some(Json::Array(items.iter().filter_map(resolve).collect())),
        Value::Mapping(m) => Some(Json::Object(
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str().unwrap().to_string(), resolve(v)?)))
                .collect(),
        )),
        Value::String(s) => {
            assert!(
                !s.starts_with("arn:aws:"),
                "{s}: a hardcoded partition, use !Sub \"arn:${{AWS::Partition}}:...\""
            );
            Some(json!(s))
        }
        other => Some(to_json(other)),
    }
}

/// The template's resource types, by logical id.
fn resource_types() -> BTreeMap<String, String> {
    at(&template(), &["Resources"])
        .as_mapping()
        .expect("Resources")
        .iter()
        .map(|(k, v)| {
            let id = k.as_str().unwrap().to_string();
            let ty = at(v, &["Type"]).as_str().unwrap().to_string();
            (id, ty)
        })
        .collect()
}

fn cfn_lint(args: &[&str]) -> (Option<i32>, String) {
    let out = run(Command::new(tool("APIGW_TEST_CFN_LINT"))
        .args(args)
        .arg("--")
        .arg(repo().join(TEMPLATE)));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn cfn_lint_finds_nothing() {
    // Informational checks too (I...): clean at every level.
    let (code, out) = cfn_lint(&["--include-checks", "I"]);
    assert_eq!(code, Some(0), "cfn-lint:\n{out}");
    assert!(out.trim().is_empty(), "cfn-lint:\n{out}");
    // The lint is not vacuous: a value outside AllowedValues is an error.
    let (code, out) = cfn_lint(&["--parameters", "TrustMode=oidc"]);
    assert_ne!(code, Some(0), "cfn-lint accepted TrustMode=oidc:\n{out}");
    assert!(out.contains("E2900"), "{out}");
    assert!(
        template_text().len() < TEMPLATE_BODY_MAX,
        "the template outgrew CreateStack's TemplateBody: `aws cloudformation deploy` would need --s3-bucket"
    );
}

/// deploy/iam-policy.json, and with `MonitoringAccount=true`
/// deploy/iam-policy-monitoring-account.json (its `SourceAccountRoles` resource is the
/// `SourceAccountRoleArns` parameter, whose default is the file's resource).
#[test]
fn the_roles_policy_is_deploy_iam_policy_json() {
    let t = template();
    let policies = at(&t, &["Resources", "ExporterRole", "Properties", "Policies"])
        .as_sequence()
        .expect("Policies");
    let read_only = policies
        .iter()
        .find(|p| p.get("PolicyName").and_then(Value::as_str) == Some("read-only"))
        .expect("the read-only policy");
    let document = at(read_only, &["PolicyDocument"]);
    assert_eq!(
        resolve_role_policy(document, false, &t),
        Some(iam_policy()),
        "the template's read-only policy differs from deploy/iam-policy.json"
    );
    let file = policy_file("deploy/iam-policy-monitoring-account.json");
    let file_roles = file["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == json!("SourceAccountRoles"))
        .map(|s| s["Resource"].clone());
    let default = at(&t, &["Parameters", "SourceAccountRoleArns", "Default"]);
    assert_eq!(
        file_roles,
        Some(json!(default.as_str().unwrap())),
        "SourceAccountRoleArns' default is the file's SourceAccountRoles resource"
    );
    assert_eq!(
        resolve_role_policy(document, true, &t),
        Some(monitoring_policy(&[default.as_str().unwrap()])),
        "with MonitoringAccount=true, the template's read-only policy differs from \
         deploy/iam-policy-monitoring-account.json"
    );
}

/// Deleting the stack does not unset the region's API Gateway CloudWatch role, so the role it
/// points to is kept: deleting it would break REST logging to CloudWatch Logs in the region.
#[test]
fn the_api_gateway_cloudwatch_role_is_retained() {
    let t = template();
    for resource in ["ApiGatewayCloudWatchLogsRole", "AccessLogGroup"] {
        for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
            assert_eq!(
                at(&t, &["Resources", resource, policy]).as_str(),
                Some("Retain"),
                "{resource}.{policy}"
            );
        }
    }
}

#[test]
fn the_access_log_formats_are_the_exporters() {
    let t = template();
    let output = |name: &str| {
        at(&t, &["Outputs", name, "Value"])
            .as_str()
            .unwrap_or_else(|| panic!("Outputs.{name} is not a plain string"))
            .to_string()
    };
    let http = output("AccessLogFormatHttp");
    let rest = output("AccessLogFormatRest");
    assert_eq!(http, ACCESS_LOG_FORMAT);
    assert_eq!(rest, apigateway_exporter::model::rest_access_log_format());
    assert!(access_log_gaps(&rest, ApiType::Rest).is_empty());
    assert!(access_log_gaps(&http, ApiType::Http).is_empty());
}

/// The stream's include filters are docs/metric-streams.md's (what the exporter reads; every
/// dimension combination of a listed metric is streamed and billed).
#[test]
fn the_metric_streams_filters_are_the_documented_ones() {
    let doc = std::fs::read_to_string(repo().join("docs/metric-streams.md")).unwrap();
    let documented = |namespace: &str| -> Vec<String> {
        let needle = format!("'Namespace={namespace},MetricNames=");
        let start = doc
            .find(&needle)
            .unwrap_or_else(|| panic!("{needle} in the doc"))
            + needle.len();
        let end = start + doc[start..].find('\'').unwrap();
        doc[start..end].split(',').map(String::from).collect()
    };
    let t = template();
    let filters = at(
        &t,
        &[
            "Resources",
            "ApiGatewayMetricStream",
            "Properties",
            "IncludeFilters",
        ],
    );
    let apigateway = &filters[0];
    assert_eq!(
        at(apigateway, &["Namespace"]).as_str(),
        Some("AWS/ApiGateway")
    );
    let names = |v: &Value| -> Vec<String> {
        at(v, &["MetricNames"])
            .as_sequence()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(apigateway), documented("AWS/ApiGateway"));
    // The Lambda filter is `!If [StreamLambda, {filter}, !Ref AWS::NoValue]`.
    let lambda = match &filters[1] {
        Value::Tagged(t) => t.value[1].clone(),
        other => panic!("the Lambda filter: {other:?}"),
    };
    assert_eq!(at(&lambda, &["Namespace"]).as_str(), Some("AWS/Lambda"));
    assert_eq!(names(&lambda), documented("AWS/Lambda"));
}

/// CloudFormation refuses a value that does not match its parameter's AllowedPattern;
/// LocalStack does not, so the patterns are checked here (anchored, as CloudFormation matches
/// the whole value).
#[test]
fn bad_parameter_values_are_refused_by_their_constraints() {
    let t = template();
    let params = at(&t, &["Parameters"]).as_mapping().unwrap();
    let pattern = |name: &str| {
        let p = at(&t, &["Parameters", name, "AllowedPattern"])
            .as_str()
            .unwrap();
        regex::Regex::new(&format!("^(?:{p})$")).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    // Every default satisfies its own constraint.
    for (name, p) in params {
        let name = name.as_str().unwrap();
        let Some(default) = p.get("Default") else {
            continue;
        };
        let default = match default {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("{name}: default {other:?}"),
        };
        if p.get("AllowedPattern").is_some() {
            // A CommaDelimitedList's pattern applies to each value.
            let values = if p.get("Type").and_then(Value::as_str) == Some("CommaDelimitedList") {
                default.split(',').map(String::from).collect()
            } else {
                vec![default.clone()]
            };
            for value in values {
                assert!(pattern(name).is_match(&value), "{name}: default {value:?}");
            }
        }
        if let Some(allowed) = p.get("AllowedValues") {
            let allowed: Vec<String> = allowed
                .as_sequence()
                .unwrap()
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => panic!("{name}: {other:?}"),
                })
                .collect();
            assert!(allowed.contains(&default), "{name}: default {default:?}");
        }
    }
    let cases: &[(&str, &str, bool)] = &[
        (
            "OidcIssuer",
            "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
            true,
        ),
        (
            "OidcIssuer",
            "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE",
            false,
        ),
        (
            "OidcIssuer",
            "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE/",
            false,
        ),
        (
            "ExporterEndpointUrl",
            "https://apigw-stream.example.com",
            true,
        ),
        (
            "ExporterEndpointUrl",
            "http://apigw-stream.example.com",
            false,
        ),
        (
            "ExporterEndpointUrl",
            "https://apigw-stream.example.com/",
            false,
        ),
        (
            "ExporterEndpointUrl",
            "https://apigw-stream.example.com:9744",
            false,
        ),
        (
            "TrustedPrincipalArn",
            "arn:aws:iam::111111111111:role/apigateway-exporter",
            true,
        ),
        (
            "TrustedPrincipalArn",
            "arn:aws-cn:iam::111111111111:role/path/exporter",
            true,
        ),
        (
            "TrustedPrincipalArn",
            "arn:aws:iam::111111111111:root",
            true,
        ),
        ("TrustedPrincipalArn", "111111111111", false),
        ("TrustedPrincipalArn", "arn:aws:iam::1111:role/x", false),
        ("MetricStreamPercentiles", "p50,p90,p99", true),
        ("MetricStreamPercentiles", "p99.9", true),
        ("MetricStreamPercentiles", "p50, p99", false),
        ("MetricStreamPercentiles", "max", false),
        ("KubernetesNamespace", "monitoring", true),
        ("KubernetesNamespace", "Monitoring", false),
        ("ServiceAccountName", "apigateway-exporter", true),
        ("ServiceAccountName", "apigateway_exporter", false),
        ("EksClusterName", "prod-1", true),
        ("EksClusterName", "-prod", false),
        ("Name", &"n".repeat(45), true),
        // amazon-apigateway-NAME is a Firehose stream name: 64 characters at most.
        ("Name", &"n".repeat(47), false),
        ("Name", "exporter/x", false),
        // NAME is also the metric stream's name: A-Z a-z 0-9 - _ only.
        ("Name", "apigateway_exporter-2", true),
        ("Name", "apigateway.exporter", false),
        (
            "SourceAccountRoleArns",
            "arn:aws:iam::*:role/apigateway-exporter-read",
            true,
        ),
        (
            "SourceAccountRoleArns",
            "arn:aws:iam::222222222222:role/apigateway-exporter-read",
            true,
        ),
        (
            "SourceAccountRoleArns",
            "arn:aws-cn:iam::*:role/read-*",
            true,
        ),
        ("SourceAccountRoleArns", "apigateway-exporter-read", false),
        ("SourceAccountRoleArns", "arn:aws:iam::*:user/reader", false),
        (
            "SourceAccountRoleArns",
            "arn:aws:iam::2222:role/reader",
            false,
        ),
        ("ExternalId", "apigateway-exporter", true),
        ("ExternalId", "a", false),
        (
            "AccessLogGroupName",
            "API-Gateway-Access-Logs_prod/api",
            true,
        ),
        ("AccessLogGroupName", "bad name", false),
    ];
    for (name, value, ok) in cases {
        assert_eq!(pattern(name).is_match(value), *ok, "{name} = {value:?}");
    }
}

// ---------------------------------------------------------------------------------------
// LocalStack: CloudFormation, IAM, Firehose, Secrets Manager, CloudWatch Logs over HTTP
// ---------------------------------------------------------------------------------------

/// LocalStack's AWS APIs as one account sees them.
struct LocalStack {
    addr: String,
    account: String,
}

/// One stack event: (logical id, resource type, status, reason).
type Event = (String, String, String, String);

/// A created stack.
struct Stack {
    outputs: BTreeMap<String, String>,
    events: Vec<Event>,
}

impl Stack {
    /// The resource types LocalStack reported as unsupported (deployed as a no-op fallback).
    fn unsupported(&self) -> BTreeSet<String> {
        self.events
            .iter()
            .filter(|e| {
                e.3.contains("is not supported but was deployed as a fallback")
            })
            .map(|e| e.1.clone())
            .collect()
    }

    /// The resource types that reached CREATE_COMPLETE and are not a fallback.
    fn created(&self) -> BTreeSet<String> {
        let unsupported = self.unsupported();
        self.events
            .iter()
            .filter(|e| e.2 == "CREATE_COMPLETE" && e.1 != "AWS::CloudFormation::Stack")
            .filter(|e| !unsupported.contains(&e.1))
            .map(|e| e.1.clone())
            .collect()
    }

    fn output(&self, key: &str) -> &str {
        self.outputs
            .get(key)
            .unwrap_or_else(|| panic!("no output {key}: {:?}", self.outputs))
    }
}

impl LocalStack {
    /// LocalStack as `account`; panics unless it runs every service of [`SERVICES`].
    fn new(account: &str) -> LocalStack {
        let url = common::localstack();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let ls = LocalStack {
            addr,
            account: account.into(),
        };
        let (status, body) = ls.http("GET", "/_localstack/health", &[], "");
        assert_eq!(status, 200, "LocalStack health at {url}: {body}");
        let health: Json = serde_json::from_str(&body).expect("health JSON");
        let missing: Vec<&str> = SERVICES
            .iter()
            .copied()
            .filter(|s| {
                !matches!(
                    health["services"][*s].as_str(),
                    Some("running" | "available")
                )
            })
            .collect();
        assert!(
            missing.is_empty(),
            "LocalStack at {url} (APIGW_TEST_LOCALSTACK) does not run {missing:?}: the \
             CloudFormation tests need its SERVICES to include {SERVICES:?} (the SERVICES= line \
             of scripts/emulators.sh). Restart it with scripts/emulators.sh stop && \
             scripts/emulators.sh start (tools from scripts/setup-tools.sh)."
        );
        ls
    }

    /// One HTTP/1.1 request (`Connection: close`): status and (dechunked) body.
    fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr)
            .unwrap_or_else(|e| panic!("LocalStack at {} (APIGW_TEST_LOCALSTACK): {e}", self.addr));
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf);
        common::response(&text).unwrap_or_else(|| panic!("not HTTP: {text}"))
    }

    /// Headers naming `service` and the account; the signature is a dummy (LocalStack does
    /// not check it, nor the date).
    fn auth(&self, service: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={}/20260101/{}/{service}/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature={}",
            self.account,
            common::REGION,
            "0".repeat(64)
        )
    }

    /// A query-protocol call (CloudFormation, IAM): the XML answer; panics on an error.
    fn query(&self, service: &str, version: &str, action: &str, params: &[(&str, &str)]) -> String {
        let mut form = format!("Action={action}&Version={version}");
        for (k, v) in params {
            form.push_str(&format!("&{}={}", common::encode(k), common::encode(v)));
        }
        let auth = self.auth(service);
        let (status, body) = self.http(
            "POST",
            "/",
            &[
                (
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
                ("X-Amz-Date", "20260101T000000Z"),
                ("Authorization", &auth),
            ],
            &form,
        );
        assert_eq!(status, 200, "{service} {action}: {body}");
        body
    }

    /// A JSON-protocol call (`X-Amz-Target`): the JSON answer; panics on an error.
    fn json(&self, service: &str, target: &str, request: Json) -> Json {
        let auth = self.auth(service);
        let (status, body) = self.http(
            "POST",
            "/",
            &[
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", target),
                ("X-Amz-Date", "20260101T000000Z"),
                ("Authorization", &auth),
            ],
            &request.to_string(),
        );
        assert_eq!(status, 200, "{target}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{target}: {e}: {body}"))
    }

    fn cfn(&self, action: &str, params: &[(&str, &str)]) -> String {
        self.query("cloudformation", "2010-05-15", action, params)
    }

    fn iam(&self, action: &str, params: &[(&str, &str)]) -> String {
        self.query("iam", "2010-05-08", action, params)
    }

    /// CreateStack with the template, then waits for it: its outputs and events. Panics with
    /// the events unless it reaches CREATE_COMPLETE.
    fn deploy(&self, name: &str, parameters: &[(&str, &str)]) -> Stack {
        let body = template_text();
        let mut params: Vec<(String, String)> = vec![
            ("StackName".into(), name.into()),
            ("TemplateBody".into(), body),
            (
                "Capabilities.member.1".into(),
                "CAPABILITY_NAMED_IAM".into(),
            ),
        ];
        for (i, (k, v)) in parameters.iter().enumerate() {
            params.push((
                format!("Parameters.member.{}.ParameterKey", i + 1),
                k.to_string(),
            ));
            params.push((
                format!("Parameters.member.{}.ParameterValue", i + 1),
                v.to_string(),
            ));
        }
        let borrowed: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.cfn("CreateStack", &borrowed);
        let deadline = Instant::now() + WAIT;
        let (status, xml) = loop {
            let xml = self.cfn("DescribeStacks", &[("StackName", name)]);
            let status = xml_text(&xml, "StackStatus").unwrap_or_default();
            if !status.ends_with("_IN_PROGRESS") {
                break (status, xml);
            }
            assert!(Instant::now() < deadline, "stack {name} still {status}");
            std::thread::sleep(Duration::from_millis(500));
        };
        let events = self.events(name);
        assert_eq!(
            status, "CREATE_COMPLETE",
            "stack {name}: {xml}\nevents: {events:#?}"
        );
        let outputs = xml_blocks(xml_block(&xml, "Outputs").unwrap_or_default(), "member")
            .into_iter()
            .map(|m| {
                (
                    xml_text(m, "OutputKey").unwrap(),
                    xml_text(m, "OutputValue").unwrap_or_default(),
                )
            })
            .collect();
        Stack { outputs, events }
    }

    fn events(&self, name: &str) -> Vec<Event> {
        let xml = self.cfn("DescribeStackEvents", &[("StackName", name)]);
        xml_blocks(&xml, "member")
            .into_iter()
            .map(|m| {
                let f = |tag| xml_text(m, tag).unwrap_or_default();
                (
                    f("LogicalResourceId"),
                    f("ResourceType"),
                    f("ResourceStatus"),
                    f("ResourceStatusReason"),
                )
            })
            .collect()
    }

    /// A role's trust policy, as IAM returns it (URL-encoded JSON).
    fn trust_policy(&self, role: &str) -> Json {
        let xml = self.iam("GetRole", &[("RoleName", role)]);
        let doc = xml_text(&xml, "AssumeRolePolicyDocument").expect("AssumeRolePolicyDocument");
        let parse =
            |s: &str| -> Json { serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}")) };
        match parse(&percent_decode(&doc)) {
            // The IRSA document is a JSON string in the template (its condition keys start with
            // the issuer): LocalStack stores that string as a JSON string literal, where IAM
            // would parse it. The document is the string's content.
            Json::String(text) => parse(&text),
            doc => doc,
        }
    }

    /// A role's inline policies by name, as IAM returns them.
    fn role_policies(&self, role: &str) -> BTreeMap<String, Json> {
        let xml = self.iam("ListRolePolicies", &[("RoleName", role)]);
        xml_blocks(xml_block(&xml, "PolicyNames").unwrap_or_default(), "member")
            .into_iter()
            .map(|name| {
                let name = unescape(name);
                let xml = self.iam(
                    "GetRolePolicy",
                    &[("RoleName", role), ("PolicyName", &name)],
                );
                let doc = xml_text(&xml, "PolicyDocument").expect("PolicyDocument");
                let doc = serde_json::from_str(&percent_decode(&doc))
                    .unwrap_or_else(|e| panic!("{e}: {doc}"));
                (name, doc)
            })
            .collect()
    }
}

/// The raw inner text of the first `<tag>…</tag>`.
fn xml_block<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    xml_blocks(xml, tag).into_iter().next()
}

/// The raw inner text of every `<tag>…</tag>` (not nested in one another).
fn xml_blocks<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let from = &rest[start + open.len()..];
        let Some(end) = from.find(&close) else { break };
        found.push(&from[..end]);
        rest = &from[end + close.len()..];
    }
    found
}

/// The unescaped text of the first `<tag>…</tag>`.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    xml_block(xml, tag).map(unescape)
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find(';') else {
            break;
        };
        let entity = &rest[i + 1..i + end];
        let c = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match c {
            Some(c) => out.push(c),
            None => out.push_str(&rest[i..i + end + 1]),
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

// ---------------------------------------------------------------------------------------
// deployed to LocalStack
// ---------------------------------------------------------------------------------------

/// The "done when": the role stack deploys, and the exporter, assuming that role
/// through STS, discovers APIs. The role lives in another account than the exporter's own
/// identity, so only credentials of the assumed role can list its REST API.
#[tokio::test(flavor = "multi_thread")]
async fn the_role_stack_deploys_on_localstack_and_the_exporter_discovers_apis_through_it() {
    let ls = LocalStack::new(ROLE_ACCOUNT);
    let tag = common::unique("cfnrole");
    let trusted = format!("arn:aws:iam::{EXPORTER_ACCOUNT}:root");
    let stack = ls.deploy(
        &tag,
        &[
            ("Name", &tag),
            ("TrustMode", "principal"),
            ("TrustedPrincipalArn", &trusted),
        ],
    );
    let role_arn = stack.output("RoleArn").to_string();
    assert_eq!(role_arn, format!("arn:aws:iam::{ROLE_ACCOUNT}:role/{tag}"));
    assert_eq!(
        stack.output("Install"),
        format!("config: targets[].role_arn: {role_arn}")
    );
    assert!(stack.unsupported().is_empty(), "{:#?}", stack.events);
    assert_eq!(
        stack.created(),
        BTreeSet::from(["AWS::IAM::Role".to_string()]),
        "the default stack is the role alone"
    );

    // As IAM holds it: exactly deploy/iam-policy.json, trusted by the exporter's account.
    assert_eq!(
        ls.role_policies(&tag),
        BTreeMap::from([("read-only".to_string(), iam_policy())])
    );
    assert_eq!(
        ls.trust_policy(&tag),
        json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "TrustedPrincipal", "Effect": "Allow",
            "Principal": {"AWS": trusted}, "Action": ["sts:AssumeRole", "sts:TagSession"]}]})
    );

    // The same API name in both accounts: the role's is the one to find.
    let name = format!("cfnrest-{tag}");
    let theirs =
        common::create_rest_api_with(&common::apigateway_in(ROLE_ACCOUNT), &name, &["prod"]).await;
    let ours = common::create_rest_api(&name, &["prod"]).await;
    let sts = common::proxy::Recorder::start(&common::localstack());
    let config = common::emulator_config(&tag, "")
        .replace(
            &format!("sts: {}", common::localstack()),
            &format!("sts: {}", sts.url()),
        )
        .replace(
            &format!("  - regions: [{}]\n", common::REGION),
            &format!(
                "  - regions: [{}]\n    role_arn: {role_arn}\n",
                common::REGION
            ),
        );
    assert!(
        config.contains(&format!("role_arn: {role_arn}")),
        "{config}"
    );
    let exporter = common::Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);
    let m = exporter.scrape_until(WAIT, |m| {
        !m.find("aws_apigateway_api_info", &[("api_id", &theirs)])
            .is_empty()
    });
    let info = m.find("aws_apigateway_api_info", &[("api_id", &theirs)]);
    assert_eq!(info[0].labels["account_id"], ROLE_ACCOUNT, "{:?}", info[0]);
    assert_eq!(info[0].labels["api_name"], name);
    assert!(
        m.find("aws_apigateway_api_info", &[("api_id", &ours)])
            .is_empty(),
        "the exporter's own account is not read"
    );
    assert_eq!(m.value("aws_apigateway_exporter_target_up", &[]), Some(1.0));

    // STS as it received the calls: AssumeRole of the stack's role.
    let assumed: Vec<String> = sts
        .calls()
        .iter()
        .map(|c| percent_decode(&String::from_utf8_lossy(&c.body)))
        .filter(|body| body.contains("Action=AssumeRole"))
        .collect();
    assert!(
        assumed
            .iter()
            .any(|b| b.split('&').any(|kv| kv == format!("RoleArn={role_arn}"))),
        "no AssumeRole of {role_arn} reached STS: {assumed:?}"
    );
}

/// `MonitoringAccount=true`: the role's policy, as IAM holds it, is
/// deploy/iam-policy-monitoring-account.json with `SourceAccountRoleArns` as the resource of
/// `SourceAccountRoles`.
#[tokio::test(flavor = "multi_thread")]
async fn the_monitoring_account_role_deploys_on_localstack() {
    let ls = LocalStack::new(MONITORING_ACCOUNT);
    let tag = common::unique("cfnmon");
    let issuer = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
    let roles = [
        "arn:aws:iam::222222222222:role/apigateway-exporter-read",
        "arn:aws:iam::333333333333:role/apigateway-exporter-read",
    ];
    let stack = ls.deploy(
        &tag,
        &[
            ("Name", &tag),
            ("OidcIssuer", issuer),
            ("MonitoringAccount", "true"),
            ("SourceAccountRoleArns", &roles.join(",")),
        ],
    );
    assert_eq!(
        stack.created(),
        BTreeSet::from(["AWS::IAM::Role".to_string()]),
        "{:#?}",
        stack.events
    );
    assert_eq!(
        ls.role_policies(&tag),
        BTreeMap::from([("read-only".to_string(), monitoring_policy(&roles))])
    );
}

/// IRSA's and Pod Identity's trust policies as IAM holds them after a deployment; the pod
/// identity association is one of LocalStack's unsupported types.
#[tokio::test(flavor = "multi_thread")]
async fn irsa_and_pod_identity_trust_policies_deploy_on_localstack() {
    let ls = LocalStack::new(TRUST_ACCOUNT);
    let issuer = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

    // IRSA, and the FilterLogEvents permission of AccessLogs log-group.
    let irsa = common::unique("cfnirsa");
    let group = format!("API-Gateway-Access-Logs_{irsa}");
    let stack = ls.deploy(
        &irsa,
        &[
            ("Name", &irsa),
            ("OidcIssuer", issuer),
            ("KubernetesNamespace", "observability"),
            ("ServiceAccountName", "apigw"),
            ("AccessLogs", "log-group"),
            ("AccessLogGroupName", &group),
        ],
    );
    let role_arn = stack.output("RoleArn");
    assert!(
        stack
            .output("Install")
            .contains(&format!("--set serviceAccount.irsaRoleArn={role_arn}")),
        "{:?}",
        stack.outputs
    );
    assert_eq!(
        ls.trust_policy(&irsa),
        json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "ExporterServiceAccount", "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{TRUST_ACCOUNT}:oidc-provider/{issuer}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{issuer}:sub"): "system:serviceaccount:observability:apigw",
                format!("{issuer}:aud"): "sts.amazonaws.com"}}}]})
    );
    let policies = ls.role_policies(&irsa);
    assert_eq!(policies["read-only"], iam_policy());
    let group_arn = format!(
        "arn:aws:logs:{}:{TRUST_ACCOUNT}:log-group:{group}",
        common::REGION
    );
    assert_eq!(
        policies["access-log-events"]["Statement"][0]["Resource"],
        json!([format!("{group_arn}:*"), format!("{group_arn}/Canary:*")])
    );
    assert_eq!(policies.len(), 2, "{policies:?}");
    assert_eq!(stack.output("AccessLogGroupArn"), format!("{group_arn}:*"));
    let groups = ls.json(
        "logs",
        "Logs_20140328.DescribeLogGroups",
        json!({"logGroupNamePrefix": group}),
    );
    assert_eq!(groups["logGroups"][0]["logGroupName"], json!(group));

    // Pod Identity, with the association (which LocalStack does not create).
    let pod = common::unique("cfnpod");
    let stack = ls.deploy(
        &pod,
        &[
            ("Name", &pod),
            ("TrustMode", "pod-identity"),
            ("EksClusterName", "prod-cluster"),
        ],
    );
    assert_eq!(
        ls.trust_policy(&pod),
        json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "AllowEksAuthToAssumeRoleForPodIdentity", "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "aws:RequestTag/kubernetes-namespace": "monitoring",
                "aws:RequestTag/kubernetes-service-account": "apigateway-exporter",
                "aws:RequestTag/eks-cluster-name": "prod-cluster"}}}]})
    );
    assert_eq!(
        stack.unsupported(),
        BTreeSet::from(["AWS::EKS::PodIdentityAssociation".to_string()]),
        "{:#?}",
        stack.events
    );
}

/// The metric stream and access log parts: every resource LocalStack supports is created and
/// read back from its service; the metric stream is reported unsupported.
#[tokio::test(flavor = "multi_thread")]
async fn the_stream_and_access_log_parts_deploy_on_localstack_except_the_metric_stream() {
    let ls = LocalStack::new(PARTS_ACCOUNT);
    let name = common::unique("cfnparts");
    let group = format!("/apigateway/{name}");
    let endpoint = "https://apigw-stream.example.com";
    let trusted = format!("arn:aws:iam::{EXPORTER_ACCOUNT}:role/apigateway-exporter");
    let stack = ls.deploy(
        &name,
        &[
            ("Name", &name),
            ("TrustMode", "principal"),
            ("TrustedPrincipalArn", &trusted),
            ("ExternalId", "apigateway-exporter"),
            ("ExporterEndpointUrl", endpoint),
            ("MetricStream", "true"),
            ("MetricStreamPercentiles", "p50,p90,p99"),
            ("MetricStreamLambda", "true"),
            ("AccessLogs", "firehose-and-log-group"),
            ("AccessLogGroupName", &group),
            ("ApiGatewayCloudWatchRole", "true"),
        ],
    );
    // Every resource type of the template but the pod identity association is in this
    // stack: LocalStack creates all of them but the metric stream.
    let all: BTreeSet<String> = resource_types().into_values().collect();
    let unsupported: BTreeSet<String> = UNSUPPORTED.iter().map(|t| t.to_string()).collect();
    assert!(unsupported.is_subset(&all));
    assert_eq!(
        stack.created(),
        all.difference(&unsupported).cloned().collect(),
        "{:#?}",
        stack.events
    );
    assert_eq!(
        stack.unsupported(),
        BTreeSet::from(["AWS::CloudWatch::MetricStream".to_string()]),
        "{:#?}",
        stack.events
    );

    // The exporter's role: read-only, trusted with the external id.
    assert_eq!(
        ls.trust_policy(&name)["Statement"][0]["Condition"],
        json!({"StringEquals": {"sts:ExternalId": "apigateway-exporter"}})
    );
    assert_eq!(ls.role_policies(&name).len(), 1);

    // The access keys: Firehose's secret format for an HTTP endpoint, {"api_key": ...}.
    let secret = |suffix: &str| {
        let s = ls.json(
            "secretsmanager",
            "secretsmanager.GetSecretValue",
            json!({"SecretId": format!("{name}/{suffix}")}),
        );
        let value: Json = serde_json::from_str(s["SecretString"].as_str().unwrap()).unwrap();
        let key = value["api_key"].as_str().expect("api_key").to_string();
        assert_eq!(value.as_object().unwrap().len(), 1, "{value}");
        assert!(
            key.len() == 64 && key.chars().all(|c| c.is_ascii_alphanumeric()),
            "{key}"
        );
        s["ARN"].as_str().unwrap().to_string()
    };
    let stream_secret = secret("metric-stream-access-key");
    let logs_secret = secret("access-logs-access-key");
    assert!(
        stack
            .output("MetricStreamAccessKey")
            .contains(&stream_secret)
    );
    assert!(stack.output("AccessLogsAccessKey").contains(&logs_secret));

    // The delivery streams, as Firehose describes them.
    let firehose_role = format!("arn:aws:iam::{PARTS_ACCOUNT}:role/{name}-firehose");
    let describe = |stream: &str| {
        let d = ls.json(
            "firehose",
            "Firehose_20150804.DescribeDeliveryStream",
            json!({"DeliveryStreamName": stream}),
        );
        d["DeliveryStreamDescription"].clone()
    };
    for (stream, url, secret, retry) in [
        (
            format!("{name}-metric-stream"),
            format!("{endpoint}/"),
            &stream_secret,
            300,
        ),
        (
            format!("amazon-apigateway-{name}"),
            format!("{endpoint}/access-logs"),
            &logs_secret,
            3600,
        ),
    ] {
        let d = describe(&stream);
        assert_eq!(d["DeliveryStreamType"], json!("DirectPut"), "{d}");
        let http = &d["Destinations"][0]["HttpEndpointDestinationDescription"];
        assert_eq!(http["EndpointConfiguration"]["Url"], json!(url), "{d}");
        assert!(
            http["EndpointConfiguration"].get("AccessKey").is_none(),
            "{d}"
        );
        assert_eq!(
            http["SecretsManagerConfiguration"],
            json!({"Enabled": true, "SecretARN": secret, "RoleARN": firehose_role}),
            "{d}"
        );
        assert_eq!(
            http["BufferingHints"],
            json!({"SizeInMBs": 1, "IntervalInSeconds": 60})
        );
        assert_eq!(http["RetryOptions"], json!({"DurationInSeconds": retry}));
        assert_eq!(http["S3BackupMode"], json!("FailedDataOnly"));
        assert_eq!(
            http["RequestConfiguration"]["ContentEncoding"],
            json!("GZIP")
        );
        assert_eq!(http["CloudWatchLoggingOptions"]["Enabled"], json!(true));
        assert_eq!(http["RoleARN"], json!(firehose_role));
    }
    let stream_arn = describe(&format!("{name}-metric-stream"))["DeliveryStreamARN"].clone();
    let logs_arn = describe(&format!("amazon-apigateway-{name}"))["DeliveryStreamARN"].clone();
    assert_eq!(json!(stack.output("MetricStreamFirehoseArn")), stream_arn);
    assert_eq!(json!(stack.output("AccessLogsDestinationArn")), logs_arn);

    // Who may write and read what.
    let policies = ls.role_policies(&format!("{name}-firehose"));
    let statements = policies["deliver"]["Statement"].as_array().unwrap();
    let sid = |s: &str| {
        statements
            .iter()
            .find(|x| x["Sid"] == json!(s))
            .unwrap()
            .clone()
    };
    assert_eq!(
        sid("AccessKeys")["Resource"],
        json!([stream_secret, logs_secret])
    );
    assert_eq!(
        ls.trust_policy(&format!("{name}-firehose"))["Statement"][0]["Condition"],
        json!({"StringEquals": {"sts:ExternalId": PARTS_ACCOUNT}})
    );
    let put = ls.role_policies(&format!("{name}-metric-stream"));
    assert_eq!(put["put-records"]["Statement"][0]["Resource"], stream_arn);
    assert_eq!(
        ls.trust_policy(&format!("{name}-metric-stream"))["Statement"][0]["Principal"],
        json!({"Service": "streams.metrics.cloudwatch.amazonaws.com"})
    );
    let put = ls.role_policies(&format!("{name}-access-logs"));
    assert_eq!(put["put-records"]["Statement"][0]["Resource"], logs_arn);

    // HTTP and WebSocket stages' log group, forwarded to the access log stream.
    let filters = ls.json(
        "logs",
        "Logs_20140328.DescribeSubscriptionFilters",
        json!({"logGroupName": group}),
    );
    assert_eq!(
        filters["subscriptionFilters"][0]["destinationArn"], logs_arn,
        "{filters}"
    );

    // The region's API Gateway CloudWatch Logs role.
    let account = common::apigateway_in(PARTS_ACCOUNT)
        .get_account()
        .send()
        .await
        .expect("GetAccount");
    assert_eq!(
        account.cloudwatch_role_arn(),
        Some(format!("arn:aws:iam::{PARTS_ACCOUNT}:role/{name}-apigateway-logs").as_str())
    );

    // The formats the stages are to use (stage settings belong to the stages' templates).
    assert_eq!(stack.output("AccessLogFormatHttp"), ACCESS_LOG_FORMAT);
    assert_eq!(
        stack.output("AccessLogFormatRest"),
        apigateway_exporter::model::rest_access_log_format()
    );
}
