//! The workspace's integration tests, in one test binary: one link instead of one per area
//! (each links every crate of the workspace; on a small machine the links alone took
//! minutes), one harness (`integration_tests`, in `tests/src/`), one set of variables
//! (`TEST_DATABASE_URL`, `TEST_REDIS_URL`, `TEST_REDIS_CLUSTER_NODES`, `TEST_LOG`).
//!
//! Every test creates its own database and Redis key prefix and removes them, so they run
//! in parallel. Process tests start the workspace's binaries: build them first
//! (`cargo build --workspace --bins`, which the README's test command does).
//!
//! Run one area with a filter: `cargo nextest run -p integration-tests scrape_process::`.

// Row tuples from sqlx read clearer inline than behind type aliases.
#![allow(clippy::type_complexity)]

mod api_dlq;
mod api_hostile;
mod api_http;
mod api_process;
mod api_retry_race;
mod api_schemas;
mod bounded_exit;
mod cli_commands;
mod cli_operator;
mod cli_schemas;
mod cli_webhooks;
mod cluster;
mod console_browser;
mod console_http;
mod console_pages;
mod console_records;
mod console_signin;
mod console_tools;
mod console_webhooks;
mod crawl_api;
mod crawl_process;
mod crawl_site;
mod crawl_sitemaps;
mod demo_crawl;
mod documents;
mod event_partitions;
mod export;
mod extraction_embeddings;
mod extraction_process;
mod extraction_worker;
mod facts_faults;
mod facts_stage;
mod foundation;
mod hostile_pages;
mod job_progress;
mod mcp;
mod metrics_process;
mod own_services_docs;
mod pdf_documents;
mod queue_lanes;
mod reembed_cli;
mod render_api;
mod render_pages;
mod render_process;
mod requeue_data_loss;
mod requeue_e2e;
mod requeue_policy;
mod requeue_reconcile;
mod requeue_replicas;
mod restore_docs;
mod runner_wake;
mod schema_wait;
mod scrape_pages;
mod scrape_process;
mod scrape_worker;
mod search_api;
mod traceability_docs;
mod webhooks_api;
mod webhooks_delivery;
