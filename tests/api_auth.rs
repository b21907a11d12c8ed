//! The supervisor API's authentication over real HTTP on 127.0.0.1 with a temp SQLite store:
//! sign-in, the cookie's flags, CSRF, the sign-in throttle, roles, API tokens and their
//! revocation, and RFC 9457 problem documents.

use axum::routing::get;
use axum::Router;
use ccswitch::api::auth_routes::{self, perm, AuthState, Authorized};
use ccswitch::auth::{password, token, Role, SessionConfig, ThrottleConfig};
use ccswitch::clock::Clock;
use ccswitch::config::users::{User, UsersConfig};
use ccswitch::store::Store;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ANN_PW: &str = "ann-supervises";
const VAL_PW: &str = "val-only-views";

struct Server {
    addr: SocketAddr,
    store: Store,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The session routes plus two probe routes: GET needs view_live, POST agent_commands.
async fn start(throttle: ThrottleConfig) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&format!("sqlite:{}", dir.path().join("api.db").display()))
        .await
        .expect("store");
    let users = UsersConfig {
        users: vec![
            User {
                name: "ann".into(),
                role: Role::Supervisor,
                password_hash: password::hash_password(ANN_PW).unwrap(),
            },
            User {
                name: "val".into(),
                role: Role::Viewer,
                password_hash: password::hash_password(VAL_PW).unwrap(),
            },
        ],
        sip_accounts: Vec::new(),
        sessions: SessionConfig::default(),
        throttle,
    };
    let auth = AuthState::new(Arc::new(users), store.clone(), Clock::new());
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
    tokio::spawn(async move {
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
        _dir: dir,
        stop: Some(stop),
    }
}

/// Generous throttle: tests that do not test it never meet it.
fn lenient() -> ThrottleConfig {
    ThrottleConfig {
        free_failures: 100,
        block_after: 200,
        ..ThrottleConfig::default()
    }
}

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
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    /// Asserts an RFC 9457 document with this status and type slug.
    fn assert_problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let v = self.json();
        assert_eq!(
            v["type"],
            format!("https://ccswitch.dev/problems/{slug}"),
            "{v}"
        );
        assert_eq!(v["status"], status, "{v}");
        assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
        v
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

const JSON: (&str, &str) = ("Content-Type", "application/json");

async fn sign_in(addr: SocketAddr, user: &str, pw: &str) -> Resp {
    let body = serde_json::json!({"user": user, "password": pw}).to_string();
    request(addr, "POST", "/api/v1/session", &[JSON], Some(&body)).await
}

/// Signs in and returns (Cookie header value, CSRF token).
async fn session(addr: SocketAddr, user: &str, pw: &str) -> (String, String) {
    let r = sign_in(addr, user, pw).await;
    assert_eq!(r.status, 200, "{r:?}");
    let set = r.header("set-cookie").expect("Set-Cookie");
    let cookie = set.split(';').next().unwrap().to_string();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_string();
    (cookie, csrf)
}

#[tokio::test]
async fn sign_in_sets_a_strict_httponly_cookie_and_who_am_i_answers() {
    let srv = start(lenient()).await;
    let r = sign_in(srv.addr, "ann", ANN_PW).await;
    assert_eq!(r.status, 200, "{r:?}");
    let set = r.header("set-cookie").expect("Set-Cookie");
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    assert!(
        attrs[0].starts_with("ccswitch_session=") && attrs[0].len() == 17 + 64,
        "{set}"
    );
    for a in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(attrs.contains(&a), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    assert_eq!(v["user"], "ann");
    assert_eq!(v["role"], "supervisor");
    assert_eq!(v["via"], "session");
    assert_eq!(v["csrf_token"].as_str().map(str::len), Some(64));
    assert!(v["permissions"]
        .as_array()
        .unwrap()
        .contains(&Value::from("recordings")));
    assert!(!v["permissions"]
        .as_array()
        .unwrap()
        .contains(&Value::from("admin")));

    let cookie = attrs[0];
    let me = request(
        srv.addr,
        "GET",
        "/api/v1/session",
        &[("Cookie", cookie)],
        None,
    )
    .await;
    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(me.json()["user"], "ann");
    assert_eq!(me.json()["csrf_token"], v["csrf_token"]);

    // No credentials, a made-up cookie: 401 problems naming the scheme.
    let anon = request(srv.addr, "GET", "/api/v1/session", &[], None).await;
    anon.assert_problem(401, "unauthorized");
    assert_eq!(
        anon.header("www-authenticate"),
        Some("Bearer realm=\"ccswitch\"")
    );
    let fake = format!("ccswitch_session={}", "0".repeat(64));
    request(srv.addr, "GET", "/api/v1/probe", &[("Cookie", &fake)], None)
        .await
        .assert_problem(401, "unauthorized");

    let audit = srv.store.audit_entries(10).await.unwrap();
    assert_eq!(audit[0].action, "session.sign_in");
    assert_eq!(audit[0].user, "ann");
    assert_eq!(audit[0].source, "127.0.0.1");
}

#[tokio::test]
async fn wrong_passwords_are_401_then_the_address_is_throttled_with_429() {
    let srv = start(ThrottleConfig {
        free_failures: 3,
        // Long enough that the next attempt always comes before it (no timing in the test).
        base_delay_ms: 600_000,
        max_delay_ms: 600_000,
        ..ThrottleConfig::default()
    })
    .await;
    for (user, pw) in [
        ("ann", "wrong-one"),
        ("nobody", ANN_PW),
        ("ann", "wrong-two"),
    ] {
        let r = sign_in(srv.addr, user, pw).await;
        let v = r.assert_problem(401, "sign-in-failed");
        assert_eq!(
            v["detail"], "wrong user name or password",
            "same for unknown users"
        );
        assert!(r.header("set-cookie").is_none());
    }
    // The third failure started the delay: even the right password waits now.
    let r = sign_in(srv.addr, "ann", ANN_PW).await;
    r.assert_problem(429, "too-many-requests");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "{retry}");

    let audit = srv.store.audit_entries(10).await.unwrap();
    let failed: Vec<&str> = audit
        .iter()
        .filter(|e| e.action == "session.sign_in_failed")
        .map(|e| e.user.as_str())
        .collect();
    assert_eq!(failed, ["ann", "nobody", "ann"]);
}

