//! SIP over TCP: framing by Content-Length (RFC 3261 18.3), one task per connection, and a
//! table of live connections so responses and our requests go back on the same one.
//!
//! What a connection may cost is bounded (`[sip.tcp]`, decided in `tcp_guard`): caps on
//! connections per source IP and in total (refused at accept), a deadline for completing a
//! message once started, an idle timeout for connections neither a registration nor a call
//! uses (the control loop answers an `InUseQuery` for the engine), and a message size limit
//! (513 Message Too Large, then close). RFC 5626 keep-alive pings (CRLFCRLF) get a CRLF pong.

use super::tcp_guard::{
    Admission, CloseReason, ConnectionTimers, LogLimiter, TcpLimits, TimerCheck,
};
use super::Inbound;
use crate::clock::Clock;
use crate::engine::{Peer, Transport};
use crate::proto::sip::{self, Frame};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Outbound queue per connection; a peer that stops reading loses its connection, not our loop.
const CONNECTION_QUEUE: usize = 256;
/// How long a closing connection may take to send what is queued (a 513, a pong) and, after
/// a 513, to let the rest of the oversized message arrive (lingering close).
const WRITE_GRACE: Duration = Duration::from_secs(1);
/// How long to wait for the control loop's answer to an `InUseQuery`; without one the
/// connection is kept (closing a connection an agent needs is worse than a late close).
const ENGINE_ANSWER: Duration = Duration::from_secs(5);
/// At most one warning per close reason in this interval.
const LOG_INTERVAL_MS: u64 = 10_000;

/// The TCP and WebSocket transports ask the control loop: does the engine still need the
/// connection `conn` (a registration bound over it, a call or an offer on it)?
#[derive(Debug)]
pub struct InUseQuery {
    /// The connection (TCP or WebSocket).
    pub conn: Peer,
    pub reply: oneshot::Sender<bool>,
}

#[derive(Clone)]
pub struct Connections {
    shared: Arc<Shared>,
}

struct Shared {
    limits: TcpLimits,
    clock: Clock,
    table: Mutex<Table>,
}

struct Table {
    writers: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    admission: Admission,
    logs: LogLimiter,
}

impl Connections {
    pub fn new(limits: TcpLimits, clock: Clock) -> Connections {
        Connections {
            shared: Arc::new(Shared {
                table: Mutex::new(Table {
                    writers: HashMap::new(),
                    admission: Admission::new(&limits),
                    logs: LogLimiter::new(LOG_INTERVAL_MS),
                }),
                limits,
                clock,
            }),
        }
    }

    pub fn limits(&self) -> &TcpLimits {
        &self.shared.limits
    }

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
                    tracing::warn!(to = %addr, "TCP connection congested or closed: message dropped");
                }
            }
            None => tracing::warn!(to = %addr, "no TCP connection to peer: message dropped"),
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

    /// Counts a new connection and files its writer, or says which cap refuses it.
    fn admit(&self, addr: SocketAddr, tx: mpsc::Sender<Bytes>) -> Result<(), CloseReason> {
        let Ok(mut t) = self.shared.table.lock() else {
            return Err(CloseReason::TotalCap);
        };
        t.admission.admit(addr.ip())?;
        t.writers.insert(addr, tx);
        metrics::gauge!("ccswitch_sip_tcp_connections").set(t.admission.open() as f64);
        Ok(())
    }

    /// Forgets an admitted connection (`admitted`) or counts a refused one, and says why.
    fn closed(&self, addr: SocketAddr, reason: CloseReason, admitted: bool) {
        metrics::counter!("ccswitch_sip_tcp_connections_closed_total", "reason" => reason.as_str())
            .increment(1);
        let Ok(mut t) = self.shared.table.lock() else {
            return;
        };
        if admitted {
            t.writers.remove(&addr);
            t.admission.release(addr.ip());
            metrics::gauge!("ccswitch_sip_tcp_connections").set(t.admission.open() as f64);
        }
        if !reason.is_fault() {
            tracing::debug!(peer = %addr, reason = reason.as_str(), "SIP TCP connection closed");
            return;
        }
        let open_from_source = t.admission.open_from(addr.ip());
        match t.logs.allow(self.shared.clock.now(), reason) {
            Some(suppressed) => tracing::warn!(
                peer = %addr,
                reason = reason.as_str(),
                open_from_source,
                suppressed,
                "SIP TCP connection closed (one warning per reason per {} s; `suppressed` counts the ones left out)",
                LOG_INTERVAL_MS / 1000
            ),
            None => metrics::counter!("ccswitch_sip_tcp_log_lines_suppressed_total").increment(1),
        }
    }
}

