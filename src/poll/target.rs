//! One target (an account in a region) and what the loop keeps of it: its discovery, its
//! inventory and plan, refreshed on their own interval, and where its counting stands.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::inventory::{self, ApiFilter, Discovered, Discovery, DiscoveryError, TargetInventory};
use crate::plan::{self, PlanOptions, TargetPlan};
use crate::source::MetricSource;

/// One account in one region, and what the loop knows of it.
pub struct Target {
    /// Who and where this target reads (credentials and region): a reload hands the state of
    /// the old target with the same key to the new one.
    pub key: String,
    pub region: String,
    pub filter: ApiFilter,
    pub discovery: Arc<dyn Discovery>,
    pub source: Arc<dyn MetricSource>,
    pub(super) account_id: Option<String>,
    /// The last successful discovery, kept so a reload can re-filter it without AWS.
    pub(super) found: Option<Arc<Discovered>>,
    pub(super) inventory: Option<TargetInventory>,
    pub(super) refreshed_at: Option<i64>,
    /// The discovery running in the background, if any: a paced discovery of a large
    /// account takes minutes, and the poll cycle must not wait for it.
    running: Option<Running>,
    /// The version of the running discovery's progress last taken.
    seen: u64,
    pub(super) plan: TargetPlan,
    /// Counts the plan's changes: the poll loop drops series that left only after one.
    pub(super) plan_version: u64,
    /// The lookback start of this target's last complete cycle: while cycles complete on
    /// time, every series' floor is there and no catch-up is needed.
    pub(super) caught_up: Option<i64>,
    /// Periods before this were already counted in `periods_lost_total`.
    pub(super) lost_through: i64,
    /// When each stage last had traffic and was last read (`poll.idle`).
    pub(super) activity: HashMap<StageId, Activity>,
}

/// A discovery running in the background; dropping it (a reload, a target removed) stops it.
struct Running(JoinHandle<Finished>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a discovery run in the background hands back.
struct Finished {
    result: Result<Discovered, DiscoveryError>,
    took: Duration,
    /// When it ended, in Unix seconds.
    at: i64,
}

/// A discovery that ended: how long it took, and when it ended (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiscoveryDone {
    pub took: Duration,
    pub at: i64,
}

/// A stage (or an API without stages) of a target: (account, api id, api name, stage). The
/// account tells a monitoring account's sources apart; the name, REST APIs that ListMetrics
/// alone found (they have no id).
pub(super) type StageId = (String, String, String, Option<String>);

/// The stage of a query.
pub(super) fn stage_of(q: &crate::plan::Query) -> StageId {
    let l = &q.labels;
    (
        l.account_id.clone(),
        l.api_id.clone(),
        l.api_name.clone(),
        l.stage.clone(),
    )
}

/// Whether two queries belong to one stage. A stage's queries sit next to each other in a
/// plan, so comparing with the previous query spares a [`StageId`] per query.
pub(super) fn same_stage(a: &crate::plan::Query, b: &crate::plan::Query) -> bool {
    let (a, b) = (&a.labels, &b.labels);
    a.api_id == b.api_id
        && a.stage == b.stage
        && a.api_name == b.api_name
        && a.account_id == b.account_id
}

/// What `poll.idle` needs to know of a stage, in Unix seconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Activity {
    /// The last cycle that read traffic for it (first seen: counts as traffic).
    pub(super) traffic: i64,
    /// The last cycle that read it completely.
    pub(super) read: i64,
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
            running: None,
            seen: 0,
            plan: TargetPlan::default(),
            plan_version: 0,
            caught_up: None,
            lost_through: i64::MIN,
            activity: HashMap::new(),
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
        // The old discovery stops (dropping `old` aborts it); the new one starts at the next
        // cycle, from what the old one had read (kept by the discovery, per target).
        self.account_id = old.account_id;
        self.caught_up = old.caught_up;
        self.lost_through = old.lost_through;
        self.activity = old.activity;
        if let (Some(account), Some(found)) = (&self.account_id, old.found) {
            let inv = inventory::build(account, &self.region, &found, &self.filter);
            self.plan = plan::plan_target(&inv, opts);
            self.plan_version += 1;
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

    /// Resolves the account, starts a discovery in the background when one is due, and takes
    /// what discovery has read: its result when it ends within `wait`, else what it has read
    /// so far. A failed discovery keeps the last inventory (see [`Target::inventory`]), says
    /// why, and is tried again at the next cycle. Returns how long a discovery that ended took
    /// and when it ended.
    pub async fn refresh(
        &mut self,
        clock: &Arc<dyn Clock>,
        every: Duration,
        opts: &PlanOptions,
        wait: Duration,
    ) -> Result<Option<DiscoveryDone>, String> {
        if self.account_id.is_none() {
            let id = self
                .discovery
                .account_id()
                .await
                .map_err(|e| format!("cannot resolve the AWS account: {e}"))?;
            self.account_id = Some(id);
        }
        let now = clock.now();
        let due = self
            .refreshed_at
            .is_none_or(|at| now - at >= every.as_secs() as i64);
        if self.running.is_none() && due {
            let discovery = Arc::clone(&self.discovery);
            let filter = self.filter.clone();
            let clock = Arc::clone(clock);
            self.running = Some(Running(tokio::spawn(async move {
                let started = tokio::time::Instant::now();
                let result = discovery.discover(&filter).await;
                Finished {
                    result,
                    took: started.elapsed(),
                    at: clock.now(),
                }
            })));
            self.refreshed_at = Some(now);
        }
        let Some(running) = self.running.as_mut() else {
            return Ok(None);
        };
        let finished = match tokio::time::timeout(wait, &mut running.0).await {
            Err(_) => {
                // Still running: take what it has read so far.
                if let Some(found) = self.discovery.progress(&mut self.seen) {
                    self.apply(found, opts);
                }
                return Ok(None);
            }
            Ok(joined) => {
                self.running = None;
                match joined {
                    Ok(finished) => finished,
                    // A panic in discovery is a bug: end the poll loop with it, so the
                    // process exits and is restarted rather than polling a frozen inventory.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(e) => return Err(format!("discovery was cancelled: {e}")),
                }
            }
        };
        match finished.result {
            Ok(found) => {
                self.apply(found, opts);
                Ok(Some(DiscoveryDone {
                    took: finished.took,
                    at: finished.at,
                }))
            }
            Err(e) => {
                // Try again at the next cycle rather than after a whole refresh interval.
                self.refreshed_at = None;
                Err(format!("discovery failed: {e}"))
            }
        }
    }

    /// Takes a discovery's result: the inventory and plan follow it when it changed.
    fn apply(&mut self, found: Discovered, opts: &PlanOptions) {
        let account = self.account_id.clone().unwrap_or_default();
        let inv = inventory::build(&account, &self.region, &found, &self.filter);
        self.found = Some(Arc::new(found));
        if self.inventory.as_ref() == Some(&inv) {
            return;
        }
        for c in &inv.conflicts {
            warn!(
                account_id = %account, region = %self.region, api_ids = %c.api_ids.join(","),
                cloudwatch_name = %c.cloudwatch_name,
                "REST APIs share one CloudWatch ApiName; CloudWatch merges their metrics, so the shared series are not exported"
            );
        }
        info!(account_id = %account, region = %self.region, apis = inv.apis.len(), "inventory updated");
        self.plan = plan::plan_target(&inv, opts);
        self.plan_version += 1;
        info!(account_id = %account, region = %self.region, queries = self.plan.queries.len(), calls = self.plan.calls(), "plan updated");
        self.inventory = Some(inv);
    }
}
