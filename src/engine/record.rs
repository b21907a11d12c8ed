//! The rows the engine emits as events happen: the schema contract between the engine and
//! `store/`. Every figure in METRICS.md is computed from these.

use super::time::Millis;
use serde::{Deserialize, Serialize};

/// How a call left the IVR (METRICS.md `ivr_outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IvrOutcome {
    SelfServed,
    Queued,
    Transferred,
    AbandonedInIvr,
    Failed,
}

impl IvrOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            IvrOutcome::SelfServed => "self_served",
            IvrOutcome::Queued => "queued",
            IvrOutcome::Transferred => "transferred",
            IvrOutcome::AbandonedInIvr => "abandoned_in_ivr",
            IvrOutcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<IvrOutcome> {
        Some(match s {
            "self_served" => IvrOutcome::SelfServed,
            "queued" => IvrOutcome::Queued,
            "transferred" => IvrOutcome::Transferred,
            "abandoned_in_ivr" => IvrOutcome::AbandonedInIvr,
            "failed" => IvrOutcome::Failed,
            _ => return None,
        })
    }
}

/// Who ended the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    Caller,
    Agent,
    System,
}

impl EndedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Caller => "caller",
            EndedBy::Agent => "agent",
            EndedBy::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<EndedBy> {
        Some(match s {
            "caller" => EndedBy::Caller,
            "agent" => EndedBy::Agent,
            "system" => EndedBy::System,
            _ => return None,
        })
    }
}

