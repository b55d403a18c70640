//! Counters are exact against ground truth through late data and an outage (invariants 1–3):
//! the increase of every counter equals the sum put into CloudWatch, periods re-read every
//! cycle are never counted twice, and periods missed while CloudWatch was unreachable are
//! fetched and counted once when it comes back.

mod common;

use std::time::Duration;

use common::{
    Datum, Exporter, Gate, create_v2_api, emulator_config, localstack, now_secs, put, unique,
};

const WAIT: Duration = Duration::from_secs(60);

fn cycles(m: &common::Metrics) -> f64 {
    m.value("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn late_data_and_an_outage_lose_nothing_and_count_nothing_twice() {
    let tag = unique("ex");
    let id = create_v2_api(&format!("exact-{tag}"), false, &["prod"]).await;
    let dims = [("ApiId", id.as_str()), ("Stage", "prod")];
    let gate = Gate::start(&localstack());
    let config = emulator_config(&tag, "").replace(
        &format!("cloudwatch: {}", localstack()),
        &format!("cloudwatch: {}", gate.url()),
    );
    let exporter = Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);
    let requests =
        |m: &common::Metrics| m.value("aws_apigateway_requests_total", &[("api_id", &id)]);
    exporter.scrape_until(WAIT, |m| requests(m) == Some(0.0));

    let minute = (now_secs() / 60) * 60;
    let (m3, m2, m1) = (minute - 180, minute - 120, minute - 60);
    let mut truth = 0.0;
    let mut put_count = |at: i64, value: f64| {
        truth += value;
        Datum {
            metric: "Count",
            dims: &dims,
            at,
            value,
        }
    };
    put(&[put_count(m3, 5.0), put_count(m2, 3.0)]).await;
    let m = exporter.scrape_until(WAIT, |m| requests(m) == Some(8.0));

    // Late data into a minute already read and counted.
    put(&[put_count(m3, 4.0)]).await;
    let m = exporter.scrape_until(WAIT, |n| {
        requests(n) == Some(12.0) && cycles(n) > cycles(&m)
    });
    // Re-read every cycle, counted once.
    let seen = cycles(&m);
    let m = exporter.scrape_until(WAIT, |n| cycles(n) >= seen + 3.0);
    assert_eq!(requests(&m), Some(12.0));

    // Outage: CloudWatch unreachable. Counters keep their values, up says so.
    gate.block(true);
    let m = exporter.scrape_until(WAIT, |n| {
        n.value("aws_apigateway_exporter_up", &[]) == Some(0.0)
    });
    put(&[put_count(m1, 6.0), put_count(m2, 2.0)]).await;
    let failing = cycles(&m);
    let m = exporter.scrape_until(WAIT, |n| cycles(n) >= failing + 2.0);
    assert_eq!(
        requests(&m),
        Some(12.0),
        "a failed cycle leaves counters as they were"
    );
    assert!(
        m.value(
            "aws_apigateway_exporter_cloudwatch_requests_total",
            &[("operation", "GetMetricData"), ("result", "error")]
        )
        .unwrap()
            > 0.0,
        "failed calls are counted"
    );

    // Recovery: the missed periods are fetched and counted once.
    gate.block(false);
    let m = exporter.scrape_until(WAIT, |n| {
        n.value("aws_apigateway_exporter_up", &[]) == Some(1.0) && requests(n) == Some(20.0)
    });
    let seen = cycles(&m);
    let m = exporter.scrape_until(WAIT, |n| cycles(n) >= seen + 3.0);
    let counted = requests(&m).unwrap();
    eprintln!(
        "ground truth {truth}, counted {counted}, error {}",
        (counted - truth).abs()
    );
    assert_eq!(counted, truth);
    assert_eq!(
        m.value("aws_apigateway_exporter_period_value_decreases_total", &[]),
        Some(0.0)
    );
}

/// Invariants 3 and 8 against the real SDK and LocalStack: an outage of more than twice the
/// lookback, with traffic going on and a config reload (SIGHUP) in the middle while every
/// AWS endpoint refuses connections. No series is dropped, no counter goes down, and after
/// recovery every counter equals ground truth: the first good cycle reads back to where
/// counting stood, not just the lookback.
#[tokio::test(flavor = "multi_thread")]
async fn an_outage_of_twice_the_lookback_with_a_reload_loses_nothing() {
    let tag = unique("ol");
    let id = create_v2_api(&format!("outage-{tag}"), false, &["prod"]).await;
    let dims = [("ApiId", id.as_str()), ("Stage", "prod")];
    let aws = Gate::start(&localstack());
    let v2 = Gate::start(&common::moto());
    let config = |refresh: &str| {
        emulator_config(&tag, "")
            .replace("lookback: 10m", "lookback: 1m")
            .replace(
                "refresh_interval: 2s",
                &format!("refresh_interval: {refresh}"),
            )
            .replace(&localstack(), &aws.url())
            .replace(&common::moto(), &v2.url())
    };
    let exporter = Exporter::start(&config("2s"), &[]);
    exporter.wait_ready(WAIT);
    let requests =
        |m: &common::Metrics| m.value("aws_apigateway_requests_total", &[("api_id", &id)]);
    exporter.scrape_until(WAIT, |m| requests(m) == Some(0.0));
    // Requests in the current minute, as traffic that goes on arrives.
    let count_now = |value: f64| Datum {
        metric: "Count",
        dims: &dims,
        at: (now_secs() / 60) * 60,
        value,
    };
    let mut truth = 0.0;
    put(&[count_now(2.0)]).await;
    truth += 2.0;
    exporter.scrape_until(WAIT, |m| requests(m) == Some(truth));

    // Everything down: CloudWatch, STS, API Gateway v1 and v2.
    aws.block(true);
    v2.block(true);
    let m = exporter.scrape_until(WAIT, |n| {
        n.value("aws_apigateway_exporter_up", &[]) == Some(0.0)
    });
    let _ = m;
    let started = std::time::Instant::now();
    let mut reloaded = false;
    // 150 s: past twice the 1-minute lookback plus a period, traffic every 20 s.
    while started.elapsed() < Duration::from_secs(150) {
        put(&[count_now(1.0)]).await;
        truth += 1.0;
        if !reloaded && started.elapsed() > Duration::from_secs(40) {
            exporter.write_config(&config("3s"));
            exporter.signal("HUP");
            reloaded = true;
        }
        tokio::time::sleep(Duration::from_secs(20)).await;
        let m = exporter.scrape();
        assert_eq!(
            requests(&m),
            Some(2.0),
            "no counter reset or dropped in the outage"
        );
        assert_eq!(
            m.value("aws_apigateway_stage_info", &[("api_id", &id)]),
            Some(1.0),
            "the inventory outlives the reload"
        );
    }
    assert!(reloaded);

    aws.block(false);
    v2.block(false);
    let m = exporter.scrape_until(WAIT, |n| {
        n.value("aws_apigateway_exporter_up", &[]) == Some(1.0) && requests(n) == Some(truth)
    });
    let seen = cycles(&m);
    let m = exporter.scrape_until(WAIT, |n| cycles(n) >= seen + 3.0);
    let counted = requests(&m).unwrap();
    eprintln!(
        "outage of 150 s (lookback 60 s): ground truth {truth}, counted {counted}, error {}",
        (counted - truth).abs()
    );
    assert_eq!(counted, truth);
    assert_eq!(
        m.value("aws_apigateway_exporter_periods_lost_total", &[]),
        Some(0.0)
    );
}
