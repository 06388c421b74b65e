//! A PHI scanner for de-identified output: it learns the identifying values of the *input*
//! (names, telecom, address lines, full postal codes, identifier values, resource ids, wallet
//! addresses) and looks for them, and for identifier-shaped text (full dates, wallets, e-mail
//! addresses, phone, social security and IP numbers, postal codes longer than three
//! characters), in every output line.
//!
//! ```
//! use carechain_deid::scan::{FindingKind, PhiScanner};
//! use serde_json::json;
//!
//! let input = json!({"resourceType": "Patient", "id": "pat-0001",
//!                    "name": [{"family": "Brekke496", "given": ["Aaron697"]}]});
//! let scanner = PhiScanner::new([&input], true);
//! let leaky = r#"{"resourceType":"Patient","note":[{"text":"Aaron697 seen 2010-03-01"}]}"#;
//! let kinds: Vec<FindingKind> = scanner.scan_ndjson(leaky).iter().map(|f| f.kind).collect();
//! assert_eq!(kinds, [FindingKind::Name, FindingKind::FullDate]);
//! assert!(scanner.scan_ndjson(r#"{"resourceType":"Patient","birthDate":"1945"}"#).is_empty());
//! ```
//!
//! Learned values shorter than [`PhiScanner::MIN_NEEDLE`] characters (five for values that are
//! all digits) are not looked for: they would be found inside unrelated numbers and words. A
//! learned value counts only where it is not part of a longer word or number.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde_json::Value;

use crate::keys::parse_wallet;

/// What a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    /// A name (a HumanName's family, given or text; a mother's maiden name) from the input.
    Name,
    /// A telecom value (phone, fax, e-mail, URL) from the input.
    Telecom,
    /// An address line, city, district or text from the input.
    AddressLine,
    /// A postal code of the input in full, or a `postalCode` longer than three characters.
    PostalCode,
    /// An identifier value from the input.
    Identifier,
    /// The id of an input resource.
    SourceId,
    /// A wallet address (`0x` + 40 hex digits).
    Wallet,
    /// A date with its month and day (`YYYY-MM-DD`), when only years may remain.
    FullDate,
    /// Something shaped like an e-mail address.
    Email,
    /// Something shaped like a US phone number.
    Phone,
    /// Something shaped like a social security number.
    Ssn,
    /// Something shaped like an IPv4 address.
    IpAddress,
}

/// One thing found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What it is.
    pub kind: FindingKind,
    /// The line it is on, from 1 (0 from [`PhiScanner::scan_line`]).
    pub line: usize,
    /// The text found.
    pub text: String,
}

/// Looks for PHI in output lines. Build it from the input resources.
#[derive(Debug)]
pub struct PhiScanner {
    needles: Vec<(String, FindingKind)>,
    matcher: Option<AhoCorasick>,
    year_only: bool,
}

static PATTERNS: LazyLock<Vec<(Regex, FindingKind)>> = LazyLock::new(|| {
    let octet = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    [
        (r"0[xX][0-9a-fA-F]{40}", FindingKind::Wallet),
        (r#""postalCode"\s*:\s*"[^"]{4,}""#, FindingKind::PostalCode),
        (
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
            FindingKind::Email,
        ),
        (
            r"\(?\b[0-9]{3}\)?[-. ][0-9]{3}[-. ][0-9]{4}\b",
            FindingKind::Phone,
        ),
        (r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b", FindingKind::Ssn),
        (
            &format!(r"(?:^|[^0-9.]){octet}(?:\.{octet}){{3}}(?:$|[^0-9.])"),
            FindingKind::IpAddress,
        ),
    ]
    .into_iter()
    .map(|(pattern, kind)| (Regex::new(pattern).expect("a valid pattern"), kind))
    .collect()
});

static FULL_DATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}").expect("a valid pattern"));

impl PhiScanner {
    /// Learned values shorter than this are not looked for.
    pub const MIN_NEEDLE: usize = 3;

    /// A scanner that knows the identifying values of `sources` (the input resources);
    /// `year_only` also reports full dates.
    pub fn new<'a>(sources: impl IntoIterator<Item = &'a Value>, year_only: bool) -> Self {
        let mut learned: BTreeMap<String, FindingKind> = BTreeMap::new();
        for source in sources {
            learn(source, None, true, &mut learned);
        }
        let needles: Vec<(String, FindingKind)> = learned
            .into_iter()
            .filter(|(text, _)| {
                let digits = text.bytes().all(|b| b.is_ascii_digit() || b == b'-');
                text.len() >= if digits { 5 } else { Self::MIN_NEEDLE }
            })
            .collect();
        let matcher = if needles.is_empty() {
            None
        } else {
            AhoCorasick::new(needles.iter().map(|(n, _)| n.as_str())).ok()
        };
        Self {
            needles,
            matcher,
            year_only,
        }
    }

    /// How many learned values it looks for.
    pub fn needles(&self) -> usize {
        self.needles.len()
    }

    /// The findings in one line.
    pub fn scan_line(&self, line: &str) -> Vec<Finding> {
        let mut found = Vec::new();
        let bytes = line.as_bytes();
        if let Some(matcher) = &self.matcher {
            for m in matcher.find_overlapping_iter(line) {
                let before = m.start().checked_sub(1).map(|i| bytes[i]);
                let after = bytes.get(m.end()).copied();
                if before.is_some_and(|b| b.is_ascii_alphanumeric())
                    || after.is_some_and(|b| b.is_ascii_alphanumeric())
                {
                    continue;
                }
                let (text, kind) = &self.needles[m.pattern().as_usize()];
                found.push(Finding {
                    kind: *kind,
                    line: 0,
                    text: text.clone(),
                });
            }
        }
        for (pattern, kind) in PATTERNS.iter() {
            found.extend(pattern.find_iter(line).map(|m| Finding {
                kind: *kind,
                line: 0,
                text: m.as_str().to_owned(),
            }));
        }
        if self.year_only {
            found.extend(FULL_DATE.find_iter(line).map(|m| Finding {
                kind: FindingKind::FullDate,
                line: 0,
                text: m.as_str().to_owned(),
            }));
        }
        found
    }

    /// The findings in NDJSON text, with their line numbers.
    pub fn scan_ndjson(&self, text: &str) -> Vec<Finding> {
        let mut found = Vec::new();
        for (n, line) in text.lines().enumerate() {
            found.extend(
                self.scan_line(line)
                    .into_iter()
                    .map(|f| Finding { line: n + 1, ..f }),
            );
        }
        found
    }
}

