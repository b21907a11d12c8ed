//! METRICS.md formulas as pure functions over per-call facts. `store` computes the same
//! aggregates in SQL (`Store::summary`, `Store::queue_stats`, `Store::agent_stats`); a
//! property test (tests/storage.rs) keeps the two equal on SQLite and PostgreSQL.
//!
//! Aggregates are kept as integer counts and millisecond sums so Rust and SQL agree exactly;
//! ratios are derived from them.
//!
//! Per-call figures (`CallTimes`), exactly as METRICS.md:
//! - FRT = `agent_answered_at - arrived_at`.
//! - queue wait = `agent_answered_at - queued_at`, or `ended_at - queued_at` if abandoned.
//! - hold = the sum of *all* the call's hold segments (METRICS.md says "sum of hold
//!   segments"; holds only happen while an agent is on the call, so no segment is dropped).
//! - talk = `ended_at - agent_answered_at - hold` (0 if that would be negative).
//! - ACW = `wrapup_ended_at - ended_at`.
//! - AHT contribution = talk + hold + ACW, for calls an agent handled to the end of wrap-up
//!   (`agent_answered_at`, `ended_at` and `wrapup_ended_at` all known): a call whose wrap-up
//!   end was never seen is left out of AHT rather than given an invented ACW.
//! - abandoned = queued, the caller hung up (`ended_by = caller`), no agent answered;
//!   short abandon = abandoned with queue wait under 5 s.
//!
//! Differences are saturating (a later "earlier" timestamp gives 0), the same in SQL.
//!
//! Interval aggregates (`queue_stats`, `agent_stats`) bucket by UTC day or 15 minutes:
//! - per queue, a call counts in the bucket of its `queued_at` (range filter on `queued_at`);
//! - per agent, a call counts for its answering agent in the bucket of `agent_answered_at`,
//!   an offer in the bucket of its `offered_at`; the whole handle time of a call lands in
//!   that bucket (it is not split across buckets);
//! - staffed time (occupancy's denominator) is the time in states `ready`, `reserved`,
//!   `on_call`, `wrap_up` (logged in and not on break / not ready), from the agent's state
//!   changes, split exactly across buckets and clipped to `[since, until)`; the agent's last
//!   state lasts until `until`.

use crate::engine::acd::QueueSet;
use crate::engine::record::{EndedBy, IvrOutcome};
use crate::engine::time::Millis;
use serde::Serialize;
use std::collections::BTreeMap;

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
#[derive(Clone, Copy, Debug, Default, PartialEq)]
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

// ---------- agents and queues (issue #3) ----------

/// A short abandon is an abandon after less than this much queue wait.
pub const SHORT_ABANDON_MS: u64 = 5_000;
/// Default service-level threshold T (answered within 20 s).
pub const DEFAULT_SERVICE_LEVEL_MS: u64 = 20_000;
/// Default service-level target: at least 80 % of calls answered within T.
pub const DEFAULT_SERVICE_LEVEL_PCT: u8 = 80;
/// Agent states that count as staffed time (logged in, not on break, not "not ready").
pub const STAFFED_STATES: [&str; 4] = ["ready", "reserved", "on_call", "wrap_up"];

/// `agent_answered_at - arrived_at`: how long the caller waited for a person.
pub fn frt_ms(arrived_at: Millis, agent_answered_at: Option<Millis>) -> Option<u64> {
    agent_answered_at.map(|a| a.since(arrived_at))
}

/// Queued, the caller hung up, and no agent answered.
pub fn abandoned(
    queued_at: Option<Millis>,
    agent_answered_at: Option<Millis>,
    ended_by: Option<EndedBy>,
) -> bool {
    queued_at.is_some() && agent_answered_at.is_none() && ended_by == Some(EndedBy::Caller)
}

