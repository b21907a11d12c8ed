//! SIP transports: thin shells that move bytes between sockets and the control loop.

pub mod tcp;
pub mod tcp_guard;
pub mod udp;
pub mod ws;
pub mod ws_guard;

use crate::engine::{Peer, Transport};
use bytes::Bytes;
use std::sync::Arc;
use tokio::net::UdpSocket;

/// What a transport hands the control loop, in order on one channel (so a connection's
/// close never overtakes its last message).
#[derive(Debug)]
pub enum Inbound {
    /// A SIP message as it arrived.
    Sip { peer: Peer, bytes: Bytes },
    /// A connection-bound transport (WebSocket) lost this connection.
    Closed(Peer),
}

/// Sends the engine's `Transmit` outputs on the right socket. Never blocks the control loop:
/// a full UDP send buffer drops the datagram (SIP retransmission covers it).
#[derive(Clone)]
pub struct NetSender {
    udp: Arc<UdpSocket>,
    tcp: tcp::Connections,
    ws: ws::WsConnections,
}

impl NetSender {
    pub fn new(udp: Arc<UdpSocket>, tcp: tcp::Connections, ws: ws::WsConnections) -> NetSender {
        NetSender { udp, tcp, ws }
    }

    pub fn send(&self, peer: Peer, bytes: Bytes) {
        match peer.transport {
            Transport::Udp => {
                if let Err(e) = self.udp.try_send_to(&bytes, peer.addr) {
                    metrics::counter!("ccswitch_sip_send_errors_total").increment(1);
                    tracing::warn!(to = %peer.addr, error = %e, "UDP send failed");
                }
            }
            Transport::Tcp => self.tcp.send(peer.addr, bytes),
            Transport::Ws | Transport::Wss => self.ws.send(peer.addr, bytes),
        }
    }
}
