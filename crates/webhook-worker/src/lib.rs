//! The webhook worker: delivers a project's events to the endpoints it registered.
//!
//! Events are written to `webhook_deliveries` by triggers, in the transaction of the change
//! they report (see `pipeline_store::webhooks`). This worker runs two loops:
//! - the [`relay`](Relay): new deliveries onto the `webhooks` queue, and pending ones whose
//!   message Redis lost onto it again;
//! - the runner over the `webhooks` queue ([`WebhookHandler`]): one signed `POST` per
//!   delivery, through the same address guard as page fetches, bounded by
//!   `webhooks.timeout_ms`. A 2xx delivers; a 408, 429, 5xx, timeout or connection error is
//!   retried with the queue's backoff (`Retry-After` honoured); a redirect or another 4xx,
//!   or a refused address, dead-letters at once. Out of attempts, a delivery goes to the
//!   `webhooks` DLQ, which the requeue daemon redrives and parks like the others.
//!
//! Every attempt (HTTP status, latency, error) is in the delivery's trail
//! (`webhook_delivery_events`). The worker's queue is its own: a slow or dead receiver
//! holds only this worker's slots, never the pipeline's.

mod handler;
mod relay;
pub mod sign;

use std::sync::Arc;
use std::time::Duration;

use pipeline_core::Settings;
use pipeline_ops::{Family, Services};
use pipeline_runner::RunnerOptions;
use tokio_util::sync::CancellationToken;

pub use handler::{ACTOR, SendOptions, WebhookHandler, WebhookLedger};
pub use pipeline_ops::messages::DeliveryMessage;
pub use relay::{ReconcileReport, Relay};

/// The send options of the `[webhooks]` settings.
pub fn send_options(settings: &Settings) -> SendOptions {
    let w = &settings.webhooks;
    SendOptions {
        timeout: Duration::from_millis(w.timeout_ms),
        allow_private_hosts: w.allow_private_hosts.clone(),
        max_response_bytes: w.max_response_bytes,
    }
}

/// The runner options of the `[webhooks]`, `[queue]` and `[shutdown]` settings.
pub fn runner_options(settings: &Settings) -> RunnerOptions {
    RunnerOptions {
        concurrency: settings.webhooks.concurrency,
        reserve_batch: settings.queue.reserve_batch,
        drain_timeout: settings.shutdown.drain_timeout(),
    }
}

/// Relays and delivers until `cancel` fires, then drains within the configured timeout.
/// Returns whether the drain was complete.
///
/// # Errors
/// When the HTTP client cannot be built.
pub async fn run(services: &Services, cancel: CancellationToken) -> anyhow::Result<bool> {
    let handler = Arc::new(WebhookHandler::new(
        services.db.clone(),
        &send_options(&services.settings),
    )?);
    let relay = Relay::new(services.clone());
    let relay_cancel = cancel.clone();
    let relaying = tokio::spawn(async move { relay.run(relay_cancel).await });
    let queue = services.queue(Family::Webhooks).clone();
    let opts = runner_options(&services.settings);
    let drained =
        pipeline_runner::run(queue, handler, opts, services.activity.clone(), cancel).await;
    if let Err(e) = relaying.await {
        tracing::error!(error = %e, "the webhook relay ended abnormally");
    }
    Ok(drained)
}
