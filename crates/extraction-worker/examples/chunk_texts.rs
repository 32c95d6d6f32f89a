//! What the model reads of a corpus: every page through the worker's analysis (extraction
//! and chunking, no database), each chunk's embedding text (title and headings, then the
//! chunk) counted in the model's word pieces, and a sample of those texts written out for
//! the embedding benchmarks.
//!
//! ```sh
//! deploy/local/install-model.sh
//! cargo run --release -p extraction-worker --example chunk_texts -- <corpus dir> \
//!     [--max-chars N] [--overlap N] [--sample N] [--out FILE]
//! ```
//!
//! `--max-chars` and `--overlap` default to the `[extraction]` settings; `--sample` (default
//! 256) texts, spread evenly over the corpus in page order, are written to `--out` (one JSON
//! string per line) for `minilm_bench` and `minilm_bench_st.py`. Model directory:
//! `MINILM_MODEL_DIR`, else `embedding.minilm.model_dir`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use embedder::{MiniLmConfig, MiniLmEmbedder, Precision};
use pipeline_core::Settings;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<&str> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let dir = args.first().filter(|a| !a.starts_with("--")).context(
        "usage: chunk_texts <corpus dir> [--max-chars N] [--overlap N] [--sample N] [--out FILE]",
    )?;
    let settings = Settings::load()?;
    let mut opts = extraction_worker::chunk_options(&settings);
    if let Some(v) = flag("--max-chars") {
        opts.max_chars = v.parse()?;
    }
    if let Some(v) = flag("--overlap") {
        opts.overlap_chars = v.parse()?;
    }
    let sample: usize = flag("--sample").map_or(Ok(256), str::parse)?;
    let limits = extraction_worker::limits(&settings);

    let html = Path::new(dir).join("html");
    let dir = if html.is_dir() { html } else { dir.into() };
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    files.sort();
    let (mut texts, mut chunk_chars, mut pages) = (Vec::new(), Vec::new(), 0usize);
    for path in &files {
        let body = String::from_utf8_lossy(&std::fs::read(path)?).into_owned();
        let Ok(a) = extraction_worker::analyze(&body, None, "text/html", opts, &limits) else {
            continue;
        };
        pages += 1;
        for c in &a.chunks {
            chunk_chars.push(c.text.chars().count());
            texts.push(c.embedding_text(a.title.as_deref()));
        }
    }
    anyhow::ensure!(!texts.is_empty(), "no chunks in {}", dir.display());

    let model_dir = std::env::var("MINILM_MODEL_DIR")
        .unwrap_or_else(|_| settings.embedding.minilm.model_dir.clone());
    let model = MiniLmEmbedder::load(&MiniLmConfig {
        model_dir: model_dir.into(),
        max_tokens: settings.embedding.minilm.max_tokens,
        batch_size: 32,
        precision: Precision::F32,
    })?;
    let window = model.max_tokens();
    let tokens = model.token_counts(&texts)?;
    let total: usize = tokens.iter().sum();
    let read: usize = tokens.iter().map(|&t| t.min(window)).sum();
    let over = tokens.iter().filter(|&&t| t > window).count();
    let mut sorted = tokens.clone();
    sorted.sort_unstable();
    let pct = |p: usize| sorted[(sorted.len() - 1) * p / 100];
    let chars: usize = texts.iter().map(|t| t.chars().count()).sum();
    println!(
        "chunks {}/{} chars: {pages} pages, {} chunks ({:.1} a page), chunk text {:.0} chars on average",
        opts.max_chars,
        opts.overlap_chars,
        texts.len(),
        texts.len() as f64 / pages as f64,
        chunk_chars.iter().sum::<usize>() as f64 / chunk_chars.len() as f64,
    );
    println!(
        "embedding texts: {:.2} chars a word piece; word pieces p50 {}, p90 {}, max {}; \
         {over} of {} ({:.1}%) over the {window}-token window; {:.1}% of all word pieces past it \
         (not embedded); {:.0} word pieces read a page",
        chars as f64 / total as f64,
        pct(50),
        pct(90),
        sorted[sorted.len() - 1],
        texts.len(),
        100.0 * over as f64 / texts.len() as f64,
        100.0 * (total - read) as f64 / total as f64,
        read as f64 / pages as f64,
    );
    if let Some(out) = flag("--out") {
        let step = (texts.len() as f64 / sample as f64).max(1.0);
        let mut f = std::io::BufWriter::new(std::fs::File::create(out)?);
        let mut written = 0;
        while written < sample && ((written as f64 * step) as usize) < texts.len() {
            let t = &texts[(written as f64 * step) as usize];
            writeln!(f, "{}", serde_json::to_string(t)?)?;
            written += 1;
        }
        f.flush()?;
        println!("wrote {written} texts to {out}");
    }
    Ok(())
}
