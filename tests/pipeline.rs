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
            &[("operation", "GetMetricData"), ("result", "success")],
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
            &[("operation", "GetMetricData"), ("result", "success")],
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

#[tokio::test(flavor = "multi_thread")]
async fn throttle_limits_and_integration_timeouts_come_from_discovery() {
    use aws_sdk_apigateway::types::IntegrationType;
    use aws_sdk_apigatewayv2::types::{IntegrationType as V2Type, RouteSettings};
    let tag = unique("lim");

    // REST in LocalStack: GET / with a 12 s integration timeout, stage throttle 100/200.
    let gw = common::apigateway();
    let rest_id = gw
        .create_rest_api()
        .name(format!("lim-{tag}"))
        .send()
        .await
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    let root = gw
        .get_resources()
        .rest_api_id(&rest_id)
        .send()
        .await
        .unwrap()
        .items()[0]
        .id()
        .unwrap()
        .to_string();
    gw.put_method()
        .rest_api_id(&rest_id)
        .resource_id(&root)
        .http_method("GET")
        .authorization_type("NONE")
        .send()
        .await
        .unwrap();
    gw.put_integration()
        .rest_api_id(&rest_id)
        .resource_id(&root)
        .http_method("GET")
        .r#type(IntegrationType::Mock)
        .timeout_in_millis(12_000)
        .send()
        .await
        .unwrap();
    gw.create_deployment()
        .rest_api_id(&rest_id)
        .stage_name("prod")
        .send()
        .await
        .unwrap();
    common::patch_stage(
        &rest_id,
        "prod",
        &[
            ("/*/*/throttling/rateLimit", "100"),
            ("/*/*/throttling/burstLimit", "200"),
        ],
    )
    .await;

    // HTTP in moto: GET /pets → integration with a 7 s timeout; stage throttle 50/100.
    let v2 = common::apigatewayv2();
    let http_id = create_v2_api(&format!("limh-{tag}"), false, &[]).await;
    let integration = v2
        .create_integration()
        .api_id(&http_id)
        .integration_type(V2Type::HttpProxy)
        .integration_method("GET")
        .integration_uri("https://example.com")
        .payload_format_version("1.0")
        .timeout_in_millis(7_000)
        .send()
        .await
        .unwrap();
    v2.create_route()
        .api_id(&http_id)
        .route_key("GET /pets")
        .target(format!(
            "integrations/{}",
            integration.integration_id().unwrap()
        ))
        .send()
        .await
        .unwrap();
    v2.create_stage()
        .api_id(&http_id)
        .stage_name("prod")
        .default_route_settings(
            RouteSettings::builder()
                .throttling_rate_limit(50.0)
                .throttling_burst_limit(100)
                .build(),
        )
        .send()
        .await
        .unwrap();

    // A usage plan on the REST stage: its throttle and quota apply to every API key.
    {
        use aws_sdk_apigateway::types::{
            ApiStage, QuotaPeriodType, QuotaSettings, ThrottleSettings,
        };
        gw.create_usage_plan()
            .name(format!("plan-{tag}"))
            .api_stages(ApiStage::builder().api_id(&rest_id).stage("prod").build())
            .throttle(
                ThrottleSettings::builder()
                    .rate_limit(20.0)
                    .burst_limit(40)
                    .build(),
            )
            .quota(
                QuotaSettings::builder()
                    .limit(5_000)
                    .period(QuotaPeriodType::Week)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let exporter = Exporter::start(&emulator_config(&tag, ""), &[]);
    exporter.wait_ready(WAIT);
    let m = exporter.scrape_until(WAIT, |m| {
        !m.find(
            "aws_apigateway_integration_timeout_seconds",
            &[("api_id", &http_id)],
        )
        .is_empty()
    });
    assert_eq!(
        m.value(
            "aws_apigateway_integration_timeout_seconds",
            &[("api_id", &rest_id), ("resource", "/"), ("method", "GET")]
        ),
        Some(12.0)
    );
    assert_eq!(
        m.value(
            "aws_apigateway_integration_timeout_seconds",
            &[
                ("api_id", &http_id),
                ("resource", "/pets"),
                ("method", "GET")
            ]
        ),
        Some(7.0)
    );
    let stage = |id: &str| {
        m.value(
            "aws_apigateway_throttle_rate_limit",
            &[("api_id", id), ("scope", "stage")],
        )
    };
    assert_eq!(stage(&rest_id), Some(100.0));
    assert_eq!(stage(&http_id), Some(50.0));
    assert_eq!(
        m.value(
            "aws_apigateway_throttle_burst_limit",
            &[("api_id", &http_id), ("scope", "stage")]
        ),
        Some(100.0)
    );
    assert!(
        m.value(
            "aws_apigateway_throttle_rate_limit",
            &[("scope", "account"), ("region", "us-east-1")]
        )
        .is_some()
    );
    let plan_name = format!("plan-{tag}");
    let plan = [
        ("api_id", rest_id.as_str()),
        ("stage", "prod"),
        ("usage_plan_name", plan_name.as_str()),
    ];
    assert_eq!(
        m.value(
            "aws_apigateway_throttle_rate_limit",
            &[plan[0], plan[1], plan[2], ("scope", "usage_plan")]
        ),
        Some(20.0)
    );
    assert_eq!(
        m.value(
            "aws_apigateway_usage_plan_quota_limit",
            &[plan[0], plan[1], plan[2], ("period", "WEEK")]
        ),
        Some(5_000.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_log_events_counts_each_429_once_from_the_stage_access_logs() {
    use aws_sdk_cloudwatchlogs::types::InputLogEvent;
    let tag = unique("fl");
    let rest_id = create_rest_api(&format!("flog-{tag}"), &["prod"]).await;
    let group = format!("/aws/apigateway/access/{tag}");
    let logs = common::logs();
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("s1")
        .send()
        .await
        .unwrap();
    let destination = format!("arn:aws:logs:us-east-1:000000000000:log-group:{group}");
    let format = r#"{"apiId":"$context.apiId","stage":"$context.stage","status":$context.status,"responseType":"$context.error.responseType"}"#;
    common::patch_stage(
        &rest_id,
        "prod",
        &[
            ("/accessLogSettings/destinationArn", &destination),
            ("/accessLogSettings/format", format),
        ],
    )
    .await;

    let extra = "access_logs:\n  mode: filter_log_events\n";
    let exporter = Exporter::start(&emulator_config(&tag, extra), &[]);
    exporter.wait_ready(WAIT);
    let at_ms = ((now_secs() / 60) * 60 - 60) * 1000 + 5_000;
    let line = |status: u16, reason: &str| {
        format!(
            r#"{{"apiId":"{rest_id}","stage":"prod","status":{status},"responseType":"{reason}"}}"#
        )
    };
    let put_lines = |lines: Vec<String>| {
        let logs = logs.clone();
        let group = group.clone();
        async move {
            let events: Vec<InputLogEvent> = lines
                .into_iter()
                .enumerate()
                .map(|(i, m)| {
                    InputLogEvent::builder()
                        .timestamp(at_ms + i as i64)
                        .message(m)
                        .build()
                        .unwrap()
                })
                .collect();
            logs.put_log_events()
                .log_group_name(&group)
                .log_stream_name("s1")
                .set_log_events(Some(events))
                .send()
                .await
                .unwrap();
        }
    };
    put_lines(vec![
        line(429, "THROTTLED"),
        line(429, "THROTTLED"),
        line(200, "-"),
        line(429, "THROTTLED"),
        line(429, "QUOTA_EXCEEDED"),
        line(200, "-"),
    ])
    .await;
    let labels = |reason| {
        [
            ("api_id", rest_id.as_str()),
            ("stage", "prod"),
            ("reason", reason),
        ]
    };
    let count = |m: &common::Metrics, reason| {
        m.value("aws_apigateway_throttled_requests_total", &labels(reason))
    };
    exporter.scrape_until(WAIT, |m| {
        count(m, "throttled") == Some(3.0) && count(m, "quota_exceeded") == Some(1.0)
    });

    // Late events into the same minute: counted once, and never again on later cycles.
    put_lines(vec![line(429, "THROTTLED"), line(429, "THROTTLED")]).await;
    let m = exporter.scrape_until(WAIT, |m| count(m, "throttled") == Some(5.0));
    let cycles = |m: &common::Metrics| {
        m.value("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
            .unwrap()
    };
    let seen = cycles(&m);
    let m = exporter.scrape_until(WAIT, |n| cycles(n) >= seen + 3.0);
    assert_eq!(count(&m, "throttled"), Some(5.0));
    assert_eq!(count(&m, "quota_exceeded"), Some(1.0));
    assert!(
        m.value(
            "aws_apigateway_exporter_aws_requests_total",
            &[("service", "logs"), ("result", "success")]
        )
        .unwrap()
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_prints_the_plan_and_the_signals_of_each_stage() {
    let tag = unique("cc");
    let rest_id = create_rest_api(&format!("plan-{tag}"), &["prod"]).await;
    let http_id = create_v2_api(&format!("planh-{tag}"), false, &["$default"]).await;
    let stdout = common::check_config(&emulator_config(
        &tag,
        "access_logs:\n  mode: filter_log_events\n",
    ));
    assert!(
        stdout.contains("2 APIs (rest 1, http 1, websocket 0), 2 stages"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&rest_id) && stdout.contains(&http_id),
        "{stdout}"
    );
    assert!(
        stdout.contains("stage prod: traffic/latency: yes; detailed metrics: off"),
        "{stdout}"
    );
    assert!(
        stdout.contains("429s: unavailable (the stage writes no access logs"),
        "{stdout}"
    );
    // 9 REST + 10 HTTP queries with latency [max]: one GetMetricData call per cycle.
    assert!(
        stdout.contains("series queried: 19  GetMetricData calls per cycle: 1"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn route_level_families_follow_the_dimension_sets_list_metrics_finds() {
    let tag = unique("rt");
    let rest = format!("routes-{tag}");
    let rest_id = create_rest_api(&rest, &["prod"]).await;
    // Detailed metrics on: `auto` reads it from the stage's method settings.
    common::patch_stage(&rest_id, "prod", &[("/*/*/metrics/enabled", "true")]).await;
    let ws_id = create_v2_api(&format!("routesw-{tag}"), true, &["prod"]).await;
    let minute = (now_secs() / 60) * 60;
    let rest_route = [
        ("ApiName", rest.as_str()),
        ("Stage", "prod"),
        ("Method", "GET"),
        ("Resource", "/pets/{id}"),
    ];
    let ws_route = [
        ("ApiId", ws_id.as_str()),
        ("Stage", "prod"),
        ("Route", "sendMessage"),
    ];
    put(&[
        Datum {
            metric: "Count",
            dims: &rest_route,
            at: minute - 180,
            value: 4.0,
        },
        Datum {
            metric: "MessageCount",
            dims: &ws_route,
            at: minute - 180,
            value: 9.0,
        },
    ])
    .await;

    // The WebSocket stage has no detailed-metrics flag in moto: `on` asks ListMetrics anyway.
    let config = emulator_config(&tag, "").replace(
        "      include:",
        "      detailed_metrics: \"on\"\n      include:",
    );
    let exporter = Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);
    let rest_labels = [
        ("api_id", rest_id.as_str()),
        ("stage", "prod"),
        ("method", "GET"),
        ("resource", "/pets/{id}"),
    ];
    let ws_labels = [
        ("api_id", ws_id.as_str()),
        ("stage", "prod"),
        ("route", "sendMessage"),
    ];
    // Discovered series start at their baseline: what was there before is not counted.
    exporter.scrape_until(WAIT, |m| {
        m.value("aws_apigateway_route_requests_total", &rest_labels) == Some(0.0)
            && m.value("aws_apigateway_route_websocket_messages_total", &ws_labels) == Some(0.0)
    });
    put(&[
        Datum {
            metric: "Count",
            dims: &rest_route,
            at: minute - 60,
            value: 6.0,
        },
        Datum {
            metric: "MessageCount",
            dims: &ws_route,
            at: minute - 60,
            value: 11.0,
        },
    ])
    .await;
    let m = exporter.scrape_until(WAIT, |m| {
        m.value("aws_apigateway_route_requests_total", &rest_labels) == Some(6.0)
            && m.value("aws_apigateway_route_websocket_messages_total", &ws_labels) == Some(11.0)
    });
    // Route-level series never land in the stage-level families.
    assert_eq!(
        m.find(
            "aws_apigateway_requests_total",
            &[("api_id", &rest_id), ("method", "GET")]
        )
        .len(),
        0
    );
    assert_eq!(
        m.value(
            "aws_apigateway_stage_info",
            &[("api_id", &rest_id), ("detailed_metrics", "true")]
        ),
        Some(1.0)
    );
    assert!(
        m.value(
            "aws_apigateway_exporter_cloudwatch_requests_total",
            &[("operation", "ListMetrics"), ("result", "success")]
        )
        .unwrap()
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_shard_replicas_export_each_series_exactly_once() {
    use std::collections::BTreeMap;
    let tag = unique("sh");
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(create_rest_api(&format!("shard{i}-{tag}"), &["prod"]).await);
    }
    ids.push(create_v2_api(&format!("shardh-{tag}"), false, &["$default"]).await);
    ids.push(create_v2_api(&format!("shardw-{tag}"), true, &["prod"]).await);
    let whole = Exporter::start(&emulator_config(&tag, ""), &[]);
    let shards: Vec<Exporter> = (0..3)
        .map(|i| {
            Exporter::start(
                &emulator_config(&tag, &format!("shard:\n  index: {i}\n  total: 3\n")),
                &[],
            )
        })
        .collect();
    // Each discovery to its end (the shards take turns on one budget).
    for e in std::iter::once(&whole).chain(&shards) {
        e.wait_ready(WAIT);
    }
    // The series of the test's APIs and the account-level ones (not the exporter's own),
    // by name and labels.
    let series = |m: &common::Metrics| -> Vec<(String, BTreeMap<String, String>)> {
        m.samples
            .iter()
            .filter(|s| !s.name.starts_with("aws_apigateway_exporter_"))
            .filter(|s| match s.labels.get("api_id") {
                Some(id) => ids.contains(id),
                None => s.labels.get("scope").map(String::as_str) == Some("account"),
            })
            .map(|s| (s.name.clone(), s.labels.clone()))
            .collect()
    };
    // Wait until the whole exporter sees every API's stage, then compare.
    let m = whole.scrape_until(WAIT, |m| {
        ids.iter().all(|id| {
            !m.find("aws_apigateway_stage_info", &[("api_id", id.as_str())])
                .is_empty()
        })
    });
    let mut want = series(&m);
    want.sort();
    assert!(
        want.iter()
            .any(|(n, l)| n == "aws_apigateway_throttle_rate_limit"
                && l.get("scope").map(String::as_str) == Some("account")),
        "the account's limit is exported: {want:?}"
    );
    let mut got: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let m = shard.scrape();
        let mine = series(&m);
        let accounts = mine
            .iter()
            .filter(|(_, l)| l.get("scope").map(String::as_str) == Some("account"))
            .count();
        assert_eq!(
            accounts > 0,
            i == 0,
            "only shard 0 exports account-level series"
        );
        got.extend(mine);
    }
    got.sort();
    assert_eq!(
        got, want,
        "together the shards export every series exactly once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_stages_are_polled_less_and_their_counters_stay_exact() {
    let tag = unique("id");
    let busy = format!("busy-{tag}");
    let quiet = format!("quiet-{tag}");
    let busy_id = create_rest_api(&busy, &["prod"]).await;
    let quiet_id = create_rest_api(&quiet, &["prod"]).await;
    let config = emulator_config(&tag, "").replace(
        "  settle: 0s\n",
        "  settle: 0s\n  idle:\n    after: 3s\n    interval: 8s\n",
    );
    let plan = common::check_config(&config);
    assert!(
        plan.contains("idle stages (poll.idle): a stage without traffic for 3s is read every 8s instead of every 1s: its API Gateway queries cost 12.5 % of the figures above"),
        "{plan}"
    );
    let exporter = Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);
    let minute = (now_secs() / 60) * 60;
    put(&[Datum {
        metric: "Count",
        dims: &[("ApiName", &busy), ("Stage", "prod")],
        at: minute - 60,
        value: 10.0,
    }])
    .await;
    let idle = |m: &common::Metrics| m.value("aws_apigateway_exporter_idle_stages", &[]);
    let requests = |m: &common::Metrics, id: &str| {
        m.value(
            "aws_apigateway_requests_total",
            &[("api_id", id), ("stage", "prod")],
        )
    };
    // The quiet stage goes idle; the busy one, with traffic in its window, does not.
    let m = exporter.scrape_until(WAIT, |m| {
        idle(m) == Some(1.0) && requests(m, &busy_id) == Some(10.0)
    });
    let cycles = |m: &common::Metrics| {
        m.value("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
            .unwrap()
    };
    let billed = |m: &common::Metrics| {
        m.value(
            "aws_apigateway_exporter_cloudwatch_metrics_requested_total",
            &[],
        )
        .unwrap()
    };
    let (c0, b0) = (cycles(&m), billed(&m));
    let m = exporter.scrape_until(WAIT, |m| cycles(m) >= c0 + 24.0);
    let per_cycle = (billed(&m) - b0) / (cycles(&m) - c0);
    eprintln!(
        "metrics requested per cycle with one of two stages idle: {per_cycle:.2} (18 without poll.idle)"
    );
    // 9 queries a stage per cycle (REST, latency [max]): 18 without idle polling; with it,
    // 9 for the busy stage and 9 every 8 s for the quiet one: 10.1, a ratio of 0.56.
    assert!(
        per_cycle <= 18.0 * 0.65,
        "metrics requested per cycle: {per_cycle} (18 without poll.idle)"
    );
    assert_eq!(idle(&m), Some(1.0));
    // Traffic arrives while the stage is read slowly: all of it is counted, once.
    put(&[
        Datum {
            metric: "Count",
            dims: &[("ApiName", &quiet), ("Stage", "prod")],
            at: minute - 60,
            value: 7.0,
        },
        Datum {
            metric: "Count",
            dims: &[("ApiName", &quiet), ("Stage", "prod")],
            at: minute - 120,
            value: 5.0,
        },
    ])
    .await;
    let m = exporter.scrape_until(WAIT, |m| {
        requests(m, &quiet_id) == Some(12.0) && idle(m) == Some(0.0)
    });
    let seen = cycles(&m);
    let m = exporter.scrape_until(WAIT, |m| cycles(m) >= seen + 3.0);
    assert_eq!(requests(&m, &quiet_id), Some(12.0));
    assert_eq!(requests(&m, &busy_id), Some(10.0));
    assert_eq!(
        m.value("aws_apigateway_exporter_periods_lost_total", &[])
            .unwrap_or(0.0),
        0.0
    );
}
