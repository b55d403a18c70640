//! The exporter's own metrics (`aws_apigateway_exporter_*`): what it costs, whether it works.
//! Ordinary `prometheus` metrics in their own registry, named and described by the contract.

use prometheus::{Counter, CounterVec, Gauge, GaugeVec, Histogram, HistogramOpts, Opts, Registry};

use crate::contract::{self as c, Def};
use crate::model::CallResult;

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

/// `result` of `aws_apigateway_exporter_stream_requests_total`.
pub const STREAM_REQUEST_RESULTS: [&str; 5] = [
    "accepted",
    "duplicate",
    "unauthorized",
    "invalid",
    "too_large",
];

/// `result` of `aws_apigateway_exporter_stream_records_total`.
pub const STREAM_RECORD_RESULTS: [&str; 6] = [
    "accepted",
    "late",
    "unchanged",
    "ignored",
    "out_of_range",
    "refused",
];

/// `result` of `aws_apigateway_exporter_access_log_deliveries_total`.
pub const ACCESS_LOG_DELIVERY_RESULTS: [&str; 5] = STREAM_REQUEST_RESULTS;

/// `result` of `aws_apigateway_exporter_access_log_lines_total`.
pub const ACCESS_LOG_LINE_RESULTS: [&str; 6] = [
    "accepted",
    "duplicate",
    "late",
    "out_of_range",
    "invalid",
    "refused",
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
    pub idle_stages: GaugeVec,
    pub rest_name_conflicts: GaugeVec,
    pub periods_lost: CounterVec,
    pub counter_decreases: Counter,
    pub query_errors: CounterVec,
    pub cycles_skipped: Counter,
    pub config_reload_ok: Gauge,
    pub config_reload_time: Gauge,
    pub otlp_exports: CounterVec,
    pub stream_requests: CounterVec,
    pub stream_records: CounterVec,
    pub stream_last_delivery: Gauge,
    pub stream_series: Gauge,
    pub discovery_waiting: Gauge,
    pub discovery_duration: GaugeVec,
    pub discovery_last_success: GaugeVec,
    pub discovery_api_failures: GaugeVec,
    pub source_account_up: GaugeVec,
    pub access_log_deliveries: CounterVec,
    pub access_log_lines: CounterVec,
}

fn opts(def: &Def) -> Opts {
    Opts::new(def.name, def.help)
}

