//! RTP pacing under load: starts the media runtime with N legs all playing looped hold music
//! to receivers on 127.0.0.1, which measure every leg's inter-packet gaps.
//!
//!   cargo bench --bench media_pacing -- [--quick] [--legs 2000] [--seconds 10] [--workers 2]
//!                                       [--no-rt]
//!
//! With `--quick`, or without `--bench` (as under `cargo test --benches` / `--all-targets`),
//! it runs a quick mode: 20 legs for 1 second, which also checks a sanity floor and exits 1
//! when the runtime sent nothing, nothing arrived, or a leg was never heard (never a timing
//! figure: those are printed, not judged). Pacing error = gap between consecutive packets of one leg
//! minus 20 ms; gaps spanning a lost packet are counted as loss, not as gaps. Arrival time is
//! the kernel's receive timestamp (SO_TIMESTAMPNS), so the figures describe the sender and
//! not this receiver's scheduling; the user-space arrival figures are printed alongside.

#![allow(clippy::disallowed_methods)] // a bench measures real time

use ccswitch::clock::Clock;
use ccswitch::engine::media::{Codec, MediaCommand, MediaEvent, PromptKey};
use ccswitch::media::prompts::load_prompts;
use ccswitch::media::runtime::{MediaConfig, MediaHandle, RuntimeOptions};
use ccswitch::proto::rtp;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    /// Quick mode: small defaults, and the sanity floor decides the exit status.
    quick: bool,
    legs: usize,
    seconds: u64,
    warmup: u64,
    workers: usize,
    receivers: usize,
    /// Normal scheduling for the workers instead of SCHED_FIFO (for comparison).
    no_rt: bool,
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
        legs: get("--legs").map_or(if full { 2000 } else { 20 }, |v| v as usize),
        seconds: get("--seconds").unwrap_or(if full { 10 } else { 1 }),
        warmup: get("--warmup").unwrap_or(if full { 2 } else { 1 }),
        workers: get("--workers").map_or(cores, |v| v as usize),
        receivers: get("--receivers").map_or(2, |v| v.max(1) as usize),
        no_rt: args.iter().any(|a| a == "--no-rt"),
    }
}

#[derive(Default)]
struct LegRx {
    last_seq: Option<u16>,
    last_kernel_ns: i128,
    last_user: Option<Instant>,
    packets: u64,
    lost: u64,
}

#[derive(Default)]
struct RxResult {
    kernel_err_us: Vec<f32>,
    user_err_us: Vec<f32>,
    packets: u64,
    lost: u64,
    legs: usize,
    no_timestamp: u64,
}

/// Enables kernel receive timestamps and a large receive buffer on the socket.
fn tune(socket: &UdpSocket) {
    let fd = socket.as_raw_fd();
    let on: libc::c_int = 1;
    let buf: libc::c_int = 4 << 20;
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

/// One datagram and its kernel timestamp (ns since the epoch), via recvmsg.
fn recv_stamped(socket: &UdpSocket, buf: &mut [u8]) -> Option<(usize, Option<i128>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: msghdr points at live buffers for the duration of the call; cmsg walking uses
    // the libc macros over the control buffer the kernel filled.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, 0);
        if n < 0 {
            return None;
        }
        let mut stamp = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                stamp = Some(i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        Some((n as usize, stamp))
    }
}

fn receiver(
    socket: UdpSocket,
    stop: Arc<AtomicBool>,
    measure_from: Instant,
    measure_to: Instant,
) -> RxResult {
    let mut legs: HashMap<u32, LegRx> = HashMap::new();
    let mut res = RxResult::default();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Some((n, kernel)) = recv_stamped(&socket, &mut buf) else {
            continue; // read timeout: check the stop flag
        };
        let user = Instant::now();
        let Ok(p) = rtp::parse(&buf[..n]) else {
            continue;
        };
        let measuring = user >= measure_from && user < measure_to;
        let leg = legs.entry(p.ssrc).or_default();
        let Some(kernel) = kernel else {
            res.no_timestamp += 1;
            continue;
        };
        if let Some(last) = leg.last_seq {
            let step = p.sequence.wrapping_sub(last);
            if measuring {
                leg.packets += 1;
                if step == 1 {
                    let k = (kernel - leg.last_kernel_ns) as f64 / 1000.0 - 20_000.0;
                    res.kernel_err_us.push(k as f32);
                    if let Some(u) = leg.last_user {
                        let u = user.duration_since(u).as_secs_f64() * 1e6 - 20_000.0;
                        res.user_err_us.push(u as f32);
                    }
                } else if step > 1 && step < 1000 {
                    leg.lost += u64::from(step - 1);
                }
            }
        }
        leg.last_seq = Some(p.sequence);
        leg.last_kernel_ns = kernel;
        leg.last_user = Some(user);
    }
    res.legs = legs.len();
    res.packets = legs.values().map(|l| l.packets).sum();
    res.lost = legs.values().map(|l| l.lost).sum();
    res
}

