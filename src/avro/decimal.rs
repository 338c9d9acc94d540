//! The Avro `decimal` logical type.
//!
//! On the wire a decimal is the big-endian two's-complement *unscaled* integer (`value × 10^scale`)
//! in the fewest bytes that hold it: what Java's `BigInteger.toByteArray()` gives, so what the
//! Confluent Java serializers write (zero is one `0x00` byte, `-1` is `0xFF`, `128` is
//! `0x00 0x80`). The scale and precision live in the schema, not in the bytes.
//!
//! Two families of helpers:
//! - [`rust_decimal::Decimal`] ⇄ bytes ([`to_unscaled`], [`unscaled_bytes`], [`from_bytes`]) for
//!   the typed events (at most 28 decimal places and 96 bits, which every fluxo schema respects);
//! - decimal text ⇄ bytes of any size ([`text_to_bytes`], [`bytes_to_text`]) for the generic JSON
//!   conversion, so a schema with `decimal(40, 10)` works too.
//!
//! A value with more decimal places than the scale, or more digits than the precision, is an
//! error: nothing is ever rounded.

use rust_decimal::Decimal;

/// `precision` and `scale` of an Avro `decimal` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalSpec {
    /// Total number of significant digits.
    pub precision: u32,
    /// Digits after the decimal point.
    pub scale: u32,
}

impl DecimalSpec {
    /// `decimal(precision, scale)`.
    pub const fn new(precision: u32, scale: u32) -> Self {
        Self { precision, scale }
    }
}

/// Why a decimal does not fit its `decimal(precision, scale)`, or why bytes are not a decimal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// More decimal places than the scale allows (rounding would lose money).
    #[error("{value} has more than {scale} decimal places")]
    TooManyPlaces {
        /// The value as given.
        value: String,
        /// The schema's scale.
        scale: u32,
    },
    /// More digits than the precision allows.
    #[error("{value} does not fit decimal({precision}, {scale}) (at most {} digits before the decimal point)", precision.saturating_sub(*scale))]
    Precision {
        /// The value as given (or as decoded).
        value: String,
        /// The schema's precision.
        precision: u32,
        /// The schema's scale.
        scale: u32,
    },
    /// Zero bytes: not a two's-complement integer (Java's `new BigInteger(new byte[0])` throws
    /// too).
    #[error("an empty byte string is not a decimal")]
    Empty,
    /// The unscaled value is larger than what `rust_decimal` can hold (96 bits).
    #[error("a {len}-byte unscaled value is too large for a 96-bit decimal")]
    TooLarge {
        /// Number of bytes of the unscaled value.
        len: usize,
    },
    /// The schema's scale exceeds what `rust_decimal` can represent.
    #[error("scale {scale} is not supported (at most 28 decimal places)")]
    UnsupportedScale {
        /// The schema's scale.
        scale: u32,
    },
    /// Text that is not a plain decimal number (`-?digits[.digits]`).
    #[error("expected a decimal number such as \"-1234.56\"")]
    NotANumber,
}

/// Largest scale `rust_decimal` supports.
const MAX_RUST_SCALE: u32 = 28;

/// `10^n` for `n` in `0..=38` (`10^38 < i128::MAX`).
const fn pow10_table() -> [i128; 39] {
    let mut table = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
}
static POW10: [i128; 39] = pow10_table();

/// `10^n`, or `None` beyond `10^38`.
fn pow10(n: u32) -> Option<i128> {
    POW10.get(n as usize).copied()
}

/// Whether `|unscaled|` has at most `precision` digits.
fn within_precision(unscaled: i128, precision: u32) -> bool {
    match pow10(precision) {
        // `unsigned_abs` handles i128::MIN without overflow.
        Some(limit) => unscaled.unsigned_abs() < limit.unsigned_abs(),
        // 39 digits or more: every i128 fits.
        None => true,
    }
}

