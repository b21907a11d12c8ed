//! Supervisor listen / whisper / barge (issue 10 item 5), the engine's part: who may monitor
//! which call in which mode, the media command that joins the supervisor's leg to the call
//! (`MediaCommand::Monitor`; the mixing itself is the media plane's, `media::mix`), the
//! records (a monitoring segment per mode on the monitored call, which the store also
//! writes to the audit log), and the ends: the supervisor hanging up leaves the call as it
//! was; the call ending (or its agent leg going: transfer, hang-up) hangs up the supervisor.
//!
//! A supervisor (a `users.toml` user with `sip_extension`, authenticated by digest in the
//! 407 flow like an agent's feature code) dials `*31<ext>` (listen), `*32<ext>` (whisper) or
//! `*33<ext>` (barge) where `<ext>` is the agent on the call. Agents, and anyone else, get
//! 403; an agent who is not on a call gives 480; a call another supervisor already monitors
//! gives 486. While monitoring, the supervisor's digits 1, 2, 3 switch to listen, whisper,
//! barge (a new segment each).

use super::Engine;
use crate::engine::call::CallState;
use crate::engine::media::{LegId, MediaCommand, MonitorMode};
use crate::engine::record::{EndedBy, Record};
use crate::engine::registrar::AuthResult;
use crate::engine::time::Millis;
use crate::engine::txn::TxnKey;
use crate::engine::Peer;
use crate::proto::sip::{Request, ResponseOpts};
use std::collections::HashMap;

/// `Call::feature` of a supervisor's monitoring call.
pub(super) const MONITOR_FEATURE: &str = "monitor";

/// The dialled prefixes: `*31` listen, `*32` whisper, `*33` barge, then the agent's
/// extension.
pub const MONITOR_CODES: [(&str, MonitorMode); 3] = [
    ("*31", MonitorMode::Listen),
    ("*32", MonitorMode::Whisper),
    ("*33", MonitorMode::Barge),
];

/// The mode and agent extension in a dialled monitoring code (`*31` + 1-16 digits).
pub fn parse_code(dialled: &str) -> Option<(MonitorMode, &str)> {
    MONITOR_CODES.iter().find_map(|(prefix, mode)| {
        let ext = dialled.strip_prefix(prefix)?;
        (!ext.is_empty() && ext.len() <= 16 && ext.bytes().all(|b| b.is_ascii_digit()))
            .then_some((*mode, ext))
    })
}

/// The mode a supervisor's digit switches to.
pub fn mode_for_digit(digit: char) -> Option<MonitorMode> {
    match digit {
        '1' => Some(MonitorMode::Listen),
        '2' => Some(MonitorMode::Whisper),
        '3' => Some(MonitorMode::Barge),
        _ => None,
    }
}

#[derive(Clone, Debug)]
struct Pending {
    supervisor: String,
    agent: String,
    mode: MonitorMode,
}

/// One supervisor on one call.
#[derive(Clone, Debug)]
pub(super) struct Session {
    supervisor: String,
    agent: String,
    mode: MonitorMode,
    /// The monitored call (engine key and persisted id) and its two legs.
    target: u64,
    target_call_id: String,
    caller_leg: LegId,
    agent_leg: LegId,
}

#[derive(Debug, Default)]
pub(super) struct Monitors {
    /// Screened INVITEs, until their call is answered (same input).
    pending: HashMap<TxnKey, Pending>,
    /// Supervisor's call key -> session.
    active: HashMap<u64, Session>,
}

