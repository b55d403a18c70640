//! Responses read straight from API Gateway access logs (`access_logs.mode:
//! filter_log_events`): no metric filter to set up. Each cycle reads the window's events with
//! FilterLogEvents (one read per log group, shared by the stages that log to it) and answers
//! the access-log queries from them: 429s per reason, and responses per status, response type
//! and route. A period's count only grows as late events arrive, so the store counts each
//! event exactly once, like any CloudWatch sum.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use tracing::warn;

use super::recent::Recent;
use super::{MetricSource, Outcome, PartCounts, SourceError, Window, split};
use crate::config::{RequestRate, Statuses};
use crate::inventory::PageTokens;
use crate::model::{ApiType, CallResult, Cause, Family, RouteKey, Stat};
use crate::plan::{Query, reason_dimension};
use crate::ratelimit::RateLimiter;
use crate::sdk::{classify, describe};
use crate::selfmetrics::SelfMetrics;

/// FilterLogEvents calls per second, at most: the CloudWatch Logs quota is 5 per account
/// and region.
const LOGS_CALLS_PER_SECOND: f64 = 5.0;

/// Route-level response series per stage, at most, in one answer and in the store. Route
/// labels come from API Gateway's own resource templates and route keys, so a real API stays
/// far below; beyond it (a log group fed something else) events still count for the stage,
/// only not per route, and the routes kept first go on counting.
pub const MAX_ROUTE_SERIES: usize = 2_000;

/// Reads access log events of one target.
pub struct AccessLogSource {
    client: aws_sdk_cloudwatchlogs::Client,
    filter_pattern: String,
    statuses: Statuses,
    metrics: SelfMetrics,
    pace: RateLimiter,
    /// Canary log groups found missing, each logged once until it appears.
    missing: std::sync::Mutex<HashSet<String>>,
}

/// The event ids of the last [`EVENT_IDS`] events read: a duplicate can only come from pages
/// that overlap at their edge, so the newest ids are enough (two full FilterLogEvents pages).
const EVENT_IDS: usize = 20_000;

/// What counting needs from one access log line, besides its API and stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Detail {
    pub status: u16,
    /// `$context.error.responseType`; `none` when the integration answered (`-`).
    pub response_type: String,
    /// REST: `$context.resourcePath` and `$context.httpMethod`.
    pub resource: Option<String>,
    pub method: Option<String>,
    /// HTTP and WebSocket: `$context.routeKey`.
    pub route_key: Option<String>,
}

impl Detail {
    /// The method or route of this response, as the API type names it.
    fn route(&self, api_type: ApiType) -> Option<RouteKey> {
        match api_type {
            ApiType::Rest => Some(RouteKey::Method {
                resource: self.resource.clone()?,
                method: self.method.clone()?,
            }),
            ApiType::Http | ApiType::Websocket => Some(RouteKey::from_v2(
                self.route_key.as_deref()?,
                api_type == ApiType::Websocket,
            )),
        }
    }

    fn cause(&self) -> Cause {
        Cause {
            status: self.status.to_string(),
            response_type: self.response_type.clone(),
        }
    }
}

/// Event counts of one log group: per (api id, stage), per (detail, period start).
pub(super) type GroupCounts = HashMap<(String, String), HashMap<(Detail, i64), f64>>;

/// Response latencies of one period: milliseconds → events. Exact, and bounded by the
/// distinct values (whole milliseconds), not by the event rate.
type Latencies = BTreeMap<u64, u64>;

/// The latencies of one period. Sum and count make the counters of every period read; the
/// values themselves (for the quantile and maximum gauges, which the store keeps only from
/// the window's `keep_from`) are kept only for those periods, so a catch-up read over hours
/// holds two numbers for each older period.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct PeriodLatency {
    sum_ms: f64,
    count: u64,
    values: Option<Latencies>,
}

impl PeriodLatency {
    /// Adds another period's latencies (a minute of a longer period); their values are
    /// kept only when `keep_value`.
    fn merge(&mut self, other: &PeriodLatency, keep_value: bool) {
        self.sum_ms += other.sum_ms;
        self.count += other.count;
        if keep_value && let Some(values) = &other.values {
            let into = self.values.get_or_insert_default();
            for (ms, n) in values {
                *into.entry(*ms).or_default() += n;
            }
        }
    }

    pub(super) fn add(&mut self, ms: u64, keep_value: bool) {
        self.sum_ms += ms as f64;
        self.count += 1;
        if keep_value {
            *self.values.get_or_insert_default().entry(ms).or_default() += 1;
        }
    }
}

