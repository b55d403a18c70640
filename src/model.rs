//! The shared vocabulary of the pipeline: API types, the CloudWatch metrics behind each family
//! of the contract ([`crate::contract`]), CloudWatch statistics and the labels that identify a
//! series. Every other module speaks in these terms.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::contract::{self, Def};

/// The CloudWatch namespace of API Gateway metrics.
pub const NAMESPACE: &str = "AWS/ApiGateway";
/// The CloudWatch namespace of Lambda metrics (`backends.lambda`).
pub const LAMBDA_NAMESPACE: &str = "AWS/Lambda";

/// The JSON access log format the exporter counts responses from (the README shows it).
/// `status` is a bare number, so CloudWatch Logs filter patterns can compare it;
/// `responseLatency` (milliseconds) gives a canary release its latency; quoted, so a line
/// stays JSON whatever API Gateway writes for it.
pub const ACCESS_LOG_FORMAT: &str = r#"{"requestId":"$context.requestId","requestTimeEpoch":$context.requestTimeEpoch,"apiId":"$context.apiId","stage":"$context.stage","status":$context.status,"responseLatency":"$context.responseLatency","responseType":"$context.error.responseType","resourcePath":"$context.resourcePath","httpMethod":"$context.httpMethod","routeKey":"$context.routeKey"}"#;

/// The field a REST stage's format adds to [`ACCESS_LOG_FORMAT`] to split its lines into its
/// canary's and its base's (HTTP and WebSocket APIs have no canary releases).
pub const REST_CANARY_FIELD: &str = r#""isCanaryRequest":"$context.isCanaryRequest""#;

/// [`ACCESS_LOG_FORMAT`] with [`REST_CANARY_FIELD`]: the format for REST stages.
pub fn rest_access_log_format() -> String {
    let open = ACCESS_LOG_FORMAT.trim_end_matches('}');
    format!("{open},{REST_CANARY_FIELD}}}")
}

/// What a stage's access log format lacks for counting responses, in words (empty: nothing).
/// Field names are those of [`ACCESS_LOG_FORMAT`]; other fields may come and go.
pub fn access_log_gaps(format: &str, api_type: ApiType) -> Vec<String> {
    if !format.trim_start().starts_with('{') {
        return vec!["JSON (the format is not a JSON object: use the README's format)".into()];
    }
    let has = |field: &str, variable: &str| log_field(format, field, variable);
    let mut gaps = Vec::new();
    for (field, variable) in [
        ("apiId", "apiId"),
        ("stage", "stage"),
        ("responseType", "error.responseType"),
    ] {
        if has(field, variable).is_none() {
            gaps.push(format!("\"{field}\":\"$context.{variable}\""));
        }
    }
    match has("status", "status") {
        None => gaps.push("\"status\":$context.status".into()),
        Some(true) => gaps.push(
            "\"status\":$context.status as a number (without quotes, so filter patterns can compare it)".into(),
        ),
        Some(false) => {}
    }
    let route: &[(&str, &str)] = match api_type {
        ApiType::Rest => &[
            ("resourcePath", "resourcePath"),
            ("httpMethod", "httpMethod"),
        ],
        ApiType::Http | ApiType::Websocket => &[("routeKey", "routeKey")],
    };
    for (field, variable) in route {
        if has(field, variable).is_none() {
            gaps.push(format!(
                "\"{field}\":\"$context.{variable}\" (for per-route responses)"
            ));
        }
    }
    gaps
}

/// Whether a JSON access log format has `"field": $context.variable` (`Some(false)`) or
/// `"field": "$context.variable"` (`Some(true)`, quoted), or not (`None`).
fn log_field(format: &str, field: &str, variable: &str) -> Option<bool> {
    let re =
        regex::Regex::new(r#""([A-Za-z0-9_]+)"\s*:\s*("?)\$context\.([A-Za-z0-9_.]+)"#).ok()?;
    re.captures_iter(format)
        .find(|c| &c[1] == field && &c[3] == variable)
        .map(|c| !c[2].is_empty())
}

/// Whether a format carries `responseLatency`, which a canary release's latency needs.
pub fn logs_latency(format: &str) -> bool {
    log_field(format, "responseLatency", "responseLatency").is_some()
}

/// Whether a REST format carries `isCanaryRequest`, which splits a stage's log into its
/// canary's requests and its base's.
pub fn logs_canary_split(format: &str) -> bool {
    log_field(format, "isCanaryRequest", "isCanaryRequest").is_some()
}

/// Whether a format carries `requestTimeEpoch`, which puts a line delivered by Firehose in
/// the minute of its request (CloudWatch Logs events carry their own time).
pub fn logs_request_time(format: &str) -> bool {
    log_field(format, "requestTimeEpoch", "requestTimeEpoch").is_some()
}

/// The outcome of one AWS call, as the self-metrics' `result` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallResult {
    Success,
    Error,
    Throttled,
}

