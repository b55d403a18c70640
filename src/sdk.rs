//! AWS SDK clients for one target (account × region): standard credential chain, optional
//! assume-role, per-service endpoint overrides, bounded timeouts and retries.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::{Endpoints, TargetConfig};
use crate::model::CallResult;

/// The clients a target needs.
#[derive(Clone, Debug)]
pub struct TargetClients {
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub apigateway: aws_sdk_apigateway::Client,
    pub apigatewayv2: aws_sdk_apigatewayv2::Client,
    pub sts: aws_sdk_sts::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
}

fn timeouts() -> TimeoutConfig {
    // A sidecar must never hang on AWS: bound every stage of a call.
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .read_timeout(Duration::from_secs(20))
        .operation_attempt_timeout(Duration::from_secs(25))
        .operation_timeout(Duration::from_secs(60))
        .build()
}

/// Builds the SDK configuration of one region: credentials from the standard chain (env,
/// profile, web identity / IRSA, ECS, IMDS), then the target's role if it names one.
pub async fn sdk_config(region: &str, target: &TargetConfig, endpoints: &Endpoints) -> SdkConfig {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::adaptive().with_max_attempts(3))
        .timeout_config(timeouts())
        .load()
        .await;
    match &target.role_arn {
        Some(role_arn) => {
            assume_role(&base, role_arn, target.external_id.as_deref(), endpoints).await
        }
        None => base,
    }
}

/// `config` with the credentials of `role_arn`, assumed with `config`'s own credentials
/// (a source account's role is assumed from the monitoring account's identity).
pub async fn assume_role(
    config: &SdkConfig,
    role_arn: &str,
    external_id: Option<&str>,
    endpoints: &Endpoints,
) -> SdkConfig {
    let mut sts_config = config.to_builder();
    if let Some(url) = &endpoints.sts {
        sts_config.set_endpoint_url(Some(url.clone()));
    }
    let mut provider =
        AssumeRoleProvider::builder(role_arn.to_string()).session_name("apigateway-exporter");
    if let Some(region) = config.region() {
        provider = provider.region(region.clone());
    }
    if let Some(id) = external_id {
        provider = provider.external_id(id.to_string());
    }
    let provider = provider.configure(&sts_config.build()).build().await;
    config
        .to_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(provider),
        )
        .build()
}

/// The Observability Access Manager client of a monitoring account.
pub fn oam_client(config: &SdkConfig, endpoints: &Endpoints) -> aws_sdk_oam::Client {
    let mut b = aws_sdk_oam::config::Builder::from(config);
    if let Some(url) = &endpoints.oam {
        b = b.endpoint_url(url.clone());
    }
    aws_sdk_oam::Client::from_conf(b.build())
}

/// Service clients with the configured endpoint overrides applied.
pub fn clients(config: &SdkConfig, endpoints: &Endpoints) -> TargetClients {
    macro_rules! client {
        ($krate:ident, $endpoint:expr) => {{
            let mut b = $krate::config::Builder::from(config);
            if let Some(url) = $endpoint {
                b = b.endpoint_url(url.clone());
            }
            $krate::Client::from_conf(b.build())
        }};
    }
    TargetClients {
        cloudwatch: client!(aws_sdk_cloudwatch, &endpoints.cloudwatch),
        apigateway: client!(aws_sdk_apigateway, &endpoints.apigateway),
        apigatewayv2: client!(aws_sdk_apigatewayv2, &endpoints.apigatewayv2),
        sts: client!(aws_sdk_sts, &endpoints.sts),
        logs: client!(aws_sdk_cloudwatchlogs, &endpoints.logs),
    }
}

const THROTTLING_CODES: [&str; 6] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
];

/// Classifies a failed SDK call for the `result` label.
pub fn classify<E: ProvideErrorMetadata>(err: &E) -> CallResult {
    match err.code() {
        Some(code) if THROTTLING_CODES.contains(&code) => CallResult::Throttled,
        _ => CallResult::Error,
    }
}

/// A one-line description of an SDK error: the `Display` of every error in the source chain
/// (the SDK's own `Display` says only "service error"), without repeats. When credentials are
/// the problem, says which chain was tried.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    let mut message = parts.join(": ");
    if message.contains("credentials") {
        message.push_str(
            " (credential chain tried: environment variables, shared config/credentials profile, \
             web identity token (IRSA), ECS container credentials, EC2 instance metadata)",
        );
    }
    message
}
