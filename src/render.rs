//! The Prometheus exposition (text format 0.0.4) of the self-metrics and the snapshot.
//!
//! The self-metrics are `prometheus` crate metrics in a [`Registry`], gathered and written by
//! its `TextEncoder` on every scrape. The snapshot's families are written as text by
//! [`encode_families`], once per snapshot, and the text is kept with the snapshot: the
//! snapshot changes once per cycle while scrapes come as often as Prometheus likes, and
//! building the crate's protobuf families for every sample and encoding them took 2.7 times
//! as long as this writer for a new snapshot, and 85 times as long as copying the kept text
//! (`cargo bench --bench render`, docs/performance.md). The writer's output is byte for byte
//! what `TextEncoder` writes for the same families (the tests below compare the two over
//! awkward values, and [`Exposition::gather`] yields the protobuf families for that check).

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::contract::Type;
use crate::snapshot::{FamilySnapshot, SharedSnapshot, Snapshot, Value};

/// The content type of [`Exposition::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `/metrics` serves: the self-metrics' registry and the latest snapshot.
pub struct Exposition {
    registry: Registry,
    shared: Arc<SharedSnapshot>,
}

/// The text of a snapshot's families, in name order, ready to be merged with the
/// self-metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EncodedFamilies {
    /// The text of every family, one after the other.
    pub text: String,
    /// Each family's name and its bytes in `text`, sorted by name.
    pub families: Vec<(&'static str, Range<usize>)>,
}

impl Exposition {
    pub fn new(registry: Registry, shared: Arc<SharedSnapshot>) -> Exposition {
        Exposition { registry, shared }
    }

    /// The self-metrics' registry (the OTLP push reads it too).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of everything: the families of the registry and of the current
    /// snapshot, in name order, exactly as `TextEncoder` writes [`Exposition::gather`], in one
    /// buffer, for tests, benchmarks and examples that want the bytes. `/metrics` sends
    /// [`Exposition::encode_chunks`] instead, which copies nothing.
    pub fn encode(&self) -> Result<Vec<u8>, prometheus::Error> {
        let chunks = self.encode_chunks()?;
        let mut buf = Vec::with_capacity(chunks.iter().map(Bytes::len).sum());
        for chunk in &chunks {
            buf.extend_from_slice(chunk);
        }
        Ok(buf)
    }

    /// [`Exposition::encode`] as chunks to send one after the other: the self-metrics'
    /// families written anew, the snapshot's as slices of its kept text. A scrape copies
    /// nothing of the snapshot (17 MB at 100k series), so scrapes at once cost no memory
    /// each.
    pub fn encode_chunks(&self) -> Result<Vec<Bytes>, prometheus::Error> {
        let snapshot = self.shared.load();
        let encoded = self.encoded(&snapshot);
        let gathered = self.registry.gather();
        let mut parts: Vec<(&str, Part)> = gathered
            .iter()
            .map(|mf| (mf.name(), Part::Gathered(mf)))
            .collect();
        parts.extend(
            encoded
                .families
                .iter()
                .map(|(name, range)| (*name, Part::Text(range.clone()))),
        );
        parts.sort_by(|a, b| a.0.cmp(b.0));
        // Self-metrics and snapshot families never share a name (the contract's levels).
        debug_assert!(parts.windows(2).all(|w| w[0].0 != w[1].0));
        let text = Bytes::from_owner(KeptText(Arc::clone(&encoded)));
        let encoder = TextEncoder::new();
        let mut chunks = Vec::new();
        // A run of self-metrics families written, or of neighbouring snapshot families.
        let mut written: Vec<u8> = Vec::new();
        let mut kept: Option<Range<usize>> = None;
        for (_, part) in parts {
            match part {
                Part::Gathered(mf) => {
                    if let Some(range) = kept.take() {
                        chunks.push(text.slice(range));
                    }
                    encoder.encode(std::slice::from_ref(mf), &mut written)?;
                }
                Part::Text(range) => {
                    if !written.is_empty() {
                        chunks.push(Bytes::from(std::mem::take(&mut written)));
                    }
                    kept = match kept {
                        Some(run) if run.end == range.start => Some(run.start..range.end),
                        Some(run) => {
                            chunks.push(text.slice(run));
                            Some(range)
                        }
                        None => Some(range),
                    };
                }
            }
        }
        if let Some(range) = kept {
            chunks.push(text.slice(range));
        }
        if !written.is_empty() {
            chunks.push(Bytes::from(written));
        }
        Ok(chunks)
    }

