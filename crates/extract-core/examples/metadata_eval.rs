//! Measures page metadata and Markdown structure on a folder of Mozilla Readability test
//! cases (`<case>/source.html`, `expected.html`, `expected-metadata.json`).
//!
//! ```text
//! metadata_eval <dir> [--reference=FILE] [--strategy=S] [--json] [--pages]
//! ```
//!
//! `--strategy=readability` renders Readability's output alone, which is what
//! `expected.html` holds, so the Markdown counts then measure the converter rather than the
//! choice between extractors (default `combined`, as the pipeline runs).
//!
//! Metadata, over the pages where the expected value is present (not null, not empty):
//! `publishedTime` matched as an instant (and, separately, as a calendar date), `lang`
//! matched exactly (ASCII case aside), `siteName` matched exactly, and the token F1 of
//! `byline` (lower-cased `\w+` tokens as multisets; a page with no byline scores 0).
//!
//! Markdown structure: headings, list items, table cells and code blocks counted in our
//! Markdown and in `expected.html` (Readability's own output), summed over the corpus; the
//! ratio is ours / expected.
//!
//! `--reference=FILE` scores another tool's metadata on the same pages: one JSON object per
//! line with `case`, `published`, `author`, `sitename`, `language` (what
//! `trafilatura_metadata.py` prints). Its dates are dates alone, so only the calendar date
//! can match.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use extract_core::{
    ExtractOptions, Limits, Strategy, extract_with, html::parse_guarded, metric::tokens,
};
use serde_json::{Value, json};

/// The URL Readability's own tests use for these pages.
const URL: &str = "http://fakehost/test/page.html";

struct Case {
    id: String,
    html: String,
    expected_html: String,
    expected: Value,
}

/// Hits over pages with an expected value, and the sum of a score for F1 averages.
#[derive(Default, Clone, Copy)]
struct Tally {
    pages: usize,
    hits: usize,
    score: f64,
}

impl Tally {
    fn add(&mut self, hit: bool) {
        self.pages += 1;
        self.hits += usize::from(hit);
        self.score += if hit { 1.0 } else { 0.0 };
    }

    fn add_score(&mut self, s: f64) {
        self.pages += 1;
        self.score += s;
        self.hits += usize::from(s >= 0.999);
    }

    fn json(&self) -> Value {
        json!({"pages": self.pages, "hits": self.hits,
               "rate": if self.pages == 0 { 0.0 } else { self.score / self.pages as f64 }})
    }
}

#[derive(Default, Clone, Copy, Debug)]
struct Counts {
    headings: usize,
    list_items: usize,
    table_cells: usize,
    code_blocks: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.headings += o.headings;
        self.list_items += o.list_items;
        self.table_cells += o.table_cells;
        self.code_blocks += o.code_blocks;
    }
}

/// What one tool says about a page.
#[derive(Default)]
struct Found {
    published: Option<DateTime<FixedOffset>>,
    /// The calendar date as written (for tools that give no time).
    published_date: Option<NaiveDate>,
    byline: Option<String>,
    lang: Option<String>,
    site_name: Option<String>,
}

#[derive(Default)]
struct Scores {
    published_instant: Tally,
    published_date: Tally,
    lang: Tally,
    site_name: Tally,
    byline_f1: Tally,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [dir] = positional.as_slice() else {
        bail!("usage: metadata_eval <dir> [--reference=FILE] [--strategy=S] [--json] [--pages]");
    };
    let opts = ExtractOptions {
        strategy: match args.iter().find_map(|a| a.strip_prefix("--strategy=")) {
            None | Some("combined") => Strategy::Combined,
            Some("readability") => Strategy::Readability,
            Some("trafilatura") => Strategy::Trafilatura,
            Some(other) => bail!("unknown strategy {other:?}"),
        },
        limits: Limits::default(),
    };
    let cases = load(Path::new(dir.as_str()))?;
    let reference = match args.iter().find_map(|a| a.strip_prefix("--reference=")) {
        Some(path) => Some(load_reference(Path::new(path))?),
        None => None,
    };

