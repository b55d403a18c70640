//! Wiring: config → targets (AWS or demo) → poller and HTTP server, sharing one snapshot.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::clock::{Clock, OffsetClock, SystemClock};
use crate::config::SourceAccounts;
use crate::config::{AccessLogsMode, Config};
use crate::demo;
use crate::http::firehose::Receiver;
use crate::http::{self, AppState, ReloadRequest};
use crate::inventory::{
    ApiFilter, AwsDiscovery, AwsSources, Discovery, DiscoveryContext, LinkedAccounts,
    MonitoringDiscovery, Pace, Role, SourceSpec,
};
use crate::plan::AccessLogs;
use crate::poll::{PollSettings, Poller, Target};
use crate::render::Exposition;
use crate::selfmetrics::SelfMetrics;
use crate::snapshot::SharedSnapshot;
use crate::source::RoutedSource;
use crate::source::cloudwatch::CloudWatchSource;
use crate::source::delivered::{DeliveredSource, LogBuffer};
use crate::source::logs::AccessLogSource;
use crate::source::stream::{StreamBuffer, StreamSource};

/// The metric stream endpoint's state, created at start and kept across reloads.
#[derive(Clone)]
pub struct Stream {
    /// Holds the buffer the poll loop reads ([`Receiver::buffer`]).
    pub receiver: Arc<Receiver>,
}

/// Where the data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Aws,
    /// The built-in synthetic source, with its seed, and the instant its simulated clock
    /// starts at (`None`: now).
    Demo {
        seed: u64,
        start: Option<i64>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("invalid config: {0}")]
    Config(String),
    #[error("OTLP: {0}")]
    Otlp(String),
    #[error("the HTTP server stopped: {0}")]
    Server(String),
    /// A background task ended or panicked while it should run: the process must exit so
    /// that Kubernetes restarts it, instead of serving a dead loop's last values as healthy.
    #[error("the {task} stopped unexpectedly: {reason}; exiting so the exporter is restarted")]
    TaskDied { task: &'static str, reason: String },
}

impl AppError {
    /// The exit code: 2 for a config the exporter cannot run with, 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// Why a spawned task ended: its panic message, or that it returned.
fn ended(result: Result<(), tokio::task::JoinError>) -> String {
    match result {
        Ok(()) => "it returned".into(),
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            format!("it panicked: {message}")
        }
        Err(e) => format!("it was cancelled: {e}"),
    }
}

/// What Firehose delivers that targets read: a metric stream's minutes, access log lines.
#[derive(Clone, Copy)]
pub struct Pushed<'a> {
    pub stream: Option<&'a Arc<StreamBuffer>>,
    pub access_logs: Option<&'a Arc<LogBuffer>>,
    pub clock: &'a Arc<dyn Clock>,
}

/// One AWS target per (target entry, region), sharing the standard credential chain; with a
/// metric stream or access logs through Firehose, their queries are answered from what was
/// `pushed`. Their discovery shares `context`: one budget per account, and what each target
/// knew under the previous config.
pub async fn aws_targets(
    config: &Config,
    metrics: &SelfMetrics,
    pushed: Option<Pushed<'_>>,
    context: &DiscoveryContext,
) -> Result<Vec<Target>, AppError> {
    let mut targets = Vec::new();
    let mut keys = Vec::new();
    for t in &config.targets {
        let filter = ApiFilter::new(&t.apis).with_shard(config.shard);
        for region in &t.regions {
            let sdk = crate::sdk::sdk_config(region, t, &config.aws.endpoints).await;
            let clients = crate::sdk::clients(&sdk, &config.aws.endpoints);
            let source = Arc::new(RoutedSource {
                metrics: Arc::new(CloudWatchSource::new(
                    clients.cloudwatch.clone(),
                    metrics.clone(),
                    config.aws.max_requests_per_second,
                )),
                logs: Arc::new(AccessLogSource::new(
                    clients.logs.clone(),
                    config.access_logs.pattern(),
                    config.access_logs.statuses.clone(),
                    metrics.clone(),
                )),
                stream: pushed.and_then(|p| {
                    p.stream.map(|buffer| {
                        Arc::new(StreamSource {
                            buffer: Arc::clone(buffer),
                            clock: Arc::clone(p.clock),
                        }) as Arc<dyn crate::source::MetricSource>
                    })
                }),
                delivered: pushed.and_then(|p| p.access_logs).map(|buffer| {
                    Arc::new(DeliveredSource {
                        buffer: Arc::clone(buffer),
                        statuses: config.access_logs.statuses.clone(),
                    }) as Arc<dyn crate::source::MetricSource>
                }),
            });
            // The identity a reload matches targets by: the credentials and the region.
            let key = format!(
                "{}|{}|{region}",
                t.role_arn.as_deref().unwrap_or("default credentials"),
                t.external_id.as_deref().unwrap_or("")
            );
            let pace = Pace {
                region: region.clone(),
                rate: config.discovery.max_requests_per_second().get(),
                shard: config.shard.map_or((0, 1), |s| (s.index(), s.total())),
                full_refresh: config.discovery.full_refresh_interval(),
                budgets: Arc::clone(&context.budgets),
                known: context.known(&key),
            };
            keys.push(key.clone());
            let own = Arc::new(AwsDiscovery::new(
                clients.clone(),
                metrics.clone(),
                pace.clone(),
            ));
            let discovery: Arc<dyn Discovery> = match &t.source_accounts {
                None => own,
                Some(s) => Arc::new(monitoring_discovery(
                    s, own, &sdk, clients, pace, &key, region, config, metrics, context,
                )),
            };
            targets
                .push(Target::new(region.clone(), filter.clone(), discovery, source).with_key(key));
        }
    }
    context.retain(&keys);
    Ok(targets)
}

