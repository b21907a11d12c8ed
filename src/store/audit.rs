//! The audit log (migration 0005): one row per supervisor action, sign-in and token change.
//! Written by `Store::audit`; never updated or deleted by ccswitch.

use super::{ms_to_db, text, Store, StoreError};
use crate::engine::Millis;
use sqlx::Row;

/// Longest text kept in any audit column (a failed sign-in's user name is the client's).
const MAX_FIELD_CHARS: usize = 512;

/// One audited action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: Millis,
    /// A users.toml user, `token:NAME`, `cli`, or the name tried at a failed sign-in.
    pub user: String,
    /// The client address, or `cli`.
    pub source: String,
    /// Dotted verb, e.g. `session.sign_in`, `token.create`, `agent.set_state`,
    /// `recording.download`, `call.unmask`.
    pub action: String,
    /// What it was done to: an agent, a call id, a token name.
    pub target: Option<String>,
    pub detail: Option<String>,
}

fn bounded(s: &str) -> String {
    let s = text(s);
    match s.char_indices().nth(MAX_FIELD_CHARS) {
        Some((i, _)) => s[..i].to_string(),
        None => s.into_owned(),
    }
}

impl Store {
    /// Appends `entry` to the audit log (text fields cut to 512 characters, NUL replaced).
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at, user_name, source, action, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(ms_to_db(entry.at.as_u64()))
        .bind(bounded(&entry.user))
        .bind(bounded(&entry.source))
        .bind(bounded(&entry.action))
        .bind(entry.target.as_deref().map(bounded))
        .bind(entry.detail.as_deref().map(bounded))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest `limit` audit entries, newest first.
    pub async fn audit_entries(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, user_name, source, action, target, detail FROM audit_log \
             ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: Millis(r.try_get::<i64, _>(0)?.max(0) as u64),
                    user: r.try_get(1)?,
                    source: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
