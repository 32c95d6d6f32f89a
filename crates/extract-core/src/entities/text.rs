//! E-mail addresses, phone numbers and domains in text, and `mailto:`/`tel:` links in HTML.
//!
//! Text patterns are tuned for precision: a missed phone number costs less than a date or
//! an ISBN stored as one, and a file name (`main.rs`) stored as a domain.

use std::sync::LazyLock;

use regex::Regex;

use super::{
    Collector, EntityKind, EntitySource, normalize_domain, normalize_email, normalize_phone,
};

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[a-z0-9][a-z0-9._%+-]*@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,24}")
        .expect("valid e-mail pattern")
});

/// An optional `+CC` or `00CC` prefix, an optional `(area)`, then 2 to 5 digit groups.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,5}(?:[ .-]\d{2,5}){1,5}")
        .expect("valid phone pattern")
});

static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(https?://)?((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,24}))")
        .expect("valid domain pattern")
});

static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\d{4}[-./ ]\d{1,2}[-./ ]\d{1,2}|\d{1,2}[-./ ]\d{1,2}[-./ ]\d{2,4})$")
        .expect("valid date pattern")
});

/// Top-level domains accepted without a scheme or `www.` in front: the common ones.
/// Other two-letter country codes collide with file extensions (`.py`, `.rs`, `.sh`, `.md`).
const TLDS: &[&str] = &[
    "com", "org", "net", "edu", "gov", "mil", "int", "io", "co", "ai", "app", "dev", "info", "biz",
    "me", "tv", "us", "uk", "de", "fr", "jp", "cn", "ru", "br", "in", "it", "es", "nl", "au", "ca",
    "ch", "se", "no", "fi", "dk", "pl", "be", "at", "ie", "nz", "za", "mx", "ar", "kr", "eu",
    "asia", "news", "blog", "xyz", "online", "site", "tech", "store", "cloud", "gg", "fm", "ly",
    "to", "cz", "pt", "gr", "hu", "ro", "tr", "il", "sg", "hk", "tw", "id", "ua", "cl", "ng", "ke",
    "org.uk", "example",
];

/// Adds the targets of `mailto:` and `tel:` links.
pub(crate) fn find_links(hrefs: &[String], out: &mut Collector) {
    for href in hrefs {
        let href = href.trim();
        let lower = href.to_ascii_lowercase();
        if lower.starts_with("mailto:") {
            let addr = href[7..].split(['?', ',']).next().unwrap_or("");
            let addr = percent_decode_at(addr);
            if EMAIL.find(&addr).is_some_and(|m| m.as_str() == addr.trim()) {
                out.add(
                    EntityKind::Email,
                    &addr,
                    normalize_email(&addr),
                    EntitySource::Link,
                );
            }
        } else if lower.starts_with("tel:") {
            let tel = &href[4..];
            let n = normalize_phone(tel);
            if (7..=16).contains(&n.len()) {
                out.add(EntityKind::Phone, tel, n, EntitySource::Link);
            }
        }
    }
}

fn percent_decode_at(s: &str) -> String {
    s.replace("%40", "@")
        .replace("%2E", ".")
        .replace("%2e", ".")
}

/// Adds the e-mail addresses, phone numbers and domains of `text`.
pub(crate) fn find_in_text(text: &str, out: &mut Collector) {
    let mut email_spans = Vec::new();
    for m in EMAIL.find_iter(text) {
        let addr = m.as_str().trim_end_matches('.');
        out.add(
            EntityKind::Email,
            addr,
            normalize_email(addr),
            EntitySource::Text,
        );
        email_spans.push(m.range());
    }
    for m in PHONE.find_iter(text) {
        if is_phone(text, m.start(), m.end()) {
            out.add(
                EntityKind::Phone,
                m.as_str(),
                normalize_phone(m.as_str()),
                EntitySource::Text,
            );
        }
    }
    for c in DOMAIN.captures_iter(text) {
        let (Some(all), Some(domain), Some(tld)) = (c.get(0), c.get(2), c.get(3)) else {
            continue;
        };
        if email_spans.iter().any(|r| r.contains(&domain.start())) {
            continue;
        }
        // Part of a longer word-like token (`v1.2.3`, `a.b_c`) or an e-mail local part.
        let before = text[..all.start()].chars().next_back();
        let after = text[all.end()..].chars().next();
        if before.is_some_and(|b| b.is_alphanumeric() || matches!(b, '@' | '.' | '_' | '-'))
            || after.is_some_and(|a| a.is_alphanumeric() || matches!(a, '@' | '_'))
        {
            continue;
        }
        let d = domain.as_str();
        let tld = tld.as_str().to_ascii_lowercase();
        let explicit = c.get(1).is_some() || d.to_ascii_lowercase().starts_with("www.");
        if explicit || TLDS.contains(&tld.as_str()) {
            out.add(
                EntityKind::Domain,
                d,
                normalize_domain(d),
                EntitySource::Text,
            );
        }
    }
}

