//! Client-side paces for AWS calls, so the exporter spaces its calls out instead of bursting
//! into quotas it shares with everything else in the account:
//!
//! - [`RateLimiter`]: GetMetricData (50 requests per second per account and region) and
//!   FilterLogEvents, per target.
//! - [`Budget`]: API Gateway's management calls, which AWS limits per account (10 per second
//!   for all operations together, GetResources 5 every 2 seconds), shared by every region of
//!   the account ([`Budgets`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// What a management call is, for its pace: GetResources has a quota of its own besides the
/// total (AWS: "GetResources: 5 requests every 2 seconds per account").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Management,
    GetResources,
}

/// Slots of the budget's grid are this much longer than `1 / rate`: with at most one call
/// per slot, started within [`ON_TIME`] of the slot's start, any 1-second window holds at
/// most `rate` calls as AWS receives them, even when one request travels a little slower
/// than the next.
const MARGIN: f64 = 1.05;

/// How late after its slot's start a call may still start; later, it waits for its next slot.
/// Less than the 5 % margin of a slot of the fastest budget, so slots never crowd a window.
const ON_TIME: Duration = Duration::from_millis(40);

/// One slot in this many may carry a GetResources: its quota (2.5 per second) is a quarter of
/// the total's (10), so at any budget it stays as far under its own quota as the whole
/// budget stays under the total.
const GET_RESOURCES_EVERY: u64 = 4;

/// The pace of one account's management calls: a grid of slots on the wall clock, each
/// `1.05 / rate` seconds long and carrying at most one call, which starts within 40 ms of the
/// slot's start; every fourth slot may carry a GetResources. Shards of one budget take turns
/// on the grid (each slot belongs to one shard), so replicas that never talk to each other
/// still stay within the budget together, as long as their clocks agree to a few
/// milliseconds (NTP, Amazon Time Sync). A throttled answer pauses every call of the account
/// ([`Budget::back_off`]).
#[derive(Debug)]
pub struct Budget {
    /// The wall clock at `anchor`, in seconds since the Unix epoch: slots are numbered on the
    /// wall clock (the same in every process), time is kept with tokio's clock.
    wall_at_anchor: f64,
    anchor: Instant,
    /// This process's share: shard `index` of `total`.
    index: u64,
    total: u64,
    pace: std::sync::Mutex<Pace>,
}

#[derive(Debug)]
struct Pace {
    /// Slot length, in seconds.
    slot: f64,
    /// Slots taken by calls that have not started yet.
    taken: BTreeSet<u64>,
    /// No slot starts before this (a back-off), in seconds on the wall clock.
    paused_until: f64,
}

impl Budget {
    /// `rate` calls per second for the whole account, of which this process is shard `index`
    /// of `total` (`0, 1` without shards).
    pub fn new(rate: f64, index: u32, total: u32) -> Budget {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let total = u64::from(total.max(1));
        Budget {
            wall_at_anchor: wall,
            anchor: Instant::now(),
            index: u64::from(index).min(total - 1),
            total,
            pace: std::sync::Mutex::new(Pace {
                slot: slot(rate),
                taken: BTreeSet::new(),
                paused_until: 0.0,
            }),
        }
    }

    fn pace(&self) -> std::sync::MutexGuard<'_, Pace> {
        // A poisoned lock only means another caller panicked mid-update of plain numbers.
        self.pace.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Now, in seconds on the wall clock.
    fn wall(&self) -> f64 {
        self.wall_at_anchor + self.anchor.elapsed().as_secs_f64()
    }

    /// Takes a new rate (a reload), from the next call on.
    pub fn set_rate(&self, rate: f64) {
        let mut p = self.pace();
        p.slot = slot(rate);
        p.taken.clear();
    }

    /// Which shard a slot belongs to. The GetResources slots (every fourth) go round the
    /// shards, and so do the others, so each shard gets its share of both.
    fn owner(&self, k: u64) -> u64 {
        if k.is_multiple_of(GET_RESOURCES_EVERY) {
            (k / GET_RESOURCES_EVERY) % self.total
        } else {
            (k - k / GET_RESOURCES_EVERY - 1) % self.total
        }
    }

