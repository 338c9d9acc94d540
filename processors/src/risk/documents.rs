//! Brazilian taxpayer documents: CPF (people, 11 digits) and CNPJ (companies, 14 digits).
//!
//! - [`normalize`] strips the usual punctuation (`.`, `-`, `/`) and whitespace, so
//!   `123.456.789-09`, `123456789-09` and `12345678909` are the same document.
//! - [`validate`] / [`Document::parse`] check the shape (only digits, 11 or 14 of them, not all
//!   the same digit) and both check digits (modulo 11, the Receita Federal algorithm).
//! - [`mask`] renders a document for humans and logs without revealing it: a CPF becomes
//!   `***.456.789-**`, a CNPJ `**.345.678/0001-**`; anything else shows at most three middle
//!   digits (see [`mask`]). [`redact_documents`] applies the same masking to every
//!   document-looking run of digits inside free text (blacklist reasons, validator messages).
//! - [`generate_cpf`] / [`generate_cnpj`] compute the check digits for given base digits; the
//!   simulator uses them to make valid documents deterministically.
//!
//! [`Document`] holds validated digits; its `Debug` output is masked, so it is safe in logs.
//! [`DocumentError`] never contains the document.
//!
//! The alphanumeric CNPJ announced for 2026 is not accepted yet: a CNPJ must be 14 digits.

use std::fmt;

/// Kind of a taxpayer document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    /// Cadastro de Pessoas Físicas: 9 base digits + 2 check digits.
    Cpf,
    /// Cadastro Nacional da Pessoa Jurídica: 8 root + 4 branch digits + 2 check digits.
    Cnpj,
}

impl DocumentKind {
    /// `"CPF"` or `"CNPJ"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Cpf => "CPF",
            DocumentKind::Cnpj => "CNPJ",
        }
    }

    /// Number of digits of this kind of document.
    pub fn digit_count(self) -> usize {
        match self {
            DocumentKind::Cpf => CPF_LEN,
            DocumentKind::Cnpj => CNPJ_LEN,
        }
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Digits in a CPF.
pub const CPF_LEN: usize = 11;
/// Digits in a CNPJ.
pub const CNPJ_LEN: usize = 14;

/// Why a document is not a valid CPF or CNPJ. The message never contains the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Nothing left after removing punctuation.
    #[error("is empty")]
    Empty,
    /// A character other than a digit, `.`, `-`, `/` or whitespace.
    #[error("contains a character that is not a digit")]
    NotDigits,
    /// Neither 11 (CPF) nor 14 (CNPJ) digits.
    #[error("has {0} digits, expected 11 (CPF) or 14 (CNPJ)")]
    WrongLength(usize),
    /// All digits equal (`111.111.111-11`): passes the arithmetic but is never issued.
    #[error("is a repeated-digit sequence")]
    RepeatedDigits(DocumentKind),
    /// The check digits do not match the base digits.
    #[error("has wrong {0} check digits")]
    CheckDigits(DocumentKind),
}

impl DocumentError {
    /// The kind the document looked like, when its length said so.
    pub fn kind(self) -> Option<DocumentKind> {
        match self {
            DocumentError::RepeatedDigits(k) | DocumentError::CheckDigits(k) => Some(k),
            _ => None,
        }
    }
}

/// `true` for the characters [`normalize`] removes.
fn is_punctuation(c: char) -> bool {
    matches!(c, '.' | '-' | '/') || c.is_whitespace()
}

/// The document without `.`, `-`, `/` and whitespace. Other characters are kept, so that
/// [`validate`] can reject them.
pub fn normalize(document: &str) -> String {
    document.chars().filter(|c| !is_punctuation(*c)).collect()
}

/// A validated CPF or CNPJ, digits only. `Debug` and `Display` are masked.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Document {
    kind: DocumentKind,
    digits: String,
}

