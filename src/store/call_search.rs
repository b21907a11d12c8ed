//! Calls search for the supervisor API (`GET /api/v1/calls`): filters, newest first, keyset
//! paging on (arrived_at, call_id); and the pieces of one call's timeline that `Store::call`
//! does not read (its survey, its follow-up task). Same SQL on SQLite and PostgreSQL.

use super::queries::{call_from_row, millis, opt_millis, CALL_COLUMNS};
use super::{ms_to_db, CallRow, CallSurvey, FollowUpTaskRow, Store, StoreError};
use crate::engine::record::{EndedBy, IvrOutcome};
use crate::engine::time::Millis;
use sqlx::Row;

/// How a call ended, one label per call (the first rule that holds, in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// Not ended yet.
    InProgress,
    /// An agent answered.
    Answered,
    /// Queued, the caller hung up before an agent answered (METRICS.md abandonment).
    Abandoned,
    /// Queued, ended by the switch before an agent answered (max wait, closing).
    NotAnswered,
    /// Left the IVR self-served.
    SelfServed,
    /// Transferred out of the IVR or by an agent.
    Transferred,
    /// The caller hung up in the IVR.
    AbandonedInIvr,
    /// Anything else (failed calls).
    Failed,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 8] = [
        CallOutcome::InProgress,
        CallOutcome::Answered,
        CallOutcome::Abandoned,
        CallOutcome::NotAnswered,
        CallOutcome::SelfServed,
        CallOutcome::Transferred,
        CallOutcome::AbandonedInIvr,
        CallOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::InProgress => "in_progress",
            CallOutcome::Answered => "answered",
            CallOutcome::Abandoned => "abandoned",
            CallOutcome::NotAnswered => "not_answered",
            CallOutcome::SelfServed => "self_served",
            CallOutcome::Transferred => "transferred",
            CallOutcome::AbandonedInIvr => "abandoned_in_ivr",
            CallOutcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<CallOutcome> {
        CallOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The label of a stored call; the same rules as `OUTCOME_SQL`.
    pub fn of(c: &CallRow) -> CallOutcome {
        if c.ended_at.is_none() {
            CallOutcome::InProgress
        } else if c.agent_answered_at.is_some() {
            CallOutcome::Answered
        } else if c.queued_at.is_some() && c.ended_by == Some(EndedBy::Caller) {
            CallOutcome::Abandoned
        } else if c.queued_at.is_some() {
            CallOutcome::NotAnswered
        } else if c.ivr_outcome == Some(IvrOutcome::SelfServed) {
            CallOutcome::SelfServed
        } else if c.ivr_outcome == Some(IvrOutcome::Transferred) || c.transferred_to.is_some() {
            CallOutcome::Transferred
        } else if c.ivr_outcome == Some(IvrOutcome::AbandonedInIvr) {
            CallOutcome::AbandonedInIvr
        } else {
            CallOutcome::Failed
        }
    }
}

/// `CallOutcome::of` in SQL (over `calls c`).
const OUTCOME_SQL: &str = "CASE WHEN c.ended_at IS NULL THEN 'in_progress' \
    WHEN c.agent_answered_at IS NOT NULL THEN 'answered' \
    WHEN c.queued_at IS NOT NULL AND c.ended_by = 'caller' THEN 'abandoned' \
    WHEN c.queued_at IS NOT NULL THEN 'not_answered' \
    WHEN c.ivr_outcome = 'self_served' THEN 'self_served' \
    WHEN c.ivr_outcome = 'transferred' OR c.transferred_to IS NOT NULL THEN 'transferred' \
    WHEN c.ivr_outcome = 'abandoned_in_ivr' THEN 'abandoned_in_ivr' \
    ELSE 'failed' END";

/// A calls search: arrived in `[since, until)`, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallSearch {
    pub since: Millis,
    pub until: Millis,
    /// The queue entered, or overflowed to.
    pub queue: Option<String>,
    /// The agent who answered, or was offered the call.
    pub agent: Option<String>,
    pub outcome: Option<CallOutcome>,
    /// The caller number ends with these digits (validated by the caller: digits only).
    pub number_suffix: Option<String>,
    /// Continue after this (arrived_at, call_id): the last row of the previous page.
    pub after: Option<(Millis, String)>,
    pub limit: u32,
}

/// One search hit: the call (without IVR path, offers, holds) and its outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct CallHit {
    pub call: CallRow,
    pub outcome: CallOutcome,
}

