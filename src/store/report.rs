//! Call reports for supervisors: an aligned table, CSV, or JSON. Callers are shown in full
//! (supervisors may see them); peer-supplied text is kept from breaking the layout.

use super::CallRow;
use crate::engine::time::Millis;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
}

pub fn render_calls(rows: &[CallRow], f: ReportFormat) -> String {
    match f {
        ReportFormat::Table => table(rows),
        ReportFormat::Csv => csv(rows),
        ReportFormat::Json => json_report(rows),
    }
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

fn json_report(rows: &[CallRow]) -> String {
    let calls: Vec<Value> = rows.iter().map(call_json).collect();
    let doc = json!({ "calls": calls });
    // Serializing a Value built from strings and numbers cannot fail; keep a valid fallback.
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{\"calls\":[]}".to_string())
}

fn call_json(c: &CallRow) -> Value {
    let mut o = Map::new();
    o.insert("call_id".into(), c.call_id.clone().into());
    o.insert("sip_call_id".into(), c.sip_call_id.clone().into());
    o.insert("caller".into(), c.caller.clone().into());
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
    Value::Object(o)
}

const CSV_HEADER: [&str; 23] = [
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

fn fields(c: &CallRow) -> Vec<String> {
    vec![
        c.call_id.clone(),
        c.sip_call_id.clone(),
        c.caller.clone(),
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
    ]
}

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

fn csv(rows: &[CallRow]) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push_str("\r\n");
    for c in rows {
        let line: Vec<String> = fields(c).iter().map(|f| csv_field(f)).collect();
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

fn table(rows: &[CallRow]) -> String {
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
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|c| {
            vec![
                rfc3339(c.arrived_at),
                c.call_id.clone(),
                c.caller.clone(),
                c.dialled.clone(),
                opt(c.rings_before_answer.map(|r| format!("{r:.2}"))),
                opt(c.within_three_rings.map(|w| if w { "yes" } else { "no" })),
                opt(c.ivr_outcome.map(|o| o.as_str())),
                opt(c.ended_by.map(|e| e.as_str())),
                c.end_reason.clone().unwrap_or_default(),
                opt(c.final_status),
                c.hold_ms.to_string(),
                path_text(c),
            ]
            .into_iter()
            .map(|f| printable(&f))
            .collect()
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
    fn rfc3339_has_millis_and_z() {
        assert_eq!(
            rfc3339(Millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(rfc3339(Millis(0)), "1970-01-01T00:00:00.000Z");
    }
}
