//! What APIs and stages exist, per target (one account in one region).
//!
//! Discovery (AWS calls, behind the [`Discovery`] trait) returns raw facts; [`build`] is the
//! pure part that filters them and joins REST APIs to the names CloudWatch keys them by.
//! Discovery spends the account's API Gateway management quota, shared with the account's own
//! deployments: its calls are paced by a budget ([`crate::ratelimit::Budget`]) and a refresh
//! reads again only what a new deployment may have changed ([`Known`]).

mod discovery;
mod http_websocket;
mod integrations;
mod known;
mod monitoring;
mod pages;
mod rest;
mod rest_names;
mod routes;
mod usage_plans;

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::config::{ApiSelection, DetailedMetrics, Pattern, ShardConfig, StageSelection};
use crate::model::{ApiType, SeriesLabels};

pub use crate::model::RouteKey;
pub use discovery::{AwsDiscovery, DiscoveryContext, Pace};
pub use integrations::{BackendType, Integration, is_function_name};
pub use known::Known;
pub use monitoring::{
    AwsSources, LIST_METRICS_PER_SECOND, LinkedAccounts, MetricsDiscovery, MonitoringDiscovery,
    Role, SourceSpec, Sources, apis_of_metrics, link_account, linked_accounts,
};
pub use pages::PageTokens;
pub use rest_names::cloudwatch_rest_name;

/// A throttle limit: steady-state requests per second and burst size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub rate: f64,
    pub burst: f64,
}

/// What one discovery of a target found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Discovered {
    pub apis: Vec<RawApi>,
    /// The account's regional throttle (GetAccount), shared by every API of the region.
    pub account_throttle: Option<Throttle>,
    /// REST API usage plans (GetUsagePlans).
    pub usage_plans: Vec<UsagePlan>,
    /// The source accounts a monitoring account reads (`source_accounts`), each as its last
    /// successful discovery found it.
    pub linked: Vec<LinkedFound>,
}

/// How a source account's APIs are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SourceDiscovery {
    /// API Gateway reads with a read-only role in the account: the full inventory.
    Role,
    /// The monitoring account's ListMetrics alone: APIs and stages (REST by name, HTTP and
    /// WebSocket by id) and routes with detailed metrics; no REST API id, v2 API name, tags,
    /// limits, timeouts, integrations, access log settings or canaries.
    Metrics,
}

impl SourceDiscovery {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceDiscovery::Role => "role",
            SourceDiscovery::Metrics => "metrics",
        }
    }
}

/// One source account of a monitoring account, as discovery last found it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedFound {
    pub account_id: String,
    pub mode: SourceDiscovery,
    /// Its last successful discovery (empty until one succeeds).
    pub found: Discovered,
    /// Why its latest discovery failed, while it does: it then keeps `found`.
    pub error: Option<String>,
}

/// A usage plan: the throttle and quota every API key of the plan gets on its API stages.
#[derive(Debug, Clone, PartialEq)]
pub struct UsagePlan {
    pub id: String,
    pub name: String,
    pub throttle: Option<Throttle>,
    /// Requests per `DAY`, `WEEK` or `MONTH`.
    pub quota: Option<(f64, String)>,
    /// (REST API id, stage name).
    pub api_stages: Vec<(String, String)>,
}

/// An API as discovery found it, before filtering.
#[derive(Debug, Clone, PartialEq)]
pub struct RawApi {
    pub id: String,
    pub name: String,
    pub api_type: ApiType,
    /// `EDGE`, `REGIONAL`, `PRIVATE` for REST; `HTTP`/`WEBSOCKET` APIs are always regional.
    pub endpoint_type: String,
    pub tags: BTreeMap<String, String>,
    /// `None` when discovery did not need to fetch them (API not selected, or `stages: []`).
    pub stages: Option<Vec<RawStage>>,
    /// What each method or route integrates with, and its timeout.
    pub integrations: Vec<Integration>,
}

