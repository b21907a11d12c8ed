//! The switch under test: its temp config, starting and stopping it, its CPU and RSS.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::agents::write_agents;
use crate::cli::Opts;

pub(crate) struct SwitchProc {
    child: Child,
    pub(crate) sip: SocketAddr,
    pub(crate) http: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
    _tmp: tempfile::TempDir,
    ring_cycle_ms: u64,
}

impl SwitchProc {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn tail(&self) -> String {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    pub(crate) fn stop(mut self) {
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

pub(crate) fn switch_bin() -> PathBuf {
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
pub(crate) fn start_switch(
    rings: u8,
    max_calls: usize,
    agents: usize,
) -> Result<SwitchProc, String> {
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
        http: format!("127.0.0.1:{http_port}")
            .parse()
            .map_err(|_| "addr")?,
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
pub(crate) fn proc_usage(pid: u32) -> (f64, u64) {
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

/// Samples switch RSS every 250 ms until told to stop; returns the peak.
pub(crate) fn rss_sampler(
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

/// Called with a spawned switch's HTTP address once it listens for SIP, before any call
/// (benches/live_ws.rs connects its WebSocket clients there). Unset in the load generator.
pub(crate) type StartHook = Box<dyn Fn(SocketAddr) + Send>;
pub(crate) static ON_START: Mutex<Option<StartHook>> = Mutex::new(None);

/// The switch we spawn (None when calling an external `--target`) and where to call.
pub(crate) fn target(
    o: &Opts,
    rings: u8,
    max_calls: usize,
) -> Result<(Option<SwitchProc>, SocketAddr, u64), String> {
    match o.target {
        Some(addr) => Ok((None, addr, 6000)),
        None => {
            let sw = start_switch(rings, max_calls, 0)?;
            let hook = ON_START.lock().ok();
            if let Some(h) = hook.as_ref().and_then(|g| g.as_ref()) {
                h(sw.http);
            }
            let (addr, ring) = (sw.sip, sw.ring_cycle_ms);
            Ok((Some(sw), addr, ring))
        }
    }
}

pub(crate) fn usage_of(sw: &Option<SwitchProc>) -> (f64, u64) {
    sw.as_ref().map(|s| proc_usage(s.pid())).unwrap_or((0.0, 0))
}
