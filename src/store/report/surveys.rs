//! `report surveys` (the figures of `kpi::survey`, denominators shown) and `tasks list`.

use super::{
    aligned, csv_lines, interval_name, opt, pct, ratio_value, rfc3339, shown_number, ReportFormat,
};
use crate::engine::time::Millis;
use crate::kpi::survey::{Buckets, SurveyGroup, SurveyStats};
use crate::store::FollowUpTaskRow;
use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde_json::{json, Value};

/// A bucket start in the report's local time, e.g. `2026-11-23T00:00:00+08:00`.
fn local_start(b: Millis, offset_ms: i64) -> String {
    let offset = i32::try_from(offset_ms / 1000)
        .ok()
        .and_then(FixedOffset::east_opt);
    match (offset, i64::try_from(b.as_u64()).ok()) {
        (Some(o), Some(ms)) => DateTime::from_timestamp_millis(ms)
            .map(|t| {
                t.with_timezone(&o)
                    .to_rfc3339_opts(SecondsFormat::Secs, false)
            })
            .unwrap_or_else(|| rfc3339(b)),
        _ => rfc3339(b),
    }
}

fn group_name(by: SurveyGroup) -> &'static str {
    match by {
        SurveyGroup::All => "all",
        SurveyGroup::Queue => "queue",
        SurveyGroup::Agent => "agent",
    }
}

/// `80.0% (4/5)`: the share with its numerator and denominator; empty with nothing to count.
fn share(num: u64, den: u64) -> String {
    if den == 0 {
        "- (0/0)".to_string()
    } else {
        format!("{} ({num}/{den})", pct(Some(num as f64 / den as f64)))
    }
}

fn nps_text(s: &SurveyStats) -> String {
    match s.nps() {
        Some(n) => format!(
            "{n:+.0} ({}P {}D /{})",
            s.nps_promoters, s.nps_detractors, s.nps_answers
        ),
        None => "- (0)".to_string(),
    }
}

const SURVEY_CSV_HEADER: [&str; 23] = [
    "interval_start",
    "interval_start_ms",
    "group",
    "surveys",
    "skipped",
    "sent",
    "delivered",
    "answered",
    "response_rate",
    "csat_answers",
    "csat_satisfied",
    "csat",
    "csat_mean",
    "nps_answers",
    "nps_promoters",
    "nps_detractors",
    "nps",
    "opt_outs",
    "follow_ups_opened",
    "follow_ups_closed_in_time",
    "follow_ups_overdue",
    "follow_ups_open",
    "interval",
];

fn f4(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_default()
}

/// Per interval (and queue or agent): sent, delivered, answered, response rate = answered /
/// sent, CSAT = answers 4-5 / answers and the mean, NPS, opt-outs, follow-ups; each ratio
/// with its numerator and denominator.
pub fn render_surveys(
    rows: &[(String, Millis, SurveyStats)],
    buckets: Buckets,
    by: SurveyGroup,
    f: ReportFormat,
) -> String {
    let iname = interval_name(buckets.interval);
    let off = buckets.utc_offset_ms;
    match f {
        ReportFormat::Json => {
            let list: Vec<Value> = rows
                .iter()
                .map(|(g, b, s)| {
                    json!({
                        "interval": iname,
                        "interval_start": local_start(*b, off),
                        "interval_start_ms": b.as_u64(),
                        "group": g,
                        "surveys": s.surveys,
                        "skipped": s.skipped,
                        "sent": s.sent,
                        "delivered": s.delivered,
                        "answered": s.answered,
                        "response_rate": ratio_value(s.response_rate()),
                        "response_rate_numerator": s.answered,
                        "response_rate_denominator": s.sent,
                        "csat": ratio_value(s.csat()),
                        "csat_satisfied": s.csat_satisfied,
                        "csat_answers": s.answered,
                        "csat_mean": ratio_value(s.csat_mean()),
                        "csat_sum": s.csat_sum,
                        "nps": ratio_value(s.nps()),
                        "nps_promoters": s.nps_promoters,
                        "nps_detractors": s.nps_detractors,
                        "nps_answers": s.nps_answers,
                        "opt_outs": s.opt_outs,
                        "follow_ups_opened": s.follow_ups_opened,
                        "follow_ups_closed_in_time": s.follow_ups_closed_in_time,
                        "follow_ups_overdue": s.follow_ups_overdue,
                        "follow_ups_open": s.follow_ups_open,
                    })
                })
                .collect();
            let doc = json!({
                "interval": iname,
                "utc_offset_ms": off,
                "by": group_name(by),
                "surveys": list,
            });
            serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{\"surveys\":[]}".into())
        }
        ReportFormat::Csv => {
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|(g, b, s)| {
                    vec![
                        local_start(*b, off),
                        b.as_u64().to_string(),
                        g.clone(),
                        s.surveys.to_string(),
                        s.skipped.to_string(),
                        s.sent.to_string(),
                        s.delivered.to_string(),
                        s.answered.to_string(),
                        f4(s.response_rate()),
                        s.answered.to_string(),
                        s.csat_satisfied.to_string(),
                        f4(s.csat()),
                        f4(s.csat_mean()),
                        s.nps_answers.to_string(),
                        s.nps_promoters.to_string(),
                        s.nps_detractors.to_string(),
                        f4(s.nps()),
                        s.opt_outs.to_string(),
                        s.follow_ups_opened.to_string(),
                        s.follow_ups_closed_in_time.to_string(),
                        s.follow_ups_overdue.to_string(),
                        s.follow_ups_open.to_string(),
                        iname.to_string(),
                    ]
                })
                .collect();
            csv_lines(&SURVEY_CSV_HEADER, &body)
        }
        ReportFormat::Table => {
            let mut header = vec!["interval_start"];
            if by != SurveyGroup::All {
                header.push(group_name(by));
            }
            header.extend([
                "sent",
                "delivered",
                "answered",
                "response_rate(answered/sent)",
                "csat(4-5/answers)",
                "csat_mean",
                "nps(promoters-detractors/answers)",
                "opt_outs",
                "fu_opened",
                "fu_closed_in_time",
                "fu_overdue",
                "fu_open",
            ]);
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|(g, b, s)| {
                    let mut r = vec![local_start(*b, off)];
                    if by != SurveyGroup::All {
                        r.push(if g.is_empty() { "-".into() } else { g.clone() });
                    }
                    r.extend([
                        s.sent.to_string(),
                        s.delivered.to_string(),
                        s.answered.to_string(),
                        share(s.answered, s.sent),
                        share(s.csat_satisfied, s.answered),
                        s.csat_mean()
                            .map(|m| format!("{m:.2}"))
                            .unwrap_or_else(|| "-".into()),
                        nps_text(s),
                        s.opt_outs.to_string(),
                        s.follow_ups_opened.to_string(),
                        s.follow_ups_closed_in_time.to_string(),
                        s.follow_ups_overdue.to_string(),
                        s.follow_ups_open.to_string(),
                    ]);
                    r
                })
                .collect();
            let mut out = aligned(&header, &body);
            out.push_str(&format!(
                "{} row(s), interval {iname}, UTC offset {:+} min; response rate = answered / \
                 sent, CSAT = answers 4-5 / answers, NPS = % promoters (9-10) - % detractors \
                 (0-6)\n",
                rows.len(),
                off / 60_000
            ));
            out
        }
    }
}

