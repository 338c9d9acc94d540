//! Daily consolidation: debit/credit ledger entries into a daily balance per account.
//!
//! [`ConsolidationProcessor`] reads [`LedgerEntry`] records from `ledger-entries` (keyed by
//! account) and keeps, per `(account, business date)`, the row of the `daily_balances` view:
//! total credits, total debits, `net = credits - debits`, entry count, latest `occurred_at` and
//! the processing time of the last change. Every applied entry emits the new row of its
//! `(account, date)` as a [`DailyBalance`] for the compacted `daily-balances` topic, keyed by
//! [`output_key`] (`"{account}/{YYYY-MM-DD}"`); a late entry for an earlier day therefore updates
//! that day and emits its corrected balance.
//!
//! # Business date
//! The business date is `occurred_at` converted to [`Config::time_zone`] (IANA name, default
//! `America/Sao_Paulo`) with the tz database of `chrono-tz`, so historical offsets — including
//! Brazil's daylight saving time until 2019 — are honoured; a day starts at local midnight (or
//! at the first local instant of the day when a DST jump skipped midnight). It is stored as days
//! since 1970-01-01 (`i32`, Avro `date`).
//!
//! # Validation
//! Checks run in this order; the first failure rejects the entry (dead-lettered with the reason,
//! never counted, state unchanged, nothing emitted):
//!
//! | reason | when |
//! |---|---|
//! | `missing_entry_id` | `entry_id` is `None`, empty or whitespace only |
//! | `invalid_entry_id` | not a UUID in the 8-4-4-4-12 hex form (either case, surrounding whitespace ignored), or the nil UUID (a producer sending nil everywhere would otherwise lose all but one entry as "duplicates") |
//! | `blank_account` | `account_id` is empty or whitespace only |
//! | `invalid_account` | `account_id` contains a NUL byte (the view's key separator) |
//! | `unknown_kind` | `kind` is not exactly `DEBIT` or `CREDIT`: case-sensitive, no trimming, as the schema states; `debit` is a producer bug the dead-letter topic makes visible |
//! | `invalid_amount` | `amount <= 0`, non-zero digits beyond 2 decimal places (`10.500` is fine, `10.005` is not), or more than decimal(18, 2) holds |
//! | `unsupported_currency` | `currency` is not exactly [`Config::currency`] (default `BRL`) |
//! | `invalid_occurred_at` | `occurred_at` is outside the range of dates chrono can represent |
//! | `too_late` | the business date is older than the account's dedup horizon (see below) |
//! | `balance_overflow` | the day's total credits or debits would exceed decimal(18, 2) |
//! | `corrupt_state` | a stored row this entry needs cannot be decoded (the entry is not applied; replay it from the dead-letter topic once the store is repaired) |
//!
//! Rejection details never repeat the account, the description or an unparseable id (any of
//! them could hold a CPF/CNPJ); `kind` and `currency` are shown only when short and digit-free.
//!
//! # Idempotency
//! A UUID is normalised to its 16 bytes (so upper- and lower-case spellings are the same id).
//! An entry whose id was already applied to its account is skipped: no output, no state change,
//! no rejection; [`ConsolidationProcessor::duplicates_skipped`] counts them for a metric. The
//! first entry with a given id wins: a reused id with a different amount or time is skipped as
//! well. Duplicates of a real entry carry the same account key, so they reach the same
//! partition, in order, and the outcome is deterministic.
//!
//! With a dedup retention (the default), an id is recognised **within its account**: the ids of
//! an account's live days are kept in the [`DAY_IDS_TABLE`] chunks (below), and the first entry
//! of an account after a start or a cache drop loads them into memory, so every further check is
//! a hash lookup. An id reused by *another* account is a different entry and is applied (it
//! could not be recognised deterministically anyway: another account may be on another
//! partition, processed concurrently). Kafka Streams and Flink users key this dedup state by
//! account the same way. Why not a table keyed by id: its keys are random, so every checkpoint
//! rewrote pages all over a copy-on-write B-tree (redb) and every entry paid a store lookup;
//! measured, that was 40% of the processor's CPU at 1M entries (benches/README.md).
//!
//! With `dedup_retention = "0d"` (no day index is kept) the ids go to [`ENTRIES_TABLE`]
//! (`daily-consolidation/entries`: key = the 16 id bytes, value = postcard of the `i32` business
//! date it was applied to), looked up per entry: in that mode an id is recognised across
//! accounts, as it always was. Stores written before the per-account layout also hold ids of
//! retention mode in [`ENTRIES_TABLE`]; they are no longer read or pruned there (the chunks
//! hold the same ids) and go away when the state is rebuilt.
//!
//! # Dedup retention
//! The id table grows with every entry. With [`Config::dedup_retention`] = `R` days (default
//! `35d`, event time), each account has a *horizon* = its latest business date seen minus `R`:
//! - an entry whose business date is before the horizon is rejected as `too_late` (whether or not
//!   it is a duplicate), because its duplicates can no longer be recognised;
//! - when the horizon moves past a day, that day's id chunks are deleted and its ids forgotten
//!   (the day's balance row stays in the view for ever).
//!
//! So no entry is ever counted twice, and the chunks hold about `R + 1` days of ids per
//! account. The trade-off: an entry arriving more than `R` days after the newest entry of its
//! account is dead-lettered instead of applied (35 days covers a monthly close with margin), and
//! an entry with a wrongly far-future `occurred_at` moves its account's horizon forward with it.
//! The horizon only moves forward: raising `R` later does not resurrect pruned days, lowering
//! it prunes more at the next entry of each account. `dedup_retention = "0d"` keeps every id for
//! ever and never rejects `too_late` (no account or day index is kept then; ids applied in that
//! mode are never pruned even if retention is switched on later).
//!
//! The store has no scans, so pruning needs an index of which ids belong to which account-day:
//! - [`ACCOUNTS_TABLE`] (`daily-consolidation/accounts`): key = account bytes, value = postcard
//!   of `(latest date, horizon, dates that still have ids)`;
//! - [`DAY_IDS_TABLE`] (`daily-consolidation/day-ids`): key =
//!   [`views::daily_balance_key`]`(account, date)` followed by a chunk number (`u64` big-endian),
//!   value = postcard of up to [`IDS_PER_CHUNK`] 16-byte ids. The `n`-th entry of a day (`n` =
//!   the row's `entry_count` before it) goes into chunk `n / IDS_PER_CHUNK`, so a flush rewrites
//!   at most one 4 KiB chunk per busy day and the row's `entry_count` tells how many chunks to
//!   delete when the day is pruned.
//!
//! # Balance rows
//! The working set is the rows of [`views::DAILY_BALANCES`] (key
//! [`views::daily_balance_key`]`(account, date)`, value = JSON of [`DailyBalance`]): the view is
//! the state, there is no second copy. Rows are loaded lazily on first use and dirty rows are
//! written in `flush`. Amounts are kept at scale 2. `last_entry_at` is the max `occurred_at` of
//! the day's applied entries (not the latest to arrive); `updated_at` is
//! `ctx.meta.processing_time` of the last applied entry.
//!
//! # Memory
//! The processor caches account, day and open-chunk slots and, per cached account, the ids of
//! its live days (with `"0d"`: the ids applied since the last flush). After a flush, if more than
//! [`Config::max_cached_keys`] slots and ids are cached, all of them (clean by then) are dropped
//! and reload lazily. An id costs about 40 bytes of memory, a slot about 250. This assumes, as every processor
//! does, that the next `process` sees what `flush` wrote through `ctx.state`.

use crate::config::DurationMs;
use crate::events::{DailyBalance, LedgerEntry, MONEY_SCALE};
use crate::state::{StateReader, StateWriter};
use crate::views;
use crate::{Context, Millis, Processor, Rejection};
use chrono::{DateTime, Datelike, NaiveDate};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{de, Deserialize, Deserializer, Serialize};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// The processor's name, prefix of its private tables.
pub const NAME: &str = "daily-consolidation";
/// Applied entry ids with `dedup_retention = "0d"` (with a retention they live in the
/// [`DAY_IDS_TABLE`] chunks): key = 16 UUID bytes, value = postcard of the `i32` business date.
pub const ENTRIES_TABLE: &str = "daily-consolidation/entries";
/// Per-account dedup horizon (only with a dedup retention): key = account bytes.
pub const ACCOUNTS_TABLE: &str = "daily-consolidation/accounts";
/// Ids applied per account-day, in chunks (only with a dedup retention).
pub const DAY_IDS_TABLE: &str = "daily-consolidation/day-ids";
/// How many ids one [`DAY_IDS_TABLE`] chunk holds.
pub const IDS_PER_CHUNK: i64 = 256;

const DAY_MS: Millis = 86_400_000;

/// Rejection reasons of this processor (the `reason` of a [`Rejection`]).
pub mod reasons {
    /// `entry_id` is `None` or blank.
    pub const MISSING_ENTRY_ID: &str = "missing_entry_id";
    /// `entry_id` is not an 8-4-4-4-12 hex UUID, or is the nil UUID.
    pub const INVALID_ENTRY_ID: &str = "invalid_entry_id";
    /// `account_id` is blank.
    pub const BLANK_ACCOUNT: &str = "blank_account";
    /// `account_id` contains a NUL byte.
    pub const INVALID_ACCOUNT: &str = "invalid_account";
    /// `kind` is not exactly `DEBIT` or `CREDIT`.
    pub const UNKNOWN_KIND: &str = "unknown_kind";
    /// `amount` is not > 0, has more than 2 decimal places, or exceeds decimal(18, 2).
    pub const INVALID_AMOUNT: &str = "invalid_amount";
    /// `currency` is not the configured one.
    pub const UNSUPPORTED_CURRENCY: &str = "unsupported_currency";
    /// `occurred_at` cannot be represented as a date.
    pub const INVALID_OCCURRED_AT: &str = "invalid_occurred_at";
    /// The business date is older than the account's dedup horizon.
    pub const TOO_LATE: &str = "too_late";
    /// A day's total would exceed decimal(18, 2).
    pub const BALANCE_OVERFLOW: &str = "balance_overflow";
    /// A stored row needed by this entry cannot be decoded.
    pub const CORRUPT_STATE: &str = "corrupt_state";
}

