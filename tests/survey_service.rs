//! The survey service (src/surveys) against the real test SMSC (`tests/smsc/smsc.js`, npm
//! `smpp`): queued surveys are submitted, a receipt marks one delivered, an MO "5 很好"
//! answers it; and the crash test: 500 surveys queued, the process running the service
//! killed with SIGKILL mid-sending and started again: the SMSC saw every survey at least
//! once, duplicates only among the texts in flight at the kill, and the outbox accounts
//! for all 500.
//!
//! The crashing process is this test binary run again as `crash_child` (it runs the
//! service on the database and SMSC named by its environment, until killed).
//! Needs `node`/`npm` like tests/sms_smpp.rs; `CCSWITCH_TEST_SKIP_SMSC=1` skips.

#![allow(clippy::disallowed_methods)] // bounded waits on the wall clock

use ccswitch::clock::Clock;
use ccswitch::config::sms::{PasswordSource, SmppConfig, SmsConfig};
use ccswitch::engine::record::Record;
use ccswitch::engine::survey::{number_hash, SurveyPolicy};
use ccswitch::engine::time::Millis;
use ccswitch::store::Store;
use ccswitch::surveys::{Gateway, ServiceConfig, ServiceStats, SurveyService};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const SYSTEM_ID: &str = "ccswitch";
const PASSWORD: &str = "s3cret";
const KEY: &[u8] = b"service-test-number-key";

fn skip() -> bool {
    if std::env::var("CCSWITCH_TEST_SKIP_SMSC").as_deref() == Ok("1") {
        eprintln!(
            "CCSWITCH_TEST_SKIP_SMSC=1: survey service tests against the node SMSC are skipped"
        );
        return true;
    }
    false
}

fn smsc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smsc")
}

fn ensure_node_modules() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let dir = smsc_dir();
    if !dir.join("node_modules/smpp/package.json").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed to install the test SMSC (tests/smsc)");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    *done = true;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The node SMSC: its stdout as JSON records, its stdin for commands.
struct Smsc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    port: u16,
}

impl Smsc {
    fn start() -> Smsc {
        ensure_node_modules();
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
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        let mut smsc = Smsc {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            port,
        };
        smsc.wait_for("listening", Duration::from_secs(10), |s| {
            s.seen.iter().any(|v| v["event"] == "listening")
        });
        smsc
    }

    fn cmd(&mut self, cmd: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
    }

    fn pump(&mut self, wait: Duration) {
        if let Ok(v) = self.lines.recv_timeout(wait) {
            self.seen.push(v);
        }
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
    }

    /// Reads records until `done` holds (bounded by `limit`).
    fn wait_for(&mut self, what: &str, limit: Duration, done: impl Fn(&Smsc) -> bool) {
        let end = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < end, "SMSC: no {what} within {limit:?}");
            self.pump(Duration::from_millis(50));
        }
    }

    fn submits(&self) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|v| v["event"] == "submit_sm" && v["status"] == 0)
            .collect()
    }

    /// The client reference of a submit (`user_message_reference`, TLV 0x0204).
    fn reference(v: &Value) -> Option<u64> {
        v["tlvs"]["0x0204"]
            .as_str()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smpp_config(port: u16, pw: &Path, max_per_s: u32) -> SmsConfig {
    SmsConfig {
        smpp: Some(SmppConfig {
            host: "127.0.0.1".into(),
            port,
            system_id: SYSTEM_ID.into(),
            password: PasswordSource::File(pw.to_path_buf()),
            system_type: "survey".into(),
            source_addr: "10690000".into(),
            window: 10,
            max_per_s,
            enquire_link: Duration::from_secs(30),
            response_timeout: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_millis(800),
            throttle_backoff: Duration::from_millis(200),
            max_attempts: 5,
        }),
        http: None,
    }
}

fn policy() -> Arc<SurveyPolicy> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let config = ccswitch::config::load(&dir).expect("shipped config loads");
    let mut p = (*config.survey.expect("shipped survey.toml is enabled")).clone();
    p.quiet_hours = None;
    Arc::new(p)
}

fn number(i: u64) -> String {
    format!("+86138{:08}", i)
}

