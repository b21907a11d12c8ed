//! Relay mode (see `bridge.rs`): entering and leaving a bridge, and writing a packet from
//! the bridge peer as this leg's own next packet.

use super::Leg;
use crate::engine::time::Millis;
use crate::media::bridge::{self, PacketKind, RelayMap, RtpView, Source};
use crate::proto::rtp;
use std::net::SocketAddr;

impl Leg {
    /// This leg as the source of relayed packets.
    pub fn source(&self) -> Source {
        Source {
            codec: self.codec,
            telephone_event_pt: self.telephone_event_pt,
        }
    }

    /// Enters relay mode: playback stops (reported as interrupted) and the next relayed packet
    /// starts a new talk-spurt (marker bit).
    pub fn bridge(&mut self) {
        self.finish_play(true);
        self.bridged = true;
        self.relay = None;
        self.talking = false;
    }

    /// Leaves relay mode: the leg is idle (silent) until the next Play.
    pub fn unbridge(&mut self) {
        self.bridged = false;
        self.relay = None;
        self.talking = false;
    }

    /// Writes `pkt`, received on the bridge peer described by `src`, as this leg's next
    /// outgoing packet into `out`: header rewritten onto this leg's SSRC/seq/timestamp, audio
    /// transcoded to this leg's codec, telephone events given this leg's payload type. None
    /// when nothing is to be sent (not bridged, held, playing hold audio, no address, a
    /// payload type this leg cannot take, or `out` too small).
    pub fn relay_packet(
        &mut self,
        now: Millis,
        pkt: &RtpView<'_>,
        src: Source,
        out: &mut [u8],
    ) -> Option<(SocketAddr, usize)> {
        if self.closed || !self.bridged || !self.send || self.playback.is_some() {
            return None;
        }
        let dest = self.destination()?;
        let pt = match src.kind(pkt.payload_type) {
            PacketKind::Audio => Some(self.codec.payload_type()),
            PacketKind::TelephoneEvent => self.telephone_event_pt,
            PacketKind::Other => None,
        };
        let len = rtp::HEADER_LEN + pkt.payload.len();
        let (Some(pt), true) = (pt, len <= out.len()) else {
            if let Some(map) = self.relay.as_mut() {
                map.skip(pkt);
            }
            return None;
        };
        let mut first = false;
        let map = match self.relay.as_mut() {
            Some(map) if map.continues(pkt) => map,
            _ => {
                first = true;
                // Continue from where this leg's stream is now: wall-clock timestamp, never
                // before the end of what was last sent.
                let wall = self
                    .ts_base
                    .wrapping_add((now.since(self.grid_start) as u32).wrapping_mul(8));
                let ts = match self.ts_end {
                    Some(end) if (end.wrapping_sub(wall) as i32) > 0 => end,
                    _ => wall,
                };
                self.relay.insert(RelayMap::anchor(pkt, self.seq, ts))
            }
        };
        let m = map.map(pkt);
        let mut head = [0u8; rtp::HEADER_LEN];
        rtp::write_header(
            &mut head,
            m.marker || first || !self.talking,
            pt,
            m.sequence,
            m.timestamp,
            self.ssrc,
        );
        out[..rtp::HEADER_LEN].copy_from_slice(&head);
        let body = &mut out[rtp::HEADER_LEN..len];
        if src.kind(pkt.payload_type) == PacketKind::Audio {
            bridge::transcode(src.codec, self.codec, pkt.payload, body);
            let end = m.timestamp.wrapping_add(pkt.payload.len() as u32);
            if self.ts_end.is_none_or(|e| (end.wrapping_sub(e) as i32) > 0) {
                self.ts_end = Some(end);
            }
        } else {
            body.copy_from_slice(pkt.payload);
        }
        if (m.sequence.wrapping_sub(self.seq) as i16) >= 0 {
            self.seq = m.sequence.wrapping_add(1);
        }
        self.talking = true;
        self.stats.sent += 1;
        Some((dest, len))
    }
}
