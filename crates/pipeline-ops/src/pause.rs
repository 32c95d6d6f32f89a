//! Pausing a family: a flag in Redis (`P{family}:paused`, in the family's hash slot) that
//! the worker runner reads before each reserve. A paused worker reserves nothing new; what
//! it already holds finishes and settles as usual. The flag holds who paused the family and
//! when, so every screen can say so.

use chrono::{DateTime, Utc};
use dlq_core::FamilyKeys;
use serde::{Deserialize, Serialize};

use crate::{Family, Services};

/// Who paused a family, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    /// Who asked (`api`, `cli`, `console`).
    pub by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// The flag's key for a family.
pub fn key(keys: &FamilyKeys) -> String {
    format!("{}:paused", keys.tag())
}

/// Whether the family `keys` names is paused, and by whom. A flag that does not parse
/// still counts as paused (someone set it on purpose), attributed to `unknown`.
///
/// # Errors
/// Redis failures.
pub async fn state(
    pool: &dlq_core::RedisPool,
    keys: &FamilyKeys,
) -> redis::RedisResult<Option<Paused>> {
    let mut con = pool.get();
    let raw: Option<String> = redis::cmd("GET")
        .arg(key(keys))
        .query_async(&mut con)
        .await?;
    Ok(raw.map(|r| {
        serde_json::from_str(&r).unwrap_or(Paused {
            by: "unknown".into(),
            at: DateTime::<Utc>::UNIX_EPOCH,
        })
    }))
}

/// Pauses `family` (again: the first pause's record is kept). Returns the flag as stored.
///
/// # Errors
/// Redis failures.
pub async fn pause(
    services: &Services,
    family: Family,
    by: pipeline_store::Actor,
) -> redis::RedisResult<Paused> {
    let keys = services.queue(family).keys();
    let flag = Paused {
        by: by.as_str().to_owned(),
        at: Utc::now(),
    };
    let json = serde_json::to_string(&flag).expect("a Paused always serialises");
    let mut con = services.redis.get();
    let _: () = redis::cmd("SET")
        .arg(key(keys))
        .arg(json)
        .arg("NX")
        .query_async(&mut con)
        .await?;
    tracing::info!(family = family.as_str(), by = by.as_str(), "family paused");
    Ok(state(&services.redis, keys).await?.unwrap_or(flag))
}

/// Resumes `family`. Returns whether it was paused.
///
/// # Errors
/// Redis failures.
pub async fn resume(
    services: &Services,
    family: Family,
    by: pipeline_store::Actor,
) -> redis::RedisResult<bool> {
    let mut con = services.redis.get();
    let n: u64 = redis::cmd("DEL")
        .arg(key(services.queue(family).keys()))
        .query_async(&mut con)
        .await?;
    tracing::info!(
        family = family.as_str(),
        by = by.as_str(),
        was_paused = n == 1,
        "family resumed"
    );
    Ok(n == 1)
}
