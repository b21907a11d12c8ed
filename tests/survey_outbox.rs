//! The survey outbox in the store (src/store/outbox.rs), on SQLite and PostgreSQL: claims
//! and the restart after a crash, idempotent transitions, replies with their dedupe key,
//! opt-outs, follow-up tasks, expiry and escalation.
//!
//! PostgreSQL: `CCSWITCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`); each
//! test creates `ccswitch_test_<random>` and drops it. `CCSWITCH_TEST_SKIP_POSTGRES=1` skips
//! the PostgreSQL half.

use ccswitch::engine::record::Record;
use ccswitch::engine::survey::replies::handle_reply;
use ccswitch::engine::survey::template::Template;
use ccswitch::engine::survey::{number_hash, SurveyPolicy};
use ccswitch::engine::time::Millis;
use ccswitch::store::{InboundText, ReplyApplied, Store};
use sqlx::Connection;
use std::path::Path;

// ---------- databases (as in tests/storage.rs) ----------

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
            eprintln!(
                "warning: could not drop test database {}: {res:?}",
                self.name
            );
        }
    }
}

async fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("calls.db");
    let store = Store::open(&format!("sqlite:{}", path.display()))
        .await
        .expect("open sqlite");
    TestDb {
        store,
        _pg: None,
        _dir: Some(dir),
    }
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
            let db = sqlite_db().await;
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

// ---------- fixtures ----------

const T0: u64 = 1_796_356_800_000; // 2026-12-04 12:00 Asia/Shanghai
const KEY: &[u8] = b"test-number-hash-key";
const HOUR: u64 = 3_600_000;

/// The shipped survey.toml, quiet hours off, NPS on with a question.
fn policy() -> SurveyPolicy {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let config = ccswitch::config::load(&dir).expect("shipped config loads");
    let mut p = (*config.survey.expect("shipped survey.toml is enabled")).clone();
    p.quiet_hours = None;
    p.nps = true;
    p.default_texts.nps = Some(Template::parse("0-10: recommend {company}?").unwrap());
    p
}

fn number(i: u64) -> String {
    format!("+86138{:08}", i)
}

/// A call and its scheduled survey, due at `send_at`.
fn survey(id: u64, send_at: u64, reply_by: u64, complaint: bool) -> Vec<Record> {
    let call_id = format!("call-{id}");
    vec![
        Record::CallStarted {
            call_id: call_id.clone(),
            sip_call_id: format!("{id}@x"),
            caller: number(id),
            dialled: "800".into(),
            transport: "udp".into(),
            arrived_at: Millis(send_at.saturating_sub(120_000)),
            ring_cycle_ms: 6_000,
        },
        Record::SurveyScheduled {
            call_id,
            survey_id: id,
            at: Millis(send_at.saturating_sub(60_000)),
            number: number(id),
            number_hash: number_hash(KEY, &number(id)),
            language: "en".into(),
            text: format!("survey {id}: reply 1-5"),
            send_at: Millis(send_at),
            deferred: false,
            reply_by: Millis(reply_by),
            agent: Some("1002".into()),
            queue: Some("sales".into()),
            complaint,
        },
    ]
}

async fn state(store: &Store, id: u64) -> String {
    store.survey_row(id).await.unwrap().unwrap().state
}

async fn text_state(store: &Store, id: u64) -> (String, i64) {
    let r = store
        .outbox_rows()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.message_id == id)
        .unwrap();
    (r.state, r.attempts)
}

/// Replies as the service does: context by number hash, decision, store.
async fn reply(
    store: &Store,
    p: &SurveyPolicy,
    from: u64,
    text: &str,
    key: &str,
    now: u64,
) -> ReplyApplied {
    let n = number(from);
    let h = number_hash(KEY, &n);
    let ctx = store.reply_context(&h, Millis(now)).await.unwrap();
    let fx = handle_reply(p, &ctx, text, Millis(now));
    store
        .apply_reply(
            &InboundText {
                received_at: Millis(now),
                number: Some(n),
                number_hash: Some(h),
                body: text.into(),
                dedupe_key: key.into(),
            },
            &fx,
            Millis(now),
        )
        .await
        .unwrap()
}

// ---------- scenarios ----------

