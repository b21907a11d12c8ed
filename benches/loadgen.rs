//! Load generator: many real SIP callers with real RTP against the `ccswitch` binary on
//! 127.0.0.1, printing capacity figures (SIPp is not available here; this plays its role).
//!
//! Phase A (concurrency): ramps `--calls` calls (answer at once), each sending 20 ms PCMU
//! frames and RFC 4733 digits (English, then "repeat the menu" every 12 s so the IVR keeps
//! the call), holds them all for `--hold` s, then hangs up. Measures INVITE->180/200,
//! pacing of the RTP the switch sends (inter-arrival error against 20 ms), loss, switch CPU
//! and memory per call.
//! Phase B (rate): `--rate` new calls/s for `--rate-seconds` with the shipped one-ring answer
//! policy, short calls; counts three-ring compliance and failures.
//!
//!   cargo bench --bench loadgen -- [--quick] [--calls N] [--hold S] [--ramp R]
//!       [--rate R] [--rate-seconds S] [--rate-hold S] [--rings N] [--phase a|b|both]
//!
//! Without `--bench` on the command line (i.e. under `cargo test --all-targets`) it runs the
//! quick mode. The switch binary is $CCSWITCH_BIN, else the one cargo built for this
//! profile. Needs many file descriptors (2 per call here, ~2 per call in the switch): it
//! raises its own RLIMIT_NOFILE to the hard limit; `ulimit -n 65536` first for big runs.
//! RTP arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS), so the pacing
//! figures describe the switch, not this process's own scheduling delay. SIP latencies are
//! taken in this process and include its scheduling delay (an upper bound).
#![allow(clippy::disallowed_methods)] // a load generator measures wall-clock time on purpose

#[path = "../tests/e2e/sipwire.rs"]
mod sipwire;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{sleep_until, timeout, Instant};

#[derive(Clone, Debug)]
struct Opts {
    quick: bool,
    calls: usize,
    hold: f64,
    ramp: f64,
    rate: f64,
    rate_seconds: f64,
    rate_hold: f64,
    rings: u8,
    phase_a: bool,
    phase_b: bool,
    /// An already running SIP server to call instead of spawning the switch.
    target: Option<SocketAddr>,
}

const USAGE: &str = "loadgen [--quick] [--calls N] [--hold S] [--ramp CALLS_PER_S] [--rate R] \
[--rate-seconds S] [--rate-hold S] [--rings N] [--phase a|b|both] [--target ADDR]";

