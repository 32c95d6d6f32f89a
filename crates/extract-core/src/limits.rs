//! What one document may cost: input caps checked before any work ([`Limits`]), and a
//! budget of time and work spent cooperatively by this crate's own loops ([`Budget`]).
//!
//! Third-party code (the HTML5 tree builder, Readability, trafilatura) cannot look at a
//! clock, so it is bounded by its input instead: [`crate::html::check`] refuses markup whose
//! size, element count or attribute count would make it expensive, before it is parsed.
//! Everything this crate loops over itself (the block walker, the chunker, the entity
//! finders) spends from a [`Budget`] and stops with [`TooExpensive`] when it runs out.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Caps on one document. The defaults let every page of the article benchmark through
/// with a wide margin (its largest page has about 6,000 elements and 300 KiB of HTML) and
/// keep a hostile page's cost to a few seconds of one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest HTML (or text) document extracted, in bytes of UTF-8.
    pub max_input_bytes: usize,
    /// Markup estimated (by a linear scan) to nest deeper than this is not parsed: its tags
    /// are stripped and its text kept, since the tree builder's cost grows with the square
    /// of the depth.
    pub max_depth: usize,
    /// Most elements (start tags) a document may have.
    pub max_elements: usize,
    /// Most attributes a document may have, all elements together.
    pub max_attributes: usize,
    /// Most attributes on one element (the tree builder checks duplicates pairwise).
    pub max_attributes_per_element: usize,
    /// Largest main text that is cut into chunks, in bytes.
    pub max_text_bytes: usize,
    /// Most chunks one document may give.
    pub max_chunks: usize,
    /// Most entities kept for one document; the rest are dropped and reported, which makes
    /// the entity status `partial`.
    pub max_entities: usize,
    /// Units of work (roughly: nodes visited plus bytes scanned by this crate's loops) one
    /// document may cost; deterministic, unlike the time budget.
    pub max_work: u64,
    /// Wall-clock time one document may take, in milliseconds.
    pub time_budget_ms: u64,
    /// Most pages read from one PDF; a longer document is refused, not cut short.
    pub max_pdf_pages: usize,
    /// Most bytes one PDF's streams may decode to, all streams together (measured through
    /// their filters before the document is parsed): the bound on a decompression bomb.
    pub max_pdf_decoded_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 8 * 1024 * 1024,
            max_depth: 3_000,
            max_elements: 250_000,
            max_attributes: 500_000,
            max_attributes_per_element: 1_000,
            max_text_bytes: 4 * 1024 * 1024,
            max_chunks: 6_000,
            max_entities: 2_000,
            max_work: 500_000_000,
            time_budget_ms: 20_000,
            max_pdf_pages: 2_000,
            max_pdf_decoded_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// No caps at all: for measuring, never for fetched pages.
    pub fn unlimited() -> Self {
        Self {
            max_input_bytes: usize::MAX,
            max_depth: usize::MAX,
            max_elements: usize::MAX,
            max_attributes: usize::MAX,
            max_attributes_per_element: usize::MAX,
            max_text_bytes: usize::MAX,
            max_chunks: usize::MAX,
            max_entities: usize::MAX,
            max_work: u64::MAX,
            time_budget_ms: u64::MAX,
            max_pdf_pages: usize::MAX,
            max_pdf_decoded_bytes: u64::MAX,
        }
    }
}

/// Why a document was refused as too costly. Displayed as the reason alone; the caller's
/// error says `too expensive to extract: {reason}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TooExpensive {
    /// Which limit was hit.
    pub kind: Exceeded,
    /// A sentence naming the limit and the measured value.
    pub reason: String,
}

/// The limit a [`TooExpensive`] document went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Exceeded {
    /// [`Limits::max_input_bytes`].
    InputBytes,
    /// [`Limits::max_depth`]: the markup can still be read as text.
    Depth,
    /// [`Limits::max_elements`].
    Elements,
    /// [`Limits::max_attributes`] or [`Limits::max_attributes_per_element`].
    Attributes,
    /// [`Limits::max_text_bytes`].
    TextBytes,
    /// [`Limits::max_chunks`].
    Chunks,
    /// [`Limits::max_work`].
    Work,
    /// [`Limits::time_budget_ms`].
    Time,
    /// [`Limits::max_pdf_pages`].
    Pages,
    /// [`Limits::max_pdf_decoded_bytes`].
    DecodedBytes,
}

impl TooExpensive {
    /// A refusal for going over `kind`, explained by `reason`.
    pub fn new(kind: Exceeded, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

/// Work between two looks at the clock: reading it costs tens of nanoseconds, a unit of
/// work a few, so the clock is read once per few microseconds of work at most.
const CLOCK_EVERY: u64 = 4096;

/// Time and work left for one document. Created when its processing starts; every costly
/// loop of this crate calls [`Budget::spend`].
#[derive(Debug, Clone)]
pub struct Budget {
    started: Instant,
    deadline: Option<Instant>,
    max_work: u64,
    spent: u64,
    next_clock: u64,
}

impl Budget {
    /// A budget of `limits.max_work` units and `limits.time_budget_ms`, starting now.
    pub fn new(limits: &Limits) -> Self {
        let started = Instant::now();
        Self {
            started,
            deadline: started.checked_add(Duration::from_millis(limits.time_budget_ms)),
            max_work: limits.max_work,
            spent: 0,
            next_clock: CLOCK_EVERY,
        }
    }

    /// A budget that never runs out.
    pub fn unlimited() -> Self {
        Self::new(&Limits::unlimited())
    }

    /// Work spent so far.
    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// Time since the budget started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Spends `units` of work on `what`.
    ///
    /// # Errors
    /// [`TooExpensive`] when the work or the time is used up.
    pub fn spend(&mut self, units: u64, what: &str) -> Result<(), TooExpensive> {
        self.spent = self.spent.saturating_add(units);
        if self.spent > self.max_work {
            return Err(TooExpensive::new(
                Exceeded::Work,
                format!("work budget of {} units used up in {what}", self.max_work),
            ));
        }
        if self.spent >= self.next_clock {
            self.next_clock = self.spent.saturating_add(CLOCK_EVERY);
            self.check_time(what)?;
        }
        Ok(())
    }

    /// Checks the clock alone, before a step that cannot be interrupted.
    ///
    /// # Errors
    /// [`TooExpensive`] when the time is used up.
    pub fn check_time(&self, what: &str) -> Result<(), TooExpensive> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(TooExpensive::new(
                Exceeded::Time,
                format!(
                    "time budget of {} ms used up in {what}",
                    deadline.duration_since(self.started).as_millis()
                ),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_out_at_the_cap() {
        let mut b = Budget::new(&Limits {
            max_work: 10,
            ..Limits::default()
        });
        assert!(b.spend(10, "x").is_ok());
        let err = b.spend(1, "the walker").unwrap_err();
        assert_eq!(err.kind, Exceeded::Work);
        assert!(err.reason.contains("the walker"), "{err}");
    }

    #[test]
    fn time_runs_out_at_the_deadline() {
        let b = Budget::new(&Limits {
            time_budget_ms: 0,
            ..Limits::default()
        });
        assert_eq!(b.check_time("x").unwrap_err().kind, Exceeded::Time);
        let mut b = Budget::new(&Limits {
            time_budget_ms: 0,
            ..Limits::default()
        });
        // The clock is read only every CLOCK_EVERY units.
        assert!(b.spend(1, "x").is_ok());
        assert_eq!(b.spend(CLOCK_EVERY, "x").unwrap_err().kind, Exceeded::Time);
        assert!(Budget::unlimited().check_time("x").is_ok());
    }
}
