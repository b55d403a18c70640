//! The `apigateway-exporter` binary: parse flags, set up logging, hand over to [`app::run`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use apigateway_exporter::app::{self, Mode};
use apigateway_exporter::config::{Config, Interval, TargetConfig};
use clap::{Parser, Subcommand, ValueEnum};
use tracing::{error, info};

#[derive(Parser, Debug)]
#[command(
    name = "apigateway-exporter",
    version,
    about = "Prometheus exporter for Amazon API Gateway metrics in CloudWatch"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Path to the YAML config file.
    #[arg(long = "config.file", value_name = "PATH", global = true)]
    config_file: Option<PathBuf>,
    /// Address to serve /metrics, /-/healthy and /-/ready on.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = "0.0.0.0:9743"
    )]
    listen_address: String,
    /// TLS and basic auth for every path of --web.listen-address, in the Prometheus
    /// exporter-toolkit's web config format; read again when it or its files change.
    #[arg(long = "web.config.file", value_name = "PATH", global = true)]
    web_config_file: Option<PathBuf>,
    /// Let `POST /-/reload` reload the config (without it: 403; SIGHUP always reloads).
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,
    /// Run on the built-in synthetic source: no AWS account needed. The data is not real.
    #[arg(long)]
    demo: bool,
    /// Seed of the demo's synthetic traffic.
    #[arg(long = "demo.seed", value_name = "N", default_value_t = 1)]
    demo_seed: u64,
    /// Start the demo's simulated clock at this instant (RFC 3339, e.g. 2026-01-01T16:06:00Z)
    /// instead of now; it then runs in real time. Shows a chosen point of the incident schedule.
    #[arg(long = "demo.start-time", value_name = "TIME", value_parser = parse_start_time)]
    demo_start_time: Option<i64>,
    /// Log level: error, warn, info, debug or trace (or a tracing filter directive).
    #[arg(
        long = "log.level",
        value_name = "LEVEL",
        default_value = "info",
        global = true
    )]
    log_level: String,
    /// Log format.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the config file and print the plan: APIs, stages, queries, calls and cost.
    CheckConfig,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_start_time(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{e}; write it like 2026-01-01T16:06:00Z"))?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| "must be after 1970".to_string())
}

/// Exit code for an invalid config or command line (as clap uses for bad flags).
const EXIT_INVALID: u8 = 2;

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("--log.level: invalid level {:?}", cli.log_level))?;
    // Colour only for a person at a terminal: `kubectl logs`, Loki and files get plain text,
    // and NO_COLOR (https://no-color.org) turns it off everywhere.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

/// The config to run with: the file, or without one a single target in the SDK's default
/// region (AWS_REGION, the profile), or for the demo all defaults.
async fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    if let Some(path) = &cli.config_file {
        return Ok(Config::load(path)?);
    }
    let mut config = Config::default();
    if cli.demo {
        // Without a file, the demo polls often so a newcomer sees counters move quickly.
        const DEMO_INTERVAL: Interval = Interval::from_secs(15);
        config.poll = config.poll.with_interval(DEMO_INTERVAL);
    } else {
        let region = aws_config::default_provider::region::DefaultRegionChain::builder()
            .build()
            .region()
            .await
            .context("no --config.file given and no AWS region configured (set AWS_REGION or pass --config.file; --demo runs without AWS)")?;
        config.targets.push(TargetConfig {
            regions: vec![region.to_string()],
            role_arn: None,
            external_id: None,
            apis: Default::default(),
            source_accounts: None,
        });
        config.validate()?;
    }
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The web front of `--web.config.file`, if given; the error names the key or file.
fn web_front(
    cli: &Cli,
) -> Result<Option<std::sync::Arc<apigateway_exporter::http::web::WebFront>>, String> {
    cli.web_config_file
        .as_deref()
        .map(|path| {
            apigateway_exporter::http::web::WebFront::load(path)
                .map(std::sync::Arc::new)
                .map_err(|e| format!("--web.config.file {e}"))
        })
        .transpose()
}

async fn check_config(cli: &Cli) -> ExitCode {
    if let Err(e) = web_front(cli) {
        eprintln!("{e}");
        return ExitCode::from(EXIT_INVALID);
    }
    let Some(path) = &cli.config_file else {
        if cli.web_config_file.is_some() {
            println!("web config: valid");
            return ExitCode::SUCCESS;
        }
        eprintln!("check-config: --config.file is required");
        return ExitCode::from(EXIT_INVALID);
    };
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    // Written, not printed: a closed pipe (`check-config | head`) must not panic.
    let plan = app::describe_plan(&config).await;
    let _ = write!(
        std::io::stdout().lock(),
        "{}: valid\n{plan}",
        path.display()
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    tune_malloc();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// glibc allocator settings the process runs with, each unless the environment already sets
/// it (a user's own value wins), measured in docs/performance.md:
/// - one arena: glibc gives threads that allocate at once arenas of their own, and each keeps
///   what was freed in it (260 MB of RSS at 100k series with the default arenas, 182 MB with
///   one, for no measurable CPU or latency);
/// - a fixed mmap threshold of 256 KiB: by default glibc raises the threshold up to 32 MiB
///   each time a large block is freed, after which the multi-megabyte buffers of a cycle (the
///   plan, the snapshot's text, response bodies) are carved from the heap and their holes keep
///   it large; fixed, they are mapped and returned whole (115 → 75 MB at 100k series).
///
/// glibc reads these only before its allocator starts, so the process re-executes itself
/// once with them added (same pid, arguments and environment). If the exec fails, it carries
/// on with glibc's defaults.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ENV: [(&str, &str); 2] = [
    ("MALLOC_ARENA_MAX", "1"),
    ("MALLOC_MMAP_THRESHOLD_", "262144"),
];

fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let missing: Vec<_> = MALLOC_ENV
            .iter()
            .filter(|(name, _)| std::env::var_os(name).is_none())
            .collect();
        if missing.is_empty() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        command.args(args);
        for (name, value) in &missing {
            command.env(name, value);
        }
        let err = command.exec();
        eprintln!(
            "cannot re-execute with glibc's allocator settings ({err}); running with its defaults"
        );
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli) {
        eprintln!("{e:#}");
        return ExitCode::from(EXIT_INVALID);
    }
    if matches!(cli.command, Some(Command::CheckConfig)) {
        return check_config(&cli).await;
    }
    let config = match load_config(&cli).await {
        Ok(c) => c,
        Err(e) => {
            error!("{e:#}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let web = match web_front(&cli) {
        Ok(front) => app::Web {
            front,
            lifecycle: cli.enable_lifecycle,
        },
        Err(e) => {
            error!("{e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&cli.listen_address).await {
        Ok(l) => l,
        Err(e) => {
            error!(
                "--web.listen-address {}: cannot listen: {e}",
                cli.listen_address
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mode = if cli.demo {
        Mode::Demo {
            seed: cli.demo_seed,
            start: cli.demo_start_time,
        }
    } else {
        Mode::Aws
    };
    let source = app::Source {
        mode,
        path: cli.config_file.clone(),
    };
    let tls = web
        .front
        .as_ref()
        .is_some_and(|f| f.current().tls.is_some());
    info!(address = %addr, version = env!("CARGO_PKG_VERSION"), demo = cli.demo, tls, "listening");
    match app::run(config, source, listener, web, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}
