use super::*;
use crate::engine::media::PromptKey;
use crate::media::prompts::Prompt;
use std::sync::Arc;

const PEER: &str = "127.0.0.1:40000";

fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

fn params() -> LegParams {
    LegParams {
        leg: 7,
        remote: Some(peer()),
        codec: Codec::Pcmu,
        telephone_event_pt: Some(101),
        inactivity_ms: 0,
        ssrc: 0x1234_5678,
        initial_seq: 65530,
        initial_ts: u32::MAX - 500,
        grid_start: Millis(1000),
        accept_events_from_same_host: true,
    }
}

fn prompt(frames: usize) -> Arc<Prompt> {
    Arc::new(Prompt::from_samples(&vec![1000i16; frames * FRAME_SAMPLES]))
}

fn parsed(t: &Transmit) -> rtp::RtpPacket {
    rtp::parse(&t.packet).unwrap()
}

fn events(leg: &mut Leg) -> Vec<MediaEvent> {
    std::iter::from_fn(|| leg.poll_event()).collect()
}

fn rtp_bytes(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut head = [0u8; rtp::HEADER_LEN];
    rtp::write_header(&mut head, false, pt, seq, ts, 99);
    let mut v = head.to_vec();
    v.extend_from_slice(payload);
    v
}

/// Polls every millisecond from `from` to `to` (exclusive), returning (time, packet).
fn run(leg: &mut Leg, from: u64, to: u64) -> Vec<(u64, rtp::RtpPacket)> {
    let mut out = Vec::new();
    for t in from..to {
        leg.handle_timeout(Millis(t));
        while let Some(tx) = leg.poll_transmit(Millis(t)) {
            assert_eq!(tx.dest, peer());
            out.push((t, parsed(&tx)));
        }
    }
    out
}

#[test]
fn paces_on_the_grid_with_continuous_seq_and_timestamp() {
    let mut leg = Leg::new(Millis(1000), params());
    leg.play(Millis(1005), 1, vec![prompt(3), prompt(2)], false, false);
    let sent = run(&mut leg, 1005, 1200);
    let times: Vec<u64> = sent.iter().map(|s| s.0).collect();
    assert_eq!(times, vec![1020, 1040, 1060, 1080, 1100]);
    for (i, (_, p)) in sent.iter().enumerate() {
        assert_eq!(p.sequence, 65530u16.wrapping_add(i as u16));
        assert_eq!(p.ssrc, 0x1234_5678);
        assert_eq!(p.marker, i == 0, "marker only on the first packet");
        assert_eq!(p.payload_type, 0);
        // Slot k=1 is the first: ts = base + 160 * k, wrapping.
        assert_eq!(
            p.timestamp,
            (u32::MAX - 500).wrapping_add(160 * (i as u32 + 1))
        );
    }
    assert_eq!(
        events(&mut leg),
        vec![MediaEvent::PlayFinished {
            leg: 7,
            play_id: 1,
            interrupted: false
        }]
    );

    // After 500 ms of silence the next play continues seq, advances ts by wall time and
    // sets the marker again.
    leg.play(Millis(1600), 2, vec![prompt(1)], false, false);
    let sent2 = run(&mut leg, 1600, 1700);
    assert_eq!(sent2.len(), 1);
    let (t, p) = &sent2[0];
    assert_eq!(*t, 1600);
    assert!(p.marker);
    assert_eq!(p.sequence, 65530u16.wrapping_add(5));
    assert_eq!(p.timestamp, (u32::MAX - 500).wrapping_add(160 * 30));
    assert_eq!(leg.stats().sent, 6);
    assert_eq!(leg.stats().late, 0);
}

