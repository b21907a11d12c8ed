//! Agents inside the switch engine: REGISTER (registrar), feature codes, the ACD hookup and
//! the B2BUA outbound leg to an agent's phone. A child module of `switch` (it extends
//! `Engine` with `impl` blocks and shares its private state); sans-IO like the rest.
//!
//! Flow: REGISTER -> `Registrar::register` (reply with its headers); the first binding of an
//! agent logs them in (`Acd::login`), the last one gone logs them out
//! (`Acd::registration_lost`); binding expiry runs from the engine's `poll_timeout`. The IVR's
//! `Queue` action -> `IvrLeft(queued)` + `Acd::enqueue`. After every input the engine drains
//! the ACD (`drain_acd`): events become records, actions become SIP and media commands
//! (`Offer` -> INVITE forks, `CancelOffer` -> CANCEL, `PlayHold` / `Announce` /
//! `PlayApology` / `QueueExit` -> prompts). Agent answers -> `offer_answered` + Bridge;
//! failures -> `offer_failed`; either side's BYE -> `call_ended` (wrap-up) and BYE to the
//! other side; the caller leaving while queued -> `abandon`.
//!
//! Documented choices:
//! * Feature codes (`*21` ready, `*22` break, ...) dialled by an authenticated agent (407
//!   flow) change the agent's ACD state, are answered at once (200 with SDP), hear a
//!   confirmation (`feature_ready`, `feature_not_ready`, `feature_logged_out`, or
//!   `feature_refused` when the ACD refused the change) and are hung up by us (BYE). They
//!   are ordinary calls in the records (dialled = the code, ended by system, reason
//!   `feature_code`). `Command::Agent` makes the same changes without a phone.
//! * Toll fraud: ccswitch only ever dials registered agent contacts. A call to an agent's
//!   extension or to anything starting with `*` that is not a feature code gets 404; an
//!   unauthenticated feature-code call gets 407, then 403. Every other number is the
//!   public service (the IVR's entries, `default` included).
//! * Offers fork to every registered contact of the agent in parallel; the first 2xx wins,
//!   the other forks are CANCELled (or, if they answered too, ACKed and BYEd). A CANCEL is
//!   sent only after the fork's first provisional response (RFC 3261 9.1); a fork that
//!   never answers ends by its INVITE transaction's Timer B.
//! * On answer: hold stops, the apology (if the ACD asks) plays to the caller first, then
//!   `Bridge { a: caller leg, b: agent leg }` (the media plane refuses plays while bridged).
//! * Announcements play "You are number N in the queue. The expected wait is about M
//!   minutes. Please hold." (`announcement`, numbers digit by digit), then hold resumes.
//! * REFER (blind transfer) accepts queue names (`Refer-To: <sip:after_sales@..>`) and agent
//!   extensions (the agent must be ready, else 480; unanswered, the call goes on in its queue),
//!   only from the agent phone's own address: 202, NOTIFY with sipfrag 200, our BYE to the
//!   agent (wrap-up), the caller waits in the new queue; other targets get 404.
//! * Agent legs have the same RTP inactivity guard as callers (longer than the ring timeout);
//!   our 2xx to an agent's re-INVITE is re-sent until the ACK (64*T1, then the call ends).
//! * Recording: a queue with `record = true` gets `StartRecording` right after `Bridge`;
//!   `RecordingFinished { ok }` stores the path on the call (`RecordingSaved`).

use super::{Engine, EngineTimer};
use crate::engine::acd::{AcdAction, AcdEvent, AgentState, ExitThen, OfferOutcome, QueuedCall};
use crate::engine::call::{AcdPhase, CallTimer};
use crate::engine::media::{Codec, LegId, MediaCommand, PromptKey};
use crate::engine::record::{EndedBy, IvrOutcome, Record};
use crate::engine::registrar::{AuthResult, RegistrarEvent};
use crate::engine::time::Millis;
use crate::engine::txn::{ClientMatch, TxnKey};
use crate::engine::{AgentChange, Peer, Transport};
use crate::proto::sdp::{self, Direction, Negotiated};
use crate::proto::sip::{self, Method, Request, RequestOpts, Response, ResponseOpts};
use bytes::Bytes;
use rand::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentLegState {
    /// INVITEs out, no answer yet.
    Ringing,
    /// The offer was withdrawn; waiting for the forks' final responses.
    Cancelling,
    /// Answered and ACKed.
    Up,
    /// Our or their BYE ended it.
    Terminating,
}

#[derive(Debug)]
pub struct Fork {
    pub branch: String,
    pub peer: Peer,
    pub uri: String,
    pub invite: Bytes,
    pub provisional: bool,
    pub cancel_pending: bool,
    pub done: bool,
}

/// The outbound leg of one offer (one agent, one call).
#[derive(Debug)]
pub struct AgentLeg {
    pub call_key: u64,
    pub caller_call_id: String,
    pub agent: String,
    pub rtp_port: u16,
    pub sip_call_id: String,
    pub from: String,
    pub forks: Vec<Fork>,
    pub state: AgentLegState,
    /// Worst-to-best outcome seen so far among failed forks.
    pub failure: Option<OfferOutcome>,
    pub invite_cseq: u32,
    // Dialog, once answered.
    pub peer: Option<Peer>,
    pub to: String,
    pub remote_target: String,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    pub sdp_session: u64,
    pub sdp_version: u64,
    pub remote_media: Option<Negotiated>,
    pub on_hold: bool,
    pub ack: Option<Bytes>,
    /// Our 2xx to the agent's re-INVITE and its CSeq, re-sent until the ACK arrives
    /// (RFC 3261 13.3.1.4), and the current retransmission interval.
    pub pending_2xx: Option<(Bytes, u32)>,
    pub retransmit_ms: u64,
}

