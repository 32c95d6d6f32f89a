//! Measures extraction quality and speed on a folder of real pages.
//!
//! ```text
//! extract_eval article-extraction <dir> [--json] [--pages] [--embed] [--strategy=S]
//! extract_eval readability <dir> [--json] [--pages] [--embed] [--strategy=S]
//! ```
//!
//! `article-extraction`: a folder with `ground-truth.json` (`{id: {articleBody, url}}`) and
//! `html/<id>.html`, scored with the Article Extraction Benchmark's shingle metric.
//! `readability`: a folder of Mozilla Readability test cases (`<case>/source.html`,
//! `expected.html`, `expected-metadata.json`): title exact-match rate, and the shingle metric
//! of the extracted text against the text of `expected.html`.
//!
//! Speed is wall time of `extract` alone, one page after another on one thread, after an
//! untimed warm-up on five pages. With
//! `--embed`, each page's text is also chunked and embedded with the hashing embedder, and
//! that pipeline's pages/s is reported too. `--strategy=readability|trafilatura` measures one
//! extractor alone (default `combined`); `--pages` lists every page's F1, worst first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use extract_core::metric::{PageScore, score_corpus, score_page};
use extract_core::{ChunkOptions, ExtractOptions, Strategy, chunk, extract_with};

struct Page {
    id: String,
    html: String,
    url: Option<String>,
    truth_text: String,
    truth_title: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let opts = ExtractOptions {
        limits: extract_core::Limits::default(),
        strategy: match args.iter().find_map(|a| a.strip_prefix("--strategy=")) {
            None | Some("combined") => Strategy::Combined,
            Some("readability") => Strategy::Readability,
            Some("trafilatura") => Strategy::Trafilatura,
            Some(other) => bail!("unknown strategy {other:?}"),
        },
    };
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (mode, dir) = match positional.as_slice() {
        [mode, dir] => (mode.as_str(), PathBuf::from(dir)),
        _ => bail!(
            "usage: extract_eval <article-extraction|readability> <dir> [--json] [--pages] [--embed]"
        ),
    };
    let pages = match mode {
        "article-extraction" => load_article_extraction(&dir)?,
        "readability" => load_readability(&dir)?,
        other => bail!("unknown corpus kind {other:?}"),
    };

    // Warm-up, untimed: the first calls compile the extractors' lazily built patterns and
    // selectors, a one-off cost a long-running worker pays once.
    for page in pages.iter().take(5) {
        let _ = extract_with(&page.html, page.url.as_deref(), "text/html", &opts);
    }
    let mut scores = Vec::new();
    let mut per_page = Vec::new();
    let mut extractors: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut title_hits = 0usize;
    let mut title_total = 0usize;
    let mut extract_time = Duration::ZERO;
    let mut failures = 0usize;
    for page in &pages {
        let t0 = Instant::now();
        let result = extract_with(&page.html, page.url.as_deref(), "text/html", &opts);
        extract_time += t0.elapsed();
        let (text, title, extractor) = match result {
            Ok(e) => (e.text, e.title, e.extractor.as_str()),
            Err(_) => {
                failures += 1;
                (String::new(), None, "error")
            }
        };
        *extractors.entry(extractor).or_default() += 1;
        let s = score_page(&page.truth_text, &text);
        scores.push(s);
        let title_ok = page.truth_title.as_ref().map(|want| {
            title_total += 1;
            let ok = title.as_deref().map(str::trim) == Some(want.trim());
            title_hits += usize::from(ok);
            ok
        });
        per_page.push(serde_json::json!({
            "id": page.id, "f1": s.f1(), "precision": s.precision(), "recall": s.recall(),
            "extractor": extractor, "title": title, "expected_title": page.truth_title,
            "title_ok": title_ok,
        }));
    }

