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
//! Phase C (bridged calls): the temp config gets `--agents` generated agents (extensions
//! 70000.., password `demo<ext>`, tech = 5, queue tech, HA1s made with
//! `ccswitch::proto::digest::ha1`) and a 1 s wrap-up; each agent registers over UDP with
//! digest auth (401 -> REGISTER with Authorization; even agents SHA-256, odd MD5), then
//! answers every offer at once (200 + PCMU answer). Callers (as many as agents unless
//! `--calls` says) dial 4008006 (straight to queue tech), are answered at once, and hold
//! until all are bridged plus `--bridge-hold` s, then BYE (calls beyond the agents wait in
//! the queue all along and count as never bridged). The switch's RTP range is put below
//! the kernel's ephemeral range, which this process's own sockets use. Both sides send 20 ms PCMU
//! frames whose payload carries the send time (SystemTime ns, big-endian, bytes 0..8), a
//! marker, a stream id and a frame counter; the switch relays the payload unchanged (same
//! codec), so relay delay = kernel receive stamp - embedded send time, per direction.
//! Loss is counted on the frame counter per stream (first..last frame seen). Routing time
//! runs from the caller's 200 (kernel stamp) to the offer's INVITE at the agent (kernel
//! stamp; matched on X-Caller).
//!
//!   cargo bench --bench loadgen -- [--quick] [--calls N] [--hold S] [--ramp R]
//!       [--rate R] [--rate-seconds S] [--rate-hold S] [--rings N] [--agents N]
//!       [--bridge-hold S] [--phase a|b|c|all]
//!
//! Every phase judges its calls the same way (`judge`, `Tally`): a call fails when it was not
//! set up, the switch ended it early (BYE before the caller's), its BYE got no 200, or it lost
//! RTP (any packet missing in sequence, or none heard in 500 ms of talk); phase C also fails
//! calls never bridged or whose agent never heard the caller. Each phase prints the counts;
//! in quick mode any of them makes the exit status 1.
//!
//! Without `--bench` on the command line (i.e. under `cargo test --all-targets`) it runs the
//! quick mode. The switch binary is $CCSWITCH_BIN, else the one cargo built for this
//! profile. Needs many file descriptors (2 per call or agent here, ~2 per leg in the switch): it
//! raises its own RLIMIT_NOFILE to the hard limit; `ulimit -n 65536` first for big runs.
//! RTP arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS), so the pacing
//! figures describe the switch, not this process's own scheduling delay. SIP latencies are
//! taken in this process and include its scheduling delay (an upper bound).
#![allow(clippy::disallowed_methods)] // a load generator measures wall-clock time on purpose

#[path = "../../tests/e2e/sipwire.rs"]
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
use tokio::time::{sleep, sleep_until, timeout, Instant};

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
    phase_c: bool,
    /// Phase C: registered agents.
    agents: usize,
    /// Phase C: bridged calls.
    bridge_calls: usize,
    /// Phase C: hold time once all calls are bridged.
    bridge_hold: f64,
    /// An already running SIP server to call instead of spawning the switch.
    target: Option<SocketAddr>,
}

const USAGE: &str = "loadgen [--quick] [--calls N] [--hold S] [--ramp CALLS_PER_S] [--rate R] \
[--rate-seconds S] [--rate-hold S] [--rings N] [--agents N] [--bridge-hold S] \
[--phase a|b|c|all] [--target ADDR]";

