//! Generic JSON ⇄ Avro conversion driven by a schema, for `fluxo produce` (JSON lines in) and
//! `fluxo consume` (JSON lines out). Works for any schema, not only fluxo's.
//!
//! # JSON accepted by [`json_to_value`]
//! | Avro type | JSON |
//! |---|---|
//! | `decimal` | a string `"110.01"` (any size), or a JSON integer `110`. A JSON number with a fraction (`110.01`) is **refused**: `serde_json` has already turned it into an `f64`, which may have rounded it, and money is never rounded silently. More places than the scale, or more digits than the precision, is an error (`"1.2300"` is fine at scale 2, `"1.234"` is not). |
//! | `timestamp-millis`/`-micros`/`-nanos` | an integer in the unit, or an RFC 3339 string (`"2024-05-01T12:00:00.250Z"`, `"2024-05-01T09:00:00-03:00"`); finer precision than the unit is an error |
//! | `local-timestamp-*` | an integer in the unit, or `"2024-05-01T12:00:00[.fff]"` |
//! | `date` | days since 1970-01-01, or `"YYYY-MM-DD"` |
//! | `time-millis`/`time-micros` | an integer |
//! | `enum` | its symbol |
//! | union | the plain value (`null`, `"x"`, the first branch that accepts it), or Avro-JSON's wrapped form `{"string": "x"}` (the key is a branch's type name or full name) |
//! | `bytes`/`fixed` | Avro-JSON's string of characters U+0000–U+00FF, one per byte |
//! | `uuid` | the UUID string |
//! | `duration` | `{"months": m, "days": d, "millis": ms}` |
//! | record | an object; a missing field takes the schema's default (an error if none), an unknown field is an error |
//! | map / array | an object / an array |
//!
//! Errors ([`JsonError`]) name the path of the bad field (`reasons[2].rule_id`) and what was
//! expected. They echo the offending input only when it is short and has no run of 11 or more
//! digits (separators `.-/` and spaces ignored), so a CPF (11 digits) or CNPJ (14), formatted or
//! not, never lands in an error message.
//!
//! # JSON written by [`value_to_json`]
//! Decimals as strings with the schema's scale (`"110.01000000"`), timestamps and times as
//! integers in their unit, dates as `"YYYY-MM-DD"`, enums as symbols, unions unwrapped, bytes as
//! Avro-JSON strings, durations as objects. Non-finite floats become the strings `"NaN"`,
//! `"Infinity"`, `"-Infinity"`. Object keys follow `serde_json::Map`'s order (sorted, unless
//! `serde_json`'s `preserve_order` feature is on, in which case records keep schema order).
//!
//! Schema defaults (missing record fields) follow the Avro specification's default encoding
//! instead: bytes and decimals as strings of code points, a union's default for its first branch.

use super::decimal::{self, DecimalError, DecimalSpec};
use apache_avro::schema::{
    ArraySchema, DecimalSchema, FixedSchema, InnerDecimalSchema, MapSchema, Name, NamespaceRef,
    RecordSchema, ResolvedSchema, UnionSchema, UuidSchema,
};
use apache_avro::types::Value;
use apache_avro::Schema;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
use serde_json::{Map, Number, Value as Json};
use std::collections::HashMap;

/// A JSON value that does not fit the schema: where (`path`, e.g. `reasons[2].rule_id`, empty
/// for the top level) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(path, message))]
pub struct JsonError {
    /// Dotted path of the field, with `[i]` for array items; empty for the top-level value.
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
}

fn render(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

/// Converts a JSON value into an Avro value of `schema` (see the module docs for the accepted
/// JSON). For many values with one schema, build a [`JsonCodec`] once instead.
pub fn json_to_value(schema: &Schema, json: &Json) -> Result<Value, JsonError> {
    JsonCodec::new(schema)?.to_value(json)
}

/// Converts an Avro value of `schema` into JSON (see the module docs). A value that does not
/// match the schema is rendered from the value alone.
pub fn value_to_json(schema: &Schema, value: &Value) -> Json {
    match JsonCodec::new(schema) {
        Ok(codec) => codec.to_json(value),
        Err(_) => JsonCodec::without_names(schema).to_json(value),
    }
}

/// JSON ⇄ Avro conversion for one schema, with its named types resolved once.
#[derive(Debug, Clone)]
pub struct JsonCodec<'s> {
    schema: &'s Schema,
    names: HashMap<Name, &'s Schema>,
}

/// Whether a JSON value is user input or a schema default (Avro's default encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Input,
    Default,
}

/// The JSON path being converted, grown and shrunk as the conversion descends.
struct Path(String);

impl Path {
    fn error(&self, message: impl Into<String>) -> JsonError {
        JsonError {
            path: self.0.clone(),
            message: message.into(),
        }
    }

    fn push_field(&mut self, name: &str) -> usize {
        let len = self.0.len();
        if !self.0.is_empty() {
            self.0.push('.');
        }
        self.0.push_str(name);
        len
    }

    fn push_index(&mut self, index: usize) -> usize {
        let len = self.0.len();
        self.0.push_str(&format!("[{index}]"));
        len
    }

    fn restore(&mut self, len: usize) {
        self.0.truncate(len);
    }
}

