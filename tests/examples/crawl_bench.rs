//! Crawl throughput next to Scrapy: the same generated loopback site (`integration_tests::site`,
//! every page answered after 50 ms), the same rules and the same number of requests in flight,
//! one crawler after the other in one run.
//!
//! ```text
//! cargo run --release -p integration-tests --example crawl_bench
//! ```
//!
//! **The pipeline**: the scrape and extraction workers' own loops (`scrape_worker::run`,
//! `extraction_worker::run`) in this process, on a fresh database and Redis prefix
//! (`TEST_DATABASE_URL`, `TEST_REDIS_URL`, as the tests), a crawl started as the API starts
//! one, `scrape.concurrency` and `scrape.per_host_max_concurrency` both set to the level and no
//! per-host delay (the site is one host). It reports two times from the crawl's start: until
//! the site has served every page ("fetched"), and until the crawl's job has ended ("ended":
//! every page stored, its links admitted, extracted, chunked and embedded with `hashing`,
//! and its progress counted). Each page's discovery path back to the start URL is then
//! read from Postgres (`crawl_pages`), and the run fails unless every page has one.
//!
//! **Scrapy** (`bench/scrapy/spider.py`, installed into `.local/scrapy-venv` from
//! `bench/scrapy/requirements.txt` on first use): same host, robots.txt obeyed, nofollow
//! skipped, tracking parameters stripped, the same trap caps (5 query variants per path,
//! 6 path segments), `CONCURRENT_REQUESTS` and `CONCURRENT_REQUESTS_PER_DOMAIN` at the level,
//! no delay; its time runs from its first request to the last response parsed. Scrapy keeps
//! nothing: it fetches and follows links.
//!
//! Both crawls read no sitemap (Scrapy's link crawler does not), and each must fetch exactly
//! the site's link-reachable allowed pages, each once, or the run fails: the site counts the
//! requests it serves. Options: `--pages N` tree pages (default 2000), `--concurrency 8,16,32`,
//! `--no-scrapy`, `--extraction-after` (the extraction worker starts only once the site served
//! every page, so the crawl has the cores to itself as Scrapy has; "ended" then adds the
//! whole site's extraction). Loopback only; every crawl is bounded by the site's size and a
//! 600 s limit.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use integration_tests::site::Site;
use integration_tests::{TestDb, TestRedis, settings_for};
use pipeline_ops::Services;
use pipeline_ops::crawl::{self, CrawlRequest};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const DELAY: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(600);
const MAX_DEPTH: u32 = 50;
const MAX_QUERY_VARIANTS: u32 = 5;
const MAX_PATH_DEPTH: u32 = 6;

struct Args {
    pages: usize,
    concurrency: Vec<usize>,
    scrapy: bool,
    /// Start the extraction worker only once every page was fetched (`--extraction-after`).
    extraction_after: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        pages: 2000,
        concurrency: vec![8, 16, 32],
        scrapy: true,
        extraction_after: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pages" => {
                args.pages = it
                    .next()
                    .context("--pages needs a number")?
                    .parse()
                    .context("--pages needs a number")?;
                ensure!(args.pages >= 2, "--pages must be at least 2");
            }
            "--concurrency" => {
                args.concurrency = it
                    .next()
                    .context("--concurrency needs a list such as 8,16,32")?
                    .split(',')
                    .map(|c| c.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--concurrency needs a list such as 8,16,32")?;
                ensure!(
                    args.concurrency.iter().all(|&c| (1..=256).contains(&c)),
                    "each concurrency must be in 1..=256"
                );
            }
            "--no-scrapy" => args.scrapy = false,
            "--extraction-after" => args.extraction_after = true,
            other => bail!(
                "unknown argument {other}; options: --pages N, --concurrency 8,16,32, --no-scrapy, --extraction-after"
            ),
        }
    }
    Ok(args)
}

