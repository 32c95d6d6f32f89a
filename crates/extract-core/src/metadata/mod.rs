//! What a page says about itself: title, authors, dates, language, site, description,
//! canonical URL and main image. Read from the page's one parse before Readability mutates
//! it, then completed from the main content (its `<time>` elements, its text's language).
//!
//! Each field takes the first source, in the order below, that gives a usable value (a
//! date that parses, a URL that resolves to http(s), a language tag of the right shape):
//!
//! | field | sources, most preferred first |
//! |---|---|
//! | `title` | the extracted title ([`crate::Extracted::title`]) |
//! | `authors` | JSON-LD article `author`/`creator`; `<meta name=author>`, `article:author` (not a URL), `dc.creator`, `dcterms.creator`, `citation_author` (every one), `parsely-author`, `sailthru.author`, `byl`; a visible byline: the first element marked `rel=author` or `itemprop=author`, or whose class or id contains `byline`, `author` or `writtenby`, with 2 to 100 characters, outside navigation, side columns, comments and footers |
//! | `published` | JSON-LD `datePublished` (`dateCreated`); `article:published_time`, `og:published_time`, `itemprop=datePublished`, `parsely-pub-date`, `sailthru.date`, `citation_publication_date`, `citation_date`, `citation_online_date`, `dc.date.issued`, `dcterms.issued`, `dc.date`, `dcterms.date`, `dcterms.created`, `dc.date.created`, `date`, `pubdate`, `publishdate`, `publish-date`, `publication_date`; the first `<time datetime>` of the main content; a `<time pubdate>` anywhere |
//! | `modified` | JSON-LD `dateModified`; `article:modified_time`, `og:updated_time`, `itemprop=dateModified`, `dcterms.modified`, `dc.date.modified`, `last-modified` |
//! | `language` | declared: `<html lang>` (`xml:lang`), `Content-Language` (`http-equiv`), `og:locale`, JSON-LD `inLanguage`, `dc.language`, `language`; else detected in the main text |
//! | `site_name` | `og:site_name`; JSON-LD `WebSite` name; JSON-LD article `publisher` name; `application-name` |
//! | `description` | `<meta name=description>`, `og:description`, `twitter:description`, JSON-LD `description`, `dc.description`, `dcterms.description`, `dcterms.abstract`; else the first paragraph of the main text (cut near 300 characters) |
//! | `canonical_url` | `<link rel=canonical>`, `og:url`, JSON-LD `url` / `mainEntityOfPage` |
//! | `image` | `og:image:secure_url`, `og:image`, `og:image:url`, `twitter:image`, `twitter:image:src`, JSON-LD `image`, `<link rel=image_src>`, `itemprop=image` |
//!
//! Meta names match case-insensitively and `dc:`/`dcterms:` are read like `dc.`/`dcterms.`.
//! URLs resolve against the page's `<base href>` and URL. Hostile input stays bounded: at
//! most [`MAX_METAS`] meta elements and [`MAX_VALUE_CHARS`] characters per value are read,
//! JSON-LD blocks over 256 KiB are skipped, at most [`MAX_AUTHORS`] authors are kept, and
//! dates outside the years 1800 to 2200 are refused.

mod dates;
mod jsonld;
mod language;

pub use dates::parse_date;

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset};
use dom_query::{Document, NodeRef};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::blocks::{Block, BlockKind};
use crate::limits::{Budget, TooExpensive};

/// Most `<meta>` elements read per page.
pub const MAX_METAS: usize = 2_000;
/// Longest value kept, in characters (longer values are cut).
pub const MAX_VALUE_CHARS: usize = 2_000;
/// Most authors kept.
pub const MAX_AUTHORS: usize = 20;
/// Length of a description taken from the main text, in characters (cut at a word).
const EXCERPT_CHARS: usize = 300;
/// Bounds of a visible byline, in characters.
const BYLINE_CHARS: std::ops::RangeInclusive<usize> = 2..=100;

