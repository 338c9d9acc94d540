//! Typed events ⇄ Avro: the [`AvroEvent`] mapping and the datum functions.
//!
//! Each event type of [`fluxo_processors::events`] implements [`AvroEvent`] by hand, field by
//! field (in `avro/impls.rs`): [`AvroEvent::to_value`]/[`AvroEvent::from_value`] map to and from
//! `apache_avro`'s generic [`Value`], and [`AvroEvent::write_datum`]/[`AvroEvent::read_datum`]
//! write and read the Avro binary encoding directly, without building a `Value` (the fast path;
//! the tests prove it byte-identical to `apache_avro`'s encoding of `to_value`).
//!
//! [`decode_datum`] takes the *writer* schema, the one whose id is in the record's framing. When it
//! is the current schema (the usual case) the direct decoder reads the bytes; otherwise the datum
//! is decoded generically with the writer schema and [`AvroEvent::from_value`] resolves it the
//! Avro way: fields are matched by name, writer fields the reader does not know are ignored, a
//! reader field the writer lacks takes the reader schema's default (an error if it has none),
//! `int` promotes to `long`, a union branch is unwrapped, enums match by symbol.

use super::binary;
use super::decimal::{self, DecimalSpec};
use super::json::JsonCodec;
use super::CodecError;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{InnerDecimalSchema, RecordSchema};
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use rust_decimal::Decimal;

/// An event type with an Avro schema in `schemas/` and a hand-written mapping to it.
pub trait AvroEvent: Sized {
    /// The record name in the schema and in [`schemas::all`](super::schemas::all), e.g.
    /// `AssetPrice`.
    const SCHEMA_NAME: &'static str;

    /// The current (reader) schema, parsed once.
    fn schema() -> &'static Schema;

    /// The event as a generic Avro value of [`Self::schema`] (fields in schema order, decimals
    /// rescaled to the field's scale). Errors if a decimal has more places than the scale or more
    /// digits than the precision.
    fn to_value(&self) -> Result<Value, CodecError>;

    /// The event from a generic record value decoded with any compatible writer schema (fields by
    /// name, defaults for missing fields, see the module docs).
    fn from_value(value: Value) -> Result<Self, CodecError>;

