//! The metric contract: every family the exporter serves, defined once. The Prometheus
//! exposition, the OTLP push, the self-metrics and the README's metric tables all take their
//! name, type, unit, help and labels from here (or are tested against it).

/// How a family is typed in the Prometheus exposition (and mapped to OTLP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
    /// Quantile gauges with `_sum` and `_count` counters.
    Summary,
    Histogram,
}

/// Which series a family has, and so which identifying labels they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// One series per stage (`account_id`, `region`, `api_id`, `api_name`, `api_type`,
    /// `stage`); per API, without `stage`, where no stage is selected.
    Stage,
    /// One series per method (`resource`, `method`) or route (`route`) of a stage with
    /// detailed metrics: the stage labels and those.
    Route,
    /// One series per API (no `stage`), or per method or route of an API.
    Api,
    /// By `scope`: the account (`account_id`, `region` only), a stage, a method or route of
    /// a stage, or a usage plan on a stage.
    Scoped,
    /// The exporter's own health; only the labels listed.
    Exporter,
    /// One series per Lambda function behind a discovered route (`account_id`, `region`,
    /// `function_name`).
    Function,
}

/// One metric family.
#[derive(Debug, PartialEq, Eq)]
pub struct Def {
    pub name: &'static str,
    pub kind: Type,
    /// UCUM unit for OTLP (empty: dimensionless, info or 0/1). A summary's `_count` counts
    /// requests whatever its unit.
    pub unit: &'static str,
    pub help: &'static str,
    pub level: Level,
    /// Labels beyond the level's identifying ones (all labels, for exporter families).
    pub labels: &'static [&'static str],
}

impl Def {
    /// The OTLP unit of one of this family's Prometheus series names (`_sum`, `_count` and
    /// `_bucket` of summaries and histograms included).
    pub fn unit_of(&self, series_name: &str) -> &'static str {
        let count = series_name.len() > self.name.len() && series_name.ends_with("_count");
        match (self.kind, count) {
            (Type::Summary, true) if self.level == Level::Function => "{invocation}",
            (Type::Summary, true) => "{request}",
            (Type::Histogram, true) => "{observation}",
            _ => self.unit,
        }
    }
}

const fn def(
    name: &'static str,
    kind: Type,
    unit: &'static str,
    level: Level,
    labels: &'static [&'static str],
    help: &'static str,
) -> Def {
    Def {
        name,
        kind,
        unit,
        help,
        level,
        labels,
    }
}

/// The route-level twin of a stage family: its own name, so `sum()` over a family never
/// counts a request twice.
const fn route(stage: &Def, name: &'static str) -> Def {
    def(
        name,
        stage.kind,
        stage.unit,
        Level::Route,
        stage.labels,
        stage.help,
    )
}

use Level::{Api, Exporter, Function, Scoped, Stage};

/// The HELP ending of Lambda families.
macro_rules! lambda {
    ($text:literal) => {
        concat!(
            $text,
            " Only for functions behind a discovered API Gateway route (backends.lambda). From CloudWatch AWS/Lambda (polled, or pushed by a metric stream), not live."
        )
    };
}
use Type::{Counter, Gauge, Histogram, Summary};

macro_rules! polled {
    ($text:literal) => {
        concat!(
            $text,
            " From CloudWatch AWS/ApiGateway (polled, or pushed by a metric stream), not live."
        )
    };
}

