//! The HTTP gateway: a provider's JSON API for sending, and its signed webhooks for replies
//! and delivery reports.
//!
//! Sending: each text is one `POST` of `{"id", "to", "text"}` with a bearer token and an
//! `Idempotency-Key` (the message id), so a provider that honours it drops a resend. 5xx,
//! 408, 429, connection errors, timeouts and 2xx answers without a readable message id are
//! retried with exponential backoff up to `max_attempts`; other 4xx answers fail the text at
//! once. A text whose answer never came is sent again, so without the provider's idempotency
//! it may reach the handset twice.
//!
//! Webhooks: `WebhookVerifier` checks a request's signature, timestamp and freshness, and
//! `parse_inbound` / `parse_status` turn its body into `SmsEvent`s. They are plain functions
//! fed the headers, the body and `now`; the HTTP routes that call them come with the API.

use super::{check_e164, SmsError, SmsEvent, SmsMessage};
use crate::config::sms::HttpConfig;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// A secret (token, webhook key); never printed.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

/// The header carrying the message id, so the provider can drop a resend.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// A running HTTP gateway. Dropping it stops the gateway task and every send in flight.
pub struct HttpGateway {
    requests: mpsc::UnboundedSender<SmsMessage>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for HttpGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpGateway").finish_non_exhaustive()
    }
}

impl HttpGateway {
    /// Reads the token from its configured source, builds the HTTPS client and starts the
    /// gateway task. Must run inside a tokio runtime.
    pub fn start(
        cfg: HttpConfig,
    ) -> Result<(HttpGateway, mpsc::UnboundedReceiver<SmsEvent>), String> {
        let token = cfg.token.read("http.token")?;
        if token.is_empty() || token.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err("the HTTP gateway token must be non-empty printable ASCII".into());
        }
        // reqwest is built with `rustls-no-provider`: ring is our provider. Installing it
        // fails harmlessly when a provider is already the process default.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.timeout)
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP gateway client: {e}"))?;
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let sender = Sender {
            client,
            url: cfg.url.clone(),
            token: Secret(token),
            max_attempts: cfg.max_attempts,
            backoff_min: cfg.backoff_min,
            backoff_max: cfg.backoff_max,
        };
        let task = tokio::spawn(run(sender, req_rx, ev_tx));
        Ok((
            HttpGateway {
                requests: req_tx,
                task: Some(task),
            },
            ev_rx,
        ))
    }

    /// Checks the message and queues it; it is sent at once, concurrently with others.
    /// Errors are about the message itself (bad number, empty text) or a stopped gateway.
    pub fn send(&self, msg: SmsMessage) -> Result<(), SmsError> {
        check_e164(&msg.to)?;
        if msg.text.is_empty() {
            return Err(SmsError::EmptyText);
        }
        self.requests.send(msg).map_err(|_| SmsError::Stopped)
    }

    /// Stops taking messages and waits at most `grace` for the sends in flight (each
    /// reports its outcome), then abandons the rest.
    pub async fn stop(mut self, grace: Duration) {
        let (closed, _) = mpsc::unbounded_channel();
        // Dropping our sender ends the task's intake; it then drains what it has.
        drop(std::mem::replace(&mut self.requests, closed));
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for HttpGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Takes messages and sends each in its own task (aborted with this one).
async fn run(
    sender: Sender,
    mut requests: mpsc::UnboundedReceiver<SmsMessage>,
    events: mpsc::UnboundedSender<SmsEvent>,
) {
    let sender = std::sync::Arc::new(sender);
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            msg = requests.recv() => match msg {
                Some(msg) => {
                    let sender = sender.clone();
                    let events = events.clone();
                    in_flight.spawn(async move {
                        let _ = events.send(sender.deliver(&msg).await);
                    });
                }
                None => break,
            },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// The JSON body of one send.
#[derive(serde::Serialize)]
struct SendBody<'a> {
    id: String,
    to: &'a str,
    text: &'a str,
}

/// A 2xx answer: the provider's id for the text, or one per part.
#[derive(Deserialize)]
struct SendAnswer {
    message_id: Option<String>,
    message_ids: Option<Vec<String>>,
}

/// The outcome of one try.
enum Attempt {
    Accepted(Vec<String>),
    /// Worth another try (5xx, 408, 429, transport error, unreadable answer).
    Temporary(String),
    /// The provider refused the text; another try would be refused too.
    Permanent(String),
}

struct Sender {
    client: reqwest::Client,
    url: String,
    token: Secret,
    max_attempts: u32,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl Sender {
    /// Tries up to `max_attempts` times with backoff; returns `Submitted` or `Failed`.
    async fn deliver(&self, msg: &SmsMessage) -> SmsEvent {
        let mut wait = self.backoff_min;
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            match self.try_once(msg).await {
                Attempt::Accepted(gateway_ids) => {
                    metrics::counter!("ccswitch_sms_http_submitted_total").increment(1);
                    return SmsEvent::Submitted {
                        id: msg.id,
                        gateway_ids,
                    };
                }
                Attempt::Permanent(reason) => {
                    metrics::counter!("ccswitch_sms_http_failed_total").increment(1);
                    return SmsEvent::Failed {
                        id: msg.id,
                        permanent: true,
                        reason,
                    };
                }
                Attempt::Temporary(reason) => {
                    metrics::counter!("ccswitch_sms_http_retries_total").increment(1);
                    tracing::warn!(id = msg.id, attempt, %reason, "SMS HTTP send failed");
                    last = reason;
                }
            }
            if attempt < self.max_attempts {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(self.backoff_max);
            }
        }
        metrics::counter!("ccswitch_sms_http_failed_total").increment(1);
        SmsEvent::Failed {
            id: msg.id,
            permanent: false,
            reason: format!("{} attempts failed; last: {last}", self.max_attempts),
        }
    }

    async fn try_once(&self, msg: &SmsMessage) -> Attempt {
        let body = SendBody {
            id: msg.id.to_string(),
            to: &msg.to,
            text: &msg.text,
        };
        let body = match serde_json::to_vec(&body) {
            Ok(b) => b,
            Err(e) => return Attempt::Permanent(format!("cannot encode the request: {e}")),
        };
        let sent = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token.0)
            .header(IDEMPOTENCY_HEADER, msg.id.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            // `without_url`: the URL is configuration, and the error stays short.
            Err(e) => return Attempt::Temporary(transport_reason(e.without_url())),
        };
        let status = resp.status();
        // The answer is read whatever the status, so the connection can be reused; its
        // text goes into the reason, capped.
        let text = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Attempt::Temporary(transport_reason(e.without_url())),
        };
        let excerpt = excerpt(&text);
        if status.is_success() {
            return match serde_json::from_slice::<SendAnswer>(&text) {
                Ok(SendAnswer {
                    message_id: Some(id),
                    ..
                }) if !id.is_empty() => Attempt::Accepted(vec![id]),
                Ok(SendAnswer {
                    message_ids: Some(ids),
                    ..
                }) if !ids.is_empty() && ids.iter().all(|i| !i.is_empty()) => {
                    Attempt::Accepted(ids)
                }
                _ => {
                    Attempt::Temporary(format!("answer {status} without a message id: {excerpt:?}"))
                }
            };
        }
        let reason = format!("answer {status}: {excerpt:?}");
        if status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            Attempt::Temporary(reason)
        } else {
            Attempt::Permanent(reason)
        }
    }
}

