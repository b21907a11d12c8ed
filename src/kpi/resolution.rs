//! Contact resolution (issue 10): disposition counts, the disposition-based first contact
//! resolution and, beside it, the repeat-call proxy of METRICS.md. `Store::resolution_stats`
//! computes the same in SQL; a property test (tests/dispositions.rs) keeps them equal.
//!
//! - disposition FCR = calls whose (last) disposition counts as resolved / calls with a
//!   disposition;
//! - repeat-call rate = calls whose number called again within 7 days (a later arrival, any
//!   queue, at most `REPEAT_WINDOW_MS` after this one) / calls; FCR proxy = 1 - that rate.
//!   An empty or `anonymous` caller never counts as calling again.
//!
//! Grouping follows the queue and agent figures: per queue by `queued_at`, per agent (the
//! answering agent) by `agent_answered_at`.

use super::{ratio, Interval, Range};
use crate::engine::time::Millis;
use serde::Serialize;
use std::collections::BTreeMap;

/// "Called again within 7 days" (METRICS.md repeat-call rate).
pub const REPEAT_WINDOW_MS: u64 = 7 * 86_400_000;

/// What the figures need from one call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolutionFacts {
    pub arrived_at: Millis,
    pub caller: String,
    pub queue: Option<String>,
    pub queued_at: Option<Millis>,
    pub agent: Option<String>,
    pub agent_answered_at: Option<Millis>,
    /// The call's current disposition (name) and whether it counts as resolved.
    pub disposition: Option<String>,
    pub disposition_resolved: bool,
}

/// Per group and bucket, as exact counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResolutionStats {
    pub calls: u64,
    /// Calls whose number called again within 7 days.
    pub repeated: u64,
    /// Calls with a disposition, and those whose disposition counts as resolved.
    pub dispositioned: u64,
    pub resolved: u64,
    /// Calls per disposition name.
    pub by_disposition: BTreeMap<String, u64>,
}

impl ResolutionStats {
    /// Counts `n` calls alike (the SQL side adds grouped rows).
    pub fn add_n(&mut self, n: u64, repeated: bool, disposition: Option<&str>, resolved: bool) {
        self.calls += n;
        if repeated {
            self.repeated += n;
        }
        if let Some(d) = disposition {
            self.dispositioned += n;
            if resolved {
                self.resolved += n;
            }
            *self.by_disposition.entry(d.to_string()).or_insert(0) += n;
        }
    }

    /// Resolved dispositions / calls with a disposition.
    pub fn fcr_disposition(&self) -> Option<f64> {
        ratio(self.resolved, self.dispositioned)
    }

    /// Calls whose number called again within 7 days / calls.
    pub fn repeat_call_rate(&self) -> Option<f64> {
        ratio(self.repeated, self.calls)
    }

    /// 1 - repeat-call rate (METRICS.md FCR proxy).
    pub fn fcr_proxy(&self) -> Option<f64> {
        self.repeat_call_rate().map(|r| 1.0 - r)
    }