impl Engine {
    /// A monitoring code: `Err(())` when answered here (challenge, 403, 480, 486),
    /// `Ok(Some(MONITOR_FEATURE))` when accepted (answered at once, then joined).
    pub(super) fn screen_monitor(
        &mut self,
        now: Millis,
        peer: Peer,
        key: &TxnKey,
        req: &Request,
        mode: MonitorMode,
        agent: &str,
    ) -> Result<Option<String>, ()> {
        let ext = match self.registrar.authenticate_request(now, peer.addr, req) {
            AuthResult::Ok(ext) => ext,
            AuthResult::Challenge(r) => {
                let to_tag = self.new_tag();
                let opts = ResponseOpts {
                    to_tag: Some(&to_tag),
                    extra_headers: r.headers,
                    ..Default::default()
                };
                self.respond(now, key, req, peer, r.status, &r.reason, opts);
                return Err(());
            }
            AuthResult::Forbidden => {
                self.reply(now, key, req, peer, 403, "Forbidden");
                return Err(());
            }
        };
        let Some(sup) = self.agent_dir.supervisor(&ext) else {
            tracing::warn!(user = %ext, agent, mode = mode.as_str(), "monitoring refused: not a supervisor");
            self.reply(now, key, req, peer, 403, "Forbidden (supervisors only)");
            return Err(());
        };
        let supervisor = sup.name.clone();
        let Some((target, _)) = self.agent_call(agent) else {
            tracing::info!(supervisor = %supervisor, agent, "monitoring: agent is not on a call");
            self.reply(
                now,
                key,
                req,
                peer,
                480,
                "Temporarily Unavailable (agent not on a call)",
            );
            return Err(());
        };
        if self.monitors.active.values().any(|s| s.target == target) {
            self.reply(now, key, req, peer, 486, "Busy Here (already monitored)");
            return Err(());
        }
        self.monitors.pending.insert(
            key.clone(),
            Pending {
                supervisor,
                agent: agent.to_string(),
                mode,
            },
        );
        Ok(Some(MONITOR_FEATURE.to_string()))
    }

    /// The agent's answered call: (call key, agent leg).
    fn agent_call(&self, agent: &str) -> Option<(u64, LegId)> {
        self.agent_legs.iter().find_map(|(leg, l)| {
            let call = self.calls.get(&l.call_key)?;
            (l.agent == agent
                && l.state == super::agent_leg::AgentLegState::Up
                && call.state == CallState::Answered
                && call.agent_leg == Some(*leg))
            .then_some((l.call_key, *leg))
        })
    }

    /// The supervisor's call was answered: join it to the agent's call.
    pub(super) fn start_monitor(&mut self, now: Millis, call_key: u64) {
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        let sup_leg = call.leg;
        let pending = self.monitors.pending.remove(&call.invite_key);
        let target = pending
            .as_ref()
            .and_then(|p| self.agent_call(&p.agent).map(|t| (p.clone(), t)));
        let Some((p, (target, agent_leg))) = target else {
            // The call ended in between: say so and hang up.
            self.say_goodbye(now, call_key, now.plus(30_000), "feature_refused");
            if let Some(c) = self.calls.get_mut(&call_key) {
                c.goodbye_reason = "feature_code";
            }
            return;
        };
        let Some(t) = self.calls.get(&target) else {
            return;
        };
        let session = Session {
            supervisor: p.supervisor,
            agent: p.agent,
            mode: p.mode,
            target,
            target_call_id: t.id.clone(),
            caller_leg: t.leg,
            agent_leg,
        };
        self.join(now, call_key, sup_leg, session);
    }

    fn join(&mut self, now: Millis, sup_key: u64, sup_leg: LegId, s: Session) {
        self.media(MediaCommand::Monitor {
            caller: s.caller_leg,
            agent: s.agent_leg,
            supervisor: sup_leg,
            mode: s.mode,
        });
        tracing::info!(
            call = %s.target_call_id,
            supervisor = %s.supervisor,
            agent = %s.agent,
            mode = s.mode.as_str(),
            "monitoring starts"
        );
        self.persist(Record::MonitorStarted {
            call_id: s.target_call_id.clone(),
            supervisor: s.supervisor.clone(),
            agent: s.agent.clone(),
            mode: s.mode.as_str().to_string(),
            at: now,
        });
        self.monitors.active.insert(sup_key, s);
    }

