//! The WebRTC case's load generator: ONE thread drives every test browser (a sans-IO `rtc`
//! peer each, answering the switch's offer as a browser does: ICE, DTLS-SRTP, RTCP reports)
//! and every RTP caller, with one epoll set and a send schedule. As in the RTP case, the load
//! generator runs on the same two cores as the switch, so it has to cost far less than what it
//! measures: a task per socket and per timer (the async `webrtc` crate's way) cost more CPU
//! than the switch itself and put its own scheduling delays into the figures. For the same
//! reason arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS, CLOCK_REALTIME)
//! on the caller's and the browser's sockets, send times CLOCK_REALTIME read just before the
//! send: the load thread's own wait for a core is not counted as the switch's delay.

use ccswitch::media::webrtc::peer::{Peer, PeerEvent};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Send times kept per stream, indexed by frame number modulo this.
const RING: usize = 4096;
/// Every browser's timers (RTCP reports, ICE keepalives, DTLS retransmissions) this often.
const TICK: Duration = Duration::from_millis(20);
const CALLER: u64 = 1 << 32;

/// One call: the caller's plain RTP socket (connected to its leg) and the browser's peer.
pub struct Pair {
    pub caller: UdpSocket,
    pub browser: Peer,
}

/// What the main thread and the load thread share.
#[derive(Default)]
pub struct Control {
    /// Browsers whose ICE + DTLS are up.
    pub connected: AtomicUsize,
    /// Streaming starts here (set once every pair is up); the window is `warmup..warmup+window`.
    pub start: OnceLock<Instant>,
    /// Stop now (setup failed).
    pub abort: AtomicBool,
}

/// One direction's figures.
#[derive(Default)]
pub struct Direction {
    pub sent: u64,
    pub received: u64,
    /// Streams (pairs) that received nothing.
    pub deaf: usize,
    /// Added delay of every counted frame, microseconds.
    pub delays: Vec<f32>,
}

#[derive(Default)]
pub struct Results {
    pub caller_to_browser: Direction,
    pub browser_to_caller: Direction,
}

struct Stream {
    /// CLOCK_REALTIME ns of each frame's send, by frame number % RING.
    sent_at: Vec<Option<i64>>,
    sent: u64,
    received: u64,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            sent_at: vec![None; RING],
            sent: 0,
            received: 0,
        }
    }
}

/// Frame `n` as RTP (PCMU, 160 bytes): its number in the first 4 payload bytes, byte 4 says
/// whether it is in the measured window.
fn rtp_frame(n: u32, counted: bool) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&(n as u16).to_be_bytes());
    p.extend_from_slice(&(n.wrapping_mul(160)).to_be_bytes());
    p.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
    let mut payload = [0x55u8; 160];
    payload[..4].copy_from_slice(&n.to_be_bytes());
    payload[4] = u8::from(counted);
    p.extend_from_slice(&payload);
    p
}

/// (frame number, counted) of a received RTP packet.
fn frame_of(rtp: &[u8]) -> Option<(u32, bool)> {
    let cc = usize::from(*rtp.first()? & 0x0f);
    let mut off = 12 + 4 * cc;
    if rtp.first()? & 0x10 != 0 {
        let len = u16::from_be_bytes([*rtp.get(off + 2)?, *rtp.get(off + 3)?]);
        off += 4 + 4 * usize::from(len);
    }
    let p = rtp.get(off..off + 5)?;
    Some((u32::from_be_bytes([p[0], p[1], p[2], p[3]]), p[4] == 1))
}

/// A frame arrived at `at` (kernel receive time, CLOCK_REALTIME ns).
fn record(stream: &mut Stream, rtp: &[u8], at: i64, delays: &mut Vec<f32>) {
    let Some((n, true)) = frame_of(rtp) else {
        return;
    };
    if let Some(sent) = stream.sent_at[n as usize % RING] {
        stream.received += 1;
        delays.push((at - sent).max(0) as f32 / 1000.0);
    }
}

/// One datagram from `socket` with its kernel receive time (CLOCK_REALTIME ns; SO_TIMESTAMPNS
/// must be on). None when nothing is queued.
fn recv_stamped(socket: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr, i64)> {
    let mut name: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; its pointers are set to live buffers for the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at live buffers.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return None;
    }
    let mut stamp = crate::realtime_ns();
    // SAFETY: walking the control buffer the kernel filled for this message.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = ts.tv_sec * 1_000_000_000 + ts.tv_nsec;
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let from = SocketAddr::from((
        name.sin_addr.s_addr.to_ne_bytes(),
        u16::from_be(name.sin_port),
    ));
    Some((n as usize, from, stamp))
}

