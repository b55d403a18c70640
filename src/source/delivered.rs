//! Access logs that Amazon Data Firehose delivers to the exporter's endpoint
//! (`access_logs.mode: firehose`), instead of being read back from CloudWatch Logs.
//!
//! API Gateway writes a REST stage's access log lines to a delivery stream named
//! `amazon-apigateway-…` in "the same format as CloudWatch logging" (AWS's guide, "Log REST
//! API calls to Amazon Data Firehose"), one line per record. HTTP and WebSocket APIs log to
//! CloudWatch Logs only; a subscription filter can send a log group to a delivery stream,
//! whose records are then CloudWatch Logs' own envelope, gzipped: `{messageType, logGroup,
//! logEvents: [{id, timestamp, message}]}`. Both arrive here as records, told apart by their
//! content ([`decode_record`]).
//!
//! Lines are counted per stage and minute, like the events FilterLogEvents returns: the
//! minute of a line is its `requestTimeEpoch` (a CloudWatch Logs event's own timestamp),
//! so late and out-of-order lines count in their own minute; a line whose `requestId` was
//! among the last [`RECENT_IDS`] counts once (Firehose delivers at least once); a delivery
//! retried with the same Firehose request id is answered without being read again. The
//! poll loop reads the minutes back through [`DeliveredSource`], into the same store as
//! every other count (baselines, exact counters).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::io::Read;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::logs::{Detail, GroupRead, Line, PeriodLatency, parse_line};
use super::recent::Recent;
use super::{MetricSource, Outcome, SourceError, Window};
use crate::config::Statuses;
use crate::plan::Query;

/// Lines remembered by `requestId`, to count a line delivered twice once. Firehose's own
/// retries reuse the request id of the delivery and are not read again; what this catches
/// is a line that comes back in another delivery, which happens within seconds (at 10,000
/// lines a second this is the last 20 seconds). As 64-bit hashes: a few MB at most.
pub const RECENT_IDS: usize = 200_000;

/// Stages held at most; lines of further ones are refused and counted.
pub const MAX_STAGES: usize = 20_000;

/// Distinct (status, response type, route) of one stage in one minute, at most: beyond it
/// a line still counts for its stage, without its route (route labels come from API
/// Gateway's own templates, so a real stage stays far below).
const MAX_DETAILS_PER_MINUTE: usize = 4_096;

/// The largest record (or decompressed record) read: Firehose records are at most 1,000 KiB.
const MAX_RECORD: usize = 4 << 20;

/// A line this far ahead of the clock is refused.
const MAX_AHEAD: i64 = 600;

const MINUTE: i64 = 60;

/// What became of the lines of one delivery.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lines {
    /// Counted in its minute.
    pub accepted: u64,
    /// Its `requestId` was counted already (a line delivered twice).
    pub duplicate: u64,
    /// Counted in a minute older than `poll.lookback`: a poll cycle reads it only while
    /// catching up, so in steady state it is missing from the counters.
    pub late: u64,
    /// Older than the buffer keeps, or from the future: not counted.
    pub out_of_range: u64,
    /// Not an access log line of the README's JSON format: not counted.
    pub invalid: u64,
    /// A new stage past [`MAX_STAGES`]: not counted.
    pub refused: u64,
}

impl Lines {
    /// The counts under their `aws_apigateway_exporter_access_log_lines_total` labels.
    pub fn by_result(&self) -> [(&'static str, u64); 6] {
        let [accepted, duplicate, late, out_of_range, invalid, refused] =
            crate::selfmetrics::ACCESS_LOG_LINE_RESULTS;
        [
            (accepted, self.accepted),
            (duplicate, self.duplicate),
            (late, self.late),
            (out_of_range, self.out_of_range),
            (invalid, self.invalid),
            (refused, self.refused),
        ]
    }
}

/// Counts of a minute by detail, as (index into the stage's details, lines), sorted by
/// index: a stage sees a handful of details, and a minute holds a few bytes for each.
type DetailCounts = Vec<(u32, u32)>;

fn count_detail(counts: &mut DetailCounts, detail: u32) {
    match counts.binary_search_by_key(&detail, |&(d, _)| d) {
        Ok(i) => counts[i].1 = counts[i].1.saturating_add(1),
        Err(i) => counts.insert(i, (detail, 1)),
    }
}

/// One stage's lines in one minute.
#[derive(Debug, Default)]
struct Minute {
    all: DetailCounts,
    canary: DetailCounts,
    base: DetailCounts,
    canary_latency: Option<Box<PeriodLatency>>,
}

/// One stage's minutes, and the details they count, each held once.
#[derive(Debug, Default)]
struct StageLog {
    details: Vec<Detail>,
    index: HashMap<Detail, u32>,
    minutes: BTreeMap<i64, Minute>,
}

impl StageLog {
    fn intern(&mut self, detail: &Detail) -> u32 {
        if let Some(&i) = self.index.get(detail) {
            return i;
        }
        let i = u32::try_from(self.details.len()).unwrap_or(u32::MAX);
        self.details.push(detail.clone());
        self.index.insert(detail.clone(), i);
        i
    }

