//! End-to-end tests: the real `ccswitch` binary on 127.0.0.1, driven by real SIP peers.
//!
//! * PJSIP callers (`tests/e2e/caller.py`, pjsua2 in `.venv-e2e`, made by
//!   `scripts/test-setup.sh`, which these tests run themselves when the venv is missing).
//! * A raw Rust caller (std `UdpSocket`, `tests/e2e/sipwire.rs`) that checks RTP at the
//!   packet level: 50 packets/s, PCMU speech, sequence/timestamp continuity, marker bit,
//!   and sends RFC 4733 digits itself.
//! * JsSIP agents over SIP-over-WebSocket (`tests/sipws/agent.js`, node; `tests/e2e/sipws.rs`).
//!
//! Each test gets its own copy of `config/` (answer at once unless a test needs the ring),
//! its own SQLite file, SIP/HTTP ports and RTP range. Assertions are about behaviour
//! (order, counts, states, records); timing figures are printed, and bounds are loose.
//! Set CCSWITCH_E2E_SKIP_PJSUA=1 to skip the PJSIP tests on a machine without Python.
#![allow(clippy::disallowed_methods)] // tests measure wall-clock time on purpose

#[path = "e2e/agent_desk.rs"]
mod agent_desk;
#[path = "e2e/agent_transports.rs"]
mod agent_transports;
#[path = "e2e/browser.rs"]
mod browser;
#[path = "e2e/dispositions.rs"]
mod dispositions;
#[path = "e2e/harden_sip.rs"]
mod harden_sip;
#[path = "e2e/live.rs"]
mod live;
#[path = "e2e/monitor.rs"]
mod monitor;
#[path = "e2e/second_port_dtmf.rs"]
mod second_port_dtmf;
#[path = "e2e/sipwire.rs"]
mod sipwire;
#[path = "e2e/sipws.rs"]
mod sipws;
#[path = "e2e/surveys.rs"]
mod surveys;
#[path = "e2e/tcp_limits.rs"]
mod tcp_limits;
#[path = "e2e/wallboard.rs"]
mod wallboard;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The switch binary: cargo's build of this crate, or $CCSWITCH_BIN (e.g. a release build).
fn bin() -> PathBuf {
    std::env::var_os("CCSWITCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ccswitch")))
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The wire kit itself (kept here: sipwire.rs is also compiled into the load generator).
mod sipwire_tests {
    use super::sipwire::*;

    #[test]
    fn ulaw_silence_and_extremes() {
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
    }

