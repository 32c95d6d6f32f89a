//! The scrape worker: consumes the `scrape` queue, fetches each source's URL safely
//! (http/https only, public addresses only unless allowed, DNS pinned through the client's
//! resolver, every redirect hop re-checked) and politely (robots.txt, per-host delay and
//! concurrency shared through Redis), stores the page on the source row, and enqueues it
//! for extraction. Failures are classified transient or permanent and settled by the
//! shared worker runner (retry with backoff, or the DLQ), with the source's status and
//! event trail updated to match.
//!
//! Settings: `[scrape]` of the configuration (environment `PIPELINE__SCRAPE__*`), the
//! `[queue]` lease and retry settings, and `probes.scrape_worker_port`.

pub mod decode;
pub mod discover;
mod error;
pub mod fetch;
pub mod guard;
mod handler;
pub mod politeness;
pub mod render;
mod robots;
pub mod sitemap;

use std::sync::Arc;
use std::time::Duration;

use pipeline_ops::Family;
use pipeline_ops::Services;
use pipeline_ops::daemon::Drain;
use pipeline_runner::RunnerOptions;
use tokio_util::sync::CancellationToken;

pub use error::FetchError;
pub use fetch::{FetchOptions, Fetcher, Page};
pub use handler::ScrapeHandler;
pub use politeness::{HostLimiter, Limits};
pub use robots::RobotsRules;

/// How long a fetch waits for a politeness slot on its host before failing as transient.
pub const MAX_POLITENESS_WAIT: Duration = Duration::from_secs(60);

/// The fetcher the settings describe, with Redis-backed politeness when any limit is set.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn fetcher_for(services: &Services) -> Result<Fetcher, FetchError> {
    let s = &services.settings.scrape;
    let opts = FetchOptions::from(s);
    let limits = Limits {
        min_delay: Duration::from_millis(s.per_host_min_delay_ms),
        max_concurrency: s.per_host_max_concurrency,
        // A slot is held for one request (one hop), which the client's timeout bounds; the
        // margin covers the release round trip. A crashed holder frees it after this.
        lease: opts.request_timeout + Duration::from_secs(5),
        max_wait: MAX_POLITENESS_WAIT,
    };
    let limiter = limits.is_active().then(|| {
        HostLimiter::new(
            services.redis.clone(),
            &services.settings.redis.key_prefix,
            limits,
        )
    });
    Fetcher::new(opts, limiter)
}

/// The handler the settings describe.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn handler_for(services: &Services) -> Result<ScrapeHandler, FetchError> {
    Ok(ScrapeHandler::new(
        services.clone(),
        Arc::new(fetcher_for(services)?),
    ))
}

/// Runs the worker until `cancel` fires, then drains within the shutdown timeout, and says
/// how the drain ended.
///
/// # Errors
/// When the HTTP client cannot be built or the scrape queue is missing.
pub async fn run(services: Services, cancel: CancellationToken) -> anyhow::Result<Drain> {
    let render = &services.settings.render;
    if render.enabled {
        // A worker that will need a browser says so now, not on the first page that needs
        // one (which might come days later).
        let (path, version) =
            render::process::check_browser(&render.browser).map_err(anyhow::Error::msg)?;
        tracing::info!(browser = %path.display(), %version, default = %render.default, "rendering enabled");
    } else {
        tracing::info!("rendering disabled (render.enabled = false)");
    }
    let handler = Arc::new(handler_for(&services)?);
    let queue = services.queue(Family::Scrape).clone();
    let settings = services.settings.clone();
    let opts = RunnerOptions {
        concurrency: settings.scrape.concurrency,
        reserve_batch: settings.queue.reserve_batch,
        drain_timeout: settings.shutdown.drain_timeout(),
    };
    let activity = services.activity.clone();
    let drained = pipeline_runner::run(queue, handler.clone(), opts, activity, cancel).await;
    // After the drain: the pages in flight have finished (or been released), so no render
    // is cut short; every browser process stops with the worker.
    handler.shutdown().await;
    Ok(Drain::from_drained(drained))
}