fn parse_opts() -> Result<Opts, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}\n");
        println!("  --quick            20 calls held 2 s; then 20 calls/s for 2 s (also the default without --bench)");
        println!("  --calls N          phase A concurrent calls (default 2000)");
        println!("  --hold S           phase A hold time once all are up (default 20)");
        println!("  --ramp R           phase A new calls per second while ramping (default 200)");
        println!("  --rate R           phase B new calls per second (default 300)");
        println!("  --rate-seconds S   phase B duration (default 10)");
        println!("  --rate-hold S      phase B talk time after answer (default 1)");
        println!("  --rings N          phase B answer_after_rings (default 1, as shipped)");
        println!("  --phase a|b|both   which phases to run (default both)");
        println!("  --target ADDR      call this SIP server instead of spawning ccswitch (no CPU/RSS figures)");
        println!("env: CCSWITCH_BIN (switch binary), RUST_LOG (passed to the switch)");
        std::process::exit(0);
    }
    let bench_mode = args.iter().any(|a| a == "--bench");
    let mut o = Opts {
        quick: !bench_mode,
        calls: 2000,
        hold: 20.0,
        ramp: 200.0,
        rate: 300.0,
        rate_seconds: 10.0,
        rate_hold: 1.0,
        rings: 1,
        phase_a: true,
        phase_b: true,
        target: None,
    };
    let mut explicit = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        let num = |s: String, name: &str| -> Result<f64, String> {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{name}: not a number: {s}"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--bench" => {}
            "--calls" => {
                o.calls = num(val(a)?, a)? as usize;
                explicit.push("calls");
            }
            "--hold" => {
                o.hold = num(val(a)?, a)?;
                explicit.push("hold");
            }
            "--ramp" => o.ramp = num(val(a)?, a)?.max(1.0),
            "--rate" => {
                o.rate = num(val(a)?, a)?;
                explicit.push("rate");
            }
            "--rate-seconds" => {
                o.rate_seconds = num(val(a)?, a)?;
                explicit.push("rate-seconds");
            }
            "--rate-hold" => o.rate_hold = num(val(a)?, a)?,
            "--target" => {
                let v = val(a)?;
                o.target = Some(
                    v.parse()
                        .map_err(|_| format!("--target: not ADDR:PORT: {v}"))?,
                );
            }
            "--rings" => o.rings = num(val(a)?, a)?.min(10.0) as u8,
            "--phase" => match val(a)?.as_str() {
                "a" => (o.phase_a, o.phase_b) = (true, false),
                "b" => (o.phase_a, o.phase_b) = (false, true),
                "both" => (o.phase_a, o.phase_b) = (true, true),
                other => return Err(format!("--phase: a, b or both, not {other}")),
            },
            // cargo test passes its own flags and filters to every target: ignore them.
            other => eprintln!("loadgen: ignoring argument {other:?}"),
        }
    }
    if o.quick {
        if !explicit.contains(&"calls") {
            o.calls = 20;
        }
        if !explicit.contains(&"hold") {
            o.hold = 2.0;
        }
        if !explicit.contains(&"rate") {
            o.rate = 20.0;
        }
        if !explicit.contains(&"rate-seconds") {
            o.rate_seconds = 2.0;
        }
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// The switch under test
// ---------------------------------------------------------------------------------------

struct SwitchProc {
    child: Child,
    sip: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
    _tmp: tempfile::TempDir,
    ring_cycle_ms: u64,
}

impl SwitchProc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tail(&self) -> String {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("loadgen: switch did not stop within 30 s of SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SwitchProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn switch_bin() -> PathBuf {
    std::env::var_os("CCSWITCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ccswitch")))
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn free_port() -> Result<u16, String> {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = udp.local_addr().map_err(|e| e.to_string())?;
        if std::net::TcpListener::bind(addr).is_ok() {
            return Ok(addr.port());
        }
    }
    Err("no free port".into())
}