impl SelfMetrics {
    /// Creates and registers every self-metric. `demo` marks synthetic data in `build_info`.
    pub fn new(registry: &Registry, demo: bool) -> prometheus::Result<SelfMetrics> {
        let gauge = |def: &Def| Gauge::with_opts(opts(def));
        let counter = |def: &Def| Counter::with_opts(opts(def));
        let gauges = |def: &Def| GaugeVec::new(opts(def), def.labels);
        let counters = |def: &Def| CounterVec::new(opts(def), def.labels);
        let m = SelfMetrics {
            build_info: gauges(&c::EXPORTER_BUILD_INFO)?,
            up: gauge(&c::EXPORTER_UP)?,
            cycle_duration: Histogram::with_opts(
                HistogramOpts::new(
                    c::EXPORTER_CYCLE_DURATION.name,
                    c::EXPORTER_CYCLE_DURATION.help,
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                ]),
            )?,
            last_success: gauge(&c::EXPORTER_LAST_SUCCESS)?,
            data_age: gauge(&c::EXPORTER_DATA_AGE)?,
            cloudwatch_requests: counters(&c::EXPORTER_CLOUDWATCH_REQUESTS)?,
            metrics_requested: counter(&c::EXPORTER_METRICS_REQUESTED)?,
            aws_requests: counters(&c::EXPORTER_AWS_REQUESTS)?,
            series: gauge(&c::EXPORTER_SERIES)?,
            apis: gauges(&c::EXPORTER_APIS)?,
            target_up: gauges(&c::EXPORTER_TARGET_UP)?,
            idle_stages: gauges(&c::EXPORTER_IDLE_STAGES)?,
            rest_name_conflicts: gauges(&c::EXPORTER_REST_NAME_CONFLICTS)?,
            periods_lost: counters(&c::EXPORTER_PERIODS_LOST)?,
            counter_decreases: counter(&c::EXPORTER_COUNTER_DECREASES)?,
            query_errors: counters(&c::EXPORTER_QUERY_ERRORS)?,
            cycles_skipped: counter(&c::EXPORTER_CYCLES_SKIPPED)?,
            config_reload_ok: gauge(&c::EXPORTER_RELOAD_OK)?,
            config_reload_time: gauge(&c::EXPORTER_RELOAD_TIME)?,
            otlp_exports: counters(&c::EXPORTER_OTLP_EXPORTS)?,
            stream_requests: counters(&c::EXPORTER_STREAM_REQUESTS)?,
            stream_records: counters(&c::EXPORTER_STREAM_RECORDS)?,
            stream_last_delivery: gauge(&c::EXPORTER_STREAM_LAST_DELIVERY)?,
            stream_series: gauge(&c::EXPORTER_STREAM_SERIES)?,
            discovery_waiting: gauge(&c::EXPORTER_DISCOVERY_WAITING)?,
            discovery_duration: gauges(&c::EXPORTER_DISCOVERY_DURATION)?,
            discovery_last_success: gauges(&c::EXPORTER_DISCOVERY_LAST_SUCCESS)?,
            discovery_api_failures: gauges(&c::EXPORTER_DISCOVERY_API_FAILURES)?,
            source_account_up: gauges(&c::EXPORTER_SOURCE_ACCOUNT_UP)?,
            access_log_deliveries: counters(&c::EXPORTER_ACCESS_LOG_DELIVERIES)?,
            access_log_lines: counters(&c::EXPORTER_ACCESS_LOG_LINES)?,
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
        registry.register(Box::new(m.idle_stages.clone()))?;
        registry.register(Box::new(m.rest_name_conflicts.clone()))?;
        registry.register(Box::new(m.periods_lost.clone()))?;
        registry.register(Box::new(m.counter_decreases.clone()))?;
        registry.register(Box::new(m.query_errors.clone()))?;
        registry.register(Box::new(m.stream_requests.clone()))?;
        registry.register(Box::new(m.stream_records.clone()))?;
        registry.register(Box::new(m.stream_last_delivery.clone()))?;
        registry.register(Box::new(m.stream_series.clone()))?;
        registry.register(Box::new(m.discovery_waiting.clone()))?;
        registry.register(Box::new(m.discovery_duration.clone()))?;
        registry.register(Box::new(m.discovery_last_success.clone()))?;
        registry.register(Box::new(m.discovery_api_failures.clone()))?;
        registry.register(Box::new(m.source_account_up.clone()))?;
        registry.register(Box::new(m.access_log_deliveries.clone()))?;
        registry.register(Box::new(m.access_log_lines.clone()))?;

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
        for result in STREAM_REQUEST_RESULTS {
            m.stream_requests.with_label_values(&[result]);
        }
        for result in STREAM_RECORD_RESULTS {
            m.stream_records.with_label_values(&[result]);
        }
        for result in ACCESS_LOG_DELIVERY_RESULTS {
            m.access_log_deliveries.with_label_values(&[result]);
        }
        for result in ACCESS_LOG_LINE_RESULTS {
            m.access_log_lines.with_label_values(&[result]);
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

    /// The management calls discovery made so far (every result), by operation: API Gateway's
    /// and route ListMetrics.
    pub fn discovery_calls(&self) -> Vec<(&'static str, u64)> {
        let total = |get: &dyn Fn(&str) -> f64| -> u64 {
            CallResult::ALL
                .iter()
                .map(|r| get(r.as_str()))
                .sum::<f64>()
                .round() as u64
        };
        let mut calls: Vec<(&'static str, u64)> = Vec::new();
        for (service, operation) in AWS_OPERATIONS {
            if !service.starts_with("apigateway") {
                continue;
            }
            let n = total(&|r| {
                self.aws_requests
                    .with_label_values(&[service, operation, r])
                    .get()
            });
            match calls.iter_mut().find(|(op, _)| *op == operation) {
                Some((_, m)) => *m += n,
                None => calls.push((operation, n)),
            }
        }
        let listed = total(&|r| {
            self.cloudwatch_requests
                .with_label_values(&["ListMetrics", r])
                .get()
        });
        calls.push(("ListMetrics", listed));
        calls
    }

    pub fn aws_call(&self, service: &str, operation: &str, result: CallResult) {
        self.aws_requests
            .with_label_values(&[service, operation, result.as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use prometheus::proto::MetricType;

    use super::*;
    use crate::contract::{Level, Type};

    #[test]
    fn every_self_metric_is_registered_as_the_contract_defines_it() {
        let registry = Registry::new();
        let m = SelfMetrics::new(&registry, false).unwrap();
        // Vectors show in `gather()` once they have a series.
        m.otlp_exports.with_label_values(&["success"]);
        for v in [
            &m.target_up,
            &m.rest_name_conflicts,
            &m.idle_stages,
            &m.discovery_duration,
            &m.discovery_last_success,
        ] {
            v.with_label_values(&["1", "r"]);
        }
        m.discovery_api_failures
            .with_label_values(&["1", "r", "a1", "http"]);
        m.source_account_up.with_label_values(&["2", "r", "role"]);
        m.periods_lost.with_label_values(&["1", "r"]);
        let gathered = registry.gather();
        let exporter: Vec<&Def> = c::ALL
            .iter()
            .copied()
            .filter(|d| d.level == Level::Exporter)
            .collect();
        assert_eq!(gathered.len(), exporter.len());
        for def in exporter {
            let f = gathered
                .iter()
                .find(|f| f.name() == def.name)
                .unwrap_or_else(|| panic!("{} is not registered", def.name));
            assert_eq!(f.help(), def.help, "{}", def.name);
            let kind = match f.get_field_type() {
                MetricType::COUNTER => Type::Counter,
                MetricType::GAUGE => Type::Gauge,
                MetricType::HISTOGRAM => Type::Histogram,
                other => panic!("{}: {other:?}", def.name),
            };
            assert_eq!(kind, def.kind, "{}", def.name);
            let labels: Vec<&str> = f.get_metric()[0]
                .get_label()
                .iter()
                .map(|l| l.name())
                .collect();
            let mut expected = def.labels.to_vec();
            expected.sort_unstable();
            assert_eq!(labels, expected, "{}", def.name);
        }
    }
}
