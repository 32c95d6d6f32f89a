//! Article metadata from JSON-LD: the first article-like object (`Article`, `NewsArticle`,
//! `BlogPosting`, any `*Article` or `*Posting`, `Report`), else the first `WebPage`-like
//! one, found in top-level objects, arrays and `@graph`; `@id` references (Yoast's graph
//! names its author and publisher that way) are followed once.
//!
//! Bounded: a block over [`MAX_BLOCK_BYTES`] is not parsed, at most [`MAX_BLOCKS`] blocks
//! and [`MAX_OBJECTS`] typed objects are looked at, and serde_json refuses nesting over 128.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::entities::clean_jsonld_block;
use crate::limits::{Budget, TooExpensive};

/// Largest JSON-LD block read for metadata.
pub(crate) const MAX_BLOCK_BYTES: usize = 256 * 1024;
/// Most JSON-LD blocks read per page.
const MAX_BLOCKS: usize = 32;
/// Most typed objects collected per page.
const MAX_OBJECTS: usize = 512;
/// How deep objects are looked for (graphs and lists of them are shallow).
const MAX_WALK_DEPTH: usize = 6;

/// What the page's JSON-LD says about it; strings as written (entities decoded).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct JsonLdMeta {
    pub headline: Option<String>,
    pub authors: Vec<String>,
    pub published: Option<String>,
    pub modified: Option<String>,
    pub description: Option<String>,
    pub publisher: Option<String>,
    pub website: Option<String>,
    pub language: Option<String>,
    pub url: Option<String>,
    pub image: Option<String>,
}

/// Reads the metadata of the page's JSON-LD blocks.
pub(crate) fn read(blocks: &[String], budget: &mut Budget) -> Result<JsonLdMeta, TooExpensive> {
    let mut objects: Vec<Map<String, Value>> = Vec::new();
    for raw in blocks.iter().take(MAX_BLOCKS) {
        if raw.len() > MAX_BLOCK_BYTES {
            continue;
        }
        budget.spend(raw.len() as u64, "JSON-LD metadata")?;
        // A block that does not parse is skipped; entity finding reports it.
        if let Ok(v) = serde_json::from_str::<Value>(&clean_jsonld_block(raw)) {
            collect(v, &mut objects, 0);
        }
    }
    let by_id: HashMap<String, usize> = objects
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            o.get("@id")
                .and_then(Value::as_str)
                .map(|id| (id.to_string(), i))
        })
        .collect();
    let deref = |v: &Value| -> Value {
        if let Value::Object(m) = v
            && m.len() == 1
            && let Some(id) = m.get("@id").and_then(Value::as_str)
            && let Some(&i) = by_id.get(id)
        {
            return Value::Object(objects[i].clone());
        }
        v.clone()
    };

    let mut out = JsonLdMeta::default();
    let article = objects
        .iter()
        .find(|o| types(o).any(is_article))
        .or_else(|| objects.iter().find(|o| types(o).any(is_web_page)));
    if let Some(a) = article {
        out.headline = string(a.get("headline")).or_else(|| string(a.get("name")));
        if let Some(author) = a.get("author").or_else(|| a.get("creator")) {
            let author = match author {
                Value::Array(items) => Value::Array(items.iter().map(deref).collect()),
                other => deref(other),
            };
            out.authors = names(&author);
        }
        out.published = string(a.get("datePublished")).or_else(|| string(a.get("dateCreated")));
        out.modified = string(a.get("dateModified"));
        out.description = string(a.get("description"));
        out.publisher = a
            .get("publisher")
            .map(|p| match p {
                Value::Array(items) => items.first().map(&deref).unwrap_or(Value::Null),
                other => deref(other),
            })
            .and_then(|p| names(&p).into_iter().next());
        out.language = string(a.get("inLanguage")).or_else(|| {
            a.get("inLanguage")
                .and_then(|l| l.get("alternateName").or_else(|| l.get("name")))
                .and_then(|v| string(Some(v)))
        });
        out.url = string(a.get("url")).or_else(|| match a.get("mainEntityOfPage") {
            Some(Value::Object(m)) => string(m.get("@id")).or_else(|| string(m.get("url"))),
            other => string(other),
        });
        out.image = a.get("image").and_then(|i| image(&deref(i)));
    }
    out.website = objects
        .iter()
        .find(|o| types(o).any(|t| t == "WebSite"))
        .and_then(|o| string(o.get("name")));
    if out.language.is_none() {
        out.language = objects.iter().find_map(|o| string(o.get("inLanguage")));
    }
    Ok(out)
}

