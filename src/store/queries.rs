//! Reading calls back: rows with their IVR path, variables and holds, per-call figures from
//! `kpi`, and the same aggregates computed by one SQL query.

use super::{ms_to_db, Store, StoreError};
use crate::engine::record::{EndedBy, IvrOutcome};
use crate::engine::time::Millis;
use crate::kpi::{self, CallFacts, HoldSpan, Summary};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};

/// One step of a call's way through the IVR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IvrStepRow {
    pub call_id: String,
    pub seq: u32,
    pub at: Millis,
    pub node: String,
    pub kind: String,
    pub digits: Option<String>,
    pub detail: Option<String>,
}

/// A call as stored, with what hangs off it and its per-call figures.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRow {
    pub call_id: String,
    pub sip_call_id: String,
    pub caller: String,
    pub dialled: String,
    pub transport: String,
    pub arrived_at: Millis,
    pub ringing_at: Option<Millis>,
    pub answered_at: Option<Millis>,
    /// As the engine recorded it (`None` if never answered).
    pub within_three_rings_recorded: Option<bool>,
    pub ring_cycle_ms: Option<u64>,
    pub ivr_left_at: Option<Millis>,
    pub ivr_outcome: Option<IvrOutcome>,
    pub ended_at: Option<Millis>,
    pub ended_by: Option<EndedBy>,
    pub end_reason: Option<String>,
    pub final_status: Option<u16>,
    pub last_event_at: Millis,
    pub ivr_path: Vec<IvrStepRow>,
    pub variables: BTreeMap<String, String>,
    pub hold_segments: Vec<HoldSpan>,
    // Figures (kpi.rs), filled when the row is read.
    pub rings_before_answer: Option<f64>,
    /// From the timestamps (METRICS.md formula); the recorded flag if the ring cycle is unknown.
    pub within_three_rings: Option<bool>,
    pub hold_ms: u64,
}

impl CallRow {
    pub fn facts(&self) -> CallFacts {
        CallFacts {
            arrived_at: self.arrived_at,
            answered_at: self.answered_at,
            ring_cycle_ms: self.ring_cycle_ms,
            ivr_outcome: self.ivr_outcome,
            hold_ms: self.hold_ms,
        }
    }

    fn compute_figures(&mut self) {
        self.rings_before_answer =
            kpi::rings_before_answer(self.arrived_at, self.answered_at, self.ring_cycle_ms);
        self.within_three_rings =
            kpi::within_three_rings(self.arrived_at, self.answered_at, self.ring_cycle_ms)
                .or(self.within_three_rings_recorded);
        self.hold_ms = kpi::hold_ms(&self.hold_segments, self.ended_at, self.last_event_at);
    }
}

fn millis(v: i64) -> Millis {
    Millis(u64::try_from(v).unwrap_or(0))
}

fn opt_millis(row: &AnyRow, col: &str) -> Result<Option<Millis>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(millis))
}

/// `[since, until)` as BIGINT bounds.
fn range(since: Option<Millis>, until: Option<Millis>) -> (i64, i64) {
    (
        since.map_or(i64::MIN, |m| ms_to_db(m.as_u64())),
        until.map_or(i64::MAX, |m| ms_to_db(m.as_u64())),
    )
}

const CALL_COLUMNS: &str = "c.call_id, c.sip_call_id, c.caller, c.dialled, c.transport, \
    c.arrived_at, c.ringing_at, c.answered_at, c.within_three_rings, c.ring_cycle_ms, \
    c.ivr_left_at, c.ivr_outcome, c.ended_at, c.ended_by, c.end_reason, c.final_status, \
    c.last_event_at";

fn call_from_row(row: &AnyRow) -> Result<CallRow, sqlx::Error> {
    let mut call = CallRow {
        call_id: row.try_get("call_id")?,
        sip_call_id: row.try_get("sip_call_id")?,
        caller: row.try_get("caller")?,
        dialled: row.try_get("dialled")?,
        transport: row.try_get("transport")?,
        arrived_at: millis(row.try_get("arrived_at")?),
        ringing_at: opt_millis(row, "ringing_at")?,
        answered_at: opt_millis(row, "answered_at")?,
        within_three_rings_recorded: row
            .try_get::<Option<i64>, _>("within_three_rings")?
            .map(|v| v != 0),
        ring_cycle_ms: row
            .try_get::<Option<i64>, _>("ring_cycle_ms")?
            .map(|v| u64::try_from(v).unwrap_or(0)),
        ivr_left_at: opt_millis(row, "ivr_left_at")?,
        ivr_outcome: row
            .try_get::<Option<String>, _>("ivr_outcome")?
            .and_then(|s| IvrOutcome::parse(&s)),
        ended_at: opt_millis(row, "ended_at")?,
        ended_by: row
            .try_get::<Option<String>, _>("ended_by")?
            .and_then(|s| EndedBy::parse(&s)),
        end_reason: row.try_get("end_reason")?,
        final_status: row
            .try_get::<Option<i64>, _>("final_status")?
            .and_then(|v| u16::try_from(v).ok()),
        last_event_at: millis(row.try_get("last_event_at")?),
        ivr_path: Vec::new(),
        variables: BTreeMap::new(),
        hold_segments: Vec::new(),
        rings_before_answer: None,
        within_three_rings: None,
        hold_ms: 0,
    };
    call.compute_figures();
    Ok(call)
}

fn step_from_row(row: &AnyRow) -> Result<IvrStepRow, sqlx::Error> {
    Ok(IvrStepRow {
        call_id: row.try_get("call_id")?,
        seq: u32::try_from(row.try_get::<i64, _>("seq")?).unwrap_or(0),
        at: millis(row.try_get("at")?),
        node: row.try_get("node")?,
        kind: row.try_get("kind")?,
        digits: row.try_get("digits")?,
        detail: row.try_get("detail")?,
    })
}

