//! Storage tier: records -> rows -> reports, on SQLite and PostgreSQL.
//!
//! PostgreSQL: `CCSWITCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`) must be
//! reachable; each test creates `ccswitch_test_<random>` and drops it. An unreachable server
//! fails the tests unless `CCSWITCH_TEST_SKIP_POSTGRES=1`.

use ccswitch::engine::record::{EndedBy, IvrOutcome, Record};
use ccswitch::engine::time::Millis;
use ccswitch::kpi::{
    self, AgentStats, CallFacts, CallTimes, HoldSpan, Interval, OfferFacts, Range, StateChange,
    Summary,
};
use ccswitch::store::report::{render_agents, render_calls, render_queues, ReportFormat};
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
    std::env::var("CCSWITCH_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

/// `None` only when CCSWITCH_TEST_SKIP_POSTGRES=1; an unreachable server is a failure.
async fn pg_db() -> Option<TestDb> {
    if skip_pg() {
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
    assert_eq!(c["caller"], "+49 301*3456", "reports mask numbers");
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
    assert!(table.contains("c1") && table.contains("+49 301*3456") && table.contains("2 call(s)"));
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

// ---------- agents and queues ----------

/// A queued call: ringing agent bob times out, alice answers, holds, the caller hangs up,
/// alice wraps up; recorded, then transferred (after the fact, for the fields).
fn agent_call(id: &str, t: u64) -> Vec<Record> {
    let c = || id.to_string();
    let mut recs = full_call(id, t);
    // Replace the IVR outcome and the end: the call leaves the IVR for a queue.
    recs.retain(|r| !matches!(r, Record::IvrLeft { .. } | Record::CallEnded { .. }));
    recs.extend([
        Record::IvrLeft {
            call_id: c(),
            at: Millis(t + 30_000),
            outcome: IvrOutcome::Queued,
        },
        Record::CallQueued {
            call_id: c(),
            at: Millis(t + 30_000),
            queue: "support".into(),
            priority: 1,
        },
        Record::OfferStarted {
            call_id: c(),
            attempt: 1,
            agent: "bob".into(),
            at: Millis(t + 31_000),
        },
        Record::OfferEnded {
            call_id: c(),
            attempt: 1,
            at: Millis(t + 46_000),
            outcome: "no_answer".into(),
        },
        Record::OfferStarted {
            call_id: c(),
            attempt: 2,
            agent: "alice".into(),
            at: Millis(t + 46_100),
        },
        Record::OfferEnded {
            call_id: c(),
            attempt: 2,
            at: Millis(t + 50_000),
            outcome: "answered".into(),
        },
        Record::AgentAnswered {
            call_id: c(),
            agent: "alice".into(),
            at: Millis(t + 50_000),
        },
        Record::HoldStarted {
            call_id: c(),
            at: Millis(t + 60_000),
        },
        Record::HoldEnded {
            call_id: c(),
            at: Millis(t + 70_000),
        },
        Record::CallTransferred {
            call_id: c(),
            at: Millis(t + 80_000),
            target: "queue:complaints".into(),
            by: "alice".into(),
        },
        Record::CallEnded {
            call_id: c(),
            ended_at: Millis(t + 170_000),
            ended_by: EndedBy::Caller,
            reason: "bye".into(),
            final_status: 200,
        },
        Record::RecordingSaved {
            call_id: c(),
            at: Millis(t + 170_100),
            path: format!("recordings/{id}.wav"),
        },
        Record::WrapUpEnded {
            call_id: c(),
            agent: "alice".into(),
            at: Millis(t + 200_000),
        },
    ]);
    recs
}

fn state(agent: &str, at: u64, state: &str, reason: Option<&str>) -> Record {
    Record::AgentStateChanged {
        agent: agent.into(),
        at: Millis(at),
        state: state.into(),
        reason: reason.map(String::from),
    }
}

async fn agents_and_queues(store: &Store) {
    let recs = agent_call("q1", T0);
    // Written in uneven batches, then everything replayed: nothing doubles.
    for chunk in recs.chunks(5) {
        store.write_batch(chunk).await.unwrap();
    }
    store.write_batch(&recs).await.unwrap();
    let states = [
        state("alice", T0, "ready", None),
        state("alice", T0 + 46_100, "reserved", None),
        state("alice", T0 + 50_000, "on_call", None),
        state("alice", T0 + 170_000, "wrap_up", None),
        state("alice", T0 + 200_000, "not_ready", Some("break")),
        state("alice", T0 + 300_000, "ready", None),
        state("bob", T0, "ready", None),
        state("bob", T0 + 46_000, "not_ready", Some("missed_call")),
    ];
    store.write_batch(&states).await.unwrap();
    store.write_batch(&states[2..5]).await.unwrap();
    // Abandoned after 3 s in queue (short), and after 30 s (long).
    for (id, wait) in [("ab1", 3_000u64), ("ab2", 30_000)] {
        let t = T0 + 1_000;
        store
            .write_batch(&[
                full_call(id, t)[0].clone(),
                Record::CallQueued {
                    call_id: id.into(),
                    at: Millis(t + 10_000),
                    queue: "support".into(),
                    priority: 0,
                },
                Record::CallbackRequested {
                    call_id: id.into(),
                    at: Millis(t + 10_000 + wait),
                    queue: "support".into(),
                    number: "+4930999".into(),
                },
                Record::CallEnded {
                    call_id: id.into(),
                    ended_at: Millis(t + 10_000 + wait),
                    ended_by: EndedBy::Caller,
                    reason: "bye".into(),
                    final_status: 200,
                },
            ])
            .await
            .unwrap();
    }

    let r = store.call("q1").await.unwrap().unwrap();
    assert_eq!(r.queue.as_deref(), Some("support"));
    assert_eq!(r.queue_priority, Some(1));
    assert_eq!(r.queued_at, Some(Millis(T0 + 30_000)));
    assert_eq!(r.agent.as_deref(), Some("alice"));
    assert_eq!(r.agent_answered_at, Some(Millis(T0 + 50_000)));
    assert_eq!(r.wrapup_ended_at, Some(Millis(T0 + 200_000)));
    assert_eq!(r.recording_path.as_deref(), Some("recordings/q1.wav"));
    assert_eq!(r.transferred_to.as_deref(), Some("queue:complaints"));
    assert_eq!(r.transferred_by.as_deref(), Some("alice"));
    assert_eq!(r.offers.len(), 2);
    assert_eq!(r.offers[0].agent, "bob");
    assert_eq!(r.offers[0].outcome.as_deref(), Some("no_answer"));
    assert_eq!(r.offers[1].offered_at, Millis(T0 + 46_100));
    assert_eq!(r.offers[1].ended_at, Some(Millis(T0 + 50_000)));
    // Hold: the IVR-time hold (3.5 s) and the agent's (10 s): every segment counts.
    assert_eq!(r.hold_ms, 13_500);
    assert_eq!(r.frt_ms, Some(50_000));
    assert_eq!(r.queue_wait_ms, Some(20_000));
    assert_eq!(r.talk_ms, Some(120_000 - 13_500));
    assert_eq!(r.acw_ms, Some(30_000));
    assert_eq!(r.aht_ms, Some(150_000));
    assert!(!r.abandoned);
    let figs = store.call_figures(Range::default()).await.unwrap();
    assert!(figs.contains(&r.figures()));
    let rows = store.calls(None, None).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().find(|c| c.call_id == "q1"), Some(&r));
    let ab1 = rows.iter().find(|c| c.call_id == "ab1").unwrap();
    assert!(ab1.abandoned && ab1.short_abandon);
    assert_eq!(ab1.queue_wait_ms, Some(3_000));
    assert_eq!(store.callbacks(Range::default()).await.unwrap().len(), 2);

    // Per queue: the SQL query and kpi.rs agree, with the hand-worked figures.
    let range = Range::default();
    let sql = store
        .queue_stats(range, Interval::Day, kpi::DEFAULT_SERVICE_LEVEL_MS)
        .await
        .unwrap();
    let times: Vec<CallTimes> = rows.iter().map(|c| c.times()).collect();
    let rust = kpi::queue_stats(&times, range, Interval::Day, kpi::DEFAULT_SERVICE_LEVEL_MS);
    assert_eq!(sql, flatten(&rust));
    assert_eq!(sql.len(), 1);
    let q = sql[0].2;
    assert_eq!(
        (q.offered, q.answered, q.abandoned, q.short_abandoned),
        (3, 1, 2, 1)
    );
    assert_eq!(q.answered_within_sl, 1);
    assert_eq!(q.service_level(), Some(0.5));
    assert_eq!(q.asa_ms(), Some(20_000.0));
    assert_eq!(q.aht_ms(), Some(150_000.0));

    // Per agent, over [T0, T0 + 400 s): alice staffed except her 100 s break.
    let until = Millis(T0 + 400_000);
    let sql = store
        .agent_stats(Some(Millis(T0)), until, Interval::Quarter)
        .await
        .unwrap();
    let offers = store.offer_facts(range).await.unwrap();
    let changes = store.agent_state_changes().await.unwrap();
    assert_eq!(changes.len(), 8);
    let rust = kpi::agent_stats(
        &times,
        &offers,
        &changes,
        Some(Millis(T0)),
        until,
        Interval::Quarter,
    );
    assert_eq!(sql, flatten(&rust));
    let alice: AgentStats = sql
        .iter()
        .filter(|(a, _, _)| a == "alice")
        .fold(AgentStats::default(), |acc, (_, _, s)| add_agent(acc, s));
    assert_eq!(alice.staffed_ms, 300_000);
    assert_eq!(alice.offers_answered, 1);
    assert_eq!(alice.aht_ms_total, 150_000);
    assert_eq!(alice.occupancy(), Some(0.5));
    let bob: AgentStats = sql
        .iter()
        .filter(|(a, _, _)| a == "bob")
        .fold(AgentStats::default(), |acc, (_, _, s)| add_agent(acc, s));
    assert_eq!(bob.staffed_ms, 46_000);
    assert_eq!(bob.offers_no_answer, 1);

    // Reports render the same figures.
    let json: serde_json::Value =
        serde_json::from_str(&render_calls(std::slice::from_ref(&r), ReportFormat::Json)).unwrap();
    let c = &json["calls"][0];
    assert_eq!(c["queue"], "support");
    assert_eq!(c["agent"], "alice");
    assert_eq!(c["queued_at_ms"], T0 + 30_000);
    assert_eq!(c["agent_answered_at_ms"], T0 + 50_000);
    assert_eq!(c["wrapup_ended_at_ms"], T0 + 200_000);
    assert_eq!(c["frt_ms"], 50_000);
    assert_eq!(c["queue_wait_ms"], 20_000);
    assert_eq!(c["talk_ms"], 106_500);
    assert_eq!(c["hold_ms"], 13_500);
    assert_eq!(c["acw_ms"], 30_000);
    assert_eq!(c["aht_ms"], 150_000);
    assert_eq!(c["abandoned"], false);
    assert_eq!(c["recording_path"], "recordings/q1.wav");
    assert_eq!(c["offers"][0]["attempt"], 1);
    assert_eq!(c["offers"][0]["agent"], "bob");
    assert_eq!(c["offers"][0]["outcome"], "no_answer");
    assert_eq!(c["offers"][1]["offered_at_ms"], T0 + 46_100);
    let queues = store
        .queue_stats(range, Interval::Day, kpi::DEFAULT_SERVICE_LEVEL_MS)
        .await
        .unwrap();
    let system = store
        .summary_by_interval(range, Interval::Day)
        .await
        .unwrap();
    let targets = kpi::ServiceLevelTargets::default();
    let qj: serde_json::Value = serde_json::from_str(&render_queues(
        &queues,
        &system,
        &targets,
        &Default::default(),
        Interval::Day,
        ReportFormat::Json,
    ))
    .unwrap();
    assert_eq!(qj["queues"][0]["queue"], "support");
    assert_eq!(qj["queues"][0]["offered"], 3);
    assert_eq!(qj["queues"][0]["service_level"], 0.5);
    assert_eq!(qj["queues"][0]["short_abandoned"], 1);
    assert_eq!(qj["system"][0]["calls"], 3);
    let table = render_queues(
        &queues,
        &system,
        &targets,
        &Default::default(),
        Interval::Day,
        ReportFormat::Table,
    );
    assert!(table.contains("support"));
    let csv = render_queues(
        &queues,
        &system,
        &targets,
        &Default::default(),
        Interval::Day,
        ReportFormat::Csv,
    );
    assert!(csv.lines().count() >= 2);
    let aj: serde_json::Value = serde_json::from_str(&render_agents(
        &sql,
        &Default::default(),
        Interval::Quarter,
        ReportFormat::Json,
    ))
    .unwrap();
    assert!(aj["agents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["agent"] == "alice" && a["offers_answered"] == 1));
    let table = render_agents(
        &sql,
        &Default::default(),
        Interval::Quarter,
        ReportFormat::Table,
    );
    assert!(table.contains("alice") && table.contains("bob"));
    assert!(render_agents(
        &sql,
        &Default::default(),
        Interval::Quarter,
        ReportFormat::Csv
    )
    .contains("alice"));
}

/// A call queued in `queue` at `t` and answered after `wait_ms` (or never).
fn queued_call(id: &str, t: u64, queue: &str, wait_ms: Option<u64>) -> Vec<Record> {
    let mut recs = vec![
        full_call(id, t)[0].clone(),
        Record::CallQueued {
            call_id: id.into(),
            at: Millis(t + 1_000),
            queue: queue.into(),
            priority: 0,
        },
    ];
    if let Some(w) = wait_ms {
        recs.push(Record::AgentAnswered {
            call_id: id.into(),
            agent: "alice".into(),
            at: Millis(t + 1_000 + w),
        });
    }
    recs.push(Record::CallEnded {
        call_id: id.into(),
        ended_at: Millis(t + 200_000),
        ended_by: EndedBy::Caller,
        reason: "bye".into(),
        final_status: 200,
    });
    recs
}

/// `report queues`: each queue's own threshold T and target % (queues.toml), the flag's T
/// as an override; SQL and kpi.rs agree. Also: the first overflow's reason on the call.
async fn per_queue_service_levels(store: &Store) {
    use ccswitch::engine::acd::{QueueSet, QueueSpec, VipRules};
    let mut tech = QueueSpec::new("tech", "tech", 1);
    tech.service_level_s = 20;
    tech.service_level_pct = 80;
    let mut vip = QueueSpec::new("vip", "vip", 1);
    vip.service_level_s = 10;
    vip.service_level_pct = 90;
    let set = QueueSet::new(vec![tech, vip], VipRules::default(), 0, 10).unwrap();
    // Waits: tech 15 s and 25 s; vip 15 s and 5 s; "gone" (no longer configured) 15 s.
    let calls = [
        ("t1", "tech", 15_000),
        ("t2", "tech", 25_000),
        ("v1", "vip", 15_000),
        ("v2", "vip", 5_000),
        ("g1", "gone", 15_000),
    ];
    for (i, (id, q, w)) in calls.iter().enumerate() {
        let t = T0 + i as u64 * 1_000;
        store
            .write_batch(&queued_call(id, t, q, Some(*w)))
            .await
            .unwrap();
    }
    let range = Range::default();
    let targets = kpi::ServiceLevelTargets::from_queues(&set, None);
    assert_eq!(targets.get("vip").threshold_ms, 10_000);
    assert_eq!(targets.get("gone"), kpi::ServiceLevelTarget::default());
    let sql = store
        .queue_stats_per_queue(range, Interval::Day, &targets)
        .await
        .unwrap();
    let rows = store.calls(None, None).await.unwrap();
    let times: Vec<CallTimes> = rows.iter().map(|c| c.times()).collect();
    let rust = kpi::queue_stats_per_queue(&times, range, Interval::Day, &targets);
    assert_eq!(sql, flatten(&rust));
    let sl = |stats: &[(String, Millis, kpi::QueueStats)], q: &str| {
        stats
            .iter()
            .find(|r| r.0 == q)
            .and_then(|r| r.2.service_level())
    };
    assert_eq!(sl(&sql, "tech"), Some(0.5));
    assert_eq!(sl(&sql, "vip"), Some(0.5), "15 s misses vip's 10 s");
    assert_eq!(sl(&sql, "gone"), Some(1.0));
    let system = store
        .summary_by_interval(range, Interval::Day)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&render_queues(
        &sql,
        &system,
        &targets,
        &Default::default(),
        Interval::Day,
        ReportFormat::Json,
    ))
    .unwrap();
    let q = |name: &str| {
        json["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["queue"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(q("vip")["service_level"], 0.5);
    assert_eq!(q("vip")["service_level_target"], 0.9);
    assert_eq!(q("vip")["service_level_threshold_ms"], 10_000);
    assert_eq!(q("vip")["service_level_met"], false);
    assert_eq!(q("gone")["service_level_target"], 0.8);
    assert_eq!(q("gone")["service_level_met"], true);
    let table = render_queues(
        &sql,
        &system,
        &targets,
        &Default::default(),
        Interval::Day,
        ReportFormat::Table,
    );
    let vip_line = table.lines().find(|l| l.contains(" vip ")).unwrap();
    assert!(
        vip_line.contains("50.0%") && vip_line.contains("90%"),
        "{table}"
    );
    let csv = render_queues(
        &sql,
        &system,
        &targets,
        &Default::default(),
        Interval::Day,
        ReportFormat::Csv,
    );
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let vip_row: Vec<&str> = csv
        .lines()
        .find(|l| l.contains(",vip,"))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(vip_row[col("service_level_target")], "0.9000");
    assert_eq!(vip_row[col("service_level_threshold_ms")], "10000");
    assert_eq!(vip_row[col("service_level_met")], "false");
    // The flag overrides every T; the target percentages stay per queue.
    let flag = kpi::ServiceLevelTargets::from_queues(&set, Some(30_000));
    let sql = store
        .queue_stats_per_queue(range, Interval::Day, &flag)
        .await
        .unwrap();
    assert_eq!(sl(&sql, "tech"), Some(1.0));
    assert_eq!(sl(&sql, "vip"), Some(1.0));
    assert_eq!(flag.get("vip").target_pct, 90);

    // Overflow: the first one's target, time and reason stick on the call.
    let mut recs = queued_call("o1", T0 + 10_000, "after_sales", None);
    let overflow = |at: u64, to: &str, reason: &str| Record::CallOverflowed {
        call_id: "o1".into(),
        at: Millis(at),
        from_queue: "after_sales".into(),
        to_queue: to.into(),
        reason: reason.into(),
    };
    recs.insert(2, overflow(T0 + 21_000, "tech", "no_agents"));
    recs.insert(3, overflow(T0 + 99_000, "general", "max_wait"));
    store.write_batch(&recs).await.unwrap();
    store.write_batch(&recs).await.unwrap();
    let o1 = store.call("o1").await.unwrap().unwrap();
    assert_eq!(o1.queue.as_deref(), Some("after_sales"));
    assert_eq!(o1.overflowed_to.as_deref(), Some("tech"));
    assert_eq!(o1.overflowed_at, Some(Millis(T0 + 21_000)));
    assert_eq!(o1.overflow_reason.as_deref(), Some("no_agents"));
    let cj: serde_json::Value =
        serde_json::from_str(&render_calls(&[o1], ReportFormat::Json)).unwrap();
    let c = if cj.is_array() {
        &cj[0]
    } else {
        &cj["calls"][0]
    };
    assert_eq!(c["overflow_reason"], "no_agents");
    assert_eq!(c["overflowed_to"], "tech");
}

both_backends!(
    per_queue_service_levels,
    per_queue_service_levels_sqlite,
    per_queue_service_levels_postgres
);

/// The binary reads each queue's service level from the config dir's queues.toml; the flag
/// overrides T; without a readable config the flag is required.
#[tokio::test]
async fn report_queues_cli_reads_queues_toml() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", tmp.path().join("calls.db").display());
    let store = Store::open(&url).await.expect("open");
    store
        .write_batch(&queued_call("a1", T0, "after_sales", Some(15_000)))
        .await
        .unwrap();
    let dir = tmp.path().join("config");
    std::fs::create_dir(&dir).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for f in std::fs::read_dir(&shipped).unwrap() {
        let f = f.unwrap();
        let text = std::fs::read_to_string(f.path()).unwrap();
        let text = if f.file_name() == "queues.toml" {
            text.replace(
                "[queues.after_sales]\n",
                "[queues.after_sales]\nservice_level_s = 10\nservice_level_pct = 90\n",
            )
        } else {
            text
        };
        std::fs::write(dir.join(f.file_name()), text).unwrap();
    }
    let run = |config: &std::path::Path, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ccswitch"))
            .args(["report", "queues", "--config"])
            .arg(config)
            .args(["--database", &url, "--format", "json"])
            .args(extra)
            .output()
            .expect("run ccswitch")
    };
    let parse = |out: std::process::Output| -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["queues"][0].clone()
    };
    let q = parse(run(&dir, &[]));
    assert_eq!(q["queue"], "after_sales");
    assert_eq!(q["service_level_threshold_ms"], 10_000);
    assert_eq!(q["service_level_target"], 0.9);
    assert_eq!(q["service_level"], 0.0, "15 s misses the queue's 10 s");
    let q = parse(run(&dir, &["--service-level-secs", "20"]));
    assert_eq!(q["service_level_threshold_ms"], 20_000);
    assert_eq!(q["service_level_target"], 0.9);
    assert_eq!(q["service_level"], 1.0);
    let missing = tmp.path().join("no-config");
    let out = run(&missing, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--service-level-secs"));
    let q = parse(run(&missing, &["--service-level-secs", "20"]));
    assert_eq!(q["service_level_target"], 0.8);
}

fn add_agent(a: AgentStats, b: &AgentStats) -> AgentStats {
    AgentStats {
        offers: a.offers + b.offers,
        offers_answered: a.offers_answered + b.offers_answered,
        offers_no_answer: a.offers_no_answer + b.offers_no_answer,
        offers_declined: a.offers_declined + b.offers_declined,
        answered: a.answered + b.answered,
        handled: a.handled + b.handled,
        talk_ms_total: a.talk_ms_total + b.talk_ms_total,
        hold_ms_total: a.hold_ms_total + b.hold_ms_total,
        acw_ms_total: a.acw_ms_total + b.acw_ms_total,
        aht_ms_total: a.aht_ms_total + b.aht_ms_total,
        staffed_ms: a.staffed_ms + b.staffed_ms,
    }
}

fn flatten<T: Copy>(
    m: &std::collections::BTreeMap<(String, Millis), T>,
) -> Vec<(String, Millis, T)> {
    m.iter().map(|((k, b), v)| (k.clone(), *b, *v)).collect()
}

/// A crash while an offer rings and while an answered call is in wrap-up: the offer is closed
/// as failed at the call's end; no wrap-up end is invented.
async fn close_unfinished_offers(store: &Store) {
    let recs = agent_call("u1", T0);
    let cut = recs
        .iter()
        .position(|r| matches!(r, Record::OfferEnded { attempt: 2, .. }))
        .unwrap();
    store.write_batch(&recs[..cut]).await.unwrap();
    let wrap = recs
        .iter()
        .position(|r| matches!(r, Record::WrapUpEnded { .. }))
        .unwrap();
    let recs2 = agent_call("u2", T0 + 1);
    store.write_batch(&recs2[..wrap]).await.unwrap();
    assert_eq!(store.close_unfinished().await.unwrap(), 1);
    let u1 = store.call("u1").await.unwrap().unwrap();
    assert_eq!(u1.offers[1].outcome.as_deref(), Some("failed"));
    assert_eq!(u1.offers[1].ended_at, u1.ended_at);
    assert_eq!(u1.offers[0].outcome.as_deref(), Some("no_answer"));
    let u2 = store.call("u2").await.unwrap().unwrap();
    assert_eq!(u2.ended_by, Some(EndedBy::Caller));
    assert_eq!(u2.wrapup_ended_at, None);
    assert_eq!(u2.aht_ms, None);
    assert_eq!(u2.talk_ms, Some(106_500));
}

/// One random queued call.
#[derive(Clone, Debug)]
struct QSpec {
    arrive_off: u64,
    answer_delay: Option<u64>,
    /// (queue index, delay after arrival/answer)
    queued: Option<(usize, u64)>,
    /// (agent index, ring length, outcome index; 6 = never ended)
    offers: Vec<(usize, u64, usize)>,
    /// (agent index, delay)
    agent_answer: Option<(usize, u64)>,
    holds: Vec<(u64, Option<u64>)>,
    /// (after, who: 0-1 caller, 2 agent, 3 system)
    end: Option<(u64, usize)>,
    wrapup_after: Option<u64>,
    batch_size: usize,
    replay: bool,
}

const OUTCOMES: [&str; 6] = [
    "answered",
    "no_answer",
    "busy",
    "rejected",
    "failed",
    "cancelled",
];
const STATES: [&str; 6] = [
    "logged_out",
    "ready",
    "reserved",
    "on_call",
    "wrap_up",
    "not_ready",
];

fn qspec() -> impl Strategy<Value = QSpec> {
    (
        (
            0u64..172_800_000,
            proptest::option::of(0u64..20_000),
            proptest::option::weighted(0.8, (0usize..3, 0u64..40_000)),
            prop_oneof![
                Just(Vec::new()),
                proptest::collection::vec((0usize..3, 0u64..30_000, 0usize..7), 0..3)
            ],
            proptest::option::of((0usize..3, 0u64..60_000)),
        ),
        (
            prop_oneof![
                Just(Vec::new()),
                proptest::collection::vec((0u64..5_000, proptest::option::of(1u64..60_000)), 0..3)
            ],
            proptest::option::weighted(0.8, (prop_oneof![0u64..6_000, 0u64..400_000], 0usize..4)),
            proptest::option::of(0u64..120_000),
            1usize..8,
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (arrive_off, answer_delay, queued, offers, agent_answer),
                (holds, end, wrapup_after, batch_size, replay),
            )| QSpec {
                arrive_off,
                answer_delay,
                queued,
                offers,
                agent_answer,
                holds,
                end,
                wrapup_after,
                batch_size,
                replay,
            },
        )
}

fn qspec_records(
    id: &str,
    base: u64,
    agents: &[String],
    s: &QSpec,
) -> (Vec<Record>, CallTimes, CallFacts) {
    let arrived = base + s.arrive_off;
    let mut recs = vec![Record::CallStarted {
        call_id: id.into(),
        sip_call_id: id.into(),
        caller: "100".into(),
        dialled: "800".into(),
        transport: "udp".into(),
        arrived_at: Millis(arrived),
        ring_cycle_ms: 6_000,
    }];
    let mut t = arrived;
    let mut times = CallTimes {
        arrived_at: Millis(arrived),
        ..CallTimes::default()
    };
    let mut answered_at = None;
    if let Some(d) = s.answer_delay {
        t += d;
        answered_at = Some(Millis(t));
        recs.push(Record::CallAnswered {
            call_id: id.into(),
            answered_at: Millis(t),
            within_three_rings: d <= 18_000,
        });
    }
    let queues = ["support", "sales", "complaints"];
    if let Some((q, d)) = s.queued {
        t += d;
        times.queue = Some(queues[q].to_string());
        times.queued_at = Some(Millis(t));
        recs.push(Record::CallQueued {
            call_id: id.into(),
            at: Millis(t),
            queue: queues[q].into(),
            priority: 0,
        });
    }
    for (i, (a, len, o)) in s.offers.iter().enumerate() {
        let attempt = u32::try_from(i + 1).unwrap();
        t += 1;
        recs.push(Record::OfferStarted {
            call_id: id.into(),
            attempt,
            agent: agents[*a].clone(),
            at: Millis(t),
        });
        if let Some(outcome) = OUTCOMES.get(*o) {
            t += len;
            recs.push(Record::OfferEnded {
                call_id: id.into(),
                attempt,
                at: Millis(t),
                outcome: (*outcome).into(),
            });
        }
    }
    if let Some((a, d)) = s.agent_answer {
        t += d;
        times.agent = Some(agents[a].clone());
        times.agent_answered_at = Some(Millis(t));
        recs.push(Record::AgentAnswered {
            call_id: id.into(),
            agent: agents[a].clone(),
            at: Millis(t),
        });
    }
    let mut spans = Vec::new();
    for (i, (gap, len)) in s.holds.iter().enumerate() {
        t += gap + 1;
        recs.push(Record::HoldStarted {
            call_id: id.into(),
            at: Millis(t),
        });
        let start = t;
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
    if let Some((after, who)) = s.end {
        t += after;
        let by = [
            EndedBy::Caller,
            EndedBy::Caller,
            EndedBy::Agent,
            EndedBy::System,
        ][who];
        times.ended_at = Some(Millis(t));
        times.ended_by = Some(by);
        recs.push(Record::CallEnded {
            call_id: id.into(),
            ended_at: Millis(t),
            ended_by: by,
            reason: "bye".into(),
            final_status: 200,
        });
        if let (Some(w), Some(agent)) = (s.wrapup_after, &times.agent) {
            t += w;
            times.wrapup_ended_at = Some(Millis(t));
            recs.push(Record::WrapUpEnded {
                call_id: id.into(),
                agent: agent.clone(),
                at: Millis(t),
            });
        }
    }
    let last_event = recs.iter().map(Record::at).max().unwrap_or(Millis(arrived));
    times.hold_ms = kpi::hold_ms(&spans, times.ended_at, last_event);
    let facts = CallFacts {
        arrived_at: Millis(arrived),
        answered_at,
        ring_cycle_ms: Some(6_000),
        ivr_outcome: None,
        hold_ms: times.hold_ms,
    };
    (recs, times, facts)
}

/// Per agent: state changes at increasing times, the last always logged_out (so an agent of
/// one case adds no staffed time to a later case's window).
fn agent_states() -> impl Strategy<Value = Vec<Vec<(u64, usize)>>> {
    proptest::collection::vec(
        proptest::collection::vec((1u64..20_000_000, 0usize..6), 0..8),
        3,
    )
}

#[derive(Clone, Debug)]
struct Case {
    calls: Vec<QSpec>,
    states: Vec<Vec<(u64, usize)>>,
    since_off: u64,
    until_cut: u64,
    quarter: bool,
    sl_ms: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(qspec(), 0..10),
        agent_states(),
        0u64..86_400_000,
        0u64..86_400_000,
        any::<bool>(),
        prop_oneof![Just(20_000u64), 1u64..60_000],
    )
        .prop_map(
            |(calls, states, since_off, until_cut, quarter, sl_ms)| Case {
                calls,
                states,
                since_off,
                until_cut,
                quarter,
                sl_ms,
            },
        )
}

/// Random queued calls and agent shifts: queue and agent interval figures from kpi.rs (over
/// the spec, and over the rows read back) equal the SQL queries'.
fn queue_kpis_match_sql(open: impl std::future::Future<Output = Option<TestDb>>, cases: u32) {
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
    let result = runner.run(&case(), |cs| {
        n.set(n.get() + 1);
        let k = n.get();
        let base = T0 + k * 10_000_000_000;
        let all = Range {
            since: Some(Millis(base)),
            until: Some(Millis(base + 5_000_000_000)),
        };
        let since = Millis(base + cs.since_off);
        let until = Millis(base + 3 * 86_400_000 - cs.until_cut);
        let range = Range {
            since: Some(since),
            until: Some(until),
        };
        let interval = if cs.quarter {
            Interval::Quarter
        } else {
            Interval::Day
        };
        let agents: Vec<String> = (0..3).map(|a| format!("a{k}-{a}")).collect();
        let fail = |e: ccswitch::store::StoreError| TestCaseError::fail(e.to_string());
        rt.block_on(async {
            let mut times = Vec::new();
            let mut facts = Vec::new();
            for (i, s) in cs.calls.iter().enumerate() {
                let (recs, t, f) = qspec_records(&format!("q{k}-{i}"), base, &agents, s);
                for chunk in recs.chunks(s.batch_size) {
                    store.write_batch(chunk).await.map_err(fail)?;
                    if s.replay {
                        store.write_batch(chunk).await.map_err(fail)?;
                    }
                }
                times.push(t);
                facts.push(f);
            }
            let mut changes = Vec::new();
            for (a, list) in cs.states.iter().enumerate() {
                let mut t = base;
                let mut recs = Vec::new();
                for (j, (gap, st)) in list.iter().enumerate() {
                    t += gap;
                    let st = if j + 1 == list.len() {
                        "logged_out"
                    } else {
                        STATES[*st]
                    };
                    recs.push(state(&agents[a], t, st, None));
                    changes.push(StateChange {
                        agent: agents[a].clone(),
                        at: Millis(t),
                        seq: i64::try_from(j).unwrap(),
                        state: st.into(),
                        reason: None,
                    });
                }
                store.write_batch(&recs).await.map_err(fail)?;
            }
            let rows = store.calls(all.since, all.until).await.map_err(fail)?;
            prop_assert_eq!(rows.len(), cs.calls.len());
            let row_times: Vec<CallTimes> = rows.iter().map(|r| r.times()).collect();

            // Per call: FRT, queue wait, talk, hold, ACW, AHT, abandoned in SQL == kpi.rs.
            let sql_figs = store.call_figures(all).await.map_err(fail)?;
            let rust_figs: Vec<_> = rows.iter().map(|r| r.figures()).collect();
            prop_assert_eq!(&sql_figs, &rust_figs);
            for r in &rows {
                let i: usize = r.call_id.rsplit('-').next().unwrap().parse().unwrap();
                let t = &times[i];
                prop_assert_eq!(r.times(), t.clone());
                prop_assert_eq!(r.aht_ms, t.aht_ms());
                prop_assert_eq!(r.queue_wait_ms, t.queue_wait_ms());
            }

            // Per queue.
            let sql = store
                .queue_stats(range, interval, cs.sl_ms)
                .await
                .map_err(fail)?;
            let spec_q = flatten(&kpi::queue_stats(&times, range, interval, cs.sl_ms));
            let rows_q = flatten(&kpi::queue_stats(&row_times, range, interval, cs.sl_ms));
            prop_assert_eq!(&rows_q, &sql);
            prop_assert_eq!(&spec_q, &sql);

            // Per agent.
            let sql = store
                .agent_stats(Some(since), until, interval)
                .await
                .map_err(fail)?;
            let spec_offers: Vec<OfferFacts> = rows
                .iter()
                .flat_map(|r| r.offers.iter())
                .map(|o| OfferFacts {
                    agent: o.agent.clone(),
                    offered_at: o.offered_at,
                    outcome: o.outcome.clone(),
                })
                .collect();
            let db_offers = store.offer_facts(range).await.map_err(fail)?;
            let db_changes = store.agent_state_changes().await.map_err(fail)?;
            let spec_a = flatten(&kpi::agent_stats(
                &times,
                &spec_offers,
                &changes,
                Some(since),
                until,
                interval,
            ));
            let rows_a = flatten(&kpi::agent_stats(
                &row_times,
                &db_offers,
                &db_changes,
                Some(since),
                until,
                interval,
            ));
            prop_assert_eq!(&rows_a, &sql);
            prop_assert_eq!(&spec_a, &sql);

            // Whole system, by interval.
            let sql = store
                .summary_by_interval(range, interval)
                .await
                .map_err(fail)?;
            let spec_s: Vec<(Millis, Summary)> = kpi::summary_by_interval(&facts, range, interval)
                .into_iter()
                .collect();
            prop_assert_eq!(&spec_s, &sql);
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("queue/agent kpi != SQL: {e}");
    }
    drop(db);
}

#[test]
fn queue_kpis_match_sql_sqlite() {
    queue_kpis_match_sql(sqlite_db(), 40);
}

#[test]
fn queue_kpis_match_sql_postgres() {
    queue_kpis_match_sql(pg_db(), 16);
}

both_backends!(
    agents_and_queues,
    agents_and_queues_sqlite,
    agents_and_queues_postgres
);
both_backends!(
    close_unfinished_offers,
    close_unfinished_offers_sqlite,
    close_unfinished_offers_postgres
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
