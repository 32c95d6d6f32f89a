//! The pipeline's Redis foundation, used by every crate that talks to Redis.
//!
//! - [`RedisPool`]: the process's connections, to one Redis or to a Redis Cluster, chosen
//!   by configuration (`redis.cluster_nodes`: empty means the single `redis.url`). Shared
//!   commands go over [`RedisConn`]s; blocking waits over a [`WaitConn`] of their own.
//! - [`FamilyKeys`]: the key layout of a queue family (message hashes, ready list, leases,
//!   delayed retries, wake-up marker, DLQ indexes and items), all under one hash tag so
//!   every script of a family runs on one cluster slot.
//! - [`LUA_PRELUDE`]: the Lua functions every script starts with (`now_ms`, `int`, and
//!   `msg_write`, the one writer of a message hash).

mod admin;
mod keys;
mod pool;
mod shards;
mod target;

pub use keys::{FamilyKeys, MAX_SHARDS, shard_of};
pub use pool::{CheckoutError, PoolBuildError, RedisConn, RedisPool, WaitConn, is_unreachable};
pub use shards::{lower_shards_in_use, raise_shards_in_use, shards_in_use};
pub use target::{RedisTarget, test_cluster_nodes};

/// The Lua prelude of every pipeline script: `now_ms()` (the Redis clock, in ms), `int(n)`
/// (an integer as text, never in exponent notation) and `msg_write(key, body, redrives,
/// now)` (a fresh message hash: the one place its fields are laid out). Prepend it to a
/// script's body.
pub const LUA_PRELUDE: &str = include_str!("lua/prelude.lua");
