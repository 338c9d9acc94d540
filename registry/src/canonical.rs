//! Schema text handling: the stored (minified) text and the identity used for deduplication.
//! Public (hidden) for the fuzz targets; not part of the registry's API.

use crate::error::RegistryError;
use crate::types::SchemaInfo;
use serde_json::Value;

/// Removes JSON whitespace outside string literals (the text is known to be valid JSON).
pub fn minify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The identity of a schema for deduplication: its JSON with sorted keys and `{"type": "int"}`
/// written `"int"`, plus its references. Whitespace and key order do not matter; docs, defaults
/// and logical types do (they change what the schema means), unlike in Avro's parsing
/// canonical form.
pub fn schema_key(info: &SchemaInfo) -> Result<String, RegistryError> {
    let value: Value = serde_json::from_str(&info.schema)?;
    let mut out = String::new();
    canonical_json(&value, &mut out);
    out.push('|');
    out.push_str(&serde_json::to_string(&info.references)?);
    Ok(out)
}

fn canonical_json(value: &Value, out: &mut String) {
    const PRIMITIVES: [&str; 8] = [
        "null", "boolean", "int", "long", "float", "double", "bytes", "string",
    ];
    match value {
        Value::Object(map) => {
            if let (1, Some(Value::String(t))) = (map.len(), map.get("type")) {
                if PRIMITIVES.contains(&t.as_str()) {
                    out.push_str(&Value::String(t.clone()).to_string());
                    return;
                }
            }
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(schema: &str) -> SchemaInfo {
        SchemaInfo {
            schema: schema.to_string(),
            schema_type: "AVRO".to_string(),
            references: vec![],
        }
    }

    #[test]
    fn minify_keeps_strings_intact() {
        assert_eq!(
            minify("{ \"doc\" : \"a  b \\\" c\",\n \"type\": \"string\" }"),
            "{\"doc\":\"a  b \\\" c\",\"type\":\"string\"}"
        );
    }

    #[test]
    fn key_ignores_layout_but_not_meaning() {
        let a = schema_key(&info(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#,
        ));
        let b = schema_key(&info(
            r#"{ "name": "R", "fields": [ {"type": {"type":"int"}, "name": "a"} ], "type": "record" }"#,
        ));
        let c = schema_key(&info(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":1}]}"#,
        ));
        assert_eq!(a.as_ref().ok(), b.as_ref().ok());
        assert_ne!(a.ok(), c.ok());
    }
}
