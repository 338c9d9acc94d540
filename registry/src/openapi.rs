//! The OpenAPI 3.0 document of the registry's REST API ([`crate::router`]), written by hand with
//! `serde_json::json!` and served at `GET /openapi.json`. It describes what this registry
//! answers (a subset of Confluent's API: Avro only, no contexts, no modes but `READWRITE`), so
//! that clients and API testers (schemathesis) can check it.

use serde_json::{json, Value};
use std::sync::LazyLock;

/// The route of the document.
pub const ROUTE: &str = "/openapi.json";

static DOCUMENT: LazyLock<String> =
    // Serializing a `Value` cannot fail.
    LazyLock::new(|| serde_json::to_string_pretty(&document()).unwrap_or_default());

/// The document, rendered once.
pub fn document_text() -> &'static str {
    DOCUMENT.as_str()
}

/// The media type of every answer but this document.
const MEDIA: &str = crate::api::CONTENT_TYPE;

fn body(description: &str, schema: &Value) -> Value {
    json!({"description": description, "content": {MEDIA: {"schema": schema}}})
}

fn error(description: &str) -> Value {
    body(description, &json!({"$ref": "#/components/schemas/Error"}))
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn request_body(schema: &str) -> Value {
    json!({"required": true, "content": {
        "application/json": {"schema": schema_ref(schema)},
        MEDIA: {"schema": schema_ref(schema)}
    }})
}

fn subject() -> Value {
    json!({"name": "subject", "in": "path", "required": true,
           "schema": {"type": "string", "minLength": 1}, "example": "asset-prices-value"})
}

fn version() -> Value {
    json!({"name": "version", "in": "path", "required": true,
           "description": "A version number (1 to 999999999 here), or `latest` / `-1` for the newest.",
           "schema": {"type": "string", "pattern": "^(latest|-1|[1-9][0-9]{0,8})$"},
           "example": "latest"})
}

fn id() -> Value {
    json!({"name": "id", "in": "path", "required": true,
           "schema": {"type": "integer", "minimum": 0, "maximum": 2_147_483_647},
           "example": 1})
}

/// A query flag: `true` (any case) turns it on, any other value or none leaves it off.
fn flag(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description":
           format!("{description} `true` (any case) turns it on; any other value, or none, leaves it off."),
           "schema": {"type": "string"}, "example": "true"})
}

fn unauthorized() -> Value {
    error("A write without an accepted `Authorization: Bearer` token (unless the registry was started with writes open), or on a read-only registry.")
}

/// The OpenAPI 3.0 document.
pub fn document() -> Value {
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "fluxo embedded schema registry",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A Confluent-compatible schema registry (Avro). Reads are open; writes (register, delete, config) need the bearer token of fluxo's API unless the registry runs with writes open. Every answer but this document is application/vnd.schemaregistry.v1+json; errors are {\"error_code\", \"message\"}, the HTTP status being the first three digits of error_code. Unknown routes answer 404, a known route with another method 405. Request bodies are read as JSON whatever their content type."
        },
        "paths": {},
        "components": {"schemas": schemas()}
    });
    if let (Some(paths), Value::Object(a), Value::Object(b)) = (
        doc.pointer_mut("/paths").and_then(Value::as_object_mut),
        schema_paths(),
        config_paths(),
    ) {
        paths.extend(a);
        paths.extend(b);
    }
    doc
}

fn schemas() -> Value {
    json!({
        "Error": {"type": "object", "required": ["error_code", "message"], "properties": {
            "error_code": {"type": "integer"}, "message": {"type": "string"}
        }},
        "Reference": {"type": "object", "required": ["name", "subject", "version"], "properties": {
            "name": {"type": "string"}, "subject": {"type": "string"},
            "version": {"type": "integer", "format": "int32"}
        }},
        "SchemaRequest": {"type": "object", "properties": {
            "schema": {"type": "string", "description": "The Avro schema as JSON text."},
            "schemaType": {"type": "string", "description": "AVRO (the default) is the only type this registry accepts."},
            "references": {"type": "array", "items": schema_ref("Reference")}
        }},
        "Schema": {"type": "object", "required": ["schema"], "properties": {
            "schema": {"type": "string"},
            "schemaType": {"type": "string", "description": "Absent for AVRO."},
            "references": {"type": "array", "items": schema_ref("Reference")}
        }},
        "SubjectVersion": {"type": "object", "required": ["subject", "version", "id", "schema"], "properties": {
            "subject": {"type": "string"},
            "version": {"type": "integer"},
            "id": {"type": "integer"},
            "schema": {"type": "string"},
            "schemaType": {"type": "string"},
            "references": {"type": "array", "items": schema_ref("Reference")}
        }},
        "Level": {"type": "string", "enum": [
            "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
            "FULL_TRANSITIVE"
        ]},
        "Config": {"type": "object", "required": ["compatibilityLevel"], "properties": {
            "compatibilityLevel": schema_ref("Level")
        }},
        "ConfigUpdate": {"type": "object", "required": ["compatibility"], "properties": {
            "compatibility": {"type": "string", "description": "A level (read in any case).", "enum": [
                "NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
                "FULL_TRANSITIVE", "none", "backward", "backward_transitive", "forward",
                "forward_transitive", "full", "full_transitive"
            ]}
        }},
        "ConfigSet": {"type": "object", "required": ["compatibility"], "properties": {
            "compatibility": schema_ref("Level")
        }}
    })
}

