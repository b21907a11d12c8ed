//! Due surveys through the SMPP gateway to the test SMSC (issue 8): N surveys are written to
//! a temporary SQLite store (CallStarted, CallEnded, SurveyScheduled each, `send_at` in the
//! past), then taken from the store and sent through `SmppGateway` to `tests/smsc/smsc.js`
//! with the rate cap at 500/s and a submit window of 10. Prints the achieved rate (on the
//! SMSC's clock), p99 submit_sm -> submit_sm_resp time (the gateway's histogram), RSS growth
//! of this process while sending, and duplicates/missing texts from the SMSC's log.
//!
//!   cargo bench --bench surveys                       # 10,000 surveys; targets enforced
//!   cargo bench --bench surveys -- --quick            # 500 surveys
//!   cargo bench --bench surveys -- --surveys 2000 --rate 200 --window 10
//!
//! Targets (PASS/FAIL, exit 1 on a FAIL): rate at least 95 % of the cap, no duplicate, no
//! missing text, RSS growth under 50 MB. With `--quick`, or without `--bench` (as under
//! `cargo test --benches` / `--all-targets`), it sends 500 and enforces only the counts (no
//! duplicate, none missing): timing on a busy machine and a debug build is printed, not
//! judged. Needs node and npm like tests/sms_smpp.rs; `CCSWITCH_TEST_SKIP_SMSC=1` skips it.
#![allow(clippy::disallowed_methods)] // a bench measures wall-clock time on purpose

use ccswitch::clock::Clock;
use ccswitch::config::sms::{PasswordSource, SmppConfig};
use ccswitch::engine::record::EndedBy;
use ccswitch::engine::{Millis, Record};
use ccswitch::sms::smpp::SmppGateway;
use ccswitch::sms::SmsEvent;
use ccswitch::store::Store;
use ccswitch::surveys::{Gateway, ServiceConfig, SurveyService};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedReceiver;

const SYSTEM_ID: &str = "ccswitch";
const PASSWORD: &str = "s3cret";

struct Args {
    surveys: usize,
    rate: u32,
    window: usize,
    quick: bool,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let full = argv.iter().any(|a| a == "--bench") && !argv.iter().any(|a| a == "--quick");
    let mut a = Args {
        surveys: if full { 10_000 } else { 500 },
        rate: 500,
        window: 10,
        quick: !full,
    };
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = || it.clone().next().and_then(|v| v.parse::<u64>().ok());
        match k.as_str() {
            "--surveys" => a.surveys = v().unwrap_or(10_000).clamp(1, 1_000_000) as usize,
            "--rate" => a.rate = v().unwrap_or(500).clamp(1, 10_000) as u32,
            "--window" => a.window = v().unwrap_or(10).clamp(1, 1000) as usize,
            _ => continue,
        }
        it.next();
    }
    a
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Resident set size of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

// ---- the test SMSC (as in tests/sms_smpp.rs) -------------------------------------------------

fn smsc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smsc")
}

fn ensure_node_modules() -> Result<(), String> {
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Err(
            "node is needed (tests/smsc); install Node.js or set CCSWITCH_TEST_SKIP_SMSC=1".into(),
        );
    }
    let dir = smsc_dir();
    if !dir.join("node_modules/smpp/package.json").exists() {
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("npm ci in {} failed", dir.display()));
        }
    }
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One accepted or refused submit_sm, as the SMSC logged it.
struct Submit {
    /// The SMSC's clock (ms).
    t: i64,
    dest: String,
    short_message_hex: String,
    status: i64,
}

struct Smsc {
    child: Child,
    _stdin: ChildStdin,
    port: u16,
    submits: mpsc::Receiver<Submit>,
}

