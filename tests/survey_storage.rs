//! The store's side of surveys at hang-up (issue 8), on SQLite and PostgreSQL: the engine's
//! survey records written and replayed, the number-hash key, and what fills the engine's
//! survey ledger at startup.
//!
//! PostgreSQL: `CCSWITCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`) must be
//! reachable; each test creates `ccswitch_test_<random>` and drops it. An unreachable server
//! fails the tests unless `CCSWITCH_TEST_SKIP_POSTGRES=1`.

use ccswitch::engine::record::{EndedBy, Record};
use ccswitch::engine::survey::{number_hash, LedgerFacts};
use ccswitch::engine::time::Millis;
use ccswitch::store::{spawn_writer_with, Store, WriterConfig};
use sqlx::{Connection, Row};

// ---------- databases ----------

/// A test database: its URL, the store, then what removes the database.
struct TestDb {
    url: String,
    store: Store,
    _pg: Option<PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

/// Drops its PostgreSQL database when it goes, even when a test panics.
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
            eprintln!(
                "warning: could not drop test database {}: {res:?}",
                self.name
            );
        }
    }
}

async fn sqlite_db() -> Option<TestDb> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("calls.db").display());
    let store = Store::open(&url).await.expect("open sqlite");
    Some(TestDb {
        url,
        store,
        _pg: None,
        _dir: Some(dir),
    })
}

/// `None` only when CCSWITCH_TEST_SKIP_POSTGRES=1; an unreachable server is a failure.
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
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("CCSWITCH_PG_URL {admin} names no database"),
    };
    let guard = PgDatabase { admin, name };
    let store = Store::open(&url).await.expect("open postgres store");
    Some(TestDb {
        url,
        store,
        _pg: Some(guard),
        _dir: None,
    })
}

/// A side connection for checking rows and playing other components (sender, retention).
async fn side(url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url)
        .await
        .expect("side connection")
}

