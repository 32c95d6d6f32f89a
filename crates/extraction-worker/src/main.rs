//! `extraction-worker`: consumes the extraction queue until SIGTERM or SIGINT, then drains.
//!
//! Environment variables: those of the settings (`PIPELINE_CONFIG`, `PIPELINE__*`,
//! `DATABASE_URL`, `REDIS_URL`, `PIPELINE_EMBEDDING_API_KEY`) and `RUST_LOG`.

use std::process::ExitCode;

use pipeline_ops::daemon::{self, Daemon, Drain};

fn main() -> ExitCode {
    daemon::main(
        Daemon {
            bin: "extraction-worker",
            about: "Consumes the extraction queue: main text, chunks, entities and \
                    embeddings of each scraped source",
            name: "extraction worker",
            port: |p| p.extraction_worker_port,
        },
        |services, cancel| async move {
            let batcher = extraction_worker::batcher_from_settings(&services.settings)?;
            tracing::info!(model = batcher.model(), "extraction worker model");
            let drained = extraction_worker::run(&services, batcher, cancel).await;
            Ok(Drain::from_drained(drained))
        },
    )
}
