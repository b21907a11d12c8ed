//! G.711 (PCMU mu-law, PCMA A-law) via `audio-codec-algorithms`, with 256-entry decode tables
//! so decoding a packet is a lookup per byte.

use crate::engine::media::Codec;
use std::sync::OnceLock;

pub fn encode_ulaw(sample: i16) -> u8 {
    audio_codec_algorithms::encode_ulaw(sample)
}

pub fn encode_alaw(sample: i16) -> u8 {
    audio_codec_algorithms::encode_alaw(sample)
}

fn ulaw_table() -> &'static [i16; 256] {
    static T: OnceLock<[i16; 256]> = OnceLock::new();
    T.get_or_init(|| std::array::from_fn(|i| audio_codec_algorithms::decode_ulaw(i as u8)))
}

fn alaw_table() -> &'static [i16; 256] {
    static T: OnceLock<[i16; 256]> = OnceLock::new();
    T.get_or_init(|| std::array::from_fn(|i| audio_codec_algorithms::decode_alaw(i as u8)))
}

pub fn decode_ulaw(byte: u8) -> i16 {
    ulaw_table()[usize::from(byte)]
}

pub fn decode_alaw(byte: u8) -> i16 {
    alaw_table()[usize::from(byte)]
}

/// Encodes linear 16-bit samples, appending one byte per sample to `out`.
pub fn encode(codec: Codec, samples: &[i16], out: &mut Vec<u8>) {
    out.reserve(samples.len());
    match codec {
        Codec::Pcmu => out.extend(samples.iter().map(|&s| encode_ulaw(s))),
        Codec::Pcma => out.extend(samples.iter().map(|&s| encode_alaw(s))),
    }
}

/// Decodes G.711 bytes, appending one linear sample per byte to `out`.
pub fn decode(codec: Codec, bytes: &[u8], out: &mut Vec<i16>) {
    let table = match codec {
        Codec::Pcmu => ulaw_table(),
        Codec::Pcma => alaw_table(),
    };
    out.extend(bytes.iter().map(|&b| table[usize::from(b)]));
}

/// The byte that encodes digital silence (linear 0) in this codec.
pub fn silence_byte(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => encode_ulaw(0),
        Codec::Pcma => encode_alaw(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_bytes_are_the_well_known_values() {
        assert_eq!(silence_byte(Codec::Pcmu), 0xff);
        assert_eq!(silence_byte(Codec::Pcma), 0xd5);
    }

    #[test]
    fn round_trip_is_close_for_both_laws() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            for s in (-32768i32..32768).step_by(97) {
                let s = s as i16;
                let mut enc = Vec::new();
                encode(codec, &[s], &mut enc);
                let mut dec = Vec::new();
                decode(codec, &enc, &mut dec);
                let err = (i32::from(dec[0]) - i32::from(s)).abs();
                // Companding error grows with magnitude: at most ~1/16 of the value (+ step).
                assert!(
                    err <= i32::from(s).abs() / 16 + 16,
                    "{codec:?} {s} -> {}",
                    dec[0]
                );
            }
        }
    }

    #[test]
    fn tables_match_the_library() {
        for b in 0..=255u8 {
            assert_eq!(decode_ulaw(b), audio_codec_algorithms::decode_ulaw(b));
            assert_eq!(decode_alaw(b), audio_codec_algorithms::decode_alaw(b));
        }
    }
}
