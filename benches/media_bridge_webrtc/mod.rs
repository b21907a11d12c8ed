//! The WebRTC case of `media_bridge`: N browser-side legs bridged in the media plane to N plain
//! RTP callers, both sides sending 20 ms PCMU frames. Each test browser is a peer of the
//! webrtc-rs stack (its sans-IO core, the `rtc` crate, which the async `webrtc` crate wraps)
//! that answers the switch's offer as a browser does: ICE, DTLS-SRTP, RTCP reports. One load
//! thread drives all browsers and callers (`load.rs`), so the load generator costs far less
//! than the switch it measures on the same two cores.
//!
//! Delay = the far end's arrival time (in this process, monotonic clock) minus the near end's
//! time just before its send; each frame carries its number in its first 4 payload bytes
//! (PCMU passes unchanged). Browser -> caller includes the test browser's own SRTP encryption
//! and the switch's decryption and leg; caller -> browser the leg, encryption and the test
//! browser's decryption: an upper bound of what ccswitch adds. Loss = frames sent in the
//! window that never arrived.
//!
//!   cargo bench --bench media_bridge -- --webrtc-only [--webrtc-pairs 200] [--seconds 10]

mod load;

use ccswitch::clock::Clock;
use ccswitch::engine::media::{Codec, MediaCommand, MediaEvent};
use ccswitch::media::prompts::PromptSet;
use ccswitch::media::runtime::{MediaConfig, MediaHandle, RuntimeOptions};
use ccswitch::media::webrtc::peer::{Peer, PeerEvent, Role};
use ccswitch::media::webrtc::{WebRtcGateway, WebRtcSettings};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The media legs' UDP ports: two per pair from here (below the ephemeral range).
const LEG_PORT_BASE: u16 = 24_000;
/// The test browsers' ICE sockets: from here (below the ephemeral range too).
const BROWSER_PORT_BASE: u16 = 21_000;

/// Who waits for the offer of which leg.
type Waiting = HashMap<u64, oneshot::Sender<Result<(String, SocketAddr), String>>>;

pub struct Opts {
    pub pairs: usize,
    pub seconds: u64,
    pub workers: usize,
    pub realtime: bool,
    pub quick: bool,
}

