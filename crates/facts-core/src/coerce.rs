//! Coercion of found values to a field's type. A value that cannot be coerced is dropped
//! and reported, never stored as something it is not.

use chrono::{Datelike, Timelike};
use serde_json::{Number, Value};
use url::Url;

use crate::ground::normalize_whitespace;
use crate::schema::{Field, FieldType};

/// Longest text value kept, in characters; longer ones are dropped rather than cut, since
/// a cut value would no longer match its quote.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// Coerces one raw value (a string, number or boolean as found) to the type of one value
/// of `field` (a list's item type for list fields). `base` resolves relative URLs.
///
/// # Errors
/// Why the value is not of the type, as a short phrase naming the value.
pub fn coerce(field: &Field, raw: &Value, base: Option<&Url>) -> Result<Value, String> {
    let ty = field.value_type();
    match raw {
        Value::String(s) => coerce_str(ty, field, s, base),
        Value::Number(n) => match ty {
            FieldType::Integer => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .map(Value::from)
                .ok_or_else(|| format!("not an integer: {n}")),
            FieldType::Float => n
                .as_f64()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("not a number: {n}")),
            FieldType::Boolean => match n.as_i64() {
                Some(1) => Ok(Value::Bool(true)),
                Some(0) => Ok(Value::Bool(false)),
                _ => Err(format!("not a boolean: {n}")),
            },
            _ => coerce_str(ty, field, &n.to_string(), base),
        },
        Value::Bool(b) => match ty {
            FieldType::Boolean => Ok(Value::Bool(*b)),
            FieldType::Text | FieldType::Summary | FieldType::Enum => {
                coerce_str(ty, field, if *b { "true" } else { "false" }, base)
            }
            _ => Err(format!("not a {}: {b}", ty.as_str())),
        },
        other => Err(format!("not a {}: {}", ty.as_str(), kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
        _ => "a scalar",
    }
}

fn shown(s: &str) -> String {
    let t: String = s.chars().take(60).collect();
    if t.len() < s.len() {
        format!("{t:?}…")
    } else {
        format!("{t:?}")
    }
}

fn coerce_str(ty: FieldType, field: &Field, s: &str, base: Option<&Url>) -> Result<Value, String> {
    let t = normalize_whitespace(s);
    if t.is_empty() {
        return Err("empty value".into());
    }
    match ty {
        FieldType::Text | FieldType::Summary | FieldType::List => {
            if t.chars().count() > MAX_TEXT_CHARS {
                Err(format!("longer than {MAX_TEXT_CHARS} characters"))
            } else {
                Ok(Value::String(t))
            }
        }
        FieldType::Integer => match parse_number(&t) {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
            _ => Err(format!("not an integer: {}", shown(&t))),
        },
        FieldType::Float => parse_number(&t)
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("not a number: {}", shown(&t))),
        FieldType::Boolean => parse_bool(&t)
            .map(Value::Bool)
            .ok_or_else(|| format!("not a boolean: {}", shown(&t))),
        FieldType::Enum => match_enum(&field.values, &t)
            .map(|v| Value::String(v.to_string()))
            .ok_or_else(|| format!("{} is not one of: {}", shown(&t), field.values.join(", "))),
        FieldType::Date => parse_date(&t).ok_or_else(|| format!("not a date: {}", shown(&t))),
        FieldType::Url => parse_url(&t, base)
            .map(Value::String)
            .ok_or_else(|| format!("not an http(s) URL: {}", shown(&t))),
    }
}

/// `true`/`yes`/`y`/`on`/`1` and their opposites, any case; schema.org's
/// `https://schema.org/True` as `true`.
pub fn parse_bool(s: &str) -> Option<bool> {
    let last = s
        .trim()
        .rsplit('/')
        .next()
        .unwrap_or(s)
        .to_ascii_lowercase();
    match last.as_str() {
        "true" | "yes" | "y" | "on" | "1" => Some(true),
        "false" | "no" | "n" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The declared value `s` stands for: equal ignoring case, else equal ignoring case and
/// everything but letters and digits (`FULL_TIME` is `full-time`), also after taking the
/// last segment of a schema.org URL (`https://schema.org/InStock` is `in_stock`).
pub fn match_enum<'v>(values: &'v [String], s: &str) -> Option<&'v str> {
    let s = s.trim();
    if let Some(v) = values.iter().find(|v| v.eq_ignore_ascii_case(s)) {
        return Some(v);
    }
    let last = s.rsplit(['/', '#']).next().unwrap_or(s);
    for cand in [s, last] {
        let f = fold(cand);
        if f.is_empty() {
            continue;
        }
        if let Some(v) = values.iter().find(|v| fold(v) == f) {
            return Some(v);
        }
    }
    None
}

