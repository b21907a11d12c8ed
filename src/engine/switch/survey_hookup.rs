//! Surveys at hang-up (issue 8): the call's service facts, gathered as it goes, become a
//! `CallSummary` when it ends; `SurveyPolicy::decide` says whether and when the caller gets a
//! text, and the decision leaves as records right after the call's `CallEnded`:
//!
//! ```text
//! CallEnded ─> FollowUpOpened (complaint queue, optional) ─> SurveyScheduled | SurveySkipped
//! ```
//!
//! Exactly one decision record per ended call while a policy is set (refused calls too:
//! `not_served`), and it comes last, so the store writer can tell where the group ends and
//! keep it in one batch with the `CallEnded` (`store::writer`). No policy: no survey
//! records at all.
//!
//! Choices:
//! - The agent is the one the caller spoke to last (after a blind transfer, the second);
//!   talk time runs from their answer to the hang-up, or to their transfer.
//! - The queue is the one that agent answered from; a direct transfer to an extension has
//!   none.
//! - The language is the one picked at an IVR language node; none picked: the policy's
//!   default.
//! - The caller is the SIP From user part as received (no user part: anonymous).

use super::Engine;
use crate::engine::call::AgentContact;
use crate::engine::record::{IvrOutcome, Record};
use crate::engine::survey::{
    mask_number, CallOutcome, CallSummary, LedgerFacts, SurveyDecision, SurveyLedger, SurveyPolicy,
};
use crate::engine::time::Millis;
use rand::Rng;
use std::sync::Arc;

/// Queues remembered per call; a call bounced around more than this keeps its first ones.
const MAX_QUEUES_VISITED: usize = 16;

/// The ledger drops send times older than the frequency cap after this many new surveys.
const PRUNE_EVERY: u32 = 4096;

const MS_PER_DAY: u64 = 86_400_000;

/// Surveys after hang-up, for `EngineConfig::surveys`. `Default`: no surveys.
#[derive(Clone, Default)]
pub struct SurveySetup {
    /// `Config.survey`: None means no survey records at all.
    pub policy: Option<Arc<SurveyPolicy>>,
    /// Key of `survey::number_hash` (`Store::number_hash_key`). Secret: never logged.
    pub number_hash_key: Vec<u8>,
    /// What the store knows of earlier surveys and opt-outs (`Store::survey_ledger`).
    pub ledger: LedgerFacts,
}

impl std::fmt::Debug for SurveySetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurveySetup")
            .field("enabled", &self.policy.is_some())
            .field("recent_numbers", &self.ledger.last_sent.len())
            .field("opted_out", &self.ledger.opted_out.len())
            .finish_non_exhaustive()
    }
}

/// The engine's survey state: the policy and what it remembers of earlier surveys.
#[derive(Debug, Default)]
pub(super) struct Surveys {
    policy: Option<Arc<SurveyPolicy>>,
    ledger: SurveyLedger,
    scheduled_since_prune: u32,
}

impl Surveys {
    pub(super) fn new(setup: &mut SurveySetup) -> Surveys {
        let facts = std::mem::take(&mut setup.ledger);
        Surveys {
            policy: setup.policy.clone(),
            ledger: SurveyLedger::with_facts(setup.number_hash_key.clone(), &facts),
            scheduled_since_prune: 0,
        }
    }
}

impl Engine {
    /// The ACD put the call into `queue` (first entry, overflow, transfer).
    pub(super) fn survey_note_queued(&mut self, call_key: u64, queue: &str) {
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let s = &mut call.service;
        s.direct_to = None;
        if s.queues_visited.len() < MAX_QUEUES_VISITED {
            s.queues_visited.push(queue.to_string());
        }
    }

    /// `agent` answered the call at `at`.
    pub(super) fn survey_note_answered(&mut self, call_key: u64, agent: &str, at: Millis) {
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        let direct = call.service.direct_to.take().is_some_and(|a| a == agent);
        let queue = if direct { None } else { call.queue.clone() };
        call.service.agent = Some(AgentContact {
            agent: agent.to_string(),
            queue,
            answered_at: at,
            left_at: None,
        });
    }

    /// The agent blind-transferred the call at `now`; `to_agent` when to an extension.
    pub(super) fn survey_note_transfer(
        &mut self,
        call_key: u64,
        now: Millis,
        to_agent: Option<&str>,
    ) {
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        if let Some(a) = call.service.agent.as_mut() {
            a.left_at.get_or_insert(now);
        }
        call.service.direct_to = to_agent.map(str::to_string);
    }

