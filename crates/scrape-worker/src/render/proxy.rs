//! The guard proxy every browser request goes through, so a rendered page can reach no
//! address the fetcher would refuse.
//!
//! Chromium is started with `--proxy-server=http://127.0.0.1:PORT` (see
//! [`GuardProxy::proxy_server`]) and `--proxy-bypass-list=<-loopback>`, so every request of
//! the page, loopback included, comes here: `CONNECT host:port` for `https://`, `ws://` and
//! `wss://`, and absolute-form requests (`GET http://host:port/path HTTP/1.1`) for plain
//! `http://`, several hosts over one kept-alive proxy connection.
//!
//! Each request is checked on its own, where the connection is made, after DNS: the
//! target's name is resolved here, and refused unless every address it resolves to is
//! allowed by the fetcher's [`AddressPolicy`] on the target's port (one bad address refuses
//! the name, as in [`crate::guard::GuardedResolver`]: a name mixing public and private
//! addresses is what DNS rebinding looks like); then one of those very addresses is
//! connected to. A refusal answers `403` with the reason, an unreachable upstream `502`.
//! Only `http` is forwarded in absolute form; `https` comes as `CONNECT`, anything else is
//! refused.
//!
//! Traffic is attributed to the page being rendered: [`GuardProxy::begin_page`] before the
//! page, [`GuardProxy::end_page`] after, which returns what the page's traffic was
//! ([`TrafficSummary`]). While no page is active every request is refused. A proxy
//! connection belongs to the page of its first request: when that page ends, its
//! connections and tunnels are cut, and a request still arriving on one of them is refused,
//! so late traffic of a page is never counted on the next one. Bytes received from
//! upstreams (tunnels included) count against [`ProxyOptions::max_page_bytes`]: past it the
//! page's connections are cut and its further requests refused.
//!
//! Every refusal is logged (`warn`) and counted in `pipeline_render_requests_refused_total`
//! by reason; every allowed request in `pipeline_render_requests_total`.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1 as server_http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::guard::{AddressPolicy, Refused};

/// Refusals a [`TrafficSummary`] keeps in full; past them it only counts.
pub const REFUSALS_KEPT: usize = 20;

/// A target longer than this is cut in logs and summaries (a URL can be megabytes).
const TARGET_CHARS: usize = 256;

/// How a [`GuardProxy`] bounds what it carries.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Longest the resolution of a target, then the TCP connect to it, may each take;
    /// past it the request fails with `502`.
    pub connect_timeout: Duration,
    /// Bytes one page may receive from upstreams, response bodies and tunnels (TLS
    /// included) together. Past it the page's connections and tunnels are cut and its
    /// further requests refused ("page over N bytes").
    pub max_page_bytes: u64,
    /// A tunnel with no byte either way for this long is closed; a forwarded request whose
    /// upstream sends neither the answer's head nor the next bytes of its body for this
    /// long is cut (`504` before the head).
    pub idle_timeout: Duration,
}

impl Default for ProxyOptions {
    /// 10 s to connect, 25 MiB a page, 60 s of silence.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            max_page_bytes: 25 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a request was refused: the `reason` label of `pipeline_render_requests_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// The target is, or resolves to, an address that is not public and not allowed.
    Address,
    /// The target's address is allowed, but on other ports only.
    Port,
    /// Not an `http` request in absolute form, nor a `CONNECT`.
    Scheme,
    /// The page received more than its byte budget.
    Budget,
    /// No page is active, or the request came on a connection of a page that ended.
    Idle,
}

impl RefusalReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::Port => "port",
            Self::Scheme => "scheme",
            Self::Budget => "budget",
            Self::Idle => "idle",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `host:port` of a `CONNECT`, or the URL of a forwarded request (cut at 256 chars).
    pub target: String,
    /// Why, as counted.
    pub reason: RefusalReason,
    /// Why, in words (`127.0.0.2 is not a public address`, `page over 1000 bytes`).
    pub detail: String,
}