pub const REQUESTS: Def = def(
    "aws_apigateway_requests_total",
    Counter,
    "{request}",
    Stage,
    &[],
    polled!("Requests received (CloudWatch Count, Sum per period)."),
);
pub const ERRORS_4XX: Def = def(
    "aws_apigateway_4xx_errors_total",
    Counter,
    "{request}",
    Stage,
    &[],
    polled!("Client-side errors (CloudWatch 4XXError for REST, 4xx for HTTP; Sum per period)."),
);
pub const ERRORS_5XX: Def = def(
    "aws_apigateway_5xx_errors_total",
    Counter,
    "{request}",
    Stage,
    &[],
    polled!("Server-side errors (CloudWatch 5XXError for REST, 5xx for HTTP; Sum per period)."),
);
pub const CACHE_HITS: Def = def(
    "aws_apigateway_cache_hits_total",
    Counter,
    "{request}",
    Stage,
    &[],
    polled!("Requests served from the REST API cache (CloudWatch CacheHitCount, Sum per period)."),
);
pub const CACHE_MISSES: Def = def(
    "aws_apigateway_cache_misses_total",
    Counter,
    "{request}",
    Stage,
    &[],
    polled!(
        "Requests served from the backend while the REST API cache was enabled (CloudWatch CacheMissCount, Sum per period)."
    ),
);
pub const PROCESSED_BYTES: Def = def(
    "aws_apigateway_processed_bytes_total",
    Counter,
    "By",
    Stage,
    &[],
    polled!("Bytes processed by an HTTP API (CloudWatch DataProcessed, Sum per period)."),
);
pub const WS_CONNECTS: Def = def(
    "aws_apigateway_websocket_connects_total",
    Counter,
    "{connection}",
    Stage,
    &[],
    polled!("Messages sent to the $connect route (CloudWatch ConnectCount, Sum per period)."),
);
pub const WS_MESSAGES: Def = def(
    "aws_apigateway_websocket_messages_total",
    Counter,
    "{message}",
    Stage,
    &[],
    polled!("Messages sent to and from clients (CloudWatch MessageCount, Sum per period)."),
);
pub const WS_CLIENT_ERRORS: Def = def(
    "aws_apigateway_websocket_client_errors_total",
    Counter,
    "{error}",
    Stage,
    &[],
    polled!(
        "Requests answered 4XX before the integration was invoked (CloudWatch ClientError, Sum per period)."
    ),
);
pub const WS_INTEGRATION_ERRORS: Def = def(
    "aws_apigateway_websocket_integration_errors_total",
    Counter,
    "{error}",
    Stage,
    &[],
    polled!(
        "Requests for which the integration returned an error (CloudWatch IntegrationError, Sum per period)."
    ),
);
pub const WS_EXECUTION_ERRORS: Def = def(
    "aws_apigateway_websocket_execution_errors_total",
    Counter,
    "{error}",
    Stage,
    &[],
    polled!("Errors while calling the integration (CloudWatch ExecutionError, Sum per period)."),
);
pub const LATENCY: Def = def(
    "aws_apigateway_latency_seconds",
    Summary,
    "s",
    Stage,
    &[],
    polled!(
        "Time from request received to response sent, including the integration (CloudWatch Latency). Quantiles are from the latest settled period; _sum and _count are counters."
    ),
);
pub const INTEGRATION_LATENCY: Def = def(
    "aws_apigateway_integration_latency_seconds",
    Summary,
    "s",
    Stage,
    &[],
    polled!(
        "Time from request relayed to the backend to response received from it (CloudWatch IntegrationLatency). Quantiles are from the latest settled period; _sum and _count are counters."
    ),
);
pub const LATENCY_MAX: Def = def(
    "aws_apigateway_latency_max_seconds",
    Gauge,
    "s",
    Stage,
    &[],
    polled!("Maximum Latency of the latest settled CloudWatch period, in seconds."),
);
pub const INTEGRATION_LATENCY_MAX: Def = def(
    "aws_apigateway_integration_latency_max_seconds",
    Gauge,
    "s",
    Stage,
    &[],
    polled!("Maximum IntegrationLatency of the latest settled CloudWatch period, in seconds."),
);
pub const THROTTLED: Def = def(
    "aws_apigateway_throttled_requests_total",
    Counter,
    "{request}",
    Stage,
    &["reason", "receiver"],
    "Requests answered 429, by reason: throttled (a rate or burst limit) or quota_exceeded (a usage plan quota). Counted from API Gateway access logs, through a CloudWatch Logs metric filter, from the events themselves, or from the lines Firehose delivers (access_logs in the config; receiver names the replica that received them); polled, not live.",
);
pub const RESPONSES: Def = def(
    "aws_apigateway_responses_total",
    Counter,
    "{request}",
    Stage,
    &["status", "response_type", "receiver"],
    "Responses by HTTP status and API Gateway response type ($context.error.responseType; none when the integration itself answered), counted line by line from the stage's JSON access logs (access_logs.mode filter_log_events, or firehose with receiver naming the replica that received the lines; which statuses: access_logs.statuses); polled, not live.",
);

