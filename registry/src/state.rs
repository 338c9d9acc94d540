//! The in-memory mirror of the store and the queries over it: version lookup, reference
//! resolution, request validation and compatibility checks against a subject's history.

use crate::canonical::minify;
use crate::compat::{reader_incompatibilities, CompatibilityLevel, ParsedSchema};
use crate::error::RegistryError;
use crate::types::{
    CompatibilityReport, SchemaInfo, SchemaReference, SchemaRequest, SubjectVersion, VersionSpec,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// A `(subject, version)` entry.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct StoredVersion {
    /// The global schema id.
    pub(crate) id: u32,
    /// Whether the version is soft-deleted.
    pub(crate) deleted: bool,
}

/// Everything the store holds, mirrored in memory.
#[derive(Default)]
pub(crate) struct State {
    /// Schemas by global id.
    pub(crate) schemas: BTreeMap<u32, SchemaInfo>,
    /// Global id by schema identity ([`crate::canonical::schema_key`]).
    pub(crate) by_key: HashMap<String, u32>,
    /// Versions by subject.
    pub(crate) subjects: BTreeMap<String, BTreeMap<u32, StoredVersion>>,
    /// The global level, if set.
    pub(crate) global: Option<CompatibilityLevel>,
    /// Subject-level levels.
    pub(crate) subject_config: BTreeMap<String, CompatibilityLevel>,
}

/// The level in effect for `subject`: its own, else the global one, else BACKWARD.
pub(crate) fn effective_level(state: &State, subject: &str) -> CompatibilityLevel {
    state
        .subject_config
        .get(subject)
        .copied()
        .or(state.global)
        .unwrap_or_default()
}

/// The versions of a subject that has at least one visible version, else 40401.
pub(crate) fn subject_versions<'a>(
    state: &'a State,
    subject: &str,
    include_deleted: bool,
) -> Result<&'a BTreeMap<u32, StoredVersion>, RegistryError> {
    state
        .subjects
        .get(subject)
        .filter(|vs| vs.values().any(|v| include_deleted || !v.deleted))
        .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))
}

pub(crate) fn find_version(
    state: &State,
    subject: &str,
    spec: VersionSpec,
    include_deleted: bool,
) -> Result<(u32, StoredVersion), RegistryError> {
    let versions = subject_versions(state, subject, include_deleted)?;
    let mut visible = versions
        .iter()
        .filter(|(_, v)| include_deleted || !v.deleted);
    let found = match spec {
        VersionSpec::Latest => visible.next_back(),
        VersionSpec::Number(n) => visible.find(|(v, _)| **v == n),
    };
    match (found, spec) {
        (Some((v, stored)), _) => Ok((*v, *stored)),
        (None, VersionSpec::Number(n)) => Err(RegistryError::VersionNotFound(n)),
        // a subject with a visible version has a latest one
        (None, VersionSpec::Latest) => Err(RegistryError::SubjectNotFound(subject.to_string())),
    }
}

pub(crate) fn subject_version(
    state: &State,
    subject: &str,
    version: u32,
    stored: StoredVersion,
) -> Result<SubjectVersion, RegistryError> {
    let info = state
        .schemas
        .get(&stored.id)
        .cloned()
        .ok_or_else(|| RegistryError::Store(format!("schema id {} is missing", stored.id)))?;
    Ok(SubjectVersion {
        subject: subject.to_string(),
        version,
        id: stored.id,
        info,
        deleted: stored.deleted,
    })
}

