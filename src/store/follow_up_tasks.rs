//! Follow-up tasks for supervisors and agents: `ccswitch tasks list` and `tasks close`.
//! Opening and escalating tasks is the survey service's (and the engine's) job.

use super::queries::{millis, opt_millis};
use super::{ms_to_db, Store, StoreError};
use crate::engine::time::Millis;
use sqlx::Row;

/// One task with the caller's number (the survey's E.164 while retention keeps it, else the
/// call's caller field): show it masked unless unmasking is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowUpTaskRow {
    pub task_id: i64,
    pub call_id: String,
    pub agent: Option<String>,
    pub queue: Option<String>,
    pub reason: String,
    pub score: Option<i64>,
    pub opened_at: Millis,
    pub due_at: Millis,
    pub closed_at: Option<Millis>,
    pub note: Option<String>,
    pub escalated_at: Option<Millis>,
    pub number: Option<String>,
}

impl FollowUpTaskRow {
    /// Open with its due time passed.
    pub fn overdue_at(&self, now: Millis) -> bool {
        self.closed_at.is_none() && now > self.due_at
    }
}

/// Which tasks `list_follow_up_tasks` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Closed tasks too (default: open ones only).
    pub include_closed: bool,
    /// Only open tasks whose due time is before this instant.
    pub overdue_at: Option<Millis>,
    /// Only this agent's tasks.
    pub agent: Option<String>,
}

/// What `close_follow_up_task` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    Closed,
    Unknown,
    AlreadyClosed { at: Millis },
}

impl Store {
    /// Tasks by due time (the most urgent first), then id.
    pub async fn list_follow_up_tasks(
        &self,
        filter: &TaskFilter,
    ) -> Result<Vec<FollowUpTaskRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.task_id, t.call_id, t.agent, t.queue, t.reason, \
               CAST(t.score AS BIGINT) AS score, t.opened_at, t.due_at, t.closed_at, t.note, \
               t.escalated_at, COALESCE(s.number, c.caller) AS number \
             FROM follow_up_tasks t \
             LEFT JOIN surveys s ON s.call_id = t.call_id \
             LEFT JOIN calls c ON c.call_id = t.call_id \
             WHERE ($1 = 1 OR t.closed_at IS NULL) \
               AND ($2 < 0 OR (t.closed_at IS NULL AND t.due_at < $2)) \
               AND ($3 = '' OR t.agent = $3) \
             ORDER BY t.due_at, t.task_id",
        )
        .bind(i64::from(filter.include_closed))
        .bind(filter.overdue_at.map_or(-1, |t| ms_to_db(t.as_u64())))
        .bind(filter.agent.clone().unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(FollowUpTaskRow {
                task_id: row.try_get("task_id")?,
                call_id: row.try_get("call_id")?,
                agent: row.try_get("agent")?,
                queue: row.try_get("queue")?,
                reason: row.try_get("reason")?,
                score: row.try_get("score")?,
                opened_at: millis(row.try_get("opened_at")?),
                due_at: millis(row.try_get("due_at")?),
                closed_at: opt_millis(row, "closed_at")?,
                note: row.try_get("note")?,
                escalated_at: opt_millis(row, "escalated_at")?,
                number: row.try_get("number")?,
            });
        }
        Ok(out)
    }

    /// Closes an open task with its note (validate it first: `kpi::survey::validate_note`).
    /// A task closed already keeps its first close time and note.
    pub async fn close_follow_up_task(
        &self,
        task_id: i64,
        now: Millis,
        note: &str,
    ) -> Result<CloseOutcome, StoreError> {
        let done = sqlx::query(
            "UPDATE follow_up_tasks SET closed_at = $2, note = $3 \
             WHERE task_id = $1 AND closed_at IS NULL",
        )
        .bind(task_id)
        .bind(ms_to_db(now.as_u64()))
        .bind(note.replace('\0', ""))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if done == 1 {
            return Ok(CloseOutcome::Closed);
        }
        let row = sqlx::query("SELECT closed_at FROM follow_up_tasks WHERE task_id = $1")
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            None => CloseOutcome::Unknown,
            Some(r) => match opt_millis(&r, "closed_at")? {
                Some(at) => CloseOutcome::AlreadyClosed { at },
                // Closed and reopened between the two statements cannot happen (nothing
                // reopens tasks); report it as closed by someone else at an unknown time.
                None => CloseOutcome::AlreadyClosed { at: Millis::ZERO },
            },
        })
    }
}
