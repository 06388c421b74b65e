//! The JSON type and lexical rules of the FHIR R4 primitive types.
//!
//! Each matcher is written by hand after the `regex` extension of its type in the R4
//! definitions (kept in `definitions::REGEXES` and checked against these matchers in the tests),
//! so that the happy path needs neither a regex engine nor an allocation. Two rules go further
//! than the regexes, as the spec's prose asks: a date's day must exist in its month, and strings
//! may not exceed 1 MiB.

use serde_json::Value;

use crate::model::Prim;

/// The largest string the spec allows (`string`, `markdown`: "SHALL NOT exceed 1MB").
const MAX_STRING: usize = 1024 * 1024;

/// Why a primitive value was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The JSON type is wrong: the expected one is named.
    JsonType(&'static str),
    /// The empty string, which FHIR JSON never allows.
    Empty,
    /// Not in the type's lexical space (or out of its range).
    Format,
    /// Longer than the spec allows.
    TooLong,
}

/// Checks a primitive's JSON value (not `null`: the caller handles that).
pub(crate) fn check(prim: Prim, value: &Value) -> Result<(), Fault> {
    match prim {
        Prim::Boolean => match value {
            Value::Bool(_) => Ok(()),
            _ => Err(Fault::JsonType("a boolean")),
        },
        Prim::Decimal => match value {
            // serde_json accepts exactly the JSON number grammar, which is the decimal regex.
            Value::Number(_) => Ok(()),
            _ => Err(Fault::JsonType("a number")),
        },
        Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt => {
            let Value::Number(n) = value else {
                return Err(Fault::JsonType("a number"));
            };
            let min = match prim {
                Prim::PositiveInt => 1,
                Prim::UnsignedInt => 0,
                _ => i64::from(i32::MIN),
            };
            match n.as_i64() {
                Some(i) if (min..=i64::from(i32::MAX)).contains(&i) => Ok(()),
                _ => Err(Fault::Format),
            }
        }
        _ => match value {
            Value::String(s) => check_str(prim, s),
            _ => Err(Fault::JsonType("a string")),
        },
    }
}

/// Checks a primitive that FHIR JSON writes as a string.
pub(crate) fn check_str(prim: Prim, s: &str) -> Result<(), Fault> {
    if s.is_empty() {
        return Err(Fault::Empty);
    }
    let ok = match prim {
        Prim::String | Prim::Markdown => {
            if s.len() > MAX_STRING {
                return Err(Fault::TooLong);
            }
            // `[ \r\n\t\S]+` for both: no vertical tab or form feed.
            !s.bytes().any(|b| b == 0x0b || b == 0x0c)
        }
        Prim::Code => is_code(s),
        Prim::Id => {
            s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
        Prim::Uri | Prim::Url | Prim::Canonical => !s.bytes().any(is_space),
        Prim::Oid => is_oid(s),
        Prim::Uuid => is_uuid(s),
        Prim::Base64Binary => is_base64(s),
        Prim::Date => is_date(s.as_bytes()),
        Prim::DateTime => is_date_time(s.as_bytes()),
        Prim::Instant => is_instant(s.as_bytes()),
        Prim::Time => is_time(s.as_bytes()),
        Prim::Xhtml => s.trim_start().starts_with("<div"),
        Prim::Boolean | Prim::Decimal | Prim::Integer | Prim::PositiveInt | Prim::UnsignedInt => {
            false
        }
    };
    if ok { Ok(()) } else { Err(Fault::Format) }
}

/// `\s` as the spec's (Java) regexes mean it: ASCII whitespace only.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `[^\s]+(\s[^\s]+)*`: no leading, trailing or doubled whitespace.
fn is_code(s: &str) -> bool {
    let b = s.as_bytes();
    !is_space(b[0])
        && !is_space(b[b.len() - 1])
        && !b.windows(2).any(|w| is_space(w[0]) && is_space(w[1]))
}

/// `urn:oid:[0-2](\.(0|[1-9][0-9]*))+`
fn is_oid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:oid:") else {
        return false;
    };
    let mut arcs = rest.split('.');
    if !matches!(arcs.next(), Some("0" | "1" | "2")) {
        return false;
    }
    let mut count = 0;
    for arc in arcs {
        let b = arc.as_bytes();
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b[0] == b'0' && b.len() > 1) {
            return false;
        }
        count += 1;
    }
    count > 0
}

/// `urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`
fn is_uuid(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("urn:uuid:") else {
        return false;
    };
    rest.len() == 36
        && rest.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

/// `(\s*([0-9a-zA-Z\+/=]){4}\s*)+`: groups of four, whitespace only between groups.
fn is_base64(s: &str) -> bool {
    let mut in_group = 0;
    let mut groups = 0;
    for b in s.bytes() {
        if is_space(b) {
            if in_group != 0 {
                return false;
            }
        } else if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=' {
            in_group += 1;
            if in_group == 4 {
                in_group = 0;
                groups += 1;
            }
        } else {
            return false;
        }
    }
    in_group == 0 && groups > 0
}

