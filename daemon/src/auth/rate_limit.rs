//! Failed-login counting per key (a user name or a client address) over a fixed window. It is
//! sans-IO: every method takes `now`, and nothing here reads the clock, sleeps or locks.
//!
//! A key's window starts at its first failure and lasts `window`; once a key has
//! `max_failures` failures in its window, [`RateLimiter::check`] refuses it until the window
//! ends, and the next failure after that starts a fresh window.
//!
//! Memory is bounded: at most `capacity` keys are tracked, and expired keys are pruned as new
//! failures arrive. When every tracked key is still live and a new key fails, the key whose
//! window started first is dropped (see [`RateLimiter::record_failure`] for why).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How many keys one limiter tracks at most. Each tracked key costs roughly 100–150 bytes
/// (the key twice, its counter and its place in the age queue), so the cap holds a limiter
/// to about 15 MB even while someone fails logins from a botnet.
pub(crate) const MAX_TRACKED_KEYS: usize = 100_000;

/// Counts failures per key in a window; see the module docs.
#[derive(Debug)]
pub(crate) struct RateLimiter<K> {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    entries: HashMap<K, Entry>,
    /// Keys in the order their windows started, oldest first, tagged with the entry id they
    /// were queued for. An item whose key was cleared or restarted since is stale and skipped.
    by_age: VecDeque<(u64, K)>,
    next_id: u64,
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    window_start: Instant,
    /// Which `by_age` item belongs to this entry.
    id: u64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter that refuses a key after `max_failures` failures (at least 1) within
    /// `window`, tracking at most `capacity` keys (at least 1).
    pub(crate) fn new(max_failures: u32, window: Duration, capacity: usize) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            by_age: VecDeque::new(),
            next_id: 0,
        }
    }

    /// `Ok` when `key` may try again at `now`; otherwise how long until its window ends.
    pub(crate) fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        match self.entries.get(key) {
            Some(entry) if entry.failures >= self.max_failures => {
                let window_end = entry.window_start + self.window;
                match window_end.checked_duration_since(now) {
                    Some(retry_after) if !retry_after.is_zero() => Err(retry_after),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure of `key` at `now`.
    ///
    /// At the cap, after pruning expired keys, the oldest tracked key is dropped to make room.
    /// The alternative, refusing every untracked key until something expires, would let anyone
    /// who fills the table lock every other user and address out. Dropping the oldest instead
    /// resets one counter, and only after the attacker has spent `capacity` fresh failed
    /// logins since that key's window began, which is itself a far stricter limit than the
    /// per-key one.
    pub(crate) fn record_failure(&mut self, key: &K, now: Instant) {
        self.prune(now);
        if let Some(entry) = self.entries.get_mut(key) {
            if !is_expired(entry, self.window, now) {
                entry.failures = entry.failures.saturating_add(1);
                return;
            }
            // The old window is over (pruning stops at the first live key in age order, so an
            // expired one can remain); a fresh window starts below.
            self.entries.remove(key);
        } else if self.entries.len() >= self.capacity {
            self.evict_oldest();
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            key.clone(),
            Entry {
                failures: 1,
                window_start: now,
                id,
            },
        );
        self.by_age.push_back((id, key.clone()));
        self.compact();
    }

    /// Forgets every failure of `key` (after a successful login).
    pub(crate) fn clear(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Takes back one failure of `key`: an attempt counted in advance that turned out not to be
    /// one (it succeeded, or the server could not answer it).
    pub(crate) fn forgive_one(&mut self, key: &K) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.failures = entry.failures.saturating_sub(1);
            if entry.failures == 0 {
                self.entries.remove(key);
            }
        }
    }

    /// Drops the keys whose windows have ended, oldest first, stopping at the first live one.
    fn prune(&mut self, now: Instant) {
        while let Some((id, key)) = self.by_age.front() {
            let live = self.entries.get(key).filter(|entry| entry.id == *id);
            if live.is_some_and(|entry| !is_expired(entry, self.window, now)) {
                break;
            }
            let is_tracked = live.is_some();
            if let Some((_, key)) = self.by_age.pop_front()
                && is_tracked
            {
                self.entries.remove(&key);
            }
        }
    }

    /// Drops the tracked key whose window started first.
    fn evict_oldest(&mut self) {
        while let Some((id, key)) = self.by_age.pop_front() {
            if self.entries.get(&key).is_some_and(|entry| entry.id == id) {
                self.entries.remove(&key);
                return;
            }
        }
    }

    /// Removes stale age items once they outnumber the live ones, so `clear` and
    /// `forgive_one` (which leave their item behind) cannot grow the queue without bound.
    /// Each compaction follows at least as many pushes as it scans, so it costs O(1) amortized.
    fn compact(&mut self) {
        if self.by_age.len() > 2 * self.entries.len() + COMPACT_SLACK {
            let entries = &self.entries;
            self.by_age
                .retain(|(id, key)| entries.get(key).is_some_and(|entry| entry.id == *id));
        }
    }

    /// How many keys are tracked.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// How many age items are queued, stale ones included.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.by_age.len()
    }
}

fn is_expired(entry: &Entry, window: Duration, now: Instant) -> bool {
    now.saturating_duration_since(entry.window_start) >= window
}

