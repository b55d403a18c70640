//! What discovery costs an account's API Gateway management quota, at 100, 1,000 and 10,000
//! APIs (half REST, half HTTP, one stage each): the calls and time of the first discovery,
//! of a refresh with nothing changed, and of one with one API redeployed, at the default
//! budget of 2 calls per second. The account is `aws-smithy-mocks` behind the real SDK
//! clients (tests/common/fleet.rs), on tokio's paused clock: the times are what the pacing
//! takes, measured on the clock the calls arrive by, not wall time.
//!
//! `cargo run --release --example discoverybench [budget]`

#[path = "../tests/common/fleet.rs"]
mod fleet;

use std::time::Duration;

use apigateway_exporter::config::ApiSelection;
use apigateway_exporter::inventory::{ApiFilter, AwsDiscovery, Discovery, Pace};
use apigateway_exporter::selfmetrics::SelfMetrics;
use fleet::{Call, Fleet, busiest, http_id};

/// Calls, how long they took from the first to the last, the busiest second.
fn figures(calls: &[Call]) -> (usize, Duration, usize) {
    let management: Vec<&Call> = calls.iter().filter(|c| c.is_management()).collect();
    let took = match (management.first(), management.last()) {
        (Some(a), Some(b)) => b.at - a.at,
        _ => Duration::ZERO,
    };
    let peak = busiest(management.iter().copied(), Duration::from_secs(1));
    (management.len(), took, peak)
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

fn main() {
    let budget: f64 = std::env::args()
        .nth(1)
        .map_or(2.0, |a| a.parse().expect("budget: calls per second"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    println!("budget {budget} calls/s (discovery.max_requests_per_second)");
    println!(
        "| APIs | discovery | calls | of which GetStages | GetResources, GetRoutes, GetIntegrations, ListMetrics | time at the budget | busiest second |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for apis in [100, 1_000, 10_000] {
        runtime.block_on(async {
            let fleet = Fleet::new(apis / 2, apis / 2);
            let registry = prometheus::Registry::new();
            let discovery = AwsDiscovery::new(
                fleet.clients(),
                SelfMetrics::new(&registry, false).expect("metrics"),
                Pace::standalone("us-east-1", budget, Duration::from_secs(86_400)),
            );
            let filter = ApiFilter::new(&ApiSelection::default());
            for what in ["first", "nothing changed", "one API redeployed"] {
                if what == "one API redeployed" {
                    fleet.deploy(&http_id(1), "d2");
                }
                discovery.discover(&filter).await.expect("discovery");
                let calls = fleet.take();
                let (n, took, peak) = figures(&calls);
                let of = |ops: &[&str]| calls.iter().filter(|c| ops.contains(&c.operation)).count();
                println!(
                    "| {apis} | {what} | {n} | {} | {} | {} | {peak} |",
                    of(&["GetStages"]),
                    of(&[
                        "GetResources",
                        "GetRoutes",
                        "GetIntegrations",
                        "ListMetrics"
                    ]),
                    human(took),
                );
            }
        });
    }
}
