//! Snapshot and self-metrics → one OTLP `ExportMetricsServiceRequest`.
//!
//! Mapping (also in `docs/otlp.md`); names and attributes are the metric contract's, exactly
//! as `/metrics` shows them:
//!
//! - counter families and the `_sum`/`_count` of summaries → monotonic cumulative `Sum`;
//! - the quantiles of a summary → a `Gauge` named like the family with a `quantile`
//!   attribute (as in the text format); max, info, limit and timeout families → `Gauge`;
//! - self-metric histograms → cumulative explicit-bucket `Histogram`.
//!
//! The converter remembers, per series, the start time of its cumulative value: the
//! exporter's start for series present at the first collection, otherwise the previous
//! collection (the series did not exist then, or its counter was reset since: a value
//! lower than the last one starts a new cumulative run). A series that leaves the snapshot
//! is sent once more as a point flagged "no recorded value" (which Prometheus-compatible
//! backends turn into a staleness marker), until an export with that marker succeeds,
//! and is not sent again.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus::proto::{MetricFamily, MetricType};

use crate::contract::{self, Type};
use crate::snapshot::{FamilySnapshot, Snapshot, Value};

/// Stale markers kept for an unreachable collector are capped at this many series.
const MAX_PENDING_STALE: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Monotonic cumulative sum.
    Sum,
    Gauge,
    /// Cumulative explicit-bucket histogram.
    Histogram,
}

/// What a metric is; shared by its series' state.
#[derive(Debug)]
struct Meta {
    name: String,
    description: String,
    unit: &'static str,
    shape: Shape,
}

#[derive(Debug)]
struct Series {
    meta: Arc<Meta>,
    attributes: Vec<KeyValue>,
    /// Start of the cumulative run (Sum, Histogram); 0 for gauges.
    start: u64,
    /// Last value (sum) or count (histogram), to detect resets.
    last: f64,
}

/// A point's payload.
enum Point {
    Double(f64),
    Int(i64),
    Histogram {
        count: u64,
        sum: f64,
        bounds: Vec<f64>,
        /// Per-bucket (not cumulative) counts, `bounds.len() + 1` of them.
        counts: Vec<u64>,
    },
}

/// Builds requests and keeps the per-series state between them.
#[derive(Debug)]
pub struct Converter {
    resource: Resource,
    scope: InstrumentationScope,
    /// When this exporter started (ns since the epoch).
    started: u64,
    /// The previous collection (ns), `None` before the first.
    last_collect: Option<u64>,
    /// Series of the previous collection, by [`series_key`].
    series: HashMap<String, Series>,
    /// Series that left, still to be sent once as "no recorded value".
    stale: HashMap<String, Series>,
}

