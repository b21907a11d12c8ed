//! Bridged-call relay under load: N pairs of "phones" on 127.0.0.1, each pair bridged
//! through two media legs, every phone sending 50 packets/s (20 ms G.711) to its leg.
//!
//!   cargo bench --bench media_bridge -- [--quick] [--pairs 1000] [--seconds 10] [--workers 2]
//!                                       [--same-codec] [--no-rt] [--phones-no-rt]
//!                                       [--sockets 16] [--receivers 2]
//!                                       [--webrtc-pairs 200] [--webrtc-only] [--no-webrtc]
//!
//! After the RTP case comes the WebRTC case (benches/media_bridge_webrtc): `--webrtc-pairs`
//! browser legs (webrtc-crate peers) bridged to as many RTP callers (2 in quick mode).
//!
//! The phones share `--sockets` UDP sockets and send/receive in batches (sendmmsg/recvmmsg)
//! so that the load generator, which runs on the same two cores, costs far less than the
//! relay it measures: phone i is socket i % sockets; its leg latches to that address, and
//! the receiver tells streams apart by the leg's source port.
//!
//! With `--quick`, or without `--bench` (as under `cargo test --benches` / `--all-targets`), it
//! runs a quick mode: 10 pairs for 1 second, which also checks a sanity floor and exits 1
//! when the phones sent nothing, nothing was relayed or arrived, or a phone heard nothing of
//! its partner (never a timing figure: delay and partial loss are printed, not judged).
//! By default every other pair is PCMU <-> PCMA (transcoded);
//! `--same-codec` makes all PCMU.
//!
//! Added relay delay = the far phone's kernel receive timestamp (SO_TIMESTAMPNS) minus the
//! near phone's CLOCK_REALTIME read just before its sendto: two loopback hops plus ccswitch.
//! Each packet carries its sequence number in the first 4 payload bytes, one nibble per byte,
//! using 16 byte values that stay distinct through transcoding, so the far phone can look up
//! the send time even though the relay rewrote the header. Loss = packets sent in the window
//! that never arrived.
//!
//! Then the 3-way mix case (supervisor listen / whisper / barge, `media::mix`): `--mixes`
//! conferences (default 200; 20 quick) of three legs in barge mode (the costliest: every leg
//! hears two others), each member sending one 20 ms PCMU/PCMA frame per period, every
//! listener pulling its frame and encoding it, for `--seconds` worth of 20 ms periods run
//! back to back on one thread: CPU per listener frame and the conferences one core could mix
//! in real time. Printed, never judged (the quick mode only checks every listener got audio).

#![allow(clippy::disallowed_methods)] // a bench measures real time

#[path = "media_bridge_webrtc/mod.rs"]
mod webrtc_case;

use ccswitch::clock::Clock;
use ccswitch::engine::media::{Codec, MediaCommand, MediaEvent};
use ccswitch::media::bridge::transcode;
use ccswitch::media::prompts::PromptSet;
use ccswitch::media::runtime::{MediaConfig, MediaHandle, RuntimeOptions};
use ccswitch::proto::rtp;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    /// Quick mode: small defaults, and the sanity floor decides the exit status.
    quick: bool,
    pairs: usize,
    seconds: u64,
    warmup: u64,
    workers: usize,
    sockets: usize,
    receivers: usize,
    same_codec: bool,
    no_rt: bool,
    /// Phone threads at normal priority (default: SCHED_FIFO 5, below the workers' 10, so
    /// CPU-bound neighbours on a shared machine do not stall the load itself).
    phones_no_rt: bool,
    webrtc_pairs: usize,
    webrtc_only: bool,
    no_webrtc: bool,
    /// Conferences in the 3-way mix case.
    mixes: usize,
}

