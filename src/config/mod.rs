//! The YAML configuration: schema, defaults and validation.
//!
//! Pure apart from reading the file. Values are parsed into types that cannot hold an
//! invalid value ([`types`]): a duration or rate out of range, or poll timings that do not fit
//! together, or a regex that does not compile, are refused while parsing, with the key path
//! (`serde_path_to_error`). What no type expresses (region and ARN shapes, URLs, duplicates)
//! is checked by [`Config::validate`].
//! Every error names the key it is about, so `check-config` can point at the problem.

mod discovery;
mod env;
mod otlp;
mod poll;
mod stream;
mod targets;
pub mod types;
pub mod web;

use std::path::Path;

use serde::Deserialize;

use crate::model::Stat;
pub use discovery::{
    DiscoveryConfig, FullRefreshInterval, MANAGEMENT_QUOTA, ManagementRate, RefreshInterval,
};
pub use otlp::{OtlpConfig, OtlpProtocol, check_header};
pub use poll::{Backfill, IdleConfig, Interval, Lookback, Period, PollConfig, Settle, ShardConfig};
pub use stream::{AccessKey, StreamConfig};
use targets::validate_target;
pub use targets::{
    AccountId, ApiSelection, DetailedMetrics, RoleName, SourceAccount, SourceAccounts,
    StageSelection, TargetConfig, partition, role_account,
};
pub use types::{DurationIn, KeyError, NumberIn, Pattern, RequestRate, Statuses};

/// Why a configuration was refused. The `Display` text is what users see.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Yaml(String),
    #[error("invalid config: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl From<KeyError> for ConfigError {
    fn from(e: KeyError) -> ConfigError {
        invalid(e.key, e.reason)
    }
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub poll: PollConfig,
    pub discovery: DiscoveryConfig,
    pub targets: Vec<TargetConfig>,
    pub latency: LatencyConfig,
    /// API tags copied into `aws_apigateway_api_info` as `tag_<name>` labels.
    pub tags_as_labels: Vec<String>,
    pub otlp: OtlpConfig,
    pub aws: AwsConfig,
    pub access_logs: AccessLogsConfig,
    pub backends: BackendsConfig,
    /// This replica's share of the APIs, when several replicas split one inventory.
    pub shard: Option<ShardConfig>,
    pub cost: CostConfig,
    pub stream: StreamConfig,
}

/// Backends polled beside API Gateway.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendsConfig {
    /// Poll `AWS/Lambda` for the functions that back discovered routes.
    #[serde(deserialize_with = "types::number_or_text")]
    pub lambda: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    /// Percentiles (`p50`, `p99.9`) and `max`.
    pub statistics: Vec<String>,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            statistics: ["p50", "p90", "p99", "max"].map(String::from).to_vec(),
        }
    }
}

impl LatencyConfig {
    /// The configured statistics, parsed. Only valid after [`Config::validate`].
    pub fn stats(&self) -> Vec<Stat> {
        self.statistics
            .iter()
            .filter_map(|s| parse_latency_stat(s))
            .collect()
    }
}

fn parse_latency_stat(s: &str) -> Option<Stat> {
    if s == "max" {
        Some(Stat::Maximum)
    } else {
        Stat::parse_percentile(s)
    }
}

/// What access logs add: 429 counts, and with `filter_log_events` the responses by status
/// and response type. `metric_filter`: a CloudWatch Logs metric filter publishes 429 counts
/// as `metric_name` into `namespace` with the dimensions ApiId, Stage and Reason
/// (`THROTTLED` or `QUOTA_EXCEEDED`), read with GetMetricData. `filter_log_events`: the
/// exporter reads the events itself (FilterLogEvents on the stage's access log group, or
/// `log_group`) and counts each event once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogsConfig {
    pub mode: AccessLogsMode,
    pub namespace: String,
    pub metric_name: String,
    /// `filter_log_events`: read this log group instead of each stage's own.
    pub log_group: Option<String>,
    /// `filter_log_events`: the CloudWatch Logs filter pattern; by default the one that
    /// selects `statuses` and 429.
    pub filter_pattern: Option<String>,
    /// `filter_log_events`: the statuses `aws_apigateway_responses_total` counts.
    pub statuses: Statuses,
    /// `firehose`: the delivery stream's access key for the endpoint's `/access-logs`.
    pub access_key: Option<AccessKey>,
    /// `firehose`: this replica's name in the `receiver` label (default: the host name).
    pub receiver: Option<String>,
}