/// `$context.responseLatency` is the latency the access log carries; the canary's series come
/// from its own access log group, so they never mix with the stage's CloudWatch series.
pub const CANARY_RESPONSES: Def = def(
    "aws_apigateway_canary_responses_total",
    Counter,
    "{request}",
    Stage,
    &["status", "response_type", "receiver"],
    "Every request a REST stage's canary release answered, by HTTP status and API Gateway response type, counted line by line from the stage's access log split by $context.isCanaryRequest, or else from the canary's own access log group (the stage's group with /Canary appended). Canary requests only: the stage's own series may include them too, so never add the two; polled, not live.",
);
pub const CANARY_BASE_RESPONSES: Def = def(
    "aws_apigateway_canary_base_responses_total",
    Counter,
    "{request}",
    Stage,
    &["status", "response_type", "receiver"],
    "Every request the base deployment of a REST stage with a canary release answered (the stage's own requests, the canary's left out), by HTTP status and API Gateway response type, counted line by line from the stage's access log split by $context.isCanaryRequest: what the canary is compared with. Only where the log format carries isCanaryRequest; polled, not live.",
);
pub const CANARY_LATENCY: Def = def(
    "aws_apigateway_canary_latency_seconds",
    Summary,
    "s",
    Stage,
    &["receiver"],
    "Response latency of a REST stage's canary requests ($context.responseLatency of the canary's access log lines). Quantiles are exact over the latest settled period's events (nearest rank), as the stage's latency quantiles are CloudWatch's over the same period; _sum and _count are counters of the lines that carry a latency; polled, not live.",
);
pub const CANARY_LATENCY_MAX: Def = def(
    "aws_apigateway_canary_latency_max_seconds",
    Gauge,
    "s",
    Stage,
    &["receiver"],
    "Maximum response latency of a REST stage's canary requests in the latest settled period, in seconds (the canary's access log lines); polled, not live.",
);

pub const ROUTE_RESPONSES: Def = route(&RESPONSES, "aws_apigateway_route_responses_total");
pub const ROUTE_REQUESTS: Def = route(&REQUESTS, "aws_apigateway_route_requests_total");
pub const ROUTE_ERRORS_4XX: Def = route(&ERRORS_4XX, "aws_apigateway_route_4xx_errors_total");
pub const ROUTE_ERRORS_5XX: Def = route(&ERRORS_5XX, "aws_apigateway_route_5xx_errors_total");
pub const ROUTE_CACHE_HITS: Def = route(&CACHE_HITS, "aws_apigateway_route_cache_hits_total");
pub const ROUTE_CACHE_MISSES: Def = route(&CACHE_MISSES, "aws_apigateway_route_cache_misses_total");
pub const ROUTE_PROCESSED_BYTES: Def = route(
    &PROCESSED_BYTES,
    "aws_apigateway_route_processed_bytes_total",
);
pub const ROUTE_WS_CONNECTS: Def = route(
    &WS_CONNECTS,
    "aws_apigateway_route_websocket_connects_total",
);
pub const ROUTE_WS_MESSAGES: Def = route(
    &WS_MESSAGES,
    "aws_apigateway_route_websocket_messages_total",
);
pub const ROUTE_WS_CLIENT_ERRORS: Def = route(
    &WS_CLIENT_ERRORS,
    "aws_apigateway_route_websocket_client_errors_total",
);
pub const ROUTE_WS_INTEGRATION_ERRORS: Def = route(
    &WS_INTEGRATION_ERRORS,
    "aws_apigateway_route_websocket_integration_errors_total",
);
pub const ROUTE_WS_EXECUTION_ERRORS: Def = route(
    &WS_EXECUTION_ERRORS,
    "aws_apigateway_route_websocket_execution_errors_total",
);
pub const ROUTE_LATENCY: Def = route(&LATENCY, "aws_apigateway_route_latency_seconds");
pub const ROUTE_INTEGRATION_LATENCY: Def = route(
    &INTEGRATION_LATENCY,
    "aws_apigateway_route_integration_latency_seconds",
);
pub const ROUTE_LATENCY_MAX: Def = route(&LATENCY_MAX, "aws_apigateway_route_latency_max_seconds");
pub const ROUTE_INTEGRATION_LATENCY_MAX: Def = route(
    &INTEGRATION_LATENCY_MAX,
    "aws_apigateway_route_integration_latency_max_seconds",
);

