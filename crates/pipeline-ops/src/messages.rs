//! The work messages carried by the queues. The message id is the source id, so a source
//! is in one family's queue at most once.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The scrape queue family.
pub const SCRAPE: &str = "scrape";
/// The extraction queue family.
pub const EXTRACTION: &str = "extraction";

/// A unit of work about one source, for either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMessage {
    /// The source to process.
    pub source_id: Uuid,
    /// The job on whose behalf it runs (the latest job that asked for it).
    pub job_id: Option<Uuid>,
}

impl SourceMessage {
    /// The queue message id.
    pub fn id(&self) -> String {
        self.source_id.to_string()
    }

    /// The queue message body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a SourceMessage always serialises")
    }
}
