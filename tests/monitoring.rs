//! One exporter for an AWS Organization: a CloudWatch monitoring account reads its source
//! accounts' metrics with GetMetricData (`AccountId` on each query, batched across accounts)
//! and discovers each account with a read-only role in it, or without one from its own
//! ListMetrics (`IncludeLinkedAccounts`, `OwningAccount`); accounts come from the config and
//! from OAM's attached links.
//!
//! Emulator gap: neither LocalStack nor moto has OAM, and LocalStack ignores `AccountId` in
//! GetMetricData and `IncludeLinkedAccounts`/`OwningAccount` in ListMetrics (it answers from
//! the caller's own account; docs/emulators.md). So the monitoring account's CloudWatch and
//! OAM are `aws-smithy-mocks` here, answering per account as AWS does, and each source
//! account's API Gateway is a mock account (tests/common/fleet.rs). The role path itself
//! (AssumeRole into the source account, its API Gateway read there) runs against LocalStack
//! in the last test, with the real binary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apigateway_exporter::app;
use apigateway_exporter::clock::ManualClock;
use apigateway_exporter::config::{ApiSelection, Config, RequestRate};
use apigateway_exporter::inventory::{
    ApiFilter, AwsDiscovery, Discovered, Discovery, DiscoveryError, LinkedAccounts,
    MetricsDiscovery, MonitoringDiscovery, Pace, Role, SourceSpec, Sources, linked_accounts,
};
use apigateway_exporter::poll::{Poller, Target};
use apigateway_exporter::render::Exposition;
use apigateway_exporter::selfmetrics::SelfMetrics;
use apigateway_exporter::source::cloudwatch::CloudWatchSource;
use async_trait::async_trait;
use aws_sdk_cloudwatch::operation::get_metric_data::{GetMetricDataInput, GetMetricDataOutput};
use aws_sdk_cloudwatch::operation::list_metrics::{ListMetricsInput, ListMetricsOutput};
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataResult, StatusCode};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::DateTime;
use common::Metrics;
use common::fleet::Fleet;

const MONITORING: &str = "111111111111";
const WITH_ROLE: &str = "222222222222";
const WITHOUT_ROLE: &str = "333333333333";
const LINKED: &str = "444444444444";
const LOGS_ONLY: &str = "555555555555";
/// 2026-11-21T10:00:30Z.
const NOW: i64 = 1_795_428_030;
const DAY: Duration = Duration::from_secs(86_400);

/// What each account's metrics say per period: a value of its own, so that a series read
/// under the wrong account shows.
fn base(account: Option<&str>) -> f64 {
    match account {
        Some(WITH_ROLE) => 2.0,
        Some(WITHOUT_ROLE) => 3.0,
        Some(LINKED) => 4.0,
        _ => 1.0,
    }
}

/// The monitoring account's own discovery: its account, and no APIs of its own.
struct Monitoring;

#[async_trait]
impl Discovery for Monitoring {
    async fn account_id(&self) -> Result<String, DiscoveryError> {
        Ok(MONITORING.into())
    }
    async fn discover(&self, _: &ApiFilter) -> Result<Discovered, DiscoveryError> {
        Ok(Discovered::default())
    }
}

/// Every ListMetrics request: (OwningAccount, IncludeLinkedAccounts).
type Listed = Arc<Mutex<Vec<(Option<String>, bool)>>>;

/// The OAM links attached to the monitoring account's sink: (source account, resource types).
type Links = Arc<Mutex<Vec<(&'static str, Vec<&'static str>)>>>;

fn oam_client(links: &Links) -> aws_sdk_oam::Client {
    let sinks = mock!(aws_sdk_oam::Client::list_sinks).then_output(|| {
        aws_sdk_oam::operation::list_sinks::ListSinksOutput::builder()
            .items(
                aws_sdk_oam::types::ListSinksItem::builder()
                    .arn(format!("arn:aws:oam:us-east-1:{MONITORING}:sink/s1"))
                    .id("s1")
                    .name("org")
                    .build(),
            )
            .build()
            .unwrap()
    });
    let links = Arc::clone(links);
    let attached = mock!(aws_sdk_oam::Client::list_attached_links)
        .match_requests(|r| r.sink_identifier().is_some_and(|s| s.ends_with(":sink/s1")))
        .then_compute_output(move |_| {
            let mut out =
                aws_sdk_oam::operation::list_attached_links::ListAttachedLinksOutput::builder();
            for (account, types) in links.lock().unwrap().iter() {
                let mut item = aws_sdk_oam::types::ListAttachedLinksItem::builder()
                    .link_arn(format!("arn:aws:oam:us-east-1:{account}:link/l-{account}"))
                    .label(format!("{account}-label"));
                for t in types {
                    item = item.resource_types(*t);
                }
                out = out.items(item.build());
            }
            out.build().unwrap()
        });
    mock_client!(aws_sdk_oam, RuleMode::MatchAny, [&sinks, &attached])
}

