//! `pipeline-mcp`: a Model Context Protocol server, over stdio or streamable HTTP, that
//! gives AI assistants the pipeline's search, submissions, crawls, job status, page trails
//! and DLQ, and pages' Markdown as resources.
//!
//! It is a client of the pipeline's own HTTP API ([`api`]), not of its database: every
//! tool is one or a few API calls, so inputs are validated by the same code as the API's
//! other clients, the API's key rules apply, and a remote MCP server needs no database
//! credentials. Inputs are checked here too ([`params`]) and every result is bounded
//! ([`bound`]).
//!
//! Environment: `PIPELINE_API_URL` (the API's base URL, default `http://127.0.0.1:8742`),
//! `PIPELINE_API_KEY` (the key for stdio mode; the HTTP mode uses each caller's own),
//! `PIPELINE_MCP_ALLOWED_HOSTS`, `RUST_LOG`.

pub mod api;
pub mod bound;
pub mod http;
pub mod params;
pub mod server;

pub use api::ApiClient;
pub use server::{CallerKey, Keys, PipelineMcp};
