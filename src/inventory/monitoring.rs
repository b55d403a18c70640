//! A CloudWatch monitoring account and its source accounts (cross-account observability):
//! one target reads the metrics of every account linked to it, through its own GetMetricData
//! (`AccountId` on each query), while each source account's APIs are discovered in one of
//! two ways: with a read-only role in the account (API Gateway reads, the full inventory),
//! or without any role from the monitoring account's ListMetrics (`IncludeLinkedAccounts`,
//! `OwningAccount`), which gives APIs, stages and routes but none of API Gateway's own
//! configuration. OAM shares metrics, never API Gateway's configuration or tags.
//!
//! Failures stay local: a source account whose discovery fails keeps what it last found, and
//! the other accounts go on; an account that leaves (no longer listed or linked) leaves with
//! its series.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::Metric;
use tracing::warn;

use super::discovery::{AwsDiscovery, DiscoveryContext, Pace, no_retries};
use super::{
    ApiFilter, Discovered, Discovery, DiscoveryError, LinkedFound, RawApi, RawStage, RouteKey,
    RouteMetrics, SourceDiscovery,
};
use crate::config::{Endpoints, RoleName};
use crate::model::{ApiType, NAMESPACE};
use crate::ratelimit::Budget;
use crate::sdk::TargetClients;
use crate::selfmetrics::SelfMetrics;

/// ListMetrics calls per second a monitoring account's discovery makes, for every source
/// account read without a role together. AWS's CloudWatch quotas page: ListMetrics, "25
/// transactions per second (TPS)" per account and region; this leaves most of it to others.
pub const LIST_METRICS_PER_SECOND: f64 = 5.0;

/// The metric names only WebSocket APIs publish; an API id with any of them is a WebSocket
/// API, else an HTTP API (the two share the `ApiId` dimension).
const WEBSOCKET_ONLY: [&str; 5] = [
    "ConnectCount",
    "MessageCount",
    "ClientError",
    "ExecutionError",
    "IntegrationError",
];

/// The OAM resource type a link must share for its account's metrics to be readable.
const METRIC_RESOURCE: &str = "AWS::CloudWatch::Metric";

/// A role discovery assumes in a source account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub arn: String,
    pub external_id: Option<String>,
}

/// One source account and how its APIs are discovered: with a role in it, or (`None`) from
/// ListMetrics alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub account_id: String,
    pub role: Option<Role>,
}

impl SourceSpec {
    pub fn mode(&self) -> SourceDiscovery {
        match self.role {
            Some(_) => SourceDiscovery::Role,
            None => SourceDiscovery::Metrics,
        }
    }
}

/// The accounts found through links: the role to assume in each, by name (none: ListMetrics).
#[derive(Debug, Clone)]
pub struct LinkedAccounts {
    pub role_name: Option<RoleName>,
    pub external_id: Option<String>,
}

/// Where a monitoring account's source discoveries come from: AWS ([`AwsSources`]), or a
/// test's stand-ins.
#[async_trait]
pub trait Sources: Send + Sync {
    /// The discovery of one source account.
    async fn discovery(&self, source: &SourceSpec) -> Arc<dyn Discovery>;
    /// The accounts attached to the monitoring account's sinks in the region, that share
    /// metrics with it.
    async fn linked_accounts(&self) -> Result<Vec<String>, DiscoveryError>;
}

/// A monitoring account's discovery: its own APIs (unless left out) and every source
/// account's, each in a [`LinkedFound`].
pub struct MonitoringDiscovery {
    own: Arc<dyn Discovery>,
    include_own: bool,
    listed: Vec<SourceSpec>,
    linked: Option<LinkedAccounts>,
    sources: Arc<dyn Sources>,
    region: String,
    metrics: SelfMetrics,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    members: BTreeMap<String, Member>,
    /// The accounts the last successful link listing found.
    linked_ids: Vec<String>,
}

struct Member {
    spec: SourceSpec,
    discovery: Arc<dyn Discovery>,
    found: Option<Discovered>,
    error: Option<String>,
}

