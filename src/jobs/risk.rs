//! Binding of risk scoring: `transactions` (group) and `document-blacklist` (global table) in,
//! `risk-decisions` out (keyed by transaction id).
//!
//! Before a batch is processed, the documents of its transactions that the external validator
//! (when configured) has not cached are checked concurrently under one deadline; the verdicts go
//! into each transaction's input. Every decision is logged as one JSON line on the `fluxo::audit`
//! target (documents masked; opt-in with `RUST_LOG=...,fluxo::audit=info`; the line carries the
//! decision's `trace_id` when tracing is on) and measured: latency from arrival in Kafka (the
//! later of event time and the record's timestamp), SLA breaches, outcomes.

use super::{Binding, JobError, Output, RawRecord};
use crate::codec::Codec;
use crate::metrics;
use crate::telemetry::logs::AUDIT_TARGET;
use crate::validator::Validator;
use fluxo_processors::events::{BlacklistEntry, RiskDecision, Transaction};
use fluxo_processors::risk::documents;
use fluxo_processors::risk::{
    decision_log_fields, Config, ExternalValidation, ExternalVerdict, Pseudonymizer, RiskInput,
    RiskProcessor,
};
use fluxo_processors::views::OutputEvent;
use std::collections::HashMap;

/// `risk-scoring`.
pub struct RiskBinding {
    /// Parameters.
    pub config: Config,
    /// The `transactions` topic.
    pub transactions: String,
    /// The `risk-decisions` topic.
    pub output: String,
    /// The external validator, when configured.
    pub validator: Option<Validator>,
    /// Pseudonymizes documents at rest (the process's document key).
    pub pseudonymizer: Pseudonymizer,
    /// Transactions decoded in `prepare`, by (partition, offset), with their verdicts.
    prepared: HashMap<(i32, i64), Result<(Transaction, ExternalValidation), JobError>>,
    duplicates: super::DuplicateCounter,
}

impl RiskBinding {
    /// A binding for `config` reading `transactions` and writing `output`, storing documents
    /// under their pseudonyms from `pseudonymizer`, counting skipped duplicates in
    /// `duplicates`.
    ///
    /// # Errors
    /// When the validator's HTTP client cannot be built.
    pub fn new(
        config: Config,
        transactions: String,
        output: String,
        pseudonymizer: Pseudonymizer,
        duplicates: super::DuplicateCounter,
    ) -> anyhow::Result<Self> {
        let validator = Validator::new(&config.external)?;
        Ok(Self {
            config,
            transactions,
            output,
            validator,
            pseudonymizer,
            prepared: HashMap::new(),
            duplicates,
        })
    }
}

fn verdict(map: &HashMap<String, ExternalVerdict>, document: &str) -> ExternalVerdict {
    map.get(&documents::normalize(document))
        .cloned()
        .unwrap_or_default()
}

impl Binding for RiskBinding {
    type P = RiskProcessor;

    fn new_processor(&self) -> Self::P {
        RiskProcessor::new(self.config.clone(), self.pseudonymizer.clone())
    }

    fn prepare(&mut self, codec: &mut Codec, batch: &[RawRecord<'_>]) {
        self.prepared.clear();
        let Some(validator) = self.validator.clone() else {
            return;
        };
        let mut decoded = Vec::new();
        let mut wanted: Vec<String> = Vec::new();
        // The trace of the first transaction asking for each document: its calls go under it.
        let mut traces: HashMap<String, opentelemetry::Context> = HashMap::new();
        let mut oldest = i64::MAX;
        for rec in batch.iter().filter(|r| r.topic == self.transactions) {
            match codec.decode::<Transaction>(rec.payload) {
                Ok(tx) => {
                    oldest = oldest.min(fluxo_processors::risk::arrival(
                        tx.event_time,
                        rec.timestamp,
                    ));
                    for doc in [&tx.payer_document, &tx.payee_document] {
                        if documents::validate(doc).is_ok() {
                            let digits = documents::normalize(doc);
                            if let Some(t) = &rec.trace {
                                traces
                                    .entry(digits.clone())
                                    .or_insert_with(|| t.context().clone());
                            }
                            wanted.push(digits);
                        }
                    }
                    decoded.push(((rec.partition, rec.offset), Ok(tx)));
                }
                Err(e) => decoded.push(((rec.partition, rec.offset), Err(JobError::from(e)))),
            }
        }
        wanted.sort();
        wanted.dedup();
        let wanted: Vec<_> = wanted
            .into_iter()
            .map(|d| {
                let trace = traces.remove(&d);
                (d, trace)
            })
            .collect();
        let verdicts = if wanted.is_empty() {
            HashMap::new()
        } else {
            codec
                .handle()
                .block_on(async move { validator.validate_all(wanted, oldest).await })
        };
        for (pos, result) in decoded {
            let entry = result.map(|tx| {
                let validation = ExternalValidation {
                    payer: verdict(&verdicts, &tx.payer_document),
                    payee: verdict(&verdicts, &tx.payee_document),
                };
                (tx, validation)
            });
            self.prepared.insert(pos, entry);
        }
    }

    fn decode(&mut self, codec: &mut Codec, rec: &RawRecord<'_>) -> Result<RiskInput, JobError> {
        if rec.topic == self.transactions {
            let (tx, validation) = match self.prepared.remove(&(rec.partition, rec.offset)) {
                Some(r) => r?,
                None => (
                    codec.decode(rec.payload)?,
                    ExternalValidation::not_configured(),
                ),
            };
            return Ok(RiskInput::Transaction { tx, validation });
        }
        // The blacklist: a tombstone removes the document named by the key.
        let key = rec
            .key
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        let entry = match rec.payload {
            None => None,
            Some(_) => Some(codec.decode::<BlacklistEntry>(rec.payload)?),
        };
        let key = match (&entry, key.is_empty()) {
            (Some(e), true) => e.document.clone(),
            _ => key,
        };
        Ok(RiskInput::Blacklist { key, entry })
    }

    fn encode(&self, codec: &Codec, decision: &RiskDecision) -> anyhow::Result<Output> {
        Ok(Output::new(
            &self.output,
            decision.output_key(),
            codec.encode(&self.output, decision)?,
        ))
    }

    /// Both inputs name documents: transactions their payer and payee, the blacklist its key
    /// and value.
    fn carries_documents(&self, _source_topic: &str) -> bool {
        true
    }

    fn after(&self, processor: &RiskProcessor) {
        self.duplicates.update(processor.duplicates_skipped());
    }

    fn observe(&self, decision: &RiskDecision) {
        let latency = decision.latency_ms.max(0) as f64 / 1000.0;
        metrics::RISK_DECISION_LATENCY.observe(latency);
        if decision.latency_ms > self.config.sla.millis() {
            metrics::RISK_SLA_BREACHES.inc();
        }
        let outcome = fluxo_processors::risk::decision_symbol(decision.decision);
        metrics::RISK_DECISIONS
            .with_label_values(&[outcome, if decision.degraded { "true" } else { "false" }])
            .inc();
        // Opt-in audit target (see `telemetry::logs`): off unless RUST_LOG names it.
        tracing::info!(target: AUDIT_TARGET, decision = %decision_log_fields(decision), "risk decision");
    }
}
