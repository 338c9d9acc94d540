//! Registry errors and their Confluent error codes.
//!
//! Every error maps to Confluent's `{"error_code": N, "message": "..."}` body; the HTTP status
//! is the first three digits of the code (`40401` → 404, `409` → 409, `50001` → 500).

/// An error of the registry, carrying the Confluent error code it is reported with.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// 40401: the subject has no (live) version.
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// 40402: the subject exists but not this version.
    #[error("Version {0} not found.")]
    VersionNotFound(u32),
    /// 40403: no schema with this id.
    #[error("Schema {0} not found")]
    SchemaIdNotFound(u32),
    /// 40403: the schema looked up under a subject is not registered there.
    #[error("Schema not found")]
    SchemaNotFound,
    /// 40404: the subject was already soft-deleted.
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    /// 40405: a permanent delete of a subject that was not soft-deleted first.
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    /// 40406: the version was already soft-deleted.
    #[error("Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted {
        /// The subject.
        subject: String,
        /// The version.
        version: u32,
    },
    /// 40407: a permanent delete of a version that was not soft-deleted first.
    #[error("Subject '{subject}' Version {version} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted {
        /// The subject.
        subject: String,
        /// The version.
        version: u32,
    },
    /// 40408: `GET /config/{subject}` without a subject-level configuration.
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectCompatibilityNotConfigured(String),
    /// 409: the schema breaks the subject's compatibility rules.
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .details.join(", "))]
    Incompatible {
        /// The subject.
        subject: String,
        /// Confluent-style detail entries (`{errorType:'...', ...}`, `{oldSchemaVersion: N}`, ...).
        details: Vec<String>,
    },
    /// 42201: the schema is not valid JSON or not a valid Avro schema.
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    /// 42202: the version is neither a positive 32-bit integer nor `latest`.
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    /// 42203: not one of the compatibility levels.
    #[error("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")]
    InvalidCompatibilityLevel,
    /// 42206: the version is referenced by another schema and cannot be deleted.
    #[error("One or more references exist to the schema {{subject={subject},version={version}}}.")]
    ReferenceExists {
        /// The subject.
        subject: String,
        /// The version.
        version: u32,
    },
    /// 422: the request body is not well-formed JSON or has the wrong shape.
    #[error("{0}")]
    UnprocessableEntity(String),
    /// 413: the request body is over the server's limit.
    #[error("HTTP 413 Payload Too Large")]
    PayloadTooLarge,
    /// 401: a write without a valid bearer token (see [`crate::WriteAccess`]).
    #[error("HTTP 401 Unauthorized")]
    Unauthorized,
    /// 404: no such route (or an id that is not a number).
    #[error("HTTP 404 Not Found")]
    NotFound,
    /// 405: the route exists but not with this method.
    #[error("HTTP 405 Method Not Allowed")]
    MethodNotAllowed,
    /// 50001: the redb store failed.
    #[error("Error in the backend data store - {0}")]
    Store(String),
}

impl RegistryError {
    /// The Confluent `error_code`.
    pub fn error_code(&self) -> u32 {
        match self {
            Self::SubjectNotFound(_) => 40401,
            Self::VersionNotFound(_) => 40402,
            Self::SchemaIdNotFound(_) | Self::SchemaNotFound => 40403,
            Self::SubjectSoftDeleted(_) => 40404,
            Self::SubjectNotSoftDeleted(_) => 40405,
            Self::VersionSoftDeleted { .. } => 40406,
            Self::VersionNotSoftDeleted { .. } => 40407,
            Self::SubjectCompatibilityNotConfigured(_) => 40408,
            Self::Incompatible { .. } => 409,
            Self::InvalidSchema(_) => 42201,
            Self::InvalidVersion(_) => 42202,
            Self::InvalidCompatibilityLevel => 42203,
            Self::ReferenceExists { .. } => 42206,
            Self::UnprocessableEntity(_) => 422,
            Self::PayloadTooLarge => 413,
            Self::Unauthorized => 401,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Store(_) => 50001,
        }
    }

    /// The HTTP status: the first three digits of the error code.
    pub fn http_status(&self) -> u16 {
        let mut code = self.error_code();
        while code >= 1000 {
            code /= 10;
        }
        u16::try_from(code).unwrap_or(500)
    }
}

macro_rules! store_error {
    ($($t:ty),*) => {$(
        impl From<$t> for RegistryError {
            fn from(e: $t) -> Self {
                Self::Store(e.to_string())
            }
        }
    )*};
}

store_error!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_the_first_three_digits() {
        assert_eq!(
            RegistryError::SubjectNotFound("s".into()).http_status(),
            404
        );
        assert_eq!(RegistryError::InvalidCompatibilityLevel.http_status(), 422);
        assert_eq!(RegistryError::Store("x".into()).http_status(), 500);
        let inc = RegistryError::Incompatible {
            subject: "s".into(),
            details: vec![],
        };
        assert_eq!((inc.error_code(), inc.http_status()), (409, 409));
        assert_eq!(RegistryError::NotFound.http_status(), 404);
    }
}
