//! The registry's state: schemas by global id, subject versions and compatibility configs,
//! written through to a redb file and mirrored in memory.
//!
//! redb tables (values are JSON):
//! - `schemas`: `u32` id → `{"schema", "schemaType", "references"}`; ids are never removed nor
//!   reused, so data written with an id stays decodable after its subject is deleted;
//! - `versions`: `(subject, version)` → `{"id", "deleted"}` (soft delete sets `deleted`);
//! - `config`: `""` → global level, `"subject:<s>"` → subject-level level.
//!
//! Every mutation is one redb write transaction, committed before the in-memory mirror changes.

use crate::canonical::schema_key;
use crate::compat::CompatibilityLevel;
use crate::error::RegistryError;
use crate::state::{
    check_against, effective_level, find_version, prepare, referencing_ids, subject_version,
    subject_versions, State, StoredVersion,
};
use crate::types::{CompatibilityReport, SchemaInfo, SchemaRequest, SubjectVersion, VersionSpec};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

const SCHEMAS: TableDefinition<u32, &str> = TableDefinition::new("schemas");
const VERSIONS: TableDefinition<(&str, u32), &str> = TableDefinition::new("versions");
const CONFIG: TableDefinition<&str, &str> = TableDefinition::new("config");
const GLOBAL_KEY: &str = "";

