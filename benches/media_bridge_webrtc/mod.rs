//! The WebRTC case of `media_bridge`: N browser-side legs (a webrtc-crate peer each, as a
//! browser would be: ICE, DTLS-SRTP, RTCP) bridged in the media plane to N plain RTP callers,
//! both sides sending 20 ms PCMU frames. Delay = the far end's arrival time (in this process,
//! monotonic clock) minus the near end's time just before its send; each frame carries its
//! number in its first 4 payload bytes (PCMU passes unchanged). Browser -> caller includes
//! the test browser's own SRTP encryption and the switch's decryption, relay hop and leg;
//! caller -> browser the leg, relay hop, encryption and the test browser's decryption: an
//! upper bound of what ccswitch adds. Loss = frames sent in the window that never arrived.
//!
//!   cargo bench --bench media_bridge -- --webrtc-only [--webrtc-pairs 200] [--seconds 10]

use ccswitch::clock::Clock;
use ccswitch::engine::media::{Codec, MediaCommand, MediaEvent};
use ccswitch::media::prompts::PromptSet;
use ccswitch::media::runtime::{MediaConfig, MediaHandle, RuntimeOptions};
use ccswitch::media::webrtc::client::BrowserPeer;
use ccswitch::media::webrtc::{WebRtcGateway, WebRtcSettings};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Send times kept per stream, indexed by frame number modulo this.
const RING: usize = 4096;
/// The media legs' UDP ports: two per pair from here (below the ephemeral range).
const LEG_PORT_BASE: u16 = 24_000;

/// Who waits for the offer of which leg.
type Waiting = HashMap<u64, oneshot::Sender<Result<(String, SocketAddr), String>>>;

pub struct Opts {
    pub pairs: usize,
    pub seconds: u64,
    pub workers: usize,
    pub realtime: bool,
    pub quick: bool,
}

struct Stream {
    /// ns since `t0` of each frame's send, by frame number % RING.
    sent_at: Vec<AtomicU64>,
    sent: AtomicU64,
    received: AtomicU64,
}

impl Stream {
    fn new() -> Arc<Stream> {
        Arc::new(Stream {
            sent_at: (0..RING).map(|_| AtomicU64::new(0)).collect(),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        })
    }
}

/// Frame `n`; byte 4 says whether it is in the measured window.
fn frame(n: u32, counted: bool) -> Vec<u8> {
    let mut p = vec![0x55u8; 160];
    p[..4].copy_from_slice(&n.to_be_bytes());
    p[4] = u8::from(counted);
    p
}

