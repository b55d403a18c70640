//! The immutable view readers get: built once per cycle from the store and the inventories,
//! then swapped in whole, so `/metrics` and OTLP never see half a cycle and never wait on AWS.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::inventory::TargetInventory;
use crate::model::{Family, FamilyKind, Labels, SeriesLabels, Stat};
use crate::store::Store;

/// How a family is typed in the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Summary,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Single(f64),
    Summary {
        sum: f64,
        count: f64,
        /// (quantile, value) pairs, ascending.
        quantiles: Vec<(f64, f64)>,
    },
}

/// One exported series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    /// Labels beyond the contract's identifying ones (info gauges).
    pub extra: Vec<(String, String)>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FamilySnapshot {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// Everything the API Gateway side of `/metrics` shows.
///
/// Besides its families, a snapshot carries the cache of its own Prometheus text, which
/// [`crate::render`] fills the first time a published (shared, hence immutable) snapshot is
/// scraped; every later scrape of the same snapshot copies the text. Clones start with an
/// empty cache, and equality and `Debug` ignore it.
#[derive(Default)]
pub struct Snapshot {
    pub families: Vec<FamilySnapshot>,
    encoded: OnceLock<Option<EncodedFamilies>>,
}

/// The text exposition of a snapshot's families, in name order, ready to be merged with the
/// self-metrics. Built by [`crate::render`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EncodedFamilies {
    /// The text of every family, one after the other.
    pub text: String,
    /// Each family's name and its bytes in `text`, sorted by name.
    pub families: Vec<(&'static str, Range<usize>)>,
}

impl Snapshot {
    pub fn new(families: Vec<FamilySnapshot>) -> Snapshot {
        Snapshot {
            families,
            encoded: OnceLock::new(),
        }
    }

    /// Samples across all families (a summary counts once).
    pub fn series(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }

    /// The cached text of this snapshot, computed by `encode` on first use (`None`: the
    /// snapshot cannot be encoded on its own, and every render takes the general path).
    /// Only for snapshots nobody mutates any more, such as [`SharedSnapshot::load`]'s.
    pub fn encoded_with(
        &self,
        encode: impl FnOnce(&Snapshot) -> Option<EncodedFamilies>,
    ) -> Option<&EncodedFamilies> {
        self.encoded.get_or_init(|| encode(self)).as_ref()
    }
}

impl Clone for Snapshot {
    fn clone(&self) -> Snapshot {
        Snapshot::new(self.families.clone())
    }
}

impl PartialEq for Snapshot {
    fn eq(&self, other: &Snapshot) -> bool {
        self.families == other.families
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("families", &self.families)
            .finish_non_exhaustive()
    }
}

/// Names and help of the info families, for the collector's descriptors.
pub const API_INFO: (&str, &str) = (
    "aws_apigateway_api_info",
    "Always 1 for each API in the inventory; labels describe it. From API Gateway discovery, refreshed on discovery.refresh_interval.",
);
pub const STAGE_INFO: (&str, &str) = (
    "aws_apigateway_stage_info",
    "Always 1 for each exported stage; labels say whether detailed (per-route) metrics and the cache are enabled. From API Gateway discovery.",
);

/// Builds the snapshot. `settled` is the start of the period that quantile and max gauges
/// report; `tags` are the API tags copied into `api_info` as `tag_<name>`.
pub fn build(
    store: &Store,
    inventories: &[&TargetInventory],
    settled: i64,
    tags: &[String],
) -> Snapshot {
    // Grouped by Prometheus name: the two access-log families share one, told apart by
    // `reason`; route-level series (detailed metrics) have families of their own.
    let mut counters: Vec<(Family, bool, Vec<Sample>)> = Vec::new();
    let mut maxima: Vec<(Family, bool, Vec<Sample>)> = Vec::new();
    for (key, view) in store.iter(settled) {
        let info = key.family.info();
        let route = key.labels.route.is_some();
        let name = key.family.name_at(route);
        let bucket = |list: &mut Vec<(Family, bool, Vec<Sample>)>| -> usize {
            match list.iter().position(|(f, r, _)| f.name_at(*r) == name) {
                Some(i) => i,
                None => {
                    list.push((key.family, route, Vec::new()));
                    list.len() - 1
                }
            }
        };
        match info.kind {
            FamilyKind::Counter => {
                let i = bucket(&mut counters);
                counters[i].2.push(Sample {
                    labels: Arc::clone(&key.labels),
                    extra: info
                        .reason
                        .map(|r| vec![("reason".to_string(), r.to_string())])
                        .unwrap_or_default(),
                    value: Value::Single(view.counter(Stat::Sum).unwrap_or(0.0) * info.scale),
                });
            }
            FamilyKind::Summary => {
                let mut quantiles: Vec<(f64, f64)> = view
                    .gauges
                    .iter()
                    .filter_map(|(s, v)| Some((s.quantile()?, v * info.scale)))
                    .collect();
                quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
                let i = bucket(&mut counters);
                counters[i].2.push(Sample {
                    labels: Arc::clone(&key.labels),
                    extra: Vec::new(),
                    value: Value::Summary {
                        sum: view.counter(Stat::Sum).unwrap_or(0.0) * info.scale,
                        count: view.counter(Stat::SampleCount).unwrap_or(0.0),
                        quantiles,
                    },
                });
                if let Some((_, max)) = view.gauges.iter().find(|(s, _)| *s == Stat::Maximum) {
                    let i = bucket(&mut maxima);
                    maxima[i].2.push(Sample {
                        labels: Arc::clone(&key.labels),
                        extra: Vec::new(),
                        value: Value::Single(max * info.scale),
                    });
                }
            }
        }
    }
    let mut families = Vec::new();
    for (family, route, samples) in counters {
        let info = family.info();
        families.push(FamilySnapshot {
            name: family.name_at(route),
            help: info.help,
            kind: match info.kind {
                FamilyKind::Counter => Kind::Counter,
                FamilyKind::Summary => Kind::Summary,
            },
            samples,
        });
    }
    for (family, route, samples) in maxima {
        families.push(FamilySnapshot {
            name: family.max_name_at(route).unwrap_or_default(),
            help: max_help(family),
            kind: Kind::Gauge,
            samples,
        });
    }
    let (api_info, stage_info) = info_samples(inventories, tags);
    let (rate, burst, timeouts, quotas) = limit_samples(inventories);
    for ((name, help), samples) in [
        (API_INFO, api_info),
        (STAGE_INFO, stage_info),
        (RATE_LIMIT, rate),
        (BURST_LIMIT, burst),
        (TIMEOUT, timeouts),
        (QUOTA, quotas),
    ] {
        families.push(FamilySnapshot {
            name,
            help,
            kind: Kind::Gauge,
            samples,
        });
    }
    families.retain(|f| !f.samples.is_empty());
    Snapshot::new(families)
}

pub const RATE_LIMIT: (&str, &str) = (
    "aws_apigateway_throttle_rate_limit",
    "Steady-state requests per second API Gateway allows, by scope: account (GetAccount; shared by every API of the region), stage (the stage's default method or route settings) or method (a method's or route's own settings). From API Gateway discovery.",
);
pub const BURST_LIMIT: (&str, &str) = (
    "aws_apigateway_throttle_burst_limit",
    "Burst of requests API Gateway allows, by scope (account, stage, method), as for aws_apigateway_throttle_rate_limit. From API Gateway discovery.",
);
pub const QUOTA: (&str, &str) = (
    "aws_apigateway_usage_plan_quota_limit",
    "Requests a usage plan allows each API key per period (period=\"DAY\"|\"WEEK\"|\"MONTH\") on an API stage. From API Gateway GetUsagePlans.",
);
pub const TIMEOUT: (&str, &str) = (
    "aws_apigateway_integration_timeout_seconds",
    "Configured integration timeout of a method or route, in seconds (29 s unless raised). From API Gateway discovery.",
);

/// Throttle limits (account, stage, method/route) and integration timeouts.
/// Throttle limits (account, stage, method/route, usage plan), integration timeouts and
/// usage plan quotas.
fn limit_samples(
    inventories: &[&TargetInventory],
) -> (Vec<Sample>, Vec<Sample>, Vec<Sample>, Vec<Sample>) {
    let (mut rate, mut burst, mut timeouts, mut quotas) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut push =
        |labels: &Labels, extra: Vec<(String, String)>, t: &crate::inventory::Throttle| {
            rate.push(Sample {
                labels: Arc::clone(labels),
                extra: extra.clone(),
                value: Value::Single(t.rate),
            });
            burst.push(Sample {
                labels: Arc::clone(labels),
                extra,
                value: Value::Single(t.burst),
            });
        };
    let scope = |s: &str| vec![("scope".to_string(), s.to_string())];
    for inv in inventories {
        if let Some(t) = &inv.account_throttle {
            let labels = Arc::new(SeriesLabels::account(&inv.account_id, &inv.region));
            push(&labels, scope("account"), t);
        }
        for api in &inv.apis {
            let limited = |s: &&crate::inventory::Stage| {
                s.throttle.is_some() || !s.route_throttles.is_empty()
            };
            // Labels only for what has limits: most stages of a large fleet have none.
            if api.timeouts.is_empty() && !api.stages.iter().any(|s| limited(&s)) {
                continue;
            }
            let base = inv.labels(api, None);
            for stage in api.stages.iter().filter(limited) {
                let labels = Arc::new(SeriesLabels {
                    stage: Some(stage.name.clone()),
                    ..base.clone()
                });
                if let Some(t) = &stage.throttle {
                    push(&labels, scope("stage"), t);
                }
                for (route, t) in &stage.route_throttles {
                    let mut extra = scope("method");
                    extra.extend(route.labels());
                    push(&labels, extra, t);
                }
            }
            let api_labels = Arc::new(base);
            for (route, seconds) in &api.timeouts {
                timeouts.push(Sample {
                    labels: Arc::clone(&api_labels),
                    extra: route.labels(),
                    value: Value::Single(*seconds),
                });
            }
        }
        for plan in &inv.usage_plans {
            for (api_id, stage) in &plan.api_stages {
                let Some(api) = inv.apis.iter().find(|a| &a.id == api_id) else {
                    continue;
                };
                if !api.stages.iter().any(|s| &s.name == stage) {
                    continue;
                }
                let labels = Arc::new(inv.labels(api, Some(stage)));
                let plan_labels = vec![
                    ("usage_plan_id".to_string(), plan.id.clone()),
                    ("usage_plan_name".to_string(), plan.name.clone()),
                ];
                if let Some(t) = &plan.throttle {
                    let mut extra = scope("usage_plan");
                    extra.extend(plan_labels.clone());
                    push(&labels, extra, t);
                }
                if let Some((limit, period)) = &plan.quota {
                    let mut extra = plan_labels;
                    extra.push(("period".to_string(), period.clone()));
                    quotas.push(Sample {
                        labels,
                        extra,
                        value: Value::Single(*limit),
                    });
                }
            }
        }
    }
    (rate, burst, timeouts, quotas)
}

pub fn max_help(family: Family) -> &'static str {
    match family {
        Family::Latency => {
            "Maximum Latency of the latest settled CloudWatch period, in seconds. Polled from CloudWatch AWS/ApiGateway, not live."
        }
        _ => {
            "Maximum IntegrationLatency of the latest settled CloudWatch period, in seconds. Polled from CloudWatch AWS/ApiGateway, not live."
        }
    }
}

