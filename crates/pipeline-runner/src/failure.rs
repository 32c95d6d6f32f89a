//! How a delivery fails, how it ended, and where the runner records a failure.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use uuid::Uuid;
use work_queue::ErrorKind;

/// Why one delivery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying: timeouts, connection errors, 5xx, 429, a dependency down.
    Transient {
        /// What went wrong.
        message: String,
        /// The earliest retry the remote asked for (Retry-After).
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: invalid input, 4xx, refused content, malformed message.
    Permanent {
        /// What went wrong.
        message: String,
    },
}

impl Failure {
    /// A transient failure without a Retry-After.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }

    /// The error text.
    pub fn message(&self) -> &str {
        match self {
            Self::Transient { message, .. } | Self::Permanent { message } => message,
        }
    }

    /// `transient` or `permanent`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Transient { .. } => ErrorKind::Transient,
            Self::Permanent { .. } => ErrorKind::Permanent,
        }
    }
}

/// What the queue did with a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Scheduled for another attempt after `delay`.
    RetryScheduled {
        /// Failed attempts so far.
        attempts: u32,
        /// Backoff before the next attempt.
        delay: Duration,
    },
    /// Moved to the family's DLQ.
    DeadLettered {
        /// Failed attempts so far.
        attempts: u32,
        /// Transient (retries exhausted) or permanent.
        kind: ErrorKind,
    },
    /// The lease was lost: another worker holds the message; nothing to record.
    LeaseLost,
}

/// How one delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Handled and acked.
    Succeeded,
    /// Another worker holds the message (this one's lease ran out): nothing settled here.
    LeaseLost,
    /// Handled, but the ack did not reach Redis: the message comes back after its lease.
    AckFailed,
    /// Failed; another attempt is scheduled.
    RetryScheduled,
    /// Failed for good (permanent, or out of attempts): in the DLQ.
    DeadLettered,
    /// Failed, and the failure could not be settled in Redis: it comes back after its lease.
    SettleFailed,
}

impl Outcome {
    /// Every outcome, in the order of their metric series.
    pub const ALL: [Outcome; 6] = [
        Outcome::Succeeded,
        Outcome::LeaseLost,
        Outcome::AckFailed,
        Outcome::RetryScheduled,
        Outcome::DeadLettered,
        Outcome::SettleFailed,
    ];

    /// The word used in metrics (`outcome` label) and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::LeaseLost => "lease_lost",
            Outcome::AckFailed => "ack_failed",
            Outcome::RetryScheduled => "retry_scheduled",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::SettleFailed => "settle_failed",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One settled failure, as the runner hands it to the stage's [`FailureLog`].
#[derive(Debug, Clone, Copy)]
pub struct FailureRecord<'a> {
    /// The queue family.
    pub family: &'a str,
    /// The message id (the source id for the pipeline's messages).
    pub message_id: &'a str,
    /// The source and job the message names; `None` when its body did not decode.
    pub ids: Option<(Uuid, Option<Uuid>)>,
    /// The failure.
    pub failure: &'a Failure,
    /// What the queue did with it (never [`Settled::LeaseLost`]: nothing is recorded then).
    pub settled: Settled,
}

/// Where a stage keeps the record of its failures; the runner calls it once per settled
/// failure, after the queue settled it. Recording must not fail the delivery: an error is
/// the log's to report (the message is settled already).
pub trait FailureLog: Send + Sync {
    /// Records one settled failure.
    fn record<'a>(
        &'a self,
        record: FailureRecord<'a>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}