    fn add(&mut self, minute: i64, line: &Line) {
        let distinct = self.minutes.get(&minute).map_or(0, |m| m.all.len());
        let detail = if distinct >= MAX_DETAILS_PER_MINUTE && !self.index.contains_key(&line.detail)
        {
            self.intern(&Detail {
                resource: None,
                method: None,
                route_key: None,
                ..line.detail.clone()
            })
        } else {
            self.intern(&line.detail)
        };
        let m = self.minutes.entry(minute).or_default();
        match line.canary {
            Some(true) => {
                count_detail(&mut m.canary, detail);
                if let Some(ms) = line.latency_ms {
                    m.canary_latency.get_or_insert_default().add(ms, true);
                }
            }
            Some(false) => count_detail(&mut m.base, detail),
            None => {}
        }
        count_detail(&mut m.all, detail);
    }

    /// Drops the details no minute held counts any more, once they are many.
    fn compact(&mut self) {
        if self.details.len() <= 2 * MAX_DETAILS_PER_MINUTE {
            return;
        }
        let mut used: Vec<u32> = self
            .minutes
            .values()
            .flat_map(|m| m.all.iter().map(|&(d, _)| d))
            .collect();
        used.sort_unstable();
        used.dedup();
        let mut remap = HashMap::with_capacity(used.len());
        let mut details = Vec::with_capacity(used.len());
        for (new, old) in used.into_iter().enumerate() {
            let new = u32::try_from(new).unwrap_or(u32::MAX);
            remap.insert(old, new);
            details.push(self.details[old as usize].clone());
        }
        for m in self.minutes.values_mut() {
            for counts in [&mut m.all, &mut m.canary, &mut m.base] {
                for entry in counts.iter_mut() {
                    entry.0 = remap.get(&entry.0).copied().unwrap_or(entry.0);
                }
                counts.sort_unstable_by_key(|&(d, _)| d);
            }
        }
        self.index = details
            .iter()
            .enumerate()
            .map(|(i, d)| (d.clone(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        self.details = details;
    }
}

/// What a read copies of one stage under the lock: the stage's details, and per minute its
/// counts and canary latencies. Turning them into answers happens after the lock is released,
/// so deliveries never wait on a cycle's read.
struct StageCopy {
    details: Vec<Detail>,
    minutes: Vec<(i64, [DetailCounts; 3], Option<PeriodLatency>)>,
}

/// The `requestId`s of the last [`RECENT_IDS`] lines, as hashes.
#[derive(Debug)]
struct RecentIds {
    hasher: RandomState,
    ids: Recent<u64>,
}

impl RecentIds {
    fn new() -> RecentIds {
        RecentIds {
            hasher: RandomState::new(),
            ids: Recent::new(RECENT_IDS),
        }
    }

    /// False when `id` was among the recent ones.
    fn insert(&mut self, id: &str) -> bool {
        self.ids.insert(self.hasher.hash_one(id))
    }
}

#[derive(Debug)]
struct State {
    stages: HashMap<(String, String), StageLog>,
    recent: RecentIds,
    pruned_at: i64,
}

/// The minutes of access log lines Firehose delivered, shared by the HTTP endpoint (writer)
/// and the poll loop (reader). Created once; it outlives config reloads.
#[derive(Debug)]
pub struct LogBuffer {
    state: Mutex<State>,
    /// Seconds of minutes kept; a reload may change it.
    retention: AtomicI64,
    /// Seconds after which a minute counts as late (`poll.lookback`).
    lookback: AtomicI64,
}

/// One line as a record carried it: its text and, for a CloudWatch Logs event, its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub text: String,
    pub time_ms: Option<i64>,
}

impl LogBuffer {
    /// A buffer keeping `retention` seconds of minutes; minutes older than `lookback` at
    /// arrival are late.
    pub fn new(retention: i64, lookback: i64) -> LogBuffer {
        let b = LogBuffer {
            state: Mutex::new(State {
                stages: HashMap::new(),
                recent: RecentIds::new(),
                pruned_at: i64::MIN,
            }),
            retention: AtomicI64::new(0),
            lookback: AtomicI64::new(0),
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

    fn lock(&self) -> MutexGuard<'_, State> {
        // Losing a half-made update matters less than serving on: keep the data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stages held.
    pub fn stages(&self) -> usize {
        self.lock().stages.len()
    }

    /// Counts the lines of one delivery, arrived at `now` (Unix seconds); a line without a
    /// time of its own counts in the minute the delivery's envelope says (`sent_ms`).
    pub fn ingest(&self, lines: Vec<Delivered>, sent_ms: i64, now: i64) -> Lines {
        let mut out = Lines::default();
        self.prune(now);
        let oldest = now - self.retention.load(Ordering::Relaxed);
        let late = now - self.lookback.load(Ordering::Relaxed);
        // Parsed before the lock is taken: the poll loop never waits on JSON.
        let parsed: Vec<(Option<Line>, Option<i64>)> = lines
            .into_iter()
            .map(|d| (parse_line(&d.text), d.time_ms))
            .collect();
        let mut s = self.lock();
        let s = &mut *s;
        for (line, event_ms) in parsed {
            let Some(line) = line else {
                out.invalid += 1;
                continue;
            };
            let ms = event_ms.or(line.time_ms).unwrap_or(sent_ms);
            let minute = ms
                .div_euclid(1000)
                .div_euclid(MINUTE)
                .saturating_mul(MINUTE);
            if minute < oldest || minute > now + MAX_AHEAD {
                out.out_of_range += 1;
                continue;
            }
            let key = (line.api.clone(), line.stage.clone());
            if s.stages.len() >= MAX_STAGES && !s.stages.contains_key(&key) {
                out.refused += 1;
                continue;
            }
            if let Some(id) = &line.request_id
                && !s.recent.insert(id)
            {
                out.duplicate += 1;
                continue;
            }
            s.stages.entry(key).or_default().add(minute, &line);
            if minute < late {
                out.late += 1;
            } else {
                out.accepted += 1;
            }
        }
        out
    }

    /// Drops minutes past the retention, and stages left without any, once a minute.
    fn prune(&self, now: i64) {
        let oldest = now - self.retention.load(Ordering::Relaxed);
        let mut s = self.lock();
        if now.saturating_sub(s.pruned_at) < MINUTE {
            return;
        }
        s.stages.retain(|_, stage| {
            stage.minutes = stage.minutes.split_off(&oldest);
            stage.compact();
            !stage.minutes.is_empty()
        });
        s.pruned_at = now;
    }

    /// The counts of `stages` over `window`, as a log read would give them.
    fn read(&self, stages: &[(String, String)], window: Window) -> GroupRead {
        let copies: Vec<(&(String, String), StageCopy)> = {
            let s = self.lock();
            stages
                .iter()
                .filter_map(|stage| {
                    let log = s.stages.get(stage)?;
                    let minutes = log
                        .minutes
                        .range(window.start..window.end)
                        .map(|(&t, m)| {
                            (
                                t,
                                [m.all.clone(), m.canary.clone(), m.base.clone()],
                                m.canary_latency.as_deref().cloned(),
                            )
                        })
                        .collect();
                    Some((
                        stage,
                        StageCopy {
                            details: log.details.clone(),
                            minutes,
                        },
                    ))
                })
                .collect()
        };
        let mut read = GroupRead::default();
        let period = window.period.max(1);
        for (stage, copy) in copies {
            for (t, counts, latency) in &copy.minutes {
                let at = t.div_euclid(period) * period;
                let [all, canary, base] = counts.each_ref().map(|c| {
                    c.iter()
                        .filter_map(|&(d, n)| Some((copy.details.get(d as usize)?, n)))
                });
                read.add_counts(stage, at, all, canary, base);
                if let Some(latency) = latency {
                    read.add_latency(stage, at, latency, at >= window.keep_from);
                }
            }
        }
        read
    }
}

/// Answers the access-log queries of `access_logs.mode: firehose` from a [`LogBuffer`];
/// never fails (a minute without lines is simply absent).
pub struct DeliveredSource {
    pub buffer: std::sync::Arc<LogBuffer>,
    pub statuses: Statuses,
}

#[async_trait]
impl MetricSource for DeliveredSource {
    async fn fetch(&self, queries: &[Query], window: Window) -> Result<Vec<Outcome>, SourceError> {
        let mut stages: Vec<(String, String)> = queries
            .iter()
            .map(|q| {
                (
                    q.labels.api_id.clone(),
                    q.labels.stage.clone().unwrap_or_default(),
                )
            })
            .collect();
        stages.sort();
        stages.dedup();
        let read = self.buffer.read(&stages, window);
        Ok(queries
            .iter()
            .map(|q| read.answer(q, &self.statuses, window))
            .collect())
    }
}

/// Why a record is not access log lines.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(String);

/// The lines of one Firehose record: API Gateway's own (one line, or several separated by
/// newlines), or a CloudWatch Logs subscription's envelope (gzipped or not; its control
/// messages carry none). Every line is returned, valid or not: counting says which count.
pub fn decode_record(data: &[u8]) -> Result<Vec<Delivered>, RecordError> {
    if data.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .take(MAX_RECORD as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| RecordError(format!("not valid gzip: {e}")))?;
        if out.len() > MAX_RECORD {
            return Err(RecordError(format!(
                "larger than {} MiB decompressed",
                MAX_RECORD >> 20
            )));
        }
        return decode_record(&out);
    }
    let text = std::str::from_utf8(data).map_err(|e| RecordError(format!("not UTF-8: {e}")))?;
    let trimmed = text.trim();
    if trimmed.starts_with('{') && trimmed.contains("\"logEvents\"") {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Envelope {
            message_type: String,
            #[serde(default)]
            log_events: Vec<Event>,
        }
        #[derive(serde::Deserialize)]
        struct Event {
            timestamp: i64,
            message: String,
        }
        if let Ok(envelope) = serde_json::from_str::<Envelope>(trimmed) {
            if envelope.message_type != "DATA_MESSAGE" {
                return Ok(Vec::new());
            }
            return Ok(envelope
                .log_events
                .into_iter()
                .map(|e| Delivered {
                    text: e.message,
                    time_ms: Some(e.timestamp),
                })
                .collect());
        }
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| Delivered {
            text: l.to_string(),
            time_ms: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use super::*;
    use crate::model::{ApiType, Family, SeriesLabels, Stat};
    use crate::source::Part;

    const NOW: i64 = 1_700_000_400;

    fn line(id: &str, stage: &str, status: u16, at: i64, canary: Option<bool>) -> Delivered {
        let canary = canary.map_or(String::new(), |c| format!(r#","isCanaryRequest":"{c}""#));
        Delivered {
            text: format!(
                r#"{{"requestId":"{id}","requestTimeEpoch":{},"apiId":"a1","stage":"{stage}","status":{status},"responseLatency":"{}","responseType":"-","resourcePath":"/pets","httpMethod":"GET","routeKey":"-"{canary}}}"#,
                at * 1000,
                status / 10
            ),
            time_ms: None,
        }
    }

    fn query(family: Family, stat: Stat, canary_split: bool) -> Query {
        Query {
            namespace: Arc::from("AWS/ApiGateway"),
            family,
            stat,
            metric_name: Arc::from("AccessLogLines"),
            dimensions: vec![("ApiId", "a1".into()), ("Stage", "prod".into())].into(),
            labels: Arc::new(SeriesLabels {
                account_id: "1".into(),
                region: "r".into(),
                api_id: "a1".into(),
                api_name: "a".into(),
                api_type: ApiType::Rest,
                stage: Some("prod".into()),
                route: None,
                cause: None,
                function: None,
                receiver: Some("r0".into()),
            }),
            log_group: None,
            delivered: true,
            canary_split,
            streamed: false,
            account: None,
        }
    }

    fn stage_total(o: &Outcome, status: &str) -> f64 {
        let Outcome::Split(parts) = o else {
            panic!("{o:?}")
        };
        parts
            .iter()
            .filter(|p: &&Part| p.route.is_none() && p.cause.status == status)
            .flat_map(|p| p.points.iter().map(|(_, v)| v))
            .sum()
    }

    #[tokio::test]
    async fn lines_count_once_in_their_own_minute_and_split_canary_from_base() {
        let buffer = Arc::new(LogBuffer::new(1800, 600));
        let minute = NOW / 60 * 60;
        let mut lines = vec![
            line("r1", "prod", 500, minute - 120, Some(false)),
            line("r2", "prod", 500, minute - 60, Some(true)),
            line("r3", "prod", 200, minute - 60, Some(true)),
            line("r4", "prod", 404, minute - 30, Some(false)),
        ];
        // A duplicate, out of order, and one from another stage.
        lines.push(line("r1", "prod", 500, minute - 120, Some(false)));
        lines.push(line("r0", "prod", 503, minute - 300, None));
        lines.push(line("o1", "beta", 500, minute, None));
        let n = buffer.ingest(lines, NOW * 1000, NOW);
        assert_eq!((n.accepted, n.duplicate, n.late), (6, 1, 0));
        // Late (older than the lookback) and too old.
        let n = buffer.ingest(
            vec![
                line("l1", "prod", 500, NOW - 900, None),
                line("l2", "prod", 500, NOW - 3600, None),
                Delivered {
                    text: "not json".into(),
                    time_ms: None,
                },
            ],
            NOW * 1000,
            NOW,
        );
        assert_eq!((n.late, n.out_of_range, n.invalid), (1, 1, 1));

        let source = DeliveredSource {
            buffer: Arc::clone(&buffer),
            statuses: Statuses::default(),
        };
        let window = Window::at(NOW, 60, 600);
        let out = source
            .fetch(
                &[
                    query(Family::Responses, Stat::Sum, false),
                    query(Family::CanaryResponses, Stat::Sum, true),
                    query(Family::CanaryBaseResponses, Stat::Sum, true),
                    query(Family::CanaryLatency, Stat::Maximum, true),
                ],
                window,
            )
            .await
            .unwrap();
        // The stage: every line with a counted status; the 200 is not (statuses >= 400).
        assert_eq!(stage_total(&out[0], "500"), 2.0);
        assert_eq!(stage_total(&out[0], "503"), 1.0);
        assert_eq!(stage_total(&out[0], "404"), 1.0);
        assert_eq!(stage_total(&out[0], "200"), 0.0);
        // The canary: its own lines, every status; the base likewise.
        assert_eq!(stage_total(&out[1], "500"), 1.0);
        assert_eq!(stage_total(&out[1], "200"), 1.0);
        assert_eq!(stage_total(&out[2], "500"), 1.0);
        assert_eq!(stage_total(&out[2], "404"), 1.0);
        assert_eq!(out[3], Outcome::Points(vec![(minute - 60, 50.0)]));
    }

    #[test]
    fn records_are_raw_lines_or_cloudwatch_logs_envelopes() {
        let raw = decode_record(b"{\"a\":1}\n{\"b\":2}\n").unwrap();
        assert_eq!(raw.len(), 2);
        assert_eq!(raw[0].time_ms, None);
        let envelope = br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{"id":"e1","timestamp":1700000000000,"message":"{\"x\":1}"}]}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(envelope).unwrap();
        let events = decode_record(&gz.finish().unwrap()).unwrap();
        assert_eq!(
            events,
            [Delivered {
                text: "{\"x\":1}".into(),
                time_ms: Some(1_700_000_000_000)
            }]
        );
        let control = br#"{"messageType":"CONTROL_MESSAGE","logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE"}]}"#;
        assert!(decode_record(control).unwrap().is_empty());
        assert!(decode_record(&[0x1f, 0x8b, 0, 0]).is_err());
    }

    #[test]
    fn remembered_ids_stay_bounded() {
        let mut ids = RecentIds::new();
        for i in 0..(RECENT_IDS + 10) {
            assert!(ids.insert(&format!("id{i}")));
        }
        assert_eq!(ids.ids.len(), RECENT_IDS);
        assert!(!ids.insert(&format!("id{}", RECENT_IDS + 9)));
        assert!(ids.insert("id0"), "the oldest are forgotten");
    }
}
