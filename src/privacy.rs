//! The document key: how the runtime pseudonymizes CPF/CNPJ at rest.
//!
//! The risk-scoring state (blacklist, per-payer behaviour, known payees) is keyed by documents.
//! It stores their HMAC-SHA256 under a secret key instead
//! ([`fluxo_processors::risk::pseudonym`]); the processors receive the key as a parameter and
//! never read the environment. This module is where the key comes from:
//!
//! - [`DOCUMENT_KEY_ENV`] (`FLUXO_DOCUMENT_KEY`): the key, at least 16 bytes (e.g.
//!   `openssl rand -hex 32`).
//! - [`DOCUMENT_KEY_PREVIOUS_ENV`] (`FLUXO_DOCUMENT_KEY_PREVIOUS`): during a rotation, the key
//!   being replaced. Entries still under it are found and re-keyed as they are touched; a
//!   rebuild by replay re-keys everything.
//!
//! Policy ([`resolve`]): on the ScyllaDB backend (a shared, production store) fluxo refuses to
//! start without a key. On the embedded backend (`fluxo up` on a laptop) an unset key falls back
//! to [`DEV_KEY`], a public development key, with a warning: documents are then pseudonymized
//! but anyone with fluxo's source can test guesses against them.

use crate::config::Backend;
use fluxo_processors::risk::pseudonym::{Pseudonymizer, MIN_KEY_LEN};
use std::sync::OnceLock;

/// Environment variable holding the document key.
pub const DOCUMENT_KEY_ENV: &str = "FLUXO_DOCUMENT_KEY";
/// Environment variable holding the previous document key, during a rotation.
pub const DOCUMENT_KEY_PREVIOUS_ENV: &str = "FLUXO_DOCUMENT_KEY_PREVIOUS";
/// The development key used on the embedded backend when [`DOCUMENT_KEY_ENV`] is unset. Public:
/// it protects nothing against someone who has it.
pub const DEV_KEY: &str = "fluxo development document key - not a secret";

/// Where the key in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// [`DOCUMENT_KEY_ENV`].
    Environment,
    /// [`DEV_KEY`] (embedded backend, variable unset).
    Development,
}

/// The pseudonymizer for `current` / `previous` (the values of the two variables, unset or
/// blank as `None`) on `backend`, and where its key came from.
///
/// # Errors
/// A message for the operator: no key on the ScyllaDB backend, a key shorter than 16 bytes, or
/// a previous key without a current one.
pub fn resolve(
    backend: Backend,
    current: Option<&str>,
    previous: Option<&str>,
) -> Result<(Pseudonymizer, KeySource), String> {
    let current = current.filter(|v| !v.trim().is_empty());
    let previous = previous.filter(|v| !v.trim().is_empty());
    let (key, source) = match (current, backend) {
        (Some(k), _) => (k, KeySource::Environment),
        (None, Backend::Scylla) => {
            return Err(format!(
                "{DOCUMENT_KEY_ENV} is not set: on the scylla backend documents at rest are \
                 pseudonymized with a secret key, give one of at least {MIN_KEY_LEN} bytes \
                 (e.g. `openssl rand -hex 32`)"
            ))
        }
        (None, Backend::Embedded) if previous.is_some() => {
            return Err(format!(
                "{DOCUMENT_KEY_PREVIOUS_ENV} is set but {DOCUMENT_KEY_ENV} is not: a rotation \
                 needs the new key"
            ))
        }
        (None, Backend::Embedded) => (DEV_KEY, KeySource::Development),
    };
    let p = Pseudonymizer::new(key.as_bytes()).map_err(|e| format!("{DOCUMENT_KEY_ENV}: {e}"))?;
    let p = match previous {
        Some(old) if old == key => p,
        Some(old) => p
            .with_previous(old.as_bytes())
            .map_err(|e| format!("{DOCUMENT_KEY_PREVIOUS_ENV}: {e}"))?,
        None => p,
    };
    Ok((p, source))
}

/// [`resolve`] from the environment.
///
/// # Errors
/// As [`resolve`].
pub fn from_env(backend: Backend) -> Result<(Pseudonymizer, KeySource), String> {
    let current = std::env::var(DOCUMENT_KEY_ENV).ok();
    let previous = std::env::var(DOCUMENT_KEY_PREVIOUS_ENV).ok();
    resolve(backend, current.as_deref(), previous.as_deref())
}

