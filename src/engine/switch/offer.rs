//! Offering a call to an agent: INVITE forks to every registered contact, CANCEL, the
//! agent phone's responses (first 2xx wins, failures go back to the ACD), the ACK, and the
//! bridge (and recording) once answered.

use super::agent_leg::{outcome_of, AgentLeg, AgentLegState, Fork};
use super::{Engine, EngineTimer};
use crate::engine::acd::OfferOutcome;
use crate::engine::call::AcdPhase;
use crate::engine::media::{Codec, LegId, MediaCommand};
use crate::engine::record::Record;
use crate::engine::time::Millis;
use crate::engine::txn::{ClientMatch, TxnKey};
use crate::engine::Peer;
use crate::proto::sdp::{self};
use crate::proto::sip::{self, Method, RequestOpts, Response};
use crate::proto::webrtc_sdp;
use bytes::Bytes;
use rand::Rng;

/// One outbound leg to ring (`Engine::ring_contacts`).
pub(super) struct Outbound {
    /// The call the leg belongs to (an offer's caller, a monitoring call's monitored call).
    pub call_key: u64,
    pub caller_call_id: String,
    /// The extension rung: an agent's, or a supervisor's SIP phone.
    pub extension: String,
    pub rtp_port: u16,
    /// Our From: display name and URI user (no `"` or `\\` in the display name).
    pub from_display: String,
    pub from_user: String,
    pub extra: Vec<(&'static str, String)>,
    /// A supervisor's monitoring leg (`monitor.rs`), not an ACD offer.
    pub monitor: bool,
}

impl Engine {
    pub(super) fn bridge(&mut self, call_key: u64) {
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

    pub(super) fn start_offer(&mut self, now: Millis, call_key: u64, agent: &str) {
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
        let display: String = caller.chars().filter(|c| *c != '"' && *c != '\\').collect();
        let mut extra: Vec<(&'static str, String)> = vec![
            ("X-Caller", caller.clone()),
            // The agent desk fetches the screen pop by it (GET /api/v1/calls/{id}/history).
            ("X-Call-Id", caller_call_id.clone()),
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
        let leg = self.ring_contacts(
            now,
            &contacts,
            Outbound {
                call_key,
                caller_call_id,
                extension: agent.to_string(),
                rtp_port,
                from_user: display.clone(),
                from_display: display,
                extra,
                monitor: false,
            },
        );
        tracing::info!(agent, leg, forks = contacts.len(), "offering call to agent");
        self.offers.insert(call_key, leg);
    }

    /// A new outbound leg (its media leg opened on `o.rtp_port`) with one INVITE fork per
    /// contact in parallel (a browser contact's INVITE waits for the media shell's WebRTC
    /// offer). Offers to agents and monitoring calls to supervisors (`monitor`) both ring
    /// this way; what happens on the answer is up to the leg's kind.
    pub(super) fn ring_contacts(
        &mut self,
        now: Millis,
        contacts: &[crate::engine::registrar::Binding],
        o: Outbound,
    ) -> LegId {
        let leg = self.next_leg;
        self.next_leg += 1;
        let sip_call_id = format!("{:016x}@ccswitch", self.rng.random::<u64>());
        let local_tag = self.new_tag();
        let sent_by = self.cfg.sent_by.clone();
        let from = format!(
            "\"{}\" <sip:{}@{sent_by}>;tag={local_tag}",
            o.from_display, o.from_user
        );
        let sdp_session = self.rng.random::<u32>() as u64;
        let rtp_port = o.rtp_port;
        let body = sdp::offer(self.cfg.media_ip, rtp_port, sdp_session, 1);
        self.media(MediaCommand::Open {
            leg,
            call_id: o.caller_call_id.clone(),
            local_port: rtp_port,
            remote: None,
            codec: Codec::Pcmu,
            telephone_event_pt: Some(101),
            // Ringing legs get no RTP; the caller leg's own timer guards the call.
            // An agent phone that vanishes without a BYE ends the call like a caller's does.
            inactivity_ms: self.cfg.rtp_inactivity_ms,
        });
        let extra = o.extra;
        let mut forks = Vec::new();
        for b in contacts {
            let branch = sip::new_branch(self.rng.random());
            let peer = Peer {
                transport: b.transport,
                addr: b.source,
            };
            // A browser phone gets the media shell's WebRTC offer: its INVITE waits for it.
            let webrtc = b.transport.is_connection_bound();
            let bytes = if webrtc {
                self.media(MediaCommand::WebRtcOffer {
                    leg,
                    fork: forks.len(),
                    rtp_port,
                });
                Bytes::new()
            } else {
                let bytes = self.agent_invite(
                    &b.uri,
                    peer,
                    &branch,
                    &from,
                    &sip_call_id,
                    extra.clone(),
                    &body,
                );
                let key = TxnKey {
                    branch: branch.clone(),
                    method: "INVITE".to_string(),
                    sent_by: String::new(),
                };
                self.txns.client_send(now, key, peer, true, bytes.clone());
                bytes
            };
            self.agent_by_branch.insert(branch.clone(), leg);
            forks.push(Fork {
                branch,
                peer,
                uri: b.uri.clone(),
                invite: bytes,
                provisional: false,
                cancel_pending: false,
                done: false,
                webrtc,
                relay: None,
                local_sdp: None,
            });
        }
        self.agent_by_callid.insert(sip_call_id.clone(), leg);
        self.agent_legs.insert(
            leg,
            AgentLeg {
                call_key: o.call_key,
                caller_call_id: o.caller_call_id,
                agent: o.extension,
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
                offer_headers: extra,
                webrtc: None,
                monitor: o.monitor,
            },
        );
        leg
    }

    /// The INVITE of one fork of an offer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn agent_invite(
        &self,
        uri: &str,
        peer: Peer,
        branch: &str,
        from: &str,
        call_id: &str,
        extra: Vec<(&'static str, String)>,
        body: &[u8],
    ) -> Bytes {
        let contact = self.contact(peer);
        let to = format!("<{uri}>");
        sip::request(&RequestOpts {
            method: Method::Invite,
            uri,
            transport: peer.transport,
            sent_by: &self.cfg.sent_by,
            branch,
            from,
            to: &to,
            call_id,
            cseq: 1,
            contact: Some(&contact),
            route: vec![],
            extra_headers: extra,
            body: Some(("application/sdp", body)),
        })
    }

    pub(super) fn send_cancel(&mut self, now: Millis, leg: LegId, fork_idx: usize) {
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
        if f.invite.is_empty() {
            // A WebRTC fork whose INVITE never went out: nothing to cancel.
            f.done = true;
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
    pub(super) fn cancel_agent_leg(&mut self, now: Millis, leg: LegId) {
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
    pub(super) fn maybe_release_leg(&mut self, leg: LegId) {
        let Some(l) = self.agent_legs.get(&leg) else {
            return;
        };
        let finished = l.forks.iter().all(|f| f.done);
        if matches!(l.state, AgentLegState::Cancelling) && finished {
            self.release_leg(leg);
        }
    }

    pub(super) fn release_leg(&mut self, leg: LegId) {
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
                EngineTimer::MonitorRing,
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

    pub(super) fn on_fork_failed(
        &mut self,
        now: Millis,
        leg: LegId,
        fi: usize,
        outcome: OfferOutcome,
    ) {
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
                let monitor = l.monitor;
                self.release_leg(leg);
                if monitor {
                    self.monitor_ring_over(leg, failure.as_str());
                    return;
                }
                tracing::info!(agent = %agent, outcome = failure.as_str(), "offer failed");
                if let Err(e) = self.acd.offer_failed(now, call, &agent, failure) {
                    tracing::debug!(error = %e, "offer_failed ignored");
                }
            }
            AgentLegState::Cancelling => self.release_leg(leg),
            _ => {}
        }
    }

    pub(super) fn ack_2xx(
        &mut self,
        leg: LegId,
        fi: usize,
        resp: &Response,
    ) -> Option<(Bytes, Peer)> {
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

    pub(super) fn on_agent_2xx(&mut self, now: Millis, leg: LegId, fi: usize, resp: &Response) {
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
        let webrtc = l.forks[fi].webrtc.then_some(l.forks[fi].relay).flatten();
        let media = match webrtc {
            Some(relay) => {
                self.media(MediaCommand::WebRtcAnswer {
                    leg,
                    fork: fi,
                    sdp: String::from_utf8_lossy(&resp.body).into_owned(),
                });
                super::webrtc_offer::negotiate_webrtc(&resp.body, relay)
            }
            None => sdp::parse(&resp.body).and_then(|s| sdp::negotiate(&s)).ok(),
        };
        let Some(l) = self.agent_legs.get_mut(&leg) else {
            return;
        };
        if let (Some(relay), Some(ours)) = (webrtc, l.forks[fi].local_sdp.clone()) {
            let answer = String::from_utf8_lossy(&resp.body);
            l.webrtc = Some((ours, relay, webrtc_sdp::we_are_active(&answer)));
        }
        let monitor = l.monitor;
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
        if monitor {
            self.monitor_answered(now, leg);
            return;
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
    pub(super) fn bye_stray(&mut self, now: Millis, leg: LegId, fi: usize, resp: &Response) {
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
}