/// Latencies of one log: per (api id, stage), per period.
pub(super) type GroupLatency = HashMap<(String, String), HashMap<i64, PeriodLatency>>;

/// What one read of a log gives: the counts of every line, and for a log read in full the
/// latencies per (api id, stage) and period; where lines say `isCanaryRequest`, the same
/// split into the canary's lines and the base's.
#[derive(Debug, Default)]
pub(super) struct GroupRead {
    pub(super) counts: GroupCounts,
    pub(super) latency: GroupLatency,
    pub(super) canary: GroupCounts,
    pub(super) base: GroupCounts,
    pub(super) canary_latency: GroupLatency,
}

impl GroupRead {
    /// Counts one line in `period`; its latency too when `latency` (a log read in full),
    /// its value kept for the gauges when `keep_value`.
    pub(super) fn add(&mut self, line: Line, period: i64, latency: bool, keep_value: bool) {
        let key = (line.api, line.stage);
        if latency && let Some(ms) = line.latency_ms {
            let into = if line.canary == Some(true) {
                &mut self.canary_latency
            } else {
                &mut self.latency
            };
            into.entry(key.clone())
                .or_default()
                .entry(period)
                .or_default()
                .add(ms, keep_value);
        }
        match line.canary {
            Some(true) => add_count(&mut self.canary, &key, &line.detail, period),
            Some(false) => add_count(&mut self.base, &key, &line.detail, period),
            None => {}
        }
        add_count(&mut self.counts, &key, &line.detail, period);
    }

    /// Adds one stage's counts of a minute (lines delivered by Firehose), as `period`'s.
    pub(super) fn add_counts<'a>(
        &mut self,
        stage: &(String, String),
        period: i64,
        all: impl IntoIterator<Item = (&'a Detail, u32)>,
        canary: impl IntoIterator<Item = (&'a Detail, u32)>,
        base: impl IntoIterator<Item = (&'a Detail, u32)>,
    ) {
        fn add<'a>(
            into: &mut GroupCounts,
            stage: &(String, String),
            period: i64,
            from: impl IntoIterator<Item = (&'a Detail, u32)>,
        ) {
            let mut from = from.into_iter().peekable();
            if from.peek().is_none() {
                return;
            }
            let counts = into.entry(stage.clone()).or_default();
            for (detail, n) in from {
                *counts.entry((detail.clone(), period)).or_default() += f64::from(n);
            }
        }
        add(&mut self.counts, stage, period, all);
        add(&mut self.canary, stage, period, canary);
        add(&mut self.base, stage, period, base);
    }

    /// Adds one stage's canary latencies of a minute, as `period`'s.
    pub(super) fn add_latency(
        &mut self,
        stage: &(String, String),
        period: i64,
        latency: &PeriodLatency,
        keep_value: bool,
    ) {
        if latency.count == 0 {
            return;
        }
        self.canary_latency
            .entry(stage.clone())
            .or_default()
            .entry(period)
            .or_default()
            .merge(latency, keep_value);
    }

    /// The answer to `q` for its stage, in `window`.
    pub(super) fn answer(&self, q: &Query, statuses: &Statuses, window: Window) -> Outcome {
        let stage = (
            q.labels.api_id.clone(),
            q.labels.stage.clone().unwrap_or_default(),
        );
        let (counts, latency) = match (q.family, q.canary_split) {
            (Family::CanaryBaseResponses, _) => (&self.base, &self.latency),
            (_, true) => (&self.canary, &self.canary_latency),
            (_, false) => (&self.counts, &self.latency),
        };
        if q.family == Family::CanaryLatency {
            return latency_answer(q.stat, latency.get(&stage), window);
        }
        answer(q, statuses, counts.get(&stage), window)
    }
}

fn add_count(counts: &mut GroupCounts, key: &(String, String), detail: &Detail, period: i64) {
    *counts
        .entry(key.clone())
        .or_default()
        .entry((detail.clone(), period))
        .or_default() += 1.0;
}

/// Who reads a log group, which says how: stages read the events their filter pattern
/// selects; a canary reads every event, and its group may not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readers {
    Stages,
    Canaries,
    /// A canary's group that a stage logs to as well: read in full, and must exist.
    Both,
}

impl Readers {
    fn of<'a>(mut queries: impl Iterator<Item = &'a Query>) -> Readers {
        let first = queries.next().is_some_and(|q| q.family.canary());
        let mixed = queries.any(|q| q.family.canary() != first);
        match (first, mixed) {
            (_, true) => Readers::Both,
            (true, false) => Readers::Canaries,
            (false, false) => Readers::Stages,
        }
    }

