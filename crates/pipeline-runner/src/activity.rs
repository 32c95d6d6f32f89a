//! What a runner did, per family and minute, and what it is doing: kept in process memory
//! by an [`Activity`] handle that the process creates and passes to its runner (and to the
//! task that reports it: the pipeline's heartbeat adds the counts to Redis for the
//! console's charts). A handle, not a process-wide static: two runners in one process
//! (tests, an all-in-one binary) each count their own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use pipeline_core::shutdown::{Held, HeldWork};
use serde::Serialize;

use crate::Outcome;

/// Counts of one family in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// Deliveries that succeeded.
    pub processed: u64,
    /// Failed attempts (retried or dead-lettered).
    pub failed: u64,
    /// Deliveries moved to the DLQ.
    pub dead_lettered: u64,
}

impl Minute {
    fn add(&mut self, other: Minute) {
        self.processed += other.processed;
        self.failed += other.failed;
        self.dead_lettered += other.dead_lettered;
    }
}

/// Counts by family and unix minute, not yet reported.
pub type Pending = BTreeMap<(String, i64), Minute>;

/// The current unix minute.
pub fn minute_now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / 60) as i64
}

#[derive(Debug, Default)]
struct Inner {
    /// The deliveries held, by id, for the report of an exit that cuts the drain short.
    held: HeldWork,
    pending: Mutex<Pending>,
    in_flight: Mutex<BTreeMap<String, i64>>,
    /// The runner of this process: its family and concurrency.
    runner: Mutex<Option<(String, u64)>>,
    /// The families last seen paused.
    paused: Mutex<Vec<String>>,
}

/// One process's (or one runner's) activity. Cheap to clone; clones share the state.
#[derive(Debug, Clone, Default)]
pub struct Activity(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves counts that are still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Activity {
    /// Counts one settled delivery of `family`.
    pub fn record(&self, family: &str, outcome: Outcome) {
        let mut pending = lock(&self.0.pending);
        let m = pending
            .entry((family.to_owned(), minute_now()))
            .or_default();
        match outcome {
            Outcome::Succeeded => m.processed += 1,
            Outcome::RetryScheduled => m.failed += 1,
            Outcome::DeadLettered => {
                m.failed += 1;
                m.dead_lettered += 1;
            }
            // The message comes back (lease lost, an ack or settle that failed): nothing
            // happened to it yet that the charts count.
            Outcome::LeaseLost | Outcome::AckFailed | Outcome::SettleFailed => {}
        }
    }

    /// Takes the counts recorded since the last take (to report them).
    pub fn take_pending(&self) -> Pending {
        std::mem::take(&mut *lock(&self.0.pending))
    }

    /// Puts counts back that could not be reported, to go with the next take.
    pub fn restore_pending(&self, taken: Pending) {
        let mut pending = lock(&self.0.pending);
        for (k, m) in taken {
            pending.entry(k).or_default().add(m);
        }
    }

    /// Marks delivery `id` of `family` in progress (and held) until the guard is dropped.
    pub fn in_flight(&self, family: &str, id: &str) -> InFlight {
        *lock(&self.0.in_flight)
            .entry(family.to_owned())
            .or_default() += 1;
        InFlight {
            activity: self.clone(),
            family: family.to_owned(),
            _held: self.0.held.hold(family, id),
        }
    }

    /// The deliveries held now, for the process's exit (see
    /// `pipeline_core::shutdown::finish_runtime`).
    pub fn held_work(&self) -> &HeldWork {
        &self.0.held
    }

    /// Deliveries in progress, over every family.
    pub fn in_flight_now(&self) -> u64 {
        lock(&self.0.in_flight)
            .values()
            .map(|n| (*n).max(0) as u64)
            .sum()
    }

    /// Records that a runner of `family` with `concurrency` slots started.
    pub fn runner_started(&self, family: &str, concurrency: usize) {
        *lock(&self.0.runner) = Some((family.to_owned(), concurrency as u64));
    }

    /// The runner, if one started: family and concurrency.
    pub fn runner(&self) -> Option<(String, u64)> {
        lock(&self.0.runner).clone()
    }

    /// Sets the families seen paused (the runner reserves nothing for them).
    pub fn set_paused(&self, families: Vec<String>) {
        *lock(&self.0.paused) = families;
    }

    /// Whether `family` was paused at the last look.
    pub fn is_paused(&self, family: &str) -> bool {
        lock(&self.0.paused).iter().any(|f| f == family)
    }
}

/// See [`Activity::in_flight`].
#[derive(Debug)]
pub struct InFlight {
    activity: Activity,
    family: String,
    _held: Held,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.activity.0.in_flight).get_mut(&self.family) {
            *n -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_handles_do_not_see_each_other() {
        let (a, b) = (Activity::default(), Activity::default());
        a.record("scrape", Outcome::Succeeded);
        a.record("scrape", Outcome::DeadLettered);
        a.set_paused(vec!["scrape".into()]);
        let _busy = a.in_flight("scrape", "m1");
        assert!(b.take_pending().is_empty());
        assert!(!b.is_paused("scrape"));
        assert_eq!(b.in_flight_now(), 0);
        assert_eq!(a.in_flight_now(), 1);
        assert_eq!(a.held_work().snapshot()["scrape"], ["m1"]);
        assert!(b.held_work().snapshot().is_empty());
        let taken = a.take_pending();
        let m = taken.values().next().copied().unwrap_or_default();
        assert_eq!((m.processed, m.failed, m.dead_lettered), (1, 1, 1));
        a.restore_pending(taken);
        assert_eq!(a.take_pending().len(), 1);
        assert!(a.is_paused("scrape"));
    }
}
