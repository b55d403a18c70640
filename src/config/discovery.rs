//! `discovery`: how often the inventory is refreshed, and how much of the account's API
//! Gateway management quota discovery may spend doing it.

use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::types::{DurationIn, KeyError, NumberIn, number_or_text};

/// `discovery.refresh_interval`: 1 s to a week.
pub type RefreshInterval = DurationIn<1, 604_800>;
/// `discovery.full_refresh_interval`: an hour to 30 days.
pub type FullRefreshInterval = DurationIn<3_600, 2_592_000>;

/// API Gateway's quota for all management operations together, per account: 10 requests per
/// second ("Total operations", AWS's "quotas for creating, deploying and managing an API";
/// it cannot be raised).
pub const MANAGEMENT_QUOTA: f64 = 10.0;

/// Management calls per second for a whole account: between 0.05 and AWS's quota of 10
/// (spending more can only be throttled, and starves the account's deployments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ManagementRate(NumberIn<50, 10_000>);

impl ManagementRate {
    /// The default: a fifth of the quota, leaving four fifths to the account's deployments.
    pub const DEFAULT: ManagementRate = ManagementRate(NumberIn::from_milli(2_000));

    pub fn new(v: f64) -> Result<ManagementRate, String> {
        NumberIn::new(v).map(ManagementRate).map_err(|_| {
            format!(
                "must be between 0.05 and {MANAGEMENT_QUOTA} calls per second (API Gateway allows \
                 {MANAGEMENT_QUOTA} per second per account for all management calls together, \
                 shared with your deployments), got {v}"
            )
        })
    }

    pub fn get(self) -> f64 {
        self.0.get()
    }
}

impl<'de> Deserialize<'de> for ManagementRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: f64 = number_or_text(d)?;
        ManagementRate::new(v).map_err(de::Error::custom)
    }
}

/// The discovery settings, checked together ([`DiscoveryConfig::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RawDiscovery")]
pub struct DiscoveryConfig {
    refresh_interval: RefreshInterval,
    full_refresh_interval: FullRefreshInterval,
    max_requests_per_second: ManagementRate,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a mapping of discovery settings"
)]
struct RawDiscovery {
    refresh_interval: RefreshInterval,
    full_refresh_interval: FullRefreshInterval,
    max_requests_per_second: ManagementRate,
}

impl Default for RawDiscovery {
    fn default() -> Self {
        let d = DiscoveryConfig::DEFAULT;
        RawDiscovery {
            refresh_interval: d.refresh_interval,
            full_refresh_interval: d.full_refresh_interval,
            max_requests_per_second: d.max_requests_per_second,
        }
    }
}

impl TryFrom<RawDiscovery> for DiscoveryConfig {
    type Error = KeyError;
    fn try_from(r: RawDiscovery) -> Result<DiscoveryConfig, KeyError> {
        DiscoveryConfig::new(
            r.refresh_interval,
            r.full_refresh_interval,
            r.max_requests_per_second,
        )
    }
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig::DEFAULT
    }
}

impl DiscoveryConfig {
    /// The defaults, checked when the crate builds.
    pub const DEFAULT: DiscoveryConfig = DiscoveryConfig {
        refresh_interval: RefreshInterval::from_secs(600),
        full_refresh_interval: FullRefreshInterval::from_secs(86_400),
        max_requests_per_second: ManagementRate::DEFAULT,
    };

    /// The settings, if they fit together: a full re-read cannot come more often than a refresh.
    pub fn new(
        refresh_interval: RefreshInterval,
        full_refresh_interval: FullRefreshInterval,
        max_requests_per_second: ManagementRate,
    ) -> Result<DiscoveryConfig, KeyError> {
        if *full_refresh_interval < *refresh_interval {
            return Err(KeyError::new(
                "discovery.full_refresh_interval",
                format!("must be at least discovery.refresh_interval ({refresh_interval})"),
            ));
        }
        Ok(DiscoveryConfig {
            refresh_interval,
            full_refresh_interval,
            max_requests_per_second,
        })
    }

    /// How often the inventory is refreshed (its listings, and each API's stages).
    pub fn refresh_interval(&self) -> Duration {
        *self.refresh_interval
    }

    /// How often each API's integrations and routes are read again even though no new
    /// deployment says they changed (each API at its own moment within the interval).
    pub fn full_refresh_interval(&self) -> Duration {
        *self.full_refresh_interval
    }

    /// Management calls per second for the account, over all regions and shards.
    pub fn max_requests_per_second(&self) -> ManagementRate {
        self.max_requests_per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<DiscoveryConfig, String> {
        yaml_serde::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_bounds() {
        let d = parse("{}").unwrap();
        assert_eq!(d.refresh_interval(), Duration::from_secs(600));
        assert_eq!(d.full_refresh_interval(), Duration::from_secs(86_400));
        assert_eq!(d.max_requests_per_second().get(), 2.0);
        assert_eq!(
            parse("max_requests_per_second: 10")
                .unwrap()
                .max_requests_per_second()
                .get(),
            10.0
        );
        for bad in ["0", "10.5", "-1", ".nan", "0.01"] {
            let err = parse(&format!("max_requests_per_second: {bad}")).unwrap_err();
            assert!(err.contains("10 per second per account"), "{bad}: {err}");
        }
        let err = parse("refresh_interval: 2h\nfull_refresh_interval: 1h").unwrap_err();
        assert!(
            err.contains("discovery.full_refresh_interval")
                && err.contains("at least discovery.refresh_interval"),
            "{err}"
        );
        assert!(parse("full_refresh_interval: 10m").is_err());
    }
}
