//! Storage tier: records -> rows -> reports, on SQLite and PostgreSQL.
//!
//! PostgreSQL: `CCSWITCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`) must be
//! reachable; each test creates `ccswitch_test_<random>` and drops it. An unreachable server
//! fails the tests unless `CCSWITCH_SKIP_PG=1`.

use ccswitch::engine::record::{EndedBy, IvrOutcome, Record};
use ccswitch::engine::time::Millis;
use ccswitch::kpi::{self, CallFacts, HoldSpan, Summary};
use ccswitch::store::report::{render_calls, ReportFormat};
use ccswitch::store::{spawn_writer, spawn_writer_with, Store, WriterConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::Connection;
use std::cell::Cell;

// ---------- databases ----------

/// A test database: the store, then what removes the database (fields drop in order).
struct TestDb {
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
        // Drop runs outside async (maybe while panicking): use a private runtime on a thread.
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

fn skip_pg() -> bool {
    std::env::var("CCSWITCH_SKIP_PG").is_ok_and(|v| v == "1")
}

/// `None` only when CCSWITCH_SKIP_PG=1; an unreachable server is a failure.
async fn pg_db() -> Option<TestDb> {
    if skip_pg() {
        eprintln!("CCSWITCH_SKIP_PG=1: skipping the PostgreSQL half of this test");
        return None;
    }
    let admin = std::env::var("CCSWITCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let name = format!("ccswitch_test_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} unreachable ({e}); set CCSWITCH_SKIP_PG=1 to skip")
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

fn full_call(id: &str, t: u64) -> Vec<Record> {
    let c = || id.to_string();
    vec![
        Record::CallStarted {
            call_id: c(),
            sip_call_id: format!("{id}@10.0.0.1"),
            caller: "+4930123456".into(),
            dialled: "800, \"billing\"".into(),
            transport: "udp".into(),
            arrived_at: Millis(t),
            ring_cycle_ms: 6_000,
        },
        Record::CallRinging {
            call_id: c(),
            ringing_at: Millis(t + 40),
        },
        Record::CallAnswered {
            call_id: c(),
            answered_at: Millis(t + 9_000),
            within_three_rings: true,
        },
        Record::IvrStep {
            call_id: c(),
            seq: 0,
            at: Millis(t + 9_010),
            node: "language".into(),
            kind: "language".into(),
            digits: Some("2".into()),
            detail: Some("lang=zh".into()),
        },
        Record::IvrStep {
            call_id: c(),
            seq: 1,
            at: Millis(t + 12_000),
            node: "main".into(),
            kind: "menu".into(),
            digits: None,
            detail: Some("timeout".into()),
        },
        Record::IvrStep {
            call_id: c(),
            seq: 2,
            at: Millis(t + 20_000),
            node: "order".into(),
            kind: "collect".into(),
            digits: Some("1234#".into()),
            detail: None,
        },
        Record::CallVariable {
            call_id: c(),
            at: Millis(t + 20_001),
            name: "order".into(),
            value: "12".into(),
        },
        Record::CallVariable {
            call_id: c(),
            at: Millis(t + 20_002),
            name: "order".into(),
            value: "1234".into(),
        },
        Record::HoldStarted {
            call_id: c(),
            at: Millis(t + 21_000),
        },
        Record::HoldEnded {
            call_id: c(),
            at: Millis(t + 24_500),
        },
        Record::IvrLeft {
            call_id: c(),
            at: Millis(t + 30_000),
            outcome: IvrOutcome::SelfServed,
        },
        Record::CallEnded {
            call_id: c(),
            ended_at: Millis(t + 31_000),
            ended_by: EndedBy::Caller,
            reason: "bye".into(),
            final_status: 200,
        },
    ]
}

// ---------- scenarios (run on both backends) ----------

async fn lifecycle(store: &Store) {
    let recs = full_call("c1", T0);
    // CallStarted in an earlier batch than the rest: later batches update its row.
    store.write_batch(&recs[..2]).await.unwrap();
    store.write_batch(&recs[2..7]).await.unwrap();
    store.write_batch(&recs[7..]).await.unwrap();
    store
        .write_batch(&full_call("c2", T0 + 100_000)[..1])
        .await
        .unwrap();

    let rows = store.calls(None, None).await.unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.call_id, "c1");
    assert_eq!(r.sip_call_id, "c1@10.0.0.1");
    assert_eq!(r.caller, "+4930123456");
    assert_eq!(r.transport, "udp");
    assert_eq!(r.arrived_at, Millis(T0));
    assert_eq!(r.ringing_at, Some(Millis(T0 + 40)));
    assert_eq!(r.answered_at, Some(Millis(T0 + 9_000)));
    assert_eq!(r.within_three_rings_recorded, Some(true));
    assert_eq!(r.within_three_rings, Some(true));
    assert_eq!(r.rings_before_answer, Some(1.5));
    assert_eq!(r.ring_cycle_ms, Some(6_000));
    assert_eq!(r.ivr_left_at, Some(Millis(T0 + 30_000)));
    assert_eq!(r.ivr_outcome, Some(IvrOutcome::SelfServed));
    assert_eq!(r.ended_at, Some(Millis(T0 + 31_000)));
    assert_eq!(r.ended_by, Some(EndedBy::Caller));
    assert_eq!(r.end_reason.as_deref(), Some("bye"));
    assert_eq!(r.final_status, Some(200));
    assert_eq!(r.last_event_at, Millis(T0 + 31_000));
    assert_eq!(r.hold_ms, 3_500);
    assert_eq!(r.ivr_path.len(), 3);
    assert_eq!(r.ivr_path[2].digits.as_deref(), Some("1234#"));
    assert_eq!(r.variables.get("order").map(String::as_str), Some("1234"));
    assert_eq!(store.ivr_steps("c1").await.unwrap(), r.ivr_path);
    assert_eq!(store.call("c1").await.unwrap().as_ref(), Some(r));

    // The second call: only started, so open.
    let r2 = &rows[1];
    assert_eq!(r2.answered_at, None);
    assert_eq!(r2.ended_at, None);
    assert_eq!(r2.rings_before_answer, None);

    // Range is [since, until) on arrived_at.
    assert_eq!(
        store.calls(Some(Millis(T0 + 1)), None).await.unwrap().len(),
        1
    );
    assert_eq!(store.calls(None, Some(Millis(T0))).await.unwrap().len(), 0);
    assert_eq!(
        store
            .calls(Some(Millis(T0)), Some(Millis(T0 + 1)))
            .await
            .unwrap()
            .len(),
        1
    );

    // JSON report, shape as in INTERFACES.md.
    let json: serde_json::Value =
        serde_json::from_str(&render_calls(&rows[..1], ReportFormat::Json)).unwrap();
    let c = &json["calls"][0];
    assert_eq!(c["call_id"], "c1");
    assert_eq!(c["caller"], "+4930123456");
    assert_eq!(c["arrived_at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(c["answered_at"], "2023-11-14T22:13:29.000Z");
    assert_eq!(c["arrived_at_ms"], T0);
    assert_eq!(c["ended_at_ms"], T0 + 31_000);
    assert_eq!(c["rings_before_answer"], 1.5);
    assert_eq!(c["within_three_rings"], true);
    assert_eq!(c["ivr_outcome"], "self_served");
    assert_eq!(c["ended_by"], "caller");
    assert_eq!(c["end_reason"], "bye");
    assert_eq!(c["final_status"], 200);
    assert_eq!(c["hold_ms"], 3_500);
    assert_eq!(c["variables"]["order"], "1234");
    assert_eq!(c["ivr_path"][0]["seq"], 0);
    assert_eq!(c["ivr_path"][0]["node"], "language");
    assert_eq!(c["ivr_path"][0]["kind"], "language");
    assert_eq!(c["ivr_path"][0]["digits"], "2");
    assert_eq!(c["ivr_path"][0]["detail"], "lang=zh");
    assert_eq!(c["ivr_path"][1]["digits"], serde_json::Value::Null);
    assert_eq!(c["ivr_path"][0]["at"], "2023-11-14T22:13:29.010Z");
    let open: serde_json::Value =
        serde_json::from_str(&render_calls(&rows[1..], ReportFormat::Json)).unwrap();
    assert_eq!(open["calls"][0]["ended_at"], serde_json::Value::Null);
    assert_eq!(open["calls"][0]["answered_at_ms"], serde_json::Value::Null);

    // CSV: header + one line per call, the dialled field (comma, quotes) quoted.
    let csv = render_calls(&rows, ReportFormat::Csv);
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("call_id,sip_call_id,caller,dialled,"));
    assert!(lines[1].contains(",\"800, \"\"billing\"\"\","));
    assert!(lines[1].contains("language[2]>main>order[1234#]"));

    let table = render_calls(&rows, ReportFormat::Table);
    assert!(table.contains("c1") && table.contains("+4930123456") && table.contains("2 call(s)"));
}

async fn retry_idempotent(store: &Store) {
    let mut recs = full_call("r1", T0);
    // An open hold and a second hold that ends: both must survive replays unchanged.
    recs.insert(
        9,
        Record::HoldStarted {
            call_id: "r1".into(),
            at: Millis(T0 + 25_000),
        },
    );
    recs.insert(
        10,
        Record::HoldEnded {
            call_id: "r1".into(),
            at: Millis(T0 + 26_000),
        },
    );
    store.write_batch(&recs[..1]).await.unwrap();
    store.write_batch(&recs[1..6]).await.unwrap();
    let once = store.calls(None, None).await.unwrap();
    // A retry of a committed batch (the commit's outcome was unknown), then the rest, twice.
    store.write_batch(&recs[1..6]).await.unwrap();
    assert_eq!(store.calls(None, None).await.unwrap(), once);
    store.write_batch(&recs[6..]).await.unwrap();
    let done = store.calls(None, None).await.unwrap();
    store.write_batch(&recs[6..]).await.unwrap();
    store.write_batch(&recs).await.unwrap();
    let again = store.calls(None, None).await.unwrap();
    assert_eq!(again, done);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].ivr_path.len(), 3);
    assert_eq!(again[0].hold_segments.len(), 2);
    assert_eq!(again[0].hold_ms, 3_500 + 1_000);
    assert_eq!(
        store.summary(None, None).await.unwrap(),
        Summary::of(&[again[0].facts()])
    );
}

async fn close_unfinished(store: &Store) {
    let open = full_call("open", T0);
    // Started, answered, one IVR step, on hold when the process died.
    let cut: Vec<Record> = open[..4]
        .iter()
        .cloned()
        .chain([Record::HoldStarted {
            call_id: "open".into(),
            at: Millis(T0 + 9_500),
        }])
        .collect();
    store.write_batch(&cut).await.unwrap();
    store.write_batch(&full_call("done", T0 + 1)).await.unwrap();
    // Unanswered and unfinished: no IVR outcome to invent beyond `failed`.
    store
        .write_batch(&full_call("ringing", T0 + 2)[..2])
        .await
        .unwrap();

    assert_eq!(store.close_unfinished().await.unwrap(), 2);
    let o = store.call("open").await.unwrap().unwrap();
    assert_eq!(o.ended_at, Some(Millis(T0 + 9_500)));
    assert_eq!(o.ended_by, Some(EndedBy::System));
    assert_eq!(
        o.end_reason.as_deref(),
        Some("error: unfinished at startup")
    );
    assert_eq!(o.ivr_outcome, Some(IvrOutcome::Failed));
    assert_eq!(o.ivr_left_at, Some(Millis(T0 + 9_500)));
    assert_eq!(
        o.hold_segments,
        vec![HoldSpan {
            started_at: Millis(T0 + 9_500),
            ended_at: Some(Millis(T0 + 9_500))
        }]
    );
    let r = store.call("ringing").await.unwrap().unwrap();
    assert_eq!(r.ended_at, Some(Millis(T0 + 2 + 40)));
    assert_eq!(r.ended_by, Some(EndedBy::System));
    assert_eq!(r.ivr_outcome, Some(IvrOutcome::Failed));
    let d = store.call("done").await.unwrap().unwrap();
    assert_eq!(d.ended_by, Some(EndedBy::Caller));
    assert_eq!(d.ivr_outcome, Some(IvrOutcome::SelfServed));
    assert_eq!(store.close_unfinished().await.unwrap(), 0);
}

async fn writer_flushes_everything(store: &Store) {
    let (sink, handle) = spawn_writer(store.clone());
    let calls = 1_000u64;
    let mut pushed = 0u64;
    for i in 0..calls {
        let id = format!("w{i}");
        // 10 records per call: started, ringing, answered, 3 steps, variable, hold x2, ended.
        for r in full_call(&id, T0 + i * 10)
            .into_iter()
            .enumerate()
            .filter(|(k, _)| *k != 7 && *k != 10)
            .map(|(_, r)| r)
        {
            sink.push(r);
            pushed += 1;
        }
    }
    assert_eq!(pushed, 10_000);
    let stats = handle.shutdown().await;
    assert_eq!(stats.written, 10_000, "{stats:?}");
    assert_eq!(stats.lost, 0);
    assert!(stats.batches >= 20);
    assert_eq!(sink.queue_depth(), 0);
    let rows = store.calls(None, None).await.unwrap();
    assert_eq!(rows.len() as u64, calls);
    assert!(rows
        .iter()
        .all(|r| r.ivr_path.len() == 3 && r.ended_at.is_some() && r.hold_ms == 3_500));
    // After shutdown a push is refused loudly (logged and counted), not silently queued.
    sink.push(full_call("late", T0)[0].clone());
    assert!(store.call("late").await.unwrap().is_none());
}

// ---------- kpi.rs == SQL ----------

#[derive(Clone, Debug)]
struct CallSpec {
    arrive_off: u64,
    ring_cycle_ms: u64,
    answer_delay: Option<u64>,
    outcome: Option<IvrOutcome>,
    /// (gap before the hold, its length; None = never ended)
    holds: Vec<(u64, Option<u64>)>,
    end_after: Option<u64>,
    batch_size: usize,
}

fn outcome() -> impl Strategy<Value = Option<IvrOutcome>> {
    prop_oneof![
        Just(None),
        Just(Some(IvrOutcome::SelfServed)),
        Just(Some(IvrOutcome::Queued)),
        Just(Some(IvrOutcome::Transferred)),
        Just(Some(IvrOutcome::AbandonedInIvr)),
        Just(Some(IvrOutcome::Failed)),
    ]
}

fn call_spec() -> impl Strategy<Value = CallSpec> {
    (
        0u64..3_600_000,
        prop_oneof![Just(5_000u64), Just(6_000u64)],
        proptest::option::of(0u64..40_000),
        outcome(),
        proptest::collection::vec((0u64..5_000, proptest::option::of(1u64..60_000)), 0..3),
        proptest::option::of(0u64..100_000),
        1usize..8,
    )
        .prop_map(
            |(arrive_off, ring_cycle_ms, answer_delay, outcome, holds, end_after, batch_size)| {
                CallSpec {
                    arrive_off,
                    ring_cycle_ms,
                    answer_delay,
                    outcome,
                    holds,
                    end_after,
                    batch_size,
                }
            },
        )
}

/// The records of one spec'd call, and its facts computed straight from the spec.
fn spec_records(id: &str, base: u64, s: &CallSpec) -> (Vec<Record>, CallFacts) {
    let arrived = base + s.arrive_off;
    let mut recs = vec![Record::CallStarted {
        call_id: id.into(),
        sip_call_id: id.into(),
        caller: "100".into(),
        dialled: "800".into(),
        transport: "tcp".into(),
        arrived_at: Millis(arrived),
        ring_cycle_ms: s.ring_cycle_ms,
    }];
    let mut t = arrived;
    let mut spans = Vec::new();
    let mut outcome = None;
    let mut answered_at = None;
    if let Some(d) = s.answer_delay {
        t += d;
        answered_at = Some(Millis(t));
        recs.push(Record::CallAnswered {
            call_id: id.into(),
            answered_at: Millis(t),
            within_three_rings: d <= 3 * s.ring_cycle_ms,
        });
        for (i, (gap, len)) in s.holds.iter().enumerate() {
            t += gap + 1;
            recs.push(Record::HoldStarted {
                call_id: id.into(),
                at: Millis(t),
            });
            let start = t;
            // Only the last hold may stay open.
            let len = if i + 1 == s.holds.len() {
                *len
            } else {
                Some(len.unwrap_or(1))
            };
            let end = len.map(|l| {
                t += l;
                recs.push(Record::HoldEnded {
                    call_id: id.into(),
                    at: Millis(t),
                });
                Millis(t)
            });
            spans.push(HoldSpan {
                started_at: Millis(start),
                ended_at: end,
            });
        }
        if let Some(o) = s.outcome {
            t += 1;
            outcome = Some(o);
            recs.push(Record::IvrLeft {
                call_id: id.into(),
                at: Millis(t),
                outcome: o,
            });
        }
    }
    let mut ended_at = None;
    if let Some(e) = s.end_after {
        t += e;
        ended_at = Some(Millis(t));
        recs.push(Record::CallEnded {
            call_id: id.into(),
            ended_at: Millis(t),
            ended_by: EndedBy::Caller,
            reason: "bye".into(),
            final_status: 200,
        });
    }
    let last_event = recs.iter().map(Record::at).max().unwrap_or(Millis(arrived));
    let facts = CallFacts {
        arrived_at: Millis(arrived),
        answered_at,
        ring_cycle_ms: Some(s.ring_cycle_ms),
        ivr_outcome: outcome,
        hold_ms: kpi::hold_ms(&spans, ended_at, last_event),
    };
    (recs, facts)
}

/// Writes random call sets, each case in its own time window, and checks that the Rust
/// summary (of the spec, and of the rows read back) equals the SQL summary.
fn kpi_matches_sql(open: impl std::future::Future<Output = Option<TestDb>>, cases: u32) {
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
    let case = Cell::new(0u64);
    let result = runner.run(&proptest::collection::vec(call_spec(), 0..12), |specs| {
        case.set(case.get() + 1);
        let base = T0 + case.get() * 10_000_000_000;
        let window = (Some(Millis(base)), Some(Millis(base + 5_000_000_000)));
        rt.block_on(async {
            let mut facts = Vec::new();
            for (i, s) in specs.iter().enumerate() {
                let (recs, f) = spec_records(&format!("p{}-{i}", case.get()), base, s);
                for chunk in recs.chunks(s.batch_size) {
                    store
                        .write_batch(chunk)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                facts.push(f);
            }
            let rows = store
                .calls(window.0, window.1)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let sql = store
                .summary(window.0, window.1)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let from_rows = Summary::of(&rows.iter().map(|r| r.facts()).collect::<Vec<_>>());
            let from_spec = Summary::of(&facts);
            prop_assert_eq!(rows.len(), specs.len());
            prop_assert_eq!(from_rows, sql);
            prop_assert_eq!(from_spec, sql);
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("kpi != SQL: {e}");
    }
    drop(db);
}

// ---------- the tests ----------

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

both_backends!(lifecycle, lifecycle_sqlite, lifecycle_postgres);
both_backends!(
    retry_idempotent,
    retry_idempotent_sqlite,
    retry_idempotent_postgres
);
both_backends!(
    close_unfinished,
    close_unfinished_sqlite,
    close_unfinished_postgres
);
both_backends!(
    writer_flushes_everything,
    writer_flushes_everything_sqlite,
    writer_flushes_everything_postgres
);

#[test]
fn kpi_matches_sql_sqlite() {
    kpi_matches_sql(sqlite_db(), 48);
}

#[test]
fn kpi_matches_sql_postgres() {
    kpi_matches_sql(pg_db(), 16);
}

/// The database refuses writes for a while (a trigger stands in for a locked or unreachable
/// database): the writer retries the same batch and, once it goes through, nothing is lost
/// and nothing is doubled.
#[tokio::test]
async fn writer_retries_until_the_database_takes_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.db");
    let store = Store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let mut side = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE fail_switch (x INTEGER); INSERT INTO fail_switch VALUES (1); \
         CREATE TRIGGER refuse BEFORE INSERT ON calls WHEN EXISTS (SELECT 1 FROM fail_switch) \
         BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;",
    )
    .execute(&mut side)
    .await
    .unwrap();

    // To the writer a refusing trigger looks like a poison record (the database answers);
    // here it stands for an outage, so no isolating.
    let cfg = WriterConfig {
        refusals_before_isolating: u32::MAX,
        ..WriterConfig::default()
    };
    let (sink, handle) = spawn_writer_with(store.clone(), cfg);
    for r in full_call("retry", T0) {
        sink.push(r);
    }
    // Bounded wait for the writer to have failed at least once.
    for _ in 0..400 {
        if handle.stats().errors > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        handle.stats().errors > 0,
        "the trigger should have refused the first attempt"
    );
    assert_eq!(handle.stats().written, 0);
    sqlx::raw_sql("DELETE FROM fail_switch")
        .execute(&mut side)
        .await
        .unwrap();
    let stats = handle.shutdown().await;
    assert_eq!(stats.written, 12, "{stats:?}");
    assert_eq!(stats.lost, 0);
    let rows = store.calls(None, None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].ivr_path.len(), 3);
    assert_eq!(rows[0].ended_by, Some(EndedBy::Caller));
}

/// One record the database refuses while accepting everything else (a trigger plays the
/// poison): it is dropped, counted and logged; its neighbours in the batch are written.
#[tokio::test]
async fn writer_isolates_a_record_the_database_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("calls.db").display());
    let store = Store::open(&url).await.unwrap();
    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TRIGGER poison BEFORE UPDATE ON calls WHEN NEW.caller = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poison record'); END;",
    )
    .execute(&mut side)
    .await
    .unwrap();
    let mut bad = full_call("bad", T0 + 1);
    if let Record::CallStarted { caller, .. } = &mut bad[0] {
        *caller = "poison".into();
    }
    let (sink, handle) = spawn_writer(store.clone());
    for r in full_call("good", T0).into_iter().chain(bad) {
        sink.push(r);
    }
    let stats = handle.shutdown().await;
    assert_eq!(stats.lost, 1, "{stats:?}");
    assert_eq!(stats.written, 23, "{stats:?}");
    let good = store.call("good").await.unwrap().unwrap();
    assert_eq!(good.ivr_path.len(), 3);
    assert_eq!(good.ended_by, Some(EndedBy::Caller));
    // Everything but the refused CallStarted of "bad" is there.
    let bad = store.call("bad").await.unwrap().unwrap();
    assert_eq!(bad.caller, "");
    assert_eq!(bad.ivr_path.len(), 3);
    assert_eq!(bad.ended_at, Some(Millis(T0 + 1 + 31_000)));
}

