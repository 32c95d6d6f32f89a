//! The render guard proxy over real sockets on loopback: what a browser behind it can reach
//! (plain http forwarded, CONNECT tunnels), what it cannot (other addresses, other ports,
//! names resolving to private addresses), and the per-page bounds. Every refused target
//! has a listener of its own, which must see no connection at all.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use scrape_worker::guard::AddressPolicy;
use scrape_worker::render::proxy::{GuardProxy, ProxyOptions, RefusalReason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

/// Bound of every single network step of these tests.
const STEP: Duration = Duration::from_secs(10);
/// Size of `/big`.
const BIG: usize = 1024 * 1024;

/// A local HTTP server counting the connections it accepted.
struct Origin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Origin {
    async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_origin(stream, addr));
            }
        });
        Ok(Self { addr, accepted })
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve_origin(stream: TcpStream, addr: SocketAddr) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| async move {
        let body = match req.uri().path() {
            "/big" => "x".repeat(BIG),
            _ => format!("hello from {addr}"),
        };
        Ok::<_, std::convert::Infallible>(Response::new(body))
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

fn policy(entries: &[String]) -> Arc<AddressPolicy> {
    Arc::new(AddressPolicy::parse(entries).expect("valid entries"))
}

async fn proxy(entries: &[String], opts: ProxyOptions) -> GuardProxy {
    GuardProxy::start(policy(entries), opts)
        .await
        .expect("the proxy binds")
}

/// An HTTP client whose every request goes through `proxy` (absolute form for http).
fn client_via(proxy: &GuardProxy) -> reqwest::Client {
    pipeline_core::install_crypto_provider();
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.proxy_server()).unwrap())
        .timeout(STEP)
        .build()
        .unwrap()
}

/// `GET url` through the proxy: the status and the body (`Err` when the body broke off).
async fn get(client: &reqwest::Client, url: &str) -> (StatusCode, Result<Vec<u8>, String>) {
    let resp = client.get(url).send().await.expect("the proxy answers");
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let body = resp
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| e.to_string());
    (status, body)
}

/// Sends `CONNECT target` on a new connection to the proxy: the status and the stream.
async fn connect(proxy: &GuardProxy, target: &str) -> (u16, TcpStream) {
    let mut stream = timeout(STEP, TcpStream::connect(proxy.addr()))
        .await
        .unwrap()
        .unwrap();
    let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let status = read_head(&mut stream).await;
    (status, stream)
}

/// Reads a response head byte by byte (so nothing after it is consumed): its status.
async fn read_head(stream: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 16 * 1024, "head too long");
        let mut byte = [0u8];
        let n = timeout(STEP, stream.read(&mut byte))
            .await
            .expect("the head arrives in time")
            .unwrap();
        assert_eq!(n, 1, "connection closed in the head: {head:?}");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Reads until EOF (or an error), at most `STEP`: what arrived.
async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = timeout(STEP, stream.read_to_end(&mut out)).await;
    out
}

/// Requests `/` (or `path`) through an established tunnel, closing afterwards.
async fn get_through_tunnel(stream: &mut TcpStream, host: &str, path: &str) -> Vec<u8> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    // A cut tunnel may refuse the write: what arrives (nothing) is what is checked.
    if stream.write_all(req.as_bytes()).await.is_err() {
        return Vec::new();
    }
    read_to_end(stream).await
}

/// A listener on `ip` at `port` (the allowed origin's port), when the machine has `ip`.
async fn bind_at(ip: &str, port: u16) -> Option<Origin> {
    let addr = SocketAddr::new(ip.parse().unwrap(), port);
    match Origin::bind(addr).await {
        Ok(origin) => Some(origin),
        Err(e) => {
            eprintln!("cannot bind {addr} ({e}): that part of the test is skipped");
            None
        }
    }
}