    let mut ours = Scores::default();
    let mut theirs = Scores::default();
    let (mut md_ours, mut md_expected) = (Counts::default(), Counts::default());
    let mut declared = 0usize;
    let mut pages = Vec::new();
    for case in &cases {
        let e = extract_with(&case.html, Some(URL), "text/html", &opts)
            .with_context(|| format!("extracting {}", case.id))?;
        let m = &e.metadata;
        if m.language
            .as_ref()
            .is_some_and(|l| l.source == extract_core::LanguageSource::Declared)
        {
            declared += 1;
        }
        let found = Found {
            published: m.published,
            published_date: m.published.map(|d| d.date_naive()),
            byline: m.byline.clone(),
            lang: m.language.as_ref().map(|l| l.tag.clone()),
            site_name: m.site_name.clone(),
        };
        let page = score(&case.expected, &found, &mut ours);
        if let Some(r) = reference.as_ref().and_then(|r| r.get(&case.id)) {
            score(&case.expected, r, &mut theirs);
        }
        let (a, b) = (
            markdown_counts(&e.markdown),
            html_counts(&case.expected_html)?,
        );
        md_ours += a;
        md_expected += b;
        pages.push(
            json!({"case": case.id, "extractor": e.extractor.as_str(), "metadata": page,
            "markdown": format!("{a:?}"), "expected_html": format!("{b:?}")}),
        );
    }

    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut report = json!({
        "pages": cases.len(),
        "strategy": format!("{:?}", opts.strategy).to_lowercase(),
        "ours": scores_json(&ours),
        "languages_declared": declared,
        "markdown": {
            "headings": [md_ours.headings, md_expected.headings, ratio(md_ours.headings, md_expected.headings)],
            "list_items": [md_ours.list_items, md_expected.list_items, ratio(md_ours.list_items, md_expected.list_items)],
            "table_cells": [md_ours.table_cells, md_expected.table_cells, ratio(md_ours.table_cells, md_expected.table_cells)],
            "code_blocks": [md_ours.code_blocks, md_expected.code_blocks, ratio(md_ours.code_blocks, md_expected.code_blocks)],
        },
    });
    if reference.is_some() {
        report["reference"] = scores_json(&theirs);
    }
    if flag("--pages") {
        report["per_page"] = pages.into();
    }
    if flag("--json") {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(())
}

fn scores_json(s: &Scores) -> Value {
    json!({
        "published_instant": s.published_instant.json(),
        "published_date": s.published_date.json(),
        "lang": s.lang.json(),
        "site_name": s.site_name.json(),
        "byline_f1": s.byline_f1.json(),
    })
}

/// Scores one page's findings against the expected metadata; returns the page's details.
fn score(expected: &Value, found: &Found, s: &mut Scores) -> Value {
    let want = |k: &str| {
        expected[k]
            .as_str()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let mut page = json!({});
    if let Some(t) = want("publishedTime") {
        let truth = parse_expected_time(&t);
        let instant = truth.is_some() && truth == found.published;
        s.published_instant.add(instant);
        let date = truth.map(|d| d.date_naive());
        s.published_date
            .add(date.is_some() && date == found.published_date);
        page["published"] = json!([t, found.published.map(|d| d.to_rfc3339()), instant]);
    }
    if let Some(l) = want("lang") {
        let hit = found
            .lang
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case(&l));
        s.lang.add(hit);
        page["lang"] = json!([l, found.lang, hit]);
    }
    if let Some(n) = want("siteName") {
        let hit = found.site_name.as_deref().map(str::trim) == Some(n.as_str());
        s.site_name.add(hit);
        page["site_name"] = json!([n, found.site_name, hit]);
    }
    if let Some(b) = want("byline") {
        let f1 = token_f1(&b, found.byline.as_deref().unwrap_or(""));
        s.byline_f1.add_score(f1);
        page["byline"] = json!([b, found.byline, f1]);
    }
    page
}

/// Token F1 of two strings: lower-cased `\w+` tokens as multisets.
fn token_f1(truth: &str, predicted: &str) -> f64 {
    let (t, p) = (truth.to_lowercase(), predicted.to_lowercase());
    let (t, p) = (tokens(&t), tokens(&p));
    if t.is_empty() || p.is_empty() {
        return 0.0;
    }
    let mut left: HashMap<&str, usize> = HashMap::new();
    for w in &t {
        *left.entry(w).or_default() += 1;
    }
    let mut shared = 0usize;
    for w in &p {
        if let Some(n) = left.get_mut(w)
            && *n > 0
        {
            *n -= 1;
            shared += 1;
        }
    }
    if shared == 0 {
        return 0.0;
    }
    let precision = shared as f64 / p.len() as f64;
    let recall = shared as f64 / t.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// The corpus writes times as RFC 3339, as `2017-11-03 03:01:00.000000` (UTC) or as a
/// date alone (midnight UTC).
fn parse_expected_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok().or_else(|| {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
            .ok()
            .or_else(|| {
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            })
            .map(|n| Utc.from_utc_datetime(&n).fixed_offset())
    })
}

/// Headings, list items, table cells and code blocks of our Markdown (outside code).
fn markdown_counts(md: &str) -> Counts {
    let mut c = Counts::default();
    let mut fence: Option<String> = None;
    for line in md.lines() {
        let t = line.trim_start();
        let t = t
            .trim_start_matches("> ")
            .trim_start_matches('>')
            .trim_start();
        if let Some(f) = &fence {
            if t.starts_with(f.as_str()) && t.trim_end().chars().all(|ch| ch == '`') {
                fence = None;
            }
            continue;
        }
        if t.starts_with("```") {
            fence = Some(t.chars().take_while(|&ch| ch == '`').collect());
            c.code_blocks += 1;
            continue;
        }
        let hashes = t.bytes().take_while(|&b| b == b'#').count();
        if (1..=6).contains(&hashes) && t[hashes..].starts_with(' ') {
            c.headings += 1;
            continue;
        }
        let digits = t.bytes().take_while(u8::is_ascii_digit).count();
        let bullet = t.starts_with("- ") || t == "-" || t.starts_with("* ") || t.starts_with("+ ");
        let numbered =
            digits > 0 && (t[digits..].starts_with(". ") || t[digits..].starts_with(") "));
        if bullet || numbered {
            c.list_items += 1;
            continue;
        }
        if t.starts_with('|') && !t.starts_with("| ---") && !t.starts_with("|---") {
            // Cells are the unescaped pipes between the outer ones.
            let pipes = t
                .match_indices('|')
                .filter(|(i, _)| *i == 0 || &t[i - 1..*i] != "\\")
                .count();
            c.table_cells += pipes.saturating_sub(1);
            continue;
        }
        c.table_cells +=
            t.matches("<td").count() + t.matches("<th").count() - t.matches("<thead").count();
    }
    c
}

/// The same structures in Readability's expected HTML.
fn html_counts(html: &str) -> anyhow::Result<Counts> {
    let doc = parse_guarded(html, &Limits::default())?;
    let n = |sel: &str| doc.select(sel).length();
    Ok(Counts {
        headings: n("h1, h2, h3, h4, h5, h6"),
        list_items: n("li"),
        table_cells: n("td, th"),
        code_blocks: n("pre"),
    })
}

fn load(dir: &Path) -> anyhow::Result<Vec<Case>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("source.html").is_file())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|case| {
            Ok(Case {
                id: case
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                html: std::fs::read_to_string(case.join("source.html"))?,
                expected_html: std::fs::read_to_string(case.join("expected.html"))
                    .unwrap_or_default(),
                expected: serde_json::from_str(&std::fs::read_to_string(
                    case.join("expected-metadata.json"),
                )?)?,
            })
        })
        .collect()
}

