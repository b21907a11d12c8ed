//! Agents signing in: REGISTER through the registrar, its events (first binding logs the
//! agent in, the last one gone logs them out) and agent state commands from supervisors.

use super::Engine;
use crate::engine::registrar::RegistrarEvent;
use crate::engine::time::Millis;
use crate::engine::txn::TxnKey;
use crate::engine::{AgentChange, Peer};
use crate::proto::sip::{Request, ResponseOpts};

impl Engine {
    pub(super) fn on_register(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let r = self
            .registrar
            .register(now, peer.addr, peer.transport, &req);
        let to_tag = self.new_tag();
        let opts = ResponseOpts {
            to_tag: Some(&to_tag),
            extra_headers: r.headers.clone(),
            ..Default::default()
        };
        self.respond(now, &key, &req, peer, r.status, &r.reason, opts);
        self.on_registrar_events(now, r.events);
    }

    pub(super) fn on_registrar_events(&mut self, now: Millis, events: Vec<RegistrarEvent>) {
        // Per extension: how many bindings this batch added and removed, to tell whether
        // the agent had none before (login) or has none left (out of routing).
        let mut delta: Vec<(String, i64)> = Vec::new();
        for ev in &events {
            let (ext, d) = match ev {
                RegistrarEvent::Registered { extension, .. } => (extension, 1),
                RegistrarEvent::Unregistered { extension, why, .. } => {
                    tracing::info!(agent = %extension, why = why.as_str(), "binding removed");
                    (extension, -1)
                }
            };
            match delta.iter_mut().find(|(e, _)| e == ext) {
                Some((_, n)) => *n += d,
                None => delta.push((ext.clone(), d)),
            }
        }
        for (ext, d) in delta {
            let now_count = self.registrar.contacts(&ext).len() as i64;
            let before = now_count - d;
            if before <= 0 && now_count > 0 {
                tracing::info!(agent = %ext, "agent registered: logged in");
                if let Err(e) = self.acd.login(now, &ext) {
                    tracing::debug!(agent = %ext, error = %e, "login ignored");
                }
            } else if now_count == 0 && before > 0 {
                tracing::info!(agent = %ext, "agent unregistered: out of routing");
                if let Err(e) = self.acd.registration_lost(now, &ext) {
                    tracing::debug!(agent = %ext, error = %e, "logout ignored");
                }
            }
        }
    }

    /// `Command::Agent`: the same changes as the feature codes. Returns whether the ACD
    /// accepted it.
    pub(super) fn on_agent_command(
        &mut self,
        now: Millis,
        agent: &str,
        change: AgentChange,
    ) -> bool {
        let res = match change {
            AgentChange::Ready => self
                .acd
                .set_ready(now, agent)
                .or_else(|_| self.acd.login(now, agent)),
            AgentChange::NotReady { reason } => self.acd.set_not_ready(now, agent, &reason),
            AgentChange::Logout => self.acd.logout(now, agent),
        };
        if let Err(e) = &res {
            tracing::info!(agent, error = %e, "agent command refused");
        }
        res.is_ok()
    }
}
