//! Bridging through the media runtime over 127.0.0.1: two UDP "phones", two legs, Bridge.
//! Checks payloads (transcoded PCMU <-> PCMA), sequence continuity, RFC 4733 payload type
//! mapping, digits reported (also from a phone's second port), the stereo recording, and how
//! legs spread over the workers. No timing is asserted.

use ccswitch::clock::Clock;
use ccswitch::engine::media::{Codec, MediaCommand, MediaEvent, PromptKey};
use ccswitch::media::prompts::PromptSet;
use ccswitch::media::runtime::{LegPolicy, MediaConfig, MediaHandle, RuntimeOptions};
use ccswitch::proto::rtp;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn phone() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

fn start(workers: usize) -> (MediaHandle, UnboundedReceiver<MediaEvent>) {
    start_with_policy(workers, LegPolicy::default())
}

fn start_with_policy(
    workers: usize,
    policy: LegPolicy,
) -> (MediaHandle, UnboundedReceiver<MediaEvent>) {
    let mut prompts = PromptSet::new();
    prompts.insert_samples(key(), &[100; 8000]);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = MediaConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        workers,
    };
    let opts = RuntimeOptions {
        realtime_priority: None,
    };
    let media =
        MediaHandle::start_with_policy(cfg, opts, policy, Arc::new(prompts), Clock::new(), tx)
            .unwrap();
    (media, rx)
}

fn key() -> PromptKey {
    PromptKey {
        id: "hold".into(),
        lang: "en".into(),
    }
}

fn open(media: &MediaHandle, leg: u64, port: u16, remote: SocketAddr, codec: Codec, te: u8) {
    media.send(MediaCommand::Open {
        leg,
        call_id: format!("c{leg}"),
        local_port: port,
        remote: Some(remote),
        codec,
        telephone_event_pt: Some(te),
        inactivity_ms: 0,
    });
}

fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut head = [0u8; rtp::HEADER_LEN];
    rtp::write_header(&mut head, false, pt, seq, ts, ssrc);
    let mut v = head.to_vec();
    v.extend_from_slice(payload);
    v
}

/// Receives RTP until `want` packets matching `keep` arrived (3 s without any: panic).
fn recv_rtp(
    s: &UdpSocket,
    want: usize,
    keep: impl Fn(&rtp::RtpPacket) -> bool,
) -> Vec<rtp::RtpPacket> {
    let mut buf = [0u8; 1500];
    let mut out = Vec::new();
    let mut idle = 0;
    while out.len() < want {
        match s.recv(&mut buf) {
            Ok(n) => {
                idle = 0;
                let p = rtp::parse(&buf[..n]).unwrap();
                if keep(&p) {
                    out.push(p);
                }
            }
            Err(_) => {
                idle += 1;
                assert!(idle < 150, "only {} of {want} packets arrived", out.len());
            }
        }
    }
    out
}

/// Sends from `from` to `to` until `at` hears something (the bridge is up), then returns
/// the next sequence number to use.
fn until_relayed(from: &UdpSocket, to: SocketAddr, at: &UdpSocket, pt: u8, body: &[u8]) -> u16 {
    let mut buf = [0u8; 1500];
    for seq in 0..300u16 {
        from.send_to(&packet(pt, seq, u32::from(seq) * 160, 1, body), to)
            .unwrap();
        if at.recv(&mut buf).is_ok() {
            // Drain what else the probes produced.
            while at.recv(&mut buf).is_ok() {}
            return seq + 1;
        }
    }
    panic!("the bridge never relayed");
}

