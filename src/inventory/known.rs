//! What discovery knows of a target between refreshes, and so what a refresh must read again.
//!
//! A refresh reads the listings in full and each API's stages (one call per API: stage
//! settings change without any deployment). The expensive reads, an API's integrations
//! (REST GetResources; v2 GetRoutes and GetIntegrations) and its stages' routes (ListMetrics),
//! run only when the stages show a deployment the last read did not see. AWS calls a
//! deployment "an immutable representation" of the API: the same deployment ids mean the same
//! deployed API. As a safety net, each API is read in full once per
//! `discovery.full_refresh_interval`, at a moment of its own within the interval (a hash of
//! its id), so the full re-reads of a large account are spread out instead of coming at once.
//!
//! Updates are applied API by API, each one whole, so a refresh still running already shows
//! what it has read ([`Known::progress`]); an API whose reads fail keeps what was known of it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    ApiFilter, Discovered, Integration, RawApi, RawStage, RouteMetrics, Throttle, UsagePlan,
    cloudwatch_rest_name, shard_of,
};
use crate::model::ApiType;

/// What discovery knows of one target. Shared by the refresh that updates it and the poll
/// loop that reads it; every lock is held only for a short, synchronous update.
#[derive(Debug)]
pub struct Known {
    state: std::sync::Mutex<State>,
    /// The account the target's credentials belong to, once resolved (a reload keeps it).
    account: std::sync::OnceLock<String>,
    /// The start of this target's discovery clock ([`Known::clock`]).
    origin: Instant,
}