/// Temp copy of config/ with the answer policy and call limit this phase needs.
fn start_switch(rings: u8, max_calls: usize) -> Result<SwitchProc, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::Builder::new()
        .prefix("ccswitch-loadgen-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let dir = tmp.path().join("config");
    copy_dir(&root.join("config"), &dir).map_err(|e| format!("copy config/: {e}"))?;
    #[cfg(unix)]
    {
        let _ = std::os::unix::fs::symlink(root.join("prompts"), tmp.path().join("prompts"));
    }
    let main = dir.join("ccswitch.toml");
    let text = std::fs::read_to_string(&main).map_err(|e| format!("{}: {e}", main.display()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", main.display()))?;
    let mut ring_cycle_ms = 6000;
    if let Some(answer) = table.get_mut("answer").and_then(|v| v.as_table_mut()) {
        if let Some(r) = answer.get("ring_cycle_ms").and_then(|v| v.as_integer()) {
            ring_cycle_ms = r.max(0) as u64;
        }
        answer.insert(
            "answer_after_rings".into(),
            toml::Value::Integer(rings.into()),
        );
    } else {
        return Err("config/ccswitch.toml has no [answer] table".into());
    }
    if let Some(sw) = table.get_mut("switch").and_then(|v| v.as_table_mut()) {
        let cur = sw
            .get("max_calls")
            .and_then(|v| v.as_integer())
            .unwrap_or(0);
        let want = (max_calls as i64).max(cur);
        sw.insert("max_calls".into(), toml::Value::Integer(want));
    }
    std::fs::write(&main, table.to_string()).map_err(|e| e.to_string())?;

    let sip_port = free_port()?;
    let http_port = free_port()?;
    let sip: SocketAddr = format!("127.0.0.1:{sip_port}")
        .parse()
        .map_err(|_| "addr")?;
    let db = format!("sqlite:{}?mode=rwc", tmp.path().join("load.db").display());
    let bin = switch_bin();
    let mut child = Command::new(&bin)
        .arg("run")
        .arg("--config")
        .arg(&dir)
        .args(["--sip-listen", &sip.to_string()])
        .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
        .args(["--database", &db])
        .args(["--rtp-ports", "20000-29999"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    let log = Arc::new(Mutex::new(VecDeque::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut told = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !told && line.contains("SIP listening") {
                told = true;
                let _ = tx.send(());
            }
            if let Ok(mut l) = sink.lock() {
                if l.len() >= 200 {
                    l.pop_front();
                }
                l.push_back(line);
            }
        }
    });
    let sw = SwitchProc {
        child,
        sip,
        log,
        _tmp: tmp,
        ring_cycle_ms,
    };
    if rx.recv_timeout(Duration::from_secs(20)).is_err() {
        return Err(format!(
            "{} did not log `SIP listening` within 20 s:\n{}",
            bin.display(),
            sw.tail()
        ));
    }
    Ok(sw)
}

/// (utime + stime) in seconds, and VmRSS in kB, of a process.
fn proc_usage(pid: u32) -> (f64, u64) {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After "(comm)": state is field 3, utime 14, stime 15 (1-based over the line).
            let ut: f64 = f.get(11)?.parse().ok()?;
            let st: f64 = f.get(12)?.parse().ok()?;
            Some((ut + st) / ticks)
        })
        .unwrap_or(0.0);
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    (cpu, rss)
}

fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

// ---------------------------------------------------------------------------------------
// One caller
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fail {
    Status(u16),
    Timeout,
    Socket,
    NoSdp,
}

#[derive(Debug, Default)]
struct CallResult {
    t180_ms: Option<f64>,
    t200_ms: Option<f64>,
    fail: Option<Fail>,
    ended_by_switch: bool,
    bye_ok: bool,
    rx_packets: u64,
    /// Packets of another SSRC (a stale stream to a reused port), not counted.
    foreign_packets: u64,
    expected_packets: u64,
    gap_err_ms: Vec<f32>,
}

struct Shared {
    switch: SocketAddr,
    /// Answered and not yet hung up.
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// INVITE sent and not yet finished (includes ringing calls).
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    seq: AtomicU64,
}

struct Dialog {
    ids: sipwire::CallIds,
    to_hdr: String,
    target: String,
    answer: sipwire::Answer,
}

async fn invite(
    sip: &UdpSocket,
    rtp_addr: SocketAddr,
    sh: &Shared,
    tag: u64,
    res: &mut CallResult,
    bound: Duration,
) -> Result<Dialog, Fail> {
    let local = sip.local_addr().map_err(|_| Fail::Socket)?;
    let uri = format!("sip:100@{}", sh.switch);
    let ids = sipwire::CallIds::new(tag, local, &uri, &format!("555{:07}", tag % 10_000_000));
    let branch = format!("z9hG4bKlg{tag:x}i");
    let msg = ids.invite(&branch, 1, rtp_addr);
    let start = Instant::now();
    let deadline = start + bound;
    let mut retx = Duration::from_millis(500);
    let mut next = start + retx;
    let mut provisional = false;
    tune_socket(sip);
    // Latency runs from just before the send to the kernel's receive stamp of the answer, so
    // a late wake-up of this task after the response arrived is not charged to the switch.
    let sent_ns = wall_ns(start);
    sip.send_to(&msg, sh.switch)
        .await
        .map_err(|_| Fail::Socket)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(Fail::Timeout);
        }
        let wake = if provisional {
            deadline
        } else {
            next.min(deadline)
        };
        match timeout(wake - now, recv_stamped(sip, &mut buf)).await {
            Err(_) => {
                if !provisional && Instant::now() >= next {
                    let _ = sip.send_to(&msg, sh.switch).await;
                    retx = (retx * 2).min(Duration::from_secs(4));
                    next = Instant::now() + retx;
                }
            }
            Ok(Err(_)) => return Err(Fail::Socket),
            Ok(Ok((n, stamp))) => {
                let Some(m) = sipwire::parse(&buf[..n]) else {
                    continue;
                };
                let Some(status) = m.status else { continue };
                if m.call_id() != Some(ids.call_id.as_str()) {
                    continue;
                }
                let ms = match stamp {
                    Some(at) => (at - sent_ns).max(0) as f64 / 1e6,
                    None => start.elapsed().as_secs_f64() * 1000.0,
                };
                if (180..190).contains(&status) && res.t180_ms.is_none() {
                    res.t180_ms = Some(ms);
                }
                if status < 200 {
                    provisional = true;
                    continue;
                }
                let to_hdr = m.header("to").unwrap_or("").to_string();
                if status >= 300 {
                    let _ = sip
                        .send_to(&ids.ack_non2xx(&to_hdr, 1, &branch), sh.switch)
                        .await;
                    return Err(Fail::Status(status));
                }
                res.t200_ms = Some(ms);
                let target = m.contact_uri().unwrap_or_else(|| uri.clone());
                let answer = sipwire::parse_answer(&m.body).ok_or(Fail::NoSdp)?;
                let ack = ids.ack_2xx(&target, &to_hdr, 1, &format!("z9hG4bKlg{tag:x}a"));
                let _ = sip.send_to(&ack, sh.switch).await;
                return Ok(Dialog {
                    ids,
                    to_hdr,
                    target,
                    answer,
                });
            }
        }
    }
}

