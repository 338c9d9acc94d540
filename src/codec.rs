//! Confluent-framed Avro on the wire, with schemas from a Confluent-compatible registry.
//!
//! Schemas are registered under `<topic>-value` through `schema_registry_converter` at start
//! ([`register_topic_schemas`]); decoding resolves the writer schema of each record's id through
//! the converter's [`AvroDecoder`] (cached after the first lookup). Any Confluent, Karapace or
//! Redpanda registry works: only its REST API is used.

use crate::avro::framing::unframe;
use crate::avro::typed::{decode_datum, encode_framed, AvroEvent};
use crate::config::Topology;
use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::{post_schema, SrSettings};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why a record could not be decoded; becomes the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeFailure {
    /// The record has no value.
    #[error("null_value: the record has no value")]
    NullValue,
    /// Not Confluent framing (wrong magic byte, too short).
    #[error("bad_framing: {0}")]
    BadFraming(String),
    /// The registry does not know the schema id.
    #[error("unknown_schema_id: {0}")]
    UnknownSchemaId(String),
    /// The bytes do not decode with the writer schema, or do not fit the event type.
    #[error("undecodable: {0}")]
    Undecodable(String),
    /// The registry could not be reached; retry later, do not dead-letter.
    #[error("registry_unavailable: {0}")]
    RegistryUnavailable(String),
}

impl DecodeFailure {
    /// The short reason code used in dead-letter headers and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NullValue => "null_value",
            Self::BadFraming(_) => "bad_framing",
            Self::UnknownSchemaId(_) => "unknown_schema_id",
            Self::Undecodable(_) => "undecodable",
            Self::RegistryUnavailable(_) => "registry_unavailable",
        }
    }
}

/// Registry settings for `url` with a request timeout.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn registry_settings(url: &str) -> anyhow::Result<SrSettings> {
    SrSettings::new_builder(url.trim_end_matches('/').to_string())
        .set_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| anyhow::anyhow!("schema registry settings for {url}: {e}"))
}

/// Register the value schema of every declared topic under `<topic>-value`; returns the schema
/// id per topic.
///
/// # Errors
/// When the registry refuses a schema (e.g. incompatible with the latest version) or cannot be
/// reached.
pub async fn register_topic_schemas(
    topology: &Topology,
    sr: &SrSettings,
) -> anyhow::Result<HashMap<String, u32>> {
    let mut ids = HashMap::new();
    for (topic, cfg) in &topology.topics {
        let schema = crate::avro::schemas::all()
            .iter()
            .find(|s| s.name == cfg.schema)
            .ok_or_else(|| anyhow::anyhow!("topic {topic}: unknown schema {}", cfg.schema))?;
        let supplied = SuppliedSchema::new(
            Some(format!("br.com.fluxo.{}", schema.name)),
            SchemaType::Avro,
            schema.json.to_string(),
        );
        let registered = post_schema(sr, format!("{topic}-value"), supplied)
            .await
            .map_err(|e| anyhow::anyhow!("registering {topic}-value: {e}"))?;
        ids.insert(topic.clone(), registered.id);
    }
    Ok(ids)
}

/// Encodes typed events and decodes framed records for one engine thread.
pub struct Codec {
    handle: tokio::runtime::Handle,
    decoder: Arc<AvroDecoder>,
    writer_schemas: HashMap<u32, Arc<Schema>>,
    output_ids: HashMap<String, u32>,
}

impl Codec {
    /// A codec resolving schemas through `sr`, encoding outputs with the registered
    /// `output_ids`; async lookups run on `handle`.
    pub fn new(
        handle: tokio::runtime::Handle,
        sr: SrSettings,
        output_ids: HashMap<String, u32>,
    ) -> Self {
        Self {
            handle,
            decoder: Arc::new(AvroDecoder::new(sr)),
            writer_schemas: HashMap::new(),
            output_ids,
        }
    }

    /// The runtime async work (registry lookups, external calls) runs on.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// The writer schema of `id`, from the local cache or the registry.
    ///
    /// # Errors
    /// [`DecodeFailure::UnknownSchemaId`] when the registry does not know it,
    /// [`DecodeFailure::RegistryUnavailable`] when it cannot be asked.
    pub fn writer_schema(&mut self, id: u32) -> Result<Arc<Schema>, DecodeFailure> {
        if let Some(s) = self.writer_schemas.get(&id) {
            return Ok(s.clone());
        }
        let decoder = self.decoder.clone();
        let result = self
            .handle
            .block_on(async move { decoder.get_schema(id).await });
        match result {
            Ok(s) => {
                let schema = Arc::new(s.parsed.clone());
                self.writer_schemas.insert(id, schema.clone());
                Ok(schema)
            }
            Err(e) if e.retriable => Err(DecodeFailure::RegistryUnavailable(e.to_string())),
            Err(e) => Err(DecodeFailure::UnknownSchemaId(format!(
                "schema id {id}: {e}"
            ))),
        }
    }

    /// Decode a framed record into `T`.
    ///
    /// # Errors
    /// A [`DecodeFailure`] saying why; only `RegistryUnavailable` is worth a retry.
    pub fn decode<T: AvroEvent>(&mut self, payload: Option<&[u8]>) -> Result<T, DecodeFailure> {
        let bytes = payload.ok_or(DecodeFailure::NullValue)?;
        let (id, datum) = unframe(bytes).map_err(|e| DecodeFailure::BadFraming(e.to_string()))?;
        let schema = self.writer_schema(id)?;
        decode_datum::<T>(&schema, datum).map_err(|e| DecodeFailure::Undecodable(e.to_string()))
    }

    /// Encode `event` for `topic` with the schema id registered for it.
    ///
    /// # Errors
    /// When `topic` has no registered schema or the event does not fit it (e.g. a decimal with
    /// more places than the schema's scale).
    pub fn encode<T: AvroEvent>(&self, topic: &str, event: &T) -> anyhow::Result<Vec<u8>> {
        let id = self
            .output_ids
            .get(topic)
            .ok_or_else(|| anyhow::anyhow!("no schema registered for topic {topic}"))?;
        let mut out = Vec::with_capacity(128);
        encode_framed(*id, event, &mut out).map_err(|e| anyhow::anyhow!("{topic}: {e}"))?;
        Ok(out)
    }
}
