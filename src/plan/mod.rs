//! Inventory + config → the CloudWatch queries of a cycle, packed 500 to a GetMetricData call
//! (the API's limit, so a cycle makes the fewest calls possible), and what that costs.
//! Pure: `check-config` prints the same plan the poll loop runs.

use std::collections::HashMap;
use std::sync::Arc;

mod cost;
mod report;

pub use cost::{
    Comparison, Cost, IDLE_SHARE, STREAM_PRICE_PER_1000_UPDATES, Shape, compare, cost, idle_factor,
};
pub use report::{DiscoveryCalls, comparison, describe, discovery_cost};

use crate::inventory::{Api, BackendType, TargetInventory, is_function_name};
use crate::model::{Family, FamilyKind, Labels, SeriesLabels, Stat};

/// GetMetricData accepts at most this many queries per call.
pub const MAX_QUERIES_PER_CALL: usize = 500;

/// A query's CloudWatch dimensions, as (name, value).
pub type Dims = Arc<[(&'static str, String)]>;

/// One GetMetricData query: a metric, one statistic, one dimension set.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `AWS/ApiGateway`, or the namespace an access-log metric filter publishes into.
    pub namespace: Arc<str>,
    pub family: Family,
    pub stat: Stat,
    pub metric_name: Arc<str>,
    /// Shared by the queries of one stage or route (one allocation for all its statistics).
    pub dimensions: Dims,
    pub labels: Labels,
    /// Answered from this access log group's events instead of a CloudWatch metric.
    pub log_group: Option<Arc<str>>,
    /// Answered from the access log lines Firehose delivered (`access_logs.mode: firehose`).
    pub delivered: bool,
    /// A canary (or its base) counted from the stage's own log split by `isCanaryRequest`,
    /// not from the canary's own log group.
    pub canary_split: bool,
    /// Answered from what CloudWatch Metric Streams delivered instead of GetMetricData.
    pub streamed: bool,
    /// The source account of a metric a monitoring account reads (GetMetricData `AccountId`);
    /// `None` for the target's own account.
    pub account: Option<Arc<str>>,
}

/// The queries of one target (account × region).
#[derive(Debug, Clone, Default)]
pub struct TargetPlan {
    pub account_id: String,
    pub region: String,
    pub queries: Vec<Query>,
}

/// Where a query is answered; the plan keeps its queries in this order, and a batch holds
/// queries of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Answer {
    GetMetricData,
    Stream,
    Logs,
}

impl Query {
    /// Where the query is answered.
    pub fn answer(&self) -> Answer {
        if self.log_group.is_some() || self.delivered {
            Answer::Logs
        } else if self.streamed {
            Answer::Stream
        } else {
            Answer::GetMetricData
        }
    }

    /// A metric of an AWS namespace (`AWS/ApiGateway`, `AWS/Lambda`), not of a metric
    /// filter's own namespace or an access log.
    pub fn is_aws_metric(&self) -> bool {
        self.answer() != Answer::Logs
            && [crate::model::NAMESPACE, crate::model::LAMBDA_NAMESPACE].contains(&&*self.namespace)
    }
}

impl TargetPlan {
    /// The polled metric queries (first), the streamed ones, and the access-log queries
    /// (last, answered from logs).
    fn split(&self) -> (&[Query], &[Query], &[Query]) {
        let polled = self
            .queries
            .partition_point(|q| q.answer() == Answer::GetMetricData);
        let logs = self.queries.partition_point(|q| q.answer() != Answer::Logs);
        (
            &self.queries[..polled],
            &self.queries[polled..logs],
            &self.queries[logs..],
        )
    }

