//! The sqlx shell: the engine's records become rows, in SQLite or PostgreSQL chosen by URL.
//! One code path for both through the `Any` driver; the backends differ only in their
//! migrations. Timestamps are BIGINT UTC epoch milliseconds everywhere.
//!
//! Agent and queue records (migration 0002), for whoever emits them:
//! - `CallQueued`: the *first* queue and `queued_at` stick (an overflow to another queue keeps
//!   them), so queue wait and the per-queue figures count from the first entry.
//! - `OfferStarted` / `OfferEnded`: one `offer_attempts` row per (call, attempt); emit
//!   `OfferEnded` for every attempt (`cancelled` when the caller hangs up while it rings).
//! - `AgentAnswered`: the earliest one sets the call's `agent` and `agent_answered_at`.
//! - `WrapUpEnded`: sets `wrapup_ended_at` only for the call's answering agent.
//! - `CallOverflowed` (migration 0003): the first overflow's target, time and reason
//!   ("max_wait", "no_agents") stick on the call.
//! - `AgentStateChanged`: one row each; (agent, at, state) is the replay key, so two changes
//!   to the same state in the same millisecond for one agent are one row.
//! - `close_unfinished` (startup) also ends ringing offers as `failed`; it never invents a
//!   wrap-up end.
//!
//! Queries: `calls`/`call` (rows with offers and per-call figures), `call_figures` (the
//! same figures in SQL), `summary`,
//! `summary_by_interval`, `queue_stats`, `agent_stats` (one SQL query each, equal to the
//! `kpi` functions), `offer_facts`, `agent_state_changes`, `callbacks`.
//!
//! Surveys (issue 8): `survey_stats` (the SQL twin of `kpi::survey::survey_stats`),
//! `survey_facts`, `task_facts`, `call_surveys` (survey_report.rs); `list_follow_up_tasks`,
//! `close_follow_up_task` (follow_up_tasks.rs); `drop_expired_numbers` and
//! `spawn_retention` (retention.rs, PIPL retention).

mod aggregates;
pub mod api_tokens;
pub mod audit;
mod audit_page;
mod call_search;
mod outbox;
mod queries;
pub mod report;
mod survey_ledger;
pub mod web_sessions;
mod writer;

mod dispositions;
mod follow_up_tasks;
pub mod monitoring;
pub mod retention;
mod survey_report;

pub use outbox::{EscalatedTask, InboundText, OutboxRow, ReplyApplied, SurveyRow};

pub use call_search::{CallHit, CallOutcome, CallSearch};
pub use dispositions::DispositionRow;
pub use follow_up_tasks::{CloseOutcome, FollowUpTaskRow, TaskFilter};
pub use queries::{CallDisposition, CallFigures, CallRow, IvrStepRow, OfferRow};
pub use retention::spawn_retention;
pub use survey_report::CallSurvey;
pub use writer::{
    spawn_writer, spawn_writer_with, RecordSink, WriterConfig, WriterHandle, WriterStats,
};

use crate::engine::record::Record;
use crate::engine::time::Millis;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bad database URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored data the switch cannot use and must not overwrite.
    #[error("database content: {0}")]
    Corrupt(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool on the call database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "calls", include_str!("migrations/sqlite/0001_calls.sql")),
    (
        2,
        "agents",
        include_str!("migrations/sqlite/0002_agents.sql"),
    ),
    (
        3,
        "overflow",
        include_str!("migrations/sqlite/0003_overflow.sql"),
    ),
    (
        4,
        "surveys",
        include_str!("migrations/sqlite/0004_surveys.sql"),
    ),
    (5, "auth", include_str!("migrations/sqlite/0005_auth.sql")),
    (
        6,
        "dispositions",
        include_str!("migrations/sqlite/0006_dispositions.sql"),
    ),
    (
        7,
        "sessions",
        include_str!("migrations/sqlite/0007_sessions.sql"),
    ),
    (
        8,
        "monitoring",
        include_str!("migrations/sqlite/0008_monitoring.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "calls",
        include_str!("migrations/postgres/0001_calls.sql"),
    ),
    (
        2,
        "agents",
        include_str!("migrations/postgres/0002_agents.sql"),
    ),
    (
        3,
        "overflow",
        include_str!("migrations/postgres/0003_overflow.sql"),
    ),
    (
        4,
        "surveys",
        include_str!("migrations/postgres/0004_surveys.sql"),
    ),
    (5, "auth", include_str!("migrations/postgres/0005_auth.sql")),
    (
        6,
        "dispositions",
        include_str!("migrations/postgres/0006_dispositions.sql"),
    ),
    (
        7,
        "sessions",
        include_str!("migrations/postgres/0007_sessions.sql"),
    ),
    (
        8,
        "monitoring",
        include_str!("migrations/postgres/0008_monitoring.sql"),
    ),
];