impl<'s> JsonCodec<'s> {
    /// A codec for `schema`; errors if the schema has unresolvable or duplicate named types.
    pub fn new(schema: &'s Schema) -> Result<Self, JsonError> {
        let resolved = ResolvedSchema::try_from(schema).map_err(|e| JsonError {
            path: String::new(),
            message: format!("the schema cannot be resolved: {e}"),
        })?;
        let names = resolved
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), *schema))
            .collect();
        Ok(Self { schema, names })
    }

    /// A codec that does not resolve named-type references (cheap to build; a `Ref` in the
    /// schema is then an error on input and rendered from the value alone on output).
    pub(crate) fn without_names(schema: &'s Schema) -> Self {
        Self {
            schema,
            names: HashMap::new(),
        }
    }

    /// The schema this codec converts for.
    pub fn schema(&self) -> &'s Schema {
        self.schema
    }

    /// JSON → Avro value of the schema.
    pub fn to_value(&self, json: &Json) -> Result<Value, JsonError> {
        self.convert(
            self.schema,
            json,
            None,
            Mode::Input,
            &mut Path(String::new()),
        )
    }

    /// Avro value of the schema → JSON.
    pub fn to_json(&self, value: &Value) -> Json {
        self.render(Some(self.schema), value, None)
    }

    /// The value of a schema default (`default` of a record field whose type is `schema`, a part
    /// of this codec's schema), in the Avro specification's default encoding.
    pub fn default_value(&self, schema: &Schema, default: &Json) -> Result<Value, JsonError> {
        self.convert(
            schema,
            default,
            None,
            Mode::Default,
            &mut Path(String::new()),
        )
    }

    fn resolve<'a>(&'a self, name: &Name, ns: NamespaceRef) -> Option<&'a Schema> {
        let full = name.fully_qualified_name(ns);
        self.names
            .get(full.as_ref())
            .or_else(|| self.names.get(name))
            .copied()
    }

    fn convert(
        &self,
        schema: &Schema,
        json: &Json,
        ns: NamespaceRef,
        mode: Mode,
        path: &mut Path,
    ) -> Result<Value, JsonError> {
        let got = || describe(json);
        match schema {
            Schema::Ref { name } => match self.resolve(name, ns) {
                Some(target) => {
                    let target_ns = name.fully_qualified_name(ns).namespace().map(str::to_owned);
                    self.convert(target, json, target_ns.as_deref(), mode, path)
                }
                None => Err(path.error(format!(
                    "the schema refers to the unknown type {}",
                    name.fullname(ns)
                ))),
            },
            Schema::Decimal(spec) => self.decimal(spec, json, mode, path),
            Schema::Enum(e) => {
                let found = json
                    .as_str()
                    .and_then(|s| e.symbols.iter().position(|symbol| symbol == s));
                match found {
                    Some(index) => Ok(Value::Enum(index as u32, e.symbols[index].clone())),
                    None => Err(path.error(format!(
                        "expected one of {}, got {}",
                        e.symbols.join(", "),
                        got()
                    ))),
                }
            }
            Schema::Array(array) => self.array(array, json, ns, mode, path),
            Schema::Map(map) => self.map(map, json, ns, mode, path),
            Schema::Record(record) => self.record(record, json, ns, mode, path),
            Schema::Union(union) => self.union(union, json, ns, mode, path),
            scalar => match primitive(scalar, json, path) {
                Some(converted) => converted,
                None => match logical(scalar, json, mode, path) {
                    Some(converted) => converted,
                    // `primitive` and `logical` between them take every other schema.
                    None => Err(path.error(format!("cannot convert to {}", type_name(scalar)))),
                },
            },
        }
    }

    /// An Avro array from a JSON array, item by item.
    fn array(
        &self,
        array: &ArraySchema,
        json: &Json,
        ns: NamespaceRef,
        mode: Mode,
        path: &mut Path,
    ) -> Result<Value, JsonError> {
        let Json::Array(items) = json else {
            return Err(path.error(format!("expected an array, got {}", describe(json))));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let saved = path.push_index(i);
            out.push(self.convert(&array.items, item, ns, mode, path)?);
            path.restore(saved);
        }
        Ok(Value::Array(out))
    }

    /// An Avro map from a JSON object, entry by entry.
    fn map(
        &self,
        map: &MapSchema,
        json: &Json,
        ns: NamespaceRef,
        mode: Mode,
        path: &mut Path,
    ) -> Result<Value, JsonError> {
        let Json::Object(entries) = json else {
            return Err(path.error(format!("expected an object (map), got {}", describe(json))));
        };
        let mut out = HashMap::with_capacity(entries.len());
        for (key, item) in entries {
            let saved = path.push_field(key);
            out.insert(key.clone(), self.convert(&map.types, item, ns, mode, path)?);
            path.restore(saved);
        }
        Ok(Value::Map(out))
    }

    /// A union's value: in a default, the first branch that fits; in input, null, the wrapped
    /// form `{"<branch>": value}`, or the one non-null branch the value fits.
    fn union(
        &self,
        union: &UnionSchema,
        json: &Json,
        ns: NamespaceRef,
        mode: Mode,
        path: &mut Path,
    ) -> Result<Value, JsonError> {
        let variants = union.variants();
        if mode == Mode::Default {
            // The default is for the first branch; tolerate defaults written for another.
            let mut first_error = None;
            for (i, variant) in variants.iter().enumerate() {
                match self.convert(variant, json, ns, mode, path) {
                    Ok(v) => return Ok(Value::Union(i as u32, Box::new(v))),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            return Err(first_error.unwrap_or_else(|| path.error("empty union")));
        }
        if json.is_null() {
            return match variants.iter().position(|v| matches!(v, Schema::Null)) {
                Some(i) => Ok(Value::Union(i as u32, Box::new(Value::Null))),
                None => Err(path.error(format!(
                    "expected one of {}, got null",
                    self.branch_names(variants, ns).join(", ")
                ))),
            };
        }
        // Avro-JSON's wrapped form: {"<branch type name>": value}.
        if let Json::Object(entries) = json {
            if entries.len() == 1 {
                if let Some((key, inner)) = entries.iter().next() {
                    for (i, variant) in variants.iter().enumerate() {
                        if self.branch_matches(variant, key, ns) {
                            let saved = path.push_field(key);
                            let v = self.convert(variant, inner, ns, mode, path)?;
                            path.restore(saved);
                            return Ok(Value::Union(i as u32, Box::new(v)));
                        }
                    }
                }
            }
        }
        let candidates: Vec<(usize, &Schema)> = variants
            .iter()
            .enumerate()
            .filter(|(_, v)| !matches!(v, Schema::Null))
            .collect();
        let mut errors = Vec::new();
        for &(i, variant) in &candidates {
            match self.convert(variant, json, ns, mode, path) {
                Ok(v) => return Ok(Value::Union(i as u32, Box::new(v))),
                Err(e) => errors.push(e),
            }
        }
        if errors.len() == 1 {
            // One non-null branch: its error is the most precise explanation.
            return Err(errors.remove(0));
        }
        Err(path.error(format!(
            "expected one of {}, got {}",
            self.branch_names(variants, ns).join(", "),
            describe(json)
        )))
    }

    fn decimal(
        &self,
        spec: &DecimalSchema,
        json: &Json,
        mode: Mode,
        path: &mut Path,
    ) -> Result<Value, JsonError> {
        let got = || describe(json);
        let (precision, scale) = (spec.precision as u32, spec.scale as u32);
        let mut bytes = if mode == Mode::Default {
            code_points(json).ok_or_else(|| {
                path.error(format!(
                    "expected a decimal default as a string of characters U+0000 to U+00FF, got {}",
                    got()
                ))
            })?
        } else {
            if matches!(json, Json::Number(n) if !(n.is_i64() || n.is_u64())) {
                return Err(path.error(format!(
                    "expected a decimal as a JSON string (\"1.5\", not 1.5: a JSON number with a fraction may already have been rounded), got {}",
                    got()
                )));
            }
            let text = decimal_text(json).ok_or_else(|| {
                path.error(format!(
                    "expected a decimal as a string such as \"-1234.56\", got {}",
                    got()
                ))
            })?;
            decimal::text_to_bytes(&text, DecimalSpec::new(precision, scale)).map_err(|e| {
                path.error(match e {
                    DecimalError::TooManyPlaces { scale, .. } => format!(
                        "expected a decimal with at most {scale} decimal places, got {}",
                        got()
                    ),
                    DecimalError::Precision { precision, scale, .. } => format!(
                        "expected a decimal with at most {} digits before the decimal point (decimal({precision}, {scale})), got {}",
                        precision.saturating_sub(scale),
                        got()
                    ),
                    _ => format!(
                        "expected a decimal as a string such as \"-1234.56\", got {}",
                        got()
                    ),
                })
            })?
        };
        if let InnerDecimalSchema::Fixed(fixed) = &spec.inner {
            if bytes.len() > fixed.size {
                return Err(path.error(format!(
                    "the decimal needs {} bytes, more than the fixed size {}",
                    bytes.len(),
                    fixed.size
                )));
            }
            let sign = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                0xFF
            } else {
                0x00
            };
            let mut wide = vec![sign; fixed.size - bytes.len()];
            wide.append(&mut bytes);
            bytes = wide;
        }
        Ok(Value::Decimal(apache_avro::Decimal::from(bytes)))
    }

    fn record(
        &self,
        record: &RecordSchema,
        json: &Json,
        ns: NamespaceRef,
        mode: Mode,
        path: &mut Path,
    ) -> Result<Value, JsonError> {
        let full_name = record.name.fullname(ns);
        let Json::Object(entries) = json else {
            return Err(path.error(format!(
                "expected an object (record {full_name}), got {}",
                describe(json)
            )));
        };
        let record_ns = record.name.namespace().or(ns);
        if let Some(unknown) = entries.keys().find(|k| !record.lookup.contains_key(*k)) {
            let saved = path.push_field(unknown);
            let error = path.error(format!(
                "unknown field (the record {full_name} has no such field)"
            ));
            path.restore(saved);
            return Err(error);
        }
        let mut fields = Vec::with_capacity(record.fields.len());
        for field in &record.fields {
            let saved = path.push_field(&field.name);
            let value = match (entries.get(&field.name), &field.default) {
                (Some(json), _) => self.convert(&field.schema, json, record_ns, mode, path)?,
                (None, Some(default)) => {
                    self.convert(&field.schema, default, record_ns, Mode::Default, path)?
                }
                (None, None) => {
                    return Err(path.error("missing (the field has no default)"));
                }
            };
            path.restore(saved);
            fields.push((field.name.clone(), value));
        }
        Ok(Value::Record(fields))
    }

    /// Whether `key` names the union branch `schema` in Avro-JSON's wrapped form.
    fn branch_matches(&self, schema: &Schema, key: &str, ns: NamespaceRef) -> bool {
        match named(schema) {
            Some(name) => key == name.fullname(ns) || key == name.name(),
            None => key == type_name(schema) || key == encoded_type_name(schema),
        }
    }

    fn branch_names(&self, variants: &[Schema], ns: NamespaceRef) -> Vec<String> {
        variants
            .iter()
            .map(|v| match named(v) {
                Some(name) => name.fullname(ns),
                None => type_name(v).to_string(),
            })
            .collect()
    }

    fn render(&self, schema: Option<&Schema>, value: &Value, ns: NamespaceRef) -> Json {
        // Resolve references first.
        if let Some(Schema::Ref { name }) = schema {
            let target = self.resolve(name, ns);
            let target_ns = name.fully_qualified_name(ns).namespace().map(str::to_owned);
            return self.render(target, value, target_ns.as_deref());
        }
        match value {
            Value::Union(index, inner) => {
                let branch = match schema {
                    Some(Schema::Union(u)) => u.variants().get(*index as usize),
                    other => other,
                };
                self.render(branch, inner, ns)
            }
            Value::Null => Json::Null,
            Value::Boolean(b) => Json::Bool(*b),
            Value::Int(v) | Value::TimeMillis(v) => Json::from(*v),
            Value::Long(v)
            | Value::TimeMicros(v)
            | Value::TimestampMillis(v)
            | Value::TimestampMicros(v)
            | Value::TimestampNanos(v)
            | Value::LocalTimestampMillis(v)
            | Value::LocalTimestampMicros(v)
            | Value::LocalTimestampNanos(v) => Json::from(*v),
            Value::Float(f) => float_json(f64::from(*f)),
            Value::Double(f) => float_json(*f),
            Value::Bytes(b) | Value::Fixed(_, b) => match schema {
                Some(Schema::Decimal(d)) => Json::String(decimal::bytes_to_text(b, d.scale as u32)),
                _ => Json::String(b.iter().map(|&c| char::from(c)).collect()),
            },
            Value::Decimal(d) => {
                let scale = match schema {
                    Some(Schema::Decimal(d)) => d.scale as u32,
                    _ => 0,
                };
                match Vec::<u8>::try_from(d) {
                    Ok(bytes) => Json::String(decimal::bytes_to_text(&bytes, scale)),
                    Err(_) => Json::Null,
                }
            }
            Value::BigDecimal(b) => Json::String(b.to_string()),
            Value::String(s) => Json::String(s.clone()),
            Value::Enum(_, symbol) => Json::String(symbol.clone()),
            Value::Uuid(u) => Json::String(u.to_string()),
            Value::Date(days) => {
                match NaiveDate::from_num_days_from_ce_opt(days.saturating_add(EPOCH_DAYS_FROM_CE))
                {
                    Some(date) => Json::String(date.format("%Y-%m-%d").to_string()),
                    None => Json::from(*days),
                }
            }
            Value::Duration(d) => {
                let mut object = Map::new();
                object.insert("months".into(), Json::from(u32::from(d.months())));
                object.insert("days".into(), Json::from(u32::from(d.days())));
                object.insert("millis".into(), Json::from(u32::from(d.millis())));
                Json::Object(object)
            }
            Value::Array(items) => {
                let item_schema = match schema {
                    Some(Schema::Array(a)) => Some(a.items.as_ref()),
                    _ => None,
                };
                Json::Array(
                    items
                        .iter()
                        .map(|v| self.render(item_schema, v, ns))
                        .collect(),
                )
            }
            Value::Map(entries) => {
                let item_schema = match schema {
                    Some(Schema::Map(m)) => Some(m.types.as_ref()),
                    _ => None,
                };
                Json::Object(
                    entries
                        .iter()
                        .map(|(k, v)| (k.clone(), self.render(item_schema, v, ns)))
                        .collect(),
                )
            }
            Value::Record(fields) => {
                let (record, record_ns) = match schema {
                    Some(Schema::Record(r)) => (Some(r), r.name.namespace().or(ns)),
                    _ => (None, ns),
                };
                let mut object = Map::new();
                for (name, v) in fields {
                    let field_schema =
                        record.and_then(|r| r.lookup.get(name).map(|&i| &r.fields[i].schema));
                    object.insert(name.clone(), self.render(field_schema, v, record_ns));
                }
                Json::Object(object)
            }
        }
    }
}

