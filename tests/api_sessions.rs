//! Browser sessions survive a restart (issue 9: the wallboard reconnects by itself): sign in,
//! stop the server, start a new `AuthState` over the same store and `restore` it; the cookie
//! and CSRF token still work, a signed-out session does not come back, a user removed from
//! users.toml is refused. On SQLite (a file) and PostgreSQL.
//!
//! PostgreSQL: `CCSWITCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`); each
//! test creates `ccswitch_test_<random>` and drops it. An unreachable server fails the tests
//! unless `CCSWITCH_TEST_SKIP_POSTGRES=1`.

use axum::routing::get;
use axum::Router;
use ccswitch::api::auth_routes::{self, perm, AuthState, Authorized};
use ccswitch::auth::session::session_hash;
use ccswitch::auth::{password, Role, SessionConfig, ThrottleConfig};
use ccswitch::clock::Clock;
use ccswitch::config::users::{User, UsersConfig};
use ccswitch::store::Store;
use sqlx::Connection;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ANN_PW: &str = "ann-supervises";
const VAL_PW: &str = "val-only-views";

// ---------- databases ----------

/// Drops its PostgreSQL database when it goes, even when a test panics.
struct PgDatabase {
    admin: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside async (maybe while panicking): a private runtime on a thread.
        let res = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
            .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .join();
        if !matches!(res, Ok(Ok(()))) {
            eprintln!(
                "warning: could not drop test database {}: {res:?}",
                self.name
            );
        }
    }
}

/// Where the store lives: opened again for each "restart".
struct Db {
    url: String,
    _pg: Option<PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    async fn open(&self) -> Store {
        Store::open(&self.url).await.expect("open store")
    }
}

fn sqlite_db() -> Option<Db> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("sessions.db").display());
    Some(Db {
        url,
        _pg: None,
        _dir: Some(dir),
    })
}

/// `None` only when CCSWITCH_TEST_SKIP_POSTGRES=1; an unreachable server is a failure.
async fn pg_db() -> Option<Db> {
    if std::env::var("CCSWITCH_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        eprintln!("CCSWITCH_TEST_SKIP_POSTGRES=1: skipping the PostgreSQL half of this test");
        return None;
    }
    let admin = std::env::var("CCSWITCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let name = format!("ccswitch_test_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} unreachable ({e}); set CCSWITCH_TEST_SKIP_POSTGRES=1 to skip")
        });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("CCSWITCH_PG_URL {admin} names no database"),
    };
    Some(Db {
        url,
        _pg: Some(PgDatabase { admin, name }),
        _dir: None,
    })
}

// ---------- servers ----------

/// Password hashes are slow to make: once per test binary.
fn user(name: &str, role: Role, pw: &'static str) -> User {
    static HASHES: OnceLock<(String, String)> = OnceLock::new();
    let (ann, val) = HASHES.get_or_init(|| {
        (
            password::hash_password(ANN_PW).unwrap(),
            password::hash_password(VAL_PW).unwrap(),
        )
    });
    User {
        name: name.into(),
        role,
        password_hash: if pw == ANN_PW { ann } else { val }.clone(),
    }
}

fn users(with_val: bool) -> UsersConfig {
    let mut users = vec![user("ann", Role::Supervisor, ANN_PW)];
    if with_val {
        users.push(user("val", Role::Viewer, VAL_PW));
    }
    UsersConfig {
        users,
        sip_accounts: Vec::new(),
        sessions: SessionConfig::default(),
        throttle: ThrottleConfig::default(),
    }
}

struct Server {
    addr: SocketAddr,
    store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Stops serving and closes the store, as a switch that exits does.
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), done).await;
        }
        self.store.close().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A switch's API as after a (re)start: a new `AuthState` over `store`, restored; the
