//! The survey outbox in the database: the queries of the survey service (`crate::surveys`).
//!
//! Every transition is one transaction and guarded by the state it leaves, so applying it
//! twice changes nothing the second time; a survey's state change writes its
//! `survey_events` row in the same transaction. The survey question (`kind = 'survey'`)
//! carries its survey along: claimed -> `sending`, back to due -> `pending`, accepted ->
//! `sent`, receipt -> `delivered`/`undeliverable`, given up -> `failed`.
//!
//! Crash safety: `claim_due` commits `sending` (and counts the attempt) before the text is
//! handed to the gateway; `requeue_sending` at startup puts texts that were `sending` back
//! to due. A text the gateway acknowledged is `sent` and never claimed again.

use super::{ms_to_db, text, Store, StoreError, Tx};
use crate::engine::survey::outbox::ClaimedText;
use crate::engine::survey::replies::{OpenSurvey, ReplyContext, ReplyEffects, SurveyUpdate};
use crate::engine::time::Millis;
use sqlx::Row;
use std::collections::BTreeMap;

/// Survey states that take replies (the question went out, or may have).
const OPEN_STATES: &str = "('sending', 'sent', 'delivered', 'undeliverable', 'answered')";

/// A text received from a handset, as stored in `sms_inbound`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundText {
    pub received_at: Millis,
    /// E.164 when the sender's number could be read, else as the gateway gave it.
    pub number: Option<String>,
    pub number_hash: Option<String>,
    pub body: String,
    /// Same key twice: the second is a replay and changes nothing.
    pub dedupe_key: String,
}

/// What `apply_reply` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyApplied {
    /// Applied; `opted_out`: the number was newly opted out.
    Applied { opted_out: bool },
    /// The dedupe key was seen before: nothing changed.
    Duplicate,
}

/// A follow-up task that just escalated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalatedTask {
    pub task_id: i64,
    pub call_id: String,
    pub agent: Option<String>,
    pub reason: String,
    pub due_at: Millis,
}

/// A survey row, for tests and tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SurveyRow {
    pub survey_id: u64,
    pub call_id: String,
    pub state: String,
    pub csat: Option<i64>,
    pub nps: Option<i64>,
    pub comment: Option<String>,
    pub clarified: bool,
    pub nps_asked_at: Option<Millis>,
    pub sent_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub reply_by: Option<Millis>,
    pub fail_reason: Option<String>,
}

/// An outgoing text row, for tests and tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    pub message_id: u64,
    pub survey_id: Option<u64>,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub due_at: Millis,
    pub gateway_ids: Option<String>,
    pub fail_reason: Option<String>,
}

fn id_to_db(id: u64) -> i64 {
    // Follow-up texts use ids with the top bit set (negative in the database), survey ids
    // stay below 2^63: the two never meet.
    id as i64
}

fn id_from_db(v: i64) -> u64 {
    v as u64
}

fn millis(v: i64) -> Millis {
    Millis(u64::try_from(v).unwrap_or(0))
}

