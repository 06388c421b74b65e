//! RFC 8785 JSON Canonicalization Scheme (JCS) and the record version hash built on it.
//!
//! Object members are sorted by their names' UTF-16 code units, no insignificant whitespace is
//! written, strings are escaped as ECMAScript's `JSON.stringify` does (which `serde_json`
//! already matches) and numbers are written as ECMAScript's `Number.prototype.toString`.

use alloy::primitives::{B256, keccak256};
use serde_json::{Number, Value};

/// Writes the canonical form of `value`.
pub fn canonicalize(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(value, &mut out);
    out
}

/// The keccak-256 of the canonical form: the hash anchored for a record version.
pub fn version_hash(value: &Value) -> B256 {
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

fn write_number(n: &Number, out: &mut String) {
    if let Some(i) = n.as_i64() {
        out.push_str(&i.to_string());
    } else if let Some(u) = n.as_u64() {
        out.push_str(&u.to_string());
    } else if let Some(f) = n.as_f64() {
        out.push_str(&format_es6(f));
    }
}

/// ECMAScript `Number.prototype.toString` for a finite double.
fn format_es6(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let sign = if v < 0.0 { "-" } else { "" };
    // `{:e}` gives the shortest round-tripping digits: `d[.ddd]e[-]x`.
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let k = digits.len() as i32;
    let n = exp + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let e_sign = if e >= 0 { "+" } else { "-" };
        if k == 1 {
            format!("{digits}e{e_sign}{}", e.abs())
        } else {
            format!("{}.{}e{e_sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    };
    format!("{sign}{body}")
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

    #[test]
    fn sorts_by_utf16_code_units() {
        // RFC 8785 §3.2.3 example: U+20AC sorts before U+1F600 (a surrogate pair) in UTF-16.
        let v: Value =
            serde_json::from_str("{\"\u{1F600}\":1,\"\u{20AC}\":2,\"\\r\":3}").expect("json");
        assert_eq!(
            canonicalize(&v),
            "{\"\\r\":3,\"\u{20AC}\":2,\"\u{1F600}\":1}"
        );
    }

    #[test]
    fn numbers_follow_ecmascript() {
        for (input, expected) in [
            (1.0, "1"),
            (-0.0, "0"),
            (1.5, "1.5"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (123.456e-10, "1.23456e-8"),
            (-4.5e30, "-4.5e+30"),
            (333333333.3333333, "333333333.3333333"),
        ] {
            assert_eq!(format_es6(input), expected, "{input}");
        }
        assert_eq!(canonicalize(&json!([10, -3, 2.25])), "[10,-3,2.25]");
    }

    #[test]
    fn escapes_strings_like_json_stringify() {
        assert_eq!(
            canonicalize(&json!("a\"b\\c\u{1}\n/é")),
            "\"a\\\"b\\\\c\\u0001\\n/é\""
        );
    }
}
