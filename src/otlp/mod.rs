//! OTLP push: every `otlp.interval`, the latest published snapshot and the self-metrics go
//! to an OpenTelemetry collector over gRPC or HTTP/protobuf (`docs/otlp.md`).
//!
//! The exporter is its own task. It only reads the [`SharedSnapshot`] (an `Arc` clone), so a
//! collector that is down or slow never holds up the poll loop or `/metrics`; every export
//! is bounded by the OTLP timeout, a failure is counted in
//! `aws_apigateway_exporter_otlp_exports_total{result="error"}` and logged with backoff,
//! and the next interval simply sends the current cumulative state again (nothing is
//! queued, nothing is lost but resolution). On shutdown it sends one last export.
//!
//! - [`settings`]: config + `OTEL_*` environment → effective settings.
//! - [`convert`]: snapshot and self-metrics → `ExportMetricsServiceRequest`, with the start
//!   times of cumulative series and the markers of series that left.
//! - [`transport`]: gRPC (tonic) and HTTP/protobuf over one hyper + rustls client.

pub mod convert;
pub mod settings;
pub mod transport;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::Registry;
use tracing::{debug, info, warn};

use crate::config::{OtlpConfig, OtlpProtocol};
use crate::selfmetrics::SelfMetrics;
use crate::snapshot::SharedSnapshot;

pub use convert::Converter;
pub use settings::{Settings, redact_url};
pub use transport::{Accepted, ExportError, SetupError, Transport};

/// The longest the shutdown export may take.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown waits for the exporter task (its final export included).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(6);

/// A failing collector is logged at warn on the 1st, 2nd, 4th, 8th, … consecutive failure,
/// and at least this often.
const WARN_AT_LEAST_EVERY: Duration = Duration::from_secs(3600);

/// How often the exporter checks, before its first export, whether the first snapshot
/// has been published.
const READY_POLL: Duration = Duration::from_millis(200);

/// The OTLP exporter task.
pub struct Exporter {
    settings: Settings,
    transport: Transport,
    converter: Converter,
    shared: Arc<SharedSnapshot>,
    /// The self-metrics, pushed with the snapshot.
    registry: Registry,
    metrics: SelfMetrics,
    failures: Backoff,
    rejections: Backoff,
}

impl Exporter {
    /// Resolves `config` against the process environment (logging what it ignores), and
    /// sets up the transport. `instance` is the default `service.instance.id`.
    pub fn new(
        config: &OtlpConfig,
        instance: &str,
        shared: Arc<SharedSnapshot>,
        registry: Registry,
        metrics: SelfMetrics,
    ) -> Result<Exporter, SetupError> {
        let resolved = settings::resolve(config, instance, |name| std::env::var(name).ok());
        for warning in &resolved.warnings {
            warn!("OTLP: {warning}");
        }
        let settings = resolved.settings;
        let transport = Transport::new(&settings)?;
        for result in ["success", "error"] {
            metrics.otlp_exports.with_label_values(&[result]);
        }
        info!(
            endpoint = %redact_url(&settings.endpoint),
            protocol = match settings.protocol {
                OtlpProtocol::Grpc => "grpc",
                OtlpProtocol::Http => "http/protobuf",
            },
            interval = ?settings.interval,
            timeout = ?settings.timeout,
            headers = ?settings.headers.keys().collect::<Vec<_>>(),
            "OTLP push enabled"
        );
        Ok(Exporter {
            converter: Converter::new(&settings.resource, now_nanos()),
            settings,
            transport,
            shared,
            registry,
            metrics,
            failures: Backoff::default(),
            rejections: Backoff::default(),
        })
    }

