//! The JSON shapes of calls in the REST API: `CallSummary` (a search hit) and `CallDetail`
//! (one call's whole timeline). Times are epoch ms; caller numbers and transfer targets are
//! masked (`engine::mask_number`); no server path of a recording is ever shown.

use crate::engine::mask_number;
use crate::store::{CallHit, CallOutcome, CallRow, CallSurvey, FollowUpTaskRow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

fn ms(t: Option<crate::engine::Millis>) -> Option<u64> {
    t.map(|t| t.as_u64())
}

/// A stored caller that is a retention hash (64 hex digits), not a number.
pub fn is_retention_hash(caller: &str) -> bool {
    caller.len() == 64 && caller.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A caller number as the API shows it: masked; a retention hash shows as `****`.
pub fn shown_caller(caller: &str) -> String {
    if is_retention_hash(caller) {
        "****".to_string()
    } else {
        mask_number(caller)
    }
}

/// A transfer target: masked when it is a phone number (5 digits or more); an extension or a
/// queue name stays readable.
fn mask_target(to: &str) -> String {
    if to.chars().filter(char::is_ascii_digit).count() > 4 {
        mask_number(to)
    } else {
        to.to_string()
    }
}

/// One call in a search result.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CallSummary {
    pub call_id: String,
    pub arrived_at: u64,
    pub ended_at: Option<u64>,
    /// Masked, e.g. `138****5678`.
    pub number: String,
    pub dialled: String,
    pub queue: Option<String>,
    /// The agent who answered.
    pub agent: Option<String>,
    /// in_progress, answered, abandoned, not_answered, self_served, transferred,
    /// abandoned_in_ivr, failed.
    pub outcome: String,
    pub ivr_outcome: Option<String>,
    pub ended_by: Option<String>,
    pub queue_wait_ms: Option<u64>,
    pub within_three_rings: Option<bool>,
    /// A recording was saved.
    pub recorded: bool,
}

impl CallSummary {
    pub fn of(hit: &CallHit) -> CallSummary {
        let c = &hit.call;
        CallSummary {
            call_id: c.call_id.clone(),
            arrived_at: c.arrived_at.as_u64(),
            ended_at: ms(c.ended_at),
            number: shown_caller(&c.caller),
            dialled: c.dialled.clone(),
            queue: c.queue.clone(),
            agent: c.agent.clone(),
            outcome: hit.outcome.as_str().to_string(),
            ivr_outcome: c.ivr_outcome.map(|o| o.as_str().to_string()),
            ended_by: c.ended_by.map(|e| e.as_str().to_string()),
            queue_wait_ms: c.queue_wait_ms,
            within_three_rings: c.within_three_rings,
            recorded: c.recording_path.is_some(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct IvrStep {
    pub seq: u32,
    pub at: u64,
    pub node: String,
    pub kind: String,
    pub digits: Option<String>,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct IvrPart {
    pub left_at: Option<u64>,
    /// self_served, queued, transferred, abandoned_in_ivr, failed.
    pub outcome: Option<String>,
    pub steps: Vec<IvrStep>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct QueuePart {
    pub name: String,
    pub priority: Option<i32>,
    pub entered_at: Option<u64>,
    pub overflowed_to: Option<String>,
    pub overflowed_at: Option<u64>,
    /// max_wait or no_agents.
    pub overflow_reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Offer {
    pub attempt: u32,
    pub agent: String,
    pub offered_at: u64,
    pub ended_at: Option<u64>,
    /// answered, no_answer, busy, rejected, failed, cancelled; null while ringing.
    pub outcome: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Hold {
    pub started_at: u64,
    pub ended_at: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Transfer {
    /// Masked when it is a number.
    pub to: String,
    pub at: Option<u64>,
    pub by: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WrapUp {
    /// The agent's wrap-up starts when the call ends.
    pub started_at: Option<u64>,
    pub ended_at: Option<u64>,
    pub acw_ms: Option<u64>,
}

/// METRICS.md per-call figures.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Figures {
    pub rings_before_answer: Option<f64>,
    pub within_three_rings: Option<bool>,
    pub frt_ms: Option<u64>,
    pub queue_wait_ms: Option<u64>,
    pub talk_ms: Option<u64>,
    pub hold_ms: u64,
    pub acw_ms: Option<u64>,
    pub aht_ms: Option<u64>,
    pub abandoned: bool,
    pub short_abandon: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordingPart {
    /// The file is there (inside the recordings folder) and can be downloaded.
    pub present: bool,
    pub size_bytes: Option<u64>,
    /// The switch saved one for this call (it may since have been removed).
    pub saved: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SurveyPart {
    pub state: String,
    pub skip_reason: Option<String>,
    pub fail_reason: Option<String>,
    pub csat: Option<u8>,
    pub nps: Option<u8>,
    pub comment: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FollowUp {
    pub task_id: i64,
    pub agent: Option<String>,
    pub queue: Option<String>,
    pub reason: String,
    pub score: Option<i64>,
    pub opened_at: u64,
    pub due_at: u64,
    pub closed_at: Option<u64>,
    pub note: Option<String>,
    pub escalated_at: Option<u64>,
}

/// One call's whole timeline.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CallDetail {
    pub call_id: String,
    /// Masked, e.g. `138****5678` (POST .../unmask shows it in full).
    pub number: String,
    /// False when only the number's retention hash is kept (unmask answers 409).
    pub number_available: bool,
    pub dialled: String,
    pub transport: String,
    pub arrived_at: u64,
    pub ringing_at: Option<u64>,
    pub answered_at: Option<u64>,
    pub ended_at: Option<u64>,
    pub ended_by: Option<String>,
    pub end_reason: Option<String>,
    pub final_status: Option<u16>,
    pub outcome: String,
    pub ivr: IvrPart,
    pub variables: BTreeMap<String, String>,
    pub queue: Option<QueuePart>,
    pub offers: Vec<Offer>,
    /// The agent who answered.
    pub agent: Option<String>,
    pub agent_answered_at: Option<u64>,
    pub holds: Vec<Hold>,
    pub transfer: Option<Transfer>,
    pub wrap_up: Option<WrapUp>,
    pub figures: Figures,
    pub recording: RecordingPart,
    pub survey: Option<SurveyPart>,
    pub follow_up: Option<FollowUp>,
}

impl CallDetail {
    /// `recording_size`: the file's size when it is present in the recordings folder.
    pub fn of(
        c: &CallRow,
        recording_size: Option<u64>,
        survey: Option<&CallSurvey>,
        task: Option<&FollowUpTaskRow>,
    ) -> CallDetail {
        CallDetail {
            call_id: c.call_id.clone(),
            number: shown_caller(&c.caller),
            number_available: !is_retention_hash(&c.caller),
            dialled: c.dialled.clone(),
            transport: c.transport.clone(),
            arrived_at: c.arrived_at.as_u64(),
            ringing_at: ms(c.ringing_at),
            answered_at: ms(c.answered_at),
            ended_at: ms(c.ended_at),
            ended_by: c.ended_by.map(|e| e.as_str().to_string()),
            end_reason: c.end_reason.clone(),
            final_status: c.final_status,
            outcome: CallOutcome::of(c).as_str().to_string(),
            ivr: IvrPart {
                left_at: ms(c.ivr_left_at),
                outcome: c.ivr_outcome.map(|o| o.as_str().to_string()),
                steps: c
                    .ivr_path
                    .iter()
                    .map(|s| IvrStep {
                        seq: s.seq,
                        at: s.at.as_u64(),
                        node: s.node.clone(),
                        kind: s.kind.clone(),
                        digits: s.digits.clone(),
                        detail: s.detail.clone(),
                    })
                    .collect(),
            },
            variables: c.variables.clone(),
            queue: c.queue.as_ref().map(|q| QueuePart {
                name: q.clone(),
                priority: c.queue_priority,
                entered_at: ms(c.queued_at),
                overflowed_to: c.overflowed_to.clone(),
                overflowed_at: ms(c.overflowed_at),
                overflow_reason: c.overflow_reason.clone(),
            }),
            offers: c
                .offers
                .iter()
                .map(|o| Offer {
                    attempt: o.attempt,
                    agent: o.agent.clone(),
                    offered_at: o.offered_at.as_u64(),
                    ended_at: ms(o.ended_at),
                    outcome: o.outcome.clone(),
                })
                .collect(),
            agent: c.agent.clone(),
            agent_answered_at: ms(c.agent_answered_at),
            holds: c
                .hold_segments
                .iter()
                .map(|h| Hold {
                    started_at: h.started_at.as_u64(),
                    ended_at: ms(h.ended_at),
                })
                .collect(),
            transfer: c.transferred_to.as_ref().map(|to| Transfer {
                to: mask_target(to),
                at: ms(c.transferred_at),
                by: c.transferred_by.clone(),
            }),
            wrap_up: c.agent_answered_at.map(|_| WrapUp {
                started_at: ms(c.ended_at),
                ended_at: ms(c.wrapup_ended_at),
                acw_ms: c.acw_ms,
            }),
            figures: Figures {
                rings_before_answer: c.rings_before_answer,
                within_three_rings: c.within_three_rings,
                frt_ms: c.frt_ms,
                queue_wait_ms: c.queue_wait_ms,
                talk_ms: c.talk_ms,
                hold_ms: c.hold_ms,
                acw_ms: c.acw_ms,
                aht_ms: c.aht_ms,
                abandoned: c.abandoned,
                short_abandon: c.short_abandon,
            },
            recording: RecordingPart {
                present: recording_size.is_some(),
                size_bytes: recording_size,
                saved: c.recording_path.is_some(),
            },
            survey: survey.map(|s| SurveyPart {
                state: s.state.clone(),
                skip_reason: s.skip_reason.clone(),
                fail_reason: s.fail_reason.clone(),
                csat: s.csat,
                nps: s.nps,
                comment: s.comment.clone(),
            }),
            follow_up: task.map(|t| FollowUp {
                task_id: t.task_id,
                agent: t.agent.clone(),
                queue: t.queue.clone(),
                reason: t.reason.clone(),
                score: t.score,
                opened_at: t.opened_at.as_u64(),
                due_at: t.due_at.as_u64(),
                closed_at: ms(t.closed_at),
                note: t.note.clone(),
                escalated_at: ms(t.escalated_at),
            }),
        }
    }
}
