//! Offers to browser phones (contacts registered over WebSocket): the SDP offer comes from
//! the media shell's WebRTC peer (`MediaCommand::WebRtcOffer` -> `MediaEvent::WebRtcOffer`),
//! so the fork's INVITE goes out when that event arrives; the browser's answer goes back to
//! the peer (`MediaCommand::WebRtcAnswer`, in `on_agent_2xx`), and the agent leg then talks
//! plain RTP with the peer (at its relay address). Everything else (CANCEL, first answer wins, BYE,
//! the bridge, recording, the WebSocket closing) is the ordinary agent-leg path.

use super::agent_leg::AgentLegState;
use super::Engine;
use crate::engine::acd::OfferOutcome;
use crate::engine::media::LegId;
use crate::engine::time::Millis;
use crate::engine::txn::TxnKey;
use crate::proto::sdp::{self, Negotiated};
use std::net::SocketAddr;

impl Engine {
    /// The WebRTC peer of `leg`/`fork` has its offer: send that fork's INVITE with it.
    pub(super) fn on_webrtc_offer(
        &mut self,
        now: Millis,
        leg: LegId,
        fork: usize,
        sdp: String,
        relay: SocketAddr,
    ) {
        let Some(l) = self.agent_legs.get(&leg) else {
            return;
        };
        let Some(f) = l.forks.get(fork) else {
            return;
        };
        if l.state != AgentLegState::Ringing || f.done || !f.webrtc || !f.invite.is_empty() {
            // Withdrawn meanwhile (the media plane closes the peer with the leg).
            return;
        }
        let bytes = self.agent_invite(
            &f.uri,
            f.peer,
            &f.branch,
            &l.from,
            &l.sip_call_id,
            l.offer_headers.clone(),
            sdp.as_bytes(),
        );
        let (peer, branch) = (f.peer, f.branch.clone());
        let key = TxnKey {
            branch,
            method: "INVITE".to_string(),
            sent_by: String::new(),
        };
        self.txns.client_send(now, key, peer, true, bytes.clone());
        if let Some(f) = self
            .agent_legs
            .get_mut(&leg)
            .and_then(|l| l.forks.get_mut(fork))
        {
            f.invite = bytes;
            f.relay = Some(relay);
            f.local_sdp = Some(sdp);
        }
    }

    /// The WebRTC peer failed: before an answer that fork of the offer failed; after it the
    /// leg gets no RTP and its inactivity timer takes the agent as gone (as if the tab had
    /// closed: the caller moves on, `connection_use.rs`).
    pub(super) fn on_webrtc_failed(&mut self, now: Millis, leg: LegId, fork: usize, reason: &str) {
        let Some(l) = self.agent_legs.get(&leg) else {
            return;
        };
        tracing::warn!(leg, fork, agent = %l.agent, reason, "WebRTC media failed");
        let ringing_fork = l.forks.get(fork).is_some_and(|f| !f.done);
        if ringing_fork && l.state == AgentLegState::Ringing {
            if l.forks.get(fork).is_some_and(|f| !f.invite.is_empty()) {
                self.send_cancel(now, leg, fork);
            }
            self.on_fork_failed(now, leg, fork, OfferOutcome::Failed);
        }
    }
}

/// The browser's answer as the agent leg sees it: the codec and telephone-event payload type
/// it chose (the m-line is UDP/TLS/RTP/SAVPF: DTLS-SRTP is the peer's business, so it is read
/// as RTP/AVP), and the peer's relay address as the remote address.
pub(super) fn negotiate_webrtc(body: &[u8], relay: SocketAddr) -> Option<Negotiated> {
    let mut n = negotiate_webrtc_sdp(body).ok()?;
    n.remote = Some(relay);
    Some(n)
}

/// A browser's re-offer (hold, unhold) in an established WebRTC session whose SDP of ours
/// is `ours`: the offer as the leg reads it (remote: the relay) and our answer from the same
/// session at o= `version`. None when the re-offer is unacceptable (488).
pub(super) fn reanswer_webrtc(
    ours: &str,
    offer: &[u8],
    relay: SocketAddr,
    version: u64,
    we_active: bool,
) -> Option<(Negotiated, bytes::Bytes)> {
    let n = negotiate_webrtc(offer, relay)?;
    let text = String::from_utf8_lossy(offer);
    let body = crate::proto::webrtc_sdp::reanswer(ours, &text, version, we_active)?;
    Some((n, body.into()))
}

/// A WebRTC offer or answer read as plain RTP/AVP: codec, telephone-event payload type and
/// direction; its address is the peer's business (ICE), not the leg's.
pub(super) fn negotiate_webrtc_sdp(body: &[u8]) -> Result<Negotiated, sdp::SdpError> {
    let text = String::from_utf8_lossy(body)
        .replace("UDP/TLS/RTP/SAVPF", "RTP/AVP")
        .replace("RTP/SAVPF", "RTP/AVP");
    let mut n = sdp::parse(text.as_bytes()).and_then(|s| sdp::negotiate(&s))?;
    n.remote = None;
    Ok(n)
}
