//! Which TCP connections the engine still needs, for the transport's idle timeout: one
//! an agent registered over (offers go back on it, RFC 5626-lite), and one a call, an
//! offer or an agent's dialog runs on (in-dialog requests and responses go back on it).
//! A read-only question the control loop answers for the TCP shell; the engine's state
//! does not change and nothing is emitted.

use super::Engine;
use crate::engine::{Peer, Transport};
use std::net::SocketAddr;

impl Engine {
    /// Whether the TCP connection from `addr` carries a live registration or call.
    pub fn uses_tcp_connection(&self, addr: SocketAddr) -> bool {
        let on_it = |p: &Peer| p.transport == Transport::Tcp && p.addr == addr;
        let registered = self.registrar.registered().any(|ext| {
            self.registrar
                .contacts(ext)
                .iter()
                .any(|b| b.transport == Transport::Tcp && b.source == addr)
        });
        registered
            || self.calls.values().any(|c| on_it(&c.peer))
            || self.agent_legs.values().any(|l| {
                l.peer.as_ref().is_some_and(on_it)
                    || l.forks.iter().any(|f| !f.done && on_it(&f.peer))
            })
    }
}
