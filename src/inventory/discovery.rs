//! Discovery through the API Gateway management APIs (and ListMetrics for route-level
//! metrics), with the SDK clients of one target. Each service's reads live in a file of their
//! own: [`super::rest`], [`super::http_websocket`], [`super::usage_plans`], [`super::routes`];
//! what is read when, and what is kept between refreshes, in [`super::known`].
//!
//! Every call goes through [`AwsDiscovery::call`]: paced by the account's [`Budget`], never
//! retried by the SDK behind the budget's back, and retried here within it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigateway::error::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use rand::Rng;

use super::known::{Known, Need};
use super::pages::{all_pages, each_bounded};
use super::{ApiFilter, Discovered, Discovery, DiscoveryError, Throttle};
use crate::model::{ApiType, CallResult};
use crate::ratelimit::{Budget, Budgets, CallKind};
use crate::sdk::{TargetClients, classify, describe};
use crate::selfmetrics::SelfMetrics;

/// API Gateway's integration timeout when none is configured (REST, WebSocket).
pub(super) const DEFAULT_TIMEOUT_MS: i32 = 29_000;

/// A configured timeout in seconds; unset (absent or 0) means the default.
pub(super) fn timeout_seconds(ms: Option<i32>, default_ms: i32) -> f64 {
    f64::from(ms.filter(|ms| *ms > 0).unwrap_or(default_ms)) / 1000.0
}

/// Throttled answers to one call before it counts as failed: backing off 1, 2, 4 … 60 s, that
/// is about seven minutes of an account whose quota stays spent.
const MAX_THROTTLED: u32 = 12;
/// Transient failures (timeouts, connection errors, 5xx) of one call before it counts as failed.
const MAX_TRANSIENT: u32 = 3;
/// The longest pause after a throttled answer.
const MAX_BACK_OFF: Duration = Duration::from_secs(60);

/// How one target's discovery paces itself, and what it keeps between refreshes.
#[derive(Clone)]
pub struct Pace {
    pub region: String,
    /// Management calls per second for the whole account (`discovery.max_requests_per_second`).
    pub rate: f64,
    /// This process's turn on the account's budget: shard `index` of `total` (`(0, 1)`
    /// without shards). Shards take turns, so that together they stay within the budget.
    pub shard: (u32, u32),
    /// How often each API's integrations and routes are read even without a new deployment.
    pub full_refresh: Duration,
    /// The budgets of every account this process reads (one per account, across regions).
    pub budgets: Arc<Budgets>,
    /// What this target's discovery knew after its last refresh (kept across reloads).
    pub known: Arc<Known>,
}

impl Pace {
    /// A pace of its own, not shared with other targets (`check-config`, tests).
    pub fn standalone(region: &str, rate: f64, full_refresh: Duration) -> Pace {
        Pace {
            region: region.to_string(),
            rate,
            shard: (0, 1),
            full_refresh,
            budgets: Arc::new(Budgets::default()),
            known: Arc::new(Known::default()),
        }
    }
}

/// What the process keeps for discovery across reloads: the budgets of the accounts it reads
/// and what each target's discovery knew, by target identity (credentials and region).
#[derive(Default, Clone)]
pub struct DiscoveryContext {
    pub budgets: Arc<Budgets>,
    known: Arc<std::sync::Mutex<HashMap<String, Arc<Known>>>>,
}

impl DiscoveryContext {
    /// What the target `key` knew, kept from an earlier config (or new and empty).
    pub fn known(&self, key: &str) -> Arc<Known> {
        let mut map = self.known.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(key.to_string()).or_default())
    }

    /// Forgets the targets a new config no longer has (and their source accounts, kept as
    /// `<target>|source:<account>`).
    pub fn retain(&self, keys: &[String]) {
        let mut map = self.known.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|k, _| {
            let target = k.split_once("|source:").map_or(k.as_str(), |(t, _)| t);
            keys.iter().any(|key| key == target)
        });
    }
}

