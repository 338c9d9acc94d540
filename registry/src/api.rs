//! The Confluent REST API over a [`Registry`], as an axum router.
//!
//! Handlers run the (synchronous, fsyncing) registry calls on tokio's blocking pool. Every
//! response is `application/vnd.schemaregistry.v1+json`; request bodies are read as JSON
//! whatever their content type. Errors are Confluent bodies `{"error_code", "message"}`.

use crate::error::RegistryError;
use crate::store::Registry;
use crate::types::{SchemaInfo, SchemaRequest, SubjectVersion, VersionSpec};
use crate::CompatibilityLevel;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The content type of every response.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

type Reg = State<Arc<Registry>>;

/// Who may change the registry (register, delete, config); reads are always open, as
/// Confluent's are.
#[derive(Clone)]
pub enum WriteAccess {
    /// Anyone may write: tests, and `fluxo up` with `FLUXO_REGISTRY_OPEN_WRITES=1`.
    Open,
    /// Writes need `Authorization: Bearer <token>` accepted by this check (fluxo passes its
    /// query API's JWT verification); anything else is 401.
    Bearer(Arc<dyn Fn(&str) -> bool + Send + Sync>),
    /// Nobody may write.
    ReadOnly,
}

impl std::fmt::Debug for WriteAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Open => "Open",
            Self::Bearer(_) => "Bearer",
            Self::ReadOnly => "ReadOnly",
        })
    }
}

impl WriteAccess {
    fn allows(&self, headers: &axum::http::HeaderMap) -> bool {
        match self {
            Self::Open => true,
            Self::ReadOnly => false,
            Self::Bearer(verify) => headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .is_some_and(|(_, token)| !token.trim().is_empty() && verify(token.trim())),
        }
    }
}

/// Is the request a write? Every POST, PUT and DELETE except the two read-only POSTs (a
/// lookup of a schema under a subject, and a compatibility test), which change nothing.
fn is_write(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    if *method == Method::PUT || *method == Method::DELETE {
        return true;
    }
    if *method != Method::POST {
        return false;
    }
    // POST /subjects/{s}/versions registers; POST /subjects/{s} only looks up;
    // POST /compatibility/... only tests.
    path.starts_with("/subjects/") && path.trim_end_matches('/').ends_with("/versions")
}

async fn write_guard(
    State(access): State<Arc<WriteAccess>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if is_write(request.method(), request.uri().path()) && !access.allows(request.headers()) {
        let mut response = RegistryError::Unauthorized.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    next.run(request).await
}
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;
type ApiResult = Result<Response, RegistryError>;

/// The Confluent-compatible router over `registry`, writes allowed as `access` says.
pub fn router(registry: Arc<Registry>, access: WriteAccess) -> Router {
    let access = Arc::new(access);
    Router::new()
        .route("/", get(|| async { reply(json!({})) }))
        .route(
            crate::openapi::ROUTE,
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    crate::openapi::document_text(),
                )
            }),
        )
        .route("/schemas/types", get(|| async { reply(json!(["AVRO"])) }))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route("/schemas/ids/{id}/subjects", get(id_subjects))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility_version),
        )
        .route(
            "/config",
            get(global_config)
                .put(put_global_config)
                .delete(delete_global_config),
        )
        .route(
            "/config/{subject}",
            get(subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route(
            "/mode",
            get(|| async { reply(json!({"mode": "READWRITE"})) }),
        )
        .fallback(|| async { RegistryError::NotFound })
        .method_not_allowed_fallback(|| async { RegistryError::MethodNotAllowed })
        .with_state(registry)
        .layer(axum::middleware::from_fn_with_state(access, write_guard))
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self, "schema registry error");
        }
        let body = json!({"error_code": self.error_code(), "message": self.to_string()});
        (
            status,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            body.to_string(),
        )
            .into_response()
    }
}

fn reply(value: Value) -> Response {
    raw(value.to_string())
}

fn raw(body: String) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// Runs a registry call on the blocking pool (redb commits fsync).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Store(format!("registry task failed: {e}")))?
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, RegistryError> {
    p.map(|Path(t)| t).map_err(|_| RegistryError::NotFound)
}

fn flag(params: &Params, name: &str) -> bool {
    params
        .as_ref()
        .ok()
        .and_then(|Query(q)| q.get(name))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .as_ref()
        .ok()
        .and_then(|Query(q)| q.get(name))
        .map(String::as_str)
}