    /// `name=count;...` (reports).
    pub fn counts_text(&self) -> String {
        self.by_disposition
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Whether a caller's number can be recognised on a later call.
pub fn identifiable_caller(caller: &str) -> bool {
    !caller.is_empty() && !caller.eq_ignore_ascii_case("anonymous")
}

/// For each call (same order): did its number call again within 7 days? `calls` must hold
/// every call that could be that later one (up to 7 days past the report's end).
pub fn repeated_flags(calls: &[ResolutionFacts]) -> Vec<bool> {
    let mut by_caller: BTreeMap<&str, Vec<Millis>> = BTreeMap::new();
    for c in calls.iter().filter(|c| identifiable_caller(&c.caller)) {
        by_caller.entry(&c.caller).or_default().push(c.arrived_at);
    }
    for times in by_caller.values_mut() {
        times.sort();
    }
    calls
        .iter()
        .map(|c| {
            let Some(times) = by_caller.get(c.caller.as_str()) else {
                return false;
            };
            // The first arrival strictly after this one.
            let i = times.partition_point(|t| *t <= c.arrived_at);
            times
                .get(i)
                .is_some_and(|t| t.since(c.arrived_at) <= REPEAT_WINDOW_MS)
        })
        .collect()
}

/// Which group and time a call counts under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolutionGroup {
    /// The first queue, by `queued_at`.
    Queue,
    /// The answering agent, by `agent_answered_at`.
    Agent,
}

/// Per (queue or agent, bucket start) over the calls whose grouping time is in `range`.
pub fn resolution_stats(
    calls: &[ResolutionFacts],
    group: ResolutionGroup,
    range: Range,
    interval: Interval,
) -> BTreeMap<(String, Millis), ResolutionStats> {
    let repeated = repeated_flags(calls);
    let mut out: BTreeMap<(String, Millis), ResolutionStats> = BTreeMap::new();
    for (c, rep) in calls.iter().zip(repeated) {
        let (name, at) = match group {
            ResolutionGroup::Queue => (c.queue.clone().unwrap_or_default(), c.queued_at),
            ResolutionGroup::Agent => match &c.agent {
                Some(a) => (a.clone(), c.agent_answered_at),
                None => continue,
            },
        };
        let Some(at) = at.filter(|t| range.contains(*t)) else {
            continue;
        };
        out.entry((name, interval.bucket(at))).or_default().add_n(
            1,
            rep,
            c.disposition.as_deref(),
            c.disposition_resolved,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(caller: &str, at: u64, disposition: Option<(&str, bool)>) -> ResolutionFacts {
        ResolutionFacts {
            arrived_at: Millis(at),
            caller: caller.into(),
            queue: Some("tech".into()),
            queued_at: Some(Millis(at + 1_000)),
            agent: Some("1001".into()),
            agent_answered_at: Some(Millis(at + 5_000)),
            disposition: disposition.map(|d| d.0.to_string()),
            disposition_resolved: disposition.is_some_and(|d| d.1),
        }
    }

    /// A hand-worked day: four calls in the queue, three with a disposition (two resolved),
    /// one caller calling back within 7 days and one after 8 days.
    #[test]
    fn hand_worked_example() {
        let day = 86_400_000;
        let calls = vec![
            call("+8613800000001", 0, Some(("resolved", true))),
            call("+8613800000001", 3 * day, Some(("follow_up", false))), // a repeat of #1
            call("+8613800000002", 1_000, Some(("info_only", true))),
            call("+8613800000002", 1_000 + 8 * day, None), // too late to repeat #3
            call("anonymous", 2_000, None),
            call("anonymous", 3_000, None),
        ];
        assert_eq!(
            repeated_flags(&calls),
            vec![true, false, false, false, false, false]
        );
        let range = Range {
            since: Some(Millis(0)),
            until: Some(Millis(day)),
        };
        let by_queue = resolution_stats(&calls, ResolutionGroup::Queue, range, Interval::Day);
        let s = &by_queue[&("tech".to_string(), Millis(0))];
        assert_eq!(s.calls, 4);
        assert_eq!(s.repeated, 1);
        assert_eq!(s.dispositioned, 2);
        assert_eq!(s.resolved, 2);
        assert_eq!(s.fcr_disposition(), Some(1.0));
        assert_eq!(s.fcr_proxy(), Some(0.75));
        assert_eq!(s.counts_text(), "info_only=1;resolved=1");
        let all = Range::default();
        let by_agent = resolution_stats(&calls, ResolutionGroup::Agent, all, Interval::Day);
        let s = &by_agent[&("1001".to_string(), Millis(3 * day))];
        assert_eq!((s.calls, s.dispositioned, s.resolved), (1, 1, 0));
        assert_eq!(s.fcr_disposition(), Some(0.0));
        assert_eq!(ResolutionStats::default().fcr_disposition(), None);
    }
}
