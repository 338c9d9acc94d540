//! Avro schema-resolution compatibility, as Confluent (Avro Java's `SchemaCompatibility`) checks it.
//!
//! [`reader_incompatibilities`] lists why a reader schema cannot read data written with a writer
//! schema (empty = compatible). The rules follow the Avro specification's schema resolution and
//! Avro Java's checker: names must match (unqualified, or through a reader alias), records match
//! fields by name or reader field alias and need a default for reader fields missing in the
//! writer, writer fields absent in the reader are skipped, enums need every writer symbol (or a
//! reader default), fixed sizes must match, `int→long→float→double` and `string↔bytes` promote,
//! every writer union branch must be readable and a non-union writer needs one matching reader
//! branch. Logical types are read as their underlying type, except that two decimals must agree
//! on precision and scale (otherwise the value would be read at the wrong scale).
//!
//! `apache_avro::schema_compatibility` exists but is not used: it accepts "partially"
//! compatible schemas (missing enum symbols, missing union branches) that Confluent rejects,
//! cannot follow named references across schemas, and gives no path for the error.

use apache_avro::schema::{DecimalSchema, FixedSchema, InnerDecimalSchema, UuidSchema};
use apache_avro::Schema;
use std::collections::{BTreeSet, HashMap, HashSet};

/// A Confluent compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatibilityLevel {
    /// No check.
    None,
    /// The new schema reads data written with the latest one.
    #[default]
    Backward,
    /// The new schema reads data written with every live version.
    BackwardTransitive,
    /// The latest schema reads data written with the new one.
    Forward,
    /// Every live version reads data written with the new one.
    ForwardTransitive,
    /// Backward and forward against the latest version.
    Full,
    /// Backward and forward against every live version.
    FullTransitive,
}

impl CompatibilityLevel {
    /// All levels, in Confluent's documentation order.
    pub const ALL: [Self; 7] = [
        Self::None,
        Self::Backward,
        Self::BackwardTransitive,
        Self::Forward,
        Self::ForwardTransitive,
        Self::Full,
        Self::FullTransitive,
    ];

    /// The upper-case name Confluent uses (`"BACKWARD_TRANSITIVE"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Parses a level name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether the check runs against every live version rather than only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    /// Whether the new schema must read the old ones.
    pub fn checks_backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// Whether the old schemas must read the new one.
    pub fn checks_forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

/// A parsed Avro schema together with the schemas it references (Confluent `references`).
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    /// The schema itself.
    pub schema: Schema,
    /// The referenced named schemas, resolvable from [`Schema::Ref`]s inside `schema`.
    pub references: Vec<Schema>,
}

impl ParsedSchema {
    /// Parses `text`, resolving names against the `references` schema texts.
    pub fn parse(text: &str, references: &[String]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if references.is_empty() {
            let schema = Schema::parse(&value).map_err(|e| e.to_string())?;
            Ok(Self {
                schema,
                references: Vec::new(),
            })
        } else {
            let (schema, references) =
                Schema::parse_str_with_list(text, references).map_err(|e| e.to_string())?;
            Ok(Self { schema, references })
        }
    }
}

/// The kind of an incompatibility, named as in Avro Java / Confluent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncompatibilityKind {
    /// Named types with different names.
    NameMismatch,
    /// Fixed types of different sizes.
    FixedSizeMismatch,
    /// The reader enum lacks writer symbols and has no default.
    MissingEnumSymbols,
    /// A reader field absent from the writer has no default.
    ReaderFieldMissingDefaultValue,
    /// Types that do not resolve (including a decimal precision/scale change).
    TypeMismatch,
    /// A writer type no reader union branch can read.
    MissingUnionBranch,
}

impl IncompatibilityKind {
    /// Confluent's `errorType` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NameMismatch => "NAME_MISMATCH",
            Self::FixedSizeMismatch => "FIXED_SIZE_MISMATCH",
            Self::MissingEnumSymbols => "MISSING_ENUM_SYMBOLS",
            Self::ReaderFieldMissingDefaultValue => "READER_FIELD_MISSING_DEFAULT_VALUE",
            Self::TypeMismatch => "TYPE_MISMATCH",
            Self::MissingUnionBranch => "MISSING_UNION_BRANCH",
        }
    }
}

