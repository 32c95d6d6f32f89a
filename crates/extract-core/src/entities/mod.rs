//! Entities a page names: schema.org JSON-LD entities (organizations, people, products,
//! places, events) and the e-mail addresses, phone numbers and web domains in its text.
//!
//! Each entity carries a normalized value, the key under which the pipeline deduplicates it:
//! lower-cased e-mail, `+` and digits for phones, lower-cased domain without `www.`, and names
//! trimmed with inner whitespace collapsed. Extractors that fail (a JSON-LD block that does not
//! parse) are reported, not hidden, so the caller can record a partial result as partial.

mod jsonld;
mod text;

pub use jsonld::{clean_block as clean_jsonld_block, decode_entities as decode_jsonld_entities};

use std::collections::HashSet;

use dom_query::Document;
use serde::{Deserialize, Serialize};

use crate::limits::{Budget, Limits, TooExpensive};

/// What kind of thing an entity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntityKind {
    /// schema.org `Organization` and its subtypes (companies, newsrooms, local businesses).
    Organization,
    /// schema.org `Person`.
    Person,
    /// schema.org `Product` and its subtypes.
    Product,
    /// schema.org `Place` and its subtypes.
    Place,
    /// schema.org `Event` and its subtypes.
    Event,
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A web domain.
    Domain,
}

impl EntityKind {
    /// A short stable name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "organization",
            Self::Person => "person",
            Self::Product => "product",
            Self::Place => "place",
            Self::Event => "event",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Domain => "domain",
        }
    }
}

/// Where an entity was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntitySource {
    /// A `<script type="application/ld+json">` block.
    JsonLd,
    /// A `mailto:` or `tel:` link in the HTML.
    Link,
    /// The main text.
    Text,
}

/// One entity found in a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// What it is.
    pub kind: EntityKind,
    /// The value as the page writes it (whitespace trimmed and collapsed).
    pub name: String,
    /// The normalized value, the deduplication key together with `kind`.
    pub normalized: String,
    /// Where it was found (the first place, when found in several).
    pub source: EntitySource,
}

/// Overall outcome of entity finding, as recorded in `extractions.entities_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntitiesStatus {
    /// Every extractor ran cleanly.
    Complete,
    /// Some extractor failed; the entities of the others are kept.
    Partial,
    /// Every extractor that ran failed.
    Failed,
}

impl EntitiesStatus {
    /// The stored word: `complete`, `partial` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Failed => "failed",
        }
    }
}

/// Entities of one document, with what went wrong while finding them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityReport {
    /// Entities, deduplicated on `(kind, normalized)`, in order of first appearance.
    pub entities: Vec<Entity>,
    /// One line per failure, naming the extractor (e.g. `json-ld block 2: ...`).
    pub failures: Vec<String>,
    /// Extractors that ran without any failure (`json-ld`, `links`, `text`).
    pub completed: Vec<String>,
}

impl EntityReport {
    /// `complete` when nothing failed, `partial` when something failed but another
    /// extractor completed, `failed` when nothing completed.
    pub fn status(&self) -> EntitiesStatus {
        if self.failures.is_empty() {
            EntitiesStatus::Complete
        } else if self.completed.is_empty() {
            EntitiesStatus::Failed
        } else {
            EntitiesStatus::Partial
        }
    }
}

/// What entity finding reads from a page's markup: the JSON-LD blocks and the `mailto:`
/// and `tel:` link targets. Taken from the page's one parse (see [`crate::Extracted`]), so
/// entity finding never parses the page again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Markup {
    /// The text of each `<script type="application/ld+json">`, in page order.
    pub jsonld: Vec<String>,
    /// The `href` of each `mailto:` or `tel:` link, in page order.
    pub contact_links: Vec<String>,
}

impl Markup {
    /// Reads the entity markup of a parsed page.
    pub fn from_document(doc: &Document) -> Self {
        let jsonld = doc
            .select("script")
            .nodes()
            .iter()
            .filter(|n| {
                n.attr("type")
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/ld+json"))
            })
            .map(|n| n.text().to_string())
            .collect();
        // Only contact links are kept: a page of a million links keeps none of the others.
        let contact_links = doc
            .select("a[href]")
            .nodes()
            .iter()
            .filter_map(|n| n.attr("href"))
            .filter(|h| {
                let h = h.trim_start().as_bytes();
                let prefix = |p: &[u8]| h.len() >= p.len() && h[..p.len()].eq_ignore_ascii_case(p);
                prefix(b"mailto:") || prefix(b"tel:")
            })
            .map(|h| h.to_string())
            .collect();
        Self {
            jsonld,
            contact_links,
        }
    }
}

/// Collects entities, dropping repeats of a `(kind, normalized)` pair, and counting those
/// beyond the cap.
pub(crate) struct Collector {
    seen: HashSet<(EntityKind, String)>,
    entities: Vec<Entity>,
    cap: usize,
    dropped: usize,
}

impl Default for Collector {
    fn default() -> Self {
        Self::with_cap(usize::MAX)
    }
}

impl Collector {
    pub(crate) fn with_cap(cap: usize) -> Self {
        Self {
            seen: HashSet::new(),
            entities: Vec::new(),
            cap,
            dropped: 0,
        }
    }

