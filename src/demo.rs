//! The built-in demo: a synthetic inventory and a synthetic CloudWatch behind the same
//! [`Discovery`] and [`MetricSource`] traits, so the whole pipeline runs without AWS.
//!
//! Values are a pure function of (seed, series, statistic, period): re-reading a period gives
//! the same answer, and a period's counts grow until a minute after it ends, like CloudWatch's
//! late data. Traffic follows a daily curve with noise; an hourly incident schedule makes
//! every API alert the project ships fire and resolve (the exporter's own alerts need a real
//! fault; the alert rules' unit tests cover them):
//!
//! | minutes | API | what |
//! |---|---|---|
//! | 0–12 | `payments` (REST) `prod` | 5XX burst: 12 % of requests |
//! | 15–38 | `orders` (HTTP) `$default` | demand above the 250 rps stage limit: 25 % answered 4XX, 22 % 429 |
//! | 40–58 | `reports` (REST) `prod` | integration latency climbs to 98 % of the 29 s timeout |
//! | 45–55 | `chat` (WebSocket) `production` | integration errors at 20 % of messages, its Lambda function throttled |
//! | 20–32 | `webhooks` (HTTP) `prod` | the authorizer fails for 3 % of requests (500) |
//! | 25–45 | `payments` (REST) `prod` canary (10 % of requests) | 8 % of the canary's requests fail (mostly 502 from its Lambda), its latency nearly doubles; the base stays healthy |

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::inventory::{
    ApiFilter, BackendType, Discovered, Discovery, DiscoveryError, Integration, RawApi, RawStage,
    Role, RouteKey, SourceSpec, Sources, Throttle, UsagePlan,
};
use crate::model::{ApiType, Cause, Family, Stat};
use crate::plan::Query;
use crate::source::{MetricSource, Outcome, PartCounts, SourceError, Window, split};

/// The account id the demo reports: obviously not a real one.
pub const ACCOUNT_ID: &str = "000000000000";
/// The region the demo reports.
pub const REGION: &str = "demo-region-1";
/// API Gateway's default integration timeout, in milliseconds.
const TIMEOUT_MS: f64 = 29_000.0;
/// Length of the incident schedule, in seconds: an hour, so every incident lasts longer
/// than the `for:` of the alert it should fire (up to 15 minutes) plus its rate window.
pub const INCIDENT_CYCLE: i64 = 60 * 60;

/// A recurring incident on an API's first stage, in minutes of the hourly cycle.
#[derive(Debug, Clone)]
pub struct Incident {
    pub api: &'static str,
    pub minutes: std::ops::Range<i64>,
}

/// 5XX burst: 12 % of payments' requests fail (ApiGateway5xxErrorRateHigh, error budget burn).
pub const FIVE_XX_BURST: Incident = Incident {
    api: "payments",
    minutes: 0..12,
};
/// Demand above orders' 250 rps stage limit: 25 % answered 4XX, 22 % 429
/// (ApiGateway4xxErrorRateHigh, ApiGatewayThrottling, ApiGatewayNearThrottleLimit).
pub const THROTTLING: Incident = Incident {
    api: "orders",
    minutes: 15..38,
};
/// reports' integration latency climbs to 98 % of its 29 s timeout (ApiGatewayLatencyNearTimeout).
pub const LATENCY_CREEP: Incident = Incident {
    api: "reports",
    minutes: 40..58,
};
/// chat's integration errors reach 20 % of messages, and its Lambda function throttles 6 % of
/// invocation requests (ApiGatewayWebSocketErrorRateHigh, ApiGatewayBackendThrottled).
pub const WEBSOCKET_ERRORS: Incident = Incident {
    api: "chat",
    minutes: 45..55,
};
/// webhooks' authorizer fails for 3 % of requests (ApiGatewayAuthorizerFailing).
pub const AUTHORIZER_FAILURES: Incident = Incident {
    api: "webhooks",
    minutes: 20..32,
};

/// payments' canary deployment regresses: 8 % of the canary's requests fail and its latency
/// nearly doubles, while the base stays healthy (ApiGatewayCanary5xxWorseThanBase). The demo
/// takes the stage's own series to include the canary's requests (the likelier reading of
/// AWS's guide), so they move a little too.
pub const CANARY_REGRESSION: Incident = Incident {
    api: "payments",
    minutes: 25..45,
};
/// The share of payments' `prod` requests its canary release serves, in percent.
pub const CANARY_PERCENT: f64 = 10.0;
/// The canary's 5XX share during [`CANARY_REGRESSION`].
const CANARY_5XX_RATE: f64 = 0.08;