/// One reason a reader cannot read a writer's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// What is wrong.
    pub kind: IncompatibilityKind,
    /// JSON-pointer-like path in the reader schema (`/fields/1/type`).
    pub location: String,
    /// Detail: the field name, the missing symbols, the mismatching types.
    pub info: String,
}

impl Incompatibility {
    /// Confluent's rendering, `{errorType:'...', description:'...', additionalInfo:'...'}`,
    /// where the reader is called "new" if `reader_is_new` (a backward check) and "old" otherwise.
    pub fn describe(&self, reader_is_new: bool) -> String {
        let (r, w) = if reader_is_new {
            ("new", "old")
        } else {
            ("old", "new")
        };
        let (loc, info) = (&self.location, &self.info);
        let description = match self.kind {
            IncompatibilityKind::NameMismatch => {
                format!("The name of the schema has changed (path '{loc}')")
            }
            IncompatibilityKind::FixedSizeMismatch => format!(
                "The size of FIXED type field at path '{loc}' in the {r} schema does not match with the {w} schema"
            ),
            IncompatibilityKind::MissingEnumSymbols => format!(
                "The {r} schema is missing enum symbols '{info}' at path '{loc}' in the {w} schema"
            ),
            IncompatibilityKind::ReaderFieldMissingDefaultValue => format!(
                "The field '{info}' at path '{loc}' in the {r} schema has no default value and is missing in the {w} schema"
            ),
            IncompatibilityKind::TypeMismatch => format!(
                "The type (path '{loc}') of a field in the {r} schema does not match with the {w} schema"
            ),
            IncompatibilityKind::MissingUnionBranch => format!(
                "The {r} schema is missing a type inside a union field at path '{loc}' in the {w} schema"
            ),
        };
        format!(
            "{{errorType:'{}', description:'{description}', additionalInfo:'{info}'}}",
            self.kind.as_str()
        )
    }
}

/// Why `reader` cannot read data written with `writer`; empty when it can.
pub fn reader_incompatibilities(
    reader: &ParsedSchema,
    writer: &ParsedSchema,
) -> Vec<Incompatibility> {
    let mut checker = Checker {
        reader_names: names_of(reader),
        writer_names: names_of(writer),
        in_progress: HashSet::new(),
    };
    let mut out = Vec::new();
    checker.check(&reader.schema, &writer.schema, &mut Vec::new(), &mut out);
    out
}

/// The underlying Avro type of a schema, logical types reduced to their physical type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed,
    Enum,
    Record,
    Array,
    Map,
    Union,
    /// An unresolvable reference (cannot happen after a successful parse).
    Unknown,
}

impl Kind {
    fn of(schema: &Schema) -> Self {
        match schema {
            Schema::Null => Self::Null,
            Schema::Boolean => Self::Boolean,
            Schema::Int | Schema::Date | Schema::TimeMillis => Self::Int,
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Self::Long,
            Schema::Float => Self::Float,
            Schema::Double => Self::Double,
            Schema::Bytes
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::Bytes)
            | Schema::Decimal(DecimalSchema {
                inner: InnerDecimalSchema::Bytes,
                ..
            }) => Self::Bytes,
            Schema::String | Schema::Uuid(UuidSchema::String) => Self::String,
            Schema::Fixed(_)
            | Schema::Duration(_)
            | Schema::Uuid(UuidSchema::Fixed(_))
            | Schema::Decimal(DecimalSchema {
                inner: InnerDecimalSchema::Fixed(_),
                ..
            }) => Self::Fixed,
            Schema::Enum(_) => Self::Enum,
            Schema::Record(_) => Self::Record,
            Schema::Array(_) => Self::Array,
            Schema::Map(_) => Self::Map,
            Schema::Union(_) => Self::Union,
            Schema::Ref { .. } => Self::Unknown,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Boolean => "BOOLEAN",
            Self::Int => "INT",
            Self::Long => "LONG",
            Self::Float => "FLOAT",
            Self::Double => "DOUBLE",
            Self::Bytes => "BYTES",
            Self::String => "STRING",
            Self::Fixed => "FIXED",
            Self::Enum => "ENUM",
            Self::Record => "RECORD",
            Self::Array => "ARRAY",
            Self::Map => "MAP",
            Self::Union => "UNION",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Whether a reader of kind `self` can read a writer of kind `writer` by promotion.
    fn promotes_from(self, writer: Self) -> bool {
        matches!(
            (self, writer),
            (Self::Long, Self::Int)
                | (Self::Float, Self::Int | Self::Long)
                | (Self::Double, Self::Int | Self::Long | Self::Float)
                | (Self::Bytes, Self::String)
                | (Self::String, Self::Bytes)
        )
    }
}

fn fixed_of(schema: &Schema) -> Option<&FixedSchema> {
    match schema {
        Schema::Fixed(f)
        | Schema::Duration(f)
        | Schema::Uuid(UuidSchema::Fixed(f))
        | Schema::Decimal(DecimalSchema {
            inner: InnerDecimalSchema::Fixed(f),
            ..
        }) => Some(f),
        _ => None,
    }
}

/// Every named type defined in a parsed schema (and its references), by full name.
fn names_of(parsed: &ParsedSchema) -> HashMap<String, &Schema> {
    fn walk<'a>(schema: &'a Schema, names: &mut HashMap<String, &'a Schema>) {
        if let Some(f) = fixed_of(schema) {
            names.insert(f.name.fullname(None), schema);
        }
        match schema {
            Schema::Record(r) => {
                names.insert(r.name.fullname(None), schema);
                for field in &r.fields {
                    walk(&field.schema, names);
                }
            }
            Schema::Enum(e) => {
                names.insert(e.name.fullname(None), schema);
            }
            Schema::Array(a) => walk(&a.items, names),
            Schema::Map(m) => walk(&m.types, names),
            Schema::Union(u) => u.variants().iter().for_each(|v| walk(v, names)),
            _ => {}
        }
    }
    let mut names = HashMap::new();
    for s in parsed
        .references
        .iter()
        .chain(std::iter::once(&parsed.schema))
    {
        walk(s, &mut names);
    }
    names
}

