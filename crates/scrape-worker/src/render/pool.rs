//! The pool: a fixed number of browser processes, each with a fixed number of tabs; one
//! page per tab at a time, each in a browser context of its own behind its own guard proxy.
//!
//! Every page is bounded: a wait for a free tab, the whole render (`page_timeout`), the time
//! to settle (`settle_timeout`), the bytes it may load (the proxy), the memory of its renderer
//! (the watchdog), the size of the DOM handed on. A browser that crashes, hangs or grows is
//! replaced; a page in flight on it fails as transient, so the queue retries it and
//! dead-letters it after its attempts (a page that kills every browser it meets is parked
//! like any poison message).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::browser::Browser;
use chromiumoxide::cdp::browser_protocol::browser::{
    SetDownloadBehaviorBehavior, SetDownloadBehaviorParams,
};
use chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed;
use chromiumoxide::cdp::browser_protocol::network::{
    EventLoadingFailed, EventLoadingFinished, EventRequestWillBeSent,
};
use chromiumoxide::cdp::browser_protocol::page::{
    EventJavascriptDialogOpening, HandleJavaScriptDialogParams, NavigateParams,
};
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams, DisposeBrowserContextParams,
};
use chromiumoxide::handler::HandlerConfig;
use futures::StreamExt;
use tokio::sync::{RwLock, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::process::{
    BrowserProcess, GroupKiller, LaunchSpec, Launcher, claim_profile_root, claimed_profile_roots,
    group_members, profile_root_name, release_profile_root, remove_stale_profiles,
};
use super::proxy::{GuardProxy, ProxyOptions, RefusalReason, TrafficSummary};
use crate::guard::AddressPolicy;

/// How the pool behaves (from `[render]`, and `scrape.max_body_bytes` for the DOM).
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The browser binary.
    pub browser: PathBuf,
    /// Chromium's sandbox (always off as root).
    pub sandbox: bool,
    /// Browser processes.
    pub browsers: usize,
    /// Pages each browser renders at once.
    pub tabs_per_browser: usize,
    /// The whole render of one page, the wait for a tab excluded.
    pub page_timeout: Duration,
    /// The longest wait for a free tab.
    pub tab_wait: Duration,
    /// How long a page may take to settle.
    pub settle_timeout: Duration,
    /// Quiet time that means settled, once the page shows text.
    pub settle_quiet: Duration,
    /// Quiet time that means settled while the page shows almost no text.
    pub empty_quiet: Duration,
    /// A renderer above this resident size is stopped.
    pub max_page_memory: u64,
    /// Bytes one page may load through the proxy.
    pub max_page_bytes: u64,
    /// The largest DOM handed on to extraction.
    pub max_dom_bytes: u64,
    /// Pages a browser renders before it is replaced.
    pub recycle_after_pages: u64,
    /// The User-Agent the browser sends.
    pub user_agent: String,
    /// Connect timeout of the proxy's upstream connections.
    pub connect_timeout: Duration,
}

impl RenderOptions {
    /// The options the settings describe, with the browser at `browser`.
    pub fn from_settings(s: &pipeline_core::Settings, browser: PathBuf) -> Self {
        let r = &s.render;
        Self {
            browser,
            sandbox: r.sandbox,
            browsers: r.browsers,
            tabs_per_browser: r.tabs_per_browser,
            page_timeout: Duration::from_millis(r.page_timeout_ms),
            tab_wait: Duration::from_millis(r.page_timeout_ms),
            settle_timeout: Duration::from_millis(r.settle_timeout_ms),
            settle_quiet: Duration::from_millis(r.settle_quiet_ms),
            empty_quiet: Duration::from_millis(r.empty_quiet_ms),
            max_page_memory: r.max_page_memory_mb * 1024 * 1024,
            max_page_bytes: r.max_page_bytes,
            max_dom_bytes: s.scrape.max_body_bytes,
            recycle_after_pages: r.recycle_after_pages,
            user_agent: s.scrape.user_agent.clone(),
            connect_timeout: Duration::from_millis(s.scrape.connect_timeout_ms),
        }
    }
}

