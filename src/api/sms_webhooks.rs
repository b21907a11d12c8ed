//! `POST /sms/inbound` (replies) and `POST /sms/status` (delivery reports) from the HTTP SMS
//! provider. Each request is checked by `WebhookVerifier` (HMAC-SHA256 over
//! `"<timestamp>.<body>"` in `X-Signature`, unix seconds in `X-Timestamp`, within the
//! window, not seen before): 401 otherwise, 413 for a body over `webhook_max_body`, 400 for
//! a body that is not the expected JSON. A verified request is handed to the survey service
//! and answered 200 once stored (503 when it could not be: the provider retries).
//! A replayed request is refused (401) and changes nothing; a reply stored once is never
//! stored twice (its dedupe key is the provider's `id`/`message_id` field, or a digest of
//! timestamp and body).

use crate::clock::Clock;
use crate::sms::http::{parse_inbound, parse_status, WebhookError, WebhookVerifier};
use crate::surveys::SurveyHandle;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

pub const TIMESTAMP_HEADER: &str = "X-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Signature";

/// What the webhook routes need.
#[derive(Clone)]
pub struct SurveyWebhooks {
    pub service: SurveyHandle,
    pub verifier: Arc<Mutex<WebhookVerifier>>,
    pub clock: Clock,
    /// Bodies over this are refused (413) before they are read in full.
    pub max_body: usize,
}

#[derive(Clone, Copy)]
enum Kind {
    Inbound,
    Status,
}

pub(super) fn router(webhooks: Option<SurveyWebhooks>) -> Router {
    let Some(w) = webhooks else {
        return Router::new();
    };
    // Room above the limit so the verifier sees an oversized body and says so (413 either way).
    let limit = w.max_body.saturating_add(1);
    Router::new()
        .route(
            "/sms/inbound",
            post(|s: State<SurveyWebhooks>, h: HeaderMap, b: Bytes| handle(Kind::Inbound, s, h, b)),
        )
        .route(
            "/sms/status",
            post(|s: State<SurveyWebhooks>, h: HeaderMap, b: Bytes| handle(Kind::Status, s, h, b)),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(w)
}

fn rejected(status: StatusCode, why: String) -> (StatusCode, String) {
    metrics::counter!("ccswitch_sms_webhook_rejected_total").increment(1);
    tracing::warn!(status = status.as_u16(), %why, "SMS webhook refused");
    (status, why)
}

async fn handle(
    kind: Kind,
    State(w): State<SurveyWebhooks>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let ts = header(TIMESTAMP_HEADER);
    let sig = header(SIGNATURE_HEADER);
    let now_s = w.clock.now().as_u64() / 1000;
    let verified = {
        let mut v = w.verifier.lock().unwrap_or_else(|e| e.into_inner());
        v.verify(&ts, &sig, &body, now_s)
    };
    if let Err(e) = verified {
        let status = match e {
            WebhookError::TooLarge(..) => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        return rejected(status, e.to_string());
    }
    let event = match kind {
        Kind::Inbound => parse_inbound(&body),
        Kind::Status => parse_status(&body),
    };
    let event = match event {
        Ok(ev) => ev,
        Err(e) => return rejected(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let dedupe_key = match kind {
        Kind::Inbound => Some(dedupe_key(&ts, &body)),
        Kind::Status => None,
    };
    match w.service.webhook(event, dedupe_key).await {
        Ok(()) => (StatusCode::OK, "ok".into()),
        Err(e) => {
            tracing::error!(error = %e, "SMS webhook not stored");
            (StatusCode::SERVICE_UNAVAILABLE, e)
        }
    }
}

/// The provider's own message id when the body has one (`id` or `message_id`), so a resend
/// with a new timestamp is still the same reply; else a digest of timestamp and body.
fn dedupe_key(ts: &str, body: &[u8]) -> String {
    let id = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["id", "message_id"].iter().find_map(|k| match &v[k] {
                serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        });
    match id {
        Some(id) => format!("http:id:{}", id.chars().take(200).collect::<String>()),
        None => {
            let mut h = Sha256::new();
            h.update(ts.as_bytes());
            h.update(b".");
            h.update(body);
            format!("http:{}", hex::encode(h.finalize()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_key_prefers_the_provider_id() {
        assert_eq!(
            dedupe_key("1", br#"{"id":"abc","from":"+86","text":"5"}"#),
            "http:id:abc"
        );
        assert_eq!(dedupe_key("1", br#"{"message_id":7}"#), "http:id:7");
        let a = dedupe_key("1", br#"{"from":"+86","text":"5"}"#);
        let b = dedupe_key("2", br#"{"from":"+86","text":"5"}"#);
        assert!(a.starts_with("http:") && a != b);
    }
}
