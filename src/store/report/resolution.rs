//! The contact-resolution columns `report queues` and `report agents` add to each row
//! (`kpi::resolution`, same keys as the queue / agent rows): disposition counts, the
//! disposition-based FCR and, beside it, the repeat-call proxy.

use super::{opt_f, pct, ratio_value};
use crate::engine::time::Millis;
use crate::kpi::resolution::ResolutionStats;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Resolution figures by (queue or agent, bucket start).
pub type ResolutionByKey = BTreeMap<(String, Millis), ResolutionStats>;

pub(super) const CSV_COLUMNS: [&str; 8] = [
    "dispositioned",
    "resolved",
    "fcr_disposition",
    "repeat_calls",
    "resolution_calls",
    "repeat_call_rate",
    "fcr_proxy",
    "dispositions",
];

pub(super) const TABLE_COLUMNS: [&str; 4] =
    ["dispositioned", "FCR_disp", "FCR_proxy", "dispositions"];

fn get<'a>(by: &'a ResolutionByKey, name: &str, bucket: Millis) -> Option<&'a ResolutionStats> {
    by.get(&(name.to_string(), bucket))
}

pub(super) fn csv_cells(by: &ResolutionByKey, name: &str, bucket: Millis) -> Vec<String> {
    let s = get(by, name, bucket).cloned().unwrap_or_default();
    vec![
        s.dispositioned.to_string(),
        s.resolved.to_string(),
        opt_f(s.fcr_disposition()),
        s.repeated.to_string(),
        s.calls.to_string(),
        opt_f(s.repeat_call_rate()),
        opt_f(s.fcr_proxy()),
        s.counts_text(),
    ]
}

pub(super) fn table_cells(by: &ResolutionByKey, name: &str, bucket: Millis) -> Vec<String> {
    let s = get(by, name, bucket).cloned().unwrap_or_default();
    vec![
        s.dispositioned.to_string(),
        pct(s.fcr_disposition()),
        pct(s.fcr_proxy()),
        s.counts_text(),
    ]
}

pub(super) fn add_json(o: &mut Value, by: &ResolutionByKey, name: &str, bucket: Millis) {
    let Some(o) = o.as_object_mut() else {
        return;
    };
    let s = get(by, name, bucket).cloned().unwrap_or_default();
    o.insert("dispositioned".into(), s.dispositioned.into());
    o.insert("resolved".into(), s.resolved.into());
    o.insert("fcr_disposition".into(), ratio_value(s.fcr_disposition()));
    o.insert("repeat_calls".into(), s.repeated.into());
    o.insert("resolution_calls".into(), s.calls.into());
    o.insert("repeat_call_rate".into(), ratio_value(s.repeat_call_rate()));
    o.insert("fcr_proxy".into(), ratio_value(s.fcr_proxy()));
    let counts: Map<String, Value> = s
        .by_disposition
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(*v)))
        .collect();
    o.insert("dispositions".into(), Value::Object(counts));
}
