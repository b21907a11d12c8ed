//! The agent desk's API (issue 10 item 3) over real HTTP on 127.0.0.1 with a real SQLite
//! store and the shipped config: an agent signs in with extension + SIP password (checked
//! against agents.toml's HA1), acts on their own extension only (403 on another's), reads the
//! screen pop and contact history of a call offered to them (number masked, language, IVR
//! path, wait, the caller's contacts in the last 7 days with outcome, disposition and survey
//! score), sets a disposition (and a supervisor does too), and is refused everything a
//! supervisor or viewer may do. The engine's command channel is held by the test.

use ccswitch::api::rest::{self, RestState};
use ccswitch::api::{auth_routes, serve_router};
use ccswitch::auth::{token, Role};
use ccswitch::clock::Clock;
use ccswitch::engine::record::{EndedBy, IvrOutcome};
use ccswitch::engine::{AgentChange, Command, Millis, Record};
use ccswitch::store::Store;
use serde_json::{json, Value};
use sqlx::Connection;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const CALLER: &str = "+8613812345678";
const DAY: u64 = 86_400_000;

struct Server {
    addr: SocketAddr,
    store: Store,
    token: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn now_ms() -> u64 {
    Clock::new().now().as_u64()
}

/// A call of CALLER (or `caller`): IVR (language zh, main menu 6), queued in `queue`,
/// offered to `agent`, answered if `answered`, ended if `ended`.
fn call(
    id: &str,
    caller: &str,
    t: u64,
    queue: &str,
    agent: &str,
    answered: bool,
    ended: bool,
) -> Vec<Record> {
    let c = || id.to_string();
    let mut r = vec![
        Record::CallStarted {
            call_id: c(),
            sip_call_id: format!("{id}@10.0.0.1"),
            caller: caller.into(),
            dialled: "800".into(),
            transport: "udp".into(),
            arrived_at: Millis(t),
            ring_cycle_ms: 6_000,
        },
        Record::CallAnswered {
            call_id: c(),
            answered_at: Millis(t + 1_000),
            within_three_rings: true,
        },
        Record::IvrStep {
            call_id: c(),
            seq: 0,
            at: Millis(t + 1_010),
            node: "language".into(),
            kind: "language".into(),
            digits: Some("2".into()),
            detail: Some("lang=zh".into()),
        },
        Record::IvrStep {
            call_id: c(),
            seq: 1,
            at: Millis(t + 4_000),
            node: "main".into(),
            kind: "menu".into(),
            digits: Some("6".into()),
            detail: None,
        },
        Record::IvrLeft {
            call_id: c(),
            at: Millis(t + 5_000),
            outcome: IvrOutcome::Queued,
        },
        Record::CallQueued {
            call_id: c(),
            at: Millis(t + 5_000),
            queue: queue.into(),
            priority: 0,
        },
        Record::OfferStarted {
            call_id: c(),
            attempt: 1,
            agent: agent.into(),
            at: Millis(t + 12_000),
        },
    ];
    if answered {
        r.push(Record::OfferEnded {
            call_id: c(),
            attempt: 1,
            at: Millis(t + 15_000),
            outcome: "answered".into(),
        });
        r.push(Record::AgentAnswered {
            call_id: c(),
            agent: agent.into(),
            at: Millis(t + 15_000),
        });
    }
    if ended {
        r.push(Record::CallEnded {
            call_id: c(),
            ended_at: Millis(t + 60_000),
            ended_by: EndedBy::Caller,
            reason: "bye".into(),
            final_status: 200,
        });
    }
    r
}

async fn start(commands: mpsc::Sender<Command>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("api.db").display());
    let store = Store::open(&url).await.unwrap();
    let now = now_ms();
    let mut records = call("c-now", CALLER, now - 20_000, "tech", "1001", true, false);
    let mut before = call(
        "c-before",
        CALLER,
        now - 2 * DAY,
        "tech",
        "1002",
        true,
        true,
    );
    before.push(Record::DispositionSet {
        call_id: "c-before".into(),
        agent: "1002".into(),
        at: Millis(now - 2 * DAY + 70_000),
        code: 1,
        name: "resolved".into(),
        resolved: true,
        queue: Some("tech".into()),
        note: Some("reset the router".into()),
    });
    before.push(Record::SurveyScheduled {
        call_id: "c-before".into(),
        survey_id: 5,
        at: Millis(now - 2 * DAY + 60_000),
        number: CALLER.into(),
        number_hash: "ab".repeat(32),
        language: "zh".into(),
        text: "rate us".into(),
        send_at: Millis(now - 2 * DAY + 120_000),
        deferred: false,
        reply_by: Millis(now),
        agent: Some("1002".into()),
        queue: Some("tech".into()),
        complaint: false,
    });
    records.extend(before);
    records.extend(call(
        "c-old",
        CALLER,
        now - 10 * DAY,
        "tech",
        "1001",
        true,
        true,
    ));
    records.extend(call(
        "c-other",
        "+8613900000000",
        now - 30_000,
        "tech",
        "1002",
        false,
        false,
    ));
    store.write_batch(&records).await.expect("seed calls");
    // The caller answered the earlier call's survey with 4.
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE surveys SET state = 'answered', csat = 4 WHERE call_id = 'c-before'")
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;

