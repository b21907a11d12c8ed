//! Connections of connection-oriented transports (TCP, WebSocket) as the engine sees them.
//!
//! - Which connections the engine still needs, for the transport's idle timeout: one an
//!   agent registered over (offers go back on it, RFC 5626-lite), and one a call, an offer
//!   or an agent's dialog runs on (in-dialog requests and responses go back on it). A
//!   read-only question the control loop answers for the shells; nothing is emitted.
//! - A WebSocket connection that closed (`Input::ConnectionClosed`): a contact registered
//!   over it is reachable over that connection only (RFC 7118 section 5, RFC 5626), so its
//!   bindings go at once; offers ringing on it fail (the next agent gets the call), and a
//!   caller's call on it ends as if the caller had hung up.
//! - An agent whose call runs on it (a browser tab closed or crashed mid-call) did not hang
//!   up: they vanished. The ACD makes them NotReady("connection_lost") with no wrap-up
//!   (`Acd::agent_lost`), and the bindings going with the connection do not log them out,
//!   so the wallboard shows who dropped out of a call until they come back and say ready
//!   (or log out). The caller, who already waited, is not dropped: they go back to the
//!   queue at their first queueing rank, with hold audio, when another logged-in agent
//!   could take the call; otherwise they hear goodbye and the call ends, reason
//!   `agent_connection_lost`. A browser whose media dies while the WebSocket stays up
//!   (ICE or DTLS failing) is caught by the agent leg's RTP inactivity guard and handled
//!   the same way, after a BYE to the browser (`agent_dialog.rs`).

use super::agent_leg::AgentLegState;
use super::Engine;
use crate::engine::acd::OfferOutcome;
use crate::engine::call::{AcdPhase, CallState};
use crate::engine::record::EndedBy;
use crate::engine::registrar::RegistrarEvent;
use crate::engine::time::Millis;
use crate::engine::{Peer, Transport};
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
        let mut vanished = Vec::new();
        for (leg, call_key) in up {
            tracing::info!(leg, peer = %conn.addr, "agent's WebSocket closed mid-call");
            let Some(l) = self.agent_legs.get_mut(&leg) else {
                continue;
            };
            l.state = AgentLegState::Terminating;
            let (agent, monitor) = (l.agent.clone(), l.monitor);
            // A supervisor's monitoring leg leaves the mix; `check_monitors` ends the session.
            self.media(super::agent_dialog::unhook(leg, monitor));
            self.release_leg(leg);
            let ours = self
                .calls
                .get_mut(&call_key)
                .is_some_and(|c| c.detach_agent_leg(leg));
            if ours {
                self.agent_vanished(now, call_key);
                vanished.push(agent);
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
        // Last, so the offers above end as failed offers, not as a logout mid-offer. An agent
        // who vanished mid-call stays logged in, not ready (module docs).
        let events = self
            .registrar
            .connection_closed(conn.transport, conn.addr)
            .into_iter()
            .filter(|ev| match ev {
                RegistrarEvent::Unregistered { extension, .. } => !vanished.contains(extension),
                RegistrarEvent::Registered { .. } => true,
            })
            .collect();
        self.on_registrar_events(now, events);
    }

    /// The agent of a connected call vanished (their leg is released or being hung up, and
    /// no longer the call's): the caller goes back to the queue or hears goodbye (module
    /// docs).
    pub(super) fn agent_vanished(&mut self, now: Millis, call_key: u64) {
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        if call.acd != AcdPhase::Connected || call.state != CallState::Answered {
            return self.end_call(now, call_key, EndedBy::Agent, "agent_connection_lost", true);
        }
        let requeued = self.acd.agent_lost(now, call_key);
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        match requeued {
            Ok(true) => {
                tracing::info!(call = %call.id, "agent vanished mid-call: caller back in the queue");
                call.acd = AcdPhase::Queued;
                self.drain_acd(now);
            }
            Ok(false) => {
                tracing::info!(call = %call.id, "agent vanished mid-call, nobody else: goodbye");
                call.acd = AcdPhase::None;
                call.goodbye_reason = "agent_connection_lost";
                self.drain_acd(now);
                let deadline = now.plus(GOODBYE_WAIT_MS);
                self.say_goodbye(now, call_key, deadline, "goodbye");
            }
            Err(e) => {
                tracing::warn!(error = %e, "agent_lost refused: ending the call");
                call.acd = AcdPhase::None;
                self.drain_acd(now);
                self.end_call(now, call_key, EndedBy::Agent, "agent_connection_lost", true);
            }
        }
    }
}

/// How long the goodbye to a caller whose agent vanished may take before we hang up.
const GOODBYE_WAIT_MS: u64 = 30_000;