impl Smsc {
    fn start() -> Smsc {
        let port = free_port();
        let mut child = Command::new("node")
            .arg(smsc_dir().join("smsc.js"))
            .arg(port.to_string())
            .arg(SYSTEM_ID)
            .arg(PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node tests/smsc/smsc.js");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let (listening_tx, listening_rx) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                match v["event"].as_str() {
                    Some("listening") => {
                        let _ = listening_tx.send(());
                    }
                    Some("submit_sm") => {
                        let s = Submit {
                            t: v["t"].as_i64().unwrap_or(0),
                            dest: v["destination_addr"].as_str().unwrap_or("").to_string(),
                            short_message_hex: v["short_message_hex"]
                                .as_str()
                                .unwrap_or("")
                                .to_string(),
                            status: v["status"].as_i64().unwrap_or(-1),
                        };
                        if tx.send(s).is_err() {
                            break;
                        }
                    }
                    _ => {}
                }
            }
        });
        listening_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the SMSC listens within 10 s");
        Smsc {
            child,
            _stdin: stdin,
            port,
            submits: rx,
        }
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the store -------------------------------------------------------------------------------

/// Writes `n` ended calls with a due survey each (send_at a minute ago), as the engine would:
/// CallStarted, CallEnded and SurveyScheduled in one batch per call group.
async fn write_due_surveys(store: &Store, n: usize) {
    let now = now_ms();
    let texts = [
        (
            "en",
            "Thank you for calling Example Co. How satisfied were you with agent 1002 today? Reply 1-5 (5 = very satisfied). Reply TD to opt out.",
        ),
        (
            "zh",
            "感谢致电Example Co，请为本次服务打分：回复1-5（5为非常满意），回复TD退订。",
        ),
    ];
    let mut batch = Vec::new();
    for i in 0..n {
        let call_id = format!("bench-{i:06}");
        let number = format!("+86138{:08}", i);
        let ended = now - 120_000 + i as u64 % 1000;
        let (language, text) = texts[i % 2];
        batch.push(Record::CallStarted {
            call_id: call_id.clone(),
            sip_call_id: format!("{call_id}@bench"),
            caller: number.trim_start_matches("+86").to_string(),
            dialled: "4008006".into(),
            transport: "udp".into(),
            arrived_at: Millis(ended - 180_000),
            ring_cycle_ms: 6000,
        });
        batch.push(Record::CallEnded {
            call_id: call_id.clone(),
            ended_at: Millis(ended),
            ended_by: EndedBy::Caller,
            reason: "bye".into(),
            final_status: 200,
        });
        batch.push(Record::SurveyScheduled {
            call_id,
            survey_id: 1_000_000 + i as u64,
            at: Millis(ended),
            number_hash: ccswitch::engine::survey::numbers::number_hash(b"bench", &number),
            number,
            language: language.into(),
            text: text.into(),
            send_at: Millis(ended + 60_000),
            deferred: false,
            reply_by: Millis(ended + 60_000 + 48 * 3_600_000),
            agent: Some("1002".into()),
            queue: Some("tech".into()),
            complaint: false,
        });
        if batch.len() >= 1500 {
            store.write_batch(&batch).await.expect("write batch");
            batch.clear();
        }
    }
    store.write_batch(&batch).await.expect("write batch");
}

/// What `send_all_due` did.
struct Sent {
    due: usize,
    submitted: usize,
    failed: Vec<(u64, String)>,
    /// From the first `send` to the last Submitted/Failed.
    elapsed: Duration,
}

