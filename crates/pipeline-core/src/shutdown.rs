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
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
/// and at once on a second signal; both report what `held` still holds.
pub fn signal_token(drain: Duration, held: HeldWork) -> CancellationToken {
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
        start_watchdog(drain + EXIT_MARGIN, held.clone());
        signals.next().await;
        tracing::warn!("second shutdown signal; exiting without waiting for the drain");
        exit_now(&held);
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
fn start_watchdog(after: Duration, held: HeldWork) {
    let spawned = std::thread::Builder::new()
        .name("exit-watchdog".into())
        .spawn(move || {
            std::thread::sleep(after);
            tracing::warn!(
                after_secs = after.as_secs_f64(),
                "exit deadline reached; exiting with work still running"
            );
            exit_now(&held);
        });
    if let Err(err) = spawned {
        // Without the watchdog the drain timeout still bounds the wait in the common cases.
        tracing::error!(error = %err, "cannot start the exit watchdog");
    }
}

/// Reports what is held and ends the process at once: [`EXIT_HANDED_BACK`].
fn exit_now(held: &HeldWork) -> ! {
    held.report();
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
/// in CPU work, a read that never returns), then gives the exit code for `drained`; a cut
/// drain reports what `held` still holds.
pub fn finish_runtime(runtime: tokio::runtime::Runtime, drained: bool, held: &HeldWork) -> u8 {
    // Reported before the runtime goes: stopping it drops the tasks, and with them the
    // guards that say what they hold.
    if !drained {
        held.report();
    }
    runtime.shutdown_timeout(Duration::from_millis(500));
    if drained { 0 } else { EXIT_HANDED_BACK }
}

/// The messages a process holds right now, by family, so that an exit that cuts a drain
/// short can say once which messages it handed back. The worker runner registers every
/// delivery it processes; the guard removes it when the delivery is settled. A handle the
/// process creates (the runner's `Activity` carries it), not a static: two runners in one
/// process keep two lists. Cheap to clone; clones share the list.
#[derive(Debug, Clone, Default)]
pub struct HeldWork(std::sync::Arc<HeldInner>);

#[derive(Debug, Default)]
struct HeldInner {
    next: AtomicU64,
    reported: AtomicBool,
    table: Mutex<BTreeMap<u64, (String, String)>>,
}

/// A message held until the guard is dropped (see [`HeldWork::hold`]).
#[derive(Debug)]
#[must_use = "the message counts as held only while the guard lives"]
pub struct Held {
    work: HeldWork,
    key: u64,
}

impl HeldWork {
    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (String, String)>> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still usable.
        self.0.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers message `id` of `family` as held.
    pub fn hold(&self, family: &str, id: &str) -> Held {
        let key = self.0.next.fetch_add(1, Ordering::Relaxed);
        self.table().insert(key, (family.to_owned(), id.to_owned()));
        Held {
            work: self.clone(),
            key,
        }
    }

    /// Message ids held now, grouped by family.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<String>> {
        let mut by_family: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (family, id) in self.table().values() {
            by_family
                .entry(family.clone())
                .or_default()
                .push(id.clone());
        }
        by_family
    }

    /// Logs what is held, once (later calls do nothing), one line per family with the
    /// message ids: an operator follows them to their redelivery.
    pub fn report(&self) {
        if self.0.reported.swap(true, Ordering::SeqCst) {
            return;
        }
        let held = self.snapshot();
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

impl Drop for Held {
    fn drop(&mut self) {
        self.work.table().remove(&self.key);
    }
}