fn next_event(
    rx: &mut UnboundedReceiver<MediaEvent>,
    want: impl Fn(&MediaEvent) -> bool,
) -> MediaEvent {
    for _ in 0..300 {
        while let Ok(ev) = rx.try_recv() {
            if want(&ev) {
                return ev;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("expected media event did not come");
}

#[test]
fn bridged_legs_relay_both_ways_transcoded_with_events_and_a_recording() {
    // Two workers: the legs open on different ones, so Bridge migrates one.
    let (media, mut rx) = start(2);
    let (a, b) = (phone(), phone());
    let (pa, pb) = (free_port(), free_port());
    let leg_a: SocketAddr = format!("127.0.0.1:{pa}").parse().unwrap();
    let leg_b: SocketAddr = format!("127.0.0.1:{pb}").parse().unwrap();
    open(&media, 1, pa, a.local_addr().unwrap(), Codec::Pcmu, 101);
    open(&media, 2, pb, b.local_addr().unwrap(), Codec::Pcma, 96);
    // The agent leg plays hold music first: the relay continues its stream.
    media.send(MediaCommand::Play {
        leg: 2,
        play_id: 5,
        prompts: vec![key()],
        looped: true,
        barge_in: false,
    });
    let prompt = recv_rtp(&b, 3, |_| true);
    media.send(MediaCommand::Bridge { a: 1, b: 2 });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.wav");
    media.send(MediaCommand::StartRecording {
        a: 1,
        b: 2,
        path: path.clone(),
    });
    assert_eq!(
        next_event(&mut rx, |e| matches!(e, MediaEvent::PlayFinished { .. })),
        MediaEvent::PlayFinished {
            leg: 2,
            play_id: 5,
            interrupted: true
        }
    );

    // Caller -> agent: mu-law 0x80 (+32124) arrives as A-law 0xAA (+32256).
    let mut seq = until_relayed(&a, leg_a, &b, 0, &[0x80; 160]);
    for _ in 0..20 {
        a.send_to(
            &packet(0, seq, u32::from(seq) * 160, 1, &[0x80; 160]),
            leg_a,
        )
        .unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let got = recv_rtp(&b, 20, |_| true);
    let ssrc = prompt[0].ssrc;
    for w in got.windows(2) {
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1), "continuous");
        assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(160));
    }
    for p in &got {
        assert_eq!(
            (p.payload_type, p.ssrc),
            (8, ssrc),
            "agent's own stream, PCMA"
        );
        assert!(p.payload.iter().all(|&x| x == 0xAA));
    }
    // The relayed stream continued the prompt's sequence numbers (no restart).
    let gap = got[0].sequence.wrapping_sub(prompt[2].sequence);
    assert!(gap > 0 && gap < 2000, "seq went on from the prompt: {gap}");

    // A digit from the caller: PT 101 -> the agent's 96, and a Digit event.
    let ev = packet(101, seq, u32::from(seq) * 160, 1, &[7, 10, 0, 160]);
    a.send_to(&ev, leg_a).unwrap();
    seq += 1;
    let p = recv_rtp(&b, 1, |p| p.payload_type != 8);
    assert_eq!(p[0].payload_type, 96);
    assert_eq!(p[0].payload.as_ref(), &[7, 10, 0, 160]);
    match next_event(&mut rx, |e| matches!(e, MediaEvent::Digit { .. })) {
        MediaEvent::Digit {
            leg: 1, digit: '7', ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }

    // Agent -> caller: A-law 0x2A (-32256) arrives as mu-law 0x00 (-32124).
    let bseq = until_relayed(&b, leg_b, &a, 8, &[0x2A; 160]);
    for s in bseq..bseq + 20 {
        b.send_to(&packet(8, s, u32::from(s) * 160, 2, &[0x2A; 160]), leg_b)
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let got = recv_rtp(&a, 20, |_| true);
    for w in got.windows(2) {
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
    }
    for p in &got {
        assert_eq!(p.payload_type, 0);
        assert!(p.payload.iter().all(|&x| x == 0x00));
    }

    // Unbridge ends the recording; the WAV has the caller left and the agent right.
    media.send(MediaCommand::Unbridge { leg: 2 });
    match next_event(&mut rx, |e| {
        matches!(e, MediaEvent::RecordingFinished { .. })
    }) {
        MediaEvent::RecordingFinished {
            leg: 1,
            path: p,
            ok: true,
            reason: None,
        } => assert_eq!(p, path),
        other => panic!("unexpected {other:?}"),
    }
    let mut wav = hound::WavReader::open(&path).unwrap();
    let spec = wav.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let s: Vec<i16> = wav.samples::<i16>().map(|x| x.unwrap()).collect();
    let left = s.iter().step_by(2).filter(|&&x| x == 32124).count();
    let right = s
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|&&x| x == -32256)
        .count();
    assert!(left >= 20 * 160, "caller audio on the left: {left}");
    assert!(right >= 20 * 160, "agent audio on the right: {right}");
    assert!(
        s.iter().step_by(2).all(|&x| x == 32124 || x == 0),
        "nothing else on the left"
    );
    assert!(s.iter().skip(1).step_by(2).all(|&x| x == -32256 || x == 0));

    // After Unbridge nothing is relayed; the legs take prompts again.
    let mut buf = [0u8; 1500];
    while b.recv(&mut buf).is_ok() {}
    a.send_to(
        &packet(0, seq, u32::from(seq) * 160, 1, &[0x80; 160]),
        leg_a,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(b.recv(&mut buf).is_err(), "unbridged: nothing relayed");
    media.send(MediaCommand::Play {
        leg: 2,
        play_id: 6,
        prompts: vec![key()],
        looped: false,
        barge_in: false,
    });
    let p = recv_rtp(&b, 1, |_| true);
    assert_eq!(p[0].ssrc, ssrc);
    let stats = media.stats();
    assert!(stats.packets_relayed >= 42);
    media.send(MediaCommand::Close { leg: 1 });
    media.send(MediaCommand::Close { leg: 2 });
    media.shutdown();
}

#[test]
fn recording_needs_a_bridge_and_close_ends_bridge_and_recording() {
    let (media, mut rx) = start(1);
    let (a, b) = (phone(), phone());
    let (pa, pb) = (free_port(), free_port());
    let leg_a: SocketAddr = format!("127.0.0.1:{pa}").parse().unwrap();
    open(&media, 1, pa, a.local_addr().unwrap(), Codec::Pcma, 101);
    open(&media, 2, pb, b.local_addr().unwrap(), Codec::Pcma, 101);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.wav");
    media.send(MediaCommand::StartRecording {
        a: 1,
        b: 2,
        path: path.clone(),
    });
    match next_event(&mut rx, |e| {
        matches!(e, MediaEvent::RecordingFinished { .. })
    }) {
        MediaEvent::RecordingFinished {
            leg: 1, ok: false, ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    media.send(MediaCommand::Bridge { a: 1, b: 2 });
    media.send(MediaCommand::StartRecording {
        a: 1,
        b: 2,
        path: path.clone(),
    });
    // Same codec: passed through byte for byte. A play on a bridged leg (hold audio while
    // the other side holds) takes that leg's stream over until StopPlay.
    let seq = until_relayed(&a, leg_a, &b, 8, &[0x11; 160]);
    a.send_to(
        &packet(8, seq, u32::from(seq) * 160, 1, &[0x33; 160]),
        leg_a,
    )
    .unwrap();
    let p = recv_rtp(&b, 1, |_| true);
    assert!(p[0].payload.iter().all(|&x| x == 0x33));
    let mut buf = [0u8; 1500];
    while a.recv(&mut buf).is_ok() {}
    media.send(MediaCommand::Play {
        leg: 1,
        play_id: 9,
        prompts: vec![key()],
        looped: true,
        barge_in: false,
    });
    let hold = ccswitch::proto::g711::encode_alaw(100);
    let p = recv_rtp(&a, 3, |_| true);
    assert!(
        p.iter().all(|p| p.payload.iter().all(|&x| x == hold)),
        "the bridged leg's phone hears the prompt"
    );
    media.send(MediaCommand::StopPlay { leg: 1 });
    assert_eq!(
        next_event(&mut rx, |e| matches!(e, MediaEvent::PlayFinished { .. })),
        MediaEvent::PlayFinished {
            leg: 1,
            play_id: 9,
            interrupted: true
        }
    );
    media.send(MediaCommand::Close { leg: 2 });
    match next_event(&mut rx, |e| {
        matches!(e, MediaEvent::RecordingFinished { .. })
    }) {
        MediaEvent::RecordingFinished {
            leg: 1, ok: true, ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    let wav = hound::WavReader::open(&path).unwrap();
    assert_eq!(wav.spec().channels, 2);
    media.shutdown();
}

/// A caller whose phone sends RFC 4733 from a second socket: with the shipped policy the
/// digit is reported but the agent's phone never gets the packet; with the strict policy the
/// digit is dropped (a later digit from the audio socket is the first one reported).
#[test]
fn bridged_digits_from_a_second_port_are_reported_never_relayed() {
    for accept in [true, false] {
        let (media, mut rx) = start_with_policy(
            2,
            LegPolicy {
                accept_events_from_same_host: accept,
            },
        );
        let (a, a_events, b) = (phone(), phone(), phone());
        let (pa, pb) = (free_port(), free_port());
        let leg_a: SocketAddr = format!("127.0.0.1:{pa}").parse().unwrap();
        open(&media, 1, pa, a.local_addr().unwrap(), Codec::Pcmu, 101);
        open(&media, 2, pb, b.local_addr().unwrap(), Codec::Pcma, 96);
        media.send(MediaCommand::Bridge { a: 1, b: 2 });
        let mut seq = until_relayed(&a, leg_a, &b, 0, &[0xff; 160]);
        // Digit 7 from the second socket (its own SSRC and numbering), start and end packets.
        for (i, flags) in [0x0a, 0x0a, 0x8a, 0x8a, 0x8a].into_iter().enumerate() {
            let ev = packet(101, 500 + i as u16, 80_000, 0x5e5e, &[7, flags, 0, 160]);
            a_events.send_to(&ev, leg_a).unwrap();
        }
        // Then digit 8 from the audio socket, and more audio.
        let ev = packet(101, seq, u32::from(seq) * 160, 1, &[8, 0x8a, 0, 160]);
        a.send_to(&ev, leg_a).unwrap();
        seq += 1;
        for _ in 0..10 {
            a.send_to(
                &packet(0, seq, u32::from(seq) * 160, 1, &[0xff; 160]),
                leg_a,
            )
            .unwrap();
            seq += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        let first = next_event(&mut rx, |e| matches!(e, MediaEvent::Digit { .. }));
        let want = if accept { '7' } else { '8' };
        assert!(
            matches!(first, MediaEvent::Digit { leg: 1, digit, .. } if digit == want),
            "accept={accept}: first digit {first:?}"
        );
        if accept {
            let second = next_event(&mut rx, |e| matches!(e, MediaEvent::Digit { .. }));
            assert!(
                matches!(
                    second,
                    MediaEvent::Digit {
                        leg: 1,
                        digit: '8',
                        ..
                    }
                ),
                "{second:?}"
            );
        }
        // The agent hears one event (digit 8, relayed from the audio socket) and continuous
        // audio: the second socket's packets were not spliced into its stream.
        let got = recv_rtp(&b, 11, |_| true);
        let events: Vec<_> = got.iter().filter(|p| p.payload_type == 96).collect();
        assert_eq!(events.len(), 1, "accept={accept}: {events:?}");
        assert_eq!(events[0].payload.first(), Some(&8));
        for w in got.windows(2) {
            assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1), "continuous");
        }
        assert_eq!(
            got.iter()
                .map(|p| p.ssrc)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            1
        );
        media.shutdown();
    }
}

/// Polls `worker_legs` until it equals `want` (3 s at most).
fn wait_worker_legs(media: &MediaHandle, want: &[u64]) {
    let mut seen = Vec::new();
    for _ in 0..300 {
        seen = media.worker_legs();
        if seen == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("legs per worker {seen:?}, expected {want:?}");
}

/// Bridges move each agent leg to its caller's worker; new legs then go to the worker left
/// lighter instead of round-robin, so the workers even out again.
#[test]
fn new_legs_go_to_the_lighter_worker_after_bridge_moves() {
    let (media, _rx) = start(2);
    let open_idle = |leg: u64| {
        media.send(MediaCommand::Open {
            leg,
            call_id: format!("c{leg}"),
            local_port: 0,
            remote: None,
            codec: Codec::Pcmu,
            telephone_event_pt: Some(101),
            inactivity_ms: 0,
        })
    };
    for leg in 1..=8 {
        open_idle(leg);
    }
    wait_worker_legs(&media, &[4, 4]);
    // Legs 1, 3, 5, 7 are on worker 0 and 2, 4, 6, 8 on worker 1: every bridge moves one.
    for a in [1, 3, 5, 7] {
        media.send(MediaCommand::Bridge { a, b: a + 1 });
    }
    wait_worker_legs(&media, &[8, 0]);
    for leg in 9..=12 {
        open_idle(leg);
    }
    wait_worker_legs(&media, &[8, 4]);
    for leg in 1..=12 {
        media.send(MediaCommand::Close { leg });
    }
    wait_worker_legs(&media, &[0, 0]);
    media.shutdown();
}

/// A supervisor listening: caller and agent still hear each other over the relay (the
/// caller's exact bytes and its RFC 4733 digits reach the agent); only the supervisor gets a
/// mix. In barge mode the agent's audio is mixed (no digits relayed any more).
#[test]
fn listen_keeps_the_callers_relay_and_mixes_only_for_the_supervisor() {
    use ccswitch::engine::media::MonitorMode;
    let (media, _rx) = start(1);
    let (caller, agent, sup) = (phone(), phone(), phone());
    let (pc, pa, ps) = (free_port(), free_port(), free_port());
    let leg_c: SocketAddr = format!("127.0.0.1:{pc}").parse().unwrap();
    open(
        &media,
        1,
        pc,
        caller.local_addr().unwrap(),
        Codec::Pcmu,
        101,
    );
    open(&media, 2, pa, agent.local_addr().unwrap(), Codec::Pcmu, 101);
    open(&media, 3, ps, sup.local_addr().unwrap(), Codec::Pcmu, 101);
    media.send(MediaCommand::Bridge { a: 1, b: 2 });
    let mut seq = until_relayed(&caller, leg_c, &agent, 0, &[0x23; 160]);
    media.send(MediaCommand::Monitor {
        caller: 1,
        agent: 2,
        supervisor: 3,
        mode: MonitorMode::Listen,
    });
    // The supervisor hears the caller once the mix has primed: keep the caller talking.
    let body: Vec<u8> = (0..160u8).map(|i| 0x20 + (i % 64)).collect();
    let digit = [5u8, 0x0a, 0x00, 0xa0];
    let mut sup_heard = 0;
    let mut buf = [0u8; 1500];
    let mut agent_got = Vec::new();
    for _ in 0..60 {
        caller
            .send_to(&packet(0, seq, u32::from(seq) * 160, 1, &body), leg_c)
            .unwrap();
        seq += 1;
        caller
            .send_to(&packet(101, seq, u32::from(seq) * 160, 1, &digit), leg_c)
            .unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
        while let Ok(n) = agent.recv(&mut buf) {
            agent_got.push(rtp::parse(&buf[..n]).unwrap());
        }
        while sup.recv(&mut buf).is_ok() {
            sup_heard += 1;
        }
    }
    let audio: Vec<_> = agent_got.iter().filter(|p| p.payload_type == 0).collect();
    assert!(audio.len() >= 40, "agent got {} audio packets", audio.len());
    assert!(
        audio.iter().all(|p| p.payload[..] == body[..]),
        "the caller's bytes reach the agent unmixed"
    );
    assert!(
        agent_got.iter().any(|p| p.payload_type == 101),
        "the caller's RFC 4733 digits are relayed to the agent"
    );
    assert!(sup_heard >= 20, "the supervisor heard {sup_heard} packets");

    // Barge: the agent now hears caller + supervisor through the mix.
    media.send(MediaCommand::Monitor {
        caller: 1,
        agent: 2,
        supervisor: 3,
        mode: MonitorMode::Barge,
    });
    std::thread::sleep(Duration::from_millis(100));
    while agent.recv(&mut buf).is_ok() {}
    let mut events = 0;
    for _ in 0..30 {
        caller
            .send_to(&packet(101, seq, u32::from(seq) * 160, 1, &digit), leg_c)
            .unwrap();
        seq += 1;
        std::thread::sleep(Duration::from_millis(20));
        while let Ok(n) = agent.recv(&mut buf) {
            if rtp::parse(&buf[..n]).unwrap().payload_type == 101 {
                events += 1;
            }
        }
    }
    assert_eq!(events, 0, "mixed audio carries no relayed digits");
    media.shutdown();
}