/// A render that did not give a DOM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// No tab came free in time, or no browser could be started (transient).
    #[error("no browser available: {0}")]
    Unavailable(String),
    /// The browser crashed or stopped answering while rendering the page (transient).
    #[error("the browser failed while rendering the page: {0}")]
    BrowserFailed(String),
    /// The page's renderer crashed or was stopped over its memory budget (transient: the
    /// queue's attempts bound it, then the page is dead-lettered).
    #[error("{0}")]
    PageCrashed(String),
    /// The whole render ran past `page_timeout` (transient).
    #[error("the render took longer than {0:?}")]
    Timeout(Duration),
    /// The browser could not load the page (transient: the fetch just worked).
    #[error("the browser could not load the page: {0}")]
    Navigation(String),
    /// The page's own address was refused by the guard (permanent).
    #[error("the browser was refused the page: {0}")]
    Refused(String),
    /// The rendered DOM is over the body cap (permanent).
    #[error("the rendered page is {0} bytes, over the {1}-byte cap")]
    TooLarge(u64, u64),
}

impl RenderError {
    /// Whether a retry may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, RenderError::Refused(_) | RenderError::TooLarge(..))
    }
}

/// A rendered page.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The serialised DOM (with its doctype).
    pub html: String,
    /// The document's URL at the end (after client-side redirects).
    pub url: Option<String>,
    /// Whether the page settled; `false`: it was taken as it was at `settle_timeout`.
    pub settled: bool,
    /// How long the render took.
    pub took: Duration,
    /// What went through the guard proxy.
    pub traffic: TrafficSummary,
}

/// Runs in every page before its own scripts: counts DOM changes (the settle rule reads the
/// count) and turns dialogs and `window.open` into no-ops (the dialog event is answered
/// too, for dialogs opened from frames this does not reach).
const INIT_SCRIPT: &str = r#"(() => {
  window.__pipelineMutations = 0;
  const watch = () => new MutationObserver(() => { window.__pipelineMutations++; })
    .observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
  if (document.documentElement) watch(); else document.addEventListener('readystatechange', watch, { once: true });
  window.alert = () => {};
  window.confirm = () => false;
  window.prompt = () => null;
  window.print = () => {};
  window.open = () => null;
})();"#;

/// What the settle loop reads each tick.
const PROBE: &str = "[document.readyState, window.__pipelineMutations || 0, \
                     (document.body && document.body.innerText || '').length]";

/// Visible characters from which a page counts as showing text (then `settle_quiet`
/// applies, else `empty_quiet`).
const TEXT_SHOWN: i64 = 200;

/// The longest the settle loop waits for one look (a page stuck in a script answers late).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the settled page may take to hand over its DOM.
const CONTENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a page whose renderer the watchdog stopped failed.
const OVER_BUDGET: &str =
    "the page's renderer went over its memory budget (render.max_page_memory_mb) and was stopped";

/// Whether the watchdog stopped one of `live`'s renderers since `began`.
fn oom_killed_since(live: &Live, began: Instant) -> bool {
    live.last_oom_kill
        .lock()
        .ok()
        .and_then(|t| *t)
        .is_some_and(|t| t >= began)
}

/// How often the settle loop looks.
const TICK: Duration = Duration::from_millis(100);

/// A request older than this no longer keeps the page unsettled (long polls, streams).
const LONG_REQUEST: Duration = Duration::from_secs(3);

/// One browser process and its DevTools connection.
struct Live {
    process: BrowserProcess,
    browser: Browser,
    handler: JoinHandle<()>,
    /// Set when the DevTools connection ends (the browser died).
    dead: Arc<AtomicBool>,
    /// When the watchdog last stopped one of its renderers.
    last_oom_kill: Arc<Mutex<Option<Instant>>>,
    rendered: AtomicU64,
}

impl Live {
    fn usable(&self, recycle_after: u64) -> bool {
        !self.dead.load(Ordering::Relaxed)
            && !self.process.exited()
            && self.rendered.load(Ordering::Relaxed) < recycle_after
    }