/// One demo API: its traffic level and shape.
#[derive(Debug, Clone, Copy)]
struct DemoApi {
    id: &'static str,
    name: &'static str,
    api_type: ApiType,
    endpoint: &'static str,
    stages: &'static [(&'static str, bool, bool)],
    /// Requests per second at the daily peak (stage `prod`-like; other stages get 5 %).
    peak_rps: f64,
    /// Median latency and integration latency in milliseconds.
    latency_ms: f64,
    integration_ms: f64,
    /// Rate and burst limit of the first stage, when it sets one.
    limit: Option<(f64, f64)>,
    /// Routes (`METHOD /path`, or a WebSocket route key) with their integration timeout (s).
    routes: &'static [(&'static str, f64)],
    /// What every route integrates with: integration type, backend type, backend.
    backend: (&'static str, BackendType, &'static str),
}

/// Routes that stream their response (REST response streaming): catalog's export runs for
/// minutes, so its latency says nothing about its timeout.
const STREAMING_ROUTES: &[(&str, &str)] = &[("catalog", "GET /items/export")];

const APIS: [DemoApi; 6] = [
    DemoApi {
        id: "a1b2c3d4e5",
        name: "payments",
        api_type: ApiType::Rest,
        endpoint: "REGIONAL",
        stages: &[("prod", true, true), ("staging", false, false)],
        peak_rps: 120.0,
        latency_ms: 85.0,
        integration_ms: 70.0,
        limit: Some((1000.0, 2000.0)),
        routes: &[("POST /charges", 29.0), ("GET /charges/{id}", 10.0)],
        backend: ("AWS_PROXY", BackendType::Lambda, "payments-api"),
    },
    DemoApi {
        id: "f6g7h8i9j0",
        name: "reports",
        api_type: ApiType::Rest,
        endpoint: "EDGE",
        stages: &[("prod", false, false)],
        peak_rps: 8.0,
        latency_ms: 900.0,
        integration_ms: 850.0,
        limit: None,
        routes: &[("GET /reports", 29.0)],
        backend: (
            "HTTP_PROXY",
            BackendType::Http,
            "reports.internal.example.com",
        ),
    },
    DemoApi {
        id: "k1l2m3n4o5",
        name: "catalog",
        api_type: ApiType::Rest,
        endpoint: "PRIVATE",
        stages: &[("prod", false, true)],
        peak_rps: 60.0,
        latency_ms: 40.0,
        integration_ms: 30.0,
        limit: Some((300.0, 600.0)),
        routes: &[("GET /items", 60.0), ("GET /items/export", 29.0)],
        backend: ("AWS_PROXY", BackendType::Lambda, "catalog-api"),
    },
    DemoApi {
        id: "p6q7r8s9t0",
        name: "orders",
        api_type: ApiType::Http,
        endpoint: "REGIONAL",
        stages: &[("$default", true, false)],
        peak_rps: 140.0,
        latency_ms: 45.0,
        integration_ms: 38.0,
        limit: Some((250.0, 500.0)),
        routes: &[("POST /orders", 30.0), ("GET /orders/{id}", 30.0)],
        backend: ("AWS_PROXY", BackendType::Lambda, "orders-api"),
    },
    DemoApi {
        id: "u1v2w3x4y5",
        name: "webhooks",
        api_type: ApiType::Http,
        endpoint: "REGIONAL",
        stages: &[("prod", false, false), ("staging", false, false)],
        peak_rps: 15.0,
        latency_ms: 120.0,
        integration_ms: 110.0,
        limit: None,
        routes: &[("POST /hooks", 15.0)],
        backend: ("AWS_PROXY", BackendType::AwsService, "SQS-SendMessage"),
    },
    DemoApi {
        id: "z6a7b8c9d0",
        name: "chat",
        api_type: ApiType::Websocket,
        endpoint: "REGIONAL",
        stages: &[("production", true, false)],
        peak_rps: 40.0,
        latency_ms: 0.0,
        integration_ms: 25.0,
        limit: Some((100.0, 200.0)),
        routes: &[("$connect", 29.0), ("sendMessage", 29.0)],
        backend: ("AWS_PROXY", BackendType::Lambda, "chat-handler"),
    },
];

/// The detailed metrics of a demo stage: every route of the API, every metric of its type.
fn demo_routes(a: &DemoApi) -> Vec<crate::inventory::RouteMetrics> {
    let websocket = a.api_type == ApiType::Websocket;
    a.routes
        .iter()
        .map(|(route, _)| {
            let key = RouteKey::from_v2(route, websocket);
            let dimensions = match &key {
                RouteKey::Method { resource, method } => vec![
                    ("Method".to_string(), method.clone()),
                    ("Resource".to_string(), resource.clone()),
                ],
                RouteKey::Route(r) => vec![("Route".to_string(), r.clone())],
            };
            crate::inventory::RouteMetrics {
                key,
                dimensions,
                metrics: Family::ALL
                    .iter()
                    .filter_map(|f| f.cloudwatch_metric(a.api_type))
                    .map(str::to_string)
                    .collect(),
            }
        })
        .collect()
}

