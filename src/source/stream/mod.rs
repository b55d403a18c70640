//! CloudWatch Metric Streams: minutes of API Gateway and Lambda metrics pushed through a
//! Firehose HTTP endpoint ([`crate::http`] receives them) are kept here per metric and minute,
//! and the poll loop reads them back like GetMetricData answers ([`StreamSource`]). So
//! streamed series go through the same plan (REST names joined to ids by the inventory) and
//! the same store (baselines, late data, exact counters) as polled ones; only where the
//! numbers come from differs, and that nothing is billed per read.
//!
//! Two records for the same metric and minute: AWS says that data "might arrive at the final
//! destination out of order" and Firehose delivers at least once, but not whether a second
//! record of a minute replaces the first or adds to it. Receivers that handle it (Netflix's
//! atlas-cloudwatch: "duplicates are overwritten"; the OpenTelemetry Collector's receiver keeps
//! one per minute) treat a record as the minute's whole aggregate, and so does this buffer: of
//! two records it keeps the one with more samples (a later aggregate of a growing minute), so
//! a duplicate or an older aggregate arriving after a newer one changes nothing.

pub mod formats;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{MetricSource, Outcome, SourceError, Window};
use crate::model::{Family, LAMBDA_NAMESPACE, NAMESPACE, Stat};
use crate::plan::Query;
pub use formats::{FormatError, Record, Stats, decode};

/// Metrics (one metric and dimension set) kept at most; records of further ones are refused
/// and counted, so a stream that sends more than the exporter reads cannot exhaust memory.
pub const MAX_STREAM_SERIES: usize = 50_000;

/// Firehose request ids remembered, to answer a retried delivery without reading it again.
const REQUEST_IDS: usize = 10_000;

/// Minutes are kept at one-minute resolution, as streams send them.
const MINUTE: i64 = 60;

/// A record this far ahead of the clock is refused (clock skew aside, nothing is from the
/// future).
const MAX_AHEAD: i64 = 600;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    account_id: String,
    region: String,
    namespace: String,
    metric_name: String,
    dimensions: Vec<(String, String)>,
}

impl Key {
    fn of(q: &Query) -> Key {
        let mut dimensions: Vec<(String, String)> = q
            .dimensions
            .iter()
            .map(|(n, v)| ((*n).to_string(), v.clone()))
            .collect();
        dimensions.sort();
        Key {
            account_id: q.labels.account_id.clone(),
            region: q.labels.region.clone(),
            namespace: q.namespace.to_string(),
            metric_name: q.metric_name.to_string(),
            dimensions,
        }
    }
}

/// What became of the records of one delivery.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Kept: a minute not seen before, or a newer aggregate of one.
    pub accepted: u64,
    /// Accepted, but older than `poll.lookback`: counted only if that minute is still read.
    pub late: u64,
    /// A duplicate, or an older aggregate of a minute already held.
    pub unchanged: u64,
    /// A namespace or metric the exporter does not read.
    pub ignored: u64,
    /// Older than the buffer keeps, or from the future.
    pub out_of_range: u64,
    /// A new metric past [`MAX_STREAM_SERIES`].
    pub refused: u64,
}

#[derive(Debug, Default)]
struct State {
    series: HashMap<Key, Vec<(i64, Stats)>>,
    ids: HashSet<String>,
    order: VecDeque<String>,
    pruned_at: i64,
}

/// The minutes streams delivered, shared by the HTTP endpoint (writer) and the poll loop
/// (reader). It outlives config reloads: the app creates it once.
#[derive(Debug)]
pub struct StreamBuffer {
    state: Mutex<State>,
    /// Seconds of minutes kept (older ones are dropped).
    retention: i64,
    /// Seconds after which a minute counts as late (`poll.lookback`).
    lookback: i64,
}

/// Whether the exporter reads this metric: an API Gateway metric of a family, or a Lambda
/// metric of `backends.lambda`.
pub fn is_read(namespace: &str, metric_name: &str) -> bool {
    Family::ALL.iter().any(|f| {
        let info = f.info();
        match namespace {
            NAMESPACE => [info.rest, info.http, info.websocket].contains(&Some(metric_name)),
            LAMBDA_NAMESPACE => info.lambda == Some(metric_name),
            _ => false,
        }
    })
}

