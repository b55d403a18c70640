//! The exporter's own metrics (`aws_apigateway_exporter_*`): what it costs, whether it works.
//! Ordinary `prometheus` metrics in the same registry as the snapshot collector.

use crate::model::CallResult;
use prometheus::{Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, Opts, Registry};

const NS: &str = "aws_apigateway_exporter";

/// Every discovery, identity and logs call the exporter makes, by service.
const AWS_OPERATIONS: [(&str, &str); 11] = [
    ("apigateway", "GetRestApis"),
    ("apigateway", "GetUsagePlans"),
    ("apigateway", "GetStages"),
    ("apigateway", "GetResources"),
    ("apigateway", "GetAccount"),
    ("apigatewayv2", "GetApis"),
    ("apigatewayv2", "GetStages"),
    ("apigatewayv2", "GetRoutes"),
    ("apigatewayv2", "GetIntegrations"),
    ("sts", "GetCallerIdentity"),
    ("logs", "FilterLogEvents"),
];

/// Handles to every self-metric. Cheap to clone (the metrics are reference counted).
#[derive(Clone, Debug)]
pub struct SelfMetrics {
    pub build_info: GaugeVec,
    pub up: Gauge,
    pub cycle_duration: Histogram,
    pub last_success: Gauge,
    pub data_age: Gauge,
    pub cloudwatch_requests: CounterVec,
    pub metrics_requested: Counter,
    pub aws_requests: CounterVec,
    pub series: Gauge,
    pub apis: GaugeVec,
    pub target_up: GaugeVec,
    pub rest_name_conflicts: GaugeVec,
    pub periods_lost: CounterVec,
    pub counter_decreases: Counter,
    pub query_errors: CounterVec,
    pub cycles_skipped: Counter,
    pub config_reload_ok: Gauge,
    pub config_reload_time: Gauge,
    pub otlp_exports: CounterVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NS)
}

