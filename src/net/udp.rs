//! SIP over UDP: one socket, one receive task.

use super::Inbound;
use crate::engine::{Peer, Transport};
use bytes::Bytes;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Largest datagram we accept (RFC 3261 18.1.1 allows up to 65535 on UDP).
const MAX_DATAGRAM: usize = 65_535;

pub fn spawn_receiver(socket: Arc<UdpSocket>, to_control: mpsc::Sender<Inbound>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, addr)) => {
                    let msg = Inbound::Sip {
                        peer: Peer {
                            transport: Transport::Udp,
                            addr,
                        },
                        bytes: Bytes::copy_from_slice(&buf[..n]),
                    };
                    if to_control.send(msg).await.is_err() {
                        return;
                    }
                }
                // ICMP port unreachable from an earlier send shows up here on Linux: not fatal.
                Err(e) => tracing::debug!(error = %e, "UDP receive error"),
            }
        }
    });
}
