//! Discovery never starves the account's control plane: every management call is paced by
//! the budget (counted as the server receives them, never with the exporter's counters), a
//! refresh with nothing changed reads the listings and one GetStages per API, a new
//! deployment re-reads that API only, throttling slows discovery down without failing it or
//! losing a series, and shards split the per-API calls.
//!
//! At scale and under throttling, `aws-smithy-mocks` plays the account (tests/common/fleet.rs,
//! with tokio's clock paused so that an hour of pacing takes no time): no emulator serves
//! thousands of APIs, throttles on demand, or keeps v2 deployments (moto drops DeploymentId).
//! The same behaviour against LocalStack and moto, through a proxy that counts calls as they
//! arrive, is the last test.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use apigateway_exporter::app;
use apigateway_exporter::clock::ManualClock;
use apigateway_exporter::config::{ApiSelection, PollConfig, RequestRate, ShardConfig};
use apigateway_exporter::inventory::{ApiFilter, AwsDiscovery, Discovered, Discovery, Pace};
use apigateway_exporter::model::Stat;
use apigateway_exporter::plan::PlanOptions;
use apigateway_exporter::poll::{PollSettings, Poller, Target};
use apigateway_exporter::selfmetrics::SelfMetrics;
use apigateway_exporter::source::cloudwatch::CloudWatchSource;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use common::fleet::{Call, Fleet, busiest, count, http_id, rest_id};
use prometheus::Registry;

const DAY: Duration = Duration::from_secs(86_400);
const SECOND: Duration = Duration::from_secs(1);

fn discovery(fleet: &Fleet, rate: f64) -> AwsDiscovery {
    AwsDiscovery::new(
        fleet.clients(),
        SelfMetrics::new(&Registry::new(), false).unwrap(),
        Pace::standalone("us-east-1", rate, DAY),
    )
}

fn all() -> ApiFilter {
    ApiFilter::new(&ApiSelection::default())
}

/// The management calls of a log (not STS).
fn management(calls: &[Call]) -> Vec<&Call> {
    calls.iter().filter(|c| c.is_management()).collect()
}

/// The APIs each operation was called for.
fn apis_of(calls: &[Call], operation: &str) -> BTreeSet<String> {
    calls
        .iter()
        .filter(|c| c.operation == operation)
        .map(|c| c.api.clone())
        .collect()
}

/// Asserts no 1-second window holds more than `rate` management calls, and no window of
/// 1 / (rate / 4) seconds more than one GetResources (its quarter of the budget).
fn assert_within(calls: &[Call], rate: f64) {
    let busiest_second = busiest(management(calls), SECOND);
    assert!(
        busiest_second as f64 <= rate,
        "{busiest_second} management calls in one second, budget {rate}"
    );
    let resources: Vec<&Call> = calls
        .iter()
        .filter(|c| c.operation == "GetResources")
        .collect();
    let window = Duration::from_secs_f64(4.0 / rate);
    assert!(
        busiest(resources, window) <= 1,
        "more than one GetResources in {window:?}"
    );
}

fn span(calls: &[Call]) -> Duration {
    match (calls.first(), calls.last()) {
        (Some(a), Some(b)) => b.at - a.at,
        _ => Duration::ZERO,
    }
}