pub const LAMBDA_INVOCATIONS: Def = def(
    "aws_lambda_invocations_total",
    Counter,
    "{invocation}",
    Function,
    &[],
    lambda!("Invocations of the function (CloudWatch Invocations; Sum per period)."),
);
pub const LAMBDA_ERRORS: Def = def(
    "aws_lambda_errors_total",
    Counter,
    "{invocation}",
    Function,
    &[],
    lambda!("Invocations that ended in a function error (CloudWatch Errors; Sum per period)."),
);
pub const LAMBDA_THROTTLES: Def = def(
    "aws_lambda_throttles_total",
    Counter,
    "{invocation}",
    Function,
    &[],
    lambda!(
        "Invocation requests throttled by the function's concurrency limits (CloudWatch Throttles; Sum per period)."
    ),
);
pub const LAMBDA_DURATION: Def = def(
    "aws_lambda_duration_seconds",
    Summary,
    "s",
    Function,
    &[],
    lambda!(
        "Time the function ran, in seconds: _sum and _count from the period Sum and SampleCount of CloudWatch Duration."
    ),
);
pub const LAMBDA_DURATION_MAX: Def = def(
    "aws_lambda_duration_max_seconds",
    Gauge,
    "s",
    Function,
    &[],
    lambda!("Maximum Duration of the latest settled CloudWatch period, in seconds."),
);

pub const API_INFO: Def = def(
    "aws_apigateway_api_info",
    Gauge,
    "",
    Api,
    &["endpoint_type", "tag_*"],
    "Always 1 for each API in the inventory; labels describe it. From API Gateway discovery, refreshed on discovery.refresh_interval.",
);
pub const STAGE_INFO: Def = def(
    "aws_apigateway_stage_info",
    Gauge,
    "",
    Stage,
    &["detailed_metrics", "cache_enabled"],
    "Always 1 for each exported stage; labels say whether detailed (per-route) metrics and the cache are enabled. From API Gateway discovery.",
);
pub const CANARY_TRAFFIC: Def = def(
    "aws_apigateway_stage_canary_traffic_percent",
    Gauge,
    "%",
    Stage,
    &["deployment_id", "use_stage_cache"],
    "The share of a REST stage's requests its canary release serves (canarySettings.percentTraffic, 0 to 100), for each stage with a canary; deployment_id is the canary's deployment. Absent without a canary. From API Gateway discovery.",
);
pub const THROTTLE_RATE_LIMIT: Def = def(
    "aws_apigateway_throttle_rate_limit",
    Gauge,
    "{request}/s",
    Scoped,
    &["scope"],
    "Steady-state requests per second API Gateway allows, by scope: account (GetAccount; shared by every API of the region), stage (the stage's default method or route settings) or method (a method's or route's own settings). From API Gateway discovery.",
);
pub const THROTTLE_BURST_LIMIT: Def = def(
    "aws_apigateway_throttle_burst_limit",
    Gauge,
    "{request}",
    Scoped,
    &["scope"],
    "Burst of requests API Gateway allows, by scope (account, stage, method), as for aws_apigateway_throttle_rate_limit. From API Gateway discovery.",
);
pub const USAGE_PLAN_QUOTA_LIMIT: Def = def(
    "aws_apigateway_usage_plan_quota_limit",
    Gauge,
    "{request}",
    Stage,
    &["usage_plan_id", "usage_plan_name", "period"],
    "Requests a usage plan allows each API key per period (period=\"DAY\"|\"WEEK\"|\"MONTH\") on an API stage. From API Gateway GetUsagePlans.",
);
pub const INTEGRATION_INFO: Def = def(
    "aws_apigateway_integration_info",
    Gauge,
    "",
    Api,
    &[
        "resource",
        "method",
        "route",
        "integration_type",
        "backend_type",
        "backend",
        "transfer_mode",
    ],
    "Always 1 for each method or route with an integration; labels say what it calls: integration_type as AWS names it, backend_type (lambda, http, aws_service, mock, vpc_link), backend (the Lambda function name, HTTP host or AWS service) and transfer_mode (STREAM for REST response streaming, else BUFFERED). From API Gateway discovery.",
);
pub const INTEGRATION_TIMEOUT: Def = def(
    "aws_apigateway_integration_timeout_seconds",
    Gauge,
    "s",
    Api,
    &["resource", "method", "route"],
    "Configured integration timeout of a method or route, in seconds (29 s unless raised). From API Gateway discovery.",
);

