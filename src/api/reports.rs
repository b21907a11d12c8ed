//! `GET /api/v1/reports/queues|agents|system|surveys` (ViewReports): the figures of
//! `ccswitch report queues|agents|surveys`, from the same store functions and the same JSON
//! rendering, with the CLI's parameters as the query string (`from`/`to` for
//! `--since`/`--until`). `format=csv` answers the rows as a CSV attachment.

use super::auth_routes::{perm, Authorized};
use super::csv_export;
use super::params::{name_param, span, ApiQuery, OutputFormat, Span};
use super::problem::Problem;
use super::rest::RestState;
use crate::engine::Millis;
use crate::kpi::resolution::ResolutionGroup;
use crate::kpi::survey::{Buckets, SurveyGroup};
use crate::kpi::{Interval, Range, ServiceLevelTargets};
use crate::store::report::{self, ReportFormat};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// `interval=day` (default; UTC days, the survey report's local days) or `interval=15m`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
pub enum IntervalParam {
    #[default]
    #[serde(rename = "day")]
    Day,
    #[serde(rename = "15m")]
    Quarter,
}

impl IntervalParam {
    fn interval(self) -> Interval {
        match self {
            IntervalParam::Day => Interval::Day,
            IntervalParam::Quarter => Interval::Quarter,
        }
    }
}

/// `by=queue|agent` of the survey report (default: all surveys in one group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SurveyBy {
    Queue,
    Agent,
}

/// `ccswitch report queues`: `from`, `to` (epoch ms, RFC 3339 or YYYY-MM-DD; default the
/// last 24 h; at most 93 days), `interval`, `service_level_secs`, and `queue` to keep one.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueuesQuery {
    /// Start (inclusive): epoch ms, RFC 3339 or YYYY-MM-DD (UTC). Default: 24 h before `to`.
    pub from: Option<String>,
    /// End (exclusive), same forms. Default: now. At most 93 days after `from`.
    pub to: Option<String>,
    pub interval: Option<IntervalParam>,
    /// Service-level threshold T in seconds for every queue, instead of each queue's own.
    pub service_level_secs: Option<u64>,
    /// Only this queue's rows.
    pub queue: Option<String>,
    pub format: Option<OutputFormat>,
}

/// `ccswitch report agents`, and `agent` to keep one.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AgentsQuery {
    /// Start (inclusive): epoch ms, RFC 3339 or YYYY-MM-DD (UTC). Default: 24 h before `to`.
    pub from: Option<String>,
    /// End (exclusive), same forms. Default: now. At most 93 days after `from`.
    pub to: Option<String>,
    pub interval: Option<IntervalParam>,
    /// Only this agent's rows (the extension).
    pub agent: Option<String>,
    pub format: Option<OutputFormat>,
}

/// The system part of `ccswitch report queues`: calls, 3-ring compliance, IVR containment.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SystemQuery {
    /// Start (inclusive): epoch ms, RFC 3339 or YYYY-MM-DD (UTC). Default: 24 h before `to`.
    pub from: Option<String>,
    /// End (exclusive), same forms. Default: now. At most 93 days after `from`.
    pub to: Option<String>,
    pub interval: Option<IntervalParam>,
    pub format: Option<OutputFormat>,
}

/// `ccswitch report surveys`: intervals are local days (or 15 minutes) in the IVR's time zone.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SurveysQuery {
    /// Start (inclusive): epoch ms, RFC 3339 or YYYY-MM-DD (UTC). Default: 24 h before `to`.
    pub from: Option<String>,
    /// End (exclusive), same forms. Default: now. At most 93 days after `from`.
    pub to: Option<String>,
    pub interval: Option<IntervalParam>,
    pub by: Option<SurveyBy>,
    pub format: Option<OutputFormat>,
}

fn range(s: Span) -> Range {
    Range {
        since: Some(s.since),
        until: Some(s.until),
    }
}

/// The CLI's JSON text as a value (it is built from `json!`, so it parses).
fn parsed(text: &str) -> Result<Value, Problem> {
    serde_json::from_str(text).map_err(Problem::internal)
}

/// JSON: the CLI's document plus the span used; CSV: the rows under `key`.
fn answer(
    mut doc: Value,
    key: &str,
    s: Span,
    format: Option<OutputFormat>,
    name: &str,
    lead: &[&str],
) -> Response {
    match format.unwrap_or_default() {
        OutputFormat::Csv => {
            let rows = doc
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            csv_export::respond(name, &rows, lead)
        }
        OutputFormat::Json => {
            if let Value::Object(m) = &mut doc {
                m.insert("from".into(), s.since.as_u64().into());
                m.insert("to".into(), s.until.as_u64().into());
            }
            axum::Json(doc).into_response()
        }
    }
}