/// Days from 0001-01-01 (CE day 1) to 1970-01-01.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// An Avro fixed of `fixed.size` bytes from a JSON string of code points U+0000 to U+00FF.
fn fixed_value(fixed: &FixedSchema, json: &Json, path: &Path) -> Result<Value, JsonError> {
    let got = || describe(json);
    let bytes = code_points(json).ok_or_else(|| {
        path.error(format!(
            "expected {} bytes as a string of characters U+0000 to U+00FF, got {}",
            fixed.size,
            got()
        ))
    })?;
    if bytes.len() != fixed.size {
        return Err(path.error(format!(
            "expected exactly {} bytes, got {}",
            fixed.size,
            bytes.len()
        )));
    }
    Ok(Value::Fixed(fixed.size, bytes))
}

/// An Avro big decimal from a JSON string.
fn big_decimal(json: &Json, path: &Path) -> Result<Value, JsonError> {
    let got = || describe(json);
    let text = decimal_text(json)
        .ok_or_else(|| path.error(format!("expected a decimal as a string, got {}", got())))?;
    text.parse::<apache_avro::BigDecimal>()
        .map(Value::BigDecimal)
        .map_err(|_| path.error(format!("expected a decimal as a string, got {}", got())))
}

/// A primitive Avro value (null, boolean, numbers, bytes, string, fixed) from JSON; `None`
/// when `schema` is not one of those.
fn primitive(schema: &Schema, json: &Json, path: &Path) -> Option<Result<Value, JsonError>> {
    let got = || describe(json);
    Some(match schema {
        Schema::Null => match json {
            Json::Null => Ok(Value::Null),
            _ => Err(path.error(format!("expected null, got {}", got()))),
        },
        Schema::Boolean => match json {
            Json::Bool(b) => Ok(Value::Boolean(*b)),
            _ => Err(path.error(format!("expected a boolean, got {}", got()))),
        },
        Schema::Int => int(json)
            .map(Value::Int)
            .ok_or_else(|| path.error(format!("expected an int (32-bit integer), got {}", got()))),
        Schema::Long => long(json)
            .map(Value::Long)
            .ok_or_else(|| path.error(format!("expected a long (64-bit integer), got {}", got()))),
        Schema::Float => number(json)
            .map(|f| Value::Float(f as f32))
            .ok_or_else(|| path.error(format!("expected a number, got {}", got()))),
        Schema::Double => number(json)
            .map(Value::Double)
            .ok_or_else(|| path.error(format!("expected a number, got {}", got()))),
        Schema::Bytes => code_points(json).map(Value::Bytes).ok_or_else(|| {
            path.error(format!(
                "expected bytes as a string of characters U+0000 to U+00FF, got {}",
                got()
            ))
        }),
        Schema::String => match json {
            Json::String(s) => Ok(Value::String(s.clone())),
            _ => Err(path.error(format!("expected a string, got {}", got()))),
        },
        Schema::Fixed(fixed) => fixed_value(fixed, json, path),
        _ => return None,
    })
}

