//! The scrape queue's [`Handler`]: load the source, fetch, store, enqueue extraction. The
//! runner decodes the message, and records failures.
//!
//! Crash safety comes from the order: a crawled page's links are admitted (the discovered
//! pages enqueued), the page is stored (an UPDATE that also moves the source to `scraped`),
//! then the extraction message is enqueued (idempotent by id), then the runner acks. A crash between any two steps redelivers the message, and doing the
//! steps again changes nothing that matters.
//!
//! When the message carries the source's URL (submissions put it there), the fetch starts
//! at once, beside the statement that loads the source and records `started`, instead of
//! one Postgres round trip later. The row still decides: a source that is gone or already
//! past scraping discards the early fetch (a redelivery pays one wasted request), and a
//! message whose URL differs from the row's is fetched again from the row's URL.

use std::sync::Arc;
use std::time::Instant;

use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::messages::SourceMessage;
use pipeline_ops::worker::{Failure, Handler};
use pipeline_store::StoreError;
use pipeline_store::sources::{self, Fetched};
use pipeline_store::status::SourceStatus;
use serde_json::json;
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

    async fn scrape(&self, delivery: &Delivery, msg: SourceMessage) -> Result<(), Failure> {
        let db = &self.services.db;
        let attempt = (delivery.attempts + 1) as i32;
        let start = async {
            match sources::start_work(
                db,
                msg.source_id,
                msg.job_id,
                Family::Scrape.as_str(),
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
        let status = source.status;
        // A scrape message for a source that is already past scraping is a redelivery of
        // work that was done but not acked (a crash, a lost lease): finish it, don't redo it
        // (and no `started` event was written).
        if PAST_SCRAPING.contains(&status) {
            tracing::info!(%status, "source already past scraping; not fetching again");
            if status == SourceStatus::Scraped {
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
        // Before the page is stored: a crash from here on redelivers the message (see
        // `discover`).
        crate::discover::discover(
            &self.services,
            &self.fetcher,
            msg.source_id,
            source.source_group.as_deref(),
            &page,
        )
        .await?;

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
        self.services
            .queue(Family::Extraction)
            .enqueue(&msg.id(), &msg.body())
            .await
            .map_err(|e| Failure::transient(format!("enqueueing extraction: {e}")))?;
        Ok(())
    }
}

impl Handler for ScrapeHandler {
    type Message = SourceMessage;

    async fn handle(&self, delivery: &Delivery, msg: SourceMessage) -> Result<(), Failure> {
        self.scrape(delivery, msg).await
    }

    fn db(&self) -> &sqlx::PgPool {
        &self.services.db
    }

    /// Stored pages refresh their job's progress in the background; a drain waits for them.
    async fn settled(&self) {
        pipeline_store::progress::settled().await;
    }
}