    /// Every event is read (and its latency kept), not only the filter pattern's.
    fn all(self) -> bool {
        self != Readers::Stages
    }
}

/// The longest response latency taken from a log line, in milliseconds: an hour, far past
/// any integration timeout. A larger value is not a latency API Gateway wrote.
const MAX_LATENCY_MS: f64 = 3_600_000.0;

impl AccessLogSource {
    pub fn new(
        client: aws_sdk_cloudwatchlogs::Client,
        filter_pattern: String,
        statuses: Statuses,
        metrics: SelfMetrics,
    ) -> AccessLogSource {
        let rate = RequestRate::new(LOGS_CALLS_PER_SECOND).unwrap_or(RequestRate::Unlimited);
        AccessLogSource {
            client,
            filter_pattern,
            statuses,
            metrics,
            pace: RateLimiter::new(rate),
            missing: std::sync::Mutex::default(),
        }
    }

    /// Counts the events of `group` in `window` per stage, detail and period: those the
    /// filter pattern selects, or every event when a canary reads the group, whose latencies
    /// are kept too. A group only canaries read that does not exist yet holds nothing to
    /// count.
    async fn count(
        &self,
        group: &str,
        window: Window,
        readers: Readers,
    ) -> Result<GroupRead, SourceError> {
        let all = readers.all();
        let canary = readers == Readers::Canaries;
        let mut read = GroupRead::default();
        let mut seen = Recent::new(EVENT_IDS);
        let mut tokens = PageTokens::default();
        let mut token: Option<String> = None;
        loop {
            self.pace.acquire().await;
            // A source account's group, read through the monitoring account, is named by its
            // ARN ("you must use the log group ARN"); the target's own by its name.
            let request = self.client.filter_log_events();
            let request = if group.starts_with("arn:") {
                request.log_group_identifier(group)
            } else {
                request.log_group_name(group)
            };
            let result = request
                .start_time(window.start * 1000)
                .end_time(window.end * 1000)
                .set_filter_pattern((!all).then(|| self.filter_pattern.clone()))
                .set_next_token(token.take())
                .send()
                .await;
            let out = match result {
                Ok(out) => {
                    self.metrics
                        .aws_call("logs", "FilterLogEvents", CallResult::Success);
                    out
                }
                // A canary that has not logged yet may have no group yet: nothing to count.
                // Logged once, as the group may also never come (API Gateway's logging role
                // cannot create it).
                Err(e)
                    if canary
                        && e.as_service_error()
                            .is_some_and(|se| se.is_resource_not_found_exception()) =>
                {
                    self.metrics
                        .aws_call("logs", "FilterLogEvents", CallResult::Success);
                    if self.note_missing(group, true) {
                        warn!(
                            log_group = group,
                            "the canary's access log group does not exist (yet): nothing to count until API Gateway writes a canary request there"
                        );
                    }
                    return Ok(read);
                }
                Err(e) => {
                    let class = classify(&e);
                    self.metrics.aws_call("logs", "FilterLogEvents", class);
                    return Err(SourceError {
                        message: format!("FilterLogEvents {group}: {}", describe(&e)),
                        throttled: class == CallResult::Throttled,
                    });
                }
            };
            for event in out.events() {
                let (Some(ts), Some(message)) = (event.timestamp(), event.message()) else {
                    continue;
                };
                // An event seen twice (overlapping pages) still counts once.
                if let Some(id) = event.event_id()
                    && (seen.contains(id) || !seen.insert(id.to_string()))
                {
                    continue;
                }
                let Some(line) = parse_line(message) else {
                    continue;
                };
                let period = (ts / 1000).div_euclid(window.period) * window.period;
                read.add(line, period, all, period >= window.keep_from);
            }
            token = tokens
                .next(out.next_token())
                .map_err(|message| SourceError {
                    message: format!("FilterLogEvents {group}: {message}"),
                    throttled: false,
                })?;
            if token.is_none() {
                if canary {
                    self.note_missing(group, false);
                }
                return Ok(read);
            }
        }
    }

    /// Records whether `group` is missing; true when it just went missing.
    fn note_missing(&self, group: &str, missing: bool) -> bool {
        let Ok(mut set) = self.missing.lock() else {
            return false;
        };
        if missing {
            set.insert(group.to_string())
        } else {
            set.remove(group);
            false
        }
    }
}

