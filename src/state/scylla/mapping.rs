//! How the store's byte keys and values map to CQL rows, with no I/O (unit-tested without a
//! server).
//!
//! - CQL types: [`decimal_to_cql`] / [`decimal_from_cql`] (unscaled varint + scale),
//!   [`date_to_cql`] / [`date_from_cql`] (days since the epoch, offset by 2^31 as CQL stores
//!   them) and [`timestamp_to_cql`] / [`timestamp_from_cql`] (signed milliseconds).
//! - Keys: a generic table's key splits at its first [`views::SEP`] into the partition
//!   ([`split_key`]); the views' keys ([`views::daily_balance_key`], [`views::alert_key`]) parse
//!   back into their typed partition and clustering columns.
//! - Rows: [`Mutation::from_write`] turns one `(table, key, value)` write into a typed row of
//!   the table that serves its queries, checking that key and value agree; [`Mutation::group`]
//!   names the CQL partition it lands in.

use crate::state::Checkpoint;
use fluxo_processors::events::{
    BelowAverageEvent, DailyBalance, Decision, PriceAlert, RiskDecision, RiskReason,
};
use fluxo_processors::risk::store::{self as risk_store, Listing, BLACKLIST_TABLE};
use fluxo_processors::{views, Millis};
use rust_decimal::Decimal;
use scylla::value::{CqlDate, CqlDecimal, CqlTimestamp};

/// A mapping failure (a value out of range, a key that is not of its table's layout).
pub type MapError = String;

/// `Decimal` -> CQL `decimal`: the mantissa as a minimal two's-complement big-endian varint,
/// and the scale (digits after the point), preserved exactly (`10.50` stays `10.50`).
pub fn decimal_to_cql(d: Decimal) -> CqlDecimal {
    let bytes = d.mantissa().to_be_bytes();
    // Drop leading bytes that only repeat the sign (0x00 before a clear top bit, 0xff before a
    // set one), keeping at least one byte.
    let mut start = 0;
    while start < 15 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    // `scale()` is at most 28, so the cast is exact.
    CqlDecimal::from_signed_be_bytes_slice_and_exponent(&bytes[start..], d.scale() as i32)
}

/// CQL `decimal` -> `Decimal`. A negative scale (`1E+3`) is folded into the mantissa.
///
/// # Errors
/// When the value needs more than 96 bits of mantissa or 28 digits of scale (`Decimal`'s
/// range); fluxo only writes values that fit.
pub fn decimal_from_cql(c: &CqlDecimal) -> Result<Decimal, MapError> {
    let (bytes, scale) = c.as_signed_be_bytes_slice_and_exponent();
    if bytes.len() > 16 {
        return Err(format!("decimal of {} bytes is out of range", bytes.len()));
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut buf = if negative { [0xff; 16] } else { [0; 16] };
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    let mut mantissa = i128::from_be_bytes(buf);
    let mut scale = scale;
    if scale < 0 {
        let factor = 10_i128
            .checked_pow(scale.unsigned_abs())
            .ok_or_else(|| format!("decimal exponent {} is out of range", -scale))?;
        mantissa = mantissa
            .checked_mul(factor)
            .ok_or_else(|| "decimal is out of range".to_string())?;
        scale = 0;
    }
    let scale = u32::try_from(scale).map_err(|e| e.to_string())?;
    Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|e| format!("decimal: {e}"))
}

/// Days since the epoch -> CQL `date` (an unsigned 32-bit day number with the epoch at 2^31).
pub fn date_to_cql(days: i32) -> CqlDate {
    // Adding 2^31 modulo 2^32 is flipping the top bit of the two's-complement value.
    CqlDate((days as u32) ^ (1 << 31))
}

/// CQL `date` -> days since the epoch (every CQL date fits an `i32`).
pub fn date_from_cql(d: CqlDate) -> i32 {
    (d.0 ^ (1 << 31)) as i32
}

/// Epoch milliseconds -> CQL `timestamp` (the same signed milliseconds; pre-epoch is negative).
pub fn timestamp_to_cql(ms: Millis) -> CqlTimestamp {
    CqlTimestamp(ms)
}