    /// The batches of a cycle, as ranges of `queries`: the polled metric queries 500 to a
    /// GetMetricData call, the streamed ones likewise (read from memory), then the
    /// access-log queries, if any, as one batch of their own. A batch never mixes sources.
    pub fn batch_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let (polled, streamed, logs) = self.split();
        let chunks = |from: usize, len: usize| {
            (from..from + len)
                .step_by(MAX_QUERIES_PER_CALL)
                .map(move |start| start..(start + MAX_QUERIES_PER_CALL).min(from + len))
        };
        let mut ranges: Vec<_> = chunks(0, polled.len())
            .chain(chunks(polled.len(), streamed.len()))
            .collect();
        if !logs.is_empty() {
            ranges.push(polled.len() + streamed.len()..self.queries.len());
        }
        ranges
    }

    /// What the plan's metric queries are, for the cost comparison ([`compare`]).
    pub fn shape(&self) -> Shape {
        use std::collections::{BTreeMap, BTreeSet};
        let metric = |q: &&Query| q.answer() != Answer::Logs;
        let key = |q: &Query| {
            (
                q.namespace.clone(),
                q.metric_name.clone(),
                q.dimensions.to_vec(),
            )
        };
        let mut s = Shape::default();
        let (mut stage_metrics, mut other_metrics, mut percentile_metrics) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        // API-level aggregates (the API's own dimension, no stage), and their statistics.
        let mut api_level: BTreeMap<_, BTreeSet<Stat>> = BTreeMap::new();
        let mut names = BTreeSet::new();
        for q in self.queries.iter().filter(metric) {
            let stage = q.labels.is_api();
            s.metric_queries += 1;
            if stage {
                s.stage_queries += 1;
            }
            if !q.is_aws_metric() {
                if stage {
                    s.stage_polled_beside_stream += 1;
                }
                continue;
            }
            s.yace_queries += 1;
            names.insert((q.namespace.clone(), q.metric_name.clone()));
            let percentile = matches!(q.stat, Stat::Percentile(_));
            if !stage {
                other_metrics.insert(key(q));
                continue;
            }
            if percentile {
                s.stage_percentile_queries += 1;
            }
            stage_metrics.insert(key(q));
            let api = (
                q.namespace.clone(),
                q.metric_name.clone(),
                q.dimensions[..1].to_vec(),
            );
            if q.dimensions.len() == 2 && q.dimensions[1].0 == "Stage" {
                if percentile {
                    percentile_metrics.insert(api.clone());
                }
                api_level.entry(api).or_default().insert(q.stat);
            }
            if percentile {
                percentile_metrics.insert(key(q));
            }
        }
        s.stage_stream_metrics = stage_metrics.len() + api_level.len();
        s.other_stream_metrics = other_metrics.len();
        s.stage_percentile_metrics = percentile_metrics.len();
        s.yace_queries += api_level.values().map(BTreeSet::len).sum::<usize>();
        s.yace_list_calls = names.len();
        s
    }

    /// Queries answered from CloudWatch Metric Streams (no GetMetricData, nothing billed
    /// per read).
    pub fn streamed_queries(&self) -> usize {
        self.split().1.len()
    }

    /// The batches of a cycle ([`TargetPlan::batch_ranges`]) as slices.
    pub fn batches(&self) -> Vec<&[Query]> {
        self.batch_ranges()
            .into_iter()
            .map(|r| &self.queries[r])
            .collect()
    }

    /// The same target with no queries.
    pub fn clone_empty(&self) -> TargetPlan {
        TargetPlan {
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            queries: Vec::new(),
        }
    }

    /// GetMetricData calls per cycle: ceil(metric queries / 500).
    pub fn calls(&self) -> usize {
        self.split().0.len().div_ceil(MAX_QUERIES_PER_CALL)
    }

    /// Queries sent to GetMetricData (and billed per cycle); the access-log queries are
    /// answered by FilterLogEvents.
    pub fn metric_queries(&self) -> usize {
        self.split().0.len()
    }

    /// The distinct access log groups read each cycle (one FilterLogEvents read each).
    pub fn log_groups(&self) -> usize {
        let mut groups: Vec<&str> = self
            .split()
            .2
            .iter()
            .filter_map(|q| q.log_group.as_deref())
            .collect();
        groups.sort_unstable();
        groups.dedup();
        groups.len()
    }
}

/// The statistics read for a family: `Sum` for counters; `Sum`, `SampleCount` and the
/// configured latency statistics for summaries.
pub fn stats_for(family: Family, latency: &[Stat]) -> Vec<Stat> {
    match family.info().kind() {
        FamilyKind::Counter => vec![Stat::Sum],
        FamilyKind::Summary => {
            let mut stats = vec![Stat::Sum, Stat::SampleCount];
            for s in latency {
                if !stats.contains(s) {
                    stats.push(*s);
                }
            }
            stats
        }
    }
}

/// What the config adds to an inventory when planning.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanOptions {
    /// Latency statistics beyond `Sum` and `SampleCount`.
    pub latency: Vec<Stat>,
    /// Where 429 counts come from, if anywhere.
    pub access_logs: Option<AccessLogs>,
    /// Poll `AWS/Lambda` for the functions behind discovered routes.
    pub lambda: bool,
    /// CloudWatch Metric Streams deliver `AWS/ApiGateway` and `AWS/Lambda`.
    pub stream: Option<Streamed>,
}

/// What the metric stream answers instead of GetMetricData.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streamed {
    /// Percentiles too (the stream's statistics configuration adds them, and the period is
    /// one minute); else they are still polled.
    pub percentiles: bool,
}

impl Streamed {
    /// Whether the stream answers `q`: an AWS namespace's metric (not a metric filter's) and
    /// a statistic every stream carries, or a percentile if configured.
    pub fn answers(self, q: &Query) -> bool {
        q.is_aws_metric() && (self.percentiles || !matches!(q.stat, Stat::Percentile(_)))
    }
}

