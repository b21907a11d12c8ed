//! The switch engine: one `Engine` owning every call, fed `handle_input(now, input)`, then
//! `poll_output` until None, then asleep until `poll_timeout`. Sans-IO.
//!
//! This file holds the engine's state, its contract and the plumbing every part shares
//! (outputs, timers, transactions). The call's flow, one file per part:
//!
//! ```text
//! dispatch       SIP bytes -> transaction -> per-source screening -> the part below
//! caller_leg     INVITE, ringing, answer after N rings, SDP, ACK, re-INVITE, CANCEL, BYE, INFO
//! webrtc_caller  a browser phone's INVITE: the media shell's WebRTC peer answers its offer
//! ivr_hookup     media events and digits drive the IVR session; its actions
//! feature_codes  *21.. from agents, toll-fraud refusals (before the IVR)
//! registration   REGISTER -> registrar -> agent logged in / out
//! queueing       the ACD hookup: queue entry, hold, announcements, offers asked, queue exits
//! offer          INVITE forks to the agent's phones, answer, bridge, recording
//! webrtc_offer   a fork to a browser phone: its INVITE carries the WebRTC peer's offer
//! agent_dialog   the answered agent leg: BYE, re-INVITE hold, ACK, timeouts, media
//! transfer       REFER to a queue or an agent
//! teardown       the end of a call (who hung up, BYE) and the staged shutdown
//! survey_hookup  at the end of a call: the survey decision and follow-up task (records)
//! connection_use which TCP connections the engine still needs (for the transport)
//! ```
//! `agent_leg` holds the agent leg's types and the documented choices of the agent flow.

mod agent_dialog;
mod agent_leg;
mod caller_leg;
mod connection_use;
mod dispatch;
mod dispositions;
mod feature_codes;
mod ivr_hookup;
mod live_hookup;
mod monitor;
mod offer;
mod queueing;
mod registration;
mod survey_hookup;
mod teardown;
mod transfer;
mod webrtc_caller;
mod webrtc_offer;

pub use agent_leg::{announcement, ANNOUNCE_PROMPTS, FEATURE_PROMPTS};
pub use monitor::{
    parse_code as parse_monitor_code, MonitorRefusal, MonitorRequest, MONITOR_CODES,
    MONITOR_RING_MS,
};
pub use survey_hookup::SurveySetup;
pub use webrtc_caller::CallWebRtc;

use super::acd::{Acd, AgentProfile, QueueSet};
use super::call::{Call, CallState, CallTimer};
use super::deadlines::DeadlineIndex;
use super::ivr::IvrGraph;
use super::limits::{LimitsConfig, SourceLimits};
use super::media::{LegId, MediaCommand};
use super::ports::PortPool;
use super::record::Record;
use super::registrar::Registrar;
use super::time::Millis;
use super::txn::{Transactions, TxnConfig, TxnKey, TxnOutput};
use super::{Command, Input, Output, Peer};
use crate::engine::agents::{AgentDirectory, FeatureCodes};
use agent_leg::AgentLeg;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

/// Methods we implement, for Allow headers.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER";

/// Engine-wide timers share the deadline index with calls under this owner key.
const ENGINE_OWNER: u64 = u64::MAX;

/// Play ids the engine itself uses (goodbye at shutdown) start here, far above IVR ids.
const SYSTEM_PLAY_BASE: u64 = 1 << 62;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `host:port` for our Via and Contact.
    pub sent_by: String,
    /// Address put in SDP `c=` lines.
    pub media_ip: IpAddr,
    pub ring_cycle_ms: u64,
    pub answer_after_rings: u8,
    pub max_calls: usize,
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    pub rtp_inactivity_ms: u64,
    pub txn: TxnConfig,
    pub ivr: Arc<IvrGraph>,
    pub default_language: String,
    /// Seeds tags, branches and SDP session ids (no unseeded RNG in the engine).
    pub seed: u64,
    /// Agents (registrar credentials, feature codes, skills).
    pub agents: Arc<AgentDirectory>,
    pub queues: Arc<QueueSet>,
    /// Keys the registrar's nonces; the shell draws it at random at startup.
    pub registrar_secret: [u8; 32],
    /// Where recorded calls go: `<dir>/<call id>.wav`.
    pub recordings_dir: std::path::PathBuf,
    /// Per-source limits on new INVITEs and REGISTERs (`[limits]`).
    pub limits: LimitsConfig,
    /// SMS surveys after hang-up (`survey.toml`); `Default`: off, no survey records.
    pub surveys: SurveySetup,
}