impl AccessLogsConfig {
    /// The filter pattern FilterLogEvents is sent.
    pub fn pattern(&self) -> String {
        self.filter_pattern
            .clone()
            .unwrap_or_else(|| self.statuses.filter_pattern(429))
    }
}

impl Default for AccessLogsConfig {
    fn default() -> Self {
        AccessLogsConfig {
            mode: AccessLogsMode::Off,
            namespace: "ApiGatewayAccessLogs".into(),
            metric_name: "ThrottledRequests".into(),
            log_group: None,
            filter_pattern: None,
            statuses: Statuses::default(),
            access_key: None,
            receiver: None,
        }
    }
}

impl AccessLogsConfig {
    /// The `receiver` label of the series counted from delivered lines: `receiver`, else
    /// the host name (a pod's name), else `exporter`.
    pub fn receiver_name(&self) -> String {
        self.receiver
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "exporter".into())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogsMode {
    #[default]
    Off,
    MetricFilter,
    FilterLogEvents,
    /// Firehose delivers the lines to the endpoint (`stream.listen_address`, `/access-logs`).
    Firehose,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    pub endpoints: Endpoints,
    /// GetMetricData calls per second per target, at most (the AWS quota is 50 per account
    /// and region, shared with everything else in the account); 0 = no limit.
    pub max_requests_per_second: RequestRate,
}

impl Default for AwsConfig {
    fn default() -> Self {
        const TEN_PER_SECOND: RequestRate = RequestRate::PerSecond(NumberIn::from_milli(10_000));
        AwsConfig {
            endpoints: Endpoints::default(),
            max_requests_per_second: TEN_PER_SECOND,
        }
    }
}

/// A price in USD, 0 to 1 per 1,000 metrics.
pub type Price = NumberIn<0, 1_000>;

/// AWS list price of GetMetricData in most regions: USD 0.01 per 1,000 metrics requested.
pub const DEFAULT_PRICE_PER_1000_METRICS: Price = Price::from_milli(10);

/// What CloudWatch costs, for `check-config`'s estimate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// USD per 1,000 metrics requested with GetMetricData (0.01 in most regions).
    pub price_per_1000_metrics: Price,
}

impl Default for CostConfig {
    fn default() -> Self {
        CostConfig {
            price_per_1000_metrics: DEFAULT_PRICE_PER_1000_METRICS,
        }
    }
}

/// Per-service endpoint overrides (emulators, VPC endpoints, FIPS endpoints).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Endpoints {
    pub cloudwatch: Option<String>,
    pub apigateway: Option<String>,
    pub apigatewayv2: Option<String>,
    pub logs: Option<String>,
    pub sts: Option<String>,
    /// CloudWatch Observability Access Manager (`source_accounts.linked`).
    pub oam: Option<String>,
}

/// A config file's text; the error names the file.
fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The YAML document of `text`: an empty file (or one with only comments) is an empty
/// mapping, "all defaults".
fn document(text: &str) -> Result<yaml_serde::Value, ConfigError> {
    let doc: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    Ok(if doc.is_null() {
        yaml_serde::Value::Mapping(yaml_serde::Mapping::new())
    } else {
        doc
    })
}

/// Deserializes a document; the error names the key it is about.
fn deserialize<T: serde::de::DeserializeOwned>(doc: yaml_serde::Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner().to_string();
        // A check across the fields of a section (a `KeyError`) names its field; serde
        // hands it up as text, `poll.settle: reason`, at the section's path.
        match reason.split_once(": ") {
            Some((key, rest)) if path != "." && key.starts_with(&format!("{path}.")) => {
                invalid(key, rest)
            }
            _ if path == "." => ConfigError::Yaml(reason),
            _ => invalid(path, reason),
        }
    })
}