fn parse_args() -> Args {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--quick");
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Args {
        quick: !full,
        pairs: get("--pairs").map_or(if full { 1000 } else { 10 }, |v| v.max(1) as usize),
        seconds: get("--seconds").unwrap_or(if full { 10 } else { 1 }).max(1),
        warmup: get("--warmup").unwrap_or(2),
        workers: get("--workers").map_or(cores, |v| v as usize),
        sockets: get("--sockets").map_or(16, |v| v.max(1) as usize),
        receivers: get("--receivers").map_or(2, |v| v.max(1) as usize),
        same_codec: args.iter().any(|a| a == "--same-codec"),
        no_rt: args.iter().any(|a| a == "--no-rt"),
        phones_no_rt: args.iter().any(|a| a == "--phones-no-rt"),
        webrtc_pairs: get("--webrtc-pairs")
            .map_or(if full { 200 } else { 2 }, |v| v.max(1) as usize),
        webrtc_only: args.iter().any(|a| a == "--webrtc-only"),
        no_webrtc: args.iter().any(|a| a == "--no-webrtc"),
        mixes: get("--mixes").map_or(if full { 200 } else { 20 }, |v| v.max(1) as usize),
    }
}

/// Send-time slots per stream (1.28 s of packets).
const RING: usize = 64;

/// 16 byte values per sending codec that stay distinct after transcoding, and the way back.
struct Nibbles {
    /// codes[codec] = the 16 byte values a phone of that codec sends.
    codes: [[u8; 16]; 2],
    /// back[src][dst][byte] = the nibble, for a byte received by a `dst` phone from `src`.
    back: [[[u8; 256]; 2]; 2],
}

fn ci(c: Codec) -> usize {
    match c {
        Codec::Pcmu => 0,
        Codec::Pcma => 1,
    }
}

impl Nibbles {
    fn new() -> Nibbles {
        let codecs = [Codec::Pcmu, Codec::Pcma];
        let mut codes = [[0u8; 16]; 2];
        let mut back = [[[0xffu8; 256]; 2]; 2];
        for src in codecs {
            let other = codecs[1 - ci(src)];
            let mut seen = [false; 256];
            let mut n = 0;
            // Loud values: both laws have distinct steps there.
            for b in (0..=255u8).rev() {
                if n == 16 {
                    break;
                }
                let mut t = [0u8];
                transcode(src, other, &[b], &mut t);
                if seen[usize::from(t[0])] {
                    continue;
                }
                seen[usize::from(t[0])] = true;
                codes[ci(src)][n] = b;
                back[ci(src)][ci(src)][usize::from(b)] = n as u8;
                back[ci(src)][ci(other)][usize::from(t[0])] = n as u8;
                n += 1;
            }
            assert_eq!(n, 16, "16 transcoding-safe codes");
        }
        Nibbles { codes, back }
    }

    fn write(&self, codec: Codec, seq: u16, out: &mut [u8]) {
        for (i, o) in out.iter_mut().take(4).enumerate() {
            *o = self.codes[ci(codec)][usize::from((seq >> (12 - 4 * i)) & 0xf)];
        }
    }

    fn read(&self, src: Codec, dst: Codec, payload: &[u8]) -> Option<u16> {
        let mut seq = 0u16;
        for &b in payload.get(..4)? {
            let n = self.back[ci(src)][ci(dst)][usize::from(b)];
            if n > 15 {
                return None;
            }
            seq = (seq << 4) | u16::from(n);
        }
        Some(seq)
    }
}

/// One phone: its socket (index), its codec, its leg's address, and the codec of the phone
/// it hears.
struct Phone {
    socket: usize,
    codec: Codec,
    peer_codec: Codec,
    leg: SocketAddr,
}

fn sockaddr(addr: SocketAddr) -> libc::sockaddr_in {
    let (ip, port) = match addr {
        SocketAddr::V4(a) => (*a.ip(), a.port()),
        SocketAddr::V6(_) => (std::net::Ipv4Addr::LOCALHOST, 0),
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    }
}

/// SCHED_FIFO at `priority` for the calling thread; false when not permitted.
fn set_fifo(priority: i32) -> bool {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pthread_self() is the calling thread; param is a valid sched_param.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}

fn realtime_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Enables kernel receive timestamps and a large receive buffer on the socket.
fn tune(socket: &UdpSocket) {
    let fd = socket.as_raw_fd();
    let on: libc::c_int = 1;
    let buf: libc::c_int = 1 << 20;
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid fd and option values of the declared size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size,
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&buf as *const libc::c_int).cast(),
            size,
        );
    }
}