/// Operations counters the shell exports to Prometheus.
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    pub sip_received: u64,
    pub sip_sent: u64,
    /// Retransmitted requests absorbed plus 2xx we re-sent.
    pub retransmissions: u64,
    /// Messages that did not parse (answered 400 when possible).
    pub malformed: u64,
    /// Malformed messages dropped because no response could be built.
    pub malformed_dropped: u64,
    pub calls_started: u64,
    pub calls_rejected: u64,
    /// New INVITEs / REGISTERs answered 503 because their source is over its rate.
    pub source_rate_limited: u64,
    /// New INVITEs answered 503 because their source is at its concurrent-call cap.
    pub source_over_concurrency: u64,
    /// Requests dropped without a reply because their source is banned.
    pub source_ignored: u64,
    /// Sources banned right now (a gauge).
    pub sources_banned: u64,
    /// Ended calls given a survey (`SurveyScheduled`).
    pub surveys_scheduled: u64,
    /// Ended calls given no survey (`SurveySkipped`).
    pub surveys_skipped: u64,
    /// Follow-up tasks opened at a call's end (complaint queue).
    pub follow_ups_opened: u64,
    /// `Command::SurveyOptOut` with something that is not a number hash.
    pub survey_opt_outs_refused: u64,
    /// Dispositions set (feature code or command), and refused.
    pub dispositions_set: u64,
    pub dispositions_refused: u64,
    /// Follow-up tasks opened by a disposition (`follow_up` / `complaint` codes).
    pub follow_ups_opened_by_disposition: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum EngineTimer {
    Call(CallTimer),
    ShutdownGrace,
    /// Owner is an agent leg: re-send our 2xx to its re-INVITE until the ACK comes.
    AgentRetransmit2xx,
    /// Owner is an agent leg: 64*T1 without that ACK.
    AgentAckTimeout,
    /// Owner is a supervisor's leg rung for monitoring: no answer in time, CANCEL.
    MonitorRing,
}

pub struct Engine {
    cfg: EngineConfig,
    txns: Transactions,
    calls: HashMap<u64, Call>,
    by_dialog: HashMap<(String, String), u64>,
    by_invite: HashMap<TxnKey, u64>,
    by_leg: HashMap<LegId, u64>,
    by_bye: HashMap<TxnKey, u64>,
    deadlines: DeadlineIndex<u64, EngineTimer>,
    ports: PortPool,
    rng: StdRng,
    next_call: u64,
    next_leg: LegId,
    next_system_play: u64,
    out: VecDeque<Output>,
    shutting_down: bool,
    drained: bool,
    stats: EngineStats,
    registrar: Registrar,
    acd: Acd,
    features: FeatureCodes,
    agent_dir: Arc<AgentDirectory>,
    /// Agent legs by their media leg id.
    agent_legs: HashMap<LegId, AgentLeg>,
    /// Branch of an agent INVITE fork / BYE -> its leg.
    agent_by_branch: HashMap<String, LegId>,
    agent_by_callid: HashMap<String, LegId>,
    /// Call key -> the leg of the offer ringing for it.
    offers: HashMap<u64, LegId>,
    /// ACD call key -> (persisted call id, caller), kept until wrap-up ends.
    acd_call_ids: HashMap<u64, (String, String)>,
    /// Recordings in progress: caller leg -> persisted call id (the call may be gone by the
    /// time the media plane reports the file finished).
    recordings: HashMap<LegId, String>,
    limits: SourceLimits,
    surveys: survey_hookup::Surveys,
    live: crate::engine::live::LiveFigures,
    /// Agent -> the call their dispositions apply to (their current or last answered call).
    last_calls: HashMap<String, dispositions::AgentLastCall>,
    /// Supervisors listening, whispering or barging in (`monitor`).
    monitors: monitor::Monitors,
}

