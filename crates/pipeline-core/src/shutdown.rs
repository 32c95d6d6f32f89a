//! Shutdown plumbing: SIGTERM and SIGINT cancel one token that every loop watches.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Returns a token cancelled on the first SIGTERM or SIGINT. A second signal is left to the
/// default handler's absence: the drain timeout bounds how long the process lingers.
pub fn signal_token() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining");
        child.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops this process");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `drain` (the in-flight work finishing) for at most `timeout`. Returns `true` when it
/// finished in time; `false` means the caller should hand back what it still holds (leases
/// expire and the queue redelivers it).
pub async fn drain_within<F: Future<Output = ()>>(timeout: Duration, drain: F) -> bool {
    match tokio::time::timeout(timeout, drain).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(
                timeout_secs = timeout.as_secs(),
                "drain timeout reached; unfinished work will be redelivered after its lease"
            );
            false
        }
    }
}