fn schema_paths() -> Value {
    let ints = json!({"type": "array", "items": {"type": "integer"}});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let compatibility = json!({"type": "object", "required": ["is_compatible"], "properties": {
        "is_compatible": {"type": "boolean"},
        "messages": {"type": "array", "items": {"type": "string"}}
    }});
    json!({
        "/": {"get": {"summary": "Root (an empty object)", "responses": {
            "200": body("{}", &json!({"type": "object"}))}}},
        (ROUTE): {"get": {"summary": "This document", "responses": {
            "200": {"description": "The OpenAPI document.",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/schemas/types": {"get": {"summary": "Schema types", "responses": {
            "200": body("[\"AVRO\"]", &strings)}}},
        "/schemas/ids/{id}": {"get": {"summary": "A schema by id", "parameters": [id()], "responses": {
            "200": body("The schema.", &schema_ref("Schema")),
            "404": error("No schema with this id (40403).")}}},
        "/schemas/ids/{id}/schema": {"get": {"summary": "A schema by id, the schema text alone", "parameters": [id()], "responses": {
            "200": body("The schema itself (JSON).", &json!({})),
            "404": error("No schema with this id (40403).")}}},
        "/schemas/ids/{id}/versions": {"get": {"summary": "Subject versions using a schema", "parameters": [id(), flag("deleted", "Include soft-deleted versions.")], "responses": {
            "200": body("Subject and version pairs.", &json!({"type": "array", "items": {"type": "object", "required": ["subject", "version"], "properties": {
                "subject": {"type": "string"}, "version": {"type": "integer"}}}})),
            "404": error("No schema with this id (40403).")}}},
        "/schemas/ids/{id}/subjects": {"get": {"summary": "Subjects using a schema", "parameters": [id(), flag("deleted", "Include soft-deleted versions.")], "responses": {
            "200": body("Subjects.", &strings),
            "404": error("No schema with this id (40403).")}}},
        "/subjects": {"get": {"summary": "Subjects", "parameters": [
                flag("deleted", "Include soft-deleted subjects."),
                {"name": "subjectPrefix", "in": "query", "required": false, "schema": {"type": "string"}}
            ], "responses": {"200": body("Subject names.", &strings)}}},
        "/subjects/{subject}": {
            "post": {"summary": "Look a schema up under a subject", "parameters": [subject(), flag("deleted", "Also find soft-deleted versions.")],
                "requestBody": request_body("SchemaRequest"), "responses": {
                "200": body("The version holding the schema.", &schema_ref("SubjectVersion")),
                "404": error("No such subject (40401) or schema under it (40403)."),
                "413": error("Body too large."),
                "422": error("Not JSON, not a schema request, or an invalid schema (42201).")}},
            "delete": {"summary": "Delete a subject (soft, or permanent after soft)", "parameters": [subject(), flag("permanent", "Delete for good (after a soft delete).")], "responses": {
                "200": body("The versions deleted.", &ints),
                "401": unauthorized(),
                "404": error("No such subject (40401), already soft-deleted (40404), or not soft-deleted before a permanent delete (40405)."),
                "422": error("A schema of another subject references one of its versions (42206).")}}
        },
        "/subjects/{subject}/versions": {
            "get": {"summary": "Versions of a subject", "parameters": [subject(), flag("deleted", "Include soft-deleted versions.")], "responses": {
                "200": body("Version numbers.", &ints),
                "404": error("No such subject (40401).")}},
            "post": {"summary": "Register a schema under a subject", "parameters": [subject()],
                "requestBody": request_body("SchemaRequest"), "responses": {
                "200": body("Its id (the existing one when already registered).", &json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}})),
                "401": unauthorized(),
                "404": error("A referenced subject or version does not exist."),
                "409": error("Incompatible with the subject's earlier schemas under its compatibility level."),
                "413": error("Body too large."),
                "422": error("Not JSON, not a schema request, or an invalid schema (42201).")}}
        },
        "/subjects/{subject}/versions/{version}": {
            "get": {"summary": "One version of a subject", "parameters": [subject(), version(), flag("deleted", "Also find a soft-deleted version.")], "responses": {
                "200": body("The version.", &schema_ref("SubjectVersion")),
                "404": error("No such subject (40401) or version (40402)."),
                "422": error("Not a valid version (42202).")}},
            "delete": {"summary": "Delete a version (soft, or permanent after soft)", "parameters": [subject(), version(), flag("permanent", "Delete for good (after a soft delete).")], "responses": {
                "200": body("The version deleted.", &json!({"type": "integer"})),
                "401": unauthorized(),
                "404": error("No such subject (40401) or version (40402), already soft-deleted (40406), or not soft-deleted before a permanent delete (40407)."),
                "422": error("Not a valid version (42202), or referenced by another schema (42206).")}}
        },
        "/subjects/{subject}/versions/{version}/schema": {"get": {"summary": "One version's schema text alone", "parameters": [subject(), version(), flag("deleted", "Also find a soft-deleted version.")], "responses": {
            "200": body("The schema itself (JSON).", &json!({})),
            "404": error("No such subject (40401) or version (40402)."),
            "422": error("Not a valid version (42202).")}}},
        "/subjects/{subject}/versions/{version}/referencedby": {"get": {"summary": "Ids of schemas referencing a version", "parameters": [subject(), version()], "responses": {
            "200": body("Schema ids.", &ints),
            "404": error("No such subject (40401) or version (40402)."),
            "422": error("Not a valid version (42202).")}}},
        "/compatibility/subjects/{subject}/versions": {"post": {"summary": "Test a schema against a subject's versions (as its compatibility level says)", "parameters": [subject(), flag("verbose", "Explain an incompatibility.")],
            "requestBody": request_body("SchemaRequest"), "responses": {
            "200": body("The verdict.", &compatibility),
            "404": error("A referenced subject or version does not exist."),
            "413": error("Body too large."),
            "422": error("Not JSON, not a schema request, or an invalid schema (42201).")}}},
        "/compatibility/subjects/{subject}/versions/{version}": {"post": {"summary": "Test a schema against one version", "parameters": [subject(), version(), flag("verbose", "Explain an incompatibility.")],
            "requestBody": request_body("SchemaRequest"), "responses": {
            "200": body("The verdict.", &compatibility),
            "404": error("No such subject (40401) or version (40402)."),
            "413": error("Body too large."),
            "422": error("Not JSON, not a schema request, an invalid schema (42201) or version (42202).")}}}
    })
}

