//! The `scrape-worker` binary with rendering, as a process: no browser outlives it, whether
//! it is killed with SIGKILL mid-render or stopped with SIGTERM (drained or cut short), and
//! with rendering enabled it refuses to start without its browser, saying how to fix it.
//!
//! A worker's browser processes are found by their command line: each names its profile
//! directory, `pipeline-render-<worker pid>-<uuid>/...`, and the browsers' process groups are
//! recorded while they run, so a member that does not name its profile is counted too.
//!
//! Needs the binaries built first (`cargo build --workspace --bins`) and Debian's `chromium`;
//! without it the browser tests fail naming the install command, unless
//! `PIPELINE_SKIP_BROWSER_TESTS=1` (then they pass without running).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::routing::get;
use integration_tests::requeue::{eventually, free_port};
use integration_tests::{TestDb, TestRedis, binary, http_client, redis_url, settings_for};
use pipeline_core::render::RenderMode;
use pipeline_core::shutdown::{EXIT_HANDED_BACK, EXIT_MARGIN};
use pipeline_ops::Services;
use pipeline_ops::submit::{SubmitRequest, submit};
use pipeline_store::sources;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// Whether the browser is here; `false` (skip) only when the environment asks for it.
fn browser_present() -> bool {
    let present = std::path::Path::new("/usr/bin/chromium").is_file()
        || std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("chromium").is_file()));
    if !present {
        assert!(
            std::env::var("PIPELINE_SKIP_BROWSER_TESTS").as_deref() == Ok("1"),
            "chromium is not installed: `apt-get install chromium` (or set PIPELINE_SKIP_BROWSER_TESTS=1 to skip)"
        );
    }
    present
}

/// A page whose script changes the DOM every 50 ms forever: it never settles, so its
/// browser is certainly up while the test acts.
const BUSY_PAGE: &str = r#"<!doctype html><html><head><title>Busy</title></head><body><div id="app"><p>Loading</p></div><script src="/busy.js"></script></body></html>"#;

const BUSY_JS: &str = r#"
setInterval(function () {
  document.getElementById('app').textContent = 'tick ' + Date.now();
}, 50);
"#;

/// A page busy for three seconds, then built and quiet: it settles.
const SETTLING_PAGE: &str = r#"<!doctype html><html><head><title>Settling</title></head><body><div id="app"><p>Loading</p></div><script src="/settling.js"></script></body></html>"#;

const SETTLING_JS: &str = r#"
var started = Date.now();
var timer = setInterval(function () {
  var app = document.getElementById('app');
  if (Date.now() - started < 3000) { app.textContent = 'tick ' + Date.now(); return; }
  clearInterval(timer);
  app.innerHTML = '';
  for (var i = 0; i < 6; i++) {
    var p = document.createElement('p');
    p.textContent = 'Settled paragraph ' + i + ': the ferry crosses the estuary twice a day, and the harbour master writes the tide, the wind and every passenger in a ledger kept by the lamp.';
    app.appendChild(p);
  }
}, 50);
"#;

/// The test site: the two pages, counting the requests for their scripts (a script asked
/// for means a browser is rendering the page).
#[derive(Clone, Default)]
struct Site {
    busy_js: Arc<AtomicUsize>,
    settling_js: Arc<AtomicUsize>,
}

async fn serve(site: Site) -> anyhow::Result<SocketAddr> {
    let html = |body: &'static str| ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body);
    let js = |body: &'static str| ([(header::CONTENT_TYPE, "text/javascript")], body);
    let app = Router::new()
        .route("/busy", get(move || async move { html(BUSY_PAGE) }))
        .route("/settling", get(move || async move { html(SETTLING_PAGE) }))
        .route(
            "/busy.js",
            get(move |State(s): State<Site>| async move {
                s.busy_js.fetch_add(1, Ordering::SeqCst);
                js(BUSY_JS)
            }),
        )
        .route(
            "/settling.js",
            get(move |State(s): State<Site>| async move {
                s.settling_js.fetch_add(1, Ordering::SeqCst);
                js(SETTLING_JS)
            }),
        )
        .with_state(site);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// A process read from `/proc`.
#[derive(Debug)]
struct Proc {
    pid: u32,
    pgrp: u32,
    state: char,
    cmdline: String,
}

fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces and parentheses: fields start after the last ')'.
            let rest = stat.get(stat.rfind(')')? + 2..)?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let pgrp = fields.nth(1)?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            Some(Proc {
                pid,
                pgrp,
                state,
                cmdline,
            })
        })
        .collect()
}

/// The living (not zombie) processes of worker `worker`'s browsers: those naming its profile
/// root, and the members of the process groups in `groups`.
fn browser_processes(worker: u32, groups: &BTreeSet<u32>) -> Vec<Proc> {
    let root = format!("pipeline-render-{worker}-");
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && (p.cmdline.contains(&root) || groups.contains(&p.pgrp)))
        .collect()
}

