//! The immutable view readers get: built once per cycle from the store and the inventories,
//! then swapped in whole, so `/metrics` and OTLP never see half a cycle and never wait on AWS.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use crate::contract::{self, Def};
use crate::inventory::{Stage, TargetInventory, Throttle};
use crate::model::{Family, FamilyKind, Labels, SeriesLabels, Stat};
use crate::store::Store;

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

/// The series of one family of the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySnapshot {
    pub def: &'static Def,
    pub samples: Vec<Sample>,
}

/// Everything the API Gateway side of `/metrics` (and of the OTLP push) shows.
///
/// A snapshot also keeps one view a reader derives from it ([`Snapshot::derived`]), such as
/// its Prometheus text: made on first use, shared by every later reader, and freed with the
/// snapshot when the next one replaces it. The view is type-erased, so the snapshot knows
/// nothing of its readers. Clones start without it; equality and `Debug` ignore it.
#[derive(Default)]
pub struct Snapshot {
    pub families: Vec<FamilySnapshot>,
    derived: OnceLock<Arc<dyn Any + Send + Sync>>,
}

impl Snapshot {
    pub fn new(families: Vec<FamilySnapshot>) -> Snapshot {
        Snapshot {
            families,
            derived: OnceLock::new(),
        }
    }

    /// Samples across all families (a summary counts once).
    pub fn series(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }

    /// The view `make` derives from this snapshot, made once (concurrent callers wait for
    /// the first) and kept with the snapshot. `None` when another kind of view was kept
    /// first: the caller then makes its own. Only for snapshots nobody changes any more,
    /// such as [`SharedSnapshot::load`]'s.
    pub fn derived<T: Any + Send + Sync>(
        &self,
        make: impl FnOnce(&Snapshot) -> T,
    ) -> Option<Arc<T>> {
        let view = self
            .derived
            .get_or_init(|| Arc::new(make(self)) as Arc<dyn Any + Send + Sync>);
        Arc::clone(view).downcast::<T>().ok()
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
        if key.family.split() && key.labels.cause.is_none() {
            continue;
        }
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
        match info.kind() {
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
        families.push(FamilySnapshot {
            def: family.def_at(route),
            samples,
        });
    }
    for (family, route, samples) in maxima {
        if let Some(def) = family.max_def_at(route) {
            families.push(FamilySnapshot { def, samples });
        }
    }
    let (api_info, stage_info) = info_samples(inventories, tags);
    let (rate, burst, timeouts, quotas) = limit_samples(inventories);
    let integrations = integration_samples(inventories);
    for (def, samples) in [
        (&contract::API_INFO, api_info),
        (&contract::STAGE_INFO, stage_info),
        (&contract::CANARY_TRAFFIC, canary_samples(inventories)),
        (&contract::THROTTLE_RATE_LIMIT, rate),
        (&contract::THROTTLE_BURST_LIMIT, burst),
        (&contract::INTEGRATION_TIMEOUT, timeouts),
        (&contract::INTEGRATION_INFO, integrations),
        (&contract::USAGE_PLAN_QUOTA_LIMIT, quotas),
    ] {
        families.push(FamilySnapshot { def, samples });
    }
    families.retain(|f| !f.samples.is_empty());
    Snapshot::new(families)
}

/// The canary of each REST stage that has one (`stage_canary_traffic_percent`).
fn canary_samples(inventories: &[&TargetInventory]) -> Vec<Sample> {
    let mut samples = Vec::new();
    for inv in inventories {
        for api in &inv.apis {
            for stage in &api.stages {
                let Some(c) = &stage.canary else {
                    continue;
                };
                samples.push(Sample {
                    labels: Arc::new(inv.labels(api, Some(&stage.name))),
                    extra: vec![
                        ("deployment_id".into(), c.deployment_id.clone()),
                        ("use_stage_cache".into(), c.use_stage_cache.to_string()),
                    ],
                    value: Value::Single(c.percent),
                });
            }
        }
    }
    samples
}

/// What each method or route integrates with (`integration_info`).
fn integration_samples(inventories: &[&TargetInventory]) -> Vec<Sample> {
    let mut samples = Vec::new();
    for inv in inventories {
        for api in inv.apis.iter().filter(|a| !a.integrations.is_empty()) {
            let labels = Arc::new(inv.labels(api, None));
            for i in &api.integrations {
                samples.push(Sample {
                    labels: Arc::clone(&labels),
                    extra: i.labels(),
                    value: Value::Single(1.0),
                });
            }
        }
    }
    samples
}

/// Throttle limits (account, stage, method/route, usage plan), integration timeouts and
/// usage plan quotas.
fn limit_samples(
    inventories: &[&TargetInventory],
) -> (Vec<Sample>, Vec<Sample>, Vec<Sample>, Vec<Sample>) {
    let (mut rate, mut burst, mut timeouts, mut quotas) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut push = |labels: &Labels, extra: Vec<(String, String)>, t: &Throttle| {
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
            let limited = |s: &&Stage| s.throttle.is_some() || !s.route_throttles.is_empty();
            // Labels only for what has limits: most stages of a large fleet have none.
            if api.integrations.is_empty() && !api.stages.iter().any(|s| limited(&s)) {
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
            for i in &api.integrations {
                timeouts.push(Sample {
                    labels: Arc::clone(&api_labels),
                    extra: i.route.labels(),
                    value: Value::Single(i.timeout),
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
