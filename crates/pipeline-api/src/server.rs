//! The connection layer under [`crate::serve`]: HTTP/1.1 over hyper with a header timeout,
//! an idle timeout and a cap on open connections.
//!
//! `axum::serve` sets none of these, so a client without a key could hold connections open
//! (half-sent headers, or nothing at all) until the process ran out of file descriptors and
//! nobody, keyed or not, was answered. Here:
//!
//! - a request head must arrive whole within `api.header_timeout_ms` (hyper's timer);
//! - a connection with no request in progress is closed after `api.idle_timeout_ms`;
//! - at most `api.max_connections` are open. At the cap a newcomer is still accepted, and
//!   the oldest connection that is *not in the middle of a request* is closed to make room,
//!   preferring one that never presented a valid key. Idle and half-sent connections are
//!   therefore what gives way, never a request being answered, so a flood of them cannot
//!   starve keyed clients or the probes. Only when every connection is busy is the newcomer
//!   answered 503 (with `Retry-After`) and closed.
//!
//! Bodies are bounded by the middleware in [`crate::layers`] (size and time, only after the
//! key check), and each handler by `api.request_timeout_ms`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use pipeline_core::settings::ApiSettings;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// hyper's own hard limits, beyond the API's (which answer `{"detail"}` with 414 or 431
/// from [`crate::layers::head_limits`]): a request over these gets hyper's bare 431.
const HYPER_MAX_HEADERS: usize = 256;
/// See [`HYPER_MAX_HEADERS`]; also the most a connection buffers while reading a head.
const HYPER_MAX_BUF: usize = 64 * 1024;

/// What the HTTP layer enforces; built from the `[api]` settings.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time for a request's head to arrive whole.
    pub header_timeout: Duration,
    /// Time for a keyed request's body to arrive whole (then 408).
    pub body_timeout: Duration,
    /// Time a connection may sit with no request in progress.
    pub idle_timeout: Duration,
    /// Time a handler may run (then 503).
    pub request_timeout: Duration,
    /// Largest request body (then 413).
    pub max_body_bytes: usize,
}

impl Limits {
    /// The limits the settings ask for.
    pub fn from_settings(api: &ApiSettings) -> Self {
        Self {
            max_connections: api.max_connections.max(1),
            header_timeout: Duration::from_millis(api.header_timeout_ms),
            body_timeout: Duration::from_millis(api.body_timeout_ms),
            idle_timeout: Duration::from_millis(api.idle_timeout_ms),
            request_timeout: Duration::from_millis(api.request_timeout_ms),
            max_body_bytes: api.max_body_bytes,
        }
    }
}

/// One open connection, as the cap and the idle timer see it.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    /// Requests being answered on it now.
    active: AtomicUsize,
    /// Whether a request on it presented a valid key.
    keyed: AtomicBool,
    /// When it last became idle, in milliseconds since the server started.
    idle_since_ms: AtomicU64,
    /// When an answer's body last handed a piece to be written that the client has not
    /// taken since (0: none waits): a client that stops reading a streamed answer holds its
    /// connection busy, and this tells it from an answer still being produced.
    unread_since_ms: AtomicU64,
    /// Fired to close it (it is idle and a newcomer needs its place).
    evict: Notify,
}

/// The connection a request arrived on, in the request's extensions (the key check marks it
/// keyed so the cap evicts keyless connections first).
#[derive(Debug, Clone)]
pub(crate) struct ConnMark(pub(crate) Arc<Conn>);

impl ConnMark {
    /// Records that a request on this connection presented a valid key.
    pub(crate) fn mark_keyed(&self) {
        self.0.keyed.store(true, Ordering::Relaxed);
    }
}

/// The open connections, oldest first.
struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    started: Instant,
    max: usize,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Registers a new connection, closing the oldest idle one when at the cap. `None` when
    /// every connection is busy.
    fn admit(&self) -> Option<Arc<Conn>> {
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            active: AtomicUsize::new(0),
            keyed: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            unread_since_ms: AtomicU64::new(0),
            evict: Notify::new(),
        });
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.len() >= self.max {
            // The map iterates oldest first, so `min_by_key` on `keyed` alone picks the
            // oldest keyless idle connection, else the oldest keyed idle one. A request whose
            // head completes between this check and the close is lost with the connection;
            // the client sees a reset, as for any server-side close of an idle connection.
            let victim = conns
                .values()
                .filter(|c| c.active.load(Ordering::Acquire) == 0)
                .min_by_key(|c| c.keyed.load(Ordering::Relaxed))
                .cloned()?;
            conns.remove(&victim.id);
            victim.evict.notify_one();
            metrics::counter!("pipeline_api_connections_evicted_total").increment(1);
        }
        conns.insert(conn.id, conn.clone());
        metrics::gauge!("pipeline_api_connections_open").set(conns.len() as f64);
        Some(conn)
    }

    fn remove(&self, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.remove(&id);
        metrics::gauge!("pipeline_api_connections_open").set(conns.len() as f64);
    }
}

