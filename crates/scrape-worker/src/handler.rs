//! The scrape queue's [`Handler`]: load the source, fetch, store, enqueue extraction. The
//! runner decodes the message, and records failures.
//!
//! Crash safety comes from the order: a crawled page's links are admitted (the discovered
//! pages enqueued), the page is stored (an UPDATE that also moves the source to `scraped`),
//! then the extraction message is enqueued (idempotent by id), then the runner acks. A crash between any two steps redelivers the message, and doing the
//! steps again changes nothing that matters.
//!
//! The row is the record: the source is loaded (and `started` recorded) before anything is
//! fetched, and the URL fetched is the row's. A message for a source that does not exist
//! fails permanently without a request, and the URL a message carries (submissions put it
//! there, for people reading the queue) is never fetched: a message written by anyone who
//! can write to Redis cannot make the worker fetch a URL no submission accepted. (An earlier
//! version fetched the message's URL beside the load, saving one Postgres round trip.)

use std::sync::Arc;
use std::time::Instant;

use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::ledger::SourceLedger;
use pipeline_ops::messages::SourceMessage;
use pipeline_runner::{Failure, FailureLog, Handler};
use pipeline_store::StoreError;
use pipeline_store::extractions::Finished;
use pipeline_store::sources::{self, Fetched};
use pipeline_store::status::SourceStatus;
use serde_json::json;
use work_queue::Delivery;

use crate::FetchError;
use crate::fetch::{Fetcher, Page, seconds_since};
use crate::render::decide::RenderSlot;

/// Statuses a scrape message finds when its work is already done.
const PAST_SCRAPING: [SourceStatus; 4] = [
    SourceStatus::Scraped,
    SourceStatus::FactsPending,
    SourceStatus::Extracted,
    SourceStatus::Discarded,
];

/// Scrapes one source per delivery.
pub struct ScrapeHandler {
    services: Services,
    fetcher: Arc<Fetcher>,
    ledger: SourceLedger,
    render: RenderSlot,
}

impl ScrapeHandler {
    /// A handler over the process's services and fetcher.
    pub fn new(services: Services, fetcher: Arc<Fetcher>) -> Self {
        let ledger = SourceLedger::new(services.db.clone(), services.progress.clone());
        let render = RenderSlot::new(&services.settings, fetcher.clone());
        Self {
            services,
            fetcher,
            ledger,
            render,
        }
    }

    /// The browser pool, once a page has needed it.
    pub fn renderer(&self) -> Option<&Arc<crate::render::pool::Renderer>> {
        self.render.started()
    }

    /// Stops the handler's browsers (after the runner has drained).
    pub async fn shutdown(&self) {
        self.render.shutdown().await;
    }

    /// One scrape, in the order that keeps a crash harmless: load the row (and record
    /// `started`), fetch its URL, admit the page's links, store the page, enqueue its
    /// extraction. The runner acks after; a crash between any two steps redoes them.
    async fn scrape(&self, delivery: &Delivery, msg: SourceMessage) -> Result<(), Failure> {
        let attempt = (delivery.attempts + 1) as i32;
        let (source, page_crawls) = self.start(delivery, &msg, attempt).await?;
        if PAST_SCRAPING.contains(&source.status) {
            return self.finish_redelivery(&msg, source.status).await;
        }
        let mut fetched = self.fetch_source(&msg, &source).await?;
        if fetched.unchanged.is_none() {
            // Rendered before links are read, so a crawl follows the links script built.
            self.render
                .apply(msg.render, &mut fetched.page, &mut fetched.render)
                .await?;
        }
        // Before the page is stored: a crash from here on redelivers the message (see
        // `discover`).
        crate::discover::discover(
            &self.services,
            &self.fetcher,
            msg.source_id,
            source.source_group.as_deref(),
            &fetched.page,
            &page_crawls,
        )
        .await?;
        match fetched.unchanged {
            Some(known_by) => {
                self.store_unchanged(&msg, attempt, &fetched, known_by)
                    .await
            }
            None => self.store_page(&msg, attempt, &fetched).await,
        }
    }

