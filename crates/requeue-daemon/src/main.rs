//! `requeue-daemon`: automatic DLQ redrive, parking and reconciliation until SIGTERM or
//! SIGINT, then drains.
//!
//! Environment variables: those of the settings (`PIPELINE_CONFIG`, `PIPELINE__*`,
//! `DATABASE_URL`, `REDIS_URL`) and `RUST_LOG`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use pipeline_core::{Settings, probes, shutdown, telemetry};
use pipeline_ops::Services;
use requeue_daemon::RequeueConfig;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.telemetry);
    pipeline_core::install_crypto_provider();
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "requeue daemon failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let addr: SocketAddr = format!(
        "{}:{}",
        settings.probes.host, settings.probes.requeue_daemon_port
    )
    .parse()
    .context("probes.host and probes.requeue_daemon_port do not form an address")?;
    let config = RequeueConfig::from_settings(&settings.requeue);
    let drain = settings.shutdown.drain_timeout();
    let services = Services::build(settings)?;
    let cancel = shutdown::signal_token();
    let (bound, probe_task) = probes::serve(addr, services.probe_state(), cancel.clone())
        .await
        .with_context(|| format!("cannot bind the probe server to {addr}"))?;
    tracing::info!(probes = %bound, max_redrives = config.policy.max_redrives,
        rate_per_sec = ?config.rate_per_sec, "requeue daemon starting");
    requeue_daemon::run(&services, config, cancel.clone(), drain).await;
    // The probe server stops with the token; its error, if any, was logged by its task.
    let _ = probe_task.await;
    tracing::info!("requeue daemon stopped");
    Ok(())
}
