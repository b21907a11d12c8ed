//! The switch engine: SIP dispatch, the caller-leg flow (answer policy, SDP offer/answer,
//! CANCEL, BYE, re-INVITE hold, INFO digits), the IVR hookup and the records a call leaves.
//! Sans-IO: `handle_input(now, input)`, then `poll_output` until None, then sleep until
//! `poll_timeout`.

mod agent_leg;
mod connection_use;

pub use agent_leg::{announcement, ANNOUNCE_PROMPTS, FEATURE_PROMPTS};

use super::acd::{Acd, AgentProfile, QueueSet};
use super::call::{AcdPhase, Call, CallState, CallTimer, ALL_CALL_TIMERS};
use super::deadlines::DeadlineIndex;
use super::ivr::{IvrAction, IvrGraph, IvrSession};
use super::limits::{Kind, LimitsConfig, Refusal, SourceLimits, Verdict};
use super::media::{Codec, LegId, MediaCommand, MediaEvent, PromptKey};
use super::ports::PortPool;
use super::record::{EndedBy, IvrOutcome, Record};
use super::registrar::Registrar;
use super::time::Millis;
use super::txn::{ClientMatch, ServerMatch, Transactions, TxnConfig, TxnKey, TxnOutput};
use super::{mask_number, Command, Input, Output, Peer};
use crate::config::agents::FeatureCodes;
use crate::config::AgentDirectory;
use crate::proto::dtmf;
use crate::proto::sdp::{self, Direction, Negotiated, SdpError};
use crate::proto::sip::{self, Message, Method, Request, RequestOpts, Response, ResponseOpts};
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum EngineTimer {
    Call(CallTimer),
    ShutdownGrace,
    /// Owner is an agent leg: re-send our 2xx to its re-INVITE until the ACK comes.
    AgentRetransmit2xx,
    /// Owner is an agent leg: 64*T1 without that ACK.
    AgentAckTimeout,
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
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let offset: u16 = rng.random();
        let registrar = Registrar::new(
            cfg.agents.clone(),
            cfg.agents.registrar.to_registrar_config(),
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
            Input::Timeout => {}
        }
        self.drain_acd(now);
        self.drain_txns(now);
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
                EngineTimer::Call(t) => self.on_call_timer(now, owner, t),
            }
        }
    }

    // ---- SIP input ------------------------------------------------------------------------

    fn on_sip(&mut self, now: Millis, peer: Peer, bytes: &[u8]) {
        self.stats.sip_received += 1;
        // Stream keep-alives (RFC 5626 CRLF) are not messages.
        if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return;
        }
        match sip::parse(bytes) {
            Err(e) => {
                self.stats.malformed += 1;
                tracing::warn!(from = %peer.addr, reason = %e.reason, "malformed SIP message");
                let resp = e
                    .salvage
                    .as_ref()
                    .and_then(|s| sip::error_response(s, e.status, &e.reason, peer.addr));
                match resp {
                    Some(b) => self.transmit(peer, b),
                    None => self.stats.malformed_dropped += 1,
                }
            }
            Ok(Message::Request(req)) => self.on_request(now, peer, req),
            Ok(Message::Response(resp)) => self.on_response(now, resp),
        }
    }

    fn server_key(req: &Request) -> TxnKey {
        let via = req.top_via();
        let branch = match &via.branch {
            Some(b) if b.starts_with("z9hG4bK") => b.clone(),
            // RFC 2543 peers: no magic cookie, match on the dialog-ish identifiers instead.
            _ => format!(
                "2543:{}:{}:{}",
                req.call_id,
                req.from.tag.as_deref().unwrap_or(""),
                req.cseq
            ),
        };
        let method = match req.method {
            Method::Ack => "INVITE".to_string(),
            ref m => m.as_str().to_string(),
        };
        TxnKey {
            branch,
            method,
            sent_by: format!("{}:{}", via.host, via.port.unwrap_or(5060)),
        }
    }

    // One argument per part of a SIP response; bundling them would only rename the list.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        now: Millis,
        key: &TxnKey,
        req: &Request,
        peer: Peer,
        status: u16,
        reason: &str,
        opts: ResponseOpts,
    ) -> Bytes {
        let opts = ResponseOpts {
            source: Some(peer.addr),
            ..opts
        };
        let bytes = sip::response(req, status, reason, &opts);
        self.txns.server_respond(now, key, status, bytes.clone());
        bytes
    }

    /// Stateless-looking answers for requests that get one final response and nothing else.
    fn reply(
        &mut self,
        now: Millis,
        key: &TxnKey,
        req: &Request,
        peer: Peer,
        status: u16,
        reason: &str,
    ) {
        let extra = match status {
            405 | 501 => vec![("Allow", ALLOW.to_string())],
            _ => vec![],
        };
        let to_tag = if req.to.tag.is_none() && status >= 200 {
            Some(self.new_tag())
        } else {
            None
        };
        let opts = ResponseOpts {
            to_tag: to_tag.as_deref(),
            extra_headers: extra,
            ..Default::default()
        };
        self.respond(now, key, req, peer, status, reason, opts);
    }

    /// 481: the request names a dialog or transaction we do not have (RFC 3261 12.2.2).
    fn reply_no_dialog(&mut self, now: Millis, key: &TxnKey, req: &Request, peer: Peer) {
        self.reply(now, key, req, peer, 481, "Call/Transaction Does Not Exist");
    }

    fn on_request(&mut self, now: Millis, peer: Peer, req: Request) {
        let key = Self::server_key(&req);
        let is_ack = req.method == Method::Ack;
        match self.txns.server_request(now, &key, is_ack) {
            ServerMatch::New => {}
            ServerMatch::AckMatched => return,
            _ => {
                self.stats.retransmissions += 1;
                return;
            }
        }
        if is_ack {
            if !self.on_agent_ack(&req) {
                self.on_ack(now, req);
            }
            return;
        }
        // After the transaction match, so retransmissions never cost a token.
        if !self.screen_source(now, peer, &key, &req) {
            return;
        }
        self.txns
            .server_create(now, key.clone(), peer, req.method == Method::Invite);

        if req.max_forwards == Some(0) {
            return self.reply(now, &key, &req, peer, 483, "Too Many Hops");
        }
        let uri = req.uri.to_ascii_lowercase();
        if !(uri.starts_with("sip:") || uri.starts_with("sips:") || uri.starts_with("tel:")) {
            return self.reply(now, &key, &req, peer, 416, "Unsupported URI Scheme");
        }
        if req.method != Method::Cancel {
            if let Some(required) = req.header("Require") {
                // We support no extensions (RFC 3261 8.2.2.3).
                let required = required.to_string();
                let to_tag = self.new_tag();
                let opts = ResponseOpts {
                    to_tag: Some(&to_tag),
                    extra_headers: vec![("Unsupported", required)],
                    ..Default::default()
                };
                self.respond(now, &key, &req, peer, 420, "Bad Extension", opts);
                return;
            }
        }

        let span = self
            .dialog_of(&req)
            .or_else(|| {
                let invite_key = TxnKey {
                    method: "INVITE".to_string(),
                    ..key.clone()
                };
                self.by_invite.get(&invite_key).copied()
            })
            .and_then(|k| self.calls.get(&k))
            .map(|c| c.span.clone());
        let _entered = span.as_ref().map(|s| s.enter());
        if req.to.tag.is_some() && self.on_agent_request(now, peer, &key, &req) {
            return;
        }
        match req.method {
            Method::Register => self.on_register(now, peer, key, req),
            Method::Invite if req.to.tag.is_none() => self.on_new_invite(now, peer, key, req),
            Method::Invite => self.on_reinvite(now, peer, key, req),
            Method::Cancel => self.on_cancel(now, peer, key, req),
            Method::Bye => self.on_bye(now, peer, key, req),
            Method::Info => self.on_info(now, peer, key, req),
            Method::Options => self.on_options(now, peer, key, req),
            Method::Other(_) => self.reply(now, &key, &req, peer, 501, "Not Implemented"),
            _ if req.to.tag.is_some() && self.dialog_of(&req).is_none() => {
                self.reply_no_dialog(now, &key, &req, peer)
            }
            _ => self.reply(now, &key, &req, peer, 405, "Method Not Allowed"),
        }
    }

    /// Per-source limits (`limits.rs`) for requests that would create state: new INVITEs
    /// and REGISTERs. False when the request was answered 503 or is to be ignored.
    fn screen_source(&mut self, now: Millis, peer: Peer, key: &TxnKey, req: &Request) -> bool {
        let kind = match req.method {
            Method::Invite if req.to.tag.is_none() => Kind::Invite,
            Method::Register => Kind::Register,
            _ => return true,
        };
        let verdict = self.limits.check(now, peer.addr.ip(), kind);
        self.stats.sources_banned = self.limits.banned() as u64;
        match verdict {
            Verdict::Allow => true,
            Verdict::Ignore => {
                self.stats.source_ignored += 1;
                false
            }
            Verdict::Refuse { why, retry_after_s } => {
                match why {
                    Refusal::Rate => self.stats.source_rate_limited += 1,
                    Refusal::Concurrency => self.stats.source_over_concurrency += 1,
                }
                // A server transaction, so retransmissions get this 503 again for free.
                self.txns
                    .server_create(now, key.clone(), peer, kind == Kind::Invite);
                let to_tag = self.new_tag();
                let opts = ResponseOpts {
                    to_tag: Some(&to_tag),
                    extra_headers: vec![("Retry-After", retry_after_s.to_string())],
                    ..Default::default()
                };
                self.respond(now, key, req, peer, 503, "Service Unavailable", opts);
                false
            }
        }
    }

    fn dialog_of(&self, req: &Request) -> Option<u64> {
        let remote_tag = req.from.tag.clone().unwrap_or_default();
        let key = self.by_dialog.get(&(req.call_id.clone(), remote_tag))?;
        let call = self.calls.get(key)?;
        match &req.to.tag {
            Some(t) if *t == call.local_tag => Some(*key),
            _ => None,
        }
    }

    fn on_options(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        if req.to.tag.is_some() && self.dialog_of(&req).is_none() {
            return self.reply_no_dialog(now, &key, &req, peer);
        }
        let to_tag = if req.to.tag.is_none() {
            Some(self.new_tag())
        } else {
            None
        };
        let opts = ResponseOpts {
            to_tag: to_tag.as_deref(),
            extra_headers: vec![
                ("Allow", ALLOW.to_string()),
                ("Accept", "application/sdp".to_string()),
                ("Accept-Language", "en, zh".to_string()),
            ],
            ..Default::default()
        };
        self.respond(now, &key, &req, peer, 200, "OK", opts);
    }

    // ---- new calls --------------------------------------------------------------------------

    fn on_new_invite(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let remote_tag = req.from.tag.clone().unwrap_or_default();
        let dialog = (req.call_id.clone(), remote_tag.clone());
        if let Some(existing) = self.by_dialog.get(&dialog).and_then(|k| self.calls.get(k)) {
            // RFC 3261 8.2.2.2: the same request reached us by another path.
            if existing.invite.cseq == req.cseq && existing.invite_key != key {
                return self.reply(now, &key, &req, peer, 482, "Loop Detected");
            }
            return self.reply(now, &key, &req, peer, 400, "Dialog Already Exists");
        }

        let feature = match self.screen_invite(now, peer, &key, &req) {
            Ok(f) => f,
            Err(()) => return,
        };
        if self.shutting_down {
            return self.reject_call(
                now,
                peer,
                key,
                req,
                503,
                "Service Unavailable",
                "rejected_shutdown",
            );
        }
        if self.active_calls() >= self.cfg.max_calls {
            return self.reject_call(
                now,
                peer,
                key,
                req,
                503,
                "Service Unavailable",
                "rejected_busy",
            );
        }

        let offer = if req.body.is_empty() {
            None
        } else {
            let ct = req
                .content_type
                .as_deref()
                .unwrap_or("")
                .to_ascii_lowercase();
            if !ct.starts_with("application/sdp") {
                let to_tag = self.new_tag();
                let opts = ResponseOpts {
                    to_tag: Some(&to_tag),
                    extra_headers: vec![("Accept", "application/sdp".to_string())],
                    ..Default::default()
                };
                self.respond(now, &key, &req, peer, 415, "Unsupported Media Type", opts);
                return;
            }
            match sdp::parse(&req.body).and_then(|s| sdp::negotiate(&s)) {
                Ok(n) => Some(n),
                Err(SdpError::Malformed(why)) => {
                    let reason = format!("Malformed SDP: {why}");
                    return self.reject_call(now, peer, key, req, 400, &reason, "bad_sdp");
                }
                Err(_) => {
                    return self.reject_call(
                        now,
                        peer,
                        key,
                        req,
                        488,
                        "Not Acceptable Here",
                        "no_codec",
                    )
                }
            }
        };

        let Some(rtp_port) = self.ports.allocate() else {
            return self.reject_call(
                now,
                peer,
                key,
                req,
                503,
                "Service Unavailable",
                "no_rtp_port",
            );
        };

        let call_key = self.next_call;
        self.next_call += 1;
        let leg = self.next_leg;
        self.next_leg += 1;
        let call_id = format!("{:012x}-{:08x}", now.as_u64(), self.rng.random::<u32>());
        let local_tag = self.new_tag();
        let caller = req
            .from
            .user
            .clone()
            .unwrap_or_else(|| req.from.uri.clone());
        let dialled = req.uri_user.clone().unwrap_or_default();
        let span = tracing::info_span!("call", id = %call_id);
        let _entered = span.enter();
        tracing::info!(caller = %mask_number(&caller), dialled = %dialled,
            transport = peer.transport.as_str(), "call arrived");

        self.stats.calls_started += 1;
        self.persist(Record::CallStarted {
            call_id: call_id.clone(),
            sip_call_id: req.call_id.clone(),
            caller,
            dialled,
            transport: peer.transport.as_str().to_string(),
            arrived_at: now,
            ring_cycle_ms: self.cfg.ring_cycle_ms,
        });

        // 100 at once stops the caller's INVITE retransmissions; 180 starts the ring.
        self.respond(
            now,
            &key,
            &req,
            peer,
            100,
            "Trying",
            ResponseOpts::default(),
        );
        let (codec, te) = match &offer {
            Some(n) => (n.codec, n.telephone_event_pt),
            None => (Codec::Pcmu, Some(101)),
        };
        self.media(MediaCommand::Open {
            leg,
            call_id: call_id.clone(),
            local_port: rtp_port,
            remote: offer.as_ref().and_then(|n| n.remote),
            codec,
            telephone_event_pt: te,
            inactivity_ms: self.cfg.rtp_inactivity_ms,
        });
        let remote_target = req
            .contact
            .as_ref()
            .map(|c| c.uri.clone())
            .unwrap_or_else(|| req.from.uri.clone());
        let route_set: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Record-Route"))
            .flat_map(|(_, v)| split_header_list(v))
            .collect();
        let contact = self.contact(peer);
        let ringing_opts = ResponseOpts {
            to_tag: Some(&local_tag),
            contact: Some(&contact),
            extra_headers: vec![("Allow", ALLOW.to_string())],
            ..Default::default()
        };
        self.respond(now, &key, &req, peer, 180, "Ringing", ringing_opts);
        self.persist(Record::CallRinging {
            call_id: call_id.clone(),
            ringing_at: now,
        });

        let call = Call {
            id: call_id,
            peer,
            invite_key: key.clone(),
            sip_call_id: req.call_id.clone(),
            local_tag,
            remote_tag: remote_tag.clone(),
            remote_target,
            route_set,
            local_cseq: 1,
            remote_cseq: req.cseq,
            state: CallState::Ringing,
            leg,
            rtp_port,
            remote_media: offer,
            sdp_session: self.rng.random::<u32>() as u64,
            sdp_version: 1,
            arrived_at: now,
            answered_at: None,
            ivr: None,
            ivr_seq: 0,
            ivr_left: false,
            current_play: None,
            pending_2xx: None,
            retransmit_interval_ms: self.cfg.txn.t1_ms,
            ack_cseq: req.cseq,
            awaiting_answer_in_ack: false,
            on_hold: false,
            goodbye_play: None,
            goodbye_reason: "shutdown",
            acd: AcdPhase::None,
            queue: None,
            agent_leg: None,
            ivr_path: Vec::new(),
            hold_prompt: None,
            hold_play: None,
            announce_play: None,
            apology_play: None,
            bye_key: None,
            span: span.clone(),
            invite: req,
            feature,
        };
        self.by_dialog.insert(dialog, call_key);
        self.by_invite.insert(key, call_key);
        self.by_leg.insert(leg, call_key);
        self.calls.insert(call_key, call);
        self.limits.call_started(peer.addr.ip());
        let feature_call = self
            .calls
            .get(&call_key)
            .is_some_and(|c| c.feature.is_some());
        let rings = if feature_call {
            0 // An agent's own feature call is not made to wait.
        } else {
            self.cfg.ring_cycle_ms * u64::from(self.cfg.answer_after_rings)
        };
        let answer_at = now.plus(rings);
        if answer_at <= now {
            self.answer(now, call_key);
        } else {
            self.set_timer(call_key, CallTimer::Answer, answer_at);
        }
    }

    /// Refuses a new call with a final response at once (a caller is never left ringing)
    /// and records that it came.
    #[allow(clippy::too_many_arguments)]
    fn reject_call(
        &mut self,
        now: Millis,
        peer: Peer,
        key: TxnKey,
        req: Request,
        status: u16,
        reason: &str,
        why: &str,
    ) {
        self.stats.calls_rejected += 1;
        let call_id = format!("{:012x}-{:08x}", now.as_u64(), self.rng.random::<u32>());
        let caller = req
            .from
            .user
            .clone()
            .unwrap_or_else(|| req.from.uri.clone());
        tracing::info!(call = %call_id, caller = %mask_number(&caller), status, why, "call refused");
        self.persist(Record::CallStarted {
            call_id: call_id.clone(),
            sip_call_id: req.call_id.clone(),
            caller,
            dialled: req.uri_user.clone().unwrap_or_default(),
            transport: peer.transport.as_str().to_string(),
            arrived_at: now,
            ring_cycle_ms: self.cfg.ring_cycle_ms,
        });
        let to_tag = self.new_tag();
        let extra = if status == 503 {
            vec![("Retry-After", "30".to_string())]
        } else {
            vec![]
        };
        let opts = ResponseOpts {
            to_tag: Some(&to_tag),
            extra_headers: extra,
            ..Default::default()
        };
        self.respond(now, &key, &req, peer, status, reason, opts);
        self.persist(Record::CallEnded {
            call_id,
            ended_at: now,
            ended_by: EndedBy::System,
            reason: why.to_string(),
            final_status: status,
        });
    }

    /// Sends the final non-2xx response to a call's INVITE while it is still ringing (CANCEL,
    /// early BYE, media failure, shutdown). `retry_after_s` adds Retry-After (for 503).
    fn refuse_ringing(
        &mut self,
        now: Millis,
        call_key: u64,
        status: u16,
        reason: &str,
        retry_after_s: Option<u32>,
    ) {
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        let (key, invite, peer, tag) = (
            call.invite_key.clone(),
            call.invite.clone(),
            call.peer,
            call.local_tag.clone(),
        );
        let opts = ResponseOpts {
            to_tag: Some(&tag),
            extra_headers: retry_after_s
                .map(|s| vec![("Retry-After", s.to_string())])
                .unwrap_or_default(),
            ..Default::default()
        };
        self.respond(now, &key, &invite, peer, status, reason, opts);
    }

    fn contact(&self, peer: Peer) -> String {
        match peer.transport {
            super::Transport::Udp => format!("<sip:ccswitch@{}>", self.cfg.sent_by),
            super::Transport::Tcp => format!("<sip:ccswitch@{};transport=tcp>", self.cfg.sent_by),
        }
    }

    fn local_sdp(&mut self, call_key: u64) -> Option<Bytes> {
        let media_ip = self.cfg.media_ip;
        let call = self.calls.get_mut(&call_key)?;
        call.sdp_version += 1;
        Some(match &call.remote_media {
            Some(n) => sdp::answer(
                media_ip,
                call.rtp_port,
                call.sdp_session,
                call.sdp_version,
                n,
            ),
            None => sdp::offer(media_ip, call.rtp_port, call.sdp_session, call.sdp_version),
        })
    }

    /// The answer policy fired: send 200 OK and start the IVR.
    fn answer(&mut self, now: Millis, call_key: u64) {
        let Some(body) = self.local_sdp(call_key) else {
            return;
        };
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        if call.state != CallState::Ringing {
            return;
        }
        let (peer, key, invite) = (call.peer, call.invite_key.clone(), call.invite.clone());
        let local_tag = call.local_tag.clone();
        let offerless = call.remote_media.is_none();
        let contact = self.contact(peer);
        let opts = ResponseOpts {
            to_tag: Some(&local_tag),
            contact: Some(&contact),
            extra_headers: vec![("Allow", ALLOW.to_string())],
            body: Some(("application/sdp", &body)),
            ..Default::default()
        };
        let ok = self.respond(now, &key, &invite, peer, 200, "OK", opts);
        self.arm_2xx_retransmission(now, call_key, ok, invite.cseq);

        let ring_cycle = self.cfg.ring_cycle_ms;
        let graph = self.cfg.ivr.clone();
        let lang = self.cfg.default_language.clone();
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        call.state = CallState::Answered;
        call.answered_at = Some(now);
        call.awaiting_answer_in_ack = offerless;
        let within = now.since(call.arrived_at) <= 3 * ring_cycle;
        let call_id = call.id.clone();
        let dialled = call.invite.uri_user.clone().unwrap_or_default();
        let feature = call.feature.clone();
        if feature.is_none() {
            let entry = graph.entry_for(&dialled).to_string();
            call.ivr = Some(IvrSession::start(graph, &entry, now, &lang));
        }
        tracing::info!(call = %call_id, within_three_rings = within, "call answered");
        self.persist(Record::CallAnswered {
            call_id,
            answered_at: now,
            within_three_rings: within,
        });
        if let Some(prompt) = feature {
            // The confirmation for a feature code, then our BYE.
            self.say_goodbye(now, call_key, now.plus(30_000), &prompt);
            if let Some(c) = self.calls.get_mut(&call_key) {
                c.goodbye_reason = "feature_code";
            }
            return;
        }
        self.drive_ivr(now, call_key);
    }

    fn arm_2xx_retransmission(&mut self, now: Millis, call_key: u64, ok: Bytes, cseq: u32) {
        let t1 = self.cfg.txn.t1_ms;
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        call.pending_2xx = Some(ok);
        call.ack_cseq = cseq;
        call.retransmit_interval_ms = t1;
        let reliable = call.peer.transport.is_reliable();
        if !reliable {
            self.set_timer(call_key, CallTimer::Retransmit2xx, now.plus(t1));
        }
        self.set_timer(call_key, CallTimer::AckTimeout, now.plus(64 * t1));
    }

    fn on_call_timer(&mut self, now: Millis, call_key: u64, timer: CallTimer) {
        let span = self.calls.get(&call_key).map(|c| c.span.clone());
        let _entered = span.as_ref().map(|s| s.enter());
        match timer {
            CallTimer::Answer => self.answer(now, call_key),
            CallTimer::Retransmit2xx => {
                let t2 = self.cfg.txn.t2_ms;
                let Some(call) = self.calls.get_mut(&call_key) else {
                    return;
                };
                let Some(ok) = call.pending_2xx.clone() else {
                    return;
                };
                call.retransmit_interval_ms = (call.retransmit_interval_ms * 2).min(t2);
                let (peer, next) = (call.peer, now.plus(call.retransmit_interval_ms));
                self.stats.retransmissions += 1;
                self.transmit(peer, ok);
                self.set_timer(call_key, CallTimer::Retransmit2xx, next);
            }
            CallTimer::AckTimeout => {
                let Some(call) = self.calls.get_mut(&call_key) else {
                    return;
                };
                call.pending_2xx = None;
                self.cancel_timer(call_key, CallTimer::Retransmit2xx);
                self.end_call(now, call_key, EndedBy::System, "ack_timeout", true);
            }
            CallTimer::Ivr => {
                if let Some(ivr) = self.calls.get_mut(&call_key).and_then(|c| c.ivr.as_mut()) {
                    ivr.on_timeout(now);
                }
                self.drive_ivr(now, call_key);
            }
            CallTimer::GoodbyeDeadline => {
                let reason = self
                    .calls
                    .get(&call_key)
                    .map_or("shutdown", |c| c.goodbye_reason);
                self.end_call(now, call_key, EndedBy::System, reason, true);
            }
        }
    }

    // ---- in-dialog requests ---------------------------------------------------------------

    fn on_ack(&mut self, now: Millis, req: Request) {
        let Some(call_key) = self.dialog_of(&req) else {
            return; // ACK to nothing: RFC 3261 says drop it silently.
        };
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        if call.pending_2xx.is_none() || req.cseq != call.ack_cseq {
            return;
        }
        call.pending_2xx = None;
        let wants_answer = call.awaiting_answer_in_ack;
        call.awaiting_answer_in_ack = false;
        self.cancel_timer(call_key, CallTimer::Retransmit2xx);
        self.cancel_timer(call_key, CallTimer::AckTimeout);
        if wants_answer {
            match sdp::parse(&req.body).and_then(|s| sdp::negotiate(&s)) {
                Ok(n) => self.apply_remote_media(now, call_key, n),
                Err(e) => {
                    tracing::warn!(error = %e, "no usable SDP answer in ACK");
                    self.end_call(now, call_key, EndedBy::System, "no_sdp_answer", true);
                }
            }
        }
    }

    /// A new remote description: where to send, which codec, and whether the caller holds us.
    fn apply_remote_media(&mut self, now: Millis, call_key: u64, n: Negotiated) {
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let hold =
            matches!(n.direction, Direction::SendOnly | Direction::Inactive) || n.remote.is_none();
        let send = !hold;
        let was_hold = call.on_hold;
        call.on_hold = hold;
        let (leg, call_id) = (call.leg, call.id.clone());
        let cmd = MediaCommand::Update {
            leg,
            remote: n.remote,
            codec: n.codec,
            telephone_event_pt: n.telephone_event_pt,
            send,
        };
        call.remote_media = Some(n);
        self.media(cmd);
        if hold && !was_hold {
            self.persist(Record::HoldStarted { call_id, at: now });
        } else if !hold && was_hold {
            self.persist(Record::HoldEnded { call_id, at: now });
        }
    }

    fn on_reinvite(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let Some(call_key) = self.dialog_of(&req) else {
            return self.reply_no_dialog(now, &key, &req, peer);
        };
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        if call.state != CallState::Answered {
            return self.reply_no_dialog(now, &key, &req, peer);
        }
        if req.cseq <= call.remote_cseq {
            return self.reply(now, &key, &req, peer, 500, "CSeq Out Of Order");
        }
        if call.pending_2xx.is_some() {
            // RFC 3261 14.2: an INVITE of ours is still unacknowledged.
            return self.reply(now, &key, &req, peer, 491, "Request Pending");
        }
        let offer = if req.body.is_empty() {
            None
        } else {
            match sdp::parse(&req.body).and_then(|s| sdp::negotiate(&s)) {
                Ok(n) => Some(n),
                Err(_) => return self.reply(now, &key, &req, peer, 488, "Not Acceptable Here"),
            }
        };
        if let Some(call) = self.calls.get_mut(&call_key) {
            call.remote_cseq = req.cseq;
            if let Some(c) = req.contact.as_ref() {
                call.remote_target = c.uri.clone();
            }
        }
        let offerless = offer.is_none();
        if let Some(n) = offer {
            self.apply_remote_media(now, call_key, n);
        }
        let Some(body) = self.local_sdp(call_key) else {
            return;
        };
        // Offerless re-INVITE: our 2xx carries an offer, the ACK the answer.
        let body = if offerless {
            let Some(call) = self.calls.get_mut(&call_key) else {
                return;
            };
            call.awaiting_answer_in_ack = true;
            sdp::offer(
                self.cfg.media_ip,
                call.rtp_port,
                call.sdp_session,
                call.sdp_version,
            )
        } else {
            body
        };
        let contact = self.contact(peer);
        let opts = ResponseOpts {
            contact: Some(&contact),
            extra_headers: vec![("Allow", ALLOW.to_string())],
            body: Some(("application/sdp", &body)),
            ..Default::default()
        };
        let ok = self.respond(now, &key, &req, peer, 200, "OK", opts);
        self.arm_2xx_retransmission(now, call_key, ok, req.cseq);
    }

    fn on_cancel(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let invite_key = TxnKey {
            method: "INVITE".to_string(),
            ..key.clone()
        };
        let Some(&call_key) = self.by_invite.get(&invite_key) else {
            return self.reply_no_dialog(now, &key, &req, peer);
        };
        self.reply(now, &key, &req, peer, 200, "OK");
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        if call.state != CallState::Ringing {
            return; // Too late: the 200 is out (RFC 3261 9.2).
        }
        self.refuse_ringing(now, call_key, 487, "Request Terminated", None);
        self.end_call_with_status(now, call_key, EndedBy::Caller, "cancel", 487, false);
    }

    fn on_bye(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let Some(call_key) = self.dialog_of(&req) else {
            return self.reply_no_dialog(now, &key, &req, peer);
        };
        self.reply(now, &key, &req, peer, 200, "OK");
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        match call.state {
            CallState::Terminating => {}
            CallState::Ringing => {
                // BYE in the early dialog: the INVITE gets 487 (RFC 3261 15.1.2).
                self.refuse_ringing(now, call_key, 487, "Request Terminated", None);
                self.end_call_with_status(now, call_key, EndedBy::Caller, "bye", 487, false);
            }
            CallState::Answered => self.end_call(now, call_key, EndedBy::Caller, "bye", false),
        }
    }

    fn on_info(&mut self, now: Millis, peer: Peer, key: TxnKey, req: Request) {
        let Some(call_key) = self.dialog_of(&req) else {
            return self.reply_no_dialog(now, &key, &req, peer);
        };
        if req.body.is_empty() {
            return self.reply(now, &key, &req, peer, 200, "OK");
        }
        let ct = req.content_type.clone().unwrap_or_default();
        let lower = ct.to_ascii_lowercase();
        if !lower.starts_with("application/dtmf") {
            return self.reply(now, &key, &req, peer, 415, "Unsupported Media Type");
        }
        match dtmf::parse_info_body(&ct, &req.body) {
            Ok(digit) => {
                self.reply(now, &key, &req, peer, 200, "OK");
                self.on_digit(now, call_key, digit, false);
            }
            Err(_) => self.reply(now, &key, &req, peer, 400, "Bad DTMF Body"),
        }
    }

    // ---- responses to our requests --------------------------------------------------------

    fn on_response(&mut self, now: Millis, resp: Response) {
        let Some(via) = resp.vias.first() else {
            return;
        };
        let key = TxnKey {
            branch: via.branch.clone().unwrap_or_default(),
            method: resp.cseq_method.as_str().to_string(),
            sent_by: String::new(),
        };
        if self.on_agent_response(now, &key, &resp) {
            return;
        }
        match self.txns.client_response(now, &key, resp.status, None) {
            ClientMatch::Pass if resp.status >= 200 => {
                if let Some(call_key) = self.by_bye.remove(&key) {
                    self.remove_call(call_key);
                }
            }
            ClientMatch::Pass => {}
            _ => self.stats.retransmissions += 1,
        }
    }

    // ---- media and digits -----------------------------------------------------------------

    fn on_media(&mut self, now: Millis, ev: MediaEvent) {
        if let MediaEvent::RecordingFinished {
            leg,
            path,
            ok,
            reason,
        } = &ev
        {
            self.on_recording_finished(now, *leg, path, *ok, reason.as_deref());
            return;
        }
        let leg = match &ev {
            MediaEvent::OpenFailed { leg, .. }
            | MediaEvent::Digit { leg, .. }
            | MediaEvent::PlayFinished { leg, .. }
            | MediaEvent::Inactive { leg, .. }
            | MediaEvent::RecordingFinished { leg, .. } => *leg,
        };
        let failed = matches!(ev, MediaEvent::OpenFailed { .. });
        let inactive = matches!(ev, MediaEvent::Inactive { .. });
        if self.on_agent_media(now, leg, failed, inactive) {
            return;
        }
        let Some(&call_key) = self.by_leg.get(&leg) else {
            return;
        };
        let span = self.calls.get(&call_key).map(|c| c.span.clone());
        let _entered = span.as_ref().map(|s| s.enter());
        match ev {
            MediaEvent::OpenFailed { reason, .. } => {
                tracing::error!(reason = %reason, "media leg failed to open");
                let Some(call) = self.calls.get(&call_key) else {
                    return;
                };
                if call.state == CallState::Ringing {
                    self.refuse_ringing(now, call_key, 503, "Service Unavailable", Some(5));
                    let why = format!("error: media: {reason}");
                    self.end_call_with_status(now, call_key, EndedBy::System, &why, 503, false);
                } else {
                    let why = format!("error: media: {reason}");
                    self.end_call(now, call_key, EndedBy::System, &why, true);
                }
            }
            MediaEvent::Digit { digit, at, .. } => {
                self.on_digit(at.min(now), call_key, digit, true)
            }
            MediaEvent::PlayFinished {
                play_id,
                interrupted,
                ..
            } => {
                let Some(call) = self.calls.get_mut(&call_key) else {
                    return;
                };
                if call.current_play.map(|(p, _)| p) == Some(play_id) {
                    call.current_play = None;
                }
                if call.goodbye_play == Some(play_id) {
                    let reason = call.goodbye_reason;
                    self.end_call(now, call_key, EndedBy::System, reason, true);
                    return;
                }
                if self.on_system_play_finished(now, call_key, play_id) {
                    return;
                }
                let Some(call) = self.calls.get_mut(&call_key) else {
                    return;
                };
                if let Some(ivr) = call.ivr.as_mut() {
                    ivr.on_play_finished(now, play_id, interrupted);
                }
                self.drive_ivr(now, call_key);
            }
            MediaEvent::Inactive { .. } => {
                tracing::warn!("no RTP from the caller: ending the call");
                self.end_call(now, call_key, EndedBy::System, "rtp_timeout", true);
            }
            MediaEvent::RecordingFinished { .. } => {} // handled above, call or no call
        }
    }

    /// RFC 4733 and SIP INFO digits take this one path.
    fn on_digit(&mut self, now: Millis, call_key: u64, digit: char, from_rtp: bool) {
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        if call.state != CallState::Answered || call.goodbye_play.is_some() {
            return;
        }
        // The media plane cuts barge-in prompts itself on RTP digits; INFO digits reach it
        // only through us.
        if !from_rtp {
            if let Some((_, true)) = call.current_play {
                let leg = call.leg;
                self.out
                    .push_back(Output::Media(MediaCommand::StopPlay { leg }));
            }
        }
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        if let Some(ivr) = call.ivr.as_mut() {
            ivr.on_digit(now, digit);
        }
        self.drive_ivr(now, call_key);
    }

    fn drive_ivr(&mut self, now: Millis, call_key: u64) {
        let mut actions = Vec::new();
        let deadline;
        {
            let Some(call) = self.calls.get_mut(&call_key) else {
                return;
            };
            if call.ivr_left {
                return;
            }
            let Some(ivr) = call.ivr.as_mut() else {
                return;
            };
            while let Some(a) = ivr.poll_action() {
                actions.push(a);
            }
            deadline = ivr.deadline();
        }
        match deadline {
            Some(at) => self.set_timer(call_key, CallTimer::Ivr, at),
            None => self.cancel_timer(call_key, CallTimer::Ivr),
        }
        for action in actions {
            let Some(call) = self.calls.get_mut(&call_key) else {
                return;
            };
            let (leg, call_id) = (call.leg, call.id.clone());
            match action {
                IvrAction::Play {
                    play_id,
                    prompts,
                    barge_in,
                } => {
                    call.current_play = Some((play_id, barge_in));
                    self.media(MediaCommand::Play {
                        leg,
                        play_id,
                        prompts,
                        looped: false,
                        barge_in,
                    });
                }
                IvrAction::StopPlay => {
                    call.current_play = None;
                    self.media(MediaCommand::StopPlay { leg });
                }
                IvrAction::Step {
                    at,
                    node,
                    kind,
                    digits,
                    detail,
                } => {
                    let seq = call.ivr_seq;
                    call.ivr_seq += 1;
                    // Bounded: a caller looping in a menu must not grow the call forever.
                    if call.ivr_path.len() < 32 {
                        call.ivr_path.push(match &digits {
                            Some(d) => format!("{node}:{d}"),
                            None => node.clone(),
                        });
                    }
                    tracing::debug!(call = %call_id, node = %node, kind, "ivr step");
                    self.persist(Record::IvrStep {
                        call_id,
                        seq,
                        at,
                        node,
                        kind: kind.to_string(),
                        digits,
                        detail,
                    });
                }
                IvrAction::Variable { name, value } => {
                    self.persist(Record::CallVariable {
                        call_id,
                        at: now,
                        name,
                        value,
                    });
                }
                IvrAction::Queue { queue } => {
                    self.enqueue_call(now, call_key, queue);
                    return;
                }
                IvrAction::HangUp { outcome } => {
                    self.leave_ivr(now, call_key, outcome);
                    self.end_call(now, call_key, EndedBy::System, "ivr_hangup", true);
                    return;
                }
            }
        }
    }

    fn leave_ivr(&mut self, now: Millis, call_key: u64, outcome: IvrOutcome) {
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        if call.ivr.is_none() || call.ivr_left {
            return;
        }
        call.ivr_left = true;
        let call_id = call.id.clone();
        self.cancel_timer(call_key, CallTimer::Ivr);
        self.persist(Record::IvrLeft {
            call_id,
            at: now,
            outcome,
        });
    }

    // ---- ending calls ---------------------------------------------------------------------

    fn end_call(&mut self, now: Millis, call_key: u64, by: EndedBy, reason: &str, send_bye: bool) {
        self.end_call_with_status(now, call_key, by, reason, 200, send_bye);
    }

    /// The one way a call ends: IVR outcome, the CallEnded record, media released, and BYE
    /// when we are the side hanging up.
    fn end_call_with_status(
        &mut self,
        now: Millis,
        call_key: u64,
        by: EndedBy,
        reason: &str,
        final_status: u16,
        send_bye: bool,
    ) {
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        if call.state == CallState::Terminating {
            return;
        }
        self.acd_call_over(now, call_key);
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        let resolved = call.ivr.as_ref().is_some_and(|s| s.resolved());
        let outcome = match (resolved, by, reason) {
            (true, _, _) => IvrOutcome::SelfServed,
            (false, EndedBy::Caller, _) | (false, _, "rtp_timeout") => IvrOutcome::AbandonedInIvr,
            _ => IvrOutcome::Failed,
        };
        self.leave_ivr(now, call_key, outcome);
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let was_answered = call.state == CallState::Answered;
        call.state = CallState::Terminating;
        call.pending_2xx = None;
        let (leg, port, call_id) = (call.leg, call.rtp_port, call.id.clone());
        tracing::info!(call = %call_id, ended_by = by.as_str(), reason, "call ended");
        self.persist(Record::CallEnded {
            call_id,
            ended_at: now,
            ended_by: by,
            reason: reason.to_string(),
            final_status,
        });
        self.deadlines
            .cancel_owner(call_key, &ALL_CALL_TIMERS.map(EngineTimer::Call));
        self.media(MediaCommand::Close { leg });
        self.by_leg.remove(&leg);
        self.ports.release(port);
        if send_bye && was_answered {
            self.send_bye(now, call_key);
        } else {
            self.remove_call(call_key);
        }
    }

    fn send_bye(&mut self, now: Millis, call_key: u64) {
        let branch = sip::new_branch(self.rng.random());
        let sent_by = self.cfg.sent_by.clone();
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        call.local_cseq += 1;
        let from = call.local_party();
        let to = call.remote_party();
        let contact = match call.peer.transport {
            super::Transport::Udp => format!("<sip:ccswitch@{sent_by}>"),
            super::Transport::Tcp => format!("<sip:ccswitch@{sent_by};transport=tcp>"),
        };
        let bytes = sip::request(&RequestOpts {
            method: Method::Bye,
            uri: &call.remote_target,
            transport: call.peer.transport,
            sent_by: &sent_by,
            branch: &branch,
            from: &from,
            to: &to,
            call_id: &call.sip_call_id,
            cseq: call.local_cseq,
            contact: Some(&contact),
            route: call.route_set.clone(),
            extra_headers: vec![],
            body: None,
        });
        let key = TxnKey {
            branch,
            method: "BYE".to_string(),
            sent_by: String::new(),
        };
        call.bye_key = Some(key.clone());
        // Symmetric signalling: the BYE goes where the INVITE came from (NAT-safe).
        let peer = call.peer;
        self.by_bye.insert(key.clone(), call_key);
        self.txns.client_send(now, key, peer, false, bytes);
    }

    fn remove_call(&mut self, call_key: u64) {
        let Some(call) = self.calls.remove(&call_key) else {
            return;
        };
        self.limits.call_ended(call.peer.addr.ip());
        self.by_dialog
            .remove(&(call.sip_call_id.clone(), call.remote_tag.clone()));
        self.by_leg.remove(&call.leg);
        if let Some(k) = &call.bye_key {
            self.by_bye.remove(k);
        }
        // by_invite stays until the INVITE transaction terminates (late CANCEL -> 200, no-op).
        self.deadlines
            .cancel_owner(call_key, &ALL_CALL_TIMERS.map(EngineTimer::Call));
    }

    // ---- shutdown -------------------------------------------------------------------------

    fn on_shutdown(&mut self, now: Millis, grace_ms: u64) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        tracing::info!(
            active = self.active_calls(),
            grace_ms,
            "shutting down: refusing new calls"
        );
        self.deadlines
            .set(ENGINE_OWNER, EngineTimer::ShutdownGrace, now.plus(grace_ms));
        let keys: Vec<u64> = self.calls.keys().copied().collect();
        for call_key in keys {
            let Some(call) = self.calls.get(&call_key) else {
                continue;
            };
            match call.state {
                CallState::Terminating => {}
                CallState::Ringing => {
                    self.refuse_ringing(now, call_key, 503, "Service Unavailable", Some(30));
                    self.end_call_with_status(
                        now,
                        call_key,
                        EndedBy::System,
                        "shutdown",
                        503,
                        false,
                    );
                }
                CallState::Answered => {
                    self.say_goodbye(now, call_key, now.plus(grace_ms), "goodbye")
                }
            }
        }
    }

    /// Stop the IVR, play goodbye, hang up when it ends (or at `deadline`).
    fn say_goodbye(&mut self, now: Millis, call_key: u64, deadline: Millis, prompt: &str) {
        let resolved = self
            .calls
            .get(&call_key)
            .and_then(|c| c.ivr.as_ref())
            .is_some_and(|s| s.resolved());
        let outcome = if resolved {
            IvrOutcome::SelfServed
        } else {
            IvrOutcome::Failed
        };
        self.leave_ivr(now, call_key, outcome);
        let play_id = self.next_system_play;
        self.next_system_play += 1;
        let default_lang = self.cfg.default_language.clone();
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        call.goodbye_play = Some(play_id);
        call.current_play = Some((play_id, false));
        let (leg, lang) = (call.leg, call.language(&default_lang));
        self.media(MediaCommand::Play {
            leg,
            play_id,
            prompts: vec![PromptKey {
                id: prompt.to_string(),
                lang,
            }],
            looped: false,
            barge_in: false,
        });
        // Leave a little of the grace period for the BYE transaction itself.
        let bye_at = Millis(deadline.as_u64().saturating_sub(500)).max(now);
        self.set_timer(call_key, CallTimer::GoodbyeDeadline, bye_at);
    }

    fn on_grace_over(&mut self, now: Millis) {
        let keys: Vec<u64> = self.calls.keys().copied().collect();
        for call_key in keys {
            self.end_call(now, call_key, EndedBy::System, "shutdown", true);
        }
    }
}

/// Splits a comma-separated header value, keeping commas inside <...> and quotes.
fn split_header_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    for (i, ch) in value.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                out.push(value[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = value[start..].trim();
    if !last.is_empty() {
        out.push(last.to_string());
    }
    out
}
