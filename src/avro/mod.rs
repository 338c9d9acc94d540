//! fluxo's Avro codec layer: schemas, typed events, Confluent framing and JSON.
//!
//! Every event type of [`fluxo_processors::events`] has an `.avsc` file in `schemas/`, compiled
//! into the binary by [`schemas`]. On Kafka a record value is a Confluent-framed Avro datum:
//! magic byte `0`, the 4-byte big-endian schema id from the registry, then the Avro binary
//! encoding of the record ([`framing`]).
//!
//! # Layout
//! - [`schemas`]: the catalogue of the eight event schemas, parsed once.
//! - [`typed`]: [`AvroEvent`], the hand-written mapping between each Rust event type and its
//!   schema, plus [`encode_datum`]/[`decode_datum`]. The typed events have a direct binary
//!   encoder/decoder (tests prove it byte-identical to `apache_avro`'s), used when the writer
//!   schema is the current one; any other writer schema goes through `apache_avro`'s generic
//!   [`Value`](apache_avro::types::Value) and Avro schema resolution by field name and default.
//! - [`framing`]: the Confluent wire format (magic byte + schema id + datum).
//! - [`json`]: generic JSON ⇄ Avro conversion by schema, for `fluxo produce` / `fluxo consume`.
//! - [`decimal`]: the Avro `decimal` logical type ⇄ [`rust_decimal::Decimal`] and decimal text.
//!
//! # Mapping conventions
//! Money and prices are Avro `decimal` (bytes holding the big-endian two's-complement unscaled
//! value, the minimal number of bytes, as Java's `BigInteger.toByteArray()` and therefore the
//! Confluent Java clients write it); a value with more decimal places than the schema's scale, or
//! more digits than its precision, is an error, never rounded. Times are `timestamp-millis`
//! ([`fluxo_processors::Millis`]), `business_date` is Avro `date` (days since 1970-01-01).
//! Enums travel as their symbols.

pub mod decimal;
pub mod framing;
pub mod json;
pub mod schemas;
pub mod typed;

mod binary;
mod impls;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;

pub use binary::BinaryError;
pub use decimal::{DecimalError, DecimalSpec};
pub use framing::{frame, frame_into, unframe, FramingError};
pub use json::{json_to_value, value_to_json, JsonCodec, JsonError};
pub use schemas::{schema_for, EventSchema};
pub use typed::{
    decode_datum, decode_value, encode_datum, encode_datum_into, encode_framed, encode_value,
    AvroEvent,
};

/// Why an event could not be encoded or decoded. Every variant says where (`Record.field`, with
/// array indexes for nested records) and what; none echoes a string field's content, so a
/// CPF/CNPJ never reaches a log line through this error.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The writer schema is not a version of the record the caller asked for.
    #[error("the writer schema is {found}, not a version of the record {expected}")]
    SchemaMismatch {
        /// The record name the caller expected (e.g. `AssetPrice`).
        expected: &'static str,
        /// What the writer schema is (its record name, or its kind).
        found: String,
    },
    /// A field of the reader schema is absent from the writer's record and has no default.
    #[error("{path}: missing from the writer's record and the schema gives it no default")]
    MissingField {
        /// `Record.field`.
        path: String,
    },
    /// A value of the wrong Avro type for the field.
    #[error("{path}: expected {expected}, got {found}")]
    WrongType {
        /// `Record.field`.
        path: String,
        /// The Avro type the mapping needs.
        expected: &'static str,
        /// The Avro type found.
        found: &'static str,
    },
    /// An enum symbol the Rust type does not know.
    #[error("{path}: unknown symbol {symbol:?}, expected one of {}", expected.join(", "))]
    UnknownSymbol {
        /// `Record.field`.
        path: String,
        /// The symbol found (an Avro name, so never free text).
        symbol: String,
        /// The symbols the Rust enum knows.
        expected: &'static [&'static str],
    },
    /// A decimal that does not fit the field's `decimal(precision, scale)`, or malformed decimal
    /// bytes.
    #[error("{path}: {reason}")]
    Decimal {
        /// `Record.field`.
        path: String,
        /// What is wrong with it.
        reason: DecimalError,
    },
    /// The binary datum is malformed (truncated, bad varint, bad UTF-8, index out of range...).
    #[error("{path}: malformed Avro datum: {reason}")]
    Malformed {
        /// `Record.field` being read when the problem was found.
        path: String,
        /// What is wrong.
        reason: BinaryError,
    },
    /// The datum was read completely but bytes were left over.
    #[error("{record}: {count} unread bytes after the end of the datum")]
    TrailingBytes {
        /// The record (schema name) read.
        record: String,
        /// How many bytes were left.
        count: usize,
    },
    /// The writer schema cannot be read as the current one (e.g. a decimal with another scale).
    #[error("{path}: {reason}")]
    IncompatibleWriter {
        /// `Record.field`.
        path: String,
        /// Why.
        reason: String,
    },
    /// A reader-schema default could not be turned into a value.
    #[error("{path}: invalid default in the schema: {reason}")]
    BadDefault {
        /// `Record.field`.
        path: String,
        /// Why the default does not fit the field's type.
        reason: JsonError,
    },
    /// `apache_avro` failed (generic path: a writer schema other than the current one, or
    /// [`encode_value`]/[`decode_value`]).
    #[error("{context}: {error}")]
    Avro {
        /// What was being done.
        context: String,
        /// The library's error.
        error: apache_avro::Error,
    },
}