#[tokio::test(start_paused = true)]
async fn a_large_account_is_read_within_the_budget_then_only_what_changed() {
    let fleet = Fleet::new(1000, 1000);
    let rate = 2.0;
    let discovery = discovery(&fleet, rate);
    let first = discovery.discover(&all()).await.expect("first discovery");
    let calls = fleet.take();
    assert_eq!(first.apis.len(), 2000);
    assert!(
        first
            .apis
            .iter()
            .all(|a| a.stages.as_ref().is_some_and(|s| s.len() == 1) && a.integrations.len() == 1),
        "every API with its stage and integration"
    );
    let n = count(&calls);
    assert_eq!(n["GetResources"], 1000);
    assert_eq!(n["GetRoutes"], 1000);
    assert_eq!(n["ListMetrics"], 10, "the stages with detailed metrics");
    assert_within(&calls, rate);
    println!(
        "first discovery of 1000 REST + 1000 HTTP APIs at {rate}/s: {} calls {n:?} in {:?}",
        calls.len(),
        span(&calls)
    );

    // Nothing changed: the listings, one GetStages per API, GetAccount; nothing else.
    let again = discovery.discover(&all()).await.expect("refresh");
    let calls = fleet.take();
    assert_eq!(again, first);
    let n = count(&calls);
    for expensive in [
        "GetResources",
        "GetRoutes",
        "GetIntegrations",
        "ListMetrics",
    ] {
        assert_eq!(
            n.get(expensive),
            None,
            "{expensive} in an unchanged refresh"
        );
    }
    let pages = n["GetRestApis"] + n["GetApis"] + n["GetUsagePlans"] + n["GetAccount"];
    assert_eq!((n["GetRestApis"], n["GetApis"]), (2, 2));
    assert_eq!(n["GetStages"], 2000);
    assert_eq!(management(&calls).len(), pages + 2000);
    assert_within(&calls, rate);
    println!(
        "unchanged refresh: {} calls ({pages} listing pages and account calls + 2000 GetStages) in {:?}",
        management(&calls).len(),
        span(&calls)
    );

    // One new deployment each: that API's integrations (and routes) only.
    fleet.deploy(&rest_id(17), "d2");
    fleet.deploy(&http_id(300), "d2");
    let changed = discovery.discover(&all()).await.expect("refresh");
    let calls = fleet.take();
    assert_eq!(
        apis_of(&calls, "GetResources"),
        BTreeSet::from([rest_id(17)])
    );
    for op in ["GetRoutes", "GetIntegrations"] {
        assert_eq!(apis_of(&calls, op), BTreeSet::from([http_id(300)]), "{op}");
    }
    assert_eq!(
        apis_of(&calls, "ListMetrics"),
        BTreeSet::from([http_id(300)])
    );
    let backend = |d: &Discovered, id: &str| {
        d.apis.iter().find(|a| a.id == id).unwrap().integrations[0]
            .backend
            .clone()
    };
    assert_eq!(
        backend(&changed, &rest_id(17)),
        format!("{}-d2.example.com", rest_id(17))
    );
    assert_eq!(
        backend(&changed, &http_id(300)),
        format!("{}-d2.example.com", http_id(300))
    );
    assert_eq!(
        backend(&changed, &rest_id(18)),
        format!("{}-d1.example.com", rest_id(18))
    );
    assert_within(&calls, rate);
}

#[tokio::test(start_paused = true)]
async fn every_api_is_read_in_full_once_a_day_spread_over_the_day() {
    let fleet = Fleet::new(100, 100);
    let discovery = discovery(&fleet, 10.0);
    discovery.discover(&all()).await.unwrap();
    fleet.take();
    let mut full_reads = Vec::new();
    // Refreshes every 10 minutes for a day.
    for _ in 0..144 {
        tokio::time::advance(Duration::from_secs(600)).await;
        discovery.discover(&all()).await.unwrap();
        let calls = fleet.take();
        full_reads.push(apis_of(&calls, "GetResources").len() + apis_of(&calls, "GetRoutes").len());
    }
    assert_eq!(
        full_reads.iter().sum::<usize>(),
        200,
        "each API once: {full_reads:?}"
    );
    assert!(
        full_reads.iter().all(|n| *n <= 10),
        "spread out, not all at once: {full_reads:?}"
    );
}