/// Discovers APIs with the SDK clients of one target.
pub struct AwsDiscovery {
    pub(super) clients: TargetClients,
    pub(super) metrics: SelfMetrics,
    pub(super) pace: Pace,
    budget: OnceLock<Arc<Budget>>,
    /// A monitoring account's source account: `clients.cloudwatch` is the monitoring
    /// account's, and ListMetrics asks for this account's metrics (`OwningAccount`).
    pub(super) owning_account: Option<String>,
}

/// Why a call failed, for what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// TooManyRequests: the account's quota is spent; pause the whole budget and try again.
    Throttled,
    /// A timeout, a lost connection or a 5xx: try again.
    Transient,
    /// Anything else (access denied, not found, a bad request): trying again would not help.
    Permanent,
}

fn failure<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Failure {
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Failure::Transient
        }
        _ if classify(err) == CallResult::Throttled || status == Some(429) => Failure::Throttled,
        _ if status.is_some_and(|s| s >= 500) => Failure::Transient,
        _ => Failure::Permanent,
    }
}

/// The pause before try `n` (from 1): 1, 2, 4 … seconds up to `max`, each between half and
/// all of that, so that the callers held back together do not all return at once.
fn back_off(n: u32, max: Duration) -> Duration {
    let full = Duration::from_secs(1u64 << n.saturating_sub(1).min(16)).min(max);
    full.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Counts a call waiting for the budget while it waits (and when it is dropped mid-wait).
struct Waiting<'a>(&'a prometheus::Gauge);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a prometheus::Gauge) -> Waiting<'a> {
        gauge.inc();
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl AwsDiscovery {
    pub fn new(clients: TargetClients, metrics: SelfMetrics, pace: Pace) -> AwsDiscovery {
        AwsDiscovery {
            clients,
            metrics,
            pace,
            budget: OnceLock::new(),
            owning_account: None,
        }
    }

    /// The discovery of a monitoring account's source account `account`: API Gateway with
    /// `clients` (a role in it), ListMetrics with the monitoring account's `cloudwatch`.
    pub fn source(
        mut clients: TargetClients,
        cloudwatch: aws_sdk_cloudwatch::Client,
        account: &str,
        metrics: SelfMetrics,
        pace: Pace,
    ) -> AwsDiscovery {
        clients.cloudwatch = cloudwatch;
        AwsDiscovery {
            owning_account: Some(account.to_string()),
            ..AwsDiscovery::new(clients, metrics, pace)
        }
    }

    /// Paces every call by `budget` instead of the account's management budget.
    pub fn with_budget(self, budget: Arc<Budget>) -> AwsDiscovery {
        let _ = self.budget.set(budget);
        self
    }

    /// The budget of this target's account (resolving the account first if needed).
    async fn budget(&self) -> Result<Arc<Budget>, DiscoveryError> {
        if let Some(b) = self.budget.get() {
            return Ok(Arc::clone(b));
        }
        let account = self.account_id().await?;
        let (index, total) = self.pace.shard;
        let budget = self.pace.budgets.of(&account, self.pace.rate, index, total);
        Ok(Arc::clone(self.budget.get_or_init(|| budget)))
    }

    /// One call, paced by the account's budget and retried within it: a throttled answer
    /// pauses every call of the account and tries again; a transient failure tries again
    /// after a pause; anything else fails at once. Each try is counted (CloudWatch's in
    /// `cloudwatch_requests_total`, the others in `aws_requests_total`). `send` makes one
    /// try; it must not be retried by the SDK ([`no_retries`]), or its retries would
    /// bypass the budget.
    pub(super) async fn call<O, E, Fut>(
        &self,
        service: &'static str,
        operation: &'static str,
        mut send: impl FnMut() -> Fut,
    ) -> Result<O, DiscoveryError>
    where
        Fut: Future<Output = Result<O, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let budget = self.budget().await?;
        let kind = if operation == "GetResources" {
            CallKind::GetResources
        } else {
            CallKind::Management
        };
        let (mut throttled, mut transient) = (0, 0);
        loop {
            {
                let _waiting = Waiting::new(&self.metrics.discovery_waiting);
                budget.acquire(kind).await;
            }
            let err = match send().await {
                Ok(out) => {
                    self.count(service, operation, CallResult::Success);
                    return Ok(out);
                }
                Err(err) => err,
            };
            let why = failure(&err);
            self.count(
                service,
                operation,
                if why == Failure::Throttled {
                    CallResult::Throttled
                } else {
                    CallResult::Error
                },
            );
            match why {
                Failure::Throttled if throttled < MAX_THROTTLED => {
                    throttled += 1;
                    budget.back_off(back_off(throttled, MAX_BACK_OFF));
                }
                Failure::Transient if transient < MAX_TRANSIENT => {
                    transient += 1;
                    tokio::time::sleep(back_off(transient, MAX_BACK_OFF)).await;
                }
                _ => {
                    return Err(DiscoveryError {
                        service,
                        operation,
                        message: describe(&err),
                    });
                }
            }
        }
    }

    fn count(&self, service: &str, operation: &str, result: CallResult) {
        match service {
            "cloudwatch" => self.metrics.cloudwatch_call(operation, result),
            _ => self.metrics.aws_call(service, operation, result),
        }
    }

    /// Every item of one listing, read to its last page ([`all_pages`]), each page through
    /// [`AwsDiscovery::call`]: `send(token)` sends one page's request, `page(output)`
    /// returns its items and the next token.
    pub(super) async fn list<O, E, T, Fut>(
        &self,
        service: &'static str,
        operation: &'static str,
        send: impl Fn(Option<String>) -> Fut,
        page: impl Fn(O) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, DiscoveryError>
    where
        Fut: Future<Output = Result<O, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let page = &page;
        let send = &send;
        all_pages(service, operation, |token| async move {
            let out = self
                .call(service, operation, || send(token.clone()))
                .await?;
            Ok(page(out))
        })
        .await
    }

    /// Updates the per-API failure series: those failing now, and none of the others.
    fn report_failures(&self, failing: &[(String, ApiType, u32, String, String)]) {
        let Some(account) = self.pace.known.account() else {
            return;
        };
        let region = self.pace.region.as_str();
        for (id, api_type, n, name, error) in failing {
            tracing::warn!(
                account_id = %account, region, api_id = %id, api_name = %name,
                api_type = api_type.as_str(), refreshes = n,
                error = %error,
                "cannot read this API; it keeps its last known stages and integrations"
            );
        }
        let now: Vec<(String, ApiType, u32)> = failing
            .iter()
            .map(|(id, t, n, _, _)| (id.clone(), *t, *n))
            .collect();
        for (id, api_type) in self.pace.known.take_reported(&now) {
            let _ = self.metrics.discovery_api_failures.remove_label_values(&[
                account,
                region,
                &id,
                api_type.as_str(),
            ]);
        }
        for (id, api_type, n) in now {
            self.metrics
                .discovery_api_failures
                .with_label_values(&[account, region, &id, api_type.as_str()])
                .set(f64::from(n));
        }
    }
}