/// ListMetrics as the monitoring account answers it: only with `IncludeLinkedAccounts` does
/// it list a source account's metrics, `OwningAccounts` aligned with them. The account read
/// without a role has 20 REST APIs (`bee-0` …) with a `prod` stage; one metric of another
/// account comes back too, as a page may hold several accounts' metrics.
fn list_metrics(
    req: &ListMetricsInput,
    seen: &Mutex<Vec<(Option<String>, bool)>>,
) -> ListMetricsOutput {
    seen.lock().unwrap().push((
        req.owning_account().map(str::to_string),
        req.include_linked_accounts() == Some(true),
    ));
    let dim = |n: &str, v: &str| Dimension::builder().name(n).value(v).build();
    let mut out = ListMetricsOutput::builder();
    let linked = req.include_linked_accounts() == Some(true);
    match (req.owning_account(), req.dimensions().first()) {
        (Some(WITHOUT_ROLE), None) if linked => {
            // Two pages of metrics.
            let (from, to) = match req.next_token() {
                None => (0, 10),
                Some(_) => (10, 20),
            };
            for i in from..to {
                let api = format!("bee-{i}");
                for (name, stage) in [
                    ("Count", None),
                    ("Count", Some("prod")),
                    ("5XXError", Some("prod")),
                ] {
                    let mut m = Metric::builder()
                        .namespace("AWS/ApiGateway")
                        .metric_name(name)
                        .dimensions(dim("ApiName", &api));
                    if let Some(stage) = stage {
                        m = m.dimensions(dim("Stage", stage));
                    }
                    out = out.metrics(m.build()).owning_accounts(WITHOUT_ROLE);
                }
            }
            if from == 0 {
                out = out.next_token("page-2");
            } else {
                // Another account's metric on the same page: never attributed to this one.
                out = out
                    .metrics(
                        Metric::builder()
                            .namespace("AWS/ApiGateway")
                            .metric_name("Count")
                            .dimensions(dim("ApiName", "intruder"))
                            .dimensions(dim("Stage", "prod"))
                            .build(),
                    )
                    .owning_accounts("999999999999");
            }
        }
        // A source account's routes (detailed metrics on its HTTP API `h00000`).
        (Some(account), Some(api)) if linked => {
            let api = api.value().unwrap_or_default();
            out = out
                .metrics(
                    Metric::builder()
                        .namespace("AWS/ApiGateway")
                        .metric_name("Count")
                        .dimensions(dim("ApiId", api))
                        .dimensions(dim("Stage", "$default"))
                        .dimensions(dim("Route", "GET /items"))
                        .build(),
                )
                .owning_accounts(account);
        }
        // Without IncludeLinkedAccounts, only the monitoring account's own (none).
        _ => {}
    }
    out.build()
}

/// GetMetricData as the monitoring account answers it: each query from its `AccountId`'s
/// data, every period of the window. Records every query's account, per call.
fn get_metric_data(
    req: &GetMetricDataInput,
    calls: &Mutex<Vec<Vec<Option<String>>>>,
) -> GetMetricDataOutput {
    let start = req.start_time().map(|t| t.secs()).unwrap();
    let end = req.end_time().map(|t| t.secs()).unwrap();
    let mut accounts = Vec::new();
    let results = req
        .metric_data_queries()
        .iter()
        .map(|q| {
            let account = q.account_id();
            accounts.push(account.map(str::to_string));
            let mut r = MetricDataResult::builder()
                .id(q.id().unwrap())
                .status_code(StatusCode::Complete);
            for t in (start..end).step_by(60) {
                r = r.timestamps(DateTime::from_secs(t)).values(base(account));
            }
            r.build()
        })
        .collect();
    calls.lock().unwrap().push(accounts);
    GetMetricDataOutput::builder()
        .set_metric_data_results(Some(results))
        .build()
}

