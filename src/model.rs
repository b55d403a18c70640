//! The shared vocabulary of the pipeline: API types, metric families, CloudWatch statistics
//! and the labels that identify a series. Every other module speaks in these terms, so the
//! metric contract (`METRICS.md`) is encoded here once.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

/// The CloudWatch namespace of API Gateway metrics.
pub const NAMESPACE: &str = "AWS/ApiGateway";

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
}

/// Static facts about one family: its Prometheus name and the CloudWatch metric behind it
/// for each API type (`None` where AWS publishes nothing for that type).
#[derive(Debug)]
pub struct FamilyInfo {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: FamilyKind,
    /// Multiplier from the CloudWatch unit to the exported base unit (ms → s).
    pub scale: f64,
    pub rest: Option<&'static str>,
    pub http: Option<&'static str>,
    pub websocket: Option<&'static str>,
    /// Only meaningful when the stage has a cache cluster; skipped otherwise to save queries.
    pub needs_cache: bool,
    /// The `reason` label of access-log families, which share one Prometheus name.
    pub reason: Option<&'static str>,
}

impl Family {
    pub const ALL: [Family; 15] = [
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
    ];

    pub fn info(self) -> &'static FamilyInfo {
        const fn counter(
            name: &'static str,
            help: &'static str,
            rest: Option<&'static str>,
            http: Option<&'static str>,
            websocket: Option<&'static str>,
        ) -> FamilyInfo {
            FamilyInfo {
                name,
                help,
                kind: FamilyKind::Counter,
                scale: 1.0,
                rest,
                http,
                websocket,
                needs_cache: false,
                reason: None,
            }
        }
        static REQUESTS: FamilyInfo = counter(
            "aws_apigateway_requests_total",
            "Requests received (CloudWatch Count, Sum per period). Polled from CloudWatch AWS/ApiGateway, not live.",
            Some("Count"),
            Some("Count"),
            None,
        );
        static E4XX: FamilyInfo = counter(
            "aws_apigateway_4xx_errors_total",
            "Client-side errors (CloudWatch 4XXError for REST, 4xx for HTTP; Sum per period). Polled from CloudWatch AWS/ApiGateway, not live.",
            Some("4XXError"),
            Some("4xx"),
            None,
        );
        static E5XX: FamilyInfo = counter(
            "aws_apigateway_5xx_errors_total",
            "Server-side errors (CloudWatch 5XXError for REST, 5xx for HTTP; Sum per period). Polled from CloudWatch AWS/ApiGateway, not live.",
            Some("5XXError"),
            Some("5xx"),
            None,
        );
        static CACHE_HITS: FamilyInfo = FamilyInfo {
            needs_cache: true,
            ..counter(
                "aws_apigateway_cache_hits_total",
                "Requests served from the REST API cache (CloudWatch CacheHitCount, Sum per period). Polled from CloudWatch AWS/ApiGateway, not live.",
                Some("CacheHitCount"),
                None,
                None,
            )
        };
        static CACHE_MISSES: FamilyInfo = FamilyInfo {
            needs_cache: true,
            ..counter(
                "aws_apigateway_cache_misses_total",
                "Requests served from the backend while the REST API cache was enabled (CloudWatch CacheMissCount, Sum per period). Polled from CloudWatch AWS/ApiGateway, not live.",
                Some("CacheMissCount"),
                None,
                None,
            )
        };
        static BYTES: FamilyInfo = counter(
            "aws_apigateway_processed_bytes_total",
            "Bytes processed by an HTTP API (CloudWatch DataProcessed, Sum per period). Polled from CloudWatch AWS/ApiGateway, not live.",
            None,
            Some("DataProcessed"),
            None,
        );
        static WS_CONNECTS: FamilyInfo = counter(
            "aws_apigateway_websocket_connects_total",
            "Messages sent to the $connect route (CloudWatch ConnectCount, Sum per period). Polled from CloudWatch AWS/ApiGateway, not live.",
            None,
            None,
            Some("ConnectCount"),
        );
        static WS_MESSAGES: FamilyInfo = counter(
            "aws_apigateway_websocket_messages_total",
            "Messages sent to and from clients (CloudWatch MessageCount, Sum per period). Polled from CloudWatch AWS/ApiGateway, not live.",
            None,
            None,
            Some("MessageCount"),
        );
        static WS_CLIENT: FamilyInfo = counter(
            "aws_apigateway_websocket_client_errors_total",
            "Requests answered 4XX before the integration was invoked (CloudWatch ClientError, Sum per period). Polled from CloudWatch AWS/ApiGateway, not live.",
            None,
            None,
            Some("ClientError"),
        );
        static WS_INTEGRATION: FamilyInfo = counter(
            "aws_apigateway_websocket_integration_errors_total",
            "Requests for which the integration returned an error (CloudWatch IntegrationError, Sum per period). Polled from CloudWatch AWS/ApiGateway, not live.",
            None,
            None,
            Some("IntegrationError"),
        );
        static WS_EXECUTION: FamilyInfo = counter(
            "aws_apigateway_websocket_execution_errors_total",
            "Errors while calling the integration (CloudWatch ExecutionError, Sum per period). Polled from CloudWatch AWS/ApiGateway, not live.",
            None,
            None,
            Some("ExecutionError"),
        );
        static LATENCY: FamilyInfo = FamilyInfo {
            name: "aws_apigateway_latency_seconds",
            help: "Time from request received to response sent, including the integration (CloudWatch Latency). Quantiles are from the latest settled period; _sum and _count are counters. Polled from CloudWatch AWS/ApiGateway, not live.",
            kind: FamilyKind::Summary,
            scale: 0.001,
            rest: Some("Latency"),
            http: Some("Latency"),
            websocket: None,
            needs_cache: false,
            reason: None,
        };
        static INTEGRATION_LATENCY: FamilyInfo = FamilyInfo {
            name: "aws_apigateway_integration_latency_seconds",
            help: "Time from request relayed to the backend to response received from it (CloudWatch IntegrationLatency). Quantiles are from the latest settled period; _sum and _count are counters. Polled from CloudWatch AWS/ApiGateway, not live.",
            kind: FamilyKind::Summary,
            scale: 0.001,
            rest: Some("IntegrationLatency"),
            http: Some("IntegrationLatency"),
            websocket: Some("IntegrationLatency"),
            needs_cache: false,
            reason: None,
        };
        const THROTTLED_HELP: &str = "Requests answered 429, by reason: throttled (a rate or burst limit) or quota_exceeded (a usage plan quota). Counted from API Gateway access logs through a CloudWatch Logs metric filter (access_logs in the config); polled, not live.";
        static THROTTLED: FamilyInfo = FamilyInfo {
            reason: Some("throttled"),
            ..counter(
                "aws_apigateway_throttled_requests_total",
                THROTTLED_HELP,
                None,
                None,
                None,
            )
        };
        static QUOTA: FamilyInfo = FamilyInfo {
            reason: Some("quota_exceeded"),
            ..counter(
                "aws_apigateway_throttled_requests_total",
                THROTTLED_HELP,
                None,
                None,
                None,
            )
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
        }
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

