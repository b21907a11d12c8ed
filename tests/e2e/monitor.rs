//! Supervisor listen / whisper / barge end to end (issue 10 item 5) with three pjsua2 phones,
//! each playing its own tone and recording what it hears: a caller (700 Hz) reaches agent
//! 1002 (1300 Hz); the supervisor (the `admin` user with SIP extension 9001, 1000 Hz) dials
//! `*311002` (listen), switches to whisper (digit 2) and barge (digit 3), and hangs up; the
//! call goes on. A second supervisor call (`*331002`, barge) is hung up by the switch when
//! the caller hangs up. The recordings, cut at the monitoring segments the store kept, show
//! who heard whom exactly as the issue says. Before the call, agent 1001 dials `*311002` and
//! gets 403.

use super::*;
use ccswitch::proto::digest::{ha1, Algorithm};
use std::collections::HashMap;

/// RTP slot of this module (26 and 27 are this module's).
const SLOT: u16 = 26;
const SUPERVISOR_TONE_HZ: u32 = 1000;
const TONES: [u32; 3] = [CALLER_TONE_HZ, AGENT_TONE_HZ, SUPERVISOR_TONE_HZ];

/// Gives the shipped `admin` user a SIP phone: extension 9001, password demo9001.
fn add_supervisor_phone(cfg: &TestConfig) {
    let path = cfg.dir.join("users.toml");
    let text = std::fs::read_to_string(&path).expect("users.toml");
    let md5 = ha1(Algorithm::Md5, "9001", "ccswitch", "demo9001");
    let marker = "role = \"admin\"\n";
    assert!(text.contains(marker), "users.toml has the admin user");
    let text = text.replacen(
        marker,
        &format!("{marker}sip_extension = \"9001\"\nsip_ha1_md5 = \"{md5}\"\n"),
        1,
    );
    std::fs::write(&path, text).expect("write users.toml");
}

