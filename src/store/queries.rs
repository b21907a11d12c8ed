//! Reading calls back: rows with their IVR path, variables, holds and offers, and their
//! per-call figures from `kpi` (the SQL aggregates are in `aggregates.rs`).

use super::{ms_to_db, Store, StoreError};
use crate::engine::record::{EndedBy, IvrOutcome};
use crate::engine::time::Millis;
use crate::kpi::{self, CallFacts, CallTimes, HoldSpan, OfferFacts, Range, StateChange};
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

/// One offer of a call to an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferRow {
    pub call_id: String,
    pub attempt: u32,
    pub agent: String,
    pub offered_at: Millis,
    pub ended_at: Option<Millis>,
    /// "answered", "no_answer", "busy", "rejected", "failed", "cancelled"; `None` while ringing.
    pub outcome: Option<String>,
}

/// METRICS.md per-call figures of one call, as SQL computes them (`Store::call_figures`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFigures {
    pub call_id: String,
    pub frt_ms: Option<u64>,
    pub queue_wait_ms: Option<u64>,
    pub talk_ms: Option<u64>,
    pub hold_ms: u64,
    pub acw_ms: Option<u64>,
    pub aht_ms: Option<u64>,
    pub abandoned: bool,
    pub short_abandon: bool,
}

/// How the agent classified the call (migration 0006).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallDisposition {
    pub name: String,
    pub code: i64,
    pub resolved: bool,
    pub note: Option<String>,
    pub agent: Option<String>,
    pub at: Millis,
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
    pub queue: Option<String>,
    pub queue_priority: Option<i32>,
    pub queued_at: Option<Millis>,
    pub agent: Option<String>,
    pub agent_answered_at: Option<Millis>,
    pub wrapup_ended_at: Option<Millis>,
    pub recording_path: Option<String>,
    pub transferred_to: Option<String>,
    pub transferred_at: Option<Millis>,
    pub transferred_by: Option<String>,
    /// The first overflow: target queue, when, and why ("max_wait", "no_agents").
    pub overflowed_to: Option<String>,
    pub overflowed_at: Option<Millis>,
    pub overflow_reason: Option<String>,
    /// The call's current disposition (the last one set); the history is
    /// `Store::call_dispositions`.
    pub disposition: Option<CallDisposition>,
    pub offers: Vec<OfferRow>,
    pub ivr_path: Vec<IvrStepRow>,
    pub variables: BTreeMap<String, String>,
    pub hold_segments: Vec<HoldSpan>,
    // Figures (kpi.rs), filled when the row is read.
    pub rings_before_answer: Option<f64>,
    /// From the timestamps (METRICS.md formula); the recorded flag if the ring cycle is unknown.
    pub within_three_rings: Option<bool>,
    pub hold_ms: u64,
    pub frt_ms: Option<u64>,
    pub queue_wait_ms: Option<u64>,
    pub talk_ms: Option<u64>,
    pub acw_ms: Option<u64>,
    pub aht_ms: Option<u64>,
    pub abandoned: bool,
    pub short_abandon: bool,
}

impl CallRow {
    /// The per-call figures as `kpi` computed them when the row was read.
    pub fn figures(&self) -> CallFigures {
        CallFigures {
            call_id: self.call_id.clone(),
            frt_ms: self.frt_ms,
            queue_wait_ms: self.queue_wait_ms,
            talk_ms: self.talk_ms,
            hold_ms: self.hold_ms,
            acw_ms: self.acw_ms,
            aht_ms: self.aht_ms,
            abandoned: self.abandoned,
            short_abandon: self.short_abandon,
        }
    }

    pub fn times(&self) -> CallTimes {
        CallTimes {
            arrived_at: self.arrived_at,
            queue: self.queue.clone(),
            queued_at: self.queued_at,
            agent: self.agent.clone(),
            agent_answered_at: self.agent_answered_at,
            ended_at: self.ended_at,
            ended_by: self.ended_by,
            wrapup_ended_at: self.wrapup_ended_at,
            hold_ms: self.hold_ms,
        }
    }

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
        let t = self.times();
        self.frt_ms = t.frt_ms();
        self.queue_wait_ms = t.queue_wait_ms();
        self.talk_ms = t.talk_ms();
        self.acw_ms = t.acw_ms();
        self.aht_ms = t.aht_ms();
        self.abandoned = t.abandoned();
        self.short_abandon = t.short_abandon();
    }
}

pub(super) fn millis(v: i64) -> Millis {
    Millis(u64::try_from(v).unwrap_or(0))
}

pub(super) fn opt_millis(row: &AnyRow, col: &str) -> Result<Option<Millis>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(millis))
}

/// `[since, until)` as BIGINT bounds.
pub(super) fn range(since: Option<Millis>, until: Option<Millis>) -> (i64, i64) {
    (
        since.map_or(i64::MIN, |m| ms_to_db(m.as_u64())),
        until.map_or(i64::MAX, |m| ms_to_db(m.as_u64())),
    )
}

pub(super) fn range_of(r: Range) -> (i64, i64) {
    range(r.since, r.until)
}

pub(super) const CALL_COLUMNS: &str =
    "c.call_id, c.sip_call_id, c.caller, c.dialled, c.transport, \
    c.arrived_at, c.ringing_at, c.answered_at, c.within_three_rings, c.ring_cycle_ms, \
    c.ivr_left_at, c.ivr_outcome, c.ended_at, c.ended_by, c.end_reason, c.final_status, \
    c.last_event_at, c.queue, c.queue_priority, c.queued_at, c.agent, c.agent_answered_at, \
    c.wrapup_ended_at, c.recording_path, c.transferred_to, c.transferred_at, c.transferred_by, \
    c.overflowed_to, c.overflowed_at, c.overflow_reason, c.disposition, \
    CAST(c.disposition_code AS BIGINT) AS disposition_code, \
    CAST(c.disposition_resolved AS BIGINT) AS disposition_resolved, c.disposition_note, \
    c.disposition_agent, c.disposition_at";

