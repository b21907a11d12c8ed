//! Satisfaction surveys by SMS after hang-up (issue 8): the sans-IO core. It decides, it
//! never sends: no clock reads, no IO. Callers hand in `now` and what they know.
//!
//! ```text
//! numbers   caller number (SIP user part) -> E.164 mobile, or a skip reason
//! template  survey texts with {company} {agent} {queue}, checked when the config loads
//! policy    SurveyPolicy::decide: which calls qualify, send time (delay, quiet hours),
//!           frequency cap, opt-outs, text in the caller's language, reply deadline;
//!           follow-up tasks (low score, complaint queue)
//! reply     an SMS reply -> score (+ comment), opt-out, or unreadable (kept as comment)
//! ```
//!
//! # The flow (this module is the decisions in it; `switch::survey_hookup` runs them when a
//! call ends, the survey service does the sending and the replies)
//!
//! ```text
//! call ends ──> SurveyPolicy::decide(now, &CallSummary, &history)
//!                 ├─ Skip(reason)            -> outbox row skipped(reason)
//!                 └─ Schedule(survey)        -> outbox row pending, or deferred when the
//!                                               send time was pushed out of quiet hours
//!           ──> follow_up_for_call           -> complaint queue: task due +24 h
//! sender    pending/deferred row due ─> sending ─> sent (gateway id) ─> delivered
//!                                                                    └> undeliverable
//! reply     parse_reply(text, scale)
//!                 ├─ Score          -> answered (score, comment) -> follow_up_for_answer
//!                 ├─ OptOut         -> opted_out; the number is never surveyed again
//!                 └─ Unreadable     -> one clarification text, then kept as a comment
//! deadline  no reply by reply_by     -> expired
//! ```
//!
//! `outbox` (claims, sends, retries with backoff, receipts) and `replies` (what a reply
//! does to the matched survey) are the sans-IO cores of the survey service
//! (`crate::surveys`); the store applies their effects (`src/store/outbox.rs`).
//!
//! # Documented choices
//!
//! - **Mobile only.** A number qualifies when `phonenumber` types it `Mobile` or
//!   `FixedLineOrMobile`. The second exists for regions (the NANP: US, CA, ...) whose
//!   numbering does not tell mobiles from landlines; refusing it would mean no survey for
//!   any caller there, while a text to a landline costs one undeliverable message. Chinese
//!   mobile numbers are always typed `Mobile`.
//! - **Internal numbers** are agent extensions from `agents.toml` and any number of at most
//!   `numbers.internal_max_digits` digits without a leading `+` (short internal extensions).
//! - **Qualifying calls:** answered by an agent and talked at least `min_talk_s`, or (when
//!   enabled) resolved in the IVR (`ivr_outcome = self_served`). Abandoned, failed and
//!   transferred-out calls never qualify. Queue rules: a call that went through an excluded
//!   queue is skipped; with an include list, the queue the agent answered from must be on
//!   it (an agent call without a queue is then skipped).
//! - **Order of checks:** call, then number, then opt-out, then frequency cap; the first
//!   that fails is the recorded reason.
//! - **Send time:** hang-up + delay; inside quiet hours (local wall time of the IVR's time
//!   zone, start inclusive, end exclusive) it moves to the next end of quiet hours. A window
//!   opening that falls into a DST gap moves forward to the first valid local time; an
//!   ambiguous one (clocks going back) takes the earlier instant.
//! - **Frequency cap:** history holds the send time of every survey scheduled for a number;
//!   a new one is skipped while its send time is less than N days after the latest one
//!   (a survey still pending in the future counts too). `decide` only reads the history;
//!   the caller notes a scheduled survey (`SurveyLedger::note_scheduled`) or the store
//!   supplies the same facts through `SurveyHistory`.
//! - **By hash:** the history knows numbers by their keyed hash (`number_hash`), never by
//!   the number, so the cap and opt-outs keep working once retention has dropped the number.
//!   The engine's `SurveyLedger` starts from `LedgerFacts` (`Store::survey_ledger`) and
//!   learns opt-outs from `Command::SurveyOptOut`.
//! - **Reply deadline:** send time + reply window, so a deferred survey keeps its full
//!   window. The sender may restart the window from the real send time
//!   (`SurveyPolicy::reply_deadline`).
//! - **Language:** the caller's IVR language when texts exist for it, else the default.
//! - **Follow-up:** a call handled by an agent in a complaint queue opens a task when the
//!   call ends (whether or not it is surveyed); a CSAT score at or below
//!   `follow_up.max_score` opens one when it arrives, unless the call already has the
//!   complaint task. The owner is the agent who answered; a self-served caller's low score
//!   opens an unowned task for supervisors. Due = event + `follow_up.due_h`.
//! - **Replies:** see `reply` (full-width digits, 一..十, opt-out words, comments capped at
//!   `reply::MAX_COMMENT_CHARS` characters).
//! - **Records:** the engine decides when a call ends (`switch::survey_hookup`): after the
//!   call's `CallEnded` come its `FollowUpOpened` (complaint queue, if any) and then always
//!   one `SurveyScheduled` or `SurveySkipped`, written in the same store batch.

pub mod numbers;
pub mod outbox;
pub mod policy;
pub mod replies;
pub mod reply;
pub mod template;

pub use numbers::{mask_number, number_hash, NumberRules, E164};
pub use policy::{
    CallOutcome, CallSummary, FollowUpReason, FollowUpTask, LanguageTexts, LedgerFacts, QueueRules,
    QuietHours, ScheduledSurvey, SurveyDecision, SurveyHistory, SurveyLedger, SurveyPolicy,
};
pub use reply::{parse_reply, Reply, Scale};
pub use template::{Fields, Placeholder, Template};

/// Why a call gets no survey; recorded on the call's survey row (`skipped(reason)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Neither answered by an agent nor resolved in the IVR (abandoned, failed, ...).
    NotServed,
    /// Resolved in the IVR while `qualify.self_served` is off, or an agent call while
    /// `qualify.agent_handled` is off.
    NotSurveyed,
    /// Talk time below `qualify.min_talk_s`.
    ShortTalk,
    /// Excluded by `qualify.include_queues` / `qualify.exclude_queues`.
    QueueExcluded,
    /// No caller number: anonymous, withheld, restricted.
    Anonymous,
    /// An agent extension or a short internal number.
    Internal,
    /// Not a phone number we can parse and validate.
    Malformed,
    /// A valid number that is not a mobile (landline, toll-free, ...).
    NotMobile,
    /// The number replied TD/STOP before.
    OptedOut,
    /// Surveyed fewer than `frequency_cap_days` days ago.
    FrequencyCap,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotServed => "not_served",
            SkipReason::NotSurveyed => "not_surveyed",
            SkipReason::ShortTalk => "short_talk",
            SkipReason::QueueExcluded => "queue_excluded",
            SkipReason::Anonymous => "anonymous",
            SkipReason::Internal => "internal",
            SkipReason::Malformed => "malformed",
            SkipReason::NotMobile => "not_mobile",
            SkipReason::OptedOut => "opted_out",
            SkipReason::FrequencyCap => "frequency_cap",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
