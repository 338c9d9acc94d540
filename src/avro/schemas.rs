//! The catalogue of fluxo's event schemas, compiled in from `schemas/*.avsc` and parsed once.
//!
//! Each entry is named after its Avro record (`AssetPrice`), which is also the Rust type's name
//! in [`fluxo_processors::events`]. All schemas live in the `br.com.fluxo` namespace.

use apache_avro::Schema;
use std::sync::OnceLock;

/// One event schema as compiled into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSchema {
    /// The record name, e.g. `AssetPrice` (also the Rust type's name).
    pub name: &'static str,
    /// The file under `schemas/`, e.g. `asset_price.avsc`.
    pub file: &'static str,
    /// The schema text.
    pub json: &'static str,
}

impl EventSchema {
    /// The parsed schema (`None` only for an `EventSchema` built by hand with an unknown name).
    pub fn schema(&self) -> Option<&'static Schema> {
        schema_for(self.name)
    }

    /// The record's full name, e.g. `br.com.fluxo.AssetPrice`.
    pub fn full_name(&self) -> String {
        format!("{NAMESPACE}.{}", self.name)
    }
}

/// Namespace of every fluxo record.
pub const NAMESPACE: &str = "br.com.fluxo";

macro_rules! event_schema {
    ($name:literal, $file:literal) => {
        EventSchema {
            name: $name,
            file: $file,
            json: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/", $file)),
        }
    };
}

/// Index of each schema in [`all`], for the typed impls.
pub(crate) const ASSET_PRICE: usize = 0;
pub(crate) const PRICE_ALERT: usize = 1;
pub(crate) const BELOW_AVERAGE_EVENT: usize = 2;
pub(crate) const TRANSACTION: usize = 3;
pub(crate) const BLACKLIST_ENTRY: usize = 4;
pub(crate) const RISK_DECISION: usize = 5;
pub(crate) const LEDGER_ENTRY: usize = 6;
pub(crate) const DAILY_BALANCE: usize = 7;

static ALL: [EventSchema; 8] = [
    event_schema!("AssetPrice", "asset_price.avsc"),
    event_schema!("PriceAlert", "price_alert.avsc"),
    event_schema!("BelowAverageEvent", "below_average_event.avsc"),
    event_schema!("Transaction", "transaction.avsc"),
    event_schema!("BlacklistEntry", "blacklist_entry.avsc"),
    event_schema!("RiskDecision", "risk_decision.avsc"),
    event_schema!("LedgerEntry", "ledger_entry.avsc"),
    event_schema!("DailyBalance", "daily_balance.avsc"),
];

/// All event schemas, in a fixed order.
pub fn all() -> &'static [EventSchema] {
    &ALL
}

/// The parsed schemas, in the order of [`all`].
fn parsed() -> &'static [Schema] {
    static PARSED: OnceLock<Vec<Schema>> = OnceLock::new();
    PARSED.get_or_init(|| {
        ALL.iter()
            .map(|s| {
                // The texts are compiled in and never change at run time; the test
                // `every_schema_parses_and_is_named_after_its_entry` parses each one, so a broken
                // file fails the build's tests, not production.
                Schema::parse_str(s.json).expect("a compiled-in fluxo schema failed to parse")
            })
            .collect()
    })
}

/// The parsed schema at `index` of [`all`] (one of the constants above).
pub(crate) fn get(index: usize) -> &'static Schema {
    &parsed()[index]
}

/// The parsed schema of the record `name` (`"AssetPrice"`, or the full name
/// `"br.com.fluxo.AssetPrice"`), or `None` if fluxo has no such event.
pub fn schema_for(name: &str) -> Option<&'static Schema> {
    let short = name
        .strip_prefix(NAMESPACE)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(name);
    ALL.iter().position(|s| s.name == short).map(get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses_and_is_named_after_its_entry() {
        assert_eq!(all().len(), 8);
        for entry in all() {
            let schema = Schema::parse_str(entry.json).unwrap();
            let Schema::Record(record) = &schema else {
                panic!("{} is not a record", entry.file);
            };
            assert_eq!(record.name.name(), entry.name, "{}", entry.file);
            assert_eq!(record.name.namespace(), Some(NAMESPACE), "{}", entry.file);
            assert_eq!(entry.schema(), Some(&schema));
            assert_eq!(schema_for(entry.name), entry.schema());
            assert_eq!(schema_for(&entry.full_name()), entry.schema());
        }
    }

    #[test]
    fn the_index_constants_point_at_their_schemas() {
        let expected = [
            (ASSET_PRICE, "AssetPrice"),
            (PRICE_ALERT, "PriceAlert"),
            (BELOW_AVERAGE_EVENT, "BelowAverageEvent"),
            (TRANSACTION, "Transaction"),
            (BLACKLIST_ENTRY, "BlacklistEntry"),
            (RISK_DECISION, "RiskDecision"),
            (LEDGER_ENTRY, "LedgerEntry"),
            (DAILY_BALANCE, "DailyBalance"),
        ];
        for (index, name) in expected {
            assert_eq!(all()[index].name, name);
            assert_eq!(get(index).name().map(|n| n.name()), Some(name));
        }
    }

    #[test]
    fn the_files_on_disk_are_all_catalogued() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".avsc"))
            .collect();
        on_disk.sort();
        let mut catalogued: Vec<String> = all().iter().map(|s| s.file.to_string()).collect();
        catalogued.sort();
        assert_eq!(on_disk, catalogued);
        assert_eq!(schema_for("Nope"), None);
        assert_eq!(schema_for("br.com.fluxo.Nope"), None);
    }
}
