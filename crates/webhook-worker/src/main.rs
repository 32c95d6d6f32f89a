//! `webhook-worker`: relays and delivers webhook events until SIGTERM or SIGINT, then
//! drains.
//!
//! Environment variables: those of the settings (`PIPELINE_CONFIG`, `PIPELINE__*`,
//! `DATABASE_URL`, `REDIS_URL`) and `RUST_LOG`.

use std::process::ExitCode;

use pipeline_ops::daemon::{self, Daemon, Drain};

fn main() -> ExitCode {
    daemon::main(
        Daemon {
            bin: "webhook-worker",
            about: "Delivers each project's events (jobs ended, pages extracted, items \
                    dead-lettered or parked) to the webhook endpoints it registered: signed, \
                    retried, dead-lettered and traced",
            name: "webhook worker",
            port: |p| p.webhook_worker_port,
        },
        |services, cancel| async move {
            let drained = webhook_worker::run(&services, cancel).await?;
            Ok(Drain::from_drained(drained))
        },
    )
}
