//! Offering calls to agents: which agent may take which call, routing the one call or
//! agent that changed, the offer itself, and what a ring timeout or a failed offer does.

use super::agent::AgentState;
use super::select::{self, AgentIdx};
use super::timers::Timer;
use super::{Acd, AcdAction, AcdEvent, Call, CallState, OfferOutcome};
use crate::engine::Millis;

impl Acd {
    pub(super) fn push_cancel(&mut self, call: u64, a: AgentIdx) {
        self.actions.push_back(AcdAction::CancelOffer {
            call,
            agent: self.agents[a].profile.id.clone(),
        });
    }

    pub(super) fn finish_offer(
        &mut self,
        now: Millis,
        call: u64,
        a: AgentIdx,
        outcome: &'static str,
    ) {
        let attempt = self.calls.get(&call).map_or(0, |c| c.attempt);
        self.events.push_back(AcdEvent::OfferEnded {
            call,
            agent: self.agents[a].profile.id.clone(),
            attempt,
            at: now,
            outcome,
        });
    }

    pub(super) fn ring_timeout(&mut self, now: Millis, call: u64) {
        if let Some(CallState::Offering(a)) = self.calls.get(&call).map(|c| c.state) {
            self.push_cancel(call, a);
            self.offer_lost(now, call, a, OfferOutcome::NoAnswer);
        }
    }

    /// An offer ended without an answer: the agent moves on per `outcome`, the call goes
    /// back to its place in the queue and to the next agent.
    pub(super) fn offer_lost(
        &mut self,
        now: Millis,
        call: u64,
        a: AgentIdx,
        outcome: OfferOutcome,
    ) {
        self.finish_offer(now, call, a, outcome.as_str());
        if outcome == OfferOutcome::NoAnswer {
            self.set_state(now, a, AgentState::NotReady("missed_call".into()));
            self.back_to_waiting(now, call);
        } else {
            if let Some(c) = self.calls.get_mut(&call) {
                c.refused.push(a);
            }
            self.back_to_waiting(now, call);
            self.enter_ready(now, a, true);
        }
    }

    /// The call is in no offer any more: back into its queue (same place), max wait if it
    /// fell due while ringing, else route it.
    pub(super) fn back_to_waiting(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.state = CallState::Waiting;
        self.rt[c.queue]
            .waiting
            .insert(&c.language, c.step, c.key, call);
        if c.max_wait_due {
            self.max_wait(now, call);
        } else {
            self.route_call(now, call);
            self.check_staffed(now, call);
        }
    }

    pub(super) fn remember_owner(&mut self, now: Millis, caller: String, a: AgentIdx) {
        let window = self.set.repeat_window_ms;
        while let Some((at, _)) = self.owner_log.front() {
            if now.since(*at) <= window {
                break;
            }
            if let Some((at, who)) = self.owner_log.pop_front() {
                if self.owners.get(&who).is_some_and(|(_, t)| *t == at) {
                    self.owners.remove(&who);
                }
            }
        }
        if window == 0 || caller.is_empty() {
            return;
        }
        self.owners.insert(caller.clone(), (a, now));
        self.owner_log.push_back((now, caller));
    }

    /// May agent `a` (in any state) take call `c` at its current step?
    pub(super) fn eligible(&self, a: AgentIdx, c: &Call) -> bool {
        let ok_queue = self.serves[a]
            .iter()
            .any(|s| s.q == c.queue && s.min_step <= c.step);
        ok_queue
            && c.language
                .as_ref()
                .is_none_or(|l| self.agents[a].profile.languages.contains(l))
            && !c.refused.contains(&a)
    }

    /// Offers a waiting call to its best Ready agent, if any.
    pub(super) fn route_call(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Waiting {
            return;
        }
        let owner = self
            .owners
            .get(&c.caller)
            .filter(|(_, at)| now.since(*at) <= self.set.repeat_window_ms)
            .map(|(a, _)| *a);
        let pick = select::best_agent(&self.rt[c.queue].ready, owner, |a| {
            self.agents[a].is_ready() && self.eligible(a, c)
        });
        if let Some(a) = pick {
            self.offer(now, call, a);
        }
    }

    /// Offers a Ready agent the best waiting call across the queues they serve, if any.
    pub(super) fn route_agent(&mut self, now: Millis, a: AgentIdx) {
        if !self.agents[a].is_ready() {
            return;
        }
        let mut best: Option<(select::CrossKey, u64)> = None;
        for s in &self.serves[a] {
            let langs = &self.agents[a].profile.languages;
            let found = self.rt[s.q].waiting.first_eligible(
                |lang, step| step >= s.min_step && lang.as_ref().is_none_or(|l| langs.contains(l)),
                |id| self.calls.get(&id).is_some_and(|c| !c.refused.contains(&a)),
            );
            if let Some((k, id)) = found {
                let ck = select::cross_key(self.specs[s.q].priority, k);
                if best.as_ref().is_none_or(|(b, _)| ck < *b) {
                    best = Some((ck, id));
                }
            }
        }
        if let Some((_, call)) = best {
            self.offer(now, call, a);
        }
    }

    pub(super) fn offer(&mut self, now: Millis, call: u64, a: AgentIdx) {
        self.unwait(call);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.state = CallState::Offering(a);
        c.attempt += 1;
        let attempt = c.attempt;
        let ring_timeout_ms = self.specs[c.queue].ring_timeout_ms;
        self.timers
            .set(Timer::Ring(call), now.plus(ring_timeout_ms));
        self.set_state(now, a, AgentState::Reserved { call });
        let agent = self.agents[a].profile.id.clone();
        self.events.push_back(AcdEvent::OfferStarted {
            call,
            agent: agent.clone(),
            attempt,
            at: now,
        });
        self.actions.push_back(AcdAction::Offer {
            call,
            agent,
            attempt,
            ring_timeout_ms,
        });
    }
}
