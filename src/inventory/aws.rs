//! Discovery through the API Gateway management APIs. Every list call is paginated; GetStages
//! runs with bounded concurrency because the management API allows about 10 requests/s.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use super::{
    ApiFilter, Discovered, Discovery, DiscoveryError, RawApi, RawStage, RouteKey, RouteMetrics,
    Throttle, UsagePlan, cloudwatch_rest_name, log_group_of,
};
use crate::aws::{TargetClients, classify, describe};
use crate::model::ApiType;
use crate::model::CallResult;
use crate::selfmetrics::SelfMetrics;

/// GetStages calls in flight per target.
const STAGE_CONCURRENCY: usize = 4;

/// Runs `call` on every item with at most [`STAGE_CONCURRENCY`] in flight (the management
/// API allows about 10 requests/s); the first error wins.
async fn bounded<I, T, F, Fut>(items: Vec<I>, call: F) -> Result<Vec<T>, DiscoveryError>
where
    F: FnMut(I) -> Fut,
    Fut: std::future::Future<Output = Result<T, DiscoveryError>>,
{
    futures::stream::iter(items)
        .map(call)
        .buffer_unordered(STAGE_CONCURRENCY)
        .try_collect()
        .await
}

/// API Gateway's integration timeout when none is configured (REST, WebSocket).
const DEFAULT_TIMEOUT_MS: i32 = 29_000;