/// A stage as discovery found it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawStage {
    pub name: String,
    /// The deployment the stage serves: what tells a refresh whether its integrations and
    /// routes may have changed.
    pub deployment_id: Option<String>,
    pub detailed_metrics: bool,
    pub cache_enabled: bool,
    /// The stage's default throttle (REST `*/*` method settings, v2 default route settings).
    pub throttle: Option<Throttle>,
    /// Per-method or per-route throttle overrides.
    pub route_throttles: Vec<(RouteKey, Throttle)>,
    /// The CloudWatch Logs group of the stage's access logs, if it writes them there.
    pub access_log_group: Option<String>,
    /// The Firehose delivery stream of the stage's access logs, if it writes them there
    /// (REST only: `amazon-apigateway-…`).
    pub access_log_stream: Option<String>,
    /// The stage's access log format (`check-config` says whether it carries the fields
    /// the exporter counts by).
    pub access_log_format: Option<String>,
    /// Methods or routes with detailed metrics, as ListMetrics found them.
    pub routes: Vec<RouteMetrics>,
    /// A REST stage's canary release, while one is configured.
    pub canary: Option<Canary>,
}

impl RawStage {
    /// A stage as a monitoring account's ListMetrics alone shows it: its name, whether it has
    /// route-level metrics and a cache, its routes; nothing of API Gateway's configuration.
    pub fn listed(
        name: String,
        detailed: bool,
        cache: bool,
        routes: Vec<RouteMetrics>,
    ) -> RawStage {
        RawStage {
            name,
            deployment_id: None,
            detailed_metrics: detailed,
            cache_enabled: cache,
            throttle: None,
            route_throttles: Vec::new(),
            access_log_group: None,
            access_log_stream: None,
            access_log_format: None,
            canary: None,
            routes,
        }
    }
}

/// A REST stage's canary settings (GetStages `canarySettings`): a share of the stage's
/// requests goes to another deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    /// The share of requests the canary serves, 0 to 100.
    pub percent: f64,
    pub deployment_id: String,
    pub use_stage_cache: bool,
}

/// A method or route that CloudWatch publishes detailed metrics for: its dimensions beyond
/// the API and stage ones (Method and Resource, or Route: AWS documents both) and the
/// metric names it has. Discovered, not assumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMetrics {
    pub key: RouteKey,
    pub dimensions: Vec<(String, String)>,
    pub metrics: Vec<String>,
}

/// The log group name of an access log destination ARN
/// (`arn:aws:logs:<region>:<account>:log-group:<name>`, maybe with a trailing `:*`);
/// `None` for other destinations (Firehose).
pub fn log_group_of(destination_arn: &str) -> Option<String> {
    let (_, rest) = destination_arn.split_once(":log-group:")?;
    let name = rest.strip_suffix(":*").unwrap_or(rest);
    (destination_arn.starts_with("arn:") && destination_arn.contains(":logs:") && !name.is_empty())
        .then(|| name.to_string())
}

/// The Firehose delivery stream name of an access log destination ARN
/// (`arn:aws:firehose:<region>:<account>:deliverystream/<name>`); `None` for others.
pub fn delivery_stream_of(destination_arn: &str) -> Option<String> {
    let (_, name) = destination_arn.split_once(":deliverystream/")?;
    (destination_arn.starts_with("arn:")
        && destination_arn.contains(":firehose:")
        && !name.is_empty())
    .then(|| name.to_string())
}

/// Where a stage's access logs go, and their format.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct AccessLog {
    pub(super) group: Option<String>,
    pub(super) stream: Option<String>,
    pub(super) format: Option<String>,
}

/// The log group or delivery stream and the format of a stage's access log settings
/// (destination ARN, format), as either SDK gives them.
pub(super) fn access_log(settings: Option<(Option<&str>, Option<&str>)>) -> AccessLog {
    let (arn, format) = settings.unwrap_or_default();
    AccessLog {
        group: arn.and_then(log_group_of),
        stream: arn.and_then(delivery_stream_of),
        format: format.map(str::to_string),
    }
}

