//! A generated site on 127.0.0.1 for crawl tests: `pages` pages in a binary tree
//! (`/p/{i}.html` links to `2i+1` and `2i+2`, back to its parent, and to a child again with
//! a tracking parameter and a fragment), and around the tree's root:
//!
//! - `/robots.txt` disallowing `/private/`, and `/private/a.html` linked from the root;
//! - a `rel=nofollow` link to `/hidden/x.html`, reachable no other way;
//! - a link to the same server under the host name `localhost` (another host: out of scope);
//! - an infinite calendar: `/calendar?month=N` links to `month=N+1` (an anchor and `rel=next`);
//! - ever-deeper paths: `/deep/a/` links to `/deep/a/a/`, and so on;
//! - from page 1, `/go/landing`, a redirect to `/landing.html` (in scope, linked nowhere),
//!   which links to itself and to `/only-via-redirect.html`;
//! - sitemaps ([`SITEMAP_FILES`]): robots.txt names `/sitemap_index.xml`, an index that lists
//!   a gzipped sitemap (`/sitemaps/pages.xml.gz`, served as `application/gzip`), a malformed
//!   one cut in the middle (`/sitemaps/broken.xml`), a missing one (404), itself (a loop), a
//!   sitemap on another host name and an `ftp:` one (neither fetched); `/sitemap.xml` is a
//!   plain sitemap with a CDATA location. They list pages under `/sitemap-only/` that no
//!   link reaches ([`SITEMAP_ONLY_PAGES`]; `/sitemap-only/1.html` links to
//!   `/sitemap-only/next.html`), tree pages a link also reaches, a URL with `&amp;`, another
//!   host's page and an `ftp:` URL.
//!
//! Tree pages answer with an `ETag` and honour `If-None-Match` with `304 Not Modified`
//! until [`Site::change_pages`] gives them new content (and a new `ETag`).
//!
//! Every request is counted by path and query, so a test can assert what was fetched and
//! that nothing was fetched twice. An optional delay per page serves benchmarks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

struct Shared {
    pages: usize,
    port: u16,
    delay: Duration,
    hits: Mutex<HashMap<String, usize>>,
    /// Tree pages changed by [`Site::change_pages`], with how many times.
    versions: Mutex<HashMap<usize, u32>>,
    /// `304 Not Modified` answers given.
    not_modified: Mutex<usize>,
}

/// The running site; it stops when dropped.
pub struct Site {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

/// The sitemap files a crawl of the site fetches (robots.txt apart), each once.
pub const SITEMAP_FILES: &[&str] = &[
    "/sitemap.xml",
    "/sitemap_index.xml",
    "/sitemaps/broken.xml",
    "/sitemaps/missing.xml",
    "/sitemaps/pages.xml.gz",
];

/// The pages (path and query) only the sitemaps lead to, `/sitemap-only/next.html` through
/// a link of a page the sitemap lists.
pub const SITEMAP_ONLY_PAGES: &[&str] = &[
    "/sitemap-only/1.html",
    "/sitemap-only/2.html",
    "/sitemap-only/3.html",
    "/sitemap-only/4.html",
    "/sitemap-only/5.html",
    "/sitemap-only/6.html",
    "/sitemap-only/7.html",
    "/sitemap-only/8.html",
    "/sitemap-only/9.html",
    "/sitemap-only/before-the-break.html",
    "/sitemap-only/next.html",
    "/sitemap-only/plain.html",
    "/sitemap-only/q.html?a=1&b=2",
];

impl Site {
    /// Starts the site with `pages` tree pages, each answered after `delay`.
    pub async fn start(pages: usize, delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the listener's address");
        let shared = Arc::new(Shared {
            pages,
            port: addr.port(),
            delay,
            hits: Mutex::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
            not_modified: Mutex::new(0),
        });
        let app = Router::new().fallback(serve).with_state(shared.clone());
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            // Serving errors only end the fixture; the test then fails on its own assertions.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
        });
        Self { addr, shared, stop }
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests served so far, by path and query (`/calendar?month=2`).
    pub fn hits(&self) -> HashMap<String, usize> {
        self.shared.hits.lock().expect("lock").clone()
    }

    /// Forgets the requests served so far.
    pub fn clear_hits(&self) {
        self.shared.hits.lock().expect("lock").clear();
        *self.shared.not_modified.lock().expect("lock") = 0;
    }

