//! The poll loop: on each tick, refresh inventories that are due, read every batch of every
//! target concurrently, ingest, and publish a new snapshot. Failures stay local: a failed
//! target or batch leaves its series at their last values and the rest of the cycle goes on.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tracing::{debug, info, warn};

use crate::config::PollConfig;
use crate::inventory::{self, ApiFilter, Discovered, Discovery, TargetInventory};
use crate::plan::MAX_QUERIES_PER_CALL;
use crate::plan::{self, PlanOptions, TargetPlan};
use crate::selfmetrics::SelfMetrics;
use crate::snapshot::{self, SharedSnapshot};
use crate::source::{MetricSource, Outcome, Window};
use crate::store::{Resume, SeriesKey, Store};

/// Batches of one target read at once.
const BATCH_CONCURRENCY: usize = 4;

/// Wall-clock time in Unix seconds. Injected so the demo and tests can run simulated time.
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }
}

/// The system clock shifted to start at a chosen instant: the demo's simulated time, which
/// runs at real speed from wherever it was started.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    offset: i64,
}

impl OffsetClock {
    pub fn starting_at(start: i64) -> OffsetClock {
        OffsetClock {
            offset: start - SystemClock.now(),
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> i64 {
        SystemClock.now() + self.offset
    }
}

/// A clock that only moves when told: simulated time for the demo's tests and for tests of
/// the loop itself.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(now: i64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicI64::new(now))
    }

