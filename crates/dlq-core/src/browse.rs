//! Browsing a DLQ with filters (error kind, job), for the operator console: newest first,
//! cursor paging, and a bounded cost per page whatever the filter matches.
//!
//! Redis keeps no index by job, and indexing every item by job would cost every push a
//! write that only this screen reads. Instead a page looks at no more than a fixed budget
//! of ids from the cursor on ([`SCAN_BUDGET`]): a filter that matches rarely gives a short
//! (even empty) page with a cursor to go on, and the cost of one page stays
//! O(log N + budget), never a walk of the whole DLQ.

use std::sync::LazyLock;

use redis::Script;

use crate::dlq::{Dlq, check_limit, decode_cursor, encode_cursor, parse_seq};
use crate::error::{DlqError, Result};
use crate::item::ListedItem;
use crate::lua::{LUA_PUSH_FN, parse_rows};

/// Most ids one filtered page looks at.
pub const SCAN_BUDGET: usize = 2000;

static BROWSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}\n{LUA_PUSH_FN}\n{}",
        pipeline_redis::LUA_PRELUDE,
        include_str!("lua/browse.lua")
    ))
});

/// Which items a filtered listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KindFilter {
    /// Every item.
    #[default]
    Any,
    /// Unparked items that failed transiently.
    Transient,
    /// Unparked items that failed permanently.
    Permanent,
    /// Parked items.
    Parked,
}

impl KindFilter {
    /// The filter's word (`""` for [`KindFilter::Any`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "",
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::Parked => "parked",
        }
    }

    /// Parses a word (`""` or `any` is [`KindFilter::Any`]).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "any" => Self::Any,
            "transient" => Self::Transient,
            "permanent" => Self::Permanent,
            "parked" => Self::Parked,
            _ => return None,
        })
    }
}

/// The filters of [`Dlq::browse`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    /// By error kind and parking.
    pub kind: KindFilter,
    /// Only items of this job.
    pub job_id: Option<uuid::Uuid>,
}

impl Filter {
    /// Whether the filter lets every item through.
    pub fn is_empty(&self) -> bool {
        self.kind == KindFilter::Any && self.job_id.is_none()
    }
}

/// One filtered page.
#[derive(Debug)]
pub struct FilteredPage {
    /// The matching items, newest first.
    pub items: Vec<ListedItem>,
    /// Where the next page starts; `None` at the end of the DLQ.
    pub next_cursor: Option<String>,
    /// How many items were looked at to fill the page.
    pub scanned: u64,
}

impl Dlq {
    /// Up to `limit` (1..=1000) items matching `filter`, newest first, after `cursor`,
    /// looking at no more than [`SCAN_BUDGET`] items.
    ///
    /// # Errors
    /// An invalid limit or cursor, Redis failures.
    pub async fn browse(
        &self,
        limit: usize,
        cursor: Option<&str>,
        filter: &Filter,
    ) -> Result<FilteredPage> {
        check_limit(limit)?;
        let max = match cursor {
            Some(c) => format!("({}", decode_cursor(c)?),
            None => "+inf".to_owned(),
        };
        let job = filter.job_id.map(|j| j.to_string()).unwrap_or_default();
        let budget = SCAN_BUDGET.max(limit).to_string();
        let args = [
            max.as_str(),
            &limit.to_string(),
            &budget,
            filter.kind.as_str(),
            &job,
        ];
        let mut flat: Vec<Option<String>> = self.run(&BROWSE, &[], &args).await?;
        let scanned = flat
            .pop()
            .flatten()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| DlqError::Protocol("browse: no scan count".into()))?;
        let last = flat
            .pop()
            .ok_or_else(|| DlqError::Protocol("browse: no last seq".into()))?;
        let rows = parse_rows(flat)?;
        let next_cursor = match last {
            Some(seq) => Some(encode_cursor(parse_seq(Some(&seq))?)),
            None => None,
        };
        Ok(FilteredPage {
            items: rows.into_iter().map(|r| r.fields.decode()).collect(),
            next_cursor,
            scanned,
        })
    }
}
