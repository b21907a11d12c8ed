use super::routes::least_loaded;
use super::*;
use crate::engine::media::{Codec, PromptKey};
use crate::proto::rtp;
use std::net::UdpSocket;
use std::time::Duration;

fn prompts() -> Arc<PromptSet> {
    let mut set = PromptSet::new();
    // 25 frames of a ramp so frames differ.
    let samples: Vec<i16> = (0..4000).map(|i| (i * 8) as i16).collect();
    set.insert_samples(
        PromptKey {
            id: "p".into(),
            lang: "en".into(),
        },
        &samples,
    );
    Arc::new(set)
}

fn recv_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<MediaEvent>) -> MediaEvent {
    for _ in 0..300 {
        if let Ok(ev) = rx.try_recv() {
            return ev;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no media event within 3 s");
}

#[test]
fn plays_to_a_peer_latches_and_reports_digits_and_bind_failures() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = MediaConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        workers: 2,
    };
    let media = MediaHandle::start(cfg, prompts(), Clock::new(), tx).unwrap();

    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // Find a free port for the leg.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    media.send(MediaCommand::Open {
        leg: 1,
        call_id: "c1".into(),
        local_port: port,
        remote: Some(peer.local_addr().unwrap()),
        codec: Codec::Pcma,
        telephone_event_pt: Some(101),
        inactivity_ms: 0,
    });
    media.send(MediaCommand::Play {
        leg: 1,
        play_id: 9,
        prompts: vec![PromptKey {
            id: "p".into(),
            lang: "en".into(),
        }],
        looped: false,
        barge_in: false,
    });
    let mut buf = [0u8; 1500];
    let mut seqs = Vec::new();
    let mut from = None;
    // Only 5 of the 25 frames are awaited: a loaded test machine may skip late frames.
    for _ in 0..5 {
        let (n, src) = peer.recv_from(&mut buf).unwrap();
        let p = rtp::parse(&buf[..n]).unwrap();
        assert_eq!(p.payload_type, 8);
        assert_eq!(p.payload.len(), 160);
        seqs.push(p.sequence);
        from = Some(src);
    }
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1));
    }
    assert_eq!(
        recv_event(&mut rx),
        MediaEvent::PlayFinished {
            leg: 1,
            play_id: 9,
            interrupted: false
        }
    );

    // A digit from the peer comes back as an event.
    let mut head = [0u8; rtp::HEADER_LEN];
    rtp::write_header(&mut head, true, 101, 1, 4000, 77);
    let mut pkt = head.to_vec();
    pkt.extend_from_slice(&[3, 0x8a, 0, 160]);
    let leg_addr = from.unwrap();
    for _ in 0..3 {
        peer.send_to(&pkt, leg_addr).unwrap();
    }
    match recv_event(&mut rx) {
        MediaEvent::Digit {
            leg: 1, digit: '3', ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }

    // The same port again cannot be bound.
    media.send(MediaCommand::Open {
        leg: 2,
        call_id: "c2".into(),
        local_port: port,
        remote: None,
        codec: Codec::Pcmu,
        telephone_event_pt: None,
        inactivity_ms: 0,
    });
    match recv_event(&mut rx) {
        MediaEvent::OpenFailed { leg: 2, reason } => assert!(reason.contains("cannot bind")),
        other => panic!("unexpected {other:?}"),
    }
    // The failed Open freed the leg id: opening it again on a free port works.
    media.send(MediaCommand::Open {
        leg: 2,
        call_id: "c2".into(),
        local_port: 0,
        remote: None,
        codec: Codec::Pcmu,
        telephone_event_pt: None,
        inactivity_ms: 0,
    });
    for _ in 0..300 {
        if media.stats().legs == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(media.stats().legs, 2);
    assert!(media.stats().packets_sent >= 5);
    assert!(media.stats().packets_received >= 1);
    media.send(MediaCommand::Close { leg: 1 });
    media.shutdown();
    // After shutdown the port is free again.
    assert!(UdpSocket::bind(("127.0.0.1", port)).is_ok());
}

#[test]
fn new_legs_go_to_the_least_loaded_worker() {
    assert_eq!(least_loaded(&[3, 1, 2]), 1);
    assert_eq!(least_loaded(&[2, 2, 2]), 0, "the lowest index among equals");
    assert_eq!(least_loaded(&[5, 0, 0]), 1);
    assert_eq!(least_loaded(&[7]), 0);
    assert_eq!(least_loaded(&[]), 0);
}

#[test]
fn routes_count_legs_moved_by_bridges() {
    let mut r = Routes::new(2);
    let placed: Vec<usize> = (1..=4).map(|leg| r.place(leg)).collect();
    assert_eq!(placed, vec![0, 1, 0, 1]);
    // Two bridges move 2 and 4 to worker 0: the next two legs go to worker 1.
    r.insert(2, 0);
    r.insert(4, 0);
    assert_eq!(r.load, vec![4, 0]);
    assert_eq!((r.place(5), r.place(6)), (1, 1));
    assert_eq!(r.load, vec![4, 2]);
    assert_eq!(r.remove(&1), Some(0));
    assert_eq!(r.remove(&1), None, "a second remove changes nothing");
    assert_eq!(r.load, vec![3, 2]);
    assert_eq!(r.get(&6), Some(1));
    r.clear();
    assert_eq!(r.load, vec![0, 0]);
    assert!(!r.contains(&2));
    assert_eq!(Routes::new(0).load, vec![0], "at least one worker");
}

#[test]
fn inactivity_is_reported() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = MediaConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        workers: 1,
    };
    let media = MediaHandle::start(cfg, prompts(), Clock::new(), tx).unwrap();
    media.send(MediaCommand::Open {
        leg: 5,
        call_id: "c".into(),
        local_port: 0,
        remote: None,
        codec: Codec::Pcmu,
        telephone_event_pt: None,
        inactivity_ms: 100,
    });
    match recv_event(&mut rx) {
        MediaEvent::Inactive { leg: 5, .. } => {}
        other => panic!("unexpected {other:?}"),
    }
    media.shutdown();
}
