//! An ordered index of (deadline, owner, timer) so the engine finds its next wake-up and the
//! due timers in O(log n), however many calls are up.

use super::time::Millis;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub struct DeadlineIndex<O: Ord + Copy + Hash, T: Ord + Copy + Hash> {
    ordered: BTreeSet<(Millis, O, T)>,
    current: HashMap<(O, T), Millis>,
}

impl<O: Ord + Copy + Hash, T: Ord + Copy + Hash> Default for DeadlineIndex<O, T> {
    fn default() -> Self {
        DeadlineIndex {
            ordered: BTreeSet::new(),
            current: HashMap::new(),
        }
    }
}

impl<O: Ord + Copy + Hash, T: Ord + Copy + Hash> DeadlineIndex<O, T> {
    pub fn set(&mut self, owner: O, timer: T, at: Millis) {
        if let Some(old) = self.current.insert((owner, timer), at) {
            self.ordered.remove(&(old, owner, timer));
        }
        self.ordered.insert((at, owner, timer));
    }

    pub fn cancel(&mut self, owner: O, timer: T) {
        if let Some(old) = self.current.remove(&(owner, timer)) {
            self.ordered.remove(&(old, owner, timer));
        }
    }

    pub fn is_set(&self, owner: O, timer: T) -> bool {
        self.current.contains_key(&(owner, timer))
    }

    pub fn cancel_owner(&mut self, owner: O, timers: &[T]) {
        for t in timers {
            self.cancel(owner, *t);
        }
    }

    pub fn next(&self) -> Option<Millis> {
        self.ordered.first().map(|(at, _, _)| *at)
    }

    /// Removes and returns the earliest timer due at `now`, if any.
    pub fn pop_due(&mut self, now: Millis) -> Option<(O, T)> {
        let first = *self.ordered.first()?;
        if first.0 > now {
            return None;
        }
        self.ordered.remove(&first);
        self.current.remove(&(first.1, first.2));
        Some((first.1, first.2))
    }

    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_moves_a_deadline_and_pop_due_is_ordered() {
        let mut d = DeadlineIndex::default();
        d.set(1u64, 'a', Millis(50));
        d.set(2u64, 'a', Millis(10));
        d.set(1u64, 'a', Millis(5));
        assert_eq!(d.next(), Some(Millis(5)));
        assert_eq!(d.pop_due(Millis(20)), Some((1, 'a')));
        assert_eq!(d.pop_due(Millis(20)), Some((2, 'a')));
        assert_eq!(d.pop_due(Millis(20)), None);
        assert!(d.is_empty());
    }
}
