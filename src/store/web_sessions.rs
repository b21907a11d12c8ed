//! Browser sessions (migration 0007), so a restarted switch still knows its signed-in
//! browsers. Rows are keyed by the SHA-256 (hex) of the cookie value, never the value itself
//! (see `auth::session`); the role is not stored, it comes from users.toml at load.

use super::{ms_to_db, Store, StoreError};
use crate::engine::Millis;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSessionRow {
    /// SHA-256 of the cookie value, hex.
    pub session_hash: String,
    pub user: String,
    pub csrf_token: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub last_seen: Millis,
}

fn millis(r: &AnyRow, i: usize) -> Result<Millis, sqlx::Error> {
    Ok(Millis(r.try_get::<i64, _>(i)?.max(0) as u64))
}

fn row(r: &AnyRow) -> Result<WebSessionRow, sqlx::Error> {
    Ok(WebSessionRow {
        session_hash: r.try_get(0)?,
        user: r.try_get(1)?,
        csrf_token: r.try_get(2)?,
        created_at: millis(r, 3)?,
        expires_at: millis(r, 4)?,
        last_seen: millis(r, 5)?,
    })
}

impl Store {
    /// Stores a new session (at sign-in).
    pub async fn insert_web_session(&self, s: &WebSessionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO web_sessions \
             (session_hash, user_name, csrf_token, created_at, expires_at, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(s.session_hash.clone())
        .bind(s.user.clone())
        .bind(s.csrf_token.clone())
        .bind(ms_to_db(s.created_at.as_u64()))
        .bind(ms_to_db(s.expires_at.as_u64()))
        .bind(ms_to_db(s.last_seen.as_u64()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every session whose lifetime has not ended at `now`, oldest first.
    pub async fn unexpired_web_sessions(
        &self,
        now: Millis,
    ) -> Result<Vec<WebSessionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT session_hash, user_name, csrf_token, created_at, expires_at, last_seen \
             FROM web_sessions WHERE expires_at > $1 ORDER BY created_at, session_hash",
        )
        .bind(ms_to_db(now.as_u64()))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    /// Records that the session was used at `seen` (the caller limits how often).
    pub async fn touch_web_session(
        &self,
        session_hash: &str,
        seen: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE web_sessions SET last_seen = $1 WHERE session_hash = $2")
            .bind(ms_to_db(seen.as_u64()))
            .bind(session_hash.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes one session (sign-out, or dropped at load); false when there was none.
    pub async fn delete_web_session(&self, session_hash: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("DELETE FROM web_sessions WHERE session_hash = $1")
                .bind(session_hash.to_string())
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// Deletes every session whose lifetime has ended at `now`, or that was last used
    /// at or before `idle_before`; returns how many.
    pub async fn delete_expired_web_sessions(
        &self,
        now: Millis,
        idle_before: Millis,
    ) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1 OR last_seen <= $2")
                .bind(ms_to_db(now.as_u64()))
                .bind(ms_to_db(idle_before.as_u64()))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
