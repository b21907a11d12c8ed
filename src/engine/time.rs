//! One timeline: `Millis` is UTC epoch milliseconds, handed in by the shell (see `clock.rs`).
//! Timers are data: a `TimerTable` of named deadlines whose minimum is the next wake-up.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// UTC milliseconds since the Unix epoch, monotonic within one process (anchored once).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Millis(pub u64);

impl Millis {
    pub const ZERO: Millis = Millis(0);

    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }

    pub fn as_i64(self) -> i64 {
        self.0 as i64
    }
}

impl std::ops::Add<u64> for Millis {
    type Output = Millis;
    fn add(self, ms: u64) -> Millis {
        self.plus(ms)
    }
}

/// Named deadlines of one state machine. `next()` is what `poll_timeout` reports.
#[derive(Clone, Debug)]
pub struct TimerTable<K: Ord + Copy> {
    deadlines: BTreeMap<K, Millis>,
}

impl<K: Ord + Copy> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable {
            deadlines: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy> TimerTable<K> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, timer: K, at: Millis) {
        self.deadlines.insert(timer, at);
    }

    pub fn cancel(&mut self, timer: K) {
        self.deadlines.remove(&timer);
    }

    pub fn clear(&mut self) {
        self.deadlines.clear();
    }

    pub fn get(&self, timer: K) -> Option<Millis> {
        self.deadlines.get(&timer).copied()
    }

    pub fn is_set(&self, timer: K) -> bool {
        self.deadlines.contains_key(&timer)
    }

    /// Earliest deadline, if any.
    pub fn next(&self) -> Option<Millis> {
        self.deadlines.values().min().copied()
    }

    /// Removes and returns every timer due at `now`, earliest first.
    pub fn expired(&mut self, now: Millis) -> Vec<K> {
        let mut due: Vec<(Millis, K)> = self
            .deadlines
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, at)| (*at, *k))
            .collect();
        due.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        for (_, k) in &due {
            self.deadlines.remove(k);
        }
        due.into_iter().map(|(_, k)| k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_returns_due_timers_in_order_and_removes_them() {
        let mut t = TimerTable::new();
        t.set(2u8, Millis(300));
        t.set(1u8, Millis(100));
        t.set(3u8, Millis(900));
        assert_eq!(t.next(), Some(Millis(100)));
        assert_eq!(t.expired(Millis(300)), vec![1, 2]);
        assert_eq!(t.next(), Some(Millis(900)));
        assert!(t.expired(Millis(899)).is_empty());
    }
}
