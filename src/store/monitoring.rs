//! Monitoring segments (migration 0008): `MonitorStarted` opens a `monitor_segments` row and
//! writes the audit log line (user = the supervisor, source "sip", action
//! "monitor.<mode>", target the call); `MonitorEnded` closes the supervisor's open segment
//! on that call. `MonitorRefused` (a monitoring code refused after authentication) is an
//! audit log line only (action "monitor.refused", target the agent dialled).

use super::queries::{millis, opt_millis};
use super::{ms_to_db, text, Store, StoreError, Tx};
use crate::engine::record::Record;
use crate::engine::time::Millis;
use sqlx::Row;

/// One supervisor's segment on a call, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct MonitorSegment {
    pub supervisor: String,
    pub agent: String,
    /// "listen", "whisper" or "barge".
    pub mode: String,
    /// UTC epoch milliseconds.
    pub started_at: u64,
    pub ended_at: Option<u64>,
    /// "supervisor_hung_up", "call_ended" or "mode_changed"; None while it runs.
    pub end_reason: Option<String>,
}

pub(super) async fn write(tx: &mut Tx, r: &Record) -> Result<(), sqlx::Error> {
    match r {
        Record::MonitorStarted {
            call_id,
            supervisor,
            agent,
            mode,
            at,
        } => {
            sqlx::query(
                "INSERT INTO monitor_segments (call_id, supervisor, agent, mode, started_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (call_id, supervisor, started_at, mode) DO NOTHING",
            )
            .bind(text(call_id).into_owned())
            .bind(text(supervisor).into_owned())
            .bind(text(agent).into_owned())
            .bind(text(mode).into_owned())
            .bind(ms_to_db(at.as_u64()))
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO audit_log (at, user_name, source, action, target, detail) \
                 VALUES ($1, $2, 'sip', $3, $4, $5)",
            )
            .bind(ms_to_db(at.as_u64()))
            .bind(text(supervisor).into_owned())
            .bind(format!("monitor.{}", text(mode)))
            .bind(text(call_id).into_owned())
            .bind(format!("agent {}", text(agent)))
            .execute(&mut **tx)
            .await?;
        }
        Record::MonitorRefused {
            user,
            agent,
            mode,
            reason,
            at,
        } => {
            sqlx::query(
                "INSERT INTO audit_log (at, user_name, source, action, target, detail) \
                 VALUES ($1, $2, 'sip', 'monitor.refused', $3, $4)",
            )
            .bind(ms_to_db(at.as_u64()))
            .bind(text(user).into_owned())
            .bind(text(agent).into_owned())
            .bind(format!("{} refused: {}", text(mode), text(reason)))
            .execute(&mut **tx)
            .await?;
        }
        Record::MonitorEnded {
            call_id,
            supervisor,
            at,
            reason,
        } => {
            sqlx::query(
                "UPDATE monitor_segments SET ended_at = $3, end_reason = $4 \
                 WHERE call_id = $1 AND supervisor = $2 AND ended_at IS NULL",
            )
            .bind(text(call_id).into_owned())
            .bind(text(supervisor).into_owned())
            .bind(ms_to_db(at.as_u64()))
            .bind(text(reason).into_owned())
            .execute(&mut **tx)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

impl Store {
    /// A call's monitoring segments, oldest first.
    pub async fn monitor_segments(&self, call_id: &str) -> Result<Vec<MonitorSegment>, StoreError> {
        let rows = sqlx::query(
            "SELECT supervisor, agent, mode, started_at, ended_at, end_reason \
             FROM monitor_segments WHERE call_id = $1 ORDER BY started_at, id",
        )
        .bind(call_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let started: Millis = millis(r.try_get("started_at")?);
            let ended: Option<Millis> = opt_millis(&r, "ended_at")?;
            out.push(MonitorSegment {
                supervisor: r.try_get("supervisor")?,
                agent: r.try_get("agent")?,
                mode: r.try_get("mode")?,
                started_at: started.as_u64(),
                ended_at: ended.map(|m| m.as_u64()),
                end_reason: r.try_get("end_reason")?,
            });
        }
        Ok(out)
    }
}
