//! The contract between the engine and the media plane: commands the engine gives, events
//! the media plane reports. The media plane never waits for the engine.

use super::time::Millis;
use std::net::SocketAddr;
use std::path::PathBuf;

/// One RTP leg (one caller or one agent phone). Unique for the process lifetime.
pub type LegId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 mu-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
}

/// A prompt id from `prompts/README.md` in one language ("en", "zh").
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PromptKey {
    pub id: String,
    pub lang: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MediaCommand {
    /// Bind `local_port` on the media address and start a leg. `remote` is where the SDP says
    /// to send; symmetric RTP replaces it by the source of the first packet received.
    Open {
        leg: LegId,
        call_id: String,
        local_port: u16,
        remote: Option<SocketAddr>,
        codec: Codec,
        /// Payload type the peer uses for telephone-event (RFC 4733), if negotiated.
        telephone_event_pt: Option<u8>,
        /// No RTP received for this long -> `MediaEvent::Inactive` (0 = never).
        inactivity_ms: u64,
    },
    /// A re-INVITE changed where or how to send.
    Update {
        leg: LegId,
        remote: Option<SocketAddr>,
        codec: Codec,
        telephone_event_pt: Option<u8>,
        /// false while the peer holds us (sendonly/inactive from its side): send nothing.
        send: bool,
    },
    /// Play these prompts one after another (replacing what is playing). `looped` repeats the
    /// list until stopped (hold music). With `barge_in`, a digit stops playback at once.
    Play {
        leg: LegId,
        play_id: u64,
        prompts: Vec<PromptKey>,
        looped: bool,
        barge_in: bool,
    },
    /// Stop playback (silence is not sent; the RTP stream resumes with a marker bit later).
    StopPlay { leg: LegId },
    /// Release the leg and its port. A bridge it is in ends (the peer leg goes idle) and its
    /// recording is finalized.
    Close { leg: LegId },
    /// From now on RTP received on `a` is relayed to `b`'s remote and vice versa, inside the
    /// media plane (no per-packet hop through the engine). Playback stops on both legs
    /// (`PlayFinished { interrupted: true }`); each leg keeps its own SSRC and continues its
    /// sequence and timestamp (marker bit on the first relayed packet); PCMU<->PCMA is
    /// transcoded when the codecs differ; RFC 4733 events are passed through with the payload
    /// type mapped to `b`'s (dropped when `b` negotiated none). Digits are still reported as
    /// `Digit` events. A leg already bridged elsewhere is unbridged first. While bridged, a
    /// `Play` on a leg takes that leg's outgoing stream over (hold audio to the caller while
    /// the agent holds): nothing relayed or mixed reaches it until the play ends or
    /// `StopPlay`, then the relay goes on (audio from the leg is relayed and recorded as
    /// before throughout).
    Bridge { a: LegId, b: LegId },
    /// Ends the bridge `leg` is in: both legs go back to idle (silent until the next Play).
    Unbridge { leg: LegId },
    /// Records the bridge of `a` and `b` to a stereo 8 kHz 16-bit WAV: `a` (caller) left, `b`
    /// (agent) right, silence where a side sent nothing. Written off the packet path; ends with
    /// `RecordingFinished` on StopRecording, Unbridge or Close of either leg. The legs must be
    /// bridged with each other (Bridge first); otherwise `RecordingFinished { ok: false }`.
    StartRecording { a: LegId, b: LegId, path: PathBuf },
    /// Finalizes the recording that leg `a` (either leg of it) is in.
    StopRecording { a: LegId },
    /// A browser (WebRTC) phone is offered the call on `leg` (opened before with `Open` on
    /// `rtp_port`): the media shell creates a WebRTC peer (ICE, DTLS-SRTP, RTCP) for INVITE
    /// fork `fork`, gathers its candidates and answers `MediaEvent::WebRtcOffer` with the SDP
    /// offer to send (or `WebRtcFailed`). Once connected, the peer's audio goes to and comes
    /// from the leg's port as plain RTP inside the media plane (never through the engine), so
    /// bridging, recording, digits and playback work on the leg exactly as on a UDP phone.
    WebRtcOffer {
        leg: LegId,
        fork: usize,
        rtp_port: u16,
    },
    /// The browser's SDP answer for the peer of `leg`/`fork`; the leg's other peers (other
    /// forks) are closed. `Close { leg }` closes them all.
    WebRtcAnswer {
        leg: LegId,
        fork: usize,
        sdp: String,
    },
    /// A browser (WebRTC) phone calls us: `offer` is the SDP of its INVITE. The media shell
    /// creates a WebRTC peer for `leg` (opened before with `Open` on `rtp_port`), answers the
    /// offer and reports `MediaEvent::WebRtcAccepted` with our SDP answer (or `WebRtcFailed`,
    /// fork 0); once connected its audio meets the leg as with `WebRtcOffer`.
    WebRtcAccept {
        leg: LegId,
        offer: String,
        rtp_port: u16,
    },
    /// A supervisor joins the bridged call of `caller` and `agent` (`media::mix`): from now on
    /// each of the three legs hears a 16-bit linear mix of the others it may hear in `mode`,
    /// made in the media plane on the listener's 20 ms grid (the caller-agent relay pauses
    /// while the mix runs; digits and the recording of caller and agent go on as before).
    /// Sent again with another mode, it switches the mode. `supervisor` must not be bridged.
    Monitor {
        caller: LegId,
        agent: LegId,
        supervisor: LegId,
        mode: MonitorMode,
    },
    /// The supervisor leaves: caller and agent go back to the plain relay, the supervisor's
    /// leg goes idle. Closing any of the three legs, or unbridging caller and agent, also ends
    /// the mix.
    Unmonitor { supervisor: LegId },
}

/// Who hears whom while a supervisor monitors a call (issue 10 item 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MonitorMode {
    /// The supervisor hears caller and agent; nobody hears the supervisor.
    Listen,
    /// The agent hears caller and supervisor; the caller hears the agent only; the
    /// supervisor hears both.
    Whisper,
    /// Everyone hears the other two.
    Barge,
}

