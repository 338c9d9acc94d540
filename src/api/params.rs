//! Validation of path and query inputs: identifiers, business dates, instants, limits.
//!
//! Every check returns a message meant for the caller as is (it becomes the `error` of a 400).
//! Messages quote the offending input only when it passed the identifier charset, so nothing a
//! client sent is echoed back unless it is plain `[A-Za-z0-9._-]` text.

use chrono::{DateTime, Datelike, NaiveDate};
use fluxo_processors::Millis;

/// Longest accepted identifier (account, symbol, transaction id), in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest accepted date range, in days, `from` and `to` included.
pub const MAX_RANGE_DAYS: i32 = 366;
/// Rows returned by an event listing when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest accepted `limit` of an event listing.
pub const MAX_LIMIT: usize = 1000;

/// True for the bytes an identifier may contain: `A-Z a-z 0-9 . _ -`.
fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Check an identifier (`what` names it in the message: "account id", "symbol", ...): 1 to
/// [`MAX_ID_LEN`] bytes of `[A-Za-z0-9._-]`.
///
/// # Errors
/// A message naming `what` and the rule that failed.
pub fn identifier<'a>(what: &str, value: &'a str) -> Result<&'a str, String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(format!(
            "{what} is too long ({} bytes, at most {MAX_ID_LEN})",
            value.len()
        ));
    }
    if !value.bytes().all(is_id_byte) {
        return Err(format!(
            "{what} may only contain letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(value)
}

/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Days since 1970-01-01 of a date.
pub fn days_since_epoch(date: NaiveDate) -> i32 {
    // A NaiveDate spans about +-262,000 years (under 100 million days): no overflow.
    date.num_days_from_ce() - EPOCH_DAYS_FROM_CE
}

/// The calendar date `days` days after 1970-01-01, as `YYYY-MM-DD`; `None` outside chrono's
/// range (only possible for a corrupt row).
pub fn format_days(days: i32) -> Option<String> {
    let date = NaiveDate::from_num_days_from_ce_opt(days.checked_add(EPOCH_DAYS_FROM_CE)?)?;
    // Plain integer formatting: several times faster than a strftime pattern, which shows in
    // a 366-day range.
    Some(format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        date.month(),
        date.day()
    ))
}

/// Parse a business date written exactly `YYYY-MM-DD` (`what` names the input in the message)
/// into days since 1970-01-01.
///
/// # Errors
/// A message when the text is not of that shape or not a calendar date (`2024-02-30`).
pub fn business_date(what: &str, value: &str) -> Result<i32, String> {
    let b = value.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return Err(format!("{what} must be a date written YYYY-MM-DD"));
    }
    // The shape check above guarantees ten ASCII bytes with digits at these positions.
    let num = |r: std::ops::Range<usize>| value[r].parse::<u32>().unwrap_or(0);
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let date = i32::try_from(y)
        .ok()
        .and_then(|y| NaiveDate::from_ymd_opt(y, m, d))
        .ok_or_else(|| format!("{what} {value} is not a calendar date"))?;
    Ok(days_since_epoch(date))
}

/// An inclusive range of business dates, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// First day.
    pub from: i32,
    /// Last day (included).
    pub to: i32,
}

impl DateRange {
    /// Number of days in the range.
    pub fn len(&self) -> usize {
        // `validate_range` guarantees 1 <= to - from + 1 <= MAX_RANGE_DAYS.
        usize::try_from(self.to - self.from + 1).unwrap_or(0)
    }

    /// Always false: a range holds at least one day.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parse and check `from` and `to`: both present, dates, `from <= to`, at most
/// [`MAX_RANGE_DAYS`] days.
///
/// # Errors
/// A message naming the parameter and the rule that failed.
pub fn date_range(from: Option<&str>, to: Option<&str>) -> Result<DateRange, String> {
    let (Some(from), Some(to)) = (from, to) else {
        return Err("query parameters 'from' and 'to' are required (YYYY-MM-DD)".to_string());
    };
    let from_days = business_date("'from'", from)?;
    let to_days = business_date("'to'", to)?;
    if from_days > to_days {
        return Err(format!("'from' ({from}) must not be after 'to' ({to})"));
    }
    let days = i64::from(to_days) - i64::from(from_days) + 1;
    if days > i64::from(MAX_RANGE_DAYS) {
        return Err(format!(
            "the range from {from} to {to} spans {days} days; at most {MAX_RANGE_DAYS} are allowed"
        ));
    }
    Ok(DateRange {
        from: from_days,
        to: to_days,
    })
}

/// Parse `since`: epoch milliseconds (`1717000000000`) or an RFC 3339 instant
/// (`2024-05-29T16:26:40Z`, `...-03:00`). A `+` of an offset that arrived as a space (an
/// unencoded `+` in a query string) is accepted too.
///
/// # Errors
/// A message when it is neither.
pub fn instant(what: &str, value: &str) -> Result<Millis, String> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<i64>()
            .ok()
            .filter(|ms| DateTime::from_timestamp_millis(*ms).is_some())
            .ok_or_else(|| format!("{what} is out of range"));
    }
    let parsed = DateTime::parse_from_rfc3339(value)
        .or_else(|e| DateTime::parse_from_rfc3339(&value.replace(' ', "+")).map_err(|_| e));
    parsed.map(|t| t.timestamp_millis()).map_err(|_| {
        format!("{what} must be an RFC 3339 time (2024-05-01T12:00:00Z) or epoch milliseconds")
    })
}

