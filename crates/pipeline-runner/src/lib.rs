//! The worker runner every queue family runs on: reserve in batches, process with bounded
//! concurrency, keep leases alive, settle every delivery (ack, retry with backoff, or
//! dead-letter), catch panics, record failures, and drain on shutdown.
//!
//! A stage supplies a [`Handler`]: the work of one delivery, and a [`FailureLog`] through
//! which the runner records each settled failure where the stage keeps its record (the
//! pipeline's is the source row and its event trail, in `pipeline-ops`). The runner knows
//! nothing of Postgres. What a process's runner did is kept in an [`Activity`] handle
//! (counts per family and minute, deliveries in flight, pause flags seen), which the
//! process passes in: two runners in one process each see only their own.
//!
//! - [`run`]: the daemon's loop, until cancelled, then the drain.
//! - [`run_next`]: one step, for tests and tools.
//! - [`Outcome`]: how a delivery ended, one typed value for metrics, counts and logs.

mod acks;
mod activity;
mod failure;
mod message;
mod runner;

pub use activity::{Activity, InFlight, Minute, minute_now};
pub use failure::{Failure, FailureLog, FailureRecord, Outcome, Settled};
pub use message::WorkMessage;
pub use runner::{Handler, RunnerOptions, process, run, run_next};
