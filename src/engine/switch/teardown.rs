//! The end of a call and of the switch: who hung up, our BYE, releasing a call's state,
//! and the staged shutdown (goodbye prompt, grace period, BYE to whoever is left).

use super::{Engine, EngineTimer, ENGINE_OWNER};
use crate::engine::call::{CallState, CallTimer, ALL_CALL_TIMERS};
use crate::engine::media::{MediaCommand, PromptKey};
use crate::engine::record::{EndedBy, IvrOutcome, Record};
use crate::engine::time::Millis;
use crate::engine::txn::TxnKey;
use crate::proto::sip::{self, Method, RequestOpts};
use rand::Rng;

impl Engine {
    pub(super) fn end_call(
        &mut self,
        now: Millis,
        call_key: u64,
        by: EndedBy,
        reason: &str,
        send_bye: bool,
    ) {
        self.end_call_with_status(now, call_key, by, reason, 200, send_bye);
    }

    /// The one way a call ends: IVR outcome, the CallEnded record and the survey decision
    /// after it, media released, and BYE when we are the side hanging up.
    pub(super) fn end_call_with_status(
        &mut self,
        now: Millis,
        call_key: u64,
        by: EndedBy,
        reason: &str,
        final_status: u16,
        send_bye: bool,
    ) {
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        if call.state == CallState::Terminating {
            return;
        }
        self.acd_call_over(now, call_key);
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        let resolved = call.ivr.as_ref().is_some_and(|s| s.resolved());
        let outcome = match (resolved, by, reason) {
            (true, _, _) => IvrOutcome::SelfServed,
            (false, EndedBy::Caller, _) | (false, _, "rtp_timeout") => IvrOutcome::AbandonedInIvr,
            _ => IvrOutcome::Failed,
        };
        self.leave_ivr(now, call_key, outcome);
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let was_answered = call.state == CallState::Answered;
        call.state = CallState::Terminating;
        call.pending_2xx = None;
        let (leg, port, call_id) = (call.leg, call.rtp_port, call.id.clone());
        tracing::info!(call = %call_id, ended_by = by.as_str(), reason, "call ended");
        self.persist(Record::CallEnded {
            call_id,
            ended_at: now,
            ended_by: by,
            reason: reason.to_string(),
            final_status,
        });
        // The survey records follow the CallEnded at once (one store batch).
        self.survey_at_call_end(now, call_key);
        self.deadlines
            .cancel_owner(call_key, &ALL_CALL_TIMERS.map(EngineTimer::Call));
        self.media(MediaCommand::Close { leg });
        self.by_leg.remove(&leg);
        self.ports.release(port);
        if send_bye && was_answered {
            self.send_bye(now, call_key);
        } else {
            self.remove_call(call_key);
        }
    }

    pub(super) fn send_bye(&mut self, now: Millis, call_key: u64) {
        let branch = sip::new_branch(self.rng.random());
        let sent_by = self.cfg.sent_by.clone();
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        call.local_cseq += 1;
        let from = call.local_party();
        let to = call.remote_party();
        let contact = call.peer.transport.contact_uri(&sent_by);
        let bytes = sip::request(&RequestOpts {
            method: Method::Bye,
            uri: &call.remote_target,
            transport: call.peer.transport,
            sent_by: &sent_by,
            branch: &branch,
            from: &from,
            to: &to,
            call_id: &call.sip_call_id,
            cseq: call.local_cseq,
            contact: Some(&contact),
            route: call.route_set.clone(),
            extra_headers: vec![],
            body: None,
        });
        let key = TxnKey {
            branch,
            method: "BYE".to_string(),
            sent_by: String::new(),
        };
        call.bye_key = Some(key.clone());
        // Symmetric signalling: the BYE goes where the INVITE came from (NAT-safe).
        let peer = call.peer;
        self.by_bye.insert(key.clone(), call_key);
        self.txns.client_send(now, key, peer, false, bytes);
    }

    pub(super) fn remove_call(&mut self, call_key: u64) {
        let Some(call) = self.calls.remove(&call_key) else {
            return;
        };
        self.limits.call_ended(call.peer.addr.ip());
        self.by_dialog
            .remove(&(call.sip_call_id.clone(), call.remote_tag.clone()));
        self.by_leg.remove(&call.leg);
        if let Some(k) = &call.bye_key {
            self.by_bye.remove(k);
        }
        // by_invite stays until the INVITE transaction terminates (late CANCEL -> 200, no-op).
        self.deadlines
            .cancel_owner(call_key, &ALL_CALL_TIMERS.map(EngineTimer::Call));
    }

    pub(super) fn on_shutdown(&mut self, now: Millis, grace_ms: u64) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        tracing::info!(
            active = self.active_calls(),
            grace_ms,
            "shutting down: refusing new calls"
        );
        self.deadlines
            .set(ENGINE_OWNER, EngineTimer::ShutdownGrace, now.plus(grace_ms));
        let keys: Vec<u64> = self.calls.keys().copied().collect();
        for call_key in keys {
            let Some(call) = self.calls.get(&call_key) else {
                continue;
            };
            match call.state {
                CallState::Terminating => {}
                CallState::Ringing => {
                    self.refuse_ringing(now, call_key, 503, "Service Unavailable", Some(30));
                    self.end_call_with_status(
                        now,
                        call_key,
                        EndedBy::System,
                        "shutdown",
                        503,
                        false,
                    );
                }
                CallState::Answered => {
                    self.say_goodbye(now, call_key, now.plus(grace_ms), "goodbye")
                }
            }
        }
    }

    /// Stop the IVR, play goodbye, hang up when it ends (or at `deadline`).
    pub(super) fn say_goodbye(
        &mut self,
        now: Millis,
        call_key: u64,
        deadline: Millis,
        prompt: &str,
    ) {
        let resolved = self
            .calls
            .get(&call_key)
            .and_then(|c| c.ivr.as_ref())
            .is_some_and(|s| s.resolved());
        let outcome = if resolved {
            IvrOutcome::SelfServed
        } else {
            IvrOutcome::Failed
        };
        self.leave_ivr(now, call_key, outcome);
        let play_id = self.next_system_play;
        self.next_system_play += 1;
        let default_lang = self.cfg.default_language.clone();
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        call.goodbye_play = Some(play_id);
        call.current_play = Some((play_id, false));
        let (leg, lang) = (call.leg, call.language(&default_lang));
        self.media(MediaCommand::Play {
            leg,
            play_id,
            prompts: vec![PromptKey {
                id: prompt.to_string(),
                lang,
            }],
            looped: false,
            barge_in: false,
        });
        // Leave a little of the grace period for the BYE transaction itself.
        let bye_at = Millis(deadline.as_u64().saturating_sub(500)).max(now);
        self.set_timer(call_key, CallTimer::GoodbyeDeadline, bye_at);
    }

    pub(super) fn on_grace_over(&mut self, now: Millis) {
        let keys: Vec<u64> = self.calls.keys().copied().collect();
        for call_key in keys {
            self.end_call(now, call_key, EndedBy::System, "shutdown", true);
        }
    }
}
