//! API tokens (migration 0005): name, role, the token's SHA-256, when made and last used.
//! The token text is never stored (see `auth::token`).

use super::{ms_to_db, Store, StoreError};
use crate::auth::Role;
use crate::engine::Millis;
use sqlx::any::AnyRow;
use sqlx::Row;

/// `last_used_at` is written at most this often per token (not on every request).
const LAST_USED_RESOLUTION_MS: u64 = 60_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub name: String,
    pub role: Role,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token named `{0}` exists already (revoke it first: ccswitch user revoke {0})")]
    NameTaken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn row(r: &AnyRow) -> Result<ApiTokenRow, sqlx::Error> {
    let role: String = r.try_get(1)?;
    Ok(ApiTokenRow {
        name: r.try_get(0)?,
        role: role
            .parse()
            .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
        created_at: Millis(r.try_get::<i64, _>(2)?.max(0) as u64),
        last_used_at: r
            .try_get::<Option<i64>, _>(3)?
            .map(|v| Millis(v.max(0) as u64)),
    })
}

impl Store {
    /// Stores a new token's hash under `name`.
    pub async fn create_api_token(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
        now: Millis,
    ) -> Result<(), TokenError> {
        let inserted = sqlx::query(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.to_string())
        .bind(role.as_str().to_string())
        .bind(token_hash.to_string())
        .bind(ms_to_db(now.as_u64()))
        .execute(&self.pool)
        .await
        .map_err(StoreError::from)?
        .rows_affected();
        if inserted == 0 {
            return Err(TokenError::NameTaken(name.to_string()));
        }
        Ok(())
    }

    /// The token whose hash is `token_hash`, marking it used at `now` (at most once a minute).
    pub async fn use_api_token(
        &self,
        token_hash: &str,
        now: Millis,
    ) -> Result<Option<ApiTokenRow>, StoreError> {
        let found = sqlx::query(
            "SELECT name, role, created_at, last_used_at FROM api_tokens WHERE token_hash = $1",
        )
        .bind(token_hash.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(found) = found else { return Ok(None) };
        let token = row(&found)?;
        let stale = token
            .last_used_at
            .is_none_or(|t| now.as_u64() >= t.as_u64() + LAST_USED_RESOLUTION_MS);
        if stale {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE name = $2")
                .bind(ms_to_db(now.as_u64()))
                .bind(token.name.clone())
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(token))
    }

    /// Every token, by name.
    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, role, created_at, last_used_at FROM api_tokens ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    /// Deletes the token `name`; false when there was none.
    pub async fn revoke_api_token(&self, name: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM api_tokens WHERE name = $1")
            .bind(name.to_string())
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }
}
