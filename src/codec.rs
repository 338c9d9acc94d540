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

/// Environment variable: the bearer token fluxo sends to the schema registry (its writes need
/// one, see `fluxo_registry::WriteAccess`).
pub const REGISTRY_TOKEN_ENV: &str = "FLUXO_SCHEMA_REGISTRY_TOKEN";

/// The token `fluxo up` minted for its own embedded registry (its development secret is not in
/// the environment).
static PROCESS_REGISTRY_TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Make every registry client of this process send `token` (first call wins).
pub fn set_registry_token(token: String) {
    let _ = PROCESS_REGISTRY_TOKEN.set(token);
}

/// The bearer token for the registry: [`set_registry_token`], else [`REGISTRY_TOKEN_ENV`], else
/// one minted (valid one hour: writes only happen at startup) from `FLUXO_JWT_SECRET`, else none.
fn registry_token() -> Option<String> {
    if let Some(t) = PROCESS_REGISTRY_TOKEN.get() {
        return Some(t.clone());
    }
    if let Some(t) = std::env::var(REGISTRY_TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Some(t.trim().to_string());
    }
    match crate::api::Auth::from_env() {
        Ok(Some(auth)) => auth.dev_token(Duration::from_secs(3600)).ok(),
        _ => None,
    }
}

/// Registry settings for `url` with a request timeout, sending the registry token when there
/// is one (see [`registry_token`]).
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn registry_settings(url: &str) -> anyhow::Result<SrSettings> {
    registry_settings_with_token(url, registry_token())
}

/// [`registry_settings`] with an explicit bearer token.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn registry_settings_with_token(
    url: &str,
    token: Option<String>,
) -> anyhow::Result<SrSettings> {
    let mut builder = SrSettings::new_builder(url.trim_end_matches('/').to_string());
    builder.set_timeout(Duration::from_secs(10));
    if let Some(token) = token {
        builder.set_token_authorization(&token);
    }
    builder
        .build()
        .map_err(|e| anyhow::anyhow!("schema registry settings for {url}: {e}"))
}

/// Register `schema` under `subject` and return its id; when the registry refuses the write
/// (e.g. 401: this process has no registry token), look the schema up instead (a read, open to
/// all), so `fluxo produce` works against a registry where `fluxo up` registered it already.
///
/// # Errors
/// The registration error when the lookup does not find the schema either.
pub async fn register_or_lookup(
    sr: &SrSettings,
    url: &str,
    subject: &str,
    schema: SuppliedSchema,
) -> anyhow::Result<u32> {
    let json = schema.schema.clone();
    match post_schema(sr, subject.to_string(), schema).await {
        Ok(registered) => Ok(registered.id),
        Err(e) => {
            let lookup = reqwest::Client::new()
                .post(format!("{}/subjects/{subject}", url.trim_end_matches('/')))
                .header("content-type", "application/vnd.schemaregistry.v1+json")
                .json(&serde_json::json!({ "schema": json }))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if let Ok(resp) = lookup {
                if resp.status().is_success() {
                    if let Ok(body) = resp.json::<serde_json::Value>().await {
                        if let Some(id) = body["id"].as_u64().and_then(|i| u32::try_from(i).ok()) {
                            return Ok(id);
                        }
                    }
                }
            }
            Err(anyhow::anyhow!("registering {subject}: {e}"))
        }
    }
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
        let id = register_or_lookup(
            sr,
            &topology.schema_registry.url,
            &format!("{topic}-value"),
            supplied,
        )
        .await?;
        ids.insert(topic.clone(), id);
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
