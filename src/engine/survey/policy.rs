//! Which ended call gets a survey, when, to which number, in which words; and which
//! answers or calls open a follow-up task. Pure: `now` and the history are arguments.

use super::numbers::{NumberRules, E164};
use super::template::{Fields, Template};
use super::SkipReason;
use crate::engine::time::Millis;
use chrono::{LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

const MS_PER_DAY: u64 = 86_400_000;

/// Quiet hours as minutes of the local day: `start` inclusive, `end` exclusive. A window
/// with `start > end` runs over midnight (21:00-08:00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    pub start_minute: u32,
    pub end_minute: u32,
}

impl QuietHours {
    pub fn contains(&self, minute: u32) -> bool {
        if self.start_minute <= self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }
}

/// Queue rules for agent-handled calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueRules {
    /// Empty: every queue. Otherwise the answering queue must be listed.
    pub include: BTreeSet<String>,
    /// A call that went through any of these is not surveyed.
    pub exclude: BTreeSet<String>,
}

/// The texts of one language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanguageTexts {
    /// The CSAT question after an agent-handled call.
    pub csat: Template,
    /// The CSAT question after a call resolved in the IVR (required when those qualify).
    pub self_served: Option<Template>,
    /// The NPS question sent after the CSAT answer (required when NPS is on).
    pub nps: Option<Template>,
    /// The one clarification text after an unreadable reply.
    pub clarify: Template,
    /// The confirmation of an opt-out.
    pub opted_out: Template,
}

/// `survey.toml`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct SurveyPolicy {
    /// Extension -> what `{agent}` shows instead (agents.toml `display_id`).
    pub agent_display: BTreeMap<String, String>,
    pub company: String,
    /// The SMS gateway the sender uses.
    pub gateway: String,
    pub agent_handled: bool,
    pub self_served: bool,
    pub min_talk_ms: u64,
    pub queues: QueueRules,
    pub delay_ms: u64,
    /// The IVR's time zone: quiet hours are local wall time there.
    pub time_zone: Tz,
    /// None: texts go out at any hour.
    pub quiet_hours: Option<QuietHours>,
    /// At most one survey per number per this many days (0 = no cap).
    pub frequency_cap_days: u32,
    pub reply_window_ms: u64,
    /// Send the NPS question after the CSAT answer.
    pub nps: bool,
    pub numbers: NumberRules,
    pub default_language: String,
    /// The texts of `default_language`, used for every caller without texts of their own.
    pub default_texts: LanguageTexts,
    /// The texts of the other languages.
    pub texts: BTreeMap<String, LanguageTexts>,
    /// Queue name -> label, for `{queue}`.
    pub queue_labels: BTreeMap<String, String>,
    /// CSAT scores at or below this open a follow-up task (0 = never).
    pub follow_up_max_score: u8,
    /// Agent-handled calls through these queues open a follow-up task.
    pub complaint_queues: BTreeSet<String>,
    pub follow_up_due_ms: u64,
}

/// How a call was served, as far as surveys care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// An agent answered. `agent` is what `{agent}` shows (extension or display id);
    /// `queue` the queue the agent answered from, None for a direct call or transfer.
    AgentHandled {
        agent: String,
        queue: Option<String>,
        talk_ms: u64,
    },
    /// Resolved in the IVR (`ivr_outcome = self_served`).
    SelfServed,
    /// Abandoned, failed, transferred out, no agent: never surveyed.
    NotServed,
}

/// What the engine knows about a call when it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallSummary {
    pub call_id: String,
    /// The caller number as received (SIP From user part).
    pub caller: String,
    pub ended_at: Millis,
    /// The language chosen in the IVR, if any.
    pub language: Option<String>,
    pub outcome: CallOutcome,
    /// Every queue the call went through, in order (the answering one included).
    pub queues_visited: Vec<String>,
}

/// What the engine or the store knows about earlier surveys of a number. Keyed by the
/// number's keyed hash (`numbers::number_hash`), never by the number itself: retention drops
/// the number after a while and keeps only the hash, and the frequency cap and opt-outs must
/// keep working on what is left.
pub trait SurveyHistory {
    /// The keyed hash under which this history knows `number`.
    fn hash_of(&self, number: &E164) -> String;
    /// The latest send time of a survey scheduled for the number with this hash.
    fn last_survey_at(&self, number_hash: &str) -> Option<Millis>;
    fn is_opted_out(&self, number_hash: &str) -> bool;
}