    pub fn set(&self, now: i64) {
        self.0.store(now, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One account in one region, and what the loop knows of it.
pub struct Target {
    /// Who and where this target reads (credentials and region): a reload hands the state of
    /// the old target with the same key to the new one.
    pub key: String,
    pub region: String,
    pub filter: ApiFilter,
    pub discovery: Arc<dyn Discovery>,
    pub source: Arc<dyn MetricSource>,
    account_id: Option<String>,
    /// The last successful discovery, kept so a reload can re-filter it without AWS.
    found: Option<Arc<Discovered>>,
    inventory: Option<TargetInventory>,
    refreshed_at: Option<i64>,
    plan: TargetPlan,
    /// The lookback start of this target's last complete cycle: while cycles complete on
    /// time, every series' floor is there and no catch-up is needed.
    caught_up: Option<i64>,
    /// Periods before this were already counted in `periods_lost_total`.
    lost_through: i64,
}

impl Target {
    pub fn new(
        region: String,
        filter: ApiFilter,
        discovery: Arc<dyn Discovery>,
        source: Arc<dyn MetricSource>,
    ) -> Target {
        Target {
            key: region.clone(),
            region,
            filter,
            discovery,
            source,
            account_id: None,
            found: None,
            inventory: None,
            refreshed_at: None,
            plan: TargetPlan::default(),
            caught_up: None,
            lost_through: i64::MIN,
        }
    }

    /// Sets the identity that reloads match targets by (default: the region).
    pub fn with_key(mut self, key: impl Into<String>) -> Target {
        self.key = key.into();
        self
    }

    /// Takes over what `old` (the same account and region under the previous config) knew:
    /// the account, the last discovery (filtered again with this target's filter, planned
    /// with `opts`) and where counting stands. Discovery runs again on the next cycle; until
    /// it succeeds the series go on as they were, so a reload during an AWS outage drops
    /// nothing.
    pub fn adopt(&mut self, old: Target, opts: &PlanOptions) {
        self.account_id = old.account_id;
        self.caught_up = old.caught_up;
        self.lost_through = old.lost_through;
        if let (Some(account), Some(found)) = (&self.account_id, old.found) {
            let inv = inventory::build(account, &self.region, &found, &self.filter);
            self.plan = plan::plan_target(&inv, opts);
            self.inventory = Some(inv);
            self.found = Some(found);
        }
        self.refreshed_at = None;
    }

    pub fn inventory(&self) -> Option<&TargetInventory> {
        self.inventory.as_ref()
    }

    pub fn plan(&self) -> &TargetPlan {
        &self.plan
    }

    /// Resolves the account and refreshes the inventory when it is due. A failed refresh
    /// keeps the last good inventory (see [`Target::inventory`]) and says why.
    pub async fn refresh(
        &mut self,
        now: i64,
        every: Duration,
        opts: &PlanOptions,
    ) -> Result<(), String> {
        if self.account_id.is_none() {
            let id = self
                .discovery
                .account_id()
                .await
                .map_err(|e| format!("cannot resolve the AWS account: {e}"))?;
            self.account_id = Some(id);
        }
        let due = self
            .refreshed_at
            .is_none_or(|at| now - at >= every.as_secs() as i64);
        if !due {
            return Ok(());
        }
        let account = self.account_id.clone().unwrap_or_default();
        // On failure, try again next cycle rather than after a whole refresh interval.
        let found = self
            .discovery
            .discover(&self.filter)
            .await
            .map_err(|e| format!("discovery failed: {e}"))?;
        let inv = inventory::build(&account, &self.region, &found, &self.filter);
        self.found = Some(Arc::new(found));
        if self.inventory.as_ref() != Some(&inv) {
            for c in &inv.conflicts {
                warn!(
                    account_id = %account, region = %self.region, api_ids = %c.api_ids.join(","),
                    cloudwatch_name = %c.cloudwatch_name,
                    "REST APIs share one CloudWatch ApiName; CloudWatch merges their metrics, so the shared series are not exported"
                );
            }
            info!(account_id = %account, region = %self.region, apis = inv.apis.len(), "inventory updated");
            self.plan = plan::plan_target(&inv, opts);
            info!(account_id = %account, region = %self.region, queries = self.plan.queries.len(), calls = self.plan.calls(), "plan updated");
            self.inventory = Some(inv);
        }
        self.refreshed_at = Some(now);
        Ok(())
    }
}

/// What a cycle did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub targets_ok: usize,
    pub targets_failed: usize,
    pub calls: usize,
    pub failed_batches: usize,
    pub failed_queries: usize,
}

impl CycleReport {
    pub fn complete(&self) -> bool {
        self.targets_failed == 0 && self.failed_batches == 0 && self.failed_queries == 0
    }
}

/// Settings the loop needs from the config.
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub poll: PollConfig,
    pub refresh_interval: Duration,
    pub plan: PlanOptions,
    pub tags_as_labels: Vec<String>,
}

/// How far back a cycle may read (`limit`: `poll.max_backfill`), and from where a floor counts
/// as behind (`steady_from`: the lookback start less one interval).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    limit: i64,
    steady_from: i64,
}

/// One GetMetricData call (or one access-log read) of a cycle: a run of the target's
/// queries and the window it reads.
#[derive(Debug, Clone)]
struct Call {
    queries: std::ops::Range<usize>,
    window: Window,
}

/// The calls of one target: each batch of the plan over the cycle's window, or, where a
/// batch's series have not counted everything since an earlier cycle (an outage, a failed
/// call), over a window reaching back to the oldest period not final, at most `max_backfill`
/// back. A catch-up window may hold more datapoints than one call returns: such a batch is
/// split. Also returns the oldest period any batch needed but could not reach.
fn plan_calls(
    t: &Target,
    store: &Store,
    window: Window,
    bounds: Bounds,
) -> (Vec<Call>, Option<i64>) {
    let Bounds { limit, steady_from } = bounds;
    let mut calls = Vec::new();
    let mut lost_from: Option<i64> = None;
    // Steady state: the last cycle completed and the window moved on by at most about the
    // interval, so the periods before this window were read for their last time then.
    let steady = t.caught_up.is_some_and(|k| k >= steady_from);
    for range in t.plan.batch_ranges() {
        let batch = &t.plan.queries[range.clone()];
        let mut w = window;
        if !steady {
            let behind = batch
                .iter()
                .filter_map(|q| {
                    store.resume_from(&SeriesKey {
                        family: q.family,
                        labels: Arc::clone(&q.labels),
                    })
                })
                .reduce(Resume::earliest);
            if let Some(r) = behind.filter(|r| r.floor < steady_from) {
                // Periods never read that are now past the limit are lost.
                if r.read_end < limit {
                    lost_from = Some(lost_from.map_or(r.read_end, |l| l.min(r.read_end)));
                }
                w = window.reaching_back_to(r.floor.max(limit));
            }
        }
        // Access-log reads have no datapoint limit; GetMetricData calls do.
        let per_call = if batch.first().is_some_and(|q| q.log_group.is_some()) {
            batch.len().max(1)
        } else {
            w.queries_per_call(MAX_QUERIES_PER_CALL)
        };
        let mut start = range.start;
        while start < range.end {
            let end = (start + per_call).min(range.end);
            calls.push(Call {
                queries: start..end,
                window: w,
            });
            start = end;
        }
    }
    (calls, lost_from)
}

