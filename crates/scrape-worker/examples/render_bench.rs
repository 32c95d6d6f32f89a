//! Throughput and memory of the render pool on single-page-app pages served on loopback,
//! and (with `--baseline`) the same pages rendered by one `chromium --dump-dom` process each:
//!
//! ```text
//! SQLX_OFFLINE=true cargo build --release -p scrape-worker --example render_bench
//! target/release/examples/render_bench --pages 200 --tabs 1,4,8 --baseline
//! target/release/examples/render_bench --pages 2000 --tabs 4 --rss-every 100
//! ```
//!
//! The site: `/p/{i}` is an app shell (`<div id="app"></div><script src="/app.js">`);
//! `/app.js` reads `i` from the location, fetches `/data/{i}.json` and builds a heading, six
//! paragraphs of text of that page's own and a few links. Every rendered page is checked for
//! its last paragraph (a page without it counts as failed).
//!
//! The pool is the worker's own [`Renderer`] with the shipped `[render]` settings (settle
//! rules, timeouts, guard proxy per tab; `PIPELINE__RENDER__*` variables change them as
//! for the worker), `--browsers` browsers × `--tabs` tabs each, pages
//! rendered with as many in flight as tabs. Nothing else of the worker runs (no Postgres, no
//! Redis): this measures the render path.
//!
//! Flags:
//! - `--pages M` pages per run (default 200)
//! - `--tabs T` tabs per browser; a list (`1,4,8`) runs each in turn, each with a new pool
//! - `--browsers B` browser processes (default 1)
//! - `--browser NAME` the browser binary, a name on `PATH` or a path (default `chromium`,
//!   as `render.browser`)
//! - `--recycle N` pages before a browser is replaced (default: the shipped 200)
//! - `--rss-every K` memory sampled every K pages (default 50), and every second for the max
//! - `--baseline` also renders `--baseline-pages` (default 24) pages with one
//!   `chromium --headless --dump-dom` process per page, one at a time and then T at once for
//!   each T above 1
//!
//! Reported per run: pages/s (timed from the end of the first page, which starts the
//! browser), the resident size (RSS) of this process and of the browsers' process groups
//! (the sum of their members' RSS: shared pages count once per process, so this overstates
//! what the group really holds; and the sum of their PSS, which counts them once) after the
//! first page, at the middle, at the end and the largest seen; browser launches; and after
//! `shutdown()`, the processes still alive whose command line names this process's profile
//! root or that belong to a browser group seen.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use scrape_worker::guard::AddressPolicy;
use scrape_worker::render::pool::{RenderOptions, Renderer};
use scrape_worker::render::process::{check_browser, group_members, running_as_root};
use tokio::net::TcpListener;
use url::Url;

const SHELL: &str = r#"<!doctype html><html><head><title>App</title></head><body><div id="app"></div><script src="/app.js"></script></body></html>"#;

const APP_JS: &str = r#"
const i = location.pathname.split('/').pop();
fetch('/data/' + i + '.json').then(r => r.json()).then(data => {
  const app = document.getElementById('app');
  const h = document.createElement('h1'); h.textContent = data.title; app.appendChild(h);
  for (const p of data.paragraphs) {
    const e = document.createElement('p'); e.textContent = p; app.appendChild(e);
  }
  const nav = document.createElement('nav');
  for (const l of data.links) {
    const a = document.createElement('a'); a.href = l.href; a.textContent = l.text; nav.appendChild(a);
  }
  app.appendChild(nav);
});
"#;

const WORDS: &[&str] = &[
    "river", "lantern", "orchard", "harbour", "meadow", "granite", "willow", "ledger", "beacon",
    "thistle", "copper", "saddle", "glacier", "furrow", "pigeon", "quarry", "timber", "cinder",
    "marble", "hollow", "spindle", "tavern", "barley", "compass", "ferry", "anvil", "kestrel",
    "bramble", "chapel", "dune", "falcon", "garnet",
];

/// The last paragraph's opening words: a rendered page must contain them.
fn marker(i: u64) -> String {
    format!("Page {i} paragraph 5:")
}

/// Page `i`'s data: a title, six paragraphs no other page has, and links to other pages.
fn data(i: u64) -> serde_json::Value {
    let mut state = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut word = || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        WORDS[(state >> 33) as usize % WORDS.len()]
    };
    let paragraphs: Vec<String> = (0..6)
        .map(|j| {
            let body: Vec<&str> = (0..28).map(|_| word()).collect();
            format!("Page {i} paragraph {j}: {}.", body.join(" "))
        })
        .collect();
    let links: Vec<serde_json::Value> = [i + 1, i + 2, i * 7 + 3]
        .iter()
        .map(|n| serde_json::json!({"href": format!("/p/{n}"), "text": format!("Page {n}")}))
        .collect();
    serde_json::json!({"title": format!("Page {i}"), "paragraphs": paragraphs, "links": links})
}