    /// Every family as the `prometheus` crate's protobuf, sorted by name: the registry's and
    /// the snapshot's (for other encoders, and to check [`encode_families`]).
    pub fn gather(&self) -> Vec<MetricFamily> {
        let mut all = self.registry.gather();
        let snapshot = self.shared.load();
        all.extend(merged(&snapshot.families).into_iter().map(|f| {
            let mut mf = to_proto(f);
            mf.mut_metric()
                .sort_by(|a, b| gather_order(a.get_label(), b.get_label()));
            mf
        }));
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// The text of `snapshot`, written on its first scrape and kept with the snapshot (and so
    /// freed with it when the next one replaces it). Concurrent first scrapes wait for one
    /// writer.
    fn encoded(&self, snapshot: &Snapshot) -> Arc<EncodedFamilies> {
        snapshot
            .derived(|s| encode_families(&s.families))
            .unwrap_or_else(|| Arc::new(encode_families(&snapshot.families)))
    }
}

/// The order `Registry::gather` gives a family's samples: fewer labels first, then by label
/// values in order (a stable sort: ties keep their order).
fn gather_order(a: &[proto::LabelPair], b: &[proto::LabelPair]) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.iter().map(|l| l.value()).cmp(b.iter().map(|l| l.value())))
}

/// One family of the output: from the registry, or the bytes of the snapshot's text.
enum Part<'a> {
    Gathered(&'a MetricFamily),
    Text(Range<usize>),
}

/// The kept text of a snapshot as the owner of the [`Bytes`] a scrape sends: they point into
/// it and keep it alive while they are sent, even after a new snapshot replaced it.
struct KeptText(Arc<EncodedFamilies>);

impl AsRef<[u8]> for KeptText {
    fn as_ref(&self) -> &[u8] {
        self.0.text.as_bytes()
    }
}

/// The families in name order, those of one name merged (as a registry merges collectors),
/// the empty ones left out.
fn merged(families: &[FamilySnapshot]) -> Vec<FamilySnapshot> {
    let mut sorted: Vec<&FamilySnapshot> =
        families.iter().filter(|f| !f.samples.is_empty()).collect();
    sorted.sort_by(|a, b| a.def.name.cmp(b.def.name));
    let mut out: Vec<FamilySnapshot> = Vec::with_capacity(sorted.len());
    for f in sorted {
        match out.last_mut() {
            Some(last) if last.def.name == f.def.name => {
                last.samples.extend(f.samples.iter().cloned())
            }
            _ => out.push(f.clone()),
        }
    }
    out
}

/// The text of snapshot families, exactly as `TextEncoder` writes them after
/// `Registry::gather` (families by name, samples by label values).
pub fn encode_families(families: &[FamilySnapshot]) -> EncodedFamilies {
    let mut sorted: Vec<&FamilySnapshot> =
        families.iter().filter(|f| !f.samples.is_empty()).collect();
    sorted.sort_by(|a, b| a.def.name.cmp(b.def.name));
    // About 200 bytes per sample line, 5 lines to a summary.
    let lines: usize = sorted
        .iter()
        .map(|f| f.samples.len() * if f.def.kind == Type::Summary { 5 } else { 1 })
        .sum();
    let mut out = EncodedFamilies {
        text: String::with_capacity(lines * 200 + sorted.len() * 512),
        families: Vec::with_capacity(sorted.len()),
    };
    let mut labels = String::new();
    let mut i = 0;
    while i < sorted.len() {
        // A name twice (which `snapshot::build` never makes) is one family, as gathered.
        let name = sorted[i].def.name;
        let run = sorted[i..]
            .iter()
            .take_while(|f| f.def.name == name)
            .count();
        let start = out.text.len();
        write_family(&mut out.text, &mut labels, &sorted[i..i + run]);
        out.families.push((name, start..out.text.len()));
        i += run;
    }
    // Kept for as long as the snapshot: without the estimate's spare room.
    out.text.shrink_to_fit();
    out
}