/// Ids of schemas used by live versions that reference `subject`/`version`.
pub(crate) fn referencing_ids(state: &State, subject: &str, version: u32) -> Vec<u32> {
    let target = i64::from(version);
    let mut ids: Vec<u32> = state
        .subjects
        .values()
        .flat_map(|vs| vs.values())
        .filter(|v| !v.deleted)
        .map(|v| v.id)
        .filter(|id| {
            state.schemas.get(id).is_some_and(|info| {
                info.references
                    .iter()
                    .any(|r| r.subject == subject && i64::from(r.version) == target)
            })
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Validates a request: type, references (resolved to concrete versions) and the Avro itself.
pub(crate) fn prepare(
    state: &State,
    request: &SchemaRequest,
) -> Result<(SchemaInfo, ParsedSchema), RegistryError> {
    if let Some(t) = &request.schema_type {
        if !t.eq_ignore_ascii_case("AVRO") {
            return Err(RegistryError::InvalidSchema(format!(
                "unsupported schema type {t}; this registry only supports AVRO"
            )));
        }
    }
    let text = request
        .schema
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| RegistryError::InvalidSchema("Empty schema".to_string()))?;
    let mut references = Vec::new();
    for r in request.references.iter().flatten() {
        let spec = if r.version == -1 {
            VersionSpec::Latest
        } else {
            VersionSpec::parse(&r.version.to_string())?
        };
        let (version, _) = find_version(state, &r.subject, spec, true).map_err(|_| {
            RegistryError::InvalidSchema(format!(
                "reference {} to subject '{}' version {} not found",
                r.name, r.subject, r.version
            ))
        })?;
        references.push(SchemaReference {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            ..r.clone()
        });
    }
    let info = SchemaInfo {
        schema: minify(text),
        schema_type: "AVRO".to_string(),
        references,
    };
    let parsed = parse_info(state, &info).map_err(RegistryError::InvalidSchema)?;
    Ok((info, parsed))
}

/// Parses a schema with its references' texts, transitively, dependencies first.
pub(crate) fn parse_info(state: &State, info: &SchemaInfo) -> Result<ParsedSchema, String> {
    fn collect(
        state: &State,
        info: &SchemaInfo,
        out: &mut Vec<String>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > 32 {
            return Err("references nest too deeply".to_string());
        }
        for r in &info.references {
            let dep = state
                .subjects
                .get(&r.subject)
                .and_then(|vs| vs.get(&r.version.unsigned_abs()))
                .and_then(|v| state.schemas.get(&v.id))
                .ok_or_else(|| format!("reference {} not found", r.name))?;
            collect(state, dep, out, depth + 1)?;
            if !out.contains(&dep.schema) {
                out.push(dep.schema.clone());
            }
        }
        Ok(())
    }
    let mut deps = Vec::new();
    collect(state, info, &mut deps, 0)?;
    ParsedSchema::parse(&info.schema, &deps)
}

/// Checks `new` against the live versions of `subject` as `level` asks (or only `only`).
pub(crate) fn check_against(
    state: &State,
    subject: &str,
    new: &ParsedSchema,
    level: CompatibilityLevel,
    only: Option<u32>,
) -> Result<CompatibilityReport, RegistryError> {
    let mut messages = Vec::new();
    let live: Vec<(u32, u32)> = state
        .subjects
        .get(subject)
        .into_iter()
        .flatten()
        .filter(|(n, v)| !v.deleted && only.is_none_or(|o| o == **n))
        .map(|(n, v)| (*n, v.id))
        .rev()
        .collect();
    let count = if only.is_some() || level.is_transitive() {
        live.len()
    } else {
        1
    };
    if level != CompatibilityLevel::None {
        for (version, id) in live.into_iter().take(count) {
            let info = state
                .schemas
                .get(&id)
                .ok_or_else(|| RegistryError::Store(format!("schema id {id} is missing")))?;
            let old = parse_info(state, info).map_err(RegistryError::Store)?;
            let mut found = Vec::new();
            if level.checks_backward() {
                found.extend(
                    reader_incompatibilities(new, &old)
                        .iter()
                        .map(|i| i.describe(true)),
                );
            }
            if level.checks_forward() {
                found.extend(
                    reader_incompatibilities(&old, new)
                        .iter()
                        .map(|i| i.describe(false)),
                );
            }
            if !found.is_empty() {
                messages.extend(found);
                messages.push(format!("{{oldSchemaVersion: {version}}}"));
                messages.push(format!("{{oldSchema: '{}'}}", info.schema));
            }
        }
    }
    if !messages.is_empty() {
        messages.push(format!(
            "{{validateFields: 'false', compatibility: '{}'}}",
            level.as_str()
        ));
    }
    Ok(CompatibilityReport {
        is_compatible: messages.is_empty(),
        messages,
    })
}
