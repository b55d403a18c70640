//! Discovery through the API Gateway management APIs. Every list call is paginated; GetStages
//! runs with bounded concurrency because the management API allows about 10 requests/s.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use super::{ApiFilter, Discovery, DiscoveryError, RawApi, RawStage, cloudwatch_rest_name};
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
                Some(RawStage {
                    name: s.stage_name()?.to_string(),
                    detailed_metrics: s
                        .method_settings()
                        .is_some_and(|m| m.values().any(|m| m.metrics_enabled())),
                    cache_enabled: s.cache_cluster_enabled(),
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
        let need: Vec<String> = apis
            .iter()
            .filter(|a| filter.wants(&a.id, &a.name, a.api_type, &a.tags))
            .map(|a| a.id.clone())
            .collect();
        let stages: HashMap<String, Vec<RawStage>> = futures::stream::iter(need)
            .map(|id| async move { self.v2_stages(&id).await.map(|s| (id, s)) })
            .buffer_unordered(STAGE_CONCURRENCY)
            .try_collect()
            .await?;
        for api in &mut apis {
            api.stages = stages.get(&api.id).cloned();
        }
        Ok(apis)
    }

    async fn v2_stages(&self, id: &str) -> Result<Vec<RawStage>, DiscoveryError> {
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

    async fn discover(&self, filter: &ApiFilter) -> Result<Vec<RawApi>, DiscoveryError> {
        let mut apis = Vec::new();
        if filter.wants_type(ApiType::Rest) {
            apis.extend(self.rest_apis(filter).await?);
        }
        if filter.wants_type(ApiType::Http) || filter.wants_type(ApiType::Websocket) {
            apis.extend(self.v2_apis(filter).await?);
        }
        Ok(apis)
    }
}