/// `agent_answered_at - queued_at`, or `ended_at - queued_at` if abandoned; `None` otherwise
/// (not queued, or still waiting, or ended by the system before an agent answered).
pub fn queue_wait_ms(
    queued_at: Option<Millis>,
    agent_answered_at: Option<Millis>,
    ended_at: Option<Millis>,
    ended_by: Option<EndedBy>,
) -> Option<u64> {
    let q = queued_at?;
    if let Some(a) = agent_answered_at {
        return Some(a.since(q));
    }
    if abandoned(queued_at, agent_answered_at, ended_by) {
        // An abandoned call has ended; a row without ended_at (cannot happen) waits 0.
        return Some(ended_at.map_or(0, |e| e.since(q)));
    }
    None
}

/// `ended_at - agent_answered_at - hold`, never negative.
pub fn talk_ms(
    agent_answered_at: Option<Millis>,
    ended_at: Option<Millis>,
    hold_ms: u64,
) -> Option<u64> {
    Some(ended_at?.since(agent_answered_at?).saturating_sub(hold_ms))
}

/// `wrapup_ended_at - ended_at`.
pub fn acw_ms(ended_at: Option<Millis>, wrapup_ended_at: Option<Millis>) -> Option<u64> {
    Some(wrapup_ended_at?.since(ended_at?))
}

/// What the queue and agent figures need from one call.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CallTimes {
    pub arrived_at: Millis,
    pub queue: Option<String>,
    pub queued_at: Option<Millis>,
    pub agent: Option<String>,
    pub agent_answered_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    pub ended_by: Option<EndedBy>,
    pub wrapup_ended_at: Option<Millis>,
    /// `hold_ms` of the call's segments (see `hold_ms`).
    pub hold_ms: u64,
}

impl CallTimes {
    pub fn frt_ms(&self) -> Option<u64> {
        frt_ms(self.arrived_at, self.agent_answered_at)
    }

    pub fn abandoned(&self) -> bool {
        abandoned(self.queued_at, self.agent_answered_at, self.ended_by)
    }

    pub fn short_abandon(&self) -> bool {
        self.abandoned() && self.queue_wait_ms().is_some_and(|w| w < SHORT_ABANDON_MS)
    }

    pub fn queue_wait_ms(&self) -> Option<u64> {
        queue_wait_ms(
            self.queued_at,
            self.agent_answered_at,
            self.ended_at,
            self.ended_by,
        )
    }

    pub fn talk_ms(&self) -> Option<u64> {
        talk_ms(self.agent_answered_at, self.ended_at, self.hold_ms)
    }

    /// Hold time of an agent-answered call (`None` if no agent answered).
    pub fn agent_hold_ms(&self) -> Option<u64> {
        self.agent_answered_at.map(|_| self.hold_ms)
    }

    pub fn acw_ms(&self) -> Option<u64> {
        acw_ms(self.ended_at, self.wrapup_ended_at)
    }

    /// talk + hold + ACW, for a call handled through wrap-up (see the module notes).
    pub fn aht_ms(&self) -> Option<u64> {
        let talk = self.talk_ms()?;
        let acw = self.acw_ms()?;
        Some(talk.saturating_add(self.hold_ms).saturating_add(acw))
    }
}

/// Report bucket width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Day,
    #[serde(rename = "15m")]
    Quarter,
}

impl Interval {
    pub fn width_ms(self) -> u64 {
        match self {
            Interval::Day => 86_400_000,
            Interval::Quarter => 900_000,
        }
    }

    /// Start of the (UTC) bucket holding `t`.
    pub fn bucket(self, t: Millis) -> Millis {
        let w = self.width_ms();
        Millis(t.as_u64() / w * w)
    }
}

/// `[since, until)`; `None` is unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub since: Option<Millis>,
    pub until: Option<Millis>,
}