/// What a page's traffic through the proxy was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficSummary {
    /// The page, as given to [`GuardProxy::begin_page`].
    pub page_url: String,
    /// Requests that passed the checks (`CONNECT`s and forwarded requests).
    pub requests_allowed: u64,
    /// Bytes received from upstreams: forwarded response bodies and everything a tunnel
    /// carried towards the browser, TLS records included.
    pub bytes_received: u64,
    /// Whether the page went over its byte budget (its traffic was cut then).
    pub over_budget: bool,
    /// The first [`REFUSALS_KEPT`] refusals, in order.
    pub refusals: Vec<Refusal>,
    /// All refusals, kept or not.
    pub refusals_total: u64,
}

/// A live view of the active page's traffic, from [`GuardProxy::begin_page`].
#[derive(Debug, Clone)]
pub struct PageTraffic {
    page: Arc<PageState>,
}

impl PageTraffic {
    /// The page's number: each `begin_page` of a proxy gets the next one.
    pub fn generation(&self) -> u64 {
        self.page.generation
    }

    /// Bytes received from upstreams so far.
    pub fn bytes_received(&self) -> u64 {
        self.page.bytes.load(Ordering::Relaxed)
    }

    /// Whether the page went over its byte budget.
    pub fn over_budget(&self) -> bool {
        self.page.over_budget.load(Ordering::Relaxed)
    }

    /// Completes when the page's traffic is cut: it went over its budget, it ended, or the
    /// proxy shut down. A renderer can race its navigation against this.
    pub async fn cut(&self) {
        self.page.cut.cancelled().await;
    }
}

/// An HTTP/1.1 proxy on 127.0.0.1 (an ephemeral port) that lets through only what the
/// [`AddressPolicy`] allows, attributing traffic to the active page. Dropping it (or
/// [`GuardProxy::shutdown`]) closes the listener and cuts every connection and tunnel.
pub struct GuardProxy {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    policy: Arc<AddressPolicy>,
    opts: ProxyOptions,
    /// The listener's address: a request for it is refused (no loops through the proxy).
    local: SocketAddr,
    /// Fires on shutdown; every page token and connection token is its child.
    shutdown: CancellationToken,
    generation: AtomicU64,
    current: Mutex<Option<Arc<PageState>>>,
}

#[derive(Debug)]
struct PageState {
    generation: u64,
    url: String,
    max_bytes: u64,
    /// Fires when the page ends or goes over budget: its connections and tunnels end.
    cut: CancellationToken,
    bytes: AtomicU64,
    allowed: AtomicU64,
    over_budget: AtomicBool,
    /// Set by `end_page` (or a `begin_page` replacing it): nothing more is recorded.
    ended: AtomicBool,
    refusals: Mutex<(Vec<Refusal>, u64)>,
}

impl PageState {
    /// Whether the page still records refusals (it has not ended).
    fn active(&self) -> bool {
        !self.ended.load(Ordering::Relaxed)
    }

    /// Ends the page: traffic cut, nothing more recorded.
    fn end(&self) {
        self.ended.store(true, Ordering::Relaxed);
        self.cut.cancel();
    }

    /// Counts `n` bytes received for this page; `false` when the page no longer takes
    /// traffic (ended, or over budget now or before), in which case they are not counted.
    fn take_bytes(&self, n: usize, target: &str) -> bool {
        if self.cut.is_cancelled() {
            return false;
        }
        let total = self.bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.max_bytes {
            if !self.over_budget.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    page = %self.url,
                    target = %target,
                    bytes = total,
                    max_page_bytes = self.max_bytes,
                    "render page over its byte budget: its traffic is cut"
                );
            }
            self.cut.cancel();
            return false;
        }
        true
    }

    fn record(&self, refusal: Refusal) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        refusals.1 += 1;
        if refusals.0.len() < REFUSALS_KEPT {
            refusals.0.push(refusal);
        }
    }

    fn summary(&self) -> TrafficSummary {
        let refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        TrafficSummary {
            page_url: self.url.clone(),
            requests_allowed: self.allowed.load(Ordering::Relaxed),
            bytes_received: self.bytes.load(Ordering::Relaxed),
            over_budget: self.over_budget.load(Ordering::Relaxed),
            refusals: refusals.0.clone(),
            refusals_total: refusals.1,
        }
    }
}

