//! What each method or route calls: the integration's type, the backend behind it (a Lambda
//! function, an HTTP host, an AWS service, a VPC link or a mock), its timeout and whether it
//! streams its response. From REST GetResources (embedded methods) and v2 GetIntegrations.

use super::RouteKey;

/// The integration of one method or route.
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    pub route: RouteKey,
    /// Configured integration timeout, in seconds (the default where unset).
    pub timeout: f64,
    /// As AWS names it: `AWS_PROXY`, `HTTP_PROXY`, `AWS`, `HTTP`, `MOCK`.
    pub integration_type: String,
    pub backend_type: BackendType,
    /// The Lambda function name (no alias, no ARN: it joins with `AWS/Lambda`'s
    /// `FunctionName`), the HTTP host, the AWS service or subtype; empty for a mock.
    pub backend: String,
    /// REST response streaming (`responseTransferMode`): a streaming route's latency covers
    /// the whole stream, so it is not judged against the integration timeout.
    pub streams: bool,
    /// (region, account) of a Lambda function, from its ARN: one in another region or
    /// account is not polled from this target's CloudWatch.
    pub home: Option<(String, String)>,
}

impl Integration {
    /// The `transfer_mode` label value.
    pub fn transfer_mode(&self) -> &'static str {
        if self.streams { "STREAM" } else { "BUFFERED" }
    }

    /// The labels of `aws_apigateway_integration_info` beyond the route's.
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut labels = self.route.labels();
        labels.extend([
            ("integration_type".into(), self.integration_type.clone()),
            ("backend_type".into(), self.backend_type.as_str().into()),
            ("backend".into(), self.backend.clone()),
            ("transfer_mode".into(), self.transfer_mode().into()),
        ]);
        labels
    }
}

/// What kind of backend an integration calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendType {
    Lambda,
    Http,
    AwsService,
    Mock,
    VpcLink,
}

impl BackendType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendType::Lambda => "lambda",
            BackendType::Http => "http",
            BackendType::AwsService => "aws_service",
            BackendType::Mock => "mock",
            BackendType::VpcLink => "vpc_link",
        }
    }
}

/// The backend behind an integration, from its type, URI, connection type and (v2 AWS
/// service integrations) subtype.
pub fn backend(
    integration_type: &str,
    uri: Option<&str>,
    vpc_link: bool,
    subtype: Option<&str>,
) -> (BackendType, String) {
    let uri = uri.unwrap_or_default();
    if integration_type == "MOCK" {
        return (BackendType::Mock, String::new());
    }
    if let Some(function) = lambda_function(uri) {
        return (BackendType::Lambda, function);
    }
    if vpc_link {
        return (BackendType::VpcLink, host(uri).unwrap_or(uri).to_string());
    }
    match integration_type {
        "HTTP" | "HTTP_PROXY" => (BackendType::Http, host(uri).unwrap_or(uri).to_string()),
        _ => {
            // `arn:aws:apigateway:<region>:<service>:path/...` (REST) or a v2 subtype such
            // as `SQS-SendMessage`.
            let service = subtype
                .map(str::to_string)
                .or_else(|| uri.split(':').nth(4).map(str::to_string))
                .unwrap_or_default();
            (BackendType::AwsService, service)
        }
    }
}

/// The function name in a Lambda integration URI: a function ARN
/// (`arn:aws:lambda:<region>:<account>:function:<name>[:<alias>]`), bare (HTTP APIs) or inside
/// the `.../functions/<arn>/invocations` path of a REST URI.
fn lambda_function(uri: &str) -> Option<String> {
    let (_, rest) = uri.split_once(":lambda:")?;
    let after = rest.split_once(":function:")?.1;
    let name = after.split(['/', ':']).next().filter(|n| !n.is_empty())?;
    Some(name.to_string())
}

/// The (region, account) in a Lambda integration URI's function ARN.
pub fn lambda_home(uri: Option<&str>) -> Option<(String, String)> {
    let uri = uri?;
    let before = &uri[..uri.find(":function:")?];
    let mut fields = before.rsplitn(3, ':');
    let account = fields.next()?;
    let region = fields.next()?;
    let service = fields.next()?;
    (service.ends_with(":lambda") && !account.is_empty() && !region.is_empty())
        .then(|| (region.to_string(), account.to_string()))
}

/// A name CloudWatch can hold as `FunctionName`: not a stage variable (`${stageVariables.fn}`)
/// or anything else API Gateway resolves per request.
pub fn is_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 140
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The host of an `http(s)://host[:port]/...` URI.
fn host(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(h, _)| h),
        None => authority.split(':').next().unwrap_or(authority),
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_of_every_integration_kind() {
        let rest_lambda = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:123456789012:function:orders-api:live/invocations";
        assert_eq!(
            backend("AWS_PROXY", Some(rest_lambda), false, None),
            (BackendType::Lambda, "orders-api".into())
        );
        let plain = "arn:aws:lambda:us-east-1:123456789012:function:checkout";
        assert_eq!(
            backend("AWS_PROXY", Some(plain), false, None),
            (BackendType::Lambda, "checkout".into())
        );
        assert_eq!(
            backend(
                "HTTP_PROXY",
                Some("https://api.example.com:8443/v1/{proxy}"),
                false,
                None
            ),
            (BackendType::Http, "api.example.com".into())
        );
        assert_eq!(
            backend("HTTP", Some("http://user@[::1]:80/x"), false, None),
            (BackendType::Http, "::1".into())
        );
        assert_eq!(
            backend("HTTP_PROXY", Some("http://internal.local/x"), true, None),
            (BackendType::VpcLink, "internal.local".into())
        );
        assert_eq!(
            backend("MOCK", None, false, None),
            (BackendType::Mock, String::new())
        );
        assert_eq!(
            backend(
                "AWS",
                Some("arn:aws:apigateway:us-east-1:sqs:path/123456789012/queue"),
                false,
                None
            ),
            (BackendType::AwsService, "sqs".into())
        );
        assert_eq!(
            backend("AWS_PROXY", None, false, Some("SQS-SendMessage")),
            (BackendType::AwsService, "SQS-SendMessage".into())
        );
        assert_eq!(lambda_function("arn:aws:lambda:r:1:function:"), None);
        assert_eq!(
            lambda_home(Some(rest_lambda)),
            Some(("eu-west-1".into(), "123456789012".into()))
        );
        assert_eq!(
            lambda_home(Some(plain)),
            Some(("us-east-1".into(), "123456789012".into()))
        );
        assert_eq!(lambda_home(Some("https://example.com/function:x")), None);
        assert_eq!(lambda_home(None), None);
        let staged = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:1:function:${stageVariables.fn}/invocations";
        let (kind, name) = backend("AWS_PROXY", Some(staged), false, None);
        assert_eq!(kind, BackendType::Lambda);
        assert!(!is_function_name(&name), "{name}");
        assert!(is_function_name("orders-api_v2"));
        assert_eq!(host("not a url"), None);
    }
}
