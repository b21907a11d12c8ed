//! SIP over WebSocket (RFC 7118): `GET /sip` on the HTTP listener, subprotocol `sip`, one
//! SIP message per text or binary WebSocket message. A thin shell: each connection is a
//! `Peer { transport: Ws, addr }` (the client's address, unique among open connections;
//! `Wss` and the forwarded address behind a trusted TLS proxy, see `ws_guard`),
//! its messages go to the control loop as SIP input, the engine's transmits to that peer
//! go to the connection's writer, and its close reaches the engine (`Inbound::Closed`):
//! contacts registered over it are reachable over it only, so their bindings go.
//!
//! What it may cost is bounded (`[sip.websocket]`, decided in `ws_guard`): a disallowed
//! Origin gets 403 and a handshake without the `sip` subprotocol 400, both before the
//! upgrade; caps on connections in total and per source IP (503); a message size limit
//! (larger messages close the connection); and an idle timeout for connections neither a
//! registration nor a call uses (asked of the engine like the TCP transport does). Bytes
//! that are not SIP go to the engine like any datagram: it answers 400 where it can and
//! counts them in `ccswitch_sip_malformed_total`.

use super::tcp::InUseQuery;
use super::tcp_guard::Admission;
use super::ws_guard::{self, read_error, CloseReason, Payload, Refusal, WsLimits};
use super::Inbound;
use crate::api::problem::Problem;
use crate::engine::Peer;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The path of the endpoint on the HTTP listener.
pub const PATH: &str = "/sip";
/// Outbound queue per connection; a peer that stops reading loses its connection.
const CONNECTION_QUEUE: usize = 256;
/// How long to wait for the control loop's answer to an `InUseQuery` (kept without one).
const ENGINE_ANSWER: Duration = Duration::from_secs(5);
/// How long a closing connection may take to send what is queued.
const WRITE_GRACE: Duration = Duration::from_secs(1);

/// The open WebSocket connections: writers by peer address, and the admission caps.
#[derive(Clone)]
pub struct WsConnections {
    shared: Arc<Shared>,
}

struct Shared {
    limits: WsLimits,
    to_control: mpsc::Sender<Inbound>,
    queries: mpsc::Sender<InUseQuery>,
    table: Mutex<Table>,
}

struct Table {
    writers: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    admission: Admission,
}

impl WsConnections {
    pub fn new(
        limits: WsLimits,
        to_control: mpsc::Sender<Inbound>,
        queries: mpsc::Sender<InUseQuery>,
    ) -> WsConnections {
        let admission =
            Admission::with_caps(limits.max_connections, limits.max_connections_per_source);
        WsConnections {
            shared: Arc::new(Shared {
                limits,
                to_control,
                queries,
                table: Mutex::new(Table {
                    writers: HashMap::new(),
                    admission,
                }),
            }),
        }
    }

