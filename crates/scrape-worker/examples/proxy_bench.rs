//! Throughput of the render guard proxy forwarding plain http on loopback, against the same
//! requests sent directly, in one run:
//!
//! ```text
//! cargo run --release -p scrape-worker --example proxy_bench
//! ```
//!
//! A local server answers a small page; a client sends `BENCH_REQUESTS` (default 2,000) GETs
//! to it with `BENCH_CONCURRENCY` (default 1, a list like `1,8` runs each) in flight, first
//! directly, then through the proxy (absolute form, as Chromium sends plain http), each over
//! kept-alive connections. Prints requests per second both ways, their ratio, and how many
//! connections the server accepted from the proxy (its upstream connections are kept alive
//! per browser connection, so about one per request in flight).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use scrape_worker::guard::AddressPolicy;
use scrape_worker::render::proxy::{GuardProxy, ProxyOptions};
use tokio::net::TcpListener;

const PAGE: &str = "<html><head><title>bench</title></head><body><p>a small page</p></body></html>";

/// Connections the local server accepted.
static ACCEPTED: AtomicUsize = AtomicUsize::new(0);

async fn origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            ACCEPTED.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(|_: Request<Incoming>| async {
                Ok::<_, std::convert::Infallible>(Response::new(PAGE.to_owned()))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// Sends `n` GETs of `url`, `concurrency` at a time: requests per second.
async fn run(client: &reqwest::Client, url: &str, n: usize, concurrency: usize) -> f64 {
    let started = Instant::now();
    let ok = futures::stream::iter(0..n)
        .map(|_| async {
            let resp = client.get(url).send().await.expect("an answer");
            assert!(resp.status().is_success(), "{}", resp.status());
            resp.bytes().await.expect("a body").len() == PAGE.len()
        })
        .buffer_unordered(concurrency)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    assert_eq!(ok, n, "every answer whole");
    n as f64 / started.elapsed().as_secs_f64()
}

fn client(proxy: Option<&GuardProxy>) -> reqwest::Client {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    match proxy {
        Some(p) => builder.proxy(reqwest::Proxy::all(p.proxy_server()).unwrap()),
        None => builder.no_proxy(),
    }
    .build()
    .unwrap()
}

#[tokio::main]
async fn main() {
    pipeline_core::install_crypto_provider();
    let n: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let levels: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let addr = origin().await;
    let url = format!("http://{addr}/page");
    let policy = Arc::new(AddressPolicy::parse(&[addr.to_string()]).unwrap());
    let proxy = GuardProxy::start(
        policy,
        ProxyOptions {
            max_page_bytes: u64::MAX,
            ..ProxyOptions::default()
        },
    )
    .await
    .unwrap();
    println!("{n} GETs of a {} byte page on loopback", PAGE.len());
    println!(
        "| in flight | direct req/s | via proxy req/s | ratio | origin connections via proxy |"
    );
    println!("|---|---|---|---|---|");
    for concurrency in levels {
        let direct_client = client(None);
        let proxied_client = client(Some(&proxy));
        // Warm both paths (connections, the first page).
        run(&direct_client, &url, 50, concurrency).await;
        proxy.begin_page("bench://warm-up");
        run(&proxied_client, &url, 50, concurrency).await;
        proxy.end_page();

        let direct = run(&direct_client, &url, n, concurrency).await;
        proxy.begin_page("bench://page");
        let before = ACCEPTED.load(Ordering::Relaxed);
        let proxied = run(&proxied_client, &url, n, concurrency).await;
        let connections = ACCEPTED.load(Ordering::Relaxed) - before;
        let summary = proxy.end_page().unwrap();
        assert_eq!(summary.requests_allowed, n as u64);
        assert_eq!(summary.refusals_total, 0);
        println!(
            "| {concurrency} | {direct:.0} | {proxied:.0} | {:.2} | {connections} |",
            proxied / direct
        );
    }
    proxy.shutdown().await;
}