    #[test]
    fn parses_response_with_compact_headers() {
        let m = parse(b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\ni: abc\r\nCSeq: 1 INVITE\r\nm: <sip:x@127.0.0.1:5060>\r\nl: 0\r\n\r\n").unwrap();
        assert_eq!(m.status, Some(200));
        assert_eq!(m.call_id(), Some("abc"));
        assert_eq!(m.cseq(), Some((1, "INVITE".to_string())));
        assert_eq!(m.contact_uri().as_deref(), Some("sip:x@127.0.0.1:5060"));
    }

    #[test]
    fn answer_sdp() {
        let a = parse_answer("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n").unwrap();
        assert_eq!(
            a.rtp,
            "127.0.0.1:4000".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(a.payload_type, 0);
        assert_eq!(a.telephone_event, Some(101));
    }

    #[test]
    fn rtp_round_trip() {
        let mut buf = Vec::new();
        rtp_packet(&mut buf, true, 0, 7, 160, 9, &ULAW_SILENCE);
        let h = parse_rtp(&buf).unwrap();
        assert!(h.marker);
        assert_eq!(
            (h.payload_type, h.seq, h.timestamp, h.ssrc, h.payload_offset),
            (0, 7, 160, 9, 12)
        );
    }

    #[test]
    fn tcp_framing() {
        let msg = b"SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabcSIP";
        assert_eq!(tcp_frame_len(msg), Some(msg.len() - 3));
        assert_eq!(
            tcp_frame_len(b"SIP/2.0 200 OK\r\nContent-Length: 9\r\n\r\nabc"),
            None
        );
    }
}

// ---------------------------------------------------------------------------------------
// Ports and temporary configuration
// ---------------------------------------------------------------------------------------

/// A port free on both UDP and TCP (the switch listens on both with one number).
fn free_sip_port() -> u16 {
    for _ in 0..50 {
        let Ok(udp) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else { continue };
        if TcpListener::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no free UDP+TCP port on 127.0.0.1 after 50 tries");
}

fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A test-specific RTP range: `slot` separates tests in one run, the pid separates runs
/// from parallel worktrees on the same machine. The pid picks one of 16 buckets of 1280
/// ports and a bucket holds 32 slots of 40 ports, so no slot reaches the next bucket
/// (40000..=60479 in all).
fn rtp_range(slot: u16) -> (u16, u16) {
    assert!(
        slot < 32,
        "RTP slot {slot} is outside the 32 slots a bucket holds"
    );
    let lo = 40000 + (std::process::id() % 16) as u16 * 1280 + slot * 40;
    (lo, lo + 39)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    for entry in entries.flatten() {
        let src = entry.path();
        let dst = to.join(entry.file_name());
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
    }
}

/// A private copy of the shipped configuration plus a database file, in a temp dir.
struct TestConfig {
    tmp: tempfile::TempDir,
    dir: PathBuf,
    db_url: String,
}

impl TestConfig {
    /// `rings`: 0 answers at once (fast tests), 1 keeps the shipped one-ring answer.
    fn new(rings: u8) -> TestConfig {
        let tmp = tempfile::Builder::new()
            .prefix("ccswitch-e2e-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().join("config");
        copy_dir(&manifest().join("config"), &dir);
        let main = dir.join("ccswitch.toml");
        let text = std::fs::read_to_string(&main).expect("read config/ccswitch.toml");
        assert!(
            text.contains("answer_after_rings = 1"),
            "config/ccswitch.toml must contain the line `answer_after_rings = 1`"
        );
        let text = text.replace(
            "answer_after_rings = 1",
            &format!("answer_after_rings = {rings}"),
        );
        std::fs::write(&main, text).expect("write ccswitch.toml");
        // A relative prompts dir resolves against the config dir's parent: point it home.
        #[cfg(unix)]
        {
            let _ =
                std::os::unix::fs::symlink(manifest().join("prompts"), tmp.path().join("prompts"));
        }
        let db_url = format!("sqlite:{}?mode=rwc", tmp.path().join("calls.db").display());
        TestConfig { tmp, dir, db_url }
    }

    fn main_file(&self) -> PathBuf {
        self.dir.join("ccswitch.toml")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `ccswitch report calls --format json`, parsed.
    fn report(&self) -> Value {
        let out = Command::new(bin())
            .args(["report", "calls", "--config"])
            .arg(&self.dir)
            .args(["--database", &self.db_url, "--format", "json"])
            .output()
            .expect("run ccswitch report");
        assert!(
            out.status.success(),
            "report failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("report JSON: {e}\n{}", String::from_utf8_lossy(&out.stdout))
        })
    }

    fn calls(&self) -> Vec<Value> {
        self.report()["calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// The switch process
// ---------------------------------------------------------------------------------------

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            if chars.peek() == Some(&'[') {
                chars.next();
                for c2 in chars.by_ref() {
                    if ('@'..='~').contains(&c2) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

struct Switch {
    child: Child,
    sip: SocketAddr,
    http: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    exited: Option<ExitStatus>,
}

impl Switch {
    fn start(cfg: &TestConfig, slot: u16) -> Switch {
        let sip_port = free_sip_port();
        let http_port = free_tcp_port();
        let (lo, hi) = rtp_range(slot);
        Self::start_on(cfg, sip_port, http_port, (lo, hi))
    }

    fn start_on(cfg: &TestConfig, sip_port: u16, http_port: u16, rtp: (u16, u16)) -> Switch {
        let sip: SocketAddr = format!("127.0.0.1:{sip_port}").parse().expect("addr");
        let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().expect("addr");
        let mut child = Command::new(bin())
            .arg("run")
            .arg("--config")
            .arg(&cfg.dir)
            .args(["--sip-listen", &sip.to_string()])
            .args(["--http-listen", &http.to_string()])
            .args(["--database", &cfg.db_url])
            .args(["--rtp-ports", &format!("{}-{}", rtp.0, rtp.1)])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ccswitch");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if !told && line.contains("SIP listening") {
                    told = true;
                    let _ = tx.send(());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let mut sw = Switch {
            child,
            sip,
            http,
            log,
            exited: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
            if let Ok(Some(st)) = sw.child.try_wait() {
                sw.exited = Some(st);
                panic!(
                    "ccswitch exited before listening ({st}):\n{}",
                    sw.log_tail(60)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "ccswitch did not log `SIP listening` within 20 s:\n{}",
                    sw.log_tail(60)
                );
            }
        }
        // HTTP may come up just after SIP: wait (bounded) until it accepts connections.
        let http_deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&sw.http, Duration::from_millis(500)).is_err() {
            assert!(
                Instant::now() < http_deadline,
                "HTTP {} not accepting within 10 s:\n{}",
                sw.http,
                sw.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let listening = sw
            .log_lines()
            .into_iter()
            .find(|l| l.contains("SIP listening"));
        if let Some(l) = listening {
            assert!(
                l.contains(&format!("udp={sip}")),
                "unexpected listening line: {l}"
            );
        }
        sw
    }

    fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.sip)
    }

    fn log_lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn log_tail(&self, n: usize) -> String {
        let lines = self.log_lines();
        let start = lines.len().saturating_sub(n);
        lines[start..].join("\n")
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, then wait up to `within`; SIGKILL if it is still there.
    fn terminate(&mut self, within: Duration) -> ExitStatus {
        if let Some(st) = self.exited {
            return st;
        }
        self.signal("-TERM");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exited = Some(st);
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let st = self.child.wait().expect("wait ccswitch");
        self.exited = Some(st);
        panic!(
            "ccswitch did not exit within {within:?} of SIGTERM:\n{}",
            self.log_tail(40)
        );
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        if let Ok(st) = self.child.wait() {
            self.exited = Some(st);
        }
    }

    fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.http_get("/metrics");
        metric_value(&body, name)
    }

    /// Polls /metrics until ccswitch_active_calls >= n (bounded).
    fn wait_active_calls(&self, n: f64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.metric("ccswitch_active_calls").unwrap_or(0.0) >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.signal("-TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- ccswitch log (tail) ---\n{}", self.log_tail(80));
        }
    }
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send HTTP request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = match text.find("\r\n\r\n") {
        Some(i) => text[i + 4..].to_string(),
        None => String::new(),
    };
    let chunked = text.lines().take_while(|l| !l.is_empty()).any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    (status, if chunked { dechunk(&body) } else { body })
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("\r\n") {
        let Ok(n) = usize::from_str_radix(rest[..i].trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < i + 2 + n {
            break;
        }
        out.push_str(&rest[i + 2..i + 2 + n]);
        rest = &rest[(i + 4 + n).min(rest.len())..];
    }
    out
}

/// Sum of all samples of a Prometheus metric (any labels).
fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = rest
            .split_whitespace()
            .last()
            .and_then(|v| v.parse::<f64>().ok())
        {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// PJSIP peers
// ---------------------------------------------------------------------------------------

static SETUP: Mutex<()> = Mutex::new(());

/// Runs `f` on the switch's database at `db_url` (seeding it, or reading what the switch
/// wrote), on a runtime of its own; the store is closed after.
fn with_store<T>(db_url: &str, f: impl AsyncFnOnce(&ccswitch::store::Store) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = ccswitch::store::Store::open(db_url)
            .await
            .expect("open the test database");
        let out = f(&store).await;
        store.close().await;
        out
    })
}

/// The venv's python with pjsua2, or None when the user asked to skip PJSIP tests.
fn pjsua_python() -> Option<PathBuf> {
    if std::env::var("CCSWITCH_E2E_SKIP_PJSUA").as_deref() == Ok("1") {
        eprintln!("CCSWITCH_E2E_SKIP_PJSUA=1: skipping a pjsua2 test");
        return None;
    }
    let venv = std::env::var_os("CCSWITCH_E2E_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join(".venv-e2e"));
    let python = venv.join("bin").join("python");
    let works = |p: &Path| {
        Command::new(p)
            .args(["-c", "import pjsua2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    if works(&python) {
        return Some(python);
    }
    // One attempt per test binary to make the venv ourselves (needs PyPI).
    let status = Command::new("bash")
        .arg(manifest().join("scripts/test-setup.sh"))
        .stdout(Stdio::null())
        .status();
    if status.map(|s| s.success()).unwrap_or(false) && works(&python) {
        return Some(python);
    }
    panic!(
        "pjsua2 is not available in {}: run scripts/test-setup.sh \
         (or set CCSWITCH_E2E_SKIP_PJSUA=1 to skip the PJSIP tests)",
        venv.display()
    );
}

fn script(name: &str) -> PathBuf {
    manifest().join("tests/e2e").join(name)
}

/// A running caller.py; `finish` collects its JSON summary.
struct PjCall {
    child: Child,
    out: std::sync::mpsc::Receiver<String>,
    err: Arc<Mutex<Vec<String>>>,
    bound: Duration,
    started: Instant,
}

#[derive(Default)]
struct CallerArgs<'a> {
    transport: &'a str,
    dtmf: String,
    dtmf_method: &'a str,
    hangup_after: f64,
    max_duration: f64,
    record: Option<PathBuf>,
    /// A WAV the caller speaks into the call.
    play: Option<PathBuf>,
    /// The caller's number (From user part); caller.py's default otherwise.
    from_user: Option<&'a str>,
}

fn spawn_caller(python: &Path, uri: &str, a: &CallerArgs) -> PjCall {
    let mut cmd = Command::new(python);
    cmd.arg(script("caller.py"))
        .args(["--uri", uri])
        .args([
            "--transport",
            if a.transport.is_empty() {
                "udp"
            } else {
                a.transport
            },
        ])
        .args(["--dtmf", &a.dtmf])
        .args([
            "--dtmf-method",
            if a.dtmf_method.is_empty() {
                "rfc4733"
            } else {
                a.dtmf_method
            },
        ])
        .args(["--hangup-after", &a.hangup_after.to_string()])
        .args(["--max-duration", &a.max_duration.to_string()]);
    if let Some(r) = &a.record {
        cmd.arg("--record").arg(r);
    }
    if let Some(u) = a.from_user {
        cmd.args(["--from-user", u]);
    }
    if let Some(p) = &a.play {
        // Looped, so the caller is still speaking when an agent joins minutes later.
        cmd.arg("--play").arg(p).arg("--loop");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn caller.py");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stdout).read_to_string(&mut s);
        let _ = tx.send(s);
    });
    let err = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&err);
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
        }
    });
    PjCall {
        child,
        out: rx,
        err,
        bound: Duration::from_secs_f64(a.max_duration + 20.0),
        started: Instant::now(),
    }
}

impl PjCall {
    fn stderr(&self) -> String {
        self.err.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    fn finish(mut self) -> Value {
        let left = self.bound.saturating_sub(self.started.elapsed());
        let text = match self.out.recv_timeout(left) {
            Ok(t) => t,
            Err(_) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "caller.py did not finish in {:?}:\n{}",
                    self.bound,
                    self.stderr()
                );
            }
        };
        let _ = self.child.wait();
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("");
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("caller.py summary ({e}): {text}\n{}", self.stderr()))
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PjCall {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Length of a shipped English prompt in seconds (falls back to `default`).
fn prompt_secs(id: &str, default: f64) -> f64 {
    let path = manifest().join("prompts/en").join(format!("{id}.wav"));
    match hound::WavReader::open(&path) {
        Ok(r) => {
            let spec = r.spec();
            r.duration() as f64 / spec.sample_rate.max(1) as f64
        }
        Err(_) => default,
    }
}

/// When to press keys, in seconds after answer, so each digit lands while the menu that
/// takes it is playing (menus accept barge-in; the greeting and the "closed" notice may not).
struct Timeline {
    language: f64,
    main: f64,
}

fn timeline() -> Timeline {
    let greeting = prompt_secs("greeting", 5.2);
    // Outside office hours a "closed" notice may come before the main menu; waiting for it
    // either way still lands inside the (long) main menu prompt.
    let closed = prompt_secs("closed", 9.0);
    let language = greeting + 1.5;
    Timeline {
        language,
        main: language + closed + 1.5,
    }
}

fn find_call<'a>(calls: &'a [Value], transport: &str) -> &'a Value {
    calls
        .iter()
        .find(|c| c["transport"] == transport)
        .unwrap_or_else(|| panic!("no {transport} call in report: {calls:#?}"))
}

fn path_has_digits(call: &Value, digits: &str) -> bool {
    call["ivr_path"]
        .as_array()
        .map(|p| p.iter().any(|s| s["digits"] == digits))
        .unwrap_or(false)
}

/// The recording contains this shipped English prompt near its start (energy-envelope
/// correlation, tests/e2e/audio_check.py): the caller heard *our* greeting, not noise.
fn assert_prompt_heard(python: &Path, wav: &Path, prompt: &str) {
    let reference = manifest().join("prompts/en").join(format!("{prompt}.wav"));
    let out = Command::new(python)
        .arg(script("audio_check.py"))
        .arg(wav)
        .arg("--reference")
        .arg(&reference)
        .args(["--max-lag-s", "3", "--min-correlation", "0.7"])
        .output()
        .expect("run audio_check.py");
    assert!(
        out.status.success(),
        "{prompt} not recognised in {}: {}{}",
        wav.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// Who hears whom: each party plays its own tone
// ---------------------------------------------------------------------------------------

/// The caller's tone in who-hears-whom checks. Neither tone is a DTMF frequency, and the
/// shipped hold music and prompts carry almost no energy at either (under 1 % and 4 %).
const CALLER_TONE_HZ: u32 = 700;
/// The agent's tone.
const AGENT_TONE_HZ: u32 = 1300;

/// An 8 kHz mono sine WAV of `hz` for a party to play (looped) into a call.
fn tone_wav(dir: &Path, hz: u32, secs: u32) -> PathBuf {
    let out = dir.join(format!("tone_{hz}.wav"));
    let ok = Command::new("sox")
        .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
        .arg(&out)
        .args(["synth", &secs.to_string(), "sine", &hz.to_string()])
        .args(["vol", "0.3"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "sox could not make a {hz} Hz tone (apt-get install -y sox)"
    );
    out
}

/// Seconds between two RFC 3339 timestamps of a call record (`later` - `earlier`).
fn record_secs_between(c: &Value, earlier: &str, later: &str) -> f64 {
    let at = |k: &str| {
        let text = c[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} missing from the call record: {c:#}"));
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|e| panic!("{k} = {text}: {e}"))
            .timestamp_millis()
    };
    (at(later) - at(earlier)) as f64 / 1000.0
}

/// What a party must hear in a recording, between `start` and `end` seconds of it.
struct Hears<'a> {
    /// Whose recording this is (for the failure message).
    who: &'a str,
    /// The tone that must dominate: the party they should hear.
    tone: u32,
    /// Tones that must be (nearly) absent: their own (an echo) and anyone they must not
    /// hear.
    not: &'a [u32],
    start: f64,
    end: Option<f64>,
}

/// tests/e2e/audio_check.py --hears: the verdict JSON, and whether it passed.
fn check_hears(python: &Path, wav: &Path, h: &Hears) -> (bool, Value) {
    let not: Vec<String> = h.not.iter().map(|t| t.to_string()).collect();
    let mut cmd = Command::new(python);
    cmd.arg(script("audio_check.py"))
        .arg(wav)
        .args(["--hears", &h.tone.to_string()])
        .args(["--not-hears", &not.join(",")])
        .args(["--start", &format!("{:.2}", h.start)]);
    if let Some(end) = h.end {
        cmd.args(["--end", &format!("{end:.2}")]);
    }
    let out = cmd.output().expect("run audio_check.py");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let verdict = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "audio_check.py --hears gave no JSON ({e}): {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), verdict)
}

/// The recording carries the other party's tone, in most of the window and with most of
/// the energy (not hold music or prompts), and not its own tone (no echo) nor any other
/// listed one. Reusable for any who-hears-whom question (bridge, whisper, barge).
fn assert_hears(python: &Path, wav: &Path, h: &Hears) {
    let (ok, verdict) = check_hears(python, wav, h);
    eprintln!("{} hears: {verdict}", h.who);
    assert!(
        ok,
        "{} should hear {} Hz and not {:?} in {} ({:.1} s to {:?} s): {}",
        h.who,
        h.tone,
        h.not,
        wav.display(),
        h.start,
        h.end,
        verdict["failures"]
    );
}

/// Both ways through the bridge, from the call record's timestamps: in the bridged window
/// (agent answered .. call ended, a second's margin each side) the caller's recording
/// (started at the caller's answer) carries the agent's tone and not its own, and the
/// agent's recording (started at the agent's answer) carries the caller's tone and not
/// its own.
fn assert_bridged_both_ways(python: &Path, c: &Value, caller_wav: &Path, agent_wav: &Path) {
    let bridged_from = record_secs_between(c, "answered_at", "agent_answered_at");
    let bridged_to = record_secs_between(c, "answered_at", "ended_at");
    let talk = record_secs_between(c, "agent_answered_at", "ended_at");
    assert!(
        talk > 3.0,
        "too short a bridge to judge ({talk:.1} s): {c:#}"
    );
    assert_hears(
        python,
        caller_wav,
        &Hears {
            who: "caller",
            tone: AGENT_TONE_HZ,
            not: &[CALLER_TONE_HZ],
            start: bridged_from + 1.0,
            end: Some(bridged_to - 1.0),
        },
    );
    assert_hears(
        python,
        agent_wav,
        &Hears {
            who: "agent",
            tone: CALLER_TONE_HZ,
            not: &[AGENT_TONE_HZ],
            start: 1.0,
            end: Some(talk - 1.0),
        },
    );
}

/// The who-hears-whom check on made-up recordings, without a switch: the other party's
/// tone passes; one's own tone (an echo), both tones mixed, the shipped hold music, a
/// prompt and silence all fail.
#[test]
fn hears_check_tells_the_parties_apart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let caller = tone_wav(dir, CALLER_TONE_HZ, 4);
    let agent = tone_wav(dir, AGENT_TONE_HZ, 4);
    let mixed = dir.join("mixed.wav");
    let st = Command::new("sox")
        .arg("-m")
        .arg(&caller)
        .arg(&agent)
        .arg(&mixed)
        .status();
    assert!(st.map(|s| s.success()).unwrap_or(false), "sox -m");
    let silence = dir.join("silence.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&silence, spec).expect("create silence.wav");
    for _ in 0..4 * 8000 {
        w.write_sample(0i16).expect("write");
    }
    w.finalize().expect("finalize silence.wav");
    let prompts = manifest().join("prompts/en");
    let caller_hears = |wav: &Path| {
        check_hears(
            Path::new("python3"),
            wav,
            &Hears {
                who: "caller",
                tone: AGENT_TONE_HZ,
                not: &[CALLER_TONE_HZ],
                start: 0.0,
                end: None,
            },
        )
    };
    assert!(
        caller_hears(&agent).0,
        "the agent's tone: {}",
        caller_hears(&agent).1
    );
    for wrong in [
        caller.clone(),
        mixed,
        silence,
        prompts.join("hold_music.wav"),
        prompts.join("greeting.wav"),
    ] {
        let (ok, verdict) = caller_hears(&wrong);
        assert!(
            !ok,
            "{} passed as the agent's tone: {verdict}",
            wrong.display()
        );
    }
}

fn assert_heard_speech(summary: &Value) {
    let audio = &summary["audio"];
    assert_eq!(
        audio["speech"], true,
        "caller should hear speech (greeting), got {audio}"
    );
}

// ---------------------------------------------------------------------------------------
// PJSIP tests
// ---------------------------------------------------------------------------------------

fn hours_call(transport: &str, method: &str, slot: u16) {
    let Some(py) = pjsua_python() else { return };
    let cfg = TestConfig::new(0);
    let mut sw = Switch::start(&cfg, slot);
    let t = timeline();
    // Hang up once the answer has been heard to its end (that is what resolves the question).
    let hangup = t.main + prompt_secs("hours", 7.4) + 2.0;
    let call = spawn_caller(
        &py,
        &sw.uri("100"),
        &CallerArgs {
            transport,
            dtmf: format!("1@{:.2}s,1@{:.2}s", t.language, t.main),
            dtmf_method: method,
            hangup_after: hangup,
            max_duration: hangup + 20.0,
            record: Some(cfg.path("heard.wav")),
            play: None,
            from_user: None,
        },
    );
    let summary = call.finish();
    eprintln!("caller summary: {summary}");
    assert_eq!(summary["confirmed"], true, "call not answered: {summary}");
    assert_eq!(summary["disconnected_by"], "local", "{summary}");
    assert_heard_speech(&summary);
    assert_prompt_heard(&py, &cfg.path("heard.wav"), "greeting");
    // RTP flowed for the whole call (50/s nominal; loose bound for a busy machine).
    let rx = summary["rtp"]["rx_pkt"].as_f64().unwrap_or(0.0);
    assert!(
        rx >= 20.0 * hangup,
        "{rx} RTP packets in {hangup:.0} s: {summary}"
    );
    assert_eq!(
        summary["digits_sent"].as_array().map(|a| a.len()),
        Some(2),
        "{summary}"
    );
    let st = sw.terminate(Duration::from_secs(30));
    assert!(st.success(), "ccswitch exit status {st}");
    let calls = cfg.calls();
    let c = find_call(&calls, transport);
    eprintln!("report: {c:#}");
    assert_eq!(c["within_three_rings"], true);
    assert!(
        c["answered_at"].is_string(),
        "answered_at: {}",
        c["answered_at"]
    );
    assert_eq!(c["ivr_outcome"], "self_served");
    assert_eq!(c["ended_by"], "caller");
    assert!(
        path_has_digits(c, "1"),
        "ivr_path lacks digit 1: {}",
        c["ivr_path"]
    );
}

/// (a) UDP, RFC 4733 digits: English, opening hours; the caller hangs up.
#[test]
fn pjsua_udp_rfc4733_opening_hours() {
    hours_call("udp", "rfc4733", 0);
}

/// (b) TCP, SIP INFO digits, same path.
#[test]
fn pjsua_tcp_sip_info_opening_hours() {
    hours_call("tcp", "info", 1);
}

/// (c) Order lookup: 5, then 12345# -> the order number is stored as a call variable.
#[test]
fn pjsua_order_lookup_sets_variable() {
    let Some(py) = pjsua_python() else { return };
    let cfg = TestConfig::new(0);
    let mut sw = Switch::start(&cfg, 2);
    let t = timeline();
    // Type the number once the "enter your order number" prompt is over (it may not take barge-in).
    let order_at = t.main + prompt_secs("order_prompt", 4.0) + 0.5;
    let hangup = order_at + 1.5 + 6.0;
    let call = spawn_caller(
        &py,
        &sw.uri("100"),
        &CallerArgs {
            transport: "udp",
            dtmf: format!(
                "1@{:.2}s,5@{:.2}s,12345#@{:.2}s",
                t.language, t.main, order_at
            ),
            dtmf_method: "rfc4733",
            hangup_after: hangup,
            max_duration: hangup + 20.0,
            record: Some(cfg.path("heard.wav")),
            play: None,
            from_user: None,
        },
    );
    let summary = call.finish();
    eprintln!("caller summary: {summary}");
    assert_eq!(summary["confirmed"], true, "{summary}");
    assert_heard_speech(&summary);
    assert!(sw.terminate(Duration::from_secs(30)).success());
    let calls = cfg.calls();
    let c = find_call(&calls, "udp");
    eprintln!("report: {c:#}");
    assert_eq!(
        c["variables"]["order_number"], "12345",
        "variables: {}",
        c["variables"]
    );
    assert!(
        path_has_digits(c, "5"),
        "ivr_path lacks 5: {}",
        c["ivr_path"]
    );
}

/// (f) SIGTERM during a call: the caller gets a BYE, the switch exits 0, the call is
/// recorded as ended by the system.
#[test]
fn sigterm_mid_call_sends_bye_and_exits_zero() {
    let Some(py) = pjsua_python() else { return };
    let cfg = TestConfig::new(0);
    let mut sw = Switch::start(&cfg, 3);
    let call = spawn_caller(
        &py,
        &sw.uri("100"),
        &CallerArgs {
            transport: "udp",
            max_duration: 40.0,
            ..Default::default()
        },
    );
    assert!(
        sw.wait_active_calls(1.0, Duration::from_secs(20)),
        "call never became active:\n{}",
        call.stderr()
    );
    std::thread::sleep(Duration::from_secs(2));
    let st = sw.terminate(Duration::from_secs(30));
    assert!(st.success(), "exit status after SIGTERM: {st}");
    let summary = call.finish();
    eprintln!("caller summary: {summary}");
    assert_eq!(summary["confirmed"], true, "{summary}");
    assert_eq!(
        summary["disconnected_by"], "remote",
        "caller should get BYE: {summary}"
    );
    let calls = cfg.calls();
    let c = find_call(&calls, "udp");
    assert_eq!(c["ended_by"], "system", "{c:#}");
    assert!(c["ended_at"].is_string(), "{c:#}");
}

/// (g) kill -9 mid-call, then restart on the same database: the orphaned call is closed
/// as failed by the system.
#[test]
fn kill9_mid_call_then_restart_closes_call_as_failed() {
    let Some(py) = pjsua_python() else { return };
    let cfg = TestConfig::new(0);
    let mut sw = Switch::start(&cfg, 4);
    let call = spawn_caller(
        &py,
        &sw.uri("100"),
        &CallerArgs {
            transport: "udp",
            max_duration: 30.0,
            ..Default::default()
        },
    );
    assert!(
        sw.wait_active_calls(1.0, Duration::from_secs(20)),
        "call never became active:\n{}",
        call.stderr()
    );
    // Let the batched writer store the start and answer rows.
    std::thread::sleep(Duration::from_secs(3));
    sw.kill9();
    call.kill();
    let mut sw2 = Switch::start(&cfg, 5);
    assert!(sw2.terminate(Duration::from_secs(30)).success());
    let calls = cfg.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let c = &calls[0];
    eprintln!("report: {c:#}");
    assert!(
        c["ended_at"].is_string(),
        "unfinished call not closed: {c:#}"
    );
    assert_eq!(c["ended_by"], "system");
    assert_eq!(c["ivr_outcome"], "failed");
}

/// `ring_cycle_ms` from the test's copy of ccswitch.toml.
fn ring_cycle_ms(cfg: &TestConfig) -> f64 {
    let text = std::fs::read_to_string(cfg.main_file()).expect("read ccswitch.toml");
    let table: toml::Table = text.parse().expect("ccswitch.toml parses");
    let find = |t: &toml::Table| t.get("ring_cycle_ms").and_then(|v| v.as_integer());
    find(&table)
        .or_else(|| table.values().filter_map(|v| v.as_table()).find_map(find))
        .expect("ring_cycle_ms in ccswitch.toml") as f64
}

/// A 180 came, then the 200 after `rings` ring cycles: no sooner than the cycles less a
/// second, and sooner than half a cycle more (so one more ring would fail).
fn assert_answered_after_rings(summary: &Value, rings: u32, cycle_ms: f64) {
    let t180 = summary["invite_to_180_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no 180 received: {summary}"));
    let t200 = summary["invite_to_200_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no 200 received: {summary}"));
    let expected = f64::from(rings) * cycle_ms;
    let ringing = t200 - t180;
    eprintln!("180 -> 200: {ringing:.0} ms ({rings} x {cycle_ms:.0} ms configured)");
    assert!(t180 < t200, "180 must come before 200: {summary}");
    assert!(
        ringing >= expected - 1000.0 && ringing < expected + cycle_ms / 2.0,
        "200 should follow {rings} ring cycle(s) of {cycle_ms:.0} ms after the 180, \
         came after {ringing:.0} ms: {summary}"
    );
}

/// The bound tells one ring from two, and a missing 180 is a failure (not a pass).
#[test]
fn ring_bound_refuses_two_rings_and_a_missing_180() {
    let one = serde_json::json!({"invite_to_180_ms": 3.0, "invite_to_200_ms": 6010.0});
    assert_answered_after_rings(&one, 1, 6000.0);
    for wrong in [
        serde_json::json!({"invite_to_180_ms": 3.0, "invite_to_200_ms": 12010.0}),
        serde_json::json!({"invite_to_180_ms": 3.0, "invite_to_200_ms": 40.0}),
        serde_json::json!({"invite_to_200_ms": 6010.0}),
    ] {
        let caught = std::panic::catch_unwind(|| assert_answered_after_rings(&wrong, 1, 6000.0));
        assert!(caught.is_err(), "accepted {wrong}");
    }
    let caught = std::panic::catch_unwind(|| {
        assert_180_before_200(&serde_json::json!({"invite_to_200_ms": 900.0}))
    });
    assert!(caught.is_err(), "a summary without a 180 passed");
}

/// Both a 180 and a 200 arrived, in that order (a missing 180 fails).
fn assert_180_before_200(summary: &Value) {
    let t180 = summary["invite_to_180_ms"].as_f64();
    let t200 = summary["invite_to_200_ms"].as_f64();
    match (t180, t200) {
        (Some(a), Some(b)) => assert!(a < b, "180 must come before 200: {summary}"),
        _ => panic!("both a 180 and a 200 expected: {summary}"),
    }
}

/// (h) The shipped answer policy (one ring): 180 at once, 200 after one configured ring
/// cycle (not two).
#[test]
fn one_ring_answer_sends_180_then_200() {
    let Some(py) = pjsua_python() else { return };
    let cfg = TestConfig::new(1);
    let mut sw = Switch::start(&cfg, 6);
    let call = spawn_caller(
        &py,
        &sw.uri("100"),
        &CallerArgs {
            transport: "udp",
            hangup_after: 2.0,
            max_duration: 40.0,
            ..Default::default()
        },
    );
    let summary = call.finish();
    eprintln!("caller summary: {summary}");
    assert_eq!(summary["confirmed"], true, "{summary}");
    assert_answered_after_rings(&summary, 1, ring_cycle_ms(&cfg));
    assert!(sw.terminate(Duration::from_secs(30)).success());
    let calls = cfg.calls();
    let c = find_call(&calls, "udp");
    assert_eq!(c["within_three_rings"], true, "{c:#}");
}

// ---------------------------------------------------------------------------------------
// Raw Rust caller: packet-level RTP checks
// ---------------------------------------------------------------------------------------

struct RawCall {
    sip: UdpSocket,
    rtp: UdpSocket,
    ids: sipwire::CallIds,
    switch: SocketAddr,
    to_hdr: String,
    target: String,
    answer: sipwire::Answer,
    cseq: u32,
    responses: Vec<(u16, Duration)>,
    branch_seq: u64,
}

#[derive(Default, Debug)]
struct RtpSeen {
    packets: usize,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    first_marker: Option<bool>,
    payload_types: std::collections::BTreeSet<u8>,
    ssrcs: std::collections::BTreeSet<u32>,
    seq_breaks: usize,
    ts_not_160_multiple: usize,
    ts_backwards: usize,
    voiced_frames: usize,
    max_rms: f64,
    last: Option<sipwire::RtpHeader>,
}

impl RawCall {
    fn branch(&mut self) -> String {
        self.branch_seq += 1;
        format!("z9hG4bKraw{:x}{}", std::process::id(), self.branch_seq)
    }

    /// INVITE, wait for the final response (bounded), ACK a 2xx.
    fn dial(switch: SocketAddr, user: &str) -> RawCall {
        let sip = UdpSocket::bind("127.0.0.1:0").expect("bind sip");
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind rtp");
        let local = sip.local_addr().expect("local");
        let uri = format!("sip:{user}@{switch}");
        let tag = (std::process::id() as u64) << 20 | local.port() as u64;
        let ids = sipwire::CallIds::new(tag, local, &uri, "5550000");
        let mut call = RawCall {
            sip,
            rtp,
            ids,
            switch,
            to_hdr: String::new(),
            target: uri,
            answer: sipwire::Answer {
                rtp: switch,
                payload_type: 0,
                telephone_event: None,
            },
            cseq: 1,
            responses: Vec::new(),
            branch_seq: 0,
        };
        let branch = call.branch();
        let rtp_addr = call.rtp.local_addr().expect("rtp addr");
        let invite = call.ids.invite(&branch, 1, rtp_addr);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(30);
        let mut next_retx = start + Duration::from_millis(500);
        let mut interval = Duration::from_millis(500);
        let mut provisional = false;
        call.sip.send_to(&invite, switch).expect("send INVITE");
        let _ = call.sip.set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf = vec![0u8; 65536];
        loop {
            assert!(
                Instant::now() < deadline,
                "no final response to INVITE within 30 s"
            );
            if !provisional && Instant::now() >= next_retx {
                let _ = call.sip.send_to(&invite, switch);
                interval = (interval * 2).min(Duration::from_secs(4));
                next_retx = Instant::now() + interval;
            }
            let Ok((n, _)) = call.sip.recv_from(&mut buf) else {
                continue;
            };
            let Some(msg) = sipwire::parse(&buf[..n]) else {
                continue;
            };
            let Some(status) = msg.status else { continue };
            if msg.call_id() != Some(call.ids.call_id.as_str()) {
                continue;
            }
            call.responses.push((status, start.elapsed()));
            if status < 200 {
                provisional = true;
                continue;
            }
            let to = msg.header("to").unwrap_or("").to_string();
            if status >= 300 {
                let _ = call
                    .sip
                    .send_to(&call.ids.ack_non2xx(&to, 1, &branch), switch);
                panic!(
                    "INVITE rejected with {status}: {}",
                    String::from_utf8_lossy(&buf[..n])
                );
            }
            call.to_hdr = to;
            if let Some(c) = msg.contact_uri() {
                call.target = c;
            }
            call.answer = sipwire::parse_answer(&msg.body)
                .unwrap_or_else(|| panic!("200 OK without usable SDP: {}", msg.body));
            let b = call.branch();
            let ack = call.ids.ack_2xx(&call.target, &call.to_hdr, 1, &b);
            call.sip.send_to(&ack, switch).expect("send ACK");
            return call;
        }
    }

    /// Sends 20 ms silence (and RFC 4733 digits at the given offsets) while recording what
    /// arrives, for `secs`. Re-ACKs a retransmitted 200; answers a BYE.
    fn media(&mut self, secs: f64, digits: &[(f64, char)]) -> (RtpSeen, bool) {
        let _ = self.rtp.set_read_timeout(Some(Duration::from_millis(2)));
        let _ = self.sip.set_nonblocking(true);
        let mut seen = RtpSeen::default();
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        let ssrc = 0x5eed_0001u32;
        let mut seq: u16 = 1000;
        let mut tick: u64 = 0;
        let mut pkt = Vec::with_capacity(200);
        let mut buf = vec![0u8; 2048];
        let te = self.answer.telephone_event.unwrap_or(101);
        // (first tick, digit): 5 progress packets then 3 end packets, one per tick.
        let mut pending: Vec<(u64, char)> = digits
            .iter()
            .map(|(s, d)| ((s * 50.0) as u64, *d))
            .collect();
        let mut event: Option<(u64, u8)> = None;
        let mut got_bye = false;
        while Instant::now() < end && !got_bye {
            let due = start + Duration::from_millis(20 * tick);
            if Instant::now() >= due {
                if event.is_none() {
                    if let Some(pos) = pending.iter().position(|(t, _)| *t <= tick) {
                        let (_, d) = pending.remove(pos);
                        if let Some(e) = sipwire::digit_event(d) {
                            event = Some((tick, e));
                        }
                    }
                }
                let ts = (tick as u32).wrapping_mul(160);
                match event {
                    Some((t0, e)) => {
                        let i = tick - t0;
                        let end_pkt = i >= 5;
                        let dur = (((i.min(5)) + 1) * 160) as u16;
                        let payload = sipwire::rfc4733_payload(e, end_pkt, dur);
                        sipwire::rtp_packet(
                            &mut pkt,
                            i == 0,
                            te,
                            seq,
                            (t0 as u32) * 160,
                            ssrc,
                            &payload,
                        );
                        if i >= 7 {
                            event = None;
                        }
                    }
                    None => {
                        sipwire::rtp_packet(
                            &mut pkt,
                            tick == 0,
                            0,
                            seq,
                            ts,
                            ssrc,
                            &sipwire::ULAW_SILENCE,
                        );
                    }
                }
                let _ = self.rtp.send_to(&pkt, self.answer.rtp);
                seq = seq.wrapping_add(1);
                tick += 1;
            }
            if let Ok((n, _)) = self.rtp.recv_from(&mut buf) {
                let now = Instant::now();
                if let Some(h) = sipwire::parse_rtp(&buf[..n]) {
                    seen.packets += 1;
                    seen.first_at.get_or_insert(now);
                    seen.last_at = Some(now);
                    seen.first_marker.get_or_insert(h.marker);
                    seen.payload_types.insert(h.payload_type);
                    seen.ssrcs.insert(h.ssrc);
                    if let Some(prev) = seen.last {
                        if h.seq != prev.seq.wrapping_add(1) {
                            seen.seq_breaks += 1;
                        }
                        let dts = h.timestamp.wrapping_sub(prev.timestamp);
                        if dts > u32::MAX / 2 {
                            seen.ts_backwards += 1;
                        } else if dts % 160 != 0 {
                            seen.ts_not_160_multiple += 1;
                        }
                    }
                    seen.last = Some(h);
                    if h.payload_type == 0 {
                        let rms = sipwire::ulaw_rms(buf.get(h.payload_offset..n).unwrap_or(&[]));
                        if rms > 300.0 {
                            seen.voiced_frames += 1;
                        }
                        seen.max_rms = seen.max_rms.max(rms);
                    }
                }
            }
            if let Ok((n, from)) = self.sip.recv_from(&mut buf) {
                if let Some(msg) = sipwire::parse(&buf[..n]) {
                    if msg.status == Some(200) && msg.cseq().map(|c| c.1) == Some("INVITE".into()) {
                        let b = self.branch();
                        let ack = self.ids.ack_2xx(&self.target, &self.to_hdr, 1, &b);
                        let _ = self.sip.send_to(&ack, self.switch);
                    } else if msg.method == "BYE" {
                        let _ = self.sip.send_to(&msg.response(200, "OK"), from);
                        got_bye = true;
                    }
                }
            }
        }
        let _ = self.sip.set_nonblocking(false);
        (seen, got_bye)
    }

    /// BYE and wait (bounded) for its 200.
    fn hang_up(&mut self) -> Option<u16> {
        self.cseq += 1;
        let b = self.branch();
        let bye = self.ids.bye(&self.target, &self.to_hdr, self.cseq, &b);
        let _ = self.sip.set_read_timeout(Some(Duration::from_millis(100)));
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut next = Instant::now();
        let mut interval = Duration::from_millis(500);
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if Instant::now() >= next {
                let _ = self.sip.send_to(&bye, self.switch);
                next = Instant::now() + interval;
                interval = (interval * 2).min(Duration::from_secs(4));
            }
            if let Ok((n, _)) = self.sip.recv_from(&mut buf) {
                if let Some(msg) = sipwire::parse(&buf[..n]) {
                    if msg.cseq().map(|c| c.1) == Some("BYE".into()) {
                        if let Some(s) = msg.status.filter(|s| *s >= 200) {
                            return Some(s);
                        }
                    }
                }
            }
        }
        None
    }
}

/// (d) A raw caller checks RTP from the switch at the packet level and sends an RFC 4733
/// digit that the IVR must see.
#[test]
fn raw_caller_rtp_pacing_pcmu_continuity_and_rfc4733() {
    let cfg = TestConfig::new(0);
    let mut sw = Switch::start(&cfg, 7);
    let mut call = RawCall::dial(sw.sip, "100");
    eprintln!("responses: {:?}", call.responses);
    assert_eq!(
        call.answer.payload_type, 0,
        "PCMU first in our offer should be chosen"
    );
    let press = prompt_secs("greeting", 5.2) + 1.5;
    let (seen, got_bye) = call.media(press + 2.5, &[(press, '1')]);
    assert!(!got_bye, "switch hung up during the IVR");
    let span = match (seen.first_at, seen.last_at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    let pps = if span > 0.0 {
        (seen.packets as f64 - 1.0) / span
    } else {
        0.0
    };
    eprintln!("RTP from switch: {seen:?}; {pps:.1} packets/s over {span:.2} s");
    assert!(
        span > 4.0,
        "RTP should flow for the whole call ({span:.2} s)"
    );
    // 50 packets/s, with generous room for a loaded machine.
    assert!(
        (35.0..=60.0).contains(&pps),
        "expected ~50 packets/s, got {pps:.1}"
    );
    assert_eq!(
        seen.first_marker,
        Some(true),
        "first RTP packet must carry the marker bit"
    );
    assert!(
        seen.payload_types.contains(&0),
        "PCMU expected: {:?}",
        seen.payload_types
    );
    assert_eq!(
        seen.ssrcs.len(),
        1,
        "one SSRC across prompts: {:?}",
        seen.ssrcs
    );
    assert_eq!(
        seen.seq_breaks, 0,
        "RTP sequence numbers must be continuous"
    );
    assert_eq!(seen.ts_backwards, 0, "RTP timestamps must not go backwards");
    assert_eq!(
        seen.ts_not_160_multiple, 0,
        "timestamps advance in 20 ms frames"
    );
    assert!(
        seen.voiced_frames >= 25,
        "greeting should be speech: {} voiced frames, max RMS {:.0}",
        seen.voiced_frames,
        seen.max_rms
    );
    assert_eq!(call.hang_up(), Some(200), "BYE should get 200");
    assert!(sw.terminate(Duration::from_secs(30)).success());
    let calls = cfg.calls();
    let c = find_call(&calls, "udp");
    eprintln!("report: {c:#}");
    assert_eq!(c["ended_by"], "caller");
    assert!(
        path_has_digits(c, "1"),
        "RFC 4733 digit 1 from the raw caller missing: {}",
        c["ivr_path"]
    );
}

/// (i) /health and /metrics, after one call so the media counters exist.
#[test]
fn health_and_metrics_endpoints() {
    let cfg = TestConfig::new(0);
    let mut sw = Switch::start(&cfg, 8);
    let (status, body) = sw.http_get("/health");
    assert_eq!(status, 200);
    assert_eq!(body.trim(), "ok");
    let mut call = RawCall::dial(sw.sip, "100");
    let (seen, _) = call.media(1.5, &[]);
    assert!(seen.packets > 0, "no RTP during the call");
    let during = sw.metric("ccswitch_active_calls");
    assert_eq!(call.hang_up(), Some(200));
    let (status, text) = sw.http_get("/metrics");
    assert_eq!(status, 200);
    for name in [
        "ccswitch_sip_messages_received_total",
        "ccswitch_active_calls",
        "ccswitch_rtp_late_frames_total",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    assert_eq!(during, Some(1.0), "one active call during the call");
    assert!(
        metric_value(&text, "ccswitch_sip_messages_received_total").unwrap_or(0.0) >= 3.0,
        "INVITE, ACK, BYE at least"
    );
    assert!(sw.terminate(Duration::from_secs(30)).success());
}

// ---------------------------------------------------------------------------------------
// check-config
// ---------------------------------------------------------------------------------------

/// (e) The shipped config validates; a broken copy fails naming the file and the key.
#[test]
fn check_config_accepts_shipped_and_names_faults() {
    let ok = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(manifest().join("config"))
        .output()
        .expect("run check-config");
    assert!(
        ok.status.success(),
        "shipped config rejected: {}\n{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );

    // More rings than the three-ring promise allows.
    let cfg = TestConfig::new(1);
    let text = std::fs::read_to_string(cfg.main_file()).expect("read");
    std::fs::write(
        cfg.main_file(),
        text.replace("answer_after_rings = 1", "answer_after_rings = 7"),
    )
    .expect("write");
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&cfg.dir)
        .output()
        .expect("run check-config");
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "7 rings accepted: {msg}");
    assert!(
        msg.contains("ccswitch.toml"),
        "error should name the file: {msg}"
    );
    assert!(
        msg.contains("answer_after_rings"),
        "error should name the key: {msg}"
    );

    // An unknown key is refused, not ignored.
    let cfg = TestConfig::new(1);
    let text = std::fs::read_to_string(cfg.main_file()).expect("read");
    std::fs::write(cfg.main_file(), format!("bogus_setting = 1\n{text}")).expect("write");
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&cfg.dir)
        .output()
        .expect("run check-config");
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "unknown key accepted: {msg}");
    assert!(
        msg.contains("ccswitch.toml"),
        "error should name the file: {msg}"
    );
    assert!(
        msg.contains("bogus_setting"),
        "error should name the key: {msg}"
    );
}

// ---------------------------------------------------------------------------------------
// Peer self-tests: prove the test peers against each other, without the switch
// ---------------------------------------------------------------------------------------

/// A speech WAV for the answering peer: the shipped greeting, or one made with espeak-ng.
fn speech_wav(dir: &Path) -> PathBuf {
    let shipped = manifest().join("prompts/en/greeting.wav");
    if shipped.exists() {
        return shipped;
    }
    let out = dir.join("speech.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(&out)
        .arg("Thank you for calling. For opening hours, press one. For our address, press two.")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "espeak-ng is needed to make a speech WAV (apt-get install -y espeak-ng)"
    );
    out
}

/// uas.py in the background; reads its "listening" line for the port.
struct Uas {
    child: Child,
    port: u16,
    out: std::sync::mpsc::Receiver<String>,
}

impl Uas {
    fn start(python: &Path, transport: &str, extra: &[&str]) -> Uas {
        let mut child = Command::new(python)
            .arg(script("uas.py"))
            .args(["--transport", transport, "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn uas.py");
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("uas.py did not report its port");
        let v: Value = serde_json::from_str(&first).expect("uas.py listening JSON");
        let port = v["port"].as_u64().expect("port") as u16;
        Uas {
            child,
            port,
            out: rx,
        }
    }

    fn finish(mut self, within: Duration) -> Value {
        let line = self
            .out
            .recv_timeout(within)
            .unwrap_or_else(|_| panic!("uas.py gave no summary in {within:?}"));
        let _ = self.child.wait();
        serde_json::from_str(&line).expect("uas.py summary JSON")
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn peers_selftest(transport: &str, method: &str) {
    let Some(py) = pjsua_python() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let wav = speech_wav(tmp.path());
    let wav = wav.to_string_lossy().to_string();
    let uas = Uas::start(
        &py,
        "both",
        &[
            "--answer-after",
            "1",
            "--play",
            &wav,
            "--loop",
            "--calls",
            "1",
            "--max-duration",
            "40",
        ],
    );
    let call = spawn_caller(
        &py,
        &format!("sip:agent@127.0.0.1:{}", uas.port),
        &CallerArgs {
            transport,
            dtmf: "1@1s,12#@2s".into(),
            dtmf_method: method,
            hangup_after: 4.0,
            max_duration: 30.0,
            record: Some(tmp.path().join("heard.wav")),
            play: None,
            from_user: None,
        },
    );
    let summary = call.finish();
    let far = uas.finish(Duration::from_secs(20));
    eprintln!("caller: {summary}\nuas: {far}");
    assert_eq!(summary["confirmed"], true);
    assert_eq!(summary["disconnected_by"], "local");
    assert_180_before_200(&summary);
    assert_heard_speech(&summary);
    let rx = summary["rtp"]["rx_pkt"].as_u64().unwrap_or(0);
    assert!(rx >= 100, "about 50 packets/s for 4 s expected, got {rx}");
    let digits: String = far["calls"][0]["digits"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["digit"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(digits, "112#", "digits the UAS received: {far}");
    let methods: Vec<&str> = far["calls"][0]["digits"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["method"].as_str()).collect())
        .unwrap_or_default();
    assert!(methods.iter().all(|m| *m == method), "{methods:?}");
}

#[test]
fn peers_selftest_udp_rfc4733() {
    peers_selftest("udp", "rfc4733");
}

#[test]
fn peers_selftest_tcp_sip_info() {
    peers_selftest("tcp", "info");
}

/// The raw Rust caller against PJSIP: its SIP, RTP and RFC 4733 are understood by an
/// independent stack.
#[test]
fn raw_caller_selftest_against_pjsua() {
    let Some(py) = pjsua_python() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let wav = speech_wav(tmp.path()).to_string_lossy().to_string();
    let uas = Uas::start(
        &py,
        "udp",
        &[
            "--answer-after",
            "0.3",
            "--play",
            &wav,
            "--loop",
            "--calls",
            "1",
            "--max-duration",
            "40",
        ],
    );
    let switch: SocketAddr = format!("127.0.0.1:{}", uas.port).parse().expect("addr");
    let mut call = RawCall::dial(switch, "agent");
    let statuses: Vec<u16> = call.responses.iter().map(|r| r.0).collect();
    assert!(statuses.contains(&180), "{statuses:?}");
    let (seen, got_bye) = call.media(4.0, &[(1.0, '5'), (2.0, '#')]);
    assert!(!got_bye);
    eprintln!("RTP from pjsua: {seen:?}");
    assert!(seen.packets >= 120, "~50 packets/s expected: {seen:?}");
    assert_eq!(seen.seq_breaks, 0);
    assert!(seen.voiced_frames >= 25, "{seen:?}");
    assert_eq!(call.hang_up(), Some(200));
    let far = uas.finish(Duration::from_secs(20));
    eprintln!("uas: {far}");
    let digits: String = far["calls"][0]["digits"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["digit"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(digits, "5#", "{far}");
    assert_eq!(far["calls"][0]["disconnected_by"], "remote");
}

// ---------------------------------------------------------------------------------------
// baresip: a second, independent SIP stack
// ---------------------------------------------------------------------------------------

/// Dials `uri` with a headless baresip (its own config dir under `dir`), talks `secs` s,
/// then quits (BYE). Returns baresip's output and the WAV of what it heard, if any.
fn baresip_call(dir: &Path, uri: &str, secs: u32) -> Option<(String, Option<PathBuf>)> {
    if std::env::var("CCSWITCH_E2E_SKIP_BARESIP").as_deref() == Ok("1") {
        eprintln!("CCSWITCH_E2E_SKIP_BARESIP=1: skipping a baresip test");
        return None;
    }
    let has = Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        has,
        "baresip is not installed: apt-get install -y baresip-core \
         (or set CCSWITCH_E2E_SKIP_BARESIP=1)"
    );
    let conf = dir.join("baresip");
    let snd = dir.join("baresip-snd");
    std::fs::create_dir_all(&conf).expect("mkdir baresip conf");
    std::fs::create_dir_all(&snd).expect("mkdir baresip snd");
    let source = speech_wav_8k(dir);
    let modules = [
        "/usr/lib/baresip/modules",
        "/usr/lib/x86_64-linux-gnu/baresip/modules",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .unwrap_or("/usr/lib/baresip/modules");
    // aufile speaks a WAV, aubridge is a null player, sndfile dumps what is heard.
    let config = format!(
        "poll_method epoll\n\
         sip_listen 127.0.0.1:0\n\
         audio_player aubridge,nil\n\
         audio_source aufile,{}\n\
         audio_alert aubridge,nil\n\
         rtp_ports 31000-31999\n\
         module_path {modules}\n\
         module g711.so\n\
         module aubridge.so\n\
         module aufile.so\n\
         module sndfile.so\n\
         module_app account.so\n\
         module_app menu.so\n\
         snd_path {}\n",
        source.display(),
        snd.display()
    );
    std::fs::write(conf.join("config"), config).expect("write baresip config");
    std::fs::write(conf.join("accounts"), "<sip:baresip@127.0.0.1>;regint=0\n").expect("accounts");
    std::fs::write(conf.join("contacts"), "").expect("contacts");
    let mut child = Command::new("baresip")
        .arg("-f")
        .arg(&conf)
        .args(["-e", &format!("/dial {uri}"), "-t", &secs.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baresip");
    let mut out = String::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    match rx.recv_timeout(Duration::from_secs(secs as u64 + 20)) {
        Ok(s) => out.push_str(&s),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("baresip did not quit within {} s", secs + 20);
        }
    }
    let _ = child.wait();
    let heard = std::fs::read_dir(&snd).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
    });
    Some((out, heard))
}

/// An 8 kHz speech WAV (baresip's aufile source plays it at the call's rate).
fn speech_wav_8k(dir: &Path) -> PathBuf {
    let src = speech_wav(dir);
    if let Ok(r) = hound::WavReader::open(&src) {
        if r.spec().sample_rate == 8000 && r.spec().channels == 1 {
            return src;
        }
    }
    let out = dir.join("speech8k.wav");
    let ok = Command::new("sox")
        .arg(&src)
        .args(["-r", "8000", "-c", "1", "-b", "16"])
        .arg(&out)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "sox is needed to convert {} (apt-get install -y sox)",
        src.display()
    );
    out
}

fn assert_wav_is_speech(py: Option<&Path>, wav: &Path) {
    let python = py
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let out = Command::new(python)
        .arg(script("audio_check.py"))
        .arg(wav)
        .output()
        .expect("run audio_check.py");
    assert!(
        out.status.success(),
        "not speech: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// baresip against the PJSIP answering peer: proves the baresip harness itself.
#[test]
fn baresip_selftest_against_pjsua() {
    let Some(py) = pjsua_python() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let wav = speech_wav(tmp.path()).to_string_lossy().to_string();
    let uas = Uas::start(
        &py,
        "udp",
        &[
            "--answer-after",
            "0.3",
            "--play",
            &wav,
            "--loop",
            "--calls",
            "1",
            "--max-duration",
            "40",
        ],
    );
    let Some((out, heard)) =
        baresip_call(tmp.path(), &format!("sip:agent@127.0.0.1:{}", uas.port), 5)
    else {
        return;
    };
    assert!(out.contains("Call established"), "baresip output:\n{out}");
    let heard = heard.unwrap_or_else(|| panic!("baresip wrote no recording:\n{out}"));
    assert_wav_is_speech(Some(&py), &heard);
    let far = uas.finish(Duration::from_secs(20));
    assert_eq!(far["calls"][0]["confirmed"], true, "{far}");
    assert_eq!(far["calls"][0]["disconnected_by"], "remote", "{far}");
}

/// baresip calls the switch: answered, greeting heard, hangup recorded as the caller's.
#[test]
fn baresip_call_hears_greeting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = TestConfig::new(0);
    let mut sw = Switch::start(&cfg, 9);
    let Some((out, heard)) = baresip_call(tmp.path(), &sw.uri("100"), 6) else {
        return;
    };
    assert!(out.contains("Call established"), "baresip output:\n{out}");
    let heard = heard.unwrap_or_else(|| panic!("baresip wrote no recording:\n{out}"));
    assert_wav_is_speech(None, &heard);
    assert_prompt_heard(Path::new("python3"), &heard, "greeting");
    assert!(sw.terminate(Duration::from_secs(30)).success());
    let calls = cfg.calls();
    let c = find_call(&calls, "udp");
    assert!(c["answered_at"].is_string(), "{c:#}");
    assert_eq!(c["ended_by"], "caller", "{c:#}");
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

/// A fresh database on the local PostgreSQL (127.0.0.1:5432, trust auth), dropped on Drop.
struct PgDb {
    name: String,
    url: String,
}

fn psql(db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ])
        .output()
        .map_err(|e| format!("psql: {e} (apt-get install -y postgresql-client)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

impl PgDb {
    fn create() -> Option<PgDb> {
        if std::env::var("CCSWITCH_TEST_SKIP_POSTGRES").as_deref() == Ok("1") {
            eprintln!("CCSWITCH_TEST_SKIP_POSTGRES=1: skipping a PostgreSQL test");
            return None;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("ccswitch_test_{}_{nanos}", std::process::id());
        if let Err(e) = psql("postgres", &format!("CREATE DATABASE {name}")) {
            panic!(
                "cannot create a PostgreSQL database on 127.0.0.1:5432: {e}\n\
                 (start PostgreSQL, or set CCSWITCH_TEST_SKIP_POSTGRES=1)"
            );
        }
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        Some(PgDb { name, url })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The same call flow stored in PostgreSQL: the record and its IVR path come back in the
/// report, and the tables exist (migrations ran).
#[test]
fn postgres_store_records_call() {
    let Some(pg) = PgDb::create() else { return };
    let mut cfg = TestConfig::new(0);
    cfg.db_url = pg.url.clone();
    let mut sw = Switch::start(&cfg, 10);
    let mut call = RawCall::dial(sw.sip, "100");
    let press = prompt_secs("greeting", 5.2) + 1.5;
    let (seen, _) = call.media(press + 2.0, &[(press, '1')]);
    assert!(seen.packets > 0, "no RTP");
    assert_eq!(call.hang_up(), Some(200));
    assert!(sw.terminate(Duration::from_secs(30)).success());
    let calls = cfg.calls();
    let c = find_call(&calls, "udp");
    eprintln!("report: {c:#}");
    assert_eq!(c["ended_by"], "caller");
    assert!(c["answered_at"].is_string());
    assert!(path_has_digits(c, "1"), "{}", c["ivr_path"]);
    let tables = psql(&pg.name, "SELECT count(*) FROM calls").expect("calls table");
    assert_eq!(tables.trim(), "1");
}

// ---------------------------------------------------------------------------------------
// RFC 4475 torture battery against the running switch
// ---------------------------------------------------------------------------------------

fn torture_files(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = manifest().join("tests/data/sip").join(kind);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sip"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            (name, std::fs::read(&p).expect("fixture"))
        })
        .collect();
    out.sort();
    out
}

/// Sends one datagram and collects the status codes of what comes back within `wait`.
fn statuses_for(sock: &UdpSocket, to: SocketAddr, msg: &[u8], wait: Duration) -> Vec<u16> {
    sock.send_to(msg, to).expect("send");
    statuses_for_no_send(sock, wait)
}

/// The status codes of the responses arriving on `sock` within `wait`.
fn statuses_for_no_send(sock: &UdpSocket, wait: Duration) -> Vec<u16> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(code) = text
                    .strip_prefix("SIP/2.0 ")
                    .and_then(|r| r.get(..3))
                    .and_then(|c| c.parse().ok())
                {
                    got.push(code);
                }
            }
            Err(_) => break,
        }
    }
    got
}

/// What the running switch does with one RFC 4475 fixture sent over UDP: the first final
/// status it answers with, or no answer at all (a response with no transaction to match
/// is dropped, as RFC 3261 section 18.1.2 asks).
#[derive(Debug, PartialEq, Clone, Copy)]
enum TortureOutcome {
    Final(u16),
    NoAnswer,
    /// Same Via branch, sent-by and method as this earlier fixture: a retransmission of
    /// its transaction (RFC 3261 section 17.2.3), so the earlier fixture's sender gets that
    /// final status again and this sender gets nothing.
    RetransmissionOf(&'static str, u16),
}

/// Each fixture's expected outcome, by name. Invalid requests get 400 (505 for the wrong
/// version, 416 for an unknown URI scheme); valid ones are handled as what they are:
/// OPTIONS 200, REGISTER without credentials 401, INVITE answered 200, an unknown method
/// 501, an unknown body type 415, an unsupported Require 420, Max-Forwards 0 483, an
/// INVITE with a To tag and no dialog 481, a MESSAGE 405; responses get no answer; two
/// fixtures reuse an earlier one's transaction and are absorbed as retransmissions.
const TORTURE_EXPECTED: &[(&str, &str, TortureOutcome)] = {
    use TortureOutcome::{Final, NoAnswer, RetransmissionOf};
    &[
        ("invalid", "badaspec", Final(400)),
        ("invalid", "baddate", Final(400)),
        ("invalid", "baddn", Final(400)),
        ("invalid", "badinv01", Final(400)),
        ("invalid", "badvers", Final(505)),
        ("invalid", "bigcode", NoAnswer),
        ("invalid", "clerr", Final(400)),
        ("invalid", "escruri", Final(400)),
        ("invalid", "insuf", Final(400)),
        ("invalid", "ltgtruri", Final(400)),
        ("invalid", "lwsruri", Final(400)),
        ("invalid", "lwsstart", Final(400)),
        ("invalid", "mcl01", Final(400)),
        ("invalid", "mismatch01", Final(400)),
        ("invalid", "mismatch02", Final(400)),
        ("invalid", "multi01", Final(400)),
        ("invalid", "ncl", Final(400)),
        ("invalid", "novelsc", Final(416)),
        ("invalid", "quotbal", Final(400)),
        ("invalid", "regbadct", Final(400)),
        ("invalid", "scalar02", Final(400)),
        ("invalid", "scalarlg", NoAnswer),
        ("invalid", "trws", Final(400)),
        ("invalid", "unkscm", Final(416)),
        ("valid", "badbranch", Final(200)),
        ("valid", "bcast", NoAnswer),
        ("valid", "bext01", Final(420)),
        ("valid", "cparam01", Final(401)),
        ("valid", "cparam02", RetransmissionOf("cparam01", 401)),
        ("valid", "dblreq", Final(401)),
        ("valid", "esc01", Final(200)),
        ("valid", "esc02", Final(501)),
        ("valid", "escnull", Final(401)),
        ("valid", "intmeth", Final(501)),
        ("valid", "inv2543", Final(200)),
        ("valid", "invut", Final(415)),
        ("valid", "longreq", Final(200)),
        ("valid", "lwsdisp", Final(200)),
        ("valid", "mpart01", Final(405)),
        ("valid", "noreason", NoAnswer),
        ("valid", "regaut01", Final(401)),
        ("valid", "regescrt", RetransmissionOf("escnull", 401)),
        ("valid", "sdp01", Final(200)),
        ("valid", "semiuri", Final(200)),
        ("valid", "transports", Final(200)),
        ("valid", "unksm2", Final(401)),
        ("valid", "unreason", NoAnswer),
        ("valid", "wsinv", Final(481)),
        ("valid", "zeromf", Final(483)),
    ]
};

/// Every RFC 4475 message goes to the UDP port, each from its own socket (so a late
/// retransmission for one fixture cannot be taken for another's answer), and gets exactly
/// the outcome named for it in `TORTURE_EXPECTED`; the switch stays up.
#[test]
fn torture_battery_over_udp_keeps_the_switch_up() {
    let cfg = TestConfig::new(0);
    let mut sw = Switch::start(&cfg, 1);
    let wait = Duration::from_millis(400);

    let mut on_disk: Vec<(String, String)> = Vec::new();
    let mut wrong = Vec::new();
    let mut senders: Vec<(String, UdpSocket)> = Vec::new();
    let first_final = |codes: &[u16]| {
        codes
            .iter()
            .find(|c| **c >= 200)
            .map_or(TortureOutcome::NoAnswer, |c| TortureOutcome::Final(*c))
    };
    for kind in ["invalid", "valid"] {
        for (name, msg) in torture_files(kind) {
            on_disk.push((kind.to_string(), name.clone()));
            let expected = TORTURE_EXPECTED
                .iter()
                .find(|(k, n, _)| *k == kind && *n == name)
                .map(|e| e.2)
                .unwrap_or_else(|| panic!("{kind}/{name}.sip has no expected outcome"));
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let codes = statuses_for(&sock, sw.sip, &msg, wait);
            let mut got = first_final(&codes);
            if let (TortureOutcome::RetransmissionOf(earlier, _), TortureOutcome::NoAnswer) =
                (expected, got)
            {
                // Listen where the earlier fixture was sent from.
                if let Some((_, first)) = senders.iter().find(|(n, _)| n == earlier) {
                    let again = statuses_for_no_send(first, wait);
                    if let TortureOutcome::Final(code) = first_final(&again) {
                        got = TortureOutcome::RetransmissionOf(earlier, code);
                    }
                }
            }
            senders.push((name.clone(), sock));
            eprintln!("{kind}/{name}: {codes:?} -> {got:?}");
            if got != expected {
                wrong.push(format!(
                    "{kind}/{name}: expected {expected:?}, got {got:?} ({codes:?})"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "RFC 4475 outcomes:\n{}", wrong.join("\n"));
    for (kind, name, _) in TORTURE_EXPECTED {
        assert!(
            on_disk.iter().any(|(k, n)| k == kind && n == name),
            "{kind}/{name}.sip is expected but missing from tests/data/sip"
        );
    }

    let (status, body) = sw.http_get("/health");
    assert_eq!((status, body.trim()), (200, "ok"), "switch still healthy");
    let malformed = sw
        .metric("ccswitch_sip_malformed_total")
        .unwrap_or_default();
    assert!(malformed >= 15.0, "malformed counter {malformed}");
    let st = sw.terminate(Duration::from_secs(60));
    assert!(st.success(), "ccswitch exit status {st}");
}

// ---------------------------------------------------------------------------------------
// Agents: pjsua softphones register with digest auth and take queued calls
// ---------------------------------------------------------------------------------------

/// A running tests/e2e/agent.py.
struct PjAgent {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    err: Arc<Mutex<Vec<String>>>,
}

// One argument per agent.py option; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn spawn_agent(
    python: &Path,
    sw: &Switch,
    ext: &str,
    answer_after: f64,
    record: Option<&Path>,
    play: Option<&Path>,
    max_duration: f64,
    extra: &[&str],
) -> PjAgent {
    let mut cmd = Command::new(python);
    cmd.arg(script("agent.py"))
        .args(["--registrar", &format!("sip:{}", sw.sip)])
        .args(["--user", ext])
        .args(["--password", &format!("demo{ext}")])
        .args(["--answer-after", &answer_after.to_string()])
        .args(["--max-duration", &max_duration.to_string()])
        .args(extra);
    if let Some(r) = record {
        cmd.arg("--record").arg(r);
    }
    if let Some(p) = play {
        cmd.arg("--play").arg(p);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agent.py");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let err = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&err);
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
        }
    });
    PjAgent {
        child,
        lines: rx,
        err,
    }
}

impl PjAgent {
    fn stderr(&self) -> String {
        self.err.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The next JSON line whose "event" is `event` (bounded).
    fn wait_event(&self, event: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if v["event"] == event {
                            return v;
                        }
                        assert_ne!(
                            v["event"],
                            "register_failed",
                            "agent registration failed: {v}\n{}",
                            self.stderr()
                        );
                    }
                }
                Err(_) => panic!(
                    "agent.py: no `{event}` within {within:?}:\n{}",
                    self.stderr()
                ),
            }
        }
    }
}

impl Drop for PjAgent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Two softphones register as agents (1001 Alice: tech 5, 1002 Bob: tech 3). A caller
/// picks English, then technical support (6). Alice, the best match, rings first but never
/// answers: after the ring timeout (18 s) the offer is CANCELled and Bob's phone rings and
/// answers; each side hears the other (each plays its own tone) through the bridge, and
/// neither hears itself. After the caller hangs
/// up, Bob is in wrap-up for the queue's after-call-work time (3 s here), and the call's row
/// carries FRT, talk, hold, ACW, AHT and both offer attempts.
#[test]
fn pjsua_agents_ring_no_answer_then_next_agent_answers() {
    let Some(py) = pjsua_python() else { return };
    let cfg = TestConfig::new(0);
    // A short after-call-work period, so the test sees wrap-up end by its timer.
    let queues = cfg.dir.join("queues.toml");
    let text = std::fs::read_to_string(&queues).expect("read queues.toml");
    assert!(
        text.contains("wrap_up_s = 30"),
        "queues.toml [defaults] wrap_up_s"
    );
    let text = text.replace("wrap_up_s = 30", "wrap_up_s = 3");
    // Record the tech queue's calls (the shipped config records complaints only).
    let text = text.replace("record = false", "record = true");
    std::fs::write(&queues, text).expect("write");
    let sw = Switch::start(&cfg, 11);
    let t = timeline();
    let talk = 8.0;
    // Digit 6 barges into the main menu; then 18 s of ringing Alice, Bob answers in 1 s.
    let hangup = t.main + 18.0 + 3.0 + talk;
    let caller_tone = tone_wav(cfg.tmp.path(), CALLER_TONE_HZ, 10);
    let agent_tone = tone_wav(cfg.tmp.path(), AGENT_TONE_HZ, 10);
    let alice = spawn_agent(&py, &sw, "1001", -1.0, None, None, hangup + 20.0, &[]);
    let bob = spawn_agent(
        &py,
        &sw,
        "1002",
        1.0,
        Some(&cfg.path("agent_heard.wav")),
        Some(&agent_tone),
        hangup + 20.0,
        // Bob stays registered through his wrap-up (unregistering would log him out).
        &["--linger", "6"],
    );
    alice.wait_event("registered", Duration::from_secs(15));
    bob.wait_event("registered", Duration::from_secs(15));
    let call = spawn_caller(
        &py,
        &sw.uri("100"),
        &CallerArgs {
            transport: "udp",
            dtmf: format!("1@{:.2}s,6@{:.2}s", t.language, t.main),
            dtmf_method: "rfc4733",
            hangup_after: hangup,
            max_duration: hangup + 20.0,
            record: Some(cfg.path("caller_heard.wav")),
            play: Some(caller_tone.clone()),
            from_user: None,
        },
    );
    let summary = call.finish();
    eprintln!("caller summary: {summary}");
    assert_eq!(summary["confirmed"], true, "{summary}");
    let bob_done = bob.wait_event("done", Duration::from_secs(30));
    eprintln!("bob: {bob_done}");
    let bob_calls = bob_done["calls"].as_array().cloned().unwrap_or_default();
    assert_eq!(bob_calls.len(), 1, "Bob rang once: {bob_done}");
    assert_eq!(bob_calls[0]["confirmed"], true, "{bob_done}");
    assert_eq!(bob_calls[0]["x_queue"], "tech", "{bob_done}");
    assert_eq!(bob_calls[0]["x_caller"], "5551234", "{bob_done}");
    // The caller hung up: Bob got our BYE.
    assert_eq!(bob_calls[0]["disconnected_by"], "remote", "{bob_done}");
    let alice_done = alice.wait_event("done", Duration::from_secs(hangup as u64 + 40));
    eprintln!("alice: {alice_done}");
    let alice_calls = alice_done["calls"].as_array().cloned().unwrap_or_default();
    assert_eq!(alice_calls.len(), 1, "Alice rang once: {alice_done}");
    assert_eq!(alice_calls[0]["cancelled"], true, "{alice_done}");

    let mut sw = sw;
    let st = sw.terminate(Duration::from_secs(30));
    assert!(st.success(), "ccswitch exit status {st}");
    let calls = cfg.calls();
    let c = find_call(&calls, "udp");
    eprintln!("report: {c:#}");
    assert_eq!(c["ivr_outcome"], "queued", "{c}");
    assert_eq!(c["agent"], "1002", "{c}");
    assert!(
        c["wrapup_ended_at"].is_string(),
        "wrap-up ended by its timer: {c}"
    );
    let ms = |k: &str| c[k].as_i64().unwrap_or_else(|| panic!("{k} missing: {c}"));
    assert!(
        ms("frt_ms") > 18_000,
        "FRT spans Alice's 18 s of ringing: {c}"
    );
    assert!(ms("talk_ms") > 0, "{c}");
    assert_eq!(ms("hold_ms"), 0, "{c}");
    // Two-way audio through the media plane's bridge, and whose audio it is.
    assert_bridged_both_ways(
        &py,
        c,
        &cfg.path("caller_heard.wav"),
        &cfg.path("agent_heard.wav"),
    );
    assert!(
        ms("acw_ms") >= 3_000,
        "ACW is the queue's wrap-up time: {c}"
    );
    assert_eq!(
        ms("aht_ms"),
        ms("talk_ms") + ms("hold_ms") + ms("acw_ms"),
        "{c}"
    );
    // The recording: a stereo WAV, caller left and agent right, each carrying its own
    // party's tone only.
    let rec = PathBuf::from(c["recording_path"].as_str().expect("recording_path"));
    let spec = hound::WavReader::open(&rec)
        .unwrap_or_else(|e| panic!("{}: {e}", rec.display()))
        .spec();
    assert_eq!((spec.channels, spec.sample_rate), (2, 8000), "{spec:?}");
    for (channel, name, tone, not) in [
        (1, "caller", CALLER_TONE_HZ, AGENT_TONE_HZ),
        (2, "agent", AGENT_TONE_HZ, CALLER_TONE_HZ),
    ] {
        let mono = cfg.path(&format!("rec_{name}.wav"));
        let st = Command::new("sox")
            .arg(&rec)
            .arg(&mono)
            .args(["remix", &channel.to_string()])
            .status()
            .expect("run sox");
        assert!(st.success(), "sox remix failed");
        assert_hears(
            &py,
            &mono,
            &Hears {
                who: &format!("recording's {name} channel"),
                tone,
                not: &[not],
                start: 0.5,
                end: None,
            },
        );
    }
    assert!(c["queued_at"].is_string(), "{c}");
    assert!(c["agent_answered_at"].is_string(), "{c}");
    assert_eq!(c["ended_by"], "caller", "{c}");
    let offers = c["offers"].as_array().cloned().unwrap_or_default();
    let seen: Vec<(String, String)> = offers
        .iter()
        .map(|o| {
            (
                o["agent"].as_str().unwrap_or("").to_string(),
                o["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("1001".to_string(), "no_answer".to_string()),
            ("1002".to_string(), "answered".to_string())
        ],
        "{c}"
    );
}

/// An agent's softphone dials the break code *22: the first INVITE is challenged (407),
/// the retry with digest credentials is answered with a spoken confirmation and hung up by
/// the switch, and the agent's change to not ready (break) is recorded in the store.
#[test]
fn pjsua_agent_feature_code_break() {
    let Some(py) = pjsua_python() else { return };
    let cfg = TestConfig::new(0);
    let mut sw = Switch::start(&cfg, 12);
    let agent = spawn_agent(
        &py,
        &sw,
        "1001",
        -1.0,
        None,
        None,
        40.0,
        &[
            "--dial",
            "*22",
            "--calls",
            "0",
            "--log-file",
            &cfg.path("agent_sip.log").to_string_lossy(),
        ],
    );
    agent.wait_event("registered", Duration::from_secs(15));
    let done = agent.wait_event("done", Duration::from_secs(60));
    eprintln!("agent: {done}");
    assert_eq!(done["dialled"]["confirmed"], true, "{done}");
    assert_eq!(done["dialled"]["disconnected"], true, "{done}");
    let st = sw.terminate(Duration::from_secs(30));
    assert!(st.success(), "ccswitch exit status {st}");

    // On the wire, as the softphone saw it: the first INVITE to *22 carries no
    // credentials and is answered 407 with a challenge; the retry carries them and is
    // answered 200.
    let sip_log = std::fs::read_to_string(cfg.path("agent_sip.log")).expect("agent SIP log");
    let invites = pjsip_messages(&sip_log, "TX", "INVITE sip:*22@");
    let proxy_auth = |m: &str| {
        m.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("proxy-authorization: digest")
        })
    };
    assert_eq!(
        invites.len(),
        2,
        "one challenged INVITE and one retry:\n{invites:#?}"
    );
    assert!(
        !proxy_auth(&invites[0]),
        "first INVITE already had credentials"
    );
    assert!(
        proxy_auth(&invites[1]) && invites[1].contains("username=\"1001\""),
        "the retry must carry 1001's digest credentials:\n{}",
        invites[1]
    );
    let invite_replies: Vec<String> = pjsip_messages(&sip_log, "RX", "SIP/2.0 ")
        .into_iter()
        .filter(|m| {
            m.lines()
                .any(|l| l.to_ascii_lowercase().starts_with("cseq:") && l.contains("INVITE"))
        })
        .collect();
    let status = |m: &str| m.get(8..11).unwrap_or("").to_string();
    let finals: Vec<String> = invite_replies
        .iter()
        .map(|m| status(m))
        .filter(|s| !s.starts_with('1'))
        .collect();
    assert_eq!(finals, ["407", "200"], "final answers to the two INVITEs");
    let challenge = invite_replies
        .iter()
        .find(|m| status(m) == "407")
        .expect("407");
    assert!(
        challenge.lines().any(|l| l
            .to_ascii_lowercase()
            .starts_with("proxy-authenticate: digest")
            && l.contains("realm=\"ccswitch\"")),
        "407 without a digest challenge for realm ccswitch:\n{challenge}"
    );

    // The switch applied the code and the store recorded it: registering made 1001 ready,
    // *22 put 1001 on break (unregistering at exit then logs 1001 out).
    let changes = sqlite_rows(
        &py,
        &cfg.path("calls.db"),
        "SELECT state, coalesce(reason, '') FROM agent_state_changes \
         WHERE agent = '1001' ORDER BY at, id",
    );
    eprintln!("1001's state changes: {changes:?}");
    let states: Vec<String> = changes.iter().map(|r| r.join("/")).collect();
    assert_eq!(
        states.get(..2),
        Some(&["ready/".to_string(), "not_ready/break".to_string()][..]),
        "1001's recorded state changes: {changes:?}"
    );
}

/// The SIP messages in a PJSIP log (level 5) sent ("TX") or received ("RX") whose first
/// line starts with `first_line`, in log order.
fn pjsip_messages(log: &str, direction: &str, first_line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        let is_dir =
            line.contains(&format!(" {direction} ")) || line.contains(&format!(".{direction} "));
        if !(is_dir && (line.contains(" Request msg ") || line.contains(" Response msg "))) {
            continue;
        }
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("--end msg--"))
            .collect();
        let text = body.join("\n");
        if text.starts_with(first_line) {
            out.push(text);
        }
    }
    out
}

/// Rows of a query on a SQLite file (Python's sqlite3: no sqlite3 CLI needed).
fn sqlite_rows(python: &Path, db: &Path, sql: &str) -> Vec<Vec<String>> {
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sqlite3, sys\n\
             rows = sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()\n\
             print(json.dumps([[str(c) for c in r] for r in rows]))",
        ])
        .arg(db)
        .arg(sql)
        .output()
        .expect("run python sqlite3");
    assert!(
        out.status.success(),
        "query {sql} on {}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("rows JSON")
}