/// Series of the TCP transport, at zero, and its limits (so /metrics shows them).
fn init_metrics(limits: &TcpLimits) {
    metrics::describe_gauge!("ccswitch_sip_tcp_connections", "SIP TCP connections open");
    metrics::describe_counter!(
        "ccswitch_sip_tcp_connections_closed_total",
        "SIP TCP connections closed or refused, by reason"
    );
    metrics::describe_counter!(
        "ccswitch_sip_tcp_log_lines_suppressed_total",
        "warnings about closed SIP TCP connections left out by the log rate limit"
    );
    metrics::describe_gauge!(
        "ccswitch_sip_tcp_limit",
        "configured [sip.tcp] limits (timeouts in ms, sizes in bytes)"
    );
    metrics::gauge!("ccswitch_sip_tcp_connections").set(0.0);
    for reason in CloseReason::ALL {
        metrics::counter!("ccswitch_sip_tcp_connections_closed_total", "reason" => reason.as_str())
            .absolute(0);
    }
    metrics::counter!("ccswitch_sip_tcp_log_lines_suppressed_total").absolute(0);
    for (name, value) in [
        ("message_timeout_ms", limits.message_timeout_ms as f64),
        ("idle_timeout_ms", limits.idle_timeout_ms as f64),
        ("max_connections", limits.max_connections as f64),
        (
            "max_connections_per_source",
            limits.max_connections_per_source as f64,
        ),
        ("max_message_bytes", limits.max_message_bytes as f64),
    ] {
        metrics::gauge!("ccswitch_sip_tcp_limit", "limit" => name).set(value);
    }
}

