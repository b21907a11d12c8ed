//! SIP transports: thin shells that move bytes between sockets and the control loop.

pub mod tcp;
pub mod tcp_guard;
pub mod udp;

use crate::engine::{Peer, Transport};
use bytes::Bytes;
use std::sync::Arc;
use tokio::net::UdpSocket;

/// A SIP message as it arrived.
#[derive(Debug)]
pub struct Inbound {
    pub peer: Peer,
    pub bytes: Bytes,
}

/// Sends the engine's `Transmit` outputs on the right socket. Never blocks the control loop:
/// a full UDP send buffer drops the datagram (SIP retransmission covers it).
#[derive(Clone)]
pub struct NetSender {
    udp: Arc<UdpSocket>,
    tcp: tcp::Connections,
}

impl NetSender {
    pub fn new(udp: Arc<UdpSocket>, tcp: tcp::Connections) -> NetSender {
        NetSender { udp, tcp }
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
        }
    }
}