    /// Queues `bytes` on the connection of `addr`; dropped (and logged) when it is gone
    /// or congested: the engine's transaction timers see the silence.
    pub fn send(&self, addr: SocketAddr, bytes: Bytes) {
        let writer = self
            .shared
            .table
            .lock()
            .ok()
            .and_then(|t| t.writers.get(&addr).cloned());
        match writer {
            Some(tx) => {
                if tx.try_send(bytes).is_err() {
                    metrics::counter!("ccswitch_sip_send_errors_total").increment(1);
                    tracing::warn!(to = %addr, "WebSocket congested or closed: SIP message dropped");
                }
            }
            None => {
                metrics::counter!("ccswitch_sip_send_errors_total").increment(1);
                tracing::warn!(to = %addr, "no WebSocket connection to peer: SIP message dropped");
            }
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.shared
            .table
            .lock()
            .map(|t| t.admission.open())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts a new connection and files its writer; false when a cap refuses it.
    fn admit(&self, addr: SocketAddr, tx: mpsc::Sender<Bytes>) -> bool {
        let Ok(mut t) = self.shared.table.lock() else {
            return false;
        };
        // The address of an open connection is unique; a duplicate would steal its peer.
        if t.writers.contains_key(&addr) || t.admission.admit(addr.ip()).is_err() {
            return false;
        }
        t.writers.insert(addr, tx);
        metrics::gauge!("ccswitch_sip_ws_connections").set(t.admission.open() as f64);
        true
    }

    fn release(&self, addr: SocketAddr) {
        if let Ok(mut t) = self.shared.table.lock() {
            if t.writers.remove(&addr).is_some() {
                t.admission.release(addr.ip());
            }
            metrics::gauge!("ccswitch_sip_ws_connections").set(t.admission.open() as f64);
        }
    }
}

/// An admitted connection: released (and the engine told) when dropped, whether the
/// upgrade completed or not.
struct Admitted {
    conns: WsConnections,
    peer: Peer,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.conns.release(self.peer.addr);
        let to_control = self.conns.shared.to_control.clone();
        let peer = self.peer;
        // After every message of the connection (each was awaited into the same channel).
        tokio::spawn(async move {
            let _ = to_control.send(Inbound::Closed(peer)).await;
        });
    }
}

/// Series of the WebSocket transport, at zero, and its limits.
fn init_metrics(limits: &WsLimits) {
    metrics::describe_gauge!(
        "ccswitch_sip_ws_connections",
        "SIP WebSocket connections open"
    );
    metrics::describe_counter!(
        "ccswitch_sip_ws_connections_closed_total",
        "SIP WebSocket connections closed, by reason"
    );
    metrics::describe_counter!(
        "ccswitch_sip_ws_refused_total",
        "SIP WebSocket handshakes refused before the upgrade, by reason"
    );
    metrics::describe_counter!(
        "ccswitch_sip_ws_messages_total",
        "WebSocket messages received on /sip, by kind (sip, keepalive)"
    );
    metrics::describe_gauge!(
        "ccswitch_sip_ws_limit",
        "configured [sip.websocket] limits (timeouts in ms, sizes in bytes)"
    );
    metrics::gauge!("ccswitch_sip_ws_connections").set(0.0);
    for c in CloseReason::ALL {
        metrics::counter!("ccswitch_sip_ws_connections_closed_total", "reason" => c.as_str())
            .absolute(0);
    }
    for r in Refusal::ALL {
        metrics::counter!("ccswitch_sip_ws_refused_total", "reason" => r.as_str()).absolute(0);
    }
    for kind in ["sip", "keepalive"] {
        metrics::counter!("ccswitch_sip_ws_messages_total", "kind" => kind).absolute(0);
    }
    for (name, value) in [
        ("idle_timeout_ms", limits.idle_timeout_ms as f64),
        ("max_connections", limits.max_connections as f64),
        (
            "max_connections_per_source",
            limits.max_connections_per_source as f64,
        ),
        ("max_message_bytes", limits.max_message_bytes as f64),
    ] {
        metrics::gauge!("ccswitch_sip_ws_limit", "limit" => name).set(value);
    }
}

/// The `/sip` route, to merge into the HTTP router (served with `ConnectInfo<SocketAddr>`).
pub fn router(conns: WsConnections) -> Router {
    init_metrics(&conns.shared.limits);
    Router::new().route(PATH, get(handshake)).with_state(conns)
}

fn refuse(reason: Refusal, problem: Problem) -> Response {
    metrics::counter!("ccswitch_sip_ws_refused_total", "reason" => reason.as_str()).increment(1);
    problem.into_response()
}

async fn handshake(
    State(conns): State<WsConnections>,
    ConnectInfo(tcp_peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let limits = &conns.shared.limits;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (addr, transport) = ws_guard::client_peer(
        tcp_peer,
        text("x-forwarded-for"),
        text("x-forwarded-proto"),
        &limits.trusted_proxies,
    );
    if !ws_guard::origin_allowed(
        text(header::ORIGIN.as_str()),
        text(header::HOST.as_str()),
        &limits.allowed_origins,
    ) {
        tracing::info!(peer = %addr, origin = ?text(header::ORIGIN.as_str()), "SIP WebSocket: Origin not allowed");
        return refuse(
            Refusal::Origin,
            Problem::forbidden(
                "this Origin may not open SIP over WebSocket (sip.websocket.allowed_origins)",
            ),
        );
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok());
    if !ws_guard::offers_sip(offered) {
        return refuse(
            Refusal::Subprotocol,
            Problem::bad_request("SIP over WebSocket needs the subprotocol `sip` (RFC 7118)"),
        );
    }
    let (tx, rx) = mpsc::channel::<Bytes>(CONNECTION_QUEUE);
    if !conns.admit(addr, tx.clone()) {
        return refuse(
            Refusal::Capacity,
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                crate::api::problem::types::UNAVAILABLE,
                "Service Unavailable",
            )
            .detail("too many SIP WebSocket connections"),
        );
    }
    let admitted = Admitted {
        conns: conns.clone(),
        peer: Peer { transport, addr },
    };
    let max = limits.max_message_bytes;
    upgrade
        .protocols([ws_guard::SUBPROTOCOL])
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| serve(socket, admitted, tx, rx))
}

