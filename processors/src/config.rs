//! Helpers for processor parameters as written in `topology.toml`.
//!
//! Durations are human strings (`"500ms"`, `"30s"`, `"5m"`, `"24h"`, `"7d"`); decimals may be
//! written as strings (`"10.5"`, exact) or TOML numbers (`10`, `10.5`).

use crate::Millis;
use rust_decimal::Decimal;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A duration in milliseconds, written in topology.toml as `"30s"`, `"5m"`, `"24h"`…
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationMs(pub Millis);

impl DurationMs {
    /// The duration in milliseconds.
    pub fn millis(self) -> Millis {
        self.0
    }
}

impl FromStr for DurationMs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("duration `{s}` needs a unit: ms, s, m, h or d"))?;
        let (number, unit) = s.split_at(split);
        let n: i64 = number
            .parse()
            .map_err(|_| format!("duration `{s}` must start with a whole number"))?;
        let factor = match unit.trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => return Err(format!("duration `{s}` has unknown unit `{other}`")),
        };
        n.checked_mul(factor)
            .map(DurationMs)
            .ok_or_else(|| format!("duration `{s}` is too large"))
    }
}

impl fmt::Display for DurationMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Serialize for DurationMs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A decimal parameter that accepts a TOML string (`"10.5"`) or number (`10`, `10.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ConfigDecimal(pub Decimal);

impl<'de> Deserialize<'de> for ConfigDecimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ConfigDecimal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal number or a string holding one")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Decimal::from_str(v.trim())
                    .map(ConfigDecimal)
                    .map_err(|e| E::custom(format!("`{v}` is not a decimal: {e}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ConfigDecimal(Decimal::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ConfigDecimal(Decimal::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // Go through the shortest decimal representation so `10.1` stays `10.1`.
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ConfigDecimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!("30s".parse::<DurationMs>().unwrap().0, 30_000);
        assert_eq!("5m".parse::<DurationMs>().unwrap().0, 300_000);
        assert_eq!("24h".parse::<DurationMs>().unwrap().0, 86_400_000);
        assert_eq!("250ms".parse::<DurationMs>().unwrap().0, 250);
        assert!("5".parse::<DurationMs>().is_err());
        assert!("5 parsecs".parse::<DurationMs>().is_err());
    }
}