fn load_reference(path: &Path) -> anyhow::Result<HashMap<String, Found>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)?;
        let s = |k: &str| v[k].as_str().map(str::to_string).filter(|s| !s.is_empty());
        let published = s("published").and_then(|d| parse_expected_time(&d));
        out.insert(
            s("case").unwrap_or_default(),
            Found {
                published,
                published_date: s("published").and_then(|d| {
                    NaiveDate::parse_from_str(d.get(..10).unwrap_or(""), "%Y-%m-%d").ok()
                }),
                byline: s("author"),
                lang: s("language"),
                site_name: s("sitename"),
            },
        );
    }
    Ok(out)
}

fn print_human(r: &Value) {
    println!(
        "pages       {} (languages declared on {}), strategy {}",
        r["pages"], r["languages_declared"], r["strategy"]
    );
    let line = |who: &str, s: &Value| {
        let f = |k: &str| {
            if who == "reference" && k == "published_instant" {
                return "n/a (dates only)".to_string();
            }
            format!(
                "{:.3} ({}/{})",
                s[k]["rate"].as_f64().unwrap_or(0.0),
                s[k]["hits"],
                s[k]["pages"]
            )
        };
        println!(
            "{who:<11} published instant {}  date {}  lang {}  site {}  byline F1 {}",
            f("published_instant"),
            f("published_date"),
            f("lang"),
            f("site_name"),
            f("byline_f1")
        );
    };
    line("ours", &r["ours"]);
    if r["reference"].is_object() {
        line("reference", &r["reference"]);
    }
    for k in ["headings", "list_items", "table_cells", "code_blocks"] {
        let v = &r["markdown"][k];
        println!(
            "markdown    {k:<12} ours {:>5}  expected {:>5}  ratio {:.3}",
            v[0],
            v[1],
            v[2].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(pages) = r["per_page"].as_array() {
        for p in pages {
            println!("  {} {} {}", p["case"], p["extractor"], p["metadata"]);
        }
    }
}
