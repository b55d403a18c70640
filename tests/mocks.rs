//! What the emulators cannot do, with `aws-smithy-mocks` behind the real SDK clients:
//! percentile statistics, NextToken pages, per-query status codes, throttling, batching at
//! scale, and paginated discovery. Each test drives the real poll loop and reads the real
//! Prometheus exposition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apigateway_exporter::app;
use apigateway_exporter::clock::{Clock as _, ManualClock};
use apigateway_exporter::config::{ApiSelection, IdleConfig, Interval, PollConfig, RequestRate};
use apigateway_exporter::inventory::{
    ApiFilter, Discovered, Discovery, DiscoveryError, RawApi, RawStage,
};
use apigateway_exporter::inventory::{AwsDiscovery, Pace};
use apigateway_exporter::model::{ApiType, Stat};
use apigateway_exporter::plan::PlanOptions;
use apigateway_exporter::poll::{PollSettings, Poller, Target};
use apigateway_exporter::render::Exposition;
use apigateway_exporter::selfmetrics::SelfMetrics;
use apigateway_exporter::source::cloudwatch::CloudWatchSource;
use async_trait::async_trait;
use aws_sdk_cloudwatch::operation::get_metric_data::{
    GetMetricDataError, GetMetricDataInput, GetMetricDataOutput,
};
use aws_sdk_cloudwatch::types::{MetricDataQuery, MetricDataResult, StatusCode};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use aws_smithy_types::error::ErrorMetadata;
use prometheus::Registry;

/// 2026-11-21T10:00:30Z: thirty seconds into a period.
const NOW: i64 = 1_795_428_030;
const PERIOD: i64 = 60;

struct FakeDiscovery(Vec<RawApi>);

#[async_trait]
impl Discovery for FakeDiscovery {
    async fn account_id(&self) -> Result<String, DiscoveryError> {
        Ok("111122223333".into())
    }
    async fn discover(&self, _: &ApiFilter) -> Result<Discovered, DiscoveryError> {
        Ok(Discovered {
            apis: self.0.clone(),
            account_throttle: None,
            usage_plans: vec![],
            linked: Vec::new(),
        })
    }
}

fn http_api(id: &str, stages: usize) -> RawApi {
    RawApi {
        id: id.into(),
        name: format!("{id}-name"),
        api_type: ApiType::Http,
        endpoint_type: "REGIONAL".into(),
        tags: BTreeMap::new(),
        stages: Some(
            (0..stages)
                .map(|i| RawStage {
                    name: format!("s{i}"),
                    deployment_id: None,
                    detailed_metrics: false,
                    cache_enabled: false,
                    throttle: None,
                    route_throttles: vec![],
                    access_log_group: None,
                    access_log_stream: None,
                    access_log_format: None,
                    canary: None,
                    routes: vec![],
                })
                .collect(),
        ),
        integrations: vec![],
    }
}

struct Harness {
    poller: Poller,
    registry: Arc<Exposition>,
    clock: Arc<ManualClock>,
}

impl Harness {
    fn new(targets: Vec<(Vec<RawApi>, aws_sdk_cloudwatch::Client)>, latency: Vec<Stat>) -> Harness {
        let (registry, shared, metrics) = app::exposition(false).unwrap();
        let clock = Arc::new(ManualClock::new(NOW));
        let targets = targets
            .into_iter()
            .enumerate()
            .map(|(i, (apis, client))| {
                Target::new(
                    format!("eu-west-{}", i + 1),
                    ApiFilter::new(&ApiSelection::default()),
                    Arc::new(FakeDiscovery(apis)),
                    Arc::new(CloudWatchSource::new(
                        client,
                        metrics.clone(),
                        RequestRate::Unlimited,
                    )),
                )
            })
            .collect();
        let settings = PollSettings {
            poll: PollConfig::new(
                Duration::from_secs(60),
                Duration::from_secs(60),
                Duration::from_secs(600),
                Duration::from_secs(180),
                Duration::from_secs(3 * 3600),
            )
            .unwrap(),
            refresh_interval: Duration::from_secs(600),
            plan: PlanOptions {
                latency,
                access_logs: None,
                lambda: false,
                stream: None,
            },
            tags_as_labels: vec![],
        };
        Harness {
            poller: Poller::new(targets, settings, clock.clone(), shared, metrics),
            registry,
            clock,
        }
    }

    fn text(&self) -> String {
        String::from_utf8(self.registry.encode().unwrap()).unwrap()
    }

    /// The value of the first exposition line that starts with `series`.
    fn value(&self, series: &str) -> Option<f64> {
        self.text()
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// A GetMetricData answer: for every query, `value(query)` at every period of the request.
fn answer(
    req: &GetMetricDataInput,
    value: impl Fn(&MetricDataQuery) -> Option<f64>,
) -> GetMetricDataOutput {
    answer_at(req, |q, _| value(q))
}

/// As [`answer`], with a value per query and period start (`None`: no datapoint).
fn answer_at(
    req: &GetMetricDataInput,
    value: impl Fn(&MetricDataQuery, i64) -> Option<f64>,
) -> GetMetricDataOutput {
    let start = req.start_time().map(|t| t.secs()).unwrap();
    let end = req.end_time().map(|t| t.secs()).unwrap();
    let results = req
        .metric_data_queries()
        .iter()
        .map(|q| {
            let mut r = MetricDataResult::builder()
                .id(q.id().unwrap())
                .status_code(StatusCode::Complete);
            for t in (start..end).step_by(PERIOD as usize) {
                if let Some(v) = value(q, t) {
                    r = r.timestamps(DateTime::from_secs(t)).values(v);
                }
            }
            r.build()
        })
        .collect();
    GetMetricDataOutput::builder()
        .set_metric_data_results(Some(results))
        .build()
}

fn stat(q: &MetricDataQuery) -> &str {
    q.metric_stat().and_then(|s| s.stat()).unwrap()
}

fn metric(q: &MetricDataQuery) -> &str {
    q.metric_stat()
        .and_then(|s| s.metric())
        .and_then(|m| m.metric_name())
        .unwrap()
}

const LABELS: &str = r#"account_id="111122223333",region="eu-west-1",api_id="h1",api_name="h1-name",api_type="http",stage="s0""#;

#[tokio::test]
async fn percentiles_become_quantile_gauges_in_seconds() {
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(|req| {
        answer(req, |q| match (metric(q), stat(q)) {
            ("Latency", "p50") => Some(120.0),
            ("Latency", "p90") => Some(800.0),
            ("Latency", "p99") => Some(2500.0),
            ("Latency", "p99.9") => Some(9000.0),
            ("Latency", "Maximum") => Some(28_000.0),
            (_, "Sum") => Some(1000.0),
            (_, "SampleCount") => Some(4.0),
            _ => Some(0.0),
        })
    });
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
    let latency = vec![
        Stat::Percentile(5000),
        Stat::Percentile(9000),
        Stat::Percentile(9900),
        Stat::Percentile(9990),
        Stat::Maximum,
    ];
    let mut h = Harness::new(vec![(vec![http_api("h1", 1)], client)], latency);
    h.poller.cycle().await;
    let q = |quantile: &str| {
        format!("aws_apigateway_latency_seconds{{{LABELS},quantile=\"{quantile}\"}}")
    };
    assert_eq!(h.value(&q("0.5")), Some(0.12));
    assert_eq!(h.value(&q("0.9")), Some(0.8));
    assert_eq!(h.value(&q("0.99")), Some(2.5));
    assert_eq!(h.value(&q("0.999")), Some(9.0));
    assert_eq!(
        h.value(&format!("aws_apigateway_latency_max_seconds{{{LABELS}}}")),
        Some(28.0)
    );
    // The first read is the baseline; the next cycle's new period is counted: Sum in seconds.
    h.clock.advance(PERIOD);
    h.poller.cycle().await;
    assert_eq!(
        h.value(&format!("aws_apigateway_latency_seconds_sum{{{LABELS}}}")),
        Some(1.0)
    );
    assert_eq!(
        h.value(&format!("aws_apigateway_latency_seconds_count{{{LABELS}}}")),
        Some(4.0)
    );
}

#[tokio::test]
async fn next_token_pages_are_followed_and_billed() {
    // Page one carries the Count datapoints, page two the rest; both are needed.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |req| {
        let call = seen.fetch_add(1, Ordering::SeqCst);
        let first_page = req.next_token().is_none();
        let wanted = |q: &MetricDataQuery| (metric(q) == "Count") == first_page;
        let mut out = answer(req, |q| wanted(q).then_some(7.0 + call as f64));
        if first_page {
            out = GetMetricDataOutput::builder()
                .set_metric_data_results(Some(out.metric_data_results().to_vec()))
                .next_token("page-2")
                .build();
        }
        out
    });
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
    let mut h = Harness::new(vec![(vec![http_api("h1", 1)], client)], vec![Stat::Maximum]);
    h.poller.cycle().await;
    h.clock.advance(PERIOD);
    h.poller.cycle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 4, "two pages per cycle");
    // Baseline at values 7 (page 1) / 8 (page 2); cycle two answers 9 and 10 for every
    // period: growth of 2 in each of the 10 old periods plus the new period in full.
    assert_eq!(
        h.value(&format!("aws_apigateway_requests_total{{{LABELS}}}")),
        Some(2.0 * 10.0 + 9.0)
    );
    assert_eq!(
        h.value(&format!("aws_apigateway_5xx_errors_total{{{LABELS}}}")),
        Some(2.0 * 10.0 + 10.0)
    );
    assert_eq!(
        h.value(r#"aws_apigateway_exporter_cloudwatch_requests_total{operation="GetMetricData",result="success"}"#),
        Some(4.0)
    );
    // Every page of every call bills every query: 10 queries (4 counters + 2 summaries ×
    // Sum, SampleCount, Maximum) × 4 calls.
    assert_eq!(
        h.value("aws_apigateway_exporter_cloudwatch_metrics_requested_total"),
        Some(40.0)
    );
}

