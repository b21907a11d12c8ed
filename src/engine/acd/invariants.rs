//! The ACD's consistency check, run by tests and the proptests after every input: no agent
//! double-booked, indexes and timers agree with the calls and agents they describe.

use super::agent::AgentState;
use super::queue::NoAgentsPolicy;
use super::select::AgentIdx;
use super::timers::Timer;
use super::{Acd, CallState};
use std::collections::HashMap;

impl Acd {
    /// Checks the ACD's internal consistency; for tests (O(agents * calls)).
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut holders: HashMap<u64, usize> = HashMap::new();
        for (a, ag) in self.agents.iter().enumerate() {
            if let AgentState::Reserved { call } | AgentState::OnCall { call } = ag.state {
                if let Some(other) = holders.insert(call, a) {
                    return Err(format!("call {call} held by agents {other} and {a}"));
                }
                let expect = match ag.state {
                    AgentState::Reserved { .. } => CallState::Offering(a),
                    _ => CallState::Connected(a),
                };
                if self.calls.get(&call).map(|c| c.state) != Some(expect) {
                    return Err(format!(
                        "agent {a} state {:?} disagrees with call",
                        ag.state
                    ));
                }
            }
            for s in &self.serves[a] {
                let inx = self.rt[s.q].ready.contains(s.level, ag.ready_since, a);
                if inx != ag.is_ready() {
                    return Err(format!("agent {a} ready index mismatch in queue {}", s.q));
                }
            }
        }
        for (id, c) in &self.calls {
            let waiting = self.rt[c.queue]
                .waiting
                .contains(&c.language, c.step, c.key, *id);
            if waiting != (c.state == CallState::Waiting) {
                return Err(format!("call {id} wait index mismatch"));
            }
            match c.state {
                CallState::Offering(a) | CallState::Connected(a) => {
                    if self.agents[a].state.call() != Some(*id) {
                        return Err(format!("call {id} points at agent {a} who is elsewhere"));
                    }
                }
                CallState::Waiting => {
                    if !c.max_wait_due {
                        if let Some(a) = (0..self.agents.len())
                            .find(|&a| self.agents[a].is_ready() && self.eligible(a, c))
                        {
                            return Err(format!("call {id} waits while agent {a} is ready for it"));
                        }
                    }
                }
            }
        }
        for (q, rt) in self.rt.iter().enumerate() {
            let logged_in: Vec<AgentIdx> = rt
                .members
                .iter()
                .copied()
                .filter(|&a| self.agents[a].state != AgentState::LoggedOut)
                .collect();
            if logged_in.len() != rt.staffed {
                return Err(format!(
                    "queue {q}: staffed {} != {}",
                    rt.staffed,
                    logged_in.len()
                ));
            }
            for (l, &n) in &rt.staffed_lang {
                let real = logged_in
                    .iter()
                    .filter(|&&a| self.agents[a].profile.languages.contains(l))
                    .count();
                if real != n {
                    return Err(format!("queue {q}: staffed in {l} {n} != {real}"));
                }
            }
        }
        for (id, c) in &self.calls {
            let armed = self.timers.is_set(Timer::NoAgents(*id));
            let needs = c.state == CallState::Waiting
                && !c.max_wait_due
                && !self.staffed(c)
                && self.specs[c.queue].when_no_agents != NoAgentsPolicy::Wait;
            if needs && !armed {
                return Err(format!(
                    "call {id} has nobody to take it and no grace timer"
                ));
            }
            if armed && c.state == CallState::Waiting && self.staffed(c) {
                return Err(format!("call {id} is staffed but its grace timer runs"));
            }
        }
        let total: usize = self.rt.iter().map(|r| r.waiting.len()).sum();
        let waiting = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Waiting)
            .count();
        if total != waiting {
            return Err(format!("{total} indexed waiting calls, {waiting} waiting"));
        }
        Ok(())
    }
}
