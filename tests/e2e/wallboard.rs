//! The wallboard in real headless Chromium (tests/web/driver.mjs, playwright-core) against
//! the real switch, interleaved with real SIP peers: a supervisor signs in; sets a
//! registered agent on break from the agent grid (the switch's live snapshot says
//! not_ready/break); a pjsua2 caller picks the tech queue and the waiting list shows them;
//! the language toggle changes the labels; the supervisor sets the agent ready, the agent
//! answers and the grid shows on_call, then wrap_up; the switch restarts on the same ports
//! and the page comes back by itself, still signed in (no sign-in asked); a viewer sees no agent commands. Screenshots
//! (1920x1080 in English and Chinese, 1366x768 in Chinese) go to
//! target/wallboard-screenshots/.
//!
//! Needs `npm ci` in tests/web (done by .ci/run) and /usr/bin/chromium (or CHROMIUM_PATH).
//! CCSWITCH_E2E_SKIP_BROWSER=1 skips it.

use super::browser::Browser;
use super::*;

const SLOT: u16 = 19;
/// Alice serves the tech queue in English (config/agents.toml).
const AGENT: &str = "1001";
const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "ccswitch-demo";
/// A viewer added to the test's users.toml: the board without agent commands.
const VIEWER: &str = "wall";
const VIEWER_PASSWORD: &str = "wall-screen-only";

/// One HTTP/1.1 request with optional cookie and JSON body: (status, headers, body).
pub(super) fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).expect("send HTTP request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, headers, body)
}

/// Signs in over the API (not the page) and returns the session cookie.
pub(super) fn api_sign_in(addr: SocketAddr) -> String {
    let body = serde_json::json!({"user": ADMIN, "password": ADMIN_PASSWORD}).to_string();
    let (status, headers, text) = http_call(addr, "POST", "/api/v1/session", None, Some(&body));
    assert_eq!(status, 200, "API sign-in: {text}");
    headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("ccswitch_session="))
        .and_then(|(_, v)| v.split(';').next())
        .expect("session cookie")
        .to_string()
}

