//! What a plan costs: GetMetricData bills every metric requested.

use std::time::Duration;

/// What a plan costs in CloudWatch, at list price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub queries_per_cycle: usize,
    pub calls_per_cycle: usize,
    pub cycles_per_month: f64,
    pub metrics_per_month: f64,
    pub usd_per_month: f64,
}

/// AWS bills GetMetricData per metric requested: every query of every call counts, whatever
/// the number of datapoints returned. A month is taken as 30 days.
pub fn cost(queries: usize, calls: usize, interval: Duration, price_per_1000: f64) -> Cost {
    let cycles_per_month = 30.0 * 86_400.0 / interval.as_secs_f64().max(1.0);
    let metrics_per_month = queries as f64 * cycles_per_month;
    Cost {
        queries_per_cycle: queries,
        calls_per_cycle: calls,
        cycles_per_month,
        metrics_per_month,
        usd_per_month: metrics_per_month / 1000.0 * price_per_1000,
    }
}