fn describe(procs: &[Proc]) -> String {
    procs
        .iter()
        .map(|p| {
            let cmd: String = p.cmdline.chars().take(120).collect();
            format!("{} (group {}, {}): {cmd}", p.pid, p.pgrp, p.state)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn signal(child: &Child, sig: &str) -> anyhow::Result<()> {
    let pid = child.id().expect("the child is running");
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()?;
    anyhow::ensure!(status.success(), "kill -{sig} {pid} failed");
    Ok(())
}

struct Setup {
    site: Site,
    addr: SocketAddr,
    services: Services,
    redis: TestRedis,
    db: TestDb,
}

async fn setup() -> anyhow::Result<Setup> {
    pipeline_core::install_crypto_provider();
    let db = TestDb::migrated().await?;
    let redis = TestRedis::new()?;
    let site = Site::default();
    let addr = serve(site.clone()).await?;
    let mut settings = settings_for(&db, &redis);
    settings.scrape.allow_private_hosts = vec![format!("127.0.0.1:{}", addr.port())];
    settings.scrape.per_host_min_delay_ms = 0;
    let services = Services::with_pools(settings, db.pool.clone(), redis.pool.clone())?;
    Ok(Setup {
        site,
        addr,
        services,
        redis,
        db,
    })
}

impl Setup {
    /// A worker rendering with the site allowed, its probes on `probe_port`, draining for
    /// `drain_secs`; a page may take a minute to settle (so a busy page keeps its browser).
    fn worker_command(&self, drain_secs: u64, probe_port: u16) -> Command {
        let mut cmd = Command::new(binary("scrape-worker"));
        cmd.env("DATABASE_URL", &self.db.url)
            .env("REDIS_URL", redis_url())
            .env("PIPELINE__REDIS__KEY_PREFIX", &self.redis.prefix)
            .env(
                "PIPELINE__SCRAPE__ALLOW_PRIVATE_HOSTS",
                format!("127.0.0.1:{}", self.addr.port()),
            )
            .env("PIPELINE__SCRAPE__PER_HOST_MIN_DELAY_MS", "0")
            .env("PIPELINE__QUEUE__BLOCK_TIMEOUT_MS", "200")
            .env(
                "PIPELINE__SHUTDOWN__DRAIN_TIMEOUT_SECS",
                drain_secs.to_string(),
            )
            .env("PIPELINE__PROBES__HOST", "127.0.0.1")
            .env(
                "PIPELINE__PROBES__SCRAPE_WORKER_PORT",
                probe_port.to_string(),
            )
            .env("PIPELINE__RENDER__ENABLED", "true")
            .env("PIPELINE__RENDER__BROWSER", "chromium")
            .env("PIPELINE__RENDER__SETTLE_TIMEOUT_MS", "60000")
            .env("PIPELINE__RENDER__PAGE_TIMEOUT_MS", "90000")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// A worker whose log goes to the test's output with `TEST_LOG`, else nowhere.
    fn spawn_worker(&self, drain_secs: u64) -> anyhow::Result<Child> {
        let logs = std::env::var_os("TEST_LOG").is_some();
        Ok(self
            .worker_command(drain_secs, 0)
            .env("RUST_LOG", if logs { "info" } else { "error" })
            .stderr(if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()?)
    }

    async fn submit_rendered(&self, path: &str) -> anyhow::Result<Uuid> {
        let out = submit(
            &self.services,
            &SubmitRequest {
                urls: vec![format!("http://{}{path}", self.addr)],
                project_id: None,
                project_name: None,
                source_group: None,
                model_token_cap: None,
                priority: Default::default(),
                render: Some(RenderMode::Always),
            },
            pipeline_store::Actor::Cli,
        )
        .await?;
        Ok(out.sources[0].source_id)
    }

    /// Waits (60 s at most) until `script` was asked for and the worker's browser processes
    /// are up; returns their process groups.
    async fn wait_for_browser(
        &self,
        worker: u32,
        script: &AtomicUsize,
    ) -> anyhow::Result<BTreeSet<u32>> {
        eventually(
            Duration::from_secs(60),
            "the worker's browser",
            move || async move {
                let procs = browser_processes(worker, &BTreeSet::new());
                let up = script.load(Ordering::SeqCst) > 0 && !procs.is_empty();
                Ok(up.then(|| procs.iter().map(|p| p.pgrp).collect::<BTreeSet<u32>>()))
            },
        )
        .await
    }
}

/// Polls (at most `bound`) until no process of the worker's browsers is alive; returns how
/// long that took, or fails listing the survivors.
async fn until_no_browser(
    worker: u32,
    groups: &BTreeSet<u32>,
    bound: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let alive = browser_processes(worker, groups);
        if alive.is_empty() {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < bound,
            "{} browser processes of worker {worker} still alive after {bound:?}:\n{}",
            alive.len(),
            describe(&alive)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_sigkill_leaves_no_browser() -> anyhow::Result<()> {
    if !browser_present() {
        return Ok(());
    }
    let s = setup().await?;
    s.submit_rendered("/busy").await?;
    let mut child = s.spawn_worker(30)?;
    let worker = child.id().expect("the worker is running");
    let groups = s.wait_for_browser(worker, &s.site.busy_js).await?;
    let before = browser_processes(worker, &groups).len();
    signal(&child, "KILL")?;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
    assert!(!status.success(), "the worker was killed: {status}");
    let took = until_no_browser(worker, &groups, Duration::from_secs(10)).await?;
    println!("{before} browser processes; none left {took:?} after the worker's SIGKILL");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_page_in_flight_then_stops_the_browser() -> anyhow::Result<()> {
    if !browser_present() {
        return Ok(());
    }
    const DRAIN_SECS: u64 = 30;
    let s = setup().await?;
    let id = s.submit_rendered("/settling").await?;
    let mut child = s.spawn_worker(DRAIN_SECS)?;
    let worker = child.id().expect("the worker is running");
    let groups = s.wait_for_browser(worker, &s.site.settling_js).await?;
    let sent = Instant::now();
    signal(&child, "TERM")?;
    let bound = Duration::from_secs(DRAIN_SECS) + EXIT_MARGIN + Duration::from_secs(1);
    let status = tokio::time::timeout(bound, child.wait()).await??;
    let took = sent.elapsed();
    assert!(status.success(), "exit status {status} after {took:?}");
    // Drained: the page in flight was rendered and stored before the exit.
    let source = sources::get(&s.services.db, id).await?;
    assert_eq!(source.status.to_string(), "scraped", "{source:?}");
    // The worker stopped its browsers before exiting; a killed process may take a moment
    // to disappear from /proc.
    let gone = until_no_browser(worker, &groups, Duration::from_secs(3)).await?;
    println!("exit 0 {took:?} after SIGTERM; browser processes gone {gone:?} after the exit");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_past_the_drain_timeout_still_leaves_no_browser() -> anyhow::Result<()> {
    if !browser_present() {
        return Ok(());
    }
    const DRAIN_SECS: u64 = 2;
    let s = setup().await?;
    let id = s.submit_rendered("/busy").await?;
    let mut child = s.spawn_worker(DRAIN_SECS)?;
    let worker = child.id().expect("the worker is running");
    let groups = s.wait_for_browser(worker, &s.site.busy_js).await?;
    let sent = Instant::now();
    signal(&child, "TERM")?;
    let bound = Duration::from_secs(DRAIN_SECS) + EXIT_MARGIN + Duration::from_secs(1);
    let status = tokio::time::timeout(bound, child.wait()).await??;
    let took = sent.elapsed();
    // The page cannot settle within the drain: the message is handed back.
    assert_eq!(
        status.code(),
        Some(i32::from(EXIT_HANDED_BACK)),
        "exit status {status} after {took:?}"
    );
    // Its own stop ended it, not the exit watchdog (which fires at drain + EXIT_MARGIN):
    // the browsers were killed without waiting for the render that held them.
    assert!(
        took < Duration::from_secs(DRAIN_SECS) + EXIT_MARGIN - Duration::from_millis(500),
        "the worker took {took:?} after SIGTERM: its exit watchdog, not its own stop, ended it"
    );
    // The render cut short is not charged as a failed attempt: the page is queued again.
    let source = sources::get(&s.services.db, id).await?;
    assert_eq!(source.status.to_string(), "queued", "{source:?}");
    // Whether the worker's own stop or the death signal at its exit ends the browser, none
    // may be left.
    let gone = until_no_browser(worker, &groups, Duration::from_secs(10)).await?;
    println!(
        "exit {:?} {took:?} after SIGTERM; browser processes gone {gone:?} after the exit",
        status.code()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_browser_stops_the_start_only_when_rendering_is_enabled() -> anyhow::Result<()> {
    // Needs no browser: the one named does not exist.
    let s = setup().await?;
    const MISSING: &str = "/nonexistent/chromium";

    let mut child = s
        .worker_command(5, 0)
        .env("PIPELINE__RENDER__BROWSER", MISSING)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()?;
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await??;
    let mut log = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().expect("piped"), &mut log)
        .await?;
    assert!(!status.success(), "started without its browser: {log}");
    for says in [MISSING, "apt-get install chromium", "render.enabled"] {
        assert!(log.contains(says), "the error does not say {says:?}: {log}");
    }

    let port = free_port();
    let mut child = s
        .worker_command(5, port)
        .env("PIPELINE__RENDER__ENABLED", "false")
        .env("PIPELINE__RENDER__BROWSER", MISSING)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()?;
    let client = http_client();
    eventually(Duration::from_secs(60), "/health", || {
        let client = client.clone();
        async move {
            let up = client
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            Ok(up.then_some(()))
        }
    })
    .await?;
    assert!(
        child.try_wait()?.is_none(),
        "the worker without rendering exited"
    );
    signal(&child, "TERM")?;
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await??;
    assert!(status.success(), "exit status {status}");
    Ok(())
}