#[tokio::test]
async fn an_allowed_origin_is_reached_by_plain_http_and_by_connect() {
    let origin = Origin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let a = origin.addr;
    let proxy = proxy(&[a.to_string()], ProxyOptions::default()).await;
    let client = client_via(&proxy);
    let page = proxy.begin_page("http://page.example/one");

    let (status, body) = get(&client, &format!("http://{a}/x?y=1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap(), format!("hello from {a}").into_bytes());

    let (status, mut tunnel) = connect(&proxy, &a.to_string()).await;
    assert_eq!(status, 200);
    let answer = get_through_tunnel(&mut tunnel, &a.to_string(), "/").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&format!("hello from {a}")), "{answer}");

    assert!(page.bytes_received() > 0);
    let summary = proxy.end_page().expect("a page was active");
    assert_eq!(summary.page_url, "http://page.example/one");
    assert_eq!(summary.requests_allowed, 2);
    // The forwarded body, and everything the tunnel carried back (head and body).
    assert!(
        summary.bytes_received >= (2 * format!("hello from {a}").len()) as u64,
        "{summary:?}"
    );
    assert!(summary.refusals.is_empty(), "{summary:?}");
    assert!(!summary.over_budget);
    proxy.shutdown().await;
}

#[tokio::test]
async fn refused_targets_get_403_and_their_listeners_see_no_connection() {
    let origin = Origin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let a = origin.addr;
    let port = a.port();
    let other_port = Origin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let b = other_port.addr;
    let mut refused = vec![(Some(other_port), b.to_string(), RefusalReason::Port)];
    match bind_at("127.0.0.2", port).await {
        Some(o) => refused.push((Some(o), format!("127.0.0.2:{port}"), RefusalReason::Address)),
        None => refused.push((None, format!("127.0.0.2:{port}"), RefusalReason::Address)),
    }
    match bind_at("::1", port).await {
        Some(o) => refused.push((Some(o), format!("[::1]:{port}"), RefusalReason::Address)),
        None => refused.push((None, format!("[::1]:{port}"), RefusalReason::Address)),
    }
    refused.push((None, "169.254.169.254:80".into(), RefusalReason::Address));

    let proxy = proxy(&[a.to_string()], ProxyOptions::default()).await;
    let client = client_via(&proxy);
    proxy.begin_page("http://page.example/");
    let mut expected = Vec::new();
    for (_, target, reason) in &refused {
        // Plain http, forwarded in absolute form.
        let url = format!("http://{target}/secret");
        let (status, body) = get(&client, &url).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{url}");
        let body = String::from_utf8(body.unwrap()).unwrap();
        assert!(
            body.contains(&format!("refused ({reason})")),
            "{url}: {body}"
        );
        // As the client sends it (`:80` is dropped).
        expected.push((url::Url::parse(&url).unwrap().to_string(), *reason));
        // https, wss: a CONNECT; a WebSocket's CONNECT is the same request.
        let (status, mut stream) = connect(&proxy, target).await;
        assert_eq!(status, 403, "CONNECT {target}");
        let _ = stream.shutdown().await;
        expected.push((target.clone(), *reason));
    }
    // A WebSocket handshake sent in absolute form is refused the same way.
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let ws = format!(
        "GET http://127.0.0.2:{port}/socket HTTP/1.1\r\nHost: 127.0.0.2:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(ws.as_bytes()).await.unwrap();
    assert_eq!(read_head(&mut stream).await, 403);
    expected.push((
        format!("http://127.0.0.2:{port}/socket"),
        RefusalReason::Address,
    ));

    // Give a connection that slipped through every chance to be accepted before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (listener, target, _) in &refused {
        if let Some(listener) = listener {
            assert_eq!(listener.accepted(), 0, "{target} was connected to");
        }
    }
    assert_eq!(origin.accepted(), 0);

    let summary = proxy.end_page().unwrap();
    assert_eq!(summary.requests_allowed, 0);
    assert_eq!(summary.bytes_received, 0);
    assert_eq!(summary.refusals_total, expected.len() as u64);
    let got: Vec<(String, RefusalReason)> = summary
        .refusals
        .iter()
        .map(|r| (r.target.clone(), r.reason))
        .collect();
    assert_eq!(got, expected);
    let port_refusal = &summary.refusals[0];
    assert!(
        port_refusal
            .detail
            .contains(&format!("other ports than {}", b.port())),
        "{port_refusal:?}"
    );
}