impl StreamBuffer {
    /// A buffer keeping `retention` seconds of minutes; minutes older than `lookback` at
    /// arrival are late.
    pub fn new(retention: i64, lookback: i64) -> StreamBuffer {
        StreamBuffer {
            state: Mutex::new(State::default()),
            retention: retention.max(MINUTE),
            lookback,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing them: keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers a Firehose request id; `false` if it was seen before (a retry).
    pub fn first_delivery(&self, request_id: &str) -> bool {
        let mut s = self.lock();
        if s.ids.contains(request_id) {
            return false;
        }
        if s.order.len() >= REQUEST_IDS
            && let Some(old) = s.order.pop_front()
        {
            s.ids.remove(&old);
        }
        s.ids.insert(request_id.to_string());
        s.order.push_back(request_id.to_string());
        true
    }

    /// Keeps the records of one delivery, at `now`.
    pub fn ingest(&self, records: Vec<Record>, now: i64) -> Ingested {
        let mut out = Ingested::default();
        let oldest = now - self.retention;
        let mut s = self.lock();
        if now - s.pruned_at >= MINUTE {
            s.series.retain(|_, minutes| {
                let n = minutes.partition_point(|(t, _)| *t < oldest);
                minutes.drain(..n);
                !minutes.is_empty()
            });
            s.pruned_at = now;
        }
        for r in records {
            if !is_read(&r.namespace, &r.metric_name) {
                out.ignored += 1;
                continue;
            }
            let minute = r.timestamp.div_euclid(MINUTE) * MINUTE;
            if minute < oldest || minute > now + MAX_AHEAD {
                out.out_of_range += 1;
                continue;
            }
            let key = Key {
                account_id: r.account_id,
                region: r.region,
                namespace: r.namespace,
                metric_name: r.metric_name,
                dimensions: r.dimensions,
            };
            if s.series.len() >= MAX_STREAM_SERIES && !s.series.contains_key(&key) {
                out.refused += 1;
                continue;
            }
            let minutes = s.series.entry(key).or_default();
            let stats = r.stats;
            let kept = match minutes.binary_search_by_key(&minute, |(t, _)| *t) {
                Err(i) => {
                    minutes.insert(i, (minute, stats));
                    true
                }
                Ok(i) => {
                    let held = &mut minutes[i].1;
                    let newer = stats.count > held.count
                        || (stats.count == held.count && stats.sum > held.sum);
                    if newer {
                        *held = stats;
                    }
                    newer
                }
            };
            match (kept, minute < now - self.lookback) {
                (false, _) => out.unchanged += 1,
                (true, true) => out.late += 1,
                (true, false) => out.accepted += 1,
            }
        }
        out
    }

    /// Metrics held.
    pub fn series(&self) -> usize {
        self.lock().series.len()
    }

    /// The values of `q` over `window`, per period (minutes summed for `Sum` and
    /// `SampleCount`, the largest for `Maximum`; percentiles only at one-minute periods).
    pub fn points(&self, q: &Query, window: &Window) -> Vec<(i64, f64)> {
        let s = self.lock();
        let Some(minutes) = s.series.get(&Key::of(q)) else {
            return Vec::new();
        };
        let period = window.period.max(MINUTE);
        if matches!(q.stat, Stat::Percentile(_)) && period != MINUTE {
            return Vec::new();
        }
        let from = minutes.partition_point(|(t, _)| *t < window.start);
        let mut out: Vec<(i64, f64)> = Vec::new();
        for (t, stats) in minutes[from..].iter().take_while(|(t, _)| *t < window.end) {
            let Some(v) = stats.get(q.stat).filter(|v| v.is_finite()) else {
                continue;
            };
            let p = t.div_euclid(period) * period;
            match out.last_mut() {
                Some((last, acc)) if *last == p => match q.stat {
                    Stat::Maximum => *acc = acc.max(v),
                    _ => *acc += v,
                },
                _ => out.push((p, v)),
            }
        }
        out
    }
}

/// Answers streamed queries from a [`StreamBuffer`]; never fails (a minute not delivered is
/// absent, as GetMetricData leaves out a period without data).
pub struct StreamSource {
    pub buffer: std::sync::Arc<StreamBuffer>,
}

#[async_trait]
impl MetricSource for StreamSource {
    async fn fetch(&self, queries: &[Query], window: Window) -> Result<Vec<Outcome>, SourceError> {
        Ok(queries
            .iter()
            .map(|q| Outcome::Points(self.buffer.points(q, &window)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{ApiType, SeriesLabels};

    fn record(metric: &str, t: i64, sum: f64, count: f64) -> Record {
        Record {
            account_id: "1".into(),
            region: "r".into(),
            namespace: NAMESPACE.into(),
            metric_name: metric.into(),
            dimensions: vec![
                ("ApiName".into(), "a".into()),
                ("Stage".into(), "prod".into()),
            ],
            timestamp: t,
            stats: Stats {
                sum,
                count,
                min: 1.0,
                max: sum,
                percentiles: vec![(9900, sum / 2.0)],
            },
        }
    }

    fn query(metric: &str, stat: Stat) -> Query {
        Query {
            namespace: Arc::from(NAMESPACE),
            family: Family::Requests,
            stat,
            metric_name: Arc::from(metric),
            dimensions: vec![("Stage", "prod".into()), ("ApiName", "a".into())],
            labels: Arc::new(SeriesLabels {
                account_id: "1".into(),
                region: "r".into(),
                api_id: "id".into(),
                api_name: "a".into(),
                api_type: ApiType::Rest,
                stage: Some("prod".into()),
                route: None,
                cause: None,
                function: None,
            }),
            log_group: None,
            streamed: true,
        }
    }

    #[test]
    fn a_minute_keeps_its_newest_aggregate_whatever_the_order_and_duplicates() {
        let b = StreamBuffer::new(1800, 600);
        let now = 10_000;
        let r = b.ingest(
            vec![
                record("Count", 9_600, 3.0, 3.0),
                record("Count", 9_600, 5.0, 5.0),
            ],
            now,
        );
        assert_eq!((r.accepted, r.unchanged), (2, 0));
        // A duplicate and an older aggregate arriving late change nothing.
        let r = b.ingest(
            vec![
                record("Count", 9_600, 5.0, 5.0),
                record("Count", 9_600, 3.0, 3.0),
            ],
            now,
        );
        assert_eq!((r.accepted, r.unchanged), (0, 2));
        let w = Window::at(now, 60, 600);
        assert_eq!(b.points(&query("Count", Stat::Sum), &w), vec![(9_600, 5.0)]);
        assert_eq!(
            b.points(&query("Count", Stat::Percentile(9900)), &w),
            vec![(9_600, 2.5)]
        );
        // Another dimension set is another metric.
        let mut q = query("Count", Stat::Sum);
        q.dimensions.push(("Resource", "/".into()));
        assert!(b.points(&q, &w).is_empty());
    }

    #[test]
    fn what_is_kept_is_bounded_and_says_why_not() {
        let b = StreamBuffer::new(1800, 600);
        let now = 100_000;
        let mut other = record("CPUUtilization", now, 1.0, 1.0);
        other.namespace = "AWS/EC2".into();
        let r = b.ingest(
            vec![
                other,
                record("Count", now - 1_900, 1.0, 1.0),
                record("Count", now + 3_600, 1.0, 1.0),
                record("Count", now - 700, 1.0, 1.0),
            ],
            now,
        );
        assert_eq!(
            (r.ignored, r.out_of_range, r.late, r.accepted),
            (1, 2, 1, 0)
        );
        // Minutes past the retention are dropped.
        b.ingest(Vec::new(), now + 1_800);
        assert_eq!(b.series(), 0);
        // The series cap.
        let many: Vec<Record> = (0..MAX_STREAM_SERIES + 5)
            .map(|i| {
                let mut r = record("Count", now, 1.0, 1.0);
                r.dimensions[1].1 = format!("s{i}");
                r
            })
            .collect();
        let r = b.ingest(many, now);
        assert_eq!((r.accepted, r.refused), (MAX_STREAM_SERIES as u64, 5));
    }

    #[test]
    fn longer_periods_sum_minutes_and_leave_percentiles_to_polling() {
        let b = StreamBuffer::new(3600, 600);
        let now = 10_800;
        b.ingest(
            (0..10)
                .map(|i| record("Count", 9_900 + 60 * i, 2.0, 2.0))
                .collect(),
            now,
        );
        let w = Window::at(now, 300, 1200);
        assert_eq!(
            b.points(&query("Count", Stat::Sum), &w),
            vec![(9_900, 10.0), (10_200, 10.0)]
        );
        assert_eq!(
            b.points(&query("Count", Stat::Maximum), &w),
            vec![(9_900, 2.0), (10_200, 2.0)]
        );
        assert!(
            b.points(&query("Count", Stat::Percentile(9900)), &w)
                .is_empty()
        );
    }

    #[test]
    fn a_retried_request_is_recognised_and_ids_are_bounded() {
        let b = StreamBuffer::new(1800, 600);
        assert!(b.first_delivery("a"));
        assert!(!b.first_delivery("a"));
        for i in 0..REQUEST_IDS {
            b.first_delivery(&i.to_string());
        }
        assert!(b.first_delivery("a"), "the oldest id was forgotten");
        assert!(b.lock().ids.len() <= REQUEST_IDS);
    }
}
