//! A test daemon: the real daemon start-up, runner and shutdown over the scrape family, with
//! a handler that spins on the CPU in a blocking task and never finishes in time. The
//! bounded-exit tests start it as a process to show that a stuck handler cannot keep a
//! daemon alive past its drain timeout. Not shipped: it lives in the test crate.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline_ops::Family;
use pipeline_ops::daemon::{self, Daemon, Drain};
use pipeline_ops::messages::SourceMessage;
use pipeline_runner::{Failure, Handler, RunnerOptions};
use work_queue::Delivery;

/// Spins for up to this long, so that a broken exit path costs a test run minutes of CPU at
/// most, not forever.
const SPIN_FOR: Duration = Duration::from_secs(120);

struct Spin {
    ledger: pipeline_ops::ledger::SourceLedger,
}

impl Handler for Spin {
    type Message = SourceMessage;

    fn failure_log(&self) -> &dyn pipeline_runner::FailureLog {
        &self.ledger
    }

    async fn handle(&self, _delivery: &Delivery, _msg: SourceMessage) -> Result<(), Failure> {
        // The kind of work a drain cannot wait out: CPU-bound, on a blocking thread, with no
        // await point the runtime could cancel at.
        let spun = tokio::task::spawn_blocking(|| {
            let start = Instant::now();
            let mut n: u64 = 0;
            while start.elapsed() < SPIN_FOR {
                n = std::hint::black_box(n.wrapping_add(1));
            }
            n
        })
        .await;
        match spun {
            Ok(_) => Err(Failure::transient("spun out")),
            Err(e) => Err(Failure::transient(format!("spin task failed: {e}"))),
        }
    }
}

fn main() -> ExitCode {
    daemon::main(
        Daemon {
            bin: "spin-worker",
            about: "Test daemon whose handler spins on the CPU (bounded-exit tests)",
            name: "spin worker",
            port: |p| p.scrape_worker_port,
        },
        |services, cancel| async move {
            let queue = services.queue(Family::Scrape).clone();
            let opts = RunnerOptions {
                concurrency: 2,
                reserve_batch: 2,
                drain_timeout: services.settings.shutdown.drain_timeout(),
            };
            let spin = Arc::new(Spin {
                ledger: pipeline_ops::ledger::SourceLedger::new(
                    services.db.clone(),
                    services.progress.clone(),
                ),
            });
            let activity = services.activity.clone();
            let drained = pipeline_runner::run(queue, spin, opts, activity, cancel).await;
            Ok(Drain::from_drained(drained))
        },
    )
}
