//! The survey figures in SQL: the twin of `kpi::survey::survey_stats` (a property test in
//! tests/survey_reports.rs keeps them equal on SQLite and PostgreSQL), the facts it is
//! computed from, and each call's survey for `report calls`.

use super::queries::{millis, opt_millis, range_of};
use super::{ms_to_db, Store, StoreError};
use crate::engine::time::Millis;
use crate::kpi::survey::{Buckets, SurveyFacts, SurveyGroup, SurveyStats, TaskFacts};
use crate::kpi::Range;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

/// A call's survey as `report calls` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallSurvey {
    pub call_id: String,
    pub state: String,
    pub skip_reason: Option<String>,
    pub fail_reason: Option<String>,
    pub csat: Option<u8>,
    pub nps: Option<u8>,
    pub comment: Option<String>,
}

fn get_u64(row: &AnyRow, col: &str) -> Result<u64, sqlx::Error> {
    Ok(u64::try_from(row.try_get::<Option<i64>, _>(col)?.unwrap_or(0)).unwrap_or(0))
}

fn opt_score(row: &AnyRow, col: &str) -> Result<Option<u8>, sqlx::Error> {
    Ok(row
        .try_get::<Option<i64>, _>(col)?
        .map(|v| u8::try_from(v.clamp(0, 255)).unwrap_or(0)))
}

/// The grouping column (built from the enum, never from input).
fn group_expr(by: SurveyGroup, table: &str) -> String {
    match by {
        SurveyGroup::All => "CAST('' AS TEXT)".to_string(),
        SurveyGroup::Queue => format!("COALESCE({table}.queue, '')"),
        SurveyGroup::Agent => format!("COALESCE({table}.agent, '')"),
    }
}

/// Parameters: $1 since, $2 until (on `decided_at`), $3 UTC offset, $4 bucket width.
fn surveys_sql(by: SurveyGroup) -> String {
    let grp = group_expr(by, "s");
    format!(
        "WITH x AS ( \
           SELECT {grp} AS grp, ((s.decided_at + $3) / $4) * $4 - $3 AS bucket, \
             s.state, s.sent_at, s.delivered_at, s.csat, s.nps, \
             CASE WHEN s.state = 'opted_out' OR EXISTS ( \
               SELECT 1 FROM sms_opt_outs o WHERE o.survey_id = s.survey_id) \
               THEN 1 ELSE 0 END AS opted_out \
           FROM surveys s WHERE s.decided_at >= $1 AND s.decided_at < $2) \
         SELECT grp, bucket, \
           CAST(COUNT(*) AS BIGINT) AS surveys, \
           CAST(SUM(CASE WHEN state = 'skipped' THEN 1 ELSE 0 END) AS BIGINT) AS skipped, \
           CAST(SUM(CASE WHEN sent_at IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS sent, \
           CAST(SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) \
             AS delivered, \
           CAST(SUM(CASE WHEN csat IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS answered, \
           CAST(SUM(CASE WHEN csat >= 4 THEN 1 ELSE 0 END) AS BIGINT) AS csat_satisfied, \
           CAST(SUM(COALESCE(csat, 0)) AS BIGINT) AS csat_sum, \
           CAST(SUM(CASE WHEN nps IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS nps_answers, \
           CAST(SUM(CASE WHEN nps >= 9 THEN 1 ELSE 0 END) AS BIGINT) AS nps_promoters, \
           CAST(SUM(CASE WHEN nps <= 6 THEN 1 ELSE 0 END) AS BIGINT) AS nps_detractors, \
           CAST(SUM(opted_out) AS BIGINT) AS opt_outs \
         FROM x GROUP BY grp, bucket ORDER BY grp, bucket"
    )
}

/// Parameters: $1 since, $2 until (on `opened_at`), $3 UTC offset, $4 bucket width, $5 now.
fn tasks_sql(by: SurveyGroup) -> String {
    let grp = group_expr(by, "t");
    format!(
        "WITH x AS ( \
           SELECT {grp} AS grp, ((t.opened_at + $3) / $4) * $4 - $3 AS bucket, \
             t.due_at, t.closed_at \
           FROM follow_up_tasks t WHERE t.opened_at >= $1 AND t.opened_at < $2) \
         SELECT grp, bucket, \
           CAST(COUNT(*) AS BIGINT) AS opened, \
           CAST(SUM(CASE WHEN closed_at IS NOT NULL AND closed_at <= due_at THEN 1 ELSE 0 END) \
             AS BIGINT) AS closed_in_time, \
           CAST(SUM(CASE WHEN (closed_at IS NOT NULL AND closed_at > due_at) \
                          OR (closed_at IS NULL AND due_at < $5) THEN 1 ELSE 0 END) \
             AS BIGINT) AS overdue, \
           CAST(SUM(CASE WHEN closed_at IS NULL AND due_at >= $5 THEN 1 ELSE 0 END) \
             AS BIGINT) AS still_open \
         FROM x GROUP BY grp, bucket ORDER BY grp, bucket"
    )
}

