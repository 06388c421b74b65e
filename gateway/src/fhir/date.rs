//! FHIR dates as half-open time ranges, and the date search prefixes.
//!
//! A FHIR `date`/`dateTime`/`instant` of partial precision stands for the whole period it
//! names: `2020` is `[2020-01-01, 2021-01-01)`. Values without a zone are read as UTC.

use crate::error::AppError;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// A half-open period `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// Inclusive start.
    pub start: DateTime<Utc>,
    /// Exclusive end.
    pub end: DateTime<Utc>,
}

fn invalid(value: &str) -> AppError {
    AppError::Invalid(format!(
        "`{}` is not a valid FHIR date",
        value.chars().take(40).collect::<String>()
    ))
}

impl DateRange {
    /// Parses a FHIR date, dateTime or instant.
    pub fn parse(value: &str) -> Result<Self, AppError> {
        let err = || invalid(value);
        let ymd = |y: i32, m: u32, d: u32| NaiveDate::from_ymd_opt(y, m, d).ok_or_else(err);
        let midnight =
            |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        match value.len() {
            4 if digits(value) => {
                let y: i32 = value.parse().map_err(|_| err())?;
                Ok(Self {
                    start: midnight(ymd(y, 1, 1)?),
                    end: midnight(ymd(y + 1, 1, 1)?),
                })
            }
            7 if digits(&value[..4]) && &value[4..5] == "-" && digits(&value[5..]) => {
                let y: i32 = value[..4].parse().map_err(|_| err())?;
                let m: u32 = value[5..].parse().map_err(|_| err())?;
                let start = ymd(y, m, 1)?;
                let next = if m == 12 {
                    ymd(y + 1, 1, 1)?
                } else {
                    ymd(y, m + 1, 1)?
                };
                Ok(Self {
                    start: midnight(start),
                    end: midnight(next),
                })
            }
            10 => {
                let d = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| err())?;
                if d.year() < 1 {
                    return Err(err());
                }
                Ok(Self {
                    start: midnight(d),
                    end: midnight(d) + Duration::days(1),
                })
            }
            _ => {
                let (start, precision) = if let Ok(t) = DateTime::parse_from_rfc3339(value) {
                    (t.with_timezone(&Utc), Duration::seconds(1))
                } else if let Ok(t) = DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M%:z") {
                    (t.with_timezone(&Utc), Duration::minutes(1))
                } else if let Some(stripped) = value.strip_suffix('Z')
                    && let Ok(t) = NaiveDateTime::parse_from_str(stripped, "%Y-%m-%dT%H:%M")
                {
                    (Utc.from_utc_datetime(&t), Duration::minutes(1))
                } else if let Ok(t) = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f") {
                    (Utc.from_utc_datetime(&t), Duration::seconds(1))
                } else if let Ok(t) = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M") {
                    (Utc.from_utc_datetime(&t), Duration::minutes(1))
                } else {
                    return Err(err());
                };
                let has_fraction = value.contains('.');
                let end = if has_fraction {
                    start + Duration::microseconds(1)
                } else {
                    start + precision
                };
                Ok(Self { start, end })
            }
        }
    }

    /// A single instant.
    pub fn instant(t: DateTime<Utc>) -> Self {
        Self {
            start: t,
            end: t + Duration::microseconds(1),
        }
    }
}

/// A FHIR search prefix for ordered values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// `eq` (the default): the ranges overlap.
    Eq,
    /// `ne`: the ranges do not overlap.
    Ne,
    /// `gt`: the resource's range reaches after the parameter's.
    Gt,
    /// `lt`: the resource's range starts before the parameter's.
    Lt,
    /// `ge`: the resource's range reaches into or after the parameter's.
    Ge,
    /// `le`: the resource's range starts before the parameter's end.
    Le,
    /// `sa`: starts after the parameter's end.
    Sa,
    /// `eb`: ends before the parameter's start.
    Eb,
}

/// A parsed `date` / `_lastUpdated` parameter value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateFilter {
    /// The comparison.
    pub prefix: Prefix,
    /// The parameter's range.
    pub range: DateRange,
}

