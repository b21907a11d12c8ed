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
//!
//! Or the supervisor presses a button on the wallboard (`POST /api/v1/calls/{id}/monitor`,
//! `Input::MonitorRequest`): the engine answers at once (`Output::MonitorAnswer`: refused
//! in this order when the extension is no supervisor's, the call is unknown, has no agent
//! on it now, is monitored already, the supervisor is busy monitoring, or their phone is
//! not registered), then rings the supervisor's registered phones as it offers calls to agents
//! (`ring_contacts`: forks, CANCEL, ACK, BYE), From `"Listen 1002"` (mode and agent),
//! `X-Call-Id` and `X-Monitor-Mode` headers. No answer within `MONITOR_RING_MS`: CANCEL,
//! nothing recorded (the API audited the attempt). The call ending (or losing its agent)
//! while it rings: CANCEL. Answered: the same `join` as the feature code's, digits 1/2/3
//! switch the mode there too. A browser phone (the wallboard's, registered over WebSocket)
//! rings as an agent's browser does (a WebRTC offer from the media shell, `webrtc_offer.rs`);
//! its digits come as RFC 4733 events, and INFO digits on a monitoring leg count too.

use super::offer::Outbound;
use super::{Engine, EngineTimer};
use crate::engine::call::CallState;
use crate::engine::media::{LegId, MediaCommand, MonitorMode};
use crate::engine::record::{EndedBy, Record};
use crate::engine::registrar::AuthResult;
use crate::engine::time::Millis;
use crate::engine::txn::TxnKey;
use crate::engine::{Output, Peer};
use crate::proto::sip::{Request, ResponseOpts};
use std::collections::HashMap;

/// How long a supervisor's phone rings for a monitoring request before we CANCEL.
pub const MONITOR_RING_MS: u64 = 30_000;

/// A supervisor asks to be rung to monitor a call (`Input::MonitorRequest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorRequest {
    /// Chosen by the shell, echoed in `Output::MonitorAnswer`.
    pub id: String,
    /// The call's id (`CallStarted.call_id`).
    pub call_id: String,
    /// The supervisor's SIP extension (users.toml `sip_extension`).
    pub supervisor: String,
    pub mode: MonitorMode,
}

/// Why a monitoring request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorRefusal {
    /// The extension is no supervisor's SIP phone.
    NotSupervisor,
    /// No live call has this id.
    UnknownCall,
    /// The call has no agent on it now (IVR, queue, ringing an agent, ended).
    NotBridged,
    /// Another supervisor monitors the call, or is being rung for it.
    AlreadyMonitored,
    /// This supervisor already monitors a call or is being rung for one.
    SupervisorBusy,
    /// The supervisor's phone has no registered contact (browser contacts do not count).
    NotRegistered,
    /// No RTP port is free for the supervisor's leg.
    NoCapacity,
}

impl MonitorRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorRefusal::NotSupervisor => "not_supervisor",
            MonitorRefusal::NotRegistered => "not_registered",
            MonitorRefusal::UnknownCall => "unknown_call",
            MonitorRefusal::NotBridged => "not_bridged",
            MonitorRefusal::AlreadyMonitored => "already_monitored",
            MonitorRefusal::SupervisorBusy => "supervisor_busy",
            MonitorRefusal::NoCapacity => "no_capacity",
        }
    }
}

/// The supervisor's side of a session: their own call to a monitoring code, or the leg we
/// rang for a monitoring request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum SupSide {
    Call(u64),
    Leg(LegId),
}