fn rtp(seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
    p.extend_from_slice(payload);
    p
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
        "WebRTC case: {} browser legs (webrtc-crate peers) bridged to {} RTP callers, {} s",
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
    let gw = WebRtcGateway::new(
        WebRtcSettings {
            host_ip: LOCAL,
            port_min: base,
            port_max: base + 2 * o.pairs as u16 + 100,
            ice_servers: vec![],
            media_ip: LOCAL,
        },
        tx,
        tokio::runtime::Handle::current(),
    );
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

    let setup_t0 = Instant::now();
    let mut pairs = Vec::new();
    let mut failed = 0usize;
    // Set up in batches of 20 (as calls arrive, not all in one instant).
    for chunk in (0..o.pairs).collect::<Vec<_>>().chunks(20) {
        let mut handles = Vec::new();
        for &i in chunk {
            let media = media.clone();
            let waiting = waiting.clone();
            handles.push(tokio::spawn(async move {
                let caller = UdpSocket::bind((LOCAL, 0))
                    .await
                    .map_err(|e| e.to_string())?;
                // The legs' ports come from a range below the ephemeral one, as the switch's
                // [rtp] range does: a port picked free and bound later could meanwhile be
                // taken by a socket bound to port 0 (a relay, a browser peer).
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
                caller
                    .connect((LOCAL, pa))
                    .await
                    .map_err(|e| e.to_string())?;
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
                let mut browser = BrowserPeer::new(SocketAddr::new(LOCAL, 0), &[]).await?;
                let answer = browser.answer(&sdp).await?;
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
                browser.connected(Duration::from_secs(20)).await?;
                Ok::<_, String>((caller, browser))
            }));
        }
        for h in handles {
            match h.await {
                Ok(Ok(p)) => pairs.push(p),
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
    println!(
        "  set up {} pairs in {:.1} s ({} failed); {} WebRTC peers in the switch",
        pairs.len(),
        setup_t0.elapsed().as_secs_f64(),
        failed,
        gw.peer_count()
    );

    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let ns = move || t0.elapsed().as_nanos() as u64;
    let warmup = Duration::from_secs(1);
    let window = Duration::from_secs(o.seconds);
    let stop_send = warmup + window;
    let delays_c2b: Arc<Mutex<Vec<f32>>> = Arc::default();
    let delays_b2c: Arc<Mutex<Vec<f32>>> = Arc::default();
    let mut tasks = Vec::new();
    let mut streams = Vec::new();
    for (i, (caller, mut browser)) in pairs.into_iter().enumerate() {
        let caller = Arc::new(caller);
        let mut rx = std::mem::replace(
            &mut browser.received,
            tokio::sync::mpsc::unbounded_channel().1,
        );
        let browser = Arc::new(browser);
        let c2b = Stream::new();
        let b2c = Stream::new();
        streams.push((c2b.clone(), b2c.clone()));
        // Stagger the 20 ms grids over the period.
        let offset = Duration::from_micros((i as u64 * 20_000 / o.pairs.max(1) as u64) % 20_000);
        // caller sends
        {
            let (caller, s) = (caller.clone(), c2b.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::from_std(t0 + offset),
                    Duration::from_millis(20),
                );
                for n in 0u32.. {
                    let at = tick.tick().await;
                    if at.into_std() - t0 > stop_send {
                        return;
                    }
                    let counted = at.into_std() - t0 >= warmup;
                    s.sent_at[n as usize % RING].store(ns(), Ordering::Relaxed);
                    let _ = caller
                        .send(&rtp(n as u16, n * 160, &frame(n, counted)))
                        .await;
                    if counted {
                        s.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        // browser sends
        {
            let (browser, s) = (browser.clone(), b2c.clone());
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::from_std(t0 + offset + Duration::from_millis(10)),
                    Duration::from_millis(20),
                );
                for n in 0u32.. {
                    let at = tick.tick().await;
                    if at.into_std() - t0 > stop_send {
                        return;
                    }
                    let counted = at.into_std() - t0 >= warmup;
                    s.sent_at[n as usize % RING].store(ns(), Ordering::Relaxed);
                    let _ = browser
                        .send(0, n as u16, n * 160, false, &frame(n, counted))
                        .await;
                    if counted {
                        s.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        // caller receives
        {
            let (caller, s, d) = (caller.clone(), b2c.clone(), delays_b2c.clone());
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let end = t0 + stop_send + Duration::from_millis(500);
                while let Ok(Ok(n)) = tokio::time::timeout_at(
                    tokio::time::Instant::from_std(end),
                    caller.recv(&mut buf),
                )
                .await
                {
                    let now = ns();
                    if n < 17 || buf[16] != 1 {
                        continue;
                    }
                    let k = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
                    let sent = s.sent_at[k as usize % RING].load(Ordering::Relaxed);
                    {
                        s.received.fetch_add(1, Ordering::Relaxed);
                        d.lock()
                            .expect("lock")
                            .push((now.saturating_sub(sent)) as f32 / 1000.0);
                    }
                }
            }));
        }
        // browser receives
        {
            let (s, d) = (c2b.clone(), delays_c2b.clone());
            tasks.push(tokio::spawn(async move {
                let end = t0 + stop_send + Duration::from_millis(500);
                while let Ok(Some(r)) =
                    tokio::time::timeout_at(tokio::time::Instant::from_std(end), rx.recv()).await
                {
                    if r.payload.len() < 5 || r.payload[4] != 1 {
                        continue;
                    }
                    let k = u32::from_be_bytes([
                        r.payload[0],
                        r.payload[1],
                        r.payload[2],
                        r.payload[3],
                    ]);
                    let sent = s.sent_at[k as usize % RING].load(Ordering::Relaxed);
                    let at = r.at.saturating_duration_since(t0).as_nanos() as u64;
                    {
                        s.received.fetch_add(1, Ordering::Relaxed);
                        d.lock()
                            .expect("lock")
                            .push(at.saturating_sub(sent) as f32 / 1000.0);
                    }
                }
            }));
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    // The whole process: the switch's side (gateway peers, relay, media workers) and the
    // bench's (its browser peers and callers) share these cores.
    let (user, sys) = cpu_seconds();
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "  process CPU while streaming: {:.1} s user + {:.1} s sys in {wall:.1} s = {:.0}% of one core",
        user - cpu0.0,
        sys - cpu0.1,
        (user - cpu0.0 + sys - cpu0.1) * 100.0 / wall
    );
    let mut ok = failed == 0;
    for (name, d, pick) in [
        ("caller -> browser", &delays_c2b, 0usize),
        ("browser -> caller", &delays_b2c, 1usize),
    ] {
        let mut d = d.lock().expect("lock").clone();
        d.sort_by(f32::total_cmp);
        let (sent, received, deaf) = streams.iter().fold((0, 0, 0), |(s, r, z), (a, b)| {
            let st = if pick == 0 { a } else { b };
            let rcv = st.received.load(Ordering::Relaxed);
            (
                s + st.sent.load(Ordering::Relaxed),
                r + rcv,
                z + usize::from(rcv == 0),
            )
        });
        let lost = sent.saturating_sub(received);
        println!(
            "  {name}: sent {sent}, arrived {received}, lost {lost} ({:.3}%); delay n={} p50 {:.0} us  p90 {:.0} us  p99 {:.0} us  p99.9 {:.0} us  max {:.0} us; {deaf} deaf",
            if sent > 0 { lost as f64 * 100.0 / sent as f64 } else { 0.0 },
            d.len(),
            percentile(&d, 0.5),
            percentile(&d, 0.9),
            percentile(&d, 0.99),
            percentile(&d, 0.999),
            d.last().copied().unwrap_or(f32::NAN),
        );
        if received == 0 || deaf > 0 {
            ok = false;
        }
    }
    let _ = o.quick;
    media.shutdown();
    ok
}

/// This process's (user, system) CPU seconds so far.
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}
