//! Dispositions (issue 10) in the store, on SQLite and PostgreSQL: `DispositionSet` rows
//! (last wins, history kept, replay-safe), the tasks they open and close, the calls report,
//! and `kpi::resolution` == `Store::resolution_stats` (property test).
//!
//! PostgreSQL: `CCSWITCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`) must be
//! reachable; each test creates `ccswitch_test_<random>` and drops it. An unreachable server
//! fails the tests unless `CCSWITCH_TEST_SKIP_POSTGRES=1`.

use ccswitch::engine::record::{EndedBy, Record};
use ccswitch::engine::time::Millis;
use ccswitch::kpi::resolution::{self, ResolutionFacts, ResolutionGroup};
use ccswitch::kpi::{Interval, Range};
use ccswitch::store::report::{render_calls, ReportFormat};
use ccswitch::store::{Store, TaskFilter};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::Connection;
use std::cell::Cell;

// ---------- databases (as tests/storage.rs) ----------

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

async fn sqlite_db() -> Option<TestDb> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("calls.db");
    let store = Store::open(&format!("sqlite:{}", path.display()))
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

// ---------- records ----------

const T0: u64 = 1_700_000_000_000;
const DAY: u64 = 86_400_000;

/// A call from `caller` queued in `queue` (if any) and answered by `agent` (if any), ended.
fn call(id: &str, caller: &str, t: u64, queue: Option<&str>, agent: Option<&str>) -> Vec<Record> {
    let mut r = vec![Record::CallStarted {
        call_id: id.into(),
        sip_call_id: format!("{id}@10.0.0.1"),
        caller: caller.into(),
        dialled: "800".into(),
        transport: "udp".into(),
        arrived_at: Millis(t),
        ring_cycle_ms: 6_000,
    }];
    if let Some(q) = queue {
        r.push(Record::CallQueued {
            call_id: id.into(),
            at: Millis(t + 10_000),
            queue: q.into(),
            priority: 0,
        });
        if let Some(a) = agent {
            r.push(Record::AgentAnswered {
                call_id: id.into(),
                agent: a.into(),
                at: Millis(t + 20_000),
            });
        }
    }
    r.push(Record::CallEnded {
        call_id: id.into(),
        ended_at: Millis(t + 100_000),
        ended_by: EndedBy::Caller,
        reason: "bye".into(),
        final_status: 200,
    });
    r
}

fn disposition(
    id: &str,
    at: u64,
    code: u8,
    name: &str,
    resolved: bool,
    note: Option<&str>,
) -> Record {
    Record::DispositionSet {
        call_id: id.into(),
        agent: "1001".into(),
        at: Millis(at),
        code,
        name: name.into(),
        resolved,
        queue: Some("tech".into()),
        note: note.map(str::to_string),
    }
}

fn task(id: &str, at: u64, name: &str) -> Record {
    Record::FollowUpOpened {
        call_id: id.into(),
        at: Millis(at),
        agent: Some("1001".into()),
        queue: Some("tech".into()),
        reason: format!("disposition:{name}"),
        due_at: Millis(at + DAY),
    }
}

fn run(f: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f);
}

// ---------- last wins, history, tasks, report ----------

