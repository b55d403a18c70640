//! GetMetricData against CloudWatch: one call per batch (plus NextToken pages), results
//! matched back to queries by id, per-query status codes honoured.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StatusCode,
};
use aws_smithy_types::DateTime;

use super::{MetricSource, Outcome, SourceError, Window};
use crate::config::RequestRate;
use crate::model::CallResult;
use crate::plan::Query;
use crate::ratelimit::RateLimiter;
use crate::sdk::{classify, describe};
use crate::selfmetrics::SelfMetrics;

/// Reads API Gateway metrics of one target from CloudWatch.
pub struct CloudWatchSource {
    client: aws_sdk_cloudwatch::Client,
    metrics: SelfMetrics,
    pace: RateLimiter,
}

impl CloudWatchSource {
    /// A source making at most `max_rps` GetMetricData calls per second (0: no limit).
    pub fn new(
        client: aws_sdk_cloudwatch::Client,
        metrics: SelfMetrics,
        max_rps: RequestRate,
    ) -> CloudWatchSource {
        CloudWatchSource {
            client,
            metrics,
            pace: RateLimiter::new(max_rps),
        }
    }
}

/// The GetMetricData query for `q`, with an id unique in its batch (`q<index>`).
pub fn to_query(index: usize, q: &Query, period: i64) -> MetricDataQuery {
    let dimensions = q
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(*name).value(value).build())
        .collect();
    let metric = Metric::builder()
        .namespace(&*q.namespace)
        .metric_name(&*q.metric_name)
        .set_dimensions(Some(dimensions))
        .build();
    MetricDataQuery::builder()
        .id(format!("q{index}"))
        .metric_stat(
            MetricStat::builder()
                .metric(metric)
                .period(i32::try_from(period).unwrap_or(60))
                .stat(q.stat.cloudwatch_name())
                .build(),
        )
        .return_data(true)
        // A source account's metric, read through the monitoring account.
        .set_account_id(q.account.as_deref().map(str::to_string))
        .build()
}

#[async_trait]
impl MetricSource for CloudWatchSource {
    async fn fetch(&self, queries: &[Query], window: Window) -> Result<Vec<Outcome>, SourceError> {
        let built: Vec<MetricDataQuery> = queries
            .iter()
            .enumerate()
            .map(|(i, q)| to_query(i, q, window.period))
            .collect();
        let mut points: HashMap<usize, Vec<(i64, f64)>> = HashMap::new();
        let mut failed: HashMap<usize, &'static str> = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            self.pace.acquire().await;
            let result = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(built.clone()))
                .start_time(DateTime::from_secs(window.start))
                .end_time(DateTime::from_secs(window.end))
                .scan_by(ScanBy::TimestampAscending)
                .set_next_token(token.take())
                .send()
                .await;
            let out = match result {
                Ok(out) => {
                    // AWS bills every query of every call it answered, NextToken pages
                    // included; a call that failed returned nothing to bill.
                    self.metrics.metrics_requested.inc_by(queries.len() as f64);
                    self.metrics
                        .cloudwatch_call("GetMetricData", CallResult::Success);
                    out
                }
                Err(e) => {
                    let class = classify(&e);
                    self.metrics.cloudwatch_call("GetMetricData", class);
                    return Err(SourceError {
                        message: format!("GetMetricData: {}", describe(&e)),
                        throttled: class == CallResult::Throttled,
                    });
                }
            };
            for r in out.metric_data_results() {
                let Some(index) = r
                    .id()
                    .and_then(|id| id.strip_prefix('q'))
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|i| *i < queries.len())
                else {
                    continue;
                };
                match r.status_code() {
                    Some(StatusCode::InternalError) => {
                        failed.insert(index, "InternalError");
                        continue;
                    }
                    Some(StatusCode::Forbidden) => {
                        failed.insert(index, "Forbidden");
                        continue;
                    }
                    _ => {}
                }
                let entry = points.entry(index).or_default();
                for (ts, value) in r.timestamps().iter().zip(r.values()) {
                    if value.is_finite() {
                        let t = ts.secs().div_euclid(window.period) * window.period;
                        entry.push((t, *value));
                    }
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok((0..queries.len())
            .map(|i| match failed.get(&i) {
                Some(status) => Outcome::Failed(status),
                None => Outcome::Points(points.remove(&i).unwrap_or_default()),
            })
            .collect())
    }
}
