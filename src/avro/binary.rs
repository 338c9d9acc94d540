//! Direct Avro binary encoding for the typed events (the fast path).
//!
//! Avro binary is simple: `int`/`long` are zig-zag varints, `bytes`/`string` a `long` length then
//! the bytes, `boolean` one byte, an enum or union branch its index as an `int`, an array a series
//! of blocks (`long` count, items; a negative count is followed by the block's byte size) ended by
//! a zero count, a record its fields in order. The writer here produces exactly what
//! `apache_avro` produces for the same value and schema (one array block, minimal decimal bytes);
//! the tests in `avro::tests` prove it byte for byte for every event type. The reader accepts
//! every valid encoding (multi-block arrays, negative block counts, redundant decimal sign bytes)
//! and turns anything else into a [`BinaryError`], never a panic.

use super::decimal::{self, DecimalSpec};
use super::CodecError;
use rust_decimal::Decimal;

/// What is wrong with a binary datum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// The datum ends before the value does.
    #[error("the datum ends early ({needed} more bytes needed, {left} left)")]
    Truncated {
        /// Bytes the value needs.
        needed: usize,
        /// Bytes left in the datum.
        left: usize,
    },
    /// A varint longer than 10 bytes.
    #[error("variable-length integer longer than 10 bytes")]
    VarintTooLong,
    /// A `long` read where an `int` is expected does not fit 32 bits.
    #[error("{0} does not fit an Avro int")]
    IntOutOfRange(i64),
    /// A negative string, bytes or array block length.
    #[error("negative length {0}")]
    NegativeLength(i64),
    /// A string that is not UTF-8.
    #[error("a string is not valid UTF-8")]
    InvalidUtf8,
    /// A boolean byte other than 0 or 1.
    #[error("boolean byte is {0:#04x}, expected 0x00 or 0x01")]
    InvalidBoolean(u8),
    /// An enum or union index out of range.
    #[error("{kind} index {index} out of range (0..{count})")]
    IndexOutOfRange {
        /// `enum` or `union`.
        kind: &'static str,
        /// The index read.
        index: i64,
        /// Number of symbols or branches.
        count: usize,
    },
}

/// Appends `value` as a zig-zag varint (`long` and `int` share the encoding).
#[inline]
pub(crate) fn put_long(out: &mut Vec<u8>, value: i64) {
    let mut z = ((value << 1) ^ (value >> 63)) as u64;
    let mut buffer = [0u8; 10];
    let mut i = 0;
    while z >= 0x80 {
        buffer[i] = (z as u8) | 0x80;
        z >>= 7;
        i += 1;
    }
    buffer[i] = z as u8;
    out.extend_from_slice(&buffer[..=i]);
}

/// Appends an Avro `int`.
#[inline]
pub(crate) fn put_int(out: &mut Vec<u8>, value: i32) {
    put_long(out, i64::from(value));
}

/// Appends an Avro `boolean`.
#[inline]
pub(crate) fn put_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

/// Appends Avro `bytes`.
#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, value: &[u8]) {
    // A slice never exceeds isize::MAX bytes, so the length fits an i64.
    put_long(out, value.len() as i64);
    out.extend_from_slice(value);
}

/// Appends an Avro `string`.
#[inline]
pub(crate) fn put_str(out: &mut Vec<u8>, value: &str) {
    put_bytes(out, value.as_bytes());
}

/// Appends an enum symbol index or a union branch index.
#[inline]
pub(crate) fn put_index(out: &mut Vec<u8>, index: usize) {
    // Indexes come from small constant tables (at most a handful of symbols).
    put_long(out, index as i64);
}

/// Appends a `decimal` (bytes) field: the minimal two's-complement unscaled value at `spec`.
#[inline]
pub(crate) fn put_decimal(
    out: &mut Vec<u8>,
    value: Decimal,
    spec: DecimalSpec,
) -> Result<(), decimal::DecimalError> {
    let (buffer, start) = decimal::unscaled_bytes(decimal::to_unscaled(value, spec)?);
    put_bytes(out, &buffer[start..]);
    Ok(())
}

