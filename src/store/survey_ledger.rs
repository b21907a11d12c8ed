//! What the engine's survey ledger starts from (issue 8): the number-hash key the switch
//! keeps for itself, the latest send time of recent surveys per number hash, and every
//! opted-out number hash. Read once at startup; the engine keeps its ledger up to date from
//! then on (its own decisions, and `Command::SurveyOptOut` from the survey service).

use super::queries::millis;
use super::{ms_to_db, Store, StoreError};
use crate::engine::survey::LedgerFacts;
use crate::engine::time::Millis;
use sqlx::Row;

/// `ccswitch_settings.name` of the number-hash key.
const KEY_SETTING: &str = "number_hash_key";

/// Bytes of a new number-hash key (HMAC-SHA256 takes any length; 32 is its block strength).
const KEY_BYTES: usize = 32;

impl Store {
    /// The key of `survey::number_hash`: created at random (32 bytes, stored as hex in
    /// `ccswitch_settings`) the first time, the same one on every later start. Safe when
    /// several processes start at once: the first insert wins and everyone reads it back.
    /// A stored value that is not hex of at least 16 bytes is an error: replacing it would
    /// silently forget every opt-out and frequency cap.
    pub async fn number_hash_key(&self) -> Result<Vec<u8>, StoreError> {
        let fresh = hex::encode(rand::random::<[u8; KEY_BYTES]>());
        sqlx::query(
            "INSERT INTO ccswitch_settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(KEY_SETTING)
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM ccswitch_settings WHERE name = $1")
            .bind(KEY_SETTING)
            .fetch_one(&self.pool)
            .await?;
        let value: String = row.try_get("value")?;
        match hex::decode(value.trim()) {
            Ok(key) if key.len() >= 16 => Ok(key),
            _ => Err(StoreError::Corrupt(format!(
                "ccswitch_settings {KEY_SETTING} is not a hex key of at least 16 bytes; \
                 restore it (a new key would forget every opt-out and frequency cap)"
            ))),
        }
    }

    /// What fills the engine's survey ledger at startup: per number hash, the latest
    /// `send_at` of the surveys due at or after `since` (give `now - frequency_cap_days`),
    /// and every opted-out number hash. Hashes only: rows whose number retention dropped
    /// count the same.
    pub async fn survey_ledger(&self, since: Millis) -> Result<LedgerFacts, StoreError> {
        let rows = sqlx::query(
            "SELECT number_hash, MAX(send_at) AS last_send_at FROM surveys \
             WHERE number_hash IS NOT NULL AND send_at IS NOT NULL AND send_at >= $1 \
             GROUP BY number_hash ORDER BY number_hash",
        )
        .bind(ms_to_db(since.as_u64()))
        .fetch_all(&self.pool)
        .await?;
        let mut last_sent = Vec::with_capacity(rows.len());
        for row in &rows {
            let hash: String = row.try_get("number_hash")?;
            let at: i64 = row.try_get("last_send_at")?;
            last_sent.push((hash, millis(at)));
        }
        let rows = sqlx::query("SELECT number_hash FROM sms_opt_outs ORDER BY number_hash")
            .fetch_all(&self.pool)
            .await?;
        let opted_out = rows
            .iter()
            .map(|r| r.try_get::<String, _>("number_hash"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LedgerFacts {
            last_sent,
            opted_out,
        })
    }
}
