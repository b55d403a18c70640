//! The YAML configuration: schema, defaults and validation.
//!
//! Pure apart from reading the file. Values are parsed into types that cannot hold an
//! invalid value ([`types`]): a duration or rate out of range, or poll timings that do not fit
//! together, are refused while parsing, with the key path (`serde_path_to_error`). What no
//! type expresses (regexes, region and ARN shapes, URLs) is checked by [`Config::validate`].
//! Every error names the key it is about, so `check-config` can point at the problem.

mod env;
pub mod types;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::inventory::ApiFilter;
use crate::model::{ApiType, Stat};
pub use types::{DurationIn, KeyError, NumberIn, RequestRate};
use types::{human, number_or_text};

/// `poll.interval` and `otlp.interval`: 1 s to a day.
pub type Interval = DurationIn<1, 86_400>;
/// `poll.period`: a whole number of minutes up to a day.
pub type Period = DurationIn<60, 86_400>;
/// `poll.lookback`: one minute to 3 h (every cycle re-reads the whole window).
pub type Lookback = DurationIn<60, 10_800>;
/// `poll.settle`: 0 to 3 h.
pub type Settle = DurationIn<0, 10_800>;
/// `poll.max_backfill`: up to what CloudWatch keeps of the coarsest period (455 days).
pub type Backfill = DurationIn<60, 39_312_000>;
/// `discovery.refresh_interval`: 1 s to a week.
pub type RefreshInterval = DurationIn<1, 604_800>;

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
    /// This replica's share of the APIs, when several replicas split one inventory.
    pub shard: Option<ShardConfig>,
    pub cost: CostConfig,
}

/// Replica `index` of `total` exports the APIs whose id hashes to `index` (a stable FNV-1a
/// hash, so every replica agrees without talking to the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawShard")]
pub struct ShardConfig {
    index: u32,
    total: u32,
}