struct Shared {
    phones: Vec<Phone>,
    sockets: Vec<UdpSocket>,
    /// Leg port -> leg (= phone) index.
    by_port: std::collections::HashMap<u16, usize>,
    /// send_ns[phone * RING + seq % RING]: when that phone sent that packet.
    send_ns: Vec<AtomicI64>,
    nibbles: Nibbles,
    /// Measurement window on CLOCK_REALTIME (by send time).
    from_ns: AtomicI64,
    to_ns: AtomicI64,
    sent_in_window: AtomicU64,
    send_errors: AtomicU64,
    stop: AtomicBool,
}

/// Sub-slots of the 20 ms period (100 us each): phones are spread over them, as independent
/// phones would be, instead of arriving in one burst per millisecond.
const PHASES: u64 = 200;

/// Sends every phone's packet at its phase of the 20 ms period, batched per socket.
fn sender(sh: Arc<Shared>) -> u64 {
    let n = sh.phones.len();
    let mut seq = vec![0u16; n];
    let per_phase = n.div_ceil(PHASES as usize) + 1;
    let mut bufs = vec![[0u8; rtp::HEADER_LEN + 160]; per_phase];
    let mut names = vec![sockaddr(SocketAddr::from(([127, 0, 0, 1], 0))); per_phase];
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(per_phase);
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(per_phase);
    let mut batch: Vec<usize> = Vec::with_capacity(per_phase);
    let start = Instant::now();
    let mut tick: u64 = 0;
    let mut skipped = 0;
    while !sh.stop.load(Ordering::Relaxed) {
        let due = start + Duration::from_micros(tick * 20_000 / PHASES);
        if let Some(left) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(left);
        } else if Instant::now() > due + Duration::from_millis(5) {
            // Behind: skip this slot rather than burst (counted, not measured).
            skipped += 1;
            tick += 1;
            continue;
        }
        let phase = (tick % PHASES) as usize;
        tick += 1;
        for sock in 0..sh.sockets.len() {
            batch.clear();
            let mut i = phase;
            while i < n {
                if sh.phones[i].socket == sock {
                    batch.push(i);
                }
                i += PHASES as usize;
            }
            if batch.is_empty() {
                continue;
            }
            for (k, &i) in batch.iter().enumerate() {
                let p = &sh.phones[i];
                let s = seq[i];
                seq[i] = s.wrapping_add(1);
                let packet = &mut bufs[k];
                let mut head = [0u8; rtp::HEADER_LEN];
                rtp::write_header(
                    &mut head,
                    false,
                    p.codec.payload_type(),
                    s,
                    u32::from(s) * 160,
                    i as u32,
                );
                packet[..rtp::HEADER_LEN].copy_from_slice(&head);
                let body = &mut packet[rtp::HEADER_LEN..];
                body.fill(sh.nibbles.codes[ci(p.codec)][0]);
                sh.nibbles.write(p.codec, s, body);
                names[k] = sockaddr(p.leg);
            }
            iovs.clear();
            msgs.clear();
            for buf in bufs.iter_mut().take(batch.len()) {
                iovs.push(libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                });
            }
            for (name, iov) in names.iter_mut().zip(iovs.iter_mut()) {
                // SAFETY: zeroed mmsghdr is a valid empty message; pointers set below.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_name = (name as *mut libc::sockaddr_in).cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                msgs.push(m);
            }
            // One send time for the batch: later messages in it are charged the time the
            // kernel took for the earlier ones (overstates the relay delay, never hides it).
            let now = realtime_ns();
            for &i in &batch {
                let s = seq[i].wrapping_sub(1);
                sh.send_ns[i * RING + usize::from(s) % RING].store(now, Ordering::Relaxed);
            }
            let mut off = 0;
            while off < msgs.len() {
                // SAFETY: msgs[off..] point at live buffers, names and iovecs.
                let r = unsafe {
                    libc::sendmmsg(
                        sh.sockets[sock].as_raw_fd(),
                        msgs[off..].as_mut_ptr(),
                        (msgs.len() - off) as u32,
                        0,
                    )
                };
                if r <= 0 {
                    sh.send_errors
                        .fetch_add((msgs.len() - off) as u64, Ordering::Relaxed);
                    break;
                }
                off += r as usize;
            }
            if now >= sh.from_ns.load(Ordering::Relaxed) && now < sh.to_ns.load(Ordering::Relaxed) {
                sh.sent_in_window.fetch_add(off as u64, Ordering::Relaxed);
            }
        }
    }
    skipped
}

