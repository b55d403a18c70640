//! The plan as `check-config` prints it: per target, API and stage, what is read, what is
//! missing and why, and what it costs.

use std::fmt::Write as _;
use std::time::Duration;

use super::{AccessLogs, PlanOptions, TargetPlan, cost};
use crate::inventory::{SourceDiscovery, Stage, TargetInventory};
use crate::model::{ApiType, access_log_gaps, logs_canary_split, logs_latency};

/// The human-readable plan `check-config` prints.
pub fn describe(
    inventories: &[TargetInventory],
    plans: &[TargetPlan],
    interval: Duration,
    opts: &PlanOptions,
    price_per_1000: f64,
) -> String {
    let mut out = String::new();
    let (mut total_q, mut total_c) = (0, 0);
    for (inv, plan) in inventories.iter().zip(plans) {
        let _ = writeln!(
            out,
            "target account={} region={}: {}",
            inv.account_id,
            inv.region,
            counts(inv)
        );
        describe_account(&mut out, inv, opts, None);
        for linked in &inv.linked {
            let account = linked.inventory.account_id.as_str();
            let queries = plan
                .queries
                .iter()
                .filter(|q| q.account.as_deref() == Some(account))
                .filter(|q| q.answer() == super::Answer::GetMetricData)
                .count();
            let c = cost(queries, 0, interval, price_per_1000);
            let failing = match &linked.error {
                Some(e) => {
                    format!("; its latest discovery failed, so it keeps its last inventory: {e}")
                }
                None => String::new(),
            };
            let mode = match linked.mode {
                SourceDiscovery::Role => "discovered with a role in it",
                SourceDiscovery::Metrics => {
                    "discovered from the monitoring account's ListMetrics alone (no role): REST APIs by name without their id, HTTP and WebSocket APIs by id without their name; no tags, limits, timeouts, integrations, access logs or canaries"
                }
            };
            let _ = writeln!(
                out,
                "  source account {account} (read through the monitoring account, GetMetricData with AccountId; {mode}): {}; {queries} queries per cycle, ${:.2}/month, in the target's shared calls{failing}",
                counts(&linked.inventory),
                c.usd_per_month
            );
            describe_account(&mut out, &linked.inventory, opts, Some(linked.mode));
        }
        let groups = plan.log_groups();
        if groups > 0 {
            let _ = writeln!(
                out,
                "  access logs: {} log groups read with FilterLogEvents each cycle (plus pages), answering {} access-log queries; no GetMetricData",
                groups,
                plan.queries.len() - plan.metric_queries()
            );
        }
        if opts.stream.is_some() {
            let _ = writeln!(
                out,
                "  metric stream: {} queries answered from the stream, {} polled (GetMetricData: percentiles unless stream.percentiles, metric filters)",
                plan.streamed_queries(),
                plan.metric_queries()
            );
        }
        let c = cost(
            plan.metric_queries(),
            plan.calls(),
            interval,
            price_per_1000,
        );
        let _ = writeln!(
            out,
            "  series queried: {}  GetMetricData calls per cycle: {}  estimated cost: ${:.2}/month",
            c.queries_per_cycle, c.calls_per_cycle, c.usd_per_month
        );
        total_q += plan.metric_queries();
        total_c += plan.calls();
    }
    let c = cost(total_q, total_c, interval, price_per_1000);
    let _ = writeln!(
        out,
        "total: {} queries and {} GetMetricData calls per cycle; {:.0} cycles/month (every {}) → {:.0} metrics requested, about ${:.2}/month at ${} per 1,000 metrics",
        c.queries_per_cycle,
        c.calls_per_cycle,
        c.cycles_per_month,
        humantime::format_duration(interval),
        c.metrics_per_month,
        c.usd_per_month,
        price_per_1000
    );
    let _ = writeln!(
        out,
        "cost rule: AWS bills GetMetricData per metric requested; every query (one metric and one statistic) of every call, NextToken pages included, is counted as one, whatever the datapoints returned; a 30-day month; set cost.price_per_1000_metrics for your region"
    );
    out
}

/// APIs by type and stages, as the first line of an account says them.
fn counts(inv: &TargetInventory) -> String {
    let stages: usize = inv.apis.iter().map(|a| a.stages.len()).sum();
    let by_type = |t: ApiType| inv.apis.iter().filter(|a| a.api_type == t).count();
    format!(
        "{} APIs (rest {}, http {}, websocket {}), {} stages",
        inv.apis.len(),
        by_type(ApiType::Rest),
        by_type(ApiType::Http),
        by_type(ApiType::Websocket),
        stages
    )
}

