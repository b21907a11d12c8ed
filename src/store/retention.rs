//! PIPL retention (issue 8 item 9, minimum necessary): a caller's full number is kept only
//! while a survey or a follow-up task needs it; `retention_days` (survey.toml `[privacy]`)
//! after that it is dropped and only the keyed hash stays (`number_hash`: enough for the
//! frequency cap and opt-outs, with `send_at`).
//!
//! A survey no longer needs its number when all of these hold:
//! - its state is final (`kpi::survey::FINAL_STATES`: answered, expired, opted_out, skipped,
//!   failed, undeliverable);
//! - its reply window is over (`reply_by` passed: an NPS answer may still come in after
//!   `answered`);
//! - no text for it is still queued or being sent;
//! - its call has no open follow-up task (the agent may have to call back);
//! - its last state change is older than the retention.
//!
//! Then, in one transaction: the survey's `number` becomes NULL and `number_hashed_at` is
//! set; the numbers of its texts (`sms_messages`), of the replies matched to it
//! (`sms_inbound`) and of its opt-out (`sms_opt_outs`) go too. Replies that matched no survey
//! and opt-outs without a survey lose their number once older than the retention; texts with
//! no survey once final and older than it.
//!
//! Call records (`calls.caller`) of calls that arrived before the retention cutoff get the
//! same treatment (`hash_old_callers`): once no survey of the call still holds its number and
//! no follow-up task of it is open, the caller becomes the keyed hash of what was stored
//! (64 hex digits; the API shows it as `****`). Numbers shorter than 7 characters (agent
//! extensions, `anonymous`) are left alone. Calls of one caller keep matching each other
//! after hashing, so the repeat-caller figure still works on old calls; across the cutoff
//! (a hashed call and a later one still in clear within 7 days) the repeat is not seen.

use super::{ms_to_db, Store, StoreError};
use crate::engine::time::Millis;
use crate::kpi::survey::FINAL_STATES;
use std::time::Duration;

/// sms_messages states after which the text is not sent again.
const FINAL_MESSAGE_STATES: [&str; 5] =
    ["sent", "delivered", "undeliverable", "failed", "cancelled"];

fn quoted(states: &[&str]) -> String {
    states
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Drops the numbers no survey or task needs any more and that are older than
    /// `retention_ms` at `now` (see the module notes). Returns how many rows lost a number,
    /// over the four tables. Idempotent.
    pub async fn drop_expired_numbers(
        &self,
        now: Millis,
        retention_ms: u64,
    ) -> Result<u64, StoreError> {
        let now_db = ms_to_db(now.as_u64());
        let cutoff = ms_to_db(now.as_u64().saturating_sub(retention_ms));
        let finals = quoted(&FINAL_STATES);
        let msg_finals = quoted(&FINAL_MESSAGE_STATES);
        let mut tx = self.pool.begin().await?;
        let mut total = 0u64;
        total += sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE surveys SET number = NULL, number_hashed_at = $1 \
             WHERE number_hashed_at IS NULL AND state IN ({finals}) AND state_at < $2 \
               AND (reply_by IS NULL OR reply_by < $1) \
               AND NOT EXISTS (SELECT 1 FROM follow_up_tasks t \
                 WHERE t.call_id = surveys.call_id AND t.closed_at IS NULL) \
               AND NOT EXISTS (SELECT 1 FROM sms_messages m \
                 WHERE m.survey_id = surveys.survey_id AND m.state IN ('queued', 'sending'))"
        )))
        .bind(now_db)
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let hashed = "SELECT survey_id FROM surveys WHERE number_hashed_at IS NOT NULL";
        total += sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sms_messages SET number = NULL WHERE number IS NOT NULL AND ( \
               survey_id IN ({hashed}) \
               OR (survey_id IS NULL AND state IN ({msg_finals}) AND state_at < $1))"
        )))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        total += sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sms_inbound SET number = NULL WHERE number IS NOT NULL AND ( \
               survey_id IN ({hashed}) OR (survey_id IS NULL AND received_at < $1))"
        )))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        total += sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE sms_opt_outs SET number = NULL WHERE number IS NOT NULL AND at < $1 AND ( \
               survey_id IS NULL OR survey_id IN ({hashed}) \
               OR survey_id NOT IN (SELECT survey_id FROM surveys))"
        )))
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(total)
    }
}

/// Call records handled per transaction by `hash_old_callers`.
const CALLER_BATCH: i64 = 500;

impl Store {
    /// Replaces the caller numbers of calls older than `retention_ms` at `now` with their
    /// keyed hash under `key` (see the module notes). Returns how many calls changed.
    /// Idempotent: a hash (64 characters) is never hashed again.
    pub async fn hash_old_callers(
        &self,
        now: Millis,
        retention_ms: u64,
        key: &[u8],
    ) -> Result<u64, StoreError> {
        let cutoff = ms_to_db(now.as_u64().saturating_sub(retention_ms));
        let mut total = 0u64;
        loop {
            let mut tx = self.pool.begin().await?;
            let rows = sqlx::query(
                "SELECT call_id, caller FROM calls c \
                 WHERE c.arrived_at < $1 AND length(c.caller) >= 7 AND length(c.caller) <> 64 \
                   AND NOT EXISTS (SELECT 1 FROM surveys s \
                     WHERE s.call_id = c.call_id AND s.number IS NOT NULL) \
                   AND NOT EXISTS (SELECT 1 FROM follow_up_tasks t \
                     WHERE t.call_id = c.call_id AND t.closed_at IS NULL) \
                 ORDER BY c.arrived_at LIMIT $2",
            )
            .bind(cutoff)
            .bind(CALLER_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                use sqlx::Row;
                let call_id: String = row.try_get("call_id")?;
                let caller: String = row.try_get("caller")?;
                let hashed = crate::engine::survey::number_hash(key, &caller);
                sqlx::query("UPDATE calls SET caller = $1 WHERE call_id = $2")
                    .bind(hashed)
                    .bind(call_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            total += rows.len() as u64;
            if (rows.len() as i64) < CALLER_BATCH {
                break;
            }
        }
        Ok(total)
    }
}

/// Runs `drop_expired_numbers` and `hash_old_callers` every `every` (the first run right away) until the task is
/// aborted. A failed run is logged and counted (`ccswitch_survey_retention_errors_total`)
/// and tried again at the next tick.
pub fn spawn_retention(
    store: Store,
    every: Duration,
    retention_ms: u64,
    key: Vec<u8>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let clock = crate::clock::Clock::new();
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = clock.now();
            let dropped = match store.drop_expired_numbers(now, retention_ms).await {
                Ok(n) => store
                    .hash_old_callers(now, retention_ms, &key)
                    .await
                    .map(|calls| n + calls),
                Err(e) => Err(e),
            };
            match dropped {
                Ok(n) => {
                    metrics::counter!("ccswitch_survey_numbers_dropped_total").increment(n);
                    if n > 0 {
                        tracing::info!(
                            rows = n,
                            "retention: dropped caller numbers past retention"
                        );
                    }
                }
                Err(e) => {
                    metrics::counter!("ccswitch_survey_retention_errors_total").increment(1);
                    tracing::warn!(error = %e, "retention: could not drop expired numbers");
                }
            }
        }
    })
}