impl Document {
    /// Normalize and validate `raw`.
    ///
    /// # Errors
    /// A [`DocumentError`] saying what is wrong (never the document itself).
    pub fn parse(raw: &str) -> Result<Self, DocumentError> {
        let digits = normalize(raw);
        let kind = validate_digits(&digits)?;
        Ok(Self { kind, digits })
    }

    /// CPF or CNPJ.
    pub fn kind(&self) -> DocumentKind {
        self.kind
    }

    /// The digits in clear. Use for keys and lookups only, never for text.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The masked rendering, see [`mask`].
    pub fn masked(&self) -> String {
        mask(&self.digits)
    }
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.kind, self.masked())
    }
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Whether `raw` is a valid CPF or CNPJ, and which.
///
/// # Errors
/// A [`DocumentError`] saying what is wrong: non-digits, wrong length, a repeated-digit
/// sequence or wrong check digits.
pub fn validate(raw: &str) -> Result<DocumentKind, DocumentError> {
    validate_digits(&normalize(raw))
}

/// [`validate`] for an already normalized document.
fn validate_digits(digits: &str) -> Result<DocumentKind, DocumentError> {
    if digits.is_empty() {
        return Err(DocumentError::Empty);
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DocumentError::NotDigits);
    }
    let d: Vec<u8> = digits.bytes().map(|b| b - b'0').collect();
    let kind = match d.len() {
        CPF_LEN => DocumentKind::Cpf,
        CNPJ_LEN => DocumentKind::Cnpj,
        n => return Err(DocumentError::WrongLength(n)),
    };
    if d.iter().all(|x| *x == d[0]) {
        return Err(DocumentError::RepeatedDigits(kind));
    }
    let base = d.len() - 2;
    let (c1, c2) = check_digits(kind, &d[..base]);
    if d[base] != c1 || d[base + 1] != c2 {
        return Err(DocumentError::CheckDigits(kind));
    }
    Ok(kind)
}

/// CNPJ weights for the first check digit (12 base digits); the second uses `6` followed by
/// these.
const CNPJ_WEIGHTS: [u32; 12] = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2];

/// Modulo-11 check digit: remainder below 2 gives 0, otherwise `11 - remainder`.
fn mod11(sum: u32) -> u8 {
    let r = sum % 11;
    if r < 2 {
        0
    } else {
        // r is in 2..=10, so the result is in 1..=9.
        (11 - r) as u8
    }
}

/// Both check digits for `base` (9 digits for a CPF, 12 for a CNPJ), each digit 0..=9.
fn check_digits(kind: DocumentKind, base: &[u8]) -> (u8, u8) {
    match kind {
        DocumentKind::Cpf => {
            // Weights 10..2 for the first digit, 11..2 for the second (over base + first).
            let s1: u32 = base
                .iter()
                .zip((2..=10).rev())
                .map(|(d, w)| u32::from(*d) * w)
                .sum();
            let c1 = mod11(s1);
            let s2: u32 = base
                .iter()
                .chain(std::iter::once(&c1))
                .zip((2..=11).rev())
                .map(|(d, w)| u32::from(*d) * w)
                .sum();
            (c1, mod11(s2))
        }
        DocumentKind::Cnpj => {
            let s1: u32 = base
                .iter()
                .zip(CNPJ_WEIGHTS)
                .map(|(d, w)| u32::from(*d) * w)
                .sum();
            let c1 = mod11(s1);
            let s2: u32 = base
                .iter()
                .chain(std::iter::once(&c1))
                .zip(std::iter::once(6).chain(CNPJ_WEIGHTS))
                .map(|(d, w)| u32::from(*d) * w)
                .sum();
            (c1, mod11(s2))
        }
    }
}

/// The `n` lowest decimal digits of `value`, most significant first (zero padded).
fn base_digits(mut value: u64, n: usize) -> Vec<u8> {
    let mut d = vec![0u8; n];
    for slot in d.iter_mut().rev() {
        // value % 10 < 10, so the cast is lossless.
        *slot = (value % 10) as u8;
        value /= 10;
    }
    d
}

