//! Selection order, kept in per-queue ordered sets so a routing decision never sorts.
//!
//! * Agents for a call (`ReadyIndex`): the repeat caller's last agent first (checked by the
//!   caller of `best_agent`), then the highest proficiency in the queue's skill, then the
//!   longest idle (earliest `ready_since`), then the lower agent index (profile order).
//! * Calls in one queue (`WaitIndex`): higher priority first, then the earliest entry into
//!   the queue, then arrival order.
//! * Calls for a free agent across the queues it serves (`best_call`): higher queue priority
//!   first, then higher call priority, then the oldest entry into its queue, then arrival
//!   order. Deterministic: no hash order, no randomness.
//!
//! Cost: waiting calls are bucketed by (language, relaxation step), so a free agent reads the
//! head of each bucket it qualifies for: O(buckets * log n), plus the rare calls the agent
//! already refused. A new call reads Ready agents in order and takes the first eligible one:
//! O(log n) plus the agents skipped (other language, skill only good at a later step).

use crate::engine::Millis;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) type AgentIdx = usize;

/// Ready agents serving one queue, in selection order.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReadyIndex {
    set: BTreeSet<(Reverse<u8>, Millis, AgentIdx)>,
}

impl ReadyIndex {
    pub(crate) fn insert(&mut self, level: u8, ready_since: Millis, a: AgentIdx) {
        self.set.insert((Reverse(level), ready_since, a));
    }

    pub(crate) fn remove(&mut self, level: u8, ready_since: Millis, a: AgentIdx) {
        self.set.remove(&(Reverse(level), ready_since, a));
    }

    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    pub(crate) fn contains(&self, level: u8, ready_since: Millis, a: AgentIdx) -> bool {
        self.set.contains(&(Reverse(level), ready_since, a))
    }
}

/// The order key of a waiting call inside its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct WaitKey {
    pub(crate) priority: Reverse<i32>,
    pub(crate) entered_at: Millis,
    pub(crate) seq: u64,
}

/// (call language, relaxation step).
type Bucket = (Option<String>, usize);

/// Waiting (not ringing) calls of one queue, in service order, split into buckets by the
/// call's language and relaxation step, so a free agent looks only at the head of each bucket
/// it qualifies for instead of skipping ineligible calls one by one.
#[derive(Clone, Debug, Default)]
pub(crate) struct WaitIndex {
    buckets: BTreeMap<Bucket, BTreeSet<(WaitKey, u64)>>,
    len: usize,
}

impl WaitIndex {
    pub(crate) fn insert(&mut self, lang: &Option<String>, step: usize, key: WaitKey, call: u64) {
        if self
            .buckets
            .entry((lang.clone(), step))
            .or_default()
            .insert((key, call))
        {
            self.len += 1;
        }
    }

    pub(crate) fn remove(
        &mut self,
        lang: &Option<String>,
        step: usize,
        key: WaitKey,
        call: u64,
    ) -> bool {
        let b = (lang.clone(), step);
        let Some(set) = self.buckets.get_mut(&b) else {
            return false;
        };
        let removed = set.remove(&(key, call));
        if set.is_empty() {
            self.buckets.remove(&b);
        }
        if removed {
            self.len -= 1;
        }
        removed
    }

