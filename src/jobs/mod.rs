//! Jobs: a processor bound to its topics — decode the input, process, encode the outputs.
//!
//! The engine ([`crate::engine`]) moves bytes; a [`Job`] knows what they mean. Each processor
//! kind has a [`Binding`] (which topic decodes into which input variant, which output goes to
//! which topic with which key) and runs as a [`TypedJob`].

use crate::codec::{Codec, DecodeFailure};
use crate::config::{ProcessorConfig, TopicConfig};
use fluxo_processors::{below_average, consolidation, price_change};
use fluxo_processors::{Context, Processor, RecordMeta, StateReader, StateWriter};
use std::collections::BTreeMap;

pub mod ledger;
pub mod market;
pub mod risk;
pub mod views;

/// An input record as the engine read it.
#[derive(Debug, Clone)]
pub struct RawRecord<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value (Confluent-framed Avro), `None` for a tombstone.
    pub payload: Option<&'a [u8]>,
    /// Kafka timestamp in milliseconds.
    pub timestamp: Option<i64>,
    /// Headers with a value.
    pub headers: Option<Vec<(&'a str, &'a [u8])>>,
    /// The record's trace when tracing is on (its `process` span).
    pub trace: Option<crate::telemetry::kafka::RecordTrace>,
}

/// A record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Destination topic.
    pub topic: String,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes (framed Avro), `None` for a tombstone.
    pub payload: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// `Some(reason)` when this is a dead letter.
    pub dead_letter: Option<String>,
}

impl Output {
    /// A regular output record.
    pub fn new(topic: &str, key: impl Into<Vec<u8>>, payload: Vec<u8>) -> Self {
        Self {
            topic: topic.to_string(),
            key: Some(key.into()),
            payload: Some(payload),
            headers: Vec::new(),
            dead_letter: None,
        }
    }
}

/// Why a record goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Short reason code (`bad_framing`, `unknown_schema_id`, `late`, `invalid_amount`…).
    pub reason: String,
    /// Human-readable detail (never a document in clear).
    pub detail: String,
}

/// What can go wrong with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// The record is dead-lettered and the partition moves on.
    Dead(DeadLetter),
    /// A dependency is down (e.g. the schema registry); retry from the last checkpoint.
    Retry(String),
}

impl From<DecodeFailure> for JobError {
    fn from(f: DecodeFailure) -> Self {
        match f {
            DecodeFailure::RegistryUnavailable(m) => Self::Retry(m),
            other => Self::Dead(DeadLetter {
                reason: other.reason().to_string(),
                detail: other.to_string(),
            }),
        }
    }
}

impl From<fluxo_processors::Rejection> for JobError {
    fn from(r: fluxo_processors::Rejection) -> Self {
        Self::Dead(DeadLetter {
            reason: r.reason,
            detail: r.detail,
        })
    }
}

