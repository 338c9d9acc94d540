//! Every Prometheus metric fluxo exports, defined once.
//!
//! Labels are bounded: processor, topic, partition, reason, route — never a document, an
//! account or a transaction id. Names follow Prometheus conventions (`_total` counters, base
//! units, `_seconds` histograms).

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, register_gauge_vec, register_histogram_vec, register_int_counter_vec,
    register_int_gauge_vec, Encoder, GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec,
    TextEncoder,
};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Records consumed, per processor and topic.
pub static RECORDS_IN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_records_in_total",
        "Records consumed by a processor.",
        &["processor", "topic"]
    )
    .expect("metric registered once")
});

/// Records produced, per processor and topic.
pub static RECORDS_OUT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_records_out_total",
        "Records produced by a processor (dead letters excluded).",
        &["processor", "topic"]
    )
    .expect("metric registered once")
});

/// Records sent to a dead-letter topic, per processor, source topic and reason.
pub static DEAD_LETTERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_records_dead_lettered_total",
        "Records sent to a dead-letter topic.",
        &["processor", "topic", "reason"]
    )
    .expect("metric registered once")
});

/// Time to decode, process and encode one record.
pub static PROCESSING_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "fluxo_processing_duration_seconds",
        "Time to decode, process and encode one record.",
        &["processor"],
        exponential_buckets(1e-6, 4.0, 12).expect("valid buckets")
    )
    .expect("metric registered once")
});

/// Time from a record's event time to its outputs being handed to the producer.
pub static EVENT_TIME_LATENCY_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "fluxo_event_time_latency_seconds",
        "Time from an input record's Kafka timestamp to its outputs being produced.",
        &["processor"],
        exponential_buckets(0.001, 2.0, 16).expect("valid buckets")
    )
    .expect("metric registered once")
});

/// Time to write one checkpoint (produce flush + state commit).
pub static CHECKPOINT_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "fluxo_checkpoint_duration_seconds",
        "Time to write one checkpoint: wait for produce acknowledgements, commit state and offsets.",
        &["processor"],
        exponential_buckets(1e-4, 3.0, 12).expect("valid buckets")
    )
    .expect("metric registered once")
});

/// Failed produce deliveries.
pub static PRODUCE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_produce_errors_total",
        "Produce deliveries that failed (the batch is rewound and retried).",
        &["processor", "topic"]
    )
    .expect("metric registered once")
});

/// Consumer lag in records, per partition (from librdkafka statistics).
pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "fluxo_consumer_lag_records",
        "Records between a partition's high watermark and the processor's position.",
        &["processor", "topic", "partition"]
    )
    .expect("metric registered once")
});

/// Next input offset committed with the state, per partition.
pub static CHECKPOINTED_OFFSET: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "fluxo_checkpointed_offset",
        "Next input offset committed together with the processor's state.",
        &["processor", "topic", "partition"]
    )
    .expect("metric registered once")
});

/// Partitions currently assigned to this instance.
pub static ASSIGNED_PARTITIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "fluxo_assigned_partitions",
        "Input partitions currently assigned to this instance.",
        &["processor"]
    )
    .expect("metric registered once")
});

/// In-process restarts of an engine after its transactional producer failed (see
/// `pipeline::supervise`).
pub static ENGINE_RESTARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_engine_restarts_total",
        "Engines restarted in-process after their transactional producer failed (e.g. fenced by the coordinator after a broker outage).",
        &["processor"]
    )
    .expect("metric registered once")
});

/// 1 while a processor's engine is running.
pub static PROCESSOR_UP: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "fluxo_processor_up",
        "1 while the processor's engine is running, 0 once it stopped.",
        &["processor"]
    )
    .expect("metric registered once")
});

/// Inputs skipped because their id was already applied (idempotence).
pub static DUPLICATES_SKIPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_duplicates_skipped_total",
        "Input records skipped because their id was already applied.",
        &["processor"]
    )
    .expect("metric registered once")
});

/// Risk decisions by outcome and whether they were degraded.
pub static RISK_DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_risk_decisions_total",
        "Risk decisions produced, by decision and degraded flag.",
        &["decision", "degraded"]
    )
    .expect("metric registered once")
});

/// Time from a transaction's event time to its decision.
pub static RISK_DECISION_LATENCY: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::register_histogram!(
        "fluxo_risk_decision_latency_seconds",
        "Time from a transaction's event time to its decision.",
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0]
    )
    .expect("metric registered once")
});

/// Decisions later than the SLA (2 s by default).
pub static RISK_SLA_BREACHES: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "fluxo_risk_sla_breaches_total",
        "Risk decisions made later than the SLA after the transaction's event time."
    )
    .expect("metric registered once")
});

/// External validator calls by outcome (`ok`, `cache_hit`, `timeout`, `http_503`, …).
pub static VALIDATOR_CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_validator_calls_total",
        "External validator calls by outcome.",
        &["outcome"]
    )
    .expect("metric registered once")
});

/// Validations given up (the decision is degraded), by cause.
pub static VALIDATOR_UNAVAILABLE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_validator_unavailable_total",
        "Document validations with no usable answer (decision degraded), by cause.",
        &["cause"]
    )
    .expect("metric registered once")
});

/// Circuit breaker state: 0 closed, 1 open, 2 half-open.
pub static VALIDATOR_BREAKER_STATE: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "fluxo_validator_breaker_state",
        "External validator circuit breaker: 0 closed, 1 open, 2 half-open."
    )
    .expect("metric registered once")
});