/// The answer to one access-log query from its stage's events: 429s of one reason, or the
/// responses of the counted `statuses` split by cause and route.
fn answer(
    q: &Query,
    statuses: &Statuses,
    stage: Option<&HashMap<(Detail, i64), f64>>,
    window: Window,
) -> Outcome {
    let empty = HashMap::new();
    let events = stage.unwrap_or(&empty);
    let in_window = |t: i64| t >= window.start && t < window.end;
    if matches!(
        q.family,
        Family::CanaryResponses | Family::CanaryBaseResponses
    ) {
        // Every response of the canary (or its base), whatever its status, for the stage only.
        let mut parts = PartCounts::new();
        for ((detail, t), n) in events {
            if in_window(*t) {
                *parts
                    .entry((None, detail.cause()))
                    .or_default()
                    .entry(*t)
                    .or_default() += n;
            }
        }
        return split(parts);
    }
    if q.family.split() {
        let mut parts = PartCounts::new();
        let mut routes = 0usize;
        let mut over = 0usize;
        // In a fixed order, so the same routes are kept cycle after cycle.
        let mut sorted: Vec<(&(Detail, i64), &f64)> = events.iter().collect();
        sorted.sort_unstable_by(|(a, _), (b, _)| order(a).cmp(&order(b)));
        for ((detail, t), n) in sorted {
            if !in_window(*t) || !statuses.contains(detail.status) {
                continue;
            }
            let cause = detail.cause();
            if let Some(route) = detail.route(q.labels.api_type) {
                let key = (Some(route), cause.clone());
                if parts.contains_key(&key) || routes < MAX_ROUTE_SERIES {
                    let periods = parts.entry(key).or_default();
                    routes += usize::from(periods.is_empty());
                    *periods.entry(*t).or_default() += n;
                } else {
                    over += 1;
                }
            }
            *parts
                .entry((None, cause))
                .or_default()
                .entry(*t)
                .or_default() += n;
        }
        if over > 0 {
            warn!(api_id = %q.labels.api_id, stage = ?q.labels.stage, limit = MAX_ROUTE_SERIES, "too many routes in the access logs; the rest count for the stage only");
        }
        return split(parts);
    }
    // 429s of one reason.
    let reason = reason_dimension(q.family);
    let mut points: BTreeMap<i64, f64> = BTreeMap::new();
    for ((detail, t), n) in events {
        if detail.status == 429 && throttle_reason(&detail.response_type) == reason && in_window(*t)
        {
            *points.entry(*t).or_default() += n;
        }
    }
    Outcome::Points(points.into_iter().collect())
}

/// The canary latency statistic `stat` of each period in `window`, in milliseconds (the
/// store scales it like CloudWatch's): percentiles by nearest rank, the smallest latency
/// at or above which `q` of the period's requests fall.
fn latency_answer(
    stat: Stat,
    periods: Option<&HashMap<i64, PeriodLatency>>,
    window: Window,
) -> Outcome {
    let Some(periods) = periods else {
        return Outcome::Points(Vec::new());
    };
    let mut points: Vec<(i64, f64)> = periods
        .iter()
        .filter(|(t, _)| **t >= window.start && **t < window.end)
        .filter_map(|(t, values)| latency_stat(stat, values).map(|v| (*t, v)))
        .collect();
    points.sort_by_key(|(t, _)| *t);
    Outcome::Points(points)
}

/// One statistic of a period's latencies; `None` without events, and for a gauge of a
/// period whose values were not kept.
fn latency_stat(stat: Stat, p: &PeriodLatency) -> Option<f64> {
    if p.count == 0 {
        return None;
    }
    match stat {
        Stat::Sum => Some(p.sum_ms),
        Stat::SampleCount => Some(p.count as f64),
        Stat::Maximum => p.values.as_ref()?.keys().next_back().map(|ms| *ms as f64),
        Stat::Percentile(hundredths) => {
            // Nearest rank: the ⌈q·N⌉-th smallest value (at least the first), in integers
            // (q is in hundredths of a percent), so no rank is off by rounding.
            let rank = (u64::from(hundredths) * p.count)
                .div_ceil(10_000)
                .clamp(1, p.count);
            let mut seen = 0;
            p.values.as_ref()?.iter().find_map(|(ms, n)| {
                seen += n;
                (seen >= rank).then_some(*ms as f64)
            })
        }
    }
}