async fn serve_site() -> SocketAddr {
    let app = Router::new()
        .route(
            "/p/{i}",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], SHELL) }),
        )
        .route(
            "/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], APP_JS) }),
        )
        .route(
            "/data/{file}",
            get(|UrlPath(file): UrlPath<String>| async move {
                match file
                    .strip_suffix(".json")
                    .and_then(|i| i.parse::<u64>().ok())
                {
                    Some(i) => axum::Json(data(i)).into_response(),
                    None => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[derive(Debug, Clone)]
struct Args {
    pages: u64,
    tabs: Vec<usize>,
    browsers: usize,
    recycle: Option<u64>,
    rss_every: u64,
    baseline: bool,
    baseline_pages: u64,
    browser: String,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: render_bench [--pages M] [--tabs T[,T...]] [--browsers B] \
         [--browser NAME] [--recycle N] [--rss-every K] [--baseline] [--baseline-pages N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        pages: 200,
        tabs: vec![4],
        browsers: 1,
        recycle: None,
        rss_every: 50,
        baseline: false,
        baseline_pages: 24,
        browser: "chromium".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        let number = |v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: {v:?} is not a number")))
        };
        match flag.as_str() {
            "--pages" => args.pages = number(value()).max(2),
            "--tabs" => {
                args.tabs = value()
                    .split(',')
                    .map(|t| number(t.to_owned()).max(1) as usize)
                    .collect();
            }
            "--browsers" => args.browsers = number(value()).max(1) as usize,
            "--browser" => args.browser = value(),
            "--recycle" => args.recycle = Some(number(value()).max(1)),
            "--rss-every" => args.rss_every = number(value()).max(1),
            "--baseline" => args.baseline = true,
            "--baseline-pages" => args.baseline_pages = number(value()).max(1),
            "-h" | "--help" => usage("render pages of a local app site and measure"),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    args
}

/// Resident bytes of this process.
fn own_rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// One look at memory: this process, and the live browsers' process groups (the sum of
/// their members' RSS, and of their PSS, which splits each shared page between the
/// processes mapping it).
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    own: u64,
    group: u64,
    group_pss: u64,
    processes: usize,
}

/// Proportional set size of `pid` in bytes (`/proc/<pid>/smaps_rollup`), 0 when it is gone.
fn pss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU seconds of `pid` from `/proc/<pid>/stat`: its own (user + system) and, with
/// `children`, that of the children it has waited for.
fn cpu_secs(pid: &str, children: bool) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = stat.get(stat.rfind(')')? + 2..)?.to_owned();
            // rest[0] is the state (field 3): utime, stime, cutime, cstime are fields 14-17.
            let fields: Vec<u64> = rest
                .split_whitespace()
                .skip(11)
                .take(4)
                .filter_map(|f| f.parse().ok())
                .collect();
            let n = if children { 4 } else { 2 };
            Some(fields.iter().take(n).sum::<u64>())
        })
        .unwrap_or(0);
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}

/// The browsers' process groups seen, each with the most CPU seconds its members (and the
/// renderers they reaped) had used when last seen.
type Groups = Mutex<BTreeMap<u32, f64>>;

async fn sample(renderer: &Renderer, groups: &Groups) -> Sample {
    let pids = renderer.browser_pids().await;
    let (group, group_pss, processes, cpu) = tokio::task::spawn_blocking(move || {
        let mut cpu = Vec::new();
        let mut members = Vec::new();
        for pid in pids {
            let of_group = group_members(pid);
            cpu.push((
                pid,
                of_group
                    .iter()
                    .map(|m| cpu_secs(&m.0.to_string(), true))
                    .sum::<f64>(),
            ));
            members.extend(of_group);
        }
        (
            members.iter().map(|m| m.1).sum::<u64>(),
            members.iter().map(|m| pss(m.0)).sum::<u64>(),
            members.len(),
            cpu,
        )
    })
    .await
    .unwrap_or_default();
    if let Ok(mut g) = groups.lock() {
        for (pgid, secs) in cpu {
            let seen = g.entry(pgid).or_insert(0.0);
            *seen = seen.max(secs);
        }
    }
    Sample {
        own: own_rss(),
        group,
        group_pss,
        processes,
    }
}

/// A process from `/proc`: pid, process group, state, command line.
struct Proc {
    pid: u32,
    pgrp: u32,
    state: char,
    cmdline: String,
}

fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = stat.get(stat.rfind(')')? + 2..)?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let pgrp = fields.nth(1)?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            Some(Proc {
                pid,
                pgrp,
                state,
                cmdline,
            })
        })
        .collect()
}