/// How 429s are read from access logs.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessLogs {
    /// A metric filter publishes counts as `metric` in `namespace` (GetMetricData).
    MetricFilter {
        namespace: Arc<str>,
        metric: Arc<str>,
    },
    /// The exporter reads the events (FilterLogEvents) from this group, or each stage's own.
    LogEvents { log_group: Option<Arc<str>> },
    /// Firehose delivers the lines to the exporter's endpoint; `receiver` names this replica
    /// in the series it counts (replicas behind one endpoint each receive a share).
    Delivered { receiver: Arc<str> },
}

/// Where a stage's access-log queries are answered.
#[derive(Debug, Clone)]
enum LogSource {
    /// A metric filter's metric (GetMetricData).
    MetricFilter,
    /// FilterLogEvents on this group.
    Group(Arc<str>),
    /// The lines Firehose delivered; the receiver label.
    Delivered(Arc<str>),
}

/// The value of the `Reason` dimension an access-log metric filter publishes.
pub fn reason_dimension(family: Family) -> &'static str {
    match family {
        Family::QuotaExceeded => "QUOTA_EXCEEDED",
        _ => "THROTTLED",
    }
}

/// Plans the stage-level series of every selected stage, or the API-level series of an API
/// with no selected stage. Series CloudWatch cannot attribute (REST name conflicts) are left
/// out rather than exported under the wrong API; access-log series are keyed by API id and
/// always attributable.
pub fn plan_target(inv: &TargetInventory, opts: &PlanOptions) -> TargetPlan {
    let mut queries = Vec::new();
    let mut log_queries = Vec::new();
    plan_account(inv, opts, None, &mut queries, &mut log_queries);
    // A monitoring account's source accounts: their queries go in the same batches, so a
    // cycle makes ceil(queries / 500) calls over every account together.
    for linked in &inv.linked {
        let account: Arc<str> = Arc::from(linked.inventory.account_id.as_str());
        plan_account(
            &linked.inventory,
            opts,
            Some(&account),
            &mut queries,
            &mut log_queries,
        );
    }
    if let Some(stream) = opts.stream {
        for q in &mut queries {
            q.streamed = stream.answers(q);
        }
        // Stable: polled queries first, then streamed, each in plan order.
        queries.sort_by_key(|q| q.streamed);
    }
    queries.append(&mut log_queries);
    // Held until the next discovery changes it: no room kept for growth.
    queries.shrink_to_fit();
    TargetPlan {
        account_id: inv.account_id.clone(),
        region: inv.region.clone(),
        queries,
    }
}

/// The access log group a monitoring account reads for a source account: by ARN, as
/// FilterLogEvents requires for a group shared through a link.
fn linked_log_group(group: &str, inv: &TargetInventory) -> String {
    format!(
        "arn:{}:logs:{}:{}:log-group:{group}",
        crate::config::partition(&inv.region),
        inv.region,
        inv.account_id
    )
}