impl CallResult {
    pub const ALL: [CallResult; 3] = [
        CallResult::Success,
        CallResult::Error,
        CallResult::Throttled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Success => "success",
            CallResult::Error => "error",
            CallResult::Throttled => "throttled",
        }
    }
}

/// The three kinds of API Gateway API. REST APIs live in the `apigateway` service and are
/// keyed by name in CloudWatch; HTTP and WebSocket APIs live in `apigatewayv2`, keyed by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiType {
    Rest,
    Http,
    Websocket,
}

impl ApiType {
    pub const ALL: [ApiType; 3] = [ApiType::Rest, ApiType::Http, ApiType::Websocket];

    /// The `api_type` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiType::Rest => "rest",
            ApiType::Http => "http",
            ApiType::Websocket => "websocket",
        }
    }

    /// The CloudWatch dimension that names the API: REST uses the API *name*.
    pub fn api_dimension(self) -> &'static str {
        match self {
            ApiType::Rest => "ApiName",
            ApiType::Http | ApiType::Websocket => "ApiId",
        }
    }
}

impl fmt::Display for ApiType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a family is exposed to Prometheus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FamilyKind {
    /// A counter built from the CloudWatch `Sum` of each period.
    Counter,
    /// A summary: `_sum`/`_count` counters from `Sum`/`SampleCount`, quantile gauges from
    /// percentiles, and a companion `_max_seconds` gauge from `Maximum`.
    Summary,
}

/// A metric family of the contract that is read from CloudWatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Requests,
    Errors4xx,
    Errors5xx,
    CacheHits,
    CacheMisses,
    ProcessedBytes,
    WsConnects,
    WsMessages,
    WsClientErrors,
    WsIntegrationErrors,
    WsExecutionErrors,
    Latency,
    IntegrationLatency,
    /// 429s answered because a throttle limit was hit (access logs, `THROTTLED`).
    Throttled,
    /// 429s answered because a usage plan quota ran out (access logs, `QUOTA_EXCEEDED`).
    QuotaExceeded,
    /// Responses by status and response type (access log events). One query per stage
    /// answers many series, per stage and per route: see [`Cause`].
    Responses,
    /// Every response of a REST stage's canary release, by status and response type (the
    /// canary's own access log group, read in full). Split like [`Family::Responses`].
    CanaryResponses,
    /// Every response of the base deployment of a REST stage with a canary: the stage's
    /// access log lines with `isCanaryRequest` false. Split like [`Family::Responses`].
    CanaryBaseResponses,
    /// Response latency of a REST stage's canary release (the same events).
    CanaryLatency,
    /// Lambda functions behind discovered routes (`backends.lambda`).
    LambdaInvocations,
    LambdaErrors,
    LambdaThrottles,
    LambdaDuration,
}

/// Static facts about one family: its definitions in the contract (stage and route level,
/// and the companion `_max_seconds` gauges of a summary) and the CloudWatch metric behind it
/// for each API type (`None` where AWS publishes nothing for that type).
#[derive(Debug)]
pub struct FamilyInfo {
    pub stage: &'static Def,
    /// `None`: counted per stage only (access logs).
    pub route: Option<&'static Def>,
    /// The `_max_seconds` gauges of a summary, stage and route level.
    pub max: Option<(&'static Def, &'static Def)>,
    /// Multiplier from the CloudWatch unit to the exported base unit (ms → s).
    pub scale: f64,
    pub rest: Option<&'static str>,
    pub http: Option<&'static str>,
    pub websocket: Option<&'static str>,
    /// Only meaningful when the stage has a cache cluster; skipped otherwise to save queries.
    pub needs_cache: bool,
    /// The `reason` label of access-log families, which share one Prometheus name.
    pub reason: Option<&'static str>,
    /// Read from access logs, not from a CloudWatch metric of API Gateway.
    pub logs: bool,
    /// The `AWS/Lambda` metric of a Lambda family.
    pub lambda: Option<&'static str>,
}