    /// Waits until a call of `kind` may start, and takes its slot.
    pub async fn acquire(&self, kind: CallKind) {
        loop {
            let (k, start) = {
                let mut p = self.pace();
                let earliest = self.wall().max(p.paused_until);
                let mut k = (earliest / p.slot).ceil() as u64;
                while self.owner(k) != self.index
                    || p.taken.contains(&k)
                    || (kind == CallKind::GetResources && !k.is_multiple_of(GET_RESOURCES_EVERY))
                {
                    k += 1;
                }
                p.taken.insert(k);
                (k, k as f64 * p.slot)
            };
            let wait = (start - self.wall()).max(0.0);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            let late = self.wall() - start;
            let mut p = self.pace();
            p.taken.remove(&k);
            if late <= ON_TIME.as_secs_f64() {
                return;
            }
            // Woken too late for the slot (a busy process): the next one.
        }
    }

    /// Holds every call of the account back for `pause` from now: AWS answered one with
    /// TooManyRequests, so the account's quota is spent (by the exporter or by a deployment).
    pub fn back_off(&self, pause: Duration) {
        let until = self.wall() + pause.as_secs_f64();
        let mut p = self.pace();
        p.paused_until = p.paused_until.max(until);
    }
}

fn slot(rate: f64) -> f64 {
    // Callers' rates lie between 0.05 and 10 per second; the bound keeps a bad value from
    // making an endless slot.
    (MARGIN / rate).clamp(0.001, 3600.0)
}

/// The budgets of the accounts this process reads, by account id: the targets of every
/// region of an account share one, since AWS counts the quota per account. Kept across
/// reloads, so a reload neither resets a pause nor lets a burst through.
#[derive(Debug, Default)]
pub struct Budgets {
    by_account: std::sync::Mutex<HashMap<String, Arc<Budget>>>,
}