struct Checker<'a> {
    reader_names: HashMap<String, &'a Schema>,
    writer_names: HashMap<String, &'a Schema>,
    /// Pairs of named types being compared; meeting one again (recursion) counts as compatible.
    in_progress: HashSet<(String, String)>,
}

fn resolve<'a>(schema: &'a Schema, names: &HashMap<String, &'a Schema>) -> &'a Schema {
    match schema {
        Schema::Ref { name } => names.get(&name.fullname(None)).copied().unwrap_or(schema),
        _ => schema,
    }
}

fn location(path: &[String]) -> String {
    format!("/{}", path.join("/"))
}

fn push(out: &mut Vec<Incompatibility>, kind: IncompatibilityKind, path: &[String], info: String) {
    out.push(Incompatibility {
        kind,
        location: location(path),
        info,
    });
}

impl<'a> Checker<'a> {
    /// Whether `reader` reads `writer`, without reporting.
    fn compatible(&mut self, reader: &'a Schema, writer: &'a Schema) -> bool {
        let mut out = Vec::new();
        self.check(reader, writer, &mut Vec::new(), &mut out);
        out.is_empty()
    }

    fn check(
        &mut self,
        reader: &'a Schema,
        writer: &'a Schema,
        path: &mut Vec<String>,
        out: &mut Vec<Incompatibility>,
    ) {
        let reader = resolve(reader, &self.reader_names);
        let writer = resolve(writer, &self.writer_names);
        let (rk, wk) = (Kind::of(reader), Kind::of(writer));
        if rk == wk {
            self.check_same_kind(reader, writer, rk, path, out);
        } else if let Schema::Union(w) = writer {
            for branch in w.variants() {
                self.check(reader, branch, path, out);
            }
        } else if let Schema::Union(r) = reader {
            if !r.variants().iter().any(|b| self.compatible(b, writer)) {
                let info = format!("reader union lacking writer type: {}", wk.name());
                push(out, IncompatibilityKind::MissingUnionBranch, path, info);
            }
        } else if !rk.promotes_from(wk) {
            type_mismatch(rk, wk, path, out);
        }
    }