    /// Loads the source (the row is the record: its URL is the one fetched) and records
    /// `started`, beside the source's crawls. A source that does not exist fails for good.
    async fn start(
        &self,
        delivery: &Delivery,
        msg: &SourceMessage,
        attempt: i32,
    ) -> Result<(sources::SourceRow, Vec<pipeline_store::crawls::PageCrawl>), Failure> {
        let start = async {
            sources::start_work(
                &self.services.db,
                msg.source_id,
                msg.job_id,
                pipeline_store::Actor::ScrapeWorker,
                Some(attempt),
                &PAST_SCRAPING,
                &json!({"deliveries": delivery.deliveries}),
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound(what) => Failure::permanent(format!("{what} not found")),
                e => Failure::transient(format!("loading the source: {e}")),
            })
        };
        let crawls = crate::discover::crawls_of(&self.services, msg.source_id);
        let (source, page_crawls) = tokio::try_join!(start, crawls)?;
        if msg.url.as_deref().is_some_and(|url| url != source.url) {
            tracing::warn!(
                message_url = msg.url.as_deref().unwrap_or_default(),
                source_url = %source.url,
                "the message's URL is not its source's; fetching the source's"
            );
        }
        Ok((source, page_crawls))
    }

    /// A scrape message for a source already past scraping is a redelivery of work that was
    /// done but not acked (a crash, a lost lease): finish it (the extraction message), don't
    /// redo it (no `started` event was written).
    async fn finish_redelivery(
        &self,
        msg: &SourceMessage,
        status: SourceStatus,
    ) -> Result<(), Failure> {
        tracing::info!(%status, "source already past scraping; not fetching again");
        if status == SourceStatus::Scraped {
            self.enqueue_extraction(msg).await?;
        }
        metrics::counter!("pipeline_scrape_fetches_total", "outcome" => "skipped").increment(1);
        Ok(())
    }

    /// Fetches the source's URL. Without a URL in the message (a recrawl's pages), a page
    /// whose stored body is the one it was last extracted from is fetched conditionally, and
    /// `unchanged` says how it is known not to have changed (then it is not extracted again).
    async fn fetch_source(
        &self,
        msg: &SourceMessage,
        source: &sources::SourceRow,
    ) -> Result<FetchedPage, Failure> {
        let revisit = if msg.url.is_some() {
            None
        } else {
            sources::revisit(&self.services.db, msg.source_id)
                .await
                .map_err(|e| Failure::transient(format!("loading the source's validators: {e}")))?
        };
        let validators = revisit
            .as_ref()
            .map(|r| (r.etag.as_deref(), r.last_modified.as_deref()));
        let (result, timing) = self.fetch(&source.url, validators).await;
        let (page, unchanged) = match result.map_err(|e| e.to_failure())? {
            Some(page) => {
                let same = revisit
                    .as_ref()
                    .is_some_and(|r| r.sha256 == sha256_hex(page.stored_bytes()));
                (page, same.then_some("the same content hash"))
            }
            None => (self.stored_page(source).await?, Some("304 Not Modified")),
        };
        Ok(FetchedPage {
            page,
            timing,
            revisit: revisit.is_some(),
            unchanged,
            render: serde_json::Value::Null,
        })
    }

    /// Records a revisited page that did not change: its trail says so, nothing is
    /// extracted again.
    async fn store_unchanged(
        &self,
        msg: &SourceMessage,
        attempt: i32,
        fetched: &FetchedPage,
        known_by: &'static str,
    ) -> Result<(), Failure> {
        let mut detail = fetched.detail();
        detail["content"] = json!("unchanged");
        detail["known_by"] = json!(known_by);
        let stored = sources::store_unchanged(
            &self.services.db,
            &self.services.progress,
            msg.source_id,
            msg.job_id,
            Some(attempt),
            detail,
        )
        .await
        .map_err(|e| Failure::transient(format!("recording the unchanged page: {e}")))?;
        match stored {
            Finished::Missing => return Err(disappeared(msg)),
            // After the commit; a crash before the enqueue leaves the page `facts_pending`,
            // which the reconciler finds.
            Finished::FactsPending => {
                self.services
                    .queue(Family::Facts)
                    .enqueue_in(&msg.lane(), &msg.id(), &msg.body())
                    .await
                    .map_err(|e| Failure::transient(format!("enqueueing facts: {e}")))?;
                tracing::info!("unchanged, but its project's schema changed: facts queued");
            }
            Finished::Extracted => {}
        }
        metrics::counter!("pipeline_scrape_revisits_total", "content" => "unchanged").increment(1);
        tracing::info!(
            known_by,
            "unchanged since its last extraction; not extracted again"
        );
        Ok(())
    }

    /// Stores the page (the source moves to `scraped`) and enqueues its extraction.
    async fn store_page(
        &self,
        msg: &SourceMessage,
        attempt: i32,
        fetched: &FetchedPage,
    ) -> Result<(), Failure> {
        let page = &fetched.page;
        let mut detail = fetched.detail();
        if fetched.revisit {
            detail["content"] = json!("changed");
            metrics::counter!("pipeline_scrape_revisits_total", "content" => "changed")
                .increment(1);
        }
        let sha256 = sha256_hex(page.stored_bytes());
        let stored = sources::store_fetched(
            &self.services.db,
            &self.services.progress,
            msg.source_id,
            msg.job_id,
            Some(attempt),
            &Fetched {
                raw_content: &page.body,
                raw_bytes: page.raw.as_deref(),
                title: page.title.as_deref(),
                content_type: &page.content_type,
                http_status: i32::from(page.status),
                etag: page.etag.as_deref(),
                last_modified: page.last_modified.as_deref(),
                content_sha256: Some(&sha256),
            },
            detail,
        )
        .await
        .map_err(|e| Failure::transient(format!("storing the page: {e}")))?;
        if !stored {
            return Err(disappeared(msg));
        }
        self.enqueue_extraction(msg).await?;
        tracing::info!(http_status = page.status, bytes = page.bytes, "scraped");
        Ok(())
    }

    /// The page a `304 Not Modified` stands for: the stored body, read again for its links.
    async fn stored_page(&self, source: &sources::SourceRow) -> Result<Page, Failure> {
        let body = sources::raw_content(&self.services.db, source.id)
            .await
            .map_err(|e| Failure::transient(format!("loading the stored page: {e}")))?
            .ok_or_else(|| Failure::permanent("304 Not Modified, but no page is stored"))?;
        Ok(Page {
            final_url: url::Url::parse(&source.url)
                .map_err(|e| Failure::permanent(format!("the stored URL: {e}")))?,
            status: 304,
            content_type: source
                .content_type
                .clone()
                .unwrap_or_else(|| "text/html".into()),
            title: source.title.clone(),
            bytes: body.len(),
            body,
            // Only links are read from it: a PDF's (empty `raw_content`) has none to give.
            raw: None,
            redirects: 0,
            etag: None,
            last_modified: None,
        })
    }

    /// Fetches `url` (conditionally with a recrawl's `validators`: `Ok(None)` is a
    /// `304 Not Modified`), with the fetch metrics; returns when the fetch began and how
    /// long it took too.
    async fn fetch(
        &self,
        url: &str,
        validators: Option<(Option<&str>, Option<&str>)>,
    ) -> (Result<Option<Page>, FetchError>, Timing) {
        let started = Instant::now();
        metrics::gauge!("pipeline_scrape_fetches_in_flight").increment(1.0);
        let result = match validators {
            Some((etag, last_modified)) => {
                self.fetcher
                    .fetch_if_changed(url, etag, last_modified)
                    .await
            }
            None => self.fetcher.fetch(url).await.map(Some),
        };
        metrics::gauge!("pipeline_scrape_fetches_in_flight").decrement(1.0);
        let outcome = match &result {
            Ok(Some(_)) => "ok",
            Ok(None) => "not_modified",
            Err(e) => e.reason(),
        };
        metrics::counter!("pipeline_scrape_fetches_total", "outcome" => outcome).increment(1);
        metrics::histogram!("pipeline_scrape_fetch_duration_seconds")
            .record(seconds_since(started));
        (result, Timing::since(started))
    }

    async fn enqueue_extraction(&self, msg: &SourceMessage) -> Result<(), Failure> {
        self.services
            .queue(Family::Extraction)
            .enqueue_in(&msg.lane(), &msg.id(), &msg.body())
            .await
            .map_err(|e| Failure::transient(format!("enqueueing extraction: {e}")))?;
        Ok(())
    }
}