/// The largest amount decimal(18, 2) holds: 9 999 999 999 999 999.99.
const MAX_MONEY: Decimal = Decimal::from_parts(2_808_348_671, 232_830_643, 0, false, 2);

/// An IANA time zone, written in topology.toml as its name (`"America/Sao_Paulo"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeZone(pub Tz);

impl Default for TimeZone {
    fn default() -> Self {
        TimeZone(chrono_tz::America::Sao_Paulo)
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl FromStr for TimeZone {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tz::from_str(s.trim()).map(TimeZone).map_err(|_| {
            format!("time_zone: `{s}` is not an IANA time zone name (e.g. `America/Sao_Paulo`)")
        })
    }
}

impl<'de> Deserialize<'de> for TimeZone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// Parameters from `[processors.daily-consolidation.params]` in topology.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Time zone of the business date (default `America/Sao_Paulo`).
    pub time_zone: TimeZone,
    /// The only accepted currency (default `BRL`): three upper-case letters.
    pub currency: String,
    /// How far behind its account's latest business date an entry may be and still be
    /// deduplicated (default `"35d"`); a whole number of days, `"0d"` = keep ids for ever.
    pub dedup_retention: DurationMs,
    /// After a flush, drop the cache when more than this many slots and ids are held (default
    /// 1 000 000, about 40 MiB of ids or 250 MiB of balance rows).
    pub max_cached_keys: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            time_zone: TimeZone::default(),
            currency: "BRL".to_string(),
            dedup_retention: DurationMs(35 * DAY_MS),
            max_cached_keys: 1_000_000,
        }
    }
}

impl Config {
    /// Check the parameters; the message names the bad key.
    ///
    /// # Errors
    /// A message naming `currency` or `dedup_retention` when that value is unusable.
    pub fn validate(&self) -> Result<(), String> {
        let c = self.currency.as_bytes();
        if c.len() != 3 || !c.iter().all(u8::is_ascii_uppercase) {
            return Err(format!(
                "currency: `{}` must be an ISO 4217 code of three upper-case letters",
                self.currency
            ));
        }
        let r = self.dedup_retention.millis();
        if r < 0 || r % DAY_MS != 0 {
            return Err(format!(
                "dedup_retention: {r}ms must be a whole number of days (e.g. \"35d\"), or \"0d\" \
                 to keep entry ids for ever"
            ));
        }
        if r / DAY_MS > i64::from(i32::MAX) {
            return Err("dedup_retention: too many days".to_string());
        }
        Ok(())
    }
}

/// The topic key of a balance on the compacted `daily-balances` topic: `"{account}/{YYYY-MM-DD}"`.
/// A date chrono cannot represent (never produced by this processor) is written as its day
/// number instead.
pub fn output_key(balance: &DailyBalance) -> String {
    format!(
        "{}/{}",
        balance.account_id,
        format_date(balance.business_date)
    )
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), or the number if out of range.
fn format_date(days: i32) -> String {
    date_text(days).unwrap_or_else(|| days.to_string())
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01); `None` outside the calendar's range.
pub(crate) fn date_text(days: i32) -> Option<String> {
    NaiveDate::from_epoch_days(days)
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()))
}

/// The business date (days since 1970-01-01) of an instant in a time zone, if representable.
pub fn business_date(occurred_at: Millis, tz: Tz) -> Option<i32> {
    let utc = DateTime::from_timestamp_millis(occurred_at)?;
    Some(utc.with_timezone(&tz).date_naive().to_epoch_days())
}

/// Parse an 8-4-4-4-12 hex UUID (either case) into its 16 bytes.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let hex = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        // Hex groups have even lengths, so a pair never straddles a dash and `i + 1 < 36`.
        out[n] = (hex(b[i])? << 4) | hex(*b.get(i + 1)?)?;
        n += 1;
        i += 2;
    }
    Some(out)
}

/// A free-text field shown in a rejection only when it cannot hide a CPF/CNPJ.
fn shown(s: &str) -> String {
    if s.chars().count() <= 16 && !s.chars().any(|c| c.is_ascii_digit()) {
        format!("`{s}`")
    } else {
        format!("({} chars, not shown)", s.chars().count())
    }
}

fn corrupt(what: &str) -> Rejection {
    Rejection::new(
        reasons::CORRUPT_STATE,
        format!("stored {what} cannot be decoded"),
    )
}

/// Debit or credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Debit,
    Credit,
}

/// A validated entry.
struct Valid {
    id: [u8; 16],
    kind: Kind,
    amount: Decimal,
    date: i32,
}

/// Per-account dedup horizon, persisted in [`ACCOUNTS_TABLE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct AccountMeta {
    /// Latest business date applied.
    max_date: i32,
    /// Dates before this are rejected as `too_late` and their ids are pruned.
    floor: i32,
    /// Dates (ascending) whose ids are still kept (in [`DAY_IDS_TABLE`]).
    live_dates: Vec<i32>,
}

/// What applying an entry does to its account's horizon.
struct Plan {
    max_date: i32,
    floor: i32,
    prune: Vec<i32>,
}

struct DaySlot {
    balance: DailyBalance,
    dirty: bool,
}

struct Chunk {
    ids: Vec<[u8; 16]>,
    dirty: bool,
}

struct AccountSlot {
    /// `None` for an account without a stored horizon (or when retention is off).
    meta: Option<AccountMeta>,
    meta_dirty: bool,
    days: HashMap<i32, DaySlot>,
    chunks: HashMap<(i32, u64), Chunk>,
    /// With a retention: every id of the account's live days, with its business date.
    ids: HashMap<[u8; 16], i32>,
    /// Listed in `dirty_accounts`.
    dirty: bool,
}

fn chunk_key(account: &str, date: i32, chunk: u64) -> Vec<u8> {
    let mut key = views::daily_balance_key(account, date);
    key.extend_from_slice(&chunk.to_be_bytes());
    key
}

fn to_postcard<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard's allocating serializer only fails for types it cannot encode (none here: i32,
    // Vec<i32>, Vec<[u8; 16]>, structs of those) or on a full fixed buffer (the Vec grows).
    postcard::to_allocvec(value).expect("postcard encoding of plain integers and vectors")
}

/// The postcard encoding of a chunk's ids, `Vec<[u8; 16]>` (what [`load_chunk`] decodes): the
/// length as a varint, then the ids' bytes. Written by hand because postcard's serializer goes
/// byte by byte through 4 KiB per busy account-day at every checkpoint.
fn encode_ids(ids: &[[u8; 16]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + ids.len() * 16);
    let mut n = ids.len();
    while n >= 0x80 {
        // Low 7 bits first, the high bit saying that more follow (LEB128, postcard's varint).
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    for id in ids {
        out.extend_from_slice(id);
    }
    out
}

/// Idempotent daily consolidated balance per `(account, business date)`; see the module docs.
pub struct ConsolidationProcessor {
    config: Config,
    tz: Tz,
    /// `None` = keep ids for ever.
    retention_days: Option<i32>,
    accounts: HashMap<String, AccountSlot>,
    /// Account, day and chunk slots held.
    cached: usize,
    dirty_accounts: Vec<String>,
    /// Without a retention: ids applied since the last flush, for [`ENTRIES_TABLE`].
    pending_ids: HashMap<[u8; 16], i32>,
    /// [`DAY_IDS_TABLE`] keys pruned since the last flush.
    deleted_chunks: Vec<Vec<u8>>,
    duplicates_skipped: u64,
}

impl fmt::Debug for ConsolidationProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No account ids: they may be document numbers.
        f.debug_struct("ConsolidationProcessor")
            .field("config", &self.config)
            .field("cached", &self.cached)
            .field("pending_ids", &self.pending_ids.len())
            .field("duplicates_skipped", &self.duplicates_skipped)
            .finish_non_exhaustive()
    }
}

impl ConsolidationProcessor {
    /// A processor with empty memory; everything it needs is loaded lazily from state.
    /// `config` should have passed [`Config::validate`]; a retention that is not a whole number of
    /// days is rounded up, a negative one means "keep for ever".
    pub fn new(config: Config) -> Self {
        let r = config.dedup_retention.millis();
        let retention_days = if r <= 0 {
            None
        } else {
            Some(i32::try_from((r + DAY_MS - 1) / DAY_MS).unwrap_or(i32::MAX))
        };
        Self {
            tz: config.time_zone.0,
            retention_days,
            config,
            accounts: HashMap::new(),
            cached: 0,
            dirty_accounts: Vec::new(),
            pending_ids: HashMap::new(),
            deleted_chunks: Vec::new(),
            duplicates_skipped: 0,
        }
    }

    /// How many entries were skipped as duplicates of an already-applied id since this instance
    /// was built (a metric; not persisted).
    pub fn duplicates_skipped(&self) -> u64 {
        self.duplicates_skipped
    }

