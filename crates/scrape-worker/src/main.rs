//! `scrape-worker`: the scrape queue's consumer daemon. See the crate docs and README.

use std::process::ExitCode;

use pipeline_ops::daemon::{self, Daemon};

fn main() -> ExitCode {
    daemon::main(
        Daemon {
            bin: "scrape-worker",
            about: "Consumes the scrape queue: fetches each source's URL, stores the page, \
                    and enqueues its extraction",
            name: "scrape worker",
            port: |p| p.scrape_worker_port,
        },
        scrape_worker::run,
    )
}
