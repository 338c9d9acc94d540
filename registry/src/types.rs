//! The registry's data types: requests, stored schemas, subject versions, version specs.

use crate::error::RegistryError;
use serde::{Deserialize, Serialize};

/// A Confluent schema reference: the named type `name` is defined by `subject`/`version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaReference {
    /// The referenced type's full name (for Avro).
    pub name: String,
    /// The subject that holds the referenced schema.
    pub subject: String,
    /// Its version; `-1` on input means the latest one.
    pub version: i32,
}

/// The body of `POST /subjects/{s}/versions`, `POST /subjects/{s}` and the compatibility check.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SchemaRequest {
    /// The schema text (JSON for Avro).
    #[serde(default)]
    pub schema: Option<String>,
    /// `AVRO` (the default when absent); other types are refused.
    #[serde(default, rename = "schemaType")]
    pub schema_type: Option<String>,
    /// References to named types registered under other subjects.
    #[serde(default)]
    pub references: Option<Vec<SchemaReference>>,
}

/// A schema as stored under a global id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaInfo {
    /// The schema text, as registered with insignificant whitespace removed.
    pub schema: String,
    /// Always `AVRO` in this registry.
    #[serde(rename = "schemaType")]
    pub schema_type: String,
    /// Resolved references (concrete versions).
    pub references: Vec<SchemaReference>,
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    /// The subject.
    pub subject: String,
    /// The version number (from 1).
    pub version: u32,
    /// The global schema id.
    pub id: u32,
    /// The schema.
    pub info: SchemaInfo,
    /// Whether the version is soft-deleted.
    pub deleted: bool,
}

/// Which version of a subject: a number or the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    /// The latest version (`latest` or `-1`).
    Latest,
    /// A version number.
    Number(u32),
}

impl VersionSpec {
    /// Parses `latest`, `-1` or a number in `1..=2^31-1`; anything else is a 42202.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        if text.eq_ignore_ascii_case("latest") || text == "-1" {
            return Ok(Self::Latest);
        }
        match text.parse::<i32>() {
            Ok(n) if n >= 1 => Ok(Self::Number(n.unsigned_abs())),
            _ => Err(RegistryError::InvalidVersion(text.to_string())),
        }
    }
}

/// The result of a compatibility check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatibilityReport {
    /// Whether the schema may be registered.
    pub is_compatible: bool,
    /// Confluent-style detail entries, empty when compatible.
    pub messages: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_spec_parsing() {
        assert_eq!(VersionSpec::parse("latest").ok(), Some(VersionSpec::Latest));
        assert_eq!(VersionSpec::parse("-1").ok(), Some(VersionSpec::Latest));
        assert_eq!(VersionSpec::parse("7").ok(), Some(VersionSpec::Number(7)));
        for bad in ["0", "-2", "abc", "2147483648", ""] {
            assert_eq!(
                VersionSpec::parse(bad).map_err(|e| e.error_code()).err(),
                Some(42202),
                "{bad}"
            );
        }
    }
}