fn survey(id: u64, now: u64) -> Vec<Record> {
    let call_id = format!("call-{id}");
    vec![
        Record::CallStarted {
            call_id: call_id.clone(),
            sip_call_id: format!("{id}@x"),
            caller: number(id),
            dialled: "800".into(),
            transport: "udp".into(),
            arrived_at: Millis(now - 120_000),
            ring_cycle_ms: 6_000,
        },
        Record::SurveyScheduled {
            call_id,
            survey_id: id,
            at: Millis(now - 60_000),
            number: number(id),
            number_hash: number_hash(KEY, &number(id)),
            language: "zh".into(),
            text: format!("感谢致电，请为本次服务打分：回复1-5（5为非常满意），回复TD退订。#{id}"),
            send_at: Millis(now - 1_000),
            deferred: false,
            reply_by: Millis(now + 48 * 3_600_000),
            agent: Some("1002".into()),
            queue: Some("sales".into()),
            complaint: false,
        },
    ]
}

fn password_file() -> tempfile::NamedTempFile {
    let mut pw = tempfile::NamedTempFile::new().unwrap();
    writeln!(pw, "{PASSWORD}").unwrap();
    pw
}

async fn wait_store(
    store: &Store,
    what: &str,
    limit: Duration,
    check: impl AsyncFn(&Store) -> bool,
) {
    let end = Instant::now() + limit;
    while !check(store).await {
        assert!(Instant::now() < end, "store: no {what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surveys_are_sent_delivered_and_answered_over_smpp() {
    if skip() {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut smsc = Smsc::start();
    let pw = password_file();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    let clock = Clock::new();
    let now = clock.now().as_u64();
    let mut batch = Vec::new();
    for id in 1..=3 {
        batch.extend(survey(id, now));
    }
    store.write_batch(&batch).await.unwrap();

    let (gateway, events) =
        Gateway::start(&smpp_config(smsc.port, pw.path(), 100), "default").unwrap();
    assert_eq!(gateway.name(), "smpp");
    let mut cfg = ServiceConfig::new(policy(), KEY.to_vec());
    cfg.poll_interval = Duration::from_millis(50);
    cfg.sweep_interval = Duration::from_millis(200);
    let (opt_tx, mut opt_rx) = tokio::sync::mpsc::unbounded_channel();
    let service = SurveyService::start(store.clone(), cfg, gateway, events, opt_tx, clock)
        .await
        .unwrap();

    // Every queued survey reaches the SMSC, as UCS-2, with its id as client reference.
    tokio::task::block_in_place(|| {
        smsc.wait_for("3 submits", Duration::from_secs(20), |s| {
            s.submits().len() >= 3
        })
    });
    let refs: BTreeSet<u64> = smsc
        .submits()
        .iter()
        .filter_map(|v| Smsc::reference(v))
        .collect();
    assert_eq!(refs, BTreeSet::from([1, 2, 3]));
    assert!(smsc.submits().iter().all(|v| v["data_coding"] == 8));
    wait_store(&store, "3 sent", Duration::from_secs(10), async |s| {
        s.outbox_counts().await.unwrap().get("sent") == Some(&3)
    })
    .await;

    // A receipt for survey 1's text marks it delivered.
    let sub1 = smsc
        .submits()
        .into_iter()
        .find(|v| Smsc::reference(v) == Some(1))
        .unwrap()
        .clone();
    smsc.cmd(json!({"cmd": "receipt", "message_id": sub1["message_id"], "stat": "DELIVRD"}));
    wait_store(
        &store,
        "survey 1 delivered",
        Duration::from_secs(10),
        async |s| s.survey_row(1).await.unwrap().unwrap().state == "delivered",
    )
    .await;

    // The caller replies "5 很好" (number as SMSCs give it: no `+`).
    let from = number(1).trim_start_matches('+').to_string();
    smsc.cmd(json!({"cmd": "mo", "from": from, "to": "10690000", "text": "5 很好"}));
    wait_store(
        &store,
        "survey 1 answered",
        Duration::from_secs(10),
        async |s| s.survey_row(1).await.unwrap().unwrap().state == "answered",
    )
    .await;
    let s1 = store.survey_row(1).await.unwrap().unwrap();
    assert_eq!((s1.csat, s1.comment.as_deref()), (Some(5), Some("很好")));

    // Survey 2's caller opts out: confirmed once, the engine told the number hash.
    let from2 = number(2).trim_start_matches('+').to_string();
    smsc.cmd(json!({"cmd": "mo", "from": from2, "to": "10690000", "text": "TD"}));
    let hash = tokio::time::timeout(Duration::from_secs(10), opt_rx.recv())
        .await
        .expect("opt-out reported")
        .unwrap();
    assert_eq!(hash, number_hash(KEY, &number(2)));
    tokio::task::block_in_place(|| {
        smsc.wait_for("the confirmation", Duration::from_secs(10), |s| {
            s.submits().len() >= 4
        })
    });
    // An unknown number's text: unmatched.
    smsc.cmd(json!({"cmd": "mo", "from": "8613999999999", "to": "10690000", "text": "5"}));
    wait_store(
        &store,
        "unmatched reply",
        Duration::from_secs(10),
        async |s| {
            s.inbound_rows()
                .await
                .unwrap()
                .iter()
                .any(|r| r.0 == "unmatched")
        },
    )
    .await;
    let stats = service.stats().clone();
    assert_eq!(ServiceStats::get(&stats.sent), 4);
    assert_eq!(ServiceStats::get(&stats.receipts), 1);
    assert_eq!(ServiceStats::get(&stats.opt_outs), 1);
    assert_eq!(ServiceStats::get(&stats.replies_unmatched), 1);
    service.stop(Duration::from_secs(2)).await;
    assert_eq!(
        store.survey_row(2).await.unwrap().unwrap().state,
        "opted_out"
    );
}

// ---------- the crash test ----------

const CHILD_DB: &str = "CCSWITCH_SURVEY_CHILD_DB";
const CHILD_PORT: &str = "CCSWITCH_SURVEY_CHILD_SMSC_PORT";
const CHILD_PW: &str = "CCSWITCH_SURVEY_CHILD_PW";

/// Not a test on its own: the process `crash_test` starts and kills. Runs the service on
/// the database and SMSC from its environment until killed.
#[test]
fn crash_child() {
    let Ok(db) = std::env::var(CHILD_DB) else {
        return;
    };
    let port: u16 = std::env::var(CHILD_PORT).unwrap().parse().unwrap();
    let pw = PathBuf::from(std::env::var(CHILD_PW).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Store::open(&db).await.unwrap();
        // 200 texts a second: 500 take a few seconds, time enough to kill mid-sending.
        let (gateway, events) = Gateway::start(&smpp_config(port, &pw, 200), "smpp").unwrap();
        let mut cfg = ServiceConfig::new(policy(), KEY.to_vec());
        cfg.poll_interval = Duration::from_millis(20);
        cfg.outbox.max_in_flight = 20;
        let (opt_tx, _opt_rx) = tokio::sync::mpsc::unbounded_channel();
        let _service = SurveyService::start(store, cfg, gateway, events, opt_tx, Clock::new())
            .await
            .unwrap();
        eprintln!("crash_child: service running");
        std::future::pending::<()>().await;
    });
}

fn spawn_child(db: &str, port: u16, pw: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, db)
        .env(CHILD_PORT, port.to_string())
        .env(CHILD_PW, pw)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the crash child")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_test_kill_9_mid_sending() {
    if skip() {
        return;
    }
    const N: u64 = 500;
    let mut smsc = Smsc::start();
    let pw = password_file();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("crash.db").display());
    let store = Store::open(&db).await.unwrap();
    let now = Clock::new().now().as_u64();
    let batch: Vec<Record> = (1..=N).flat_map(|id| survey(id, now)).collect();
    store.write_batch(&batch).await.unwrap();

    let started = Instant::now();
    let mut child = spawn_child(&db, smsc.port, pw.path());
    // Kill it with SIGKILL once a good part, not all, has gone out.
    tokio::task::block_in_place(|| {
        smsc.wait_for("150 submits", Duration::from_secs(60), |s| {
            s.submits().len() >= 150
        })
    });
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    tokio::task::block_in_place(|| smsc.pump(Duration::from_millis(300)));
    let before_kill = smsc.submits().len();
    let rows = store.outbox_rows().await.unwrap();
    let in_flight: BTreeSet<u64> = rows
        .iter()
        .filter(|r| r.state == "sending")
        .map(|r| r.message_id)
        .collect();
    let sent_at_kill = rows.iter().filter(|r| r.state == "sent").count();
    eprintln!(
        "killed after {:?}: SMSC saw {before_kill} submits, outbox had {sent_at_kill} sent and {} sending",
        started.elapsed(),
        in_flight.len()
    );
    assert!(sent_at_kill < N as usize, "killed mid-sending");

    // Restart: everything goes out, the in-flight texts at most once more.
    let mut child = spawn_child(&db, smsc.port, pw.path());
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = store.outbox_counts().await.unwrap();
        if counts.get("sent") == Some(&N) {
            break;
        }
        assert!(
            Instant::now() < end,
            "not all sent after the restart: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::block_in_place(|| smsc.pump(Duration::from_millis(300)));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    eprintln!("all {N} sent {:?} after the first start", started.elapsed());

    let mut per_id: BTreeMap<u64, usize> = BTreeMap::new();
    for v in smsc.submits() {
        let id = Smsc::reference(v).expect("every submit carries its reference");
        *per_id.entry(id).or_default() += 1;
    }
    let missing: Vec<u64> = (1..=N).filter(|id| !per_id.contains_key(id)).collect();
    assert!(missing.is_empty(), "never reached the SMSC: {missing:?}");
    let dups: BTreeSet<u64> = per_id
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    eprintln!(
        "SMSC submits: {} for {N} surveys; duplicates {:?} (in flight at the kill: {:?})",
        smsc.submits().len(),
        dups,
        in_flight
    );
    assert!(
        dups.is_subset(&in_flight),
        "duplicates outside the texts in flight at the kill: {:?}",
        dups.difference(&in_flight).collect::<Vec<_>>()
    );
    assert!(
        per_id.values().all(|n| *n <= 2),
        "a text sent more than twice: {per_id:?}"
    );
    // The outbox accounts for all 500: each sent, each survey sent, attempts <= 2.
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), N as usize);
    assert!(rows.iter().all(|r| r.state == "sent" && r.attempts <= 2));
    for id in [1, N / 2, N] {
        assert_eq!(store.survey_row(id).await.unwrap().unwrap().state, "sent");
    }
}