/// The discovery of a monitoring account (`source_accounts`): its own APIs unless left out,
/// and each source account's, with a role in it or from ListMetrics alone.
#[allow(clippy::too_many_arguments)]
fn monitoring_discovery(
    s: &SourceAccounts,
    own: Arc<AwsDiscovery>,
    sdk: &aws_config::SdkConfig,
    clients: crate::sdk::TargetClients,
    pace: Pace,
    key: &str,
    region: &str,
    config: &Config,
    metrics: &SelfMetrics,
    context: &DiscoveryContext,
) -> MonitoringDiscovery {
    let listed = s
        .accounts
        .iter()
        .map(|a| SourceSpec {
            account_id: a.account_id.to_string(),
            role: a.role_arn.as_ref().map(|arn| Role {
                arn: arn.clone(),
                external_id: a.external_id.clone(),
            }),
        })
        .collect();
    let linked = s.linked.then(|| LinkedAccounts {
        role_name: s.role_name.clone(),
        external_id: s.external_id.clone(),
    });
    let sources = AwsSources {
        config: sdk.clone(),
        endpoints: config.aws.endpoints.clone(),
        oam: crate::sdk::oam_client(sdk, &config.aws.endpoints),
        monitoring: clients,
        metrics: metrics.clone(),
        pace,
        key: key.to_string(),
        context: context.clone(),
    };
    MonitoringDiscovery::new(
        own,
        s.include_monitoring_account,
        listed,
        linked,
        Arc::new(sources),
        region,
        metrics.clone(),
    )
}

/// What `/metrics` serves: the self-metrics (`demo` marks synthetic data) and the snapshot
/// the poll loop publishes into `SharedSnapshot`.
pub fn exposition(
    demo: bool,
) -> Result<(Arc<Exposition>, Arc<SharedSnapshot>, SelfMetrics), prometheus::Error> {
    let registry = Registry::new();
    let shared = SharedSnapshot::new();
    let metrics = SelfMetrics::new(&registry, demo)?;
    let exposition = Arc::new(Exposition::new(registry, Arc::clone(&shared)));
    Ok((exposition, shared, metrics))
}

/// The poll settings of a config.
pub fn settings(config: &Config) -> PollSettings {
    PollSettings {
        poll: config.poll,
        refresh_interval: config.discovery.refresh_interval(),
        plan: crate::plan::PlanOptions {
            latency: config.latency.stats(),
            access_logs: match config.access_logs.mode {
                AccessLogsMode::Off => None,
                AccessLogsMode::MetricFilter => Some(AccessLogs::MetricFilter {
                    namespace: Arc::from(config.access_logs.namespace.as_str()),
                    metric: Arc::from(config.access_logs.metric_name.as_str()),
                }),
                AccessLogsMode::FilterLogEvents => Some(AccessLogs::LogEvents {
                    log_group: config.access_logs.log_group.as_deref().map(Arc::from),
                }),
                AccessLogsMode::Firehose => Some(AccessLogs::Delivered {
                    receiver: Arc::from(config.access_logs.receiver_name()),
                }),
            },
            lambda: config.backends.lambda,
            stream: config.stream.enabled.then_some(crate::plan::Streamed {
                percentiles: config.stream.percentiles,
            }),
        },
        tags_as_labels: config.tags_as_labels.clone(),
    }
}