/// Whether a phone-shaped match is a phone number and not a date, a year range, an ISBN
/// or a piece of a longer number.
fn is_phone(text: &str, start: usize, end: usize) -> bool {
    let s = &text[start..end];
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    if before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '/' | ',' | '+'))
        || after.is_some_and(|c| c.is_alphanumeric() || matches!(c, '-' | '/' | '%'))
        || after == Some(',')
            && text[end..]
                .chars()
                .nth(1)
                .is_some_and(|c| c.is_ascii_digit())
    {
        return false;
    }
    let digits = s.chars().filter(char::is_ascii_digit).count();
    if !(7..=15).contains(&digits) || DATE.is_match(s) {
        return false;
    }
    let intl = s.starts_with('+');
    let area = s.contains('(');
    let groups: Vec<&str> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    // Phones rarely have one-digit groups after the first (ISBNs do), nor only years.
    if groups.iter().skip(1).any(|g| g.len() < 2) && !intl {
        return false;
    }
    if groups
        .iter()
        .all(|g| g.len() == 4 && (g.starts_with("19") || g.starts_with("20")))
    {
        return false;
    }
    intl || area || groups.len() >= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(EntityKind, String)> {
        let mut c = Collector::default();
        find_in_text(text, &mut c);
        c.entities
            .into_iter()
            .map(|e| (e.kind, e.normalized))
            .collect()
    }

    #[test]
    fn emails_phones_and_domains() {
        let got = found(
            "Write to Press@Example.com or call +1 (555) 010-2030, or 020 7946 0958. \
             See www.Example.org and https://docs.rs/x; news.bbc.co.uk reported it.",
        );
        assert_eq!(
            got,
            vec![
                (EntityKind::Email, "press@example.com".into()),
                (EntityKind::Phone, "+15550102030".into()),
                (EntityKind::Phone, "02079460958".into()),
                (EntityKind::Domain, "example.org".into()),
                (EntityKind::Domain, "docs.rs".into()),
                (EntityKind::Domain, "news.bbc.co.uk".into()),
            ]
        );
    }

    #[test]
    fn dates_years_isbns_versions_and_files_are_not_entities() {
        let got = found(
            "On 2014-09-15 (see 2014-2015 results), ISBN 978-3-16-148410-0, version 1.2.3, \
             run main.rs or script.py; revenue was 1,234,567 dollars; e.g. this.",
        );
        assert_eq!(got, vec![]);
    }

    #[test]
    fn links_give_emails_and_phones() {
        let doc = crate::html::parse_guarded(
            r#"<a href="mailto:Sales@Shop.example?subject=hi">mail</a><a href="/x">x</a><a href="tel:+44-20-7946-0000">call</a>"#,
            &crate::Limits::default(),
        )
        .unwrap();
        let markup = crate::Markup::from_document(&doc);
        assert_eq!(markup.contact_links.len(), 2);
        let mut c = Collector::default();
        find_links(&markup.contact_links, &mut c);
        let got: Vec<_> = c
            .entities
            .into_iter()
            .map(|e| (e.kind, e.normalized))
            .collect();
        assert_eq!(
            got,
            vec![
                (EntityKind::Email, "sales@shop.example".into()),
                (EntityKind::Phone, "+442079460000".into())
            ]
        );
    }
}