impl Default for Known {
    fn default() -> Known {
        Known {
            state: std::sync::Mutex::new(State::default()),
            account: std::sync::OnceLock::new(),
            origin: Instant::now(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    apis: BTreeMap<String, KnownApi>,
    /// The ids of `apis` in the order of the last listings (REST first, then v2).
    order: Vec<String>,
    account_throttle: Option<Throttle>,
    usage_plans: Vec<UsagePlan>,
    /// Bumped by every change a snapshot would show.
    version: u64,
    /// APIs whose failures are in the self-metric now, with their type.
    reported: Vec<(String, ApiType)>,
}

#[derive(Debug)]
struct KnownApi {
    /// Stages `None` until first read; integrations and routes as last read.
    api: RawApi,
    /// Whether its integrations and routes are wanted (not only its stages, for the REST
    /// name join).
    wanted: bool,
    /// The deployments its integrations were read for; `None` until read.
    deployments: Option<BTreeSet<String>>,
    /// The (stage, deployment) pairs its routes were listed for.
    routes_for: Option<BTreeSet<(String, Option<String>)>>,
    /// When its next full read is due, on the discovery clock; `None` until first read.
    next_full: Option<u64>,
    /// Refreshes in a row whose reads of it failed, and the last error.
    failures: u32,
    error: String,
}

/// An API a refresh reads.
#[derive(Debug, Clone)]
pub(super) struct Need {
    pub(super) id: String,
    pub(super) api_type: ApiType,
    /// Its CloudWatch API dimension value (ListMetrics of its routes).
    pub(super) cloudwatch_key: String,
    /// Integrations and routes too, or its stages only.
    pub(super) wanted: bool,
}

/// What a refresh must read of an API after its stages.
#[derive(Debug, Clone, Default)]
pub(super) struct Due {
    /// Its integrations, for these deployments.
    pub(super) integrations: bool,
    deployments: BTreeSet<String>,
    /// The stages whose routes to list.
    pub(super) routes: Vec<String>,
    routes_for: BTreeSet<(String, Option<String>)>,
    /// A full re-read (the safety net, or the first read), and when the next one is due.
    full: bool,
    next_full: u64,
}

/// The deployments a set of stages serves: each stage's, and its canary's.
fn deployments(stages: &[RawStage]) -> BTreeSet<String> {
    stages
        .iter()
        .flat_map(|s| {
            [
                s.deployment_id.clone(),
                s.canary.as_ref().map(|c| c.deployment_id.clone()),
            ]
        })
        .flatten()
        .filter(|d| !d.is_empty())
        .collect()
}

/// REST and v2 APIs taken in turn: a REST API waits for GetResources' own, slower pace, and
/// meanwhile a v2 API can use the rest of the budget.
fn interleave(needs: Vec<Need>) -> Vec<Need> {
    let (rest, v2): (Vec<Need>, Vec<Need>) =
        needs.into_iter().partition(|n| n.api_type == ApiType::Rest);
    let mut out = Vec::with_capacity(rest.len() + v2.len());
    let (mut rest, mut v2) = (rest.into_iter(), v2.into_iter());
    loop {
        match (rest.next(), v2.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// `stages` with their routes: those just listed, else those last listed for the stage of the
/// same name.
fn with_routes(
    stages: Vec<RawStage>,
    old: Option<&[RawStage]>,
    mut listed: Vec<(String, Vec<RouteMetrics>)>,
) -> Vec<RawStage> {
    stages
        .into_iter()
        .map(|mut s| {
            if let Some(i) = listed.iter().position(|(name, _)| *name == s.name) {
                s.routes = listed.swap_remove(i).1;
            } else if let Some(o) = old.into_iter().flatten().find(|o| o.name == s.name) {
                s.routes = o.routes.clone();
            }
            s
        })
        .collect()
}

/// When the full re-read after one at `now` is due: `full` later, and after the first read of
/// an API between half of `full` and `full` later, by a hash of its id. The re-reads of APIs
/// first read together (a large account's first discovery) are so spread over half an
/// interval and stay spread, and none comes back soon after the first read.
fn next_full(id: &str, now: u64, full: Duration, first: bool) -> u64 {
    let full = full.as_secs().max(1);
    if !first {
        return now + full;
    }
    let half = full / 2;
    let shift = u64::from(shard_of(id, u32::try_from(half.max(1)).unwrap_or(u32::MAX)));
    now + half + shift
}

impl Known {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic mid-update of plain data; what is there is whole per API.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The target's account, once resolved.
    pub(super) fn account(&self) -> Option<&str> {
        self.account.get().map(String::as_str)
    }

    /// Remembers the target's account; returns it (the first one set wins).
    pub(super) fn set_account(&self, account: String) -> &str {
        self.account.get_or_init(|| account)
    }

    /// Seconds on this target's discovery clock (monotonic; paused with tokio's time in tests).
    pub(super) fn clock(&self) -> u64 {
        self.origin.elapsed().as_secs()
    }

    /// Takes complete listings: APIs no longer listed (or no longer needed) are forgotten,
    /// new ones are added unread, and the listed fields of the others are updated. Returns the
    /// APIs to read: those the filter wants, and REST APIs sharing a CloudWatch name with one
    /// of them (their stages tell which series CloudWatch merges).
    pub(super) fn merge_listing(&self, listed: Vec<RawApi>, filter: &ApiFilter) -> Vec<Need> {
        let wanted = |a: &RawApi| filter.wants(&a.id, &a.name, a.api_type, &a.tags);
        let wanted_rest_names: HashSet<String> = listed
            .iter()
            .filter(|a| a.api_type == ApiType::Rest && wanted(a))
            .map(|a| cloudwatch_rest_name(&a.name, &a.id))
            .collect();
        let mut needs = Vec::new();
        let mut state = self.state();
        let mut changed = false;
        let mut keep = HashSet::new();
        for api in listed {
            let cloudwatch_key = match api.api_type {
                ApiType::Rest => cloudwatch_rest_name(&api.name, &api.id),
                ApiType::Http | ApiType::Websocket => api.id.clone(),
            };
            let is_wanted = wanted(&api);
            let shares_a_name =
                api.api_type == ApiType::Rest && wanted_rest_names.contains(&cloudwatch_key);
            if !is_wanted && !shares_a_name {
                continue;
            }
            needs.push(Need {
                id: api.id.clone(),
                api_type: api.api_type,
                cloudwatch_key,
                wanted: is_wanted,
            });
            keep.insert(api.id.clone());
            match state.apis.get_mut(&api.id) {
                Some(k) => {
                    let listed_as_before = k.api.name == api.name
                        && k.api.tags == api.tags
                        && k.api.endpoint_type == api.endpoint_type
                        && k.wanted == is_wanted;
                    if !listed_as_before {
                        if k.api.name != api.name {
                            // A REST API's routes are keyed by its name in CloudWatch.
                            k.routes_for = None;
                        }
                        k.api.name = api.name;
                        k.api.tags = api.tags;
                        k.api.endpoint_type = api.endpoint_type;
                        k.wanted = is_wanted;
                        changed = true;
                    }
                }
                None => {
                    state.apis.insert(
                        api.id.clone(),
                        KnownApi {
                            api,
                            wanted: is_wanted,
                            deployments: None,
                            routes_for: None,
                            next_full: None,
                            failures: 0,
                            error: String::new(),
                        },
                    );
                }
            }
        }
        let before = state.apis.len();
        state.apis.retain(|id, _| keep.contains(id));
        state.order = needs.iter().map(|n| n.id.clone()).collect();
        if changed || state.apis.len() != before {
            state.version += 1;
        }
        interleave(needs)
    }

    /// Says what must be read of an API after its stages (just read, in `stages`): its
    /// integrations when its deployments changed, the routes of the stages whose deployment
    /// changed, everything when its full re-read is due. Nothing is applied yet: an API
    /// changes as a whole, in [`Known::apply`].
    pub(super) fn due(
        &self,
        need: &Need,
        stages: &[RawStage],
        filter: &ApiFilter,
        now: u64,
        full_refresh: Duration,
    ) -> Due {
        let state = self.state();
        let Some(k) = state.apis.get(&need.id) else {
            // Forgotten meanwhile (a newer listing, after a reload): nothing to read.
            return Due::default();
        };
        if !need.wanted {
            return Due::default();
        }
        let full = k.next_full.is_none_or(|at| now >= at);
        let deployments = deployments(stages);
        let routes_for: BTreeSet<(String, Option<String>)> = stages
            .iter()
            .filter(|s| filter.selects_stage(&s.name) && filter.wants_routes(s.detailed_metrics))
            .map(|s| (s.name.clone(), s.deployment_id.clone()))
            .collect();
        let routes = routes_for
            .iter()
            .filter(|r| full || !k.routes_for.as_ref().is_some_and(|seen| seen.contains(*r)))
            .map(|(stage, _)| stage.clone())
            .collect();
        Due {
            integrations: full || k.deployments.as_ref() != Some(&deployments),
            deployments,
            routes,
            routes_for,
            full,
            next_full: next_full(&need.id, now, full_refresh, k.next_full.is_none()),
        }
    }

    /// Takes an API read completely in this refresh: its `stages`, and what was due after
    /// them (`integrations` when they were, the `routes` of the stages they were due for).
    /// A stage whose routes were not listed again keeps those last listed for it.
    pub(super) fn apply(
        &self,
        id: &str,
        stages: Vec<RawStage>,
        due: Due,
        integrations: Option<Vec<Integration>>,
        routes: Vec<(String, Vec<RouteMetrics>)>,
    ) {
        let mut state = self.state();
        let Some(k) = state.apis.get_mut(id) else {
            return;
        };
        let stages = with_routes(stages, k.api.stages.as_deref(), routes);
        let mut changed = k.api.stages.as_ref() != Some(&stages);
        k.api.stages = Some(stages);
        k.failures = 0;
        k.error.clear();
        if let Some(integrations) = integrations {
            changed |= k.api.integrations != integrations;
            k.api.integrations = integrations;
            k.deployments = Some(due.deployments);
        }
        if k.wanted {
            k.routes_for = Some(due.routes_for);
        }
        if due.full {
            k.next_full = Some(due.next_full);
        }
        if changed {
            state.version += 1;
        }
    }

    /// Records a failed read of an API in this refresh: it keeps what was known of it, but
    /// for its `stages` when those were read (their settings are current; its integrations
    /// and routes stay as last read, and are due again next time).
    pub(super) fn failed(&self, id: &str, stages: Option<Vec<RawStage>>, error: String) {
        let mut state = self.state();
        let Some(k) = state.apis.get_mut(id) else {
            return;
        };
        k.failures += 1;
        k.error = error;
        let mut changed = false;
        if let Some(stages) = stages {
            let stages = with_routes(stages, k.api.stages.as_deref(), Vec::new());
            changed = k.api.stages.as_ref() != Some(&stages);
            k.api.stages = Some(stages);
        }
        if changed {
            state.version += 1;
        }
    }

    pub(super) fn set_account_throttle(&self, throttle: Option<Throttle>) {
        let mut state = self.state();
        if state.account_throttle != throttle {
            state.account_throttle = throttle;
            state.version += 1;
        }
    }

    pub(super) fn set_usage_plans(&self, plans: Vec<UsagePlan>) {
        let mut state = self.state();
        if state.usage_plans != plans {
            state.usage_plans = plans;
            state.version += 1;
        }
    }

    /// APIs whose reads failed in the last refresh: id, type, refreshes in a row, name, error.
    pub(super) fn failing(&self) -> Vec<(String, ApiType, u32, String, String)> {
        self.state()
            .apis
            .iter()
            .filter(|(_, k)| k.failures > 0)
            .map(|(id, k)| {
                (
                    id.clone(),
                    k.api.api_type,
                    k.failures,
                    k.api.name.clone(),
                    k.error.clone(),
                )
            })
            .collect()
    }

    /// Records the APIs now in the failure self-metric; returns those that were and are not.
    pub(super) fn take_reported(&self, now: &[(String, ApiType, u32)]) -> Vec<(String, ApiType)> {
        let mut state = self.state();
        let previous = std::mem::take(&mut state.reported);
        state.reported = now.iter().map(|(id, t, _)| (id.clone(), *t)).collect();
        previous
            .into_iter()
            .filter(|(id, _)| !now.iter().any(|(n, _, _)| n == id))
            .collect()
    }

    /// What is known now. An API whose stages were never read is left out (it would show as
    /// an API without stages), and so is every REST API sharing a CloudWatch name with one:
    /// until all their stages are known, which of their series CloudWatch merges is not.
    pub fn snapshot(&self) -> Discovered {
        let state = self.state();
        let unread_names: HashSet<String> = state
            .apis
            .values()
            .filter(|k| k.api.api_type == ApiType::Rest && k.api.stages.is_none())
            .map(|k| cloudwatch_rest_name(&k.api.name, &k.api.id))
            .collect();
        Discovered {
            apis: state
                .order
                .iter()
                .filter_map(|id| state.apis.get(id))
                .filter(|k| k.api.stages.is_some())
                .filter(|k| {
                    k.api.api_type != ApiType::Rest
                        || !unread_names.contains(&cloudwatch_rest_name(&k.api.name, &k.api.id))
                })
                .map(|k| k.api.clone())
                .collect(),
            account_throttle: state.account_throttle,
            usage_plans: state.usage_plans.clone(),
            linked: Vec::new(),
        }
    }

    /// What is known now, when it changed since version `seen` (which it then updates).
    pub fn progress(&self, seen: &mut u64) -> Option<Discovered> {
        let version = self.state().version;
        if version == *seen {
            return None;
        }
        *seen = version;
        Some(self.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiSelection;

    fn filter() -> ApiFilter {
        ApiFilter::new(&ApiSelection::default())
    }

    fn listed(id: &str, name: &str, t: ApiType) -> RawApi {
        RawApi {
            id: id.into(),
            name: name.into(),
            api_type: t,
            endpoint_type: "REGIONAL".into(),
            tags: BTreeMap::new(),
            stages: None,
            integrations: vec![],
        }
    }

    fn stage(name: &str, deployment: &str, detailed: bool) -> RawStage {
        RawStage {
            name: name.into(),
            deployment_id: Some(deployment.into()),
            detailed_metrics: detailed,
            cache_enabled: false,
            throttle: None,
            route_throttles: vec![],
            access_log_group: None,
            access_log_stream: None,
            access_log_format: None,
            routes: vec![],
            canary: None,
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn only_a_new_deployment_makes_integrations_and_routes_due() {
        let known = Known::default();
        let needs = known.merge_listing(vec![listed("a1", "a", ApiType::Http)], &filter());
        let need = &needs[0];
        let read = |stages: Vec<RawStage>, t: u64| {
            let due = known.due(need, &stages, &filter(), t, DAY);
            let (integrations, routes) = (due.integrations, due.routes.clone());
            let listed = routes.iter().map(|r| (r.clone(), vec![])).collect();
            known.apply(
                &need.id,
                stages,
                due.clone(),
                Some(vec![]).filter(|_| integrations),
                listed,
            );
            (integrations, routes, due.full)
        };
        let (integrations, routes, full) = read(vec![stage("prod", "d1", true)], 0);
        assert!(integrations && full);
        assert_eq!(routes, ["prod"]);

        // The same deployment: nothing more to read.
        let (integrations, routes, full) = read(vec![stage("prod", "d1", true)], 60);
        assert!(!integrations && routes.is_empty() && !full);

        // A new stage on the same deployment: its routes only.
        let (integrations, routes, _) = read(
            vec![stage("prod", "d1", true), stage("beta", "d1", true)],
            120,
        );
        assert!(!integrations);
        assert_eq!(routes, ["beta"]);

        // A new deployment of one stage: integrations, and that stage's routes.
        let (integrations, routes, _) = read(
            vec![stage("prod", "d2", true), stage("beta", "d1", true)],
            180,
        );
        assert!(integrations);
        assert_eq!(routes, ["prod"]);
    }

    #[test]
    fn full_re_reads_come_once_per_interval_at_each_apis_own_moment() {
        let known = Known::default();
        let apis: Vec<RawApi> = (0..200)
            .map(|i| listed(&format!("api{i}"), "n", ApiType::Http))
            .collect();
        let needs = known.merge_listing(apis, &filter());
        let mut full_at: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        // Every 10 minutes for three days.
        for t in (0..3 * 86_400).step_by(600) {
            for need in &needs {
                let stages = vec![stage("prod", "d1", false)];
                let due = known.due(need, &stages, &filter(), t, DAY);
                if due.full {
                    full_at.entry(need.id.clone()).or_default().push(t);
                }
                known.apply(&need.id, stages, due, Some(vec![]), vec![]);
            }
        }
        // The first read, then one re-read a day each, the first within the second half of
        // the first day.
        for t in full_at.values() {
            assert!(
                t[0] == 0 && (43_200..=86_400).contains(&t[1]) && (3..=4).contains(&t.len()),
                "{t:?}"
            );
            for w in t[1..].windows(2) {
                assert_eq!(w[1] - w[0], 86_400, "{t:?}");
            }
        }
        assert_eq!(full_at.len(), 200);
        // Spread out: no 10-minute refresh re-reads more than a few of the 200.
        let mut per_refresh: BTreeMap<u64, usize> = BTreeMap::new();
        for t in full_at.values().flat_map(|t| &t[1..]) {
            *per_refresh.entry(*t).or_default() += 1;
        }
        assert!(per_refresh.values().all(|n| *n <= 10), "{per_refresh:?}");
    }

    #[test]
    fn a_failed_read_keeps_the_api_and_unread_rest_name_groups_wait() {
        let known = Known::default();
        let needs = known.merge_listing(
            vec![
                listed("r1", "shop", ApiType::Rest),
                listed("r2", "shop", ApiType::Rest),
                listed("h1", "h", ApiType::Http),
            ],
            &filter(),
        );
        let mut seen = 0;
        let need = |id: &str| needs.iter().find(|n| n.id == id).unwrap().clone();
        let read = |id: &str, deployment: &str| {
            let stages = vec![stage("prod", deployment, false)];
            let due = known.due(&need(id), &stages, &filter(), 0, DAY);
            known.apply(id, stages, due, Some(vec![]), vec![]);
        };
        read("r1", "d1");
        // r2 shares r1's CloudWatch name and is unread: neither shows yet.
        let shown = known.progress(&mut seen).unwrap();
        assert!(shown.apis.is_empty(), "{:?}", shown.apis);
        read("r2", "d9");
        assert_eq!(known.progress(&mut seen).unwrap().apis.len(), 2);
        assert!(known.progress(&mut seen).is_none(), "nothing changed");

        // h1 fails twice: it is named, and keeps nothing it never had.
        known.failed("h1", None, "AccessDenied".into());
        known.failed("h1", None, "AccessDenied".into());
        let failing = known.failing();
        assert_eq!(failing.len(), 1);
        assert_eq!((failing[0].0.as_str(), failing[0].2), ("h1", 2));
        // Listed again without h1: it is forgotten, and so is its failure.
        known.merge_listing(
            vec![
                listed("r1", "shop", ApiType::Rest),
                listed("r2", "shop", ApiType::Rest),
            ],
            &filter(),
        );
        assert!(known.failing().is_empty());
        assert_eq!(known.snapshot().apis.len(), 2);
    }
}