impl Converter {
    /// `resource` are the resource attributes; `started` is the exporter's start (ns).
    pub fn new<'a>(
        resource: impl IntoIterator<Item = (&'a String, &'a String)>,
        started: u64,
    ) -> Converter {
        Converter {
            resource: Resource {
                attributes: resource.into_iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            },
            scope: InstrumentationScope {
                name: env!("CARGO_PKG_NAME").to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                ..Default::default()
            },
            started,
            last_collect: None,
            series: HashMap::new(),
            stale: HashMap::new(),
        }
    }

    /// The request for the API Gateway `snapshot` and the self-metric families `own`,
    /// collected at `now` (ns since the epoch).
    pub fn build(
        &mut self,
        snapshot: &Snapshot,
        own: &[MetricFamily],
        now: u64,
    ) -> ExportMetricsServiceRequest {
        let mut b = Build {
            conv: self,
            now,
            metrics: Vec::new(),
            seen: HashMap::new(),
        };
        for family in &snapshot.families {
            b.family(family);
        }
        for family in own {
            b.prometheus_family(family);
        }
        let Build { metrics, seen, .. } = b;
        self.finish(metrics, seen, now)
    }

    /// Stale markers were delivered: forget them.
    pub fn delivered(&mut self) {
        self.stale.clear();
    }

    fn finish(
        &mut self,
        mut metrics: Vec<Metric>,
        seen: HashMap<String, Series>,
        now: u64,
    ) -> ExportMetricsServiceRequest {
        let previous = std::mem::replace(&mut self.series, seen);
        for (key, series) in previous {
            if !self.series.contains_key(&key) {
                self.stale.insert(key, series);
            }
        }
        self.stale.retain(|key, _| !self.series.contains_key(key));
        if self.stale.len() > MAX_PENDING_STALE {
            self.stale.clear();
        }
        let mut stale: Vec<&Series> = self.stale.values().collect();
        stale.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        for series in stale {
            let index = match metrics.iter().position(|m| m.name == series.meta.name) {
                Some(i) => i,
                None => {
                    metrics.push(new_metric(&series.meta));
                    metrics.len() - 1
                }
            };
            let flags = DataPointFlags::NoRecordedValueMask as u32;
            match &mut metrics[index].data {
                Some(metric::Data::Sum(s)) => s.data_points.push(NumberDataPoint {
                    attributes: series.attributes.clone(),
                    start_time_unix_nano: series.start,
                    time_unix_nano: now,
                    flags,
                    ..Default::default()
                }),
                Some(metric::Data::Gauge(g)) => g.data_points.push(NumberDataPoint {
                    attributes: series.attributes.clone(),
                    time_unix_nano: now,
                    flags,
                    ..Default::default()
                }),
                Some(metric::Data::Histogram(h)) => h.data_points.push(HistogramDataPoint {
                    attributes: series.attributes.clone(),
                    start_time_unix_nano: series.start,
                    time_unix_nano: now,
                    flags,
                    ..Default::default()
                }),
                _ => {}
            }
        }
        self.last_collect = Some(now);
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(self.scope.clone()),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

/// One collection in progress.
struct Build<'a> {
    conv: &'a Converter,
    now: u64,
    metrics: Vec<Metric>,
    seen: HashMap<String, Series>,
}

