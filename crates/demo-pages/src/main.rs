//! `demo-pages [PORT]`: serves the quick-start's demo site on 127.0.0.1 (default port 8780).
//!
//! - `/articles/1`..`/articles/3`: articles that scrape and extract fine;
//! - `/flaky`: answers 500 twice, then the article (exercises retries, the DLQ and the
//!   requeue daemon's redrive);
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
</head><body><nav><a href="/">Home</a> <a href="/about">About</a></nav>
<article><h1>{title}</h1><h2>Overview</h2>{paragraphs}<h2>In practice</h2><p>{body}</p></article>
<footer>Copyright Demo Site. All rights reserved.</footer></body></html>"#
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
            "This page failed twice with a server error, went to the dead-letter queue, and \
             was redriven by the requeue daemon once its backoff had passed.",
        ))
        .into_response()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not a port: {p}"))
        })?,
        None => 8780,
    };
    let app = Router::new()
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
        .with_state(Arc::new(AtomicU32::new(0)));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("demo pages on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