#[test]
fn late_poll_skips_ahead_instead_of_bursting() {
    let mut leg = Leg::new(Millis(1000), params());
    leg.play(Millis(1000), 1, vec![prompt(10)], false, false);
    assert_eq!(
        parsed(&leg.poll_transmit(Millis(1000)).unwrap()).timestamp,
        (u32::MAX - 500)
    );
    // Wake up 65 ms later: frames at 1020, 1040 are lost, 1060 is sent, nothing else now.
    let p = parsed(&leg.poll_transmit(Millis(1065)).unwrap());
    assert!(leg.poll_transmit(Millis(1065)).is_none());
    assert_eq!(p.timestamp, (u32::MAX - 500).wrapping_add(160 * 3));
    assert_eq!(p.sequence, 65531, "seq counts packets sent, so no gap");
    assert!(!p.marker);
    assert_eq!(leg.stats().late, 2);
    // Playback skipped the late frames: 10 - 4 remain (slots 4..=9).
    let rest = run(&mut leg, 1066, 1300);
    assert_eq!(rest.len(), 6);
    assert_eq!(rest[0].0, 1080);
}

#[test]
fn long_stall_is_bounded_for_looped_and_finishes_plain_plays() {
    let mut leg = Leg::new(Millis(1000), params());
    leg.play(Millis(1000), 1, vec![prompt(3)], true, false);
    assert!(leg.poll_transmit(Millis(1000)).is_some());
    // A day later: one packet, the loop position is where wall time says.
    let day = 86_400_000;
    assert!(leg.poll_transmit(Millis(1000 + day)).is_some());
    assert_eq!(leg.stats().late, day / 20 - 1);
    let mut leg = Leg::new(Millis(1000), params());
    leg.play(Millis(1000), 2, vec![prompt(3)], false, false);
    assert!(leg.poll_transmit(Millis(1000 + day)).is_none());
    assert_eq!(
        events(&mut leg),
        vec![MediaEvent::PlayFinished {
            leg: 7,
            play_id: 2,
            interrupted: false
        }]
    );
}

#[test]
fn new_play_replaces_and_looped_play_repeats_until_stopped() {
    let mut leg = Leg::new(Millis(1000), params());
    leg.play(Millis(1000), 1, vec![prompt(5)], false, false);
    run(&mut leg, 1000, 1030);
    leg.play(Millis(1030), 2, vec![prompt(2)], true, false);
    assert_eq!(
        events(&mut leg),
        vec![MediaEvent::PlayFinished {
            leg: 7,
            play_id: 1,
            interrupted: true
        }]
    );
    let sent = run(&mut leg, 1030, 1250);
    assert_eq!(sent.len(), 11, "loop keeps going: 1040..=1240");
    // No marker when one play replaces another back to back? A replacement after an
    // interrupted play starts a new spurt.
    assert!(sent[0].1.marker);
    assert!(sent[1..].iter().all(|s| !s.1.marker));
    assert!(events(&mut leg).is_empty());
    leg.stop_play();
    assert_eq!(
        events(&mut leg),
        vec![MediaEvent::PlayFinished {
            leg: 7,
            play_id: 2,
            interrupted: true
        }]
    );
    assert!(run(&mut leg, 1250, 1400).is_empty());
}

#[test]
fn barge_in_digit_stops_playback_and_end_packets_are_deduped() {
    let mut leg = Leg::new(Millis(1000), params());
    leg.play(Millis(1000), 1, vec![prompt(50)], false, true);
    run(&mut leg, 1000, 1050);
    for (i, end) in [(0u16, false), (1, false), (2, true), (3, true), (4, true)] {
        let [d0, d1] = (160 * (i + 1)).to_be_bytes();
        let payload = [5, if end { 0x80 } else { 0 } | 10, d0, d1];
        leg.handle_packet(
            Millis(1050 + u64::from(i)),
            &rtp_bytes(101, i, 8000, &payload),
            peer(),
        );
    }
    assert_eq!(
        events(&mut leg),
        vec![
            MediaEvent::Digit {
                leg: 7,
                digit: '5',
                at: Millis(1050)
            },
            MediaEvent::PlayFinished {
                leg: 7,
                play_id: 1,
                interrupted: true
            },
        ]
    );
    assert!(run(&mut leg, 1055, 1200).is_empty());
    // Without barge-in a digit does not stop playback.
    leg.play(Millis(1200), 2, vec![prompt(50)], false, false);
    leg.handle_packet(
        Millis(1201),
        &rtp_bytes(101, 9, 16000, &[11, 0x8a, 0, 160]),
        peer(),
    );
    assert_eq!(
        events(&mut leg),
        vec![MediaEvent::Digit {
            leg: 7,
            digit: '#',
            at: Millis(1201)
        }]
    );
    assert!(leg.is_playing());
}

