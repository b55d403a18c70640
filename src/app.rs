//! Wiring: config → targets (AWS or demo) → poller and HTTP server, sharing one snapshot.

use std::sync::Arc;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::config::Config;
use crate::demo;
use crate::http::{self, AppState};
use crate::inventory::ApiFilter;
use crate::inventory::aws::AwsDiscovery;
use crate::poll::{Clock, PollSettings, Poller, SystemClock, Target};
use crate::render::SnapshotCollector;
use crate::selfmetrics::SelfMetrics;
use crate::snapshot::SharedSnapshot;
use crate::source::cloudwatch::CloudWatchSource;

/// Where the data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Aws,
    /// The built-in synthetic source, with its seed.
    Demo {
        seed: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("invalid config: {0}")]
    Config(String),
}

/// One AWS target per (target entry, region), sharing the standard credential chain.
pub async fn aws_targets(config: &Config, metrics: &SelfMetrics) -> Result<Vec<Target>, AppError> {
    let mut targets = Vec::new();
    for (i, t) in config.targets.iter().enumerate() {
        let filter = ApiFilter::new(&t.apis).map_err(|(field, j, e)| {
            AppError::Config(format!("targets[{i}].apis.{field}[{j}]: {e}"))
        })?;
        for region in &t.regions {
            let sdk = crate::aws::sdk_config(region, t, &config.aws.endpoints).await;
            let clients = crate::aws::clients(&sdk, &config.aws.endpoints);
            targets.push(Target::new(
                region.clone(),
                filter.clone(),
                Arc::new(AwsDiscovery::new(clients.clone(), metrics.clone())),
                Arc::new(CloudWatchSource::new(clients.cloudwatch, metrics.clone())),
            ));
        }
    }
    Ok(targets)
}

/// The poll settings of a config.
pub fn settings(config: &Config) -> PollSettings {
    PollSettings {
        poll: config.poll.clone(),
        refresh_interval: config.discovery.refresh_interval,
        plan: crate::plan::PlanOptions {
            latency: config.latency.stats(),
            access_logs: (config.access_logs.mode == crate::config::AccessLogsMode::MetricFilter)
                .then(|| {
                    (
                        Arc::from(config.access_logs.namespace.as_str()),
                        Arc::from(config.access_logs.metric_name.as_str()),
                    )
                }),
        },
        tags_as_labels: config.tags_as_labels.clone(),
    }
}

/// What `check-config` prints after validation: the inventory and plan of every target
/// (when AWS is reachable), queries, GetMetricData calls and estimated cost.
pub async fn describe_plan(config: &Config) -> String {
    let registry = Registry::new();
    let metrics = match SelfMetrics::new(&registry, false) {
        Ok(m) => m,
        Err(e) => return format!("cannot set up metrics: {e}\n"),
    };
    let targets = match aws_targets(config, &metrics).await {
        Ok(t) => t,
        Err(e) => return format!("{e}\n"),
    };
    let mut poller = Poller::new(
        targets,
        settings(config),
        Arc::new(SystemClock),
        SharedSnapshot::new(),
        metrics,
    );
    let results = poller.refresh_all().await;
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
        config.poll.interval,
    ));
    out
}

/// Runs the exporter until `shutdown` resolves: the poll loop in the background, the HTTP
/// server in the foreground.
pub async fn run(
    mut config: Config,
    mode: Mode,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AppError> {
    let registry = Registry::new();
    let shared = SharedSnapshot::new();
    let metrics = SelfMetrics::new(&registry, matches!(mode, Mode::Demo { .. }))?;
    registry.register(Box::new(SnapshotCollector::new(Arc::clone(&shared))?))?;

    let (targets, clock): (Vec<Target>, Arc<dyn Clock>) = match mode {
        Mode::Aws => (aws_targets(&config, &metrics).await?, Arc::new(SystemClock)),
        Mode::Demo { seed } => {
            // The demo has synthetic access logs too, so every family of the contract shows.
            config.access_logs.mode = crate::config::AccessLogsMode::MetricFilter;
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            (demo::targets(&config, seed, Arc::clone(&clock)), clock)
        }
    };
    info!(
        targets = targets.len(),
        demo = matches!(mode, Mode::Demo { .. }),
        "starting poll loop"
    );
    let poller = Poller::new(
        targets,
        settings(&config),
        clock,
        Arc::clone(&shared),
        metrics,
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let poll_task = tokio::spawn(poller.run(stopped(stop_rx.clone())));
    let state = Arc::new(AppState {
        registry,
        shared,
        demo: matches!(mode, Mode::Demo { .. }),
    });
    let server = http::serve(listener, state, stopped(stop_rx));
    tokio::pin!(server);
    tokio::select! {
        _ = shutdown => {}
        _ = &mut server => {}
    }
    info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = poll_task.await;
    Ok(())
}
