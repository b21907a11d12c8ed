//! The agent desk's REST pieces (issue 10 item 3), for the page at `/agent`:
//!
//! - `GET /api/v1/agents/{extension}/desk`: what the desk offers that agent: their queues,
//!   the disposition codes of those queues, the transfer targets (queues and the other
//!   agents), the break and logout reasons.
//! - `GET /api/v1/calls/{call_id}/history`: the screen pop of one call (masked number,
//!   language, IVR path, queue, how long the caller waited, its disposition) and the caller's
//!   other contacts in the last 7 days with outcome, disposition and survey score.
//! - `POST /api/v1/calls/{call_id}/disposition` `{"code", "note"}`: classify the call (the
//!   engine's `Command::Disposition`, as `*4` + number from a phone does).
//!
//! Who may: an agent-desk session (role agent) for its own extension and the calls offered
//! to or answered by it; supervisors for any (`agent_commands` to set, `call_details` to
//! read). Anything else is 403. Numbers are masked as everywhere in the API.

use super::auth_routes::{Caller, Via};
use super::call_timeline::{shown_caller, IvrStep};
use super::params::ApiPath;
use super::problem::{types, ApiJson, Problem};
use super::rest::{printable, RestState};
use crate::auth::Permission;
use crate::engine::dispositions::DispositionCode;
use crate::engine::{Command, Millis};
use crate::store::CallRow;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How far back the contact history reaches (the issue's "last 7 days").
pub const HISTORY_WINDOW_MS: u64 = 7 * 86_400_000;
/// At most this many earlier contacts are listed.
pub const HISTORY_LIMIT: u32 = 20;
/// Break reasons offered by the page (the feature codes' reasons; the API takes any short
/// code, see `agents::MAX_REASON_CHARS`).
pub const BREAK_REASONS: [&str; 3] = ["break", "lunch", "training"];
/// Logout reasons offered by the page (kept in the audit log).
pub const LOGOUT_REASONS: [&str; 3] = ["end_of_shift", "meeting", "other"];

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DispositionOption {
    /// Dialled after the disposition prefix (`*4` + number).
    pub number: u8,
    /// Stable id, what the API takes as `code`.
    pub name: String,
    pub label_en: String,
    pub label_zh: String,
    pub follow_up: bool,
    pub complaint: bool,
    pub resolved: bool,
}

impl DispositionOption {
    fn of(c: &DispositionCode) -> DispositionOption {
        DispositionOption {
            number: c.number,
            name: c.name.clone(),
            label_en: c.label_en.clone(),
            label_zh: c.label_zh.clone(),
            follow_up: c.follow_up,
            complaint: c.complaint,
            resolved: c.resolved,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeskQueue {
    pub name: String,
    pub label: String,
    /// An offer rings this long (three rings) before the next agent is tried.
    pub ring_timeout_s: f64,
    /// After-call work before the agent is ready again.
    pub wrap_up_s: f64,
    /// The codes agents pick for a call of this queue.
    pub dispositions: Vec<DispositionOption>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeskAgent {
    pub extension: String,
    pub name: String,
}

/// What the agent desk offers one agent.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Desk {
    pub extension: String,
    pub name: String,
    /// The queues the agent serves (agents.toml), with their dispositions.
    pub queues: Vec<DeskQueue>,
    /// The codes of a call that came from no queue (a direct transfer).
    pub default_dispositions: Vec<DispositionOption>,
    /// Blind-transfer targets: every queue ...
    pub transfer_queues: Vec<DeskQueue>,
    /// ... and every other agent.
    pub transfer_agents: Vec<DeskAgent>,
    pub break_reasons: Vec<String>,
    pub logout_reasons: Vec<String>,
    /// The SIP digest realm the desk's phone registers in.
    pub realm: String,
}

/// One earlier contact of the caller.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub call_id: String,
    pub arrived_at: u64,
    pub queue: Option<String>,
    /// The agent who answered.
    pub agent: Option<String>,
    /// As in calls search: answered, abandoned, self_served, ...
    pub outcome: String,
    /// The disposition's name (`resolved`, `follow_up`, ...).
    pub disposition: Option<String>,
    pub disposition_note: Option<String>,
    /// The survey's CSAT score (1-5), when the caller answered it.
    pub csat: Option<u8>,
}

/// The current or offered call as the desk shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ScreenCall {
    pub call_id: String,
    /// Masked, e.g. `138****5678`.
    pub number: String,
    /// The caller's IVR language (`en`, `zh`), when they chose one.
    pub language: Option<String>,
    pub ivr_path: Vec<IvrStep>,
    /// IVR variables (order number, ...).
    pub variables: std::collections::BTreeMap<String, String>,
    pub queue: Option<String>,
    pub queue_label: Option<String>,
    pub arrived_at: u64,
    pub queued_at: Option<u64>,
    pub agent_answered_at: Option<u64>,
    pub ended_at: Option<u64>,
    /// In the queue until an agent answered (or until now / the end).
    pub waited_ms: Option<u64>,
    /// The agent who answered.
    pub agent: Option<String>,
    pub disposition: Option<String>,
    pub disposition_note: Option<String>,
    /// The codes for this call (its queue's list).
    pub dispositions: Vec<DispositionOption>,
}

/// The screen pop: the call and the caller's earlier contacts.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ScreenPop {
    pub call: ScreenCall,
    /// The caller's other calls in the last `window_days` days, newest first (at most 20).
    pub contacts: Vec<Contact>,
    pub window_days: u32,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DispositionRequest {
    /// The code's name (`resolved`) or number (`1`) from the call's queue's list.
    #[schema(example = "resolved")]
    pub code: String,
    /// Free text, kept up to 1000 characters.
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct DispositionAccepted {
    /// The command reached the engine; it applies it while the call is the agent's current
    /// or last answered call (GET .../history shows the call's disposition).
    pub accepted: bool,
    /// The agent the disposition is set for.
    pub agent: String,
    /// The code's name.
    pub code: String,
}

fn unknown_call(call_id: &str) -> Problem {
    Problem::not_found(format!("no call `{}`", printable(call_id, 80)))
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        types::INVALID_BODY,
        "Invalid request body",
    )
    .detail(detail)
}

/// An agent session may touch a call only when it was offered to or answered by them.
fn agent_may_see(call: &CallRow, ext: &str) -> bool {
    call.agent.as_deref() == Some(ext) || call.offers.iter().any(|o| o.agent == ext)
}

fn forbidden_call() -> Problem {
    Problem::forbidden("an agent may see and classify only the calls offered to them")
        .with("permission", Permission::AgentDesk.as_str())
}

/// The caller's IVR language: the `lang=xx` detail of its language step.
fn language_of(call: &CallRow) -> Option<String> {
    call.ivr_path
        .iter()
        .rev()
        .filter_map(|s| s.detail.as_deref())
        .find_map(|d| d.strip_prefix("lang="))
        .map(str::to_string)
        .or_else(|| call.variables.get("language").cloned())
}

/// The queue whose codes apply: the one the call was answered from (overflow target first).
fn call_queue(call: &CallRow) -> Option<&str> {
    call.overflowed_to.as_deref().or(call.queue.as_deref())
}

/// What the desk offers one agent.
#[utoipa::path(
    get,
    path = "/api/v1/agents/{extension}/desk",
    operation_id = "getAgentDesk",
    tag = "agents",
    params(("extension" = String, Path, description = "The agent's extension (agents.toml)")),
    responses(
        (status = 200, description = "Queues, dispositions, transfer targets, break and logout reasons", body = Desk),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Another agent's extension, or a role without agent_commands", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such agent", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn desk(
    State(st): State<RestState>,
    caller: Caller,
    ApiPath(extension): ApiPath<String>,
) -> Result<Response, Problem> {
    caller.require_for_agent(&extension, Permission::AgentCommands)?;
    let Some(agent) = st.agents.get(&extension) else {
        return Err(Problem::not_found(format!(
            "there is no agent with extension `{}` in agents.toml",
            printable(&extension, 40)
        )));
    };
    let catalog = &st.queues.dispositions;
    let queue_of = |name: &str| DeskQueue {
        name: name.to_string(),
        label: st
            .queues
            .get(name)
            .map(|q| q.label.clone())
            .unwrap_or_else(|| name.to_string()),
        ring_timeout_s: st
            .queues
            .get(name)
            .map_or(0.0, |q| q.ring_timeout_ms as f64 / 1000.0),
        wrap_up_s: st
            .queues
            .get(name)
            .map_or(0.0, |q| q.wrap_up_ms as f64 / 1000.0),
        dispositions: catalog
            .codes_for(Some(name))
            .iter()
            .map(DispositionOption::of)
            .collect(),
    };
    let desk = Desk {
        extension: agent.extension.clone(),
        name: agent.name.clone(),
        queues: agent.queues.iter().map(|q| queue_of(q)).collect(),
        default_dispositions: catalog
            .codes_for(None)
            .iter()
            .map(DispositionOption::of)
            .collect(),
        transfer_queues: st.queues.names().map(queue_of).collect(),
        transfer_agents: st
            .agents
            .agents
            .iter()
            .filter(|a| a.extension != agent.extension)
            .map(|a| DeskAgent {
                extension: a.extension.clone(),
                name: a.name.clone(),
            })
            .collect(),
        break_reasons: BREAK_REASONS.iter().map(|s| s.to_string()).collect(),
        logout_reasons: LOGOUT_REASONS.iter().map(|s| s.to_string()).collect(),
        realm: agent.realm.clone(),
    };
    Ok(axum::Json(desk).into_response())
}

/// The screen pop of a call and the caller's contacts in the last 7 days.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/history",
    operation_id = "getCallScreenPop",
    tag = "calls",
    params(("call_id" = String, Path, description = "The engine's call id (SIP header X-Call-Id of the agent's INVITE)")),
    responses(
        (status = 200, description = "The call (number masked, language, IVR path, queue, wait, disposition) and the caller's earlier contacts with outcome, disposition and survey score", body = ScreenPop),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "An agent's session for a call not offered to them, or a role without call_details", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such call (yet)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn history(
    State(st): State<RestState>,
    caller: Caller,
    ApiPath(call_id): ApiPath<String>,
) -> Result<Response, Problem> {
    if caller.agent_extension().is_none() {
        caller.require(Permission::CallDetails)?;
    }
    let call = st
        .store
        .call(&call_id)
        .await
        .map_err(Problem::internal)?
        .ok_or_else(|| unknown_call(&call_id))?;
    if let Some(ext) = caller.agent_extension() {
        if !agent_may_see(&call, ext) {
            return Err(forbidden_call());
        }
    }
    let now = st.clock.now();
    let until = Millis(call.arrived_at.as_u64().max(now.as_u64()).saturating_add(1));
    let since = Millis(now.as_u64().saturating_sub(HISTORY_WINDOW_MS));
    let contacts = st
        .store
        .caller_history(&call.caller, &call.call_id, since, until, HISTORY_LIMIT)
        .await
        .map_err(Problem::internal)?
        .into_iter()
        .map(|(hit, csat)| Contact {
            call_id: hit.call.call_id.clone(),
            arrived_at: hit.call.arrived_at.as_u64(),
            queue: hit.call.queue.clone(),
            agent: hit.call.agent.clone(),
            outcome: hit.outcome.as_str().to_string(),
            disposition: hit.call.disposition.as_ref().map(|d| d.name.clone()),
            disposition_note: hit.call.disposition.as_ref().and_then(|d| d.note.clone()),
            csat,
        })
        .collect();
    let queue = call_queue(&call).map(str::to_string);
    let waited_ms = call.queued_at.map(|q| {
        let end = call
            .agent_answered_at
            .or(call.ended_at)
            .unwrap_or(now)
            .as_u64();
        end.saturating_sub(q.as_u64())
    });
    let screen = ScreenCall {
        call_id: call.call_id.clone(),
        number: shown_caller(&call.caller),
        language: language_of(&call),
        ivr_path: call
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
        variables: call.variables.clone(),
        queue_label: queue
            .as_deref()
            .and_then(|q| st.queues.get(q))
            .map(|q| q.label.clone()),
        queue: queue.clone(),
        arrived_at: call.arrived_at.as_u64(),
        queued_at: call.queued_at.map(|t| t.as_u64()),
        agent_answered_at: call.agent_answered_at.map(|t| t.as_u64()),
        ended_at: call.ended_at.map(|t| t.as_u64()),
        waited_ms,
        agent: call.agent.clone(),
        disposition: call.disposition.as_ref().map(|d| d.name.clone()),
        disposition_note: call.disposition.as_ref().and_then(|d| d.note.clone()),
        dispositions: st
            .queues
            .dispositions
            .codes_for(queue.as_deref())
            .iter()
            .map(DispositionOption::of)
            .collect(),
    };
    let mut res = axum::Json(ScreenPop {
        call: screen,
        contacts,
        window_days: (HISTORY_WINDOW_MS / 86_400_000) as u32,
    })
    .into_response();
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

/// Set the call's disposition and note (as the agent who answered it).
#[utoipa::path(
    post,
    path = "/api/v1/calls/{call_id}/disposition",
    operation_id = "setCallDisposition",
    tag = "calls",
    params(("call_id" = String, Path, description = "The engine's call id")),
    request_body = DispositionRequest,
    responses(
        (status = 202, description = "Sent to the engine, which sets it while this is the answering agent's current or last call", body = DispositionAccepted),
        (status = 400, description = "Malformed JSON", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "An agent's session for a call they did not answer, a role without agent_commands, or CSRF token missing", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such call", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "No agent answered the call (type not-answered)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "Unknown code for the call's queue, unknown field", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "The engine is not taking commands now, or the audit log cannot be written", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn set_disposition(
    State(st): State<RestState>,
    caller: Caller,
    ApiPath(call_id): ApiPath<String>,
    ApiJson(req): ApiJson<DispositionRequest>,
) -> Result<Response, Problem> {
    if caller.agent_extension().is_none() {
        caller.require(Permission::AgentCommands)?;
    }
    let call = st
        .store
        .call(&call_id)
        .await
        .map_err(Problem::internal)?
        .ok_or_else(|| unknown_call(&call_id))?;
    let agent = match (caller.agent_extension(), call.agent.as_deref()) {
        (Some(own), Some(a)) if own == a => a.to_string(),
        (Some(own), _) if agent_may_see(&call, own) => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                NOT_ANSWERED,
                "Not answered by this agent",
            )
            .detail("only the agent who answered the call classifies it"))
        }
        (Some(_), _) => return Err(forbidden_call()),
        (None, Some(a)) => a.to_string(),
        (None, None) => {
            return Err(
                Problem::new(StatusCode::CONFLICT, NOT_ANSWERED, "Not answered")
                    .detail("no agent answered this call: there is nobody to classify it for"),
            )
        }
    };
    let queue = call_queue(&call);
    let catalog = &st.queues.dispositions;
    let wanted = req.code.trim();
    let code = catalog
        .by_name(queue, wanted)
        .or_else(|| {
            wanted
                .parse::<u8>()
                .ok()
                .and_then(|n| catalog.by_number(queue, n))
        })
        .ok_or_else(|| {
            let names: Vec<&str> = catalog
                .codes_for(queue)
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            invalid(format!(
                "`{}` is not a disposition of this call's queue: use one of {}",
                printable(wanted, 40),
                names.join(", ")
            ))
        })?
        .clone();
    let permit = match tokio::time::timeout(SEND_WAIT, st.commands.reserve()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => return Err(Problem::unavailable("the switch is shutting down")),
        Err(_) => {
            return Err(Problem::unavailable(
                "the switch is busy: the disposition was not sent, try again",
            )
            .with("retry", true))
        }
    };
    // Supervisors' changes to someone else's call are audited; an agent's own is the call's
    // record (call_dispositions keeps every one).
    if caller.agent_extension().is_none() || matches!(caller.via, Via::Token) {
        st.auth
            .audit_caller(
                &caller,
                "call.disposition",
                Some(&call.call_id),
                Some(&format!("{agent}:{}", code.name)),
            )
            .await
            .map_err(|_| Problem::unavailable("the audit log cannot be written: not sent"))?;
    }
    permit.send(Command::Disposition {
        agent: agent.clone(),
        call_id: Some(call.call_id.clone()),
        code: code.name.clone(),
        note: req.note,
    });
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(DispositionAccepted {
            accepted: true,
            agent,
            code: code.name,
        }),
    )
        .into_response())
}

/// Problem type: the call has no answering agent (or not this one) to classify it for.
pub const NOT_ANSWERED: &str = "not-answered";

/// How long a command waits for room in the engine's queue before the answer is 503.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_requests_parse_strictly() {
        assert!(serde_json::from_str::<DispositionRequest>(r#"{"code":"resolved"}"#).is_ok());
        assert!(serde_json::from_str::<DispositionRequest>(r#"{"code":"1","note":"ok"}"#).is_ok());
        assert!(serde_json::from_str::<DispositionRequest>(r#"{"code":"x","y":1}"#).is_err());
        assert!(serde_json::from_str::<DispositionRequest>(r#"{"note":"x"}"#).is_err());
    }
}
