//! `facts-worker`: consumes the facts queue (the schema stage) until SIGTERM or SIGINT, then
//! drains.
//!
//! Environment variables: those of the settings (`PIPELINE_CONFIG`, `PIPELINE__*`,
//! `DATABASE_URL`, `REDIS_URL`, `PIPELINE_LLM_API_KEY`) and `RUST_LOG`.

use std::process::ExitCode;

use pipeline_ops::daemon::{self, Daemon, Drain};

fn main() -> ExitCode {
    daemon::main(
        Daemon {
            bin: "facts-worker",
            about: "Consumes the facts queue: the records that answer each project's \
                    extraction schema, every value with its quote",
            name: "facts worker",
            port: |p| p.facts_worker_port,
        },
        |services, cancel| async move {
            let chat = facts_worker::chat_client_from_settings(&services.settings)?;
            let drained = facts_worker::run(&services, chat, cancel).await;
            Ok(Drain::from_drained(drained))
        },
    )
}