struct Pipeline {
    fetched: f64,
    ended: f64,
    traced: i64,
    pages: i64,
    /// Where a scrape run's time went ([`time_spent`]).
    spent: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    pipeline_core::install_crypto_provider();
    let python = if args.scrapy {
        Some(scrapy_python().await?)
    } else {
        None
    };
    let site = Site::start(args.pages, DELAY).await;
    let want = site.expected_link_crawl();
    println!(
        "site: {} pages reachable by links, each answered after {} ms; load average {}",
        want.len(),
        DELAY.as_millis(),
        load_average()
    );
    println!(
        "concurrency  ideal/s  pipeline fetched s  pages/s  ended s  pages/s  traced     scrapy s  pages/s  fetched ratio  ended ratio"
    );
    for &c in &args.concurrency {
        site.clear_hits();
        let ours = pipeline(&site, c, args.extraction_after).await?;
        check_fetched(&site, &want, "pipeline")?;
        let n = want.len() as f64;
        let ideal = c as f64 / DELAY.as_secs_f64();
        let mut row = format!(
            "{c:>11}  {ideal:>7.0}  {:>18.2}  {:>7.1}  {:>7.2}  {:>7.1}  {:>4}/{:<4}",
            ours.fetched,
            n / ours.fetched,
            ours.ended,
            n / ours.ended,
            ours.traced,
            ours.pages
        );
        if let Some(python) = &python {
            site.clear_hits();
            let secs = scrapy(python, &site, c).await?;
            check_fetched(&site, &want, "Scrapy")?;
            row += &format!(
                "  {secs:>8.2}  {:>7.1}  {:>13.2}  {:>11.2}",
                n / secs,
                secs / ours.fetched,
                secs / ours.ended
            );
        }
        println!("{row}");
        println!("             scrape stage, ms p50/p90: {}", ours.spent);
    }
    println!("(ratio: Scrapy's time over the pipeline's; above 1, the pipeline is faster)");
    Ok(())
}

/// One crawl of the site by the pipeline's workers at concurrency `c`.
async fn pipeline(site: &Site, c: usize, extraction_after: bool) -> Result<Pipeline> {
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let mut settings = settings_for(&db, &redis);
    settings.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
    settings.scrape.concurrency = c;
    settings.scrape.per_host_max_concurrency = c as u32;
    settings.scrape.per_host_min_delay_ms = 0;
    let services = Services::build(settings)?;
    let cancel = CancellationToken::new();
    let scrape = tokio::spawn(scrape_worker::run(services.clone(), cancel.clone()));
    let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
    let start_extraction = {
        let services = services.clone();
        let cancel = cancel.clone();
        move || {
            tokio::spawn(async move { extraction_worker::run(&services, batcher, cancel).await })
        }
    };
    let mut start_extraction = Some(start_extraction);
    let mut extraction = None;
    if !extraction_after {
        extraction = start_extraction.take().map(|start| start());
    }

    let want = site.expected_link_crawl().len();
    let started = Instant::now();
    let job = crawl::start(
        &services,
        &CrawlRequest {
            url: site.url("/p/0.html"),
            max_depth: Some(MAX_DEPTH),
            max_pages: Some(crawl::MAX_MAX_PAGES),
            sitemaps: Some(false),
            max_query_variants: Some(MAX_QUERY_VARIANTS),
            max_path_depth: Some(MAX_PATH_DEPTH),
            ..CrawlRequest::default()
        },
        pipeline_store::Actor::Cli,
    )
    .await?
    .job_id;
    // The site's request count is read every 10 ms (memory); the crawl's progress, a few
    // Postgres counts, every 50 ms once every page was served.
    let mut fetched = None;
    let mut looked = Instant::now();
    let ended = loop {
        ensure!(
            started.elapsed() < LIMIT,
            "the pipeline's crawl did not end in {LIMIT:?}"
        );
        if fetched.is_none() && pages_served(site) >= want {
            fetched = Some(started.elapsed().as_secs_f64());
            if let Some(start) = start_extraction.take() {
                extraction = Some(start());
            }
        }
        if fetched.is_some() && looked.elapsed() >= Duration::from_millis(50) {
            looked = Instant::now();
            let p = pipeline_store::crawl_status::progress(&services.db, job).await?;
            if p.ended {
                break started.elapsed().as_secs_f64();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (traced, pages) = traced(&services, job).await?;
    let spent = time_spent(&services, job).await?;
    cancel.cancel();
    scrape.await??;
    if let Some(extraction) = extraction {
        extraction.await?;
    }
    ensure!(
        traced == pages,
        "{traced} of {pages} pages have a discovery path to the start URL"
    );
    services.db.close().await;
    drop(redis);
    drop(db);
    Ok(Pipeline {
        fetched: fetched.unwrap_or(ended),
        ended,
        traced,
        pages,
        spent,
    })
}

/// Where a page's time went in the scrape stage, p50 / p90 in ms over the crawl's pages,
/// from its trail (`trace.stage_runs` and the `succeeded` event's detail): waiting (from the
/// previous event, the parent's admission of it, to `started`: the parent's admission
/// transaction, the enqueue, the queue, the reserve), the request alone (`fetch_ms`), link
/// discovery and admission (`duration_ms - fetch_ms`), and the whole run (`started` to
/// `succeeded`: fetch, admission, the store statement's start).
async fn time_spent(services: &Services, job: Uuid) -> Result<String> {
    let row: (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) = sqlx::query_as(
        "WITH r AS (
             SELECT extract(epoch FROM sr.waited) * 1000 AS waited_ms, sr.duration_ms AS run_ms,
                    (e.detail->>'fetch_ms')::float8 AS fetch_ms,
                    (e.detail->>'duration_ms')::float8 - (e.detail->>'fetch_ms')::float8
                        AS links_ms
               FROM trace.stage_runs sr
               JOIN job_events e ON e.source_id = sr.source_id AND e.kind = 'succeeded'
                                AND e.stage = 'scrape' AND e.job_id = $1
              WHERE sr.job_id = $1 AND sr.stage = 'scrape' AND sr.outcome = 'succeeded'
         )
         SELECT percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY waited_ms),
                percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY fetch_ms),
                percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY links_ms),
                percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY run_ms)
           FROM r",
    )
    .bind(job)
    .fetch_one(&services.db)
    .await?;
    let pair = |v: &[f64]| match v {
        [a, b] => format!("{a:.0}/{b:.0}"),
        _ => "-".into(),
    };
    Ok(format!(
        "waited {}  fetch {}  links {}  run {}",
        pair(&row.0),
        pair(&row.1),
        pair(&row.2),
        pair(&row.3)
    ))
}