/// Nanoseconds since the epoch now (fallback when the kernel gave no timestamp).
fn wall_ns(_since: Instant) -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Turns on kernel receive timestamps (SO_TIMESTAMPNS) and a larger receive buffer.
fn tune_socket(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let on: libc::c_int = 1;
    let buf: libc::c_int = 1 << 20;
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid fd and option values of the declared size.
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

/// One datagram and its kernel receive timestamp (ns since the epoch), without blocking.
fn recvmsg_stamped(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<i128>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: msghdr points at live buffers for the duration of the call; the cmsg walk uses
    // the libc macros over the control buffer the kernel filled.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
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
        Ok((n as usize, stamp))
    }
}

async fn recv_stamped(rtp: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, Option<i128>)> {
    use std::os::fd::AsRawFd;
    loop {
        rtp.readable().await?;
        match rtp.try_io(tokio::io::Interest::READABLE, || {
            recvmsg_stamped(rtp.as_raw_fd(), buf)
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

/// Talks until `until`: 20 ms frames out (with RFC 4733 digits at `digits` offsets),
/// arrival gaps in. Returns early if the switch sends BYE.
async fn talk(
    sip: &UdpSocket,
    rtp: &UdpSocket,
    d: &Dialog,
    sh: &Shared,
    until: Instant,
    digits: &[(f64, u8)],
    res: &mut CallResult,
) {
    let start = Instant::now();
    let ssrc = 0x10ad_0000u32 ^ (d.ids.local.port() as u32);
    let te = d.answer.telephone_event.unwrap_or(101);
    let mut tick: u64 = 0;
    let mut seq: u16 = 1;
    let mut pkt = Vec::with_capacity(200);
    let mut rbuf = vec![0u8; 2048];
    let mut sbuf = vec![0u8; 4096];
    let mut next_digit = 0usize;
    let mut event: Option<(u64, u8)> = None;
    let mut last_arrival: Option<(i128, u16)> = None;
    let mut first_seq: Option<u32> = None;
    let mut stream_ssrc: Option<u32> = None;
    let mut ext_last: u32 = 0;
    loop {
        let mut due = start + Duration::from_millis(20 * tick);
        if due >= until {
            break;
        }
        // Fell behind (a loaded machine): skip missed frames instead of bursting them,
        // as a phone would; the sequence number stays continuous.
        let late = Instant::now().saturating_duration_since(due);
        if late > Duration::from_millis(60) && event.is_none() {
            tick += late.as_millis() as u64 / 20;
            due = start + Duration::from_millis(20 * tick);
        }
        tokio::select! {
            _ = sleep_until(due) => {
                if event.is_none() && next_digit < digits.len() && tick >= (digits[next_digit].0 * 50.0) as u64 {
                    event = Some((tick, digits[next_digit].1));
                    next_digit += 1;
                }
                match event {
                    Some((t0, e)) => {
                        let i = tick - t0;
                        let payload = sipwire::rfc4733_payload(e, i >= 5, ((i.min(5) + 1) * 160) as u16);
                        sipwire::rtp_packet(&mut pkt, i == 0, te, seq, (t0 as u32).wrapping_mul(160), ssrc, &payload);
                        if i >= 7 {
                            event = None;
                        }
                    }
                    None => sipwire::rtp_packet(&mut pkt, tick == 0, d.answer.payload_type, seq,
                        (tick as u32).wrapping_mul(160), ssrc, &sipwire::ULAW_SILENCE),
                }
                let _ = rtp.send_to(&pkt, d.answer.rtp).await;
                seq = seq.wrapping_add(1);
                tick += 1;
            }
            r = recv_stamped(rtp, &mut rbuf) => {
                let Ok((n, stamp)) = r else { continue };
                // The kernel's receive time describes the switch's pacing; our own wake-up
                // time would add this process's scheduling delay.
                let now = stamp.unwrap_or_else(|| wall_ns(start));
                let Some(h) = sipwire::parse_rtp(&rbuf[..n]) else { continue };
                // Lock onto the call's stream, as a phone does: a stray packet from an earlier
                // call whose port this socket reuses must not count as this call's loss.
                match stream_ssrc {
                    None => stream_ssrc = Some(h.ssrc),
                    Some(s) if s != h.ssrc => { res.foreign_packets += 1; continue }
                    Some(_) => {}
                }
                res.rx_packets += 1;
                // Extended sequence number for loss counting across wrap-around.
                let ext = match first_seq {
                    None => { first_seq = Some(h.seq as u32); h.seq as u32 }
                    Some(_) => {
                        let cand = (ext_last & !0xffff) | h.seq as u32;
                        if cand + 0x8000 < ext_last { cand + 0x1_0000 }
                        else if cand > ext_last + 0x8000 && cand >= 0x1_0000 { cand - 0x1_0000 }
                        else { cand }
                    }
                };
                if let Some((t, s)) = last_arrival {
                    if h.seq == s.wrapping_add(1) {
                        let gap = (now - t) as f64 / 1e6;
                        res.gap_err_ms.push((gap - 20.0).abs() as f32);
                    }
                }
                ext_last = ext_last.max(ext);
                last_arrival = Some((now, h.seq));
            }
            r = sip.recv_from(&mut sbuf) => {
                let Ok((n, from)) = r else { continue };
                let Some(m) = sipwire::parse(&sbuf[..n]) else { continue };
                if m.method == "BYE" {
                    let _ = sip.send_to(&m.response(200, "OK"), from).await;
                    res.ended_by_switch = true;
                    break;
                }
                if m.status == Some(200) && m.cseq().map(|c| c.1).as_deref() == Some("INVITE") {
                    let ack = d.ids.ack_2xx(&d.target, &d.to_hdr, 1, "z9hG4bKlgreack");
                    let _ = sip.send_to(&ack, sh.switch).await;
                }
            }
        }
    }
    if let Some(f) = first_seq {
        res.expected_packets = (ext_last.saturating_sub(f) + 1) as u64;
    }
}

async fn bye(sip: &UdpSocket, d: &Dialog, sh: &Shared) -> bool {
    let branch = format!("z9hG4bKlgb{}", d.ids.local.port());
    let msg = d.ids.bye(&d.target, &d.to_hdr, 2, &branch);
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut retx = Duration::from_millis(500);
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        let _ = sip.send_to(&msg, sh.switch).await;
        let wait_until = (Instant::now() + retx).min(deadline);
        while let Ok(Ok((n, from))) =
            timeout(wait_until - Instant::now(), sip.recv_from(&mut buf)).await
        {
            let Some(m) = sipwire::parse(&buf[..n]) else {
                continue;
            };
            if m.method == "BYE" {
                // The switch hung up at the same moment: answer it, we are done.
                let _ = sip.send_to(&m.response(200, "OK"), from).await;
                return true;
            }
            if m.cseq().map(|c| c.1).as_deref() == Some("BYE") && m.status.unwrap_or(0) >= 200 {
                return m.status == Some(200);
            }
            if Instant::now() >= wait_until {
                break;
            }
        }
        retx = (retx * 2).min(Duration::from_secs(4));
    }
    false
}

/// A whole call: INVITE ... talk until `release_at` (or `hold` after answer) ... BYE.
async fn one_call(
    sh: Arc<Shared>,
    invite_bound: Duration,
    release_at: Option<Instant>,
    hold: Duration,
    digits: Vec<(f64, u8)>,
) -> CallResult {
    let now = sh.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    sh.max_in_flight.fetch_max(now, Ordering::Relaxed);
    let res = call_flow(&sh, invite_bound, release_at, hold, digits).await;
    sh.in_flight.fetch_sub(1, Ordering::Relaxed);
    res
}

async fn call_flow(
    sh: &Shared,
    invite_bound: Duration,
    release_at: Option<Instant>,
    hold: Duration,
    digits: Vec<(f64, u8)>,
) -> CallResult {
    let mut res = CallResult::default();
    let tag = sh.seq.fetch_add(1, Ordering::Relaxed) | ((std::process::id() as u64) << 32);
    let (sip, rtp) = match (
        UdpSocket::bind("127.0.0.1:0").await,
        UdpSocket::bind("127.0.0.1:0").await,
    ) {
        (Ok(s), Ok(r)) => (s, r),
        _ => {
            res.fail = Some(Fail::Socket);
            return res;
        }
    };
    tune_socket(&rtp);
    let Ok(rtp_addr) = rtp.local_addr() else {
        res.fail = Some(Fail::Socket);
        return res;
    };
    let d = match invite(&sip, rtp_addr, sh, tag, &mut res, invite_bound).await {
        Ok(d) => d,
        Err(f) => {
            res.fail = Some(f);
            return res;
        }
    };
    let now_active = sh.active.fetch_add(1, Ordering::Relaxed) + 1;
    sh.max_active.fetch_max(now_active, Ordering::Relaxed);
    let until = release_at.unwrap_or_else(|| Instant::now() + hold);
    talk(&sip, &rtp, &d, sh, until, &digits, &mut res).await;
    sh.active.fetch_sub(1, Ordering::Relaxed);
    if !res.ended_by_switch {
        res.bye_ok = bye(&sip, &d, sh).await;
    }
    res
}

// ---------------------------------------------------------------------------------------
// Phases and figures
// ---------------------------------------------------------------------------------------

fn pct(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        sipwire::percentile(v, 50.0),
        sipwire::percentile(v, 95.0),
        sipwire::percentile(v, 99.0),
        v[v.len() - 1]
    )
}

struct PhaseStats {
    name: &'static str,
    results: Vec<CallResult>,
    max_active: usize,
    max_in_flight: usize,
    wall_s: f64,
    cpu_s: f64,
    rss_idle_kb: u64,
    rss_peak_kb: u64,
    ring_cycle_ms: u64,
}

fn report(p: &mut PhaseStats) -> usize {
    let total = p.results.len();
    let failed: Vec<&CallResult> = p.results.iter().filter(|r| r.fail.is_some()).collect();
    let mut by_reason = std::collections::BTreeMap::<String, usize>::new();
    for r in &failed {
        *by_reason.entry(format!("{:?}", r.fail)).or_default() += 1;
    }
    let mut t180: Vec<f64> = p.results.iter().filter_map(|r| r.t180_ms).collect();
    let mut t200: Vec<f64> = p.results.iter().filter_map(|r| r.t200_ms).collect();
    let three = 3 * p.ring_cycle_ms;
    let within = p
        .results
        .iter()
        .filter(|r| r.t200_ms.map(|t| t <= three as f64).unwrap_or(false))
        .count();
    let mut gaps: Vec<f64> = p
        .results
        .iter()
        .flat_map(|r| r.gap_err_ms.iter().map(|g| *g as f64))
        .collect();
    let rx: u64 = p.results.iter().map(|r| r.rx_packets).sum();
    let expected: u64 = p.results.iter().map(|r| r.expected_packets).sum();
    let foreign: u64 = p.results.iter().map(|r| r.foreign_packets).sum();
    let loss = if expected > 0 {
        100.0 * expected.saturating_sub(rx) as f64 / expected as f64
    } else {
        0.0
    };
    let ended_by_switch = p.results.iter().filter(|r| r.ended_by_switch).count();
    let bye_bad = p
        .results
        .iter()
        .filter(|r| r.fail.is_none() && !r.ended_by_switch && !r.bye_ok)
        .count();
    println!("\n== {} ==", p.name);
    println!("{:<34} {}", "calls attempted", total);
    println!(
        "{:<34} {} {:?}",
        "failed calls (non-2xx/timeout)",
        failed.len(),
        by_reason
    );
    println!("{:<34} {}", "INVITE->180 ms", pct(&mut t180));
    println!("{:<34} {}", "INVITE->200 ms", pct(&mut t200));
    println!(
        "{:<34} {:.1}% ({within}/{total}, 3 rings = {three} ms)",
        "answered within three rings",
        if total > 0 {
            100.0 * within as f64 / total as f64
        } else {
            0.0
        }
    );
    println!("{:<34} {}", "concurrent calls sustained", p.max_active);
    println!(
        "{:<34} {}",
        "calls in progress, peak (+ringing)", p.max_in_flight
    );
    println!(
        "{:<34} {} (of which gaps measured {})",
        "RTP packets received",
        rx,
        gaps.len()
    );
    println!("{:<34} {}", "pacing error |gap-20ms| ms", pct(&mut gaps));
    println!(
        "{:<34} {:.3}% (foreign-SSRC packets ignored: {foreign})",
        "RTP loss", loss
    );
    println!(
        "{:<34} {} / BYE not 200: {}",
        "calls ended by switch", ended_by_switch, bye_bad
    );
    println!(
        "{:<34} {:.1}% of one core ({:.1} s CPU in {:.1} s)",
        "switch CPU",
        if p.wall_s > 0.0 {
            100.0 * p.cpu_s / p.wall_s
        } else {
            0.0
        },
        p.cpu_s,
        p.wall_s
    );
    let per_call = if p.max_active > 0 {
        p.rss_peak_kb.saturating_sub(p.rss_idle_kb) as f64 / p.max_active as f64
    } else {
        0.0
    };
    println!(
        "{:<34} {:.1} kB (RSS idle {} kB, peak {} kB)",
        "switch RSS per call", per_call, p.rss_idle_kb, p.rss_peak_kb
    );
    failed.len()
}

/// Samples switch RSS every 250 ms until told to stop; returns the peak.
fn rss_sampler(
    pid: Option<u32>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Some(pid) = pid {
                peak = peak.max(proc_usage(pid).1);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        peak
    })
}

/// DTMF that keeps a caller in the shipped IVR: English, then "repeat the menu".
fn keep_alive_digits(hold_s: f64) -> Vec<(f64, u8)> {
    let mut v = vec![(6.7, 1u8)];
    let mut t = 6.7 + 12.0;
    while t < hold_s {
        v.push((t, 9));
        t += 12.0;
    }
    v
}

/// The switch we spawn (None when calling an external `--target`) and where to call.
fn target(
    o: &Opts,
    rings: u8,
    max_calls: usize,
) -> Result<(Option<SwitchProc>, SocketAddr, u64), String> {
    match o.target {
        Some(addr) => Ok((None, addr, 6000)),
        None => {
            let sw = start_switch(rings, max_calls)?;
            let (addr, ring) = (sw.sip, sw.ring_cycle_ms);
            Ok((Some(sw), addr, ring))
        }
    }
}

fn usage_of(sw: &Option<SwitchProc>) -> (f64, u64) {
    sw.as_ref().map(|s| proc_usage(s.pid())).unwrap_or((0.0, 0))
}

async fn phase_a(o: &Opts) -> Result<usize, String> {
    let (sw, addr, ring) = target(o, 0, o.calls + 100)?;
    let sh = Arc::new(Shared {
        switch: addr,
        active: AtomicUsize::new(0),
        max_active: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        seq: AtomicU64::new(1),
    });
    let (cpu0, rss_idle) = usage_of(&sw);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(sw.as_ref().map(|s| s.pid()), Arc::clone(&stop));
    let start = Instant::now();
    let ramp_s = o.calls as f64 / o.ramp;
    let release_at = start + Duration::from_secs_f64(ramp_s + 2.0 + o.hold);
    let digits = keep_alive_digits(ramp_s + 2.0 + o.hold);
    println!(
        "phase A: {} calls ramped at {:.0}/s, all held until {:.1} s, answer at once",
        o.calls,
        o.ramp,
        ramp_s + 2.0 + o.hold
    );
    let mut handles = Vec::with_capacity(o.calls);
    for i in 0..o.calls {
        sleep_until(start + Duration::from_secs_f64(i as f64 / o.ramp)).await;
        handles.push(tokio::spawn(one_call(
            Arc::clone(&sh),
            Duration::from_secs(32),
            Some(release_at),
            Duration::ZERO,
            digits.clone(),
        )));
    }
    let mut results = Vec::with_capacity(o.calls);
    for h in handles {
        results.push(h.await.unwrap_or_else(|_| CallResult {
            fail: Some(Fail::Socket),
            ..Default::default()
        }));
    }
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, _) = usage_of(&sw);
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    if let Some(sw) = sw {
        sw.stop();
    }
    let mut stats = PhaseStats {
        name: "phase A: concurrent calls",
        results,
        max_active: sh.max_active.load(Ordering::Relaxed),
        max_in_flight: sh.max_in_flight.load(Ordering::Relaxed),
        wall_s: wall,
        cpu_s: cpu1 - cpu0,
        rss_idle_kb: rss_idle,
        rss_peak_kb: peak,
        ring_cycle_ms: ring,
    };
    Ok(report(&mut stats))
}