/// A demo API as discovery with API Gateway reads (the monitoring account's own, or a source
/// account read with a role) finds it.
fn raw_api(a: &DemoApi) -> RawApi {
    RawApi {
        id: a.id.into(),
        name: a.name.into(),
        api_type: a.api_type,
        endpoint_type: a.endpoint.into(),
        tags: BTreeMap::from([("environment".into(), "demo".into())]),
        stages: Some(
            a.stages
                .iter()
                .enumerate()
                .map(|(i, (name, detailed, cache))| {
                    let throttle = a
                        .limit
                        .filter(|_| i == 0)
                        .map(|(rate, burst)| Throttle { rate, burst });
                    RawStage {
                        name: (*name).into(),
                        deployment_id: Some(format!("{}-live", a.id)),
                        detailed_metrics: *detailed,
                        cache_enabled: *cache,
                        throttle,
                        access_log_group: Some(format!("/demo/{}/{name}", a.name)),
                        access_log_stream: None,
                        access_log_format: Some(match a.api_type {
                            ApiType::Rest => crate::model::rest_access_log_format(),
                            _ => crate::model::ACCESS_LOG_FORMAT.to_string(),
                        }),
                        routes: if *detailed {
                            demo_routes(a)
                        } else {
                            Vec::new()
                        },
                        // payments' first stage tries a new deployment on 10 %.
                        canary: (a.name == "payments" && i == 0).then(|| {
                            crate::inventory::Canary {
                                percent: CANARY_PERCENT,
                                deployment_id: "demo-canary".into(),
                                use_stage_cache: false,
                            }
                        }),
                        // The first route of a limited stage has a tighter limit.
                        route_throttles: throttle
                            .zip(a.routes.first())
                            .map(|(t, (route, _))| {
                                let key =
                                    RouteKey::from_v2(route, a.api_type == ApiType::Websocket);
                                (
                                    key,
                                    Throttle {
                                        rate: t.rate / 5.0,
                                        burst: t.burst / 5.0,
                                    },
                                )
                            })
                            .into_iter()
                            .collect(),
                    }
                })
                .collect(),
        ),
        integrations: a
            .routes
            .iter()
            .map(|(route, secs)| Integration {
                route: RouteKey::from_v2(route, a.api_type == ApiType::Websocket),
                timeout: *secs,
                integration_type: a.backend.0.into(),
                backend_type: a.backend.1,
                backend: a.backend.2.into(),
                streams: STREAMING_ROUTES.contains(&(a.name, *route)),
                home: None,
            })
            .collect(),
    }
}

/// A demo API as a monitoring account sees it through ListMetrics alone (a source account
/// without a role): REST by name without its id, HTTP and WebSocket by id without their name,
/// stages and routes; nothing of API Gateway's own configuration.
fn listed_api(a: &DemoApi) -> RawApi {
    let full = raw_api(a);
    let (id, name) = match a.api_type {
        ApiType::Rest => (String::new(), full.name),
        ApiType::Http | ApiType::Websocket => (full.id, String::new()),
    };
    RawApi {
        id,
        name,
        endpoint_type: String::new(),
        tags: BTreeMap::new(),
        integrations: Vec::new(),
        stages: full.stages.map(|stages| {
            stages
                .into_iter()
                .map(|s| RawStage::listed(s.name, s.detailed_metrics, s.cache_enabled, s.routes))
                .collect()
        }),
        ..full
    }
}

/// The demo's source accounts, as a CloudWatch monitoring account reads them: one with a
/// read-only role in it, one from ListMetrics alone.
pub const SOURCE_WITH_ROLE: &str = "210987654321";
pub const SOURCE_WITHOUT_ROLE: &str = "345678901234";

