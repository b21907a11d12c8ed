//! The supervisor REST API against the real binary (`target/debug/ccswitch run`) on 127.0.0.1,
//! on SQLite and on PostgreSQL (a fresh database per run; `CCSWITCH_TEST_SKIP_POSTGRES=1`
//! skips that half). Call data is seeded through the store before the switch starts.
//!
//! Checked: the OpenAPI walk (every path and method of the served openapi.json, for no
//! credentials, viewer, supervisor, admin and a bearer token: allowed / 401 / 403), CSRF on
//! cookie POSTs, bad bodies and parameters (problem documents with stable types), cursor
//! paging (each call exactly once), reports equal to the CLI's, CSV exports, the call
//! timeline (numbers masked, no server path), unmask, a recording range request (206, the
//! right bytes), the agent command reaching the engine, monitoring requests refused with
//! their reasons (agent 403, no SIP phone 422, unknown call 404, bad bodies) and audited,
//! and the audit rows.

#![allow(clippy::disallowed_methods)] // deadlines for the switch to start and to act

use ccswitch::auth::{password, token, Role};
use ccswitch::engine::record::{EndedBy, IvrOutcome};
use ccswitch::engine::{Millis, Record};
use ccswitch::store::Store;
use serde_json::{json, Value};
use sqlx::Connection;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USERS: [(&str, &str, &str); 3] = [
    ("val", "viewer", "val-watches-the-board"),
    ("sue", "supervisor", "sue-runs-the-floor"),
    ("ada", "admin", "ada-owns-the-switch"),
];
/// A supervisor with a SIP phone (users.toml `sip_extension = "9001"`).
const PHONE_USER: (&str, &str) = ("mo", "mo-listens-in");
const CALLER: &str = "+8613812345678";
const BULK: usize = 23;
const DAY: u64 = 86_400_000;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read config").flatten() {
        let dst = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), &dst).expect("copy");
        }
    }
}

// ---------- databases ----------

/// Drops its PostgreSQL database when it goes, even when a test panics.
struct PgDatabase {
    admin: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
    }
}

/// A fresh PostgreSQL database, or None when CCSWITCH_TEST_SKIP_POSTGRES=1.
async fn pg_url() -> Option<(String, PgDatabase)> {
    if std::env::var("CCSWITCH_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        eprintln!("CCSWITCH_TEST_SKIP_POSTGRES=1: skipping the PostgreSQL half");
        return None;
    }
    let admin = std::env::var("CCSWITCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let name = format!("ccswitch_rest_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {admin} unreachable ({e}); set CCSWITCH_TEST_SKIP_POSTGRES=1 to skip")
    });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let (base, _) = admin.rsplit_once('/').expect("a database in the URL");
    Some((format!("{base}/{name}"), PgDatabase { admin, name }))
}

// ---------- seeded calls ----------

/// c-full: IVR, queue, two offers, answered, a hold, a transfer, wrap-up, recording.
fn full_call(t: u64, recording: &Path) -> Vec<Record> {
    let c = || "c-full".to_string();
    vec![
        Record::CallStarted {
            call_id: c(),
            sip_call_id: "c-full@10.0.0.1".into(),
            caller: CALLER.into(),
            dialled: "800".into(),
            transport: "udp".into(),
            arrived_at: Millis(t),
            ring_cycle_ms: 6_000,
        },
        Record::CallAnswered {
            call_id: c(),
            answered_at: Millis(t + 3_000),
            within_three_rings: true,
        },
        Record::IvrStep {
            call_id: c(),
            seq: 0,
            at: Millis(t + 3_010),
            node: "language".into(),
            kind: "language".into(),
            digits: Some("2".into()),
            detail: Some("lang=zh".into()),
        },
        Record::IvrStep {
            call_id: c(),
            seq: 1,
            at: Millis(t + 6_000),
            node: "main".into(),
            kind: "menu".into(),
            digits: Some("1".into()),
            detail: None,
        },
        Record::IvrLeft {
            call_id: c(),
            at: Millis(t + 7_000),
            outcome: IvrOutcome::Queued,
        },
        Record::CallQueued {
            call_id: c(),
            at: Millis(t + 7_000),
            queue: "sales".into(),
            priority: 0,
        },
        Record::OfferStarted {
            call_id: c(),
            attempt: 1,
            agent: "1002".into(),
            at: Millis(t + 8_000),
        },
        Record::OfferEnded {
            call_id: c(),
            attempt: 1,
            at: Millis(t + 20_000),
            outcome: "no_answer".into(),
        },
        Record::OfferStarted {
            call_id: c(),
            attempt: 2,
            agent: "1001".into(),
            at: Millis(t + 20_100),
        },
        Record::OfferEnded {
            call_id: c(),
            attempt: 2,
            at: Millis(t + 25_000),
            outcome: "answered".into(),
        },
        Record::AgentAnswered {
            call_id: c(),
            agent: "1001".into(),
            at: Millis(t + 25_000),
        },
        Record::HoldStarted {
            call_id: c(),
            at: Millis(t + 40_000),
        },
        Record::HoldEnded {
            call_id: c(),
            at: Millis(t + 50_000),
        },
        Record::CallTransferred {
            call_id: c(),
            at: Millis(t + 90_000),
            target: "13900001111".into(),
            by: "1001".into(),
        },
        Record::CallEnded {
            call_id: c(),
            ended_at: Millis(t + 95_000),
            ended_by: EndedBy::Agent,
            reason: "bye".into(),
            final_status: 200,
        },
        Record::RecordingSaved {
            call_id: c(),
            at: Millis(t + 95_100),
            path: recording.display().to_string(),
        },
        Record::WrapUpEnded {
            call_id: c(),
            agent: "1001".into(),
            at: Millis(t + 125_000),
        },
        Record::FollowUpOpened {
            call_id: c(),
            at: Millis(t + 95_000),
            agent: Some("1001".into()),
            queue: Some("sales".into()),
            reason: "complaint_queue".into(),
            due_at: Millis(t + 95_000 + DAY),
        },
        // Due long after the test: the survey service leaves it pending.
        Record::SurveyScheduled {
            call_id: c(),
            survey_id: 77,
            at: Millis(t + 95_000),
            number: CALLER.into(),
            number_hash: "cd".repeat(32),
            language: "zh".into(),
            text: "rate us".into(),
            send_at: Millis(t + 30 * DAY),
            deferred: true,
            reply_by: Millis(t + 31 * DAY),
            agent: Some("1001".into()),
            queue: Some("sales".into()),
            complaint: true,
        },
    ]
}