    async fn stop(self) {
        self.handler.abort();
        self.process.stop().await;
    }
}

/// A browser seat: the live browser (replaced under the write lock, which waits for the
/// renders in flight on it).
struct Seat {
    live: RwLock<Option<Live>>,
    /// Kills the live browser's group without the lock (shutdown, with renders in flight).
    killer: Mutex<Option<GroupKiller>>,
    generation: AtomicU64,
}

/// The pool. Cheap to share (`Arc`); browsers start on first use.
pub struct Renderer {
    opts: RenderOptions,
    launcher: Launcher,
    seats: Vec<Seat>,
    proxies: Vec<GuardProxy>,
    /// Where browser-level traffic outside any page goes: refused, all of it.
    catch_all: GuardProxy,
    free: Mutex<Vec<usize>>,
    tabs: Semaphore,
    profile_root: PathBuf,
    cancel: CancellationToken,
    launches: AtomicU64,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// A pool obeying `policy`, with its proxies listening and its memory watchdog running.
    /// No browser starts until a page needs one.
    ///
    /// # Errors
    /// When a proxy cannot listen on loopback.
    pub async fn start(
        opts: RenderOptions,
        policy: Arc<AddressPolicy>,
    ) -> std::io::Result<Arc<Self>> {
        let slots = opts.browsers * opts.tabs_per_browser;
        let proxy_opts = ProxyOptions {
            connect_timeout: opts.connect_timeout,
            max_page_bytes: opts.max_page_bytes,
            ..ProxyOptions::default()
        };
        let mut proxies = Vec::with_capacity(slots);
        for _ in 0..slots {
            proxies.push(GuardProxy::start(policy.clone(), proxy_opts.clone()).await?);
        }
        let catch_all = GuardProxy::start(policy, proxy_opts).await?;
        let temp = std::env::temp_dir();
        let profile_root = temp.join(profile_root_name(
            std::process::id(),
            // Short: the browsers' temporary directories live under it (see `LaunchSpec`).
            &uuid::Uuid::new_v4().simple().to_string()[..8],
        ));
        // Profiles a killed worker left (its shutdown never ran) would fill the temporary
        // directory over restarts: a container's `/tmp` outlives its process.
        claim_profile_root(&profile_root);
        let removed = tokio::task::spawn_blocking(move || {
            remove_stale_profiles(&temp, std::process::id(), &claimed_profile_roots())
        })
        .await
        .unwrap_or(0);
        if removed > 0 {
            tracing::info!(removed, "deleted browser profiles left by a killed worker");
        }
        let renderer = Arc::new(Self {
            seats: (0..opts.browsers)
                .map(|_| Seat {
                    live: RwLock::new(None),
                    killer: Mutex::new(None),
                    generation: AtomicU64::new(0),
                })
                .collect(),
            proxies,
            catch_all,
            free: Mutex::new((0..slots).rev().collect()),
            tabs: Semaphore::new(slots),
            launcher: Launcher::new(),
            profile_root,
            cancel: CancellationToken::new(),
            launches: AtomicU64::new(0),
            opts,
        });
        tokio::spawn(watchdog(Arc::downgrade(&renderer), renderer.cancel.clone()));
        Ok(renderer)
    }

    /// Browser processes started so far (replacements included).
    pub fn launches(&self) -> u64 {
        self.launches.load(Ordering::Relaxed)
    }