impl FamilyInfo {
    /// How the store treats the family: a summary, or a plain counter.
    pub fn kind(&self) -> FamilyKind {
        match self.stage.kind {
            contract::Type::Summary => FamilyKind::Summary,
            _ => FamilyKind::Counter,
        }
    }
}

impl Family {
    pub const ALL: [Family; 23] = [
        Family::Requests,
        Family::Errors4xx,
        Family::Errors5xx,
        Family::CacheHits,
        Family::CacheMisses,
        Family::ProcessedBytes,
        Family::WsConnects,
        Family::WsMessages,
        Family::WsClientErrors,
        Family::WsIntegrationErrors,
        Family::WsExecutionErrors,
        Family::Latency,
        Family::IntegrationLatency,
        Family::Throttled,
        Family::QuotaExceeded,
        Family::Responses,
        Family::CanaryResponses,
        Family::CanaryBaseResponses,
        Family::CanaryLatency,
        Family::LambdaInvocations,
        Family::LambdaErrors,
        Family::LambdaThrottles,
        Family::LambdaDuration,
    ];

    pub fn info(self) -> &'static FamilyInfo {
        const fn counter(
            stage: &'static Def,
            route: &'static Def,
            rest: Option<&'static str>,
            http: Option<&'static str>,
            websocket: Option<&'static str>,
        ) -> FamilyInfo {
            FamilyInfo {
                stage,
                route: Some(route),
                max: None,
                scale: 1.0,
                rest,
                http,
                websocket,
                needs_cache: false,
                reason: None,
                logs: false,
                lambda: None,
            }
        }
        const fn lambda(stage: &'static Def, metric: &'static str) -> FamilyInfo {
            FamilyInfo {
                route: None,
                lambda: Some(metric),
                ..counter(stage, stage, None, None, None)
            }
        }
        const fn access_log(reason: &'static str) -> FamilyInfo {
            FamilyInfo {
                route: None,
                reason: Some(reason),
                logs: true,
                ..counter(&c::THROTTLED, &c::THROTTLED, None, None, None)
            }
        }
        use crate::contract as c;
        static REQUESTS: FamilyInfo = counter(
            &c::REQUESTS,
            &c::ROUTE_REQUESTS,
            Some("Count"),
            Some("Count"),
            None,
        );
        static E4XX: FamilyInfo = counter(
            &c::ERRORS_4XX,
            &c::ROUTE_ERRORS_4XX,
            Some("4XXError"),
            Some("4xx"),
            None,
        );
        static E5XX: FamilyInfo = counter(
            &c::ERRORS_5XX,
            &c::ROUTE_ERRORS_5XX,
            Some("5XXError"),
            Some("5xx"),
            None,
        );
        static CACHE_HITS: FamilyInfo = FamilyInfo {
            needs_cache: true,
            ..counter(
                &c::CACHE_HITS,
                &c::ROUTE_CACHE_HITS,
                Some("CacheHitCount"),
                None,
                None,
            )
        };
        static CACHE_MISSES: FamilyInfo = FamilyInfo {
            needs_cache: true,
            ..counter(
                &c::CACHE_MISSES,
                &c::ROUTE_CACHE_MISSES,
                Some("CacheMissCount"),
                None,
                None,
            )
        };
        static BYTES: FamilyInfo = counter(
            &c::PROCESSED_BYTES,
            &c::ROUTE_PROCESSED_BYTES,
            None,
            Some("DataProcessed"),
            None,
        );
        static WS_CONNECTS: FamilyInfo = counter(
            &c::WS_CONNECTS,
            &c::ROUTE_WS_CONNECTS,
            None,
            None,
            Some("ConnectCount"),
        );
        static WS_MESSAGES: FamilyInfo = counter(
            &c::WS_MESSAGES,
            &c::ROUTE_WS_MESSAGES,
            None,
            None,
            Some("MessageCount"),
        );
        static WS_CLIENT: FamilyInfo = counter(
            &c::WS_CLIENT_ERRORS,
            &c::ROUTE_WS_CLIENT_ERRORS,
            None,
            None,
            Some("ClientError"),
        );
        static WS_INTEGRATION: FamilyInfo = counter(
            &c::WS_INTEGRATION_ERRORS,
            &c::ROUTE_WS_INTEGRATION_ERRORS,
            None,
            None,
            Some("IntegrationError"),
        );
        static WS_EXECUTION: FamilyInfo = counter(
            &c::WS_EXECUTION_ERRORS,
            &c::ROUTE_WS_EXECUTION_ERRORS,
            None,
            None,
            Some("ExecutionError"),
        );
        static LATENCY: FamilyInfo = FamilyInfo {
            max: Some((&c::LATENCY_MAX, &c::ROUTE_LATENCY_MAX)),
            scale: 0.001,
            ..counter(
                &c::LATENCY,
                &c::ROUTE_LATENCY,
                Some("Latency"),
                Some("Latency"),
                None,
            )
        };
        static INTEGRATION_LATENCY: FamilyInfo = FamilyInfo {
            max: Some((
                &c::INTEGRATION_LATENCY_MAX,
                &c::ROUTE_INTEGRATION_LATENCY_MAX,
            )),
            scale: 0.001,
            ..counter(
                &c::INTEGRATION_LATENCY,
                &c::ROUTE_INTEGRATION_LATENCY,
                Some("IntegrationLatency"),
                Some("IntegrationLatency"),
                Some("IntegrationLatency"),
            )
        };
        static THROTTLED: FamilyInfo = access_log("throttled");
        static QUOTA: FamilyInfo = access_log("quota_exceeded");
        static LAMBDA_INVOCATIONS: FamilyInfo = lambda(&c::LAMBDA_INVOCATIONS, "Invocations");
        static LAMBDA_ERRORS: FamilyInfo = lambda(&c::LAMBDA_ERRORS, "Errors");
        static LAMBDA_THROTTLES: FamilyInfo = lambda(&c::LAMBDA_THROTTLES, "Throttles");
        static LAMBDA_DURATION: FamilyInfo = FamilyInfo {
            max: Some((&c::LAMBDA_DURATION_MAX, &c::LAMBDA_DURATION_MAX)),
            scale: 0.001,
            ..lambda(&c::LAMBDA_DURATION, "Duration")
        };
        static RESPONSES: FamilyInfo = FamilyInfo {
            logs: true,
            ..counter(&c::RESPONSES, &c::ROUTE_RESPONSES, None, None, None)
        };
        static CANARY_RESPONSES: FamilyInfo = FamilyInfo {
            route: None,
            logs: true,
            ..counter(&c::CANARY_RESPONSES, &c::CANARY_RESPONSES, None, None, None)
        };
        static CANARY_BASE_RESPONSES: FamilyInfo = FamilyInfo {
            route: None,
            logs: true,
            ..counter(
                &c::CANARY_BASE_RESPONSES,
                &c::CANARY_BASE_RESPONSES,
                None,
                None,
                None,
            )
        };
        static CANARY_LATENCY: FamilyInfo = FamilyInfo {
            route: None,
            logs: true,
            max: Some((&c::CANARY_LATENCY_MAX, &c::CANARY_LATENCY_MAX)),
            scale: 0.001,
            ..counter(&c::CANARY_LATENCY, &c::CANARY_LATENCY, None, None, None)
        };
        match self {
            Family::Requests => &REQUESTS,
            Family::Errors4xx => &E4XX,
            Family::Errors5xx => &E5XX,
            Family::CacheHits => &CACHE_HITS,
            Family::CacheMisses => &CACHE_MISSES,
            Family::ProcessedBytes => &BYTES,
            Family::WsConnects => &WS_CONNECTS,
            Family::WsMessages => &WS_MESSAGES,
            Family::WsClientErrors => &WS_CLIENT,
            Family::WsIntegrationErrors => &WS_INTEGRATION,
            Family::WsExecutionErrors => &WS_EXECUTION,
            Family::Latency => &LATENCY,
            Family::IntegrationLatency => &INTEGRATION_LATENCY,
            Family::Throttled => &THROTTLED,
            Family::QuotaExceeded => &QUOTA,
            Family::Responses => &RESPONSES,
            Family::CanaryResponses => &CANARY_RESPONSES,
            Family::CanaryBaseResponses => &CANARY_BASE_RESPONSES,
            Family::CanaryLatency => &CANARY_LATENCY,
            Family::LambdaInvocations => &LAMBDA_INVOCATIONS,
            Family::LambdaErrors => &LAMBDA_ERRORS,
            Family::LambdaThrottles => &LAMBDA_THROTTLES,
            Family::LambdaDuration => &LAMBDA_DURATION,
        }
    }

    /// Whether one query answers many series of this family ([`Cause`]s per stage and
    /// route); the query's own series only says where counting stands and is not exported.
    pub fn split(self) -> bool {
        matches!(
            self,
            Family::Responses | Family::CanaryResponses | Family::CanaryBaseResponses
        )
    }

    /// About a canary release and its base: every line of the log they are read from
    /// counts, whatever its status.
    pub fn canary(self) -> bool {
        matches!(
            self,
            Family::CanaryResponses | Family::CanaryBaseResponses | Family::CanaryLatency
        )
    }

    /// The CloudWatch metric name for this family and API type, if AWS publishes one.
    pub fn cloudwatch_metric(self, api_type: ApiType) -> Option<&'static str> {
        let info = self.info();
        match api_type {
            ApiType::Rest => info.rest,
            ApiType::Http => info.http,
            ApiType::Websocket => info.websocket,
        }
    }

    /// The family's definition for a stage-level (`route == false`) or route-level series:
    /// route families have their own names so `sum()` over a family never double counts.
    pub fn def_at(self, route: bool) -> &'static Def {
        let info = self.info();
        match (route, info.route) {
            (true, Some(def)) => def,
            _ => info.stage,
        }
    }

    pub fn name_at(self, route: bool) -> &'static str {
        self.def_at(route).name
    }

    /// The `_max_seconds` gauge of a summary family, at stage or route level.
    pub fn max_def_at(self, route: bool) -> Option<&'static Def> {
        let (stage, route_max) = self.info().max?;
        Some(if route { route_max } else { stage })
    }
}

