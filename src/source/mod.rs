//! Where datapoints come from. Everything after the source is the same code for CloudWatch
//! and for the demo.

pub mod cloudwatch;
pub mod logs;

use async_trait::async_trait;

use crate::plan::Query;

/// The periods a cycle reads: `[start, end)` in Unix seconds, aligned to `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub period: i64,
}

impl Window {
    /// The window of a cycle at `now`: `lookback` back from the start of the current period,
    /// through the end of the current period, so data is counted as soon as it appears.
    pub fn at(now: i64, period: i64, lookback: i64) -> Window {
        let current = now.div_euclid(period) * period;
        let start = (now - lookback).div_euclid(period) * period;
        Window {
            start: start.min(current),
            end: current + period,
            period,
        }
    }
}

/// What one query of a batch returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Datapoints as (period start in Unix seconds, value); missing periods are absent.
    Points(Vec<(i64, f64)>),
    /// CloudWatch answered the call but not this query (`InternalError`, `Forbidden`, absent).
    Failed(&'static str),
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

/// Sends a batch of access-log queries to the logs source and any other batch to CloudWatch.
/// The plan never mixes the two in one batch.
pub struct RoutedSource {
    pub metrics: std::sync::Arc<dyn MetricSource>,
    pub logs: std::sync::Arc<dyn MetricSource>,
}

#[async_trait]
impl MetricSource for RoutedSource {
    async fn fetch(&self, queries: &[Query], window: Window) -> Result<Vec<Outcome>, SourceError> {
        if queries.first().is_some_and(|q| q.log_group.is_some()) {
            self.logs.fetch(queries, window).await
        } else {
            self.metrics.fetch(queries, window).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn window_covers_lookback_and_the_current_period() {
        let w = Window::at(1_000_030, 60, 600);
        assert_eq!(w.end, 1_000_020 + 60);
        assert_eq!(w.start, 999_420);
        assert_eq!((w.end - w.start) / 60, 11);
        assert_eq!(w.start % 60, 0);
    }
}