    fn check(&self, e: &LedgerEntry) -> Result<Valid, Rejection> {
        let id = match e.entry_id.as_deref().map(str::trim) {
            None | Some("") => {
                return Err(Rejection::new(
                    reasons::MISSING_ENTRY_ID,
                    "entry_id is missing or blank",
                ))
            }
            Some(s) => match parse_uuid(s) {
                Some(id) if id != [0; 16] => id,
                Some(_) => {
                    return Err(Rejection::new(
                        reasons::INVALID_ENTRY_ID,
                        "entry_id is the nil UUID",
                    ))
                }
                None => {
                    return Err(Rejection::new(
                        reasons::INVALID_ENTRY_ID,
                        format!(
                            "entry_id ({} chars) is not a UUID in 8-4-4-4-12 hex form",
                            s.chars().count()
                        ),
                    ))
                }
            },
        };
        if e.account_id.trim().is_empty() {
            return Err(Rejection::new(
                reasons::BLANK_ACCOUNT,
                "account_id is empty or blank",
            ));
        }
        if e.account_id.contains('\0') {
            return Err(Rejection::new(
                reasons::INVALID_ACCOUNT,
                "account_id contains a NUL byte",
            ));
        }
        let kind = match e.kind.as_str() {
            "DEBIT" => Kind::Debit,
            "CREDIT" => Kind::Credit,
            other => {
                return Err(Rejection::new(
                    reasons::UNKNOWN_KIND,
                    format!("kind {} is not DEBIT or CREDIT (upper case)", shown(other)),
                ))
            }
        };
        if e.amount <= Decimal::ZERO {
            return Err(Rejection::new(
                reasons::INVALID_AMOUNT,
                format!("amount {} must be greater than zero", e.amount),
            ));
        }
        if e.amount.normalize().scale() > MONEY_SCALE {
            return Err(Rejection::new(
                reasons::INVALID_AMOUNT,
                format!("amount {} has more than 2 decimal places", e.amount),
            ));
        }
        if e.amount > MAX_MONEY {
            return Err(Rejection::new(
                reasons::INVALID_AMOUNT,
                format!("amount {} does not fit decimal(18, 2)", e.amount),
            ));
        }
        let mut amount = e.amount;
        // Exact: the normalised scale is at most 2.
        amount.rescale(MONEY_SCALE);
        if e.currency != self.config.currency {
            return Err(Rejection::new(
                reasons::UNSUPPORTED_CURRENCY,
                format!(
                    "currency {} is not {}",
                    shown(&e.currency),
                    self.config.currency
                ),
            ));
        }
        let date = business_date(e.occurred_at, self.tz).ok_or_else(|| {
            Rejection::new(
                reasons::INVALID_OCCURRED_AT,
                format!("occurred_at {} ms is out of range", e.occurred_at),
            )
        })?;
        Ok(Valid {
            id,
            kind,
            amount,
            date,
        })
    }
}

/// A stored balance row, or a zero row when `(account, date)` has none yet.
fn load_day(state: &dyn StateReader, account: &str, date: i32) -> Result<DaySlot, Rejection> {
    let balance = match state.get(
        views::DAILY_BALANCES,
        &views::daily_balance_key(account, date),
    ) {
        Some(bytes) => {
            let row: DailyBalance =
                serde_json::from_slice(&bytes).map_err(|_| corrupt("daily balance row"))?;
            if row.account_id != account || row.business_date != date {
                return Err(corrupt("daily balance row (key mismatch)"));
            }
            row
        }
        None => DailyBalance {
            account_id: account.to_string(),
            business_date: date,
            total_credits: Decimal::new(0, MONEY_SCALE),
            total_debits: Decimal::new(0, MONEY_SCALE),
            net: Decimal::new(0, MONEY_SCALE),
            entry_count: 0,
            last_entry_at: 0,
            updated_at: 0,
        },
    };
    Ok(DaySlot {
        balance,
        dirty: false,
    })
}

/// A stored id chunk, if it exists.
fn load_chunk(
    state: &dyn StateReader,
    account: &str,
    date: i32,
    chunk: u64,
) -> Result<Option<Chunk>, Rejection> {
    match state.get(DAY_IDS_TABLE, &chunk_key(account, date, chunk)) {
        Some(bytes) => postcard::from_bytes::<Vec<[u8; 16]>>(&bytes)
            .map(|ids| Some(Chunk { ids, dirty: false }))
            .map_err(|_| corrupt("day id chunk")),
        None => Ok(None),
    }
}

/// Without a retention: whether an id was applied, since the last flush or in [`ENTRIES_TABLE`].
fn is_known_forever(
    pending: &HashMap<[u8; 16], i32>,
    state: &dyn StateReader,
    id: &[u8; 16],
) -> bool {
    pending.contains_key(id) || state.get(ENTRIES_TABLE, id).is_some()
}

impl AccountSlot {
    /// A slot for `account`, with its stored horizon and the ids of its live days when
    /// `with_meta`, and how many slots and ids it caches.
    fn load(
        state: &dyn StateReader,
        account: &str,
        with_meta: bool,
    ) -> Result<(Self, usize), Rejection> {
        let meta = match with_meta {
            false => None,
            true => match state.get(ACCOUNTS_TABLE, account.as_bytes()) {
                None => None,
                Some(bytes) => Some(
                    postcard::from_bytes::<AccountMeta>(&bytes)
                        .map_err(|_| corrupt("account horizon"))?,
                ),
            },
        };
        let mut slot = AccountSlot {
            meta,
            meta_dirty: false,
            days: HashMap::new(),
            chunks: HashMap::new(),
            ids: HashMap::new(),
            dirty: false,
        };
        let cached = 1 + slot.load_ids(state, account)?;
        Ok((slot, cached))
    }

    /// Loads the ids of every live day from its chunks (with the day rows that count them), and
    /// keeps each day's last, partly filled chunk for the next append. Returns how many slots and
    /// ids it cached.
    fn load_ids(&mut self, state: &dyn StateReader, account: &str) -> Result<usize, Rejection> {
        let dates = match &self.meta {
            Some(meta) => meta.live_dates.clone(),
            None => return Ok(0),
        };
        let mut cached = 0;
        for date in dates {
            let day = load_day(state, account, date)?;
            let count = day.balance.entry_count;
            self.days.insert(date, day);
            cached += 1;
            let chunks = chunk_count(count);
            for c in 0..chunks {
                let Some(chunk) = load_chunk(state, account, date, c)? else {
                    continue;
                };
                cached += chunk.ids.len();
                self.ids.extend(chunk.ids.iter().map(|id| (*id, date)));
                if c + 1 == chunks && count % IDS_PER_CHUNK != 0 {
                    self.chunks.insert((date, c), chunk);
                    cached += 1;
                }
            }
        }
        Ok(cached)
    }

    /// The horizon change applying an entry of `date` makes with `r` days of retention, or
    /// `too_late`.
    fn plan(&self, r: i32, date: i32) -> Result<Plan, Rejection> {
        let Some(meta) = &self.meta else {
            return Ok(Plan {
                max_date: date,
                floor: date.saturating_sub(r),
                prune: Vec::new(),
            });
        };
        let max_date = meta.max_date.max(date);
        let floor = meta.floor.max(max_date.saturating_sub(r));
        if date < floor {
            return Err(Rejection::new(
                reasons::TOO_LATE,
                format!(
                    "business date {} is before the account's dedup horizon {} (latest business \
                     date {} minus dedup_retention {r}d)",
                    format_date(date),
                    format_date(floor),
                    format_date(max_date),
                ),
            ));
        }
        let prune = meta
            .live_dates
            .iter()
            .copied()
            .filter(|&d| d < floor)
            .collect();
        Ok(Plan {
            max_date,
            floor,
            prune,
        })
    }
}

/// Moves an account's horizon as `plan` says and lists `date` among its live days.
fn advance(meta: &mut Option<AccountMeta>, plan: &Plan, date: i32) {
    let meta = meta.get_or_insert_with(|| AccountMeta {
        max_date: plan.max_date,
        floor: plan.floor,
        live_dates: Vec::new(),
    });
    meta.max_date = plan.max_date;
    meta.floor = plan.floor;
    meta.live_dates.retain(|&d| d >= plan.floor);
    if let Err(pos) = meta.live_dates.binary_search(&date) {
        meta.live_dates.insert(pos, date);
    }
}

/// Number of chunks a day with `entry_count` entries may have.
fn chunk_count(entry_count: i64) -> u64 {
    u64::try_from((entry_count + IDS_PER_CHUNK - 1) / IDS_PER_CHUNK).unwrap_or(0)
}

impl Processor for ConsolidationProcessor {
    type Input = LedgerEntry;
    type Output = DailyBalance;