/// A CloudWatch statistic the exporter requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stat {
    Sum,
    SampleCount,
    Maximum,
    /// A percentile in hundredths of a percent: `p99.9` is `Percentile(9990)`.
    Percentile(u32),
}

impl Stat {
    /// Parses a percentile written as in CloudWatch (`p50`, `p99.9`, `p99.99`).
    pub fn parse_percentile(s: &str) -> Option<Stat> {
        let rest = s.strip_prefix('p')?;
        let (whole, frac) = match rest.split_once('.') {
            Some((w, f)) => (w, f),
            None => (rest, ""),
        };
        if whole.is_empty()
            || frac.len() > 2
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (rest.contains('.') && frac.is_empty())
        {
            return None;
        }
        let whole: u32 = whole.parse().ok()?;
        let frac: u32 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<2}").parse().ok()?
        };
        let value = whole.checked_mul(100)?.checked_add(frac)?;
        (value > 0 && value < 10_000).then_some(Stat::Percentile(value))
    }

    /// The statistic string GetMetricData expects.
    pub fn cloudwatch_name(self) -> String {
        match self {
            Stat::Sum => "Sum".into(),
            Stat::SampleCount => "SampleCount".into(),
            Stat::Maximum => "Maximum".into(),
            Stat::Percentile(v) => {
                let (whole, frac) = (v / 100, v % 100);
                match frac {
                    0 => format!("p{whole}"),
                    f if f % 10 == 0 => format!("p{whole}.{}", f / 10),
                    f => format!("p{whole}.{f:02}"),
                }
            }
        }
    }

    /// The Prometheus `quantile` label value of a percentile (`p99.9` → 0.999).
    pub fn quantile(self) -> Option<f64> {
        match self {
            Stat::Percentile(v) => Some(f64::from(v) / 10_000.0),
            _ => None,
        }
    }
}