/// An Avro logical value (big decimal, UUID, date, times, timestamps, duration) from JSON;
/// `None` when `schema` is not one of those (a fixed-scale decimal has its own converter).
fn logical(
    schema: &Schema,
    json: &Json,
    mode: Mode,
    path: &Path,
) -> Option<Result<Value, JsonError>> {
    let got = || describe(json);
    Some(match schema {
        Schema::BigDecimal => big_decimal(json, path),
        Schema::Uuid(kind) => {
            let parsed = match (kind, mode) {
                (UuidSchema::String, _) | (_, Mode::Input) => json
                    .as_str()
                    .and_then(|s| apache_avro::Uuid::parse_str(s).ok()),
                (UuidSchema::Bytes | UuidSchema::Fixed(_), Mode::Default) => {
                    code_points(json).and_then(|b| apache_avro::Uuid::from_slice(&b).ok())
                }
            };
            parsed
                .map(Value::Uuid)
                .ok_or_else(|| path.error(format!("expected a UUID string, got {}", got())))
        }
        Schema::Date => date(json).map(Value::Date).ok_or_else(|| {
            path.error(format!(
                "expected a date as \"YYYY-MM-DD\" or days since 1970-01-01, got {}",
                got()
            ))
        }),
        Schema::TimeMillis => int(json).map(Value::TimeMillis).ok_or_else(|| {
            path.error(format!(
                "expected a time of day in milliseconds, got {}",
                got()
            ))
        }),
        Schema::TimeMicros => long(json).map(Value::TimeMicros).ok_or_else(|| {
            path.error(format!(
                "expected a time of day in microseconds, got {}",
                got()
            ))
        }),
        Schema::TimestampMillis => {
            timestamp(json, Unit::Millis, false, path).map(Value::TimestampMillis)
        }
        Schema::TimestampMicros => {
            timestamp(json, Unit::Micros, false, path).map(Value::TimestampMicros)
        }
        Schema::TimestampNanos => {
            timestamp(json, Unit::Nanos, false, path).map(Value::TimestampNanos)
        }
        Schema::LocalTimestampMillis => {
            timestamp(json, Unit::Millis, true, path).map(Value::LocalTimestampMillis)
        }
        Schema::LocalTimestampMicros => {
            timestamp(json, Unit::Micros, true, path).map(Value::LocalTimestampMicros)
        }
        Schema::LocalTimestampNanos => {
            timestamp(json, Unit::Nanos, true, path).map(Value::LocalTimestampNanos)
        }
        Schema::Duration(_) => duration(json, mode).map(Value::Duration).ok_or_else(|| {
            path.error(format!(
                "expected a duration as {{\"months\": m, \"days\": d, \"millis\": ms}}, got {}",
                got()
            ))
        }),
        _ => return None,
    })
}