/// One account's throttle, APIs and stages.
fn describe_account(
    out: &mut String,
    inv: &TargetInventory,
    opts: &PlanOptions,
    mode: Option<SourceDiscovery>,
) {
    match &inv.account_throttle {
        _ if mode == Some(SourceDiscovery::Metrics) => {
            let _ = writeln!(
                out,
                "  account throttle: unknown without a role (ListMetrics says nothing of limits)"
            );
        }
        Some(t) => {
            let _ = writeln!(out, "  account throttle: {} rps, burst {}", t.rate, t.burst);
        }
        None => {
            let _ = writeln!(
                out,
                "  account throttle: unknown (GetAccount failed: allow apigateway:GET on /account; with shard.total > 1 only shard 0 reads and exports it)"
            );
        }
    }
    for api in &inv.apis {
        let timeouts = if api.integrations.is_empty() {
            "integration timeouts: none found (no integrations)".to_string()
        } else {
            let max = api
                .integrations
                .iter()
                .map(|i| i.timeout)
                .fold(0.0, f64::max);
            let streaming = api.integrations.iter().filter(|i| i.streams).count();
            let mut backends: Vec<String> = api
                .integrations
                .iter()
                .map(|i| {
                    format!("{} {}", i.backend_type.as_str(), i.backend)
                        .trim()
                        .to_string()
                })
                .collect();
            backends.sort();
            backends.dedup();
            format!(
                "integration timeouts: {} methods/routes, longest {max} s, {streaming} streaming; backends: {}",
                api.integrations.len(),
                backends.join(", ")
            )
        };
        let _ = writeln!(
            out,
            "  {:<9} {:<12} {:<30} {}",
            api.api_type.as_str(),
            api.id,
            api.name,
            timeouts
        );
        if api.stages.is_empty() {
            let what = if api.api_level_ambiguous {
                "skipped: its CloudWatch name is shared with another REST API"
            } else {
                "API-level metrics (no stage selected)"
            };
            let _ = writeln!(out, "      (no stage): {what}");
        }
        for s in &api.stages {
            let _ = writeln!(
                out,
                "      stage {}: {}",
                s.name,
                signals(s, api.api_type, opts)
            );
        }
    }
    for c in &inv.conflicts {
        let _ = writeln!(
            out,
            "  warning: REST APIs {} share the CloudWatch ApiName {:?}; their shared series are not exported",
            c.api_ids.join(", "),
            c.cloudwatch_name
        );
    }
    if opts.lambda {
        let functions = super::lambda_functions(inv);
        let _ = writeln!(
            out,
            "  lambda (backends.lambda): {} functions behind the routes, 6 queries each (Invocations, Errors, Throttles; Duration Sum, SampleCount, Maximum): {}",
            functions.len(),
            if functions.is_empty() {
                "none".to_string()
            } else {
                functions.join(", ")
            }
        );
    }
}

/// The cost comparison `check-config` ends with: the inventory polled every interval, with
/// idle stages read less, with a metric stream, and as an equivalent YACE job would read it.
pub fn comparison(
    plans: &[TargetPlan],
    interval: Duration,
    idle_interval: Duration,
    percentiles_streamed: bool,
    price_per_1000: f64,
) -> String {
    let shape = plans
        .iter()
        .map(TargetPlan::shape)
        .fold(super::Shape::default(), |a, b| a + b);
    let c = super::compare(shape, interval, idle_interval, percentiles_streamed);
    let usd = |metrics: f64| metrics / 1000.0 * price_per_1000;
    let stream_usd = |updates: f64| updates / 1000.0 * super::STREAM_PRICE_PER_1000_UPDATES;
    let idle = super::IDLE_SHARE * 100.0;
    let every = humantime::format_duration(interval);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cost comparison, per 30-day month ({} stage queries, {} other; {idle:.0} % of the stages assumed idle, idle stages read every {}):",
        shape.stage_queries,
        shape.metric_queries - shape.stage_queries,
        humantime::format_duration(idle_interval),
    );
    let _ = writeln!(
        out,
        "  polling every stage every {every}: {:.0} metrics requested, ${:.2}",
        c.polling,
        usd(c.polling)
    );
    let _ = writeln!(
        out,
        "  with poll.idle: {:.0} metrics requested, ${:.2}",
        c.idle,
        usd(c.idle)
    );
    let _ = writeln!(
        out,
        "  with a metric stream (stream.percentiles: {percentiles_streamed}): at most {:.0} metric updates if every metric had data every minute (${:.2}), {:.0} with the idle stages silent (${:.2}); plus {:.0} metrics still polled with poll.idle (${:.2}); plus Firehose",
        c.stream_updates,
        stream_usd(c.stream_updates),
        c.stream_updates_idle,
        stream_usd(c.stream_updates_idle),
        c.stream_polled,
        usd(c.stream_polled),
    );
    let _ = writeln!(
        out,
        "  an equivalent YACE job scraping every {every}: {:.0} metrics requested (the API-level aggregates too, idle or not), ${:.2}, plus {:.0} ListMetrics requests",
        c.yace,
        usd(c.yace),
        c.yace_list_metrics,
    );
    out
}

