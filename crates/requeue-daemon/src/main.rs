//! `requeue-daemon`: automatic DLQ redrive, parking and reconciliation until SIGTERM or
//! SIGINT, then drains.
//!
//! Environment variables: those of the settings (`PIPELINE_CONFIG`, `PIPELINE__*`,
//! `DATABASE_URL`, `REDIS_URL`) and `RUST_LOG`.

use std::process::ExitCode;

use requeue_daemon::RequeueConfig;

#[tokio::main]
async fn main() -> ExitCode {
    pipeline_ops::daemon::main(
        "requeue daemon",
        |p| p.requeue_daemon_port,
        |services, cancel| async move {
            let config = RequeueConfig::from_settings(&services.settings.requeue);
            let drain = services.settings.shutdown.drain_timeout();
            tracing::info!(max_redrives = config.policy.max_redrives,
                rate_per_sec = ?config.rate_per_sec, "requeue policy");
            requeue_daemon::run(&services, config, cancel, drain).await;
            Ok(())
        },
    )
    .await
}
