//! Where datapoints come from. Everything after the source is the same code for CloudWatch
//! and for the demo.

pub mod cloudwatch;
pub mod delivered;
pub mod logs;
pub mod recent;
pub mod stream;

use async_trait::async_trait;

use crate::model::{Cause, RouteKey};
use crate::plan::{Answer, Query};

/// GetMetricData returns at most this many datapoints per call (all queries together).
pub const MAX_DATAPOINTS_PER_CALL: i64 = 100_800;

/// The periods a read covers: `[start, end)` in Unix seconds, aligned to `period`.
/// `keep_from` is where the cycle's lookback starts: periods before it are read for the last
/// time in this window (a catch-up after an outage reads them from further back, `start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub period: i64,
    pub keep_from: i64,
}

impl Window {
    /// The window of a cycle at `now`: `lookback` back from the start of the current period,
    /// through the end of the current period, so data is counted as soon as it appears.
    pub fn at(now: i64, period: i64, lookback: i64) -> Window {
        let period = period.max(1);
        let current = now.div_euclid(period) * period;
        let start = (now - lookback).div_euclid(period) * period;
        let start = start.min(current);
        Window {
            start,
            end: current + period,
            period,
            keep_from: start,
        }
    }

    /// The same window reaching back to `from` (aligned down to a period), never later than
    /// its own start.
    pub fn reaching_back_to(self, from: i64) -> Window {
        let from = from.div_euclid(self.period) * self.period;
        Window {
            start: self.start.min(from),
            ..self
        }
    }

    /// Periods in the window.
    pub fn periods(&self) -> i64 {
        (self.end - self.start) / self.period
    }

    /// How many queries fit in one GetMetricData call over this window without passing the
    /// datapoint limit (500 at most, 1 at least).
    pub fn queries_per_call(&self, max_queries: usize) -> usize {
        let fit = MAX_DATAPOINTS_PER_CALL / self.periods().max(1);
        usize::try_from(fit)
            .unwrap_or(usize::MAX)
            .clamp(1, max_queries.max(1))
    }
}

/// What one query of a batch returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Datapoints as (period start in Unix seconds, value); missing periods are absent.
    Points(Vec<(i64, f64)>),
    /// CloudWatch answered the call but not this query (`InternalError`, `Forbidden`, absent).
    Failed(&'static str),
    /// Access-log responses: one query per stage answers a series per cause, for the stage
    /// and for each of its methods or routes. Causes not seen in the window are absent.
    Split(Vec<Part>),
}

/// What tells the parts of a split answer apart: the method or route (`None`: the whole
/// stage) and the cause.
pub type PartKey = (Option<RouteKey>, Cause);

/// Points per part, in period order: what a split answer is built from.
pub type PartCounts = std::collections::BTreeMap<PartKey, std::collections::BTreeMap<i64, f64>>;

/// A split answer from counts per part.
pub fn split(counts: PartCounts) -> Outcome {
    Outcome::Split(
        counts
            .into_iter()
            .map(|((route, cause), points)| Part {
                route,
                cause,
                points: points.into_iter().collect(),
            })
            .collect(),
    )
}

/// One series of a [`Outcome::Split`] answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The method or route; `None` for the whole stage.
    pub route: Option<RouteKey>,
    pub cause: Cause,
    /// (period start, value), as in [`Outcome::Points`].
    pub points: Vec<(i64, f64)>,
}

/// A whole batch failed (network, throttling, permissions).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub message: String,
    pub throttled: bool,
}

/// A source of API Gateway datapoints.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// Reads one batch (at most 500 queries) over `window`; the outcomes are in query order.
    async fn fetch(&self, queries: &[Query], window: Window) -> Result<Vec<Outcome>, SourceError>;
}

/// Sends a batch of access-log queries to the logs source, a batch of streamed queries to the
/// metric stream, and any other batch to CloudWatch. The plan never mixes them in one batch.
pub struct RoutedSource {
    pub metrics: std::sync::Arc<dyn MetricSource>,
    pub logs: std::sync::Arc<dyn MetricSource>,
    /// The access log lines Firehose delivers (`access_logs.mode: firehose`).
    pub delivered: Option<std::sync::Arc<dyn MetricSource>>,
    /// `None` when no metric stream is configured (the plan then streams nothing).
    pub stream: Option<std::sync::Arc<dyn MetricSource>>,
}

#[async_trait]
impl MetricSource for RoutedSource {
    async fn fetch(&self, queries: &[Query], window: Window) -> Result<Vec<Outcome>, SourceError> {
        match queries.first() {
            Some(q) if q.answer() == Answer::Logs && q.delivered => match &self.delivered {
                Some(delivered) => delivered.fetch(queries, window).await,
                None => Err(SourceError {
                    message: "a delivered access-log query, but no Firehose endpoint takes them"
                        .into(),
                    throttled: false,
                }),
            },
            Some(q) if q.answer() == Answer::Logs => self.logs.fetch(queries, window).await,
            Some(q) if q.answer() == Answer::Stream => match &self.stream {
                Some(stream) => stream.fetch(queries, window).await,
                None => Err(SourceError {
                    message: "a streamed query, but no metric stream is configured".into(),
                    throttled: false,
                }),
            },
            _ => self.metrics.fetch(queries, window).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_DATAPOINTS_PER_CALL, Window};

    #[test]
    fn window_covers_lookback_and_the_current_period() {
        let w = Window::at(1_000_030, 60, 600);
        assert_eq!(w.end, 1_000_020 + 60);
        assert_eq!(w.start, 999_420);
        assert_eq!((w.end - w.start) / 60, 11);
        assert_eq!(w.start % 60, 0);
        assert_eq!(w.keep_from, w.start);
        assert_eq!(w.queries_per_call(500), 500);
    }

    #[test]
    fn a_catch_up_window_splits_calls_by_the_datapoint_limit() {
        let w = Window::at(1_000_030, 60, 600).reaching_back_to(1_000_030 - 86_400 - 7);
        assert_eq!(w.start % 60, 0);
        assert!(w.start <= 1_000_030 - 86_400 - 7);
        assert_eq!(w.keep_from, 999_420);
        // 1,441 periods: 69 queries of them fit in 100,800 datapoints.
        assert_eq!(w.periods(), 1_441);
        assert_eq!(w.queries_per_call(500), 69);
        assert!(w.queries_per_call(500) as i64 * w.periods() <= MAX_DATAPOINTS_PER_CALL);
        // Never reaches forward.
        assert_eq!(w.reaching_back_to(w.end), w);
    }
}
