//! The poll loop: on each tick, refresh inventories that are due, read every batch of every
//! target concurrently, ingest, and publish a new snapshot. Failures stay local: a failed
//! target or batch leaves its series at their last values and the rest of the cycle goes on.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tracing::{debug, warn};

mod calls;
mod target;

pub use target::{DiscoveryDone, Target};

use crate::clock::Clock;
use crate::config::PollConfig;
use crate::inventory::TargetInventory;
use crate::model::Family;
use crate::plan::PlanOptions;
use crate::selfmetrics::SelfMetrics;
use crate::snapshot::{self, SharedSnapshot};
use crate::source::{Outcome, Window};
use crate::store::{SeriesKey, Store};
use calls::{Bounds, Prepared, answers, prepare_target};

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

/// Whether a query's series says a stage has traffic: its requests (REST, HTTP) or WebSocket
/// messages and connects, at stage level.
fn is_traffic(q: &crate::plan::Query) -> bool {
    q.labels.route.is_none()
        && matches!(
            q.family,
            Family::Requests | Family::WsMessages | Family::WsConnects
        )
}

/// Settings the loop needs from the config.
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub poll: PollConfig,
    pub refresh_interval: Duration,
    pub plan: PlanOptions,
    pub tags_as_labels: Vec<String>,
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
    /// The targets' plan versions the store was last trimmed to (`None`: never, or targets
    /// changed since).
    retained: Option<Vec<u64>>,
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
            retained: None,
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
        self.retained = None;
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
                let _ = metrics.idle_stages.remove_label_values(&labels);
                let _ = metrics.discovery_duration.remove_label_values(&labels);
                let _ = metrics.discovery_last_success.remove_label_values(&labels);
            }
            polled
        });
    }

    /// Discovers every target's inventory now, to the end; the errors, by target index.
    pub async fn refresh_all(&mut self) -> Vec<Result<(), String>> {
        const UNTIL_DONE: Duration = Duration::from_secs(86_400);
        let opts = self.settings.plan.clone();
        let clock = &self.clock;
        futures::future::join_all(self.targets.iter_mut().map(|t| async {
            t.refresh(clock, Duration::ZERO, &opts, UNTIL_DONE)
                .await
                .map(|_| ())
        }))
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
        let limit = (now - p.max_backfill()).div_euclid(period) * period;
        let bounds = Bounds {
            limit,
            // A streamed batch cannot catch up past what the stream buffer keeps (without a
            // stream there is no streamed batch to limit).
            stream_limit: limit.max((now - p.stream_retention()).div_euclid(period) * period),
            steady_from: window.keep_from - ((interval + period - 1) / period).max(1) * period,
        };
        let refresh = self.settings.refresh_interval;
        let opts = self.settings.plan.clone();
        // The period the snapshot will report gauges of: the store keeps no older one.
        let settled = (now - p.settle()).div_euclid(period) * period - period;
        self.store.settle(settled);

        // Futures are built in plain loops: closures over borrowed batches trip the
        // compiler's higher-ranked lifetime inference once the loop is spawned.
        let store = &self.store;
        let clock = &self.clock;
        let mut per_target = Vec::with_capacity(self.targets.len());
        for t in self.targets.iter_mut() {
            per_target.push(prepare_target(
                t,
                store,
                clock,
                now,
                p.interval(),
                refresh,
                &opts,
                window,
                bounds,
                p.idle(),
            ));
        }
        let mut prepared: Vec<Prepared> = futures::future::join_all(per_target).await;

        let mut report = CycleReport::default();
        let mut newest: Option<i64> = None;
        // Per target: whether its cycle completed, and the stages whose traffic was seen.
        let mut complete: Vec<bool> = prepared.iter().map(|f| f.ok).collect();
        let mut traffic: Vec<Vec<target::StageId>> = vec![Vec::new(); prepared.len()];
        {
            let calls: Vec<Vec<calls::Call>> = prepared
                .iter_mut()
                .map(|f| std::mem::take(&mut f.calls))
                .collect();
            let targets = &self.targets;
            let plans: Vec<&crate::plan::TargetPlan> = targets
                .iter()
                .zip(&prepared)
                .map(|(t, f)| f.plan.as_ref().unwrap_or(&t.plan))
                .collect();
            let streams =
                targets
                    .iter()
                    .zip(&plans)
                    .zip(calls)
                    .enumerate()
                    .map(|(i, ((t, plan), calls))| {
                        Box::pin(answers(t, plan, calls).map(move |answer| (i, answer)))
                    });
            // Every answer is ingested as it comes, so the cycle holds a few at once.
            let mut answers = futures::stream::select_all(streams);
            while let Some((i, (call, result))) = answers.next().await {
                report.calls += 1;
                let queries = plans[i]
                    .queries
                    .get(call.queries.clone())
                    .unwrap_or_default();
                match result {
                    Ok(outcomes) => {
                        for (q, outcome) in queries.iter().zip(outcomes) {
                            match outcome {
                                Outcome::Points(points) => {
                                    // Traffic keeps a stage out of idle polling.
                                    if is_traffic(q) && points.iter().any(|(_, v)| *v > 0.0) {
                                        traffic[i].push(target::stage_of(q));
                                    }
                                    let key = SeriesKey {
                                        family: q.family,
                                        labels: Arc::clone(&q.labels),
                                    };
                                    let r = self.store.ingest(&key, q.stat, &call.window, &points);
                                    self.metrics.counter_decreases.inc_by(r.decreases as f64);
                                    newest = newest.max(r.newest);
                                }
                                Outcome::Split(parts) => {
                                    let key = SeriesKey {
                                        family: q.family,
                                        labels: Arc::clone(&q.labels),
                                    };
                                    let r = self.store.ingest_split(&key, &call.window, &parts);
                                    self.metrics.counter_decreases.inc_by(r.decreases as f64);
                                    if r.refused > 0 {
                                        self.metrics
                                            .query_errors
                                            .with_label_values(&["TooManyRoutes"])
                                            .inc_by(r.refused as f64);
                                        warn!(api_id = %q.labels.api_id, stage = ?q.labels.stage, refused = r.refused, "too many routes in the access logs; new ones count for the stage only");
                                    }
                                    newest = newest.max(r.newest);
                                }
                                Outcome::Failed(status) => {
                                    report.failed_queries += 1;
                                    complete[i] = false;
                                    self.metrics.query_errors.with_label_values(&[status]).inc();
                                }
                            }
                        }
                    }
                    Err(message) => {
                        report.failed_batches += 1;
                        complete[i] = false;
                        warn!(region = %targets[i].region, queries = ?call.queries, error = %message, "call failed; its series keep their last values");
                    }
                }
            }
        }

        for (((target, fetched), target_complete), traffic) in self
            .targets
            .iter_mut()
            .zip(prepared)
            .zip(complete)
            .zip(traffic)
        {
            if fetched.ok {
                report.targets_ok += 1;
            } else {
                report.targets_failed += 1;
            }
            for stage in traffic {
                if let Some(a) = target.activity.get_mut(&stage) {
                    a.traffic = now;
                }
            }
            target.caught_up = target_complete.then_some(window.keep_from);
            // Every stage a complete cycle did not leave out was read up to now.
            if target_complete {
                for (stage, a) in &mut target.activity {
                    if !fetched.skipped.contains(stage) {
                        a.read = now;
                    }
                }
            }
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
                self.metrics
                    .idle_stages
                    .with_label_values(&labels)
                    .set(fetched.idle as f64);
                if let Some(done) = fetched.discovered {
                    self.metrics
                        .discovery_duration
                        .with_label_values(&labels)
                        .set(done.took.as_secs_f64());
                    self.metrics
                        .discovery_last_success
                        .with_label_values(&labels)
                        .set(done.at as f64);
                }
                if let Some(inv) = &target.inventory {
                    self.metrics
                        .rest_name_conflicts
                        .with_label_values(&labels)
                        .set(inv.conflicted_apis() as f64);
                }
                // Periods that fell behind what can still be read, unread: counted once each.
                let lost = self.metrics.periods_lost.with_label_values(&labels);
                if let Some(calls::Lost { from, until }) = fetched.lost {
                    let from = from.max(target.lost_through);
                    if from < until {
                        let n = (until - from) / period;
                        lost.inc_by(n as f64);
                        warn!(account_id = %account, region = %target.region, periods = n, "an outage outlasted what can still be read (poll.max_backfill; for streamed series, the stream buffer's retention): these periods are missing from the counters");
                    }
                    target.lost_through = target.lost_through.max(until);
                }
            }
        }

        // Series whose API or stage left every inventory leave the output. Only a new plan
        // can make one leave: the set of live series (as large as the plan) is built only
        // after one.
        let versions: Vec<u64> = self.targets.iter().map(|t| t.plan_version).collect();
        if self.retained.as_ref() != Some(&versions) {
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
            self.retained = Some(versions);
        }

        // A monitoring account's source accounts are inventories of their own.
        let inventories: Vec<&TargetInventory> = self
            .targets
            .iter()
            .filter_map(|t| t.inventory.as_ref())
            .flat_map(TargetInventory::accounts)
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
