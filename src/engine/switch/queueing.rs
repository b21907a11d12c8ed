//! The ACD hookup: a caller entering a queue, the ACD's events (records) and actions
//! (offers, cancels, hold music, announcements, apology, queue exits) turned into SIP and
//! media commands, and the end of a queued call.

use super::agent_leg::announcement;
use super::Engine;
use crate::engine::acd::{AcdAction, AcdEvent, ExitThen, QueuedCall};
use crate::engine::call::{AcdPhase, CallTimer};
use crate::engine::live::LiveEvent;
use crate::engine::media::{MediaCommand, PromptKey};
use crate::engine::record::{EndedBy, IvrOutcome, Record};
use crate::engine::time::Millis;

impl Engine {
    /// The IVR sent the caller to `queue`.
    pub(super) fn enqueue_call(&mut self, now: Millis, call_key: u64, queue: String) {
        self.leave_ivr(now, call_key, IvrOutcome::Queued);
        let default_lang = self.cfg.default_language.clone();
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let caller = call
            .invite
            .from
            .user
            .clone()
            .unwrap_or_else(|| call.invite.from.uri.clone());
        let lang = call.language(&default_lang);
        self.out
            .push_back(crate::engine::Output::Live(LiveEvent::CallerQueued {
                call_id: call.id.clone(),
                queue: queue.clone(),
                language: lang.clone(),
            }));
        let language = Some(lang);
        call.acd = AcdPhase::Queued;
        call.queue = Some(queue.clone());
        self.acd_call_ids
            .insert(call_key, (call.id.clone(), caller.clone()));
        let qc = QueuedCall {
            call: call_key,
            caller,
            queue,
            language,
            priority: 0,
        };
        if let Err(e) = self.acd.enqueue(now, qc) {
            tracing::warn!(error = %e, "enqueue failed");
            if let Some(c) = self.calls.get_mut(&call_key) {
                c.acd = AcdPhase::None;
            }
            self.end_call(now, call_key, EndedBy::System, "queue_error", true);
        }
    }

    /// Runs the ACD's actions and records until it has nothing more to say.
    pub(super) fn drain_acd(&mut self, now: Millis) {
        for _ in 0..10_000 {
            let mut progressed = false;
            while let Some(ev) = self.acd.poll_event() {
                progressed = true;
                self.on_acd_event(ev);
            }
            if let Some(a) = self.acd.poll_action() {
                progressed = true;
                self.on_acd_action(now, a);
            }
            if !progressed {
                return;
            }
        }
    }

    pub(super) fn acd_call_id(&self, call: u64) -> Option<String> {
        self.acd_call_ids.get(&call).map(|(id, _)| id.clone())
    }

    pub(super) fn on_acd_event(&mut self, ev: AcdEvent) {
        self.live.dirty = true;
        let rec = match ev {
            AcdEvent::AgentState {
                agent,
                at,
                state,
                reason,
            } => Some(Record::AgentStateChanged {
                agent,
                at,
                state: state.to_string(),
                reason,
            }),
            AcdEvent::Queued { call, queue, at } => {
                // Overflow and transfers move the call: offers must name the queue it is in.
                if let Some(c) = self.calls.get_mut(&call) {
                    c.queue = Some(queue.clone());
                }
                self.survey_note_queued(call, &queue);
                let vip = self
                    .acd_call_ids
                    .get(&call)
                    .is_some_and(|(_, caller)| self.acd.queues().vip.is_vip(caller));
                let priority = if vip {
                    self.acd.queues().vip.priority_boost
                } else {
                    0
                };
                self.acd_call_id(call).map(|call_id| Record::CallQueued {
                    call_id,
                    at,
                    queue,
                    priority,
                })
            }
            AcdEvent::OfferStarted {
                call,
                agent,
                attempt,
                at,
            } => self.acd_call_id(call).map(|call_id| Record::OfferStarted {
                call_id,
                attempt,
                agent,
                at,
            }),
            AcdEvent::OfferEnded {
                call,
                attempt,
                at,
                outcome,
                ..
            } => self.acd_call_id(call).map(|call_id| Record::OfferEnded {
                call_id,
                attempt,
                at,
                outcome: outcome.to_string(),
            }),
            AcdEvent::AgentAnswered { call, agent, at } => {
                self.survey_note_answered(call, &agent, at);
                if let Some(call_id) = self.acd_call_id(call) {
                    // The queue survey_note_answered settled on (None: direct transfer).
                    let queue = self
                        .calls
                        .get(&call)
                        .and_then(|c| c.service.agent.as_ref())
                        .and_then(|a| a.queue.clone());
                    self.note_agent_call(&agent, call_id, queue);
                }
                self.acd_call_id(call)
                    .map(|call_id| Record::AgentAnswered { call_id, agent, at })
            }
            AcdEvent::WrapUpEnded { call, agent, at } => {
                // A call still in the ACD (transferred to a queue, or its agent vanished)
                // needs its id for the records still to come.
                let still_queued = self
                    .calls
                    .get(&call)
                    .is_some_and(|c| c.acd != AcdPhase::None);
                let id = if still_queued {
                    self.acd_call_id(call)
                } else {
                    self.acd_call_ids.remove(&call).map(|(id, _)| id)
                };
                id.map(|call_id| Record::WrapUpEnded { call_id, agent, at })
            }
            AcdEvent::Abandoned { call, .. } => {
                // The CallEnded record carries the time; METRICS derives `abandoned`.
                self.acd_call_ids.remove(&call);
                None
            }
            AcdEvent::QueueExit {
                call,
                at,
                reason,
                overflow_to: Some(to_queue),
            } => {
                let from_queue = self.calls.get(&call).and_then(|c| c.queue.clone());
                self.acd_call_id(call)
                    .map(|call_id| Record::CallOverflowed {
                        call_id,
                        at,
                        from_queue: from_queue.unwrap_or_default(),
                        to_queue,
                        reason: reason.as_str().to_string(),
                    })
            }
            // A closed call's reason is its CallEnded reason (set with the closing prompt).
            AcdEvent::QueueExit {
                overflow_to: None, ..
            } => None,
        };
        if let Some(r) = rec {
            self.persist(r);
        }
    }