/// Which signals a stage has, and why not where it has none: what `check-config` shows so a
/// user knows what to enable.
fn signals(stage: &Stage, api_type: ApiType, opts: &PlanOptions) -> String {
    let mut parts = Vec::new();
    parts.push(if stage.ambiguous {
        "traffic/latency: skipped (CloudWatch name shared with another REST API)".to_string()
    } else {
        "traffic/latency: yes".to_string()
    });
    parts.push(if stage.detailed_metrics {
        format!(
            "detailed metrics: enabled, {} routes found by ListMetrics",
            stage.routes.len()
        )
    } else {
        "detailed metrics: off (enable them on the stage for per-route data; AWS bills them)"
            .to_string()
    });
    if let Some(c) = &stage.canary {
        let format = stage.access_log_format.as_deref();
        let split = format.is_some_and(logs_canary_split);
        let latency = match format {
            Some(f) if !logs_latency(f) => {
                " (no latency: the format lacks \"responseLatency\":\"$context.responseLatency\")"
            }
            _ => "",
        };
        let source = match (&opts.access_logs, &stage.access_log_group) {
            (Some(AccessLogs::LogEvents { .. } | AccessLogs::Delivered { .. }), _) if split => {
                format!(
                    "compared with its base: the stage's own lines split by isCanaryRequest{latency}"
                )
            }
            (Some(AccessLogs::LogEvents { .. }), Some(g)) => {
                format!(
                    "compared with the whole stage, from every event of {} (add \"isCanaryRequest\":\"$context.isCanaryRequest\" to the stage's format to compare it with its base){latency}",
                    super::canary_log_group(g)
                )
            }
            (Some(AccessLogs::LogEvents { .. }), None) => {
                "not compared (the stage writes no access logs, so the canary has none)".to_string()
            }
            (Some(AccessLogs::Delivered { .. }), _) => {
                "not compared (with access_logs.mode firehose the stage's format needs \"isCanaryRequest\":\"$context.isCanaryRequest\")".to_string()
            }
            _ => "not compared (needs access_logs.mode filter_log_events or firehose)".to_string(),
        };
        parts.push(format!(
            "canary: {} % of requests to deployment {}, {source}",
            c.percent, c.deployment_id
        ));
    }
    parts.push(match &stage.throttle {
        Some(t) => format!(
            "throttle: stage {} rps / burst {}, {} method overrides",
            t.rate,
            t.burst,
            stage.route_throttles.len()
        ),
        None => "throttle: no stage limit (the account limit applies)".to_string(),
    });
    let log_events = |group: &str| {
        let format = match &stage.access_log_format {
            None => "unknown (the stage sets none)".to_string(),
            Some(f) => {
                let gaps = access_log_gaps(f, api_type);
                if gaps.is_empty() {
                    "ok".to_string()
                } else {
                    format!("lacks {}", gaps.join(", "))
                }
            }
        };
        format!("429s and responses: log events of {group}, format {format}")
    };
    let delivered = || {
        let format = match &stage.access_log_format {
            None => "unknown (the stage sets none)".to_string(),
            Some(f) => {
                let mut gaps = access_log_gaps(f, api_type);
                if !crate::model::logs_request_time(f) && stage.access_log_group.is_none() {
                    gaps.push("\"requestTimeEpoch\":$context.requestTimeEpoch (the minute of each line; without it a line counts in the minute it arrives)".to_string());
                }
                if gaps.is_empty() {
                    "ok".to_string()
                } else {
                    format!("lacks {}", gaps.join(", "))
                }
            }
        };
        match (&stage.access_log_stream, &stage.access_log_group) {
            (Some(stream), _) => format!(
                "429s and responses: lines delivered by Firehose stream {stream} to the endpoint's /access-logs, format {format}"
            ),
            (None, Some(group)) => format!(
                "429s and responses: lines delivered to the endpoint's /access-logs, once a subscription filter sends {group} to a Firehose stream, format {format}"
            ),
            (None, None) => "429s: unavailable (the stage writes no access logs)".to_string(),
        }
    };
    parts.push(match &opts.access_logs {
        None => "429s: off (set access_logs.mode)".to_string(),
        Some(AccessLogs::Delivered { .. }) => delivered(),
        Some(AccessLogs::MetricFilter { namespace, metric }) => format!("429s: metric filter {namespace}/{metric}; responses by cause: off (they need access_logs.mode filter_log_events)"),
        Some(AccessLogs::LogEvents { log_group: Some(g) }) => log_events(g),
        Some(AccessLogs::LogEvents { log_group: None }) => match &stage.access_log_group {
            Some(g) => log_events(g),
            None => "429s: unavailable (the stage writes no access logs to CloudWatch Logs; enable access logging or set access_logs.log_group)".to_string(),
        },
    });
    parts.join("; ")
}