async fn phase_b(o: &Opts) -> Result<usize, String> {
    let total = (o.rate * o.rate_seconds).round() as usize;
    let (sw, addr, ring) = target(o, o.rings, total + 100)?;
    let sh = Arc::new(Shared {
        switch: addr,
        active: AtomicUsize::new(0),
        max_active: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        seq: AtomicU64::new(1),
    });
    println!(
        "phase B: {:.0} calls/s for {:.1} s ({total} calls), answer after {} ring(s) of {} ms, talk {:.1} s",
        o.rate, o.rate_seconds, o.rings, ring, o.rate_hold
    );
    let (cpu0, rss_idle) = usage_of(&sw);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(sw.as_ref().map(|s| s.pid()), Arc::clone(&stop));
    let bound = Duration::from_millis(3 * ring + 10_000);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(total);
    for i in 0..total {
        sleep_until(start + Duration::from_secs_f64(i as f64 / o.rate.max(0.001))).await;
        handles.push(tokio::spawn(one_call(
            Arc::clone(&sh),
            bound,
            None,
            Duration::from_secs_f64(o.rate_hold),
            Vec::new(),
        )));
    }
    let mut results = Vec::with_capacity(total);
    for h in handles {
        results.push(h.await.unwrap_or_else(|_| CallResult {
            fail: Some(Fail::Socket),
            ..Default::default()
        }));
    }
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, _) = usage_of(&sw);
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    if let Some(sw) = sw {
        sw.stop();
    }
    let mut stats = PhaseStats {
        name: "phase B: call rate",
        results,
        max_active: sh.max_active.load(Ordering::Relaxed),
        max_in_flight: sh.max_in_flight.load(Ordering::Relaxed),
        wall_s: wall,
        cpu_s: cpu1 - cpu0,
        rss_idle_kb: rss_idle,
        rss_peak_kb: peak,
        ring_cycle_ms: ring,
    };
    Ok(report(&mut stats))
}