// ---------- webhooks ----------

/// A raw HTTP/1.1 POST; returns the status code.
fn http_post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> u16 {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

/// `/sms/status` and `/sms/inbound`: signed requests are stored once; a bad signature, a
/// stale timestamp or a replay is 401 and changes nothing; an oversized body is 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_reach_the_service() {
    use ccswitch::api::{self, ApiState, SurveyWebhooks};
    use ccswitch::sms::http::{sign_webhook, WebhookVerifier};
    const SECRET: &str = "webhook-secret";
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("w.db").display()))
        .await
        .unwrap();
    let clock = Clock::new();
    let now = clock.now().as_u64();
    store.write_batch(&survey(7, now)).await.unwrap();
    // The "gateway" hands texts to a channel; the test plays the provider.
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut cfg = ServiceConfig::new(policy(), KEY.to_vec());
    cfg.poll_interval = Duration::from_millis(50);
    let (opt_tx, _opt_rx) = tokio::sync::mpsc::unbounded_channel();
    let service = SurveyService::start(
        store.clone(),
        cfg,
        Gateway::Channel(out_tx),
        ev_rx,
        opt_tx,
        clock,
    )
    .await
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), out_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((msg.id, msg.to.as_str()), (7, number(7).as_str()));
    ev_tx
        .send(ccswitch::sms::SmsEvent::Submitted {
            id: 7,
            gateway_ids: vec!["h7".into()],
        })
        .unwrap();
    wait_store(&store, "sent", Duration::from_secs(10), async |s| {
        s.survey_row(7).await.unwrap().unwrap().state == "sent"
    })
    .await;

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .build_recorder()
        .handle();
    let state = ApiState {
        metrics,
        surveys: Some(SurveyWebhooks {
            service: service.handle(),
            verifier: Arc::new(Mutex::new(WebhookVerifier::new(
                SECRET.into(),
                Duration::from_secs(300),
                1024,
                1000,
            ))),
            clock,
            max_body: 1024,
        }),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(listener, state, async {
        let _ = stop_rx.await;
    }));
    let ts = || (Clock::new().now().as_u64() / 1000).to_string();
    let signed = |body: &str, ts: String| {
        let sig = sign_webhook(SECRET, &ts, body.as_bytes());
        vec![
            ("X-Timestamp", ts),
            ("X-Signature", format!("sha256={sig}")),
        ]
    };
    let post = |path: &'static str, h: Vec<(&'static str, String)>, body: String| {
        tokio::task::spawn_blocking(move || http_post(addr, path, &h, body.as_bytes()))
    };

    let status = r#"{"message_id":"h7","status":"delivered"}"#.to_string();
    assert_eq!(
        post("/sms/status", signed(&status, ts()), status.clone())
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        store.survey_row(7).await.unwrap().unwrap().state,
        "delivered"
    );

    let reply = format!(
        r#"{{"from":"{}","to":"10690000","text":"2 slow"}}"#,
        number(7)
    );
    // Wrong secret, stale timestamp: 401, nothing stored.
    let forged = vec![
        ("X-Timestamp", ts()),
        ("X-Signature", sign_webhook("nope", &ts(), reply.as_bytes())),
    ];
    assert_eq!(
        post("/sms/inbound", forged, reply.clone()).await.unwrap(),
        401
    );
    let old = (now / 1000 - 3_600).to_string();
    assert_eq!(
        post("/sms/inbound", signed(&reply, old), reply.clone())
            .await
            .unwrap(),
        401
    );
    assert_eq!(
        post("/sms/inbound", vec![], reply.clone()).await.unwrap(),
        401
    );
    assert!(store.inbound_rows().await.unwrap().is_empty());
    // Oversized: 413.
    let big = format!(r#"{{"from":"x","to":"y","text":"{}"}}"#, "a".repeat(4096));
    assert_eq!(
        post("/sms/inbound", signed(&big, ts()), big.clone())
            .await
            .unwrap(),
        413
    );
    // Signed: stored; the same request again: 401 (replay), nothing changes.
    let h = signed(&reply, ts());
    assert_eq!(
        post("/sms/inbound", h.clone(), reply.clone())
            .await
            .unwrap(),
        200
    );
    assert_eq!(post("/sms/inbound", h, reply.clone()).await.unwrap(), 401);
    let s = store.survey_row(7).await.unwrap().unwrap();
    assert_eq!(
        (s.state.as_str(), s.csat, s.comment.as_deref()),
        ("answered", Some(2), Some("slow"))
    );
    assert_eq!(store.inbound_rows().await.unwrap().len(), 1);
    assert_eq!(
        store.follow_up_rows().await.unwrap().len(),
        1,
        "a low score opens a task"
    );
    // Not JSON: 400.
    let junk = "not json".to_string();
    assert_eq!(
        post("/sms/inbound", signed(&junk, ts()), junk.clone())
            .await
            .unwrap(),
        400
    );

    let _ = stop_tx.send(());
    let _ = server.await;
    service.stop(Duration::from_secs(1)).await;
}