    /// Gives tree pages new content and a new `ETag`.
    pub fn change_pages(&self, pages: &[usize]) {
        let mut v = self.shared.versions.lock().expect("lock");
        for p in pages {
            *v.entry(*p).or_insert(0) += 1;
        }
    }

    /// `304 Not Modified` answers given since the start (or [`Self::clear_hits`]).
    pub fn not_modified(&self) -> usize {
        *self.shared.not_modified.lock().expect("lock")
    }

    /// The pages (paths with query) a crawl from `/p/0.html` fetches with a depth cap of at
    /// least 8, no page cap below 526, at most 5 query variants per path and 6 path
    /// segments, reading sitemaps: every tree page, 5 calendar months, 5 deep paths, the
    /// redirect and the two pages behind it, and the [`SITEMAP_ONLY_PAGES`]. Neither
    /// robots.txt nor the sitemap files are pages.
    pub fn expected_full_crawl(&self) -> Vec<String> {
        let mut v = self.expected_link_crawl();
        v.extend(SITEMAP_ONLY_PAGES.iter().map(|s| s.to_string()));
        v.sort();
        v
    }

    /// The pages of [`Self::expected_full_crawl`] when the crawl does not read sitemaps.
    pub fn expected_link_crawl(&self) -> Vec<String> {
        let mut v: Vec<String> = (0..self.shared.pages)
            .map(|i| format!("/p/{i}.html"))
            .collect();
        v.extend((1..=5).map(|m| format!("/calendar?month={m}")));
        v.extend((1..=5).map(|d| format!("/deep/{}", "a/".repeat(d))));
        v.extend(
            ["/go/landing", "/landing.html", "/only-via-redirect.html"]
                .iter()
                .map(|s| s.to_string()),
        );
        v.sort();
        v
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn page(title: &str, links: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body><h1>{title}</h1><p>{title} is a page of the generated test site. It has \
             enough words to be extracted as one section of text, with its links below.</p>\
             {links}</body></html>"
        ),
    )
        .into_response()
}

fn a(href: &str) -> String {
    format!("<a href=\"{href}\">{href}</a> ")
}

async fn serve(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let key = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    *s.hits.lock().expect("lock").entry(key).or_insert(0) += 1;
    if path == "/robots.txt" {
        return format!(
            "User-agent: *\nDisallow: /private/\n\nSitemap: http://127.0.0.1:{}/sitemap_index.xml\n",
            s.port
        )
        .into_response();
    }
    if let Some(answer) = sitemaps(&path, s.port) {
        return answer;
    }
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    if let Some(i) = path
        .strip_prefix("/p/")
        .and_then(|r| r.strip_suffix(".html"))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|i| *i < s.pages)
    {
        let mut links = String::new();
        for c in [2 * i + 1, 2 * i + 2] {
            if c < s.pages {
                links += &a(&format!("/p/{c}.html"));
                links += &a(&format!("/p/{c}.html?utm_source=news#part"));
            }
        }
        if i > 0 {
            links += &a(&format!("/p/{}.html", (i - 1) / 2));
        }
        links += &a("#top");
        if i == 0 {
            links += "<link rel=\"canonical\" href=\"/p/0.html\">";
            links += &a("/private/a.html");
            links += &a("/calendar?month=1");
            links += &a("/deep/a/");
            links += &a(&format!("http://localhost:{}/p/0.html", s.port));
            links += &a("mailto:someone@example.com");
            links += "<a rel=\"nofollow\" href=\"/hidden/x.html\">hidden</a>";
        }
        if i == 1 {
            links += &a("/go/landing");
        }
        let version = s
            .versions
            .lock()
            .expect("lock")
            .get(&i)
            .copied()
            .unwrap_or(0);
        let etag = format!("\"p{i}-v{version}\"");
        let asked = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok());
        if asked == Some(etag.as_str()) {
            *s.not_modified.lock().expect("lock") += 1;
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
        }
        let title = match version {
            0 => format!("Page {i}"),
            v => format!("Page {i}, version {v}"),
        };
        let mut answer = page(&title, &links);
        answer.headers_mut().insert(
            header::ETAG,
            etag.parse().expect("an ETag is a header value"),
        );
        return answer;
    }
    if path == "/calendar" {
        let month: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("month="))
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let next = format!("/calendar?month={}", month + 1);
        let links = format!("{}<a rel=\"next\" href=\"{next}\">next</a>", a(&next));
        return page(&format!("Calendar month {month}"), &links);
    }
    if path.starts_with("/deep/") && path.ends_with('/') {
        return page(&format!("Deep {path}"), &a("a/"));
    }
    match path.as_str() {
        "/go/landing" => (StatusCode::FOUND, [(header::LOCATION, "/landing.html")]).into_response(),
        "/landing.html" => page(
            "Landing",
            &(a("/landing.html") + &a("/only-via-redirect.html")),
        ),
        "/only-via-redirect.html" => page("Only via redirect", ""),
        "/sitemap-only/1.html" => page(
            "Sitemap only 1",
            &(a("/p/0.html") + &a("/sitemap-only/next.html")),
        ),
        p if p.starts_with("/sitemap-only/") && p.ends_with(".html") => {
            page(&format!("Sitemap only {p}"), &a("/p/0.html"))
        }
        "/private/a.html" => page("Private a", &a("/private/b.html")),
        "/private/b.html" | "/hidden/x.html" => page("Not to be fetched", ""),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

fn urlset(locs: &[String]) -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for l in locs {
        x += &format!("  <url><loc>{l}</loc><changefreq>daily</changefreq></url>\n");
    }
    x + "</urlset>\n"
}