#[tokio::test]
async fn per_query_errors_affect_only_their_series() {
    let round = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&round);
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |req| {
        let n = r.fetch_add(1, Ordering::SeqCst) as f64;
        let mut out = answer(req, |_| Some(10.0 + n));
        // From the second call on, the 5xx query fails with InternalError.
        if n >= 1.0 {
            let results = out
                .metric_data_results()
                .iter()
                .zip(req.metric_data_queries())
                .map(|(res, q)| {
                    if metric(q) == "5xx" {
                        MetricDataResult::builder()
                            .id(res.id().unwrap())
                            .status_code(StatusCode::InternalError)
                            .build()
                    } else {
                        res.clone()
                    }
                })
                .collect();
            out = GetMetricDataOutput::builder()
                .set_metric_data_results(Some(results))
                .build();
        }
        out
    });
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
    let mut h = Harness::new(vec![(vec![http_api("h1", 1)], client)], vec![Stat::Maximum]);
    h.poller.cycle().await;
    assert_eq!(h.value("aws_apigateway_exporter_up"), Some(1.0));
    h.clock.advance(PERIOD);
    let report = h.poller.cycle().await;
    assert_eq!(report.failed_queries, 1);
    // The failed series keeps its baseline value; the others counted the growth.
    assert_eq!(
        h.value(&format!("aws_apigateway_5xx_errors_total{{{LABELS}}}")),
        Some(0.0)
    );
    assert_eq!(
        h.value(&format!("aws_apigateway_requests_total{{{LABELS}}}")),
        Some(10.0 + 11.0)
    );
    assert_eq!(h.value("aws_apigateway_exporter_up"), Some(0.0));
    assert_eq!(
        h.value(r#"aws_apigateway_exporter_query_errors_total{status="InternalError"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_throttled_target_never_blanks_the_other() {
    let throttled = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_error(|| {
        GetMetricDataError::generic(
            ErrorMetadata::builder()
                .code("Throttling")
                .message("Rate exceeded")
                .build(),
        )
    });
    let healthy = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .then_compute_output(|req| answer(req, |_| Some(5.0)));
    let bad_client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&throttled]);
    let good_client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&healthy]);
    let mut h = Harness::new(
        vec![
            (vec![http_api("h1", 1)], bad_client),
            (vec![http_api("h2", 1)], good_client),
        ],
        vec![Stat::Maximum],
    );
    let report = h.poller.cycle().await;
    assert_eq!(report.failed_batches, 1);
    assert_eq!(report.targets_ok, 2);
    let text = h.text();
    assert!(text.contains(r#"api_id="h2""#), "{text}");
    assert!(
        !text.contains(
            r#"aws_apigateway_requests_total{account_id="111122223333",region="eu-west-1""#
        )
    );
    assert_eq!(
        h.value(r#"aws_apigateway_exporter_cloudwatch_requests_total{operation="GetMetricData",result="throttled"}"#),
        Some(1.0)
    );
    assert_eq!(
        h.value(
            r#"aws_apigateway_exporter_target_up{account_id="111122223333",region="eu-west-1"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        h.value(
            r#"aws_apigateway_exporter_target_up{account_id="111122223333",region="eu-west-2"}"#
        ),
        Some(1.0)
    );
    assert_eq!(h.value("aws_apigateway_exporter_up"), Some(0.0));
}

#[tokio::test]
async fn server_errors_and_garbage_fail_only_their_cycle() {
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode as HttpStatus;
    use aws_smithy_types::body::SdkBody;
    // Call 1 answers nothing (the baseline), call 2 is an HTTP 500, call 3 a 200 whose body
    // is not CBOR, then good answers. SDK retries are off so each call is one cycle.
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .sequence()
        .output(|| GetMetricDataOutput::builder().build())
        .http_status(500, Some("internal failure".into()))
        .http_response(|| {
            HttpResponse::new(
                HttpStatus::try_from(200).unwrap(),
                SdkBody::from("<html>not cbor</html>"),
            )
        })
        .output(|| {
            // Every query of the batch (q0..q9), 3.0 in every period of two hours around NOW:
            // the store takes what falls in each cycle's window.
            let results = (0..10)
                .map(|i| {
                    let mut r = MetricDataResult::builder()
                        .id(format!("q{i}"))
                        .status_code(StatusCode::Complete);
                    for t in (NOW - 3600..NOW + 3600).step_by(PERIOD as usize) {
                        r = r
                            .timestamps(DateTime::from_secs(t - t % PERIOD))
                            .values(3.0);
                    }
                    r.build()
                })
                .collect();
            GetMetricDataOutput::builder()
                .set_metric_data_results(Some(results))
                .build()
        })
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule], |c| c
        .retry_config(aws_sdk_cloudwatch::config::retry::RetryConfig::disabled()));
    let mut h = Harness::new(vec![(vec![http_api("h1", 1)], client)], vec![Stat::Maximum]);
    assert_eq!(h.poller.cycle().await.failed_batches, 0);
    for _ in 0..2 {
        h.clock.advance(PERIOD);
        assert_eq!(h.poller.cycle().await.failed_batches, 1);
    }
    assert_eq!(h.value("aws_apigateway_exporter_up"), Some(0.0));
    // The first (empty) answer was the baseline; the failures changed nothing.
    assert_eq!(
        h.value(&format!("aws_apigateway_requests_total{{{LABELS}}}")),
        Some(0.0)
    );
    assert_eq!(
        h.value(r#"aws_apigateway_exporter_cloudwatch_requests_total{operation="GetMetricData",result="error"}"#),
        Some(2.0)
    );
    // Only the answered call is billed: 10 queries, not 30.
    assert_eq!(
        h.value("aws_apigateway_exporter_cloudwatch_metrics_requested_total"),
        Some(10.0)
    );
    // CloudWatch answers again: the first cycle after the failures reads back to where the
    // last good read's lookback started (the baseline's window), so every period since is
    // new, including the three that left the lookback during the failures (14 × 3); the
    // next cycle adds its new period once.
    h.clock.advance(PERIOD);
    assert!(h.poller.cycle().await.complete());
    assert_eq!(h.value("aws_apigateway_exporter_up"), Some(1.0));
    assert_eq!(
        h.value(&format!("aws_apigateway_requests_total{{{LABELS}}}")),
        Some(42.0)
    );
    h.clock.advance(PERIOD);
    assert!(h.poller.cycle().await.complete());
    assert_eq!(
        h.value(&format!("aws_apigateway_requests_total{{{LABELS}}}")),
        Some(45.0)
    );
}

#[tokio::test]
async fn calls_per_cycle_are_the_ceiling_of_queries_over_500() {
    let calls = Arc::new(AtomicUsize::new(0));
    let largest = Arc::new(AtomicUsize::new(0));
    let (c, l) = (Arc::clone(&calls), Arc::clone(&largest));
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |req| {
        c.fetch_add(1, Ordering::SeqCst);
        l.fetch_max(req.metric_data_queries().len(), Ordering::SeqCst);
        answer(req, |_| Some(1.0))
    });
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
    // 40 APIs × 2 stages × 16 queries (default latency statistics) = 1280 queries.
    let apis = (0..40).map(|i| http_api(&format!("a{i}"), 2)).collect();
    let latency = vec![
        Stat::Percentile(5000),
        Stat::Percentile(9000),
        Stat::Percentile(9900),
        Stat::Maximum,
    ];
    let mut h = Harness::new(vec![(apis, client)], latency);
    let report = h.poller.cycle().await;
    assert_eq!(report.calls, 3);
    assert_eq!(calls.load(Ordering::SeqCst), 1280usize.div_ceil(500));
    assert_eq!(largest.load(Ordering::SeqCst), 500);
    assert_eq!(
        h.value("aws_apigateway_exporter_cloudwatch_metrics_requested_total"),
        Some(1280.0)
    );
}

