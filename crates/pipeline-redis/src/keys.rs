//! Key naming for a whole queue family: the work queue's keys and the DLQ's.
//!
//! Every key of a family starts with `P{family}` (prefix plus Redis Cluster hash tag), so all
//! of them hash to one slot and any script touching several of them also runs on a cluster.

/// Key names of one queue family (`P{family}:...`).
///
/// This crate owns the naming for the family; `work-queue` and `dlq-core` both take their
/// keys from here so the two cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FamilyKeys {
    prefix: String,
    family: String,
}

impl FamilyKeys {
    /// Keys of `family` under `prefix` (for example `"pipeline:"` and `"scrape"`).
    pub fn new(prefix: &str, family: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            family: family.to_owned(),
        }
    }

    /// The family (queue kind) name, e.g. `scrape`.
    pub fn family(&self) -> &str {
        &self.family
    }

    /// The configured prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P{family}`: the base of every key below (prefix plus hash tag).
    pub fn tag(&self) -> String {
        format!("{}{{{}}}", self.prefix, self.family)
    }

    /// `P{family}:ready`: LIST of message ids; producers LPUSH, consumers RPOP (FIFO).
    pub fn ready(&self) -> String {
        format!("{}:ready", self.tag())
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
    /// (`order, time, due, parked, seq, dropped, ready`). Scripts that embed
    /// `dlq_core::LUA_PUSH_FN` should pass these as their first KEYS so a cluster client routes
    /// the call to the family's slot; per-item keys are derived from the tag inside Lua.
    pub fn dlq_script_keys(&self) -> [String; 7] {
        [
            self.dlq_order(),
            self.dlq_time(),
            self.dlq_due(),
            self.dlq_parked(),
            self.dlq_seq(),
            self.dlq_dropped(),
            self.ready(),
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
    }
}