/// Migrations are embedded by hand (the `migrate!` macro would pull in sqlx's proc macros).
fn migrator(backend: Backend) -> Migrator {
    let files = match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
    };
    let migrations: Vec<Migration> = files
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// Turns what the operator wrote into a sqlx URL: `sqlite:` and `postgres(ql)://` pass through
/// (SQLite files are created if missing unless the URL names a mode); anything else is a
/// SQLite file path.
fn normalize_url(url: &str) -> Result<(String, Backend), StoreError> {
    let bad = |reason: &str| StoreError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((url.to_string(), Backend::Postgres));
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let path = path.trim_start_matches("//");
        if path.is_empty() {
            return Err(bad("no SQLite file named"));
        }
        let url = match query {
            None => format!("{url}?mode=rwc"),
            Some(q) if q.split('&').any(|kv| kv.starts_with("mode=")) => url.to_string(),
            Some(_) => format!("{url}&mode=rwc"),
        };
        return Ok((url, Backend::Sqlite));
    }
    if url.contains("://") {
        return Err(bad("unsupported scheme (use sqlite: or postgres://)"));
    }
    if url.is_empty() {
        return Err(bad("empty"));
    }
    Ok((
        format!("sqlite://{}?mode=rwc", percent_encode_path(url)),
        Backend::Sqlite,
    ))
}

/// sqlx percent-decodes the SQLite file name, so `?`, `#`, `%` and spaces must be encoded.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

static INSTALL_DRIVERS: Once = Once::new();