    pub(crate) fn contains(
        &self,
        lang: &Option<String>,
        step: usize,
        key: WaitKey,
        call: u64,
    ) -> bool {
        self.buckets
            .get(&(lang.clone(), step))
            .is_some_and(|s| s.contains(&(key, call)))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The waiting calls whose language passes `lang_ok` (any order).
    pub(crate) fn calls_where(&self, lang_ok: impl Fn(&Option<String>) -> bool) -> Vec<u64> {
        self.buckets
            .iter()
            .filter(|((lang, _), _)| lang_ok(lang))
            .flat_map(|(_, set)| set.iter().map(|(_, call)| *call))
            .collect()
    }

    /// 1-based position of a waiting call among all calls of the queue.
    pub(crate) fn position(&self, key: WaitKey, call: u64) -> usize {
        self.buckets
            .values()
            .map(|s| s.range(..(key, call)).count())
            .sum::<usize>()
            + 1
    }

    /// The first call in service order among the buckets `allowed` admits for which
    /// `eligible` holds.
    pub(crate) fn first_eligible(
        &self,
        allowed: impl Fn(&Option<String>, usize) -> bool,
        mut eligible: impl FnMut(u64) -> bool,
    ) -> Option<(WaitKey, u64)> {
        self.buckets
            .iter()
            .filter(|((lang, step), _)| allowed(lang, *step))
            .filter_map(|(_, set)| set.iter().find(|(_, c)| eligible(*c)).copied())
            .min()
    }
}

/// The best Ready agent for a call: `owner` (the repeat caller's last agent) if eligible,
/// else the first eligible agent in `ready` order.
pub(crate) fn best_agent(
    ready: &ReadyIndex,
    owner: Option<AgentIdx>,
    eligible: impl Fn(AgentIdx) -> bool,
) -> Option<AgentIdx> {
    if let Some(o) = owner.filter(|o| eligible(*o)) {
        return Some(o);
    }
    ready.set.iter().map(|(_, _, a)| *a).find(|a| eligible(*a))
}

/// Cross-queue order key of a candidate call (smaller is served first).
pub(crate) type CrossKey = (Reverse<i32>, Reverse<i32>, Millis, u64);

pub(crate) fn cross_key(queue_priority: i32, key: WaitKey) -> CrossKey {
    (
        Reverse(queue_priority),
        key.priority,
        key.entered_at,
        key.seq,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prio: i32, at: u64, seq: u64) -> WaitKey {
        WaitKey {
            priority: Reverse(prio),
            entered_at: Millis(at),
            seq,
        }
    }

    #[test]
    fn agents_best_level_then_longest_idle() {
        let mut r = ReadyIndex::default();
        r.insert(3, Millis(100), 0);
        r.insert(5, Millis(300), 1);
        r.insert(5, Millis(200), 2);
        r.insert(1, Millis(0), 3);
        assert_eq!(best_agent(&r, None, |_| true), Some(2));
        assert_eq!(best_agent(&r, None, |a| a != 2), Some(1));
        assert_eq!(best_agent(&r, Some(3), |_| true), Some(3), "owner first");
        assert_eq!(best_agent(&r, Some(3), |a| a != 3), Some(2));
        assert_eq!(best_agent(&r, None, |_| false), None);
    }

    #[test]
    fn calls_priority_then_oldest() {
        let mut w = WaitIndex::default();
        let en = Some("en".to_string());
        w.insert(&None, 0, key(0, 10, 1), 100);
        w.insert(&en, 1, key(5, 50, 2), 200);
        w.insert(&None, 1, key(0, 5, 3), 300);
        let all = |_: &Option<String>, _: usize| true;
        assert_eq!(w.first_eligible(all, |_| true).map(|x| x.1), Some(200));
        assert_eq!(w.first_eligible(all, |c| c != 200).map(|x| x.1), Some(300));
        assert_eq!(
            w.first_eligible(|l, _| l.is_none(), |_| true).map(|x| x.1),
            Some(300)
        );
        assert_eq!(
            w.first_eligible(|_, s| s == 0, |_| true).map(|x| x.1),
            Some(100)
        );
        assert_eq!(w.position(key(0, 10, 1), 100), 3);
        assert_eq!(w.len(), 3);
        assert!(w.remove(&en, 1, key(5, 50, 2), 200));
        assert!(!w.remove(&en, 1, key(5, 50, 2), 200));
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn across_queues_queue_priority_then_call_priority_then_oldest() {
        assert!(cross_key(1, key(0, 99, 2)) < cross_key(0, key(9, 0, 1)));
        assert!(cross_key(1, key(5, 99, 2)) < cross_key(1, key(0, 0, 1)));
        assert!(cross_key(1, key(0, 50, 3)) < cross_key(1, key(0, 99, 2)));
    }
}
