//! `GET /api/v1/audit?limit&cursor` (Admin): the audit log, newest first, a page at a time.

use super::auth_routes::{perm, Authorized};
use super::cursor;
use super::params::{bad_param, ApiQuery};
use super::problem::Problem;
use super::rest::RestState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 500;
const QUERY_KEY: &str = "audit";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Page size, 1-500 (default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditRow {
    pub id: i64,
    /// Epoch ms.
    pub at: u64,
    /// A users.toml user, `token:NAME`, `cli`, or the name tried at a failed sign-in.
    pub user: String,
    /// The client address, or `cli`.
    pub source: String,
    /// e.g. session.sign_in, agent.set_state, recording.download, call.unmask.
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditRow>,
    pub next_cursor: Option<String>,
}

/// The audit log, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "listAudit",
    tag = "admin",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the audit log", body = AuditPage),
        (status = 400, description = "Bad parameter or cursor", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks admin", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn list(
    State(st): State<RestState>,
    _auth: Authorized<perm::Admin>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, Problem> {
    let limit = match q.limit {
        None => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => return Err(bad_param("limit", format!("must be 1-{MAX_LIMIT}"))),
    };
    let before = match &q.cursor {
        None => None,
        Some(c) => Some(
            cursor::decode(QUERY_KEY, c)?
                .parse::<i64>()
                .map_err(|_| bad_param("cursor", "not a cursor of this query"))?,
        ),
    };
    let rows = st
        .store
        .audit_page(limit, before)
        .await
        .map_err(Problem::internal)?;
    let next_cursor = match rows.last() {
        Some((id, _)) if rows.len() as u32 == limit => {
            Some(cursor::encode(QUERY_KEY, &id.to_string()))
        }
        _ => None,
    };
    let entries = rows
        .into_iter()
        .map(|(id, e)| AuditRow {
            id,
            at: e.at.as_u64(),
            user: e.user,
            source: e.source,
            action: e.action,
            target: e.target,
            detail: e.detail,
        })
        .collect();
    Ok(axum::Json(AuditPage {
        entries,
        next_cursor,
    })
    .into_response())
}
