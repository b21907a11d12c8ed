//! Satisfaction surveys end to end (issue #8): a pjsua2 caller with a Chinese mobile number
//! chooses Chinese in the IVR, reaches an agent, hangs up; the switch texts the survey through
//! a real gateway (the node SMSC over SMPP, or a local HTTP provider), the caller "replies"
//! `5 很好`, and `report surveys` / `report calls` show the score and the comment.

use super::*;
use std::io::Write as _;
use std::process::ChildStdin;

const CALLER_NUMBER: &str = "13812345678";
const CALLER_E164_DIGITS: &str = "8613812345678";
const SMPP_SYSTEM_ID: &str = "ccswitch";
const SMPP_PASSWORD: &str = "e2e-pw";

fn smsc_skipped() -> bool {
    if std::env::var("CCSWITCH_TEST_SKIP_SMSC").as_deref() == Ok("1") {
        eprintln!("CCSWITCH_TEST_SKIP_SMSC=1: the SMPP survey test is skipped");
        return true;
    }
    false
}

/// The node SMSC of tests/smsc (npm `smpp`): stdout records as JSON, stdin commands.
struct Smsc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<Value>,
    seen: Vec<Value>,
    port: u16,
}

impl Smsc {
    fn start() -> Smsc {
        let dir = manifest().join("tests/smsc");
        if !dir.join("node_modules/smpp/package.json").exists() {
            let st = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .expect("npm is needed for the test SMSC (or CCSWITCH_TEST_SKIP_SMSC=1)");
            assert!(st.success(), "npm ci in {} failed", dir.display());
        }
        let port = free_tcp_port();
        let mut child = Command::new("node")
            .arg(dir.join("smsc.js"))
            .arg(port.to_string())
            .arg(SMPP_SYSTEM_ID)
            .arg(SMPP_PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node tests/smsc/smsc.js");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
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
        smsc.wait_for("listening", Duration::from_secs(10), |v| {
            v["event"] == "listening"
        });
        smsc
    }

    fn cmd(&mut self, cmd: Value) {
        let stdin = self.stdin.as_mut().expect("smsc stdin");
        writeln!(stdin, "{cmd}").expect("write smsc command");
        stdin.flush().expect("flush smsc command");
    }

    fn wait_for(&mut self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let end = Instant::now() + limit;
        loop {
            match self
                .lines
                .recv_timeout(end.saturating_duration_since(Instant::now()))
            {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!("SMSC: no {what} within {limit:?}; saw {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// UTF-16BE hex to text.
fn ucs2_hex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.contains(from),
        "{} must contain `{from}` (the test edits it)",
        path.display()
    );
    std::fs::write(path, text.replacen(from, to, 1)).expect("write config");
}

/// Replaces the line `key = ...` of `[section]` in a TOML file with `line`.
fn set_key(path: &Path, section: &str, key: &str, line: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut in_section = false;
    let mut done = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with('[') {
                in_section = l.trim() == format!("[{section}]");
            }
            let k = l.split('=').next().unwrap_or("").trim();
            if in_section && !done && !l.starts_with('#') && k == key {
                done = true;
                line.to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(done, "{}: no `{key}` in [{section}]", path.display());
    std::fs::write(path, out.join("\n") + "\n").expect("write config");
}

/// A test config with surveys that go out one second after hang-up at any hour, for any talk
/// time.
fn survey_config() -> TestConfig {
    let cfg = TestConfig::new(0);
    let survey = cfg.dir.join("survey.toml");
    edit(&survey, "delay_s = 60", "delay_s = 1");
    edit(&survey, "min_talk_s = 15", "min_talk_s = 1");
    edit(
        &survey,
        "enabled = true\nstart = \"21:00\"",
        "enabled = false\nstart = \"21:00\"",
    );
    cfg
}

/// `ccswitch <args> --config .. --database ..`, its stdout as JSON.
fn ccswitch_json(cfg: &TestConfig, args: &[&str]) -> Value {
    let out = Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(&cfg.dir)
        .args(["--database", &cfg.db_url, "--format", "json"])
        .output()
        .expect("run ccswitch");
    assert!(
        out.status.success(),
        "ccswitch {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ccswitch {args:?} JSON: {e}\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The zh timeline: digit 2 picks Chinese during the language menu; the main-menu digit
/// goes after the Chinese out-of-hours notice (if any) has played.
fn zh_timeline() -> (f64, f64) {
    let t = timeline();
    let zh_closed = hound::WavReader::open(manifest().join("prompts/zh/closed.wav"))
        .map(|r| r.duration() as f64 / f64::from(r.spec().sample_rate))
        .unwrap_or(9.0);
    (t.language, t.language + zh_closed + 1.5)
}

/// Places a call from the Chinese mobile number into the tech queue, where agent 1001
/// answers, talks `talk` seconds and the caller hangs up. Returns the call's report row.
fn call_agent_and_hang_up(py: &Path, sw: &Switch, cfg: &TestConfig, talk: f64) -> Value {
    let (language, main) = zh_timeline();
    let hangup = main + 1.0 + talk;
    let bob = spawn_agent(
        py,
        sw,
        "1001",
        0.5,
        None,
        None,
        hangup + 20.0,
        &["--linger", "2"],
    );
    bob.wait_event("registered", Duration::from_secs(15));
    let cmd_args = CallerArgs {
        transport: "udp",
        dtmf: format!("2@{language:.2}s,6@{main:.2}s"),
        dtmf_method: "rfc4733",
        hangup_after: hangup,
        max_duration: hangup + 20.0,
        from_user: Some(CALLER_NUMBER),
        ..CallerArgs::default()
    };
    let summary = spawn_caller(py, &sw.uri("100"), &cmd_args).finish();
    assert_eq!(summary["confirmed"], true, "{summary}");
    eprintln!(
        "call: {:#}",
        cfg.calls().first().cloned().unwrap_or_default()
    );
    let done = bob.wait_event("done", Duration::from_secs(40));
    let calls = done["calls"].as_array().cloned().unwrap_or_default();
    assert_eq!(calls.len(), 1, "agent 1001 took the call: {done}");
    assert_eq!(calls[0]["x_caller"], CALLER_NUMBER, "{done}");
    let rows = cfg.calls();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    rows[0].clone()
}

/// Polls `report calls` until the call's survey reaches `state` (bounded).
fn wait_survey_state(cfg: &TestConfig, state: &str, within: Duration) -> Value {
    let end = Instant::now() + within;
    loop {
        let calls = cfg.calls();
        if let Some(c) = calls.first() {
            if c["survey"]["state"] == state {
                return c.clone();
            }
            if Instant::now() > end {
                panic!("survey never reached `{state}` within {within:?}: {c:#}");
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn assert_answered_5_with_comment(cfg: &TestConfig) {
    let c = wait_survey_state(cfg, "answered", Duration::from_secs(20));
    eprintln!("call with survey: {c:#}");
    assert_eq!(c["survey"]["csat"], 5, "{c}");
    assert_eq!(c["survey"]["comment"], "很好", "{c}");
    let report = ccswitch_json(
        cfg,
        &["report", "surveys", "--interval", "day", "--by", "agent"],
    );
    eprintln!("report surveys: {report:#}");
    let rows = report["surveys"].as_array().cloned().unwrap_or_default();
    let row = rows
        .iter()
        .find(|r| r["group"] == "1001")
        .unwrap_or_else(|| panic!("a row for agent 1001: {report:#}"));
    assert_eq!(row["sent"], 1, "{row}");
    assert_eq!(row["answered"], 1, "{row}");
    assert_eq!(row["csat_mean"], 5.0, "{row}");
    assert_eq!(row["response_rate_denominator"], 1, "{row}");
}

/// SMPP: the SMSC gets the Chinese text as UCS-2 (data_coding 8) for +86 138..., with a
/// delivery receipt asked for; a receipt marks it delivered; the MO `5 很好` answers it.
#[test]
fn survey_by_smpp_after_an_agent_call_is_answered_with_5_and_a_comment() {
    let Some(py) = pjsua_python() else { return };
    if smsc_skipped() {
        return;
    }
    let mut smsc = Smsc::start();
    let cfg = survey_config();
    let pw = cfg.path("smpp.pw");
    std::fs::write(&pw, SMPP_PASSWORD).expect("write password file");
    let sms = cfg.dir.join("sms.toml");
    set_key(&sms, "smpp", "enabled", "enabled = true");
    set_key(&sms, "smpp", "port", &format!("port = {}", smsc.port));
    set_key(
        &sms,
        "smpp",
        "password_env",
        &format!("password_file = {:?}", pw.display().to_string()),
    );
    edit(
        &cfg.dir.join("survey.toml"),
        "gateway = \"default\"",
        "gateway = \"smpp\"",
    );
    let sw = Switch::start(&cfg, 16);
    smsc.wait_for("bind", Duration::from_secs(15), |v| v["event"] == "bind");
    let row = call_agent_and_hang_up(&py, &sw, &cfg, 4.0);
    assert_eq!(row["agent"], "1001", "{row}");

    let submit = smsc.wait_for("the survey's submit_sm", Duration::from_secs(20), |v| {
        v["event"] == "submit_sm"
    });
    eprintln!("submit_sm: {submit:#}");
    assert_eq!(submit["destination_addr"], CALLER_E164_DIGITS, "{submit}");
    assert_eq!(submit["data_coding"], 8, "UCS-2 for Chinese: {submit}");
    assert_ne!(
        submit["registered_delivery"], 0,
        "receipt asked for: {submit}"
    );
    let text = ucs2_hex(submit["payload_hex"].as_str().unwrap_or(""));
    assert!(
        text.starts_with("感谢致电Example Co"),
        "the zh template: {text:?}"
    );
    let message_id = submit["message_id"]
        .as_str()
        .expect("message_id")
        .to_string();
    wait_survey_state(&cfg, "sent", Duration::from_secs(10));
    smsc.cmd(serde_json::json!({"cmd": "receipt", "message_id": message_id, "stat": "DELIVRD"}));
    wait_survey_state(&cfg, "delivered", Duration::from_secs(10));
    smsc.cmd(serde_json::json!({"cmd": "mo", "from": CALLER_E164_DIGITS, "text": "5 很好"}));
    assert_answered_5_with_comment(&cfg);
    let mut sw = sw;
    assert!(sw.terminate(Duration::from_secs(20)).success());
}

/// A local HTTP provider: records each POST body, answers `{"id": "h<n>"}`.
struct Provider {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<(Value, String)>>>,
}

impl Provider {
    fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind provider");
        let addr = listener.local_addr().expect("addr");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut s) = stream else { break };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(s.try_clone().expect("clone"));
                let mut len = 0usize;
                let mut auth = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        match k.trim().to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap_or(0),
                            "authorization" => auth = v.trim().to_string(),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    sink.lock().expect("lock").push((v, auth));
                }
                let answer = format!("{{\"message_id\":\"h{n}\"}}");
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Provider { addr, bodies }
    }
}

fn http_post(addr: SocketAddr, path: &str, headers: &[(&str, String)], body: &str) -> u16 {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// HTTP: the survey is POSTed as JSON with the bearer token; a signed delivery report and a
/// signed reply webhook land on the call; a badly signed and a replayed webhook are refused
/// and change nothing.
#[test]
fn survey_by_http_gateway_with_signed_webhooks() {
    let Some(py) = pjsua_python() else { return };
    let provider = Provider::start();
    let cfg = survey_config();
    let token = cfg.path("token");
    std::fs::write(&token, "e2e-token").expect("token file");
    let secret = "e2e-webhook-secret";
    let secret_file = cfg.path("whsec");
    std::fs::write(&secret_file, secret).expect("secret file");
    let sms = cfg.dir.join("sms.toml");
    set_key(&sms, "http", "enabled", "enabled = true");
    set_key(
        &sms,
        "http",
        "url",
        &format!("url = \"http://{}/v1/messages\"", provider.addr),
    );
    set_key(
        &sms,
        "http",
        "token_env",
        &format!("token_file = {:?}", token.display().to_string()),
    );
    set_key(
        &sms,
        "http",
        "webhook_secret_env",
        &format!(
            "webhook_secret_file = {:?}",
            secret_file.display().to_string()
        ),
    );
    edit(
        &cfg.dir.join("survey.toml"),
        "gateway = \"default\"",
        "gateway = \"http\"",
    );
    let sw = Switch::start(&cfg, 17);
    call_agent_and_hang_up(&py, &sw, &cfg, 4.0);
    let end = Instant::now() + Duration::from_secs(20);
    let (body, auth) = loop {
        if let Some(b) = provider.bodies.lock().expect("lock").first().cloned() {
            break b;
        }
        assert!(Instant::now() < end, "no POST reached the provider");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("provider got: {body}");
    assert_eq!(auth, "Bearer e2e-token");
    assert_eq!(body["to"], format!("+{CALLER_E164_DIGITS}"), "{body}");
    assert!(
        body["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("感谢致电Example Co")),
        "{body}"
    );
    wait_survey_state(&cfg, "sent", Duration::from_secs(10));
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            .to_string()
    };
    let signed = |body: &str| {
        let ts = now();
        let sig = ccswitch::sms::http::sign_webhook(secret, &ts, body.as_bytes());
        vec![
            ("X-Timestamp", ts),
            ("X-Signature", format!("sha256={sig}")),
        ]
    };
    let status = r#"{"message_id":"h0","status":"delivered"}"#;
    assert_eq!(
        http_post(sw.http, "/sms/status", &signed(status), status),
        200
    );
    wait_survey_state(&cfg, "delivered", Duration::from_secs(10));
    // A forged reply (wrong secret) is refused and changes nothing.
    let forged = format!(r#"{{"from":"+{CALLER_E164_DIGITS}","to":"10690000","text":"1"}}"#);
    let ts = now();
    let bad = ccswitch::sms::http::sign_webhook("not-the-secret", &ts, forged.as_bytes());
    assert_eq!(
        http_post(
            sw.http,
            "/sms/inbound",
            &[("X-Timestamp", ts), ("X-Signature", bad)],
            &forged
        ),
        401
    );
    let reply = format!(r#"{{"from":"+{CALLER_E164_DIGITS}","to":"10690000","text":"5 很好"}}"#);
    let headers = signed(&reply);
    assert_eq!(http_post(sw.http, "/sms/inbound", &headers, &reply), 200);
    assert_answered_5_with_comment(&cfg);
    // The same request again: refused as a replay, the answer stays.
    assert_eq!(http_post(sw.http, "/sms/inbound", &headers, &reply), 401);
    assert_answered_5_with_comment(&cfg);
    let mut sw = sw;
    assert!(sw.terminate(Duration::from_secs(20)).success());
}

/// 500 queued surveys, written to the switch's database before it starts (as if 500 calls
/// had just ended).
fn queue_surveys(db_url: &str, n: u64) {
    use ccswitch::engine::{Millis, Record};
    with_store(db_url, async |store| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        let mut batch = Vec::new();
        for id in 1..=n {
            let call_id = format!("crash-{id}");
            let number = format!("+86138{id:08}");
            batch.push(Record::CallStarted {
                call_id: call_id.clone(),
                sip_call_id: format!("crash-{id}@10.0.0.1"),
                caller: number.clone(),
                dialled: "100".into(),
                transport: "udp".into(),
                arrived_at: Millis(now - 120_000),
                ring_cycle_ms: 6_000,
            });
            batch.push(Record::SurveyScheduled {
                call_id,
                survey_id: id,
                at: Millis(now - 60_000),
                number: number.clone(),
                number_hash: format!("{id:064x}"),
                language: "zh".into(),
                text: format!(
                    "感谢致电，请为本次服务打分：回复1-5（5为非常满意），回复TD退订。#{id}"
                ),
                send_at: Millis(now - 1_000),
                deferred: false,
                reply_by: Millis(now + 48 * 3_600_000),
                agent: Some("1001".into()),
                queue: Some("tech".into()),
                complaint: false,
            });
        }
        store.write_batch(&batch).await.expect("queue the surveys");
    });
}

/// (state, attempts) of every text in the outbox, by message id.
fn outbox(db_url: &str) -> std::collections::BTreeMap<u64, (String, i64)> {
    with_store(db_url, async |store| {
        let rows = store.outbox_rows().await.expect("outbox rows");
        rows.into_iter()
            .map(|r| (r.message_id, (r.state, r.attempts)))
            .collect()
    })
}

/// The crash test of issue 8 against the real binary: 500 surveys queued, `ccswitch run`
/// sending them to the test SMSC at 100 a second is killed with SIGKILL mid-sending and
/// started again. Every survey reaches the SMSC; duplicates only among the texts in flight
/// (`sending`) at the kill, each at most twice; the outbox accounts for all 500.
fn kill_9_mid_sending(db: Option<String>, slot: u16) {
    const N: u64 = 500;
    let mut smsc = Smsc::start();
    let mut cfg = survey_config();
    if let Some(url) = db {
        cfg.db_url = url;
    }
    let pw = cfg.path("smpp.pw");
    std::fs::write(&pw, SMPP_PASSWORD).expect("write password file");
    let sms = cfg.dir.join("sms.toml");
    set_key(&sms, "smpp", "enabled", "enabled = true");
    set_key(&sms, "smpp", "port", &format!("port = {}", smsc.port));
    set_key(&sms, "smpp", "max_per_s", "max_per_s = 100");
    set_key(
        &sms,
        "smpp",
        "password_env",
        &format!("password_file = {:?}", pw.display().to_string()),
    );
    edit(
        &cfg.dir.join("survey.toml"),
        "gateway = \"default\"",
        "gateway = \"smpp\"",
    );
    queue_surveys(&cfg.db_url, N);
    let submits = |smsc: &Smsc| -> Vec<u64> {
        smsc.seen
            .iter()
            .filter(|v| v["event"] == "submit_sm")
            .filter_map(|v| v["tlvs"]["0x0204"].as_str())
            .filter_map(|h| u64::from_str_radix(h, 16).ok())
            .collect()
    };

    let mut sw = Switch::start(&cfg, slot);
    // Kill it once a good part, not all, has gone out.
    let end = Instant::now() + Duration::from_secs(60);
    while submits(&smsc).len() < 150 {
        match smsc
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            Ok(v) => smsc.seen.push(v),
            Err(_) => panic!("150 submits did not come:\n{}", sw.log_tail(30)),
        }
    }
    sw.kill9();
    // What the SMSC still had on the wire arrives; then the outbox as the kill left it.
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(v) = smsc.lines.try_recv() {
        smsc.seen.push(v);
    }
    let at_kill = outbox(&cfg.db_url);
    let in_flight: std::collections::BTreeSet<u64> = at_kill
        .iter()
        .filter(|(_, (state, _))| state == "sending")
        .map(|(id, _)| *id)
        .collect();
    let sent_at_kill = at_kill.values().filter(|(s, _)| s == "sent").count();
    eprintln!(
        "killed: SMSC saw {} submits; outbox {sent_at_kill} sent, {} sending",
        submits(&smsc).len(),
        in_flight.len()
    );
    assert!(sent_at_kill < N as usize, "killed mid-sending");

    let mut sw = Switch::start(&cfg, slot);
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let rows = outbox(&cfg.db_url);
        if rows.values().filter(|(s, _)| s == "sent").count() == N as usize {
            break;
        }
        assert!(
            Instant::now() < end,
            "not all sent after the restart:\n{}",
            sw.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(v) = smsc.lines.try_recv() {
        smsc.seen.push(v);
    }
    assert!(sw.terminate(Duration::from_secs(20)).success());

    let mut per_id: std::collections::BTreeMap<u64, usize> = Default::default();
    for id in submits(&smsc) {
        *per_id.entry(id).or_default() += 1;
    }
    let missing: Vec<u64> = (1..=N).filter(|id| !per_id.contains_key(id)).collect();
    assert!(missing.is_empty(), "never reached the SMSC: {missing:?}");
    let dups: std::collections::BTreeSet<u64> = per_id
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    eprintln!(
        "SMSC: {} submits for {N} surveys; duplicates {dups:?}; {} in flight at the kill",
        per_id.values().sum::<usize>(),
        in_flight.len()
    );
    assert!(
        dups.is_subset(&in_flight),
        "duplicates outside the texts in flight at the kill: {:?}",
        dups.difference(&in_flight).collect::<Vec<_>>()
    );
    assert!(
        per_id.values().all(|n| *n <= 2),
        "a text sent more than twice"
    );
    let rows = outbox(&cfg.db_url);
    assert_eq!(rows.len(), N as usize, "the outbox accounts for all {N}");
    assert!(rows
        .values()
        .all(|(s, attempts)| s == "sent" && *attempts <= 2));
}

#[test]
fn survey_outbox_survives_kill_9_of_the_switch_sqlite() {
    if smsc_skipped() {
        return;
    }
    kill_9_mid_sending(None, 14);
}

#[test]
fn survey_outbox_survives_kill_9_of_the_switch_postgres() {
    if smsc_skipped() {
        return;
    }
    let Some(pg) = PgDb::create() else { return };
    kill_9_mid_sending(Some(pg.url.clone()), 21);
}
