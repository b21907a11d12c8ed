//! WebRTC media (issue 10 item 2): a browser-side webrtc-crate peer answers the media shell's
//! offer, its leg is bridged in the media plane with a plain RTP "caller", and audio, RFC 4733
//! digits and the recording work both ways; closing the leg ends the peer.
//!
//!   cargo test --test webrtc_media

use ccswitch::clock::Clock;
use ccswitch::engine::media::{Codec, MediaCommand, MediaEvent};
use ccswitch::media::prompts::PromptSet;
use ccswitch::media::runtime::{MediaConfig, MediaHandle};
use ccswitch::media::webrtc::client::BrowserPeer;
use ccswitch::media::webrtc::{IceServer, WebRtcGateway, WebRtcSettings};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(20);

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind((LOCAL, 0))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

async fn next_event(
    rx: &mut UnboundedReceiver<MediaEvent>,
    mut want: impl FnMut(&MediaEvent) -> bool,
) -> MediaEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let ev = rx.recv().await.expect("media events channel open");
            if want(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("the media event in time")
}

fn rtp(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A 160-byte mu-law frame that is not silence, distinct per `n`.
fn frame(n: u8) -> Vec<u8> {
    (0..160u8)
        .map(|i| 0x20 + (i.wrapping_add(n) % 0x40))
        .collect()
}

struct Setup {
    media: MediaHandle,
    events: UnboundedReceiver<MediaEvent>,
    caller: UdpSocket,
    browser: BrowserPeer,
    gw: WebRtcGateway,
    /// The switch's offer and the browser's answer.
    offer: String,
    answer: String,
}

/// A media plane (one worker) with WebRTC peers using `ice_servers`.
fn start_media(
    ice_servers: Vec<IceServer>,
) -> (MediaHandle, UnboundedReceiver<MediaEvent>, WebRtcGateway) {
    let (tx, events) = unbounded_channel();
    let media = MediaHandle::start(
        MediaConfig {
            bind_ip: LOCAL,
            workers: 1,
        },
        Arc::new(PromptSet::new()),
        Clock::new(),
        tx,
    )
    .expect("media plane");
    let base = free_udp_port().max(10_000);
    let gw = WebRtcGateway::new(WebRtcSettings {
        host_ip: LOCAL,
        port_min: base,
        port_max: base.saturating_add(200),
        ice_servers,
    })
    .expect("WebRTC gateway");
    assert!(media.attach_webrtc(gw.clone()).is_ok());
    (media, events, gw)
}

/// Opens `leg` on `port` (no remote yet) and returns its WebRTC peer's offer and address.
async fn offering_leg(
    media: &MediaHandle,
    events: &mut UnboundedReceiver<MediaEvent>,
    leg: u64,
    port: u16,
) -> (String, SocketAddr) {
    media.send(MediaCommand::Open {
        leg,
        call_id: format!("c{leg}"),
        local_port: port,
        remote: None,
        codec: Codec::Pcmu,
        telephone_event_pt: Some(101),
        inactivity_ms: 0,
    });
    media.send(MediaCommand::WebRtcOffer {
        leg,
        fork: 0,
        rtp_port: port,
    });
    match next_event(events, |e| {
        matches!(e, MediaEvent::WebRtcOffer { leg: l, .. } if *l == leg)
            || matches!(e, MediaEvent::WebRtcFailed { .. })
    })
    .await
    {
        MediaEvent::WebRtcOffer { sdp, relay, .. } => (sdp, relay),
        other => panic!("the WebRTC peer failed: {other:?}"),
    }
}

async fn setup(rec: Option<std::path::PathBuf>) -> Setup {
    let (media, mut events, gw) = start_media(vec![]);

    let caller = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let (pa, pb) = (free_udp_port(), free_udp_port());
    media.send(MediaCommand::Open {
        leg: 1,
        call_id: "c1".into(),
        local_port: pa,
        remote: Some(caller.local_addr().unwrap()),
        codec: Codec::Pcmu,
        telephone_event_pt: Some(101),
        inactivity_ms: 0,
    });
    caller.connect((LOCAL, pa)).await.unwrap();
    let (sdp, relay) = offering_leg(&media, &mut events, 2, pb).await;
    for must in [
        "UDP/TLS/RTP/SAVPF",
        "a=fingerprint:",
        "a=setup:actpass",
        "a=ice-ufrag:",
        "a=candidate:",
        "PCMU/8000",
        "PCMA/8000",
        "telephone-event/8000",
        "a=rtcp-mux",
    ] {
        assert!(sdp.contains(must), "offer lacks {must}:\n{sdp}");
    }
    let mut browser = BrowserPeer::new(SocketAddr::new(LOCAL, 0), &[])
        .await
        .expect("browser peer");
    let answer = browser.answer(&sdp).await.expect("browser answers");
    media.send(MediaCommand::WebRtcAnswer {
        leg: 2,
        fork: 0,
        sdp: answer.clone(),
    });
    media.send(MediaCommand::Update {
        leg: 2,
        remote: Some(relay),
        codec: Codec::Pcmu,
        telephone_event_pt: Some(101),
        send: true,
    });
    media.send(MediaCommand::Bridge { a: 1, b: 2 });
    if let Some(path) = rec {
        media.send(MediaCommand::StartRecording { a: 1, b: 2, path });
    }
    browser.connected(WAIT).await.expect("ICE + DTLS up");
    Setup {
        media,
        events,
        caller,
        browser,
        gw,
        offer: sdp,
        answer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_leg_carries_audio_digits_and_recording_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("call.wav");
    let mut s = setup(Some(wav.clone())).await;

    // Caller -> browser: 50 frames, each arrives intact (PCMU passthrough).
    let mut heard = 0usize;
    let mut first_payloads = Vec::new();
    let caller_tx = async {
        for i in 0..50u16 {
            let p = rtp(0, 100 + i, 160 * u32::from(i), i == 0, &frame(i as u8));
            s.caller.send(&p).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let browser_rx = async {
        let deadline = tokio::time::Instant::now() + WAIT;
        while heard < 40 {
            match tokio::time::timeout_at(deadline, s.browser.received.recv()).await {
                Ok(Some(r)) => {
                    assert_eq!(r.payload_type, 0);
                    if r.payload.len() == 160 {
                        first_payloads.push(r.payload);
                        heard += 1;
                    }
                }
                _ => break,
            }
        }
    };
    tokio::join!(caller_tx, browser_rx);
    assert!(heard >= 40, "the browser heard {heard} of 50 caller frames");
    assert!(
        first_payloads.iter().any(|p| *p == frame(10)),
        "caller audio arrives unchanged"
    );

    // Browser -> caller: 50 frames.
    let browser = &s.browser;
    let browser_tx = async {
        for i in 0..50u16 {
            browser
                .send(
                    0,
                    500 + i,
                    160 * u32::from(i),
                    i == 0,
                    &frame(100 + i as u8),
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let caller = &s.caller;
    let caller_rx = async {
        let mut got = 0usize;
        let mut exact = false;
        let mut buf = [0u8; 2048];
        let deadline = tokio::time::Instant::now() + WAIT;
        while got < 40 {
            match tokio::time::timeout_at(deadline, caller.recv(&mut buf)).await {
                Ok(Ok(n)) if n == 12 + 160 && buf[1] & 0x7f == 0 => {
                    got += 1;
                    exact |= buf[12..n] == frame(110)[..];
                }
                Ok(Ok(_)) => {}
                _ => break,
            }
        }
        (got, exact)
    };
    let ((), (got, exact)) = tokio::join!(browser_tx, caller_rx);
    assert!(got >= 40, "the caller heard {got} of 50 browser frames");
    assert!(exact, "browser audio arrives unchanged");

    // An RFC 4733 digit from the browser is a digit of its leg.
    for (i, end) in [false, false, true, true, true].into_iter().enumerate() {
        let dur: u16 = 160 * (i as u16 + 1);
        let mut p = vec![7u8, if end { 0x80 | 10 } else { 10 }];
        p.extend_from_slice(&dur.to_be_bytes());
        s.browser
            .send(101, 600 + i as u16, 8000 * 60, i == 0, &p)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ev = next_event(&mut s.events, |e| matches!(e, MediaEvent::Digit { .. })).await;
    assert!(
        matches!(
            ev,
            MediaEvent::Digit {
                leg: 2,
                digit: '7',
                ..
            }
        ),
        "{ev:?}"
    );

    // The recording has both sides.
    s.media.send(MediaCommand::StopRecording { a: 1 });
    let ev = next_event(&mut s.events, |e| {
        matches!(e, MediaEvent::RecordingFinished { .. })
    })
    .await;
    assert!(
        matches!(ev, MediaEvent::RecordingFinished { ok: true, .. }),
        "{ev:?}"
    );
    let mut reader = hound::WavReader::open(&wav).expect("the recording");
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let loud = |ch: usize| {
        samples
            .iter()
            .skip(ch)
            .step_by(2)
            .filter(|v| v.abs() > 500)
            .count()
    };
    assert!(loud(0) > 1000, "caller side of the recording is silent");
    assert!(loud(1) > 1000, "browser side of the recording is silent");

    // Closing the leg ends its peer.
    assert_eq!(s.gw.peer_count(), 1);
    s.media.send(MediaCommand::Close { leg: 2 });
    let t0 = tokio::time::Instant::now();
    while s.gw.peer_count() > 0 && t0.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.gw.peer_count(), 0, "the peer closed with its leg");
    s.browser.close().await;
    s.media.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebridged_leg_relays_again_and_bad_answers_are_refused() {
    let mut s = setup(None).await;
    // The browser holds and unholds (re-INVITEs): the engine's answers, written from our
    // offer (ccswitch::proto::webrtc_sdp), are accepted without an ICE or DTLS restart.
    let active = ccswitch::proto::webrtc_sdp::we_are_active(&s.answer);
    for (hold, version) in [(true, 2u64), (false, 3)] {
        let reoffer = s.browser.reoffer(hold).await.expect("re-offer");
        let answer = ccswitch::proto::webrtc_sdp::reanswer(&s.offer, &reoffer, version, active)
            .expect("answerable re-offer");
        assert!(
            answer.contains(if hold { "a=recvonly" } else { "a=sendrecv" }),
            "{answer}"
        );
        s.browser
            .accept(&answer)
            .await
            .expect("the browser takes our re-answer");
    }
    s.media.send(MediaCommand::Unbridge { leg: 2 });
    s.media.send(MediaCommand::Bridge { a: 1, b: 2 });
    for i in 0..20u16 {
        let p = rtp(0, i, 160 * u32::from(i), i == 0, &frame(i as u8));
        s.caller.send(&p).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = tokio::time::timeout(WAIT, s.browser.received.recv())
        .await
        .expect("audio after a re-bridge")
        .expect("track open");
    assert_eq!(r.payload_type, 0);
    // A bad answer is refused with a clear event, not a panic.
    s.media.send(MediaCommand::WebRtcAnswer {
        leg: 99,
        fork: 0,
        sdp: "garbage".into(),
    });
    let ev = next_event(&mut s.events, |e| {
        matches!(e, MediaEvent::WebRtcFailed { .. })
    })
    .await;
    assert!(
        matches!(ev, MediaEvent::WebRtcFailed { leg: 99, .. }),
        "{ev:?}"
    );
    s.browser.close().await;
    s.media.shutdown();
}

/// A STUN server on loopback: answers each Binding request with `mapped` as the
/// XOR-MAPPED-ADDRESS (a public address, as a NAT would show it), counting the requests.
async fn stun_server(mapped: SocketAddr) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use rtc::stun::message::{Message, Setter, BINDING_REQUEST, BINDING_SUCCESS};
    use rtc::stun::xoraddr::XorMappedAddress;
    let socket = UdpSocket::bind((LOCAL, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = asked.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let mut req = Message::new();
            if req.unmarshal_binary(&buf[..n]).is_err() || req.typ != BINDING_REQUEST {
                continue;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let raw = {
                let mut resp = Message::new();
                let setters: Vec<Box<dyn Setter>> = vec![
                    Box::new(req.transaction_id),
                    Box::new(BINDING_SUCCESS),
                    Box::new(XorMappedAddress {
                        ip: mapped.ip(),
                        port: mapped.port(),
                    }),
                ];
                resp.build(&setters).unwrap();
                resp.raw
            };
            let _ = socket.send_to(&raw, from).await;
        }
    });
    (addr, asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_carry_a_server_reflexive_candidate_from_the_stun_server() {
    let public: SocketAddr = "203.0.113.7:61234".parse().unwrap();
    let (stun, asked) = stun_server(public).await;
    let (media, mut events, _gw) = start_media(vec![
        IceServer {
            urls: vec![format!("stun:{stun}")],
            ..Default::default()
        },
        // TURN is for the browsers: the switch allocates no relay.
        IceServer {
            urls: vec!["turn:turn.invalid:3478".into()],
            username: "u".into(),
            credential: "p".into(),
        },
    ]);
    let (sdp, relay) = offering_leg(&media, &mut events, 7, free_udp_port()).await;
    assert!(
        asked.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "STUN asked"
    );
    let srflx = sdp
        .lines()
        .find(|l| l.contains("typ srflx"))
        .unwrap_or_else(|| panic!("no server-reflexive candidate:\n{sdp}"));
    assert!(
        srflx.contains("203.0.113.7 61234"),
        "the mapped address: {srflx}"
    );
    assert!(
        srflx.contains(&format!("raddr {} rport {}", relay.ip(), relay.port())),
        "related to the host candidate's socket: {srflx}"
    );
    assert!(
        sdp.lines()
            .any(|l| l.contains("typ host") && l.contains(&relay.port().to_string())),
        "the host candidate stays:\n{sdp}"
    );
    assert!(
        !sdp.contains("typ relay"),
        "no TURN relay of our own:\n{sdp}"
    );
    media.send(MediaCommand::Close { leg: 7 });
    media.shutdown();
}
