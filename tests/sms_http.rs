//! The HTTP SMS gateway against a real HTTP receiver on 127.0.0.1 (axum): what it sends,
//! and how it treats 2xx, 5xx, 4xx, garbage answers, refused connections and silence.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use ccswitch::config::sms::{HttpConfig, PasswordSource};
use ccswitch::sms::http::HttpGateway;
use ccswitch::sms::{SmsEvent, SmsMessage};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

const TOKEN: &str = "tok-3f9a8b";
/// Every wait for an event is bounded by this.
const EVENT_WAIT: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
struct Seen {
    authorization: Option<String>,
    idempotency_key: Option<String>,
    content_type: Option<String>,
    body: serde_json::Value,
}

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answers in order; the last one repeats.
    script: Arc<Mutex<VecDeque<(StatusCode, String)>>>,
}

async fn answer(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let h = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<not text>").to_string())
    };
    r.seen.lock().unwrap().push(Seen {
        authorization: h("authorization"),
        idempotency_key: h("idempotency-key"),
        content_type: h("content-type"),
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    });
    let mut script = r.script.lock().unwrap();
    if script.len() > 1 {
        script.pop_front().unwrap()
    } else {
        script.front().cloned().expect("a scripted answer")
    }
}

/// Starts the receiver on an ephemeral 127.0.0.1 port; returns its URL.
async fn receiver(script: Vec<(StatusCode, &str)>) -> (String, Receiver) {
    let r = Receiver::default();
    r.script
        .lock()
        .unwrap()
        .extend(script.into_iter().map(|(s, b)| (s, b.to_string())));
    let app = Router::new()
        .route("/v1/messages", post(answer))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}/v1/messages"), r)
}

fn config(url: &str, dir: &tempfile::TempDir, timeout: Duration) -> HttpConfig {
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    HttpConfig {
        url: url.to_string(),
        token: PasswordSource::File(token),
        webhook_secret: PasswordSource::Env("UNUSED_IN_THIS_TEST".into()),
        timeout,
        max_attempts: 3,
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(80),
        webhook_window: Duration::from_secs(300),
        webhook_max_body: 16_384,
    }
}

fn message(id: u64) -> SmsMessage {
    SmsMessage {
        id,
        to: "+8613800138000".into(),
        text: "感谢致电 Example Co. Reply 1-5.".into(),
    }
}

async fn next_event(events: &mut UnboundedReceiver<SmsEvent>) -> SmsEvent {
    tokio::time::timeout(EVENT_WAIT, events.recv())
        .await
        .expect("an event within the bound")
        .expect("gateway running")
}