fn transport_reason(e: reqwest::Error) -> String {
    if e.is_timeout() {
        format!("timed out: {e}")
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        format!("transport error: {e}")
    }
}

/// At most 200 characters of an answer, for logs and reasons.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(200).collect()
}

// ---- webhooks ------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("body of {0} bytes is over the limit of {1}")]
    TooLarge(usize, usize),
    #[error("timestamp header {0:?} is not whole seconds since 1970")]
    BadTimestamp(String),
    #[error("timestamp {ts} is more than {window_s} s away from now ({now})")]
    Stale { ts: u64, now: u64, window_s: u64 },
    #[error("signature header is not 64 hex digits")]
    MalformedSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("request already seen (replay)")]
    Replay,
    #[error("too many recent requests to remember; try again later")]
    Busy,
    #[error("body is not the expected JSON: {0}")]
    BadJson(String),
    #[error("field {0} is empty")]
    EmptyField(&'static str),
    #[error("status {0:?} is not one this gateway knows")]
    UnknownStatus(String),
}

/// Checks signed webhooks: HMAC-SHA256 with the shared secret over `"<timestamp>.<body>"`,
/// hex in the signature header (an optional `sha256=` prefix is accepted), the timestamp
/// (unix seconds) within `window` of `now`, and no signature accepted twice within the
/// window. Signatures are remembered only once they verify, so unsigned junk cannot fill
/// the memory; at most `max_remembered` are kept, and past that new requests are refused
/// (`Busy`) rather than let a replay through.
pub struct WebhookVerifier {
    secret: Secret,
    window_s: u64,
    max_body: usize,
    max_remembered: usize,
    /// Signature -> its timestamp; `order` holds the same in arrival order for expiry.
    seen: HashMap<[u8; 32], u64>,
    order: VecDeque<([u8; 32], u64)>,
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("window_s", &self.window_s)
            .field("max_body", &self.max_body)
            .field("remembered", &self.seen.len())
            .finish_non_exhaustive()
    }
}