impl GuardProxy {
    /// Binds 127.0.0.1 on an ephemeral port and starts serving (on the current Tokio
    /// runtime). No page is active yet: every request is refused until
    /// [`Self::begin_page`].
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(policy: Arc<AddressPolicy>, opts: ProxyOptions) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let shared = Arc::new(Shared {
            policy,
            opts,
            local: listener.local_addr()?,
            shutdown: CancellationToken::new(),
            generation: AtomicU64::new(0),
            current: Mutex::new(None),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            shared,
            accept: Some(accept),
        })
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The value of Chromium's `--proxy-server`: `http://127.0.0.1:PORT`.
    pub fn proxy_server(&self) -> String {
        format!("http://{}", self.shared.local)
    }

    /// Starts attributing traffic to `page_url`, under a fresh byte budget. A page still
    /// active is ended first (its traffic cut, its summary dropped, a warning logged).
    pub fn begin_page(&self, page_url: &str) -> PageTraffic {
        let generation = self.shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let page = Arc::new(PageState {
            generation,
            url: cut_chars(page_url),
            max_bytes: self.shared.opts.max_page_bytes,
            cut: self.shared.shutdown.child_token(),
            bytes: AtomicU64::new(0),
            allowed: AtomicU64::new(0),
            over_budget: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            refusals: Mutex::new((Vec::new(), 0)),
        });
        let previous = self.shared.lock_current().replace(page.clone());
        if let Some(previous) = previous {
            previous.end();
            tracing::warn!(
                page = %previous.url,
                next = %page.url,
                "render page begun while another was active: the earlier one is ended"
            );
        }
        PageTraffic { page }
    }

    /// Ends the active page: its connections and tunnels are cut, requests are refused
    /// until the next [`Self::begin_page`], and its traffic is returned (`None` when no
    /// page was active).
    pub fn end_page(&self) -> Option<TrafficSummary> {
        let page = self.shared.lock_current().take()?;
        page.end();
        Some(page.summary())
    }

    /// Closes the listener and cuts every connection and tunnel; returns once the listener
    /// is closed.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }
}

impl Drop for GuardProxy {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl Shared {
    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<Arc<PageState>>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, shared.clone()));
            }
            Err(e) => {
                // Out of descriptors, say: wait a little rather than spin.
                tracing::warn!(error = %e, "render proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One browser connection to the proxy.
struct Conn {
    shared: Arc<Shared>,
    /// Fires to drop the connection: its page ended or went over budget, or shutdown.
    cut: CancellationToken,
    /// The page of the connection's first request, once there was one.
    page: Mutex<Option<Arc<PageState>>>,
    /// Upstream connections of this browser connection's forwarded requests, kept alive:
    /// each to an address checked when it was opened, reused only for a request whose own
    /// check allowed that address again.
    upstreams: Mutex<Vec<(SocketAddr, Upstream)>>,
}

type Upstream = hyper::client::conn::http1::SendRequest<Incoming>;

/// Upstream connections one browser connection keeps alive at most.
const KEPT_UPSTREAMS: usize = 8;

impl Conn {
    /// An idle kept-alive upstream connection to one of `addrs`.
    fn idle_upstream(&self, addrs: &[SocketAddr]) -> Option<(SocketAddr, Upstream)> {
        let mut kept = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|(_, sender)| !sender.is_closed());
        let i = kept
            .iter()
            .position(|(addr, sender)| addrs.contains(addr) && sender.is_ready())?;
        Some(kept.swap_remove(i))
    }

    /// Keeps an upstream connection for the next requests (the oldest goes past
    /// [`KEPT_UPSTREAMS`]).
    fn keep_upstream(&self, addr: SocketAddr, sender: Upstream) {
        let mut kept = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= KEPT_UPSTREAMS {
            kept.remove(0);
        }
        kept.push((addr, sender));
    }

    /// The page a request on this connection belongs to: the active page, unless the
    /// connection already belongs to another (an ended one: the request is late).
    fn page_for_request(&self) -> Result<Arc<PageState>, &'static str> {
        let current = self.shared.lock_current().clone();
        let mut bound = self.page.lock().unwrap_or_else(|e| e.into_inner());
        match (bound.as_ref().map(|b| b.generation), current) {
            (_, None) => Err("no page is being rendered"),
            (Some(generation), Some(c)) if generation != c.generation => {
                Err("the connection's page has ended")
            }
            (Some(_), Some(c)) => Ok(c),
            (None, Some(c)) => {
                *bound = Some(c.clone());
                // The connection goes when its page's traffic is cut.
                let (page_cut, conn_cut) = (c.cut.clone(), self.cut.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = page_cut.cancelled() => conn_cut.cancel(),
                        () = conn_cut.cancelled() => {}
                    }
                });
                Ok(c)
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let conn = Arc::new(Conn {
        cut: shared.shutdown.child_token(),
        shared,
        page: Mutex::new(None),
        upstreams: Mutex::new(Vec::new()),
    });
    let _ends_watch = conn.cut.clone().drop_guard();
    let service = {
        let conn = conn.clone();
        service_fn(move |req| {
            let conn = conn.clone();
            async move { Ok::<_, Infallible>(handle(&conn, req).await) }
        })
    };
    let serving = server_http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::select! {
        served = serving => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "render proxy connection ended");
            }
        }
        () = conn.cut.cancelled() => {}
    }
}

