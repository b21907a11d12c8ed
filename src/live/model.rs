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
use crate::engine::live::QueueCounts;
use crate::engine::time::Millis;
use crate::kpi::survey::SurveyStats;
use crate::kpi::{CallFacts, CallTimes, HoldSpan, ServiceLevelTargets};
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
    pub(super) agent_index: HashMap<String, usize>,
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
    /// The last time `tick` saw: whether a waiting caller has passed the SL threshold.
    pub(super) now: Millis,
    /// Waiting callers past their queue's SL threshold at the last recomputation.
    pub(super) waiting_past_sl: usize,
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
            now,
            waiting_past_sl: 0,
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
    pub(super) fn mark_figures(&mut self) {
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

    /// A caller still waiting counts in the service level once their wait passes the
    /// queue's threshold (they can no longer be answered within it); before that the call is
    /// undecided and left out, or one waiting caller would show today's SL as 0 %.
    pub(super) fn undecided(&self, t: &CallTimes) -> bool {
        self.past_sl_threshold(t) == Some(false)
    }

    /// For a caller still waiting: whether their wait has passed the queue's SL threshold.
    /// None for any other call.
    fn past_sl_threshold(&self, t: &CallTimes) -> Option<bool> {
        if t.agent_answered_at.is_some() || t.ended_at.is_some() {
            return None;
        }
        let (at, q) = (t.queued_at?, t.queue.as_ref()?);
        Some(self.now.as_u64() > at.as_u64() + self.sl.get(q).threshold_ms)
    }

    /// Callers in progress whose wait has passed their queue's SL threshold.
    pub(super) fn count_waiting_past_sl(&self) -> usize {
        self.calls
            .keys()
            .filter_map(|id| self.today.get(id))
            .filter(|d| self.past_sl_threshold(&d.times) == Some(true))
            .count()
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
        self.now = self.now.max(now);
        if self.count_waiting_past_sl() != self.waiting_past_sl {
            self.mark_figures();
        }
        self.refresh_alerts(now);
    }
}
