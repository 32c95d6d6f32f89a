//! A server on 127.0.0.1 (a free port) serving pages built to break parsers and fetchers:
//! the hostile-page corpus of the scrape and extraction workers' tests. Each route is one
//! page; [`PAGES`] lists them with what the pipeline must make of them.
//!
//! | path | what it serves |
//! |---|---|
//! | `/deep/{divs,tables,lists,inline}` | 200,000 levels of nesting (about 1-3 MB) |
//! | `/bomb/gzip`, `/bomb/brotli` | 64 MiB of HTML compressed to a few KiB |
//! | `/endless/stall` | a chunked body that sends its start, then nothing, never ending |
//! | `/endless/flood` | a chunked body of HTML that never ends |
//! | `/trickle` | one byte a second, forever |
//! | `/loop/{n}` | a redirect loop |
//! | `/chain/{n}` | a chain of `n` redirects, then a page |
//! | `/header-bomb` | 20,000 response headers |
//! | `/single-line` | a 10 MB page on one line |
//! | `/links` | 270,000 links (as many as fit under the test's body cap) |
//! | `/attributes` | one element with 300,000 attributes |
//! | `/nul` | an article with NUL bytes and invalid UTF-8 in it |
//! | `/lying-charset` | Latin-1 bytes declared as UTF-8 |
//! | `/binary` | random bytes declared as `text/html` |
//! | `/script-only` | a page of scripts and nothing else |
//! | `/huge` | a well-formed article just under [`HUGE_BYTES`] |

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

/// Size of the `/huge` page; tests set the body cap just above it.
pub const HUGE_BYTES: usize = 3 * 1024 * 1024 - 16 * 1024;

/// What must become of a page: its path, the source's final status, and a piece of its
/// `last_error` (empty for success).
pub struct Expected {
    /// The page's path on the server.
    pub path: &'static str,
    /// `extracted` or `dead_lettered`.
    pub status: &'static str,
    /// Text the source's `last_error` must contain.
    pub error: &'static str,
}

/// The corpus and its outcomes under the test settings (body cap just over [`HUGE_BYTES`],
/// one attempt, read timeout 1.5 s, whole fetch 4 s, 5 redirects).
pub const PAGES: &[Expected] = &[
    Expected {
        path: "/deep/divs",
        status: "extracted",
        error: "",
    },
    Expected {
        path: "/deep/tables",
        status: "extracted",
        error: "",
    },
    Expected {
        path: "/deep/lists",
        status: "extracted",
        error: "",
    },
    Expected {
        path: "/deep/inline",
        status: "extracted",
        error: "",
    },
    Expected {
        path: "/bomb/gzip",
        status: "dead_lettered",
        error: "body over the size cap",
    },
    Expected {
        path: "/bomb/brotli",
        status: "dead_lettered",
        error: "body over the size cap",
    },
    Expected {
        path: "/endless/stall",
        status: "dead_lettered",
        error: "timed out",
    },
    Expected {
        path: "/endless/flood",
        status: "dead_lettered",
        error: "body over the size cap",
    },
    Expected {
        path: "/trickle",
        status: "dead_lettered",
        error: "the whole fetch took over",
    },
    Expected {
        path: "/loop/0",
        status: "dead_lettered",
        error: "too many redirects",
    },
    Expected {
        path: "/chain/20",
        status: "dead_lettered",
        error: "too many redirects",
    },
    Expected {
        path: "/header-bomb",
        status: "dead_lettered",
        error: "malformed response",
    },
    Expected {
        path: "/single-line",
        status: "dead_lettered",
        error: "body over the size cap",
    },
    Expected {
        path: "/links",
        status: "dead_lettered",
        error: "elements, over the cap of 250000",
    },
    Expected {
        path: "/attributes",
        status: "dead_lettered",
        error: "too expensive to extract: an element with",
    },
    Expected {
        path: "/nul",
        status: "extracted",
        error: "",
    },
    Expected {
        path: "/lying-charset",
        status: "extracted",
        error: "",
    },
    Expected {
        path: "/binary",
        status: "dead_lettered",
        error: "binary content declared as text/html",
    },
    Expected {
        path: "/script-only",
        status: "dead_lettered",
        error: "no text content",
    },
    Expected {
        path: "/huge",
        status: "extracted",
        error: "",
    },
];

struct Bombs {
    gzip: Bytes,
    brotli: Bytes,
}

/// The running server; it stops when dropped.
pub struct HostileServer {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl HostileServer {
    /// Starts the server on 127.0.0.1 with a free port (the bombs are compressed first).
    pub async fn start() -> anyhow::Result<Self> {
        let bombs = tokio::task::spawn_blocking(make_bombs).await??;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = router(Arc::new(bombs));
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            // Serving errors only end the fixture; the test then fails on its own assertions.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
        });
        Ok(Self { addr, stop })
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn make_bombs() -> anyhow::Result<Bombs> {
    use std::io::Write;
    let mut plain = b"<html><body><p>".to_vec();
    plain.resize(64 * 1024 * 1024, b'a');
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&plain)?;
    let gzip = gz.finish()?;
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 64 * 1024, 5, 22);
        w.write_all(&plain)?;
    }
    Ok(Bombs {
        gzip: gzip.into(),
        brotli: br.into(),
    })
}

