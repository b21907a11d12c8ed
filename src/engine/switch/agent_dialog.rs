//! The answered agent leg: the agent's in-dialog requests (BYE, re-INVITE hold, ACK),
//! our 2xx retransmission, transaction timeouts and the agent leg's media events.

use super::agent_leg::AgentLegState;
use super::{Engine, EngineTimer};
use crate::engine::acd::OfferOutcome;
use crate::engine::call::AcdPhase;
use crate::engine::media::{LegId, MediaCommand};
use crate::engine::record::{EndedBy, Record};
use crate::engine::time::Millis;
use crate::engine::txn::TxnKey;
use crate::engine::Peer;
use crate::proto::sdp::{self, Direction};
use crate::proto::sip::{self, Method, Request, RequestOpts, ResponseOpts};
use bytes::Bytes;
use rand::Rng;

impl Engine {
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
        let contact = peer.transport.contact_uri(&sent_by);
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
        let monitor = l.monitor;
        self.agent_by_branch.insert(branch, leg);
        self.txns.client_send(now, key, peer, false, bytes);
        self.media(unhook(leg, monitor));
    }

    pub(super) fn release_bye_done(&mut self, leg: LegId) {
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
        let (state, call_key, monitor) = (l.state, l.call_key, l.monitor);
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
                self.media(unhook(leg, monitor));
                self.release_leg(leg);
                // After a transfer (or our own BYE) the caller's call no longer hangs on
                // this leg; a supervisor's monitoring leg never did.
                let ours = self
                    .calls
                    .get_mut(&call_key)
                    .is_some_and(|c| c.detach_agent_leg(leg));
                if ours {
                    self.end_call(now, call_key, EndedBy::Agent, "agent_bye", true);
                }
            }
            Method::Invite => self.on_agent_reinvite(now, peer, key, req, leg),
            Method::Refer if monitor => {
                self.reply(now, key, req, peer, 403, "Forbidden (monitoring call)")
            }
            Method::Refer => self.on_agent_refer(now, peer, key, req, leg),
            Method::Info if monitor => self.on_monitor_info(now, peer, key, req, leg),
            Method::Options | Method::Info => self.reply(now, key, req, peer, 200, "OK"),
            _ => self.reply(now, key, req, peer, 405, "Method Not Allowed"),
        }
        true
    }

    pub(super) fn on_agent_reinvite(
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
        // A browser's re-INVITE (hold, unhold) is answered from its WebRTC session.
        if let Some((ours, relay, active)) = l.webrtc.clone() {
            let version = l.sdp_version + 1;
            let answer =
                super::webrtc_offer::reanswer_webrtc(&ours, &req.body, relay, version, active);
            let Some((n, body)) = answer else {
                return self.reply(now, key, req, peer, 488, "Not Acceptable Here");
            };
            l.sdp_version = version;
            return self.finish_agent_reinvite(now, peer, key, req, leg, Some(n), body);
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
        self.finish_agent_reinvite(now, peer, key, req, leg, offer, body);
    }

    /// Applies a re-INVITE's offer to the leg (hold, codec, address) and sends our 2xx.
    #[allow(clippy::too_many_arguments)]
    fn finish_agent_reinvite(
        &mut self,
        now: Millis,
        peer: Peer,
        key: &TxnKey,
        req: &Request,
        leg: LegId,
        offer: Option<sdp::Negotiated>,
        body: Bytes,
    ) {
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        let (call_key, caller_call_id, monitor) = (l.call_key, l.caller_call_id.clone(), l.monitor);
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
            // A supervisor putting their phone on hold does not hold the monitored call.
            let in_call = !monitor && self.calls.contains_key(&call_key);
            if in_call && hold && !was {
                self.persist(Record::HoldStarted {
                    call_id: caller_call_id,
                    at: now,
                });
                self.hold_audio_to_caller(call_key, leg, true);
            } else if in_call && !hold && was {
                self.persist(Record::HoldEnded {
                    call_id: caller_call_id,
                    at: now,
                });
                self.hold_audio_to_caller(call_key, leg, false);
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

    /// The agent on `leg` put the caller on hold (`on`) or took them off it: the caller
    /// hears the queue's hold audio meanwhile (the bridge stays, so the recording and the
    /// caller's audio go on), then the agent again.
    fn hold_audio_to_caller(&mut self, call_key: u64, leg: LegId, on: bool) {
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        if call.agent_leg != Some(leg) || call.acd != AcdPhase::Connected {
            return;
        }
        let caller_leg = call.leg;
        if on {
            let queue_prompt = || {
                let q = call.queue.as_deref()?;
                self.cfg.queues.get(q).map(|q| q.hold_prompt.clone())
            };
            if let Some(prompt) = call.hold_prompt.clone().or_else(queue_prompt) {
                self.play_hold(call_key, &prompt);
            }
        } else {
            self.media(MediaCommand::StopPlay { leg: caller_leg });
        }
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
        if l.monitor {
            tracing::warn!(supervisor = %l.agent, "no ACK to our 2xx from the supervisor's phone");
            self.agent_bye(now, leg);
            return;
        }
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
        if l.monitor {
            // A supervisor's phone: its failures end the monitoring, never the call.
            match l.state {
                AgentLegState::Ringing if failed => {
                    self.cancel_agent_leg(now, leg);
                    self.monitor_ring_over(leg, "failed");
                }
                AgentLegState::Up if failed || inactive => {
                    tracing::warn!(supervisor = %l.agent, "monitoring leg lost its media");
                    self.agent_bye(now, leg);
                }
                _ => {}
            }
            return true;
        }
        if inactive && l.state == AgentLegState::Up && l.webrtc.is_some() {
            // The browser's media died (ICE or DTLS failed) while its WebSocket may still be
            // up: the agent is gone as if the tab had closed (connection_use.rs).
            let call_key = l.call_key;
            tracing::warn!(agent = %l.agent, "no RTP from the agent's browser: agent lost");
            self.agent_bye(now, leg);
            let ours = self
                .calls
                .get_mut(&call_key)
                .is_some_and(|c| c.detach_agent_leg(leg));
            if ours {
                self.agent_vanished(now, call_key);
            }
            return true;
        }
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

/// The media command that takes an ending leg out of what it is in: a supervisor's
/// monitoring leg leaves the mix (caller and agent keep talking), an agent leg its bridge.
pub(super) fn unhook(leg: LegId, monitor: bool) -> MediaCommand {
    if monitor {
        MediaCommand::Unmonitor { supervisor: leg }
    } else {
        MediaCommand::Unbridge { leg }
    }
}
