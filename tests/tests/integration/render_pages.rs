//! Rendering in a real headless Chromium, against pages served on loopback: content built by
//! script is extracted, pages are bounded, and every request a page makes to an address the
//! fetcher would refuse is refused and never reaches its listener.
//!
//! Needs Debian's `chromium`; without it these tests fail naming the install command, unless
//! `PIPELINE_SKIP_BROWSER_TESTS=1` (then they pass without running).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use integration_tests::{TestDb, TestRedis, settings_for};
use pipeline_core::Settings;
use pipeline_core::render::RenderMode;
use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::submit::{SubmitRequest, submit};
use pipeline_runner::run_next;
use pipeline_store::sources;
use scrape_worker::ScrapeHandler;
use serde_json::Value;
use tokio::net::TcpListener;
use uuid::Uuid;

/// Whether the browser is here; `false` (skip) only when the environment asks for it.
fn browser_present() -> bool {
    let present = std::path::Path::new("/usr/bin/chromium").is_file()
        || std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("chromium").is_file()));
    if !present {
        assert!(
            std::env::var("PIPELINE_SKIP_BROWSER_TESTS").as_deref() == Ok("1"),
            "chromium is not installed: `apt-get install chromium` (or set PIPELINE_SKIP_BROWSER_TESTS=1 to skip)"
        );
    }
    present
}

/// A listener that counts the connections it accepts and answers nothing useful: the
/// address a page must never reach.
struct Trap {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    async fn bind(ip: &str) -> Option<Self> {
        let listener = TcpListener::bind(format!("{ip}:0")).await.ok()?;
        let addr = listener.local_addr().ok()?;
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((_s, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Some(Self { addr, hits, task })
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Site {
    /// Targets the hostile page tries: (127.0.0.2, [::1], another port of 127.0.0.1).
    traps: Arc<Vec<String>>,
    popup_hits: Arc<AtomicUsize>,
}

const SPA_SHELL: &str = r#"<!doctype html><html><head><title>SPA</title></head><body><div id="app"></div><script src="/app.js"></script></body></html>"#;

const APP_JS: &str = r#"
fetch('/data.json').then(r => r.json()).then(data => {
  const app = document.getElementById('app');
  const h = document.createElement('h1'); h.textContent = data.title; app.appendChild(h);
  for (const p of data.paragraphs) {
    const e = document.createElement('p'); e.textContent = p; app.appendChild(e);
  }
  const a = document.createElement('a'); a.href = '/spa/next'; a.textContent = 'Next chapter';
  app.appendChild(a);
});
"#;

fn paragraphs(marker: &str) -> Vec<String> {
    (0..6)
        .map(|i| {
            format!(
                "{marker} paragraph {i}: the heron walks the shallow river at dawn, counting the \
                 smooth grey stones that the spring flood carried down from the hills, and the \
                 village keeps a record of every count in a ledger by the mill."
            )
        })
        .collect()
}

const TIMER_PAGE: &str = r#"<!doctype html><html><head><title>Timer</title></head><body><div id="root"><p class="spinner">Loading…</p></div><script>
setTimeout(function () {
  var root = document.getElementById('root');
  root.innerHTML = '';
  for (var i = 0; i < 6; i++) {
    var p = document.createElement('p');
    p.textContent = 'Timer paragraph ' + i + ': built one second after load, this text tells of the lighthouse keeper who logs every ship that passes the northern cape in winter storms.';
    root.appendChild(p);
  }
}, 1000);
</script></body></html>"#;

const SPINNER_PAGE: &str = r#"<!doctype html><html><head><title>Spinner</title></head><body><div id="root"><span id="s">Loading</span></div><script>
var n = 0; setInterval(function () { document.getElementById('s').textContent = 'Loading ' + (n++); }, 50);
</script></body></html>"#;

const HOG_PAGE: &str = r#"<!doctype html><html><head><title>Hog</title></head><body><div id="root"></div><script>
var keep = [];
setInterval(function () { for (var i = 0; i < 20; i++) { keep.push(new Array(250000).fill(Math.random())); } }, 5);
</script></body></html>"#;

async fn spa() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html")], SPA_SHELL)
}

async fn app_js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/javascript")], APP_JS)
}

async fn data_json() -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "title": "Rendered chapter",
        "paragraphs": paragraphs("Fetched"),
    }))
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html")], body).into_response()
}

