//! Prometheus exposition of the snapshot: a custom [`Collector`] in the same registry as the
//! self-metrics, so one `gather()` yields everything.
//!
//! [`encode`] takes a faster road to the same bytes. The snapshot changes once per cycle while
//! scrapes come as often as Prometheus likes, so the text of a snapshot is written once,
//! straight from the snapshot (no protobuf structures, no per-label allocations), cached in
//! the snapshot, and copied into every later scrape. While `encode` gathers the registry the
//! [`SnapshotCollector`] hands its snapshot over instead of building protobuf families; the
//! self-metrics are gathered and text-encoded as usual and merged in by name. The output is
//! byte for byte what `TextEncoder` makes of `registry.gather()` (families sorted by name,
//! samples by label values, the same escaping and number formatting): the tests below
//! compare the two. Any other caller of `collect()` still gets protobuf families.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::model::{Family, FamilyKind};
use crate::snapshot::{
    API_INFO, BURST_LIMIT, EncodedFamilies, FamilySnapshot, Kind, QUOTA, RATE_LIMIT, STAGE_INFO,
    SharedSnapshot, Snapshot, TIMEOUT, Value, max_help,
};

thread_local! {
    /// `Some` while [`encode`] gathers on this thread: snapshot collectors then leave their
    /// snapshot here instead of returning protobuf families.
    static HANDED_OVER: RefCell<Option<Vec<Arc<Snapshot>>>> = const { RefCell::new(None) };
}

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
            // The access-log families share one name and have no route level.
            if info.reason.is_some() {
                if family == Family::Throttled {
                    descs.push(Desc::new(
                        info.name.into(),
                        info.help.into(),
                        vec![],
                        Default::default(),
                    )?);
                }
                continue;
            }
            for route in [false, true] {
                descs.push(Desc::new(
                    family.name_at(route).into(),
                    info.help.into(),
                    vec![],
                    Default::default(),
                )?);
                if info.kind == FamilyKind::Summary
                    && let Some(max) = family.max_name_at(route)
                {
                    descs.push(Desc::new(
                        max.into(),
                        max_help(family).into(),
                        vec![],
                        Default::default(),
                    )?);
                }
            }
        }
        for (name, help) in [
            API_INFO,
            STAGE_INFO,
            RATE_LIMIT,
            BURST_LIMIT,
            TIMEOUT,
            QUOTA,
        ] {
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
        let snapshot = self.shared.load();
        let handed_over = HANDED_OVER.with_borrow_mut(|slot| match slot {
            Some(list) => {
                list.push(Arc::clone(&snapshot));
                true
            }
            None => false,
        });
        if handed_over {
            return Vec::new();
        }
        snapshot.families.iter().map(to_proto).collect()
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
                    summary.set_sample_count(sample_count(*count));
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

/// The text exposition (format 0.0.4) of everything in `registry`: exactly the bytes
/// `TextEncoder` writes for `registry.gather()`, with the snapshot's part cached per snapshot.
pub fn encode(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    let (gathered, snapshots) = gather_handing_over(registry);
    let encoded: Option<Vec<&EncodedFamilies>> = snapshots
        .iter()
        .map(|s| s.encoded_with(encode_snapshot))
        .collect();
    let Some(encoded) = encoded else {
        return encode_gathered(registry);
    };
    // Every family once, in name order; a name twice would need merging: the general path.
    let mut parts: Vec<(&str, Part)> = gathered
        .iter()
        .map(|mf| (mf.name(), Part::Gathered(mf)))
        .collect();
    for e in &encoded {
        parts.extend(
            e.families
                .iter()
                .map(|(name, range)| (*name, Part::Text(&e.text[range.clone()]))),
        );
    }
    parts.sort_by(|a, b| a.0.cmp(b.0));
    if parts.windows(2).any(|w| w[0].0 == w[1].0) {
        return encode_gathered(registry);
    }
    let text_len: usize = encoded.iter().map(|e| e.text.len()).sum();
    let mut buf = Vec::with_capacity(text_len + 64 * 1024);
    let encoder = TextEncoder::new();
    for (_, part) in parts {
        match part {
            Part::Gathered(mf) => encoder.encode(std::slice::from_ref(mf), &mut buf)?,
            Part::Text(text) => buf.extend_from_slice(text.as_bytes()),
        }
    }
    Ok(buf)
}

/// One family of the output: from the registry, or cached snapshot text.
enum Part<'a> {
    Gathered(&'a MetricFamily),
    Text(&'a str),
}

/// The general path: protobuf families from every collector, through `TextEncoder`.
fn encode_gathered(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    let mut buf = Vec::with_capacity(64 * 1024);
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    Ok(buf)
}

/// `registry.gather()`, with the snapshots of the snapshot collectors handed over apart.
fn gather_handing_over(registry: &Registry) -> (Vec<MetricFamily>, Vec<Arc<Snapshot>>) {
    /// Restores the slot even if a collector panics.
    struct Restore(Option<Vec<Arc<Snapshot>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            HANDED_OVER.with_borrow_mut(|slot| *slot = previous);
        }
    }
    let previous = HANDED_OVER.with_borrow_mut(|slot| slot.replace(Vec::new()));
    let restore = Restore(previous);
    let gathered = registry.gather();
    let snapshots = HANDED_OVER
        .with_borrow_mut(|slot| slot.take())
        .unwrap_or_default();
    drop(restore);
    (gathered, snapshots)
}

/// The text of a snapshot's families as `TextEncoder` writes them after `Registry::gather`
/// (families by name, samples by label values). `None` when that needs a registry's merging:
/// two families of one name, or a family without a name.
pub fn encode_snapshot(snapshot: &Snapshot) -> Option<EncodedFamilies> {
    let mut families: Vec<&FamilySnapshot> = snapshot
        .families
        .iter()
        .filter(|f| !f.samples.is_empty())
        .collect();
    families.sort_by(|a, b| a.name.cmp(b.name));
    if families.iter().any(|f| f.name.is_empty())
        || families.windows(2).any(|w| w[0].name == w[1].name)
    {
        return None;
    }
    // About 200 bytes per sample line, 5 lines to a summary.
    let lines: usize = families
        .iter()
        .map(|f| f.samples.len() * if f.kind == Kind::Summary { 5 } else { 1 })
        .sum();
    let mut out = EncodedFamilies {
        text: String::with_capacity(lines * 200 + families.len() * 512),
        families: Vec::with_capacity(families.len()),
    };
    let mut labels = String::new();
    for f in families {
        let start = out.text.len();
        write_family(&mut out.text, &mut labels, f);
        out.families.push((f.name, start..out.text.len()));
    }
    Some(out)
}

fn write_family(out: &mut String, labels: &mut String, f: &FamilySnapshot) {
    if !f.help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(f.name);
        out.push(' ');
        push_escaped(out, f.help, false);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(f.name);
    out.push_str(match f.kind {
        Kind::Counter => " counter\n",
        Kind::Gauge => " gauge\n",
        Kind::Summary => " summary\n",
    });
    // `Registry::gather` orders a family's samples by their number of labels, then by their
    // label values in order; the sort is stable, so ties keep the snapshot's order.
    let keys: Vec<Vec<&str>> = f
        .samples
        .iter()
        .map(|s| {
            let mut values: Vec<&str> = s.labels.pairs().into_iter().map(|(_, v)| v).collect();
            values.extend(s.extra.iter().map(|(_, v)| v.as_str()));
            values
        })
        .collect();
    let mut order: Vec<usize> = (0..f.samples.len()).collect();
    order.sort_by(|&a, &b| {
        keys[a]
            .len()
            .cmp(&keys[b].len())
            .then_with(|| keys[a].cmp(&keys[b]))
    });
    for i in order {
        let s = &f.samples[i];
        // The label pairs, without the closing brace: a summary writes them five times.
        labels.clear();
        let pairs = s.labels.pairs();
        for (name, value) in pairs
            .iter()
            .copied()
            .chain(s.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            labels.push(if labels.is_empty() { '{' } else { ',' });
            labels.push_str(name);
            labels.push_str("=\"");
            push_escaped(labels, value, true);
            labels.push('"');
        }
        match (f.kind, &s.value) {
            (Kind::Counter | Kind::Gauge, Value::Single(v)) => {
                write_line(out, f.name, "", labels, None, *v);
            }
            // What an empty protobuf counter or gauge shows.
            (Kind::Counter | Kind::Gauge, Value::Summary { .. }) => {
                write_line(out, f.name, "", labels, None, 0.0);
            }
            (
                Kind::Summary,
                Value::Summary {
                    sum,
                    count,
                    quantiles,
                },
            ) => {
                for (q, v) in quantiles {
                    write_line(out, f.name, "", labels, Some(*q), *v);
                }
                write_line(out, f.name, "_sum", labels, None, *sum);
                write_line(
                    out,
                    f.name,
                    "_count",
                    labels,
                    None,
                    sample_count(*count) as f64,
                );
            }
            (Kind::Summary, Value::Single(_)) => {
                write_line(out, f.name, "_sum", labels, None, 0.0);
                write_line(out, f.name, "_count", labels, None, 0.0);
            }
        }
    }
}

/// One sample line: `name{labels,quantile="q"} value`.
fn write_line(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    quantile: Option<f64>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    out.push_str(labels);
    if let Some(q) = quantile {
        out.push_str(if labels.is_empty() { "{" } else { "," });
        // `{}` of an f64 is what `f64::to_string`, and so `TextEncoder`, writes.
        let _ = write!(out, "quantile=\"{q}\"");
    }
    if !labels.is_empty() || quantile.is_some() {
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Escapes as the text format wants: `\\` and newline always, `"` in label values.
fn push_escaped(out: &mut String, value: &str, quotes: bool) {
    let special = |c: char| c == '\\' || c == '\n' || (quotes && c == '"');
    if !value.contains(special) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// SampleCount is a whole number of requests.
fn sample_count(count: f64) -> u64 {
    count.round().max(0.0) as u64
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ApiType, SeriesLabels};
    use crate::selfmetrics::SelfMetrics;

    fn labels(api_id: &str, name: &str, t: ApiType, stage: Option<&str>) -> crate::model::Labels {
        Arc::new(SeriesLabels {
            account_id: "111122223333".into(),
            region: "eu-west-1".into(),
            api_id: api_id.into(),
            api_name: name.into(),
            api_type: t,
            stage: stage.map(str::to_string),
            route: None,
        })
    }

    fn single(l: crate::model::Labels, extra: &[(&str, &str)], v: f64) -> crate::snapshot::Sample {
        crate::snapshot::Sample {
            labels: l,
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: Value::Single(v),
        }
    }

    /// Everything the encoder must get right: escaping, ordering (including samples with
    /// fewer labels and `api_type`s whose enum order differs from their text order), every
    /// kind, odd numbers, and values that do not match their family's kind.
    fn tricky() -> Snapshot {
        let odd = labels("q\"1", "we\\ird\nname ü", ApiType::Rest, Some("prod"));
        let http = labels("h1", "orders", ApiType::Http, Some("$default"));
        let ws = labels("w1", "chat", ApiType::Websocket, None);
        let account = Arc::new(SeriesLabels::account("111122223333", "eu-west-1"));
        let summary = |l: &crate::model::Labels| crate::snapshot::Sample {
            labels: Arc::clone(l),
            extra: vec![],
            value: Value::Summary {
                sum: 1234.5678,
                count: 41.6,
                quantiles: vec![(0.5, 0.12), (0.99, 2.5), (0.999, 1e-7)],
            },
        };
        Snapshot::new(vec![
            FamilySnapshot {
                name: "aws_apigateway_requests_total",
                help: "Help with \\ a backslash\nand a newline \"quoted\".",
                kind: Kind::Counter,
                samples: vec![
                    single(Arc::clone(&ws), &[], 1e21),
                    single(Arc::clone(&odd), &[], 0.1 + 0.2),
                    single(Arc::clone(&http), &[], 3.0),
                    single(Arc::clone(&odd), &[], f64::NAN),
                ],
            },
            FamilySnapshot {
                name: "aws_apigateway_latency_seconds",
                help: "Latency.",
                kind: Kind::Summary,
                samples: vec![
                    summary(&http),
                    summary(&odd),
                    single(Arc::clone(&ws), &[], 7.0),
                ],
            },
            FamilySnapshot {
                name: "aws_apigateway_throttle_rate_limit",
                help: "",
                kind: Kind::Gauge,
                samples: vec![
                    single(Arc::clone(&http), &[("scope", "stage")], 250.0),
                    single(account, &[("scope", "account")], f64::INFINITY),
                    single(
                        Arc::clone(&odd),
                        &[
                            ("scope", "method"),
                            ("resource", "/a\"b"),
                            ("method", "GET"),
                        ],
                        -0.0,
                    ),
                    summary(&ws),
                ],
            },
            FamilySnapshot {
                name: "aws_apigateway_empty",
                help: "No samples: left out.",
                kind: Kind::Gauge,
                samples: vec![],
            },
        ])
    }

    fn registry_with(snapshot: Snapshot) -> Registry {
        let registry = Registry::new();
        let metrics = SelfMetrics::new(&registry, false).unwrap();
        metrics.series.set(42.0);
        let shared = SharedSnapshot::new();
        shared.store(snapshot);
        registry
            .register(Box::new(SnapshotCollector::new(shared).unwrap()))
            .unwrap();
        registry
    }

    #[test]
    fn cached_text_is_byte_for_byte_what_the_text_encoder_writes() {
        let registry = registry_with(tricky());
        let general = encode_gathered(&registry).unwrap();
        let first = encode(&registry).unwrap();
        let cached = encode(&registry).unwrap();
        assert_eq!(
            String::from_utf8(first.clone()).unwrap(),
            String::from_utf8(general).unwrap()
        );
        assert_eq!(first, cached);
        // Outside `encode`, the collector still yields protobuf families.
        assert!(
            registry
                .gather()
                .iter()
                .any(|f| f.name() == "aws_apigateway_latency_seconds")
        );
    }

    #[test]
    fn a_snapshot_that_needs_merging_takes_the_general_path() {
        let mut snapshot = tricky();
        let mut twin = snapshot.families[0].clone();
        twin.samples.truncate(1);
        snapshot.families.push(twin);
        assert!(encode_snapshot(&snapshot).is_none());
        let registry = registry_with(snapshot);
        assert_eq!(
            encode(&registry).unwrap(),
            encode_gathered(&registry).unwrap()
        );
    }

    #[tokio::test]
    async fn the_demo_renders_identically_both_ways() {
        use crate::clock::ManualClock;
        use crate::poll::Poller;
        let mut config = crate::config::Config::default();
        config.access_logs.mode = crate::config::AccessLogsMode::MetricFilter;
        config.tags_as_labels = vec!["environment".into()];
        let registry = Registry::new();
        let shared = SharedSnapshot::new();
        let metrics = SelfMetrics::new(&registry, true).unwrap();
        registry
            .register(Box::new(
                SnapshotCollector::new(Arc::clone(&shared)).unwrap(),
            ))
            .unwrap();
        let clock = Arc::new(ManualClock::new(1_795_428_030));
        let targets = crate::app::demo_targets(&config, 3, clock.clone());
        let mut poller = Poller::new(
            targets,
            crate::app::settings(&config),
            clock.clone(),
            Arc::clone(&shared),
            metrics,
        );
        for _ in 0..5 {
            poller.cycle().await;
            let fast = encode(&registry).unwrap();
            assert_eq!(fast, encode_gathered(&registry).unwrap());
            assert_eq!(fast, encode(&registry).unwrap());
            clock.advance(60);
        }
        let text = String::from_utf8(encode(&registry).unwrap()).unwrap();
        assert!(text.contains("aws_apigateway_latency_seconds{"));
        assert!(text.contains("aws_apigateway_exporter_build_info{"));
    }
}
