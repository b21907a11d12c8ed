//! `POST /api/v1/agents/{extension}/state` when the engine cannot take the command: its
//! queue full (503 with `retry`, nothing audited) or closed (503). Real HTTP on 127.0.0.1
//! and a real SQLite store; the engine's command channel is held by the test.

use ccswitch::api::rest::{self, RestState};
use ccswitch::api::{auth_routes::AuthState, serve_router};
use ccswitch::auth::{token, Role};
use ccswitch::clock::Clock;
use ccswitch::engine::{AgentChange, Command, Millis};
use ccswitch::store::Store;
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

struct Server {
    addr: SocketAddr,
    store: Store,
    token: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(commands: mpsc::Sender<Command>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite:{}", dir.path().join("api.db").display()))
        .await
        .unwrap();
    let config =
        ccswitch::config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
            .expect("the shipped config loads");
    let tok = token::new_token();
    store
        .create_api_token("ops", Role::Supervisor, &token::token_hash(&tok), Millis(0))
        .await
        .unwrap();
    let clock = Clock::new();
    let auth = AuthState::new(config.users.clone(), store.clone(), clock);
    let state = RestState::new(&config, auth, store.clone(), commands, clock);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_router(listener, rest::router(state), async {
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

/// POST a state change with the bearer token: (status, body).
async fn post_state(srv: &Server, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let req = format!(
        "POST /api/v1/agents/1001/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        srv.token,
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("an answer")
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn audited(store: &Store) -> usize {
    store
        .audit_entries(100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "agent.set_state")
        .count()
}

#[tokio::test]
async fn commands_reach_the_channel_and_a_full_or_closed_one_is_503() {
    let (tx, mut rx) = mpsc::channel(1);
    let srv = start(tx).await;
    let (status, body) = post_state(&srv, r#"{"state":"not_ready","reason":"lunch"}"#).await;
    assert_eq!((status, body), (202, serde_json::json!({"accepted": true})));
    match rx.try_recv().expect("the command") {
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
    assert_eq!(audited(&srv.store).await, 1);

    // Full: the one slot is taken and nobody reads.
    let (status, _) = post_state(&srv, r#"{"state":"ready"}"#).await;
    assert_eq!(status, 202);
    let (status, body) = post_state(&srv, r#"{"state":"logged_out"}"#).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "https://ccswitch.dev/problems/unavailable");
    assert_eq!(body["retry"], true);
    assert_eq!(
        audited(&srv.store).await,
        2,
        "a command not sent is not audited"
    );

    // Closed: the engine is gone.
    drop(rx);
    let (status, body) = post_state(&srv, r#"{"state":"ready"}"#).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(audited(&srv.store).await, 2);
}
