//! Jobs: a processor bound to its topics — decode the input, process, encode the outputs.
//!
//! The engine ([`crate::engine`]) moves bytes; a [`Job`] knows what they mean. Each processor
//! kind has a [`Binding`] (which topic decodes into which input variant, which output goes to
//! which topic with which key) and runs as a [`TypedJob`]. [`kinds`] names each kind's types
//! once; a processor with one input and one output event runs with the generic
//! [`kinds::EventBinding`], the others (risk, consolidation) with a binding of their own.

use crate::catalog::StoreNamespace;
use crate::codec::{Codec, DecodeFailure};
use crate::config::ProcessorConfig;
use fluxo_processors::{Context, Processor, RecordMeta, Resume, StateReader, StateWriter, Tick};

pub mod kinds;
pub mod ledger;
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

    /// Tell the processor that time advanced ([`Tick`]), appending what it emits to `out`.
    /// `meta` is the last input record handed to the job, with the current processing time.
    ///
    /// # Errors
    /// [`JobError::Retry`] when an output cannot be encoded.
    fn tick(
        &mut self,
        _tick: Tick<'_>,
        _meta: RecordMeta<'_>,
        _state: &dyn StateReader,
        _out: &mut Vec<Output>,
    ) -> Result<(), JobError> {
        Ok(())
    }

    /// Tell the processor that an input partition resumed from its checkpoint ([`Resume`]).
    fn resume(&mut self, _resume: Resume<'_>, _state: &dyn StateReader) {}

    /// Write state changes since the last flush.
    fn flush(&mut self, changes: &mut dyn StateWriter);

    /// Drop all uncommitted work: the next record sees only committed state.
    fn reset(&mut self);

    /// Where records of `source_topic` that this job dead-letters go (default `<topic>.dlq`).
    fn dead_letter_topic(&self, source_topic: &str) -> String {
        crate::config::Topology::dlq_topic(source_topic)
    }

    /// Whether records of `source_topic` carry documents (CPF/CNPJ). Their dead letters then
    /// withhold the value and pseudonymize the key (see the engine's "Dead letters"): a record
    /// that does not parse cannot be masked field by field.
    fn carries_documents(&self, _source_topic: &str) -> bool {
        false
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

    /// See [`Job::carries_documents`].
    fn carries_documents(&self, _source_topic: &str) -> bool {
        false
    }
}

/// Feeds `fluxo_duplicates_skipped_total{processor}` from a processor's own running count,
/// which restarts from zero when the processor is rebuilt (after a rewind or a rebalance).
/// Labelled by the processor's name, not its kind: two processors of one kind in a topology
/// have a series each.
#[derive(Debug)]
pub struct DuplicateCounter {
    processor: String,
    seen: std::cell::Cell<u64>,
}

impl DuplicateCounter {
    /// A counter for processor `processor` (its name in the topology).
    pub fn new(processor: &str) -> Self {
        Self {
            processor: processor.to_string(),
            seen: std::cell::Cell::new(0),
        }
    }

    /// Add what `skipped_so_far` grew by since the last call to the processor's counter.
    pub fn update(&self, skipped_so_far: u64) {
        let before = self.seen.replace(skipped_so_far);
        let delta = skipped_so_far.checked_sub(before).unwrap_or(skipped_so_far);
        if delta > 0 {
            crate::metrics::DUPLICATES_SKIPPED
                .with_label_values(&[&self.processor])
                .inc_by(delta);
        }
    }
}

/// A [`Binding`] run as a [`Job`].
pub struct TypedJob<B: Binding> {
    binding: B,
    processor: B::P,
    codec: Codec,
    typed: Vec<<B::P as Processor>::Output>,
    stores: StoreNamespace,
}

impl<B: Binding> TypedJob<B> {
    /// Run `binding`'s processor with `codec`, its state kept under `stores`.
    pub fn new(binding: B, codec: Codec, stores: StoreNamespace) -> Self {
        let processor = binding.new_processor();
        Self {
            binding,
            processor,
            codec,
            typed: Vec::new(),
            stores,
        }
    }

    /// Encode what the processor emitted into records for `out`.
    fn encode_typed(&mut self, out: &mut Vec<Output>) -> Result<(), JobError> {
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
        let (processor, typed) = (&mut self.processor, &mut self.typed);
        let result = with_namespace(&self.stores, state, |state| {
            processor.process(&mut Context::new(meta, state, typed), input)
        });
        self.binding.after(&self.processor);
        result?;
        self.encode_typed(out)
    }

    fn tick(
        &mut self,
        tick: Tick<'_>,
        meta: RecordMeta<'_>,
        state: &dyn StateReader,
        out: &mut Vec<Output>,
    ) -> Result<(), JobError> {
        self.typed.clear();
        let (processor, typed) = (&mut self.processor, &mut self.typed);
        with_namespace(&self.stores, state, |state| {
            processor.on_tick(&mut Context::new(meta, state, typed), tick);
        });
        self.binding.after(&self.processor);
        self.encode_typed(out)
    }

    fn resume(&mut self, resume: Resume<'_>, state: &dyn StateReader) {
        let processor = &mut self.processor;
        with_namespace(&self.stores, state, |state| {
            processor.on_resume(state, resume)
        });
    }

    fn flush(&mut self, changes: &mut dyn StateWriter) {
        if self.stores.is_identity() {
            self.processor.flush(changes);
        } else {
            self.processor.flush(&mut NamespacedWriter {
                ns: &self.stores,
                inner: changes,
            });
        }
    }

    fn reset(&mut self) {
        self.processor = self.binding.new_processor();
    }

    fn carries_documents(&self, source_topic: &str) -> bool {
        self.binding.carries_documents(source_topic)
    }
}

/// Build the job of a validated processor, with the types of its kind ([`kinds::dispatch`]).
///
/// # Errors
/// When the validator client of a risk processor cannot be built.
pub fn build(config: &ProcessorConfig, codec: Codec) -> anyhow::Result<Box<dyn Job>> {
    struct Build<'a> {
        config: &'a ProcessorConfig,
        codec: Codec,
    }
    impl kinds::KindVisitor for Build<'_> {
        type Output = anyhow::Result<Box<dyn Job>>;
        fn visit<K: kinds::KindTypes>(self) -> Self::Output {
            let ns = StoreNamespace::new(self.config.kind, &self.config.name);
            K::job(self.config, self.codec, ns)
        }
    }
    kinds::dispatch(config.kind, Build { config, codec })
}