/// The order events are taken in: by route first.
fn order((d, t): &(Detail, i64)) -> (Option<&str>, Option<&str>, Option<&str>, u16, &str, i64) {
    (
        d.resource.as_deref(),
        d.method.as_deref(),
        d.route_key.as_deref(),
        d.status,
        &d.response_type,
        *t,
    )
}

/// API Gateway's gateway response types (`$context.error.responseType`). Any other value
/// counts as `other`, so a log line cannot make a series of its own.
const RESPONSE_TYPES: [&str; 21] = [
    "ACCESS_DENIED",
    "API_CONFIGURATION_ERROR",
    "AUTHORIZER_CONFIGURATION_ERROR",
    "AUTHORIZER_FAILURE",
    "BAD_REQUEST_BODY",
    "BAD_REQUEST_PARAMETERS",
    "DEFAULT_4XX",
    "DEFAULT_5XX",
    "EXPIRED_TOKEN",
    "INTEGRATION_FAILURE",
    "INTEGRATION_TIMEOUT",
    "INVALID_API_KEY",
    "INVALID_SIGNATURE",
    "MISSING_AUTHENTICATION_TOKEN",
    "QUOTA_EXCEEDED",
    "REQUEST_TOO_LARGE",
    "RESOURCE_NOT_FOUND",
    "THROTTLED",
    "UNAUTHORIZED",
    "UNSUPPORTED_MEDIA_TYPE",
    "WAF_FILTERED",
];

/// The `Reason` of a 429: a usage plan quota, or else a throttle limit.
fn throttle_reason(response_type: &str) -> &'static str {
    if response_type == "QUOTA_EXCEEDED" {
        reason_dimension(Family::QuotaExceeded)
    } else {
        reason_dimension(Family::Throttled)
    }
}

/// One access log line, as counting needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub api: String,
    pub stage: String,
    pub detail: Detail,
    /// `$context.responseLatency` in whole milliseconds, when the line carries a valid one.
    pub latency_ms: Option<u64>,
    /// `$context.requestId`: a line delivered twice counts once.
    pub request_id: Option<String>,
    /// `$context.requestTimeEpoch`, in milliseconds: the minute a line delivered by Firehose
    /// counts in (a CloudWatch Logs event has its own timestamp).
    pub time_ms: Option<i64>,
    /// `$context.isCanaryRequest` (REST): whether a canary release answered the request;
    /// `None` where the format does not carry it.
    pub canary: Option<bool>,
}

/// The (api id, stage, detail) of a JSON access log line; `None` for a line that is not one.
pub fn parse_event(message: &str) -> Option<(String, String, Detail)> {
    parse_line(message).map(|l| (l.api, l.stage, l.detail))
}

/// A JSON access log line; `None` for a line that is not one (no JSON, no API or stage, no
/// valid status). Field names are the ones the README's log format uses. Values API Gateway
/// logs as `-` (unset) count as absent; a response type that API Gateway does not define
/// becomes `other`, so a stray value cannot make a new series; a latency that is not a
/// number from 0 to an hour is left out, the line still counts.
pub fn parse_line(message: &str) -> Option<Line> {
    let v: serde_json::Value = serde_json::from_str(message).ok()?;
    let text = |field: &str| -> Option<String> {
        let s = v.get(field)?.as_str()?;
        (!s.is_empty() && s != "-" && s.len() <= 512).then(|| s.to_string())
    };
    let status = match v.get("status")? {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (100..=599).contains(s))?;
    let response_type = match text("responseType") {
        None => "none".to_string(),
        Some(t) if RESPONSE_TYPES.contains(&t.as_str()) => t,
        Some(_) => "other".to_string(),
    };
    let latency_ms = match v.get("responseLatency") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.parse::<f64>().ok(),
        _ => None,
    }
    .filter(|ms| (0.0..=MAX_LATENCY_MS).contains(ms))
    .map(|ms| ms.round() as u64);
    let time_ms = match v.get("requestTimeEpoch") {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.parse::<i64>().ok(),
        _ => None,
    }
    .filter(|ms| *ms > 0);
    let canary = match v.get("isCanaryRequest") {
        Some(serde_json::Value::Bool(b)) => Some(*b),
        Some(serde_json::Value::String(s)) if s == "true" => Some(true),
        Some(serde_json::Value::String(s)) if s == "false" => Some(false),
        _ => None,
    };
    Some(Line {
        request_id: text("requestId"),
        time_ms,
        canary,
        api: text("apiId")?,
        stage: text("stage")?,
        detail: Detail {
            status,
            response_type,
            resource: text("resourcePath"),
            method: text("httpMethod"),
            route_key: text("routeKey"),
        },
        latency_ms,
    })
}

