//! Dispositions (migration 0006): `DispositionSet` becomes a `call_dispositions` row (the
//! history) and, unless a later one is on the call already, the call's current
//! disposition (last wins; a disposition without a note keeps the call's note, so a code
//! dialled after typing a note on the page does not lose it). Changing the disposition closes the open task an earlier
//! disposition opened (note `SUPERSEDED_NOTE`); setting that code again reopens it.
//!
//! Queries: `call_dispositions` (a call's history), `resolution_facts` (for
//! `kpi::resolution`) and `resolution_stats` (the same figures in one SQL query).

use super::queries::{millis, opt_millis, range_of};
use super::{ms_to_db, opt_text, text, Store, StoreError, Tx};
use crate::engine::record::Record;
use crate::engine::time::Millis;
use crate::kpi::resolution::{ResolutionFacts, ResolutionGroup, ResolutionStats, REPEAT_WINDOW_MS};
use crate::kpi::{Interval, Range};
use sqlx::Row;

/// The closing note of a disposition task whose disposition was changed.
pub(super) const SUPERSEDED_NOTE: &str = "closed: the agent changed the disposition";

/// One disposition set on a call, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispositionRow {
    pub agent: String,
    pub at: Millis,
    pub code: i64,
    pub name: String,
    pub resolved: bool,
    pub queue: Option<String>,
    pub note: Option<String>,
}