/// A cursor over a binary datum that reads the typed events' fields. Errors carry the path of
/// the field being read (`Record.field`, `Record.array[i].field`).
pub(crate) struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    record: &'static str,
    item: Option<(&'static str, usize)>,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `input`, reading the record `record`.
    pub(crate) fn new(input: &'a [u8], record: &'static str) -> Self {
        Self {
            input,
            pos: 0,
            record,
            item: None,
        }
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.input[self.pos..]
    }

    /// Marks the following reads as reading item `index` of the array field `field`
    /// (`None`: back to the top-level record); only used to build error paths.
    pub(crate) fn set_item(&mut self, item: Option<(&'static str, usize)>) {
        self.item = item;
    }

    /// `Record.field` or `Record.array[i].field`.
    pub(crate) fn path(&self, field: &str) -> String {
        match self.item {
            Some((array, index)) => format!("{}.{array}[{index}].{field}", self.record),
            None => format!("{}.{field}", self.record),
        }
    }

    fn malformed(&self, field: &str, reason: BinaryError) -> CodecError {
        CodecError::Malformed {
            path: self.path(field),
            reason,
        }
    }

    fn raw_long(&mut self) -> Result<i64, BinaryError> {
        let mut z: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&byte) = self.input.get(self.pos) else {
                return Err(BinaryError::Truncated { needed: 1, left: 0 });
            };
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(BinaryError::VarintTooLong);
            }
            z |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(BinaryError::VarintTooLong);
            }
        }
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// Reads a `long`.
    #[inline]
    pub(crate) fn long(&mut self, field: &str) -> Result<i64, CodecError> {
        self.raw_long().map_err(|e| self.malformed(field, e))
    }

    /// Reads an `int`.
    #[inline]
    pub(crate) fn int(&mut self, field: &str) -> Result<i32, CodecError> {
        let value = self.long(field)?;
        i32::try_from(value).map_err(|_| self.malformed(field, BinaryError::IntOutOfRange(value)))
    }

    /// Reads a `boolean`.
    #[inline]
    pub(crate) fn boolean(&mut self, field: &str) -> Result<bool, CodecError> {
        match self.input.get(self.pos) {
            Some(0) => {
                self.pos += 1;
                Ok(false)
            }
            Some(1) => {
                self.pos += 1;
                Ok(true)
            }
            Some(&other) => Err(self.malformed(field, BinaryError::InvalidBoolean(other))),
            None => Err(self.malformed(field, BinaryError::Truncated { needed: 1, left: 0 })),
        }
    }

    /// Reads `bytes` (borrowed from the input).
    #[inline]
    pub(crate) fn bytes(&mut self, field: &str) -> Result<&'a [u8], CodecError> {
        let len = self.long(field)?;
        let left = self.input.len() - self.pos;
        let len = usize::try_from(len)
            .map_err(|_| self.malformed(field, BinaryError::NegativeLength(len)))?;
        if len > left {
            return Err(self.malformed(field, BinaryError::Truncated { needed: len, left }));
        }
        let bytes = &self.input[self.pos..self.pos + len];
        self.pos += len;
        Ok(bytes)
    }

    /// Reads a `string`.
    #[inline]
    pub(crate) fn string(&mut self, field: &str) -> Result<String, CodecError> {
        let bytes = self.bytes(field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(self.malformed(field, BinaryError::InvalidUtf8)),
        }
    }

    /// Reads a `decimal` (bytes) at `spec`.
    #[inline]
    pub(crate) fn decimal(
        &mut self,
        field: &str,
        spec: DecimalSpec,
    ) -> Result<Decimal, CodecError> {
        let bytes = self.bytes(field)?;
        decimal::from_bytes(bytes, spec).map_err(|reason| CodecError::Decimal {
            path: self.path(field),
            reason,
        })
    }

    /// Reads an enum index or union branch index below `count`.
    #[inline]
    pub(crate) fn index(
        &mut self,
        field: &str,
        kind: &'static str,
        count: usize,
    ) -> Result<usize, CodecError> {
        let index = self.long(field)?;
        match usize::try_from(index) {
            Ok(i) if i < count => Ok(i),
            _ => Err(self.malformed(field, BinaryError::IndexOutOfRange { kind, index, count })),
        }
    }

    /// Reads the item count of the next array block (0 = end of the array), skipping the block
    /// byte size that follows a negative count.
    pub(crate) fn block_count(&mut self, field: &str) -> Result<usize, CodecError> {
        let count = self.long(field)?;
        let count = if count < 0 {
            let _block_size = self.long(field)?;
            count
                .checked_neg()
                .ok_or_else(|| self.malformed(field, BinaryError::NegativeLength(count)))?
        } else {
            count
        };
        // Each item takes at least one byte, so a count beyond what is left is a lie; refusing it
        // here also bounds the capacity callers reserve.
        let left = self.input.len() - self.pos;
        match usize::try_from(count) {
            Ok(n) if n <= left => Ok(n),
            _ => Err(self.malformed(
                field,
                BinaryError::Truncated {
                    needed: usize::try_from(count).unwrap_or(usize::MAX),
                    left,
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_bytes(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        put_long(&mut out, v);
        out
    }

    #[test]
    fn zigzag_varints_match_the_spec() {
        // Examples from the Avro specification.
        assert_eq!(long_bytes(0), [0x00]);
        assert_eq!(long_bytes(-1), [0x01]);
        assert_eq!(long_bytes(1), [0x02]);
        assert_eq!(long_bytes(-2), [0x03]);
        assert_eq!(long_bytes(2), [0x04]);
        assert_eq!(long_bytes(-64), [0x7F]);
        assert_eq!(long_bytes(64), [0x80, 0x01]);
        assert_eq!(long_bytes(i64::MAX).len(), 10);
        for v in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            1 << 40,
            -(1 << 40),
            i64::MAX,
            i64::MIN,
        ] {
            let bytes = long_bytes(v);
            let mut r = Reader::new(&bytes, "T");
            assert_eq!(r.long("f").unwrap(), v);
            assert!(r.rest().is_empty());
        }
    }

    #[test]
    fn malformed_input_is_an_error_with_the_field_path() {
        let mut r = Reader::new(&[0x80, 0x80], "T");
        assert_eq!(
            r.long("f").unwrap_err().to_string(),
            "T.f: malformed Avro datum: the datum ends early (1 more bytes needed, 0 left)"
        );
        let too_long = [0xFF; 11];
        let mut r = Reader::new(&too_long, "T");
        assert_eq!(
            r.long("f").unwrap_err().to_string(),
            "T.f: malformed Avro datum: variable-length integer longer than 10 bytes"
        );
        // A string announcing 5 bytes with 2 left.
        let mut r = Reader::new(&[0x0A, b'a', b'b'], "T");
        r.set_item(Some(("reasons", 3)));
        assert_eq!(
            r.string("text").unwrap_err().to_string(),
            "T.reasons[3].text: malformed Avro datum: the datum ends early (5 more bytes needed, 2 left)"
        );
        let mut r = Reader::new(&[0x01], "T");
        assert_eq!(
            r.bytes("b").unwrap_err().to_string(),
            "T.b: malformed Avro datum: negative length -1"
        );
        let mut r = Reader::new(&[0x02, 0xFF], "T");
        assert_eq!(
            r.string("s").unwrap_err().to_string(),
            "T.s: malformed Avro datum: a string is not valid UTF-8"
        );
        let mut r = Reader::new(&[0x02], "T");
        assert_eq!(
            r.boolean("b").unwrap_err().to_string(),
            "T.b: malformed Avro datum: boolean byte is 0x02, expected 0x00 or 0x01"
        );
        let mut r = Reader::new(&[0x08], "T");
        assert_eq!(
            r.index("e", "enum", 4).unwrap_err().to_string(),
            "T.e: malformed Avro datum: enum index 4 out of range (0..4)"
        );
        let big = long_bytes(i64::from(i32::MAX) + 1);
        let mut r = Reader::new(&big, "T");
        assert_eq!(
            r.int("i").unwrap_err().to_string(),
            "T.i: malformed Avro datum: 2147483648 does not fit an Avro int"
        );
        // A block count far beyond the input.
        let huge = long_bytes(1 << 50);
        let mut r = Reader::new(&huge, "T");
        assert!(matches!(
            r.block_count("a"),
            Err(CodecError::Malformed {
                reason: BinaryError::Truncated { .. },
                ..
            })
        ));
    }

    #[test]
    fn negative_block_counts_skip_the_block_size() {
        // count -2, block size 4, then 2 items.
        let mut bytes = long_bytes(-2);
        bytes.extend(long_bytes(4));
        bytes.extend([0x02, 0x04]);
        let mut r = Reader::new(&bytes, "T");
        assert_eq!(r.block_count("a").unwrap(), 2);
        assert_eq!(r.long("x").unwrap(), 1);
        assert_eq!(r.long("x").unwrap(), 2);
    }
}
