//! The brake on key guessing: wrong keys are counted per client address, and an address
//! that has sent too many *different* wrong keys has its key checks refused for a while
//! that doubles with every further wrong key.
//!
//! - **What counts.** A wrong key that this address has not sent recently (the last
//!   [`RECENT_KEYS`] of them are remembered as keyed 64-bit hashes, never as text). Guessing
//!   means trying new keys; a client stuck with a stale key, or a tester that always sends
//!   the same invalid value, keeps getting its plain 401 and is never blocked. A missing
//!   key is no guess and does not count.
//! - **The brake.** After [`FREE_FAILURES`] distinct wrong keys, the address is blocked for
//!   [`FIRST_BLOCK`], then twice as long after each further one, up to [`MAX_BLOCK`]. While
//!   blocked, *no* key from that address is checked, the right one included: the answer is
//!   429 with `Retry-After`. Were the right key let through, the block would tell a guesser
//!   which guess was right and slow nothing down. Requests from other addresses, and
//!   console sessions already signed in, are untouched; so the real key keeps working
//!   everywhere except at the guessing address.
//! - **Forgetting.** An address with no wrong key for [`FORGET_AFTER`] (and no block
//!   running) is forgotten. At most [`MAX_CLIENTS`] addresses are tracked; past that the
//!   one whose last wrong key is oldest is dropped, so memory stays bounded whatever the
//!   number of addresses.
//! - **Addresses.** The TCP peer's address. IPv6 clients are counted per /64, the block an
//!   ISP hands one customer, so rotating through one's own addresses gains nothing. Behind
//!   a reverse proxy every client has the proxy's address, so one guesser blocks key
//!   checks for everyone behind it (sessions already open keep working); the proxy's own
//!   rate limit is then the better place for the brake.
//!
//! The check and the bookkeeping happen under one lock, in a few microseconds, so parallel
//! guesses cannot slip past the count. A request from an address with no record (the
//! common case) takes an atomic read and no lock when its key is right.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Distinct wrong keys an address may send before it is blocked.
pub const FREE_FAILURES: u32 = 10;
/// The first block.
pub const FIRST_BLOCK: Duration = Duration::from_secs(1);
/// The longest block.
pub const MAX_BLOCK: Duration = Duration::from_secs(15 * 60);
/// How long an address's record outlives its last wrong key.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Most addresses tracked at once.
pub const MAX_CLIENTS: usize = 10_000;
/// Distinct wrong keys remembered per address (a repeat of one of them does not count).
pub const RECENT_KEYS: usize = 16;

/// Who a record is about: an IPv4 address, an IPv6 /64, or clients whose address the
/// server was not told (a router mounted without connection info), who share one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// One IPv4 address (IPv4-mapped IPv6 addresses included).
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
    /// No address known.
    Unknown,
}

impl Client {
    /// The record `addr` falls under.
    pub fn of(addr: Option<IpAddr>) -> Self {
        match addr.map(|a| a.to_canonical()) {
            Some(IpAddr::V4(v4)) => Self::V4(u32::from(v4)),
            Some(IpAddr::V6(v6)) => Self::V6((u128::from(v6) >> 64) as u64),
            None => Self::Unknown,
        }
    }
}

/// What the brake says about one key check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The key is right.
    Accepted,
    /// The key is wrong. `failures` counts this address's distinct wrong keys so far;
    /// `blocked_for` is set when this one started a block.
    Refused {
        /// Distinct wrong keys from this address within its record.
        failures: u32,
        /// The block this wrong key started, if it did.
        blocked_for: Option<Duration>,
    },
    /// The address is blocked; its key was not checked.
    Throttled {
        /// How long until it may try again.
        retry_after: Duration,
    },
}

