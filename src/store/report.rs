//! Call reports for supervisors: an aligned table, CSV, or JSON. Caller numbers are masked
//! (`138****5678`, PIPL: minimum necessary) unless the caller of `render_calls_with` was
//! allowed to unmask them (survey.toml `[privacy] allow_unmask`); peer-supplied text is kept
//! from breaking the layout. Each call shows its survey's state and scores and the
//! caller's comment (length-capped). `surveys` renders the survey figures and the
//! follow-up tasks.
//! `render_queues` / `render_agents` show the interval aggregates of `kpi` (as computed by
//! `Store::queue_stats`, `Store::agent_stats`, `Store::summary_by_interval`).

mod resolution;
mod surveys;

pub use resolution::ResolutionByKey;
pub use surveys::{render_surveys, render_tasks};

use super::{CallRow, CallSurvey};
pub use crate::engine::survey::numbers::mask_caller;
use crate::engine::time::Millis;
use crate::kpi::{AgentStats, Interval, QueueStats, ServiceLevelTargets, Summary};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
}

/// What `render_calls_with` adds to the calls: their surveys, and whether numbers show.
#[derive(Clone, Copy, Debug)]
pub struct CallsView<'a> {
    /// Surveys by call id (`Store::call_surveys`).
    pub surveys: &'a BTreeMap<String, CallSurvey>,
    /// Full caller numbers (only when survey.toml `[privacy] allow_unmask = true`).
    pub unmask: bool,
}

/// Longest survey comment shown in the table (CSV and JSON keep up to
/// `reply::MAX_COMMENT_CHARS`, what the reply parser stores).
pub const TABLE_COMMENT_CHARS: usize = 40;

/// The calls with numbers masked and no survey columns filled.
pub fn render_calls(rows: &[CallRow], f: ReportFormat) -> String {
    let none = BTreeMap::new();
    render_calls_with(
        rows,
        CallsView {
            surveys: &none,
            unmask: false,
        },
        f,
    )
}

pub fn render_calls_with(rows: &[CallRow], view: CallsView<'_>, f: ReportFormat) -> String {
    match f {
        ReportFormat::Table => table(rows, view),
        ReportFormat::Csv => csv(rows, view),
        ReportFormat::Json => json_report(rows, view),
    }
}

/// A number as reports show it: masked unless unmasking is allowed.
pub fn shown_number(raw: &str, unmask: bool) -> String {
    if unmask {
        raw.to_string()
    } else {
        mask_caller(raw)
    }
}

