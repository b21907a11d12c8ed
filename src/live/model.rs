//! The live read model, sans IO: fed the engine's records and live events (`apply`), the
//! time (`tick`), and once at startup today's calls from the store (`seed_call`); it keeps
//! what the wallboard shows and which sections changed since the hub last looked.
//!
//! Today's figures are recomputed from per-call facts with `kpi` (so they equal
//! `ccswitch report` over `[day_start, now)`): per queue by `queued_at`, IVR figures by
//! `arrived_at`, agents by `agent_answered_at`. A call's figures count under the first queue
//! it entered (METRICS.md). Recomputing is O(today's calls) and happens at most once per
//! `figures()` call after a change, i.e. at most at the hub's update rate.

use super::day::DayClock;
use super::snapshot::Section;
use crate::config::wallboard::Wallboard;
use crate::engine::acd::QueueSet;
use crate::engine::agents::AgentDirectory;
use crate::engine::live::{LiveEvent, QueueCounts};
use crate::engine::record::Record;
use crate::engine::time::Millis;
use crate::kpi::survey::SurveyStats;
use crate::kpi::{self, CallFacts, CallTimes, HoldSpan, ServiceLevelTargets};
use chrono_tz::Tz;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// What the model is built from (all from the config folder).
#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub time_zone: Tz,
    pub wallboard: Wallboard,
    pub queues: Arc<QueueSet>,
    pub agents: Arc<AgentDirectory>,
}

/// Where a call in progress is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallPhase {
    Ivr,
    Queued,
    Offered,
    Talking,
    Held,
}

impl CallPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CallPhase::Ivr => "ivr",
            CallPhase::Queued => "queued",
            CallPhase::Offered => "offered",
            CallPhase::Talking => "talking",
            CallPhase::Held => "held",
        }
    }
}

/// A call in progress.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveCall {
    pub call_id: String,
    /// Masked at entry: the model never holds a full number.
    pub number: String,
    pub phase: CallPhase,
    pub since: Millis,
    pub ivr_node: Option<String>,
    /// The queue the call is in now, and when it entered it.
    pub queue: Option<String>,
    pub queued_at: Option<Millis>,
    pub priority: i32,
    pub language: Option<String>,
    pub agent: Option<String>,
}

/// One of today's calls (or an unfinished older one), as `kpi` wants it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DayCall {
    pub times: CallTimes,
    pub facts: CallFacts,
    pub holds: Vec<HoldSpan>,
    pub last_event_at: Millis,
}

/// An agent of agents.toml and their live state.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveAgent {
    pub extension: String,
    pub name: String,
    pub queues: Vec<String>,
    pub state: String,
    pub reason: Option<String>,
    pub since: Option<Millis>,
    /// (call id, queue, since) of the call the agent holds (offered, talking, wrapping up).
    pub call: Option<(String, Option<String>, Millis)>,
}

pub struct LiveModel {
    pub(super) cfg: ModelConfig,
    pub(super) sl: ServiceLevelTargets,
    pub(super) day: DayClock,
    pub(super) calls: HashMap<String, LiveCall>,
    pub(crate) today: HashMap<String, DayCall>,
    pub(super) agents: Vec<LiveAgent>,
    agent_index: HashMap<String, usize>,
    pub(super) queue_counts: HashMap<String, QueueCounts>,
    /// (queued_at, queue) of queue entries of the last hour, oldest first.
    pub(super) recent: VecDeque<(Millis, String)>,
    /// Today's surveys: all, and per queue (seeded from the store; events add to them).
    pub(super) surveys: SurveyStats,
    pub(super) surveys_by_queue: HashMap<String, SurveyStats>,
    /// Surveys decided today since the start (`SurveyScheduled`): id -> (queue, sent, CSAT).
    /// The survey service reports sending and answers by id.
    pub(super) surveys_live: HashMap<u64, (Option<String>, bool, Option<u8>)>,
    dirty: u8,
    /// Today's figures need recomputing.
    pub(super) stale: bool,
    pub(super) computed: super::today::Computed,
    pub(super) alerts: Vec<super::snapshot::Alert>,
    /// Queue -> when its service level fell under target.
    pub(super) sl_low_since: HashMap<String, Millis>,
}