/// Times are u64 in the engine, BIGINT in the database.
pub(crate) fn ms_to_db(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// PostgreSQL TEXT rejects NUL; peer-supplied strings (caller, digits) must still be stored.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn opt_text(s: &Option<String>) -> Option<String> {
    s.as_deref().map(|s| text(s).into_owned())
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the database.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        INSTALL_DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (url, backend) = normalize_url(url)?;
        let options = AnyConnectOptions::from_str(&url)?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool_options = match backend {
            Backend::Sqlite => AnyPoolOptions::new()
                // An in-memory database lives only as long as one of its connections.
                .max_connections(if in_memory { 1 } else { 4 })
                .min_connections(if in_memory { 1 } else { 0 })
                .idle_timeout(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(600))
                })
                .max_lifetime(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(1800))
                })
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        // WAL + synchronous=NORMAL: durable at checkpoints, ~8x faster inserts.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        Ok(())
                    })
                }),
            Backend::Postgres => AnyPoolOptions::new().max_connections(8),
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        migrator(backend).run(&pool).await?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers at all (tells a refused write from an unreachable one).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Writes `records` in one transaction. Idempotent: applying the same batch again (a retry
    /// after an error whose commit outcome is unknown) leaves the same rows.
    pub async fn write_batch(&self, records: &[Record]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        // Every call the batch mentions gets its row first (so child rows have a parent even
        // if its CallStarted was lost), and its last_event_at moved forward once.
        let mut touched: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for r in records {
            let at = r.at().as_u64();
            let Some(call_id) = r.call_id() else { continue };
            touched
                .entry(call_id)
                .and_modify(|(first, last)| {
                    *first = (*first).min(at);
                    *last = (*last).max(at);
                })
                .or_insert((at, at));
        }
        let mut tx = self.pool.begin().await?;
        for (call_id, (first, last)) in &touched {
            sqlx::query(
                "INSERT INTO calls (call_id, arrived_at, last_event_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (call_id) DO UPDATE SET last_event_at = CASE \
                   WHEN excluded.last_event_at > calls.last_event_at THEN excluded.last_event_at \
                   ELSE calls.last_event_at END",
            )
            .bind(text(call_id).into_owned())
            .bind(ms_to_db(*first))
            .bind(ms_to_db(*last))
            .execute(&mut *tx)
            .await?;
        }
        for r in records {
            write_record(&mut tx, r).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// At startup: calls left open by a previous run (crash, kill) are closed at their last
    /// known event, by the system, with IVR outcome `failed` if none was recorded; their open
    /// hold segments end with them, and offers still ringing end there too with outcome
    /// `failed`. A call an agent answered whose wrap-up end was never seen keeps
    /// `wrapup_ended_at` NULL (no ACW is invented). Returns how many calls were closed.
    pub async fn close_unfinished(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let closed = sqlx::query(
            "UPDATE calls SET ended_at = last_event_at, ended_by = 'system', \
               end_reason = 'error: unfinished at startup', \
               ivr_left_at = CASE WHEN ivr_outcome IS NULL AND answered_at IS NOT NULL \
                 THEN COALESCE(ivr_left_at, last_event_at) ELSE ivr_left_at END, \
               ivr_outcome = COALESCE(ivr_outcome, 'failed') \
             WHERE ended_at IS NULL",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        close_open_holds(&mut tx, None).await?;
        sqlx::query(
            "UPDATE offer_attempts SET outcome = 'failed', ended_at = \
               (SELECT CASE WHEN c.ended_at > offer_attempts.offered_at THEN c.ended_at \
                       ELSE offer_attempts.offered_at END \
                FROM calls c WHERE c.call_id = offer_attempts.call_id) \
             WHERE ended_at IS NULL",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(closed)
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Ends open hold segments at their call's end (all calls, or one).
async fn close_open_holds(tx: &mut Tx, call_id: Option<&str>) -> Result<(), sqlx::Error> {
    let sql = "UPDATE hold_segments SET ended_at = \
         (SELECT c.ended_at FROM calls c WHERE c.call_id = hold_segments.call_id) \
       WHERE ended_at IS NULL AND call_id IN \
         (SELECT c.call_id FROM calls c WHERE c.ended_at IS NOT NULL)";
    match call_id {
        None => sqlx::query(sql).execute(&mut **tx).await?,
        Some(id) => {
            sqlx::query(
                "UPDATE hold_segments SET ended_at = \
                   (SELECT c.ended_at FROM calls c WHERE c.call_id = $1) \
                 WHERE ended_at IS NULL AND call_id = $1",
            )
            .bind(text(id).into_owned())
            .execute(&mut **tx)
            .await?
        }
    };
    Ok(())
}

/// One record's effect; its call row exists already (see `write_batch`).
async fn write_record(tx: &mut Tx, r: &Record) -> Result<(), sqlx::Error> {
    let id = text(r.call_id().unwrap_or("")).into_owned();
    let ms = |t: &Millis| ms_to_db(t.as_u64());
    match r {
        Record::CallStarted {
            sip_call_id,
            caller,
            dialled,
            transport,
            arrived_at,
            ring_cycle_ms,
            ..
        } => {
            sqlx::query(
                "UPDATE calls SET sip_call_id = $2, caller = $3, dialled = $4, transport = $5, \
                   arrived_at = $6, ring_cycle_ms = $7 WHERE call_id = $1",
            )
            .bind(id)
            .bind(text(sip_call_id).into_owned())
            .bind(text(caller).into_owned())
            .bind(text(dialled).into_owned())
            .bind(text(transport).into_owned())
            .bind(ms_to_db(arrived_at.as_u64()))
            .bind(ms_to_db(*ring_cycle_ms))
            .execute(&mut **tx)
            .await?;
        }
        Record::CallRinging { ringing_at, .. } => {
            sqlx::query("UPDATE calls SET ringing_at = $2 WHERE call_id = $1")
                .bind(id)
                .bind(ms_to_db(ringing_at.as_u64()))
                .execute(&mut **tx)
                .await?;
        }
        Record::CallAnswered {
            answered_at,
            within_three_rings,
            ..
        } => {
            sqlx::query(
                "UPDATE calls SET answered_at = $2, within_three_rings = $3 WHERE call_id = $1",
            )
            .bind(id)
            .bind(ms_to_db(answered_at.as_u64()))
            .bind(i32::from(*within_three_rings))
            .execute(&mut **tx)
            .await?;
        }
        Record::IvrStep {
            seq,
            at,
            node,
            kind,
            digits,
            detail,
            ..
        } => {
            sqlx::query(
                "INSERT INTO ivr_steps (call_id, seq, at, node, kind, digits, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (call_id, seq) DO NOTHING",
            )
            .bind(id)
            .bind(i64::from(*seq))
            .bind(ms_to_db(at.as_u64()))
            .bind(text(node).into_owned())
            .bind(text(kind).into_owned())
            .bind(opt_text(digits))
            .bind(opt_text(detail))
            .execute(&mut **tx)
            .await?;
        }
        Record::IvrLeft { at, outcome, .. } => {
            sqlx::query("UPDATE calls SET ivr_left_at = $2, ivr_outcome = $3 WHERE call_id = $1")
                .bind(id)
                .bind(ms_to_db(at.as_u64()))
                .bind(outcome.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Record::CallVariable {
            at, name, value, ..
        } => {
            // The latest value of a name wins, whatever order retries replay it in.
            sqlx::query(
                "INSERT INTO call_variables (call_id, name, value, at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (call_id, name) \
                 DO UPDATE SET value = excluded.value, at = excluded.at \
                 WHERE excluded.at >= call_variables.at",
            )
            .bind(id)
            .bind(text(name).into_owned())
            .bind(text(value).into_owned())
            .bind(ms_to_db(at.as_u64()))
            .execute(&mut **tx)
            .await?;
        }
        Record::HoldStarted { at, .. } => {
            sqlx::query(
                "INSERT INTO hold_segments (call_id, started_at) VALUES ($1, $2) \
                 ON CONFLICT (call_id, started_at) DO NOTHING",
            )
            .bind(id)
            .bind(ms_to_db(at.as_u64()))
            .execute(&mut **tx)
            .await?;
        }
        Record::HoldEnded { at, .. } => {
            // Ends the latest open hold that started by then; a replay finds none open.
            let at = ms_to_db(at.as_u64());
            sqlx::query(
                "UPDATE hold_segments SET ended_at = $2 WHERE call_id = $1 AND started_at = \
                   (SELECT MAX(h.started_at) FROM hold_segments h \
                    WHERE h.call_id = $1 AND h.ended_at IS NULL AND h.started_at <= $2)",
            )
            .bind(id)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        Record::CallEnded {
            ended_at,
            ended_by,
            reason,
            final_status,
            ..
        } => {
            sqlx::query(
                "UPDATE calls SET ended_at = $2, ended_by = $3, end_reason = $4, final_status = $5 \
                 WHERE call_id = $1",
            )
            .bind(id.clone())
            .bind(ms_to_db(ended_at.as_u64()))
            .bind(ended_by.as_str())
            .bind(text(reason).into_owned())
            .bind(i32::from(*final_status))
            .execute(&mut **tx)
            .await?;
            close_open_holds(tx, Some(&id)).await?;
        }
        Record::CallQueued {
            at,
            queue,
            priority,
            ..
        } => {
            // The first queue the call entered counts (a later overflow keeps it).
            sqlx::query(
                "UPDATE calls SET queue = COALESCE(queue, $2), \
                   queue_priority = COALESCE(queue_priority, $3), \
                   queued_at = COALESCE(queued_at, $4) WHERE call_id = $1",
            )
            .bind(id)
            .bind(text(queue).into_owned())
            .bind(*priority)
            .bind(ms(at))
            .execute(&mut **tx)
            .await?;
        }
        Record::OfferStarted {
            attempt, agent, at, ..
        } => {
            // Upsert: an OfferEnded written first (its batch isolated) left a placeholder.
            sqlx::query(
                "INSERT INTO offer_attempts (call_id, attempt, agent, offered_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (call_id, attempt) \
                 DO UPDATE SET agent = excluded.agent, offered_at = excluded.offered_at",
            )
            .bind(id)
            .bind(i64::from(*attempt))
            .bind(text(agent).into_owned())
            .bind(ms(at))
            .execute(&mut **tx)
            .await?;
        }
        Record::OfferEnded {
            attempt,
            at,
            outcome,
            ..
        } => {
            sqlx::query(
                "INSERT INTO offer_attempts (call_id, attempt, agent, offered_at, ended_at, \
                   outcome) VALUES ($1, $2, '', $3, $3, $4) ON CONFLICT (call_id, attempt) \
                 DO UPDATE SET ended_at = excluded.ended_at, outcome = excluded.outcome",
            )
            .bind(id)
            .bind(i64::from(*attempt))
            .bind(ms(at))
            .bind(text(outcome).into_owned())
            .execute(&mut **tx)
            .await?;
        }
        Record::AgentAnswered { agent, at, .. } => {
            // The first agent to answer is the call's agent (METRICS.md agent_answered_at).
            sqlx::query(
                "UPDATE calls SET agent = $2, agent_answered_at = $3 \
                 WHERE call_id = $1 AND (agent_answered_at IS NULL OR agent_answered_at >= $3)",
            )
            .bind(id)
            .bind(text(agent).into_owned())
            .bind(ms(at))
            .execute(&mut **tx)
            .await?;
        }
        Record::WrapUpEnded { agent, at, .. } => {
            // Only the answering agent's wrap-up is the call's ACW (not a transfer target's).
            sqlx::query(
                "UPDATE calls SET wrapup_ended_at = $3 \
                 WHERE call_id = $1 AND (agent IS NULL OR agent = $2)",
            )
            .bind(id)
            .bind(text(agent).into_owned())
            .bind(ms(at))
            .execute(&mut **tx)
            .await?;
        }
        Record::CallTransferred { at, target, by, .. } => {
            sqlx::query(
                "UPDATE calls SET transferred_to = $2, transferred_by = $3, transferred_at = $4 \
                 WHERE call_id = $1",
            )
            .bind(id)
            .bind(text(target).into_owned())
            .bind(text(by).into_owned())
            .bind(ms(at))
            .execute(&mut **tx)
            .await?;
        }
        Record::RecordingSaved { path, .. } => {
            sqlx::query("UPDATE calls SET recording_path = $2 WHERE call_id = $1")
                .bind(id)
                .bind(text(path).into_owned())
                .execute(&mut **tx)
                .await?;
        }
        Record::CallOverflowed {
            at,
            to_queue,
            reason,
            ..
        } => {
            // The first overflow sticks: it says why the call left the queue it counts under.
            sqlx::query(
                "UPDATE calls SET overflowed_to = $2, overflowed_at = $3, overflow_reason = $4 \
                 WHERE call_id = $1 AND overflowed_at IS NULL",
            )
            .bind(id)
            .bind(text(to_queue).into_owned())
            .bind(ms(at))
            .bind(text(reason).into_owned())
            .execute(&mut **tx)
            .await?;
        }
        Record::CallbackRequested {
            at, queue, number, ..
        } => {
            sqlx::query(
                "INSERT INTO callbacks (call_id, requested_at, queue, number) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (call_id, requested_at) DO NOTHING",
            )
            .bind(id)
            .bind(ms(at))
            .bind(text(queue).into_owned())
            .bind(text(number).into_owned())
            .execute(&mut **tx)
            .await?;
        }
        Record::SurveyScheduled {
            survey_id,
            at,
            number,
            number_hash,
            language,
            text: body,
            send_at,
            deferred,
            reply_by,
            agent,
            queue,
            complaint,
            ..
        } => {
            let state = if *deferred { "deferred" } else { "pending" };
            let sid = ms_to_db(*survey_id);
            // A replayed batch finds the survey there and adds nothing (the sender may have
            // moved it on already).
            let inserted = sqlx::query(
                "INSERT INTO surveys (survey_id, call_id, decided_at, state, state_at, number, \
                   number_hash, language, body, agent, queue, complaint, send_at, reply_by) \
                 VALUES ($1, $2, $3, $4, $3, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (call_id) DO NOTHING",
            )
            .bind(sid)
            .bind(id)
            .bind(ms(at))
            .bind(state)
            .bind(text(number).into_owned())
            .bind(text(number_hash).into_owned())
            .bind(text(language).into_owned())
            .bind(text(body).into_owned())
            .bind(opt_text(agent))
            .bind(opt_text(queue))
            .bind(i32::from(*complaint))
            .bind(ms(send_at))
            .bind(ms(reply_by))
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                sqlx::query(
                    "INSERT INTO survey_events (survey_id, at, state, detail) VALUES ($1, $2, $3, $4)",
                )
                .bind(sid)
                .bind(ms(at))
                .bind(state)
                .bind(deferred.then(|| format!("quiet hours: held until {}", send_at.as_u64())))
                .execute(&mut **tx)
                .await?;
                sqlx::query(
                    "INSERT INTO sms_messages (message_id, survey_id, kind, number, body, \
                       created_at, state, state_at, due_at) \
                     VALUES ($1, $1, 'survey', $2, $3, $4, 'queued', $4, $5) \
                     ON CONFLICT (message_id) DO NOTHING",
                )
                .bind(sid)
                .bind(text(number).into_owned())
                .bind(text(body).into_owned())
                .bind(ms(at))
                .bind(ms(send_at))
                .execute(&mut **tx)
                .await?;
            }
        }
        Record::SurveySkipped {
            survey_id,
            at,
            reason,
            agent,
            queue,
            ..
        } => {
            let sid = ms_to_db(*survey_id);
            let inserted = sqlx::query(
                "INSERT INTO surveys (survey_id, call_id, decided_at, state, state_at, \
                   skip_reason, agent, queue) VALUES ($1, $2, $3, 'skipped', $3, $4, $5, $6) \
                 ON CONFLICT (call_id) DO NOTHING",
            )
            .bind(sid)
            .bind(id)
            .bind(ms(at))
            .bind(text(reason).into_owned())
            .bind(opt_text(agent))
            .bind(opt_text(queue))
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                sqlx::query(
                    "INSERT INTO survey_events (survey_id, at, state, detail) \
                     VALUES ($1, $2, 'skipped', $3)",
                )
                .bind(sid)
                .bind(ms(at))
                .bind(text(reason).into_owned())
                .execute(&mut **tx)
                .await?;
            }
        }
        Record::DispositionSet { .. } => dispositions::write(tx, r).await?,
        Record::MonitorStarted { .. }
        | Record::MonitorEnded { .. }
        | Record::MonitorRefused { .. } => monitoring::write(tx, r).await?,
        Record::FollowUpOpened {
            at,
            agent,
            queue,
            reason,
            due_at,
            ..
        } => {
            // A disposition task closed because the agent changed the disposition comes
            // back when they set that code again (dispositions.rs).
            sqlx::query(
                "INSERT INTO follow_up_tasks (call_id, agent, queue, reason, opened_at, due_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (call_id, reason) DO UPDATE \
                 SET closed_at = NULL, note = NULL, opened_at = excluded.opened_at, \
                     due_at = excluded.due_at, escalated_at = NULL \
                 WHERE follow_up_tasks.closed_at IS NOT NULL \
                   AND follow_up_tasks.note = $7",
            )
            .bind(id)
            .bind(opt_text(agent))
            .bind(opt_text(queue))
            .bind(text(reason).into_owned())
            .bind(ms(at))
            .bind(ms(due_at))
            .bind(dispositions::SUPERSEDED_NOTE)
            .execute(&mut **tx)
            .await?;
        }
        Record::AgentStateChanged {
            agent,
            at,
            state,
            reason,
        } => {
            sqlx::query(
                "INSERT INTO agent_state_changes (agent, at, state, reason) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (agent, at, state) DO NOTHING",
            )
            .bind(text(agent).into_owned())
            .bind(ms(at))
            .bind(text(state).into_owned())
            .bind(opt_text(reason))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized() {
        let n = normalize_url;
        assert_eq!(
            n("postgres://u@h/db").ok(),
            Some(("postgres://u@h/db".to_string(), Backend::Postgres))
        );
        assert_eq!(
            n("sqlite:x.db").ok().map(|x| x.0),
            Some("sqlite:x.db?mode=rwc".into())
        );
        assert_eq!(
            n("sqlite:x.db?mode=ro").ok().map(|x| x.0),
            Some("sqlite:x.db?mode=ro".into())
        );
        assert_eq!(
            n("sqlite:x.db?cache=shared").ok().map(|x| x.0),
            Some("sqlite:x.db?cache=shared&mode=rwc".into())
        );
        assert_eq!(
            n("/tmp/a b?.db").ok().map(|x| x.0),
            Some("sqlite:///tmp/a%20b%3F.db?mode=rwc".into())
        );
        assert!(n("mysql://x").is_err());
        assert!(n("").is_err());
        assert!(n("sqlite:").is_err());
    }

    #[tokio::test]
    async fn sqlite_runs_in_wal_with_normal_sync() {
        use sqlx::Row;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite:{}", dir.path().join("w.db").display()))
            .await
            .unwrap();
        let mut conn = store.pool.acquire().await.unwrap();
        let mode: String = sqlx::query("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .get(0);
        assert_eq!(mode, "wal");
        // synchronous: 1 = NORMAL.
        let sync: i64 = sqlx::query("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .get(0);
        assert_eq!(sync, 1);
        let busy: i64 = sqlx::query("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap()
            .get(0);
        assert_eq!(busy, 5000);
    }

    /// A database made by the issue #2 build (migration 0001 only, with a call in it) is
    /// upgraded in place: the call keeps its fields and gains empty agent fields.
    #[tokio::test]
    async fn upgrades_a_0001_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("old.db").display());
        INSTALL_DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (norm, _) = normalize_url(&url).unwrap();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&norm)
            .await
            .unwrap();
        let mut old = migrator(Backend::Sqlite);
        old.migrations = Cow::Owned(old.migrations[..1].to_vec());
        old.run(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO calls (call_id, arrived_at, ended_at, ended_by, last_event_at) \
             VALUES ('old', 5, 9, 'caller', 9)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let store = Store::open(&url).await.unwrap();
        let c = store.call("old").await.unwrap().unwrap();
        assert_eq!(c.ended_at, Some(Millis(9)));
        assert_eq!(
            (c.queue.clone(), c.agent.clone(), c.queued_at),
            (None, None, None)
        );
        assert!(c.offers.is_empty() && !c.abandoned && c.aht_ms.is_none());
        store
            .write_batch(&[Record::AgentStateChanged {
                agent: "alice".into(),
                at: Millis(10),
                state: "ready".into(),
                reason: None,
            }])
            .await
            .unwrap();
        assert_eq!(store.agent_state_changes().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn opens_a_bare_path_and_migrates_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calls db.sqlite");
        let path = path.to_str().unwrap();
        let store = Store::open(path).await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        store.close().await;
        // Reopening applies no migration twice.
        let store = Store::open(path).await.unwrap();
        assert!(store.calls(None, None).await.unwrap().is_empty());
        store.close().await;
    }
}
