//! RFC 8785 JSON Canonicalization Scheme (JCS), and the hash built on it.
//!
//! Object members are sorted by their names' UTF-16 code units, no insignificant whitespace is
//! written, strings are escaped as ECMAScript's `JSON.stringify` does (which `serde_json`
//! already matches) and numbers are written as ECMAScript's `Number.prototype.toString`.
//! `serde_json` values cannot hold NaN or infinities, so the scheme's refusal of those is
//! enforced by the parser.

use alloy::primitives::{B256, keccak256};
use serde_json::{Number, Value};

/// Writes the canonical form of `value`.
pub fn canonicalize(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out);
    out
}

/// The keccak-256 of the canonical form: the hash anchored for a record version, and the
/// `consentHash` of the FHIR Consent a grant mirrors.
pub fn canonical_hash(value: &Value) -> B256 {
    keccak256(canonicalize(value).as_bytes())
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    // serde_json escapes exactly as JSON.stringify: short escapes for \b \t \n \f \r, `\u00xx`
    // (lower-case hex) for the other control characters, and nothing else.
    match serde_json::to_string(s) {
        Ok(escaped) => out.push_str(&escaped),
        Err(_) => out.push_str("\"\""),
    }
}

/// Integers up to 2^53 are exact in an IEEE-754 double: written as they are. Anything
/// larger is written as the double it becomes (as ECMAScript would), per RFC 8785 §3.2.2.3.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

fn write_number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= MAX_EXACT_INTEGER) {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64().filter(|u| *u <= MAX_EXACT_INTEGER) {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        out.push_str(&format_es6(f));
    }
}

/// ECMAScript `Number.prototype.toString` for a finite double: the shortest digits that
/// round-trip, the one closest to the value and even on a tie (ECMA-262 NOTE 2, which Rust's
/// own shortest formatting does not follow), laid out in plain notation for decimal exponents
/// in -6..21 and in exponential notation otherwise. `ryu-js` implements exactly that.
fn format_es6(v: f64) -> String {
    if v == 0.0 {
        // -0 is written as 0.
        return "0".to_owned();
    }
    ryu_js::Buffer::new().format_finite(v).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_members_and_drops_whitespace() {
        let v = json!({"b": [1, {"z": null, "a": true}], "a": "x"});
        assert_eq!(canonicalize(&v), r#"{"a":"x","b":[1,{"a":true,"z":null}]}"#);
    }

    /// RFC 8785 §3.2.2: the example input and its canonical form.
    #[test]
    fn rfc_8785_serialization_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let value: Value = serde_json::from_str(input).expect("json");
        assert_eq!(
            canonicalize(&value),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    /// RFC 8785 §3.2.3: property names sorted by UTF-16 code units, not code points.
    #[test]
    fn rfc_8785_sorting_example() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let value: Value = serde_json::from_str(input).expect("json");
        let canonical = canonicalize(&value);
        let order: Vec<Value> = canonical
            .trim_matches(|c| c == '{' || c == '}')
            .split(",\"")
            .map(|member| member.split_once("\":").map_or("", |(_, v)| v))
            .map(|v| serde_json::from_str(v).expect("value"))
            .collect();
        assert_eq!(
            order,
            [
                "Carriage Return",
                "One",
                "Control",
                "Latin Small Letter O With Diaeresis",
                "Euro Sign",
                "Emoji: Grinning Face",
                "Hebrew Letter Dalet With Dagesh"
            ]
        );
    }

    /// RFC 8785 Appendix B: IEEE-754 bit patterns and their serialisation (the finite ones;
    /// NaN and infinities cannot be represented in a `serde_json` value).
    #[test]
    fn rfc_8785_number_samples() {
        for (bits, expected) in [
            ("0000000000000000", "0"),
            ("8000000000000000", "0"),
            ("0000000000000001", "5e-324"),
            ("8000000000000001", "-5e-324"),
            ("7fefffffffffffff", "1.7976931348623157e+308"),
            ("ffefffffffffffff", "-1.7976931348623157e+308"),
            ("4340000000000000", "9007199254740992"),
            ("c340000000000000", "-9007199254740992"),
            ("4430000000000000", "295147905179352830000"),
            ("44b52d02c7e14af5", "9.999999999999997e+22"),
            ("44b52d02c7e14af6", "1e+23"),
            ("44b52d02c7e14af7", "1.0000000000000001e+23"),
            ("444b1ae4d6e2ef4e", "999999999999999700000"),
            ("444b1ae4d6e2ef4f", "999999999999999900000"),
            ("444b1ae4d6e2ef50", "1e+21"),
            ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
            ("3eb0c6f7a0b5ed8d", "0.000001"),
            ("41b3de4355555553", "333333333.3333332"),
            ("41b3de4355555554", "333333333.33333325"),
            ("41b3de4355555555", "333333333.3333333"),
            ("41b3de4355555556", "333333333.3333334"),
            ("41b3de4355555557", "333333333.33333343"),
            ("becbf647612f3696", "-0.0000033333333333333333"),
            ("43143ff3c1cb0959", "1424953923781206.2"),
        ] {
            let value = f64::from_bits(u64::from_str_radix(bits, 16).expect("hex"));
            assert_eq!(format_es6(value), expected, "{bits}");
            let number = Number::from_f64(value).expect("finite");
            assert_eq!(canonicalize(&Value::Number(number)), expected, "{bits}");
        }
    }

    #[test]
    fn integers_beyond_double_precision_are_written_as_doubles() {
        assert_eq!(
            canonicalize(&json!(9_007_199_254_740_992_u64)),
            "9007199254740992"
        );
        assert_eq!(
            canonicalize(&json!(9_007_199_254_740_993_u64)),
            "9007199254740992"
        );
        assert_eq!(canonicalize(&json!(u64::MAX)), "18446744073709552000");
        assert_eq!(canonicalize(&json!(i64::MIN)), "-9223372036854776000");
        assert_eq!(canonicalize(&json!([10, -3, 2.25])), "[10,-3,2.25]");
    }

    #[test]
    fn escapes_strings_like_json_stringify() {
        assert_eq!(
            canonicalize(&json!("a\"b\\c\u{1}\n/é")),
            "\"a\\\"b\\\\c\\u0001\\n/é\""
        );
    }

    #[test]
    fn the_canonical_hash_is_the_keccak_of_the_canonical_form() {
        let v = json!({"b": 1, "a": 2});
        assert_eq!(canonical_hash(&v), keccak256(br#"{"a":2,"b":1}"#));
    }
}
