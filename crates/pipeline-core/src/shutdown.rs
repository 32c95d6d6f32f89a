//! Shutdown plumbing: SIGTERM and SIGINT cancel one token that every loop watches, and the
//! process is guaranteed to be gone within the drain timeout plus [`EXIT_MARGIN`].
//!
//! Why a guarantee is needed at all: a drain that times out only stops *waiting*. A handler
//! stuck in CPU work inside `spawn_blocking`, a fetch from a server that never answers, or a
//! Postgres call during a network stall keeps its thread, and an async runtime that is dropped
//! waits for its blocking threads. So the exit is enforced from outside the runtime: the first
//! signal starts a watchdog thread that ends the process at the deadline whatever the runtime
//! is doing, and a second signal ends it at once. Nothing is lost by exiting: every message a
//! worker still holds is leased, and its lease expiring hands it to another worker.
//!
//! Exit codes (see the deploy README): `0` after a complete drain, [`EXIT_HANDED_BACK`] when
//! the drain was cut short (timeout or a second signal) and held work was handed back.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exit status of a daemon whose drain was cut short: the drain timeout passed or a second
/// signal arrived, and any work it held was handed back (its leases expire and the queue
/// delivers it again). `EX_TEMPFAIL` from `sysexits.h`: a temporary condition, safe to
/// retry. systemd units list it in `SuccessExitStatus=` so a stop that hands work back is
/// not a failure.
pub const EXIT_HANDED_BACK: u8 = 75;

/// How long after the drain timeout a process may still take to exit: the time to stop the
/// runtime and write the last log lines. The watchdog enforces it.
pub const EXIT_MARGIN: Duration = Duration::from_secs(2);

/// Returns a token cancelled on the first SIGTERM or SIGINT. After that first signal the
/// process exits at the latest `drain + EXIT_MARGIN` later (status [`EXIT_HANDED_BACK`]),
/// and at once on a second signal; both report what was still held (see [`held`]).
pub fn signal_token(drain: Duration) -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        let Some(mut signals) = Signals::new() else {
            return;
        };
        signals.next().await;
        tracing::info!(
            drain_timeout_secs = drain.as_secs(),
            "shutdown signal received; draining (a second signal exits at once)"
        );
        child.cancel();
        start_watchdog(drain + EXIT_MARGIN);
        signals.next().await;
        tracing::warn!("second shutdown signal; exiting without waiting for the drain");
        exit_now();
    });
    token
}

/// SIGTERM and SIGINT as one stream.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Option<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let term = match signal(SignalKind::terminate()) {
                Ok(term) => Some(term),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM; only SIGINT stops this process");
                    None
                }
            };
            Some(Self { term })
        }
        #[cfg(not(unix))]
        {
            Some(Self {})
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(term) = self.term.as_mut() {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        // Without a handler the signal would be ignored rather than fatal; nothing else to do.
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Ends the process `after` from now unless it has exited by then. A plain OS thread, not a
/// task: the runtime's threads may be the ones that are stuck.
fn start_watchdog(after: Duration) {
    let spawned = std::thread::Builder::new()
        .name("exit-watchdog".into())
        .spawn(move || {
            std::thread::sleep(after);
            tracing::warn!(
                after_secs = after.as_secs_f64(),
                "exit deadline reached; exiting with work still running"
            );
            exit_now();
        });
    if let Err(err) = spawned {
        // Without the watchdog the drain timeout still bounds the wait in the common cases.
        tracing::error!(error = %err, "cannot start the exit watchdog");
    }
}

/// Reports what is held and ends the process at once: [`EXIT_HANDED_BACK`].
fn exit_now() -> ! {
    held::report();
    std::process::exit(i32::from(EXIT_HANDED_BACK));
}

/// Runs `drain` (the in-flight work finishing) for at most `timeout`. Returns `true` when it
/// finished in time; `false` means the caller should hand back what it still holds (leases
/// expire and the queue redelivers it).
pub async fn drain_within<F: Future<Output = ()>>(timeout: Duration, drain: F) -> bool {
    match tokio::time::timeout(timeout, drain).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(
                timeout_secs = timeout.as_secs(),
                "drain timeout reached; unfinished work will be redelivered after its lease"
            );
            false
        }
    }
}

/// Stops a runtime without waiting for blocking tasks that may never finish (a parse stuck
/// in CPU work, a read that never returns), then gives the exit code for `drained`.
pub fn finish_runtime(runtime: tokio::runtime::Runtime, drained: bool) -> u8 {
    // Reported before the runtime goes: stopping it drops the tasks, and with them the
    // guards that say what they hold.
    if !drained {
        held::report();
    }
    runtime.shutdown_timeout(Duration::from_millis(500));
    if drained { 0 } else { EXIT_HANDED_BACK }
}

/// The messages this process holds right now, by family, so that an exit that cuts a drain
/// short can say once which messages it handed back. The worker runner registers every
/// delivery it processes; the guard removes it when the delivery is settled.
pub mod held {
    use super::*;

    static NEXT: AtomicU64 = AtomicU64::new(0);
    static REPORTED: AtomicBool = AtomicBool::new(false);

    fn table() -> &'static Mutex<BTreeMap<u64, (String, String)>> {
        static TABLE: OnceLock<Mutex<BTreeMap<u64, (String, String)>>> = OnceLock::new();
        TABLE.get_or_init(Default::default)
    }

    /// A message held by this process until the guard is dropped.
    #[derive(Debug)]
    #[must_use = "the message counts as held only while the guard lives"]
    pub struct Held(u64);

    /// Registers message `id` of `family` as held.
    pub fn hold(family: &str, id: &str) -> Held {
        let key = NEXT.fetch_add(1, Ordering::Relaxed);
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
        t.insert(key, (family.to_owned(), id.to_owned()));
        Held(key)
    }

    impl Drop for Held {
        fn drop(&mut self) {
            let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
            t.remove(&self.0);
        }
    }

    /// Message ids held now, grouped by family.
    pub fn snapshot() -> BTreeMap<String, Vec<String>> {
        let t = table().lock().unwrap_or_else(|p| p.into_inner());
        let mut by_family: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (family, id) in t.values() {
            by_family
                .entry(family.clone())
                .or_default()
                .push(id.clone());
        }
        by_family
    }

    /// Logs what is held, once per process (later calls do nothing), one line per family
    /// with the message ids: an operator follows them to their redelivery.
    pub fn report() {
        if REPORTED.swap(true, Ordering::SeqCst) {
            return;
        }
        let held = snapshot();
        if held.is_empty() {
            tracing::info!("no work held at exit");
        }
        for (family, ids) in held {
            tracing::warn!(
                family = family.as_str(),
                count = ids.len(),
                message_ids = ids.join(",").as_str(),
                "work handed back at exit; it is delivered again once its lease expires"
            );
        }
    }
}