    /// A digit from a monitoring supervisor: 1/2/3 switch the mode. True when the call is a
    /// monitoring call (its digits go nowhere else).
    pub(super) fn monitor_digit(&mut self, now: Millis, call_key: u64, digit: char) -> bool {
        let Some(s) = self.monitors.active.get_mut(&call_key) else {
            return self
                .calls
                .get(&call_key)
                .is_some_and(|c| c.feature.as_deref() == Some(MONITOR_FEATURE));
        };
        let Some(mode) = mode_for_digit(digit).filter(|m| *m != s.mode) else {
            return true;
        };
        let (call_id, supervisor) = (s.target_call_id.clone(), s.supervisor.clone());
        s.mode = mode;
        let (caller, agent) = (s.caller_leg, s.agent_leg);
        let agent_ext = s.agent.clone();
        self.persist(Record::MonitorEnded {
            call_id: call_id.clone(),
            supervisor: supervisor.clone(),
            at: now,
            reason: "mode_changed".into(),
        });
        self.persist(Record::MonitorStarted {
            call_id,
            supervisor,
            agent: agent_ext,
            mode: mode.as_str().to_string(),
            at: now,
        });
        if let Some(sup_leg) = self.calls.get(&call_key).map(|c| c.leg) {
            self.media(MediaCommand::Monitor {
                caller,
                agent,
                supervisor: sup_leg,
                mode,
            });
        }
        true
    }

    /// After every input: sessions whose supervisor hung up end (the call goes on, the media
    /// plane already gave caller and agent back their relay when the supervisor's leg
    /// closed); sessions whose call ended or lost its agent hang up the supervisor.
    pub(super) fn check_monitors(&mut self, now: Millis) {
        if !self.monitors.pending.is_empty() {
            let by_invite = &self.by_invite;
            self.monitors
                .pending
                .retain(|k, _| by_invite.contains_key(k));
        }
        if self.monitors.active.is_empty() {
            return;
        }
        let mut ended: Vec<(u64, &'static str)> = Vec::new();
        for (sup_key, s) in &self.monitors.active {
            let sup_alive = self
                .calls
                .get(sup_key)
                .is_some_and(|c| c.state == CallState::Answered);
            let target_ok = self.calls.get(&s.target).is_some_and(|c| {
                c.state == CallState::Answered && c.agent_leg == Some(s.agent_leg)
            }) && self
                .agent_legs
                .get(&s.agent_leg)
                .is_some_and(|l| l.state == super::agent_leg::AgentLegState::Up);
            if !sup_alive {
                ended.push((*sup_key, "supervisor_hung_up"));
            } else if !target_ok {
                ended.push((*sup_key, "call_ended"));
            }
        }
        for (sup_key, reason) in ended {
            let Some(s) = self.monitors.active.remove(&sup_key) else {
                continue;
            };
            tracing::info!(call = %s.target_call_id, supervisor = %s.supervisor, reason, "monitoring ends");
            self.persist(Record::MonitorEnded {
                call_id: s.target_call_id,
                supervisor: s.supervisor,
                at: now,
                reason: reason.to_string(),
            });
            if reason == "call_ended" {
                self.end_call(now, sup_key, EndedBy::System, "monitored_call_ended", true);
            }
        }
    }

    /// Supervisors monitoring now (for tests and metrics).
    pub fn monitoring_sessions(&self) -> usize {
        self.monitors.active.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_mode_and_extension_only() {
        assert_eq!(parse_code("*311001"), Some((MonitorMode::Listen, "1001")));
        assert_eq!(parse_code("*32 1001"), None);
        assert_eq!(parse_code("*321002"), Some((MonitorMode::Whisper, "1002")));
        assert_eq!(parse_code("*331003"), Some((MonitorMode::Barge, "1003")));
        assert_eq!(parse_code("*31"), None);
        assert_eq!(parse_code("*34100"), None);
        assert_eq!(parse_code("*31abc"), None);
        assert_eq!(parse_code(&format!("*31{}", "1".repeat(17))), None);
        assert_eq!(mode_for_digit('2'), Some(MonitorMode::Whisper));
        assert_eq!(mode_for_digit('#'), None);
    }
}