    fn process(
        &mut self,
        ctx: &mut Context<'_, DailyBalance>,
        input: LedgerEntry,
    ) -> Result<(), Rejection> {
        // Phase 1: validate and load everything needed; no logical state changes (loading into
        // the cache is not one), so any rejection leaves the state as it was.
        let v = self.check(&input)?;
        let state = ctx.state;
        let account = input.account_id.as_str();
        if !self.accounts.contains_key(account) {
            let (slot, cached) = AccountSlot::load(state, account, self.retention_days.is_some())?;
            self.accounts.insert(account.to_string(), slot);
            self.cached += cached;
        }
        let Self {
            accounts,
            retention_days,
            cached,
            dirty_accounts,
            pending_ids,
            deleted_chunks,
            duplicates_skipped,
            ..
        } = self;
        // Cannot fail: the slot was inserted just above if it was missing, and slots are only
        // removed in `flush`.
        let slot = accounts
            .get_mut(account)
            .expect("the account's slot was inserted just above if it was missing");
        let plan = match *retention_days {
            Some(r) => Some(slot.plan(r, v.date)?),
            None => None,
        };
        let known = match plan {
            Some(_) => slot.ids.contains_key(&v.id),
            None => is_known_forever(pending_ids, state, &v.id),
        };
        if known {
            *duplicates_skipped += 1;
            return Ok(());
        }
        // Days whose ids the horizon leaves behind, with how many chunks each may have.
        let mut prune = Vec::new();
        for &d in plan.iter().flat_map(|p| &p.prune) {
            if let Entry::Vacant(e) = slot.days.entry(d) {
                e.insert(load_day(state, account, d)?);
                *cached += 1;
            }
            prune.push((d, chunk_count(slot.days[&d].balance.entry_count)));
        }
        let day = match slot.days.entry(v.date) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(e) => {
                let day = e.insert(load_day(state, account, v.date)?);
                *cached += 1;
                day
            }
        };
        let ordinal = day.balance.entry_count;
        let total = match v.kind {
            Kind::Credit => day.balance.total_credits,
            Kind::Debit => day.balance.total_debits,
        };
        let Some(total) = total.checked_add(v.amount).filter(|t| *t <= MAX_MONEY) else {
            return Err(Rejection::new(
                reasons::BALANCE_OVERFLOW,
                format!(
                    "the {} total of {} would exceed decimal(18, 2)",
                    if v.kind == Kind::Credit {
                        "credit"
                    } else {
                        "debit"
                    },
                    format_date(v.date)
                ),
            ));
        };
        // The chunk this id goes into (only kept with a retention).
        let chunk = u64::try_from(ordinal / IDS_PER_CHUNK).unwrap_or(0);
        let open = match (&plan, slot.chunks.entry((v.date, chunk))) {
            (None, _) => None,
            (Some(_), Entry::Occupied(o)) => Some(o.into_mut()),
            (Some(_), Entry::Vacant(e)) => {
                // The first id of a chunk starts it: it cannot exist yet, skip the read.
                let loaded = if ordinal % IDS_PER_CHUNK == 0 {
                    None
                } else {
                    load_chunk(state, account, v.date, chunk)?
                };
                *cached += 1;
                Some(e.insert(loaded.unwrap_or_else(Chunk::empty)))
            }
        };

        // Phase 2: apply; nothing below can fail.
        if let Some(ch) = open {
            ch.ids.push(v.id);
            ch.dirty = true;
        }
        if let Some(plan) = &plan {
            for (d, chunks) in prune {
                for c in 0..chunks {
                    if slot.chunks.remove(&(d, c)).is_some() {
                        *cached -= 1;
                    }
                    deleted_chunks.push(chunk_key(account, d, c));
                }
            }
            // The cached ids belong to live days only, so they need a scan only when the
            // horizon passes one: a scan per entry would cost as much as the account's ids.
            if !plan.prune.is_empty() {
                let before = slot.ids.len();
                slot.ids.retain(|_, date| *date >= plan.floor);
                *cached -= before - slot.ids.len();
            }
            advance(&mut slot.meta, plan, v.date);
            slot.meta_dirty = true;
            slot.ids.insert(v.id, v.date);
            *cached += 1;
        } else {
            pending_ids.insert(v.id, v.date);
        }
        if !slot.dirty {
            slot.dirty = true;
            dirty_accounts.push(input.account_id.clone());
        }

        let b = &mut day.balance;
        match v.kind {
            Kind::Credit => b.total_credits = total,
            Kind::Debit => b.total_debits = total,
        }
        b.net = b.total_credits - b.total_debits;
        b.last_entry_at = if b.entry_count == 0 {
            input.occurred_at
        } else {
            b.last_entry_at.max(input.occurred_at)
        };
        b.entry_count += 1;
        b.updated_at = ctx.meta.processing_time;
        day.dirty = true;
        ctx.emit(day.balance.clone());
        Ok(())
    }

    fn flush(&mut self, changes: &mut dyn StateWriter) {
        // Deletes and puts never touch the same key: a pruned day never gets a new chunk.
        for key in self.deleted_chunks.drain(..) {
            changes.delete(DAY_IDS_TABLE, &key);
        }
        for (id, date) in self.pending_ids.drain() {
            changes.put(ENTRIES_TABLE, &id, &to_postcard(&date));
        }
        for account in std::mem::take(&mut self.dirty_accounts) {
            let Some(slot) = self.accounts.get_mut(&account) else {
                continue;
            };
            slot.dirty = false;
            if slot.meta_dirty {
                slot.meta_dirty = false;
                if let Some(meta) = &slot.meta {
                    changes.put(ACCOUNTS_TABLE, account.as_bytes(), &to_postcard(meta));
                }
            }
            for day in slot.days.values_mut().filter(|d| d.dirty) {
                day.dirty = false;
                // The row's key is `(account, date)` of the balance itself: `load_day` refuses a
                // stored row whose fields disagree with its key, and new rows are built with them.
                views::materialize(changes, &day.balance);
            }
            for (&(date, c), ch) in slot.chunks.iter_mut().filter(|(_, c)| c.dirty) {
                ch.dirty = false;
                changes.put(
                    DAY_IDS_TABLE,
                    &chunk_key(&account, date, c),
                    &encode_ids(&ch.ids),
                );
            }
        }
        if self.cached > self.config.max_cached_keys {
            self.accounts.clear();
            self.cached = 0;
        }
    }
}

