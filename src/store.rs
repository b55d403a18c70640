//! Per-period CloudWatch values → Prometheus counters and gauges.
//!
//! CloudWatch data is late and revised: a minute's `Sum` keeps growing after the minute ends.
//! Each cycle re-reads the lookback window; for every period the store remembers the value it
//! has counted, so a counter is topped up by exactly the growth and never counts a period
//! twice. Periods that leave the lookback are forgotten (their value stays in the total), and
//! a floor makes sure a forgotten period is never counted again. The floor is also where a
//! series' counting stands: after an outage the poll loop reads back from it
//! ([`Store::resume_from`]), so no period is skipped.
//!
//! The first read of a series is a *baseline*: it is remembered but not counted. Prometheus
//! treats a restarted exporter's counters as reset and adds their whole value, so counting
//! the lookback window again after a restart would double count it; a new series' first value
//! carries no rate information anyway.

use std::collections::{BTreeMap, HashMap, HashSet};

use std::sync::Arc;

use crate::model::{Family, Labels, SeriesLabels, Stat};
use crate::source::logs::MAX_ROUTE_SERIES;
use crate::source::{Part, Window};

/// One series of one family (all of its statistics).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub family: Family,
    pub labels: Labels,
}

/// A counter built from per-period values.
#[derive(Debug, Clone, Default)]
pub struct CounterState {
    /// Everything counted so far.
    pub total: f64,
    /// The value counted for each period still inside the window.
    periods: Periods,
    /// Periods before this were forgotten and must not be counted again.
    floor: i64,
    /// Whether the first read (the baseline) happened.
    baselined: bool,
    /// Hold this ingest's growth back from `total` (in `held`) until the next one: a series
    /// that appears with a value would hide it from Prometheus, whose `rate()` starts at a
    /// series' first sample, so a new series is exported at 0 first.
    hold: bool,
    held: f64,
    /// The end of the last window read: periods from here on were never read at all.
    read_end: i64,
}

/// A gauge that reports one settled period.
#[derive(Debug, Clone, Default)]
pub struct GaugeState {
    periods: Periods,
}

/// Values by period start, in period order: the few periods of the lookback window in one
/// small allocation, searched by bisection. (A `BTreeMap` node per statistic took as much
/// memory, and its lookups and retains took longer.)
#[derive(Debug, Clone, Default)]
struct Periods(Vec<(i64, f64)>);

impl Periods {
    fn find(&self, t: i64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&t, |(p, _)| *p)
    }

    fn get(&self, t: i64) -> Option<f64> {
        self.find(t).ok().map(|i| self.0[i].1)
    }

    fn get_mut(&mut self, t: i64) -> Option<&mut f64> {
        self.find(t).ok().map(|i| &mut self.0[i].1)
    }

    /// Sets the value of period `t`.
    fn insert(&mut self, t: i64, v: f64) {
        match self.find(t) {
            Ok(i) => self.0[i].1 = v,
            Err(i) => self.0.insert(i, (t, v)),
        }
    }

    /// Forgets every period before `start`.
    fn forget_before(&mut self, start: i64) {
        let n = self.0.partition_point(|(t, _)| *t < start);
        self.0.drain(..n);
    }

    /// Makes room for the periods from `from` to the end of `window` up front, so a steady
    /// series never reallocates (and holds no more room than it fills).
    fn reserve(&mut self, window: &Window, from: i64) {
        let periods = ((window.end - from.max(window.start)) / window.period.max(1)).clamp(1, 1024);
        let periods = usize::try_from(periods).unwrap_or(1);
        self.0.reserve_exact(periods.saturating_sub(self.0.len()));
    }
}

#[derive(Debug, Clone)]
enum StatState {
    Counter(CounterState),
    Gauge(GaugeState),
}