/// (process utime+stime, media worker threads utime+stime) in clock ticks (USER_HZ = 100).
fn cpu_ticks() -> (u64, u64) {
    fn ticks(stat: &str) -> Option<(String, u64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let comm = stat.get(open + 1..close)?.to_string();
        let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
        // After "pid (comm) ": state is field 3, utime 14, stime 15 (1-based).
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

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f32], p: f64) -> f32 {
    if sorted.is_empty() {
        return f32::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summarize(name: &str, errs: &mut [f32]) {
    for e in errs.iter_mut() {
        *e = e.abs();
    }
    errs.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  |gap - 20 ms| {name:<7} n={:<9} p50 {:>7.0} us  p99 {:>7.0} us  p99.9 {:>7.0} us  max {:>7.0} us",
        errs.len(),
        percentile(errs, 0.50),
        percentile(errs, 0.99),
        percentile(errs, 0.999),
        errs.last().copied().unwrap_or(f32::NAN),
    );
}

fn main() {
    let args = parse_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let prompts = match load_prompts(&dir, &["en".to_string()]) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("media_pacing: cannot load prompts: {e}");
            std::process::exit(1);
        }
    };
    let rss_before = rss_kb();
    let clock = Clock::new();
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
    let media =
        MediaHandle::start_with(cfg, opts, prompts, clock, events_tx).expect("start media runtime");

    let start = Instant::now();
    // Legs open over the first ~0.5 s; measurement starts after the warm-up.
    let measure_from = start + Duration::from_secs(args.warmup);
    let measure_to = measure_from + Duration::from_secs(args.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    let mut rx_addrs: Vec<SocketAddr> = Vec::new();
    for i in 0..args.receivers {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        tune(&socket);
        rx_addrs.push(socket.local_addr().expect("addr"));
        let stop = stop.clone();
        receivers.push(
            std::thread::Builder::new()
                .name(format!("bench-rx-{i}"))
                .spawn(move || receiver(socket, stop, measure_from, measure_to))
                .expect("spawn receiver"),
        );
    }

    for leg in 0..args.legs as u64 {
        media.send(MediaCommand::Open {
            leg,
            call_id: format!("bench-{leg}"),
            local_port: 0,
            remote: Some(rx_addrs[leg as usize % rx_addrs.len()]),
            codec: if leg % 2 == 0 {
                Codec::Pcmu
            } else {
                Codec::Pcma
            },
            telephone_event_pt: Some(101),
            inactivity_ms: 0,
        });
        media.send(MediaCommand::Play {
            leg,
            play_id: leg,
            prompts: vec![PromptKey {
                id: "hold_music".into(),
                lang: "en".into(),
            }],
            looped: true,
            barge_in: false,
        });
    }

    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let cpu0 = cpu_ticks();
    let stats0 = media.stats();
    let rss_running = rss_kb();
    std::thread::sleep(measure_to.saturating_duration_since(Instant::now()));
    let cpu1 = cpu_ticks();
    let stats1 = media.stats();

    stop.store(true, Ordering::Relaxed);
    let mut kernel = Vec::new();
    let mut user = Vec::new();
    let (mut packets, mut lost, mut legs_seen, mut no_ts) = (0, 0, 0, 0);
    for r in receivers {
        let r = r.join().expect("receiver thread");
        kernel.extend(r.kernel_err_us);
        user.extend(r.user_err_us);
        packets += r.packets;
        lost += r.lost;
        legs_seen += r.legs;
        no_ts += r.no_timestamp;
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
    let sent = stats1.packets_sent - stats0.packets_sent;
    let media_cpu = (cpu1.1 - cpu0.1) as f64 / 100.0;
    let process_cpu = (cpu1.0 - cpu0.0) as f64 / 100.0;
    println!(
        "media_pacing: legs={} workers={} real-time={} measured {} s after {} s warm-up (open failures {open_failed}, legs heard {legs_seen})",
        args.legs, args.workers, !args.no_rt, args.seconds, args.warmup
    );
    println!(
        "  packets sent {sent} ({:.0}/s), received {packets}, lost {lost} ({:.3}%), late frames {}, send errors {}, no kernel timestamp {no_ts}",
        sent as f64 / secs,
        if packets + lost > 0 { lost as f64 * 100.0 / (packets + lost) as f64 } else { 0.0 },
        stats1.late_frames - stats0.late_frames,
        stats1.send_errors - stats0.send_errors,
    );
    summarize("kernel", &mut kernel);
    summarize("user", &mut user);
    println!(
        "  CPU: media threads {:.1}% of one core ({:.2} us per packet sent), whole process incl. receivers {:.1}%",
        media_cpu * 100.0 / secs,
        if sent > 0 { media_cpu * 1e6 / sent as f64 } else { 0.0 },
        process_cpu * 100.0 / secs,
    );
    println!(
        "  RSS: {} KiB before legs, {} KiB running, {:.1} KiB per leg",
        rss_before,
        rss_running,
        rss_running.saturating_sub(rss_before) as f64 / args.legs.max(1) as f64
    );
    let problems = sanity(sent, packets, legs_seen, args.legs);
    if problems.is_empty() {
        println!("  sanity: packets sent and received, every leg heard");
    } else {
        println!("  sanity: FAILED: {}", problems.join("; "));
        if args.quick {
            std::process::exit(1);
        }
    }
}

/// A floor any working media plane clears on loopback however loaded the machine: something
/// sent, something received, no leg silent for the whole run. A leg a second late is still
/// heard; only a leg that never sends (or a total loss) fails.
fn sanity(sent: u64, received: u64, legs_heard: usize, legs: usize) -> Vec<String> {
    let mut problems = Vec::new();
    if sent == 0 {
        problems.push("the runtime sent no packets in the window".to_string());
    }
    if received == 0 {
        problems.push("no packets received in the window (total loss)".to_string());
    }
    if legs_heard < legs {
        problems.push(format!("{} of {legs} legs never heard", legs - legs_heard));
    }
    problems
}