impl Range {
    pub fn contains(&self, t: Millis) -> bool {
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

/// Per queue and bucket, as exact integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Calls offered to the queue (queued).
    pub offered: u64,
    /// Calls an agent answered.
    pub answered: u64,
    /// Answered with queue wait <= T.
    pub answered_within_sl: u64,
    pub abandoned: u64,
    pub short_abandoned: u64,
    /// Sum of queue waits of answered calls (ASA's numerator).
    pub answer_wait_ms_total: u64,
    /// Sum of queue waits of abandoned calls.
    pub abandon_wait_ms_total: u64,
    /// Sum of FRT of answered calls.
    pub frt_ms_total: u64,
    /// Calls handled through wrap-up (AHT's denominator) and their sums.
    pub handled: u64,
    pub talk_ms_total: u64,
    pub hold_ms_total: u64,
    pub acw_ms_total: u64,
    pub aht_ms_total: u64,
}

impl QueueStats {
    pub fn add(&mut self, c: &CallTimes, sl_threshold_ms: u64) {
        if c.queued_at.is_none() {
            return;
        }
        self.offered += 1;
        if c.agent_answered_at.is_some() {
            let wait = c.queue_wait_ms().unwrap_or(0);
            self.answered += 1;
            if wait <= sl_threshold_ms {
                self.answered_within_sl += 1;
            }
            self.answer_wait_ms_total = self.answer_wait_ms_total.saturating_add(wait);
            self.frt_ms_total = self.frt_ms_total.saturating_add(c.frt_ms().unwrap_or(0));
        }
        if c.abandoned() {
            self.abandoned += 1;
            if c.short_abandon() {
                self.short_abandoned += 1;
            }
            self.abandon_wait_ms_total = self
                .abandon_wait_ms_total
                .saturating_add(c.queue_wait_ms().unwrap_or(0));
        }
        self.add_handled(c);
    }

    fn add_handled(&mut self, c: &CallTimes) {
        if let (Some(talk), Some(acw), Some(aht)) = (c.talk_ms(), c.acw_ms(), c.aht_ms()) {
            self.handled += 1;
            self.talk_ms_total = self.talk_ms_total.saturating_add(talk);
            self.hold_ms_total = self.hold_ms_total.saturating_add(c.hold_ms);
            self.acw_ms_total = self.acw_ms_total.saturating_add(acw);
            self.aht_ms_total = self.aht_ms_total.saturating_add(aht);
        }
    }

    /// Answered within T / (offered - short abandons) (target >= 80 %).
    pub fn service_level(&self) -> Option<f64> {
        ratio(
            self.answered_within_sl,
            self.offered.saturating_sub(self.short_abandoned),
        )
    }

    /// ASA: mean queue wait of answered calls, ms.
    pub fn asa_ms(&self) -> Option<f64> {
        ratio(self.answer_wait_ms_total, self.answered)
    }

    /// Mean FRT of answered calls, ms.
    pub fn mean_frt_ms(&self) -> Option<f64> {
        ratio(self.frt_ms_total, self.answered)
    }

    /// AHT: mean talk + hold + ACW of handled calls, ms (target <= 300 s).
    pub fn aht_ms(&self) -> Option<f64> {
        ratio(self.aht_ms_total, self.handled)
    }

    /// Abandoned / offered.
    pub fn abandonment_rate(&self) -> Option<f64> {
        ratio(self.abandoned, self.offered)
    }
}

/// Per queue and bucket start, over calls queued in `range`.
pub fn queue_stats<'a>(
    calls: impl IntoIterator<Item = &'a CallTimes>,
    range: Range,
    interval: Interval,
    sl_threshold_ms: u64,
) -> BTreeMap<(String, Millis), QueueStats> {
    let mut out: BTreeMap<(String, Millis), QueueStats> = BTreeMap::new();
    for c in calls {
        let Some(q) = c.queued_at.filter(|q| range.contains(*q)) else {
            continue;
        };
        let key = (c.queue.clone().unwrap_or_default(), interval.bucket(q));
        out.entry(key).or_default().add(c, sl_threshold_ms);
    }
    out
}

/// A queue's service-level standard: `target_pct` % of calls answered within `threshold_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceLevelTarget {
    pub threshold_ms: u64,
    pub target_pct: u8,
}