/// The source accounts' APIs.
const SOURCE_APIS: [(&str, DemoApi); 3] = [
    (
        SOURCE_WITH_ROLE,
        DemoApi {
            id: "g7h8j9k0m1",
            name: "shipping",
            api_type: ApiType::Rest,
            endpoint: "REGIONAL",
            stages: &[("prod", false, false)],
            peak_rps: 35.0,
            latency_ms: 110.0,
            integration_ms: 95.0,
            limit: None,
            routes: &[("POST /shipments", 29.0)],
            backend: ("AWS_PROXY", BackendType::Lambda, "shipping-api"),
        },
    ),
    (
        SOURCE_WITHOUT_ROLE,
        DemoApi {
            id: "n2p3q4r5s6",
            name: "ledger",
            api_type: ApiType::Rest,
            endpoint: "REGIONAL",
            stages: &[("prod", false, false)],
            peak_rps: 20.0,
            latency_ms: 60.0,
            integration_ms: 50.0,
            limit: None,
            routes: &[("POST /entries", 29.0)],
            backend: ("AWS_PROXY", BackendType::Lambda, "ledger-api"),
        },
    ),
    (
        SOURCE_WITHOUT_ROLE,
        DemoApi {
            id: "t7u8v9w0x1",
            name: "notifications",
            api_type: ApiType::Http,
            endpoint: "REGIONAL",
            stages: &[("$default", true, false)],
            peak_rps: 25.0,
            latency_ms: 35.0,
            integration_ms: 30.0,
            limit: None,
            routes: &[("POST /notify", 30.0)],
            backend: ("AWS_PROXY", BackendType::Lambda, "notify-api"),
        },
    ),
];

/// The demo API of a series' labels: by id, or by name for a REST API read without a role.
fn demo_api(labels: &crate::model::SeriesLabels) -> Option<&'static DemoApi> {
    APIS.iter()
        .chain(SOURCE_APIS.iter().map(|(_, a)| a))
        .find(|a| match labels.api_id.is_empty() {
            true => a.name == labels.api_name,
            false => a.id == labels.api_id,
        })
}

/// The demo's source accounts, as a monitoring account's [`Sources`]: each a discovery of
/// its own, with or without a role.
pub struct DemoSources;

/// One demo source account.
struct DemoSourceAccount {
    account: &'static str,
    with_role: bool,
}

#[async_trait]
impl Discovery for DemoSourceAccount {
    async fn account_id(&self) -> Result<String, DiscoveryError> {
        Ok(self.account.to_string())
    }

    async fn discover(&self, filter: &ApiFilter) -> Result<Discovered, DiscoveryError> {
        let apis = SOURCE_APIS
            .iter()
            .filter(|(account, a)| *account == self.account && filter.wants_type(a.api_type))
            .map(|(_, a)| match self.with_role {
                true => raw_api(a),
                false => listed_api(a),
            })
            .collect();
        Ok(Discovered {
            apis,
            ..Discovered::default()
        })
    }
}

#[async_trait]
impl Sources for DemoSources {
    async fn discovery(&self, source: &SourceSpec) -> Arc<dyn Discovery> {
        let account = match source.account_id.as_str() {
            SOURCE_WITH_ROLE => SOURCE_WITH_ROLE,
            _ => SOURCE_WITHOUT_ROLE,
        };
        Arc::new(DemoSourceAccount {
            account,
            with_role: source.role.is_some(),
        })
    }

    async fn linked_accounts(&self) -> Result<Vec<String>, DiscoveryError> {
        Ok(vec![SOURCE_WITH_ROLE.into(), SOURCE_WITHOUT_ROLE.into()])
    }
}

/// The demo's source accounts as `source_accounts` would list them.
pub fn source_specs() -> Vec<SourceSpec> {
    vec![
        SourceSpec {
            account_id: SOURCE_WITH_ROLE.into(),
            role: Some(Role {
                arn: format!("arn:aws:iam::{SOURCE_WITH_ROLE}:role/apigateway-exporter-read"),
                external_id: None,
            }),
        },
        SourceSpec {
            account_id: SOURCE_WITHOUT_ROLE.into(),
            role: None,
        },
    ]
}

/// The demo inventory.
pub struct DemoDiscovery;

#[async_trait]
impl Discovery for DemoDiscovery {
    async fn account_id(&self) -> Result<String, DiscoveryError> {
        Ok(ACCOUNT_ID.to_string())
    }

    async fn discover(&self, filter: &ApiFilter) -> Result<Discovered, DiscoveryError> {
        let apis = APIS
            .iter()
            .filter(|a| filter.wants_type(a.api_type))
            .map(raw_api)
            .collect();
        Ok(Discovered {
            apis,
            usage_plans: vec![UsagePlan {
                id: "demo01".into(),
                name: "partners".into(),
                throttle: Some(Throttle {
                    rate: 100.0,
                    burst: 200.0,
                }),
                quota: Some((1_000_000.0, "MONTH".into())),
                api_stages: vec![("a1b2c3d4e5".into(), "prod".into())],
            }],
            account_throttle: Some(Throttle {
                rate: 10_000.0,
                burst: 5_000.0,
            }),
            linked: Vec::new(),
        })
    }
}