#[test]
fn symmetric_rtp_latches_to_first_source() {
    let mut p = params();
    p.remote = None;
    let mut leg = Leg::new(Millis(1000), p);
    leg.play(Millis(1000), 1, vec![prompt(100)], false, false);
    // No address yet: timing runs, nothing is sent.
    assert!(leg.poll_transmit(Millis(1000)).is_none());
    let nat: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    assert_eq!(
        leg.handle_packet(Millis(1010), b"junk", nat),
        Received::Dropped
    );
    assert_eq!(
        leg.handle_packet(Millis(1010), &rtp_bytes(0, 1, 0, &[0xff; 160]), nat),
        Received::Rtp
    );
    let other: SocketAddr = "127.0.0.1:50002".parse().unwrap();
    assert_eq!(
        leg.handle_packet(Millis(1011), &rtp_bytes(0, 2, 160, &[0xff; 160]), other),
        Received::Dropped
    );
    let tx = leg.poll_transmit(Millis(1020)).unwrap();
    assert_eq!(tx.dest, nat);
    assert!(
        parsed(&tx).marker,
        "first packet actually sent carries the marker"
    );
    assert_eq!(
        leg.stats(),
        LegStats {
            sent: 1,
            received: 1,
            late: 0,
            dropped: 2,
            side_events: 0
        }
    );
    // A re-INVITE to a new address drops the latch.
    let moved: SocketAddr = "127.0.0.1:41000".parse().unwrap();
    leg.update(Millis(1030), Some(moved), Codec::Pcma, Some(101), true);
    let tx = leg.poll_transmit(Millis(1040)).unwrap();
    assert_eq!(tx.dest, moved);
    assert_eq!(parsed(&tx).payload_type, 8);
    assert!(parsed(&tx).marker, "codec change starts a new stream");
}

/// An RFC 4733 packet as a second socket sends it: its own SSRC and numbering.
fn side_event(seq: u16, ts: u32, event: u8, end: bool) -> Vec<u8> {
    let mut head = [0u8; rtp::HEADER_LEN];
    rtp::write_header(&mut head, seq == 1, 101, seq, ts, 0x5e5e);
    let mut v = head.to_vec();
    v.extend_from_slice(&[event, if end { 0x8a } else { 0x0a }, 0, 160]);
    v
}

#[test]
fn events_from_the_latched_hosts_other_port_are_digits_only() {
    let mut p = params();
    p.remote = None;
    let mut leg = Leg::new(Millis(1000), p);
    leg.play(Millis(1000), 1, vec![prompt(100)], false, true);
    let audio_port: SocketAddr = "127.0.0.1:50000".parse().unwrap();
    let event_port: SocketAddr = "127.0.0.1:50002".parse().unwrap();
    let other_host: SocketAddr = "127.0.0.2:50002".parse().unwrap();
    assert_eq!(
        leg.handle_packet(Millis(1010), &rtp_bytes(0, 1, 0, &[0xff; 160]), audio_port),
        Received::Rtp
    );
    // A digit from the second socket: reported, and (barge-in) it stops the prompt.
    assert_eq!(
        leg.handle_packet(Millis(1020), &side_event(1, 800, 4, false), event_port),
        Received::Rtp
    );
    assert_eq!(
        events(&mut leg),
        vec![
            MediaEvent::Digit {
                leg: 7,
                digit: '4',
                at: Millis(1020)
            },
            MediaEvent::PlayFinished {
                leg: 7,
                play_id: 1,
                interrupted: true
            }
        ]
    );
    // Its end packets are the same digit (deduped), not a new one.
    for seq in 2..5 {
        leg.handle_packet(Millis(1030), &side_event(seq, 800, 4, true), event_port);
    }
    assert!(events(&mut leg).is_empty());
    // Audio from that port, and events from another host, are still dropped.
    assert_eq!(
        leg.handle_packet(
            Millis(1040),
            &rtp_bytes(0, 2, 160, &[0xff; 160]),
            event_port
        ),
        Received::Dropped
    );
    assert_eq!(
        leg.handle_packet(Millis(1040), &side_event(5, 1600, 9, false), other_host),
        Received::Dropped
    );
    assert!(events(&mut leg).is_empty());
    // The latch stayed on the audio port.
    assert_eq!(leg.destination(), Some(audio_port));
    assert_eq!(
        leg.handle_packet(
            Millis(1050),
            &rtp_bytes(0, 3, 320, &[0xff; 160]),
            audio_port
        ),
        Received::Rtp
    );
    assert_eq!(
        leg.stats(),
        LegStats {
            sent: 0,
            received: 6,
            late: 0,
            dropped: 2,
            side_events: 4
        }
    );
}