/// Reads `n` ASCII digits at `*at` as a number, advancing past them.
fn digits(b: &[u8], at: &mut usize, n: usize) -> Option<u32> {
    let part = b.get(*at..*at + n)?;
    let mut v = 0;
    for &d in part {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
    }
    *at += n;
    Some(v)
}

fn expect(b: &[u8], at: &mut usize, c: u8) -> Option<()> {
    (b.get(*at) == Some(&c)).then(|| *at += 1)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The date part: `YYYY(-MM(-DD)?)?`, year 0001 to 9999, a day that exists. Returns how many
/// components (1 to 3) were read.
fn date_part(b: &[u8], at: &mut usize) -> Option<u8> {
    let year = digits(b, at, 4)?;
    if year == 0 {
        return None;
    }
    if expect(b, at, b'-').is_none() {
        return Some(1);
    }
    let month = digits(b, at, 2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    if expect(b, at, b'-').is_none() {
        return Some(2);
    }
    let day = digits(b, at, 2)?;
    (1..=days_in_month(year, month)).contains(&day).then_some(3)
}

/// `hh:mm:ss(.f+)?` with hours 00 to 23 and a leap second allowed.
fn time_part(b: &[u8], at: &mut usize) -> Option<()> {
    let h = digits(b, at, 2)?;
    expect(b, at, b':')?;
    let m = digits(b, at, 2)?;
    expect(b, at, b':')?;
    let s = digits(b, at, 2)?;
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    if expect(b, at, b'.').is_some() {
        let start = *at;
        while b.get(*at).is_some_and(u8::is_ascii_digit) {
            *at += 1;
        }
        if *at == start {
            return None;
        }
    }
    Some(())
}

/// `Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)`
fn zone_part(b: &[u8], at: &mut usize) -> Option<()> {
    match b.get(*at)? {
        b'Z' => {
            *at += 1;
            Some(())
        }
        b'+' | b'-' => {
            *at += 1;
            let h = digits(b, at, 2)?;
            expect(b, at, b':')?;
            let m = digits(b, at, 2)?;
            (h < 14 && m < 60 || h == 14 && m == 0).then_some(())
        }
        _ => None,
    }
}

fn is_date(b: &[u8]) -> bool {
    let mut at = 0;
    date_part(b, &mut at).is_some() && at == b.len()
}

/// A date, or a full date with a time and zone.
fn is_date_time(b: &[u8]) -> bool {
    let mut at = 0;
    let Some(parts) = date_part(b, &mut at) else {
        return false;
    };
    if at == b.len() {
        return true;
    }
    parts == 3 && time_and_zone(b, &mut at)
}

/// A full date, time and zone.
fn is_instant(b: &[u8]) -> bool {
    let mut at = 0;
    date_part(b, &mut at) == Some(3) && time_and_zone(b, &mut at)
}

fn time_and_zone(b: &[u8], at: &mut usize) -> bool {
    expect(b, at, b'T').is_some()
        && time_part(b, at).is_some()
        && zone_part(b, at).is_some()
        && *at == b.len()
}

fn is_time(b: &[u8]) -> bool {
    let mut at = 0;
    time_part(b, &mut at).is_some() && at == b.len()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ok(prim: Prim, s: &str) -> bool {
        check_str(prim, s).is_ok()
    }

    #[test]
    fn dates_follow_the_regex_and_the_calendar() {
        for good in ["2024", "2024-02", "2024-02-29", "2000-02-29", "0001-01-01"] {
            assert!(ok(Prim::Date, good), "{good}");
        }
        for bad in [
            "0000",
            "2023-02-29",
            "1900-02-29",
            "2024-13",
            "2024-1-01",
            "yesterday",
            "2024-04-31",
            "2024-01-01T",
        ] {
            assert!(!ok(Prim::Date, bad), "{bad}");
        }
    }

    #[test]
    fn date_times_need_a_zone_with_a_time() {
        for good in [
            "2015",
            "2015-02",
            "2015-02-07",
            "2015-02-07T13:28:17-05:00",
            "2017-01-01T00:00:00.000Z",
            "2017-01-01T23:59:60+14:00",
        ] {
            assert!(ok(Prim::DateTime, good), "{good}");
        }
        for bad in [
            "2015-02-07T13:28:17",
            "2015-02-07T13:28Z",
            "2015-02T13:28:17Z",
            "2015-02-07T24:00:00Z",
            "2015-02-07T13:28:17+14:30",
            "2015-02-07T13:28:17.Z",
            "2015-02-07 13:28:17Z",
        ] {
            assert!(!ok(Prim::DateTime, bad), "{bad}");
        }
        assert!(ok(Prim::Instant, "2015-02-07T13:28:17.239+02:00"));
        assert!(!ok(Prim::Instant, "2015-02-07"));
        assert!(ok(Prim::Time, "13:28:17.5"));
        assert!(!ok(Prim::Time, "13:28"));
    }

    #[test]
    fn identifiers_and_codes() {
        assert!(ok(Prim::Id, "a-B.9"));
        assert!(!ok(Prim::Id, &"a".repeat(65)));
        assert!(!ok(Prim::Id, "a_b"));
        assert!(ok(Prim::Code, "entered-in-error"));
        assert!(ok(Prim::Code, "a b"));
        for bad in [" a", "a ", "a  b", "a\n\nb"] {
            assert!(!ok(Prim::Code, bad), "{bad:?}");
        }
        assert!(ok(Prim::Oid, "urn:oid:2.16.840.1.113883"));
        assert!(!ok(Prim::Oid, "urn:oid:2"));
        assert!(!ok(Prim::Oid, "urn:oid:3.1"));
        assert!(!ok(Prim::Oid, "urn:oid:1.02"));
        assert!(ok(
            Prim::Uuid,
            "urn:uuid:9169c47c-a9d6-4e34-90fc-5f3b2a939984"
        ));
        assert!(!ok(
            Prim::Uuid,
            "urn:uuid:9169C47C-a9d6-4e34-90fc-5f3b2a939984"
        ));
        assert!(!ok(Prim::Uri, "http://a b"));
        assert!(ok(Prim::Base64Binary, "aGVs bG8="));
        assert!(!ok(Prim::Base64Binary, "aGVsbG8"));
        assert!(!ok(Prim::Base64Binary, "aG Vs"));
    }

    #[test]
    fn json_types_and_ranges() {
        assert_eq!(
            check(Prim::Code, &json!(123)),
            Err(Fault::JsonType("a string"))
        );
        assert_eq!(
            check(Prim::Boolean, &json!("true")),
            Err(Fault::JsonType("a boolean"))
        );
        assert_eq!(
            check(Prim::Decimal, &json!("1.5")),
            Err(Fault::JsonType("a number"))
        );
        assert_eq!(check(Prim::Integer, &json!(1.5)), Err(Fault::Format));
        assert_eq!(
            check(Prim::Integer, &json!(2_147_483_648_i64)),
            Err(Fault::Format)
        );
        assert_eq!(check(Prim::PositiveInt, &json!(0)), Err(Fault::Format));
        assert_eq!(check(Prim::UnsignedInt, &json!(-1)), Err(Fault::Format));
        assert_eq!(check(Prim::UnsignedInt, &json!(0)), Ok(()));
        assert_eq!(check(Prim::String, &json!("")), Err(Fault::Empty));
        assert_eq!(check(Prim::String, &json!("a\u{b}b")), Err(Fault::Format));
        assert_eq!(
            check(Prim::Xhtml, &json!("<p>no div</p>")),
            Err(Fault::Format)
        );
    }

    /// The matchers accept what the R4 definitions' regexes accept, checked over seeds and
    /// thousands of deterministic mutations of them. The deliberate differences: JSON never
    /// allows an empty string, and a date's day must exist in its month.
    #[test]
    fn matchers_agree_with_the_definitions_regexes() {
        use crate::definitions::REGEXES;
        let seeds: &[&str] = &[
            "2015-02-07T13:28:17.239+02:00",
            "2015-02-07T13:28:17Z",
            "2015-02-07",
            "2015-02",
            "1999",
            "13:28:17.5",
            "23:59:60",
            "urn:oid:2.16.840.1.113883",
            "urn:uuid:9169c47c-a9d6-4e34-90fc-5f3b2a939984",
            "aGVs bG8= QUJD",
            "entered-in-error",
            "a b",
            "Patient-1.x",
            "http://loinc.org|2.7",
            "some text\twith\ttabs",
            "",
        ];
        let alphabet: &[u8] = b"0123456789-:.TZ+ aZz/=_\t\n\x0bfu";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % n as u64).unwrap_or(0)
        };
        let mut candidates: Vec<String> = seeds.iter().map(|s| (*s).to_owned()).collect();
        for seed in seeds {
            for _ in 0..400 {
                let mut b = seed.as_bytes().to_vec();
                for _ in 0..=next(3) {
                    let at = next(b.len() + 1);
                    match next(3) {
                        0 if at < b.len() => {
                            b.remove(at);
                        }
                        1 => b.insert(at, alphabet[next(alphabet.len())]),
                        _ if at < b.len() => b[at] = alphabet[next(alphabet.len())],
                        _ => {}
                    }
                }
                candidates.push(String::from_utf8(b).unwrap_or_default());
            }
        }
        let numeric = [
            Prim::Boolean,
            Prim::Decimal,
            Prim::Integer,
            Prim::PositiveInt,
            Prim::UnsignedInt,
        ];
        let mut compared = 0;
        for (prim, pattern) in REGEXES.iter().filter(|(p, _)| !numeric.contains(p)) {
            let re = regex::Regex::new(&format!("^(?:{pattern})$"))
                .expect("the definitions' regex compiles");
            for s in candidates.iter().filter(|s| !s.is_empty()) {
                let ours = check_str(*prim, s).is_ok();
                let theirs = re.is_match(s);
                let calendar = matches!(prim, Prim::Date | Prim::DateTime | Prim::Instant)
                    && s.get(8..10).is_some_and(|day| day > "28");
                assert!(
                    ours == theirs || (theirs && calendar),
                    "{prim:?} {s:?}: ours {ours}, regex {theirs} ({pattern})"
                );
                compared += 1;
            }
        }
        assert!(compared > 50_000, "{compared}");
    }
}
