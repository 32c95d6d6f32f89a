//! A TCP proxy on 127.0.0.1 that forwards to a real server until told to stall: then it
//! keeps every connection open but forwards nothing, the way a network partition looks to a
//! client (no error, no answer). Tests put it between a daemon and Postgres.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The running proxy; it stops (closing its connections) when dropped.
pub struct StallProxy {
    addr: SocketAddr,
    stalled: Arc<AtomicBool>,
    stop: CancellationToken,
}

impl StallProxy {
    /// Starts a proxy to `target` on a free port.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stalled = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let (flag, token) = (stalled.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                let (flag, token) = (flag.clone(), token.clone());
                tokio::spawn(async move {
                    // A refused upstream just closes the client, as a dead server would.
                    if let Ok(server) = TcpStream::connect(target).await {
                        tokio::select! {
                            _ = token.cancelled() => {}
                            _ = pipe(client, server, flag) => {}
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            stalled,
            stop,
        })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on nothing is forwarded, in either direction, on any connection.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, stalled: Arc<AtomicBool>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::join!(copy(cr, sw, stalled.clone()), copy(sr, cw, stalled.clone()));
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Stalled: hold the bytes and the connection, forever (until the proxy is dropped).
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