/// Typed objects of `v`, from top-level objects, lists and `@graph`s.
fn collect(v: Value, out: &mut Vec<Map<String, Value>>, depth: usize) {
    if depth > MAX_WALK_DEPTH || out.len() >= MAX_OBJECTS {
        return;
    }
    match v {
        Value::Array(items) => items.into_iter().for_each(|i| collect(i, out, depth + 1)),
        Value::Object(mut map) => {
            let graph = map.remove("@graph");
            if map.contains_key("@type") {
                out.push(map);
            }
            if let Some(g) = graph {
                collect(g, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// The `@type`s of an object, without a schema.org prefix.
fn types(o: &Map<String, Value>) -> impl Iterator<Item = &str> {
    let list: Vec<&str> = match o.get("@type") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    list.into_iter()
        .map(|t| t.rsplit(['/', '#', ':']).next().unwrap_or(t))
}

fn is_article(t: &str) -> bool {
    t.ends_with("Article") || t.ends_with("Posting") || matches!(t, "Report" | "Review" | "Recipe")
}

fn is_web_page(t: &str) -> bool {
    t.ends_with("Page")
}

/// Names of people or organisations: a string, an object's `name` (or given and family
/// names), or a list of those.
fn names(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => clean(s).into_iter().collect(),
        Value::Array(items) => items.iter().take(50).flat_map(names).collect(),
        Value::Object(m) => string(m.get("name"))
            .or_else(|| {
                let given = string(m.get("givenName")).unwrap_or_default();
                let family = string(m.get("familyName")).unwrap_or_default();
                clean(&format!("{given} {family}"))
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// An image URL: a string, an `ImageObject`'s `url`/`contentUrl`, or the first of a list.
fn image(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => clean(s),
        Value::Array(items) => items.iter().find_map(image),
        Value::Object(m) => string(m.get("url")).or_else(|| string(m.get("contentUrl"))),
        _ => None,
    }
}

/// A string value, the first of a list, or an `{"@value": ...}` literal; entities decoded,
/// whitespace collapsed.
fn string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => clean(s),
        Value::Array(items) => items.iter().find_map(|i| string(Some(i))),
        Value::Object(m) => string(m.get("@value")),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn clean(s: &str) -> Option<String> {
    let s = crate::entities::decode_jsonld_entities(s);
    let s = super::tidy(&s);
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(blocks: &[&str]) -> JsonLdMeta {
        let blocks: Vec<String> = blocks.iter().map(|s| s.to_string()).collect();
        read(&blocks, &mut Budget::unlimited()).unwrap()
    }

    #[test]
    fn article_fields_with_authors_in_every_shape() {
        let m = meta(&[r#"{"@context":"https://schema.org","@type":"NewsArticle",
            "headline":"Floods","datePublished":"2020-01-02T03:04:05+01:00",
            "dateModified":"2020-01-03","author":[{"@type":"Person","name":"Ada Lovelace"},
            "Charles Babbage",{"givenName":"Grace","familyName":"Hopper"}],
            "publisher":{"@type":"Organization","name":"The Daily &amp; Co"},
            "inLanguage":"en-GB","image":[{"@type":"ImageObject","url":"/a.jpg"}],
            "mainEntityOfPage":{"@id":"https://news.test/floods"}}"#]);
        assert_eq!(m.headline.as_deref(), Some("Floods"));
        assert_eq!(
            m.authors,
            ["Ada Lovelace", "Charles Babbage", "Grace Hopper"]
        );
        assert_eq!(m.published.as_deref(), Some("2020-01-02T03:04:05+01:00"));
        assert_eq!(m.modified.as_deref(), Some("2020-01-03"));
        assert_eq!(m.publisher.as_deref(), Some("The Daily & Co"));
        assert_eq!(m.language.as_deref(), Some("en-GB"));
        assert_eq!(m.image.as_deref(), Some("/a.jpg"));
        assert_eq!(m.url.as_deref(), Some("https://news.test/floods"));
    }

    #[test]
    fn graph_references_and_website_name() {
        let m = meta(&[r#"{"@context":"https://schema.org","@graph":[
            {"@type":"WebSite","@id":"https://b.test/#site","name":"B Blog"},
            {"@type":"WebPage","@id":"https://b.test/p#page","name":"Page name"},
            {"@type":"Person","@id":"https://b.test/#me","name":"Jo Writer"},
            {"@type":["BlogPosting"],"headline":"Post","author":{"@id":"https://b.test/#me"},
             "publisher":{"@id":"https://b.test/#org"}},
            {"@type":"Organization","@id":"https://b.test/#org","name":"B Inc"}]}"#]);
        assert_eq!(m.headline.as_deref(), Some("Post"));
        assert_eq!(m.authors, ["Jo Writer"]);
        assert_eq!(m.publisher.as_deref(), Some("B Inc"));
        assert_eq!(m.website.as_deref(), Some("B Blog"));
    }

    #[test]
    fn a_web_page_serves_when_there_is_no_article_and_bad_blocks_are_skipped() {
        let m = meta(&[
            r#"{"@type": "Person", "name": "#,
            r#"[{"@type":"BreadcrumbList"},{"@type":"AboutPage","name":"About us","description":"Who we are"}]"#,
        ]);
        assert_eq!(m.headline.as_deref(), Some("About us"));
        assert_eq!(m.description.as_deref(), Some("Who we are"));
    }

    #[test]
    fn hostile_blocks_stay_bounded() {
        // Too big to read, nested past serde_json's limit, and a wide graph.
        let huge = format!(
            r#"{{"@type":"Article","headline":"{}"}}"#,
            "x".repeat(MAX_BLOCK_BYTES)
        );
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let wide = format!(
            r#"{{"@graph":[{}]}}"#,
            vec![r#"{"@type":"Thing"}"#; 10_000].join(",")
        );
        let m = meta(&[&huge, &deep, &wide]);
        assert_eq!(m, JsonLdMeta::default());
    }
}