/// Stale age items tolerated before compacting, so small limiters do not compact on every
/// failure.
const COMPACT_SLACK: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn refuses_after_max_failures_until_the_window_ends() {
        let mut limiter = RateLimiter::new(3, WINDOW, 10);
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(limiter.check(&"alice", start + secs(i)), Ok(()));
            limiter.record_failure(&"alice", start + secs(i));
        }
        assert_eq!(limiter.check(&"alice", start + secs(10)), Err(secs(50)));
        assert_eq!(limiter.check(&"alice", start + secs(59)), Err(secs(1)));
        assert_eq!(limiter.check(&"alice", start + secs(60)), Ok(()));
    }

    #[test]
    fn a_failure_after_the_window_starts_a_fresh_count() {
        let mut limiter = RateLimiter::new(2, WINDOW, 10);
        let start = Instant::now();
        limiter.record_failure(&"alice", start);
        limiter.record_failure(&"alice", start + secs(1));
        assert!(limiter.check(&"alice", start + secs(2)).is_err());

        limiter.record_failure(&"alice", start + secs(61));
        assert_eq!(limiter.check(&"alice", start + secs(62)), Ok(()));
        limiter.record_failure(&"alice", start + secs(62));
        assert_eq!(limiter.check(&"alice", start + secs(63)), Err(secs(58)));
    }

    #[test]
    fn keys_are_counted_separately() {
        let mut limiter = RateLimiter::new(1, WINDOW, 10);
        let now = Instant::now();
        limiter.record_failure(&"alice", now);
        assert!(limiter.check(&"alice", now).is_err());
        assert_eq!(limiter.check(&"bob", now), Ok(()));
    }

    #[test]
    fn clear_forgets_every_failure() {
        let mut limiter = RateLimiter::new(2, WINDOW, 10);
        let now = Instant::now();
        limiter.record_failure(&"alice", now);
        limiter.record_failure(&"alice", now);
        limiter.clear(&"alice");
        assert_eq!(limiter.check(&"alice", now), Ok(()));
        assert_eq!(limiter.tracked(), 0);
        limiter.record_failure(&"alice", now);
        assert_eq!(limiter.check(&"alice", now), Ok(()));
    }

    #[test]
    fn forgive_one_takes_back_a_single_failure() {
        let mut limiter = RateLimiter::new(2, WINDOW, 10);
        let now = Instant::now();
        limiter.record_failure(&"alice", now);
        limiter.record_failure(&"alice", now);
        limiter.forgive_one(&"alice");
        assert_eq!(limiter.check(&"alice", now), Ok(()));
        limiter.record_failure(&"alice", now);
        assert!(limiter.check(&"alice", now).is_err());

        limiter.forgive_one(&"alice");
        limiter.forgive_one(&"alice");
        assert_eq!(limiter.tracked(), 0);
        limiter.forgive_one(&"nobody");
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn max_failures_of_zero_acts_as_one() {
        let mut limiter = RateLimiter::new(0, WINDOW, 10);
        let now = Instant::now();
        assert_eq!(limiter.check(&"alice", now), Ok(()));
        limiter.record_failure(&"alice", now);
        assert!(limiter.check(&"alice", now).is_err());
    }

    #[test]
    fn expired_keys_are_pruned_before_anything_is_evicted() {
        let mut limiter = RateLimiter::new(1, WINDOW, 3);
        let start = Instant::now();
        limiter.record_failure(&1, start);
        limiter.record_failure(&2, start + secs(30));
        limiter.record_failure(&3, start + secs(30));
        // Key 1's window is over at 60 s; key 2 and 3 are live and must survive.
        limiter.record_failure(&4, start + secs(61));
        assert_eq!(limiter.tracked(), 3);
        assert!(limiter.check(&2, start + secs(61)).is_err());
        assert!(limiter.check(&3, start + secs(61)).is_err());
        assert!(limiter.check(&4, start + secs(61)).is_err());
    }

    #[test]
    fn at_the_cap_the_oldest_live_key_is_dropped() {
        let mut limiter = RateLimiter::new(1, WINDOW, 3);
        let start = Instant::now();
        for key in 1..=3 {
            limiter.record_failure(&key, start + secs(key));
        }
        limiter.record_failure(&4, start + secs(5));
        assert_eq!(limiter.tracked(), 3);
        assert_eq!(limiter.check(&1, start + secs(5)), Ok(()));
        for key in 2..=4 {
            assert!(limiter.check(&key, start + secs(5)).is_err(), "key {key}");
        }
    }

    #[test]
    fn many_distinct_keys_stay_within_the_cap() {
        let mut limiter = RateLimiter::new(5, WINDOW, 100);
        let now = Instant::now();
        for key in 0..10_000_u32 {
            limiter.record_failure(&key, now);
        }
        assert_eq!(limiter.tracked(), 100);
        assert!(limiter.queued() <= 2 * 100 + COMPACT_SLACK);
    }

    #[test]
    fn clearing_and_failing_again_does_not_grow_the_age_queue() {
        let mut limiter = RateLimiter::new(5, WINDOW, 100);
        let now = Instant::now();
        for _ in 0..10_000 {
            limiter.record_failure(&"alice", now);
            limiter.clear(&"alice");
        }
        assert!(
            limiter.queued() <= COMPACT_SLACK + 2,
            "{}",
            limiter.queued()
        );
    }

    #[test]
    fn a_clock_that_steps_back_does_not_panic() {
        let mut limiter = RateLimiter::new(1, WINDOW, 10);
        let start = Instant::now() + secs(100);
        limiter.record_failure(&"alice", start);
        let earlier = start - secs(50);
        assert_eq!(limiter.check(&"alice", earlier), Err(secs(110)));
        limiter.record_failure(&"alice", earlier);
        limiter.record_failure(&"bob", earlier);
        assert_eq!(limiter.tracked(), 2);
    }
}
