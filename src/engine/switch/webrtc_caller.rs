//! Browser (WebRTC) phones that call us: a supervisor's browser phone dialling `*31<ext>`,
//! a WebRTC SIP client dialling a queue or a feature code. Their INVITE offers DTLS-SRTP
//! (UDP/TLS/RTP/SAVPF with ICE), which the media shell's WebRTC peer answers
//! (`MediaCommand::WebRtcAccept` -> `MediaEvent::WebRtcAccepted`), so the caller leg's
//! 200 OK waits for that answer (`answer` asks `webrtc_answer_pending`). The leg then talks
//! plain RTP with the peer (at its relay address), and everything else (rings, IVR, queue, bridge,
//! recording, monitoring, digits) is the ordinary caller leg. A re-INVITE (hold) is answered
//! from the same WebRTC session (`proto::webrtc_sdp::reanswer`); the peer failing before the
//! answer refuses the call (488), after it ends the call.

use super::Engine;
use crate::engine::call::CallState;
use crate::engine::media::LegId;
use crate::engine::record::EndedBy;
use crate::engine::time::Millis;
use crate::proto::sdp::Negotiated;
use crate::proto::webrtc_sdp;
use bytes::Bytes;
use std::net::SocketAddr;

/// A caller leg whose phone is a WebRTC peer.
#[derive(Clone, Debug, Default)]
pub struct CallWebRtc {
    /// Our SDP answer (from the media shell's peer) and the peer's relay address, once there.
    pub answer: Option<(String, SocketAddr)>,
    /// The answer policy fired before our SDP was there: answer as soon as it is.
    pub answer_due: bool,
}

impl Engine {
    /// Whether the call's 200 OK must wait for its WebRTC answer (noted: it goes out when
    /// the answer comes).
    pub(super) fn webrtc_answer_pending(&mut self, call_key: u64) -> bool {
        let Some(w) = self
            .calls
            .get_mut(&call_key)
            .and_then(|c| c.webrtc.as_mut())
        else {
            return false;
        };
        if w.answer.is_some() {
            return false;
        }
        w.answer_due = true;
        true
    }

    /// Our SDP for a WebRTC caller's 200 OK: the peer's answer (a re-INVITE gets
    /// `webrtc_reanswer`).
    pub(super) fn webrtc_local_sdp(&self, call_key: u64) -> Option<Bytes> {
        let (sdp, _) = self
            .calls
            .get(&call_key)?
            .webrtc
            .as_ref()?
            .answer
            .as_ref()?;
        Some(Bytes::from(sdp.clone()))
    }

    /// The peer answered the browser's offer: the leg's remote is the relay, the codec the
    /// one our answer chose; the 200 OK goes out now if the rings are over.
    pub(super) fn on_webrtc_accepted(
        &mut self,
        now: Millis,
        leg: LegId,
        sdp: String,
        relay: SocketAddr,
    ) {
        let Some(&call_key) = self.by_leg.get(&leg) else {
            return;
        };
        let Some(n) = super::webrtc_offer::negotiate_webrtc(sdp.as_bytes(), relay) else {
            return self.webrtc_caller_failed(now, call_key, "our WebRTC answer has no codec");
        };
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let Some(w) = call.webrtc.as_mut() else {
            return;
        };
        let due = w.answer_due;
        // A re-INVITE's answer raises our answer's o= version.
        if let Some(v) = webrtc_sdp::session_version(&sdp) {
            call.sdp_version = v;
        }
        if let Some(w) = call.webrtc.as_mut() {
            w.answer = Some((sdp, relay));
        }
        self.apply_remote_media(now, call_key, n);
        if due {
            self.answer(now, call_key);
        }
    }

    /// The peer of a WebRTC caller failed: before our answer the call is refused, after it
    /// the call ends. False when `leg` is no caller's.
    pub(super) fn on_webrtc_caller_failed(
        &mut self,
        now: Millis,
        leg: LegId,
        reason: &str,
    ) -> bool {
        let Some(&call_key) = self.by_leg.get(&leg) else {
            return false;
        };
        if self.calls.get(&call_key).is_none_or(|c| c.webrtc.is_none()) {
            return false;
        }
        self.webrtc_caller_failed(now, call_key, reason);
        true
    }

    fn webrtc_caller_failed(&mut self, now: Millis, call_key: u64, reason: &str) {
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        tracing::warn!(call = %call.id, reason, "WebRTC media of a browser caller failed");
        match call.state {
            CallState::Ringing => {
                self.refuse_ringing(now, call_key, 488, "Not Acceptable Here", None);
                self.end_call_with_status(
                    now,
                    call_key,
                    EndedBy::System,
                    "webrtc_failed",
                    488,
                    false,
                );
            }
            CallState::Answered => {
                self.end_call(now, call_key, EndedBy::System, "webrtc_failed", true)
            }
            CallState::Terminating => {}
        }
    }

    /// A WebRTC caller's re-INVITE (hold, unhold): its offer read for the leg and our answer
    /// from the same session. None for a call that is no WebRTC one (or not answered yet);
    /// `Some(None)` when the re-offer is unacceptable (488).
    pub(super) fn webrtc_reanswer(
        &mut self,
        call_key: u64,
        offer: &[u8],
    ) -> Option<Option<(Negotiated, Bytes)>> {
        let call = self.calls.get_mut(&call_key)?;
        let (ours, relay) = call.webrtc.as_ref()?.answer.clone()?;
        let version = call.sdp_version + 1;
        // Our answer's DTLS role stays ours (active unless we answered passive).
        let we_active = !ours.lines().any(|l| l.trim_end() == "a=setup:passive");
        let answer = super::webrtc_offer::reanswer_webrtc(&ours, offer, relay, version, we_active);
        if answer.is_some() {
            call.sdp_version = version;
        }
        Some(answer)
    }
}