/// Counts a request as in progress on its connection until dropped (also when the request's
/// future is dropped half-way).
struct ActiveGuard {
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl ActiveGuard {
    fn new(conn: Arc<Conn>, registry: Arc<Registry>) -> Self {
        conn.active.fetch_add(1, Ordering::AcqRel);
        Self { conn, registry }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.conn
            .idle_since_ms
            .store(self.registry.now_ms(), Ordering::Relaxed);
        self.conn.unread_since_ms.store(0, Ordering::Relaxed);
        self.conn.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body that holds its request's [`ActiveGuard`] until it is sent or dropped.
struct Guarded {
    inner: axum::body::Body,
    guard: ActiveGuard,
}

impl hyper::body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let poll = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        // A piece handed over waits for the client until the next poll; a pending or
        // finished body waits for nobody.
        let unread = match &poll {
            std::task::Poll::Ready(Some(Ok(_))) => self.guard.registry.now_ms().max(1),
            _ => 0,
        };
        self.guard
            .conn
            .unread_since_ms
            .store(unread, Ordering::Relaxed);
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to a connection refused because every connection is busy. Written without
/// waiting (the socket buffer of a new connection has room), so refusing costs no task.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 52\r\n\r\n\
{\"detail\":\"too many connections; retry in a moment\"}";

/// Accepts connections on `listener` and serves `app` on each until `cancel` fires; then
/// stops accepting, lets requests in flight finish, and returns when every connection closed.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    cancel: CancellationToken,
) {
    let registry = Arc::new(Registry {
        conns: Mutex::new(BTreeMap::new()),
        next_id: AtomicU64::new(0),
        started: Instant::now(),
        max: limits.max_connections,
    });
    let tracker = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUF)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(err) => {
                // Out of descriptors (EMFILE) or a connection reset before accept: wait a
                // little instead of spinning; closing idle connections frees descriptors.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(conn) = registry.admit() else {
            metrics::counter!("pipeline_api_connections_refused_total").increment(1);
            // Best effort: the client may already be gone; the socket closes either way.
            let _ = stream.try_write(BUSY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tracker.spawn(serve_connection(
            stream,
            peer,
            conn,
            registry.clone(),
            app.clone(),
            http.clone(),
            limits.idle_timeout,
            cancel.clone(),
        ));
    }
    tracker.close();
    tracker.wait().await;
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    app: Router,
    http: hyper::server::conn::http1::Builder,
    idle_timeout: Duration,
    cancel: CancellationToken,
) {
    let service = {
        let conn = conn.clone();
        let registry = registry.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let guard = ActiveGuard::new(conn.clone(), registry.clone());
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(ConnMark(conn.clone()));
            let app = app.clone();
            async move {
                let response =
                    tower::ServiceExt::oneshot(app, req.map(axum::body::Body::new)).await?;
                // The request is in progress until its body is sent: a streamed answer (an
                // export) keeps its connection from being closed as idle.
                Ok::<_, std::convert::Infallible>(response.map(|inner| Guarded { inner, guard }))
            }
        })
    };
    let connection = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let idle_deadline = {
            let since = conn.idle_since_ms.load(Ordering::Relaxed);
            let due = Duration::from_millis(since) + idle_timeout;
            tokio::time::Instant::from_std(registry.started + due)
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, %peer, "connection ended with an error");
                }
                break;
            }
            _ = cancel.cancelled(), if !draining => {
                // Finish the request in progress, then close.
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = conn.evict.notified() => {
                tracing::debug!(%peer, "idle connection closed to admit a new one");
                break;
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                let since = conn.idle_since_ms.load(Ordering::Relaxed);
                let idle_for = registry.now_ms().saturating_sub(since);
                if conn.active.load(Ordering::Acquire) == 0
                    && idle_for >= idle_timeout.as_millis() as u64
                {
                    tracing::debug!(%peer, "idle connection closed");
                    break;
                }
                if conn.active.load(Ordering::Acquire) > 0 {
                    // Busy, unless the client stopped reading its answer: a piece has
                    // waited for it for ten idle periods (an export piped into a pager,
                    // a client that hung). Closed then, so stalled readers cannot hold
                    // every connection; an export is resumed from its last cursor.
                    let unread = conn.unread_since_ms.load(Ordering::Relaxed);
                    if unread != 0
                        && registry.now_ms().saturating_sub(unread)
                            >= 10 * idle_timeout.as_millis() as u64
                    {
                        tracing::debug!(%peer, "client stopped reading its answer; connection closed");
                        break;
                    }
                    // Look again one idle period from now.
                    conn.idle_since_ms.store(registry.now_ms(), Ordering::Relaxed);
                }
            }
        }
    }
    registry.remove(conn.id);
}