/// Due texts are claimed once (committed `sending`, attempt counted); a restart puts what
/// was `sending` back to due with the same id; a sent text is never claimed again.
async fn claim_and_restart(store: &Store) {
    let mut batch = Vec::new();
    batch.extend(survey(1, T0, T0 + 48 * HOUR, false));
    batch.extend(survey(2, T0 + 10, T0 + 48 * HOUR, false));
    batch.extend(survey(3, T0 + HOUR, T0 + 49 * HOUR, false));
    store.write_batch(&batch).await.unwrap();
    assert_eq!(state(store, 1).await, "pending");

    let claimed = store.claim_due(Millis(T0 + 100), 10).await.unwrap();
    let ids: Vec<u64> = claimed.iter().map(|c| c.message_id).collect();
    assert_eq!(ids, vec![1, 2], "only due texts, oldest first");
    assert_eq!(claimed[0].attempts, 1);
    assert_eq!(claimed[0].number.as_deref(), Some(number(1).as_str()));
    assert_eq!(claimed[0].kind, "survey");
    assert_eq!(state(store, 1).await, "sending");
    // Claimed texts are not claimed twice.
    assert!(store
        .claim_due(Millis(T0 + 200), 10)
        .await
        .unwrap()
        .is_empty());
    // A limit is a limit.
    assert!(store
        .claim_due(Millis(T0 + 2 * HOUR), 0)
        .await
        .unwrap()
        .is_empty());

    // Text 1 is acknowledged; then the process dies with text 2 in flight.
    assert!(store
        .mark_sent(
            1,
            "smpp",
            &["m1".into()],
            Millis(T0 + 48 * HOUR + 500),
            Millis(T0 + 500)
        )
        .await
        .unwrap());
    assert_eq!(store.requeue_sending(Millis(T0 + 1_000)).await.unwrap(), 1);
    assert_eq!(text_state(store, 1).await, ("sent".into(), 1));
    assert_eq!(text_state(store, 2).await, ("queued".into(), 1));
    assert_eq!(state(store, 2).await, "pending");
    // Requeue again: nothing left sending.
    assert_eq!(store.requeue_sending(Millis(T0 + 1_001)).await.unwrap(), 0);
    let again = store.claim_due(Millis(T0 + 1_100), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].message_id, again[0].attempts), (2, 2));
    // Survey 1: sent, its reply window counted from the real send time.
    let s1 = store.survey_row(1).await.unwrap().unwrap();
    assert_eq!(s1.state, "sent");
    assert_eq!(s1.sent_at, Some(Millis(T0 + 500)));
    assert_eq!(s1.reply_by, Some(Millis(T0 + 48 * HOUR + 500)));
}

