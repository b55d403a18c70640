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

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{MetricSource, Outcome, SourceError, Window};
use crate::model::{Family, LAMBDA_NAMESPACE, NAMESPACE, Stat};
use crate::plan::Query;
pub use formats::{FormatError, Record, Stats, decode};

/// Metrics (one metric and dimension set) kept at most; records of further ones are refused
/// and counted, so a stream that sends more than the exporter reads cannot exhaust memory.
pub const MAX_STREAM_SERIES: usize = 50_000;

impl Ingested {
    /// The counts under their `aws_apigateway_exporter_stream_records_total` result labels.
    pub fn by_result(&self) -> [(&'static str, u64); 6] {
        let [accepted, late, unchanged, ignored, out_of_range, refused] =
            crate::selfmetrics::STREAM_RECORD_RESULTS;
        [
            (accepted, self.accepted),
            (late, self.late),
            (unchanged, self.unchanged),
            (ignored, self.ignored),
            (out_of_range, self.out_of_range),
            (refused, self.refused),
        ]
    }
}

/// Records kept under one hold of the lock, so that the poll loop is never kept waiting
/// long by a large delivery.
const INGEST_CHUNK: usize = 2_000;

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

/// One minute of one metric: its newest aggregate, and for a minute before the start, the
/// baseline (`sum`, `count`) of its first record.
#[derive(Debug, Clone)]
struct Minute {
    t: i64,
    stats: Stats,
    base: Option<[f64; 2]>,
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
    /// A metric the exporter does not read: another namespace or metric name, or (once the
    /// poll loop has asked) a dimension set no query reads, like the API-level aggregates.
    pub ignored: u64,
    /// Older than the buffer keeps, or from the future.
    pub out_of_range: u64,
    /// A new metric past [`MAX_STREAM_SERIES`].
    pub refused: u64,
}

#[derive(Debug)]
struct State {
    series: HashMap<Key, Vec<Minute>>,
    /// The metrics the poll loop asked for, and when it last did: once it has asked, only
    /// these are kept.
    wanted: HashMap<Key, i64>,
    pruned_at: i64,
}

/// The minutes streams delivered, shared by the HTTP endpoint (writer) and the poll loop
/// (reader). It outlives config reloads: the app creates it once.
#[derive(Debug)]
pub struct StreamBuffer {
    state: Mutex<State>,
    /// Seconds of minutes kept (older ones are dropped); a reload may change it.
    retention: AtomicI64,
    /// Seconds after which a minute counts as late (`poll.lookback`).
    lookback: AtomicI64,
    /// The minute the exporter started. The first record of an earlier minute is a baseline,
    /// like a polled series' first read: only what later aggregates add to it counts, since
    /// a previous process may have counted it (a newer aggregate counted in full would count
    /// that part again).
    started: i64,
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
    /// A buffer started at `now`, keeping `retention` seconds of minutes; minutes older than
    /// `lookback` at arrival are late.
    pub fn new(now: i64, retention: i64, lookback: i64) -> StreamBuffer {
        let b = StreamBuffer {
            state: Mutex::new(State {
                series: HashMap::new(),
                wanted: HashMap::new(),
                pruned_at: 0,
            }),
            retention: AtomicI64::new(0),
            lookback: AtomicI64::new(0),
            started: now.div_euclid(MINUTE).saturating_mul(MINUTE),
        };
        b.set_window(retention, lookback);
        b
    }

    /// Sets how long minutes are kept and when they are late (a reload's poll settings).
    pub fn set_window(&self, retention: i64, lookback: i64) {
        self.retention
            .store(retention.max(MINUTE), Ordering::Relaxed);
        self.lookback.store(lookback, Ordering::Relaxed);
    }

    fn retention(&self) -> i64 {
        self.retention.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing them: keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the records of one delivery, at `now`, a chunk at a time.
    pub fn ingest(&self, records: Vec<Record>, now: i64) -> Ingested {
        let mut out = Ingested::default();
        self.prune(now);
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<Record> = records.by_ref().take(INGEST_CHUNK).collect();
            self.ingest_chunk(chunk, now, &mut out);
        }
        out
    }

    /// Drops minutes past the retention, and metrics no longer asked for, once a minute.
    /// Metrics kept before the poll loop first asked, which no query reads, go too: they
    /// would hold places under [`MAX_STREAM_SERIES`] that read metrics need.
    fn prune(&self, now: i64) {
        let retention = self.retention();
        let oldest = now - retention;
        let mut guard = self.lock();
        let s = &mut *guard;
        if now - s.pruned_at >= MINUTE {
            s.wanted.retain(|_, asked| now - *asked <= retention);
            let wanted = &s.wanted;
            s.series.retain(|key, minutes| {
                let n = minutes.partition_point(|m| m.t < oldest);
                minutes.drain(..n);
                !minutes.is_empty() && (wanted.is_empty() || wanted.contains_key(key))
            });
            s.pruned_at = now;
        }
    }

