//! Which worker owns each leg, and how many each owns: commands are routed by it and new
//! legs placed by it.

use crate::engine::media::LegId;
use std::collections::HashMap;

/// Which worker owns each open leg, and how many legs each owns: the load new legs are placed
/// by. One lock, taken per command (never per packet); workers drop a failed Open's entry.
#[derive(Debug)]
pub(super) struct Routes {
    owner: HashMap<LegId, usize>,
    /// `load[w]` = number of `owner` entries equal to `w`.
    pub(super) load: Vec<usize>,
}

impl Routes {
    pub(super) fn new(workers: usize) -> Routes {
        Routes {
            owner: HashMap::new(),
            load: vec![0; workers.max(1)],
        }
    }

    pub(super) fn get(&self, leg: &LegId) -> Option<usize> {
        self.owner.get(leg).copied()
    }

    pub(super) fn contains(&self, leg: &LegId) -> bool {
        self.owner.contains_key(leg)
    }

    /// Routes `leg` to `worker` (a new leg, or one a bridge moves).
    pub(super) fn insert(&mut self, leg: LegId, worker: usize) {
        if let Some(old) = self.owner.insert(leg, worker) {
            if let Some(n) = self.load.get_mut(old) {
                *n = n.saturating_sub(1);
            }
        }
        if let Some(n) = self.load.get_mut(worker) {
            *n += 1;
        }
    }

    pub(super) fn remove(&mut self, leg: &LegId) -> Option<usize> {
        let worker = self.owner.remove(leg)?;
        if let Some(n) = self.load.get_mut(worker) {
            *n = n.saturating_sub(1);
        }
        Some(worker)
    }

    /// Routes a new leg to the least-loaded worker and returns it.
    pub(super) fn place(&mut self, leg: LegId) -> usize {
        let worker = least_loaded(&self.load);
        self.insert(leg, worker);
        worker
    }

    pub(super) fn clear(&mut self) {
        self.owner.clear();
        self.load.iter_mut().for_each(|n| *n = 0);
    }
}

/// The worker with the fewest legs (the lowest index among equals; 0 for an empty list).
pub(super) fn least_loaded(load: &[usize]) -> usize {
    load.iter()
        .enumerate()
        .min_by_key(|&(i, &n)| (n, i))
        .map_or(0, |(i, _)| i)
}
