//! METRICS.md formulas as pure functions over per-call facts. `store` computes the same
//! aggregates in SQL (`Store::summary`); a property test keeps the two equal.
//!
//! Only figures whose timestamps exist so far are here: rings before answer, 3-ring
//! compliance, hold time and IVR containment. Aggregates are kept as integer counts and
//! millisecond sums so Rust and SQL agree exactly; ratios are derived from them.

use crate::engine::record::IvrOutcome;
use crate::engine::time::Millis;
use serde::Serialize;

/// `(answered_at - arrived_at) / ring_cycle`: how many ring cycles the caller heard.
/// `None` when the call was not answered or the ring cycle is unknown / zero.
pub fn rings_before_answer(
    arrived_at: Millis,
    answered_at: Option<Millis>,
    ring_cycle_ms: Option<u64>,
) -> Option<f64> {
    let answered_at = answered_at?;
    let cycle = ring_cycle_ms.filter(|c| *c > 0)?;
    Some(answered_at.since(arrived_at) as f64 / cycle as f64)
}

/// `answered_at - arrived_at <= 3 * ring_cycle`. `None` when not answered or the ring cycle is
/// unknown (a call row created from records whose `CallStarted` never arrived).
pub fn within_three_rings(
    arrived_at: Millis,
    answered_at: Option<Millis>,
    ring_cycle_ms: Option<u64>,
) -> Option<bool> {
    let answered_at = answered_at?;
    let cycle = ring_cycle_ms?;
    Some(answered_at.since(arrived_at) <= cycle.saturating_mul(3))
}

/// One hold; `ended_at` is `None` while the hold is still open (or its end was never seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HoldSpan {
    pub started_at: Millis,
    pub ended_at: Option<Millis>,
}

/// Sum of hold segments. An open segment ends when the call ended; if the call has not ended
/// either, at the last event seen for the call (the latest time anything is known about it).
pub fn hold_ms(segments: &[HoldSpan], call_ended_at: Option<Millis>, last_event_at: Millis) -> u64 {
    segments
        .iter()
        .map(|s| {
            let end = s.ended_at.or(call_ended_at).unwrap_or(last_event_at);
            end.since(s.started_at)
        })
        .fold(0u64, u64::saturating_add)
}

/// What the aggregates need from one call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallFacts {
    pub arrived_at: Millis,
    pub answered_at: Option<Millis>,
    pub ring_cycle_ms: Option<u64>,
    pub ivr_outcome: Option<IvrOutcome>,
    pub hold_ms: u64,
}

/// Aggregates over a set of calls, as exact integers (SQL computes the same in one query).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub calls: u64,
    /// Calls the system answered; every answered call enters the IVR.
    pub answered: u64,
    pub answered_within_three_rings: u64,
    /// Sum of `answered_at - arrived_at` over answered calls.
    pub answer_delay_ms_total: u64,
    /// IVR outcomes of answered calls (calls that entered the IVR).
    pub self_served: u64,
    pub queued: u64,
    pub transferred: u64,
    pub abandoned_in_ivr: u64,
    pub ivr_failed: u64,
    pub hold_ms_total: u64,
}

