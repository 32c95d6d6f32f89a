//! Measures the markup backend with the `article` template on real pages.
//!
//! ```text
//! cargo run --release -p facts-core --example markup_eval -- <corpus dir> [declared.json]
//! ```
//!
//! The corpus is either the readability corpus (Mozilla Readability's test pages:
//! `<dir>/<page>/source.html` with `expected-metadata.json`) or the article extraction
//! benchmark (`<dir>/html/<id>.html`). Two comparisons, per field (headline, author,
//! published date, publisher or site name, language):
//!
//! - (a) against what the page declares, as read by an independent tool: `declared.json`
//!   written by `examples/extruct_declared.py` (see the crate README). Only values the
//!   backend read from declarations (JSON-LD, microdata, RDFa, OpenGraph, meta) are
//!   judged; precision is per value, recall per page that declares the field.
//! - (b) against the readability corpus's own `expected-metadata.json` (title, byline,
//!   publishedTime, siteName, lang), where it has a value: precision over pages where both
//!   have one, recall over pages where the corpus has one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use facts_core::{Filled, Origin, template};
use serde_json::Value;

const FIELDS: [&str; 5] = ["headline", "author", "published", "publisher", "language"];

#[derive(Default, Clone, Copy)]
struct Score {
    produced: usize,
    correct: usize,
    expected: usize,
    found: usize,
}

impl Score {
    fn precision(&self) -> String {
        ratio(self.correct, self.produced)
    }
    fn recall(&self) -> String {
        ratio(self.found, self.expected)
    }
}

fn ratio(a: usize, b: usize) -> String {
    if b == 0 {
        "n/a".into()
    } else {
        format!("{:.3} ({a}/{b})", a as f64 / b as f64)
    }
}

fn norm(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn day(s: &str) -> Option<String> {
    match facts_core::coerce::parse_date(s)? {
        Value::String(d) => Some(d.chars().take(10).collect()),
        _ => None,
    }
}

fn primary_lang(s: &str) -> String {
    s.trim()
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// How two values of a field compare.
fn same(field: &str, ours: &str, theirs: &str) -> bool {
    match field {
        "published" => day(ours).is_some() && day(ours) == day(theirs),
        "language" => !ours.is_empty() && primary_lang(ours) == primary_lang(theirs),
        _ => !ours.trim().is_empty() && norm(ours) == norm(theirs),
    }
}

fn pages(root: &Path) -> Vec<(String, PathBuf)> {
    let html = root.join("html");
    let mut out = Vec::new();
    if html.is_dir() {
        for e in std::fs::read_dir(&html)
            .expect("corpus html folder")
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "html") {
                let id = p.file_stem().unwrap().to_string_lossy().to_string();
                out.push((id, p));
            }
        }
    } else {
        for e in std::fs::read_dir(root).expect("corpus folder").flatten() {
            let p = e.path().join("source.html");
            if p.is_file() {
                out.push((e.file_name().to_string_lossy().to_string(), p));
            }
        }
    }
    out.sort();
    out
}

/// Our values of a field, with their origins.
fn ours(filled: &Filled, field: &str) -> Vec<(String, Origin)> {
    // The template keeps the site name apart from the publisher; either answers the
    // "publisher / site name" question.
    let fields: &[&str] = if field == "publisher" {
        &["publisher", "site_name"]
    } else {
        std::slice::from_ref(&field)
    };
    for f in fields {
        let v: Vec<(String, Origin)> = filled.records[0]
            .values
            .iter()
            .filter(|v| v.field == *f)
            .map(|v| {
                let s = match &v.value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (s, v.origin)
            })
            .collect();
        if !v.is_empty() {
            return v;
        }
    }
    Vec::new()
}

/// What the independent reader says the page declares for a field.
fn declared(page: &Value, field: &str) -> Vec<String> {
    let list = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let og = |k: &str| list(page.get("og").and_then(|o| o.get(k)));
    let meta = |k: &str| list(page.get("meta").and_then(|o| o.get(k)));
    let mut out = match field {
        "headline" => [
            list(page.get("headline")),
            og("og:title"),
            meta("twitter:title"),
        ]
        .concat(),
        "author" => [
            list(page.get("author")),
            meta("author"),
            og("article:author"),
        ]
        .concat(),
        "published" => [
            list(page.get("datePublished")),
            og("article:published_time"),
            meta("date"),
            meta("pubdate"),
            meta("dc.date"),
        ]
        .concat(),
        "publisher" => [
            list(page.get("publisher")),
            og("og:site_name"),
            meta("application-name"),
        ]
        .concat(),
        "language" => [
            list(page.get("inLanguage")),
            meta("html_lang"),
            og("og:locale"),
            meta("language"),
        ]
        .concat(),
        _ => Vec::new(),
    };
    out.retain(|s| !s.trim().is_empty());
    out
}