/// Where a request goes.
struct Target {
    /// The host as the request names it, without brackets.
    host: String,
    port: u16,
    /// For logs and summaries: `host:port` of a CONNECT, the URL of a forwarded request.
    shown: String,
}

async fn handle(conn: &Conn, req: Request<Incoming>) -> Response<ProxyBody> {
    let shared = &conn.shared;
    let (target, connect) = match parse_target(&req) {
        Ok(parsed) => parsed,
        Err(Bad::Form(why)) => {
            tracing::warn!(method = %req.method(), uri = %cut_chars(&req.uri().to_string()), why, "render proxy: bad request");
            return text(StatusCode::BAD_REQUEST, why);
        }
        Err(Bad::Scheme(shown)) => {
            let page = conn.page_for_request().ok();
            return refuse(
                page.as_deref(),
                &shown,
                RefusalReason::Scheme,
                format!("only http is forwarded (https comes as CONNECT): {shown}"),
            );
        }
    };
    let page = match conn.page_for_request() {
        Ok(page) => page,
        Err(why) => {
            let mut resp = refuse(None, &target.shown, RefusalReason::Idle, why.to_owned());
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
    };
    if page.over_budget.load(Ordering::Relaxed) {
        return refuse(
            Some(&*page),
            &target.shown,
            RefusalReason::Budget,
            format!("page over {} bytes", page.max_bytes),
        );
    }
    let addrs = match resolve(shared, &target).await {
        Ok(addrs) => addrs,
        Err(Failure::Refused(reason, detail)) => {
            return refuse(Some(&*page), &target.shown, reason, detail);
        }
        Err(Failure::Upstream(status, detail)) => {
            tracing::info!(page = %page.url, target = %target.shown, %detail, "render proxy: upstream unavailable");
            return text(status, &detail);
        }
    };
    page.allowed.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("pipeline_render_requests_total").increment(1);
    if !connect {
        return forward(conn, req, &addrs, page, target).await;
    }
    let upstream = match connect_any(&addrs, shared.opts.connect_timeout).await {
        Ok(stream) => stream,
        Err(detail) => {
            tracing::info!(page = %page.url, target = %target.shown, %detail, "render proxy: upstream unreachable");
            return text(StatusCode::BAD_GATEWAY, &detail);
        }
    };
    let upgrade = hyper::upgrade::on(req);
    let shared = shared.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                tunnel(TokioIo::new(upgraded), upstream, &page, &shared, &target).await;
            }
            Err(e) => tracing::debug!(error = %e, "render proxy: CONNECT not upgraded"),
        }
    });
    Response::new(ProxyBody::empty())
}