/// The `poll.idle.interval` the cost comparison assumes when none is set.
const SUGGESTED_IDLE_INTERVAL: Duration = Duration::from_secs(600);

/// What `check-config` prints after validation: the inventory and plan of every target
/// (when AWS is reachable), queries, GetMetricData calls and estimated cost.
pub async fn describe_plan(config: &Config) -> String {
    let registry = Registry::new();
    let metrics = match SelfMetrics::new(&registry, false) {
        Ok(m) => m,
        Err(e) => return format!("cannot set up metrics: {e}\n"),
    };
    let targets = match aws_targets(config, &metrics, None, &DiscoveryContext::default()).await {
        Ok(t) => t,
        Err(e) => return format!("{e}\n"),
    };
    let mut poller = Poller::new(
        targets,
        settings(config),
        Arc::new(SystemClock),
        SharedSnapshot::new(),
        metrics.clone(),
    );
    let results = poller.refresh_all().await;
    let discovery_calls = crate::plan::DiscoveryCalls(metrics.discovery_calls());
    let mut out = String::new();
    let (mut inventories, mut plans) = (Vec::new(), Vec::new());
    for (target, result) in poller.targets().iter().zip(results) {
        if let Err(e) = result {
            out.push_str(&format!(
                "target region={}: AWS not reachable, plan unknown: {e}\n",
                target.region
            ));
        }
        if let Some(inv) = target.inventory() {
            inventories.push(inv.clone());
            plans.push(target.plan().clone());
        }
    }
    out.push_str(&crate::plan::describe(
        &inventories,
        &plans,
        config.poll.interval(),
        &settings(config).plan,
        config.cost.price_per_1000_metrics.get(),
    ));
    if !inventories.is_empty() {
        out.push_str(&crate::plan::discovery_cost(
            &discovery_calls,
            config.discovery.max_requests_per_second().get(),
            config.shard.map_or(1, |s| s.total()),
            config.discovery.refresh_interval(),
        ));
    }
    let idle_interval = config
        .poll
        .idle()
        .map_or(SUGGESTED_IDLE_INTERVAL, |i| i.interval.get());
    out.push_str(&crate::plan::comparison(
        &plans,
        config.poll.interval(),
        idle_interval,
        config.stream.enabled && config.stream.percentiles,
        config.cost.price_per_1000_metrics.get(),
    ));
    if let Some(idle) = config.poll.idle() {
        let (every, idle_every) = (config.poll.interval(), idle.interval.get());
        let (share, fleet) = crate::plan::idle_factor(every, idle_every);
        out.push_str(&format!(
            "idle stages (poll.idle): a stage without traffic for {} is read every {} instead of every {}: its API Gateway queries cost {:.1} % of the figures above while it stays idle (a fleet with {:.0} % of its stages idle pays {:.1} % of those figures); it is back to every {} at most {} after its traffic returns\n",
            humantime::format_duration(idle.after.get()),
            humantime::format_duration(idle_every),
            humantime::format_duration(every),
            share * 100.0,
            crate::plan::IDLE_SHARE * 100.0,
            fleet * 100.0,
            humantime::format_duration(every),
            humantime::format_duration(idle_every + every),
        ));
    }
    out
}

/// How long shutdown waits for the poll task to return. The loop abandons an in-flight cycle
/// as soon as it is told to stop (nothing half-read is published), so this only bounds a
/// task that does not answer.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The main listener's web front: `--web.config.file` and `--web.enable-lifecycle`.
#[derive(Clone, Default)]
pub struct Web {
    pub front: Option<Arc<crate::http::web::WebFront>>,
    pub lifecycle: bool,
}

/// Where the exporter's config comes from, so it can be read again.
#[derive(Debug, Clone)]
pub struct Source {
    pub mode: Mode,
    /// The config file; `None` when running on defaults (nothing to reload).
    pub path: Option<PathBuf>,
}

