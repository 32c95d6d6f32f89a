//! `pipeline-api`: the admin HTTP API daemon (default `127.0.0.1:8742`, setting `api.bind`).
//!
//! Environment: `PIPELINE_API_KEY` (or `api.key_file`) for the key; the usual settings
//! variables (`DATABASE_URL`, `REDIS_URL`, `PIPELINE__SECTION__KEY`, `PIPELINE_CONFIG`).

use std::net::SocketAddr;
use std::process::ExitCode;

use pipeline_core::{Settings, Sources, shutdown};
use pipeline_ops::Services;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let check_config = match pipeline_ops::daemon::command_line(
        "pipeline-api",
        "The pipeline's admin HTTP API: DLQs, jobs, submissions, traces",
    ) {
        Ok(check_config) => check_config,
        Err(code) => return code,
    };
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let api_key = match settings.api_key(&Sources::from_process()) {
        Ok(k) => k,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let addr: SocketAddr = match settings.api.bind.parse() {
        Ok(a) => a,
        Err(err) => {
            eprintln!("error: api.bind `{}`: {err}", settings.api.bind);
            return ExitCode::from(2);
        }
    };
    // Checked here too (serve checks again) so a configuration mistake exits 2, like other
    // configuration errors, rather than 1.
    if !pipeline_api::ApiKeys::new(api_key.clone()).is_configured() && !addr.ip().is_loopback() {
        eprintln!(
            "error: {}",
            pipeline_api::ServeError::NoKeyNonLoopback(addr)
        );
        return ExitCode::from(2);
    }
    if check_config {
        print!(
            "{}",
            pipeline_ops::daemon::effective_config("pipeline-api", &settings)
        );
        return ExitCode::SUCCESS;
    }
    pipeline_core::telemetry::init(&settings.telemetry);
    pipeline_core::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // As the other daemons: the runtime is stopped without waiting for blocking tasks, so
    // the process is gone within the drain timeout (see pipeline_core::shutdown).
    match runtime.block_on(run(settings, api_key, addr)) {
        Ok(drained) => ExitCode::from(shutdown::finish_runtime(
            runtime,
            drained,
            &shutdown::HeldWork::default(),
        )),
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "pipeline-api failed");
            eprintln!("error: {err:#}");
            runtime.shutdown_timeout(std::time::Duration::from_millis(500));
            ExitCode::FAILURE
        }
    }
}

async fn run(
    settings: Settings,
    api_key: Option<secrecy::SecretString>,
    addr: SocketAddr,
) -> anyhow::Result<bool> {
    let drain = settings.shutdown.drain_timeout();
    // Build info and every counter at zero from the first scrape (see pipeline_core::metrics).
    pipeline_core::metrics::start("pipeline-api");
    tracing::info!(
        database = %pipeline_core::pools::database_description(&settings),
        "pipeline-api starting"
    );
    let services = Services::build(settings)?;
    // The API holds no queue deliveries: its list of held work stays empty.
    let cancel = shutdown::signal_token(drain, shutdown::HeldWork::default());
    // As the other daemons: serve at once (`/health` 200, `/ready` 503), but wait for the
    // schema before calling itself ready; routes answer errors until then.
    let (db, gate) = (services.db.clone(), services.schema.clone());
    gate.wait("checking migrations");
    let beat_cancel = CancellationToken::new();
    let beat = tokio::spawn(pipeline_ops::heartbeat::run(
        services.clone(),
        "pipeline-api",
        beat_cancel.clone(),
    ));
    let (_, server) = pipeline_api::serve(services, api_key, addr, cancel.clone()).await?;
    pipeline_ops::schema::wait_for_schema(&db, &gate, &cancel).await;
    cancel.cancelled().await;
    // Graceful shutdown: no new connections; requests in flight get the drain timeout.
    let finished = pipeline_core::shutdown::drain_within(drain, async {
        // A panicked server task has nothing left to drain.
        let _ = server.await;
    })
    .await;
    beat_cancel.cancel();
    // Removing the heartbeat is a courtesy (it expires anyway), so it gets little time.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), beat).await;
    tracing::info!(drained = finished, "pipeline-api stopped");
    Ok(finished)
}
