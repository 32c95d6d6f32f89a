//! An `allow_private_hosts` entry with a port allows its host on that port only, in the
//! fetcher too: by address or by name, on the first request or on a redirect hop. The
//! listener on the other port must see no connection at all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use scrape_worker::{FetchError, FetchOptions, Fetcher};
use tokio::net::TcpListener;

/// A local server counting its connections: `/to/PORT` redirects to `127.0.0.1:PORT`, any
/// other path answers a small page.
async fn origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let resp = match req.uri().path().strip_prefix("/to/") {
                    Some(port) => Response::builder()
                        .status(302)
                        .header("location", format!("http://127.0.0.1:{port}/"))
                        .body(String::new()),
                    None => Response::builder()
                        .header("content-type", "text/html")
                        .body("<html><title>t</title><p>hello</p></html>".to_owned()),
                };
                Ok::<_, std::convert::Infallible>(resp.unwrap())
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, accepted)
}

fn fetcher_allowing(allow: &[String]) -> Result<Fetcher, FetchError> {
    pipeline_core::install_crypto_provider();
    Fetcher::new(
        FetchOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(10),
            max_redirects: 5,
            max_body_bytes: 1 << 20,
            allowed_content_types: vec!["text/html".into()],
            user_agent: "test/1".into(),
            respect_robots_txt: false,
            robots_cache_ttl: Duration::from_secs(60),
            allow_private_hosts: allow.to_vec(),
        },
        None,
    )
}

#[tokio::test]
async fn a_port_entry_allows_that_port_only() {
    let (a, _) = origin().await;
    let (b, b_accepted) = origin().await;
    let fetcher = fetcher_allowing(&[a.to_string(), format!("localhost:{}", a.port())]).unwrap();

    let page = fetcher.fetch(&format!("http://{a}/")).await.unwrap();
    assert!(page.body.contains("hello"));
    let page = fetcher
        .fetch(&format!("http://localhost:{}/", a.port()))
        .await
        .unwrap();
    assert!(page.body.contains("hello"));

    for url in [
        // By address, by name (the resolver of that port's client), by a redirect hop.
        format!("http://{b}/"),
        format!("http://localhost:{}/", b.port()),
        format!("http://{a}/to/{}", b.port()),
        format!("http://localhost:{}/to/{}", a.port(), b.port()),
    ] {
        let err = fetcher.fetch(&url).await.unwrap_err();
        assert!(matches!(err, FetchError::BlockedAddress(_)), "{url}: {err}");
    }
    assert_eq!(b_accepted.load(Ordering::SeqCst), 0);

    // Without a port, an entry allows every port, as before.
    let open = fetcher_allowing(&["127.0.0.1".into()]).unwrap();
    assert!(open.fetch(&format!("http://{b}/")).await.is_ok());
}

#[tokio::test]
async fn a_malformed_entry_stops_the_fetcher_from_starting() {
    let Err(err) = fetcher_allowing(&["127.0.0.1:99999".into()]) else {
        panic!("a fetcher started with a port above 65535");
    };
    let text = err.to_string();
    assert!(text.contains("scrape.allow_private_hosts"), "{text}");
    assert!(text.contains("`127.0.0.1:99999`"), "{text}");
}