/// `text` cut to `max` characters, `…` marking a cut.
pub fn capped(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The survey columns of one call: status (state, with the skip or fail reason), CSAT, NPS,
/// comment (capped at `max_comment` characters).
fn survey_fields(s: Option<&CallSurvey>, max_comment: usize) -> [String; 4] {
    let Some(s) = s else {
        return Default::default();
    };
    let status = match s.skip_reason.as_deref().or(s.fail_reason.as_deref()) {
        Some(r) if s.state == "skipped" || s.state == "failed" => format!("{}({r})", s.state),
        _ => s.state.clone(),
    };
    [
        status,
        opt(s.csat),
        opt(s.nps),
        capped(s.comment.as_deref().unwrap_or(""), max_comment),
    ]
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-23T15:08:27.123Z`.
pub fn rfc3339(ms: Millis) -> String {
    i64::try_from(ms.as_u64())
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("@{}ms", ms.as_u64()))
}

fn time_value(t: Option<Millis>) -> Value {
    t.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

fn ms_value(t: Option<Millis>) -> Value {
    t.map_or(Value::Null, |t| Value::from(t.as_u64()))
}

fn json_report(rows: &[CallRow], view: CallsView<'_>) -> String {
    let calls: Vec<Value> = rows.iter().map(|c| call_json(c, view)).collect();
    let doc = json!({ "calls": calls });
    // Serializing a Value built from strings and numbers cannot fail; keep a valid fallback.
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{\"calls\":[]}".to_string())
}

fn call_json(c: &CallRow, view: CallsView<'_>) -> Value {
    let mut o = Map::new();
    o.insert("call_id".into(), c.call_id.clone().into());
    o.insert("sip_call_id".into(), c.sip_call_id.clone().into());
    o.insert("caller".into(), shown_number(&c.caller, view.unmask).into());
    o.insert("dialled".into(), c.dialled.clone().into());
    o.insert("transport".into(), c.transport.clone().into());
    let times = [
        ("arrived_at", Some(c.arrived_at)),
        ("ringing_at", c.ringing_at),
        ("answered_at", c.answered_at),
        ("ivr_left_at", c.ivr_left_at),
        ("ended_at", c.ended_at),
    ];
    for (name, t) in times {
        o.insert(name.into(), time_value(t));
    }
    for (name, t) in times {
        o.insert(format!("{name}_ms"), ms_value(t));
    }
    o.insert(
        "ring_cycle_ms".into(),
        c.ring_cycle_ms.map_or(Value::Null, Value::from),
    );
    o.insert(
        "rings_before_answer".into(),
        c.rings_before_answer
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
    );
    o.insert(
        "within_three_rings".into(),
        c.within_three_rings.map_or(Value::Null, Value::from),
    );
    o.insert(
        "ivr_outcome".into(),
        c.ivr_outcome.map_or(Value::Null, |v| v.as_str().into()),
    );
    o.insert(
        "ended_by".into(),
        c.ended_by.map_or(Value::Null, |v| v.as_str().into()),
    );
    o.insert(
        "end_reason".into(),
        c.end_reason.clone().map_or(Value::Null, Value::from),
    );
    o.insert(
        "final_status".into(),
        c.final_status.map_or(Value::Null, Value::from),
    );
    o.insert("hold_ms".into(), c.hold_ms.into());
    let opt_str = |v: &Option<String>| v.clone().map_or(Value::Null, Value::from);
    o.insert("queue".into(), opt_str(&c.queue));
    o.insert(
        "queue_priority".into(),
        c.queue_priority.map_or(Value::Null, Value::from),
    );
    o.insert("agent".into(), opt_str(&c.agent));
    let agent_times = [
        ("queued_at", c.queued_at),
        ("agent_answered_at", c.agent_answered_at),
        ("wrapup_ended_at", c.wrapup_ended_at),
        ("transferred_at", c.transferred_at),
        ("overflowed_at", c.overflowed_at),
    ];
    for (name, t) in agent_times {
        o.insert(name.into(), time_value(t));
        o.insert(format!("{name}_ms"), ms_value(t));
    }
    let figures = [
        ("frt_ms", c.frt_ms),
        ("queue_wait_ms", c.queue_wait_ms),
        ("talk_ms", c.talk_ms),
        ("acw_ms", c.acw_ms),
        ("aht_ms", c.aht_ms),
    ];
    for (name, v) in figures {
        o.insert(name.into(), v.map_or(Value::Null, Value::from));
    }
    o.insert("abandoned".into(), c.abandoned.into());
    o.insert("short_abandon".into(), c.short_abandon.into());
    o.insert("recording_path".into(), opt_str(&c.recording_path));
    o.insert("transferred_to".into(), opt_str(&c.transferred_to));
    o.insert("transferred_by".into(), opt_str(&c.transferred_by));
    o.insert("overflowed_to".into(), opt_str(&c.overflowed_to));
    o.insert("overflow_reason".into(), opt_str(&c.overflow_reason));
    let offers: Vec<Value> = c
        .offers
        .iter()
        .map(|f| {
            json!({
                "attempt": f.attempt,
                "agent": f.agent,
                "offered_at": rfc3339(f.offered_at),
                "offered_at_ms": f.offered_at.as_u64(),
                "ended_at": time_value(f.ended_at),
                "ended_at_ms": ms_value(f.ended_at),
                "outcome": f.outcome,
            })
        })
        .collect();
    o.insert("offers".into(), Value::Array(offers));
    let vars: Map<String, Value> = c
        .variables
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    o.insert("variables".into(), Value::Object(vars));
    let path: Vec<Value> = c
        .ivr_path
        .iter()
        .map(|s| {
            json!({
                "seq": s.seq,
                "at": rfc3339(s.at),
                "at_ms": s.at.as_u64(),
                "node": s.node,
                "kind": s.kind,
                "digits": s.digits,
                "detail": s.detail,
            })
        })
        .collect();
    o.insert("ivr_path".into(), Value::Array(path));
    let survey = view.surveys.get(&c.call_id).map_or(Value::Null, |s| {
        json!({
            "state": s.state,
            "skip_reason": s.skip_reason,
            "fail_reason": s.fail_reason,
            "csat": s.csat,
            "nps": s.nps,
            "comment": s.comment.as_deref().map(|t| {
                capped(t, crate::engine::survey::reply::MAX_COMMENT_CHARS)
            }),
        })
    });
    o.insert("survey".into(), survey);
    let disposition = c.disposition.as_ref().map_or(Value::Null, |d| {
        json!({
            "name": d.name,
            "code": d.code,
            "resolved": d.resolved,
            "note": d.note,
            "agent": d.agent,
            "at": rfc3339(d.at),
            "at_ms": d.at.as_u64(),
        })
    });
    o.insert("disposition".into(), disposition);
    Value::Object(o)
}

const CSV_HEADER: [&str; 44] = [
    "call_id",
    "sip_call_id",
    "caller",
    "dialled",
    "transport",
    "arrived_at",
    "ringing_at",
    "answered_at",
    "ivr_left_at",
    "ended_at",
    "arrived_at_ms",
    "answered_at_ms",
    "ended_at_ms",
    "ring_cycle_ms",
    "rings_before_answer",
    "within_three_rings",
    "ivr_outcome",
    "ended_by",
    "end_reason",
    "final_status",
    "hold_ms",
    "ivr_path",
    "variables",
    "queue",
    "queued_at",
    "agent",
    "agent_answered_at",
    "wrapup_ended_at",
    "frt_ms",
    "queue_wait_ms",
    "talk_ms",
    "acw_ms",
    "aht_ms",
    "abandoned",
    "recording_path",
    "survey_status",
    "survey_csat",
    "survey_nps",
    "survey_comment",
    "disposition",
    "disposition_resolved",
    "disposition_note",
    "disposition_agent",
    "disposition_at",
];

/// A compact path: `main[2]>billing[1234#]>goodbye`.
fn path_text(c: &CallRow) -> String {
    c.ivr_path
        .iter()
        .map(|s| match &s.digits {
            Some(d) => format!("{}[{}]", s.node, d),
            None => s.node.clone(),
        })
        .collect::<Vec<_>>()
        .join(">")
}

fn vars_text(c: &CallRow) -> String {
    c.variables
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn fields(c: &CallRow, view: CallsView<'_>) -> Vec<String> {
    let mut out = vec![
        c.call_id.clone(),
        c.sip_call_id.clone(),
        shown_number(&c.caller, view.unmask),
        c.dialled.clone(),
        c.transport.clone(),
        rfc3339(c.arrived_at),
        opt(c.ringing_at.map(rfc3339)),
        opt(c.answered_at.map(rfc3339)),
        opt(c.ivr_left_at.map(rfc3339)),
        opt(c.ended_at.map(rfc3339)),
        c.arrived_at.as_u64().to_string(),
        opt(c.answered_at.map(Millis::as_u64)),
        opt(c.ended_at.map(Millis::as_u64)),
        opt(c.ring_cycle_ms),
        opt(c.rings_before_answer.map(|r| format!("{r:.2}"))),
        opt(c.within_three_rings),
        opt(c.ivr_outcome.map(|o| o.as_str())),
        opt(c.ended_by.map(|e| e.as_str())),
        c.end_reason.clone().unwrap_or_default(),
        opt(c.final_status),
        c.hold_ms.to_string(),
        path_text(c),
        vars_text(c),
        c.queue.clone().unwrap_or_default(),
        opt(c.queued_at.map(rfc3339)),
        c.agent.clone().unwrap_or_default(),
        opt(c.agent_answered_at.map(rfc3339)),
        opt(c.wrapup_ended_at.map(rfc3339)),
        opt(c.frt_ms),
        opt(c.queue_wait_ms),
        opt(c.talk_ms),
        opt(c.acw_ms),
        opt(c.aht_ms),
        c.abandoned.to_string(),
        c.recording_path.clone().unwrap_or_default(),
    ];
    out.extend(survey_fields(
        view.surveys.get(&c.call_id),
        crate::engine::survey::reply::MAX_COMMENT_CHARS,
    ));
    let d = c.disposition.as_ref();
    out.extend([
        opt(d.map(|d| d.name.clone())),
        opt(d.map(|d| d.resolved)),
        opt(d.and_then(|d| d.note.clone())),
        opt(d.and_then(|d| d.agent.clone())),
        opt(d.map(|d| rfc3339(d.at))),
    ]);
    out
}

/// Longest disposition note shown in the table (CSV and JSON keep the whole note, itself
/// capped at `MAX_DISPOSITION_NOTE_CHARS` when stored).
pub const TABLE_NOTE_CHARS: usize = 40;

/// RFC 4180 quoting. A leading `=`, `@` or tab (peer-supplied text opened in a spreadsheet)
/// is prefixed with `'` so it is not run as a formula; `+`/`-` are left alone (phone numbers).
fn csv_field(s: &str) -> String {
    let guarded: String = if s.starts_with(['=', '@', '\t']) {
        format!("'{s}")
    } else {
        s.into()
    };
    if guarded.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

fn csv(rows: &[CallRow], view: CallsView<'_>) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push_str("\r\n");
    for c in rows {
        let line: Vec<String> = fields(c, view).iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// Control characters would break the alignment (and could drive a terminal).
fn printable(s: &str) -> String {
    s.chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect()
}

/// Left-aligned columns with a dashed rule under the header.
fn aligned(header: &[&str], body: &[Vec<String>]) -> String {
    let body: Vec<Vec<String>> = body
        .iter()
        .map(|r| r.iter().map(|f| printable(f)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &body {
        for (w, f) in widths.iter_mut().zip(row) {
            *w = (*w).max(f.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = line(&head);
    out.push('\n');
    out.push_str(&line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    ));
    out.push('\n');
    for row in &body {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

fn ratio_value(r: Option<f64>) -> Value {
    r.and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1}%", r * 100.0)).unwrap_or_default()
}

fn secs(ms: Option<f64>) -> String {
    ms.map(|ms| format!("{:.1}", ms / 1000.0))
        .unwrap_or_default()
}

fn interval_name(i: Interval) -> &'static str {
    match i {
        Interval::Day => "day",
        Interval::Quarter => "15m",
    }
}

fn csv_lines(header: &[&str], body: &[Vec<String>]) -> String {
    let mut out = header.join(",");
    out.push_str("\r\n");
    for row in body {
        let line: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

const QUEUE_HEADER: [&str; 24] = [
    "interval_start",
    "queue",
    "offered",
    "answered",
    "answered_within_sl",
    "abandoned",
    "short_abandoned",
    "service_level",
    "service_level_target",
    "service_level_threshold_ms",
    "service_level_met",
    "asa_ms",
    "mean_frt_ms",
    "aht_ms",
    "abandonment_rate",
    "handled",
    "answer_wait_ms_total",
    "abandon_wait_ms_total",
    "frt_ms_total",
    "talk_ms_total",
    "hold_ms_total",
    "acw_ms_total",
    "aht_ms_total",
    "interval",
];

fn opt_f(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_default()
}

/// Per queue and interval (service level beside the queue's target, ASA, AHT,
/// abandonment), then the whole system per interval (3-ring compliance, IVR containment).
/// `targets` must be the ones `queues` was computed with (each queue's threshold T).
/// Each queue row also carries its `resolution` figures (disposition counts, disposition
/// FCR, repeat-call proxy; zero when none).
pub fn render_queues(
    queues: &[(String, Millis, QueueStats)],
    system: &[(Millis, Summary)],
    targets: &ServiceLevelTargets,
    resolution: &ResolutionByKey,
    interval: Interval,
    f: ReportFormat,
) -> String {
    let iname = interval_name(interval);
    // Met when the achieved share reaches the target; unknown with nothing to count.
    let met = |queue: &str, s: &QueueStats| {
        let target = f64::from(targets.get(queue).target_pct) / 100.0;
        s.service_level().map(|sl| sl + 1e-9 >= target)
    };
    match f {
        ReportFormat::Json => {
            let q: Vec<Value> = queues
                .iter()
                .map(|(queue, b, s)| {
                    json!({
                        "interval": iname,
                        "interval_start": rfc3339(*b),
                        "interval_start_ms": b.as_u64(),
                        "queue": queue,
                        "offered": s.offered,
                        "answered": s.answered,
                        "answered_within_sl": s.answered_within_sl,
                        "abandoned": s.abandoned,
                        "short_abandoned": s.short_abandoned,
                        "handled": s.handled,
                        "service_level": ratio_value(s.service_level()),
                        "service_level_target":
                            f64::from(targets.get(queue).target_pct) / 100.0,
                        "service_level_threshold_ms": targets.get(queue).threshold_ms,
                        "service_level_met": met(queue, s),
                        "asa_ms": ratio_value(s.asa_ms()),
                        "mean_frt_ms": ratio_value(s.mean_frt_ms()),
                        "aht_ms": ratio_value(s.aht_ms()),
                        "abandonment_rate": ratio_value(s.abandonment_rate()),
                        "answer_wait_ms_total": s.answer_wait_ms_total,
                        "abandon_wait_ms_total": s.abandon_wait_ms_total,
                        "frt_ms_total": s.frt_ms_total,
                        "talk_ms_total": s.talk_ms_total,
                        "hold_ms_total": s.hold_ms_total,
                        "acw_ms_total": s.acw_ms_total,
                        "aht_ms_total": s.aht_ms_total,
                    })
                })
                .zip(queues)
                .map(|(mut o, (queue, b, _))| {
                    resolution::add_json(&mut o, resolution, queue, *b);
                    o
                })
                .collect();
            let sys: Vec<Value> = system
                .iter()
                .map(|(b, s)| {
                    json!({
                        "interval": iname,
                        "interval_start": rfc3339(*b),
                        "interval_start_ms": b.as_u64(),
                        "calls": s.calls,
                        "answered": s.answered,
                        "answered_within_three_rings": s.answered_within_three_rings,
                        "three_ring_compliance": ratio_value(s.three_ring_compliance()),
                        "ivr_entered": s.ivr_entered(),
                        "self_served": s.self_served,
                        "ivr_containment": ratio_value(s.ivr_containment()),
                        "queued": s.queued,
                    })
                })
                .collect();
            let doc = json!({ "interval": iname, "queues": q, "system": sys });
            serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{\"queues\":[]}".to_string())
        }
        ReportFormat::Csv => {
            let body: Vec<Vec<String>> = queues
                .iter()
                .map(|(queue, b, s)| {
                    vec![
                        rfc3339(*b),
                        queue.clone(),
                        s.offered.to_string(),
                        s.answered.to_string(),
                        s.answered_within_sl.to_string(),
                        s.abandoned.to_string(),
                        s.short_abandoned.to_string(),
                        opt_f(s.service_level()),
                        format!("{:.4}", f64::from(targets.get(queue).target_pct) / 100.0),
                        targets.get(queue).threshold_ms.to_string(),
                        met(queue, s).map(|m| m.to_string()).unwrap_or_default(),
                        opt_f(s.asa_ms()),
                        opt_f(s.mean_frt_ms()),
                        opt_f(s.aht_ms()),
                        opt_f(s.abandonment_rate()),
                        s.handled.to_string(),
                        s.answer_wait_ms_total.to_string(),
                        s.abandon_wait_ms_total.to_string(),
                        s.frt_ms_total.to_string(),
                        s.talk_ms_total.to_string(),
                        s.hold_ms_total.to_string(),
                        s.acw_ms_total.to_string(),
                        s.aht_ms_total.to_string(),
                        iname.to_string(),
                    ]
                    .into_iter()
                    .chain(resolution::csv_cells(resolution, queue, *b))
                    .collect()
                })
                .collect();
            let header: Vec<&str> = QUEUE_HEADER
                .into_iter()
                .chain(resolution::CSV_COLUMNS)
                .collect();
            csv_lines(&header, &body)
        }
        ReportFormat::Table => {
            let header = [
                "interval_start",
                "queue",
                "offered",
                "answered",
                "abandoned",
                "short_ab",
                "SL",
                "SL_target",
                "SL_T_s",
                "ASA_s",
                "FRT_s",
                "AHT_s",
                "aband_rate",
            ]
            .into_iter()
            .chain(resolution::TABLE_COLUMNS)
            .collect::<Vec<_>>();
            let body: Vec<Vec<String>> = queues
                .iter()
                .map(|(queue, b, s)| {
                    vec![
                        rfc3339(*b),
                        queue.clone(),
                        s.offered.to_string(),
                        s.answered.to_string(),
                        s.abandoned.to_string(),
                        s.short_abandoned.to_string(),
                        pct(s.service_level()),
                        format!("{}%", targets.get(queue).target_pct),
                        (targets.get(queue).threshold_ms / 1000).to_string(),
                        secs(s.asa_ms()),
                        secs(s.mean_frt_ms()),
                        secs(s.aht_ms()),
                        pct(s.abandonment_rate()),
                    ]
                    .into_iter()
                    .chain(resolution::table_cells(resolution, queue, *b))
                    .collect()
                })
                .collect();
            let mut out = aligned(&header, &body);
            out.push('\n');
            let header = [
                "interval_start",
                "calls",
                "answered",
                "3ring_compliance",
                "ivr_entered",
                "self_served",
                "ivr_containment",
            ];
            let body: Vec<Vec<String>> = system
                .iter()
                .map(|(b, s)| {
                    vec![
                        rfc3339(*b),
                        s.calls.to_string(),
                        s.answered.to_string(),
                        pct(s.three_ring_compliance()),
                        s.ivr_entered().to_string(),
                        s.self_served.to_string(),
                        pct(s.ivr_containment()),
                    ]
                })
                .collect();
            out.push_str(&aligned(&header, &body));
            out.push_str(&format!(
                "{} queue interval(s), {} system interval(s), interval {iname}\n",
                queues.len(),
                system.len()
            ));
            out
        }
    }
}

const AGENT_HEADER: [&str; 17] = [
    "interval_start",
    "agent",
    "offers",
    "offers_answered",
    "offers_no_answer",
    "offers_declined",
    "answered",
    "handled",
    "aht_ms",
    "occupancy",
    "talk_ms_total",
    "hold_ms_total",
    "acw_ms_total",
    "aht_ms_total",
    "staffed_ms",
    "interval",
    "interval_start_ms",
];

/// Per agent and interval: offers and their outcomes, handled calls, AHT, occupancy.
/// Each agent row also carries the `resolution` figures of the calls the agent answered.
pub fn render_agents(
    agents: &[(String, Millis, AgentStats)],
    resolution: &ResolutionByKey,
    interval: Interval,
    f: ReportFormat,
) -> String {
    let iname = interval_name(interval);
    match f {
        ReportFormat::Json => {
            let a: Vec<Value> = agents
                .iter()
                .map(|(agent, b, s)| {
                    json!({
                        "interval": iname,
                        "interval_start": rfc3339(*b),
                        "interval_start_ms": b.as_u64(),
                        "agent": agent,
                        "offers": s.offers,
                        "offers_answered": s.offers_answered,
                        "offers_no_answer": s.offers_no_answer,
                        "offers_declined": s.offers_declined,
                        "answered": s.answered,
                        "handled": s.handled,
                        "aht_ms": ratio_value(s.aht_ms()),
                        "occupancy": ratio_value(s.occupancy()),
                        "talk_ms_total": s.talk_ms_total,
                        "hold_ms_total": s.hold_ms_total,
                        "acw_ms_total": s.acw_ms_total,
                        "aht_ms_total": s.aht_ms_total,
                        "staffed_ms": s.staffed_ms,
                    })
                })
                .zip(agents)
                .map(|(mut o, (agent, b, _))| {
                    resolution::add_json(&mut o, resolution, agent, *b);
                    o
                })
                .collect();
            let doc = json!({ "interval": iname, "agents": a });
            serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{\"agents\":[]}".to_string())
        }
        ReportFormat::Csv => {
            let body: Vec<Vec<String>> = agents
                .iter()
                .map(|(agent, b, s)| {
                    vec![
                        rfc3339(*b),
                        agent.clone(),
                        s.offers.to_string(),
                        s.offers_answered.to_string(),
                        s.offers_no_answer.to_string(),
                        s.offers_declined.to_string(),
                        s.answered.to_string(),
                        s.handled.to_string(),
                        opt_f(s.aht_ms()),
                        opt_f(s.occupancy()),
                        s.talk_ms_total.to_string(),
                        s.hold_ms_total.to_string(),
                        s.acw_ms_total.to_string(),
                        s.aht_ms_total.to_string(),
                        s.staffed_ms.to_string(),
                        iname.to_string(),
                        b.as_u64().to_string(),
                    ]
                    .into_iter()
                    .chain(resolution::csv_cells(resolution, agent, *b))
                    .collect()
                })
                .collect();
            let header: Vec<&str> = AGENT_HEADER
                .into_iter()
                .chain(resolution::CSV_COLUMNS)
                .collect();
            csv_lines(&header, &body)
        }
        ReportFormat::Table => {
            let header = [
                "interval_start",
                "agent",
                "offers",
                "answered_offers",
                "no_answer",
                "declined",
                "handled",
                "AHT_s",
                "staffed_s",
                "occupancy",
            ]
            .into_iter()
            .chain(resolution::TABLE_COLUMNS)
            .collect::<Vec<_>>();
            let body: Vec<Vec<String>> = agents
                .iter()
                .map(|(agent, b, s)| {
                    vec![
                        rfc3339(*b),
                        agent.clone(),
                        s.offers.to_string(),
                        s.offers_answered.to_string(),
                        s.offers_no_answer.to_string(),
                        s.offers_declined.to_string(),
                        s.handled.to_string(),
                        secs(s.aht_ms()),
                        format!("{:.0}", s.staffed_ms as f64 / 1000.0),
                        pct(s.occupancy()),
                    ]
                    .into_iter()
                    .chain(resolution::table_cells(resolution, agent, *b))
                    .collect()
                })
                .collect();
            let mut out = aligned(&header, &body);
            out.push_str(&format!(
                "{} agent interval(s), interval {iname}\n",
                agents.len()
            ));
            out
        }
    }
}

fn table(rows: &[CallRow], view: CallsView<'_>) -> String {
    let header = [
        "arrived_at",
        "call_id",
        "caller",
        "dialled",
        "rings",
        "3rings",
        "ivr_outcome",
        "ended_by",
        "end_reason",
        "status",
        "hold_ms",
        "ivr_path",
        "survey",
        "csat",
        "nps",
        "comment",
        "disposition",
        "note",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|c| {
            let mut cells = vec![
                rfc3339(c.arrived_at),
                c.call_id.clone(),
                shown_number(&c.caller, view.unmask),
                c.dialled.clone(),
                opt(c.rings_before_answer.map(|r| format!("{r:.2}"))),
                opt(c.within_three_rings.map(|w| if w { "yes" } else { "no" })),
                opt(c.ivr_outcome.map(|o| o.as_str())),
                opt(c.ended_by.map(|e| e.as_str())),
                c.end_reason.clone().unwrap_or_default(),
                opt(c.final_status),
                c.hold_ms.to_string(),
                path_text(c),
            ];
            cells.extend(survey_fields(
                view.surveys.get(&c.call_id),
                TABLE_COMMENT_CHARS,
            ));
            let d = c.disposition.as_ref();
            cells.push(opt(d.map(|d| d.name.clone())));
            cells.push(capped(
                d.and_then(|d| d.note.as_deref()).unwrap_or(""),
                TABLE_NOTE_CHARS,
            ));
            cells.into_iter().map(|f| printable(&f)).collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &body {
        for (w, f) in widths.iter_mut().zip(row) {
            *w = (*w).max(f.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = line(&header.map(String::from));
    out.push('\n');
    out.push_str(&line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    ));
    out.push('\n');
    for row in &body {
        out.push_str(&line(row));
        out.push('\n');
    }
    out.push_str(&format!("{} call(s)\n", rows.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=1+2"), "'=1+2");
        assert_eq!(csv_field("+4930123"), "+4930123");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn callers_are_masked() {
        assert_eq!(mask_caller("+8613812345678"), "+86 138****5678");
        assert_eq!(mask_caller("13812345678"), "138****5678");
        assert_eq!(mask_caller("+4930123456"), "+49 301*3456");
        assert_eq!(mask_caller("1001"), "****");
        assert_eq!(mask_caller("+99912345678"), "+99*****5678");
        assert_eq!(shown_number("+8613812345678", true), "+8613812345678");
    }

    #[test]
    fn rfc3339_has_millis_and_z() {
        assert_eq!(
            rfc3339(Millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(rfc3339(Millis(0)), "1970-01-01T00:00:00.000Z");
    }
}