pub fn spawn_listener(
    listener: TcpListener,
    conns: Connections,
    to_control: mpsc::Sender<Inbound>,
    queries: mpsc::Sender<InUseQuery>,
) {
    init_metrics(conns.limits());
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, addr)) => {
                    let (tx, rx) = mpsc::channel::<Bytes>(CONNECTION_QUEUE);
                    match conns.admit(addr, tx.clone()) {
                        Ok(()) => {
                            let _ = stream.set_nodelay(true);
                            let io = ConnectionIo {
                                addr,
                                conns: conns.clone(),
                                to_control: to_control.clone(),
                                queries: queries.clone(),
                                tx,
                            };
                            tokio::spawn(io.serve(stream, rx));
                        }
                        // Dropping the stream closes it at once.
                        Err(reason) => conns.closed(addr, reason, false),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
}

/// One admitted connection.
struct ConnectionIo {
    addr: SocketAddr,
    conns: Connections,
    to_control: mpsc::Sender<Inbound>,
    queries: mpsc::Sender<InUseQuery>,
    /// Our own handle on the outbound queue (pongs, 513).
    tx: mpsc::Sender<Bytes>,
}

impl ConnectionIo {
    async fn serve(self, stream: TcpStream, rx: mpsc::Receiver<Bytes>) {
        let (mut reader, writer) = stream.into_split();
        let mut writing = tokio::spawn(write_queue(writer, rx));
        let reason = self.read(&mut reader).await;
        let ConnectionIo {
            addr, conns, tx, ..
        } = self;
        // With our sender and the table's (dropped by `closed`) gone, the writer ends once
        // it has sent what is queued and half-closes; the socket closes when both halves go.
        drop(tx);
        conns.closed(addr, reason, true);
        let grace = tokio::time::sleep(WRITE_GRACE);
        tokio::pin!(grace);
        tokio::select! {
            _ = &mut writing => {}
            _ = &mut grace => {
                writing.abort();
                return;
            }
        }
        if reason == CloseReason::TooLarge {
            // Lingering close: the rest of the oversized message is still arriving; closing
            // with unread bytes would reset the connection and could destroy our 513 before
            // the peer reads it. Discard until the peer closes or the grace runs out.
            let _ = tokio::time::timeout_at(grace.deadline(), discard(&mut reader)).await;
        }
    }

    /// Reads and frames until the connection must close; returns why.
    async fn read(&self, reader: &mut OwnedReadHalf) -> CloseReason {
        let limits = self.conns.limits();
        let clock = self.conns.shared.clock;
        let peer = Peer {
            transport: Transport::Tcp,
            addr: self.addr,
        };
        let mut buf = BytesMut::with_capacity(4096);
        let mut timers = ConnectionTimers::new(clock.now(), limits);
        let mut framer = sip::Framer::new(limits.max_message_bytes);
        loop {
            let deadline = clock.instant_at(timers.deadline());
            tokio::select! {
                read = reader.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return CloseReason::PeerClosed,
                    Ok(_) => {}
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    match timers.check(clock.now()) {
                        TimerCheck::Open => {}
                        TimerCheck::HalfMessageTimeout => return CloseReason::HalfMessageTimeout,
                        TimerCheck::Idle => {
                            if !self.engine_needs_it().await {
                                return CloseReason::IdleTimeout;
                            }
                            timers.keep(clock.now());
                        }
                    }
                    continue;
                }
            }
            let mut completed = false;
            loop {
                match framer.next(&buf) {
                    Frame::Incomplete => break,
                    Frame::KeepAlive(n) => {
                        let _ = buf.split_to(n);
                    }
                    Frame::Ping(n) => {
                        let _ = buf.split_to(n);
                        // RFC 5626 3.5.1: the pong is a single CRLF.
                        let _ = self.tx.try_send(Bytes::from_static(b"\r\n"));
                    }
                    Frame::Message(n) => {
                        completed = true;
                        let bytes = buf.split_to(n).freeze();
                        if self
                            .to_control
                            .send(Inbound::Sip { peer, bytes })
                            .await
                            .is_err()
                        {
                            // The control loop has stopped: the switch is shutting down.
                            return CloseReason::PeerClosed;
                        }
                    }
                    Frame::TooLarge { header_end } => {
                        let reply =
                            header_end.and_then(|h| sip::message_too_large(&buf[..h], self.addr));
                        if let Some(reply) = reply {
                            let _ = self.tx.try_send(reply);
                        }
                        return CloseReason::TooLarge;
                    }
                    Frame::Invalid(reason) => {
                        // The stream is out of sync: nothing after this can be framed.
                        tracing::debug!(from = %self.addr, reason = %reason, "bad TCP framing");
                        metrics::counter!("ccswitch_sip_malformed_total").increment(1);
                        return CloseReason::BadFraming;
                    }
                }
            }
            timers.on_received(clock.now(), completed, sip::holds_partial_message(&buf));
        }
    }

    /// Asks the control loop whether the engine still uses this connection.
    async fn engine_needs_it(&self) -> bool {
        let (reply, answer) = oneshot::channel();
        let query = InUseQuery {
            conn: Peer {
                transport: Transport::Tcp,
                addr: self.addr,
            },
            reply,
        };
        if self.queries.send(query).await.is_err() {
            return false;
        }
        match tokio::time::timeout(ENGINE_ANSWER, answer).await {
            Ok(Ok(needed)) => needed,
            Ok(Err(_)) => false,
            Err(_) => true,
        }
    }
}

/// Reads and drops everything until EOF or an error.
async fn discard(reader: &mut OwnedReadHalf) {
    let mut sink = [0u8; 4096];
    while let Ok(n) = reader.read(&mut sink).await {
        if n == 0 {
            return;
        }
    }
}

async fn write_queue(mut writer: OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = rx.recv().await {
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
