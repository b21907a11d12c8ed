//! `POST /api/v1/calls/{call_id}/monitor`: a supervisor (or admin) presses Listen, Whisper or
//! Barge on the wallboard and the switch rings their own SIP phone (users.toml
//! `sip_extension`); answered, it joins the call in that mode exactly as the `*31`/`*32`/`*33`
//! feature codes do (`engine::switch::monitor`). The engine decides at once whether it can
//! (`Input::MonitorRequest` -> `Output::MonitorAnswer`, through the control loop); the
//! answer here is 202 while the phone rings. Every attempt a signed-in caller makes, accepted
//! or refused, is one audit row (`monitor.request`, target the call, detail the mode and
//! the outcome); the answered call adds the `monitor.<mode>` row the feature code writes.

use super::auth_routes::{Caller, Via};
use super::params::ApiPath;
use super::problem::{ApiJson, Problem};
use super::rest::RestState;
use crate::auth::Permission;
use crate::control::MonitorAsk;
use crate::engine::media::MonitorMode;
use crate::engine::{MonitorRefusal, MonitorRequest, MONITOR_RING_MS};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// How long the request waits for room in the engine's queue, then for its answer.
const ENGINE_WAIT: Duration = Duration::from_secs(2);

/// Problem type: the switch cannot ring the supervisor for this call now (409); the
/// `reason` member says why (`not_registered`, `not_bridged`, `already_monitored`,
/// `supervisor_busy`).
pub const MONITOR_REFUSED: &str = "monitor-refused";
/// Problem type: the caller has no SIP phone to ring (no users.toml `sip_extension`, or an
/// API token) (422).
pub const NO_SIP_PHONE: &str = "no-sip-phone";

/// The mode to join in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestedMode {
    /// Hear caller and agent; nobody hears you.
    Listen,
    /// Hear both; only the agent hears you.
    Whisper,
    /// Everyone hears everyone.
    Barge,
}