impl ShardConfig {
    /// Replica `index` of `total` (counting from 0).
    pub fn new(index: u32, total: u32) -> Result<ShardConfig, KeyError> {
        if total == 0 {
            return Err(KeyError::new("shard.total", "must be at least 1"));
        }
        if index >= total {
            return Err(KeyError::new(
                "shard.index",
                format!("must be below shard.total ({total}): shards count from 0"),
            ));
        }
        Ok(ShardConfig { index, total })
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn total(self) -> u32 {
        self.total
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with index and total")]
struct RawShard {
    #[serde(deserialize_with = "number_or_text")]
    index: u32,
    #[serde(deserialize_with = "number_or_text")]
    total: u32,
}

impl TryFrom<RawShard> for ShardConfig {
    type Error = KeyError;
    fn try_from(raw: RawShard) -> Result<ShardConfig, KeyError> {
        ShardConfig::new(raw.index, raw.total)
    }
}

/// When and how far back CloudWatch is read. The fields only exist together, checked as a
/// whole ([`PollConfig::new`]), so every combination the loop sees works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPoll")]
pub struct PollConfig {
    interval: Interval,
    period: Period,
    lookback: Lookback,
    settle: Settle,
    max_backfill: Backfill,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping of poll settings")]
struct RawPoll {
    interval: Interval,
    period: Period,
    lookback: Lookback,
    settle: Settle,
    max_backfill: Backfill,
}

impl Default for RawPoll {
    fn default() -> Self {
        let d = PollConfig::DEFAULT;
        RawPoll {
            interval: d.interval,
            period: d.period,
            lookback: d.lookback,
            settle: d.settle,
            max_backfill: d.max_backfill,
        }
    }
}

impl TryFrom<RawPoll> for PollConfig {
    type Error = KeyError;
    fn try_from(r: RawPoll) -> Result<PollConfig, KeyError> {
        PollConfig::checked(r.interval, r.period, r.lookback, r.settle, r.max_backfill)
    }
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig::DEFAULT
    }
}

/// How long CloudWatch keeps datapoints of a period: 1-minute data 15 days, 5-minute data
/// 63 days, hourly data 455 days.
fn retention(period: Duration) -> Duration {
    let days = match period.as_secs() {
        0..300 => 15,
        300..3600 => 63,
        _ => 455,
    };
    Duration::from_secs(days * 86_400)
}

impl PollConfig {
    /// The defaults, checked when the crate builds.
    pub const DEFAULT: PollConfig = PollConfig {
        interval: Interval::from_secs(60),
        period: Period::from_secs(60),
        lookback: Lookback::from_secs(600),
        settle: Settle::from_secs(180),
        max_backfill: Backfill::from_secs(3 * 3600),
    };

    /// Poll timings from plain durations; the error names the key at fault.
    pub fn new(
        interval: Duration,
        period: Duration,
        lookback: Duration,
        settle: Duration,
        max_backfill: Duration,
    ) -> Result<PollConfig, ConfigError> {
        let key = |k: &'static str| move |reason: String| invalid(format!("poll.{k}"), reason);
        PollConfig::checked(
            Interval::new(interval).map_err(key("interval"))?,
            Period::new(period).map_err(key("period"))?,
            Lookback::new(lookback).map_err(key("lookback"))?,
            Settle::new(settle).map_err(key("settle"))?,
            Backfill::new(max_backfill).map_err(key("max_backfill"))?,
        )
        .map_err(ConfigError::from)
    }

    /// The checks across fields.
    fn checked(
        interval: Interval,
        period: Period,
        lookback: Lookback,
        settle: Settle,
        max_backfill: Backfill,
    ) -> Result<PollConfig, KeyError> {
        if period.as_secs() % 60 != 0 || period.subsec_nanos() != 0 {
            return Err(KeyError::new(
                "poll.period",
                format!(
                    "must be a whole multiple of 60s (CloudWatch's regular resolution), got {period}"
                ),
            ));
        }
        if *lookback < *period {
            return Err(KeyError::new(
                "poll.lookback",
                "must be at least one poll.period, or no period is ever read",
            ));
        }
        // The settled period (the one before the period `settle` ago) must still be inside the
        // window, or the quantile and max gauges never have a value to report.
        if *settle + *period > *lookback {
            return Err(KeyError::new(
                "poll.settle",
                format!(
                    "must be at most poll.lookback - poll.period ({}), or no settled period is ever inside the window",
                    human(*lookback - *period)
                ),
            ));
        }
        if *max_backfill < *lookback {
            return Err(KeyError::new(
                "poll.max_backfill",
                format!("must be at least poll.lookback ({lookback})"),
            ));
        }
        let keep = retention(*period);
        if *max_backfill > keep {
            return Err(KeyError::new(
                "poll.max_backfill",
                format!(
                    "must be at most {} for a {period} period: CloudWatch keeps that data no longer",
                    human(keep)
                ),
            ));
        }
        Ok(PollConfig {
            interval,
            period,
            lookback,
            settle,
            max_backfill,
        })
    }

    /// How often a cycle runs.
    pub fn interval(&self) -> Duration {
        *self.interval
    }

    /// The CloudWatch period, in seconds (a multiple of 60).
    pub fn period(&self) -> i64 {
        self.period.secs()
    }

    /// How far back each cycle re-reads, in seconds.
    pub fn lookback(&self) -> i64 {
        self.lookback.secs()
    }

    /// How old a period must be to be final, in seconds.
    pub fn settle(&self) -> i64 {
        self.settle.secs()
    }

    /// How far back the first cycle after an outage reads, at most, in seconds.
    pub fn max_backfill(&self) -> i64 {
        self.max_backfill.secs()
    }

    /// This config with another interval (the demo's faster default).
    pub fn with_interval(mut self, interval: Interval) -> PollConfig {
        self.interval = interval;
        self
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    pub refresh_interval: RefreshInterval,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        const REFRESH: RefreshInterval = RefreshInterval::from_secs(600);
        DiscoveryConfig {
            refresh_interval: REFRESH,
        }
    }
}

/// One account, polled in every region listed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub regions: Vec<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub apis: ApiSelection,
}

/// Which APIs and stages of a target are exported.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSelection {
    pub types: Vec<ApiType>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub stages: StageSelection,
    pub detailed_metrics: DetailedMetrics,
}

impl Default for ApiSelection {
    fn default() -> Self {
        ApiSelection {
            types: ApiType::ALL.to_vec(),
            include: Vec::new(),
            exclude: Vec::new(),
            tags: BTreeMap::new(),
            stages: StageSelection::All,
            detailed_metrics: DetailedMetrics::Auto,
        }
    }
}

/// `all`, a list of stage names, or `[]` for API-level metrics only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StageSelection {
    #[default]
    All,
    Only(Vec<String>),
}

impl StageSelection {
    pub fn selects(&self, stage: &str) -> bool {
        match self {
            StageSelection::All => true,
            StageSelection::Only(names) => names.iter().any(|n| n == stage),
        }
    }
}

impl<'de> Deserialize<'de> for StageSelection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StageSelection;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`all` or a list of stage names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StageSelection, E> {
                match v {
                    "all" => Ok(StageSelection::All),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StageSelection, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(StageSelection::Only(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether route-level (detailed) metrics are read. Route-level families arrive with the
/// per-route issue; the key is accepted and validated now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetailedMetrics {
    #[default]
    Auto,
    On,
    Off,
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317 by convention).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318 by convention).
    Http,
}

/// `otlp.protocol == OtlpProtocol::Http` reads "the file sets protocol: http" (an unset
/// protocol equals neither: the environment decides, see [`crate::otlp`]).
impl PartialEq<OtlpProtocol> for Option<OtlpProtocol> {
    fn eq(&self, other: &OtlpProtocol) -> bool {
        self.as_ref() == Some(other)
    }
}

/// OTLP push of the snapshot and the self-metrics ([`crate::otlp`]). `endpoint`, `protocol`
/// and `headers` fall back to the standard `OTEL_EXPORTER_OTLP_*` environment variables
/// where the file is silent (precedence in `docs/otlp.md`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    #[serde(deserialize_with = "number_or_text")]
    pub enabled: bool,
    /// Collector URL; for `http` the base URL that `/v1/metrics` is appended to.
    pub endpoint: Option<String>,
    pub protocol: Option<OtlpProtocol>,
    pub interval: Interval,
    /// Sent with every export (auth tokens): never logged, and redacted from `Debug`.
    pub headers: BTreeMap<String, String>,
    pub resource_attributes: BTreeMap<String, String>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        const INTERVAL: Interval = Interval::from_secs(60);
        OtlpConfig {
            enabled: false,
            endpoint: None,
            protocol: None,
            interval: INTERVAL,
            headers: BTreeMap::new(),
            resource_attributes: BTreeMap::new(),
        }
    }
}

