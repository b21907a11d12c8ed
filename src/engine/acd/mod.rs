//! ACD: queues, agent states, skill-based selection, ring-no-answer and wrap-up, sans IO.
//!
//! The switch engine owns one `Acd` and drives it like every other state machine here:
//! call a method with `now`, then drain `poll_action()` (things the engine must do: INVITE
//! or CANCEL an agent, play a prompt) and `poll_event()` (records to persist), then sleep
//! until `poll_timeout()` and call `handle_timeout(now)`. The ACD never reads a clock, never
//! does IO and has no randomness: the same inputs give the same outputs.
//!
//! ```text
//! engine                                   Acd
//! caller picks a queue   -- enqueue ------> Queued event, PlayHold, maybe Offer
//! Offer{call,agent}      <-- poll_action --  (engine INVITEs the agent's contacts)
//! agent 200 OK           -- offer_answered > AgentAnswered, maybe PlayApology
//! agent 486/603/error    -- offer_failed --> next agent
//! (ring timer, ACD's)                       CancelOffer + agent NotReady(missed_call) + next
//! either side hangs up   -- call_ended ----> agent WrapUp, WrapUpEnded by timer or ready code
//! caller hangs up early  -- abandon -------> Abandoned (short if < 5 s)
//! ```
//!
//! Documented choices:
//! * `login` puts the agent straight into Ready (a softphone that logs in wants calls).
//! * Busy / Rejected / Failed offers return the agent to Ready (keeping their idle time),
//!   and that agent is not offered the same call again; NoAnswer (ring timeout, or the engine
//!   reporting 408/480) makes the agent NotReady("missed_call").
//! * A not-ready / logout request (or a lost registration) while on a call is applied when
//!   wrap-up ends; during wrap-up it ends wrap-up at once; while ringing it cancels the offer.
//! * The repeat caller's last agent (within `repeat_window_ms`, refreshed at answer and at
//!   hang-up) is offered first if Ready and eligible for the call by the usual rules.
//! * Selection order: see `select.rs`. Invariant kept after every input: no Ready agent is
//!   eligible for a waiting call, so routing only looks at the one call or agent that changed.
//! * Expected wait = position * average handle time / logged-in agents serving the queue,
//!   where the average is over the last `handle_time_samples` (talk + ACW) of the queue
//!   (the queue's `default_handle_time_ms` until one exists). Announcements (every
//!   `announce_every_ms`, the first one that long after queueing) are made only when the
//!   expected wait is at least `announce_min_wait_s`.
//! * Max wait counts from entry into the current queue; an overflow queue starts its own
//!   count (overflow chains are acyclic, checked at load). If the call is ringing an agent
//!   when max wait is reached, the offer is allowed to finish first.
//! * Apology: on answer when `now - first queued_at > apology_after_ms`.
//! * Nobody to take the call (`when_no_agents`): a waiting call is "unstaffed" when no agent
//!   who could *ever* take it is logged in: a member of the queue (eligible at some
//!   relaxation step, so an agent who qualifies only after a relaxation counts, since the
//!   call would reach them by waiting) who speaks the call's language. Logged in means any
//!   state but LoggedOut: an agent on a break or in wrap-up will come back. Agents who
//!   refused this one call still count. Unstaffed calls of a queue with "overflow" or
//!   "close" get a grace timer (`no_agents_grace_ms`) when they enter the queue, when they
//!   come back from an offer, and when the last such agent logs out or loses their
//!   registration (every waiting call of the queue is re-armed). A login that staffs the
//!   call cancels it; at expiry the call is re-checked, then moved to the overflow queue or
//!   closed (closing prompt + callback, like max wait), with reason `no_agents`. The
//!   overflow queue applies its own rules afresh (its own grace, its own `when_no_agents`;
//!   chains are acyclic). The check is O(1): per queue, a count of logged-in members and of
//!   logged-in members per language, updated when an agent logs in or out.

pub mod agent;
pub mod queue;
mod select;
mod timers;

pub use agent::{AgentProfile, AgentState};
pub use queue::{MaxWaitPolicy, NoAgentsPolicy, QueueSet, QueueSpec, Relaxation, VipRules};

use crate::engine::Millis;
use agent::{Agent, Command, Effect, Pending};
use queue::{min_step, HandleTimes};
use select::{AgentIdx, ReadyIndex, WaitIndex, WaitKey};
use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use timers::{Timer, Timers};

/// Abandons shorter than this are "short" (excluded from service level, METRICS.md).
pub const SHORT_ABANDON_MS: u64 = 5_000;

/// A call entering a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedCall {
    /// The engine's key for the call.
    pub call: u64,
    pub caller: String,
    pub queue: String,
    /// Language skill the agent must have, if any ("en", "zh").
    pub language: Option<String>,
    /// Higher is served first; the config's VIP boost is added by `enqueue`.
    pub priority: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferOutcome {
    NoAnswer,
    Busy,
    Rejected,
    Failed,
}

impl OfferOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferOutcome::NoAnswer => "no_answer",
            OfferOutcome::Busy => "busy",
            OfferOutcome::Rejected => "rejected",
            OfferOutcome::Failed => "failed",
        }
    }
}

/// Why a call left its queue without an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// It waited the queue's `max_wait_ms`.
    MaxWait,
    /// Nobody logged in could take it, for the queue's grace period (`when_no_agents`).
    NoAgents,
}

impl ExitReason {
    /// The persisted name (calls.end_reason / calls.overflow_reason).
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::MaxWait => "max_wait",
            ExitReason::NoAgents => "no_agents",
        }
    }
}

/// Where a call goes when it leaves its queue without an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitThen {
    Overflow { queue: String },
    Closing { prompt: String, callback: bool },
}