impl DateFilter {
    /// Parses `[prefix]date`.
    pub fn parse(value: &str) -> Result<Self, AppError> {
        let (prefix, rest) = match value.get(..2) {
            Some("eq") => (Prefix::Eq, &value[2..]),
            Some("ne") => (Prefix::Ne, &value[2..]),
            Some("gt") => (Prefix::Gt, &value[2..]),
            Some("lt") => (Prefix::Lt, &value[2..]),
            Some("ge") => (Prefix::Ge, &value[2..]),
            Some("le") => (Prefix::Le, &value[2..]),
            Some("sa") => (Prefix::Sa, &value[2..]),
            Some("eb") => (Prefix::Eb, &value[2..]),
            Some("ap") => {
                return Err(AppError::NotSupported(
                    "the `ap` prefix is not supported".into(),
                ));
            }
            _ => (Prefix::Eq, value),
        };
        Ok(Self {
            prefix,
            range: DateRange::parse(rest)?,
        })
    }

    /// Whether a resource's range `[start, end)` matches.
    pub fn matches(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        let p = self.range;
        let overlaps = start < p.end && end > p.start;
        match self.prefix {
            Prefix::Eq => overlaps,
            Prefix::Ne => !overlaps,
            Prefix::Gt => end > p.end,
            Prefix::Lt => start < p.start,
            Prefix::Ge => end > p.start,
            Prefix::Le => start < p.end,
            Prefix::Sa => start >= p.end,
            Prefix::Eb => end <= p.start,
        }
    }

    /// SQL condition over the columns `start_col` / `end_col` with bind slots `$a` (param start)
    /// and `$b` (param end).
    pub fn sql(&self, start_col: &str, end_col: &str, a: usize, b: usize) -> String {
        match self.prefix {
            Prefix::Eq => format!("({start_col} < ${b} AND {end_col} > ${a})"),
            Prefix::Ne => format!("NOT ({start_col} < ${b} AND {end_col} > ${a})"),
            Prefix::Gt => format!("({end_col} > ${b})"),
            Prefix::Lt => format!("({start_col} < ${a})"),
            Prefix::Ge => format!("({end_col} > ${a})"),
            Prefix::Le => format!("({start_col} < ${b})"),
            Prefix::Sa => format!("({start_col} >= ${b})"),
            Prefix::Eb => format!("({end_col} <= ${a})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn parses_precisions() {
        let y = DateRange::parse("2020").expect("year");
        assert_eq!(
            (y.start, y.end),
            (t("2020-01-01T00:00:00Z"), t("2021-01-01T00:00:00Z"))
        );
        let m = DateRange::parse("2020-12").expect("month");
        assert_eq!(m.end, t("2021-01-01T00:00:00Z"));
        let d = DateRange::parse("2020-02-29").expect("day");
        assert_eq!(d.end, t("2020-03-01T00:00:00Z"));
        let s = DateRange::parse("2020-02-29T10:00:00+02:00").expect("instant");
        assert_eq!(s.start, t("2020-02-29T08:00:00Z"));
        assert!(DateRange::parse("2020-02-30").is_err());
        assert!(DateRange::parse("2020-13").is_err());
        assert!(DateRange::parse("yesterday").is_err());
        assert!(DateRange::parse("2020-1-1").is_err());
    }

    #[test]
    fn prefixes_compare_ranges() {
        let f = DateFilter::parse("ge2020-01-01").expect("filter");
        assert!(f.matches(t("2020-01-01T10:00:00Z"), t("2020-01-01T10:00:01Z")));
        assert!(!f.matches(t("2019-12-31T10:00:00Z"), t("2019-12-31T10:00:01Z")));
        let f = DateFilter::parse("lt2020").expect("filter");
        assert!(f.matches(t("2019-12-31T10:00:00Z"), t("2019-12-31T10:00:01Z")));
        assert!(!f.matches(t("2020-06-01T00:00:00Z"), t("2020-06-01T00:00:01Z")));
        let f = DateFilter::parse("2020-05").expect("filter");
        assert!(f.matches(t("2020-05-05T00:00:00Z"), t("2020-05-05T00:00:01Z")));
        assert!(DateFilter::parse("ap2020").is_err());
        assert!(DateFilter::parse("gtnope").is_err());
    }
}
