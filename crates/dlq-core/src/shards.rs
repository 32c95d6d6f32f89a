//! A DLQ spread over its family's shards: each shard keeps its own DLQ (so dead-lettering
//! and redriving stay one script on one slot), and the reads that span the DLQ (listing,
//! counts, bulk redrive, purge) go over every shard in use. A listing merges the shards
//! newest first; its cursor holds one position per shard, so paging never skips or
//! repeats an item, however the shards' items interleave.

use std::collections::VecDeque;

use crate::error::{DlqError, Result};
use crate::item::ListedItem;

/// Where a listing stands in one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pos {
    /// Nothing of this shard listed yet.
    Start,
    /// Listed down to (and including) this sequence number.
    After(u64),
    /// Every item of this shard listed.
    End,
}

impl Pos {
    /// The `max` bound of a newest-first range from here (`None` at the end).
    pub(crate) fn max_score(self) -> Option<String> {
        match self {
            Self::Start => Some("+inf".to_owned()),
            Self::After(seq) => Some(format!("({seq}")),
            Self::End => None,
        }
    }
}

/// `m` then one position per shard, `.`-separated: `s` (start), `z` (end) or the hex seq
/// (neither marker is a hex digit).
pub(crate) fn encode(positions: &[Pos]) -> String {
    let parts: Vec<String> = positions
        .iter()
        .map(|p| match p {
            Pos::Start => "s".to_owned(),
            Pos::End => "z".to_owned(),
            Pos::After(seq) => format!("{seq:x}"),
        })
        .collect();
    format!("m{}", parts.join("."))
}

/// The positions of a cursor over `shards` shards. A single-shard cursor (`c<hex>`, from
/// before the DLQ had several shards) stands for shard 0; shards the cursor does not name
/// start from their newest item.
pub(crate) fn decode(cursor: Option<&str>, shards: u16) -> Result<Vec<Pos>> {
    let mut positions = vec![Pos::Start; usize::from(shards)];
    let Some(cursor) = cursor else {
        return Ok(positions);
    };
    let bad = || DlqError::InvalidCursor(cursor.to_owned());
    if cursor.starts_with('c') {
        positions[0] = Pos::After(crate::dlq::decode_cursor(cursor)?);
        return Ok(positions);
    }
    let body = cursor.strip_prefix('m').ok_or_else(bad)?;
    let parts: Vec<&str> = body.split('.').collect();
    if parts.len() > usize::from(crate::MAX_SHARDS) {
        return Err(bad());
    }
    for (slot, part) in positions.iter_mut().zip(&parts) {
        *slot = match *part {
            "s" => Pos::Start,
            "z" => Pos::End,
            hex if !hex.is_empty() && hex.len() <= 16 => {
                Pos::After(u64::from_str_radix(hex, 16).map_err(|_| bad())?)
            }
            _ => return Err(bad()),
        };
    }
    Ok(positions)
}

/// Newest-first order of an entry across shards: its `failed_at` (a malformed entry, which
/// has none, sorts as the oldest of its shard's remaining ones).
fn time_of(item: &ListedItem) -> i64 {
    match item {
        // Nanoseconds, as stored: items that failed within one millisecond still sort right.
        ListedItem::Ok(item) => item
            .failed_at
            .timestamp_nanos_opt()
            .unwrap_or_else(|| item.failed_at.timestamp_millis()),
        ListedItem::Malformed(_) => i64::MIN,
    }
}

/// Merges the shards' newest-first runs (`(seq, item)` each) into up to `limit` items,
/// newest first: at each step the newest head among the shards, ties to the lower shard.
/// Each shard's own order is kept. Moves every shard's position to the last item taken
/// from it.
pub(crate) fn merge(
    runs: &mut [VecDeque<(u64, ListedItem)>],
    positions: &mut [Pos],
    limit: usize,
) -> Vec<ListedItem> {
    let mut items = Vec::with_capacity(limit);
    while items.len() < limit {
        let newest = runs
            .iter()
            .enumerate()
            .filter_map(|(i, run)| run.front().map(|(_, item)| (i, time_of(item))))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        let Some((shard, _)) = newest else { break };
        let (seq, item) = runs[shard].pop_front().expect("a head was seen");
        positions[shard] = Pos::After(seq);
        items.push(item);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let positions = vec![Pos::Start, Pos::After(0x1f), Pos::End, Pos::After(0xe)];
        let c = encode(&positions);
        assert_eq!(c, "ms.1f.z.e");
        assert_eq!(decode(Some(&c), 4).unwrap(), positions);
        // More shards than the cursor names: the new ones start from the top.
        assert_eq!(
            decode(Some(&c), 5).unwrap(),
            vec![
                Pos::Start,
                Pos::After(0x1f),
                Pos::End,
                Pos::After(0xe),
                Pos::Start
            ]
        );
        // A cursor of a single-shard listing is shard 0's position.
        assert_eq!(
            decode(Some("c10"), 2).unwrap(),
            vec![Pos::After(16), Pos::Start]
        );
        for bad in ["", "m", "mx", "ms..z", "m-1", "ms.11111111111111111", "zz"] {
            assert!(
                matches!(decode(Some(bad), 2), Err(DlqError::InvalidCursor(_))),
                "{bad}"
            );
        }
    }
}