#[derive(Default)]
struct RxResult {
    delays_us: Vec<f32>,
    received_in_window: u64,
    /// Per phone: packets of its partner that arrived in the window.
    per_phone: Vec<u64>,
    no_timestamp: u64,
    unreadable: u64,
}

/// Receives on sockets `first..` stepping by `step` via epoll and recvmmsg.
fn receiver(sh: Arc<Shared>, first: usize, step: usize) -> RxResult {
    const BATCH: usize = 64;
    let mut res = RxResult {
        per_phone: vec![0; sh.phones.len()],
        ..RxResult::default()
    };
    // SAFETY: plain epoll syscalls over sockets that outlive this thread (held by `sh`).
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    let mut i = first;
    while i < sh.sockets.len() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: valid fds and event.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, sh.sockets[i].as_raw_fd(), &mut ev) };
        i += step;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut bufs = vec![[0u8; 512]; BATCH];
    let mut controls = vec![[0u64; 8]; BATCH];
    let mut names = vec![sockaddr(SocketAddr::from(([127, 0, 0, 1], 0))); BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    while !sh.stop.load(Ordering::Relaxed) {
        // SAFETY: the buffer holds events.len() entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 100) };
        for ev in events.iter().take(n.max(0) as usize) {
            let sock = &sh.sockets[ev.u64 as usize];
            loop {
                let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
                    .map(|k| {
                        // SAFETY: zeroed mmsghdr is valid; pointers set to live buffers.
                        let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                        m.msg_hdr.msg_name = (&mut names[k] as *mut libc::sockaddr_in).cast();
                        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                        m.msg_hdr.msg_iov = &mut iovs[k];
                        m.msg_hdr.msg_iovlen = 1;
                        m.msg_hdr.msg_control = controls[k].as_mut_ptr().cast();
                        m.msg_hdr.msg_controllen = std::mem::size_of_val(&controls[k]) as _;
                        m
                    })
                    .collect();
                // SAFETY: msgs point at live buffers for the call.
                let got = unsafe {
                    libc::recvmmsg(
                        sock.as_raw_fd(),
                        msgs.as_mut_ptr(),
                        BATCH as u32,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if got <= 0 {
                    break;
                }
                for (k, m) in msgs.iter().take(got as usize).enumerate() {
                    let mut stamp = None;
                    // SAFETY: walking the control buffer the kernel filled for this message.
                    unsafe {
                        let mut cmsg = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                        while !cmsg.is_null() {
                            if (*cmsg).cmsg_level == libc::SOL_SOCKET
                                && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                            {
                                let ts: libc::timespec =
                                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                                stamp = Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
                            }
                            cmsg = libc::CMSG_NXTHDR(&m.msg_hdr, cmsg);
                        }
                    }
                    let Some(kernel) = stamp else {
                        res.no_timestamp += 1;
                        continue;
                    };
                    let from = u16::from_be(names[k].sin_port);
                    let len = (m.msg_len as usize).min(bufs[k].len());
                    let (Some(&leg), Ok(pkt)) =
                        (sh.by_port.get(&from), rtp::parse(&bufs[k][..len]))
                    else {
                        res.unreadable += 1;
                        continue;
                    };
                    // Leg `leg` sends to phone `leg` what phone `leg ^ 1` sent.
                    let (me, partner) = (&sh.phones[leg], leg ^ 1);
                    let Some(seq) = sh.nibbles.read(me.peer_codec, me.codec, &pkt.payload) else {
                        res.unreadable += 1;
                        continue;
                    };
                    let sent = sh.send_ns[partner * RING + usize::from(seq) % RING]
                        .load(Ordering::Relaxed);
                    if sent >= sh.from_ns.load(Ordering::Relaxed)
                        && sent < sh.to_ns.load(Ordering::Relaxed)
                    {
                        res.received_in_window += 1;
                        res.per_phone[leg] += 1;
                        res.delays_us.push(((kernel - sent) as f64 / 1000.0) as f32);
                    }
                }
                if (got as usize) < BATCH {
                    break;
                }
            }
        }
    }
    // SAFETY: our own epoll fd.
    unsafe { libc::close(ep) };
    res
}

/// (process utime+stime, media worker threads utime+stime) in clock ticks (USER_HZ = 100).
fn cpu_ticks() -> (u64, u64) {
    fn ticks(stat: &str) -> Option<(String, u64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat.get(open + 1..close)?.to_string();
        let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some((comm, utime + stime))
    }
    let process = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| ticks(&s))
        .map_or(0, |t| t.1);
    let mut media = 0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Some((comm, n)) = std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| ticks(&s))
            {
                if comm.starts_with("ccswitch-media") {
                    media += n;
                }
            }
        }
    }
    (process, media)
}