pub const EXPORTER_BUILD_INFO: Def = def(
    "aws_apigateway_exporter_build_info",
    Gauge,
    "",
    Exporter,
    &["version", "revision", "demo"],
    "Always 1; labels say the version and revision, and demo=\"true\" when the data is synthetic.",
);
pub const EXPORTER_UP: Def = def(
    "aws_apigateway_exporter_up",
    Gauge,
    "",
    Exporter,
    &[],
    "1 when the last poll cycle succeeded completely (every target, every batch), else 0.",
);
pub const EXPORTER_TARGET_UP: Def = def(
    "aws_apigateway_exporter_target_up",
    Gauge,
    "",
    Exporter,
    &["account_id", "region"],
    "1 when the last cycle of this account and region succeeded completely, else 0.",
);
pub const EXPORTER_IDLE_STAGES: Def = def(
    "aws_apigateway_exporter_idle_stages",
    Gauge,
    "{stage}",
    Exporter,
    &["account_id", "region"],
    "Stages of this account and region without traffic for poll.idle.after, polled every poll.idle.interval instead of every poll.interval (0 when poll.idle is not set).",
);
pub const EXPORTER_CYCLE_DURATION: Def = def(
    "aws_apigateway_exporter_cycle_duration_seconds",
    Histogram,
    "s",
    Exporter,
    &[],
    "Wall-clock duration of poll cycles.",
);
pub const EXPORTER_LAST_SUCCESS: Def = def(
    "aws_apigateway_exporter_last_success_timestamp_seconds",
    Gauge,
    "s",
    Exporter,
    &[],
    "Unix time of the end of the last poll cycle that succeeded completely.",
);
pub const EXPORTER_DATA_AGE: Def = def(
    "aws_apigateway_exporter_data_age_seconds",
    Gauge,
    "s",
    Exporter,
    &[],
    "Age of the newest CloudWatch period ingested, measured from its end, at the last cycle.",
);
pub const EXPORTER_CLOUDWATCH_REQUESTS: Def = def(
    "aws_apigateway_exporter_cloudwatch_requests_total",
    Counter,
    "{call}",
    Exporter,
    &["operation", "result"],
    "CloudWatch API calls, by operation and result.",
);
pub const EXPORTER_METRICS_REQUESTED: Def = def(
    "aws_apigateway_exporter_cloudwatch_metrics_requested_total",
    Counter,
    "{metric}",
    Exporter,
    &[],
    "Metrics requested from GetMetricData, counted the way AWS bills it (one per query of every call AWS answered).",
);
pub const EXPORTER_AWS_REQUESTS: Def = def(
    "aws_apigateway_exporter_aws_requests_total",
    Counter,
    "{call}",
    Exporter,
    &["service", "operation", "result"],
    "Discovery and identity API calls (apigateway, apigatewayv2, sts), by service, operation and result.",
);
pub const EXPORTER_SERIES: Def = def(
    "aws_apigateway_exporter_series",
    Gauge,
    "{series}",
    Exporter,
    &[],
    "API Gateway series currently exported (samples in the snapshot).",
);
pub const EXPORTER_APIS: Def = def(
    "aws_apigateway_exporter_apis",
    Gauge,
    "{api}",
    Exporter,
    &["api_type"],
    "APIs in the inventory, by type.",
);
pub const EXPORTER_REST_NAME_CONFLICTS: Def = def(
    "aws_apigateway_exporter_rest_name_conflicts",
    Gauge,
    "{api}",
    Exporter,
    &["account_id", "region"],
    "REST APIs some of whose series are not exported because another REST API in the region has the same CloudWatch ApiName.",
);
pub const EXPORTER_PERIODS_LOST: Def = def(
    "aws_apigateway_exporter_periods_lost_total",
    Counter,
    "{period}",
    Exporter,
    &["account_id", "region"],
    "CloudWatch periods that could not be read before they passed poll.max_backfill (an outage longer than that), or for streamed series the stream buffer's retention (a poll loop stalled longer than that): the counters of this account and region miss what happened in them.",
);
pub const EXPORTER_COUNTER_DECREASES: Def = def(
    "aws_apigateway_exporter_period_value_decreases_total",
    Counter,
    "{event}",
    Exporter,
    &[],
    "Times CloudWatch returned a smaller value for an already-counted period; ignored, counters never go down.",
);
pub const EXPORTER_QUERY_ERRORS: Def = def(
    "aws_apigateway_exporter_query_errors_total",
    Counter,
    "{query}",
    Exporter,
    &["status"],
    "GetMetricData queries whose result was not usable, by CloudWatch status code.",
);
pub const EXPORTER_STREAM_REQUESTS: Def = def(
    "aws_apigateway_exporter_stream_requests_total",
    Counter,
    "{request}",
    Exporter,
    &["result"],
    "Firehose deliveries to the metric stream endpoint, by result: accepted, duplicate (a retry of a request already read), unauthorized (wrong or missing access key, 401), invalid (400) or too_large (413).",
);
pub const EXPORTER_STREAM_RECORDS: Def = def(
    "aws_apigateway_exporter_stream_records_total",
    Counter,
    "{record}",
    Exporter,
    &["result"],
    "Metric stream records (one metric, one minute) by result: accepted, late (older than poll.lookback: counted only if that minute is still read), unchanged (a duplicate or an older aggregate), ignored (a metric or dimension set the exporter does not read), out_of_range (older than the buffer keeps, or ahead of the clock) or refused (past the limit of metrics held).",
);
pub const EXPORTER_STREAM_LAST_DELIVERY: Def = def(
    "aws_apigateway_exporter_stream_last_delivery_timestamp_seconds",
    Gauge,
    "s",
    Exporter,
    &[],
    "Unix time of the last accepted Firehose delivery, or of the start while there was none (0 without stream.enabled).",
);
pub const EXPORTER_STREAM_SERIES: Def = def(
    "aws_apigateway_exporter_stream_series",
    Gauge,
    "{series}",
    Exporter,
    &[],
    "Metrics (a metric and its dimensions) the metric stream buffer holds.",
);
pub const EXPORTER_CYCLES_SKIPPED: Def = def(
    "aws_apigateway_exporter_cycles_skipped_total",
    Counter,
    "{cycle}",
    Exporter,
    &[],
    "Poll ticks skipped because the previous cycle was still running (cycles never overlap).",
);
pub const EXPORTER_RELOAD_OK: Def = def(
    "aws_apigateway_exporter_config_last_reload_successful",
    Gauge,
    "",
    Exporter,
    &[],
    "1 when the last config reload (SIGHUP or POST /-/reload) succeeded, 0 when it was rejected.",
);
pub const EXPORTER_RELOAD_TIME: Def = def(
    "aws_apigateway_exporter_config_last_reload_success_timestamp_seconds",
    Gauge,
    "s",
    Exporter,
    &[],
    "Unix time of the last successful config reload (0 if none since start).",
);
pub const EXPORTER_OTLP_EXPORTS: Def = def(
    "aws_apigateway_exporter_otlp_exports_total",
    Counter,
    "{export}",
    Exporter,
    &["result"],
    "OTLP metric exports, by result (success or error).",
);
pub const EXPORTER_DISCOVERY_WAITING: Def = def(
    "aws_apigateway_exporter_discovery_calls_waiting",
    Gauge,
    "{call}",
    Exporter,
    &[],
    "Discovery calls (API Gateway management calls and route ListMetrics) waiting for their turn under discovery.max_requests_per_second, now.",
);
pub const EXPORTER_DISCOVERY_DURATION: Def = def(
    "aws_apigateway_exporter_discovery_duration_seconds",
    Gauge,
    "s",
    Exporter,
    &["account_id", "region"],
    "Wall-clock duration of the last completed discovery of this account and region (its calls paced by discovery.max_requests_per_second).",
);
pub const EXPORTER_DISCOVERY_LAST_SUCCESS: Def = def(
    "aws_apigateway_exporter_discovery_last_success_timestamp_seconds",
    Gauge,
    "s",
    Exporter,
    &["account_id", "region"],
    "Unix time the last discovery of this account and region completed (every listing read to its end).",
);
pub const EXPORTER_DISCOVERY_API_FAILURES: Def = def(
    "aws_apigateway_exporter_discovery_api_failures",
    Gauge,
    "{refresh}",
    Exporter,
    &["account_id", "region", "api_id", "api_type"],
    "Discoveries in a row whose reads of this API failed (it keeps its last known stages and integrations meanwhile); the series is there only while they fail.",
);
pub const EXPORTER_SOURCE_ACCOUNT_UP: Def = def(
    "aws_apigateway_exporter_source_account_up",
    Gauge,
    "",
    Exporter,
    &["account_id", "region", "discovery"],
    "1 when the latest discovery of this source account of a CloudWatch monitoring account succeeded, 0 while it fails (its APIs keep their last inventory and the other accounts go on); discovery is role (a read-only role in the account) or metrics (the monitoring account's ListMetrics alone).",
);
pub const EXPORTER_ACCESS_LOG_DELIVERIES: Def = def(
    "aws_apigateway_exporter_access_log_deliveries_total",
    Counter,
    "{request}",
    Exporter,
    &["result"],
    "Firehose deliveries of access log lines to the endpoint's /access-logs (access_logs.mode firehose), by result: accepted, duplicate (a retry of a delivery already read), unauthorized, invalid or too_large (refused; Firehose retries them, then writes them to its S3 backup).",
);
pub const EXPORTER_ACCESS_LOG_LINES: Def = def(
    "aws_apigateway_exporter_access_log_lines_total",
    Counter,
    "{line}",
    Exporter,
    &["result"],
    "Access log lines delivered by Firehose, by result: accepted (counted in its minute), duplicate (its requestId counted already), late (in a minute older than poll.lookback: missing from the counters in steady state), out_of_range (older than the buffer keeps, or from the future), invalid (not a line of the README's JSON format) or refused (a stage past the buffer's limit).",
);

