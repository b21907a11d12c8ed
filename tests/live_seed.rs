//! The live view's figures against the store (issue 9), on SQLite and PostgreSQL: records
//! written to the database and the same records fed live give the same snapshot figures,
//! and those equal the store's SQL aggregates (`ccswitch report`) over today.
//!
//! PostgreSQL: `CCSWITCH_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`); each
//! test creates `ccswitch_live_<random>` and drops it. `CCSWITCH_TEST_SKIP_POSTGRES=1` skips.

use ccswitch::config::{self, wallboard::Wallboard};
use ccswitch::engine::record::{EndedBy, IvrOutcome, Record};
use ccswitch::engine::time::Millis;
use ccswitch::kpi::{Interval, QueueStats, Range, ServiceLevelTargets};
use ccswitch::live::hub::seeded_model;
use ccswitch::live::{LiveModel, ModelConfig};
use ccswitch::store::Store;
use sqlx::Connection;

/// 2025-12-05 11:00 in Shanghai (03:00 UTC); the local day began 2025-12-04 16:00 UTC.
const NOON: u64 = 1_764_903_600_000;

struct PgDatabase {
    admin: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
    }
}

fn model_config() -> ModelConfig {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let c = config::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    ModelConfig {
        time_zone: chrono_tz::Asia::Shanghai,
        wallboard: Wallboard::default(),
        queues: c.queues.clone(),
        agents: c.agents.clone(),
    }
}

fn at(s: u64) -> Millis {
    Millis(NOON + s * 1000)
}

/// A queued call: answered after `wait` s by `agent` (talk 60 s, wrap-up 10 s) or, with
/// no agent, abandoned after `wait` s.
fn call(id: &str, t: u64, queue: &str, agent: Option<&str>, wait: u64) -> Vec<Record> {
    let q = t + 8;
    let mut v = vec![
        Record::CallStarted {
            call_id: id.into(),
            sip_call_id: format!("{id}@test"),
            caller: "+8613812345678".into(),
            dialled: "100".into(),
            transport: "udp".into(),
            arrived_at: at(t),
            ring_cycle_ms: 6000,
        },
        Record::CallAnswered {
            call_id: id.into(),
            answered_at: at(t + 2),
            within_three_rings: true,
        },
        Record::IvrLeft {
            call_id: id.into(),
            at: at(q),
            outcome: IvrOutcome::Queued,
        },
        Record::CallQueued {
            call_id: id.into(),
            at: at(q),
            queue: queue.into(),
            priority: 0,
        },
    ];
    match agent {
        Some(a) => {
            let ans = q + wait;
            v.extend([
                Record::OfferStarted {
                    call_id: id.into(),
                    attempt: 1,
                    agent: a.into(),
                    at: at(ans - 1),
                },
                Record::OfferEnded {
                    call_id: id.into(),
                    attempt: 1,
                    at: at(ans),
                    outcome: "answered".into(),
                },
                Record::AgentAnswered {
                    call_id: id.into(),
                    agent: a.into(),
                    at: at(ans),
                },
                Record::CallEnded {
                    call_id: id.into(),
                    ended_at: at(ans + 60),
                    ended_by: EndedBy::Caller,
                    reason: "bye".into(),
                    final_status: 200,
                },
                Record::WrapUpEnded {
                    call_id: id.into(),
                    agent: a.into(),
                    at: at(ans + 70),
                },
            ]);
        }
        None => v.push(Record::CallEnded {
            call_id: id.into(),
            ended_at: at(q + wait),
            ended_by: EndedBy::Caller,
            reason: "bye".into(),
            final_status: 200,
        }),
    }
    v
}

fn records() -> Vec<Record> {
    let mut v = Vec::new();
    v.extend(call("a", 0, "tech", Some("1001"), 5));
    v.extend(call("b", 100, "tech", Some("1002"), 45));
    v.extend(call("c", 200, "tech", None, 30));
    v.extend(call("d", 300, "tech", None, 2));
    v.extend(call("e", 400, "after_sales", Some("1003"), 12));
    // A self-served call.
    v.extend([
        Record::CallStarted {
            call_id: "f".into(),
            sip_call_id: "f@test".into(),
            caller: "+8613900000000".into(),
            dialled: "100".into(),
            transport: "udp".into(),
            arrived_at: at(500),
            ring_cycle_ms: 6000,
        },
        Record::CallAnswered {
            call_id: "f".into(),
            answered_at: at(501),
            within_three_rings: true,
        },
        Record::IvrLeft {
            call_id: "f".into(),
            at: at(530),
            outcome: IvrOutcome::SelfServed,
        },
        Record::CallEnded {
            call_id: "f".into(),
            ended_at: at(531),
            ended_by: EndedBy::Caller,
            reason: "ivr_hangup".into(),
            final_status: 200,
        },
    ]);
    v
}