    fn ingest_chunk(&self, records: Vec<Record>, now: i64, out: &mut Ingested) {
        let oldest = now - self.retention();
        let late = now - self.lookback.load(Ordering::Relaxed);
        let mut s = self.lock();
        for r in records {
            if !is_read(&r.namespace, &r.metric_name) {
                out.ignored += 1;
                continue;
            }
            let minute = r.timestamp.div_euclid(MINUTE).saturating_mul(MINUTE);
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
            if !s.wanted.is_empty() && !s.wanted.contains_key(&key) {
                out.ignored += 1;
                continue;
            }
            if s.series.len() >= MAX_STREAM_SERIES && !s.series.contains_key(&key) {
                out.refused += 1;
                continue;
            }
            let minutes = s.series.entry(key).or_default();
            let stats = r.stats;
            let kept = match minutes.binary_search_by_key(&minute, |m| m.t) {
                Err(i) => {
                    let base = (minute < self.started).then_some([stats.sum, stats.count]);
                    minutes.insert(
                        i,
                        Minute {
                            t: minute,
                            stats,
                            base,
                        },
                    );
                    true
                }
                Ok(i) => {
                    let held = &mut minutes[i].stats;
                    let newer = stats.count > held.count
                        || (stats.count == held.count && stats.sum > held.sum);
                    if newer {
                        *held = stats;
                    }
                    newer
                }
            };
            match (kept, minute < late) {
                (false, _) => out.unchanged += 1,
                (true, true) => out.late += 1,
                (true, false) => out.accepted += 1,
            }
        }
    }

    /// Metrics held.
    pub fn series(&self) -> usize {
        self.lock().series.len()
    }

    /// The values of `q` over `window`, per period (minutes summed for `Sum` and
    /// `SampleCount`, the largest for `Maximum`; percentiles only at one-minute periods). A
    /// minute before the start answers only what it grew beyond its baseline.
    /// Asking also marks the metric as wanted (see [`Ingested::ignored`]) at `now`.
    pub fn points(&self, q: &Query, window: &Window, now: i64) -> Vec<(i64, f64)> {
        let key = Key::of(q);
        let mut s = self.lock();
        match s.wanted.get_mut(&key) {
            Some(asked) => *asked = now,
            None => {
                s.wanted.insert(key.clone(), now);
            }
        }
        let Some(minutes) = s.series.get(&key) else {
            return Vec::new();
        };
        let period = window.period.max(MINUTE);
        if matches!(q.stat, Stat::Percentile(_)) && period != MINUTE {
            return Vec::new();
        }
        let from = minutes.partition_point(|m| m.t < window.start);
        let mut out: Vec<(i64, f64)> = Vec::new();
        for m in minutes[from..].iter().take_while(|m| m.t < window.end) {
            let t = m.t;
            let Some(mut v) = m.stats.get(q.stat).filter(|v| v.is_finite()) else {
                continue;
            };
            match (m.base, q.stat) {
                (Some([sum, _]), Stat::Sum) => v = (v - sum).max(0.0),
                (Some([_, count]), Stat::SampleCount) => v = (v - count).max(0.0),
                _ => {}
            }
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
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
}

#[async_trait]
impl MetricSource for StreamSource {
    async fn fetch(&self, queries: &[Query], window: Window) -> Result<Vec<Outcome>, SourceError> {
        let now = self.clock.now();
        Ok(queries
            .iter()
            .map(|q| Outcome::Points(self.buffer.points(q, &window, now)))
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
            dimensions: vec![("Stage", "prod".into()), ("ApiName", "a".into())].into(),
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
                receiver: None,
            }),
            log_group: None,
            delivered: false,
            canary_split: false,
            streamed: true,
            account: None,
        }
    }

    /// A stream from a monitoring account carries its source accounts' metrics, each record
    /// with its own `account_id`: two accounts with the same API name and stage stay apart.
    #[test]
    fn a_monitoring_accounts_stream_attributes_each_record_to_its_own_account() {
        let b = StreamBuffer::new(0, 1800, 600);
        let now = 10_000;
        let of = |account: &str, sum: f64| Record {
            account_id: account.into(),
            ..record("Count", 9_600, sum, sum)
        };
        b.ingest(
            vec![
                of("222222222222", 2.0),
                of("333333333333", 3.0),
                of("1", 1.0),
            ],
            now,
        );
        let asked = |account: &str| {
            let mut q = query("Count", Stat::Sum);
            let mut labels = (*q.labels).clone();
            labels.account_id = account.into();
            q.labels = Arc::new(labels);
            q.account = (account != "1").then(|| Arc::from(account));
            q
        };
        let w = Window::at(now, 60, 600);
        for (account, sum) in [("222222222222", 2.0), ("333333333333", 3.0), ("1", 1.0)] {
            assert_eq!(
                b.points(&asked(account), &w, now),
                vec![(9_600, sum)],
                "{account}"
            );
        }
        assert!(b.points(&asked("444444444444"), &w, now).is_empty());
    }