async fn stored_last_wins_with_history_and_tasks(db: Option<TestDb>) {
    let Some(db) = db else { return };
    let s = &db.store;
    let t = T0;
    s.write_batch(&call("d1", "+8613812345678", t, Some("tech"), Some("1001")))
        .await
        .unwrap();
    // *42 in wrap-up: follow-up needed with its task; replayed batches change nothing.
    let first = [
        disposition("d1", t + 110_000, 2, "follow_up", false, None),
        task("d1", t + 110_000, "follow_up"),
    ];
    s.write_batch(&first).await.unwrap();
    s.write_batch(&first).await.unwrap();
    let tasks = s
        .list_follow_up_tasks(&TaskFilter::default())
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].reason, "disposition:follow_up");
    assert_eq!(tasks[0].agent.as_deref(), Some("1001"));
    assert_eq!(tasks[0].due_at, Millis(t + 110_000 + DAY));

    // The agent corrects it to resolved with a note: the call shows resolved, the task closes.
    s.write_batch(&[disposition(
        "d1",
        t + 120_000,
        1,
        "resolved",
        true,
        Some("refund agreed, \"no\" callback, 退款"),
    )])
    .await
    .unwrap();
    let row = s.call("d1").await.unwrap().expect("the call");
    let d = row.disposition.clone().expect("a disposition");
    assert_eq!((d.name.as_str(), d.code, d.resolved), ("resolved", 1, true));
    assert_eq!(
        d.note.as_deref(),
        Some("refund agreed, \"no\" callback, 退款")
    );
    assert_eq!(d.agent.as_deref(), Some("1001"));
    assert_eq!(d.at, Millis(t + 120_000));
    assert!(s
        .list_follow_up_tasks(&TaskFilter::default())
        .await
        .unwrap()
        .is_empty());

    // A late-arriving older disposition goes to the history only.
    s.write_batch(&[disposition(
        "d1",
        t + 115_000,
        4,
        "wrong_queue",
        false,
        None,
    )])
    .await
    .unwrap();
    let row = s.call("d1").await.unwrap().unwrap();
    assert_eq!(row.disposition.as_ref().unwrap().name, "resolved");
    let history = s.call_dispositions("d1").await.unwrap();
    let names: Vec<&str> = history.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["follow_up", "wrong_queue", "resolved"]);
    assert!(history[2].resolved && !history[0].resolved);

    // Back to follow-up: the closed task opens again.
    s.write_batch(&[
        disposition("d1", t + 130_000, 2, "follow_up", false, None),
        task("d1", t + 130_000, "follow_up"),
    ])
    .await
    .unwrap();
    let tasks = s
        .list_follow_up_tasks(&TaskFilter::default())
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].due_at, Millis(t + 130_000 + DAY));
    // A code without a note keeps the call's note.
    let row = s.call("d1").await.unwrap().unwrap();
    let d = row.disposition.as_ref().unwrap();
    assert_eq!(d.name, "follow_up");
    assert_eq!(
        d.note.as_deref(),
        Some("refund agreed, \"no\" callback, 退款")
    );

    // The calls report shows it.
    s.write_batch(&[disposition(
        "d1",
        t + 140_000,
        2,
        "follow_up",
        false,
        Some("call back Monday, order 1234"),
    )])
    .await
    .unwrap();
    let rows = s.calls(None, None).await.unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&render_calls(&rows, ReportFormat::Json)).unwrap();
    let d = &json["calls"][0]["disposition"];
    assert_eq!(d["name"], "follow_up");
    assert_eq!(d["code"], 2);
    assert_eq!(d["resolved"], false);
    assert_eq!(d["note"], "call back Monday, order 1234");
    assert_eq!(d["agent"], "1001");
    let csv = render_calls(&rows, ReportFormat::Csv);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert!(header.ends_with(&[
        "disposition",
        "disposition_resolved",
        "disposition_note",
        "disposition_agent",
        "disposition_at"
    ]));
    let line = lines.next().unwrap();
    assert!(
        line.contains(",follow_up,false,\"call back Monday, order 1234\",1001,"),
        "{line}"
    );
    let table = render_calls(&rows, ReportFormat::Table);
    assert!(table.lines().next().unwrap().ends_with("disposition  note"));
    assert!(table.contains("follow_up") && table.contains("call back Monday"));
    // Masking of the caller is unchanged.
    assert!(table.contains("138****5678") && !table.contains("13812345678"));
}

#[test]
fn stored_last_wins_with_history_and_tasks_sqlite() {
    run(async { stored_last_wins_with_history_and_tasks(sqlite_db().await).await });
}

#[test]
fn stored_last_wins_with_history_and_tasks_postgres() {
    run(async { stored_last_wins_with_history_and_tasks(pg_db().await).await });
}

// ---------- kpi::resolution == SQL ----------

const NAMES: [(&str, bool); 4] = [
    ("resolved", true),
    ("follow_up", false),
    ("info_only", true),
    ("wrong_queue", false),
];

#[derive(Clone, Debug)]
struct CallSpec {
    caller: usize,
    arrive_off: u64,
    queue: Option<usize>,
    answered_by: Option<usize>,
    /// Up to two dispositions (index into NAMES); the second is later and wins.
    dispositions: Vec<usize>,
}

fn call_spec() -> impl Strategy<Value = CallSpec> {
    (
        0usize..5,
        0u64..12 * DAY,
        proptest::option::of(0usize..2),
        proptest::option::of(0usize..3),
        proptest::collection::vec(0usize..4, 0..3),
    )
        .prop_map(
            |(caller, arrive_off, queue, answered_by, dispositions)| CallSpec {
                caller,
                arrive_off,
                queue,
                answered_by,
                dispositions,
            },
        )
}