/// Runs tests/e2e/supervisor.py to its end; its summary.
fn run_supervisor(py: &Path, sw: &Switch, code: &str, args: &[&str], record: &Path) -> Value {
    let tone = record.with_file_name("supervisor_tone.wav");
    if !tone.exists() {
        let t = tone_wav(record.parent().expect("dir"), SUPERVISOR_TONE_HZ, 10);
        std::fs::rename(t, &tone).expect("rename tone");
    }
    let out = Command::new(py)
        .arg(script("supervisor.py"))
        .args(["--uri", &sw.uri(code)])
        .args(["--user", "9001", "--password", "demo9001"])
        .arg("--play")
        .arg(&tone)
        .arg("--record")
        .arg(record)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run supervisor.py");
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "supervisor.py summary ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Energy share of each tone in `wav` between `start` and `end` seconds.
fn shares(py: &Path, wav: &Path, start: f64, end: f64) -> HashMap<u32, f64> {
    let (_, verdict) = check_hears(
        py,
        wav,
        &Hears {
            who: "",
            tone: TONES[0],
            not: &TONES[1..],
            start,
            end: Some(end),
        },
    );
    TONES
        .iter()
        .map(|t| {
            let tones = &verdict["tones"];
            let s = tones[format!("{t}.0")]["share"]
                .as_f64()
                .or_else(|| tones[t.to_string()]["share"].as_f64())
                .unwrap_or_else(|| panic!("no share for {t} Hz: {verdict}"));
            (*t, s)
        })
        .collect()
}

/// `who`'s recording in [start, end] carries each of `hears` (at least 15 % of the energy
/// each) and none of `not` (at most 3 %).
fn assert_mix(py: &Path, who: &str, wav: &Path, start: f64, end: f64, hears: &[u32]) {
    let s = shares(py, wav, start, end);
    eprintln!("{who} {start:.1}-{end:.1} s: {s:?}");
    for t in TONES {
        if hears.contains(&t) {
            assert!(
                s[&t] >= 0.15,
                "{who} should hear {t} Hz in {start:.1}-{end:.1} s of {}: {s:?}",
                wav.display()
            );
        } else {
            assert!(
                s[&t] <= 0.03,
                "{who} must not hear {t} Hz in {start:.1}-{end:.1} s of {}: {s:?}",
                wav.display()
            );
        }
    }
}

fn ms_of(c: &Value, k: &str) -> i64 {
    let text = c[k]
        .as_str()
        .unwrap_or_else(|| panic!("{k} missing from the call record: {c:#}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{k} = {text}: {e}"))
        .timestamp_millis()
}

/// Agent 1002 (pjsua2: answers after 1 s playing the agent's tone, records
/// agent_heard.wav) registered, then a caller (the caller's tone, records caller_heard.wav)
/// choosing the tech queue and hanging up `caller_hangup` s into the call.
fn caller_to_bob(
    py: &Path,
    sw: &Switch,
    cfg: &TestConfig,
    t: &Timeline,
    caller_hangup: f64,
) -> (PjAgent, PjCall) {
    let caller_tone = tone_wav(cfg.tmp.path(), CALLER_TONE_HZ, 10);
    let agent_tone = tone_wav(cfg.tmp.path(), AGENT_TONE_HZ, 10);
    let bob = spawn_agent(
        py,
        sw,
        "1002",
        1.0,
        Some(&cfg.path("agent_heard.wav")),
        Some(&agent_tone),
        caller_hangup + 30.0,
        &[],
    );
    bob.wait_event("registered", Duration::from_secs(15));
    let call = spawn_caller(
        py,
        &sw.uri("100"),
        &CallerArgs {
            transport: "udp",
            dtmf: format!("1@{:.2}s,6@{:.2}s", t.language, t.main),
            dtmf_method: "rfc4733",
            hangup_after: caller_hangup,
            max_duration: caller_hangup + 20.0,
            record: Some(cfg.path("caller_heard.wav")),
            play: Some(caller_tone),
            from_user: None,
        },
    );
    (bob, call)
}

#[test]
fn pjsua_supervisor_listens_whispers_and_barges() {
    let Some(py) = pjsua_python() else { return };
    let cfg = TestConfig::new(0);
    add_supervisor_phone(&cfg);
    let mut sw = Switch::start(&cfg, SLOT);
    let t = timeline();

    // An agent is not a supervisor: 403.
    let alice = spawn_agent(
        &py,
        &sw,
        "1001",
        -1.0,
        None,
        None,
        30.0,
        &["--dial", "*311002", "--calls", "0"],
    );
    let alice_done = alice.wait_event("done", Duration::from_secs(40));
    eprintln!("alice: {alice_done}");
    assert_eq!(alice_done["dialled"]["confirmed"], false, "{alice_done}");
    assert_eq!(alice_done["dialled"]["last_status"], 403, "{alice_done}");

    let caller_hangup = t.main + 75.0;
    let (bob, call) = caller_to_bob(&py, &sw, &cfg, &t, caller_hangup);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(t.main + 4.0));

    // Listen, then whisper (digit 2), then barge (digit 3), then hang up; retried while the
    // agent is not on the call yet (480).
    let sup1 = cfg.path("supervisor1_heard.wav");
    let mut s1 = Value::Null;
    for _ in 0..10 {
        s1 = run_supervisor(
            &py,
            &sw,
            "*311002",
            &[
                "--dtmf",
                "2@8s,3@16s",
                "--hangup-after",
                "24",
                "--max-duration",
                "40",
            ],
            &sup1,
        );
        eprintln!("supervisor 1: {s1}");
        if s1["last_status"] != 480 {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(s1["confirmed"], true, "{s1}");
    assert_eq!(s1["disconnected_by"], "local", "{s1}");

    // The call goes on without the supervisor; a second one barges in and stays until the
    // caller hangs up, when the switch hangs up the supervisor too.
    std::thread::sleep(Duration::from_secs(6));
    let left = caller_hangup - started.elapsed().as_secs_f64();
    assert!(
        left > 10.0,
        "the caller must still be on the call ({left:.1} s left)"
    );
    let sup2 = cfg.path("supervisor2_heard.wav");
    let s2 = run_supervisor(
        &py,
        &sw,
        "*331002",
        &["--max-duration", &format!("{:.0}", left + 20.0)],
        &sup2,
    );
    eprintln!("supervisor 2: {s2}");
    assert_eq!(s2["confirmed"], true, "{s2}");
    assert_eq!(s2["disconnected_by"], "remote", "the switch hung up: {s2}");

    let summary = call.finish();
    eprintln!("caller: {summary}");
    assert_eq!(summary["confirmed"], true, "{summary}");
    let bob_done = bob.wait_event("done", Duration::from_secs(40));
    eprintln!("bob: {bob_done}");
    let st = sw.terminate(Duration::from_secs(30));
    assert!(st.success(), "ccswitch exit status {st}");

    let calls = cfg.calls();
    let c = calls
        .iter()
        .find(|c| c["agent"] == "1002")
        .unwrap_or_else(|| panic!("no call answered by 1002: {calls:#?}"));
    let call_id = c["call_id"].as_str().expect("call_id").to_string();
    let (segments, audit) = with_store(&cfg.db_url, async |store| {
        let segments = store.monitor_segments(&call_id).await.expect("segments");
        (segments, store.audit_entries(500).await.expect("audit"))
    });
    eprintln!("segments: {segments:#?}");
    // Alice's refused code is in the audit log.
    assert!(
        audit.iter().any(|e| e.user == "agent:1001"
            && e.action == "monitor.refused"
            && e.target.as_deref() == Some("1002")
            && e.detail.as_deref() == Some("listen refused: forbidden")),
        "{audit:#?}"
    );
    let modes: Vec<(&str, Option<&str>)> = segments
        .iter()
        .map(|s| (s.mode.as_str(), s.end_reason.as_deref()))
        .collect();
    assert_eq!(
        modes,
        vec![
            ("listen", Some("mode_changed")),
            ("whisper", Some("mode_changed")),
            ("barge", Some("supervisor_hung_up")),
            ("barge", Some("call_ended")),
        ]
    );
    assert!(segments
        .iter()
        .all(|s| s.supervisor == "admin" && s.agent == "1002"));

    // Recording offsets: the caller's from its answer, the agent's from the agent's, the
    // first supervisor's from its first segment, the second's from its segment.
    let answered = ms_of(c, "answered_at");
    let agent_answered = ms_of(c, "agent_answered_at");
    let sup1_start = segments[0].started_at as i64;
    let sup2_start = segments[3].started_at as i64;
    let (cw, aw) = (cfg.path("caller_heard.wav"), cfg.path("agent_heard.wav"));
    let (c_hz, a_hz, s_hz) = (CALLER_TONE_HZ, AGENT_TONE_HZ, SUPERVISOR_TONE_HZ);
    for (i, s) in segments.iter().enumerate() {
        let (from, to) = (s.started_at as i64, s.ended_at.expect("ended") as i64);
        let secs = |base: i64, at: i64| (at - base) as f64 / 1000.0;
        let margin = 1.5;
        let window = |base: i64| (secs(base, from) + margin, secs(base, to) - margin);
        let sup = if i < 3 {
            (&sup1, sup1_start)
        } else {
            (&sup2, sup2_start)
        };
        let (who_c, who_a, who_s) = match s.mode.as_str() {
            "listen" => (vec![a_hz], vec![c_hz], vec![c_hz, a_hz]),
            "whisper" => (vec![a_hz], vec![c_hz, s_hz], vec![c_hz, a_hz]),
            _ => (vec![a_hz, s_hz], vec![c_hz, s_hz], vec![c_hz, a_hz]),
        };
        let label = |who: &str| format!("{who} ({} #{i})", s.mode);
        let (f, t) = window(answered);
        assert_mix(&py, &label("caller"), &cw, f, t, &who_c);
        let (f, t) = window(agent_answered);
        assert_mix(&py, &label("agent"), &aw, f, t, &who_a);
        let (f, t) = window(sup.1);
        assert_mix(&py, &label("supervisor"), sup.0, f, t, &who_s);
    }
    // Between the two supervisors, caller and agent hear only each other again.
    let gap = |base: i64| {
        (
            (segments[2].ended_at.expect("ended") as i64 - base) as f64 / 1000.0 + 1.5,
            (sup2_start - base) as f64 / 1000.0 - 0.5,
        )
    };
    let (f, t) = gap(answered);
    assert_mix(
        &py,
        "caller (after the supervisor left)",
        &cw,
        f,
        t,
        &[a_hz],
    );
    let (f, t) = gap(agent_answered);
    assert_mix(&py, "agent (after the supervisor left)", &aw, f, t, &[c_hz]);
}

/// RTP slot of the wallboard-button test.
const BUTTON_SLOT: u16 = 20;

/// One HTTP/1.1 request with a session cookie and its CSRF token: (status, body).
fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: &(String, String),
    body: &str,
) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nCookie: {}\r\n\
         X-CSRF-Token: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        auth.0,
        auth.1,
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send HTTP request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Signs in as the shipped admin (who has SIP phone 9001 here): (cookie, CSRF token).
fn admin_session(addr: SocketAddr) -> (String, String) {
    let body = serde_json::json!({"user": "admin", "password": "ccswitch-demo"}).to_string();
    let (status, headers, text) =
        wallboard::http_call(addr, "POST", "/api/v1/session", None, Some(&body));
    assert_eq!(status, 200, "sign-in: {text}");
    let cookie = headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("ccswitch_session="))
        .and_then(|(_, v)| v.split(';').next())
        .expect("session cookie")
        .to_string();
    let v: Value = serde_json::from_str(&text).expect("session JSON");
    let csrf = v["csrf_token"].as_str().expect("csrf_token").to_string();
    assert!(
        v["permissions"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == "monitor")),
        "{v}"
    );
    (cookie, csrf)
}