/// A database that never takes the records: shutdown still ends, and says what it lost.
#[tokio::test]
async fn shutdown_gives_up_loudly_on_a_dead_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("calls.db").display());
    let store = Store::open(&url).await.unwrap();
    let mut side = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TRIGGER refuse BEFORE INSERT ON calls BEGIN SELECT RAISE(ABORT, 'down'); END;",
    )
    .execute(&mut side)
    .await
    .unwrap();
    let cfg = WriterConfig {
        max_batch: 5,
        backoff_start: std::time::Duration::from_millis(1),
        attempts_after_shutdown: 3,
        refusals_before_isolating: u32::MAX,
        ..WriterConfig::default()
    };
    let (sink, handle) = spawn_writer_with(store.clone(), cfg);
    for r in full_call("x", T0) {
        sink.push(r);
    }
    let stats = handle.shutdown().await;
    assert_eq!(stats.written, 0);
    assert_eq!(stats.lost, 12, "{stats:?}");
    assert!(stats.errors >= 3);
}

#[tokio::test]
async fn survives_reopen_and_nul_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("x.db").display());
    let store = Store::open(&url).await.unwrap();
    let mut recs = full_call("n1", T0);
    if let Record::CallStarted { caller, .. } = &mut recs[0] {
        *caller = "bad\0caller".into();
    }
    store.write_batch(&recs).await.unwrap();
    store.close().await;
    let store = Store::open(&url).await.unwrap();
    let rows = store.calls(None, None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].caller.contains('\0'));
}