/// Synthetic CloudWatch.
pub struct DemoSource {
    seed: u64,
    clock: Arc<dyn Clock>,
    period: i64,
}

impl DemoSource {
    /// Traffic drawn from `seed`, as of `clock`, in periods of `period` seconds.
    pub fn new(seed: u64, clock: Arc<dyn Clock>, period: i64) -> DemoSource {
        DemoSource {
            seed,
            clock,
            period,
        }
    }
}

#[async_trait]
impl MetricSource for DemoSource {
    async fn fetch(&self, queries: &[Query], window: Window) -> Result<Vec<Outcome>, SourceError> {
        let now = self.clock.now();
        Ok(queries
            .iter()
            .map(|q| {
                // A Lambda function's series follow the first stage of the API it backs.
                let api = match &q.labels.function {
                    Some(f) => APIS
                        .iter()
                        .chain(SOURCE_APIS.iter().map(|(_, a)| a))
                        .find(|a| a.backend.1 == BackendType::Lambda && a.backend.2 == f.as_str()),
                    None => demo_api(&q.labels),
                };
                let Some(api) = api else {
                    return Outcome::Points(Vec::new());
                };
                let first = api.stages.first().map_or("", |s| s.0);
                let stage = match &q.labels.function {
                    Some(_) => first,
                    None => q.labels.stage.as_deref().unwrap_or(""),
                };
                if q.family == Family::CanaryResponses {
                    return split(self.canary_responses(api, stage, window, now));
                }
                if q.family == Family::CanaryBaseResponses {
                    return split(self.base_responses(api, stage, window, now));
                }
                if q.family.split() {
                    return split(self.responses(api, stage, window, now));
                }
                // Routes split their stage's traffic: the first route takes 70 %, the rest share
                // what is left.
                let share = match &q.labels.route {
                    None => 1.0,
                    Some(key) => {
                        let index = api
                            .routes
                            .iter()
                            .position(|(r, _)| {
                                RouteKey::from_v2(r, api.api_type == ApiType::Websocket) == *key
                            })
                            .unwrap_or(0);
                        if index == 0 {
                            0.7
                        } else {
                            0.3 / (api.routes.len() - 1).max(1) as f64
                        }
                    }
                };
                let points = (window.start..window.end)
                    .step_by(window.period.max(1) as usize)
                    .filter(|t| *t <= now)
                    .filter_map(|t| {
                        let mut p = if q.family.canary() {
                            Period::canary(self.seed, api, stage, t, self.period)
                        } else {
                            Period::new(self.seed, api, stage, t, self.period)
                        };
                        p.requests = (p.requests * share).round();
                        // Counts arrive gradually until a minute after the period ends.
                        let arrived =
                            ((now - t) as f64 / (self.period + 60) as f64).clamp(0.0, 1.0);
                        value(&p, q.family, q.stat, arrived).map(|v| (t, v))
                    })
                    .collect();
                Outcome::Points(points)
            })
            .collect())
    }
}

impl DemoSource {
    /// Synthetic access-log responses of a stage: its 4XX and 5XX split into causes, per
    /// stage and per route (the first route takes 70 %), arriving like the counts.
    fn responses(&self, api: &DemoApi, stage: &str, window: Window, now: i64) -> PartCounts {
        let websocket = api.api_type == ApiType::Websocket;
        let mut parts = PartCounts::new();
        for t in (window.start..window.end)
            .step_by(window.period.max(1) as usize)
            .filter(|t| *t <= now)
        {
            let p = Period::new(self.seed, api, stage, t, self.period);
            let arrived = ((now - t) as f64 / (self.period + 60) as f64).clamp(0.0, 1.0);
            for (status, response_type, full) in causes(&p) {
                let cause = Cause {
                    status: status.to_string(),
                    response_type: response_type.to_string(),
                };
                let mut add = |route: Option<RouteKey>, n: f64| {
                    let n = (n * arrived).floor();
                    if n > 0.0 {
                        // Two shares may name the same cause: they add up.
                        *parts
                            .entry((route, cause.clone()))
                            .or_default()
                            .entry(t)
                            .or_default() += n;
                    }
                };
                add(None, full);
                for (i, (route, _)) in api.routes.iter().enumerate() {
                    let share = if i == 0 {
                        0.7
                    } else {
                        0.3 / (api.routes.len() - 1).max(1) as f64
                    };
                    let share = if api.routes.len() == 1 { 1.0 } else { share };
                    add(
                        Some(RouteKey::from_v2(route, websocket)),
                        (full * share).floor(),
                    );
                }
            }
        }
        parts
    }
}