impl StatState {
    fn new(stat: Stat) -> StatState {
        match stat {
            Stat::Sum | Stat::SampleCount => StatState::Counter(CounterState::default()),
            Stat::Maximum | Stat::Percentile(_) => StatState::Gauge(GaugeState::default()),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct SeriesState {
    stats: Vec<(Stat, StatState)>,
}

/// Where a series' counting stands (see [`Store::resume_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub floor: i64,
    pub read_end: i64,
}

impl Resume {
    /// Where counting stands for two series read together: the earlier of each.
    pub fn earliest(self, other: Resume) -> Resume {
        Resume {
            floor: self.floor.min(other.floor),
            read_end: self.read_end.min(other.read_end),
        }
    }
}

/// What an ingest changed, for the self-metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Periods whose value went down (ignored).
    pub decreases: u64,
    /// The newest period start seen with data, if any.
    pub newest: Option<i64>,
    /// New route-level parts refused ([`MAX_ROUTE_SERIES`]).
    pub refused: u64,
}

/// All series state. Owned by the poll loop; readers see [`crate::snapshot::Snapshot`]s.
#[derive(Debug)]
pub struct Store {
    series: BTreeMap<SeriesKey, SeriesState>,
    /// Route-level parts kept per split anchor, to bound them ([`MAX_ROUTE_SERIES`]).
    route_parts: HashMap<SeriesKey, usize>,
    /// The settled period of the current cycle ([`Store::settle`]): gauges keep no period
    /// before it, since the settled period only ever moves forward.
    settled: i64,
}

impl Default for Store {
    fn default() -> Store {
        Store {
            series: BTreeMap::new(),
            route_parts: HashMap::new(),
            settled: i64::MIN,
        }
    }
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// Sets the period the next snapshot reports gauges of ([`Store::iter`]'s `settled`), before
    /// a cycle's ingests: a gauge then keeps that period and the ones after it, not the whole
    /// window (at the default settings 5 periods instead of 12).
    pub fn settle(&mut self, settled: i64) {
        self.settled = self.settled.max(settled);
    }

    /// Ingests what one query returned over `window`.
    pub fn ingest(
        &mut self,
        key: &SeriesKey,
        stat: Stat,
        window: &Window,
        points: &[(i64, f64)],
    ) -> Ingested {
        let settled = self.settled;
        let series = self.series.entry(key.clone()).or_default();
        let i = match series.stats.binary_search_by_key(&stat, |(s, _)| *s) {
            Ok(i) => i,
            Err(i) => {
                // A series has a few statistics, added once: room for exactly those (a
                // growing Vec would keep room for 4 behind a counter's single one).
                series.stats.reserve_exact(1);
                series.stats.insert(i, (stat, StatState::new(stat)));
                i
            }
        };
        let state = &mut series.stats[i].1;
        let mut report = Ingested {
            decreases: 0,
            newest: points.iter().map(|(t, _)| *t).max(),
            refused: 0,
        };
        match state {
            StatState::Counter(c) => {
                report.decreases = c.ingest(window, points);
            }
            StatState::Gauge(g) => {
                let from = window.keep_from.max(settled);
                g.periods.forget_before(from);
                g.periods.reserve(window, from);
                for &(t, v) in points.iter().filter(|(t, _)| *t >= from && *t < window.end) {
                    g.periods.insert(t, v);
                }
            }
        }
        report
    }

    /// Ingests a split answer (access-log responses of one stage): each part under a series
    /// of its own, and the stage-level total under `anchor`, the query's series, which is
    /// not exported. The anchor says where counting stands for all the parts (baseline,
    /// floor, read end): a cause first seen after the baseline counts in full, since it was
    /// zero until then and all of its value is growth; it is exported at 0 for one cycle
    /// first, so that Prometheus sees the whole increase. At most [`MAX_ROUTE_SERIES`]
    /// route-level parts are kept per anchor: the first ones seen stay, later ones are
    /// refused (counted in the report), and the stage-level parts count every event.
    pub fn ingest_split(
        &mut self,
        anchor: &SeriesKey,
        window: &Window,
        parts: &[Part],
    ) -> Ingested {
        let before = self
            .series
            .get(anchor)
            .and_then(|s| s.stats.first())
            .and_then(|(_, state)| match state {
                StatState::Counter(c) if c.baselined => Some((c.floor, c.read_end)),
                _ => None,
            });
        let mut total: BTreeMap<i64, f64> = BTreeMap::new();
        for part in parts.iter().filter(|p| p.route.is_none()) {
            for &(t, v) in &part.points {
                *total.entry(t).or_default() += v;
            }
        }
        let total: Vec<(i64, f64)> = total.into_iter().collect();
        let mut report = self.ingest(anchor, Stat::Sum, window, &total);
        for part in parts {
            let key = SeriesKey {
                family: anchor.family,
                labels: Arc::new(SeriesLabels {
                    route: part.route.clone(),
                    cause: Some(part.cause.clone()),
                    ..(*anchor.labels).clone()
                }),
            };
            let new = !self.series.contains_key(&key);
            if new && part.route.is_some() {
                let kept = self.route_parts.entry(anchor.clone()).or_default();
                if *kept >= MAX_ROUTE_SERIES {
                    report.refused += 1;
                    continue;
                }
                *kept += 1;
            }
            if let Some((floor, read_end)) = before.filter(|_| new) {
                let counter = CounterState {
                    baselined: true,
                    floor,
                    read_end,
                    hold: true,
                    ..CounterState::default()
                };
                self.series.insert(
                    key.clone(),
                    SeriesState {
                        stats: vec![(Stat::Sum, StatState::Counter(counter))],
                    },
                );
            }
            report.decreases += self.ingest(&key, Stat::Sum, window, &part.points).decreases;
        }
        report
    }