impl Default for ServiceLevelTarget {
    fn default() -> Self {
        ServiceLevelTarget {
            threshold_ms: DEFAULT_SERVICE_LEVEL_MS,
            target_pct: DEFAULT_SERVICE_LEVEL_PCT,
        }
    }
}

/// Each queue's service-level standard (queues.toml `service_level_s` /
/// `service_level_pct`); queues not configured (any more) get `fallback`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceLevelTargets {
    pub fallback: ServiceLevelTarget,
    pub queues: BTreeMap<String, ServiceLevelTarget>,
}

impl ServiceLevelTargets {
    /// From the configured queues; `threshold_override_ms` replaces every queue's T (the
    /// `--service-level-secs` flag) and keeps their target percentages.
    pub fn from_queues(set: &QueueSet, threshold_override_ms: Option<u64>) -> Self {
        let queues = set
            .names()
            .filter_map(|n| set.get(n))
            .map(|q| {
                let t = ServiceLevelTarget {
                    threshold_ms: threshold_override_ms
                        .unwrap_or(q.service_level_s.saturating_mul(1000)),
                    target_pct: q.service_level_pct,
                };
                (q.name.clone(), t)
            })
            .collect();
        let mut fallback = ServiceLevelTarget::default();
        if let Some(t) = threshold_override_ms {
            fallback.threshold_ms = t;
        }
        ServiceLevelTargets { fallback, queues }
    }

    pub fn get(&self, queue: &str) -> ServiceLevelTarget {
        self.queues.get(queue).copied().unwrap_or(self.fallback)
    }

    /// The distinct thresholds in use (the fallback's included).
    pub fn thresholds(&self) -> std::collections::BTreeSet<u64> {
        self.queues
            .values()
            .map(|t| t.threshold_ms)
            .chain([self.fallback.threshold_ms])
            .collect()
    }
}

/// `queue_stats` with each queue's own service-level threshold.
pub fn queue_stats_per_queue<'a>(
    calls: impl IntoIterator<Item = &'a CallTimes>,
    range: Range,
    interval: Interval,
    targets: &ServiceLevelTargets,
) -> BTreeMap<(String, Millis), QueueStats> {
    let mut out: BTreeMap<(String, Millis), QueueStats> = BTreeMap::new();
    for c in calls {
        let Some(q) = c.queued_at.filter(|q| range.contains(*q)) else {
            continue;
        };
        let queue = c.queue.clone().unwrap_or_default();
        let t = targets.get(&queue).threshold_ms;
        out.entry((queue, interval.bucket(q)))
            .or_default()
            .add(c, t);
    }
    out
}

/// One offer attempt as the agent figures need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferFacts {
    pub agent: String,
    pub offered_at: Millis,
    /// `None` while ringing.
    pub outcome: Option<String>,
}

/// One agent state change; `seq` orders changes within one millisecond (the row id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub agent: String,
    pub at: Millis,
    pub seq: i64,
    pub state: String,
    pub reason: Option<String>,
}

/// Per agent and bucket, as exact integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AgentStats {
    pub offers: u64,
    pub offers_answered: u64,
    pub offers_no_answer: u64,
    /// Busy or rejected.
    pub offers_declined: u64,
    /// Calls this agent answered (first agent).
    pub answered: u64,
    pub handled: u64,
    pub talk_ms_total: u64,
    pub hold_ms_total: u64,
    pub acw_ms_total: u64,
    pub aht_ms_total: u64,
    /// Logged in and not on break (see `STAFFED_STATES`).
    pub staffed_ms: u64,
}

impl AgentStats {
    /// AHT: mean talk + hold + ACW of handled calls, ms.
    pub fn aht_ms(&self) -> Option<f64> {
        ratio(self.aht_ms_total, self.handled)
    }

    /// (talk + hold + ACW) / staffed time.
    pub fn occupancy(&self) -> Option<f64> {
        ratio(self.aht_ms_total, self.staffed_ms)
    }

