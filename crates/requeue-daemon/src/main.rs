//! `requeue-daemon`: automatic DLQ redrive, parking and reconciliation until SIGTERM or
//! SIGINT, then drains.
//!
//! Environment variables: those of the settings (`PIPELINE_CONFIG`, `PIPELINE__*`,
//! `DATABASE_URL`, `REDIS_URL`) and `RUST_LOG`.

use std::process::ExitCode;

use pipeline_ops::daemon::{self, Daemon, Drain};
use requeue_daemon::RequeueConfig;

fn main() -> ExitCode {
    daemon::main(
        Daemon {
            bin: "requeue-daemon",
            about: "Redrives dead-lettered work under a policy, parks what keeps failing, \
                    and re-enqueues sources Redis forgot",
            name: "requeue daemon",
            port: |p| p.requeue_daemon_port,
        },
        |services, cancel| async move {
            let config = RequeueConfig::from_settings(&services.settings.requeue);
            let drain = services.settings.shutdown.drain_timeout();
            tracing::info!(
                max_redrives = config.policy.max_redrives,
                rate_per_sec = config.rate_per_sec,
                "requeue policy"
            );
            let drained = requeue_daemon::run(&services, config, cancel, drain).await;
            Ok(Drain::from_drained(drained))
        },
    )
}
