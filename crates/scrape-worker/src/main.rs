//! `scrape-worker`: the scrape queue's consumer daemon. See the crate docs and README.

use std::net::SocketAddr;
use std::process::ExitCode;

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
            tracing::error!(error = format!("{err:#}"), "scrape worker failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let probe_addr: SocketAddr = format!(
        "{}:{}",
        settings.probes.host, settings.probes.scrape_worker_port
    )
    .parse()?;
    let services = Services::build(settings)?;
    let cancel = shutdown::signal_token();
    let probe_cancel = tokio_util::sync::CancellationToken::new();
    let (bound, probe_task) =
        probes::serve(probe_addr, services.probe_state(), probe_cancel.clone()).await?;
    tracing::info!(probes = %bound, "scrape worker probes listening");
    let result = scrape_worker::run(services, cancel).await;
    probe_cancel.cancel();
    // The probe server ends with its token; an error there was already logged.
    let _ = probe_task.await;
    tracing::info!("scrape worker stopped");
    result
}
