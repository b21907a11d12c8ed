//! The caller leg: a new INVITE through the answer policy (ringing, answer after N rings,
//! SDP offer/answer, 2xx retransmission until the ACK), then the in-dialog requests
//! (ACK, re-INVITE hold, CANCEL, BYE, INFO digits).

use super::{Engine, ALLOW};
use crate::engine::call::{AcdPhase, Call, CallState, CallTimer};
use crate::engine::ivr::IvrSession;
use crate::engine::media::{Codec, MediaCommand};
use crate::engine::record::{EndedBy, Record};
use crate::engine::time::Millis;
use crate::engine::txn::TxnKey;
use crate::engine::{mask_number, Peer};
use crate::proto::dtmf;
use crate::proto::sdp::{self, Direction, Negotiated, SdpError};
use crate::proto::sip::{Request, ResponseOpts};
use bytes::Bytes;
use rand::Rng;

impl Engine {
    pub(super) fn on_new_invite(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let remote_tag = req.from.tag.clone().unwrap_or_default();
        let dialog = (req.call_id.clone(), remote_tag.clone());
        if let Some(existing) = self.by_dialog.get(&dialog).and_then(|k| self.calls.get(k)) {
            // RFC 3261 8.2.2.2: the same request reached us by another path.
            if existing.invite.cseq == req.cseq && existing.invite_key != key {
                return self.reply(now, &key, &req, peer, 482, "Loop Detected");
            }
            return self.reply(now, &key, &req, peer, 400, "Dialog Already Exists");
        }

        let feature = match self.screen_invite(now, peer, &key, &req) {
            Ok(f) => f,
            Err(()) => return,
        };
        if self.shutting_down {
            return self.reject_call(
                now,
                peer,
                key,
                req,
                503,
                "Service Unavailable",
                "rejected_shutdown",
            );
        }
        if self.active_calls() >= self.cfg.max_calls {
            return self.reject_call(
                now,
                peer,
                key,
                req,
                503,
                "Service Unavailable",
                "rejected_busy",
            );
        }

        // A browser phone's offer: the media shell's WebRTC peer answers it (webrtc_caller).
        let webrtc = crate::proto::webrtc_sdp::is_webrtc(&req.body);
        let offer = if req.body.is_empty() {
            None
        } else {
            let ct = req
                .content_type
                .as_deref()
                .unwrap_or("")
                .to_ascii_lowercase();
            if !ct.starts_with("application/sdp") {
                let to_tag = self.new_tag();
                let opts = ResponseOpts {
                    to_tag: Some(&to_tag),
                    extra_headers: vec![("Accept", "application/sdp".to_string())],
                    ..Default::default()
                };
                self.respond(now, &key, &req, peer, 415, "Unsupported Media Type", opts);
                return;
            }
            let negotiated = if webrtc {
                super::webrtc_offer::negotiate_webrtc_sdp(&req.body)
            } else {
                sdp::parse(&req.body).and_then(|s| sdp::negotiate(&s))
            };
            match negotiated {
                Ok(n) => Some(n),
                Err(SdpError::Malformed(why)) => {
                    let reason = format!("Malformed SDP: {why}");
                    return self.reject_call(now, peer, key, req, 400, &reason, "bad_sdp");
                }
                Err(_) => {
                    return self.reject_call(
                        now,
                        peer,
                        key,
                        req,
                        488,
                        "Not Acceptable Here",
                        "no_codec",
                    )
                }
            }
        };

        let Some(rtp_port) = self.ports.allocate() else {
            return self.reject_call(
                now,
                peer,
                key,
                req,
                503,
                "Service Unavailable",
                "no_rtp_port",
            );
        };

        let call_key = self.next_call;
        self.next_call += 1;
        let leg = self.next_leg;
        self.next_leg += 1;
        let call_id = format!("{:012x}-{:08x}", now.as_u64(), self.rng.random::<u32>());
        let local_tag = self.new_tag();
        let caller = req
            .from
            .user
            .clone()
            .unwrap_or_else(|| req.from.uri.clone());
        let dialled = req.uri_user.clone().unwrap_or_default();
        let span = tracing::info_span!("call", id = %call_id);
        let _entered = span.enter();
        tracing::info!(caller = %mask_number(&caller), dialled = %dialled,
            transport = peer.transport.as_str(), "call arrived");

        self.stats.calls_started += 1;
        self.persist(Record::CallStarted {
            call_id: call_id.clone(),
            sip_call_id: req.call_id.clone(),
            caller,
            dialled,
            transport: peer.transport.as_str().to_string(),
            arrived_at: now,
            ring_cycle_ms: self.cfg.ring_cycle_ms,
        });

        // 100 at once stops the caller's INVITE retransmissions; 180 starts the ring.
        self.respond(
            now,
            &key,
            &req,
            peer,
            100,
            "Trying",
            ResponseOpts::default(),
        );
        let (codec, te) = match &offer {
            Some(n) => (n.codec, n.telephone_event_pt),
            None => (Codec::Pcmu, Some(101)),
        };
        self.media(MediaCommand::Open {
            leg,
            call_id: call_id.clone(),
            local_port: rtp_port,
            remote: offer.as_ref().and_then(|n| n.remote),
            codec,
            telephone_event_pt: te,
            inactivity_ms: self.cfg.rtp_inactivity_ms,
        });
        if webrtc {
            self.media(MediaCommand::WebRtcAccept {
                leg,
                offer: String::from_utf8_lossy(&req.body).into_owned(),
                rtp_port,
            });
        }
        let remote_target = req
            .contact
            .as_ref()
            .map(|c| c.uri.clone())
            .unwrap_or_else(|| req.from.uri.clone());
        let route_set: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Record-Route"))
            .flat_map(|(_, v)| split_header_list(v))
            .collect();
        let contact = self.contact(peer);
        let ringing_opts = ResponseOpts {
            to_tag: Some(&local_tag),
            contact: Some(&contact),
            extra_headers: vec![("Allow", ALLOW.to_string())],
            ..Default::default()
        };
        self.respond(now, &key, &req, peer, 180, "Ringing", ringing_opts);
        self.persist(Record::CallRinging {
            call_id: call_id.clone(),
            ringing_at: now,
        });

        let call = Call {
            id: call_id,
            peer,
            invite_key: key.clone(),
            sip_call_id: req.call_id.clone(),
            local_tag,
            remote_tag: remote_tag.clone(),
            remote_target,
            route_set,
            local_cseq: 1,
            remote_cseq: req.cseq,
            state: CallState::Ringing,
            leg,
            rtp_port,
            remote_media: offer,
            sdp_session: self.rng.random::<u32>() as u64,
            sdp_version: 1,
            arrived_at: now,
            answered_at: None,
            ivr: None,
            ivr_seq: 0,
            ivr_left: false,
            current_play: None,
            pending_2xx: None,
            retransmit_interval_ms: self.cfg.txn.t1_ms,
            ack_cseq: req.cseq,
            awaiting_answer_in_ack: false,
            on_hold: false,
            goodbye_play: None,
            goodbye_reason: "shutdown",
            acd: AcdPhase::None,
            queue: None,
            agent_leg: None,
            ivr_path: Vec::new(),
            hold_prompt: None,
            hold_play: None,
            announce_play: None,
            apology_play: None,
            bye_key: None,
            service: Default::default(),
            span: span.clone(),
            invite: req,
            feature,
            webrtc: webrtc.then(Default::default),
        };
        self.by_dialog.insert(dialog, call_key);
        self.by_invite.insert(key, call_key);
        self.by_leg.insert(leg, call_key);
        self.calls.insert(call_key, call);
        self.limits.call_started(peer.addr.ip());
        let feature_call = self
            .calls
            .get(&call_key)
            .is_some_and(|c| c.feature.is_some());
        let rings = if feature_call {
            0 // An agent's own feature call is not made to wait.
        } else {
            self.cfg.ring_cycle_ms * u64::from(self.cfg.answer_after_rings)
        };
        let answer_at = now.plus(rings);
        if answer_at <= now {
            self.answer(now, call_key);
        } else {
            self.set_timer(call_key, CallTimer::Answer, answer_at);
        }
    }

