//! The OpenAPI schemas of the report documents. The reports themselves are rendered by
//! `store::report` (the CLI's JSON), so these types only describe them; a unit test checks
//! that their fields are exactly the keys the renderers write.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::ToSchema;

/// Ratios are 0-1 (null with no denominator); durations in ms; `*_total` are the exact
/// integer sums the ratios come from.
#[derive(Serialize, ToSchema)]
pub struct QueueReportRow {
    /// `day` or `15m`.
    pub interval: String,
    /// RFC 3339 UTC.
    pub interval_start: String,
    pub interval_start_ms: u64,
    pub queue: String,
    pub offered: u64,
    pub answered: u64,
    pub answered_within_sl: u64,
    pub abandoned: u64,
    pub short_abandoned: u64,
    pub handled: u64,
    pub service_level: Option<f64>,
    pub service_level_target: f64,
    pub service_level_threshold_ms: u64,
    pub service_level_met: Option<bool>,
    pub asa_ms: Option<f64>,
    pub mean_frt_ms: Option<f64>,
    pub aht_ms: Option<f64>,
    pub abandonment_rate: Option<f64>,
    pub answer_wait_ms_total: u64,
    pub abandon_wait_ms_total: u64,
    pub frt_ms_total: u64,
    pub talk_ms_total: u64,
    pub hold_ms_total: u64,
    pub acw_ms_total: u64,
    pub aht_ms_total: u64,
    /// Calls given a disposition (issue 10), and of those resolved ones.
    pub dispositioned: u64,
    pub resolved: u64,
    /// Disposition-based first contact resolution: resolved / dispositioned (0-1).
    pub fcr_disposition: Option<f64>,
    /// Calls from a number that called again within 7 days, of `resolution_calls`.
    pub repeat_calls: u64,
    pub resolution_calls: u64,
    pub repeat_call_rate: Option<f64>,
    /// 1 - repeat_call_rate (the METRICS.md proxy).
    pub fcr_proxy: Option<f64>,
    /// Calls per disposition name.
    pub dispositions: std::collections::BTreeMap<String, u64>,
}

/// The whole system per interval: 3-ring compliance and IVR containment.
#[derive(Serialize, ToSchema)]
pub struct SystemReportRow {
    pub interval: String,
    pub interval_start: String,
    pub interval_start_ms: u64,
    pub calls: u64,
    pub answered: u64,
    pub answered_within_three_rings: u64,
    pub three_ring_compliance: Option<f64>,
    pub ivr_entered: u64,
    pub self_served: u64,
    pub ivr_containment: Option<f64>,
    pub queued: u64,
}

#[derive(Serialize, ToSchema)]
pub struct AgentReportRow {
    pub interval: String,
    pub interval_start: String,
    pub interval_start_ms: u64,
    pub agent: String,
    pub offers: u64,
    pub offers_answered: u64,
    pub offers_no_answer: u64,
    pub offers_declined: u64,
    pub answered: u64,
    pub handled: u64,
    pub aht_ms: Option<f64>,
    pub occupancy: Option<f64>,
    pub talk_ms_total: u64,
    pub hold_ms_total: u64,
    pub acw_ms_total: u64,
    pub aht_ms_total: u64,
    pub staffed_ms: u64,
    /// Calls given a disposition (issue 10), and of those resolved ones.
    pub dispositioned: u64,
    pub resolved: u64,
    /// Disposition-based first contact resolution: resolved / dispositioned (0-1).
    pub fcr_disposition: Option<f64>,
    /// Calls from a number that called again within 7 days, of `resolution_calls`.
    pub repeat_calls: u64,
    pub resolution_calls: u64,
    pub repeat_call_rate: Option<f64>,
    /// 1 - repeat_call_rate (the METRICS.md proxy).
    pub fcr_proxy: Option<f64>,
    /// Calls per disposition name.
    pub dispositions: std::collections::BTreeMap<String, u64>,
}

