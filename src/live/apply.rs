//! Applying the engine's records and live events to the read model.

use super::model::{CallPhase, DayCall, LiveAgent, LiveCall, LiveModel};
use super::snapshot::Section;
use crate::engine::live::LiveEvent;
use crate::engine::record::Record;
use crate::engine::time::Millis;
use crate::kpi::{self, HoldSpan};

impl LiveModel {
    pub fn apply_event(&mut self, ev: &LiveEvent) {
        match ev {
            LiveEvent::QueueFigures { queue, counts } => {
                self.queue_counts.insert(queue.clone(), *counts);
                self.mark(&[Section::Queues]);
            }
            LiveEvent::CallerQueued {
                call_id, language, ..
            } => {
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.language = Some(language.clone());
                }
            }
        }
    }

    pub fn apply(&mut self, rec: &Record) {
        self.now = self.now.max(rec.at());
        if let Some(id) = rec.call_id() {
            if let Some(d) = self.today.get_mut(id) {
                d.last_event_at = d.last_event_at.max(rec.at());
            }
        }
        match rec {
            Record::CallStarted {
                call_id,
                caller,
                arrived_at,
                ring_cycle_ms,
                ..
            } => {
                let mut d = DayCall::default();
                d.times.arrived_at = *arrived_at;
                d.facts.arrived_at = *arrived_at;
                d.facts.ring_cycle_ms = Some(*ring_cycle_ms);
                d.last_event_at = *arrived_at;
                self.today.insert(call_id.clone(), d);
                self.calls.insert(
                    call_id.clone(),
                    LiveCall {
                        call_id: call_id.clone(),
                        number: crate::engine::mask_number(caller),
                        phase: CallPhase::Ivr,
                        since: *arrived_at,
                        ivr_node: None,
                        queue: None,
                        queued_at: None,
                        priority: 0,
                        language: None,
                        agent: None,
                    },
                );
                self.mark(&[Section::Calls]);
            }
            Record::CallAnswered {
                call_id,
                answered_at,
                ..
            } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.facts.answered_at = Some(*answered_at);
                }
            }
            Record::IvrStep { call_id, node, .. } => {
                if let Some(c) = self.calls.get_mut(call_id) {
                    if c.ivr_node.as_deref() != Some(node) {
                        c.ivr_node = Some(node.clone());
                        self.mark(&[Section::Calls]);
                    }
                }
            }
            Record::IvrLeft {
                call_id, outcome, ..
            } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.facts.ivr_outcome = Some(*outcome);
                }
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.ivr_node = None;
                }
                self.mark_figures();
                self.mark(&[Section::Calls]);
            }
            Record::CallQueued {
                call_id,
                at,
                queue,
                priority,
            } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    if d.times.queued_at.is_none() {
                        d.times.queued_at = Some(*at);
                        d.times.queue = Some(queue.clone());
                    }
                }
                self.recent.push_back((*at, queue.clone()));
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.phase = CallPhase::Queued;
                    c.since = *at;
                    c.queue = Some(queue.clone());
                    c.queued_at = Some(*at);
                    c.priority = *priority;
                    c.ivr_node = None;
                }
                self.mark_figures();
                self.mark(&[Section::Waiting, Section::Calls]);
            }
            Record::OfferStarted {
                call_id, agent, at, ..
            } => {
                let mut queue = None;
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.phase = CallPhase::Offered;
                    c.agent = Some(agent.clone());
                    queue = c.queue.clone();
                }
                if let Some(a) = self.agent_mut(agent) {
                    a.call = Some((call_id.clone(), queue, *at));
                }
                self.mark(&[Section::Waiting, Section::Calls, Section::Agents]);
            }
            Record::OfferEnded {
                call_id, outcome, ..
            } => {
                if outcome != "answered" {
                    let mut agent = None;
                    if let Some(c) = self.calls.get_mut(call_id) {
                        if c.phase == CallPhase::Offered {
                            c.phase = CallPhase::Queued;
                            agent = c.agent.take();
                        }
                    }
                    if let Some(a) = agent.and_then(|a| self.agent_mut(&a)) {
                        if a.call.as_ref().is_some_and(|(id, _, _)| id == call_id) {
                            a.call = None;
                        }
                    }
                    self.mark(&[Section::Waiting, Section::Calls, Section::Agents]);
                }
            }
            Record::AgentAnswered { call_id, agent, at } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.times.agent = Some(agent.clone());
                    d.times.agent_answered_at = Some(*at);
                }
                let mut queue = None;
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.phase = CallPhase::Talking;
                    c.since = *at;
                    c.agent = Some(agent.clone());
                    queue = c.queue.clone();
                }
                if let Some(a) = self.agent_mut(agent) {
                    a.call = Some((call_id.clone(), queue, *at));
                }
                self.mark_figures();
                self.mark(&[Section::Waiting, Section::Calls]);
            }
            Record::HoldStarted { call_id, at } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.holds.push(HoldSpan {
                        started_at: *at,
                        ended_at: None,
                    });
                }
                self.set_phase(call_id, CallPhase::Held, *at);
            }
            Record::HoldEnded { call_id, at } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    if let Some(h) = d.holds.iter_mut().rev().find(|h| h.ended_at.is_none()) {
                        h.ended_at = Some(*at);
                    }
                    d.times.hold_ms = kpi::hold_ms(&d.holds, None, *at);
                }
                self.set_phase(call_id, CallPhase::Talking, *at);
            }
            Record::CallEnded {
                call_id,
                ended_at,
                ended_by,
                ..
            } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.times.ended_at = Some(*ended_at);
                    d.times.ended_by = Some(*ended_by);
                    d.times.hold_ms = kpi::hold_ms(&d.holds, Some(*ended_at), d.last_event_at);
                    d.facts.hold_ms = d.times.hold_ms;
                }
                if let Some(c) = self.calls.remove(call_id) {
                    // An agent still ringing for it is released by their state record.
                    if c.phase == CallPhase::Offered {
                        if let Some(a) = c.agent.as_deref().and_then(|a| self.agent_mut(a)) {
                            a.call = None;
                        }
                    }
                }
                self.mark_figures();
                self.mark(&[Section::Waiting, Section::Calls]);
            }
            Record::WrapUpEnded { call_id, agent, at } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.times.wrapup_ended_at = Some(*at);
                }
                if let Some(a) = self.agent_mut(agent) {
                    if a.call.as_ref().is_some_and(|(id, _, _)| id == call_id) {
                        a.call = None;
                    }
                }
                self.mark_figures();
            }
            Record::AgentStateChanged {
                agent,
                at,
                state,
                reason,
            } => {
                if let Some(a) = self.agent_mut(agent) {
                    a.state = state.clone();
                    a.reason = reason.clone();
                    a.since = Some(*at);
                    if matches!(state.as_str(), "ready" | "not_ready" | "logged_out") {
                        a.call = None;
                    }
                }
                self.mark(&[Section::Agents]);
            }
            Record::SurveyScheduled {
                survey_id,
                at,
                queue,
                ..
            } => {
                if *at >= self.day.start() {
                    self.surveys_live
                        .insert(*survey_id, (queue.clone(), false, None));
                    self.mark_figures();
                }
            }
            Record::CallTransferred { .. }
            | Record::CallOverflowed { .. }
            | Record::CallbackRequested { .. }
            | Record::CallRinging { .. }
            | Record::CallVariable { .. }
            | Record::RecordingSaved { .. }
            | Record::SurveySkipped { .. }
            | Record::FollowUpOpened { .. }
            | Record::DispositionSet { .. }
            | Record::MonitorStarted { .. }
            | Record::MonitorEnded { .. }
            | Record::MonitorRefused { .. } => {}
        }
    }

    fn set_phase(&mut self, call_id: &str, phase: CallPhase, at: Millis) {
        if let Some(c) = self.calls.get_mut(call_id) {
            c.phase = phase;
            c.since = at;
            self.mark(&[Section::Calls]);
        }
    }

    fn agent_mut(&mut self, ext: &str) -> Option<&mut LiveAgent> {
        let i = *self.agent_index.get(ext)?;
        self.agents.get_mut(i)
    }
}