fn expected(meta: &Value, field: &str) -> Option<String> {
    let key = match field {
        "headline" => "title",
        "author" => "byline",
        "published" => "publishedTime",
        "publisher" => "siteName",
        "language" => "lang",
        _ => return None,
    };
    meta.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .filter(|s| !s.trim().is_empty())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(
        args.next()
            .expect("usage: markup_eval <corpus dir> [declared.json]"),
    );
    let declared_all: Option<Value> = args.next().map(|p| {
        serde_json::from_str(&std::fs::read_to_string(&p).expect("declared.json"))
            .expect("declared.json is JSON")
    });
    let schema = template("article").expect("article template").schema();
    let limits = extract_core::Limits::default();
    let mut a: BTreeMap<&str, Score> = BTreeMap::new();
    let mut b: BTreeMap<&str, Score> = BTreeMap::new();
    let mut failed = 0usize;
    let mut n = 0usize;
    let started = Instant::now();
    for (id, path) in pages(&root) {
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let html = String::from_utf8_lossy(&bytes);
        n += 1;
        let filled = match facts_core::fill(&schema, &html, None, &limits) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{id}: {e}");
                failed += 1;
                continue;
            }
        };
        if let Some(page) = declared_all.as_ref().and_then(|d| d.get(&id)) {
            for field in FIELDS {
                let theirs = declared(page, field);
                let mine: Vec<String> = ours(&filled, field)
                    .into_iter()
                    .filter(|(_, o)| {
                        matches!(
                            o,
                            Origin::JsonLd
                                | Origin::Microdata
                                | Origin::Rdfa
                                | Origin::OpenGraph
                                | Origin::Meta
                        )
                    })
                    .map(|(s, _)| s)
                    .collect();
                let s = a.entry(field).or_default();
                for m in &mine {
                    s.produced += 1;
                    if theirs.iter().any(|t| same(field, m, t)) {
                        s.correct += 1;
                    } else if std::env::var_os("MARKUP_EVAL_VERBOSE").is_some() {
                        eprintln!("(a) {id} {field}: ours {m:?}, declared {theirs:?}");
                    }
                }
                if !theirs.is_empty() {
                    s.expected += 1;
                    if mine
                        .iter()
                        .any(|m| theirs.iter().any(|t| same(field, m, t)))
                    {
                        s.found += 1;
                    }
                }
            }
        }
        let meta_path = path.with_file_name("expected-metadata.json");
        if let Ok(text) = std::fs::read_to_string(&meta_path)
            && let Ok(meta) = serde_json::from_str::<Value>(&text)
        {
            for field in FIELDS {
                let Some(want) = expected(&meta, field) else {
                    continue;
                };
                let mine: Vec<String> = ours(&filled, field).into_iter().map(|(s, _)| s).collect();
                let hit = mine.iter().any(|m| {
                    if field == "author" {
                        // A byline is free text ("By Ada Lovelace, 3 May"): a name in it
                        // counts.
                        !m.trim().is_empty() && norm(&want).contains(&norm(m))
                    } else {
                        same(field, m, &want)
                    }
                });
                let s = b.entry(field).or_default();
                s.expected += 1;
                if !mine.is_empty() {
                    s.produced += 1;
                }
                if hit {
                    s.found += 1;
                    s.correct += 1;
                } else if !mine.is_empty() && std::env::var_os("MARKUP_EVAL_VERBOSE").is_some() {
                    eprintln!("(b) {id} {field}: ours {mine:?}, expected {want:?}");
                }
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{n} pages, {failed} refused, {:.1} ms per page",
        elapsed.as_secs_f64() * 1000.0 / n.max(1) as f64
    );
    for (title, scores) in [
        ("(a) against the declarations read by extruct", &a),
        ("(b) against the corpus's expected metadata", &b),
    ] {
        if scores.is_empty() {
            continue;
        }
        println!("\n{title}\n\n| field | precision | recall |\n| --- | --- | --- |");
        for field in FIELDS {
            let s = scores.get(field).copied().unwrap_or_default();
            println!("| {field} | {} | {} |", s.precision(), s.recall());
        }
    }
}
