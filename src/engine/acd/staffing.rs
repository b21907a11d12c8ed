//! Queues with nobody to take a call (`when_no_agents`): who could ever serve a waiting
//! call, the grace timer, and what happens when it runs out.

use super::queue::NoAgentsPolicy;
use super::select::AgentIdx;
use super::timers::Timer;
use super::{Acd, AgentState, Call, CallState, ExitReason};
use crate::engine::Millis;

impl Acd {
    /// The no-agents grace period of a call is over: re-check, then the queue's policy.
    pub(super) fn no_agents(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Waiting || self.staffed(c) {
            return;
        }
        let spec = &self.specs[c.queue];
        let closing = spec.closing_prompt.clone();
        match (spec.when_no_agents, spec.overflow_queue()) {
            (NoAgentsPolicy::Wait, _) => {}
            (NoAgentsPolicy::Overflow, Some(queue)) => {
                let queue = queue.to_string();
                self.exit_to_overflow(now, call, ExitReason::NoAgents, queue);
            }
            (NoAgentsPolicy::Overflow, None) | (NoAgentsPolicy::Close, _) => {
                self.exit_closing(now, call, ExitReason::NoAgents, closing);
            }
        }
    }

    /// Is someone logged in who could ever take this call (see the module doc)?
    pub(super) fn staffed(&self, c: &Call) -> bool {
        let rt = &self.rt[c.queue];
        match &c.language {
            None => rt.staffed > 0,
            Some(l) => rt.staffed_lang.get(l).is_some_and(|&n| n > 0),
        }
    }

    /// `staffed`, not counting agent `a` (who is leaving the call).
    pub(super) fn staffed_without(&self, c: &Call, a: AgentIdx) -> bool {
        let rt = &self.rt[c.queue];
        let agent = &self.agents[a];
        let counted = agent.state != AgentState::LoggedOut
            && self.serves[a].iter().any(|s| s.q == c.queue)
            && c.language
                .as_ref()
                .is_none_or(|l| agent.profile.languages.contains(l));
        let staffed = match &c.language {
            None => rt.staffed,
            Some(l) => rt.staffed_lang.get(l).copied().unwrap_or(0),
        };
        staffed > usize::from(counted)
    }

    /// Keeps the no-agents grace timer of a call right: armed (once; a running grace is not
    /// restarted) while it waits unstaffed in a queue that does not just wait, else off.
    pub(super) fn check_staffed(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let spec = &self.specs[c.queue];
        let needs = c.state == CallState::Waiting
            && spec.when_no_agents != NoAgentsPolicy::Wait
            && !self.staffed(c);
        if !needs {
            self.timers.cancel(Timer::NoAgents(call));
        } else if !self.timers.is_set(Timer::NoAgents(call)) {
            self.timers
                .set(Timer::NoAgents(call), now.plus(spec.no_agents_grace_ms));
        }
    }

    /// Agent `a` logged in (`joined`) or out: update the staffing counts of their queues;
    /// where a count reaches zero, arm the grace timer of every waiting call it leaves
    /// unstaffed; where it leaves zero, cancel the timers of the calls it staffs again.
    pub(super) fn staffing_changed(&mut self, now: Millis, a: AgentIdx, joined: bool) {
        let langs: Vec<String> = self.agents[a].profile.languages.iter().cloned().collect();
        for i in 0..self.serves[a].len() {
            let q = self.serves[a][i].q;
            let rt = &mut self.rt[q];
            let bump = |n: &mut usize| {
                let was = *n;
                *n = if joined {
                    was + 1
                } else {
                    was.saturating_sub(1)
                };
                // Did the count cross zero (0 -> 1 on join, 1 -> 0 on leave)?
                (was == 0) == joined && (was == 0 || *n == 0)
            };
            let all = bump(&mut rt.staffed);
            let mut crossed: Vec<&String> = Vec::new();
            for l in &langs {
                if bump(rt.staffed_lang.entry(l.clone()).or_default()) {
                    crossed.push(l);
                }
            }
            if !all && crossed.is_empty() {
                continue;
            }
            let affected = rt.waiting.calls_where(|lang| match lang {
                None => all,
                Some(l) => crossed.contains(&l),
            });
            for call in affected {
                self.check_staffed(now, call);
            }
        }
    }
}