/// A poll loop over the fleet's first `n` HTTP APIs' data (every query answers 1 a period).
fn poller(
    fleet: &Fleet,
    known_rate: f64,
) -> (
    Poller,
    Arc<apigateway_exporter::render::Exposition>,
    Arc<ManualClock>,
) {
    let (exposition, shared, metrics) = app::exposition(false).unwrap();
    let rule = mock!(aws_sdk_cloudwatch::Client::get_metric_data).then_compute_output(|req| {
        use aws_sdk_cloudwatch::types::{MetricDataResult, StatusCode};
        let start = req.start_time().map(|t| t.secs()).unwrap();
        let end = req.end_time().map(|t| t.secs()).unwrap();
        let results = req
            .metric_data_queries()
            .iter()
            .map(|q| {
                let mut r = MetricDataResult::builder()
                    .id(q.id().unwrap())
                    .status_code(StatusCode::Complete);
                for t in (start..end).step_by(60) {
                    r = r
                        .timestamps(aws_smithy_types::DateTime::from_secs(t))
                        .values(1.0);
                }
                r.build()
            })
            .collect();
        aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput::builder()
            .set_metric_data_results(Some(results))
            .build()
    });
    let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
    let clock = Arc::new(ManualClock::new(1_795_428_030));
    let target = Target::new(
        "us-east-1".into(),
        all(),
        Arc::new(AwsDiscovery::new(
            fleet.clients(),
            metrics.clone(),
            Pace::standalone("us-east-1", known_rate, DAY),
        )),
        Arc::new(CloudWatchSource::new(
            cloudwatch,
            metrics.clone(),
            RequestRate::Unlimited,
        )),
    );
    let settings = PollSettings {
        poll: PollConfig::DEFAULT,
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
        exposition,
        clock,
    )
}

