//! `poll` and `shard`: when and how far back CloudWatch is read, and this replica's share.

use std::time::Duration;

use serde::Deserialize;

use super::types::{DurationIn, KeyError, human, number_or_text};
use super::{ConfigError, invalid};

/// `poll.interval` and `otlp.interval`: 1 s to a day.
pub type Interval = DurationIn<1, 86_400>;
/// `poll.period`: a whole number of minutes up to a day.
pub type Period = DurationIn<60, 86_400>;
/// `poll.lookback`: one minute to 3 h (every cycle re-reads the whole window).
pub type Lookback = DurationIn<60, 10_800>;
/// `poll.settle`: 0 to 3 h.
pub type Settle = DurationIn<0, 10_800>;
/// `poll.max_backfill`: up to what CloudWatch keeps of the coarsest period (455 days).
pub type Backfill = DurationIn<60, 39_312_000>;

/// Replica `index` of `total` exports the APIs whose id hashes to `index` (a stable FNV-1a
/// hash, so every replica agrees without talking to the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawShard")]
pub struct ShardConfig {
    index: u32,
    total: u32,
}

impl ShardConfig {
    /// Replica `index` of `total` (counting from 0).
    pub fn new(index: u32, total: u32) -> Result<ShardConfig, KeyError> {
        if total == 0 {
            return Err(KeyError::new("shard.total", "must be at least 1"));
        }
        if index >= total {
            return Err(KeyError::new(
                "shard.index",
                format!("must be below shard.total ({total}): shards count from 0"),
            ));
        }
        Ok(ShardConfig { index, total })
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn total(self) -> u32 {
        self.total
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with index and total")]
struct RawShard {
    #[serde(deserialize_with = "number_or_text")]
    index: u32,
    #[serde(deserialize_with = "number_or_text")]
    total: u32,
}

impl TryFrom<RawShard> for ShardConfig {
    type Error = KeyError;
    fn try_from(raw: RawShard) -> Result<ShardConfig, KeyError> {
        ShardConfig::new(raw.index, raw.total)
    }
}

/// When and how far back CloudWatch is read. The fields only exist together, checked as a
/// whole ([`PollConfig::new`]), so every combination the loop sees works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPoll")]
pub struct PollConfig {
    interval: Interval,
    period: Period,
    lookback: Lookback,
    settle: Settle,
    max_backfill: Backfill,
    idle: Option<IdleConfig>,
}

/// `poll.idle`: a stage without traffic for `after` is polled every `interval` instead of
/// every `poll.interval`; each of its reads reaches back over everything since the last one,
/// so its counters stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdleConfig {
    pub after: Interval,
    pub interval: Interval,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a mapping of poll settings")]
struct RawPoll {
    interval: Interval,
    period: Period,
    lookback: Lookback,
    settle: Settle,
    max_backfill: Backfill,
    idle: Option<IdleConfig>,
}

impl Default for RawPoll {
    fn default() -> Self {
        let d = PollConfig::DEFAULT;
        RawPoll {
            interval: d.interval,
            period: d.period,
            lookback: d.lookback,
            settle: d.settle,
            max_backfill: d.max_backfill,
            idle: None,
        }
    }
}

impl TryFrom<RawPoll> for PollConfig {
    type Error = KeyError;
    fn try_from(r: RawPoll) -> Result<PollConfig, KeyError> {
        PollConfig::checked(r.interval, r.period, r.lookback, r.settle, r.max_backfill)?
            .with_idle(r.idle)
    }
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig::DEFAULT
    }
}

/// How long CloudWatch keeps datapoints of a period: 1-minute data 15 days, 5-minute data
/// 63 days, hourly data 455 days.
fn retention(period: Duration) -> Duration {
    let days = match period.as_secs() {
        0..300 => 15,
        300..3600 => 63,
        _ => 455,
    };
    Duration::from_secs(days * 86_400)
}

impl PollConfig {
    /// The defaults, checked when the crate builds.
    pub const DEFAULT: PollConfig = PollConfig {
        interval: Interval::from_secs(60),
        period: Period::from_secs(60),
        lookback: Lookback::from_secs(600),
        settle: Settle::from_secs(180),
        max_backfill: Backfill::from_secs(3 * 3600),
        idle: None,
    };

    /// Poll timings from plain durations; the error names the key at fault.
    pub fn new(
        interval: Duration,
        period: Duration,
        lookback: Duration,
        settle: Duration,
        max_backfill: Duration,
    ) -> Result<PollConfig, ConfigError> {
        let key = |k: &'static str| move |reason: String| invalid(format!("poll.{k}"), reason);
        PollConfig::checked(
            Interval::new(interval).map_err(key("interval"))?,
            Period::new(period).map_err(key("period"))?,
            Lookback::new(lookback).map_err(key("lookback"))?,
            Settle::new(settle).map_err(key("settle"))?,
            Backfill::new(max_backfill).map_err(key("max_backfill"))?,
        )
        .map_err(ConfigError::from)
    }

    /// The checks across fields.
    fn checked(
        interval: Interval,
        period: Period,
        lookback: Lookback,
        settle: Settle,
        max_backfill: Backfill,
    ) -> Result<PollConfig, KeyError> {
        if !period.as_secs().is_multiple_of(60) || period.subsec_nanos() != 0 {
            return Err(KeyError::new(
                "poll.period",
                format!(
                    "must be a whole multiple of 60s (CloudWatch's regular resolution), got {period}"
                ),
            ));
        }
        if *lookback < *period {
            return Err(KeyError::new(
                "poll.lookback",
                "must be at least one poll.period, or no period is ever read",
            ));
        }
        // The settled period (the one before the period `settle` ago) must still be inside the
        // window, or the quantile and max gauges never have a value to report.
        if *settle + *period > *lookback {
            return Err(KeyError::new(
                "poll.settle",
                format!(
                    "must be at most poll.lookback - poll.period ({}), or no settled period is ever inside the window",
                    human(*lookback - *period)
                ),
            ));
        }
        if *max_backfill < *lookback {
            return Err(KeyError::new(
                "poll.max_backfill",
                format!("must be at least poll.lookback ({lookback})"),
            ));
        }
        let keep = retention(*period);
        if *max_backfill > keep {
            return Err(KeyError::new(
                "poll.max_backfill",
                format!(
                    "must be at most {} for a {period} period: CloudWatch keeps that data no longer",
                    human(keep)
                ),
            ));
        }
        Ok(PollConfig {
            interval,
            period,
            lookback,
            settle,
            max_backfill,
            idle: None,
        })
    }

    /// This config with idle stages polled less; the error names the key at fault.
    pub fn with_idle(mut self, idle: Option<IdleConfig>) -> Result<PollConfig, KeyError> {
        if let Some(i) = idle {
            if *i.interval <= *self.interval {
                return Err(KeyError::new(
                    "poll.idle.interval",
                    format!("must be longer than poll.interval ({})", self.interval),
                ));
            }
            // An idle read reaches back to the last one: it must stay within the backfill.
            if *i.interval + *self.lookback > *self.max_backfill {
                return Err(KeyError::new(
                    "poll.idle.interval",
                    format!(
                        "must be at most poll.max_backfill - poll.lookback ({}), or periods between two idle reads are lost",
                        human(*self.max_backfill - *self.lookback)
                    ),
                ));
            }
        }
        self.idle = idle;
        Ok(self)
    }

    /// Idle stages' settings, when they are polled less.
    pub fn idle(&self) -> Option<IdleConfig> {
        self.idle
    }

    /// How often a cycle runs.
    pub fn interval(&self) -> Duration {
        *self.interval
    }

    /// The CloudWatch period, in seconds (a multiple of 60).
    pub fn period(&self) -> i64 {
        self.period.secs()
    }

    /// How far back each cycle re-reads, in seconds.
    pub fn lookback(&self) -> i64 {
        self.lookback.secs()
    }

    /// How long a metric stream's minutes are kept, in seconds: the lookback every cycle
    /// re-reads, plus one interval, plus a margin for cycles that run late. Streamed queries
    /// are read every cycle, idle stages' too (reading them costs nothing); a catch-up that
    /// would reach further back counts the minutes it cannot read as lost.
    pub fn stream_retention(&self) -> i64 {
        const MARGIN: i64 = 15 * 60;
        let interval = i64::try_from(self.interval().as_secs()).unwrap_or(i64::MAX / 4);
        self.lookback() + interval + MARGIN
    }

    /// How old a period must be to be final, in seconds.
    pub fn settle(&self) -> i64 {
        self.settle.secs()
    }

    /// How far back the first cycle after an outage reads, at most, in seconds.
    pub fn max_backfill(&self) -> i64 {
        self.max_backfill.secs()
    }

    /// This config with another interval (the demo's faster default).
    pub fn with_interval(mut self, interval: Interval) -> PollConfig {
        self.interval = interval;
        self
    }
}