/// session routes plus a probe (GET needs view_live, POST agent_commands).
async fn start(store: Store, users: UsersConfig) -> Server {
    let auth = AuthState::new(Arc::new(users), store.clone(), Clock::new());
    auth.restore().await.expect("restore sessions");
    let probe = Router::new()
        .route(
            "/api/v1/probe",
            get(|_: Authorized<perm::ViewLive>| async { "seen" }).post(
                |a: Authorized<perm::AgentCommands>| async move { format!("done by {}", a.0.name) },
            ),
        )
        .with_state(auth.clone());
    let app = auth_routes::router(auth).merge(probe);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
        .expect("serve");
    });
    Server {
        addr,
        store,
        stop: Some(stop),
        done: Some(done),
    }
}

// ---------- HTTP ----------

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (closed after the answer).
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
    tokio::time::timeout(std::time::Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("answer within 30 s")
        .expect("read");
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a full response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn sign_in(addr: SocketAddr, user: &str, pw: &str) -> Resp {
    let body = serde_json::json!({"user": user, "password": pw}).to_string();
    request(
        addr,
        "POST",
        "/api/v1/session",
        &[("Content-Type", "application/json")],
        Some(&body),
    )
    .await
}

/// A signed-in browser: its Cookie header value and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
}

impl Browser {
    async fn sign_in(addr: SocketAddr, user: &str, pw: &str) -> Browser {
        let r = sign_in(addr, user, pw).await;
        assert_eq!(r.status, 200, "{r:?}");
        let set = r.header("set-cookie").expect("Set-Cookie");
        Browser {
            cookie: set.split(';').next().unwrap().to_string(),
            csrf: r.json()["csrf_token"].as_str().unwrap().to_string(),
        }
    }
    fn id(&self) -> &str {
        self.cookie.trim_start_matches("ccswitch_session=")
    }
    async fn who(&self, addr: SocketAddr) -> Resp {
        request(
            addr,
            "GET",
            "/api/v1/session",
            &[("Cookie", &self.cookie)],
            None,
        )
        .await
    }
    /// A state-changing request: needs the cookie and the CSRF token.
    async fn post_probe(&self, addr: SocketAddr) -> Resp {
        request(
            addr,
            "POST",
            "/api/v1/probe",
            &[("Cookie", &self.cookie), ("X-CSRF-Token", &self.csrf)],
            None,
        )
        .await
    }
    async fn sign_out(&self, addr: SocketAddr) -> Resp {
        request(
            addr,
            "DELETE",
            "/api/v1/session",
            &[("Cookie", &self.cookie), ("X-CSRF-Token", &self.csrf)],
            None,
        )
        .await
    }
}

// ---------- scenarios ----------

/// Sign in, restart, the same cookie and CSRF token work; only the hash is stored.
async fn a_session_survives_a_restart(db: Db) {
    let srv = start(db.open().await, users(true)).await;
    let ann = Browser::sign_in(srv.addr, "ann", ANN_PW).await;
    let before = ann.who(srv.addr).await;
    assert_eq!(before.status, 200, "{before:?}");

    let rows = srv
        .store
        .unexpired_web_sessions(ccswitch::engine::Millis(0))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].session_hash, session_hash(ann.id()));
    assert_ne!(
        rows[0].session_hash,
        ann.id(),
        "the cookie value is never stored"
    );
    assert_eq!(rows[0].user, "ann");
    assert_eq!(rows[0].csrf_token, ann.csrf);
    srv.stop().await;

    let srv = start(db.open().await, users(true)).await;
    let after = ann.who(srv.addr).await;
    assert_eq!(after.status, 200, "{after:?}");
    let (b, a) = (before.json(), after.json());
    assert_eq!(a["user"], "ann");
    assert_eq!(a["role"], "supervisor");
    assert_eq!(a["csrf_token"], ann.csrf.as_str());
    assert_eq!(
        a["expires_at"], b["expires_at"],
        "the lifetime is not renewed"
    );
    let post = ann.post_probe(srv.addr).await;
    assert_eq!((post.status, post.body.as_str()), (200, "done by ann"));
    let forged = request(
        srv.addr,
        "POST",
        "/api/v1/probe",
        &[("Cookie", &ann.cookie)],
        None,
    )
    .await;
    assert_eq!(forged.status, 403, "CSRF still enforced: {forged:?}");
    srv.stop().await;
}