/// A text that is due when quiet hours are on (a retry, a backlog after an outage) is held:
/// the service claims nothing until they end. Quiet hours here are the half hour either side
/// of now in the IVR's time zone; a second service without them then sends the survey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_texts_wait_while_quiet_hours_are_on() {
    use ccswitch::engine::survey::QuietHours;
    use chrono::Timelike;
    if skip() {
        return;
    }
    let mut smsc = Smsc::start();
    let pw = password_file();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("q.db").display()))
        .await
        .unwrap();
    let clock = Clock::new();
    let now = clock.now().as_u64();
    store.write_batch(&survey(1, now)).await.unwrap();

    let mut quiet = (*policy()).clone();
    let local = chrono::DateTime::from_timestamp_millis(now as i64)
        .unwrap()
        .with_timezone(&quiet.time_zone);
    let minute = local.hour() * 60 + local.minute();
    quiet.quiet_hours = Some(QuietHours {
        start_minute: (minute + 1440 - 30) % 1440,
        end_minute: (minute + 30) % 1440,
    });
    let start = |p: Arc<SurveyPolicy>| {
        let (gateway, events) =
            Gateway::start(&smpp_config(smsc.port, pw.path(), 100), "default").unwrap();
        let mut cfg = ServiceConfig::new(p, KEY.to_vec());
        cfg.poll_interval = Duration::from_millis(50);
        let (opt_tx, _opt_rx) = tokio::sync::mpsc::unbounded_channel();
        SurveyService::start(store.clone(), cfg, gateway, events, opt_tx, clock)
    };
    let held = start(Arc::new(quiet)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(smsc.submits().is_empty(), "nothing goes out in quiet hours");
    assert_eq!(store.outbox_counts().await.unwrap().get("queued"), Some(&1));
    held.stop(Duration::from_secs(1)).await;

    let open = start(policy()).await.unwrap();
    tokio::task::block_in_place(|| {
        smsc.wait_for("the survey", Duration::from_secs(20), |s| {
            !s.submits().is_empty()
        })
    });
    open.stop(Duration::from_secs(1)).await;
}