/// What the store knows at startup to fill a `SurveyLedger` (`Store::survey_ledger`): the
/// latest send time per number hash of recent surveys, and every opted-out number hash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerFacts {
    /// (number hash, latest send_at) of surveys scheduled inside the frequency-cap window.
    pub last_sent: Vec<(String, Millis)>,
    /// Number hashes that opted out (for good).
    pub opted_out: Vec<String>,
}

/// An in-memory `SurveyHistory` by number hash: filled from the store at startup
/// (`LedgerFacts`), then kept up to date by the caller of `decide` (`note_scheduled`) and
/// by opt-outs reported by the survey service (`note_opt_out`).
#[derive(Clone, Default)]
pub struct SurveyLedger {
    /// The switch's number-hash key (secret: never logged).
    key: Vec<u8>,
    last: HashMap<String, Millis>,
    opted_out: HashSet<String>,
}

impl std::fmt::Debug for SurveyLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurveyLedger")
            .field("numbers", &self.last.len())
            .field("opted_out", &self.opted_out.len())
            .finish_non_exhaustive()
    }
}

impl SurveyLedger {
    /// An empty ledger hashing numbers under `key`.
    pub fn new(key: Vec<u8>) -> SurveyLedger {
        SurveyLedger {
            key,
            ..SurveyLedger::default()
        }
    }

    /// A ledger under `key` holding what the store knows.
    pub fn with_facts(key: Vec<u8>, facts: &LedgerFacts) -> SurveyLedger {
        let mut ledger = SurveyLedger::new(key);
        for (hash, send_at) in &facts.last_sent {
            ledger.note_scheduled(hash, *send_at);
        }
        for hash in &facts.opted_out {
            ledger.note_opt_out(hash);
        }
        ledger
    }

    /// A survey for the number with this hash is scheduled to go out at `send_at`.
    pub fn note_scheduled(&mut self, number_hash: &str, send_at: Millis) {
        let last = self.last.entry(number_hash.to_string()).or_insert(send_at);
        *last = (*last).max(send_at);
    }

    /// The number with this hash opted out: it is never surveyed again.
    pub fn note_opt_out(&mut self, number_hash: &str) {
        self.opted_out.insert(number_hash.to_string());
    }

    /// Forgets send times before `cutoff` (older than the cap: they no longer matter), so
    /// memory follows the number of recent surveys. Opt-outs are kept for good.
    pub fn forget_before(&mut self, cutoff: Millis) {
        self.last.retain(|_, at| *at >= cutoff);
    }

    /// Numbers with a remembered send time.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    pub fn opted_out_len(&self) -> usize {
        self.opted_out.len()
    }
}

impl SurveyHistory for SurveyLedger {
    fn hash_of(&self, number: &E164) -> String {
        super::numbers::number_hash(&self.key, number.as_str())
    }

    fn last_survey_at(&self, number_hash: &str) -> Option<Millis> {
        self.last.get(number_hash).copied()
    }

    fn is_opted_out(&self, number_hash: &str) -> bool {
        self.opted_out.contains(number_hash)
    }
}