fn hold_from_row(row: &AnyRow) -> Result<(String, HoldSpan), sqlx::Error> {
    Ok((
        row.try_get("call_id")?,
        HoldSpan {
            started_at: millis(row.try_get("started_at")?),
            ended_at: opt_millis(row, "ended_at")?,
        },
    ))
}

fn variable_from_row(row: &AnyRow) -> Result<(String, String, String), sqlx::Error> {
    Ok((
        row.try_get("call_id")?,
        row.try_get("name")?,
        row.try_get("value")?,
    ))
}

impl Store {
    /// Calls that arrived in `[since, until)`, oldest first, with IVR path, variables and holds.
    pub async fn calls(
        &self,
        since: Option<Millis>,
        until: Option<Millis>,
    ) -> Result<Vec<CallRow>, StoreError> {
        let (lo, hi) = range(since, until);
        let in_range = "JOIN calls c ON c.call_id = t.call_id \
                        WHERE c.arrived_at >= $1 AND c.arrived_at < $2";
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CALL_COLUMNS} FROM calls c WHERE c.arrived_at >= $1 AND c.arrived_at < $2 \
             ORDER BY c.arrived_at, c.call_id"
        )))
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *conn)
        .await?;
        let mut calls = rows
            .iter()
            .map(call_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let index: HashMap<String, usize> = calls
            .iter()
            .enumerate()
            .map(|(i, c)| (c.call_id.clone(), i))
            .collect();

        let steps = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t.call_id, t.seq, t.at, t.node, t.kind, t.digits, t.detail \
             FROM ivr_steps t {in_range} ORDER BY t.call_id, t.seq"
        )))
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *conn)
        .await?;
        for row in &steps {
            let step = step_from_row(row)?;
            if let Some(&i) = index.get(&step.call_id) {
                calls[i].ivr_path.push(step);
            }
        }

        let vars = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t.call_id, t.name, t.value FROM call_variables t {in_range}"
        )))
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *conn)
        .await?;
        for row in &vars {
            let (call_id, name, value) = variable_from_row(row)?;
            if let Some(&i) = index.get(&call_id) {
                calls[i].variables.insert(name, value);
            }
        }

        let holds = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t.call_id, t.started_at, t.ended_at FROM hold_segments t {in_range} \
             ORDER BY t.call_id, t.started_at"
        )))
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *conn)
        .await?;
        for row in &holds {
            let (call_id, span) = hold_from_row(row)?;
            if let Some(&i) = index.get(&call_id) {
                calls[i].hold_segments.push(span);
            }
        }
        for call in &mut calls {
            call.compute_figures();
        }
        Ok(calls)
    }

    /// One call by its engine call id, complete like `calls()` rows.
    pub async fn call(&self, call_id: &str) -> Result<Option<CallRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CALL_COLUMNS} FROM calls c WHERE c.call_id = $1"
        )))
        .bind(call_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut call = call_from_row(&row)?;
        call.ivr_path = self.ivr_steps(call_id).await?;
        call.variables = self.variables(call_id).await?;
        call.hold_segments = self.hold_segments(call_id).await?;
        call.compute_figures();
        Ok(Some(call))
    }

    /// A call's IVR path in order.
    pub async fn ivr_steps(&self, call_id: &str) -> Result<Vec<IvrStepRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT call_id, seq, at, node, kind, digits, detail FROM ivr_steps \
             WHERE call_id = $1 ORDER BY seq",
        )
        .bind(call_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(step_from_row).collect::<Result<_, _>>()?)
    }

    /// A call's variables (latest value of each name).
    pub async fn variables(&self, call_id: &str) -> Result<BTreeMap<String, String>, StoreError> {
        let rows =
            sqlx::query("SELECT call_id, name, value FROM call_variables WHERE call_id = $1")
                .bind(call_id.to_string())
                .fetch_all(&self.pool)
                .await?;
        let mut vars = BTreeMap::new();
        for row in &rows {
            let (_, name, value) = variable_from_row(row)?;
            vars.insert(name, value);
        }
        Ok(vars)
    }

    /// A call's hold segments in order.
    pub async fn hold_segments(&self, call_id: &str) -> Result<Vec<HoldSpan>, StoreError> {
        let rows = sqlx::query(
            "SELECT call_id, started_at, ended_at FROM hold_segments WHERE call_id = $1 \
             ORDER BY started_at",
        )
        .bind(call_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| hold_from_row(r).map(|(_, s)| s))
            .collect::<Result<_, _>>()?)
    }

    /// `kpi::Summary` of the calls that arrived in `[since, until)`, by one SQL query.
    /// Sums are CAST to BIGINT: PostgreSQL's SUM(bigint) is NUMERIC, which `Any` cannot decode.
    pub async fn summary(
        &self,
        since: Option<Millis>,
        until: Option<Millis>,
    ) -> Result<Summary, StoreError> {
        let (lo, hi) = range(since, until);
        let row = sqlx::query(SUMMARY_SQL)
            .bind(lo)
            .bind(hi)
            .fetch_one(&self.pool)
            .await?;
        let get = |col: &str| -> Result<u64, sqlx::Error> {
            Ok(u64::try_from(row.try_get::<Option<i64>, _>(col)?.unwrap_or(0)).unwrap_or(0))
        };
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
}

/// The SQL twin of `kpi::Summary::add` (and `kpi::hold_ms`): keep the two in step.
const SUMMARY_SQL: &str = "\
SELECT
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
  CAST(SUM(COALESCE(h.hold_ms, 0)) AS BIGINT) AS hold_ms_total
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