fn parse_opts() -> Result<Opts, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}\n");
        println!("  --quick            20 calls held 2 s; 20 calls/s for 2 s; 5 agents/5 bridged calls held 2 s (also the default without --bench)");
        println!("  --calls N          phase A concurrent calls (default 2000)");
        println!("  --hold S           phase A hold time once all are up (default 20)");
        println!("  --ramp R           phase A new calls per second while ramping (default 200)");
        println!("  --rate R           phase B new calls per second (default 300)");
        println!("  --rate-seconds S   phase B duration (default 10)");
        println!("  --rate-hold S      phase B talk time after answer (default 1)");
        println!("  --rings N          phase B answer_after_rings (default 1, as shipped)");
        println!("  --agents N         phase C registered agents (default 1000); --calls sets its calls too");
        println!("  --bridge-hold S    phase C hold time once all calls are bridged (default 20)");
        println!("  --phase a|b|c|all  which phase(s) to run (default all; `both` = a and b)");
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
        phase_c: true,
        agents: 1000,
        bridge_calls: 1000,
        bridge_hold: 20.0,
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
            "--agents" => {
                o.agents = num(val(a)?, a)? as usize;
                explicit.push("agents");
            }
            "--bridge-hold" => {
                o.bridge_hold = num(val(a)?, a)?;
                explicit.push("bridge-hold");
            }
            "--rings" => o.rings = num(val(a)?, a)?.min(10.0) as u8,
            "--phase" => match val(a)?.as_str() {
                "a" => (o.phase_a, o.phase_b, o.phase_c) = (true, false, false),
                "b" => (o.phase_a, o.phase_b, o.phase_c) = (false, true, false),
                "c" => (o.phase_a, o.phase_b, o.phase_c) = (false, false, true),
                "both" => (o.phase_a, o.phase_b, o.phase_c) = (true, true, false),
                "all" => (o.phase_a, o.phase_b, o.phase_c) = (true, true, true),
                other => return Err(format!("--phase: a, b, c or all, not {other}")),
            },
            // cargo test passes its own flags and filters to every target: ignore them.
            other => eprintln!("loadgen: ignoring argument {other:?}"),
        }
    }
    // Phase C takes as many calls as --calls says, else one per agent.
    o.bridge_calls = if explicit.contains(&"calls") {
        o.calls
    } else {
        o.agents
    };
    if o.quick {
        if !explicit.contains(&"agents") {
            o.agents = 5;
        }
        if !explicit.contains(&"calls") {
            o.bridge_calls = o.agents;
        }
        if !explicit.contains(&"bridge-hold") {
            o.bridge_hold = 2.0;
        }
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

/// Temp copy of config/ with the answer policy and call limit this phase needs; with
/// `agents` > 0 also `agents` generated agents serving `tech` (see `write_agents`) and a
/// wide RTP port range (two legs per bridged call).
fn start_switch(rings: u8, max_calls: usize, agents: usize) -> Result<SwitchProc, String> {
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
    // Every simulated caller and agent is on 127.0.0.1: one "source" that stands for many,
    // as a carrier trunk does, so it is trusted past the per-source limits.
    let mut limits = toml::Table::new();
    limits.insert(
        "trusted_sources".into(),
        toml::Value::Array(vec![toml::Value::String("127.0.0.0/8".into())]),
    );
    if let Some(l) = table.get_mut("limits").and_then(|v| v.as_table_mut()) {
        l.extend(limits);
    } else {
        table.insert("limits".into(), toml::Value::Table(limits));
    }
    std::fs::write(&main, table.to_string()).map_err(|e| e.to_string())?;
    let rtp_ports = if agents > 0 {
        write_agents(&dir, agents)?;
        wide_rtp_ports()
    } else {
        "20000-29999".to_string()
    };

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
        .args(["--rtp-ports", &rtp_ports])
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
    // LOADGEN_SWITCH_LOG=path keeps the switch's whole log (the tail alone is kept otherwise).
    let mut full =
        std::env::var_os("LOADGEN_SWITCH_LOG").and_then(|p| std::fs::File::create(p).ok());
    std::thread::spawn(move || {
        let mut told = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(f) = full.as_mut() {
                use std::io::Write;
                let _ = writeln!(f, "{line}");
            }
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

/// A wide RTP range for phase C (two legs per bridged call) below the kernel's ephemeral
/// port range: this process's own sockets take ephemeral ports, and a switch range that
/// overlapped it would fail to bind the ports our callers and agents already hold.
fn wide_rtp_ports() -> String {
    let lo = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    if lo > 14_000 {
        format!("10000-{}", (lo - 1).min(65_535))
    } else {
        "20000-60000".to_string()
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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
    /// When the 200 arrived (kernel stamp, ns since the epoch).
    answered_ns: Option<i128>,
    fail: Option<Fail>,
    ended_by_switch: bool,
    bye_ok: bool,
    /// How long the call talked (answer to hang-up or the switch's BYE).
    talk: Duration,
    rx_packets: u64,
    /// Packets of another SSRC (a stale stream to a reused port), not counted.
    foreign_packets: u64,
    expected_packets: u64,
    gap_err_ms: Vec<f32>,
}

struct Shared {
    switch: SocketAddr,
    /// The number callers dial.
    dial: &'static str,
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
    let uri = format!("sip:{}@{}", sh.dial, sh.switch);
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
                res.answered_ns = Some(stamp.unwrap_or_else(|| wall_ns(start)));
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
    res.talk = start.elapsed();
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
// Judging a call: the same rules and the same tally in every phase
// ---------------------------------------------------------------------------------------

/// Talk time after which a call that heard no RTP at all has lost it: the switch starts
/// sending within a frame or two of its answer, so half a second of silence is not a
/// scheduling hiccup (a sanity floor, not a timing figure).
const NO_RTP_AFTER: Duration = Duration::from_millis(500);

/// The first thing that went wrong with a call, in this order (a call counts once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Problem {
    /// No dialog: a non-2xx final, no final in time, a socket error, a 200 without SDP.
    Setup(Fail),
    /// Phase C: the caller never heard an agent.
    NeverBridged,
    /// The switch sent BYE before the caller hung up.
    EndedBySwitch,
    /// The caller's BYE got another final status, or none within its 8 s.
    ByeNot200,
    /// Phase C: the agent never heard the caller.
    OneWayAudio,
    /// The call talked NO_RTP_AFTER or longer and heard not one RTP packet.
    NoRtp,
    /// Packets missing between the first and the last one heard.
    RtpLost,
}

/// What a call heard: RTP packets received, and expected over the first..last heard.
/// The switch's sequence numbers advance per packet sent (a late frame is skipped, not
/// numbered), and the relayed frame counters per frame the far end sent, so a gap is a
/// packet that was sent and never arrived: on loopback that is a bug, not load.
#[derive(Debug, Default, Clone, Copy)]
struct Heard {
    received: u64,
    expected: u64,
}

impl Heard {
    fn lost(self) -> u64 {
        self.expected.saturating_sub(self.received)
    }

    fn add(self, o: Heard) -> Heard {
        Heard {
            received: self.received + o.received,
            expected: self.expected + o.expected,
        }
    }

    fn loss_pct(self) -> f64 {
        if self.expected > 0 {
            100.0 * self.lost() as f64 / self.expected as f64
        } else {
            0.0
        }
    }
}

/// Phase C's bridge checks for one call: did the caller hear an agent, did the agent hear it.
#[derive(Debug, Clone, Copy)]
struct BridgeCheck {
    bridged: bool,
    heard_by_agent: bool,
}

/// The call's first problem, or None when it worked throughout.
fn judge(call: &CallResult, bridge: Option<BridgeCheck>, heard: Heard) -> Option<Problem> {
    if let Some(f) = call.fail {
        return Some(Problem::Setup(f));
    }
    if bridge.is_some_and(|b| !b.bridged) {
        return Some(Problem::NeverBridged);
    }
    if call.ended_by_switch {
        return Some(Problem::EndedBySwitch);
    }
    if !call.bye_ok {
        return Some(Problem::ByeNot200);
    }
    if bridge.is_some_and(|b| !b.heard_by_agent) {
        return Some(Problem::OneWayAudio);
    }
    if heard.received == 0 && call.talk >= NO_RTP_AFTER {
        return Some(Problem::NoRtp);
    }
    if heard.lost() > 0 {
        return Some(Problem::RtpLost);
    }
    None
}

/// One phase's calls by outcome, and the RTP they heard.
#[derive(Debug, Default)]
struct Tally {
    calls: usize,
    problems: std::collections::BTreeMap<Problem, usize>,
    heard: Heard,
    /// Calls that lost packets, counted even when an earlier problem classed the call.
    calls_with_loss: usize,
}

impl Tally {
    fn add(&mut self, call: &CallResult, bridge: Option<BridgeCheck>, heard: Heard) {
        self.calls += 1;
        self.heard = self.heard.add(heard);
        if heard.lost() > 0 {
            self.calls_with_loss += 1;
        }
        if let Some(p) = judge(call, bridge, heard) {
            *self.problems.entry(p).or_default() += 1;
        }
    }

    /// Calls with any problem.
    fn failed(&self) -> usize {
        self.problems.values().sum()
    }

    fn count(&self, want: impl Fn(&Problem) -> bool) -> usize {
        self.problems
            .iter()
            .filter(|(p, _)| want(p))
            .map(|(_, n)| n)
            .sum()
    }

    /// The outcome lines of a phase summary; `bridged` adds phase C's two rows.
    fn print(&self, bridged: bool) {
        let setup: std::collections::BTreeMap<String, usize> = self
            .problems
            .iter()
            .filter_map(|(p, n)| match p {
                Problem::Setup(f) => Some((format!("{f:?}"), *n)),
                _ => None,
            })
            .collect();
        let n = |p: Problem| self.problems.get(&p).copied().unwrap_or(0);
        println!(
            "{:<34} {} of {}",
            "calls failed (any reason below)",
            self.failed(),
            self.calls
        );
        println!(
            "{:<34} {} {setup:?}",
            "  not set up (non-2xx/timeout)",
            self.count(|p| matches!(p, Problem::Setup(_)))
        );
        if bridged {
            println!("{:<34} {}", "  never bridged", n(Problem::NeverBridged));
        }
        println!(
            "{:<34} {}",
            "  ended early by the switch",
            n(Problem::EndedBySwitch)
        );
        println!("{:<34} {}", "  BYE without 200", n(Problem::ByeNot200));
        if bridged {
            println!(
                "{:<34} {}",
                "  agent never heard the caller",
                n(Problem::OneWayAudio)
            );
        }
        println!(
            "{:<34} {} (no RTP in {} ms of talk: {})",
            "  RTP lost",
            n(Problem::RtpLost) + n(Problem::NoRtp),
            NO_RTP_AFTER.as_millis(),
            n(Problem::NoRtp)
        );
        println!(
            "{:<34} {:.3}% ({} of {} packets; calls with any loss: {})",
            "RTP loss",
            self.heard.loss_pct(),
            self.heard.lost(),
            self.heard.expected,
            self.calls_with_loss
        );
    }
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
    let mut tally = Tally::default();
    for r in &p.results {
        let heard = Heard {
            received: r.rx_packets,
            expected: r.expected_packets,
        };
        tally.add(r, None, heard);
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
    let foreign: u64 = p.results.iter().map(|r| r.foreign_packets).sum();
    println!("\n== {} ==", p.name);
    println!("{:<34} {}", "calls attempted", total);
    tally.print(false);
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
        "{:<34} {} (of which gaps measured {}; foreign-SSRC packets ignored: {foreign})",
        "RTP packets received",
        tally.heard.received,
        gaps.len()
    );
    println!("{:<34} {}", "pacing error |gap-20ms| ms", pct(&mut gaps));
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
    tally.failed()
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
            let sw = start_switch(rings, max_calls, 0)?;
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
        dial: "100",
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
        dial: "100",
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
    let need = if o.phase_a { o.calls * 2 } else { 0 }
        .max(if o.phase_b {
            (o.rate * (o.rate_seconds + 10.0)) as usize * 2
        } else {
            0
        })
        .max(if o.phase_c {
            2 * (o.agents + o.bridge_calls)
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
        if o.phase_c {
            failed += phase_c(&o).await?;
        }
        Ok::<usize, String>(failed)
    });
    match outcome {
        Ok(0) => println!("\nloadgen: done"),
        Ok(n) if o.quick => {
            // At quick-mode load every call must work: a failure is a bug, not a capacity figure.
            eprintln!(
                "\nloadgen: {n} calls (or agent registrations) failed in quick mode: not set up, \
                 ended early by the switch, BYE without 200 or RTP lost (see the phase summaries)"
            );
            std::process::exit(1);
        }
        Ok(n) => println!("\nloadgen: done ({n} failed calls)"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Phase C: bridged calls (agents registered with digest auth, callers queued to them)
// ---------------------------------------------------------------------------------------

/// First agent extension of phase C (extensions are consecutive from here).
const AGENT_BASE: usize = 70000;
/// Marks a load-generator frame: [0..8] send time ns (big-endian, SystemTime),
/// [8..12] this magic, [12..16] stream id, [16..20] frame counter.
const FRAME_MAGIC: [u8; 4] = *b"LGC1";

fn agent_ext(i: usize) -> String {
    (AGENT_BASE + i).to_string()
}

fn agent_password(ext: &str) -> String {
    format!("demo{ext}")
}

/// agents.toml with `n` agents (tech = 5, queue tech, English, both HA1s for
/// `demo<ext>`) and queues.toml with a 1 s wrap-up, in the temp config dir.
fn write_agents(dir: &Path, n: usize) -> Result<(), String> {
    use ccswitch::proto::digest::{ha1, Algorithm};
    let path = dir.join("agents.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let realm = table
        .get("registrar")
        .and_then(|r| r.get("realm"))
        .and_then(|r| r.as_str())
        .unwrap_or("ccswitch")
        .to_string();
    let mut agents = Vec::with_capacity(n);
    for i in 0..n {
        let ext = agent_ext(i);
        let pw = agent_password(&ext);
        let mut a = toml::Table::new();
        a.insert("extension".into(), ext.clone().into());
        a.insert("name".into(), format!("Load agent {i}").into());
        let mut skills = toml::Table::new();
        skills.insert("tech".into(), toml::Value::Integer(5));
        a.insert("skills".into(), toml::Value::Table(skills));
        a.insert("languages".into(), toml::Value::Array(vec!["en".into()]));
        a.insert("queues".into(), toml::Value::Array(vec!["tech".into()]));
        a.insert(
            "ha1_md5".into(),
            ha1(Algorithm::Md5, &ext, &realm, &pw).into(),
        );
        a.insert(
            "ha1_sha256".into(),
            ha1(Algorithm::Sha256, &ext, &realm, &pw).into(),
        );
        agents.push(toml::Value::Table(a));
    }
    table.insert("agents".into(), toml::Value::Array(agents));
    std::fs::write(&path, table.to_string()).map_err(|e| e.to_string())?;

    let path = dir.join("queues.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let defaults = table
        .entry("defaults")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(d) = defaults.as_table_mut() {
        d.insert("wrap_up_s".into(), toml::Value::Integer(1));
    }
    std::fs::write(&path, table.to_string()).map_err(|e| e.to_string())
}

fn now_ns() -> i128 {
    wall_ns(Instant::now())
}

/// One timestamped 20 ms PCMU frame (see FRAME_MAGIC).
fn lg_frame(pkt: &mut Vec<u8>, seq: u16, tick: u64, ssrc: u32, stream: u32, counter: u32) {
    let mut payload = sipwire::ULAW_SILENCE;
    payload[8..12].copy_from_slice(&FRAME_MAGIC);
    payload[12..16].copy_from_slice(&stream.to_be_bytes());
    payload[16..20].copy_from_slice(&counter.to_be_bytes());
    let sent = now_ns() as u64;
    payload[0..8].copy_from_slice(&sent.to_be_bytes());
    sipwire::rtp_packet(
        pkt,
        tick == 0,
        0,
        seq,
        (tick as u32).wrapping_mul(160),
        ssrc,
        &payload,
    );
}

/// What one receiver saw of relayed load-generator frames.
#[derive(Debug, Default)]
struct RelayRx {
    /// Receive stamp minus embedded send time, ms.
    delay_ms: Vec<f32>,
    /// Per source stream: (first counter, highest counter, frames received).
    streams: Vec<(u32, u32, u32, u64)>,
    /// Packets without the marker (prompts, hold music) - not relayed audio.
    other: u64,
}

impl RelayRx {
    /// Accounts one received RTP packet; true when it was a relayed frame.
    fn on_packet(&mut self, buf: &[u8], stamp: i128) -> bool {
        let Some(h) = sipwire::parse_rtp(buf) else {
            return false;
        };
        let p = &buf[h.payload_offset..];
        if p.len() < 20 || p[8..12] != FRAME_MAGIC {
            self.other += 1;
            return false;
        }
        let mut b8 = [0u8; 8];
        b8.copy_from_slice(&p[0..8]);
        let sent = u64::from_be_bytes(b8) as i128;
        let stream = u32::from_be_bytes([p[12], p[13], p[14], p[15]]);
        let counter = u32::from_be_bytes([p[16], p[17], p[18], p[19]]);
        self.delay_ms.push(((stamp - sent) as f64 / 1e6) as f32);
        match self.streams.iter_mut().find(|s| s.0 == stream) {
            Some(s) => {
                s.1 = s.1.min(counter);
                s.2 = s.2.max(counter);
                s.3 += 1;
            }
            None => self.streams.push((stream, counter, counter, 1)),
        }
        true
    }

    /// Per source stream: frames received, and expected over its first..last frame seen.
    fn per_stream(&self) -> impl Iterator<Item = (u32, Heard)> + '_ {
        self.streams.iter().map(|s| {
            (
                s.0,
                Heard {
                    received: s.3,
                    expected: u64::from(s.2 - s.1) + 1,
                },
            )
        })
    }

    /// All streams together.
    fn loss(&self) -> Heard {
        self.per_stream()
            .fold(Heard::default(), |h, (_, s)| h.add(s))
    }
}

struct CShared {
    /// Callers hearing their agent now, and the peak.
    bridged: AtomicUsize,
    max_bridged: AtomicUsize,
    /// Agents with a call up now, and the peak.
    agent_calls: AtomicUsize,
    max_agent_calls: AtomicUsize,
    registered: AtomicUsize,
    /// Frames sent, and 20 ms ticks skipped because this process woke too late (its own
    /// overload, not the switch's: skipped frames are never counted as loss).
    frames_sent: AtomicU64,
    frames_skipped: AtomicU64,
    /// Set when the phase is over: agents unregister-free exit.
    stop: std::sync::atomic::AtomicBool,
    /// Caller number -> kernel stamp of the INVITE arriving at the agent.
    offered: Mutex<std::collections::HashMap<String, i128>>,
}

#[derive(Debug, Default)]
struct AgentResult {
    register_fail: Option<String>,
    calls: u32,
    rx: RelayRx,
}

/// Registration with digest auth: REGISTER, 401, REGISTER with Authorization, 200.
async fn agent_register(
    sip: &UdpSocket,
    switch: SocketAddr,
    idx: usize,
    buf: &mut [u8],
) -> Result<(), String> {
    use ccswitch::proto::digest::{response, Algorithm, QopAuth};
    let ext = agent_ext(idx);
    let local = sip.local_addr().map_err(|e| e.to_string())?;
    let call_id = format!("lg-reg-{idx}-{}@127.0.0.1", std::process::id());
    let tag = format!("r{idx}");
    // Even agents answer the SHA-256 challenge, odd ones MD5: both paths get load.
    let want = if idx % 2 == 0 {
        Algorithm::Sha256
    } else {
        Algorithm::Md5
    };
    let mut auth: Option<String> = None;
    for cseq in 1..=3u32 {
        let branch = format!("z9hG4bKlgr{idx}x{cseq}");
        let msg = sipwire::register(
            &ext,
            switch,
            local,
            &call_id,
            &tag,
            cseq,
            &branch,
            3600,
            auth.as_deref(),
        );
        let mut got = None;
        let mut retx = Duration::from_millis(500);
        let deadline = Instant::now() + Duration::from_secs(16);
        'send: while Instant::now() < deadline {
            let _ = sip.send_to(&msg, switch).await;
            let until = (Instant::now() + retx).min(deadline);
            while let Ok(Ok((n, _))) = timeout(
                until.saturating_duration_since(Instant::now()),
                sip.recv_from(buf),
            )
            .await
            {
                let Some(m) = sipwire::parse(&buf[..n]) else {
                    continue;
                };
                if m.cseq() == Some((cseq, "REGISTER".into())) && m.status.unwrap_or(0) >= 200 {
                    got = Some(m);
                    break 'send;
                }
            }
            retx = (retx * 2).min(Duration::from_secs(4));
        }
        let Some(m) = got else {
            return Err("REGISTER timeout".into());
        };
        match m.status {
            Some(200) => return Ok(()),
            Some(401) => {
                let challenges: Vec<Vec<(String, String)>> = m
                    .headers_named("www-authenticate")
                    .filter_map(sipwire::digest_params)
                    .collect();
                let get = |c: &Vec<(String, String)>, k: &str| {
                    c.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
                };
                let pick = challenges
                    .iter()
                    .find(|c| Algorithm::from_param(get(c, "algorithm").as_deref()) == Some(want))
                    .or_else(|| challenges.first())
                    .ok_or("401 without a Digest challenge")?;
                let alg = Algorithm::from_param(get(pick, "algorithm").as_deref())
                    .ok_or("unsupported algorithm")?;
                let realm = get(pick, "realm").unwrap_or_default();
                let nonce = get(pick, "nonce").unwrap_or_default();
                let uri = sipwire::register_uri(switch);
                let ha1 = ccswitch::proto::digest::ha1(alg, &ext, &realm, &agent_password(&ext));
                let cnonce = format!("{:08x}", idx * 7919 + 13);
                let resp = response(
                    alg,
                    &ha1,
                    "REGISTER",
                    &uri,
                    &nonce,
                    Some(QopAuth {
                        nc: "00000001",
                        cnonce: &cnonce,
                    }),
                );
                let mut a = format!(
                    "Digest username=\"{ext}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
                     response=\"{resp}\", algorithm={}, qop=auth, nc=00000001, cnonce=\"{cnonce}\"",
                    alg.as_str()
                );
                if let Some(o) = get(pick, "opaque") {
                    a.push_str(&format!(", opaque=\"{o}\""));
                }
                auth = Some(a);
            }
            Some(s) => return Err(format!("REGISTER answered {s}")),
            None => return Err("REGISTER: not a response".into()),
        }
    }
    Err("REGISTER: challenged again after credentials".into())
}

/// One agent's softphone: registers, then answers every INVITE at once (200 + PCMU
/// answer), sends timestamped frames while a call is up, measures the relayed caller audio.
async fn agent(idx: usize, switch: SocketAddr, cs: Arc<CShared>) -> AgentResult {
    let mut res = AgentResult::default();
    let (sip, rtp) = match (
        UdpSocket::bind("127.0.0.1:0").await,
        UdpSocket::bind("127.0.0.1:0").await,
    ) {
        (Ok(s), Ok(r)) => (s, r),
        _ => {
            res.register_fail = Some("socket".into());
            return res;
        }
    };
    tune_socket(&rtp);
    let (Ok(local), Ok(rtp_addr)) = (sip.local_addr(), rtp.local_addr()) else {
        res.register_fail = Some("socket".into());
        return res;
    };
    let mut sbuf = vec![0u8; 8192];
    if let Err(e) = agent_register(&sip, switch, idx, &mut sbuf).await {
        res.register_fail = Some(e);
        return res;
    }
    cs.registered.fetch_add(1, Ordering::Relaxed);
    // The SIP socket gets receive stamps only now: offers' arrival times are measured.
    tune_socket(&sip);
    let ext = agent_ext(idx);
    let contact = format!("sip:{ext}@{local}");
    let ssrc = 0xa6e0_0000u32 ^ idx as u32;
    let stream = 0x8000_0000u32 | idx as u32;
    let mut counter: u32 = 0;
    // The call up now: (Call-ID, where to send RTP, our 200 for retransmitted INVITEs).
    let mut call: Option<(String, SocketAddr, Vec<u8>)> = None;
    let mut start = Instant::now();
    let mut tick: u64 = 0;
    let mut seq: u16 = 1;
    let mut pkt = Vec::with_capacity(200);
    let mut rbuf = vec![0u8; 2048];
    let mut ended: Vec<String> = Vec::new();
    while !cs.stop.load(Ordering::Relaxed) {
        let due = if call.is_some() {
            let mut due = start + Duration::from_millis(20 * tick);
            let late = Instant::now().saturating_duration_since(due);
            if late > Duration::from_millis(60) {
                let skip = late.as_millis() as u64 / 20;
                cs.frames_skipped.fetch_add(skip, Ordering::Relaxed);
                tick += skip;
                due = start + Duration::from_millis(20 * tick);
            }
            due
        } else {
            Instant::now() + Duration::from_millis(100)
        };
        tokio::select! {
            _ = sleep_until(due) => {
                if let Some((_, to, _)) = &call {
                    lg_frame(&mut pkt, seq, tick, ssrc, stream, counter);
                    let _ = rtp.send_to(&pkt, *to).await;
                    cs.frames_sent.fetch_add(1, Ordering::Relaxed);
                    seq = seq.wrapping_add(1);
                    counter += 1;
                    tick += 1;
                }
            }
            r = recv_stamped(&rtp, &mut rbuf) => {
                let Ok((n, stamp)) = r else { continue };
                res.rx.on_packet(&rbuf[..n], stamp.unwrap_or_else(now_ns));
            }
            r = recv_stamped(&sip, &mut sbuf) => {
                let Ok((n, stamp)) = r else { continue };
                let Some(m) = sipwire::parse(&sbuf[..n]) else { continue };
                if m.status.is_some() {
                    continue;
                }
                let cid = m.call_id().unwrap_or("").to_string();
                match m.method.as_str() {
                    "INVITE" => {
                        if let Some((id, _, ok)) = &call {
                            let again = ok.clone();
                            if *id == cid {
                                let _ = sip.send_to(&again, switch).await;
                            } else {
                                let _ = sip.send_to(&m.reply(486, "Busy Here", Some("lgbusy"), None, None), switch).await;
                            }
                            continue;
                        }
                        if ended.contains(&cid) {
                            continue;
                        }
                        let Some(offer) = sipwire::parse_answer(&m.body) else {
                            let _ = sip.send_to(&m.reply(488, "Not Acceptable Here", Some("lgna"), None, None), switch).await;
                            continue;
                        };
                        if let Some(caller) = m.header("x-caller") {
                            if let Ok(mut map) = cs.offered.lock() {
                                map.insert(caller.to_string(), stamp.unwrap_or_else(now_ns));
                            }
                        }
                        let sdp = sipwire::sdp_answer(rtp_addr.ip(), rtp_addr.port(), 1);
                        let tag = format!("a{idx}x{}", res.calls);
                        let ok = m.reply(200, "OK", Some(&tag), Some(&contact), Some(&sdp));
                        let _ = sip.send_to(&ok, switch).await;
                        res.calls += 1;
                        let now = cs.agent_calls.fetch_add(1, Ordering::Relaxed) + 1;
                        cs.max_agent_calls.fetch_max(now, Ordering::Relaxed);
                        call = Some((cid, offer.rtp, ok));
                        start = Instant::now();
                        tick = 0;
                    }
                    "BYE" => {
                        let _ = sip.send_to(&m.reply(200, "OK", None, None, None), switch).await;
                        if call.as_ref().is_some_and(|c| c.0 == cid) {
                            call = None;
                            cs.agent_calls.fetch_sub(1, Ordering::Relaxed);
                            ended.push(cid);
                            if ended.len() > 16 {
                                ended.remove(0);
                            }
                        }
                    }
                    "ACK" => {}
                    _ => {
                        let _ = sip.send_to(&m.reply(200, "OK", None, None, None), switch).await;
                    }
                }
            }
        }
    }
    if call.is_some() {
        cs.agent_calls.fetch_sub(1, Ordering::Relaxed);
    }
    res
}

#[derive(Debug, Default)]
struct BridgedResult {
    call: CallResult,
    caller: String,
    /// The stream id this caller's frames carry.
    stream: u32,
    bridged: bool,
    rx: RelayRx,
}

/// A caller of phase C: dials the tech hotline, talks with timestamped frames until
/// `release_at`, hangs up.
async fn bridged_call(sh: Arc<Shared>, cs: Arc<CShared>, release_at: Instant) -> BridgedResult {
    let mut out = BridgedResult::default();
    let tag = sh.seq.fetch_add(1, Ordering::Relaxed) | ((std::process::id() as u64) << 32);
    out.caller = format!("555{:07}", tag % 10_000_000);
    let (sip, rtp) = match (
        UdpSocket::bind("127.0.0.1:0").await,
        UdpSocket::bind("127.0.0.1:0").await,
    ) {
        (Ok(s), Ok(r)) => (s, r),
        _ => {
            out.call.fail = Some(Fail::Socket);
            return out;
        }
    };
    tune_socket(&rtp);
    let Ok(rtp_addr) = rtp.local_addr() else {
        out.call.fail = Some(Fail::Socket);
        return out;
    };
    let d = match invite(
        &sip,
        rtp_addr,
        &sh,
        tag,
        &mut out.call,
        Duration::from_secs(32),
    )
    .await
    {
        Ok(d) => d,
        Err(f) => {
            out.call.fail = Some(f);
            return out;
        }
    };
    let ssrc = 0x10ad_c000u32 ^ (d.ids.local.port() as u32);
    let stream = (tag & 0x7fff_ffff) as u32;
    out.stream = stream;
    let start = Instant::now();
    let (mut tick, mut seq, mut counter) = (0u64, 1u16, 0u32);
    let mut pkt = Vec::with_capacity(200);
    let mut rbuf = vec![0u8; 2048];
    let mut sbuf = vec![0u8; 4096];
    loop {
        let mut due = start + Duration::from_millis(20 * tick);
        if due >= release_at {
            break;
        }
        let late = Instant::now().saturating_duration_since(due);
        if late > Duration::from_millis(60) {
            let skip = late.as_millis() as u64 / 20;
            cs.frames_skipped.fetch_add(skip, Ordering::Relaxed);
            tick += skip;
            due = start + Duration::from_millis(20 * tick);
        }
        tokio::select! {
            _ = sleep_until(due) => {
                lg_frame(&mut pkt, seq, tick, ssrc, stream, counter);
                let _ = rtp.send_to(&pkt, d.answer.rtp).await;
                cs.frames_sent.fetch_add(1, Ordering::Relaxed);
                seq = seq.wrapping_add(1);
                counter += 1;
                tick += 1;
            }
            r = recv_stamped(&rtp, &mut rbuf) => {
                let Ok((n, stamp)) = r else { continue };
                if out.rx.on_packet(&rbuf[..n], stamp.unwrap_or_else(now_ns)) && !out.bridged {
                    out.bridged = true;
                    let now = cs.bridged.fetch_add(1, Ordering::Relaxed) + 1;
                    cs.max_bridged.fetch_max(now, Ordering::Relaxed);
                }
            }
            r = sip.recv_from(&mut sbuf) => {
                let Ok((n, from)) = r else { continue };
                let Some(m) = sipwire::parse(&sbuf[..n]) else { continue };
                if m.method == "BYE" {
                    let _ = sip.send_to(&m.response(200, "OK"), from).await;
                    out.call.ended_by_switch = true;
                    break;
                }
                if m.status == Some(200) && m.cseq().map(|c| c.1).as_deref() == Some("INVITE") {
                    let ack = d.ids.ack_2xx(&d.target, &d.to_hdr, 1, "z9hG4bKlgreack");
                    let _ = sip.send_to(&ack, sh.switch).await;
                }
            }
        }
    }
    out.call.talk = start.elapsed();
    if out.bridged {
        cs.bridged.fetch_sub(1, Ordering::Relaxed);
    }
    if !out.call.ended_by_switch {
        out.call.bye_ok = bye(&sip, &d, &sh).await;
    }
    out
}

fn pct32(v: &[f32]) -> String {
    let mut v: Vec<f64> = v.iter().map(|x| *x as f64).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return "n/a".into();
    }
    format!(
        "p50 {:.2}  p99 {:.2}  max {:.2}",
        sipwire::percentile(&v, 50.0),
        sipwire::percentile(&v, 99.0),
        v[v.len() - 1]
    )
}

async fn phase_c(o: &Opts) -> Result<usize, String> {
    if o.target.is_some() {
        println!("\nphase C skipped: it needs the switch it spawns (generated agents)");
        return Ok(0);
    }
    let n_agents = o.agents;
    let n_calls = o.bridge_calls;
    let sw = start_switch(0, 2 * n_calls + 100, n_agents.max(1))?;
    let addr = sw.sip;
    let sh = Arc::new(Shared {
        switch: addr,
        dial: "4008006",
        active: AtomicUsize::new(0),
        max_active: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
        seq: AtomicU64::new(1),
    });
    let cs = Arc::new(CShared {
        bridged: AtomicUsize::new(0),
        max_bridged: AtomicUsize::new(0),
        agent_calls: AtomicUsize::new(0),
        max_agent_calls: AtomicUsize::new(0),
        registered: AtomicUsize::new(0),
        frames_sent: AtomicU64::new(0),
        frames_skipped: AtomicU64::new(0),
        stop: std::sync::atomic::AtomicBool::new(false),
        offered: Mutex::new(std::collections::HashMap::new()),
    });
    println!(
        "\nphase C: {n_agents} agents register (digest), {n_calls} calls to 4008006 (queue tech) \
         ramped at {:.0}/s, held {:.1} s once all are bridged",
        o.ramp, o.bridge_hold
    );
    let (cpu0, rss_idle) = proc_usage(sw.pid());
    let (own_cpu0, _) = proc_usage(std::process::id());
    let stop_rss = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = rss_sampler(Some(sw.pid()), Arc::clone(&stop_rss));
    let t0 = Instant::now();
    let mut agents = Vec::with_capacity(n_agents);
    for i in 0..n_agents {
        sleep_until(t0 + Duration::from_secs_f64(i as f64 / o.ramp)).await;
        agents.push(tokio::spawn(agent(i, addr, Arc::clone(&cs))));
    }
    // Wait for the registrations to settle (each is bounded by its own timeouts).
    let reg_deadline = Instant::now() + Duration::from_secs(40);
    while cs.registered.load(Ordering::Relaxed) < n_agents
        && Instant::now() < reg_deadline
        && !agents.iter().all(|h| h.is_finished())
    {
        sleep(Duration::from_millis(50)).await;
    }
    let reg_s = t0.elapsed().as_secs_f64();
    println!(
        "phase C: {} of {n_agents} agents registered in {reg_s:.1} s",
        cs.registered.load(Ordering::Relaxed)
    );
    let start = Instant::now();
    let ramp_s = n_calls as f64 / o.ramp;
    let settle_s = 3.0;
    let steady_from = start + Duration::from_secs_f64(ramp_s + settle_s);
    let release_at = steady_from + Duration::from_secs_f64(o.bridge_hold);
    let (cpu_calls0, _) = proc_usage(sw.pid());
    let pid = sw.pid();
    let steady = tokio::spawn(async move {
        sleep_until(steady_from).await;
        let a = proc_usage(pid).0;
        let t = Instant::now();
        sleep_until(release_at).await;
        (proc_usage(pid).0 - a, t.elapsed().as_secs_f64())
    });
    let mut handles = Vec::with_capacity(n_calls);
    for i in 0..n_calls {
        sleep_until(start + Duration::from_secs_f64(i as f64 / o.ramp)).await;
        handles.push(tokio::spawn(bridged_call(
            Arc::clone(&sh),
            Arc::clone(&cs),
            release_at,
        )));
    }
    let mut calls = Vec::with_capacity(n_calls);
    for h in handles {
        calls.push(h.await.unwrap_or_else(|_| BridgedResult {
            call: CallResult {
                fail: Some(Fail::Socket),
                ..Default::default()
            },
            ..Default::default()
        }));
    }
    let calls_wall = start.elapsed().as_secs_f64();
    let (cpu_calls1, _) = proc_usage(sw.pid());
    let (steady_cpu, steady_wall) = steady.await.unwrap_or((0.0, 0.0));
    // Let the last BYEs reach the agents, then stop them.
    sleep(Duration::from_millis(500)).await;
    cs.stop.store(true, Ordering::Relaxed);
    let mut agent_res = Vec::with_capacity(n_agents);
    for h in agents {
        if let Ok(r) = h.await {
            agent_res.push(r);
        }
    }
    stop_rss.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    let (cpu_end, _) = proc_usage(sw.pid());
    let own_cpu = proc_usage(std::process::id()).0 - own_cpu0;
    let tail = sw.tail();
    sw.stop();

    // Figures.
    let reg_fail: Vec<&String> = agent_res
        .iter()
        .filter_map(|a| a.register_fail.as_ref())
        .collect();
    // What the agents heard of each caller's stream: (received, expected).
    let mut heard_by_agents = std::collections::HashMap::<u32, Heard>::new();
    for (stream, heard) in agent_res.iter().flat_map(|a| a.rx.per_stream()) {
        let h = heard_by_agents.entry(stream).or_default();
        *h = h.add(heard);
    }
    let mut tally = Tally::default();
    let (mut a2c_loss, mut c2a_loss) = (Heard::default(), Heard::default());
    for c in &calls {
        let a2c = c.rx.loss();
        let c2a = heard_by_agents.get(&c.stream).copied();
        let check = BridgeCheck {
            bridged: c.bridged,
            heard_by_agent: c2a.is_some(),
        };
        let c2a = c2a.unwrap_or_default();
        a2c_loss = a2c_loss.add(a2c);
        c2a_loss = c2a_loss.add(c2a);
        tally.add(&c.call, Some(check), a2c.add(c2a));
    }
    let bridged = calls.iter().filter(|c| c.bridged).count();
    let both_ways = calls
        .iter()
        .filter(|c| c.bridged && heard_by_agents.contains_key(&c.stream))
        .count();
    let a2c: Vec<f32> = calls
        .iter()
        .flat_map(|c| c.rx.delay_ms.iter().copied())
        .collect();
    let c2a: Vec<f32> = agent_res
        .iter()
        .flat_map(|a| a.rx.delay_ms.iter().copied())
        .collect();
    let offered = cs.offered.lock().map(|m| m.clone()).unwrap_or_default();
    let mut routing: Vec<f64> = calls
        .iter()
        .filter_map(|c| {
            let at = c.call.answered_ns?;
            let inv = offered.get(&c.caller)?;
            Some((inv - at) as f64 / 1e6)
        })
        .collect();
    let mut t200: Vec<f64> = calls.iter().filter_map(|c| c.call.t200_ms).collect();
    let agent_calls: u32 = agent_res.iter().map(|a| a.calls).sum();
    let pct_of = |cpu: f64, wall: f64| if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 };

    println!("\n== phase C: bridged calls ==");
    println!(
        "{:<34} {} of {n_agents} ({} failed) in {reg_s:.1} s",
        "agents registered (digest)",
        cs.registered.load(Ordering::Relaxed),
        reg_fail.len()
    );
    let (sent, skipped) = (
        cs.frames_sent.load(Ordering::Relaxed),
        cs.frames_skipped.load(Ordering::Relaxed),
    );
    println!(
        "{:<34} {sent} sent, {skipped} 20 ms ticks skipped ({:.1}%: this process's own lag); loadgen CPU {own_cpu:.1} s",
        "loadgen RTP frames",
        if sent + skipped > 0 {
            100.0 * skipped as f64 / (sent + skipped) as f64
        } else {
            0.0
        }
    );
    if let Some(e) = reg_fail.first() {
        println!("{:<34} {e}", "first registration failure");
    }
    println!("{:<34} {n_calls}", "calls attempted");
    tally.print(true);
    println!(
        "{:<34} {bridged} (audio both ways: {both_ways})",
        "calls bridged (caller hears agent)"
    );
    println!(
        "{:<34} {} (agent legs up, peak: {}; legs = 2 x calls)",
        "calls bridged concurrently, peak",
        cs.max_bridged.load(Ordering::Relaxed),
        cs.max_agent_calls.load(Ordering::Relaxed)
    );
    println!("{:<34} {agent_calls}", "offers answered by agents");
    println!("{:<34} {}", "INVITE->200 (caller) ms", pct(&mut t200));
    println!(
        "{:<34} {} ({} calls)",
        "routing 200 -> agent INVITE ms",
        pct(&mut routing),
        routing.len()
    );
    println!(
        "{:<34} {} ({} frames)",
        "relay delay agent->caller ms",
        pct32(&a2c),
        a2c.len()
    );
    println!(
        "{:<34} {} ({} frames)",
        "relay delay caller->agent ms",
        pct32(&c2a),
        c2a.len()
    );
    println!(
        "{:<34} agent->caller {:.3}% ({} of {}), caller->agent {:.3}% ({} of {})",
        "relayed RTP loss",
        a2c_loss.loss_pct(),
        a2c_loss.lost(),
        a2c_loss.expected,
        c2a_loss.loss_pct(),
        c2a_loss.lost(),
        c2a_loss.expected
    );
    println!(
        "{:<34} {:.1}% of one core while all bridged ({:.1} s CPU in {:.1} s); calls phase {:.1}% ({:.1} s in {:.1} s); whole phase {:.1} s CPU",
        "switch CPU",
        pct_of(steady_cpu, steady_wall),
        steady_cpu,
        steady_wall,
        pct_of(cpu_calls1 - cpu_calls0, calls_wall),
        cpu_calls1 - cpu_calls0,
        calls_wall,
        cpu_end - cpu0
    );
    let max_b = cs.max_bridged.load(Ordering::Relaxed);
    println!(
        "{:<34} {:.1} kB per bridged call (RSS idle {} kB, peak {} kB)",
        "switch RSS",
        if max_b > 0 {
            peak.saturating_sub(rss_idle) as f64 / max_b as f64
        } else {
            0.0
        },
        rss_idle,
        peak
    );
    let failed = tally.failed();
    if failed > 0 && o.quick {
        eprintln!("switch log tail:\n{tail}");
    }
    Ok(failed + reg_fail.len())
}