fn percentile(sorted: &[f32], p: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn webrtc(args: &Args) -> bool {
    webrtc_case::run(&webrtc_case::Opts {
        pairs: args.webrtc_pairs,
        seconds: args.seconds,
        workers: args.workers,
        realtime: !args.no_rt,
        quick: args.quick,
    })
}

fn main() {
    let args = parse_args();
    if args.webrtc_only {
        let ok = webrtc(&args);
        if !ok {
            println!("  sanity: FAILED (WebRTC case)");
            if args.quick {
                std::process::exit(1);
            }
        }
        return;
    }
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = MediaConfig {
        bind_ip: "127.0.0.1".parse().expect("literal address"),
        workers: args.workers,
    };
    let opts = RuntimeOptions {
        realtime_priority: if args.no_rt {
            None
        } else {
            RuntimeOptions::default().realtime_priority
        },
    };
    let media = MediaHandle::start_with(
        cfg,
        opts,
        Arc::new(PromptSet::new()),
        Clock::new(),
        events_tx,
    )
    .expect("start media runtime");

    // The phone sockets bind first, so the ports picked for the legs cannot be theirs.
    let legs = 2 * args.pairs;
    let sockets: Vec<UdpSocket> = (0..args.sockets)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind phone socket");
            s.set_nonblocking(true).expect("nonblocking");
            tune(&s);
            s
        })
        .collect();
    // Ports for the legs: picked free, then released for the legs to bind.
    let holders: Vec<UdpSocket> = (0..legs)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let ports: Vec<u16> = holders
        .iter()
        .map(|s| s.local_addr().expect("addr").port())
        .collect();
    drop(holders);
    // Phone 2p is pair p's caller (PCMU), 2p+1 its agent (PCMA on odd pairs unless
    // --same-codec). Leg i serves phone i.
    let codec_of = |i: usize| {
        if i % 2 == 1 && (i / 2) % 2 == 1 && !args.same_codec {
            Codec::Pcma
        } else {
            Codec::Pcmu
        }
    };
    let mut phones = Vec::new();
    let mut by_port = std::collections::HashMap::new();
    for (i, &port) in ports.iter().enumerate() {
        let socket = i % sockets.len();
        let leg: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
        media.send(MediaCommand::Open {
            leg: i as u64,
            call_id: format!("bench-{}", i / 2),
            local_port: port,
            remote: Some(sockets[socket].local_addr().expect("addr")),
            codec: codec_of(i),
            telephone_event_pt: Some(101),
            inactivity_ms: 0,
        });
        by_port.insert(port, i);
        phones.push(Phone {
            socket,
            codec: codec_of(i),
            peer_codec: codec_of(i ^ 1),
            leg,
        });
    }
    for p in 0..args.pairs as u64 {
        media.send(MediaCommand::Bridge {
            a: 2 * p,
            b: 2 * p + 1,
        });
    }

    let sh = Arc::new(Shared {
        phones,
        sockets,
        by_port,
        send_ns: (0..legs * RING).map(|_| AtomicI64::new(0)).collect(),
        nibbles: Nibbles::new(),
        from_ns: AtomicI64::new(i64::MAX),
        to_ns: AtomicI64::new(i64::MAX),
        sent_in_window: AtomicU64::new(0),
        send_errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let mut receivers = Vec::new();
    for r in 0..args.receivers.min(args.sockets) {
        let sh = sh.clone();
        let step = args.receivers.min(args.sockets);
        let rt = !args.phones_no_rt;
        receivers.push(
            std::thread::Builder::new()
                .name(format!("bench-rx-{r}"))
                .spawn(move || {
                    if rt {
                        set_fifo(5);
                    }
                    receiver(sh, r, step)
                })
                .expect("spawn receiver"),
        );
    }
    let sender_thread = {
        let sh = sh.clone();
        let rt = !args.phones_no_rt;
        std::thread::Builder::new()
            .name("bench-tx".into())
            .spawn(move || {
                if rt {
                    set_fifo(5);
                }
                sender(sh)
            })
            .expect("spawn sender")
    };

    std::thread::sleep(Duration::from_secs(args.warmup));
    let window = args.seconds as i64 * 1_000_000_000;
    let from = realtime_ns();
    sh.to_ns.store(from + window, Ordering::Relaxed);
    sh.from_ns.store(from, Ordering::Relaxed);
    let cpu0 = cpu_ticks();
    let stats0 = media.stats();
    std::thread::sleep(Duration::from_secs(args.seconds));
    let cpu1 = cpu_ticks();
    let stats1 = media.stats();
    // Let the last packets of the window arrive.
    std::thread::sleep(Duration::from_millis(300));
    sh.stop.store(true, Ordering::Relaxed);
    let skipped = sender_thread.join().expect("sender");
    let mut delays = Vec::new();
    let (mut received, mut no_ts, mut unreadable) = (0, 0, 0);
    let mut per_phone = vec![0u64; legs];
    for r in receivers {
        let r = r.join().expect("receiver");
        delays.extend(r.delays_us);
        for (total, n) in per_phone.iter_mut().zip(&r.per_phone) {
            *total += n;
        }
        received += r.received_in_window;
        no_ts += r.no_timestamp;
        unreadable += r.unreadable;
    }
    let mut open_failed = 0;
    while let Ok(ev) = events_rx.try_recv() {
        if let MediaEvent::OpenFailed { reason, .. } = ev {
            open_failed += 1;
            if open_failed == 1 {
                eprintln!("first OpenFailed: {reason}");
            }
        }
    }
    media.shutdown();

    let secs = args.seconds as f64;
    let sent = sh.sent_in_window.load(Ordering::Relaxed);
    let lost = sent.saturating_sub(received);
    let relayed = stats1.packets_relayed - stats0.packets_relayed;
    let media_cpu = (cpu1.1 - cpu0.1) as f64 / 100.0;
    let process_cpu = (cpu1.0 - cpu0.0) as f64 / 100.0;
    delays.sort_by(|a, b| a.total_cmp(b));
    println!(
        "media_bridge: pairs={} legs={} workers={} real-time={} phones real-time={} phone sockets={} transcoding={} measured {} s after {} s warm-up (open failures {open_failed})",
        args.pairs,
        legs,
        args.workers,
        !args.no_rt,
        !args.phones_no_rt,
        args.sockets,
        if args.same_codec { "none" } else { "every other pair" },
        args.seconds,
        args.warmup,
    );
    println!(
        "  phones sent {sent} ({:.0}/s), arrived {received}, lost {lost} ({:.3}%); relayed {relayed} ({:.0}/s); relay send errors {}; phone send errors {}; sender skipped ticks {skipped}; no timestamp {no_ts}; unreadable {unreadable}",
        sent as f64 / secs,
        if sent > 0 { lost as f64 * 100.0 / sent as f64 } else { 0.0 },
        relayed as f64 / secs,
        stats1.send_errors - stats0.send_errors,
        sh.send_errors.load(Ordering::Relaxed),
    );
    println!(
        "  added delay (far kernel rx - near send) n={} p50 {:.0} us  p90 {:.0} us  p99 {:.0} us  p99.9 {:.0} us  max {:.0} us",
        delays.len(),
        percentile(&delays, 0.50),
        percentile(&delays, 0.90),
        percentile(&delays, 0.99),
        percentile(&delays, 0.999),
        delays.last().copied().unwrap_or(f32::NAN),
    );
    println!(
        "  CPU: media threads {:.1}% of one core ({:.2} us per relayed packet), whole process incl. phones {:.1}%",
        media_cpu * 100.0 / secs,
        if relayed > 0 { media_cpu * 1e6 / relayed as f64 } else { 0.0 },
        process_cpu * 100.0 / secs,
    );
    let deaf = per_phone.iter().filter(|n| **n == 0).count();
    let mut problems = sanity(sent, relayed, received, deaf, legs);
    if !args.no_webrtc && !webrtc(&args) {
        problems.push("WebRTC case: a pair failed to set up or a side heard nothing".into());
    }
    problems.extend(mix_case(&args));
    if problems.is_empty() {
        println!("  sanity: packets sent, relayed and received, every phone heard its partner");
    } else {
        println!("  sanity: FAILED: {}", problems.join("; "));
        if args.quick {
            std::process::exit(1);
        }
    }
}

/// A floor any working relay clears on loopback however loaded the machine: something sent,
/// relayed and received, and every phone heard some of its partner's packets in the window.
/// Partial loss and delay are figures (a late packet counts as lost here), so not judged.
fn sanity(sent: u64, relayed: u64, received: u64, deaf: usize, phones: usize) -> Vec<String> {
    let mut problems = Vec::new();
    if sent == 0 {
        problems.push("the phones sent no packets in the window".to_string());
    }
    if relayed == 0 {
        problems.push("the media plane relayed no packets".to_string());
    }
    if received == 0 {
        problems.push("no packets arrived (total loss)".to_string());
    }
    if deaf > 0 {
        problems.push(format!(
            "{deaf} of {phones} phones heard nothing of their partner"
        ));
    }
    problems
}

/// The 3-way mix case (module docs): CPU per listener frame of decode + sum + saturate +
/// encode, and the conferences one core mixes in real time. Problems for the sanity line.
fn mix_case(args: &Args) -> Vec<String> {
    use ccswitch::engine::media::MonitorMode;
    use ccswitch::media::mix::{Mixer, FRAME};
    use ccswitch::proto::g711;
    let n = args.mixes;
    let periods = args.seconds * 50;
    let mut mixer = Mixer::default();
    let mut frames: Vec<(Codec, Vec<u8>)> = Vec::new();
    for c in 0..n {
        let base = (c as u64) * 3;
        mixer.start([base, base + 1, base + 2], MonitorMode::Barge);
        for m in 0..3u64 {
            let codec = if (c + m as usize) % 2 == 0 {
                Codec::Pcmu
            } else {
                Codec::Pcma
            };
            let hz = 500.0 + 300.0 * m as f64;
            let pcm: Vec<i16> = (0..FRAME)
                .map(|i| (8000.0 * (i as f64 * hz * std::f64::consts::TAU / 8000.0).sin()) as i16)
                .collect();
            let mut bytes = Vec::new();
            g711::encode(codec, &pcm, &mut bytes);
            frames.push((codec, bytes));
        }
    }
    let mut out = [0i16; FRAME];
    let mut packet = vec![0u8; FRAME];
    let (mut pulled, mut silent) = (0u64, 0u64);
    let cpu0 = cpu_ticks();
    let t0 = Instant::now();
    for _ in 0..periods {
        for (leg, (codec, bytes)) in frames.iter().enumerate() {
            mixer.push(leg as u64, *codec, bytes);
        }
        for (leg, (codec, _)) in frames.iter().enumerate() {
            if mixer.pull(leg as u64, &mut out) {
                pulled += 1;
                let enc = match codec {
                    Codec::Pcmu => g711::encode_ulaw,
                    Codec::Pcma => g711::encode_alaw,
                };
                for (b, s) in packet.iter_mut().zip(out.iter()) {
                    *b = enc(*s);
                }
                std::hint::black_box(&packet);
            } else {
                silent += 1;
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ticks();
    let cpu = (cpu1.0 - cpu0.0) as f64 / 100.0;
    let frames_total = (pulled + silent).max(1);
    let per_frame_us = wall * 1e6 / frames_total as f64;
    // One listener frame every 20 ms per leg, three legs per conference.
    let capacity = 20_000.0 / (3.0 * per_frame_us);
    println!(
        "media_bridge 3-way mix: {n} barge conferences ({} legs, PCMU/PCMA mixed), {periods} periods of 20 ms back to back: {:.2} us per listener frame (decode 2 sources + sum + saturate + encode), wall {:.3} s, process CPU {:.2} s; one core mixes ~{capacity:.0} conferences in real time; frames with audio {pulled}, without {silent}",
        3 * n,
        per_frame_us,
        wall,
        cpu,
    );
    let mut problems = Vec::new();
    // Each queue primes on its second frame: only the first period is silent.
    if silent > 3 * n as u64 {
        problems.push(format!(
            "the 3-way mix gave {silent} silent listener frames (want at most {})",
            3 * n
        ));
    }
    problems
}