async fn hostile(State(site): State<Site>) -> Response {
    let t = &site.traps;
    let (v4, v6, port) = (&t[0], &t[1], &t[2]);
    let page = format!(
        r#"<!doctype html><html><head><title>Hostile</title></head><body><div id="app"></div>
<img src="http://{v6}/pixel.png">
<iframe src="http://169.254.169.254/latest/meta-data/"></iframe>
<iframe src="/to-private"></iframe>
<script>
fetch('http://{v4}/steal').catch(function () {{}});
fetch('http://{port}/other-port').catch(function () {{}});
try {{ new WebSocket('ws://{v4}/ws'); }} catch (e) {{}}
var x = new XMLHttpRequest(); x.open('GET', 'http://{v6}/xhr'); x.send();
var app = document.getElementById('app');
for (var i = 0; i < 5; i++) {{ var p = document.createElement('p'); p.textContent = 'Guarded paragraph ' + i + ': the page tried to reach addresses inside the network and the proxy refused every one of them before any connection was made.'; app.appendChild(p); }}
</script></body></html>"#
    );
    ([(header::CONTENT_TYPE, "text/html")], page).into_response()
}

async fn to_private(State(site): State<Site>) -> Redirect {
    Redirect::temporary(&format!("http://{}/redirected", site.traps[0]))
}

async fn popup(State(site): State<Site>, headers: HeaderMap) -> Response {
    let _ = headers;
    let _ = site;
    html(
        r#"<!doctype html><html><head><title>Popups</title></head><body><div id="app"></div><script>
window.open('/popup-target'); alert('hello'); confirm('sure?'); prompt('name?');
var f = document.createElement('iframe'); document.body.appendChild(f);
try { f.contentWindow.alert('from a frame'); } catch (e) {}
var app = document.getElementById('app');
for (var i = 0; i < 5; i++) { var p = document.createElement('p'); p.textContent = 'Popup paragraph ' + i + ': dialogs and windows the page opened were dismissed, and the text it built after them was still read in full by the worker.'; app.appendChild(p); }
</script></body></html>"#,
    )
}

async fn popup_target(State(site): State<Site>) -> Response {
    site.popup_hits.fetch_add(1, Ordering::SeqCst);
    html("<html><body>popup</body></html>")
}

struct Env {
    base: String,
    services: Services,
    handler: ScrapeHandler,
    site: Site,
    _traps: Vec<Trap>,
    _server: tokio::task::JoinHandle<()>,
    _redis: TestRedis,
    _db: TestDb,
}

