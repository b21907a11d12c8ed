//! `POST /api/v1/agents/{extension}/state`: a supervisor sets an agent ready, on a break
//! (not ready with a reason) or logged out; an agent-desk session does the same for its own
//! extension only. The engine applies it as the feature codes do
//! (`Command::Agent`); what happened shows in the agent's state records and the live feed.

use super::auth_routes::Caller;
use super::params::ApiPath;
use super::problem::{types, ApiJson, Problem};
use super::rest::RestState;
use crate::auth::Permission;
use crate::engine::{AgentChange, Command};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long a command waits for room in the engine's queue before the answer is 503.
const SEND_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Longest not-ready reason taken (they are short codes: `break`, `lunch`, `training`).
pub const MAX_REASON_CHARS: usize = 32;

/// The state a supervisor may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestedState {
    /// Log in if logged out, else ready (ends wrap-up early).
    Ready,
    /// On a break; `reason` is required.
    NotReady,
    LoggedOut,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentStateRequest {
    pub state: RequestedState,
    /// Required for `not_ready`, optional for `logged_out` (kept in the audit log), refused
    /// with `ready`: 1-32 characters of `a-z A-Z 0-9 _ -`.
    #[serde(default)]
    #[schema(example = "break")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct Accepted {
    /// Always true: the command reached the engine (which may still refuse it, e.g. ready
    /// while on a call; the agent's state in the live feed says what happened).
    pub accepted: bool,
}

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        types::INVALID_BODY,
        "Invalid request body",
    )
    .detail(detail)
}

fn check_reason(r: &str) -> Result<(), Problem> {
    let ok_chars = r
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if r.is_empty() || r.chars().count() > MAX_REASON_CHARS || !ok_chars {
        return Err(invalid(format!(
            "reason must be 1-{MAX_REASON_CHARS} characters of a-z, A-Z, 0-9, _ and -"
        )));
    }
    Ok(())
}

/// The engine's change for a request, or why it is refused.
pub fn change_of(req: &AgentStateRequest) -> Result<AgentChange, Problem> {
    match (req.state, req.reason.as_deref()) {
        (RequestedState::NotReady, Some(r)) => {
            check_reason(r)?;
            Ok(AgentChange::NotReady {
                reason: r.to_string(),
            })
        }
        (RequestedState::LoggedOut, Some(r)) => {
            check_reason(r)?;
            Ok(AgentChange::Logout)
        }
        (RequestedState::NotReady, None) => {
            Err(invalid("state not_ready needs a reason, e.g. \"break\""))
        }
        (RequestedState::Ready, Some(_)) => Err(invalid(
            "a reason is only taken with state not_ready or logged_out",
        )),
        (RequestedState::Ready, None) => Ok(AgentChange::Ready),
        (RequestedState::LoggedOut, None) => Ok(AgentChange::Logout),
    }
}

/// Set an agent's state.
#[utoipa::path(
    post,
    path = "/api/v1/agents/{extension}/state",
    operation_id = "setAgentState",
    tag = "agents",
    params(("extension" = String, Path, description = "The agent's extension (agents.toml)")),
    request_body = AgentStateRequest,
    responses(
        (status = 202, description = "Sent to the engine", body = Accepted),
        (status = 400, description = "Malformed JSON", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks agent_commands (an agent's session: another extension), or CSRF token missing", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such agent", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "Body does not fit (unknown field, bad state or reason)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "The engine is not taking commands now", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn set_state(
    State(st): State<RestState>,
    caller: Caller,
    ApiPath(extension): ApiPath<String>,
    ApiJson(req): ApiJson<AgentStateRequest>,
) -> Result<Response, Problem> {
    caller.require_for_agent(&extension, Permission::AgentCommands)?;
    if st.agents.get(&extension).is_none() {
        return Err(Problem::not_found(format!(
            "there is no agent with extension `{}` in agents.toml",
            super::rest::printable(&extension, 40)
        )));
    }
    let change = change_of(&req)?;
    let detail = match &change {
        AgentChange::Ready => "ready".to_string(),
        AgentChange::NotReady { reason } => format!("not_ready:{reason}"),
        AgentChange::Logout => match &req.reason {
            Some(r) => format!("logged_out:{r}"),
            None => "logged_out".to_string(),
        },
    };
    // A slot in the engine's queue first, then the audit row, then the command: nothing is
    // sent unaudited, and nothing is audited that could not be sent.
    let permit = match tokio::time::timeout(SEND_WAIT, st.commands.reserve()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => return Err(Problem::unavailable("the switch is shutting down")),
        Err(_) => {
            return Err(Problem::unavailable(
                "the switch is busy: the command was not sent, try again",
            )
            .with("retry", true))
        }
    };
    st.auth
        .audit_caller(&caller, "agent.set_state", Some(&extension), Some(&detail))
        .await
        .map_err(|_| Problem::unavailable("the audit log cannot be written: command not sent"))?;
    permit.send(Command::Agent {
        agent: extension,
        change,
    });
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Accepted { accepted: true }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(state: RequestedState, reason: Option<&str>) -> AgentStateRequest {
        AgentStateRequest {
            state,
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn requests_map_to_engine_changes() {
        use RequestedState::*;
        assert_eq!(change_of(&req(Ready, None)).unwrap(), AgentChange::Ready);
        assert_eq!(
            change_of(&req(LoggedOut, None)).unwrap(),
            AgentChange::Logout
        );
        assert_eq!(
            change_of(&req(NotReady, Some("break"))).unwrap(),
            AgentChange::NotReady {
                reason: "break".into()
            }
        );
        for bad in [
            req(NotReady, None),
            req(NotReady, Some("")),
            req(NotReady, Some("coffee break")),
            req(NotReady, Some(&"x".repeat(33))),
            req(NotReady, Some("<script>")),
            req(Ready, Some("break")),
        ] {
            let p = change_of(&bad).unwrap_err();
            assert_eq!(p.status, 422);
            assert_eq!(p.slug(), types::INVALID_BODY);
        }
    }

    #[test]
    fn unknown_fields_and_states_are_refused() {
        assert!(serde_json::from_str::<AgentStateRequest>(r#"{"state":"ready","x":1}"#).is_err());
        assert!(serde_json::from_str::<AgentStateRequest>(r#"{"state":"busy"}"#).is_err());
        assert!(serde_json::from_str::<AgentStateRequest>(r#"{"state":"ready"}"#).is_ok());
    }
}