/// Base digits plus check digits, as a digit string. A base whose digits are all equal would
/// give a repeated-digit document (rejected by [`validate`]), so its last digit is bumped.
fn complete(kind: DocumentKind, mut base: Vec<u8>) -> String {
    if base.iter().all(|x| *x == base[0]) {
        if let Some(last) = base.last_mut() {
            *last = (*last + 1) % 10;
        }
    }
    let (c1, c2) = check_digits(kind, &base);
    base.push(c1);
    base.push(c2);
    base.into_iter().map(|d| char::from(b'0' + d)).collect()
}

/// A valid CPF (11 digits, no punctuation) whose 9 base digits are the lowest 9 decimal digits
/// of `base` (zero padded). If those digits are all equal the last one is incremented (mod 10)
/// so the result always passes [`validate`]. Deterministic: same `base`, same CPF.
pub fn generate_cpf(base: u64) -> String {
    complete(DocumentKind::Cpf, base_digits(base, 9))
}

/// A valid CNPJ (14 digits, no punctuation): root = lowest 8 decimal digits of `root`, branch =
/// lowest 4 of `branch` (`1` gives the head office `0001`), then the check digits. If all 12
/// base digits are equal the last is incremented (mod 10).
pub fn generate_cnpj(root: u64, branch: u16) -> String {
    let mut base = base_digits(root, 8);
    base.extend(base_digits(u64::from(branch), 4));
    complete(DocumentKind::Cnpj, base)
}

/// The conventional punctuation of an 11-digit CPF (`123.456.789-09`) or 14-digit CNPJ
/// (`12.345.678/0001-95`); `None` for anything else. The result is in clear: for keys and the
/// simulator, never for logs.
pub fn punctuate(digits: &str) -> Option<String> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All bytes are ASCII digits, so every index below is a char boundary.
    match digits.len() {
        CPF_LEN => Some(format!(
            "{}.{}.{}-{}",
            &digits[0..3],
            &digits[3..6],
            &digits[6..9],
            &digits[9..11]
        )),
        CNPJ_LEN => Some(format!(
            "{}.{}.{}/{}-{}",
            &digits[0..2],
            &digits[2..5],
            &digits[5..8],
            &digits[8..12],
            &digits[12..14]
        )),
        _ => None,
    }
}

/// Longest normalized input [`mask`] renders character by character; longer ones only show
/// their length.
const MASK_MAX_LEN: usize = 20;