/// The targets and settings a config yields. The metric stream endpoint starts with the
/// exporter: a reload cannot start it or move it (the plan then polls), but it takes the
/// new access key and poll settings; its buffer, like the store, outlives reloads.
async fn build(
    config: &mut Config,
    mode: Mode,
    metrics: &SelfMetrics,
    clock: &Arc<dyn Clock>,
    stream: Option<&Stream>,
    discovery: &DiscoveryContext,
) -> Result<(Vec<Target>, PollSettings), AppError> {
    let receiver = stream.map(|s| &s.receiver);
    if config.stream.enabled
        && (mode != Mode::Aws || receiver.is_none_or(|r| !r.takes_metric_stream()))
    {
        warn!(
            "stream.enabled takes effect at start (and not with --demo): polling everything until then"
        );
        config.stream.enabled = false;
    }
    if config.access_logs.mode == AccessLogsMode::Firehose
        && mode == Mode::Aws
        && receiver.is_none_or(|r| r.access_logs().is_none())
    {
        warn!(
            "access_logs.mode firehose takes effect at start (the endpoint starts with the exporter): no access logs counted until then"
        );
        config.access_logs.mode = AccessLogsMode::Off;
    }
    if let Some(r) = receiver {
        let (retention, lookback) = (config.poll.stream_retention(), config.poll.lookback());
        r.buffer().set_window(retention, lookback);
        if let Some(logs) = r.access_logs() {
            logs.set_window(retention, lookback);
        }
        if let Some(key) = &config.stream.access_key {
            r.set_key(key);
        }
        if let Some(key) = &config.access_logs.access_key {
            r.set_access_logs_key(key);
        }
    }
    let targets = match mode {
        Mode::Aws => {
            let pushed = receiver.map(|r| Pushed {
                stream: r.takes_metric_stream().then(|| r.buffer()),
                access_logs: r.access_logs(),
                clock,
            });
            aws_targets(config, metrics, pushed, discovery).await?
        }
        Mode::Demo { seed, .. } => {
            demo_config(config);
            demo_targets(config, seed, Arc::clone(clock), metrics)
        }
    };
    Ok((targets, settings(config)))
}

/// What the demo turns on whatever the config says: it has synthetic access logs and Lambda
/// functions too, so every family of the contract shows.
pub fn demo_config(config: &mut Config) {
    config.access_logs.mode = AccessLogsMode::FilterLogEvents;
    config.backends.lambda = true;
}

/// The demo's one target: a synthetic monitoring account with two source accounts (one read
/// with a role, one without), filtered by the first target entry's API selection when the
/// config has one.
pub fn demo_targets(
    config: &Config,
    seed: u64,
    clock: Arc<dyn Clock>,
    metrics: &SelfMetrics,
) -> Vec<Target> {
    let selection = config
        .targets
        .first()
        .map(|t| t.apis.clone())
        .unwrap_or_default();
    let filter = ApiFilter::new(&selection).with_shard(config.shard);
    let discovery = MonitoringDiscovery::new(
        Arc::new(demo::DemoDiscovery),
        true,
        demo::source_specs(),
        None,
        Arc::new(demo::DemoSources),
        demo::REGION,
        metrics.clone(),
    );
    vec![Target::new(
        demo::REGION.to_string(),
        filter,
        Arc::new(discovery),
        Arc::new(demo::DemoSource::new(seed, clock, config.poll.period())),
    )]
}

