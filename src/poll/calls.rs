//! The calls of one target in a cycle: each batch over the cycle's window in steady state, or
//! a catch-up reaching back after an outage, split to stay under GetMetricData's limits.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tracing::warn;

use super::Target;
use crate::plan::MAX_QUERIES_PER_CALL;
use crate::plan::PlanOptions;
use crate::source::{Outcome, Window};
use crate::store::{Resume, SeriesKey, Store};

/// Batches of one target read at once.
const BATCH_CONCURRENCY: usize = 4;

/// How far back a cycle may read (`limit`: `poll.max_backfill`), and from where a floor counts
/// as behind (`steady_from`: the lookback start less one interval).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub(super) limit: i64,
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
/// split. Also returns the oldest period any batch needed but could not reach.
pub(super) fn plan_calls(
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
pub(super) async fn fetch_target(
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

/// Per-target results of the fetch phase.
pub(super) struct Fetched {
    pub(super) ok: bool,
    pub(super) calls: Vec<(Call, Result<Vec<Outcome>, String>)>,
    /// The oldest period a catch-up could not reach (beyond `poll.max_backfill`).
    pub(super) lost_from: Option<i64>,
}