    /// Refuses a new call with a final response at once (a caller is never left ringing)
    /// and records that it came.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reject_call(
        &mut self,
        now: Millis,
        peer: Peer,
        key: TxnKey,
        req: Request,
        status: u16,
        reason: &str,
        why: &str,
    ) {
        self.stats.calls_rejected += 1;
        let call_id = format!("{:012x}-{:08x}", now.as_u64(), self.rng.random::<u32>());
        let caller = req
            .from
            .user
            .clone()
            .unwrap_or_else(|| req.from.uri.clone());
        tracing::info!(call = %call_id, caller = %mask_number(&caller), status, why, "call refused");
        self.persist(Record::CallStarted {
            call_id: call_id.clone(),
            sip_call_id: req.call_id.clone(),
            caller,
            dialled: req.uri_user.clone().unwrap_or_default(),
            transport: peer.transport.as_str().to_string(),
            arrived_at: now,
            ring_cycle_ms: self.cfg.ring_cycle_ms,
        });
        let to_tag = self.new_tag();
        let extra = if status == 503 {
            vec![("Retry-After", "30".to_string())]
        } else {
            vec![]
        };
        let opts = ResponseOpts {
            to_tag: Some(&to_tag),
            extra_headers: extra,
            ..Default::default()
        };
        self.respond(now, &key, &req, peer, status, reason, opts);
        self.persist(Record::CallEnded {
            call_id: call_id.clone(),
            ended_at: now,
            ended_by: EndedBy::System,
            reason: why.to_string(),
            final_status: status,
        });
        self.survey_at_refusal(now, &call_id, req.from.user.as_deref().unwrap_or(""));
    }

    /// Sends the final non-2xx response to a call's INVITE while it is still ringing (CANCEL,
    /// early BYE, media failure, shutdown). `retry_after_s` adds Retry-After (for 503).
    pub(super) fn refuse_ringing(
        &mut self,
        now: Millis,
        call_key: u64,
        status: u16,
        reason: &str,
        retry_after_s: Option<u32>,
    ) {
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        let (key, invite, peer, tag) = (
            call.invite_key.clone(),
            call.invite.clone(),
            call.peer,
            call.local_tag.clone(),
        );
        let opts = ResponseOpts {
            to_tag: Some(&tag),
            extra_headers: retry_after_s
                .map(|s| vec![("Retry-After", s.to_string())])
                .unwrap_or_default(),
            ..Default::default()
        };
        self.respond(now, &key, &invite, peer, status, reason, opts);
    }

    pub(super) fn contact(&self, peer: Peer) -> String {
        peer.transport.contact_uri(&self.cfg.sent_by)
    }

    pub(super) fn local_sdp(&mut self, call_key: u64) -> Option<Bytes> {
        if let Some(ours) = self.webrtc_local_sdp(call_key) {
            return Some(ours);
        }
        let media_ip = self.cfg.media_ip;
        let call = self.calls.get_mut(&call_key)?;
        call.sdp_version += 1;
        Some(match &call.remote_media {
            Some(n) => sdp::answer(
                media_ip,
                call.rtp_port,
                call.sdp_session,
                call.sdp_version,
                n,
            ),
            None => sdp::offer(media_ip, call.rtp_port, call.sdp_session, call.sdp_version),
        })
    }

    /// The answer policy fired: send 200 OK and start the IVR.
    pub(super) fn answer(&mut self, now: Millis, call_key: u64) {
        if self.webrtc_answer_pending(call_key) {
            return;
        }
        let Some(body) = self.local_sdp(call_key) else {
            return;
        };
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        if call.state != CallState::Ringing {
            return;
        }
        let (peer, key, invite) = (call.peer, call.invite_key.clone(), call.invite.clone());
        let local_tag = call.local_tag.clone();
        let offerless = call.remote_media.is_none();
        let contact = self.contact(peer);
        let opts = ResponseOpts {
            to_tag: Some(&local_tag),
            contact: Some(&contact),
            extra_headers: vec![("Allow", ALLOW.to_string())],
            body: Some(("application/sdp", &body)),
            ..Default::default()
        };
        let ok = self.respond(now, &key, &invite, peer, 200, "OK", opts);
        self.arm_2xx_retransmission(now, call_key, ok, invite.cseq);

        let ring_cycle = self.cfg.ring_cycle_ms;
        let graph = self.cfg.ivr.clone();
        let lang = self.cfg.default_language.clone();
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        call.state = CallState::Answered;
        call.answered_at = Some(now);
        call.awaiting_answer_in_ack = offerless;
        let within = now.since(call.arrived_at) <= 3 * ring_cycle;
        let call_id = call.id.clone();
        let dialled = call.invite.uri_user.clone().unwrap_or_default();
        let feature = call.feature.clone();
        if feature.is_none() {
            let entry = graph.entry_for(&dialled).to_string();
            call.ivr = Some(IvrSession::start(graph, &entry, now, &lang));
        }
        tracing::info!(call = %call_id, within_three_rings = within, "call answered");
        self.persist(Record::CallAnswered {
            call_id,
            answered_at: now,
            within_three_rings: within,
        });
        if feature.as_deref() == Some(super::monitor::MONITOR_FEATURE) {
            return self.start_monitor(now, call_key);
        }
        if let Some(prompt) = feature {
            // The confirmation for a feature code, then our BYE.
            self.say_goodbye(now, call_key, now.plus(30_000), &prompt);
            if let Some(c) = self.calls.get_mut(&call_key) {
                c.goodbye_reason = "feature_code";
            }
            return;
        }
        self.drive_ivr(now, call_key);
    }

    pub(super) fn arm_2xx_retransmission(
        &mut self,
        now: Millis,
        call_key: u64,
        ok: Bytes,
        cseq: u32,
    ) {
        let t1 = self.cfg.txn.t1_ms;
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        call.pending_2xx = Some(ok);
        call.ack_cseq = cseq;
        call.retransmit_interval_ms = t1;
        let reliable = call.peer.transport.is_reliable();
        if !reliable {
            self.set_timer(call_key, CallTimer::Retransmit2xx, now.plus(t1));
        }
        self.set_timer(call_key, CallTimer::AckTimeout, now.plus(64 * t1));
    }

    pub(super) fn on_call_timer(&mut self, now: Millis, call_key: u64, timer: CallTimer) {
        let span = self.calls.get(&call_key).map(|c| c.span.clone());
        let _entered = span.as_ref().map(|s| s.enter());
        match timer {
            CallTimer::Answer => self.answer(now, call_key),
            CallTimer::Retransmit2xx => {
                let t2 = self.cfg.txn.t2_ms;
                let Some(call) = self.calls.get_mut(&call_key) else {
                    return;
                };
                let Some(ok) = call.pending_2xx.clone() else {
                    return;
                };
                call.retransmit_interval_ms = (call.retransmit_interval_ms * 2).min(t2);
                let (peer, next) = (call.peer, now.plus(call.retransmit_interval_ms));
                self.stats.retransmissions += 1;
                self.transmit(peer, ok);
                self.set_timer(call_key, CallTimer::Retransmit2xx, next);
            }
            CallTimer::AckTimeout => {
                let Some(call) = self.calls.get_mut(&call_key) else {
                    return;
                };
                call.pending_2xx = None;
                self.cancel_timer(call_key, CallTimer::Retransmit2xx);
                self.end_call(now, call_key, EndedBy::System, "ack_timeout", true);
            }
            CallTimer::Ivr => {
                if let Some(ivr) = self.calls.get_mut(&call_key).and_then(|c| c.ivr.as_mut()) {
                    ivr.on_timeout(now);
                }
                self.drive_ivr(now, call_key);
            }
            CallTimer::GoodbyeDeadline => {
                let reason = self
                    .calls
                    .get(&call_key)
                    .map_or("shutdown", |c| c.goodbye_reason);
                self.end_call(now, call_key, EndedBy::System, reason, true);
            }
        }
    }

    pub(super) fn on_ack(&mut self, now: Millis, req: Request) {
        let Some(call_key) = self.dialog_of(&req) else {
            return; // ACK to nothing: RFC 3261 says drop it silently.
        };
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        if call.pending_2xx.is_none() || req.cseq != call.ack_cseq {
            return;
        }
        call.pending_2xx = None;
        let wants_answer = call.awaiting_answer_in_ack;
        call.awaiting_answer_in_ack = false;
        self.cancel_timer(call_key, CallTimer::Retransmit2xx);
        self.cancel_timer(call_key, CallTimer::AckTimeout);
        if wants_answer {
            match sdp::parse(&req.body).and_then(|s| sdp::negotiate(&s)) {
                Ok(n) => self.apply_remote_media(now, call_key, n),
                Err(e) => {
                    tracing::warn!(error = %e, "no usable SDP answer in ACK");
                    self.end_call(now, call_key, EndedBy::System, "no_sdp_answer", true);
                }
            }
        }
    }

    /// A new remote description: where to send, which codec, and whether the caller holds us.
    pub(super) fn apply_remote_media(&mut self, now: Millis, call_key: u64, n: Negotiated) {
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let hold =
            matches!(n.direction, Direction::SendOnly | Direction::Inactive) || n.remote.is_none();
        let send = !hold;
        let was_hold = call.on_hold;
        call.on_hold = hold;
        let (leg, call_id) = (call.leg, call.id.clone());
        let cmd = MediaCommand::Update {
            leg,
            remote: n.remote,
            codec: n.codec,
            telephone_event_pt: n.telephone_event_pt,
            send,
        };
        call.remote_media = Some(n);
        self.media(cmd);
        if hold && !was_hold {
            self.persist(Record::HoldStarted { call_id, at: now });
        } else if !hold && was_hold {
            self.persist(Record::HoldEnded { call_id, at: now });
        }
    }

    pub(super) fn on_reinvite(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let Some(call_key) = self.dialog_of(&req) else {
            return self.reply_no_dialog(now, &key, &req, peer);
        };
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        if call.state != CallState::Answered {
            return self.reply_no_dialog(now, &key, &req, peer);
        }
        if req.cseq <= call.remote_cseq {
            return self.reply(now, &key, &req, peer, 500, "CSeq Out Of Order");
        }
        if call.pending_2xx.is_some() {
            // RFC 3261 14.2: an INVITE of ours is still unacknowledged.
            return self.reply(now, &key, &req, peer, 491, "Request Pending");
        }
        // A browser phone's re-INVITE is answered from its WebRTC session.
        let webrtc = self.webrtc_reanswer(call_key, &req.body);
        let offer = match &webrtc {
            Some(Some((n, _))) => Some(n.clone()),
            Some(None) => return self.reply(now, &key, &req, peer, 488, "Not Acceptable Here"),
            None if req.body.is_empty() => None,
            None => match sdp::parse(&req.body).and_then(|s| sdp::negotiate(&s)) {
                Ok(n) => Some(n),
                Err(_) => return self.reply(now, &key, &req, peer, 488, "Not Acceptable Here"),
            },
        };
        if let Some(call) = self.calls.get_mut(&call_key) {
            call.remote_cseq = req.cseq;
            if let Some(c) = req.contact.as_ref() {
                call.remote_target = c.uri.clone();
            }
        }
        let offerless = offer.is_none();
        if let Some(n) = offer {
            self.apply_remote_media(now, call_key, n);
        }
        let ours = match webrtc {
            Some(Some((_, body))) => Some(body),
            _ => self.local_sdp(call_key),
        };
        let Some(body) = ours else {
            return;
        };
        // Offerless re-INVITE: our 2xx carries an offer, the ACK the answer.
        let body = if offerless {
            let Some(call) = self.calls.get_mut(&call_key) else {
                return;
            };
            call.awaiting_answer_in_ack = true;
            sdp::offer(
                self.cfg.media_ip,
                call.rtp_port,
                call.sdp_session,
                call.sdp_version,
            )
        } else {
            body
        };
        let contact = self.contact(peer);
        let opts = ResponseOpts {
            contact: Some(&contact),
            extra_headers: vec![("Allow", ALLOW.to_string())],
            body: Some(("application/sdp", &body)),
            ..Default::default()
        };
        let ok = self.respond(now, &key, &req, peer, 200, "OK", opts);
        self.arm_2xx_retransmission(now, call_key, ok, req.cseq);
    }

    pub(super) fn on_cancel(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let invite_key = TxnKey {
            method: "INVITE".to_string(),
            ..key.clone()
        };
        let Some(&call_key) = self.by_invite.get(&invite_key) else {
            return self.reply_no_dialog(now, &key, &req, peer);
        };
        self.reply(now, &key, &req, peer, 200, "OK");
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        if call.state != CallState::Ringing {
            return; // Too late: the 200 is out (RFC 3261 9.2).
        }
        self.refuse_ringing(now, call_key, 487, "Request Terminated", None);
        self.end_call_with_status(now, call_key, EndedBy::Caller, "cancel", 487, false);
    }

    pub(super) fn on_bye(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let Some(call_key) = self.dialog_of(&req) else {
            return self.reply_no_dialog(now, &key, &req, peer);
        };
        self.reply(now, &key, &req, peer, 200, "OK");
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        match call.state {
            CallState::Terminating => {}
            CallState::Ringing => {
                // BYE in the early dialog: the INVITE gets 487 (RFC 3261 15.1.2).
                self.refuse_ringing(now, call_key, 487, "Request Terminated", None);
                self.end_call_with_status(now, call_key, EndedBy::Caller, "bye", 487, false);
            }
            CallState::Answered => self.end_call(now, call_key, EndedBy::Caller, "bye", false),
        }
    }

    pub(super) fn on_info(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let Some(call_key) = self.dialog_of(&req) else {
            return self.reply_no_dialog(now, &key, &req, peer);
        };
        match info_digit(&req) {
            Ok(digit) => {
                self.reply(now, &key, &req, peer, 200, "OK");
                if let Some(digit) = digit {
                    self.on_digit(now, call_key, digit, false);
                }
            }
            Err((code, reason)) => self.reply(now, &key, &req, peer, code, reason),
        }
    }
}

/// The digit of a SIP INFO (application/dtmf-relay or application/dtmf), None for an
/// empty INFO (a keep-alive); the status and reason to answer with when it is neither.
pub(super) fn info_digit(req: &Request) -> Result<Option<char>, (u16, &'static str)> {
    if req.body.is_empty() {
        return Ok(None);
    }
    let ct = req.content_type.clone().unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("application/dtmf") {
        return Err((415, "Unsupported Media Type"));
    }
    dtmf::parse_info_body(&ct, &req.body)
        .map(Some)
        .map_err(|_| (400, "Bad DTMF Body"))
}

/// Splits a comma-separated header value, keeping commas inside <...> and quotes.
fn split_header_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    for (i, ch) in value.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                out.push(value[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = value[start..].trim();
    if !last.is_empty() {
        out.push(last.to_string());
    }
    out
}