/// Signatures remembered by default (a busy provider's five minutes of webhooks).
pub const DEFAULT_MAX_REMEMBERED: usize = 100_000;

impl WebhookVerifier {
    pub fn new(secret: String, window: Duration, max_body: usize, max_remembered: usize) -> Self {
        WebhookVerifier {
            secret: Secret(secret),
            window_s: window.as_secs(),
            max_body,
            max_remembered,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// From the `[http]` config: reads the webhook secret from its source.
    pub fn from_config(cfg: &HttpConfig) -> Result<Self, String> {
        let secret = cfg.webhook_secret.read("http.webhook_secret")?;
        if secret.is_empty() {
            return Err("the webhook secret is empty".into());
        }
        Ok(Self::new(
            secret,
            cfg.webhook_window,
            cfg.webhook_max_body,
            DEFAULT_MAX_REMEMBERED,
        ))
    }

    /// Accepts the request once (`Ok`), or says why not. `now` is unix seconds.
    pub fn verify(
        &mut self,
        timestamp_header: &str,
        signature_header: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(), WebhookError> {
        if body.len() > self.max_body {
            return Err(WebhookError::TooLarge(body.len(), self.max_body));
        }
        let ts_text = timestamp_header.trim();
        let ts: u64 = match ts_text.parse() {
            Ok(t) if !ts_text.starts_with('+') => t,
            _ => return Err(WebhookError::BadTimestamp(excerpt(ts_text.as_bytes()))),
        };
        if ts.abs_diff(now) > self.window_s {
            return Err(WebhookError::Stale {
                ts,
                now,
                window_s: self.window_s,
            });
        }
        let sig_hex = signature_header.trim();
        let sig_hex = sig_hex.strip_prefix("sha256=").unwrap_or(sig_hex);
        let mut sig = [0u8; 32];
        hex::decode_to_slice(sig_hex, &mut sig).map_err(|_| WebhookError::MalformedSignature)?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.secret.0.as_bytes())
            .map_err(|_| WebhookError::BadSignature)?;
        mac.update(ts_text.as_bytes());
        mac.update(b".");
        mac.update(body);
        // Constant-time comparison.
        mac.verify_slice(&sig)
            .map_err(|_| WebhookError::BadSignature)?;
        self.forget_older_than(now.saturating_sub(self.window_s));
        if self.seen.contains_key(&sig) {
            return Err(WebhookError::Replay);
        }
        if self.seen.len() >= self.max_remembered {
            return Err(WebhookError::Busy);
        }
        self.seen.insert(sig, ts);
        self.order.push_back((sig, ts));
        Ok(())
    }

    /// Drops signatures whose timestamp is before `oldest`: those requests are refused as
    /// stale anyway. Timestamps arrive roughly in order; a late-expiring entry at the front
    /// only delays the ones behind it, never lets a replay in.
    fn forget_older_than(&mut self, oldest: u64) {
        while let Some(&(sig, ts)) = self.order.front() {
            if ts >= oldest {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&sig);
        }
    }

    /// Signatures remembered now.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

/// The signature a provider would send: hex HMAC-SHA256 over `"<timestamp>.<body>"`.
pub fn sign_webhook(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[derive(Deserialize)]
struct InboundBody {
    from: String,
    to: String,
    text: String,
}

#[derive(Deserialize)]
struct StatusBody {
    message_id: String,
    status: String,
    #[serde(default)]
    error: Option<String>,
}

/// A reply webhook body `{"from", "to", "text"}` -> `SmsEvent::Inbound`. Extra fields are
/// ignored (providers add their own).
pub fn parse_inbound(body: &[u8]) -> Result<SmsEvent, WebhookError> {
    let b: InboundBody =
        serde_json::from_slice(body).map_err(|e| WebhookError::BadJson(e.to_string()))?;
    if b.from.trim().is_empty() {
        return Err(WebhookError::EmptyField("from"));
    }
    Ok(SmsEvent::Inbound {
        from: b.from,
        to: b.to,
        text: b.text,
    })
}

/// A delivery report body `{"message_id", "status", "error"?}` ->
/// `SmsEvent::DeliveryReceipt`, its `state` in the SMPP receipt vocabulary so the outbox
/// treats both gateways alike: delivered = DELIVRD; undeliverable/undelivered/failed =
/// UNDELIV; expired = EXPIRED; rejected = REJECTD; deleted = DELETED; accepted/queued =
/// ACCEPTD; sent/enroute = ENROUTE; unknown = UNKNOWN (any case).
pub fn parse_status(body: &[u8]) -> Result<SmsEvent, WebhookError> {
    let b: StatusBody =
        serde_json::from_slice(body).map_err(|e| WebhookError::BadJson(e.to_string()))?;
    if b.message_id.trim().is_empty() {
        return Err(WebhookError::EmptyField("message_id"));
    }
    let state = match b.status.trim().to_ascii_lowercase().as_str() {
        "delivered" => "DELIVRD",
        "undeliverable" | "undelivered" | "failed" => "UNDELIV",
        "expired" => "EXPIRED",
        "rejected" => "REJECTD",
        "deleted" => "DELETED",
        "accepted" | "queued" => "ACCEPTD",
        "sent" | "enroute" => "ENROUTE",
        "unknown" => "UNKNOWN",
        _ => return Err(WebhookError::UnknownStatus(excerpt(b.status.as_bytes()))),
    };
    Ok(SmsEvent::DeliveryReceipt {
        gateway_id: b.message_id,
        delivered: state == "DELIVRD",
        state: state.to_string(),
        error: b.error.filter(|e| !e.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec-test";
    const NOW: u64 = 1_800_000_000;

    fn verifier() -> WebhookVerifier {
        WebhookVerifier::new(SECRET.into(), Duration::from_secs(300), 1024, 4)
    }

    fn signed(ts: u64, body: &[u8]) -> (String, String) {
        let ts = ts.to_string();
        let sig = sign_webhook(SECRET, &ts, body);
        (ts, sig)
    }

    #[test]
    fn good_signature_is_accepted_once() {
        let mut v = verifier();
        let body = br#"{"from":"+8613800138000","to":"10690000","text":"5"}"#;
        let (ts, sig) = signed(NOW - 10, body);
        assert_eq!(v.verify(&ts, &sig, body, NOW), Ok(()));
        assert_eq!(
            v.verify(&ts, &format!("sha256={sig}"), body, NOW),
            Err(WebhookError::Replay)
        );
        // A replay a minute later, still inside the window: refused too.
        assert_eq!(
            v.verify(&ts, &sig, body, NOW + 60),
            Err(WebhookError::Replay)
        );
    }

    #[test]
    fn bad_signature_is_refused() {
        let mut v = verifier();
        let body = br#"{"from":"+8613800138000","to":"10690000","text":"5"}"#;
        let (ts, sig) = signed(NOW, body);
        // Same signature, other body (a tampered "5" -> "1").
        let tampered = br#"{"from":"+8613800138000","to":"10690000","text":"1"}"#;
        assert_eq!(
            v.verify(&ts, &sig, tampered, NOW),
            Err(WebhookError::BadSignature)
        );
        // Same body, other timestamp (the signature covers it).
        let later = (NOW + 1).to_string();
        assert_eq!(
            v.verify(&later, &sig, body, NOW),
            Err(WebhookError::BadSignature)
        );
        // Signed with another key.
        let other = sign_webhook("another-secret", &ts, body);
        assert_eq!(
            v.verify(&ts, &other, body, NOW),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            v.verify(&ts, "not hex", body, NOW),
            Err(WebhookError::MalformedSignature)
        );
        assert_eq!(
            v.verify(&ts, &sig[..62], body, NOW),
            Err(WebhookError::MalformedSignature)
        );
        assert_eq!(v.remembered(), 0, "refused requests are not remembered");
        // The real one still goes through.
        assert_eq!(v.verify(&ts, &sig, body, NOW), Ok(()));
    }

    #[test]
    fn old_and_future_timestamps_are_refused() {
        let mut v = verifier();
        let body = b"{}";
        for ts in [NOW - 301, NOW + 301, 0] {
            let (t, sig) = signed(ts, body);
            assert!(
                matches!(
                    v.verify(&t, &sig, body, NOW),
                    Err(WebhookError::Stale { .. })
                ),
                "{ts}"
            );
        }
        for bad in [
            "",
            "abc",
            "-5",
            "+1800000000",
            "1.5",
            "99999999999999999999999",
        ] {
            let sig = sign_webhook(SECRET, bad, body);
            assert!(
                matches!(
                    v.verify(bad, &sig, body, NOW),
                    Err(WebhookError::BadTimestamp(_))
                ),
                "{bad:?}"
            );
        }
        let (t, sig) = signed(NOW - 300, body);
        assert_eq!(v.verify(&t, &sig, body, NOW), Ok(()));
    }

    #[test]
    fn replay_memory_expires_with_the_window_and_is_bounded() {
        let mut v = verifier();
        for i in 0..4u64 {
            let body = format!("{{\"n\":{i}}}");
            let (t, sig) = signed(NOW, body.as_bytes());
            assert_eq!(v.verify(&t, &sig, body.as_bytes(), NOW), Ok(()));
        }
        let (t, sig) = signed(NOW, b"{\"n\":4}");
        assert_eq!(
            v.verify(&t, &sig, b"{\"n\":4}", NOW),
            Err(WebhookError::Busy)
        );
        // Once the first four are past the window they are forgotten (and would be stale).
        let later = NOW + 301;
        let (t, sig) = signed(later, b"{\"n\":4}");
        assert_eq!(v.verify(&t, &sig, b"{\"n\":4}", later), Ok(()));
        assert_eq!(v.remembered(), 1);
    }

    #[test]
    fn oversized_body_is_refused_before_anything_else() {
        let mut v = verifier();
        let body = vec![b'x'; 1025];
        let (t, sig) = signed(NOW, &body);
        assert_eq!(
            v.verify(&t, &sig, &body, NOW),
            Err(WebhookError::TooLarge(1025, 1024))
        );
        let body = vec![b'x'; 1024];
        let (t, sig) = signed(NOW, &body);
        assert_eq!(v.verify(&t, &sig, &body, NOW), Ok(()));
    }

    #[test]
    fn inbound_and_status_bodies() {
        assert_eq!(
            parse_inbound(
                "{\"from\":\"+8613800138000\",\"to\":\"10690000\",\"text\":\"５ 很好\",\"x\":1}"
                    .as_bytes()
            ),
            Ok(SmsEvent::Inbound {
                from: "+8613800138000".into(),
                to: "10690000".into(),
                text: "５ 很好".into()
            })
        );
        assert_eq!(
            parse_inbound(br#"{"from":" ","to":"1","text":"5"}"#),
            Err(WebhookError::EmptyField("from"))
        );
        assert!(matches!(
            parse_inbound(br#"{"from":"+86","text":"5"}"#),
            Err(WebhookError::BadJson(_))
        ));
        assert_eq!(
            parse_status(br#"{"message_id":"m-1","status":"Delivered"}"#),
            Ok(SmsEvent::DeliveryReceipt {
                gateway_id: "m-1".into(),
                delivered: true,
                state: "DELIVRD".into(),
                error: None
            })
        );
        assert_eq!(
            parse_status(br#"{"message_id":"m-2","status":"undeliverable","error":"absent"}"#),
            Ok(SmsEvent::DeliveryReceipt {
                gateway_id: "m-2".into(),
                delivered: false,
                state: "UNDELIV".into(),
                error: Some("absent".into())
            })
        );
        assert_eq!(
            parse_status(br#"{"message_id":"m-3","status":"teleported"}"#),
            Err(WebhookError::UnknownStatus("teleported".into()))
        );
        assert!(matches!(parse_status(b"[]"), Err(WebhookError::BadJson(_))));
        assert!(matches!(parse_status(b""), Err(WebhookError::BadJson(_))));
    }

    proptest! {
        #[test]
        fn arbitrary_requests_never_panic(
            ts in ".{0,24}",
            sig in ".{0,80}",
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            now in any::<u64>(),
        ) {
            let mut v = verifier();
            // Unsigned junk is never accepted.
            prop_assert!(v.verify(&ts, &sig, &body, now).is_err());
            let _ = parse_inbound(&body);
            let _ = parse_status(&body);
        }

        #[test]
        fn signed_requests_verify_once(
            body in proptest::collection::vec(any::<u8>(), 0..1024),
            skew in 0u64..=300,
        ) {
            let mut v = verifier();
            let (t, sig) = signed(NOW - skew, &body);
            prop_assert_eq!(v.verify(&t, &sig, &body, NOW), Ok(()));
            prop_assert_eq!(v.verify(&t, &sig, &body, NOW), Err(WebhookError::Replay));
        }
    }
}
