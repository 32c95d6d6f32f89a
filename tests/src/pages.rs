//! A fixture HTTP server on 127.0.0.1 (a free port) serving the pages scrape tests need:
//! ordinary HTML pages, error statuses, pages that fail a set number of times before they
//! answer, slow pages, redirect chains and loops, huge bodies, binary content types, a
//! robots.txt with a disallow, and 429 with Retry-After.
//!
//! ```ignore
//! let server = pages::PageServer::start().await;
//! let url = server.url("/ok/1");
//! server.set_failures("/flaky", 2); // the next two requests to /flaky answer 500
//! assert_eq!(server.hits("/flaky"), 3);
//! ```
//!
//! Routes (every route also counts its hits; `set_failures*` works on any path):
//!
//! | path | answer |
//! |---|---|
//! | `/ok/{id}` | 200 HTML, title `Page {id}` |
//! | `/flaky`, `/flaky/{*rest}` | 200 HTML once its configured failures are used up |
//! | `/status/{code}` | that status, a short HTML body |
//! | `/slow/{ms}`, `/slow/{ms}/{*rest}` | 200 HTML after `ms` milliseconds |
//! | `/redirect/{n}` | `n` redirects (302), then `/ok/redirected` |
//! | `/loop/{n}` | redirects to `/loop/{n+1}` forever |
//! | `/redirect-to?url=...` | one redirect to any URL (e.g. a private address) |
//! | `/huge/{bytes}` | 200 HTML of `bytes` bytes, streamed without a Content-Length |
//! | `/huge-declared/{bytes}` | the same with a Content-Length |
//! | `/binary` | 200 `application/octet-stream` |
//! | `/image.png` | 200 `image/png` |
//! | `/text` | 200 `text/plain; charset=utf-8` |
//! | `/latin1` | 200 HTML in ISO-8859-1, declared in the Content-Type |
//! | `/robots.txt` | `User-agent: *` / `Disallow: /private/` (changeable: [`PageServer::set_robots`]) |
//! | `/private/{*rest}` | 200 HTML (robots.txt forbids it) |
//! | `/rate-limited/{secs}` | 429 with `Retry-After: {secs}` |
//! | `/hang/{*rest}` | never answers while hanging is on (the default), else 200 HTML ([`PageServer::set_hanging`]) |

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// The default robots.txt: everything under `/private/` is disallowed for every agent.
pub const DEFAULT_ROBOTS: &str = "User-agent: *\nDisallow: /private/\n";

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The request path (no query).
    pub path: String,
    /// When it arrived.
    pub at: Instant,
    /// Its User-Agent header, if any.
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Failing {
    remaining: usize,
    status: StatusCode,
    retry_after_secs: Option<u64>,
}

#[derive(Default)]
struct Shared {
    hits: Mutex<Vec<Hit>>,
    failing: Mutex<HashMap<String, Failing>>,
    robots: Mutex<Option<String>>,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    /// `/hang/...` answers only once this is set.
    hang_released: AtomicBool,
}

/// The running fixture server; it stops when dropped.
pub struct PageServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl PageServer {
    /// Starts a server on 127.0.0.1 with a free port, on the current runtime.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            robots: Mutex::new(Some(DEFAULT_ROBOTS.to_owned())),
            ..Shared::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the listener's address");
        let app = router(shared.clone());
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

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The next `n` requests to `path` answer 500 (before the route's own answer).
    /// Setting 0 "fixes" the page at once.
    pub fn set_failures(&self, path: &str, n: usize) {
        self.set_failures_with(path, n, StatusCode::INTERNAL_SERVER_ERROR, None);
    }

    /// The next `n` requests to `path` answer `status`, with `Retry-After` when given.
    pub fn set_failures_with(
        &self,
        path: &str,
        n: usize,
        status: StatusCode,
        retry_after_secs: Option<u64>,
    ) {
        self.shared.failing.lock().expect("lock").insert(
            path.to_owned(),
            Failing {
                remaining: n,
                status,
                retry_after_secs,
            },
        );
    }

    /// Whether `/hang/...` requests hang (the default) or answer; releasing also answers the
    /// requests already waiting.
    pub fn set_hanging(&self, hanging: bool) {
        self.shared.hang_released.store(!hanging, Ordering::SeqCst);
    }

    /// Replaces robots.txt; `None` makes `/robots.txt` answer 404.
    pub fn set_robots(&self, body: Option<&str>) {
        *self.shared.robots.lock().expect("lock") = body.map(str::to_owned);
    }

    /// How many requests `path` received (query ignored).
    pub fn hits(&self, path: &str) -> usize {
        self.shared
            .hits
            .lock()
            .expect("lock")
            .iter()
            .filter(|h| h.path == path)
            .count()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Hit> {
        self.shared.hits.lock().expect("lock").clone()
    }

    /// Requests so far, all paths.
    pub fn total_hits(&self) -> usize {
        self.shared.hits.lock().expect("lock").len()
    }

    /// The most requests the server was answering at one moment.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ok/{id}", get(ok_page))
        .route("/flaky", get(|| async { html_page("Flaky page") }))
        .route("/flaky/{*rest}", get(|| async { html_page("Flaky page") }))
        .route("/status/{code}", get(status_page))
        .route("/slow/{ms}", get(slow_page))
        .route("/slow/{ms}/{*rest}", get(slow_page_rest))
        .route("/redirect/{n}", get(redirect_chain))
        .route("/loop/{n}", get(redirect_loop))
        .route("/redirect-to", get(redirect_to))
        .route("/huge/{bytes}", get(huge_streamed))
        .route("/huge-declared/{bytes}", get(huge_declared))
        .route("/binary", get(binary))
        .route("/image.png", get(png))
        .route("/text", get(text))
        .route("/latin1", get(latin1))
        .route("/robots.txt", get(robots))
        .route("/private/{*rest}", get(|| async { html_page("Private") }))
        .route("/rate-limited/{secs}", get(rate_limited))
        .route("/hang/{*rest}", get(hang))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            count_and_fail,
        ))
        .with_state(shared)
}