/// A document rendered without revealing it.
///
/// After [`normalize`]:
/// - 11 digits (a CPF shape, valid or not): `***.456.789-**` (the first three and the check
///   digits hidden).
/// - 14 digits (a CNPJ shape): `**.345.678/0001-**` (the first two and the check digits hidden).
/// - anything else up to 20 characters: one `*` per character, except that when it has at least
///   9 characters the three middle ones are shown if they are digits (`*****567****`);
///   non-digits are never shown.
/// - longer than 20 characters: `*(N chars)`.
pub fn mask(document: &str) -> String {
    let n = normalize(document);
    let all_digits = n.bytes().all(|b| b.is_ascii_digit());
    if all_digits && n.len() == CPF_LEN {
        // ASCII digits only, so byte indices are char boundaries.
        return format!("***.{}.{}-**", &n[3..6], &n[6..9]);
    }
    if all_digits && n.len() == CNPJ_LEN {
        return format!("**.{}.{}/{}-**", &n[2..5], &n[5..8], &n[8..12]);
    }
    let chars: Vec<char> = n.chars().collect();
    let len = chars.len();
    if len > MASK_MAX_LEN {
        return format!("*({len} chars)");
    }
    let shown = (len >= 9).then(|| {
        let mid = len / 2;
        (mid - 1)..=(mid + 1)
    });
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if shown.as_ref().is_some_and(|r| r.contains(&i)) && c.is_ascii_digit() {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

/// Fewest digits in a run [`redact_documents`] masks.
const REDACT_MIN_DIGITS: usize = 9;

/// `text` with every run of at least 9 digits (punctuation `.`, `-`, `/` and single spaces
/// allowed inside the run) replaced by its [`mask`]. Used on free text that comes from outside
/// (blacklist reasons, external validator messages) before it goes into a reason text.
pub fn redact_documents(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // A run starts at a digit and extends over digits and punctuation followed by a digit.
        let start = i;
        let mut end = i; // one past the last digit of the run
        let mut digits = 0;
        let mut j = i;
        while j < chars.len() {
            let c = chars[j];
            if c.is_ascii_digit() {
                digits += 1;
                j += 1;
                end = j;
            } else if matches!(c, '.' | '-' | '/' | ' ')
                && chars.get(j + 1).is_some_and(|n| n.is_ascii_digit())
            {
                j += 1;
            } else {
                break;
            }
        }
        let run: String = chars[start..end].iter().collect();
        if digits >= REDACT_MIN_DIGITS {
            out.push_str(&mask(&run));
        } else {
            out.push_str(&run);
        }
        i = end;
    }
    out
}

/// A stable 64-bit FNV-1a hash of `bytes` (used to remember payees without storing documents).
/// Stable across builds and platforms, unlike `std`'s `DefaultHasher`.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_cpfs_with_and_without_punctuation() {
        for raw in [
            "529.982.247-25",
            "52998224725",
            " 529 982 247 25 ",
            "529982247-25",
            "111.444.777-35",
            "123.456.789-09",
            "000.000.001-91",
        ] {
            assert_eq!(validate(raw), Ok(DocumentKind::Cpf), "{raw}");
        }
    }

    #[test]
    fn valid_cnpjs_with_and_without_punctuation() {
        for raw in [
            "11.222.333/0001-81",
            "11222333000181",
            "11.444.777/0001-61",
            "45.723.174/0001-10",
            "12.345.678/0001-95",
        ] {
            assert_eq!(validate(raw), Ok(DocumentKind::Cnpj), "{raw}");
        }
    }

    #[test]
    fn invalid_documents_say_why() {
        let cases = [
            (
                "529.982.247-26",
                DocumentError::CheckDigits(DocumentKind::Cpf),
            ),
            (
                "529.982.247-15",
                DocumentError::CheckDigits(DocumentKind::Cpf),
            ),
            (
                "11.222.333/0001-82",
                DocumentError::CheckDigits(DocumentKind::Cnpj),
            ),
            (
                "11.222.333/0001-71",
                DocumentError::CheckDigits(DocumentKind::Cnpj),
            ),
            ("5299822472", DocumentError::WrongLength(10)),
            ("529982247250", DocumentError::WrongLength(12)),
            ("112223330001810", DocumentError::WrongLength(15)),
            (
                "111.111.111-11",
                DocumentError::RepeatedDigits(DocumentKind::Cpf),
            ),
            (
                "000.000.000-00",
                DocumentError::RepeatedDigits(DocumentKind::Cpf),
            ),
            (
                "99999999999",
                DocumentError::RepeatedDigits(DocumentKind::Cpf),
            ),
            (
                "00.000.000/0000-00",
                DocumentError::RepeatedDigits(DocumentKind::Cnpj),
            ),
            ("529.982.247-2X", DocumentError::NotDigits),
            ("52998224725a", DocumentError::NotDigits),
            ("", DocumentError::Empty),
            (" .-/ ", DocumentError::Empty),
        ];
        for (raw, err) in cases {
            assert_eq!(validate(raw), Err(err), "{raw}");
        }
    }

    #[test]
    fn error_messages_never_contain_the_document() {
        for raw in ["52998224726", "5299822472", "11111111111", "11222333000182"] {
            let msg = validate(raw).unwrap_err().to_string();
            assert!(!msg.contains(&raw[..9]), "{msg}");
        }
        assert_eq!(
            DocumentError::WrongLength(10).to_string(),
            "has 10 digits, expected 11 (CPF) or 14 (CNPJ)"
        );
        assert_eq!(
            DocumentError::CheckDigits(DocumentKind::Cpf).to_string(),
            "has wrong CPF check digits"
        );
    }

    #[test]
    fn normalize_strips_punctuation_only() {
        assert_eq!(normalize("529.982.247-25"), "52998224725");
        assert_eq!(normalize("11.222.333/0001-81"), "11222333000181");
        assert_eq!(normalize(" 1 2\t3 "), "123");
        assert_eq!(normalize("12a-3"), "12a3");
    }

    #[test]
    fn masks() {
        assert_eq!(mask("123.456.789-09"), "***.456.789-**");
        assert_eq!(mask("12345678909"), "***.456.789-**");
        // The shape decides, not the validity.
        assert_eq!(mask("12345678900"), "***.456.789-**");
        assert_eq!(mask("12.345.678/0001-95"), "**.345.678/0001-**");
        assert_eq!(mask("12345678000195"), "**.345.678/0001-**");
        assert_eq!(mask("1234567890"), "****567***");
        assert_eq!(mask("123456789012"), "*****678****");
        assert_eq!(mask("12345678"), "********");
        assert_eq!(mask("abcdefghijk"), "***********");
        assert_eq!(mask("1234a678901"), "*****67****");
        assert_eq!(mask(""), "");
        assert_eq!(mask(&"9".repeat(40)), "*(40 chars)");
    }

    #[test]
    fn document_debug_and_display_are_masked() {
        let d = Document::parse("529.982.247-25").unwrap();
        assert_eq!(d.digits(), "52998224725");
        assert_eq!(d.kind(), DocumentKind::Cpf);
        assert_eq!(format!("{d:?}"), "CPF(***.982.247-**)");
        assert_eq!(d.to_string(), "***.982.247-**");
    }

    #[test]
    fn generators_make_valid_documents() {
        assert_eq!(generate_cpf(529_982_247), "52998224725");
        assert_eq!(generate_cpf(123_456_789), "12345678909");
        assert_eq!(generate_cpf(1), "00000000191");
        // All-equal bases are bumped: 000000000 -> 000000001.
        assert_eq!(generate_cpf(0), "00000000191");
        assert_eq!(generate_cpf(111_111_111), generate_cpf(111_111_112));
        assert_eq!(generate_cnpj(11_222_333, 1), "11222333000181");
        assert_eq!(generate_cnpj(12_345_678, 1), "12345678000195");
        for seed in 0..2_000u64 {
            let cpf = generate_cpf(seed.wrapping_mul(2_654_435_761));
            assert_eq!(validate(&cpf), Ok(DocumentKind::Cpf), "{cpf}");
            let cnpj = generate_cnpj(seed.wrapping_mul(40_503), (seed % 7) as u16);
            assert_eq!(validate(&cnpj), Ok(DocumentKind::Cnpj), "{cnpj}");
        }
    }

    #[test]
    fn punctuation_round_trips() {
        assert_eq!(punctuate("52998224725").as_deref(), Some("529.982.247-25"));
        assert_eq!(
            punctuate("11222333000181").as_deref(),
            Some("11.222.333/0001-81")
        );
        assert_eq!(punctuate("123"), None);
        assert_eq!(punctuate("5299822472a"), None);
    }

    #[test]
    fn redaction_masks_document_runs_in_text() {
        assert_eq!(
            redact_documents("fraud by 529.982.247-25 and 11222333000181, case 12345"),
            "fraud by ***.982.247-** and **.222.333/0001-**, case 12345"
        );
        assert_eq!(
            redact_documents("cpf 529 982 247 25."),
            "cpf ***.982.247-**."
        );
        assert_eq!(redact_documents("2024-01-02 report"), "2024-01-02 report");
        assert_eq!(redact_documents("id 123456789"), "id ***456***");
        assert_eq!(redact_documents("sem documento"), "sem documento");
    }

    #[test]
    fn stable_hash_is_fnv1a() {
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(stable_hash(b"52998224725"), stable_hash(b"52998224724"));
    }
}
