// Metric stream records as AWS documents the `opentelemetry1.0` format, written by the tests
// rather than by the code under test: shared by `tests/stream.rs` and the decoder's unit
// tests (`src/source/stream/formats.rs` includes this file by path), so both read records
// built one way, independently of the decoder; and the Firehose request envelope, shared by
// `tests/stream.rs` and the endpoint's unit tests (`src/http/firehose.rs`).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Metric, ResourceMetrics, ScopeMetrics, Summary, SummaryDataPoint, metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// One minute of one metric.
pub struct OtelPoint<'a> {
    pub account_id: &'a str,
    pub region: &'a str,
    pub namespace: &'a str,
    pub metric_name: &'a str,
    pub dimensions: &'a [(String, String)],
    /// The minute's start, Unix seconds.
    pub start: u64,
    pub sum: f64,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    /// (quantile, value) beyond the minimum and maximum, e.g. (0.99, …) for p99.
    pub quantiles: &'a [(f64, f64)],
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// A length-delimited `ExportMetricsServiceRequest` carrying `p` as a Summary point:
/// quantile 0 the minimum, 1 the maximum, `Dimensions` a nested key-value list.
pub fn otel_record(p: &OtelPoint) -> Vec<u8> {
    let mut quantiles = vec![
        ValueAtQuantile {
            quantile: 0.0,
            value: p.min,
        },
        ValueAtQuantile {
            quantile: 1.0,
            value: p.max,
        },
    ];
    quantiles.extend(
        p.quantiles
            .iter()
            .map(|&(quantile, value)| ValueAtQuantile { quantile, value }),
    );
    let dims = KeyValueList {
        values: p.dimensions.iter().map(|(k, v)| kv(k, s(v))).collect(),
    };
    let start = p.start * 1_000_000_000;
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("cloud.provider", s("aws")),
                    kv("cloud.account.id", s(p.account_id)),
                    kv("cloud.region", s(p.region)),
                    kv(
                        "aws.exporter.arn",
                        s("arn:aws:cloudwatch:us-east-1:123456789012:metric-stream/apigw"),
                    ),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: format!("amazonaws.com/{}/{}", p.namespace, p.metric_name),
                    unit: "{Count}".into(),
                    data: Some(metric::Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            attributes: vec![
                                kv("Namespace", s(p.namespace)),
                                kv("MetricName", s(p.metric_name)),
                                kv("Dimensions", any_value::Value::KvlistValue(dims)),
                            ],
                            start_time_unix_nano: start,
                            time_unix_nano: start + 60_000_000_000,
                            count: p.count,
                            sum: p.sum,
                            quantile_values: quantiles,
                            flags: 0,
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_length_delimited_to_vec()
}

/// A Firehose HTTP endpoint request body (the documented JSON envelope): each of `records`
/// is one Firehose record's data, base64-encoded, under request id `id`.
pub fn firehose_body(id: &str, timestamp_ms: i64, records: &[&[u8]]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::json!({
        "requestId": id,
        "timestamp": timestamp_ms,
        "records": records.iter().map(|r| serde_json::json!({"data": b64.encode(r)})).collect::<Vec<_>>(),
    })
    .to_string()
}