#[tokio::test]
async fn a_name_resolving_to_a_private_address_is_refused_unless_listed() {
    let origin = Origin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let port = origin.addr.port();
    let url = format!("http://localhost:{port}/");

    // Not listed (another address is): refused, by plain http and by CONNECT.
    let unlisted = proxy(&["127.0.0.2".into()], ProxyOptions::default()).await;
    unlisted.begin_page("http://page.example/");
    let (status, _) = get(&client_via(&unlisted), &url).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = connect(&unlisted, &format!("localhost:{port}")).await;
    assert_eq!(status, 403);
    let summary = unlisted.end_page().unwrap();
    assert_eq!(summary.refusals_total, 2);
    assert!(
        summary.refusals[0]
            .detail
            .starts_with("localhost resolves to"),
        "{summary:?}"
    );
    assert_eq!(summary.refusals[0].reason, RefusalReason::Address);
    assert_eq!(origin.accepted(), 0);

    // Listed by name on its port: reached; on another port: refused as such.
    let by_name = proxy(&[format!("localhost:{port}")], ProxyOptions::default()).await;
    by_name.begin_page("http://page.example/");
    let client = client_via(&by_name);
    let (status, body) = get(&client, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.unwrap().starts_with(b"hello"));
    let (status, _) = get(&client, &format!("http://localhost:{}/", port ^ 1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let summary = by_name.end_page().unwrap();
    assert_eq!(summary.requests_allowed, 1);
    assert_eq!(summary.refusals[0].reason, RefusalReason::Port);
}

#[tokio::test]
async fn the_byte_budget_cuts_a_large_response_and_refuses_what_follows() {
    let origin = Origin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let a = origin.addr;
    let budget = 100_000;
    let opts = ProxyOptions {
        max_page_bytes: budget,
        ..ProxyOptions::default()
    };
    let proxy = proxy(&[a.to_string()], opts).await;
    let client = client_via(&proxy);

    // Forwarded.
    let page = proxy.begin_page("http://page.example/forwarded");
    let (status, body) = get(&client, &format!("http://{a}/big")).await;
    assert_eq!(status, StatusCode::OK);
    match body {
        Err(_) => {}
        Ok(b) => panic!("{} bytes arrived past a budget of {budget}", b.len()),
    }
    assert!(page.over_budget());
    timeout(STEP, page.cut()).await.expect("the page is cut");
    let (status, body) = get(&client, &format!("http://{a}/")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let body = String::from_utf8(body.unwrap()).unwrap();
    assert!(
        body.contains(&format!("page over {budget} bytes")),
        "{body}"
    );
    let summary = proxy.end_page().unwrap();
    assert!(summary.over_budget);
    assert!(summary.bytes_received > budget, "{summary:?}");
    assert!(summary.bytes_received < BIG as u64, "{summary:?}");
    assert_eq!(summary.refusals[0].reason, RefusalReason::Budget);

    // Tunnelled: the tunnel is cut before the whole body passed.
    let page = proxy.begin_page("http://page.example/tunnelled");
    let (status, mut tunnel) = connect(&proxy, &a.to_string()).await;
    assert_eq!(status, 200);
    let got = get_through_tunnel(&mut tunnel, &a.to_string(), "/big").await;
    assert!(got.len() as u64 <= budget, "{} bytes passed", got.len());
    assert!(page.over_budget());
    let (status, _) = connect(&proxy, &a.to_string()).await;
    assert_eq!(status, 403);
    let summary = proxy.end_page().unwrap();
    assert!(summary.over_budget);
    assert_eq!(summary.requests_allowed, 1);
    assert_eq!(summary.refusals.len(), 1);
}

#[tokio::test]
async fn without_an_active_page_everything_is_refused() {
    let origin = Origin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let a = origin.addr;
    let proxy = proxy(&[a.to_string()], ProxyOptions::default()).await;
    let client = client_via(&proxy);
    assert!(proxy.end_page().is_none());

    let (status, body) = get(&client, &format!("http://{a}/")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        String::from_utf8(body.unwrap())
            .unwrap()
            .contains("refused (idle)")
    );
    let (status, _) = connect(&proxy, &a.to_string()).await;
    assert_eq!(status, 403);

    proxy.begin_page("http://page.example/");
    let (status, _) = get(&client, &format!("http://{a}/")).await;
    assert_eq!(status, StatusCode::OK);
    let summary = proxy.end_page().unwrap();
    // The refusals before the page are not the page's.
    assert_eq!(summary.refusals_total, 0);
    assert_eq!(summary.requests_allowed, 1);

    let (status, _) = connect(&proxy, &a.to_string()).await;
    assert_eq!(status, 403);
    assert_eq!(origin.accepted(), 1);
}

/// Sends one absolute-form GET on a kept-alive proxy connection: its status and body.
async fn send_on(
    sender: &mut hyper::client::conn::http1::SendRequest<String>,
    url: &str,
) -> Result<(StatusCode, Vec<u8>), hyper::Error> {
    let req = Request::get(url)
        .header("host", url.split('/').nth(2).unwrap())
        .body(String::new())
        .unwrap();
    let resp = timeout(STEP, sender.send_request(req)).await.unwrap()?;
    let status = resp.status();
    let mut body: Incoming = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = timeout(STEP, poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)))
        .await
        .unwrap()
    {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok((status, out))
}

async fn keep_alive(proxy: &GuardProxy) -> hyper::client::conn::http1::SendRequest<String> {
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn each_request_on_a_kept_alive_connection_is_checked_and_late_ones_are_refused() {
    let origin = Origin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let a = origin.addr;
    let other = Origin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let proxy = proxy(&[a.to_string()], ProxyOptions::default()).await;

    proxy.begin_page("http://page.example/one");
    let mut sender = keep_alive(&proxy).await;
    let (status, _) = send_on(&mut sender, &format!("http://{a}/")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send_on(&mut sender, &format!("http://{}/", other.addr))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = send_on(&mut sender, &format!("http://{a}/again"))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with(b"hello"));
    // A tunnel of the same page.
    let (status, mut tunnel) = connect(&proxy, &a.to_string()).await;
    assert_eq!(status, 200);
    let one = proxy.end_page().unwrap();
    assert_eq!(one.requests_allowed, 3);
    assert_eq!(one.refusals_total, 1);
    assert_eq!(other.accepted(), 0);

    // The next page: the first page's connection and tunnel are gone, and nothing they
    // could still carry counts on it.
    proxy.begin_page("http://page.example/two");
    let late = send_on(&mut sender, &format!("http://{a}/late")).await;
    assert!(
        !matches!(late, Ok((StatusCode::OK, _))),
        "a late request went through: {late:?}"
    );
    let late_tunnel = get_through_tunnel(&mut tunnel, &a.to_string(), "/").await;
    assert!(late_tunnel.is_empty(), "{late_tunnel:?}");
    let two = proxy.end_page().unwrap();
    assert_eq!(two.requests_allowed, 0);
    assert_eq!(two.bytes_received, 0);
    assert_eq!(two.refusals_total, 0);
}

#[tokio::test]
async fn other_forms_are_bad_requests_and_other_schemes_are_refused() {
    let origin = Origin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let a = origin.addr;
    let proxy = proxy(&[a.to_string()], ProxyOptions::default()).await;
    proxy.begin_page("http://page.example/");
    for (request, status) in [
        (format!("GET / HTTP/1.1\r\nHost: {a}\r\n\r\n"), 400),
        (
            format!("CONNECT {} HTTP/1.1\r\nHost: x\r\n\r\n", a.ip()),
            400,
        ),
        (
            format!("GET https://{a}/ HTTP/1.1\r\nHost: {a}\r\n\r\n"),
            403,
        ),
        (format!("GET ftp://{a}/ HTTP/1.1\r\nHost: {a}\r\n\r\n"), 403),
        (format!("GET ws://{a}/ HTTP/1.1\r\nHost: {a}\r\n\r\n"), 403),
        ("NOT HTTP AT ALL\r\n\r\n".to_owned(), 400),
    ] {
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(read_head(&mut stream).await, status, "{request:?}");
    }
    let summary = proxy.end_page().unwrap();
    assert_eq!(summary.refusals_total, 3);
    assert!(
        summary
            .refusals
            .iter()
            .all(|r| r.reason == RefusalReason::Scheme)
    );
    assert_eq!(origin.accepted(), 0);
}

#[tokio::test]
async fn idle_tunnels_close_and_shutdown_cuts_everything() {
    let origin = Origin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let a = origin.addr;
    let opts = ProxyOptions {
        idle_timeout: Duration::from_millis(300),
        ..ProxyOptions::default()
    };
    let proxy = proxy(&[a.to_string()], opts).await;
    proxy.begin_page("http://page.example/");

    let (status, mut idle) = connect(&proxy, &a.to_string()).await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    assert!(read_to_end(&mut idle).await.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed when idle"
    );

    let (status, mut open) = connect(&proxy, &a.to_string()).await;
    assert_eq!(status, 200);
    let addr = proxy.addr();
    timeout(STEP, proxy.shutdown()).await.unwrap();
    let started = std::time::Instant::now();
    assert!(read_to_end(&mut open).await.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "cut at shutdown"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}