impl Build<'_> {
    fn family(&mut self, f: &FamilySnapshot) {
        let def = f.def;
        let description = def.help.to_string();
        match def.kind {
            Type::Counter | Type::Gauge | Type::Histogram => {
                let shape = if def.kind == Type::Counter {
                    Shape::Sum
                } else {
                    Shape::Gauge
                };
                let meta = Arc::new(Meta {
                    name: def.name.to_string(),
                    description,
                    unit: def.unit,
                    shape,
                });
                let index = self.begin(&meta);
                for s in &f.samples {
                    let value = match s.value {
                        Value::Single(v) => v,
                        // What `/metrics` shows for a mistyped sample.
                        Value::Summary { .. } => 0.0,
                    };
                    let attributes = attributes(s, None);
                    self.point(index, &meta, attributes, Point::Double(value));
                }
            }
            Type::Summary => {
                let quantiles = Arc::new(Meta {
                    name: def.name.to_string(),
                    description: description.clone(),
                    unit: def.unit,
                    shape: Shape::Gauge,
                });
                let sum_name = format!("{}_sum", def.name);
                let sum = Arc::new(Meta {
                    unit: def.unit_of(&sum_name),
                    name: sum_name,
                    description: description.clone(),
                    shape: Shape::Sum,
                });
                let count_name = format!("{}_count", def.name);
                let count = Arc::new(Meta {
                    unit: def.unit_of(&count_name),
                    name: count_name,
                    description,
                    shape: Shape::Sum,
                });
                let has_quantiles = f.samples.iter().any(
                    |s| matches!(&s.value, Value::Summary { quantiles, .. } if !quantiles.is_empty()),
                );
                let qi = has_quantiles.then(|| self.begin(&quantiles));
                let si = self.begin(&sum);
                let ci = self.begin(&count);
                for s in &f.samples {
                    let (total, n, qs) = match &s.value {
                        Value::Summary {
                            sum,
                            count,
                            quantiles,
                        } => (*sum, *count, quantiles.as_slice()),
                        Value::Single(_) => (0.0, 0.0, &[][..]),
                    };
                    if let Some(qi) = qi {
                        for (q, v) in qs {
                            let attributes = attributes(s, Some(*q));
                            self.point(qi, &quantiles, attributes, Point::Double(*v));
                        }
                    }
                    self.point(si, &sum, attributes(s, None), Point::Double(total));
                    // A whole number of requests, as `/metrics` shows it.
                    let n = n.round().max(0.0) as i64;
                    self.point(ci, &count, attributes(s, None), Point::Int(n));
                }
            }
        }
    }

    fn prometheus_family(&mut self, f: &MetricFamily) {
        let shape = match f.get_field_type() {
            MetricType::COUNTER => Shape::Sum,
            MetricType::GAUGE => Shape::Gauge,
            MetricType::HISTOGRAM => Shape::Histogram,
            // The self-metrics have neither.
            MetricType::SUMMARY | MetricType::UNTYPED => return,
        };
        let meta = Arc::new(Meta {
            name: f.name().to_string(),
            description: f.help().to_string(),
            unit: unit(f.name()),
            shape,
        });
        let index = self.begin(&meta);
        for m in f.get_metric() {
            let attributes: Vec<KeyValue> = m
                .get_label()
                .iter()
                .map(|l| kv(l.name(), l.value()))
                .collect();
            let point = match f.get_field_type() {
                MetricType::COUNTER => Point::Double(m.get_counter().get_value()),
                MetricType::GAUGE => Point::Double(m.get_gauge().get_value()),
                _ => {
                    let h = m.get_histogram();
                    let mut bounds = Vec::new();
                    let mut counts = Vec::new();
                    let mut below = 0;
                    for bucket in h.get_bucket() {
                        if bucket.upper_bound().is_infinite() {
                            continue;
                        }
                        bounds.push(bucket.upper_bound());
                        counts.push(bucket.cumulative_count().saturating_sub(below));
                        below = bucket.cumulative_count();
                    }
                    counts.push(h.get_sample_count().saturating_sub(below));
                    Point::Histogram {
                        count: h.get_sample_count(),
                        sum: h.get_sample_sum(),
                        bounds,
                        counts,
                    }
                }
            };
            self.point(index, &meta, attributes, point);
        }
    }

    /// Adds an empty metric; its index.
    fn begin(&mut self, meta: &Meta) -> usize {
        self.metrics.push(new_metric(meta));
        self.metrics.len() - 1
    }

    /// Adds a point, with its cumulative start time, and remembers the series.
    fn point(&mut self, index: usize, meta: &Arc<Meta>, attributes: Vec<KeyValue>, point: Point) {
        let key = series_key(&meta.name, &attributes);
        let level = match &point {
            Point::Double(v) => *v,
            Point::Int(v) => *v as f64,
            Point::Histogram { count, .. } => *count as f64,
        };
        let start = match meta.shape {
            Shape::Gauge => 0,
            Shape::Sum | Shape::Histogram => {
                match (self.conv.series.get(&key), self.conv.last_collect) {
                    // Continues (a NaN never counts as a reset).
                    (Some(prev), _) if level.partial_cmp(&prev.last) != Some(Ordering::Less) => {
                        prev.start
                    }
                    // Reset since, or new since the previous collection.
                    (_, Some(previous)) => previous,
                    // Present from the first collection on.
                    (None, None) | (Some(_), None) => self.conv.started,
                }
            }
        };
        let now = self.now;
        match (&mut self.metrics[index].data, point) {
            (Some(metric::Data::Sum(s)), Point::Double(v)) => s.data_points.push(number(
                attributes.clone(),
                start,
                now,
                number_data_point::Value::AsDouble(v),
            )),
            (Some(metric::Data::Sum(s)), Point::Int(v)) => s.data_points.push(number(
                attributes.clone(),
                start,
                now,
                number_data_point::Value::AsInt(v),
            )),
            (Some(metric::Data::Gauge(g)), Point::Double(v)) => g.data_points.push(number(
                attributes.clone(),
                0,
                now,
                number_data_point::Value::AsDouble(v),
            )),
            (Some(metric::Data::Gauge(g)), Point::Int(v)) => g.data_points.push(number(
                attributes.clone(),
                0,
                now,
                number_data_point::Value::AsInt(v),
            )),
            (
                Some(metric::Data::Histogram(h)),
                Point::Histogram {
                    count,
                    sum,
                    bounds,
                    counts,
                },
            ) => h.data_points.push(HistogramDataPoint {
                attributes: attributes.clone(),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count,
                sum: Some(sum),
                bucket_counts: counts,
                explicit_bounds: bounds,
                ..Default::default()
            }),
            _ => return,
        }
        self.seen.insert(
            key,
            Series {
                meta: Arc::clone(meta),
                attributes,
                start,
                last: level,
            },
        );
    }
}

