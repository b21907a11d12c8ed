//! Bridging two legs, sans-IO: the pieces the relay uses per packet.
//!
//! * [`RtpView`]: a zero-copy look at a received RTP packet (the relay must not allocate per
//!   packet; `proto::rtp::parse` copies the payload).
//! * [`RelayMap`]: maps the peer's incoming stream onto the outgoing leg's own SSRC, sequence
//!   and timestamp. Offsets are fixed when the first packet is relayed (an "anchor"), so the
//!   far end sees one continuous stream across prompt -> bridge transitions while the source's
//!   own timing, gaps (loss) and reordering pass through unchanged. A new source SSRC or a
//!   sequence jump beyond `MAX_DROPOUT` (RFC 3550 A.1) anchors again, with the marker bit.
//! * [`transcode`]: PCMU <-> PCMA with 256-entry tables built from `proto::g711`.
//!
//! How a leg uses them: `Leg::bridge` / `Leg::unbridge` switch a leg in and out of relay mode,
//! `Leg::receive` takes a datagram from the leg's own phone (latching, stats, digit
//! detection) and returns its [`RtpView`] (as `Inbound::Media`), and `Leg::relay_packet` on
//! the *other* leg writes the rewritten packet for that leg's phone. The runtime owns both
//! legs of a bridge on one worker thread and calls these straight from the socket-readiness
//! loop.
//!
//! Telephone-events a phone sends from a second port of its host (accepted by
//! `accept_events_from_same_host`) take the digit path only: the leg reports the digit to the
//! engine as usual and `Leg::receive` returns `Inbound::SideEvent`, which is never relayed.
//! Relaying them would splice a second SSRC with its own sequence and timestamps into the
//! stream the peer's phone hears (a re-anchor and marker on every switch between the two),
//! and nothing on the far side needs the tones: the switch acts on the digit itself. Events
//! from the latched port itself are still passed through, as negotiated.

use crate::engine::media::Codec;
use crate::proto::g711;
use std::sync::OnceLock;

/// Largest sequence jump still taken as the same stream (RFC 3550 A.1 `MAX_DROPOUT`).
pub const MAX_DROPOUT: i16 = 3000;

/// A received RTP packet, borrowed from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpView<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Without CSRCs, header extension and padding.
    pub payload: &'a [u8],
}

/// Parses an RTP header without copying; None for anything that is not well-formed RTP v2
/// (including RTCP multiplexed on the port). Never panics.
pub fn view(buf: &[u8]) -> Option<RtpView<'_>> {
    let b0 = *buf.first()?;
    let b1 = *buf.get(1)?;
    if b0 >> 6 != 2 || crate::proto::rtp::is_rtcp(buf) || buf.len() < 12 {
        return None;
    }
    let csrc = usize::from(b0 & 0x0f);
    let mut start = 12 + 4 * csrc;
    if b0 & 0x10 != 0 {
        // Extension: 16-bit profile, 16-bit length in 32-bit words.
        let len = u16::from_be_bytes([*buf.get(start + 2)?, *buf.get(start + 3)?]);
        start += 4 + 4 * usize::from(len);
    }
    let mut end = buf.len();
    if b0 & 0x20 != 0 {
        let pad = usize::from(*buf.last()?);
        if pad == 0 {
            return None;
        }
        end = end.checked_sub(pad)?;
    }
    let payload = buf.get(start..end)?;
    Some(RtpView {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        sequence: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        payload,
    })
}

fn ulaw_to_alaw() -> &'static [u8; 256] {
    static T: OnceLock<[u8; 256]> = OnceLock::new();
    T.get_or_init(|| std::array::from_fn(|i| g711::encode_alaw(g711::decode_ulaw(i as u8))))
}

fn alaw_to_ulaw() -> &'static [u8; 256] {
    static T: OnceLock<[u8; 256]> = OnceLock::new();
    T.get_or_init(|| std::array::from_fn(|i| g711::encode_ulaw(g711::decode_alaw(i as u8))))
}

/// Converts G.711 bytes from one law to the other (a copy when `from == to`). `out` must be
/// at least as long as `input`; returns the bytes written.
pub fn transcode(from: Codec, to: Codec, input: &[u8], out: &mut [u8]) -> usize {
    let n = input.len().min(out.len());
    let (src, dst) = (&input[..n], &mut out[..n]);
    match (from, to) {
        (Codec::Pcmu, Codec::Pcma) => {
            let t = ulaw_to_alaw();
            for (d, s) in dst.iter_mut().zip(src) {
                *d = t[usize::from(*s)];
            }
        }
        (Codec::Pcma, Codec::Pcmu) => {
            let t = alaw_to_ulaw();
            for (d, s) in dst.iter_mut().zip(src) {
                *d = t[usize::from(*s)];
            }
        }
        _ => dst.copy_from_slice(src),
    }
    n
}