/// A call whose recording path points outside the recordings folder, and one whose caller
/// is only a retention hash.
fn escaping_call(t: u64, outside: &Path) -> Vec<Record> {
    vec![
        Record::CallStarted {
            call_id: "c-hashed".into(),
            sip_call_id: "c-hashed@10.0.0.1".into(),
            caller: "ab".repeat(32),
            dialled: "800".into(),
            transport: "udp".into(),
            arrived_at: Millis(t),
            ring_cycle_ms: 6_000,
        },
        Record::CallStarted {
            call_id: "c-escape".into(),
            sip_call_id: "c-escape@10.0.0.1".into(),
            caller: "13700000000".into(),
            dialled: "800".into(),
            transport: "udp".into(),
            arrived_at: Millis(t),
            ring_cycle_ms: 6_000,
        },
        Record::CallEnded {
            call_id: "c-escape".into(),
            ended_at: Millis(t + 1_000),
            ended_by: EndedBy::Caller,
            reason: "bye".into(),
            final_status: 200,
        },
        Record::RecordingSaved {
            call_id: "c-escape".into(),
            at: Millis(t + 1_000),
            path: outside.display().to_string(),
        },
        Record::CallStarted {
            call_id: "c-gone".into(),
            sip_call_id: "c-gone@10.0.0.1".into(),
            caller: "13700000001".into(),
            dialled: "800".into(),
            transport: "udp".into(),
            arrived_at: Millis(t),
            ring_cycle_ms: 6_000,
        },
        Record::RecordingSaved {
            call_id: "c-gone".into(),
            at: Millis(t + 1_000),
            path: outside
                .with_file_name("recordings")
                .join("gone.wav")
                .display()
                .to_string(),
        },
    ]
}

/// Bulk call `i`: arrivals in threes at the same millisecond (keyset ties); outcomes cycle
/// abandoned, answered, self_served; callers end in `i` as 4 digits.
fn bulk_call(i: usize, t0: u64) -> Vec<Record> {
    let id = format!("p-{i:02}");
    let t = t0 + (i as u64 / 3) * 60_000;
    let mut out = vec![Record::CallStarted {
        call_id: id.clone(),
        sip_call_id: format!("{id}@10.0.0.2"),
        caller: format!("1391234{i:04}"),
        dialled: "800".into(),
        transport: "udp".into(),
        arrived_at: Millis(t),
        ring_cycle_ms: 6_000,
    }];
    let queued = |out: &mut Vec<Record>| {
        out.push(Record::IvrLeft {
            call_id: id.clone(),
            at: Millis(t + 1_000),
            outcome: IvrOutcome::Queued,
        });
        out.push(Record::CallQueued {
            call_id: id.clone(),
            at: Millis(t + 1_000),
            queue: "support".into(),
            priority: 0,
        });
    };
    let ended_by = match i % 3 {
        0 => {
            queued(&mut out);
            EndedBy::Caller
        }
        1 => {
            queued(&mut out);
            out.push(Record::AgentAnswered {
                call_id: id.clone(),
                agent: "1003".into(),
                at: Millis(t + 5_000),
            });
            EndedBy::Agent
        }
        _ => {
            out.push(Record::IvrLeft {
                call_id: id.clone(),
                at: Millis(t + 9_000),
                outcome: IvrOutcome::SelfServed,
            });
            EndedBy::System
        }
    };
    out.push(Record::CallEnded {
        call_id: id,
        ended_at: Millis(t + 30_000),
        ended_by,
        reason: "bye".into(),
        final_status: 200,
    });
    out
}

// ---------- the switch ----------