    /// Where counting of `key` stands, over all its counters: every period before `floor` is
    /// final, and periods from `read_end` on were never read. `None` for a series not read
    /// yet (its first read is a baseline).
    pub fn resume_from(&self, key: &SeriesKey) -> Option<Resume> {
        self.series
            .get(key)?
            .stats
            .iter()
            .filter_map(|(_, state)| match state {
                StatState::Counter(c) if c.baselined => Some(Resume {
                    floor: c.floor,
                    read_end: c.read_end,
                }),
                _ => None,
            })
            .reduce(Resume::earliest)
    }

    /// Drops every series not in `live` (its API or stage left the inventory); the parts of
    /// a split answer live as long as their anchor.
    pub fn retain(&mut self, live: &HashSet<SeriesKey>) {
        let anchor_of = |k: &SeriesKey| SeriesKey {
            family: k.family,
            labels: Arc::new(SeriesLabels {
                route: None,
                cause: None,
                ..(*k.labels).clone()
            }),
        };
        self.series.retain(|k, _| {
            live.contains(k) || (k.labels.cause.is_some() && live.contains(&anchor_of(k)))
        });
        self.route_parts.retain(|anchor, _| live.contains(anchor));
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Every series with its counters and the gauges of the period starting at `settled`.
    pub fn iter(&self, settled: i64) -> impl Iterator<Item = (&SeriesKey, SeriesView)> + '_ {
        self.series.iter().map(move |(k, s)| {
            let mut view = SeriesView::default();
            for (stat, state) in &s.stats {
                match state {
                    StatState::Counter(c) => view.counters.push((*stat, c.total)),
                    StatState::Gauge(g) => {
                        if let Some(v) = g.periods.get(settled) {
                            view.gauges.push((*stat, v));
                        }
                    }
                }
            }
            (k, view)
        })
    }
}

/// The exportable values of one series.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SeriesView {
    pub counters: Vec<(Stat, f64)>,
    pub gauges: Vec<(Stat, f64)>,
}

impl SeriesView {
    pub fn counter(&self, stat: Stat) -> Option<f64> {
        self.counters
            .iter()
            .find(|(s, _)| *s == stat)
            .map(|(_, v)| *v)
    }
}

impl CounterState {
    /// Tops the counter up with the growth of every period in the window; returns how many
    /// periods went down (ignored: a counter never decreases). Periods before the floor are
    /// final and skipped; afterwards the floor moves up to the window's lookback start.
    fn ingest(&mut self, window: &Window, points: &[(i64, f64)]) -> u64 {
        let in_window = |t: i64| t >= window.start && t < window.end;
        let mut decreases = 0;
        let before = self.total;
        if self.baselined {
            // Periods before the window are not consulted by this read (and are forgotten
            // after it anyway): drop them first, so the window's periods fit the room made
            // for them and the Vec never doubles for one period too many.
            self.periods.forget_before(window.start);
            self.periods.reserve(window, window.start);
            for &(t, v) in points {
                if t < self.floor || !in_window(t) || !v.is_finite() || v < 0.0 {
                    continue;
                }
                match self.periods.get_mut(t) {
                    None => {
                        self.total += v;
                        self.periods.insert(t, v);
                    }
                    Some(seen) if v > *seen => {
                        self.total += v - *seen;
                        *seen = v;
                    }
                    Some(seen) if v < *seen => decreases += 1,
                    Some(_) => {}
                }
            }
        } else {
            self.baselined = true;
            self.floor = window.start;
            self.periods.reserve(window, window.start);
            for &(t, v) in points.iter().filter(|(t, _)| in_window(*t)) {
                self.periods.insert(t, v);
            }
        }
        if self.hold {
            self.held += self.total - before;
            self.total = before;
            self.hold = false;
        } else {
            self.total += std::mem::take(&mut self.held);
        }
        self.read_end = self.read_end.max(window.end);
        // Periods before the lookback were read for the last time: forget them, and raise the
        // floor so they are never counted again. (Nothing below the floor is ever stored, so
        // there is only something to forget when it rises.)
        if window.keep_from > self.floor {
            self.floor = window.keep_from;
            self.periods.forget_before(self.floor);
        }
        decreases
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ApiType, Cause, RouteKey};