fn named(schema: &Schema) -> Option<&Name> {
    match schema {
        Schema::Record(r) => Some(&r.name),
        Schema::Enum(e) => Some(&e.name),
        Schema::Fixed(f) => Some(&f.name),
        Schema::Ref { name } => Some(name),
        _ => None,
    }
}

/// The Avro type name of a schema, logical types included (`timestamp-millis`), for messages.
pub(crate) fn type_name(schema: &Schema) -> &'static str {
    match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int => "int",
        Schema::Long => "long",
        Schema::Float => "float",
        Schema::Double => "double",
        Schema::Bytes => "bytes",
        Schema::String => "string",
        Schema::Array(_) => "array",
        Schema::Map(_) => "map",
        Schema::Union(_) => "union",
        Schema::Record(_) => "record",
        Schema::Enum(_) => "enum",
        Schema::Fixed(_) => "fixed",
        Schema::Decimal(_) => "decimal",
        Schema::BigDecimal => "big-decimal",
        Schema::Uuid(_) => "uuid",
        Schema::Date => "date",
        Schema::TimeMillis => "time-millis",
        Schema::TimeMicros => "time-micros",
        Schema::TimestampMillis => "timestamp-millis",
        Schema::TimestampMicros => "timestamp-micros",
        Schema::TimestampNanos => "timestamp-nanos",
        Schema::LocalTimestampMillis => "local-timestamp-millis",
        Schema::LocalTimestampMicros => "local-timestamp-micros",
        Schema::LocalTimestampNanos => "local-timestamp-nanos",
        Schema::Duration(_) => "duration",
        Schema::Ref { .. } => "reference",
    }
}

/// The underlying (wire) type name of an unnamed schema, as Avro-JSON's union wrapper uses it
/// (`long` for `timestamp-millis`).
fn encoded_type_name(schema: &Schema) -> &'static str {
    match schema {
        Schema::Date | Schema::TimeMillis => "int",
        Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "long",
        Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Bytes,
            ..
        })
        | Schema::BigDecimal
        | Schema::Uuid(UuidSchema::Bytes) => "bytes",
        Schema::Uuid(UuidSchema::String) => "string",
        other => type_name(other),
    }
}

/// A short description of a JSON value for messages. Strings and numbers are echoed only when
/// at most 40 characters long and without a run of 11 or more digits (ignoring `.`, `-`, `/` and
/// spaces between them), so a CPF or CNPJ, formatted or not, is never repeated back.
fn describe(json: &Json) -> String {
    fn echo(text: &str, quoted: bool) -> String {
        let chars = text.chars().count();
        if chars <= 40 && !has_document_like_run(text) {
            if quoted {
                format!("{text:?}")
            } else {
                text.to_string()
            }
        } else if quoted {
            format!("a string of {chars} characters")
        } else {
            format!("a number of {} characters", text.len())
        }
    }
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => echo(&n.to_string(), false),
        Json::String(s) => echo(s, true),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

/// Whether `text` holds 11 or more digits in a row, separators `.`, `-`, `/` and spaces ignored
/// (the shape of a CPF, 11 digits, or a CNPJ, 14).
fn has_document_like_run(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 11 {
                return true;
            }
        } else if !matches!(c, '.' | '-' | '/' | ' ') {
            run = 0;
        }
    }
    false
}

fn int(json: &Json) -> Option<i32> {
    json.as_i64().and_then(|v| i32::try_from(v).ok())
}

fn long(json: &Json) -> Option<i64> {
    json.as_i64()
}