#[tokio::test(start_paused = true)]
async fn discovery_follows_every_page() {
    use apigateway_exporter::inventory::{RouteKey, Throttle};
    use aws_sdk_apigateway::operation::get_rest_apis::GetRestApisOutput;
    use aws_sdk_apigateway::operation::get_stages::GetStagesOutput;
    use aws_sdk_apigateway::types::{MethodSetting, ThrottleSettings};
    use aws_sdk_apigatewayv2::operation::get_apis::GetApisOutput;
    use aws_sdk_apigatewayv2::operation::get_stages::GetStagesOutput as V2Stages;
    use aws_sdk_apigatewayv2::types::{Api, ProtocolType, RouteSettings, Stage as V2Stage};

    let rest_pages = mock!(aws_sdk_apigateway::Client::get_rest_apis).then_compute_output(|req| {
        let rest = |id: &str, name: &str| {
            aws_sdk_apigateway::types::RestApi::builder()
                .id(id)
                .name(name)
                .build()
        };
        match req.position() {
            None => GetRestApisOutput::builder()
                .items(rest("r1", "one"))
                .position("p2")
                .build(),
            Some("p2") => GetRestApisOutput::builder()
                .items(rest("r2", "two"))
                .build(),
            Some(other) => panic!("unexpected position {other}"),
        }
    });
    let rest_stages = mock!(aws_sdk_apigateway::Client::get_stages).then_compute_output(|req| {
        GetStagesOutput::builder()
            .item(
                aws_sdk_apigateway::types::Stage::builder()
                    .stage_name(format!("{}-prod", req.rest_api_id().unwrap()))
                    .cache_cluster_enabled(true)
                    .method_settings(
                        "*/*",
                        MethodSetting::builder()
                            .throttling_rate_limit(100.0)
                            .throttling_burst_limit(200)
                            .build(),
                    )
                    .method_settings(
                        "~1pets~1{id}/GET",
                        MethodSetting::builder()
                            .metrics_enabled(true)
                            .throttling_rate_limit(10.0)
                            .throttling_burst_limit(20)
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let v2_pages = mock!(aws_sdk_apigatewayv2::Client::get_apis).then_compute_output(|req| {
        let api =
            |id: &str, p: ProtocolType| Api::builder().api_id(id).name(id).protocol_type(p).build();
        match req.next_token() {
            None => GetApisOutput::builder()
                .items(api("h1", ProtocolType::Http))
                .next_token("n2")
                .build(),
            Some("n2") => GetApisOutput::builder()
                .items(api("w1", ProtocolType::Websocket))
                .build(),
            Some(other) => panic!("unexpected token {other}"),
        }
    });
    let v2_stages = mock!(aws_sdk_apigatewayv2::Client::get_stages).then_compute_output(|req| {
        let stage = |name: &str, detailed: bool| {
            V2Stage::builder()
                .stage_name(name)
                .default_route_settings(
                    RouteSettings::builder()
                        .detailed_metrics_enabled(detailed)
                        .build(),
                )
                .build()
        };
        match req.next_token() {
            None => V2Stages::builder()
                .items(stage("$default", false))
                .next_token("s2")
                .build(),
            Some(_) => V2Stages::builder().items(stage("prod", true)).build(),
        }
    });
    let account = mock!(aws_sdk_apigateway::Client::get_account).then_output(|| {
        aws_sdk_apigateway::operation::get_account::GetAccountOutput::builder()
            .throttle_settings(
                ThrottleSettings::builder()
                    .rate_limit(10_000.0)
                    .burst_limit(5_000)
                    .build(),
            )
            .build()
    });
    // Response streaming (`responseTransferMode`) is an emulator gap: neither LocalStack nor
    // moto knows the field, so a streaming Lambda method is only served here.
    let resources = mock!(aws_sdk_apigateway::Client::get_resources).then_compute_output(|req| {
        use aws_sdk_apigateway::types::{IntegrationType, ResponseTransferMode};
        assert_eq!(req.embed(), ["methods".to_string()]);
        let method = aws_sdk_apigateway::types::Method::builder()
            .http_method("GET")
            .method_integration(
                aws_sdk_apigateway::types::Integration::builder()
                    .r#type(IntegrationType::AwsProxy)
                    .uri("arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:444455556666:function:pets-stream:live/invocations")
                    .response_transfer_mode(ResponseTransferMode::Stream)
                    .timeout_in_millis(12_000)
                    .build(),
            )
            .build();
        let post = aws_sdk_apigateway::types::Method::builder()
            .http_method("POST")
            .method_integration(
                aws_sdk_apigateway::types::Integration::builder()
                    .r#type(IntegrationType::HttpProxy)
                    .uri("https://pets.example.com/pets")
                    .response_transfer_mode(ResponseTransferMode::Buffered)
                    .build(),
            )
            .build();
        aws_sdk_apigateway::operation::get_resources::GetResourcesOutput::builder()
            .items(
                aws_sdk_apigateway::types::Resource::builder()
                    .path("/pets")
                    .resource_methods("GET", method)
                    .resource_methods("POST", post)
                    .build(),
            )
            .build()
    });
    let integrations = mock!(aws_sdk_apigatewayv2::Client::get_integrations).then_output(|| {
        aws_sdk_apigatewayv2::operation::get_integrations::GetIntegrationsOutput::builder()
            .items(
                aws_sdk_apigatewayv2::types::Integration::builder()
                    .integration_id("i1")
                    .integration_type(aws_sdk_apigatewayv2::types::IntegrationType::HttpProxy)
                    .integration_uri("https://backend.example.com:8443/pets")
                    .build(),
            )
            .items(
                aws_sdk_apigatewayv2::types::Integration::builder()
                    .integration_id("i2")
                    .integration_type(aws_sdk_apigatewayv2::types::IntegrationType::AwsProxy)
                    .integration_uri("arn:aws:lambda:us-east-1:444455556666:function:fallback")
                    .timeout_in_millis(5_000)
                    .build(),
            )
            .build()
    });
    let routes = mock!(aws_sdk_apigatewayv2::Client::get_routes).then_output(|| {
        aws_sdk_apigatewayv2::operation::get_routes::GetRoutesOutput::builder()
            .items(
                aws_sdk_apigatewayv2::types::Route::builder()
                    .route_key("GET /pets")
                    .target("integrations/i1")
                    .build(),
            )
            .items(
                aws_sdk_apigatewayv2::types::Route::builder()
                    .route_key("$default")
                    .target("integrations/i2")
                    .build(),
            )
            .build()
    });
    let list_metrics = mock!(aws_sdk_cloudwatch::Client::list_metrics).then_compute_output(|req| {
        use aws_sdk_cloudwatch::types::{Dimension, Metric};
        let dim = |n: &str, v: &str| Dimension::builder().name(n).value(v).build();
        let api = req.dimensions()[0].value().unwrap_or_default().to_string();
        let stage = req.dimensions()[1].value().unwrap_or_default().to_string();
        let metric = |name: &str, extra: Vec<Dimension>| {
            let mut dims = vec![
                dim(req.dimensions()[0].name().unwrap(), &api),
                dim("Stage", &stage),
            ];
            dims.extend(extra);
            Metric::builder()
                .namespace("AWS/ApiGateway")
                .metric_name(name)
                .set_dimensions(Some(dims))
                .build()
        };
        aws_sdk_cloudwatch::operation::list_metrics::ListMetricsOutput::builder()
            .metrics(metric(
                "Count",
                vec![dim("Method", "GET"), dim("Resource", "/pets/{id}")],
            ))
            .metrics(metric(
                "Latency",
                vec![dim("Method", "GET"), dim("Resource", "/pets/{id}")],
            ))
            // The stage-level series and an undocumented dimension set: neither is a route.
            .metrics(metric("Count", vec![]))
            .metrics(metric("Count", vec![dim("Colour", "blue")]))
            .build()
    });
    let usage_plans =
        mock!(aws_sdk_apigateway::Client::get_usage_plans).then_compute_output(|req| {
            use aws_sdk_apigateway::types::{ApiStage, QuotaPeriodType, QuotaSettings, UsagePlan};
            let out =
                aws_sdk_apigateway::operation::get_usage_plans::GetUsagePlansOutput::builder();
            match req.position() {
                None => out
                    .items(
                        UsagePlan::builder()
                            .id("up1")
                            .name("partners")
                            .throttle(
                                ThrottleSettings::builder()
                                    .rate_limit(50.0)
                                    .burst_limit(100)
                                    .build(),
                            )
                            .quota(
                                QuotaSettings::builder()
                                    .limit(10_000)
                                    .period(QuotaPeriodType::Day)
                                    .build(),
                            )
                            .api_stages(ApiStage::builder().api_id("r1").stage("r1-prod").build())
                            .build(),
                    )
                    .position("next")
                    .build(),
                Some(_) => out
                    .items(UsagePlan::builder().id("up2").name("free").build())
                    .build(),
            }
        });
    let sts = mock!(aws_sdk_sts::Client::get_caller_identity).then_output(|| {
        aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput::builder()
            .account("444455556666")
            .build()
    });
    let clients = apigateway_exporter::sdk::TargetClients {
        cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&list_metrics]),
        apigateway: mock_client!(
            aws_sdk_apigateway,
            RuleMode::MatchAny,
            [
                &rest_pages,
                &rest_stages,
                &account,
                &resources,
                &usage_plans
            ]
        ),
        apigatewayv2: mock_client!(
            aws_sdk_apigatewayv2,
            RuleMode::MatchAny,
            [&v2_pages, &v2_stages, &integrations, &routes]
        ),
        sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&sts]),
        logs: aws_sdk_cloudwatchlogs::Client::from_conf(
            aws_sdk_cloudwatchlogs::Config::builder()
                .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
                .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
                .build(),
        ),
    };
    let registry = Registry::new();
    let discovery = AwsDiscovery::new(
        clients,
        SelfMetrics::new(&registry, false).unwrap(),
        Pace::standalone("us-east-1", 10.0, Duration::from_secs(86_400)),
    );
    assert_eq!(discovery.account_id().await.unwrap(), "444455556666");
    let filter = ApiFilter::new(&ApiSelection::default());
    let found = discovery.discover(&filter).await.unwrap();
    assert_eq!(
        found.account_throttle,
        Some(Throttle {
            rate: 10_000.0,
            burst: 5_000.0
        })
    );
    let stage = &found.apis[0].stages.as_ref().unwrap()[0];
    assert_eq!(
        stage.throttle,
        Some(Throttle {
            rate: 100.0,
            burst: 200.0
        })
    );
    assert_eq!(
        stage.route_throttles,
        [(
            RouteKey::Method {
                resource: "/pets/{id}".into(),
                method: "GET".into()
            },
            Throttle {
                rate: 10.0,
                burst: 20.0
            }
        )]
    );
    assert_eq!(found.usage_plans.len(), 2, "both pages of usage plans");
    assert_eq!(
        found.usage_plans[0].throttle,
        Some(Throttle {
            rate: 50.0,
            burst: 100.0
        })
    );
    assert_eq!(
        found.usage_plans[0].quota,
        Some((10_000.0, "DAY".to_string()))
    );
    assert_eq!(
        found.usage_plans[0].api_stages,
        [("r1".to_string(), "r1-prod".to_string())]
    );
    let routes = &found.apis[0].stages.as_ref().unwrap()[0].routes;
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(
        routes[0].key,
        RouteKey::Method {
            resource: "/pets/{id}".into(),
            method: "GET".into()
        }
    );
    assert_eq!(routes[0].metrics, ["Count", "Latency"]);
    let get = RouteKey::Method {
        resource: "/pets".into(),
        method: "GET".into(),
    };
    let post = RouteKey::Method {
        resource: "/pets".into(),
        method: "POST".into(),
    };
    let summary =
        |a: &apigateway_exporter::inventory::RawApi| -> Vec<(RouteKey, f64, String, String, bool)> {
            a.integrations
                .iter()
                .map(|i| {
                    (
                        i.route.clone(),
                        i.timeout,
                        i.integration_type.clone(),
                        format!("{} {}", i.backend_type.as_str(), i.backend),
                        i.streams,
                    )
                })
                .collect()
        };
    assert_eq!(
        summary(&found.apis[0]),
        [
            (
                get.clone(),
                12.0,
                "AWS_PROXY".into(),
                "lambda pets-stream".into(),
                true
            ),
            (
                post,
                29.0,
                "HTTP_PROXY".into(),
                "http pets.example.com".into(),
                false
            ),
        ]
    );
    let h1 = found.apis.iter().find(|a| a.id == "h1").unwrap();
    assert_eq!(
        summary(h1),
        [
            (
                get,
                30.0,
                "HTTP_PROXY".into(),
                "http backend.example.com".into(),
                false
            ),
            (
                RouteKey::Route("$default".into()),
                5.0,
                "AWS_PROXY".into(),
                "lambda fallback".into(),
                false
            ),
        ]
    );
    let w1 = found.apis.iter().find(|a| a.id == "w1").unwrap();
    assert!(
        summary(w1)
            .iter()
            .any(|(r, t, ..)| *r == RouteKey::Route("GET /pets".into()) && *t == 29.0),
        "{:?}",
        w1.integrations
    );
    let raw = found.apis;
    type Summary = Vec<(String, Vec<(String, bool, bool)>)>;
    let summary: Summary = raw
        .iter()
        .map(|a| {
            let stages = a
                .stages
                .iter()
                .flatten()
                .map(|s| (s.name.clone(), s.detailed_metrics, s.cache_enabled))
                .collect();
            (a.id.clone(), stages)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("r1".into(), vec![("r1-prod".into(), true, true)]),
            ("r2".into(), vec![("r2-prod".into(), true, true)]),
            (
                "h1".into(),
                vec![
                    ("$default".into(), false, false),
                    ("prod".into(), true, false)
                ]
            ),
            (
                "w1".into(),
                vec![
                    ("$default".into(), false, false),
                    ("prod".into(), true, false)
                ]
            ),
        ]
    );
    assert_eq!(rest_pages.num_calls(), 2);
    assert_eq!(v2_pages.num_calls(), 2);
}

