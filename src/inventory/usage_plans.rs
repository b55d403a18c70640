//! Usage plans (GetUsagePlans): their throttles and quotas, per API stage.

use super::discovery::{AwsDiscovery, no_retries};
use super::{DiscoveryError, Throttle, UsagePlan};

impl AwsDiscovery {
    /// Every usage plan with its throttle, quota and API stages.
    pub(super) async fn usage_plans(&self) -> Result<Vec<UsagePlan>, DiscoveryError> {
        self.list(
            "apigateway",
            "GetUsagePlans",
            |position| {
                self.clients
                    .apigateway
                    .get_usage_plans()
                    .limit(500)
                    .set_position(position)
                    .customize()
                    .config_override(no_retries!(aws_sdk_apigateway))
                    .send()
            },
            |out| {
                let plans = out.items().iter().filter_map(usage_plan).collect();
                (plans, out.position().map(str::to_string))
            },
        )
        .await
    }
}

/// A usage plan of GetUsagePlans, with its throttle, quota and API stages.
fn usage_plan(p: &aws_sdk_apigateway::types::UsagePlan) -> Option<UsagePlan> {
    Some(UsagePlan {
        id: p.id()?.to_string(),
        name: p.name().unwrap_or_default().to_string(),
        throttle: p.throttle().map(|t| Throttle {
            rate: t.rate_limit(),
            burst: f64::from(t.burst_limit()),
        }),
        quota: p
            .quota()
            .and_then(|q| Some((f64::from(q.limit()), q.period()?.as_str().to_string()))),
        api_stages: p
            .api_stages()
            .iter()
            .filter_map(|s| Some((s.api_id()?.to_string(), s.stage()?.to_string())))
            .collect(),
    })
}