/// The source discoveries of the test's organization: a mock account per role, and the
/// monitoring account's CloudWatch (mock) for ListMetrics.
struct TestSources {
    fleets: BTreeMap<&'static str, Fleet>,
    cloudwatch: aws_sdk_cloudwatch::Client,
    oam: aws_sdk_oam::Client,
    metrics: SelfMetrics,
    /// The roles discovery was asked to assume.
    roles: Mutex<Vec<Role>>,
}

impl TestSources {
    fn monitoring_clients(&self) -> apigateway_exporter::sdk::TargetClients {
        let mut clients = Fleet::new(0, 0).with_account(MONITORING).clients();
        clients.cloudwatch = self.cloudwatch.clone();
        clients
    }
}

#[async_trait]
impl Sources for TestSources {
    async fn discovery(&self, source: &SourceSpec) -> Arc<dyn Discovery> {
        let pace = Pace::standalone("us-east-1", 10.0, DAY);
        let account = source.account_id.as_str();
        match &source.role {
            Some(role) => {
                self.roles.lock().unwrap().push(role.clone());
                let fleet = &self.fleets[account];
                Arc::new(AwsDiscovery::source(
                    fleet.clients(),
                    self.cloudwatch.clone(),
                    account,
                    self.metrics.clone(),
                    pace,
                ))
            }
            None => {
                let lister = AwsDiscovery::source(
                    self.monitoring_clients(),
                    self.cloudwatch.clone(),
                    account,
                    self.metrics.clone(),
                    pace,
                );
                Arc::new(MetricsDiscovery::new(lister, account))
            }
        }
    }

    async fn linked_accounts(&self) -> Result<Vec<String>, DiscoveryError> {
        let lister = AwsDiscovery::new(
            self.monitoring_clients(),
            self.metrics.clone(),
            Pace::standalone("us-east-1", 10.0, DAY),
        );
        linked_accounts(&lister, &self.oam).await
    }
}

struct Org {
    poller: Poller,
    exposition: Arc<Exposition>,
    clock: Arc<ManualClock>,
    get_metric_data: aws_smithy_mocks::Rule,
    /// Every GetMetricData call's queries, by account.
    calls: Arc<Mutex<Vec<Vec<Option<String>>>>>,
    /// Every ListMetrics request: (OwningAccount, IncludeLinkedAccounts).
    listed: Listed,
    links: Links,
    sources: Arc<TestSources>,
}

impl Org {
    /// A monitoring account reading `WITH_ROLE` (listed, with a role), `WITHOUT_ROLE`
    /// (listed, no role) and, through its OAM links, `LINKED` (with `role_name`'s role);
    /// `LOGS_ONLY` is linked too but shares no metrics.
    fn new(fleets: BTreeMap<&'static str, Fleet>) -> Org {
        let calls: Arc<Mutex<Vec<Vec<Option<String>>>>> = Arc::default();
        let listed: Listed = Arc::default();
        let c = Arc::clone(&calls);
        let gmd = mock!(aws_sdk_cloudwatch::Client::get_metric_data)
            .then_compute_output(move |req| get_metric_data(req, &c));
        let l = Arc::clone(&listed);
        let lm = mock!(aws_sdk_cloudwatch::Client::list_metrics)
            .then_compute_output(move |req| list_metrics(req, &l));
        let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&gmd, &lm]);
        let links: Links = Arc::new(Mutex::new(vec![
            (
                WITHOUT_ROLE,
                vec!["AWS::CloudWatch::Metric", "AWS::Logs::LogGroup"],
            ),
            (LINKED, vec!["AWS::CloudWatch::Metric"]),
            (LOGS_ONLY, vec!["AWS::Logs::LogGroup"]),
        ]));
        let (exposition, shared, metrics) = app::exposition(false).unwrap();
        let sources = Arc::new(TestSources {
            fleets,
            cloudwatch: cloudwatch.clone(),
            oam: oam_client(&links),
            metrics: metrics.clone(),
            roles: Mutex::default(),
        });
        let discovery = MonitoringDiscovery::new(
            Arc::new(Monitoring),
            true,
            vec![
                SourceSpec {
                    account_id: WITH_ROLE.into(),
                    role: Some(Role {
                        arn: format!("arn:aws:iam::{WITH_ROLE}:role/reader"),
                        external_id: None,
                    }),
                },
                SourceSpec {
                    account_id: WITHOUT_ROLE.into(),
                    role: None,
                },
            ],
            Some(LinkedAccounts {
                role_name: Some(apigateway_exporter::config::RoleName::new("org/reader").unwrap()),
                external_id: Some("ext-1".into()),
            }),
            Arc::clone(&sources) as Arc<dyn Sources>,
            "us-east-1",
            metrics.clone(),
        );
        let clock = Arc::new(ManualClock::new(NOW));
        let target = Target::new(
            "us-east-1".into(),
            ApiFilter::new(&ApiSelection::default()),
            Arc::new(discovery),
            Arc::new(CloudWatchSource::new(
                cloudwatch,
                metrics.clone(),
                RequestRate::Unlimited,
            )),
        );
        // The default config's settings: the README's statistics, 15 queries a REST stage.
        let settings = app::settings(&Config::default());
        Org {
            poller: Poller::new(vec![target], settings, clock.clone(), shared, metrics),
            exposition,
            clock,
            get_metric_data: gmd,
            calls,
            listed,
            links,
            sources,
        }
    }

    fn metrics(&self) -> Metrics {
        Metrics::parse(&String::from_utf8(self.exposition.encode().unwrap()).unwrap())
    }

    /// One cycle a period later; the GetMetricData calls it made, as the mock counted them.
    async fn cycle(&mut self) -> usize {
        self.clock.advance(60);
        let before = self.get_metric_data.num_calls();
        self.poller.cycle().await;
        self.get_metric_data.num_calls() - before
    }
}

