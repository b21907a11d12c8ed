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
//! agent's phone gone     -- agent_lost ---> agent NotReady(connection_lost), call re-queued
//! (ring timer, ACD's)                       CancelOffer + agent NotReady(missed_call) + next
//! either side hangs up   -- call_ended ----> agent WrapUp, WrapUpEnded by timer or ready code
//! caller hangs up early  -- abandon -------> Abandoned (short if < 5 s)
//! ```
//!
//! Files: this one holds the types and the inputs above; `waiting` a call in a queue
//! (announcements, relaxation, max wait), `routing` who is offered what, `agent_states`
//! ready / wrap-up transitions, `staffing` queues with nobody to take a call, `select` the
//! indexes routing reads, `invariants` the consistency check the tests run.
//!
//! Documented choices:
//! * `login` puts the agent straight into Ready (a softphone that logs in wants calls).
//! * Busy / Rejected / Failed offers return the agent to Ready (keeping their idle time),
//!   and that agent is not offered the same call again; NoAnswer (ring timeout, or the engine
//!   reporting 408/480) makes the agent NotReady("missed_call").
//! * A not-ready / logout request (or a lost registration) while on a call is applied when
//!   wrap-up ends; during wrap-up it ends wrap-up at once; while ringing it cancels the offer.
//! * An agent who vanishes mid-call (`agent_lost`: the connection their phone used dropped)
//!   goes NotReady("connection_lost") with no wrap-up; the caller goes back to the queue
//!   ranked by their first queueing time if another logged-in agent could take the call,
//!   else leaves the ACD (the engine says goodbye).
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
mod agent_states;
mod figures;
mod invariants;
pub mod queue;
mod routing;
mod select;
mod staffing;
mod timers;
mod waiting;

pub use agent::{AgentProfile, AgentState};
pub use queue::{MaxWaitPolicy, NoAgentsPolicy, QueueSet, QueueSpec, Relaxation, VipRules};

use crate::engine::Millis;
use agent::{Agent, Command, Effect};
use queue::{min_step, HandleTimes};
use select::{AgentIdx, ReadyIndex, WaitIndex, WaitKey};
use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use timers::{Timer, Timers};

/// Abandons shorter than this are "short" (excluded from service level, METRICS.md).
pub const SHORT_ABANDON_MS: u64 = 5_000;

/// The not-ready reason of an agent who vanished mid-call (`Acd::agent_lost`).
pub const CONNECTION_LOST: &str = "connection_lost";

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

    /// The agent of a connected call vanished mid-call (the connection their phone used
    /// dropped: a browser tab closed, a crash). They go NotReady([`CONNECTION_LOST`]) at once,
    /// with no wrap-up (nobody is there to do it; a state they asked for during the call is
    /// dropped), and their part of the call is over (WrapUpEnded now, a handle-time sample).
    /// The caller, who already waited once, goes back to the queue ranked by their first
    /// queueing time (ahead of everyone who came later) when someone else logged in could
    /// take the call; otherwise the call leaves the ACD. Returns whether it was re-queued.
    pub fn agent_lost(&mut self, now: Millis, call: u64) -> Result<bool, AcdError> {
        let c = self.calls.get(&call).ok_or(AcdError::UnknownCall(call))?;
        let CallState::Connected(a) = c.state else {
            return Err(AcdError::NotConnected(call));
        };
        let (q, since) = (c.queue, c.first_queued_at);
        let others = self.staffed_without(c, a);
        let ag = &mut self.agents[a];
        ag.pending = None;
        ag.ended_at = now;
        self.events.push_back(AcdEvent::WrapUpEnded {
            call,
            agent: ag.profile.id.clone(),
            at: now,
        });
        let handled = now.since(ag.answered_at);
        if let Some(&wq) = self.q_index.get(&ag.wrap_queue) {
            let keep = self.set.handle_time_samples;
            self.rt[wq].handle.push(handled, keep);
        }
        self.set_state(now, a, AgentState::NotReady(CONNECTION_LOST.to_string()));
        if !others {
            self.forget_call(call);
            return Ok(false);
        }
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::Waiting;
        }
        self.enter_queue_ranked(now, call, q, since);
        Ok(true)
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
}

#[cfg(test)]
mod tests;
