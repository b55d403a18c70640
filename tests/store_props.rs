//! Property tests of the store against a ground truth: whatever interleaving of partial
//! reads, repeated reads, missing periods, growing and (bogus) shrinking values CloudWatch
//! serves, the counter never goes down, never counts a period twice, and ends equal to the
//! final sums minus what the baseline read had already seen. And through outages of any
//! length, reads that reach back to where counting stood (as the poll loop makes them) count
//! every period CloudWatch published, once (invariants 1 to 3 of the store).

use std::collections::BTreeMap;
use std::sync::Arc;

use apigateway_exporter::model::{ApiType, Family, SeriesLabels, Stat};
use apigateway_exporter::source::Window;
use apigateway_exporter::store::{SeriesKey, Store};
use proptest::prelude::*;

const PERIOD: i64 = 60;
const LOOKBACK: i64 = 600;

fn key() -> SeriesKey {
    SeriesKey {
        family: Family::Requests,
        labels: Arc::new(SeriesLabels {
            account_id: "1".into(),
            region: "r".into(),
            api_id: "a".into(),
            api_name: "n".into(),
            api_type: ApiType::Http,
            stage: Some("s".into()),
            route: None,
            cause: None,
            function: None,
            receiver: None,
        }),
    }
}

fn total(store: &Store) -> f64 {
    store
        .iter(0)
        .next()
        .and_then(|(_, v)| v.counter(Stat::Sum))
        .unwrap_or(0.0)
}

/// One read of the window: for each period, whether it is served and how far it has grown.
#[derive(Debug, Clone)]
struct Read {
    advance: i64,
    periods: Vec<(bool, u8, bool)>,
}

fn reads() -> impl Strategy<Value = Vec<Read>> {
    let read = (
        0i64..=150,
        prop::collection::vec((any::<bool>(), 0u8..=100, prop::bool::weighted(0.05)), 12),
    )
        .prop_map(|(advance, periods)| Read { advance, periods });
    prop::collection::vec(read, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn counter_equals_ground_truth(finals in prop::collection::vec(0u32..1000, 64), reads in reads()) {
        let mut store = Store::new();
        let mut now: i64 = 100_000 * PERIOD + 17;
        let start = now;
        // What CloudWatch has published so far for each period, and what each read served.
        let mut published: BTreeMap<i64, f64> = BTreeMap::new();
        let mut baseline: BTreeMap<i64, f64> = BTreeMap::new();
        let mut served_max: BTreeMap<i64, f64> = BTreeMap::new();
        let mut previous_total = 0.0;
        let final_of = |t: i64| f64::from(finals[((t - start.div_euclid(PERIOD) * PERIOD) / PERIOD).rem_euclid(64) as usize]);

        let mut first = true;
        for read in reads.iter().chain(std::iter::once(&Read { advance: 0, periods: vec![(true, 100, false); 12] })) {
            now += read.advance;
            let window = Window::at(now, PERIOD, LOOKBACK);
            let mut points = Vec::new();
            for (i, t) in (window.start..window.end).step_by(PERIOD as usize).enumerate() {
                let (served, growth, shrink) = read.periods[i % read.periods.len()];
                let target = final_of(t);
                let p = published.entry(t).or_insert(0.0);
                // Counts are whole numbers, as CloudWatch sums of Count are.
                *p = (*p + (target * f64::from(growth) / 100.0).ceil()).min(target);
                if !served && !first {
                    continue;
                }
                // Now and then CloudWatch serves a smaller value than before: must be ignored.
                let value = if shrink { (*p - 1.0).max(0.0) } else { *p };
                points.push((t, value));
                if first {
                    baseline.insert(t, value);
                }
                let m = served_max.entry(t).or_insert(0.0);
                *m = m.max(value);
            }
            store.ingest(&key(), Stat::Sum, &window, &points);
            first = false;
            let now_total = total(&store);
            prop_assert!(now_total >= previous_total, "counter went down: {previous_total} -> {now_total}");
            previous_total = now_total;
        }
        // Every period was read while in the window (steps are shorter than the lookback),
        // so the counter is exactly the growth served beyond the baseline.
        let expected: f64 = served_max.iter().map(|(t, v)| v - baseline.get(t).copied().unwrap_or(0.0)).sum();
        prop_assert_eq!(total(&store), expected);
    }

    #[test]
    fn repeating_any_read_changes_nothing(values in prop::collection::vec(0u32..500, 11), repeats in 1usize..5) {
        let mut store = Store::new();
        let window = Window::at(100_000 * PERIOD + 5, PERIOD, LOOKBACK);
        store.ingest(&key(), Stat::Sum, &window, &[]);
        let points: Vec<(i64, f64)> = (window.start..window.end)
            .step_by(PERIOD as usize)
            .zip(&values)
            .map(|(t, v)| (t, f64::from(*v)))
            .collect();
        for _ in 0..repeats {
            store.ingest(&key(), Stat::Sum, &window, &points);
        }
        let sum: f64 = values.iter().map(|v| f64::from(*v)).sum();
        prop_assert_eq!(total(&store), sum);
    }

    #[test]
    fn outages_of_any_length_lose_nothing_when_reads_reach_back(
        finals in prop::collection::vec(0u32..1000, 64),
        steps in prop::collection::vec((1i64..=60, prop::bool::weighted(0.25), 61i64..=7200), 1..40),
    ) {
        // CloudWatch publishes a period's final value once it has ended, half of it before.
        let final_of = |t: i64| f64::from(finals[(t / PERIOD).rem_euclid(64) as usize]);
        let published = |t: i64, now: i64| if t + PERIOD <= now { final_of(t) } else { (final_of(t) / 2.0).floor() };
        let mut store = Store::new();
        let mut now: i64 = 100_000 * PERIOD + 17;
        // The baseline: remembered, not counted.
        let baseline = Window::at(now, PERIOD, LOOKBACK);
        let points: Vec<(i64, f64)> = (baseline.start..baseline.end).step_by(PERIOD as usize).map(|t| (t, published(t, now))).collect();
        let baselined: f64 = points.iter().map(|(_, v)| v).sum();
        store.ingest(&key(), Stat::Sum, &baseline, &points);
        let mut previous_total = 0.0;
        let read = |store: &mut Store, now: i64, complete: bool| {
            // As the poll loop plans it: reach back to the floor when it is more than one
            // interval (60 s) behind the lookback.
            let mut window = Window::at(now, PERIOD, LOOKBACK);
            if let Some(r) = store.resume_from(&key()).filter(|r| r.floor < window.keep_from - PERIOD) {
                window = window.reaching_back_to(r.floor);
            }
            let points: Vec<(i64, f64)> = (window.start..window.end)
                .step_by(PERIOD as usize)
                .map(|t| (t, if complete { final_of(t) } else { published(t, now) }))
                .collect();
            store.ingest(&key(), Stat::Sum, &window, &points);
            window.end
        };
        for (advance, outage, length) in steps {
            // An outage: time passes, no read succeeds; then the first good read.
            now += if outage { length } else { advance };
            read(&mut store, now, false);
            let total = total(&store);
            prop_assert!(total >= previous_total, "counter went down: {previous_total} -> {total}");
            previous_total = total;
        }
        let end = read(&mut store, now, true);
        let truth: f64 = (baseline.start..end).step_by(PERIOD as usize).map(final_of).sum::<f64>() - baselined;
        prop_assert_eq!(total(&store), truth);
    }
}