/// A runnable processor: the engine's view of it.
pub trait Job: Send {
    /// Optionally look at a whole batch before it is processed (e.g. to call an external
    /// validator for all its documents at once).
    fn prepare(&mut self, _batch: &[RawRecord<'_>]) {}

    /// Decode, process and encode one record, appending what to produce to `out`.
    ///
    /// # Errors
    /// [`JobError::Dead`] to dead-letter the record, [`JobError::Retry`] to rewind.
    fn process(
        &mut self,
        rec: &RawRecord<'_>,
        processing_time: i64,
        state: &dyn StateReader,
        out: &mut Vec<Output>,
    ) -> Result<(), JobError>;

    /// Write state changes since the last flush.
    fn flush(&mut self, changes: &mut dyn StateWriter);

    /// Drop all uncommitted work: the next record sees only committed state.
    fn reset(&mut self);

    /// Where records of `source_topic` that this job dead-letters go (default `<topic>.dlq`).
    fn dead_letter_topic(&self, source_topic: &str) -> String {
        crate::config::Topology::dlq_topic(source_topic)
    }
}

/// How one processor kind maps topics to typed inputs and typed outputs to records.
pub trait Binding: Send + 'static {
    /// The processor.
    type P: Processor + Send;

    /// A fresh processor (after a rewind or a rebalance).
    fn new_processor(&self) -> Self::P;

    /// Decode `rec` into the processor's input.
    ///
    /// # Errors
    /// A [`JobError`] for records that cannot be decoded.
    fn decode(
        &mut self,
        codec: &mut Codec,
        rec: &RawRecord<'_>,
    ) -> Result<<Self::P as Processor>::Input, JobError>;

    /// Encode one output.
    ///
    /// # Errors
    /// When the output does not fit its schema.
    fn encode(
        &self,
        codec: &Codec,
        output: &<Self::P as Processor>::Output,
    ) -> anyhow::Result<Output>;

    /// See [`Job::prepare`].
    fn prepare(&mut self, _codec: &mut Codec, _batch: &[RawRecord<'_>]) {}

    /// Called after each processed record with its outputs (for logs and metrics).
    fn observe(&self, _output: &<Self::P as Processor>::Output) {}

    /// Called after each processed record with the processor (for its counters).
    fn after(&self, _processor: &Self::P) {}
}

/// A [`Binding`] run as a [`Job`].
pub struct TypedJob<B: Binding> {
    binding: B,
    processor: B::P,
    codec: Codec,
    typed: Vec<<B::P as Processor>::Output>,
}

impl<B: Binding> TypedJob<B> {
    /// Run `binding`'s processor with `codec`.
    pub fn new(binding: B, codec: Codec) -> Self {
        let processor = binding.new_processor();
        Self {
            binding,
            processor,
            codec,
            typed: Vec::new(),
        }
    }
}

impl<B: Binding> Job for TypedJob<B>
where
    <B::P as Processor>::Output: Send,
{
    fn prepare(&mut self, batch: &[RawRecord<'_>]) {
        self.binding.prepare(&mut self.codec, batch);
    }

    fn process(
        &mut self,
        rec: &RawRecord<'_>,
        processing_time: i64,
        state: &dyn StateReader,
        out: &mut Vec<Output>,
    ) -> Result<(), JobError> {
        let input = self.binding.decode(&mut self.codec, rec)?;
        let meta = RecordMeta {
            topic: rec.topic,
            partition: rec.partition,
            offset: rec.offset,
            timestamp: rec.timestamp,
            processing_time,
        };
        self.typed.clear();
        let mut ctx = Context::new(meta, state, &mut self.typed);
        let result = self.processor.process(&mut ctx, input);
        self.binding.after(&self.processor);
        result?;
        for o in &self.typed {
            self.binding.observe(o);
            match self.binding.encode(&self.codec, o) {
                Ok(record) => out.push(record),
                Err(e) => {
                    // The processor's state already moved; an output that cannot be encoded is
                    // a bug, so stop rather than lose it.
                    return Err(JobError::Retry(format!("cannot encode an output: {e}")));
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, changes: &mut dyn StateWriter) {
        self.processor.flush(changes);
    }

    fn reset(&mut self) {
        self.processor = self.binding.new_processor();
    }
}

/// A processor-config problem: the key under `processors.<name>.` and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// Key below the processor, e.g. `params.window`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Parse a processor's `params` table into its `Config`.
///
/// # Errors
/// A [`ParamError`] naming the key.
pub fn parse_params<C: serde::de::DeserializeOwned>(params: &toml::Table) -> Result<C, ParamError> {
    C::deserialize(toml::Value::Table(params.clone())).map_err(|e| {
        let message = e.message().to_string();
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .map(|f| format!("params.{f}"))
            .unwrap_or_else(|| "params".to_string());
        ParamError {
            key: field,
            message,
        }
    })
}

/// The schemas a processor kind reads (group inputs, global inputs) and writes.
fn shape(kind: &str) -> (&'static str, Option<&'static str>, &'static str) {
    match kind {
        "price-change" => ("AssetPrice", None, "PriceAlert"),
        "below-average" => ("AssetPrice", None, "BelowAverageEvent"),
        "risk-scoring" => ("Transaction", Some("BlacklistEntry"), "RiskDecision"),
        _ => ("LedgerEntry", None, "DailyBalance"),
    }
}

fn check_topics(
    field: &str,
    list: &[String],
    schema: &str,
    exactly_one: bool,
    topics: &BTreeMap<String, TopicConfig>,
) -> Result<(), ParamError> {
    if exactly_one && list.len() != 1 {
        return Err(ParamError {
            key: field.into(),
            message: format!("needs exactly one topic, got {}", list.len()),
        });
    }
    for t in list {
        let found = topics.get(t).map(|c| c.schema.as_str()).unwrap_or_default();
        if found != schema {
            return Err(ParamError {
                key: field.into(),
                message: format!("topic `{t}` holds `{found}`, this processor needs `{schema}`"),
            });
        }
    }
    Ok(())
}

fn params<C: serde::de::DeserializeOwned>(
    config: &ProcessorConfig,
    validate: impl Fn(&C) -> Result<(), String>,
) -> Result<C, ParamError> {
    let c: C = parse_params(&config.params)?;
    validate(&c).map_err(|message| ParamError {
        key: "params".into(),
        message,
    })?;
    Ok(c)
}

/// Check that a processor's inputs, outputs and params fit its kind.
///
/// # Errors
/// A [`ParamError`] naming the key under `processors.<name>`.
pub fn validate(
    config: &ProcessorConfig,
    topics: &BTreeMap<String, TopicConfig>,
) -> Result<(), ParamError> {
    let (input, global, output) = shape(&config.kind);
    check_topics(
        "inputs",
        &config.inputs,
        input,
        config.kind == "risk-scoring",
        topics,
    )?;
    check_topics("outputs", &config.outputs, output, true, topics)?;
    match global {
        Some(schema) => check_topics(
            "global_inputs",
            &config.global_inputs,
            schema,
            false,
            topics,
        )?,
        None if !config.global_inputs.is_empty() => {
            return Err(ParamError {
                key: "global_inputs".into(),
                message: format!("`{}` reads no global table", config.kind),
            })
        }
        None => {}
    }
    match config.kind.as_str() {
        "price-change" => params(config, price_change::Config::validate).map(|_| ()),
        "below-average" => params(config, below_average::Config::validate).map(|_| ()),
        "risk-scoring" => params(config, fluxo_processors::risk::Config::validate).map(|_| ()),
        _ => params(config, consolidation::Config::validate).map(|_| ()),
    }
}

/// Build the job of a validated processor.
///
/// # Errors
/// When its parameters do not parse (they were validated at load, so only on a bug) or the
/// validator client cannot be built.
pub fn build(
    config: &ProcessorConfig,
    codec: Codec,
    _topology: &crate::config::Topology,
) -> anyhow::Result<Box<dyn Job>> {
    let err =
        |e: ParamError| anyhow::anyhow!("processors.{}.{}: {}", config.name, e.key, e.message);
    let output = config.outputs[0].clone();
    Ok(match config.kind.as_str() {
        "price-change" => Box::new(TypedJob::new(
            market::PriceChangeBinding {
                config: params(config, price_change::Config::validate).map_err(err)?,
                output,
            },
            codec,
        )),
        "below-average" => Box::new(TypedJob::new(
            market::BelowAverageBinding {
                config: params(config, below_average::Config::validate).map_err(err)?,
                output,
            },
            codec,
        )),
        "risk-scoring" => Box::new(TypedJob::new(
            risk::RiskBinding::new(
                params(config, fluxo_processors::risk::Config::validate).map_err(err)?,
                config.inputs[0].clone(),
                output,
            )?,
            codec,
        )),
        _ => Box::new(TypedJob::new(
            ledger::ConsolidationBinding {
                config: params(config, consolidation::Config::validate).map_err(err)?,
                output,
                seen_duplicates: std::cell::Cell::new(0),
            },
            codec,
        )),
    })
}