impl MonitoringDiscovery {
    pub fn new(
        own: Arc<dyn Discovery>,
        include_own: bool,
        listed: Vec<SourceSpec>,
        linked: Option<LinkedAccounts>,
        sources: Arc<dyn Sources>,
        region: &str,
        metrics: SelfMetrics,
    ) -> MonitoringDiscovery {
        MonitoringDiscovery {
            own,
            include_own,
            listed,
            linked,
            sources,
            region: region.to_string(),
            metrics,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a cache of what discovery found: keep it over a poisoned lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The source accounts to read now: those listed, then those linked (the last list that
    /// could be read, when reading it fails), never the monitoring account itself.
    async fn specs(&self, monitoring: &str) -> Vec<SourceSpec> {
        let mut specs = self.listed.clone();
        if let Some(linked) = &self.linked {
            match self.sources.linked_accounts().await {
                Ok(mut ids) => {
                    ids.sort();
                    ids.dedup();
                    self.state().linked_ids = ids;
                }
                Err(e) => warn!(
                    region = %self.region, error = %e,
                    "cannot list the accounts linked to the monitoring account; keeping the last list"
                ),
            }
            let ids = self.state().linked_ids.clone();
            for id in ids {
                if specs.iter().any(|s| s.account_id == id) {
                    continue;
                }
                let role = linked.role_name.as_ref().map(|name| Role {
                    arn: name.arn(&id, &self.region),
                    external_id: linked.external_id.clone(),
                });
                specs.push(SourceSpec {
                    account_id: id,
                    role,
                });
            }
        }
        specs.retain(|s| s.account_id != monitoring);
        specs
    }

    fn set_up(&self, spec: &SourceSpec, up: Option<bool>) {
        let mode = spec.mode().as_str();
        let gauge = &self.metrics.source_account_up;
        for other in [SourceDiscovery::Role, SourceDiscovery::Metrics] {
            if other != spec.mode() || up.is_none() {
                let _ =
                    gauge.remove_label_values(&[&spec.account_id, &self.region, other.as_str()]);
            }
        }
        if let Some(up) = up {
            gauge
                .with_label_values(&[&spec.account_id, &self.region, mode])
                .set(if up { 1.0 } else { 0.0 });
        }
    }
}

#[async_trait]
impl Discovery for MonitoringDiscovery {
    async fn account_id(&self) -> Result<String, DiscoveryError> {
        self.own.account_id().await
    }

    async fn discover(&self, filter: &ApiFilter) -> Result<Discovered, DiscoveryError> {
        let monitoring = self.own.account_id().await?;
        let specs = self.specs(&monitoring).await;
        // Accounts that left go with their series; new ones (or a changed role) start anew.
        let gone: Vec<SourceSpec> = {
            let mut state = self.state();
            let gone = state
                .members
                .values()
                .filter(|m| !specs.contains(&m.spec))
                .map(|m| m.spec.clone())
                .collect::<Vec<_>>();
            state.members.retain(|_, m| specs.contains(&m.spec));
            gone
        };
        for spec in &gone {
            self.set_up(spec, None);
        }
        for spec in &specs {
            if self.state().members.contains_key(&spec.account_id) {
                continue;
            }
            let discovery = self.sources.discovery(spec).await;
            self.state().members.insert(
                spec.account_id.clone(),
                Member {
                    spec: spec.clone(),
                    discovery,
                    found: None,
                    error: None,
                },
            );
        }
        let running: Vec<(SourceSpec, Arc<dyn Discovery>)> = self
            .state()
            .members
            .values()
            .map(|m| (m.spec.clone(), Arc::clone(&m.discovery)))
            .collect();
        let own = async {
            match self.include_own {
                true => Some(self.own.discover(filter).await),
                false => None,
            }
        };
        let sources = futures::future::join_all(
            running
                .iter()
                .map(|(_, d)| async move { d.discover(filter).await }),
        );
        let (own, results) = futures::join!(own, sources);
        let mut linked = Vec::new();
        {
            let mut state = self.state();
            for ((spec, _), result) in running.iter().zip(results) {
                let Some(member) = state.members.get_mut(&spec.account_id) else {
                    continue;
                };
                match result {
                    Ok(found) => {
                        member.found = Some(found);
                        member.error = None;
                    }
                    Err(e) => {
                        warn!(
                            account_id = %spec.account_id, region = %self.region,
                            discovery = spec.mode().as_str(), error = %e,
                            "cannot discover a source account; it keeps its last inventory, the other accounts go on"
                        );
                        member.error = Some(e.to_string());
                    }
                }
                if let Some(found) = &member.found {
                    linked.push(LinkedFound {
                        account_id: spec.account_id.clone(),
                        mode: spec.mode(),
                        found: found.clone(),
                        error: member.error.clone(),
                    });
                }
            }
        }
        for (spec, _) in &running {
            let up = linked
                .iter()
                .any(|l| l.account_id == spec.account_id && l.error.is_none());
            self.set_up(spec, Some(up));
        }
        let mut found = match own {
            Some(result) => result?,
            None => Discovered::default(),
        };
        found.linked = linked;
        Ok(found)
    }
}

/// A source account read without a role: its APIs, stages and routes from the monitoring
/// account's ListMetrics (`IncludeLinkedAccounts`, `OwningAccount`), paced by the monitoring
/// account's ListMetrics budget.
pub struct MetricsDiscovery {
    lister: AwsDiscovery,
    account: String,
}

impl MetricsDiscovery {
    /// `lister` holds the monitoring account's CloudWatch client and ListMetrics budget.
    pub fn new(lister: AwsDiscovery, account: &str) -> MetricsDiscovery {
        MetricsDiscovery {
            lister,
            account: account.to_string(),
        }
    }
}

#[async_trait]
impl Discovery for MetricsDiscovery {
    async fn account_id(&self) -> Result<String, DiscoveryError> {
        Ok(self.account.clone())
    }

    async fn discover(&self, filter: &ApiFilter) -> Result<Discovered, DiscoveryError> {
        let lister = &self.lister;
        let account = self.account.as_str();
        let metrics = lister
            .list(
                "cloudwatch",
                "ListMetrics",
                |token| {
                    lister
                        .clients
                        .cloudwatch
                        .list_metrics()
                        .namespace(NAMESPACE)
                        .include_linked_accounts(true)
                        .owning_account(account)
                        .set_next_token(token)
                        .customize()
                        .config_override(no_retries!(aws_sdk_cloudwatch))
                        .send()
                },
                |out| super::routes::owned(out, Some(account)),
            )
            .await?;
        Ok(Discovered {
            apis: apis_of_metrics(&metrics, filter),
            ..Discovered::default()
        })
    }
}

/// What one API's metrics say: its stages, and per stage its routes' dimensions and metrics.
#[derive(Default)]
struct Seen {
    names: BTreeSet<String>,
    stages: BTreeMap<String, StageSeen>,
}

#[derive(Default)]
struct StageSeen {
    names: BTreeSet<String>,
    routes: Vec<RouteMetrics>,
}

/// The APIs and stages ListMetrics shows: REST APIs by `ApiName` (without an id), HTTP and
/// WebSocket APIs by `ApiId` (without a name; a WebSocket API by the metrics only it has),
/// their stages, and routes (Method and Resource, or Route) where the filter wants them.
/// Nothing else is known: no tags, limits, timeouts, integrations or access logs.
pub fn apis_of_metrics(metrics: &[Metric], filter: &ApiFilter) -> Vec<RawApi> {
    let mut rest: BTreeMap<String, Seen> = BTreeMap::new();
    let mut v2: BTreeMap<String, Seen> = BTreeMap::new();
    for metric in metrics {
        let Some(name) = metric.metric_name() else {
            continue;
        };
        let dims: BTreeMap<&str, &str> = metric
            .dimensions()
            .iter()
            .filter_map(|d| Some((d.name()?, d.value()?)))
            .collect();
        let (seen, api_dimension) = match (dims.get("ApiName"), dims.get("ApiId")) {
            (Some(api), None) => (rest.entry((*api).to_string()).or_default(), "ApiName"),
            (None, Some(api)) => (v2.entry((*api).to_string()).or_default(), "ApiId"),
            _ => continue,
        };
        seen.names.insert(name.to_string());
        let Some(stage) = dims.get("Stage") else {
            continue;
        };
        let stage = seen.stages.entry((*stage).to_string()).or_default();
        stage.names.insert(name.to_string());
        let extra: Vec<(String, String)> = dims
            .iter()
            .filter(|(k, _)| **k != api_dimension && **k != "Stage")
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        if extra.is_empty() {
            continue;
        }
        let key = match (dims.get("Method"), dims.get("Resource"), dims.get("Route")) {
            (Some(method), Some(resource), None) if api_dimension == "ApiName" => {
                RouteKey::Method {
                    resource: (*resource).to_string(),
                    method: (*method).to_string(),
                }
            }
            // The type is settled below; WebSocket route keys are kept as written.
            (None, None, Some(route)) if api_dimension == "ApiId" => {
                RouteKey::Route((*route).to_string())
            }
            _ => continue,
        };
        match stage.routes.iter_mut().find(|r| r.dimensions == extra) {
            Some(r) if !r.metrics.iter().any(|m| m == name) => r.metrics.push(name.to_string()),
            Some(_) => {}
            None => stage.routes.push(RouteMetrics {
                key,
                dimensions: extra,
                metrics: vec![name.to_string()],
            }),
        }
    }
    let api = |id: String, name: String, api_type: ApiType, seen: Seen| -> RawApi {
        let stages = seen
            .stages
            .into_iter()
            .filter(|(stage, _)| filter.needs_stages() && filter.selects_stage(stage))
            .map(|(stage, s)| {
                let detailed = !s.routes.is_empty();
                let mut routes: Vec<RouteMetrics> = match filter.wants_routes(detailed) {
                    true => s.routes,
                    false => Vec::new(),
                };
                for r in &mut routes {
                    if let RouteKey::Route(route) = &r.key {
                        r.key = RouteKey::from_v2(route, api_type == ApiType::Websocket);
                    }
                    r.metrics.sort();
                }
                routes.sort_by(|a, b| a.key.cmp(&b.key));
                // API Gateway publishes cache hits and misses only for a stage with a cache.
                let cache = s.names.contains("CacheHitCount") || s.names.contains("CacheMissCount");
                RawStage::listed(stage, detailed, cache, routes)
            })
            .collect();
        RawApi {
            id,
            name,
            api_type,
            endpoint_type: String::new(),
            tags: BTreeMap::new(),
            stages: Some(stages),
            integrations: Vec::new(),
        }
    };
    let mut apis = Vec::new();
    for (name, seen) in rest {
        apis.push(api(String::new(), name, ApiType::Rest, seen));
    }
    for (id, seen) in v2 {
        let websocket = WEBSOCKET_ONLY.iter().any(|m| seen.names.contains(*m));
        let api_type = if websocket {
            ApiType::Websocket
        } else {
            ApiType::Http
        };
        apis.push(api(id, String::new(), api_type, seen));
    }
    apis
}

/// The source discoveries of a monitoring account on AWS: a role's clients (assumed from the
/// monitoring account's credentials) for API Gateway, the monitoring account's CloudWatch for
/// ListMetrics, and OAM for the links.
pub struct AwsSources {
    /// The monitoring account's SDK configuration: source roles are assumed with it.
    pub config: aws_config::SdkConfig,
    pub endpoints: Endpoints,
    /// The monitoring account's clients.
    pub monitoring: TargetClients,
    pub oam: aws_sdk_oam::Client,
    pub metrics: SelfMetrics,
    /// The monitoring target's pace: each source account gets its own budget (its own
    /// management quota) and its own record of what it knew.
    pub pace: Pace,
    /// The monitoring target's identity: a source's record is kept under it.
    pub key: String,
    pub context: DiscoveryContext,
}

impl AwsSources {
    /// The monitoring account's ListMetrics and OAM calls, paced together.
    fn lister(&self) -> AwsDiscovery {
        let budget: Arc<Budget> = self.pace.budgets.of(
            &format!("{}|ListMetrics", self.key),
            LIST_METRICS_PER_SECOND,
            0,
            1,
        );
        AwsDiscovery::new(
            self.monitoring.clone(),
            self.metrics.clone(),
            self.pace.clone(),
        )
        .with_budget(budget)
    }

    fn pace_of(&self, account: &str) -> Pace {
        let known = self
            .context
            .known(&format!("{}|source:{account}", self.key));
        known.set_account(account.to_string());
        Pace {
            known,
            ..self.pace.clone()
        }
    }
}

#[async_trait]
impl Sources for AwsSources {
    async fn discovery(&self, source: &SourceSpec) -> Arc<dyn Discovery> {
        let account = source.account_id.as_str();
        match &source.role {
            Some(role) => {
                let config = crate::sdk::assume_role(
                    &self.config,
                    &role.arn,
                    role.external_id.as_deref(),
                    &self.endpoints,
                )
                .await;
                let clients = crate::sdk::clients(&config, &self.endpoints);
                Arc::new(AwsDiscovery::source(
                    clients,
                    self.monitoring.cloudwatch.clone(),
                    account,
                    self.metrics.clone(),
                    self.pace_of(account),
                ))
            }
            None => {
                let mut lister = self.lister();
                lister.owning_account = Some(account.to_string());
                Arc::new(MetricsDiscovery::new(lister, account))
            }
        }
    }

    async fn linked_accounts(&self) -> Result<Vec<String>, DiscoveryError> {
        linked_accounts(&self.lister(), &self.oam).await
    }
}

/// The accounts attached to the monitoring account's sinks in the region that share metrics
/// with it: OAM ListSinks, then ListAttachedLinks for each sink (IAM: `oam:ListSinks`,
/// `oam:ListAttachedLinks`), every page paced by `lister`'s budget.
pub async fn linked_accounts(
    lister: &AwsDiscovery,
    oam: &aws_sdk_oam::Client,
) -> Result<Vec<String>, DiscoveryError> {
    let sinks = lister
        .list(
            "oam",
            "ListSinks",
            |token| {
                oam.list_sinks()
                    .set_next_token(token)
                    .customize()
                    .config_override(no_retries!(aws_sdk_oam))
                    .send()
            },
            |out| {
                let next = out.next_token().map(str::to_string);
                (out.items, next)
            },
        )
        .await?;
    let mut accounts = Vec::new();
    for sink in sinks {
        let Some(arn) = sink.arn() else {
            continue;
        };
        let links = lister
            .list(
                "oam",
                "ListAttachedLinks",
                |token| {
                    oam.list_attached_links()
                        .sink_identifier(arn)
                        .set_next_token(token)
                        .customize()
                        .config_override(no_retries!(aws_sdk_oam))
                        .send()
                },
                |out| {
                    let next = out.next_token().map(str::to_string);
                    (out.items, next)
                },
            )
            .await?;
        for link in links {
            let shares_metrics = link.resource_types().iter().any(|t| t == METRIC_RESOURCE);
            if let Some(account) = link.link_arn().and_then(link_account)
                && shares_metrics
            {
                accounts.push(account.to_string());
            }
        }
    }
    accounts.sort();
    accounts.dedup();
    Ok(accounts)
}

/// The source account of an OAM link ARN: `arn:aws:oam:<region>:<account>:link/<id>`.
pub fn link_account(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (arn.starts_with("arn:") && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
        .then_some(account)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::types::Dimension;

    fn metric(name: &str, dims: &[(&str, &str)]) -> Metric {
        let mut m = Metric::builder().namespace(NAMESPACE).metric_name(name);
        for (k, v) in dims {
            m = m.dimensions(Dimension::builder().name(*k).value(*v).build());
        }
        m.build()
    }

    fn filter() -> ApiFilter {
        ApiFilter::new(&crate::config::ApiSelection::default())
    }

    #[test]
    fn list_metrics_gives_apis_stages_and_routes_and_nothing_it_does_not_say() {
        let metrics = [
            metric("Count", &[("ApiName", "orders")]),
            metric("Count", &[("ApiName", "orders"), ("Stage", "prod")]),
            metric("CacheHitCount", &[("ApiName", "orders"), ("Stage", "prod")]),
            metric(
                "5XXError",
                &[
                    ("ApiName", "orders"),
                    ("Stage", "prod"),
                    ("Method", "GET"),
                    ("Resource", "/orders"),
                ],
            ),
            metric("Count", &[("ApiId", "h1"), ("Stage", "$default")]),
            metric(
                "5xx",
                &[
                    ("ApiId", "h1"),
                    ("Stage", "$default"),
                    ("Route", "GET /pets"),
                ],
            ),
            metric("MessageCount", &[("ApiId", "w1"), ("Stage", "live")]),
            // Not API Gateway's dimensions: left out.
            metric("Count", &[("Other", "x")]),
        ];
        let apis = apis_of_metrics(&metrics, &filter());
        assert_eq!(apis.len(), 3);
        let rest = &apis[0];
        assert_eq!((rest.id.as_str(), rest.name.as_str()), ("", "orders"));
        assert_eq!(rest.api_type, ApiType::Rest);
        assert!(rest.tags.is_empty() && rest.integrations.is_empty());
        let prod = &rest.stages.as_ref().unwrap()[0];
        assert!(prod.cache_enabled && prod.detailed_metrics);
        assert_eq!(prod.throttle, None);
        assert_eq!(
            prod.routes[0].key,
            RouteKey::Method {
                resource: "/orders".into(),
                method: "GET".into()
            }
        );
        let http = &apis[1];
        assert_eq!((http.id.as_str(), http.name.as_str()), ("h1", ""));
        assert_eq!(http.api_type, ApiType::Http);
        assert_eq!(
            http.stages.as_ref().unwrap()[0].routes[0].key,
            RouteKey::from_v2("GET /pets", false)
        );
        assert_eq!(apis[2].api_type, ApiType::Websocket);
    }

    #[test]
    fn link_arns_name_their_source_account() {
        assert_eq!(
            link_account("arn:aws:oam:us-east-1:222222222222:link/abc"),
            Some("222222222222")
        );
        assert_eq!(link_account("arn:aws:oam:us-east-1:22:link/abc"), None);
        assert_eq!(link_account("not an arn"), None);
    }
}
