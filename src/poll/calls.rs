//! The calls of one target in a cycle: each batch over the cycle's window in steady state, or
//! a catch-up reaching back after an outage, split to stay under GetMetricData's limits.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tracing::warn;

use std::collections::HashSet;

use super::Target;
use super::target::{Activity, DiscoveryDone, StageId, same_stage, stage_of};
use crate::clock::Clock;
use crate::config::IdleConfig;
use crate::plan::MAX_QUERIES_PER_CALL;
use crate::plan::PlanOptions;
use crate::plan::{Answer, Query, TargetPlan};
use crate::source::{Outcome, Window};
use crate::store::{Resume, SeriesKey, Store};

/// Batches of one target read at once.
const BATCH_CONCURRENCY: usize = 4;

/// How far back a cycle may read (`limit`: `poll.max_backfill`), and from where a floor counts
/// as behind (`steady_from`: the lookback start less one interval).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub(super) limit: i64,
    /// The same for streamed batches: what the stream buffer still holds.
    pub(super) stream_limit: i64,
    pub(super) steady_from: i64,
}

/// One GetMetricData call (or one access-log read) of a cycle: a run of the target's
/// queries and the window it reads.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub(super) queries: std::ops::Range<usize>,
    pub(super) window: Window,
}

/// The calls of one target: each batch of the plan over the cycle's window, or, where a
/// batch's series have not counted everything since an earlier cycle (an outage, a failed
/// call), over a window reaching back to the oldest period not final, at most `max_backfill`
/// back. A catch-up window may hold more datapoints than one call returns: such a batch is
/// split. Also returns the periods some batch needed but could not reach: from the oldest,
/// up to the furthest limit (`max_backfill`, or for streamed batches what the stream buffer
/// still holds).
pub(super) fn plan_calls(
    plan: &TargetPlan,
    caught_up: Option<i64>,
    store: &Store,
    window: Window,
    bounds: Bounds,
) -> (Vec<Call>, Option<Lost>) {
    let Bounds {
        limit,
        stream_limit,
        steady_from,
    } = bounds;
    let mut calls = Vec::new();
    let mut lost: Option<Lost> = None;
    // Steady state: the last cycle completed and the window moved on by at most about the
    // interval, so the periods before this window were read for their last time then.
    let steady = caught_up.is_some_and(|k| k >= steady_from);
    for range in plan.batch_ranges() {
        let batch = &plan.queries[range.clone()];
        let answer = batch.first().map(Query::answer);
        let limit = if answer == Some(Answer::Stream) {
            stream_limit
        } else {
            limit
        };
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
                    lost = Some(lost.map_or(
                        Lost {
                            from: r.read_end,
                            until: limit,
                        },
                        |l| Lost {
                            from: l.from.min(r.read_end),
                            until: l.until.max(limit),
                        },
                    ));
                }
                w = window.reaching_back_to(r.floor.max(limit));
            }
        }
        // Access-log reads have no datapoint limit; GetMetricData calls do.
        let per_call = if answer == Some(Answer::Logs) {
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
    (calls, lost)
}

/// Periods `[from, until)` a catch-up could no longer read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lost {
    pub(super) from: i64,
    pub(super) until: i64,
}

/// The stages to leave out of this cycle (`poll.idle`): those without traffic for
/// `idle.after` that were read less than `idle.interval` ago. Also returns how many stages are
/// idle (left out or not). New stages count as having traffic now.
fn idle_stages(t: &mut Target, now: i64, idle: IdleConfig) -> (HashSet<StageId>, usize) {
    let (after, interval) = (idle.after.secs(), idle.interval.secs());
    let mut skip = HashSet::new();
    let mut idle_count = 0;
    let mut seen: HashSet<StageId> = HashSet::new();
    let mut previous: Option<&Query> = None;
    // Series of no API (Lambda functions) have no traffic of their own: never idle.
    for q in t.plan.queries.iter().filter(|q| q.labels.is_api()) {
        if previous.is_some_and(|p| same_stage(p, q)) {
            continue;
        }
        previous = Some(q);
        let stage = stage_of(q);
        if seen.contains(&stage) {
            continue;
        }
        let a = *t.activity.entry(stage.clone()).or_insert(Activity {
            traffic: now,
            read: i64::MIN,
        });
        if now - a.traffic >= after {
            idle_count += 1;
            if now.saturating_sub(a.read) < interval {
                skip.insert(stage.clone());
            }
        }
        seen.insert(stage);
    }
    t.activity.retain(|stage, _| seen.contains(stage));
    (skip, idle_count)
}

