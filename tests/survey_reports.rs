//! Survey figures, follow-up tasks, privacy and retention (issue 8 items 7-9), on SQLite and
//! PostgreSQL: kpi.rs == SQL over random survey histories, `tasks` and `report` commands,
//! number masking and `--unmask`, `drop_expired_numbers`.
//!
//! Rows come from the engine's records (`SurveyScheduled`, `SurveySkipped`,
//! `FollowUpOpened` through `write_batch`); what the survey service writes later (states,
//! times, scores, opt-outs, replies, closing tasks) is plain SQL here.
//!
//! PostgreSQL: `CCSWITCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`); each
//! test creates `ccswitch_test_<random>` and drops it; `CCSWITCH_TEST_SKIP_POSTGRES=1` skips.

use ccswitch::engine::record::{EndedBy, Record};
use ccswitch::engine::time::Millis;
use ccswitch::kpi::survey::{self, Buckets, SurveyFacts, SurveyGroup, SurveyStats, TaskFacts};
use ccswitch::kpi::{Interval, Range};
use ccswitch::store::report::{render_calls_with, render_surveys, CallsView, ReportFormat};
use ccswitch::store::{CloseOutcome, Store, TaskFilter};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlx::Connection;
use std::cell::Cell;

// ---------- databases ----------

struct TestDb {
    store: Store,
    /// A second pool for what the survey service would write.
    side: sqlx::AnyPool,
    url: String,
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

async fn side_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("side pool")
}

async fn sqlite_db() -> Option<TestDb> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("calls.db").display());
    let store = Store::open(&url).await.expect("open sqlite");
    let side = side_pool(&url).await;
    Some(TestDb {
        store,
        side,
        url,
        _pg: None,
        _dir: Some(dir),
    })
}

fn skip_pg() -> bool {
    std::env::var("CCSWITCH_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

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
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("CCSWITCH_PG_URL {admin} names no database"),
    };
    let guard = PgDatabase { admin, name };
    let store = Store::open(&url).await.expect("open postgres store");
    let side = side_pool(&url).await;
    Some(TestDb {
        store,
        side,
        url,
        _pg: Some(guard),
        _dir: None,
    })
}

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

// ---------- records and the service's writes ----------

const T0: u64 = 1_795_305_600_000; // 2026-11-22T00:00:00Z
const HOUR: u64 = 3_600_000;
const DAY: u64 = 86_400_000;

fn call(id: &str, caller: &str, ended: u64) -> Vec<Record> {
    vec![
        Record::CallStarted {
            call_id: id.into(),
            sip_call_id: format!("{id}@10.0.0.1"),
            caller: caller.into(),
            dialled: "800".into(),
            transport: "udp".into(),
            arrived_at: Millis(ended - 60_000),
            ring_cycle_ms: 6_000,
        },
        Record::CallEnded {
            call_id: id.into(),
            ended_at: Millis(ended),
            ended_by: EndedBy::Caller,
            reason: "bye".into(),
            final_status: 200,
        },
    ]
}

fn scheduled(
    id: &str,
    survey_id: u64,
    at: u64,
    number: &str,
    agent: Option<&str>,
    queue: Option<&str>,
) -> Record {
    Record::SurveyScheduled {
        call_id: id.into(),
        survey_id,
        at: Millis(at),
        number: number.into(),
        number_hash: format!("h-{number}"),
        language: "zh".into(),
        text: "感谢致电Example Co，请为本次服务打分：回复1-5".into(),
        send_at: Millis(at + 60_000),
        deferred: false,
        reply_by: Millis(at + 60_000 + 48 * HOUR),
        agent: agent.map(str::to_string),
        queue: queue.map(str::to_string),
        complaint: false,
    }
}

fn skipped(id: &str, survey_id: u64, at: u64, agent: Option<&str>, queue: Option<&str>) -> Record {
    Record::SurveySkipped {
        call_id: id.into(),
        survey_id,
        at: Millis(at),
        reason: "frequency_cap".into(),
        agent: agent.map(str::to_string),
        queue: queue.map(str::to_string),
    }
}

fn task(id: &str, at: u64, agent: Option<&str>, queue: Option<&str>, reason: &str) -> Record {
    Record::FollowUpOpened {
        call_id: id.into(),
        at: Millis(at),
        agent: agent.map(str::to_string),
        queue: queue.map(str::to_string),
        reason: reason.into(),
        due_at: Millis(at + 24 * HOUR),
    }
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap())
}

