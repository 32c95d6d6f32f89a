//! The pipeline's domain operations, shared by the daemons, the API and the CLI: the
//! process's [`Services`] (one Postgres pool, one Redis pool, a queue and DLQ handle per
//! family, the process's runner activity), [`submit`], crawls, the work messages, the
//! [`ledger`] through which the runner (`pipeline-runner`) records failures on sources,
//! DLQ operations, pause flags, heartbeats, and the [`daemon`] start-up every daemon
//! shares, with its [`schema`] wait.

pub mod activity;
pub mod crawl;
pub mod daemon;
pub mod dlq_ops;
pub mod family;
pub mod heartbeat;
pub mod ledger;
pub mod limits;
pub mod messages;
pub mod pause;
pub mod queues;
pub mod schema;
pub mod schemas;
pub mod services;
pub mod submit;
pub mod webhooks;

pub use family::{Family, UnknownFamily};
pub use pipeline_store::Actor;
pub use services::Services;