/// Requests the site served, robots.txt apart.
fn pages_served(site: &Site) -> usize {
    site.hits()
        .into_iter()
        .filter(|(p, _)| p != "/robots.txt")
        .map(|(_, n)| n)
        .sum()
}

/// (pages of the crawl whose discovery path in `crawl_pages` reaches the start URL, pages).
async fn traced(services: &Services, job: Uuid) -> Result<(i64, i64)> {
    let (traced, pages): (i64, i64) = sqlx::query_as(
        "WITH RECURSIVE up AS (
             SELECT p.source_id AS page, p.discovered_from AS next, 0 AS n
               FROM crawl_pages p WHERE p.job_id = $1 AND p.via <> 'redirect'
             UNION ALL
             SELECT up.page, p.discovered_from, up.n + 1
               FROM up JOIN crawl_pages p
                 ON p.job_id = $1 AND p.source_id = up.next AND p.via <> 'redirect'
              WHERE up.n < 1000
         )
         SELECT (SELECT count(DISTINCT page) FROM up WHERE next IS NULL),
                (SELECT count(*) FROM crawl_pages WHERE job_id = $1 AND via <> 'redirect')",
    )
    .bind(job)
    .fetch_one(&services.db)
    .await?;
    Ok((traced, pages))
}

/// Fails unless the site served exactly `want` (robots.txt apart), each once.
fn check_fetched(site: &Site, want: &[String], who: &str) -> Result<()> {
    let hits: HashMap<String, usize> = site.hits();
    let twice: Vec<_> = hits
        .iter()
        .filter(|(p, n)| **n > 1 && p.as_str() != "/robots.txt")
        .collect();
    ensure!(twice.is_empty(), "{who} fetched pages twice: {twice:?}");
    let mut got: Vec<String> = hits.into_keys().filter(|p| p != "/robots.txt").collect();
    got.sort();
    if got != want {
        let extra: Vec<_> = got.iter().filter(|p| !want.contains(p)).collect();
        let missing: Vec<_> = want.iter().filter(|p| !got.contains(p)).collect();
        bail!("{who} fetched other pages than the site's: extra {extra:?}, missing {missing:?}");
    }
    Ok(())
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The virtual environment's Python with Scrapy, made from `bench/scrapy/requirements.txt`
/// when it is missing.
async fn scrapy_python() -> Result<PathBuf> {
    let root = repo_root();
    let venv = root.join(".local/scrapy-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        println!("installing Scrapy into .local/scrapy-venv (once)");
        let made = tokio::process::Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .await
            .context("python3 -m venv (is Python 3 installed?)")?;
        ensure!(made.success(), "python3 -m venv failed: {made}");
        let pip = tokio::process::Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(root.join("bench/scrapy/requirements.txt"))
            .status()
            .await
            .context("pip install Scrapy")?;
        ensure!(
            pip.success(),
            "pip install -r bench/scrapy/requirements.txt failed: {pip}"
        );
    }
    Ok(python)
}

/// One Scrapy crawl of the site at concurrency `c`; its seconds from the first request to
/// the last response parsed.
async fn scrapy(python: &PathBuf, site: &Site, c: usize) -> Result<f64> {
    let child = tokio::process::Command::new(python)
        .arg(repo_root().join("bench/scrapy/spider.py"))
        .arg(site.url("/p/0.html"))
        .arg(c.to_string())
        .arg(MAX_DEPTH.to_string())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(LIMIT, child)
        .await
        .context("Scrapy did not finish in time")??;
    ensure!(
        out.status.success(),
        "Scrapy failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().context("Scrapy printed no result")?;
    let v: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("Scrapy's result {line:?}"))?;
    v["seconds"]
        .as_f64()
        .with_context(|| format!("Scrapy's result {line:?} has no seconds"))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