    /// The pids of the live browsers' main processes.
    pub async fn browser_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for seat in &self.seats {
            if let Some(live) = seat.live.read().await.as_ref() {
                pids.push(live.process.pid());
            }
        }
        pids
    }

    /// Stops every browser and the watchdog, and deletes the profiles. Final: the worker
    /// calls it after its drain, on the way out.
    ///
    /// A render still in flight (the drain gave up on it) is not failed: it stops where it
    /// is and never returns, so its message is not charged an attempt and goes back to the
    /// queue when the process exits (its lease), like any work held past the drain. The
    /// browsers are killed first, without waiting for those renders.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        for seat in &self.seats {
            let killer = seat
                .killer
                .lock()
                .expect("the killer slot is never poisoned")
                .take();
            if let Some(killer) = killer {
                killer.kill();
            }
        }
        for seat in &self.seats {
            // The renders in flight let go of the seat as they see the cancellation; the
            // bound is for one stuck in a thread that does not yield (the browsers are
            // dead already, and the profiles go with the root below).
            match tokio::time::timeout(Duration::from_secs(2), seat.live.write()).await {
                Ok(mut live) => {
                    if let Some(live) = live.take() {
                        live.stop().await;
                    }
                }
                Err(_) => tracing::warn!("a render did not let go of its browser at shutdown"),
            }
        }
        let _ = tokio::fs::remove_dir_all(&self.profile_root).await;
        release_profile_root(&self.profile_root);
    }

    /// Renders `url` and returns its settled DOM.
    ///
    /// # Errors
    /// See [`RenderError`]; each says whether a retry may help.
    pub async fn render(&self, url: &Url) -> Result<Rendered, RenderError> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => {
                // Shut down (see [`Self::shutdown`]): never answers, so the message is
                // handed back at the exit instead of charged a failed attempt.
                std::future::pending().await
            }
            result = self.render_queued(url) => result,
        }
    }

    async fn render_queued(&self, url: &Url) -> Result<Rendered, RenderError> {
        let _permit = tokio::time::timeout(self.opts.tab_wait, self.tabs.acquire())
            .await
            .map_err(|_| {
                RenderError::Unavailable(format!(
                    "no browser tab came free within {:?}",
                    self.opts.tab_wait
                ))
            })?
            .map_err(|_| RenderError::Unavailable("the pool is closed".into()))?;
        let slot = self
            .free
            .lock()
            .expect("the free-tab list is never poisoned")
            .pop()
            .expect("a permit always comes with a free tab");
        let result = self.render_in(slot, url).await;
        self.free
            .lock()
            .expect("the free-tab list is never poisoned")
            .push(slot);
        result
    }

    async fn render_in(&self, slot: usize, url: &Url) -> Result<Rendered, RenderError> {
        let seat_index = slot / self.opts.tabs_per_browser;
        let seat = &self.seats[seat_index];
        let guard = self.live_browser(seat, seat_index).await?;
        let live = guard.as_ref().expect("live_browser returns a live browser");
        live.rendered.fetch_add(1, Ordering::Relaxed);
        let proxy = &self.proxies[slot];
        proxy.begin_page(url.as_str());
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            self.opts.page_timeout,
            self.render_page(live, proxy.addr(), url),
        )
        .await;
        let traffic = proxy.end_page().unwrap_or_default();
        match outcome {
            Ok(Ok(_)) if page_refused(&traffic, url).is_some() => {
                // The proxy answered the page itself with a refusal (its address changed
                // since the fetch: DNS rebinding), which the browser shows as a page.
                let reason = page_refused(&traffic, url).unwrap_or_default();
                Err(RenderError::Refused(format!("{url}: {reason}")))
            }
            Ok(Ok((html, final_url, settled))) => {
                metrics::histogram!("pipeline_render_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                Ok(Rendered {
                    html,
                    url: final_url,
                    settled,
                    took: started.elapsed(),
                    traffic,
                })
            }
            Ok(Err(e)) => {
                if matches!(e, RenderError::BrowserFailed(_)) {
                    live.dead.store(true, Ordering::Relaxed);
                }
                Err(refined(e, &traffic, url, live))
            }
            Err(_) => {
                // The tab may be stuck (a page looping in script): the browser is replaced
                // rather than trusted with the next page.
                live.dead.store(true, Ordering::Relaxed);
                Err(RenderError::Timeout(self.opts.page_timeout))
            }
        }
    }

    /// A read guard on the seat's browser, started (or replaced) first when it is missing,
    /// dead, or due for recycling. The write lock waits for the renders in flight on it.
    async fn live_browser<'a>(
        &self,
        seat: &'a Seat,
        index: usize,
    ) -> Result<tokio::sync::RwLockReadGuard<'a, Option<Live>>, RenderError> {
        {
            let read = seat.live.read().await;
            if read
                .as_ref()
                .is_some_and(|l| l.usable(self.opts.recycle_after_pages))
            {
                return Ok(read);
            }
        }
        let mut write = seat.live.write().await;
        if !write
            .as_ref()
            .is_some_and(|l| l.usable(self.opts.recycle_after_pages))
        {
            if let Some(old) = write.take() {
                let reason = if old.dead.load(Ordering::Relaxed) || old.process.exited() {
                    "failed"
                } else {
                    "recycled"
                };
                tracing::info!(
                    browser_pid = old.process.pid(),
                    pages = old.rendered.load(Ordering::Relaxed),
                    reason,
                    "replacing a browser"
                );
                metrics::counter!("pipeline_render_browser_restarts_total", "reason" => reason)
                    .increment(1);
                old.stop().await;
            }
            let generation = seat.generation.fetch_add(1, Ordering::Relaxed);
            let live = self.launch(index, generation).await?;
            *seat
                .killer
                .lock()
                .expect("the killer slot is never poisoned") = Some(live.process.killer());
            *write = Some(live);
        }
        Ok(write.downgrade())
    }

    async fn launch(&self, index: usize, generation: u64) -> Result<Live, RenderError> {
        let spec = LaunchSpec {
            browser: self.opts.browser.clone(),
            args: browser_args(&self.opts, self.catch_all.addr()),
            profile: self.profile_root.join(format!("b{index}-{generation}")),
            temp: self.profile_root.join(format!("t{index}-{generation}")),
            timeout: Duration::from_secs(30),
        };
        let process = self
            .launcher
            .launch(spec)
            .await
            .map_err(|e| RenderError::Unavailable(e.to_string()))?;
        let config = HandlerConfig {
            ignore_https_errors: false,
            request_timeout: self.opts.page_timeout,
            ..HandlerConfig::default()
        };
        let (browser, mut handler) =
            match Browser::connect_with_config(process.ws_url.clone(), config).await {
                Ok(pair) => pair,
                Err(e) => {
                    process.stop().await;
                    return Err(RenderError::Unavailable(format!(
                        "connecting to the browser: {e}"
                    )));
                }
            };
        let dead = Arc::new(AtomicBool::new(false));
        let flag = dead.clone();
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    tracing::debug!(error = %e, "browser connection event");
                }
            }
            flag.store(true, Ordering::Relaxed);
        });
        self.launches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("pipeline_render_browser_launches_total").increment(1);
        tracing::info!(browser_pid = process.pid(), "browser started");
        Ok(Live {
            process,
            browser,
            handler,
            dead,
            last_oom_kill: Arc::new(Mutex::new(None)),
            rendered: AtomicU64::new(0),
        })
    }

    /// One page in a fresh browser context behind the slot's proxy; the context (and with
    /// it the page, its cookies and storage) is disposed of whatever happens.
    async fn render_page(
        &self,
        live: &Live,
        proxy: std::net::SocketAddr,
        url: &Url,
    ) -> Result<(String, Option<String>, bool), RenderError> {
        let failed = |e: chromiumoxide::error::CdpError| RenderError::BrowserFailed(e.to_string());
        let context = live
            .browser
            .execute(
                CreateBrowserContextParams::builder()
                    .dispose_on_detach(true)
                    .proxy_server(format!("http://{proxy}"))
                    .proxy_bypass_list("<-loopback>")
                    .build(),
            )
            .await
            .map_err(failed)?
            .result
            .browser_context_id;
        let result = self.render_in_context(live, &context, url).await;
        let dispose = live
            .browser
            .execute(DisposeBrowserContextParams::new(context.clone()));
        match tokio::time::timeout(Duration::from_secs(5), dispose).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "disposing of a browser context"),
            Err(_) => {
                // A browser that cannot close a context is not trusted with another page.
                live.dead.store(true, Ordering::Relaxed);
            }
        }
        result
    }

    async fn render_in_context(
        &self,
        live: &Live,
        context: &chromiumoxide::cdp::browser_protocol::browser::BrowserContextId,
        url: &Url,
    ) -> Result<(String, Option<String>, bool), RenderError> {
        let began = Instant::now();
        let failed = |e: chromiumoxide::error::CdpError| RenderError::BrowserFailed(e.to_string());
        live.browser
            .execute(
                SetDownloadBehaviorParams::builder()
                    .behavior(SetDownloadBehaviorBehavior::Deny)
                    .browser_context_id(context.clone())
                    .build()
                    .map_err(RenderError::BrowserFailed)?,
            )
            .await
            .map_err(failed)?;
        let target = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(context.clone())
            .build()
            .map_err(RenderError::BrowserFailed)?;
        let page = live.browser.new_page(target).await.map_err(failed)?;
        page.evaluate_on_new_document(INIT_SCRIPT)
            .await
            .map_err(failed)?;
        let watch = PageWatch::start(&page).await.map_err(failed)?;
        // A renderer stopped while the navigation commits (a page that allocates from its
        // first script) may leave the command unanswered: its crash, or a watchdog stop
        // after which the page no longer answers, ends the wait.
        let navigate = page.execute(NavigateParams::new(url.as_str()));
        tokio::pin!(navigate);
        let nav = loop {
            tokio::select! {
                answer = &mut navigate => break answer.map_err(failed)?.result,
                () = tokio::time::sleep(TICK) => {
                    if let Some(crash) = watch.crashed() {
                        watch.stop();
                        return Err(crash);
                    }
                    if oom_killed_since(live, began)
                        && !matches!(
                            tokio::time::timeout(PROBE_TIMEOUT, page.evaluate("1")).await,
                            Ok(Ok(_))
                        )
                    {
                        watch.stop();
                        return Err(RenderError::PageCrashed(OVER_BUDGET.into()));
                    }
                }
            }
        };
        if let Some(error) = nav.error_text.filter(|t| !t.is_empty()) {
            watch.stop();
            return Err(RenderError::Navigation(error));
        }
        let settled = self.settle(&page, &watch, live, began).await?;
        if let Some(crash) = watch.crashed() {
            watch.stop();
            return Err(crash);
        }
        // Bounded: a renderer that died unnoticed never answers.
        let html = match tokio::time::timeout(CONTENT_TIMEOUT, page.content()).await {
            Ok(html) => html.map_err(failed)?,
            Err(_) => {
                watch.stop();
                return Err(if oom_killed_since(live, began) {
                    RenderError::PageCrashed(OVER_BUDGET.into())
                } else {
                    RenderError::PageCrashed(format!(
                        "the page did not hand over its DOM within {CONTENT_TIMEOUT:?}"
                    ))
                });
            }
        };
        let final_url = page.url().await.ok().flatten();
        watch.stop();
        if html.len() as u64 > self.opts.max_dom_bytes {
            return Err(RenderError::TooLarge(
                html.len() as u64,
                self.opts.max_dom_bytes,
            ));
        }
        Ok((html, final_url, settled))
    }

    /// Waits until the page is loaded and quiet (no DOM change, no request in flight) for
    /// `settle_quiet` (`empty_quiet` while it shows almost no text), or `settle_timeout`
    /// passes; says which.
    async fn settle(
        &self,
        page: &Page,
        watch: &PageWatch,
        live: &Live,
        began: Instant,
    ) -> Result<bool, RenderError> {
        let start = Instant::now();
        let mut last_mutations = -1i64;
        let mut quiet_since = Instant::now();
        loop {
            tokio::time::sleep(TICK).await;
            if let Some(crash) = watch.crashed() {
                return Err(crash);
            }
            let probe = match tokio::time::timeout(PROBE_TIMEOUT, page.evaluate(PROBE)).await {
                Ok(Ok(v)) => v.into_value::<(String, i64, i64)>().ok(),
                // A navigation in progress destroys the context being evaluated in, and a
                // page busy in a script answers late: not settled yet either way.
                Ok(Err(_)) | Err(_) => None,
            };
            let now = Instant::now();
            let busy = watch.requests_in_flight(now) > 0;
            match probe {
                Some((state, mutations, text)) => {
                    if state != "complete" || busy || mutations != last_mutations {
                        quiet_since = now;
                        last_mutations = mutations;
                    }
                    let need = if text >= TEXT_SHOWN {
                        self.opts.settle_quiet
                    } else {
                        self.opts.empty_quiet
                    };
                    if now.duration_since(quiet_since) >= need {
                        return Ok(true);
                    }
                }
                None => {
                    // A probe unanswered after the watchdog stopped a renderer of this
                    // browser during this page: most likely this page's (the crash event
                    // does not always reach us). If it was another tab's, this page is
                    // retried like any transient failure.
                    if oom_killed_since(live, began) {
                        return Err(RenderError::PageCrashed(OVER_BUDGET.into()));
                    }
                    quiet_since = now;
                }
            }
            if start.elapsed() >= self.opts.settle_timeout {
                return Ok(false);
            }
        }
    }
}

