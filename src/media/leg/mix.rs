//! A leg in a supervisor's conference (`media::mix`): it sends the mix made for it, one
//! 20 ms frame per tick of its own grid, as its own next packet (own SSRC, sequence going on,
//! timestamp on the grid and never behind what was already sent).

use super::Leg;
use crate::engine::time::Millis;
use crate::media::leg::FRAME_MS;
use crate::media::mix::FRAME;
use crate::proto::{g711, rtp};
use std::net::SocketAddr;

impl Leg {
    /// Enters a conference: like a bridge (no playback; relay state reset).
    pub fn enter_mix(&mut self) {
        self.bridge();
    }

    /// Leaves a conference but stays bridged: the next relayed packet anchors anew (marker
    /// bit, timestamp after the last mixed frame).
    pub fn leave_mix(&mut self) {
        self.relay = None;
        self.talking = false;
    }

    /// Writes one packet carrying `samples` (one frame) in this leg's codec into `out`. None
    /// when nothing is to be sent (closed, held, playing hold audio, no address, `out` too
    /// small).
    pub fn mixed_packet(
        &mut self,
        now: Millis,
        samples: &[i16; FRAME],
        out: &mut [u8],
    ) -> Option<(SocketAddr, usize)> {
        if self.closed || !self.send || self.playback.is_some() {
            return None;
        }
        let dest = self.destination()?;
        let len = rtp::HEADER_LEN + FRAME;
        if out.len() < len {
            return None;
        }
        // The frame on the grid that this tick serves (ticks come on or just after it).
        let k = now.since(self.grid_start) / FRAME_MS;
        let grid_ts = self
            .ts_base
            .wrapping_add((k as u32).wrapping_mul(FRAME as u32));
        let ts = match self.ts_end {
            Some(end) if (end.wrapping_sub(grid_ts) as i32) > 0 => end,
            _ => grid_ts,
        };
        let mut head = [0u8; rtp::HEADER_LEN];
        let pt = self.codec.payload_type();
        rtp::write_header(&mut head, !self.talking, pt, self.seq, ts, self.ssrc);
        out[..rtp::HEADER_LEN].copy_from_slice(&head);
        let body = &mut out[rtp::HEADER_LEN..len];
        let encode = match self.codec {
            crate::engine::media::Codec::Pcmu => g711::encode_ulaw,
            crate::engine::media::Codec::Pcma => g711::encode_alaw,
        };
        for (b, s) in body.iter_mut().zip(samples) {
            *b = encode(*s);
        }
        self.ts_end = Some(ts.wrapping_add(FRAME as u32));
        // The relay (if it resumes) must not reuse what the mix sent.
        self.relay = None;
        self.seq = self.seq.wrapping_add(1);
        self.talking = true;
        self.stats.sent += 1;
        Some((dest, len))
    }
}