/// One persisted event. `call_id` is the engine's unique call id (not the SIP Call-ID).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// The first INVITE of a call was received (`arrived_at`).
    CallStarted {
        call_id: String,
        sip_call_id: String,
        /// Caller number or URI user part (unmasked: the database is the place for it).
        caller: String,
        /// Request-URI user part (the dialled service number), empty if none.
        dialled: String,
        /// "udp" or "tcp".
        transport: String,
        arrived_at: Millis,
        /// Ring cycle in force for this call, so "rings before answer" is computable from rows.
        ring_cycle_ms: u64,
    },
    /// The first 18x was sent to the caller.
    CallRinging {
        call_id: String,
        ringing_at: Millis,
    },
    /// The 200 OK to the caller's INVITE was sent.
    CallAnswered {
        call_id: String,
        answered_at: Millis,
        /// `answered_at - arrived_at <= 3 * ring_cycle`.
        within_three_rings: bool,
    },
    /// One IVR step: a node entered, or digits collected at a node.
    IvrStep {
        call_id: String,
        /// 0-based order of the step within the call.
        seq: u32,
        at: Millis,
        node: String,
        /// Node kind ("menu", "play", "collect", "language", "office_hours", "lookup", "hangup").
        kind: String,
        /// Digits the caller pressed at this node, if any.
        digits: Option<String>,
        /// Free detail: "timeout", "invalid", "lang=zh", "open", "fallback", ...
        detail: Option<String>,
    },
    /// The caller left the IVR.
    IvrLeft {
        call_id: String,
        at: Millis,
        outcome: IvrOutcome,
    },
    /// A value collected in the IVR and kept on the call (e.g. an order number).
    CallVariable {
        call_id: String,
        at: Millis,
        name: String,
        value: String,
    },
    HoldStarted {
        call_id: String,
        at: Millis,
    },
    HoldEnded {
        call_id: String,
        at: Millis,
    },
    /// Either side hung up, or the system ended the call.
    CallEnded {
        call_id: String,
        ended_at: Millis,
        ended_by: EndedBy,
        /// Why: "bye", "cancel", "rtp_timeout", "ack_timeout", "shutdown", "rejected_busy",
        /// "rejected_shutdown", "no_codec", "ivr_hangup", "max_wait", "no_agents",
        /// "feature_code", "error: ...".
        reason: String,
        /// Final SIP status sent to the caller's INVITE (200, 487, 503, 488, ...).
        final_status: u16,
    },
    /// The call entered a queue (`queued_at`). The first queue a call enters is the one its
    /// figures are counted under.
    CallQueued {
        call_id: String,
        at: Millis,
        queue: String,
        /// Caller priority in the queue (higher goes first).
        priority: i32,
    },
    /// An agent's phone was sent an INVITE for this call (`offered_at` of attempt `attempt`,
    /// 1-based and unique within the call).
    OfferStarted {
        call_id: String,
        attempt: u32,
        agent: String,
        at: Millis,
    },
    /// How an offer ended: "answered", "no_answer", "busy", "rejected", "failed", "cancelled".
    OfferEnded {
        call_id: String,
        attempt: u32,
        at: Millis,
        outcome: String,
    },
    /// The first agent answered (`agent_answered_at`).
    AgentAnswered {
        call_id: String,
        agent: String,
        at: Millis,
    },
    /// The agent left after-call work for this call (`wrapup_ended_at`): timer or ready code.
    WrapUpEnded {
        call_id: String,
        agent: String,
        at: Millis,
    },
    /// The agent blind-transferred the call (REFER) to a queue or an extension.
    CallTransferred {
        call_id: String,
        at: Millis,
        target: String,
        by: String,
    },
    /// The call's recording was written.
    RecordingSaved {
        call_id: String,
        at: Millis,
        path: String,
    },
    /// The call left its queue for the queue's overflow queue. `reason`: "max_wait" or
    /// "no_agents" (nobody logged in could take it). The call's figures stay with the queue
    /// it entered first.
    CallOverflowed {
        call_id: String,
        at: Millis,
        from_queue: String,
        to_queue: String,
        reason: String,
    },
    /// The caller left a callback request (maximum wait reached, or nobody to take the
    /// call: the CallEnded reason says which).
    CallbackRequested {
        call_id: String,
        at: Millis,
        queue: String,
        number: String,
    },
    /// The survey policy scheduled a satisfaction survey for the ended call (issue #8). Emitted
    /// right after the call's `CallEnded` (and its `FollowUpOpened`, if any), in the same store
    /// batch: while surveys are on, every ended call gets exactly one `SurveyScheduled` or
    /// `SurveySkipped`, and it is the last record of that group. `survey_id` (< 2^63) is
    /// the stable client reference given to the SMS gateway; the survey question is message
    /// `survey_id` in `sms_messages`.
    SurveyScheduled {
        call_id: String,
        survey_id: u64,
        at: Millis,
        /// E.164 with `+`.
        number: String,
        /// Keyed hash of `number` (frequency cap and opt-outs outlive the number).
        number_hash: String,
        language: String,
        text: String,
        send_at: Millis,
        /// Quiet hours moved `send_at` (state `deferred` instead of `pending`).
        deferred: bool,
        reply_by: Millis,
        /// The agent who answered (owner of follow-up tasks); None when self-served.
        agent: Option<String>,
        queue: Option<String>,
        /// The call went through a complaint queue (it has its follow-up task already).
        complaint: bool,
    },
    /// The survey policy looked at the ended call and sent nothing: `reason` is a
    /// `SkipReason` ("not_served", "anonymous", "opted_out", "frequency_cap", ...).
    SurveySkipped {
        call_id: String,
        survey_id: u64,
        at: Millis,
        reason: String,
        agent: Option<String>,
        queue: Option<String>,
    },
    /// A follow-up task was opened when the call ended (handled in a complaint queue), or
    /// right after a `DispositionSet` whose code opens one (`follow_up` / `complaint`).
    /// Tasks opened by a low score come from the survey service, not the engine.
    FollowUpOpened {
        call_id: String,
        at: Millis,
        /// The agent who answered the call (the task's owner); None: supervisors.
        agent: Option<String>,
        queue: Option<String>,
        /// "complaint_queue", "low_score" or "disposition:<name>".
        reason: String,
        due_at: Millis,
    },
    /// The agent classified a call they handled (feature code `*4` + number, or
    /// `Command::Disposition`). A later one for the same call replaces it (last wins); every
    /// one is kept in the call's disposition history.
    DispositionSet {
        call_id: String,
        agent: String,
        at: Millis,
        /// The code's number (1-99) and name in queues.toml `[dispositions]`.
        code: u8,
        name: String,
        /// The code counts as resolved (disposition-based FCR), as configured when set.
        resolved: bool,
        /// The queue the agent answered the call from.
        queue: Option<String>,
        /// Free text from the agent page (cleaned and capped, `dispositions::clean_note`).
        note: Option<String>,
    },
    /// An agent changed state: "logged_out", "ready", "reserved", "on_call", "wrap_up",
    /// "not_ready" (with a reason: "break", "lunch", "missed_call", ...). Not tied to a call.
    AgentStateChanged {
        agent: String,
        at: Millis,
        state: String,
        reason: Option<String>,
    },
    /// A supervisor began to monitor the call (`*31`/`*32`/`*33` + agent, or a mode switch):
    /// a monitoring segment opens on the call, and the store writes the audit log line.
    MonitorStarted {
        call_id: String,
        /// The supervisor's user name (users.toml).
        supervisor: String,
        agent: String,
        /// "listen", "whisper" or "barge".
        mode: String,
        at: Millis,
    },
    /// A monitoring code (`*31`/`*32`/`*33` + agent) dialled by an authenticated phone was
    /// refused; the store writes the audit log line (action `monitor.refused`).
    MonitorRefused {
        /// The supervisor's user name, or `agent:<ext>` for an agent's phone.
        user: String,
        /// The agent dialled.
        agent: String,
        /// "listen", "whisper" or "barge".
        mode: String,
        /// "forbidden" (not a supervisor), "not_bridged" (the agent is not on a call),
        /// "already_monitored".
        reason: String,
        at: Millis,
    },
    /// The supervisor's open segment on the call ends: "supervisor_hung_up", "call_ended"
    /// or "mode_changed" (a new segment follows at once).
    MonitorEnded {
        call_id: String,
        supervisor: String,
        at: Millis,
        reason: String,
    },
}