impl RequestedMode {
    fn engine(self) -> MonitorMode {
        match self {
            RequestedMode::Listen => MonitorMode::Listen,
            RequestedMode::Whisper => MonitorMode::Whisper,
            RequestedMode::Barge => MonitorMode::Barge,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorBody {
    pub mode: RequestedMode,
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct MonitorRinging {
    /// This request's id (in the audit log's detail).
    #[schema(example = "mon-5f0c2d9e8a7b6c41")]
    pub request_id: String,
    pub call_id: String,
    pub mode: RequestedMode,
    /// The phone being rung (the caller's `sip_extension`).
    pub extension: String,
    /// Unanswered after this many seconds, the switch stops ringing.
    pub ring_timeout_s: u64,
}

/// The problem document for an engine refusal.
pub fn refusal_problem(r: MonitorRefusal, call_id: &str, extension: &str) -> Problem {
    let call = super::rest::printable(call_id, 64);
    let conflict = |detail: String| {
        Problem::new(StatusCode::CONFLICT, MONITOR_REFUSED, "Cannot monitor now")
            .detail(detail)
            .with("reason", r.as_str())
    };
    match r {
        MonitorRefusal::UnknownCall => {
            Problem::not_found(format!("there is no live call `{call}`"))
        }
        MonitorRefusal::NotSupervisor => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            NO_SIP_PHONE,
            "No SIP phone to ring",
        )
        .detail(format!(
            "extension {extension} is not a supervisor's SIP phone in this switch"
        )),
        MonitorRefusal::NotRegistered => conflict(format!(
            "your SIP phone (extension {extension}) is not registered: register it (a \
             browser phone cannot be rung for monitoring yet) and try again"
        )),
        MonitorRefusal::NotBridged => conflict(format!(
            "call `{call}` has no agent on it now (IVR, queue, ringing or ending)"
        )),
        MonitorRefusal::AlreadyMonitored => conflict(format!(
            "call `{call}` is already monitored (or a supervisor's phone rings for it)"
        )),
        MonitorRefusal::SupervisorBusy => conflict(
            "you are already monitoring a call, or your phone rings for one: hang up first"
                .to_string(),
        ),
        MonitorRefusal::NoCapacity => {
            Problem::unavailable("the switch has no media port free: try again shortly")
        }
    }
}

/// Ring my SIP phone to monitor a call.
#[utoipa::path(
    post,
    path = "/api/v1/calls/{call_id}/monitor",
    operation_id = "monitorCall",
    tag = "calls",
    params(("call_id" = String, Path, description = "The engine's call id (live calls: the wallboard's)")),
    request_body = MonitorBody,
    responses(
        (status = 202, description = "Your phone is ringing; answer it to join the call", body = MonitorRinging),
        (status = 400, description = "Malformed JSON", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks monitor (viewers, agents), or CSRF token missing", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such live call", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "Type monitor-refused: your phone is not registered, the call has no agent on it, it is already monitored, or you are monitoring already (member `reason`)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "Body does not fit (unknown field or mode), or type no-sip-phone: you have no users.toml sip_extension (API tokens have none)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "The engine is not taking requests now", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn request_monitor(
    State(st): State<RestState>,
    caller: Caller,
    ApiPath(call_id): ApiPath<String>,
    ApiJson(body): ApiJson<MonitorBody>,
) -> Result<Response, Problem> {
    let mode = body.mode.engine();
    let id = format!("mon-{:016x}", rand::random::<u64>());
    let outcome = ask(&st, &caller, &call_id, mode, &id).await;
    let detail = match &outcome {
        Ok(ext) => format!("{} ringing {ext} ({id})", mode.as_str()),
        Err(p) => format!(
            "{} refused: {}",
            mode.as_str(),
            p.extensions
                .get("reason")
                .and_then(|v| v.as_str())
                .unwrap_or(p.slug())
        ),
    };
    // The outcome is known only after the engine answered: one row with it. A failed
    // write is logged and counted (`AuthState::audit`).
    let _ = st
        .auth
        .audit_caller(&caller, "monitor.request", Some(&call_id), Some(&detail))
        .await;
    let extension = outcome?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(MonitorRinging {
            request_id: id,
            call_id,
            mode: body.mode,
            extension,
            ring_timeout_s: MONITOR_RING_MS / 1000,
        }),
    )
        .into_response())
}

/// Checks the caller and asks the engine; the extension rung, or the problem.
async fn ask(
    st: &RestState,
    caller: &Caller,
    call_id: &str,
    mode: MonitorMode,
    id: &str,
) -> Result<String, Problem> {
    caller.require(Permission::Monitor)?;
    let phone = match caller.via {
        Via::Session { .. } => st.agents.supervisors.iter().find(|s| s.name == caller.name),
        Via::Token => None,
    };
    let Some(extension) = phone.map(|s| s.extension.clone()) else {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            NO_SIP_PHONE,
            "No SIP phone to ring",
        )
        .detail(match caller.via {
            Via::Token => "an API token has no SIP phone: sign in as a user with a \
                           sip_extension in users.toml"
                .to_string(),
            Via::Session { .. } => format!(
                "user `{}` has no sip_extension in users.toml: add one (with its HA1) to be \
                 rung, or dial *31/*32/*33 + the agent's extension from your phone",
                caller.name
            ),
        }));
    };
    let Some(tx) = st.monitor.as_ref() else {
        return Err(Problem::unavailable(
            "monitoring is not available on this server",
        ));
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = MonitorRequest {
        id: id.to_string(),
        call_id: call_id.to_string(),
        supervisor: extension.clone(),
        mode,
    };
    match tokio::time::timeout(ENGINE_WAIT, tx.send(MonitorAsk { request, reply })).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(Problem::unavailable("the switch is shutting down")),
        Err(_) => {
            return Err(
                Problem::unavailable("the switch is busy: nothing was rung, try again")
                    .with("retry", true),
            )
        }
    }
    match tokio::time::timeout(ENGINE_WAIT, answer).await {
        Ok(Ok(Ok(()))) => Ok(extension),
        Ok(Ok(Err(r))) => Err(refusal_problem(r, call_id, &extension)),
        Ok(Err(_)) => Err(Problem::unavailable("the switch is shutting down")),
        Err(_) => Err(Problem::unavailable(
            "the switch did not answer in time: your phone may still ring",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::problem::types;

    #[test]
    fn bodies_take_the_three_modes_only() {
        for (text, mode) in [
            (r#"{"mode":"listen"}"#, RequestedMode::Listen),
            (r#"{"mode":"whisper"}"#, RequestedMode::Whisper),
            (r#"{"mode":"barge"}"#, RequestedMode::Barge),
        ] {
            assert_eq!(
                serde_json::from_str::<MonitorBody>(text).unwrap().mode,
                mode
            );
        }
        for bad in [
            r#"{"mode":"spy"}"#,
            r#"{"mode":"listen","x":1}"#,
            r#"{}"#,
            r#"{"mode":3}"#,
        ] {
            assert!(serde_json::from_str::<MonitorBody>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusals_map_to_statuses_with_reasons() {
        use MonitorRefusal::*;
        let cases = [
            (UnknownCall, 404, types::NOT_FOUND),
            (NotSupervisor, 422, NO_SIP_PHONE),
            (NotRegistered, 409, MONITOR_REFUSED),
            (NotBridged, 409, MONITOR_REFUSED),
            (AlreadyMonitored, 409, MONITOR_REFUSED),
            (SupervisorBusy, 409, MONITOR_REFUSED),
            (NoCapacity, 503, types::UNAVAILABLE),
        ];
        for (r, status, slug) in cases {
            let p = refusal_problem(r, "c-1\u{7}", "9001");
            assert_eq!((p.status, p.slug()), (status, slug), "{r:?}");
            assert!(!p.detail.as_deref().unwrap_or("").contains('\u{7}'));
            if status == 409 {
                assert_eq!(p.extensions["reason"], r.as_str());
            }
        }
    }
}