    /// The family's name for a stage-level (`route == false`) or route-level series: route
    /// families have their own names so `sum()` over a family never double counts.
    pub fn name_at(self, route: bool) -> &'static str {
        if !route {
            return self.info().name;
        }
        match self {
            Family::Requests => "aws_apigateway_route_requests_total",
            Family::Errors4xx => "aws_apigateway_route_4xx_errors_total",
            Family::Errors5xx => "aws_apigateway_route_5xx_errors_total",
            Family::CacheHits => "aws_apigateway_route_cache_hits_total",
            Family::CacheMisses => "aws_apigateway_route_cache_misses_total",
            Family::ProcessedBytes => "aws_apigateway_route_processed_bytes_total",
            Family::WsConnects => "aws_apigateway_route_websocket_connects_total",
            Family::WsMessages => "aws_apigateway_route_websocket_messages_total",
            Family::WsClientErrors => "aws_apigateway_route_websocket_client_errors_total",
            Family::WsIntegrationErrors => {
                "aws_apigateway_route_websocket_integration_errors_total"
            }
            Family::WsExecutionErrors => "aws_apigateway_route_websocket_execution_errors_total",
            Family::Latency => "aws_apigateway_route_latency_seconds",
            Family::IntegrationLatency => "aws_apigateway_route_integration_latency_seconds",
            // Access logs are counted per stage only.
            Family::Throttled | Family::QuotaExceeded => self.info().name,
        }
    }

    /// The `_max_seconds` gauge of a summary family, at stage or route level.
    pub fn max_name_at(self, route: bool) -> Option<&'static str> {
        match (self, route) {
            (Family::Latency, true) => Some("aws_apigateway_route_latency_max_seconds"),
            (Family::IntegrationLatency, true) => {
                Some("aws_apigateway_route_integration_latency_max_seconds")
            }
            _ => self.max_name(),
        }
    }

    /// The name of the `_max_seconds` gauge that accompanies a summary family.
    pub fn max_name(self) -> Option<&'static str> {
        match self {
            Family::Latency => Some("aws_apigateway_latency_max_seconds"),
            Family::IntegrationLatency => Some("aws_apigateway_integration_latency_max_seconds"),
            _ => None,
        }
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
        }
    }

    /// Label pairs in the contract's order; account-level series (empty `api_id`) carry only
    /// `account_id` and `region`.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        if self.api_id.is_empty() {
            return vec![
                ("account_id", self.account_id.as_str()),
                ("region", self.region.as_str()),
            ];
        }
        let mut pairs = vec![
            ("account_id", self.account_id.as_str()),
            ("region", self.region.as_str()),
            ("api_id", self.api_id.as_str()),
            ("api_name", self.api_name.as_str()),
            ("api_type", self.api_type.as_str()),
        ];
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
        pairs
    }
}

pub type Labels = Arc<SeriesLabels>;

#[cfg(test)]
mod tests {
    use super::*;

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
        for family in Family::ALL {
            let (stage, route) = (family.name_at(false), family.name_at(true));
            if family.info().reason.is_none() {
                assert_eq!(
                    route,
                    stage.replacen("aws_apigateway_", "aws_apigateway_route_", 1)
                );
            }
            if let Some(max) = family.max_name() {
                assert_eq!(
                    family.max_name_at(true).unwrap(),
                    max.replacen("aws_apigateway_", "aws_apigateway_route_", 1)
                );
            }
        }
    }

    #[test]
    fn every_family_has_a_source() {
        for family in Family::ALL {
            let info = family.info();
            let from_cloudwatch =
                info.rest.is_some() || info.http.is_some() || info.websocket.is_some();
            assert!(from_cloudwatch != info.reason.is_some(), "{family:?}");
            assert!(info.name.starts_with("aws_apigateway_"));
            assert_eq!(
                info.kind == FamilyKind::Counter,
                info.name.ends_with("_total")
            );
            assert_eq!(
                info.kind == FamilyKind::Summary,
                family.max_name().is_some()
            );
        }
    }
}
