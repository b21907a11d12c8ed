//! Query-string handling shared by the REST routes: the `ApiQuery` extractor (problem
//! documents for bad parameters), times (epoch ms, RFC 3339, YYYY-MM-DD), the time span
//! limit, and `format=json|csv`.

use super::problem::Problem;
use crate::engine::Millis;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest time span one request may cover.
pub const MAX_SPAN_DAYS: u64 = 93;
const DAY_MS: u64 = 86_400_000;
/// Without `from`, a request covers this much before `to`.
pub const DEFAULT_SPAN_MS: u64 = DAY_MS;

/// `axum::extract::Query`, answering a problem document (400 `bad-request`) when the query
/// string does not fit `T` (give `T` `#[serde(deny_unknown_fields)]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|r| Problem::bad_request(r.body_text()))
    }
}

/// `axum::extract::Path`, answering a problem document (400 `bad-request`) for a path
/// segment that does not decode.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|r| Problem::bad_request(r.body_text()))
    }
}

/// A bad value of query parameter `name`.
pub fn bad_param(name: &str, detail: impl std::fmt::Display) -> Problem {
    Problem::bad_request(format!("query parameter `{name}`: {detail}")).with("parameter", name)
}

/// Epoch milliseconds, RFC 3339 (`2026-12-05T08:00:00+08:00`) or a UTC date (`2026-12-05`).
pub fn parse_time(name: &str, s: &str) -> Result<Millis, Problem> {
    if let Ok(ms) = s.parse::<u64>() {
        if ms <= i64::MAX as u64 / 2 {
            return Ok(Millis(ms));
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        if let Ok(ms) = u64::try_from(t.timestamp_millis()) {
            return Ok(Millis(ms));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            if let Ok(ms) = u64::try_from(t.and_utc().timestamp_millis()) {
                return Ok(Millis(ms));
            }
        }
    }
    Err(bad_param(
        name,
        "not a time: use epoch milliseconds, RFC 3339 (2026-12-05T08:00:00Z) or YYYY-MM-DD",
    ))
}

/// `[since, until)` of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub since: Millis,
    pub until: Millis,
}

/// The span of `from`/`to`: `to` defaults to `now`, `from` to a day before `to`; `from`
/// must be before `to` and the span at most `MAX_SPAN_DAYS`.
pub fn span(from: Option<&str>, to: Option<&str>, now: Millis) -> Result<Span, Problem> {
    let until = match to {
        Some(s) => parse_time("to", s)?,
        None => now,
    };
    let since = match from {
        Some(s) => parse_time("from", s)?,
        None => Millis(until.as_u64().saturating_sub(DEFAULT_SPAN_MS)),
    };
    if since >= until {
        return Err(bad_param("from", "must be before `to`"));
    }
    if until.as_u64() - since.as_u64() > MAX_SPAN_DAYS * DAY_MS {
        return Err(bad_param(
            "to",
            format!("the span from `from` to `to` may be at most {MAX_SPAN_DAYS} days"),
        )
        .with("max_span_days", MAX_SPAN_DAYS));
    }
    Ok(Span { since, until })
}

/// `format=json` (default) or `format=csv`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Json,
    Csv,
}

/// A text parameter naming a queue or agent: printable, at most 64 characters.
pub fn name_param(name: &str, v: Option<String>) -> Result<Option<String>, Problem> {
    match v {
        Some(s) if s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) => {
            Err(bad_param(name, "must be 1-64 printable characters"))
        }
        v => Ok(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_spans() {
        assert_eq!(parse_time("from", "1000").unwrap(), Millis(1000));
        assert_eq!(
            parse_time("from", "1970-01-01T00:00:01Z").unwrap(),
            Millis(1000)
        );
        assert_eq!(parse_time("from", "1970-01-02").unwrap(), Millis(DAY_MS));
        assert_eq!(parse_time("from", "yesterday").unwrap_err().status, 400);
        let now = Millis(100 * DAY_MS);
        let s = span(None, None, now).unwrap();
        assert_eq!((s.since, s.until), (Millis(99 * DAY_MS), now));
        assert!(span(Some("0"), None, now).unwrap_err().detail.is_some());
        assert!(span(Some("5000"), Some("5000"), now).is_err());
        assert!(span(Some("0"), Some(&(93 * DAY_MS).to_string()), now).is_ok());
    }
}