    pub(super) fn on_acd_action(&mut self, now: Millis, action: AcdAction) {
        match action {
            AcdAction::Offer { call, agent, .. } => self.start_offer(now, call, &agent),
            AcdAction::CancelOffer { call, .. } => {
                if let Some(leg) = self.offers.remove(&call) {
                    self.cancel_agent_leg(now, leg);
                }
            }
            AcdAction::PlayHold { call, prompt } => self.play_hold(call, &prompt),
            AcdAction::Announce {
                call,
                position,
                expected_wait_s,
            } => {
                let prompts = announcement(position, expected_wait_s);
                let id = self.play_prompts(call, prompts, false);
                if let Some(c) = self.calls.get_mut(&call) {
                    c.announce_play = id;
                }
            }
            AcdAction::PlayApology { call, prompt } => {
                let id = self.play_system(call, &prompt, false);
                if let Some(c) = self.calls.get_mut(&call) {
                    c.apology_play = id;
                }
            }
            AcdAction::QueueExit { call, reason, then } => match then {
                ExitThen::Overflow { queue } => {
                    tracing::info!(queue = %queue, reason = reason.as_str(), "overflow");
                }
                ExitThen::Closing { prompt, callback } => {
                    let Some((call_id, number)) = self.acd_call_ids.remove(&call) else {
                        return;
                    };
                    let queue = self
                        .calls
                        .get(&call)
                        .and_then(|c| c.queue.clone())
                        .unwrap_or_default();
                    if callback {
                        self.persist(Record::CallbackRequested {
                            call_id,
                            at: now,
                            queue,
                            number,
                        });
                    }
                    let id = self.play_system(call, &prompt, false);
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.acd = AcdPhase::None;
                        c.goodbye_play = id;
                        c.goodbye_reason = reason.as_str();
                    }
                    self.set_timer(call, CallTimer::GoodbyeDeadline, now.plus(60_000));
                }
            },
        }
    }

    pub(super) fn play_hold(&mut self, call: u64, prompt: &str) {
        let id = self.play_system_looped(call, prompt, true);
        if let Some(c) = self.calls.get_mut(&call) {
            c.hold_prompt = Some(prompt.to_string());
            c.hold_play = id;
        }
    }

    pub(super) fn play_system(&mut self, call: u64, prompt: &str, looped: bool) -> Option<u64> {
        self.play_prompts(call, vec![prompt.to_string()], looped)
    }

    pub(super) fn play_system_looped(
        &mut self,
        call: u64,
        prompt: &str,
        looped: bool,
    ) -> Option<u64> {
        self.play_prompts(call, vec![prompt.to_string()], looped)
    }

    pub(super) fn play_prompts(
        &mut self,
        call_key: u64,
        ids: Vec<String>,
        looped: bool,
    ) -> Option<u64> {
        let default_lang = self.cfg.default_language.clone();
        let play_id = self.next_system_play;
        self.next_system_play += 1;
        let call = self.calls.get_mut(&call_key)?;
        let (leg, lang) = (call.leg, call.language(&default_lang));
        call.current_play = Some((play_id, false));
        self.media(MediaCommand::Play {
            leg,
            play_id,
            prompts: ids
                .into_iter()
                .map(|id| PromptKey {
                    id,
                    lang: lang.clone(),
                })
                .collect(),
            looped,
            barge_in: false,
        });
        Some(play_id)
    }

    /// A system prompt on a queued/connected call ended (announcement, apology).
    /// Returns true when it was one of ours.
    pub(super) fn on_system_play_finished(
        &mut self,
        now: Millis,
        call_key: u64,
        play_id: u64,
    ) -> bool {
        let Some(call) = self.calls.get_mut(&call_key) else {
            return false;
        };
        if call.announce_play == Some(play_id) {
            call.announce_play = None;
            if call.acd == AcdPhase::Queued {
                if let Some(p) = call.hold_prompt.clone() {
                    self.play_hold(call_key, &p);
                }
            }
            return true;
        }
        if call.apology_play == Some(play_id) {
            call.apology_play = None;
            self.bridge(call_key);
            return true;
        }
        let _ = now;
        call.hold_play == Some(play_id)
    }

    /// The caller's call is ending: tell the ACD, withdraw or hang up the agent leg.
    pub(super) fn acd_call_over(&mut self, now: Millis, call_key: u64) {
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let phase = call.acd;
        call.acd = AcdPhase::None;
        let agent_leg = call.agent_leg.take();
        match phase {
            AcdPhase::None => {}
            AcdPhase::Queued => {
                if let Err(e) = self.acd.abandon(now, call_key) {
                    tracing::debug!(error = %e, "abandon ignored");
                }
            }
            AcdPhase::Connected => {
                if let Err(e) = self.acd.call_ended(now, call_key) {
                    tracing::debug!(error = %e, "call_ended ignored");
                }
            }
        }
        if let Some(leg) = agent_leg {
            self.agent_bye(now, leg);
        }
        self.drain_acd(now);
    }
}
