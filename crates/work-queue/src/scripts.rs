//! The Lua scripts: every state change that must not split is exactly one of them.
//!
//! Scripts receive the family's tag (`P{family}`) and build message key names from it, as
//! BullMQ does: every key carries the same hash tag, so each script touches one Redis
//! Cluster slot. The keys a script can name up front are passed as KEYS.

use std::sync::LazyLock;

use redis::Script;

/// The prelude shared with dlq-core's scripts (`now_ms`, `int`, `msg_write`).
const COMMON: &str = pipeline_redis::LUA_PRELUDE;

/// All scripts, compiled (hashed) once per process.
pub(crate) struct Scripts {
    pub(crate) enqueue: Script,
    pub(crate) reserve: Script,
    pub(crate) ack: Script,
    pub(crate) renew: Script,
    pub(crate) retry: Script,
    pub(crate) dead_letter: Script,
    pub(crate) rewake: Script,
    pub(crate) lane_set: Script,
    pub(crate) lane_list: Script,
    pub(crate) repair: Script,
}

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    enqueue: with_prelude(include_str!("lua/enqueue.lua")),
    reserve: with_prelude(include_str!("lua/reserve.lua")),
    ack: with_prelude(include_str!("lua/ack.lua")),
    renew: with_prelude(include_str!("lua/renew.lua")),
    retry: with_prelude(include_str!("lua/retry.lua")),
    // The DLQ push is dlq-core's own Lua function, so there is one copy of that logic.
    dead_letter: with_prelude(&format!(
        "{}\n{}",
        crate::dlq::LUA_PUSH_FN,
        include_str!("lua/dead_letter.lua")
    )),
    rewake: Script::new(include_str!("lua/rewake.lua")),
    lane_set: with_prelude(include_str!("lua/lane_set.lua")),
    lane_list: with_prelude(include_str!("lua/lane_list.lua")),
    repair: with_prelude(include_str!("lua/repair.lua")),
});