/// The longest a cycle waits for a running discovery to end before it goes on with what
/// discovery has read so far (a quarter of the interval when that is shorter).
const DISCOVERY_WAIT: Duration = Duration::from_secs(2);

/// Refreshes one target if due, then plans its calls. With `poll.idle`, idle stages that are
/// not due are left out, and every batch reads back to where its series' counting stands,
/// so a stage read after a pause counts everything since its last read.
#[allow(clippy::too_many_arguments)]
pub(super) async fn prepare_target(
    t: &mut Target,
    store: &Store,
    clock: &Arc<dyn Clock>,
    now: i64,
    interval: Duration,
    refresh: Duration,
    opts: &PlanOptions,
    window: Window,
    bounds: Bounds,
    idle: Option<IdleConfig>,
) -> Prepared {
    let discovered = match t
        .refresh(clock, refresh, opts, DISCOVERY_WAIT.min(interval / 4))
        .await
    {
        Ok(done) => done,
        Err(e) => {
            warn!(region = %t.region, error = %e, "keeping the last inventory");
            None
        }
    };
    if t.inventory.is_none() {
        return Prepared {
            ok: false,
            calls: Vec::new(),
            lost: None,
            plan: None,
            idle: 0,
            skipped: HashSet::new(),
            discovered,
        };
    }
    let (skip, idle_count) = match idle {
        Some(idle) => idle_stages(t, now, idle),
        None => (HashSet::new(), 0),
    };
    // Only when something is left out is the plan copied.
    let filtered = (!skip.is_empty()).then(|| {
        let mut previous: Option<(&Query, bool)> = None;
        TargetPlan {
            queries: t
                .plan
                .queries
                .iter()
                .filter(|q| {
                    // Reading the stream costs nothing: streamed queries are read every cycle.
                    if q.streamed {
                        return true;
                    }
                    let keep = match previous {
                        Some((p, keep)) if same_stage(p, q) => keep,
                        _ => !skip.contains(&stage_of(q)),
                    };
                    previous = Some((q, keep));
                    keep
                })
                .cloned()
                .collect(),
            ..t.plan.clone_empty()
        }
    });
    let plan = filtered.as_ref().unwrap_or(&t.plan);
    // A stage read after a pause is behind: no steady-state shortcut while any stage is idle.
    let caught_up = if idle_count > 0 { None } else { t.caught_up };
    let (calls, lost) = plan_calls(plan, caught_up, store, window, bounds);
    Prepared {
        ok: true,
        calls,
        lost,
        plan: filtered,
        idle: idle_count,
        skipped: skip,
        discovered,
    }
}

/// The answers to `calls` of a target whose queries are `plan`'s, a few calls at a time, as
/// they come: the poll loop ingests each answer before the next, so a cycle holds a few
/// answers at once, not all of them.
pub(super) fn answers<'a>(
    t: &'a Target,
    plan: &'a TargetPlan,
    calls: Vec<Call>,
) -> impl futures::Stream<Item = (Call, Result<Vec<Outcome>, String>)> + 'a {
    futures::stream::iter(calls)
        .map(move |call| {
            let source = Arc::clone(&t.source);
            let queries = plan.queries.get(call.queries.clone()).unwrap_or_default();
            async move {
                let result = source
                    .fetch(queries, call.window)
                    .await
                    .map_err(|e| e.message);
                (call, result)
            }
        })
        .buffer_unordered(BATCH_CONCURRENCY)
}

/// What a cycle does for one target: its calls, and what it knows before making them.
pub(super) struct Prepared {
    pub(super) ok: bool,
    pub(super) calls: Vec<Call>,
    /// The periods a catch-up could not reach (beyond `poll.max_backfill`, or for streamed
    /// series beyond what the stream buffer keeps).
    pub(super) lost: Option<Lost>,
    /// The plan the calls index into, when idle stages were left out (else the target's).
    pub(super) plan: Option<TargetPlan>,
    /// Stages without traffic for `poll.idle.after`.
    pub(super) idle: usize,
    /// The idle stages left out of this cycle.
    pub(super) skipped: HashSet<StageId>,
    /// A discovery that ended during this cycle's refresh.
    pub(super) discovered: Option<DiscoveryDone>,
}
