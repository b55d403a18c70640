//! REST APIs (the `apigateway` service): GetRestApis, GetStages, and GetResources with
//! embedded methods for integration timeouts.

use super::discovery::{AwsDiscovery, DEFAULT_TIMEOUT_MS, no_retries, tags, timeout_seconds};
use super::integrations::{Integration, backend, lambda_home};
use super::{DiscoveryError, RawApi, RawStage, RouteKey, Throttle, access_log};
use aws_sdk_apigateway::types::{ConnectionType, ResponseTransferMode};

use crate::model::ApiType;

impl AwsDiscovery {
    /// Every REST API (GetRestApis, 500 to a page), without stages or integrations.
    pub(super) async fn rest_listing(&self) -> Result<Vec<RawApi>, DiscoveryError> {
        self.list(
            "apigateway",
            "GetRestApis",
            |position| {
                self.clients
                    .apigateway
                    .get_rest_apis()
                    .limit(500)
                    .set_position(position)
                    .customize()
                    .config_override(no_retries!(aws_sdk_apigateway))
                    .send()
            },
            |out| {
                let apis = out.items().iter().filter_map(rest_api).collect();
                (apis, out.position().map(str::to_string))
            },
        )
        .await
    }

    /// The integration of every method (GetResources with embedded methods).
    pub(super) async fn rest_integrations(
        &self,
        id: &str,
    ) -> Result<Vec<Integration>, DiscoveryError> {
        let mut integrations = self
            .list(
                "apigateway",
                "GetResources",
                |position| {
                    self.clients
                        .apigateway
                        .get_resources()
                        .rest_api_id(id)
                        .embed("methods")
                        .limit(500)
                        .set_position(position)
                        .customize()
                        .config_override(no_retries!(aws_sdk_apigateway))
                        .send()
                },
                |out| {
                    let mut found = Vec::new();
                    for resource in out.items() {
                        let Some(path) = resource.path() else {
                            continue;
                        };
                        for (method, m) in resource.resource_methods().into_iter().flatten() {
                            let Some(i) = m.method_integration() else {
                                continue;
                            };
                            let integration_type =
                                i.r#type().map(|t| t.as_str()).unwrap_or_default();
                            let (backend_type, backend) = backend(
                                integration_type,
                                i.uri(),
                                i.connection_type() == Some(&ConnectionType::VpcLink),
                                None,
                            );
                            found.push(Integration {
                                route: RouteKey::Method {
                                    resource: path.to_string(),
                                    method: method.clone(),
                                },
                                timeout: timeout_seconds(
                                    Some(i.timeout_in_millis()),
                                    DEFAULT_TIMEOUT_MS,
                                ),
                                integration_type: integration_type.to_string(),
                                backend_type,
                                backend,
                                streams: i.response_transfer_mode()
                                    == Some(&ResponseTransferMode::Stream),
                                home: lambda_home(i.uri()),
                            });
                        }
                    }
                    (found, out.position().map(str::to_string))
                },
            )
            .await?;
        integrations.sort_by(|a, b| a.route.cmp(&b.route));
        Ok(integrations)
    }

    /// The stages of a REST API (GetStages: one call, AWS does not page it), with the
    /// deployment each serves.
    pub(super) async fn rest_stages(&self, id: &str) -> Result<Vec<RawStage>, DiscoveryError> {
        let out = self
            .call("apigateway", "GetStages", || {
                self.clients
                    .apigateway
                    .get_stages()
                    .rest_api_id(id)
                    .customize()
                    .config_override(no_retries!(aws_sdk_apigateway))
                    .send()
            })
            .await?;
        Ok(out
            .item()
            .iter()
            .filter_map(|s| {
                let settings = s.method_settings();
                let throttle = |m: &aws_sdk_apigateway::types::MethodSetting| Throttle {
                    rate: m.throttling_rate_limit(),
                    burst: f64::from(m.throttling_burst_limit()),
                };
                let log = access_log(
                    s.access_log_settings()
                        .map(|a| (a.destination_arn(), a.format())),
                );
                Some(RawStage {
                    name: s.stage_name()?.to_string(),
                    deployment_id: s.deployment_id().map(str::to_string),
                    detailed_metrics: settings
                        .is_some_and(|m| m.values().any(|m| m.metrics_enabled())),
                    cache_enabled: s.cache_cluster_enabled(),
                    throttle: settings.and_then(|m| m.get("*/*")).map(throttle),
                    access_log_group: log.group,
                    access_log_stream: log.stream,
                    access_log_format: log.format,
                    canary: s.canary_settings().map(|c| super::Canary {
                        percent: c.percent_traffic(),
                        deployment_id: c.deployment_id().unwrap_or_default().to_string(),
                        use_stage_cache: c.use_stage_cache(),
                    }),
                    // Filled from ListMetrics for stages with detailed metrics.
                    routes: Vec::new(),
                    route_throttles: settings
                        .into_iter()
                        .flatten()
                        .filter_map(|(key, m)| Some((rest_method_key(key)?, throttle(m))))
                        .collect(),
                })
            })
            .collect())
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

/// A REST API of GetRestApis.
fn rest_api(api: &aws_sdk_apigateway::types::RestApi) -> Option<RawApi> {
    let endpoint_type = api
        .endpoint_configuration()
        .and_then(|c| c.types().first())
        .map(|t| t.as_str().to_string())
        .unwrap_or_else(|| "EDGE".into());
    Some(RawApi {
        id: api.id()?.to_string(),
        name: api.name().unwrap_or_default().to_string(),
        api_type: ApiType::Rest,
        endpoint_type,
        tags: tags(api.tags()),
        stages: None,
        integrations: Vec::new(),
    })
}
