//! HTTP and WebSocket APIs (the `apigatewayv2` service): GetApis, GetStages, and GetRoutes
//! joined to GetIntegrations for what each route integrates with.

use std::collections::HashMap;

use super::discovery::{AwsDiscovery, DEFAULT_TIMEOUT_MS, no_retries, tags, timeout_seconds};
use super::integrations::{Integration, backend, lambda_home};
use super::{ApiFilter, DiscoveryError, RawApi, RawStage, RouteKey, Throttle, access_log};
use crate::model::ApiType;

/// HTTP APIs' integration timeout when none is configured (also their maximum).
const HTTP_DEFAULT_TIMEOUT_MS: i32 = 30_000;

impl AwsDiscovery {
    /// Every HTTP and WebSocket API of the wanted types (GetApis, 500 to a page), without
    /// stages or integrations.
    pub(super) async fn v2_listing(
        &self,
        filter: &ApiFilter,
    ) -> Result<Vec<RawApi>, DiscoveryError> {
        self.list(
            "apigatewayv2",
            "GetApis",
            |token| {
                self.clients
                    .apigatewayv2
                    .get_apis()
                    .max_results("500")
                    .set_next_token(token)
                    .customize()
                    .config_override(no_retries!(aws_sdk_apigatewayv2))
                    .send()
            },
            |out| {
                let apis = out
                    .items()
                    .iter()
                    .filter_map(|api| v2_api(api, filter))
                    .collect();
                (apis, out.next_token().map(str::to_string))
            },
        )
        .await
    }

    /// The stages of an HTTP or WebSocket API, with the deployment each serves.
    pub(super) async fn v2_stages(
        &self,
        id: &str,
        websocket: bool,
    ) -> Result<Vec<RawStage>, DiscoveryError> {
        self.list(
            "apigatewayv2",
            "GetStages",
            |token| {
                self.clients
                    .apigatewayv2
                    .get_stages()
                    .api_id(id)
                    .set_next_token(token)
                    .customize()
                    .config_override(no_retries!(aws_sdk_apigatewayv2))
                    .send()
            },
            |out| {
                let stages = out
                    .items()
                    .iter()
                    .filter_map(|s| v2_stage(s, websocket))
                    .collect();
                (stages, out.next_token().map(str::to_string))
            },
        )
        .await
    }

    /// The integration of every route: GetRoutes joined to GetIntegrations through the
    /// route target (`integrations/<id>`).
    pub(super) async fn v2_integrations(
        &self,
        id: &str,
        websocket: bool,
    ) -> Result<Vec<Integration>, DiscoveryError> {
        let default = if websocket {
            DEFAULT_TIMEOUT_MS
        } else {
            HTTP_DEFAULT_TIMEOUT_MS
        };
        let integrations: HashMap<String, Integration> = self
            .list(
                "apigatewayv2",
                "GetIntegrations",
                |token| {
                    self.clients
                        .apigatewayv2
                        .get_integrations()
                        .api_id(id)
                        .set_next_token(token)
                        .customize()
                        .config_override(no_retries!(aws_sdk_apigatewayv2))
                        .send()
                },
                |out| {
                    let found = out
                        .items()
                        .iter()
                        .filter_map(|i| {
                            let integration_type =
                                i.integration_type().map(|t| t.as_str()).unwrap_or_default();
                            let (backend_type, backend) = backend(
                                integration_type,
                                i.integration_uri(),
                                i.connection_type()
                                    == Some(&aws_sdk_apigatewayv2::types::ConnectionType::VpcLink),
                                i.integration_subtype(),
                            );
                            Some((
                                i.integration_id()?.to_string(),
                                Integration {
                                    // Set from the route that targets it.
                                    route: RouteKey::Route(String::new()),
                                    timeout: timeout_seconds(i.timeout_in_millis(), default),
                                    integration_type: integration_type.to_string(),
                                    backend_type,
                                    backend,
                                    streams: false,
                                    home: lambda_home(i.integration_uri()),
                                },
                            ))
                        })
                        .collect();
                    (found, out.next_token().map(str::to_string))
                },
            )
            .await?
            .into_iter()
            .collect();
        let integrations = &integrations;
        let mut found = self
            .list(
                "apigatewayv2",
                "GetRoutes",
                |token| {
                    self.clients
                        .apigatewayv2
                        .get_routes()
                        .api_id(id)
                        .set_next_token(token)
                        .customize()
                        .config_override(no_retries!(aws_sdk_apigatewayv2))
                        .send()
                },
                |out| {
                    let found = out
                        .items()
                        .iter()
                        .filter_map(|route| {
                            let integration = route
                                .target()?
                                .strip_prefix("integrations/")
                                .and_then(|i| integrations.get(i))?;
                            Some(Integration {
                                route: RouteKey::from_v2(route.route_key()?, websocket),
                                ..integration.clone()
                            })
                        })
                        .collect();
                    (found, out.next_token().map(str::to_string))
                },
            )
            .await?;
        found.sort_by(|a, b| a.route.cmp(&b.route));
        Ok(found)
    }
}

/// The throttle of v2 route settings, when both limits are set.
fn v2_throttle(r: &aws_sdk_apigatewayv2::types::RouteSettings) -> Option<Throttle> {
    Some(Throttle {
        rate: r.throttling_rate_limit()?,
        burst: f64::from(r.throttling_burst_limit()?),
    })
}

/// An HTTP or WebSocket API of GetApis, if its type is wanted.
fn v2_api(api: &aws_sdk_apigatewayv2::types::Api, filter: &ApiFilter) -> Option<RawApi> {
    let api_type = match api.protocol_type().map(|p| p.as_str()) {
        Some("HTTP") => ApiType::Http,
        Some("WEBSOCKET") => ApiType::Websocket,
        _ => return None,
    };
    filter.wants_type(api_type).then_some(())?;
    Some(RawApi {
        id: api.api_id()?.to_string(),
        name: api.name().unwrap_or_default().to_string(),
        api_type,
        endpoint_type: "REGIONAL".into(),
        tags: tags(api.tags()),
        stages: None,
        integrations: Vec::new(),
    })
}

/// A stage of GetStages (apigatewayv2).
fn v2_stage(s: &aws_sdk_apigatewayv2::types::Stage, websocket: bool) -> Option<RawStage> {
    let detailed = s
        .default_route_settings()
        .and_then(|r| r.detailed_metrics_enabled())
        .unwrap_or(false)
        || s.route_settings().is_some_and(|r| {
            r.values()
                .any(|r| r.detailed_metrics_enabled() == Some(true))
        });
    let log = access_log(
        s.access_log_settings()
            .map(|a| (a.destination_arn(), a.format())),
    );
    Some(RawStage {
        name: s.stage_name()?.to_string(),
        deployment_id: s.deployment_id().map(str::to_string),
        detailed_metrics: detailed,
        cache_enabled: false,
        throttle: s.default_route_settings().and_then(v2_throttle),
        access_log_group: log.group,
        access_log_stream: log.stream,
        access_log_format: log.format,
        // HTTP and WebSocket APIs have no canary releases.
        canary: None,
        // Filled from ListMetrics for stages with detailed metrics.
        routes: Vec::new(),
        route_throttles: s
            .route_settings()
            .into_iter()
            .flatten()
            .filter_map(|(key, r)| Some((RouteKey::from_v2(key, websocket), v2_throttle(r)?)))
            .collect(),
    })
}