pub(super) fn tags(tags: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    tags.map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Per-call configuration that turns the SDK's own retries off: discovery retries within its
/// budget ([`AwsDiscovery::call`]), and an SDK retry would be a call the budget never saw.
macro_rules! no_retries {
    ($krate:ident) => {
        $krate::config::Builder::default()
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
    };
}
pub(super) use no_retries;

#[async_trait]
impl Discovery for AwsDiscovery {
    async fn account_id(&self) -> Result<String, DiscoveryError> {
        if let Some(a) = self.pace.known.account() {
            return Ok(a.to_string());
        }
        // STS is not API Gateway's quota: no budget, the SDK's own retries.
        let out = self
            .clients
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                self.count("sts", "GetCallerIdentity", classify(&e));
                DiscoveryError {
                    service: "sts",
                    operation: "GetCallerIdentity",
                    message: describe(&e),
                }
            })?;
        self.count("sts", "GetCallerIdentity", CallResult::Success);
        let account = out.account().map(str::to_string).ok_or(DiscoveryError {
            service: "sts",
            operation: "GetCallerIdentity",
            message: "response has no Account".into(),
        })?;
        Ok(self.pace.known.set_account(account).to_string())
    }

    /// A refresh: the listings in full, then every API's stages (one call each), and its
    /// integrations and routes only where a deployment changed or the full re-read is due
    /// ([`Known`]). A listing that fails fails the refresh and changes nothing; an API whose
    /// reads fail keeps what was known of it, and the others go on.
    async fn discover(&self, filter: &ApiFilter) -> Result<Discovered, DiscoveryError> {
        self.budget().await?;
        let known = &self.pace.known;
        let mut listed = Vec::new();
        if filter.wants_type(ApiType::Rest) {
            listed.extend(self.rest_listing().await?);
        }
        if filter.wants_type(ApiType::Http) || filter.wants_type(ApiType::Websocket) {
            listed.extend(self.v2_listing(filter).await?);
        }
        let needs = known.merge_listing(listed, filter);
        let now = known.clock();
        each_bounded(needs, |need| self.refresh_api(need, filter, now)).await;

        // The account throttle is useful but optional: without apigateway:GET on /account
        // the rest of the inventory still stands. With shards, only shard 0 exports it.
        if filter.owns_account() {
            match self
                .call("apigateway", "GetAccount", || {
                    self.clients
                        .apigateway
                        .get_account()
                        .customize()
                        .config_override(no_retries!(aws_sdk_apigateway))
                        .send()
                })
                .await
            {
                Ok(out) => known.set_account_throttle(out.throttle_settings().map(|t| Throttle {
                    rate: t.rate_limit(),
                    burst: f64::from(t.burst_limit()),
                })),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the account throttle (apigateway:GET on /account)");
                }
            }
        }
        if filter.wants_type(ApiType::Rest) {
            match self.usage_plans().await {
                Ok(plans) => known.set_usage_plans(plans),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read usage plans (apigateway:GET on /usageplans)");
                }
            }
        }
        self.report_failures(&known.failing());
        Ok(known.snapshot())
    }

    fn progress(&self, seen: &mut u64) -> Option<Discovered> {
        self.pace.known.progress(seen)
    }
}