#[test]
fn strict_latch_drops_other_port_events_when_not_accepted() {
    let mut p = params();
    p.accept_events_from_same_host = false;
    let mut leg = Leg::new(Millis(1000), p);
    let event_port: SocketAddr = "127.0.0.1:40002".parse().unwrap();
    leg.handle_packet(Millis(1010), &rtp_bytes(0, 1, 0, &[0xff; 160]), peer());
    assert_eq!(
        leg.handle_packet(Millis(1020), &side_event(1, 800, 4, false), event_port),
        Received::Dropped
    );
    assert!(events(&mut leg).is_empty());
    assert_eq!(leg.stats().dropped, 1);
    assert_eq!(leg.stats().side_events, 0);
    // Digits from the latched port itself are taken as always.
    leg.handle_packet(
        Millis(1030),
        &rtp_bytes(101, 2, 160, &[4, 0x0a, 0, 160]),
        peer(),
    );
    assert!(matches!(
        events(&mut leg)[..],
        [MediaEvent::Digit { digit: '4', .. }]
    ));
}

#[test]
fn a_digit_before_any_audio_does_not_latch_the_event_port() {
    // The SDP names 127.0.0.1:40000; the first packet is a digit from 127.0.0.1:40002.
    let mut leg = Leg::new(Millis(1000), params());
    let event_port: SocketAddr = "127.0.0.1:40002".parse().unwrap();
    assert_eq!(
        leg.handle_packet(Millis(1010), &side_event(1, 800, 1, false), event_port),
        Received::Rtp
    );
    assert!(matches!(
        events(&mut leg)[..],
        [MediaEvent::Digit { digit: '1', .. }]
    ));
    // Audio from the signalled port then latches; audio from the event port is dropped.
    assert_eq!(
        leg.handle_packet(Millis(1020), &rtp_bytes(0, 1, 0, &[0xff; 160]), peer()),
        Received::Rtp
    );
    assert_eq!(
        leg.handle_packet(
            Millis(1030),
            &rtp_bytes(0, 2, 160, &[0xff; 160]),
            event_port
        ),
        Received::Dropped
    );
    assert_eq!(leg.destination(), Some(peer()));
    // A digit from another host before the latch latches it (plain symmetric RTP).
    let mut leg = Leg::new(Millis(1000), params());
    let nat: SocketAddr = "192.0.2.7:3000".parse().unwrap();
    leg.handle_packet(Millis(1010), &side_event(1, 800, 1, false), nat);
    assert_eq!(leg.destination(), Some(nat));
    assert_eq!(leg.stats().side_events, 0);
}

#[test]
fn held_leg_sends_nothing_but_keeps_timing() {
    let mut leg = Leg::new(Millis(1000), params());
    leg.play(Millis(1000), 1, vec![prompt(10)], false, false);
    run(&mut leg, 1000, 1010);
    leg.update(Millis(1010), Some(peer()), Codec::Pcmu, Some(101), false);
    assert!(run(&mut leg, 1010, 1090).is_empty());
    leg.update(Millis(1090), Some(peer()), Codec::Pcmu, Some(101), true);
    let sent = run(&mut leg, 1090, 1300);
    // Frames 0..=4 passed (one sent, four silent while held); 5..=9 remain.
    assert_eq!(sent.len(), 5);
    assert!(sent[0].1.marker);
    assert_eq!(sent[0].1.sequence, 65531);
    assert_eq!(sent[0].1.timestamp, (u32::MAX - 500).wrapping_add(160 * 5));
    assert_eq!(
        events(&mut leg),
        vec![MediaEvent::PlayFinished {
            leg: 7,
            play_id: 1,
            interrupted: false
        }]
    );
}

