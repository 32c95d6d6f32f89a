//! The count of a family's shards in use (`P{family}:shards`), shared by the queue and the
//! DLQ: the queue raises it to its configured count and lowers it when shards are retired;
//! both read every shard below it.

use std::sync::LazyLock;

use redis::Script;

use crate::{FamilyKeys, MAX_SHARDS};

/// Raises the count to ARGV[1] if lower and returns the count (absent means 1).
static RAISE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '1') or 1
local want = tonumber(ARGV[1])
if want > cur then
  redis.call('SET', KEYS[1], want)
  cur = want
end
return cur",
    )
});

/// Sets the count to ARGV[2] if it still is ARGV[1]; returns 1 when it did.
static LOWER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '1') or 1
if cur == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0",
    )
});

fn clamp(n: i64) -> u16 {
    u16::try_from(n.clamp(1, i64::from(MAX_SHARDS))).unwrap_or(1)
}

/// The shards in use of the family `keys` names (1 when nothing was recorded).
///
/// # Errors
/// Redis failures.
pub async fn shards_in_use<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &FamilyKeys,
) -> redis::RedisResult<u16> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(keys.shards_in_use())
        .query_async(conn)
        .await?;
    // A value that is not a number (written by hand) counts as unset, as Lua's `tonumber`
    // reads it in the scripts below.
    Ok(raw
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map_or(1, clamp))
}

/// Raises the count in use to `configured` (never lowers it) and returns the count.
///
/// # Errors
/// Redis failures.
pub async fn raise_shards_in_use<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &FamilyKeys,
    configured: u16,
) -> redis::RedisResult<u16> {
    let n: i64 = RAISE
        .key(keys.shards_in_use())
        .arg(configured.clamp(1, MAX_SHARDS))
        .invoke_async(conn)
        .await?;
    Ok(clamp(n))
}

/// Lowers the count from `from` to `to` unless someone changed it meanwhile; returns whether
/// it did.
///
/// # Errors
/// Redis failures.
pub async fn lower_shards_in_use<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    keys: &FamilyKeys,
    from: u16,
    to: u16,
) -> redis::RedisResult<bool> {
    let done: i64 = LOWER
        .key(keys.shards_in_use())
        .arg(from)
        .arg(to.clamp(1, MAX_SHARDS))
        .invoke_async(conn)
        .await?;
    Ok(done == 1)
}
