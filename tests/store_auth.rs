//! API tokens and the audit log (migration 0005) on SQLite and PostgreSQL.
//!
//! PostgreSQL: `CCSWITCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`); each
//! test creates `ccswitch_test_<random>` and drops it. Unreachable: a failure, unless
//! `CCSWITCH_TEST_SKIP_POSTGRES=1`.

use ccswitch::auth::{token, Role};
use ccswitch::engine::Millis;
use ccswitch::store::api_tokens::{ApiTokenRow, TokenError};
use ccswitch::store::audit::AuditEntry;
use ccswitch::store::Store;
use sqlx::Connection;

struct TestDb {
    store: Store,
    _pg: Option<PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

struct PgDatabase {
    admin: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
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
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

async fn sqlite_db() -> Option<TestDb> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&format!("sqlite:{}", dir.path().join("t.db").display()))
        .await
        .expect("open sqlite");
    Some(TestDb {
        store,
        _pg: None,
        _dir: Some(dir),
    })
}

async fn pg_db() -> Option<TestDb> {
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
    let db_url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("CCSWITCH_PG_URL {admin} names no database"),
    };
    let guard = PgDatabase { admin, name };
    let store = Store::open(&db_url).await.expect("open postgres store");
    Some(TestDb {
        store,
        _pg: Some(guard),
        _dir: None,
    })
}

macro_rules! both_backends {
    ($scenario:ident, $sqlite:ident, $pg:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            let db = sqlite_db().await.expect("sqlite");
            $scenario(&db.store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $pg() {
            if let Some(db) = pg_db().await {
                $scenario(&db.store).await;
            }
        }
    };
}

const T0: u64 = 1_700_000_000_000;

async fn tokens(store: &Store) {
    let t = token::new_token();
    let h = token::token_hash(&t);
    store
        .create_api_token("crm", Role::Supervisor, &h, Millis(T0))
        .await
        .expect("create");
    // A second token of the same name is refused, and the first is untouched.
    let other = token::token_hash(&token::new_token());
    assert!(matches!(
        store
            .create_api_token("crm", Role::Admin, &other, Millis(T0 + 1))
            .await,
        Err(TokenError::NameTaken(n)) if n == "crm"
    ));
    assert!(store
        .use_api_token(&other, Millis(T0 + 2))
        .await
        .unwrap()
        .is_none());
    let crm = ApiTokenRow {
        name: "crm".into(),
        role: Role::Supervisor,
        created_at: Millis(T0),
        last_used_at: None,
    };
    assert_eq!(store.api_tokens().await.unwrap(), vec![crm.clone()]);
    // Only the hash is stored: the token text appears nowhere.
    assert_eq!(
        store.use_api_token(&h, Millis(T0 + 10)).await.unwrap(),
        Some(crm.clone())
    );
    // last_used_at is written at most once a minute.
    store.use_api_token(&h, Millis(T0 + 30_000)).await.unwrap();
    assert_eq!(
        store.api_tokens().await.unwrap()[0].last_used_at,
        Some(Millis(T0 + 10))
    );
    store.use_api_token(&h, Millis(T0 + 60_010)).await.unwrap();
    assert_eq!(
        store.api_tokens().await.unwrap()[0].last_used_at,
        Some(Millis(T0 + 60_010))
    );
    store
        .create_api_token("wallboard", Role::Viewer, &other, Millis(T0 + 5))
        .await
        .expect("second token");
    let names: Vec<String> = store
        .api_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["crm", "wallboard"]);
    // Revoked: gone at once; revoking again says so; the name is free again.
    assert!(store.revoke_api_token("crm").await.unwrap());
    assert!(!store.revoke_api_token("crm").await.unwrap());
    assert!(store
        .use_api_token(&h, Millis(T0 + 70_000))
        .await
        .unwrap()
        .is_none());
    store
        .create_api_token("crm", Role::Viewer, &h, Millis(T0 + 80_000))
        .await
        .expect("name reusable after revoke");
}

async fn audit(store: &Store) {
    let e = |at: u64, action: &str| AuditEntry {
        at: Millis(at),
        user: "ann".into(),
        source: "192.0.2.7".into(),
        action: action.into(),
        target: Some("1001".into()),
        detail: None,
    };
    store.audit(&e(T0, "session.sign_in")).await.unwrap();
    store.audit(&e(T0 + 5, "agent.set_state")).await.unwrap();
    // Same millisecond: both kept, in insertion order.
    store.audit(&e(T0 + 5, "recording.download")).await.unwrap();
    // Client-supplied text is bounded and NUL-safe (PostgreSQL TEXT refuses NUL).
    let hostile = AuditEntry {
        at: Millis(T0 + 9),
        user: format!("x\0{}", "y".repeat(5_000)),
        source: "198.51.100.1".into(),
        action: "session.sign_in_failed".into(),
        target: None,
        detail: Some("3 failure(s) in a row".into()),
    };
    store.audit(&hostile).await.unwrap();
    let got = store.audit_entries(10).await.unwrap();
    let actions: Vec<&str> = got.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "session.sign_in_failed",
            "recording.download",
            "agent.set_state",
            "session.sign_in"
        ]
    );
    assert_eq!(got[0].user.chars().count(), 512);
    assert!(got[0].user.starts_with("x\u{FFFD}y"));
    assert_eq!(got[0].target, None);
    assert_eq!(got[3], e(T0, "session.sign_in"));
    assert_eq!(store.audit_entries(2).await.unwrap().len(), 2);
}

both_backends!(tokens, tokens_sqlite, tokens_postgres);
both_backends!(audit, audit_sqlite, audit_postgres);