#[tokio::test]
async fn posts_json_with_bearer_token_and_idempotency_key() {
    let (url, r) = receiver(vec![(StatusCode::OK, r#"{"message_id":"prov-77"}"#)]).await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut events) = HttpGateway::start(config(&url, &dir, Duration::from_secs(5))).unwrap();
    gw.send(message(4242)).unwrap();
    assert_eq!(
        next_event(&mut events).await,
        SmsEvent::Submitted {
            id: 4242,
            gateway_ids: vec!["prov-77".into()]
        }
    );
    let seen = r.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(seen[0].idempotency_key.as_deref(), Some("4242"));
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        seen[0].body,
        serde_json::json!({"id": "4242", "to": "+8613800138000", "text": "感谢致电 Example Co. Reply 1-5."})
    );
    // Several part ids are taken too.
    r.script.lock().unwrap()[0] = (StatusCode::ACCEPTED, r#"{"message_ids":["a","b"]}"#.into());
    gw.send(message(4243)).unwrap();
    assert_eq!(
        next_event(&mut events).await,
        SmsEvent::Submitted {
            id: 4243,
            gateway_ids: vec!["a".into(), "b".into()]
        }
    );
    gw.stop(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn server_error_then_ok_is_one_submitted_after_a_retry() {
    let (url, r) = receiver(vec![
        (StatusCode::INTERNAL_SERVER_ERROR, "database down"),
        (StatusCode::OK, r#"{"message_id":"prov-1"}"#),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut events) = HttpGateway::start(config(&url, &dir, Duration::from_secs(5))).unwrap();
    gw.send(message(7)).unwrap();
    assert_eq!(
        next_event(&mut events).await,
        SmsEvent::Submitted {
            id: 7,
            gateway_ids: vec!["prov-1".into()]
        }
    );
    let seen = r.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one retry");
    // The resend carries the same idempotency key, so the provider can drop a duplicate.
    assert!(seen
        .iter()
        .all(|s| s.idempotency_key.as_deref() == Some("7")));
    gw.stop(Duration::from_secs(2)).await;
    // Exactly one event: nothing else was reported.
    let after = tokio::time::timeout(EVENT_WAIT, events.recv()).await;
    assert_eq!(after, Ok(None));
}

#[tokio::test]
async fn client_error_is_a_permanent_failure_without_retry() {
    let (url, r) = receiver(vec![(
        StatusCode::BAD_REQUEST,
        r#"{"error":"invalid destination"}"#,
    )])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut events) = HttpGateway::start(config(&url, &dir, Duration::from_secs(5))).unwrap();
    gw.send(message(8)).unwrap();
    match next_event(&mut events).await {
        SmsEvent::Failed {
            id: 8,
            permanent: true,
            reason,
        } => {
            assert!(reason.contains("400"), "{reason}");
            assert!(reason.contains("invalid destination"), "{reason}");
            assert!(!reason.contains(TOKEN), "the token is never in a reason");
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert_eq!(r.seen.lock().unwrap().len(), 1, "no retry after a 4xx");
}

#[tokio::test]
async fn garbage_answers_are_retried_then_failed_with_the_reason() {
    let (url, r) = receiver(vec![(StatusCode::OK, "<html>gateway says hi</html>")]).await;
    let dir = tempfile::tempdir().unwrap();
    let (gw, mut events) = HttpGateway::start(config(&url, &dir, Duration::from_secs(5))).unwrap();
    gw.send(message(9)).unwrap();
    match next_event(&mut events).await {
        SmsEvent::Failed {
            id: 9,
            permanent: false,
            reason,
        } => {
            assert!(reason.contains("3 attempts failed"), "{reason}");
            assert!(reason.contains("without a message id"), "{reason}");
            assert!(reason.contains("gateway says hi"), "{reason}");
        }
        other => panic!("expected a temporary failure, got {other:?}"),
    }
    assert_eq!(r.seen.lock().unwrap().len(), 3, "max_attempts tries");
}

#[tokio::test]
async fn refused_connection_is_retried_then_failed() {
    // A port that was just free: nothing listens on it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/messages");
    let (gw, mut events) = HttpGateway::start(config(&url, &dir, Duration::from_secs(5))).unwrap();
    gw.send(message(10)).unwrap();
    match next_event(&mut events).await {
        SmsEvent::Failed {
            id: 10,
            permanent: false,
            reason,
        } => assert!(reason.contains("cannot connect"), "{reason}"),
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}

#[tokio::test]
async fn silent_server_times_out_and_never_hangs() {
    // Accepts connections, reads nothing, answers nothing; keeps them open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let held = accepted.clone();
    let server = tokio::spawn(async move {
        for _ in 0..10 {
            match listener.accept().await {
                Ok((sock, _)) => held.lock().unwrap().push(sock),
                Err(_) => return,
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/v1/messages");
    let (gw, mut events) =
        HttpGateway::start(config(&url, &dir, Duration::from_millis(300))).unwrap();
    gw.send(message(11)).unwrap();
    match next_event(&mut events).await {
        SmsEvent::Failed {
            id: 11,
            permanent: false,
            reason,
        } => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("expected a timeout failure, got {other:?}"),
    }
    assert_eq!(accepted.lock().unwrap().len(), 3, "one connection per try");
    server.abort();
}

#[tokio::test]
async fn bad_messages_and_missing_token_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        "http://127.0.0.1:9/v1/messages",
        &dir,
        Duration::from_secs(1),
    );
    let (gw, _events) = HttpGateway::start(cfg.clone()).unwrap();
    let mut bad = message(1);
    bad.to = "13800138000".into();
    assert!(gw.send(bad).is_err());
    let mut empty = message(2);
    empty.text.clear();
    assert!(gw.send(empty).is_err());
    let mut no_token = cfg;
    no_token.token = PasswordSource::Env("CCSWITCH_TEST_NO_SUCH_VARIABLE".into());
    let err = HttpGateway::start(no_token).unwrap_err();
    assert!(err.contains("CCSWITCH_TEST_NO_SUCH_VARIABLE"), "{err}");
}
