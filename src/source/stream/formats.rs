//! The two CloudWatch Metric Streams output formats the exporter reads, as AWS documents them:
//!
//! - `json`: each Firehose record holds JSON objects, one per line, each one minute of one
//!   metric: `account_id`, `region`, `namespace`, `metric_name`, `dimensions` (an object),
//!   `timestamp` (epoch milliseconds), `value {max, min, sum, count}` plus any percentiles
//!   streamed (`p99`), `unit`.
//! - `opentelemetry1.0`: each record holds `ExportMetricsServiceRequest`s, each preceded by its
//!   length as an unsigned varint. The resource says `cloud.account.id` and `cloud.region`; a
//!   metric's Summary data points carry the attributes `Namespace`, `MetricName` and
//!   `Dimensions` (a nested key-value list), `sum`, `count`, and quantiles 0 (the minimum),
//!   1 (the maximum) and any percentiles streamed; `start_time_unix_nano` is the minute.
//!
//! (`opentelemetry0.7` is a different, incompatible encoding and is refused.)

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message;
use serde::Deserialize;

use crate::model::Stat;

/// One minute of one metric, as a stream sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub account_id: String,
    pub region: String,
    pub namespace: String,
    pub metric_name: String,
    /// By name, sorted.
    pub dimensions: Vec<(String, String)>,
    /// Unix seconds, as sent (the buffer aligns it to its period).
    pub timestamp: i64,
    pub stats: Stats,
}

/// The statistics of one metric over one minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub sum: f64,
    pub count: f64,
    pub min: f64,
    pub max: f64,
    /// Percentiles streamed beyond the four defaults, in [`Stat::Percentile`]'s units.
    pub percentiles: Vec<(u32, f64)>,
}

impl Stats {
    /// The value of statistic `stat`, if the record carries it.
    pub fn get(&self, stat: Stat) -> Option<f64> {
        match stat {
            Stat::Sum => Some(self.sum),
            Stat::SampleCount => Some(self.count),
            Stat::Maximum => Some(self.max),
            Stat::Percentile(p) => self
                .percentiles
                .iter()
                .find(|(q, _)| *q == p)
                .map(|(_, v)| *v),
        }
    }
}

/// Why a record could not be read. The text names the record and line or message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

/// Reads one Firehose record's data in either format: JSON when it starts with `{` and its
/// first line parses as JSON, else OpenTelemetry 1.0.
pub fn decode(data: &[u8]) -> Result<Vec<Record>, FormatError> {
    let trimmed = data.trim_ascii_start();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    if trimmed.first() == Some(&b'{') {
        let first = trimmed.split(|b| *b == b'\n').next().unwrap_or_default();
        // Only whether it parses: nothing is built.
        if serde_json::from_slice::<serde::de::IgnoredAny>(first).is_ok() {
            return decode_json(trimmed);
        }
    }
    decode_otel(data)
}

#[derive(Deserialize)]
struct JsonRecord {
    account_id: String,
    region: String,
    namespace: String,
    metric_name: String,
    #[serde(default)]
    dimensions: BTreeMap<String, String>,
    timestamp: i64,
    value: JsonValue,
}

#[derive(Deserialize)]
struct JsonValue {
    sum: f64,
    count: f64,
    min: f64,
    max: f64,
    /// Percentiles (`p99`) and any other statistic streamed (trimmed means and the like,
    /// which are not read).
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// Newline-delimited JSON records.
pub fn decode_json(data: &[u8]) -> Result<Vec<Record>, FormatError> {
    let mut out = Vec::new();
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let r: JsonRecord = serde_json::from_slice(line)
            .map_err(|e| FormatError(format!("json line {}: {e}", i + 1)))?;
        let percentiles = r
            .value
            .other
            .iter()
            .filter_map(|(name, v)| match Stat::parse_percentile(name) {
                Some(Stat::Percentile(p)) => v.as_f64().map(|v| (p, v)),
                _ => None,
            })
            .collect();
        out.push(Record {
            account_id: r.account_id,
            region: r.region,
            namespace: r.namespace,
            metric_name: r.metric_name,
            dimensions: r.dimensions.into_iter().collect(),
            timestamp: r.timestamp.div_euclid(1000),
            stats: Stats {
                sum: r.value.sum,
                count: r.value.count,
                min: r.value.min,
                max: r.value.max,
                percentiles,
            },
        });
    }
    Ok(out)
}

fn text(value: &Option<AnyValue>) -> Option<&str> {
    match value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attributes.iter().find(|kv| kv.key == key)
}

