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

/// AWS list price of CloudWatch Metric Streams in most regions: USD 0.003 per 1,000 metric
/// updates (one metric, one minute; 1 to 5 additional statistics add one update each).
pub const STREAM_PRICE_PER_1000_UPDATES: f64 = 0.003;

/// The share of stages assumed idle in the comparison, as in a fleet of dev, test and
/// feature-branch stages.
pub const IDLE_SHARE: f64 = 0.7;

/// Minutes in a 30-day month: a metric stream sends at most one update per metric a minute.
const MINUTES_PER_MONTH: f64 = 30.0 * 1440.0;

/// The same inventory read four ways, in metrics (or metric updates) a month: what
/// `check-config` and the README compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Every stage polled every interval.
    pub polling: f64,
    /// With `poll.idle`, [`IDLE_SHARE`] of the stages idle.
    pub idle: f64,
    /// Metric stream updates if every streamed metric had data every minute, and with the
    /// idle stages sending none (API Gateway publishes no datapoints without requests).
    pub stream_updates: f64,
    pub stream_updates_idle: f64,
    /// What is still polled beside the stream (percentiles unless streamed, metric filters),
    /// idle stages read as with `poll.idle`.
    pub stream_polled: f64,
    /// An equivalent YACE job: every metric and statistic ListMetrics finds (the API-level
    /// aggregates included), every scrape; and its ListMetrics requests.
    pub yace: f64,
    pub yace_list_metrics: f64,
}

/// What one plan's queries are, for [`compare`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shape {
    /// Metric queries (GetMetricData, however the plan answers them).
    pub metric_queries: usize,
    /// Of those, the ones of a stage (idle-able); the rest are Lambda's.
    pub stage_queries: usize,
    /// Of the stage queries, those a stream never answers (a metric filter's namespace).
    pub stage_polled_beside_stream: usize,
    /// Of the stage queries, the percentiles: polled unless the stream carries them.
    pub stage_percentile_queries: usize,
    /// Distinct metrics (namespace, name, dimensions) a stream sends for the stages, with
    /// the API-level aggregates it sends too; and those of Lambda.
    pub stage_stream_metrics: usize,
    pub other_stream_metrics: usize,
    /// Stream metrics billed one more update each for their percentiles.
    pub stage_percentile_metrics: usize,
    /// Queries an equivalent YACE job makes: the metric queries plus the API-level
    /// aggregates' statistics.
    pub yace_queries: usize,
    /// Distinct metric names YACE lists (one ListMetrics call each, per 500 metrics).
    pub yace_list_calls: usize,
}

impl std::ops::Add for Shape {
    type Output = Shape;

    fn add(self, o: Shape) -> Shape {
        Shape {
            metric_queries: self.metric_queries + o.metric_queries,
            stage_queries: self.stage_queries + o.stage_queries,
            stage_polled_beside_stream: self.stage_polled_beside_stream
                + o.stage_polled_beside_stream,
            stage_percentile_queries: self.stage_percentile_queries + o.stage_percentile_queries,
            stage_stream_metrics: self.stage_stream_metrics + o.stage_stream_metrics,
            other_stream_metrics: self.other_stream_metrics + o.other_stream_metrics,
            stage_percentile_metrics: self.stage_percentile_metrics + o.stage_percentile_metrics,
            yace_queries: self.yace_queries + o.yace_queries,
            yace_list_calls: self.yace_list_calls + o.yace_list_calls,
        }
    }
}

/// What an idle stage costs against a busy one (read every `idle_interval` instead of every
/// `interval`), and what a fleet with [`IDLE_SHARE`] of its stages idle pays, as fractions.
pub fn idle_factor(interval: Duration, idle_interval: Duration) -> (f64, f64) {
    let share = (interval.as_secs_f64() / idle_interval.as_secs_f64().max(1.0)).min(1.0);
    (share, (1.0 - IDLE_SHARE) + IDLE_SHARE * share)
}

/// The comparison at `interval`, idle stages read every `idle_interval`, percentiles
/// streamed or not.
pub fn compare(
    s: Shape,
    interval: Duration,
    idle_interval: Duration,
    percentiles_streamed: bool,
) -> Comparison {
    let cycles = 30.0 * 86_400.0 / interval.as_secs_f64().max(1.0);
    let idle_factor = idle_factor(interval, idle_interval).1;
    let with_idle =
        |stage: usize, other: usize| (stage as f64 * idle_factor + other as f64) * cycles;
    let other = s.metric_queries - s.stage_queries;
    let extra = if percentiles_streamed {
        s.stage_percentile_metrics
    } else {
        0
    };
    let stage_polled = if percentiles_streamed {
        s.stage_polled_beside_stream
    } else {
        s.stage_polled_beside_stream + s.stage_percentile_queries
    };
    let stage_updates = (s.stage_stream_metrics + extra) as f64;
    let other_updates = s.other_stream_metrics as f64;
    Comparison {
        polling: s.metric_queries as f64 * cycles,
        idle: with_idle(s.stage_queries, other),
        stream_updates: (stage_updates + other_updates) * MINUTES_PER_MONTH,
        stream_updates_idle: (stage_updates * (1.0 - IDLE_SHARE) + other_updates)
            * MINUTES_PER_MONTH,
        stream_polled: with_idle(stage_polled, 0),
        yace: s.yace_queries as f64 * cycles,
        yace_list_metrics: s.yace_list_calls as f64 * cycles,
    }
}
