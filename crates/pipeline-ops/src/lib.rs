//! Operations shared by the daemons, the API and the CLI: the process's [`Services`] (one
//! Postgres pool, one Redis pool, a queue and a DLQ handle per family), [`submit`], the
//! work messages, the generic [`worker`] runner both workers are built on, and the
//! [`daemon`] start-up every daemon shares, with its [`schema`] wait.

mod acks;
pub mod activity;
pub mod crawl;
pub mod daemon;
pub mod dlq_ops;
pub mod family;
pub mod heartbeat;
pub mod messages;
pub mod pause;
pub mod queues;
pub mod schema;
pub mod services;
pub mod submit;
pub mod worker;

pub use family::{Family, UnknownFamily};
pub use services::Services;