/// A failed render told more exactly: a navigation the proxy refused is the address's
/// fault, not the network's; a crash right after the watchdog stopped a renderer is the
/// page's memory.
fn refined(e: RenderError, traffic: &TrafficSummary, url: &Url, live: &Live) -> RenderError {
    match e {
        RenderError::Navigation(text) => match page_refused(traffic, url) {
            Some(reason) => RenderError::Refused(format!("{url}: {reason}")),
            None => RenderError::Navigation(text),
        },
        RenderError::PageCrashed(text) => {
            let oom = live
                .last_oom_kill
                .lock()
                .ok()
                .and_then(|t| *t)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5));
            if oom {
                RenderError::PageCrashed(OVER_BUDGET.into())
            } else {
                RenderError::PageCrashed(text)
            }
        }
        other => other,
    }
}

/// Why the proxy refused the page's own host and port, if it did (an address or port
/// refusal of the page's origin; refusals over the byte budget or of other hosts do not
/// count).
fn page_refused(traffic: &TrafficSummary, url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    let origin = format!("{host}:{port}");
    traffic
        .refusals
        .iter()
        .filter(|r| matches!(r.reason, RefusalReason::Address | RefusalReason::Port))
        .find(|r| {
            r.target == origin
                || Url::parse(&r.target).is_ok_and(|t| {
                    t.host_str() == Some(host) && t.port_or_known_default() == Some(port)
                })
        })
        .map(|r| r.detail.clone())
}