impl Store {
    /// `kpi::survey::survey_stats` in SQL: one query over `surveys` (with `sms_opt_outs`),
    /// one over `follow_up_tasks`, merged per (group, bucket start), ordered by both.
    pub async fn survey_stats(
        &self,
        range: Range,
        buckets: Buckets,
        by: SurveyGroup,
        now: Millis,
    ) -> Result<Vec<(String, Millis, SurveyStats)>, StoreError> {
        let (lo, hi) = range_of(range);
        let width = ms_to_db(buckets.interval.width_ms());
        let mut out: BTreeMap<(String, Millis), SurveyStats> = BTreeMap::new();
        let rows = sqlx::query(sqlx::AssertSqlSafe(surveys_sql(by)))
            .bind(lo)
            .bind(hi)
            .bind(buckets.utc_offset_ms)
            .bind(width)
            .fetch_all(&self.pool)
            .await?;
        for row in &rows {
            let get = |col: &str| get_u64(row, col);
            let s = out
                .entry((row.try_get("grp")?, millis(row.try_get("bucket")?)))
                .or_default();
            s.surveys = get("surveys")?;
            s.skipped = get("skipped")?;
            s.sent = get("sent")?;
            s.delivered = get("delivered")?;
            s.answered = get("answered")?;
            s.csat_satisfied = get("csat_satisfied")?;
            s.csat_sum = get("csat_sum")?;
            s.nps_answers = get("nps_answers")?;
            s.nps_promoters = get("nps_promoters")?;
            s.nps_detractors = get("nps_detractors")?;
            s.opt_outs = get("opt_outs")?;
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(tasks_sql(by)))
            .bind(lo)
            .bind(hi)
            .bind(buckets.utc_offset_ms)
            .bind(width)
            .bind(ms_to_db(now.as_u64()))
            .fetch_all(&self.pool)
            .await?;
        for row in &rows {
            let get = |col: &str| get_u64(row, col);
            let s = out
                .entry((row.try_get("grp")?, millis(row.try_get("bucket")?)))
                .or_default();
            s.follow_ups_opened = get("opened")?;
            s.follow_ups_closed_in_time = get("closed_in_time")?;
            s.follow_ups_overdue = get("overdue")?;
            s.follow_ups_open = get("still_open")?;
        }
        Ok(out.into_iter().map(|((g, b), s)| (g, b, s)).collect())
    }

    /// The facts `kpi::survey::survey_stats` needs, of the surveys decided in `range`.
    pub async fn survey_facts(&self, range: Range) -> Result<Vec<SurveyFacts>, StoreError> {
        let (lo, hi) = range_of(range);
        let rows = sqlx::query(
            "SELECT s.decided_at, s.state, s.agent, s.queue, s.sent_at, s.delivered_at, \
               CAST(s.csat AS BIGINT) AS csat, CAST(s.nps AS BIGINT) AS nps, \
               CAST(CASE WHEN EXISTS (SELECT 1 FROM sms_opt_outs o \
                 WHERE o.survey_id = s.survey_id) THEN 1 ELSE 0 END AS BIGINT) AS opt_out \
             FROM surveys s WHERE s.decided_at >= $1 AND s.decided_at < $2 \
             ORDER BY s.decided_at, s.survey_id",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(SurveyFacts {
                decided_at: millis(row.try_get("decided_at")?),
                state: row.try_get("state")?,
                agent: row.try_get("agent")?,
                queue: row.try_get("queue")?,
                sent_at: opt_millis(row, "sent_at")?,
                delivered_at: opt_millis(row, "delivered_at")?,
                csat: opt_score(row, "csat")?,
                nps: opt_score(row, "nps")?,
                opt_out_recorded: get_u64(row, "opt_out")? != 0,
            });
        }
        Ok(out)
    }

    /// The facts of the follow-up tasks opened in `range`.
    pub async fn task_facts(&self, range: Range) -> Result<Vec<TaskFacts>, StoreError> {
        let (lo, hi) = range_of(range);
        let rows = sqlx::query(
            "SELECT agent, queue, opened_at, due_at, closed_at FROM follow_up_tasks \
             WHERE opened_at >= $1 AND opened_at < $2 ORDER BY opened_at, task_id",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(TaskFacts {
                agent: row.try_get("agent")?,
                queue: row.try_get("queue")?,
                opened_at: millis(row.try_get("opened_at")?),
                due_at: millis(row.try_get("due_at")?),
                closed_at: opt_millis(row, "closed_at")?,
            });
        }
        Ok(out)
    }

    /// The survey of each call that arrived in `[since, until)` (the calls of `calls()`),
    /// by call id.
    pub async fn call_surveys(
        &self,
        since: Option<Millis>,
        until: Option<Millis>,
    ) -> Result<BTreeMap<String, CallSurvey>, StoreError> {
        let (lo, hi) = range_of(Range { since, until });
        let rows = sqlx::query(
            "SELECT s.call_id, s.state, s.skip_reason, s.fail_reason, \
               CAST(s.csat AS BIGINT) AS csat, CAST(s.nps AS BIGINT) AS nps, s.comment \
             FROM surveys s JOIN calls c ON c.call_id = s.call_id \
             WHERE c.arrived_at >= $1 AND c.arrived_at < $2",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        let mut out = BTreeMap::new();
        for row in &rows {
            let s = CallSurvey {
                call_id: row.try_get("call_id")?,
                state: row.try_get("state")?,
                skip_reason: row.try_get("skip_reason")?,
                fail_reason: row.try_get("fail_reason")?,
                csat: opt_score(row, "csat")?,
                nps: opt_score(row, "nps")?,
                comment: row.try_get("comment")?,
            };
            out.insert(s.call_id.clone(), s);
        }
        Ok(out)
    }
}