/// Runs the exporter until `shutdown` resolves: the poll loop and the reloader in the
/// background, the HTTP server in the foreground. On shutdown, readiness goes false first,
/// then the server stops accepting and the poll loop abandons an in-flight cycle.
pub async fn run(
    mut config: Config,
    source: Source,
    listener: TcpListener,
    web: Web,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AppError> {
    let demo = matches!(source.mode, Mode::Demo { .. });
    let (exposition, shared, metrics) = exposition(demo)?;
    let clock: Arc<dyn Clock> = match source.mode {
        Mode::Demo {
            start: Some(start), ..
        } => Arc::new(OffsetClock::starting_at(start)),
        _ => Arc::new(SystemClock),
    };

    // The Firehose endpoint (metric stream, access logs): bound before anything runs, so a
    // taken port fails the start.
    let metric_key = config
        .stream
        .access_key
        .as_ref()
        .filter(|_| config.stream.enabled);
    let logs_key = config
        .access_logs
        .access_key
        .as_ref()
        .filter(|_| config.access_logs.mode == AccessLogsMode::Firehose);
    let stream = match source.mode {
        Mode::Aws if metric_key.is_some() || logs_key.is_some() => {
            let address = config.stream.listen_address;
            let listener = TcpListener::bind(address).await.map_err(|e| {
                AppError::Server(format!(
                    "cannot listen on stream.listen_address {address}: {e}"
                ))
            })?;
            let (retention, lookback) = (config.poll.stream_retention(), config.poll.lookback());
            let logs = logs_key.map(|key| (Arc::new(LogBuffer::new(retention, lookback)), key));
            let receiver = match (metric_key, logs) {
                (Some(key), logs) => {
                    let buffer = Arc::new(StreamBuffer::new(clock.now(), retention, lookback));
                    let r = Receiver::new(buffer, key, metrics.clone(), Arc::clone(&clock));
                    // Silence is measured from the start until the first delivery.
                    metrics.stream_last_delivery.set(clock.now() as f64);
                    match logs {
                        Some((buffer, key)) => r.with_access_logs(buffer, key),
                        None => r,
                    }
                }
                (None, Some((buffer, key))) => {
                    Receiver::access_logs_only(buffer, key, metrics.clone(), Arc::clone(&clock))
                }
                (None, None) => {
                    return Err(AppError::Config(
                        "the Firehose endpoint needs stream.access_key or access_logs.access_key"
                            .into(),
                    ));
                }
            };
            info!(
                %address,
                metric_stream = metric_key.is_some(),
                access_logs = logs_key.is_some(),
                "Firehose endpoint listening"
            );
            Some((
                Stream {
                    receiver: Arc::new(receiver),
                },
                listener,
            ))
        }
        _ => None,
    };
    let context = stream.as_ref().map(|(s, _)| s.clone());
    // Kept across reloads: each account's discovery budget, and what discovery knew.
    let discovery = Arc::new(DiscoveryContext::default());
    let (targets, poll_settings) = build(
        &mut config,
        source.mode,
        &metrics,
        &clock,
        context.as_ref(),
        &discovery,
    )
    .await?;
    // OTLP push: set up before anything runs, so that a setup error fails the start.
    let otlp = if config.otlp.enabled {
        let port = listener.local_addr().ok().map(|a| a.port());
        let exporter = crate::otlp::Exporter::new(
            &config.otlp,
            &crate::otlp::instance_id(port),
            Arc::clone(&shared),
            exposition.registry().clone(),
            metrics.clone(),
        )
        .map_err(|e| AppError::Otlp(e.to_string()))?;
        Some(exporter)
    } else {
        None
    };
    info!(targets = targets.len(), demo, "starting poll loop");
    let poller = Poller::new(
        targets,
        poll_settings,
        Arc::clone(&clock),
        Arc::clone(&shared),
        metrics.clone(),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (apply_tx, apply_rx) = mpsc::channel::<(Vec<Target>, PollSettings)>(1);
    let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let mut poll_task = tokio::spawn(poller.run(stopped(stop_rx.clone()), apply_rx));
    let mut otlp_task = otlp.map(|exporter| tokio::spawn(exporter.run(stopped(stop_rx.clone()))));
    let reload_task = tokio::spawn(reloader(
        source.clone(),
        metrics.clone(),
        clock,
        context,
        discovery,
        reload_rx,
        apply_tx,
    ));
    let signal_task = tokio::spawn(reload_on_sighup(reload_tx.clone()));
    metrics.config_reload_ok.set(1.0);

    let state = Arc::new(AppState {
        exposition,
        shared: Arc::clone(&shared),
        demo,
        reload: Some(reload_tx),
        lifecycle: web.lifecycle,
        web: web.front,
    });
    let web = http::serve(listener, state, stopped(stop_rx.clone()));
    let firehose = async {
        match stream {
            Some((s, listener)) => {
                crate::http::firehose::serve(listener, s.receiver, stopped(stop_rx)).await;
            }
            None => std::future::pending().await,
        }
    };
    // Either server returning before shutdown is an error (`supervise`).
    let server = async {
        tokio::select! {
            () = web => {}
            () = firehose => {}
        }
    };
    tokio::pin!(server);
    let died = supervise(shutdown, &mut server, &mut poll_task, otlp_task.as_mut()).await;
    shared.set_ready(false);
    let _ = stop_tx.send(true);
    signal_task.abort();
    reload_task.abort();
    if let Some(e) = died {
        poll_task.abort();
        if let Some(task) = &otlp_task {
            task.abort();
        }
        return Err(e);
    }
    info!("shutting down");
    if tokio::time::timeout(SHUTDOWN_GRACE, poll_task)
        .await
        .is_err()
    {
        warn!("poll cycle did not stop within {SHUTDOWN_GRACE:?}; abandoned");
    }
    // The exporter flushed on the same stop signal, concurrently with the wait above.
    if let Some(task) = otlp_task
        && tokio::time::timeout(crate::otlp::SHUTDOWN_GRACE, task)
            .await
            .is_err()
    {
        warn!(
            "final OTLP export did not finish within {:?}; abandoned",
            crate::otlp::SHUTDOWN_GRACE
        );
    }
    Ok(())
}

/// Waits for `shutdown` while the server, the poll loop and the OTLP push (if any) all run.
/// One that ends first, or panics, is an error: the caller exits non-zero so that
/// Kubernetes restarts the exporter instead of it serving a dead loop's last values.
/// `None` on a normal shutdown.
pub async fn supervise(
    shutdown: impl std::future::Future<Output = ()>,
    server: impl std::future::Future<Output = ()>,
    poll_task: &mut tokio::task::JoinHandle<()>,
    otlp_task: Option<&mut tokio::task::JoinHandle<()>>,
) -> Option<AppError> {
    let otlp_ended = async {
        match otlp_task {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown => None,
        () = server => Some(AppError::Server("it returned".into())),
        result = poll_task => Some(AppError::TaskDied { task: "poll loop", reason: ended(result) }),
        result = otlp_ended => Some(AppError::TaskDied { task: "OTLP push", reason: ended(result) }),
    }
}

/// Serves reload requests one at a time: read and validate the file, build the new targets,
/// hand them to the poll loop. An invalid file changes nothing.
async fn reloader(
    source: Source,
    metrics: SelfMetrics,
    clock: Arc<dyn Clock>,
    stream: Option<Stream>,
    discovery: Arc<DiscoveryContext>,
    mut requests: mpsc::Receiver<ReloadRequest>,
    apply: mpsc::Sender<(Vec<Target>, PollSettings)>,
) {
    while let Some(request) = requests.recv().await {
        let result = match reload(&source, &metrics, &clock, stream.as_ref(), &discovery).await {
            Ok(built) => match apply.send(built).await {
                Ok(()) => {
                    metrics.config_reload_ok.set(1.0);
                    metrics.config_reload_time.set(clock.now() as f64);
                    info!("config reloaded");
                    Ok(())
                }
                Err(_) => Err("the poll loop has stopped".to_string()),
            },
            Err(e) => {
                metrics.config_reload_ok.set(0.0);
                error!(error = %e, "config reload rejected; the previous config keeps running");
                Err(e)
            }
        };
        if let Some(respond) = request.respond {
            let _ = respond.send(result);
        }
    }
}

async fn reload(
    source: &Source,
    metrics: &SelfMetrics,
    clock: &Arc<dyn Clock>,
    stream: Option<&Stream>,
    discovery: &DiscoveryContext,
) -> Result<(Vec<Target>, PollSettings), String> {
    let Some(path) = &source.path else {
        return Err("no --config.file to reload: the exporter runs on built-in defaults".into());
    };
    let mut config = Config::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    build(&mut config, source.mode, metrics, clock, stream, discovery)
        .await
        .map_err(|e| e.to_string())
}

/// Turns SIGHUP into reload requests (Unix only).
async fn reload_on_sighup(requests: mpsc::Sender<ReloadRequest>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            warn!("cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        };
        while hangups.recv().await.is_some() {
            info!("SIGHUP: reloading the config");
            if requests
                .send(ReloadRequest { respond: None })
                .await
                .is_err()
            {
                return;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = requests;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_returns_is_an_error_with_exit_code_1() {
        // A panicking poll loop.
        let mut poll = tokio::spawn(async { panic!("boom in a cycle") });
        let died = supervise(
            std::future::pending(),
            std::future::pending(),
            &mut poll,
            None,
        )
        .await
        .expect("a panicking poll loop is reported");
        let text = died.to_string();
        assert!(
            text.contains("poll loop") && text.contains("boom in a cycle"),
            "{text}"
        );
        assert_eq!(died.exit_code(), 1);

        // An OTLP push that returned while the poll loop runs on.
        let mut poll = tokio::spawn(std::future::pending::<()>());
        let mut otlp = tokio::spawn(async {});
        let died = supervise(
            std::future::pending(),
            std::future::pending(),
            &mut poll,
            Some(&mut otlp),
        )
        .await
        .expect("a finished OTLP task is reported");
        assert!(died.to_string().contains("OTLP push"), "{died}");

        // A server that stopped.
        let died = supervise(std::future::pending(), async {}, &mut poll, None).await;
        assert!(matches!(died, Some(AppError::Server(_))));

        // A normal shutdown is not an error.
        assert!(
            supervise(async {}, std::future::pending(), &mut poll, None)
                .await
                .is_none()
        );
        poll.abort();
    }
}