#[test]
fn inactivity_fires_once_from_open_and_rearms_on_rtp() {
    let mut p = params();
    p.inactivity_ms = 300;
    let mut leg = Leg::new(Millis(1000), p);
    assert_eq!(leg.next_deadline(), Some(Millis(1300)));
    run(&mut leg, 1000, 1600);
    assert_eq!(
        events(&mut leg),
        vec![MediaEvent::Inactive {
            leg: 7,
            at: Millis(1300)
        }]
    );
    leg.handle_packet(Millis(1600), &rtp_bytes(0, 1, 0, &[0xff; 10]), peer());
    run(&mut leg, 1600, 2000);
    assert_eq!(
        events(&mut leg),
        vec![MediaEvent::Inactive {
            leg: 7,
            at: Millis(1900)
        }]
    );
    // Held: no inactivity.
    leg.update(Millis(2000), Some(peer()), Codec::Pcmu, None, false);
    assert_eq!(leg.next_deadline(), None);
}

#[test]
fn empty_or_unknown_prompts_finish_at_once_and_close_silences() {
    let mut set = PromptSet::new();
    set.insert_samples(
        PromptKey {
            id: "a".into(),
            lang: "en".into(),
        },
        &[0; 320],
    );
    let mut leg = Leg::new(Millis(1000), params());
    let play = |keys: Vec<&str>| MediaCommand::Play {
        leg: 7,
        play_id: 3,
        prompts: keys
            .into_iter()
            .map(|k| PromptKey {
                id: k.into(),
                lang: "en".into(),
            })
            .collect(),
        looped: true,
        barge_in: false,
    };
    leg.handle_command(Millis(1000), &play(vec!["missing"]), &set);
    assert_eq!(
        events(&mut leg),
        vec![MediaEvent::PlayFinished {
            leg: 7,
            play_id: 3,
            interrupted: false
        }]
    );
    leg.handle_command(Millis(1000), &play(vec!["missing", "a"]), &set);
    assert_eq!(run(&mut leg, 1000, 1100).len(), 5);
    leg.handle_command(Millis(1100), &MediaCommand::Close { leg: 7 }, &set);
    assert!(run(&mut leg, 1100, 1200).is_empty());
    assert!(leg.is_closed());
}

fn relay(from: &mut Leg, to: &mut Leg, now: u64, bytes: &[u8]) -> Option<rtp::RtpPacket> {
    let Inbound::Media(pkt) = from.receive(Millis(now), bytes, peer()) else {
        return None;
    };
    let mut out = [0u8; 1500];
    let (dest, len) = to.relay_packet(Millis(now), &pkt, from.source(), &mut out)?;
    assert_eq!(
        dest,
        "127.0.0.1:40001".parse::<std::net::SocketAddr>().unwrap()
    );
    Some(rtp::parse(&out[..len]).unwrap())
}

fn agent() -> Leg {
    let mut p = params();
    p.leg = 8;
    p.remote = Some("127.0.0.1:40001".parse().unwrap());
    p.codec = Codec::Pcma;
    p.telephone_event_pt = Some(96);
    p.ssrc = 0xabcd;
    p.initial_seq = 10;
    p.initial_ts = 5000;
    Leg::new(Millis(1000), p)
}

