//! SIP over WebSocket (RFC 7118) against the real binary on `ws://<http>/sip`:
//!
//! * JsSIP agents (`tests/sipws/agent.js`, npm `jssip` + `ws`, pinned in its
//!   package-lock.json) register with digest like desk phones and are offered a raw UDP
//!   caller's call over their WebSocket (Via `SIP/2.0/WS`); their 486 passes the call to
//!   the other agent. Media is not part of this: node has no WebRTC.
//! * A JsSIP agent killed while its phone rings: the registration goes with the
//!   connection and the offer ends as failed.
//! * The handshake rules (Origin 403, no `sip` subprotocol 400) and hostile frames
//!   (garbage, oversized) with a plain WebSocket client: counted, never a crash.
//!
//! Needs `node`/`npm` (the JsSIP tests run `npm ci` in tests/sipws when its node_modules is
//! missing); CCSWITCH_E2E_SKIP_SIPWS=1 skips the JsSIP tests.

use super::*;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

/// This module's RTP slot: one for the whole module, so the tests that place calls take
/// `RTP_SLOT` in turn (the others open no RTP port).
const SLOT: u16 = 24;
static RTP_SLOT: Mutex<()> = Mutex::new(());

fn sipws_dir() -> PathBuf {
    manifest().join("tests/sipws")
}

static NPM: Mutex<()> = Mutex::new(());

/// Whether the JsSIP agent can run: `npm ci` once when its packages are missing.
fn jssip_ready() -> bool {
    if std::env::var("CCSWITCH_E2E_SKIP_SIPWS").as_deref() == Ok("1") {
        eprintln!("CCSWITCH_E2E_SKIP_SIPWS=1: JsSIP test skipped");
        return false;
    }
    let _once = NPM.lock().unwrap_or_else(|e| e.into_inner());
    let dir = sipws_dir();
    if !dir.join("node_modules/jssip/package.json").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for the JsSIP agent (tests/sipws): install Node.js and npm, or set CCSWITCH_E2E_SKIP_SIPWS=1");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    true
}

/// A config with `[sip.websocket] enabled = true` and the given `allowed_origins` value.
pub(super) fn ws_config(allowed_origins: &str) -> TestConfig {
    let cfg = TestConfig::new(0);
    let main = cfg.main_file();
    let text = std::fs::read_to_string(&main).expect("read ccswitch.toml");
    assert!(
        text.contains("[sip.websocket]") && text.contains("allowed_origins = []"),
        "config/ccswitch.toml must have [sip.websocket] with `allowed_origins = []`"
    );
    let text = text
        .replacen("enabled = false", "enabled = true", 1)
        .replace(
            "allowed_origins = []",
            &format!("allowed_origins = {allowed_origins}"),
        );
    std::fs::write(&main, text).expect("write ccswitch.toml");
    cfg
}

fn ws_url(sw: &Switch) -> String {
    format!("ws://{}/sip", sw.http)
}