fn main() {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let nofile = raise_nofile();
    let need = if o.phase_a { o.calls * 2 } else { 0 }.max(if o.phase_b {
        (o.rate * (o.rate_seconds + 10.0)) as usize * 2
    } else {
        0
    });
    let target = match o.target {
        Some(a) => format!("external SIP server {a}"),
        None => format!("switch {}", switch_bin().display()),
    };
    println!(
        "loadgen ({} mode): {target}, RLIMIT_NOFILE {nofile}",
        if o.quick { "quick" } else { "full" }
    );
    if (nofile as usize) < need + 100 {
        println!("warning: about {need} sockets needed; raise `ulimit -n` (e.g. 65536)");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let outcome = rt.block_on(async {
        let mut failed = 0;
        if o.phase_a {
            failed += phase_a(&o).await?;
        }
        if o.phase_b {
            failed += phase_b(&o).await?;
        }
        Ok::<usize, String>(failed)
    });
    match outcome {
        Ok(0) => println!("\nloadgen: done"),
        Ok(n) if o.quick => {
            // At quick-mode load every call must work: a failure is a bug, not a capacity figure.
            eprintln!("\nloadgen: {n} calls failed in quick mode");
            std::process::exit(1);
        }
        Ok(n) => println!("\nloadgen: done ({n} failed calls)"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}