/// CQL `timestamp` -> epoch milliseconds.
pub fn timestamp_from_cql(t: CqlTimestamp) -> Millis {
    t.0
}

/// A generic table's key as `(partition, clustering)`: the partition is the bytes before the
/// first [`views::SEP`] and the clustering key the rest, separator included, so every key has
/// exactly one split, `partition ++ clustering` is the key, and keys of one partition sort like
/// their clustering keys (CQL `blob` compares unsigned bytes, as Rust slices do).
pub fn split_key(key: &[u8]) -> (&[u8], &[u8]) {
    let at = key
        .iter()
        .position(|b| *b == views::SEP)
        .unwrap_or(key.len());
    key.split_at(at)
}

/// The partition text of a view key (`partition \0 ...`) and the bytes after the separator.
fn view_partition(key: &[u8]) -> Result<(String, &[u8]), MapError> {
    let (part, rest) = split_key(key);
    let Some(rest) = rest.strip_prefix(&[views::SEP]) else {
        return Err("view key without a partition separator".into());
    };
    let part = std::str::from_utf8(part).map_err(|_| "view partition is not UTF-8")?;
    Ok((part.to_string(), rest))
}

/// The 8-byte ordered time or date at the start of `rest`, and what follows it.
fn ordered_prefix(rest: &[u8]) -> Result<(i64, &[u8]), MapError> {
    let Some((head, tail)) = rest.split_first_chunk::<8>() else {
        return Err("view key shorter than its clustering time".into());
    };
    Ok((views::from_ordered_i64(*head), tail))
}

/// [`views::daily_balance_key`] -> `(account, days since epoch)`.
///
/// # Errors
/// When the key is not of that layout or the date is outside `i32`.
pub fn parse_balance_key(key: &[u8]) -> Result<(String, i32), MapError> {
    let (account, rest) = view_partition(key)?;
    let (date, tail) = ordered_prefix(rest)?;
    if !tail.is_empty() {
        return Err("daily balance key with bytes after the date".into());
    }
    let date = i32::try_from(date).map_err(|_| format!("date {date} is out of range"))?;
    Ok((account, date))
}

/// [`views::alert_key`] -> `(symbol, time, id)`.
///
/// # Errors
/// When the key is not of that layout.
pub fn parse_alert_key(key: &[u8]) -> Result<(String, Millis, String), MapError> {
    let (symbol, rest) = view_partition(key)?;
    let (time, id) = ordered_prefix(rest)?;
    let id = std::str::from_utf8(id).map_err(|_| "event id is not UTF-8")?;
    Ok((symbol, time, id.to_string()))
}

/// The CQL tables fluxo's logical tables live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// `kv`: processor-private state, keyed `((tbl, part), ckey)`.
    Kv,
    /// `daily_balances`.
    DailyBalances,
    /// `risk_decisions`.
    RiskDecisions,
    /// `price_alerts`.
    PriceAlerts,
    /// `below_average_events`.
    BelowAverage,
    /// `blacklist`.
    Blacklist,
    /// `checkpoints`.
    Checkpoints,
}

impl Table {
    /// The CQL table holding the logical table `name`.
    pub fn of(name: &str) -> Self {
        match name {
            views::DAILY_BALANCES => Self::DailyBalances,
            views::RISK_DECISIONS => Self::RiskDecisions,
            views::PRICE_ALERTS => Self::PriceAlerts,
            views::BELOW_AVERAGE_EVENTS => Self::BelowAverage,
            BLACKLIST_TABLE => Self::Blacklist,
            _ => Self::Kv,
        }
    }

    /// The typed tables: `(logical name, CQL table)`.
    pub const TYPED: [(&'static str, &'static str); 5] = [
        (views::DAILY_BALANCES, "daily_balances"),
        (views::RISK_DECISIONS, "risk_decisions"),
        (views::PRICE_ALERTS, "price_alerts"),
        (views::BELOW_AVERAGE_EVENTS, "below_average_events"),
        (BLACKLIST_TABLE, "blacklist"),
    ];
}

/// The text of a serde unit enum (`RISE`, `APPROVE`, `SMA`).
pub fn enum_text<T: serde::Serialize>(v: &T) -> Result<String, MapError> {
    match serde_json::to_value(v).map_err(|e| e.to_string())? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(format!("{other} is not an enum symbol")),
    }
}

