//! The Info dictionary of a PDF: title, author, dates. (XMP metadata streams are not read:
//! the Info dictionary carries the same fields in nearly every file, and XMP needs an XML
//! parser and its own bounds.)

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use lopdf::{Document, Object};

use super::PdfMetadata;

/// Longest metadata value kept, in characters.
const MAX_VALUE_CHARS: usize = 1000;

/// Reads the fields of the trailer's `Info` dictionary; absent or unreadable ones are `None`.
pub(super) fn read(doc: &Document) -> PdfMetadata {
    let Some(info) = doc
        .trailer
        .get(b"Info")
        .ok()
        .and_then(|o| resolve(doc, o))
        .and_then(|o| o.as_dict().ok())
    else {
        return PdfMetadata::default();
    };
    let text = |key: &[u8]| {
        let obj = resolve(doc, info.get(key).ok()?)?;
        let value = lopdf::decode_text_string(obj).ok()?;
        let value: String = value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .filter(|c| *c != '\0')
            .take(MAX_VALUE_CHARS)
            .collect();
        (!value.is_empty()).then_some(value)
    };
    PdfMetadata {
        title: text(b"Title"),
        author: text(b"Author"),
        subject: text(b"Subject"),
        keywords: text(b"Keywords"),
        creator: text(b"Creator"),
        producer: text(b"Producer"),
        created: text(b"CreationDate").and_then(|d| parse_date(&d)),
        modified: text(b"ModDate").and_then(|d| parse_date(&d)),
        page_count: 0,
    }
}

/// One level of indirection, as the Info dictionary and its values may be references.
fn resolve<'a>(doc: &'a Document, obj: &'a Object) -> Option<&'a Object> {
    match obj {
        Object::Reference(id) => doc.get_object(*id).ok(),
        other => Some(other),
    }
}

/// A PDF date, `D:YYYYMMDDHHmmSSOHH'mm'` (every part after the year optional; `O` is `+`,
/// `-` or `Z`), with its offset. Absurd values (month 13, offset of 30 hours) give `None`.
pub(super) fn parse_date(s: &str) -> Option<DateTime<FixedOffset>> {
    let s = s.trim();
    let s = s.strip_prefix("D:").unwrap_or(s);
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    if digits.len() < 4 {
        return None;
    }
    let part = |from: usize, len: usize, default: u32| -> Option<u32> {
        match digits.get(from..from + len) {
            Some(p) => p.parse().ok(),
            None if digits.len() <= from => Some(default),
            None => None,
        }
    };
    let year: i32 = digits[..4].parse().ok()?;
    let (month, day) = (part(4, 2, 1)?, part(6, 2, 1)?);
    let (hour, minute, second) = (part(8, 2, 0)?, part(10, 2, 0)?, part(12, 2, 0)?);
    let rest = &s[digits.len()..];
    let offset_seconds = match rest.chars().next() {
        Some(sign @ ('+' | '-')) => {
            let nums: Vec<u32> = rest[1..]
                .split(|c: char| !c.is_ascii_digit())
                .filter(|p| !p.is_empty())
                .take(2)
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let hours = *nums.first().unwrap_or(&0);
            let minutes = *nums.get(1).unwrap_or(&0);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = (hours * 3600 + minutes * 60) as i32;
            if sign == '-' { -secs } else { secs }
        }
        _ => 0,
    };
    let offset = FixedOffset::east_opt(offset_seconds)?;
    let naive = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, minute, second)?;
    offset.from_local_datetime(&naive).single()
}

#[cfg(test)]
mod tests {
    use super::parse_date;

    #[test]
    fn pdf_dates_keep_their_offset() {
        let d = parse_date("D:20240131154500+01'00'").unwrap();
        assert_eq!(d.to_rfc3339(), "2024-01-31T15:45:00+01:00");
        let d = parse_date("D:20240131154500-05'30").unwrap();
        assert_eq!(d.to_rfc3339(), "2024-01-31T15:45:00-05:30");
        assert_eq!(
            parse_date("D:19991231235959Z").unwrap().to_rfc3339(),
            "1999-12-31T23:59:59+00:00"
        );
        assert_eq!(
            parse_date("D:2023").unwrap().to_rfc3339(),
            "2023-01-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_date("20230704").unwrap().to_rfc3339(),
            "2023-07-04T00:00:00+00:00"
        );
    }

    #[test]
    fn absurd_dates_are_none() {
        for bad in [
            "D:20241301",
            "D:2024013",
            "D:20240101+99'00'",
            "",
            "D:abc",
            "D:202",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