/// The switch's own view of one agent: GET /api/v1/live/snapshot.
pub(super) fn snapshot_agent(addr: SocketAddr, cookie: &str, ext: &str) -> Value {
    let (status, _, text) = http_call(addr, "GET", "/api/v1/live/snapshot", Some(cookie), None);
    assert_eq!(status, 200, "snapshot: {text}");
    let snap: Value = serde_json::from_str(&text).expect("snapshot JSON");
    snap["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["extension"] == ext))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Appends a viewer to the test's users.toml (`ccswitch user hash-password --name`).
fn add_viewer(cfg: &TestConfig) {
    let mut child = Command::new(bin())
        .args(["user", "hash-password", "--name", VIEWER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ccswitch user hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{VIEWER_PASSWORD}").expect("password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let block = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(block.contains("role = \"viewer\""), "{block}");
    let users = cfg.dir.join("users.toml");
    let mut text = std::fs::read_to_string(&users).expect("read users.toml");
    text.push('\n');
    text.push_str(&block);
    std::fs::write(&users, text).expect("write users.toml");
}

fn agent_card(ext: &str) -> String {
    format!(".agent[data-extension=\"{ext}\"]")
}

#[test]
fn wallboard_in_chromium_follows_calls_agents_language_and_restart() {
    let Some(py) = pjsua_python() else { return };
    let Some(mut browser) = Browser::start() else {
        return;
    };
    let cfg = TestConfig::new(0);
    // A short after-call work, so wrap-up shows and ends within the test.
    let queues = cfg.dir.join("queues.toml");
    let text = std::fs::read_to_string(&queues).expect("read queues.toml");
    assert!(text.contains("wrap_up_s = 30"), "queues.toml wrap_up_s");
    std::fs::write(&queues, text.replace("wrap_up_s = 30", "wrap_up_s = 6")).expect("write");
    add_viewer(&cfg);
    let sw = Switch::start(&cfg, SLOT);
    let base = format!("http://{}", sw.http);
    let t = timeline();

    // The real binary serves the page with its security headers.
    let (status, headers, page) = http_call(sw.http, "GET", "/", None, None);
    assert_eq!(status, 200, "GET /: {page}");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert!(header("content-security-policy").contains("default-src 'self'"));
    assert_eq!(header("x-frame-options"), "DENY");

    // 1. Sign in; the feed goes live.
    browser.goto(&format!("{base}/"));
    browser.sign_in_as(ADMIN, ADMIN_PASSWORD);
    browser.wait_for("#connection[data-state=\"live\"]", Duration::from_secs(10));
    assert!(browser.text("#who-user").contains(ADMIN));

    // 2. The agent registers and shows up ready; the supervisor sets them on break.
    let agent = spawn_agent(
        &py,
        &sw,
        AGENT,
        1.0,
        None,
        None,
        t.main + 120.0,
        &["--linger", "12"],
    );
    agent.wait_event("registered", Duration::from_secs(15));
    let card = agent_card(AGENT);
    browser.wait_for(
        &format!("{card}[data-state=\"ready\"]"),
        Duration::from_secs(10),
    );
    browser.click(&format!("{card} button[data-cmd=\"not_ready\"]"));
    browser.wait_for(
        &format!("{card}[data-state=\"not_ready\"]"),
        Duration::from_secs(10),
    );
    let cookie = api_sign_in(sw.http);
    let seen = snapshot_agent(sw.http, &cookie, AGENT);
    assert_eq!(seen["state"], "not_ready", "the switch's view: {seen}");
    assert_eq!(seen["reason"], "break", "the switch's view: {seen}");

    // 3. A caller picks English, then tech: with the only agent on break they wait, and the
    //    waiting list shows them (the delay from queue entry is printed, not asserted). They
    //    hang up HANG_UP_S after the main menu; steps 4-5 take well under that.
    const HANG_UP_S: f64 = 35.0;
    let caller = spawn_caller(
        &py,
        &sw.uri("100"),
        &CallerArgs {
            transport: "udp",
            dtmf: format!("1@{:.2}s,6@{:.2}s", t.language, t.main),
            dtmf_method: "rfc4733",
            hangup_after: t.main + HANG_UP_S,
            max_duration: t.main + HANG_UP_S + 30.0,
            // A VIP prefix in the shipped queues.toml ([vip] prefixes = ["+8610999"]).
            from_user: Some("+861099912345"),
            ..Default::default()
        },
    );
    browser.wait_for_text(
        "#waiting-rows",
        "2345",
        Duration::from_secs_f64(t.main + 20.0),
    );
    let shown_after_ms = browser.evaluate(
        "Date.now() - Number(document.querySelector('#waiting-rows .tick').dataset.since)",
    );
    eprintln!("waiting list showed the caller {shown_after_ms} ms after queue entry");
    let row = browser.text("#waiting-rows");
    assert!(
        !row.contains("861099912345"),
        "the number is masked: {row:?}"
    );
    browser.wait_for("#waiting-rows tr.vip .vip-mark", Duration::from_secs(5));
    browser.wait_for_text(
        "#queue-rows tr[data-queue=\"tech\"] td[data-col=\"waiting\"]",
        "1",
        Duration::from_secs(5),
    );

    // 4. Screenshots in English, then the language toggle changes the labels.
    browser.evaluate("new Promise(r => setTimeout(r, 1200))"); // let the clocks tick
    browser.screenshot("wallboard-en.png");
    assert_eq!(browser.text(".agents h2").trim(), "Agents");
    browser.click("#lang-toggle");
    browser.wait_for_text(".agents h2", "坐席", Duration::from_secs(5));
    browser.wait_for_text(
        &format!("{card} .state-badge"),
        "未就绪",
        Duration::from_secs(5),
    );
    assert_eq!(
        browser.evaluate("localStorage.getItem('ccswitch.lang')"),
        "zh"
    );
    browser.screenshot("wallboard-zh.png");
    // The same board on a laptop screen.
    browser.run(serde_json::json!({"cmd": "setViewport", "width": 1366, "height": 768}));
    browser.screenshot("wallboard-laptop-zh.png");
    browser.run(serde_json::json!({"cmd": "setViewport", "width": 1920, "height": 1080}));
    browser.click("#lang-toggle");
    browser.wait_for_text(".agents h2", "Agents", Duration::from_secs(5));

    // 5. The supervisor sets the agent ready: the waiting caller is offered, the agent
    //    answers, the grid shows on_call, then wrap_up after the caller hangs up.
    browser.click(&format!("{card} button[data-cmd=\"ready\"]"));
    browser.wait_for(
        &format!("{card}[data-state=\"on_call\"]"),
        Duration::from_secs(20),
    );
    browser.wait_for_text(
        &format!("{card} .agent-call"),
        "Technical support",
        Duration::from_secs(5),
    );
    browser.evaluate("new Promise(r => setTimeout(r, 2000))");
    browser.screenshot("wallboard-on-call-en.png");
    // Listen on the agent talking: the admin here has no SIP phone, and the page says why.
    browser.click(&format!("{card} button[data-monitor=\"listen\"]"));
    browser.wait_for_text(
        "#monitor-status.error",
        "sip_extension",
        Duration::from_secs(5),
    );
    browser.wait_for(
        &format!("{card}[data-state=\"wrap_up\"]"),
        Duration::from_secs_f64(HANG_UP_S + 15.0),
    );
    let summary = caller.finish();
    assert_eq!(summary["confirmed"], true, "caller: {summary}");
    browser.wait_for(
        &format!("{card}[data-state=\"ready\"]"),
        Duration::from_secs(20),
    );
    // Only the first who-am-I (401 before sign-in) may show as an error: no script error,
    // no Content-Security-Policy refusal.
    let errors = browser.run(serde_json::json!({"cmd": "errors"}));
    eprintln!("page console errors so far: {errors}");
    for e in errors.as_array().cloned().unwrap_or_default() {
        let e = e.as_str().unwrap_or("");
        assert!(
            !e.starts_with("pageerror") && !e.contains("Content Security Policy"),
            "page error: {e}"
        );
    }

    // 6. The switch restarts on the same ports (same database): the page notices, retries by
    //    itself and comes back without a reload and without sign-in, since sessions are
    //    stored (web_sessions) and restored at startup.
    let (sip_port, http_port) = (sw.sip.port(), sw.http.port());
    drop(agent);
    let mut sw = sw;
    let st = sw.terminate(Duration::from_secs(30));
    assert!(st.success(), "ccswitch exit status {st}");
    browser.wait_for(
        "#connection:not([data-state=\"live\"])",
        Duration::from_secs(10),
    );
    let sw = Switch::start_on(&cfg, sip_port, http_port, rtp_range(SLOT));
    browser.wait_for(
        "#connection[data-state=\"live\"]:not([hidden]), #sign-in-form",
        Duration::from_secs(45),
    );
    let signed_out = browser.evaluate("!document.getElementById('sign-in-view').hidden");
    assert_eq!(
        signed_out, false,
        "after the restart the page must reconnect with its stored session, not ask for sign-in"
    );
    assert!(
        browser.text("#who-user").contains(ADMIN),
        "still signed in as {ADMIN}: {}",
        browser.text("#who-user")
    );
    browser.wait_for("#connection[data-state=\"live\"]", Duration::from_secs(20));
    browser.wait_for(&card, Duration::from_secs(10));

    // 7. A wrong password is refused on the page; a viewer sees the board without the
    //    agent commands.
    browser.click("#sign-out");
    browser.wait_for("#sign-in-form", Duration::from_secs(10));
    browser.fill("#sign-in-user", VIEWER);
    browser.fill("#sign-in-password", "not-the-password");
    browser.click("#sign-in-submit");
    browser.wait_for_text("#sign-in-error", "Sign-in failed", Duration::from_secs(15));
    browser.sign_in_as(VIEWER, VIEWER_PASSWORD);
    browser.wait_for("#connection[data-state=\"live\"]", Duration::from_secs(20));
    browser.wait_for(&card, Duration::from_secs(10));
    assert!(browser.text("#who-user").contains("viewer"));
    let buttons = browser.run(serde_json::json!({"cmd": "count", "selector": ".agent button"}));
    assert_eq!(buttons, 0, "a viewer gets no agent commands");
    drop(sw);
}