/// The unscaled integer of `value` at `spec.scale` (`1.5` at scale 2 is `150`). Errors if `value`
/// has more decimal places than the scale (trailing zeros do not count: `1.50` fits scale 1) or
/// more digits than the precision.
pub fn to_unscaled(value: Decimal, spec: DecimalSpec) -> Result<i128, DecimalError> {
    let mantissa = value.mantissa();
    let scale = value.scale();
    let precision_error = || DecimalError::Precision {
        value: value.to_string(),
        precision: spec.precision,
        scale: spec.scale,
    };
    let unscaled = if scale <= spec.scale {
        let factor = pow10(spec.scale - scale).ok_or_else(precision_error)?;
        mantissa.checked_mul(factor).ok_or_else(precision_error)?
    } else {
        // `scale - spec.scale <= 28` because a rust_decimal scale is at most 28.
        let factor = pow10(scale - spec.scale).ok_or_else(precision_error)?;
        if mantissa % factor != 0 {
            return Err(DecimalError::TooManyPlaces {
                value: value.to_string(),
                scale: spec.scale,
            });
        }
        mantissa / factor
    };
    if !within_precision(unscaled, spec.precision) {
        return Err(precision_error());
    }
    Ok(unscaled)
}

/// The minimal big-endian two's-complement bytes of `unscaled`, as `(buffer, start)`: the bytes
/// are `buffer[start..]` (at least one byte).
pub fn unscaled_bytes(unscaled: i128) -> ([u8; 16], usize) {
    let bytes = unscaled.to_be_bytes();
    let mut start = 0;
    // Drop a leading byte while it only repeats the sign of the next one.
    while start < 15 {
        let (lead, next) = (bytes[start], bytes[start + 1]);
        if (lead == 0x00 && next & 0x80 == 0) || (lead == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    (bytes, start)
}

/// Encodes `value` as the minimal two's-complement bytes of its unscaled integer at `spec`.
pub fn to_bytes(value: Decimal, spec: DecimalSpec) -> Result<Vec<u8>, DecimalError> {
    let (buffer, start) = unscaled_bytes(to_unscaled(value, spec)?);
    Ok(buffer[start..].to_vec())
}

/// The i128 held by big-endian two's-complement `bytes` (any length, redundant sign bytes
/// allowed), or `None` if it does not fit.
fn bytes_to_i128(bytes: &[u8]) -> Option<i128> {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let sign = if negative { 0xFF } else { 0x00 };
    let (head, tail) = bytes.split_at(bytes.len().saturating_sub(16));
    if head.iter().any(|&b| b != sign) {
        return None;
    }
    if !head.is_empty() && (tail[0] & 0x80 != 0) != negative {
        return None;
    }
    let mut buffer = [sign; 16];
    buffer[16 - tail.len()..].copy_from_slice(tail);
    Some(i128::from_be_bytes(buffer))
}

/// Decodes decimal bytes at `spec.scale` into a [`Decimal`] whose scale is the schema's (so
/// `110.01` at scale 8 comes back as `110.01000000`). Errors on empty bytes, on a value with more
/// digits than the precision, and on values `rust_decimal` cannot hold.
pub fn from_bytes(bytes: &[u8], spec: DecimalSpec) -> Result<Decimal, DecimalError> {
    if bytes.is_empty() {
        return Err(DecimalError::Empty);
    }
    if spec.scale > MAX_RUST_SCALE {
        return Err(DecimalError::UnsupportedScale { scale: spec.scale });
    }
    let unscaled = bytes_to_i128(bytes).ok_or(DecimalError::TooLarge { len: bytes.len() })?;
    if !within_precision(unscaled, spec.precision) {
        return Err(DecimalError::Precision {
            value: bytes_to_text(bytes, spec.scale),
            precision: spec.precision,
            scale: spec.scale,
        });
    }
    Decimal::try_from_i128_with_scale(unscaled, spec.scale)
        .map_err(|_| DecimalError::TooLarge { len: bytes.len() })
}

/// Formats big-endian two's-complement `bytes` (any length) as decimal text with exactly `scale`
/// digits after the point: `[0x2A, 0xF9]` at scale 2 is `"110.01"`. Empty bytes read as zero.
pub fn bytes_to_text(bytes: &[u8], scale: u32) -> String {
    let (negative, digits) = match bytes_to_i128(bytes) {
        Some(v) => (v < 0, v.unsigned_abs().to_string()),
        None => {
            let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
            let magnitude = if negative {
                negate(bytes)
            } else {
                bytes.to_vec()
            };
            (negative, magnitude_to_digits(magnitude))
        }
    };
    let scale = scale as usize;
    let mut text = String::with_capacity(digits.len() + scale + 3);
    if negative {
        text.push('-');
    }
    if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        text.push_str(int);
        if scale > 0 {
            text.push('.');
            text.push_str(frac);
        }
    } else {
        text.push('0');
        if scale > 0 {
            text.push('.');
            text.extend(std::iter::repeat_n('0', scale - digits.len()));
            text.push_str(&digits);
        }
    }
    text
}

/// Two's-complement negation of big-endian `bytes`, one byte wider so the most negative value
/// fits (the result is read as unsigned).
fn negate(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(0xFF);
    out.extend_from_slice(bytes);
    for b in out.iter_mut() {
        *b = !*b;
    }
    for b in out.iter_mut().rev() {
        let (sum, carry) = b.overflowing_add(1);
        *b = sum;
        if !carry {
            break;
        }
    }
    out
}

/// Decimal digits of an unsigned big-endian magnitude (schoolbook division by 10^9).
fn magnitude_to_digits(mut magnitude: Vec<u8>) -> String {
    const CHUNK: u64 = 1_000_000_000;
    let mut chunks = Vec::new();
    loop {
        let first_nonzero = magnitude.iter().position(|&b| b != 0);
        let Some(first) = first_nonzero else { break };
        magnitude.drain(..first);
        let mut remainder = 0u64;
        for b in magnitude.iter_mut() {
            let current = (remainder << 8) | u64::from(*b);
            // current < CHUNK * 256 so the quotient fits a byte.
            *b = (current / CHUNK) as u8;
            remainder = current % CHUNK;
        }
        chunks.push(remainder);
    }
    let mut text = match chunks.pop() {
        Some(top) => top.to_string(),
        None => return "0".to_string(),
    };
    for chunk in chunks.iter().rev() {
        text.push_str(&format!("{chunk:09}"));
    }
    text
}

/// Parses plain decimal text (`-?digits[.digits]`, no exponent) into the minimal two's-complement
/// bytes of its unscaled value at `spec`, of any size. Trailing zeros beyond the scale are fine
/// (`"1.50"` at scale 1); other extra places are [`DecimalError::TooManyPlaces`], too many digits
/// [`DecimalError::Precision`].
pub fn text_to_bytes(text: &str, spec: DecimalSpec) -> Result<Vec<u8>, DecimalError> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = match unsigned.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (unsigned, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || !all_digits(int)
        || !all_digits(frac)
        || (unsigned.contains('.') && frac.is_empty())
    {
        return Err(DecimalError::NotANumber);
    }
    let scale = spec.scale as usize;
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > scale {
        return Err(DecimalError::TooManyPlaces {
            value: text.to_string(),
            scale: spec.scale,
        });
    }
    // Unscaled digits: integer part, then the fraction padded to the scale.
    let mut digits = String::with_capacity(int.len() + scale);
    digits.push_str(int);
    digits.push_str(frac_trimmed);
    digits.extend(std::iter::repeat_n('0', scale - frac_trimmed.len()));
    let significant = digits.trim_start_matches('0');
    if significant.len() > spec.precision as usize {
        return Err(DecimalError::Precision {
            value: text.to_string(),
            precision: spec.precision,
            scale: spec.scale,
        });
    }
    // Big-endian magnitude with one spare leading zero byte, then negate if needed.
    let mut magnitude = vec![0u8];
    for d in significant.bytes() {
        let mut carry = u32::from(d - b'0');
        for b in magnitude.iter_mut().rev() {
            let v = u32::from(*b) * 10 + carry;
            *b = (v & 0xFF) as u8;
            carry = v >> 8;
        }
        // The spare top byte absorbs the last carry (it was 0, so no carry leaves it); widen
        // again when it becomes non-zero so the value stays non-negative before negation.
        if magnitude[0] != 0 {
            magnitude.insert(0, 0);
        }
    }
    let mut bytes = if negative && !significant.is_empty() {
        // Two's complement: invert and add one (the spare top byte becomes the sign).
        let mut bytes: Vec<u8> = magnitude.iter().map(|b| !b).collect();
        for b in bytes.iter_mut().rev() {
            let (sum, carry) = b.overflowing_add(1);
            *b = sum;
            if !carry {
                break;
            }
        }
        bytes
    } else {
        magnitude
    };
    minimize(&mut bytes);
    Ok(bytes)
}

/// Drops redundant leading sign bytes of big-endian two's-complement `bytes`, keeping one byte.
pub(crate) fn minimize(bytes: &mut Vec<u8>) {
    let mut start = 0;
    while start + 1 < bytes.len() {
        let (lead, next) = (bytes[start], bytes[start + 1]);
        if (lead == 0x00 && next & 0x80 == 0) || (lead == 0xFF && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes.drain(..start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    const MONEY: DecimalSpec = DecimalSpec::new(18, 2);
    const PRICE: DecimalSpec = DecimalSpec::new(20, 8);

    #[test]
    fn minimal_bytes_match_java_biginteger() {
        // Values and bytes as java.math.BigInteger.toByteArray() gives them.
        let cases: &[(i128, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (-1, &[0xFF]),
            (127, &[0x7F]),
            (128, &[0x00, 0x80]),
            (-128, &[0x80]),
            (-129, &[0xFF, 0x7F]),
            (255, &[0x00, 0xFF]),
            (256, &[0x01, 0x00]),
            (11001, &[0x2A, 0xF9]),
            (-11001, &[0xD5, 0x07]),
            (
                i128::MAX,
                &[
                    0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                    0xFF, 0xFF, 0xFF,
                ],
            ),
            (
                i128::MIN,
                &[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
        ];
        for &(value, expected) in cases {
            let (buffer, start) = unscaled_bytes(value);
            assert_eq!(&buffer[start..], expected, "{value}");
            assert_eq!(bytes_to_i128(expected), Some(value));
            let text = bytes_to_text(expected, 0);
            assert_eq!(text, value.to_string());
            assert_eq!(
                text_to_bytes(&text, DecimalSpec::new(39, 0)).unwrap(),
                expected
            );
        }
    }

    #[test]
    fn rescales_to_the_schema_scale() {
        assert_eq!(to_unscaled(dec("110.01"), MONEY), Ok(11001));
        assert_eq!(to_unscaled(dec("110.01"), PRICE), Ok(11_001_000_000));
        assert_eq!(to_unscaled(dec("-0.5"), MONEY), Ok(-50));
        assert_eq!(to_unscaled(dec("0"), MONEY), Ok(0));
        assert_eq!(to_unscaled(dec("7"), MONEY), Ok(700));
        // Trailing zeros beyond the scale are not extra places.
        assert_eq!(to_unscaled(dec("1.2300"), MONEY), Ok(123));
        assert_eq!(to_bytes(dec("-110.01"), MONEY), Ok(vec![0xD5, 0x07]));
        assert_eq!(to_bytes(dec("0.00"), MONEY), Ok(vec![0x00]));
    }

    #[test]
    fn too_many_places_is_an_error_not_rounding() {
        assert_eq!(
            to_unscaled(dec("1.234"), MONEY),
            Err(DecimalError::TooManyPlaces {
                value: "1.234".into(),
                scale: 2
            })
        );
        assert_eq!(
            to_unscaled(dec("-0.000000001"), PRICE)
                .unwrap_err()
                .to_string(),
            "-0.000000001 has more than 8 decimal places"
        );
    }

    #[test]
    fn precision_limits_are_exact() {
        // decimal(18, 2): 16 integer digits.
        let max = dec("9999999999999999.99");
        assert_eq!(to_unscaled(max, MONEY), Ok(999_999_999_999_999_999));
        assert_eq!(to_unscaled(-max, MONEY), Ok(-999_999_999_999_999_999));
        let err = to_unscaled(dec("10000000000000000"), MONEY).unwrap_err();
        assert_eq!(
            err.to_string(),
            "10000000000000000 does not fit decimal(18, 2) (at most 16 digits before the decimal point)"
        );
        // decimal(20, 8): 12 integer digits.
        assert_eq!(
            to_unscaled(dec("999999999999.99999999"), PRICE),
            Ok(99_999_999_999_999_999_999)
        );
        assert!(matches!(
            to_unscaled(dec("1000000000000"), PRICE),
            Err(DecimalError::Precision { .. })
        ));
        // The largest rust_decimal does not overflow the rescale.
        assert!(matches!(
            to_unscaled(Decimal::MAX, PRICE),
            Err(DecimalError::Precision { .. })
        ));
    }

    #[test]
    fn decodes_with_the_schema_scale() {
        let d = from_bytes(&[0x2A, 0xF9], MONEY).unwrap();
        assert_eq!(d, dec("110.01"));
        assert_eq!(d.scale(), 2);
        assert_eq!(
            from_bytes(&[0xD5, 0x07], MONEY).unwrap().to_string(),
            "-110.01"
        );
        assert_eq!(
            from_bytes(&[0x00], PRICE).unwrap().to_string(),
            "0.00000000"
        );
        // Redundant sign extension is accepted (fixed-size writers produce it).
        assert_eq!(
            from_bytes(&[0xFF, 0xFF, 0xD5, 0x07], MONEY).unwrap(),
            dec("-110.01")
        );
        let mut wide = vec![0u8; 30];
        wide[29] = 5;
        assert_eq!(from_bytes(&wide, MONEY).unwrap(), dec("0.05"));
    }

    #[test]
    fn bad_decimal_bytes_are_errors() {
        assert_eq!(from_bytes(&[], MONEY), Err(DecimalError::Empty));
        // 10^18 unscaled does not fit decimal(18, 2).
        let (buffer, start) = unscaled_bytes(1_000_000_000_000_000_000);
        assert_eq!(
            from_bytes(&buffer[start..], MONEY).unwrap_err().to_string(),
            "10000000000000000.00 does not fit decimal(18, 2) (at most 16 digits before the decimal point)"
        );
        let mut big = vec![0x01];
        big.extend([0u8; 16]);
        assert_eq!(
            from_bytes(&big, DecimalSpec::new(60, 2)),
            Err(DecimalError::TooLarge { len: 17 })
        );
        assert_eq!(
            from_bytes(&[1], DecimalSpec::new(38, 30)),
            Err(DecimalError::UnsupportedScale { scale: 30 })
        );
    }

    #[test]
    fn text_round_trips_at_any_size() {
        let spec = DecimalSpec::new(60, 10);
        for text in [
            "0.0000000000",
            "1.0000000000",
            "-1.0000000000",
            "123456789012345678901234567890123456789012345.1234567890",
            "-123456789012345678901234567890123456789012345.1234567890",
            "-0.0000000001",
            "170141183460469231731687303715884105728.0000000000",
        ] {
            let bytes = text_to_bytes(text, spec).unwrap();
            assert_eq!(bytes_to_text(&bytes, 10), text);
            let mut minimal = bytes.clone();
            minimize(&mut minimal);
            assert_eq!(minimal, bytes, "{text} not minimal");
        }
        assert_eq!(text_to_bytes("110.01", MONEY).unwrap(), vec![0x2A, 0xF9]);
        assert_eq!(text_to_bytes("-0", MONEY).unwrap(), vec![0x00]);
        assert_eq!(bytes_to_text(&[0x2A, 0xF9], 8), "0.00011001");
        assert_eq!(bytes_to_text(&[0x80], 2), "-1.28");
        assert_eq!(bytes_to_text(&[], 2), "0.00");
    }

    #[test]
    fn text_errors() {
        for bad in [
            "", "-", "1.", ".5", "1e5", "1,5", " 1", "+1", "1.2.3", "abc", "--1",
        ] {
            assert_eq!(
                text_to_bytes(bad, MONEY),
                Err(DecimalError::NotANumber),
                "{bad:?}"
            );
        }
        assert_eq!(
            text_to_bytes("1.234", MONEY),
            Err(DecimalError::TooManyPlaces {
                value: "1.234".into(),
                scale: 2
            })
        );
        assert_eq!(text_to_bytes("1.2300000", MONEY).unwrap(), vec![123]);
        assert!(matches!(
            text_to_bytes("12345678901234567", MONEY),
            Err(DecimalError::Precision { .. })
        ));
        assert!(text_to_bytes("1234567890123456.99", MONEY).is_ok());
        assert!(text_to_bytes("0001234567890123456.99", MONEY).is_ok());
    }
}
