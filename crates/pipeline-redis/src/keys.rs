//! Key naming for a whole queue family: the work queue's keys and the DLQ's, per shard.
//!
//! A family is spread over `queue.shards` *shards*. Every key of shard 0 starts with
//! `P{family}` and every key of shard `i > 0` with `P{family:i}` (prefix plus Redis Cluster
//! hash tag), so each shard's keys hash to one slot and any script touching several of them
//! also runs on a cluster, while different shards land on different slots (and so, on a
//! cluster, spread over the masters). Shard 0 keeps the unsharded names, so a system that
//! never sets `queue.shards` (or goes from 1 to more) keeps its data where it was.
//!
//! A message lives in the shard [`shard_of`] its id names among the shards in use, and its
//! DLQ item in the shard its message was in: every script of the queue and the DLQ stays
//! within one shard.

/// The most shards a family can be spread over.
pub const MAX_SHARDS: u16 = 64;

/// The shard (`0..shards`) of a message id: FNV-1a (64-bit) of the id's bytes, modulo the
/// shard count. Stable across processes, versions and platforms, so every producer puts an id
/// in the same shard and a source is queued at most once per family.
pub fn shard_of(id: &str, shards: u16) -> u16 {
    if shards <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(shards)) as u16
}

/// Key names of one queue family (`P{family}:...`).
///
/// This crate owns the naming for the family; `work-queue` and `dlq-core` both take their
/// keys from here so the two cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FamilyKeys {
    prefix: String,
    family: String,
    shard: u16,
}