/// The queries of one account's inventory, appended to `queries` (metrics) and `log_queries`
/// (access logs); `account` marks a monitoring account's source account.
fn plan_account(
    inv: &TargetInventory,
    opts: &PlanOptions,
    account: Option<&Arc<str>>,
    queries: &mut Vec<Query>,
    log_queries: &mut Vec<Query>,
) {
    let (first_query, first_log) = (queries.len(), log_queries.len());
    let namespace: Arc<str> = Arc::from(crate::model::NAMESPACE);
    for api in &inv.apis {
        if api.stages.is_empty() {
            if !api.api_level_ambiguous {
                let labels = labels(inv, api, None);
                push_level(queries, &namespace, api, labels, false, &opts.latency);
            }
            continue;
        }
        for stage in &api.stages {
            let labels = labels(inv, api, Some(&stage.name));
            if !stage.ambiguous {
                push_level(
                    queries,
                    &namespace,
                    api,
                    Arc::clone(&labels),
                    stage.cache_enabled,
                    &opts.latency,
                );
                for route in &stage.routes {
                    push_route(queries, &namespace, api, &labels, route, &opts.latency);
                }
            }
            let (ns, metric, source) = match &opts.access_logs {
                None => continue,
                Some(AccessLogs::MetricFilter { namespace, metric }) => (
                    Arc::clone(namespace),
                    Arc::clone(metric),
                    LogSource::MetricFilter,
                ),
                Some(AccessLogs::LogEvents { log_group }) => {
                    let Some(group) = log_group
                        .clone()
                        .or_else(|| stage.access_log_group.as_deref().map(Arc::from))
                    else {
                        continue;
                    };
                    let group = match account {
                        Some(_) => Arc::from(linked_log_group(&group, inv)),
                        None => group,
                    };
                    (
                        Arc::clone(&namespace),
                        Arc::from("AccessLogEvents"),
                        LogSource::Group(group),
                    )
                }
                Some(AccessLogs::Delivered { receiver }) => {
                    // Lines come only from a stage that writes access logs: to a delivery
                    // stream (REST), or to a group a subscription forwards to one.
                    if stage.access_log_group.is_none() && stage.access_log_stream.is_none() {
                        continue;
                    }
                    (
                        Arc::clone(&namespace),
                        Arc::from("AccessLogLines"),
                        LogSource::Delivered(Arc::clone(receiver)),
                    )
                }
            };
            let (log_group, delivered) = match &source {
                LogSource::MetricFilter => (None, false),
                LogSource::Group(g) => (Some(Arc::clone(g)), false),
                LogSource::Delivered(_) => (None, true),
            };
            let labels = match &source {
                LogSource::Delivered(receiver) => Arc::new(SeriesLabels {
                    receiver: Some(receiver.to_string()),
                    ..(*labels).clone()
                }),
                _ => labels,
            };
            let events = !matches!(source, LogSource::MetricFilter);
            let list = if events {
                &mut *log_queries
            } else {
                &mut *queries
            };
            // Responses by cause need the events themselves: a metric filter cannot
            // publish status, response type and route together (three dimensions at most).
            let families: &[Family] = if events {
                &[Family::Throttled, Family::QuotaExceeded, Family::Responses]
            } else {
                &[Family::Throttled, Family::QuotaExceeded]
            };
            let query =
                |family: Family, stat: Stat, log_group: Option<Arc<str>>, canary_split| Query {
                    namespace: Arc::clone(&ns),
                    family,
                    stat,
                    metric_name: Arc::clone(&metric),
                    dimensions: if family.split() || family.canary() {
                        Dims::from([("ApiId", api.id.clone()), ("Stage", stage.name.clone())])
                    } else {
                        Dims::from([
                            ("ApiId", api.id.clone()),
                            ("Stage", stage.name.clone()),
                            ("Reason", reason_dimension(family).to_string()),
                        ])
                    },
                    labels: Arc::clone(&labels),
                    log_group,
                    delivered,
                    canary_split,
                    streamed: false,
                    account: None,
                };
            for &family in families {
                list.push(query(family, Stat::Sum, log_group.clone(), false));
            }
            if events && stage.canary.is_some() {
                // A canary from the stage's own log split by isCanaryRequest (its base too),
                // or else from the canary's own log group (FilterLogEvents only).
                let split = stage
                    .access_log_format
                    .as_deref()
                    .is_some_and(crate::model::logs_canary_split);
                let canary_group = match (split, &log_group, &stage.access_log_group) {
                    (true, _, _) => Some(log_group.clone()),
                    (false, Some(_), Some(group)) => Some(Some(Arc::from(canary_log_group(group)))),
                    _ => None,
                };
                if let Some(group) = canary_group {
                    let mut families = vec![Family::CanaryResponses, Family::CanaryLatency];
                    if split {
                        families.push(Family::CanaryBaseResponses);
                    }
                    for family in families {
                        for stat in stats_for(family, &opts.latency) {
                            log_queries.push(query(family, stat, group.clone(), split));
                        }
                    }
                }
            }
        }
    }
    if opts.lambda {
        push_lambda(queries, inv);
    }
    if let Some(account) = account {
        for q in queries[first_query..]
            .iter_mut()
            .chain(&mut log_queries[first_log..])
        {
            q.account = Some(Arc::clone(account));
        }
    }
}

/// A REST stage's canary release is read from its own access log group where the stage's
/// format does not split its lines by `isCanaryRequest`: AWS appends `/Canary` to the stage's
/// access log group and writes every canary request there (the API Gateway Developer Guide,
/// "Set up an API Gateway canary release deployment").
/// The access log group API Gateway writes a stage's canary requests to.
pub fn canary_log_group(stage_group: &str) -> String {
    format!("{stage_group}/Canary")
}

