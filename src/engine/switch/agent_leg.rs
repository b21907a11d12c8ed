//! Agents inside the switch engine: the outbound (B2BUA) leg to an agent's phone and its
//! types, and the documented choices of the whole agent flow, whose steps live beside this
//! file (`registration`, `feature_codes`, `queueing`, `offer`, `agent_dialog`, `transfer`).
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
//!   `Bridge { a: caller leg, b: agent leg }`. While the agent holds (re-INVITE sendonly or
//!   inactive, desk phone or browser) the caller hears the queue's hold audio, played on
//!   the bridged caller leg; the hold segment is recorded.
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

use crate::engine::acd::OfferOutcome;
use crate::engine::Peer;
use crate::proto::sdp::Negotiated;
use bytes::Bytes;

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
    /// A browser (WebSocket) contact: its INVITE waits for the media shell's WebRTC offer
    /// (`invite` stays empty until sent); `relay` is where the peer's plain RTP comes from.
    pub webrtc: bool,
    pub relay: Option<std::net::SocketAddr>,
    /// The WebRTC peer's SDP offer sent to it.
    pub local_sdp: Option<String>,
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
    /// The INVITE's extra headers, kept for forks sent later (WebRTC offers).
    pub offer_headers: Vec<(&'static str, String)>,
    /// Answered by a browser: our WebRTC SDP, the peer's relay address, our DTLS role
    /// (true: active), for re-INVITEs.
    pub webrtc: Option<(String, std::net::SocketAddr, bool)>,
    /// A supervisor's phone rung to monitor `call_key` (`monitor.rs`), not an ACD offer:
    /// its answer joins the call's mix, its end never ends the call, it takes no REFER.
    pub monitor: bool,
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
pub const FEATURE_PROMPTS: [&str; 5] = [
    "feature_ready",
    "feature_not_ready",
    "feature_logged_out",
    "feature_refused",
    "feature_disposition_saved",
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
pub(super) fn outcome_of(status: u16) -> OfferOutcome {
    match status {
        486 | 600 => OfferOutcome::Busy,
        603 => OfferOutcome::Rejected,
        408 | 480 | 487 => OfferOutcome::NoAnswer,
        _ => OfferOutcome::Failed,
    }
}
