//! REST canary releases against LocalStack, which keeps `canarySettings` on a stage (moto
//! does not): discovery exports the canary's traffic share and deployment while it exists,
//! and nothing once it is removed (a rollback).

mod common;

use std::time::Duration;

use common::{Exporter, create_rest_api, emulator_config, unique};

const WAIT: Duration = Duration::from_secs(60);

fn canary(m: &common::Metrics, api_id: &str) -> Vec<(String, String, f64)> {
    m.find(
        "aws_apigateway_stage_canary_traffic_percent",
        &[("api_id", api_id)],
    )
    .iter()
    .map(|s| {
        (
            s.labels.get("stage").cloned().unwrap_or_default(),
            s.labels.get("deployment_id").cloned().unwrap_or_default(),
            s.value,
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_is_exported_while_it_exists_and_leaves_with_a_rollback() {
    let tag = unique("cn");
    let id = create_rest_api(&format!("canary-{tag}"), &["prod", "beta"]).await;
    let gw = common::apigateway();
    // A canary deployment on prod: 25 % of its requests.
    let deployment = gw
        .create_deployment()
        .rest_api_id(&id)
        .stage_name("prod")
        .canary_settings(
            aws_sdk_apigateway::types::DeploymentCanarySettings::builder()
                .percent_traffic(25.0)
                .use_stage_cache(false)
                .build(),
        )
        .send()
        .await
        .expect("CreateDeployment with canary settings")
        .id()
        .expect("deployment id")
        .to_string();
    let config = emulator_config(&tag, "");
    let plan = common::check_config(&config);
    assert!(
        plan.lines().any(|l| l.contains("stage prod:")
            && l.contains(&format!(
                "canary: 25 % of requests to deployment {deployment}"
            ))),
        "{plan}"
    );
    assert!(
        !plan
            .lines()
            .any(|l| l.contains("stage beta:") && l.contains("canary")),
        "{plan}"
    );
    let exporter = Exporter::start(&config, &[]);
    exporter.wait_ready(WAIT);
    let m = exporter.scrape_until(WAIT, |m| !canary(m, &id).is_empty());
    assert_eq!(
        canary(&m, &id),
        vec![("prod".to_string(), deployment.clone(), 25.0)],
        "only prod has a canary"
    );
    let s = &m.find(
        "aws_apigateway_stage_canary_traffic_percent",
        &[("api_id", &id)],
    )[0];
    assert_eq!(
        s.labels.get("use_stage_cache").map(String::as_str),
        Some("false")
    );
    assert_eq!(s.labels.get("api_type").map(String::as_str), Some("rest"));

    // Rolling back removes the canary settings; the series leaves with the next discovery.
    gw.update_stage()
        .rest_api_id(&id)
        .stage_name("prod")
        .patch_operations(
            aws_sdk_apigateway::types::PatchOperation::builder()
                .op(aws_sdk_apigateway::types::Op::Remove)
                .path("/canarySettings")
                .build(),
        )
        .send()
        .await
        .expect("UpdateStage remove /canarySettings");
    let m = exporter.scrape_until(WAIT, |m| canary(m, &id).is_empty());
    assert_eq!(
        m.find("aws_apigateway_stage_info", &[("api_id", &id)])
            .len(),
        2,
        "both stages stay"
    );
}
