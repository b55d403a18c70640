//! A mock AWS account of any size for discovery, behind the real SDK clients
//! (`aws-smithy-mocks`): REST APIs (GetRestApis pages of 500, GetStages, GetResources) and
//! HTTP APIs (GetApis pages, GetStages, GetRoutes, GetIntegrations), GetAccount,
//! GetUsagePlans, ListMetrics and STS. Every call is logged with the time it arrived, on
//! tokio's clock (paused in the tests, so hours of pacing take no time): the server's count,
//! not the exporter's. A share of the API Gateway calls can be answered
//! TooManyRequestsException, as an account whose quota is spent answers.
//!
//! Emulator gaps it covers: scale (thousands of APIs), throttling on demand, time, and v2
//! deployments (moto keeps no DeploymentId on HTTP API stages).
// Shared by the tests and examples/discoverybench.rs, each using part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_smithy_mocks::{MockResponse, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use tokio::time::Instant;

/// One call as the mock received it.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub operation: &'static str,
    /// The API the call is about (empty for listings).
    pub api: String,
    pub throttled: bool,
}

impl Call {
    /// A call against API Gateway's management quota, or route ListMetrics.
    pub fn is_management(&self) -> bool {
        !matches!(self.operation, "GetCallerIdentity" | "GetMetricData")
    }
}

/// The mock account.
#[derive(Clone)]
pub struct Fleet {
    pub rest: usize,
    pub http: usize,
    /// The deployment each API's stage serves, by API id (`d1` unless changed).
    deployments: Arc<Mutex<HashMap<String, String>>>,
    log: Arc<Mutex<Vec<Call>>>,
    /// Percentage of API Gateway calls answered 429.
    throttle: Arc<AtomicU32>,
    counter: Arc<AtomicU64>,
    /// API Gateway calls answered AccessDeniedException (a role that lost its permissions).
    deny: Arc<AtomicBool>,
    /// The account STS names.
    pub account: String,
}

pub fn rest_id(i: usize) -> String {
    format!("r{i:05}")
}

pub fn http_id(i: usize) -> String {
    format!("h{i:05}")
}

impl Fleet {
    pub fn new(rest: usize, http: usize) -> Fleet {
        Fleet {
            rest,
            http,
            deployments: Arc::default(),
            log: Arc::default(),
            throttle: Arc::default(),
            counter: Arc::default(),
            deny: Arc::default(),
            account: "111122223333".into(),
        }
    }

    /// The same account under another id.
    pub fn with_account(mut self, account: &str) -> Fleet {
        self.account = account.to_string();
        self
    }

    /// From now on every API Gateway call is denied (`true`), or answered again.
    pub fn deny(&self, deny: bool) {
        self.deny.store(deny, Ordering::SeqCst);
    }

    /// Deploys `api` anew: its stage serves deployment `id` from now on.
    pub fn deploy(&self, api: &str, id: &str) {
        self.deployments
            .lock()
            .unwrap()
            .insert(api.to_string(), id.to_string());
    }

    fn deployment(&self, api: &str) -> String {
        self.deployments
            .lock()
            .unwrap()
            .get(api)
            .cloned()
            .unwrap_or_else(|| "d1".into())
    }

    pub fn throttle(&self, percent: u32) {
        self.throttle.store(percent, Ordering::SeqCst);
    }

    /// Every call so far, and empties the log.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// Logs a call; the refusal to answer it with (429 while throttling, 403 while denied).
    fn arrive(&self, operation: &'static str, api: &str) -> Option<HttpResponse> {
        let share = u64::from(self.throttle.load(Ordering::SeqCst));
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        // A deterministic share, spread evenly: a retry meets a different answer.
        let throttled = share > 0 && operation != "GetCallerIdentity" && (n * 37) % 100 < share;
        self.log.lock().unwrap().push(Call {
            at: Instant::now(),
            operation,
            api: api.to_string(),
            throttled,
        });
        if self.deny.load(Ordering::SeqCst) && operation != "GetCallerIdentity" {
            return Some(access_denied());
        }
        throttled.then(too_many_requests)
    }