/// Inverse of [`enum_text`].
///
/// # Errors
/// For an unknown symbol.
pub fn enum_from_text<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, MapError> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|e| format!("`{s}`: {e}"))
}

/// One write, as the typed row it becomes (`None` = delete).
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// A generic row.
    Kv {
        /// Logical table.
        tbl: String,
        /// Partition bytes ([`split_key`]).
        part: Vec<u8>,
        /// Clustering bytes.
        ckey: Vec<u8>,
        /// Value or delete.
        value: Option<Vec<u8>>,
    },
    /// A daily balance.
    Balance {
        /// Partition.
        account: String,
        /// Clustering: days since epoch.
        date: i32,
        /// Row or delete.
        row: Option<DailyBalance>,
    },
    /// A risk decision.
    Decision {
        /// Partition.
        id: String,
        /// Row or delete.
        row: Option<RiskDecision>,
    },
    /// A price alert.
    PriceAlert {
        /// Partition.
        symbol: String,
        /// Clustering: `to_time`.
        time: Millis,
        /// Clustering: alert id.
        id: String,
        /// Row or delete.
        row: Option<PriceAlert>,
    },
    /// A below-average event.
    BelowAverage {
        /// Partition.
        symbol: String,
        /// Clustering: event time.
        time: Millis,
        /// Clustering: event id.
        id: String,
        /// Row or delete.
        row: Option<BelowAverageEvent>,
    },
    /// A blacklist entry.
    Blacklist {
        /// Partition: the normalized document.
        document: String,
        /// Row or delete.
        row: Option<Listing>,
    },
    /// An input position.
    Checkpoint(Checkpoint),
}

/// Decode a view value (JSON of its event struct).
fn json<T: serde::de::DeserializeOwned>(table: &str, v: &[u8]) -> Result<T, MapError> {
    serde_json::from_slice(v).map_err(|e| format!("{table}: value is not a view row: {e}"))
}

/// `Err` unless `key` (from the write) equals `expected` (from the value).
fn agree<T: PartialEq + std::fmt::Debug>(table: &str, key: T, value: T) -> Result<(), MapError> {
    if key == value {
        Ok(())
    } else {
        Err(format!(
            "{table}: key {key:?} does not match its value's {value:?}"
        ))
    }
}

impl Mutation {
    /// The typed row of writing `value` (`None`: delete) under `key` in logical `table`.
    ///
    /// # Errors
    /// When a typed table's key is not of its layout, its value is not its row, or the two
    /// disagree (a typed row is stored by its columns, so they must say the same thing).
    pub fn from_write(table: &str, key: &[u8], value: Option<&[u8]>) -> Result<Self, MapError> {
        let text = |k: &[u8]| {
            std::str::from_utf8(k)
                .map(str::to_string)
                .map_err(|_| format!("{table}: key is not UTF-8"))
        };
        Ok(match Table::of(table) {
            Table::Kv | Table::Checkpoints => {
                let (part, ckey) = split_key(key);
                Self::Kv {
                    tbl: table.to_string(),
                    part: part.to_vec(),
                    ckey: ckey.to_vec(),
                    value: value.map(<[u8]>::to_vec),
                }
            }
            Table::DailyBalances => {
                let (account, date) = parse_balance_key(key)?;
                let row = value.map(|v| json::<DailyBalance>(table, v)).transpose()?;
                if let Some(r) = &row {
                    agree(table, (&account, date), (&r.account_id, r.business_date))?;
                }
                Self::Balance { account, date, row }
            }
            Table::RiskDecisions => {
                let id = text(key)?;
                let row = value.map(|v| json::<RiskDecision>(table, v)).transpose()?;
                if let Some(r) = &row {
                    agree(table, &id, &r.transaction_id)?;
                }
                Self::Decision { id, row }
            }
            Table::PriceAlerts => {
                let (symbol, time, id) = parse_alert_key(key)?;
                let row = value.map(|v| json::<PriceAlert>(table, v)).transpose()?;
                if let Some(r) = &row {
                    agree(
                        table,
                        (&symbol, time, &id),
                        (&r.symbol, r.to_time, &r.alert_id),
                    )?;
                }
                Self::PriceAlert {
                    symbol,
                    time,
                    id,
                    row,
                }
            }
            Table::BelowAverage => {
                let (symbol, time, id) = parse_alert_key(key)?;
                let row = value
                    .map(|v| json::<BelowAverageEvent>(table, v))
                    .transpose()?;
                if let Some(r) = &row {
                    agree(
                        table,
                        (&symbol, time, &id),
                        (&r.symbol, r.event_time, &r.event_id),
                    )?;
                }
                Self::BelowAverage {
                    symbol,
                    time,
                    id,
                    row,
                }
            }
            Table::Blacklist => {
                let document = text(key)?;
                let row = match value {
                    None => None,
                    Some(v) => Some(risk_store::decode::<Listing>(v).ok_or_else(|| {
                        format!("{table}: value is not a versioned blacklist listing")
                    })?),
                };
                Self::Blacklist { document, row }
            }
        })
    }

