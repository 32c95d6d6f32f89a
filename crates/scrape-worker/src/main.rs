//! `scrape-worker`: the scrape queue's consumer daemon. See the crate docs and README.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    pipeline_ops::daemon::main(
        "scrape worker",
        |p| p.scrape_worker_port,
        scrape_worker::run,
    )
    .await
}
