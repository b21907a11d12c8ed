//! CSV exports of the REST API (`format=csv`): JSON rows (objects) to CSV with a header row,
//! served as an attachment. Cells that a spreadsheet would run as a formula are prefixed with
//! `'` (as the CLI's CSV does).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The columns of `rows`: `lead` first (those present), then the other keys in name order;
/// with no rows, `lead` (a header-only file still says what it would hold).
pub fn columns(rows: &[Value], lead: &[&str]) -> Vec<String> {
    let mut rest = std::collections::BTreeSet::new();
    for r in rows {
        if let Value::Object(m) = r {
            rest.extend(m.keys().cloned());
        }
    }
    if rest.is_empty() {
        return lead.iter().map(|c| c.to_string()).collect();
    }
    let mut out: Vec<String> = lead
        .iter()
        .filter(|c| rest.contains(**c))
        .map(|c| c.to_string())
        .collect();
    out.extend(rest.into_iter().filter(|k| !lead.contains(&k.as_str())));
    out
}

fn cell(v: Option<&Value>) -> String {
    let s = match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(v) => v.to_string(),
    };
    if s.starts_with(['=', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s
    }
}

/// `rows` as CSV with a header row (columns as `columns` orders them).
pub fn to_csv(rows: &[Value], lead: &[&str]) -> Result<Vec<u8>, csv::Error> {
    let cols = columns(rows, lead);
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(&cols)?;
    for r in rows {
        w.write_record(cols.iter().map(|c| cell(r.get(c))))?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// A CSV attachment named `<name>.csv`.
pub fn attachment(name: &str, body: Vec<u8>) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let disposition = format!("attachment; filename=\"{name}.csv\"");
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Rows as a CSV attachment, or a 500 problem.
pub fn respond(name: &str, rows: &[Value], lead: &[&str]) -> Response {
    match to_csv(rows, lead) {
        Ok(body) => attachment(name, body),
        Err(e) => super::problem::Problem::internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_become_csv_with_a_header() {
        let rows = vec![
            json!({"b": 1, "a": "x,y", "interval_start": "t1", "n": null}),
            json!({"a": "=SUM(1)", "b": true, "interval_start": "t2", "c": "new"}),
        ];
        let out = String::from_utf8(to_csv(&rows, &["interval_start", "zz"]).unwrap()).unwrap();
        assert_eq!(
            out,
            "interval_start,a,b,c,n\r\nt1,\"x,y\",1,,\r\nt2,'=SUM(1),true,new,\r\n"
        );
        let empty = String::from_utf8(to_csv(&[], &["a"]).unwrap()).unwrap();
        assert_eq!(empty, "a\r\n");
    }
}