/// Moves a survey from one of `from` to `to` and writes its event; false when it was not in
/// one of them (a replay, or it moved on). `set` adds assignments (`, col = $4`) whose
/// values `extra` binds from $4 on.
#[allow(clippy::too_many_arguments)]
async fn survey_transition(
    tx: &mut Tx,
    survey_id: i64,
    from: &[&str],
    to: &str,
    at: Millis,
    detail: Option<String>,
    set: &str,
    extra: Vec<Option<i64>>,
) -> Result<bool, sqlx::Error> {
    let states: Vec<String> = from.iter().map(|s| format!("'{s}'")).collect();
    let sql = format!(
        "UPDATE surveys SET state = $2, state_at = $3{set} WHERE survey_id = $1 AND state IN ({})",
        states.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(survey_id)
        .bind(to.to_string())
        .bind(ms_to_db(at.as_u64()));
    for v in extra {
        q = q.bind(v);
    }
    let changed = q.execute(&mut **tx).await?.rows_affected() == 1;
    if changed {
        event(tx, survey_id, at, to, detail).await?;
    }
    Ok(changed)
}

async fn event(
    tx: &mut Tx,
    survey_id: i64,
    at: Millis,
    state: &str,
    detail: Option<String>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO survey_events (survey_id, at, state, detail) VALUES ($1, $2, $3, $4)")
        .bind(survey_id)
        .bind(ms_to_db(at.as_u64()))
        .bind(state.to_string())
        .bind(detail.map(|d| text(&d).into_owned()))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The survey a question message belongs to (None for other kinds).
async fn question_survey(tx: &mut Tx, message_id: i64) -> Result<Option<i64>, sqlx::Error> {
    let row =
        sqlx::query("SELECT survey_id FROM sms_messages WHERE message_id = $1 AND kind = 'survey'")
            .bind(message_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(match row {
        Some(r) => r.try_get::<Option<i64>, _>(0)?,
        None => None,
    })
}

impl Store {
    /// At startup: texts left `sending` by a previous run (crash, kill) are due again, each
    /// sent at most once more (same message id). Returns how many.
    pub async fn requeue_sending(&self, now: Millis) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT message_id, survey_id, kind FROM sms_messages WHERE state = 'sending'",
        )
        .fetch_all(&mut *tx)
        .await?;
        for r in &rows {
            let id: i64 = r.try_get(0)?;
            let kind: String = r.try_get(2)?;
            sqlx::query(
                "UPDATE sms_messages SET state = 'queued', state_at = $2 \
                 WHERE message_id = $1 AND state = 'sending'",
            )
            .bind(id)
            .bind(ms_to_db(now.as_u64()))
            .execute(&mut *tx)
            .await?;
            if kind == "survey" {
                if let Some(sid) = r.try_get::<Option<i64>, _>(1)? {
                    survey_transition(
                        &mut tx,
                        sid,
                        &["sending"],
                        "pending",
                        now,
                        Some("in flight at the last stop: due again".into()),
                        "",
                        vec![],
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Claims at most `limit` texts due at `now` (oldest first): `sending`, one attempt more,
    /// committed before the caller sends them. Queued texts of a survey whose number has
    /// opted out since are cancelled instead.
    pub async fn claim_due(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<ClaimedText>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let now_db = ms_to_db(now.as_u64());
        let rows = sqlx::query(
            "SELECT m.message_id, m.survey_id, m.kind, m.number, m.body, m.attempts, \
               (SELECT 1 FROM sms_opt_outs o WHERE o.number_hash = s.number_hash) AS opted \
             FROM sms_messages m LEFT JOIN surveys s ON s.survey_id = m.survey_id \
             WHERE m.state = 'queued' AND m.due_at <= $1 \
             ORDER BY m.due_at, m.message_id LIMIT $2",
        )
        .bind(now_db)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get(0)?;
            let survey_id: Option<i64> = r.try_get(1)?;
            let kind: String = r.try_get(2)?;
            let opted = r.try_get::<Option<i64>, _>(6)?.is_some();
            if opted && kind != "opt_out_confirm" {
                sqlx::query(
                    "UPDATE sms_messages SET state = 'cancelled', state_at = $2, \
                       fail_reason = 'number opted out' WHERE message_id = $1 AND state = 'queued'",
                )
                .bind(id)
                .bind(now_db)
                .execute(&mut *tx)
                .await?;
                if let (Some(sid), "survey") = (survey_id, kind.as_str()) {
                    survey_transition(
                        &mut tx,
                        sid,
                        &["pending", "deferred"],
                        "opted_out",
                        now,
                        Some("number opted out before sending".into()),
                        "",
                        vec![],
                    )
                    .await?;
                }
                continue;
            }
            let attempts: i64 = r.try_get(5)?;
            sqlx::query(
                "UPDATE sms_messages SET state = 'sending', state_at = $2, attempts = attempts + 1 \
                 WHERE message_id = $1 AND state = 'queued'",
            )
            .bind(id)
            .bind(now_db)
            .execute(&mut *tx)
            .await?;
            if let (Some(sid), "survey") = (survey_id, kind.as_str()) {
                survey_transition(
                    &mut tx,
                    sid,
                    &["pending", "deferred"],
                    "sending",
                    now,
                    Some(format!("attempt {}", attempts + 1)),
                    "",
                    vec![],
                )
                .await?;
            }
            out.push(ClaimedText {
                message_id: id_from_db(id),
                survey_id: survey_id.map(id_from_db),
                kind,
                number: r.try_get(3)?,
                body: r.try_get(4)?,
                attempts: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The gateway accepted every part: `sent`, with the part ids for receipts. A survey's
    /// reply deadline moves to at least `reply_by`. False when the text was not `sending`.
    pub async fn mark_sent(
        &self,
        message_id: u64,
        gateway: &str,
        gateway_ids: &[String],
        reply_by: Millis,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let id = id_to_db(message_id);
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE sms_messages SET state = 'sent', state_at = $2, sent_at = $2, gateway = $3, \
               gateway_ids = $4 WHERE message_id = $1 AND state = 'sending'",
        )
        .bind(id)
        .bind(ms_to_db(now.as_u64()))
        .bind(text(gateway).into_owned())
        .bind(text(&gateway_ids.join(",")).into_owned())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if changed {
            for g in gateway_ids {
                sqlx::query(
                    "INSERT INTO sms_parts (gateway_id, message_id) VALUES ($1, $2) \
                     ON CONFLICT (gateway_id) DO NOTHING",
                )
                .bind(text(g).into_owned())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(sid) = question_survey(&mut tx, id).await? {
                survey_transition(
                    &mut tx,
                    sid,
                    &["sending", "pending", "deferred"],
                    "sent",
                    now,
                    Some(format!("{gateway}: {}", gateway_ids.join(","))),
                    ", sent_at = $3, reply_by = CASE WHEN reply_by IS NULL OR reply_by < $4 \
                       THEN $4 ELSE reply_by END",
                    vec![Some(ms_to_db(reply_by.as_u64()))],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// A final delivery receipt for one part. The text is `delivered` once every part is,
    /// `undeliverable` as soon as one part is not. Returns the text's id, None for a receipt
    /// naming no part of ours. A second receipt for the same part changes nothing.
    pub async fn record_receipt(
        &self,
        gateway_id: &str,
        delivered: bool,
        state: &str,
        now: Millis,
    ) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT message_id FROM sms_parts WHERE gateway_id = $1")
            .bind(text(gateway_id).into_owned())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let id: i64 = row.try_get(0)?;
        let now_db = ms_to_db(now.as_u64());
        sqlx::query(
            "UPDATE sms_parts SET delivered = $2, state = $3, at = $4 \
             WHERE gateway_id = $1 AND delivered IS NULL",
        )
        .bind(text(gateway_id).into_owned())
        .bind(i32::from(delivered))
        .bind(text(state).into_owned())
        .bind(now_db)
        .execute(&mut *tx)
        .await?;
        let counts = sqlx::query(
            "SELECT COUNT(*), \
               SUM(CASE WHEN delivered = 1 THEN 1 ELSE 0 END), \
               SUM(CASE WHEN delivered = 0 THEN 1 ELSE 0 END) \
             FROM sms_parts WHERE message_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let total: i64 = counts.try_get(0)?;
        let ok: i64 = counts.try_get::<Option<i64>, _>(1)?.unwrap_or(0);
        let bad: i64 = counts.try_get::<Option<i64>, _>(2)?.unwrap_or(0);
        let outcome = if bad > 0 {
            Some("undeliverable")
        } else if ok == total {
            Some("delivered")
        } else {
            None
        };
        if let Some(outcome) = outcome {
            let changed = sqlx::query(
                "UPDATE sms_messages SET state = $2, state_at = $3 \
                 WHERE message_id = $1 AND state = 'sent'",
            )
            .bind(id)
            .bind(outcome)
            .bind(now_db)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if changed {
                if let Some(sid) = question_survey(&mut tx, id).await? {
                    let moved = survey_transition(
                        &mut tx,
                        sid,
                        &["sent"],
                        outcome,
                        now,
                        Some(format!("receipt {state}")),
                        ", delivered_at = CASE WHEN $4 = 1 THEN $3 ELSE delivered_at END",
                        vec![Some(i64::from(outcome == "delivered"))],
                    )
                    .await?;
                    if !moved && outcome == "delivered" {
                        // Answered before the receipt came: keep the state, note the time.
                        sqlx::query(
                            "UPDATE surveys SET delivered_at = $2 \
                             WHERE survey_id = $1 AND delivered_at IS NULL",
                        )
                        .bind(sid)
                        .bind(now_db)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(Some(id_from_db(id)))
    }

    /// A temporary failure: the text is due again at `due_at`. False when it was not `sending`.
    pub async fn retry_text(
        &self,
        message_id: u64,
        due_at: Millis,
        reason: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let id = id_to_db(message_id);
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE sms_messages SET state = 'queued', state_at = $2, due_at = $3, \
               fail_reason = $4 WHERE message_id = $1 AND state = 'sending'",
        )
        .bind(id)
        .bind(ms_to_db(now.as_u64()))
        .bind(ms_to_db(due_at.as_u64()))
        .bind(text(reason).into_owned())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if changed {
            if let Some(sid) = question_survey(&mut tx, id).await? {
                survey_transition(
                    &mut tx,
                    sid,
                    &["sending"],
                    "pending",
                    now,
                    Some(format!("retry at {}: {reason}", due_at.as_u64())),
                    "",
                    vec![],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Given up: `failed(reason)`. False when the text was already sent or failed.
    pub async fn fail_text(
        &self,
        message_id: u64,
        reason: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let id = id_to_db(message_id);
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE sms_messages SET state = 'failed', state_at = $2, fail_reason = $3 \
             WHERE message_id = $1 AND state IN ('queued', 'sending')",
        )
        .bind(id)
        .bind(ms_to_db(now.as_u64()))
        .bind(text(reason).into_owned())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if changed {
            if let Some(sid) = question_survey(&mut tx, id).await? {
                let updated = sqlx::query(
                    "UPDATE surveys SET state = 'failed', state_at = $2, fail_reason = $3 \
                     WHERE survey_id = $1 AND state IN ('pending', 'deferred', 'sending')",
                )
                .bind(sid)
                .bind(ms_to_db(now.as_u64()))
                .bind(text(reason).into_owned())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 1 {
                    event(&mut tx, sid, now, "failed", Some(reason.to_string())).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// Whether the number (by its keyed hash) has opted out.
    pub async fn is_opted_out(&self, number_hash: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 FROM sms_opt_outs WHERE number_hash = $1")
                .bind(text(number_hash).into_owned())
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// The number's open survey (most recent that went out, reply window not passed) and
    /// whether it opted out.
    pub async fn reply_context(
        &self,
        number_hash: &str,
        now: Millis,
    ) -> Result<ReplyContext, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT survey_id, call_id, state, language, agent, queue, complaint, csat, nps, \
               nps_asked_at, clarified, comment FROM surveys \
             WHERE number_hash = $1 AND state IN {OPEN_STATES} AND reply_by > $2 \
             ORDER BY COALESCE(sent_at, send_at) DESC, survey_id DESC LIMIT 1"
        )))
        .bind(text(number_hash).into_owned())
        .bind(ms_to_db(now.as_u64()))
        .fetch_optional(&self.pool)
        .await?;
        let survey = match row {
            None => None,
            Some(r) => Some(OpenSurvey {
                survey_id: id_from_db(r.try_get(0)?),
                call_id: r.try_get(1)?,
                state: r.try_get(2)?,
                language: r.try_get(3)?,
                agent: r.try_get(4)?,
                queue: r.try_get(5)?,
                complaint: r.try_get::<i64, _>(6)? != 0,
                csat: r
                    .try_get::<Option<i64>, _>(7)?
                    .and_then(|v| u8::try_from(v).ok()),
                nps: r
                    .try_get::<Option<i64>, _>(8)?
                    .and_then(|v| u8::try_from(v).ok()),
                nps_asked: r.try_get::<Option<i64>, _>(9)?.is_some(),
                clarified: r.try_get::<i64, _>(10)? != 0,
                comment: r.try_get(11)?,
            }),
        };
        Ok(ReplyContext {
            survey,
            opted_out: self.is_opted_out(number_hash).await?,
        })
    }

    /// Applies a reply's effects in one transaction, the inbound row first: a replayed
    /// delivery (dedupe key seen) changes nothing.
    pub async fn apply_reply(
        &self,
        inbound: &InboundText,
        fx: &ReplyEffects,
        now: Millis,
    ) -> Result<ReplyApplied, StoreError> {
        let mut tx = self.pool.begin().await?;
        let now_db = ms_to_db(now.as_u64());
        let sid = fx.survey_id.map(id_to_db);
        let inserted = sqlx::query(
            "INSERT INTO sms_inbound (received_at, number, number_hash, body, survey_id, \
               outcome, dedupe_key) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(ms_to_db(inbound.received_at.as_u64()))
        .bind(inbound.number.as_deref().map(|n| text(n).into_owned()))
        .bind(inbound.number_hash.clone())
        .bind(text(&inbound.body).into_owned())
        .bind(sid)
        .bind(fx.outcome)
        .bind(text(&inbound.dedupe_key).into_owned())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(ReplyApplied::Duplicate);
        }
        let mut newly_opted_out = false;
        if fx.opt_out {
            if let Some(hash) = &inbound.number_hash {
                newly_opted_out = sqlx::query(
                    "INSERT INTO sms_opt_outs (number_hash, number, at, survey_id) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (number_hash) DO NOTHING",
                )
                .bind(hash.clone())
                .bind(inbound.number.as_deref().map(|n| text(n).into_owned()))
                .bind(now_db)
                .bind(sid)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
            }
        }
        if let (Some(sid), Some(update)) = (sid, &fx.update) {
            apply_update(&mut tx, sid, update, now).await?;
        }
        // Follow-up texts only when this reply changed something they depend on: an opt-out
        // confirmation only for a new opt-out.
        for t in &fx.texts {
            if t.kind == "opt_out_confirm" && !newly_opted_out {
                continue;
            }
            let next = sqlx::query(
                "SELECT COALESCE(MIN(message_id), 0) FROM sms_messages WHERE message_id < 0",
            )
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>(0)?;
            // Follow-up texts count down from -1: the top bit set, never a survey id.
            let message_id = next.min(0) - 1;
            sqlx::query(
                "INSERT INTO sms_messages (message_id, survey_id, kind, number, body, \
                   created_at, state, state_at, due_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued', $6, $7)",
            )
            .bind(message_id)
            .bind(sid)
            .bind(t.kind)
            .bind(inbound.number.as_deref().map(|n| text(n).into_owned()))
            .bind(text(&t.body).into_owned())
            .bind(now_db)
            .bind(ms_to_db(t.due_at.as_u64()))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(task) = &fx.task {
            sqlx::query(
                "INSERT INTO follow_up_tasks (call_id, survey_id, agent, queue, reason, score, \
                   opened_at, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (call_id, reason) DO NOTHING",
            )
            .bind(text(&task.call_id).into_owned())
            .bind(id_to_db(task.survey_id))
            .bind(task.agent.clone())
            .bind(task.queue.clone())
            .bind(task.reason)
            .bind(i32::from(task.score))
            .bind(now_db)
            .bind(ms_to_db(task.due_at.as_u64()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(ReplyApplied::Applied {
            opted_out: newly_opted_out,
        })
    }

    /// Surveys whose reply window passed without an answer: `expired`. So are surveys still
    /// not sent `unsent_ms` after their send time (a long gateway outage: a question about a
    /// call days ago helps nobody); their queued texts are cancelled. A text being sent right
    /// now keeps its survey. Returns the ids.
    pub async fn expire_surveys(
        &self,
        now: Millis,
        unsent_ms: u64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let stale = sqlx::query(
            "SELECT s.survey_id FROM surveys s \
             WHERE s.state IN ('pending', 'deferred') AND s.send_at <= $1 \
               AND NOT EXISTS (SELECT 1 FROM sms_messages m \
                 WHERE m.survey_id = s.survey_id AND m.state = 'sending')",
        )
        .bind(ms_to_db(now.as_u64().saturating_sub(unsent_ms)))
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::new();
        for r in stale {
            let sid: i64 = r.try_get(0)?;
            if survey_transition(
                &mut tx,
                sid,
                &["pending", "deferred"],
                "expired",
                now,
                Some("not sent within the reply window".into()),
                "",
                vec![],
            )
            .await?
            {
                sqlx::query(
                    "UPDATE sms_messages SET state = 'cancelled', state_at = $2, \
                       fail_reason = 'not sent in time' WHERE survey_id = $1 AND state = 'queued'",
                )
                .bind(sid)
                .bind(ms_to_db(now.as_u64()))
                .execute(&mut *tx)
                .await?;
                out.push(id_from_db(sid));
            }
        }
        let rows = sqlx::query(
            "SELECT survey_id FROM surveys \
             WHERE state IN ('sent', 'delivered', 'undeliverable') AND reply_by <= $1",
        )
        .bind(ms_to_db(now.as_u64()))
        .fetch_all(&mut *tx)
        .await?;
        for r in rows {
            let sid: i64 = r.try_get(0)?;
            if survey_transition(
                &mut tx,
                sid,
                &["sent", "delivered", "undeliverable"],
                "expired",
                now,
                None,
                "",
                vec![],
            )
            .await?
            {
                out.push(id_from_db(sid));
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Open follow-up tasks past their due time get `escalated_at`, once. Returns them.
    pub async fn escalate_tasks(&self, now: Millis) -> Result<Vec<EscalatedTask>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT task_id, call_id, agent, reason, due_at FROM follow_up_tasks \
             WHERE closed_at IS NULL AND escalated_at IS NULL AND due_at <= $1",
        )
        .bind(ms_to_db(now.as_u64()))
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let task_id: i64 = r.try_get(0)?;
            let changed = sqlx::query(
                "UPDATE follow_up_tasks SET escalated_at = $2 \
                 WHERE task_id = $1 AND escalated_at IS NULL AND closed_at IS NULL",
            )
            .bind(task_id)
            .bind(ms_to_db(now.as_u64()))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 1 {
                out.push(EscalatedTask {
                    task_id,
                    call_id: r.try_get(1)?,
                    agent: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    due_at: millis(r.try_get(4)?),
                });
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// One survey row.
    pub async fn survey_row(&self, survey_id: u64) -> Result<Option<SurveyRow>, StoreError> {
        let row = sqlx::query(
            "SELECT survey_id, call_id, state, csat, nps, comment, clarified, nps_asked_at, \
               sent_at, delivered_at, reply_by, fail_reason FROM surveys WHERE survey_id = $1",
        )
        .bind(id_to_db(survey_id))
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let opt = |col: usize| -> Result<Option<Millis>, sqlx::Error> {
            Ok(r.try_get::<Option<i64>, _>(col)?.map(millis))
        };
        Ok(Some(SurveyRow {
            survey_id: id_from_db(r.try_get(0)?),
            call_id: r.try_get(1)?,
            state: r.try_get(2)?,
            csat: r.try_get(3)?,
            nps: r.try_get(4)?,
            comment: r.try_get(5)?,
            clarified: r.try_get::<i64, _>(6)? != 0,
            nps_asked_at: opt(7)?,
            sent_at: opt(8)?,
            delivered_at: opt(9)?,
            reply_by: opt(10)?,
            fail_reason: r.try_get(11)?,
        }))
    }

    /// Every outgoing text, by id.
    pub async fn outbox_rows(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT message_id, survey_id, kind, state, attempts, due_at, gateway_ids, \
               fail_reason FROM sms_messages ORDER BY message_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxRow {
                    message_id: id_from_db(r.try_get(0)?),
                    survey_id: r.try_get::<Option<i64>, _>(1)?.map(id_from_db),
                    kind: r.try_get(2)?,
                    state: r.try_get(3)?,
                    attempts: r.try_get(4)?,
                    due_at: millis(r.try_get(5)?),
                    gateway_ids: r.try_get(6)?,
                    fail_reason: r.try_get(7)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Outgoing texts per state.
    pub async fn outbox_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM sms_messages GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            out.insert(
                r.try_get(0)?,
                u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
            );
        }
        Ok(out)
    }

    /// Inbound texts: (outcome, survey id, dedupe key), oldest first.
    pub async fn inbound_rows(&self) -> Result<Vec<(String, Option<u64>, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT outcome, survey_id, dedupe_key FROM sms_inbound ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get::<Option<i64>, _>(1)?.map(id_from_db),
                    r.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Follow-up tasks: (call id, reason, score, escalated_at), by id.
    pub async fn follow_up_rows(
        &self,
    ) -> Result<Vec<(String, String, Option<i64>, Option<Millis>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT call_id, reason, score, escalated_at FROM follow_up_tasks ORDER BY task_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get::<Option<i64>, _>(3)?.map(millis),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

/// One reply's change to its survey, guarded so a repeat changes nothing.
async fn apply_update(
    tx: &mut Tx,
    sid: i64,
    update: &SurveyUpdate,
    now: Millis,
) -> Result<(), sqlx::Error> {
    let now_db = ms_to_db(now.as_u64());
    match update {
        SurveyUpdate::Answered {
            csat,
            comment,
            ask_nps,
        } => {
            let changed = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE surveys SET state = 'answered', state_at = $2, answered_at = $2, \
                   csat = $3, comment = $4, \
                   nps_asked_at = CASE WHEN $5 = 1 THEN $2 ELSE nps_asked_at END \
                 WHERE survey_id = $1 AND csat IS NULL AND state IN {OPEN_STATES}"
            )))
            .bind(sid)
            .bind(now_db)
            .bind(i32::from(*csat))
            .bind(comment.as_deref().map(|c| text(c).into_owned()))
            .bind(i32::from(*ask_nps))
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if changed == 1 {
                event(tx, sid, now, "answered", Some(format!("csat {csat}"))).await?;
            }
        }
        SurveyUpdate::Nps { nps, comment } => {
            let changed = sqlx::query(
                "UPDATE surveys SET nps = $2, comment = COALESCE($3, comment) \
                 WHERE survey_id = $1 AND nps IS NULL",
            )
            .bind(sid)
            .bind(i32::from(*nps))
            .bind(comment.as_deref().map(|c| text(c).into_owned()))
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if changed == 1 {
                event(tx, sid, now, "answered", Some(format!("nps {nps}"))).await?;
            }
        }
        SurveyUpdate::OptedOut => {
            let moved = survey_transition(
                tx,
                sid,
                &[
                    "pending",
                    "deferred",
                    "sending",
                    "sent",
                    "delivered",
                    "undeliverable",
                ],
                "opted_out",
                now,
                None,
                "",
                vec![],
            )
            .await?;
            if !moved {
                // Answered already: the answer stands; the opt-out is in the history.
                event(tx, sid, now, "opted_out", Some("after the answer".into())).await?;
            }
            // Nothing more goes to this survey's number except the confirmation.
            sqlx::query(
                "UPDATE sms_messages SET state = 'cancelled', state_at = $2, \
                   fail_reason = 'number opted out' \
                 WHERE survey_id = $1 AND state = 'queued' AND kind <> 'opt_out_confirm'",
            )
            .bind(sid)
            .bind(now_db)
            .execute(&mut **tx)
            .await?;
        }
        SurveyUpdate::Clarified { comment } => {
            sqlx::query(
                "UPDATE surveys SET clarified = 1, comment = COALESCE($2, comment) \
                 WHERE survey_id = $1 AND clarified = 0",
            )
            .bind(sid)
            .bind(comment.as_deref().map(|c| text(c).into_owned()))
            .execute(&mut **tx)
            .await?;
        }
        SurveyUpdate::Comment { comment } => {
            sqlx::query("UPDATE surveys SET comment = $2 WHERE survey_id = $1")
                .bind(sid)
                .bind(text(comment).into_owned())
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}