impl Chunk {
    fn empty() -> Self {
        Chunk {
            ids: Vec::new(),
            dirty: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MemoryState, NoState};
    use crate::RecordMeta;
    use std::collections::HashSet;

    fn uuid(n: u64) -> String {
        format!("00000000-0000-4000-8000-{n:012x}")
    }

    /// Milliseconds of an RFC 3339 time.
    fn ms(s: &str) -> Millis {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// Days since the epoch of a calendar date.
    fn day(s: &str) -> i32 {
        NaiveDate::from_str(s).unwrap().to_epoch_days()
    }

    fn entry(id: u64, account: &str, kind: &str, amount: &str, at: &str) -> LedgerEntry {
        LedgerEntry {
            entry_id: Some(uuid(id)),
            account_id: account.to_string(),
            kind: kind.to_string(),
            amount: dec(amount),
            currency: "BRL".to_string(),
            occurred_at: ms(at),
            description: "pagamento 123.456.789-09".to_string(),
        }
    }

    type Outcome = Result<Vec<DailyBalance>, Rejection>;

    /// Feed `entries` (offsets from `first_offset`, processing time = 1_000_000 + offset).
    fn feed(
        p: &mut ConsolidationProcessor,
        state: &dyn StateReader,
        first_offset: i64,
        entries: &[LedgerEntry],
    ) -> Vec<Outcome> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let offset = first_offset + i as i64;
                let meta = RecordMeta {
                    topic: "ledger-entries",
                    partition: 0,
                    offset,
                    timestamp: None,
                    processing_time: 1_000_000 + offset,
                };
                let mut out = Vec::new();
                let mut ctx = Context::new(meta, state, &mut out);
                p.process(&mut ctx, e.clone()).map(|()| out)
            })
            .collect()
    }

    fn one(p: &mut ConsolidationProcessor, state: &dyn StateReader, e: LedgerEntry) -> Outcome {
        feed(p, state, 0, &[e]).remove(0)
    }

    fn balance(state: &MemoryState, account: &str, date: i32) -> Option<DailyBalance> {
        state
            .get(
                views::DAILY_BALANCES,
                &views::daily_balance_key(account, date),
            )
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    /// Every id kept in the day-id chunks, sorted.
    fn kept_ids(state: &MemoryState) -> Vec<[u8; 16]> {
        let mut ids: Vec<[u8; 16]> = state
            .table(DAY_IDS_TABLE)
            .iter()
            .flat_map(|(_, v)| postcard::from_bytes::<Vec<[u8; 16]>>(v).unwrap())
            .collect();
        ids.sort();
        ids
    }

    fn flushed(p: &mut ConsolidationProcessor, state: &mut MemoryState) {
        p.flush(state);
    }

    #[test]
    fn config_defaults_parse_and_validate() {
        let c = Config::default();
        assert_eq!(c.time_zone.0, chrono_tz::America::Sao_Paulo);
        assert_eq!(c.currency, "BRL");
        assert_eq!(c.dedup_retention, DurationMs(35 * DAY_MS));
        assert_eq!(c.max_cached_keys, 1_000_000);
        assert_eq!(c.validate(), Ok(()));

        let c: Config =
            serde_json::from_str(r#"{"time_zone": "UTC", "dedup_retention": "0d"}"#).unwrap();
        assert_eq!(c.time_zone.0, chrono_tz::UTC);
        assert_eq!(c.dedup_retention, DurationMs(0));
        assert_eq!(c.currency, "BRL");
        assert_eq!(c.validate(), Ok(()));

        let err = serde_json::from_str::<Config>(r#"{"time_zone": "Mars/Olympus"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("time_zone: `Mars/Olympus`"), "{err}");
        assert!(serde_json::from_str::<Config>(r#"{"timezone": "UTC"}"#).is_err());

        let bad = Config {
            currency: "brl".into(),
            ..Config::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("currency:"));
        let bad = Config {
            dedup_retention: DurationMs(36 * 3_600_000),
            ..Config::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("dedup_retention:"));
    }

    #[test]
    fn max_money_is_decimal_18_2() {
        assert_eq!(MAX_MONEY, dec("9999999999999999.99"));
    }

    #[test]
    fn id_chunks_are_encoded_as_postcard_encodes_them() {
        for n in [0_usize, 1, 127, 128, 255, 256, 20_000] {
            let ids: Vec<[u8; 16]> = (0..n)
                .map(|i| {
                    let mut id = [0xa5; 16];
                    id[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    id
                })
                .collect();
            assert_eq!(encode_ids(&ids), to_postcard(&ids), "{n} ids");
            assert_eq!(
                postcard::from_bytes::<Vec<[u8; 16]>>(&encode_ids(&ids)).unwrap(),
                ids
            );
        }
    }

    #[test]
    fn uuid_parsing() {
        let id = parse_uuid("0123abcd-4567-89ef-ABCD-0123456789aF").unwrap();
        assert_eq!(
            id,
            [
                0x01, 0x23, 0xab, 0xcd, 0x45, 0x67, 0x89, 0xef, 0xab, 0xcd, 0x01, 0x23, 0x45, 0x67,
                0x89, 0xaf
            ]
        );
        assert_eq!(parse_uuid("0123ABCD-4567-89EF-abcd-0123456789AF"), Some(id));
        for bad in [
            "0123abcd4567-89ef-abcd-0123456789af-",
            "0123abcd-4567-89ef-abcd-0123456789a",
            "0123abcd-4567-89ef-abcd-0123456789afa",
            "0123abcg-4567-89ef-abcd-0123456789af",
            "{123abcd-4567-89ef-abcd-0123456789a}",
            "0123abcd-4567-89ef-abcd-0123456789é",
            "12345678901",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn output_key_is_account_slash_iso_date() {
        let b = DailyBalance {
            account_id: "acc-1".into(),
            business_date: day("2024-03-09"),
            total_credits: Decimal::ZERO,
            total_debits: Decimal::ZERO,
            net: Decimal::ZERO,
            entry_count: 0,
            last_entry_at: 0,
            updated_at: 0,
        };
        assert_eq!(output_key(&b), "acc-1/2024-03-09");
        assert_eq!(
            output_key(&DailyBalance {
                business_date: -1,
                ..b.clone()
            }),
            "acc-1/1969-12-31"
        );
    }

    #[test]
    fn credits_and_debits_give_exact_net() {
        let mut p = ConsolidationProcessor::new(Config::default());
        let mut state = MemoryState::new();
        let entries = [
            entry(1, "acc", "CREDIT", "0.1", "2024-03-10T12:00:00Z"),
            entry(2, "acc", "CREDIT", "0.20", "2024-03-10T13:00:00Z"),
            entry(3, "acc", "DEBIT", "0.30", "2024-03-10T11:00:00Z"),
            entry(4, "acc", "DEBIT", "1000000.005000", "2024-03-10T11:00:00Z"),
        ];
        let out = feed(&mut p, &state, 0, &entries);
        assert_eq!(out[3].as_ref().unwrap_err().reason, reasons::INVALID_AMOUNT);
        let last = out[2].as_ref().unwrap()[0].clone();
        let expected = DailyBalance {
            account_id: "acc".into(),
            business_date: day("2024-03-10"),
            total_credits: dec("0.30"),
            total_debits: dec("0.30"),
            net: dec("0.00"),
            entry_count: 3,
            last_entry_at: ms("2024-03-10T13:00:00Z"),
            updated_at: 1_000_002,
        };
        assert_eq!(last, expected);
        assert_eq!(last.net.to_string(), "0.00");
        assert_eq!(last.total_credits.to_string(), "0.30");
        assert_eq!(
            out[0].as_ref().unwrap()[0].total_credits.to_string(),
            "0.10"
        );
        flushed(&mut p, &mut state);
        assert_eq!(balance(&state, "acc", day("2024-03-10")), Some(expected));
        let json = String::from_utf8(
            state
                .get(
                    views::DAILY_BALANCES,
                    &views::daily_balance_key("acc", day("2024-03-10")),
                )
                .unwrap(),
        )
        .unwrap();
        assert!(json.contains(r#""net":"0.00""#), "{json}");
    }

    /// Every rejection reason, with no output and no state change.
    #[test]
    fn each_rejection_reason_leaves_state_unchanged() {
        let mut p = ConsolidationProcessor::new(Config::default());
        let mut state = MemoryState::new();
        let ok = entry(1, "acc", "CREDIT", "10.00", "2024-03-10T12:00:00Z");
        feed(&mut p, &state, 0, std::slice::from_ref(&ok));
        flushed(&mut p, &mut state);
        let before = state.clone();

        let with = |f: &dyn Fn(&mut LedgerEntry)| {
            let mut e = entry(2, "acc", "CREDIT", "5.00", "2024-03-10T12:00:00Z");
            f(&mut e);
            e
        };
        let cases: Vec<(LedgerEntry, &str)> = vec![
            (with(&|e| e.entry_id = None), reasons::MISSING_ENTRY_ID),
            (
                with(&|e| e.entry_id = Some(" ".into())),
                reasons::MISSING_ENTRY_ID,
            ),
            (
                with(&|e| e.entry_id = Some("12345678901".into())),
                reasons::INVALID_ENTRY_ID,
            ),
            (
                with(&|e| e.entry_id = Some("00000000-0000-0000-0000-000000000000".into())),
                reasons::INVALID_ENTRY_ID,
            ),
            (
                with(&|e| e.account_id = "  ".into()),
                reasons::BLANK_ACCOUNT,
            ),
            (
                with(&|e| e.account_id = "a\0b".into()),
                reasons::INVALID_ACCOUNT,
            ),
            (with(&|e| e.kind = "debit".into()), reasons::UNKNOWN_KIND),
            (with(&|e| e.kind = "TRANSFER".into()), reasons::UNKNOWN_KIND),
            (with(&|e| e.kind = "CREDIT ".into()), reasons::UNKNOWN_KIND),
            (with(&|e| e.amount = dec("0")), reasons::INVALID_AMOUNT),
            (with(&|e| e.amount = dec("0.00")), reasons::INVALID_AMOUNT),
            (with(&|e| e.amount = dec("-5.00")), reasons::INVALID_AMOUNT),
            (with(&|e| e.amount = dec("5.001")), reasons::INVALID_AMOUNT),
            (
                with(&|e| e.amount = dec("10000000000000000.00")),
                reasons::INVALID_AMOUNT,
            ),
            (
                with(&|e| e.currency = "USD".into()),
                reasons::UNSUPPORTED_CURRENCY,
            ),
            (
                with(&|e| e.currency = "brl".into()),
                reasons::UNSUPPORTED_CURRENCY,
            ),
            (
                with(&|e| e.occurred_at = i64::MAX),
                reasons::INVALID_OCCURRED_AT,
            ),
            // The id of the applied entry, but invalid: rejected, not a duplicate.
            (
                LedgerEntry {
                    currency: "EUR".into(),
                    ..ok.clone()
                },
                reasons::UNSUPPORTED_CURRENCY,
            ),
        ];
        for (e, reason) in cases {
            let out = one(&mut p, &state, e.clone());
            let err = out.unwrap_err();
            assert_eq!(err.reason, reason, "{e:?}");
            assert!(!err.detail.contains("123.456"), "{}", err.detail);
            assert!(!err.detail.contains("12345678901"), "{}", err.detail);
            flushed(&mut p, &mut state);
            assert_eq!(state, before, "{e:?}");
        }
        assert_eq!(p.duplicates_skipped(), 0);
        let err = one(&mut p, &state, with(&|e| e.kind = "pix 12345678909".into())).unwrap_err();
        assert_eq!(
            err.detail,
            "kind (15 chars, not shown) is not DEBIT or CREDIT (upper case)"
        );
        let err = one(&mut p, &state, with(&|e| e.kind = "debit".into())).unwrap_err();
        assert_eq!(
            err.detail,
            "kind `debit` is not DEBIT or CREDIT (upper case)"
        );

        // The next valid entry still applies on top of the untouched state.
        let out = one(&mut p, &state, with(&|_| {})).unwrap();
        assert_eq!(out[0].total_credits, dec("15.00"));
        assert_eq!(out[0].entry_count, 2);
    }

    #[test]
    fn balance_overflow_is_rejected() {
        let mut p = ConsolidationProcessor::new(Config::default());
        let state = MemoryState::new();
        let big = entry(
            1,
            "acc",
            "DEBIT",
            "9999999999999999.99",
            "2024-03-10T12:00:00Z",
        );
        assert_eq!(
            one(&mut p, &state, big).unwrap()[0].net,
            dec("-9999999999999999.99")
        );
        let err = one(
            &mut p,
            &state,
            entry(2, "acc", "DEBIT", "0.01", "2024-03-10T12:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(err.reason, reasons::BALANCE_OVERFLOW);
        // Credits still fit.
        let out = one(
            &mut p,
            &state,
            entry(3, "acc", "CREDIT", "0.01", "2024-03-10T12:00:00Z"),
        )
        .unwrap();
        assert_eq!(out[0].net, dec("-9999999999999999.98"));
        assert_eq!(out[0].entry_count, 2);
    }

    #[test]
    fn duplicate_in_the_same_batch_counts_once() {
        let mut p = ConsolidationProcessor::new(Config::default());
        let state = MemoryState::new();
        let a = entry(1, "acc", "CREDIT", "10.00", "2024-03-10T12:00:00Z");
        let mut upper = a.clone();
        upper.entry_id = Some(uuid(1).to_uppercase());
        let out = feed(&mut p, &state, 0, &[a.clone(), a.clone(), upper]);
        assert_eq!(out[0].as_ref().unwrap()[0].total_credits, dec("10.00"));
        assert_eq!(out[1], Ok(vec![]));
        assert_eq!(out[2], Ok(vec![]));
        assert_eq!(p.duplicates_skipped(), 2);
        let out = one(
            &mut p,
            &state,
            entry(2, "acc", "CREDIT", "1.00", "2024-03-10T12:00:00Z"),
        );
        assert_eq!(out.unwrap()[0].total_credits, dec("11.00"));
    }

    #[test]
    fn duplicate_across_flush_and_new_instance_counts_once() {
        let mut state = MemoryState::new();
        let a = entry(1, "acc", "CREDIT", "10.00", "2024-03-10T12:00:00Z");
        let mut p = ConsolidationProcessor::new(Config::default());
        one(&mut p, &state, a.clone()).unwrap();
        flushed(&mut p, &mut state);
        // Same instance after the flush: found in state.
        assert_eq!(one(&mut p, &state, a.clone()), Ok(vec![]));
        assert_eq!(p.duplicates_skipped(), 1);
        // A new instance over the flushed state.
        let mut q = ConsolidationProcessor::new(Config::default());
        assert_eq!(one(&mut q, &state, a.clone()), Ok(vec![]));
        // A reused id with other content is skipped too: the first entry wins.
        let reused = entry(1, "acc", "DEBIT", "99.00", "2024-03-09T12:00:00Z");
        assert_eq!(one(&mut q, &state, reused), Ok(vec![]));
        assert_eq!(q.duplicates_skipped(), 2);
        flushed(&mut q, &mut state);
        let b = balance(&state, "acc", day("2024-03-10")).unwrap();
        assert_eq!((b.total_credits, b.entry_count), (dec("10.00"), 1));
        assert_eq!(balance(&state, "acc", day("2024-03-09")), None);
        // Kept in the account's day chunk, not in the id table of the no-retention mode.
        assert_eq!(kept_ids(&state), vec![parse_uuid(&uuid(1)).unwrap()]);
        assert!(state.table(ENTRIES_TABLE).is_empty());
    }

    /// With a retention, an id is recognised within its account: another account's entry with
    /// the same id is a different entry, before and after a flush and a new instance.
    #[test]
    fn an_id_is_recognised_within_its_account() {
        let series = [
            entry(1, "acc", "CREDIT", "1.00", "2024-03-01T12:00:00Z"),
            entry(1, "other", "DEBIT", "7.00", "2024-03-01T12:00:00Z"),
            entry(1, "other", "DEBIT", "9.00", "2024-03-02T12:00:00Z"),
            entry(1, "acc", "DEBIT", "5.00", "2024-03-02T12:00:00Z"),
        ];
        for split in 0..=series.len() {
            let mut state = MemoryState::new();
            let mut p = ConsolidationProcessor::new(Config::default());
            let mut out = feed(&mut p, &state, 0, &series[..split]);
            p.flush(&mut state);
            let mut p = ConsolidationProcessor::new(Config::default());
            out.extend(feed(&mut p, &state, split as i64, &series[split..]));
            p.flush(&mut state);
            assert_eq!(out[0].as_ref().unwrap().len(), 1, "split {split}");
            assert_eq!(
                out[1].as_ref().unwrap()[0].total_debits,
                dec("7.00"),
                "split {split}"
            );
            assert_eq!(out[2], Ok(vec![]), "split {split}");
            assert_eq!(out[3], Ok(vec![]), "split {split}");
        }
    }

    #[test]
    fn late_entry_updates_its_day_and_emits_the_corrected_balance() {
        let mut state = MemoryState::new();
        let mut p = ConsolidationProcessor::new(Config::default());
        feed(
            &mut p,
            &state,
            0,
            &[
                entry(1, "acc", "CREDIT", "100.00", "2024-03-09T15:00:00Z"),
                entry(2, "acc", "DEBIT", "30.00", "2024-03-10T15:00:00Z"),
            ],
        );
        flushed(&mut p, &mut state);
        let mut p = ConsolidationProcessor::new(Config::default());
        let out = feed(
            &mut p,
            &state,
            2,
            &[entry(3, "acc", "DEBIT", "25.50", "2024-03-09T10:00:00Z")],
        );
        let expected = DailyBalance {
            account_id: "acc".into(),
            business_date: day("2024-03-09"),
            total_credits: dec("100.00"),
            total_debits: dec("25.50"),
            net: dec("74.50"),
            entry_count: 2,
            // The max occurred_at, not the late entry's.
            last_entry_at: ms("2024-03-09T15:00:00Z"),
            updated_at: 1_000_002,
        };
        assert_eq!(out, vec![Ok(vec![expected.clone()])]);
        flushed(&mut p, &mut state);
        assert_eq!(balance(&state, "acc", day("2024-03-09")), Some(expected));
        let later = balance(&state, "acc", day("2024-03-10")).unwrap();
        assert_eq!((later.net, later.entry_count), (dec("-30.00"), 1));
    }

    #[test]
    fn business_date_changes_at_local_midnight() {
        let sp = chrono_tz::America::Sao_Paulo;
        // 2024 has no DST in Brazil: UTC-3, midnight = 03:00Z.
        assert_eq!(
            business_date(ms("2024-03-10T02:59:59.999Z"), sp),
            Some(day("2024-03-09"))
        );
        assert_eq!(
            business_date(ms("2024-03-10T03:00:00Z"), sp),
            Some(day("2024-03-10"))
        );
        assert_eq!(
            business_date(ms("2024-03-10T02:59:59Z"), chrono_tz::UTC),
            Some(day("2024-03-10"))
        );

        let mut state = MemoryState::new();
        let mut p = ConsolidationProcessor::new(Config::default());
        let out = feed(
            &mut p,
            &state,
            0,
            &[
                entry(1, "acc", "CREDIT", "1.00", "2024-03-10T02:59:59Z"),
                entry(2, "acc", "CREDIT", "2.00", "2024-03-10T03:00:00Z"),
            ],
        );
        assert_eq!(out[0].as_ref().unwrap()[0].business_date, day("2024-03-09"));
        assert_eq!(out[1].as_ref().unwrap()[0].business_date, day("2024-03-10"));
        flushed(&mut p, &mut state);
        assert_eq!(
            balance(&state, "acc", day("2024-03-09"))
                .unwrap()
                .total_credits,
            dec("1.00")
        );
        assert_eq!(
            balance(&state, "acc", day("2024-03-10"))
                .unwrap()
                .total_credits,
            dec("2.00")
        );

        // Another zone from the config.
        let mut p = ConsolidationProcessor::new(Config {
            time_zone: "Asia/Tokyo".parse().unwrap(),
            ..Config::default()
        });
        let out = one(
            &mut p,
            &NoState,
            entry(3, "acc", "CREDIT", "1.00", "2024-03-09T15:00:00Z"),
        );
        assert_eq!(out.unwrap()[0].business_date, day("2024-03-10"));
    }

    /// São Paulo used DST (UTC-2) until 2019: a fixed UTC-3 offset gets these wrong.
    #[test]
    fn business_date_uses_the_tz_database_across_dst() {
        let sp = chrono_tz::America::Sao_Paulo;
        let bd = |s: &str| business_date(ms(s), sp).unwrap();
        // Mid-DST day: midnight is 02:00Z.
        assert_eq!(bd("2018-12-15T01:59:59Z"), day("2018-12-14"));
        assert_eq!(bd("2018-12-15T02:00:00Z"), day("2018-12-15"));
        assert_eq!(bd("2018-12-15T02:30:00Z"), day("2018-12-15"));
        // DST started on 2018-11-04: local 00:00 jumped to 01:00, the day began at 03:00Z.
        assert_eq!(bd("2018-11-04T02:59:59Z"), day("2018-11-03"));
        assert_eq!(bd("2018-11-04T03:00:00Z"), day("2018-11-04"));
        // DST ended on 2019-02-17: local 00:00 went back to 23:00 of the 16th, so 02:00Z to
        // 02:59Z are the 16th a second time and the 17th began at 03:00Z.
        assert_eq!(bd("2019-02-17T01:59:59Z"), day("2019-02-16"));
        assert_eq!(bd("2019-02-17T02:30:00Z"), day("2019-02-16"));
        assert_eq!(bd("2019-02-17T03:00:00Z"), day("2019-02-17"));
        // Pre-epoch instants give negative day numbers.
        assert_eq!(bd("1969-12-31T12:00:00Z"), -1);
    }

    /// A series through one instance vs. the first half through A, flush, the rest through B.
    #[test]
    fn stop_restore_compare() {
        let mut entries = Vec::new();
        for i in 0..600_u64 {
            // Every 11th entry re-sends the id of the entry two before it (a duplicate: the
            // account follows the id).
            let id = if i % 11 == 0 && i > 0 { i - 1 } else { i + 1 };
            let account = format!("acc-{}", id % 7);
            let kind = if i % 3 == 0 { "DEBIT" } else { "CREDIT" };
            let amount = format!("{}.{:02}", i % 50 + 1, i % 100);
            // Days move forward, every fifth entry is 1-3 days late and
            // every 97th is 15 days late (beyond the 10-day retention once the series is old).
            let late = match i {
                _ if i % 97 == 0 => 15,
                _ if i % 5 == 0 => (i % 3 + 1) as i64,
                _ => 0,
            };
            let d = (i / 20) as i64 - late;
            let at = ms("2024-01-01T03:00:00Z") + d * DAY_MS + (i as i64 * 7_919) % DAY_MS;
            let mut e = entry(id, &account, kind, &amount, "2024-01-01T00:00:00Z");
            e.occurred_at = at;
            if i % 37 == 0 {
                e.currency = "USD".into();
            }
            entries.push(e);
        }
        let config = || Config {
            dedup_retention: "10d".parse().unwrap(),
            ..Config::default()
        };
        let mut whole_state = MemoryState::new();
        let mut whole = ConsolidationProcessor::new(config());
        let expected = feed(&mut whole, &whole_state, 0, &entries);
        whole.flush(&mut whole_state);

        for split in [1, 137, 300, 599] {
            let mut state = MemoryState::new();
            let mut a = ConsolidationProcessor::new(config());
            let mut got = feed(&mut a, &state, 0, &entries[..split]);
            a.flush(&mut state);
            drop(a);
            let mut b = ConsolidationProcessor::new(config());
            got.extend(feed(&mut b, &state, split as i64, &entries[split..]));
            b.flush(&mut state);
            assert_eq!(got, expected, "split {split}");
            assert_eq!(state, whole_state, "split {split}");
        }
        // The series exercises duplicates, rejections and pruning.
        assert!(whole.duplicates_skipped() > 40);
        let count = |reason: &str| {
            expected
                .iter()
                .filter(|o| o.as_ref().is_err_and(|r| r.reason == reason))
                .count()
        };
        assert_eq!(count(reasons::TOO_LATE), 6);
        assert_eq!(count(reasons::UNSUPPORTED_CURRENCY), 17);
        let applied = expected
            .iter()
            .filter(|o| o.as_ref().is_ok_and(|v| !v.is_empty()))
            .count();
        assert_eq!(applied + 6 + 17 + whole.duplicates_skipped() as usize, 600);
        // Pruned: fewer ids kept than applied.
        assert!(kept_ids(&whole_state).len() < applied);
    }

    #[test]
    fn retention_rejects_too_late_and_prunes_old_ids() {
        let config = || Config {
            dedup_retention: "2d".parse().unwrap(),
            ..Config::default()
        };
        let mut state = MemoryState::new();
        let mut p = ConsolidationProcessor::new(config());
        // 600 entries on 03-01 (three chunks), one on 03-02, one for another account on 03-01.
        let mut first: Vec<LedgerEntry> = (1..=600)
            .map(|i| entry(i, "acc", "CREDIT", "1.00", "2024-03-01T12:00:00Z"))
            .collect();
        first.push(entry(1000, "acc", "DEBIT", "1.00", "2024-03-02T12:00:00Z"));
        first.push(entry(
            2000,
            "other",
            "DEBIT",
            "1.00",
            "2024-03-01T12:00:00Z",
        ));
        assert!(feed(&mut p, &state, 0, &first).iter().all(Result::is_ok));
        p.flush(&mut state);
        assert_eq!(kept_ids(&state).len(), 602);
        assert!(state.table(ENTRIES_TABLE).is_empty());
        assert_eq!(state.table(DAY_IDS_TABLE).len(), 3 + 1 + 1);
        let chunk2 = state
            .get(DAY_IDS_TABLE, &chunk_key("acc", day("2024-03-01"), 2))
            .unwrap();
        assert_eq!(
            postcard::from_bytes::<Vec<[u8; 16]>>(&chunk2)
                .unwrap()
                .len(),
            88
        );

        // A new instance: 03-03 is within 2 days of 03-01, nothing pruned yet.
        let mut p = ConsolidationProcessor::new(config());
        let out = one(
            &mut p,
            &state,
            entry(3, "acc", "CREDIT", "5.00", "2024-03-03T12:00:00Z"),
        );
        assert_eq!(out, Ok(vec![]), "duplicate");
        one(
            &mut p,
            &state,
            entry(3000, "acc", "CREDIT", "5.00", "2024-03-03T12:00:00Z"),
        )
        .unwrap();
        p.flush(&mut state);
        assert_eq!(kept_ids(&state).len(), 603);

        // 03-04 moves acc's horizon to 03-02: 03-01's ids and chunks go, 03-02's stay.
        one(
            &mut p,
            &state,
            entry(4000, "acc", "CREDIT", "5.00", "2024-03-04T12:00:00Z"),
        )
        .unwrap();
        // In the same batch, a duplicate of a pruned day is too late, not a duplicate.
        let err = one(
            &mut p,
            &state,
            entry(3, "acc", "CREDIT", "1.00", "2024-03-01T12:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(err.reason, reasons::TOO_LATE);
        assert_eq!(
            err.detail,
            "business date 2024-03-01 is before the account's dedup horizon 2024-03-02 (latest \
             business date 2024-03-04 minus dedup_retention 2d)"
        );
        // A new entry for the horizon day itself is still accepted.
        one(
            &mut p,
            &state,
            entry(5000, "acc", "CREDIT", "5.00", "2024-03-02T12:00:00Z"),
        )
        .unwrap();
        p.flush(&mut state);
        let ids = kept_ids(&state);
        let expect_ids: Vec<[u8; 16]> = [1000, 2000, 3000, 4000, 5000]
            .iter()
            .map(|&n| parse_uuid(&uuid(n)).unwrap())
            .collect();
        assert_eq!(ids, expect_ids);
        let chunk_keys: Vec<Vec<u8>> = state
            .table(DAY_IDS_TABLE)
            .iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        let mut expect_keys = vec![
            chunk_key("acc", day("2024-03-02"), 0),
            chunk_key("acc", day("2024-03-03"), 0),
            chunk_key("acc", day("2024-03-04"), 0),
            chunk_key("other", day("2024-03-01"), 0),
        ];
        expect_keys.sort();
        assert_eq!(chunk_keys, expect_keys);
        let meta: AccountMeta =
            postcard::from_bytes(&state.get(ACCOUNTS_TABLE, b"acc").unwrap()).unwrap();
        assert_eq!(
            meta,
            AccountMeta {
                max_date: day("2024-03-04"),
                floor: day("2024-03-02"),
                live_dates: vec![day("2024-03-02"), day("2024-03-03"), day("2024-03-04")],
            }
        );
        // The pruned day's balance row stays in the view.
        let b = balance(&state, "acc", day("2024-03-01")).unwrap();
        assert_eq!((b.total_credits, b.entry_count), (dec("600.00"), 600));
        let b = balance(&state, "acc", day("2024-03-02")).unwrap();
        assert_eq!((b.net, b.entry_count), (dec("4.00"), 2));
        // Another account's horizon is its own.
        let out = one(
            &mut p,
            &state,
            entry(2001, "other", "CREDIT", "1.00", "2024-02-28T12:00:00Z"),
        );
        assert_eq!(out.unwrap()[0].business_date, day("2024-02-28"));
    }

    /// An id pruned in this batch is unknown at once, exactly as it is after a flush.
    #[test]
    fn pruned_id_is_forgotten_in_the_same_batch_as_after_a_flush() {
        let config = || Config {
            dedup_retention: "2d".parse().unwrap(),
            ..Config::default()
        };
        let series = [
            entry(1, "acc", "CREDIT", "1.00", "2024-03-01T12:00:00Z"),
            entry(2, "acc", "CREDIT", "1.00", "2024-03-04T12:00:00Z"),
            // Id 1 reused, within the horizon, after acc's 03-01 was pruned: no longer known.
            entry(1, "acc", "DEBIT", "7.00", "2024-03-04T13:00:00Z"),
            entry(1, "acc", "DEBIT", "9.00", "2024-03-04T14:00:00Z"),
        ];
        for split in 0..=series.len() {
            let mut state = MemoryState::new();
            let mut p = ConsolidationProcessor::new(config());
            let mut out = feed(&mut p, &state, 0, &series[..split]);
            p.flush(&mut state);
            let mut p = ConsolidationProcessor::new(config());
            out.extend(feed(&mut p, &state, split as i64, &series[split..]));
            p.flush(&mut state);
            assert_eq!(
                out[2].as_ref().unwrap()[0].total_debits,
                dec("7.00"),
                "split {split}"
            );
            assert_eq!(out[3], Ok(vec![]), "split {split}");
            let mut expect = vec![parse_uuid(&uuid(1)).unwrap(), parse_uuid(&uuid(2)).unwrap()];
            expect.sort();
            assert_eq!(kept_ids(&state), expect, "split {split}");
            assert_eq!(
                state.table(DAY_IDS_TABLE).len(),
                1,
                "only 03-04's chunk, split {split}"
            );
        }
    }

    /// The horizon never moves back: raising the retention does not reopen pruned days.
    #[test]
    fn raising_retention_does_not_reopen_pruned_days() {
        let with = |days: &str| Config {
            dedup_retention: days.parse().unwrap(),
            ..Config::default()
        };
        let mut state = MemoryState::new();
        let mut p = ConsolidationProcessor::new(with("2d"));
        feed(
            &mut p,
            &state,
            0,
            &[
                entry(1, "acc", "CREDIT", "1.00", "2024-03-01T12:00:00Z"),
                entry(2, "acc", "CREDIT", "1.00", "2024-03-04T12:00:00Z"),
            ],
        );
        p.flush(&mut state);
        let mut p = ConsolidationProcessor::new(with("5d"));
        let err = one(
            &mut p,
            &state,
            entry(1, "acc", "CREDIT", "1.00", "2024-03-01T12:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(err.reason, reasons::TOO_LATE);
        // Lowering it prunes more at the account's next entry.
        let mut p = ConsolidationProcessor::new(with("1d"));
        one(
            &mut p,
            &state,
            entry(3, "acc", "CREDIT", "1.00", "2024-03-04T13:00:00Z"),
        )
        .unwrap();
        let err = one(
            &mut p,
            &state,
            entry(4, "acc", "CREDIT", "1.00", "2024-03-02T12:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(err.reason, reasons::TOO_LATE);
        one(
            &mut p,
            &state,
            entry(5, "acc", "CREDIT", "1.00", "2024-03-03T12:00:00Z"),
        )
        .unwrap();
    }

    #[test]
    fn zero_retention_keeps_ids_forever() {
        let config = || Config {
            dedup_retention: "0d".parse().unwrap(),
            ..Config::default()
        };
        let mut state = MemoryState::new();
        let mut p = ConsolidationProcessor::new(config());
        one(
            &mut p,
            &state,
            entry(1, "acc", "CREDIT", "1.00", "2020-01-01T12:00:00Z"),
        )
        .unwrap();
        one(
            &mut p,
            &state,
            entry(2, "acc", "CREDIT", "1.00", "2024-01-01T12:00:00Z"),
        )
        .unwrap();
        p.flush(&mut state);
        let mut p = ConsolidationProcessor::new(config());
        assert_eq!(
            one(
                &mut p,
                &state,
                entry(1, "acc", "CREDIT", "1.00", "2020-01-01T12:00:00Z")
            ),
            Ok(vec![])
        );
        let out = one(
            &mut p,
            &state,
            entry(3, "acc", "CREDIT", "1.00", "2020-01-01T13:00:00Z"),
        );
        assert_eq!(out.unwrap()[0].entry_count, 2);
        p.flush(&mut state);
        assert_eq!(state.table(ENTRIES_TABLE).len(), 3);
        assert!(state.table(ACCOUNTS_TABLE).is_empty());
        assert!(state.table(DAY_IDS_TABLE).is_empty());
    }

    #[test]
    fn cache_is_dropped_after_flush_and_reloads() {
        let mut state = MemoryState::new();
        let mut p = ConsolidationProcessor::new(Config {
            max_cached_keys: 2,
            ..Config::default()
        });
        for i in 0..10_u64 {
            let account = format!("acc-{}", i % 3);
            one(
                &mut p,
                &state,
                entry(i + 1, &account, "CREDIT", "1.00", "2024-03-10T12:00:00Z"),
            )
            .unwrap();
            p.flush(&mut state);
            assert_eq!(p.cached, 0);
        }
        assert_eq!(
            balance(&state, "acc-0", day("2024-03-10"))
                .unwrap()
                .entry_count,
            4
        );
        assert_eq!(
            balance(&state, "acc-1", day("2024-03-10"))
                .unwrap()
                .entry_count,
            3
        );
        assert_eq!(
            one(
                &mut p,
                &state,
                entry(1, "acc-0", "CREDIT", "1.00", "2024-03-10T12:00:00Z")
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn corrupt_row_is_rejected_without_changes() {
        let mut state = MemoryState::new();
        state.put(
            views::DAILY_BALANCES,
            &views::daily_balance_key("acc", day("2024-03-10")),
            b"not json",
        );
        let before = state.clone();
        let mut p = ConsolidationProcessor::new(Config::default());
        let err = one(
            &mut p,
            &state,
            entry(1, "acc", "CREDIT", "1.00", "2024-03-10T12:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(err.reason, reasons::CORRUPT_STATE);
        p.flush(&mut state);
        assert_eq!(state, before);
    }

    #[test]
    fn debug_output_hides_accounts() {
        let mut p = ConsolidationProcessor::new(Config::default());
        one(
            &mut p,
            &NoState,
            entry(
                1,
                "123.456.789-09",
                "CREDIT",
                "1.00",
                "2024-03-10T12:00:00Z",
            ),
        )
        .unwrap();
        let debug = format!("{p:?}");
        assert!(!debug.contains("123.456"), "{debug}");
        assert!(debug.contains("America/Sao_Paulo"), "{debug}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        const BASE: Millis = 1_709_262_000_000; // 2024-03-01T03:00:00Z, local midnight

        #[derive(Debug, Clone)]
        struct Base {
            id: u64,
            account: u8,
            credit: bool,
            cents: i64,
            at: Millis,
        }

        #[derive(Debug, Clone)]
        enum Item {
            /// A valid entry from the pool (repeats are duplicates).
            Valid(usize),
            /// A pool entry made invalid in one of several ways.
            Invalid(usize, u8),
        }

        fn base() -> impl Strategy<Value = Base> {
            (0..3_u8, any::<bool>(), 1..100_000_i64, 0..8_i64, 0..DAY_MS).prop_map(
                |(account, credit, cents, d, t)| Base {
                    id: 0,
                    account,
                    credit,
                    cents,
                    at: BASE + d * DAY_MS + t,
                },
            )
        }

        fn to_entry(b: &Base) -> LedgerEntry {
            LedgerEntry {
                entry_id: Some(uuid(b.id)),
                account_id: format!("acc-{}", b.account),
                kind: if b.credit { "CREDIT" } else { "DEBIT" }.to_string(),
                amount: Decimal::new(b.cents, 2),
                currency: "BRL".to_string(),
                occurred_at: b.at,
                description: String::new(),
            }
        }

        fn invalid(b: &Base, how: u8) -> LedgerEntry {
            let mut e = to_entry(b);
            match how % 8 {
                0 => e.entry_id = None,
                1 => e.entry_id = Some("not-a-uuid".into()),
                2 => e.amount = Decimal::ZERO,
                3 => e.amount = -e.amount,
                4 => e.amount = Decimal::new(b.cents * 10 + 1, 3),
                5 => e.kind = "credit".into(),
                6 => e.currency = "USD".into(),
                _ => e.account_id = String::new(),
            }
            e
        }

        #[derive(Debug, Default, PartialEq, Eq)]
        struct Totals {
            credits: Decimal,
            debits: Decimal,
            count: i64,
            last: Millis,
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn totals_match_brute_force_across_restores(
                mut pool in prop::collection::vec(base(), 1..40),
                picks in prop::collection::vec((0..1000_usize, 0..10_u8, any::<u8>()), 1..160),
                splits in prop::collection::vec(any::<bool>(), 160),
                retention in prop::sample::select(vec![0_i64, 1, 2, 35]),
                max_cached in prop::sample::select(vec![0_usize, 5, 100_000]),
            ) {
                for (i, b) in pool.iter_mut().enumerate() {
                    b.id = i as u64 + 1;
                }
                let items: Vec<Item> = picks
                    .iter()
                    .map(|&(i, k, how)| {
                        let i = i % pool.len();
                        if k == 0 { Item::Invalid(i, how) } else { Item::Valid(i) }
                    })
                    .collect();
                let config = Config {
                    dedup_retention: DurationMs(retention * DAY_MS),
                    max_cached_keys: max_cached,
                    ..Config::default()
                };

                // Brute force over the unique valid entries, with the documented horizon rule.
                let local_day = |at: Millis| (at - 3 * 3_600_000).div_euclid(DAY_MS) as i32;
                let mut seen = HashSet::new();
                let mut max_date: HashMap<u8, i32> = HashMap::new();
                let mut totals: BTreeMap<(String, i32), Totals> = BTreeMap::new();
                let (mut applied, mut dups, mut rejected) = (0, 0, 0);
                let mut applied_ids: Vec<(u64, u8, i32)> = Vec::new();
                for item in &items {
                    let Item::Valid(i) = item else { rejected += 1; continue };
                    let b = &pool[*i];
                    let d = local_day(b.at);
                    if retention > 0 {
                        if let Some(&m) = max_date.get(&b.account) {
                            if i64::from(d) < i64::from(m) - retention {
                                rejected += 1;
                                continue;
                            }
                        }
                    }
                    if !seen.insert(b.id) {
                        dups += 1;
                        continue;
                    }
                    applied += 1;
                    applied_ids.push((b.id, b.account, d));
                    let m = max_date.entry(b.account).or_insert(d);
                    *m = (*m).max(d);
                    let t = totals.entry((format!("acc-{}", b.account), d)).or_default();
                    let amount = Decimal::new(b.cents, 2);
                    if b.credit { t.credits += amount } else { t.debits += amount }
                    t.count += 1;
                    t.last = t.last.max(b.at);
                }

                // The processor, restarted over flushed state at random points.
                let mut state = MemoryState::new();
                let mut p = ConsolidationProcessor::new(config.clone());
                let mut outcomes = Vec::new();
                let mut skipped = 0;
                for (n, item) in items.iter().enumerate() {
                    if splits[n] {
                        p.flush(&mut state);
                        skipped += p.duplicates_skipped();
                        p = ConsolidationProcessor::new(config.clone());
                    }
                    let e = match item {
                        Item::Valid(i) => to_entry(&pool[*i]),
                        Item::Invalid(i, how) => invalid(&pool[*i], *how),
                    };
                    outcomes.extend(feed(&mut p, &state, n as i64, &[e]));
                }
                p.flush(&mut state);
                skipped += p.duplicates_skipped();

                let outputs: Vec<&DailyBalance> =
                    outcomes.iter().filter_map(|o| o.as_ref().ok()).flatten().collect();
                prop_assert_eq!(outputs.len(), applied);
                prop_assert_eq!(skipped, dups);
                prop_assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), rejected);

                let mut view: BTreeMap<(String, i32), Totals> = BTreeMap::new();
                for (key, value) in state.table(views::DAILY_BALANCES) {
                    let b: DailyBalance = serde_json::from_slice(value).unwrap();
                    prop_assert_eq!(key.to_vec(), views::daily_balance_key(&b.account_id, b.business_date));
                    prop_assert_eq!(b.net, b.total_credits - b.total_debits);
                    view.insert(
                        (b.account_id.clone(), b.business_date),
                        Totals { credits: b.total_credits, debits: b.total_debits, count: b.entry_count, last: b.last_entry_at },
                    );
                }
                prop_assert_eq!(&view, &totals);
                // The last output of each (account, date) is its view row.
                let mut last_out: BTreeMap<(String, i32), &DailyBalance> = BTreeMap::new();
                for o in &outputs {
                    last_out.insert((o.account_id.clone(), o.business_date), o);
                }
                for (k, o) in last_out {
                    prop_assert_eq!(Some((*o).clone()), balance(&state, &k.0, k.1));
                }
                // The ids kept are exactly the applied ids not behind their account's horizon.
                let mut expect_ids: Vec<Vec<u8>> = applied_ids
                    .iter()
                    .filter(|(_, a, d)| retention == 0 || i64::from(*d) >= i64::from(max_date[a]) - retention)
                    .map(|(id, _, _)| parse_uuid(&uuid(*id)).unwrap().to_vec())
                    .collect();
                expect_ids.sort();
                let ids: Vec<Vec<u8>> = if retention == 0 {
                    state.table(ENTRIES_TABLE).iter().map(|(k, _)| k.to_vec()).collect()
                } else {
                    prop_assert!(state.table(ENTRIES_TABLE).is_empty());
                    kept_ids(&state).iter().map(|id| id.to_vec()).collect()
                };
                prop_assert_eq!(ids, expect_ids);
            }
        }
    }
}