fn parse_id(text: &str) -> Result<u32, RegistryError> {
    text.parse().map_err(|_| RegistryError::NotFound)
}

/// Parses a JSON body: 422 if it is not JSON or not the expected shape.
fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, RegistryError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            RegistryError::PayloadTooLarge
        } else {
            RegistryError::UnprocessableEntity(e.body_text())
        }
    })?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| RegistryError::UnprocessableEntity(format!("Unrecognized JSON: {e}")))?;
    serde_json::from_value(value)
        .map_err(|e| RegistryError::UnprocessableEntity(format!("Unexpected JSON: {e}")))
}

fn schema_json(info: &SchemaInfo, mut fields: serde_json::Map<String, Value>) -> Value {
    if info.schema_type != "AVRO" {
        fields.insert("schemaType".into(), json!(info.schema_type));
    }
    fields.insert("schema".into(), json!(info.schema));
    if !info.references.is_empty() {
        fields.insert("references".into(), json!(info.references));
    }
    Value::Object(fields)
}

fn version_json(v: &SubjectVersion) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert("subject".into(), json!(v.subject));
    fields.insert("version".into(), json!(v.version));
    fields.insert("id".into(), json!(v.id));
    schema_json(&v.info, fields)
}

async fn schema_by_id(State(r): Reg, id: Result<Path<String>, PathRejection>) -> ApiResult {
    let id = parse_id(&path(id)?)?;
    let info = blocking(move || r.schema_by_id(id)).await?;
    Ok(reply(schema_json(&info, serde_json::Map::new())))
}

async fn raw_schema_by_id(State(r): Reg, id: Result<Path<String>, PathRejection>) -> ApiResult {
    let id = parse_id(&path(id)?)?;
    Ok(raw(blocking(move || r.schema_by_id(id)).await?.schema))
}

async fn id_versions(
    State(r): Reg,
    id: Result<Path<String>, PathRejection>,
    q: Params,
) -> ApiResult {
    let id = parse_id(&path(id)?)?;
    let deleted = flag(&q, "deleted");
    let pairs = blocking(move || r.versions_of_id(id, deleted)).await?;
    let list: Vec<Value> = pairs
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(reply(json!(list)))
}

async fn id_subjects(
    State(r): Reg,
    id: Result<Path<String>, PathRejection>,
    q: Params,
) -> ApiResult {
    let id = parse_id(&path(id)?)?;
    let deleted = flag(&q, "deleted");
    let mut subjects: Vec<String> = blocking(move || r.versions_of_id(id, deleted))
        .await?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    subjects.dedup();
    Ok(reply(json!(subjects)))
}

async fn subjects(State(r): Reg, q: Params) -> ApiResult {
    let deleted = flag(&q, "deleted");
    let prefix = param(&q, "subjectPrefix").unwrap_or("").to_string();
    let list = blocking(move || Ok(r.subjects(deleted, &prefix))).await?;
    Ok(reply(json!(list)))
}

async fn lookup(
    State(r): Reg,
    subject: Result<Path<String>, PathRejection>,
    q: Params,
    body: Body,
) -> ApiResult {
    let subject = path(subject)?;
    let request: SchemaRequest = json_body(body)?;
    let deleted = flag(&q, "deleted");
    let found = blocking(move || r.lookup(&subject, &request, deleted)).await?;
    Ok(reply(version_json(&found)))
}

async fn delete_subject(
    State(r): Reg,
    subject: Result<Path<String>, PathRejection>,
    q: Params,
) -> ApiResult {
    let subject = path(subject)?;
    let permanent = flag(&q, "permanent");
    let versions = blocking(move || r.delete_subject(&subject, permanent)).await?;
    Ok(reply(json!(versions)))
}

async fn versions(
    State(r): Reg,
    subject: Result<Path<String>, PathRejection>,
    q: Params,
) -> ApiResult {
    let subject = path(subject)?;
    let deleted = flag(&q, "deleted");
    let list = blocking(move || r.versions(&subject, deleted)).await?;
    Ok(reply(json!(list)))
}

async fn register(
    State(r): Reg,
    subject: Result<Path<String>, PathRejection>,
    body: Body,
) -> ApiResult {
    let subject = path(subject)?;
    let request: SchemaRequest = json_body(body)?;
    let id = blocking(move || r.register(&subject, &request)).await?;
    Ok(reply(json!({"id": id})))
}

