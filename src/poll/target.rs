//! One target (an account in a region) and what the loop keeps of it: its discovery, its
//! inventory and plan, refreshed on their own interval, and where its counting stands.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::inventory::{self, ApiFilter, Discovered, Discovery, TargetInventory};
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
    pub(super) plan: TargetPlan,
    /// The lookback start of this target's last complete cycle: while cycles complete on
    /// time, every series' floor is there and no catch-up is needed.
    pub(super) caught_up: Option<i64>,
    /// Periods before this were already counted in `periods_lost_total`.
    pub(super) lost_through: i64,
    /// When each stage last had traffic and was last read (`poll.idle`).
    pub(super) activity: HashMap<StageId, Activity>,
}

/// A stage (or an API without stages) of a target: (api id, stage).
pub(super) type StageId = (String, Option<String>);

/// The stage of a query.
pub(super) fn stage_of(q: &crate::plan::Query) -> StageId {
    (q.labels.api_id.clone(), q.labels.stage.clone())
}

/// Whether two queries belong to one stage. A stage's queries sit next to each other in a
/// plan, so comparing with the previous query spares a [`StageId`] per query.
pub(super) fn same_stage(a: &crate::plan::Query, b: &crate::plan::Query) -> bool {
    a.labels.api_id == b.labels.api_id && a.labels.stage == b.labels.stage
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
            plan: TargetPlan::default(),
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
        self.account_id = old.account_id;
        self.caught_up = old.caught_up;
        self.lost_through = old.lost_through;
        self.activity = old.activity;
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