/// The series of an exposition (name and labels), the exporter's own left out.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("aws_apigateway_") && !l.starts_with("aws_apigateway_exporter_"))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn thirty_percent_throttling_slows_discovery_but_changes_nothing_else() {
    let rate = 5.0;
    // What the account holds, read without throttling.
    let reference = Fleet::new(60, 60);
    let unthrottled = discovery(&reference, rate).discover(&all()).await.unwrap();
    let calls = reference.take();
    println!(
        "without throttling: {} calls in {:?}",
        calls.len(),
        span(&calls)
    );

    // A first discovery under throttling completes with the same inventory, within budget.
    let fleet = Fleet::new(60, 60);
    fleet.throttle(30);
    let throttled = discovery(&fleet, rate)
        .discover(&all())
        .await
        .expect("completes");
    assert_eq!(throttled, unthrottled);
    let calls = fleet.take();
    let answered_429 = calls.iter().filter(|c| c.throttled).count();
    let share = answered_429 as f64 / management(&calls).len() as f64;
    assert!(
        (0.25..=0.35).contains(&share),
        "{answered_429} of {} throttled",
        calls.len()
    );
    assert_within(&calls, rate);
    println!(
        "under 30 % throttling: {} calls ({answered_429} answered 429) in {:?}",
        calls.len(),
        span(&calls)
    );

    // A refresh under throttling while the poll loop runs: no series disappears meanwhile.
    let fleet = Fleet::new(60, 60);
    let (mut poller, exposition, clock) = poller(&fleet, rate);
    poller.refresh_all().await;
    poller.cycle().await;
    let text = || String::from_utf8(exposition.encode().unwrap()).unwrap();
    let before = series(&text());
    assert!(before.len() > 120, "{}", before.len());
    fleet.throttle(30);
    fleet.deploy(&http_id(7), "d2");
    fleet.take();
    clock.advance(11 * 60);
    let mut cycles = 0;
    loop {
        cycles += 1;
        assert!(cycles < 500, "the throttled refresh never completed");
        poller.cycle().await;
        let now = series(&text());
        let gone: Vec<&String> = before
            .iter()
            .filter(|s| !now.contains(*s) && !s.contains(&http_id(7)))
            .collect();
        assert!(
            gone.is_empty(),
            "series gone during a throttled refresh: {gone:?}"
        );
        if now
            .iter()
            .any(|s| s.contains(&format!("{}-d2.example.com", http_id(7))))
        {
            break;
        }
        clock.advance(60);
        tokio::time::advance(Duration::from_secs(60)).await;
    }
    let calls = fleet.take();
    assert!(calls.iter().any(|c| c.throttled));
    assert_within(&calls, rate);
    let after = series(&text());
    let changed: Vec<&String> = before.symmetric_difference(&after).collect();
    assert!(
        changed
            .iter()
            .all(|s| s.contains("aws_apigateway_integration_info") && s.contains(&http_id(7))),
        "only the redeployed API's integration changed: {changed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shards_make_the_per_api_calls_of_one_exporter_between_them() {
    let (rest, http) = (300, 300);
    let rate = 3.0;
    let unsharded = Fleet::new(rest, http);
    discovery(&unsharded, rate).discover(&all()).await.unwrap();
    let whole = unsharded.take();

    // Three replicas, as three processes would run them: each its own budget and clients,
    // at the same time, on one clock.
    let fleets: Vec<Fleet> = (0..3).map(|_| Fleet::new(rest, http)).collect();
    let runs = fleets.iter().enumerate().map(|(index, fleet)| {
        let mut pace = Pace::standalone("us-east-1", rate, DAY);
        pace.shard = (index as u32, 3);
        let discovery = AwsDiscovery::new(
            fleet.clients(),
            SelfMetrics::new(&Registry::new(), false).unwrap(),
            pace,
        );
        let filter = all().with_shard(Some(ShardConfig::new(index as u32, 3).unwrap()));
        async move { discovery.discover(&filter).await.unwrap() }
    });
    futures::future::join_all(runs).await;
    let mut per_api: Vec<(String, String)> = Vec::new();
    let mut together: Vec<Call> = Vec::new();
    for (index, fleet) in fleets.iter().enumerate() {
        let calls = fleet.take();
        let n = count(&calls);
        assert_eq!(
            n.contains_key("GetAccount"),
            index == 0,
            "GetAccount from shard 0 only"
        );
        for c in calls
            .iter()
            .filter(|c| !c.api.is_empty() && c.is_management())
        {
            per_api.push((c.operation.to_string(), c.api.clone()));
        }
        together.extend(calls);
    }
    // Taking turns on the budget's grid, the three stay within it together.
    assert_within(&together, rate);
    let total = management(&together).len();
    let mut expected: Vec<(String, String)> = whole
        .iter()
        .filter(|c| !c.api.is_empty() && c.is_management())
        .map(|c| (c.operation.to_string(), c.api.clone()))
        .collect();
    per_api.sort();
    expected.sort();
    assert_eq!(
        per_api, expected,
        "each per-API call made by exactly one shard"
    );
    let whole_total = management(&whole).len();
    let n = count(&whole);
    let listings = n["GetRestApis"] + n["GetApis"] + n["GetUsagePlans"];
    assert_eq!(
        total,
        whole_total + 2 * listings,
        "the shards repeat only the listings"
    );
    println!(
        "{rest} REST + {http} HTTP APIs: one exporter {whole_total} calls in {:?}; 3 shards {total} together ({listings} listing pages each) in {:?}",
        span(&whole),
        together.iter().map(|c| c.at).max().unwrap() - together.iter().map(|c| c.at).min().unwrap()
    );
}

#[test]
fn the_proxy_names_operations_from_their_paths() {
    use common::proxy::classify;
    assert_eq!(classify("GET", "/restapis?limit=500").1, "GetRestApis");
    assert_eq!(classify("GET", "/restapis/a1/stages").1, "GetStages");
    assert_eq!(
        classify("GET", "/restapis/a1/resources?embed=methods&limit=500").1,
        "GetResources"
    );
    assert_eq!(classify("GET", "/v2/apis/h1/routes").0, "apigatewayv2");
    assert_eq!(
        classify(
            "POST",
            "/service/GraniteServiceVersion20100801/operation/ListMetrics"
        )
        .1,
        "ListMetrics"
    );
    assert_eq!(classify("POST", "/").0, "other");
}