/// Prompts the announcement uses besides `digit_0`..`digit_9` (the app checks they exist).
pub const ANNOUNCE_PROMPTS: [&str; 5] = [
    "queue_position",
    "queue_position_end",
    "expected_wait",
    "minutes",
    "please_hold",
];

/// Feature-code confirmations (the app checks they exist).
pub const FEATURE_PROMPTS: [&str; 4] = [
    "feature_ready",
    "feature_not_ready",
    "feature_logged_out",
    "feature_refused",
];

/// "You are number 3 in the queue. The expected wait is about 4 minutes. Please hold."
/// Numbers are read digit by digit (`digit_N`), which needs no grammar per language.
pub fn announcement(position: usize, expected_wait_s: u64) -> Vec<String> {
    let digits = |n: u64| -> Vec<String> {
        n.to_string()
            .chars()
            .map(|c| format!("digit_{c}"))
            .collect()
    };
    let minutes = expected_wait_s.div_ceil(60).max(1);
    let mut p = vec!["queue_position".to_string()];
    p.extend(digits(position.max(1) as u64));
    p.push("queue_position_end".into());
    p.push("expected_wait".into());
    p.extend(digits(minutes));
    p.push("minutes".into());
    p.push("please_hold".into());
    p
}

/// The offer outcome of an agent phone's final response.
fn outcome_of(status: u16) -> OfferOutcome {
    match status {
        486 | 600 => OfferOutcome::Busy,
        603 => OfferOutcome::Rejected,
        408 | 480 | 487 => OfferOutcome::NoAnswer,
        _ => OfferOutcome::Failed,
    }
}

impl Engine {
    // ---- registration ---------------------------------------------------------------------

    pub(super) fn on_register(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let r = self
            .registrar
            .register(now, peer.addr, peer.transport, &req);
        let to_tag = self.new_tag();
        let opts = ResponseOpts {
            to_tag: Some(&to_tag),
            extra_headers: r.headers.clone(),
            ..Default::default()
        };
        self.respond(now, &key, &req, peer, r.status, &r.reason, opts);
        self.on_registrar_events(now, r.events);
    }

    pub(super) fn on_registrar_events(&mut self, now: Millis, events: Vec<RegistrarEvent>) {
        // Per extension: how many bindings this batch added and removed, to tell whether
        // the agent had none before (login) or has none left (out of routing).
        let mut delta: Vec<(String, i64)> = Vec::new();
        for ev in &events {
            let (ext, d) = match ev {
                RegistrarEvent::Registered { extension, .. } => (extension, 1),
                RegistrarEvent::Unregistered { extension, why, .. } => {
                    tracing::info!(agent = %extension, why = why.as_str(), "binding removed");
                    (extension, -1)
                }
            };
            match delta.iter_mut().find(|(e, _)| e == ext) {
                Some((_, n)) => *n += d,
                None => delta.push((ext.clone(), d)),
            }
        }
        for (ext, d) in delta {
            let now_count = self.registrar.contacts(&ext).len() as i64;
            let before = now_count - d;
            if before <= 0 && now_count > 0 {
                tracing::info!(agent = %ext, "agent registered: logged in");
                if let Err(e) = self.acd.login(now, &ext) {
                    tracing::debug!(agent = %ext, error = %e, "login ignored");
                }
            } else if now_count == 0 && before > 0 {
                tracing::info!(agent = %ext, "agent unregistered: out of routing");
                if let Err(e) = self.acd.registration_lost(now, &ext) {
                    tracing::debug!(agent = %ext, error = %e, "logout ignored");
                }
            }
        }
    }

    /// `Command::Agent`: the same changes as the feature codes. Returns whether the ACD
    /// accepted it.
    pub(super) fn on_agent_command(
        &mut self,
        now: Millis,
        agent: &str,
        change: AgentChange,
    ) -> bool {
        let res = match change {
            AgentChange::Ready => self
                .acd
                .set_ready(now, agent)
                .or_else(|_| self.acd.login(now, agent)),
            AgentChange::NotReady { reason } => self.acd.set_not_ready(now, agent, &reason),
            AgentChange::Logout => self.acd.logout(now, agent),
        };
        if let Err(e) = &res {
            tracing::info!(agent, error = %e, "agent command refused");
        }
        res.is_ok()
    }

    /// Feature codes and calls to agents: `Err(())` when the INVITE was answered here
    /// (refused or challenged); `Ok(Some(prompt))` for an accepted feature call (the
    /// confirmation to play); `Ok(None)` for an ordinary call.
    pub(super) fn screen_invite(
        &mut self,
        now: Millis,
        peer: Peer,
        key: &TxnKey,
        req: &Request,
    ) -> Result<Option<String>, ()> {
        let dialled = req.uri_user.clone().unwrap_or_default();
        if let Some(feature) = self.features.lookup(&dialled) {
            match self.registrar.authenticate_request(now, peer.addr, req) {
                AuthResult::Ok(ext) => {
                    let res = match feature {
                        "ready" => self
                            .acd
                            .set_ready(now, &ext)
                            .or_else(|_| self.acd.login(now, &ext)),
                        "logout" => self.acd.logout(now, &ext),
                        reason => self.acd.set_not_ready(now, &ext, reason),
                    };
                    let prompt = match (&res, feature) {
                        (Err(e), _) => {
                            tracing::info!(agent = %ext, feature, error = %e, "feature code refused");
                            "feature_refused"
                        }
                        (Ok(()), "ready") => "feature_ready",
                        (Ok(()), "logout") => "feature_logged_out",
                        (Ok(()), _) => "feature_not_ready",
                    };
                    tracing::info!(agent = %ext, feature, ok = res.is_ok(), "feature code");
                    return Ok(Some(prompt.to_string()));
                }
                AuthResult::Challenge(r) => {
                    let to_tag = self.new_tag();
                    let opts = ResponseOpts {
                        to_tag: Some(&to_tag),
                        extra_headers: r.headers,
                        ..Default::default()
                    };
                    self.respond(now, key, req, peer, r.status, &r.reason, opts);
                    return Err(());
                }
                AuthResult::Forbidden => {
                    self.reply(now, key, req, peer, 403, "Forbidden");
                    return Err(());
                }
            }
        }
        if dialled.starts_with('*') || self.agent_dir.get(&dialled).is_some() {
            self.reply(now, key, req, peer, 404, "Not Found");
            return Err(());
        }
        Ok(None)
    }