/// The survey sender service (src/surveys) on the store and the bound gateway: it claims the
/// due texts, sends them and records each outcome on its row. Done when every due text is
/// `sent` or `failed` (bounded: 30 s without progress ends the wait).
async fn send_all_due(
    store: &Store,
    db_url: &str,
    gateway: SmppGateway,
    events: UnboundedReceiver<SmsEvent>,
) -> Sent {
    use sqlx::Row;
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(db_url)
        .await
        .expect("open the store for counting");
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query(sql)
                .fetch_one(&pool)
                .await
                .expect("count rows")
                .get(0);
            n as usize
        }
    };
    let due = count("SELECT COUNT(*) FROM sms_messages WHERE state = 'queued'").await;
    let config = ccswitch::config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
        .expect("the shipped config loads");
    let mut policy = (*config.survey.expect("the shipped survey.toml is enabled")).clone();
    // Throughput at any hour of the day: quiet hours would hold every text.
    policy.quiet_hours = None;
    let policy = std::sync::Arc::new(policy);
    let key = store.number_hash_key().await.expect("number-hash key");
    let (opt_out_tx, _opt_outs) = tokio::sync::mpsc::unbounded_channel();
    let start = Instant::now();
    let service = SurveyService::start(
        store.clone(),
        ServiceConfig::new(policy, key),
        Gateway::Smpp(gateway),
        events,
        opt_out_tx,
        Clock::new(),
    )
    .await
    .expect("the survey service starts");
    service.handle().wake();
    let mut done = 0;
    let mut last_progress = Instant::now();
    let mut elapsed = start.elapsed();
    while done < due && last_progress.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now_done =
            count("SELECT COUNT(*) FROM sms_messages WHERE state IN ('sent', 'failed')").await;
        if now_done > done {
            done = now_done;
            last_progress = Instant::now();
            elapsed = start.elapsed();
        }
    }
    service.stop(Duration::from_secs(3)).await;
    let rows = sqlx::query(
        "SELECT message_id, COALESCE(fail_reason, '') FROM sms_messages WHERE state = 'failed'",
    )
    .fetch_all(&pool)
    .await
    .expect("failed rows");
    let failed = rows
        .iter()
        .map(|r| (r.get::<i64, _>(0) as u64, r.get::<String, _>(1)))
        .collect();
    let submitted = count("SELECT COUNT(*) FROM sms_messages WHERE state = 'sent'").await;
    pool.close().await;
    Sent {
        due,
        submitted,
        failed,
        elapsed,
    }
}

// ---- the run ---------------------------------------------------------------------------------

