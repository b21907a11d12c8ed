//! The live feed end to end (issue 9): the real switch, a signed-in WebSocket client, a
//! pjsua2 caller choosing technical support and a pjsua2 agent answering. The feed shows
//! the caller waiting, then the agent on the call, then in wrap-up; a client without
//! credentials gets 401, one from another origin 403, and a client that never reads does
//! not hold the others back. Also the snapshot over a bearer token.

use super::*;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

/// RTP slot of these tests (API_CONTRACT / COMMON.md: 18 is live's).
const SLOT: u16 = 18;
/// The shipped users.toml's admin and its documented demo password (loopback only).
const ADMIN: &str = "admin";
const ADMIN_PW: &str = "ccswitch-demo";

type Ws = tungstenite::WebSocket<TcpStream>;

/// A raw HTTP/1.1 request; (status, headers, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
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
    (status, head.to_string(), body)
}

/// Signs in as the shipped admin; the `name=value` of the session cookie.
fn sign_in(sw: &Switch) -> String {
    let body = serde_json::json!({"user": ADMIN, "password": ADMIN_PW}).to_string();
    let (status, head, body) = http(
        sw.http,
        "POST",
        "/api/v1/session",
        &[("Content-Type", "application/json")],
        &body,
    );
    assert_eq!(status, 200, "sign-in: {head}\n{body}");
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .and_then(|l| l.split_once(':'))
        .and_then(|(_, v)| v.split(';').next())
        .map(|c| c.trim().to_string())
        .expect("Set-Cookie")
}

/// Opens the feed with `headers`; the HTTP status if the upgrade was refused.
fn connect(sw: &Switch, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = format!("ws://{}/api/v1/live", sw.http)
        .into_client_request()
        .expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let stream = TcpStream::connect_timeout(&sw.http, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok();
    match tungstenite::client(req, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            Err(r.status().as_u16())
        }
        Err(e) => panic!("WebSocket handshake: {e}"),
    }
}

/// The client's view: the snapshot with every update's sections replaced.
struct Feed {
    ws: Ws,
    view: Value,
    seq: u64,
    messages: u64,
}

impl Feed {
    fn open(sw: &Switch, cookie: &str) -> Feed {
        let mut ws = connect(sw, &[("Cookie", cookie)]).expect("feed opens");
        let first = next_text(&mut ws, Duration::from_secs(5)).expect("a first message");
        let view: Value = serde_json::from_str(&first).expect("JSON");
        assert_eq!(view["type"], "snapshot", "the first message is a snapshot");
        assert_eq!(view["seq"], 0);
        Feed {
            ws,
            seq: 0,
            view,
            messages: 1,
        }
    }

    /// Reads until `pred` holds on the view (bounded); the time it took.
    fn until(&mut self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Duration {
        let start = Instant::now();
        while !pred(&self.view) {
            let left = within.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "live feed: no {what} within {within:?}: {:#}",
                self.view
            );
            let Some(text) = next_text(&mut self.ws, left) else {
                continue;
            };
            let msg: Value = serde_json::from_str(&text).expect("JSON");
            self.messages += 1;
            let seq = msg["seq"].as_u64().expect("seq");
            assert_eq!(seq, self.seq + 1, "seq goes up by one per message: {msg}");
            self.seq = seq;
            match msg["type"].as_str() {
                Some("snapshot") => self.view = msg,
                Some("update") => {
                    for (k, v) in msg.as_object().unwrap() {
                        if !matches!(k.as_str(), "type" | "seq" | "at") {
                            self.view[k] = v.clone();
                        }
                    }
                }
                other => panic!("unexpected message type {other:?}: {msg}"),
            }
        }
        start.elapsed()
    }
}

/// The next text frame, answering pings by the library; None when `within` passed.
fn next_text(ws: &mut Ws, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(c)) => panic!("feed closed: {c:?}"),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("feed read: {e}"),
        }
    }
    None
}

fn agent<'a>(view: &'a Value, ext: &str) -> &'a Value {
    view["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["extension"] == ext))
        .unwrap_or(&Value::Null)
}

