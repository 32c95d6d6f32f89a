//! The start-up and shutdown every daemon shares: the command line (`--help`, `--version`,
//! `--check-config`), settings (exit 2 when they are invalid), telemetry, the TLS provider,
//! the process's [`Services`], the probe server, the signal token, the wait for the schema
//! (see [`crate::schema`]), and a bounded exit.
//!
//! Exit codes: `0` after a complete drain, [`EXIT_HANDED_BACK`] (75) when the drain was cut
//! short and held work was handed back, `1` after a failure, `2` for a bad command line or
//! configuration. After SIGTERM or SIGINT the process is gone within
//! `shutdown.drain_timeout_secs` plus [`shutdown::EXIT_MARGIN`], whatever its tasks do.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pipeline_core::settings::ProbeSettings;
use pipeline_core::shutdown::EXIT_HANDED_BACK;
use pipeline_core::{Settings, probes, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

use crate::Services;
use crate::schema::{self, SchemaWait};

/// How a daemon's body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Everything in flight finished (exit 0).
    Complete,
    /// The drain timeout passed with work still held; it was handed back (exit 75).
    HandedBack,
}

impl Drain {
    /// `Complete` when `drained`, else `HandedBack`.
    pub fn from_drained(drained: bool) -> Self {
        if drained {
            Self::Complete
        } else {
            Self::HandedBack
        }
    }
}

/// What a daemon is, for its command line and logs.
#[derive(Debug, Clone, Copy)]
pub struct Daemon {
    /// The binary's name (`scrape-worker`).
    pub bin: &'static str,
    /// What it does, one line, for `--help`.
    pub about: &'static str,
    /// Its name in logs (`scrape worker`).
    pub name: &'static str,
    /// Its probe port, picked from the settings.
    pub port: fn(&ProbeSettings) -> u16,
}

/// Runs a daemon: parses its command line, loads the settings, builds its own runtime, and
/// runs `body` with the services and the shutdown token (cancelled on SIGTERM or SIGINT)
/// until it returns how its drain ended. The probes keep answering until `body` returns, so
/// an orchestrator sees the process alive while it drains.
///
/// The runtime is built here, not by `#[tokio::main]`, because a dropped runtime waits for
/// its blocking tasks: a handler stuck in CPU work would keep the process alive past its
/// drain. This one is stopped without waiting for them.
pub fn main<F, Fut>(daemon: Daemon, body: F) -> ExitCode
where
    F: FnOnce(Services, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<Drain>>,
{
    let check_config = match command_line(daemon.bin, daemon.about) {
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
    if check_config {
        print!("{}", effective_config(daemon.bin, &settings));
        return ExitCode::SUCCESS;
    }
    telemetry::init(&settings.telemetry);
    pipeline_core::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let name = daemon.name;
    // The process's runner activity, here so that the exit can report what it still holds.
    let activity = pipeline_runner::Activity::default();
    match runtime.block_on(serve(daemon, settings, activity.clone(), body)) {
        Ok(drain) => ExitCode::from(shutdown::finish_runtime(
            runtime,
            drain == Drain::Complete,
            activity.held_work(),
        )),
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "{name} failed");
            eprintln!("error: {err:#}");
            runtime.shutdown_timeout(Duration::from_millis(500));
            ExitCode::FAILURE
        }
    }
}

/// What `--check-config` prints: the effective settings as TOML (every layer applied, every
/// secret masked), headed by the database they lead to.
pub fn effective_config(bin: &str, settings: &Settings) -> String {
    format!(
        "# {bin}: the effective configuration (secrets masked)\n# database: {}\n\n{}",
        pipeline_core::pools::database_description(settings),
        settings.to_toml()
    )
}

/// Parses the process's command line (see [`main`]). `Ok(check_config)` means run (or only
/// check the configuration); `Err(code)` means exit now with `code` (help, version, usage
/// error), the answer already printed.
pub fn command_line(bin: &'static str, about: &'static str) -> Result<bool, ExitCode> {
    match parse_args(bin, about, std::env::args_os()) {
        Ok(Args::Run { check_config }) => Ok(check_config),
        Ok(Args::Exit(code)) => Err(code),
        Err(err) => {
            // clap formats usage errors itself; exit 2, as for configuration errors.
            let _ = err.print();
            Err(ExitCode::from(2))
        }
    }
}

enum Args {
    Run { check_config: bool },
    Exit(ExitCode),
}