async fn env(tweak: impl FnOnce(&mut Settings)) -> anyhow::Result<Env> {
    pipeline_core::install_crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut traps = Vec::new();
    let mut targets = Vec::new();
    // 127.0.0.2 is loopback on Linux; [::1] may be missing on a host without IPv6, then its
    // case is skipped.
    for ip in ["127.0.0.2", "[::1]", "127.0.0.1"] {
        match Trap::bind(ip).await {
            Some(t) => {
                targets.push(t.addr.to_string());
                traps.push(t);
            }
            None => targets.push(format!("{ip}:9")),
        }
    }
    let site = Site {
        traps: Arc::new(targets),
        popup_hits: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route("/spa", get(spa))
        .route("/spa/next", get(spa))
        .route("/app.js", get(app_js))
        .route("/data.json", get(data_json))
        .route("/timer", get(|| async { html(TIMER_PAGE) }))
        .route("/spinner", get(|| async { html(SPINNER_PAGE) }))
        .route("/hog", get(|| async { html(HOG_PAGE) }))
        .route("/hostile", get(hostile))
        .route("/to-private", get(to_private))
        .route("/popup", get(popup))
        .route("/popup-target", get(popup_target))
        .route("/robots.txt", get(|| async { (StatusCode::NOT_FOUND, "") }))
        .with_state(site.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let mut settings = settings_for(&db, &redis);
    // Only the site's own port: every other loopback port is as refused as any private address.
    settings.scrape.allow_private_hosts = vec![format!("127.0.0.1:{}", addr.port())];
    settings.scrape.per_host_min_delay_ms = 0;
    settings.queue.max_attempts = 1;
    settings.render.enabled = true;
    settings.render.default = RenderMode::Auto;
    settings.render.settle_timeout_ms = 4000;
    settings.render.settle_quiet_ms = 300;
    settings.render.empty_quiet_ms = 1500;
    settings.render.page_timeout_ms = 20000;
    settings.render.max_page_memory_mb = 256;
    tweak(&mut settings);
    let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
    let handler = scrape_worker::handler_for(&services)?;
    Ok(Env {
        base: format!("http://{addr}"),
        services,
        handler,
        site,
        _traps: traps,
        _server: server,
        _redis: redis,
        _db: db,
    })
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Submits one URL and runs the worker until its source is scraped or dead-lettered.
    async fn scrape(&self, path: &str, render: Option<RenderMode>) -> anyhow::Result<Uuid> {
        let out = submit(
            &self.services,
            &SubmitRequest {
                urls: vec![self.url(path)],
                project_id: None,
                project_name: None,
                source_group: None,
                model_token_cap: None,
                priority: Default::default(),
                render,
            },
            pipeline_store::Actor::Cli,
        )
        .await?;
        let id = out.sources[0].source_id;
        let queue = self.services.queue(Family::Scrape);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let n = run_next(queue, &self.handler, 4).await?;
            let s = sources::get(&self.services.db, id).await?;
            if matches!(s.status.as_str(), "scraped" | "dead_lettered") {
                return Ok(id);
            }
            assert!(Instant::now() < deadline, "{path} did not settle in time");
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn status(&self, id: Uuid) -> anyhow::Result<String> {
        Ok(sources::get(&self.services.db, id)
            .await?
            .status
            .as_str()
            .to_owned())
    }

    async fn body(&self, id: Uuid) -> anyhow::Result<String> {
        Ok(sources::raw_content(&self.services.db, id)
            .await?
            .unwrap_or_default())
    }

    /// The `render` detail of the source's `scraped` event.
    async fn render_detail(&self, id: Uuid) -> anyhow::Result<Value> {
        let events = sources::events(&self.services.db, id).await?;
        Ok(events
            .into_iter()
            .rev()
            .find_map(|e| e.detail.and_then(|d| d.get("render").cloned()))
            .unwrap_or(Value::Null))
    }

    /// The error the source's last failure recorded.
    async fn last_error(&self, id: Uuid) -> anyhow::Result<String> {
        let events = sources::events(&self.services.db, id).await?;
        Ok(events
            .into_iter()
            .rev()
            .find_map(|e| {
                e.detail
                    .and_then(|d| d.get("error").and_then(Value::as_str).map(str::to_owned))
            })
            .unwrap_or_default())
    }

    async fn shutdown(&self) {
        self.handler.shutdown().await;
    }
}

#[tokio::test]
async fn script_built_pages_are_rendered_and_their_text_and_links_extracted() -> anyhow::Result<()>
{
    if !browser_present() {
        return Ok(());
    }
    let env = env(|_| {}).await?;

    // A single-page app whose text exists only after fetch() of a JSON file.
    let spa = env.scrape("/spa", None).await?;
    assert_eq!(env.status(spa).await?, "scraped");
    let body = env.body(spa).await?;
    assert!(body.contains("Fetched paragraph 5"), "{body}");
    assert!(
        body.contains("/spa/next"),
        "the link built by script is in the DOM"
    );
    let detail = env.render_detail(spa).await?;
    assert_eq!(detail["rendered"], true, "{detail}");
    assert_eq!(detail["mode"], "auto");
    assert_eq!(detail["settled"], true, "{detail}");
    assert!(detail["reason"].is_string());

    // A page that builds its text after a one-second timer: the settle rule waits for it.
    let timer = env.scrape("/timer", None).await?;
    assert_eq!(env.status(timer).await?, "scraped");
    let body = env.body(timer).await?;
    assert!(body.contains("Timer paragraph 5"), "{body}");

    // `never` keeps the shell as sent.
    let never = env.scrape("/spa?never", Some(RenderMode::Never)).await?;
    assert_eq!(env.status(never).await?, "scraped");
    assert!(!env.body(never).await?.contains("Fetched paragraph"));
    assert_eq!(env.render_detail(never).await?, Value::Null);
    env.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_page_that_never_settles_is_bounded_and_taken_as_it_is() -> anyhow::Result<()> {
    if !browser_present() {
        return Ok(());
    }
    let env = env(|s| s.render.settle_timeout_ms = 2000).await?;
    let started = Instant::now();
    let id = env.scrape("/spinner", Some(RenderMode::Always)).await?;
    assert_eq!(env.status(id).await?, "scraped");
    let detail = env.render_detail(id).await?;
    assert_eq!(detail["settled"], false, "{detail}");
    assert!(env.body(id).await?.contains("Loading"));
    assert!(started.elapsed() < Duration::from_secs(30));
    env.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn every_request_to_a_refused_address_is_refused_and_reaches_nothing() -> anyhow::Result<()> {
    if !browser_present() {
        return Ok(());
    }
    let env = env(|_| {}).await?;
    let id = env.scrape("/hostile", Some(RenderMode::Always)).await?;
    assert_eq!(
        env.status(id).await?,
        "scraped",
        "{}",
        env.last_error(id).await?
    );
    // The page's own script ran (its text is there) ...
    assert!(env.body(id).await?.contains("Guarded paragraph 4"));
    // ... and nothing it aimed at an address outside the allow list was reached.
    for trap in &env._traps {
        assert_eq!(trap.hits(), 0, "{} was reached", trap.addr);
    }
    let detail = env.render_detail(id).await?;
    let refused: Vec<String> = detail["refusals"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["target"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let seen = |needle: &str| refused.iter().any(|t| t.contains(needle));
    assert!(seen(&env.site.traps[0]), "127.0.0.2 refused: {detail}");
    assert!(
        seen(&env.site.traps[2]),
        "another loopback port refused: {detail}"
    );
    assert!(seen("169.254.169.254"), "link-local refused: {detail}");
    if env._traps.iter().any(|t| t.addr.is_ipv6()) {
        assert!(seen(&env.site.traps[1]), "[::1] refused: {detail}");
    }
    assert!(detail["refused"].as_u64().unwrap_or(0) >= 5, "{detail}");
    env.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_page_that_eats_memory_is_stopped_and_dead_lettered() -> anyhow::Result<()> {
    if !browser_present() {
        return Ok(());
    }
    let env = env(|_| {}).await?;
    let id = env.scrape("/hog", Some(RenderMode::Always)).await?;
    assert_eq!(env.status(id).await?, "dead_lettered");
    let error = env.last_error(id).await?;
    assert!(
        error.contains("renderer") || error.contains("memory"),
        "{error}"
    );
    // The browser survives a renderer's death and renders the next page.
    let next = env.scrape("/spa", Some(RenderMode::Always)).await?;
    assert_eq!(env.status(next).await?, "scraped");
    assert!(env.body(next).await?.contains("Fetched paragraph 5"));
    env.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn popups_and_dialogs_do_not_block_a_page() -> anyhow::Result<()> {
    if !browser_present() {
        return Ok(());
    }
    let env = env(|_| {}).await?;
    let id = env.scrape("/popup", Some(RenderMode::Always)).await?;
    assert_eq!(
        env.status(id).await?,
        "scraped",
        "{}",
        env.last_error(id).await?
    );
    assert!(env.body(id).await?.contains("Popup paragraph 4"));
    assert_eq!(
        env.site.popup_hits.load(Ordering::SeqCst),
        0,
        "no popup opened"
    );
    env.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_crawl_follows_links_that_exist_only_after_rendering() -> anyhow::Result<()> {
    if !browser_present() {
        return Ok(());
    }
    let env = env(|_| {}).await?;
    let req = pipeline_ops::crawl::CrawlRequest {
        url: env.url("/spa"),
        sitemaps: Some(false),
        max_pages: Some(5),
        render: Some(RenderMode::Auto),
        ..Default::default()
    };
    let job = pipeline_ops::crawl::start(&env.services, &req, pipeline_store::Actor::Cli)
        .await?
        .job_id;
    // The shell's HTML has no link; the script builds one to /spa/next. The crawl admits it
    // (as a page of the crawl) only if links are read from the rendered DOM.
    let queue = env.services.queue(Family::Scrape);
    let deadline = Instant::now() + Duration::from_secs(90);
    let next = env.url("/spa/next");
    loop {
        let n = run_next(queue, &env.handler, 4).await?;
        let (found,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM crawl_pages p JOIN sources s ON s.id = p.source_id
              WHERE p.job_id = $1 AND s.uri = $2",
        )
        .bind(job)
        .bind(&next)
        .fetch_one(&env.services.db)
        .await?;
        if found == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the crawl never admitted the script-built link {next}"
        );
        if n == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    env.shutdown().await;
    Ok(())
}
