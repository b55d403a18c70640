//! Prometheus and OpenTelemetry exporter for Amazon API Gateway metrics in CloudWatch.
//!
//! Data flows one way (see `ARCHITECTURE.md`):
//!
//! ```text
//! config ─► inventory ─► plan ─► source ─► store ─► snapshot ─► render / http
//! ```
//!
//! - [`config`]: the YAML schema and its validation.
//! - [`inventory`]: which APIs and stages exist (API Gateway discovery, REST name join).
//! - [`plan`]: the CloudWatch queries of a cycle, 500 to a call, and their cost.
//! - [`source`]: GetMetricData, or the [`demo`] source.
//! - [`store`]: per-period values → exact counters and settled gauges.
//! - [`snapshot`]: the immutable view that readers share.
//! - [`render`], [`http`]: the Prometheus exposition and the HTTP endpoints.
//! - [`otlp`]: OTLP push of the same snapshot (gRPC or HTTP/protobuf) to a collector.
//! - [`poll`]: the loop that drives it all; [`app`]: the wiring; [`selfmetrics`]: its own health.
#![forbid(unsafe_code)]

pub mod app;
pub mod clock;
pub mod config;
pub mod contract;
pub mod demo;
pub mod http;
pub mod inventory;
pub mod model;
pub mod otlp;
pub mod plan;
pub mod poll;
pub mod ratelimit;
pub mod render;
pub mod sdk;
pub mod selfmetrics;
pub mod snapshot;
pub mod source;
pub mod store;