/// One `node agent.js` process; its JSON event lines are collected as they come.
struct JsAgent {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl JsAgent {
    fn spawn(sw: &Switch, ext: &str, extra: &[&str]) -> JsAgent {
        let password = format!("demo{ext}");
        let origin = format!("http://{}", sw.http);
        let mut child = Command::new("node")
            .arg(sipws_dir().join("agent.js"))
            .args(["--url", &ws_url(sw), "--user", ext, "--password", &password])
            .args(["--domain", "127.0.0.1", "--origin", &origin])
            .args(["--max-seconds", "120"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node tests/sipws/agent.js");
        let events = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout piped");
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if let Ok(mut e) = sink.lock() {
                        e.push(v);
                    }
                }
            }
        });
        let err = child.stderr.take().expect("stderr piped");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut e) = sink.lock() {
                    e.push(line);
                }
            }
        });
        JsAgent {
            child,
            events,
            stderr,
        }
    }

    fn events(&self, name: &str) -> Vec<Value> {
        self.events
            .lock()
            .map(|e| e.iter().filter(|v| v["event"] == name).cloned().collect())
            .unwrap_or_default()
    }

    fn wait_event(&self, name: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = self.events(name).into_iter().next() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "JsSIP agent: no `{name}` within {within:?}; events {:?}; stderr {:?}",
                self.events.lock().map(|e| e.clone()).unwrap_or_default(),
                self.stderr.lock().map(|e| e.clone()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the tab is gone, no unREGISTER, no close frame.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for JsAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `cond` every 100 ms for at most `within`.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// (agent, outcome) of every offer of the one call in the report.
fn offers(cfg: &TestConfig) -> Vec<(String, String)> {
    let calls = cfg.calls();
    let c = find_call(&calls, "udp").clone();
    eprintln!("report: {c:#}");
    c["offers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|o| {
            (
                o["agent"].as_str().unwrap_or("").to_string(),
                o["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn assert_ws_offer(invite: &Value) {
    let via = invite["via"].as_str().unwrap_or("");
    assert!(
        via.to_ascii_uppercase().starts_with("SIP/2.0/WS "),
        "the offer should come over the WebSocket, Via: {via}"
    );
    assert!(
        invite["contact"]
            .as_str()
            .unwrap_or("")
            .contains("transport=ws"),
        "{invite}"
    );
    assert_eq!(invite["x_queue"], "tech", "{invite}");
    assert_eq!(invite["sdp"], true, "{invite}");
}

/// Two JsSIP agents of the tech queue register over WebSocket; a raw UDP caller picks
/// English then technical support; the first agent offered answers 486 and the call
/// passes to the other, who is offered over its own WebSocket too.
#[test]
fn jssip_agents_register_over_websocket_and_busy_passes_the_offer_on() {
    if !jssip_ready() {
        return;
    }
    let _slot = RTP_SLOT.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = ws_config("[]");
    let mut sw = Switch::start(&cfg, SLOT);
    let alice = JsAgent::spawn(&sw, "1001", &["--reject", "486"]);
    let bob = JsAgent::spawn(&sw, "1002", &["--reject", "486"]);
    alice.wait_event("registered", Duration::from_secs(15));
    bob.wait_event("registered", Duration::from_secs(15));
    assert_eq!(sw.metric("ccswitch_sip_ws_connections"), Some(2.0));

    let t = timeline();
    let mut call = RawCall::dial(sw.sip, "100");
    let (_, got_bye) = call.media(t.main + 1.0, &[(t.language, '1'), (t.main, '6')]);
    assert!(!got_bye, "the switch hung up on the caller");
    let both = eventually(Duration::from_secs(15), || {
        !alice.events("invite").is_empty() && !bob.events("invite").is_empty()
    });
    assert!(
        both,
        "both agents should be offered the call: alice {:?} bob {:?}\n{}",
        alice.events("invite"),
        bob.events("invite"),
        sw.log_tail(40)
    );
    assert_ws_offer(&alice.events("invite")[0]);
    assert_ws_offer(&bob.events("invite")[0]);
    let _ = call.hang_up();
    let st = sw.terminate(Duration::from_secs(30));
    assert!(st.success(), "ccswitch exit status {st}");
    let offers = offers(&cfg);
    for agent in ["1001", "1002"] {
        assert!(
            offers.contains(&(agent.to_string(), "busy".to_string())),
            "{agent} answered 486: {offers:?}"
        );
    }
}

/// The agent's tab dies while its phone rings: the connection closes without a word, the
/// registration bound to it goes at once (RFC 7118 section 5) and the offer fails.
#[test]
fn websocket_agent_vanishing_mid_offer_loses_registration_and_offer() {
    if !jssip_ready() {
        return;
    }
    let _slot = RTP_SLOT.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = ws_config("[]");
    let mut sw = Switch::start(&cfg, SLOT);
    let mut alice = JsAgent::spawn(&sw, "1001", &[]);
    alice.wait_event("registered", Duration::from_secs(15));
    let t = timeline();
    let mut call = RawCall::dial(sw.sip, "100");
    let _ = call.media(t.main + 1.0, &[(t.language, '1'), (t.main, '6')]);
    let invite = alice.wait_event("invite", Duration::from_secs(15));
    assert_ws_offer(&invite);
    alice.kill();
    assert!(
        eventually(Duration::from_secs(10), || sw
            .metric("ccswitch_sip_ws_connections")
            == Some(0.0)),
        "the connection should be gone"
    );
    assert!(
        eventually(Duration::from_secs(10), || sw.log_lines().iter().any(|l| l
            .contains("binding removed")
            && l.contains("connection_closed"))),
        "the registration should go with its connection:\n{}",
        sw.log_tail(40)
    );
    let _ = call.hang_up();
    let st = sw.terminate(Duration::from_secs(30));
    assert!(st.success(), "ccswitch exit status {st}");
    let offers = offers(&cfg);
    assert_eq!(
        offers.first(),
        Some(&("1001".to_string(), "failed".to_string())),
        "{offers:?}"
    );
}

/// The status line of a raw WebSocket handshake to `/sip` with these extra headers.
fn handshake_status(sw: &Switch, extra: &str) -> u16 {
    let mut s = TcpStream::connect_timeout(&sw.http, Duration::from_secs(5)).expect("connect");
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "GET /sip HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n",
        sw.http
    );
    s.write_all(req.as_bytes()).expect("send handshake");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("status line");
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn ws_connect(sw: &Switch) -> Ws {
    ws_connect_with(sw, &[])
}

fn ws_connect_with(sw: &Switch, headers: &[(&'static str, &str)]) -> Ws {
    let mut req = ws_url(sw).into_client_request().expect("request");
    for (name, value) in headers {
        req.headers_mut()
            .insert(*name, value.parse().expect("header"));
    }
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().expect("header"));
    req.headers_mut().insert(
        "Origin",
        format!("http://{}", sw.http).parse().expect("header"),
    );
    let (ws, resp) = tungstenite::connect(req).expect("WebSocket handshake");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("sip"),
        "the switch must select the sip subprotocol"
    );
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    }
    ws
}

/// The next text or binary message (pings skipped), or None when the connection ended.
fn next_data(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Binary(b)) => return Some(String::from_utf8_lossy(&b).to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

fn options(ws_local: SocketAddr, n: u32) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKws{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{ws_local}>;tag=p{n}\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: ws-options-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Wrong Origin 403 and no `sip` subprotocol 400 before any upgrade; then on a real
/// connection: an OPTIONS gets its 200 back over the WebSocket, garbage is counted and the
/// connection lives on, a CRLF keep-alive gets its pong, and an oversized message closes
/// the connection. The switch stays healthy throughout.
#[test]
fn websocket_handshake_rules_and_hostile_frames() {
    let cfg = ws_config("[]");
    let sw = Switch::start(&cfg, SLOT);
    let host_origin = format!("Origin: http://{}\r\n", sw.http);
    assert_eq!(
        handshake_status(
            &sw,
            "Origin: http://evil.example\r\nSec-WebSocket-Protocol: sip\r\n"
        ),
        403
    );
    assert_eq!(handshake_status(&sw, &host_origin), 400);
    assert_eq!(
        handshake_status(
            &sw,
            &format!("{host_origin}Sec-WebSocket-Protocol: chat\r\n")
        ),
        400
    );
    assert_eq!(
        sw.metric("ccswitch_sip_ws_refused_total{reason=\"origin\"}"),
        Some(1.0)
    );
    assert_eq!(
        sw.metric("ccswitch_sip_ws_refused_total{reason=\"subprotocol\"}"),
        Some(2.0)
    );

    let mut ws = ws_connect(&sw);
    let local = match ws.get_ref() {
        tungstenite::stream::MaybeTlsStream::Plain(s) => s.local_addr().expect("local"),
        _ => unreachable!("plain ws"),
    };
    let malformed_before = sw.metric("ccswitch_sip_malformed_total").unwrap_or(0.0);
    ws.send(Message::Binary(vec![0xff, 0x00, 0x13, 0x37, 0xfe].into()))
        .expect("send garbage");
    ws.send(Message::Text("NOT SIP AT ALL\r\n\r\n".into()))
        .expect("send garbage text");
    ws.send(Message::Text(options(local, 1).into()))
        .expect("send OPTIONS");
    let reply = next_data(&mut ws).expect("a reply to OPTIONS");
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    assert!(
        reply.contains(&format!("received={}", local.ip())) && reply.contains("rport="),
        "Via received/rport for ws: {reply}"
    );
    assert!(
        eventually(Duration::from_secs(5), || sw
            .metric("ccswitch_sip_malformed_total")
            .unwrap_or(0.0)
            >= malformed_before + 2.0),
        "garbage frames should be counted as malformed"
    );
    ws.send(Message::Text("\r\n\r\n".into()))
        .expect("send keep-alive");
    assert_eq!(next_data(&mut ws).as_deref(), Some("\r\n"), "CRLF pong");

    let huge = "X".repeat(70_000);
    let _ = ws.send(Message::Text(huge.into()));
    assert_eq!(next_data(&mut ws), None, "an oversized message closes");
    assert!(eventually(Duration::from_secs(5), || {
        sw.metric("ccswitch_sip_ws_connections_closed_total{reason=\"too_large\"}")
            .unwrap_or(0.0)
            >= 1.0
    }));
    let (status, _) = sw.http_get("/health");
    assert_eq!(status, 200, "the switch must stay up");
    // A fresh connection still works.
    let mut ws = ws_connect(&sw);
    ws.send(Message::Text(options(local, 2).into()))
        .expect("send OPTIONS");
    let reply = next_data(&mut ws).expect("a reply to OPTIONS");
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
}

/// `[sip.websocket]` limits: two connections at most (a third handshake gets 503), and a
/// connection nobody registered over is closed after `idle_timeout_s`, while a JsSIP
/// agent's registered connection, just as silent, stays open.
#[test]
fn websocket_idle_timeout_and_connection_cap() {
    let cfg = ws_config("[]");
    let main = cfg.main_file();
    let text = std::fs::read_to_string(&main).expect("read ccswitch.toml");
    let text = text
        .replace("idle_timeout_s = 60", "idle_timeout_s = 1")
        .replace("max_connections = 2048", "max_connections = 2")
        .replace(
            "max_connections_per_source = 512",
            "max_connections_per_source = 2",
        );
    std::fs::write(&main, text).expect("write ccswitch.toml");
    let sw = Switch::start(&cfg, SLOT);
    let mut a = ws_connect(&sw);
    let _b = ws_connect(&sw);
    let origin = format!(
        "Origin: http://{}\r\nSec-WebSocket-Protocol: sip\r\n",
        sw.http
    );
    assert_eq!(handshake_status(&sw, &origin), 503);
    assert_eq!(
        sw.metric("ccswitch_sip_ws_refused_total{reason=\"capacity\"}"),
        Some(1.0)
    );
    // Silent and unregistered: closed by the idle timeout.
    assert_eq!(next_data(&mut a), None, "idle connection should be closed");
    assert!(eventually(Duration::from_secs(5), || {
        sw.metric("ccswitch_sip_ws_connections_closed_total{reason=\"idle_timeout\"}")
            .unwrap_or(0.0)
            >= 2.0
    }));
    assert!(eventually(Duration::from_secs(5), || sw
        .metric("ccswitch_sip_ws_connections")
        == Some(0.0)));
    if !jssip_ready() {
        return;
    }
    let alice = JsAgent::spawn(&sw, "1001", &[]);
    alice.wait_event("registered", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        sw.metric("ccswitch_sip_ws_connections"),
        Some(1.0),
        "a registered connection outlives the idle timeout"
    );
    assert!(alice.events("disconnected").is_empty());
}

/// Behind a trusted TLS proxy the agent's address comes from `X-Forwarded-For`: responses
/// are stamped with it (`received=`), so registrar blocking and per-source limits count
/// agents, not the proxy. From an untrusted peer the header is ignored.
#[test]
fn websocket_behind_a_trusted_proxy_sees_the_forwarded_address() {
    let cfg = ws_config("[]");
    let main = cfg.main_file();
    let text = std::fs::read_to_string(&main).expect("read ccswitch.toml");
    std::fs::write(
        &main,
        text.replace(
            "trusted_proxies = []",
            "trusted_proxies = [\"127.0.0.1/32\"]",
        ),
    )
    .expect("write ccswitch.toml");
    let sw = Switch::start(&cfg, SLOT);
    let mut ws = ws_connect_with(
        &sw,
        &[
            ("X-Forwarded-For", "198.51.100.1, 203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
        ],
    );
    let local = match ws.get_ref() {
        tungstenite::stream::MaybeTlsStream::Plain(s) => s.local_addr().expect("local"),
        _ => unreachable!("plain ws"),
    };
    ws.send(Message::Text(options(local, 1).into()))
        .expect("send OPTIONS");
    let reply = next_data(&mut ws).expect("a reply to OPTIONS");
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    assert!(
        reply.contains("received=203.0.113.9"),
        "the forwarded client address: {reply}"
    );
}
