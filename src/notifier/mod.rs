//! The notifier: a sink that POSTs `price-alerts`, `below-average-events` and chosen risk
//! decisions to webhooks declared under `[notifiers.<name>]` in topology.toml.
//!
//! Each notifier is an engine of its own ([`crate::engine`]), named `notifier-<name>`: its own
//! consumer group over its topics and its own checkpoints in the state store, so it keeps its
//! place independently of the processors and of other notifiers. Delivery is at-least-once: a
//! record's offset is checkpointed only after its POST succeeded or it was dead-lettered, and
//! every POST carries the record's `fluxo-id` as `Idempotency-Key`. A delivery that keeps
//! failing goes to `<topic>.notify-dlq` with the engine's dead-letter headers, and the partition
//! moves on.
//!
//! - [`config`]: the `[notifiers.<name>]` table and its validation.
//! - [`job`]: decoding, filtering, rendering and delivering one record.

pub mod config;
pub mod job;