impl Config {
    /// Reads, expands `${VAR}` from the environment, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::parse(&read(path)?, |name| std::env::var(name).ok())
    }

    /// Parses and validates config text; `env` resolves `${VAR}` inside string values.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut doc = document(text)?;
        env::expand(&mut doc, &env)?;
        let config: Config = deserialize(doc)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the schema alone cannot. Errors name the key, e.g. `targets[0].regions[1]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (i, t) in self.targets.iter().enumerate() {
            validate_target(&format!("targets[{i}]"), t)?;
        }
        let mut seen = Vec::new();
        for (i, s) in self.latency.statistics.iter().enumerate() {
            let key = format!("latency.statistics[{i}]");
            let stat = parse_latency_stat(s).ok_or_else(|| {
                invalid(
                    &key,
                    format!("{s:?} is not a statistic: use max or a percentile such as p50, p99 or p99.9"),
                )
            })?;
            if seen.contains(&stat) {
                return Err(invalid(key, format!("{s:?} is listed twice")));
            }
            seen.push(stat);
        }
        for (i, tag) in self.tags_as_labels.iter().enumerate() {
            if tag.is_empty() {
                return Err(invalid(format!("tags_as_labels[{i}]"), "must not be empty"));
            }
            if self.tags_as_labels[..i].contains(tag) {
                return Err(invalid(
                    format!("tags_as_labels[{i}]"),
                    format!("{tag:?} is listed twice"),
                ));
            }
        }
        let a = &self.access_logs;
        if a.namespace.is_empty() || a.namespace.starts_with("AWS/") {
            return Err(invalid(
                "access_logs.namespace",
                "must be your metric filter's own namespace (not empty, not AWS/...)",
            ));
        }
        if a.metric_name.is_empty() {
            return Err(invalid("access_logs.metric_name", "must not be empty"));
        }
        if a.log_group.as_deref() == Some("") {
            return Err(invalid("access_logs.log_group", "must not be empty"));
        }
        if a.filter_pattern
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            return Err(invalid(
                "access_logs.filter_pattern",
                "must not be empty (leave it out to select access_logs.statuses and 429)",
            ));
        }
        if a.mode == AccessLogsMode::Firehose && a.access_key.is_none() {
            return Err(invalid(
                "access_logs.access_key",
                "is required when access_logs.mode is firehose: the access key set on the Firehose delivery stream's HTTP endpoint (deliveries without it are refused)",
            ));
        }
        if let Some(r) = &a.receiver
            && (r.is_empty() || r.len() > 128)
        {
            return Err(invalid(
                "access_logs.receiver",
                "must be 1 to 128 characters (it becomes the receiver label)",
            ));
        }
        let st = &self.stream;
        if st.enabled && st.access_key.is_none() {
            return Err(invalid(
                "stream.access_key",
                "is required when stream.enabled is true: the access key set on the Firehose delivery stream's HTTP endpoint (requests without it are refused)",
            ));
        }
        if st.percentiles && self.poll.period() != 60 {
            return Err(invalid(
                "stream.percentiles",
                "needs poll.period 60s: a stream sends one-minute percentiles, which cannot be combined into longer periods",
            ));
        }
        let o = &self.otlp;
        if let Some(endpoint) = &o.endpoint {
            check_url("otlp.endpoint", endpoint)?;
        }
        for (i, (name, value)) in o.headers.iter().enumerate() {
            check_header(name, value)
                .map_err(|reason| invalid(format!("otlp.headers.{name}"), reason))?;
            if o.headers
                .keys()
                .take(i)
                .any(|n| n.eq_ignore_ascii_case(name))
            {
                return Err(invalid(
                    format!("otlp.headers.{name}"),
                    "is listed twice (header names are case-insensitive)",
                ));
            }
        }
        for key in o.resource_attributes.keys() {
            if key.is_empty() {
                return Err(invalid(
                    "otlp.resource_attributes",
                    "keys must not be empty",
                ));
            }
        }
        let e = &self.aws.endpoints;
        for (name, url) in [
            ("cloudwatch", &e.cloudwatch),
            ("apigateway", &e.apigateway),
            ("apigatewayv2", &e.apigatewayv2),
            ("logs", &e.logs),
            ("sts", &e.sts),
        ] {
            if let Some(url) = url {
                check_url(&format!("aws.endpoints.{name}"), url)?;
            }
        }
        Ok(())
    }
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let ok = ["http://", "https://"].iter().any(|scheme| {
        url.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
    }) && !url.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{url:?} is not an http:// or https:// URL"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::targets::{is_region, is_role_arn};
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, |_| None)
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = parse("# nothing\n").unwrap();
        assert_eq!(c.poll.interval(), Duration::from_secs(60));
        assert_eq!(c.poll.lookback(), 600);
        assert_eq!(c.poll.max_backfill(), 3 * 3600);
        assert!(c.targets.is_empty());
        assert_eq!(c.latency.stats().len(), 4);
    }

    #[test]
    fn stage_selection_forms() {
        let c = parse("targets: [{regions: [us-east-1], apis: {stages: all}}]").unwrap();
        assert_eq!(c.targets[0].apis.stages, StageSelection::All);
        let c =
            parse("targets: [{regions: [us-east-1], apis: {stages: [prod, $default]}}]").unwrap();
        assert_eq!(
            c.targets[0].apis.stages,
            StageSelection::Only(vec!["prod".into(), "$default".into()])
        );
        let c = parse("targets: [{regions: [us-east-1], apis: {stages: []}}]").unwrap();
        assert_eq!(c.targets[0].apis.stages, StageSelection::Only(vec![]));
        let err = parse("targets: [{regions: [us-east-1], apis: {stages: some}}]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("stages") && err.contains("`all` or a list"),
            "{err}"
        );
    }

    #[test]
    fn source_accounts_are_checked_and_name_the_key_at_fault() {
        let target = |sources: &str| {
            format!("targets:\n  - regions: [us-east-1]\n    source_accounts:\n{sources}")
        };
        let c = parse(&target(
            "      linked: true\n      role_name: org/reader\n      accounts:\n        - account_id: \"222222222222\"\n          role_arn: arn:aws:iam::222222222222:role/r\n        - account_id: \"012345678901\"\n",
        ))
        .unwrap();
        let s = c.targets[0].source_accounts.as_ref().unwrap();
        assert!(s.linked && s.include_monitoring_account);
        assert_eq!(s.accounts[1].account_id.as_str(), "012345678901");
        assert_eq!(
            s.role_name
                .as_ref()
                .unwrap()
                .arn("333333333333", "cn-north-1"),
            "arn:aws-cn:iam::333333333333:role/org/reader"
        );
        let refused = |sources: &str| match parse(&target(sources)) {
            Err(ConfigError::Invalid { key, reason }) => (key, reason),
            other => panic!("{other:?}"),
        };
        let (key, reason) = refused("      include_monitoring_account: true\n");
        assert_eq!(key, "targets[0].source_accounts");
        assert!(reason.contains("names no source account"), "{reason}");
        let (key, reason) = refused(
            "      accounts:\n        - account_id: \"222222222222\"\n          role_arn: arn:aws:iam::333333333333:role/r\n",
        );
        assert_eq!(key, "targets[0].source_accounts.accounts[0].role_arn");
        assert!(
            reason.contains("must be a role in 222222222222"),
            "{reason}"
        );
        let (key, _) = refused(
            "      accounts:\n        - account_id: \"222222222222\"\n        - account_id: \"222222222222\"\n",
        );
        assert_eq!(key, "targets[0].source_accounts.accounts[1].account_id");
        let (key, _) =
            refused("      role_name: reader\n      accounts: [{account_id: \"222222222222\"}]\n");
        assert_eq!(key, "targets[0].source_accounts.role_name");
        // Unquoted, a 12-digit id is a number to YAML (read as is); a shorter number may have
        // lost leading zeros: refused, with the quoted form.
        let c = parse(&target("      accounts: [{account_id: 123456789012}]\n")).unwrap();
        let s = c.targets[0].source_accounts.as_ref().unwrap();
        assert_eq!(s.accounts[0].account_id.as_str(), "123456789012");
        let err = parse(&target("      accounts: [{account_id: 12345678901}]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("quote it (\"012345678901\")"), "{err}");
        let err = parse(&target("      accounts: [{account_id: \"12345\"}]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not an AWS account id"), "{err}");
        let err = parse(&target(
            "      linked: true\n      role_name: \"bad name!\"\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not an IAM role name"), "{err}");
    }

    #[test]
    fn a_bad_regex_is_refused_with_its_key_while_parsing() {
        let err = parse("targets: [{regions: [us-east-1], apis: {include: [orders, 'v1(']}}]")
            .unwrap_err();
        let ConfigError::Invalid { key, reason } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(key, "targets[0].apis.include[1]");
        assert!(reason.starts_with("invalid regular expression"), "{reason}");
        let c = parse("targets: [{regions: [us-east-1], apis: {exclude: ['^legacy-']}}]").unwrap();
        assert!(c.targets[0].apis.exclude[0].is_match("legacy-orders"));
        assert!(!c.targets[0].apis.exclude[0].is_match("orders"));
    }

    #[test]
    fn region_and_arn_shapes() {
        for ok in [
            "us-east-1",
            "eu-west-2",
            "us-gov-west-1",
            "ap-southeast-5",
            "cn-north-1",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "us-east",
            "useast1",
            "US-EAST-1",
            "us-east-01",
            "us--1",
            "us-east-1a",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
        assert!(is_role_arn("arn:aws:iam::123456789012:role/x"));
        assert!(is_role_arn("arn:aws-us-gov:iam::123456789012:role/path/x"));
        assert!(!is_role_arn("arn:aws:iam::12345:role/x"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:user/x"));
    }
}