/// The one number in `s`: currency signs, letters and spaces around it are ignored,
/// thousands separators are read (`1,299.00`, `1.299,00`, `1 299`); a text with two
/// numbers (`10-20`, `from 5 to 9`) has none.
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let bytes: Vec<char> = s.chars().collect();
    let mut tokens: Vec<String> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let starts = c.is_ascii_digit()
            || ((c == '-' || c == '+' || c == '.')
                && bytes.get(i + 1).is_some_and(|n| n.is_ascii_digit()));
        if !starts {
            i += 1;
            continue;
        }
        let mut tok = String::new();
        while i < bytes.len() {
            let c = bytes[i];
            let sep_inside = (c == ',' || c == '.' || c == ' ' || c == '\u{a0}' || c == '\'')
                && bytes.get(i + 1).is_some_and(|n| n.is_ascii_digit())
                && !tok.is_empty();
            if c.is_ascii_digit()
                || sep_inside
                || (tok.is_empty() && (c == '-' || c == '+' || c == '.'))
            {
                tok.push(c);
                i += 1;
            } else {
                break;
            }
        }
        tokens.push(tok);
        // A trailing exponent (1e5) is rare in prices; not read.
    }
    if tokens.len() != 1 {
        return None;
    }
    let tok = tokens.pop()?;
    let (sign, body) = match tok.strip_prefix('-') {
        Some(b) => (-1.0, b.to_string()),
        None => (1.0, tok.trim_start_matches('+').to_string()),
    };
    let body: String = body
        .chars()
        .filter(|c| *c != ' ' && *c != '\u{a0}' && *c != '\'')
        .collect();
    let last_dot = body.rfind('.');
    let last_comma = body.rfind(',');
    let normalized = match (last_dot, last_comma) {
        (Some(d), Some(c)) if d > c => body.replace(',', ""),
        (Some(_), Some(_)) => body.replace('.', "").replace(',', "."),
        (None, Some(c)) => {
            // One comma followed by exactly three digits is a thousands separator.
            let groups = body.matches(',').count();
            if groups == 1 && body.len() - c - 1 != 3 {
                body.replace(',', ".")
            } else {
                body.replace(',', "")
            }
        }
        // Several dots can only be thousands separators (`1.299.000`); one is a decimal
        // point, as in most prices written in English.
        (Some(_), None) if body.matches('.').count() > 1 => body.replace('.', ""),
        (Some(_), None) => body,
        (None, None) => body,
    };
    let f: f64 = normalized.parse().ok()?;
    f.is_finite().then_some(sign * f)
}

/// A date as `YYYY-MM-DD`, or a date-time as RFC 3339: the forms pages write (ISO 8601,
/// RFC 2822, `December 22, 2016`, `22 Dec 2016`...). A time without an offset is taken as
/// UTC; years outside 1800..=2200 are refused.
pub fn parse_date(s: &str) -> Option<Value> {
    let d = extract_core::metadata::parse_date(s)?;
    let date_only = !s.contains(':')
        && d.offset().local_minus_utc() == 0
        && d.hour() == 0
        && d.minute() == 0
        && d.second() == 0;
    Some(Value::String(if date_only {
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    } else {
        d.to_rfc3339()
    }))
}