/// Collects the identifying values of one JSON value, knowing the key it sits under.
fn learn(
    value: &Value,
    key: Option<&str>,
    resource: bool,
    out: &mut BTreeMap<String, FindingKind>,
) {
    let mut add = |text: Option<&Value>, kind: FindingKind| {
        let mut add_one = |v: &Value| {
            if let Some(s) = v.as_str().map(str::trim).filter(|s| !s.is_empty()) {
                out.entry(s.to_owned()).or_insert(kind);
            }
        };
        match text {
            Some(Value::Array(items)) => items.iter().for_each(&mut add_one),
            Some(v) => add_one(v),
            None => {}
        }
    };
    match value {
        Value::Object(obj) => {
            if resource {
                add(obj.get("id"), FindingKind::SourceId);
            }
            if obj.contains_key("family") || obj.contains_key("given") {
                for part in ["family", "given", "text"] {
                    add(obj.get(part), FindingKind::Name);
                }
            }
            match key {
                Some("telecom") => add(obj.get("value"), FindingKind::Telecom),
                Some("address" | "valueAddress" | "locationAddress") => {
                    for part in ["line", "city", "district", "text"] {
                        add(obj.get(part), FindingKind::AddressLine);
                    }
                    add(obj.get("postalCode"), FindingKind::PostalCode);
                }
                Some("identifier" | "valueIdentifier" | "masterIdentifier") => {
                    add(obj.get("value"), FindingKind::Identifier);
                }
                _ => {}
            }
            if obj
                .get("url")
                .and_then(Value::as_str)
                .is_some_and(|u| u.ends_with("mothersMaidenName"))
            {
                add(obj.get("valueString"), FindingKind::Name);
            }
            for (k, v) in obj {
                // Contained resources' ids are local names ("#referral"): not looked for.
                learn(v, Some(k), false, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                let nested = key == Some("resource");
                learn(item, key, nested, out);
            }
        }
        Value::String(s) if parse_wallet(s).is_some() => {
            out.entry(s.clone()).or_insert(FindingKind::Wallet);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn learns_identifying_values_and_finds_them_as_whole_words() {
        let input = json!({
            "resourceType": "Patient",
            "id": "5cbc121b-cd71-4428-b8b7-31e53eba8184",
            "identifier": [{"system": "urn:carechain:wallet",
                            "value": "0x00000000000000000000000000000000000000aa"},
                           {"value": "999-93-7537"}],
            "name": [{"family": "Brekke496", "given": ["Aaron697"]}],
            "telecom": [{"system": "phone", "value": "555-938-2921"}],
            "address": [{"line": ["88 Washington Street"], "city": "Taunton",
                         "state": "MA", "postalCode": "02780"}],
        });
        let scanner = PhiScanner::new([&input], true);
        assert_eq!(scanner.needles(), 9);
        let clean = r#"{"resourceType":"Patient","id":"9d5c","address":[{"state":"MA","postalCode":"027"}],"birthDate":"1945"}"#;
        assert_eq!(scanner.scan_line(clean), []);
        let kinds = |line: &str| -> Vec<FindingKind> {
            let mut k: Vec<FindingKind> = scanner.scan_line(line).iter().map(|f| f.kind).collect();
            k.sort();
            k.dedup();
            k
        };
        assert_eq!(
            kinds(r#"{"x":"Taunton, 02780"}"#),
            [FindingKind::AddressLine, FindingKind::PostalCode]
        );
        assert_eq!(kinds(r#"{"x":"Tauntonville"}"#), []);
        assert_eq!(
            kinds(r#"{"postalCode":"02780-1234"}"#),
            [FindingKind::PostalCode]
        );
        assert_eq!(
            kinds(r#"{"x":"call 555-938-2921"}"#),
            [FindingKind::Telecom, FindingKind::Phone]
        );
        assert_eq!(
            kinds(r#"{"x":"0x00000000000000000000000000000000000000AB"}"#),
            [FindingKind::Wallet]
        );
        assert_eq!(kinds(r#"{"x":"a@b.example"}"#), [FindingKind::Email]);
        assert_eq!(kinds(r#"{"x":"10.0.0.1"}"#), [FindingKind::IpAddress]);
        assert_eq!(kinds(r#"{"x":"urn:oid:2.16.840.1.113883.6.238"}"#), []);
        assert_eq!(
            kinds(r#"{"x":"2010-03-01T06:22:41-05:00"}"#),
            [FindingKind::FullDate]
        );
        assert_eq!(
            kinds(r#"{"id":"5cbc121b-cd71-4428-b8b7-31e53eba8184"}"#),
            [FindingKind::SourceId]
        );
    }
}