/// What the engine must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcdAction {
    /// INVITE the agent's registered contacts for this call.
    Offer {
        call: u64,
        agent: String,
        attempt: u32,
        ring_timeout_ms: u64,
    },
    /// CANCEL the INVITE of this offer (ring timeout, caller gone, agent went away).
    CancelOffer {
        call: u64,
        agent: String,
    },
    /// Play the queue's hold audio to the caller (on entering a queue).
    PlayHold {
        call: u64,
        prompt: String,
    },
    Announce {
        call: u64,
        position: usize,
        expected_wait_s: u64,
    },
    PlayApology {
        call: u64,
        prompt: String,
    },
    /// The call leaves its queue without an agent (max wait, or nobody to take it).
    QueueExit {
        call: u64,
        reason: ExitReason,
        then: ExitThen,
    },
}

/// Records to persist (agent_state_changes, offer_attempts, call timestamps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcdEvent {
    AgentState {
        agent: String,
        at: Millis,
        state: &'static str,
        reason: Option<String>,
    },
    Queued {
        call: u64,
        queue: String,
        at: Millis,
    },
    OfferStarted {
        call: u64,
        agent: String,
        attempt: u32,
        at: Millis,
    },
    OfferEnded {
        call: u64,
        agent: String,
        attempt: u32,
        at: Millis,
        outcome: &'static str,
    },
    AgentAnswered {
        call: u64,
        agent: String,
        at: Millis,
    },
    WrapUpEnded {
        call: u64,
        agent: String,
        at: Millis,
    },
    Abandoned {
        call: u64,
        at: Millis,
        short: bool,
    },
    /// The call left its queue without an agent: moved to `overflow_to`, or left with a
    /// callback request.
    QueueExit {
        call: u64,
        at: Millis,
        reason: ExitReason,
        overflow_to: Option<String>,
    },
}

