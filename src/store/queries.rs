//! Reading calls back: rows with their IVR path, variables and holds, per-call figures from
//! `kpi`, and the same aggregates computed by one SQL query.

use super::{ms_to_db, Store, StoreError};
use crate::engine::record::{EndedBy, IvrOutcome};
use crate::engine::time::Millis;
use crate::kpi::{
    self, AgentStats, CallFacts, CallTimes, HoldSpan, Interval, OfferFacts, QueueStats, Range,
    ServiceLevelTargets, StateChange, Summary,
};
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
    c.last_event_at, c.queue, c.queue_priority, c.queued_at, c.agent, c.agent_answered_at, \
    c.wrapup_ended_at, c.recording_path, c.transferred_to, c.transferred_at, c.transferred_by, \
    c.overflowed_to, c.overflowed_at, c.overflow_reason";

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

fn range_of(r: Range) -> (i64, i64) {
    range(r.since, r.until)
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