/// The Lambda functions behind the inventory's routes, once each: counters from `Sum`,
/// duration `Sum`, `SampleCount` and `Maximum` (no percentiles: 6 queries a function).
fn push_lambda(queries: &mut Vec<Query>, inv: &TargetInventory) {
    let namespace: Arc<str> = Arc::from(crate::model::LAMBDA_NAMESPACE);
    for function in lambda_functions(inv) {
        let labels = Arc::new(SeriesLabels::function(
            &inv.account_id,
            &inv.region,
            &function,
        ));
        for family in Family::ALL {
            let Some(metric) = family.info().lambda else {
                continue;
            };
            let stats: &[Stat] = match family.info().kind() {
                FamilyKind::Counter => &[Stat::Sum],
                FamilyKind::Summary => &[Stat::Sum, Stat::SampleCount, Stat::Maximum],
            };
            for &stat in stats {
                queries.push(Query {
                    namespace: Arc::clone(&namespace),
                    family,
                    stat,
                    metric_name: metric_arc(metric),
                    dimensions: Dims::from([("FunctionName", function.clone())]),
                    labels: Arc::clone(&labels),
                    log_group: None,
                    delivered: false,
                    canary_split: false,
                    streamed: false,
                    account: None,
                });
            }
        }
    }
}

/// The names of the Lambda functions any route of the inventory integrates with, sorted:
/// those of this target's account and region (a function elsewhere has its metrics there),
/// and named outright (not through a stage variable).
pub fn lambda_functions(inv: &TargetInventory) -> Vec<String> {
    let here = |home: &Option<(String, String)>| {
        home.as_ref()
            .is_none_or(|(region, account)| *region == inv.region && *account == inv.account_id)
    };
    let mut names: Vec<String> = inv
        .apis
        .iter()
        .flat_map(|a| &a.integrations)
        .filter(|i| {
            i.backend_type == BackendType::Lambda && is_function_name(&i.backend) && here(&i.home)
        })
        .map(|i| i.backend.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn labels(inv: &TargetInventory, api: &Api, stage: Option<&str>) -> Labels {
    Arc::new(inv.labels(api, stage))
}

/// Route-level queries: the families whose metric ListMetrics found for this route, with
/// the route's own dimensions.
fn push_route(
    queries: &mut Vec<Query>,
    namespace: &Arc<str>,
    api: &Api,
    stage_labels: &Labels,
    route: &crate::inventory::RouteMetrics,
    latency: &[Stat],
) {
    let labels = Arc::new(SeriesLabels {
        route: Some(route.key.clone()),
        ..(**stage_labels).clone()
    });
    let mut dimensions = vec![
        (api.api_type.api_dimension(), api.cloudwatch_key.clone()),
        ("Stage", stage_labels.stage.clone().unwrap_or_default()),
    ];
    for (name, value) in &route.dimensions {
        let name: &'static str = match name.as_str() {
            "Method" => "Method",
            "Resource" => "Resource",
            "Route" => "Route",
            _ => continue,
        };
        dimensions.push((name, value.clone()));
    }
    let has = |_: Family, metric: &str| route.metrics.iter().any(|m| m == metric);
    push_metrics(
        queries,
        namespace,
        api,
        &labels,
        &Dims::from(dimensions),
        has,
        latency,
    );
}

/// One query per statistic of every family `wanted` for this API type, with `dimensions`.
fn push_metrics(
    queries: &mut Vec<Query>,
    namespace: &Arc<str>,
    api: &Api,
    labels: &Labels,
    dimensions: &Dims,
    wanted: impl Fn(Family, &str) -> bool,
    latency: &[Stat],
) {
    for family in Family::ALL {
        let Some(metric_name) = family.cloudwatch_metric(api.api_type) else {
            continue;
        };
        if !wanted(family, metric_name) {
            continue;
        }
        let metric_name = metric_arc(metric_name);
        for stat in stats_for(family, latency) {
            queries.push(Query {
                namespace: Arc::clone(namespace),
                family,
                stat,
                metric_name: Arc::clone(&metric_name),
                dimensions: Arc::clone(dimensions),
                labels: Arc::clone(labels),
                log_group: None,
                delivered: false,
                canary_split: false,
                streamed: false,
                account: None,
            });
        }
    }
}

fn push_level(
    queries: &mut Vec<Query>,
    namespace: &Arc<str>,
    api: &Api,
    labels: Labels,
    cache_enabled: bool,
    latency: &[Stat],
) {
    let stage = labels.stage.as_deref();
    let mut dimensions = vec![(api.api_type.api_dimension(), api.cloudwatch_key.clone())];
    if let Some(stage) = stage {
        dimensions.push(("Stage", stage.to_string()));
    }
    // Cache counters only exist where a cache cluster runs; at API level we cannot know.
    let wanted =
        |family: Family, _: &str| !family.info().needs_cache || (cache_enabled && stage.is_some());
    push_metrics(
        queries,
        namespace,
        api,
        &labels,
        &Dims::from(dimensions),
        wanted,
        latency,
    );
}

/// The shared name of an AWS metric: one allocation per name for the whole process, however
/// many queries read it (a plan of 100k queries would otherwise hold as many copies).
fn metric_arc(name: &'static str) -> Arc<str> {
    static NAMES: std::sync::OnceLock<std::sync::Mutex<HashMap<&'static str, Arc<str>>>> =
        std::sync::OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Arc::clone(names.entry(name).or_insert_with(|| Arc::from(name)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::inventory::Stage;
    use crate::model::{ApiType, RouteKey};

    fn inv(apis: Vec<Api>) -> TargetInventory {
        TargetInventory {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            apis,
            conflicts: vec![],
            account_throttle: None,
            usage_plans: vec![],
            linked: Vec::new(),
        }
    }

    fn api(id: &str, t: ApiType, stages: &[(&str, bool)]) -> Api {
        Api {
            id: id.into(),
            name: format!("{id}-name"),
            api_type: t,
            endpoint_type: "REGIONAL".into(),
            tags: BTreeMap::new(),
            cloudwatch_key: if t == ApiType::Rest {
                format!("{id}-name")
            } else {
                id.into()
            },
            stages: stages
                .iter()
                .map(|(n, cache)| Stage {
                    name: n.to_string(),
                    detailed_metrics: false,
                    cache_enabled: *cache,
                    ambiguous: false,
                    throttle: None,
                    route_throttles: vec![],
                    access_log_group: None,
                    access_log_stream: None,
                    access_log_format: None,
                    canary: None,
                    routes: vec![],
                })
                .collect(),
            api_level_ambiguous: false,
            integrations: vec![],
        }
    }

    fn opts() -> PlanOptions {
        PlanOptions {
            latency: vec![
                Stat::Percentile(5000),
                Stat::Percentile(9000),
                Stat::Percentile(9900),
                Stat::Maximum,
            ],
            access_logs: None,
            stream: None,
            lambda: false,
        }
    }

    #[test]
    fn lambda_functions_behind_routes_are_polled_once_each() {
        use crate::inventory::{BackendType, Integration};
        let mut a = api("a1", ApiType::Rest, &[("prod", false)]);
        let integration = |path: &str, backend_type, backend: &str| Integration {
            route: RouteKey::Method {
                resource: path.into(),
                method: "GET".into(),
            },
            timeout: 29.0,
            integration_type: "AWS_PROXY".into(),
            backend_type,
            backend: backend.into(),
            streams: false,
            home: None,
        };
        a.integrations = vec![
            integration("/a", BackendType::Lambda, "orders"),
            integration("/b", BackendType::Lambda, "orders"),
            integration("/c", BackendType::Lambda, "users"),
            integration("/d", BackendType::Http, "example.com"),
            integration("/e", BackendType::Mock, ""),
            // Elsewhere, or named per request: not polled here.
            Integration {
                home: Some(("eu-west-1".into(), "123456789012".into())),
                ..integration("/f", BackendType::Lambda, "remote")
            },
            integration("/g", BackendType::Lambda, "${stageVariables.fn}"),
            Integration {
                home: Some(("us-east-1".into(), "123456789012".into())),
                ..integration("/h", BackendType::Lambda, "users")
            },
        ];
        let inventory = inv(vec![a]);
        let without = plan_target(&inventory, &opts());
        let plan = plan_target(
            &inventory,
            &PlanOptions {
                lambda: true,
                ..opts()
            },
        );
        let lambda: Vec<&Query> = plan
            .queries
            .iter()
            .filter(|q| &*q.namespace == "AWS/Lambda")
            .collect();
        assert_eq!(plan.queries.len() - without.queries.len(), 12);
        assert_eq!(lambda.len(), 12);
        for q in &lambda {
            assert_eq!(q.dimensions.len(), 1);
            assert_eq!(q.dimensions[0].0, "FunctionName");
            assert_eq!(
                q.labels.function.as_deref(),
                Some(q.dimensions[0].1.as_str())
            );
            assert!(!matches!(q.stat, Stat::Percentile(_)));
        }
        assert_eq!(
            lambda_functions(&inventory),
            ["orders".to_string(), "users".to_string()]
        );
    }

    #[test]
    fn query_counts_per_stage() {
        // REST: 3 counters + 2 summaries × (Sum, SampleCount, p50, p90, p99, max) = 15, +2 cache.
        let p = plan_target(
            &inv(vec![api("r", ApiType::Rest, &[("prod", false)])]),
            &opts(),
        );
        assert_eq!(p.queries.len(), 15);
        let p = plan_target(
            &inv(vec![api("r", ApiType::Rest, &[("prod", true)])]),
            &opts(),
        );
        assert_eq!(p.queries.len(), 17);
        // HTTP: 4 counters + 2 × 6.
        let p = plan_target(
            &inv(vec![api("h", ApiType::Http, &[("$default", false)])]),
            &opts(),
        );
        assert_eq!(p.queries.len(), 16);
        assert!(p.queries.iter().any(|q| &*q.metric_name == "4xx"));
        // WebSocket: 5 counters + IntegrationLatency × 6.
        let p = plan_target(
            &inv(vec![api("w", ApiType::Websocket, &[("prod", false)])]),
            &opts(),
        );
        assert_eq!(p.queries.len(), 11);
    }

    #[test]
    fn dimensions_use_name_for_rest_and_id_for_v2() {
        let p = plan_target(
            &inv(vec![
                api("r1", ApiType::Rest, &[("prod", false)]),
                api("h1", ApiType::Http, &[]),
            ]),
            &opts(),
        );
        let rest = p.queries.iter().find(|q| q.labels.api_id == "r1").unwrap();
        assert_eq!(
            *rest.dimensions,
            [
                ("ApiName", "r1-name".to_string()),
                ("Stage", "prod".to_string())
            ]
        );
        let http = p.queries.iter().find(|q| q.labels.api_id == "h1").unwrap();
        assert_eq!(*http.dimensions, [("ApiId", "h1".to_string())]);
        assert_eq!(http.labels.stage, None);
    }

    #[test]
    fn batches_hold_at_most_500_and_calls_are_the_ceiling() {
        let apis: Vec<Api> = (0..40)
            .map(|i| {
                api(
                    &format!("h{i}"),
                    ApiType::Http,
                    &[("a", false), ("b", false)],
                )
            })
            .collect();
        let p = plan_target(&inv(apis), &opts());
        assert_eq!(p.queries.len(), 40 * 2 * 16);
        assert_eq!(p.calls(), 1280usize.div_ceil(500));
        assert_eq!(p.batches().len(), p.calls());
        assert!(p.batches().iter().all(|b| b.len() <= MAX_QUERIES_PER_CALL));
    }

    #[test]
    fn ambiguous_series_are_not_queried() {
        let mut a = api("r", ApiType::Rest, &[("prod", false), ("dev", false)]);
        a.stages[0].ambiguous = true;
        let p = plan_target(&inv(vec![a]), &opts());
        assert!(
            p.queries
                .iter()
                .all(|q| q.labels.stage.as_deref() == Some("dev"))
        );
        let mut b = api("r", ApiType::Rest, &[]);
        b.api_level_ambiguous = true;
        assert!(plan_target(&inv(vec![b]), &opts()).queries.is_empty());
    }

    #[test]
    fn access_log_queries_are_keyed_by_id_even_for_ambiguous_rest_names() {
        let mut a = api("r", ApiType::Rest, &[("prod", false)]);
        a.stages[0].ambiguous = true;
        let o = PlanOptions {
            access_logs: Some(AccessLogs::MetricFilter {
                namespace: Arc::from("Logs"),
                metric: Arc::from("Throttled"),
            }),
            ..opts()
        };
        let p = plan_target(&inv(vec![a]), &o);
        assert_eq!(p.queries.len(), 2);
        assert!(
            p.queries
                .iter()
                .all(|q| &*q.namespace == "Logs" && q.dimensions[0] == ("ApiId", "r".to_string()))
        );
        assert_eq!(
            p.queries[1].dimensions[2],
            ("Reason", "QUOTA_EXCEEDED".to_string())
        );
    }

    #[test]
    fn a_canary_is_read_from_its_own_access_log_group_and_only_there() {
        let mut a = api("r", ApiType::Rest, &[("prod", false), ("beta", false)]);
        for s in &mut a.stages {
            s.access_log_group = Some(format!("/logs/{}", s.name));
        }
        a.stages[0].canary = Some(crate::inventory::Canary {
            percent: 10.0,
            deployment_id: "d2".into(),
            use_stage_cache: false,
        });
        let log_events = PlanOptions {
            access_logs: Some(AccessLogs::LogEvents { log_group: None }),
            ..opts()
        };
        let p = plan_target(&inv(vec![a.clone()]), &log_events);
        let canary: Vec<&Query> = p.queries.iter().filter(|q| q.family.canary()).collect();
        // Responses (Sum) and latency (Sum, SampleCount, p50, p90, p99, Maximum), prod only.
        assert_eq!(canary.len(), 7);
        assert!(canary.iter().all(|q| {
            q.log_group.as_deref() == Some("/logs/prod/Canary")
                && q.labels.stage.as_deref() == Some("prod")
                && q.answer() == Answer::Logs
        }));
        // Every access-log query comes after the metric queries, in one batch.
        let ranges = p.batch_ranges();
        assert!(ranges.last().is_some_and(|r| r.end == p.queries.len()));
        // Without reading events (a metric filter), or without the stage's access logging,
        // there is nothing to read the canary from.
        let metric_filter = PlanOptions {
            access_logs: Some(AccessLogs::MetricFilter {
                namespace: Arc::from("Logs"),
                metric: Arc::from("Throttled"),
            }),
            ..opts()
        };
        let p = plan_target(&inv(vec![a.clone()]), &metric_filter);
        assert!(!p.queries.iter().any(|q| q.family.canary()));
        a.stages[0].access_log_group = None;
        let p = plan_target(&inv(vec![a]), &log_events);
        assert!(!p.queries.iter().any(|q| q.family.canary()));
    }

    #[test]
    fn cost_is_metrics_requested_times_price() {
        let c = cost(1000, 2, Duration::from_secs(60), 0.01);
        assert_eq!(c.cycles_per_month, 43_200.0);
        assert!((c.usd_per_month - 432.0).abs() < 1e-9);
    }

    /// The README's cost table: 100 REST stages (50 APIs × 2 stages, the default latency
    /// statistics) at 60 s, 70 % of them idle and read every 10 minutes. Prints the figures
    /// (`cargo test --lib fleet -- --nocapture`) and holds them to the README's.
    #[test]
    fn the_hundred_stage_fleet_cost_table() {
        let apis = (0..50)
            .map(|i| {
                api(
                    &format!("a{i}"),
                    ApiType::Rest,
                    &[("prod", false), ("dev", false)],
                )
            })
            .collect();
        let plan = plan_target(&inv(apis), &opts());
        let shape = plan.shape();
        assert_eq!(shape.metric_queries, 1500);
        // 5 metrics a stage, and the API-level aggregates of 50 APIs.
        assert_eq!(shape.stage_stream_metrics, 100 * 5 + 50 * 5);
        let (minute, ten) = (Duration::from_secs(60), Duration::from_secs(600));
        let c = compare(shape, minute, ten, false);
        let p = compare(shape, minute, ten, true);
        let usd = |m: f64| m / 1000.0 * 0.01;
        let stream = |u: f64| u / 1000.0 * STREAM_PRICE_PER_1000_UPDATES;
        println!("polling {:.0} ${:.2}", c.polling, usd(c.polling));
        println!("idle {:.0} ${:.2}", c.idle, usd(c.idle));
        println!(
            "stream {:.0} ${:.2} / idle {:.0} ${:.2}; polled {:.0} ${:.2}",
            c.stream_updates,
            stream(c.stream_updates),
            c.stream_updates_idle,
            stream(c.stream_updates_idle),
            c.stream_polled,
            usd(c.stream_polled)
        );
        println!(
            "stream+percentiles {:.0} ${:.2} / idle {:.0} ${:.2}; polled {:.0}",
            p.stream_updates,
            stream(p.stream_updates),
            p.stream_updates_idle,
            stream(p.stream_updates_idle),
            p.stream_polled
        );
        println!(
            "yace {:.0} ${:.2} list {:.0}",
            c.yace,
            usd(c.yace),
            c.yace_list_metrics
        );
        let round = |x: f64| (x * 100.0).round() / 100.0;
        assert_eq!(round(usd(c.polling)), 648.0);
        assert_eq!(round(usd(c.idle)), 239.76);
        assert_eq!(round(stream(c.stream_updates)), 97.2);
        assert_eq!(round(usd(c.stream_polled)), 95.9);
        assert_eq!(round(stream(p.stream_updates)), 136.08);
        assert_eq!(p.stream_polled, 0.0);
        assert_eq!(round(usd(c.yace)), 972.0);
    }

    #[test]
    fn a_stream_answers_every_aws_statistic_but_polled_percentiles_and_batches_never_mix() {
        let mut o = opts();
        o.stream = Some(Streamed { percentiles: false });
        o.access_logs = Some(AccessLogs::MetricFilter {
            namespace: Arc::from("Custom"),
            metric: Arc::from("Throttled"),
        });
        let apis = (0..40)
            .map(|i| api(&format!("a{i}"), ApiType::Rest, &[("prod", false)]))
            .collect();
        let plan = plan_target(&inv(apis), &o);
        // 15 queries a stage: 6 percentiles polled, 9 streamed; 2 metric-filter queries polled.
        assert_eq!(plan.metric_queries(), 40 * 8);
        assert_eq!(plan.streamed_queries(), 40 * 9);
        assert_eq!(plan.calls(), 1);
        for batch in plan.batches() {
            assert!(batch.iter().all(|q| q.streamed == batch[0].streamed));
        }
        assert!(plan.queries.iter().all(|q| q.streamed
            == (q.namespace.starts_with("AWS/") && !matches!(q.stat, Stat::Percentile(_)))));
        o.stream = Some(Streamed { percentiles: true });
        let plan = plan_target(
            &inv(vec![api("a", ApiType::Http, &[("$default", false)])]),
            &o,
        );
        assert_eq!(plan.metric_queries(), 2);
    }
}
