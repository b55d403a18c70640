//! Causes end to end against the emulators: responses by status, response type and route
//! counted from access log events in LocalStack's CloudWatch Logs (REST stages) and for an
//! HTTP API from moto, with late events; what each route integrates with.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    Exporter, Metrics, create_rest_api, create_v2_api, emulator_config, now_secs, unique,
};

const WAIT: Duration = Duration::from_secs(60);

/// One access log line the test writes, and what it should count as.
#[derive(Debug, Clone)]
struct Line {
    api: String,
    stage: &'static str,
    status: u16,
    response_type: &'static str,
    /// REST: (resource, method); HTTP: the route key.
    route: Route,
    minute: i64,
}

#[derive(Debug, Clone)]
enum Route {
    Method(&'static str, &'static str),
    Key(&'static str),
}

impl Line {
    fn json(&self) -> String {
        let (resource, method, route_key) = match self.route {
            Route::Method(r, m) => (r, m, "-"),
            Route::Key(k) => ("-", "-", k),
        };
        format!(
            r#"{{"requestId":"r","apiId":"{}","stage":"{}","status":{},"responseType":"{}","resourcePath":"{resource}","httpMethod":"{method}","routeKey":"{route_key}"}}"#,
            self.api, self.stage, self.status, self.response_type
        )
    }

    /// The stage-level and route-level label sets this line counts under (none below 400).
    fn counted(&self) -> Vec<(String, BTreeMap<String, String>)> {
        if self.status < 400 {
            return Vec::new();
        }
        let stage = BTreeMap::from([
            ("api_id".to_string(), self.api.clone()),
            ("stage".to_string(), self.stage.to_string()),
            ("status".to_string(), self.status.to_string()),
            (
                "response_type".to_string(),
                if self.response_type == "-" {
                    "none".to_string()
                } else {
                    self.response_type.to_string()
                },
            ),
        ]);
        let mut route = stage.clone();
        match self.route {
            Route::Method(r, m) => {
                route.insert("resource".into(), r.into());
                route.insert("method".into(), m.into());
            }
            Route::Key(k) => match k.split_once(' ') {
                Some((m, r)) => {
                    route.insert("resource".into(), r.into());
                    route.insert("method".into(), m.into());
                }
                None => {
                    route.insert("route".into(), k.into());
                }
            },
        }
        vec![
            ("aws_apigateway_responses_total".to_string(), stage),
            ("aws_apigateway_route_responses_total".to_string(), route),
        ]
    }
}

/// Writes `lines` into `group`, each at its minute (plus a few ms, in order).
async fn put_lines(group: &str, lines: &[Line], base: i64) {
    let mut lines: Vec<&Line> = lines.iter().collect();
    lines.sort_by_key(|l| l.minute);
    let events: Vec<(i64, String)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| ((base + l.minute * 60) * 1000 + 1_000 + i as i64, l.json()))
        .collect();
    common::put_events(group, &events).await;
}

/// Every responses series of `apis` on `/metrics`, keyed by name and the labels the test
/// compares.
fn responses(m: &Metrics, apis: &[&str]) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let keep = [
        "api_id",
        "stage",
        "status",
        "response_type",
        "resource",
        "method",
        "route",
    ];
    m.samples
        .iter()
        .filter(|s| {
            (s.name == "aws_apigateway_responses_total"
                || s.name == "aws_apigateway_route_responses_total")
                && s.labels
                    .get("api_id")
                    .is_some_and(|a| apis.contains(&a.as_str()))
        })
        .map(|s| {
            let labels = s
                .labels
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            ((s.name.clone(), labels), s.value)
        })
        .collect()
}