pub(super) async fn write(tx: &mut Tx, r: &Record) -> Result<(), sqlx::Error> {
    let Record::DispositionSet {
        call_id,
        agent,
        at,
        code,
        name,
        resolved,
        queue,
        note,
    } = r
    else {
        return Ok(());
    };
    let id = text(call_id).into_owned();
    let at = ms_to_db(at.as_u64());
    let note = opt_text(note);
    sqlx::query(
        "INSERT INTO call_dispositions (call_id, agent, at, code, name, resolved, queue, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (call_id, at, agent, name) DO NOTHING",
    )
    .bind(id.clone())
    .bind(text(agent).into_owned())
    .bind(at)
    .bind(i64::from(*code))
    .bind(text(name).into_owned())
    .bind(i64::from(*resolved))
    .bind(opt_text(queue))
    .bind(note.clone())
    .execute(&mut **tx)
    .await?;
    let updated = sqlx::query(
        "UPDATE calls SET disposition = $2, disposition_code = $3, disposition_resolved = $4, \
           disposition_note = COALESCE($5, disposition_note), disposition_agent = $6, \
           disposition_at = $7 \
         WHERE call_id = $1 AND (disposition_at IS NULL OR disposition_at <= $7)",
    )
    .bind(id.clone())
    .bind(text(name).into_owned())
    .bind(i64::from(*code))
    .bind(i64::from(*resolved))
    .bind(note)
    .bind(text(agent).into_owned())
    .bind(at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 1 {
        sqlx::query(
            "UPDATE follow_up_tasks SET closed_at = $3, note = $4 \
             WHERE call_id = $1 AND closed_at IS NULL AND reason LIKE 'disposition:%' \
               AND reason <> $2",
        )
        .bind(id)
        .bind(format!("disposition:{name}"))
        .bind(at)
        .bind(SUPERSEDED_NOTE)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A caller that can be recognised again (`kpi::resolution::identifiable_caller`), in SQL.
const IDENTIFIABLE: &str = "c.caller <> '' AND LOWER(c.caller) <> 'anonymous'";

impl Store {
    /// Every disposition set on the call, oldest first.
    pub async fn call_dispositions(
        &self,
        call_id: &str,
    ) -> Result<Vec<DispositionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent, at, CAST(code AS BIGINT) AS code, name, \
               CAST(resolved AS BIGINT) AS resolved, queue, note \
             FROM call_dispositions WHERE call_id = $1 ORDER BY at, id",
        )
        .bind(call_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(DispositionRow {
                agent: row.try_get("agent")?,
                at: millis(row.try_get("at")?),
                code: row.try_get("code")?,
                name: row.try_get("name")?,
                resolved: row.try_get::<i64, _>("resolved")? != 0,
                queue: row.try_get("queue")?,
                note: row.try_get("note")?,
            });
        }
        Ok(out)
    }

    /// What `kpi::resolution` needs for `range`: calls queued, answered or arrived in it,
    /// and the later ones (up to 7 days past its end) a repeat is looked for among.
    pub async fn resolution_facts(&self, range: Range) -> Result<Vec<ResolutionFacts>, StoreError> {
        let widened = Range {
            since: range.since,
            until: range.until.map(|u| u.plus(REPEAT_WINDOW_MS)),
        };
        let (lo, hi) = range_of(widened);
        let rows = sqlx::query(
            "SELECT arrived_at, caller, queue, queued_at, agent, agent_answered_at, disposition, \
               CAST(COALESCE(disposition_resolved, 0) AS BIGINT) AS resolved \
             FROM calls WHERE arrived_at < $2 \
               AND (arrived_at >= $1 OR queued_at >= $1 OR agent_answered_at >= $1) \
             ORDER BY arrived_at, call_id",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(ResolutionFacts {
                arrived_at: millis(row.try_get("arrived_at")?),
                caller: row
                    .try_get::<Option<String>, _>("caller")?
                    .unwrap_or_default(),
                queue: row.try_get("queue")?,
                queued_at: opt_millis(row, "queued_at")?,
                agent: row.try_get("agent")?,
                agent_answered_at: opt_millis(row, "agent_answered_at")?,
                disposition: row.try_get("disposition")?,
                disposition_resolved: row.try_get::<i64, _>("resolved")? != 0,
            });
        }
        Ok(out)
    }

    /// `kpi::resolution::resolution_stats` by one SQL query (grouped rows summed here),
    /// ordered by group then bucket.
    pub async fn resolution_stats(
        &self,
        group: ResolutionGroup,
        range: Range,
        interval: Interval,
    ) -> Result<Vec<(String, Millis, ResolutionStats)>, StoreError> {
        let (name, at) = match group {
            ResolutionGroup::Queue => ("COALESCE(c.queue, '')", "c.queued_at"),
            ResolutionGroup::Agent => ("c.agent", "c.agent_answered_at"),
        };
        let sql = format!(
            "SELECT grp, bucket, disposition, resolved, repeated, CAST(COUNT(*) AS BIGINT) AS n \
             FROM (SELECT {name} AS grp, ({at} / $3) * $3 AS bucket, c.disposition AS disposition, \
                 CAST(CASE WHEN c.disposition IS NOT NULL \
                   AND COALESCE(c.disposition_resolved, 0) <> 0 THEN 1 ELSE 0 END AS BIGINT) \
                   AS resolved, \
                 CAST(CASE WHEN {IDENTIFIABLE} AND EXISTS (SELECT 1 FROM calls r \
                   WHERE r.caller = c.caller AND r.arrived_at > c.arrived_at \
                     AND r.arrived_at <= c.arrived_at + $4) THEN 1 ELSE 0 END AS BIGINT) \
                   AS repeated \
               FROM calls c WHERE {at} IS NOT NULL AND {name} IS NOT NULL \
                 AND {at} >= $1 AND {at} < $2) t \
             GROUP BY grp, bucket, disposition, resolved, repeated \
             ORDER BY grp, bucket"
        );
        let (lo, hi) = range_of(range);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lo)
            .bind(hi)
            .bind(ms_to_db(interval.width_ms()))
            .bind(ms_to_db(REPEAT_WINDOW_MS))
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<(String, Millis, ResolutionStats)> = Vec::new();
        for row in &rows {
            let grp: String = row.try_get("grp")?;
            let bucket = millis(row.try_get("bucket")?);
            let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
            let disposition: Option<String> = row.try_get("disposition")?;
            let resolved = row.try_get::<i64, _>("resolved")? != 0;
            let repeated = row.try_get::<i64, _>("repeated")? != 0;
            let fresh = out.last().is_none_or(|(g, b, _)| *g != grp || *b != bucket);
            if fresh {
                out.push((grp, bucket, ResolutionStats::default()));
            }
            if let Some((_, _, s)) = out.last_mut() {
                s.add_n(n, repeated, disposition.as_deref(), resolved);
            }
        }
        Ok(out)
    }
}