/// An embedded Confluent-compatible Avro schema registry over a redb file.
pub struct Registry {
    db: Database,
    state: Mutex<State>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens (or creates) the registry stored in the redb file at `path`.
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(SCHEMAS)?;
            txn.open_table(VERSIONS)?;
            txn.open_table(CONFIG)?;
        }
        txn.commit()?;
        let mut state = State::default();
        let txn = db.begin_read()?;
        for row in txn.open_table(SCHEMAS)?.iter()? {
            let (id, value) = row?;
            let info: SchemaInfo = serde_json::from_str(value.value())?;
            state.by_key.insert(schema_key(&info)?, id.value());
            state.schemas.insert(id.value(), info);
        }
        for row in txn.open_table(VERSIONS)?.iter()? {
            let (key, value) = row?;
            let (subject, version) = key.value();
            let stored: StoredVersion = serde_json::from_str(value.value())?;
            state
                .subjects
                .entry(subject.to_string())
                .or_default()
                .insert(version, stored);
        }
        for row in txn.open_table(CONFIG)?.iter()? {
            let (key, value) = row?;
            let level = CompatibilityLevel::parse(value.value()).ok_or_else(|| {
                RegistryError::Store(format!("bad compatibility level {}", value.value()))
            })?;
            match key.value().strip_prefix("subject:") {
                Some(subject) => {
                    state.subject_config.insert(subject.to_string(), level);
                }
                None => state.global = Some(level),
            }
        }
        Ok(Self {
            db,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the mirror half-updated: every mutation
        // commits to redb first and then applies infallible map inserts, so the data is usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `request` under `subject` (Confluent `POST /subjects/{s}/versions`) and returns
    /// its global id. An identical schema already live under the subject returns its id without
    /// a new version; an identical schema under another subject reuses that id.
    pub fn register(&self, subject: &str, request: &SchemaRequest) -> Result<u32, RegistryError> {
        let mut state = self.lock();
        let (info, parsed) = prepare(&state, request)?;
        let key = schema_key(&info)?;
        let existing_id = state.by_key.get(&key).copied();
        let versions = state.subjects.get(subject);
        if let Some(id) = existing_id {
            let live = versions
                .into_iter()
                .flatten()
                .any(|(_, v)| !v.deleted && v.id == id);
            if live {
                return Ok(id);
            }
        }
        let level = effective_level(&state, subject);
        let report = check_against(&state, subject, &parsed, level, None)?;
        if !report.is_compatible {
            return Err(RegistryError::Incompatible {
                subject: subject.to_string(),
                details: report.messages,
            });
        }
        let next_id = state.schemas.keys().next_back().map_or(1, |m| m + 1);
        let id = existing_id.unwrap_or(next_id);
        let version = versions
            .and_then(|v| v.keys().next_back())
            .map_or(1, |m| m + 1);
        let stored = StoredVersion { id, deleted: false };
        let txn = self.db.begin_write()?;
        {
            if existing_id.is_none() {
                let json = serde_json::to_string(&info)?;
                txn.open_table(SCHEMAS)?.insert(id, json.as_str())?;
            }
            let json = serde_json::to_string(&stored)?;
            txn.open_table(VERSIONS)?
                .insert((subject, version), json.as_str())?;
        }
        txn.commit()?;
        if existing_id.is_none() {
            state.schemas.insert(id, info);
            state.by_key.insert(key, id);
        }
        state
            .subjects
            .entry(subject.to_string())
            .or_default()
            .insert(version, stored);
        tracing::debug!(subject, version, id, "schema registered");
        Ok(id)
    }

    /// Finds `request` among the versions of `subject` (Confluent `POST /subjects/{s}`):
    /// 40401 if the subject has no version, 40403 if the schema is not one of them.
    pub fn lookup(
        &self,
        subject: &str,
        request: &SchemaRequest,
        include_deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let state = self.lock();
        let versions = subject_versions(&state, subject, include_deleted)?;
        let (info, _) = prepare(&state, request)?;
        let id = state
            .by_key
            .get(&schema_key(&info)?)
            .ok_or(RegistryError::SchemaNotFound)?;
        let (version, stored) = versions
            .iter()
            .rfind(|(_, v)| v.id == *id && (include_deleted || !v.deleted))
            .ok_or(RegistryError::SchemaNotFound)?;
        subject_version(&state, subject, *version, *stored)
    }

    /// The schema with global id `id` (40403 if none).
    pub fn schema_by_id(&self, id: u32) -> Result<SchemaInfo, RegistryError> {
        self.lock()
            .schemas
            .get(&id)
            .cloned()
            .ok_or(RegistryError::SchemaIdNotFound(id))
    }

    /// The (subject, version) pairs using schema `id`, soft-deleted ones only if asked.
    pub fn versions_of_id(
        &self,
        id: u32,
        include_deleted: bool,
    ) -> Result<Vec<(String, u32)>, RegistryError> {
        let state = self.lock();
        if !state.schemas.contains_key(&id) {
            return Err(RegistryError::SchemaIdNotFound(id));
        }
        Ok(state
            .subjects
            .iter()
            .flat_map(|(s, vs)| vs.iter().map(move |(v, sv)| (s, *v, sv)))
            .filter(|(_, _, sv)| sv.id == id && (include_deleted || !sv.deleted))
            .map(|(s, v, _)| (s.clone(), v))
            .collect())
    }

    /// The subjects with a live version (or any version if `include_deleted`), sorted.
    pub fn subjects(&self, include_deleted: bool, prefix: &str) -> Vec<String> {
        let state = self.lock();
        state
            .subjects
            .iter()
            .filter(|(s, vs)| {
                s.starts_with(prefix) && vs.values().any(|v| include_deleted || !v.deleted)
            })
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// The version numbers of `subject`, ascending (40401 if it has none).
    pub fn versions(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        let state = self.lock();
        let versions = subject_versions(&state, subject, include_deleted)?;
        Ok(versions
            .iter()
            .filter(|(_, v)| include_deleted || !v.deleted)
            .map(|(n, _)| *n)
            .collect())
    }

    /// One version of `subject` (40401 no subject, 40402 no such version).
    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        include_deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let state = self.lock();
        let (version, stored) = find_version(&state, subject, spec, include_deleted)?;
        subject_version(&state, subject, version, stored)
    }

    /// Ids of the schemas whose references point at `subject`/`version`.
    pub fn referenced_by(
        &self,
        subject: &str,
        spec: VersionSpec,
    ) -> Result<Vec<u32>, RegistryError> {
        let state = self.lock();
        let (version, _) = find_version(&state, subject, spec, false)?;
        Ok(referencing_ids(&state, subject, version))
    }

    /// Deletes a subject: soft (marks every version deleted) or, after a soft delete,
    /// permanently. Returns the versions deleted.
    pub fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<u32>, RegistryError> {
        let mut state = self.lock();
        let versions = state
            .subjects
            .get(subject)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
        let live: Vec<u32> = versions
            .iter()
            .filter(|(_, v)| !v.deleted)
            .map(|(n, _)| *n)
            .collect();
        let all: Vec<(u32, StoredVersion)> = versions.iter().map(|(n, v)| (*n, *v)).collect();
        if permanent && !live.is_empty() {
            return Err(RegistryError::SubjectNotSoftDeleted(subject.to_string()));
        }
        if !permanent && live.is_empty() {
            return Err(RegistryError::SubjectSoftDeleted(subject.to_string()));
        }
        for v in &live {
            if !referencing_ids(&state, subject, *v).is_empty() {
                return Err(RegistryError::ReferenceExists {
                    subject: subject.to_string(),
                    version: *v,
                });
            }
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(VERSIONS)?;
            for (n, stored) in &all {
                if permanent {
                    table.remove((subject, *n))?;
                } else if !stored.deleted {
                    let json = serde_json::to_string(&StoredVersion {
                        deleted: true,
                        ..*stored
                    })?;
                    table.insert((subject, *n), json.as_str())?;
                }
            }
        }
        txn.commit()?;
        if permanent {
            state.subjects.remove(subject);
            Ok(all.into_iter().map(|(n, _)| n).collect())
        } else {
            if let Some(vs) = state.subjects.get_mut(subject) {
                vs.values_mut().for_each(|v| v.deleted = true);
            }
            Ok(live)
        }
    }

    /// Deletes one version: soft or, after a soft delete, permanently. Returns its number.
    pub fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<u32, RegistryError> {
        let mut state = self.lock();
        // a soft delete of `latest` targets the latest live version; otherwise look at all
        let include_deleted = permanent || spec != VersionSpec::Latest;
        let (version, stored) = find_version(&state, subject, spec, include_deleted)?;
        if !permanent && stored.deleted {
            return Err(RegistryError::VersionSoftDeleted {
                subject: subject.to_string(),
                version,
            });
        }
        if permanent && !stored.deleted {
            return Err(RegistryError::VersionNotSoftDeleted {
                subject: subject.to_string(),
                version,
            });
        }
        if !permanent && !referencing_ids(&state, subject, version).is_empty() {
            return Err(RegistryError::ReferenceExists {
                subject: subject.to_string(),
                version,
            });
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(VERSIONS)?;
            if permanent {
                table.remove((subject, version))?;
            } else {
                let json = serde_json::to_string(&StoredVersion {
                    deleted: true,
                    ..stored
                })?;
                table.insert((subject, version), json.as_str())?;
            }
        }
        txn.commit()?;
        if let Some(vs) = state.subjects.get_mut(subject) {
            if permanent {
                vs.remove(&version);
            } else if let Some(v) = vs.get_mut(&version) {
                v.deleted = true;
            }
            if vs.is_empty() {
                state.subjects.remove(subject);
            }
        }
        Ok(version)
    }

    /// Checks `request` against `subject` under its compatibility level: against one version
    /// if `spec` is given, otherwise against what registration would check (the latest live
    /// version, or all of them for a transitive level). A missing subject is compatible when
    /// checking `latest` or all versions; 40401/40402 for a missing numbered version.
    pub fn check_compatibility(
        &self,
        subject: &str,
        spec: Option<VersionSpec>,
        request: &SchemaRequest,
    ) -> Result<CompatibilityReport, RegistryError> {
        let state = self.lock();
        let (_, parsed) = prepare(&state, request)?;
        let level = effective_level(&state, subject);
        let only = match spec {
            None => None,
            Some(spec) => match find_version(&state, subject, spec, false) {
                Ok((version, _)) => Some(version),
                Err(RegistryError::SubjectNotFound(_)) if spec == VersionSpec::Latest => {
                    return Ok(CompatibilityReport {
                        is_compatible: true,
                        messages: Vec::new(),
                    })
                }
                Err(e) => return Err(e),
            },
        };
        check_against(&state, subject, &parsed, level, only)
    }

    /// The global compatibility level (BACKWARD unless set).
    pub fn global_compatibility(&self) -> CompatibilityLevel {
        self.lock().global.unwrap_or_default()
    }

    /// The subject-level compatibility level, if one is set.
    pub fn subject_compatibility(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.lock().subject_config.get(subject).copied()
    }

    /// Sets the global level (`subject` = `None`) or a subject's level.
    pub fn set_compatibility(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        let mut state = self.lock();
        let key = config_key(subject);
        let txn = self.db.begin_write()?;
        txn.open_table(CONFIG)?
            .insert(key.as_str(), level.as_str())?;
        txn.commit()?;
        match subject {
            Some(s) => {
                state.subject_config.insert(s.to_string(), level);
            }
            None => state.global = Some(level),
        }
        Ok(())
    }

    /// Removes the global level (back to BACKWARD) or a subject's level, returning the level
    /// that was in effect (40408 for a subject without one).
    pub fn delete_compatibility(
        &self,
        subject: Option<&str>,
    ) -> Result<CompatibilityLevel, RegistryError> {
        let mut state = self.lock();
        let previous =
            match subject {
                Some(s) => state.subject_config.get(s).copied().ok_or_else(|| {
                    RegistryError::SubjectCompatibilityNotConfigured(s.to_string())
                })?,
                None => state.global.unwrap_or_default(),
            };
        let key = config_key(subject);
        let txn = self.db.begin_write()?;
        txn.open_table(CONFIG)?.remove(key.as_str())?;
        txn.commit()?;
        match subject {
            Some(s) => {
                state.subject_config.remove(s);
            }
            None => state.global = None,
        }
        Ok(previous)
    }
}

fn config_key(subject: Option<&str>) -> String {
    subject.map_or_else(|| GLOBAL_KEY.to_string(), |s| format!("subject:{s}"))
}