    /// The call's `CallEnded` was just emitted: decide its survey.
    pub(super) fn survey_at_call_end(&mut self, now: Millis, call_key: u64) {
        if self.surveys.policy.is_none() {
            return;
        }
        let Some(call) = self.calls.get(&call_key) else {
            return;
        };
        let s = &call.service;
        let outcome = match (&s.agent, s.ivr_outcome) {
            (Some(a), _) => CallOutcome::AgentHandled {
                agent: a.agent.clone(),
                queue: a.queue.clone(),
                talk_ms: a.left_at.unwrap_or(now).since(a.answered_at),
            },
            (None, Some(IvrOutcome::SelfServed)) => CallOutcome::SelfServed,
            (None, _) => CallOutcome::NotServed,
        };
        let summary = CallSummary {
            call_id: call.id.clone(),
            caller: call.invite.from.user.clone().unwrap_or_default(),
            ended_at: now,
            language: call
                .ivr
                .as_ref()
                .and_then(|i| i.chosen_language())
                .map(str::to_string),
            outcome,
            queues_visited: s.queues_visited.clone(),
        };
        self.decide_survey(now, &summary);
    }

    /// A call refused at once (busy, shutting down, no port): its `CallEnded` was just
    /// emitted; it gets its `not_served` decision like every other call.
    pub(super) fn survey_at_refusal(&mut self, now: Millis, call_id: &str, caller: &str) {
        if self.surveys.policy.is_none() {
            return;
        }
        let summary = CallSummary {
            call_id: call_id.to_string(),
            caller: caller.to_string(),
            ended_at: now,
            language: None,
            outcome: CallOutcome::NotServed,
            queues_visited: Vec::new(),
        };
        self.decide_survey(now, &summary);
    }

    /// `Command::SurveyOptOut`: the number with this hash is never surveyed again.
    pub(super) fn on_survey_opt_out(&mut self, number_hash: &str) {
        let hash = number_hash.trim().to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.stats.survey_opt_outs_refused += 1;
            tracing::warn!(
                len = number_hash.len(),
                "survey opt-out ignored: not a number hash (64 hex digits)"
            );
            return;
        }
        self.surveys.ledger.note_opt_out(&hash);
        tracing::info!(number_hash = %&hash[..12], "number opted out of surveys");
    }

    fn decide_survey(&mut self, now: Millis, summary: &CallSummary) {
        let Some(policy) = self.surveys.policy.clone() else {
            return;
        };
        let decision = policy.decide(now, summary, &self.surveys.ledger);
        let (agent, queue) = match &summary.outcome {
            CallOutcome::AgentHandled { agent, queue, .. } => (Some(agent.clone()), queue.clone()),
            _ => (None, None),
        };
        let call_id = summary.call_id.clone();
        if let Some(task) = policy.follow_up_for_call(summary) {
            self.stats.follow_ups_opened += 1;
            tracing::info!(call = %call_id, owner = ?task.owner, "follow-up task opened");
            self.persist(Record::FollowUpOpened {
                call_id: call_id.clone(),
                at: now,
                agent: task.owner,
                queue: queue.clone(),
                reason: task.reason.as_str().to_string(),
                due_at: task.due_at,
            });
        }
        let survey_id = self.new_survey_id();
        match decision {
            SurveyDecision::Schedule(s) => {
                self.stats.surveys_scheduled += 1;
                self.note_scheduled(&policy, now, &s.number_hash, s.send_at);
                tracing::info!(call = %call_id, survey_id, to = %s.to.masked(),
                    send_at = s.send_at.as_u64(), deferred = s.deferred, "survey scheduled");
                self.persist(Record::SurveyScheduled {
                    call_id,
                    survey_id,
                    at: now,
                    number: s.to.as_str().to_string(),
                    number_hash: s.number_hash,
                    language: s.language,
                    text: s.text,
                    send_at: s.send_at,
                    deferred: s.deferred,
                    reply_by: s.reply_by,
                    agent: s.owner,
                    queue,
                    complaint: s.complaint,
                });
            }
            SurveyDecision::Skip(reason) => {
                self.stats.surveys_skipped += 1;
                tracing::debug!(call = %call_id, caller = %mask_number(&summary.caller),
                    reason = reason.as_str(), "no survey");
                self.persist(Record::SurveySkipped {
                    call_id,
                    survey_id,
                    at: now,
                    reason: reason.as_str().to_string(),
                    agent,
                    queue,
                });
            }
        }
    }

    fn note_scheduled(&mut self, policy: &SurveyPolicy, now: Millis, hash: &str, send_at: Millis) {
        let surveys = &mut self.surveys;
        surveys.ledger.note_scheduled(hash, send_at);
        surveys.scheduled_since_prune += 1;
        if surveys.scheduled_since_prune >= PRUNE_EVERY {
            surveys.scheduled_since_prune = 0;
            let cap_ms = u64::from(policy.frequency_cap_days) * MS_PER_DAY;
            surveys
                .ledger
                .forget_before(Millis(now.as_u64().saturating_sub(cap_ms)));
        }
    }

    /// A survey id: random below 2^63 (it is a BIGINT in the database), never 0.
    fn new_survey_id(&mut self) -> u64 {
        loop {
            let id = self.rng.random::<u64>() >> 1;
            if id != 0 {
                return id;
            }
        }
    }
}
