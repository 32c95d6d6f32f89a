//! Background lease renewal for long work.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Delivery, WorkQueue};

/// Renews one delivery's lease in the background until dropped.
///
/// Renewal runs every third of the visibility timeout, so two renewals can fail (a Redis
/// hiccup) before the lease runs out. When a renewal finds the lease gone, [`lost`]
/// fires: the work should stop, as another worker may be doing it.
///
/// [`lost`]: LeaseKeeper::lost
#[derive(Debug)]
#[must_use = "the lease is renewed only while the keeper lives"]
pub struct LeaseKeeper {
    task: JoinHandle<()>,
    lost: CancellationToken,
}

impl LeaseKeeper {
    /// Fires when the lease was found lost; never fires while renewals succeed.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Whether the lease was found lost.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WorkQueue {
    /// Starts renewing `delivery`'s lease every `visibility_timeout / 3` until the returned
    /// keeper is dropped (drop it before acking). Needs a Tokio runtime.
    pub fn keep_alive(&self, delivery: &Delivery) -> LeaseKeeper {
        let lost = CancellationToken::new();
        let period = (self.inner.opts.visibility_timeout / 3).max(Duration::from_millis(1));
        let (queue, delivery, flag) = (self.clone(), delivery.clone(), lost.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                match queue.renew(&delivery).await {
                    Ok(true) => {}
                    Ok(false) => {
                        flag.cancel();
                        return;
                    }
                    // Not fatal yet: the lease has two more periods to run, and the next
                    // try may reach Redis again. If it does not, the lease ends and the
                    // message is redelivered, which at-least-once allows.
                    Err(e) => tracing::warn!(
                        family = queue.family(),
                        id = %delivery.id,
                        error = &e as &dyn std::error::Error,
                        "lease renewal failed; retrying at the next period"
                    ),
                }
            }
        });
        LeaseKeeper { task, lost }
    }

    /// Runs `work` with `delivery`'s lease kept alive: work that is done at its first poll
    /// (nothing to wait for) needs no renewal and starts none; otherwise a [`LeaseKeeper`]
    /// renews the lease from its own task, as [`WorkQueue::keep_alive`] does, until the
    /// work ends.
    pub async fn leased<F: std::future::Future>(&self, delivery: &Delivery, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        if let std::task::Poll::Ready(out) = futures::poll!(work.as_mut()) {
            return out;
        }
        let _keeper = self.keep_alive(delivery);
        work.await
    }
}