/// Turns an API tag key into a label name: `tag_` + the key with every character outside
/// `[a-zA-Z0-9_]` replaced by `_`.
pub fn tag_label(tag: &str) -> String {
    let mut name = String::from("tag_");
    name.extend(tag.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name
}

fn info_samples(inventories: &[&TargetInventory], tags: &[String]) -> (Vec<Sample>, Vec<Sample>) {
    let mut apis = Vec::new();
    let mut stages = Vec::new();
    for inv in inventories {
        for api in &inv.apis {
            let base = inv.labels(api, None);
            let mut extra = vec![("endpoint_type".to_string(), api.endpoint_type.clone())];
            for tag in tags {
                extra.push((
                    tag_label(tag),
                    api.tags.get(tag).cloned().unwrap_or_default(),
                ));
            }
            apis.push(Sample {
                labels: Arc::new(base.clone()),
                extra,
                value: Value::Single(1.0),
            });
            for stage in &api.stages {
                stages.push(Sample {
                    labels: Arc::new(SeriesLabels {
                        stage: Some(stage.name.clone()),
                        ..base.clone()
                    }),
                    extra: vec![
                        (
                            "detailed_metrics".into(),
                            stage.detailed_metrics.to_string(),
                        ),
                        ("cache_enabled".into(), stage.cache_enabled.to_string()),
                    ],
                    value: Value::Single(1.0),
                });
            }
        }
    }
    (apis, stages)
}

/// The latest snapshot and readiness, shared between the poll loop and readers.
#[derive(Debug, Default)]
pub struct SharedSnapshot {
    current: RwLock<Arc<Snapshot>>,
    ready: AtomicBool,
}

impl SharedSnapshot {
    pub fn new() -> Arc<SharedSnapshot> {
        Arc::new(SharedSnapshot::default())
    }

    /// The current snapshot; the lock is held only to clone the `Arc`.
    pub fn load(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn store(&self, snapshot: Snapshot) {
        let next = Arc::new(snapshot);
        match self.current.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