/// The calls discovery made, by operation, as `check-config`'s first discovery counted them.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryCalls(pub Vec<(&'static str, u64)>);

impl DiscoveryCalls {
    fn of(&self, operation: &str) -> u64 {
        self.0
            .iter()
            .filter(|(op, _)| *op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }
}

/// The reads a refresh makes only when a deployment changed (or for the daily full re-read).
const ON_CHANGE: [&str; 4] = [
    "GetResources",
    "GetRoutes",
    "GetIntegrations",
    "ListMetrics",
];

/// How long `calls` calls take at `rate` per second, `resources` of them GetResources at a
/// quarter of that (the budget's spacing keeps 5 % above 1 / rate).
fn paced(calls: u64, resources: u64, rate: f64) -> Duration {
    let spacing = 1.05 / rate;
    let secs = (calls as f64 * spacing).max(resources as f64 * 4.0 * spacing);
    Duration::from_secs_f64(secs.max(0.0).round())
}

/// What discovery costs the account's API Gateway management quota: the calls of a full
/// discovery (the first, and each API's daily full re-read) and of a refresh with nothing
/// changed, and how long each takes at this process's share of the budget.
pub fn discovery_cost(
    calls: &DiscoveryCalls,
    budget: f64,
    shards: u32,
    refresh: Duration,
) -> String {
    let rate = budget / f64::from(shards.max(1));
    let full = calls.total();
    let resources = calls.of("GetResources");
    let on_change: u64 = ON_CHANGE.iter().map(|op| calls.of(op)).sum();
    let unchanged = full - on_change;
    let (full_time, unchanged_time) = (paced(full, resources, rate), paced(unchanged, 0, rate));
    let by_operation: Vec<String> = calls
        .0
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    let share = if shards > 1 {
        format!(", {rate:.3} per second for this shard of {shards}")
    } else {
        String::new()
    };
    let mut out = format!(
        "discovery (budget discovery.max_requests_per_second = {budget} per second for the account{share}; API Gateway allows 10 for all management calls together, shared with your deployments):\n  \
         a full discovery makes {full} calls ({}) and takes about {} at the budget;\n  \
         a refresh with nothing changed makes {unchanged} (the listings, and one GetStages per API) and takes about {}, every discovery.refresh_interval ({})",
        by_operation.join(", "),
        crate::config::types::human(full_time),
        crate::config::types::human(unchanged_time),
        crate::config::types::human(refresh),
    );
    if unchanged_time > refresh {
        let _ = write!(
            out,
            ": longer than the interval, so refreshes run back to back; a new stage or deployment shows after up to {} (raise discovery.refresh_interval to make room for the account's own deployments, or discovery.max_requests_per_second to read faster)",
            crate::config::types::human(unchanged_time * 2)
        );
    }
    out.push('\n');
    out
}
