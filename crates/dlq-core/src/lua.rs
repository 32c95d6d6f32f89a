//! The Lua scripts. Every multi-step change of the DLQ is one script, so a crash or a
//! concurrent caller can never observe (or cause) half of it.

use std::sync::LazyLock;

use redis::Script;

use crate::error::{DlqError, Result};
use crate::item::StoredFields;

/// The dlq-core Lua library, which defines
/// `local function dlq_push(tag, id, item_json, payload, failed_at_ms, retry_count, transient, max_items)`
/// (returning `{seq, replaced, {dropped ids}}`) and the functions it needs.
///
/// It uses [`pipeline_redis::LUA_PRELUDE`], which must come first. A script that
/// dead-letters a message (work-queue's fail script) prepends both to its body and calls `dlq_push` with the arguments of [`crate::EncodedItem::push_argv`] after
/// the tag (`P{family}`, see [`crate::FamilyKeys::tag`]); it should declare
/// [`crate::FamilyKeys::dlq_script_keys`] among its KEYS. The caller should log the dropped
/// ids when a retention bound is set (they are also counted in Redis).
pub const LUA_PUSH_FN: &str = include_str!("lua/lib.lua");

/// All scripts, each the library followed by its body. Hashes are computed once.
pub(crate) struct Scripts {
    pub push: Script,
    pub list: Script,
    pub by_id: Script,
    pub purge: Script,
    pub redrive_batch: Script,
    pub redrive_due: Script,
    pub release: Script,
}

fn with_lib(body: &str) -> Script {
    Script::new(&format!(
        "{}\n{LUA_PUSH_FN}\n{body}",
        pipeline_redis::LUA_PRELUDE
    ))
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    push: with_lib(include_str!("lua/push.lua")),
    list: with_lib(include_str!("lua/list.lua")),
    by_id: with_lib(include_str!("lua/by_id.lua")),
    purge: with_lib(include_str!("lua/purge.lua")),
    redrive_batch: with_lib(include_str!("lua/redrive_batch.lua")),
    redrive_due: with_lib(include_str!("lua/redrive_due.lua")),
    release: with_lib(include_str!("lua/release.lua")),
});

/// One reply row: `id, status, item, payload, parked_at, extra`.
#[derive(Debug)]
pub(crate) struct Row {
    pub status: String,
    pub fields: StoredFields,
    pub extra: Option<String>,
}

const ROW_WIDTH: usize = 6;

/// Splits a flat script reply into rows.
pub(crate) fn parse_rows(flat: Vec<Option<String>>) -> Result<Vec<Row>> {
    if !flat.len().is_multiple_of(ROW_WIDTH) {
        return Err(DlqError::Protocol(format!(
            "reply of {} values is not a multiple of {ROW_WIDTH}",
            flat.len()
        )));
    }
    let mut rows = Vec::with_capacity(flat.len() / ROW_WIDTH);
    let mut it = flat.into_iter();
    while let (Some(id), Some(status), Some(item), Some(payload), Some(parked_at), Some(extra)) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) {
        let (Some(id), Some(status)) = (id, status) else {
            return Err(DlqError::Protocol("row without id or status".into()));
        };
        rows.push(Row {
            status,
            fields: StoredFields {
                id,
                item,
                payload,
                parked_at,
            },
            extra,
        });
    }
    Ok(rows)
}