/// A survey to put into the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduledSurvey {
    pub call_id: String,
    pub to: E164,
    /// The keyed hash of `to` (`SurveyHistory::hash_of`): what the ledger notes.
    pub number_hash: String,
    /// The language of `text` (the caller's, or the default).
    pub language: String,
    pub text: String,
    /// Hang-up + delay, moved out of quiet hours.
    pub send_at: Millis,
    /// True when quiet hours moved the send time (outbox state `deferred`).
    pub deferred: bool,
    /// Replies after this are unmatched; the survey then expires.
    pub reply_by: Millis,
    /// Owner of a follow-up task: the agent who answered (None: self-served).
    pub owner: Option<String>,
    /// The call already opened a complaint task (a low score opens no second one).
    pub complaint: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SurveyDecision {
    Schedule(ScheduledSurvey),
    Skip(SkipReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowUpReason {
    /// A CSAT score at or below `follow_up.max_score`.
    LowScore(u8),
    /// Handled in a queue listed in `follow_up.complaint_queues`.
    ComplaintQueue,
}

impl FollowUpReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FollowUpReason::LowScore(_) => "low_score",
            FollowUpReason::ComplaintQueue => "complaint_queue",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowUpTask {
    pub call_id: String,
    /// The agent who answered the call; None for a self-served caller (supervisors).
    pub owner: Option<String>,
    pub reason: FollowUpReason,
    pub due_at: Millis,
}

impl SurveyPolicy {
    /// Whether `call` gets a survey, and if so when, to whom and what it says.
    pub fn decide(
        &self,
        now: Millis,
        call: &CallSummary,
        history: &impl SurveyHistory,
    ) -> SurveyDecision {
        match self.try_decide(now, call, history) {
            Ok(s) => SurveyDecision::Schedule(s),
            Err(reason) => SurveyDecision::Skip(reason),
        }
    }

    fn try_decide(
        &self,
        now: Millis,
        call: &CallSummary,
        history: &impl SurveyHistory,
    ) -> Result<ScheduledSurvey, SkipReason> {
        self.qualifies(call)?;
        let to = self.numbers.normalise(&call.caller)?;
        let number_hash = history.hash_of(&to);
        if history.is_opted_out(&number_hash) {
            return Err(SkipReason::OptedOut);
        }
        // The delay counts from the hang-up; a decision made late (a backlog) never
        // schedules into the past.
        let earliest = call.ended_at.plus(self.delay_ms).max(now);
        let (send_at, deferred) = self.release_time(earliest);
        if self.frequency_cap_days > 0 {
            let cap_ms = u64::from(self.frequency_cap_days) * MS_PER_DAY;
            if history
                .last_survey_at(&number_hash)
                .is_some_and(|last| send_at.since(last) < cap_ms)
            {
                return Err(SkipReason::FrequencyCap);
            }
        }
        let (language, texts) = self.texts_for(call.language.as_deref());
        let (owner, template, agent, queue) = match &call.outcome {
            CallOutcome::AgentHandled { agent, queue, .. } => (
                Some(agent.clone()),
                &texts.csat,
                agent.as_str(),
                queue.as_deref(),
            ),
            CallOutcome::SelfServed => (
                None,
                texts.self_served.as_ref().unwrap_or(&texts.csat),
                "",
                None,
            ),
            CallOutcome::NotServed => return Err(SkipReason::NotServed),
        };
        let text = template.render(&self.fields(agent, queue));
        Ok(ScheduledSurvey {
            call_id: call.call_id.clone(),
            to,
            number_hash,
            language: language.to_string(),
            text,
            send_at,
            deferred,
            reply_by: self.reply_deadline(send_at),
            owner,
            complaint: self.is_complaint(call),
        })
    }

    fn qualifies(&self, call: &CallSummary) -> Result<(), SkipReason> {
        match &call.outcome {
            CallOutcome::NotServed => Err(SkipReason::NotServed),
            CallOutcome::SelfServed if !self.self_served => Err(SkipReason::NotSurveyed),
            CallOutcome::SelfServed => Ok(()),
            CallOutcome::AgentHandled { .. } if !self.agent_handled => Err(SkipReason::NotSurveyed),
            CallOutcome::AgentHandled { queue, talk_ms, .. } => {
                if *talk_ms < self.min_talk_ms {
                    return Err(SkipReason::ShortTalk);
                }
                let excluded = call
                    .queues_visited
                    .iter()
                    .chain(queue)
                    .any(|q| self.queues.exclude.contains(q));
                let included = self.queues.include.is_empty()
                    || queue
                        .as_ref()
                        .is_some_and(|q| self.queues.include.contains(q));
                if excluded || !included {
                    return Err(SkipReason::QueueExcluded);
                }
                Ok(())
            }
        }
    }

    /// `t`, or the end of the quiet hours `t` falls into, and whether it moved.
    pub fn release_time(&self, t: Millis) -> (Millis, bool) {
        let Some(quiet) = self.quiet_hours else {
            return (t, false);
        };
        let Some(utc) = Utc.timestamp_millis_opt(t.as_i64()).single() else {
            return (t, false);
        };
        let local = utc.with_timezone(&self.time_zone);
        let minute = local.hour() * 60 + local.minute();
        if !quiet.contains(minute) {
            return (t, false);
        }
        let today = local.date_naive();
        let opening_day = if quiet.start_minute > quiet.end_minute && minute >= quiet.start_minute {
            today.succ_opt()
        } else {
            Some(today)
        };
        match opening_day.and_then(|day| self.local_instant(day, quiet.end_minute)) {
            Some(open) if open > t => (open, true),
            _ => (t, false),
        }
    }

    /// The first instant at or after `day` `minute` local time. A time inside a DST gap
    /// moves forward to the first minute that exists; a repeated one takes the earlier.
    fn local_instant(&self, day: NaiveDate, minute: u32) -> Option<Millis> {
        let start = day.and_hms_opt(minute / 60, minute % 60, 0)?;
        // Gaps are at most a few hours anywhere; 4 h in 15-minute steps covers them all.
        for step in 0..=16u32 {
            let wall: NaiveDateTime = start + chrono::Duration::minutes(i64::from(step) * 15);
            let instant = match self.time_zone.from_local_datetime(&wall) {
                LocalResult::Single(dt) => dt,
                LocalResult::Ambiguous(earlier, _) => earlier,
                LocalResult::None => continue,
            };
            return u64::try_from(instant.timestamp_millis()).ok().map(Millis);
        }
        None
    }

    /// When replies to a survey sent at `sent_at` stop counting.
    pub fn reply_deadline(&self, sent_at: Millis) -> Millis {
        sent_at.plus(self.reply_window_ms)
    }

    /// Whether a survey with deadline `reply_by` has expired at `now`.
    pub fn is_expired(reply_by: Millis, now: Millis) -> bool {
        now >= reply_by
    }

    /// The texts for the caller's language, or the default language's.
    pub fn texts_for(&self, language: Option<&str>) -> (&str, &LanguageTexts) {
        match language.and_then(|l| self.texts.get_key_value(l)) {
            Some((lang, texts)) => (lang, texts),
            None => (&self.default_language, &self.default_texts),
        }
    }

    /// The placeholder values for a call.
    pub fn fields<'a>(&'a self, agent: &'a str, queue: Option<&'a str>) -> Fields<'a> {
        let queue = queue
            .map(|q| self.queue_labels.get(q).map_or(q, String::as_str))
            .unwrap_or("");
        Fields {
            company: &self.company,
            agent: self.agent_display.get(agent).map_or(agent, String::as_str),
            queue,
        }
    }

    fn is_complaint(&self, call: &CallSummary) -> bool {
        let answering = match &call.outcome {
            CallOutcome::AgentHandled { queue, .. } => queue.as_ref(),
            _ => None,
        };
        call.queues_visited
            .iter()
            .chain(answering)
            .any(|q| self.complaint_queues.contains(q))
    }

    /// The task a call opens when it ends: agent-handled through a complaint queue.
    pub fn follow_up_for_call(&self, call: &CallSummary) -> Option<FollowUpTask> {
        let CallOutcome::AgentHandled { agent, .. } = &call.outcome else {
            return None;
        };
        self.is_complaint(call).then(|| FollowUpTask {
            call_id: call.call_id.clone(),
            owner: Some(agent.clone()),
            reason: FollowUpReason::ComplaintQueue,
            due_at: call.ended_at.plus(self.follow_up_due_ms),
        })
    }

    /// The task a CSAT answer opens: a low score, unless the call has its complaint task.
    pub fn follow_up_for_answer(
        &self,
        survey: &ScheduledSurvey,
        csat: u8,
        answered_at: Millis,
    ) -> Option<FollowUpTask> {
        (!survey.complaint && csat <= self.follow_up_max_score).then(|| FollowUpTask {
            call_id: survey.call_id.clone(),
            owner: survey.owner.clone(),
            reason: FollowUpReason::LowScore(csat),
            due_at: answered_at.plus(self.follow_up_due_ms),
        })
    }
}

#[cfg(test)]
mod tests;