/// `aws_apigateway_requests_total` by (account, api_id, api_name, stage).
fn requests(m: &Metrics) -> BTreeMap<(String, String, String, String), f64> {
    m.find("aws_apigateway_requests_total", &[])
        .iter()
        .map(|s| {
            let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            (
                (l("account_id"), l("api_id"), l("api_name"), l("stage")),
                s.value,
            )
        })
        .collect()
}

fn up(m: &Metrics, account: &str) -> Vec<(String, f64)> {
    m.find(
        "aws_apigateway_exporter_source_account_up",
        &[("account_id", account)],
    )
    .iter()
    .map(|s| (s.labels["discovery"].clone(), s.value))
    .collect()
}

#[tokio::test(start_paused = true)]
async fn three_source_accounts_with_and_without_a_role_are_read_in_shared_calls_and_fail_alone() {
    let with_role = Fleet::new(20, 0).with_account(WITH_ROLE);
    let linked = Fleet::new(20, 0).with_account(LINKED);
    let mut org = Org::new(BTreeMap::from([
        (WITH_ROLE, with_role.clone()),
        (LINKED, linked.clone()),
    ]));
    let results = org.poller.refresh_all().await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    // Which accounts, how: the listed ones as listed (the one also linked keeps no role),
    // the linked one with role_name's role in it, the link that shares no metrics left out.
    let roles = org.sources.roles.lock().unwrap().clone();
    assert_eq!(
        roles,
        [
            Role {
                arn: format!("arn:aws:iam::{WITH_ROLE}:role/reader"),
                external_id: None
            },
            Role {
                arn: format!("arn:aws:iam::{LINKED}:role/org/reader"),
                external_id: Some("ext-1".into())
            },
        ]
    );
    let plan = org.poller.targets()[0].plan().clone();
    let mut per_account: BTreeMap<Option<String>, usize> = BTreeMap::new();
    for q in &plan.queries {
        *per_account
            .entry(q.account.as_deref().map(str::to_string))
            .or_default() += 1;
        assert_eq!(
            q.account.as_deref(),
            Some(q.labels.account_id.as_str()),
            "a query asks for the account its series is labelled with"
        );
    }
    assert_eq!(
        per_account,
        BTreeMap::from([
            (Some(WITH_ROLE.to_string()), 300),
            (Some(WITHOUT_ROLE.to_string()), 300),
            (Some(LINKED.to_string()), 300),
        ])
    );
    // The account read without a role: one ListMetrics listing of its own metrics (two
    // pages), always with IncludeLinkedAccounts.
    let listed = org.listed.lock().unwrap().clone();
    assert_eq!(
        listed,
        [
            (Some(WITHOUT_ROLE.to_string()), true),
            (Some(WITHOUT_ROLE.to_string()), true)
        ]
    );

    // 3 accounts × 300 queries: ceil(900 / 500) = 2 calls, each query with its AccountId.
    assert_eq!(org.cycle().await, 2, "the baseline cycle");
    assert_eq!(org.cycle().await, 2);
    let calls = org.calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().map(Vec::len).collect::<Vec<_>>(),
        [500, 400, 500, 400]
    );
    assert!(
        calls[0].iter().collect::<BTreeSet<_>>().len() >= 2,
        "a call mixes accounts"
    );
    assert!(
        calls.iter().flatten().all(Option::is_some),
        "every query names its account"
    );

    // Each account's series equal its own data: one period counted since the baseline.
    let m = org.metrics();
    let got = requests(&m);
    assert_eq!(got.len(), 60, "{got:?}");
    for ((account, api_id, api_name, stage), value) in &got {
        assert_eq!(stage, "prod");
        assert_eq!(*value, base(Some(account)), "{account} {api_name}");
        match account.as_str() {
            // With a role: the full inventory, REST ids joined to names.
            WITH_ROLE | LINKED => assert!(api_id.starts_with('r') && api_name.starts_with("rest-")),
            // Without: REST APIs by name only, no id label at all.
            WITHOUT_ROLE => assert!(api_id.is_empty() && api_name.starts_with("bee-")),
            other => panic!("a series of {other}"),
        }
    }
    assert!(
        !m.text.contains("intruder"),
        "another account's metric is never attributed"
    );
    let info = m.find("aws_apigateway_api_info", &[("account_id", WITHOUT_ROLE)]);
    assert_eq!(info.len(), 20);
    assert!(info.iter().all(|s| !s.labels.contains_key("api_id")));
    assert_eq!(up(&m, WITH_ROLE), [("role".to_string(), 1.0)]);
    assert_eq!(up(&m, WITHOUT_ROLE), [("metrics".to_string(), 1.0)]);
    assert_eq!(up(&m, LINKED), [("role".to_string(), 1.0)]);
    assert!(up(&m, LOGS_ONLY).is_empty());

    // One role fails: its account keeps its inventory and its series stay exact; the others
    // go on untouched.
    linked.deny(true);
    org.clock.advance(600);
    let results = org.poller.refresh_all().await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(org.cycle().await, 2);
    let m = org.metrics();
    assert_eq!(up(&m, LINKED), [("role".to_string(), 0.0)]);
    assert_eq!(up(&m, WITH_ROLE), [("role".to_string(), 1.0)]);
    let got = requests(&m);
    assert_eq!(got.len(), 60);
    for ((account, ..), value) in &got {
        // Two periods (the clock moved ten more minutes: a catch-up reads them all).
        assert_eq!(*value, base(Some(account)) * 12.0, "{account}");
    }
    assert_eq!(m.value("aws_apigateway_exporter_target_up", &[]), Some(1.0));

    // The link goes: the account leaves with its series.
    org.links.lock().unwrap().retain(|(a, _)| *a != LINKED);
    org.clock.advance(600);
    let results = org.poller.refresh_all().await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    org.cycle().await;
    let m = org.metrics();
    let got = requests(&m);
    assert_eq!(got.len(), 40);
    assert!(got.keys().all(|(a, ..)| a != LINKED));
    assert!(
        m.find("aws_apigateway_api_info", &[("account_id", LINKED)])
            .is_empty()
    );
    assert!(up(&m, LINKED).is_empty());
    assert_eq!(
        org.poller.targets()[0].plan().queries.len(),
        600,
        "two accounts left: ceil(600 / 500) = 2 calls"
    );
}

