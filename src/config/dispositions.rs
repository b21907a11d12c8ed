//! `[dispositions]` and `queues.<name>.dispositions` of `queues.toml` -> `DispositionCatalog`.
//! Without `[dispositions]` the shipped codes apply (`codes = []` turns them off); a queue's
//! own list replaces the default list for that queue's calls.

use crate::engine::dispositions::{DispositionCatalog, DispositionCode};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Longest label (characters).
const MAX_LABEL_CHARS: usize = 64;

type Fault = (String, String);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDispositions {
    /// Hours until a task opened by a disposition is due (default 24).
    follow_up_due_h: Option<u64>,
    /// Absent: the shipped codes.
    codes: Option<Vec<RawCode>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCode {
    number: i64,
    name: String,
    label: RawLabel,
    #[serde(default)]
    follow_up: bool,
    #[serde(default)]
    complaint: bool,
    #[serde(default)]
    resolved: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLabel {
    en: Option<String>,
    zh: Option<String>,
}

/// Builds the catalog from the top-level table and the per-queue lists (queue name, list).
pub(super) fn catalog(
    top: Option<RawDispositions>,
    per_queue: Vec<(String, Vec<RawCode>)>,
) -> Result<DispositionCatalog, Fault> {
    let mut out = DispositionCatalog::default();
    let top = top.unwrap_or_default();
    if let Some(h) = top.follow_up_due_h {
        if !(1..=24 * 30).contains(&h) {
            return Err((
                "dispositions.follow_up_due_h".into(),
                "must be 1 to 720 (30 days)".into(),
            ));
        }
        out.follow_up_due_ms = h * 3_600_000;
    }
    if let Some(codes) = top.codes {
        out.default = list("dispositions.codes", codes)?;
    }
    // One name, one meaning for the reports: `resolved` must not count as resolved in one
    // queue and not in another.
    let mut resolved_by_name: BTreeMap<String, (bool, String)> = out
        .default
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                (c.resolved, "dispositions.codes".to_string()),
            )
        })
        .collect();
    for (queue, codes) in per_queue {
        let key = format!("queues.{queue}.dispositions");
        let codes = list(&key, codes)?;
        for (i, c) in codes.iter().enumerate() {
            let (resolved, first) = resolved_by_name
                .entry(c.name.clone())
                .or_insert((c.resolved, key.clone()));
            if *resolved != c.resolved {
                return Err((
                    format!("{key}[{i}].resolved"),
                    format!(
                        "`{}` has resolved = {resolved} in {first}; one name must mean the \
                         same in every list (the FCR figure counts it)",
                        c.name
                    ),
                ));
            }
        }
        out.per_queue.insert(queue, codes);
    }
    Ok(out)
}

fn list(key: &str, raw: Vec<RawCode>) -> Result<Vec<DispositionCode>, Fault> {
    let mut by_number: BTreeMap<u8, usize> = BTreeMap::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let k = |field: &str| format!("{key}[{i}].{field}");
        let number = u8::try_from(r.number)
            .ok()
            .filter(|n| (1..=99).contains(n))
            .ok_or_else(|| {
                (
                    k("number"),
                    format!(
                        "`{}` is not 1 to 99 (the digits dialled after the disposition prefix)",
                        r.number
                    ),
                )
            })?;
        if let Some(first) = by_number.insert(number, i) {
            return Err((
                k("number"),
                format!("{number} is already the number of {key}[{first}]"),
            ));
        }
        check_name(&r.name).map_err(|reason| (k("name"), reason))?;
        if let Some(first) = by_name.insert(r.name.clone(), i) {
            return Err((
                k("name"),
                format!("`{}` is already the name of {key}[{first}]", r.name),
            ));
        }
        let label_en = label(&k("label.en"), r.label.en)?;
        let label_zh = label(&k("label.zh"), r.label.zh)?;
        out.push(DispositionCode {
            number,
            name: r.name,
            label_en,
            label_zh,
            follow_up: r.follow_up,
            complaint: r.complaint,
            resolved: r.resolved,
        });
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a disposition name: 1-32 of a-z, 0-9 and `_`, starting with a letter"
        ))
    }
}

fn label(key: &str, text: Option<String>) -> Result<String, Fault> {
    let Some(t) = text else {
        return Err((
            key.into(),
            "missing: every code needs an en and a zh label".into(),
        ));
    };
    let t = t.trim();
    if t.is_empty() {
        return Err((key.into(), "must not be empty".into()));
    }
    if t.chars().count() > MAX_LABEL_CHARS || t.chars().any(char::is_control) {
        return Err((
            key.into(),
            format!("must be at most {MAX_LABEL_CHARS} characters without control characters"),
        ));
    }
    Ok(t.to_string())
}