fn expected(lines: &[Line]) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut out = BTreeMap::new();
    for line in lines {
        for key in line.counted() {
            *out.entry(key).or_default() += 1.0;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_equal_the_access_log_events_per_stage_and_route_late_events_included() {
    let tag = unique("ca");
    let rest_id = create_rest_api(&format!("causes-{tag}"), &["prod", "beta", "dev"]).await;
    let http_id = create_v2_api(&format!("causesh-{tag}"), false, &[]).await;
    // Both REST stages log to one group (one read serves both); the HTTP API to its own.
    let rest_group = format!("/aws/apigateway/causes/{tag}");
    let http_group = format!("/aws/apigateway/causes-http/{tag}");
    common::log_group(&rest_group).await;
    common::log_group(&http_group).await;
    let arn = |g: &str| format!("arn:aws:logs:us-east-1:000000000000:log-group:{g}");
    let format = r#"{"apiId":"$context.apiId","stage":"$context.stage","status":$context.status,"responseLatency":"$context.responseLatency","responseType":"$context.error.responseType","resourcePath":"$context.resourcePath","httpMethod":"$context.httpMethod","routeKey":"$context.routeKey"}"#;
    for stage in ["prod", "beta"] {
        common::patch_stage(
            &rest_id,
            stage,
            &[
                ("/accessLogSettings/destinationArn", &arn(&rest_group)),
                ("/accessLogSettings/format", format),
            ],
        )
        .await;
    }
    // dev's format quotes the status: filter patterns cannot compare it, check-config says so.
    common::patch_stage(
        &rest_id,
        "dev",
        &[
            ("/accessLogSettings/destinationArn", &arn(&rest_group)),
            (
                "/accessLogSettings/format",
                &format.replace("$context.status", "\"$context.status\""),
            ),
        ],
    )
    .await;
    // moto's UpdateStage fails on access log settings; CreateStage takes them.
    common::apigatewayv2()
        .create_stage()
        .api_id(&http_id)
        .stage_name("$default")
        .access_log_settings(
            aws_sdk_apigatewayv2::types::AccessLogSettings::builder()
                .destination_arn(arn(&http_group))
                .format(format)
                .build(),
        )
        .send()
        .await
        .expect("CreateStage (apigatewayv2)");

    // CloudWatch Logs behind a gate, to cut it off like an outage.
    let gate = common::Gate::start(&common::localstack());
    let config = emulator_config(&tag, "access_logs:\n  mode: filter_log_events\n").replace(
        &format!("logs: {}", common::localstack()),
        &format!("logs: {}", gate.url()),
    );
    let plan = common::check_config(&config);
    for (stage, what) in [
        (
            "prod",
            format!("429s and responses: log events of {rest_group}, format ok"),
        ),
        (
            "beta",
            format!("429s and responses: log events of {rest_group}, format ok"),
        ),
        (
            "dev",
            format!(
                "log events of {rest_group}, format lacks \"status\":$context.status as a number"
            ),
        ),
        (
            "$default",
            format!("429s and responses: log events of {http_group}, format ok"),
        ),
    ] {
        assert!(
            plan.lines()
                .any(|l| l.contains(&format!("stage {stage}:")) && l.contains(&what)),
            "{stage}: {what}\n{plan}"
        );
    }
    // The access-log queries are answered by one read per log group, not GetMetricData.
    assert!(
        plan.contains(
            "access logs: 2 log groups read with FilterLogEvents each cycle (plus pages), answering 12 access-log queries; no GetMetricData"
        ),
        "{plan}"
    );
    let exporter = Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);

    // Two minutes ago and one minute ago, many causes, per route.
    let base = (now_secs() / 60) * 60 - 120;
    let rest = |stage, status, response_type, route, minute| Line {
        api: rest_id.clone(),
        stage,
        status,
        response_type,
        route,
        minute,
    };
    let http = |status, response_type, key, minute| Line {
        api: http_id.clone(),
        stage: "$default",
        status,
        response_type,
        route: Route::Key(key),
        minute,
    };
    let pets = Route::Method("/pets", "GET");
    let pet = Route::Method("/pets/{id}", "POST");
    let mut first = Vec::new();
    for minute in [0, 1] {
        for _ in 0..3 {
            first.push(rest(
                "prod",
                504,
                "INTEGRATION_TIMEOUT",
                pets.clone(),
                minute,
            ));
        }
        first.push(rest(
            "prod",
            502,
            "INTEGRATION_FAILURE",
            pet.clone(),
            minute,
        ));
        first.push(rest("prod", 500, "AUTHORIZER_FAILURE", pet.clone(), minute));
        first.push(rest("prod", 401, "UNAUTHORIZED", pets.clone(), minute));
        first.push(rest("prod", 429, "THROTTLED", pets.clone(), minute));
        first.push(rest("prod", 429, "QUOTA_EXCEEDED", pets.clone(), minute));
        first.push(rest("prod", 404, "-", pet.clone(), minute));
        first.push(rest("prod", 200, "-", pets.clone(), minute));
        first.push(rest("beta", 403, "WAF_FILTERED", pets.clone(), minute));
        first.push(rest("beta", 500, "-", pets.clone(), minute));
        first.push(http(504, "INTEGRATION_TIMEOUT", "GET /pets", minute));
        first.push(http(400, "BAD_REQUEST_BODY", "$default", minute));
        first.push(http(302, "-", "$default", minute));
    }
    let (rest_lines, http_lines): (Vec<Line>, Vec<Line>) =
        first.iter().cloned().partition(|l| l.api == rest_id);
    put_lines(&rest_group, &rest_lines, base).await;
    put_lines(&http_group, &http_lines, base).await;
    let apis = [rest_id.as_str(), http_id.as_str()];
    let want = expected(&first);
    assert_eq!(want.len(), 22, "{want:#?}");
    exporter.scrape_until(WAIT, |m| responses(m, &apis) == want);

    // Late events: more into the minute already counted, and causes never seen before
    // (their first events must count in full, not as a baseline).
    let late = vec![
        rest("prod", 504, "INTEGRATION_TIMEOUT", pets.clone(), 0),
        rest("prod", 504, "INTEGRATION_TIMEOUT", pets.clone(), 0),
        rest("prod", 503, "-", pet.clone(), 0),
        rest("beta", 429, "THROTTLED", pets.clone(), 1),
    ];
    put_lines(&rest_group, &late, base).await;
    let mut all = first.clone();
    all.extend(late);
    let want = expected(&all);
    let m = exporter.scrape_until(WAIT, |m| responses(m, &apis) == want);

    // Later cycles re-read the same events: nothing counted twice.
    let cycles = |m: &Metrics| {
        m.value("aws_apigateway_exporter_cycle_duration_seconds_count", &[])
            .unwrap()
    };
    let seen = cycles(&m);
    let m = exporter.scrape_until(WAIT, |n| cycles(n) >= seen + 3.0);
    assert_eq!(responses(&m, &apis), want);

    // An outage of CloudWatch Logs: the counters keep their values while events keep
    // arriving, and the first good cycle counts exactly what happened meanwhile.
    gate.block(true);
    let up = |m: &Metrics| m.value("aws_apigateway_exporter_up", &[]);
    let m = exporter.scrape_until(WAIT, |m| up(m) == Some(0.0));
    assert_eq!(
        responses(&m, &apis),
        want,
        "nothing lost or reset while logs fail"
    );
    let during = vec![
        rest("prod", 504, "INTEGRATION_TIMEOUT", pets.clone(), 1),
        rest("prod", 429, "THROTTLED", pets.clone(), 1),
        rest("beta", 502, "INTEGRATION_FAILURE", pet.clone(), 0),
    ];
    put_lines(&rest_group, &during, base).await;
    let seen = cycles(&m);
    let m = exporter.scrape_until(WAIT, |n| cycles(n) >= seen + 3.0);
    assert_eq!(responses(&m, &apis), want);
    assert_eq!(up(&m), Some(0.0));
    gate.block(false);
    all.extend(during);
    let want = expected(&all);
    let m = exporter.scrape_until(WAIT, |m| responses(m, &apis) == want && up(m) == Some(1.0));
    let seen = cycles(&m);
    let m = exporter.scrape_until(WAIT, |n| cycles(n) >= seen + 3.0);
    assert_eq!(
        responses(&m, &apis),
        want,
        "the catch-up counted nothing twice"
    );

    // The 429 family agrees with the 429 rows.
    for (stage, reason, response_type) in [
        ("prod", "throttled", "THROTTLED"),
        ("prod", "quota_exceeded", "QUOTA_EXCEEDED"),
        ("beta", "throttled", "THROTTLED"),
    ] {
        let throttled = m.value(
            "aws_apigateway_throttled_requests_total",
            &[("api_id", &rest_id), ("stage", stage), ("reason", reason)],
        );
        let rows = m.value(
            "aws_apigateway_responses_total",
            &[
                ("api_id", &rest_id),
                ("stage", stage),
                ("status", "429"),
                ("response_type", response_type),
            ],
        );
        assert_eq!(throttled, rows, "{stage} {reason}");
        assert!(throttled.is_some_and(|v| v > 0.0));
    }
    assert!(
        !m.text.contains("status=\"200\"") && !m.text.contains("status=\"302\""),
        "statuses below 400 are not counted by default"
    );
    assert_eq!(
        m.value("aws_apigateway_exporter_period_value_decreases_total", &[])
            .unwrap_or(0.0),
        0.0
    );
}

/// Adds `method` on a new resource `path` of a REST API with an integration of `kind`.
async fn rest_method(
    rest_id: &str,
    path: &str,
    method: &str,
    kind: aws_sdk_apigateway::types::IntegrationType,
    uri: Option<&str>,
) {
    let gw = common::apigateway();
    let root = gw
        .get_resources()
        .rest_api_id(rest_id)
        .send()
        .await
        .expect("GetResources")
        .items()
        .iter()
        .find(|r| r.path() == Some("/"))
        .and_then(|r| r.id().map(str::to_string))
        .expect("root");
    let resource = gw
        .create_resource()
        .rest_api_id(rest_id)
        .parent_id(root)
        .path_part(path.trim_start_matches('/'))
        .send()
        .await
        .expect("CreateResource");
    let id = resource.id().expect("resource id");
    gw.put_method()
        .rest_api_id(rest_id)
        .resource_id(id)
        .http_method(method)
        .authorization_type("NONE")
        .send()
        .await
        .expect("PutMethod");
    let mut req = gw
        .put_integration()
        .rest_api_id(rest_id)
        .resource_id(id)
        .http_method(method)
        .r#type(kind)
        .set_uri(uri.map(str::to_string));
    if uri.is_some() {
        req = req.integration_http_method("POST");
    }
    req.send().await.expect("PutIntegration");
}

#[tokio::test(flavor = "multi_thread")]
async fn integration_info_names_the_lambda_function_the_http_host_or_the_mock() {
    use aws_sdk_apigateway::types::IntegrationType as Rest;
    use aws_sdk_apigatewayv2::types::IntegrationType as V2;
    let tag = unique("ii");
    // REST in LocalStack: GET / is a mock (create_rest_api), plus a Lambda proxy and an HTTP
    // proxy method.
    let rest_id = create_rest_api(&format!("integ-{tag}"), &["prod"]).await;
    let function = format!("orders-{tag}");
    let lambda_uri = format!(
        "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:{function}:live/invocations"
    );
    rest_method(
        &rest_id,
        "/orders",
        "POST",
        Rest::AwsProxy,
        Some(&lambda_uri),
    )
    .await;
    rest_method(
        &rest_id,
        "/legacy",
        "GET",
        Rest::HttpProxy,
        Some("https://legacy.example.com:8443/v1/items"),
    )
    .await;
    // HTTP API in moto: a Lambda route and an HTTP route.
    let http_id = create_v2_api(&format!("integh-{tag}"), false, &["$default"]).await;
    let v2 = common::apigatewayv2();
    for (key, kind, uri) in [
        (
            "GET /pets",
            V2::AwsProxy,
            format!("arn:aws:lambda:us-east-1:000000000000:function:pets-{tag}"),
        ),
        (
            "ANY /{proxy+}",
            V2::HttpProxy,
            "https://backend.example.org/{proxy}".to_string(),
        ),
    ] {
        let integration = v2
            .create_integration()
            .api_id(&http_id)
            .integration_type(kind)
            .integration_uri(uri)
            .payload_format_version("2.0")
            .send()
            .await
            .expect("CreateIntegration");
        v2.create_route()
            .api_id(&http_id)
            .route_key(key)
            .target(format!(
                "integrations/{}",
                integration.integration_id().expect("integration id")
            ))
            .send()
            .await
            .expect("CreateRoute");
    }

    let exporter = Exporter::start(&emulator_config(&tag, ""), &[]);
    exporter.wait_ready(WAIT);
    let info = |m: &Metrics, api: &str| -> Vec<String> {
        let mut rows: Vec<String> = m
            .find("aws_apigateway_integration_info", &[("api_id", api)])
            .iter()
            .map(|s| {
                let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
                format!(
                    "{}{} {} {} {} {} {}",
                    l("method"),
                    l("resource"),
                    l("route"),
                    l("integration_type"),
                    l("backend_type"),
                    l("backend"),
                    l("transfer_mode")
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let want_rest = vec![
        "GET/  MOCK mock  BUFFERED".to_string(),
        "GET/legacy  HTTP_PROXY http legacy.example.com BUFFERED".to_string(),
        format!("POST/orders  AWS_PROXY lambda {function} BUFFERED"),
    ];
    let want_http = vec![
        "ANY/{proxy+}  HTTP_PROXY http backend.example.org BUFFERED".to_string(),
        format!("GET/pets  AWS_PROXY lambda pets-{tag} BUFFERED"),
    ];
    let m = exporter.scrape_until(WAIT, |m| {
        info(m, &rest_id) == want_rest && info(m, &http_id) == want_http
    });
    // Every info series is 1 and has a timeout beside it.
    for s in m.find("aws_apigateway_integration_info", &[("api_id", &rest_id)]) {
        assert_eq!(s.value, 1.0);
    }
    assert_eq!(
        m.find(
            "aws_apigateway_integration_timeout_seconds",
            &[("api_id", &rest_id)]
        )
        .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_counters_follow_exactly_the_functions_behind_routes() {
    use aws_sdk_apigateway::types::IntegrationType as Rest;
    let tag = unique("lb");
    let rest_id = create_rest_api(&format!("lamb-{tag}"), &["prod"]).await;
    let behind = format!("behind-{tag}");
    let other = format!("other-{tag}");
    let uri = |f: &str| {
        format!(
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:{f}/invocations"
        )
    };
    // Two routes call the same function: it is polled once.
    rest_method(&rest_id, "/a", "GET", Rest::AwsProxy, Some(&uri(&behind))).await;
    rest_method(&rest_id, "/b", "POST", Rest::AwsProxy, Some(&uri(&behind))).await;

    let config = emulator_config(&tag, "backends:\n  lambda: true\n");
    let plan = common::check_config(&config);
    assert!(
        plan.contains(&format!(
            "lambda (backends.lambda): 1 functions behind the routes, 6 queries each (Invocations, Errors, Throttles; Duration Sum, SampleCount, Maximum): {behind}"
        )),
        "{plan}"
    );
    let exporter = Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);

    // Ground truth in AWS/Lambda, for the function behind the routes and for one that is not.
    let minute = (now_secs() / 60) * 60;
    let behind_dims = [("FunctionName", behind.as_str())];
    let other_dims = [("FunctionName", other.as_str())];
    let mut data = Vec::new();
    let mut truth = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0_f64);
    // Up to the current minute, so the settled minute whose maximum the gauge shows has
    // data even when the clock passes a minute boundary while the test runs.
    for (i, at) in [minute - 120, minute - 60, minute].into_iter().enumerate() {
        let n = i as f64;
        for f in [behind.as_str(), other.as_str()] {
            let dims: &[(&str, &str)] = if f == behind.as_str() {
                &behind_dims
            } else {
                &other_dims
            };
            for (metric, value) in [
                ("Invocations", 40.0 + n),
                ("Errors", 3.0 + n),
                ("Throttles", 2.0),
                ("Duration", 120.0 + 10.0 * n),
                ("Duration", 480.0),
            ] {
                data.push(common::Datum {
                    metric,
                    dims,
                    at,
                    value,
                });
            }
        }
        truth.0 += 40.0 + n;
        truth.1 += 3.0 + n;
        truth.2 += 2.0;
        truth.3 += 120.0 + 10.0 * n + 480.0;
        truth.4 += 2.0;
        truth.5 = truth.5.max(480.0);
    }
    common::put_in("AWS/Lambda", &data).await;

    let labels = [("function_name", behind.as_str())];
    let value = |m: &Metrics, name: &str| m.value(name, &labels);
    let m = exporter.scrape_until(WAIT, |m| {
        value(m, "aws_lambda_invocations_total") == Some(truth.0)
            && value(m, "aws_lambda_errors_total") == Some(truth.1)
            && value(m, "aws_lambda_throttles_total") == Some(truth.2)
            && value(m, "aws_lambda_duration_seconds_sum") == Some(truth.3 / 1000.0)
            && value(m, "aws_lambda_duration_seconds_count") == Some(truth.4)
    });
    assert_eq!(
        value(&m, "aws_lambda_duration_max_seconds"),
        Some(truth.5 / 1000.0)
    );
    // Only the function behind a route, with only its own labels.
    let series = m.find("aws_lambda_invocations_total", &[]);
    assert!(
        series
            .iter()
            .all(|s| s.labels.get("function_name") != Some(&other)),
        "{series:?}"
    );
    let mine = m.find("aws_lambda_invocations_total", &labels);
    assert_eq!(
        mine[0].labels.keys().collect::<Vec<_>>(),
        ["account_id", "function_name", "region"]
    );
    // And the route info names it, so the two join.
    assert_eq!(
        m.find(
            "aws_apigateway_integration_info",
            &[("api_id", &rest_id), ("backend", &behind)]
        )
        .len(),
        2
    );
}