struct Switch {
    child: Child,
    http: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Switch {
    fn log_tail(&self) -> String {
        let l = self.log.lock().unwrap();
        l[l.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config folder, a database seeded with calls and an API token, and the running switch.
/// Fields drop in order: the switch stops before its database and folder go.
struct Env {
    switch: Option<Switch>,
    config: PathBuf,
    db_url: String,
    token: String,
    /// Arrival of c-full; the bulk calls start an hour later.
    t0: u64,
    wav: Vec<u8>,
    _pg: Option<PgDatabase>,
    tmp: tempfile::TempDir,
}

impl Env {
    async fn new(db: Option<(String, PgDatabase)>) -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("ccswitch-rest-")
            .tempdir()
            .expect("tempdir");
        let config = tmp.path().join("config");
        copy_dir(&manifest().join("config"), &config);
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink(manifest().join("prompts"), tmp.path().join("prompts"));
        let recordings = tmp.path().join("recordings");
        std::fs::create_dir_all(&recordings).unwrap();
        let main = config.join("ccswitch.toml");
        let text = std::fs::read_to_string(&main).unwrap();
        assert!(text.contains("dir = \"recordings\""));
        let text = text.replace(
            "dir = \"recordings\"",
            &format!("dir = {:?}", recordings.display().to_string()),
        );
        std::fs::write(&main, text).unwrap();
        let mut users = String::new();
        for (name, role, pw) in USERS {
            users.push_str(&format!(
                "[[users]]\nname = \"{name}\"\nrole = \"{role}\"\npassword_hash = \"{}\"\n\n",
                password::hash_password(pw).unwrap()
            ));
        }
        // A supervisor with a SIP phone (extension 9001, never registered here).
        users.push_str(&format!(
            "[[users]]\nname = \"{}\"\nrole = \"supervisor\"\npassword_hash = \"{}\"\n\
             sip_extension = \"9001\"\nsip_ha1_md5 = \"{}\"\n\n",
            PHONE_USER.0,
            password::hash_password(PHONE_USER.1).unwrap(),
            ccswitch::proto::digest::ha1(
                ccswitch::proto::digest::Algorithm::Md5,
                "9001",
                "ccswitch",
                "demo9001"
            )
        ));
        // Generous sign-in throttle: the tests sign in a few times from one address.
        users.push_str("[sign_in]\nfree_failures = 50\nblock_after = 100\n");
        std::fs::write(config.join("users.toml"), users).unwrap();

        let (db_url, pg) = match db {
            Some((url, guard)) => (url, Some(guard)),
            None => (
                format!("sqlite:{}?mode=rwc", tmp.path().join("calls.db").display()),
                None,
            ),
        };
        let wav: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        let wav_path = recordings.join("c-full.wav");
        std::fs::write(&wav_path, &wav).unwrap();
        let outside = tmp.path().join("outside.wav");
        std::fs::write(&outside, b"not for you").unwrap();

        let now = chrono::Utc::now().timestamp_millis() as u64;
        let t0 = now - 2 * DAY;
        let store = Store::open(&db_url).await.expect("open store");
        let mut records = full_call(t0, &wav_path);
        records.extend(escaping_call(t0 + 1_000, &outside));
        for i in 0..BULK {
            records.extend(bulk_call(i, t0 + 3_600_000));
        }
        store.write_batch(&records).await.expect("seed calls");
        let tok = token::new_token();
        store
            .create_api_token(
                "integration",
                Role::Supervisor,
                &token::token_hash(&tok),
                Millis(now),
            )
            .await
            .expect("token");
        store.close().await;
        Env {
            tmp,
            config,
            db_url,
            token: tok,
            t0,
            wav,
            switch: None,
            _pg: pg,
        }
    }

    fn start(&mut self, rtp_slot: u16) {
        let lo = 40000 + (std::process::id() % 20) as u16 * 1000 + rtp_slot * 40;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ccswitch"))
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .args(["--sip-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--database", &self.db_url])
            .args(["--rtp-ports", &format!("{lo}-{}", lo + 39)])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ccswitch");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                if line.contains("HTTP listening") {
                    let addr = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .and_then(|a| a.parse().ok());
                    if let Some(a) = addr {
                        let _ = tx.send(a);
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = loop {
            if let Ok(a) = rx.recv_timeout(Duration::from_millis(100)) {
                break a;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "ccswitch exited ({st}):\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "ccswitch did not listen within 20 s:\n{}",
                log.lock().unwrap().join("\n")
            );
        };
        self.switch = Some(Switch { child, http, log });
    }

    fn addr(&self) -> SocketAddr {
        self.switch.as_ref().expect("started").http
    }
}

/// The text of a log line without terminal colour codes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------- HTTP ----------

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
    /// Asserts an RFC 9457 document with this status and type slug.
    fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.text()
        );
        let v = self.json();
        assert_eq!(
            v["type"],
            format!("https://ccswitch.dev/problems/{slug}"),
            "{v}"
        );
        assert_eq!(v["status"], status, "{v}");
        v
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
}

/// One HTTP/1.1 request on a fresh connection.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("answer within 30 s")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a full response");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// How a request authenticates.
#[derive(Clone, Debug)]
enum Who {
    Nobody,
    Session {
        role: &'static str,
        cookie: String,
        csrf: String,
    },
    Bearer(String),
}

impl Who {
    fn role(&self) -> Option<&'static str> {
        match self {
            Who::Nobody => None,
            Who::Session { role, .. } => Some(role),
            Who::Bearer(_) => Some("supervisor"),
        }
    }
    fn name(&self) -> String {
        match self {
            Who::Nobody => "nobody".into(),
            Who::Session { role, .. } => (*role).into(),
            Who::Bearer(_) => "bearer(supervisor)".into(),
        }
    }
    /// Headers for `method`: credentials, and CSRF for a cookie on a non-GET.
    fn headers(&self, method: &str) -> Vec<(String, String)> {
        match self {
            Who::Nobody => vec![],
            Who::Session { cookie, csrf, .. } => {
                let mut h = vec![("Cookie".into(), cookie.clone())];
                if method != "GET" {
                    h.push(("X-CSRF-Token".into(), csrf.clone()));
                }
                h
            }
            Who::Bearer(t) => vec![("Authorization".into(), format!("Bearer {t}"))],
        }
    }
}

async fn call(addr: SocketAddr, who: &Who, method: &str, path: &str, body: Option<&str>) -> Resp {
    let mut h = who.headers(method);
    if body.is_some() {
        h.push((JSON.0.into(), JSON.1.into()));
    }
    let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    request(addr, method, path, &refs, body).await
}

async fn sign_in(addr: SocketAddr, role: &'static str) -> Who {
    let (user, _, pw) = USERS.iter().find(|u| u.1 == role).unwrap();
    let body = json!({"user": user, "password": pw}).to_string();
    let r = request(addr, "POST", "/api/v1/session", &[JSON], Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .expect("Set-Cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_string();
    Who::Session { role, cookie, csrf }
}

// ---------- the scenario ----------

/// The lowest role each operation needs (None: no authentication). A path the served
/// document has and this table lacks fails the walk: add it here.
fn required_role(method: &str, path: &str) -> Option<Option<&'static str>> {
    Some(match (method, path) {
        ("get", "/api/v1/openapi.json") => None,
        ("get", "/api/v1/session") => Some("viewer"),
        ("get", "/api/v1/live/snapshot") | ("get", "/api/v1/live") => Some("viewer"),
        ("get", p) if p.starts_with("/api/v1/reports/") => Some("supervisor"),
        ("get", "/api/v1/calls")
        | ("get", "/api/v1/calls/{call_id}")
        | ("post", "/api/v1/calls/{call_id}/unmask")
        | ("get", "/api/v1/calls/{call_id}/recording")
        | ("post", "/api/v1/agents/{extension}/state")
        | ("get", "/api/v1/agents/{extension}/desk")
        | ("get", "/api/v1/calls/{call_id}/history")
        | ("post", "/api/v1/calls/{call_id}/disposition")
        | ("post", "/api/v1/calls/{call_id}/monitor") => Some("supervisor"),
        ("get", "/api/v1/audit") => Some("admin"),
        _ => return None,
    })
}

fn rank(role: &str) -> u8 {
    match role {
        "viewer" => 1,
        "supervisor" => 2,
        "admin" => 3,
        _ => 0,
    }
}

/// Every path and method of the served document, for every kind of caller.
async fn openapi_walk(env: &Env, callers: &[Who]) {
    let addr = env.addr();
    let r = request(addr, "GET", "/api/v1/openapi.json", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    for scheme in ["session_cookie", "bearer_token"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "security scheme {scheme}"
        );
    }
    let paths = doc["paths"].as_object().expect("paths");
    let mut exercised = 0;
    for (path, item) in paths {
        for (method, _op) in item.as_object().expect("path item") {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let concrete = path
                .replace("{call_id}", "c-full")
                .replace("{extension}", "1001");
            if path == "/api/v1/session" && method != "get" {
                session_checks(env, method).await;
                exercised += 1;
                continue;
            }
            if path == "/api/v1/session/agent" {
                // The agent desk's sign-in: tests/api_agent_desk.rs.
                exercised += 1;
                continue;
            }
            let need = required_role(method, path).unwrap_or_else(|| {
                panic!("{method} {path} is served but not in the test's permission table")
            });
            let body = match (method.as_str(), path.as_str()) {
                ("post", "/api/v1/agents/{extension}/state") => Some(r#"{"state":"ready"}"#),
                ("post", "/api/v1/calls/{call_id}/disposition") => Some(r#"{"code":"resolved"}"#),
                ("post", "/api/v1/calls/{call_id}/monitor") => Some(r#"{"mode":"listen"}"#),
                _ => None,
            };
            let m = method.to_uppercase();
            for who in callers {
                let r = call(addr, who, &m, &concrete, body).await;
                let label = format!("{m} {concrete} as {}", who.name());
                match (need, who.role()) {
                    (None, _) => assert!(r.status < 300, "{label}: {} {}", r.status, r.text()),
                    (Some(_), None) => {
                        r.problem(401, "unauthorized");
                    }
                    (Some(n), Some(role)) if rank(role) < rank(n) => {
                        let v = r.problem(403, "forbidden");
                        assert!(v["permission"].is_string(), "{label}: {v}");
                    }
                    (Some(_), Some(_)) if path == "/api/v1/calls/{call_id}/monitor" => {
                        // Neither these users nor tokens have a SIP phone to ring.
                        let v = r.problem(422, "no-sip-phone");
                        assert!(v["detail"].as_str().is_some(), "{label}: {v}");
                    }
                    (Some(_), Some(_)) if path == "/api/v1/live" => {
                        // A WebSocket route answers a plain GET with an upgrade error.
                        assert!(r.status != 401 && r.status != 403, "{label}: {}", r.status);
                    }
                    (Some(_), Some(_)) => {
                        assert!(
                            (200..300).contains(&r.status),
                            "{label}: {} {}",
                            r.status,
                            r.text()
                        );
                    }
                }
            }
            exercised += 1;
        }
    }
    // Every route this crate serves is in the document (the live routes join later).
    let expected = [
        ("get", "/api/v1/openapi.json"),
        ("get", "/api/v1/session"),
        ("post", "/api/v1/session"),
        ("delete", "/api/v1/session"),
        ("post", "/api/v1/agents/{extension}/state"),
        ("get", "/api/v1/reports/queues"),
        ("get", "/api/v1/reports/agents"),
        ("get", "/api/v1/reports/system"),
        ("get", "/api/v1/reports/surveys"),
        ("get", "/api/v1/calls"),
        ("get", "/api/v1/calls/{call_id}"),
        ("post", "/api/v1/calls/{call_id}/unmask"),
        ("get", "/api/v1/calls/{call_id}/recording"),
        ("get", "/api/v1/audit"),
        ("post", "/api/v1/session/agent"),
        ("get", "/api/v1/agents/{extension}/desk"),
        ("get", "/api/v1/calls/{call_id}/history"),
        ("post", "/api/v1/calls/{call_id}/disposition"),
        ("post", "/api/v1/calls/{call_id}/monitor"),
    ];
    for (m, p) in expected {
        assert!(
            paths.get(p).and_then(|i| i.get(m)).is_some(),
            "{m} {p} missing"
        );
    }
    assert!(exercised >= expected.len(), "{exercised} operations walked");
}

/// POST / DELETE /api/v1/session (they make and end sessions: not a role matrix).
async fn session_checks(env: &Env, method: &str) {
    let addr = env.addr();
    match method {
        "post" => {
            let body = json!({"user": "sue", "password": "wrong"}).to_string();
            let r = request(addr, "POST", "/api/v1/session", &[JSON], Some(&body)).await;
            r.problem(401, "sign-in-failed");
            let r = request(
                addr,
                "POST",
                "/api/v1/session",
                &[JSON],
                Some(r#"{"user":"sue","password":"x","otp":1}"#),
            )
            .await;
            r.problem(422, "invalid-body");
        }
        "delete" => {
            let who = sign_in(addr, "viewer").await;
            let Who::Session { cookie, csrf, .. } = &who else {
                unreachable!()
            };
            let r = request(
                addr,
                "DELETE",
                "/api/v1/session",
                &[("Cookie", cookie)],
                None,
            )
            .await;
            r.problem(403, "csrf-token-invalid");
            let r = request(
                addr,
                "DELETE",
                "/api/v1/session",
                &[("Cookie", cookie), ("X-CSRF-Token", csrf)],
                None,
            )
            .await;
            assert_eq!(r.status, 204, "{}", r.text());
            let r = call(addr, &who, "GET", "/api/v1/session", None).await;
            r.problem(401, "unauthorized");
        }
        m => panic!("unexpected method {m} on /api/v1/session"),
    }
}

async fn csrf_and_bad_bodies(env: &Env, sup: &Who) {
    let addr = env.addr();
    // No such API path, or a path that takes other methods: problem documents too.
    call(addr, sup, "GET", "/api/v1/no-such-thing", None)
        .await
        .problem(404, "not-found");
    let r = call(addr, sup, "DELETE", "/api/v1/calls", None).await;
    r.problem(405, "method-not-allowed");
    assert_eq!(r.header("allow"), Some("GET,HEAD"), "{:?}", r.headers);
    let Who::Session { cookie, .. } = sup else {
        unreachable!()
    };
    for path in ["/api/v1/agents/1001/state", "/api/v1/calls/c-full/unmask"] {
        let r = request(
            addr,
            "POST",
            path,
            &[("Cookie", cookie), JSON],
            Some(r#"{"state":"ready"}"#),
        )
        .await;
        r.problem(403, "csrf-token-invalid");
        let r = request(
            addr,
            "POST",
            path,
            &[("Cookie", cookie), ("X-CSRF-Token", "forged"), JSON],
            Some(r#"{"state":"ready"}"#),
        )
        .await;
        r.problem(403, "csrf-token-invalid");
    }
    let state = "/api/v1/agents/1001/state";
    let bad: [(&str, u16, &str); 9] = [
        (r#"{"state":"ready","extra":1}"#, 422, "invalid-body"),
        // serde_json reports a number where an enum is due as a syntax error: 400.
        (r#"{"state":5}"#, 400, "invalid-body"),
        (r#"{"state":"ready","reason":7}"#, 422, "invalid-body"),
        (r#"{"state":"asleep"}"#, 422, "invalid-body"),
        (r#"{"state":"not_ready"}"#, 422, "invalid-body"),
        (
            r#"{"state":"not_ready","reason":"coffee break!"}"#,
            422,
            "invalid-body",
        ),
        (r#"{"state":"ready","reason":"break"}"#, 422, "invalid-body"),
        (r#"{"state":"#, 400, "invalid-body"),
        ("[]", 422, "invalid-body"),
    ];
    for (body, status, slug) in bad {
        let r = call(addr, sup, "POST", state, Some(body)).await;
        r.problem(status, slug);
    }
    let big = format!(r#"{{"state":"ready","reason":"{}"}}"#, "x".repeat(8000));
    call(addr, sup, "POST", state, Some(&big))
        .await
        .problem(413, "payload-too-large");
    let r = request(
        addr,
        "POST",
        state,
        &[
            ("Authorization", &format!("Bearer {}", env.token)),
            ("Content-Type", "text/plain"),
        ],
        Some(r#"{"state":"ready"}"#),
    )
    .await;
    r.problem(415, "unsupported-media-type");
    call(
        addr,
        sup,
        "POST",
        "/api/v1/agents/9999/state",
        Some(r#"{"state":"ready"}"#),
    )
    .await
    .problem(404, "not-found");

    // Query parameters.
    let t0 = env.t0;
    let bad_queries = [
        "/api/v1/calls?limit=501".to_string(),
        "/api/v1/calls?limit=0".to_string(),
        "/api/v1/calls?limit=ten".to_string(),
        "/api/v1/calls?colour=red".to_string(),
        "/api/v1/calls?number_suffix=12a4".to_string(),
        "/api/v1/calls?number_suffix=12345".to_string(),
        "/api/v1/calls?outcome=lost".to_string(),
        "/api/v1/calls?cursor=zz".to_string(),
        format!("/api/v1/calls?from={}&to={}", t0 - 100 * DAY, t0),
        format!("/api/v1/calls?from={t0}&to={t0}"),
        "/api/v1/calls?from=yesterday".to_string(),
        "/api/v1/reports/queues?from=2026-01-01&to=2026-06-01".to_string(),
        "/api/v1/reports/queues?interval=hour".to_string(),
        "/api/v1/reports/agents?format=xml".to_string(),
        "/api/v1/reports/surveys?by=weather".to_string(),
        "/api/v1/audit?limit=9999".to_string(),
    ];
    let bearer = Who::Bearer(env.token.clone());
    let admin = sign_in(addr, "admin").await;
    for q in bad_queries {
        let who = if q.starts_with("/api/v1/audit") {
            &admin
        } else {
            &bearer
        };
        call(addr, who, "GET", &q, None)
            .await
            .problem(400, "bad-request");
    }
}

/// Pages through the bulk calls with a cursor: each exactly once, newest first.
async fn paging(env: &Env, who: &Who) {
    let addr = env.addr();
    let (from, to) = (env.t0 + 3_000_000, env.t0 + DAY);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = format!("/api/v1/calls?from={from}&to={to}&limit=5");
        if let Some(c) = &cursor {
            q.push_str(&format!("&cursor={c}"));
        }
        let r = call(addr, who, "GET", &q, None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let calls = v["calls"].as_array().unwrap();
        assert!(calls.len() <= 5);
        for c in calls {
            seen.push((
                c["arrived_at"].as_u64().unwrap(),
                c["call_id"].as_str().unwrap().to_string(),
            ));
            let n = c["number"].as_str().unwrap();
            assert!(n.contains('*') && !n.contains("1391234"), "masked: {n}");
        }
        pages += 1;
        assert!(pages < 20, "paging does not end");
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut ids: Vec<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(seen.len(), BULK, "{seen:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), BULK, "each call exactly once");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first, ties by call id");

    // A cursor is bound to its filters.
    let q = format!("/api/v1/calls?from={from}&to={to}&limit=5");
    let c = call(addr, who, "GET", &q, None).await.json()["next_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let other = format!("/api/v1/calls?from={from}&to={to}&limit=5&queue=support&cursor={c}");
    call(addr, who, "GET", &other, None)
        .await
        .problem(400, "bad-request");
    let mut tampered = c.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    call(addr, who, "GET", &format!("{q}&cursor={tampered}"), None)
        .await
        .problem(400, "bad-request");

    // Filters.
    let count = |v: Value| v["calls"].as_array().unwrap().len();
    let with_rest = |k: usize| (0..BULK).filter(|i| i % 3 == k).count();
    let base = format!("/api/v1/calls?from={from}&to={to}&limit=500");
    for (filter, expect) in [
        ("&outcome=abandoned", with_rest(0)),
        ("&outcome=answered", with_rest(1)),
        ("&outcome=self_served", with_rest(2)),
        ("&queue=support", with_rest(0) + with_rest(1)),
        ("&agent=1003", with_rest(1)),
        ("&number_suffix=0007", 1),
        ("&number_suffix=99", 0),
    ] {
        let r = call(addr, who, "GET", &format!("{base}{filter}"), None).await;
        assert_eq!(count(r.json()), expect, "{filter}");
    }
    let r = call(addr, who, "GET", &format!("{base}&outcome=answered"), None).await;
    for c in r.json()["calls"].as_array().unwrap() {
        assert_eq!(c["outcome"], "answered");
    }
    // The search's outcome (SQL) is the timeline's (Rust) for every call.
    let all = call(addr, who, "GET", &base, None).await.json();
    for c in all["calls"].as_array().unwrap() {
        let id = c["call_id"].as_str().unwrap();
        let d = call(addr, who, "GET", &format!("/api/v1/calls/{id}"), None).await;
        assert_eq!(d.json()["outcome"], c["outcome"], "{id}");
    }
    call(addr, who, "GET", "/api/v1/calls/%FF%FE", None)
        .await
        .problem(400, "bad-request");
    // CSV of a page.
    let r = call(addr, who, "GET", &format!("{base}&format=csv"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(r
        .header("content-disposition")
        .is_some_and(|d| d.starts_with("attachment") && d.contains("calls.csv")));
    let text = r.text();
    assert!(text.starts_with("arrived_at,call_id,number,"), "{text}");
    assert_eq!(text.lines().count(), BULK + 1);
    assert!(!text.contains("1391234"), "numbers masked in CSV");
}

async fn timeline_unmask_recording(env: &Env, sup: &Who, viewer: &Who) {
    let addr = env.addr();
    let r = call(addr, sup, "GET", "/api/v1/calls/c-full", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        !text.contains(CALLER) && !text.contains("13812345678"),
        "{text}"
    );
    assert!(
        !text.contains(&env.tmp.path().display().to_string()),
        "no server path"
    );
    assert!(!text.contains("13900001111"), "transfer target masked");
    let v = r.json();
    assert_eq!(v["outcome"], "answered");
    assert_eq!(v["ivr"]["steps"].as_array().unwrap().len(), 2);
    assert_eq!(v["queue"]["name"], "sales");
    assert_eq!(v["offers"].as_array().unwrap().len(), 2);
    assert_eq!(v["offers"][0]["outcome"], "no_answer");
    assert_eq!(v["agent"], "1001");
    assert_eq!(v["holds"].as_array().unwrap().len(), 1);
    assert_eq!(v["figures"]["hold_ms"], 10_000);
    assert_eq!(v["transfer"]["by"], "1001");
    assert_eq!(v["wrap_up"]["acw_ms"], 30_000);
    assert_eq!(v["recording"]["present"], true);
    assert_eq!(v["recording"]["size_bytes"], env.wav.len());
    assert!(v["survey"]["state"].is_string(), "{v}");
    assert_eq!(v["follow_up"]["reason"], "complaint_queue");
    assert_eq!(v["follow_up"]["agent"], "1001");
    assert_eq!(v["number_available"], true);
    call(addr, sup, "GET", "/api/v1/calls/nope", None)
        .await
        .problem(404, "not-found");

    // Unmask: the supervisor sees the number (audited); the viewer never.
    let r = call(addr, sup, "POST", "/api/v1/calls/c-full/unmask", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["number"], CALLER);
    call(addr, viewer, "POST", "/api/v1/calls/c-full/unmask", None)
        .await
        .problem(403, "forbidden");
    call(addr, sup, "POST", "/api/v1/calls/nope/unmask", None)
        .await
        .problem(404, "not-found");
    call(addr, sup, "POST", "/api/v1/calls/c-hashed/unmask", None)
        .await
        .problem(409, "number-not-retained");
    let h = call(addr, sup, "GET", "/api/v1/calls/c-hashed", None)
        .await
        .json();
    assert_eq!(
        (h["number"].as_str(), h["number_available"].as_bool()),
        (Some("****"), Some(false))
    );

    // The recording: whole, a range, an unsatisfiable range, a path outside the folder.
    let bearer = Who::Bearer(env.token.clone());
    let r = call(addr, &bearer, "GET", "/api/v1/calls/c-full/recording", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("audio/wav"));
    assert_eq!(r.body, env.wav);
    let Who::Session { cookie, .. } = sup else {
        unreachable!()
    };
    let r = request(
        addr,
        "GET",
        "/api/v1/calls/c-full/recording",
        &[("Cookie", cookie), ("Range", "bytes=100-199")],
        None,
    )
    .await;
    assert_eq!(r.status, 206, "{:?}", r.headers);
    assert_eq!(r.body, env.wav[100..200].to_vec());
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 100-199/{}", env.wav.len()).as_str())
    );
    let r = request(
        addr,
        "GET",
        "/api/v1/calls/c-full/recording",
        &[("Cookie", cookie), ("Range", "bytes=99999-")],
        None,
    )
    .await;
    assert_eq!(r.status, 416);
    for id in ["c-escape", "c-gone"] {
        call(
            addr,
            sup,
            "GET",
            &format!("/api/v1/calls/{id}/recording"),
            None,
        )
        .await
        .problem(404, "not-found");
        let d = call(addr, sup, "GET", &format!("/api/v1/calls/{id}"), None).await;
        let r = &d.json()["recording"];
        assert_eq!(
            (r["saved"].as_bool(), r["present"].as_bool()),
            (Some(true), Some(false))
        );
    }
    call(addr, viewer, "GET", "/api/v1/calls/c-full/recording", None)
        .await
        .problem(403, "forbidden");
}

/// The REST reports equal the CLI's JSON for the same span; CSV exports.
async fn reports(env: &Env, viewer: &Who) {
    // Reports are the supervisor's (a viewer sees the wallboard only: the OpenAPI walk checks
    // the viewer's 403s).
    let addr = env.addr();
    let (from, to) = (env.t0 - 3_600_000, env.t0 + DAY);
    for (what, key) in [
        ("queues", "queues"),
        ("agents", "agents"),
        ("surveys", "surveys"),
    ] {
        let r = call(
            addr,
            viewer,
            "GET",
            &format!("/api/v1/reports/{what}?from={from}&to={to}"),
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let api = r.json();
        let out = Command::new(env!("CARGO_BIN_EXE_ccswitch"))
            .args(["report", what, "--format", "json"])
            .arg("--config")
            .arg(&env.config)
            .args(["--database", &env.db_url])
            .args(["--since", &from.to_string(), "--until", &to.to_string()])
            .output()
            .expect("run ccswitch report");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli: Value = serde_json::from_slice(&out.stdout).expect("CLI JSON");
        assert_eq!(api[key], cli[key], "{what}: REST and CLI differ");
        if what == "queues" {
            assert_eq!(api["system"], cli["system"]);
            assert!(!api["queues"].as_array().unwrap().is_empty());
        }
        let r = call(
            addr,
            viewer,
            "GET",
            &format!("/api/v1/reports/{what}?from={from}&to={to}&format=csv"),
            None,
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
        assert!(r
            .header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment; filename=")));
        let rows = cli[key].as_array().unwrap().len();
        assert_eq!(
            r.text().lines().count(),
            rows + 1,
            "{what} CSV: header + rows"
        );
    }
    let r = call(
        addr,
        viewer,
        "GET",
        &format!("/api/v1/reports/system?from={from}&to={to}&interval=15m&format=csv"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().starts_with("interval_start,calls,answered"),
        "{}",
        r.text()
    );
    let r = call(
        addr,
        viewer,
        "GET",
        &format!("/api/v1/reports/queues?from={from}&to={to}&queue=sales"),
        None,
    )
    .await;
    let q = r.json();
    assert!(q["queues"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["queue"] == "sales"));
}

/// The agent command reaches the engine (its state record appears); the audit log holds
/// each audited action, and pages with a cursor.
async fn agent_command_and_audit(env: &Env, sup: &Who) {
    let addr = env.addr();
    for body in [
        r#"{"state":"ready"}"#,
        r#"{"state":"not_ready","reason":"break"}"#,
    ] {
        let r = call(addr, sup, "POST", "/api/v1/agents/1001/state", Some(body)).await;
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(r.json(), json!({"accepted": true}));
    }
    let store = Store::open(&env.db_url).await.expect("open store");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let changes = store.agent_state_changes().await.expect("state changes");
        if changes
            .iter()
            .any(|c| c.agent == "1001" && c.reason.as_deref() == Some("break"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agent 1001 never went on break: {changes:?}\n{}",
            env.switch.as_ref().unwrap().log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    store.close().await;

    let admin = sign_in(addr, "admin").await;
    let r = call(addr, &admin, "GET", "/api/v1/audit?limit=500", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let entries = r.json()["entries"].as_array().unwrap().clone();
    let has = |user: &str, action: &str, target: &str, detail: Option<&str>| {
        entries.iter().any(|e| {
            e["user"] == user
                && e["action"] == action
                && e["target"] == target
                && detail.is_none_or(|d| e["detail"] == d)
        })
    };
    assert!(
        has("sue", "agent.set_state", "1001", Some("not_ready:break")),
        "{entries:?}"
    );
    assert!(has("sue", "call.unmask", "c-full", None));
    assert!(has(
        "sue",
        "recording.download",
        "c-full",
        Some("bytes=100-199")
    ));
    assert!(has(
        "token:integration",
        "recording.download",
        "c-full",
        None
    ));
    assert!(entries
        .windows(2)
        .all(|w| w[0]["id"].as_i64() > w[1]["id"].as_i64()));
    // Paging one at a time visits the same entries.
    let mut ids = Vec::new();
    let mut q = "/api/v1/audit?limit=7".to_string();
    loop {
        let v = call(addr, &admin, "GET", &q, None).await.json();
        ids.extend(
            v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        match v["next_cursor"].as_str() {
            Some(c) => q = format!("/api/v1/audit?limit=7&cursor={c}"),
            None => break,
        }
        assert!(ids.len() <= entries.len() + 7);
    }
    let all: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, all);
}

/// Monitoring requests refused, each with its reason, and each attempt audited (the accepted
/// ones need a live call and a phone: tests/e2e/monitor.rs).
async fn monitor_requests(env: &Env, sup: &Who) {
    let addr = env.addr();
    let path = "/api/v1/calls/c-full/monitor";
    let listen = Some(r#"{"mode":"listen"}"#);
    // An agent-desk session: 403.
    let body = json!({"extension": "1001", "password": "demo1001"}).to_string();
    let r = request(addr, "POST", "/api/v1/session/agent", &[JSON], Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let agent = Who::Session {
        role: "agent",
        cookie: r
            .header("set-cookie")
            .expect("Set-Cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string(),
        csrf: r.json()["csrf_token"].as_str().unwrap().to_string(),
    };
    let v = call(addr, &agent, "POST", path, listen)
        .await
        .problem(403, "forbidden");
    assert_eq!(v["permission"], "monitor", "{v}");
    // A supervisor without a SIP phone: 422 saying what to add.
    let v = call(addr, sup, "POST", path, Some(r#"{"mode":"barge"}"#))
        .await
        .problem(422, "no-sip-phone");
    assert!(
        v["detail"].as_str().unwrap().contains("sip_extension"),
        "{v}"
    );
    // With a phone: c-full is no live call (404), nor is an unknown id.
    let body = json!({"user": PHONE_USER.0, "password": PHONE_USER.1}).to_string();
    let r = request(addr, "POST", "/api/v1/session", &[JSON], Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mo = Who::Session {
        role: "supervisor",
        cookie: r
            .header("set-cookie")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string(),
        csrf: r.json()["csrf_token"].as_str().unwrap().to_string(),
    };
    assert!(r.json()["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "monitor"));
    call(addr, &mo, "POST", path, Some(r#"{"mode":"whisper"}"#))
        .await
        .problem(404, "not-found");
    call(addr, &mo, "POST", "/api/v1/calls/nope/monitor", listen)
        .await
        .problem(404, "not-found");
    // Bad bodies: never a panic, a problem document.
    for (body, status) in [
        (r#"{"mode":"spy"}"#, 422),
        (r#"{"mode":"listen","extra":1}"#, 422),
        (r#"{}"#, 422),
        (r#"{"mode":"#, 400),
    ] {
        call(addr, &mo, "POST", path, Some(body))
            .await
            .problem(status, "invalid-body");
    }
    // The audit log has each attempt that reached the handler, with its outcome.
    let admin = sign_in(addr, "admin").await;
    let r = call(addr, &admin, "GET", "/api/v1/audit?limit=500", None).await;
    let entries = r.json()["entries"].as_array().unwrap().clone();
    let details = |user: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e["user"] == user && e["action"] == "monitor.request")
            .map(|e| e["detail"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let agent_rows = details("agent:1001");
    assert!(
        agent_rows.contains(&"listen refused: forbidden".to_string()),
        "{entries:?}"
    );
    assert!(details("sue").contains(&"barge refused: no-sip-phone".to_string()));
    let mo_rows = details(PHONE_USER.0);
    assert!(
        mo_rows.contains(&"whisper refused: not-found".to_string()),
        "{mo_rows:?}"
    );
    assert_eq!(mo_rows.len(), 2, "bad bodies are not attempts: {mo_rows:?}");
    assert!(entries
        .iter()
        .any(|e| e["action"] == "monitor.request" && e["target"] == "nope"));
}

async fn scenario(mut env: Env, rtp_slot: u16) {
    env.start(rtp_slot);
    let addr = env.addr();
    let viewer = sign_in(addr, "viewer").await;
    let sup = sign_in(addr, "supervisor").await;
    let admin = sign_in(addr, "admin").await;
    let bearer = Who::Bearer(env.token.clone());
    reports(&env, &sup).await;
    paging(&env, &bearer).await;
    timeline_unmask_recording(&env, &sup, &viewer).await;
    csrf_and_bad_bodies(&env, &sup).await;
    openapi_walk(
        &env,
        &[Who::Nobody, viewer.clone(), sup.clone(), admin, bearer],
    )
    .await;
    agent_command_and_audit(&env, &sup).await;
    monitor_requests(&env, &sup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_on_sqlite() {
    let env = Env::new(None).await;
    tokio::time::timeout(Duration::from_secs(180), scenario(env, 24))
        .await
        .expect("scenario within 180 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_api_on_postgres() {
    let Some(db) = pg_url().await else { return };
    let env = Env::new(Some(db)).await;
    tokio::time::timeout(Duration::from_secs(180), scenario(env, 25))
        .await
        .expect("scenario within 180 s");
}