#[derive(Clone, Debug)]
struct Case {
    calls: Vec<CallSpec>,
    since_off: u64,
    len: u64,
    quarter: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(call_spec(), 0..14),
        0u64..3 * DAY,
        1u64..8 * DAY,
        any::<bool>(),
    )
        .prop_map(|(calls, since_off, len, quarter)| Case {
            calls,
            since_off,
            len,
            quarter,
        })
}

fn resolution_matches_sql(open: impl std::future::Future<Output = Option<TestDb>>, cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = rt.block_on(open) else { return };
    let store = &db.store;
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let n = Cell::new(0u64);
    // How many groups had repeats and dispositions: the property must not hold vacuously.
    let seen = Cell::new((0u64, 0u64));
    let result = runner.run(&case(), |cs| {
        n.set(n.get() + 1);
        let k = n.get();
        // Each case has its own time span and callers, so earlier cases never interfere.
        let base = T0 + k * 100 * DAY;
        let since = Millis(base + cs.since_off);
        let range = Range {
            since: Some(since),
            until: Some(since.plus(cs.len)),
        };
        let interval = if cs.quarter {
            Interval::Quarter
        } else {
            Interval::Day
        };
        let fail = |e: ccswitch::store::StoreError| TestCaseError::fail(e.to_string());
        rt.block_on(async {
            let mut spec = Vec::new();
            for (i, c) in cs.calls.iter().enumerate() {
                let id = format!("r{k}-{i}");
                let caller = if c.caller == 4 {
                    "anonymous".to_string()
                } else {
                    format!("+86138{k:04}{:04}", c.caller)
                };
                let t = base + c.arrive_off;
                let queue = c.queue.map(|q| ["tech", "sales"][q]);
                let agent = c.answered_by.map(|a| format!("a{k}-{a}"));
                let mut recs = call(&id, &caller, t, queue, agent.as_deref());
                let mut last = None;
                for (j, d) in c.dispositions.iter().enumerate() {
                    let (name, resolved) = NAMES[*d];
                    let at = t + 200_000 + j as u64 * 1_000;
                    recs.push(disposition(&id, at, *d as u8 + 1, name, resolved, None));
                    last = Some((name, resolved));
                }
                store.write_batch(&recs).await.map_err(fail)?;
                let answered = queue.is_some() && agent.is_some();
                spec.push(ResolutionFacts {
                    arrived_at: Millis(t),
                    caller,
                    queue: queue.map(str::to_string),
                    queued_at: queue.map(|_| Millis(t + 10_000)),
                    agent: agent.filter(|_| answered),
                    agent_answered_at: answered.then_some(Millis(t + 20_000)),
                    disposition: last.map(|l| l.0.to_string()),
                    disposition_resolved: last.is_some_and(|l| l.1),
                });
            }
            let read = store.resolution_facts(range).await.map_err(fail)?;
            for group in [ResolutionGroup::Queue, ResolutionGroup::Agent] {
                let sql: std::collections::BTreeMap<_, _> = store
                    .resolution_stats(group, range, interval)
                    .await
                    .map_err(fail)?
                    .into_iter()
                    .map(|(g, b, s)| ((g, b), s))
                    .collect();
                let from_spec = resolution::resolution_stats(&spec, group, range, interval);
                let from_rows = resolution::resolution_stats(&read, group, range, interval);
                prop_assert_eq!(&from_spec, &sql, "{:?}", group);
                prop_assert_eq!(&from_rows, &sql, "{:?}", group);
                let (r, d) = seen.get();
                seen.set((
                    r + sql.values().map(|s| s.repeated).sum::<u64>(),
                    d + sql.values().map(|s| s.dispositioned).sum::<u64>(),
                ));
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("kpi::resolution != SQL: {e}");
    }
    let (repeated, dispositioned) = seen.get();
    assert!(repeated > 0 && dispositioned > 0, "{:?}", seen.get());
    drop(db);
}

#[test]
fn resolution_kpis_match_sql_sqlite() {
    resolution_matches_sql(sqlite_db(), 48);
}

#[test]
fn resolution_kpis_match_sql_postgres() {
    resolution_matches_sql(pg_db(), 16);
}