/// Processes still alive (zombies excluded) that belong to this bench's browsers: their
/// command line names a profile under this process's profile root, or they are in a
/// browser's process group seen during the run. Returns (alive, zombies).
fn leftovers(seen: &BTreeSet<u32>) -> (usize, usize) {
    let root = format!("pipeline-render-{}-", std::process::id());
    let me = std::process::id();
    let ours: Vec<Proc> = processes()
        .into_iter()
        .filter(|p| p.pid != me && (p.cmdline.contains(&root) || seen.contains(&p.pgrp)))
        .collect();
    let zombies = ours.iter().filter(|p| p.state == 'Z').count();
    (ours.len() - zombies, zombies)
}

fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / (1024.0 * 1024.0))
}

#[derive(Debug)]
struct Report {
    tabs: usize,
    pages: u64,
    failed: u64,
    unsettled: u64,
    pages_per_sec: f64,
    start: Sample,
    middle: Sample,
    end: Sample,
    max_own: u64,
    max_group: u64,
    max_pss: u64,
    launches: u64,
    left: usize,
    left_after_wait: usize,
    /// CPU seconds per page of the browsers (their groups, renderers included).
    browser_cpu: f64,
    /// CPU seconds per page of this process (pool, proxies, the site, the sampling).
    own_cpu: f64,
}

/// CPU seconds of every browser group seen, each as last seen.
fn browsers_cpu(groups: &Groups) -> f64 {
    groups.lock().map(|g| g.values().sum()).unwrap_or(0.0)
}