/// The page's events the render reads: requests in flight, a renderer crash, dialogs.
struct PageWatch {
    inflight: Arc<Mutex<HashMap<String, Instant>>>,
    crashed: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl PageWatch {
    async fn start(page: &Page) -> Result<Self, chromiumoxide::error::CdpError> {
        let inflight = Arc::new(Mutex::new(HashMap::new()));
        let crashed = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();

        let mut sent = page.event_listener::<EventRequestWillBeSent>().await?;
        let map = inflight.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(e) = sent.next().await {
                if let Ok(mut m) = map.lock() {
                    m.insert(e.request_id.inner().clone(), Instant::now());
                }
            }
        }));
        let mut finished = page.event_listener::<EventLoadingFinished>().await?;
        let map = inflight.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(e) = finished.next().await {
                if let Ok(mut m) = map.lock() {
                    m.remove(e.request_id.inner());
                }
            }
        }));
        let mut failed = page.event_listener::<EventLoadingFailed>().await?;
        let map = inflight.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(e) = failed.next().await {
                if let Ok(mut m) = map.lock() {
                    m.remove(e.request_id.inner());
                }
            }
        }));
        let mut crash = page.event_listener::<EventTargetCrashed>().await?;
        let flag = crashed.clone();
        tasks.push(tokio::spawn(async move {
            if crash.next().await.is_some() {
                flag.store(true, Ordering::Relaxed);
            }
        }));
        let mut dialogs = page
            .event_listener::<EventJavascriptDialogOpening>()
            .await?;
        let answer = page.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(d) = dialogs.next().await {
                tracing::debug!(kind = ?d.r#type, "dismissing a dialog the page opened");
                let _ = answer
                    .execute(HandleJavaScriptDialogParams::new(false))
                    .await;
            }
        }));
        Ok(Self {
            inflight,
            crashed,
            tasks,
        })
    }

    fn requests_in_flight(&self, now: Instant) -> usize {
        self.inflight
            .lock()
            .map(|m| {
                m.values()
                    .filter(|t| now.duration_since(**t) < LONG_REQUEST)
                    .count()
            })
            .unwrap_or(0)
    }

    fn crashed(&self) -> Option<RenderError> {
        self.crashed
            .load(Ordering::Relaxed)
            .then(|| RenderError::PageCrashed("the page's renderer crashed".into()))
    }

    fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for PageWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The browser's command line: headless, quiet (no background traffic of its own), every