/// An exported API with its selected stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Api {
    pub id: String,
    pub name: String,
    pub api_type: ApiType,
    pub endpoint_type: String,
    pub tags: BTreeMap<String, String>,
    /// The value of the CloudWatch API dimension: the sanitized name for REST, the id otherwise.
    pub cloudwatch_key: String,
    /// Selected stages. Empty means API-level series only.
    pub stages: Vec<Stage>,
    /// API-level series cannot be attributed (another REST API shares the CloudWatch name).
    pub api_level_ambiguous: bool,
    /// What each method or route integrates with, and its timeout.
    pub integrations: Vec<Integration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub detailed_metrics: bool,
    pub cache_enabled: bool,
    /// Another REST API with the same CloudWatch name has a stage of this name too, so
    /// CloudWatch merges their series: we export none of them rather than a wrong one.
    pub ambiguous: bool,
    pub throttle: Option<Throttle>,
    pub route_throttles: Vec<(RouteKey, Throttle)>,
    pub access_log_group: Option<String>,
    pub access_log_stream: Option<String>,
    pub access_log_format: Option<String>,
    pub routes: Vec<RouteMetrics>,
    pub canary: Option<Canary>,
}

/// REST APIs that CloudWatch cannot tell apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameConflict {
    pub cloudwatch_name: String,
    pub api_ids: Vec<String>,
    /// Stage names present in more than one of them (`None`: the API-level series).
    pub stages: Vec<Option<String>>,
}

/// The inventory of one target.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetInventory {
    pub account_id: String,
    pub region: String,
    pub apis: Vec<Api>,
    pub conflicts: Vec<NameConflict>,
    pub account_throttle: Option<Throttle>,
    /// Usage plans that cover an exported stage.
    pub usage_plans: Vec<UsagePlan>,
    /// The source accounts this monitoring account reads, each an inventory of its own.
    pub linked: Vec<LinkedInventory>,
}

/// The inventory of one source account of a monitoring account.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedInventory {
    pub mode: SourceDiscovery,
    pub inventory: TargetInventory,
    /// Why its latest discovery failed, while it does.
    pub error: Option<String>,
}

impl TargetInventory {
    /// This inventory and those of its source accounts: every account whose series it makes.
    pub fn accounts(&self) -> impl Iterator<Item = &TargetInventory> {
        std::iter::once(self).chain(self.linked.iter().map(|l| &l.inventory))
    }

    /// The contract's labels of a series of `api` in this target (stage-level when `stage`).
    pub fn labels(&self, api: &Api, stage: Option<&str>) -> SeriesLabels {
        SeriesLabels {
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            api_id: api.id.clone(),
            api_name: api.name.clone(),
            api_type: api.api_type,
            stage: stage.map(str::to_string),
            route: None,
            cause: None,
            function: None,
            receiver: None,
        }
    }

    /// APIs with at least one series dropped because of a name conflict.
    pub fn conflicted_apis(&self) -> usize {
        self.apis
            .iter()
            .filter(|a| a.api_level_ambiguous || a.stages.iter().any(|s| s.ambiguous))
            .count()
    }
}

/// The API selection of one target, with its regexes compiled.
#[derive(Debug, Clone)]
pub struct ApiFilter {
    types: Vec<ApiType>,
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    tags: BTreeMap<String, String>,
    stages: StageSelection,
    shard: Option<ShardConfig>,
    detailed: DetailedMetrics,
}

/// The shard an API id belongs to: FNV-1a of the id, modulo `total`. Stable across
/// processes, versions and machines, which is what lets replicas split the work.
pub fn shard_of(api_id: &str, total: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in api_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(total.max(1))) as u32
}

impl ApiFilter {
    /// The filter of a selection (its regexes were compiled when the config was parsed).
    pub fn new(sel: &ApiSelection) -> ApiFilter {
        ApiFilter {
            types: sel.types.clone(),
            include: sel.include.clone(),
            exclude: sel.exclude.clone(),
            tags: sel.tags.clone(),
            stages: sel.stages.clone(),
            shard: None,
            detailed: sel.detailed_metrics,
        }
    }

    /// Whether this replica exports the account-level series (the account's throttle
    /// limits): without sharding, or as shard 0.
    pub fn owns_account(&self) -> bool {
        self.shard.is_none_or(|s| s.index() == 0)
    }

    /// Keeps only the APIs of one shard.
    pub fn with_shard(mut self, shard: Option<ShardConfig>) -> ApiFilter {
        self.shard = shard;
        self
    }

    pub fn wants_type(&self, api_type: ApiType) -> bool {
        self.types.contains(&api_type)
    }

