//! The core pipeline end to end against the emulators: REST APIs in LocalStack, HTTP and
//! WebSocket APIs in moto, datapoints in LocalStack's CloudWatch, the real binary, and
//! exact values and labels on `/metrics`.

mod common;

use std::time::Duration;

use common::{
    Datum, Exporter, create_rest_api, create_v2_api, emulator_config, now_secs, put, put_in, unique,
};

const WAIT: Duration = Duration::from_secs(45);

#[tokio::test(flavor = "multi_thread")]
async fn every_api_type_lands_in_the_contract_families_with_the_right_labels() {
    let tag = unique("pl");
    let orders = format!("orders-{tag}");
    let cafe = format!("café-{tag}");
    let dup = format!("dup-{tag}");
    let http = format!("http-{tag}");
    let ws = format!("ws-{tag}");

    let orders_id = create_rest_api(&orders, &["prod"]).await;
    let cafe_id = create_rest_api(&cafe, &["prod"]).await;
    let dup_a = create_rest_api(&dup, &["prod", "solo"]).await;
    let dup_b = create_rest_api(&dup, &["prod"]).await;
    let http_id = create_v2_api(&http, false, &["$default"]).await;
    let ws_id = create_v2_api(&ws, true, &["prod"]).await;

    let exporter = Exporter::start(&emulator_config(&tag, ""), &[]);
    exporter.wait_ready(WAIT);
    // The first cycle is the baseline; everything put from here on is counted exactly.
    let at = (now_secs() / 60) * 60 - 120;
    let cafe_cw = format!("caf-{tag}"); // CloudWatch drops non-ASCII characters from ApiName
    put(&[
        Datum {
            metric: "Count",
            dims: &[("ApiName", &orders), ("Stage", "prod")],
            at,
            value: 10.0,
        },
        Datum {
            metric: "4XXError",
            dims: &[("ApiName", &orders), ("Stage", "prod")],
            at,
            value: 2.0,
        },
        Datum {
            metric: "5XXError",
            dims: &[("ApiName", &orders), ("Stage", "prod")],
            at,
            value: 1.0,
        },
        Datum {
            metric: "Count",
            dims: &[("ApiName", &cafe_cw), ("Stage", "prod")],
            at,
            value: 7.0,
        },
        Datum {
            metric: "Count",
            dims: &[("ApiName", &dup), ("Stage", "prod")],
            at,
            value: 5.0,
        },
        Datum {
            metric: "Count",
            dims: &[("ApiName", &dup), ("Stage", "solo")],
            at,
            value: 3.0,
        },
        Datum {
            metric: "Count",
            dims: &[("ApiId", &http_id), ("Stage", "$default")],
            at,
            value: 20.0,
        },
        Datum {
            metric: "4xx",
            dims: &[("ApiId", &http_id), ("Stage", "$default")],
            at,
            value: 4.0,
        },
        Datum {
            metric: "5xx",
            dims: &[("ApiId", &http_id), ("Stage", "$default")],
            at,
            value: 3.0,
        },
        Datum {
            metric: "DataProcessed",
            dims: &[("ApiId", &http_id), ("Stage", "$default")],
            at,
            value: 1000.0,
        },
        Datum {
            metric: "ConnectCount",
            dims: &[("ApiId", &ws_id), ("Stage", "prod")],
            at,
            value: 2.0,
        },
        Datum {
            metric: "MessageCount",
            dims: &[("ApiId", &ws_id), ("Stage", "prod")],
            at,
            value: 30.0,
        },
        Datum {
            metric: "IntegrationError",
            dims: &[("ApiId", &ws_id), ("Stage", "prod")],
            at,
            value: 1.0,
        },
        Datum {
            metric: "ClientError",
            dims: &[("ApiId", &ws_id), ("Stage", "prod")],
            at,
            value: 4.0,
        },
        Datum {
            metric: "ExecutionError",
            dims: &[("ApiId", &ws_id), ("Stage", "prod")],
            at,
            value: 5.0,
        },
    ])
    .await;

    // Latency in every minute around now, so whichever period is the latest settled one
    // when the test scrapes, its Maximum is 750 ms: five minutes × two samples.
    let minute = (now_secs() / 60) * 60;
    let orders_prod = [("ApiName", orders.as_str()), ("Stage", "prod")];
    let mut latency = Vec::new();
    for t in (-4..=0).map(|k| minute + 60 * k) {
        for value in [250.0, 750.0] {
            latency.push(Datum {
                metric: "Latency",
                dims: &orders_prod,
                at: t,
                value,
            });
        }
    }
    put(&latency).await;
    let m = exporter.scrape_until(WAIT, |m| {
        m.value(
            "aws_apigateway_websocket_execution_errors_total",
            &[("api_id", &ws_id)],
        ) == Some(5.0)
            && m.value(
                "aws_apigateway_requests_total",
                &[("api_id", &orders_id), ("stage", "prod")],
            ) == Some(10.0)
    });

    // REST: joined from ApiName to the id, with the contract's labels.
    let s = m.find("aws_apigateway_requests_total", &[("api_id", &orders_id)]);
    assert_eq!(s.len(), 1, "{s:?}");
    let labels = &s[0].labels;
    assert_eq!(labels["api_name"], orders);
    assert_eq!(labels["api_type"], "rest");
    assert_eq!(labels["stage"], "prod");
    assert_eq!(labels["region"], "us-east-1");
    assert_eq!(labels["account_id"].len(), 12, "{labels:?}");
    assert_eq!(
        m.value("aws_apigateway_4xx_errors_total", &[("api_id", &orders_id)]),
        Some(2.0)
    );
    assert_eq!(
        m.value("aws_apigateway_5xx_errors_total", &[("api_id", &orders_id)]),
        Some(1.0)
    );
    let m = exporter.scrape_until(WAIT, |m| {
        m.value(
            "aws_apigateway_latency_seconds_count",
            &[("api_id", &orders_id)],
        ) == Some(10.0)
    });
    assert_eq!(
        m.value(
            "aws_apigateway_latency_seconds_sum",
            &[("api_id", &orders_id)]
        ),
        Some(5.0)
    );
    assert_eq!(
        m.value(
            "aws_apigateway_latency_max_seconds",
            &[("api_id", &orders_id)]
        ),
        Some(0.75)
    );

    // A non-ASCII name: CloudWatch's stripped name is joined back to the real one.
    assert_eq!(
        m.value(
            "aws_apigateway_requests_total",
            &[("api_id", &cafe_id), ("api_name", &cafe)]
        ),
        Some(7.0)
    );

    // Two REST APIs sharing a name: the shared stage is not exported for either, the stage
    // only one of them has is, and the conflict is counted.
    for id in [&dup_a, &dup_b] {
        assert_eq!(
            m.value(
                "aws_apigateway_requests_total",
                &[("api_id", id), ("stage", "prod")]
            ),
            None
        );
    }
    assert_eq!(
        m.value(
            "aws_apigateway_requests_total",
            &[("api_id", &dup_a), ("stage", "solo")]
        ),
        Some(3.0)
    );
    assert_eq!(
        m.value(
            "aws_apigateway_exporter_rest_name_conflicts",
            &[("region", "us-east-1")]
        ),
        Some(2.0)
    );
    assert_eq!(
        m.find("aws_apigateway_api_info", &[("api_name", &dup)])
            .len(),
        2
    );

    // HTTP: lower-case 4xx/5xx land in the same families as REST; $default stays as is.
    let h = [
        ("api_id", http_id.as_str()),
        ("stage", "$default"),
        ("api_type", "http"),
    ];
    assert_eq!(m.value("aws_apigateway_requests_total", &h), Some(20.0));
    assert_eq!(m.value("aws_apigateway_4xx_errors_total", &h), Some(4.0));
    assert_eq!(m.value("aws_apigateway_5xx_errors_total", &h), Some(3.0));
    assert_eq!(
        m.value("aws_apigateway_processed_bytes_total", &h),
        Some(1000.0)
    );

    // WebSocket families.
    let w = [
        ("api_id", ws_id.as_str()),
        ("stage", "prod"),
        ("api_type", "websocket"),
    ];
    assert_eq!(
        m.value("aws_apigateway_websocket_connects_total", &w),
        Some(2.0)
    );
    assert_eq!(
        m.value("aws_apigateway_websocket_messages_total", &w),
        Some(30.0)
    );
    assert_eq!(
        m.value("aws_apigateway_websocket_integration_errors_total", &w),
        Some(1.0)
    );
    assert_eq!(
        m.value("aws_apigateway_websocket_client_errors_total", &w),
        Some(4.0)
    );
    assert_eq!(
        m.value("aws_apigateway_websocket_execution_errors_total", &w),
        Some(5.0)
    );
    assert_eq!(
        m.value("aws_apigateway_requests_total", &w),
        None,
        "no Count family for WebSocket"
    );

    // Inventory gauges.
    assert_eq!(
        m.value(
            "aws_apigateway_stage_info",
            &[("api_id", &http_id), ("stage", "$default")]
        ),
        Some(1.0)
    );
    assert_eq!(m.value("aws_apigateway_exporter_up", &[]), Some(1.0));

    // One cycle of this inventory fits one GetMetricData call.
    let before = m
        .value(
            "aws_apigateway_exporter_cloudwatch_requests_total",
            &[("result", "success")],
        )
        .unwrap();
    let cycles_before = m
        .value("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
        .unwrap();
    let later = exporter.scrape_until(WAIT, |n| {
        n.value("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
            .unwrap()
            >= cycles_before + 3.0
    });
    let calls = later
        .value(
            "aws_apigateway_exporter_cloudwatch_requests_total",
            &[("result", "success")],
        )
        .unwrap()
        - before;
    let cycles = later
        .value("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
        .unwrap()
        - cycles_before;
    assert_eq!(calls, cycles, "one GetMetricData call per cycle");
    eprintln!(
        "GetMetricData calls per cycle for the test inventory: {}",
        calls / cycles
    );

    let complaints = common::promtool_check_metrics(&later.text);
    assert!(
        complaints.is_empty(),
        "promtool check metrics:\n{complaints}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_metric_filter_counts_429s_by_reason() {
    let tag = unique("al");
    let rest_id = create_rest_api(&format!("logs-{tag}"), &["prod"]).await;
    let namespace = format!("Test/AccessLogs/{tag}");
    let extra = format!(
        "access_logs:\n  mode: metric_filter\n  namespace: {namespace}\n  metric_name: ThrottledRequests\n"
    );
    let exporter = Exporter::start(&emulator_config(&tag, &extra), &[]);
    exporter.wait_ready(WAIT);
    let at = (now_secs() / 60) * 60 - 60;
    let dims = |reason: &'static str| {
        [
            ("ApiId", rest_id.clone()),
            ("Stage", "prod".to_string()),
            ("Reason", reason.to_string()),
        ]
    };
    let (throttled, quota) = (dims("THROTTLED"), dims("QUOTA_EXCEEDED"));
    let t: Vec<(&str, &str)> = throttled.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let q: Vec<(&str, &str)> = quota.iter().map(|(k, v)| (*k, v.as_str())).collect();
    put_in(
        &namespace,
        &[
            Datum {
                metric: "ThrottledRequests",
                dims: &t,
                at,
                value: 1.0,
            },
            Datum {
                metric: "ThrottledRequests",
                dims: &t,
                at,
                value: 1.0,
            },
            Datum {
                metric: "ThrottledRequests",
                dims: &t,
                at,
                value: 1.0,
            },
            Datum {
                metric: "ThrottledRequests",
                dims: &q,
                at,
                value: 1.0,
            },
        ],
    )
    .await;
    let labels = |reason| {
        [
            ("api_id", rest_id.as_str()),
            ("stage", "prod"),
            ("reason", reason),
        ]
    };
    let m = exporter.scrape_until(WAIT, |m| {
        m.value(
            "aws_apigateway_throttled_requests_total",
            &labels("throttled"),
        ) == Some(3.0)
            && m.value(
                "aws_apigateway_throttled_requests_total",
                &labels("quota_exceeded"),
            ) == Some(1.0)
    });
    let s = m.find(
        "aws_apigateway_throttled_requests_total",
        &labels("throttled"),
    );
    assert_eq!(s[0].labels["api_type"], "rest");
}