    fn key() -> SeriesKey {
        SeriesKey {
            family: Family::Requests,
            labels: Arc::new(SeriesLabels {
                account_id: "1".into(),
                region: "r".into(),
                api_id: "a".into(),
                api_name: "n".into(),
                api_type: ApiType::Http,
                stage: Some("prod".into()),
                route: None,
                cause: None,
                function: None,
                receiver: None,
            }),
        }
    }

    fn total(store: &Store) -> f64 {
        store.iter(0).next().unwrap().1.counter(Stat::Sum).unwrap()
    }

    #[test]
    fn first_read_is_a_baseline_then_growth_is_counted() {
        let mut s = Store::new();
        let w = Window::at(600, 60, 600);
        s.ingest(&key(), Stat::Sum, &w, &[(0, 5.0), (60, 3.0)]);
        assert_eq!(total(&s), 0.0);
        // Late data into a baselined period and a new period.
        s.ingest(&key(), Stat::Sum, &w, &[(0, 7.0), (60, 3.0), (120, 4.0)]);
        assert_eq!(total(&s), 6.0);
    }

    #[test]
    fn repeated_reads_never_double_count_and_decreases_are_ignored() {
        let mut s = Store::new();
        let w = Window::at(600, 60, 600);
        s.ingest(&key(), Stat::Sum, &w, &[]);
        for _ in 0..3 {
            s.ingest(&key(), Stat::Sum, &w, &[(60, 10.0)]);
        }
        assert_eq!(total(&s), 10.0);
        let r = s.ingest(&key(), Stat::Sum, &w, &[(60, 8.0)]);
        assert_eq!(r.decreases, 1);
        assert_eq!(total(&s), 10.0);
    }

    #[test]
    fn a_forgotten_period_is_never_counted_again() {
        let mut s = Store::new();
        s.ingest(&key(), Stat::Sum, &Window::at(600, 60, 600), &[]);
        s.ingest(&key(), Stat::Sum, &Window::at(600, 60, 600), &[(60, 1.0)]);
        // The window moves past period 60 …
        s.ingest(&key(), Stat::Sum, &Window::at(1200, 60, 600), &[]);
        // … and a window that reaches back (a reload with a longer lookback) sees it again.
        s.ingest(&key(), Stat::Sum, &Window::at(1200, 60, 1200), &[(60, 1.0)]);
        assert_eq!(total(&s), 1.0);
    }

    #[test]
    fn a_catch_up_read_from_the_floor_counts_what_an_outage_hid() {
        let mut s = Store::new();
        s.ingest(&key(), Stat::Sum, &Window::at(600, 60, 120), &[]);
        assert_eq!(
            s.resume_from(&key()).map(|r| (r.floor, r.read_end)),
            Some((480, 660))
        );
        // An outage: no reads while the window moves on by an hour. Then one read reaching
        // back to the floor sees everything that happened meanwhile.
        let w = Window::at(4200, 60, 120).reaching_back_to(480);
        let points: Vec<(i64, f64)> = (480..4200).step_by(60).map(|t| (t, 1.0)).collect();
        s.ingest(&key(), Stat::Sum, &w, &points);
        assert_eq!(total(&s), points.len() as f64);
        assert_eq!(s.resume_from(&key()).map(|r| r.floor), Some(4080));
        // And a normal read afterwards counts none of it again.
        s.ingest(&key(), Stat::Sum, &Window::at(4260, 60, 120), &points);
        assert_eq!(total(&s), points.len() as f64);
    }

