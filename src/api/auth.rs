//! Bearer-token (JWT) authentication of the query API.
//!
//! One key, one algorithm:
//! - `FLUXO_JWT_SECRET`: an HMAC secret (at least 32 bytes), tokens signed HS256;
//! - `FLUXO_JWT_PUBLIC_KEY`: the path of a PEM public key; an RSA key means RS256, an EC P-256
//!   key ES256 (any other key is refused at startup).
//!
//! Optional `FLUXO_JWT_AUDIENCE` / `FLUXO_JWT_ISSUER` (comma-separated) require the token's `aud`
//! / `iss` to match. Every token must carry `exp`, checked with [`LEEWAY_SECS`] of clock skew; a
//! token with an `nbf` further ahead than the leeway is not valid yet and refused; a token
//! longer than [`MAX_TOKEN_BYTES`] is refused before it is decoded; a token in any other algorithm than the configured one is refused (no `alg` confusion: an RS256
//! server never accepts an HS256 token signed with its public key).
//!
//! [`Auth::development`] makes a random secret for `fluxo up` when neither variable is set, and
//! [`Auth::dev_token`] mints a token to print. Every failure is answered alike by the middleware:
//! 401, `{"error":"unauthorized"}`, `WWW-Authenticate: Bearer`, and no hint of what was wrong.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Environment variable holding the HS256 secret.
pub const SECRET_ENV: &str = "FLUXO_JWT_SECRET";
/// Environment variable holding the path of the RS256/ES256 public key (PEM).
pub const PUBLIC_KEY_ENV: &str = "FLUXO_JWT_PUBLIC_KEY";
/// Optional environment variable: accepted audiences, comma-separated.
pub const AUDIENCE_ENV: &str = "FLUXO_JWT_AUDIENCE";
/// Optional environment variable: accepted issuers, comma-separated.
pub const ISSUER_ENV: &str = "FLUXO_JWT_ISSUER";
/// Clock skew tolerated on `exp` (and `nbf` when present), in seconds.
pub const LEEWAY_SECS: u64 = 5;
/// Longest accepted token, in bytes: refused before any base64 or JSON decoding so a huge
/// header cannot make the server work (real tokens are a few hundred bytes).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Shortest accepted HS256 secret, in bytes (RFC 7518 §3.2: a key as long as the hash).
pub const MIN_SECRET_LEN: usize = 32;

/// Why authentication could not be configured, or a token not minted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The settings are contradictory or too weak.
    #[error("{0}")]
    Config(String),
    /// The public key file cannot be read or is not a usable RSA / EC P-256 public key.
    #[error("JWT public key {path}: {reason}")]
    Key {
        /// The file given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Only a public key is configured: this process cannot sign tokens.
    #[error("cannot mint a token: only a public key is configured")]
    CannotMint,
    /// Signing failed.
    #[error("cannot mint a token: {0}")]
    Sign(String),
}

/// How tokens are verified (and, with a secret, minted).
pub struct Auth {
    algorithm: Algorithm,
    decoding: DecodingKey,
    validation: Validation,
    /// The signing key, when the secret is known (HS256).
    encoding: Option<EncodingKey>,
    /// The secret of [`Auth::development`], kept to be shown to the developer.
    dev_secret: Option<String>,
    /// The first accepted audience and issuer, put in minted tokens so they pass [`Auth::verify`].
    mint_aud: Option<String>,
    mint_iss: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("algorithm", &self.algorithm)
            .field("development", &self.dev_secret.is_some())
            .finish_non_exhaustive()
    }
}

/// The claims a minted token carries.
#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    iat: u64,
    exp: u64,
}

