//! Hostile sitemaps over real HTTP: a gzip bomb, a chain of nested indexes, a loop of
//! indexes, a corrupt gzip file, an HTML page where a sitemap should be, and a sitemap of
//! 60,000 URLs. The crawl reads each file at most once, stops at its bounds (bytes after
//! gunzip, index depth, the page cap), keeps what came before a fault, and ends. The
//! workers run in process (`run_next`) against real Postgres and Redis.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use integration_tests::{TestDb, TestRedis, settings_for};
use pipeline_ops::Services;
use pipeline_ops::crawl::{self, CrawlRequest};
use pipeline_store::crawl_status::CrawlProgress;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Spaces inside the bomb: 40 MiB, four times what a sitemap may decompress to.
const BOMB_SPACES: usize = 40 * 1024 * 1024;
/// URLs of the big sitemap.
const BIG: usize = 60_000;

struct Hostile {
    port: u16,
    /// robots.txt names only `/big.xml`.
    big: bool,
    bomb: Vec<u8>,
    hits: Mutex<HashMap<String, usize>>,
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip in memory");
    e.finish().expect("gzip in memory")
}

fn html(title: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>\
             <p>{title} is a page of the hostile sitemap site, with enough words to be \
             extracted as one section of text.</p></body></html>"
        ),
    )
        .into_response()
}

fn urlset(locs: impl Iterator<Item = String>) -> String {
    let mut x = String::from("<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">");
    for l in locs {
        x += &format!("<url><loc>{l}</loc></url>");
    }
    x + "</urlset>"
}

async fn serve(State(s): State<Arc<Hostile>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    *s.hits
        .lock()
        .expect("lock")
        .entry(path.clone())
        .or_insert(0) += 1;
    let here = |p: &str| format!("http://127.0.0.1:{}{p}", s.port);
    let xml = |body: String| ([(header::CONTENT_TYPE, "application/xml")], body).into_response();
    match path.as_str() {
        "/robots.txt" if s.big => {
            format!("User-agent: *\nSitemap: {}\n", here("/big.xml")).into_response()
        }
        "/robots.txt" => format!(
            "User-agent: *\nAllow: /\n\
             Sitemap: {}\nSitemap: {}\nSitemap: {}\nSitemap: {}\nSitemap: {}\n\
             Sitemap: mailto:someone@example.com\n",
            here("/bomb.xml.gz"),
            here("/idx/0.xml"),
            here("/loop-a.xml"),
            here("/corrupt.xml.gz"),
            here("/not-a-sitemap.xml"),
        )
        .into_response(),
        "/start.html" => html("Start"),
        "/bomb.xml.gz" => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            s.bomb.clone(),
        )
            .into_response(),
        "/corrupt.xml.gz" => (
            [(header::CONTENT_TYPE, "application/gzip")],
            vec![0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef],
        )
            .into_response(),
        "/not-a-sitemap.xml" => html("Oops, an HTML page"),
        // Two indexes that list each other and a page each.
        "/loop-a.xml" | "/loop-b.xml" => {
            let other = if path == "/loop-a.xml" {
                "/loop-b.xml"
            } else {
                "/loop-a.xml"
            };
            let pages = if path == "/loop-a.xml" {
                "/loop-pages-a.xml"
            } else {
                "/loop-pages-b.xml"
            };
            xml(format!(
                "<sitemapindex><sitemap><loc>{}</loc></sitemap><sitemap><loc>{}</loc></sitemap></sitemapindex>",
                here(other),
                here(pages)
            ))
        }
        "/loop-pages-a.xml" => xml(urlset([here("/from-loop-a.html")].into_iter())),
        "/loop-pages-b.xml" => xml(urlset([here("/from-loop-b.html")].into_iter())),
        // /idx/N.xml lists /idx/{N+1}.xml and /idx/pages-N.xml (a page /deep-idx/N.html).
        p if p.starts_with("/idx/pages-") => {
            let n = p.trim_start_matches("/idx/pages-").trim_end_matches(".xml");
            xml(urlset([here(&format!("/deep-idx/{n}.html"))].into_iter()))
        }
        p if p.starts_with("/idx/") => {
            let n: usize = p
                .trim_start_matches("/idx/")
                .trim_end_matches(".xml")
                .parse()
                .unwrap_or(0);
            xml(format!(
                "<sitemapindex><sitemap><loc>{}</loc></sitemap><sitemap><loc>{}</loc></sitemap></sitemapindex>",
                here(&format!("/idx/{}.xml", n + 1)),
                here(&format!("/idx/pages-{n}.xml"))
            ))
        }
        "/big.xml" => xml(urlset((0..BIG).map(|i| here(&format!("/big/{i}.html"))))),
        p if p.ends_with(".html") => html(&format!("Page {p}")),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

struct Env {
    services: Services,
    scrape: scrape_worker::ScrapeHandler,
    extract: extraction_worker::ExtractionHandler,
    site: Arc<Hostile>,
    stop: CancellationToken,
    _redis: TestRedis,
    _db: TestDb,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn env(big: bool) -> anyhow::Result<Env> {
    pipeline_core::install_crypto_provider();
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let mut settings = settings_for(&db, &redis);
    settings.scrape.allow_private_hosts = vec!["127.0.0.1".into()];
    settings.scrape.per_host_min_delay_ms = 0;
    settings.scrape.per_host_max_concurrency = 16;
    settings.queue.max_attempts = 2;
    settings.queue.backoff_base_ms = 50;
    let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
    let scrape = scrape_worker::handler_for(&services)?;
    let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
    let extract = extraction_worker::handler(&services, batcher);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let mut bomb = String::from("<urlset>");
    bomb += &format!("<url><loc>http://127.0.0.1:{port}/from-bomb.html</loc></url>");
    bomb += &" ".repeat(BOMB_SPACES);
    bomb += &format!("<url><loc>http://127.0.0.1:{port}/after-bomb.html</loc></url></urlset>");
    let site = Arc::new(Hostile {
        port,
        big,
        bomb: gzip(bomb.as_bytes()),
        hits: Mutex::new(HashMap::new()),
    });
    assert!(
        site.bomb.len() < 1024 * 1024,
        "the bomb is small on the wire"
    );
    let app = Router::new().fallback(serve).with_state(site.clone());
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        // Serving errors only end the fixture; the test then fails on its own assertions.
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
    });
    Ok(Env {
        services,
        scrape,
        extract,
        site,
        stop,
        _redis: redis,
        _db: db,
    })
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.site.port)
    }

    fn hits(&self) -> HashMap<String, usize> {
        self.site.hits.lock().expect("lock").clone()
    }

    async fn crawl(&self, start: &str, max_pages: u32) -> anyhow::Result<Uuid> {
        let req = CrawlRequest {
            url: self.url(start),
            max_pages: Some(max_pages),
            ..CrawlRequest::default()
        };
        Ok(
            crawl::start(&self.services, &req, pipeline_store::Actor::Cli)
                .await?
                .job_id,
        )
    }

    async fn run_to_end(&self, job: Uuid) -> anyhow::Result<CrawlProgress> {
        integration_tests::site::crawl_to_end(&self.services, &self.scrape, &self.extract, job)
            .await
    }

    async fn pages(&self, job: Uuid) -> anyhow::Result<Vec<String>> {
        let mut v: Vec<String> = sqlx::query_scalar(
            "SELECT url FROM crawl_pages WHERE job_id = $1 AND via <> 'redirect' ORDER BY url",
        )
        .bind(job)
        .fetch_all(&self.services.db)
        .await?;
        v.sort();
        Ok(v)
    }
}