    fn add_call(&mut self, c: &CallTimes) {
        self.answered += 1;
        let mut q = QueueStats::default();
        q.add_handled(c);
        self.handled += q.handled;
        self.talk_ms_total = self.talk_ms_total.saturating_add(q.talk_ms_total);
        self.hold_ms_total = self.hold_ms_total.saturating_add(q.hold_ms_total);
        self.acw_ms_total = self.acw_ms_total.saturating_add(q.acw_ms_total);
        self.aht_ms_total = self.aht_ms_total.saturating_add(q.aht_ms_total);
    }

    fn add_offer(&mut self, o: &OfferFacts) {
        self.offers += 1;
        match o.outcome.as_deref() {
            Some("answered") => self.offers_answered += 1,
            Some("no_answer") => self.offers_no_answer += 1,
            Some("busy" | "rejected") => self.offers_declined += 1,
            _ => {}
        }
    }
}

/// Staffed milliseconds per (agent, bucket start): each state lasts until the agent's next
/// change (ties ordered by `seq`), the last until `until`; clipped to `[since, until)`.
pub fn staffed_ms(
    changes: &[StateChange],
    since: Option<Millis>,
    until: Millis,
    interval: Interval,
) -> BTreeMap<(String, Millis), u64> {
    let mut by_agent: BTreeMap<&str, Vec<&StateChange>> = BTreeMap::new();
    for c in changes {
        by_agent.entry(c.agent.as_str()).or_default().push(c);
    }
    let w = interval.width_ms();
    let mut out = BTreeMap::new();
    for (agent, mut list) in by_agent {
        list.sort_by_key(|c| (c.at, c.seq));
        for (i, c) in list.iter().enumerate() {
            if !STAFFED_STATES.contains(&c.state.as_str()) {
                continue;
            }
            let end = list.get(i + 1).map_or(until, |n| n.at).min(until);
            let start = since.map_or(c.at, |s| c.at.max(s));
            let (mut s, e) = (start.as_u64(), end.as_u64());
            while s < e {
                let b = s / w * w;
                let piece_end = (b + w).min(e);
                *out.entry((agent.to_string(), Millis(b))).or_insert(0u64) += piece_end - s;
                s = piece_end;
            }
        }
    }
    out
}

/// Per agent and bucket start: calls answered in `[since, until)` (by `agent_answered_at`),
/// offers made in it (by `offered_at`) and staffed time within it.
pub fn agent_stats<'a>(
    calls: impl IntoIterator<Item = &'a CallTimes>,
    offers: &[OfferFacts],
    changes: &[StateChange],
    since: Option<Millis>,
    until: Millis,
    interval: Interval,
) -> BTreeMap<(String, Millis), AgentStats> {
    let range = Range {
        since,
        until: Some(until),
    };
    let mut out: BTreeMap<(String, Millis), AgentStats> = BTreeMap::new();
    for c in calls {
        let (Some(agent), Some(a)) = (&c.agent, c.agent_answered_at) else {
            continue;
        };
        if range.contains(a) {
            out.entry((agent.clone(), interval.bucket(a)))
                .or_default()
                .add_call(c);
        }
    }
    for o in offers.iter().filter(|o| range.contains(o.offered_at)) {
        out.entry((o.agent.clone(), interval.bucket(o.offered_at)))
            .or_default()
            .add_offer(o);
    }
    for (key, ms) in staffed_ms(changes, since, until, interval) {
        out.entry(key).or_default().staffed_ms += ms;
    }
    out
}

/// Interval buckets of the whole-system `Summary` (3-ring compliance, IVR containment), by
/// `arrived_at`.
pub fn summary_by_interval<'a>(
    calls: impl IntoIterator<Item = &'a CallFacts>,
    range: Range,
    interval: Interval,
) -> BTreeMap<Millis, Summary> {
    let mut out: BTreeMap<Millis, Summary> = BTreeMap::new();
    for c in calls.into_iter().filter(|c| range.contains(c.arrived_at)) {
        out.entry(interval.bucket(c.arrived_at)).or_default().add(c);
    }
    out
}

pub mod erlang;
pub mod resolution;
pub mod survey;

#[cfg(test)]
mod tests;