/// The sitemap files (see the module's doc), or `None` for another path.
fn sitemaps(path: &str, port: u16) -> Option<Response> {
    let here = |p: &str| format!("http://127.0.0.1:{port}{p}");
    Some(match path {
        "/sitemap_index.xml" => {
            let mut x = String::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                 <sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
            );
            for l in [
                here("/sitemaps/pages.xml.gz"),
                here("/sitemaps/broken.xml"),
                here("/sitemaps/missing.xml"),
                here("/sitemap_index.xml"),
                format!("http://localhost:{port}/sitemaps/other-host.xml"),
                "ftp://127.0.0.1/sitemaps/ftp.xml".into(),
            ] {
                x += &format!("  <sitemap><loc>{l}</loc></sitemap>\n");
            }
            xml(x + "</sitemapindex>\n")
        }
        "/sitemaps/pages.xml.gz" => {
            let mut locs: Vec<String> = (1..=9)
                .map(|i| here(&format!("/sitemap-only/{i}.html")))
                .collect();
            locs.extend([
                here("/sitemap-only/q.html?a=1&amp;b=2"),
                here("/p/0.html"),
                here("/p/1.html"),
                format!("http://localhost:{port}/p/0.html"),
                "ftp://127.0.0.1/sitemap-only/ftp.html".into(),
            ]);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut gz, urlset(&locs).as_bytes()).expect("gzip in memory");
            let bytes = gz.finish().expect("gzip in memory");
            ([(header::CONTENT_TYPE, "application/gzip")], bytes).into_response()
        }
        "/sitemaps/broken.xml" => xml(format!(
            "<urlset><url><loc>{}</loc></url><url><loc>http://127.0.0.1:{port}/sitemap-only/af",
            here("/sitemap-only/before-the-break.html")
        )),
        "/sitemap.xml" => xml(format!(
            "<urlset><url><loc><![CDATA[{}]]></loc></url></urlset>",
            here("/sitemap-only/plain.html")
        )),
        _ => return None,
    })
}

/// Runs the scrape and extraction handlers over `services`' queues, in this task, until the
/// crawl `job` ends; panics after 120 s.
pub async fn crawl_to_end(
    services: &pipeline_ops::Services,
    scrape: &scrape_worker::ScrapeHandler,
    extract: &extraction_worker::ExtractionHandler,
    job: uuid::Uuid,
) -> anyhow::Result<pipeline_store::crawl_status::CrawlProgress> {
    use pipeline_ops::Family;
    use pipeline_runner::run_next;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let a = run_next(services.queue(Family::Scrape), scrape, 16).await?;
        let b = run_next(services.queue(Family::Extraction), extract, 32).await?;
        pipeline_store::progress::refresh(&services.db, job).await?;
        let p = pipeline_store::crawl_status::progress(&services.db, job).await?;
        if p.ended {
            return Ok(p);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the crawl did not end in 120 s: {p:?}"
        );
        if a + b == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