#[test]
fn relay_continues_the_prompt_stream_with_own_ssrc_seq_and_timestamp() {
    let mut caller = Leg::new(Millis(1000), params());
    let mut b = agent();
    b.play(Millis(1000), 1, vec![prompt(3)], true, false);
    let mut out_b = Vec::new();
    for t in 1000..1070 {
        if let Some(tx) = b.poll_transmit(Millis(t)) {
            out_b.push(parsed(&tx));
        }
    }
    assert_eq!(out_b.len(), 4, "1000, 1020, 1040, 1060");
    let last = out_b.last().unwrap().clone();
    caller.bridge();
    b.bridge();
    assert_eq!(
        events(&mut b),
        vec![MediaEvent::PlayFinished {
            leg: 8,
            play_id: 1,
            interrupted: true
        }]
    );
    assert!(
        b.poll_transmit(Millis(1080)).is_none(),
        "no prompt while bridged"
    );
    // The caller's phone sends 0xFF (mu-law silence) frames with its own numbering.
    let mut got = Vec::new();
    for i in 0..5u16 {
        let bytes = rtp_bytes(0, 40_000 + i, 777 + 160 * u32::from(i), &[0xff; 160]);
        got.push(relay(&mut caller, &mut b, 1070 + 20 * u64::from(i), &bytes).unwrap());
    }
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.ssrc, 0xabcd);
        assert_eq!(p.payload_type, 8, "agent gets PCMA");
        assert!(
            p.payload.iter().all(|&x| x == 0xD5),
            "mu-law silence -> A-law silence"
        );
        assert_eq!(p.sequence, last.sequence.wrapping_add(1 + i as u16));
        assert_eq!(p.marker, i == 0);
    }
    // Timestamp: 10 ms after the last prompt frame ended its 20 ms -> anchored at its end.
    assert_eq!(got[0].timestamp, last.timestamp.wrapping_add(160));
    assert_eq!(got[4].timestamp, got[0].timestamp.wrapping_add(640));
    // Back to prompts: sequence continues, timestamp moves on by wall time, marker.
    b.unbridge();
    b.play(Millis(1200), 2, vec![prompt(1)], false, false);
    let p = parsed(&b.poll_transmit(Millis(1200)).unwrap());
    assert_eq!(p.sequence, got[4].sequence.wrapping_add(1));
    assert!(p.marker);
    assert_eq!(p.timestamp, 5000 + 160 * 10);
    assert_eq!(b.stats().sent, 4 + 5 + 1);
}

#[test]
fn relay_maps_event_payload_types_reports_digits_and_drops_what_the_far_end_cannot_take() {
    let mut caller = Leg::new(Millis(1000), params());
    let mut b = agent();
    caller.bridge();
    b.bridge();
    let audio = |seq: u16| rtp_bytes(0, seq, u32::from(seq) * 160, &[0x80; 160]);
    let first = relay(&mut caller, &mut b, 1000, &audio(1)).unwrap();
    assert!(first.payload.iter().all(|&x| x == 0xAA));
    let ev = rtp_bytes(101, 2, 320, &[5, 10, 0, 160]);
    let p = relay(&mut caller, &mut b, 1020, &ev).unwrap();
    assert_eq!(p.payload_type, 96, "caller's 101 mapped to the agent's 96");
    assert_eq!(p.payload.as_ref(), &[5, 10, 0, 160]);
    assert_eq!(p.sequence, first.sequence.wrapping_add(1));
    assert_eq!(p.timestamp, first.timestamp.wrapping_add(160));
    assert_eq!(
        events(&mut caller),
        vec![MediaEvent::Digit {
            leg: 7,
            digit: '5',
            at: Millis(1020)
        }]
    );
    // Comfort noise (PT 13) is not relayed and leaves no sequence gap.
    assert!(relay(&mut caller, &mut b, 1030, &rtp_bytes(13, 3, 480, &[0x40])).is_none());
    let p = relay(&mut caller, &mut b, 1040, &audio(4)).unwrap();
    assert_eq!(p.sequence, first.sequence.wrapping_add(2));
    // The other way: the agent's A-law and its event PT 96 -> the caller's mu-law and 101.
    let back = rtp_bytes(8, 9, 0, &[0xD5; 160]);
    let mut out = [0u8; 1500];
    let Inbound::Media(v) = b.receive(Millis(1050), &back, "127.0.0.1:40001".parse().unwrap())
    else {
        panic!("agent audio not taken");
    };
    let (_, n) = caller
        .relay_packet(Millis(1050), &v, b.source(), &mut out)
        .unwrap();
    let p = rtp::parse(&out[..n]).unwrap();
    assert_eq!((p.payload_type, p.ssrc, p.marker), (0, 0x1234_5678, true));
    assert!(
        p.payload.iter().all(|&x| x == 0xFE),
        "A-law +8 -> mu-law +8"
    );
    // An agent leg without telephone-event: events are dropped, no gap left.
    b.update(Millis(1060), b.destination(), Codec::Pcma, None, true);
    let a5 = relay(&mut caller, &mut b, 1060, &audio(5)).unwrap();
    assert!(
        !a5.marker,
        "same codec and direction: the stream just goes on"
    );
    assert!(relay(
        &mut caller,
        &mut b,
        1070,
        &rtp_bytes(101, 6, 960, &[6, 10, 0, 160])
    )
    .is_none());
    let a7 = relay(&mut caller, &mut b, 1080, &audio(7)).unwrap();
    assert_eq!(a7.sequence, a5.sequence.wrapping_add(1));
    // Held agent (sendonly from its side): nothing relayed to it.
    b.update(Millis(1090), b.destination(), Codec::Pcma, None, false);
    assert!(relay(&mut caller, &mut b, 1090, &audio(8)).is_none());
    // Hold audio on a bridged leg: the prompt takes its stream over (marker on its first
    // frame), nothing relayed reaches it meanwhile; when the play stops the relay goes on
    // with a new talk-spurt and the sequence unbroken.
    b.update(Millis(1100), b.destination(), Codec::Pcma, None, true);
    b.play(Millis(1100), 4, vec![prompt(3)], true, false);
    assert!(b.is_playing());
    let hold = parsed(&b.poll_transmit(Millis(1100)).expect("hold audio frame"));
    assert!(hold.marker);
    assert_eq!(hold.ssrc, 0xabcd);
    assert!(relay(&mut caller, &mut b, 1105, &audio(9)).is_none());
    b.stop_play();
    assert!(events(&mut b).contains(&MediaEvent::PlayFinished {
        leg: 8,
        play_id: 4,
        interrupted: true
    }));
    let back = relay(&mut caller, &mut b, 1130, &audio(10)).expect("relay resumes");
    assert!(back.marker);
    assert_eq!(back.sequence, hold.sequence.wrapping_add(1));
    assert!(back.timestamp.wrapping_sub(hold.timestamp) as i32 >= 160);
    // After unbridge nothing is relayed.
    b.unbridge();
    assert!(relay(&mut caller, &mut b, 1150, &audio(11)).is_none());
}