#[derive(Debug)]
struct Record {
    /// Hashes of the last distinct wrong keys, oldest first.
    recent: Vec<u64>,
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// The per-address record of wrong keys ([module docs](self)).
#[derive(Debug)]
pub struct Throttle {
    records: Mutex<HashMap<Client, Record>>,
    /// How many records there are, readable without the lock.
    tracked: AtomicUsize,
    /// Keys the wrong-key hashes (a fresh one per process, so the hashes are worthless
    /// outside it).
    hasher: RandomState,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            records: Mutex::new(HashMap::new()),
            tracked: AtomicUsize::new(0),
            hasher: RandomState::new(),
        }
    }
}

/// The block after `failures` distinct wrong keys: none below [`FREE_FAILURES`], then
/// [`FIRST_BLOCK`] doubled per further wrong key, at most [`MAX_BLOCK`].
pub fn block_after(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(FREE_FAILURES)?;
    let factor = 1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX);
    Some(FIRST_BLOCK.saturating_mul(factor).min(MAX_BLOCK))
}

impl Throttle {
    /// Checks `candidate` from `client` at `now`: blocked addresses are refused without a
    /// look at the key; otherwise `is_right` decides, and a wrong key is recorded.
    pub fn check(
        &self,
        client: Client,
        now: Instant,
        candidate: &[u8],
        is_right: impl Fn(&[u8]) -> bool,
    ) -> Verdict {
        // Nobody has a record: a right key needs no lock. (A record made meanwhile can
        // only be a first wrong key, which blocks nobody yet.)
        if self.tracked.load(Ordering::Acquire) == 0 && is_right(candidate) {
            return Verdict::Accepted;
        }
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = records.get(&client).and_then(|r| r.blocked_until)
            && until > now
        {
            return Verdict::Throttled {
                retry_after: until - now,
            };
        }
        if is_right(candidate) {
            return Verdict::Accepted;
        }
        let hash = self.hasher.hash_one(candidate);
        let verdict = Self::record(&mut records, client, now, hash);
        self.tracked.store(records.len(), Ordering::Release);
        verdict
    }

    /// Records a wrong key (hashed) from `client`.
    fn record(
        records: &mut HashMap<Client, Record>,
        client: Client,
        now: Instant,
        hash: u64,
    ) -> Verdict {
        if let Some(r) = records.get(&client)
            && r.blocked_until.is_none_or(|u| u <= now)
            && now.saturating_duration_since(r.last_failure) >= FORGET_AFTER
        {
            records.remove(&client);
        }
        if !records.contains_key(&client) && records.len() >= MAX_CLIENTS {
            Self::make_room(records, now);
        }
        let r = records.entry(client).or_insert_with(|| Record {
            recent: Vec::with_capacity(1),
            failures: 0,
            last_failure: now,
            blocked_until: None,
        });
        r.last_failure = now;
        if r.recent.contains(&hash) {
            // The same wrong key again: no new guess, no new count.
            return Verdict::Refused {
                failures: r.failures,
                blocked_for: None,
            };
        }
        if r.recent.len() == RECENT_KEYS {
            r.recent.remove(0);
        }
        r.recent.push(hash);
        r.failures = r.failures.saturating_add(1);
        let blocked_for = block_after(r.failures);
        r.blocked_until = blocked_for.map(|d| now + d);
        Verdict::Refused {
            failures: r.failures,
            blocked_for,
        }
    }

    /// Drops the records that are done with, and if none is, the one whose last wrong key
    /// is oldest. A walk over at most [`MAX_CLIENTS`] records, paid only by a new address
    /// sending a wrong key while the table is full.
    fn make_room(records: &mut HashMap<Client, Record>, now: Instant) {
        records.retain(|_, r| {
            r.blocked_until.is_some_and(|u| u > now)
                || now.saturating_duration_since(r.last_failure) < FORGET_AFTER
        });
        if records.len() >= MAX_CLIENTS
            && let Some(oldest) = records
                .iter()
                .min_by_key(|(_, r)| r.last_failure)
                .map(|(c, _)| *c)
        {
            records.remove(&oldest);
        }
    }

    /// How many addresses have a record.
    pub fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RIGHT: &[u8] = b"the-right-key";

    fn right(k: &[u8]) -> bool {
        k == RIGHT
    }

    fn addr(s: &str) -> Client {
        Client::of(Some(s.parse().expect("an address")))
    }

