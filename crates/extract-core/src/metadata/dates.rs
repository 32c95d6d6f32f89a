//! Dates as pages write them: RFC 3339 and other ISO 8601 forms, RFC 2822, and the common
//! date-only forms. The offset is kept as written; a time without one is taken as UTC, and
//! a date without a time as midnight UTC.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Longer values are not dates (a paragraph in a `content` attribute).
const MAX_LEN: usize = 64;
/// Years outside this range are typos or junk (`0001-01-01`, `9999-12-31`), not publication
/// dates of a web page, and are refused.
const YEARS: std::ops::RangeInclusive<i32> = 1800..=2200;

/// Parses a date or date-time; `None` when the value is no date, or an absurd one.
pub fn parse_date(raw: &str) -> Option<DateTime<FixedOffset>> {
    let s = raw.trim();
    if s.is_empty() || s.len() > MAX_LEN {
        return None;
    }
    let parsed = with_offset(s)
        .or_else(|| naive_date_time(s).map(|n| Utc.from_utc_datetime(&n).fixed_offset()))
        .or_else(|| {
            date_only(s)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|n| Utc.from_utc_datetime(&n).fixed_offset())
        })?;
    use chrono::Datelike;
    YEARS.contains(&parsed.year()).then_some(parsed)
}

fn with_offset(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d);
    }
    // ISO 8601 beyond RFC 3339: a space for the `T`, no seconds, `+hhmm` offsets.
    const FORMATS: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M%#z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%.f %#z",
        "%Y-%m-%d %H:%M%#z",
        "%Y-%m-%dT%H:%M:%S%.fZ",
        "%Y-%m-%dT%H:%MZ",
        "%Y-%m-%d %H:%M:%S%.fZ",
    ];
    for f in FORMATS {
        if let Ok(d) = DateTime::parse_from_str(s, f) {
            return Some(d);
        }
        if f.ends_with('Z')
            && let Ok(n) = NaiveDateTime::parse_from_str(s, f)
        {
            return Some(Utc.from_utc_datetime(&n).fixed_offset());
        }
    }
    DateTime::parse_from_rfc2822(s).ok()
}

fn naive_date_time(s: &str) -> Option<NaiveDateTime> {
    const FORMATS: &[&str] = &[
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
    ];
    FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

fn date_only(s: &str) -> Option<NaiveDate> {
    // Day-first and month-first slashed dates (03/04/2020) are ambiguous and not read.
    const FORMATS: &[&str] = &[
        "%Y-%m-%d",
        "%Y/%m/%d",
        "%Y.%m.%d",
        "%d.%m.%Y",
        "%B %d, %Y",
        "%B %d %Y",
        "%b %d, %Y",
        "%b. %d, %Y",
        "%b %d %Y",
        "%d %B %Y",
        "%d %b %Y",
        "%d %b. %Y",
        "%A, %B %d, %Y",
        "%a, %d %b %Y",
        "%A, %d %B %Y",
    ];
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return NaiveDate::parse_from_str(s, "%Y%m%d").ok();
    }
    FORMATS
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc(s: &str) -> Option<String> {
        parse_date(s).map(|d| d.to_rfc3339())
    }

    #[test]
    fn offsets_are_kept_as_written() {
        assert_eq!(
            rfc("2016-12-22T10:43:37-08:00").as_deref(),
            Some("2016-12-22T10:43:37-08:00")
        );
        assert_eq!(
            rfc("2016-12-22T10:43:37-0800").as_deref(),
            Some("2016-12-22T10:43:37-08:00")
        );
        assert_eq!(
            rfc(" 2018-12-21T12:55:00Z ").as_deref(),
            Some("2018-12-21T12:55:00+00:00")
        );
        assert_eq!(
            rfc("2020-05-01 09:30+02:00").as_deref(),
            Some("2020-05-01T09:30:00+02:00")
        );
        assert_eq!(
            rfc("Thu, 22 Dec 2016 10:43:37 +0100").as_deref(),
            Some("2016-12-22T10:43:37+01:00")
        );
        assert_eq!(
            rfc("2017-11-03T03:01Z").as_deref(),
            Some("2017-11-03T03:01:00+00:00")
        );
    }

    #[test]
    fn times_without_an_offset_are_utc_and_dates_are_midnight() {
        assert_eq!(
            rfc("2017-11-03 03:01:00.000000").as_deref(),
            Some("2017-11-03T03:01:00+00:00")
        );
        for s in [
            "2016-12-22",
            "2016/12/22",
            "20161222",
            "December 22, 2016",
            "Dec 22, 2016",
            "22 December 2016",
            "22 Dec 2016",
            "22.12.2016",
            "Thursday, December 22, 2016",
        ] {
            assert_eq!(rfc(s).as_deref(), Some("2016-12-22T00:00:00+00:00"), "{s}");
        }
    }

    #[test]
    fn absurd_and_ambiguous_values_are_refused() {
        for s in [
            "",
            "yesterday",
            "0001-01-01T00:00:00Z",
            "9999-12-31",
            "2020-13-45",
            "2020-02-30",
            "03/04/2020",
            "12345678901234567890",
            &"2020-01-01".repeat(10),
            "2016-12-22T25:61:00Z",
        ] {
            assert_eq!(rfc(s), None, "{s}");
        }
    }
}