    /// Exports every interval until `stop` resolves, then once more. The first export
    /// goes out as soon as the first snapshot is published (or after one interval).
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let interval = self.settings.interval;
        let shared = Arc::clone(&self.shared);
        let first = async move {
            let deadline = Instant::now() + interval;
            while !shared.is_ready() && Instant::now() < deadline {
                tokio::time::sleep(READY_POLL).await;
            }
        };
        let stopped_early = tokio::select! {
            _ = &mut stop => true,
            _ = first => false,
        };
        if !stopped_early {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                let timeout = self.settings.timeout;
                tokio::select! {
                    _ = &mut stop => break,
                    _ = self.export(timeout, false) => {}
                }
                tokio::select! {
                    _ = &mut stop => break,
                    _ = ticker.tick() => {}
                }
            }
        }
        info!("OTLP: final export before shutdown");
        self.export(self.settings.timeout.min(FLUSH_TIMEOUT), true)
            .await;
    }

    /// One export of the current state; counted and logged.
    async fn export(&mut self, timeout: Duration, last: bool) {
        // The collection time is taken before the snapshot is read: a point stamped t shows
        // the snapshot that was current at t, or a later one.
        let now = now_nanos();
        let snapshot = self.shared.load();
        let request = self
            .converter
            .build(&snapshot, &self.registry.gather(), now);
        drop(snapshot);
        match self.transport.export(request, timeout).await {
            Ok(accepted) => {
                self.metrics
                    .otlp_exports
                    .with_label_values(&["success"])
                    .inc();
                self.converter.delivered();
                let failed = self.failures.reset();
                if failed > 0 {
                    info!(failed_attempts = failed, "OTLP export succeeded again");
                }
                if accepted.rejected > 0 {
                    if self.rejections.failed(Instant::now()).is_some() {
                        warn!(
                            rejected_data_points = accepted.rejected,
                            message = %accepted.message,
                            "OTLP collector rejected part of an export (this warning backs off)"
                        );
                    }
                } else {
                    self.rejections.reset();
                    if !accepted.message.is_empty() {
                        debug!(message = %accepted.message, "OTLP collector message");
                    }
                }
            }
            Err(e) => {
                self.metrics
                    .otlp_exports
                    .with_label_values(&["error"])
                    .inc();
                let endpoint = redact_url(&self.settings.endpoint);
                match self.failures.failed(Instant::now()) {
                    _ if last => warn!(%endpoint, error = %e, "OTLP final export failed"),
                    Some(n) => warn!(
                        %endpoint,
                        error = %e,
                        consecutive_failures = n,
                        "OTLP export failed; retrying every interval (this warning backs off)"
                    ),
                    None => debug!(%endpoint, error = %e, "OTLP export failed"),
                }
            }
        }
    }
}

/// Which consecutive failures deserve a warning: the 1st, 2nd, 4th, 8th, …, and at least
/// one every [`WARN_AT_LEAST_EVERY`].
#[derive(Debug, Default)]
struct Backoff {
    failures: u64,
    next: u64,
    warned: Option<Instant>,
}

impl Backoff {
    /// Records a failure; `Some(consecutive failures)` when it should be logged at warn.
    fn failed(&mut self, now: Instant) -> Option<u64> {
        self.failures += 1;
        let overdue = self
            .warned
            .is_some_and(|w| now.duration_since(w) >= WARN_AT_LEAST_EVERY);
        if self.failures >= self.next || overdue {
            self.next = self.failures * 2;
            self.warned = Some(now);
            Some(self.failures)
        } else {
            None
        }
    }

    /// Records a success; the failures before it.
    fn reset(&mut self) -> u64 {
        std::mem::take(self).failures
    }
}

/// The default `service.instance.id`: `<hostname>:<port>` like Prometheus' `instance`
/// label, or a random id when the host name is unknown.
pub fn instance_id(port: Option<u16>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    match (host, port) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host,
        (None, _) => format!("{:032x}", rand::random::<u128>()),
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_warned_with_exponential_backoff_and_at_least_hourly() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        let warned: Vec<u64> = (0..20).filter_map(|_| b.failed(t0)).collect();
        assert_eq!(warned, [1, 2, 4, 8, 16]);
        assert_eq!(b.failed(t0 + WARN_AT_LEAST_EVERY), Some(21));
        assert_eq!(b.reset(), 21);
        assert_eq!(b.failed(t0), Some(1));
    }

    #[test]
    fn instance_id_is_host_and_port() {
        let id = instance_id(Some(9743));
        assert!(id.ends_with(":9743") || id.len() == 32, "{id}");
    }
}