#[tokio::test]
async fn state_changes_with_a_cookie_need_the_csrf_token() {
    let srv = start(lenient()).await;
    let (cookie, csrf) = session(srv.addr, "ann", ANN_PW).await;
    let c = ("Cookie", cookie.as_str());
    // Reading needs no CSRF token.
    let r = request(srv.addr, "GET", "/api/v1/probe", &[c], None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "seen"));
    // Changing does.
    request(srv.addr, "POST", "/api/v1/probe", &[c], None)
        .await
        .assert_problem(403, "csrf-token-invalid");
    let wrong = "f".repeat(64);
    request(
        srv.addr,
        "POST",
        "/api/v1/probe",
        &[c, ("X-CSRF-Token", &wrong)],
        None,
    )
    .await
    .assert_problem(403, "csrf-token-invalid");
    let r = request(
        srv.addr,
        "POST",
        "/api/v1/probe",
        &[c, ("X-CSRF-Token", &csrf)],
        None,
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "done by ann"));
    // Sign-out is a state change too; then the cookie is cleared and dead.
    request(srv.addr, "DELETE", "/api/v1/session", &[c], None)
        .await
        .assert_problem(403, "csrf-token-invalid");
    let out = request(
        srv.addr,
        "DELETE",
        "/api/v1/session",
        &[c, ("X-CSRF-Token", &csrf)],
        None,
    )
    .await;
    assert_eq!(out.status, 204, "{out:?}");
    assert!(out
        .header("set-cookie")
        .is_some_and(|v| v.contains("Max-Age=0")));
    request(srv.addr, "GET", "/api/v1/session", &[c], None)
        .await
        .assert_problem(401, "unauthorized");
    let actions: Vec<String> = srv
        .store
        .audit_entries(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["session.sign_out", "session.sign_in"]);
}

#[tokio::test]
async fn roles_are_enforced_with_403_naming_the_permission() {
    let srv = start(lenient()).await;
    let (cookie, csrf) = session(srv.addr, "val", VAL_PW).await;
    let c = ("Cookie", cookie.as_str());
    let r = request(srv.addr, "GET", "/api/v1/probe", &[c], None).await;
    assert_eq!(r.status, 200);
    let v = request(
        srv.addr,
        "POST",
        "/api/v1/probe",
        &[c, ("X-CSRF-Token", &csrf)],
        None,
    )
    .await
    .assert_problem(403, "forbidden");
    assert_eq!(v["permission"], "agent_commands");
    assert!(v["detail"].as_str().unwrap().contains("viewer"), "{v}");
}

#[tokio::test]
async fn bearer_tokens_work_without_csrf_until_revoked() {
    let srv = start(lenient()).await;
    let now = Clock::new().now();
    let sup = token::new_token();
    let view = token::new_token();
    srv.store
        .create_api_token("crm", Role::Supervisor, &token::token_hash(&sup), now)
        .await
        .unwrap();
    srv.store
        .create_api_token("board", Role::Viewer, &token::token_hash(&view), now)
        .await
        .unwrap();
    let bearer = format!("Bearer {sup}");
    let auth = ("Authorization", bearer.as_str());
    let me = request(srv.addr, "GET", "/api/v1/session", &[auth], None).await;
    assert_eq!(me.status, 200, "{me:?}");
    let v = me.json();
    assert_eq!(
        (v["user"].as_str(), v["via"].as_str()),
        (Some("crm"), Some("token"))
    );
    assert!(v.get("csrf_token").is_none(), "{v}");
    // No CSRF header needed: a browser never sends a bearer token by itself.
    let r = request(srv.addr, "POST", "/api/v1/probe", &[auth], None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "done by crm"));
    // The viewer token may look, not act.
    let vb = format!("Bearer {view}");
    request(
        srv.addr,
        "POST",
        "/api/v1/probe",
        &[("Authorization", &vb)],
        None,
    )
    .await
    .assert_problem(403, "forbidden");
    // Malformed and unknown tokens.
    for bad in [
        "Basic YWRtaW46eA==".to_string(),
        "Bearer".to_string(),
        format!("Bearer {}", token::new_token()),
        format!("Bearer {}", &sup[..20]),
    ] {
        request(
            srv.addr,
            "GET",
            "/api/v1/probe",
            &[("Authorization", &bad)],
            None,
        )
        .await
        .assert_problem(401, "unauthorized");
    }
    // Revoked: refused at once.
    assert!(srv.store.revoke_api_token("crm").await.unwrap());
    request(srv.addr, "GET", "/api/v1/probe", &[auth], None)
        .await
        .assert_problem(401, "unauthorized");
    let used = srv.store.api_tokens().await.unwrap();
    assert_eq!(used.len(), 1);
    assert!(used[0].last_used_at.is_some(), "{used:?}");
}