/// What a page says about itself. See the module documentation for where each field comes
/// from and in which order the sources are preferred.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metadata {
    /// The document's title (the same as [`crate::Extracted::title`]).
    pub title: Option<String>,
    /// Authors' names, in the page's order.
    pub authors: Vec<String>,
    /// The authors as one line (`"Ada Lovelace, Charles Babbage"`).
    pub byline: Option<String>,
    /// When the page was first published, with the offset it was written with (UTC when it
    /// gave none; midnight UTC for a date alone).
    pub published: Option<DateTime<FixedOffset>>,
    /// When the page was last modified, as `published`.
    pub modified: Option<DateTime<FixedOffset>>,
    /// The language of the page, declared or detected.
    pub language: Option<Language>,
    /// The site's or publication's name.
    pub site_name: Option<String>,
    /// A description of the page: declared, or the start of the main text.
    pub description: Option<String>,
    /// The page's canonical address, absolute.
    pub canonical_url: Option<Url>,
    /// The page's main image, absolute.
    pub image: Option<Url>,
}

/// A language tag, and whether the page declared it or it was detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Language {
    /// A BCP 47 tag as declared (`en-US`, `pt-BR`), or the ISO 639-1 code of a detected
    /// language (ISO 639-3 where it has none).
    pub tag: String,
    /// Where the tag comes from.
    pub source: LanguageSource,
}

/// Where a [`Language`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LanguageSource {
    /// The page declared it (`<html lang>`, `Content-Language`, `og:locale`, JSON-LD).
    Declared,
    /// Detected in the main text (whatlang).
    Detected,
}

/// What the page's markup offers, read before an extractor mutates the page.
#[derive(Debug, Default)]
pub(crate) struct PageMeta {
    /// Meta values by lower-cased name/property/itemprop/http-equiv, in page order.
    metas: HashMap<String, Vec<String>>,
    jsonld: jsonld::JsonLdMeta,
    html_lang: Option<String>,
    canonical: Option<String>,
    image_src: Option<String>,
    byline: Option<String>,
    /// `datetime` of `<time pubdate>` elements.
    pubdate_times: Vec<String>,
    base: Option<Url>,
}

/// The main content, as far as metadata needs it.
pub(crate) struct MainContent<'a> {
    /// The extracted title.
    pub title: Option<String>,
    /// The whole main text.
    pub text: &'a str,
    /// The first paragraph of the main text.
    pub first_paragraph: Option<&'a str>,
    /// `datetime` values of the main content's `<time>` elements, in order.
    pub times: Vec<String>,
}

impl<'a> MainContent<'a> {
    /// The main content of `text` cut into `blocks`, with its `<time datetime>` values.
    pub(crate) fn new(
        title: Option<String>,
        text: &'a str,
        blocks: &'a [Block],
        times: Vec<String>,
    ) -> Self {
        Self {
            title,
            text,
            first_paragraph: blocks
                .iter()
                .find(|b| b.kind == BlockKind::Paragraph)
                .map(|b| b.text.as_str()),
            times,
        }
    }
}

/// Metadata of a text document: its title, the language of its text, its first paragraph.
pub(crate) fn for_text(title: Option<String>, text: &str, blocks: &[Block]) -> Metadata {
    PageMeta::default().finish(&MainContent::new(title, text, blocks, Vec::new()))
}

impl PageMeta {
    /// Reads what `doc` offers in one walk over it; `jsonld_blocks` are its JSON-LD blocks,
    /// `base` its base URL.
    pub(crate) fn from_document(
        doc: &Document,
        jsonld_blocks: &[String],
        base: Option<Url>,
        budget: &mut Budget,
    ) -> Result<Self, TooExpensive> {
        let mut page = Self {
            jsonld: jsonld::read(jsonld_blocks, budget)?,
            base,
            ..Self::default()
        };
        let mut metas_read = 0usize;
        // Document order (children pushed in reverse), so the first byline is the first.
        let mut stack: Vec<(NodeRef, bool)> = vec![(doc.root(), false)];
        while let Some((node, body)) = stack.pop() {
            budget.spend(1, "reading the page's metadata")?;
            if !node.is_element() && !node.is_document() {
                continue;
            }
            let name = crate::markdown::element_name(&node);
            match name.as_str() {
                "script" | "style" | "noscript" | "template" | "svg" => continue,
                "html" if page.html_lang.is_none() => {
                    page.html_lang = node
                        .attr("lang")
                        .or_else(|| node.attr("xml:lang"))
                        .map(|l| cap(l.trim()));
                }
                "meta" => {
                    metas_read += 1;
                    if metas_read <= MAX_METAS {
                        page.read_meta(&node, budget)?;
                    }
                    continue;
                }
                "link" => {
                    let rel = node.attr("rel").unwrap_or_default().to_ascii_lowercase();
                    let href = node.attr("href").map(|h| cap(h.trim()));
                    for word in rel.split_whitespace() {
                        match word {
                            "canonical" if page.canonical.is_none() => {
                                page.canonical = href.clone()
                            }
                            "image_src" if page.image_src.is_none() => {
                                page.image_src = href.clone()
                            }
                            _ => {}
                        }
                    }
                    continue;
                }
                "time" if node.has_attr("pubdate") && page.pubdate_times.len() < 8 => {
                    if let Some(d) = node.attr("datetime") {
                        page.pubdate_times.push(cap(d.trim()));
                    }
                }
                _ => {}
            }
            if let Some(props) = node.attr("itemprop") {
                page.read_microdata(&node, &props);
            }
            // Inside `<body>` and outside navigation and side content, where a byline may be.
            let body = (body || name == "body") && !unlikely_byline_container(&node, &name);
            if body && page.byline.is_none() && is_byline(&node) {
                page.byline = byline_text(&node);
            }
            stack.extend(node.children_it(true).map(|c| (c, body)));
        }
        Ok(page)
    }