/// A refused command or an input that does not match the ACD's view (stale or duplicate).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcdError {
    #[error("unknown agent `{0}`")]
    UnknownAgent(String),
    #[error("unknown queue `{0}`")]
    UnknownQueue(String),
    #[error("call {0} is not in the ACD")]
    UnknownCall(u64),
    #[error("call {0} is already in the ACD")]
    DuplicateCall(u64),
    #[error("agent `{0}` is already logged in")]
    AlreadyLoggedIn(String),
    #[error("agent `{0}` is not logged in")]
    NotLoggedIn(String),
    #[error("agent `{0}` is already ready")]
    AlreadyReady(String),
    #[error("agent `{0}` is ringing or on a call")]
    Busy(String),
    #[error("call {call} is not being offered to agent `{agent}`")]
    NotOffered { call: u64, agent: String },
    #[error("call {0} is not connected to an agent")]
    NotConnected(u64),
    #[error("call {0} is connected; end it with call_ended")]
    Connected(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallState {
    Waiting,
    Offering(AgentIdx),
    Connected(AgentIdx),
}

#[derive(Clone, Debug)]
struct Call {
    caller: String,
    queue: usize,
    language: Option<String>,
    priority: i32,
    first_queued_at: Millis,
    key: WaitKey,
    step: usize,
    state: CallState,
    attempt: u32,
    /// Agents who answered busy/rejected/failed for this call in this queue.
    refused: Vec<AgentIdx>,
    max_wait_due: bool,
}

/// A queue the agent serves: index, first eligible relaxation step, level in its skill.
#[derive(Clone, Copy, Debug)]
struct Serve {
    q: usize,
    min_step: usize,
    level: u8,
}

#[derive(Debug, Default)]
struct QueueRt {
    ready: ReadyIndex,
    waiting: WaitIndex,
    handle: HandleTimes,
    /// Agents serving this queue (eligible at some step).
    members: Vec<AgentIdx>,
    /// Members logged in (any state but LoggedOut).
    staffed: usize,
    /// Members logged in, per language they speak.
    staffed_lang: HashMap<String, usize>,
}

pub struct Acd {
    set: Arc<QueueSet>,
    names: Vec<String>,
    specs: Vec<QueueSpec>,
    q_index: HashMap<String, usize>,
    rt: Vec<QueueRt>,
    agents: Vec<Agent>,
    serves: Vec<Vec<Serve>>,
    by_id: HashMap<String, AgentIdx>,
    calls: HashMap<u64, Call>,
    timers: Timers,
    seq: u64,
    /// Caller -> (their last agent, when).
    owners: HashMap<String, (AgentIdx, Millis)>,
    owner_log: VecDeque<(Millis, String)>,
    actions: VecDeque<AcdAction>,
    events: VecDeque<AcdEvent>,
}

impl Acd {
    /// Agents listing unknown queues simply do not serve them (agents.toml validation names
    /// them); a repeated agent id keeps its first profile.
    pub fn new(set: Arc<QueueSet>, agents: Vec<AgentProfile>) -> Acd {
        let names: Vec<String> = set.names().map(str::to_string).collect();
        let specs: Vec<QueueSpec> = names.iter().filter_map(|n| set.get(n).cloned()).collect();
        let q_index: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let mut rt: Vec<QueueRt> = names.iter().map(|_| QueueRt::default()).collect();
        let mut acd_agents = Vec::new();
        let mut serves = Vec::new();
        let mut by_id = HashMap::new();
        for p in agents {
            if by_id.contains_key(&p.id) {
                continue;
            }
            let idx = acd_agents.len();
            let mut sv: Vec<Serve> = Vec::new();
            for qn in &p.queues {
                let Some(&q) = q_index.get(qn) else { continue };
                if sv.iter().any(|s| s.q == q) {
                    continue;
                }
                let spec = &specs[q];
                if let Some(ms) = min_step(spec, set.steps(qn), &p.skills) {
                    sv.push(Serve {
                        q,
                        min_step: ms,
                        level: p.skills.get(&spec.skill).copied().unwrap_or(0),
                    });
                    rt[q].members.push(idx);
                }
            }
            by_id.insert(p.id.clone(), idx);
            acd_agents.push(Agent::new(p));
            serves.push(sv);
        }
        Acd {
            set,
            names,
            specs,
            q_index,
            rt,
            agents: acd_agents,
            serves,
            by_id,
            calls: HashMap::new(),
            timers: Timers::default(),
            seq: 0,
            owners: HashMap::new(),
            owner_log: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn queues(&self) -> &Arc<QueueSet> {
        &self.set
    }

    pub fn poll_action(&mut self) -> Option<AcdAction> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<AcdEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    pub fn agent_state(&self, agent: &str) -> Option<&AgentState> {
        self.by_id.get(agent).map(|&a| &self.agents[a].state)
    }

    /// Calls waiting (not ringing) in `queue`.
    pub fn waiting(&self, queue: &str) -> usize {
        self.q_index
            .get(queue)
            .map_or(0, |&q| self.rt[q].waiting.len())
    }

    /// Ready agents serving `queue`.
    pub fn ready_agents(&self, queue: &str) -> usize {
        self.q_index
            .get(queue)
            .map_or(0, |&q| self.rt[q].ready.len())
    }

    /// Calls the ACD holds (waiting, ringing or connected).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    // ---- agent commands -------------------------------------------------------------

    pub fn login(&mut self, now: Millis, agent: &str) -> Result<(), AcdError> {
        let a = self.agent_idx(agent)?;
        self.agents[a].check(Command::Login)?;
        self.agents[a].pending = None;
        self.enter_ready(now, a, false);
        Ok(())
    }

    /// The ready code: NotReady -> Ready, or ends wrap-up early.
    pub fn set_ready(&mut self, now: Millis, agent: &str) -> Result<(), AcdError> {
        let a = self.agent_idx(agent)?;
        match self.agents[a].check(Command::Ready)? {
            Effect::EndWrapUp(call) => self.end_wrap_up(now, a, call, Some(AgentState::Ready)),
            _ => self.enter_ready(now, a, false),
        }
        Ok(())
    }

    pub fn set_not_ready(
        &mut self,
        now: Millis,
        agent: &str,
        reason: &str,
    ) -> Result<(), AcdError> {
        let a = self.agent_idx(agent)?;
        let effect = self.agents[a].check(Command::NotReady)?;
        self.leave(now, a, effect, AgentState::NotReady(reason.to_string()));
        Ok(())
    }

    pub fn logout(&mut self, now: Millis, agent: &str) -> Result<(), AcdError> {
        let a = self.agent_idx(agent)?;
        let effect = self.agents[a].check(Command::Logout)?;
        self.leave(now, a, effect, AgentState::LoggedOut);
        Ok(())
    }

    /// The agent's last registration expired or was removed: out of routing now (or after
    /// wrap-up if on a call). Not an error when already logged out.
    pub fn registration_lost(&mut self, now: Millis, agent: &str) -> Result<(), AcdError> {
        let a = self.agent_idx(agent)?;
        if self.agents[a].state == AgentState::LoggedOut {
            return Ok(());
        }
        let effect = self.agents[a].check(Command::Logout)?;
        self.leave(now, a, effect, AgentState::LoggedOut);
        Ok(())
    }

    // ---- call inputs ----------------------------------------------------------------

    pub fn enqueue(&mut self, now: Millis, qc: QueuedCall) -> Result<(), AcdError> {
        if self.calls.contains_key(&qc.call) {
            return Err(AcdError::DuplicateCall(qc.call));
        }
        let q = self.queue_idx(&qc.queue)?;
        let mut priority = qc.priority;
        if self.set.vip.is_vip(&qc.caller) {
            priority = priority.saturating_add(self.set.vip.priority_boost);
        }
        let call = Call {
            caller: qc.caller,
            queue: q,
            language: qc.language,
            priority,
            first_queued_at: now,
            key: WaitKey {
                priority: Reverse(priority),
                entered_at: now,
                seq: 0,
            },
            step: 0,
            state: CallState::Waiting,
            attempt: 0,
            refused: Vec::new(),
            max_wait_due: false,
        };
        self.calls.insert(qc.call, call);
        self.enter_queue(now, qc.call, q);
        Ok(())
    }

    /// The caller hung up before an agent answered.
    pub fn abandon(&mut self, now: Millis, call: u64) -> Result<(), AcdError> {
        let c = self.calls.get(&call).ok_or(AcdError::UnknownCall(call))?;
        match c.state {
            CallState::Connected(_) => return Err(AcdError::Connected(call)),
            CallState::Offering(a) => {
                self.finish_offer(now, call, a, "cancelled");
                self.push_cancel(call, a);
                self.unwait(call);
                self.enter_ready(now, a, true);
            }
            CallState::Waiting => self.unwait(call),
        }
        if let Some(c) = self.forget_call(call) {
            self.events.push_back(AcdEvent::Abandoned {
                call,
                at: now,
                short: now.since(c.first_queued_at) < SHORT_ABANDON_MS,
            });
        }
        Ok(())
    }

    pub fn offer_answered(&mut self, now: Millis, call: u64, agent: &str) -> Result<(), AcdError> {
        let a = self.agent_idx(agent)?;
        self.check_offer(call, a)?;
        self.timers.cancel(Timer::Ring(call));
        self.finish_offer(now, call, a, "answered");
        self.cancel_wait_timers(call);
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(AcdError::UnknownCall(call));
        };
        c.state = CallState::Connected(a);
        let waited = now.since(c.first_queued_at);
        let caller = c.caller.clone();
        let spec = &self.specs[c.queue];
        let apology = (spec.apology_after_ms > 0 && waited > spec.apology_after_ms)
            .then(|| spec.apology_prompt.clone());
        let wrap_queue = self.names[c.queue].clone();
        self.events.push_back(AcdEvent::AgentAnswered {
            call,
            agent: agent.to_string(),
            at: now,
        });
        if let Some(prompt) = apology {
            self.actions
                .push_back(AcdAction::PlayApology { call, prompt });
        }
        self.agents[a].answered_at = now;
        self.agents[a].wrap_queue = wrap_queue;
        self.set_state(now, a, AgentState::OnCall { call });
        self.remember_owner(now, caller, a);
        Ok(())
    }

    pub fn offer_failed(
        &mut self,
        now: Millis,
        call: u64,
        agent: &str,
        outcome: OfferOutcome,
    ) -> Result<(), AcdError> {
        let a = self.agent_idx(agent)?;
        self.check_offer(call, a)?;
        self.timers.cancel(Timer::Ring(call));
        self.offer_lost(now, call, a, outcome);
        Ok(())
    }

    /// The agent leg is over (either side hung up): the agent enters wrap-up.
    pub fn call_ended(&mut self, now: Millis, call: u64) -> Result<(), AcdError> {
        let c = self.calls.get(&call).ok_or(AcdError::UnknownCall(call))?;
        let CallState::Connected(a) = c.state else {
            return Err(AcdError::NotConnected(call));
        };
        let caller = c.caller.clone();
        self.forget_call(call);
        self.start_wrap_up(now, a, call);
        self.remember_owner(now, caller, a);
        Ok(())
    }

    /// Moves a call to another queue: a waiting call keeps waiting there, a ringing offer is
    /// cancelled, and a connected call (agent's blind transfer) frees its agent into wrap-up.
    pub fn transfer_to_queue(
        &mut self,
        now: Millis,
        call: u64,
        queue: &str,
    ) -> Result<(), AcdError> {
        let q = self.queue_idx(queue)?;
        let c = self.calls.get(&call).ok_or(AcdError::UnknownCall(call))?;
        match c.state {
            CallState::Waiting => self.unwait(call),
            CallState::Offering(a) => {
                self.timers.cancel(Timer::Ring(call));
                self.finish_offer(now, call, a, "cancelled");
                self.push_cancel(call, a);
                self.unwait(call);
                self.enter_ready(now, a, true);
            }
            CallState::Connected(a) => self.start_wrap_up(now, a, call),
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::Waiting;
        }
        self.enter_queue(now, call, q);
        Ok(())
    }

    /// Blind transfer to one agent (an extension): the call is offered to that agent at once.
    /// If they do not take it (ring timeout, busy), it goes on in its queue as usual. The
    /// agent must be Ready: a transfer never double-books anyone.
    pub fn transfer_to_agent(
        &mut self,
        now: Millis,
        call: u64,
        agent: &str,
    ) -> Result<(), AcdError> {
        let a = *self
            .by_id
            .get(agent)
            .ok_or_else(|| AcdError::UnknownAgent(agent.to_string()))?;
        if !self.agents[a].is_ready() {
            return Err(AcdError::Busy(agent.to_string()));
        }
        let c = self.calls.get(&call).ok_or(AcdError::UnknownCall(call))?;
        match c.state {
            CallState::Waiting => self.unwait(call),
            CallState::Offering(b) => {
                self.timers.cancel(Timer::Ring(call));
                self.finish_offer(now, call, b, "cancelled");
                self.push_cancel(call, b);
                self.unwait(call);
                self.enter_ready(now, b, true);
            }
            CallState::Connected(b) => self.start_wrap_up(now, b, call),
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::Waiting;
        }
        self.offer(now, call, a);
        Ok(())
    }

    /// Runs every timer due at `now` (ring timeouts, wrap-up ends, relaxation steps,
    /// announcements, max wait).
    pub fn handle_timeout(&mut self, now: Millis) {
        while let Some(t) = self.timers.pop_due(now) {
            match t {
                Timer::Ring(call) => self.ring_timeout(now, call),
                Timer::WrapUp(a) => {
                    if let AgentState::WrapUp { call } = self.agents[a].state {
                        self.end_wrap_up(now, a, call, None);
                    }
                }
                Timer::Relax(call) => self.relax(now, call),
                Timer::Announce(call) => self.announce(now, call),
                Timer::MaxWait(call) => self.max_wait(now, call),
                Timer::NoAgents(call) => self.no_agents(now, call),
            }
        }
    }

    /// Expected wait of a waiting call in seconds (see the module doc).
    pub fn expected_wait_s(&self, call: u64) -> Option<u64> {
        let c = self.calls.get(&call)?;
        let pos = self.rt[c.queue].waiting.position(c.key, call);
        Some(self.estimate_s(c.queue, pos))
    }

    /// Checks the ACD's internal consistency; for tests (O(agents * calls)).
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut holders: HashMap<u64, usize> = HashMap::new();
        for (a, ag) in self.agents.iter().enumerate() {
            if let AgentState::Reserved { call } | AgentState::OnCall { call } = ag.state {
                if let Some(other) = holders.insert(call, a) {
                    return Err(format!("call {call} held by agents {other} and {a}"));
                }
                let expect = match ag.state {
                    AgentState::Reserved { .. } => CallState::Offering(a),
                    _ => CallState::Connected(a),
                };
                if self.calls.get(&call).map(|c| c.state) != Some(expect) {
                    return Err(format!(
                        "agent {a} state {:?} disagrees with call",
                        ag.state
                    ));
                }
            }
            for s in &self.serves[a] {
                let inx = self.rt[s.q].ready.contains(s.level, ag.ready_since, a);
                if inx != ag.is_ready() {
                    return Err(format!("agent {a} ready index mismatch in queue {}", s.q));
                }
            }
        }
        for (id, c) in &self.calls {
            let waiting = self.rt[c.queue]
                .waiting
                .contains(&c.language, c.step, c.key, *id);
            if waiting != (c.state == CallState::Waiting) {
                return Err(format!("call {id} wait index mismatch"));
            }
            match c.state {
                CallState::Offering(a) | CallState::Connected(a) => {
                    if self.agents[a].state.call() != Some(*id) {
                        return Err(format!("call {id} points at agent {a} who is elsewhere"));
                    }
                }
                CallState::Waiting => {
                    if !c.max_wait_due {
                        if let Some(a) = (0..self.agents.len())
                            .find(|&a| self.agents[a].is_ready() && self.eligible(a, c))
                        {
                            return Err(format!("call {id} waits while agent {a} is ready for it"));
                        }
                    }
                }
            }
        }
        for (q, rt) in self.rt.iter().enumerate() {
            let logged_in: Vec<AgentIdx> = rt
                .members
                .iter()
                .copied()
                .filter(|&a| self.agents[a].state != AgentState::LoggedOut)
                .collect();
            if logged_in.len() != rt.staffed {
                return Err(format!(
                    "queue {q}: staffed {} != {}",
                    rt.staffed,
                    logged_in.len()
                ));
            }
            for (l, &n) in &rt.staffed_lang {
                let real = logged_in
                    .iter()
                    .filter(|&&a| self.agents[a].profile.languages.contains(l))
                    .count();
                if real != n {
                    return Err(format!("queue {q}: staffed in {l} {n} != {real}"));
                }
            }
        }
        for (id, c) in &self.calls {
            let armed = self.timers.is_set(Timer::NoAgents(*id));
            let needs = c.state == CallState::Waiting
                && !c.max_wait_due
                && !self.staffed(c)
                && self.specs[c.queue].when_no_agents != NoAgentsPolicy::Wait;
            if needs && !armed {
                return Err(format!(
                    "call {id} has nobody to take it and no grace timer"
                ));
            }
            if armed && c.state == CallState::Waiting && self.staffed(c) {
                return Err(format!("call {id} is staffed but its grace timer runs"));
            }
        }
        let total: usize = self.rt.iter().map(|r| r.waiting.len()).sum();
        let waiting = self
            .calls
            .values()
            .filter(|c| c.state == CallState::Waiting)
            .count();
        if total != waiting {
            return Err(format!("{total} indexed waiting calls, {waiting} waiting"));
        }
        Ok(())
    }

    // ---- internals ------------------------------------------------------------------

    fn agent_idx(&self, id: &str) -> Result<AgentIdx, AcdError> {
        self.by_id
            .get(id)
            .copied()
            .ok_or_else(|| AcdError::UnknownAgent(id.to_string()))
    }

    fn queue_idx(&self, name: &str) -> Result<usize, AcdError> {
        self.q_index
            .get(name)
            .copied()
            .ok_or_else(|| AcdError::UnknownQueue(name.to_string()))
    }

    fn check_offer(&self, call: u64, a: AgentIdx) -> Result<(), AcdError> {
        match self.calls.get(&call).map(|c| c.state) {
            Some(CallState::Offering(x)) if x == a => Ok(()),
            Some(_) => Err(AcdError::NotOffered {
                call,
                agent: self.agents[a].profile.id.clone(),
            }),
            None => Err(AcdError::UnknownCall(call)),
        }
    }

    /// Changes an agent's state: keeps the ready indexes right and records the change.
    fn set_state(&mut self, now: Millis, a: AgentIdx, st: AgentState) {
        let was_ready = self.agents[a].is_ready();
        let since = self.agents[a].ready_since;
        if was_ready {
            for s in &self.serves[a] {
                self.rt[s.q].ready.remove(s.level, since, a);
            }
        }
        let changed = self.agents[a].state != st;
        let was_in = self.agents[a].state != AgentState::LoggedOut;
        let now_in = st != AgentState::LoggedOut;
        self.agents[a].state = st;
        if self.agents[a].is_ready() {
            for s in &self.serves[a] {
                self.rt[s.q].ready.insert(s.level, since, a);
            }
        }
        if changed {
            let ag = &self.agents[a];
            self.events.push_back(AcdEvent::AgentState {
                agent: ag.profile.id.clone(),
                at: now,
                state: ag.state.name(),
                reason: ag.state.reason().map(str::to_string),
            });
        }
        if was_in != now_in {
            self.staffing_changed(now, a, now_in);
        }
    }

    /// Ready, then route: `keep_idle` keeps the idle clock of an agent whose offer failed
    /// for reasons that are not theirs to pay for in the queue order.
    fn enter_ready(&mut self, now: Millis, a: AgentIdx, keep_idle: bool) {
        // Callers never pass a Ready agent, so the agent is in no index while the key changes.
        if !keep_idle || self.agents[a].ready_since == Millis::ZERO {
            self.agents[a].ready_since = now;
        }
        self.set_state(now, a, AgentState::Ready);
        self.route_agent(now, a);
    }

    /// Not-ready / logout / registration loss with the effect `check` chose.
    fn leave(&mut self, now: Millis, a: AgentIdx, effect: Effect, target: AgentState) {
        match effect {
            Effect::Now => self.set_state(now, a, target),
            Effect::CancelOffer(call) => {
                self.timers.cancel(Timer::Ring(call));
                self.finish_offer(now, call, a, "cancelled");
                self.push_cancel(call, a);
                self.set_state(now, a, target);
                self.back_to_waiting(now, call);
            }
            Effect::EndWrapUp(call) => self.end_wrap_up(now, a, call, Some(target)),
            Effect::Defer => {
                self.agents[a].pending = Some(match target {
                    AgentState::NotReady(r) => Pending::NotReady(r),
                    _ => Pending::LogOut,
                });
            }
        }
    }

    fn start_wrap_up(&mut self, now: Millis, a: AgentIdx, call: u64) {
        self.agents[a].ended_at = now;
        self.set_state(now, a, AgentState::WrapUp { call });
        let ms = self
            .q_index
            .get(&self.agents[a].wrap_queue)
            .map_or(0, |&q| self.specs[q].wrap_up_ms);
        self.timers.set(Timer::WrapUp(a), now.plus(ms));
    }

    /// Ends wrap-up: to `target` if the agent asked for something, else to what they asked
    /// for during the call, else Ready.
    fn end_wrap_up(&mut self, now: Millis, a: AgentIdx, call: u64, target: Option<AgentState>) {
        self.timers.cancel(Timer::WrapUp(a));
        let ag = &mut self.agents[a];
        self.events.push_back(AcdEvent::WrapUpEnded {
            call,
            agent: ag.profile.id.clone(),
            at: now,
        });
        let handled = now.since(ag.answered_at);
        if let Some(&q) = self.q_index.get(&ag.wrap_queue) {
            let keep = self.set.handle_time_samples;
            self.rt[q].handle.push(handled, keep);
        }
        let pending = ag.pending.take();
        let target = target.or(match pending {
            Some(Pending::NotReady(r)) => Some(AgentState::NotReady(r)),
            Some(Pending::LogOut) => Some(AgentState::LoggedOut),
            None => None,
        });
        match target {
            Some(AgentState::Ready) | None => self.enter_ready(now, a, false),
            Some(st) => self.set_state(now, a, st),
        }
    }

    fn push_cancel(&mut self, call: u64, a: AgentIdx) {
        self.actions.push_back(AcdAction::CancelOffer {
            call,
            agent: self.agents[a].profile.id.clone(),
        });
    }

    fn finish_offer(&mut self, now: Millis, call: u64, a: AgentIdx, outcome: &'static str) {
        let attempt = self.calls.get(&call).map_or(0, |c| c.attempt);
        self.events.push_back(AcdEvent::OfferEnded {
            call,
            agent: self.agents[a].profile.id.clone(),
            attempt,
            at: now,
            outcome,
        });
    }

    fn ring_timeout(&mut self, now: Millis, call: u64) {
        if let Some(CallState::Offering(a)) = self.calls.get(&call).map(|c| c.state) {
            self.push_cancel(call, a);
            self.offer_lost(now, call, a, OfferOutcome::NoAnswer);
        }
    }

    /// An offer ended without an answer: the agent moves on per `outcome`, the call goes
    /// back to its place in the queue and to the next agent.
    fn offer_lost(&mut self, now: Millis, call: u64, a: AgentIdx, outcome: OfferOutcome) {
        self.finish_offer(now, call, a, outcome.as_str());
        if outcome == OfferOutcome::NoAnswer {
            self.set_state(now, a, AgentState::NotReady("missed_call".into()));
            self.back_to_waiting(now, call);
        } else {
            if let Some(c) = self.calls.get_mut(&call) {
                c.refused.push(a);
            }
            self.back_to_waiting(now, call);
            self.enter_ready(now, a, true);
        }
    }

    /// The call is in no offer any more: back into its queue (same place), max wait if it
    /// fell due while ringing, else route it.
    fn back_to_waiting(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.state = CallState::Waiting;
        self.rt[c.queue]
            .waiting
            .insert(&c.language, c.step, c.key, call);
        if c.max_wait_due {
            self.max_wait(now, call);
        } else {
            self.route_call(now, call);
            self.check_staffed(now, call);
        }
    }

    /// Puts a (Waiting-state) call into queue `q` as a new entry and arms its timers.
    fn enter_queue(&mut self, now: Millis, call: u64, q: usize) {
        self.seq += 1;
        let seq = self.seq;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.queue = q;
        c.key = WaitKey {
            priority: Reverse(c.priority),
            entered_at: now,
            seq,
        };
        c.step = 0;
        c.refused.clear();
        c.max_wait_due = false;
        c.state = CallState::Waiting;
        self.rt[q].waiting.insert(&c.language, c.step, c.key, call);
        self.cancel_wait_timers(call);
        let spec = &self.specs[q];
        self.events.push_back(AcdEvent::Queued {
            call,
            queue: spec.name.clone(),
            at: now,
        });
        self.actions.push_back(AcdAction::PlayHold {
            call,
            prompt: spec.hold_prompt.clone(),
        });
        if let Some(r) = spec.relax.first() {
            self.timers.set(Timer::Relax(call), now.plus(r.after_ms));
        }
        if spec.announce_every_ms > 0 {
            self.timers
                .set(Timer::Announce(call), now.plus(spec.announce_every_ms));
        }
        if spec.max_wait_ms > 0 {
            self.timers
                .set(Timer::MaxWait(call), now.plus(spec.max_wait_ms));
        }
        self.route_call(now, call);
        self.check_staffed(now, call);
    }

    fn cancel_wait_timers(&mut self, call: u64) {
        self.timers.cancel(Timer::Relax(call));
        self.timers.cancel(Timer::Announce(call));
        self.timers.cancel(Timer::MaxWait(call));
        self.timers.cancel(Timer::NoAgents(call));
    }

    fn unwait(&mut self, call: u64) {
        if let Some(c) = self.calls.get(&call) {
            self.rt[c.queue]
                .waiting
                .remove(&c.language, c.step, c.key, call);
        }
    }

    fn forget_call(&mut self, call: u64) -> Option<Call> {
        self.cancel_wait_timers(call);
        self.timers.cancel(Timer::Ring(call));
        self.calls.remove(&call)
    }

    fn relax(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let spec = &self.specs[c.queue];
        if c.step < spec.relax.len() {
            // Waiting calls live in a bucket per step: move it.
            let w = &mut self.rt[c.queue].waiting;
            let moved = w.remove(&c.language, c.step, c.key, call);
            c.step += 1;
            if moved {
                w.insert(&c.language, c.step, c.key, call);
            }
        }
        if let Some(next) = spec.relax.get(c.step) {
            let at = c.key.entered_at.plus(next.after_ms);
            self.timers.set(Timer::Relax(call), at.max(now));
        }
        if c.state == CallState::Waiting {
            self.route_call(now, call);
        }
    }

    fn announce(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let spec = &self.specs[c.queue];
        if spec.announce_every_ms > 0 {
            self.timers
                .set(Timer::Announce(call), now.plus(spec.announce_every_ms));
        }
        if c.state != CallState::Waiting {
            return;
        }
        let position = self.rt[c.queue].waiting.position(c.key, call);
        let expected_wait_s = self.estimate_s(c.queue, position);
        if expected_wait_s >= spec.announce_min_wait_s {
            self.actions.push_back(AcdAction::Announce {
                call,
                position,
                expected_wait_s,
            });
        }
    }

    fn estimate_s(&self, q: usize, position: usize) -> u64 {
        let rt = &self.rt[q];
        let aht = rt.handle.average_ms(self.specs[q].default_handle_time_ms);
        let staffed = rt.staffed.max(1) as u64;
        aht.saturating_mul(position as u64) / staffed / 1000
    }

    fn max_wait(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match c.state {
            CallState::Connected(_) => return,
            CallState::Offering(_) => {
                c.max_wait_due = true;
                return;
            }
            CallState::Waiting => {}
        }
        let policy = self.specs[c.queue].on_max_wait.clone();
        match policy {
            MaxWaitPolicy::Overflow { queue } => {
                self.exit_to_overflow(now, call, ExitReason::MaxWait, queue)
            }
            MaxWaitPolicy::Closing { prompt } => {
                self.exit_closing(now, call, ExitReason::MaxWait, prompt)
            }
        }
    }

    /// The no-agents grace period of a call is over: re-check, then the queue's policy.
    fn no_agents(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Waiting || self.staffed(c) {
            return;
        }
        let spec = &self.specs[c.queue];
        let closing = spec.closing_prompt.clone();
        match (spec.when_no_agents, spec.overflow_queue()) {
            (NoAgentsPolicy::Wait, _) => {}
            (NoAgentsPolicy::Overflow, Some(queue)) => {
                let queue = queue.to_string();
                self.exit_to_overflow(now, call, ExitReason::NoAgents, queue);
            }
            (NoAgentsPolicy::Overflow, None) | (NoAgentsPolicy::Close, _) => {
                self.exit_closing(now, call, ExitReason::NoAgents, closing);
            }
        }
    }

    /// A waiting call moves to `queue` (which starts its own timers and checks).
    fn exit_to_overflow(&mut self, now: Millis, call: u64, reason: ExitReason, queue: String) {
        self.unwait(call);
        self.actions.push_back(AcdAction::QueueExit {
            call,
            reason,
            then: ExitThen::Overflow {
                queue: queue.clone(),
            },
        });
        self.events.push_back(AcdEvent::QueueExit {
            call,
            at: now,
            reason,
            overflow_to: Some(queue.clone()),
        });
        if let Some(&q) = self.q_index.get(&queue) {
            self.enter_queue(now, call, q);
        }
    }

    /// A waiting call leaves the ACD: closing prompt and a callback request.
    fn exit_closing(&mut self, now: Millis, call: u64, reason: ExitReason, prompt: String) {
        self.unwait(call);
        self.forget_call(call);
        self.actions.push_back(AcdAction::QueueExit {
            call,
            reason,
            then: ExitThen::Closing {
                prompt,
                callback: true,
            },
        });
        self.events.push_back(AcdEvent::QueueExit {
            call,
            at: now,
            reason,
            overflow_to: None,
        });
    }

    /// Is someone logged in who could ever take this call (see the module doc)?
    fn staffed(&self, c: &Call) -> bool {
        let rt = &self.rt[c.queue];
        match &c.language {
            None => rt.staffed > 0,
            Some(l) => rt.staffed_lang.get(l).is_some_and(|&n| n > 0),
        }
    }

    /// Keeps the no-agents grace timer of a call right: armed (once; a running grace is not
    /// restarted) while it waits unstaffed in a queue that does not just wait, else off.
    fn check_staffed(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let spec = &self.specs[c.queue];
        let needs = c.state == CallState::Waiting
            && spec.when_no_agents != NoAgentsPolicy::Wait
            && !self.staffed(c);
        if !needs {
            self.timers.cancel(Timer::NoAgents(call));
        } else if !self.timers.is_set(Timer::NoAgents(call)) {
            self.timers
                .set(Timer::NoAgents(call), now.plus(spec.no_agents_grace_ms));
        }
    }

    /// Agent `a` logged in (`joined`) or out: update the staffing counts of their queues;
    /// where a count reaches zero, arm the grace timer of every waiting call it leaves
    /// unstaffed; where it leaves zero, cancel the timers of the calls it staffs again.
    fn staffing_changed(&mut self, now: Millis, a: AgentIdx, joined: bool) {
        let langs: Vec<String> = self.agents[a].profile.languages.iter().cloned().collect();
        for i in 0..self.serves[a].len() {
            let q = self.serves[a][i].q;
            let rt = &mut self.rt[q];
            let bump = |n: &mut usize| {
                let was = *n;
                *n = if joined {
                    was + 1
                } else {
                    was.saturating_sub(1)
                };
                // Did the count cross zero (0 -> 1 on join, 1 -> 0 on leave)?
                (was == 0) == joined && (was == 0 || *n == 0)
            };
            let all = bump(&mut rt.staffed);
            let mut crossed: Vec<&String> = Vec::new();
            for l in &langs {
                if bump(rt.staffed_lang.entry(l.clone()).or_default()) {
                    crossed.push(l);
                }
            }
            if !all && crossed.is_empty() {
                continue;
            }
            let affected = rt.waiting.calls_where(|lang| match lang {
                None => all,
                Some(l) => crossed.contains(&l),
            });
            for call in affected {
                self.check_staffed(now, call);
            }
        }
    }

    fn remember_owner(&mut self, now: Millis, caller: String, a: AgentIdx) {
        let window = self.set.repeat_window_ms;
        while let Some((at, _)) = self.owner_log.front() {
            if now.since(*at) <= window {
                break;
            }
            if let Some((at, who)) = self.owner_log.pop_front() {
                if self.owners.get(&who).is_some_and(|(_, t)| *t == at) {
                    self.owners.remove(&who);
                }
            }
        }
        if window == 0 || caller.is_empty() {
            return;
        }
        self.owners.insert(caller.clone(), (a, now));
        self.owner_log.push_back((now, caller));
    }

    /// May agent `a` (in any state) take call `c` at its current step?
    fn eligible(&self, a: AgentIdx, c: &Call) -> bool {
        let ok_queue = self.serves[a]
            .iter()
            .any(|s| s.q == c.queue && s.min_step <= c.step);
        ok_queue
            && c.language
                .as_ref()
                .is_none_or(|l| self.agents[a].profile.languages.contains(l))
            && !c.refused.contains(&a)
    }

    /// Offers a waiting call to its best Ready agent, if any.
    fn route_call(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Waiting {
            return;
        }
        let owner = self
            .owners
            .get(&c.caller)
            .filter(|(_, at)| now.since(*at) <= self.set.repeat_window_ms)
            .map(|(a, _)| *a);
        let pick = select::best_agent(&self.rt[c.queue].ready, owner, |a| {
            self.agents[a].is_ready() && self.eligible(a, c)
        });
        if let Some(a) = pick {
            self.offer(now, call, a);
        }
    }

    /// Offers a Ready agent the best waiting call across the queues they serve, if any.
    fn route_agent(&mut self, now: Millis, a: AgentIdx) {
        if !self.agents[a].is_ready() {
            return;
        }
        let mut best: Option<(select::CrossKey, u64)> = None;
        for s in &self.serves[a] {
            let langs = &self.agents[a].profile.languages;
            let found = self.rt[s.q].waiting.first_eligible(
                |lang, step| step >= s.min_step && lang.as_ref().is_none_or(|l| langs.contains(l)),
                |id| self.calls.get(&id).is_some_and(|c| !c.refused.contains(&a)),
            );
            if let Some((k, id)) = found {
                let ck = select::cross_key(self.specs[s.q].priority, k);
                if best.as_ref().is_none_or(|(b, _)| ck < *b) {
                    best = Some((ck, id));
                }
            }
        }
        if let Some((_, call)) = best {
            self.offer(now, call, a);
        }
    }

    fn offer(&mut self, now: Millis, call: u64, a: AgentIdx) {
        self.unwait(call);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.state = CallState::Offering(a);
        c.attempt += 1;
        let attempt = c.attempt;
        let ring_timeout_ms = self.specs[c.queue].ring_timeout_ms;
        self.timers
            .set(Timer::Ring(call), now.plus(ring_timeout_ms));
        self.set_state(now, a, AgentState::Reserved { call });
        let agent = self.agents[a].profile.id.clone();
        self.events.push_back(AcdEvent::OfferStarted {
            call,
            agent: agent.clone(),
            attempt,
            at: now,
        });
        self.actions.push_back(AcdAction::Offer {
            call,
            agent,
            attempt,
            ring_timeout_ms,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acd() -> Acd {
        let mut q = QueueSpec::new("tech", "tech", 1);
        q.wrap_up_ms = 0;
        let vip = VipRules {
            numbers: ["+1vip".to_string()].into(),
            prefixes: vec![],
            priority_boost: 7,
        };
        let set = QueueSet::new(vec![q], vip, 1000, 2).unwrap();
        let agent = AgentProfile {
            id: "a".into(),
            skills: [("tech".to_string(), 2)].into(),
            languages: Default::default(),
            queues: vec!["tech".into(), "unknown".into()],
        };
        Acd::new(Arc::new(set), vec![agent.clone(), agent])
    }

    fn qc(call: u64, caller: &str) -> QueuedCall {
        QueuedCall {
            call,
            caller: caller.into(),
            queue: "tech".into(),
            language: None,
            priority: 0,
        }
    }

    #[test]
    fn stale_and_unknown_inputs_are_refused() {
        let mut acd = acd();
        let t = Millis(10);
        assert_eq!(
            acd.enqueue(
                t,
                QueuedCall {
                    queue: "x".into(),
                    ..qc(1, "+1")
                }
            ),
            Err(AcdError::UnknownQueue("x".into()))
        );
        acd.enqueue(t, qc(1, "+1")).unwrap();
        assert_eq!(acd.enqueue(t, qc(1, "+1")), Err(AcdError::DuplicateCall(1)));
        assert_eq!(acd.call_ended(t, 1), Err(AcdError::NotConnected(1)));
        assert_eq!(acd.call_ended(t, 9), Err(AcdError::UnknownCall(9)));
        assert!(matches!(
            acd.offer_answered(t, 1, "a"),
            Err(AcdError::NotOffered { .. })
        ));
        assert_eq!(
            acd.set_ready(t, "a"),
            Err(AcdError::NotLoggedIn("a".into()))
        );
        acd.login(t, "a").unwrap();
        assert_eq!(
            acd.login(t, "a"),
            Err(AcdError::AlreadyLoggedIn("a".into()))
        );
        acd.offer_answered(t, 1, "a").unwrap();
        assert_eq!(acd.abandon(t, 1), Err(AcdError::Connected(1)));
        assert_eq!(acd.set_ready(t, "a"), Err(AcdError::Busy("a".into())));
        acd.check_invariants().unwrap();
    }

    #[test]
    fn vip_boost_and_zero_wrap_up() {
        let mut acd = acd();
        acd.enqueue(Millis(1), qc(1, "+1")).unwrap();
        acd.enqueue(Millis(2), qc(2, "+1vip")).unwrap();
        acd.login(Millis(3), "a").unwrap();
        while let Some(a) = acd.poll_action() {
            if let AcdAction::Offer { call, .. } = a {
                assert_eq!(call, 2);
            }
        }
        acd.offer_answered(Millis(4), 2, "a").unwrap();
        acd.call_ended(Millis(5), 2).unwrap();
        // wrap_up 0: over at the next timeout check, then call 1 is offered.
        assert_eq!(acd.poll_timeout(), Some(Millis(5)));
        acd.handle_timeout(Millis(5));
        assert_eq!(
            acd.agent_state("a"),
            Some(&AgentState::Reserved { call: 1 })
        );
    }

    #[test]
    fn expected_wait_follows_recent_handle_times() {
        let mut acd = acd();
        acd.login(Millis(0), "a").unwrap();
        acd.set_not_ready(Millis(0), "a", "break").unwrap();
        acd.enqueue(Millis(0), qc(1, "+1")).unwrap();
        assert_eq!(
            acd.expected_wait_s(1),
            Some(180),
            "default until samples exist"
        );
        acd.set_ready(Millis(0), "a").unwrap();
        acd.offer_answered(Millis(0), 1, "a").unwrap();
        acd.call_ended(Millis(60_000), 1).unwrap();
        acd.handle_timeout(Millis(60_000));
        acd.set_not_ready(Millis(60_000), "a", "break").unwrap();
        acd.enqueue(Millis(60_000), qc(2, "+2")).unwrap();
        acd.enqueue(Millis(60_000), qc(3, "+3")).unwrap();
        assert_eq!(acd.expected_wait_s(3), Some(120), "2 * 60 s / 1 agent");
        acd.logout(Millis(60_000), "a").unwrap();
        assert_eq!(acd.expected_wait_s(3), Some(120), "no agent counts as one");
        assert_eq!(acd.expected_wait_s(99), None);
    }
}
