//! The half-sent TCP flood, measured: N connections each send half a SIP request and go
//! quiet. Prints the switch's open connections (its /metrics gauge), file descriptors and
//! resident memory right after the flood, just before the message timeout and after it.
//! Numbers are printed, never asserted.
//!
//!   cargo bench --bench tcp_flood                               # 3000 connections, 32 s timeout
//!   cargo bench --bench tcp_flood -- --connections 1000 --timeout-ms 5000
//! Under `cargo test --all-targets` (no `--bench` argument) it runs a quick pass: 100
//! connections, 2 s timeout.
#![allow(clippy::disallowed_methods)] // a bench measures wall-clock time on purpose

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    connections: usize,
    timeout_ms: u64,
}

fn args() -> Args {
    let mut a = Args {
        connections: 3000,
        timeout_ms: 32_000,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: keep that run short.
    if !argv.iter().any(|a| a == "--bench") {
        a.connections = 100;
        a.timeout_ms = 2_000;
    }
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = || it.clone().next().and_then(|v| v.parse::<u64>().ok());
        match k.as_str() {
            "--connections" => a.connections = v().unwrap_or(3000).clamp(1, 20_000) as usize,
            "--timeout-ms" => a.timeout_ms = v().unwrap_or(32_000).clamp(100, 600_000),
            _ => continue,
        }
        it.next();
    }
    a
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

fn free_port() -> u16 {
    for _ in 0..50 {
        let Ok(udp) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = udp.local_addr() else { continue };
        if std::net::TcpListener::bind(addr).is_ok() {
            return addr.port();
        }
    }
    panic!("no free port");
}

struct Switch {
    child: Child,
    sip: SocketAddr,
    http: SocketAddr,
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, tmp: &Path, a: &Args) -> Switch {
    let main = dir.join("ccswitch.toml");
    let text = std::fs::read_to_string(&main).expect("ccswitch.toml");
    let mut table: toml::Table = text.parse().expect("ccswitch.toml parses");
    let tcp = table
        .get_mut("sip")
        .and_then(|s| s.as_table_mut())
        .and_then(|s| s.get_mut("tcp"))
        .and_then(|t| t.as_table_mut())
        .expect("[sip.tcp] in config/ccswitch.toml");
    let n = a.connections as i64 + 100;
    tcp.insert(
        "message_timeout_ms".into(),
        toml::Value::Integer(a.timeout_ms as i64),
    );
    tcp.insert("max_connections".into(), toml::Value::Integer(n));
    tcp.insert("max_connections_per_source".into(), toml::Value::Integer(n));
    std::fs::write(&main, table.to_string()).expect("write config");
    let sip: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let bin = std::env::var_os("CCSWITCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ccswitch")));
    let mut child = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(dir)
        .args(["--sip-listen", &sip.to_string()])
        .args(["--http-listen", &http.to_string()])
        .args([
            "--database",
            &format!("sqlite:{}?mode=rwc", tmp.join("flood.db").display()),
        ])
        .args(["--rtp-ports", "20000-20999"])
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ccswitch");
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    let sw = Switch { child, sip, http };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&sw.http, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "switch not up within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    sw
}

fn metric(http: SocketAddr, name: &str) -> Option<f64> {
    let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(5)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn report(at: &str, sw: &Switch) {
    let pid = sw.child.id();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let rss_kb = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let open = metric(sw.http, "ccswitch_sip_tcp_connections").unwrap_or(f64::NAN);
    println!("{at:<34} open (gauge) {open:>6}   switch fds {fds:>6}   switch RSS {rss_kb:>7} kB");
}

fn main() {
    let a = args();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::Builder::new()
        .prefix("ccswitch-tcp-flood-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path().join("config");
    copy_dir(&root.join("config"), &dir).expect("copy config/");
    #[cfg(unix)]
    {
        let _ = std::os::unix::fs::symlink(root.join("prompts"), tmp.path().join("prompts"));
    }
    let sw = start(&dir, tmp.path(), &a);
    report("before the flood", &sw);
    let half = b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKflood\r\nMax-Forwards: 70\r\nFrom: <sip:f@127.0.0.1>;tag=1\r\n";
    let started = Instant::now();
    let mut conns = Vec::with_capacity(a.connections);
    for _ in 0..a.connections {
        let Ok(mut s) = TcpStream::connect_timeout(&sw.sip, Duration::from_secs(2)) else {
            break;
        };
        let _ = s.write_all(half);
        conns.push(s);
    }
    println!(
        "{} of {} connections opened and half-sent in {:.2} s (message timeout {} ms)",
        conns.len(),
        a.connections,
        started.elapsed().as_secs_f64(),
        a.timeout_ms
    );
    let flooded = Instant::now();
    report("after the flood", &sw);
    // Each connection's timeout runs from its own first byte: the first ones are due
    // `timeout` after `started`, the last ones `timeout` after `flooded`.
    let before = started + Duration::from_millis(a.timeout_ms.saturating_sub(1000));
    std::thread::sleep(before.saturating_duration_since(Instant::now()));
    report("1 s before the first timeout", &sw);
    let after = flooded + Duration::from_millis(a.timeout_ms + 3000);
    std::thread::sleep(after.saturating_duration_since(Instant::now()));
    report("3 s after the last timeout", &sw);
    // How many of our sockets saw the switch close them.
    let mut closed = 0;
    for s in &mut conns {
        let _ = s.set_read_timeout(Some(Duration::from_millis(5)));
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) => closed += 1,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => closed += 1,
            Ok(_) => {}
        }
    }
    println!(
        "{closed} of {} connections saw EOF from the switch",
        conns.len()
    );
    println!(
        "closed_total{{reason=half_message_timeout}} = {}",
        metric(
            sw.http,
            "ccswitch_sip_tcp_connections_closed_total{reason=\"half_message_timeout\"}"
        )
        .unwrap_or(f64::NAN)
    );
}
