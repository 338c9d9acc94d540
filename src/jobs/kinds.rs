//! The one place the runtime names each kind's types: [`dispatch`] selects, once per
//! [`Kind`], the processor type (and with it the output event), and hands it to code that is
//! generic over [`KindTypes`]: building the job ([`super::build`]), the `fluxo serve` view
//! replica ([`super::views`]) and the replay diff (`crate::replay::diff`).
//!
//! A new kind is one arm of [`dispatch`] and one `impl KindTypes` here; a processor with one
//! input event and one output event runs with the generic [`EventBinding`] and needs no
//! binding of its own.

use super::{Binding, Job, JobError, Output, RawRecord, TypedJob};
use crate::avro::typed::AvroEvent;
use crate::catalog::{Kind, Params, StoreNamespace};
use crate::codec::Codec;
use crate::config::ProcessorConfig;
use fluxo_processors::below_average::BelowAverageProcessor;
use fluxo_processors::consolidation::ConsolidationProcessor;
use fluxo_processors::events::{BelowAverageEvent, DailyBalance, PriceAlert, RiskDecision};
use fluxo_processors::price_change::PriceChangeProcessor;
use fluxo_processors::risk::RiskProcessor;
use fluxo_processors::views::OutputEvent;
use fluxo_processors::Processor;

/// The typed side of a processor kind, implemented by its processor type.
pub trait KindTypes {
    /// The output event: a typed Avro event, a view row, and an [`OutputEvent`] (its Kafka key
    /// and its identity in a replay diff).
    type Out: OutputEvent + AvroEvent + Send + 'static;

    /// The job of `config` (a processor of this kind), its state kept under `ns`.
    ///
    /// # Errors
    /// When the job cannot be built (e.g. an HTTP client of the risk validator).
    fn job(
        config: &ProcessorConfig,
        codec: Codec,
        ns: StoreNamespace,
    ) -> anyhow::Result<Box<dyn Job>>;
}

/// Code generic over a kind's types, run by [`dispatch`] with the types of one kind.
pub trait KindVisitor {
    /// What the code returns.
    type Output;

    /// Run with the types of kind `K`.
    fn visit<K: KindTypes>(self) -> Self::Output;
}

/// Run `visitor` with the types of `kind`. The only `match` over [`Kind`] that names types:
/// the compiler points here when a kind is added.
pub fn dispatch<V: KindVisitor>(kind: Kind, visitor: V) -> V::Output {
    match kind {
        Kind::PriceChange => visitor.visit::<PriceChangeProcessor>(),
        Kind::BelowAverage => visitor.visit::<BelowAverageProcessor>(),
        Kind::RiskScoring => visitor.visit::<RiskProcessor>(),
        Kind::DailyConsolidation => visitor.visit::<ConsolidationProcessor>(),
    }
}

/// Parameters that do not belong to the kind being built (a bug: [`Params::parse`] types them
/// by the processor's kind).
fn mismatched(config: &ProcessorConfig) -> anyhow::Error {
    anyhow::anyhow!(
        "processor {}: its parameters are not those of a {} processor",
        config.name,
        config.kind
    )
}

impl KindTypes for PriceChangeProcessor {
    type Out = PriceAlert;

    fn job(
        config: &ProcessorConfig,
        codec: Codec,
        ns: StoreNamespace,
    ) -> anyhow::Result<Box<dyn Job>> {
        let Params::PriceChange(c) = &config.params else {
            return Err(mismatched(config));
        };
        Ok(EventBinding::job(config, c.clone(), Self::new, codec, ns))
    }
}

impl KindTypes for BelowAverageProcessor {
    type Out = BelowAverageEvent;

    fn job(
        config: &ProcessorConfig,
        codec: Codec,
        ns: StoreNamespace,
    ) -> anyhow::Result<Box<dyn Job>> {
        let Params::BelowAverage(c) = &config.params else {
            return Err(mismatched(config));
        };
        Ok(EventBinding::job(config, c.clone(), Self::new, codec, ns))
    }
}

impl KindTypes for RiskProcessor {
    type Out = RiskDecision;

    fn job(
        config: &ProcessorConfig,
        codec: Codec,
        ns: StoreNamespace,
    ) -> anyhow::Result<Box<dyn Job>> {
        let Params::RiskScoring(c) = &config.params else {
            return Err(mismatched(config));
        };
        let binding = super::risk::RiskBinding::new(
            (**c).clone(),
            config.inputs[0].clone(),
            config.outputs[0].clone(),
            crate::privacy::pseudonymizer(),
            super::DuplicateCounter::new(&config.name),
        )?;
        Ok(Box::new(TypedJob::new(binding, codec, ns)))
    }
}

impl KindTypes for ConsolidationProcessor {
    type Out = DailyBalance;

    fn job(
        config: &ProcessorConfig,
        codec: Codec,
        ns: StoreNamespace,
    ) -> anyhow::Result<Box<dyn Job>> {
        let Params::DailyConsolidation(c) = &config.params else {
            return Err(mismatched(config));
        };
        let binding = super::ledger::ConsolidationBinding {
            config: c.clone(),
            output: config.outputs[0].clone(),
            duplicates: super::DuplicateCounter::new(&config.name),
        };
        Ok(Box::new(TypedJob::new(binding, codec, ns)))
    }
}

/// The binding of a processor with one input event and one output event: decode the input
/// with its schema, encode each output to the processor's output topic under its
/// [`OutputEvent::output_key`].
pub struct EventBinding<P, C> {
    config: C,
    new: fn(C) -> P,
    output: String,
}

impl<P, C> EventBinding<P, C>
where
    P: Processor + Send + 'static,
    P::Input: AvroEvent,
    P::Output: OutputEvent + AvroEvent + Send,
    C: Clone + Send + 'static,
{
    /// The job of `config`'s processor, built by `new` from its parameters `params`.
    pub fn job(
        config: &ProcessorConfig,
        params: C,
        new: fn(C) -> P,
        codec: Codec,
        ns: StoreNamespace,
    ) -> Box<dyn Job> {
        let binding = Self {
            config: params,
            new,
            output: config.outputs[0].clone(),
        };
        Box::new(TypedJob::new(binding, codec, ns))
    }
}

impl<P, C> Binding for EventBinding<P, C>
where
    P: Processor + Send + 'static,
    P::Input: AvroEvent,
    P::Output: OutputEvent + AvroEvent,
    C: Clone + Send + 'static,
{
    type P = P;

    fn new_processor(&self) -> P {
        (self.new)(self.config.clone())
    }

    fn decode(&mut self, codec: &mut Codec, rec: &RawRecord<'_>) -> Result<P::Input, JobError> {
        Ok(codec.decode(rec.payload)?)
    }

    fn encode(&self, codec: &Codec, output: &P::Output) -> anyhow::Result<Output> {
        Ok(Output::new(
            &self.output,
            output.output_key(),
            codec.encode(&self.output, output)?,
        ))
    }
}