impl AwsDiscovery {
    /// One API of a refresh: its stages, then whatever the stages say must be read again.
    /// Failures are recorded in [`Known`], never returned.
    async fn refresh_api(&self, need: Need, filter: &ApiFilter, now: u64) {
        let known = &self.pace.known;
        let websocket = need.api_type == ApiType::Websocket;
        let stages = match need.api_type {
            ApiType::Rest => self.rest_stages(&need.id).await,
            ApiType::Http | ApiType::Websocket => self.v2_stages(&need.id, websocket).await,
        };
        let stages = match stages {
            Ok(s) => s,
            Err(e) => return known.failed(&need.id, None, e.to_string()),
        };
        let due = known.due(&need, &stages, filter, now, self.pace.full_refresh);
        let integrations = match due.integrations {
            false => None,
            true => {
                let read = match need.api_type {
                    ApiType::Rest => self.rest_integrations(&need.id).await,
                    ApiType::Http | ApiType::Websocket => {
                        self.v2_integrations(&need.id, websocket).await
                    }
                };
                match read {
                    Ok(i) => Some(i),
                    Err(e) => return known.failed(&need.id, Some(stages), e.to_string()),
                }
            }
        };
        let mut routes = Vec::new();
        for stage in &due.routes {
            match self
                .list_routes(need.api_type, &need.cloudwatch_key, stage)
                .await
            {
                Ok(r) => routes.push((stage.clone(), r)),
                Err(e) => return known.failed(&need.id, Some(stages), e.to_string()),
            }
        }
        known.apply(&need.id, stages, due, integrations, routes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_offs_double_up_to_their_ceiling_with_jitter() {
        for n in 1..20 {
            let full = Duration::from_secs(1 << (n - 1).min(16)).min(MAX_BACK_OFF);
            let d = back_off(n, MAX_BACK_OFF);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
        }
        assert!(back_off(40, MAX_BACK_OFF) <= MAX_BACK_OFF);
    }
}
