//! Durations and dates as people write them: `30d`, `12h`, `1y`, `2026-12-31`.

use chrono::{DateTime, NaiveDate, Utc};

/// A duration or date that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimeError {
    /// Not `<number><unit>`.
    #[error("`{0}` is not a duration: write a number and a unit, e.g. 90s, 15m, 12h, 30d, 2w, 1y")]
    Duration(String),
    /// Not a date.
    #[error(
        "`{0}` is not a date: write YYYY-MM-DD (end of that day, UTC) or an RFC 3339 time such as 2026-12-31T18:00:00Z"
    )]
    Date(String),
}

/// Parses `90s`, `15m`, `12h`, `30d`, `2w`, `1y` (365 days) into seconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, TimeError> {
    let bad = || TimeError::Duration(text.to_owned());
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit_seconds = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        "y" | "year" | "years" => 365 * 86_400,
        _ => return Err(bad()),
    };
    match number.checked_mul(unit_seconds) {
        Some(0) | None => Err(bad()),
        Some(seconds) => Ok(seconds),
    }
}

/// Parses `YYYY-MM-DD` (the end of that day, UTC) or an RFC 3339 time into unix seconds.
pub(crate) fn parse_date(text: &str) -> Result<u64, TimeError> {
    let bad = || TimeError::Date(text.to_owned());
    let text = text.trim();
    let time = if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        day.and_hms_opt(23, 59, 59).ok_or_else(bad)?.and_utc()
    } else {
        DateTime::parse_from_rfc3339(text)
            .map_err(|_| bad())?
            .with_timezone(&Utc)
    };
    u64::try_from(time.timestamp()).map_err(|_| bad())
}

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// A unix time as `2026-12-31 23:59:59 UTC`.
pub(crate) fn show(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{seconds} (unix)"))
}

/// A unix time as RFC 3339 (`2026-12-31T23:59:59Z`).
pub(crate) fn rfc3339(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("1y"), Ok(365 * 86_400));
        assert_eq!(parse_duration("2 weeks"), Ok(14 * 86_400));
        assert_eq!(parse_duration("90s"), Ok(90));
        for bad in [
            "",
            "30",
            "d",
            "0d",
            "-1d",
            "3x",
            "1.5d",
            "99999999999999999999y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-02"), Ok(86_400 + 86_399));
        assert_eq!(parse_date("1970-01-01T00:01:00Z"), Ok(60));
        assert_eq!(parse_date("1970-01-01T01:00:00+01:00"), Ok(0));
        assert!(parse_date("31/12/2026").is_err());
        assert_eq!(show(60), "1970-01-01 00:01:00 UTC");
        assert_eq!(rfc3339(60), "1970-01-01T00:01:00Z");
    }
}