    /// The CQL partition this row lands in: its table and partition key bytes. Rows of one
    /// group go in one single-partition batch.
    pub fn group(&self) -> (Table, Vec<u8>) {
        match self {
            Self::Kv { tbl, part, .. } => {
                // `(tbl, part)` is the partition key; join them unambiguously.
                let mut g = Vec::with_capacity(tbl.len() + part.len() + 4);
                g.extend_from_slice(&(tbl.len() as u32).to_be_bytes());
                g.extend_from_slice(tbl.as_bytes());
                g.extend_from_slice(part);
                (Table::Kv, g)
            }
            Self::Balance { account, .. } => (Table::DailyBalances, account.as_bytes().to_vec()),
            Self::Decision { id, .. } => (Table::RiskDecisions, id.as_bytes().to_vec()),
            Self::PriceAlert { symbol, .. } => (Table::PriceAlerts, symbol.as_bytes().to_vec()),
            Self::BelowAverage { symbol, .. } => (Table::BelowAverage, symbol.as_bytes().to_vec()),
            Self::Blacklist { document, .. } => (Table::Blacklist, document.as_bytes().to_vec()),
            Self::Checkpoint(c) => (Table::Checkpoints, c.processor.as_bytes().to_vec()),
        }
    }
}

/// The value bytes a view row is read back as: the JSON the processors write.
pub fn view_json<T: serde::Serialize>(row: &T) -> Result<Vec<u8>, MapError> {
    serde_json::to_vec(row).map_err(|e| e.to_string())
}

/// The value bytes a blacklist row is read back as (the processor's own encoding).
pub fn listing_bytes(listing: &Listing) -> Vec<u8> {
    risk_store::encode(listing)
}

/// Risk reasons as CQL `list<frozen<tuple<text, int, text>>>` elements.
pub fn reasons_to_cql(reasons: &[RiskReason]) -> Vec<(String, i32, String)> {
    reasons
        .iter()
        .map(|r| (r.rule_id.clone(), r.contribution, r.text.clone()))
        .collect()
}

/// Inverse of [`reasons_to_cql`].
pub fn reasons_from_cql(reasons: Vec<(String, i32, String)>) -> Vec<RiskReason> {
    reasons
        .into_iter()
        .map(|(rule_id, contribution, text)| RiskReason {
            rule_id,
            contribution,
            text,
        })
        .collect()
}

/// Decision symbol check used by reads (kept here so the mapping is tested in one place).
pub fn decision_from_text(s: &str) -> Result<Decision, MapError> {
    enum_from_text(s)
}

/// The clustering bounds of a scan of `prefix` from `start` to `end` (exclusive), as full
/// keys: `None` when nothing can match, else `(low, high)` with `high = None` for "to the end
/// of the prefix". Every key in `[low, high)` starts with `prefix`.
pub fn scan_bounds(
    prefix: &[u8],
    start: &[u8],
    end: Option<&[u8]>,
) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    let low = if start < prefix { prefix } else { start };
    let successor = prefix_successor(prefix);
    let high = match (successor, end) {
        (Some(s), Some(e)) => Some(if e < s.as_slice() { e.to_vec() } else { s }),
        (Some(s), None) => Some(s),
        (None, e) => e.map(<[u8]>::to_vec),
    };
    if high.as_deref().is_some_and(|h| low >= h) || !low.starts_with(prefix) {
        return None;
    }
    Some((low.to_vec(), high))
}