/// Counts the hit, tracks concurrency, and answers a configured failure instead of the route.
async fn count_and_fail(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    shared.hits.lock().expect("lock").push(Hit {
        path: path.clone(),
        at: Instant::now(),
        user_agent,
    });
    let failing = {
        let mut map = shared.failing.lock().expect("lock");
        match map.get_mut(&path) {
            Some(f) if f.remaining > 0 => {
                f.remaining -= 1;
                Some(*f)
            }
            _ => None,
        }
    };
    if let Some(f) = failing {
        let mut resp = (f.status, html_body("Failing", "configured failure")).into_response();
        if let Some(secs) = f.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return resp;
    }
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak_in_flight.fetch_max(now, Ordering::SeqCst);
    let resp = next.run(req).await;
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    resp
}

fn html_body(title: &str, text: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{text}</p></body></html>"
    )
}

fn html_page(title: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html_body(
            title,
            "A fixture page with a paragraph of ordinary text about nothing in particular.",
        ),
    )
        .into_response()
}

async fn ok_page(Path(id): Path<String>) -> Response {
    html_page(&format!("Page {id}"))
}

async fn status_page(Path(code): Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html_body(&format!("Status {code}"), "as asked"),
    )
        .into_response()
}

async fn slow_page(Path(ms): Path<u64>) -> Response {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    html_page(&format!("Slow {ms}"))
}

async fn slow_page_rest(Path((ms, rest)): Path<(u64, String)>) -> Response {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    html_page(&format!("Slow {rest}"))
}

fn redirect(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
}

async fn redirect_chain(Path(n): Path<u32>) -> Response {
    if n == 0 {
        redirect("/ok/redirected")
    } else {
        redirect(&format!("/redirect/{}", n - 1))
    }
}

async fn redirect_loop(Path(n): Path<u64>) -> Response {
    redirect(&format!("/loop/{}", n + 1))
}

async fn redirect_to(Query(q): Query<HashMap<String, String>>) -> Response {
    match q.get("url") {
        Some(url) => redirect(url),
        None => (StatusCode::BAD_REQUEST, "url missing").into_response(),
    }
}

fn huge_body(bytes: usize) -> Body {
    const CHUNK: usize = 64 * 1024;
    let head = b"<!doctype html><html><head><title>Huge</title></head><body><p>".to_vec();
    let stream = futures::stream::unfold((0usize, head), move |(sent, head)| async move {
        if sent >= bytes {
            return None;
        }
        let n = CHUNK.min(bytes - sent);
        let mut chunk = vec![b'x'; n];
        let h = head.len().min(n);
        if sent == 0 {
            chunk[..h].copy_from_slice(&head[..h]);
        }
        Some((Ok::<_, Infallible>(Bytes::from(chunk)), (sent + n, head)))
    });
    Body::from_stream(stream)
}

async fn huge_streamed(Path(bytes): Path<usize>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        huge_body(bytes),
    )
        .into_response()
}

async fn huge_declared(Path(bytes): Path<usize>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    (headers, huge_body(bytes)).into_response()
}

async fn binary() -> Response {
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        vec![0u8, 1, 2, 3, 255, 254, 253],
    )
        .into_response()
}

async fn png() -> Response {
    (
        [(header::CONTENT_TYPE, "image/png")],
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
    )
        .into_response()
}

async fn text() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Plain text page.\nSecond line.\n",
    )
        .into_response()
}

async fn latin1() -> Response {
    // "Café crème" in ISO-8859-1: é is 0xE9, è is 0xE8.
    let mut body =
        b"<html><head><title>Caf\xe9</title></head><body><p>Caf\xe9 cr\xe8me</p></body></html>"
            .to_vec();
    body.shrink_to_fit();
    (
        [(header::CONTENT_TYPE, "text/html; charset=iso-8859-1")],
        body,
    )
        .into_response()
}

async fn robots(State(shared): State<Arc<Shared>>) -> Response {
    match shared.robots.lock().expect("lock").clone() {
        Some(body) => ([(header::CONTENT_TYPE, "text/plain")], body).into_response(),
        None => (StatusCode::NOT_FOUND, "no robots.txt").into_response(),
    }
}

async fn hang(State(shared): State<Arc<Shared>>, Path(rest): Path<String>) -> Response {
    while !shared.hang_released.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    html_page(&format!("Released {rest}"))
}

async fn rate_limited(Path(secs): Path<u64>) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.to_string())],
        "slow down",
    )
        .into_response()
}