#[test]
fn live_feed_shows_the_caller_waiting_then_the_agent_on_call_then_wrap_up() {
    let Some(py) = pjsua_python() else { return };
    let cfg = TestConfig::new(0);
    let sw = Switch::start(&cfg, SLOT);
    let cookie = sign_in(&sw);

    // Refusals: no credentials (401), a cookie from another origin (403).
    assert_eq!(connect(&sw, &[]).err(), Some(401));
    assert_eq!(
        connect(
            &sw,
            &[("Cookie", &cookie), ("Origin", "http://evil.example")]
        )
        .err(),
        Some(403)
    );
    // Same origin is fine.
    let origin = format!("http://{}", sw.http);
    drop(connect(&sw, &[("Cookie", &cookie), ("Origin", &origin)]).expect("same origin"));

    // A client that never reads, and one that follows.
    let stalled = connect(&sw, &[("Cookie", &cookie)]).expect("stalled client connects");
    let mut feed = Feed::open(&sw, &cookie);
    assert_eq!(agent(&feed.view, "1002")["name"], "Bob");
    assert!(feed.view["queues"]
        .as_array()
        .is_some_and(|q| q.iter().any(|q| q["name"] == "tech")));

    let t = timeline();
    let answer_after = 4.0;
    let talk = 5.0;
    let hangup = t.main + 1.0 + answer_after + talk;
    let bob = spawn_agent(
        &py,
        &sw,
        "1002",
        answer_after,
        None,
        None,
        hangup + 30.0,
        &["--linger", "8"],
    );
    bob.wait_event("registered", Duration::from_secs(15));
    feed.until("agent 1002 ready", Duration::from_secs(5), |v| {
        agent(v, "1002")["state"] == "ready"
    });
    let call = spawn_caller(
        &py,
        &sw.uri("100"),
        &CallerArgs {
            transport: "udp",
            dtmf: format!("1@{:.2}s,6@{:.2}s", t.language, t.main),
            dtmf_method: "rfc4733",
            hangup_after: hangup,
            max_duration: hangup + 20.0,
            from_user: Some("13812345678"),
            ..Default::default()
        },
    );
    // In the IVR first, then waiting in tech (Bob's phone rings for 4 s).
    feed.until("call in the IVR", Duration::from_secs(10), |v| {
        v["calls"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["state"] == "ivr"))
    });
    feed.until(
        "the caller waiting in tech",
        Duration::from_secs_f64(t.main + 10.0),
        |v| {
            v["waiting"].as_array().is_some_and(|w| {
                w.iter().any(|w| {
                    w["queue"] == "tech"
                        && w["number"] == "138****5678"
                        && w["position"] == 1
                        && w["language"] == "en"
                })
            })
        },
    );
    let took = feed.until("Bob on the call", Duration::from_secs(15), |v| {
        let a = agent(v, "1002");
        a["state"] == "on_call" && a["call"]["queue"] == "tech"
    });
    eprintln!("waiting -> on_call seen after {took:?}");
    assert!(
        feed.view["waiting"]
            .as_array()
            .is_some_and(|w| w.is_empty()),
        "{:#}",
        feed.view["waiting"]
    );
    feed.until("the call talking", Duration::from_secs(2), |v| {
        v["calls"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["state"] == "talking" && c["agent"] == "1002")
        })
    });
    feed.until(
        "Bob in wrap-up",
        Duration::from_secs_f64(talk + 15.0),
        |v| agent(v, "1002")["state"] == "wrap_up",
    );
    feed.until("today's figures", Duration::from_secs(5), |v| {
        v["totals"]["offered"] == 1 && v["totals"]["answered"] == 1
    });
    let summary = call.finish();
    assert_eq!(summary["confirmed"], true, "{summary}");
    eprintln!("feed: {} messages, last seq {}", feed.messages, feed.seq);

    // The stalled client held nobody back; prometheus has the queue's figures.
    drop(stalled);
    let (_, metrics) = sw.http_get("/metrics");
    assert!(
        metrics.contains("ccswitch_queue_agents{queue=\"tech\",state=\"logged_in\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ccswitch_queue_frt_seconds_bucket{queue=\"tech\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("ccswitch_queue_waiting{queue=\"tech\"}"),
        "{metrics}"
    );
}

#[test]
fn live_snapshot_answers_a_bearer_token_and_refuses_none() {
    let cfg = TestConfig::new(0);
    let out = Command::new(bin())
        .args([
            "user",
            "token",
            "wall",
            "--role",
            "viewer",
            "--database",
            &cfg.db_url,
        ])
        .output()
        .expect("ccswitch user token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let sw = Switch::start(&cfg, SLOT);
    let bearer = format!("Bearer {token}");
    let (status, head, body) = http(
        sw.http,
        "GET",
        "/api/v1/live/snapshot",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(status, 200, "{head}\n{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["type"], "snapshot");
    assert_eq!(v["targets"]["service_level_pct"], 80.0);
    assert!(v["agents"].as_array().is_some_and(|a| a.len() >= 3), "{v}");
    let (status, _, body) = http(sw.http, "GET", "/api/v1/live/snapshot", &[], "");
    assert_eq!(status, 401, "{body}");
    // The WebSocket takes the token too.
    let mut ws = connect(&sw, &[("Authorization", &bearer)]).expect("token opens the feed");
    let first = next_text(&mut ws, Duration::from_secs(5)).expect("snapshot");
    assert!(first.starts_with("{\"type\":\"snapshot\""), "{first}");
}
