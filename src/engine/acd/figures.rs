//! Per-queue figures for the live view: waiting calls, longest wait, agents by state.

use super::agent::AgentState;
use super::{Acd, CallState};
use crate::engine::live::QueueCounts;

impl Acd {
    /// Queue names in index order (the order of `queue_counts`).
    pub fn queue_names(&self) -> &[String] {
        &self.names
    }

    /// Fills `out` with one entry per queue: O(calls in the ACD + agent memberships).
    pub fn queue_counts(&self, out: &mut Vec<QueueCounts>) {
        out.clear();
        out.resize(self.names.len(), QueueCounts::default());
        for c in self.calls.values() {
            if matches!(c.state, CallState::Connected(_)) {
                continue;
            }
            let f = &mut out[c.queue];
            f.waiting += 1;
            let since = c.key.entered_at;
            f.longest_wait_since = Some(f.longest_wait_since.map_or(since, |s| s.min(since)));
        }
        for (a, agent) in self.agents.iter().enumerate() {
            if agent.state == AgentState::LoggedOut {
                continue;
            }
            for s in &self.serves[a] {
                let n = &mut out[s.q].agents;
                n.logged_in += 1;
                match agent.state {
                    AgentState::Ready => n.ready += 1,
                    AgentState::Reserved { .. } => n.reserved += 1,
                    AgentState::OnCall { .. } => n.on_call += 1,
                    AgentState::WrapUp { .. } => n.wrap_up += 1,
                    AgentState::NotReady(_) => n.not_ready += 1,
                    AgentState::LoggedOut => {}
                }
            }
        }
    }
}