enum Bad {
    /// Neither CONNECT nor absolute-form, or no usable host and port: 400.
    Form(&'static str),
    /// Absolute-form with another scheme than http: refused.
    Scheme(String),
}

fn parse_target(req: &Request<Incoming>) -> Result<(Target, bool), Bad> {
    let uri = req.uri();
    if req.method() == Method::CONNECT {
        let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
            return Err(Bad::Form("CONNECT needs host:port"));
        };
        return Ok((
            Target {
                shown: cut_chars(&format!("{host}:{port}")),
                host: unbracket(host).to_owned(),
                port,
            },
            true,
        ));
    }
    let Some(scheme) = uri.scheme_str() else {
        return Err(Bad::Form(
            "this is a proxy: send CONNECT host:port, or an absolute-form http:// request",
        ));
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(Bad::Scheme(cut_chars(&uri.to_string())));
    }
    let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
        return Err(Bad::Form("an absolute-form request needs a host"));
    };
    Ok((
        Target {
            host: unbracket(host).to_owned(),
            port: uri.port_u16().unwrap_or(80),
            shown: cut_chars(&uri.to_string()),
        },
        false,
    ))
}

enum Failure {
    /// The policy refuses the target.
    Refused(RefusalReason, String),
    /// The target cannot be resolved: `502`, or `504` when resolution timed out.
    Upstream(StatusCode, String),
}

/// The target's addresses, every one of them allowed on the target's port.
async fn resolve(shared: &Shared, target: &Target) -> Result<Vec<SocketAddr>, Failure> {
    let host = target.host.as_str();
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((host, target.port));
            match tokio::time::timeout(shared.opts.connect_timeout, lookup).await {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(e)) => {
                    return Err(Failure::Upstream(
                        StatusCode::BAD_GATEWAY,
                        format!("cannot resolve {host}: {e}"),
                    ));
                }
                Err(_) => {
                    return Err(Failure::Upstream(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "resolving {host} took over {:?}",
                            shared.opts.connect_timeout
                        ),
                    ));
                }
            }
        }
    };
    if addrs.is_empty() {
        return Err(Failure::Upstream(
            StatusCode::BAD_GATEWAY,
            format!("{host} has no address"),
        ));
    }
    // One bad address refuses the name: a name mixing public and private addresses is
    // what a rebinding attack looks like.
    for addr in &addrs {
        let ip = addr.ip();
        let is_proxy = addr.port() == shared.local.port()
            && (ip.is_unspecified() || ip.to_canonical() == shared.local.ip());
        if is_proxy {
            return Err(Failure::Refused(
                RefusalReason::Address,
                format!("{host} is the proxy itself"),
            ));
        }
        match shared.policy.check_at(host, ip, addr.port()) {
            Ok(()) => {}
            Err(Refused::NotPublic) => {
                return Err(Failure::Refused(
                    RefusalReason::Address,
                    describe(host, ip, "is not a public address"),
                ));
            }
            Err(Refused::OtherPort) => {
                return Err(Failure::Refused(
                    RefusalReason::Port,
                    describe(
                        host,
                        ip,
                        &format!("is allowed on other ports than {} only", addr.port()),
                    ),
                ));
            }
        }
    }
    Ok(addrs)
}

fn describe(host: &str, ip: IpAddr, what: &str) -> String {
    if host.parse::<IpAddr>().is_ok() {
        format!("{ip} {what}")
    } else {
        format!("{host} resolves to {ip}, which {what}")
    }
}

/// Connects to the first address that answers, within `timeout` for all of them.
async fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, String> {
    let attempt = async {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
            }
        }
        Err(last.unwrap_or_else(|| "no address to connect to".to_owned()))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("connecting took over {timeout:?}")),
    }
}