/// Refreshes one target if due, then makes all its calls, a few at a time.
async fn fetch_target(
    t: &mut Target,
    store: &Store,
    now: i64,
    refresh: Duration,
    opts: &PlanOptions,
    window: Window,
    bounds: Bounds,
) -> Fetched {
    if let Err(e) = t.refresh(now, refresh, opts).await {
        warn!(region = %t.region, error = %e, "keeping the last inventory");
    }
    if t.inventory.is_none() {
        return Fetched {
            ok: false,
            calls: Vec::new(),
            lost_from: None,
        };
    }
    let (calls, lost_from) = plan_calls(t, store, window, bounds);
    let mut pending = Vec::new();
    for call in calls {
        let source = Arc::clone(&t.source);
        let queries = &t.plan.queries[call.queries.clone()];
        pending.push(async move {
            let result = source
                .fetch(queries, call.window)
                .await
                .map_err(|e| e.message);
            (call, result)
        });
    }
    let calls = futures::stream::iter(pending)
        .buffer_unordered(BATCH_CONCURRENCY)
        .collect()
        .await;
    Fetched {
        ok: true,
        calls,
        lost_from,
    }
}

/// Drives the pipeline.
pub struct Poller {
    targets: Vec<Target>,
    store: Store,
    settings: PollSettings,
    clock: Arc<dyn Clock>,
    shared: Arc<SharedSnapshot>,
    metrics: SelfMetrics,
    /// (account, region) of the per-target self-metric series set so far (one per target).
    labelled: Vec<(String, String)>,
}

/// Per-target results of the fetch phase.
struct Fetched {
    ok: bool,
    calls: Vec<(Call, Result<Vec<Outcome>, String>)>,
    /// The oldest period a catch-up could not reach (beyond `poll.max_backfill`).
    lost_from: Option<i64>,
}