fn write_family(out: &mut String, labels: &mut String, run: &[&FamilySnapshot]) {
    let f = run[0];
    let (name, kind) = (f.def.name, f.def.kind);
    if !f.def.help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        push_escaped(out, f.def.help, false);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push_str(match kind {
        Type::Counter => " counter\n",
        // Snapshots hold no histograms (those are self-metrics); one would read as a gauge,
        // as [`to_proto`] types it.
        Type::Gauge | Type::Histogram => " gauge\n",
        Type::Summary => " summary\n",
    });
    let samples: Vec<_> = run.iter().flat_map(|f| f.samples.iter()).collect();
    // `Registry::gather` orders a family's samples by their number of labels, then by their
    // label values in order; the sort is stable, so ties keep the snapshot's order.
    let keys: Vec<Vec<&str>> = samples
        .iter()
        .map(|s| {
            let mut values: Vec<&str> = s.labels.pairs().into_iter().map(|(_, v)| v).collect();
            values.extend(s.extra.iter().map(|(_, v)| v.as_str()));
            values
        })
        .collect();
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by(|&a, &b| {
        keys[a]
            .len()
            .cmp(&keys[b].len())
            .then_with(|| keys[a].cmp(&keys[b]))
    });
    for i in order {
        let s = samples[i];
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
        match (kind, &s.value) {
            (Type::Counter | Type::Gauge | Type::Histogram, Value::Single(v)) => {
                write_line(out, name, "", labels, None, *v);
            }
            // What an empty protobuf counter or gauge shows.
            (Type::Counter | Type::Gauge | Type::Histogram, Value::Summary { .. }) => {
                write_line(out, name, "", labels, None, 0.0);
            }
            (
                Type::Summary,
                Value::Summary {
                    sum,
                    count,
                    quantiles,
                },
            ) => {
                for (q, v) in quantiles {
                    write_line(out, name, "", labels, Some(*q), *v);
                }
                write_line(out, name, "_sum", labels, None, *sum);
                write_line(
                    out,
                    name,
                    "_count",
                    labels,
                    None,
                    sample_count(*count) as f64,
                );
            }
            (Type::Summary, Value::Single(_)) => {
                write_line(out, name, "_sum", labels, None, 0.0);
                write_line(out, name, "_count", labels, None, 0.0);
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

/// A family as the `prometheus` crate's protobuf.
fn to_proto(f: FamilySnapshot) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(f.def.name.to_string());
    mf.set_help(f.def.help.to_string());
    mf.set_field_type(match f.def.kind {
        Type::Counter => MetricType::COUNTER,
        Type::Summary => MetricType::SUMMARY,
        Type::Gauge | Type::Histogram => MetricType::GAUGE,
    });
    let label = |name: &str, value: &str| {
        let mut l = proto::LabelPair::default();
        l.set_name(name.to_string());
        l.set_value(value.to_string());
        l
    };
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
            match (&s.value, f.def.kind) {
                (Value::Single(v), Type::Counter) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Def, Level};
    use crate::model::{ApiType, SeriesLabels};
    use crate::selfmetrics::SelfMetrics;

    const fn def(name: &'static str, kind: Type, help: &'static str) -> Def {
        Def {
            name,
            kind,
            unit: "",
            help,
            level: Level::Stage,
            labels: &[],
        }
    }
    static REQUESTS: Def = def(
        "aws_apigateway_requests_total",
        Type::Counter,
        "Help with \\ a backslash\nand a newline \"quoted\".",
    );
    static LATENCY: Def = def("aws_apigateway_latency_seconds", Type::Summary, "Latency.");
    static LIMIT: Def = def("aws_apigateway_throttle_rate_limit", Type::Gauge, "");
    static EMPTY: Def = def("aws_apigateway_empty", Type::Gauge, "No samples: left out.");

    fn labels(api_id: &str, name: &str, t: ApiType, stage: Option<&str>) -> crate::model::Labels {
        Arc::new(SeriesLabels {
            account_id: "111122223333".into(),
            region: "eu-west-1".into(),
            api_id: api_id.into(),
            api_name: name.into(),
            api_type: t,
            stage: stage.map(str::to_string),
            route: None,
            cause: None,
            function: None,
            receiver: None,
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
                def: &REQUESTS,
                samples: vec![
                    single(Arc::clone(&ws), &[], 1e21),
                    single(Arc::clone(&odd), &[], 0.1 + 0.2),
                    single(Arc::clone(&http), &[], 3.0),
                    single(Arc::clone(&odd), &[], f64::NAN),
                ],
            },
            FamilySnapshot {
                def: &LATENCY,
                samples: vec![
                    summary(&http),
                    summary(&odd),
                    single(Arc::clone(&ws), &[], 7.0),
                ],
            },
            FamilySnapshot {
                def: &LIMIT,
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
                def: &EMPTY,
                samples: vec![],
            },
        ])
    }

    fn exposition_with(snapshot: Snapshot) -> (Exposition, Arc<SharedSnapshot>) {
        let registry = Registry::new();
        let metrics = SelfMetrics::new(&registry, false).unwrap();
        metrics.series.set(42.0);
        let shared = SharedSnapshot::new();
        shared.store(snapshot);
        (Exposition::new(registry, Arc::clone(&shared)), shared)
    }

    /// Protobuf families handed to a registry as they are, so `Registry::gather` orders and
    /// merges them: the reference the text must match.
    struct Families(Vec<MetricFamily>, Vec<prometheus::core::Desc>);

    impl prometheus::core::Collector for Families {
        fn desc(&self) -> Vec<&prometheus::core::Desc> {
            self.1.iter().collect()
        }
        fn collect(&self) -> Vec<MetricFamily> {
            self.0.clone()
        }
    }

    /// What `TextEncoder` writes for every family, through the `prometheus` crate all the
    /// way; also checks that [`Exposition::gather`] agrees with a registry's ordering.
    fn general(e: &Exposition) -> String {
        let snapshot = e.shared.load();
        let families: Vec<MetricFamily> = snapshot
            .families
            .iter()
            .filter(|f| !f.samples.is_empty())
            .cloned()
            .map(to_proto)
            .collect();
        let mut names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        let descs = names
            .iter()
            .map(|n| {
                prometheus::core::Desc::new(n.to_string(), "h".into(), vec![], Default::default())
                    .unwrap()
            })
            .collect();
        let registry = Registry::new();
        registry
            .register(Box::new(Families(families.clone(), descs)))
            .unwrap();
        let mut all = e.registry().gather();
        all.extend(registry.gather());
        all.sort_by(|a, b| a.name().cmp(b.name()));
        let encode = |families: &[MetricFamily]| {
            let mut buf = Vec::new();
            TextEncoder::new().encode(families, &mut buf).unwrap();
            String::from_utf8(buf).unwrap()
        };
        let reference = encode(&all);
        // (Compared as text: NaN samples make the structures unequal to themselves.)
        assert_eq!(
            reference,
            encode(&e.gather()),
            "Exposition::gather orders otherwise than a registry"
        );
        reference
    }

    fn text(e: &Exposition) -> String {
        String::from_utf8(e.encode().unwrap()).unwrap()
    }

    #[test]
    fn the_text_is_byte_for_byte_what_the_text_encoder_writes() {
        let (e, _) = exposition_with(tricky());
        let first = text(&e);
        assert_eq!(first, general(&e));
        assert_eq!(first, text(&e), "the kept text differs");
        assert!(first.contains("aws_apigateway_exporter_series 42\n"));
        assert!(!first.contains("aws_apigateway_empty"));
    }

    #[test]
    fn a_new_snapshot_is_written_anew_and_its_text_kept_with_it() {
        let (e, shared) = exposition_with(tricky());
        let before = text(&e);
        let old = shared.load();
        let kept = old.derived(|_| EncodedFamilies::default()).unwrap();
        assert_eq!(kept.text, encode_families(&old.families).text);
        let mut next = tricky();
        next.families[0].samples.truncate(1);
        shared.store(next);
        let after = text(&e);
        assert_ne!(before, after);
        assert_eq!(after, general(&e));
        // A scrape that loaded the old snapshot before the swap gets the old text.
        assert_eq!(e.encoded(&old).text, kept.text);
        // The old text goes with the old snapshot: only this test holds it now.
        drop(old);
        assert_eq!(Arc::strong_count(&kept), 1);
    }

    #[test]
    fn a_scrape_sends_the_kept_text_itself_and_keeps_it_alive_while_it_is_sent() {
        let (e, shared) = exposition_with(tricky());
        let chunks = e.encode_chunks().unwrap();
        assert_eq!(chunks.concat(), e.encode().unwrap());
        let kept = shared
            .load()
            .derived(|_| EncodedFamilies::default())
            .unwrap();
        let text = kept.text.as_bytes().as_ptr_range();
        let inside = |c: &Bytes| text.contains(&c.as_ptr());
        // The snapshot's families are slices of its text (no copy), the self-metrics not.
        let sliced: usize = chunks.iter().filter(|c| inside(c)).map(Bytes::len).sum();
        assert_eq!(sliced, kept.text.len());
        assert!(chunks.iter().any(|c| !inside(c)));
        // A new snapshot replaces the old one: the scrape in flight still holds the old text,
        // which goes once it is sent.
        let weak = Arc::downgrade(&kept);
        drop(kept);
        shared.store(tricky());
        assert!(weak.upgrade().is_some());
        drop(chunks);
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn concurrent_first_scrapes_agree_and_keep_one_text() {
        let (e, shared) = exposition_with(tricky());
        let texts: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| text(&e))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(texts.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(texts[0], general(&e));
        let kept = shared
            .load()
            .derived(|_| EncodedFamilies::default())
            .unwrap();
        assert_eq!(
            Arc::strong_count(&kept),
            2,
            "one text, kept by the snapshot"
        );
    }

    #[test]
    fn families_of_one_name_are_merged_as_a_registry_would() {
        let mut snapshot = tricky();
        let mut twin = snapshot.families[0].clone();
        twin.samples.truncate(1);
        snapshot.families.push(twin);
        let (e, _) = exposition_with(snapshot);
        let out = text(&e);
        assert_eq!(out, general(&e));
        assert_eq!(
            out.matches("# TYPE aws_apigateway_requests_total").count(),
            1
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
        let e = Exposition::new(registry, Arc::clone(&shared));
        let clock = Arc::new(ManualClock::new(1_795_428_030));
        let targets = crate::app::demo_targets(&config, 3, clock.clone(), &metrics);
        let mut poller = Poller::new(
            targets,
            crate::app::settings(&config),
            clock.clone(),
            Arc::clone(&shared),
            metrics,
        );
        for _ in 0..5 {
            poller.cycle().await;
            let fast = text(&e);
            assert_eq!(fast, general(&e));
            assert_eq!(fast, text(&e));
            clock.advance(60);
        }
        let out = text(&e);
        assert!(out.contains("aws_apigateway_latency_seconds{"));
        assert!(out.contains("aws_apigateway_exporter_build_info{"));
    }
}
