//! One RTP leg as a sans-IO state machine: the runtime feeds it received datagrams, commands
//! and the time; it answers with packets to send and events for the engine. It never reads a
//! clock and never touches a socket.
//!
//! Pacing: frame `k` is due at `grid_start + k * 20 ms` (absolute deadlines, never
//! `last + 20`). A poll that comes a whole frame late or more skips the missed frames (counted
//! as late) instead of sending a burst. The RTP timestamp is tied to the grid, so it advances
//! 160 per 20 ms of wall time even over silence; the sequence number advances per packet sent.
//!
//! Bridging (see `bridge.rs`): a bridged leg plays nothing; packets its phone sends come out of
//! `receive` and go to the peer leg's `relay_packet`, which rewrites them onto the peer's
//! own SSRC/sequence/timestamp. The sequence counter and the last timestamp sent are shared
//! with prompt playback, so prompt -> bridge -> prompt is one continuous stream per leg.
//!
//! Latching: the first valid RTP packet's source is latched (symmetric RTP) and, strictly,
//! only that address is heard from. One exception, `accept_events_from_same_host`
//! (`[rtp]` in ccswitch.toml, on by default): some phones and test tools send RFC 4733
//! telephone-events from a second socket on the same host. Such a packet (the negotiated
//! event payload type, the latched IP, another port) is taken as a digit only: it never
//! latches, is never relayed to a bridge peer (its SSRC, sequence and timestamps belong to a
//! stream of its own, which would break the stream the peer's phone hears), and audio from
//! that port is still dropped. Before anything is latched, the signalled (SDP) address's host
//! plays the part of the latched host, so digits that come first do not latch the event port.

mod mix;
mod playout;
mod receive;
mod relay;

use super::bridge::{RelayMap, RtpView};
use super::prompts::{PromptSet, FRAME_SAMPLES};
use crate::engine::media::{Codec, LegId, MediaCommand, MediaEvent};
use crate::engine::time::Millis;
use crate::proto::{dtmf, rtp};
use std::collections::VecDeque;
use std::net::SocketAddr;

pub use playout::resolve;
use playout::Playback;

/// Packet interval.
pub const FRAME_MS: u64 = 20;
/// Bytes of one packet we send: 12-byte header + 160 bytes of G.711.
pub const PACKET_LEN: usize = rtp::HEADER_LEN + FRAME_SAMPLES;

/// What a leg starts with. `ssrc`, `initial_seq` and `initial_ts` should be random (RFC 3550
/// §5.1); the runtime draws them. `grid_start` is the leg's first send slot, which lets the
/// runtime spread legs over the 20 ms period.
#[derive(Clone, Debug)]
pub struct LegParams {
    pub leg: LegId,
    pub remote: Option<SocketAddr>,
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
    pub inactivity_ms: u64,
    pub ssrc: u32,
    pub initial_seq: u16,
    pub initial_ts: u32,
    pub grid_start: Millis,
    /// Telephone-events from the latched host's other ports count as digits (module docs).
    pub accept_events_from_same_host: bool,
}

/// One packet to send.
#[derive(Clone, Debug)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub packet: [u8; PACKET_LEN],
}

/// Counters since the leg opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegStats {
    pub sent: u64,
    pub received: u64,
    /// Frames skipped because the poll came a frame period or more after their deadline.
    pub late: u64,
    /// Datagrams dropped: not RTP, or from an address other than the latched one.
    pub dropped: u64,
    /// Telephone-events taken from the latched host's other port (also in `received`).
    pub side_events: u64,
}

/// What happened to one received datagram (for the runtime's counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    Rtp,
    Dropped,
}

/// One datagram from the leg's phone, as `Leg::receive` classified it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound<'b> {
    /// RTP from the latched source: relayed when the leg is bridged.
    Media(RtpView<'b>),
    /// A telephone-event from the latched host's other port: its digit (if it starts one) is
    /// reported; it is never relayed.
    SideEvent,
    /// Not RTP, or from a source the latch refuses (counted in `dropped`).
    Dropped,
}

#[derive(Debug)]
pub struct Leg {
    id: LegId,
    /// Where the SDP says to send.
    signalled: Option<SocketAddr>,
    /// The source of the first valid RTP since open/update (symmetric RTP).
    latched: Option<SocketAddr>,
    accept_events_from_same_host: bool,
    codec: Codec,
    telephone_event_pt: Option<u8>,
    send: bool,
    inactivity_ms: u64,
    last_rx: Millis,
    inactive_reported: bool,
    ssrc: u32,
    seq: u16,
    ts_base: u32,
    grid_start: Millis,
    /// Grid index of the next frame to send.
    next_k: u64,
    /// True while a talk-spurt runs (the next packet needs no marker bit).
    talking: bool,
    playback: Option<Playback>,
    digits: dtmf::DigitDetector,
    events: VecDeque<MediaEvent>,
    stats: LegStats,
    closed: bool,
    /// The last received packet started a new digit (for barge-in).
    digit_seen: bool,
    /// In relay mode: no playback, packets come from the bridge peer.
    bridged: bool,
    /// Incoming-to-outgoing offsets of the relayed stream; None until the next packet anchors.
    relay: Option<RelayMap>,
    /// Timestamp just past the last audio sent (prompt or relayed), so a new anchor never
    /// steps back in time.
    ts_end: Option<u32>,
}

