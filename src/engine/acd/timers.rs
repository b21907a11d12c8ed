//! The ACD's deadlines: an ordered set, so the next one and the due ones are O(log n) even
//! with thousands of waiting calls (TimerTable scans all deadlines for its minimum).

use crate::engine::Millis;
use std::collections::{BTreeSet, HashMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// The offer of this call rang for the queue's ring timeout.
    Ring(u64),
    /// This agent's after-call work is over.
    WrapUp(usize),
    /// The call reaches its queue's next relaxation step.
    Relax(u64),
    /// Time to tell this caller their position and expected wait.
    Announce(u64),
    /// The call has waited its queue's maximum.
    MaxWait(u64),
    /// The grace period with nobody logged in who could take this call is over.
    NoAgents(u64),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Timers {
    order: BTreeSet<(Millis, Timer)>,
    at: HashMap<Timer, Millis>,
}

impl Timers {
    pub(crate) fn set(&mut self, t: Timer, when: Millis) {
        if let Some(old) = self.at.insert(t, when) {
            self.order.remove(&(old, t));
        }
        self.order.insert((when, t));
    }

    pub(crate) fn cancel(&mut self, t: Timer) {
        if let Some(old) = self.at.remove(&t) {
            self.order.remove(&(old, t));
        }
    }

    pub(crate) fn is_set(&self, t: Timer) -> bool {
        self.at.contains_key(&t)
    }

    pub(crate) fn next(&self) -> Option<Millis> {
        self.order.first().map(|(m, _)| *m)
    }

    /// Removes and returns the earliest timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<Timer> {
        let (when, t) = *self.order.first()?;
        if when > now {
            return None;
        }
        self.order.remove(&(when, t));
        self.at.remove(&t);
        Some(t)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rearming_replaces_and_due_pops_in_order() {
        let mut t = Timers::default();
        t.set(Timer::Ring(1), Millis(50));
        t.set(Timer::Relax(2), Millis(10));
        t.set(Timer::Ring(1), Millis(5));
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(Millis(5)));
        assert_eq!(t.pop_due(Millis(20)), Some(Timer::Ring(1)));
        assert_eq!(t.pop_due(Millis(20)), Some(Timer::Relax(2)));
        assert_eq!(t.pop_due(Millis(20)), None);
        t.set(Timer::WrapUp(0), Millis(1));
        t.cancel(Timer::WrapUp(0));
        assert_eq!(t.next(), None);
    }
}