/// Emulator gap: neither LocalStack nor moto can be made to repeat a page token. A listing
/// whose token comes back (here every GetRestApis page, and an apigatewayv2 GetApis cycle
/// a → b → a) must fail discovery, keeping the last good inventory, rather than end quietly
/// with a short list (what the SDK's paginators do) or loop for ever.
#[tokio::test(start_paused = true)]
async fn a_repeated_page_token_fails_discovery_instead_of_truncating_it() {
    use aws_sdk_apigateway::operation::get_rest_apis::GetRestApisOutput;
    use aws_sdk_apigateway::types::RestApi;
    use aws_sdk_apigatewayv2::operation::get_apis::GetApisOutput;
    use aws_sdk_apigatewayv2::types::{Api, ProtocolType};

    let rest_pages = mock!(aws_sdk_apigateway::Client::get_rest_apis).then_compute_output(|_| {
        GetRestApisOutput::builder()
            .items(RestApi::builder().id("r1").name("orders").build())
            .position("same")
            .build()
    });
    let v2_pages = mock!(aws_sdk_apigatewayv2::Client::get_apis).then_compute_output(|req| {
        let next = match req.next_token() {
            None => "a",
            Some("a") => "b",
            _ => "a",
        };
        GetApisOutput::builder()
            .items(
                Api::builder()
                    .api_id("h1")
                    .name("h1")
                    .protocol_type(ProtocolType::Http)
                    .build(),
            )
            .next_token(next)
            .build()
    });
    let sts = mock!(aws_sdk_sts::Client::get_caller_identity).then_output(|| {
        aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput::builder()
            .account("444455556666")
            .build()
    });
    let logs = aws_sdk_cloudwatchlogs::Client::from_conf(
        aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
            .build(),
    );
    let clients = apigateway_exporter::sdk::TargetClients {
        cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, []),
        apigateway: mock_client!(aws_sdk_apigateway, RuleMode::MatchAny, [&rest_pages]),
        apigatewayv2: mock_client!(aws_sdk_apigatewayv2, RuleMode::MatchAny, [&v2_pages]),
        sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&sts]),
        logs,
    };
    let registry = Registry::new();
    let discovery = AwsDiscovery::new(
        clients,
        SelfMetrics::new(&registry, false).unwrap(),
        Pace::standalone("us-east-1", 10.0, Duration::from_secs(86_400)),
    );
    // Each listing alone: the error names it and the page that repeated a token.
    let discover_only = |api_type: ApiType| {
        let selection = ApiSelection {
            types: vec![api_type],
            ..ApiSelection::default()
        };
        let discovery = &discovery;
        async move {
            discovery
                .discover(&ApiFilter::new(&selection))
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let err = discover_only(ApiType::Rest).await;
    assert!(
        err.contains("GetRestApis") && err.contains("page 2 returned a page token seen before"),
        "{err}"
    );
    assert_eq!(rest_pages.num_calls(), 2, "stops at the first repeat");
    let err = discover_only(ApiType::Http).await;
    assert!(
        err.contains("GetApis") && err.contains("page 3 returned a page token seen before"),
        "{err}"
    );
    assert_eq!(v2_pages.num_calls(), 3);
}

/// Discovery that works once, then fails.
struct FlakyDiscovery {
    apis: Vec<RawApi>,
    calls: AtomicUsize,
}

#[async_trait]
impl Discovery for FlakyDiscovery {
    async fn account_id(&self) -> Result<String, DiscoveryError> {
        Ok("111122223333".into())
    }
    async fn discover(&self, _: &ApiFilter) -> Result<Discovered, DiscoveryError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(Discovered {
                apis: self.apis.clone(),
                account_throttle: None,
                usage_plans: vec![],
                linked: Vec::new(),
            })
        } else {
            Err(DiscoveryError {
                service: "apigateway",
                operation: "GetRestApis",
                message: "TooManyRequestsException: Rate exceeded".into(),
            })
        }
    }
}