fn number(
    attributes: Vec<KeyValue>,
    start: u64,
    now: u64,
    value: number_data_point::Value,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(value),
        ..Default::default()
    }
}

fn new_metric(meta: &Meta) -> Metric {
    let cumulative = AggregationTemporality::Cumulative as i32;
    Metric {
        name: meta.name.clone(),
        description: meta.description.clone(),
        unit: meta.unit.to_string(),
        data: Some(match meta.shape {
            Shape::Sum => metric::Data::Sum(Sum {
                data_points: Vec::new(),
                aggregation_temporality: cumulative,
                is_monotonic: true,
            }),
            Shape::Gauge => metric::Data::Gauge(Gauge {
                data_points: Vec::new(),
            }),
            Shape::Histogram => metric::Data::Histogram(Histogram {
                data_points: Vec::new(),
                aggregation_temporality: cumulative,
            }),
        }),
        ..Default::default()
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// The contract's labels of a sample, its extra labels, and the quantile if any.
fn attributes(s: &crate::snapshot::Sample, quantile: Option<f64>) -> Vec<KeyValue> {
    let mut out: Vec<KeyValue> = s
        .labels
        .pairs()
        .into_iter()
        .map(|(k, v)| kv(k, v))
        .collect();
    out.extend(s.extra.iter().map(|(k, v)| kv(k, v)));
    if let Some(q) = quantile {
        // `{}` of an f64, as the text format writes it ("0.5", "0.99").
        out.push(kv("quantile", &q.to_string()));
    }
    out
}

/// An unambiguous key for a series: each part length-prefixed.
fn series_key(name: &str, attributes: &[KeyValue]) -> String {
    let mut key = String::with_capacity(64);
    let mut push = |s: &str| {
        key.push_str(&s.len().to_string());
        key.push(':');
        key.push_str(s);
    };
    push(name);
    for a in attributes {
        push(&a.key);
        if let Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }) = &a.value
        {
            push(v);
        }
    }
    key
}

