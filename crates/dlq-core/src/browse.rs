//! Browsing a DLQ with filters (error kind, job), for the operator console: newest first,
//! cursor paging, and a bounded cost per page whatever the filter matches.
//!
//! Redis keeps no index by job, and indexing every item by job would cost every push a
//! write that only this screen reads. Instead a page looks at no more than a fixed budget
//! of ids from the cursor on ([`SCAN_BUDGET`]): a filter that matches rarely gives a short
//! (even empty) page with a cursor to go on, and the cost of one page stays
//! O(log N + budget), never a walk of the whole DLQ.

use std::collections::VecDeque;
use std::sync::LazyLock;

use redis::Script;

use crate::dlq::{Dlq, check_limit, decode_cursor, encode_cursor, parse_seq};
use crate::error::{DlqError, Result};
use crate::item::ListedItem;
use crate::lua::{LUA_PUSH_FN, parse_rows};
use crate::shards;

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
    /// With several shards in use, each shard looks at its share of the budget from its
    /// own position and the matches are merged newest first (by `failed_at`); the cursor
    /// holds one position per shard, so paging never skips or repeats an item.
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
        let shards = self.shards().await?;
        if shards == 1 {
            let max = match cursor {
                Some(c) => format!("({}", decode_cursor(c)?),
                None => "+inf".to_owned(),
            };
            let (rows, last, scanned) = self
                .browse_raw(&max, limit, SCAN_BUDGET.max(limit), filter)
                .await?;
            return Ok(FilteredPage {
                items: rows.into_iter().map(|(_, item)| item).collect(),
                next_cursor: last.map(encode_cursor),
                scanned,
            });
        }
        let mut positions = shards::decode(cursor, shards)?;
        let budget = (SCAN_BUDGET / usize::from(shards)).max(limit);
        let mut runs = Vec::with_capacity(positions.len());
        let mut ends = Vec::with_capacity(positions.len());
        let mut scanned = 0;
        for (shard, pos) in (0..shards).zip(&positions) {
            let Some(max) = pos.max_score() else {
                runs.push(VecDeque::new());
                ends.push(None);
                continue;
            };
            let (rows, last, looked) = self
                .on(shard)
                .browse_raw(&max, limit, budget, filter)
                .await?;
            scanned += looked;
            runs.push(rows.into());
            ends.push(last);
        }
        let items = shards::merge(&mut runs, &mut positions, limit);
        // A shard whose matches were all taken goes on from where its scan stopped.
        for ((pos, run), end) in positions.iter_mut().zip(&runs).zip(ends) {
            if run.is_empty() && *pos != shards::Pos::End {
                *pos = end.map_or(shards::Pos::End, shards::Pos::After);
            }
        }
        let next_cursor = positions
            .iter()
            .any(|p| *p != shards::Pos::End)
            .then(|| shards::encode(&positions));
        Ok(FilteredPage {
            items,
            next_cursor,
            scanned,
        })
    }

    /// One shard's filtered scan from `max`: the matches with their seqs, the seq where
    /// the scan stopped (`None`: the end of the shard's DLQ) and how many ids it looked at.
    async fn browse_raw(
        &self,
        max: &str,
        limit: usize,
        budget: usize,
        filter: &Filter,
    ) -> Result<(Vec<(u64, ListedItem)>, Option<u64>, u64)> {
        let job = filter.job_id.map(|j| j.to_string()).unwrap_or_default();
        let budget = budget.to_string();
        let args = [max, &limit.to_string(), &budget, filter.kind.as_str(), &job];
        let mut flat: Vec<Option<String>> = self.run(&BROWSE, &[], &args).await?;
        let scanned = flat
            .pop()
            .flatten()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| DlqError::Protocol("browse: no scan count".into()))?;
        let last = flat
            .pop()
            .ok_or_else(|| DlqError::Protocol("browse: no last seq".into()))?;
        let mut rows = Vec::new();
        for row in parse_rows(flat)? {
            rows.push((parse_seq(row.extra.as_deref())?, row.fields.decode()));
        }
        let last = match last {
            Some(seq) => Some(parse_seq(Some(&seq))?),
            None => None,
        };
        Ok((rows, last, scanned))
    }
}