/// The smallest key greater than every key starting with `prefix` (`None`: no such key).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xff {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// A clustering slice of one typed view partition: `lo <= clustering < hi` (`hi = None`: to
/// the end of the partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slice {
    /// `daily_balances`: business dates (days since epoch).
    Dates {
        /// Inclusive lower date.
        lo: i32,
        /// Exclusive upper date.
        hi: Option<i32>,
    },
    /// `price_alerts`, `below_average_events`: (time, id).
    Times {
        /// Inclusive lower (time, id).
        lo: (Millis, String),
        /// Exclusive upper (time, id).
        hi: Option<(Millis, String)>,
    },
}

/// The clustering slice of a typed view that a scan of `prefix` (`partition \0`) over the full
/// keys `[low, high)` (from [`scan_bounds`]) reads; `Ok(None)` when nothing can match.
///
/// # Errors
/// When the prefix is not exactly a partition prefix, a bound is not a whole clustering key, or
/// `table` has no clustering key.
pub fn view_slice(
    table: Table,
    prefix: &[u8],
    low: &[u8],
    high: Option<&[u8]>,
) -> Result<Option<Slice>, MapError> {
    let (part, _) = split_key(prefix);
    if prefix.len() != part.len() + 1 {
        return Err(
            "typed views are scanned by their partition prefix `partition \\0` only".into(),
        );
    }
    let low_rest = low.get(prefix.len()..).unwrap_or_default();
    // A high bound past the prefix (its successor) is "to the end of the partition".
    let high_rest = high
        .filter(|h| h.starts_with(prefix))
        .map(|h| &h[prefix.len()..]);
    let clustering = |rest: &[u8]| -> Result<(i64, String), MapError> {
        match rest.split_first_chunk::<8>() {
            Some((t, id)) => Ok((
                views::from_ordered_i64(*t),
                String::from_utf8(id.to_vec()).map_err(|_| "scan bound id is not UTF-8")?,
            )),
            None if rest.is_empty() => Ok((i64::MIN, String::new())),
            None => Err("a scan bound must be a whole clustering key".into()),
        }
    };
    let lo = clustering(low_rest)?;
    let hi = high_rest.map(clustering).transpose()?;
    match table {
        Table::DailyBalances => {
            if !lo.1.is_empty() || hi.as_ref().is_some_and(|(_, id)| !id.is_empty()) {
                return Err("daily_balances: scan bound past the date".into());
            }
            let (lo, hi) = (lo.0, hi.map(|h| h.0));
            if lo > i64::from(i32::MAX) || hi.is_some_and(|h| h <= i64::from(i32::MIN)) {
                return Ok(None);
            }
            Ok(Some(Slice::Dates {
                lo: i32::try_from(lo).unwrap_or(i32::MIN),
                // Past i32::MAX: every date is below it.
                hi: hi.and_then(|h| i32::try_from(h).ok()),
            }))
        }
        Table::PriceAlerts | Table::BelowAverage => Ok(Some(Slice::Times { lo, hi })),
        other => Err(format!("{other:?} is read by key only")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn decimals_keep_value_and_scale() {
        for s in [
            "0",
            "0.00",
            "10.50",
            "-10.50",
            "1",
            "-1",
            "127",
            "128",
            "-128",
            "-129",
            "255",
            "0.00000001",
            "-0.00000001",
            "12345678.12345678",
            "79228162514264337593543950335",
            "-79228162514264337593543950335",
            "7.9228162514264337593543950335",
        ] {
            let d = dec(s);
            let back = decimal_from_cql(&decimal_to_cql(d)).unwrap();
            assert_eq!(back, d, "{s}");
            assert_eq!(back.scale(), d.scale(), "{s}");
            assert_eq!(back.to_string(), s, "{s}");
        }
    }

    #[test]
    fn decimal_wire_bytes_are_minimal_twos_complement() {
        let wire = |s: &str| {
            let c = decimal_to_cql(dec(s));
            let (b, scale) = c.as_signed_be_bytes_slice_and_exponent();
            (b.to_vec(), scale)
        };
        assert_eq!(wire("10.50"), (vec![0x04, 0x1a], 2)); // 1050
        assert_eq!(wire("-10.50"), (vec![0xfb, 0xe6], 2)); // -1050
        assert_eq!(wire("0"), (vec![0x00], 0));
        assert_eq!(wire("127"), (vec![0x7f], 0));
        assert_eq!(wire("128"), (vec![0x00, 0x80], 0));
        assert_eq!(wire("-128"), (vec![0x80], 0));
        assert_eq!(wire("-129"), (vec![0xff, 0x7f], 0));
        assert_eq!(wire("-1"), (vec![0xff], 0));
    }

    #[test]
    fn cql_decimals_from_other_writers_are_read_or_refused() {
        // 1E+3 as another driver may write it: unscaled 1, scale -3.
        let c = CqlDecimal::from_signed_be_bytes_slice_and_exponent(&[0x01], -3);
        assert_eq!(decimal_from_cql(&c).unwrap(), dec("1000"));
        // An empty varint is zero.
        let c = CqlDecimal::from_signed_be_bytes_slice_and_exponent(&[], 2);
        assert_eq!(decimal_from_cql(&c).unwrap(), dec("0.00"));
        // Non-minimal sign extension is still the same number.
        let c = CqlDecimal::from_signed_be_bytes_slice_and_exponent(&[0xff, 0xff, 0xfb, 0xe6], 2);
        assert_eq!(decimal_from_cql(&c).unwrap(), dec("-10.50"));
        // Beyond 96 bits, 16 bytes, a scale over 28 or an exponent overflow: errors.
        let big = CqlDecimal::from_signed_be_bytes_slice_and_exponent(&[0x01; 13], 0);
        assert!(decimal_from_cql(&big).is_err());
        let huge = CqlDecimal::from_signed_be_bytes_slice_and_exponent(&[0x01; 17], 0);
        assert!(decimal_from_cql(&huge).is_err());
        let fine = CqlDecimal::from_signed_be_bytes_slice_and_exponent(&[0x01], 29);
        assert!(decimal_from_cql(&fine).is_err());
        let exp = CqlDecimal::from_signed_be_bytes_slice_and_exponent(&[0x01], -40);
        assert!(decimal_from_cql(&exp).is_err());
    }

    #[test]
    fn dates_are_offset_by_two_to_the_31() {
        assert_eq!(date_to_cql(0).0, 1 << 31);
        assert_eq!(date_to_cql(-1).0, (1 << 31) - 1);
        assert_eq!(date_to_cql(1).0, (1 << 31) + 1);
        assert_eq!(date_to_cql(i32::MIN).0, 0);
        assert_eq!(date_to_cql(i32::MAX).0, u32::MAX);
        // 2024-01-15 is day 19737.
        assert_eq!(date_to_cql(19_737).0, 2_147_503_385);
        for d in [i32::MIN, -719_162, -1, 0, 1, 19_737, i32::MAX] {
            assert_eq!(date_from_cql(date_to_cql(d)), d);
        }
        // CQL orders dates as unsigned day numbers: the same order as the days.
        assert!(date_to_cql(-1).0 < date_to_cql(0).0);
    }

    #[test]
    fn timestamps_are_signed_millis() {
        for ms in [i64::MIN, -86_400_001, -1, 0, 1, 1_705_312_800_123, i64::MAX] {
            assert_eq!(timestamp_to_cql(ms).0, ms);
            assert_eq!(timestamp_from_cql(timestamp_to_cql(ms)), ms);
        }
    }

    #[test]
    fn generic_keys_split_at_the_first_separator() {
        assert_eq!(split_key(b"abc"), (&b"abc"[..], &b""[..]));
        assert_eq!(split_key(b"a\0"), (&b"a"[..], &b"\0"[..]));
        assert_eq!(split_key(b"a\0b\0c"), (&b"a"[..], &b"\0b\0c"[..]));
        assert_eq!(split_key(b"\0\xff"), (&b""[..], &b"\0\xff"[..]));
        // `a` and `a\0` stay distinct rows of partition `a`, in key order.
        assert!(split_key(b"a").1 < split_key(b"a\0").1);
    }

    #[test]
    fn view_keys_parse_back() {
        let k = views::daily_balance_key("acc-1", -3);
        assert_eq!(parse_balance_key(&k).unwrap(), ("acc-1".into(), -3));
        let k = views::alert_key("PETR4", -5, "alert-9");
        assert_eq!(
            parse_alert_key(&k).unwrap(),
            ("PETR4".into(), -5, "alert-9".into())
        );
        let k = views::alert_key("PETR4", 7, "");
        assert_eq!(parse_alert_key(&k).unwrap(), ("PETR4".into(), 7, "".into()));
        assert!(parse_balance_key(b"acc").is_err());
        assert!(parse_balance_key(b"acc\0\x01").is_err());
        let mut long = views::daily_balance_key("a", 1);
        long.push(1);
        assert!(parse_balance_key(&long).is_err());
        let too_far = [&b"a\0"[..], &views::ordered_i64(1 << 40)].concat();
        assert!(parse_balance_key(&too_far).is_err());
        assert!(parse_alert_key(b"\xff\0\0\0\0\0\0\0\0\0").is_err());
    }

    #[test]
    fn scan_bounds_stay_inside_the_prefix() {
        assert_eq!(
            scan_bounds(b"a\0", b"", None),
            Some((b"a\0".to_vec(), Some(b"a\x01".to_vec())))
        );
        assert_eq!(
            scan_bounds(b"a\0", b"a\0\x02", Some(b"a\0\x03")),
            Some((b"a\0\x02".to_vec(), Some(b"a\0\x03".to_vec())))
        );
        // An end past the prefix is cut to its successor; a start past it matches nothing.
        assert_eq!(
            scan_bounds(b"a\0", b"", Some(b"b")),
            Some((b"a\0".to_vec(), Some(b"a\x01".to_vec())))
        );
        assert_eq!(scan_bounds(b"a\0", b"b", None), None);
        assert_eq!(scan_bounds(b"a\0", b"a\0\x05", Some(b"a\0\x05")), None);
        assert_eq!(scan_bounds(b"a\0", b"", Some(b"a")), None);
        assert_eq!(prefix_successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff"), None);
    }

    /// The slices the query API's reads become.
    #[test]
    fn api_scans_become_clustering_slices() {
        let slice = |t: Table, prefix: &[u8], start: &[u8], end: Option<&[u8]>| {
            let (low, high) = scan_bounds(prefix, start, end).unwrap();
            view_slice(t, prefix, &low, high.as_deref())
        };
        let p = views::partition_prefix("ACC-1");
        // GET .../daily-balances?from&to: one slice [from, to + 1).
        let from = views::daily_balance_key("ACC-1", 19_723);
        let to = views::daily_balance_key("ACC-1", 19_727);
        assert_eq!(
            slice(Table::DailyBalances, &p, &from, Some(&to)).unwrap(),
            Some(Slice::Dates {
                lo: 19_723,
                hi: Some(19_727)
            })
        );
        // Does the account exist: the whole partition.
        assert_eq!(
            slice(Table::DailyBalances, &p, &p, None).unwrap(),
            Some(Slice::Dates {
                lo: i32::MIN,
                hi: None
            })
        );
        let neg = views::daily_balance_key("ACC-1", -3);
        assert_eq!(
            slice(Table::DailyBalances, &p, &neg, None).unwrap(),
            Some(Slice::Dates { lo: -3, hi: None })
        );
        let beyond = [p.as_slice(), &views::ordered_i64(1 << 40)].concat();
        assert_eq!(
            slice(Table::DailyBalances, &p, &beyond, None).unwrap(),
            None
        );
        assert_eq!(
            slice(Table::DailyBalances, &p, &p, Some(&beyond)).unwrap(),
            Some(Slice::Dates {
                lo: i32::MIN,
                hi: None
            })
        );
        // GET .../alerts?since=T: from (T, "") on; without since from the first row.
        let s = views::partition_prefix("PETR4");
        let since = views::alert_key("PETR4", 1_714_564_800_000, "");
        assert_eq!(
            slice(Table::PriceAlerts, &s, &since, None).unwrap(),
            Some(Slice::Times {
                lo: (1_714_564_800_000, String::new()),
                hi: None
            })
        );
        let first = views::alert_key("PETR4", i64::MIN, "");
        assert_eq!(
            slice(Table::BelowAverage, &s, &first, None).unwrap(),
            Some(Slice::Times {
                lo: (i64::MIN, String::new()),
                hi: None
            })
        );
        let a = views::alert_key("PETR4", -5, "a1");
        let b = views::alert_key("PETR4", 7, "b2");
        assert_eq!(
            slice(Table::PriceAlerts, &s, &a, Some(&b)).unwrap(),
            Some(Slice::Times {
                lo: (-5, "a1".into()),
                hi: Some((7, "b2".into()))
            })
        );
        // Refused: partial bounds, prefixes longer than the partition, key-only tables.
        assert!(slice(
            Table::PriceAlerts,
            &s,
            &[s.as_slice(), b""].concat(),
            None
        )
        .is_err());
        assert!(slice(
            Table::DailyBalances,
            &p,
            &[neg.as_slice(), b"x"].concat(),
            None
        )
        .is_err());
        assert!(slice(Table::PriceAlerts, &a, &a, None).is_err());
        assert!(slice(Table::RiskDecisions, b"tx\0", b"", None).is_err());
    }

    #[test]
    fn typed_writes_must_agree_with_their_keys() {
        let b = DailyBalance {
            account_id: "acc".into(),
            business_date: 19_737,
            total_credits: dec("10.00"),
            total_debits: dec("2.50"),
            net: dec("7.50"),
            entry_count: 3,
            last_entry_at: 1,
            updated_at: 2,
        };
        let json = serde_json::to_vec(&b).unwrap();
        let key = views::daily_balance_key("acc", 19_737);
        let m = Mutation::from_write(views::DAILY_BALANCES, &key, Some(&json)).unwrap();
        assert_eq!(
            m,
            Mutation::Balance {
                account: "acc".into(),
                date: 19_737,
                row: Some(b.clone())
            }
        );
        assert_eq!(m.group(), (Table::DailyBalances, b"acc".to_vec()));
        let other = views::daily_balance_key("acc", 19_738);
        assert!(Mutation::from_write(views::DAILY_BALANCES, &other, Some(&json)).is_err());
        assert!(Mutation::from_write(views::DAILY_BALANCES, &key, Some(b"{}")).is_err());
        let del = Mutation::from_write(views::DAILY_BALANCES, &other, None).unwrap();
        assert!(matches!(
            del,
            Mutation::Balance {
                date: 19_738,
                row: None,
                ..
            }
        ));
        let listing = Listing {
            reason: "fraud".into(),
            source: "coaf".into(),
            since: -5,
        };
        let bytes = listing_bytes(&listing);
        let m = Mutation::from_write(BLACKLIST_TABLE, b"12345678909", Some(&bytes)).unwrap();
        assert_eq!(
            m,
            Mutation::Blacklist {
                document: "12345678909".into(),
                row: Some(listing)
            }
        );
        assert!(Mutation::from_write(BLACKLIST_TABLE, b"1", Some(b"\x09junk")).is_err());
        let kv = Mutation::from_write("p/t", b"x\0y", Some(b"v")).unwrap();
        assert_eq!(
            kv,
            Mutation::Kv {
                tbl: "p/t".into(),
                part: b"x".to_vec(),
                ckey: b"\0y".to_vec(),
                value: Some(b"v".to_vec())
            }
        );
        // Groups of generic rows cannot collide across table/partition boundaries.
        let g1 = Mutation::from_write("ab", b"c", None).unwrap().group();
        let g2 = Mutation::from_write("a", b"bc", None).unwrap().group();
        assert_ne!(g1, g2);
    }

    #[test]
    fn enums_map_to_their_symbols() {
        assert_eq!(enum_text(&Decision::Reject).unwrap(), "REJECT");
        assert_eq!(decision_from_text("REVIEW").unwrap(), Decision::Review);
        assert!(decision_from_text("MAYBE").is_err());
    }
}