/// A fetched page and what the trail says of its fetch.
struct FetchedPage {
    page: Page,
    timing: Timing,
    /// Fetched as a recrawl's revisit (with the validators of its last extraction).
    revisit: bool,
    /// How the page is known not to have changed since its last extraction, if it is.
    unchanged: Option<&'static str>,
    /// What the trail says of rendering (`null` when the page was not a candidate).
    render: serde_json::Value,
}

impl FetchedPage {
    /// The `succeeded` event's detail.
    fn detail(&self) -> serde_json::Value {
        let page = &self.page;
        let mut detail = json!({
            "http_status": page.status,
            "content_type": page.content_type,
            "bytes": page.bytes,
            "final_url": page.final_url.as_str(),
            "redirects": page.redirects,
            "fetch_ms": self.timing.took.as_millis() as u64,
            "duration_ms": self.timing.started.elapsed().as_millis() as u64,
        });
        if !self.render.is_null() {
            detail["render"] = self.render.clone();
        }
        detail
    }
}

/// The failure of a source deleted while its page was fetched.
fn disappeared(msg: &SourceMessage) -> Failure {
    Failure::permanent(format!(
        "source {} disappeared while it was fetched",
        msg.source_id
    ))
}

/// When a fetch began and how long it took: the trail's `duration_ms` runs from the start
/// through link discovery, `fetch_ms` is the request alone.
#[derive(Clone, Copy)]
struct Timing {
    started: Instant,
    took: std::time::Duration,
}

impl Timing {
    fn since(started: Instant) -> Self {
        Self {
            started,
            took: started.elapsed(),
        }
    }
}

/// SHA-256 of a body as stored, hex.
fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(body))
}

impl Handler for ScrapeHandler {
    type Message = SourceMessage;

    async fn handle(&self, delivery: &Delivery, msg: SourceMessage) -> Result<(), Failure> {
        self.scrape(delivery, msg).await
    }

    fn failure_log(&self) -> &dyn FailureLog {
        &self.ledger
    }

    /// Stored pages refresh their job's progress in the background; a drain waits for them.
    async fn settled(&self) {
        self.services.progress.settled().await;
    }
}