#[test]
fn side_port_events_of_a_bridged_leg_are_reported_but_never_relayed() {
    let mut caller = Leg::new(Millis(1000), params());
    let mut b = agent();
    caller.bridge();
    b.bridge();
    let audio = |seq: u16| rtp_bytes(0, seq, u32::from(seq) * 160, &[0xff; 160]);
    let a1 = relay(&mut caller, &mut b, 1000, &audio(1)).unwrap();
    let event_port: SocketAddr = "127.0.0.1:40002".parse().unwrap();
    for (seq, end) in [(1, false), (2, true)] {
        assert_eq!(
            caller.receive(Millis(1010), &side_event(seq, 160, 7, end), event_port),
            Inbound::SideEvent
        );
    }
    assert_eq!(
        events(&mut caller),
        vec![MediaEvent::Digit {
            leg: 7,
            digit: '7',
            at: Millis(1010)
        }]
    );
    // The relayed stream goes on as if the side packets had never come.
    let a2 = relay(&mut caller, &mut b, 1020, &audio(2)).unwrap();
    assert_eq!(a2.sequence, a1.sequence.wrapping_add(1));
    assert_eq!(a2.timestamp, a1.timestamp.wrapping_add(160));
    assert!(!a2.marker);
    assert_eq!(b.stats().sent, 2);
}

#[test]
fn new_source_ssrc_anchors_again_with_marker() {
    let mut caller = Leg::new(Millis(1000), params());
    let mut b = agent();
    caller.bridge();
    b.bridge();
    let a = relay(
        &mut caller,
        &mut b,
        1000,
        &rtp_bytes(0, 100, 0, &[0xff; 160]),
    )
    .unwrap();
    // The phone restarts its stream (new SSRC is seen through the latched address).
    let mut head = [0u8; rtp::HEADER_LEN];
    rtp::write_header(&mut head, false, 0, 9, 123_456, 4242);
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(&[0xff; 160]);
    let p = relay(&mut caller, &mut b, 1020, &bytes).unwrap();
    assert!(p.marker);
    assert_eq!(p.sequence, a.sequence.wrapping_add(1));
    assert_eq!(p.timestamp, a.timestamp.wrapping_add(160));
}