#[async_trait]
impl MetricSource for AccessLogSource {
    async fn fetch(&self, queries: &[Query], window: Window) -> Result<Vec<Outcome>, SourceError> {
        let groups: Vec<Arc<str>> = {
            let mut g: Vec<Arc<str>> = queries.iter().filter_map(|q| q.log_group.clone()).collect();
            g.sort();
            g.dedup();
            g
        };
        // One read per log group, shared by all the stages that log to it; a canary's group
        // is read in full.
        let mut by_group: HashMap<Arc<str>, Result<GroupRead, String>> = HashMap::new();
        for group in groups {
            // A canary's group is read in full; usually only canary queries read it (AWS
            // names it after the stage's), but a stage may log there too.
            let readers = Readers::of(
                queries
                    .iter()
                    .filter(|q| q.log_group.as_ref() == Some(&group)),
            );
            let read = self
                .count(&group, window, readers)
                .await
                .map_err(|e| e.message);
            by_group.insert(group, read);
        }
        if !by_group.is_empty() && by_group.values().all(Result::is_err) {
            let message = by_group
                .values()
                .filter_map(|r| r.as_ref().err())
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            return Err(SourceError {
                message,
                throttled: false,
            });
        }
        Ok(queries
            .iter()
            .map(|q| {
                let Some(counts) = q.log_group.as_ref().and_then(|g| by_group.get(g)) else {
                    return Outcome::Failed("NoLogGroup");
                };
                let Ok(read) = counts else {
                    return Outcome::Failed("LogsError");
                };
                read.answer(q, &self.statuses, window)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Part;

    #[test]
    fn parses_access_log_lines() {
        let line = r#"{"requestId":"r","apiId":"a1","stage":"prod","status":429,"responseType":"THROTTLED","resourcePath":"/pets/{id}","httpMethod":"GET","routeKey":"-"}"#;
        let (api, stage, d) = parse_event(line).unwrap();
        assert_eq!((api.as_str(), stage.as_str()), ("a1", "prod"));
        assert_eq!((d.status, d.response_type.as_str()), (429, "THROTTLED"));
        assert_eq!(
            d.route(ApiType::Rest),
            Some(RouteKey::Method {
                resource: "/pets/{id}".into(),
                method: "GET".into()
            })
        );
        assert_eq!(d.route(ApiType::Http), None, "routeKey - is unset");
        let v2 = r#"{"apiId":"a1","stage":"$default","status":"504","responseType":"-","routeKey":"GET /pets"}"#;
        let (_, stage, d) = parse_event(v2).unwrap();
        assert_eq!(stage, "$default");
        assert_eq!((d.status, d.response_type.as_str()), (504, "none"));
        assert_eq!(
            d.route(ApiType::Http),
            Some(RouteKey::Method {
                resource: "/pets".into(),
                method: "GET".into()
            })
        );
        let ws = r#"{"apiId":"w","stage":"prod","status":500,"routeKey":"$connect","responseType":"<script>"}"#;
        let (_, _, d) = parse_event(ws).unwrap();
        assert_eq!(
            d.route(ApiType::Websocket),
            Some(RouteKey::Route("$connect".into()))
        );
        assert_eq!(d.response_type, "other");
        // A line API Gateway writes in the README's format parses.
        let mut written = crate::model::ACCESS_LOG_FORMAT.to_string();
        for (variable, value) in [
            ("$context.requestId", "r"),
            ("$context.apiId", "a1"),
            ("$context.stage", "prod"),
            ("$context.status", "504"),
            ("$context.error.responseType", "INTEGRATION_TIMEOUT"),
            ("$context.resourcePath", "/x"),
            ("$context.httpMethod", "GET"),
            ("$context.routeKey", "-"),
            ("$context.responseLatency", "1234"),
            ("$context.requestTimeEpoch", "1700000000123"),
        ] {
            written = written.replace(variable, value);
        }
        let line = parse_line(&written).unwrap();
        assert_eq!(line.latency_ms, Some(1234));
        assert_eq!(line.time_ms, Some(1_700_000_000_123));
        assert_eq!(line.request_id.as_deref(), Some("r"));
        assert_eq!(line.canary, None);
        let canary = written.replacen('}', r#","isCanaryRequest":"true"}"#, 1);
        assert_eq!(parse_line(&canary).unwrap().canary, Some(true));
        let (_, _, d) = parse_event(&written).unwrap();
        assert_eq!(
            (d.status, d.response_type.as_str()),
            (504, "INTEGRATION_TIMEOUT")
        );
        assert!(d.route(ApiType::Rest).is_some());
        assert_eq!(throttle_reason("QUOTA_EXCEEDED"), "QUOTA_EXCEEDED");
        assert_eq!(throttle_reason("none"), "THROTTLED");
        for bad in [
            "not json 429",
            r#"{"status":429}"#,
            r#"{"apiId":"a","stage":"s","status":600}"#,
            r#"{"apiId":"a","stage":"s","status":-1}"#,
            r#"{"apiId":"a","stage":"s","status":"4o4"}"#,
            r#"{"apiId":"a","stage":"-","status":404}"#,
            r#"[429]"#,
        ] {
            assert_eq!(parse_event(bad), None, "{bad}");
        }
    }

    fn query(family: Family) -> Query {
        Query {
            namespace: Arc::from("AWS/ApiGateway"),
            family,
            stat: crate::model::Stat::Sum,
            metric_name: Arc::from("AccessLogEvents"),
            dimensions: Vec::new().into(),
            labels: Arc::new(crate::model::SeriesLabels {
                stage: Some("prod".into()),
                ..crate::model::SeriesLabels::account("1", "r")
            }),
            log_group: Some(Arc::from("g")),
            delivered: false,
            canary_split: false,
            streamed: false,
            account: None,
        }
    }

    #[test]
    fn a_flood_of_routes_is_cut_off_but_the_stage_stays_exact() {
        let window = Window::at(600, 60, 600);
        let mut events = HashMap::new();
        let routes = MAX_ROUTE_SERIES + 500;
        for i in 0..routes {
            let detail = Detail {
                status: 404,
                response_type: "none".into(),
                resource: Some(format!("/r{i}")),
                method: Some("GET".into()),
                route_key: None,
            };
            events.insert((detail, 60), 2.0);
        }
        // A 200 and a status outside `statuses` are not counted as responses.
        for status in [200, 503] {
            let detail = Detail {
                status,
                response_type: "none".into(),
                resource: None,
                method: None,
                route_key: None,
            };
            events.insert((detail, 60), 7.0);
        }
        let statuses = Statuses::new("4xx").unwrap();
        let Outcome::Split(parts) =
            answer(&query(Family::Responses), &statuses, Some(&events), window)
        else {
            panic!("a split answer");
        };
        let stage: Vec<&Part> = parts.iter().filter(|p| p.route.is_none()).collect();
        assert_eq!(stage.len(), 1);
        assert_eq!(stage[0].cause.status, "404");
        assert_eq!(stage[0].points, [(60, 2.0 * routes as f64)]);
        assert_eq!(parts.len() - 1, MAX_ROUTE_SERIES);
        // No 429 among the events: the throttle families answer nothing.
        assert_eq!(
            answer(&query(Family::Throttled), &statuses, Some(&events), window),
            Outcome::Points(vec![])
        );
    }

    #[test]
    fn canary_latency_statistics_are_exact() {
        // 1..=100 ms, once each, plus a 5 s outlier: 101 requests.
        let period = |values: &[(u64, u64)], keep: bool| {
            let mut p = PeriodLatency::default();
            for (ms, n) in values {
                for _ in 0..*n {
                    p.add(*ms, keep);
                }
            }
            p
        };
        let mut spread: Vec<(u64, u64)> = (1..=100).map(|ms| (ms, 1)).collect();
        spread.push((5_000, 1));
        let values = period(&spread, true);
        assert_eq!(latency_stat(Stat::SampleCount, &values), Some(101.0));
        assert_eq!(latency_stat(Stat::Sum, &values), Some(5_050.0 + 5_000.0));
        assert_eq!(latency_stat(Stat::Maximum, &values), Some(5_000.0));
        // Nearest rank: ⌈0.5 · 101⌉ = 51st, ⌈0.99 · 101⌉ = 100th smallest.
        assert_eq!(latency_stat(Stat::Percentile(5000), &values), Some(51.0));
        assert_eq!(latency_stat(Stat::Percentile(9900), &values), Some(100.0));
        assert_eq!(latency_stat(Stat::Percentile(9999), &values), Some(5_000.0));
        assert_eq!(latency_stat(Stat::Percentile(100), &values), Some(2.0));
        // Repeated values count with their multiplicity.
        let heavy = period(&[(10, 98), (900, 2)], true);
        assert_eq!(latency_stat(Stat::Percentile(9800), &heavy), Some(10.0));
        assert_eq!(latency_stat(Stat::Percentile(9900), &heavy), Some(900.0));
        assert_eq!(latency_stat(Stat::Sum, &PeriodLatency::default()), None);
        // A rank a float product would miss: p1.7 of 3,000 is exactly the 51st.
        let ranks = period(&(1..=3_000).map(|ms| (ms, 1)).collect::<Vec<_>>(), true);
        assert_eq!(latency_stat(Stat::Percentile(170), &ranks), Some(51.0));
        // A period before the window's keep_from keeps its sum and count, no gauges.
        let old = period(&[(10, 98), (900, 2)], false);
        assert_eq!(old.values, None);
        assert_eq!(latency_stat(Stat::Sum, &old), Some(980.0 + 1_800.0));
        assert_eq!(latency_stat(Stat::SampleCount, &old), Some(100.0));
        assert_eq!(latency_stat(Stat::Maximum, &old), None);
        assert_eq!(latency_stat(Stat::Percentile(9900), &old), None);
        // Periods outside the window are not answered.
        let window = Window::at(600, 60, 120);
        let periods = HashMap::from([(480, heavy.clone()), (0, heavy)]);
        assert_eq!(
            latency_answer(Stat::SampleCount, Some(&periods), window),
            Outcome::Points(vec![(480, 100.0)])
        );
        assert_eq!(
            latency_answer(Stat::Sum, None, window),
            Outcome::Points(vec![])
        );
    }

    #[test]
    fn a_group_is_read_in_full_when_a_canary_reads_it() {
        let (stage, canary) = (query(Family::Responses), query(Family::CanaryResponses));
        let readers = |qs: &[&Query]| Readers::of(qs.iter().copied());
        assert_eq!(readers(&[&stage, &stage]), Readers::Stages);
        assert_eq!(readers(&[&canary, &canary]), Readers::Canaries);
        assert_eq!(readers(&[&stage, &canary]), Readers::Both);
        assert_eq!(readers(&[&canary, &stage]), Readers::Both);
        assert!(!Readers::Stages.all() && Readers::Canaries.all() && Readers::Both.all());
    }

    #[test]
    fn a_latency_that_is_not_one_is_left_out_and_the_line_still_counts() {
        let line = |latency: &str| {
            parse_line(&format!(
                r#"{{"apiId":"a","stage":"s","status":200,"responseLatency":{latency}}}"#
            ))
            .map(|l| l.latency_ms)
        };
        assert_eq!(line(r#""87""#), Some(Some(87)));
        assert_eq!(line("87"), Some(Some(87)));
        assert_eq!(line("12.6"), Some(Some(13)));
        assert_eq!(line("0"), Some(Some(0)));
        for bad in [
            r#""-""#, "-1", "1e300", r#""NaN""#, r#""inf""#, "null", "[1]", r#""""#, "3600001",
        ] {
            assert_eq!(line(bad), Some(None), "{bad}");
        }
    }

    #[test]
    fn a_canary_answers_every_status_for_the_stage_only() {
        let window = Window::at(600, 60, 600);
        let mut events = HashMap::new();
        for (status, n) in [(200, 90.0), (500, 8.0), (404, 2.0)] {
            let detail = Detail {
                status,
                response_type: "none".into(),
                resource: Some("/x".into()),
                method: Some("GET".into()),
                route_key: None,
            };
            events.insert((detail, 60), n);
        }
        // `statuses` selects 5XX only: the canary still counts every response.
        let statuses = Statuses::new("5xx").unwrap();
        let Outcome::Split(parts) = answer(
            &query(Family::CanaryResponses),
            &statuses,
            Some(&events),
            window,
        ) else {
            panic!("a split answer");
        };
        assert!(parts.iter().all(|p| p.route.is_none()));
        let mut got: Vec<(String, Vec<(i64, f64)>)> = parts
            .into_iter()
            .map(|p| (p.cause.status, p.points))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                ("200".to_string(), vec![(60, 90.0)]),
                ("404".to_string(), vec![(60, 2.0)]),
                ("500".to_string(), vec![(60, 8.0)]),
            ]
        );
    }
}
