//! The live view over HTTP: `GET /api/v1/live/snapshot` (JSON) and `GET /api/v1/live`
//! (WebSocket: a snapshot, then coalesced updates; see `crate::live::hub`). Both need the
//! `view_live` permission; a cookie-authenticated WebSocket must come from our own origin
//! (Origin, when sent, must match Host: browsers send it, and cookies ride along
//! cross-site otherwise).

use super::auth_routes::{perm, AuthState, Authorized, Via};
use super::problem::{types, Problem};
use crate::live::snapshot::*;
use crate::live::LiveHandle;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::time::Duration;
use tokio::sync::mpsc;

pub const SNAPSHOT_PATH: &str = "/api/v1/live/snapshot";
pub const LIVE_PATH: &str = "/api/v1/live";
/// Server pings this often.
pub const PING_SECS: u64 = 15;

#[derive(Clone)]
pub struct LiveState {
    pub auth: AuthState,
    pub live: LiveHandle,
}

impl FromRef<LiveState> for AuthState {
    fn from_ref(s: &LiveState) -> AuthState {
        s.auth.clone()
    }
}

/// The live routes, ready to merge into the API router.
pub fn router(auth: AuthState, live: LiveHandle) -> Router {
    Router::new()
        .route(SNAPSHOT_PATH, get(live_snapshot))
        .route(LIVE_PATH, get(live_ws))
        .with_state(LiveState { auth, live })
}

/// The OpenAPI description of the live routes (merged into the API document).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(live_snapshot, live_ws),
    components(schemas(
        Snapshot,
        TargetsView,
        Figures,
        QueueView,
        AgentCountsView,
        StaffingView,
        AgentView,
        AgentCallView,
        WaitingView,
        CallView,
        Alert,
        IntervalView
    )),
    tags((name = "live", description = "Wallboard: live snapshot and WebSocket feed"))
)]
pub struct LiveApiDoc;

fn unavailable() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        types::UNAVAILABLE,
        "Unavailable",
    )
    .detail("the live view is not running (the switch is stopping)")
}

/// Today's live view: queues, agents, waiting callers, calls, alerts, intervals.
#[utoipa::path(
    get,
    path = "/api/v1/live/snapshot",
    operation_id = "getLiveSnapshot",
    tag = "live",
    security(("session_cookie" = []), ("bearer_token" = [])),
    responses(
        (status = 200, description = "The live view now", body = Snapshot),
        (status = 401, description = "Not signed in (problem document)"),
        (status = 403, description = "The role may not view the live view (problem document)"),
        (status = 503, description = "The live view is not running (problem document)")
    )
)]
pub async fn live_snapshot(
    State(st): State<LiveState>,
    _caller: Authorized<perm::ViewLive>,
) -> Result<Json<Snapshot>, Problem> {
    st.live.snapshot().await.map(Json).ok_or_else(unavailable)
}

/// The `host[:port]` of an Origin header value (`scheme://host[:port]`).
fn origin_authority(origin: &str) -> Option<&str> {
    let (_, rest) = origin.split_once("://")?;
    Some(rest.trim_end_matches('/'))
}

/// WebSocket feed: first `{"type":"snapshot",...}`, then `{"type":"update","seq":N,"at":ms,
/// "changed_at":ms,<changed sections, whole>}` at most 4 a second (`changed_at`: when the
/// oldest change in it reached the feed); pings every 15 s. A client that falls
/// behind gets a fresh snapshot, or is closed with 1008 if it stays stalled.
#[utoipa::path(
    get,
    path = "/api/v1/live",
    operation_id = "openLiveFeed",
    tag = "live",
    security(("session_cookie" = []), ("bearer_token" = [])),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; text frames carry JSON"),
        (status = 400, description = "Not a WebSocket upgrade request"),
        (status = 401, description = "Not signed in (problem document)"),
        (status = 403, description = "The role may not view the live view, or a cookie session from another origin (problem document)")
    )
)]
pub async fn live_ws(
    State(st): State<LiveState>,
    caller: Authorized<perm::ViewLive>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if matches!(caller.caller().via, Via::Session { .. }) {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let same = origin
                .to_str()
                .ok()
                .and_then(origin_authority)
                .zip(host)
                .is_some_and(|(o, h)| o.eq_ignore_ascii_case(h));
            if !same {
                return Problem::forbidden(
                    "the WebSocket's Origin does not match the Host: cross-site use of a \
                     session cookie is refused",
                )
                .into_response();
            }
        }
    }
    let Ok(ws) = ws else {
        return Problem::bad_request("GET /api/v1/live is a WebSocket: send an upgrade request")
            .into_response();
    };
    let Some(rx) = st.live.subscribe().await else {
        return unavailable().into_response();
    };
    let live = st.live.clone();
    ws.on_upgrade(move |socket| async move {
        // Off the main runtime: see `LiveHandle::spawn`.
        let _ = live.clone().spawn(serve_client(socket, rx, live)).await;
    })
}

async fn serve_client(mut socket: WebSocket, mut rx: mpsc::Receiver<String>, live: LiveHandle) {
    let mut ping = tokio::time::interval(Duration::from_secs(PING_SECS));
    ping.tick().await;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                None => {
                    // The hub dropped us (stalled: 1008) or stopped (shutdown: 1001); either
                    // way the client reconnects.
                    let frame = if live.is_running() {
                        CloseFrame { code: 1008, reason: "fell behind: reconnect".into() }
                    } else {
                        CloseFrame { code: 1001, reason: "the switch is stopping".into() }
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Binary(_))) => {
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1003,
                            reason: "this feed takes no binary frames".into(),
                        })))
                        .await;
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn origin_authority_is_host_and_port() {
        assert_eq!(
            super::origin_authority("http://127.0.0.1:8080"),
            Some("127.0.0.1:8080")
        );
        assert_eq!(super::origin_authority("null"), None);
    }

    #[test]
    fn openapi_document_lists_the_live_paths_and_schemas() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(super::LiveApiDoc::openapi()).unwrap();
        assert!(
            doc["paths"]["/api/v1/live/snapshot"]["get"].is_object(),
            "{doc}"
        );
        assert!(doc["paths"]["/api/v1/live"]["get"].is_object(), "{doc}");
        let snapshot = &doc["components"]["schemas"]["Snapshot"];
        assert!(snapshot["properties"]["type"].is_object(), "{snapshot}");
        assert!(snapshot["properties"]["waiting"].is_object(), "{snapshot}");
    }
}