pub(super) fn call_from_row(row: &AnyRow) -> Result<CallRow, sqlx::Error> {
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
        queue: row.try_get("queue")?,
        queue_priority: row
            .try_get::<Option<i64>, _>("queue_priority")?
            .and_then(|v| i32::try_from(v).ok()),
        queued_at: opt_millis(row, "queued_at")?,
        agent: row.try_get("agent")?,
        agent_answered_at: opt_millis(row, "agent_answered_at")?,
        wrapup_ended_at: opt_millis(row, "wrapup_ended_at")?,
        recording_path: row.try_get("recording_path")?,
        transferred_to: row.try_get("transferred_to")?,
        transferred_at: opt_millis(row, "transferred_at")?,
        transferred_by: row.try_get("transferred_by")?,
        overflowed_to: row.try_get("overflowed_to")?,
        overflowed_at: opt_millis(row, "overflowed_at")?,
        overflow_reason: row.try_get("overflow_reason")?,
        disposition: disposition_from_row(row)?,
        offers: Vec::new(),
        ivr_path: Vec::new(),
        variables: BTreeMap::new(),
        hold_segments: Vec::new(),
        rings_before_answer: None,
        within_three_rings: None,
        hold_ms: 0,
        frt_ms: None,
        queue_wait_ms: None,
        talk_ms: None,
        acw_ms: None,
        aht_ms: None,
        abandoned: false,
        short_abandon: false,
    };
    call.compute_figures();
    Ok(call)
}

fn disposition_from_row(row: &AnyRow) -> Result<Option<CallDisposition>, sqlx::Error> {
    let Some(name) = row.try_get::<Option<String>, _>("disposition")? else {
        return Ok(None);
    };
    Ok(Some(CallDisposition {
        name,
        code: row
            .try_get::<Option<i64>, _>("disposition_code")?
            .unwrap_or(0),
        resolved: row
            .try_get::<Option<i64>, _>("disposition_resolved")?
            .is_some_and(|v| v != 0),
        note: row.try_get("disposition_note")?,
        agent: row.try_get("disposition_agent")?,
        at: opt_millis(row, "disposition_at")?.unwrap_or(Millis::ZERO),
    }))
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

fn offer_from_row(row: &AnyRow) -> Result<OfferRow, sqlx::Error> {
    Ok(OfferRow {
        call_id: row.try_get("call_id")?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0),
        agent: row.try_get("agent")?,
        offered_at: millis(row.try_get("offered_at")?),
        ended_at: opt_millis(row, "ended_at")?,
        outcome: row.try_get("outcome")?,
    })
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
        let offers = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t.call_id, t.attempt, t.agent, t.offered_at, t.ended_at, t.outcome \
             FROM offer_attempts t {in_range} ORDER BY t.call_id, t.attempt"
        )))
        .bind(lo)
        .bind(hi)
        .fetch_all(&mut *conn)
        .await?;
        for row in &offers {
            let offer = offer_from_row(row)?;
            if let Some(&i) = index.get(&offer.call_id) {
                calls[i].offers.push(offer);
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
        call.offers = self.offers(call_id).await?;
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

    /// A call's offer attempts in order.
    pub async fn offers(&self, call_id: &str) -> Result<Vec<OfferRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT call_id, attempt, agent, offered_at, ended_at, outcome FROM offer_attempts \
             WHERE call_id = $1 ORDER BY attempt",
        )
        .bind(call_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(offer_from_row).collect::<Result<_, _>>()?)
    }

    /// Offers made in `[since, until)` (by `offered_at`), as `kpi::agent_stats` takes them.
    pub async fn offer_facts(&self, range: Range) -> Result<Vec<OfferFacts>, StoreError> {
        let (lo, hi) = range_of(range);
        let rows = sqlx::query(
            "SELECT agent, offered_at, outcome FROM offer_attempts \
             WHERE offered_at >= $1 AND offered_at < $2 ORDER BY offered_at",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(OfferFacts {
                agent: row.try_get("agent")?,
                offered_at: millis(row.try_get("offered_at")?),
                outcome: row.try_get("outcome")?,
            });
        }
        Ok(out)
    }

    /// Every agent state change, in order (by time, then row id).
    pub async fn agent_state_changes(&self) -> Result<Vec<StateChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, agent, at, state, reason FROM agent_state_changes ORDER BY at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(StateChange {
                agent: row.try_get("agent")?,
                at: millis(row.try_get("at")?),
                seq: row.try_get("id")?,
                state: row.try_get("state")?,
                reason: row.try_get("reason")?,
            });
        }
        Ok(out)
    }

    /// Callback requests left in `[since, until)`: (call_id, requested_at, queue, number).
    pub async fn callbacks(
        &self,
        range: Range,
    ) -> Result<Vec<(String, Millis, String, String)>, StoreError> {
        let (lo, hi) = range_of(range);
        let rows = sqlx::query(
            "SELECT call_id, requested_at, queue, number FROM callbacks \
             WHERE requested_at >= $1 AND requested_at < $2 ORDER BY requested_at, call_id",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push((
                row.try_get("call_id")?,
                millis(row.try_get("requested_at")?),
                row.try_get("queue")?,
                row.try_get("number")?,
            ));
        }
        Ok(out)
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
}