#[derive(Serialize, ToSchema)]
pub struct SurveyReportRow {
    pub interval: String,
    /// Local time in the IVR's time zone, RFC 3339 with offset.
    pub interval_start: String,
    pub interval_start_ms: u64,
    /// The queue or agent (`by`), or "" for all.
    pub group: String,
    pub surveys: u64,
    pub skipped: u64,
    pub sent: u64,
    pub delivered: u64,
    pub answered: u64,
    pub response_rate: Option<f64>,
    pub response_rate_numerator: u64,
    pub response_rate_denominator: u64,
    pub csat: Option<f64>,
    pub csat_satisfied: u64,
    pub csat_answers: u64,
    pub csat_mean: Option<f64>,
    pub csat_sum: u64,
    pub nps: Option<f64>,
    pub nps_promoters: u64,
    pub nps_detractors: u64,
    pub nps_answers: u64,
    pub opt_outs: u64,
    pub follow_ups_opened: u64,
    pub follow_ups_closed_in_time: u64,
    pub follow_ups_overdue: u64,
    pub follow_ups_open: u64,
}

/// `GET /api/v1/reports/queues` (`ccswitch report queues --format json` plus the span).
#[derive(Serialize, ToSchema)]
pub struct QueuesReport {
    pub interval: String,
    /// The span reported, epoch ms: [from, to).
    pub from: u64,
    pub to: u64,
    pub queues: Vec<QueueReportRow>,
    pub system: Vec<SystemReportRow>,
}

/// `GET /api/v1/reports/system`.
#[derive(Serialize, ToSchema)]
pub struct SystemReport {
    pub interval: String,
    pub from: u64,
    pub to: u64,
    pub system: Vec<SystemReportRow>,
}

/// `GET /api/v1/reports/agents` (`ccswitch report agents --format json` plus the span).
#[derive(Serialize, ToSchema)]
pub struct AgentsReport {
    pub interval: String,
    pub from: u64,
    pub to: u64,
    pub agents: Vec<AgentReportRow>,
}

/// `GET /api/v1/reports/surveys` (`ccswitch report surveys --format json` plus the span).
#[derive(Serialize, ToSchema)]
pub struct SurveysReport {
    pub interval: String,
    /// The IVR time zone's offset the local days are cut with.
    pub utc_offset_ms: i64,
    /// all, queue or agent.
    pub by: String,
    pub from: u64,
    pub to: u64,
    pub surveys: Vec<SurveyReportRow>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Millis;
    use crate::kpi::survey::{Buckets, SurveyGroup, SurveyStats};
    use crate::kpi::{AgentStats, Interval, QueueStats, ServiceLevelTargets, Summary};
    use crate::store::report::{self, ReportFormat};
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// The property names of schema `T`.
    fn fields<T: utoipa::PartialSchema>() -> BTreeSet<String> {
        let v = serde_json::to_value(T::schema()).unwrap();
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        let mut k: BTreeSet<String> = v.as_object().unwrap().keys().cloned().collect();
        // The REST answer adds the span to the CLI's document.
        if k.contains("interval") && !k.contains("interval_start") {
            k.extend(["from".to_string(), "to".to_string()]);
        }
        k
    }

    #[test]
    fn the_schemas_name_exactly_what_the_reports_write() {
        let t = ServiceLevelTargets::default();
        let q = vec![("sales".to_string(), Millis(0), QueueStats::default())];
        let s = vec![(Millis(0), Summary::default())];
        let doc: Value = serde_json::from_str(&report::render_queues(
            &q,
            &s,
            &t,
            &report::ResolutionByKey::new(),
            Interval::Day,
            ReportFormat::Json,
        ))
        .unwrap();
        assert_eq!(keys(&doc), fields::<QueuesReport>());
        assert_eq!(keys(&doc["queues"][0]), fields::<QueueReportRow>());
        assert_eq!(keys(&doc["system"][0]), fields::<SystemReportRow>());
        let a = vec![("1001".to_string(), Millis(0), AgentStats::default())];
        let doc: Value = serde_json::from_str(&report::render_agents(
            &a,
            &report::ResolutionByKey::new(),
            Interval::Day,
            ReportFormat::Json,
        ))
        .unwrap();
        assert_eq!(keys(&doc), fields::<AgentsReport>());
        assert_eq!(keys(&doc["agents"][0]), fields::<AgentReportRow>());
        let r = vec![(String::new(), Millis(0), SurveyStats::default())];
        let doc: Value = serde_json::from_str(&report::render_surveys(
            &r,
            Buckets::utc(Interval::Day),
            SurveyGroup::All,
            ReportFormat::Json,
        ))
        .unwrap();
        assert_eq!(keys(&doc), fields::<SurveysReport>());
        assert_eq!(keys(&doc["surveys"][0]), fields::<SurveyReportRow>());
    }
}