    #[test]
    fn a_minute_keeps_its_newest_aggregate_whatever_the_order_and_duplicates() {
        let b = StreamBuffer::new(0, 1800, 600);
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
        assert_eq!(
            b.points(&query("Count", Stat::Sum), &w, now),
            vec![(9_600, 5.0)]
        );
        assert_eq!(
            b.points(&query("Count", Stat::Percentile(9900)), &w, now),
            vec![(9_600, 2.5)]
        );
        // Another dimension set is another metric.
        let mut q = query("Count", Stat::Sum);
        let mut dims = q.dimensions.to_vec();
        dims.push(("Resource", "/".into()));
        q.dimensions = dims.into();
        assert!(b.points(&q, &w, now).is_empty());
    }

    #[test]
    fn what_is_kept_is_bounded_and_says_why_not() {
        let b = StreamBuffer::new(0, 1800, 600);
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
        let b = StreamBuffer::new(0, 3600, 600);
        let now = 10_800;
        b.ingest(
            (0..10)
                .map(|i| record("Count", 9_900 + 60 * i, 2.0, 2.0))
                .collect(),
            now,
        );
        let w = Window::at(now, 300, 1200);
        assert_eq!(
            b.points(&query("Count", Stat::Sum), &w, now),
            vec![(9_900, 10.0), (10_200, 10.0)]
        );
        assert_eq!(
            b.points(&query("Count", Stat::Maximum), &w, now),
            vec![(9_900, 2.0), (10_200, 2.0)]
        );
        assert!(
            b.points(&query("Count", Stat::Percentile(9900)), &w, now)
                .is_empty()
        );
    }

    #[test]
    fn once_asked_only_the_metrics_queried_are_kept_and_minutes_before_the_start_are_baselines() {
        let now = 100_020;
        let b = StreamBuffer::new(now - 300, 1800, 600);
        let stage = record("Count", now - 120, 4.0, 4.0);
        let mut api_level = stage.clone();
        api_level.dimensions.truncate(1);
        let before_start = record("Count", now - 420, 9.0, 9.0);
        // Before the poll loop asks, both dimension sets are kept.
        let r = b.ingest(vec![stage.clone(), api_level.clone(), before_start], now);
        assert_eq!(r.accepted, 3);
        let w = Window::at(now, 60, 600);
        // A minute before the start is a baseline: 0 until a newer aggregate adds to it.
        assert_eq!(
            b.points(&query("Count", Stat::Sum), &w, now),
            vec![(now - 420, 0.0), (now - 120, 4.0)]
        );
        b.ingest(vec![record("Count", now - 420, 11.0, 11.0)], now);
        assert_eq!(
            b.points(&query("Count", Stat::Sum), &w, now),
            vec![(now - 420, 2.0), (now - 120, 4.0)]
        );
        // Once it has asked, the API-level aggregate (which no query reads) is ignored.
        let r = b.ingest(vec![api_level, stage], now + 60);
        assert_eq!((r.ignored, r.unchanged), (1, 1));
        // A reload shortens the retention: older minutes go at the next prune.
        b.set_window(60, 60);
        b.ingest(Vec::new(), now + 120);
        assert!(
            b.points(&query("Count", Stat::Sum), &w, now + 120)
                .is_empty()
        );
    }

    #[test]
    fn unread_metrics_held_before_the_first_cycle_give_way_to_read_ones() {
        let now = 100_020;
        let b = StreamBuffer::new(0, 1800, 600);
        let unread: Vec<Record> = (0..MAX_STREAM_SERIES)
            .map(|i| {
                let mut r = record("Count", now - 60, 1.0, 1.0);
                r.dimensions[1].1 = format!("unread{i}");
                r
            })
            .collect();
        assert_eq!(b.ingest(unread, now).accepted, MAX_STREAM_SERIES as u64);
        // The poll loop asks for prod's Count; at the next prune the unread ones go.
        let w = Window::at(now, 60, 600);
        assert!(b.points(&query("Count", Stat::Sum), &w, now).is_empty());
        let r = b.ingest(vec![record("Count", now, 3.0, 3.0)], now + 60);
        assert_eq!((r.accepted, r.refused), (1, 0));
        assert_eq!(b.series(), 1);
    }

    proptest::proptest! {
        /// No record, however odd its numbers, panics the buffer or its reads.
        #[test]
        fn odd_records_never_panic(
            t in proptest::num::i64::ANY,
            sum in proptest::num::f64::ANY,
            count in proptest::num::f64::ANY,
            now in -1_000_000_000_000i64..1_000_000_000_000,
            period in proptest::sample::select(vec![60i64, 300, 3600]),
        ) {
            let b = StreamBuffer::new(now, 1800, 600);
            b.ingest(vec![record("Count", t, sum, count), record("Latency", t, count, sum)], now);
            b.ingest(vec![record("Count", i64::MIN, sum, count), record("Count", i64::MAX, sum, count)], now);
            for stat in [Stat::Sum, Stat::SampleCount, Stat::Maximum, Stat::Percentile(9900)] {
                let _ = b.points(&query("Count", stat), &Window::at(now, period, 3600), now);
            }
        }

        /// No bytes panic the decoder.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode(&data);
            let mut json = b"{".to_vec();
            json.extend(&data);
            let _ = decode(&json);
        }
    }
}
