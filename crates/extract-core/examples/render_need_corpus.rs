//! Runs the `auto` render decision on every HTML page under some folders, and times it.
//!
//! ```text
//! render_need_corpus [--name FILE] [--pages] [--runs N] <dir>...
//! ```
//!
//! Walks each folder for `*.html` / `*.htm` files (only files named `FILE` with `--name`,
//! e.g. `--name source.html` for a folder of test cases that also hold expected outputs),
//! and prints the number of pages, the pages flagged for each reason (with their paths), the
//! smallest prose and content counts of the pages not flagged that load scripts (how far
//! they are from the thresholds; a page without scripts is never rendered), and the time per page: the median and 99th percentile over pages of each
//! page's median time over `N` runs (default 21), one thread, for `render_need` (the
//! decision, with its early stop), `render_signals` (the same scan read to the end), and,
//! for comparison, a guarded DOM parse of the page (`html::parse_guarded`).
//!
//! The page's URL (which tells its own scripts from other sites') is its
//! `<link rel=canonical>` or `og:url`, else `https://localhost/`. `--pages` prints every
//! page's signals.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use extract_core::render_need::{RenderReason, render_need, render_signals};
use extract_core::{Limits, html};
use regex::Regex;
use url::Url;

fn main() -> anyhow::Result<()> {
    let mut name = None;
    let mut runs = 21usize;
    let mut list_pages = false;
    let mut dirs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--name" => name = Some(args.next().context("--name needs a file name")?),
            "--runs" => runs = args.next().context("--runs needs a number")?.parse()?,
            "--pages" => list_pages = true,
            s if s.starts_with("--") => bail!("unknown option {s}"),
            _ => dirs.push(PathBuf::from(a)),
        }
    }
    if dirs.is_empty() {
        bail!("usage: render_need_corpus [--name FILE] [--pages] [--runs N] <dir>...");
    }
    let mut files = Vec::new();
    for dir in &dirs {
        walk(dir, name.as_deref(), &mut files)?;
    }
    files.sort();
    let canonical = Regex::new(
        r#"(?is)<link\b[^>]*\brel=["']?canonical["']?[^>]*\bhref=["']([^"']+)|<meta\b[^>]*\bproperty=["']og:url["'][^>]*\bcontent=["']([^"']+)"#,
    )?;
    let fallback = Url::parse("https://localhost/")?;

    let mut pages = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let html = String::from_utf8_lossy(&bytes).into_owned();
        let url = canonical
            .captures(&html)
            .and_then(|c| c.get(1).or_else(|| c.get(2)))
            .and_then(|m| Url::parse(m.as_str()).ok())
            .unwrap_or_else(|| fallback.clone());
        pages.push((f.clone(), html, url));
    }

    let mut flagged: Vec<(RenderReason, &Path)> = Vec::new();
    let mut unflagged = Vec::new();
    let mut stopped_early = 0;
    for (path, html, url) in &pages {
        let need = render_need(html, url);
        let s = render_signals(html, url);
        assert_eq!(need, s.reason(), "{}", path.display());
        if list_pages {
            println!(
                "{:<14} text {:>6} content {:>6} prose {:>6} media {:>3} mount {:<10} noscript-js {:<5} inline {:>7}+{:<7} files {:>2} own {:>2} trackers {:>2}  {}",
                need.map_or("-", RenderReason::as_str),
                s.text_chars,
                s.content_chars,
                s.prose_chars,
                s.media,
                s.empty_mount.as_deref().unwrap_or("-"),
                s.noscript_asks_js,
                s.inline_code_bytes,
                s.inline_data_bytes,
                s.script_files,
                s.own_script_files,
                s.tracker_scripts,
                path.display()
            );
        }
        if !s.little_text() {
            stopped_early += 1;
        }
        match need {
            Some(r) => flagged.push((r, path)),
            None if s.has_app_scripts() => unflagged.push((s.prose_chars, s.content_chars, path)),
            None => {}
        }
    }

    let timed = |f: &dyn Fn(&str, &Url)| -> (Duration, Duration) {
        // One untimed pass to warm caches, then each page's median over `runs`.
        for (_, html, url) in &pages {
            f(html, url);
        }
        let mut per_page: Vec<Duration> = pages
            .iter()
            .map(|(_, html, url)| {
                let mut t: Vec<Duration> = (0..runs.max(1))
                    .map(|_| {
                        let start = Instant::now();
                        f(html, url);
                        start.elapsed()
                    })
                    .collect();
                t.sort();
                t[t.len() / 2]
            })
            .collect();
        per_page.sort();
        (percentile(&per_page, 0.5), percentile(&per_page, 0.99))
    };
    let decision = timed(&|h, u| {
        std::hint::black_box(render_need(std::hint::black_box(h), u));
    });
    let full = timed(&|h, u| {
        std::hint::black_box(render_signals(std::hint::black_box(h), u));
    });
    let parse = timed(&|h, _| {
        std::hint::black_box(html::parse_guarded(std::hint::black_box(h), &Limits::default()).ok());
    });

    let total_bytes: usize = pages.iter().map(|(_, h, _)| h.len()).sum();
    println!(
        "pages: {} ({} KiB mean)",
        pages.len(),
        total_bytes / pages.len().max(1) / 1024
    );
    println!(
        "flagged: {} (pages with more text than a shell, where the scan stops early: {})",
        flagged.len(),
        stopped_early
    );
    for reason in RenderReason::ALL {
        let these: Vec<_> = flagged.iter().filter(|(r, _)| *r == reason).collect();
        println!("  {}: {}", reason.as_str(), these.len());
        for (_, p) in these {
            println!("    {}", p.display());
        }
    }
    unflagged.sort();
    println!("smallest prose of pages not flagged that load scripts (prose, content chars):");
    for (prose, content, p) in unflagged.iter().take(5) {
        println!("  {prose:>6} {content:>6}  {}", p.display());
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("µs/page (median of {runs} runs per page; median, p99 over pages):");
    println!(
        "  render_need     {:>8.1} {:>8.1}",
        us(decision.0),
        us(decision.1)
    );
    println!("  render_signals  {:>8.1} {:>8.1}", us(full.0), us(full.1));
    println!(
        "  parse_guarded   {:>8.1} {:>8.1}",
        us(parse.0),
        us(parse.1)
    );
    Ok(())
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let k = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
}

fn walk(dir: &Path, name: Option<&str>, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, name, out)?;
            continue;
        }
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let wanted = match name {
            Some(n) => file == n,
            None => {
                let ext = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase);
                matches!(ext.as_deref(), Some("html" | "htm"))
            }
        };
        if wanted {
            out.push(path);
        }
    }
    Ok(())
}