/// A method (REST, HTTP: resource path and HTTP method) or a route key (WebSocket, and HTTP
/// routes that are not `METHOD /path`, like `$default`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKey {
    Method { resource: String, method: String },
    Route(String),
}

impl RouteKey {
    /// An apigatewayv2 route key: `GET /pets` for HTTP APIs, `$connect` or `sendMessage`
    /// for WebSocket APIs.
    pub fn from_v2(key: &str, websocket: bool) -> RouteKey {
        match key.split_once(' ') {
            Some((method, resource)) if !websocket => RouteKey::Method {
                resource: resource.to_string(),
                method: method.to_string(),
            },
            _ => RouteKey::Route(key.to_string()),
        }
    }

    /// The labels this key adds to a series.
    pub fn labels(&self) -> Vec<(String, String)> {
        match self {
            RouteKey::Method { resource, method } => vec![
                ("resource".into(), resource.clone()),
                ("method".into(), method.clone()),
            ],
            RouteKey::Route(route) => vec![("route".into(), route.clone())],
        }
    }
}

/// Where a series comes from: the contract's identifying labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesLabels {
    pub account_id: String,
    pub region: String,
    pub api_id: String,
    pub api_name: String,
    pub api_type: ApiType,
    /// `None` for API-level series (no stage selected for the API).
    pub stage: Option<String>,
    /// The method or route of a route-level series (detailed metrics).
    pub route: Option<RouteKey>,
    /// The status and response type of an access-log response series.
    pub cause: Option<Cause>,
    /// The Lambda function of a `backends.lambda` series (no API labels then).
    pub function: Option<String>,
    /// The replica that received the access log lines an access-log series counts
    /// (`access_logs.mode: firehose`): receivers hold disjoint shares, which rules add up.
    pub receiver: Option<String>,
}