/// Carries bytes both ways between the browser and the upstream until either side closes
/// both directions, the tunnel is idle for `idle_timeout`, the page's traffic is cut, or
/// the proxy shuts down. Bytes from the upstream count against the page's budget.
async fn tunnel<C>(
    client: C,
    upstream: TcpStream,
    page: &PageState,
    shared: &Shared,
    target: &Target,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut up_read, mut up_write) = upstream.into_split();
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let touch = || last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = up_read.read(&mut buf).await?;
            if n == 0 {
                return client_write.shutdown().await;
            }
            if !page.take_bytes(n, &target.shown) {
                return Err(io::Error::other("page traffic cut"));
            }
            client_write.write_all(&buf[..n]).await?;
            touch();
        }
    };
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return up_write.shutdown().await;
            }
            up_write.write_all(&buf[..n]).await?;
            touch();
        }
    };
    let idle = shared.opts.idle_timeout;
    let idle_watch = async {
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let quiet = started.elapsed().saturating_sub(since);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    tokio::select! {
        _ = async { tokio::try_join!(down, up) } => {}
        () = idle_watch => {
            tracing::debug!(page = %page.url, target = %target.shown, "render proxy: idle tunnel closed");
        }
        () = page.cut.cancelled() => {}
    }
}

/// Hop-by-hop headers: they describe one connection, not the message (RFC 9110, 7.6.1),
/// plus the proxy's own.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, those `Connection` names included, and `Transfer-Encoding`
/// (the framing of each side is its own).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// Sends an absolute-form request to its origin in origin form and streams the answer
/// back, counting its body against the page's budget. The upstream connection is one the
/// browser connection kept alive to one of the checked addresses when one is idle, else a
/// new one.
async fn forward(
    conn: &Conn,
    req: Request<Incoming>,
    addrs: &[SocketAddr],
    page: Arc<PageState>,
    target: Target,
) -> Response<ProxyBody> {
    let shared = &conn.shared;
    let idle = shared.opts.idle_timeout;
    let req = match origin_form(req, &target) {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    let gave_up = |e: &dyn fmt::Display| {
        tracing::info!(page = %page.url, target = %target.shown, error = %e, "render proxy: upstream failed");
        text(StatusCode::BAD_GATEWAY, &format!("upstream: {e}"))
    };
    let no_answer = || {
        text(
            StatusCode::GATEWAY_TIMEOUT,
            &format!("no answer from upstream in {idle:?}"),
        )
    };
    let mut answered = None;
    let mut req = Some(req);
    if let Some((addr, mut sender)) = conn.idle_upstream(addrs)
        && let Some(first) = req.take()
    {
        match tokio::time::timeout(idle, sender.try_send_request(first)).await {
            Ok(Ok(resp)) => answered = Some((resp, addr, sender)),
            // Closed before the request went out (an origin's keep-alive ran out): the
            // request is whole, and goes on a new connection.
            Ok(Err(mut e)) => match e.take_message() {
                Some(back) => req = Some(back),
                None => return gave_up(e.error()),
            },
            Err(_) => return no_answer(),
        }
        if answered.is_none() {
            tracing::debug!(target = %target.shown, "render proxy: kept-alive upstream closed");
        }
    }
    let (resp, addr, sender) = match answered {
        Some(answered) => answered,
        None => {
            let upstream = match connect_any(addrs, shared.opts.connect_timeout).await {
                Ok(stream) => stream,
                Err(detail) => {
                    tracing::info!(page = %page.url, target = %target.shown, %detail, "render proxy: upstream unreachable");
                    return text(StatusCode::BAD_GATEWAY, &detail);
                }
            };
            let Ok(addr) = upstream.peer_addr() else {
                return text(StatusCode::BAD_GATEWAY, "upstream closed at once");
            };
            let (mut sender, connection) =
                match hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await {
                    Ok(pair) => pair,
                    Err(e) => return gave_up(&e),
                };
            // Drives the upstream connection until it closes, its browser connection
            // drops it, the page's traffic is cut, or the proxy shuts down (the page's
            // token is a child of the proxy's).
            let cut = page.cut.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = connection => {}
                    () = cut.cancelled() => {}
                }
            });
            let Some(req) = req.take() else {
                return text(
                    StatusCode::BAD_GATEWAY,
                    "the request was lost on a closed connection",
                );
            };
            match tokio::time::timeout(idle, sender.send_request(req)).await {
                Ok(Ok(resp)) => (resp, addr, sender),
                Ok(Err(e)) => return gave_up(&e),
                Err(_) => return no_answer(),
            }
        }
    };
    // Ready again once this answer is read; the next request to this address may use it.
    conn.keep_upstream(addr, sender);
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let counted = Counted {
        body,
        cut: Box::pin(page.cut.clone().cancelled_owned()),
        idle: Box::pin(tokio::time::sleep(idle)),
        idle_timeout: idle,
        target: target.shown,
        page,
    };
    Response::from_parts(parts, ProxyBody(Kind::Upstream(Box::new(counted))))
}

