//! The live feed under load (issue 9): the load generator's phase A (calls held in the IVR,
//! real RTP) runs twice against a fresh switch, first without WebSocket clients, then with
//! `LIVE_WS_CLIENTS` (200) clients signed in and connected to `GET /api/v1/live` before the
//! first call. Prints, for both runs, the loadgen's figures (INVITE->180/200 p99, media
//! pacing p99, ...), then each client's update lag p99, summarised over the clients: receive
//! time minus the update's `changed_at` (when the oldest change in it reached the feed, so
//! the up-to-250 ms coalescing wait counts). Numbers are printed, never judged.
//!
//!   cargo bench --bench live_ws                     # loadgen's full phase A (--calls 2000)
//!   cargo bench --bench live_ws -- --calls 1000     # the 1,000 calls
//!   cargo bench --bench live_ws -- --quick          # 20 calls held 2 s (also under
//!                                                   # `cargo test --benches`)
//!
//! The clients run in a process of their own (this binary with `--live-clients`), so their
//! reading shares no threads with the callers; they parse only the head of each message
//! (`{"type":..,"seq":N,"at":MS,`). Also printed: bytes read per message.
#![allow(clippy::disallowed_methods)] // a bench measures wall-clock time on purpose
#![allow(dead_code)] // the loadgen's modules are shared; this bench uses phase A only

#[path = "loadgen/agents.rs"]
mod agents;
#[path = "loadgen/caller.rs"]
mod caller;
#[path = "loadgen/cli.rs"]
mod cli;
#[path = "loadgen/frames.rs"]
mod frames;
#[path = "loadgen/phase_a.rs"]
mod phase_a;
#[path = "loadgen/phase_b.rs"]
mod phase_b;
#[path = "loadgen/phase_c.rs"]
mod phase_c;
#[path = "loadgen/rtp.rs"]
mod rtp;
#[path = "../tests/e2e/sipwire.rs"]
mod sipwire;
#[path = "loadgen/switch.rs"]
mod switch;
#[path = "loadgen/tally.rs"]
mod tally;

use futures::StreamExt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