/// What a counted response was: its HTTP status and API Gateway's gateway response type
/// (`$context.error.responseType`, or `none` when the integration itself answered).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cause {
    /// Three digits, `100` to `599`.
    pub status: String,
    pub response_type: String,
}

impl SeriesLabels {
    /// Labels of an account-level series (the account's throttle limits): no API.
    pub fn account(account_id: &str, region: &str) -> SeriesLabels {
        SeriesLabels {
            account_id: account_id.to_string(),
            region: region.to_string(),
            api_id: String::new(),
            api_name: String::new(),
            api_type: ApiType::Rest,
            stage: None,
            route: None,
            cause: None,
            function: None,
            receiver: None,
        }
    }

    /// Labels of a Lambda function's series.
    pub fn function(account_id: &str, region: &str, function: &str) -> SeriesLabels {
        SeriesLabels {
            function: Some(function.to_string()),
            receiver: None,
            ..SeriesLabels::account(account_id, region)
        }
    }

    /// Whether these are an API's labels (not an account's or a Lambda function's). A REST
    /// API that a monitoring account found through ListMetrics alone has a name but no id,
    /// an HTTP or WebSocket API an id but no name.
    pub fn is_api(&self) -> bool {
        self.function.is_none() && !(self.api_id.is_empty() && self.api_name.is_empty())
    }

    /// Label pairs in the contract's order; account-level series carry only `account_id` and
    /// `region`, and an API label discovery could not learn (empty) is left out, never
    /// invented.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        if let Some(function) = &self.function {
            return vec![
                ("account_id", self.account_id.as_str()),
                ("region", self.region.as_str()),
                ("function_name", function.as_str()),
            ];
        }
        let mut pairs = vec![
            ("account_id", self.account_id.as_str()),
            ("region", self.region.as_str()),
        ];
        if !self.is_api() {
            return pairs;
        }
        if !self.api_id.is_empty() {
            pairs.push(("api_id", self.api_id.as_str()));
        }
        if !self.api_name.is_empty() {
            pairs.push(("api_name", self.api_name.as_str()));
        }
        pairs.push(("api_type", self.api_type.as_str()));
        if let Some(stage) = &self.stage {
            pairs.push(("stage", stage.as_str()));
        }
        match &self.route {
            Some(RouteKey::Method { resource, method }) => {
                pairs.push(("resource", resource.as_str()));
                pairs.push(("method", method.as_str()));
            }
            Some(RouteKey::Route(route)) => pairs.push(("route", route.as_str())),
            None => {}
        }
        if let Some(cause) = &self.cause {
            pairs.push(("status", cause.status.as_str()));
            pairs.push(("response_type", cause.response_type.as_str()));
        }
        if let Some(receiver) = &self.receiver {
            pairs.push(("receiver", receiver.as_str()));
        }
        pairs
    }
}

