//! Calls for supervisors (CallDetails): `GET /api/v1/calls` (search, newest first, cursor
//! paging, CSV), `GET /api/v1/calls/{call_id}` (the whole timeline), and
//! `POST /api/v1/calls/{call_id}/unmask` (Unmask, audited). Caller numbers are masked
//! everywhere except in the unmask answer.

use super::auth_routes::{perm, Authorized};
use super::call_timeline::{is_retention_hash, CallDetail, CallSummary};
use super::params::{bad_param, name_param, span, ApiPath, ApiQuery, OutputFormat};
use super::problem::{types, Problem};
use super::rest::{printable, RestState};
use super::{csv_export, cursor};
use crate::engine::Millis;
use crate::store::{CallOutcome, CallSearch};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallsQuery {
    /// Arrived at or after: epoch ms, RFC 3339 or YYYY-MM-DD (UTC). Default: 24 h before `to`.
    pub from: Option<String>,
    /// Arrived before, same forms. Default: now. At most 93 days after `from`.
    pub to: Option<String>,
    /// The queue the call entered or overflowed to.
    pub queue: Option<String>,
    /// The agent who answered or was offered the call (extension).
    pub agent: Option<String>,
    /// in_progress, answered, abandoned, not_answered, self_served, transferred,
    /// abandoned_in_ivr, failed.
    pub outcome: Option<String>,
    /// The caller number ends with these 2-4 digits.
    pub number_suffix: Option<String>,
    /// Page size, 1-500 (default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (same filters).
    pub cursor: Option<String>,
    pub format: Option<OutputFormat>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CallPage {
    /// Newest first.
    pub calls: Vec<CallSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The canonical text of a search's filters (what a cursor is bound to).
fn query_key(s: &CallSearch) -> String {
    format!(
        "calls|{}|{}|{}|{}|{}|{}",
        s.since.as_u64(),
        s.until.as_u64(),
        s.queue.as_deref().unwrap_or(""),
        s.agent.as_deref().unwrap_or(""),
        s.outcome.map_or("", |o| o.as_str()),
        s.number_suffix.as_deref().unwrap_or("")
    )
}

fn search_of(q: &CallsQuery, now: Millis) -> Result<CallSearch, Problem> {
    let s = span(q.from.as_deref(), q.to.as_deref(), now)?;
    let outcome = match q.outcome.as_deref() {
        None => None,
        Some(o) => Some(CallOutcome::parse(o).ok_or_else(|| {
            let all: Vec<&str> = CallOutcome::ALL.iter().map(|o| o.as_str()).collect();
            bad_param("outcome", format!("must be one of {}", all.join(", ")))
        })?),
    };
    let number_suffix = match q.number_suffix.as_deref() {
        None => None,
        Some(d) if (2..=4).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) => {
            Some(d.to_string())
        }
        Some(_) => return Err(bad_param("number_suffix", "must be 2-4 digits")),
    };
    let limit = match q.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return Err(bad_param("limit", format!("must be 1-{MAX_LIMIT}"))),
    };
    let mut search = CallSearch {
        since: s.since,
        until: s.until,
        queue: name_param("queue", q.queue.clone())?,
        agent: name_param("agent", q.agent.clone())?,
        outcome,
        number_suffix,
        after: None,
        limit,
    };
    if let Some(c) = &q.cursor {
        let position = cursor::decode(&query_key(&search), c)?;
        let bad = || {
            bad_param(
                "cursor",
                "not a cursor of this query: start again without it",
            )
        };
        let (at, id) = position.split_once('|').ok_or_else(bad)?;
        let at: u64 = at.parse().map_err(|_| bad())?;
        search.after = Some((Millis(at), id.to_string()));
    }
    Ok(search)
}