/// What a relayed packet is, as the source leg negotiated it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    Audio,
    TelephoneEvent,
    /// Anything else (comfort noise, codecs not negotiated): not relayed.
    Other,
}

/// The source side of a bridge as the outgoing leg needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub codec: Codec,
    pub telephone_event_pt: Option<u8>,
}

impl Source {
    pub fn kind(&self, payload_type: u8) -> PacketKind {
        if payload_type == self.codec.payload_type() {
            PacketKind::Audio
        } else if self.telephone_event_pt == Some(payload_type) {
            PacketKind::TelephoneEvent
        } else {
            PacketKind::Other
        }
    }
}

/// Offsets from the incoming stream to the outgoing one (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayMap {
    in_ssrc: u32,
    /// Highest incoming sequence number seen.
    highest_in_seq: u16,
    seq_off: u16,
    ts_off: u32,
}

/// Header fields of one outgoing relayed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapped {
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
}

impl RelayMap {
    /// Anchors a new mapping: `pkt` goes out with `next_seq` and `next_ts`.
    pub fn anchor(pkt: &RtpView<'_>, next_seq: u16, next_ts: u32) -> RelayMap {
        RelayMap {
            in_ssrc: pkt.ssrc,
            highest_in_seq: pkt.sequence,
            seq_off: next_seq.wrapping_sub(pkt.sequence),
            ts_off: next_ts.wrapping_sub(pkt.timestamp),
        }
    }

    /// True when `pkt` continues the anchored stream (same SSRC, no wild sequence jump).
    pub fn continues(&self, pkt: &RtpView<'_>) -> bool {
        let d = pkt.sequence.wrapping_sub(self.highest_in_seq) as i16;
        pkt.ssrc == self.in_ssrc && (-MAX_DROPOUT..=MAX_DROPOUT).contains(&d)
    }

    /// The outgoing header fields for `pkt` (which must continue the stream).
    pub fn map(&mut self, pkt: &RtpView<'_>) -> Mapped {
        if (pkt.sequence.wrapping_sub(self.highest_in_seq) as i16) > 0 {
            self.highest_in_seq = pkt.sequence;
        }
        Mapped {
            marker: pkt.marker,
            sequence: pkt.sequence.wrapping_add(self.seq_off),
            timestamp: pkt.timestamp.wrapping_add(self.ts_off),
        }
    }