    // ---- the ACD --------------------------------------------------------------------------

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
        let language = Some(call.language(&default_lang));
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

    fn acd_call_id(&self, call: u64) -> Option<String> {
        self.acd_call_ids.get(&call).map(|(id, _)| id.clone())
    }

    fn on_acd_event(&mut self, ev: AcdEvent) {
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
            AcdEvent::AgentAnswered { call, agent, at } => self
                .acd_call_id(call)
                .map(|call_id| Record::AgentAnswered { call_id, agent, at }),
            AcdEvent::WrapUpEnded { call, agent, at } => {
                let id = self.acd_call_ids.remove(&call).map(|(id, _)| id);
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

    fn on_acd_action(&mut self, now: Millis, action: AcdAction) {
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

    fn play_hold(&mut self, call: u64, prompt: &str) {
        let id = self.play_system_looped(call, prompt, true);
        if let Some(c) = self.calls.get_mut(&call) {
            c.hold_prompt = Some(prompt.to_string());
            c.hold_play = id;
        }
    }

    fn play_system(&mut self, call: u64, prompt: &str, looped: bool) -> Option<u64> {
        self.play_prompts(call, vec![prompt.to_string()], looped)
    }

    fn play_system_looped(&mut self, call: u64, prompt: &str, looped: bool) -> Option<u64> {
        self.play_prompts(call, vec![prompt.to_string()], looped)
    }

    fn play_prompts(&mut self, call_key: u64, ids: Vec<String>, looped: bool) -> Option<u64> {
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

    fn bridge(&mut self, call_key: u64) {
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        let Some(agent_leg) = call.agent_leg else {
            return;
        };
        let a = call.leg;
        let call_id = call.id.clone();
        let record = call
            .queue
            .as_deref()
            .and_then(|q| self.cfg.queues.get(q))
            .is_some_and(|q| q.record);
        self.media(MediaCommand::Bridge { a, b: agent_leg });
        if record {
            let path = self.cfg.recordings_dir.join(format!("{call_id}.wav"));
            self.recordings.insert(a, call_id);
            self.media(MediaCommand::StartRecording {
                a,
                b: agent_leg,
                path,
            });
        }
    }

    /// The media plane closed a recording: a complete file goes on the call's row.
    pub(super) fn on_recording_finished(
        &mut self,
        now: Millis,
        leg: LegId,
        path: &std::path::Path,
        ok: bool,
        reason: Option<&str>,
    ) {
        let Some(call_id) = self.recordings.remove(&leg) else {
            return;
        };
        if ok {
            tracing::info!(call = %call_id, path = %path.display(), "recording saved");
            self.persist(Record::RecordingSaved {
                call_id,
                at: now,
                path: path.display().to_string(),
            });
        } else {
            tracing::error!(call = %call_id, path = %path.display(), reason = reason.unwrap_or(""),
                "recording failed");
        }
    }

    // ---- offers ---------------------------------------------------------------------------

    fn start_offer(&mut self, now: Millis, call_key: u64, agent: &str) {
        let contacts = self.registrar.contacts(agent).to_vec();
        let Some(call) = self.calls.get(&call_key) else {
            let _ = self
                .acd
                .offer_failed(now, call_key, agent, OfferOutcome::Failed);
            return;
        };
        if contacts.is_empty() {
            let _ = self
                .acd
                .offer_failed(now, call_key, agent, OfferOutcome::Failed);
            return;
        }
        let Some(rtp_port) = self.ports.allocate() else {
            let _ = self
                .acd
                .offer_failed(now, call_key, agent, OfferOutcome::Failed);
            return;
        };
        let caller = call
            .invite
            .from
            .user
            .clone()
            .unwrap_or_else(|| "anonymous".to_string());
        let caller_call_id = call.id.clone();
        let queue = call.queue.clone().unwrap_or_default();
        let ivr_path = call.ivr_path.join(">");
        let language = call.language(&self.cfg.default_language);
        let vars: Vec<(String, String)> = call
            .ivr
            .as_ref()
            .map(|s| {
                s.variables()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let leg = self.next_leg;
        self.next_leg += 1;
        let sip_call_id = format!("{:016x}@ccswitch", self.rng.random::<u64>());
        let local_tag = self.new_tag();
        let sent_by = self.cfg.sent_by.clone();
        let display: String = caller.chars().filter(|c| *c != '"' && *c != '\\').collect();
        let from = format!("\"{display}\" <sip:{display}@{sent_by}>;tag={local_tag}");
        let sdp_session = self.rng.random::<u32>() as u64;
        let body = sdp::offer(self.cfg.media_ip, rtp_port, sdp_session, 1);
        self.media(MediaCommand::Open {
            leg,
            call_id: caller_call_id.clone(),
            local_port: rtp_port,
            remote: None,
            codec: Codec::Pcmu,
            telephone_event_pt: Some(101),
            // Ringing legs get no RTP; the caller leg's own timer guards the call.
            // An agent phone that vanishes without a BYE ends the call like a caller's does.
            inactivity_ms: self.cfg.rtp_inactivity_ms,
        });
        let mut extra: Vec<(&'static str, String)> = vec![
            ("X-Caller", caller.clone()),
            ("X-Queue", queue),
            ("X-Language", language),
            ("Allow", super::ALLOW.to_string()),
        ];
        if !ivr_path.is_empty() {
            extra.push(("X-IVR-Path", ivr_path));
        }
        if let Some((_, v)) = vars.iter().find(|(k, _)| k == "order_number") {
            extra.push(("X-Order-Number", v.clone()));
        }
        if !vars.is_empty() {
            let all: Vec<String> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
            extra.push(("X-IVR-Variables", all.join(";")));
        }
        let mut forks = Vec::new();
        for b in &contacts {
            let branch = sip::new_branch(self.rng.random());
            let peer = Peer {
                transport: b.transport,
                addr: b.source,
            };
            let contact = self.contact(peer);
            let to = format!("<{}>", b.uri);
            let bytes = sip::request(&RequestOpts {
                method: Method::Invite,
                uri: &b.uri,
                transport: b.transport,
                sent_by: &sent_by,
                branch: &branch,
                from: &from,
                to: &to,
                call_id: &sip_call_id,
                cseq: 1,
                contact: Some(&contact),
                route: vec![],
                extra_headers: extra.clone(),
                body: Some(("application/sdp", &body)),
            });
            let key = TxnKey {
                branch: branch.clone(),
                method: "INVITE".to_string(),
                sent_by: String::new(),
            };
            self.txns.client_send(now, key, peer, true, bytes.clone());
            self.agent_by_branch.insert(branch.clone(), leg);
            forks.push(Fork {
                branch,
                peer,
                uri: b.uri.clone(),
                invite: bytes,
                provisional: false,
                cancel_pending: false,
                done: false,
            });
        }
        tracing::info!(agent, forks = forks.len(), "offering call to agent");
        self.agent_by_callid.insert(sip_call_id.clone(), leg);
        self.offers.insert(call_key, leg);
        self.agent_legs.insert(
            leg,
            AgentLeg {
                call_key,
                caller_call_id,
                agent: agent.to_string(),
                rtp_port,
                sip_call_id,
                from,
                forks,
                state: AgentLegState::Ringing,
                failure: None,
                invite_cseq: 1,
                peer: None,
                to: String::new(),
                remote_target: String::new(),
                local_cseq: 1,
                remote_cseq: 0,
                sdp_session,
                sdp_version: 1,
                remote_media: None,
                on_hold: false,
                ack: None,
                pending_2xx: None,
                retransmit_ms: 0,
            },
        );
    }

    fn send_cancel(&mut self, now: Millis, leg: LegId, fork_idx: usize) {
        let sent_by = self.cfg.sent_by.clone();
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        let Some(f) = l.forks.get_mut(fork_idx) else {
            return;
        };
        if f.done {
            return;
        }
        if !f.provisional {
            f.cancel_pending = true;
            return;
        }
        f.cancel_pending = false;
        let to = format!("<{}>", f.uri);
        // RFC 3261 9.1: same Request-URI, Call-ID, From, To, CSeq number and top Via.
        let bytes = sip::request(&RequestOpts {
            method: Method::Cancel,
            uri: &f.uri,
            transport: f.peer.transport,
            sent_by: &sent_by,
            branch: &f.branch,
            from: &l.from,
            to: &to,
            call_id: &l.sip_call_id,
            cseq: l.invite_cseq,
            contact: None,
            route: vec![],
            extra_headers: vec![],
            body: None,
        });
        let key = TxnKey {
            branch: f.branch.clone(),
            method: "CANCEL".to_string(),
            sent_by: String::new(),
        };
        let peer = f.peer;
        self.txns.client_send(now, key, peer, false, bytes);
    }

    /// Withdraws an offer (ring timeout, caller gone): CANCEL every fork still ringing.
    fn cancel_agent_leg(&mut self, now: Millis, leg: LegId) {
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        if l.state != AgentLegState::Ringing {
            return;
        }
        l.state = AgentLegState::Cancelling;
        let n = l.forks.len();
        for i in 0..n {
            self.send_cancel(now, leg, i);
        }
        self.maybe_release_leg(leg);
    }

    /// Frees a cancelled/failed leg once every fork has its final response.
    fn maybe_release_leg(&mut self, leg: LegId) {
        let Some(l) = self.agent_legs.get(&leg) else {
            return;
        };
        let finished = l.forks.iter().all(|f| f.done);
        if matches!(l.state, AgentLegState::Cancelling) && finished {
            self.release_leg(leg);
        }
    }

    fn release_leg(&mut self, leg: LegId) {
        let Some(l) = self.agent_legs.remove(&leg) else {
            return;
        };
        for f in &l.forks {
            self.agent_by_branch.remove(&f.branch);
        }
        self.agent_by_callid.remove(&l.sip_call_id);
        self.deadlines.cancel_owner(
            leg,
            &[
                EngineTimer::AgentRetransmit2xx,
                EngineTimer::AgentAckTimeout,
            ],
        );
        if self.offers.get(&l.call_key) == Some(&leg) {
            self.offers.remove(&l.call_key);
        }
        self.media(MediaCommand::Close { leg });
        self.ports.release(l.rtp_port);
    }

    /// A response whose branch is one of our agent INVITE forks (or their CANCEL/BYE).
    /// Returns false when the branch is not an agent leg's.
    pub(super) fn on_agent_response(&mut self, now: Millis, key: &TxnKey, resp: &Response) -> bool {
        let Some(&leg) = self.agent_by_branch.get(&key.branch) else {
            return false;
        };
        if resp.cseq_method != Method::Invite {
            // CANCEL / BYE answers only drive their transactions.
            let m = self.txns.client_response(now, key, resp.status, None);
            let done = m == ClientMatch::Pass && resp.status >= 200;
            if done && matches!(resp.cseq_method, Method::Bye | Method::Notify) {
                self.agent_by_branch.remove(&key.branch);
            }
            if done && resp.cseq_method == Method::Bye {
                self.release_bye_done(leg);
            }
            return true;
        }
        let Some(l) = self.agent_legs.get(&leg) else {
            return true;
        };
        let Some(fi) = l.forks.iter().position(|f| f.branch == key.branch) else {
            return true;
        };
        let ack = if resp.status >= 300 {
            sip::ack_for_non2xx(&l.forks[fi].invite, resp)
        } else {
            None
        };
        match self.txns.client_response(now, key, resp.status, ack) {
            ClientMatch::Pass => {}
            _ => {
                self.stats.retransmissions += 1;
                return true;
            }
        }
        if resp.status < 200 {
            let Some(l) = self.agent_legs.get_mut(&leg) else {
                return true;
            };
            l.forks[fi].provisional = true;
            if l.forks[fi].cancel_pending || l.state == AgentLegState::Cancelling {
                self.send_cancel(now, leg, fi);
            }
            return true;
        }
        if resp.status < 300 {
            self.on_agent_2xx(now, leg, fi, resp);
        } else {
            self.on_fork_failed(now, leg, fi, outcome_of(resp.status));
        }
        true
    }

    fn on_fork_failed(&mut self, now: Millis, leg: LegId, fi: usize, outcome: OfferOutcome) {
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        if let Some(f) = l.forks.get_mut(fi) {
            f.done = true;
        }
        // Busy/rejected from any phone beats a silent one: the agent is clearly there.
        l.failure = Some(match (l.failure, outcome) {
            (Some(OfferOutcome::Busy), _) | (_, OfferOutcome::Busy) => OfferOutcome::Busy,
            (Some(OfferOutcome::Rejected), _) | (_, OfferOutcome::Rejected) => {
                OfferOutcome::Rejected
            }
            (Some(OfferOutcome::NoAnswer), _) | (_, OfferOutcome::NoAnswer) => {
                OfferOutcome::NoAnswer
            }
            _ => OfferOutcome::Failed,
        });
        let all_done = l.forks.iter().all(|f| f.done);
        if !all_done {
            return;
        }
        match l.state {
            AgentLegState::Ringing => {
                let (call, agent, failure) = (
                    l.call_key,
                    l.agent.clone(),
                    l.failure.unwrap_or(OfferOutcome::Failed),
                );
                l.state = AgentLegState::Cancelling;
                self.release_leg(leg);
                tracing::info!(agent = %agent, outcome = failure.as_str(), "offer failed");
                if let Err(e) = self.acd.offer_failed(now, call, &agent, failure) {
                    tracing::debug!(error = %e, "offer_failed ignored");
                }
            }
            AgentLegState::Cancelling => self.release_leg(leg),
            _ => {}
        }
    }

    fn ack_2xx(&mut self, leg: LegId, fi: usize, resp: &Response) -> Option<(Bytes, Peer)> {
        let sent_by = self.cfg.sent_by.clone();
        let branch = sip::new_branch(self.rng.random());
        let l = self.agent_legs.get(&leg)?;
        let f = l.forks.get(fi)?;
        let target = resp
            .contact
            .as_ref()
            .map(|c| c.uri.clone())
            .unwrap_or_else(|| f.uri.clone());
        let bytes = sip::request(&RequestOpts {
            method: Method::Ack,
            uri: &target,
            transport: f.peer.transport,
            sent_by: &sent_by,
            branch: &branch,
            from: &l.from,
            to: &resp.to.raw,
            call_id: &l.sip_call_id,
            cseq: l.invite_cseq,
            contact: None,
            route: vec![],
            extra_headers: vec![],
            body: None,
        });
        Some((bytes, f.peer))
    }

    fn on_agent_2xx(&mut self, now: Millis, leg: LegId, fi: usize, resp: &Response) {
        let Some(l) = self.agent_legs.get(&leg) else {
            return;
        };
        let same_dialog = matches!(l.state, AgentLegState::Up | AgentLegState::Terminating)
            && l.to == resp.to.raw;
        if same_dialog {
            // A 2xx retransmission (our ACK was lost): the same ACK again (RFC 3261 13.2.2.4).
            if let (Some(ack), Some(peer)) = (l.ack.clone(), l.peer) {
                self.stats.retransmissions += 1;
                self.transmit(peer, ack);
            }
            return;
        }
        let Some((ack, peer)) = self.ack_2xx(leg, fi, resp) else {
            return;
        };
        self.transmit(peer, ack.clone());
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        if let Some(f) = l.forks.get_mut(fi) {
            f.done = true;
        }
        let won = l.state == AgentLegState::Ringing;
        if !won {
            // Late answer from a cancelled offer or a losing fork: hang that phone up.
            self.bye_stray(now, leg, fi, resp);
            self.maybe_release_leg(leg);
            return;
        }
        l.state = AgentLegState::Up;
        l.peer = Some(peer);
        l.to = resp.to.raw.clone();
        l.remote_target = resp
            .contact
            .as_ref()
            .map(|c| c.uri.clone())
            .unwrap_or_else(|| l.forks[fi].uri.clone());
        l.ack = Some(ack);
        let (call_key, agent) = (l.call_key, l.agent.clone());
        let others: Vec<usize> = (0..l.forks.len()).filter(|&i| i != fi).collect();
        let media = sdp::parse(&resp.body).and_then(|s| sdp::negotiate(&s)).ok();
        if let Some(n) = media.clone() {
            l.remote_media = Some(n.clone());
            self.media(MediaCommand::Update {
                leg,
                remote: n.remote,
                codec: n.codec,
                telephone_event_pt: n.telephone_event_pt,
                send: true,
            });
        }
        for i in others {
            self.send_cancel(now, leg, i);
        }
        self.offers.remove(&call_key);
        if !self.calls.contains_key(&call_key) {
            self.agent_bye(now, leg);
            return;
        }
        if let Err(e) = self.acd.offer_answered(now, call_key, &agent) {
            tracing::warn!(error = %e, "offer_answered refused: hanging the agent up");
            self.agent_bye(now, leg);
            return;
        }
        tracing::info!(agent = %agent, "agent answered");
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        call.acd = AcdPhase::Connected;
        call.agent_leg = Some(leg);
        call.hold_play = None;
        let caller_leg = call.leg;
        self.media(MediaCommand::StopPlay { leg: caller_leg });
        self.drain_acd(now);
        let apology = self
            .calls
            .get(&call_key)
            .is_some_and(|c| c.apology_play.is_some());
        if !apology {
            self.bridge(call_key);
        }
    }

    /// ACK + BYE a phone that answered too late.
    fn bye_stray(&mut self, now: Millis, leg: LegId, fi: usize, resp: &Response) {
        let sent_by = self.cfg.sent_by.clone();
        let branch = sip::new_branch(self.rng.random());
        let Some(l) = self.agent_legs.get(&leg) else {
            return;
        };
        let Some(f) = l.forks.get(fi) else {
            return;
        };
        let target = resp
            .contact
            .as_ref()
            .map(|c| c.uri.clone())
            .unwrap_or_else(|| f.uri.clone());
        let bytes = sip::request(&RequestOpts {
            method: Method::Bye,
            uri: &target,
            transport: f.peer.transport,
            sent_by: &sent_by,
            branch: &branch,
            from: &l.from,
            to: &resp.to.raw,
            call_id: &l.sip_call_id,
            cseq: l.invite_cseq + 1,
            contact: None,
            route: vec![],
            extra_headers: vec![],
            body: None,
        });
        let key = TxnKey {
            branch,
            method: "BYE".to_string(),
            sent_by: String::new(),
        };
        let peer = f.peer;
        self.txns.client_send(now, key, peer, false, bytes);
    }

    /// Our BYE to the answered agent leg; the leg is released when the BYE completes.
    pub(super) fn agent_bye(&mut self, now: Millis, leg: LegId) {
        let sent_by = self.cfg.sent_by.clone();
        let branch = sip::new_branch(self.rng.random());
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        if l.state != AgentLegState::Up {
            return;
        }
        l.state = AgentLegState::Terminating;
        let Some(peer) = l.peer else {
            return;
        };
        l.local_cseq = l.local_cseq.max(l.invite_cseq) + 1;
        let contact = match peer.transport {
            Transport::Udp => format!("<sip:ccswitch@{sent_by}>"),
            Transport::Tcp => format!("<sip:ccswitch@{sent_by};transport=tcp>"),
        };
        let bytes = sip::request(&RequestOpts {
            method: Method::Bye,
            uri: &l.remote_target,
            transport: peer.transport,
            sent_by: &sent_by,
            branch: &branch,
            from: &l.from,
            to: &l.to,
            call_id: &l.sip_call_id,
            cseq: l.local_cseq,
            contact: Some(&contact),
            route: vec![],
            extra_headers: vec![],
            body: None,
        });
        let key = TxnKey {
            branch: branch.clone(),
            method: "BYE".to_string(),
            sent_by: String::new(),
        };
        self.agent_by_branch.insert(branch, leg);
        self.txns.client_send(now, key, peer, false, bytes);
        self.media(MediaCommand::Unbridge { leg });
    }

    fn release_bye_done(&mut self, leg: LegId) {
        if let Some(l) = self.agent_legs.get(&leg) {
            if l.state == AgentLegState::Terminating {
                self.release_leg(leg);
            }
        }
    }

    /// A client transaction of an agent leg timed out (no answer at all, or BYE lost).
    pub(super) fn on_agent_txn_timeout(&mut self, now: Millis, key: &TxnKey) -> bool {
        let Some(&leg) = self.agent_by_branch.get(&key.branch) else {
            return false;
        };
        match key.method.as_str() {
            "INVITE" => {
                let fi = self
                    .agent_legs
                    .get(&leg)
                    .and_then(|l| l.forks.iter().position(|f| f.branch == key.branch));
                if let Some(fi) = fi {
                    self.on_fork_failed(now, leg, fi, OfferOutcome::Failed);
                }
            }
            "BYE" => {
                self.agent_by_branch.remove(&key.branch);
                self.release_bye_done(leg);
            }
            "NOTIFY" => {
                self.agent_by_branch.remove(&key.branch);
            }
            _ => {}
        }
        true
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

    // ---- requests from an agent's phone inside an offer dialog ----------------------------

    /// Returns false when the request is not in an agent leg's dialog.
    pub(super) fn on_agent_request(
        &mut self,
        now: Millis,
        peer: Peer,
        key: &TxnKey,
        req: &Request,
    ) -> bool {
        let Some(&leg) = self.agent_by_callid.get(&req.call_id) else {
            return false;
        };
        let Some(l) = self.agent_legs.get(&leg) else {
            return false;
        };
        let (state, call_key) = (l.state, l.call_key);
        if state != AgentLegState::Up && state != AgentLegState::Terminating {
            self.reply_no_dialog(now, key, req, peer);
            return true;
        }
        match req.method {
            Method::Bye => {
                self.reply(now, key, req, peer, 200, "OK");
                if let Some(l) = self.agent_legs.get_mut(&leg) {
                    l.state = AgentLegState::Terminating;
                }
                self.media(MediaCommand::Unbridge { leg });
                self.release_leg(leg);
                // After a transfer (or our own BYE) the caller's call no longer hangs on
                // this leg.
                let ours = self
                    .calls
                    .get_mut(&call_key)
                    .is_some_and(|c| c.agent_leg.take() == Some(leg));
                if ours {
                    self.end_call(now, call_key, EndedBy::Agent, "agent_bye", true);
                }
            }
            Method::Invite => self.on_agent_reinvite(now, peer, key, req, leg),
            Method::Refer => self.on_agent_refer(now, peer, key, req, leg),
            Method::Options | Method::Info => self.reply(now, key, req, peer, 200, "OK"),
            _ => self.reply(now, key, req, peer, 405, "Method Not Allowed"),
        }
        true
    }

    /// Blind transfer by the agent to a queue (`Refer-To: <sip:QUEUE@...>`): 202, a final
    /// NOTIFY (sipfrag 200), our BYE to the agent (who enters wrap-up), and the caller
    /// waits in the new queue with hold audio.
    fn on_agent_refer(&mut self, now: Millis, peer: Peer, key: &TxnKey, req: &Request, leg: LegId) {
        let target = req
            .header("Refer-To")
            .or_else(|| req.header("r"))
            .and_then(|v| {
                let v = v.trim().trim_start_matches('<');
                let rest = v.strip_prefix("sip:").or_else(|| v.strip_prefix("sips:"))?;
                let user = rest.split(['@', '>', ';']).next()?;
                Some(user.to_string())
            });
        let Some(target) = target else {
            return self.reply(now, key, req, peer, 400, "Bad Refer-To");
        };
        let Some(l) = self.agent_legs.get(&leg) else {
            return;
        };
        // Only the phone we are talking to may move the call (Call-IDs can leak).
        if l.peer.map(|p| p.addr) != Some(peer.addr) {
            return self.reply(now, key, req, peer, 403, "Forbidden");
        }
        let call_key = l.call_key;
        let connected = l.state == AgentLegState::Up
            && self
                .calls
                .get(&call_key)
                .is_some_and(|c| c.agent_leg == Some(leg) && c.acd == AcdPhase::Connected);
        if !connected {
            return self.reply_no_dialog(now, key, req, peer);
        }
        // Transfer targets are queues and agents' extensions: ccswitch never dials anything
        // but registered agent phones.
        let to_queue = self.acd.queues().get(&target).is_some();
        if !to_queue && self.agent_dir.get(&target).is_none() {
            return self.reply(now, key, req, peer, 404, "Not Found");
        }
        if !to_queue && !matches!(self.acd.agent_state(&target), Some(AgentState::Ready)) {
            return self.reply(now, key, req, peer, 480, "Temporarily Unavailable");
        }
        self.reply(now, key, req, peer, 202, "Accepted");
        self.send_notify(now, leg, "SIP/2.0 200 OK\r\n");
        let agent = self
            .agent_legs
            .get(&leg)
            .map(|l| l.agent.clone())
            .unwrap_or_default();
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        call.agent_leg = None;
        call.acd = AcdPhase::Queued;
        if to_queue {
            call.queue = Some(target.clone());
        }
        let (caller_leg, call_id) = (call.leg, call.id.clone());
        self.media(MediaCommand::Unbridge { leg: caller_leg });
        self.agent_bye(now, leg);
        self.persist(Record::CallTransferred {
            call_id,
            at: now,
            target: target.clone(),
            by: agent,
        });
        let moved = if to_queue {
            self.acd.transfer_to_queue(now, call_key, &target)
        } else {
            self.acd.transfer_to_agent(now, call_key, &target)
        };
        if let Err(e) = moved {
            tracing::warn!(error = %e, "transfer refused: ending the call");
            if let Some(c) = self.calls.get_mut(&call_key) {
                c.acd = AcdPhase::None;
            }
            self.end_call(now, call_key, EndedBy::System, "transfer_failed", true);
        }
    }

    /// The final NOTIFY of a REFER's implicit subscription (RFC 3515).
    fn send_notify(&mut self, now: Millis, leg: LegId, sipfrag: &str) {
        let sent_by = self.cfg.sent_by.clone();
        let branch = sip::new_branch(self.rng.random());
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        let Some(peer) = l.peer else {
            return;
        };
        l.local_cseq = l.local_cseq.max(l.invite_cseq) + 1;
        let bytes = sip::request(&RequestOpts {
            method: Method::Notify,
            uri: &l.remote_target,
            transport: peer.transport,
            sent_by: &sent_by,
            branch: &branch,
            from: &l.from,
            to: &l.to,
            call_id: &l.sip_call_id,
            cseq: l.local_cseq,
            contact: None,
            route: vec![],
            extra_headers: vec![
                ("Event", "refer".to_string()),
                (
                    "Subscription-State",
                    "terminated;reason=noresource".to_string(),
                ),
            ],
            body: Some(("message/sipfrag;version=2.0", sipfrag.as_bytes())),
        });
        let key = TxnKey {
            branch: branch.clone(),
            method: "NOTIFY".to_string(),
            sent_by: String::new(),
        };
        self.agent_by_branch.insert(branch, leg);
        self.txns.client_send(now, key, peer, false, bytes);
    }

    fn on_agent_reinvite(
        &mut self,
        now: Millis,
        peer: Peer,
        key: &TxnKey,
        req: &Request,
        leg: LegId,
    ) {
        let media_ip = self.cfg.media_ip;
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        if req.cseq <= l.remote_cseq && l.remote_cseq != 0 {
            return self.reply(now, key, req, peer, 500, "CSeq Out Of Order");
        }
        l.remote_cseq = req.cseq;
        if let Some(c) = req.contact.as_ref() {
            l.remote_target = c.uri.clone();
        }
        let offer = if req.body.is_empty() {
            None
        } else {
            match sdp::parse(&req.body).and_then(|s| sdp::negotiate(&s)) {
                Ok(n) => Some(n),
                Err(_) => return self.reply(now, key, req, peer, 488, "Not Acceptable Here"),
            }
        };
        l.sdp_version += 1;
        let body = match &offer {
            Some(n) => sdp::answer(media_ip, l.rtp_port, l.sdp_session, l.sdp_version, n),
            None => sdp::offer(media_ip, l.rtp_port, l.sdp_session, l.sdp_version),
        };
        let (call_key, caller_call_id) = (l.call_key, l.caller_call_id.clone());
        if let Some(n) = offer {
            let hold = matches!(n.direction, Direction::SendOnly | Direction::Inactive)
                || n.remote.is_none();
            let was = l.on_hold;
            l.on_hold = hold;
            let cmd = MediaCommand::Update {
                leg,
                remote: n.remote,
                codec: n.codec,
                telephone_event_pt: n.telephone_event_pt,
                send: !hold,
            };
            l.remote_media = Some(n);
            self.media(cmd);
            let in_call = self.calls.contains_key(&call_key);
            if in_call && hold && !was {
                self.persist(Record::HoldStarted {
                    call_id: caller_call_id,
                    at: now,
                });
            } else if in_call && !hold && was {
                self.persist(Record::HoldEnded {
                    call_id: caller_call_id,
                    at: now,
                });
            }
        }
        let contact = self.contact(peer);
        let opts = ResponseOpts {
            contact: Some(&contact),
            extra_headers: vec![("Allow", super::ALLOW.to_string())],
            body: Some(("application/sdp", &body)),
            ..Default::default()
        };
        let ok = self.respond(now, key, req, peer, 200, "OK", opts);
        let t1 = self.cfg.txn.t1_ms;
        if let Some(l) = self.agent_legs.get_mut(&leg) {
            l.pending_2xx = Some((ok, req.cseq));
            l.retransmit_ms = t1;
        }
        if !peer.transport.is_reliable() {
            self.deadlines
                .set(leg, EngineTimer::AgentRetransmit2xx, now.plus(t1));
        }
        self.deadlines
            .set(leg, EngineTimer::AgentAckTimeout, now.plus(64 * t1));
    }

    /// An ACK in an agent leg's dialog; true when it was one (matched or stale).
    pub(super) fn on_agent_ack(&mut self, req: &Request) -> bool {
        let Some(&leg) = self.agent_by_callid.get(&req.call_id) else {
            return false;
        };
        if let Some(l) = self.agent_legs.get_mut(&leg) {
            if l.pending_2xx
                .as_ref()
                .is_some_and(|(_, cseq)| *cseq == req.cseq)
            {
                l.pending_2xx = None;
                self.deadlines.cancel_owner(
                    leg,
                    &[
                        EngineTimer::AgentRetransmit2xx,
                        EngineTimer::AgentAckTimeout,
                    ],
                );
            }
        }
        true
    }

    pub(super) fn on_agent_retransmit_2xx(&mut self, now: Millis, leg: LegId) {
        let t2 = self.cfg.txn.t2_ms;
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        let (Some((ok, _)), Some(peer)) = (l.pending_2xx.clone(), l.peer) else {
            return;
        };
        l.retransmit_ms = (l.retransmit_ms * 2).min(t2);
        let next = now.plus(l.retransmit_ms);
        self.stats.retransmissions += 1;
        self.transmit(peer, ok);
        self.deadlines
            .set(leg, EngineTimer::AgentRetransmit2xx, next);
    }

    /// No ACK for our 2xx within 64*T1: the agent's phone is gone; end the call.
    pub(super) fn on_agent_ack_timeout(&mut self, now: Millis, leg: LegId) {
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        l.pending_2xx = None;
        let call_key = l.call_key;
        self.deadlines.cancel(leg, EngineTimer::AgentRetransmit2xx);
        tracing::warn!(agent = %l.agent, "no ACK to our 2xx from the agent: ending the call");
        self.end_call(now, call_key, EndedBy::System, "ack_timeout", true);
    }

    /// Media events for agent legs; true when `leg` is one.
    pub(super) fn on_agent_media(
        &mut self,
        now: Millis,
        leg: LegId,
        failed: bool,
        inactive: bool,
    ) -> bool {
        let Some(l) = self.agent_legs.get(&leg) else {
            return false;
        };
        if inactive && l.state == AgentLegState::Up {
            let call_key = l.call_key;
            tracing::warn!(agent = %l.agent, "no RTP from the agent's phone: ending the call");
            self.end_call(now, call_key, EndedBy::System, "rtp_timeout", true);
            return true;
        }
        if failed {
            let (state, call_key) = (l.state, l.call_key);
            match state {
                AgentLegState::Ringing => {
                    self.cancel_agent_leg(now, leg);
                    let agent = self.agent_legs.get(&leg).map(|l| l.agent.clone());
                    if let Some(agent) = agent {
                        let _ = self
                            .acd
                            .offer_failed(now, call_key, &agent, OfferOutcome::Failed);
                    }
                }
                AgentLegState::Up => {
                    self.end_call(now, call_key, EndedBy::System, "error: media", true);
                }
                _ => {}
            }
        }
        true
    }
}
