//! The start-up and shutdown every daemon shares: settings (exit 2 when they are invalid),
//! telemetry, the TLS provider, the process's [`Services`], the probe server, the signal
//! token, and the exit code (0 after a clean drain, 1 after a failure).

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use pipeline_core::settings::ProbeSettings;
use pipeline_core::{Settings, probes, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

use crate::Services;

/// Runs a daemon named `name` (for logs) whose probe port `port` picks from the settings.
/// `body` gets the services and the shutdown token (cancelled on SIGTERM or SIGINT) and
/// returns once it has drained. The probes keep answering until `body` returns, so an
/// orchestrator sees the process alive while it drains.
pub async fn main<F, Fut>(name: &'static str, port: fn(&ProbeSettings) -> u16, body: F) -> ExitCode
where
    F: FnOnce(Services, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.telemetry);
    pipeline_core::install_crypto_provider();
    match serve(name, port, settings, body).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "{name} failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve<F, Fut>(
    name: &'static str,
    port: fn(&ProbeSettings) -> u16,
    settings: Settings,
    body: F,
) -> anyhow::Result<()>
where
    F: FnOnce(Services, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let addr: SocketAddr = format!("{}:{}", settings.probes.host, port(&settings.probes))
        .parse()
        .with_context(|| format!("probes.host and the {name} probe port do not form an address"))?;
    let services = Services::build(settings)?;
    let cancel = shutdown::signal_token();
    let probe_cancel = CancellationToken::new();
    let (bound, probe_task) = probes::serve(addr, services.probe_state(), probe_cancel.clone())
        .await
        .with_context(|| format!("cannot bind the probe server to {addr}"))?;
    tracing::info!(probes = %bound, "{name} starting");
    let result = body(services, cancel).await;
    probe_cancel.cancel();
    // The probe server ends with its token; an error there was already logged by its task.
    let _ = probe_task.await;
    tracing::info!("{name} stopped");
    result
}