/// Drives the pairs arriving on `pairs` until the window (plus 500 ms for the last frames)
/// is over. `pairs_total` pairs are expected; pair i sends at offset i/total of the 20 ms period.
pub fn run(
    pairs: Receiver<Pair>,
    pairs_total: usize,
    ctl: Arc<Control>,
    warmup: Duration,
    window: Duration,
) -> Results {
    // SAFETY: plain epoll syscalls over sockets this thread owns.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    let add = |fd: i32, token: u64| {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid fds and event.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    };
    let mut calls: Vec<Pair> = Vec::new();
    let mut c2b: Vec<Stream> = Vec::new();
    let mut b2c: Vec<Stream> = Vec::new();
    let mut up: Vec<bool> = Vec::new();
    let mut res = Results::default();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; 2048];
    let mut rtp = Vec::new();
    // (next send, stream index * 2 + direction): 0 caller sends, 1 browser sends.
    let mut schedule: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut frame_no: Vec<[u32; 2]> = Vec::new();
    let mut next_tick = Instant::now();
    let mut scheduled = false;
    loop {
        while let Ok(p) = pairs.try_recv() {
            let i = calls.len();
            crate::tune(&p.caller);
            crate::tune(p.browser.socket());
            add(p.browser.socket().as_raw_fd(), i as u64);
            add(p.caller.as_raw_fd(), CALLER | i as u64);
            calls.push(p);
            c2b.push(Stream::new());
            b2c.push(Stream::new());
            up.push(false);
            frame_no.push([0, 0]);
        }
        if ctl.abort.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if let (Some(&start), false) = (ctl.start.get(), scheduled) {
            scheduled = true;
            let total = pairs_total.max(1) as u32;
            for i in 0..calls.len() {
                let offset = Duration::from_millis(20) * i as u32 / total;
                schedule.push(Reverse((start + offset, 2 * i)));
                schedule.push(Reverse((
                    start + offset + Duration::from_millis(10),
                    2 * i + 1,
                )));
            }
        }
        let end = ctl.start.get().map(|&s| (s + warmup, s + warmup + window));
        if end.is_some_and(|(_, to)| now > to + Duration::from_millis(500)) {
            break;
        }
        // Sends due.
        while let Some(&Reverse((due, k))) = schedule.peek() {
            if due > now {
                break;
            }
            schedule.pop();
            let (i, dir) = (k / 2, k % 2);
            let Some((from, to)) = end else { break };
            if due > to {
                continue;
            }
            let n = frame_no[i][dir];
            frame_no[i][dir] += 1;
            let counted = due >= from;
            let pkt = rtp_frame(n, counted);
            let at = crate::realtime_ns();
            let (stream, ok) = if dir == 0 {
                (&mut c2b[i], calls[i].caller.send(&pkt).is_ok())
            } else {
                (
                    &mut b2c[i],
                    calls[i].browser.send_rtp(Instant::now(), &pkt).is_ok(),
                )
            };
            stream.sent_at[n as usize % RING] = Some(at);
            if counted && ok {
                stream.sent += 1;
            }
            schedule.push(Reverse((due + Duration::from_millis(20), k)));
        }
        if now >= next_tick {
            next_tick = now + TICK;
            for (c, up) in calls.iter_mut().zip(up.iter_mut()) {
                c.browser.tick(now);
                note_connected(&mut c.browser, up, &ctl);
            }
        }
        let next_send = schedule.peek().map(|r| r.0 .0).unwrap_or(next_tick);
        let wake = next_send.min(next_tick);
        let wait_ms = wake
            .saturating_duration_since(Instant::now())
            .as_micros()
            .div_ceil(1000) as i32;
        // SAFETY: the buffer holds events.len() entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, wait_ms) };
        for ev in events.iter().take(n.max(0) as usize) {
            let token = ev.u64;
            let i = (token & !CALLER) as usize;
            if token & CALLER != 0 {
                while let Some((len, _, at)) = recv_stamped(&calls[i].caller, &mut buf) {
                    record(
                        &mut b2c[i],
                        &buf[..len],
                        at,
                        &mut res.browser_to_caller.delays,
                    );
                }
            } else {
                for _ in 0..32 {
                    let Some((len, from, at)) = recv_stamped(calls[i].browser.socket(), &mut buf)
                    else {
                        break;
                    };
                    let browser = &mut calls[i].browser;
                    browser.handle_datagram(Instant::now(), &buf[..len], from, &mut rtp);
                    for pkt in rtp.drain(..) {
                        record(&mut c2b[i], &pkt, at, &mut res.caller_to_browser.delays);
                    }
                }
                note_connected(&mut calls[i].browser, &mut up[i], &ctl);
            }
        }
    }
    // SAFETY: our own epoll fd.
    unsafe { libc::close(ep) };
    for (streams, d) in [
        (&c2b, &mut res.caller_to_browser),
        (&b2c, &mut res.browser_to_caller),
    ] {
        d.sent = streams.iter().map(|s| s.sent).sum();
        d.received = streams.iter().map(|s| s.received).sum();
        d.deaf = streams.iter().filter(|s| s.received == 0).count();
    }
    for c in &mut calls {
        c.browser.close();
    }
    res
}

/// Counts the browser once when its ICE + DTLS come up.
fn note_connected(browser: &mut Peer, up: &mut bool, ctl: &Control) {
    for ev in browser.take_events() {
        if ev == PeerEvent::Connected && !*up {
            *up = true;
            ctl.connected.fetch_add(1, Ordering::Relaxed);
        }
    }
}