fn config_paths() -> Value {
    let level_update = json!({"required": true, "content": {
        "application/json": {"schema": schema_ref("ConfigUpdate")},
        MEDIA: {"schema": schema_ref("ConfigUpdate")}
    }});
    json!({
        "/config": {
            "get": {"summary": "The global compatibility level", "responses": {
                "200": body("The level.", &schema_ref("Config"))}},
            "put": {"summary": "Set the global compatibility level", "requestBody": level_update, "responses": {
                "200": body("The level set.", &schema_ref("ConfigSet")),
                "401": unauthorized(),
                "413": error("Body too large."),
                "422": error("Not JSON, or not a level (42203).")}},
            "delete": {"summary": "Reset the global level to the default (BACKWARD)", "responses": {
                "200": body("The level before.", &schema_ref("Config")),
                "401": unauthorized()}}
        },
        "/config/{subject}": {
            "get": {"summary": "A subject's compatibility level", "parameters": [subject(), flag("defaultToGlobal", "Answer the global level when the subject has none.")], "responses": {
                "200": body("The level.", &schema_ref("Config")),
                "404": error("The subject has no level of its own (40408).")}},
            "put": {"summary": "Set a subject's compatibility level", "parameters": [subject()], "requestBody": level_update, "responses": {
                "200": body("The level set.", &schema_ref("ConfigSet")),
                "401": unauthorized(),
                "413": error("Body too large."),
                "422": error("Not JSON, or not a level (42203).")}},
            "delete": {"summary": "Remove a subject's own level", "parameters": [subject()], "responses": {
                "200": body("The level removed.", &schema_ref("Config")),
                "401": unauthorized(),
                "404": error("The subject has no level of its own (40401 or 40408).")}}
        },
        "/mode": {"get": {"summary": "The registry's mode (always READWRITE)", "responses": {
            "200": body("The mode.", &json!({"type": "object", "required": ["mode"], "properties": {"mode": {"type": "string", "enum": ["READWRITE"]}}}))}}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_parses_and_names_every_route() {
        let doc: Value = serde_json::from_str(document_text()).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        let paths = doc["paths"].as_object().unwrap();
        for route in [
            "/",
            ROUTE,
            "/schemas/types",
            "/schemas/ids/{id}",
            "/schemas/ids/{id}/schema",
            "/schemas/ids/{id}/versions",
            "/schemas/ids/{id}/subjects",
            "/subjects",
            "/subjects/{subject}",
            "/subjects/{subject}/versions",
            "/subjects/{subject}/versions/{version}",
            "/subjects/{subject}/versions/{version}/schema",
            "/subjects/{subject}/versions/{version}/referencedby",
            "/compatibility/subjects/{subject}/versions",
            "/compatibility/subjects/{subject}/versions/{version}",
            "/config",
            "/config/{subject}",
            "/mode",
        ] {
            assert!(paths.contains_key(route), "{route}");
        }
        assert_eq!(paths.len(), 18);
    }
}