/// The UCUM unit of a series name, from the contract (empty for names outside it).
pub fn unit(name: &str) -> &'static str {
    contract::family_of(name).map_or("", |def| def.unit_of(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ApiType, SeriesLabels};
    use crate::snapshot::{FamilySnapshot, Sample};

    fn labels(stage: &str) -> crate::model::Labels {
        Arc::new(SeriesLabels {
            account_id: "111122223333".into(),
            region: "eu-west-1".into(),
            api_id: "a1b2c3".into(),
            api_name: "orders".into(),
            api_type: ApiType::Rest,
            stage: Some(stage.into()),
            route: None,
            cause: None,
            function: None,
            receiver: None,
        })
    }

    fn counter(name: &'static str, stages: &[(&str, f64)]) -> FamilySnapshot {
        FamilySnapshot {
            def: contract::family_of(name).unwrap(),
            samples: stages
                .iter()
                .map(|(stage, v)| Sample {
                    labels: labels(stage),
                    extra: Vec::new(),
                    value: Value::Single(*v),
                })
                .collect(),
        }
    }

    fn metrics(req: &ExportMetricsServiceRequest) -> &[Metric] {
        &req.resource_metrics[0].scope_metrics[0].metrics
    }

    fn sum_points<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a [NumberDataPoint] {
        match metrics(req)
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.data.as_ref())
        {
            Some(metric::Data::Sum(s)) => &s.data_points,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn attr<'a>(p: &'a [KeyValue], key: &str) -> Option<&'a str> {
        p.iter()
            .find(|a| a.key == key)
            .and_then(|a| match &a.value {
                Some(AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                }) => Some(s.as_str()),
                _ => None,
            })
    }

    #[test]
    fn units_come_from_the_contract_for_route_families_too() {
        for (name, expected) in [
            ("aws_apigateway_requests_total", "{request}"),
            ("aws_apigateway_route_requests_total", "{request}"),
            ("aws_apigateway_route_processed_bytes_total", "By"),
            ("aws_apigateway_route_latency_seconds", "s"),
            ("aws_apigateway_route_latency_seconds_sum", "s"),
            ("aws_apigateway_route_latency_seconds_count", "{request}"),
            ("aws_apigateway_route_latency_max_seconds", "s"),
            ("aws_apigateway_usage_plan_quota_limit", "{request}"),
            ("aws_apigateway_exporter_periods_lost_total", "{period}"),
            ("aws_apigateway_exporter_cycle_duration_seconds_bucket", "s"),
            ("aws_apigateway_stage_info", ""),
            ("not_ours_total", ""),
        ] {
            assert_eq!(unit(name), expected, "{name}");
        }
    }

    #[test]
    fn counters_are_monotonic_cumulative_sums_with_stable_starts() {
        let resource =
            std::collections::BTreeMap::from([("service.name".to_string(), "x".to_string())]);
        let mut c = Converter::new(&resource, 100);
        let name = "aws_apigateway_requests_total";
        let req = c.build(
            &Snapshot::new(vec![counter(name, &[("prod", 5.0)])]),
            &[],
            1_000,
        );
        let m = metrics(&req).iter().find(|m| m.name == name).unwrap();
        assert_eq!(m.unit, "{request}");
        let Some(metric::Data::Sum(s)) = &m.data else {
            panic!()
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &s.data_points[0];
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (100, 1_000));
        assert_eq!(attr(&p.attributes, "stage"), Some("prod"));
        assert_eq!(attr(&p.attributes, "api_type"), Some("rest"));

        // Same series grows: same start. A new series starts at the previous collection.
        let req = c.build(
            &Snapshot::new(vec![counter(name, &[("prod", 7.0), ("beta", 1.0)])]),
            &[],
            2_000,
        );
        let points = sum_points(&req, name);
        assert_eq!(points[0].start_time_unix_nano, 100);
        assert_eq!(points[1].start_time_unix_nano, 1_000);

        // A decrease is a reset: a new run from the previous collection.
        let req = c.build(
            &Snapshot::new(vec![counter(name, &[("prod", 2.0), ("beta", 1.0)])]),
            &[],
            3_000,
        );
        let points = sum_points(&req, name);
        assert_eq!(points[0].start_time_unix_nano, 2_000);
        assert_eq!(points[1].start_time_unix_nano, 1_000);
    }

    #[test]
    fn series_that_leave_get_one_no_recorded_value_point_until_delivered() {
        let mut c = Converter::new(&std::collections::BTreeMap::new(), 0);
        let name = "aws_apigateway_requests_total";
        c.build(
            &Snapshot::new(vec![counter(name, &[("prod", 1.0), ("beta", 1.0)])]),
            &[],
            1,
        );
        let req = c.build(
            &Snapshot::new(vec![counter(name, &[("prod", 2.0)])]),
            &[],
            2,
        );
        let points = sum_points(&req, name);
        assert_eq!(points.len(), 2);
        let gone = &points[1];
        assert_eq!(attr(&gone.attributes, "stage"), Some("beta"));
        assert_eq!(gone.flags, DataPointFlags::NoRecordedValueMask as u32);
        assert_eq!(gone.value, None);
        // Not delivered (export failed): sent again; delivered: never again.
        let req = c.build(
            &Snapshot::new(vec![counter(name, &[("prod", 2.0)])]),
            &[],
            3,
        );
        assert_eq!(sum_points(&req, name).len(), 2);
        c.delivered();
        let req = c.build(
            &Snapshot::new(vec![counter(name, &[("prod", 2.0)])]),
            &[],
            4,
        );
        assert_eq!(sum_points(&req, name).len(), 1);
        // A whole family that leaves keeps its metric for the marker.
        let req = c.build(&Snapshot::new(vec![]), &[], 5);
        assert_eq!(sum_points(&req, name)[0].flags, 1);
    }

    #[test]
    fn summaries_become_a_quantile_gauge_and_two_sums() {
        let mut c = Converter::new(&std::collections::BTreeMap::new(), 0);
        let f = FamilySnapshot {
            def: &contract::LATENCY,
            samples: vec![Sample {
                labels: labels("prod"),
                extra: Vec::new(),
                value: Value::Summary {
                    sum: 12.5,
                    count: 99.6,
                    quantiles: vec![(0.5, 0.1), (0.99, 0.9)],
                },
            }],
        };
        let req = c.build(&Snapshot::new(vec![f]), &[], 1);
        let ms = metrics(&req);
        let names: Vec<_> = ms
            .iter()
            .map(|m| (m.name.as_str(), m.unit.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("aws_apigateway_latency_seconds", "s"),
                ("aws_apigateway_latency_seconds_sum", "s"),
                ("aws_apigateway_latency_seconds_count", "{request}"),
            ]
        );
        let Some(metric::Data::Gauge(g)) = &ms[0].data else {
            panic!()
        };
        let qs: Vec<_> = g
            .data_points
            .iter()
            .map(|p| attr(&p.attributes, "quantile").unwrap())
            .collect();
        assert_eq!(qs, ["0.5", "0.99"]);
        assert_eq!(
            sum_points(&req, "aws_apigateway_latency_seconds_count")[0].value,
            Some(number_data_point::Value::AsInt(100))
        );
    }

    #[test]
    fn self_metrics_keep_their_types() {
        let registry = prometheus::Registry::new();
        let m = crate::selfmetrics::SelfMetrics::new(&registry, true).unwrap();
        m.cycle_duration.observe(0.3);
        m.cycle_duration.observe(7.0);
        m.otlp_exports.with_label_values(&["success"]).inc();
        let mut c = Converter::new(&std::collections::BTreeMap::new(), 0);
        let req = c.build(&Snapshot::default(), &registry.gather(), 1);
        let ms = metrics(&req);
        let h = ms
            .iter()
            .find(|m| m.name == "aws_apigateway_exporter_cycle_duration_seconds")
            .unwrap();
        assert_eq!(h.unit, "s");
        let Some(metric::Data::Histogram(h)) = &h.data else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!(p.count, 2);
        assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 2);
        let e = sum_points(&req, "aws_apigateway_exporter_otlp_exports_total");
        assert_eq!(attr(&e[0].attributes, "result"), Some("success"));
        assert!(ms.iter().any(|m| m.name == "aws_apigateway_exporter_up"
            && matches!(m.data, Some(metric::Data::Gauge(_)))));
    }
}