impl FamilyKeys {
    /// Keys of `family` under `prefix` (for example `"pipeline:"` and `"scrape"`): shard 0.
    pub fn new(prefix: &str, family: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            family: family.to_owned(),
            shard: 0,
        }
    }

    /// The keys of shard `index` of the same family.
    pub fn shard(&self, index: u16) -> Self {
        Self {
            shard: index,
            ..self.clone()
        }
    }

    /// Which shard these keys name.
    pub fn shard_index(&self) -> u16 {
        self.shard
    }

    /// `P{family}:shards`: how many shards are in use (a string holding the count; absent
    /// means 1). Every queue handle raises it to its configured `queue.shards`; a worker
    /// configured with fewer lowers it once the shards above its count are empty. Workers
    /// reserve from, and the DLQ reads, every shard in use. Lives in shard 0's slot.
    pub fn shards_in_use(&self) -> String {
        format!("{}{{{}}}:shards", self.prefix, self.family)
    }

    /// The family (queue kind) name, e.g. `scrape`.
    pub fn family(&self) -> &str {
        &self.family
    }

    /// The configured prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P{family}` (shard 0) or `P{family:i}` (shard `i`): the base of every key below
    /// (prefix plus hash tag).
    pub fn tag(&self) -> String {
        if self.shard == 0 {
            format!("{}{{{}}}", self.prefix, self.family)
        } else {
            format!("{}{{{}:{}}}", self.prefix, self.family, self.shard)
        }
    }

    /// `P{family}:ready`: the LIST of ready message ids of versions before lanes. Nothing
    /// writes it any more; each reserve moves up to 256 of its ids into the default lane, so
    /// an upgraded system loses nothing queued before the upgrade.
    pub fn ready(&self) -> String {
        format!("{}:ready", self.tag())
    }

    /// `P{family}:rota`: ZSET lane -> virtual time of its next turn; the lanes with ready
    /// work that may be served now (see work-queue's README, "Fair share").
    pub fn rota(&self) -> String {
        format!("{}:rota", self.tag())
    }

    /// `P{family}:lane:<lane>`: ZSET id -> rank, one lane's ready messages (lowest first).
    pub fn lane(&self, lane: &str) -> String {
        format!("{}:lane:{lane}", self.tag())
    }

    /// `P{family}:held`: ZSET lane -> ms when its start rate lets it start again.
    pub fn held(&self) -> String {
        format!("{}:held", self.tag())
    }

    /// `P{family}:capped`: SET of lanes with ready work and their cap of messages in flight.
    pub fn capped(&self) -> String {
        format!("{}:capped", self.tag())
    }

    /// `P{family}:lanes`: HASH of the lanes' state: `n` (ready messages in every lane), `v`
    /// (the virtual time), and per lane `<lane>|seq`, `|last`, `|busy`, `|tat`.
    pub fn lanes(&self) -> String {
        format!("{}:lanes", self.tag())
    }

    /// `P{family}:lanecfg`: HASH of the lanes' settings, per lane `<lane>|w` (weight),
    /// `|cap` (messages in flight), `|every` (ms between starts), `|burst`; and `|lead`.
    pub fn lane_cfg(&self) -> String {
        format!("{}:lanecfg", self.tag())
    }

    /// `P{family}:leases`: ZSET id -> lease deadline (ms since epoch, Redis clock).
    pub fn leases(&self) -> String {
        format!("{}:leases", self.tag())
    }

    /// `P{family}:delayed`: ZSET id -> due time in ms (retry backoff).
    pub fn delayed(&self) -> String {
        format!("{}:delayed", self.tag())
    }

    /// `P{family}:wake`: ZSET holding at most one member, the wake-up marker. Whatever makes
    /// work ready (enqueue, redrive, a retry scheduled, a first lease taken) adds it; a
    /// waiting worker takes it with a blocking `BZPOPMIN` and reserves.
    pub fn wake(&self) -> String {
        format!("{}:wake", self.tag())
    }

    /// `P{family}:token_seq`: counter giving globally unique lease tokens.
    pub fn token_seq(&self) -> String {
        format!("{}:token_seq", self.tag())
    }

    /// `P{family}:msg:<id>`: HASH of one message (body, token, deliveries, attempts,
    /// redrives, enqueued_at).
    pub fn msg(&self, id: &str) -> String {
        format!("{}:msg:{id}", self.tag())
    }

    /// `P{family}:dlq:order`: ZSET id -> insertion sequence; newest first listing, cursor,
    /// retention.
    pub fn dlq_order(&self) -> String {
        format!("{}:dlq:order", self.tag())
    }

    /// `P{family}:dlq:time`: ZSET id -> failed_at in ms; purge by age.
    pub fn dlq_time(&self) -> String {
        format!("{}:dlq:time", self.tag())
    }

    /// `P{family}:dlq:due`: ZSET id -> earliest automatic redrive time in ms; holds exactly
    /// the transient, unparked items.
    pub fn dlq_due(&self) -> String {
        format!("{}:dlq:due", self.tag())
    }

    /// `P{family}:dlq:parked`: ZSET id -> parked_at in ms.
    pub fn dlq_parked(&self) -> String {
        format!("{}:dlq:parked", self.tag())
    }

    /// `P{family}:dlq:seq`: counter handing out insertion sequence numbers.
    pub fn dlq_seq(&self) -> String {
        format!("{}:dlq:seq", self.tag())
    }

    /// `P{family}:dlq:dropped`: counter of items dropped by the retention setting.
    pub fn dlq_dropped(&self) -> String {
        format!("{}:dlq:dropped", self.tag())
    }

    /// `P{family}:dlq:item:<id>`: HASH of one DLQ item (item JSON, payload, indexes' inputs).
    pub fn dlq_item(&self, id: &str) -> String {
        format!("{}:dlq:item:{id}", self.tag())
    }

    /// The fixed keys every DLQ script declares, in the order the Lua library expects
    /// (`order, time, due, parked, seq, dropped, rota, delayed, wake`). Scripts that embed
    /// `dlq_core::LUA_PUSH_FN` should pass these as their first KEYS so a cluster client routes
    /// the call to the family's slot; per-item keys are derived from the tag inside Lua.
    pub fn dlq_script_keys(&self) -> [String; 9] {
        [
            self.dlq_order(),
            self.dlq_time(),
            self.dlq_due(),
            self.dlq_parked(),
            self.dlq_seq(),
            self.dlq_dropped(),
            self.rota(),
            self.delayed(),
            self.wake(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_family_hash_tag() {
        let k = FamilyKeys::new("p:", "scrape");
        assert_eq!(k.tag(), "p:{scrape}");
        assert_eq!(k.ready(), "p:{scrape}:ready");
        assert_eq!(k.msg("a"), "p:{scrape}:msg:a");
        assert_eq!(k.wake(), "p:{scrape}:wake");
        assert_eq!(k.dlq_item("a"), "p:{scrape}:dlq:item:a");
        for key in k.dlq_script_keys() {
            assert!(key.starts_with("p:{scrape}:"), "{key}");
        }
        assert_eq!(k.shards_in_use(), "p:{scrape}:shards");
    }

    #[test]
    fn shards_above_zero_have_their_own_tag() {
        let k = FamilyKeys::new("p:", "scrape").shard(2);
        assert_eq!(k.tag(), "p:{scrape:2}");
        assert_eq!(k.ready(), "p:{scrape:2}:ready");
        assert_eq!(k.dlq_item("a"), "p:{scrape:2}:dlq:item:a");
        assert_eq!(k.family(), "scrape");
        // The count of shards in use stays with shard 0, whichever shard asks.
        assert_eq!(k.shards_in_use(), "p:{scrape}:shards");
        assert_eq!(k.shard(0), FamilyKeys::new("p:", "scrape"));
    }

    #[test]
    fn ids_spread_over_the_shards_and_stay_put() {
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0);
        let mut counts = [0u32; 3];
        for i in 0..3000 {
            let id = format!("7d0c2a52-4d37-4a8e-9f6e-{i:012}");
            let s = shard_of(&id, 3);
            assert_eq!(s, shard_of(&id, 3), "stable");
            counts[usize::from(s)] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread: {counts:?}");
        }
        // Fixed values: the function must never change (ids already queued would move).
        assert_eq!(shard_of("a", 3), (0xaf63_dc4c_8601_ec8c_u64 % 3) as u16);
    }
}
