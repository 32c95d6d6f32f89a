//! `pipelinectl`: the operator's command line.
//!
//! Reads the same layered configuration as the daemons (see `config/default.toml`).

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pipeline_core::Settings;

/// Operate the scraping pipeline.
#[derive(Debug, Parser)]
#[command(name = "pipelinectl", version, about)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the database migrations (safe to run again: a no-op when current).
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    pipeline_core::telemetry::init(&settings.telemetry);
    pipeline_core::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, settings)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, settings: Settings) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Migrate => {
            let pool = pipeline_core::pools::pg_pool(&settings)?;
            let report = pipeline_store::migrate(&pool)
                .await
                .context("applying migrations")?;
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({"applied": report.applied, "known": report.known})
                );
            } else if report.applied.is_empty() {
                println!(
                    "schema is current ({} migrations); nothing to do",
                    report.known
                );
            } else {
                println!(
                    "applied {} migration(s): {:?}",
                    report.applied.len(),
                    report.applied
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