    fn part(route: Option<&str>, status: &str, points: &[(i64, f64)]) -> Part {
        Part {
            route: route.map(|r| RouteKey::Route(r.into())),
            cause: Cause {
                status: status.into(),
                response_type: "none".into(),
            },
            points: points.to_vec(),
        }
    }

    fn split_total(store: &Store, route: Option<&str>, status: &str) -> Option<f64> {
        store.iter(0).find_map(|(k, v)| {
            let c = k.labels.cause.as_ref()?;
            let r = match &k.labels.route {
                Some(RouteKey::Route(r)) => Some(r.as_str()),
                _ => None,
            };
            (c.status == status && r == route).then(|| v.counter(Stat::Sum).unwrap())
        })
    }

    #[test]
    fn a_cause_first_seen_after_the_baseline_counts_in_full_after_showing_0() {
        let mut s = Store::new();
        let anchor = SeriesKey {
            family: Family::Responses,
            ..key()
        };
        let w = Window::at(600, 60, 600);
        // The baseline read: 3 × 502 are not counted.
        s.ingest_split(&anchor, &w, &[part(None, "502", &[(60, 3.0)])]);
        assert_eq!(split_total(&s, None, "502"), Some(0.0));
        // A 504 appears (also in a period of the baseline window, late), and a route: they
        // show 0 first, so that Prometheus sees their whole increase.
        let later = [
            part(None, "502", &[(60, 4.0)]),
            part(None, "504", &[(60, 2.0), (120, 1.0)]),
            part(Some("$connect"), "504", &[(120, 1.0)]),
        ];
        s.ingest_split(&anchor, &w, &later);
        assert_eq!(split_total(&s, None, "502"), Some(1.0));
        assert_eq!(split_total(&s, None, "504"), Some(0.0));
        assert_eq!(split_total(&s, Some("$connect"), "504"), Some(0.0));
        // The next read releases what was held, and adds what is new.
        let mut again = later.clone();
        again[1] = part(None, "504", &[(60, 2.0), (120, 1.0), (180, 5.0)]);
        s.ingest_split(&anchor, &w, &again);
        assert_eq!(split_total(&s, None, "504"), Some(8.0));
        assert_eq!(split_total(&s, Some("$connect"), "504"), Some(1.0));
        // Read again: nothing counted twice.
        s.ingest_split(&anchor, &w, &again);
        assert_eq!(split_total(&s, None, "504"), Some(8.0));
        assert_eq!(split_total(&s, Some("$connect"), "504"), Some(1.0));
        // The parts live and die with their anchor.
        s.retain(&HashSet::from([anchor.clone()]));
        assert_eq!(s.len(), 4);
        s.retain(&HashSet::new());
        assert!(s.is_empty());
    }

    #[test]
    fn route_parts_are_bounded_and_the_first_ones_stay() {
        let mut s = Store::new();
        let anchor = SeriesKey {
            family: Family::Responses,
            ..key()
        };
        let w = Window::at(600, 60, 600);
        let routes = |from: usize, to: usize| -> Vec<Part> {
            (from..to)
                .map(|i| part(Some(&format!("r{i}")), "404", &[(60, 1.0)]))
                .chain([part(None, "404", &[(60, (to - from) as f64)])])
                .collect()
        };
        s.ingest_split(&anchor, &w, &routes(0, 10));
        let r = s.ingest_split(&anchor, &w, &routes(0, MAX_ROUTE_SERIES + 10));
        assert_eq!(r.refused, 10);
        // Anchor, one stage-level part, and MAX_ROUTE_SERIES route parts; the first ten
        // routes among them.
        assert_eq!(s.len(), 2 + MAX_ROUTE_SERIES);
        for i in 0..10 {
            let name = format!("r{i}");
            assert!(split_total(&s, Some(&name), "404").is_some(), "{name}");
        }
        // Refused again on the next read, and the stage-level part counts every event.
        let r = s.ingest_split(&anchor, &w, &routes(0, MAX_ROUTE_SERIES + 10));
        assert_eq!(r.refused, 10);
        // 2,010 events on the read after the baseline of 10.
        assert_eq!(split_total(&s, None, "404"), Some(2_000.0));
    }
}