impl LiveModel {
    pub fn new(cfg: ModelConfig, now: Millis) -> LiveModel {
        let mut sl = ServiceLevelTargets::from_queues(&cfg.queues, None);
        sl.fallback.threshold_ms = cfg.wallboard.targets.service_level_secs * 1000;
        sl.fallback.target_pct = cfg.wallboard.targets.service_level_pct.round() as u8;
        let agents: Vec<LiveAgent> = cfg
            .agents
            .agents
            .iter()
            .map(|a| LiveAgent {
                extension: a.extension.clone(),
                name: a.name.clone(),
                queues: a.queues.clone(),
                state: "logged_out".into(),
                reason: None,
                since: None,
                call: None,
            })
            .collect();
        let agent_index = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.extension.clone(), i))
            .collect();
        LiveModel {
            day: DayClock::new(cfg.time_zone, now),
            cfg,
            sl,
            calls: HashMap::new(),
            today: HashMap::new(),
            agents,
            agent_index,
            queue_counts: HashMap::new(),
            recent: VecDeque::new(),
            surveys: SurveyStats::default(),
            surveys_by_queue: HashMap::new(),
            surveys_live: HashMap::new(),
            // Clients start from a snapshot: nothing is pending at first.
            dirty: 0,
            stale: true,
            computed: Default::default(),
            alerts: Vec::new(),
            sl_low_since: HashMap::new(),
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn day_start(&self) -> Millis {
        self.day.start()
    }

    pub(super) fn mark(&mut self, sections: &[Section]) {
        for s in sections {
            self.dirty |= s.bit();
        }
    }

    /// Today's figures changed: totals, queues, agents (AHT), intervals; alerts follow.
    fn mark_figures(&mut self) {
        self.stale = true;
        self.mark(&[
            Section::Totals,
            Section::Queues,
            Section::Agents,
            Section::Intervals,
        ]);
    }

    /// The sections changed since the last call (bits of `Section::bit`), cleared.
    pub fn take_dirty(&mut self) -> u8 {
        std::mem::take(&mut self.dirty)
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty != 0
    }

    /// A finished call of today from the store (startup seeding).
    pub fn seed_call(&mut self, call_id: String, times: CallTimes, facts: CallFacts) {
        if let (Some(at), Some(q)) = (times.queued_at, &times.queue) {
            self.recent.push_back((at, q.clone()));
        }
        let last = times.ended_at.unwrap_or(times.arrived_at);
        self.today.insert(
            call_id,
            DayCall {
                times,
                facts,
                holds: Vec::new(),
                last_event_at: last,
            },
        );
        self.mark_figures();
    }

    /// Today's surveys from the store (startup seeding): all, and per queue.
    pub fn seed_surveys(&mut self, all: SurveyStats, by_queue: HashMap<String, SurveyStats>) {
        self.surveys = all;
        self.surveys_by_queue = by_queue;
        self.mark_figures();
    }

    /// The survey service sent survey `survey_id`'s question.
    pub fn survey_sent(&mut self, survey_id: u64) {
        if let Some(s) = self.surveys_live.get_mut(&survey_id) {
            if !s.1 {
                s.1 = true;
                self.mark_figures();
            }
        }
    }

    /// Survey `survey_id` got its CSAT answer (1-5); a later answer does not count again.
    pub fn survey_answered(&mut self, survey_id: u64, csat: u8) {
        if let Some(s) = self.surveys_live.get_mut(&survey_id) {
            if s.2.is_none() {
                s.2 = Some(csat);
                self.mark_figures();
            }
        }
    }

    /// Seeded survey figures plus today's surveys seen since the start: all, and per queue.
    pub(super) fn survey_stats(&self) -> (SurveyStats, HashMap<String, SurveyStats>) {
        let mut all = self.surveys;
        let mut by_queue = self.surveys_by_queue.clone();
        for (queue, sent, csat) in self.surveys_live.values() {
            let add = |s: &mut SurveyStats| {
                s.surveys += 1;
                if *sent {
                    s.sent += 1;
                }
                if let Some(c) = csat {
                    s.answered += 1;
                    s.csat_sum += u64::from(*c);
                    if *c >= 4 {
                        s.csat_satisfied += 1;
                    }
                }
            };
            add(&mut all);
            if let Some(q) = queue {
                add(by_queue.entry(q.clone()).or_default());
            }
        }
        (all, by_queue)
    }

    pub fn apply_event(&mut self, ev: &LiveEvent) {
        match ev {
            LiveEvent::QueueFigures { queue, counts } => {
                self.queue_counts.insert(queue.clone(), *counts);
                self.mark(&[Section::Queues]);
            }
            LiveEvent::CallerQueued {
                call_id, language, ..
            } => {
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.language = Some(language.clone());
                }
            }
        }
    }

    pub fn apply(&mut self, rec: &Record) {
        if let Some(id) = rec.call_id() {
            if let Some(d) = self.today.get_mut(id) {
                d.last_event_at = d.last_event_at.max(rec.at());
            }
        }
        match rec {
            Record::CallStarted {
                call_id,
                caller,
                arrived_at,
                ring_cycle_ms,
                ..
            } => {
                let mut d = DayCall::default();
                d.times.arrived_at = *arrived_at;
                d.facts.arrived_at = *arrived_at;
                d.facts.ring_cycle_ms = Some(*ring_cycle_ms);
                d.last_event_at = *arrived_at;
                self.today.insert(call_id.clone(), d);
                self.calls.insert(
                    call_id.clone(),
                    LiveCall {
                        call_id: call_id.clone(),
                        number: crate::engine::mask_number(caller),
                        phase: CallPhase::Ivr,
                        since: *arrived_at,
                        ivr_node: None,
                        queue: None,
                        queued_at: None,
                        priority: 0,
                        language: None,
                        agent: None,
                    },
                );
                self.mark(&[Section::Calls]);
            }
            Record::CallAnswered {
                call_id,
                answered_at,
                ..
            } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.facts.answered_at = Some(*answered_at);
                }
            }
            Record::IvrStep { call_id, node, .. } => {
                if let Some(c) = self.calls.get_mut(call_id) {
                    if c.ivr_node.as_deref() != Some(node) {
                        c.ivr_node = Some(node.clone());
                        self.mark(&[Section::Calls]);
                    }
                }
            }
            Record::IvrLeft {
                call_id, outcome, ..
            } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.facts.ivr_outcome = Some(*outcome);
                }
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.ivr_node = None;
                }
                self.mark_figures();
                self.mark(&[Section::Calls]);
            }
            Record::CallQueued {
                call_id,
                at,
                queue,
                priority,
            } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    if d.times.queued_at.is_none() {
                        d.times.queued_at = Some(*at);
                        d.times.queue = Some(queue.clone());
                    }
                }
                self.recent.push_back((*at, queue.clone()));
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.phase = CallPhase::Queued;
                    c.since = *at;
                    c.queue = Some(queue.clone());
                    c.queued_at = Some(*at);
                    c.priority = *priority;
                    c.ivr_node = None;
                }
                self.mark_figures();
                self.mark(&[Section::Waiting, Section::Calls]);
            }
            Record::OfferStarted {
                call_id, agent, at, ..
            } => {
                let mut queue = None;
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.phase = CallPhase::Offered;
                    c.agent = Some(agent.clone());
                    queue = c.queue.clone();
                }
                if let Some(a) = self.agent_mut(agent) {
                    a.call = Some((call_id.clone(), queue, *at));
                }
                self.mark(&[Section::Waiting, Section::Calls, Section::Agents]);
            }
            Record::OfferEnded {
                call_id, outcome, ..
            } => {
                if outcome != "answered" {
                    let mut agent = None;
                    if let Some(c) = self.calls.get_mut(call_id) {
                        if c.phase == CallPhase::Offered {
                            c.phase = CallPhase::Queued;
                            agent = c.agent.take();
                        }
                    }
                    if let Some(a) = agent.and_then(|a| self.agent_mut(&a)) {
                        if a.call.as_ref().is_some_and(|(id, _, _)| id == call_id) {
                            a.call = None;
                        }
                    }
                    self.mark(&[Section::Waiting, Section::Calls, Section::Agents]);
                }
            }
            Record::AgentAnswered { call_id, agent, at } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.times.agent = Some(agent.clone());
                    d.times.agent_answered_at = Some(*at);
                }
                let mut queue = None;
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.phase = CallPhase::Talking;
                    c.since = *at;
                    c.agent = Some(agent.clone());
                    queue = c.queue.clone();
                }
                if let Some(a) = self.agent_mut(agent) {
                    a.call = Some((call_id.clone(), queue, *at));
                }
                self.mark_figures();
                self.mark(&[Section::Waiting, Section::Calls]);
            }
            Record::HoldStarted { call_id, at } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.holds.push(HoldSpan {
                        started_at: *at,
                        ended_at: None,
                    });
                }
                self.set_phase(call_id, CallPhase::Held, *at);
            }
            Record::HoldEnded { call_id, at } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    if let Some(h) = d.holds.iter_mut().rev().find(|h| h.ended_at.is_none()) {
                        h.ended_at = Some(*at);
                    }
                    d.times.hold_ms = kpi::hold_ms(&d.holds, None, *at);
                }
                self.set_phase(call_id, CallPhase::Talking, *at);
            }
            Record::CallEnded {
                call_id,
                ended_at,
                ended_by,
                ..
            } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.times.ended_at = Some(*ended_at);
                    d.times.ended_by = Some(*ended_by);
                    d.times.hold_ms = kpi::hold_ms(&d.holds, Some(*ended_at), d.last_event_at);
                    d.facts.hold_ms = d.times.hold_ms;
                }
                if let Some(c) = self.calls.remove(call_id) {
                    // An agent still ringing for it is released by their state record.
                    if c.phase == CallPhase::Offered {
                        if let Some(a) = c.agent.as_deref().and_then(|a| self.agent_mut(a)) {
                            a.call = None;
                        }
                    }
                }
                self.mark_figures();
                self.mark(&[Section::Waiting, Section::Calls]);
            }
            Record::WrapUpEnded { call_id, agent, at } => {
                if let Some(d) = self.today.get_mut(call_id) {
                    d.times.wrapup_ended_at = Some(*at);
                }
                if let Some(a) = self.agent_mut(agent) {
                    if a.call.as_ref().is_some_and(|(id, _, _)| id == call_id) {
                        a.call = None;
                    }
                }
                self.mark_figures();
            }
            Record::AgentStateChanged {
                agent,
                at,
                state,
                reason,
            } => {
                if let Some(a) = self.agent_mut(agent) {
                    a.state = state.clone();
                    a.reason = reason.clone();
                    a.since = Some(*at);
                    if matches!(state.as_str(), "ready" | "not_ready" | "logged_out") {
                        a.call = None;
                    }
                }
                self.mark(&[Section::Agents]);
            }
            Record::SurveyScheduled {
                survey_id,
                at,
                queue,
                ..
            } => {
                if *at >= self.day.start() {
                    self.surveys_live
                        .insert(*survey_id, (queue.clone(), false, None));
                    self.mark_figures();
                }
            }
            Record::CallTransferred { .. }
            | Record::CallOverflowed { .. }
            | Record::CallbackRequested { .. }
            | Record::CallRinging { .. }
            | Record::CallVariable { .. }
            | Record::RecordingSaved { .. }
            | Record::SurveySkipped { .. }
            | Record::FollowUpOpened { .. } => {}
        }
    }

    fn set_phase(&mut self, call_id: &str, phase: CallPhase, at: Millis) {
        if let Some(c) = self.calls.get_mut(call_id) {
            c.phase = phase;
            c.since = at;
            self.mark(&[Section::Calls]);
        }
    }

    fn agent_mut(&mut self, ext: &str) -> Option<&mut LiveAgent> {
        let i = *self.agent_index.get(ext)?;
        self.agents.get_mut(i)
    }

    /// Time passes: day rollover at local midnight, the last hour's arrivals, alerts.
    pub fn tick(&mut self, now: Millis) {
        if self.day.roll(now) {
            // Keep calls still in progress (or in wrap-up): the figures filter by time.
            let calls = &self.calls;
            self.today.retain(|id, d| {
                calls.contains_key(id)
                    || (d.times.agent_answered_at.is_some() && d.times.wrapup_ended_at.is_none())
            });
            self.surveys = SurveyStats::default();
            self.surveys_by_queue.clear();
            self.surveys_live.clear();
            self.sl_low_since.clear();
            self.mark_figures();
            self.mark(&Section::ALL);
        }
        let hour_ago = Millis(now.as_u64().saturating_sub(3_600_000));
        let mut pruned = false;
        while self.recent.front().is_some_and(|(at, _)| *at < hour_ago) {
            self.recent.pop_front();
            pruned = true;
        }
        if pruned {
            self.mark(&[Section::Queues]);
        }
        self.refresh_alerts(now);
    }
}