#[tokio::test(start_paused = true)]
async fn a_source_accounts_routes_come_from_the_monitoring_accounts_list_metrics() {
    // One HTTP API with detailed metrics (h00000) in the account read with a role.
    let fleet = Fleet::new(0, 1).with_account(WITH_ROLE);
    let mut org = Org::new(BTreeMap::from([
        (WITH_ROLE, fleet.clone()),
        (LINKED, Fleet::new(0, 0).with_account(LINKED)),
    ]));
    org.poller.refresh_all().await;
    assert!(
        org.listed
            .lock()
            .unwrap()
            .contains(&(Some(WITH_ROLE.to_string()), true)),
        "route ListMetrics asks the monitoring account for the source account's metrics"
    );
    assert!(
        fleet.take().iter().all(|c| c.operation != "ListMetrics"),
        "the source account's own CloudWatch is not asked"
    );
    org.cycle().await;
    org.cycle().await;
    let m = org.metrics();
    let route = m.find(
        "aws_apigateway_route_requests_total",
        &[("account_id", WITH_ROLE), ("api_id", "h00000")],
    );
    assert_eq!(route.len(), 1, "{}", m.text);
    assert_eq!(route[0].value, base(Some(WITH_ROLE)));
}

/// The role path against LocalStack, with the real binary: the exporter runs as the
/// monitoring account (LocalStack's default account, 000000000000), assumes a role in source
/// account 222222222222 (LocalStack's STS hands out that account's credentials) and reads its
/// API Gateway there; an API of the same name in the monitoring account is not read
/// (`include_monitoring_account: false`). GetMetricData goes through a proxy, which sees every
/// query carry the source account's `AccountId`.
///
/// Emulator gap: LocalStack answers GetMetricData from the caller's own metrics whatever the
/// `AccountId`, so the source account's datapoints are put where it reads them, into the
/// monitoring account's CloudWatch, as OAM makes a source's metrics visible there.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_account_is_discovered_through_its_role_on_localstack() {
    const WAIT: Duration = Duration::from_secs(60);
    let tag = common::unique("org");
    let name = format!("orgrest-{tag}");
    let source_id =
        common::create_rest_api_with(&common::apigateway_in(WITH_ROLE), &name, &["prod"]).await;
    let own_id = common::create_rest_api(&name, &["prod"]).await;
    assert_ne!(source_id, own_id);
    let proxy = common::proxy::Recorder::start(&common::localstack());
    let config = common::emulator_config(&tag, "")
        .replace(
            &format!("cloudwatch: {}", common::localstack()),
            &format!("cloudwatch: {}", proxy.url()),
        )
        .replace(
            &format!("      include: ['{tag}']\n"),
            &format!(
                "      include: ['{tag}']\n    source_accounts:\n      include_monitoring_account: false\n      accounts:\n        - account_id: \"{WITH_ROLE}\"\n          role_arn: arn:aws:iam::{WITH_ROLE}:role/apigateway-exporter-read\n"
            ),
        );
    let plan = common::check_config(&config);
    assert!(
        plan.contains(&format!(
            "source account {WITH_ROLE} (read through the monitoring account"
        )) && plan.contains("discovered with a role in it")
            && plan.contains(&source_id)
            && !plan.contains(&own_id),
        "{plan}"
    );
    let exporter = common::Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);
    let stage = |m: &Metrics| {
        m.find(
            "aws_apigateway_stage_info",
            &[
                ("account_id", WITH_ROLE),
                ("api_id", &source_id),
                ("stage", "prod"),
            ],
        )
        .len()
    };
    exporter.scrape_until(WAIT, |m| stage(m) == 1);
    let now = (common::now_secs() / 60) * 60;
    let dims = [("ApiName", name.as_str()), ("Stage", "prod")];
    common::put(&[
        common::Datum {
            metric: "Count",
            dims: &dims,
            at: now - 120,
            value: 7.0,
        },
        common::Datum {
            metric: "Count",
            dims: &dims,
            at: now - 60,
            value: 5.0,
        },
    ])
    .await;
    let labels = [
        ("account_id", WITH_ROLE),
        ("api_id", source_id.as_str()),
        ("api_name", name.as_str()),
        ("stage", "prod"),
    ];
    let m = exporter.scrape_until(WAIT, |m| {
        m.value("aws_apigateway_requests_total", &labels) == Some(12.0)
    });
    assert!(
        m.find("aws_apigateway_api_info", &[("api_id", &own_id)])
            .is_empty(),
        "the monitoring account's own APIs are left out"
    );
    assert_eq!(
        m.value(
            "aws_apigateway_exporter_source_account_up",
            &[("account_id", WITH_ROLE), ("discovery", "role")]
        ),
        Some(1.0)
    );
    // As CloudWatch received them: every query of every GetMetricData call names the source
    // account (CBOR: the key, then the 12 digits).
    let calls: Vec<_> = proxy
        .calls()
        .into_iter()
        .filter(|c| c.operation == "GetMetricData")
        .collect();
    assert!(!calls.is_empty());
    let count =
        |body: &[u8], needle: &[u8]| body.windows(needle.len()).filter(|w| *w == needle).count();
    for call in &calls {
        let queries = count(&call.body, b"MetricStat");
        assert!(queries > 0);
        assert_eq!(count(&call.body, b"AccountId"), queries);
        assert_eq!(count(&call.body, WITH_ROLE.as_bytes()), queries);
    }
}
