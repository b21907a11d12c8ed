//! Connections of connection-oriented transports (TCP, WebSocket) as the engine sees them.
//!
//! - Which connections the engine still needs, for the transport's idle timeout: one an
//!   agent registered over (offers go back on it, RFC 5626-lite), and one a call, an offer
//!   or an agent's dialog runs on (in-dialog requests and responses go back on it). A
//!   read-only question the control loop answers for the shells; nothing is emitted.
//! - A WebSocket connection that closed (`Input::ConnectionClosed`): a contact registered
//!   over it is reachable over that connection only (RFC 7118 section 5, RFC 5626), so its
//!   bindings go at once; offers ringing on it fail (the next agent gets the call), an
//!   agent's call on it ends as if the agent had hung up, and a caller's as if the caller
//!   had.

use super::agent_leg::AgentLegState;
use super::Engine;
use crate::engine::acd::OfferOutcome;
use crate::engine::call::CallState;
use crate::engine::record::EndedBy;
use crate::engine::time::Millis;
use crate::engine::{MediaCommand, Peer, Transport};
use std::net::SocketAddr;

impl Engine {
    /// Whether the TCP connection from `addr` carries a live registration or call.
    pub fn uses_tcp_connection(&self, addr: SocketAddr) -> bool {
        self.uses_connection(Peer {
            transport: Transport::Tcp,
            addr,
        })
    }

    /// Whether the connection of `conn` (TCP or WebSocket) carries a live registration
    /// or call.
    pub fn uses_connection(&self, conn: Peer) -> bool {
        let on_it = |p: &Peer| *p == conn;
        let registered = self.registrar.registered().any(|ext| {
            self.registrar
                .contacts(ext)
                .iter()
                .any(|b| b.transport == conn.transport && b.source == conn.addr)
        });
        registered
            || self.calls.values().any(|c| on_it(&c.peer))
            || self.agent_legs.values().any(|l| {
                l.peer.as_ref().is_some_and(on_it)
                    || l.forks.iter().any(|f| !f.done && on_it(&f.peer))
            })
    }

    pub(super) fn on_connection_closed(&mut self, now: Millis, conn: Peer) {
        if !conn.transport.is_connection_bound() {
            return;
        }
        let mut ringing = Vec::new();
        let mut up = Vec::new();
        for (&leg, l) in &self.agent_legs {
            if l.peer == Some(conn) && l.state == AgentLegState::Up {
                up.push((leg, l.call_key));
                continue;
            }
            for (fi, f) in l.forks.iter().enumerate() {
                if !f.done && f.peer == conn {
                    ringing.push((leg, fi));
                }
            }
        }
        for (leg, fi) in ringing {
            self.on_fork_failed(now, leg, fi, OfferOutcome::Failed);
        }
        for (leg, call_key) in up {
            tracing::info!(leg, peer = %conn.addr, "agent's WebSocket closed mid-call");
            if let Some(l) = self.agent_legs.get_mut(&leg) {
                l.state = AgentLegState::Terminating;
            }
            self.media(MediaCommand::Unbridge { leg });
            self.release_leg(leg);
            let ours = self
                .calls
                .get_mut(&call_key)
                .is_some_and(|c| c.agent_leg.take() == Some(leg));
            if ours {
                self.end_call(now, call_key, EndedBy::Agent, "agent_connection_lost", true);
            }
        }
        // A caller on it (a WebRTC client dialling in) hung up, as far as we can tell.
        let callers: Vec<(u64, CallState)> = self
            .calls
            .iter()
            .filter(|(_, c)| c.peer == conn)
            .map(|(k, c)| (*k, c.state))
            .collect();
        for (call_key, state) in callers {
            match state {
                CallState::Terminating => {}
                CallState::Ringing => {
                    self.refuse_ringing(now, call_key, 487, "Request Terminated", None);
                    self.end_call_with_status(
                        now,
                        call_key,
                        EndedBy::Caller,
                        "connection_lost",
                        487,
                        false,
                    );
                }
                CallState::Answered => {
                    self.end_call(now, call_key, EndedBy::Caller, "connection_lost", false)
                }
            }
        }
        // Last, so the offers above end as failed offers, not as a logout mid-offer.
        let events = self.registrar.connection_closed(conn.transport, conn.addr);
        self.on_registrar_events(now, events);
    }
}