async fn serve(
    socket: WebSocket,
    admitted: Admitted,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
) {
    let peer = admitted.peer;
    let addr = peer.addr;
    let shared = admitted.conns.shared.clone();
    let (sink, mut stream) = socket.split();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut writing = tokio::spawn(write_queue(sink, rx, stop_rx));
    let idle = Duration::from_millis(shared.limits.idle_timeout_ms);
    let reason = loop {
        let next = match tokio::time::timeout(idle, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                if engine_needs_it(&shared.queries, peer).await {
                    continue;
                }
                break CloseReason::IdleTimeout;
            }
        };
        let bytes = match next {
            None => break CloseReason::PeerClosed,
            Some(Err(e)) => {
                tracing::debug!(peer = %addr, error = %e, "SIP WebSocket read failed");
                break read_error(&e.to_string());
            }
            Some(Ok(Message::Close(_))) => break CloseReason::PeerClosed,
            // Pings are answered by the WebSocket layer.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => m.into_data(),
        };
        match ws_guard::classify(&bytes, shared.limits.max_message_bytes) {
            Payload::TooLarge => break CloseReason::TooLarge,
            Payload::KeepAlive { pong } => {
                metrics::counter!("ccswitch_sip_ws_messages_total", "kind" => "keepalive")
                    .increment(1);
                if pong {
                    let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                }
            }
            Payload::Sip => {
                metrics::counter!("ccswitch_sip_ws_messages_total", "kind" => "sip").increment(1);
                if shared
                    .to_control
                    .send(Inbound::Sip { peer, bytes })
                    .await
                    .is_err()
                {
                    break CloseReason::Shutdown;
                }
            }
        }
    };
    metrics::counter!("ccswitch_sip_ws_connections_closed_total", "reason" => reason.as_str())
        .increment(1);
    tracing::debug!(peer = %addr, reason = reason.as_str(), "SIP WebSocket closed");
    // Our sender and the table's go: the writer sends what is queued, then closes.
    drop(tx);
    drop(admitted);
    let _ = stop_tx.send(());
    if tokio::time::timeout(WRITE_GRACE, &mut writing)
        .await
        .is_err()
    {
        writing.abort();
    }
}

/// Sends queued SIP messages (text frames; binary when not UTF-8) until the queue closes
/// or the reader stops, then closes the WebSocket.
async fn write_queue(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Bytes>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let bytes = tokio::select! {
            biased;
            next = rx.recv() => match next {
                Some(b) => b,
                None => break,
            },
            _ = &mut stop => {
                // Flush what is already queued, then close.
                while let Ok(b) = rx.try_recv() {
                    if sink.send(frame(b)).await.is_err() {
                        return;
                    }
                }
                break;
            }
        };
        if sink.send(frame(bytes)).await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

fn frame(bytes: Bytes) -> Message {
    match String::from_utf8(bytes.to_vec()) {
        Ok(s) => Message::Text(s.into()),
        Err(_) => Message::Binary(bytes),
    }
}

/// Asks the control loop whether the engine still uses this connection.
async fn engine_needs_it(queries: &mpsc::Sender<InUseQuery>, conn: Peer) -> bool {
    let (reply, answer) = oneshot::channel();
    if queries.send(InUseQuery { conn, reply }).await.is_err() {
        return false;
    }
    match tokio::time::timeout(ENGINE_ANSWER, answer).await {
        Ok(Ok(needed)) => needed,
        Ok(Err(_)) => false,
        Err(_) => true,
    }
}
