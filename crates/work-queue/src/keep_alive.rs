//! Background lease renewal for long work.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
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
    /// How often a kept lease is renewed: a third of the visibility timeout, so two
    /// renewals can fail before the lease runs out.
    fn renew_period(&self) -> Duration {
        (self.inner.opts.visibility_timeout / 3).max(Duration::from_millis(1))
    }

    /// Starts renewing `delivery`'s lease every `visibility_timeout / 3` until the returned
    /// keeper is dropped (drop it before acking). Needs a Tokio runtime.
    pub fn keep_alive(&self, delivery: &Delivery) -> LeaseKeeper {
        let lost = CancellationToken::new();
        let period = self.renew_period();
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

/// A reserved batch whose deliveries wait for the work that will take them, their leases
/// renewed from one background task (every `visibility_timeout / 3`) while they wait.
///
/// A runner that reserves more than it has free slots, or reserves its next batch while
/// the last is still being handed out, holds the extras this way: if the work slowed down
/// since the reserve, a delivery can wait longer than a lease lasts. Each delivery leaves
/// as the batch is iterated; from then on its own keep-alive ([`WorkQueue::leased`]) is
/// the caller's. Dropping the batch stops the renewals: deliveries still in it come back
/// when their leases run out, as an unsettled delivery always does.
#[derive(Debug)]
#[must_use = "deliveries left in a dropped batch come back only when their leases end"]
pub struct Held {
    left: Arc<Mutex<VecDeque<Delivery>>>,
    renewer: Option<JoinHandle<()>>,
}

impl Held {
    /// A batch handed out at once, with nothing to renew (no background task).
    pub fn now(batch: Vec<Delivery>) -> Self {
        Self {
            left: Arc::new(Mutex::new(batch.into())),
            renewer: None,
        }
    }

    /// Deliveries still in the batch.
    pub fn len(&self) -> usize {
        lock(&self.left).len()
    }

    /// Whether the batch is handed out.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Hands the deliveries out in reserve order; each leaves the batch (and its renewals).
impl Iterator for Held {
    type Item = Delivery;

    fn next(&mut self) -> Option<Delivery> {
        lock(&self.left).pop_front()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(task) = &self.renewer {
            task.abort();
        }
    }
}

/// The batch's lock; a panic while it was held cannot leave the queue of deliveries torn.
fn lock(left: &Mutex<VecDeque<Delivery>>) -> std::sync::MutexGuard<'_, VecDeque<Delivery>> {
    left.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl WorkQueue {
    /// Holds `batch` with its leases renewed until each delivery leaves it (see [`Held`]).
    /// An empty batch starts no task. Needs a Tokio runtime.
    pub fn hold(&self, batch: Vec<Delivery>) -> Held {
        let empty = batch.is_empty();
        let mut held = Held::now(batch);
        if empty {
            return held;
        }
        let period = self.renew_period();
        let (queue, left) = (self.clone(), Arc::downgrade(&held.left));
        held.renewer = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(left) = left.upgrade() else { return };
                let waiting: Vec<Delivery> = lock(&left).iter().cloned().collect();
                drop(left);
                if waiting.is_empty() {
                    return;
                }
                // Sent together: the shared connections pipeline them. A lost lease needs
                // nothing here (the work that takes the delivery finds it lost when it
                // settles); a failure is retried next period.
                let renewed =
                    futures::future::join_all(waiting.iter().map(|d| queue.renew(d))).await;
                for (delivery, result) in waiting.iter().zip(renewed) {
                    if let Err(e) = result {
                        tracing::warn!(
                            family = queue.family(),
                            id = %delivery.id,
                            error = &e as &dyn std::error::Error,
                            "lease renewal of a waiting delivery failed; retrying at the next period"
                        );
                    }
                }
            }
        }));
        held
    }
}
