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