#[tokio::test]
async fn hostile_sitemaps_are_read_within_their_bounds_and_the_crawl_ends() -> anyhow::Result<()> {
    let env = env(false).await?;
    let job = env.crawl("/start.html", 1_000).await?;
    let p = env.run_to_end(job).await?;
    assert_eq!(p.status, "completed", "{p:?}");

    let mut want: Vec<String> = [
        "/start.html",
        // Before the bomb's 40 MiB of spaces; the page after them is past the 10 MiB bound.
        "/from-bomb.html",
        // Indexes 0 and 1 are followed; index 2 is two levels below robots.txt's and its
        // entries are not.
        "/deep-idx/0.html",
        "/deep-idx/1.html",
        // The loop ends: each index once, each page once.
        "/from-loop-a.html",
        "/from-loop-b.html",
    ]
    .iter()
    .map(|p| env.url(p))
    .collect();
    want.sort();
    assert_eq!(env.pages(job).await?, want);
    assert_eq!(p.extracted, 6, "{p:?}");

    let hits = env.hits();
    let twice: Vec<_> = hits
        .iter()
        .filter(|(p, n)| **n > 1 && p.as_str() != "/robots.txt")
        .collect();
    assert!(twice.is_empty(), "fetched more than once: {twice:?}");
    for read in [
        "/bomb.xml.gz",
        "/corrupt.xml.gz",
        "/not-a-sitemap.xml",
        "/idx/0.xml",
        "/idx/1.xml",
        "/idx/2.xml",
        "/idx/pages-0.xml",
        "/idx/pages-1.xml",
        "/loop-a.xml",
        "/loop-b.xml",
        "/loop-pages-a.xml",
        "/loop-pages-b.xml",
        "/sitemap.xml",
    ] {
        assert_eq!(hits.get(read), Some(&1), "{read} read once: {hits:?}");
    }
    for never in [
        "/idx/3.xml",
        "/idx/pages-2.xml",
        "/deep-idx/2.html",
        "/after-bomb.html",
    ] {
        assert!(!hits.contains_key(never), "{never} fetched: {hits:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_sitemap_of_60000_urls_fills_the_page_cap_and_no_more() -> anyhow::Result<()> {
    let env = env(true).await?;
    let job = env.crawl("/start.html", 100).await?;
    let p = env.run_to_end(job).await?;
    // The start page and 99 of the sitemap's pages. Reading stopped once the sitemap had
    // given as many candidates as the page cap: one refusal for the cap, not 59,901.
    assert_eq!(p.pages, 100, "{p:?}");
    assert_eq!(p.skipped.limit, 1, "{p:?}");
    assert_eq!(p.extracted, 100, "{p:?}");
    let pages = env.pages(job).await?;
    assert_eq!(pages.len(), 100);
    assert!(pages.contains(&env.url("/big/98.html")), "document order");
    let hits = env.hits();
    assert_eq!(hits.get("/big.xml"), Some(&1));
    let fetched = hits.keys().filter(|k| k.starts_with("/big/")).count();
    assert_eq!(fetched, 99);
    assert!(
        hits.iter().all(|(k, n)| *n == 1 || k == "/robots.txt"),
        "{hits:?}"
    );
    Ok(())
}