impl MonitorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorMode::Listen => "listen",
            MonitorMode::Whisper => "whisper",
            MonitorMode::Barge => "barge",
        }
    }

    pub fn parse(s: &str) -> Option<MonitorMode> {
        match s {
            "listen" => Some(MonitorMode::Listen),
            "whisper" => Some(MonitorMode::Whisper),
            "barge" => Some(MonitorMode::Barge),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum MediaEvent {
    /// The port could not be bound, or the leg could not start.
    OpenFailed { leg: LegId, reason: String },
    /// One DTMF digit from RFC 4733 (one per event, end packets deduped) at receive time.
    Digit { leg: LegId, digit: char, at: Millis },
    /// A `Play` ended: all prompts sent (`interrupted: false`) or cut by barge-in/StopPlay/new Play.
    PlayFinished {
        leg: LegId,
        play_id: u64,
        interrupted: bool,
    },
    /// No RTP for `inactivity_ms`.
    Inactive { leg: LegId, at: Millis },
    /// A recording ended and its file is complete (`ok`), or it failed (`reason`). `leg` is
    /// the recording's `a` leg.
    RecordingFinished {
        leg: LegId,
        path: PathBuf,
        ok: bool,
        reason: Option<String>,
    },
    /// The WebRTC peer of `leg`/`fork` is ready: `sdp` is its offer (all ICE candidates
    /// gathered, `a=fingerprint`, `a=setup:actpass`), `relay` the address that stands for the
    /// peer in the media plane: the leg hears the browser's RTP from it and sends there (the
    /// leg's remote once this fork answers).
    WebRtcOffer {
        leg: LegId,
        fork: usize,
        sdp: String,
        relay: SocketAddr,
    },
    /// The WebRTC peer of a browser's call (`WebRtcAccept`) has answered its offer: `sdp` is
    /// the answer for our 200 OK (all candidates gathered), `relay` the address that stands
    /// for the peer in the media plane (the leg's remote).
    WebRtcAccepted {
        leg: LegId,
        sdp: String,
        relay: SocketAddr,
    },
    /// The WebRTC peer could not be created, its answer was refused, or ICE/DTLS failed.
    WebRtcFailed {
        leg: LegId,
        fork: usize,
        reason: String,
    },
}
