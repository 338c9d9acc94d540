//! The entry points of fluxo's fuzz targets, shared by the libFuzzer binaries
//! (`fuzz/fuzz_targets/`, nightly) and by the corpus replay test (`tests/fuzz_corpus.rs`), so
//! every committed corpus file and every past crash is re-run by `cargo test` on stable. See
//! FUZZING.md.
//!
//! Each function takes arbitrary bytes and must never panic; the only assertions are the
//! invariants stated on each.

use crate::avro::schemas;
use crate::avro::typed::{decode_datum, decode_value, encode_value};
use fluxo_processors::events::{
    AssetPrice, BelowAverageEvent, BlacklistEntry, DailyBalance, LedgerEntry, PriceAlert,
    RiskDecision, Transaction,
};

/// The fluxo schema picked by `selector` (any byte: modulo the number of schemas).
fn schema_of(selector: u8) -> &'static apache_avro::Schema {
    let all = schemas::all();
    let e = &all[usize::from(selector) % all.len()];
    schemas::schema_for(e.name).expect("every fluxo schema parses")
}

/// Unframe `data[1..]` and decode it with the schema picked by `data[0]`, both generically and
/// into the typed event of that schema.
pub fn avro_decode(data: &[u8]) {
    let Some((&selector, framed)) = data.split_first() else {
        return;
    };
    let Ok((_id, datum)) = crate::avro::unframe(framed) else {
        return;
    };
    let schema = schema_of(selector);
    let _ = decode_value(schema, datum);
    let all = schemas::all();
    match usize::from(selector) % all.len() {
        0 => drop(decode_datum::<AssetPrice>(schema, datum)),
        1 => drop(decode_datum::<PriceAlert>(schema, datum)),
        2 => drop(decode_datum::<BelowAverageEvent>(schema, datum)),
        3 => drop(decode_datum::<Transaction>(schema, datum)),
        4 => drop(decode_datum::<BlacklistEntry>(schema, datum)),
        5 => drop(decode_datum::<RiskDecision>(schema, datum)),
        6 => drop(decode_datum::<LedgerEntry>(schema, datum)),
        _ => drop(decode_datum::<DailyBalance>(schema, datum)),
    }
}

/// One JSON line into the Avro value of the schema picked by `data[0]`, as `fluxo produce`
/// does. Invariant: a value it accepts encodes, and the datum decodes back.
pub fn json_to_avro(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(line) = std::str::from_utf8(rest) else {
        return;
    };
    let schema = schema_of(selector);
    let Ok((_key, value)) = crate::cli::produce::json_line(schema, line, Some("symbol")) else {
        return;
    };
    let datum = encode_value(schema, &value).expect("an accepted line encodes");
    decode_value(schema, &datum).expect("what produce writes decodes");
}

/// Parse and validate a topology.
pub fn topology(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::config::Topology::parse(text, "fuzz.toml", &crate::config::Overrides::default());
}

/// Two schema texts separated by `0xff`; each is checked as the reader of the other.
pub fn registry_compat(data: &[u8]) {
    let mut parts = data.splitn(2, |b| *b == 0xff);
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Ok(a), Ok(b)) = (std::str::from_utf8(a), std::str::from_utf8(b)) else {
        return;
    };
    use fluxo_registry::compat::{reader_incompatibilities, ParsedSchema};
    let (Ok(a), Ok(b)) = (ParsedSchema::parse(a, &[]), ParsedSchema::parse(b, &[])) else {
        return;
    };
    for i in reader_incompatibilities(&a, &b)
        .iter()
        .chain(reader_incompatibilities(&b, &a).iter())
    {
        let _ = i.describe(true);
    }
    // A schema is always compatible with itself.
    assert!(
        reader_incompatibilities(&a, &a).is_empty(),
        "a schema must read its own data"
    );
}

/// Minify and canonicalise a schema text. Invariant: for valid JSON, minifying does not change
/// the value nor the identity.
pub fn registry_canonical(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    use fluxo_registry::canonical::{minify, schema_key};
    use fluxo_registry::types::SchemaInfo;
    let info = |schema: String| SchemaInfo {
        schema,
        schema_type: "AVRO".into(),
        references: Vec::new(),
    };
    let key = schema_key(&info(text.to_string()));
    if serde_json::from_str::<serde_json::Value>(text).is_ok() {
        let min = minify(text);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&min).ok(),
            serde_json::from_str::<serde_json::Value>(text).ok(),
            "minify changed the JSON"
        );
        assert_eq!(
            schema_key(&info(min)).ok(),
            key.ok(),
            "minify changed the identity"
        );
    }
}

/// The `Authorization` header value → bearer token → HS256 verification. Invariant: random
/// input is never a valid token.
pub fn jwt_bearer(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    static AUTH: std::sync::OnceLock<crate::api::auth::Auth> = std::sync::OnceLock::new();
    let auth = AUTH.get_or_init(|| {
        crate::api::auth::Auth::hs256(b"fuzzing secret of at least thirty-two bytes")
            .expect("a valid secret")
    });
    let token = crate::api::auth::bearer_token(header).unwrap_or(header);
    assert!(!auth.verify(token), "a fuzzed token verified");
}