/// An absolute http(s) URL; relative ones resolve against `base`.
pub fn parse_url(s: &str, base: Option<&Url>) -> Option<String> {
    let s = s.trim();
    if s.contains(char::is_whitespace) {
        return None;
    }
    let u = match Url::parse(s) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => base?.join(s).ok()?,
        Err(_) => return None,
    };
    matches!(u.scheme(), "http" | "https").then(|| u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(ty: FieldType) -> Field {
        Field {
            ty,
            required: false,
            description: None,
            values: vec![],
            items: None,
            from: vec![],
        }
    }

    #[test]
    fn numbers_read_prices_and_separators() {
        assert_eq!(parse_number("$1,299.00"), Some(1299.0));
        assert_eq!(parse_number("1.299,50 €"), Some(1299.5));
        assert_eq!(parse_number("EUR 12,5"), Some(12.5));
        assert_eq!(parse_number("1,299"), Some(1299.0));
        assert_eq!(parse_number("1 299"), Some(1299.0));
        assert_eq!(parse_number("-3.5"), Some(-3.5));
        assert_eq!(parse_number("10-20"), None);
        assert_eq!(parse_number("from 5 to 9"), None);
        assert_eq!(parse_number("call us"), None);
        let f = field(FieldType::Float);
        assert_eq!(coerce(&f, &json!("$1,299.00"), None), Ok(json!(1299.0)));
        assert_eq!(coerce(&f, &json!(3), None), Ok(json!(3.0)));
        let i = field(FieldType::Integer);
        assert_eq!(coerce(&i, &json!("1,299"), None), Ok(json!(1299)));
        assert!(
            coerce(&i, &json!("12.5"), None)
                .unwrap_err()
                .contains("not an integer")
        );
        assert_eq!(coerce(&i, &json!(12.0), None), Ok(json!(12)));
    }

    #[test]
    fn booleans_and_enums() {
        let b = field(FieldType::Boolean);
        assert_eq!(coerce(&b, &json!("Yes"), None), Ok(json!(true)));
        assert_eq!(
            coerce(&b, &json!("https://schema.org/False"), None),
            Ok(json!(false))
        );
        assert!(coerce(&b, &json!("maybe"), None).is_err());
        let mut e = field(FieldType::Enum);
        e.values = vec!["full_time".into(), "part_time".into(), "in_stock".into()];
        assert_eq!(
            coerce(&e, &json!("FULL_TIME"), None),
            Ok(json!("full_time"))
        );
        assert_eq!(
            coerce(&e, &json!("Part-time"), None),
            Ok(json!("part_time"))
        );
        assert_eq!(
            coerce(&e, &json!("https://schema.org/InStock"), None),
            Ok(json!("in_stock"))
        );
        let err = coerce(&e, &json!("Contract"), None).unwrap_err();
        assert_eq!(
            err,
            "\"Contract\" is not one of: full_time, part_time, in_stock"
        );
    }

    #[test]
    fn dates_and_urls() {
        let d = field(FieldType::Date);
        assert_eq!(
            coerce(&d, &json!("2016-12-22"), None),
            Ok(json!("2016-12-22"))
        );
        assert_eq!(
            coerce(&d, &json!("December 22, 2016"), None),
            Ok(json!("2016-12-22"))
        );
        assert_eq!(
            coerce(&d, &json!("2016-12-22T10:43:37-0800"), None),
            Ok(json!("2016-12-22T10:43:37-08:00"))
        );
        assert_eq!(
            coerce(&d, &json!("Thu, 22 Dec 2016 10:43:37 +0100"), None),
            Ok(json!("2016-12-22T10:43:37+01:00"))
        );
        assert!(coerce(&d, &json!("last Tuesday"), None).is_err());
        let u = field(FieldType::Url);
        let base = Url::parse("https://example.com/a/b.html").unwrap();
        assert_eq!(
            coerce(&u, &json!("../img/x.png"), Some(&base)),
            Ok(json!("https://example.com/img/x.png"))
        );
        assert!(coerce(&u, &json!("javascript:alert(1)"), Some(&base)).is_err());
        assert!(coerce(&u, &json!("/x"), None).is_err());
    }

    #[test]
    fn text_collapses_whitespace() {
        let t = field(FieldType::Text);
        assert_eq!(coerce(&t, &json!("  a \n b "), None), Ok(json!("a b")));
        assert!(coerce(&t, &json!("   "), None).is_err());
        assert_eq!(coerce(&t, &json!(12), None), Ok(json!("12")));
    }
}
