//! Measures PDF text recovery and speed on a folder of PDFs whose text is known.
//!
//! ```text
//! cargo run --release -p extract-core --example pdf_eval -- <dir> [--no-pdftotext] [--pages]
//! ```
//!
//! `<dir>` holds `<name>.pdf` and `<name>.txt` (the text typeset in it), as written by
//! `examples/pdf_corpus.py`; names end in `-<layout>` (`1col`, `2col`, `words`, `kern`,
//! `core`), and figures are given per layout and overall. For each file: token F1 (the
//! multisets of `\w+` tokens, lowercased: every word found, nothing added) and the Article
//! Extraction Benchmark's 4-token shingle F1 (which also scores word order, so a reader that
//! mixes two columns line by line loses there), of `read_pdf`'s pages joined against the
//! known text; the Info title against the file's. The same F1 figures for `pdftotext`
//! (poppler) on the same files, unless `--no-pdftotext` or it is not installed.
//!
//! Speed is the wall time of `read_pdf` alone (default limits), one file after another on
//! one thread; pdftotext's time includes starting a process per file, so it is shown but
//! is not a like-for-like figure. `--pages` lists every file's figures, worst first.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use extract_core::metric::{score_corpus, score_page, tokens};
use extract_core::{Budget, Limits, read_pdf};

#[derive(Default)]
struct Tally {
    files: usize,
    failed: usize,
    token_f1: f64,
    shingles: Vec<extract_core::metric::PageScore>,
}

impl Tally {
    fn add(&mut self, truth: &str, found: Option<&str>) -> f64 {
        self.files += 1;
        let Some(found) = found else {
            self.failed += 1;
            self.shingles.push(score_page(truth, ""));
            return 0.0;
        };
        let f1 = token_f1(truth, found);
        self.token_f1 += f1;
        self.shingles.push(score_page(truth, found));
        f1
    }

    fn line(&self) -> String {
        format!(
            "{:>4} files  token F1 {:.4}  shingle F1 {:.4}  failed {}",
            self.files,
            self.token_f1 / self.files.max(1) as f64,
            score_corpus(&self.shingles).f1,
            self.failed
        )
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let dir = match args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .collect::<Vec<_>>()
        .as_slice()
    {
        [dir] => PathBuf::from(dir),
        _ => bail!("usage: pdf_eval <dir> [--no-pdftotext] [--pages]"),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no PDFs in {}", dir.display());
    }
    let poppler = !flag("--no-pdftotext")
        && Command::new("pdftotext")
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success() || !o.stderr.is_empty());

    let limits = Limits::default();
    let (mut ours, mut theirs) = (
        BTreeMap::<String, Tally>::new(),
        BTreeMap::<String, Tally>::new(),
    );
    let (mut all_ours, mut all_theirs) = (Tally::default(), Tally::default());
    let (mut time, mut poppler_time, mut pages) = (Duration::ZERO, Duration::ZERO, 0usize);
    let (mut titles, mut titles_right) = (0usize, 0usize);
    let mut per_file = Vec::new();
    for pdf in &files {
        let truth = std::fs::read_to_string(pdf.with_extension("txt"))
            .with_context(|| format!("the known text of {}", pdf.display()))?;
        let layout = layout_of(pdf);
        let bytes = std::fs::read(pdf)?;
        let started = Instant::now();
        let read = read_pdf(&bytes, &limits, &mut Budget::new(&limits));
        time += started.elapsed();
        let text = match &read {
            Ok(doc) => {
                pages += doc.pages.len();
                titles += 1;
                let want = truth.lines().next().unwrap_or_default();
                titles_right += usize::from(doc.metadata.title.as_deref() == Some(want));
                Some(doc.pages.join("\n\n"))
            }
            Err(e) => {
                eprintln!("{}: {e}", pdf.display());
                None
            }
        };
        let f1 = ours
            .entry(layout.clone())
            .or_default()
            .add(&truth, text.as_deref());
        all_ours.add(&truth, text.as_deref());
        if poppler {
            let started = Instant::now();
            let out = Command::new("pdftotext").arg(pdf).arg("-").output()?;
            poppler_time += started.elapsed();
            let text = out
                .status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned());
            theirs
                .entry(layout.clone())
                .or_default()
                .add(&truth, text.as_deref());
            all_theirs.add(&truth, text.as_deref());
        }
        per_file.push((f1, pdf.clone()));
    }

    println!("read_pdf (lopdf), {} files, {pages} pages:", files.len());
    for (layout, t) in &ours {
        println!("  {layout:<6} {}", t.line());
    }
    println!("  all    {}", all_ours.line());
    println!(
        "  {:.0} pages/s ({:.1} ms per file), Info title right on {titles_right} of {titles}",
        pages as f64 / time.as_secs_f64(),
        time.as_secs_f64() * 1000.0 / files.len() as f64
    );
    if poppler {
        println!("pdftotext (poppler), same files:");
        for (layout, t) in &theirs {
            println!("  {layout:<6} {}", t.line());
        }
        println!("  all    {}", all_theirs.line());
        println!(
            "  {:.0} pages/s including a process start per file",
            pages as f64 / poppler_time.as_secs_f64()
        );
    }
    if flag("--pages") {
        per_file.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (f1, path) in per_file {
            println!("{f1:.4} {}", path.display());
        }
    }
    Ok(())
}

/// The layout of a corpus file: the part of its name after the last `-`.
fn layout_of(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.rsplit('-').next())
        .unwrap_or("other")
        .to_string()
}

/// F1 of the lowercased token multisets.
fn token_f1(truth: &str, found: &str) -> f64 {
    let bag = |text: &str| {
        let mut m: HashMap<String, i64> = HashMap::new();
        for t in tokens(text) {
            *m.entry(t.to_lowercase()).or_default() += 1;
        }
        m
    };
    let (t, f) = (bag(truth), bag(found));
    let common: i64 = t
        .iter()
        .map(|(k, n)| (*n).min(f.get(k).copied().unwrap_or(0)))
        .sum();
    let (nt, nf): (i64, i64) = (t.values().sum(), f.values().sum());
    if nt == 0 && nf == 0 {
        return 1.0;
    }
    if common == 0 {
        return 0.0;
    }
    let (p, r) = (common as f64 / nf as f64, common as f64 / nt as f64);
    2.0 * p * r / (p + r)
}