/// A signed-out session does not come back after a restart; another one does.
async fn a_signed_out_session_stays_gone(db: Db) {
    let srv = start(db.open().await, users(true)).await;
    let ann = Browser::sign_in(srv.addr, "ann", ANN_PW).await;
    let val = Browser::sign_in(srv.addr, "val", VAL_PW).await;
    let out = ann.sign_out(srv.addr).await;
    assert_eq!(out.status, 204, "{out:?}");
    assert_eq!(ann.who(srv.addr).await.status, 401);
    srv.stop().await;

    let srv = start(db.open().await, users(true)).await;
    assert_eq!(ann.who(srv.addr).await.status, 401, "signed out stays out");
    assert_eq!(ann.post_probe(srv.addr).await.status, 401);
    let v = val.who(srv.addr).await;
    assert_eq!((v.status, v.json()["user"].clone()), (200, "val".into()));
    let rows = srv
        .store
        .unexpired_web_sessions(ccswitch::engine::Millis(0))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].user, "val");
    srv.stop().await;
}

/// A user removed from users.toml is refused after a restart (and the row is deleted); the
/// role comes from users.toml, not from the row.
async fn a_removed_user_is_refused_after_a_restart(db: Db) {
    let srv = start(db.open().await, users(true)).await;
    let ann = Browser::sign_in(srv.addr, "ann", ANN_PW).await;
    let val = Browser::sign_in(srv.addr, "val", VAL_PW).await;
    srv.stop().await;

    let mut demoted = users(false);
    demoted.users[0].role = Role::Viewer;
    let srv = start(db.open().await, demoted).await;
    let gone = val.who(srv.addr).await;
    assert_eq!(gone.status, 401, "{gone:?}");
    let a = ann.who(srv.addr).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        a.json()["role"],
        "viewer",
        "the role is read from users.toml"
    );
    assert_eq!(
        ann.post_probe(srv.addr).await.status,
        403,
        "a viewer may not send agent commands"
    );
    let rows = srv
        .store
        .unexpired_web_sessions(ccswitch::engine::Millis(0))
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.user.as_str()).collect::<Vec<_>>(),
        ["ann"]
    );
    srv.stop().await;

    // Even with val back in users.toml, the dropped session is gone for good.
    let srv = start(db.open().await, users(true)).await;
    assert_eq!(val.who(srv.addr).await.status, 401);
    srv.stop().await;
}

/// No store, no session: sign-in answers 503 and sets no cookie.
async fn sign_in_without_a_store_is_503(db: Db) {
    let srv = start(db.open().await, users(true)).await;
    srv.store.close().await;
    let r = sign_in(srv.addr, "ann", ANN_PW).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        r.json()["type"],
        "https://ccswitch.dev/problems/unavailable"
    );
    assert!(r.header("set-cookie").is_none(), "{r:?}");
    srv.stop().await;
}

macro_rules! both_backends {
    ($scenario:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $scenario(sqlite_db().unwrap()).await;
        }
        #[tokio::test]
        async fn $postgres() {
            if let Some(db) = pg_db().await {
                $scenario(db).await;
            }
        }
    };
}

both_backends!(
    a_session_survives_a_restart,
    a_session_survives_a_restart_sqlite,
    a_session_survives_a_restart_postgres
);
both_backends!(
    a_signed_out_session_stays_gone,
    a_signed_out_session_stays_gone_sqlite,
    a_signed_out_session_stays_gone_postgres
);
both_backends!(
    a_removed_user_is_refused_after_a_restart,
    a_removed_user_is_refused_after_a_restart_sqlite,
    a_removed_user_is_refused_after_a_restart_postgres
);
both_backends!(
    sign_in_without_a_store_is_503,
    sign_in_without_a_store_is_503_sqlite,
    sign_in_without_a_store_is_503_postgres
);
