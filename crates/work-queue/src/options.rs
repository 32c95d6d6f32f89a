//! Queue settings and the retry schedule.

use std::time::Duration;

use rand::Rng;

/// Settings of one [`WorkQueue`](crate::WorkQueue) handle.
///
/// Every replica of a worker should use the same values for one family, except
/// `worker_id`, which names the replica in DLQ items and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// How long a reserved message stays invisible to other workers. A holder that needs
    /// longer must [`renew`](crate::WorkQueue::renew) before it runs out; a holder that dies
    /// loses the message to the next worker this long after its last renewal.
    pub visibility_timeout: Duration,
    /// The longest [`reserve_wait`](crate::WorkQueue::reserve_wait) waits for work before it
    /// returns empty-handed, so a worker loop notices shutdown at least this often.
    pub block_timeout: Duration,
    /// Failed attempts after which a transient failure goes to the DLQ instead of being
    /// retried (1 means "never retry").
    pub max_attempts: u32,
    /// Backoff before the first retry; it doubles with every failed attempt.
    pub backoff_base: Duration,
    /// Upper bound of one backoff.
    pub backoff_cap: Duration,
    /// Names this process in DLQ items (`worker_id`) and logs.
    pub worker_id: String,
    /// Retention bound passed to the DLQ push (`None`: keep every item). The DLQ counts and
    /// logs whatever a bound makes it drop; nothing is trimmed silently.
    pub dlq_max_items: Option<u64>,
    /// Shards the family's messages are spread over (`1..=64`): ids go to
    /// [`shard_of`](crate::shard_of) of this count, and workers reserve from every shard in
    /// use. Every replica of every process should use the same value; see the crate's
    /// README ("Shards") for changing it on a running system.
    pub shards: u16,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            block_timeout: Duration::from_secs(2),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            worker_id: default_worker_id(),
            dlq_max_items: None,
            shards: 1,
        }
    }
}

/// `<hostname>-<pid>`: unique per process on a host, and a pod name under Kubernetes.
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

impl QueueOptions {
    /// The wait before the retry that follows failed attempt number `attempt` (1-based):
    /// exponential (`base * 2^(attempt-1)`, capped) with *equal jitter*, i.e. a uniform
    /// draw from the upper half of that step.
    ///
    /// Equal rather than full jitter keeps a floor under every wait, so a failing
    /// dependency gets at least half the intended pause, while the random half still
    /// spreads a burst of failures over time. The schedule is a pure function of the attempt
    /// number (which lives in Redis), so it needs no per-message backoff state in the
    /// worker and survives a crash.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let step = self.backoff_step(attempt);
        let half = step / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let jitter = if jitter_ms == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
        };
        (step - half) + jitter
    }

    /// The un-jittered step for `attempt`: `min(cap, base * 2^(attempt-1))`.
    pub fn backoff_step(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        self.backoff_base
            .checked_mul(1u32 << exp)
            .map_or(self.backoff_cap, |d| d.min(self.backoff_cap))
    }

    /// Checks the values a queue cannot work with.
    pub(crate) fn validate(&self) -> crate::Result<()> {
        let bad = |msg: &str| Err(crate::QueueError::InvalidArgument(msg.to_owned()));
        if self.visibility_timeout < Duration::from_millis(10) {
            return bad("visibility_timeout must be at least 10 ms");
        }
        if self.block_timeout.is_zero() {
            return bad("block_timeout must be positive");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1");
        }
        if self.backoff_cap < self.backoff_base {
            return bad("backoff_cap must not be below backoff_base");
        }
        if !(1..=crate::MAX_SHARDS).contains(&self.shards) {
            return bad("shards must be between 1 and 64");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> QueueOptions {
        QueueOptions {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(1),
            ..QueueOptions::default()
        }
    }

    #[test]
    fn steps_double_then_cap() {
        let o = opts();
        let steps: Vec<u128> = (1..=6).map(|a| o.backoff_step(a).as_millis()).collect();
        assert_eq!(steps, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(o.backoff_step(u32::MAX), Duration::from_secs(1));
        assert_eq!(o.backoff_step(0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_in_upper_half_of_step() {
        let o = opts();
        for attempt in 1..=8 {
            let step = o.backoff_step(attempt);
            for _ in 0..200 {
                let d = o.backoff(attempt);
                assert!(
                    d >= step / 2 && d <= step,
                    "{d:?} outside [{:?}, {step:?}]",
                    step / 2
                );
            }
        }
    }

    #[test]
    fn validation_rejects_nonsense() {
        let mut o = opts();
        o.max_attempts = 0;
        assert!(o.validate().is_err());
        let mut o = opts();
        o.backoff_cap = Duration::from_millis(1);
        assert!(o.validate().is_err());
        for bad in [0, 65] {
            let o = QueueOptions {
                shards: bad,
                ..opts()
            };
            assert!(o.validate().is_err(), "{bad} shards");
        }
        assert!(opts().validate().is_ok());
    }
}
