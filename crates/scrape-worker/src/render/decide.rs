//! Whether a fetched page is rendered, and rendering it in place of its HTML.

use std::sync::Arc;

use pipeline_core::render::RenderMode;
use pipeline_runner::Failure;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::pool::{RenderError, RenderOptions, Renderer};
use crate::decode::html_title;
use crate::fetch::{Fetcher, Page};

/// What the mode and the page say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not rendered (mode `never`, not HTML, or `auto` found text).
    Skip,
    /// Rendered, for this reason (`always`, or the `auto` reason).
    Render(&'static str),
}

/// Media types a browser renders.
fn is_html(content_type: &str) -> bool {
    matches!(content_type, "text/html" | "application/xhtml+xml")
}

/// The decision for `page` under `mode`.
pub fn decide(mode: RenderMode, page: &Page) -> Decision {
    if !is_html(&page.content_type) {
        return Decision::Skip;
    }
    match mode {
        RenderMode::Never => Decision::Skip,
        RenderMode::Always => Decision::Render("always"),
        RenderMode::Auto => {
            match extract_core::render_need::render_need(&page.body, &page.final_url) {
                Some(reason) => Decision::Render(reason.as_str()),
                None => Decision::Skip,
            }
        }
    }
}

/// The worker's renderer: started on the first page that needs it (no browser, no proxy
/// listener before), or absent when `render.enabled` is false.
pub struct RenderSlot {
    enabled: bool,
    default: RenderMode,
    opts: RenderOptions,
    fetcher: Arc<Fetcher>,
    pool: OnceCell<Arc<Renderer>>,
}

impl RenderSlot {
    /// A slot for the settings' renderer.
    pub fn new(settings: &pipeline_core::Settings, fetcher: Arc<Fetcher>) -> Self {
        Self {
            enabled: settings.render.enabled,
            default: settings.render.default,
            opts: RenderOptions::from_settings(settings, settings.render.browser.clone().into()),
            fetcher,
            pool: OnceCell::new(),
        }
    }

    /// The pool, when it has been started.
    pub fn started(&self) -> Option<&Arc<Renderer>> {
        self.pool.get()
    }

    /// Stops every browser (the worker's drain calls this last).
    pub async fn shutdown(&self) {
        if let Some(pool) = self.pool.get() {
            pool.shutdown().await;
        }
    }

    async fn pool(&self) -> Result<&Arc<Renderer>, RenderError> {
        self.pool
            .get_or_try_init(|| Renderer::start(self.opts.clone(), self.fetcher.policy()))
            .await
            .map_err(|e| RenderError::Unavailable(format!("starting the guard proxies: {e}")))
    }

    /// Renders `page` in place when its job's `mode` (or the worker's default) asks for it,
    /// and sets `trail` to what the trail's `render` says (left `null` when the page is not
    /// a candidate). A page is left as fetched when it is not rendered.
    ///
    /// # Errors
    /// A failed render, classified transient or permanent.
    pub async fn apply(
        &self,
        mode: Option<RenderMode>,
        page: &mut Page,
        trail: &mut Value,
    ) -> Result<(), Failure> {
        let mode = mode.unwrap_or(self.default);
        let Decision::Render(reason) = decide(mode, page) else {
            return Ok(());
        };
        if !self.enabled {
            *trail = json!({
                "mode": mode.as_str(), "reason": reason, "rendered": false,
                "why": "rendering is disabled on this worker (render.enabled = false)",
            });
            metrics::counter!("pipeline_render_pages_total", "outcome" => "disabled").increment(1);
            if mode == RenderMode::Always {
                return Err(Failure::permanent(
                    "render = always, but rendering is disabled on this worker \
                     (render.enabled = false)",
                ));
            }
            return Ok(());
        }
        // The browser's navigation is a request for the page like a fetch: the same
        // robots.txt and politeness slot, held while it renders.
        let _slot = self
            .fetcher
            .page_slot(&page.final_url)
            .await
            .map_err(|e| e.to_failure())?;
        let pool = self.pool().await.map_err(|e| failure(&e))?;
        match pool.render(&page.final_url).await {
            Ok(rendered) => {
                let traffic = &rendered.traffic;
                *trail = json!({
                    "mode": mode.as_str(),
                    "reason": reason,
                    "rendered": true,
                    "ms": rendered.took.as_millis() as u64,
                    "settled": rendered.settled,
                    "requests": traffic.requests_allowed,
                    "bytes": traffic.bytes_received,
                    "over_budget": traffic.over_budget,
                    "refused": traffic.refusals_total,
                    "refusals": traffic.refusals.iter().take(10).map(|r| json!({
                        "target": r.target, "reason": r.reason.label(), "detail": r.detail,
                    })).collect::<Vec<_>>(),
                    "static_bytes": page.bytes,
                });
                if let Some(url) = rendered
                    .url
                    .as_deref()
                    .filter(|u| *u != page.final_url.as_str())
                {
                    trail["url"] = json!(url);
                }
                page.title = html_title(&rendered.html).or(page.title.take());
                page.bytes = rendered.html.len();
                page.body = rendered.html;
                metrics::counter!("pipeline_render_pages_total", "outcome" => "rendered")
                    .increment(1);
                tracing::info!(reason, settled = rendered.settled, "rendered");
                Ok(())
            }
            Err(e) => {
                metrics::counter!("pipeline_render_pages_total", "outcome" => "failed")
                    .increment(1);
                Err(failure(&e))
            }
        }
    }
}

fn failure(e: &RenderError) -> Failure {
    let text = format!("rendering: {e}");
    if e.is_transient() {
        Failure::transient(text)
    } else {
        Failure::permanent(text)
    }
}
