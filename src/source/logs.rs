//! 429 counts read straight from API Gateway access logs (`access_logs.mode:
//! filter_log_events`): no metric filter to set up. Each cycle reads the window's 429 events
//! with FilterLogEvents and answers every access-log query with the number of events per
//! period. A period's count only grows as late events arrive, so the store counts each event
//! exactly once, like any CloudWatch sum.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;

use super::{MetricSource, Outcome, SourceError, Window};
use crate::model::CallResult;
use crate::model::Family;
use crate::plan::{Query, reason_dimension};
use crate::sdk::{classify, describe};
use crate::selfmetrics::SelfMetrics;

/// Reads access log events of one target.
pub struct AccessLogSource {
    client: aws_sdk_cloudwatchlogs::Client,
    filter_pattern: String,
    metrics: SelfMetrics,
}

/// The event ids of the last [`RecentIds::CAPACITY`] events read: a duplicate can only come
/// from pages that overlap at their edge, so the newest ids are enough, and memory stays
/// bounded whatever the event rate (the counts themselves are per period).
#[derive(Debug, Default)]
struct RecentIds {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl RecentIds {
    /// Two full FilterLogEvents pages.
    const CAPACITY: usize = 20_000;

    /// False when `id` was seen among the recent ids.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == Self::CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(id.to_string());
        self.ids.insert(id.to_string());
        true
    }
}

/// (api id, stage, `responseType`) of one 429 event.
type EventKey = (String, String, &'static str);

impl AccessLogSource {
    pub fn new(
        client: aws_sdk_cloudwatchlogs::Client,
        filter_pattern: String,
        metrics: SelfMetrics,
    ) -> AccessLogSource {
        AccessLogSource {
            client,
            filter_pattern,
            metrics,
        }
    }

    /// Counts the 429 events of `group` in `window` per (api, stage, reason, period).
    async fn count(
        &self,
        group: &str,
        window: Window,
    ) -> Result<HashMap<(EventKey, i64), f64>, SourceError> {
        let mut counts: HashMap<(EventKey, i64), f64> = HashMap::new();
        let mut seen = RecentIds::default();
        let mut token: Option<String> = None;
        loop {
            let result = self
                .client
                .filter_log_events()
                .log_group_name(group)
                .start_time(window.start * 1000)
                .end_time(window.end * 1000)
                .filter_pattern(&self.filter_pattern)
                .set_next_token(token.take())
                .send()
                .await;
            let out = match result {
                Ok(out) => {
                    self.metrics
                        .aws_call("logs", "FilterLogEvents", CallResult::Success);
                    out
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
                    && !seen.insert(id)
                {
                    continue;
                }
                let Some(key) = parse_event(message) else {
                    continue;
                };
                let period = (ts / 1000).div_euclid(window.period) * window.period;
                *counts.entry((key, period)).or_default() += 1.0;
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(counts)
    }
}

/// The (api id, stage, reason) of a JSON access log line answered 429; `None` for any other
/// line. The status is checked here too, so a filter pattern that matched too much cannot
/// inflate the count. A 429 without a known `responseType` is a throttle.
pub fn parse_event(message: &str) -> Option<EventKey> {
    let v: serde_json::Value = serde_json::from_str(message).ok()?;
    let status = match v.get("status")? {
        serde_json::Value::Number(n) => n.as_i64()?,
        serde_json::Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    if status != 429 {
        return None;
    }
    let api = v.get("apiId")?.as_str()?.to_string();
    let stage = v.get("stage")?.as_str()?.to_string();
    let reason = match v.get("responseType").and_then(|r| r.as_str()) {
        Some("QUOTA_EXCEEDED") => reason_dimension(Family::QuotaExceeded),
        _ => reason_dimension(Family::Throttled),
    };
    Some((api, stage, reason))
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
        // One read per log group, shared by all the stages that log to it.
        let mut by_group: HashMap<Arc<str>, Result<HashMap<(EventKey, i64), f64>, String>> =
            HashMap::new();
        for group in groups {
            let counts = self.count(&group, window).await.map_err(|e| e.message);
            by_group.insert(group, counts);
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
                let Ok(counts) = counts else {
                    return Outcome::Failed("LogsError");
                };
                let dim = |name: &str| {
                    q.dimensions
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| v.as_str())
                };
                let (Some(api), Some(stage)) = (dim("ApiId"), dim("Stage")) else {
                    return Outcome::Points(Vec::new());
                };
                let key: EventKey = (
                    api.to_string(),
                    stage.to_string(),
                    reason_dimension(q.family),
                );
                let points = (window.start..window.end)
                    .step_by(window.period.max(1) as usize)
                    .filter_map(|t| counts.get(&(key.clone(), t)).map(|n| (t, *n)))
                    .collect();
                Outcome::Points(points)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_catch_duplicates_and_stay_bounded() {
        let mut seen = RecentIds::default();
        assert!(seen.insert("a"));
        assert!(!seen.insert("a"));
        for i in 0..(RecentIds::CAPACITY * 3) {
            assert!(seen.insert(&format!("e{i}")));
            assert!(
                !seen.insert(&format!("e{i}")),
                "a duplicate at the edge is caught"
            );
        }
        assert_eq!(seen.ids.len(), RecentIds::CAPACITY);
        assert_eq!(seen.order.len(), RecentIds::CAPACITY);
    }

    #[test]
    fn parses_429_lines_only() {
        let line = r#"{"requestId":"r","apiId":"a1","stage":"prod","status":429,"responseType":"THROTTLED"}"#;
        assert_eq!(
            parse_event(line),
            Some(("a1".into(), "prod".into(), "THROTTLED"))
        );
        let quota =
            r#"{"apiId":"a1","stage":"$default","status":"429","responseType":"QUOTA_EXCEEDED"}"#;
        assert_eq!(
            parse_event(quota),
            Some(("a1".into(), "$default".into(), "QUOTA_EXCEEDED"))
        );
        let unknown = r#"{"apiId":"a1","stage":"prod","status":429,"responseType":"-"}"#;
        assert_eq!(parse_event(unknown).map(|k| k.2), Some("THROTTLED"));
        assert_eq!(
            parse_event(r#"{"apiId":"a1","stage":"prod","status":200}"#),
            None
        );
        assert_eq!(parse_event("not json 429"), None);
        assert_eq!(parse_event(r#"{"status":429}"#), None);
    }
}