    let embed_rate = if flag("--embed") {
        Some(pipeline_rate(&pages, &opts))
    } else {
        None
    };
    let corpus = score_corpus(&scores);
    let rate = pages.len() as f64 / extract_time.as_secs_f64();
    let mut report = serde_json::json!({
        "corpus": mode, "strategy": format!("{:?}", opts.strategy).to_lowercase(),
        "pages": pages.len(), "errors": failures,
        "precision": corpus.precision, "recall": corpus.recall, "f1": corpus.f1,
        "pages_per_sec": rate, "extractors": extractors,
    });
    if title_total > 0 {
        report["title_match_rate"] = (title_hits as f64 / title_total as f64).into();
        report["title_matches"] = title_hits.into();
    }
    if let Some(r) = embed_rate {
        report["pipeline_pages_per_sec"] = r.into();
    }
    if flag("--pages") {
        per_page.sort_by(|a, b| {
            a["f1"]
                .as_f64()
                .partial_cmp(&b["f1"].as_f64())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        report["per_page"] = per_page.into();
    }
    if flag("--json") {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report, &scores);
    }
    Ok(())
}

fn print_human(r: &serde_json::Value, _scores: &[PageScore]) {
    println!(
        "corpus      {} ({} pages, {} errors), strategy {}",
        r["corpus"], r["pages"], r["errors"], r["strategy"]
    );
    println!(
        "shingle     precision {:.4}  recall {:.4}  F1 {:.4}",
        r["precision"].as_f64().unwrap_or(0.0),
        r["recall"].as_f64().unwrap_or(0.0),
        r["f1"].as_f64().unwrap_or(0.0)
    );
    println!(
        "speed       {:.1} pages/s (extract, one thread)",
        r["pages_per_sec"].as_f64().unwrap_or(0.0)
    );
    if let Some(p) = r["pipeline_pages_per_sec"].as_f64() {
        println!("pipeline    {p:.1} pages/s (extract + chunk + hashing embeddings, one thread)");
    }
    if let Some(t) = r["title_match_rate"].as_f64() {
        println!(
            "titles      {:.1}% exact ({} matches)",
            t * 100.0,
            r["title_matches"]
        );
    }
    println!("extractors  {}", r["extractors"]);
    if let Some(pages) = r["per_page"].as_array() {
        for p in pages {
            println!(
                "  {:.3}  {:<12} {}{}",
                p["f1"].as_f64().unwrap_or(0.0),
                p["extractor"].as_str().unwrap_or(""),
                p["id"].as_str().unwrap_or(""),
                match p["title_ok"].as_bool() {
                    Some(false) => format!("  title {:?} != {:?}", p["title"], p["expected_title"]),
                    _ => String::new(),
                }
            );
        }
    }
}

/// Pages per second through extract, chunk and hashing embeddings (one thread).
fn pipeline_rate(pages: &[Page], opts: &ExtractOptions) -> f64 {
    let embedder = embedder::HashingEmbedder::new(embedder::HashingConfig::default());
    let t0 = Instant::now();
    let mut vectors = 0usize;
    for page in pages {
        let Ok(e) = extract_with(&page.html, page.url.as_deref(), "text/html", opts) else {
            continue;
        };
        let chunks = chunk(&e.sections, ChunkOptions::default());
        let texts: Vec<String> = chunks
            .iter()
            .map(|c| c.embedding_text(e.title.as_deref()))
            .collect();
        vectors += embedder.embed_sync(&texts).len();
    }
    let rate = pages.len() as f64 / t0.elapsed().as_secs_f64();
    eprintln!("pipeline: {vectors} chunk vectors");
    rate
}

fn load_article_extraction(dir: &Path) -> anyhow::Result<Vec<Page>> {
    let gt_path = dir.join("ground-truth.json");
    let gt: HashMap<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(&gt_path)
            .with_context(|| format!("reading {}", gt_path.display()))?,
    )?;
    let mut ids: Vec<&String> = gt.keys().collect();
    ids.sort();
    ids.into_iter()
        .map(|id| {
            let v = &gt[id];
            let path = dir.join("html").join(format!("{id}.html"));
            Ok(Page {
                id: id.clone(),
                html: std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?,
                url: v["url"].as_str().map(str::to_string),
                truth_text: v["articleBody"].as_str().unwrap_or_default().to_string(),
                truth_title: None,
            })
        })
        .collect()
}

fn load_readability(dir: &Path) -> anyhow::Result<Vec<Page>> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("source.html").is_file())
        .collect();
    cases.sort();
    cases
        .into_iter()
        .map(|case| {
            let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
                case.join("expected-metadata.json"),
            )?)?;
            let expected = std::fs::read_to_string(case.join("expected.html")).unwrap_or_default();
            // All text of the expected article: what Readability kept, not re-extracted.
            let truth_text =
                extract_core::html::parse_guarded(&expected, &extract_core::Limits::default())?
                    .select("body")
                    .text()
                    .to_string();
            Ok(Page {
                id: case
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                html: std::fs::read_to_string(case.join("source.html"))?,
                // The URL Readability's own tests use for these pages.
                url: Some("http://fakehost/test/page.html".to_string()),
                truth_text,
                truth_title: meta["title"].as_str().map(str::to_string),
            })
        })
        .collect()
}
