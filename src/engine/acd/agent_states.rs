//! Agent state transitions inside the ACD: ready (and its idle clock), leaving ready, and
//! wrap-up after a call, with deferred not-ready / logout requests applied at its end.

use super::agent::{AgentState, Effect, Pending};
use super::select::AgentIdx;
use super::timers::Timer;
use super::{Acd, AcdEvent};
use crate::engine::Millis;

impl Acd {
    /// Changes an agent's state: keeps the ready indexes right and records the change.
    pub(super) fn set_state(&mut self, now: Millis, a: AgentIdx, st: AgentState) {
        let was_ready = self.agents[a].is_ready();
        let since = self.agents[a].ready_since;
        if was_ready {
            for s in &self.serves[a] {
                self.rt[s.q].ready.remove(s.level, since, a);
            }
        }
        let changed = self.agents[a].state != st;
        let was_in = self.agents[a].state != AgentState::LoggedOut;
        let now_in = st != AgentState::LoggedOut;
        self.agents[a].state = st;
        if self.agents[a].is_ready() {
            for s in &self.serves[a] {
                self.rt[s.q].ready.insert(s.level, since, a);
            }
        }
        if changed {
            let ag = &self.agents[a];
            self.events.push_back(AcdEvent::AgentState {
                agent: ag.profile.id.clone(),
                at: now,
                state: ag.state.name(),
                reason: ag.state.reason().map(str::to_string),
            });
        }
        if was_in != now_in {
            self.staffing_changed(now, a, now_in);
        }
    }

    /// Ready, then route: `keep_idle` keeps the idle clock of an agent whose offer failed
    /// for reasons that are not theirs to pay for in the queue order.
    pub(super) fn enter_ready(&mut self, now: Millis, a: AgentIdx, keep_idle: bool) {
        // Callers never pass a Ready agent, so the agent is in no index while the key changes.
        if !keep_idle || self.agents[a].ready_since == Millis::ZERO {
            self.agents[a].ready_since = now;
        }
        self.set_state(now, a, AgentState::Ready);
        self.route_agent(now, a);
    }

    /// Not-ready / logout / registration loss with the effect `check` chose.
    pub(super) fn leave(&mut self, now: Millis, a: AgentIdx, effect: Effect, target: AgentState) {
        match effect {
            Effect::Now => self.set_state(now, a, target),
            Effect::CancelOffer(call) => {
                self.timers.cancel(Timer::Ring(call));
                self.finish_offer(now, call, a, "cancelled");
                self.push_cancel(call, a);
                self.set_state(now, a, target);
                self.back_to_waiting(now, call);
            }
            Effect::EndWrapUp(call) => self.end_wrap_up(now, a, call, Some(target)),
            Effect::Defer => {
                self.agents[a].pending = Some(match target {
                    AgentState::NotReady(r) => Pending::NotReady(r),
                    _ => Pending::LogOut,
                });
            }
        }
    }

    pub(super) fn start_wrap_up(&mut self, now: Millis, a: AgentIdx, call: u64) {
        self.agents[a].ended_at = now;
        self.set_state(now, a, AgentState::WrapUp { call });
        let ms = self
            .q_index
            .get(&self.agents[a].wrap_queue)
            .map_or(0, |&q| self.specs[q].wrap_up_ms);
        self.timers.set(Timer::WrapUp(a), now.plus(ms));
    }

    /// Ends wrap-up: to `target` if the agent asked for something, else to what they asked
    /// for during the call, else Ready.
    pub(super) fn end_wrap_up(
        &mut self,
        now: Millis,
        a: AgentIdx,
        call: u64,
        target: Option<AgentState>,
    ) {
        self.timers.cancel(Timer::WrapUp(a));
        let ag = &mut self.agents[a];
        self.events.push_back(AcdEvent::WrapUpEnded {
            call,
            agent: ag.profile.id.clone(),
            at: now,
        });
        let handled = now.since(ag.answered_at);
        if let Some(&q) = self.q_index.get(&ag.wrap_queue) {
            let keep = self.set.handle_time_samples;
            self.rt[q].handle.push(handled, keep);
        }
        let pending = ag.pending.take();
        let target = target.or(match pending {
            Some(Pending::NotReady(r)) => Some(AgentState::NotReady(r)),
            Some(Pending::LogOut) => Some(AgentState::LoggedOut),
            None => None,
        });
        match target {
            Some(AgentState::Ready) | None => self.enter_ready(now, a, false),
            Some(st) => self.set_state(now, a, st),
        }
    }
}