/// A supervisor's phone ringing for a monitoring request.
#[derive(Clone, Debug)]
struct Ringing {
    id: String,
    supervisor: String,
    agent: String,
    mode: MonitorMode,
    target: u64,
    agent_leg: LegId,
}

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
    /// Supervisors' phones rung for monitoring requests, by their leg.
    ringing: HashMap<LegId, Ringing>,
    /// The supervisor's side -> session.
    active: HashMap<SupSide, Session>,
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
            self.refused(now, format!("agent:{ext}"), agent, mode, "forbidden");
            self.reply(now, key, req, peer, 403, "Forbidden (supervisors only)");
            return Err(());
        };
        let supervisor = sup.name.clone();
        let Some((target, _)) = self.agent_call(agent) else {
            tracing::info!(supervisor = %supervisor, agent, "monitoring: agent is not on a call");
            self.refused(now, supervisor, agent, mode, "not_bridged");
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
        if self.is_monitored(target) {
            self.refused(now, supervisor, agent, mode, "already_monitored");
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

    /// A refused monitoring code, for the audit log.
    fn refused(&mut self, now: Millis, user: String, agent: &str, mode: MonitorMode, reason: &str) {
        self.persist(Record::MonitorRefused {
            user,
            agent: agent.to_string(),
            mode: mode.as_str().to_string(),
            reason: reason.to_string(),
            at: now,
        });
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
        self.join(now, SupSide::Call(call_key), sup_leg, session);
    }

    /// Whether a supervisor monitors the call `target` or is being rung for it.
    fn is_monitored(&self, target: u64) -> bool {
        self.monitors.active.values().any(|s| s.target == target)
            || self.monitors.ringing.values().any(|r| r.target == target)
    }

    /// Whether the call `target` is still answered and talking to `agent_leg`.
    fn target_ok(&self, target: u64, agent_leg: LegId) -> bool {
        self.calls
            .get(&target)
            .is_some_and(|c| c.state == CallState::Answered && c.agent_leg == Some(agent_leg))
            && self
                .agent_legs
                .get(&agent_leg)
                .is_some_and(|l| l.state == super::agent_leg::AgentLegState::Up)
    }

    /// `Input::MonitorRequest`: answered at once; when accepted the supervisor's phones ring.
    pub(super) fn on_monitor_request(&mut self, now: Millis, req: MonitorRequest) {
        let result = self.ring_supervisor(now, &req);
        match result {
            Ok(()) => tracing::info!(call = %req.call_id, supervisor = %req.supervisor,
                mode = req.mode.as_str(), "monitoring request: ringing the supervisor"),
            Err(r) => tracing::info!(call = %req.call_id, supervisor = %req.supervisor,
                mode = req.mode.as_str(), reason = r.as_str(), "monitoring request refused"),
        }
        self.out
            .push_back(Output::MonitorAnswer { id: req.id, result });
    }

    fn ring_supervisor(&mut self, now: Millis, req: &MonitorRequest) -> Result<(), MonitorRefusal> {
        let name = self
            .agent_dir
            .supervisor(&req.supervisor)
            .map(|s| s.name.clone())
            .ok_or(MonitorRefusal::NotSupervisor)?;
        let (target, call) = self
            .calls
            .iter()
            .find(|(_, c)| c.id == req.call_id && c.state != CallState::Terminating)
            .map(|(k, c)| (*k, c))
            .ok_or(MonitorRefusal::UnknownCall)?;
        let call_id = call.id.clone();
        let agent_leg = call
            .agent_leg
            .filter(|l| self.target_ok(target, *l))
            .ok_or(MonitorRefusal::NotBridged)?;
        if self.is_monitored(target) {
            return Err(MonitorRefusal::AlreadyMonitored);
        }
        let busy = self.monitors.active.values().any(|s| s.supervisor == name)
            || self.monitors.ringing.values().any(|r| r.supervisor == name);
        if busy {
            return Err(MonitorRefusal::SupervisorBusy);
        }
        // Desk phones and browser phones (the wallboard's, over WebSocket) ring alike.
        let contacts = self.registrar.contacts(&req.supervisor).to_vec();
        if contacts.is_empty() {
            return Err(MonitorRefusal::NotRegistered);
        }
        let agent = self
            .agent_legs
            .get(&agent_leg)
            .map(|l| l.agent.clone())
            .unwrap_or_default();
        let rtp_port = self.ports.allocate().ok_or(MonitorRefusal::NoCapacity)?;
        let leg = self.ring_contacts(
            now,
            &contacts,
            Outbound {
                call_key: target,
                caller_call_id: call_id.clone(),
                extension: req.supervisor.clone(),
                rtp_port,
                from_display: from_display(req.mode, &agent),
                from_user: "monitor".to_string(),
                extra: vec![
                    ("X-Call-Id", call_id),
                    ("X-Monitor-Mode", req.mode.as_str().to_string()),
                    ("X-Agent", agent.clone()),
                    ("Allow", super::ALLOW.to_string()),
                ],
                monitor: true,
            },
        );
        self.deadlines
            .set(leg, EngineTimer::MonitorRing, now.plus(MONITOR_RING_MS));
        self.monitors.ringing.insert(
            leg,
            Ringing {
                id: req.id.clone(),
                supervisor: name,
                agent,
                mode: req.mode,
                target,
                agent_leg,
            },
        );
        Ok(())
    }

    /// The supervisor's phone did not answer in time: CANCEL.
    pub(super) fn on_monitor_ring_timeout(&mut self, now: Millis, leg: LegId) {
        if !self.monitors.ringing.contains_key(&leg) {
            return;
        }
        self.cancel_agent_leg(now, leg);
        self.monitor_ring_over(leg, "no_answer");
    }

    /// A monitoring request's ringing ended without an answer (no answer, declined, failed,
    /// the call gone): nothing is recorded.
    pub(super) fn monitor_ring_over(&mut self, leg: LegId, outcome: &str) {
        self.deadlines.cancel(leg, EngineTimer::MonitorRing);
        if let Some(r) = self.monitors.ringing.remove(&leg) {
            tracing::info!(request = %r.id, supervisor = %r.supervisor, outcome,
                "monitoring request: the supervisor's phone did not answer");
        }
    }

    /// The supervisor answered a monitoring request: join the call as the feature code does.
    pub(super) fn monitor_answered(&mut self, now: Millis, leg: LegId) {
        self.deadlines.cancel(leg, EngineTimer::MonitorRing);
        let Some(r) = self.monitors.ringing.remove(&leg) else {
            self.agent_bye(now, leg);
            return;
        };
        let caller_leg = self.calls.get(&r.target).map(|c| (c.id.clone(), c.leg));
        let Some((target_call_id, caller_leg)) = caller_leg
            .filter(|_| self.target_ok(r.target, r.agent_leg) && !self.is_monitored(r.target))
        else {
            tracing::info!(request = %r.id, "monitoring request: the call ended meanwhile");
            self.agent_bye(now, leg);
            return;
        };
        let session = Session {
            supervisor: r.supervisor,
            agent: r.agent,
            mode: r.mode,
            target: r.target,
            target_call_id,
            caller_leg,
            agent_leg: r.agent_leg,
        };
        self.join(now, SupSide::Leg(leg), leg, session);
    }

    fn join(&mut self, now: Millis, side: SupSide, sup_leg: LegId, s: Session) {
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
        self.monitors.active.insert(side, s);
    }

    /// A digit from a monitoring supervisor: 1/2/3 switch the mode. True when the call is a
    /// monitoring call (its digits go nowhere else).
    pub(super) fn monitor_digit(&mut self, now: Millis, call_key: u64, digit: char) -> bool {
        let side = SupSide::Call(call_key);
        if !self.monitors.active.contains_key(&side) {
            return self
                .calls
                .get(&call_key)
                .is_some_and(|c| c.feature.as_deref() == Some(MONITOR_FEATURE));
        }
        self.switch_mode(now, side, digit);
        true
    }

    /// A digit on a leg we rang for monitoring; true when `leg` is one (its digits go
    /// nowhere else).
    pub(super) fn monitor_leg_digit(&mut self, now: Millis, leg: LegId, digit: char) -> bool {
        let monitoring = self.agent_legs.get(&leg).is_some_and(|l| l.monitor);
        if monitoring {
            self.switch_mode(now, SupSide::Leg(leg), digit);
        }
        monitoring
    }

    /// A SIP INFO on a supervisor's monitoring leg: its digit switches the mode as an
    /// RFC 4733 digit does (phones set to send DTMF as INFO).
    pub(super) fn on_monitor_info(
        &mut self,
        now: Millis,
        peer: Peer,
        key: &TxnKey,
        req: &Request,
        leg: LegId,
    ) {
        match super::caller_leg::info_digit(req) {
            Ok(digit) => {
                self.reply(now, key, req, peer, 200, "OK");
                if let Some(digit) = digit {
                    self.monitor_leg_digit(now, leg, digit);
                }
            }
            Err((code, reason)) => self.reply(now, key, req, peer, code, reason),
        }
    }

    /// 1/2/3 from a monitoring supervisor: a new segment in that mode.
    fn switch_mode(&mut self, now: Millis, side: SupSide, digit: char) {
        let sup_leg = match side {
            SupSide::Call(k) => self.calls.get(&k).map(|c| c.leg),
            SupSide::Leg(l) => Some(l),
        };
        let Some(s) = self.monitors.active.get_mut(&side) else {
            return;
        };
        let Some(mode) = mode_for_digit(digit).filter(|m| *m != s.mode) else {
            return;
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
        if let Some(sup_leg) = sup_leg {
            self.media(MediaCommand::Monitor {
                caller,
                agent,
                supervisor: sup_leg,
                mode,
            });
        }
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
        // A call that ended (or lost its agent) while a supervisor's phone rang for it.
        let gone: Vec<LegId> = self
            .monitors
            .ringing
            .iter()
            .filter(|(_, r)| !self.target_ok(r.target, r.agent_leg))
            .map(|(leg, _)| *leg)
            .collect();
        for leg in gone {
            self.cancel_agent_leg(now, leg);
            self.monitor_ring_over(leg, "call_ended");
        }
        if self.monitors.active.is_empty() {
            return;
        }
        let mut ended: Vec<(SupSide, &'static str)> = Vec::new();
        for (side, s) in &self.monitors.active {
            let sup_alive = match side {
                SupSide::Call(k) => self
                    .calls
                    .get(k)
                    .is_some_and(|c| c.state == CallState::Answered),
                SupSide::Leg(l) => self
                    .agent_legs
                    .get(l)
                    .is_some_and(|l| l.state == super::agent_leg::AgentLegState::Up),
            };
            if !sup_alive {
                ended.push((*side, "supervisor_hung_up"));
            } else if !self.target_ok(s.target, s.agent_leg) {
                ended.push((*side, "call_ended"));
            }
        }
        for (side, reason) in ended {
            let Some(s) = self.monitors.active.remove(&side) else {
                continue;
            };
            tracing::info!(call = %s.target_call_id, supervisor = %s.supervisor, reason, "monitoring ends");
            self.persist(Record::MonitorEnded {
                call_id: s.target_call_id,
                supervisor: s.supervisor,
                at: now,
                reason: reason.to_string(),
            });
            match (reason, side) {
                ("call_ended", SupSide::Call(k)) => {
                    self.end_call(now, k, EndedBy::System, "monitored_call_ended", true)
                }
                ("call_ended", SupSide::Leg(l)) => self.agent_bye(now, l),
                _ => {}
            }
        }
    }

    /// Supervisors monitoring now (for tests and metrics).
    pub fn monitoring_sessions(&self) -> usize {
        self.monitors.active.len()
    }
}

/// The From display name of a monitoring call: what it is and whom it monitors.
fn from_display(mode: MonitorMode, agent: &str) -> String {
    let what = match mode {
        MonitorMode::Listen => "Listen",
        MonitorMode::Whisper => "Whisper",
        MonitorMode::Barge => "Barge",
    };
    format!("{what} {agent}")
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