/// Length-delimited `ExportMetricsServiceRequest`s.
pub fn decode_otel(data: &[u8]) -> Result<Vec<Record>, FormatError> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut index = 0;
    while !rest.is_empty() {
        index += 1;
        let request = ExportMetricsServiceRequest::decode_length_delimited(&mut rest)
            .map_err(|e| FormatError(format!("opentelemetry1.0 message {index}: {e}")))?;
        for rm in &request.resource_metrics {
            let resource = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or_default();
            let field = |key: &str| {
                attribute(resource, key)
                    .and_then(|kv| text(&kv.value))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        FormatError(format!(
                            "opentelemetry1.0 message {index}: the resource has no {key}"
                        ))
                    })
            };
            let (account_id, region) = (field("cloud.account.id")?, field("cloud.region")?);
            for metric in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                let Some(metric::Data::Summary(summary)) = &metric.data else {
                    continue;
                };
                for dp in &summary.data_points {
                    let named = |key: &str| {
                        attribute(&dp.attributes, key)
                            .and_then(|kv| text(&kv.value))
                            .map(str::to_string)
                            .ok_or_else(|| {
                                FormatError(format!(
                                    "opentelemetry1.0 message {index}, metric {:?}: no {key} attribute",
                                    metric.name
                                ))
                            })
                    };
                    let mut dimensions: Vec<(String, String)> =
                        match attribute(&dp.attributes, "Dimensions")
                            .and_then(|kv| kv.value.as_ref())
                            .and_then(|v| v.value.as_ref())
                        {
                            Some(any_value::Value::KvlistValue(list)) => list
                                .values
                                .iter()
                                .filter_map(|kv| {
                                    Some((kv.key.clone(), text(&kv.value)?.to_string()))
                                })
                                .collect(),
                            _ => Vec::new(),
                        };
                    dimensions.sort();
                    let (mut min, mut max, mut percentiles) = (f64::NAN, f64::NAN, Vec::new());
                    for q in &dp.quantile_values {
                        if q.quantile == 0.0 {
                            min = q.value;
                        } else if q.quantile == 1.0 {
                            max = q.value;
                        } else if q.quantile > 0.0 && q.quantile < 1.0 {
                            // 0.999 is exactly p99.9: hundredths of a percent, rounded.
                            percentiles.push(((q.quantile * 10_000.0).round() as u32, q.value));
                        }
                    }
                    let nanos = if dp.start_time_unix_nano > 0 {
                        dp.start_time_unix_nano
                    } else {
                        dp.time_unix_nano
                    };
                    out.push(Record {
                        account_id: account_id.clone(),
                        region: region.clone(),
                        namespace: named("Namespace")?,
                        metric_name: named("MetricName")?,
                        dimensions,
                        timestamp: i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX),
                        stats: Stats {
                            sum: dp.sum,
                            count: dp.count as f64,
                            min,
                            max,
                            percentiles,
                        },
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' own encoder, shared with `tests/stream.rs`.
    #[allow(dead_code)]
    mod metric_stream {
        include!("../../../tests/common/metric_stream.rs");
    }

    /// An `opentelemetry1.0` record as the documentation describes it.
    fn otel_record(r: &Record) -> Vec<u8> {
        let quantiles: Vec<(f64, f64)> = r
            .stats
            .percentiles
            .iter()
            .map(|(p, v)| (f64::from(*p) / 10_000.0, *v))
            .collect();
        metric_stream::otel_record(&metric_stream::OtelPoint {
            account_id: &r.account_id,
            region: &r.region,
            namespace: &r.namespace,
            metric_name: &r.metric_name,
            dimensions: &r.dimensions,
            start: u64::try_from(r.timestamp).unwrap(),
            sum: r.stats.sum,
            count: r.stats.count as u64,
            min: r.stats.min,
            max: r.stats.max,
            quantiles: &quantiles,
        })
    }

    fn record() -> Record {
        Record {
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            namespace: "AWS/ApiGateway".into(),
            metric_name: "Latency".into(),
            dimensions: vec![
                ("ApiName".into(), "orders".into()),
                ("Stage".into(), "prod".into()),
            ],
            timestamp: 1_700_000_040,
            stats: Stats {
                sum: 250.0,
                count: 5.0,
                min: 10.0,
                max: 120.0,
                percentiles: vec![(9900, 118.0), (9990, 119.5)],
            },
        }
    }

    #[test]
    fn json_lines_as_documented() {
        let data = br#"{"metric_stream_name":"apigw","account_id":"123456789012","region":"us-east-1","namespace":"AWS/ApiGateway","metric_name":"Latency","dimensions":{"Stage":"prod","ApiName":"orders"},"timestamp":1700000040000,"value":{"max":120.0,"min":10.0,"sum":250.0,"count":5.0,"p99":118.0,"p99.9":119.5,"TM(10%:90%)":40.0},"unit":"Milliseconds"}
{"metric_stream_name":"apigw","account_id":"123456789012","region":"us-east-1","namespace":"AWS/ApiGateway","metric_name":"Count","dimensions":{"ApiName":"orders","Stage":"prod"},"timestamp":1700000040000,"value":{"max":1.0,"min":1.0,"sum":5.0,"count":5.0},"unit":"Count"}
"#;
        let records = decode(data).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], record());
        assert_eq!(records[1].stats.get(Stat::Sum), Some(5.0));
        assert_eq!(records[1].stats.get(Stat::Percentile(9900)), None);
    }

    #[test]
    fn opentelemetry_1_0_as_documented() {
        let mut data = otel_record(&record());
        let mut second = record();
        second.metric_name = "Count".into();
        second.stats.percentiles.clear();
        data.extend(otel_record(&second));
        let records = decode(&data).unwrap();
        assert_eq!(records, vec![record(), second]);
    }

    #[test]
    fn bad_records_are_errors_that_say_where() {
        let err = decode(b"{\"account_id\": 1}\n").unwrap_err();
        assert!(err.0.contains("json line 1"), "{err}");
        let err = decode(b"\x05abc").unwrap_err();
        assert!(err.0.contains("opentelemetry1.0 message 1"), "{err}");
        let mut truncated = otel_record(&record());
        truncated.truncate(truncated.len() - 3);
        assert!(decode(&truncated).is_err());
        assert_eq!(decode(b"  \n").unwrap(), vec![]);
    }
}
