//! The METRICS.md figures computed by SQL: per-call figures, per-queue and per-agent
//! aggregates, and the summary per interval (each must agree with `kpi.rs`, a proptest
//! keeps them equal).

use super::queries::{millis, range, range_of, CallFigures};
use super::{ms_to_db, Store, StoreError};
use crate::engine::time::Millis;
use crate::kpi::{self, AgentStats, Interval, QueueStats, Range, ServiceLevelTargets, Summary};
use sqlx::any::AnyRow;
use sqlx::Row;

impl Store {
    /// Per-call figures of the calls that arrived in `[since, until)`, computed in SQL (one
    /// query; the twin of `CallRow::figures`), ordered like `calls()`.
    pub async fn call_figures(&self, range: Range) -> Result<Vec<CallFigures>, StoreError> {
        let (lo, hi) = range_of(range);
        let rows = sqlx::query(sqlx::AssertSqlSafe(call_figures_sql()))
            .bind(lo)
            .bind(hi)
            .bind(ms_to_db(kpi::SHORT_ABANDON_MS))
            .fetch_all(&self.pool)
            .await?;
        let opt = |row: &AnyRow, col: &str| -> Result<Option<u64>, sqlx::Error> {
            Ok(row
                .try_get::<Option<i64>, _>(col)?
                .map(|v| u64::try_from(v).unwrap_or(0)))
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(CallFigures {
                call_id: row.try_get("call_id")?,
                frt_ms: opt(row, "frt_ms")?,
                queue_wait_ms: opt(row, "queue_wait_ms")?,
                talk_ms: opt(row, "talk_ms")?,
                hold_ms: get_u64(row, "hold_ms")?,
                acw_ms: opt(row, "acw_ms")?,
                aht_ms: opt(row, "aht_ms")?,
                abandoned: get_u64(row, "abandoned")? != 0,
                short_abandon: get_u64(row, "short_abandon")? != 0,
            });
        }
        Ok(out)
    }