const ADMIN: &str = "admin";
const ADMIN_PW: &str = "ccswitch-demo";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// When the oldest change in a feed update reached the feed: `"changed_at":MS` from the head
/// of the message (`"at":MS`, the send time, from a feed without it).
fn at_of(text: &str) -> Option<u64> {
    let head = &text[..text.len().min(160)];
    let i = match head.find("\"changed_at\":") {
        Some(i) => i + 13,
        None => head.find("\"at\":")? + 5,
    };
    let digits: String = head[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn sign_in(http: SocketAddr) -> Result<String, String> {
    let body = format!("{{\"user\":\"{ADMIN}\",\"password\":\"{ADMIN_PW}\"}}");
    for _ in 0..100 {
        let Ok(mut s) = TcpStream::connect(http) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let req = format!(
            "POST /api/v1/session HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        return raw
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .and_then(|l| l.split_once(':'))
            .and_then(|(_, v)| v.split(';').next())
            .map(|c| c.trim().to_string())
            .ok_or_else(|| format!("sign-in refused: {raw}"));
    }
    Err(format!("{http} not accepting HTTP"))
}

/// Per client: the lag of every update it got (ms), snapshots (1 + resyncs), bytes read.
type ClientStats = (Vec<u64>, u32, u64);

/// Child mode (`--live-clients HTTP N COOKIE`): connects N clients, prints `connected K`,
/// reads until stdin closes, then prints one line per client: `snapshots bytes lag,lag,..`.
/// A process of its own, so the clients' reading does not share threads with the callers.
fn clients_child(http: SocketAddr, n: usize, cookie: String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stats: Arc<Mutex<Vec<ClientStats>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..n {
            let Ok(mut req) = format!("ws://{http}/api/v1/live").into_client_request() else {
                break;
            };
            if let Ok(v) = cookie.parse() {
                req.headers_mut().insert("cookie", v);
            }
            let Ok((ws, _)) = tokio_tungstenite::connect_async(req).await else {
                continue;
            };
            let (stats, stop) = (Arc::clone(&stats), Arc::clone(&stop));
            handles.push(tokio::spawn(async move {
                let (_, mut read) = ws.split();
                let (mut lags, mut snapshots, mut bytes) = (Vec::new(), 0u32, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let msg = tokio::time::timeout(Duration::from_millis(500), read.next()).await;
                    match msg {
                        Ok(Some(Ok(Message::Text(t)))) => {
                            bytes += t.len() as u64;
                            if t.starts_with("{\"type\":\"snapshot\"") {
                                snapshots += 1;
                            } else if let Some(at) = at_of(&t) {
                                lags.push(now_ms().saturating_sub(at));
                            }
                        }
                        Ok(Some(Ok(_))) | Err(_) => {}
                        Ok(None) | Ok(Some(Err(_))) => break,
                    }
                }
                if let Ok(mut s) = stats.lock() {
                    s.push((lags, snapshots, bytes));
                }
            }));
        }
        println!("connected {}", handles.len());
        let _ = std::io::stdout().flush();
        for h in handles {
            let _ = h.await;
        }
    });
    for (lags, snapshots, bytes) in stats.lock().map(|s| s.clone()).unwrap_or_default() {
        let lags: Vec<String> = lags.iter().map(u64::to_string).collect();
        println!("{snapshots} {bytes} {}", lags.join(","));
    }
}

/// The clients' process, connected.
struct Clients {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

fn start_clients(http: SocketAddr, n: usize) -> Result<Clients, String> {
    use std::io::BufRead;
    let cookie = sign_in(http)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(exe)
        .args(["--live-clients", &http.to_string(), &n.to_string(), &cookie])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut line = String::new();
    out.read_line(&mut line).map_err(|e| e.to_string())?;
    println!(
        "live_ws: {} of {n} WebSocket clients (own process) to {http}",
        line.trim()
    );
    Ok(Clients { child, out })
}

impl Clients {
    fn finish(mut self) -> Vec<ClientStats> {
        use std::io::BufRead;
        drop(self.child.stdin.take());
        let mut got = Vec::new();
        for line in (&mut self.out).lines().map_while(Result::ok) {
            let mut parts = line.splitn(3, ' ');
            let snapshots = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let bytes = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let lags = parts
                .next()
                .unwrap_or("")
                .split(',')
                .filter_map(|v| v.parse().ok())
                .collect();
            got.push((lags, snapshots, bytes));
        }
        let _ = self.child.wait();
        got
    }
}

fn p(v: &mut [u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--live-clients") {
        let http = argv.get(i + 1).and_then(|v| v.parse().ok());
        let n = argv.get(i + 2).and_then(|v| v.parse().ok());
        let cookie = argv.get(i + 3).cloned();
        if let (Some(http), Some(n), Some(cookie)) = (http, n, cookie) {
            clients_child(http, n, cookie);
        }
        return;
    }
    let mut o = match cli::parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("live_ws: {e}");
            std::process::exit(2);
        }
    };
    o.phase_a = true;
    o.phase_b = false;
    o.phase_c = false;
    o.target = None;
    let clients: usize = std::env::var("LIVE_WS_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    println!("\n=== live_ws run 1: phase A without WebSocket clients ===");
    if let Err(e) = rt.block_on(phase_a::phase_a(&o)) {
        eprintln!("live_ws: {e}");
        std::process::exit(1);
    }

    println!("\n=== live_ws run 2: phase A with {clients} WebSocket clients ===");
    let clients_proc: Arc<Mutex<Option<Clients>>> = Arc::new(Mutex::new(None));
    {
        let slot = Arc::clone(&clients_proc);
        if let Ok(mut h) = switch::ON_START.lock() {
            *h = Some(Box::new(move |http| match start_clients(http, clients) {
                Ok(c) => {
                    if let Ok(mut s) = slot.lock() {
                        *s = Some(c);
                    }
                }
                Err(e) => eprintln!("live_ws: {e}"),
            }));
        }
    }
    let outcome = rt.block_on(phase_a::phase_a(&o));
    let got = clients_proc
        .lock()
        .ok()
        .and_then(|mut c| c.take())
        .map(Clients::finish)
        .unwrap_or_default();
    if let Err(e) = outcome {
        eprintln!("live_ws: {e}");
        std::process::exit(1);
    }
    let mut p99s: Vec<u64> = Vec::new();
    let mut all: Vec<u64> = Vec::new();
    let mut updates = 0;
    let mut resyncs = 0;
    let mut bytes = 0;
    for (mut l, snapshots, b) in got.clone() {
        updates += l.len();
        bytes += b;
        resyncs += snapshots.saturating_sub(1);
        all.extend(l.iter().copied());
        p99s.push(p(&mut l, 0.99));
    }
    println!(
        "\nlive_ws: {} clients reported, {updates} updates, {resyncs} resyncs, {:.1} MB read ({:.1} kB a message)",
        got.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e3 / (updates + got.len()).max(1) as f64
    );
    println!(
        "live_ws: update lag p99 per client (ms): median {} / p90 {} / max {}; all updates p50 {} p99 {} max {}",
        p(&mut p99s.clone(), 0.5),
        p(&mut p99s.clone(), 0.9),
        p(&mut p99s, 1.0),
        p(&mut all.clone(), 0.5),
        p(&mut all.clone(), 0.99),
        p(&mut all, 1.0),
    );
    println!("live_ws: compare the INVITE->180 p99 and pacing p99 lines of run 1 and run 2 above");
}