/// Header names only: their values are credentials.
impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("enabled", &self.enabled)
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("interval", &self.interval)
            .field(
                "headers",
                &self
                    .headers
                    .keys()
                    .map(|k| (k.as_str(), "<redacted>"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("resource_attributes", &self.resource_attributes)
            .finish()
    }
}

/// Where 429 counts come from: API Gateway access logs. `metric_filter`: a CloudWatch Logs
/// metric filter publishes `metric_name` into `namespace` with the dimensions ApiId, Stage
/// and Reason (`THROTTLED` or `QUOTA_EXCEEDED`), read with GetMetricData. `filter_log_events`:
/// the exporter reads the 429 events itself (FilterLogEvents on the stage's access log group,
/// or `log_group`) and counts each event once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogsConfig {
    pub mode: AccessLogsMode,
    pub namespace: String,
    pub metric_name: String,
    /// `filter_log_events`: read this log group instead of each stage's own.
    pub log_group: Option<String>,
    /// `filter_log_events`: the CloudWatch Logs filter pattern selecting 429 events.
    pub filter_pattern: String,
}

impl Default for AccessLogsConfig {
    fn default() -> Self {
        AccessLogsConfig {
            mode: AccessLogsMode::Off,
            namespace: "ApiGatewayAccessLogs".into(),
            metric_name: "ThrottledRequests".into(),
            log_group: None,
            filter_pattern: "{ $.status = 429 }".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogsMode {
    #[default]
    Off,
    MetricFilter,
    FilterLogEvents,
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
}

impl Config {
    /// Reads, expands `${VAR}` from the environment, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, |name| std::env::var(name).ok())
    }

    /// Parses and validates config text; `env` resolves `${VAR}` inside string values.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut doc: yaml_serde::Value =
            yaml_serde::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        // An empty file (or one with only comments) means "all defaults".
        if doc.is_null() {
            doc = yaml_serde::Value::Mapping(yaml_serde::Mapping::new());
        }
        env::expand(&mut doc, &env)?;
        let config: Config = serde_path_to_error::deserialize(doc).map_err(|e| {
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
        })?;
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
        let o = &self.otlp;
        if let Some(endpoint) = &o.endpoint {
            check_url("otlp.endpoint", endpoint)?;
        }
        for (i, (name, value)) in o.headers.iter().enumerate() {
            crate::otlp::check_header(name, value)
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

fn validate_target(key: &str, t: &TargetConfig) -> Result<(), ConfigError> {
    if t.regions.is_empty() {
        return Err(invalid(
            format!("{key}.regions"),
            "must list at least one region, e.g. [us-east-1]",
        ));
    }
    for (i, region) in t.regions.iter().enumerate() {
        if !is_region(region) {
            return Err(invalid(
                format!("{key}.regions[{i}]"),
                format!("{region:?} is not an AWS region name (like us-east-1 or eu-west-2)"),
            ));
        }
        if t.regions[..i].contains(region) {
            return Err(invalid(
                format!("{key}.regions[{i}]"),
                format!("{region:?} is listed twice"),
            ));
        }
    }
    if let Some(arn) = &t.role_arn {
        if !is_role_arn(arn) {
            return Err(invalid(
                format!("{key}.role_arn"),
                format!("{arn:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/name)"),
            ));
        }
    } else if t.external_id.is_some() {
        return Err(invalid(
            format!("{key}.external_id"),
            "only applies together with role_arn",
        ));
    }
    let apis = &t.apis;
    if apis.types.is_empty() {
        return Err(invalid(
            format!("{key}.apis.types"),
            "must list at least one of rest, http, websocket",
        ));
    }
    for (i, ty) in apis.types.iter().enumerate() {
        if apis.types[..i].contains(ty) {
            return Err(invalid(
                format!("{key}.apis.types[{i}]"),
                format!("{ty} is listed twice"),
            ));
        }
    }
    if let StageSelection::Only(names) = &apis.stages {
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(
                    format!("{key}.apis.stages[{i}]"),
                    "must not be empty",
                ));
            }
        }
    }
    ApiFilter::new(apis).map_err(|(field, i, e)| {
        invalid(
            format!("{key}.apis.{field}[{i}]"),
            format!("invalid regular expression: {e}"),
        )
    })?;
    Ok(())
}

fn is_region(s: &str) -> bool {
    // partition-prefix (us, eu, ap, us-gov, cn, ...), a direction word, then a number.
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1]
            .parse::<u8>()
            .is_ok_and(|n| n > 0 && !parts[parts.len() - 1].starts_with('0'))
}

fn is_role_arn(s: &str) -> bool {
    let mut parts = s.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|r| !r.is_empty())
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