/// Keeps the rows under `key` whose `field` is `value`.
fn keep(doc: &mut Value, key: &str, field: &str, value: Option<&str>) {
    if let (Some(v), Some(Value::Array(rows))) = (value, doc.get_mut(key)) {
        rows.retain(|r| r.get(field).and_then(Value::as_str) == Some(v));
    }
}

/// Per queue and interval: offered, answered, abandoned, service level beside the queue's
/// target, ASA, FRT, AHT, abandonment (and the system rows, as the CLI shows them).
#[utoipa::path(
    get,
    path = "/api/v1/reports/queues",
    operation_id = "reportQueues",
    tag = "reports",
    params(QueuesQuery),
    responses(
        (status = 200, description = "`{interval, from, to, queues: [...], system: [...]}` as `ccswitch report queues --format json`; with format=csv the queue rows (text/csv)", content((super::report_schemas::QueuesReport = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Bad parameter", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks view_reports", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn queues(
    State(st): State<RestState>,
    _auth: Authorized<perm::ViewReports>,
    ApiQuery(q): ApiQuery<QueuesQuery>,
) -> Result<Response, Problem> {
    let s = span(q.from.as_deref(), q.to.as_deref(), st.clock.now())?;
    let queue = name_param("queue", q.queue)?;
    let targets = match q.service_level_secs {
        None => (*st.service_levels).clone(),
        Some(secs) if (1..=3600).contains(&secs) => {
            let mut t: ServiceLevelTargets = (*st.service_levels).clone();
            t.fallback.threshold_ms = secs * 1000;
            t.queues
                .values_mut()
                .for_each(|q| q.threshold_ms = secs * 1000);
            t
        }
        Some(_) => {
            return Err(super::params::bad_param(
                "service_level_secs",
                "must be 1-3600",
            ))
        }
    };
    let iv = q.interval.unwrap_or_default().interval();
    let rows = st
        .store
        .queue_stats_per_queue(range(s), iv, &targets)
        .await
        .map_err(Problem::internal)?;
    let system = st
        .store
        .summary_by_interval(range(s), iv)
        .await
        .map_err(Problem::internal)?;
    let resolution = resolution_by_key(&st, ResolutionGroup::Queue, range(s), iv).await?;
    let mut doc = parsed(&report::render_queues(
        &rows,
        &system,
        &targets,
        &resolution,
        iv,
        ReportFormat::Json,
    ))?;
    keep(&mut doc, "queues", "queue", queue.as_deref());
    Ok(answer(
        doc,
        "queues",
        s,
        q.format,
        "queues-report",
        &[
            "interval_start",
            "queue",
            "offered",
            "answered",
            "abandoned",
        ],
    ))
}

/// Per agent and interval: offers and their outcomes, handled calls, AHT, occupancy.
#[utoipa::path(
    get,
    path = "/api/v1/reports/agents",
    operation_id = "reportAgents",
    tag = "reports",
    params(AgentsQuery),
    responses(
        (status = 200, description = "`{interval, from, to, agents: [...]}` as `ccswitch report agents --format json`; with format=csv the rows (text/csv)", content((super::report_schemas::AgentsReport = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Bad parameter", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks view_reports", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn agents(
    State(st): State<RestState>,
    _auth: Authorized<perm::ViewReports>,
    ApiQuery(q): ApiQuery<AgentsQuery>,
) -> Result<Response, Problem> {
    let s = span(q.from.as_deref(), q.to.as_deref(), st.clock.now())?;
    let agent = name_param("agent", q.agent)?;
    let iv = q.interval.unwrap_or_default().interval();
    let rows = st
        .store
        .agent_stats(Some(s.since), s.until, iv)
        .await
        .map_err(Problem::internal)?;
    let resolution = resolution_by_key(&st, ResolutionGroup::Agent, range(s), iv).await?;
    let mut doc = parsed(&report::render_agents(
        &rows,
        &resolution,
        iv,
        ReportFormat::Json,
    ))?;
    keep(&mut doc, "agents", "agent", agent.as_deref());
    Ok(answer(
        doc,
        "agents",
        s,
        q.format,
        "agents-report",
        &["interval_start", "agent", "offers", "answered", "handled"],
    ))
}

/// The whole system per interval: calls, answered, 3-ring compliance, IVR containment.
#[utoipa::path(
    get,
    path = "/api/v1/reports/system",
    operation_id = "reportSystem",
    tag = "reports",
    params(SystemQuery),
    responses(
        (status = 200, description = "`{interval, from, to, system: [...]}` (the system rows of `ccswitch report queues --format json`); with format=csv the rows (text/csv)", content((super::report_schemas::SystemReport = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Bad parameter", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks view_reports", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn system(
    State(st): State<RestState>,
    _auth: Authorized<perm::ViewReports>,
    ApiQuery(q): ApiQuery<SystemQuery>,
) -> Result<Response, Problem> {
    let s = span(q.from.as_deref(), q.to.as_deref(), st.clock.now())?;
    let iv = q.interval.unwrap_or_default().interval();
    let system = st
        .store
        .summary_by_interval(range(s), iv)
        .await
        .map_err(Problem::internal)?;
    let mut doc = parsed(&report::render_queues(
        &[],
        &system,
        &st.service_levels,
        &report::ResolutionByKey::new(),
        iv,
        ReportFormat::Json,
    ))?;
    if let Value::Object(m) = &mut doc {
        m.remove("queues");
    }
    Ok(answer(
        doc,
        "system",
        s,
        q.format,
        "system-report",
        &["interval_start", "calls", "answered"],
    ))
}

/// Survey figures per interval (local days in the IVR's time zone) and group: sent,
/// delivered, answered, response rate, CSAT, NPS, opt-outs, follow-ups.
#[utoipa::path(
    get,
    path = "/api/v1/reports/surveys",
    operation_id = "reportSurveys",
    tag = "reports",
    params(SurveysQuery),
    responses(
        (status = 200, description = "`{interval, utc_offset_ms, by, from, to, surveys: [...]}` as `ccswitch report surveys --format json`; with format=csv the rows (text/csv)", content((super::report_schemas::SurveysReport = "application/json"), (String = "text/csv"))),
        (status = 400, description = "Bad parameter", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Role lacks view_reports", body = super::openapi::ProblemSchema, content_type = "application/problem+json"),
    ),
    security(("session_cookie" = []), ("bearer_token" = []))
)]
pub async fn surveys(
    State(st): State<RestState>,
    _auth: Authorized<perm::ViewReports>,
    ApiQuery(q): ApiQuery<SurveysQuery>,
) -> Result<Response, Problem> {
    let now = st.clock.now();
    let s = span(q.from.as_deref(), q.to.as_deref(), now)?;
    let buckets = Buckets {
        interval: q.interval.unwrap_or_default().interval(),
        utc_offset_ms: utc_offset_ms(st.time_zone, s.since),
    };
    let by = match q.by {
        None => SurveyGroup::All,
        Some(SurveyBy::Queue) => SurveyGroup::Queue,
        Some(SurveyBy::Agent) => SurveyGroup::Agent,
    };
    let rows = st
        .store
        .survey_stats(range(s), buckets, by, now)
        .await
        .map_err(Problem::internal)?;
    let doc = parsed(&report::render_surveys(
        &rows,
        buckets,
        by,
        ReportFormat::Json,
    ))?;
    Ok(answer(
        doc,
        "surveys",
        s,
        q.format,
        "surveys-report",
        &["interval_start", "group", "sent", "answered"],
    ))
}

/// The UTC offset (ms, east positive) of `tz` at `at`, as the CLI's survey report uses.
fn utc_offset_ms(tz: chrono_tz::Tz, at: Millis) -> i64 {
    use chrono::{Offset, TimeZone};
    let t = chrono::DateTime::from_timestamp_millis(i64::try_from(at.as_u64()).unwrap_or(0))
        .unwrap_or_default()
        .naive_utc();
    i64::from(tz.offset_from_utc_datetime(&t).fix().local_minus_utc()) * 1000
}

/// Disposition counts, disposition FCR and the repeat-call proxy per (queue or agent, bucket),
/// as `ccswitch report` computes them.
async fn resolution_by_key(
    st: &RestState,
    group: ResolutionGroup,
    range: crate::kpi::Range,
    iv: crate::kpi::Interval,
) -> Result<report::ResolutionByKey, Problem> {
    Ok(st
        .store
        .resolution_stats(group, range, iv)
        .await
        .map_err(Problem::internal)?
        .into_iter()
        .map(|(name, bucket, s)| ((name, bucket), s))
        .collect())
}