impl Poller {
    pub fn new(
        targets: Vec<Target>,
        settings: PollSettings,
        clock: Arc<dyn Clock>,
        shared: Arc<SharedSnapshot>,
        metrics: SelfMetrics,
    ) -> Poller {
        Poller {
            targets,
            store: Store::new(),
            settings,
            clock,
            shared,
            metrics,
            labelled: Vec::new(),
        }
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Applies a reload: the new targets take over the state of the old ones with the same
    /// key ([`Target::adopt`]), so counters, inventories and catch-up points carry on; a
    /// target that is gone takes its series and self-metric label sets with it.
    pub fn apply(&mut self, mut targets: Vec<Target>, settings: PollSettings) {
        let mut old: Vec<Target> = std::mem::take(&mut self.targets);
        for t in &mut targets {
            if let Some(i) = old.iter().position(|o| o.key == t.key) {
                t.adopt(old.swap_remove(i), &settings.plan);
            }
        }
        self.targets = targets;
        self.settings = settings;
        self.forget_removed_targets();
    }

    /// Removes the per-target self-metric series of targets no longer polled. Targets only
    /// change on a reload, so this runs there, not every cycle.
    fn forget_removed_targets(&mut self) {
        let targets = &self.targets;
        let metrics = &self.metrics;
        self.labelled.retain(|(account, region)| {
            let polled = targets
                .iter()
                .any(|t| t.account_id.as_ref() == Some(account) && t.region == *region);
            if !polled {
                let labels = [account.as_str(), region.as_str()];
                let _ = metrics.target_up.remove_label_values(&labels);
                let _ = metrics.rest_name_conflicts.remove_label_values(&labels);
                let _ = metrics.periods_lost.remove_label_values(&labels);
            }
            polled
        });
    }

    /// Refreshes every target's inventory now; the errors, by target index.
    pub async fn refresh_all(&mut self) -> Vec<Result<(), String>> {
        let now = self.clock.now();
        let opts = self.settings.plan.clone();
        futures::future::join_all(
            self.targets
                .iter_mut()
                .map(|t| t.refresh(now, Duration::ZERO, &opts)),
        )
        .await
    }

    /// Runs cycles every `poll.interval` until `shutdown` resolves. A cycle that runs past
    /// the next tick makes the loop skip (and count) the ticks it missed: cycles never
    /// overlap. New targets and settings from `reloads` take effect between cycles; the
    /// store is kept, so counters of series that are still selected carry on.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        mut reloads: tokio::sync::mpsc::Receiver<(Vec<Target>, PollSettings)>,
    ) {
        tokio::pin!(shutdown);
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some((targets, settings)) = reloads.recv() => {
                    self.apply(targets, settings);
                    // Show the new config's series without waiting a whole interval.
                    next = tokio::time::Instant::now();
                    continue;
                }
                _ = tokio::time::sleep_until(next) => {}
            }
            tokio::select! {
                _ = &mut shutdown => break,
                report = self.cycle() => debug!(?report, "cycle finished"),
            }
            let interval = self.settings.poll.interval();
            next += interval;
            let now = tokio::time::Instant::now();
            if now > next {
                let missed =
                    ((now - next).as_secs_f64() / interval.as_secs_f64()).floor() as u32 + 1;
                self.metrics.cycles_skipped.inc_by(f64::from(missed));
                warn!(
                    missed,
                    "poll cycle took longer than poll.interval; skipping ticks"
                );
                next += interval * missed;
            }
        }
    }

    /// One poll cycle.
    pub async fn cycle(&mut self) -> CycleReport {
        let started = Instant::now();
        let now = self.clock.now();
        let p = self.settings.poll;
        let period = p.period();
        let window = Window::at(now, period, p.lookback());
        let interval = i64::try_from(p.interval().as_secs()).unwrap_or(i64::MAX);
        let bounds = Bounds {
            limit: (now - p.max_backfill()).div_euclid(period) * period,
            steady_from: window.keep_from - ((interval + period - 1) / period).max(1) * period,
        };
        let refresh = self.settings.refresh_interval;
        let opts = self.settings.plan.clone();

        // Futures are built in plain loops: closures over borrowed batches trip the
        // compiler's higher-ranked lifetime inference once the loop is spawned.
        let store = &self.store;
        let mut per_target = Vec::with_capacity(self.targets.len());
        for t in self.targets.iter_mut() {
            per_target.push(fetch_target(t, store, now, refresh, &opts, window, bounds));
        }
        let fetched: Vec<Fetched> = futures::future::join_all(per_target).await;

        let mut report = CycleReport::default();
        let mut newest: Option<i64> = None;
        for (target, fetched) in self.targets.iter_mut().zip(fetched) {
            let mut target_complete = fetched.ok;
            if fetched.ok {
                report.targets_ok += 1;
            } else {
                report.targets_failed += 1;
            }
            for (call, result) in fetched.calls {
                report.calls += 1;
                let queries = target
                    .plan
                    .queries
                    .get(call.queries.clone())
                    .unwrap_or_default();
                match result {
                    Ok(outcomes) => {
                        for (q, outcome) in queries.iter().zip(outcomes) {
                            match outcome {
                                Outcome::Points(points) => {
                                    let key = SeriesKey {
                                        family: q.family,
                                        labels: Arc::clone(&q.labels),
                                    };
                                    let r = self.store.ingest(&key, q.stat, &call.window, &points);
                                    self.metrics.counter_decreases.inc_by(r.decreases as f64);
                                    newest = newest.max(r.newest);
                                }
                                Outcome::Failed(status) => {
                                    report.failed_queries += 1;
                                    target_complete = false;
                                    self.metrics.query_errors.with_label_values(&[status]).inc();
                                }
                            }
                        }
                    }
                    Err(message) => {
                        report.failed_batches += 1;
                        target_complete = false;
                        warn!(region = %target.region, queries = ?call.queries, error = %message, "call failed; its series keep their last values");
                    }
                }
            }
            target.caught_up = target_complete.then_some(window.keep_from);
            if let Some(account) = &target.account_id {
                let labels = [account.as_str(), target.region.as_str()];
                if !self
                    .labelled
                    .iter()
                    .any(|(a, r)| a == account && *r == target.region)
                {
                    self.labelled.push((account.clone(), target.region.clone()));
                }
                self.metrics
                    .target_up
                    .with_label_values(&labels)
                    .set(if target_complete { 1.0 } else { 0.0 });
                if let Some(inv) = &target.inventory {
                    self.metrics
                        .rest_name_conflicts
                        .with_label_values(&labels)
                        .set(inv.conflicted_apis() as f64);
                }
                // Periods that fell behind the backfill limit unread: counted once each.
                let lost = self.metrics.periods_lost.with_label_values(&labels);
                if let Some(from) = fetched.lost_from {
                    let from = from.max(target.lost_through);
                    if from < bounds.limit {
                        let n = (bounds.limit - from) / period;
                        lost.inc_by(n as f64);
                        warn!(account_id = %account, region = %target.region, periods = n, "an outage outlasted poll.max_backfill: these periods can no longer be read and are missing from the counters");
                    }
                    target.lost_through = target.lost_through.max(bounds.limit);
                }
            }
        }

        // Series whose API or stage left every inventory leave the output.
        let live: HashSet<SeriesKey> = self
            .targets
            .iter()
            .flat_map(|t| t.plan.queries.iter())
            .map(|q| SeriesKey {
                family: q.family,
                labels: Arc::clone(&q.labels),
            })
            .collect();
        self.store.retain(&live);

        let settle = p.settle();
        let settled = (now - settle).div_euclid(period) * period - period;
        let inventories: Vec<&TargetInventory> = self
            .targets
            .iter()
            .filter_map(|t| t.inventory.as_ref())
            .collect();
        let snap = snapshot::build(
            &self.store,
            &inventories,
            settled,
            &self.settings.tags_as_labels,
        );
        self.metrics.series.set(snap.series() as f64);
        for t in crate::model::ApiType::ALL {
            let n = inventories
                .iter()
                .flat_map(|i| i.apis.iter())
                .filter(|a| a.api_type == t)
                .count();
            self.metrics
                .apis
                .with_label_values(&[t.as_str()])
                .set(n as f64);
        }
        self.shared.store(snap);

        if let Some(t) = newest {
            self.metrics
                .data_age
                .set((now - (t + period)).max(0) as f64);
        }
        let complete = report.complete();
        self.metrics.up.set(if complete { 1.0 } else { 0.0 });
        if complete {
            // The end of the cycle: when its data became visible.
            self.metrics.last_success.set(self.clock.now() as f64);
        }
        if report.targets_ok > 0 || self.targets.is_empty() {
            self.shared.set_ready(true);
        }
        self.metrics
            .cycle_duration
            .observe(started.elapsed().as_secs_f64());
        report
    }
}