/// `--help` and `--version` answer without starting anything; `--check-config` prints the
/// effective settings (secrets redacted) and exits; anything else is a usage error.
fn parse_args(
    bin: &'static str,
    about: &'static str,
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<Args, clap::Error> {
    let cmd = clap::Command::new(bin)
        .about(about)
        .version(env!("CARGO_PKG_VERSION"))
        .after_help(
            "Configuration: config/default.toml compiled in, then the file named by \
             PIPELINE_CONFIG, then PIPELINE__SECTION__KEY variables; DATABASE_URL and \
             REDIS_URL are honoured.\n\nExit status: 0 after a complete drain, 75 when the \
             drain was cut short and held work was handed back to the queue, 1 on failure, \
             2 for a bad command line or configuration.",
        )
        .arg(
            clap::Arg::new("check-config")
                .long("check-config")
                .action(clap::ArgAction::SetTrue)
                .help("Print the effective configuration (secrets redacted) and exit"),
        );
    match cmd.try_get_matches_from(args) {
        Ok(m) => Ok(Args::Run {
            check_config: m.get_flag("check-config"),
        }),
        Err(err)
            if matches!(
                err.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = err.print();
            Ok(Args::Exit(ExitCode::SUCCESS))
        }
        Err(err) => Err(err),
    }
}

async fn serve<F, Fut>(
    daemon: Daemon,
    settings: Settings,
    activity: pipeline_runner::Activity,
    body: F,
) -> anyhow::Result<Drain>
where
    F: FnOnce(Services, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<Drain>>,
{
    let name = daemon.name;
    let addr: SocketAddr = format!(
        "{}:{}",
        settings.probes.host,
        (daemon.port)(&settings.probes)
    )
    .parse()
    .with_context(|| format!("probes.host and the {name} probe port do not form an address"))?;
    let drain = settings.shutdown.drain_timeout();
    let database = pipeline_core::pools::database_description(&settings);
    let mut services = Services::build(settings)?;
    services.activity = activity;
    let cancel = shutdown::signal_token(drain, services.activity.held_work().clone());
    let probe_cancel = CancellationToken::new();
    // The probes answer from the start: `/health` 200 (the process is alive), `/ready` 503
    // until the schema is there, so an orchestrator neither kills nor routes to a waiting
    // daemon.
    services.schema.wait("checking migrations");
    // Build info and every counter at zero from the first scrape (see pipeline_core::metrics).
    pipeline_core::metrics::start(daemon.bin);
    let (bound, probe_task) = probes::serve(addr, services.probe_state(), probe_cancel.clone())
        .await
        .with_context(|| format!("cannot bind the probe server to {addr}"))?;
    tracing::info!(
        probes = %bound,
        database = %database,
        redis = %services.redis.endpoint(),
        "{name} starting"
    );
    let beat_cancel = CancellationToken::new();
    let beat = tokio::spawn(crate::heartbeat::run(
        services.clone(),
        daemon.bin,
        beat_cancel.clone(),
    ));
    let result = match schema::wait_for_schema(&services.db, &services.schema, &cancel).await {
        SchemaWait::Current => body(services, cancel).await,
        // Stopped while waiting: nothing was taken, so nothing is handed back.
        SchemaWait::Cancelled => Ok(Drain::Complete),
    };
    beat_cancel.cancel();
    // Removing the heartbeat is a courtesy (it expires anyway), so it gets little time.
    let _ = tokio::time::timeout(Duration::from_secs(1), beat).await;
    probe_cancel.cancel();
    // The probe server ends with its token once its connections close; a scraper holding a
    // keep-alive connection must not hold the exit, so the wait is short. An error there was
    // already logged by its task.
    let _ = tokio::time::timeout(Duration::from_secs(1), probe_task).await;
    match &result {
        Ok(Drain::Complete) => tracing::info!("{name} stopped; drain complete"),
        Ok(Drain::HandedBack) => tracing::warn!(
            exit_code = EXIT_HANDED_BACK,
            "{name} stopped; drain cut short, held work handed back"
        ),
        Err(_) => {}
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        parse_args(
            "x-worker",
            "does x",
            args.iter().map(std::ffi::OsString::from),
        )
    }

    #[test]
    fn help_and_version_exit_without_running_and_unknown_arguments_are_errors() {
        assert!(matches!(
            parse(&["x-worker"]),
            Ok(Args::Run {
                check_config: false
            })
        ));
        assert!(matches!(
            parse(&["x-worker", "--check-config"]),
            Ok(Args::Run { check_config: true })
        ));
        assert!(matches!(parse(&["x-worker", "--help"]), Ok(Args::Exit(_))));
        assert!(matches!(
            parse(&["x-worker", "--version"]),
            Ok(Args::Exit(_))
        ));
        assert!(parse(&["x-worker", "--bogus"]).is_err());
        assert!(parse(&["x-worker", "extra"]).is_err());
    }
}