    fn read_meta(&mut self, node: &NodeRef, budget: &mut Budget) -> Result<(), TooExpensive> {
        let Some(content) = node.attr("content").map(|c| cap(&tidy(&c))) else {
            return Ok(());
        };
        if content.is_empty() {
            return Ok(());
        }
        for attr in ["property", "name", "itemprop", "http-equiv"] {
            let Some(keys) = node.attr(attr) else {
                continue;
            };
            for key in keys.split_whitespace() {
                let key = normalize_key(key);
                budget.spend((key.len() + content.len()) as u64, "reading meta elements")?;
                let values = self.metas.entry(key).or_default();
                if values.len() < MAX_AUTHORS {
                    values.push(content.clone());
                }
            }
        }
        Ok(())
    }

    /// Microdata on visible elements: the value is in `content`, `datetime`, `src` or the
    /// text.
    fn read_microdata(&mut self, node: &NodeRef, props: &str) {
        for prop in props.split_whitespace() {
            let key = match prop {
                "datePublished" => "datepublished",
                "dateModified" => "datemodified",
                "image" => "image",
                _ => continue,
            };
            let value = node
                .attr("content")
                .or_else(|| node.attr("datetime"))
                .or_else(|| node.attr("src"))
                .map(|v| v.to_string())
                .unwrap_or_else(|| bounded_text(node));
            let value = cap(&tidy(&value));
            let values = self.metas.entry(key.to_string()).or_default();
            if !value.is_empty() && values.len() < 8 {
                values.push(value);
            }
        }
    }

    /// The page's metadata, completed from its main content.
    pub(crate) fn finish(&self, main: &MainContent) -> Metadata {
        let ld = &self.jsonld;
        let mut authors = ld.authors.clone();
        if authors.is_empty() {
            authors = self.meta_authors();
        }
        if authors.is_empty()
            && let Some(byline) = &self.byline
        {
            authors = split_authors(byline);
        }
        authors.retain(|a| !a.is_empty());
        authors.dedup();
        authors.truncate(MAX_AUTHORS);
        let byline = (!authors.is_empty()).then(|| authors.join(", "));

        let published = ld
            .published
            .iter()
            .chain(self.all(&[
                "article:published_time",
                "og:published_time",
                "og:article:published_time",
                "datepublished",
                "parsely-pub-date",
                "sailthru.date",
                "citation_publication_date",
                "citation_date",
                "citation_online_date",
                "dc.date.issued",
                "dcterms.issued",
                "dc.date",
                "dcterms.date",
                "dcterms.created",
                "dc.date.created",
                "date",
                "pubdate",
                "publishdate",
                "publish-date",
                "publication_date",
            ]))
            .chain(main.times.iter())
            .chain(self.pubdate_times.iter())
            .find_map(|d| dates::parse_date(d));
        let modified = ld
            .modified
            .iter()
            .chain(self.all(&[
                "article:modified_time",
                "og:updated_time",
                "datemodified",
                "dcterms.modified",
                "dc.date.modified",
                "last-modified",
            ]))
            .find_map(|d| dates::parse_date(d));

        let declared = self
            .html_lang
            .iter()
            .chain(self.all(&["content-language", "og:locale"]))
            .chain(ld.language.iter())
            .chain(self.all(&["dc.language", "dcterms.language", "language"]))
            .find_map(|l| language::declared_tag(l));
        let language = match declared {
            Some(tag) => Some(Language {
                tag,
                source: LanguageSource::Declared,
            }),
            None => language::detect(main.text).map(|tag| Language {
                tag,
                source: LanguageSource::Detected,
            }),
        };

        let site_name = self
            .first(&["og:site_name"])
            .or_else(|| ld.website.clone())
            .or_else(|| ld.publisher.clone())
            .or_else(|| self.first(&["application-name"]));
        let description = self
            .first(&["description", "og:description", "twitter:description"])
            .or_else(|| ld.description.clone())
            .or_else(|| self.first(&["dc.description", "dcterms.description", "dcterms.abstract"]))
            .or_else(|| main.first_paragraph.map(excerpt));
        let canonical_url = self
            .canonical
            .iter()
            .chain(self.all(&["og:url"]))
            .chain(ld.url.iter())
            .find_map(|u| self.absolute(u));
        let image = self
            .all(&[
                "og:image:secure_url",
                "og:image",
                "og:image:url",
                "twitter:image",
                "twitter:image:src",
            ])
            .chain(ld.image.iter())
            .chain(self.image_src.iter())
            .chain(self.all(&["image"]))
            .find_map(|u| self.absolute(u));
        Metadata {
            title: main.title.clone(),
            authors,
            byline,
            published,
            modified,
            language,
            site_name,
            description,
            canonical_url,
            image,
        }
    }

