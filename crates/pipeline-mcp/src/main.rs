//! `pipeline-mcp`: the pipeline's MCP server.
//!
//! `pipeline-mcp --stdio` serves one client over stdin/stdout (an MCP client launches it);
//! `pipeline-mcp --http 127.0.0.1:9110` serves streamable HTTP at `/mcp`, each request
//! carrying its caller's key as `Authorization: Bearer <key>`.
//!
//! Environment: `PIPELINE_API_URL`, `PIPELINE_API_KEY` (stdio mode; the first key when it
//! lists several), `PIPELINE_MCP_ALLOWED_HOSTS`, `RUST_LOG`. Logs go to stderr: in stdio mode
//! stdout carries the protocol.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use pipeline_mcp::{ApiClient, Keys, PipelineMcp};
use rmcp::ServiceExt;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use url::Url;

/// How long requests in flight get to finish after SIGTERM or SIGINT (HTTP mode).
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "pipeline-mcp",
    version,
    about = "MCP server (stdio or streamable HTTP) for the pipeline: search, submit, crawl, \
             job status, page trails, DLQ; pages' Markdown as resources",
    group(ArgGroup::new("transport").required(true).args(["stdio", "http"]))
)]
struct Cli {
    /// Serve one MCP client over stdin and stdout (the way MCP clients launch servers).
    /// Calls the API with PIPELINE_API_KEY.
    #[arg(long)]
    stdio: bool,
    /// Serve streamable HTTP on this address (for example 127.0.0.1:9110); the endpoint is
    /// /mcp and every request needs `Authorization: Bearer <API key>`.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// The pipeline API's base URL.
    #[arg(
        long,
        env = "PIPELINE_API_URL",
        default_value = "http://127.0.0.1:8742",
        value_parser = parse_base_url
    )]
    api_url: Url,
    /// HTTP mode: the Host header values the endpoint accepts (comma-separated, with or
    /// without a port); default localhost, 127.0.0.1, ::1. Name the public host here when
    /// the server is reached through one.
    #[arg(long, env = "PIPELINE_MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
}

fn parse_base_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err("an http(s) base URL, such as http://127.0.0.1:8742".into());
    }
    Ok(url)
}

/// The stdio mode's key: the first of `PIPELINE_API_KEY`'s keys (the API's own setting may
/// list several, separated by commas or newlines).
fn stdio_key() -> Option<SecretString> {
    let raw = std::env::var("PIPELINE_API_KEY").ok()?;
    raw.split([',', '\n', '\r'])
        .map(str::trim)
        .find(|k| !k.is_empty())
        .map(|k| SecretString::from(k.to_owned()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "pipeline-mcp failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // stderr always: in stdio mode stdout is the protocol's.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let api = ApiClient::new(cli.api_url.clone())?;
    let cancel = CancellationToken::new();
    tokio::spawn(cancel_on_signal(cancel.clone()));
    if cli.stdio {
        let key = stdio_key();
        tracing::info!(api = %api.base(), key = key.is_some(), "pipeline-mcp serving stdio");
        let service = PipelineMcp::new(api, Keys::Fixed(key))
            .serve(rmcp::transport::stdio())
            .await?;
        let service_cancel = service.cancellation_token();
        tokio::select! {
            // The client closed stdin (or the protocol failed): the session is over.
            quit = service.waiting() => { quit?; }
            () = cancel.cancelled() => service_cancel.cancel(),
        }
        tracing::info!("pipeline-mcp stopped");
        return Ok(());
    }
    let addr = cli.http.expect("clap requires --stdio or --http");
    let hosts = if cli.allowed_hosts.is_empty() {
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
    } else {
        cli.allowed_hosts
    };
    if std::env::var_os("PIPELINE_API_KEY").is_some() {
        tracing::info!("HTTP mode ignores PIPELINE_API_KEY: each request brings its own key");
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        api = %api.base(),
        path = pipeline_mcp::http::MCP_PATH,
        "pipeline-mcp serving streamable HTTP"
    );
    let app = pipeline_mcp::http::router(api, hosts, cancel.child_token());
    let stopping = cancel.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopping.cancelled().await })
        .into_future();
    let mut server = tokio::spawn(server);
    tokio::select! {
        done = &mut server => { done??; }
        () = cancel.cancelled() => {
            match tokio::time::timeout(DRAIN, &mut server).await {
                Ok(done) => done??,
                Err(_) => tracing::warn!("requests still open after the drain timeout"),
            }
        }
    }
    tracing::info!("pipeline-mcp stopped");
    Ok(())
}

/// Cancels `cancel` on SIGTERM or SIGINT.
async fn cancel_on_signal(cancel: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("signal received, stopping");
    cancel.cancel();
}