    /// `pkt` is not forwarded (e.g. an event the far end cannot take). When it is the next in
    /// order, later packets move down one so the far end sees no gap (no false loss).
    pub fn skip(&mut self, pkt: &RtpView<'_>) {
        if pkt.ssrc == self.in_ssrc && pkt.sequence == self.highest_in_seq.wrapping_add(1) {
            self.highest_in_seq = pkt.sequence;
            self.seq_off = self.seq_off.wrapping_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rtp;

    fn packet(marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut head = [0u8; rtp::HEADER_LEN];
        rtp::write_header(&mut head, marker, pt, seq, ts, ssrc);
        let mut v = head.to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn view_reads_headers_csrc_extension_and_padding_and_rejects_junk() {
        let p = packet(true, 0, 513, 0x0102_0304, 0xdead_beef, &[1, 2, 3]);
        let v = view(&p).unwrap();
        assert_eq!(
            (v.marker, v.payload_type, v.sequence, v.timestamp, v.ssrc),
            (true, 0, 513, 0x0102_0304, 0xdead_beef)
        );
        assert_eq!(v.payload, &[1, 2, 3]);
        // One CSRC, a one-word extension and two bytes of padding.
        let mut q = vec![0x80 | 0x20 | 0x10 | 1, 8, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        q.extend_from_slice(&[9, 9, 9, 9]); // CSRC
        q.extend_from_slice(&[0x10, 0x00, 0, 1, 7, 7, 7, 7]); // extension
        q.extend_from_slice(&[42, 43, 0, 2]); // payload + padding
        let v = view(&q).unwrap();
        assert_eq!(v.payload, &[42, 43]);
        assert_eq!(v.payload_type, 8);
        // The plain packet agrees with the reference parser.
        assert_eq!(
            rtp::parse(&p).unwrap().payload.as_ref(),
            view(&p).unwrap().payload
        );
        assert!(view(b"").is_none());
        assert!(view(&[0x80; 11]).is_none());
        assert!(view(&[0x40; 20]).is_none(), "version 1");
        assert!(
            view(&[0x80, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none(),
            "RTCP"
        );
        assert!(
            view(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_none(),
            "CSRCs cut off"
        );
        assert!(
            view(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50]).is_none(),
            "bad padding"
        );
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x90) as u8).collect();
            let _ = view(&junk);
        }
    }

    #[test]
    fn transcoding_matches_g711_reference_values() {
        let mut out = [0u8; 4];
        // mu-law 0xFF / 0x7F are +0 / -0, both A-law 0xD5 (+8, the smallest A-law step, even
        // bits inverted). mu-law 0x80 = +32124 and 0x00 = -32124 map to the A-law extremes
        // 0xAA (+32256) and 0x2A (-32256).
        transcode(
            Codec::Pcmu,
            Codec::Pcma,
            &[0xFF, 0x7F, 0x80, 0x00],
            &mut out,
        );
        assert_eq!(out, [0xD5, 0xD5, 0xAA, 0x2A]);
        // A-law +-8 -> mu-law +-8 (0xFE / 0x7E); the extremes back to 0x80 / 0x00.
        transcode(
            Codec::Pcma,
            Codec::Pcmu,
            &[0xD5, 0xAA, 0x2A, 0x55],
            &mut out,
        );
        assert_eq!(out, [0xFE, 0x80, 0x00, 0x7E]);
        // Every code: the decoded value after transcoding is within one A-law/mu-law step.
        for b in 0..=255u8 {
            let mut o = [0u8];
            transcode(Codec::Pcmu, Codec::Pcma, &[b], &mut o);
            let (x, y) = (g711::decode_ulaw(b), g711::decode_alaw(o[0]));
            assert!(
                (i32::from(x) - i32::from(y)).abs() <= 1024,
                "{b:#x}: {x} vs {y}"
            );
            transcode(Codec::Pcma, Codec::Pcmu, &[b], &mut o);
            let (x, y) = (g711::decode_alaw(b), g711::decode_ulaw(o[0]));
            assert!(
                (i32::from(x) - i32::from(y)).abs() <= 1024,
                "{b:#x}: {x} vs {y}"
            );
        }
        // Same codec: a copy; a short output buffer bounds the write.
        let mut o = [0u8; 2];
        assert_eq!(transcode(Codec::Pcma, Codec::Pcma, &[1, 2, 3], &mut o), 2);
        assert_eq!(o, [1, 2]);
    }

    #[test]
    fn relay_map_keeps_gaps_reorders_and_reanchors() {
        let body = [0u8; 160];
        let bytes = |seq: u16, ts: u32, ssrc: u32| packet(false, 0, seq, ts, ssrc, &body);
        let first = bytes(65535, 1000, 7);
        let mut m = RelayMap::anchor(&view(&first).unwrap(), 100, 50_000);
        assert_eq!(
            m.map(&view(&first).unwrap()),
            Mapped {
                marker: false,
                sequence: 100,
                timestamp: 50_000
            }
        );
        // Wraps, keeps a gap of one (loss) and a reordered packet in place.
        let next = bytes(0, 1160, 7);
        assert_eq!(m.map(&view(&next).unwrap()).sequence, 101);
        let after_gap = bytes(2, 1480, 7);
        assert_eq!(m.map(&view(&after_gap).unwrap()).sequence, 103);
        let late = bytes(1, 1320, 7);
        let v = view(&late).unwrap();
        assert!(m.continues(&v));
        assert_eq!(m.map(&v).timestamp, 50_320);
        // A skipped next-in-order packet closes its gap.
        let ev = bytes(3, 1640, 7);
        m.skip(&view(&ev).unwrap());
        assert_eq!(m.map(&view(&bytes(4, 1800, 7)).unwrap()).sequence, 104);
        // New SSRC or a wild jump: not the same stream.
        assert!(!m.continues(&view(&bytes(5, 1960, 8)).unwrap()));
        assert!(!m.continues(&view(&bytes(30_000, 1960, 7)).unwrap()));
    }

    #[test]
    fn source_classifies_payload_types() {
        let s = Source {
            codec: Codec::Pcma,
            telephone_event_pt: Some(101),
        };
        assert_eq!(s.kind(8), PacketKind::Audio);
        assert_eq!(s.kind(101), PacketKind::TelephoneEvent);
        assert_eq!(s.kind(0), PacketKind::Other);
        assert_eq!(s.kind(13), PacketKind::Other);
    }
}
