//! # fluxo-registry
//!
//! An embedded, Confluent-compatible Avro schema registry for fluxo's dev and tests. Producers
//! and consumers talk to it exactly as to Confluent Schema Registry (through
//! `schema_registry_converter`), so pointing the registry URL at a real Confluent, Karapace or
//! Redpanda registry needs no code change.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let registry = Arc::new(fluxo_registry::Registry::open(std::path::Path::new("registry.redb"))?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! fluxo_registry::serve(listener, registry, fluxo_registry::WriteAccess::Open, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! ## Endpoints
//!
//! | Method | Path | Response |
//! |---|---|---|
//! | POST | `/subjects/{s}/versions` | `{"id": N}`; body `{"schema", "schemaType"?, "references"?}` |
//! | POST | `/subjects/{s}` | `{subject, id, version, schema}` of that schema under `s` |
//! | GET | `/schemas/ids/{id}` | `{"schema"}` (`schemaType` omitted for AVRO; `references` if any) |
//! | GET | `/schemas/ids/{id}/schema`, `/versions`, `/subjects` | raw schema; `[{subject, version}]`; `[subject]` |
//! | GET | `/schemas/types` | `["AVRO"]` |
//! | GET | `/subjects` | subject names (`?deleted=true`, `?subjectPrefix=`) |
//! | GET | `/subjects/{s}/versions` | `[1, 2, ...]` |
//! | GET | `/subjects/{s}/versions/{n\|latest\|-1}` | `{subject, version, id, schema}` |
//! | GET | `/subjects/{s}/versions/{v}/schema`, `/referencedby` | raw schema; referencing ids |
//! | DELETE | `/subjects/{s}`, `/subjects/{s}/versions/{v}` | soft delete; `?permanent=true` after it |
//! | POST | `/compatibility/subjects/{s}/versions[/{v}]` | `{"is_compatible"}` (+`messages` if `?verbose=true`) |
//! | GET, PUT, DELETE | `/config`, `/config/{s}` | GET/DELETE `{"compatibilityLevel"}`, PUT `{"compatibility"}` |
//! | GET | `/`, `/mode` | `{}`, `{"mode": "READWRITE"}` |
//! | GET | `/openapi.json` | the OpenAPI 3.0 document of these routes ([`openapi`]) |
//!
//! Query parameters Confluent clients send (`deleted`, `verbose`, `defaultToGlobal`, `permanent`,
//! others ignored) are accepted. Responses are `application/vnd.schemaregistry.v1+json`; request
//! bodies are read as JSON whatever their content type. Only `AVRO` schemas are supported.
//!
//! Registering a schema already live under the subject (same JSON up to whitespace and key
//! order) returns its id without a new version; the same schema under another subject reuses
//! the global id. Compatibility (default `BACKWARD`; `NONE`, `BACKWARD[_TRANSITIVE]`,
//! `FORWARD[_TRANSITIVE]`, `FULL[_TRANSITIVE]`) follows Avro schema resolution, see [`compat`].
//!
//! ## Errors
//!
//! Bodies are `{"error_code": N, "message": "..."}` with HTTP status = the first three digits:
//! 40401 subject not found, 40402 version not found, 40403 schema not found, 40404/40405 subject
//! (not) soft-deleted, 40406/40407 version (not) soft-deleted, 40408 no subject-level
//! compatibility, 409 incompatible schema (message lists the Confluent-style differences),
//! 42201 invalid schema, 42202 invalid version, 42203 invalid compatibility level, 42206
//! referenced version, 422 malformed JSON body, 404 unknown route, 405 wrong method, 50001 store
//! error.
//!
//! ## Storage
//!
//! One redb file (see [`store`]): schemas by global id, `(subject, version)` entries with a
//! soft-delete flag, and compatibility configs. Ids are global, start at 1, increase
//! monotonically, are never reused and survive restarts; a schema stays fetchable by id after
//! its subject is deleted. Each mutation is committed (fsync) before it is answered.

#![warn(missing_docs)]

pub mod api;
#[doc(hidden)]
pub mod canonical;
pub mod compat;
pub mod error;
pub mod openapi;
pub mod server;
mod state;
pub mod store;
pub mod types;

pub use api::{router, WriteAccess};
pub use compat::CompatibilityLevel;
pub use error::RegistryError;
pub use server::Limits;
pub use store::Registry;
pub use types::{
    CompatibilityReport, SchemaInfo, SchemaReference, SchemaRequest, SubjectVersion, VersionSpec,
};

use std::future::Future;
use std::sync::Arc;

/// Serves the registry's REST API on `listener` with the default [`Limits`] and writes allowed
/// as `access` says, until `shutdown` completes, then waits for in-flight requests to finish.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    access: WriteAccess,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(
        listener,
        router(registry, access),
        Limits::default(),
        shutdown,
    )
    .await
}
