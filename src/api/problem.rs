//! RFC 9457 problem documents: every API error is `application/problem+json` with a stable
//! `type` URI (`https://ccswitch.dev/problems/<slug>`), a short `title` that never varies for
//! a type, the HTTP `status`, and a `detail` for this occurrence. Clients branch on `type`.
//!
//! `ApiJson<T>` is the JSON body extractor of the API: a body that is not JSON, does not fit
//! `T` (give `T` `#[serde(deny_unknown_fields)]`: unknown fields are refused) or is too large
//! gets a problem document, not axum's plain-text rejection.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// Where the problem types live; a type URI is this plus a slug.
pub const PROBLEM_BASE: &str = "https://ccswitch.dev/problems/";
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The stable slugs (the last segment of `type`). Add new ones, never rename.
pub mod types {
    /// No credentials, or unknown / expired / revoked ones (401).
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// Wrong user name or password at sign-in (401).
    pub const SIGN_IN_FAILED: &str = "sign-in-failed";
    /// Authenticated, but the role lacks the permission (403).
    pub const FORBIDDEN: &str = "forbidden";
    /// A cookie-session request that changes state without the session's `X-CSRF-Token` (403).
    pub const CSRF: &str = "csrf-token-invalid";
    /// Too many failed sign-ins from this address: wait `Retry-After` seconds (429).
    pub const TOO_MANY_REQUESTS: &str = "too-many-requests";
    /// The body is not valid JSON or does not fit the request type (400, 422).
    pub const INVALID_BODY: &str = "invalid-body";
    /// A query parameter or a path segment is malformed or out of range (400).
    pub const BAD_REQUEST: &str = "bad-request";
    /// The body is not `application/json` (415).
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported-media-type";
    /// The body is larger than this endpoint takes (413).
    pub const PAYLOAD_TOO_LARGE: &str = "payload-too-large";
    /// No such resource (404).
    pub const NOT_FOUND: &str = "not-found";
    /// The path exists but not with this method (405; `Allow` lists the methods).
    pub const METHOD_NOT_ALLOWED: &str = "method-not-allowed";
    /// The server failed (500); the detail never carries internals.
    pub const INTERNAL: &str = "internal";
    /// A dependency (the database) is unavailable (503).
    pub const UNAVAILABLE: &str = "unavailable";
}

/// A problem document. Boxed, so `Result<T, Problem>` stays small; the fields are reached
/// through `Deref` (`problem.detail`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Problem(Box<ProblemDoc>);

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProblemDoc {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members (RFC 9457 section 3.2), e.g. `permission`.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
    /// Sent as the `Retry-After` header (seconds).
    #[serde(skip)]
    pub retry_after_s: Option<u64>,
}

impl std::ops::Deref for Problem {
    type Target = ProblemDoc;
    fn deref(&self) -> &ProblemDoc {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemDoc {
        &mut self.0
    }
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Problem {
        Problem(Box::new(ProblemDoc {
            type_uri: format!("{PROBLEM_BASE}{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            extensions: Map::new(),
            retry_after_s: None,
        }))
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Problem {
        self.detail = Some(detail.into());
        self
    }

    pub fn instance(mut self, instance: impl Into<String>) -> Problem {
        self.instance = Some(instance.into());
        self
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Problem {
        self.extensions.insert(key.to_string(), value.into());
        self
    }

    /// The slug of `type` (for tests and logs).
    pub fn slug(&self) -> &str {
        self.type_uri
            .strip_prefix(PROBLEM_BASE)
            .unwrap_or(&self.type_uri)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            types::UNAUTHORIZED,
            "Authentication required",
        )
        .detail(detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, types::FORBIDDEN, "Not allowed").detail(detail)
    }

    pub fn csrf() -> Problem {
        Problem::new(
            StatusCode::FORBIDDEN,
            types::CSRF,
            "Missing or wrong CSRF token",
        )
        .detail(
            "requests that change something with a session cookie need the header \
             X-CSRF-Token with the session's csrf_token (from sign-in or GET /api/v1/session)",
        )
    }

    pub fn too_many_requests(retry_after_ms: u64, detail: impl Into<String>) -> Problem {
        let mut p = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            types::TOO_MANY_REQUESTS,
            "Too many requests",
        )
        .detail(detail);
        p.retry_after_s = Some(retry_after_ms.div_ceil(1000).max(1));
        p
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, types::BAD_REQUEST, "Bad request").detail(detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, types::NOT_FOUND, "Not found").detail(detail)
    }

    /// A dependency (the engine, the audit log) cannot take the request now (503).
    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            types::UNAVAILABLE,
            "Service unavailable",
        )
        .detail(detail)
    }

    /// Logs `cause` and answers 500 without it.
    pub fn internal(cause: impl std::fmt::Display) -> Problem {
        tracing::error!(%cause, "API request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            types::INTERNAL,
            "Internal error",
        )
        .detail("the switch could not complete the request; its log says why")
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut res = (status, body).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 names a scheme. Browsers sign in with a form, not this.
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ccswitch\""),
            );
        }
        if let Some(s) = self.retry_after_s {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Problem {
        let detail = r.body_text();
        match r {
            JsonRejection::MissingJsonContentType(_) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                types::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
            )
            .detail("the body must be JSON with Content-Type: application/json"),
            JsonRejection::JsonDataError(_) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                types::INVALID_BODY,
                "Invalid request body",
            )
            .detail(detail),
            JsonRejection::JsonSyntaxError(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                types::INVALID_BODY,
                "Invalid request body",
            )
            .detail(detail),
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                types::PAYLOAD_TOO_LARGE,
                "Request body too large",
            )
            .detail(detail),
            _ => Problem::new(
                StatusCode::BAD_REQUEST,
                types::INVALID_BODY,
                "Invalid request body",
            )
            .detail(detail),
        }
    }
}

/// `axum::Json`, with problem documents for rejections.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| ApiJson(v))
            .map_err(Problem::from)
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Middleware over the whole HTTP app: an `/api/` request that no route took (404) or that
/// a route takes with other methods (405) gets a problem document like every other API
/// error, not the router's empty answer. Answers that already are problems pass unchanged.
pub async fn api_fallbacks(req: Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let res = next.run(req).await;
    if !path.starts_with("/api/") {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem {
        return res;
    }
    let shown = crate::api::rest::printable(&path, 200);
    match res.status() {
        StatusCode::NOT_FOUND => {
            Problem::not_found(format!("no API resource at {shown}")).into_response()
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = res.headers().get(header::ALLOW).cloned();
            let mut out = Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                types::METHOD_NOT_ALLOWED,
                "Method not allowed",
            )
            .detail(format!("{shown} does not take {method}"))
            .into_response();
            if let Some(allow) = allow {
                out.headers_mut().insert(header::ALLOW, allow);
            }
            out
        }
        _ => res,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_serialises_per_rfc_9457() {
        let p = Problem::forbidden("needs recordings").with("permission", "recordings");
        let v: Value = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "https://ccswitch.dev/problems/forbidden");
        assert_eq!(v["title"], "Not allowed");
        assert_eq!(v["status"], 403);
        assert_eq!(v["detail"], "needs recordings");
        assert_eq!(v["permission"], "recordings");
        assert!(v.get("instance").is_none());
        assert_eq!(p.slug(), "forbidden");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let res = Problem::too_many_requests(1_001, "wait").into_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        assert_eq!(res.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let res = Problem::too_many_requests(0, "wait").into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    }
}