/// Calls `f` with `state` as the processor sees it: its stores under `ns` (the reader itself when
/// the namespace maps every table to itself).
fn with_namespace<R>(
    ns: &StoreNamespace,
    state: &dyn StateReader,
    f: impl FnOnce(&dyn StateReader) -> R,
) -> R {
    if ns.is_identity() {
        f(state)
    } else {
        f(&NamespacedReader { ns, inner: state })
    }
}

/// A [`StateReader`] that finds a processor's stores under its [`StoreNamespace`].
struct NamespacedReader<'a> {
    ns: &'a StoreNamespace,
    inner: &'a dyn StateReader,
}

impl StateReader for NamespacedReader<'_> {
    fn get(&self, table: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.inner.get(&self.ns.map(table), key)
    }

    fn scan_prefix(&self, table: &str, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.inner.scan_prefix(&self.ns.map(table), prefix)
    }
}

/// A [`StateWriter`] that writes a processor's stores under its [`StoreNamespace`].
struct NamespacedWriter<'a> {
    ns: &'a StoreNamespace,
    inner: &'a mut dyn StateWriter,
}

impl StateWriter for NamespacedWriter<'_> {
    fn put(&mut self, table: &str, key: &[u8], value: &[u8]) {
        self.inner.put(&self.ns.map(table), key, value);
    }

    fn delete(&mut self, table: &str, key: &[u8]) {
        self.inner.delete(&self.ns.map(table), key);
    }
}

#[cfg(test)]
mod tests {
    use super::DuplicateCounter;
    use crate::metrics::DUPLICATES_SKIPPED;

    /// Two processors of one kind (two consolidations, say) count their duplicates in series of
    /// their own, named after each processor.
    #[test]
    fn duplicates_are_counted_per_processor_name() {
        let value = |name: &str| DUPLICATES_SKIPPED.with_label_values(&[name]).get();
        let (a, b) = ("dup-test-ledger-a", "dup-test-ledger-b");
        let first = DuplicateCounter::new(a);
        let second = DuplicateCounter::new(b);
        first.update(3);
        second.update(1);
        first.update(5);
        assert_eq!((value(a), value(b)), (5, 1));
    }
}
