//! Unit tests of the compatibility rules, one Avro resolution rule per test.

use super::*;

fn p(text: &str) -> ParsedSchema {
    ParsedSchema::parse(text, &[]).expect("test schema parses")
}

/// The (errorType, location, info) triples of reading `writer` data with `reader`.
fn diff(reader: &str, writer: &str) -> Vec<(&'static str, String, String)> {
    reader_incompatibilities(&p(reader), &p(writer))
        .into_iter()
        .map(|i| (i.kind.as_str(), i.location, i.info))
        .collect()
}

fn ok(reader: &str, writer: &str) {
    assert_eq!(
        diff(reader, writer),
        vec![],
        "reader {reader} / writer {writer}"
    );
}

fn record(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"R","namespace":"t","fields":[{fields}]}}"#)
}

fn field(ty: &str) -> String {
    record(&format!(r#"{{"name":"a","type":{ty}}}"#))
}

fn mismatch(r: &str, w: &str) -> (&'static str, String, String) {
    (
        "TYPE_MISMATCH",
        "/fields/0/type".to_string(),
        format!("reader type: {r} not compatible with writer type: {w}"),
    )
}

#[test]
fn added_field_needs_a_default() {
    let old = record(r#"{"name":"a","type":"string"}"#);
    let with_default =
        record(r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#);
    let without = record(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#);
    ok(&with_default, &old);
    assert_eq!(
        diff(&without, &old),
        vec![(
            "READER_FIELD_MISSING_DEFAULT_VALUE",
            "/fields/1".to_string(),
            "b".to_string()
        )]
    );
    // a null default is a default
    ok(
        &record(
            r#"{"name":"a","type":"string"},{"name":"b","type":["null","int"],"default":null}"#,
        ),
        &old,
    );
}

#[test]
fn removed_fields_are_skipped_by_the_reader() {
    let old = record(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#);
    let new = record(r#"{"name":"a","type":"string"}"#);
    ok(&new, &old);
    // ... but the old reader misses `b` in new data
    assert_eq!(diff(&old, &new)[0].0, "READER_FIELD_MISSING_DEFAULT_VALUE");
}

#[test]
fn primitive_promotions() {
    for (r, w) in [
        (r#""long""#, r#""int""#),
        (r#""float""#, r#""int""#),
        (r#""double""#, r#""int""#),
        (r#""float""#, r#""long""#),
        (r#""double""#, r#""long""#),
        (r#""double""#, r#""float""#),
        (r#""bytes""#, r#""string""#),
        (r#""string""#, r#""bytes""#),
        (r#""int""#, r#""int""#),
    ] {
        ok(&field(r), &field(w));
    }
    assert_eq!(
        diff(&field(r#""int""#), &field(r#""long""#)),
        vec![mismatch("INT", "LONG")]
    );
    assert_eq!(
        diff(&field(r#""float""#), &field(r#""double""#)),
        vec![mismatch("FLOAT", "DOUBLE")]
    );
    assert_eq!(
        diff(&field(r#""int""#), &field(r#""string""#)),
        vec![mismatch("INT", "STRING")]
    );
    assert_eq!(
        diff(&field(r#""boolean""#), &field(r#""null""#)),
        vec![mismatch("BOOLEAN", "NULL")]
    );
}

#[test]
fn logical_types_are_read_as_their_physical_type() {
    let ts = r#"{"type":"long","logicalType":"timestamp-millis"}"#;
    ok(&field(ts), &field(r#""long""#));
    ok(&field(r#""long""#), &field(ts));
    let date = r#"{"type":"int","logicalType":"date"}"#;
    ok(&field(ts), &field(date));
    assert_eq!(
        diff(&field(date), &field(ts)),
        vec![mismatch("INT", "LONG")]
    );
}

#[test]
fn decimals_must_keep_precision_and_scale() {
    let d = |p: u32, s: u32| {
        format!(r#"{{"type":"bytes","logicalType":"decimal","precision":{p},"scale":{s}}}"#)
    };
    ok(&field(&d(18, 2)), &field(&d(18, 2)));
    ok(&field(&d(18, 2)), &field(r#""bytes""#));
    let expected = |r: (u32, u32), w: (u32, u32)| {
        vec![(
            "TYPE_MISMATCH",
            "/fields/0/type".to_string(),
            format!(
                "reader decimal({},{}) not compatible with writer decimal({},{})",
                r.0, r.1, w.0, w.1
            ),
        )]
    };
    assert_eq!(
        diff(&field(&d(18, 4)), &field(&d(18, 2))),
        expected((18, 4), (18, 2))
    );
    assert_eq!(
        diff(&field(&d(20, 2)), &field(&d(18, 2))),
        expected((20, 2), (18, 2))
    );
}

#[test]
fn enums_need_every_writer_symbol_or_a_default() {
    let e = |symbols: &str, default: &str| {
        field(&format!(
            r#"{{"type":"enum","name":"E","symbols":[{symbols}]{default}}}"#
        ))
    };
    ok(&e(r#""A","B","C""#, ""), &e(r#""A","B""#, ""));
    assert_eq!(
        diff(&e(r#""A""#, ""), &e(r#""A","C","B""#, "")),
        vec![(
            "MISSING_ENUM_SYMBOLS",
            "/fields/0/type/symbols".to_string(),
            "[B, C]".to_string()
        )]
    );
    ok(&e(r#""A","U""#, r#","default":"U""#), &e(r#""A","B""#, ""));
    let renamed = field(r#"{"type":"enum","name":"F","symbols":["A"]}"#);
    assert_eq!(
        diff(&renamed, &e(r#""A""#, "")),
        vec![(
            "NAME_MISMATCH",
            "/fields/0/type/name".to_string(),
            "expected: t.E".to_string()
        )]
    );
}

#[test]
fn unions() {
    let s = r#""string""#;
    let ns = r#"["null","string"]"#;
    ok(&field(ns), &field(s));
    ok(&field(r#"["null","long"]"#), &field(r#"["null","int"]"#));
    ok(&field(r#"["string","null","int"]"#), &field(ns));
    // writer union with a branch the reader cannot read
    assert_eq!(
        diff(
            &field(r#"["null","string"]"#),
            &field(r#"["null","string","int"]"#)
        ),
        vec![(
            "MISSING_UNION_BRANCH",
            "/fields/0/type/2".to_string(),
            "reader union lacking writer type: INT".to_string()
        )]
    );
    // non-union reader of a union writer: every branch must be readable
    assert_eq!(
        diff(&field(s), &field(ns)),
        vec![mismatch("STRING", "NULL")]
    );
    // union reader with no branch for the writer type
    assert_eq!(
        diff(&field(r#"["null","int"]"#), &field(s)),
        vec![(
            "MISSING_UNION_BRANCH",
            "/fields/0/type".to_string(),
            "reader union lacking writer type: STRING".to_string()
        )]
    );
}

#[test]
fn nested_records_arrays_and_maps() {
    let inner = |fields: &str| {
        field(&format!(
            r#"{{"type":"array","items":{{"type":"map","values":{{"type":"record","name":"I","fields":[{fields}]}}}}}}"#
        ))
    };
    let v1 = inner(r#"{"name":"x","type":"int"}"#);
    ok(&inner(r#"{"name":"x","type":"long"}"#), &v1);
    ok(
        &inner(r#"{"name":"x","type":"int"},{"name":"y","type":"string","default":""}"#),
        &v1,
    );
    assert_eq!(
        diff(
            &inner(r#"{"name":"x","type":"int"},{"name":"y","type":"string"}"#),
            &v1
        ),
        vec![(
            "READER_FIELD_MISSING_DEFAULT_VALUE",
            "/fields/0/type/items/values/fields/1".to_string(),
            "y".to_string()
        )]
    );
    assert_eq!(
        diff(
            &field(r#"{"type":"array","items":"int"}"#),
            &field(r#"{"type":"map","values":"int"}"#)
        ),
        vec![mismatch("ARRAY", "MAP")]
    );
}

#[test]
fn fixed_sizes_and_names() {
    let f = |name: &str, size: u32, aliases: &str| {
        field(&format!(
            r#"{{"type":"fixed","name":"{name}","size":{size}{aliases}}}"#
        ))
    };
    ok(&f("F", 4, ""), &f("F", 4, ""));
    assert_eq!(
        diff(&f("F", 8, ""), &f("F", 4, "")),
        vec![(
            "FIXED_SIZE_MISMATCH",
            "/fields/0/type/size".to_string(),
            "expected: 4, found: 8".to_string()
        )]
    );
    assert_eq!(diff(&f("G", 4, ""), &f("F", 4, ""))[0].0, "NAME_MISMATCH");
    ok(&f("G", 4, r#","aliases":["F"]"#), &f("F", 4, ""));
}

#[test]
fn renamed_field_through_reader_alias() {
    let old = record(r#"{"name":"a","type":"int"}"#);
    ok(
        &record(r#"{"name":"b","aliases":["a"],"type":"int"}"#),
        &old,
    );
    assert_eq!(
        diff(&record(r#"{"name":"b","type":"int"}"#), &old)[0].0,
        "READER_FIELD_MISSING_DEFAULT_VALUE"
    );
}

#[test]
fn recursive_types_terminate() {
    let list = |extra: &str| {
        format!(
            r#"{{"type":"record","name":"Node","fields":[{{"name":"v","type":"int"}}{extra},{{"name":"next","type":["null","Node"],"default":null}}]}}"#
        )
    };
    ok(&list(""), &list(""));
    ok(
        &list(r#",{"name":"w","type":"long","default":0}"#),
        &list(""),
    );
    assert_eq!(
        diff(&list(r#",{"name":"w","type":"long"}"#), &list("")),
        vec![(
            "READER_FIELD_MISSING_DEFAULT_VALUE",
            "/fields/1".to_string(),
            "w".to_string()
        )]
    );
}

#[test]
fn references_resolve_named_types_from_other_schemas() {
    let money_v1 = r#"{"type":"record","name":"Money","namespace":"t","fields":[{"name":"units","type":"long"}]}"#;
    let money_v2 = r#"{"type":"record","name":"Money","namespace":"t","fields":[{"name":"units","type":"long"},{"name":"cur","type":"string"}]}"#;
    let main = r#"{"type":"record","name":"Pay","namespace":"t","fields":[{"name":"m","type":"t.Money"}]}"#;
    let v1 = ParsedSchema::parse(main, &[money_v1.to_string()]).expect("parses");
    let v2 = ParsedSchema::parse(main, &[money_v2.to_string()]).expect("parses");
    assert!(reader_incompatibilities(&v1, &v1).is_empty());
    assert_eq!(
        reader_incompatibilities(&v2, &v1),
        vec![Incompatibility {
            kind: IncompatibilityKind::ReaderFieldMissingDefaultValue,
            location: "/fields/0/type/fields/1".into(),
            info: "cur".into()
        }]
    );
    assert!(ParsedSchema::parse(main, &[]).is_err());
}

#[test]
fn describe_renders_confluent_differences() {
    let inc = Incompatibility {
        kind: IncompatibilityKind::ReaderFieldMissingDefaultValue,
        location: "/fields/1".into(),
        info: "b".into(),
    };
    assert_eq!(
        inc.describe(true),
        "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'b' at path '/fields/1' in the new schema has no default value and is missing in the old schema', additionalInfo:'b'}"
    );
    assert!(inc
        .describe(false)
        .contains("in the old schema has no default value and is missing in the new schema"));
}

#[test]
fn levels_parse_case_insensitively() {
    assert_eq!(
        CompatibilityLevel::parse("full_transitive"),
        Some(CompatibilityLevel::FullTransitive)
    );
    assert_eq!(
        CompatibilityLevel::parse("NONE"),
        Some(CompatibilityLevel::None)
    );
    assert_eq!(CompatibilityLevel::parse("SIDEWAYS"), None);
    assert_eq!(CompatibilityLevel::default().as_str(), "BACKWARD");
    for l in CompatibilityLevel::ALL {
        assert_eq!(CompatibilityLevel::parse(l.as_str()), Some(l));
    }
    let full = CompatibilityLevel::Full;
    assert!(full.checks_backward() && full.checks_forward() && !full.is_transitive());
}