/// Query API requests, by route template (`unmatched` for unknown paths), method and status.
pub static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_http_requests_total",
        "Query API requests answered, by route template, method and status code.",
        &["route", "method", "status"]
    )
    .expect("metric registered once")
});

/// Query API store reads running now (on the blocking pool), those abandoned at the read
/// timeout included; at most `[http] max_reads_in_flight`.
pub static HTTP_READS_IN_FLIGHT: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "fluxo_http_reads_in_flight",
        "Query API state store reads running, including those whose request already answered 503 \
         at the read timeout (bounded by [http] max_reads_in_flight)."
    )
    .expect("metric registered once")
});

/// Query API request latency, by route template.
pub static HTTP_REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "fluxo_http_request_duration_seconds",
        "Time to answer a query API request, by route template.",
        &["route"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
    )
    .expect("metric registered once")
});

/// Daily balances changed after their business day had ended (late entries correcting a day).
pub static CONSOLIDATION_LATE_CORRECTIONS: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "fluxo_consolidation_late_corrections_total",
        "Daily balances re-emitted for a business day that had already ended (processing \
             time, in the consolidation's time zone)."
    )
    .expect("metric registered once")
});

/// Webhook deliveries per notifier and outcome (`delivered`, `failed` after every retry,
/// `rejected` by a 4xx, `skipped` when the notifier does not want the event).
pub static NOTIFIER_DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_notifier_deliveries_total",
        "Webhook deliveries by notifier and outcome (failed and rejected ones are dead-lettered).",
        &["notifier", "outcome"]
    )
    .expect("metric registered once")
});

/// Webhook attempts after the first, per notifier.
pub static NOTIFIER_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "fluxo_notifier_retries_total",
        "Webhook attempts after the first, by notifier.",
        &["notifier"]
    )
    .expect("metric registered once")
});

/// Time from a delivery's first attempt to its success or its dead letter.
pub static NOTIFIER_DELIVERY_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "fluxo_notifier_delivery_duration_seconds",
        "Time from a webhook delivery's first attempt to its success or its dead letter, retries included.",
        &["notifier", "outcome"],
        exponential_buckets(0.001, 2.5, 14).expect("valid buckets")
    )
    .expect("metric registered once")
});

/// Time of one state-store commit (state, views and offsets), by processor: the store's share of
/// a checkpoint (on ScyllaDB: the redo log, the conditioned commit point, the row batches).
pub static STORE_COMMIT_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "fluxo_store_commit_seconds",
        "Time of one state-store commit of state, views and input offsets.",
        &["processor"],
        exponential_buckets(1e-4, 2.0, 18).expect("valid buckets")
    )
    .expect("metric registered once")
});

/// When each processor last committed a checkpoint to the store (Unix seconds): the console's
/// "last checkpoint" age, and an alertable staleness signal (`time() - ...`).
pub static LAST_CHECKPOINT_TIMESTAMP: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "fluxo_last_checkpoint_timestamp_seconds",
        "Unix time of the processor's last checkpoint committed to the state store.",
        &["processor"]
    )
    .expect("metric registered once")
});

/// Every metric fluxo defines, registering each one on first call.
fn collectors() -> [&'static dyn Collector; 28] {
    [
        &*RECORDS_IN,
        &*RECORDS_OUT,
        &*DEAD_LETTERS,
        &*PROCESSING_SECONDS,
        &*EVENT_TIME_LATENCY_SECONDS,
        &*CHECKPOINT_SECONDS,
        &*LAST_CHECKPOINT_TIMESTAMP,
        &*STORE_COMMIT_SECONDS,
        &*PRODUCE_ERRORS,
        &*CONSUMER_LAG,
        &*CHECKPOINTED_OFFSET,
        &*ASSIGNED_PARTITIONS,
        &*PROCESSOR_UP,
        &*ENGINE_RESTARTS,
        &*DUPLICATES_SKIPPED,
        &*RISK_DECISIONS,
        &*RISK_DECISION_LATENCY,
        &*RISK_SLA_BREACHES,
        &*VALIDATOR_CALLS,
        &*VALIDATOR_UNAVAILABLE,
        &*VALIDATOR_BREAKER_STATE,
        &*HTTP_REQUESTS,
        &*HTTP_REQUEST_SECONDS,
        &*HTTP_READS_IN_FLIGHT,
        &*CONSOLIDATION_LATE_CORRECTIONS,
        &*NOTIFIER_DELIVERIES,
        &*NOTIFIER_RETRIES,
        &*NOTIFIER_DELIVERY_SECONDS,
    ]
}

/// Every metric family fluxo exports: its name and its label names, from the collectors'
/// descriptors (registering each metric on first call).
///
/// A labelled metric appears in `/metrics` only once it has a child (a label combination that
/// was counted), so a scrape alone cannot list them all; this list can (the dashboards and alert
/// rules in `deploy/` are checked against it by `tests/deploy_metrics.rs`).
pub fn families() -> BTreeMap<String, Vec<String>> {
    collectors()
        .iter()
        .flat_map(|c| c.desc().into_iter())
        .map(|d| (d.fq_name.clone(), d.variable_labels.clone()))
        .collect()
}

/// Render every registered metric in the Prometheus text format.
pub fn render() -> String {
    // Register every metric, so the unlabelled ones are listed even before the first record.
    let _ = collectors();
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut buf) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}
