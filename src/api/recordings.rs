//! `GET /api/v1/calls/{call_id}/recording` (Recordings, audited): the call's WAV with HTTP
//! range requests (206 / 416 by tower-http's `ServeFile`). The path comes from the call's
//! RecordingSaved record and is served only if, canonicalised, it lies inside the configured
//! recordings folder; the path itself is never shown.

use super::auth_routes::{perm, Authorized};
use super::params::ApiPath;
use super::problem::{types, Problem};
use super::rest::{printable, RestState};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::path::{Path as FsPath, PathBuf};
use tower_http::services::ServeFile;

/// The canonical path of a recording stored as `stored`, if it is a file inside `dir`.
pub fn resolve(dir: &FsPath, stored: &str) -> Option<PathBuf> {
    let dir = dir.canonicalize().ok()?;
    let stored = FsPath::new(stored);
    let candidate = if stored.is_absolute() {
        stored.to_path_buf()
    } else {
        dir.join(stored)
    };
    let real = candidate.canonicalize().ok()?;
    if !real.starts_with(&dir) {
        tracing::warn!(path = %real.display(), dir = %dir.display(), "recording outside the recordings folder: not served");
        return None;
    }
    real.is_file().then_some(real)
}

fn no_recording(call_id: &str) -> Problem {
    Problem::not_found(format!(
        "call `{}` has no recording available",
        printable(call_id, 80)
    ))
}

/// The call's recording (audio/wav); supports `Range`.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/recording",
    operation_id = "downloadRecording",
    tag = "calls",
    params(("call_id" = String, Path, description = "The engine's call id")),
    responses(
        (status = 200, description = "The whole WAV file", content_type = "audio/wav"),
        (status = 206, description = "The requested byte range", content_type = "audio/wav"),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks recordings", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such call, or no recording file", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 416, description = "Range not satisfiable"),
        (status = 503, description = "The audit log cannot be written", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn download(
    State(st): State<RestState>,
    auth: Authorized<perm::Recordings>,
    ApiPath(call_id): ApiPath<String>,
    req: Request,
) -> Result<Response, Problem> {
    let call = st
        .store
        .call(&call_id)
        .await
        .map_err(Problem::internal)?
        .ok_or_else(|| {
            Problem::not_found(format!("there is no call `{}`", printable(&call_id, 80)))
        })?;
    let path = call
        .recording_path
        .as_deref()
        .and_then(|p| resolve(&st.recordings_dir, p))
        .ok_or_else(|| no_recording(&call_id))?;
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|r| printable(r, 60));
    st.auth
        .audit_caller(
            auth.caller(),
            "recording.download",
            Some(&call_id),
            range.as_deref(),
        )
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                types::UNAVAILABLE,
                "Service unavailable",
            )
            .detail("the audit log cannot be written: the recording is not served")
        })?;
    let res = ServeFile::new(&path)
        .try_call(req)
        .await
        .map_err(Problem::internal)?;
    if res.status() == StatusCode::NOT_FOUND {
        return Err(no_recording(&call_id));
    }
    let mut res = res.map(Body::new).into_response();
    let ok = res.status().is_success();
    let h = res.headers_mut();
    if ok {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    }
    let name: String = call_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(80)
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"call-{name}.wav\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(res)
}