impl Engine {
    pub fn new(mut cfg: EngineConfig) -> Engine {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let offset: u16 = rng.random();
        let registrar = Registrar::new(
            cfg.agents.clone(),
            cfg.agents.registrar.clone(),
            cfg.registrar_secret,
        );
        let profiles = cfg
            .agents
            .agents
            .iter()
            .map(|a| AgentProfile {
                id: a.extension.clone(),
                skills: a.skills.clone(),
                languages: a.languages.iter().cloned().collect(),
                queues: a.queues.clone(),
            })
            .collect();
        let acd = Acd::new(cfg.queues.clone(), profiles);
        Engine {
            registrar,
            acd,
            features: cfg.agents.feature_codes.clone(),
            agent_dir: cfg.agents.clone(),
            agent_legs: HashMap::new(),
            agent_by_branch: HashMap::new(),
            agent_by_callid: HashMap::new(),
            offers: HashMap::new(),
            acd_call_ids: HashMap::new(),
            recordings: HashMap::new(),
            limits: SourceLimits::new(cfg.limits.clone()),
            surveys: survey_hookup::Surveys::new(&mut cfg.surveys),
            last_calls: HashMap::new(),
            monitors: Default::default(),
            txns: Transactions::new(cfg.txn.clone()),
            ports: PortPool::new(cfg.rtp_port_min, cfg.rtp_port_max, offset),
            rng,
            cfg,
            calls: HashMap::new(),
            by_dialog: HashMap::new(),
            by_invite: HashMap::new(),
            by_leg: HashMap::new(),
            by_bye: HashMap::new(),
            deadlines: DeadlineIndex::default(),
            next_call: 1,
            next_leg: 1,
            next_system_play: SYSTEM_PLAY_BASE,
            out: VecDeque::new(),
            shutting_down: false,
            drained: false,
            stats: EngineStats::default(),
            live: Default::default(),
        }
    }

