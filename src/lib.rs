//! fluxo: stream processing on Kafka for Brazilian fintech events.
//!
//! # Layout
//! - [`config`]: `topology.toml` loading, validation and `FLUXO_*` overrides.
//! - [`catalog`]: the processor kinds: schemas, typed parameters, stores and views per kind.
//! - [`api`]: the HTTP query API (JWT auth, OpenAPI document).
//! - [`console`]: the web console served at `/` and its JSON routes.
//! - [`avro`]: the Avro codec for fluxo's events, Confluent framing, JSON conversion.
//! - [`codec`]: schema-registry-aware encoding and decoding of records.
//! - [`state`]: the state store interface and its embedded engine.
//! - [`kafka`]: client settings and topic administration.
//! - [`engine`]: consume -> decode -> process -> encode -> produce -> checkpoint, per processor.
//! - [`transactions`]: Kafka transactions for `processing_guarantee = "exactly_once"`.
//! - [`jobs`]: each processor bound to its topics.
//! - [`pipeline`]: starting and stopping every enabled processor.
//! - [`replay`]: replays and backfills of one processor, what-if diffs against live outputs.
//! - [`engines`]: Apache Kafka and Cassandra from Maven Central, for development and tests.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz` and the query API.
//! - [`readiness`]: the broker probe behind `/readyz`.
//! - [`simulate`]: realistic generated data.
//! - [`validator`]: the external document validator client of risk scoring.
//! - [`privacy`]: the document key that pseudonymizes CPF/CNPJ at rest.
//! - [`metrics`]: every Prometheus metric, defined once.
//! - [`telemetry`]: OpenTelemetry traces over OTLP, trace context in Kafka headers, logs.
//! - [`notifier`]: webhook delivery of alerts and REJECT decisions.
//! - [`cli`]: the `fluxo` command.

pub mod api;
pub mod avro;
pub mod catalog;
pub mod cli;
pub mod codec;
pub mod config;
pub mod console;
pub mod engine;
pub mod engines;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod jobs;
pub mod kafka;
pub mod metrics;
pub mod notifier;
pub mod pipeline;
pub mod privacy;
pub mod readiness;
pub mod replay;
pub mod simulate;
pub mod state;
pub mod telemetry;
pub mod transactions;
pub mod validator;