fn percentile(sorted: &[f32], p: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs the case; returns false when the sanity floor is not met (nothing arrived, a leg
/// that could not be set up, a side that heard nothing).
pub fn run(o: &Opts) -> bool {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run_async(o))
}

async fn run_async(o: &Opts) -> bool {
    println!(
        "WebRTC case: {} browser legs (webrtc-rs peers) bridged to {} RTP callers, {} s",
        o.pairs, o.pairs, o.seconds
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let media = MediaHandle::start_with(
        MediaConfig {
            bind_ip: LOCAL,
            workers: o.workers,
        },
        RuntimeOptions {
            realtime_priority: if o.realtime {
                RuntimeOptions::default().realtime_priority
            } else {
                None
            },
        },
        Arc::new(PromptSet::new()),
        Clock::new(),
        tx.clone(),
    )
    .expect("media runtime");
    let base = 62_000u16;
    let gw = WebRtcGateway::new(WebRtcSettings {
        host_ip: LOCAL,
        port_min: base,
        port_max: base + 2 * o.pairs as u16 + 100,
        ice_servers: vec![],
    })
    .expect("WebRTC gateway");
    let _ = media.attach_webrtc(gw.clone());
    // Offers come back as events: route them to whoever waits for that leg.
    let waiting: Arc<Mutex<Waiting>> = Arc::default();
    {
        let waiting = waiting.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let (leg, r) = match ev {
                    MediaEvent::WebRtcOffer {
                        leg, sdp, relay, ..
                    } => (leg, Ok((sdp, relay))),
                    MediaEvent::WebRtcFailed { leg, reason, .. } => (leg, Err(reason)),
                    MediaEvent::OpenFailed { leg, reason } => {
                        println!("  leg {leg} did not open: {reason}");
                        continue;
                    }
                    _ => continue,
                };
                if let Some(w) = waiting.lock().expect("lock").remove(&leg) {
                    let _ = w.send(r);
                }
            }
        });
    }

    // The test browsers' side: its own certificate and ports.
    let browsers = WebRtcGateway::new(WebRtcSettings {
        host_ip: LOCAL,
        port_min: BROWSER_PORT_BASE,
        port_max: BROWSER_PORT_BASE + o.pairs as u16 + 100,
        ice_servers: vec![],
    })
    .expect("test browsers' gateway");
    let warmup = Duration::from_secs(1);
    let window = Duration::from_secs(o.seconds);
    let ctl = Arc::new(load::Control::default());
    let (pair_tx, pair_rx) = std::sync::mpsc::channel();
    let realtime = o.realtime;
    let loader = {
        let (ctl, total) = (ctl.clone(), o.pairs);
        std::thread::Builder::new()
            .name("webrtc-load".into())
            .spawn(move || {
                // Below the media workers' priority, as the RTP case's phones.
                if realtime {
                    let _ = super::set_fifo(5);
                }
                load::run(pair_rx, total, ctl, warmup, window)
            })
            .expect("load thread")
    };

    let setup_t0 = Instant::now();
    let mut set_up = 0usize;
    let mut failed = 0usize;
    // Set up in batches of 20 (as calls arrive, not all in one instant).
    for chunk in (0..o.pairs).collect::<Vec<_>>().chunks(20) {
        let mut handles = Vec::new();
        for &i in chunk {
            let (media, waiting, browsers) = (media.clone(), waiting.clone(), browsers.clone());
            handles.push(tokio::spawn(async move {
                let caller = UdpSocket::bind((LOCAL, 0)).map_err(|e| e.to_string())?;
                caller.set_nonblocking(true).map_err(|e| e.to_string())?;
                // The legs' ports come from a range below the ephemeral one, as the switch's
                // [rtp] range does: a port picked free and bound later could meanwhile be
                // taken by a socket bound to port 0 (a caller).
                let pa = LEG_PORT_BASE + 2 * i as u16;
                let pb = pa + 1;
                let (a, b) = (2 * i as u64 + 1, 2 * i as u64 + 2);
                media.send(MediaCommand::Open {
                    leg: a,
                    call_id: format!("c{i}"),
                    local_port: pa,
                    remote: Some(caller.local_addr().map_err(|e| e.to_string())?),
                    codec: Codec::Pcmu,
                    telephone_event_pt: Some(101),
                    inactivity_ms: 0,
                });
                caller.connect((LOCAL, pa)).map_err(|e| e.to_string())?;
                media.send(MediaCommand::Open {
                    leg: b,
                    call_id: format!("c{i}"),
                    local_port: pb,
                    remote: None,
                    codec: Codec::Pcmu,
                    telephone_event_pt: Some(101),
                    inactivity_ms: 0,
                });
                let (wtx, wrx) = oneshot::channel();
                waiting.lock().expect("lock").insert(b, wtx);
                media.send(MediaCommand::WebRtcOffer {
                    leg: b,
                    fork: 0,
                    rtp_port: pb,
                });
                let (sdp, relay) = tokio::time::timeout(Duration::from_secs(20), wrx)
                    .await
                    .map_err(|_| "no offer".to_string())?
                    .map_err(|_| "offer dropped".to_string())??;
                let mut browser = Peer::new(&browsers, 0, Role::Accept(sdp), Instant::now())?;
                let answer = browser
                    .take_events()
                    .into_iter()
                    .find_map(|e| match e {
                        PeerEvent::Sdp(sdp) => Some(sdp),
                        _ => None,
                    })
                    .ok_or("the test browser gave no answer")?;
                media.send(MediaCommand::WebRtcAnswer {
                    leg: b,
                    fork: 0,
                    sdp: answer,
                });
                media.send(MediaCommand::Update {
                    leg: b,
                    remote: Some(relay),
                    codec: Codec::Pcmu,
                    telephone_event_pt: Some(101),
                    send: true,
                });
                media.send(MediaCommand::Bridge { a, b });
                Ok::<_, String>(load::Pair { caller, browser })
            }));
        }
        for h in handles {
            match h.await {
                Ok(Ok(p)) => {
                    set_up += 1;
                    let _ = pair_tx.send(p);
                }
                Ok(Err(e)) => {
                    failed += 1;
                    println!("  setup failed: {e}");
                }
                Err(e) => {
                    failed += 1;
                    println!("  setup task failed: {e}");
                }
            }
        }
    }
    // ICE + DTLS of every pair before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ctl.connected.load(Ordering::Relaxed) < set_up && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected = ctl.connected.load(Ordering::Relaxed);
    println!(
        "  set up {set_up} pairs in {:.1} s ({failed} failed, {} not connected); {} WebRTC peers in the switch",
        setup_t0.elapsed().as_secs_f64(),
        set_up - connected.min(set_up),
        gw.peer_count()
    );
    let cpu0 = crate::cpu_ticks();
    let t0 = Instant::now();
    let _ = ctl.start.set(t0);
    let res = tokio::task::spawn_blocking(move || loader.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    // The whole process: the switch's side (media workers with their WebRTC peers) and the
    // bench's (its load thread) share these cores.
    let cpu1 = crate::cpu_ticks();
    let wall = t0.elapsed().as_secs_f64();
    // USER_HZ = 100 ticks per second: ticks / s = percent of one core.
    let pct = |ticks: u64| ticks as f64 / wall;
    println!(
        "  CPU while streaming ({wall:.1} s): process {:.0}% of one core, of which the switch's media workers (with the WebRTC peers) {:.0}%",
        pct(cpu1.0 - cpu0.0),
        pct(cpu1.1 - cpu0.1),
    );
    let mut ok = failed == 0 && connected >= set_up;
    for (name, d) in [
        ("caller -> browser", res.caller_to_browser),
        ("browser -> caller", res.browser_to_caller),
    ] {
        let mut delays = d.delays;
        delays.sort_by(f32::total_cmp);
        let lost = d.sent.saturating_sub(d.received);
        println!(
            "  {name}: sent {}, arrived {}, lost {lost} ({:.3}%); delay n={} p50 {:.0} us  p90 {:.0} us  p99 {:.0} us  p99.9 {:.0} us  max {:.0} us; {} deaf",
            d.sent,
            d.received,
            if d.sent > 0 { lost as f64 * 100.0 / d.sent as f64 } else { 0.0 },
            delays.len(),
            percentile(&delays, 0.5),
            percentile(&delays, 0.9),
            percentile(&delays, 0.99),
            percentile(&delays, 0.999),
            delays.last().copied().unwrap_or(f32::NAN),
            d.deaf,
        );
        if d.received == 0 || d.deaf > 0 {
            ok = false;
        }
    }
    let _ = o.quick;
    media.shutdown();
    ok
}