    let config =
        ccswitch::config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
            .expect("the shipped config loads");
    let tok = token::new_token();
    store
        .create_api_token("ops", Role::Supervisor, &token::token_hash(&tok), Millis(0))
        .await
        .unwrap();
    let clock = Clock::new();
    let auth = auth_routes::AuthState::with_agents(
        config.users.clone(),
        config.agents.clone(),
        store.clone(),
        clock,
    )
    .with_ice_servers(vec![auth_routes::IceServerInfo {
        urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
        username: "desk".into(),
        credential: "s3cret".into(),
    }]);
    let state = RestState::new(&config, auth.clone(), store.clone(), commands, clock);
    let app = rest::router(state).merge(auth_routes::router(auth));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_router(listener, app, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        store,
        token: tok,
        _dir: dir,
        _stop: stop,
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("an answer")
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// An agent-desk session: cookie and CSRF token.
struct Agent {
    cookie: String,
    csrf: String,
}

impl Agent {
    async fn call(&self, addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Resp {
        let mut h = vec![("Cookie", self.cookie.as_str())];
        if method != "GET" {
            h.push(("X-CSRF-Token", self.csrf.as_str()));
        }
        request(addr, method, path, &h, body).await
    }
}

async fn agent_sign_in(addr: SocketAddr, ext: &str, password: &str) -> Resp {
    let body = json!({"extension": ext, "password": password}).to_string();
    request(addr, "POST", "/api/v1/session/agent", &[], Some(&body)).await
}

fn problem_type(r: &Resp) -> String {
    r.body["type"]
        .as_str()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn agent_desk_api_own_extension_screen_pop_history_and_dispositions() {
    let (tx, mut rx) = mpsc::channel(16);
    let srv = start(tx).await;
    let addr = srv.addr;

    // Sign-in: a wrong password, a users.toml user's password: 401 (more failures would be
    // throttled; unknown extensions are in auth_routes' unit tests).
    for (ext, pw) in [("1001", "demo1002"), ("admin", "ccswitch-demo")] {
        let r = agent_sign_in(addr, ext, pw).await;
        assert_eq!(r.status, 401, "{ext}/{pw}: {}", r.body);
        assert_eq!(problem_type(&r), "sign-in-failed");
    }
    let r = agent_sign_in(addr, "1001", "demo1001").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["role"], "agent");
    assert_eq!(r.body["user"], "agent:1001");
    assert_eq!(r.body["extension"], "1001");
    assert_eq!(
        r.body["permissions"],
        json!(["view_live", "agent_desk"]),
        "{}",
        r.body
    );
    // The desk's browser phone gets the STUN/TURN servers (an agent behind NAT needs them)...
    assert_eq!(
        r.body["ice_servers"],
        json!([{"urls": ["turn:turn.example.com:3478?transport=udp"], "username": "desk", "credential": "s3cret"}])
    );
    // ...an API token, which has no phone, does not.
    let bearer = format!("Bearer {}", srv.token);
    let who = request(
        addr,
        "GET",
        "/api/v1/session",
        &[("Authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(who.status, 200, "{}", who.body);
    assert!(who.body.get("ice_servers").is_none(), "{}", who.body);
    let cookie = r
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("ccswitch_session="))
        .map(|(_, v)| v.split(';').next().unwrap().to_string())
        .expect("session cookie");
    let me = Agent {
        cookie,
        csrf: r.body["csrf_token"].as_str().unwrap().to_string(),
    };
    let who = me.call(addr, "GET", "/api/v1/session", None).await;
    assert_eq!(
        (who.status, &who.body["role"], &who.body["extension"]),
        (200, &json!("agent"), &json!("1001"))
    );

    // The desk: own extension yes, another's no.
    let desk = me.call(addr, "GET", "/api/v1/agents/1001/desk", None).await;
    assert_eq!(desk.status, 200, "{}", desk.body);
    assert_eq!(desk.body["name"], "Alice");
    let queues: Vec<&str> = desk.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(queues, ["tech", "after_sales"]);
    assert!(desk.body["queues"][0]["ring_timeout_s"].as_f64().unwrap() > 0.0);
    let codes: Vec<&str> = desk.body["queues"][0]["dispositions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"resolved") && codes.contains(&"follow_up"),
        "{codes:?}"
    );
    assert!(desk.body["transfer_agents"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["extension"] != "1001"));
    assert!(!desk.body["transfer_queues"].as_array().unwrap().is_empty());
    assert_eq!(desk.body["break_reasons"][0], "break");
    let r = me.call(addr, "GET", "/api/v1/agents/1002/desk", None).await;
    assert_eq!((r.status, problem_type(&r)), (403, "forbidden".into()));

    // State: own extension reaches the engine; another's is 403; no CSRF is 403.
    let r = me
        .call(
            addr,
            "POST",
            "/api/v1/agents/1001/state",
            Some(r#"{"state":"not_ready","reason":"lunch"}"#),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    match rx.try_recv().expect("a command") {
        Command::Agent { agent, change } => {
            assert_eq!(agent, "1001");
            assert_eq!(
                change,
                AgentChange::NotReady {
                    reason: "lunch".into()
                }
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let r = me
        .call(
            addr,
            "POST",
            "/api/v1/agents/1001/state",
            Some(r#"{"state":"logged_out","reason":"end_of_shift"}"#),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(matches!(
        rx.try_recv(),
        Ok(Command::Agent {
            change: AgentChange::Logout,
            ..
        })
    ));
    let r = me
        .call(
            addr,
            "POST",
            "/api/v1/agents/1002/state",
            Some(r#"{"state":"ready"}"#),
        )
        .await;
    assert_eq!((r.status, problem_type(&r)), (403, "forbidden".into()));
    let r = request(
        addr,
        "POST",
        "/api/v1/agents/1001/state",
        &[("Cookie", me.cookie.as_str())],
        Some(r#"{"state":"ready"}"#),
    )
    .await;
    assert_eq!(r.status, 403, "no CSRF token: {}", r.body);
    assert!(rx.try_recv().is_err(), "nothing refused reached the engine");

    // Screen pop and history of the call offered to (and answered by) the agent.
    let pop = me
        .call(addr, "GET", "/api/v1/calls/c-now/history", None)
        .await;
    assert_eq!(pop.status, 200, "{}", pop.body);
    let c = &pop.body["call"];
    assert!(c["number"].as_str().unwrap().ends_with("5678"), "{c}");
    assert!(!pop.body.to_string().contains("13812345678"), "masked");
    assert_eq!(c["language"], "zh");
    assert_eq!(c["queue"], "tech");
    assert_eq!(c["ivr_path"].as_array().unwrap().len(), 2);
    assert_eq!(c["ivr_path"][1]["digits"], "6");
    assert_eq!(c["waited_ms"], 10_000, "queued at +5 s, answered at +15 s");
    assert_eq!(c["agent"], "1001");
    assert_eq!(pop.body["window_days"], 7);
    let contacts = pop.body["contacts"].as_array().unwrap();
    assert_eq!(
        contacts.len(),
        1,
        "c-before only (c-old is 10 days old): {contacts:?}"
    );
    assert_eq!(contacts[0]["call_id"], "c-before");
    assert_eq!(contacts[0]["outcome"], "answered");
    assert_eq!(contacts[0]["agent"], "1002");
    assert_eq!(contacts[0]["disposition"], "resolved");
    assert_eq!(contacts[0]["disposition_note"], "reset the router");
    assert_eq!(contacts[0]["csat"], 4);
    // A call never offered to this agent: 403; an unknown call: 404.
    let r = me
        .call(addr, "GET", "/api/v1/calls/c-other/history", None)
        .await;
    assert_eq!((r.status, problem_type(&r)), (403, "forbidden".into()));
    let r = me
        .call(addr, "GET", "/api/v1/calls/nope/history", None)
        .await;
    assert_eq!(r.status, 404);

    // Disposition: the agent on their call; an unknown code 422; another's call 403.
    let r = me
        .call(
            addr,
            "POST",
            "/api/v1/calls/c-now/disposition",
            Some(r#"{"code":"follow_up","note":"call back Monday"}"#),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["agent"], "1001");
    match rx.try_recv().expect("the disposition command") {
        Command::Disposition {
            agent,
            call_id,
            code,
            note,
        } => {
            assert_eq!(agent, "1001");
            assert_eq!(call_id.as_deref(), Some("c-now"));
            assert_eq!(code, "follow_up");
            assert_eq!(note.as_deref(), Some("call back Monday"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let r = me
        .call(
            addr,
            "POST",
            "/api/v1/calls/c-now/disposition",
            Some(r#"{"code":"made_up"}"#),
        )
        .await;
    assert_eq!((r.status, problem_type(&r)), (422, "invalid-body".into()));
    let r = me
        .call(
            addr,
            "POST",
            "/api/v1/calls/c-other/disposition",
            Some(r#"{"code":"resolved"}"#),
        )
        .await;
    assert_eq!((r.status, problem_type(&r)), (403, "forbidden".into()));
    // The number works as a code too.
    let r = me
        .call(
            addr,
            "POST",
            "/api/v1/calls/c-now/disposition",
            Some(r#"{"code":"1"}"#),
        )
        .await;
    assert_eq!((r.status, &r.body["code"]), (202, &json!("resolved")));
    let _ = rx.try_recv();

    // Everything else is closed to an agent.
    for (m, p) in [
        ("GET", "/api/v1/calls"),
        ("GET", "/api/v1/calls/c-now"),
        ("GET", "/api/v1/reports/queues"),
        ("GET", "/api/v1/audit"),
        ("POST", "/api/v1/calls/c-now/unmask"),
        ("GET", "/api/v1/calls/c-now/recording"),
    ] {
        let r = me.call(addr, m, p, None).await;
        assert_eq!(r.status, 403, "{m} {p} as an agent: {}", r.body);
    }

    // A supervisor (API token) sets a disposition for the answering agent; a call nobody
    // answered is 409.
    let bearer = format!("Bearer {}", srv.token);
    let auth = [("Authorization", bearer.as_str())];
    let r = request(
        addr,
        "POST",
        "/api/v1/calls/c-now/disposition",
        &auth,
        Some(r#"{"code":"complaint","note":"escalated by sue"}"#),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(matches!(
        rx.try_recv(),
        Ok(Command::Disposition { agent, .. }) if agent == "1001"
    ));
    let r = request(
        addr,
        "POST",
        "/api/v1/calls/c-other/disposition",
        &auth,
        Some(r#"{"code":"resolved"}"#),
    )
    .await;
    assert_eq!((r.status, problem_type(&r)), (409, "not-answered".into()));
    let r = request(addr, "GET", "/api/v1/calls/c-other/history", &auth, None).await;
    assert_eq!(r.status, 200, "a supervisor reads any call's history");
    let r = request(addr, "GET", "/api/v1/agents/1002/desk", &auth, None).await;
    assert_eq!(r.status, 200);
    let audit = srv.store.audit_entries(100).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "agent.set_state"
        && e.user == "agent:1001"
        && e.detail.as_deref() == Some("logged_out:end_of_shift")));
    assert!(audit
        .iter()
        .any(|e| e.action == "call.disposition" && e.user == "token:ops"));
    assert!(audit
        .iter()
        .any(|e| e.action == "session.sign_in" && e.user == "agent:1001"));
}

/// An agent's session is stored like a user's and comes back after a restart while the
/// extension is still in agents.toml (and not when it is gone).
#[tokio::test]
async fn agent_sessions_survive_a_restart_while_the_agent_exists() {
    let (tx, _rx) = mpsc::channel(4);
    let srv = start(tx).await;
    let r = agent_sign_in(srv.addr, "1002", "demo1002").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let config =
        ccswitch::config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
            .expect("the shipped config loads");
    let with_agents = auth_routes::AuthState::with_agents(
        config.users.clone(),
        config.agents.clone(),
        srv.store.clone(),
        Clock::new(),
    );
    assert_eq!(with_agents.restore().await.unwrap(), 1);
    // Without the agent (agents.toml emptied), the session is dropped from the store.
    let without =
        auth_routes::AuthState::new(config.users.clone(), srv.store.clone(), Clock::new());
    assert_eq!(without.restore().await.unwrap(), 0);
    assert_eq!(with_agents.restore().await.unwrap(), 0, "the row is gone");
}

#[tokio::test]
async fn agent_sign_in_is_throttled_like_the_user_sign_in() {
    let (tx, _rx) = mpsc::channel(4);
    let srv = start(tx).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(agent_sign_in(srv.addr, "1001", "guess").await.status);
    }
    assert!(
        statuses.contains(&429),
        "failed agent sign-ins slow the source down: {statuses:?}"
    );
}