async fn run_pool(
    site: SocketAddr,
    browser: &Path,
    args: &Args,
    tabs: usize,
) -> anyhow::Result<Report> {
    let settings = pipeline_core::Settings::load_from(&pipeline_core::Sources::from_process())?;
    let mut opts = RenderOptions::from_settings(&settings, browser.to_path_buf());
    opts.browsers = args.browsers;
    opts.tabs_per_browser = tabs;
    if let Some(n) = args.recycle {
        opts.recycle_after_pages = n;
    }
    let recycle = opts.recycle_after_pages;
    let policy = AddressPolicy::parse(&[format!("127.0.0.1:{}", site.port())])
        .map_err(anyhow::Error::msg)?;
    let renderer = Renderer::start(opts, Arc::new(policy)).await?;
    let groups: Arc<Groups> = Arc::new(Mutex::new(BTreeMap::new()));
    let url = |i: u64| Url::parse(&format!("http://{site}/p/{i}")).expect("a page URL");
    let check = |i: u64, html: &str| html.contains(&marker(i));

    println!(
        "== {} browser(s) x {tabs} tab(s), {} pages, recycle every {recycle}",
        args.browsers, args.pages
    );
    // The first page starts the browser; the clock starts after it.
    let first = renderer.render(&url(0)).await;
    let mut failed = 0u64;
    let mut unsettled = 0u64;
    match &first {
        Ok(r) if check(0, &r.html) => unsettled += u64::from(!r.settled),
        Ok(r) => {
            failed += 1;
            eprintln!("page 0 rendered without its text ({} bytes)", r.html.len());
        }
        Err(e) => {
            failed += 1;
            eprintln!("page 0: {e}");
        }
    }
    let start = sample(&renderer, &groups).await;
    let cpu_at_start = browsers_cpu(&groups);
    let own_cpu_at_start = cpu_secs("self", false);
    let started = Instant::now();

    let next = Arc::new(AtomicUsize::new(1));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let workers = args.browsers * tabs;
    for _ in 0..workers {
        let renderer = renderer.clone();
        let next = next.clone();
        let tx = tx.clone();
        let total = args.pages;
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                if i >= total {
                    return;
                }
                let page = Url::parse(&format!("http://{site}/p/{i}")).expect("a page URL");
                let result = renderer.render(&page).await;
                if tx.send((i, result)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    // The largest (bench RSS, browsers RSS, browsers PSS) a once-a-second look sees between
    // the samples.
    let peak = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let ticker = {
        let renderer = renderer.clone();
        let groups = groups.clone();
        let peak = peak.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let s = sample(&renderer, &groups).await;
                if let Ok(mut m) = peak.lock() {
                    *m = (m.0.max(s.own), m.1.max(s.group), m.2.max(s.group_pss));
                }
            }
        })
    };

    let mut done = 1u64;
    let mut middle = None;
    let mut max_own = start.own;
    let mut max_group = start.group;
    let mut max_pss = start.group_pss;
    let mut errors_shown = 0;
    while let Some((i, result)) = rx.recv().await {
        done += 1;
        match result {
            Ok(r) if check(i, &r.html) => unsettled += u64::from(!r.settled),
            Ok(r) => {
                failed += 1;
                if errors_shown < 5 {
                    errors_shown += 1;
                    eprintln!(
                        "page {i} rendered without its text ({} bytes)",
                        r.html.len()
                    );
                }
            }
            Err(e) => {
                failed += 1;
                if errors_shown < 5 {
                    errors_shown += 1;
                    eprintln!("page {i}: {e}");
                }
            }
        }
        let is_middle = done == args.pages / 2;
        if done.is_multiple_of(args.rss_every) || is_middle {
            let s = sample(&renderer, &groups).await;
            max_own = max_own.max(s.own);
            max_group = max_group.max(s.group);
            max_pss = max_pss.max(s.group_pss);
            println!(
                "  {:>6} pages  {:>7.2} pages/s  bench RSS {:>5} MiB  browsers RSS {:>5} MiB \
                 PSS {:>5} MiB ({} processes)  launches {}",
                done,
                (done - 1) as f64 / started.elapsed().as_secs_f64(),
                mib(s.own),
                mib(s.group),
                mib(s.group_pss),
                s.processes,
                renderer.launches()
            );
            if is_middle {
                middle = Some(s);
            }
        }
    }
    let elapsed = started.elapsed();
    let end = sample(&renderer, &groups).await;
    let browser_cpu = browsers_cpu(&groups) - cpu_at_start;
    let own_cpu = cpu_secs("self", false) - own_cpu_at_start;
    ticker.abort();
    if let Ok(m) = peak.lock() {
        max_own = max_own.max(m.0).max(end.own);
        max_group = max_group.max(m.1).max(end.group);
        max_pss = max_pss.max(m.2).max(end.group_pss);
    }
    let launches = renderer.launches();

    renderer.shutdown().await;
    let seen: BTreeSet<u32> = groups
        .lock()
        .map(|g| g.keys().copied().collect())
        .unwrap_or_default();
    let (left, _) = leftovers(&seen);
    // Anything still exiting gets a bounded moment; the figure that must be 0 is `left`.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut left_after_wait, mut zombies) = leftovers(&seen);
    while left_after_wait > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (left_after_wait, zombies) = leftovers(&seen);
    }
    drop(renderer);

    let report = Report {
        tabs,
        pages: args.pages,
        failed,
        unsettled,
        pages_per_sec: (args.pages - 1) as f64 / elapsed.as_secs_f64(),
        start,
        middle: middle.unwrap_or(end),
        end,
        max_own,
        max_group,
        max_pss,
        launches,
        left,
        left_after_wait,
        browser_cpu: browser_cpu / (args.pages - 1) as f64,
        own_cpu: own_cpu / (args.pages - 1) as f64,
    };
    println!(
        "  {:.2} pages/s over {} pages in {:.1} s; CPU per page: browsers {:.2} s, bench {:.3} s; \
         {} failed, {} unsettled; {} launches; browser groups seen {}; alive after shutdown: {} \
         (after up to 5 s: {}, zombies {})",
        report.pages_per_sec,
        args.pages - 1,
        elapsed.as_secs_f64(),
        report.browser_cpu,
        report.own_cpu,
        failed,
        unsettled,
        launches,
        seen.len(),
        left,
        left_after_wait,
        zombies
    );
    Ok(report)
}

/// One page rendered by its own `chromium --dump-dom` process; whether its text was there.
async fn dump_dom(browser: &Path, url: &str, i: u64, profile: &Path, wait: bool) -> bool {
    let mut cmd = tokio::process::Command::new(browser);
    cmd.arg("--headless").arg("--dump-dom");
    if wait {
        // Without it the DOM is dumped at the load event, before the app's fetch answers.
        cmd.arg("--virtual-time-budget=5000");
    }
    if running_as_root() {
        cmd.arg("--no-sandbox");
    }
    cmd.arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output()).await;
    let _ = tokio::fs::remove_dir_all(profile).await;
    match out {
        Ok(Ok(out)) => String::from_utf8_lossy(&out.stdout).contains(&marker(i)),
        Ok(Err(e)) => {
            eprintln!("baseline page {i}: {e}");
            false
        }
        Err(_) => {
            eprintln!("baseline page {i}: over 60 s");
            false
        }
    }
}

