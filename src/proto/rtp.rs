//! RTP (RFC 3550) packets for G.711 audio: parse what peers send, build what we send.
//! Parsing and the reference builder go through `rtc-rtp`; `write_header` is the allocation-free
//! fast path the media plane uses per packet (tests check it against `rtc-rtp`).

use bytes::Bytes;
use rtc_shared::marshal::{Marshal, Unmarshal};

/// Fixed RTP header length without CSRCs or extensions.
pub const HEADER_LEN: usize = 12;

/// The header fields ccswitch uses plus the payload (padding and extensions removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPacket {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet too short ({0} bytes)")]
    TooShort(usize),
    #[error("not RTP version 2 (version {0})")]
    BadVersion(u8),
    #[error("RTCP packet (payload type {0}), not RTP")]
    Rtcp(u8),
    #[error("malformed RTP packet: {0}")]
    Malformed(String),
}

/// True for RTCP multiplexed on the RTP port (RFC 5761 §4: second byte 192..=223).
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(b) if (192..=223).contains(b))
}

/// Parses one RTP packet. Never panics, whatever the input.
pub fn parse(buf: &[u8]) -> Result<RtpPacket, RtpError> {
    if buf.len() < HEADER_LEN {
        return Err(RtpError::TooShort(buf.len()));
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    if is_rtcp(buf) {
        return Err(RtpError::Rtcp(buf[1]));
    }
    let mut raw = buf;
    let packet =
        rtc_rtp::Packet::unmarshal(&mut raw).map_err(|e| RtpError::Malformed(e.to_string()))?;
    Ok(RtpPacket {
        marker: packet.header.marker,
        payload_type: packet.header.payload_type,
        sequence: packet.header.sequence_number,
        timestamp: packet.header.timestamp,
        ssrc: packet.header.ssrc,
        payload: packet.payload,
    })
}

/// Builds one RTP packet with `rtc-rtp` (reference path; allocates).
pub fn build(p: &RtpPacket) -> Result<Bytes, RtpError> {
    let packet = rtc_rtp::Packet {
        header: rtc_rtp::Header {
            version: 2,
            marker: p.marker,
            payload_type: p.payload_type & 0x7f,
            sequence_number: p.sequence,
            timestamp: p.timestamp,
            ssrc: p.ssrc,
            ..Default::default()
        },
        payload: p.payload.clone(),
    };
    packet
        .marshal()
        .map(|b| b.freeze())
        .map_err(|e| RtpError::Malformed(e.to_string()))
}

/// Writes a plain 12-byte header (V=2, no padding/extension/CSRC) into `out` without
/// allocating: the per-packet send path.
pub fn write_header(
    out: &mut [u8; HEADER_LEN],
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) {
    out[0] = 0x80;
    out[1] = (u8::from(marker) << 7) | (payload_type & 0x7f);
    out[2..4].copy_from_slice(&sequence.to_be_bytes());
    out[4..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fast_header_matches_rtc_rtp_builder() {
        let p = RtpPacket {
            marker: true,
            payload_type: 8,
            sequence: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
            payload: Bytes::from_static(&[0xd5; 160]),
        };
        let reference = build(&p).unwrap();
        let mut head = [0u8; HEADER_LEN];
        write_header(&mut head, true, 8, 65535, 0xdead_beef, 0x0102_0304);
        assert_eq!(&reference[..HEADER_LEN], &head);
        assert_eq!(&reference[HEADER_LEN..], &p.payload[..]);
        assert_eq!(parse(&reference).unwrap(), p);
    }

    #[test]
    fn parses_csrc_extension_and_padding() {
        let mut raw = vec![0xb1, 0x00, 0, 7, 0, 0, 0, 9, 0, 0, 0, 1];
        raw.extend_from_slice(&[0, 0, 0, 2]); // one CSRC
        raw.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]); // one-byte ext, 1 word
        raw.extend_from_slice(&[1, 2, 3, 0, 0, 3]); // 3 payload bytes + 3 padding
        let p = parse(&raw).unwrap();
        assert_eq!(p.sequence, 7);
        assert_eq!(p.timestamp, 9);
        assert_eq!(&p.payload[..], &[1, 2, 3]);
    }

    #[test]
    fn rejects_short_bad_version_and_rtcp() {
        assert_eq!(parse(&[0x80; 5]), Err(RtpError::TooShort(5)));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(parse(&rr), Err(RtpError::Rtcp(201)));
        // CSRC count larger than the packet.
        assert!(matches!(
            parse(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&data);
        }

        #[test]
        fn parse_never_panics_on_v2(mut data in proptest::collection::vec(any::<u8>(), 12..100)) {
            data[0] = (data[0] & 0x3f) | 0x80;
            let _ = parse(&data);
        }
    }
}
