//! Discovery through the API Gateway management APIs (and ListMetrics for route-level
//! metrics), with the SDK clients of one target. Each service's listings live in a file of
//! their own: [`super::rest`], [`super::http_websocket`], [`super::usage_plans`],
//! [`super::routes`]; every listing is read to its last page ([`super::pages`]).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::pages::all_pages;
use super::{ApiFilter, Discovered, Discovery, DiscoveryError, Throttle};
use crate::model::{ApiType, CallResult};
use crate::sdk::{TargetClients, classify, describe};
use crate::selfmetrics::SelfMetrics;

/// API Gateway's integration timeout when none is configured (REST, WebSocket).
pub(super) const DEFAULT_TIMEOUT_MS: i32 = 29_000;

/// A configured timeout in seconds; unset (absent or 0) means the default.
pub(super) fn timeout_seconds(ms: Option<i32>, default_ms: i32) -> f64 {
    f64::from(ms.filter(|ms| *ms > 0).unwrap_or(default_ms)) / 1000.0
}

/// Discovers APIs with the SDK clients of one target.
pub struct AwsDiscovery {
    pub(super) clients: TargetClients,
    pub(super) metrics: SelfMetrics,
}

impl AwsDiscovery {
    pub fn new(clients: TargetClients, metrics: SelfMetrics) -> AwsDiscovery {
        AwsDiscovery { clients, metrics }
    }

    /// Every item of one listing, read to its last page ([`all_pages`]), each call counted
    /// by [`AwsDiscovery::record`]: `call(token)` sends one page's request, `page(output)`
    /// returns its items and the next token.
    pub(super) async fn list<O, E, T, Fut>(
        &self,
        service: &'static str,
        operation: &'static str,
        mut call: impl FnMut(Option<String>) -> Fut,
        page: impl Fn(O) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, DiscoveryError>
    where
        Fut: Future<Output = Result<O, E>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let page = &page;
        all_pages(service, operation, |token| {
            let sent = call(token);
            async move { Ok(page(self.record(service, operation, sent.await)?)) }
        })
        .await
    }

    /// Counts a call (CloudWatch's in `cloudwatch_requests_total`, the others' in
    /// `aws_requests_total`) and turns its error into a [`DiscoveryError`].
    pub(super) fn record<T, E>(
        &self,
        service: &'static str,
        operation: &'static str,
        result: Result<T, E>,
    ) -> Result<T, DiscoveryError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let count = |result: CallResult| match service {
            "cloudwatch" => self.metrics.cloudwatch_call(operation, result),
            _ => self.metrics.aws_call(service, operation, result),
        };
        match result {
            Ok(v) => {
                count(CallResult::Success);
                Ok(v)
            }
            Err(e) => {
                count(classify(&e));
                Err(DiscoveryError {
                    service,
                    operation,
                    message: describe(&e),
                })
            }
        }
    }
}

pub(super) fn tags(tags: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    tags.map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

#[async_trait]
impl Discovery for AwsDiscovery {
    async fn account_id(&self) -> Result<String, DiscoveryError> {
        let out = self.record(
            "sts",
            "GetCallerIdentity",
            self.clients.sts.get_caller_identity().send().await,
        )?;
        out.account().map(str::to_string).ok_or(DiscoveryError {
            service: "sts",
            operation: "GetCallerIdentity",
            message: "response has no Account".into(),
        })
    }

    async fn discover(&self, filter: &ApiFilter) -> Result<Discovered, DiscoveryError> {
        let mut apis = Vec::new();
        if filter.wants_type(ApiType::Rest) {
            apis.extend(self.rest_apis(filter).await?);
        }
        if filter.wants_type(ApiType::Http) || filter.wants_type(ApiType::Websocket) {
            apis.extend(self.v2_apis(filter).await?);
        }
        self.fill_routes(&mut apis, filter).await?;
        // The account throttle is useful but optional: without apigateway:GET on /account
        // the rest of the inventory still stands. With shards, only shard 0 exports it.
        let account_throttle = if !filter.owns_account() {
            None
        } else {
            match self.record(
                "apigateway",
                "GetAccount",
                self.clients.apigateway.get_account().send().await,
            ) {
                Ok(out) => out.throttle_settings().map(|t| Throttle {
                    rate: t.rate_limit(),
                    burst: f64::from(t.burst_limit()),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the account throttle (apigateway:GET on /account)");
                    None
                }
            }
        };
        let usage_plans = if filter.wants_type(ApiType::Rest) {
            self.usage_plans().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read usage plans (apigateway:GET on /usageplans)");
                Vec::new()
            })
        } else {
            Vec::new()
        };
        Ok(Discovered {
            apis,
            account_throttle,
            usage_plans,
        })
    }
}