    fn check_same_kind(
        &mut self,
        reader: &'a Schema,
        writer: &'a Schema,
        kind: Kind,
        path: &mut Vec<String>,
        out: &mut Vec<Incompatibility>,
    ) {
        if let (Schema::Decimal(r), Schema::Decimal(w)) = (reader, writer) {
            if (r.precision, r.scale) != (w.precision, w.scale) {
                let info = format!(
                    "reader decimal({},{}) not compatible with writer decimal({},{})",
                    r.precision, r.scale, w.precision, w.scale
                );
                push(out, IncompatibilityKind::TypeMismatch, path, info);
            }
        }
        match (reader, writer) {
            (Schema::Array(r), Schema::Array(w)) => {
                path.push("items".into());
                self.check(&r.items, &w.items, path, out);
                path.pop();
            }
            (Schema::Map(r), Schema::Map(w)) => {
                path.push("values".into());
                self.check(&r.types, &w.types, path, out);
                path.pop();
            }
            (Schema::Union(_), Schema::Union(w)) => {
                for (i, branch) in w.variants().iter().enumerate() {
                    if !self.compatible(reader, branch) {
                        path.push(i.to_string());
                        let info = format!(
                            "reader union lacking writer type: {}",
                            Kind::of(branch).name()
                        );
                        push(out, IncompatibilityKind::MissingUnionBranch, path, info);
                        path.pop();
                    }
                }
            }
            (Schema::Enum(r), Schema::Enum(w)) => {
                self.check_name(reader, writer, path, out);
                let missing: BTreeSet<&String> = w
                    .symbols
                    .iter()
                    .filter(|s| !r.symbols.contains(s))
                    .collect();
                let has_default = r.default.as_ref().is_some_and(|d| r.symbols.contains(d));
                if !missing.is_empty() && !has_default {
                    path.push("symbols".into());
                    let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                    let info = format!("[{}]", list.join(", "));
                    push(out, IncompatibilityKind::MissingEnumSymbols, path, info);
                    path.pop();
                }
            }
            (Schema::Record(r), Schema::Record(w)) => {
                let key = (r.name.fullname(None), w.name.fullname(None));
                if !self.in_progress.insert(key.clone()) {
                    return;
                }
                self.check_name(reader, writer, path, out);
                path.push("fields".into());
                for (i, rf) in r.fields.iter().enumerate() {
                    path.push(i.to_string());
                    let wf = std::iter::once(&rf.name)
                        .chain(rf.aliases.iter())
                        .find_map(|n| w.fields.iter().find(|wf| &wf.name == n));
                    match wf {
                        Some(wf) => {
                            path.push("type".into());
                            self.check(&rf.schema, &wf.schema, path, out);
                            path.pop();
                        }
                        None if rf.default.is_none() => {
                            let kind = IncompatibilityKind::ReaderFieldMissingDefaultValue;
                            push(out, kind, path, rf.name.clone());
                        }
                        None => {}
                    }
                    path.pop();
                }
                path.pop();
                self.in_progress.remove(&key);
            }
            _ if kind == Kind::Fixed => {
                self.check_name(reader, writer, path, out);
                if let (Some(r), Some(w)) = (fixed_of(reader), fixed_of(writer)) {
                    if r.size != w.size {
                        path.push("size".into());
                        let info = format!("expected: {}, found: {}", w.size, r.size);
                        push(out, IncompatibilityKind::FixedSizeMismatch, path, info);
                        path.pop();
                    }
                }
            }
            _ if kind == Kind::Unknown => type_mismatch(kind, kind, path, out),
            _ => {}
        }
    }

    /// Named types must share their unqualified name, or the reader must alias the writer.
    fn check_name(
        &self,
        reader: &Schema,
        writer: &Schema,
        path: &mut Vec<String>,
        out: &mut Vec<Incompatibility>,
    ) {
        let (Some(rn), Some(wn)) = (named(reader), named(writer)) else {
            return;
        };
        let aliased = reader.aliases().is_some_and(|aliases| {
            aliases
                .iter()
                .any(|a| a.fullname(rn.namespace()) == wn.fullname(None))
        });
        if rn.name() != wn.name() && !aliased {
            path.push("name".into());
            let info = format!("expected: {}", wn.fullname(None));
            push(out, IncompatibilityKind::NameMismatch, path, info);
            path.pop();
        }
    }
}

fn named(schema: &Schema) -> Option<&apache_avro::schema::Name> {
    match schema {
        Schema::Record(r) => Some(&r.name),
        Schema::Enum(e) => Some(&e.name),
        _ => fixed_of(schema).map(|f| &f.name),
    }
}

fn type_mismatch(rk: Kind, wk: Kind, path: &[String], out: &mut Vec<Incompatibility>) {
    let info = format!(
        "reader type: {} not compatible with writer type: {}",
        rk.name(),
        wk.name()
    );
    push(out, IncompatibilityKind::TypeMismatch, path, info);
}

#[cfg(test)]
mod tests;
