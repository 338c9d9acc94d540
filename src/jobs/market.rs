//! Bindings of the market processors: `asset-prices` in, `price-alerts` or
//! `below-average-events` out, keyed by symbol.

use super::{Binding, JobError, Output, RawRecord};
use crate::codec::Codec;
use fluxo_processors::below_average::{self, BelowAverageProcessor};
use fluxo_processors::events::{AssetPrice, BelowAverageEvent, PriceAlert};
use fluxo_processors::price_change::{self, PriceChangeProcessor};

/// `price-change`.
pub struct PriceChangeBinding {
    /// Parameters.
    pub config: price_change::Config,
    /// The `price-alerts` topic.
    pub output: String,
}

impl Binding for PriceChangeBinding {
    type P = PriceChangeProcessor;

    fn new_processor(&self) -> Self::P {
        PriceChangeProcessor::new(self.config.clone())
    }

    fn decode(&mut self, codec: &mut Codec, rec: &RawRecord<'_>) -> Result<AssetPrice, JobError> {
        Ok(codec.decode(rec.payload)?)
    }

    fn encode(&self, codec: &Codec, alert: &PriceAlert) -> anyhow::Result<Output> {
        Ok(Output::new(
            &self.output,
            alert.symbol.as_bytes(),
            codec.encode(&self.output, alert)?,
        ))
    }
}

/// `below-average`.
pub struct BelowAverageBinding {
    /// Parameters.
    pub config: below_average::Config,
    /// The `below-average-events` topic.
    pub output: String,
}

impl Binding for BelowAverageBinding {
    type P = BelowAverageProcessor;

    fn new_processor(&self) -> Self::P {
        BelowAverageProcessor::new(self.config.clone())
    }

    fn decode(&mut self, codec: &mut Codec, rec: &RawRecord<'_>) -> Result<AssetPrice, JobError> {
        Ok(codec.decode(rec.payload)?)
    }

    fn encode(&self, codec: &Codec, event: &BelowAverageEvent) -> anyhow::Result<Output> {
        Ok(Output::new(
            &self.output,
            event.symbol.as_bytes(),
            codec.encode(&self.output, event)?,
        ))
    }
}