/// A configured timeout in seconds; unset (absent or 0) means the default.
fn timeout_seconds(ms: Option<i32>, default_ms: i32) -> f64 {
    f64::from(ms.filter(|ms| *ms > 0).unwrap_or(default_ms)) / 1000.0
}

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
        let wanted: Vec<usize> = (0..apis.len())
            .filter(|&i| filter.wants(&apis[i].id, &apis[i].name, ApiType::Rest, &apis[i].tags))
            .collect();
        if filter.needs_stages() {
            // Stages of the wanted APIs, and of any REST API sharing a CloudWatch name with one.
            let wanted_names: BTreeSet<String> = wanted
                .iter()
                .map(|&i| cloudwatch_rest_name(&apis[i].name, &apis[i].id))
                .collect();
            let need: Vec<usize> = (0..apis.len())
                .filter(|&i| {
                    wanted_names.contains(&cloudwatch_rest_name(&apis[i].name, &apis[i].id))
                })
                .collect();
            let stages = bounded(need, |i| {
                let id = apis[i].id.clone();
                async move { Ok((i, self.rest_stages(&id).await?)) }
            })
            .await?;
            for (i, stages) in stages {
                apis[i].stages = Some(stages);
            }
        }
        // Timeouts belong to the API, whatever stages are selected.
        let timeouts = bounded(wanted, |i| {
            let id = apis[i].id.clone();
            async move { Ok((i, self.rest_timeouts(&id).await?)) }
        })
        .await?;
        for (i, timeouts) in timeouts {
            apis[i].timeouts = timeouts;
        }
        Ok(apis)
    }

    /// Integration timeouts of every method (GetResources with embedded methods).
    async fn rest_timeouts(&self, id: &str) -> Result<Vec<(RouteKey, f64)>, DiscoveryError> {
        let mut timeouts = Vec::new();
        let mut position: Option<String> = None;
        loop {
            let out = self.record(
                "apigateway",
                "GetResources",
                self.clients
                    .apigateway
                    .get_resources()
                    .rest_api_id(id)
                    .embed("methods")
                    .limit(500)
                    .set_position(position.take())
                    .send()
                    .await,
            )?;
            for resource in out.items() {
                let Some(path) = resource.path() else {
                    continue;
                };
                for (method, m) in resource.resource_methods().into_iter().flatten() {
                    let Some(integration) = m.method_integration() else {
                        continue;
                    };
                    timeouts.push((
                        RouteKey::Method {
                            resource: path.to_string(),
                            method: method.clone(),
                        },
                        timeout_seconds(Some(integration.timeout_in_millis()), DEFAULT_TIMEOUT_MS),
                    ));
                }
            }
            match out.position() {
                Some(p) if !p.is_empty() => position = Some(p.to_string()),
                _ => break,
            }
        }
        timeouts.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(timeouts)
    }

    /// Integration timeouts of every route: GetRoutes joined to GetIntegrations through the
    /// route target (`integrations/<id>`).
    async fn v2_timeouts(
        &self,
        id: &str,
        websocket: bool,
    ) -> Result<Vec<(RouteKey, f64)>, DiscoveryError> {
        let mut integrations: HashMap<String, Option<i32>> = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            let out = self.record(
                "apigatewayv2",
                "GetIntegrations",
                self.clients
                    .apigatewayv2
                    .get_integrations()
                    .api_id(id)
                    .set_next_token(token.take())
                    .send()
                    .await,
            )?;
            for i in out.items() {
                if let Some(iid) = i.integration_id() {
                    integrations.insert(iid.to_string(), i.timeout_in_millis());
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        // HTTP APIs default to (and cap at) 30 s; WebSocket APIs to 29 s.
        let default = if websocket {
            DEFAULT_TIMEOUT_MS
        } else {
            30_000
        };
        let mut timeouts = Vec::new();
        loop {
            let out = self.record(
                "apigatewayv2",
                "GetRoutes",
                self.clients
                    .apigatewayv2
                    .get_routes()
                    .api_id(id)
                    .set_next_token(token.take())
                    .send()
                    .await,
            )?;
            for route in out.items() {
                let (Some(key), Some(target)) = (route.route_key(), route.target()) else {
                    continue;
                };
                let Some(timeout) = target
                    .strip_prefix("integrations/")
                    .and_then(|i| integrations.get(i))
                else {
                    continue;
                };
                timeouts.push((
                    RouteKey::from_v2(key, websocket),
                    timeout_seconds(*timeout, default),
                ));
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        timeouts.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(timeouts)
    }

    /// Every usage plan (GetUsagePlans, paginated) with its throttle, quota and API stages.
    async fn usage_plans(&self) -> Result<Vec<UsagePlan>, DiscoveryError> {
        let mut plans = Vec::new();
        let mut position: Option<String> = None;
        loop {
            let out = self.record(
                "apigateway",
                "GetUsagePlans",
                self.clients
                    .apigateway
                    .get_usage_plans()
                    .limit(500)
                    .set_position(position.take())
                    .send()
                    .await,
            )?;
            for p in out.items() {
                let Some(id) = p.id() else { continue };
                plans.push(UsagePlan {
                    id: id.to_string(),
                    name: p.name().unwrap_or_default().to_string(),
                    throttle: p.throttle().map(|t| Throttle {
                        rate: t.rate_limit(),
                        burst: f64::from(t.burst_limit()),
                    }),
                    quota: p.quota().and_then(|q| {
                        Some((f64::from(q.limit()), q.period()?.as_str().to_string()))
                    }),
                    api_stages: p
                        .api_stages()
                        .iter()
                        .filter_map(|s| Some((s.api_id()?.to_string(), s.stage()?.to_string())))
                        .collect(),
                });
            }
            match out.position() {
                Some(p) if !p.is_empty() => position = Some(p.to_string()),
                _ => break,
            }
        }
        Ok(plans)
    }

    /// Finds the methods or routes with detailed metrics of every stage that wants them.
    async fn fill_routes(
        &self,
        apis: &mut [RawApi],
        filter: &ApiFilter,
    ) -> Result<(), DiscoveryError> {
        let mut wanted = Vec::new();
        for (a, api) in apis.iter().enumerate() {
            if !filter.wants(&api.id, &api.name, api.api_type, &api.tags) {
                continue;
            }
            let key = match api.api_type {
                ApiType::Rest => cloudwatch_rest_name(&api.name, &api.id),
                ApiType::Http | ApiType::Websocket => api.id.clone(),
            };
            for (s, stage) in api.stages.iter().flatten().enumerate() {
                if filter.selects_stage(&stage.name) && filter.wants_routes(stage.detailed_metrics)
                {
                    wanted.push((a, s, api.api_type, key.clone(), stage.name.clone()));
                }
            }
        }
        let found = bounded(wanted, |(a, s, api_type, key, stage)| async move {
            Ok((a, s, self.list_routes(api_type, &key, &stage).await?))
        })
        .await?;
        for (a, s, routes) in found {
            if let Some(stage) = apis[a].stages.as_mut().and_then(|st| st.get_mut(s)) {
                stage.routes = routes;
            }
        }
        Ok(())
    }

    /// ListMetrics for one stage: every metric with dimensions beyond the API and stage ones,
    /// grouped by those extra dimensions. Only metrics active in the last three hours, so
    /// routes deleted long ago cost nothing.
    async fn list_routes(
        &self,
        api_type: ApiType,
        key: &str,
        stage: &str,
    ) -> Result<Vec<RouteMetrics>, DiscoveryError> {
        use aws_sdk_cloudwatch::types::{DimensionFilter, RecentlyActive};
        let mut routes: Vec<RouteMetrics> = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let result = self
                .clients
                .cloudwatch
                .list_metrics()
                .namespace(crate::model::NAMESPACE)
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
                .set_next_token(token.take())
                .send()
                .await;
            let out = match result {
                Ok(out) => {
                    self.metrics
                        .cloudwatch_call("ListMetrics", CallResult::Success);
                    out
                }
                Err(e) => {
                    self.metrics.cloudwatch_call("ListMetrics", classify(&e));
                    return Err(DiscoveryError {
                        service: "cloudwatch",
                        operation: "ListMetrics",
                        message: describe(&e),
                    });
                }
            };
            for metric in out.metrics() {
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
                    Some(r) if !r.metrics.iter().any(|m| m == name) => {
                        r.metrics.push(name.to_string())
                    }
                    Some(_) => {}
                    None => routes.push(RouteMetrics {
                        key: route_key,
                        dimensions: extra,
                        metrics: vec![name.to_string()],
                    }),
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        routes.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(routes)
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
                    access_log_group: s
                        .access_log_settings()
                        .and_then(|a| a.destination_arn())
                        .and_then(log_group_of),
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
        // Stages (when any are selected) and timeouts of every wanted API, in one pass.
        let wanted: Vec<usize> = (0..apis.len())
            .filter(|&i| filter.wants(&apis[i].id, &apis[i].name, apis[i].api_type, &apis[i].tags))
            .collect();
        let needs_stages = filter.needs_stages();
        let details = bounded(wanted, |i| {
            let (id, ws) = (apis[i].id.clone(), apis[i].api_type == ApiType::Websocket);
            async move {
                let stages = match needs_stages {
                    true => Some(self.v2_stages(&id, ws).await?),
                    false => None,
                };
                Ok((i, stages, self.v2_timeouts(&id, ws).await?))
            }
        })
        .await?;
        for (i, stages, timeouts) in details {
            apis[i].stages = stages;
            apis[i].timeouts = timeouts;
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
                    access_log_group: s
                        .access_log_settings()
                        .and_then(|a| a.destination_arn())
                        .and_then(log_group_of),
                    // Filled from ListMetrics for stages with detailed metrics.
                    routes: Vec::new(),
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
        self.fill_routes(&mut apis, filter).await?;
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