const TASK_HEADER: [&str; 13] = [
    "task_id",
    "call_id",
    "agent",
    "queue",
    "reason",
    "score",
    "number",
    "opened_at",
    "due_at",
    "status",
    "closed_at",
    "escalated_at",
    "note",
];

/// Longest note shown in the task table.
const TABLE_NOTE_CHARS: usize = 40;

fn status(t: &FollowUpTaskRow, now: Millis) -> &'static str {
    match t.closed_at {
        Some(c) if c <= t.due_at => "closed",
        Some(_) => "closed_late",
        None if t.overdue_at(now) => "overdue",
        None => "open",
    }
}

/// Follow-up tasks with their status at `now`; numbers masked unless `unmask`.
pub fn render_tasks(
    tasks: &[FollowUpTaskRow],
    now: Millis,
    unmask: bool,
    f: ReportFormat,
) -> String {
    let number = |t: &FollowUpTaskRow| {
        t.number
            .as_deref()
            .map(|n| shown_number(n, unmask))
            .unwrap_or_default()
    };
    match f {
        ReportFormat::Json => {
            let list: Vec<Value> = tasks
                .iter()
                .map(|t| {
                    json!({
                        "task_id": t.task_id,
                        "call_id": t.call_id,
                        "agent": t.agent,
                        "queue": t.queue,
                        "reason": t.reason,
                        "score": t.score,
                        "number": t.number.as_deref().map(|n| shown_number(n, unmask)),
                        "opened_at": rfc3339(t.opened_at),
                        "opened_at_ms": t.opened_at.as_u64(),
                        "due_at": rfc3339(t.due_at),
                        "due_at_ms": t.due_at.as_u64(),
                        "status": status(t, now),
                        "closed_at": t.closed_at.map(rfc3339),
                        "escalated_at": t.escalated_at.map(rfc3339),
                        "note": t.note,
                    })
                })
                .collect();
            serde_json::to_string_pretty(&json!({ "tasks": list }))
                .unwrap_or_else(|_| "{\"tasks\":[]}".into())
        }
        ReportFormat::Csv | ReportFormat::Table => {
            let table = f == ReportFormat::Table;
            let body: Vec<Vec<String>> = tasks
                .iter()
                .map(|t| {
                    let note = t.note.clone().unwrap_or_default();
                    vec![
                        t.task_id.to_string(),
                        t.call_id.clone(),
                        t.agent.clone().unwrap_or_default(),
                        t.queue.clone().unwrap_or_default(),
                        t.reason.clone(),
                        opt(t.score),
                        number(t),
                        rfc3339(t.opened_at),
                        rfc3339(t.due_at),
                        status(t, now).to_string(),
                        opt(t.closed_at.map(rfc3339)),
                        opt(t.escalated_at.map(rfc3339)),
                        if table {
                            super::capped(&note, TABLE_NOTE_CHARS)
                        } else {
                            note
                        },
                    ]
                })
                .collect();
            if table {
                let mut out = aligned(&TASK_HEADER, &body);
                out.push_str(&format!("{} task(s)\n", tasks.len()));
                out
            } else {
                csv_lines(&TASK_HEADER, &body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_bucket_starts_carry_their_offset() {
        let b = Millis(1_795_305_600_000 - 8 * 3_600_000);
        assert_eq!(local_start(b, 8 * 3_600_000), "2026-11-22T00:00:00+08:00");
        assert_eq!(local_start(b, 0), "2026-11-21T16:00:00+00:00");
    }

    #[test]
    fn shares_show_their_denominator() {
        assert_eq!(share(4, 5), "80.0% (4/5)");
        assert_eq!(share(0, 0), "- (0/0)");
    }
}