/// Every transition applied twice changes nothing the second time.
async fn idempotent_transitions(store: &Store) {
    let mut batch = Vec::new();
    for id in 10..14 {
        batch.extend(survey(id, T0, T0 + 48 * HOUR, false));
    }
    store.write_batch(&batch).await.unwrap();
    // Replaying the batch adds nothing.
    store.write_batch(&batch).await.unwrap();
    assert_eq!(store.outbox_rows().await.unwrap().len(), 4);
    assert_eq!(store.claim_due(Millis(T0), 10).await.unwrap().len(), 4);
    let reply_by = Millis(T0 + 48 * HOUR);

    // 10: sent (two parts), receipts per part.
    let parts = vec!["a1".to_string(), "a2".to_string()];
    assert!(store
        .mark_sent(10, "smpp", &parts, reply_by, Millis(T0 + 1))
        .await
        .unwrap());
    assert!(!store
        .mark_sent(10, "smpp", &parts, reply_by, Millis(T0 + 2))
        .await
        .unwrap());
    assert_eq!(
        store
            .record_receipt("a1", true, "DELIVRD", Millis(T0 + 3))
            .await
            .unwrap(),
        Some(10)
    );
    assert_eq!(state(store, 10).await, "sent", "one of two parts delivered");
    store
        .record_receipt("a2", true, "DELIVRD", Millis(T0 + 4))
        .await
        .unwrap();
    assert_eq!(state(store, 10).await, "delivered");
    assert_eq!(text_state(store, 10).await.0, "delivered");
    // A repeated receipt (and a late contrary one for the same part) changes nothing.
    store
        .record_receipt("a2", false, "UNDELIV", Millis(T0 + 5))
        .await
        .unwrap();
    assert_eq!(state(store, 10).await, "delivered");
    let delivered_at = store.survey_row(10).await.unwrap().unwrap().delivered_at;
    assert_eq!(delivered_at, Some(Millis(T0 + 4)));
    assert_eq!(
        store
            .record_receipt("nope", true, "DELIVRD", Millis(T0 + 6))
            .await
            .unwrap(),
        None
    );

    // 11: undeliverable.
    store
        .mark_sent(11, "smpp", &["b1".into()], reply_by, Millis(T0 + 1))
        .await
        .unwrap();
    store
        .record_receipt("b1", false, "UNDELIV", Millis(T0 + 7))
        .await
        .unwrap();
    assert_eq!(state(store, 11).await, "undeliverable");

    // 12: retry then fail; a late "sent" after failing changes nothing.
    assert!(store
        .retry_text(12, Millis(T0 + 60_000), "timeout", Millis(T0 + 1))
        .await
        .unwrap());
    assert!(!store
        .retry_text(12, Millis(T0 + 60_000), "timeout", Millis(T0 + 1))
        .await
        .unwrap());
    assert_eq!(state(store, 12).await, "pending");
    assert!(store
        .claim_due(Millis(T0 + 59_999), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_due(Millis(T0 + 60_000), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .fail_text(12, "refused", Millis(T0 + 60_001))
        .await
        .unwrap());
    assert!(!store
        .fail_text(12, "refused", Millis(T0 + 60_002))
        .await
        .unwrap());
    assert!(!store
        .mark_sent(12, "smpp", &["c1".into()], reply_by, Millis(T0 + 60_003))
        .await
        .unwrap());
    let s12 = store.survey_row(12).await.unwrap().unwrap();
    assert_eq!(
        (s12.state.as_str(), s12.fail_reason.as_deref()),
        ("failed", Some("refused"))
    );
    // 13: a sent text cannot fail.
    store
        .mark_sent(13, "http", &["h1".into()], reply_by, Millis(T0 + 1))
        .await
        .unwrap();
    assert!(!store.fail_text(13, "late", Millis(T0 + 2)).await.unwrap());
    assert_eq!(state(store, 13).await, "sent");

    // Expiry: once, only for unanswered surveys that went out.
    let mut expired = store
        .expire_surveys(Millis(T0 + 49 * HOUR), u64::MAX)
        .await
        .unwrap();
    expired.sort();
    assert_eq!(expired, vec![10, 11, 13]);
    assert!(store
        .expire_surveys(Millis(T0 + 50 * HOUR), u64::MAX)
        .await
        .unwrap()
        .is_empty());

    // Never sent (a gateway down for two days): expired once the reply window has passed
    // since the send time, its text cancelled. One being sent right now is left alone.
    let mut batch = survey(20, T0 + HOUR, T0 + 49 * HOUR, false);
    batch.extend(survey(21, T0 + HOUR, T0 + 49 * HOUR, false));
    store.write_batch(&batch).await.unwrap();
    let claimed = store.claim_due(Millis(T0 + HOUR), 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let sending = claimed[0].message_id;
    let idle = if sending == 20 { 21 } else { 20 };
    let window = 48 * HOUR;
    assert!(store
        .expire_surveys(Millis(T0 + 48 * HOUR), window)
        .await
        .unwrap()
        .is_empty());
    let expired = store
        .expire_surveys(Millis(T0 + 49 * HOUR + 1), window)
        .await
        .unwrap();
    assert_eq!(expired, vec![idle]);
    assert_eq!(state(store, idle).await, "expired");
    assert_eq!(text_state(store, idle).await.0, "cancelled");
    assert_eq!(text_state(store, sending).await.0, "sending");
    assert_eq!(state(store, 12).await, "failed");
}

/// Replies: score, replay, NPS once, clarification once, opt-out confirmed once, unmatched,
/// low score task once, escalation once.
async fn replies(store: &Store) {
    let p = policy();
    let mut batch = Vec::new();
    for id in 20..25 {
        batch.extend(survey(id, T0, T0 + 48 * HOUR, id == 24));
    }
    store.write_batch(&batch).await.unwrap();
    store.claim_due(Millis(T0), 10).await.unwrap();
    for id in 20..25 {
        store
            .mark_sent(
                id,
                "smpp",
                &[format!("g{id}")],
                Millis(T0 + 48 * HOUR),
                Millis(T0),
            )
            .await
            .unwrap();
    }
    let now = T0 + 60_000;

    // 20: "5 很好" -> answered with comment, NPS asked once; a replay changes nothing.
    assert_eq!(
        reply(store, &p, 20, "5 很好", "k1", now).await,
        ReplyApplied::Applied { opted_out: false }
    );
    assert_eq!(
        reply(store, &p, 20, "5 很好", "k1", now).await,
        ReplyApplied::Duplicate
    );
    let s = store.survey_row(20).await.unwrap().unwrap();
    assert_eq!(
        (s.state.as_str(), s.csat, s.comment.as_deref()),
        ("answered", Some(5), Some("很好"))
    );
    assert!(s.nps_asked_at.is_some());
    let nps_texts = |rows: &[ccswitch::store::OutboxRow], sid: u64, kind: &str| {
        rows.iter()
            .filter(|r| r.survey_id == Some(sid) && r.kind == kind)
            .count()
    };
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(nps_texts(&rows, 20, "nps"), 1);
    let nps_row = rows.iter().find(|r| r.kind == "nps").unwrap();
    assert!(
        nps_row.message_id >= 1 << 63,
        "follow-up ids never meet survey ids"
    );
    // The NPS answer, then nothing more is asked.
    reply(store, &p, 20, "９", "k2", now + 1).await;
    let s = store.survey_row(20).await.unwrap().unwrap();
    assert_eq!(s.nps, Some(9));
    reply(store, &p, 20, "thanks", "k3", now + 2).await;
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(nps_texts(&rows, 20, "nps"), 1);
    assert_eq!(
        store
            .survey_row(20)
            .await
            .unwrap()
            .unwrap()
            .comment
            .as_deref(),
        Some("很好 / thanks")
    );

    // 21: unreadable -> one clarification; unreadable again -> comment only.
    reply(store, &p, 21, "hmm", "k4", now).await;
    reply(store, &p, 21, "what", "k5", now + 1).await;
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(nps_texts(&rows, 21, "clarify"), 1);
    let s = store.survey_row(21).await.unwrap().unwrap();
    assert!(s.clarified && s.csat.is_none());
    assert_eq!(s.comment.as_deref(), Some("hmm / what"));

    // 22: low score -> task (once, even replayed under another key after the answer).
    reply(store, &p, 22, "1 rude", "k6", now).await;
    reply(store, &p, 22, "1 rude", "k7", now + 1).await;
    let tasks = store.follow_up_rows().await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (tasks[0].0.as_str(), tasks[0].1.as_str(), tasks[0].2),
        ("call-22", "low_score", Some(1))
    );
    // 24 went through a complaint queue: no low-score task.
    reply(store, &p, 24, "2", "k8", now).await;
    assert_eq!(store.follow_up_rows().await.unwrap().len(), 1);
    // Escalation: once.
    assert!(store
        .escalate_tasks(Millis(now + HOUR))
        .await
        .unwrap()
        .is_empty());
    let esc = store.escalate_tasks(Millis(now + 25 * HOUR)).await.unwrap();
    assert_eq!(esc.len(), 1);
    assert_eq!(esc[0].call_id, "call-22");
    assert!(store
        .escalate_tasks(Millis(now + 26 * HOUR))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.follow_up_rows().await.unwrap()[0].3,
        Some(Millis(now + 25 * HOUR))
    );

    // 23: TD -> opted out, one confirmation; STOP later -> no second confirmation.
    assert_eq!(
        reply(store, &p, 23, "TD", "k9", now).await,
        ReplyApplied::Applied { opted_out: true }
    );
    assert_eq!(state(store, 23).await, "opted_out");
    assert!(store
        .is_opted_out(&number_hash(KEY, &number(23)))
        .await
        .unwrap());
    assert_eq!(
        reply(store, &p, 23, "STOP", "k10", now + 1).await,
        ReplyApplied::Applied { opted_out: false }
    );
    let confirms = store
        .outbox_rows()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "opt_out_confirm")
        .count();
    assert_eq!(confirms, 1);
    // A later survey for that number is cancelled at claim time.
    let mut later = survey(23, T0, T0, false);
    if let Record::SurveyScheduled {
        survey_id, call_id, ..
    } = &mut later[1]
    {
        *survey_id = 30;
        *call_id = "call-30".into();
    }
    if let Record::CallStarted { call_id, .. } = &mut later[0] {
        *call_id = "call-30".into();
    }
    store.write_batch(&later).await.unwrap();
    let claimed = store.claim_due(Millis(now + 10), 10).await.unwrap();
    assert!(claimed.iter().all(|c| c.message_id != 30));
    assert_eq!(state(store, 30).await, "opted_out");
    assert_eq!(text_state(store, 30).await.0, "cancelled");

    // Unknown number, and a reply after the window: unmatched.
    reply(store, &p, 99, "5", "k11", now).await;
    reply(store, &p, 21, "5", "k12", T0 + 49 * HOUR).await;
    let inbound = store.inbound_rows().await.unwrap();
    let unmatched: Vec<_> = inbound.iter().filter(|r| r.0 == "unmatched").collect();
    assert_eq!(unmatched.len(), 2);
    assert!(unmatched.iter().all(|r| r.1.is_none()));
    // Every reply stored once: k1..k12 (k1 twice).
    assert_eq!(inbound.len(), 12);
}

both_backends!(
    claim_and_restart,
    claim_and_restart_sqlite,
    claim_and_restart_postgres
);
both_backends!(
    idempotent_transitions,
    idempotent_transitions_sqlite,
    idempotent_transitions_postgres
);
both_backends!(replies, replies_sqlite, replies_postgres);