    /// Never panics on peer input: every fault becomes a response, a record or a log line.
    pub fn handle_input(&mut self, now: Millis, input: Input) {
        self.run_timers(now);
        match input {
            Input::Sip { peer, bytes } => self.on_sip(now, peer, &bytes),
            Input::Media(ev) => self.on_media(now, ev),
            Input::Command(Command::Shutdown { grace_ms }) => self.on_shutdown(now, grace_ms),
            Input::Command(Command::Agent { agent, change }) => {
                self.on_agent_command(now, &agent, change);
            }
            Input::Command(Command::SurveyOptOut { number_hash }) => {
                self.on_survey_opt_out(&number_hash);
            }
            Input::ConnectionClosed(peer) => self.on_connection_closed(now, peer),
            Input::MonitorRequest(req) => self.on_monitor_request(now, req),
            Input::Command(Command::Disposition {
                agent,
                call_id,
                code,
                note,
            }) => {
                let code = dispositions::CodeRef::Text(&code);
                let _ =
                    self.set_disposition(now, &agent, call_id.as_deref(), code, note.as_deref());
            }
            Input::Timeout => {}
        }
        self.drain_acd(now);
        self.check_monitors(now);
        self.drain_txns(now);
        self.emit_live_figures();
        self.check_drained();
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        [
            self.deadlines.next(),
            self.txns.poll_timeout(),
            self.registrar.poll_timeout(),
            self.acd.poll_timeout(),
            self.limits.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Agent legs alive (ringing, cancelling, up or hanging up).
    pub fn agent_legs(&self) -> usize {
        self.agent_legs.len()
    }

    /// Consistency of the ACD and the agent legs; for tests.
    #[doc(hidden)]
    pub fn check_agent_invariants(&self) -> Result<(), String> {
        self.acd.check_invariants()?;
        let mut ringing: HashMap<&str, u64> = HashMap::new();
        for (leg, l) in &self.agent_legs {
            if l.state == agent_leg::AgentLegState::Ringing {
                if let Some(other) = ringing.insert(l.agent.as_str(), *leg) {
                    return Err(format!("agent {} rings on legs {other} and {leg}", l.agent));
                }
            }
        }
        let mut up: HashMap<&str, u64> = HashMap::new();
        for (leg, l) in &self.agent_legs {
            if l.state == agent_leg::AgentLegState::Up {
                if let Some(other) = up.insert(l.agent.as_str(), *leg) {
                    return Err(format!("agent {} talks on legs {other} and {leg}", l.agent));
                }
                if ringing.contains_key(l.agent.as_str()) {
                    return Err(format!("agent {} rings while on a call", l.agent));
                }
            }
        }
        Ok(())
    }

    /// The ACD's view of an agent (for tests and the API).
    pub fn agent_state(&self, agent: &str) -> Option<&super::acd::AgentState> {
        self.acd.agent_state(agent)
    }

    pub fn active_calls(&self) -> usize {
        self.calls
            .values()
            .filter(|c| c.state != CallState::Terminating)
            .count()
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn pending_transactions(&self) -> usize {
        self.txns.len()
    }

    // ---- plumbing -------------------------------------------------------------------------

    fn transmit(&mut self, peer: Peer, bytes: Bytes) {
        self.stats.sip_sent += 1;
        self.out.push_back(Output::Transmit { peer, bytes });
    }

    fn persist(&mut self, record: Record) {
        self.out.push_back(Output::Persist(record));
    }

    fn media(&mut self, cmd: MediaCommand) {
        self.out.push_back(Output::Media(cmd));
    }

    fn set_timer(&mut self, key: u64, timer: CallTimer, at: Millis) {
        self.deadlines.set(key, EngineTimer::Call(timer), at);
    }

    fn cancel_timer(&mut self, key: u64, timer: CallTimer) {
        self.deadlines.cancel(key, EngineTimer::Call(timer));
    }

    fn new_tag(&mut self) -> String {
        format!("{:016x}", self.rng.random::<u64>())
    }

    fn drain_txns(&mut self, now: Millis) {
        while let Some(o) = self.txns.poll_output() {
            match o {
                TxnOutput::Transmit { peer, bytes } => self.transmit(peer, bytes),
                TxnOutput::Timeout { key, client, timer } => {
                    tracing::debug!(branch = %key.branch, timer, client, "transaction timeout");
                    if client && self.on_agent_txn_timeout(now, &key) {
                        continue;
                    }
                    if client {
                        if let Some(call_key) = self.by_bye.remove(&key) {
                            self.remove_call(call_key);
                        }
                    }
                }
                TxnOutput::Terminated { key } => {
                    self.by_invite.remove(&key);
                }
            }
        }
        let _ = now;
    }

    fn check_drained(&mut self) {
        if self.shutting_down && !self.drained && self.active_calls() == 0 {
            self.drained = true;
            self.deadlines
                .cancel(ENGINE_OWNER, EngineTimer::ShutdownGrace);
            self.out.push_back(Output::Drained);
        }
    }

    fn run_timers(&mut self, now: Millis) {
        self.txns.handle_timeout(now);
        if self.registrar.poll_timeout().is_some_and(|t| t <= now) {
            let events = self.registrar.handle_timeout(now);
            self.on_registrar_events(now, events);
        }
        if self.acd.poll_timeout().is_some_and(|t| t <= now) {
            self.acd.handle_timeout(now);
        }
        if self.limits.poll_timeout().is_some_and(|t| t <= now) {
            self.limits.handle_timeout(now);
            self.stats.sources_banned = self.limits.banned() as u64;
        }
        while let Some((owner, timer)) = self.deadlines.pop_due(now) {
            match timer {
                EngineTimer::ShutdownGrace => self.on_grace_over(now),
                EngineTimer::AgentRetransmit2xx => self.on_agent_retransmit_2xx(now, owner),
                EngineTimer::AgentAckTimeout => self.on_agent_ack_timeout(now, owner),
                EngineTimer::MonitorRing => self.on_monitor_ring_timeout(now, owner),
                EngineTimer::Call(t) => self.on_call_timer(now, owner, t),
            }
        }
    }
}