/// A source that takes its time.
struct SlowSource(std::time::Duration);

#[async_trait]
impl apigateway_exporter::source::MetricSource for SlowSource {
    async fn fetch(
        &self,
        queries: &[apigateway_exporter::plan::Query],
        _: apigateway_exporter::source::Window,
    ) -> Result<Vec<apigateway_exporter::source::Outcome>, apigateway_exporter::source::SourceError>
    {
        tokio::time::sleep(self.0).await;
        Ok(queries
            .iter()
            .map(|_| apigateway_exporter::source::Outcome::Points(vec![]))
            .collect())
    }
}

fn poller_with(
    discovery: Arc<dyn Discovery>,
    source: Arc<dyn apigateway_exporter::source::MetricSource>,
    interval: Duration,
) -> (Poller, Arc<Exposition>, Arc<ManualClock>) {
    let (registry, shared, metrics) = app::exposition(false).unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let target = Target::new(
        "eu-west-1".into(),
        ApiFilter::new(&ApiSelection::default()),
        discovery,
        source,
    );
    let settings = PollSettings {
        poll: PollConfig::new(
            interval,
            Duration::from_secs(60),
            Duration::from_secs(600),
            Duration::from_secs(180),
            Duration::from_secs(3 * 3600),
        )
        .unwrap(),
        refresh_interval: Duration::from_secs(600),
        plan: PlanOptions {
            latency: vec![Stat::Maximum],
            access_logs: None,
            lambda: false,
            stream: None,
        },
        tags_as_labels: vec![],
    };
    (
        Poller::new(vec![target], settings, clock.clone(), shared, metrics),
        registry,
        clock,
    )
}