    fn meta_authors(&self) -> Vec<String> {
        for key in [
            "author",
            "article:author",
            "dc.creator",
            "dcterms.creator",
            "citation_author",
            "parsely-author",
            "sailthru.author",
            "byl",
        ] {
            let Some(values) = self.metas.get(key) else {
                continue;
            };
            let names: Vec<String> = values
                .iter()
                // `article:author` is often a profile URL, which names no one.
                .filter(|v| !looks_like_url(v))
                .flat_map(|v| {
                    if key == "citation_author" {
                        vec![v.clone()]
                    } else {
                        split_authors(v)
                    }
                })
                .collect();
            if !names.is_empty() {
                return names;
            }
        }
        Vec::new()
    }

    /// Every value of the given meta keys, keys in the order given.
    fn all<'s>(&'s self, keys: &'s [&'s str]) -> impl Iterator<Item = &'s String> + 's {
        keys.iter().filter_map(|k| self.metas.get(*k)).flatten()
    }

    fn first(&self, keys: &[&str]) -> Option<String> {
        self.all(keys).next().cloned()
    }

    fn absolute(&self, raw: &str) -> Option<Url> {
        let raw = raw.trim();
        let url = match &self.base {
            Some(base) => base.join(raw).ok()?,
            None => Url::parse(raw).ok()?,
        };
        matches!(url.scheme(), "http" | "https").then_some(url)
    }
}

/// `dc:creator`, `DC.Creator` and `dcterms:created` read as `dc.creator` and so on.
fn normalize_key(key: &str) -> String {
    let key = key.trim().to_ascii_lowercase();
    for (prefix, to) in [
        ("dc:", "dc."),
        ("dcterms:", "dcterms."),
        ("dcterm:", "dcterms."),
        ("dcterm.", "dcterms."),
    ] {
        if let Some(rest) = key.strip_prefix(prefix) {
            return format!("{to}{rest}");
        }
    }
    key
}

/// The byline an element shows, when it is one: 2 to 100 characters of text (its
/// `itemprop=name` part when it has one). A longer element (an author's biography box) is
/// not one, though an element inside it may be.
fn byline_text(node: &NodeRef) -> Option<String> {
    let own = tidy(&bounded_text(node));
    if own.is_empty() || own.chars().count() > *BYLINE_CHARS.end() * 2 {
        return None;
    }
    let name_text = node
        .descendants_it()
        .take(200)
        .find(|d| {
            d.is_element()
                && d.attr("itemprop")
                    .is_some_and(|p| p.split_whitespace().any(|t| t == "name"))
        })
        .map(|n| tidy(&bounded_text(&n)))
        .filter(|t| !t.is_empty());
    let text = strip_by(&name_text.unwrap_or(own));
    BYLINE_CHARS.contains(&text.chars().count()).then_some(text)
}