    /// `kpi::queue_stats` by one SQL query: per queue and bucket of `queued_at`.
    pub async fn queue_stats(
        &self,
        range: Range,
        interval: Interval,
        sl_threshold_ms: u64,
    ) -> Result<Vec<(String, Millis, QueueStats)>, StoreError> {
        let (lo, hi) = range_of(range);
        let rows = sqlx::query(sqlx::AssertSqlSafe(queue_stats_sql()))
            .bind(lo)
            .bind(hi)
            .bind(ms_to_db(interval.width_ms()))
            .bind(ms_to_db(sl_threshold_ms))
            .bind(ms_to_db(kpi::SHORT_ABANDON_MS))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let get = |col: &str| -> Result<u64, sqlx::Error> { get_u64(row, col) };
            out.push((
                row.try_get("queue")?,
                millis(row.try_get("bucket")?),
                QueueStats {
                    offered: get("offered")?,
                    answered: get("answered")?,
                    answered_within_sl: get("answered_within_sl")?,
                    abandoned: get("abandoned")?,
                    short_abandoned: get("short_abandoned")?,
                    answer_wait_ms_total: get("answer_wait_ms_total")?,
                    abandon_wait_ms_total: get("abandon_wait_ms_total")?,
                    frt_ms_total: get("frt_ms_total")?,
                    handled: get("handled")?,
                    talk_ms_total: get("talk_ms_total")?,
                    hold_ms_total: get("hold_ms_total")?,
                    acw_ms_total: get("acw_ms_total")?,
                    aht_ms_total: get("aht_ms_total")?,
                },
            ));
        }
        Ok(out)
    }

    /// `queue_stats` with each queue's own threshold (`kpi::queue_stats_per_queue`): one
    /// query per distinct threshold (usually one or two), each queue's rows taken from the
    /// query with its threshold. Same order as `queue_stats` (queue, then bucket).
    pub async fn queue_stats_per_queue(
        &self,
        range: Range,
        interval: Interval,
        targets: &ServiceLevelTargets,
    ) -> Result<Vec<(String, Millis, QueueStats)>, StoreError> {
        let mut out = Vec::new();
        for t in targets.thresholds() {
            let rows = self.queue_stats(range, interval, t).await?;
            out.extend(
                rows.into_iter()
                    .filter(|(q, _, _)| targets.get(q).threshold_ms == t),
            );
        }
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        Ok(out)
    }

    /// `kpi::agent_stats` by one SQL query: per agent and bucket, calls by
    /// `agent_answered_at`, offers by `offered_at`, staffed time split across buckets.
    pub async fn agent_stats(
        &self,
        since: Option<Millis>,
        until: Millis,
        interval: Interval,
    ) -> Result<Vec<(String, Millis, AgentStats)>, StoreError> {
        let (lo, hi) = range(since, Some(until));
        let rows = sqlx::query(sqlx::AssertSqlSafe(agent_stats_sql()))
            .bind(lo)
            .bind(hi)
            .bind(ms_to_db(interval.width_ms()))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let get = |col: &str| -> Result<u64, sqlx::Error> { get_u64(row, col) };
            out.push((
                row.try_get("agent")?,
                millis(row.try_get("bucket")?),
                AgentStats {
                    offers: get("offers")?,
                    offers_answered: get("offers_answered")?,
                    offers_no_answer: get("offers_no_answer")?,
                    offers_declined: get("offers_declined")?,
                    answered: get("answered")?,
                    handled: get("handled")?,
                    talk_ms_total: get("talk_ms_total")?,
                    hold_ms_total: get("hold_ms_total")?,
                    acw_ms_total: get("acw_ms_total")?,
                    aht_ms_total: get("aht_ms_total")?,
                    staffed_ms: get("staffed_ms")?,
                },
            ));
        }
        Ok(out)
    }

    /// `kpi::summary_by_interval` by one SQL query (buckets of `arrived_at`).
    pub async fn summary_by_interval(
        &self,
        range: Range,
        interval: Interval,
    ) -> Result<Vec<(Millis, Summary)>, StoreError> {
        let (lo, hi) = range_of(range);
        let sql = format!(
            "SELECT (c.arrived_at / $3) * $3 AS bucket, {SUMMARY_COLUMNS} {SUMMARY_FROM} \
             GROUP BY (c.arrived_at / $3) * $3 ORDER BY bucket"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lo)
            .bind(hi)
            .bind(ms_to_db(interval.width_ms()))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push((millis(row.try_get("bucket")?), summary_from_row(row)?));
        }
        Ok(out)
    }

    /// `kpi::Summary` of the calls that arrived in `[since, until)`, by one SQL query.
    /// Sums are CAST to BIGINT: PostgreSQL's SUM(bigint) is NUMERIC, which `Any` cannot decode.
    pub async fn summary(
        &self,
        since: Option<Millis>,
        until: Option<Millis>,
    ) -> Result<Summary, StoreError> {
        let (lo, hi) = range(since, until);
        let sql = format!("SELECT {SUMMARY_COLUMNS} {SUMMARY_FROM}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lo)
            .bind(hi)
            .fetch_one(&self.pool)
            .await?;
        Ok(summary_from_row(&row)?)
    }
}

fn get_u64(row: &AnyRow, col: &str) -> Result<u64, sqlx::Error> {
    Ok(u64::try_from(row.try_get::<Option<i64>, _>(col)?.unwrap_or(0)).unwrap_or(0))
}

fn summary_from_row(row: &AnyRow) -> Result<Summary, sqlx::Error> {
    let get = |col: &str| get_u64(row, col);
    Ok(Summary {
        calls: get("calls")?,
        answered: get("answered")?,
        answered_within_three_rings: get("answered_within_three_rings")?,
        answer_delay_ms_total: get("answer_delay_ms_total")?,
        self_served: get("self_served")?,
        queued: get("queued")?,
        transferred: get("transferred")?,
        abandoned_in_ivr: get("abandoned_in_ivr")?,
        ivr_failed: get("ivr_failed")?,
        hold_ms_total: get("hold_ms_total")?,
    })
}