#[tokio::test]
async fn a_failed_discovery_keeps_the_last_inventory() {
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
        .then_compute_output(|req| answer(req, |_| Some(2.0)));
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
    let registry_metrics = SelfMetrics::new(&Registry::new(), false).unwrap();
    let discovery = Arc::new(FlakyDiscovery {
        apis: vec![http_api("h1", 1)],
        calls: AtomicUsize::new(0),
    });
    let source = Arc::new(CloudWatchSource::new(
        client,
        registry_metrics,
        RequestRate::Unlimited,
    ));
    let (mut poller, registry, clock) =
        poller_with(discovery.clone(), source, Duration::from_secs(60));
    poller.cycle().await;
    // Past the refresh interval: discovery runs again, fails, and the last inventory stays.
    clock.advance(11 * 60);
    let report = poller.cycle().await;
    assert_eq!(discovery.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        report.targets_ok, 1,
        "the target still polls with its last inventory"
    );
    let text = String::from_utf8(registry.encode().unwrap()).unwrap();
    assert!(
        text.contains(&format!(
            "aws_apigateway_api_info{{{}",
            &LABELS[..LABELS.find(",stage").unwrap()]
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("aws_apigateway_requests_total{{{LABELS}}} 2")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_cycle_skips_ticks_and_never_blocks_metrics() {
    let (poller, registry, _) = poller_with(
        Arc::new(FakeDiscovery(vec![http_api("h1", 1)])),
        Arc::new(SlowSource(Duration::from_millis(3000))),
        // The shortest interval the config allows.
        Duration::from_secs(1),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (_reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let started = std::time::Instant::now();
    let task = tokio::spawn(poller.run(
        async {
            let _ = stopped.await;
        },
        reload_rx,
    ));
    // While cycles are in flight, /metrics renders without waiting for them.
    for _ in 0..14 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let registry = registry.clone();
        let rendered = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::task::spawn_blocking(move || registry.encode()),
        )
        .await
        .expect("a scrape never waits for a cycle");
        assert!(rendered.unwrap().is_ok());
    }
    let _ = stop.send(());
    task.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let text = String::from_utf8(registry.encode().unwrap()).unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let cycles = value("aws_apigateway_exporter_cycle_duration_seconds_count");
    assert!(
        cycles >= 1.0 && cycles <= (elapsed / 3.0).floor(),
        "cycles never overlap (overlapping ones would finish more than one per 3 s): {cycles} cycles of 3 s in {elapsed:.2} s"
    );
    assert!(
        value("aws_apigateway_exporter_cycles_skipped_total") >= 2.0,
        "{text}"
    );
}

/// An outage switch in front of a source and a discovery: while down, every call fails the
/// way an unreachable endpoint does. (Emulator gap: neither can move time on by hours; the
/// LocalStack test in `exactness.rs` covers a real unreachable endpoint in real time.)
#[derive(Default)]
struct Outage(std::sync::atomic::AtomicBool);

impl Outage {
    fn set(&self, down: bool) {
        self.0.store(down, Ordering::SeqCst);
    }
    fn down(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

struct Gated<T> {
    inner: T,
    outage: Arc<Outage>,
}

fn refused(service: &'static str, operation: &'static str) -> DiscoveryError {
    DiscoveryError {
        service,
        operation,
        message: "connection refused".into(),
    }
}

#[async_trait]
impl<T: apigateway_exporter::source::MetricSource> apigateway_exporter::source::MetricSource
    for Gated<T>
{
    async fn fetch(
        &self,
        queries: &[apigateway_exporter::plan::Query],
        window: apigateway_exporter::source::Window,
    ) -> Result<Vec<apigateway_exporter::source::Outcome>, apigateway_exporter::source::SourceError>
    {
        if self.outage.down() {
            return Err(apigateway_exporter::source::SourceError {
                message: "connection refused".into(),
                throttled: false,
            });
        }
        self.inner.fetch(queries, window).await
    }
}

#[async_trait]
impl<T: Discovery> Discovery for Gated<T> {
    async fn account_id(&self) -> Result<String, DiscoveryError> {
        if self.outage.down() {
            return Err(refused("sts", "GetCallerIdentity"));
        }
        self.inner.account_id().await
    }
    async fn discover(&self, filter: &ApiFilter) -> Result<Discovered, DiscoveryError> {
        if self.outage.down() {
            return Err(refused("apigatewayv2", "GetApis"));
        }
        self.inner.discover(filter).await
    }
}

/// GetMetricData calls answered, and the most datapoints one of them asked for.
#[derive(Default)]
struct CallLog {
    calls: AtomicUsize,
    max_datapoints: AtomicUsize,
}

/// A target over `stages` HTTP stages of one API whose every `Count` period holds 1.0
/// (everything else 0) in CloudWatch, behind the outage switch.
fn outage_target(
    stages: usize,
    outage: &Arc<Outage>,
    log: &Arc<CallLog>,
    metrics: &SelfMetrics,
) -> Target {
    let seen = Arc::clone(log);
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |req| {
        let periods = (req.end_time().unwrap().secs() - req.start_time().unwrap().secs()) / PERIOD;
        let points = req.metric_data_queries().len() * periods as usize;
        seen.calls.fetch_add(1, Ordering::SeqCst);
        seen.max_datapoints.fetch_max(points, Ordering::SeqCst);
        answer(req, |q| match (metric(q), stat(q)) {
            ("Count", "Sum") => Some(1.0),
            _ => Some(0.0),
        })
    });
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
    Target::new(
        "eu-west-1".into(),
        ApiFilter::new(&ApiSelection::default()),
        Arc::new(Gated {
            inner: FakeDiscovery(vec![http_api("h1", stages)]),
            outage: Arc::clone(outage),
        }),
        Arc::new(Gated {
            inner: CloudWatchSource::new(client, metrics.clone(), RequestRate::Unlimited),
            outage: Arc::clone(outage),
        }),
    )
}

fn outage_settings(max_backfill: Duration) -> PollSettings {
    PollSettings {
        poll: PollConfig::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::from_secs(600),
            Duration::from_secs(180),
            max_backfill,
        )
        .unwrap(),
        refresh_interval: Duration::from_secs(600),
        plan: PlanOptions {
            latency: vec![Stat::Maximum],
            access_logs: None,
            lambda: false,
            stream: None,
        },
        tags_as_labels: vec![],
    }
}

struct OutageRig {
    poller: Poller,
    registry: Arc<Exposition>,
    clock: Arc<ManualClock>,
    outage: Arc<Outage>,
    log: Arc<CallLog>,
    metrics: SelfMetrics,
}

fn outage_rig(stages: usize, max_backfill: Duration) -> OutageRig {
    let (registry, shared, metrics) = app::exposition(false).unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let outage = Arc::new(Outage::default());
    let log = Arc::new(CallLog::default());
    let target = outage_target(stages, &outage, &log, &metrics);
    let poller = Poller::new(
        vec![target],
        outage_settings(max_backfill),
        clock.clone(),
        shared,
        metrics.clone(),
    );
    OutageRig {
        poller,
        registry,
        clock,
        outage,
        log,
        metrics,
    }
}

fn rendered(registry: &Exposition, series: &str) -> Option<f64> {
    String::from_utf8(registry.encode().unwrap())
        .unwrap()
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

const LOST: &str =
    r#"aws_apigateway_exporter_periods_lost_total{account_id="111122223333",region="eu-west-1"}"#;

/// Ground truth of `Count` for stage `s0`: one per period from the end of the baseline
/// window (the first read is not counted) through the period `now` is in.
fn truth(now: i64) -> f64 {
    let baseline_end = NOW - NOW % PERIOD + PERIOD;
    ((now - now % PERIOD + PERIOD - baseline_end) / PERIOD) as f64
}

#[tokio::test]
async fn an_outage_within_max_backfill_loses_nothing_and_one_beyond_it_is_counted_lost() {
    let mut r = outage_rig(1, Duration::from_secs(3 * 3600));
    let requests = || {
        rendered(
            &r.registry,
            &format!("aws_apigateway_requests_total{{{LABELS}}}"),
        )
    };
    for _ in 0..3 {
        assert!(r.poller.cycle().await.complete());
        r.clock.advance(PERIOD);
    }
    // Two hours down: twelve times the 10-minute lookback, with traffic going on.
    r.outage.set(true);
    for _ in 0..120 {
        assert!(!r.poller.cycle().await.complete());
        r.clock.advance(PERIOD);
    }
    assert_eq!(
        requests(),
        Some(truth(NOW + 2 * PERIOD)),
        "an outage changes nothing"
    );
    r.outage.set(false);
    let calls = r.log.calls.load(Ordering::SeqCst);
    assert!(r.poller.cycle().await.complete());
    assert_eq!(
        r.log.calls.load(Ordering::SeqCst) - calls,
        1,
        "one call reads the whole catch-up"
    );
    assert_eq!(
        requests(),
        Some(truth(r.clock.now())),
        "every period of the outage counted"
    );
    assert_eq!(rendered(&r.registry, LOST), Some(0.0));
    // Steady again: later cycles count each new period once.
    for _ in 0..3 {
        r.clock.advance(PERIOD);
        assert!(r.poller.cycle().await.complete());
    }
    assert_eq!(requests(), Some(truth(r.clock.now())));

    // Five hours down, two beyond max_backfill: what is older than 3 h can no longer be read,
    // and exactly those periods are counted lost.
    r.outage.set(true);
    for _ in 0..300 {
        r.clock.advance(PERIOD);
        r.poller.cycle().await;
    }
    r.outage.set(false);
    r.clock.advance(PERIOD);
    assert!(r.poller.cycle().await.complete());
    let lost = rendered(&r.registry, LOST).unwrap();
    assert!(
        lost >= 110.0,
        "the periods past max_backfill are counted lost: {lost}"
    );
    assert_eq!(requests().unwrap() + lost, truth(r.clock.now()));
    // Nothing is counted lost twice.
    r.clock.advance(PERIOD);
    assert!(r.poller.cycle().await.complete());
    assert_eq!(rendered(&r.registry, LOST), Some(lost));
    assert_eq!(requests().unwrap() + lost, truth(r.clock.now()));
}

#[tokio::test]
async fn a_long_catch_up_is_split_to_respect_the_datapoint_limit() {
    // 60 stages after a day down: 500 queries a call would ask for far more than 100,800
    // datapoints.
    let mut r = outage_rig(60, Duration::from_secs(2 * 86_400));
    assert!(r.poller.cycle().await.complete());
    let queries = r.poller.targets()[0].plan().queries.len();
    let steady_calls = queries.div_ceil(500);
    assert!(queries > 300, "{queries}");
    r.clock.advance(PERIOD);
    r.outage.set(true);
    for _ in 0..(24 * 60) {
        r.poller.cycle().await;
        r.clock.advance(PERIOD);
    }
    r.outage.set(false);
    let calls = r.log.calls.load(Ordering::SeqCst);
    assert!(r.poller.cycle().await.complete());
    let made = r.log.calls.load(Ordering::SeqCst) - calls;
    let periods = 24 * 60 + 11;
    assert!(
        made >= (queries * periods).div_ceil(100_800),
        "{made} calls for {queries} queries over {periods} periods"
    );
    assert!(r.log.max_datapoints.load(Ordering::SeqCst) <= 100_800);
    let s0 = rendered(
        &r.registry,
        &format!("aws_apigateway_requests_total{{{LABELS}}}"),
    );
    assert_eq!(s0, Some(truth(r.clock.now())));
    // Caught up: the next cycle is back to one call per 500 queries.
    r.clock.advance(PERIOD);
    let calls = r.log.calls.load(Ordering::SeqCst);
    assert!(r.poller.cycle().await.complete());
    assert_eq!(r.log.calls.load(Ordering::SeqCst) - calls, steady_calls);
}

#[tokio::test]
async fn a_reload_during_an_outage_keeps_every_series_and_counter() {
    let mut r = outage_rig(3, Duration::from_secs(3 * 3600));
    // Every counter and info series (the max gauges go stale in any r.outage, reload or not:
    // no new settled period is read).
    let series = || {
        let text = String::from_utf8(r.registry.encode().unwrap()).unwrap();
        let mut kept: Vec<String> = text
            .lines()
            .filter(|l| {
                l.starts_with("aws_apigateway_") && !l.starts_with("aws_apigateway_exporter")
            })
            .filter(|l| l.contains("_total{") || l.contains("_count{") || l.contains("_info{"))
            .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
            .collect();
        kept.sort();
        kept
    };
    let requests = || {
        rendered(
            &r.registry,
            &format!("aws_apigateway_requests_total{{{LABELS}}}"),
        )
    };
    for _ in 0..3 {
        assert!(r.poller.cycle().await.complete());
        r.clock.advance(PERIOD);
    }
    let before = series();
    assert!(before.len() >= 3 * 4, "{before:?}");
    r.outage.set(true);
    r.poller.cycle().await;
    // SIGHUP: the reload builds a new target (no inventory yet) for the same account and
    // region, and its first discovery fails like every other call of the r.outage.
    r.poller.apply(
        vec![outage_target(3, &r.outage, &r.log, &r.metrics)],
        outage_settings(Duration::from_secs(3 * 3600)),
    );
    for _ in 0..20 {
        r.clock.advance(PERIOD);
        assert!(!r.poller.cycle().await.complete());
        assert_eq!(series(), before, "no series dropped while discovery fails");
        assert_eq!(
            requests(),
            Some(truth(NOW + 2 * PERIOD)),
            "no counter reset"
        );
    }
    r.outage.set(false);
    r.clock.advance(PERIOD);
    assert!(r.poller.cycle().await.complete());
    assert_eq!(series(), before);
    assert_eq!(
        requests(),
        Some(truth(r.clock.now())),
        "every period of the outage counted once"
    );
}

/// Idle polling over hours (emulators cannot move time): traffic that arrives on an idle
/// stage and leaves the lookback window before its next idle read is still counted, once.
#[tokio::test]
async fn an_idle_stage_read_after_a_pause_longer_than_the_lookback_counts_everything() {
    // s0 has 1 request every period; s1 only in a burst of 7 periods 25 minutes in: after it
    // went idle (20 minutes without traffic) and long before its next read (45 minutes
    // after the last), so the burst has left the 10-minute lookback by then.
    let burst = (NOW - NOW % PERIOD + 25 * 60)..(NOW - NOW % PERIOD + 32 * 60);
    let queries = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&queries);
    let burst_in = burst.clone();
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(move |req| {
        counted.fetch_add(req.metric_data_queries().len(), Ordering::SeqCst);
        answer_at(req, |q, t| {
            let stage = q
                .metric_stat()
                .and_then(|s| s.metric())
                .map(|m| m.dimensions())
                .unwrap_or_default()
                .iter()
                .find(|d| d.name() == Some("Stage"))
                .and_then(|d| d.value());
            match (metric(q), stat(q), stage) {
                ("Count", "Sum", Some("s0")) => Some(1.0),
                ("Count", "Sum", Some("s1")) if burst_in.contains(&t) => Some(1.0),
                _ => None,
            }
        })
    });
    let client = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
    let (registry, shared, metrics) = app::exposition(false).unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let target = || {
        Target::new(
            "eu-west-1".into(),
            ApiFilter::new(&ApiSelection::default()),
            Arc::new(FakeDiscovery(vec![http_api("h1", 2)])),
            Arc::new(CloudWatchSource::new(
                client.clone(),
                metrics.clone(),
                RequestRate::Unlimited,
            )),
        )
    };
    let mut settings = outage_settings(Duration::from_secs(3 * 3600));
    // Idle after 20 minutes, then read every 45: longer than the 10-minute lookback.
    settings.poll = settings
        .poll
        .with_idle(Some(IdleConfig {
            after: Interval::new(Duration::from_secs(20 * 60)).unwrap(),
            interval: Interval::new(Duration::from_secs(45 * 60)).unwrap(),
        }))
        .unwrap();
    let mut poller = Poller::new(
        vec![target()],
        settings.clone(),
        clock.clone(),
        shared,
        metrics.clone(),
    );
    poller.cycle().await;
    for minute in 1..=(3 * 60) {
        clock.advance(PERIOD);
        // A reload in the middle of the burst, while s1 is idle: its state is kept (idle
        // stays idle, the pause is still read back), nothing is dropped or counted twice.
        if minute == 28 {
            poller.apply(vec![target()], settings.clone());
        }
        poller.cycle().await;
    }
    let value = |stage: &str| {
        rendered(
            &registry,
            &format!(
                r#"aws_apigateway_requests_total{{account_id="111122223333",region="eu-west-1",api_id="h1",api_name="h1-name",api_type="http",stage="{stage}"}}"#
            ),
        )
    };
    // s0: one per period after the baseline window; s1: the burst, whole.
    assert_eq!(value("s0"), Some(truth(clock.now())));
    assert_eq!(value("s1"), Some(7.0));
    assert_eq!(rendered(&registry, LOST), Some(0.0));
    // 181 cycles × 10 queries a stage without idle polling; with it, s1 is read far less.
    let without = 181 * 2 * 10;
    let with = queries.load(Ordering::SeqCst);
    assert!(
        with * 10 < without * 7,
        "{with} queries vs {without} without poll.idle"
    );
}

/// A metric source that is never asked: every query of the stream test is streamed.
struct Unused;

#[async_trait]
impl apigateway_exporter::source::MetricSource for Unused {
    async fn fetch(
        &self,
        _: &[apigateway_exporter::plan::Query],
        _: apigateway_exporter::source::Window,
    ) -> Result<Vec<apigateway_exporter::source::Outcome>, apigateway_exporter::source::SourceError>
    {
        panic!("only the metric stream is read");
    }
}

/// Invariant 3 for streamed series. Emulator gap: no emulator runs CloudWatch Metric Streams,
/// so the buffer takes records as the endpoint would, decoded from AWS's JSON format. A poll
/// loop that stalls past what the stream buffer keeps loses exactly the minutes the buffer
/// dropped, and counts them lost; a stall within it loses nothing.
#[tokio::test]
async fn a_stalled_poll_loop_loses_only_what_the_stream_buffer_dropped_and_counts_it() {
    use apigateway_exporter::plan::Streamed;
    use apigateway_exporter::source::RoutedSource;
    use apigateway_exporter::source::stream::{StreamBuffer, StreamSource, decode};
    let (registry, shared, metrics) = app::exposition(false).unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let mut settings = outage_settings(Duration::from_secs(3 * 3600));
    settings.plan.stream = Some(Streamed { percentiles: false });
    let retention = settings.poll.stream_retention();
    let buffer = Arc::new(StreamBuffer::new(NOW, retention, settings.poll.lookback()));
    let source = RoutedSource {
        metrics: Arc::new(Unused),
        logs: Arc::new(Unused),
        delivered: None,
        stream: Some(Arc::new(StreamSource {
            buffer: Arc::clone(&buffer),
            clock: clock.clone(),
        })),
    };
    let target = Target::new(
        "eu-west-1".into(),
        ApiFilter::new(&ApiSelection::default()),
        Arc::new(FakeDiscovery(vec![http_api("h1", 1)])),
        Arc::new(source),
    );
    let mut poller = Poller::new(vec![target], settings, clock.clone(), shared, metrics);
    // Firehose delivers each minute's Count (1 request) a minute after it ends.
    let deliver = |minute: i64| {
        let line = format!(
            r#"{{"account_id":"111122223333","region":"eu-west-1","namespace":"AWS/ApiGateway","metric_name":"Count","dimensions":{{"ApiId":"h1","Stage":"s0"}},"timestamp":{},"value":{{"max":1,"min":1,"sum":1,"count":1}},"unit":"Count"}}"#,
            minute * 1000
        );
        buffer.ingest(decode(line.as_bytes()).unwrap(), clock.now());
    };
    let requests = || {
        rendered(
            &registry,
            &format!("aws_apigateway_requests_total{{{LABELS}}}"),
        )
        .unwrap_or(0.0)
    };
    let lost = || rendered(&registry, LOST).unwrap_or(0.0);
    let minute = |t: i64| t - t % PERIOD;
    // Each step: a minute passes and Firehose delivers a finished minute.
    let delivered = std::cell::Cell::new(0.0);
    let step = || {
        clock.advance(PERIOD);
        deliver(minute(clock.now()) - 2 * PERIOD);
        delivered.set(delivered.get() + 1.0);
    };
    for _ in 0..5 {
        step();
        assert!(poller.cycle().await.complete());
    }
    let (counted, at) = (requests(), delivered.get());
    assert!(counted > 0.0, "streamed minutes are counted");
    // Stalled for 20 minutes, within the buffer's retention: nothing lost.
    assert!(20 * PERIOD < retention);
    for _ in 0..20 {
        step();
    }
    step();
    assert!(poller.cycle().await.complete());
    assert_eq!(
        requests() - counted,
        delivered.get() - at,
        "every minute of the stall counted"
    );
    assert_eq!(lost(), 0.0);
    // Stalled for an hour, past it: the minutes the buffer dropped are counted lost (about
    // 34: the hour less the 26 minutes kept), and none twice. `periods_lost` counts periods
    // never read: the last cycle before the stall read the newest minutes once, before
    // Firehose delivered them (2 minutes late), so those few are neither counted nor lost.
    let (counted, at) = (requests(), delivered.get());
    assert!(60 * PERIOD > retention);
    for _ in 0..60 {
        step();
    }
    step();
    assert!(poller.cycle().await.complete());
    let gone = lost();
    assert!(
        gone >= 30.0,
        "the minutes past the retention are counted lost: {gone}"
    );
    let missing = delivered.get() - at - (requests() - counted + gone);
    assert!((0.0..=3.0).contains(&missing), "{missing}");
    for _ in 0..3 {
        step();
        assert!(poller.cycle().await.complete());
    }
    assert_eq!(lost(), gone, "nothing counted lost twice");
    assert_eq!(
        delivered.get() - at - (requests() - counted + gone),
        missing,
        "each minute since counted once"
    );
}
