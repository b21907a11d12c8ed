//! One caller leg: its dialog (RFC 3261 section 12) and where it stands in the call flow.

use super::ivr::IvrSession;
use super::media::LegId;
use super::time::Millis;
use super::txn::TxnKey;
use super::Peer;
use crate::proto::sdp::Negotiated;
use crate::proto::sip::Request;
use bytes::Bytes;

/// Where the call stands with the ACD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcdPhase {
    None,
    /// Waiting in a queue (hold audio, offers ringing).
    Queued,
    /// An agent answered.
    Connected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallState {
    /// 180 sent, waiting for the answer policy's ring count.
    Ringing,
    /// 200 sent; the call is up (IVR running, or saying goodbye).
    Answered,
    /// Our BYE is out; the call is over and only waits for the BYE transaction to end.
    Terminating,
}

/// Named per-call timers (DESIGN.md: timers are data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallTimer {
    /// Send the 200 OK after `answer_after_rings` rings.
    Answer,
    /// Re-send the 2xx until the ACK comes (RFC 3261 13.3.1.4: T1 doubling up to T2).
    Retransmit2xx,
    /// 64*T1 without ACK: confirm the dialog is dead with BYE (RFC 3261 13.3.1.4).
    AckTimeout,
    /// The IVR session's own deadline (digit timeouts).
    Ivr,
    /// Shutdown grace ran out while saying goodbye: hang up now.
    GoodbyeDeadline,
}

pub const ALL_CALL_TIMERS: [CallTimer; 5] = [
    CallTimer::Answer,
    CallTimer::Retransmit2xx,
    CallTimer::AckTimeout,
    CallTimer::Ivr,
    CallTimer::GoodbyeDeadline,
];

#[derive(Debug)]
pub struct Call {
    /// The engine's unique call id (persisted).
    pub id: String,
    pub peer: Peer,
    pub invite: Request,
    pub invite_key: TxnKey,
    pub sip_call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Where in-dialog requests go (the caller's Contact), and the route set.
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    pub state: CallState,
    pub leg: LegId,
    pub rtp_port: u16,
    /// The caller's current media description; None while an offerless INVITE awaits the ACK.
    pub remote_media: Option<Negotiated>,
    pub sdp_session: u64,
    pub sdp_version: u64,
    pub arrived_at: Millis,
    pub answered_at: Option<Millis>,
    pub ivr: Option<IvrSession>,
    pub ivr_seq: u32,
    /// IvrLeft already recorded.
    pub ivr_left: bool,
    /// The play the media plane is running: (play_id, barge_in).
    pub current_play: Option<(u64, bool)>,
    /// Last 2xx we sent to an INVITE, re-sent until the ACK with `ack_cseq` arrives.
    pub pending_2xx: Option<Bytes>,
    pub retransmit_interval_ms: u64,
    pub ack_cseq: u32,
    /// Our offer went in a 2xx (offerless INVITE): the ACK carries the answer.
    pub awaiting_answer_in_ack: bool,
    pub on_hold: bool,
    /// The goodbye prompt played before the system hangs up.
    pub goodbye_play: Option<u64>,
    pub bye_key: Option<TxnKey>,
    /// Why the system hangs up after `goodbye_play` ("shutdown", "feature_code", "max_wait",
    /// "no_agents").
    pub goodbye_reason: &'static str,
    /// An agent's feature-code call (answered at once, confirmed, hung up): the
    /// confirmation prompt.
    pub feature: Option<String>,
    /// A browser (WebRTC) phone's call: its media shell peer's answer (`webrtc_caller.rs`).
    pub webrtc: Option<crate::engine::switch::CallWebRtc>,
    pub acd: AcdPhase,
    /// The queue the call was sent to.
    pub queue: Option<String>,
    /// The agent leg (media leg id) connected to this call.
    pub agent_leg: Option<LegId>,
    /// The IVR path so far, for the agent's phone: "node" or "node:digits" per step.
    pub ivr_path: Vec<String>,
    pub hold_prompt: Option<String>,
    pub hold_play: Option<u64>,
    pub announce_play: Option<u64>,
    pub apology_play: Option<u64>,
    /// What the survey decision needs to know when the call ends (issue 8).
    pub service: ServiceFacts,
    /// Every log line about this call is emitted inside this span.
    pub span: tracing::Span,
}

/// How the caller was served, gathered as the call goes, for the survey decision at its
/// end (`switch::survey_hookup`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceFacts {
    /// Queues entered, in order (first entry, overflows, transfers to a queue). Bounded.
    pub queues_visited: Vec<String>,
    /// The agent the caller spoke to last.
    pub agent: Option<AgentContact>,
    /// A blind transfer to this agent's extension is ringing: if they answer, the call has
    /// no queue of its own.
    pub direct_to: Option<String>,
    /// How the caller left the IVR (`IvrLeft`), once they did.
    pub ivr_outcome: Option<super::record::IvrOutcome>,
}

/// An agent who answered the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentContact {
    pub agent: String,
    /// The queue the agent answered from; None for a direct transfer.
    pub queue: Option<String>,
    pub answered_at: Millis,
    /// The agent handed the call on (blind transfer) at this time.
    pub left_at: Option<Millis>,
}

impl Call {
    /// RFC 3261 12.1.1: our side of the dialog as a UAS; From/To swap for our requests.
    pub fn local_party(&self) -> String {
        with_tag(&self.invite.to.raw, &self.local_tag)
    }

    pub fn remote_party(&self) -> String {
        self.invite.from.raw.clone()
    }

    /// Detaches `leg` if it is this call's agent leg (a leg that went away may belong to an
    /// offer or a supervisor instead); true when it was.
    pub fn detach_agent_leg(&mut self, leg: LegId) -> bool {
        self.agent_leg == Some(leg) && self.agent_leg.take().is_some()
    }

    pub fn language(&self, default: &str) -> String {
        self.ivr
            .as_ref()
            .map(|s| s.language().to_string())
            .unwrap_or_else(|| default.to_string())
    }
}

/// Appends `;tag=` to a From/To header value unless it has one.
pub fn with_tag(header_value: &str, tag: &str) -> String {
    if header_value.to_ascii_lowercase().contains(";tag=") {
        header_value.to_string()
    } else {
        format!("{header_value};tag={tag}")
    }
}