    /// Whether an API is exported: its type is selected, a regex of `include` (if any) matches
    /// its name or id, none of `exclude` does, and it carries every tag of `tags`.
    pub fn wants(
        &self,
        id: &str,
        name: &str,
        api_type: ApiType,
        tags: &BTreeMap<String, String>,
    ) -> bool {
        let matches = |r: &Pattern| r.is_match(name) || r.is_match(id);
        self.wants_type(api_type)
            && (self.include.is_empty() || self.include.iter().any(matches))
            && !self.exclude.iter().any(matches)
            && self.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
            && self.shard.is_none_or(|s| {
                // A REST API found through ListMetrics alone has no id: its name is its key.
                let key = if id.is_empty() { name } else { id };
                shard_of(key, s.total()) == s.index()
            })
    }

    /// Whether discovery must call GetStages at all (`stages: []` means API-level only).
    pub fn needs_stages(&self) -> bool {
        self.stages != StageSelection::Only(Vec::new())
    }

    /// Whether to look for route-level metrics of a stage: `on` always, `auto` where the
    /// stage has detailed metrics enabled, `off` never.
    pub fn wants_routes(&self, stage_detailed: bool) -> bool {
        match self.detailed {
            DetailedMetrics::On => true,
            DetailedMetrics::Auto => stage_detailed,
            DetailedMetrics::Off => false,
        }
    }

    pub fn selects_stage(&self, name: &str) -> bool {
        self.stages.selects(name)
    }
}

/// A discovery failure. Displayed in logs; never contains credentials.
#[derive(Debug, thiserror::Error)]
#[error("{service} {operation}: {message}")]
pub struct DiscoveryError {
    pub service: &'static str,
    pub operation: &'static str,
    pub message: String,
}

/// Where inventories come from: API Gateway, or the demo.
#[async_trait]
pub trait Discovery: Send + Sync {
    /// The account the target's credentials belong to.
    async fn account_id(&self) -> Result<String, DiscoveryError>;
    /// Every API of the selected types. Stages are fetched for the APIs the filter wants and
    /// for REST APIs that share a CloudWatch name with one of them (to detect conflicts).
    async fn discover(&self, filter: &ApiFilter) -> Result<Discovered, DiscoveryError>;

    /// While [`Discovery::discover`] runs: what it has read so far, when that changed since
    /// version `seen` (which it then updates). Each API in it is whole; `None` where the
    /// discovery has no such view.
    fn progress(&self, _seen: &mut u64) -> Option<Discovered> {
        None
    }
}