/// Parse `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
///
/// # Errors
/// A message when it is not a number in that range.
pub fn limit(value: Option<&str>) -> Result<usize, String> {
    let Some(value) = value else {
        return Ok(DEFAULT_LIMIT);
    };
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "'limit' must be a whole number from 1 to {MAX_LIMIT}"
        )),
    }
}

/// `millis` as an RFC 3339 UTC time with milliseconds (`2024-05-01T12:00:00.000Z`); `None`
/// outside chrono's range.
pub fn rfc3339(millis: Millis) -> Option<String> {
    DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert_eq!(identifier("account id", "ACC-000001"), Ok("ACC-000001"));
        assert_eq!(identifier("symbol", "BTC-BRL"), Ok("BTC-BRL"));
        assert_eq!(
            identifier("account id", ""),
            Err("account id must not be empty".to_string())
        );
        assert_eq!(
            identifier("symbol", "a b"),
            Err("symbol may only contain letters, digits, '.', '_' and '-'".to_string())
        );
        let long = "a".repeat(65);
        assert_eq!(
            identifier("account id", &long),
            Err("account id is too long (65 bytes, at most 64)".to_string())
        );
        assert!(identifier("account id", &long[..64]).is_ok());
        assert!(identifier("account id", "ação").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(business_date("date", "1970-01-01"), Ok(0));
        assert_eq!(business_date("date", "1969-12-31"), Ok(-1));
        assert_eq!(business_date("date", "2024-01-01"), Ok(19_723));
        assert_eq!(format_days(19_723).as_deref(), Some("2024-01-01"));
        assert_eq!(format_days(-1).as_deref(), Some("1969-12-31"));
        assert_eq!(format_days(-719_162).as_deref(), Some("0001-01-01"));
        assert_eq!(format_days(2_932_896).as_deref(), Some("9999-12-31"));
        for d in [-719_162, -1, 0, 59, 60, 19_723, 20_000, 2_932_896] {
            let text = format_days(d).unwrap();
            assert_eq!(business_date("date", &text), Ok(d), "{text}");
        }
        assert_eq!(
            business_date("date", "2024-02-30"),
            Err("date 2024-02-30 is not a calendar date".to_string())
        );
        for bad in [
            "2024-1-01",
            "20240101",
            "2024-01-01T00:00:00Z",
            "",
            "abcd-ef-gh",
            "+024-01-01",
        ] {
            assert_eq!(
                business_date("date", bad),
                Err("date must be a date written YYYY-MM-DD".to_string()),
                "{bad}"
            );
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(
            date_range(Some("2024-01-01"), Some("2024-01-03")),
            Ok(DateRange {
                from: 19_723,
                to: 19_725
            })
        );
        assert_eq!(
            date_range(Some("2024-01-01"), Some("2024-01-01")).map(|r| r.len()),
            Ok(1)
        );
        // 2024 is a leap year: Jan 1 to Dec 31 is exactly 366 days.
        assert_eq!(
            date_range(Some("2024-01-01"), Some("2024-12-31")).map(|r| r.len()),
            Ok(366)
        );
        assert_eq!(
            date_range(Some("2024-01-01"), Some("2025-01-01")),
            Err(
                "the range from 2024-01-01 to 2025-01-01 spans 367 days; at most 366 are allowed"
                    .to_string()
            )
        );
        assert_eq!(
            date_range(Some("2024-01-02"), Some("2024-01-01")),
            Err("'from' (2024-01-02) must not be after 'to' (2024-01-01)".to_string())
        );
        assert_eq!(
            date_range(None, Some("2024-01-01")),
            Err("query parameters 'from' and 'to' are required (YYYY-MM-DD)".to_string())
        );
        assert_eq!(
            date_range(Some("2024-01-01"), Some("01/02/2024")),
            Err("'to' must be a date written YYYY-MM-DD".to_string())
        );
    }

    #[test]
    fn instants() {
        assert_eq!(instant("since", "1717000000000"), Ok(1_717_000_000_000));
        assert_eq!(instant("since", "-5"), Ok(-5));
        assert_eq!(
            instant("since", "2024-05-29T16:26:40Z"),
            Ok(1_717_000_000_000)
        );
        assert_eq!(
            instant("since", "2024-05-29T13:26:40-03:00"),
            Ok(1_717_000_000_000)
        );
        assert_eq!(
            instant("since", "2024-05-29T19:26:40 03:00"),
            Ok(1_717_000_000_000)
        );
        assert_eq!(
            instant("since", "2024-05-29T16:26:40.5Z"),
            Ok(1_717_000_000_500)
        );
        assert!(instant("since", "yesterday").is_err());
        assert_eq!(
            instant("since", "99999999999999999999"),
            Err("since is out of range".to_string())
        );
        assert_eq!(
            instant("since", "9223372036854775807"),
            Err("since is out of range".to_string())
        );
        assert!(instant("since", "2024-05-29").is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(Some("1")), Ok(1));
        assert_eq!(limit(Some("1000")), Ok(1000));
        assert!(limit(Some("0")).is_err());
        assert!(limit(Some("1001")).is_err());
        assert!(limit(Some("ten")).is_err());
    }

    #[test]
    fn times() {
        assert_eq!(
            rfc3339(1_717_000_000_000).as_deref(),
            Some("2024-05-29T16:26:40.000Z")
        );
        assert_eq!(rfc3339(i64::MAX), None);
    }
}