impl Summary {
    pub fn of<'a>(calls: impl IntoIterator<Item = &'a CallFacts>) -> Summary {
        let mut s = Summary::default();
        for c in calls {
            s.add(c);
        }
        s
    }

    pub fn add(&mut self, c: &CallFacts) {
        self.calls += 1;
        self.hold_ms_total = self.hold_ms_total.saturating_add(c.hold_ms);
        let Some(answered_at) = c.answered_at else {
            return;
        };
        self.answered += 1;
        self.answer_delay_ms_total = self
            .answer_delay_ms_total
            .saturating_add(answered_at.since(c.arrived_at));
        if within_three_rings(c.arrived_at, c.answered_at, c.ring_cycle_ms) == Some(true) {
            self.answered_within_three_rings += 1;
        }
        match c.ivr_outcome {
            Some(IvrOutcome::SelfServed) => self.self_served += 1,
            Some(IvrOutcome::Queued) => self.queued += 1,
            Some(IvrOutcome::Transferred) => self.transferred += 1,
            Some(IvrOutcome::AbandonedInIvr) => self.abandoned_in_ivr += 1,
            Some(IvrOutcome::Failed) => self.ivr_failed += 1,
            None => {}
        }
    }

    /// Calls that entered the IVR: every answered call does.
    pub fn ivr_entered(&self) -> u64 {
        self.answered
    }

    /// 3-ring compliance: answered within 3 rings / answered (target 100 %).
    pub fn three_ring_compliance(&self) -> Option<f64> {
        ratio(self.answered_within_three_rings, self.answered)
    }

    /// IVR containment: self-served / calls that entered the IVR (target >= 60 %).
    pub fn ivr_containment(&self) -> Option<f64> {
        ratio(self.self_served, self.ivr_entered())
    }

    /// Mean time from arrival to answer over answered calls, in ms.
    pub fn mean_answer_delay_ms(&self) -> Option<f64> {
        ratio(self.answer_delay_ms_total, self.answered)
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_before_answer_hand_worked() {
        // 6 s cycle (2 s on / 4 s off), answered 9 s after arrival: 1.5 rings.
        let r = rings_before_answer(Millis(1_000), Some(Millis(10_000)), Some(6_000));
        assert_eq!(r, Some(1.5));
        assert_eq!(rings_before_answer(Millis(1_000), None, Some(6_000)), None);
        assert_eq!(
            rings_before_answer(Millis(1_000), Some(Millis(2_000)), Some(0)),
            None
        );
    }

    #[test]
    fn within_three_rings_boundary_is_inclusive() {
        let cycle = Some(5_000);
        assert_eq!(
            within_three_rings(Millis(0), Some(Millis(15_000)), cycle),
            Some(true)
        );
        assert_eq!(
            within_three_rings(Millis(0), Some(Millis(15_001)), cycle),
            Some(false)
        );
        assert_eq!(within_three_rings(Millis(0), None, cycle), None);
        assert_eq!(within_three_rings(Millis(0), Some(Millis(1)), None), None);
    }

    #[test]
    fn hold_ms_closes_open_segments_at_call_end_or_last_event() {
        let segs = [
            HoldSpan {
                started_at: Millis(1_000),
                ended_at: Some(Millis(4_000)),
            },
            HoldSpan {
                started_at: Millis(10_000),
                ended_at: None,
            },
        ];
        assert_eq!(
            hold_ms(&segs, Some(Millis(12_500)), Millis(12_500)),
            3_000 + 2_500
        );
        assert_eq!(hold_ms(&segs, None, Millis(11_000)), 3_000 + 1_000);
        assert_eq!(hold_ms(&[], None, Millis(5)), 0);
    }

    #[test]
    fn summary_hand_worked() {
        let answered = |delay: u64, outcome| CallFacts {
            arrived_at: Millis(100_000),
            answered_at: Some(Millis(100_000 + delay)),
            ring_cycle_ms: Some(6_000),
            ivr_outcome: outcome,
            hold_ms: 0,
        };
        let calls = [
            answered(2_000, Some(IvrOutcome::SelfServed)),
            answered(18_000, Some(IvrOutcome::SelfServed)),
            answered(19_000, Some(IvrOutcome::Queued)),
            answered(1_000, None),
            CallFacts {
                arrived_at: Millis(0),
                answered_at: None,
                ring_cycle_ms: Some(6_000),
                ivr_outcome: None,
                hold_ms: 7,
            },
        ];
        let s = Summary::of(&calls);
        assert_eq!(s.calls, 5);
        assert_eq!(s.answered, 4);
        assert_eq!(s.answered_within_three_rings, 3);
        assert_eq!(s.answer_delay_ms_total, 40_000);
        assert_eq!(s.self_served, 2);
        assert_eq!(s.queued, 1);
        assert_eq!(s.hold_ms_total, 7);
        assert_eq!(s.three_ring_compliance(), Some(0.75));
        assert_eq!(s.ivr_containment(), Some(0.5));
        assert_eq!(s.mean_answer_delay_ms(), Some(10_000.0));
        assert_eq!(Summary::default().ivr_containment(), None);
    }
}
