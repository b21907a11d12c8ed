//! Phase C's timestamped RTP frames, and what a receiver saw of them (relay delay, loss).

use tokio::time::Instant;

use crate::rtp::wall_ns;
use crate::sipwire;
use crate::tally::Heard;

/// Marks a load-generator frame: [0..8] send time ns (big-endian, SystemTime),
/// [8..12] this magic, [12..16] stream id, [16..20] frame counter.
const FRAME_MAGIC: [u8; 4] = *b"LGC1";

pub(crate) fn now_ns() -> i128 {
    wall_ns(Instant::now())
}

/// One timestamped 20 ms PCMU frame (see FRAME_MAGIC).
pub(crate) fn lg_frame(
    pkt: &mut Vec<u8>,
    seq: u16,
    tick: u64,
    ssrc: u32,
    stream: u32,
    counter: u32,
) {
    let mut payload = sipwire::ULAW_SILENCE;
    payload[8..12].copy_from_slice(&FRAME_MAGIC);
    payload[12..16].copy_from_slice(&stream.to_be_bytes());
    payload[16..20].copy_from_slice(&counter.to_be_bytes());
    let sent = now_ns() as u64;
    payload[0..8].copy_from_slice(&sent.to_be_bytes());
    sipwire::rtp_packet(
        pkt,
        tick == 0,
        0,
        seq,
        (tick as u32).wrapping_mul(160),
        ssrc,
        &payload,
    );
}

/// What one receiver saw of relayed load-generator frames.
#[derive(Debug, Default)]
pub(crate) struct RelayRx {
    /// Receive stamp minus embedded send time, ms.
    pub(crate) delay_ms: Vec<f32>,
    /// Per source stream: (first counter, highest counter, frames received).
    streams: Vec<(u32, u32, u32, u64)>,
    /// Packets without the marker (prompts, hold music) - not relayed audio.
    other: u64,
}

impl RelayRx {
    /// Accounts one received RTP packet; true when it was a relayed frame.
    pub(crate) fn on_packet(&mut self, buf: &[u8], stamp: i128) -> bool {
        let Some(h) = sipwire::parse_rtp(buf) else {
            return false;
        };
        let p = &buf[h.payload_offset..];
        if p.len() < 20 || p[8..12] != FRAME_MAGIC {
            self.other += 1;
            return false;
        }
        let mut b8 = [0u8; 8];
        b8.copy_from_slice(&p[0..8]);
        let sent = u64::from_be_bytes(b8) as i128;
        let stream = u32::from_be_bytes([p[12], p[13], p[14], p[15]]);
        let counter = u32::from_be_bytes([p[16], p[17], p[18], p[19]]);
        self.delay_ms.push(((stamp - sent) as f64 / 1e6) as f32);
        match self.streams.iter_mut().find(|s| s.0 == stream) {
            Some(s) => {
                s.1 = s.1.min(counter);
                s.2 = s.2.max(counter);
                s.3 += 1;
            }
            None => self.streams.push((stream, counter, counter, 1)),
        }
        true
    }

    /// Per source stream: frames received, and expected over its first..last frame seen.
    pub(crate) fn per_stream(&self) -> impl Iterator<Item = (u32, Heard)> + '_ {
        self.streams.iter().map(|s| {
            (
                s.0,
                Heard {
                    received: s.3,
                    expected: u64::from(s.2 - s.1) + 1,
                },
            )
        })
    }

    /// All streams together.
    pub(crate) fn loss(&self) -> Heard {
        self.per_stream()
            .fold(Heard::default(), |h, (_, s)| h.add(s))
    }
}