#[tokio::test]
async fn bad_sign_in_bodies_are_problems() {
    let srv = start(lenient()).await;
    let r = request(
        srv.addr,
        "POST",
        "/api/v1/session",
        &[JSON],
        Some(r#"{"user":"ann","password":"x","remember":true}"#),
    )
    .await;
    let v = r.assert_problem(422, "invalid-body");
    assert!(v["detail"].as_str().unwrap().contains("remember"), "{v}");
    request(
        srv.addr,
        "POST",
        "/api/v1/session",
        &[JSON],
        Some("{not json"),
    )
    .await
    .assert_problem(400, "invalid-body");
    request(
        srv.addr,
        "POST",
        "/api/v1/session",
        &[("Content-Type", "text/plain")],
        Some("user=ann"),
    )
    .await
    .assert_problem(415, "unsupported-media-type");
    // None of these counted as a failed sign-in.
    assert!(srv.store.audit_entries(10).await.unwrap().is_empty());
}

fn ccswitch(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ccswitch"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ccswitch");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("ccswitch output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_tokens_are_shown_once_listed_without_the_secret_and_revoked() {
    let srv = start(lenient()).await;
    let db = format!("sqlite:{}", srv._dir.path().join("api.db").display());
    let (ok, stdout, stderr) = ccswitch(
        &[
            "user",
            "token",
            "crm",
            "--role",
            "supervisor",
            "--database",
            &db,
        ],
        None,
    );
    assert!(ok, "{stderr}");
    let tok = stdout.trim().to_string();
    assert!(token::looks_like_token(&tok), "{stdout}");
    assert!(stderr.contains("shown once"), "{stderr}");

    let bearer = format!("Bearer {tok}");
    let r = request(
        srv.addr,
        "POST",
        "/api/v1/probe",
        &[("Authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "done by crm"));

    let (ok, list, _) = ccswitch(&["user", "tokens", "--database", &db], None);
    assert!(ok);
    let row = list
        .lines()
        .find(|l| l.starts_with("crm "))
        .expect("crm listed");
    assert!(row.contains("supervisor"), "{list}");
    assert!(!row.ends_with("never"), "used once: {list}");
    assert!(
        !list.contains(&tok[5..]),
        "the token is never shown again: {list}"
    );

    let (ok, _, stderr) = ccswitch(
        &["user", "token", "crm", "--role", "admin", "--database", &db],
        None,
    );
    assert!(!ok && stderr.contains("exists already"), "{stderr}");
    let (ok, _, stderr) = ccswitch(&["user", "revoke", "crm", "--database", &db], None);
    assert!(ok, "{stderr}");
    request(
        srv.addr,
        "GET",
        "/api/v1/probe",
        &[("Authorization", &bearer)],
        None,
    )
    .await
    .assert_problem(401, "unauthorized");
    let actions: Vec<(String, String)> = srv
        .store
        .audit_entries(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.user, e.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("cli".to_string(), "token.revoke".to_string()),
            ("cli".to_string(), "token.create".to_string())
        ]
    );
}

#[test]
fn hash_password_reads_piped_stdin_and_prints_a_phc_string() {
    let (ok, stdout, stderr) = ccswitch(&["user", "hash-password"], Some("a-long-password\n"));
    assert!(ok, "{stderr}");
    let phc = stdout.trim();
    assert!(phc.starts_with("$argon2id$v=19$"), "{stdout}");
    assert!(password::verify_password(phc, "a-long-password"));
    assert!(!stdout.contains("a-long-password"));

    let (ok, stdout, _) = ccswitch(
        &["user", "hash-password", "--name", "wall"],
        Some("a-long-password"),
    );
    assert!(ok);
    let entry: toml::Value = toml::from_str(&stdout).expect("a users.toml entry");
    let user = &entry["users"][0];
    assert_eq!(user["name"].as_str(), Some("wall"));
    assert!(password::verify_password(
        user["password_hash"].as_str().unwrap(),
        "a-long-password"
    ));

    let (ok, _, stderr) = ccswitch(&["user", "hash-password"], Some("short\n"));
    assert!(!ok && stderr.contains("too short"), "{stderr}");
}
