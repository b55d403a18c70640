//! Discovery through the API Gateway management APIs. Every list call is paginated; GetStages
//! runs with bounded concurrency because the management API allows about 10 requests/s.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use super::{
    ApiFilter, Discovered, Discovery, DiscoveryError, RawApi, RawStage, RouteKey, Throttle,
    cloudwatch_rest_name,
};
use crate::aws::{TargetClients, classify, describe};
use crate::model::ApiType;
use crate::selfmetrics::{CallResult, SelfMetrics};

/// GetStages calls in flight per target.
const STAGE_CONCURRENCY: usize = 4;

/// Discovers APIs with the SDK clients of one target.
pub struct AwsDiscovery {
    clients: TargetClients,
    metrics: SelfMetrics,
}

impl AwsDiscovery {
    pub fn new(clients: TargetClients, metrics: SelfMetrics) -> AwsDiscovery {
        AwsDiscovery { clients, metrics }
    }

    /// Counts a call and turns its error into a [`DiscoveryError`].
    fn record<T, E>(
        &self,
        service: &'static str,
        operation: &'static str,
        result: Result<T, E>,
    ) -> Result<T, DiscoveryError>
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        match result {
            Ok(v) => {
                self.metrics
                    .aws_call(service, operation, CallResult::Success);
                Ok(v)
            }
            Err(e) => {
                self.metrics.aws_call(service, operation, classify(&e));
                Err(DiscoveryError {
                    service,
                    operation,
                    message: describe(&e),
                })
            }
        }
    }

    async fn rest_apis(&self, filter: &ApiFilter) -> Result<Vec<RawApi>, DiscoveryError> {
        let mut apis = Vec::new();
        let mut position: Option<String> = None;
        loop {
            let out = self.record(
                "apigateway",
                "GetRestApis",
                self.clients
                    .apigateway
                    .get_rest_apis()
                    .limit(500)
                    .set_position(position.take())
                    .send()
                    .await,
            )?;
            for api in out.items() {
                let (Some(id), name) = (api.id(), api.name().unwrap_or_default()) else {
                    continue;
                };
                let endpoint_type = api
                    .endpoint_configuration()
                    .and_then(|c| c.types().first())
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_else(|| "EDGE".into());
                apis.push(RawApi {
                    id: id.to_string(),
                    name: name.to_string(),
                    api_type: ApiType::Rest,
                    endpoint_type,
                    tags: tags(api.tags()),
                    stages: None,
                    timeouts: Vec::new(),
                });
            }
            match out.position() {
                Some(p) if !p.is_empty() => position = Some(p.to_string()),
                _ => break,
            }
        }
        if !filter.needs_stages() {
            return Ok(apis);
        }
        // Stages of the wanted APIs, and of any REST API sharing a CloudWatch name with one.
        let wanted_names: BTreeSet<String> = apis
            .iter()
            .filter(|a| filter.wants(&a.id, &a.name, a.api_type, &a.tags))
            .map(|a| cloudwatch_rest_name(&a.name, &a.id))
            .collect();
        let need: Vec<String> = apis
            .iter()
            .filter(|a| wanted_names.contains(&cloudwatch_rest_name(&a.name, &a.id)))
            .map(|a| a.id.clone())
            .collect();
        let stages: HashMap<String, Vec<RawStage>> = futures::stream::iter(need)
            .map(|id| async move { self.rest_stages(&id).await.map(|s| (id, s)) })
            .buffer_unordered(STAGE_CONCURRENCY)
            .try_collect()
            .await?;
        for api in &mut apis {
            api.stages = stages.get(&api.id).cloned();
        }
        Ok(apis)
    }

    async fn rest_stages(&self, id: &str) -> Result<Vec<RawStage>, DiscoveryError> {
        let out = self.record(
            "apigateway",
            "GetStages",
            self.clients
                .apigateway
                .get_stages()
                .rest_api_id(id)
                .send()
                .await,
        )?;
        Ok(out
            .item()
            .iter()
            .filter_map(|s| {
                let settings = s.method_settings();
                let throttle = |m: &aws_sdk_apigateway::types::MethodSetting| Throttle {
                    rate: m.throttling_rate_limit(),
                    burst: f64::from(m.throttling_burst_limit()),
                };
                Some(RawStage {
                    name: s.stage_name()?.to_string(),
                    detailed_metrics: settings
                        .is_some_and(|m| m.values().any(|m| m.metrics_enabled())),
                    cache_enabled: s.cache_cluster_enabled(),
                    throttle: settings.and_then(|m| m.get("*/*")).map(throttle),
                    route_throttles: settings
                        .into_iter()
                        .flatten()
                        .filter_map(|(key, m)| Some((rest_method_key(key)?, throttle(m))))
                        .collect(),
                })
            })
            .collect())
    }

    async fn v2_apis(&self, filter: &ApiFilter) -> Result<Vec<RawApi>, DiscoveryError> {
        let mut apis = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self.record(
                "apigatewayv2",
                "GetApis",
                self.clients
                    .apigatewayv2
                    .get_apis()
                    .max_results("500")
                    .set_next_token(token.take())
                    .send()
                    .await,
            )?;
            for api in out.items() {
                let api_type = match api.protocol_type().map(|p| p.as_str()) {
                    Some("HTTP") => ApiType::Http,
                    Some("WEBSOCKET") => ApiType::Websocket,
                    _ => continue,
                };
                let Some(id) = api.api_id() else { continue };
                if !filter.wants_type(api_type) {
                    continue;
                }
                apis.push(RawApi {
                    id: id.to_string(),
                    name: api.name().unwrap_or_default().to_string(),
                    api_type,
                    endpoint_type: "REGIONAL".into(),
                    tags: tags(api.tags()),
                    stages: None,
                    timeouts: Vec::new(),
                });
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        if !filter.needs_stages() {
            return Ok(apis);
        }
        let need: Vec<(String, bool)> = apis
            .iter()
            .filter(|a| filter.wants(&a.id, &a.name, a.api_type, &a.tags))
            .map(|a| (a.id.clone(), a.api_type == ApiType::Websocket))
            .collect();
        let stages: HashMap<String, Vec<RawStage>> = futures::stream::iter(need)
            .map(|(id, ws)| async move { self.v2_stages(&id, ws).await.map(|s| (id, s)) })
            .buffer_unordered(STAGE_CONCURRENCY)
            .try_collect()
            .await?;
        for api in &mut apis {
            api.stages = stages.get(&api.id).cloned();
        }
        Ok(apis)
    }

    async fn v2_stages(&self, id: &str, websocket: bool) -> Result<Vec<RawStage>, DiscoveryError> {
        let mut stages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self.record(
                "apigatewayv2",
                "GetStages",
                self.clients
                    .apigatewayv2
                    .get_stages()
                    .api_id(id)
                    .set_next_token(token.take())
                    .send()
                    .await,
            )?;
            stages.extend(out.items().iter().filter_map(|s| {
                let detailed = s
                    .default_route_settings()
                    .and_then(|r| r.detailed_metrics_enabled())
                    .unwrap_or(false)
                    || s.route_settings().is_some_and(|r| {
                        r.values()
                            .any(|r| r.detailed_metrics_enabled() == Some(true))
                    });
                Some(RawStage {
                    name: s.stage_name()?.to_string(),
                    detailed_metrics: detailed,
                    cache_enabled: false,
                    throttle: s.default_route_settings().and_then(v2_throttle),
                    route_throttles: s
                        .route_settings()
                        .into_iter()
                        .flatten()
                        .filter_map(|(key, r)| {
                            Some((RouteKey::from_v2(key, websocket), v2_throttle(r)?))
                        })
                        .collect(),
                })
            }));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(stages)
    }
}

/// A REST method settings key (`~1pets~1{id}/GET`: the resource path with `/` escaped as
/// `~1`, then the method); `None` for the stage-wide `*/*`.
fn rest_method_key(key: &str) -> Option<RouteKey> {
    let (path, method) = key.rsplit_once('/')?;
    if path == "*" {
        return None;
    }
    Some(RouteKey::Method {
        resource: path.replace("~1", "/"),
        method: method.to_string(),
    })
}

/// The throttle of v2 route settings, when both limits are set.
fn v2_throttle(r: &aws_sdk_apigatewayv2::types::RouteSettings) -> Option<Throttle> {
    Some(Throttle {
        rate: r.throttling_rate_limit()?,
        burst: f64::from(r.throttling_burst_limit()?),
    })
}

fn tags(tags: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
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
        // The account throttle is useful but optional: without apigateway:GET on /account
        // the rest of the inventory still stands.
        let account_throttle = match self.record(
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
        };
        Ok(Discovered {
            apis,
            account_throttle,
        })
    }
}
