//! `demo-pages [PORT]`: serves the quick-start's demo site on 127.0.0.1 (default port 8780).
//!
//! - `/`: the home page, linking every other page (a crawl's start URL);
//! - `/articles/1`..`/articles/3`: articles that scrape and extract fine;
//! - `/about`: a short page about the site;
//! - `/flaky`: answers 500 twice, then the article. With the quick start's settings (two
//!   attempts per delivery) those two failures send it to the DLQ, and the requeue daemon's
//!   redrive brings it back; with the shipped settings (`queue.max_attempts = 4`) the
//!   worker's own retries get it and it never reaches the DLQ;
//! - `/gone`: always 404 (a permanent failure that waits in the DLQ for a person);
//! - `/robots.txt`: allows everything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

/// Failures `/flaky` answers before it recovers.
const FLAKY_FAILURES: u32 = 2;

const TOPICS: [(&str, &str); 3] = [
    (
        "How dead-letter queues keep failed work",
        "A dead-letter queue holds the messages a worker could not process, with the error, \
         the attempt count and everything needed to try again. Nothing is dropped: an \
         operator lists the queue, reads why each item failed, and redrives it once the cause \
         is fixed. Contact the operations team at ops@example.org for access.",
    ),
    (
        "Leases and at-least-once delivery",
        "A worker that reserves a message holds a lease on it. If the worker dies, the lease \
         runs out and another worker receives the message again. Acknowledgements are fenced \
         by a token, so a worker whose lease expired cannot delete a message another worker \
         now holds. Call +1 415 555 0100 for the on-call engineer.",
    ),
    (
        "Reconciling queues with the system of record",
        "Postgres records every source and its status. When Redis loses its data, a \
         reconciler finds the sources that made no progress for too long and that no queue, \
         lease or dead-letter queue holds, and enqueues them again. More at docs.example.com.",
    ),
];

const NAV: &str = r#"<nav><a href="/">Home</a> <a href="/about">About</a></nav>"#;

fn page(title: &str, main: &str) -> String {
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{title} | Demo Site</title></head>
<body>{NAV}
<main>{main}</main>
<footer>Copyright Demo Site. All rights reserved.</footer></body></html>"#
    )
}

fn article(title: &str, body: &str) -> String {
    let paragraphs = (1..=4)
        .map(|i| {
            format!(
                "<p>{body} (Part {i} of the explanation, with more detail each time: {body})</p>"
            )
        })
        .collect::<String>();
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>{title} | Demo Site</title>
<script type="application/ld+json">{{"@context":"https://schema.org","@type":"Article","headline":"{title}","publisher":{{"@type":"Organization","name":"Demo Pipeline Press"}},"author":{{"@type":"Person","name":"Ada Example"}}}}</script>
</head><body>{NAV}
<article><h1>{title}</h1><h2>Overview</h2>{paragraphs}<h2>In practice</h2><p>{body}</p></article>
<footer>Copyright Demo Site. All rights reserved.</footer></body></html>"#
    )
}

/// The home page: every article, then the site's other pages.
fn home() -> String {
    let articles = TOPICS
        .iter()
        .enumerate()
        .map(|(i, (title, _))| format!(r#"<li><a href="/articles/{}">{title}</a></li>"#, i + 1))
        .collect::<String>();
    page(
        "Home",
        &format!(
            r#"<h1>Demo Site</h1>
<p>Short articles about how the pipeline keeps work that fails, served on 127.0.0.1 for the
quick start and for trying a crawl.</p>
<h2>Articles</h2><ul>{articles}</ul>
<h2>Other pages</h2><ul>
<li><a href="/about">About this site</a></li>
<li><a href="/flaky">A page that fails twice, then recovers</a></li>
<li><a href="/gone">A page that is gone for good</a></li>
</ul>"#
        ),
    )
}

fn about() -> String {
    page(
        "About",
        "<h1>About this site</h1>\
         <p>The demo site serves a few articles that scrape and extract fine, one page that \
         answers a server error twice before it works, and one that always answers 404. \
         Submitting its pages, or crawling it from its home page, shows retries, the \
         dead-letter queue and the trail of every page in Postgres.</p>",
    )
}

async fn articles(Path(n): Path<usize>) -> Response {
    match TOPICS.get(n.wrapping_sub(1)) {
        Some((title, body)) => Html(article(title, body)).into_response(),
        None => (StatusCode::NOT_FOUND, "no such article").into_response(),
    }
}

async fn flaky(State(hits): State<Arc<AtomicU32>>) -> Response {
    let n = hits.fetch_add(1, Ordering::SeqCst);
    if n < FLAKY_FAILURES {
        (StatusCode::INTERNAL_SERVER_ERROR, "temporarily broken").into_response()
    } else {
        Html(article(
            "A page that recovered",
            "This page answered a server error twice before this answer. With two attempts \
             per delivery, as in the quick start, that sent it to the dead-letter queue, and \
             the requeue daemon redrove it once its backoff had passed; with more attempts, \
             the worker's own retries got it.",
        ))
        .into_response()
    }
}

/// The whole site.
fn app() -> Router {
    Router::new()
        .route("/", get(|| async { Html(home()) }))
        .route("/about", get(|| async { Html(about()) }))
        .route("/articles/{n}", get(articles))
        .route("/flaky", get(flaky))
        .route(
            "/gone",
            get(|| async { (StatusCode::NOT_FOUND, "gone for good") }),
        )
        .route(
            "/robots.txt",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain")],
                    "User-agent: *\nAllow: /\n",
                )
            }),
        )
        .with_state(Arc::new(AtomicU32::new(0)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not a port: {p}"))
        })?,
        None => 8780,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("demo pages on http://{}", listener.local_addr()?);
    axum::serve(listener, app()).await
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, VecDeque};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// `GET path` over a fresh connection: the status code and the body.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.expect("send");
        let mut raw = String::new();
        conn.read_to_string(&mut raw).await.expect("answer");
        let status = raw
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// The site-relative targets of a page's `href`s.
    fn links(html: &str) -> Vec<String> {
        html.split(r#"href=""#)
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .filter(|href| href.starts_with('/'))
            .map(str::to_owned)
            .collect()
    }

    #[tokio::test]
    async fn the_home_page_links_reach_every_page_of_the_site() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("its address");
        let server = tokio::spawn(async move { axum::serve(listener, app()).await });

        // Follow links from `/` as a crawler does, each page once.
        let mut seen: BTreeMap<String, u16> = BTreeMap::new();
        let mut todo = VecDeque::from(["/".to_owned()]);
        while let Some(path) = todo.pop_front() {
            if seen.contains_key(&path) {
                continue;
            }
            let (status, body) = get(addr, &path).await;
            seen.insert(path, status);
            todo.extend(links(&body));
        }
        server.abort();

        let mut expected: BTreeSet<String> = (1..=TOPICS.len())
            .map(|n| format!("/articles/{n}"))
            .collect();
        expected.extend(["/", "/about", "/flaky", "/gone"].map(str::to_owned));
        assert_eq!(
            seen.keys().cloned().collect::<BTreeSet<_>>(),
            expected,
            "the pages reached from /"
        );
        for (path, status) in &seen {
            let want = match path.as_str() {
                "/gone" => 404,
                "/flaky" => 500, // its first answer
                _ => 200,
            };
            assert_eq!(*status, want, "{path}");
        }
    }
}