    /// Appends the Avro binary encoding of the event under [`Self::schema`] to `out`. On error
    /// `out` may hold a partial datum; [`encode_datum_into`] truncates it.
    fn write_datum(&self, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Reads one datum written with exactly [`Self::schema`] from the front of `input`, advancing
    /// it past the datum.
    fn read_datum(input: &mut &[u8]) -> Result<Self, CodecError>;
}

/// The Avro binary encoding of `event` under its current schema (no framing).
pub fn encode_datum<T: AvroEvent>(event: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(128);
    event.write_datum(&mut out)?;
    Ok(out)
}

/// Appends the Avro binary encoding of `event` to `out` (for a reused buffer). On error `out` is
/// left as it was.
pub fn encode_datum_into<T: AvroEvent>(event: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    let result = event.write_datum(out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Appends a Confluent-framed record to `out`: magic byte, `schema_id`, then the datum of
/// `event`. On error `out` is left as it was.
pub fn encode_framed<T: AvroEvent>(
    schema_id: u32,
    event: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let start = out.len();
    super::framing::write_header(schema_id, out);
    let result = event.write_datum(out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Decodes an Avro datum written with `writer` (the schema registered under the record's schema
/// id) into `T`. The whole of `bytes` must be the datum.
pub fn decode_datum<T: AvroEvent>(writer: &Schema, bytes: &[u8]) -> Result<T, CodecError> {
    let reader = T::schema();
    if std::ptr::eq(writer, reader) || same_binary_layout(writer, reader) {
        let mut input = bytes;
        let event = T::read_datum(&mut input)?;
        if !input.is_empty() {
            return Err(CodecError::TrailingBytes {
                record: T::SCHEMA_NAME.to_string(),
                count: input.len(),
            });
        }
        return Ok(event);
    }
    match writer {
        Schema::Record(record) if record.name.name() == T::SCHEMA_NAME => {}
        other => {
            return Err(CodecError::SchemaMismatch {
                expected: T::SCHEMA_NAME,
                found: describe_schema(other),
            })
        }
    }
    check_decimal_scales(writer, T::schema(), T::SCHEMA_NAME)?;
    T::from_value(decode_value(writer, bytes)?)
}

/// Refuses a writer whose decimal field has another scale than the reader's: the bytes hold only
/// the unscaled integer, so reading them at the reader's scale would silently change the amount.
fn check_decimal_scales(writer: &Schema, reader: &Schema, path: &str) -> Result<(), CodecError> {
    match (writer, reader) {
        (Schema::Decimal(w), Schema::Decimal(r)) if w.scale != r.scale => {
            Err(CodecError::IncompatibleWriter {
                path: path.to_string(),
                reason: format!(
                    "the writer's decimal({}, {}) has another scale than the reader's decimal({}, {})",
                    w.precision, w.scale, r.precision, r.scale
                ),
            })
        }
        (Schema::Record(w), Schema::Record(r)) => {
            for field in &r.fields {
                if let Some(&i) = w.lookup.get(&field.name) {
                    check_decimal_scales(
                        &w.fields[i].schema,
                        &field.schema,
                        &format!("{path}.{}", field.name),
                    )?;
                }
            }
            Ok(())
        }
        (Schema::Array(w), Schema::Array(r)) => {
            check_decimal_scales(&w.items, &r.items, &format!("{path}[]"))
        }
        _ => Ok(()),
    }
}

/// Whether data written with `a` reads exactly like data written with `b`: same record names,
/// field names and order, same types including logical types, decimal precision and scale, enum
/// symbols and union branches. Docs, defaults and namespaces may differ. (Self-contained rather
/// than `Schema`'s `PartialEq`, whose comparator can be replaced process-wide.)
pub(crate) fn same_binary_layout(a: &Schema, b: &Schema) -> bool {
    match (a, b) {
        (Schema::Record(x), Schema::Record(y)) => {
            x.name.name() == y.name.name()
                && x.fields.len() == y.fields.len()
                && x.fields
                    .iter()
                    .zip(&y.fields)
                    .all(|(f, g)| f.name == g.name && same_binary_layout(&f.schema, &g.schema))
        }
        (Schema::Enum(x), Schema::Enum(y)) => x.symbols == y.symbols,
        (Schema::Union(x), Schema::Union(y)) => {
            x.variants().len() == y.variants().len()
                && x.variants()
                    .iter()
                    .zip(y.variants())
                    .all(|(v, w)| same_binary_layout(v, w))
        }
        (Schema::Array(x), Schema::Array(y)) => same_binary_layout(&x.items, &y.items),
        (Schema::Map(x), Schema::Map(y)) => same_binary_layout(&x.types, &y.types),
        (Schema::Decimal(x), Schema::Decimal(y)) => {
            x.precision == y.precision
                && x.scale == y.scale
                && match (&x.inner, &y.inner) {
                    (InnerDecimalSchema::Bytes, InnerDecimalSchema::Bytes) => true,
                    (InnerDecimalSchema::Fixed(f), InnerDecimalSchema::Fixed(g)) => {
                        f.size == g.size
                    }
                    _ => false,
                }
        }
        (Schema::Fixed(x), Schema::Fixed(y)) | (Schema::Duration(x), Schema::Duration(y)) => {
            x.size == y.size
        }
        (Schema::Ref { name: x }, Schema::Ref { name: y }) => x == y,
        (
            Schema::Null
            | Schema::Boolean
            | Schema::Int
            | Schema::Long
            | Schema::Float
            | Schema::Double
            | Schema::Bytes
            | Schema::String
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
            | Schema::BigDecimal,
            _,
        ) => std::mem::discriminant(a) == std::mem::discriminant(b),
        _ => false,
    }
}

/// Decodes a datum with `writer` into a generic [`Value`] (for `fluxo consume` and any schema).
/// The whole of `bytes` must be the datum.
pub fn decode_value(writer: &Schema, bytes: &[u8]) -> Result<Value, CodecError> {
    let reader = GenericDatumReader::builder(writer)
        .build()
        .map_err(|error| CodecError::Avro {
            context: format!("resolving the writer schema {}", describe_schema(writer)),
            error,
        })?;
    let mut input = bytes;
    let value = reader
        .read_value(&mut input)
        .map_err(|error| CodecError::Avro {
            context: format!("decoding a {} datum", describe_schema(writer)),
            error,
        })?;
    if !input.is_empty() {
        return Err(CodecError::TrailingBytes {
            record: describe_schema(writer),
            count: input.len(),
        });
    }
    Ok(value)
}

/// Encodes a generic [`Value`] with `schema` (for `fluxo produce` and any schema). The value is
/// validated against the schema first.
pub fn encode_value(schema: &Schema, value: &Value) -> Result<Vec<u8>, CodecError> {
    let writer = GenericDatumWriter::builder(schema)
        .build()
        .map_err(|error| CodecError::Avro {
            context: format!("resolving the schema {}", describe_schema(schema)),
            error,
        })?;
    let mut out = Vec::with_capacity(128);
    writer
        .write_value_ref(&mut out, value)
        .map_err(|error| CodecError::Avro {
            context: format!("encoding a {} value", describe_schema(schema)),
            error,
        })?;
    Ok(out)
}

/// `the record br.com.fluxo.AssetPrice`, `a long`, ...: a schema for error messages.
pub(crate) fn describe_schema(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => format!("the record {}", r.name.fullname(None)),
        Schema::Enum(e) => format!("the enum {}", e.name.fullname(None)),
        Schema::Fixed(f) => format!("the fixed {}", f.name.fullname(None)),
        Schema::Ref { name } => format!("a reference to {}", name.fullname(None)),
        other => format!("a {}", super::json::type_name(other)),
    }
}

/// The Avro type of a value, for error messages.
pub(crate) fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int(_) => "int",
        Value::Long(_) => "long",
        Value::Float(_) => "float",
        Value::Double(_) => "double",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "string",
        Value::Fixed(..) => "fixed",
        Value::Enum(..) => "enum",
        Value::Union(..) => "union",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Record(_) => "record",
        Value::Date(_) => "date",
        Value::Decimal(_) => "decimal",
        Value::BigDecimal(_) => "big-decimal",
        Value::TimeMillis(_) => "time-millis",
        Value::TimeMicros(_) => "time-micros",
        Value::TimestampMillis(_) => "timestamp-millis",
        Value::TimestampMicros(_) => "timestamp-micros",
        Value::TimestampNanos(_) => "timestamp-nanos",
        Value::LocalTimestampMillis(_) => "local-timestamp-millis",
        Value::LocalTimestampMicros(_) => "local-timestamp-micros",
        Value::LocalTimestampNanos(_) => "local-timestamp-nanos",
        Value::Duration(_) => "duration",
        Value::Uuid(_) => "uuid",
    }
}

/// Strips union wrappers (`["null", "string"]` → the string).
fn unwrap_union(value: Value) -> Value {
    match value {
        Value::Union(_, inner) => unwrap_union(*inner),
        other => other,
    }
}

/// A decimal field as a generic value (`Value::Decimal` of the minimal unscaled bytes).
pub(crate) fn decimal_value(
    value: Decimal,
    spec: DecimalSpec,
    record: &str,
    field: &str,
) -> Result<Value, CodecError> {
    decimal::to_bytes(value, spec)
        .map(|bytes| Value::Decimal(apache_avro::Decimal::from(bytes)))
        .map_err(|reason| CodecError::Decimal {
            path: format!("{record}.{field}"),
            reason,
        })
}

/// The fields of a decoded record, read by name with the reader schema's defaults (the slow,
/// schema-evolution path of [`AvroEvent::from_value`]).
pub(crate) struct Fields {
    path: String,
    root: &'static Schema,
    schema: &'static RecordSchema,
    values: Vec<(String, Value)>,
}

impl Fields {
    /// The record `value` read against the reader record schema `schema` (which is `root` or
    /// nested in it), `path` naming it in errors.
    pub(crate) fn new(
        value: Value,
        root: &'static Schema,
        schema: &'static Schema,
        path: String,
    ) -> Result<Self, CodecError> {
        let Schema::Record(record) = schema else {
            return Err(CodecError::SchemaMismatch {
                expected: "record",
                found: describe_schema(schema),
            });
        };
        match unwrap_union(value) {
            Value::Record(values) => Ok(Self {
                path,
                root,
                schema: record,
                values,
            }),
            other => Err(CodecError::WrongType {
                path,
                expected: "a record",
                found: value_kind(&other),
            }),
        }
    }

    /// `Record.field`, for error messages.
    pub(crate) fn field_path(&self, field: &str) -> String {
        format!("{}.{field}", self.path)
    }

    /// The reader schema of `field`.
    pub(crate) fn field_schema(&self, field: &str) -> Option<&'static Schema> {
        let schema: &'static RecordSchema = self.schema;
        schema.lookup.get(field).map(|&i| &schema.fields[i].schema)
    }

    /// Takes the writer's value of `field`, or the reader schema's default.
    fn take(&mut self, field: &str) -> Result<Value, CodecError> {
        if let Some(slot) = self.values.iter_mut().find(|(name, _)| name == field) {
            return Ok(unwrap_union(std::mem::replace(&mut slot.1, Value::Null)));
        }
        let reader_field = self
            .schema
            .lookup
            .get(field)
            .map(|&i| &self.schema.fields[i]);
        match reader_field.and_then(|f| f.default.as_ref().map(|d| (f, d))) {
            Some((f, default)) => {
                // Most defaults need no named types: try without resolving the schema first.
                let value =
                    match JsonCodec::without_names(self.root).default_value(&f.schema, default) {
                        Ok(value) => Ok(value),
                        Err(_) => JsonCodec::new(self.root)
                            .and_then(|codec| codec.default_value(&f.schema, default)),
                    };
                value
                    .map(unwrap_union)
                    .map_err(|reason| CodecError::BadDefault {
                        path: self.field_path(field),
                        reason,
                    })
            }
            None => Err(CodecError::MissingField {
                path: self.field_path(field),
            }),
        }
    }

    fn wrong(&self, field: &str, expected: &'static str, found: &Value) -> CodecError {
        CodecError::WrongType {
            path: self.field_path(field),
            expected,
            found: value_kind(found),
        }
    }

    /// A `string` field (also from `bytes`, the Avro promotion).
    pub(crate) fn string(&mut self, field: &str) -> Result<String, CodecError> {
        match self.take(field)? {
            Value::String(s) => Ok(s),
            Value::Bytes(b) => String::from_utf8(b).map_err(|_| CodecError::Malformed {
                path: self.field_path(field),
                reason: binary::BinaryError::InvalidUtf8,
            }),
            other => Err(self.wrong(field, "a string", &other)),
        }
    }

    /// A `["null", "string"]` field.
    pub(crate) fn opt_string(&mut self, field: &str) -> Result<Option<String>, CodecError> {
        match self.take(field)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            Value::Bytes(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| CodecError::Malformed {
                    path: self.field_path(field),
                    reason: binary::BinaryError::InvalidUtf8,
                }),
            other => Err(self.wrong(field, "null or a string", &other)),
        }
    }

    /// A `long` field (also from `int`).
    pub(crate) fn long(&mut self, field: &str) -> Result<i64, CodecError> {
        match self.take(field)? {
            Value::Long(v) => Ok(v),
            Value::Int(v) => Ok(i64::from(v)),
            other => Err(self.wrong(field, "a long", &other)),
        }
    }

    /// An `int` field.
    pub(crate) fn int(&mut self, field: &str) -> Result<i32, CodecError> {
        match self.take(field)? {
            Value::Int(v) => Ok(v),
            other => Err(self.wrong(field, "an int", &other)),
        }
    }

    /// A `boolean` field.
    pub(crate) fn boolean(&mut self, field: &str) -> Result<bool, CodecError> {
        match self.take(field)? {
            Value::Boolean(v) => Ok(v),
            other => Err(self.wrong(field, "a boolean", &other)),
        }
    }

    /// A `timestamp-millis` field (also from a plain `long` or `int`: the logical type is only an
    /// annotation).
    pub(crate) fn millis(&mut self, field: &str) -> Result<i64, CodecError> {
        match self.take(field)? {
            Value::TimestampMillis(v) | Value::Long(v) => Ok(v),
            Value::Int(v) => Ok(i64::from(v)),
            other => Err(self.wrong(field, "a timestamp-millis", &other)),
        }
    }

    /// A `date` field (also from a plain `int`).
    pub(crate) fn date(&mut self, field: &str) -> Result<i32, CodecError> {
        match self.take(field)? {
            Value::Date(v) | Value::Int(v) => Ok(v),
            other => Err(self.wrong(field, "a date", &other)),
        }
    }

    /// A `decimal` field at `spec` (also from plain `bytes` or `fixed`).
    pub(crate) fn decimal(
        &mut self,
        field: &str,
        spec: DecimalSpec,
    ) -> Result<Decimal, CodecError> {
        let bytes = match self.take(field)? {
            Value::Decimal(d) => Vec::<u8>::try_from(&d).map_err(|_| CodecError::Decimal {
                path: self.field_path(field),
                reason: decimal::DecimalError::Empty,
            })?,
            Value::Bytes(b) | Value::Fixed(_, b) => b,
            other => return Err(self.wrong(field, "a decimal", &other)),
        };
        decimal::from_bytes(&bytes, spec).map_err(|reason| CodecError::Decimal {
            path: self.field_path(field),
            reason,
        })
    }

    /// An enum field, mapped by symbol through `symbols` (the Rust enum's symbols in order):
    /// returns the index in `symbols`.
    pub(crate) fn symbol(
        &mut self,
        field: &str,
        symbols: &'static [&'static str],
    ) -> Result<usize, CodecError> {
        let symbol = match self.take(field)? {
            Value::Enum(_, s) | Value::String(s) => s,
            other => return Err(self.wrong(field, "an enum", &other)),
        };
        symbols
            .iter()
            .position(|s| *s == symbol)
            .ok_or_else(|| CodecError::UnknownSymbol {
                path: self.field_path(field),
                symbol,
                expected: symbols,
            })
    }

    /// An array field: its items and the path prefix for each (`Record.field[i]`).
    pub(crate) fn array(&mut self, field: &str) -> Result<Vec<Value>, CodecError> {
        match self.take(field)? {
            Value::Array(items) => Ok(items),
            other => Err(self.wrong(field, "an array", &other)),
        }
    }

    /// `Record.field[index]`, for the items of an array of records.
    pub(crate) fn item_path(&self, field: &str, index: usize) -> String {
        format!("{}.{field}[{index}]", self.path)
    }

    /// The reader schema this record belongs to.
    pub(crate) fn root(&self) -> &'static Schema {
        self.root
    }
}
