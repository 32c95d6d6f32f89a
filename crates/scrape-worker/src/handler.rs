//! The scrape queue's [`Handler`]: parse the message, load the source, fetch, store, enqueue
//! extraction; and the Postgres bookkeeping of failures.
//!
//! Crash safety comes from the order: the page is stored (an UPDATE that also moves the
//! source to `scraped`), then the extraction message is enqueued (idempotent by id), then
//! the runner acks. A crash between any two steps redelivers the message, and doing the
//! steps again changes nothing that matters.
//!
//! When the message carries the source's URL (submissions put it there), the fetch starts
//! at once, beside the statement that loads the source and records `started`, instead of
//! one Postgres round trip later. The row still decides: a source that is gone or already
//! past scraping discards the early fetch (a redelivery pays one wasted request), and a
//! message whose URL differs from the row's is fetched again from the row's URL.

use std::sync::Arc;
use std::time::Instant;

use pipeline_ops::Services;
use pipeline_ops::messages::{EXTRACTION, SCRAPE, SourceMessage};
use pipeline_ops::worker::{Failure, Handler, Settled};
use pipeline_store::StoreError;
use pipeline_store::sources::{self, Fetched, Transition};
use pipeline_store::status::SourceStatus;
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;
use work_queue::Delivery;

use crate::FetchError;
use crate::fetch::{Fetcher, Page, seconds_since};

/// Statuses a scrape message finds when its work is already done.
const PAST_SCRAPING: [SourceStatus; 3] = [
    SourceStatus::Scraped,
    SourceStatus::Extracted,
    SourceStatus::Discarded,
];

/// Scrapes one source per delivery.
pub struct ScrapeHandler {
    services: Services,
    fetcher: Arc<Fetcher>,
}

impl ScrapeHandler {
    /// A handler over the process's services and fetcher.
    pub fn new(services: Services, fetcher: Arc<Fetcher>) -> Self {
        Self { services, fetcher }
    }

    async fn scrape(&self, delivery: &Delivery, span: &tracing::Span) -> Result<(), Failure> {
        let msg: SourceMessage = delivery
            .parse()
            .map_err(|e| Failure::permanent(format!("malformed message: {e}")))?;
        span.record("job_id", tracing::field::display(display_job(msg.job_id)));
        span.record("source_id", tracing::field::display(msg.source_id));
        let db = &self.services.db;
        let attempt = (delivery.attempts + 1) as i32;
        let start = async {
            match sources::start_work(
                db,
                msg.source_id,
                msg.job_id,
                SCRAPE,
                Some(attempt),
                &PAST_SCRAPING,
                &json!({"deliveries": delivery.deliveries}),
            )
            .await
            {
                Ok(s) => Ok(s),
                Err(StoreError::NotFound(what)) => {
                    Err(Failure::permanent(format!("{what} not found")))
                }
                Err(e) => Err(Failure::transient(format!("loading the source: {e}"))),
            }
        };
        // With the URL in the message, fetch while the source loads; a failed load drops
        // (cancels) the fetch.
        let (source, early) = match msg.uri.as_deref() {
            Some(uri) => {
                let (source, fetched) =
                    tokio::try_join!(start, async { Ok(self.fetch(uri).await) })?;
                (source, Some((uri, fetched)))
            }
            None => (start.await?, None),
        };
        let status = SourceStatus::parse(&source.status);
        // A scrape message for a source that is already past scraping is a redelivery of
        // work that was done but not acked (a crash, a lost lease): finish it, don't redo it
        // (and no `started` event was written).
        if status.is_some_and(|s| PAST_SCRAPING.contains(&s)) {
            tracing::info!(status = %source.status, "source already past scraping; not fetching again");
            if status == Some(SourceStatus::Scraped) {
                self.enqueue_extraction(&msg).await?;
            }
            metrics::counter!("scrape_fetches_total", "outcome" => "skipped").increment(1);
            return Ok(());
        }

        let (result, started) = match early {
            Some((uri, fetched)) if uri == source.uri => fetched,
            _ => self.fetch(&source.uri).await,
        };
        let page = result.map_err(|e| e.to_failure())?;

        let detail = json!({
            "http_status": page.status,
            "content_type": page.content_type,
            "bytes": page.bytes,
            "final_url": page.final_url.as_str(),
            "redirects": page.redirects,
            "duration_ms": started.elapsed().as_millis() as u64,
        });
        let stored = sources::store_fetched(
            db,
            msg.source_id,
            msg.job_id,
            Some(attempt),
            &Fetched {
                raw_content: &page.body,
                title: page.title.as_deref(),
                content_type: &page.content_type,
                http_status: i32::from(page.status),
            },
            detail,
        )
        .await
        .map_err(|e| Failure::transient(format!("storing the page: {e}")))?;
        if !stored {
            return Err(Failure::permanent(format!(
                "source {} disappeared while it was fetched",
                msg.source_id
            )));
        }
        self.enqueue_extraction(&msg).await?;
        tracing::info!(http_status = page.status, bytes = page.bytes, "scraped");
        Ok(())
    }

