//! The queue families: one name for the idea that the API calls a DLQ "kind", the DLQ item
//! calls `dlq_type`, the trail calls a "stage", and Redis uses as a hash tag.

use std::fmt;
use std::str::FromStr;

use pipeline_store::SourceStatus;
use serde::{Deserialize, Serialize};

/// A family of work: its work queue, its DLQ, and the stage of a source's life it stands for.
/// The word (`scrape`, `extraction`) is the same everywhere: in Redis keys (`{scrape}`), the
/// DLQ item's `dlq_type`, API paths (`/api/v1/dlq/{family}`), metrics labels, the event
/// trail's `stage`, and the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Fetching each source's page.
    Scrape,
    /// Main text, chunks, embeddings and entities of each fetched page.
    Extraction,
    /// The records that answer a project's extraction schema, for pages of projects that
    /// have one.
    Facts,
    /// Webhook deliveries: events sent to the endpoints projects registered. Not a stage
    /// of a source's life: its messages are deliveries (`webhook_deliveries`), not sources.
    Webhooks,
}

impl Family {
    /// Every family, in pipeline order.
    pub const ALL: [Family; 4] = [
        Family::Scrape,
        Family::Extraction,
        Family::Facts,
        Family::Webhooks,
    ];

    /// The families that are stages of a source's life (their messages are sources).
    pub const STAGES: [Family; 3] = [Family::Scrape, Family::Extraction, Family::Facts];

    /// The family's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scrape => "scrape",
            Self::Extraction => "extraction",
            Self::Facts => "facts",
            Self::Webhooks => "webhooks",
        }
    }

    /// Whether the family's messages are sources (a stage of a source's life).
    pub fn is_stage(self) -> bool {
        self != Self::Webhooks
    }

    /// The status of a source waiting in this family's queue (`queued` for scrape, `scraped`
    /// for extraction, `facts_pending` for facts): what a redrive or a reconciliation puts
    /// it back to. `None` for webhooks, whose messages are not sources.
    pub fn waiting_status(self) -> Option<SourceStatus> {
        match self {
            Self::Scrape => Some(SourceStatus::Queued),
            Self::Extraction => Some(SourceStatus::Scraped),
            Self::Facts => Some(SourceStatus::FactsPending),
            Self::Webhooks => None,
        }
    }

    /// Every family's word, comma-separated, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no family.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown family `{0}` (expected one of: {names})", names = Family::names())]
pub struct UnknownFamily(pub String);

impl FromStr for Family {
    type Err = UnknownFamily;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFamily(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_words_name_the_choices() {
        for f in Family::ALL {
            assert_eq!(f.as_str().parse::<Family>(), Ok(f));
            assert_eq!(
                serde_json::to_value(f).unwrap(),
                serde_json::json!(f.as_str())
            );
        }
        let err = "scrap".parse::<Family>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown family `scrap` (expected one of: scrape, extraction, facts, webhooks)"
        );
    }

    /// The metrics catalogue registers every family's counters at zero from its own list.
    #[test]
    fn the_metrics_catalogue_knows_every_family() {
        assert_eq!(
            Family::ALL.map(Family::as_str),
            pipeline_core::metrics::catalogue::FAMILIES
        );
    }
}