impl DemoSource {
    /// Synthetic responses of a stage's canary, every status (its access log group is read
    /// in full): the errors split into causes as the stage's are, the rest answered 200.
    fn canary_responses(&self, api: &DemoApi, stage: &str, window: Window, now: i64) -> PartCounts {
        self.every_response(window, now, |t| {
            Period::canary(self.seed, api, stage, t, self.period)
        })
    }

    /// Synthetic responses of the base of a stage running a canary: the stage's own traffic
    /// but the canary's share, every status.
    fn base_responses(&self, api: &DemoApi, stage: &str, window: Window, now: i64) -> PartCounts {
        self.every_response(window, now, |t| {
            let mut p = Period::new(self.seed, api, stage, t, self.period);
            p.requests = (p.requests * (1.0 - CANARY_PERCENT / 100.0)).round();
            p
        })
    }

    /// Every response of the periods `period(t)` gives, by cause, 200s included.
    fn every_response(
        &self,
        window: Window,
        now: i64,
        period: impl Fn(i64) -> Period,
    ) -> PartCounts {
        let mut parts = PartCounts::new();
        for t in (window.start..window.end)
            .step_by(window.period.max(1) as usize)
            .filter(|t| *t <= now)
        {
            let p = period(t);
            let arrived = ((now - t) as f64 / (self.period + 60) as f64).clamp(0.0, 1.0);
            let causes = causes(&p);
            let errors: f64 = causes.iter().map(|(_, _, n)| n).sum();
            let ok = (p.requests - errors).max(0.0);
            for (status, response_type, full) in causes.into_iter().chain([(200, "none", ok)]) {
                let n = (full * arrived).floor();
                if n > 0.0 {
                    let cause = Cause {
                        status: status.to_string(),
                        response_type: response_type.to_string(),
                    };
                    *parts
                        .entry((None, cause))
                        .or_default()
                        .entry(t)
                        .or_default() += n;
                }
            }
        }
        parts
    }
}