async fn exec(conn: &mut sqlx::AnyConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn count(conn: &mut sqlx::AnyConnection, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

// ---------- records ----------

const T0: u64 = 1_790_000_000_000;
const KEY: &[u8] = b"storage test key";
const DAY: u64 = 86_400_000;

fn call_end(id: &str, t: u64) -> Vec<Record> {
    vec![
        Record::CallStarted {
            call_id: id.into(),
            sip_call_id: format!("{id}@10.0.0.1"),
            caller: "13812345678".into(),
            dialled: "8000".into(),
            transport: "udp".into(),
            arrived_at: Millis(t),
            ring_cycle_ms: 6_000,
        },
        Record::CallEnded {
            call_id: id.into(),
            ended_at: Millis(t + 120_000),
            ended_by: EndedBy::Caller,
            reason: "bye".into(),
            final_status: 200,
        },
    ]
}

fn scheduled(id: &str, survey_id: u64, number: &str, t: u64, deferred: bool) -> Record {
    let at = t + 120_000;
    let send_at = if deferred {
        at + 10 * 3_600_000
    } else {
        at + 60_000
    };
    Record::SurveyScheduled {
        call_id: id.into(),
        survey_id,
        at: Millis(at),
        number: number.into(),
        number_hash: number_hash(KEY, number),
        language: "zh".into(),
        text: "感谢致电Example Co，请为本次服务打分：回复1-5（5为非常满意），回复TD退订。".into(),
        send_at: Millis(send_at),
        deferred,
        reply_by: Millis(send_at + 48 * 3_600_000),
        agent: Some("1003".into()),
        queue: Some("complaints".into()),
        complaint: true,
    }
}

fn follow_up(id: &str, t: u64) -> Record {
    Record::FollowUpOpened {
        call_id: id.into(),
        at: Millis(t + 120_000),
        agent: Some("1003".into()),
        queue: Some("complaints".into()),
        reason: "complaint_queue".into(),
        due_at: Millis(t + 120_000 + DAY),
    }
}

fn skipped(id: &str, survey_id: u64, t: u64, reason: &str) -> Record {
    Record::SurveySkipped {
        call_id: id.into(),
        survey_id,
        at: Millis(t + 120_000),
        reason: reason.into(),
        agent: Some("1001".into()),
        queue: Some("tech".into()),
    }
}

/// One call ended with a complaint task and a survey, one skipped.
fn two_calls() -> Vec<Record> {
    let mut recs = call_end("c1", T0);
    recs.push(follow_up("c1", T0));
    recs.push(scheduled(
        "c1",
        7_000_000_000_000_000_001,
        "+8613812345678",
        T0,
        false,
    ));
    recs.extend(call_end("c2", T0 + 1_000));
    recs.push(skipped("c2", 42, T0 + 1_000, "frequency_cap"));
    recs
}

// ---------- scenarios ----------

async fn survey_records_are_written_once(db: &TestDb) {
    let store = &db.store;
    let recs = two_calls();
    store.write_batch(&recs).await.unwrap();
    let mut conn = side(&db.url).await;
    let row = sqlx::query(
        "SELECT survey_id, state, state_at, number, number_hash, language, body, agent, queue, \
           complaint, send_at, reply_by, skip_reason FROM surveys WHERE call_id = 'c1'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(row.get::<i64, _>("survey_id"), 7_000_000_000_000_000_001);
    assert_eq!(row.get::<String, _>("state"), "pending");
    assert_eq!(row.get::<String, _>("number"), "+8613812345678");
    assert_eq!(
        row.get::<String, _>("number_hash"),
        number_hash(KEY, "+8613812345678")
    );
    assert_eq!(row.get::<String, _>("language"), "zh");
    assert!(row.get::<String, _>("body").starts_with("感谢致电"));
    assert_eq!(row.get::<String, _>("agent"), "1003");
    assert_eq!(row.get::<String, _>("queue"), "complaints");
    assert_eq!(row.get::<i32, _>("complaint"), 1);
    let send_at = row.get::<i64, _>("send_at");
    assert_eq!(send_at, (T0 + 180_000) as i64);
    assert_eq!(
        row.get::<i64, _>("reply_by"),
        send_at + 48 * 3_600_000,
        "reply window from the send time"
    );
    assert!(row.get::<Option<String>, _>("skip_reason").is_none());
    // The outbox row the sender works on: message_id = survey_id, due at the send time.
    let msg =
        sqlx::query("SELECT message_id, survey_id, kind, number, state, due_at FROM sms_messages")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(msg.len(), 1);
    assert_eq!(
        msg[0].get::<i64, _>("message_id"),
        7_000_000_000_000_000_001
    );
    assert_eq!(msg[0].get::<String, _>("kind"), "survey");
    assert_eq!(msg[0].get::<String, _>("state"), "queued");
    assert_eq!(msg[0].get::<i64, _>("due_at"), send_at);
    let skip = sqlx::query(
        "SELECT survey_id, state, skip_reason, number FROM surveys WHERE call_id = 'c2'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(skip.get::<i64, _>("survey_id"), 42);
    assert_eq!(skip.get::<String, _>("state"), "skipped");
    assert_eq!(skip.get::<String, _>("skip_reason"), "frequency_cap");
    assert!(skip.get::<Option<String>, _>("number").is_none());
    let task = sqlx::query("SELECT agent, queue, reason, opened_at, due_at FROM follow_up_tasks")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(task.len(), 1);
    assert_eq!(task[0].get::<String, _>("agent"), "1003");
    assert_eq!(task[0].get::<String, _>("reason"), "complaint_queue");
    assert_eq!(
        task[0].get::<i64, _>("due_at") - task[0].get::<i64, _>("opened_at"),
        DAY as i64
    );
    assert_eq!(
        count(&mut conn, "SELECT COUNT(*) FROM survey_events").await,
        2
    );

    // The sender moved the survey on; then the batch is replayed (a retry whose commit
    // outcome was unknown): nothing is added and nothing goes back.
    exec(
        &mut conn,
        "UPDATE surveys SET state = 'sent', state_at = 1 WHERE call_id = 'c1'; \
         UPDATE sms_messages SET state = 'sent'",
    )
    .await;
    store.write_batch(&recs).await.unwrap();
    store.write_batch(&recs).await.unwrap();
    for (sql, n) in [
        ("SELECT COUNT(*) FROM surveys", 2),
        ("SELECT COUNT(*) FROM survey_events", 2),
        ("SELECT COUNT(*) FROM sms_messages", 1),
        ("SELECT COUNT(*) FROM follow_up_tasks", 1),
        ("SELECT COUNT(*) FROM surveys WHERE state = 'sent'", 1),
        ("SELECT COUNT(*) FROM sms_messages WHERE state = 'sent'", 1),
    ] {
        assert_eq!(count(&mut conn, sql).await, n, "{sql}");
    }
    // A deferred survey starts `deferred`, with the reason in its first event.
    let mut late = call_end("c3", T0 + 2_000);
    late.push(scheduled("c3", 43, "+8613900001111", T0 + 2_000, true));
    store.write_batch(&late).await.unwrap();
    let ev = sqlx::query(
        "SELECT e.state, e.detail FROM survey_events e JOIN surveys s ON s.survey_id = e.survey_id \
         WHERE s.call_id = 'c3'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(ev.get::<String, _>("state"), "deferred");
    assert!(ev.get::<String, _>("detail").contains("quiet hours"));
    let _ = conn.close().await;
}

/// Through the writer with surveys on and a tiny batch: everything arrives once.
async fn survey_records_through_the_writer(db: &TestDb) {
    let cfg = WriterConfig {
        max_batch: 2,
        survey_groups: true,
        ..WriterConfig::default()
    };
    let (sink, handle) = spawn_writer_with(db.store.clone(), cfg);
    for r in two_calls() {
        sink.push(r);
    }
    let stats = handle.shutdown().await;
    assert_eq!(stats.written, 7, "{stats:?}");
    assert_eq!(stats.lost, 0);
    if db._pg.is_none() {
        // Current-thread runtime: everything is queued before the writer runs, so the cuts
        // are exact. At 2 both calls' ends would be split from their surveys; grouped: two
        // batches.
        assert_eq!(stats.batches, 2, "{stats:?}");
    }
    let mut conn = side(&db.url).await;
    assert_eq!(count(&mut conn, "SELECT COUNT(*) FROM surveys").await, 2);
    assert_eq!(
        count(
            &mut conn,
            "SELECT COUNT(*) FROM calls WHERE ended_at IS NOT NULL"
        )
        .await,
        2
    );
    let _ = conn.close().await;
}

async fn number_hash_key_is_made_once(db: &TestDb) {
    // Several starting at once on a fresh database agree on one key.
    let first: Vec<Vec<u8>> = concurrently(&db.store).await;
    let key = first[0].clone();
    assert!(first.iter().all(|k| *k == key));
    assert_eq!(key.len(), 32);
    assert_eq!(db.store.number_hash_key().await.unwrap(), key);
    // Reopened: the same key.
    db.store.close().await;
    let reopened = Store::open(&db.url).await.unwrap();
    assert_eq!(reopened.number_hash_key().await.unwrap(), key);
    let mut conn = side(&db.url).await;
    let stored: String =
        sqlx::query_scalar("SELECT value FROM ccswitch_settings WHERE name = 'number_hash_key'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(stored, hex::encode(&key));
    // A damaged key is an error, never silently replaced.
    exec(
        &mut conn,
        "UPDATE ccswitch_settings SET value = 'not hex' WHERE name = 'number_hash_key'",
    )
    .await;
    let err = reopened.number_hash_key().await.unwrap_err();
    assert!(err.to_string().contains("number_hash_key"), "{err}");
    let still: String =
        sqlx::query_scalar("SELECT value FROM ccswitch_settings WHERE name = 'number_hash_key'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(still, "not hex");
    let _ = conn.close().await;
    reopened.close().await;
}

/// Four concurrent get-or-create calls.
async fn concurrently(store: &Store) -> Vec<Vec<u8>> {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move { s.number_hash_key().await.unwrap() })
        })
        .collect();
    let mut keys = Vec::new();
    for t in tasks {
        keys.push(t.await.unwrap());
    }
    keys
}

async fn survey_ledger_holds_recent_send_times_and_opt_outs(db: &TestDb) {
    let store = &db.store;
    let a = "+8613812345678";
    let b = "+8613900001111";
    let mut recs = Vec::new();
    // a: surveyed 10 days ago and 2 days ago; b: 20 days ago only.
    for (id, sid, number, t) in [
        ("a-old", 1, a, T0 - 10 * DAY),
        ("a-new", 2, a, T0 - 2 * DAY),
        ("b-old", 3, b, T0 - 20 * DAY),
    ] {
        recs.extend(call_end(id, t));
        recs.push(scheduled(id, sid, number, t, false));
    }
    recs.extend(call_end("skip", T0));
    recs.push(skipped("skip", 4, T0, "anonymous"));
    store.write_batch(&recs).await.unwrap();
    let mut conn = side(&db.url).await;
    // Retention dropped a's number from its latest survey: the hash still counts.
    exec(
        &mut conn,
        "UPDATE surveys SET number = NULL, number_hashed_at = 1 WHERE call_id = 'a-new'",
    )
    .await;
    let opted = number_hash(KEY, "+8613700002222");
    exec(
        &mut conn,
        &format!(
            "INSERT INTO sms_opt_outs (number_hash, number, at) VALUES ('{opted}', NULL, 5), \
             ('{}', '{b}', 6)",
            number_hash(KEY, b)
        ),
    )
    .await;
    let _ = conn.close().await;

    let since = Millis(T0 - 7 * DAY);
    let facts = store.survey_ledger(since).await.unwrap();
    let a_send = Millis(T0 - 2 * DAY + 180_000);
    let mut want_opted = vec![opted, number_hash(KEY, b)];
    want_opted.sort();
    assert_eq!(
        facts,
        LedgerFacts {
            last_sent: vec![(number_hash(KEY, a), a_send)],
            opted_out: want_opted,
        }
    );
    // A wider window sees every scheduled survey, the latest per number.
    let all = store.survey_ledger(Millis(0)).await.unwrap();
    let mut want = vec![
        (number_hash(KEY, a), a_send),
        (number_hash(KEY, b), Millis(T0 - 20 * DAY + 180_000)),
    ];
    want.sort();
    assert_eq!(all.last_sent, want);
    // Nothing yet: empty.
    let empty = store.survey_ledger(Millis(T0 + DAY)).await.unwrap();
    assert!(empty.last_sent.is_empty());
}

// ---------- the tests ----------

macro_rules! both_backends {
    ($scenario:ident, $sqlite:ident, $pg:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            let db = sqlite_db().await.expect("sqlite");
            $scenario(&db).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $pg() {
            if let Some(db) = pg_db().await {
                $scenario(&db).await;
            }
        }
    };
}

both_backends!(
    survey_records_are_written_once,
    survey_records_are_written_once_sqlite,
    survey_records_are_written_once_postgres
);
both_backends!(
    survey_records_through_the_writer,
    survey_records_through_the_writer_sqlite,
    survey_records_through_the_writer_postgres
);
both_backends!(
    number_hash_key_is_made_once,
    number_hash_key_is_made_once_sqlite,
    number_hash_key_is_made_once_postgres
);
both_backends!(
    survey_ledger_holds_recent_send_times_and_opt_outs,
    survey_ledger_holds_recent_send_times_and_opt_outs_sqlite,
    survey_ledger_holds_recent_send_times_and_opt_outs_postgres
);