/// Every family of the contract.
pub static ALL: &[&Def] = &[
    &REQUESTS,
    &ERRORS_4XX,
    &ERRORS_5XX,
    &CACHE_HITS,
    &CACHE_MISSES,
    &PROCESSED_BYTES,
    &WS_CONNECTS,
    &WS_MESSAGES,
    &WS_CLIENT_ERRORS,
    &WS_INTEGRATION_ERRORS,
    &WS_EXECUTION_ERRORS,
    &LATENCY,
    &INTEGRATION_LATENCY,
    &LATENCY_MAX,
    &INTEGRATION_LATENCY_MAX,
    &THROTTLED,
    &RESPONSES,
    &CANARY_RESPONSES,
    &CANARY_BASE_RESPONSES,
    &CANARY_LATENCY,
    &CANARY_LATENCY_MAX,
    &ROUTE_RESPONSES,
    &ROUTE_REQUESTS,
    &ROUTE_ERRORS_4XX,
    &ROUTE_ERRORS_5XX,
    &ROUTE_CACHE_HITS,
    &ROUTE_CACHE_MISSES,
    &ROUTE_PROCESSED_BYTES,
    &ROUTE_WS_CONNECTS,
    &ROUTE_WS_MESSAGES,
    &ROUTE_WS_CLIENT_ERRORS,
    &ROUTE_WS_INTEGRATION_ERRORS,
    &ROUTE_WS_EXECUTION_ERRORS,
    &ROUTE_LATENCY,
    &ROUTE_INTEGRATION_LATENCY,
    &ROUTE_LATENCY_MAX,
    &ROUTE_INTEGRATION_LATENCY_MAX,
    &API_INFO,
    &STAGE_INFO,
    &CANARY_TRAFFIC,
    &THROTTLE_RATE_LIMIT,
    &THROTTLE_BURST_LIMIT,
    &USAGE_PLAN_QUOTA_LIMIT,
    &INTEGRATION_TIMEOUT,
    &INTEGRATION_INFO,
    &LAMBDA_INVOCATIONS,
    &LAMBDA_ERRORS,
    &LAMBDA_THROTTLES,
    &LAMBDA_DURATION,
    &LAMBDA_DURATION_MAX,
    &EXPORTER_BUILD_INFO,
    &EXPORTER_UP,
    &EXPORTER_TARGET_UP,
    &EXPORTER_IDLE_STAGES,
    &EXPORTER_CYCLE_DURATION,
    &EXPORTER_LAST_SUCCESS,
    &EXPORTER_DATA_AGE,
    &EXPORTER_CLOUDWATCH_REQUESTS,
    &EXPORTER_METRICS_REQUESTED,
    &EXPORTER_AWS_REQUESTS,
    &EXPORTER_SERIES,
    &EXPORTER_APIS,
    &EXPORTER_REST_NAME_CONFLICTS,
    &EXPORTER_PERIODS_LOST,
    &EXPORTER_COUNTER_DECREASES,
    &EXPORTER_QUERY_ERRORS,
    &EXPORTER_STREAM_REQUESTS,
    &EXPORTER_STREAM_RECORDS,
    &EXPORTER_STREAM_LAST_DELIVERY,
    &EXPORTER_STREAM_SERIES,
    &EXPORTER_CYCLES_SKIPPED,
    &EXPORTER_RELOAD_OK,
    &EXPORTER_RELOAD_TIME,
    &EXPORTER_OTLP_EXPORTS,
    &EXPORTER_DISCOVERY_WAITING,
    &EXPORTER_DISCOVERY_DURATION,
    &EXPORTER_DISCOVERY_LAST_SUCCESS,
    &EXPORTER_DISCOVERY_API_FAILURES,
    &EXPORTER_SOURCE_ACCOUNT_UP,
    &EXPORTER_ACCESS_LOG_DELIVERIES,
    &EXPORTER_ACCESS_LOG_LINES,
];