async fn version(
    State(r): Reg,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let (subject, version) = path(p)?;
    let spec = VersionSpec::parse(&version)?;
    let deleted = flag(&q, "deleted");
    let found = blocking(move || r.version(&subject, spec, deleted)).await?;
    Ok(reply(version_json(&found)))
}

async fn version_schema(
    State(r): Reg,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let (subject, version) = path(p)?;
    let spec = VersionSpec::parse(&version)?;
    let deleted = flag(&q, "deleted");
    let found = blocking(move || r.version(&subject, spec, deleted)).await?;
    Ok(raw(found.info.schema))
}

async fn referenced_by(
    State(r): Reg,
    p: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult {
    let (subject, version) = path(p)?;
    let spec = VersionSpec::parse(&version)?;
    let ids = blocking(move || r.referenced_by(&subject, spec)).await?;
    Ok(reply(json!(ids)))
}

async fn delete_version(
    State(r): Reg,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let (subject, version) = path(p)?;
    let spec = VersionSpec::parse(&version)?;
    let permanent = flag(&q, "permanent");
    let deleted = blocking(move || r.delete_version(&subject, spec, permanent)).await?;
    Ok(reply(json!(deleted)))
}

async fn compatibility(
    r: Arc<Registry>,
    subject: String,
    spec: Option<VersionSpec>,
    q: Params,
    body: Body,
) -> ApiResult {
    let request: SchemaRequest = json_body(body)?;
    let report = blocking(move || r.check_compatibility(&subject, spec, &request)).await?;
    let mut out = json!({"is_compatible": report.is_compatible});
    if flag(&q, "verbose") {
        out["messages"] = json!(report.messages);
    }
    Ok(reply(out))
}

async fn compatibility_all(
    State(r): Reg,
    subject: Result<Path<String>, PathRejection>,
    q: Params,
    body: Body,
) -> ApiResult {
    compatibility(r, path(subject)?, None, q, body).await
}

async fn compatibility_version(
    State(r): Reg,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Params,
    body: Body,
) -> ApiResult {
    let (subject, version) = path(p)?;
    let spec = VersionSpec::parse(&version)?;
    compatibility(r, subject, Some(spec), q, body).await
}

fn level_json(level: CompatibilityLevel) -> Response {
    reply(json!({"compatibilityLevel": level.as_str()}))
}

/// Reads `{"compatibility": "..."}`: 422 if not JSON, 42203 if not a level.
fn level_body(body: Body) -> Result<CompatibilityLevel, RegistryError> {
    let value: Value = json_body(body)?;
    value
        .get("compatibility")
        .and_then(Value::as_str)
        .and_then(CompatibilityLevel::parse)
        .ok_or(RegistryError::InvalidCompatibilityLevel)
}

async fn global_config(State(r): Reg) -> ApiResult {
    Ok(level_json(
        blocking(move || Ok(r.global_compatibility())).await?,
    ))
}

async fn put_global_config(State(r): Reg, body: Body) -> ApiResult {
    let level = level_body(body)?;
    blocking(move || r.set_compatibility(None, level)).await?;
    Ok(reply(json!({"compatibility": level.as_str()})))
}

async fn delete_global_config(State(r): Reg) -> ApiResult {
    Ok(level_json(
        blocking(move || r.delete_compatibility(None)).await?,
    ))
}

async fn subject_config(
    State(r): Reg,
    subject: Result<Path<String>, PathRejection>,
    q: Params,
) -> ApiResult {
    let subject = path(subject)?;
    let default_to_global = flag(&q, "defaultToGlobal");
    let level = blocking(move || match r.subject_compatibility(&subject) {
        Some(level) => Ok(level),
        None if default_to_global => Ok(r.global_compatibility()),
        None => Err(RegistryError::SubjectCompatibilityNotConfigured(subject)),
    })
    .await?;
    Ok(level_json(level))
}

async fn put_subject_config(
    State(r): Reg,
    subject: Result<Path<String>, PathRejection>,
    body: Body,
) -> ApiResult {
    let subject = path(subject)?;
    let level = level_body(body)?;
    blocking(move || r.set_compatibility(Some(&subject), level)).await?;
    Ok(reply(json!({"compatibility": level.as_str()})))
}

async fn delete_subject_config(
    State(r): Reg,
    subject: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let subject = path(subject)?;
    Ok(level_json(
        blocking(move || r.delete_compatibility(Some(&subject))).await?,
    ))
}