/// Whether an element is marked as a byline: `rel=author`, `itemprop=author`, or a class or
/// id naming a byline or an author (`byline`, `author`, `writtenby`, as Readability looks
/// for them).
fn is_byline(node: &NodeRef) -> bool {
    let has_token = |attr: &str, token: &str| {
        node.attr(attr)
            .is_some_and(|v| v.split_whitespace().any(|t| t.eq_ignore_ascii_case(token)))
    };
    if has_token("rel", "author") || has_token("itemprop", "author") {
        return true;
    }
    ["class", "id"].iter().any(|a| {
        node.attr(a).is_some_and(|v| {
            // "authorization" (a sign-in box) names no author.
            let v = v.to_ascii_lowercase().replace("authoriz", "");
            ["byline", "author", "writtenby"]
                .iter()
                .any(|w| v.contains(w))
        })
    })
}

/// Navigation, side columns, comments and footers: an "author" there is a commenter, a
/// list of columnists or a sign-in link, not the page's byline (Readability drops such
/// "unlikely candidates" before it looks for one).
fn unlikely_byline_container(node: &NodeRef, name: &str) -> bool {
    if matches!(name, "nav" | "aside" | "footer" | "form") {
        return true;
    }
    if matches!(name, "html" | "body" | "main" | "article") {
        return false;
    }
    let names = |words: &[&str]| {
        ["class", "id"].iter().any(|a| {
            node.attr(a).is_some_and(|v| {
                let v = v.to_ascii_lowercase();
                words.iter().any(|w| v.contains(w))
            })
        })
    };
    // As Readability: a container that also says it holds the article is kept.
    names(&[
        "sidebar", "aside", "comment", "footer", "menu", "nav", "related", "share", "social",
    ]) && !names(&["article", "content", "main", "body", "column"])
}

/// The text of a node, at most a little more than a byline can hold (an author box with a
/// whole biography is cut, then refused by length).
fn bounded_text(node: &NodeRef) -> String {
    let mut out = String::new();
    for d in node.descendants_it() {
        if d.is_text() {
            out.push_str(&d.text());
            if out.len() > MAX_VALUE_CHARS {
                break;
            }
        }
    }
    out
}

/// Drops a leading "By", "By:", "Written by" and similar.
fn strip_by(s: &str) -> String {
    let lower = s.to_lowercase();
    for prefix in [
        "written by",
        "posted by",
        "by:",
        "by ",
        "von ",
        "par ",
        "por ",
    ] {
        if lower.starts_with(prefix) && s.is_char_boundary(prefix.len()) {
            return s[prefix.len()..].trim().to_string();
        }
    }
    s.to_string()
}

/// Splits "A, B and C" into names; a list whose parts are single words ("Doe, Jane") is
/// one name.
fn split_authors(s: &str) -> Vec<String> {
    let s = strip_by(&tidy(s));
    let parts: Vec<String> = s
        .split([',', ';', '&'])
        .flat_map(|p| p.split(" and "))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if parts.len() > 1 && parts.iter().all(|p| p.split_whitespace().count() >= 2) {
        parts.into_iter().map(|p| cap(&p)).collect()
    } else if s.is_empty() {
        Vec::new()
    } else {
        vec![cap(&s)]
    }
}

fn looks_like_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("//")
}

/// The start of the main text, cut at a word near [`EXCERPT_CHARS`].
fn excerpt(paragraph: &str) -> String {
    let text = tidy(paragraph);
    if text.chars().count() <= EXCERPT_CHARS {
        return text;
    }
    let cut: String = text.chars().take(EXCERPT_CHARS).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > EXCERPT_CHARS / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end_matches([',', ';', ':', ' ']))
}

/// Whitespace collapsed, trimmed.
pub(crate) fn tidy(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most [`MAX_VALUE_CHARS`] characters.
fn cap(s: &str) -> String {
    match s.char_indices().nth(MAX_VALUE_CHARS) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// The page's base URL: its `<base href>` resolved against `page_url`, else `page_url`.
pub(crate) fn base_url(doc: &Document, page_url: Option<&str>) -> Option<Url> {
    let page = page_url.and_then(|u| Url::parse(u).ok());
    let base_href = doc
        .select("base[href]")
        .nodes()
        .first()
        .and_then(|n| n.attr("href"))
        .map(|h| h.trim().to_string());
    let resolved = match (&page, base_href) {
        (Some(p), Some(h)) => p.join(&h).ok(),
        (None, Some(h)) => Url::parse(&h).ok(),
        _ => None,
    };
    resolved
        .or(page)
        .filter(|u| matches!(u.scheme(), "http" | "https"))
}

#[cfg(test)]
mod tests;