/// A period's 4XX and 5XX (WebSocket: integration errors) as (status, response type, count)
/// once every request arrived. The shares are cut with cumulative floors, so together they
/// are exactly the period's error count; the incidents shift them to their cause.
fn causes(p: &Period) -> Vec<(u16, &'static str, f64)> {
    let throttled = (p.requests * p.throttled_rate).floor();
    let quota = (p.requests * p.quota_rate).floor();
    let other_4xx = ((p.requests * p.rate_4xx).floor() - throttled - quota).max(0.0);
    let errors_5xx = (p.requests * p.rate_5xx).floor();
    let authorizer = (p.requests * p.authorizer_rate).floor().min(errors_5xx);
    let errors_5xx = errors_5xx - authorizer;
    let split = |total: f64, shares: &[(u16, &'static str, f64)]| {
        let mut done = 0.0;
        let mut cumulative = 0.0;
        shares
            .iter()
            .map(|&(status, kind, share)| {
                cumulative += share;
                let upto = (total * cumulative).floor().min(total);
                let n = upto - done;
                done = upto;
                (status, kind, n)
            })
            .collect::<Vec<_>>()
    };
    let mut out = vec![
        (429, "THROTTLED", throttled),
        (429, "QUOTA_EXCEEDED", quota),
        (500, "AUTHORIZER_FAILURE", authorizer),
    ];
    out.extend(split(
        other_4xx,
        &[
            (404, "none", 0.5),
            (400, "BAD_REQUEST_BODY", 0.2),
            (401, "UNAUTHORIZED", 0.15),
            (403, "ACCESS_DENIED", 0.15),
        ],
    ));
    let mix_5xx: &[(u16, &'static str, f64)] = if p.timeouts {
        &[(504, "INTEGRATION_TIMEOUT", 0.9), (500, "none", 0.1)]
    } else if p.rate_5xx > 0.05 {
        // A broken deployment: the Lambda behind it answers malformed responses.
        &[(502, "INTEGRATION_FAILURE", 0.85), (500, "none", 0.15)]
    } else {
        &[
            (500, "none", 0.5),
            (502, "INTEGRATION_FAILURE", 0.3),
            (504, "INTEGRATION_TIMEOUT", 0.15),
            (500, "AUTHORIZER_FAILURE", 0.05),
        ]
    };
    out.extend(split(errors_5xx, mix_5xx));
    out.retain(|(_, _, n)| *n > 0.0);
    out
}

/// The traffic of one API stage in one period.
struct Period {
    requests: f64,
    rate_4xx: f64,
    rate_5xx: f64,
    latency_ms: f64,
    integration_ms: f64,
    /// Log-normal spread of latency.
    sigma: f64,
    ws_integration_error_rate: f64,
    /// Share of requests answered 500 because the authorizer failed.
    authorizer_rate: f64,
    /// Share of the Lambda function's invocation requests it throttles.
    lambda_throttle_rate: f64,
    /// Shares of requests answered 429 for a throttle limit and for a usage plan quota.
    throttled_rate: f64,
    quota_rate: f64,
    /// An incident's own Maximum integration latency, in milliseconds.
    max_ms: Option<f64>,
    /// Requests are running into the integration timeout (504s).
    timeouts: bool,
    noise: f64,
}

impl Period {
    fn new(seed: u64, api: &DemoApi, stage: &str, t: i64, period: i64) -> Period {
        let noise = unit(hash(seed, api.id, stage, t));
        // Daily curve: trough at 04:00 UTC, peak at 16:00 UTC, never below 25 % of peak.
        let day = (t.rem_euclid(86_400) as f64) / 86_400.0;
        let daily = 0.625 - 0.375 * (std::f64::consts::TAU * (day - 4.0 / 24.0)).cos();
        let stage_share = if api.stages.first().is_some_and(|s| s.0 == stage) {
            1.0
        } else {
            0.05
        };
        let requests =
            (api.peak_rps * period as f64 * daily * stage_share * (0.9 + 0.2 * noise)).round();
        let minute = t.rem_euclid(INCIDENT_CYCLE) / 60;
        let primary = stage_share == 1.0;
        let mut p = Period {
            requests,
            rate_4xx: 0.01 + 0.01 * noise,
            rate_5xx: 0.001 * noise,
            latency_ms: api.latency_ms * (0.9 + 0.2 * noise),
            integration_ms: api.integration_ms * (0.9 + 0.2 * noise),
            sigma: 0.5,
            ws_integration_error_rate: 0.002,
            authorizer_rate: 0.0,
            lambda_throttle_rate: 0.0002,
            throttled_rate: 0.0,
            // Usage plan clients running out of quota now and then.
            quota_rate: if api.name == "payments" && primary {
                0.0005
            } else {
                0.0
            },
            max_ms: None,
            timeouts: false,
            noise,
        };
        let active = |incident: Incident| {
            primary && api.name == incident.api && incident.minutes.contains(&minute)
        };
        if active(FIVE_XX_BURST) {
            p.rate_5xx = 0.12;
        }
        if active(THROTTLING) {
            // Demand beyond the stage limit: traffic near it, most of the 4XX answers 429s.
            let limit = api
                .limit
                .map_or(p.requests, |(rate, _)| rate * period as f64);
            p.requests = (limit * (1.08 + 0.04 * noise)).round();
            p.rate_4xx = 0.25;
            p.throttled_rate = 0.22;
        }
        if active(LATENCY_CREEP) {
            // Integration latency climbs over three minutes, then its maximum stays at about
            // 98 % of the 29 s timeout.
            let climb = ((minute - LATENCY_CREEP.minutes.start) as f64 / 3.0).min(1.0);
            p.integration_ms = 900.0 + climb * 9_000.0;
            p.latency_ms = p.integration_ms + 40.0;
            p.sigma = 0.38;
            p.max_ms = Some(900.0 + climb * (28_300.0 + 200.0 * noise - 900.0));
            // The slowest requests pass the timeout: answered 504.
            p.rate_5xx = p.rate_5xx.max(0.02 * climb);
            p.timeouts = climb > 0.0;
        }
        if active(AUTHORIZER_FAILURES) {
            p.authorizer_rate = 0.03;
            p.rate_5xx += p.authorizer_rate;
        }
        if active(WEBSOCKET_ERRORS) {
            p.ws_integration_error_rate = 0.2;
            p.lambda_throttle_rate = 0.06;
        }
        if active(CANARY_REGRESSION) {
            // The canary's failures are among the stage's requests too.
            p.rate_5xx += CANARY_PERCENT / 100.0 * CANARY_5XX_RATE;
        }
        p
    }

    /// The canary release's share of a stage's period: [`CANARY_PERCENT`] of its requests at
    /// the base's rates, except during [`CANARY_REGRESSION`].
    fn canary(seed: u64, api: &DemoApi, stage: &str, t: i64, period: i64) -> Period {
        let base = Period::new(seed, api, stage, t, period);
        let minute = t.rem_euclid(INCIDENT_CYCLE) / 60;
        let regressed =
            api.name == CANARY_REGRESSION.api && CANARY_REGRESSION.minutes.contains(&minute);
        let mut p = Period {
            requests: (base.requests * CANARY_PERCENT / 100.0).round(),
            ..base
        };
        if regressed {
            p.rate_5xx = CANARY_5XX_RATE;
            p.latency_ms *= 1.9;
            p.integration_ms *= 1.9;
        }
        p
    }
}

/// z-scores of the standard normal distribution (Acklam's rational approximation).
fn normal_quantile(q: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let q = q.clamp(1e-9, 1.0 - 1e-9);
    let tail = |p: f64| {
        let r = (-2.0 * p.ln()).sqrt();
        (((((C[0] * r + C[1]) * r + C[2]) * r + C[3]) * r + C[4]) * r + C[5])
            / ((((D[0] * r + D[1]) * r + D[2]) * r + D[3]) * r + 1.0)
    };
    if q < 0.02425 {
        tail(q)
    } else if q > 1.0 - 0.02425 {
        -tail(1.0 - q)
    } else {
        let r = (q - 0.5) * (q - 0.5);
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * (q - 0.5)
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The value CloudWatch would return for a statistic of a family in a period, with the
/// share `arrived` of the period's requests published so far.
fn value(p: &Period, family: Family, stat: Stat, arrived: f64) -> Option<f64> {
    let n = (p.requests * arrived).floor();
    let sum = |x: f64| Some((x * arrived).floor());
    let dist = |median: f64| -> Option<f64> {
        if n < 1.0 || median <= 0.0 {
            return None;
        }
        // Mean of a log-normal: median · e^(σ²/2).
        let mean = median * (p.sigma * p.sigma / 2.0).exp();
        match stat {
            Stat::Sum => Some(n * mean),
            Stat::SampleCount => Some(n),
            // API Gateway cuts integrations off at the 29 s timeout.
            Stat::Maximum => Some(
                p.max_ms
                    .filter(|_| median == p.integration_ms)
                    .unwrap_or_else(|| median * (p.sigma * (3.0 + 0.5 * p.noise)).exp())
                    .min(TIMEOUT_MS),
            ),
            Stat::Percentile(_) => {
                Some(median * (p.sigma * normal_quantile(stat.quantile()?)).exp())
            }
        }
    };
    match family {
        Family::Requests => sum(p.requests),
        Family::Errors4xx => sum(p.requests * p.rate_4xx),
        Family::Errors5xx => sum(p.requests * p.rate_5xx),
        Family::CacheHits => sum(p.requests * 0.7),
        Family::CacheMisses => sum(p.requests * 0.3),
        Family::ProcessedBytes => sum(p.requests * 1800.0),
        Family::WsConnects => sum(p.requests * 0.05),
        Family::WsMessages => sum(p.requests),
        Family::WsClientErrors => sum(p.requests * 0.003),
        Family::WsIntegrationErrors => sum(p.requests * p.ws_integration_error_rate),
        Family::WsExecutionErrors => sum(p.requests * 0.001),
        Family::Latency => dist(p.latency_ms),
        Family::IntegrationLatency => dist(p.integration_ms),
        Family::Throttled => sum(p.requests * p.throttled_rate),
        Family::QuotaExceeded => sum(p.requests * p.quota_rate),
        // Answered per cause by `DemoSource::responses`.
        Family::Responses | Family::CanaryResponses | Family::CanaryBaseResponses => None,
        Family::CanaryLatency => dist(p.latency_ms),
        // The function behind the API: what API Gateway did not reject itself; most 5XX are
        // its errors; a trickle of throttles; its duration a little below the integration's.
        Family::LambdaInvocations => sum(p.requests * (1.0 - p.rate_4xx)),
        Family::LambdaErrors => sum(p.requests * p.rate_5xx * 0.85),
        Family::LambdaThrottles => sum(p.requests * p.lambda_throttle_rate),
        Family::LambdaDuration => dist(p.integration_ms * 0.92),
    }
}

/// A stable 64-bit hash (FNV-1a then splitmix64), so demo data is the same on every machine.
fn hash(seed: u64, api: &str, stage: &str, t: i64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in api
        .bytes()
        .chain([0])
        .chain(stage.bytes())
        .chain(t.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// A hash mapped to [0, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles() {
        assert!(normal_quantile(0.5).abs() < 1e-9);
        assert!((normal_quantile(0.9) - 1.281_551_6).abs() < 1e-6);
        assert!((normal_quantile(0.99) - 2.326_347_9).abs() < 1e-6);
    }

    #[test]
    fn values_are_deterministic_and_grow_with_arrival() {
        let api = &APIS[0];
        let a = Period::new(7, api, "prod", 6000, 60);
        let b = Period::new(7, api, "prod", 6000, 60);
        assert_eq!(a.requests, b.requests);
        let half = value(&a, Family::Requests, Stat::Sum, 0.5).unwrap();
        let full = value(&a, Family::Requests, Stat::Sum, 1.0).unwrap();
        assert!(half < full && full == a.requests);
    }
}