/// The family of a Prometheus series name (`_sum`, `_count`, `_bucket` resolved).
pub fn family_of(series_name: &str) -> Option<&'static Def> {
    if let Some(d) = ALL.iter().find(|d| d.name == series_name) {
        return Some(d);
    }
    let (base, suffix) = series_name.rsplit_once('_')?;
    let d = ALL.iter().find(|d| d.name == base)?;
    let fits = match d.kind {
        Type::Summary => matches!(suffix, "sum" | "count"),
        Type::Histogram => matches!(suffix, "sum" | "count" | "bucket"),
        Type::Counter | Type::Gauge => false,
    };
    fits.then_some(*d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_typed_by_their_suffix() {
        for (i, d) in ALL.iter().enumerate() {
            assert_eq!(
                d.level == Level::Function,
                d.name.starts_with("aws_lambda_"),
                "{}",
                d.name
            );
            assert!(
                d.name.starts_with("aws_apigateway_") || d.name.starts_with("aws_lambda_"),
                "{}",
                d.name
            );
            assert!(
                ALL[..i].iter().all(|o| o.name != d.name),
                "{} twice",
                d.name
            );
            assert_eq!(
                d.kind == Type::Counter,
                d.name.ends_with("_total"),
                "{}",
                d.name
            );
            assert_eq!(
                d.level == Level::Exporter,
                d.name.starts_with("aws_apigateway_exporter_"),
                "{}",
                d.name
            );
            if d.name.ends_with("_seconds") {
                assert_eq!(d.unit, "s", "{}", d.name);
            }
            assert!(!d.help.is_empty() && !d.help.contains('\n'), "{}", d.name);
        }
    }

    #[test]
    fn route_families_mirror_stage_families() {
        for d in ALL.iter().filter(|d| d.level == Level::Route) {
            let stage = d
                .name
                .replacen("aws_apigateway_route_", "aws_apigateway_", 1);
            let s = family_of(&stage).unwrap_or_else(|| panic!("no stage family for {}", d.name));
            assert_eq!(
                (s.kind, s.unit, s.help, s.labels),
                (d.kind, d.unit, d.help, d.labels)
            );
        }
    }

    #[test]
    fn series_names_resolve_to_their_family() {
        assert_eq!(
            family_of("aws_apigateway_latency_seconds_count"),
            Some(&LATENCY)
        );
        assert_eq!(
            family_of("aws_apigateway_exporter_cycle_duration_seconds_bucket"),
            Some(&EXPORTER_CYCLE_DURATION)
        );
        assert_eq!(family_of("aws_apigateway_requests_total_count"), None);
        assert_eq!(
            LATENCY.unit_of("aws_apigateway_latency_seconds_count"),
            "{request}"
        );
        assert_eq!(LATENCY.unit_of("aws_apigateway_latency_seconds_sum"), "s");
        assert_eq!(
            ROUTE_LATENCY.unit_of("aws_apigateway_route_latency_seconds_count"),
            "{request}"
        );
        assert!(REQUESTS.help.ends_with(
            "From CloudWatch AWS/ApiGateway (polled, or pushed by a metric stream), not live."
        ));
    }
}