impl SelfMetrics {
    /// Creates and registers every self-metric. `demo` marks synthetic data in `build_info`.
    pub fn new(registry: &Registry, demo: bool) -> prometheus::Result<SelfMetrics> {
        let m = SelfMetrics {
            build_info: GaugeVec::new(
                opts(
                    "build_info",
                    "Always 1; labels say the version and revision, and demo=\"true\" when the data is synthetic.",
                ),
                &["version", "revision", "demo"],
            )?,
            up: Gauge::with_opts(opts(
                "up",
                "1 when the last poll cycle succeeded completely (every target, every batch), else 0.",
            ))?,
            cycle_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "cycle_duration_seconds",
                    "Wall-clock duration of poll cycles.",
                )
                .namespace(NS)
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                ]),
            )?,
            last_success: Gauge::with_opts(opts(
                "last_success_timestamp_seconds",
                "Unix time of the end of the last poll cycle that succeeded completely.",
            ))?,
            data_age: Gauge::with_opts(opts(
                "data_age_seconds",
                "Age of the newest CloudWatch period ingested, measured from its end, at the last cycle.",
            ))?,
            cloudwatch_requests: CounterVec::new(
                opts(
                    "cloudwatch_requests_total",
                    "CloudWatch API calls, by operation and result.",
                ),
                &["operation", "result"],
            )?,
            metrics_requested: Counter::with_opts(opts(
                "cloudwatch_metrics_requested_total",
                "Metrics requested from GetMetricData, counted the way AWS bills it (one per query of every call AWS answered).",
            ))?,
            aws_requests: CounterVec::new(
                opts(
                    "aws_requests_total",
                    "Discovery and identity API calls (apigateway, apigatewayv2, sts), by service, operation and result.",
                ),
                &["service", "operation", "result"],
            )?,
            series: Gauge::with_opts(opts(
                "series",
                "API Gateway series currently exported (samples in the snapshot).",
            ))?,
            apis: GaugeVec::new(
                opts("apis", "APIs in the inventory, by type."),
                &["api_type"],
            )?,
            target_up: GaugeVec::new(
                opts(
                    "target_up",
                    "1 when the last cycle of this account and region succeeded completely, else 0.",
                ),
                &["account_id", "region"],
            )?,
            rest_name_conflicts: GaugeVec::new(
                opts(
                    "rest_name_conflicts",
                    "REST APIs some of whose series are not exported because another REST API in the region has the same CloudWatch ApiName.",
                ),
                &["account_id", "region"],
            )?,
            periods_lost: CounterVec::new(
                opts(
                    "periods_lost_total",
                    "CloudWatch periods that could not be read before they passed poll.max_backfill (an outage longer than that): the counters of this account and region miss what happened in them.",
                ),
                &["account_id", "region"],
            )?,
            counter_decreases: Counter::with_opts(opts(
                "period_value_decreases_total",
                "Times CloudWatch returned a smaller value for an already-counted period; ignored, counters never go down.",
            ))?,
            query_errors: CounterVec::new(
                opts(
                    "query_errors_total",
                    "GetMetricData queries whose result was not usable, by CloudWatch status code.",
                ),
                &["status"],
            )?,
            cycles_skipped: Counter::with_opts(opts(
                "cycles_skipped_total",
                "Poll ticks skipped because the previous cycle was still running (cycles never overlap).",
            ))?,
            config_reload_ok: Gauge::with_opts(opts(
                "config_last_reload_successful",
                "1 when the last config reload (SIGHUP or POST /-/reload) succeeded, 0 when it was rejected.",
            ))?,
            config_reload_time: Gauge::with_opts(opts(
                "config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful config reload (0 if none since start).",
            ))?,
            otlp_exports: CounterVec::new(
                opts(
                    "otlp_exports_total",
                    "OTLP metric exports, by result (success or error).",
                ),
                &["result"],
            )?,
        };
        registry.register(Box::new(m.build_info.clone()))?;
        registry.register(Box::new(m.otlp_exports.clone()))?;
        registry.register(Box::new(m.cycles_skipped.clone()))?;
        registry.register(Box::new(m.config_reload_ok.clone()))?;
        registry.register(Box::new(m.config_reload_time.clone()))?;
        registry.register(Box::new(m.up.clone()))?;
        registry.register(Box::new(m.cycle_duration.clone()))?;
        registry.register(Box::new(m.last_success.clone()))?;
        registry.register(Box::new(m.data_age.clone()))?;
        registry.register(Box::new(m.cloudwatch_requests.clone()))?;
        registry.register(Box::new(m.metrics_requested.clone()))?;
        registry.register(Box::new(m.aws_requests.clone()))?;
        registry.register(Box::new(m.series.clone()))?;
        registry.register(Box::new(m.apis.clone()))?;
        registry.register(Box::new(m.target_up.clone()))?;
        registry.register(Box::new(m.rest_name_conflicts.clone()))?;
        registry.register(Box::new(m.periods_lost.clone()))?;
        registry.register(Box::new(m.counter_decreases.clone()))?;
        registry.register(Box::new(m.query_errors.clone()))?;

        m.build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                env!("APIGW_EXPORTER_REVISION"),
                if demo { "true" } else { "false" },
            ])
            .set(1.0);
        // Zero-initialise every series that can exist, so dashboards and alerts see 0 rather
        // than nothing: absence must never read as "no errors".
        for result in CallResult::ALL {
            for operation in ["GetMetricData", "ListMetrics"] {
                m.cloudwatch_requests
                    .with_label_values(&[operation, result.as_str()]);
            }
            for (service, operation) in AWS_OPERATIONS {
                m.aws_requests
                    .with_label_values(&[service, operation, result.as_str()]);
            }
        }
        for status in ["InternalError", "Forbidden"] {
            m.query_errors.with_label_values(&[status]);
        }
        for t in crate::model::ApiType::ALL {
            m.apis.with_label_values(&[t.as_str()]);
        }
        Ok(m)
    }

    pub fn cloudwatch_call(&self, operation: &str, result: CallResult) {
        self.cloudwatch_requests
            .with_label_values(&[operation, result.as_str()])
            .inc();
    }

    pub fn aws_call(&self, service: &str, operation: &str, result: CallResult) {
        self.aws_requests
            .with_label_values(&[service, operation, result.as_str()])
            .inc();
    }
}