impl Store {
    /// Up to `q.limit` calls matching `q`, newest first (by arrived_at, then call_id).
    pub async fn search_calls(&self, q: &CallSearch) -> Result<Vec<CallHit>, StoreError> {
        let mut sql = format!(
            "SELECT {CALL_COLUMNS}, {OUTCOME_SQL} AS outcome FROM calls c \
             WHERE c.arrived_at >= $1 AND c.arrived_at < $2"
        );
        let mut texts: Vec<String> = Vec::new();
        // Placeholders after $1, $2 (times) and, with a cursor, $3 (its time).
        let mut next = if q.after.is_some() { 4 } else { 3 };
        let mut param = |v: String, texts: &mut Vec<String>| {
            texts.push(v);
            let n = next;
            next += 1;
            n
        };
        if let Some(queue) = &q.queue {
            let n = param(queue.clone(), &mut texts);
            sql.push_str(&format!(" AND (c.queue = ${n} OR c.overflowed_to = ${n})"));
        }
        if let Some(agent) = &q.agent {
            let n = param(agent.clone(), &mut texts);
            sql.push_str(&format!(
                " AND (c.agent = ${n} OR EXISTS (SELECT 1 FROM offer_attempts o \
                 WHERE o.call_id = c.call_id AND o.agent = ${n}))"
            ));
        }
        if let Some(outcome) = q.outcome {
            let n = param(outcome.as_str().to_string(), &mut texts);
            sql.push_str(&format!(" AND ({OUTCOME_SQL}) = ${n}"));
        }
        if let Some(suffix) = &q.number_suffix {
            let n = param(suffix.clone(), &mut texts);
            sql.push_str(&format!(" AND c.caller LIKE ('%' || ${n})"));
        }
        if let Some((_, id)) = &q.after {
            let n = param(id.clone(), &mut texts);
            sql.push_str(&format!(
                " AND (c.arrived_at < $3 OR (c.arrived_at = $3 AND c.call_id < ${n}))"
            ));
        }
        sql.push_str(&format!(
            " ORDER BY c.arrived_at DESC, c.call_id DESC LIMIT {}",
            q.limit
        ));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ms_to_db(q.since.as_u64()))
            .bind(ms_to_db(q.until.as_u64()));
        if let Some((at, _)) = &q.after {
            query = query.bind(ms_to_db(at.as_u64()));
        }
        for t in texts {
            query = query.bind(t);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let call = call_from_row(row)?;
            let label: String = row.try_get("outcome")?;
            let outcome = CallOutcome::parse(&label).unwrap_or_else(|| CallOutcome::of(&call));
            out.push(CallHit { call, outcome });
        }
        Ok(out)
    }

    /// The caller's other calls that arrived in `[since, until)`, newest first, at most
    /// `limit`, with each call's survey CSAT score (the agent desk's contact history). An
    /// empty or anonymous caller has no history.
    pub async fn caller_history(
        &self,
        caller: &str,
        exclude_call_id: &str,
        since: Millis,
        until: Millis,
        limit: u32,
    ) -> Result<Vec<(CallHit, Option<u8>)>, StoreError> {
        if caller.is_empty() || caller.eq_ignore_ascii_case("anonymous") {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {CALL_COLUMNS}, {OUTCOME_SQL} AS outcome, CAST(s.csat AS BIGINT) AS csat \
             FROM calls c LEFT JOIN surveys s ON s.call_id = c.call_id \
             WHERE c.caller = $1 AND c.call_id <> $2 AND c.arrived_at >= $3 \
               AND c.arrived_at < $4 \
             ORDER BY c.arrived_at DESC, c.call_id DESC LIMIT {limit}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(caller.to_string())
            .bind(exclude_call_id.to_string())
            .bind(ms_to_db(since.as_u64()))
            .bind(ms_to_db(until.as_u64()))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let call = call_from_row(row)?;
            let label: String = row.try_get("outcome")?;
            let outcome = CallOutcome::parse(&label).unwrap_or_else(|| CallOutcome::of(&call));
            let csat = row
                .try_get::<Option<i64>, _>("csat")?
                .map(|v| u8::try_from(v.clamp(0, 255)).unwrap_or(0));
            out.push((CallHit { call, outcome }, csat));
        }
        Ok(out)
    }

    /// The survey of one call, if it had one.
    pub async fn survey_of_call(&self, call_id: &str) -> Result<Option<CallSurvey>, StoreError> {
        let row = sqlx::query(
            "SELECT s.call_id, s.state, s.skip_reason, s.fail_reason, \
               CAST(s.csat AS BIGINT) AS csat, CAST(s.nps AS BIGINT) AS nps, s.comment \
             FROM surveys s WHERE s.call_id = $1",
        )
        .bind(call_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let score = |row: &sqlx::any::AnyRow, col: &str| -> Result<Option<u8>, sqlx::Error> {
            Ok(row
                .try_get::<Option<i64>, _>(col)?
                .map(|v| u8::try_from(v.clamp(0, 255)).unwrap_or(0)))
        };
        let Some(row) = row else { return Ok(None) };
        Ok(Some(CallSurvey {
            call_id: row.try_get("call_id")?,
            state: row.try_get("state")?,
            skip_reason: row.try_get("skip_reason")?,
            fail_reason: row.try_get("fail_reason")?,
            csat: score(&row, "csat")?,
            nps: score(&row, "nps")?,
            comment: row.try_get("comment")?,
        }))
    }

    /// The latest follow-up task of one call (its `number` is left out: the call has it).
    pub async fn follow_up_of_call(
        &self,
        call_id: &str,
    ) -> Result<Option<FollowUpTaskRow>, StoreError> {
        let row = sqlx::query(
            "SELECT task_id, call_id, agent, queue, reason, CAST(score AS BIGINT) AS score, \
               opened_at, due_at, closed_at, note, escalated_at \
             FROM follow_up_tasks WHERE call_id = $1 ORDER BY task_id DESC LIMIT 1",
        )
        .bind(call_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(FollowUpTaskRow {
            task_id: row.try_get("task_id")?,
            call_id: row.try_get("call_id")?,
            agent: row.try_get("agent")?,
            queue: row.try_get("queue")?,
            reason: row.try_get("reason")?,
            score: row.try_get("score")?,
            opened_at: millis(row.try_get("opened_at")?),
            due_at: millis(row.try_get("due_at")?),
            closed_at: opt_millis(&row, "closed_at")?,
            note: row.try_get("note")?,
            escalated_at: opt_millis(&row, "escalated_at")?,
            number: None,
        }))
    }
}