/// The call agent `ext` is talking on, from the live snapshot (waits for it, bounded).
fn talking_call(addr: SocketAddr, cookie: &str, ext: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let a = wallboard::snapshot_agent(addr, cookie, ext);
        if a["state"] == "on_call" {
            if let Some(id) = a["call"]["call_id"].as_str() {
                return id.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "agent {ext} never talked on a call: {a}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The wallboard's Listen button (`POST /api/v1/calls/{id}/monitor`, issue 10 item 5): the
/// switch rings the admin's registered phone (9001, a pjsua2 phone answering after 1 s),
/// which then hears caller and agent, while the caller still hears the agent only; the
/// caller hanging up hangs the supervisor up. Refusals first: unknown call 404, phone not
/// registered 409, and once ringing, a second request 409. Every request is audited.
#[test]
fn pjsua_wallboard_button_rings_the_supervisor_phone_to_listen() {
    let Some(py) = pjsua_python() else { return };
    let cfg = TestConfig::new(0);
    add_supervisor_phone(&cfg);
    let mut sw = Switch::start(&cfg, BUTTON_SLOT);
    let t = timeline();
    let auth = admin_session(sw.http);
    let listen = r#"{"mode":"listen"}"#;
    let (status, v) = api(sw.http, "POST", "/api/v1/calls/nope/monitor", &auth, listen);
    assert_eq!(status, 404, "{v}");

    let sup_tone = {
        let t = tone_wav(cfg.tmp.path(), SUPERVISOR_TONE_HZ, 10);
        let to = cfg.path("supervisor_tone.wav");
        std::fs::rename(t, &to).expect("rename tone");
        to
    };
    let caller_hangup = t.main + 45.0;
    let (bob, call) = caller_to_bob(&py, &sw, &cfg, &t, caller_hangup);
    let call_id = talking_call(
        sw.http,
        &auth.0,
        "1002",
        Duration::from_secs_f64(t.main + 30.0),
    );
    let path = format!("/api/v1/calls/{call_id}/monitor");

    // The supervisor's phone is not registered yet.
    let (status, v) = api(sw.http, "POST", &path, &auth, listen);
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["reason"], "not_registered", "{v}");

    let sup_wav = cfg.path("supervisor_heard.wav");
    let sup = spawn_agent(
        &py,
        &sw,
        "9001",
        1.0,
        Some(&sup_wav),
        Some(&sup_tone),
        caller_hangup + 20.0,
        &["--calls", "1"],
    );
    sup.wait_event("registered", Duration::from_secs(15));
    let (status, v) = api(sw.http, "POST", &path, &auth, listen);
    assert_eq!(status, 202, "{v}\n{}", sw.log_tail(30));
    assert_eq!(v["extension"], "9001", "{v}");
    assert_eq!(v["call_id"], call_id.as_str(), "{v}");
    let request_id = v["request_id"].as_str().expect("request_id").to_string();
    let (status, v) = api(sw.http, "POST", &path, &auth, r#"{"mode":"barge"}"#);
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["reason"], "already_monitored", "{v}");

    // The supervisor answers, listens, and is hung up when the caller hangs up.
    let sup_done = sup.wait_event("done", Duration::from_secs_f64(caller_hangup + 40.0));
    eprintln!("supervisor: {sup_done}");
    let s = &sup_done["calls"][0];
    assert_eq!(s["confirmed"], true, "{sup_done}");
    assert_eq!(s["disconnected_by"], "remote", "{sup_done}");
    assert!(
        s["remote"]
            .as_str()
            .is_some_and(|r| r.contains("Listen 1002")),
        "the phone shows what it is: {sup_done}"
    );
    let summary = call.finish();
    assert_eq!(summary["confirmed"], true, "{summary}");
    let _ = bob.wait_event("done", Duration::from_secs(40));
    let st = sw.terminate(Duration::from_secs(30));
    assert!(st.success(), "ccswitch exit status {st}");

    let calls = cfg.calls();
    let c = calls
        .iter()
        .find(|c| c["call_id"] == call_id.as_str())
        .unwrap_or_else(|| panic!("no call {call_id}: {calls:#?}"));
    let (segments, audit) = with_store(&cfg.db_url, async |store| {
        let segments = store.monitor_segments(&call_id).await.expect("segments");
        let audit = store.audit_entries(500).await.expect("audit");
        (segments, audit)
    });
    eprintln!("segments: {segments:#?}");
    assert_eq!(segments.len(), 1, "{segments:#?}");
    let seg = &segments[0];
    assert_eq!(
        (seg.mode.as_str(), seg.end_reason.as_deref()),
        ("listen", Some("call_ended"))
    );
    assert_eq!(
        (seg.supervisor.as_str(), seg.agent.as_str()),
        ("admin", "1002")
    );

    // Who heard whom: the supervisor both, the caller the agent only.
    let (from, to) = (seg.started_at as i64, seg.ended_at.expect("ended") as i64);
    let secs = |base: i64, at: i64| (at - base) as f64 / 1000.0;
    let (c_hz, a_hz) = (CALLER_TONE_HZ, AGENT_TONE_HZ);
    assert_mix(
        &py,
        "supervisor",
        &sup_wav,
        1.5,
        secs(from, to) - 1.5,
        &[c_hz, a_hz],
    );
    let answered = ms_of(c, "answered_at");
    let (f, t) = (secs(answered, from) + 1.5, secs(answered, to) - 1.5);
    assert_mix(
        &py,
        "caller (listened to)",
        &cfg.path("caller_heard.wav"),
        f,
        t,
        &[a_hz],
    );

    // The audit log: each request with its outcome, and the listening itself.
    let rows: Vec<(String, String, Option<String>, Option<String>)> = audit
        .iter()
        .map(|e| {
            (
                e.user.clone(),
                e.action.clone(),
                e.target.clone(),
                e.detail.clone(),
            )
        })
        .collect();
    eprintln!("audit: {rows:#?}");
    let has = |action: &str, target: &str, detail: &str| {
        rows.iter().any(|(u, a, t, d)| {
            u == "admin"
                && a == action
                && t.as_deref() == Some(target)
                && d.as_deref().is_some_and(|d| d.contains(detail))
        })
    };
    assert!(has("monitor.request", "nope", "listen refused: not-found"));
    assert!(has(
        "monitor.request",
        &call_id,
        "listen refused: not_registered"
    ));
    assert!(has(
        "monitor.request",
        &call_id,
        &format!("listen ringing 9001 ({request_id})")
    ));
    assert!(has(
        "monitor.request",
        &call_id,
        "barge refused: already_monitored"
    ));
    assert!(has("monitor.listen", &call_id, "agent 1002"));
}

/// RTP slot of the browser-phone test (also one of `agent_desk::DESK_SLOTS`).
const BROWSER_SLOT: u16 = 13;

/// The wallboard's browser phone (issue 10 item 5: the button "rings their own phone or
/// browser"), in real Chromium whose fake microphone plays the supervisor's 1000 Hz tone:
/// the admin (SIP phone 9001) signs in to the wallboard, connects the browser phone with the
/// SIP password (JsSIP registers over /sip), and presses Listen on agent 1002's card while
/// 1002 (pjsua2) talks with a caller (pjsua2). The page rings with what it is for, answers
/// (WebRTC from the switch's gateway), and hears the call (the received level, read through
/// WebAudio); the caller does not hear the supervisor. Barge in the page (digit 3 as an
/// RFC 4733 event): the caller now hears the supervisor too. Hang up in the page: the call
/// goes on. Then the page dials `*321002` itself (its WebRTC offer answered by the switch's
/// gateway after the digest challenge): whisper, the agent hears the supervisor and the
/// caller does not. The store has listen, barge and whisper segments.
#[test]
fn wallboard_browser_phone_listens_barges_and_dials_a_whisper_in_chromium() {
    let Some(py) = pjsua_python() else { return };
    let cfg = agent_desk::desk_config(BROWSER_SLOT);
    add_supervisor_phone(&cfg);
    let Some(mut browser) =
        agent_desk::talking_browser(&talking_tone_wav(cfg.tmp.path(), SUPERVISOR_TONE_HZ))
    else {
        return;
    };
    let mut sw = Switch::start(&cfg, BROWSER_SLOT);
    let base = format!("http://{}", sw.http);
    let t = timeline();

    browser.goto(&format!("{base}/"));
    browser.wait_for("#sign-in-form", Duration::from_secs(10));
    browser.fill("#sign-in-user", "admin");
    browser.fill("#sign-in-password", "ccswitch-demo");
    browser.click("#sign-in-submit");
    browser.wait_for("#sup-phone", Duration::from_secs(10));
    browser.wait_for_text("#sup-phone-ext", "9001", Duration::from_secs(5));
    browser.fill("#sup-phone-password", "demo9001");
    browser.click("#sup-phone-connect");
    browser.wait_for(
        "#sup-phone-state[data-state=\"registered\"]",
        Duration::from_secs(15),
    );

    let caller_hangup = t.main + 85.0;
    let (bob, call) = caller_to_bob(&py, &sw, &cfg, &t, caller_hangup);
    let auth = admin_session(sw.http);
    let call_id = talking_call(
        sw.http,
        &auth.0,
        "1002",
        Duration::from_secs_f64(t.main + 30.0),
    );

    // Listen on 1002's card: the page rings with the mode and agent, and answers.
    let listen = format!("button[data-monitor=\"listen\"][data-call-id=\"{call_id}\"]");
    browser.wait_for(&listen, Duration::from_secs(10));
    browser.click(&listen);
    browser.wait_for("#sup-call[data-phase=\"ringing\"]", Duration::from_secs(15));
    browser.wait_for_text("#sup-call-what", "1002", Duration::from_secs(2));
    browser.screenshot("wallboard-browser-phone-ringing-en.png");
    browser.click("#sup-answer");
    browser.wait_for("#sup-call[data-phase=\"talking\"]", Duration::from_secs(15));
    browser.evaluate("new Promise(r => setTimeout(r, 8000))");
    let level: f64 = browser
        .evaluate("Number(document.getElementById('sup-remote-level').dataset.max || 0)")
        .as_f64()
        .unwrap_or(0.0);
    eprintln!("browser phone's received audio level while listening (RMS, max): {level}");
    assert!(
        level > 0.02,
        "the supervisor's page should hear the call, level {level}\n{}",
        sw.log_tail(40)
    );
    // Barge from the page, then hang up there: the call goes on.
    browser.click("#sup-modes button[data-mode=\"barge\"]");
    browser.wait_for("#sup-call[data-mode=\"barge\"]", Duration::from_secs(2));
    browser.screenshot("wallboard-browser-phone-barge-en.png");
    browser.evaluate("new Promise(r => setTimeout(r, 8000))");
    browser.click("#sup-hangup");
    browser.run(serde_json::json!({
        "cmd": "waitForSelector",
        "selector": "#sup-call[data-phase=\"idle\"]",
        "state": "hidden",
        "timeout": 10000,
    }));
    // Dial *32 + the agent from the page (a WebRTC offer the switch's gateway answers,
    // after the digest challenge): whisper, then hang up.
    browser.wait_for("#sup-dial-form", Duration::from_secs(5));
    browser.fill("#sup-dial", "*321002");
    browser.click("#sup-dial-call");
    browser.wait_for(
        "#sup-call[data-phase=\"talking\"][data-mode=\"whisper\"]",
        Duration::from_secs(15),
    );
    browser.screenshot("wallboard-browser-phone-whisper-en.png");
    browser.click("#lang-toggle");
    browser.wait_for_text("#sup-call-what", "耳语", Duration::from_secs(2));
    browser.screenshot("wallboard-browser-phone-whisper-zh.png");
    browser.click("#lang-toggle");
    browser.evaluate("new Promise(r => setTimeout(r, 8000))");
    browser.click("#sup-hangup");
    browser.run(serde_json::json!({
        "cmd": "waitForSelector",
        "selector": "#sup-call[data-phase=\"idle\"]",
        "state": "hidden",
        "timeout": 10000,
    }));
    agent_desk::assert_no_page_errors(&mut browser);

    let summary = call.finish();
    assert_eq!(summary["confirmed"], true, "{summary}");
    let _ = bob.wait_event("done", Duration::from_secs(40));
    let st = sw.terminate(Duration::from_secs(30));
    assert!(st.success(), "ccswitch exit status {st}");

    let calls = cfg.calls();
    let c = calls
        .iter()
        .find(|c| c["call_id"] == call_id.as_str())
        .unwrap_or_else(|| panic!("no call {call_id}: {calls:#?}"));
    let segments = with_store(&cfg.db_url, async |store| {
        store.monitor_segments(&call_id).await.expect("segments")
    });
    eprintln!("segments: {segments:#?}");
    let modes: Vec<(&str, Option<&str>)> = segments
        .iter()
        .map(|s| (s.mode.as_str(), s.end_reason.as_deref()))
        .collect();
    assert_eq!(
        modes,
        [
            ("listen", Some("mode_changed")),
            ("barge", Some("supervisor_hung_up")),
            ("whisper", Some("supervisor_hung_up"))
        ],
        "{segments:#?}"
    );
    assert_eq!(
        c["ended_by"], "caller",
        "the call went on after the supervisor: {c}"
    );

    // The caller heard the agent only while the supervisor listened, and the supervisor's
    // microphone too once they barged in.
    let answered = ms_of(c, "answered_at");
    let secs = |at: u64| (at as i64 - answered) as f64 / 1000.0;
    let (a_hz, s_hz) = (AGENT_TONE_HZ, SUPERVISOR_TONE_HZ);
    let caller_wav = cfg.path("caller_heard.wav");
    let (l, b) = (&segments[0], &segments[1]);
    assert_mix(
        &py,
        "caller (listened to from the browser)",
        &caller_wav,
        secs(l.started_at) + 1.5,
        secs(l.ended_at.expect("ended")) - 0.5,
        &[a_hz],
    );
    assert_mix(
        &py,
        "caller (barged into from the browser)",
        &caller_wav,
        secs(b.started_at) + 1.5,
        secs(b.ended_at.expect("ended")) - 0.5,
        &[a_hz, s_hz],
    );
    // The whisper dialled from the page: the agent hears the supervisor, the caller not.
    let w = &segments[2];
    assert_mix(
        &py,
        "caller (whispered over from the browser)",
        &caller_wav,
        secs(w.started_at) + 1.5,
        secs(w.ended_at.expect("ended")) - 0.5,
        &[a_hz],
    );
    let agent_answered = ms_of(c, "agent_answered_at");
    let agent_secs = |at: u64| (at as i64 - agent_answered) as f64 / 1000.0;
    assert_mix(
        &py,
        "agent (whispered to from the browser)",
        &cfg.path("agent_heard.wav"),
        agent_secs(w.started_at) + 1.5,
        agent_secs(w.ended_at.expect("ended")) - 0.5,
        &[CALLER_TONE_HZ, s_hz],
    );
}

/// A 48 kHz `hz` tone that comes and goes three times a second, as speech does, for
/// Chromium's fake microphone: its noise suppression learns a steady tone as background
/// noise within seconds and takes it out, a talker's syllables it keeps.
fn talking_tone_wav(dir: &Path, hz: u32) -> PathBuf {
    let out = dir.join(format!("talking_{hz}.wav"));
    let ok = Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "1", "-b", "16"])
        .arg(&out)
        .args(["synth", "20", "sine", &hz.to_string()])
        .args(["tremolo", "3", "100", "vol", "0.5"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "sox could not make the talking tone (apt-get install -y sox)"
    );
    out
}