    pub(crate) fn add(
        &mut self,
        kind: EntityKind,
        name: &str,
        normalized: String,
        source: EntitySource,
    ) {
        if normalized.is_empty() {
            return;
        }
        if self.entities.len() >= self.cap {
            if !self.seen.contains(&(kind, normalized.clone())) {
                self.dropped += 1;
            }
            return;
        }
        if self.seen.insert((kind, normalized.clone())) {
            self.entities.push(Entity {
                kind,
                name: normalize_name(name),
                normalized,
                source,
            });
        }
    }
}

/// Finds the entities of a document: JSON-LD blocks and `mailto:`/`tel:` links of `html`
/// (when the document is HTML), and e-mail addresses, phone numbers and domains of `text`
/// (the extracted main text).
///
/// The markup goes through the guard with the default [`Limits`]; a page it refuses is
/// reported as a failure of the markup extractors (the text is still searched). Callers
/// that extracted the page already should use [`find_entities_in`] with
/// [`crate::Extracted::markup`] instead, which parses nothing.
pub fn find_entities(html: Option<&str>, text: &str) -> EntityReport {
    let limits = Limits::default();
    let mut budget = Budget::new(&limits);
    let markup =
        html.map(|h| crate::html::parse_guarded(h, &limits).map(|d| Markup::from_document(&d)));
    let refused = match &markup {
        Some(Err(e)) => Some(format!("markup: too expensive to parse: {e}")),
        _ => None,
    };
    let markup = markup.and_then(Result::ok);
    let mut report = match find_entities_in(markup.as_ref(), text, &limits, &mut budget) {
        Ok(report) => report,
        Err(e) => EntityReport {
            failures: vec![format!("too expensive to extract: {e}")],
            ..EntityReport::default()
        },
    };
    report.failures.extend(refused);
    report
}

/// Finds the entities of a document from its [`Markup`] (when it is HTML) and its main
/// text, spending from `budget`. At most `limits.max_entities` are kept; more are reported
/// as a failure (`entities: ...`), so the status says `partial`.
///
/// # Errors
/// [`TooExpensive`] when the budget runs out.
pub fn find_entities_in(
    markup: Option<&Markup>,
    text: &str,
    limits: &Limits,
    budget: &mut Budget,
) -> Result<EntityReport, TooExpensive> {
    let mut report = EntityReport::default();
    let mut found = Collector::with_cap(limits.max_entities);
    if let Some(markup) = markup {
        let bytes: usize = markup.jsonld.iter().map(String::len).sum();
        budget.spend(bytes as u64, "JSON-LD")?;
        let failures = jsonld::find(&markup.jsonld, &mut found);
        if failures.is_empty() {
            report.completed.push("json-ld".into());
        }
        report.failures.extend(failures);
        budget.spend(markup.contact_links.len() as u64, "contact links")?;
        text::find_links(&markup.contact_links, &mut found);
        report.completed.push("links".into());
    }
    // Three linear-time patterns over the text.
    budget.spend(3 * text.len() as u64, "finding entities in the text")?;
    text::find_in_text(text, &mut found);
    report.completed.push("text".into());
    if found.dropped > 0 {
        report.failures.push(format!(
            "entities: {} more than the cap of {} were dropped",
            found.dropped, limits.max_entities
        ));
    }
    report.entities = found.entities;
    Ok(report)
}

/// Trims and collapses whitespace: the normal form of names.
pub(crate) fn normalize_name(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Lower-cases an e-mail address.
pub(crate) fn normalize_email(s: &str) -> String {
    s.trim().trim_end_matches('.').to_lowercase()
}

/// Keeps a leading `+` and the digits: `+1 (555) 010-2030` -> `+15550102030`.
pub(crate) fn normalize_phone(s: &str) -> String {
    let s = s.trim();
    let mut out = String::new();
    if s.starts_with('+') {
        out.push('+');
    } else if let Some(rest) = s.strip_prefix("00") {
        // International prefix written as 00: same number as with +.
        out.push('+');
        out.extend(rest.chars().filter(char::is_ascii_digit));
        return out;
    }
    out.extend(s.chars().filter(char::is_ascii_digit));
    out
}

/// Lower-cases a domain and drops `www.` and a trailing dot.
pub(crate) fn normalize_domain(s: &str) -> String {
    let d = s.trim().trim_end_matches('.').to_lowercase();
    d.strip_prefix("www.").map(str::to_string).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        assert_eq!(
            normalize_email(" Jane.Doe@Example.COM "),
            "jane.doe@example.com"
        );
        assert_eq!(normalize_phone("+1 (555) 010-2030"), "+15550102030");
        assert_eq!(normalize_phone("0044 20 7946 0000"), "+442079460000");
        assert_eq!(normalize_phone("555-010-2030"), "5550102030");
        assert_eq!(normalize_domain("WWW.Example.co.uk."), "example.co.uk");
        assert_eq!(normalize_name("  Acme \n Corp "), "Acme Corp");
    }

    #[test]
    fn status_reflects_failures() {
        let mut r = EntityReport {
            completed: vec!["text".into()],
            ..Default::default()
        };
        assert_eq!(r.status(), EntitiesStatus::Complete);
        r.failures.push("json-ld block 1: bad".into());
        assert_eq!(r.status(), EntitiesStatus::Partial);
        r.completed.clear();
        assert_eq!(r.status(), EntitiesStatus::Failed);
    }
}