impl Record {
    /// The call the record belongs to; `None` for agent state changes.
    pub fn call_id(&self) -> Option<&str> {
        match self {
            Record::CallStarted { call_id, .. }
            | Record::CallRinging { call_id, .. }
            | Record::CallAnswered { call_id, .. }
            | Record::IvrStep { call_id, .. }
            | Record::IvrLeft { call_id, .. }
            | Record::CallVariable { call_id, .. }
            | Record::HoldStarted { call_id, .. }
            | Record::HoldEnded { call_id, .. }
            | Record::CallEnded { call_id, .. }
            | Record::CallQueued { call_id, .. }
            | Record::OfferStarted { call_id, .. }
            | Record::OfferEnded { call_id, .. }
            | Record::AgentAnswered { call_id, .. }
            | Record::WrapUpEnded { call_id, .. }
            | Record::CallTransferred { call_id, .. }
            | Record::RecordingSaved { call_id, .. }
            | Record::CallOverflowed { call_id, .. }
            | Record::CallbackRequested { call_id, .. }
            | Record::SurveyScheduled { call_id, .. }
            | Record::SurveySkipped { call_id, .. }
            | Record::FollowUpOpened { call_id, .. }
            | Record::DispositionSet { call_id, .. }
            | Record::MonitorStarted { call_id, .. }
            | Record::MonitorEnded { call_id, .. } => Some(call_id),
            Record::AgentStateChanged { .. } | Record::MonitorRefused { .. } => None,
        }
    }

    /// A short name of the record's kind, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::CallStarted { .. } => "call_started",
            Record::CallRinging { .. } => "call_ringing",
            Record::CallAnswered { .. } => "call_answered",
            Record::IvrStep { .. } => "ivr_step",
            Record::IvrLeft { .. } => "ivr_left",
            Record::CallVariable { .. } => "call_variable",
            Record::HoldStarted { .. } => "hold_started",
            Record::HoldEnded { .. } => "hold_ended",
            Record::CallEnded { .. } => "call_ended",
            Record::CallQueued { .. } => "call_queued",
            Record::OfferStarted { .. } => "offer_started",
            Record::OfferEnded { .. } => "offer_ended",
            Record::AgentAnswered { .. } => "agent_answered",
            Record::WrapUpEnded { .. } => "wrapup_ended",
            Record::CallTransferred { .. } => "call_transferred",
            Record::RecordingSaved { .. } => "recording_saved",
            Record::CallOverflowed { .. } => "call_overflowed",
            Record::CallbackRequested { .. } => "callback_requested",
            Record::SurveyScheduled { .. } => "survey_scheduled",
            Record::SurveySkipped { .. } => "survey_skipped",
            Record::FollowUpOpened { .. } => "follow_up_opened",
            Record::DispositionSet { .. } => "disposition_set",
            Record::AgentStateChanged { .. } => "agent_state_changed",
            Record::MonitorStarted { .. } => "monitor_started",
            Record::MonitorEnded { .. } => "monitor_ended",
            Record::MonitorRefused { .. } => "monitor_refused",
        }
    }

    /// When the event happened.
    pub fn at(&self) -> Millis {
        match self {
            Record::CallStarted { arrived_at, .. } => *arrived_at,
            Record::CallRinging { ringing_at, .. } => *ringing_at,
            Record::CallAnswered { answered_at, .. } => *answered_at,
            Record::IvrStep { at, .. }
            | Record::IvrLeft { at, .. }
            | Record::CallVariable { at, .. }
            | Record::HoldStarted { at, .. }
            | Record::HoldEnded { at, .. }
            | Record::CallQueued { at, .. }
            | Record::OfferStarted { at, .. }
            | Record::OfferEnded { at, .. }
            | Record::AgentAnswered { at, .. }
            | Record::WrapUpEnded { at, .. }
            | Record::CallTransferred { at, .. }
            | Record::RecordingSaved { at, .. }
            | Record::CallOverflowed { at, .. }
            | Record::CallbackRequested { at, .. }
            | Record::SurveyScheduled { at, .. }
            | Record::SurveySkipped { at, .. }
            | Record::FollowUpOpened { at, .. }
            | Record::DispositionSet { at, .. }
            | Record::AgentStateChanged { at, .. }
            | Record::MonitorStarted { at, .. }
            | Record::MonitorEnded { at, .. }
            | Record::MonitorRefused { at, .. } => *at,
            Record::CallEnded { ended_at, .. } => *ended_at,
        }
    }
}