/// What the survey service writes when a survey moves on.
#[allow(clippy::too_many_arguments)]
async fn service_update(
    side: &sqlx::AnyPool,
    survey_id: u64,
    state: &str,
    state_at: u64,
    sent_at: Option<u64>,
    delivered_at: Option<u64>,
    csat: Option<u8>,
    nps: Option<u8>,
    comment: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE surveys SET state = $2, state_at = $3, sent_at = $4, delivered_at = $5, \
           answered_at = $6, csat = $7, nps = $8, comment = $9 WHERE survey_id = $1",
    )
    .bind(i64::try_from(survey_id).unwrap())
    .bind(state.to_string())
    .bind(i64::try_from(state_at).unwrap())
    .bind(opt_i64(sent_at))
    .bind(opt_i64(delivered_at))
    .bind(csat.map(|_| i64::try_from(state_at).unwrap()))
    .bind(csat.map(i32::from))
    .bind(nps.map(i32::from))
    .bind(comment.map(str::to_string))
    .execute(side)
    .await?;
    sqlx::query(
        "INSERT INTO survey_events (survey_id, at, state, detail) VALUES ($1, $2, $3, NULL)",
    )
    .bind(i64::try_from(survey_id).unwrap())
    .bind(i64::try_from(state_at).unwrap())
    .bind(state.to_string())
    .execute(side)
    .await?;
    Ok(())
}