impl Budgets {
    /// The budget of `account`, at `rate` calls per second for the account, this process
    /// being shard `index` of `total` (the latest rate wins).
    pub fn of(&self, account: &str, rate: f64, index: u32, total: u32) -> Arc<Budget> {
        let mut map = self.by_account.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(account) {
            Some(b) if (b.index, b.total) == (u64::from(index), u64::from(total.max(1))) => {
                b.set_rate(rate);
                Arc::clone(b)
            }
            _ => {
                let b = Arc::new(Budget::new(rate, index, total));
                map.insert(account.to_string(), Arc::clone(&b));
                b
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Start times of calls of `kinds` through one budget, in paused time, from its first.
    async fn starts(budget: &Budget, kinds: &[CallKind]) -> Vec<Duration> {
        let mut out = Vec::new();
        for kind in kinds {
            budget.acquire(*kind).await;
            out.push(budget.anchor.elapsed());
        }
        out
    }

    /// The most of `at` in any window `[t, t + width)`.
    fn busiest(at: &[Duration], width: Duration) -> usize {
        let mut at = at.to_vec();
        at.sort();
        let mut start = 0;
        let mut best = 0;
        for end in 0..at.len() {
            while at[end] - at[start] >= width {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_never_lets_more_than_its_rate_into_a_second() {
        let budget = Budget::new(2.0, 0, 1);
        let t = starts(&budget, &[CallKind::Management; 40]).await;
        assert!(busiest(&t, Duration::from_secs(1)) <= 2, "{t:?}");
        // Not slower than the budget either: 40 calls in about 20 s.
        let took = t[39] - t[0];
        assert!(took <= Duration::from_millis(20_500), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn get_resources_gets_every_fourth_slot_and_counts_in_the_total() {
        let budget = Budget::new(4.0, 0, 1);
        let mut kinds = vec![CallKind::GetResources; 10];
        kinds.extend([CallKind::Management; 10]);
        let t = starts(&budget, &kinds).await;
        assert!(busiest(&t[..10], Duration::from_secs(1)) <= 1, "{t:?}");
        assert!(busiest(&t, Duration::from_secs(1)) <= 4, "{t:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shards_take_turns_and_stay_within_the_budget_together() {
        let shards: Vec<Arc<Budget>> = (0..3).map(|i| Arc::new(Budget::new(5.0, i, 3))).collect();
        let mut tasks = Vec::new();
        for (i, b) in shards.iter().enumerate() {
            for _ in 0..4 {
                let b = Arc::clone(b);
                tasks.push(tokio::spawn(async move {
                    let mut at = Vec::new();
                    for n in 0..15 {
                        let kind = if n % 3 == 0 {
                            CallKind::GetResources
                        } else {
                            CallKind::Management
                        };
                        b.acquire(kind).await;
                        at.push((i, kind, b.wall()));
                    }
                    at
                }));
            }
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let origin = all.iter().map(|c| c.2).fold(f64::MAX, f64::min);
        let at = |f: &dyn Fn(&(usize, CallKind, f64)) -> bool| -> Vec<Duration> {
            all.iter()
                .filter(|c| f(c))
                .map(|c| Duration::from_secs_f64(c.2 - origin))
                .collect()
        };
        assert!(busiest(&at(&|_| true), Duration::from_secs(1)) <= 5);
        // GetResources: a quarter of the budget, 1.25 a second (AWS: 5 every 2 seconds).
        let resources = at(&|c| c.1 == CallKind::GetResources);
        assert!(busiest(&resources, Duration::from_secs(1)) <= 2);
        assert!(busiest(&resources, Duration::from_secs(2)) <= 3);
        // Each shard had its share: 60 calls each, 20 of them GetResources, which set the
        // pace (one every 12 slots of 0.21 s per shard: 20 take about 50 s); all three done
        // at about the same time.
        let ends: Vec<f64> = (0..3)
            .map(|i| {
                all.iter()
                    .filter(|c| c.0 == i)
                    .map(|c| c.2)
                    .fold(0.0, f64::max)
                    - origin
            })
            .collect();
        assert!(ends.iter().all(|e| (47.0..53.0).contains(e)), "{ends:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_back_off_holds_every_caller_and_concurrent_callers_share_the_pace() {
        let budget = Arc::new(Budget::new(10.0, 0, 1));
        budget.acquire(CallKind::Management).await;
        let paused_at = budget.anchor.elapsed();
        budget.back_off(Duration::from_secs(5));
        let calls = (0..4).map(|_| {
            let b = Arc::clone(&budget);
            tokio::spawn(async move {
                b.acquire(CallKind::Management).await;
                b.anchor.elapsed()
            })
        });
        let t: Vec<Duration> = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(
            t.iter().all(|t| *t >= paused_at + Duration::from_secs(5)),
            "{t:?}"
        );
        assert!(busiest(&t, Duration::from_millis(105)) <= 1, "{t:?}");
    }

    #[test]
    fn budgets_are_shared_by_account() {
        let budgets = Budgets::default();
        let a = budgets.of("111122223333", 2.0, 0, 1);
        let b = budgets.of("111122223333", 1.0, 0, 1);
        assert!(Arc::ptr_eq(&a, &b));
        assert!((a.pace().slot - 1.05).abs() < 1e-9);
        assert!(!Arc::ptr_eq(&a, &budgets.of("444455556666", 2.0, 0, 1)));
    }

    #[test]
    fn every_slot_has_one_owner_and_each_shard_its_share_of_both_kinds() {
        for total in 1..6u32 {
            let shards: Vec<Budget> = (0..total).map(|i| Budget::new(1.0, i, total)).collect();
            let mut resources = vec![0; total as usize];
            let mut others = vec![0; total as usize];
            for k in 0..(400 * u64::from(total)) {
                let owners: Vec<usize> = (0..total as usize)
                    .filter(|i| shards[*i].owner(k) == shards[*i].index)
                    .collect();
                assert_eq!(owners.len(), 1, "slot {k} of {total} shards");
                if k % 4 == 0 {
                    resources[owners[0]] += 1;
                } else {
                    others[owners[0]] += 1;
                }
            }
            assert!(resources.iter().all(|n| *n == 100), "{resources:?}");
            assert!(others.iter().all(|n| *n == 300), "{others:?}");
        }
    }

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