fn number(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn float_json(f: f64) -> Json {
    match Number::from_f64(f) {
        Some(n) => Json::Number(n),
        None if f.is_nan() => Json::String("NaN".into()),
        None if f > 0.0 => Json::String("Infinity".into()),
        None => Json::String("-Infinity".into()),
    }
}

/// Avro-JSON bytes: a string whose characters are U+0000..=U+00FF, one per byte.
fn code_points(json: &Json) -> Option<Vec<u8>> {
    json.as_str()?
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect()
}

/// The text of a decimal given as a string or a JSON integer.
fn decimal_text(json: &Json) -> Option<String> {
    match json {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

fn date(json: &Json) -> Option<i32> {
    match json {
        Json::Number(_) => int(json),
        Json::String(s) => {
            let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            date.num_days_from_ce().checked_sub(EPOCH_DAYS_FROM_CE)
        }
        _ => None,
    }
}

fn duration(json: &Json, mode: Mode) -> Option<apache_avro::Duration> {
    use apache_avro::{Days, Duration, Millis, Months};
    if mode == Mode::Default {
        let bytes: [u8; 12] = code_points(json)?.try_into().ok()?;
        return Some(Duration::from(bytes));
    }
    let Json::Object(entries) = json else {
        return None;
    };
    if entries
        .keys()
        .any(|k| !matches!(k.as_str(), "months" | "days" | "millis"))
    {
        return None;
    }
    let part = |key: &str| -> Option<u32> {
        match entries.get(key) {
            None => Some(0),
            Some(v) => v.as_u64().and_then(|v| u32::try_from(v).ok()),
        }
    };
    Some(Duration::new(
        Months::new(part("months")?),
        Days::new(part("days")?),
        Millis::new(part("millis")?),
    ))
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Millis,
    Micros,
    Nanos,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Millis => "milliseconds",
            Unit::Micros => "microseconds",
            Unit::Nanos => "nanoseconds",
        }
    }

    /// Nanoseconds per unit.
    fn nanos(self) -> u32 {
        match self {
            Unit::Millis => 1_000_000,
            Unit::Micros => 1_000,
            Unit::Nanos => 1,
        }
    }
}

fn timestamp(json: &Json, unit: Unit, local: bool, path: &Path) -> Result<i64, JsonError> {
    let expected = if local {
        format!(
            "expected a local timestamp as \"YYYY-MM-DDTHH:MM:SS[.fff]\" or {} since 1970-01-01T00:00:00",
            unit.name()
        )
    } else {
        format!(
            "expected a timestamp as an RFC 3339 string (\"2024-05-01T12:00:00Z\") or {} since the Unix epoch",
            unit.name()
        )
    };
    let text = match json {
        Json::Number(_) => {
            return long(json)
                .ok_or_else(|| path.error(format!("{expected}, got {}", describe(json))))
        }
        Json::String(s) => s,
        _ => return Err(path.error(format!("{expected}, got {}", describe(json)))),
    };
    let utc = if local {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|t| t.and_utc())
    } else {
        DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
    };
    let utc = utc.ok_or_else(|| path.error(format!("{expected}, got {}", describe(json))))?;
    if utc.timestamp_subsec_nanos() % unit.nanos() != 0 {
        return Err(path.error(format!(
            "{} has a finer precision than {}",
            describe(json),
            unit.name()
        )));
    }
    let value = match unit {
        Unit::Millis => Some(utc.timestamp_millis()),
        Unit::Micros => Some(utc.timestamp_micros()),
        Unit::Nanos => utc.timestamp_nanos_opt(),
    };
    value.ok_or_else(|| {
        path.error(format!(
            "{} is out of range for {}",
            describe(json),
            unit.name()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(text: &str) -> Schema {
        Schema::parse_str(text).unwrap()
    }

    fn err(schema: &Schema, json: Json) -> String {
        json_to_value(schema, &json).unwrap_err().to_string()
    }

    const MONEY_RECORD: &str = r#"{"type": "record", "name": "M", "fields": [
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 18, "scale": 2}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}}
    ]}"#;

    #[test]
    fn decimals_from_strings_and_integers_exactly() {
        let s = schema(MONEY_RECORD);
        let v = json_to_value(&s, &json!({"amount": "110.01", "at": 0, "day": 0})).unwrap();
        let Value::Record(fields) = &v else { panic!() };
        assert_eq!(
            fields[0].1,
            Value::Decimal(apache_avro::Decimal::from(vec![0x2A, 0xF9]))
        );
        let v = json_to_value(&s, &json!({"amount": 7, "at": 0, "day": 0})).unwrap();
        assert_eq!(value_to_json(&s, &v)["amount"], json!("7.00"));
        let v = json_to_value(&s, &json!({"amount": "-0.50", "at": 0, "day": 0})).unwrap();
        assert_eq!(value_to_json(&s, &v)["amount"], json!("-0.50"));
    }

    #[test]
    fn decimal_errors_name_the_field() {
        let s = schema(MONEY_RECORD);
        assert_eq!(
            err(&s, json!({"amount": "1.234", "at": 0, "day": 0})),
            "amount: expected a decimal with at most 2 decimal places, got \"1.234\""
        );
        assert_eq!(
            err(&s, json!({"amount": 1.5, "at": 0, "day": 0})),
            "amount: expected a decimal as a JSON string (\"1.5\", not 1.5: a JSON number with a fraction may already have been rounded), got 1.5"
        );
        assert_eq!(
            err(&s, json!({"amount": "12345678901234567", "at": 0, "day": 0})),
            "amount: expected a decimal with at most 16 digits before the decimal point (decimal(18, 2)), got a string of 17 characters"
        );
        assert_eq!(
            err(&s, json!({"amount": "1e3", "at": 0, "day": 0})),
            "amount: expected a decimal as a string such as \"-1234.56\", got \"1e3\""
        );
        assert_eq!(
            err(&s, json!({"amount": true, "at": 0, "day": 0})),
            "amount: expected a decimal as a string such as \"-1234.56\", got true"
        );
        // A CPF typed into the wrong field is not echoed.
        assert_eq!(
            err(&s, json!({"amount": "123.456.789-09", "at": 0, "day": 0})),
            "amount: expected a decimal as a string such as \"-1234.56\", got a string of 14 characters"
        );
    }

    #[test]
    fn documents_are_never_echoed() {
        for document in [
            "52998224725",
            "529.982.247-25",
            "11.222.333/0001-81",
            "11222333000181",
        ] {
            assert!(has_document_like_run(document), "{document}");
            assert_eq!(
                describe(&json!(document)),
                format!("a string of {} characters", document.len())
            );
        }
        assert_eq!(
            describe(&json!(52_998_224_725_i64)),
            "a number of 11 characters"
        );
        for fine in [
            "2024-05-01T09:00:00.250Z",
            "1.234",
            "1234567890",
            "PIXX",
            "a 1234567890 b 1",
        ] {
            assert!(!has_document_like_run(fine), "{fine}");
        }
        assert_eq!(describe(&json!("1.234")), "\"1.234\"");
    }

    #[test]
    fn timestamps_and_dates_both_ways() {
        let s = schema(MONEY_RECORD);
        let v = json_to_value(
            &s,
            &json!({"amount": "1", "at": "2024-05-01T09:00:00.250-03:00", "day": "2024-05-01"}),
        )
        .unwrap();
        let Value::Record(fields) = &v else { panic!() };
        assert_eq!(fields[1].1, Value::TimestampMillis(1_714_564_800_250));
        assert_eq!(fields[2].1, Value::Date(19_844));
        assert_eq!(
            value_to_json(&s, &v),
            json!({"amount": "1.00", "at": 1_714_564_800_250_i64, "day": "2024-05-01"})
        );
        let v2 = json_to_value(
            &s,
            &json!({"amount": "1", "at": 1_714_564_800_250_i64, "day": 19_844}),
        )
        .unwrap();
        assert_eq!(v, v2);
        assert_eq!(
            err(
                &s,
                json!({"amount": "1", "at": "2024-05-01T09:00:00.2501Z", "day": 0})
            ),
            "at: \"2024-05-01T09:00:00.2501Z\" has a finer precision than milliseconds"
        );
        assert_eq!(
            err(&s, json!({"amount": "1", "at": "yesterday", "day": 0})),
            "at: expected a timestamp as an RFC 3339 string (\"2024-05-01T12:00:00Z\") or milliseconds since the Unix epoch, got \"yesterday\""
        );
        assert_eq!(
            err(&s, json!({"amount": "1", "at": 0, "day": "2024-13-01"})),
            "day: expected a date as \"YYYY-MM-DD\" or days since 1970-01-01, got \"2024-13-01\""
        );
        assert_eq!(
            value_to_json(&Schema::Date, &Value::Date(-1)),
            json!("1969-12-31")
        );
    }

    #[test]
    fn records_defaults_unknown_and_missing_fields() {
        let s = schema(
            r#"{"type": "record", "name": "R", "namespace": "x", "fields": [
                {"name": "id", "type": ["null", "string"], "default": null},
                {"name": "n", "type": "long"},
                {"name": "note", "type": "string", "default": ""},
                {"name": "fee", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}, "default": "\u0001"}
            ]}"#,
        );
        let v = json_to_value(&s, &json!({"n": 5})).unwrap();
        assert_eq!(
            v,
            Value::Record(vec![
                ("id".into(), Value::Union(0, Box::new(Value::Null))),
                ("n".into(), Value::Long(5)),
                ("note".into(), Value::String(String::new())),
                (
                    "fee".into(),
                    Value::Decimal(apache_avro::Decimal::from(vec![1]))
                ),
            ])
        );
        assert_eq!(
            value_to_json(&s, &v),
            json!({"id": null, "n": 5, "note": "", "fee": "0.01"})
        );
        assert_eq!(
            err(&s, json!({"n": 5, "nn": 1})),
            "nn: unknown field (the record x.R has no such field)"
        );
        assert_eq!(
            err(&s, json!({"id": "a"})),
            "n: missing (the field has no default)"
        );
        assert_eq!(
            err(&s, json!({"n": "5"})),
            "n: expected a long (64-bit integer), got \"5\""
        );
        assert_eq!(
            err(&s, json!([1])),
            "expected an object (record x.R), got an array"
        );
    }

    #[test]
    fn unions_plain_null_and_wrapped() {
        let s =
            schema(r#"["null", "string", {"type": "long", "logicalType": "timestamp-millis"}]"#);
        assert_eq!(
            json_to_value(&s, &json!(null)).unwrap(),
            Value::Union(0, Box::new(Value::Null))
        );
        assert_eq!(
            json_to_value(&s, &json!("x")).unwrap(),
            Value::Union(1, Box::new(Value::String("x".into())))
        );
        assert_eq!(
            json_to_value(&s, &json!(5)).unwrap(),
            Value::Union(2, Box::new(Value::TimestampMillis(5)))
        );
        assert_eq!(
            json_to_value(&s, &json!({"string": "x"})).unwrap(),
            Value::Union(1, Box::new(Value::String("x".into())))
        );
        assert_eq!(
            json_to_value(&s, &json!({"long": 7})).unwrap(),
            Value::Union(2, Box::new(Value::TimestampMillis(7)))
        );
        assert_eq!(
            err(&s, json!(true)),
            "expected one of null, string, timestamp-millis, got true"
        );
        assert_eq!(
            err(&s, json!({"string": 5})),
            "string: expected a string, got 5"
        );
        assert_eq!(
            value_to_json(&s, &Value::Union(1, Box::new(Value::String("x".into())))),
            json!("x")
        );
        // A nullable field with a single other branch reports that branch's error.
        let opt = schema(r#"["null", "int"]"#);
        assert_eq!(
            err(&opt, json!("x")),
            "expected an int (32-bit integer), got \"x\""
        );
        let no_null = schema(r#"["int", "string"]"#);
        assert_eq!(
            err(&no_null, json!(null)),
            "expected one of int, string, got null"
        );
    }

    #[test]
    fn nested_paths_enums_arrays_maps() {
        let s = schema(
            r#"{"type": "record", "name": "D", "fields": [
                {"name": "decision", "type": {"type": "enum", "name": "Decision", "symbols": ["APPROVE", "REJECT"]}},
                {"name": "reasons", "type": {"type": "array", "items": {"type": "record", "name": "Reason",
                    "fields": [{"name": "rule_id", "type": "string"}, {"name": "points", "type": "int"}]}}},
                {"name": "tags", "type": {"type": "map", "values": "string"}},
                {"name": "again", "type": ["null", "Reason"], "default": null}
            ]}"#,
        );
        let good = json!({
            "decision": "REJECT",
            "reasons": [{"rule_id": "a", "points": 1}, {"rule_id": "b", "points": 2}],
            "tags": {"k": "v"},
            "again": {"rule_id": "c", "points": 3}
        });
        let v = json_to_value(&s, &good).unwrap();
        assert_eq!(value_to_json(&s, &v), good);
        assert!(v.validate(&s));
        let mut bad = good.clone();
        bad["reasons"][1]["rule_id"] = json!(5);
        assert_eq!(err(&s, bad), "reasons[1].rule_id: expected a string, got 5");
        let mut bad = good.clone();
        bad["decision"] = json!("MAYBE");
        assert_eq!(
            err(&s, bad),
            "decision: expected one of APPROVE, REJECT, got \"MAYBE\""
        );
        let mut bad = good.clone();
        bad["tags"]["k"] = json!(1);
        assert_eq!(err(&s, bad), "tags.k: expected a string, got 1");
        let mut bad = good.clone();
        bad["again"] = json!({"Reason": {"rule_id": "c"}});
        assert_eq!(
            err(&s, bad),
            "again.Reason.points: missing (the field has no default)"
        );
        let mut wrapped = good.clone();
        wrapped["again"] = json!({"Reason": {"rule_id": "c", "points": 3}});
        assert_eq!(json_to_value(&s, &wrapped).unwrap(), v);
    }

    #[test]
    fn other_primitives_and_logical_types() {
        assert_eq!(
            json_to_value(&Schema::Bytes, &json!("a\u{ff}")).unwrap(),
            Value::Bytes(vec![b'a', 0xFF])
        );
        assert_eq!(
            value_to_json(&Schema::Bytes, &Value::Bytes(vec![b'a', 0xFF])),
            json!("a\u{ff}")
        );
        assert_eq!(
            err(&Schema::Bytes, json!("\u{100}")),
            "expected bytes as a string of characters U+0000 to U+00FF, got \"Ā\""
        );
        assert_eq!(
            json_to_value(&Schema::Double, &json!(1.5)).unwrap(),
            Value::Double(1.5)
        );
        assert_eq!(
            value_to_json(&Schema::Double, &Value::Double(f64::NAN)),
            json!("NaN")
        );
        assert_eq!(
            err(&Schema::Int, json!(3_000_000_000_i64)),
            "expected an int (32-bit integer), got 3000000000"
        );
        // Long numbers are not echoed (could be a CPF).
        assert_eq!(
            err(&Schema::Int, json!(12_345_678_909_i64)),
            "expected an int (32-bit integer), got a number of 11 characters"
        );
        let uuid = schema(r#"{"type": "string", "logicalType": "uuid"}"#);
        let v = json_to_value(&uuid, &json!("550e8400-e29b-41d4-a716-446655440000")).unwrap();
        assert_eq!(
            value_to_json(&uuid, &v),
            json!("550e8400-e29b-41d4-a716-446655440000")
        );
        let fixed_dec = schema(
            r#"{"type": "fixed", "name": "F", "size": 4, "logicalType": "decimal", "precision": 9, "scale": 2}"#,
        );
        let v = json_to_value(&fixed_dec, &json!("-1.28")).unwrap();
        assert_eq!(
            v,
            Value::Decimal(apache_avro::Decimal::from(vec![0xFF, 0xFF, 0xFF, 0x80]))
        );
        assert_eq!(value_to_json(&fixed_dec, &v), json!("-1.28"));
        let bytes = super::super::typed::encode_value(&fixed_dec, &v).unwrap();
        assert_eq!(bytes, vec![0xFF, 0xFF, 0xFF, 0x80]);
        let local = schema(r#"{"type": "long", "logicalType": "local-timestamp-micros"}"#);
        assert_eq!(
            json_to_value(&local, &json!("1970-01-01T00:00:01.000002")).unwrap(),
            Value::LocalTimestampMicros(1_000_002)
        );
        let dur =
            schema(r#"{"type": "fixed", "name": "Dur", "size": 12, "logicalType": "duration"}"#);
        let v = json_to_value(&dur, &json!({"months": 1, "days": 2, "millis": 3})).unwrap();
        assert_eq!(
            value_to_json(&dur, &v),
            json!({"months": 1, "days": 2, "millis": 3})
        );
        let big =
            schema(r#"{"type": "bytes", "logicalType": "decimal", "precision": 50, "scale": 5}"#);
        let text = "-1234567890123456789012345678901234567890.12345";
        let v = json_to_value(&big, &json!(text)).unwrap();
        assert_eq!(value_to_json(&big, &v), json!(text));
    }

    #[test]
    fn json_round_trips_through_binary() {
        let s = schema(MONEY_RECORD);
        let input = json!({"amount": "-99.99", "at": 1_700_000_000_123_i64, "day": "2023-11-14"});
        let v = json_to_value(&s, &input).unwrap();
        let bytes = super::super::typed::encode_value(&s, &v).unwrap();
        let back = super::super::typed::decode_value(&s, &bytes).unwrap();
        assert_eq!(value_to_json(&s, &back), input);
    }
}