/// The SQL twin of `kpi::Summary::add` (and `kpi::hold_ms`): keep the two in step.
/// `SELECT {SUMMARY_COLUMNS} {SUMMARY_FROM}`; $1 since, $2 until.
const SUMMARY_COLUMNS: &str = "
  CAST(COUNT(*) AS BIGINT) AS calls,
  CAST(SUM(CASE WHEN c.answered_at IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS answered,
  CAST(SUM(CASE WHEN c.answered_at IS NOT NULL AND c.ring_cycle_ms IS NOT NULL
                 AND c.answered_at - c.arrived_at <= 3 * c.ring_cycle_ms
            THEN 1 ELSE 0 END) AS BIGINT) AS answered_within_three_rings,
  CAST(SUM(CASE WHEN c.answered_at > c.arrived_at
            THEN c.answered_at - c.arrived_at ELSE 0 END) AS BIGINT) AS answer_delay_ms_total,
  CAST(SUM(CASE WHEN c.answered_at IS NOT NULL AND c.ivr_outcome = 'self_served'
            THEN 1 ELSE 0 END) AS BIGINT) AS self_served,
  CAST(SUM(CASE WHEN c.answered_at IS NOT NULL AND c.ivr_outcome = 'queued'
            THEN 1 ELSE 0 END) AS BIGINT) AS queued,
  CAST(SUM(CASE WHEN c.answered_at IS NOT NULL AND c.ivr_outcome = 'transferred'
            THEN 1 ELSE 0 END) AS BIGINT) AS transferred,
  CAST(SUM(CASE WHEN c.answered_at IS NOT NULL AND c.ivr_outcome = 'abandoned_in_ivr'
            THEN 1 ELSE 0 END) AS BIGINT) AS abandoned_in_ivr,
  CAST(SUM(CASE WHEN c.answered_at IS NOT NULL AND c.ivr_outcome = 'failed'
            THEN 1 ELSE 0 END) AS BIGINT) AS ivr_failed,
  CAST(SUM(COALESCE(h.hold_ms, 0)) AS BIGINT) AS hold_ms_total";

const SUMMARY_FROM: &str = "
FROM calls c
LEFT JOIN (
  SELECT s.call_id,
         SUM(CASE WHEN COALESCE(s.ended_at, c2.ended_at, c2.last_event_at) > s.started_at
                  THEN COALESCE(s.ended_at, c2.ended_at, c2.last_event_at) - s.started_at
                  ELSE 0 END) AS hold_ms
  FROM hold_segments s JOIN calls c2 ON c2.call_id = s.call_id
  GROUP BY s.call_id
) h ON h.call_id = c.call_id
WHERE c.arrived_at >= $1 AND c.arrived_at < $2";

/// `kpi::hold_ms` per call, as a subquery joined on `call_id` (the twin of `kpi::hold_ms`).
const HOLD_BY_CALL: &str = "
  SELECT s.call_id,
         SUM(CASE WHEN COALESCE(s.ended_at, c2.ended_at, c2.last_event_at) > s.started_at
                  THEN COALESCE(s.ended_at, c2.ended_at, c2.last_event_at) - s.started_at
                  ELSE 0 END) AS hold_ms
  FROM hold_segments s JOIN calls c2 ON c2.call_id = s.call_id
  GROUP BY s.call_id";

/// Per-call figures of `kpi::CallTimes` as columns over `calls c` joined with the hold
/// subquery `h`: the SQL twins of `frt_ms`, `queue_wait_ms`, `talk_ms`, `acw_ms`, `aht_ms`,
/// `abandoned`. `$short` is the short-abandon threshold parameter.
fn per_call_columns() -> String {
    let hold = "COALESCE(h.hold_ms, 0)";
    let talk = format!(
        "(CASE WHEN c.ended_at - c.agent_answered_at - {hold} > 0 \
          THEN c.ended_at - c.agent_answered_at - {hold} ELSE 0 END)"
    );
    let acw = "(CASE WHEN c.wrapup_ended_at > c.ended_at \
               THEN c.wrapup_ended_at - c.ended_at ELSE 0 END)";
    format!(
        "c.arrived_at, c.queued_at, c.agent_answered_at, \
         {hold} AS hold_ms, \
         CASE WHEN c.queued_at IS NOT NULL AND c.agent_answered_at IS NULL \
              AND c.ended_by = 'caller' THEN 1 ELSE 0 END AS abandoned, \
         CASE WHEN c.agent_answered_at > c.queued_at \
              THEN c.agent_answered_at - c.queued_at ELSE 0 END AS answer_wait, \
         CASE WHEN c.ended_at > c.queued_at THEN c.ended_at - c.queued_at ELSE 0 END \
              AS abandon_wait, \
         CASE WHEN c.agent_answered_at > c.arrived_at \
              THEN c.agent_answered_at - c.arrived_at ELSE 0 END AS frt, \
         CASE WHEN c.agent_answered_at IS NOT NULL AND c.ended_at IS NOT NULL \
              AND c.wrapup_ended_at IS NOT NULL THEN 1 ELSE 0 END AS handled, \
         {talk} AS talk, {acw} AS acw, {talk} + {hold} + {acw} AS aht"
    )
}

/// Per-call METRICS.md figures with NULL where `kpi` gives `None`. $1 since, $2 until
/// (on `arrived_at`), $3 short-abandon threshold.
fn call_figures_sql() -> String {
    let hold = "COALESCE(h.hold_ms, 0)";
    let talk = format!(
        "CASE WHEN c.agent_answered_at IS NULL OR c.ended_at IS NULL THEN NULL \
              WHEN c.ended_at - c.agent_answered_at - {hold} > 0 \
              THEN c.ended_at - c.agent_answered_at - {hold} ELSE 0 END"
    );
    let acw = "CASE WHEN c.wrapup_ended_at IS NULL OR c.ended_at IS NULL THEN NULL \
                    WHEN c.wrapup_ended_at > c.ended_at \
                    THEN c.wrapup_ended_at - c.ended_at ELSE 0 END";
    let abandoned = "CASE WHEN c.queued_at IS NOT NULL AND c.agent_answered_at IS NULL \
                          AND c.ended_by = 'caller' THEN 1 ELSE 0 END";
    let abandon_wait = "CASE WHEN c.ended_at > c.queued_at \
                             THEN c.ended_at - c.queued_at ELSE 0 END";
    format!(
        "SELECT c.call_id, \
           CAST(CASE WHEN c.agent_answered_at IS NULL THEN NULL \
                WHEN c.agent_answered_at > c.arrived_at \
                THEN c.agent_answered_at - c.arrived_at ELSE 0 END AS BIGINT) AS frt_ms, \
           CAST(CASE WHEN c.queued_at IS NULL THEN NULL \
                WHEN c.agent_answered_at IS NOT NULL THEN \
                  CASE WHEN c.agent_answered_at > c.queued_at \
                  THEN c.agent_answered_at - c.queued_at ELSE 0 END \
                WHEN {abandoned} = 1 THEN {abandon_wait} \
                ELSE NULL END AS BIGINT) AS queue_wait_ms, \
           CAST({talk} AS BIGINT) AS talk_ms, \
           CAST({hold} AS BIGINT) AS hold_ms, \
           CAST({acw} AS BIGINT) AS acw_ms, \
           CAST(CASE WHEN ({talk}) IS NULL OR ({acw}) IS NULL THEN NULL \
                ELSE ({talk}) + {hold} + ({acw}) END AS BIGINT) AS aht_ms, \
           CAST({abandoned} AS BIGINT) AS abandoned, \
           CAST(CASE WHEN {abandoned} = 1 AND {abandon_wait} < $3 THEN 1 ELSE 0 END AS BIGINT) \
             AS short_abandon \
         FROM calls c LEFT JOIN ({HOLD_BY_CALL}) h ON h.call_id = c.call_id \
         WHERE c.arrived_at >= $1 AND c.arrived_at < $2 \
         ORDER BY c.arrived_at, c.call_id"
    )
}

/// The SQL twin of `kpi::queue_stats`. Parameters: $1 since, $2 until, $3 bucket width,
/// $4 service-level threshold, $5 short-abandon threshold (all ms).
fn queue_stats_sql() -> String {
    let cols = per_call_columns();
    format!(
        "WITH x AS ( \
           SELECT COALESCE(c.queue, '') AS queue, (c.queued_at / $3) * $3 AS bucket, {cols} \
           FROM calls c LEFT JOIN ({HOLD_BY_CALL}) h ON h.call_id = c.call_id \
           WHERE c.queued_at IS NOT NULL AND c.queued_at >= $1 AND c.queued_at < $2) \
         SELECT queue, bucket, \
           CAST(COUNT(*) AS BIGINT) AS offered, \
           CAST(SUM(CASE WHEN agent_answered_at IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) \
             AS answered, \
           CAST(SUM(CASE WHEN agent_answered_at IS NOT NULL \
                         AND agent_answered_at - queued_at <= $4 THEN 1 ELSE 0 END) AS BIGINT) \
             AS answered_within_sl, \
           CAST(SUM(abandoned) AS BIGINT) AS abandoned, \
           CAST(SUM(CASE WHEN abandoned = 1 AND abandon_wait < $5 THEN 1 ELSE 0 END) \
             AS BIGINT) AS short_abandoned, \
           CAST(SUM(CASE WHEN agent_answered_at IS NOT NULL THEN answer_wait ELSE 0 END) \
             AS BIGINT) AS answer_wait_ms_total, \
           CAST(SUM(CASE WHEN abandoned = 1 THEN abandon_wait ELSE 0 END) AS BIGINT) \
             AS abandon_wait_ms_total, \
           CAST(SUM(CASE WHEN agent_answered_at IS NOT NULL THEN frt ELSE 0 END) AS BIGINT) \
             AS frt_ms_total, \
           CAST(SUM(handled) AS BIGINT) AS handled, \
           CAST(SUM(CASE WHEN handled = 1 THEN talk ELSE 0 END) AS BIGINT) AS talk_ms_total, \
           CAST(SUM(CASE WHEN handled = 1 THEN hold_ms ELSE 0 END) AS BIGINT) AS hold_ms_total, \
           CAST(SUM(CASE WHEN handled = 1 THEN acw ELSE 0 END) AS BIGINT) AS acw_ms_total, \
           CAST(SUM(CASE WHEN handled = 1 THEN aht ELSE 0 END) AS BIGINT) AS aht_ms_total \
         FROM x GROUP BY queue, bucket ORDER BY queue, bucket"
    )
}

/// The SQL twin of `kpi::agent_stats` (and `kpi::staffed_ms`). Parameters: $1 since,
/// $2 until, $3 bucket width (ms). Each staffed state lasts until the agent's next change
/// (LEAD over (at, id)), clipped to [$1, $2), then cut into buckets by a recursive CTE.
fn agent_stats_sql() -> String {
    let cols = per_call_columns();
    let staffed = kpi::STAFFED_STATES
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH RECURSIVE \
         seg AS ( \
           SELECT agent, \
             CASE WHEN at > $1 THEN at ELSE $1 END AS s, \
             CASE WHEN nxt < $2 THEN nxt ELSE $2 END AS e \
           FROM (SELECT agent, state, at, \
                   COALESCE(LEAD(at) OVER (PARTITION BY agent ORDER BY at, id), $2) AS nxt \
                 FROM agent_state_changes) t \
           WHERE state IN ({staffed})), \
         piece (agent, s, e, b) AS ( \
           SELECT agent, s, e, (s / $3) * $3 FROM seg WHERE s < e \
           UNION ALL \
           SELECT agent, s, e, b + $3 FROM piece WHERE b + $3 < e), \
         x AS ( \
           SELECT c.agent AS agent, (c.agent_answered_at / $3) * $3 AS bucket, {cols} \
           FROM calls c LEFT JOIN ({HOLD_BY_CALL}) h ON h.call_id = c.call_id \
           WHERE c.agent IS NOT NULL AND c.agent_answered_at IS NOT NULL \
             AND c.agent_answered_at >= $1 AND c.agent_answered_at < $2), \
         u AS ( \
           SELECT agent, bucket, 0 AS offers, 0 AS offers_answered, 0 AS offers_no_answer, \
             0 AS offers_declined, 1 AS answered, handled, \
             CASE WHEN handled = 1 THEN talk ELSE 0 END AS talk, \
             CASE WHEN handled = 1 THEN hold_ms ELSE 0 END AS hold, \
             CASE WHEN handled = 1 THEN acw ELSE 0 END AS acw, \
             CASE WHEN handled = 1 THEN aht ELSE 0 END AS aht, 0 AS staffed \
           FROM x \
           UNION ALL \
           SELECT o.agent, (o.offered_at / $3) * $3, 1, \
             CASE WHEN o.outcome = 'answered' THEN 1 ELSE 0 END, \
             CASE WHEN o.outcome = 'no_answer' THEN 1 ELSE 0 END, \
             CASE WHEN o.outcome IN ('busy', 'rejected') THEN 1 ELSE 0 END, \
             0, 0, 0, 0, 0, 0, 0 \
           FROM offer_attempts o WHERE o.offered_at >= $1 AND o.offered_at < $2 \
           UNION ALL \
           SELECT agent, b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, \
             (CASE WHEN b + $3 < e THEN b + $3 ELSE e END) - (CASE WHEN s > b THEN s ELSE b END) \
           FROM piece) \
         SELECT agent, bucket, \
           CAST(SUM(offers) AS BIGINT) AS offers, \
           CAST(SUM(offers_answered) AS BIGINT) AS offers_answered, \
           CAST(SUM(offers_no_answer) AS BIGINT) AS offers_no_answer, \
           CAST(SUM(offers_declined) AS BIGINT) AS offers_declined, \
           CAST(SUM(answered) AS BIGINT) AS answered, \
           CAST(SUM(handled) AS BIGINT) AS handled, \
           CAST(SUM(talk) AS BIGINT) AS talk_ms_total, \
           CAST(SUM(hold) AS BIGINT) AS hold_ms_total, \
           CAST(SUM(acw) AS BIGINT) AS acw_ms_total, \
           CAST(SUM(aht) AS BIGINT) AS aht_ms_total, \
           CAST(SUM(staffed) AS BIGINT) AS staffed_ms \
         FROM u GROUP BY agent, bucket ORDER BY agent, bucket"
    )
}
