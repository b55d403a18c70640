//! Prometheus exposition of the snapshot: a custom [`Collector`] in the same registry as the
//! self-metrics, so one `gather()` yields everything and the text encoder does the escaping.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::model::{Family, FamilyKind};
use crate::snapshot::{
    API_INFO, BURST_LIMIT, FamilySnapshot, Kind, RATE_LIMIT, STAGE_INFO, SharedSnapshot, TIMEOUT,
    Value, max_help,
};

/// Reads the current snapshot on every collect.
pub struct SnapshotCollector {
    shared: Arc<SharedSnapshot>,
    descs: Vec<Desc>,
}

impl SnapshotCollector {
    pub fn new(shared: Arc<SharedSnapshot>) -> prometheus::Result<SnapshotCollector> {
        let mut descs = Vec::new();
        for family in Family::ALL {
            let info = family.info();
            // The access-log families share one name.
            if family == Family::QuotaExceeded {
                continue;
            }
            descs.push(Desc::new(
                info.name.into(),
                info.help.into(),
                vec![],
                Default::default(),
            )?);
            if info.kind == FamilyKind::Summary
                && let Some(max) = family.max_name()
            {
                descs.push(Desc::new(
                    max.into(),
                    max_help(family).into(),
                    vec![],
                    Default::default(),
                )?);
            }
        }
        for (name, help) in [API_INFO, STAGE_INFO, RATE_LIMIT, BURST_LIMIT, TIMEOUT] {
            descs.push(Desc::new(
                name.into(),
                help.into(),
                vec![],
                Default::default(),
            )?);
        }
        Ok(SnapshotCollector { shared, descs })
    }
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.shared.load().families.iter().map(to_proto).collect()
    }
}

fn label(name: &str, value: &str) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn to_proto(f: &FamilySnapshot) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(f.name.to_string());
    mf.set_help(f.help.to_string());
    mf.set_field_type(match f.kind {
        Kind::Counter => MetricType::COUNTER,
        Kind::Gauge => MetricType::GAUGE,
        Kind::Summary => MetricType::SUMMARY,
    });
    let metrics = f
        .samples
        .iter()
        .map(|s| {
            let mut labels: Vec<proto::LabelPair> = s
                .labels
                .pairs()
                .into_iter()
                .map(|(k, v)| label(k, v))
                .collect();
            labels.extend(s.extra.iter().map(|(k, v)| label(k, v)));
            let mut m = proto::Metric::from_label(labels);
            match (&s.value, f.kind) {
                (Value::Single(v), Kind::Counter) => {
                    let mut c = proto::Counter::default();
                    c.set_value(*v);
                    m.set_counter(c);
                }
                (Value::Single(v), _) => {
                    let mut g = proto::Gauge::default();
                    g.set_value(*v);
                    m.set_gauge(g);
                }
                (
                    Value::Summary {
                        sum,
                        count,
                        quantiles,
                    },
                    _,
                ) => {
                    let mut summary = proto::Summary::default();
                    summary.set_sample_sum(*sum);
                    // SampleCount is a whole number of requests.
                    summary.set_sample_count(count.round().max(0.0) as u64);
                    summary.set_quantile(
                        quantiles
                            .iter()
                            .map(|(q, v)| {
                                let mut quantile = proto::Quantile::default();
                                quantile.set_quantile(*q);
                                quantile.set_value(*v);
                                quantile
                            })
                            .collect(),
                    );
                    m.set_summary(summary);
                }
            }
            m
        })
        .collect();
    mf.set_metric(metrics);
    mf
}

/// The text exposition (format 0.0.4) of everything in `registry`.
pub fn encode(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    let mut buf = Vec::with_capacity(64 * 1024);
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    Ok(buf)
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