pub type Labels = Arc<SeriesLabels>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_formats_are_checked_for_every_field_counted() {
        for t in ApiType::ALL {
            assert_eq!(access_log_gaps(ACCESS_LOG_FORMAT, t), Vec::<String>::new());
        }
        let rest = rest_access_log_format();
        assert!(
            serde_json::from_str::<serde_json::Value>(
                &rest
                    .replace("$context.status", "200")
                    .replace("$context.requestTimeEpoch", "1")
            )
            .is_ok()
        );
        assert!(logs_canary_split(&rest) && !logs_canary_split(ACCESS_LOG_FORMAT));
        assert!(logs_request_time(ACCESS_LOG_FORMAT));
        let clf = "$context.identity.sourceIp - - [$context.requestTime] \"$context.httpMethod\" $context.status";
        assert_eq!(access_log_gaps(clf, ApiType::Rest).len(), 1);
        let quoted = r#"{ "apiId": "$context.apiId", "stage":"$context.stage", "status": "$context.status", "responseType":"$context.error.responseType", "routeKey":"$context.routeKey" }"#;
        let gaps = access_log_gaps(quoted, ApiType::Http);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!(gaps[0].contains("as a number"), "{gaps:?}");
        let gaps = access_log_gaps(quoted, ApiType::Rest);
        assert_eq!(gaps.len(), 3, "{gaps:?}");
        assert!(logs_latency(ACCESS_LOG_FORMAT));
        assert!(!logs_latency(quoted));
        let wrong = r#"{"apiId":"$context.apiId","stage":"$context.stage","status":$context.status,"responseType":"$context.error.message"}"#;
        let gaps = access_log_gaps(wrong, ApiType::Websocket);
        assert!(
            gaps[0].contains("error.responseType") && gaps.len() == 2,
            "{gaps:?}"
        );
    }

    #[test]
    fn percentiles_round_trip() {
        for (text, value, q) in [
            ("p50", 5000, 0.5),
            ("p99", 9900, 0.99),
            ("p99.9", 9990, 0.999),
            ("p99.99", 9999, 0.9999),
            ("p1", 100, 0.01),
        ] {
            let stat = Stat::parse_percentile(text).unwrap();
            assert_eq!(stat, Stat::Percentile(value));
            assert_eq!(stat.cloudwatch_name(), text);
            assert!((stat.quantile().unwrap() - q).abs() < 1e-12);
        }
        for bad in [
            "p0", "p100", "p", "99", "p99.", "p99.999", "px", "p-1", "p1e2",
        ] {
            assert_eq!(Stat::parse_percentile(bad), None, "{bad}");
        }
    }

    #[test]
    fn route_names_mirror_stage_names() {
        // Families counted per stage only (access-log 429s and the canary's) have no route
        // names of their own.
        for family in Family::ALL.into_iter().filter(|f| f.info().route.is_some()) {
            let (stage, route) = (family.name_at(false), family.name_at(true));
            if family.info().reason.is_none() {
                assert_eq!(
                    route,
                    stage.replacen("aws_apigateway_", "aws_apigateway_route_", 1)
                );
            }
            if let Some(max) = family.max_def_at(false) {
                assert_eq!(
                    family.max_def_at(true).unwrap().name,
                    max.name
                        .replacen("aws_apigateway_", "aws_apigateway_route_", 1)
                );
            }
        }
    }

    #[test]
    fn every_family_has_a_source_and_a_contract_entry() {
        for family in Family::ALL {
            let info = family.info();
            let from_cloudwatch = info.rest.is_some()
                || info.http.is_some()
                || info.websocket.is_some()
                || info.lambda.is_some();
            assert!(from_cloudwatch != info.logs, "{family:?}");
            assert!(info.reason.is_none() || info.logs, "{family:?}");
            for route in [false, true] {
                let def = family.def_at(route);
                assert!(contract::ALL.contains(&def), "{}", def.name);
            }
            assert_eq!(
                info.kind() == FamilyKind::Summary,
                family.max_def_at(false).is_some()
            );
        }
    }
}
