//! Prometheus and OpenTelemetry exporter for Amazon API Gateway metrics in CloudWatch.
//!
//! Data flows one way, and so do imports: a module names only modules of lower layers, earlier
//! in the lists below, and not its peers in the same layer (`tests/layers.rs` holds the layer
//! table and fails the test suite otherwise).
//!
//! ```text
//! config ─► inventory ─► plan ─► source ─► store ─► snapshot ─► render / otlp ─► http
//!                                                         ▲
//!                                     poll drives them all; app wires them
//! ```
//!
//! The vocabulary every layer shares:
//!
//! - [`contract`]: every metric family the exporter serves (name, type, unit, help, labels),
//!   defined once for `/metrics`, OTLP and the README.
//! - [`model`]: API types, the CloudWatch families behind the contract, statistics, the
//!   labels of a series, the CloudWatch namespace.
//! - [`config`]: the YAML schema, parsed into types that cannot hold an invalid value.
//! - [`clock`]: wall-clock time, injectable for the demo and tests.
//! - [`sdk`]: AWS SDK clients of one target, and how their errors are classified.
//! - [`ratelimit`]: the GetMetricData call rate of one target.
//! - [`selfmetrics`]: the exporter's own health metrics.
//!
//! The pipeline, in the order data flows:
//!
//! - [`inventory`]: which APIs and stages exist (API Gateway discovery, paginated; the REST
//!   name join; the API filter and shards).
//! - [`plan`]: the CloudWatch queries of a cycle, 500 to a call; their cost; the
//!   `check-config` report.
//! - [`source`]: GetMetricData (and access-log events) for a batch of queries.
//! - [`demo`]: the synthetic source and discovery of `--demo`.
//! - [`store`]: per-period values → exact counters and settled gauges.
//! - [`snapshot`]: the immutable view readers share, built once per cycle.
//! - [`render`]: the Prometheus text exposition; [`otlp`]: the OTLP push of the same view.
//! - [`http`]: `/metrics`, the probes and `/-/reload`.
//! - [`poll`]: the loop that drives discovery, plan, source, store and snapshot.
//! - [`app`]: the wiring, reloads and supervision of the tasks.
#![forbid(unsafe_code)]

pub mod contract;
pub mod model;

pub mod clock;
pub mod config;
pub mod ratelimit;
pub mod sdk;
pub mod selfmetrics;

pub mod inventory;
pub mod plan;
pub mod source;

pub mod demo;
pub mod store;

pub mod snapshot;

pub mod otlp;
pub mod render;

pub mod http;
pub mod poll;

pub mod app;
