//! Route-level metrics (detailed metrics): which methods or routes of a stage CloudWatch has
//! series for, from ListMetrics.

use aws_sdk_cloudwatch::operation::list_metrics::ListMetricsOutput;
use aws_sdk_cloudwatch::types::{DimensionFilter, Metric, RecentlyActive};

use super::discovery::{AwsDiscovery, no_retries};
use super::{DiscoveryError, RouteKey, RouteMetrics};
use crate::model::{ApiType, NAMESPACE};

impl AwsDiscovery {
    /// ListMetrics for one stage: every metric with dimensions beyond the API and stage ones,
    /// grouped by those extra dimensions. Only metrics active in the last three hours, so
    /// routes deleted long ago cost nothing.
    pub(super) async fn list_routes(
        &self,
        api_type: ApiType,
        key: &str,
        stage: &str,
    ) -> Result<Vec<RouteMetrics>, DiscoveryError> {
        let metrics = self
            .list(
                "cloudwatch",
                "ListMetrics",
                |token| {
                    self.clients
                        .cloudwatch
                        .list_metrics()
                        .namespace(NAMESPACE)
                        .dimensions(
                            DimensionFilter::builder()
                                .name(api_type.api_dimension())
                                .value(key)
                                .build(),
                        )
                        .dimensions(
                            DimensionFilter::builder()
                                .name("Stage")
                                .value(stage)
                                .build(),
                        )
                        .recently_active(RecentlyActive::Pt3H)
                        // A source account's metrics, from the monitoring account.
                        .set_include_linked_accounts(self.owning_account.is_some().then_some(true))
                        .set_owning_account(self.owning_account.clone())
                        .set_next_token(token)
                        .customize()
                        .config_override(no_retries!(aws_sdk_cloudwatch))
                        .send()
                },
                // ListMetrics is billed per request, not per metric: nothing for
                // metrics_requested.
                |out| owned(out, self.owning_account.as_deref()),
            )
            .await?;
        let mut routes: Vec<RouteMetrics> = Vec::new();
        for metric in &metrics {
            let Some(name) = metric.metric_name() else {
                continue;
            };
            let mut extra: Vec<(String, String)> = metric
                .dimensions()
                .iter()
                .filter_map(|d| Some((d.name()?.to_string(), d.value()?.to_string())))
                .filter(|(n, _)| n != api_type.api_dimension() && n != "Stage")
                .collect();
            extra.sort();
            let get = |n: &str| extra.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let route_key = match (get("Method"), get("Resource"), get("Route")) {
                (Some(method), Some(resource), None) => RouteKey::Method { resource, method },
                (None, None, Some(route)) => {
                    RouteKey::from_v2(&route, api_type == ApiType::Websocket)
                }
                // A dimension set AWS does not document: leave it out rather than guess.
                _ => continue,
            };
            match routes.iter_mut().find(|r| r.dimensions == extra) {
                Some(r) if !r.metrics.iter().any(|m| m == name) => r.metrics.push(name.to_string()),
                Some(_) => {}
                None => routes.push(RouteMetrics {
                    key: route_key,
                    dimensions: extra,
                    metrics: vec![name.to_string()],
                }),
            }
        }
        routes.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(routes)
    }
}

/// The metrics of one ListMetrics page and its next token. For a monitoring account's source
/// `account`, only the metrics whose owning account (`OwningAccounts`, aligned with `Metrics`)
/// is that account: a metric of another account is never attributed to it.
pub(super) fn owned(
    out: ListMetricsOutput,
    account: Option<&str>,
) -> (Vec<Metric>, Option<String>) {
    let next = out.next_token().map(str::to_string);
    let owners = out.owning_accounts.unwrap_or_default();
    let metrics = out.metrics.unwrap_or_default();
    let metrics = match account {
        None => metrics,
        Some(account) => metrics
            .into_iter()
            .enumerate()
            .filter(|(i, _)| owners.get(*i).is_none_or(|o| o == account))
            .map(|(_, m)| m)
            .collect(),
    };
    (metrics, next)
}