static INSTALLED: OnceLock<Pseudonymizer> = OnceLock::new();

/// Resolve the key for `backend` from the environment, apply the policy, log where it came
/// from (never the key), and make it the one [`pseudonymizer`] returns. Called once at start by
/// `fluxo up`, `run` and `replay`.
///
/// # Errors
/// As [`resolve`].
pub fn init(backend: Backend) -> Result<(), String> {
    let (p, source) = from_env(backend)?;
    match source {
        KeySource::Development => {
            tracing::warn!(
                "documents at rest are pseudonymized with the development key: set {DOCUMENT_KEY_ENV} outside development"
            );
            println!("documents   pseudonymized with a development key (set {DOCUMENT_KEY_ENV} in production)");
        }
        KeySource::Environment => {
            tracing::info!(
                rotating = p.is_rotating(),
                "documents at rest are pseudonymized with {DOCUMENT_KEY_ENV}"
            );
        }
    }
    if p.is_rotating() {
        tracing::warn!("{DOCUMENT_KEY_PREVIOUS_ENV} is set: entries under the previous key are re-keyed as they are read");
    }
    // A second init (an in-process restart) keeps the first key: the key of a process is fixed.
    let _ = INSTALLED.set(p);
    Ok(())
}

/// The pseudonymizer of this process: the one [`init`] installed, or else the environment's key
/// (the development key when unset, as on the embedded backend; in-process tests take this
/// path).
pub fn pseudonymizer() -> Pseudonymizer {
    INSTALLED
        .get_or_init(|| {
            from_env(Backend::Embedded)
                .map(|(p, _)| p)
                .unwrap_or_else(|e| {
                    tracing::warn!("{e}; using the development document key");
                    dev_pseudonymizer()
                })
        })
        .clone()
}

fn dev_pseudonymizer() -> Pseudonymizer {
    // DEV_KEY is longer than MIN_KEY_LEN, so this cannot fail.
    Pseudonymizer::new(DEV_KEY.as_bytes()).unwrap_or_else(|_| unreachable!())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scylla_needs_a_key_embedded_falls_back_to_the_dev_key() {
        let err = resolve(Backend::Scylla, None, None).unwrap_err();
        assert!(err.contains(DOCUMENT_KEY_ENV), "{err}");
        assert!(resolve(Backend::Scylla, Some("  "), None).is_err());
        let (p, source) = resolve(Backend::Embedded, None, None).unwrap();
        assert_eq!(source, KeySource::Development);
        assert_eq!(
            p.pseudonym("52998224725"),
            dev_pseudonymizer().pseudonym("52998224725")
        );
        let (p, source) = resolve(
            Backend::Scylla,
            Some("a production key of some length"),
            None,
        )
        .unwrap();
        assert_eq!(source, KeySource::Environment);
        assert_ne!(
            p.pseudonym("52998224725"),
            dev_pseudonymizer().pseudonym("52998224725")
        );
    }

    #[test]
    fn short_keys_and_a_lone_previous_key_are_refused() {
        let err = resolve(Backend::Embedded, Some("short"), None).unwrap_err();
        assert!(err.contains("at least 16"), "{err}");
        assert!(!err.contains("short"), "the key is not echoed: {err}");
        assert!(resolve(Backend::Embedded, None, Some("an old key, long enough")).is_err());
        let err = resolve(
            Backend::Scylla,
            Some("a production key of some length"),
            Some("tiny"),
        )
        .unwrap_err();
        assert!(err.contains(DOCUMENT_KEY_PREVIOUS_ENV), "{err}");
    }

    #[test]
    fn a_previous_key_makes_a_rotating_pseudonymizer() {
        let (p, _) = resolve(
            Backend::Scylla,
            Some("the new key, long enough"),
            Some("the old key, long enough"),
        )
        .unwrap();
        assert!(p.is_rotating());
        let (same, _) = resolve(
            Backend::Scylla,
            Some("the new key, long enough"),
            Some("the new key, long enough"),
        )
        .unwrap();
        assert!(!same.is_rotating(), "previous = current is no rotation");
    }
}
