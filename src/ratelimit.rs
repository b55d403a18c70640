//! A client-side pace for AWS calls: GetMetricData is limited to 50 requests per second per
//! account and region, shared with every other tool of the account, so the exporter spaces
//! its own calls out instead of bursting into throttling.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::RequestRate;

/// Spaces calls at least `1 / rate` seconds apart (no bursts).
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// At most `rate` calls per second (a type that cannot hold a pace no timer can wait).
    pub fn new(rate: RequestRate) -> RateLimiter {
        let interval = rate.spacing();
        RateLimiter {
            interval,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this call's slot.
    pub async fn acquire(&self) {
        if self.interval.is_zero() {
            return;
        }
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot.checked_add(self.interval).unwrap_or(slot);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spaces_calls_by_the_rate() {
        let limiter = RateLimiter::new(RequestRate::new(50.0).unwrap());
        let start = Instant::now();
        for _ in 0..9 {
            limiter.acquire().await;
        }
        // The first call goes at once, the other eight at least 20 ms apart. (A sleep never
        // ends early, so this lower bound cannot flake.)
        assert!(
            start.elapsed() >= Duration::from_millis(160),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn zero_means_unlimited() {
        let rate = |r: f64| RateLimiter::new(RequestRate::new(r).unwrap()).interval;
        assert_eq!(rate(0.0), Duration::ZERO);
        assert_eq!(rate(20.0), Duration::from_millis(50));
    }
}
