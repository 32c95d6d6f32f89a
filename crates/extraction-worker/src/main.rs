//! `extraction-worker`: consumes the extraction queue until SIGTERM or SIGINT, then drains.
//!
//! Environment variables: those of the settings (`PIPELINE_CONFIG`, `PIPELINE__*`,
//! `DATABASE_URL`, `REDIS_URL`, `PIPELINE_EMBEDDING_API_KEY`) and `RUST_LOG`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use pipeline_core::{Settings, probes, shutdown, telemetry};
use pipeline_ops::Services;

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
            tracing::error!(error = format!("{err:#}"), "extraction worker failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let addr: SocketAddr = format!(
        "{}:{}",
        settings.probes.host, settings.probes.extraction_worker_port
    )
    .parse()
    .context("probes.host and probes.extraction_worker_port do not form an address")?;
    let batcher = extraction_worker::batcher_from_settings(&settings)?;
    let services = Services::build(settings)?;
    let cancel = shutdown::signal_token();
    let (bound, probe_task) = probes::serve(addr, services.probe_state(), cancel.clone())
        .await
        .with_context(|| format!("cannot bind the probe server to {addr}"))?;
    tracing::info!(probes = %bound, model = batcher.model(), "extraction worker starting");
    extraction_worker::run(&services, batcher, cancel.clone()).await;
    cancel.cancel();
    // The probe server stops with the token; its error, if any, was logged by its task.
    let _ = probe_task.await;
    tracing::info!("extraction worker stopped");
    Ok(())
}
