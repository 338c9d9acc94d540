//! Documents at rest: a keyed hash (HMAC-SHA256) in place of the CPF/CNPJ.
//!
//! The risk-scoring state (blacklist, per-payer behaviour, known payees) is keyed by payer and
//! payee documents. A plain hash of an 11-digit CPF is reversed by brute force in seconds (there
//! are only 10⁹ base numbers), so the stores keep [`Pseudonymizer::pseudonym`] instead: the
//! HMAC-SHA256 of the [`normalize`]d document under a secret key, as 64 lowercase hex
//! characters. Without the key the pseudonym cannot be tested against candidate documents.
//!
//! The key is a parameter: the processors never read the environment. The runtime builds the
//! [`Pseudonymizer`] from `FLUXO_DOCUMENT_KEY` (and, while rotating, `FLUXO_DOCUMENT_KEY_PREVIOUS`).
//!
//! # Rotation
//! A pseudonymizer may carry a previous key. Lookups that miss under the current key are retried
//! under the previous one; an entry found there is re-keyed (written under the current
//! pseudonym, deleted under the old one) at the next flush. A rebuild by replay writes everything
//! under the current key at once.

use super::documents::normalize;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The keyed hash of one document.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pseudonym([u8; 32]);

impl Pseudonym {
    /// 64 lowercase hex characters: the key of the document in the state tables.
    pub fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    /// The first 8 bytes, big-endian: the compact form kept in lists (known payees).
    pub fn short(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonym({})", &self.hex()[..12])
    }
}

/// Shortest key accepted by [`Pseudonymizer::new`] (bytes).
pub const MIN_KEY_LEN: usize = 16;

/// Why a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Shorter than [`MIN_KEY_LEN`] bytes.
    #[error("the document key has {0} bytes, at least {MIN_KEY_LEN} are needed")]
    TooShort(usize),
}

/// Computes document pseudonyms under a current key and, while rotating, a previous one.
/// `Debug` never shows the keys.
#[derive(Clone)]
pub struct Pseudonymizer {
    current: HmacSha256,
    previous: Option<HmacSha256>,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("rotating", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

fn mac(key: &[u8]) -> Result<HmacSha256, KeyError> {
    if key.len() < MIN_KEY_LEN {
        return Err(KeyError::TooShort(key.len()));
    }
    // HMAC accepts keys of any length; the check above is our own policy.
    HmacSha256::new_from_slice(key).map_err(|_| KeyError::TooShort(key.len()))
}

fn hash(mac: &HmacSha256, document: &str) -> Pseudonym {
    let mut m = mac.clone();
    m.update(normalize(document).as_bytes());
    Pseudonym(m.finalize().into_bytes().into())
}

impl Pseudonymizer {
    /// A pseudonymizer under `key` (at least [`MIN_KEY_LEN`] bytes).
    ///
    /// # Errors
    /// [`KeyError::TooShort`] for a shorter key.
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        Ok(Self {
            current: mac(key)?,
            previous: None,
        })
    }

    /// The same, also trying `previous` for entries not yet re-keyed (see the module docs).
    ///
    /// # Errors
    /// [`KeyError::TooShort`] for a short previous key.
    pub fn with_previous(mut self, previous: &[u8]) -> Result<Self, KeyError> {
        self.previous = Some(mac(previous)?);
        Ok(self)
    }

    /// Whether a previous key is set.
    pub fn is_rotating(&self) -> bool {
        self.previous.is_some()
    }

    /// The pseudonym of `document` under the current key. The document is [`normalize`]d first,
    /// so `529.982.247-25` and `52998224725` have the same pseudonym.
    pub fn pseudonym(&self, document: &str) -> Pseudonym {
        hash(&self.current, document)
    }

    /// The pseudonym of `document` under the previous key, while rotating.
    pub fn previous_pseudonym(&self, document: &str) -> Option<Pseudonym> {
        self.previous.as_ref().map(|m| hash(m, document))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef-test-key";

    #[test]
    fn same_document_same_pseudonym() {
        let p = Pseudonymizer::new(KEY).unwrap();
        assert_eq!(p.pseudonym("52998224725"), p.pseudonym("52998224725"));
        assert_eq!(
            p.pseudonym("52998224725"),
            Pseudonymizer::new(KEY).unwrap().pseudonym("52998224725")
        );
        assert_ne!(p.pseudonym("52998224725"), p.pseudonym("11144477735"));
    }

    #[test]
    fn formatted_and_unformatted_cpf_and_cnpj_are_equal() {
        let p = Pseudonymizer::new(KEY).unwrap();
        let plain = p.pseudonym("52998224725");
        for raw in ["529.982.247-25", " 529 982 247 25 ", "529982247-25"] {
            assert_eq!(p.pseudonym(raw), plain, "{raw}");
        }
        assert_eq!(
            p.pseudonym("11.222.333/0001-81"),
            p.pseudonym("11222333000181")
        );
    }

    #[test]
    fn different_key_different_pseudonym() {
        let a = Pseudonymizer::new(KEY).unwrap();
        let b = Pseudonymizer::new(b"another key of enough length").unwrap();
        assert_ne!(a.pseudonym("52998224725"), b.pseudonym("52998224725"));
        assert_ne!(
            a.pseudonym("52998224725").short(),
            b.pseudonym("52998224725").short()
        );
    }

    #[test]
    fn is_hmac_sha256_as_hex_without_the_digits() {
        let p = Pseudonymizer::new(KEY).unwrap();
        let h = p.pseudonym("529.982.247-25").hex();
        assert_eq!(h.len(), 64);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(!h.contains("52998224725"));
        // The HMAC itself, checked against an independent computation.
        let mut m = HmacSha256::new_from_slice(KEY).unwrap();
        m.update(b"52998224725");
        let want: [u8; 32] = m.finalize().into_bytes().into();
        assert_eq!(p.pseudonym("52998224725"), Pseudonym(want));
    }

    #[test]
    fn short_keys_are_refused_and_debug_hides_keys() {
        assert_eq!(
            Pseudonymizer::new(b"short").unwrap_err(),
            KeyError::TooShort(5)
        );
        let p = Pseudonymizer::new(KEY)
            .unwrap()
            .with_previous(b"the previous key, long enough")
            .unwrap();
        let dbg = format!("{p:?}");
        assert!(
            !dbg.contains("test-key") && !dbg.contains("previous key"),
            "{dbg}"
        );
        assert!(p.is_rotating());
        assert_ne!(
            p.previous_pseudonym("52998224725"),
            Some(p.pseudonym("52998224725"))
        );
    }
}