/// The same against LocalStack (REST, CloudWatch) and moto (HTTP APIs), with the real binary,
/// each behind a proxy that logs every call as it arrives (tests/common/proxy.rs): the budget
/// holds in every second; a refresh with nothing changed makes no GetResources, GetRoutes,
/// GetIntegrations or ListMetrics; a new deployment re-reads that API only; and with 30 % of
/// the management calls answered TooManyRequests, discovery still completes, with the same
/// inventory and no series lost meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn against_the_emulators_discovery_keeps_to_its_budget_and_reads_only_what_changed() {
    use common::proxy::Recorder;
    use common::{Exporter, Metrics, create_rest_api, create_v2_api, emulator_config};
    const WAIT: Duration = Duration::from_secs(180);
    let tag = common::unique("dq");
    let mut rest = Vec::new();
    for i in 0..6 {
        rest.push(create_rest_api(&format!("dq{i}-{tag}"), &["prod"]).await);
    }
    // Detailed metrics on one stage: its routes come from ListMetrics, within the budget too.
    common::patch_stage(&rest[0], "prod", &[("/*/*/metrics/enabled", "true")]).await;
    let mut http = Vec::new();
    for i in 0..6 {
        http.push(create_v2_api(&format!("dqh{i}-{tag}"), false, &["$default"]).await);
    }
    let ours = |c: &&common::proxy::Call| {
        rest.iter()
            .chain(&http)
            .any(|id| c.path.contains(id.as_str()))
    };
    let localstack = Recorder::start(&common::localstack());
    let moto = Recorder::start(&common::moto());
    let rate = 4.0;
    let config = emulator_config(&tag, "")
        .replace(
            "max_requests_per_second: 10",
            &format!("max_requests_per_second: {rate}"),
        )
        .replace(&common::localstack(), &localstack.url())
        .replace(&common::moto(), &moto.url());
    // check-config runs a full discovery and says what discovery costs.
    let plan = common::check_config(&config);
    assert!(
        plan.contains(
            "discovery (budget discovery.max_requests_per_second = 4 per second for the account;"
        ) && plan.contains("a refresh with nothing changed makes")
            && plan.contains("(the listings, and one GetStages per API)"),
        "{plan}"
    );
    let full: u64 = plan
        .split("a full discovery makes ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the full discovery's calls");
    // Our 12 APIs alone: 12 GetStages, 6 GetResources, 6 GetRoutes and 6 GetIntegrations, 1
    // ListMetrics; plus the listings and what other tests' APIs matching the marker add.
    assert!(full >= 31, "{plan}");
    let exporter = Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);
    let apis = |m: &Metrics| {
        rest.iter()
            .chain(&http)
            .filter(|id| {
                m.value("aws_apigateway_stage_info", &[("api_id", id.as_str())])
                    .is_some()
            })
            .count()
    };
    exporter.scrape_until(WAIT, |m| apis(m) == 12);
    let last_success = |m: &Metrics| {
        m.value(
            "aws_apigateway_exporter_discovery_last_success_timestamp_seconds",
            &[],
        )
        .unwrap_or(0.0)
    };
    // Waits for `n` more discoveries to complete; returns the calls made meanwhile.
    let discoveries = |n: usize| {
        let before = (localstack.calls().len(), moto.calls().len());
        for _ in 0..n {
            let seen = last_success(&exporter.scrape());
            exporter.scrape_until(WAIT, |m| last_success(m) > seen);
        }
        let mut calls = localstack.calls().split_off(before.0);
        calls.extend(moto.calls().split_off(before.1));
        calls
    };
    let count = |calls: &[common::proxy::Call], op: &str| {
        calls
            .iter()
            .filter(|c| ours(c) && c.operation == op)
            .count()
    };

    // Nothing changed, two refreshes: one GetStages per API each, nothing else per API.
    let steady = discoveries(2);
    assert!(
        count(&steady, "GetStages") >= 24,
        "{}",
        count(&steady, "GetStages")
    );
    for op in [
        "GetResources",
        "GetRoutes",
        "GetIntegrations",
        "ListMetrics",
    ] {
        assert_eq!(count(&steady, op), 0, "{op} in an unchanged refresh");
    }
    let inventory = |m: &Metrics| -> BTreeSet<String> {
        series(&m.text)
            .into_iter()
            .filter(|s| {
                ["_info{", "integration_timeout_seconds{"]
                    .iter()
                    .any(|f| s.contains(f))
                    && rest.iter().chain(&http).any(|id| s.contains(id.as_str()))
            })
            .collect()
    };
    let before = exporter.scrape();
    let known = inventory(&before);

    // A new deployment of one REST API: its integrations are read again, no other API's.
    common::apigateway()
        .create_deployment()
        .rest_api_id(&rest[3])
        .stage_name("prod")
        .send()
        .await
        .expect("CreateDeployment");
    let redeployed = discoveries(2);
    let resources: BTreeSet<&str> = redeployed
        .iter()
        .filter(|c| ours(c) && c.operation == "GetResources")
        .map(|c| c.path.as_str())
        .collect();
    assert!(
        !resources.is_empty() && resources.iter().all(|p| p.contains(rest[3].as_str())),
        "GetResources of the redeployed API only: {resources:?}"
    );
    for op in ["GetRoutes", "GetIntegrations", "ListMetrics"] {
        assert_eq!(count(&redeployed, op), 0, "{op} after a REST deployment");
    }

    // 30 % of the management calls throttled: discovery completes, nothing is lost.
    localstack.throttle(30);
    moto.throttle(30);
    let all_series = series(&exporter.scrape().text);
    let from = (localstack.calls().len(), moto.calls().len());
    let mut seen = last_success(&exporter.scrape());
    let mut completed = 0;
    let deadline = std::time::Instant::now() + WAIT;
    // Two discoveries under throttling, every series checked every quarter second meanwhile.
    while completed < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "throttled discoveries never completed"
        );
        let m = exporter.scrape();
        let now = series(&m.text);
        let gone: Vec<&String> = all_series.iter().filter(|s| !now.contains(*s)).collect();
        assert!(gone.is_empty(), "series gone while throttled: {gone:?}");
        if last_success(&m) > seen {
            seen = last_success(&m);
            completed += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut during = localstack.calls().split_off(from.0);
    during.extend(moto.calls().split_off(from.1));
    let answered_429 = during.iter().filter(|c| c.throttled).count();
    assert!(answered_429 > 0, "the proxies throttled nothing");
    let after = exporter.scrape();
    let gone: Vec<&String> = all_series
        .iter()
        .filter(|s| !series(&after.text).contains(*s))
        .collect();
    assert!(gone.is_empty(), "series gone after throttling: {gone:?}");
    assert_eq!(
        inventory(&after),
        known,
        "the inventory read under throttling"
    );

    // Every call, throttled or not, kept to the budget: no second with more than `rate`
    // management calls, GetResources on a quarter of it.
    let mut all = localstack.calls();
    all.extend(moto.calls());
    let management: Vec<&common::proxy::Call> = all.iter().filter(|c| c.is_management()).collect();
    let peak = common::proxy::busiest(&management, SECOND);
    let resources: Vec<&common::proxy::Call> = management
        .iter()
        .copied()
        .filter(|c| c.operation == "GetResources")
        .collect();
    println!(
        "emulators: {} management calls ({answered_429} answered 429 in the throttled refreshes), busiest second {peak}, busiest second of GetResources {}",
        management.len(),
        common::proxy::busiest(&resources, SECOND)
    );
    assert!(
        peak as f64 <= rate,
        "{peak} calls in one second, budget {rate}"
    );
    assert!(common::proxy::busiest(&resources, SECOND) <= 1);
}
