//! Keeping documents (CPF, CNPJ) out of what the console shows.
//!
//! Three layers, because a document can hide in several places of a record:
//! - a JSON field whose name says it is a document (`document`, `payer_document`, ...) is
//!   rendered with [`fluxo_processors::risk::documents::mask`], whatever its shape;
//! - any text (other string fields, record keys, dead-letter details) has every run that looks
//!   like a document, 11 or more digits possibly punctuated with `.`, `-`, `/` or spaces, masked
//!   the same way ([`text`]);
//! - raw bytes (a dead letter's payload preview) have the digits of such runs replaced by `*`
//!   before they are rendered as hex or base64 ([`bytes`]), so decoding the preview does not
//!   give the document back either.
//!
//! False positives (a long account number, an epoch in milliseconds inside a free text) are
//! masked too: for a console, hiding too much is the safe side.

use fluxo_processors::risk::documents::mask;
use serde_json::Value;

/// Fewest digits of a run that is masked (a CPF has 11, a CNPJ 14).
const MIN_DIGITS: usize = 11;

fn is_punct(b: u8) -> bool {
    matches!(b, b'.' | b'-' | b'/' | b' ')
}

/// The byte ranges of `input` that look like documents: maximal runs of digits and
/// punctuation, trimmed of punctuation at both ends, holding at least [`MIN_DIGITS`] digits.
/// With `standalone`, only runs that are words of their own (no letter or digit right before
/// or after), so that the digits inside an id such as a UUID are left alone.
fn document_runs(input: &[u8], standalone: bool) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < input.len() {
        if !input[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i;
        let mut digits = 0;
        while i < input.len() && (input[i].is_ascii_digit() || is_punct(input[i])) {
            if input[i].is_ascii_digit() {
                digits += 1;
                end = i + 1;
            }
            i += 1;
        }
        let alone = (start == 0 || !input[start - 1].is_ascii_alphanumeric())
            && input.get(end).is_none_or(|b| !b.is_ascii_alphanumeric());
        if digits >= MIN_DIGITS && (alone || !standalone) {
            runs.push(start..end);
        }
    }
    runs
}

/// `input` with every document-like word masked.
pub fn text(input: &str) -> String {
    let runs = document_runs(input.as_bytes(), true);
    if runs.is_empty() {
        return input.to_string();
    }
    let mut out = String::with_capacity(input.len());
    let mut last = 0;
    for r in runs {
        // Runs are ASCII, so their bounds are char boundaries.
        out.push_str(&input[last..r.start]);
        out.push_str(&mask(&input[r.clone()]));
        last = r.end;
    }
    out.push_str(&input[last..]);
    out
}

/// `input` with the digits of every document-like run replaced by `*` (same length, so offsets
/// in a hex preview stay meaningful). Any run counts, word or not: in binary Avro a length
/// byte may be a letter.
pub fn bytes(input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for r in document_runs(input, false) {
        for b in &mut out[r] {
            if b.is_ascii_digit() {
                *b = b'*';
            }
        }
    }
    out
}

/// Whether a field of this name holds a document.
pub fn is_document_field(name: &str) -> bool {
    name.to_ascii_lowercase().contains("document")
}

/// A decimal number as Avro decimals render (`364981.96400000`): a price or an amount, not a
/// document (which has no single decimal point followed by digits only).
fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    s.split_once('.').is_some_and(|(int, frac)| {
        !int.is_empty()
            && !frac.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `value` with documents masked: fields named as documents through [`mask`], every other
/// string but decimal numbers through [`text`].
pub fn json(value: Value) -> Value {
    match value {
        Value::String(s) if is_decimal(&s) => Value::String(s),
        Value::String(s) => Value::String(text(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(json).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) if is_document_field(&k) => Value::String(mask(&s)),
                        other => json(other),
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_masks_cpf_and_cnpj_in_any_punctuation() {
        assert_eq!(
            text("payer 52998224725 blocked"),
            "payer ***.982.247-** blocked"
        );
        assert_eq!(text("529.982.247-25"), "***.982.247-**");
        assert_eq!(
            text("11.222.333/0001-81, again"),
            "**.222.333/0001-**, again"
        );
        // Short numbers, dates and amounts stay.
        assert_eq!(
            text("offset 1234 on 2026-01-01 for 1250.00"),
            "offset 1234 on 2026-01-01 for 1250.00"
        );
        assert!(!text("x 52998224725").contains("52998224725"));
        assert_eq!(text("ACC-52998224725"), "ACC-***.982.247-**");
        // Digits inside a word (a UUID, an id) are not a document.
        let uuid = "7925ce94-3a80-409e-bf70-025925890123";
        assert_eq!(text(uuid), uuid);
    }

    #[test]
    fn decimals_stay_documents_do_not() {
        let v = json(
            json!({"price": "364981.96400000", "amount": "-52998224725.00",
                            "note": "52998224725", "cnpj": "11.222.333/0001-81"}),
        );
        assert_eq!(v["price"], "364981.96400000");
        assert_eq!(v["amount"], "-52998224725.00");
        assert_eq!(v["note"], "***.982.247-**");
        assert_eq!(v["cnpj"], "**.222.333/0001-**");
    }

    #[test]
    fn bytes_hide_the_digits_of_documents_only() {
        let raw = b"\x00\x16529.982.247-25\x02ok 42";
        let out = bytes(raw);
        assert_eq!(out.len(), raw.len());
        assert!(!String::from_utf8_lossy(&out).contains("982"));
        assert!(out.ends_with(b"\x02ok 42"));
    }

    #[test]
    fn json_masks_document_fields_of_any_shape_and_nested_text() {
        let v = json(json!({
            "payer_document": "123",
            "document": "52998224725",
            "payee_document": "11222333000181",
            "description": "refund to 52998224725",
            "amount": "10.00",
            "reasons": [{"text": "payer 11.222.333/0001-81 listed"}]
        }));
        let s = v.to_string();
        for clear in [
            "52998224725",
            "11222333000181",
            "222.333/0001-81",
            "\"123\"",
        ] {
            assert!(!s.contains(clear), "{clear} in {s}");
        }
        assert_eq!(v["amount"], "10.00");
        assert_eq!(v["document"], "***.982.247-**");
    }
}