/// Search calls, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/calls",
    operation_id = "searchCalls",
    tag = "calls",
    params(CallsQuery),
    responses(
        (status = 200, description = "A page of calls (numbers masked); with format=csv the page as text/csv (header X-Next-Cursor for the next page)", content((CallPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Bad parameter or cursor", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks call_details", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn search(
    State(st): State<RestState>,
    _auth: Authorized<perm::CallDetails>,
    ApiQuery(q): ApiQuery<CallsQuery>,
) -> Result<Response, Problem> {
    let search = search_of(&q, st.clock.now())?;
    let hits = st
        .store
        .search_calls(&search)
        .await
        .map_err(Problem::internal)?;
    let next_cursor = match hits.last() {
        Some(last) if hits.len() as u32 == search.limit => Some(cursor::encode(
            &query_key(&search),
            &format!("{}|{}", last.call.arrived_at.as_u64(), last.call.call_id),
        )),
        _ => None,
    };
    let calls: Vec<CallSummary> = hits.iter().map(CallSummary::of).collect();
    if q.format == Some(OutputFormat::Csv) {
        let rows: Vec<serde_json::Value> = calls
            .iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        let mut res = csv_export::respond(
            "calls",
            &rows,
            &[
                "arrived_at",
                "call_id",
                "number",
                "queue",
                "agent",
                "outcome",
            ],
        );
        // The next page of a CSV export: same request with this cursor.
        if let Some(c) = next_cursor.and_then(|c| c.parse().ok()) {
            res.headers_mut().insert("x-next-cursor", c);
        }
        return Ok(res);
    }
    Ok(axum::Json(CallPage { calls, next_cursor }).into_response())
}

fn unknown_call(call_id: &str) -> Problem {
    Problem::not_found(format!("there is no call `{}`", printable(call_id, 80)))
}

/// One call's whole timeline.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}",
    operation_id = "getCall",
    tag = "calls",
    params(("call_id" = String, Path, description = "The engine's call id")),
    responses(
        (status = 200, description = "The call, its IVR path, queue, offers, holds, transfer, wrap-up, recording, survey and follow-up task (numbers masked)", body = CallDetail),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks call_details", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such call", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn timeline(
    State(st): State<RestState>,
    _auth: Authorized<perm::CallDetails>,
    ApiPath(call_id): ApiPath<String>,
) -> Result<Response, Problem> {
    let call = st
        .store
        .call(&call_id)
        .await
        .map_err(Problem::internal)?
        .ok_or_else(|| unknown_call(&call_id))?;
    let survey = st
        .store
        .survey_of_call(&call_id)
        .await
        .map_err(Problem::internal)?;
    let task = st
        .store
        .follow_up_of_call(&call_id)
        .await
        .map_err(Problem::internal)?;
    let recording = call
        .recording_path
        .as_deref()
        .and_then(|p| super::recordings::resolve(&st.recordings_dir, p))
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len());
    let detail = CallDetail::of(&call, recording, survey.as_ref(), task.as_ref());
    Ok(axum::Json(detail).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Unmasked {
    pub call_id: String,
    /// The caller's number in full.
    pub number: String,
}

/// The caller's full number of one call (audited).
#[utoipa::path(
    post,
    path = "/api/v1/calls/{call_id}/unmask",
    operation_id = "unmaskCall",
    tag = "calls",
    params(("call_id" = String, Path, description = "The engine's call id")),
    responses(
        (status = 200, description = "The full number; the request is in the audit log", body = Unmasked),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks unmask, or CSRF token missing", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such call", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "Only the number's retention hash is kept (type number-not-retained)", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 503, description = "The audit log cannot be written", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn unmask(
    State(st): State<RestState>,
    auth: Authorized<perm::Unmask>,
    ApiPath(call_id): ApiPath<String>,
) -> Result<Response, Problem> {
    let call = st
        .store
        .call(&call_id)
        .await
        .map_err(Problem::internal)?
        .ok_or_else(|| unknown_call(&call_id))?;
    if is_retention_hash(&call.caller) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            NUMBER_NOT_RETAINED,
            "Number not retained",
        )
        .detail("the retention period is over: only the number's hash is kept"));
    }
    st.auth
        .audit_caller(auth.caller(), "call.unmask", Some(&call_id), None)
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                types::UNAVAILABLE,
                "Service unavailable",
            )
            .detail("the audit log cannot be written: the number is not shown")
        })?;
    let mut res = axum::Json(Unmasked {
        call_id,
        number: call.caller,
    })
    .into_response();
    res.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(res)
}

/// Problem type: the caller number was replaced by its retention hash (409).
pub const NUMBER_NOT_RETAINED: &str = "number-not-retained";