    /// Fetches `uri`, with the fetch metrics; returns when the fetch began too.
    async fn fetch(&self, uri: &str) -> (Result<Page, FetchError>, Instant) {
        let started = Instant::now();
        metrics::gauge!("scrape_fetches_in_flight").increment(1.0);
        let result = self.fetcher.fetch(uri).await;
        metrics::gauge!("scrape_fetches_in_flight").decrement(1.0);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        metrics::counter!("scrape_fetches_total", "outcome" => outcome).increment(1);
        metrics::histogram!("scrape_fetch_duration_seconds").record(seconds_since(started));
        (result, started)
    }

    async fn enqueue_extraction(&self, msg: &SourceMessage) -> Result<(), Failure> {
        let queue = self
            .services
            .queue(EXTRACTION)
            .ok_or_else(|| Failure::permanent("no extraction queue configured"))?;
        queue
            .enqueue(&msg.id(), &msg.body())
            .await
            .map_err(|e| Failure::transient(format!("enqueueing extraction: {e}")))?;
        Ok(())
    }

    /// The source and job a delivery is about, even when its body is malformed (the
    /// message id is the source id).
    async fn ids_of(&self, delivery: &Delivery) -> Option<(Uuid, Option<Uuid>)> {
        if let Ok(msg) = delivery.parse::<SourceMessage>() {
            return Some((msg.source_id, msg.job_id));
        }
        let source_id = Uuid::parse_str(&delivery.id).ok()?;
        let job_id = sources::get(&self.services.db, source_id)
            .await
            .ok()
            .and_then(|s| s.created_by_job_id);
        Some((source_id, job_id))
    }
}

fn display_job(job_id: Option<Uuid>) -> String {
    job_id.map(|j| j.to_string()).unwrap_or_default()
}

fn delivery_span(delivery: &Delivery) -> tracing::Span {
    tracing::info_span!(
        "scrape",
        message_id = %delivery.id,
        job_id = tracing::field::Empty,
        source_id = tracing::field::Empty,
        deliveries = delivery.deliveries,
    )
}

impl Handler for ScrapeHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), Failure> {
        let span = delivery_span(delivery);
        self.scrape(delivery, &span).instrument(span.clone()).await
    }

    async fn on_failure(&self, delivery: &Delivery, failure: &Failure, settled: Settled) {
        let span = delivery_span(delivery);
        async {
            let Some((source_id, job_id)) = self.ids_of(delivery).await else {
                tracing::warn!(error = failure.message(), "failure of a message that names no source; only the DLQ holds it");
                return;
            };
            let span = tracing::Span::current();
            span.record("job_id", tracing::field::display(display_job(job_id)));
            span.record("source_id", tracing::field::display(source_id));
            let kind = failure.kind().as_str();
            let message = failure.message();
            let transition = match settled {
                Settled::RetryScheduled { attempts, delay } => Transition {
                    source_id,
                    job_id,
                    to: SourceStatus::Retrying,
                    event: "failed",
                    stage: SCRAPE,
                    attempt: Some(attempts as i32),
                    detail: json!({
                        "error": message,
                        "kind": kind,
                        "attempt": attempts,
                        "delay_ms": delay.as_millis() as u64,
                    }),
                    error: Some((kind, message)),
                },
                Settled::DeadLettered { attempts, kind } => Transition {
                    source_id,
                    job_id,
                    to: SourceStatus::DeadLettered,
                    event: "dead_lettered",
                    stage: SCRAPE,
                    attempt: Some(attempts as i32),
                    detail: json!({
                        "error": message,
                        "kind": kind.as_str(),
                        "attempts": attempts,
                        "dlq": SCRAPE,
                    }),
                    error: Some((kind.as_str(), message)),
                },
                Settled::LeaseLost => return,
            };
            match sources::transition(&self.services.db, &transition).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!("failure of an unknown source; only the DLQ holds it"),
                Err(err) => tracing::error!(error = %err, "could not record the failure in Postgres; the reconciler will find the source"),
            }
        }
        .instrument(span)
        .await
    }
}