fn validation(algorithm: Algorithm) -> Validation {
    let mut v = Validation::new(algorithm);
    v.leeway = LEEWAY_SECS;
    v.validate_exp = true;
    // Off by default in jsonwebtoken: a token minted for later must not work now.
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp"]);
    v
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Auth {
    /// Read the settings from the environment ([`SECRET_ENV`], [`PUBLIC_KEY_ENV`],
    /// [`AUDIENCE_ENV`], [`ISSUER_ENV`]). `Ok(None)` when neither a secret nor a key is set:
    /// the caller decides between [`Auth::development`] (`fluxo up`) and refusing to start.
    ///
    /// # Errors
    /// An [`AuthError`] when both are set, the secret is too short, or the key is unusable.
    pub fn from_env() -> Result<Option<Self>, AuthError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let auth = Self::from_settings(var(SECRET_ENV).as_deref(), var(PUBLIC_KEY_ENV).as_deref())?;
        Ok(auth.map(|a| {
            let a = match var(AUDIENCE_ENV) {
                Some(aud) => a.with_audience(&list(&aud)),
                None => a,
            };
            match var(ISSUER_ENV) {
                Some(iss) => a.with_issuer(&list(&iss)),
                None => a,
            }
        }))
    }

    /// [`Auth::from_env`] with the two values given: a secret, or the path of a public key.
    ///
    /// # Errors
    /// An [`AuthError`] when both are given, the secret is too short, or the key is unusable.
    pub fn from_settings(
        secret: Option<&str>,
        public_key_path: Option<&str>,
    ) -> Result<Option<Self>, AuthError> {
        match (secret, public_key_path) {
            (Some(_), Some(_)) => Err(AuthError::Config(format!(
                "set only one of {SECRET_ENV} (HS256) and {PUBLIC_KEY_ENV} (RS256/ES256)"
            ))),
            (Some(secret), None) => Self::hs256(secret.as_bytes()).map(Some),
            (None, Some(path)) => Self::from_public_key_file(Path::new(path)).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// HS256 with `secret` (at least [`MIN_SECRET_LEN`] bytes).
    ///
    /// # Errors
    /// [`AuthError::Config`] when the secret is shorter.
    pub fn hs256(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthError::Config(format!(
                "{SECRET_ENV} must be at least {MIN_SECRET_LEN} bytes long (it has {})",
                secret.len()
            )));
        }
        Ok(Self {
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256),
            encoding: Some(EncodingKey::from_secret(secret)),
            dev_secret: None,
            mint_aud: None,
            mint_iss: None,
        })
    }

    /// A development setup: HS256 with a fresh random secret (32 random bytes, base64url), for
    /// `fluxo up` without settings. Mint a token with [`Auth::dev_token`].
    pub fn development() -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Self {
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation: validation(Algorithm::HS256),
            encoding: Some(EncodingKey::from_secret(secret.as_bytes())),
            dev_secret: Some(secret),
            mint_aud: None,
            mint_iss: None,
        }
    }

    /// The public key in the PEM file at `path`: RS256 for an RSA key (PKCS#1 or SPKI), ES256
    /// for an EC P-256 key (SPKI).
    ///
    /// # Errors
    /// [`AuthError::Key`] when the file cannot be read or holds another kind of key.
    pub fn from_public_key_file(path: &Path) -> Result<Self, AuthError> {
        let pem = std::fs::read(path).map_err(|e| AuthError::Key {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_public_key_pem(&pem).map_err(|reason| AuthError::Key {
            path: path.display().to_string(),
            reason,
        })
    }

    /// The PEM public key `pem`, as [`Auth::from_public_key_file`].
    ///
    /// # Errors
    /// Why the key is not usable.
    pub fn from_public_key_pem(pem: &[u8]) -> Result<Self, String> {
        let (algorithm, decoding) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            (Algorithm::RS256, k)
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            (Algorithm::ES256, k)
        } else {
            return Err("not a PEM RSA or EC public key".to_string());
        };
        // Building a verifier parses the key for the algorithm: a P-384 key or a malformed RSA
        // key fails here, at startup, instead of refusing every token later.
        if jsonwebtoken::crypto::verify("AAAA", b"probe", &decoding, algorithm).is_err() {
            return Err(match algorithm {
                Algorithm::ES256 => "EC keys must be on curve P-256 (ES256)".to_string(),
                _ => "the RSA key cannot be used for RS256".to_string(),
            });
        }
        Ok(Self {
            algorithm,
            decoding,
            validation: validation(algorithm),
            encoding: None,
            dev_secret: None,
            mint_aud: None,
            mint_iss: None,
        })
    }

    /// Also require the token's `aud` to be one of `audiences`.
    pub fn with_audience(mut self, audiences: &[String]) -> Self {
        self.validation.set_audience(audiences);
        self.mint_aud = audiences.first().cloned();
        self.validation
            .required_spec_claims
            .insert("aud".to_string());
        self
    }

    /// Also require the token's `iss` to be one of `issuers`.
    pub fn with_issuer(mut self, issuers: &[String]) -> Self {
        self.validation.set_issuer(issuers);
        self.mint_iss = issuers.first().cloned();
        self.validation
            .required_spec_claims
            .insert("iss".to_string());
        self
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The random secret of [`Auth::development`] (set it as `FLUXO_JWT_SECRET` to let
    /// `fluxo serve` accept the same tokens); `None` otherwise.
    pub fn development_secret(&self) -> Option<&str> {
        self.dev_secret.as_deref()
    }

    /// Mint a token valid for `ttl` (subject `fluxo-dev`), to print for the developer.
    ///
    /// # Errors
    /// [`AuthError::CannotMint`] when only a public key is configured.
    pub fn dev_token(&self, ttl: Duration) -> Result<String, AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::CannotMint)?;
        let iat = now_secs();
        let claims = MintedClaims {
            sub: "fluxo-dev",
            aud: self.mint_aud.as_deref(),
            iss: self.mint_iss.as_deref(),
            iat,
            exp: iat.saturating_add(ttl.as_secs()),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }

    /// True when `token` is at most [`MAX_TOKEN_BYTES`] long, signed with the configured key
    /// and algorithm, unexpired, already valid (`nbf`), and matches the configured audience and
    /// issuer.
    pub fn verify(&self, token: &str) -> bool {
        if token.len() > MAX_TOKEN_BYTES {
            return false;
        }
        jsonwebtoken::decode::<serde::de::IgnoredAny>(token, &self.decoding, &self.validation)
            .is_ok()
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_token(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The token of an `Authorization` header value `Bearer <token>` (scheme case-insensitive).
/// Public for the fuzz target `jwt_bearer`.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The 401 every authentication failure gets.
pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        r#"{"error":"unauthorized"}"#,
    )
        .into_response()
}

/// Middleware: let the request through only with a valid bearer token.
pub async fn require_bearer(
    State(auth): State<Arc<Auth>>,
    request: Request,
    next: Next,
) -> Response {
    match bearer(request.headers()) {
        Some(token) if auth.verify(token) => next.run(request).await,
        _ => unauthorized(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/testdata");

    #[test]
    fn dev_tokens_verify_and_secrets_are_random() {
        let a = Auth::development();
        let b = Auth::development();
        assert_ne!(a.development_secret(), b.development_secret());
        assert_eq!(a.development_secret().map(str::len), Some(43));
        let token = a.dev_token(Duration::from_secs(60)).unwrap();
        assert!(a.verify(&token));
        assert!(!b.verify(&token));
        // The secret printed for `fluxo serve` is the same key.
        let same = Auth::hs256(a.development_secret().unwrap().as_bytes()).unwrap();
        assert!(same.verify(&token));
        assert!(!format!("{a:?}").contains(a.development_secret().unwrap()));
    }

    #[test]
    fn settings() {
        assert!(Auth::from_settings(None, None).unwrap().is_none());
        let err = Auth::from_settings(Some(&"s".repeat(32)), Some("/k.pem")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "set only one of FLUXO_JWT_SECRET (HS256) and FLUXO_JWT_PUBLIC_KEY (RS256/ES256)"
        );
        let err = Auth::from_settings(Some("short"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "FLUXO_JWT_SECRET must be at least 32 bytes long (it has 5)"
        );
        let hs = Auth::from_settings(Some(&"s".repeat(32)), None)
            .unwrap()
            .unwrap();
        assert_eq!(hs.algorithm(), Algorithm::HS256);
        let rs = Auth::from_settings(None, Some(&format!("{TESTDATA}/rs256-public.pem")))
            .unwrap()
            .unwrap();
        assert_eq!(rs.algorithm(), Algorithm::RS256);
        assert!(matches!(
            rs.dev_token(Duration::from_secs(1)),
            Err(AuthError::CannotMint)
        ));
        let es =
            Auth::from_public_key_file(Path::new(&format!("{TESTDATA}/es256-public.pem"))).unwrap();
        assert_eq!(es.algorithm(), Algorithm::ES256);
        let err = Auth::from_public_key_file(Path::new(&format!("{TESTDATA}/es384-public.pem")))
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("EC keys must be on curve P-256 (ES256)"),
            "{err}"
        );
        let err =
            Auth::from_public_key_file(Path::new(&format!("{TESTDATA}/README.md"))).unwrap_err();
        assert!(
            err.to_string().ends_with("not a PEM RSA or EC public key"),
            "{err}"
        );
        assert!(Auth::from_public_key_file(Path::new("/nonexistent/k.pem")).is_err());
    }

    #[test]
    fn bearer_header_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