    /// SDK clients answered by this account (CloudWatch answers only ListMetrics).
    pub fn clients(&self) -> apigateway_exporter::sdk::TargetClients {
        use aws_sdk_apigateway::operation as rest;
        use aws_sdk_apigatewayv2::operation as v2;

        let f = self.clone();
        let rest_apis =
            mock!(aws_sdk_apigateway::Client::get_rest_apis).then_compute_response(move |req| {
                if let Some(refused) = f.arrive("GetRestApis", "") {
                    return MockResponse::Http(refused);
                }
                let from: usize = req.position().map_or(0, |p| p.parse().unwrap());
                let to = (from + 500).min(f.rest);
                let mut out = rest::get_rest_apis::GetRestApisOutput::builder();
                for i in from..to {
                    out = out.items(
                        aws_sdk_apigateway::types::RestApi::builder()
                            .id(rest_id(i))
                            .name(format!("rest-{i}"))
                            .build(),
                    );
                }
                if to < f.rest {
                    out = out.position(to.to_string());
                }
                MockResponse::Output(out.build())
            });
        let f = self.clone();
        let rest_stages =
            mock!(aws_sdk_apigateway::Client::get_stages).then_compute_response(move |req| {
                let id = req.rest_api_id().unwrap_or_default();
                if let Some(refused) = f.arrive("GetStages", id) {
                    return MockResponse::Http(refused);
                }
                MockResponse::Output(
                    rest::get_stages::GetStagesOutput::builder()
                        .item(
                            aws_sdk_apigateway::types::Stage::builder()
                                .stage_name("prod")
                                .deployment_id(f.deployment(id))
                                .build(),
                        )
                        .build(),
                )
            });
        let f = self.clone();
        let resources =
            mock!(aws_sdk_apigateway::Client::get_resources).then_compute_response(move |req| {
                let id = req.rest_api_id().unwrap_or_default();
                if let Some(refused) = f.arrive("GetResources", id) {
                    return MockResponse::Http(refused);
                }
                let integration = aws_sdk_apigateway::types::Integration::builder()
                    .r#type(aws_sdk_apigateway::types::IntegrationType::HttpProxy)
                    .uri(format!("https://{}-{}.example.com/", id, f.deployment(id)))
                    .build();
                MockResponse::Output(
                    rest::get_resources::GetResourcesOutput::builder()
                        .items(
                            aws_sdk_apigateway::types::Resource::builder()
                                .path("/items")
                                .resource_methods(
                                    "GET",
                                    aws_sdk_apigateway::types::Method::builder()
                                        .http_method("GET")
                                        .method_integration(integration)
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
            });
        let f = self.clone();
        let account =
            mock!(aws_sdk_apigateway::Client::get_account).then_compute_response(move |_| {
                if let Some(refused) = f.arrive("GetAccount", "") {
                    return MockResponse::Http(refused);
                }
                MockResponse::Output(rest::get_account::GetAccountOutput::builder().build())
            });
        let f = self.clone();
        let plans =
            mock!(aws_sdk_apigateway::Client::get_usage_plans).then_compute_response(move |_| {
                if let Some(refused) = f.arrive("GetUsagePlans", "") {
                    return MockResponse::Http(refused);
                }
                MockResponse::Output(rest::get_usage_plans::GetUsagePlansOutput::builder().build())
            });

        let f = self.clone();
        let apis =
            mock!(aws_sdk_apigatewayv2::Client::get_apis).then_compute_response(move |req| {
                if let Some(refused) = f.arrive("GetApis", "") {
                    return MockResponse::Http(refused);
                }
                let from: usize = req.next_token().map_or(0, |p| p.parse().unwrap());
                let to = (from + 500).min(f.http);
                let mut out = v2::get_apis::GetApisOutput::builder();
                for i in from..to {
                    out = out.items(
                        aws_sdk_apigatewayv2::types::Api::builder()
                            .api_id(http_id(i))
                            .name(format!("http-{i}"))
                            .protocol_type(aws_sdk_apigatewayv2::types::ProtocolType::Http)
                            .build(),
                    );
                }
                if to < f.http {
                    out = out.next_token(to.to_string());
                }
                MockResponse::Output(out.build())
            });
        let f = self.clone();
        let v2_stages =
            mock!(aws_sdk_apigatewayv2::Client::get_stages).then_compute_response(move |req| {
                let id = req.api_id().unwrap_or_default();
                if let Some(refused) = f.arrive("GetStages", id) {
                    return MockResponse::Http(refused);
                }
                // Every 100th API's stage has detailed metrics: its routes come from ListMetrics.
                let detailed = id.ends_with("00");
                MockResponse::Output(
                    v2::get_stages::GetStagesOutput::builder()
                        .items(
                            aws_sdk_apigatewayv2::types::Stage::builder()
                                .stage_name("$default")
                                .deployment_id(f.deployment(id))
                                .default_route_settings(
                                    aws_sdk_apigatewayv2::types::RouteSettings::builder()
                                        .detailed_metrics_enabled(detailed)
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
            });
        let f = self.clone();
        let routes =
            mock!(aws_sdk_apigatewayv2::Client::get_routes).then_compute_response(move |req| {
                let id = req.api_id().unwrap_or_default();
                if let Some(refused) = f.arrive("GetRoutes", id) {
                    return MockResponse::Http(refused);
                }
                MockResponse::Output(
                    v2::get_routes::GetRoutesOutput::builder()
                        .items(
                            aws_sdk_apigatewayv2::types::Route::builder()
                                .route_key("GET /items")
                                .target("integrations/i1")
                                .build(),
                        )
                        .build(),
                )
            });
        let f = self.clone();
        let integrations = mock!(aws_sdk_apigatewayv2::Client::get_integrations)
            .then_compute_response(move |req| {
                let id = req.api_id().unwrap_or_default();
                if let Some(refused) = f.arrive("GetIntegrations", id) {
                    return MockResponse::Http(refused);
                }
                MockResponse::Output(
                    v2::get_integrations::GetIntegrationsOutput::builder()
                        .items(
                            aws_sdk_apigatewayv2::types::Integration::builder()
                                .integration_id("i1")
                                .integration_type(
                                    aws_sdk_apigatewayv2::types::IntegrationType::HttpProxy,
                                )
                                .integration_uri(format!(
                                    "https://{}-{}.example.com/",
                                    id,
                                    f.deployment(id)
                                ))
                                .build(),
                        )
                        .build(),
                )
            });
        let f = self.clone();
        let list_metrics =
            mock!(aws_sdk_cloudwatch::Client::list_metrics).then_compute_output(move |req| {
                use aws_sdk_cloudwatch::types::{Dimension, Metric};
                let api = req.dimensions()[0].value().unwrap_or_default().to_string();
                let _ = f.arrive("ListMetrics", &api);
                let dim = |n: &str, v: &str| Dimension::builder().name(n).value(v).build();
                aws_sdk_cloudwatch::operation::list_metrics::ListMetricsOutput::builder()
                    .metrics(
                        Metric::builder()
                            .namespace("AWS/ApiGateway")
                            .metric_name("Count")
                            .dimensions(dim("ApiId", &api))
                            .dimensions(dim("Stage", "$default"))
                            .dimensions(dim("Method", "GET"))
                            .dimensions(dim("Resource", "/items"))
                            .build(),
                    )
                    .build()
            });
        let f = self.clone();
        let sts = mock!(aws_sdk_sts::Client::get_caller_identity).then_compute_output(move |_| {
            let _ = f.arrive("GetCallerIdentity", "");
            aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput::builder()
                .account(f.account.as_str())
                .build()
        });
        apigateway_exporter::sdk::TargetClients {
            cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&list_metrics]),
            apigateway: mock_client!(
                aws_sdk_apigateway,
                RuleMode::MatchAny,
                [&rest_apis, &rest_stages, &resources, &account, &plans]
            ),
            apigatewayv2: mock_client!(
                aws_sdk_apigatewayv2,
                RuleMode::MatchAny,
                [&apis, &v2_stages, &routes, &integrations]
            ),
            sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&sts]),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(
                aws_sdk_cloudwatchlogs::Config::builder()
                    .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
                    .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
                    .build(),
            ),
        }
    }
}

/// What API Gateway answers when the account's management quota is spent.
pub fn too_many_requests() -> HttpResponse {
    let mut response = HttpResponse::new(
        StatusCode::try_from(429).expect("status"),
        SdkBody::from(r#"{"message":"Too Many Requests"}"#),
    );
    response
        .headers_mut()
        .insert("x-amzn-errortype", "TooManyRequestsException");
    response
        .headers_mut()
        .insert("content-type", "application/json");
    response
}

/// What API Gateway answers a role without the permission.
pub fn access_denied() -> HttpResponse {
    let mut response = HttpResponse::new(
        StatusCode::try_from(403).expect("status"),
        SdkBody::from(r#"{"message":"User is not authorized to perform: apigateway:GET"}"#),
    );
    response
        .headers_mut()
        .insert("x-amzn-errortype", "AccessDeniedException");
    response
        .headers_mut()
        .insert("content-type", "application/json");
    response
}

/// The most of `calls` in any window `[t, t + width)`.
pub fn busiest<'a>(calls: impl IntoIterator<Item = &'a Call>, width: std::time::Duration) -> usize {
    most_within(calls.into_iter().map(|c| c.at.into_std()).collect(), width)
}

/// The most of the instants `at` in any window `[t, t + width)`.
pub fn most_within(mut at: Vec<std::time::Instant>, width: std::time::Duration) -> usize {
    at.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..at.len() {
        while at[end] - at[start] >= width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// Calls of each operation.
pub fn count(calls: &[Call]) -> std::collections::BTreeMap<&'static str, usize> {
    let mut n = std::collections::BTreeMap::new();
    for c in calls {
        *n.entry(c.operation).or_default() += 1;
    }
    n
}