async fn seeded_equals_live_equals_sql(store: &Store) {
    let recs = records();
    store.write_batch(&recs).await.expect("write");
    let now = at(900);
    let mut seeded = seeded_model(model_config(), store, now).await;
    let mut live = LiveModel::new(model_config(), now);
    for r in &recs {
        live.apply(r);
    }
    let (s, l) = (seeded.snapshot(now), live.snapshot(now));
    assert_eq!(s.totals, l.totals);
    assert_eq!(s.intervals, l.intervals);
    for (sq, lq) in s.queues.iter().zip(&l.queues) {
        assert_eq!(sq.today, lq.today, "{}", sq.name);
        assert_eq!(sq.staffing, lq.staffing, "{}", sq.name);
    }
    let agents = |v: &[ccswitch::live::snapshot::AgentView]| -> Vec<(String, u64, Option<f64>)> {
        v.iter()
            .map(|a| (a.extension.clone(), a.calls_today, a.aht_secs_today))
            .collect()
    };
    assert_eq!(agents(&s.agents), agents(&l.agents));
    assert_eq!(
        (s.totals.offered, s.totals.answered, s.totals.abandoned),
        (5, 3, 2)
    );

    // The report's SQL over today, per queue with each queue's own threshold.
    let targets = ServiceLevelTargets::from_queues(&model_config().queues, None);
    let range = Range {
        since: Some(Millis(s.day_start)),
        until: Some(now),
    };
    let rows = store
        .queue_stats_per_queue(range, Interval::Day, &targets)
        .await
        .expect("queue stats");
    for q in &s.queues {
        let mut sql = QueueStats::default();
        for (name, _, st) in rows.iter().filter(|(n, _, _)| *n == q.name) {
            assert_eq!(name, &q.name);
            sql.offered += st.offered;
            sql.answered += st.answered;
            sql.abandoned += st.abandoned;
            sql.answered_within_sl += st.answered_within_sl;
            sql.short_abandoned += st.short_abandoned;
            sql.answer_wait_ms_total += st.answer_wait_ms_total;
        }
        assert_eq!(
            (q.today.offered, q.today.answered, q.today.abandoned),
            (sql.offered, sql.answered, sql.abandoned),
            "{}",
            q.name
        );
        let pct = sql.service_level().map(|f| (f * 1000.0).round() / 10.0);
        assert_eq!(q.today.service_level_pct, pct, "{}", q.name);
        let asa = sql.asa_ms().map(|m| (m / 100.0).round() / 10.0);
        assert_eq!(q.today.asa_secs, asa, "{}", q.name);
    }
    let summary = store
        .summary(Some(Millis(s.day_start)), Some(now))
        .await
        .expect("summary");
    let containment = summary
        .ivr_containment()
        .map(|f| (f * 1000.0).round() / 10.0);
    assert_eq!(s.totals.containment_pct, containment);
    assert_eq!(
        s.totals.containment_pct,
        Some(16.7),
        "1 self-served of 6 answered"
    );
}

#[tokio::test]
async fn seeded_figures_equal_live_and_sql_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&format!("sqlite:{}", dir.path().join("live.db").display()))
        .await
        .expect("open sqlite");
    seeded_equals_live_equals_sql(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_figures_equal_live_and_sql_postgres() {
    if std::env::var("CCSWITCH_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        eprintln!("CCSWITCH_TEST_SKIP_POSTGRES=1: skipped");
        return;
    }
    let admin = std::env::var("CCSWITCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let name = format!("ccswitch_live_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} unreachable ({e})"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let guard = PgDatabase {
        admin: admin.clone(),
        name: name.clone(),
    };
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("CCSWITCH_PG_URL {admin} names no database"),
    };
    let store = Store::open(&url).await.expect("open postgres");
    seeded_equals_live_equals_sql(&store).await;
    store.close().await;
    drop(guard);
}
