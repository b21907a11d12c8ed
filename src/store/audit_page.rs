//! The audit log a page at a time, newest first, for `GET /api/v1/audit` (keyset on the row
//! id, which only grows).

use super::audit::AuditEntry;
use super::{Store, StoreError};
use crate::engine::Millis;
use sqlx::Row;

impl Store {
    /// Up to `limit` entries with an id below `before` (all when None), newest first, each
    /// with its id.
    pub async fn audit_page(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, user_name, source, action, target, detail FROM audit_log \
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>(0)?,
                    AuditEntry {
                        at: Millis(r.try_get::<i64, _>(1)?.max(0) as u64),
                        user: r.try_get(2)?,
                        source: r.try_get(3)?,
                        action: r.try_get(4)?,
                        target: r.try_get(5)?,
                        detail: r.try_get(6)?,
                    },
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