async fn opt_out(
    side: &sqlx::AnyPool,
    hash: &str,
    number: &str,
    at: u64,
    survey_id: Option<u64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sms_opt_outs (number_hash, number, at, survey_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(hash.to_string())
    .bind(number.to_string())
    .bind(i64::try_from(at).unwrap())
    .bind(opt_i64(survey_id))
    .execute(side)
    .await?;
    Ok(())
}

async fn close_task_sql(
    side: &sqlx::AnyPool,
    call_id: &str,
    closed_at: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE follow_up_tasks SET closed_at = $2, note = 'done' WHERE call_id = $1")
        .bind(call_id.to_string())
        .bind(i64::try_from(closed_at).unwrap())
        .execute(side)
        .await?;
    Ok(())
}

// ---------- kpi.rs == SQL ----------

const STATES: [&str; 8] = [
    "pending",
    "sent",
    "delivered",
    "undeliverable",
    "answered",
    "expired",
    "opted_out",
    "failed",
];

#[derive(Clone, Debug)]
struct SSpec {
    skipped: bool,
    decided_off: u64,
    agent: usize,
    queue: usize,
    state: usize,
    sent: Option<u64>,
    delivered: bool,
    csat: Option<u8>,
    nps: Option<u8>,
    opt_out_row: bool,
    task: Option<(u64, Option<u64>)>,
    batch_size: usize,
}

fn sspec() -> impl Strategy<Value = SSpec> {
    (
        (
            any::<bool>(),
            // Whole hours often: bucket edges, due times equal to `now`.
            prop_oneof![0u64..3 * DAY, (0u64..72).prop_map(|h| h * HOUR)],
            0usize..4,
            0usize..4,
            0usize..STATES.len(),
        ),
        (
            proptest::option::weighted(0.8, 1u64..HOUR),
            any::<bool>(),
            proptest::option::of(1u8..=5),
            proptest::option::of(0u8..=10),
            proptest::bool::weighted(0.2),
        ),
        (
            proptest::option::of((
                prop_oneof![Just(0u64), 0u64..HOUR],
                // Closed exactly at the due time sometimes (in time).
                proptest::option::of(prop_oneof![Just(24 * HOUR), 0u64..48 * HOUR]),
            )),
            1usize..4,
        ),
    )
        .prop_map(
            |(
                (skipped, decided_off, agent, queue, state),
                (sent, delivered, csat, nps, opt_out_row),
                (task, batch_size),
            )| SSpec {
                skipped,
                decided_off,
                agent,
                queue,
                state,
                sent,
                delivered,
                csat,
                nps,
                opt_out_row,
                task,
                batch_size,
            },
        )
}

#[derive(Clone, Debug)]
struct SCase {
    surveys: Vec<SSpec>,
    quarter: bool,
    by: usize,
    offset_h: i64,
    since_off: u64,
    until_cut: u64,
    now_off: u64,
    /// `now` = the due time of this spec's task (when it has one): the overdue edge.
    now_at_due: Option<usize>,
}

fn scase() -> impl Strategy<Value = SCase> {
    (
        proptest::collection::vec(sspec(), 0..12),
        any::<bool>(),
        0usize..3,
        prop_oneof![Just(0i64), Just(8), Just(-5), -12i64..14],
        prop_oneof![Just(0u64), 0u64..DAY],
        prop_oneof![Just(0u64), 0u64..DAY],
        prop_oneof![0u64..5 * DAY, (0u64..120).prop_map(|h| h * HOUR)],
        proptest::option::of(0usize..12),
    )
        .prop_map(
            |(surveys, quarter, by, offset_h, since_off, until_cut, now_off, now_at_due)| SCase {
                surveys,
                quarter,
                by,
                offset_h,
                since_off,
                until_cut,
                now_off,
                now_at_due,
            },
        )
}

/// Writes one spec's rows (records, then the service's updates); returns its facts.
async fn write_spec(
    db: &TestDb,
    k: u64,
    i: usize,
    base: u64,
    s: &SSpec,
) -> Result<(SurveyFacts, Option<TaskFacts>), TestCaseError> {
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    let id = format!("s{k}-{i}");
    let survey_id = k * 1000 + i as u64;
    let decided = base + s.decided_off;
    let agents = [Some("1001"), Some("1002"), Some("1003"), None];
    let queues = [Some("tech"), Some("after_sales"), Some("complaints"), None];
    let (agent, queue) = (agents[s.agent], queues[s.queue]);
    let number = format!("+86138{:08}", k * 100 + i as u64);
    let mut recs = call(&id, &number, decided);
    recs.push(if s.skipped {
        skipped(&id, survey_id, decided, agent, queue)
    } else {
        scheduled(&id, survey_id, decided, &number, agent, queue)
    });
    if let Some((gap, _)) = s.task {
        recs.push(task(&id, decided + gap, agent, queue, "low_score"));
    }
    for chunk in recs.chunks(s.batch_size) {
        db.store.write_batch(chunk).await.map_err(|e| fail(&e))?;
    }
    let mut facts = SurveyFacts {
        decided_at: Millis(decided),
        state: if s.skipped { "skipped" } else { "pending" }.into(),
        agent: agent.map(str::to_string),
        queue: queue.map(str::to_string),
        ..SurveyFacts::default()
    };
    if !s.skipped {
        let state = STATES[s.state];
        let sent = s.sent.map(|g| decided + g);
        let delivered = sent.filter(|_| s.delivered).map(|t| t + 5_000);
        let (csat, nps) = if sent.is_some() {
            (s.csat, s.nps)
        } else {
            (None, None)
        };
        service_update(
            &db.side,
            survey_id,
            state,
            decided + 2 * HOUR,
            sent,
            delivered,
            csat,
            nps,
            csat.map(|_| "很好"),
        )
        .await
        .map_err(|e| fail(&e))?;
        if s.opt_out_row {
            opt_out(
                &db.side,
                &format!("h-{number}"),
                &number,
                decided + HOUR,
                Some(survey_id),
            )
            .await
            .map_err(|e| fail(&e))?;
        }
        facts.state = state.into();
        facts.sent_at = sent.map(Millis);
        facts.delivered_at = delivered.map(Millis);
        facts.csat = csat;
        facts.nps = nps;
        facts.opt_out_recorded = s.opt_out_row;
    }
    let task = match s.task {
        Some((gap, closed)) => {
            let opened = decided + gap;
            if let Some(c) = closed {
                close_task_sql(&db.side, &id, opened + c)
                    .await
                    .map_err(|e| fail(&e))?;
            }
            Some(TaskFacts {
                agent: agent.map(str::to_string),
                queue: queue.map(str::to_string),
                opened_at: Millis(opened),
                due_at: Millis(opened + 24 * HOUR),
                closed_at: closed.map(|c| Millis(opened + c)),
            })
        }
        None => None,
    };
    Ok((facts, task))
}

fn flatten(
    m: std::collections::BTreeMap<(String, Millis), SurveyStats>,
) -> Vec<(String, Millis, SurveyStats)> {
    m.into_iter().map(|((g, b), s)| (g, b, s)).collect()
}

/// Random survey histories: the figures of kpi.rs (over the spec, and over the facts read
/// back) equal the SQL twin's, for every grouping, interval and UTC offset.
fn survey_kpis_match_sql(open: impl std::future::Future<Output = Option<TestDb>>, cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = rt.block_on(open) else { return };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let n = Cell::new(0u64);
    let result = runner.run(&scase(), |cs| {
        n.set(n.get() + 1);
        let k = n.get();
        let base = T0 + k * 100 * DAY;
        let all = Range {
            since: Some(Millis(base - DAY)),
            until: Some(Millis(base + 10 * DAY)),
        };
        let range = Range {
            since: Some(Millis(base + cs.since_off)),
            until: Some(Millis(base + 3 * DAY - cs.until_cut)),
        };
        let buckets = Buckets {
            interval: if cs.quarter {
                Interval::Quarter
            } else {
                Interval::Day
            },
            utc_offset_ms: cs.offset_h * 3_600_000,
        };
        let by = [SurveyGroup::All, SurveyGroup::Queue, SurveyGroup::Agent][cs.by];
        let due_of = |j: usize| {
            let s = cs.surveys.get(j)?;
            let (gap, _) = s.task?;
            Some(base + s.decided_off + gap + 24 * HOUR)
        };
        let now = Millis(cs.now_at_due.and_then(due_of).unwrap_or(base + cs.now_off));
        let fail = |e: ccswitch::store::StoreError| TestCaseError::fail(e.to_string());
        rt.block_on(async {
            let mut surveys = Vec::new();
            let mut tasks = Vec::new();
            for (i, s) in cs.surveys.iter().enumerate() {
                let (f, t) = write_spec(&db, k, i, base, s).await?;
                surveys.push(f);
                tasks.extend(t);
            }
            let sql = db
                .store
                .survey_stats(range, buckets, by, now)
                .await
                .map_err(fail)?;
            let spec = flatten(survey::survey_stats(
                &surveys, &tasks, range, buckets, by, now,
            ));
            let db_surveys = db.store.survey_facts(all).await.map_err(fail)?;
            let db_tasks = db.store.task_facts(all).await.map_err(fail)?;
            prop_assert_eq!(db_surveys.len(), surveys.len());
            prop_assert_eq!(db_tasks.len(), tasks.len());
            let rows = flatten(survey::survey_stats(
                &db_surveys,
                &db_tasks,
                range,
                buckets,
                by,
                now,
            ));
            prop_assert_eq!(&rows, &sql);
            prop_assert_eq!(&spec, &sql);
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("survey kpi != SQL: {e}");
    }
    drop(db);
}

#[test]
fn survey_kpis_match_sql_sqlite() {
    survey_kpis_match_sql(sqlite_db(), 40);
}

#[test]
fn survey_kpis_match_sql_postgres() {
    survey_kpis_match_sql(pg_db(), 16);
}

// ---------- a worked example ----------

/// Four answered calls, one expired, one skipped, one opted out, on one Shanghai day: the
/// figures by hand, in the report, and each call's survey in `report calls`.
async fn worked_example(db: &TestDb) {
    let day = T0 - 8 * HOUR; // 2026-11-22T00:00+08:00
    let side = &db.side;
    let scores: [(&str, Option<u8>, Option<u8>, &str); 7] = [
        ("answered", Some(5), Some(10), "1001"),
        ("answered", Some(4), Some(9), "1001"),
        ("answered", Some(2), Some(3), "1002"),
        ("answered", Some(5), Some(7), "1002"),
        ("expired", None, None, "1001"),
        ("opted_out", None, None, "1002"),
        ("skipped", None, None, "1001"),
    ];
    for (i, (state, csat, nps, agent)) in scores.iter().enumerate() {
        let id = format!("w{i}");
        let at = day + HOUR + i as u64 * 60_000;
        let number = format!("+8613800000{i:03}");
        let mut recs = call(&id, &number, at);
        if *state == "skipped" {
            recs.push(skipped(&id, 500 + i as u64, at, Some(agent), Some("tech")));
        } else {
            recs.push(scheduled(
                &id,
                500 + i as u64,
                at,
                &number,
                Some(agent),
                Some("tech"),
            ));
        }
        db.store.write_batch(&recs).await.unwrap();
        if *state != "skipped" {
            let comment = (i == 2).then_some("等待时间太长了，而且问题没有解决，我需要有人回电话给我，最好是今天下午或者明天上午，谢谢你们的帮助");
            service_update(
                side,
                500 + i as u64,
                state,
                at + HOUR,
                Some(at + 60_000),
                Some(at + 65_000),
                *csat,
                *nps,
                comment,
            )
            .await
            .unwrap();
        }
    }
    opt_out(side, "h-w5", "+8613800000005", day + 3 * HOUR, Some(505))
        .await
        .unwrap();
    // The low score opened a task; it was closed late.
    db.store
        .write_batch(&[task(
            "w2",
            day + 2 * HOUR,
            Some("1002"),
            Some("tech"),
            "low_score",
        )])
        .await
        .unwrap();
    close_task_sql(side, "w2", day + 30 * HOUR).await.unwrap();

    let buckets = Buckets {
        interval: Interval::Day,
        utc_offset_ms: 8 * 3_600_000,
    };
    let range = Range {
        since: Some(Millis(day)),
        until: Some(Millis(day + DAY)),
    };
    let now = Millis(day + 40 * HOUR);
    let rows = db
        .store
        .survey_stats(range, buckets, SurveyGroup::All, now)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (g, b, s) = &rows[0];
    assert_eq!((g.as_str(), *b), ("", Millis(day)));
    assert_eq!(
        (s.surveys, s.skipped, s.sent, s.delivered, s.answered),
        (7, 1, 6, 6, 4)
    );
    assert_eq!(s.response_rate(), Some(4.0 / 6.0));
    assert_eq!(s.csat(), Some(0.75));
    assert_eq!(s.csat_mean(), Some(4.0));
    assert_eq!(s.nps(), Some(25.0));
    assert_eq!(s.opt_outs, 1);
    assert_eq!(
        (
            s.follow_ups_opened,
            s.follow_ups_closed_in_time,
            s.follow_ups_overdue
        ),
        (1, 0, 1)
    );
    let table = render_surveys(&rows, buckets, SurveyGroup::All, ReportFormat::Table);
    assert!(table.contains("2026-11-22T00:00:00+08:00"), "{table}");
    assert!(table.contains("66.7% (4/6)"), "{table}");
    assert!(table.contains("75.0% (3/4)"), "{table}");
    assert!(table.contains("4.00"), "{table}");
    assert!(table.contains("+25 (2P 1D /4)"), "{table}");

    let by_agent = db
        .store
        .survey_stats(range, buckets, SurveyGroup::Agent, now)
        .await
        .unwrap();
    let names: Vec<&str> = by_agent.iter().map(|(g, _, _)| g.as_str()).collect();
    assert_eq!(names, ["1001", "1002"]);
    assert_eq!(by_agent[1].2.follow_ups_overdue, 1);
    let json: serde_json::Value = serde_json::from_str(&render_surveys(
        &by_agent,
        buckets,
        SurveyGroup::Agent,
        ReportFormat::Json,
    ))
    .unwrap();
    assert_eq!(json["by"], "agent");
    assert_eq!(json["surveys"][0]["group"], "1001");
    assert_eq!(json["surveys"][0]["response_rate_denominator"], 3);
    assert_eq!(json["surveys"][0]["response_rate_numerator"], 2);

    // report calls: survey status, scores, comment capped; numbers masked unless allowed.
    let calls = db
        .store
        .calls(Some(Millis(day)), Some(Millis(day + DAY)))
        .await
        .unwrap();
    let surveys = db
        .store
        .call_surveys(Some(Millis(day)), Some(Millis(day + DAY)))
        .await
        .unwrap();
    assert_eq!(surveys.len(), 7);
    assert_eq!(surveys["w6"].skip_reason.as_deref(), Some("frequency_cap"));
    let view = CallsView {
        surveys: &surveys,
        unmask: false,
    };
    let table = render_calls_with(&calls, view, ReportFormat::Table);
    assert!(table.contains("+86 138****0002"), "{table}");
    assert!(!table.contains("+8613800000002"), "{table}");
    assert!(table.contains("skipped(frequency_cap)"), "{table}");
    assert!(table.contains("等待时间太长了"), "{table}");
    assert!(
        !table.contains("谢谢你们的帮助"),
        "the table caps comments: {table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render_calls_with(&calls, view, ReportFormat::Json)).unwrap();
    let w2 = json["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["call_id"] == "w2")
        .unwrap();
    assert_eq!(w2["caller"], "+86 138****0002");
    assert_eq!(w2["survey"]["state"], "answered");
    assert_eq!(w2["survey"]["csat"], 2);
    assert_eq!(w2["survey"]["nps"], 3);
    assert!(w2["survey"]["comment"]
        .as_str()
        .unwrap()
        .ends_with("谢谢你们的帮助"));
    let csv = render_calls_with(&calls, view, ReportFormat::Csv);
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .contains(",survey_status,survey_csat,survey_nps,survey_comment,"));
    assert!(!csv.contains("+8613800000"), "{csv}");
    let full = render_calls_with(
        &calls,
        CallsView {
            surveys: &surveys,
            unmask: true,
        },
        ReportFormat::Csv,
    );
    assert!(full.contains("+8613800000002"));
}

both_backends!(
    worked_example,
    worked_example_sqlite,
    worked_example_postgres
);

// ---------- tasks ----------

async fn tasks_list_and_close(db: &TestDb) {
    for (i, agent) in ["1001", "1002", "1001"].iter().enumerate() {
        let id = format!("t{i}");
        let at = T0 + i as u64 * HOUR;
        let mut recs = call(&id, &format!("+861390000000{i}"), at);
        recs.push(task(
            &id,
            at,
            Some(agent),
            Some("complaints"),
            "complaint_queue",
        ));
        db.store.write_batch(&recs).await.unwrap();
    }
    let now = Millis(T0 + 24 * HOUR + 30 * 60_000); // t0 overdue; t1, t2 not yet
    let all = db
        .store
        .list_follow_up_tasks(&TaskFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].call_id, "t0", "most urgent first");
    assert_eq!(all[0].number.as_deref(), Some("+8613900000000"));
    let overdue = db
        .store
        .list_follow_up_tasks(&TaskFilter {
            overdue_at: Some(now),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        overdue
            .iter()
            .map(|t| t.call_id.as_str())
            .collect::<Vec<_>>(),
        ["t0"]
    );
    let mine = db
        .store
        .list_follow_up_tasks(&TaskFilter {
            agent: Some("1001".into()),
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);

    let id = all[1].task_id;
    assert_eq!(
        db.store
            .close_follow_up_task(id, now, "called back")
            .await
            .unwrap(),
        CloseOutcome::Closed
    );
    assert_eq!(
        db.store
            .close_follow_up_task(id, Millis(now.as_u64() + 1), "again")
            .await
            .unwrap(),
        CloseOutcome::AlreadyClosed { at: now }
    );
    assert_eq!(
        db.store
            .close_follow_up_task(999_999, now, "x")
            .await
            .unwrap(),
        CloseOutcome::Unknown
    );
    let open = db
        .store
        .list_follow_up_tasks(&TaskFilter::default())
        .await
        .unwrap();
    assert_eq!(open.len(), 2);
    let with_closed = db
        .store
        .list_follow_up_tasks(&TaskFilter {
            include_closed: true,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    let closed = with_closed.iter().find(|t| t.task_id == id).unwrap();
    assert_eq!(
        closed.note.as_deref(),
        Some("called back"),
        "the first note stays"
    );
    assert_eq!(closed.closed_at, Some(now));
    let text = ccswitch::store::report::render_tasks(&with_closed, now, false, ReportFormat::Table);
    assert!(
        text.contains("+86 139****0000") && text.contains("overdue") && text.contains("3 task(s)"),
        "{text}"
    );
    assert!(!text.contains("+8613900000000"), "{text}");
}

both_backends!(tasks_list_and_close, tasks_sqlite, tasks_postgres);

// ---------- retention ----------

async fn count(side: &sqlx::AnyPool, sql: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(side)
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

/// Final surveys past retention lose their numbers everywhere; a survey still waiting, one
/// with an open follow-up task, and a recent one keep them; hashes and send times stay.
async fn retention(db: &TestDb) {
    let side = &db.side;
    let retention = 30 * DAY;
    let old = T0;
    let now = T0 + 40 * DAY;
    // r0 answered long ago; r1 expired long ago with an open task; r2 pending (never sent,
    // still queued); r3 answered recently; r4 opted out long ago.
    let states = [
        ("answered", old, false),
        ("expired", old, true),
        ("pending", old, false),
        ("answered", now - 5 * DAY, false),
        ("opted_out", old, false),
    ];
    for (i, (state, at, with_task)) in states.iter().enumerate() {
        let id = format!("r{i}");
        let number = format!("+8613700000{i:03}");
        let mut recs = call(&id, &number, *at);
        recs.push(scheduled(
            &id,
            700 + i as u64,
            *at,
            &number,
            Some("1001"),
            Some("tech"),
        ));
        if *with_task {
            recs.push(task(&id, *at, Some("1001"), Some("tech"), "low_score"));
        }
        db.store.write_batch(&recs).await.unwrap();
        if *state != "pending" {
            service_update(
                side,
                700 + i as u64,
                state,
                at + HOUR,
                Some(at + 60_000),
                None,
                None,
                None,
                None,
            )
            .await
            .unwrap();
            sqlx::query("UPDATE sms_messages SET state = 'sent', state_at = $2, sent_at = $2 WHERE message_id = $1")
                .bind(700 + i as i64)
                .bind(i64::try_from(at + 60_000).unwrap())
                .execute(side)
                .await
                .unwrap();
        }
        sqlx::query(
            "INSERT INTO sms_inbound (received_at, number, number_hash, body, survey_id, outcome, dedupe_key) \
             VALUES ($1, $2, $3, '5', $4, 'csat', $5)",
        )
        .bind(i64::try_from(at + 2 * 60_000).unwrap())
        .bind(number.clone())
        .bind(format!("h-{number}"))
        .bind(700 + i as i64)
        .bind(format!("k{i}"))
        .execute(side)
        .await
        .unwrap();
    }
    opt_out(
        side,
        "h-+8613700000004",
        "+8613700000004",
        old + HOUR,
        Some(704),
    )
    .await
    .unwrap();
    // An unmatched reply from long ago, and one from yesterday.
    for (k, at) in [("u-old", old), ("u-new", now - DAY)] {
        sqlx::query(
            "INSERT INTO sms_inbound (received_at, number, number_hash, body, survey_id, outcome, dedupe_key) \
             VALUES ($1, '+8613600000000', 'h-x', 'hi', NULL, 'unmatched', $2)",
        )
        .bind(i64::try_from(at).unwrap())
        .bind(k.to_string())
        .execute(side)
        .await
        .unwrap();
    }

    let dropped = db
        .store
        .drop_expired_numbers(Millis(now), retention)
        .await
        .unwrap();
    // surveys r0 r4; their messages (2) and replies (2); the opt-out; the old unmatched reply.
    assert_eq!(dropped, 2 + 2 + 2 + 1 + 1);
    assert_eq!(
        count(
            side,
            "SELECT COUNT(*) FROM surveys WHERE number IS NULL AND number_hashed_at IS NOT NULL"
        )
        .await,
        2
    );
    for kept in ["r1", "r2", "r3"] {
        assert_eq!(
            count(side, &format!("SELECT COUNT(*) FROM surveys WHERE call_id = '{kept}' AND number IS NOT NULL AND number_hashed_at IS NULL")).await,
            1,
            "{kept} keeps its number"
        );
    }
    assert_eq!(
        count(
            side,
            "SELECT COUNT(*) FROM sms_messages WHERE number IS NULL"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            side,
            "SELECT COUNT(*) FROM sms_inbound WHERE number IS NULL"
        )
        .await,
        3
    );
    assert_eq!(count(side, "SELECT COUNT(*) FROM sms_opt_outs WHERE number IS NULL AND number_hash = 'h-+8613700000004'").await, 1);
    // The frequency-cap facts survive: every survey keeps its hash and send time.
    assert_eq!(
        count(
            side,
            "SELECT COUNT(*) FROM surveys WHERE number_hash IS NOT NULL AND send_at IS NOT NULL"
        )
        .await,
        5
    );
    // Idempotent; closing r1's task lets the next run take it.
    assert_eq!(
        db.store
            .drop_expired_numbers(Millis(now), retention)
            .await
            .unwrap(),
        0
    );
    close_task_sql(side, "r1", now - DAY).await.unwrap();
    assert_eq!(
        db.store
            .drop_expired_numbers(Millis(now), retention)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        count(side, "SELECT COUNT(*) FROM surveys WHERE call_id = 'r1' AND number IS NULL AND number_hash = 'h-+8613700000001'").await,
        1
    );

    // Call records: an old call without a survey, an old one from an extension, a recent one.
    db.store
        .write_batch(&call("c-old", "+8613900000000", old))
        .await
        .unwrap();
    db.store
        .write_batch(&call("c-ext", "1001", old))
        .await
        .unwrap();
    db.store
        .write_batch(&call("c-new", "+8613900000000", now - DAY))
        .await
        .unwrap();
    let key = b"0123456789abcdef";
    let hashed = db
        .store
        .hash_old_callers(Millis(now), retention, key)
        .await
        .unwrap();
    // r0, r1 (task closed), r4 and c-old; r2's survey still holds its number, r3 and c-new
    // are recent, c-ext is an extension.
    assert_eq!(hashed, 4);
    let caller_of = |id: &str| format!("SELECT caller FROM calls WHERE call_id = '{id}'");
    for (id, number) in [("r0", "+8613700000000"), ("c-old", "+8613900000000")] {
        let stored: String = sqlx::query_scalar(sqlx::AssertSqlSafe(caller_of(id)))
            .fetch_one(side)
            .await
            .unwrap();
        assert_eq!(
            stored,
            ccswitch::engine::survey::number_hash(key, number),
            "{id}"
        );
    }
    for (id, number) in [
        ("r2", "+8613700000002"),
        ("r3", "+8613700000003"),
        ("c-new", "+8613900000000"),
        ("c-ext", "1001"),
    ] {
        let stored: String = sqlx::query_scalar(sqlx::AssertSqlSafe(caller_of(id)))
            .fetch_one(side)
            .await
            .unwrap();
        assert_eq!(stored, number, "{id} keeps its caller");
    }
    assert_eq!(
        db.store
            .hash_old_callers(Millis(now), retention, key)
            .await
            .unwrap(),
        0,
        "a hash is never hashed again"
    );
}

both_backends!(retention, retention_sqlite, retention_postgres);

#[tokio::test]
async fn spawn_retention_runs_at_once_and_stops_when_aborted() {
    let db = sqlite_db().await.unwrap();
    let old = T0;
    let mut recs = call("sr", "+8613500000000", old);
    recs.push(scheduled("sr", 900, old, "+8613500000000", None, None));
    db.store.write_batch(&recs).await.unwrap();
    service_update(
        &db.side,
        900,
        "expired",
        old + HOUR,
        None,
        None,
        None,
        None,
        None,
    )
    .await
    .unwrap();
    sqlx::query("UPDATE sms_messages SET state = 'cancelled' WHERE message_id = 900")
        .execute(&db.side)
        .await
        .unwrap();
    // Retention of 1 ms against the wall clock: the 2026 row is long past it.
    let h = ccswitch::store::spawn_retention(
        db.store.clone(),
        std::time::Duration::from_secs(3600),
        1,
        b"0123456789abcdef".to_vec(),
    );
    let mut done = false;
    for _ in 0..200 {
        if count(
            &db.side,
            "SELECT COUNT(*) FROM surveys WHERE number IS NULL",
        )
        .await
            == 1
        {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    h.abort();
    assert!(done, "the first run happens at once");
}

// ---------- the command line ----------

fn config_dir(tmp: &std::path::Path, allow_unmask: bool) -> std::path::PathBuf {
    let dir = tmp.join(if allow_unmask {
        "config-unmask"
    } else {
        "config"
    });
    std::fs::create_dir(&dir).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for f in std::fs::read_dir(&shipped).unwrap() {
        let f = f.unwrap();
        if !f.path().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(f.path()).unwrap();
        let text = if f.file_name() == "survey.toml" && allow_unmask {
            text.replacen("allow_unmask = false", "allow_unmask = true", 1)
        } else {
            text
        };
        std::fs::write(dir.join(f.file_name()), text).unwrap();
    }
    dir
}

#[tokio::test]
async fn cli_reports_tasks_and_unmask() {
    let db = sqlite_db().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let masked_cfg = config_dir(tmp.path(), false);
    let open_cfg = config_dir(tmp.path(), true);
    let at = T0 + HOUR;
    let mut recs = call("c1", "+8613812345678", at);
    recs.push(scheduled(
        "c1",
        42,
        at,
        "+8613812345678",
        Some("1001"),
        Some("tech"),
    ));
    recs.push(task("c1", at, Some("1001"), Some("tech"), "low_score"));
    db.store.write_batch(&recs).await.unwrap();
    service_update(
        &db.side,
        42,
        "answered",
        at + HOUR,
        Some(at + 60_000),
        Some(at + 61_000),
        Some(2),
        None,
        Some("太慢"),
    )
    .await
    .unwrap();

    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ccswitch"))
            .args(args)
            .env("CCSWITCH_DATABASE_URL", &db.url)
            .output()
            .expect("run ccswitch")
    };
    let cfg = masked_cfg.to_str().unwrap();
    let ok = |out: &std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };

    let out = ok(&run(&[
        "report",
        "surveys",
        "--config",
        cfg,
        "--interval",
        "day",
        "--by",
        "agent",
    ]));
    assert!(
        out.contains("100.0% (1/1)") && out.contains("1001"),
        "{out}"
    );
    assert!(
        out.contains("+08:00"),
        "local days in the IVR time zone: {out}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "report",
        "surveys",
        "--config",
        cfg,
        "--interval",
        "15m",
        "--format",
        "json",
    ])))
    .unwrap();
    assert_eq!(json["surveys"][0]["answered"], 1);
    assert_eq!(json["surveys"][0]["csat_mean"], 2.0);
    assert_eq!(json["interval"], "15m");

    let out = ok(&run(&["report", "calls", "--config", cfg]));
    assert!(
        out.contains("+86 138****5678") && out.contains("answered") && out.contains("太慢"),
        "{out}"
    );
    assert!(!out.contains("13812345678"), "{out}");

    // --unmask: refused (exit 2) unless allowed.
    for cmd in [
        &["report", "calls"][..],
        &["report", "surveys"][..],
        &["tasks", "list"][..],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["--config", cfg, "--unmask"]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--unmask refused") && err.contains("allow_unmask"),
            "{err}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = ok(&run(&[
        "report",
        "calls",
        "--config",
        open_cfg.to_str().unwrap(),
        "--unmask",
    ]));
    assert!(out.contains("+8613812345678"), "{out}");

    // tasks
    let out = ok(&run(&["tasks", "list", "--config", cfg, "--agent", "1001"]));
    assert!(
        out.contains("low_score") && out.contains("+86 138****5678") && out.contains("1 task(s)"),
        "{out}"
    );
    let out = ok(&run(&["tasks", "list", "--config", cfg, "--agent", "9999"]));
    assert!(out.contains("0 task(s)"), "{out}");
    let out = ok(&run(&["tasks", "list", "--config", cfg, "--overdue"]));
    assert!(
        out.contains("1 task(s)"),
        "the 2026 task is overdue by the wall clock: {out}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "tasks", "list", "--config", cfg, "--format", "json",
    ])))
    .unwrap();
    let id = json["tasks"][0]["task_id"].as_i64().unwrap().to_string();

    let out = run(&["tasks", "close", &id, "--config", cfg, "--note", "   "]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must not be empty"));
    let long = "x".repeat(1001);
    let out = run(&["tasks", "close", &id, "--config", cfg, "--note", &long]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 1000"));
    let out = run(&["tasks", "close", &id, "--config", cfg]);
    assert!(!out.status.success(), "the note is required");
    let out = ok(&run(&[
        "tasks",
        "close",
        &id,
        "--config",
        cfg,
        "--note",
        "called back, apologised",
    ]));
    assert!(out.contains(&format!("task {id} closed")), "{out}");
    let out = run(&["tasks", "close", &id, "--config", cfg, "--note", "again"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("closed already"));
    let out = run(&["tasks", "close", "424242", "--config", cfg, "--note", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no task 424242"));
    let out = ok(&run(&["tasks", "list", "--config", cfg]));
    assert!(out.contains("0 task(s)"), "{out}");
}