/// The request an origin gets: origin form, HTTP/1.1, no hop-by-hop headers, `Host` from
/// the checked URL.
#[allow(clippy::result_large_err)]
fn origin_form(
    req: Request<Incoming>,
    target: &Target,
) -> Result<Request<Incoming>, Response<ProxyBody>> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let host_header = match (parts.uri.host(), parts.uri.port_u16()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => target.host.clone(),
    };
    parts.uri = path
        .parse::<Uri>()
        .map_err(|_| text(StatusCode::BAD_REQUEST, "bad request target"))?;
    parts.version = hyper::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    if let Ok(host) = HeaderValue::from_str(&host_header) {
        parts.headers.insert(header::HOST, host);
    }
    Ok(Request::from_parts(parts, body))
}

/// The proxy's answer body: its own short text, or an upstream's body being counted.
pub struct ProxyBody(Kind);

enum Kind {
    Full(Option<Bytes>),
    Upstream(Box<Counted>),
}

impl ProxyBody {
    fn empty() -> Self {
        Self(Kind::Full(None))
    }
}

struct Counted {
    body: Incoming,
    page: Arc<PageState>,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    target: String,
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let counted = match &mut self.0 {
            Kind::Full(data) => return Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Upstream(counted) => counted,
        };
        if counted.cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err("page traffic cut".into())));
        }
        match Pin::new(&mut counted.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && !counted.page.take_bytes(data.len(), &counted.target)
                {
                    return Poll::Ready(Some(Err("page traffic cut".into())));
                }
                let deadline = Instant::now() + counted.idle_timeout;
                counted.idle.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if counted.idle.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err("upstream idle".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(data) => data.is_none(),
            Kind::Upstream(counted) => counted.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Upstream(counted) => counted.body.size_hint(),
        }
    }
}

/// A short plain-text answer of the proxy's own.
fn text(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody(Kind::Full(Some(Bytes::from(format!(
        "{message}\n"
    ))))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Refuses a request: logged, counted, recorded on `page` when it is still active, and
/// answered `403` with the reason.
fn refuse(
    page: Option<&PageState>,
    target: &str,
    reason: RefusalReason,
    detail: String,
) -> Response<ProxyBody> {
    let page_url = page.map_or("", |p| p.url.as_str());
    tracing::warn!(page = %page_url, %target, reason = reason.label(), %detail, "render request refused");
    metrics::counter!("pipeline_render_requests_refused_total", "reason" => reason.label())
        .increment(1);
    if let Some(page) = page.filter(|p| p.active()) {
        page.record(Refusal {
            target: target.to_owned(),
            reason,
            detail: detail.clone(),
        });
    }
    text(
        StatusCode::FORBIDDEN,
        &format!("refused ({reason}): {detail}"),
    )
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// `text` cut to [`TARGET_CHARS`] characters.
fn cut_chars(text: &str) -> String {
    match text.char_indices().nth(TARGET_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic eA=="),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
            ("x-secret", "1"),
            ("accept", "text/html"),
            ("cookie", "a=b"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept", "cookie"]);
    }

    #[test]
    fn long_targets_are_cut() {
        let long = "x".repeat(1000);
        assert_eq!(cut_chars(&long).chars().count(), TARGET_CHARS + 1);
        assert_eq!(cut_chars("short"), "short");
    }
}
