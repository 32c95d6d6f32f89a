//! `extraction-worker`: consumes the extraction queue until SIGTERM or SIGINT, then drains.
//!
//! Environment variables: those of the settings (`PIPELINE_CONFIG`, `PIPELINE__*`,
//! `DATABASE_URL`, `REDIS_URL`, `PIPELINE_EMBEDDING_API_KEY`) and `RUST_LOG`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    pipeline_ops::daemon::main(
        "extraction worker",
        |p| p.extraction_worker_port,
        |services, cancel| async move {
            let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
            tracing::info!(model = batcher.model(), "extraction worker model");
            extraction_worker::run(&services, batcher, cancel).await;
            Ok(())
        },
    )
    .await
}
