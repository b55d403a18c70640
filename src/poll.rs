//! The poll loop: on each tick, refresh inventories that are due, read every batch of every
//! target concurrently, ingest, and publish a new snapshot. Failures stay local: a failed
//! target or batch leaves its series at their last values and the rest of the cycle goes on.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tracing::{debug, info, warn};

use crate::config::PollConfig;
use crate::inventory::{self, ApiFilter, Discovery, TargetInventory};
use crate::plan::{self, PlanOptions, Query, TargetPlan};
use crate::selfmetrics::SelfMetrics;
use crate::snapshot::{self, SharedSnapshot};
use crate::source::{MetricSource, Outcome, Window};
use crate::store::{SeriesKey, Store};

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
    pub region: String,
    pub filter: ApiFilter,
    pub discovery: Arc<dyn Discovery>,
    pub source: Arc<dyn MetricSource>,
    account_id: Option<String>,
    inventory: Option<TargetInventory>,
    refreshed_at: Option<i64>,
    plan: TargetPlan,
}

impl Target {
    pub fn new(
        region: String,
        filter: ApiFilter,
        discovery: Arc<dyn Discovery>,
        source: Arc<dyn MetricSource>,
    ) -> Target {
        Target {
            region,
            filter,
            discovery,
            source,
            account_id: None,
            inventory: None,
            refreshed_at: None,
            plan: TargetPlan::default(),
        }
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

/// Refreshes one target if due, then reads all its batches, a few at a time.
async fn fetch_target(
    t: &mut Target,
    now: i64,
    refresh: Duration,
    opts: &PlanOptions,
    window: Window,
) -> Fetched {
    if let Err(e) = t.refresh(now, refresh, opts).await {
        warn!(region = %t.region, error = %e, "keeping the last inventory");
    }
    if t.inventory.is_none() {
        return Fetched {
            ok: false,
            batches: Vec::new(),
        };
    }
    let mut calls = Vec::new();
    for (i, batch) in t.plan.batches().into_iter().enumerate() {
        let source = Arc::clone(&t.source);
        calls.push(async move { (i, source.fetch(batch, window).await.map_err(|e| e.message)) });
    }
    let batches = futures::stream::iter(calls)
        .buffer_unordered(BATCH_CONCURRENCY)
        .collect()
        .await;
    Fetched { ok: true, batches }
}

/// Drives the pipeline.
pub struct Poller {
    targets: Vec<Target>,
    store: Store,
    settings: PollSettings,
    clock: Arc<dyn Clock>,
    shared: Arc<SharedSnapshot>,
    metrics: SelfMetrics,
}

/// Per-target results of the fetch phase.
struct Fetched {
    ok: bool,
    batches: Vec<(usize, Result<Vec<Outcome>, String>)>,
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
        }
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
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
                    self.targets = targets;
                    self.settings = settings;
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
            let interval = self.settings.poll.interval;
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
        let p = &self.settings.poll;
        let period = p.period.as_secs() as i64;
        let window = Window::at(now, period, p.lookback.as_secs() as i64);
        let refresh = self.settings.refresh_interval;
        let opts = self.settings.plan.clone();

        // Futures are built in plain loops: closures over borrowed batches trip the
        // compiler's higher-ranked lifetime inference once the loop is spawned.
        let mut per_target = Vec::with_capacity(self.targets.len());
        for t in self.targets.iter_mut() {
            per_target.push(fetch_target(t, now, refresh, &opts, window));
        }
        let fetched: Vec<Fetched> = futures::future::join_all(per_target).await;

        let mut report = CycleReport::default();
        let mut newest: Option<i64> = None;
        for (target, fetched) in self.targets.iter().zip(fetched) {
            let mut target_complete = fetched.ok;
            if fetched.ok {
                report.targets_ok += 1;
            } else {
                report.targets_failed += 1;
            }
            let batches = target.plan.batches();
            for (batch_index, result) in fetched.batches {
                report.calls += 1;
                let batch: &[Query] = batches.get(batch_index).copied().unwrap_or_default();
                match result {
                    Ok(outcomes) => {
                        for (q, outcome) in batch.iter().zip(outcomes) {
                            match outcome {
                                Outcome::Points(points) => {
                                    let key = SeriesKey {
                                        family: q.family,
                                        labels: Arc::clone(&q.labels),
                                    };
                                    let r = self.store.ingest(&key, q.stat, &window, &points);
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
                        warn!(region = %target.region, batch = batch_index, error = %message, "batch failed; its series keep their last values");
                    }
                }
            }
            if let Some(account) = &target.account_id {
                self.metrics
                    .target_up
                    .with_label_values(&[account, &target.region])
                    .set(if target_complete { 1.0 } else { 0.0 });
                if let Some(inv) = &target.inventory {
                    self.metrics
                        .rest_name_conflicts
                        .with_label_values(&[account, &target.region])
                        .set(inv.conflicted_apis() as f64);
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

        let settle = p.settle.as_secs() as i64;
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
            self.metrics.last_success.set(now as f64);
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
