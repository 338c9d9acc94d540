//! The catalog of processor kinds: what each kind reads and writes, its typed parameters, the
//! stores it declares and the view it materializes.
//!
//! Every `match` over [`Kind`] in fluxo is exhaustive, so adding a kind makes the compiler name
//! each place that must handle it (bindings, views, replay diff, `fluxo topology describe`).
//! This module depends only on the processors crate: the topology loader ([`crate::config`])
//! uses it to validate a processor and to parse its parameters once, without calling into the
//! runtime.

use fluxo_processors::{below_average, consolidation, price_change, risk, views};
use std::fmt;
use std::str::FromStr;

/// A processor kind, as named by `kind = "..."` in topology.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Alerts when a price rises more than a threshold inside an event-time window.
    PriceChange,
    /// Events when a price crosses below its historical average.
    BelowAverage,
    /// Scores every transaction against the blacklist and behaviour rules.
    RiskScoring,
    /// Daily consolidated balance per account.
    DailyConsolidation,
}

/// The schemas a kind reads and writes, and how many group inputs it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// The schema of its group inputs.
    pub input: &'static str,
    /// The schema of its global inputs (tables every instance reads whole), if it has any.
    pub global_input: Option<&'static str>,
    /// The schema of its one output topic.
    pub output: &'static str,
    /// True when it reads exactly one group input topic.
    pub single_input: bool,
}

impl Kind {
    /// Every kind, in the order `fluxo topology describe` lists them.
    pub const ALL: [Kind; 4] = [
        Kind::PriceChange,
        Kind::BelowAverage,
        Kind::RiskScoring,
        Kind::DailyConsolidation,
    ];

    /// Its name in topology.toml, metrics and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PriceChange => "price-change",
            Kind::BelowAverage => "below-average",
            Kind::RiskScoring => "risk-scoring",
            Kind::DailyConsolidation => "daily-consolidation",
        }
    }

    /// What it reads and writes.
    pub fn shape(self) -> Shape {
        let (input, global_input, output, single_input) = match self {
            Kind::PriceChange => ("AssetPrice", None, "PriceAlert", false),
            Kind::BelowAverage => ("AssetPrice", None, "BelowAverageEvent", false),
            Kind::RiskScoring => ("Transaction", Some("BlacklistEntry"), "RiskDecision", true),
            Kind::DailyConsolidation => ("LedgerEntry", None, "DailyBalance", false),
        };
        Shape {
            input,
            global_input,
            output,
            single_input,
        }
    }

    /// The stores (state tables) the kind's processor writes, by local name. The processor
    /// writes them as `<kind>/<store>`; the runtime keeps them as `<processor name>/<store>`
    /// (see [`StoreNamespace`]), so two processors of one kind never share state.
    pub fn stores(self) -> &'static [&'static str] {
        match self {
            Kind::PriceChange => &["symbols", "held"],
            Kind::BelowAverage => &["symbols", "sma-chunks", "held"],
            Kind::RiskScoring => &["blacklist", "payers"],
            Kind::DailyConsolidation => &["entries", "accounts", "day-ids"],
        }
    }

    /// The view (queryable table) its outputs are materialized into.
    pub fn view(self) -> &'static str {
        match self {
            Kind::PriceChange => views::PRICE_ALERTS,
            Kind::BelowAverage => views::BELOW_AVERAGE_EVENTS,
            Kind::RiskScoring => views::RISK_DECISIONS,
            Kind::DailyConsolidation => views::DAILY_BALANCES,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let known: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown processor kind `{s}`; known: {}", known.join(", "))
            })
    }
}

/// A processor's parameters, parsed and validated once when the topology loads.
#[derive(Debug, Clone)]
pub enum Params {
    /// `price-change`.
    PriceChange(price_change::Config),
    /// `below-average`.
    BelowAverage(below_average::Config),
    /// `risk-scoring`.
    RiskScoring(Box<risk::Config>),
    /// `daily-consolidation`.
    DailyConsolidation(consolidation::Config),
}

impl Params {
    /// Parse and validate `table` (a processor's `[params]`) for `kind`.
    ///
    /// # Errors
    /// A [`ParamError`] naming the key under the processor.
    pub fn parse(kind: Kind, table: &toml::Table) -> Result<Self, ParamError> {
        Ok(match kind {
            Kind::PriceChange => {
                Params::PriceChange(checked(table, price_change::Config::validate)?)
            }
            Kind::BelowAverage => {
                Params::BelowAverage(checked(table, below_average::Config::validate)?)
            }
            Kind::RiskScoring => {
                Params::RiskScoring(Box::new(checked(table, risk::Config::validate)?))
            }
            Kind::DailyConsolidation => {
                Params::DailyConsolidation(checked(table, consolidation::Config::validate)?)
            }
        })
    }