fn router(bombs: Arc<Bombs>) -> Router {
    Router::new()
        .route("/deep/{kind}", get(deep))
        .route("/bomb/{kind}", get(bomb))
        .route("/endless/{kind}", get(endless))
        .route("/trickle", get(trickle))
        .route("/loop/{n}", get(redirect_loop))
        .route("/chain/{n}", get(chain))
        .route("/header-bomb", get(header_bomb))
        .route(
            "/single-line",
            get(|| async { html(format!("<p>{}</p>", "word ".repeat(2 * 1024 * 1024))) }),
        )
        // End tags left out, as the tree builder allows, so most links fit under the cap.
        .route(
            "/links",
            get(|| async { html(format!("<body>{}", "<a href=x>y".repeat(270_000))) }),
        )
        .route("/attributes", get(attributes))
        .route("/nul", get(nul))
        .route("/lying-charset", get(lying_charset))
        .route("/binary", get(binary))
        .route(
            "/script-only",
            get(|| async {
                html(format!(
                    "<html><body>{}</body></html>",
                    "<script>var x = 1;</script>".repeat(2000)
                ))
            }),
        )
        .route("/huge", get(|| async { html(huge_article()) }))
        .route("/robots.txt", get(|| async { StatusCode::NOT_FOUND }))
        .with_state(bombs)
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

const ARTICLE: &str = "<p>The river rose overnight and flooded the lower town. Residents were \
    evacuated by boat before dawn, and the council opened the school as a shelter. Write to \
    desk@river.example for updates.</p>";

async fn deep(Path(kind): Path<String>) -> Response {
    let (open, close) = match kind.as_str() {
        "tables" => ("<table><tr><td>", "</td></tr></table>"),
        "lists" => ("<ul><li>", "</li></ul>"),
        "inline" => ("<b>", "</b>"),
        _ => ("<div>", "</div>"),
    };
    let n = 200_000 / (open.len() / 3).max(1);
    html(format!(
        "<html><head><title>Deep</title></head><body>{}{ARTICLE}{}</body></html>",
        open.repeat(n),
        close.repeat(n)
    ))
}

async fn bomb(State(bombs): State<Arc<Bombs>>, Path(kind): Path<String>) -> Response {
    let (encoding, body) = if kind == "brotli" {
        ("br", bombs.brotli.clone())
    } else {
        ("gzip", bombs.gzip.clone())
    };
    (
        [
            (header::CONTENT_TYPE, "text/html"),
            (header::CONTENT_ENCODING, encoding),
        ],
        body,
    )
        .into_response()
}

async fn endless(Path(kind): Path<String>) -> Response {
    let flood = kind == "flood";
    let stream = futures::stream::unfold(0u64, move |i| async move {
        if i > 0 && !flood {
            // Sent the start; now silence, forever.
            std::future::pending::<()>().await;
        }
        let chunk = if i == 0 {
            Bytes::from_static(b"<html><body><p>")
        } else {
            Bytes::from(vec![b'x'; 64 * 1024])
        };
        Some((Ok::<_, std::io::Error>(chunk), i + 1))
    });
    (
        [(header::CONTENT_TYPE, "text/html")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn trickle() -> Response {
    let stream = futures::stream::unfold(0u64, |i| async move {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Some((Ok::<_, std::io::Error>(Bytes::from_static(b"<")), i + 1))
    });
    (
        [(header::CONTENT_TYPE, "text/html")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn redirect_loop(Path(n): Path<u64>) -> Response {
    let next = format!("/loop/{}", (n + 1) % 2);
    (StatusCode::FOUND, [(header::LOCATION, next)]).into_response()
}

async fn chain(Path(n): Path<u64>) -> Response {
    if n == 0 {
        return html(format!("<html><body>{ARTICLE}</body></html>"));
    }
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("/chain/{}", n - 1))],
    )
        .into_response()
}

async fn header_bomb() -> Response {
    let mut headers = HeaderMap::new();
    for i in 0..20_000 {
        let name = HeaderName::try_from(format!("x-bomb-{i}")).expect("a valid header name");
        headers.insert(name, HeaderValue::from_static("0123456789abcdef"));
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    (headers, format!("<html><body>{ARTICLE}</body></html>")).into_response()
}

async fn attributes() -> Response {
    let attrs: String = (0..300_000).map(|i| format!(" a{i}")).collect();
    html(format!(
        "<html><body><div{attrs}>{ARTICLE}</div></body></html>"
    ))
}

async fn nul() -> Response {
    let mut body = b"<html><head><title>Nul</title></head><body><article>".to_vec();
    for _ in 0..5 {
        body.extend_from_slice(ARTICLE.as_bytes());
        body.extend_from_slice(b"<p>bad \xff\xfe bytes \0 and \xc3\x28 more\0</p>");
    }
    body.extend_from_slice(b"</article></body></html>");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn lying_charset() -> Response {
    let mut body = b"<html><body><article>".to_vec();
    for _ in 0..5 {
        body.extend_from_slice(ARTICLE.as_bytes());
        body.extend_from_slice(b"<p>Caf\xe9 cr\xe8me br\xfbl\xe9e, na\xefve.</p>");
    }
    body.extend_from_slice(b"</article></body></html>");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn binary() -> Response {
    // A fixed pseudo-random sequence (xorshift): binary-looking, the same on every run.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let body: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    ([(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// A well-formed article of many sections, just under [`HUGE_BYTES`].
pub fn huge_article() -> String {
    let mut out = String::from(
        "<!DOCTYPE html><html><head><title>A very long report</title></head><body><article><h1>A very long report</h1>",
    );
    let mut i = 0;
    while out.len() < HUGE_BYTES - 4096 {
        // A heading every ten paragraphs: sections of a few chunks each, as in long reports.
        if i % 10 == 0 {
            out.push_str(&format!("<h2>Part {}</h2>", i / 10));
        }
        out.push_str(&format!(
            "<p>Paragraph {i} of the report explains, in plain words, what the committee \
             found about the river, the levee and the pumps during week {i}. The findings \
             were discussed at length and the minutes were published the next day.</p>"
        ));
        i += 1;
    }
    out.push_str("</article></body></html>");
    out
}