/// Filters raw APIs into the exported inventory and marks what CloudWatch cannot attribute.
pub fn build(
    account_id: &str,
    region: &str,
    found: &Discovered,
    filter: &ApiFilter,
) -> TargetInventory {
    let raw = &found.apis;
    let conflicts = rest_names::conflicts(raw);
    let mut apis: Vec<Api> = raw
        .iter()
        .filter(|r| filter.wants(&r.id, &r.name, r.api_type, &r.tags))
        .map(|r| {
            let cloudwatch_key = match r.api_type {
                ApiType::Rest => cloudwatch_rest_name(&r.name, &r.id),
                ApiType::Http | ApiType::Websocket => r.id.clone(),
            };
            let conflict = conflicts.iter().find(|c| c.api_ids.contains(&r.id));
            let shared = |stage: Option<&str>| {
                conflict.is_some_and(|c| c.stages.iter().any(|s| s.as_deref() == stage))
            };
            let mut stages: Vec<Stage> = r
                .stages
                .iter()
                .flatten()
                .filter(|s| filter.selects_stage(&s.name))
                .map(|s| Stage {
                    name: s.name.clone(),
                    detailed_metrics: s.detailed_metrics,
                    cache_enabled: s.cache_enabled,
                    ambiguous: shared(Some(&s.name)),
                    throttle: s.throttle,
                    route_throttles: s.route_throttles.clone(),
                    access_log_group: s.access_log_group.clone(),
                    access_log_stream: s.access_log_stream.clone(),
                    access_log_format: s.access_log_format.clone(),
                    canary: s.canary.clone(),
                    routes: s.routes.clone(),
                })
                .collect();
            stages.sort_by(|a, b| a.name.cmp(&b.name));
            Api {
                id: r.id.clone(),
                name: r.name.clone(),
                api_type: r.api_type,
                endpoint_type: r.endpoint_type.clone(),
                tags: r.tags.clone(),
                cloudwatch_key,
                api_level_ambiguous: stages.is_empty() && shared(None),
                stages,
                integrations: r.integrations.clone(),
            }
        })
        .collect();
    apis.sort_by(|a, b| (a.api_type, &a.name, &a.id).cmp(&(b.api_type, &b.name, &b.id)));
    let conflicts = conflicts
        .into_iter()
        .filter(|c| c.api_ids.iter().any(|id| apis.iter().any(|a| &a.id == id)))
        .collect();
    let linked = found
        .linked
        .iter()
        .map(|l| LinkedInventory {
            mode: l.mode,
            inventory: build(&l.account_id, region, &l.found, filter),
            error: l.error.clone(),
        })
        .collect();
    TargetInventory {
        account_id: account_id.to_string(),
        region: region.to_string(),
        linked,
        conflicts,
        // Account-level series come from one replica only, so `sum()` over replicas counts
        // them once.
        account_throttle: found.account_throttle.filter(|_| filter.owns_account()),
        usage_plans: found
            .usage_plans
            .iter()
            .filter(|p| {
                p.api_stages.iter().any(|(id, stage)| {
                    apis.iter()
                        .any(|a| &a.id == id && a.stages.iter().any(|s| &s.name == stage))
                })
            })
            .cloned()
            .collect(),
        apis,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(id: &str, name: &str, t: ApiType, stages: &[&str]) -> RawApi {
        RawApi {
            id: id.into(),
            name: name.into(),
            api_type: t,
            endpoint_type: "REGIONAL".into(),
            tags: BTreeMap::new(),
            stages: Some(
                stages
                    .iter()
                    .map(|s| RawStage {
                        name: s.to_string(),
                        deployment_id: None,
                        detailed_metrics: false,
                        cache_enabled: false,
                        throttle: None,
                        route_throttles: vec![],
                        routes: vec![],
                        access_log_group: None,
                        access_log_stream: None,
                        access_log_format: None,
                        canary: None,
                    })
                    .collect(),
            ),
            integrations: vec![],
        }
    }

    fn found(apis: Vec<RawApi>) -> Discovered {
        Discovered {
            apis,
            account_throttle: None,
            usage_plans: vec![],
            linked: Vec::new(),
        }
    }

    fn filter(yaml: &str) -> ApiFilter {
        let sel: ApiSelection = yaml_serde::from_str(yaml).unwrap();
        ApiFilter::new(&sel)
    }

    #[test]
    fn include_exclude_and_tags() {
        let mut tagged = api("t1", "orders", ApiType::Http, &["prod"]);
        tagged.tags.insert("team".into(), "payments".into());
        let raw = vec![
            api("r1", "orders-legacy", ApiType::Rest, &["prod"]),
            tagged,
            api("w1", "chat", ApiType::Websocket, &["prod"]),
        ];
        let inv = build(
            "1",
            "us-east-1",
            &found(raw.clone()),
            &filter("include: [orders]\nexclude: [legacy]"),
        );
        assert_eq!(
            inv.apis.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
            ["t1"]
        );
        let inv = build(
            "1",
            "us-east-1",
            &found(raw.clone()),
            &filter("tags: {team: payments}"),
        );
        assert_eq!(inv.apis.len(), 1);
        let inv = build(
            "1",
            "us-east-1",
            &found(raw.clone()),
            &filter("types: [websocket]"),
        );
        assert_eq!(inv.apis[0].id, "w1");
        // include matches ids too
        let inv = build(
            "1",
            "us-east-1",
            &found(raw.clone()),
            &filter("include: ['^r1$']"),
        );
        assert_eq!(inv.apis[0].id, "r1");
    }

    #[test]
    fn log_groups_from_destination_arns() {
        let arn = "arn:aws:logs:us-east-1:123456789012:log-group:API-Gateway-Access-Logs/prod";
        assert_eq!(
            log_group_of(arn).as_deref(),
            Some("API-Gateway-Access-Logs/prod")
        );
        assert_eq!(
            log_group_of(&format!("{arn}:*")).as_deref(),
            Some("API-Gateway-Access-Logs/prod")
        );
        assert_eq!(
            log_group_of(
                "arn:aws:firehose:us-east-1:123456789012:deliverystream/amazon-apigateway-x"
            ),
            None
        );
    }

    #[test]
    fn v2_route_keys() {
        assert_eq!(
            RouteKey::from_v2("GET /pets/{id}", false),
            RouteKey::Method {
                resource: "/pets/{id}".into(),
                method: "GET".into()
            }
        );
        assert_eq!(
            RouteKey::from_v2("$default", false),
            RouteKey::Route("$default".into())
        );
        assert_eq!(
            RouteKey::from_v2("$connect", true),
            RouteKey::Route("$connect".into())
        );
    }

    #[test]
    fn shards_split_the_apis_without_overlap() {
        let raw: Vec<RawApi> = (0..200)
            .map(|i| api(&format!("id{i:04}"), "n", ApiType::Http, &["prod"]))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for index in 0..3 {
            let f = filter("{}").with_shard(Some(ShardConfig::new(index, 3).unwrap()));
            let inv = build("1", "r", &found(raw.clone()), &f);
            assert!(inv.apis.len() > 40, "shard {index} has {}", inv.apis.len());
            for a in inv.apis {
                assert!(seen.insert(a.id), "an API in two shards");
            }
        }
        assert_eq!(seen.len(), 200);
        // Stable: the same id always lands in the same shard.
        assert_eq!(shard_of("a1b2c3d4e5", 7), shard_of("a1b2c3d4e5", 7));
    }

    #[test]
    fn stage_selection() {
        let raw = vec![api("h1", "a", ApiType::Http, &["$default", "prod", "beta"])];
        let inv = build(
            "1",
            "r",
            &found(raw.clone()),
            &filter("stages: [prod, $default]"),
        );
        let names: Vec<_> = inv.apis[0].stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["$default", "prod"]);
        let inv = build("1", "r", &found(raw.clone()), &filter("stages: []"));
        assert!(inv.apis[0].stages.is_empty());
        assert!(!inv.apis[0].api_level_ambiguous);
    }

    #[test]
    fn rest_name_conflicts_drop_only_shared_stages() {
        let raw = vec![
            api("aaa", "shop", ApiType::Rest, &["prod", "dev"]),
            api("bbb", "shop", ApiType::Rest, &["prod", "test"]),
            api("ccc", "other", ApiType::Rest, &["prod"]),
        ];
        let inv = build("1", "r", &found(raw.clone()), &filter("{}"));
        let a = inv.apis.iter().find(|a| a.id == "aaa").unwrap();
        let b = inv.apis.iter().find(|a| a.id == "bbb").unwrap();
        let c = inv.apis.iter().find(|a| a.id == "ccc").unwrap();
        assert!(
            a.stages
                .iter()
                .find(|s| s.name == "prod")
                .unwrap()
                .ambiguous
        );
        assert!(!a.stages.iter().find(|s| s.name == "dev").unwrap().ambiguous);
        assert!(
            b.stages
                .iter()
                .find(|s| s.name == "prod")
                .unwrap()
                .ambiguous
        );
        assert!(
            !b.stages
                .iter()
                .find(|s| s.name == "test")
                .unwrap()
                .ambiguous
        );
        assert!(c.stages.iter().all(|s| !s.ambiguous));
        assert_eq!(inv.conflicts.len(), 1);
        assert_eq!(inv.conflicted_apis(), 2);
    }

    #[test]
    fn a_conflict_with_an_excluded_api_still_counts() {
        let raw = vec![
            api("aaa", "shop", ApiType::Rest, &["prod"]),
            api("bbb", "shop", ApiType::Rest, &["prod"]),
        ];
        let inv = build("1", "r", &found(raw.clone()), &filter("exclude: ['^bbb$']"));
        assert_eq!(inv.apis.len(), 1);
        assert!(inv.apis[0].stages[0].ambiguous);
    }

    #[test]
    fn api_level_conflict() {
        let raw = vec![
            api("aaa", "shop", ApiType::Rest, &[]),
            api("bbb", "shop", ApiType::Rest, &[]),
        ];
        let inv = build("1", "r", &found(raw.clone()), &filter("stages: []"));
        assert!(inv.apis.iter().all(|a| a.api_level_ambiguous));
    }
}