/// CPU seconds of the children this process has waited for.
fn children_cpu() -> f64 {
    cpu_secs("self", true) - cpu_secs("self", false)
}

/// `n` pages, `parallel` `--dump-dom` processes at a time: (pages/s, pages with their text,
/// CPU seconds per page of the browsers, as far as they were waited for).
async fn baseline(site: SocketAddr, browser: &Path, n: u64, parallel: usize) -> (f64, u64, f64) {
    use futures::StreamExt;
    let root = std::env::temp_dir().join(format!("pipeline-render-bench-{}", std::process::id()));
    let cpu_before = children_cpu();
    let started = Instant::now();
    let ok = futures::stream::iter(0..n)
        .map(|i| {
            let url = format!("http://{site}/p/{i}");
            let profile = root.join(format!("p{parallel}-{i}"));
            async move { dump_dom(browser, &url, i, &profile, true).await }
        })
        .buffer_unordered(parallel)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let cpu = (children_cpu() - cpu_before) / n as f64;
    let _ = tokio::fs::remove_dir_all(&root).await;
    (rate, ok as u64, cpu)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pipeline_core::install_crypto_provider();
    let args = parse_args();
    let (browser, version) = check_browser(&args.browser).map_err(anyhow::Error::msg)?;
    let browser: PathBuf = browser;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{version} at {}; {cores} cores; root: {}",
        browser.display(),
        running_as_root()
    );
    let site = serve_site().await;

    let mut reports = Vec::new();
    for &tabs in &args.tabs {
        reports.push(run_pool(site, &browser, &args, tabs).await?);
    }

    let mut baselines = Vec::new();
    if args.baseline {
        // What the page gives without waiting for its script's data.
        let root =
            std::env::temp_dir().join(format!("pipeline-render-bench-{}", std::process::id()));
        let plain = dump_dom(
            &browser,
            &format!("http://{site}/p/0"),
            0,
            &root.join("plain"),
            false,
        )
        .await;
        println!(
            "== baseline: plain `--dump-dom` (no virtual time budget) has the page's text: {plain}"
        );
        let mut levels = vec![1];
        levels.extend(args.tabs.iter().copied().filter(|t| *t > 1));
        levels.dedup();
        for parallel in levels {
            let (rate, ok, cpu) = baseline(site, &browser, args.baseline_pages, parallel).await;
            println!(
                "== baseline: {} pages, {parallel} `chromium --dump-dom` at once: \
                 {rate:.2} pages/s, CPU {cpu:.2} s per page, {ok} with their text",
                args.baseline_pages
            );
            baselines.push((parallel, rate, ok, cpu));
        }
    }

    println!();
    println!(
        "| browsers x tabs | pages | pages/s | CPU s/page (browsers + bench) | failed | \
         bench RSS start / mid / end / max (MiB) | browsers RSS start / mid / end / max (MiB) | \
         end / start | browsers PSS start / mid / end / max (MiB) | launches | \
         alive after shutdown |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &reports {
        println!(
            "| {} x {} | {} | {:.2} | {:.2} + {:.3} | {} ({} unsettled) | {} / {} / {} / {} | \
             {} / {} / {} / {} | {:.2} | {} / {} / {} / {} | {} | {} |",
            args.browsers,
            r.tabs,
            r.pages,
            r.pages_per_sec,
            r.browser_cpu,
            r.own_cpu,
            r.failed,
            r.unsettled,
            mib(r.start.own),
            mib(r.middle.own),
            mib(r.end.own),
            mib(r.max_own),
            mib(r.start.group),
            mib(r.middle.group),
            mib(r.end.group),
            mib(r.max_group),
            r.end.group as f64 / r.start.group.max(1) as f64,
            mib(r.start.group_pss),
            mib(r.middle.group_pss),
            mib(r.end.group_pss),
            mib(r.max_pss),
            r.launches,
            r.left
        );
    }
    for (parallel, rate, ok, cpu) in &baselines {
        println!(
            "| baseline: `--dump-dom` x {parallel} at once | {} | {rate:.2} | {cpu:.2} | {} \
             | | | | | {} | |",
            args.baseline_pages,
            args.baseline_pages - ok,
            args.baseline_pages
        );
    }
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    let left: usize = reports.iter().map(|r| r.left_after_wait).sum();
    anyhow::ensure!(left == 0, "{left} browser processes outlived shutdown()");
    anyhow::ensure!(failed == 0, "{failed} pages failed");
    Ok(())
}