fn main() {
    let a = args();
    if std::env::var("CCSWITCH_TEST_SKIP_SMSC").as_deref() == Ok("1") {
        println!("surveys bench: CCSWITCH_TEST_SKIP_SMSC=1, skipped");
        return;
    }
    if let Err(e) = ensure_node_modules() {
        eprintln!("surveys bench: {e}");
        std::process::exit(1);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ok = rt.block_on(run(&a));
    if a.quick {
        println!("(quick mode: counts enforced, timing printed only; `cargo bench --bench surveys` for the full run)");
    }
    if !ok {
        std::process::exit(1);
    }
}

async fn run(a: &Args) -> bool {
    println!(
        "surveys bench: {} due surveys, SMPP rate cap {}/s, window {}",
        a.surveys, a.rate, a.window
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let db_path = tmp.path().join("surveys.db");
    let db_url = format!("sqlite:{}?mode=rwc", db_path.display());
    let store = Store::open(&db_url).await.expect("open the store");
    let t = Instant::now();
    write_due_surveys(&store, a.surveys).await;
    println!(
        "  store: {} calls with a due survey written in {:.1} s",
        a.surveys,
        t.elapsed().as_secs_f64()
    );

    let smsc = Smsc::start();
    let mut pw = tempfile::NamedTempFile::new().expect("password file");
    writeln!(pw, "{PASSWORD}").expect("write password");
    let cfg = SmppConfig {
        host: "127.0.0.1".into(),
        port: smsc.port,
        system_id: SYSTEM_ID.into(),
        password: PasswordSource::File(pw.path().to_path_buf()),
        system_type: "survey".into(),
        source_addr: "10690000".into(),
        window: a.window,
        max_per_s: a.rate,
        enquire_link: Duration::from_secs(30),
        response_timeout: Duration::from_secs(10),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(2),
        throttle_backoff: Duration::from_millis(200),
        max_attempts: 5,
    };
    let (gateway, mut events) = SmppGateway::start(cfg).expect("gateway starts");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(SmsEvent::Connected { .. })) => break,
            Ok(Some(_)) => continue,
            other => {
                eprintln!("the gateway did not bind: {other:?}");
                return false;
            }
        }
    }

    // RSS: the baseline once bound, the peak sampled while sending.
    let rss_before = rss_bytes();
    let peak = Arc::new(AtomicU64::new(rss_before));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let smpp_stats = gateway.shared_stats();
    let sent = send_all_due(&store, &db_url, gateway, events).await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
    let rss_growth = peak.load(Ordering::Relaxed).saturating_sub(rss_before);
    let p99 = smpp_stats.submit_response.quantile(0.99);
    let p50 = smpp_stats.submit_response.quantile(0.5);

    // The SMSC's log: every submit_sm it saw.
    let mut log: Vec<Submit> = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while log.iter().filter(|s| s.status == 0).count() < sent.submitted && Instant::now() < end {
        if let Ok(s) = smsc.submits.recv_timeout(Duration::from_millis(200)) {
            log.push(s);
        }
    }
    while let Ok(s) = smsc.submits.recv_timeout(Duration::from_millis(200)) {
        log.push(s);
    }
    let accepted: Vec<&Submit> = log.iter().filter(|s| s.status == 0).collect();
    let mut seen = HashSet::new();
    let duplicates = accepted
        .iter()
        .filter(|s| !seen.insert((s.dest.as_str(), s.short_message_hex.as_str())))
        .count();
    let distinct_numbers: HashSet<&str> = accepted.iter().map(|s| s.dest.as_str()).collect();
    let missing = sent.due.saturating_sub(distinct_numbers.len());
    let smsc_rate = match (accepted.first(), accepted.last()) {
        (Some(f), Some(l)) if l.t > f.t => {
            (accepted.len() - 1) as f64 * 1000.0 / (l.t - f.t) as f64
        }
        _ => 0.0,
    };
    let end_to_end = sent.submitted as f64 / sent.elapsed.as_secs_f64().max(1e-9);

    let ms = |d: Option<Duration>| {
        d.map_or("n/a".to_string(), |d| {
            format!("{:.2} ms", d.as_secs_f64() * 1000.0)
        })
    };
    println!(
        "  due rows taken from the store: {}; submitted {}; failed {}",
        sent.due,
        sent.submitted,
        sent.failed.len()
    );
    for (id, reason) in sent.failed.iter().take(5) {
        println!("    failed {id}: {reason}");
    }
    println!(
        "  achieved rate: {smsc_rate:.1}/s at the SMSC (first to last submit_sm), {end_to_end:.1}/s end to end ({:.2} s)",
        sent.elapsed.as_secs_f64()
    );
    println!(
        "  submit_sm -> submit_sm_resp: p50 {}, p99 {} (bucket upper edge, at most 12.5 % high)",
        ms(p50),
        ms(p99)
    );
    println!(
        "  RSS growth while sending: {:.1} MB (baseline {:.1} MB)",
        rss_growth as f64 / 1e6,
        rss_before as f64 / 1e6
    );
    println!(
        "  SMSC log: {} submit_sm accepted, {} refused; duplicates {duplicates}; missing {missing}",
        accepted.len(),
        log.len() - accepted.len()
    );

    let target_rate = 0.95 * f64::from(a.rate);
    let checks = [
        (
            format!("rate at least 95 % of the cap ({smsc_rate:.1} >= {target_rate:.1}/s)"),
            smsc_rate >= target_rate,
            true,
        ),
        (
            format!("no duplicate ({duplicates})"),
            duplicates == 0,
            false,
        ),
        (
            format!(
                "every due survey submitted ({} of {})",
                sent.submitted, sent.due
            ),
            missing == 0 && sent.submitted == sent.due && sent.due == a.surveys,
            false,
        ),
        (
            format!("RSS growth under 50 MB ({:.1} MB)", rss_growth as f64 / 1e6),
            rss_growth < 50_000_000,
            true,
        ),
    ];
    let mut ok = true;
    for (what, pass, timing) in checks {
        let judged = !(a.quick && timing);
        let verdict = match (pass, judged) {
            (true, _) => "PASS",
            (false, true) => "FAIL",
            (false, false) => "below target (not judged in quick mode)",
        };
        println!("  {verdict}: {what}");
        if judged && !pass {
            ok = false;
        }
    }
    ok
}
