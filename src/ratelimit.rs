//! A client-side pace for AWS calls: GetMetricData is limited to 50 requests per second per
//! account and region, shared with every other tool of the account, so the exporter spaces
//! its own calls out instead of bursting into throttling.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Spaces calls at least `1 / rate` seconds apart (no bursts).
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// `rate` calls per second; 0 or less means unlimited.
    pub fn new(rate: f64) -> RateLimiter {
        let interval = if rate > 0.0 {
            Duration::from_secs_f64(1.0 / rate)
        } else {
            Duration::ZERO
        };
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
            *next = slot + self.interval;
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
        let limiter = RateLimiter::new(100.0);
        let start = Instant::now();
        for _ in 0..9 {
            limiter.acquire().await;
        }
        // The first call goes at once, the other eight at least 10 ms apart. (A sleep never
        // ends early, so this lower bound cannot flake.)
        assert!(
            start.elapsed() >= Duration::from_millis(80),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn zero_means_unlimited() {
        assert_eq!(RateLimiter::new(0.0).interval, Duration::ZERO);
        assert_eq!(RateLimiter::new(-1.0).interval, Duration::ZERO);
        assert_eq!(RateLimiter::new(20.0).interval, Duration::from_millis(50));
    }
}