    #[test]
    fn blocks_double_from_the_first_over_the_free_ones_up_to_the_cap() {
        assert_eq!(block_after(0), None);
        assert_eq!(block_after(FREE_FAILURES - 1), None);
        assert_eq!(block_after(FREE_FAILURES), Some(FIRST_BLOCK));
        assert_eq!(block_after(FREE_FAILURES + 3), Some(FIRST_BLOCK * 8));
        assert_eq!(block_after(FREE_FAILURES + 40), Some(MAX_BLOCK));
        assert_eq!(block_after(u32::MAX), Some(MAX_BLOCK));
    }

    #[test]
    fn a_guesser_is_blocked_even_for_the_right_key_and_nobody_else_is() {
        let t = Throttle::default();
        let now = Instant::now();
        let guesser = addr("203.0.113.9");
        for i in 0..FREE_FAILURES - 1 {
            let v = t.check(guesser, now, format!("guess-{i}").as_bytes(), right);
            assert_eq!(
                v,
                Verdict::Refused {
                    failures: i + 1,
                    blocked_for: None
                }
            );
        }
        assert_eq!(t.check(guesser, now, RIGHT, right), Verdict::Accepted);
        let v = t.check(guesser, now, b"guess-last", right);
        assert_eq!(
            v,
            Verdict::Refused {
                failures: FREE_FAILURES,
                blocked_for: Some(FIRST_BLOCK)
            }
        );
        assert_eq!(
            t.check(guesser, now, RIGHT, right),
            Verdict::Throttled {
                retry_after: FIRST_BLOCK
            },
            "the right key from a blocked address is not even checked"
        );
        assert_eq!(
            t.check(addr("198.51.100.1"), now, RIGHT, right),
            Verdict::Accepted
        );
        // Once the block is over one more guess is checked; a wrong one doubles the block.
        let later = now + FIRST_BLOCK;
        assert_eq!(
            t.check(guesser, later, b"guess-again", right),
            Verdict::Refused {
                failures: FREE_FAILURES + 1,
                blocked_for: Some(FIRST_BLOCK * 2)
            }
        );
        assert_eq!(
            t.check(guesser, later + FIRST_BLOCK * 2, RIGHT, right),
            Verdict::Accepted
        );
    }

    #[test]
    fn the_same_wrong_key_again_is_no_new_guess() {
        let t = Throttle::default();
        let now = Instant::now();
        let c = addr("192.0.2.7");
        for _ in 0..10 * FREE_FAILURES {
            let v = t.check(c, now, b"stale-key", right);
            assert_eq!(
                v,
                Verdict::Refused {
                    failures: 1,
                    blocked_for: None
                }
            );
        }
        assert_eq!(t.check(c, now, RIGHT, right), Verdict::Accepted);
    }

    #[test]
    fn an_ipv6_guesser_is_one_client_per_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(addr("2001:db8:1:2::1"), addr("2001:db8:1:2:ffff::9"));
        assert_ne!(addr("2001:db8:1:2::1"), addr("2001:db8:1:3::1"));
        assert_eq!(addr("::ffff:192.0.2.1"), addr("192.0.2.1"));
        assert_eq!(Client::of(None), Client::Unknown);
    }

    #[test]
    fn records_are_forgotten_and_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        let c = addr("192.0.2.8");
        for i in 0..FREE_FAILURES - 1 {
            t.check(c, now, format!("g{i}").as_bytes(), right);
        }
        // An hour later the count starts again.
        let later = now + FORGET_AFTER;
        assert_eq!(
            t.check(c, later, b"one-more", right),
            Verdict::Refused {
                failures: 1,
                blocked_for: None
            }
        );
        // A flood of addresses never holds more than MAX_CLIENTS records.
        for i in 0..(MAX_CLIENTS as u32 + 50) {
            let client = Client::V4(0x0a00_0000 + i);
            t.check(client, later, b"x", right);
        }
        assert_eq!(t.tracked(), MAX_CLIENTS);
    }
}
