//! What the runner needs of a message body.

use serde::de::DeserializeOwned;
use uuid::Uuid;

/// A message body the runner decodes before its handler sees it, and whose failure it
/// records against a source and job.
pub trait WorkMessage: DeserializeOwned + Send + Sync + 'static {
    /// The source the message is about.
    fn source_id(&self) -> Uuid;
    /// The job it runs for, when known.
    fn job_id(&self) -> Option<Uuid>;
    /// The URL it is about, when the message carries one (for logs).
    fn url(&self) -> Option<&str> {
        None
    }
}