    /// The kind these parameters belong to.
    pub fn kind(&self) -> Kind {
        match self {
            Params::PriceChange(_) => Kind::PriceChange,
            Params::BelowAverage(_) => Kind::BelowAverage,
            Params::RiskScoring(_) => Kind::RiskScoring,
            Params::DailyConsolidation(_) => Kind::DailyConsolidation,
        }
    }
}

/// A processor-config problem: the key under `processors.<name>.` and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// Key below the processor, e.g. `params.window`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Parse a `params` table into a processor's `Config`.
///
/// # Errors
/// A [`ParamError`] naming the key.
pub fn parse_params<C: serde::de::DeserializeOwned>(params: &toml::Table) -> Result<C, ParamError> {
    C::deserialize(toml::Value::Table(params.clone())).map_err(|e| {
        let message = e.message().to_string();
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .map(|f| format!("params.{f}"))
            .unwrap_or_else(|| "params".to_string());
        ParamError {
            key: field,
            message,
        }
    })
}

fn checked<C: serde::de::DeserializeOwned>(
    table: &toml::Table,
    validate: impl Fn(&C) -> Result<(), String>,
) -> Result<C, ParamError> {
    let c: C = parse_params(table)?;
    validate(&c).map_err(|message| ParamError {
        key: "params".into(),
        message,
    })?;
    Ok(c)
}

/// Maps the store names a processor writes (`<kind>/<store>`) to the names the runtime keeps
/// (`<processor name>/<store>`). Tables outside the kind's prefix (views) pass unchanged.
///
/// When a processor is named after its kind (as in the shipped topology) the mapping is the
/// identity, so state written before stores were namespaced is found again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreNamespace {
    kind_prefix: String,
    name_prefix: String,
}

impl StoreNamespace {
    /// The namespace of processor `name` of `kind`.
    pub fn new(kind: Kind, name: &str) -> Self {
        Self {
            kind_prefix: format!("{}/", kind.name()),
            name_prefix: format!("{name}/"),
        }
    }

    /// The prefix every store of this processor has in the state store (`<name>/`).
    pub fn prefix(&self) -> &str {
        &self.name_prefix
    }

    /// True when the namespace renames nothing.
    pub fn is_identity(&self) -> bool {
        self.kind_prefix == self.name_prefix
    }

    /// The stored name of `table` as the processor names it.
    pub fn map<'a>(&self, table: &'a str) -> std::borrow::Cow<'a, str> {
        match table.strip_prefix(&self.kind_prefix) {
            Some(store) if !self.is_identity() => format!("{}{store}", self.name_prefix).into(),
            _ => table.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for k in Kind::ALL {
            assert_eq!(k.name().parse::<Kind>().unwrap(), k);
        }
        let e = "price-changes".parse::<Kind>().unwrap_err();
        assert!(e.contains("known: price-change, below-average"), "{e}");
    }

    #[test]
    fn the_processors_write_under_their_kind_and_declared_stores() {
        let declared = |k: Kind, table: &str| {
            let store = table.strip_prefix(&format!("{}/", k.name())).unwrap();
            assert!(k.stores().contains(&store), "{table} not declared by {k}");
        };
        declared(Kind::PriceChange, price_change::SYMBOLS_TABLE);
        declared(Kind::PriceChange, price_change::HELD_TABLE);
        declared(Kind::BelowAverage, below_average::SYMBOLS_TABLE);
        declared(Kind::BelowAverage, below_average::HELD_TABLE);
        declared(Kind::BelowAverage, below_average::SMA_CHUNKS_TABLE);
        declared(Kind::RiskScoring, risk::store::BLACKLIST_TABLE);
        declared(Kind::RiskScoring, risk::store::PAYERS_TABLE);
        declared(Kind::DailyConsolidation, consolidation::ENTRIES_TABLE);
        declared(Kind::DailyConsolidation, consolidation::ACCOUNTS_TABLE);
        declared(Kind::DailyConsolidation, consolidation::DAY_IDS_TABLE);
    }

    #[test]
    fn a_namespace_renames_the_kinds_stores_only() {
        let same = StoreNamespace::new(Kind::PriceChange, "price-change");
        assert!(same.is_identity());
        assert_eq!(same.map("price-change/symbols"), "price-change/symbols");
        let fast = StoreNamespace::new(Kind::PriceChange, "fast-rise");
        assert_eq!(fast.map("price-change/symbols"), "fast-rise/symbols");
        assert_eq!(fast.map(views::PRICE_ALERTS), views::PRICE_ALERTS);
    }

    #[test]
    fn params_are_typed_by_kind() {
        let mut t = toml::Table::new();
        t.insert("threshold_pct".into(), toml::Value::Integer(5));
        assert_eq!(
            Params::parse(Kind::PriceChange, &t).unwrap().kind(),
            Kind::PriceChange
        );
        t.insert("threshold_pctt".into(), toml::Value::Integer(5));
        let e = Params::parse(Kind::PriceChange, &t).unwrap_err();
        assert!(e.key.starts_with("params"), "{e:?}");
    }
}