/// connection through the guard proxy (loopback included: `<-loopback>` removes the
/// browser's built-in bypass), WebRTC kept off UDP (it would go around the proxy), popups
/// blocked, and the JavaScript heap bounded below the renderer budget.
fn browser_args(opts: &RenderOptions, catch_all: std::net::SocketAddr) -> Vec<String> {
    let heap_mb = (opts.max_page_memory / (1024 * 1024) * 3 / 4).max(64);
    let mut args: Vec<String> = [
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
        "--mute-audio",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-background-timer-throttling",
        "--disable-backgrounding-occluded-windows",
        "--disable-renderer-backgrounding",
        "--disable-breakpad",
        "--disable-client-side-phishing-detection",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-sync",
        "--disable-domain-reliability",
        "--disable-features=Translate,MediaRouter,OptimizationHints,DnsOverHttps,InterestFeedContentSuggestions,AutofillServerCommunication,CertificateTransparencyComponentUpdater,PrivacySandboxSettings4",
        "--metrics-recording-only",
        "--no-pings",
        "--password-store=basic",
        "--use-mock-keychain",
        "--block-new-web-contents",
        "--dns-prefetch-disable",
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--proxy-bypass-list=<-loopback>",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.push(format!("--proxy-server=http://{catch_all}"));
    args.push(format!("--js-flags=--max-old-space-size={heap_mb}"));
    args.push(format!("--user-agent={}", opts.user_agent));
    if !opts.sandbox || super::process::running_as_root() {
        // Chromium's sandbox refuses to run as root; docs/rendering.md says to run the
        // worker as another user, which keeps the sandbox.
        args.push("--no-sandbox".into());
    }
    args
}

/// Every 250 ms: stops any renderer over the page memory budget, and exports the browsers'
/// resident size.
async fn watchdog(pool: std::sync::Weak<Renderer>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(pool) = pool.upgrade() else { return };
        let mut total = 0u64;
        for seat in &pool.seats {
            let Ok(read) = seat.live.try_read() else {
                continue;
            };
            let Some(live) = read.as_ref() else { continue };
            let pgid = live.process.pid();
            let budget = pool.opts.max_page_memory;
            let members = tokio::task::spawn_blocking(move || group_members(pgid))
                .await
                .unwrap_or_default();
            for (pid, rss, renderer) in members {
                total += rss;
                if renderer && rss > budget {
                    tracing::warn!(
                        renderer_pid = pid,
                        rss_mib = rss / (1024 * 1024),
                        budget_mib = budget / (1024 * 1024),
                        "stopping a renderer over the page memory budget"
                    );
                    metrics::counter!("pipeline_render_renderers_stopped_total").increment(1);
                    if let Ok(mut t) = live.last_oom_kill.lock() {
                        *t = Some(Instant::now());
                    }
                    BrowserProcess::kill_member(pid);
                }
            }
        }
        metrics::gauge!("pipeline_render_browser_rss_bytes").set(total as f64);
    }
}