impl Leg {
    pub fn new(now: Millis, p: LegParams) -> Leg {
        Leg {
            id: p.leg,
            signalled: p.remote,
            latched: None,
            accept_events_from_same_host: p.accept_events_from_same_host,
            codec: p.codec,
            telephone_event_pt: p.telephone_event_pt,
            send: true,
            inactivity_ms: p.inactivity_ms,
            last_rx: now,
            inactive_reported: false,
            ssrc: p.ssrc,
            seq: p.initial_seq,
            ts_base: p.initial_ts,
            grid_start: p.grid_start,
            next_k: 0,
            talking: false,
            playback: None,
            digits: dtmf::DigitDetector::new(),
            events: VecDeque::new(),
            stats: LegStats::default(),
            closed: false,
            digit_seen: false,
            bridged: false,
            relay: None,
            ts_end: None,
        }
    }

    pub fn is_bridged(&self) -> bool {
        self.bridged
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    pub fn id(&self) -> LegId {
        self.id
    }

    /// The leg's first send slot; its frames are due on this grid (the runtime keeps it when
    /// a leg moves between workers).
    pub fn grid_start(&self) -> Millis {
        self.grid_start
    }

    pub fn stats(&self) -> LegStats {
        self.stats
    }

    pub fn is_playing(&self) -> bool {
        self.playback.is_some()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Where packets go now: the latched source, else the signalled address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.signalled)
    }

    /// Applies an engine command. `Open` is the runtime's business (it creates the leg) and is
    /// ignored here.
    pub fn handle_command(&mut self, now: Millis, cmd: &MediaCommand, prompts: &PromptSet) {
        match cmd {
            MediaCommand::Open { .. } => {}
            MediaCommand::Update {
                remote,
                codec,
                telephone_event_pt,
                send,
                ..
            } => self.update(now, *remote, *codec, *telephone_event_pt, *send),
            MediaCommand::Play {
                play_id,
                prompts: keys,
                looped,
                barge_in,
                ..
            } => self.play(now, *play_id, resolve(prompts, keys), *looped, *barge_in),
            MediaCommand::StopPlay { .. } => self.stop_play(),
            MediaCommand::Close { .. } => self.close(),
            // Bridges and recordings span two legs: the runtime applies them.
            MediaCommand::Bridge { .. }
            | MediaCommand::Unbridge { .. }
            | MediaCommand::StartRecording { .. }
            | MediaCommand::StopRecording { .. }
            | MediaCommand::Monitor { .. }
            | MediaCommand::Unmonitor { .. } => {}
            // The WebRTC peers live in the media shell (media::webrtc), not in the leg.
            MediaCommand::WebRtcOffer { .. }
            | MediaCommand::WebRtcAnswer { .. }
            | MediaCommand::WebRtcAccept { .. } => {}
        }
    }

    /// A re-INVITE changed the remote address, codec or direction. A new remote address
    /// drops the latch so the next packet's source is latched again.
    pub fn update(
        &mut self,
        now: Millis,
        remote: Option<SocketAddr>,
        codec: Codec,
        telephone_event_pt: Option<u8>,
        send: bool,
    ) {
        if remote != self.signalled {
            self.latched = None;
        }
        if codec != self.codec || send != self.send {
            // The relayed stream toward this leg anchors again (with a marker bit).
            self.relay = None;
        }
        self.signalled = remote;
        if codec != self.codec {
            // A new payload type starts a new stream as far as the receiver's decoder goes.
            self.talking = false;
        }
        self.codec = codec;
        self.telephone_event_pt = telephone_event_pt;
        if send && !self.send {
            // Coming off hold: the peer may not have sent anything while it held us.
            self.last_rx = now;
            self.inactive_reported = false;
        }
        if !send {
            self.talking = false;
        }
        self.send = send;
    }

    /// Ends the leg: nothing more is sent or reported (the engine asked for it).
    pub fn close(&mut self) {
        self.playback = None;
        self.closed = true;
    }

    /// Reports inactivity when its deadline has passed (once until RTP arrives again).
    pub fn handle_timeout(&mut self, now: Millis) {
        if let Some(at) = self.inactivity_deadline() {
            if now >= at {
                self.inactive_reported = true;
                self.events.push_back(MediaEvent::Inactive {
                    leg: self.id,
                    at: now,
                });
            }
        }
    }

    fn inactivity_deadline(&self) -> Option<Millis> {
        // While the peer holds us it may legitimately send nothing.
        if self.inactivity_ms == 0 || self.inactive_reported || !self.send || self.closed {
            return None;
        }
        Some(self.last_rx.plus(self.inactivity_ms))
    }

    /// The next time the leg wants a poll: its next frame deadline or inactivity deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        let frame = self
            .playback
            .as_ref()
            .map(|_| self.deadline_of(self.next_k));
        match (frame, self.inactivity_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;
