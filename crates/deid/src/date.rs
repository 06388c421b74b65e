//! FHIR dates as text: reducing to the year, shifting by days, ages. No time zone arithmetic is
//! needed: a shift moves the calendar date and keeps the time of day and offset as written.

use std::time::{SystemTime, UNIX_EPOCH};

/// A calendar date (proleptic Gregorian), for the reference date that ages are counted at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// The year, 1 to 9999.
    pub year: i32,
    /// The month, 1 to 12.
    pub month: u32,
    /// The day of the month, 1 to 31.
    pub day: u32,
}

impl Date {
    /// A date, if it exists.
    pub fn new(year: i32, month: u32, day: u32) -> Option<Self> {
        let ok = (1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month);
        ok.then_some(Self { year, month, day })
    }

    /// Today in UTC, from the system clock.
    pub fn today() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let days = i64::try_from(secs / 86_400).unwrap_or(0);
        from_days(days).unwrap_or(Self {
            year: 1970,
            month: 1,
            day: 1,
        })
    }

    /// The date `days` later (earlier when negative), if it is between years 1 and 9999.
    pub fn add_days(self, days: i64) -> Option<Self> {
        from_days(to_days(self.year, self.month, self.day).checked_add(days)?)
    }

    /// How many days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Date) -> i64 {
        to_days(later.year, later.month, later.day) - to_days(self.year, self.month, self.day)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(text: &str) -> Option<Self> {
        let parsed = Parsed::parse(text)?;
        (parsed.precision == Precision::Day).then_some(())?;
        Self::new(parsed.year, parsed.month, parsed.day)
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn is_leap(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (the civil-from-days algorithm in its usual era form).
fn to_days(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn from_days(days: i64) -> Option<Date> {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Date::new(
        i32::try_from(year).ok()?,
        u32::try_from(month).ok()?,
        u32::try_from(day).ok()?,
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Precision {
    Year,
    Month,
    Day,
}

/// The date part of a FHIR date, dateTime or instant, and where the rest (`T...`) starts.
struct Parsed {
    year: i32,
    month: u32,
    day: u32,
    precision: Precision,
    rest: usize,
}

impl Parsed {
    fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let num = |range: std::ops::Range<usize>| -> Option<u32> {
            let digits = b.get(range)?;
            digits.iter().try_fold(0u32, |acc, c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        let year = i32::try_from(num(0..4)?).ok()?;
        let mut parsed = Self {
            year,
            month: 1,
            day: 1,
            precision: Precision::Year,
            rest: 4,
        };
        if b.len() == 4 {
            return (year >= 1).then_some(parsed);
        }
        if b.get(4) != Some(&b'-') {
            return None;
        }
        parsed.month = num(5..7)?;
        parsed.precision = Precision::Month;
        parsed.rest = 7;
        if b.len() > 7 {
            if b.get(7) != Some(&b'-') {
                return None;
            }
            parsed.day = num(8..10)?;
            parsed.precision = Precision::Day;
            parsed.rest = 10;
            if b.len() > 10 && b.get(10) != Some(&b'T') {
                return None;
            }
        }
        Date::new(parsed.year, parsed.month, parsed.day).map(|_| parsed)
    }
}

/// The year of a date, dateTime or instant (`1965-11-15T06:22:41-05:00` → `1965`).
pub(crate) fn year_of(text: &str) -> Option<&str> {
    Parsed::parse(text).map(|_| &text[..4])
}

/// The date moved by `days`, at the precision it was written (`YYYY`, `YYYY-MM`, a full date
/// with its time of day and zone kept). A partial date moves its first day.
pub(crate) fn shift(text: &str, days: i32) -> Option<String> {
    let p = Parsed::parse(text)?;
    let moved = from_days(to_days(p.year, p.month, p.day) + i64::from(days))?;
    let rest = &text[p.rest..];
    Some(match p.precision {
        Precision::Year => format!("{:04}", moved.year),
        Precision::Month => format!("{:04}-{:02}", moved.year, moved.month),
        Precision::Day => format!("{moved}{rest}"),
    })
}

/// The age in whole years on `at` of someone born on the date written (a partial date counts
/// from its first day, the oldest the person can be).
pub(crate) fn age_at(birth: &str, at: Date) -> Option<i32> {
    let p = Parsed::parse(birth)?;
    let before_birthday = (at.month, at.day) < (p.month, p.day);
    Some(at.year - p.year - i32::from(before_birthday))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        for days in (-719_000..2_900_000).step_by(997) {
            let d = from_days(days).expect("in range");
            assert_eq!(to_days(d.year, d.month, d.day), days, "{d}");
        }
        assert_eq!(to_days(1970, 1, 1), 0);
        assert_eq!(
            from_days(11_016).map(|d| d.to_string()).as_deref(),
            Some("2000-02-29")
        );
    }

    #[test]
    fn shifting_keeps_precision_time_and_zone() {
        assert_eq!(
            shift("1965-11-15T06:22:41-05:00", 50).as_deref(),
            Some("1966-01-04T06:22:41-05:00")
        );
        assert_eq!(
            shift("2010-03-01T06:22:41.399-05:00", -1).as_deref(),
            Some("2010-02-28T06:22:41.399-05:00")
        );
        assert_eq!(shift("2012-02-28", 1).as_deref(), Some("2012-02-29"));
        assert_eq!(shift("2012-02", 40).as_deref(), Some("2012-03"));
        assert_eq!(shift("2012", -1).as_deref(), Some("2011"));
        assert_eq!(shift("0001-01-01", -1), None);
        assert_eq!(shift("2012-13-01", 1), None);
        assert_eq!(shift("not a date", 1), None);
    }

    #[test]
    fn years_and_ages() {
        assert_eq!(year_of("1965-11-15T06:22:41-05:00"), Some("1965"));
        assert_eq!(year_of("1965"), Some("1965"));
        assert_eq!(year_of("19a5"), None);
        let at = Date::new(2025, 6, 1).expect("date");
        assert_eq!(age_at("1935-06-01", at), Some(90));
        assert_eq!(age_at("1935-06-02", at), Some(89));
        assert_eq!(age_at("1935", at), Some(90));
        assert_eq!(Date::parse("2025-06-01"), Some(at));
        assert_eq!(Date::parse("2025-06"), None);
        assert!(Date::today().year >= 2024);
    }
}
