//! From Postgres to the queue: deliveries the triggers wrote are put on the `webhooks`
//! queue, and pending ones whose message Redis lost are put on it again.
//!
//! The relay claims a batch (`FOR UPDATE SKIP LOCKED`, so replicas share the work), enqueues
//! it, then commits the claim: a crash in between leaves the batch unclaimed, and relaying
//! it again queues nothing twice (the message id is the delivery id, and the queue refuses
//! an id it holds). It wakes on the triggers' notification, and polls every
//! `webhooks.relay_interval_ms` in case a notification was missed.

use std::time::Duration;

use pipeline_ops::{Family, Services};
use pipeline_store::webhooks::{self, Mark, NOTIFY_CHANNEL};
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use pipeline_ops::messages::DeliveryMessage;

use crate::handler::ACTOR;

/// Deliveries claimed per round.
const BATCH: i64 = 500;

/// Relays deliveries to the queue and repairs lost messages.
#[derive(Clone)]
pub struct Relay {
    services: Services,
    interval: Duration,
    reconcile_after: Duration,
}

/// What one reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Pending deliveries queued long ago that were examined.
    pub examined: usize,
    /// Those a queue or the DLQ still holds (slow or waiting for a retry, not lost); one the
    /// DLQ holds is booked `dead_lettered` if its row still said `pending`.
    pub held: usize,
    /// Those queued again.
    pub requeued: Vec<Uuid>,
}

impl Relay {
    /// A relay over `services` with the `[webhooks]` settings.
    pub fn new(services: Services) -> Self {
        let w = &services.settings.webhooks;
        Self {
            interval: Duration::from_millis(w.relay_interval_ms),
            reconcile_after: Duration::from_secs(w.reconcile_after_secs),
            services,
        }
    }

    /// Relays one batch of new deliveries; returns how many.
    ///
    /// # Errors
    /// Postgres or Redis errors (the batch stays unclaimed).
    pub async fn relay_once(&self) -> anyhow::Result<usize> {
        let mut tx = self.services.db.begin().await?;
        let claimed = webhooks::claim_unrelayed(&mut tx, BATCH).await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        self.enqueue(claimed.iter().map(|(id, _)| *id)).await?;
        tx.commit().await?;
        metrics::counter!("pipeline_webhook_relayed_total").increment(claimed.len() as u64);
        Ok(claimed.len())
    }

    async fn enqueue(&self, ids: impl Iterator<Item = Uuid>) -> anyhow::Result<()> {
        let batch: Vec<(String, serde_json::Value)> = ids
            .map(|delivery_id| {
                let m = DeliveryMessage { delivery_id };
                (m.id(), m.body())
            })
            .collect();
        self.services
            .queue(Family::Webhooks)
            .enqueue_bulk(&batch)
            .await?;
        Ok(())
    }

    /// Looks at pending deliveries queued more than `webhooks.reconcile_after_secs` ago:
    /// those no queue and no DLQ holds are queued again (with a `reconciled` trail entry);
    /// those the DLQ holds are booked `dead_lettered` (their dead-letter's booking did not
    /// land); those a queue holds are marked as seen now, so the next sweep looks at others.
    ///
    /// # Errors
    /// Postgres or Redis errors.
    pub async fn reconcile_once(&self) -> anyhow::Result<ReconcileReport> {
        let stale = webhooks::stale_pending(
            &self.services.db,
            self.reconcile_after.as_secs() as i64,
            BATCH,
        )
        .await?;
        let mut report = ReconcileReport {
            examined: stale.len(),
            ..ReconcileReport::default()
        };
        if stale.is_empty() {
            return Ok(report);
        }
        let queue = self.services.queue(Family::Webhooks);
        let dlq = self.services.dlq(Family::Webhooks);
        // Per delivery, across every shard in use (a message lives in its id's shard).
        let (mut held, mut in_dlq, mut lost) = (Vec::new(), Vec::new(), Vec::new());
        for (id, _) in &stale {
            let key = id.to_string();
            if dlq.get_listed(&key).await?.is_some() {
                in_dlq.push(*id);
            } else if queue.contains(&key).await? {
                held.push(*id);
            } else {
                lost.push(*id);
            }
        }
        report.held = held.len() + in_dlq.len();
        if !held.is_empty() {
            webhooks::mark_relayed(&self.services.db, &held, None).await?;
        }
        // In the DLQ while the row says pending: the dead-letter's booking did not land.
        // Booked now, so DLQ views, redrives and replays agree with the row.
        if !in_dlq.is_empty() {
            let none = vec![None; in_dlq.len()];
            webhooks::mark(&self.services.db, Mark::DeadLettered, &in_dlq, &none, ACTOR).await?;
        }
        if !lost.is_empty() {
            self.enqueue(lost.iter().copied()).await?;
            webhooks::mark_relayed(&self.services.db, &lost, Some(ACTOR)).await?;
            for id in &lost {
                tracing::warn!(delivery_id = %id,
                    "reconciled: no queue or DLQ held this delivery; queued again");
            }
            metrics::counter!("pipeline_webhook_reconciled_total").increment(lost.len() as u64);
        }
        report.requeued = lost;
        Ok(report)
    }

    /// Relays until `cancel` fires: at every notification, every `relay_interval_ms`, and
    /// at once again after a full batch; reconciles every quarter of
    /// `reconcile_after_secs` (between 1 and 60 s).
    pub async fn run(&self, cancel: CancellationToken) {
        let reconcile_every =
            (self.reconcile_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut next_reconcile = tokio::time::Instant::now() + reconcile_every;
        let mut listener: Option<PgListener> = None;
        while !cancel.is_cancelled() {
            if listener.is_none() {
                listener = self.listen().await;
            }
            let full = match self.relay_once().await {
                Ok(n) => n as i64 >= BATCH,
                Err(err) => {
                    tracing::error!(
                        error = format!("{err:#}"),
                        "webhook relay failed; trying again"
                    );
                    false
                }
            };
            if tokio::time::Instant::now() >= next_reconcile {
                if let Err(err) = self.reconcile_once().await {
                    tracing::error!(error = format!("{err:#}"), "webhook reconciliation failed");
                }
                next_reconcile = tokio::time::Instant::now() + reconcile_every;
            }
            if full {
                continue;
            }
            let wait = tokio::time::sleep(self.interval);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = wait => {}
                notified = async {
                    match listener.as_mut() {
                        Some(l) => l.recv().await.map(|_| ()),
                        None => std::future::pending().await,
                    }
                } => {
                    if let Err(err) = notified {
                        tracing::warn!(error = %err, "webhook notifications lost; polling until they are back");
                        listener = None;
                    }
                }
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut l = match PgListener::connect_with(&self.services.db).await {
            Ok(l) => l,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for webhook notifications; polling");
                return None;
            }
        };
        match l.listen(NOTIFY_CHANNEL).await {
            Ok(()) => Some(l),
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for webhook notifications; polling");
                None
            }
        }
    }
}
