//! Today's figures from the model's per-call facts, with `kpi` (as `ccswitch report`):
//! queue figures by `queued_at`, IVR figures (containment, 3 rings) by `arrived_at`, agent
//! figures by `agent_answered_at`, 15-minute intervals from local midnight.

use super::model::LiveModel;
use super::snapshot::{Figures, IntervalView};
use crate::kpi::survey::SurveyStats;
use crate::kpi::{QueueStats, Summary};
use std::collections::{BTreeMap, HashMap};

pub const INTERVAL_MS: u64 = 900_000;

#[derive(Clone, Debug, Default)]
pub struct Computed {
    pub totals: Figures,
    pub queues: HashMap<String, Figures>,
    pub queue_stats: HashMap<String, QueueStats>,
    /// Agent -> (calls answered today, AHT sum ms, calls with AHT).
    pub agents: HashMap<String, (u64, u64, u64)>,
    pub intervals: Vec<IntervalView>,
}

/// Adds `b`'s counts and sums to `a` (totals across queues).
pub fn merge(a: &mut QueueStats, b: &QueueStats) {
    a.offered += b.offered;
    a.answered += b.answered;
    a.answered_within_sl += b.answered_within_sl;
    a.abandoned += b.abandoned;
    a.short_abandoned += b.short_abandoned;
    a.answer_wait_ms_total += b.answer_wait_ms_total;
    a.abandon_wait_ms_total += b.abandon_wait_ms_total;
    a.frt_ms_total += b.frt_ms_total;
    a.handled += b.handled;
    a.talk_ms_total += b.talk_ms_total;
    a.hold_ms_total += b.hold_ms_total;
    a.acw_ms_total += b.acw_ms_total;
    a.aht_ms_total += b.aht_ms_total;
}

fn pct(v: Option<f64>) -> Option<f64> {
    v.map(|f| (f * 1000.0).round() / 10.0)
}

fn secs(ms: Option<f64>) -> Option<f64> {
    ms.map(|m| (m / 100.0).round() / 10.0)
}

/// The figures of one scope: queue stats, IVR summary (None: not shown) and surveys.
pub fn figures(q: &QueueStats, ivr: Option<&Summary>, s: Option<&SurveyStats>) -> Figures {
    Figures {
        offered: q.offered,
        answered: q.answered,
        abandoned: q.abandoned,
        service_level_pct: pct(q.service_level()),
        asa_secs: secs(q.asa_ms()),
        frt_secs: secs(q.mean_frt_ms()),
        aht_secs: secs(q.aht_ms()),
        abandon_pct: pct(q.abandonment_rate()),
        containment_pct: ivr.and_then(|s| pct(s.ivr_containment())),
        three_ring_pct: ivr.and_then(|s| pct(s.three_ring_compliance())),
        csat_pct: s.and_then(|s| pct(s.csat())),
        response_rate_pct: s.and_then(|s| pct(s.response_rate())),
    }
}

impl LiveModel {
    /// Recomputes today's figures if something changed since the last time.
    pub(super) fn compute(&mut self) {
        if !self.stale {
            return;
        }
        self.stale = false;
        self.waiting_past_sl = self.count_waiting_past_sl();
        let start = self.day.start();
        let mut per_queue: HashMap<String, QueueStats> = HashMap::new();
        let mut buckets: BTreeMap<u64, QueueStats> = BTreeMap::new();
        let mut summary = Summary::default();
        let mut queue_summary: HashMap<String, Summary> = HashMap::new();
        let mut agents: HashMap<String, (u64, u64, u64)> = HashMap::new();
        for d in self.today.values() {
            let t = &d.times;
            if t.arrived_at >= start {
                summary.add(&d.facts);
                if let Some(q) = &t.queue {
                    queue_summary.entry(q.clone()).or_default().add(&d.facts);
                }
            }
            if let (Some(at), Some(q)) = (t.queued_at, &t.queue) {
                if at >= start && !self.undecided(t) {
                    let threshold = self.sl.get(q).threshold_ms;
                    let mut one = QueueStats::default();
                    one.add(t, threshold);
                    merge(per_queue.entry(q.clone()).or_default(), &one);
                    let b =
                        start.as_u64() + (at.as_u64() - start.as_u64()) / INTERVAL_MS * INTERVAL_MS;
                    merge(buckets.entry(b).or_default(), &one);
                }
            }
            if let (Some(at), Some(agent)) = (t.agent_answered_at, &t.agent) {
                if at >= start {
                    let e = agents.entry(agent.clone()).or_default();
                    e.0 += 1;
                    if let Some(aht) = t.aht_ms() {
                        e.1 += aht;
                        e.2 += 1;
                    }
                }
            }
        }
        let mut total = QueueStats::default();
        for s in per_queue.values() {
            merge(&mut total, s);
        }
        let (surveys, surveys_by_queue) = self.survey_stats();
        self.computed.totals = figures(&total, Some(&summary), Some(&surveys));
        self.computed.queues = self
            .cfg
            .queues
            .names()
            .map(|name| {
                let s = per_queue.get(name).copied().unwrap_or_default();
                let mut f = figures(&s, None, surveys_by_queue.get(name));
                f.three_ring_pct = queue_summary
                    .get(name)
                    .and_then(|s| pct(s.three_ring_compliance()));
                (name.to_string(), f)
            })
            .collect();
        self.computed.queue_stats = per_queue;
        self.computed.agents = agents;
        self.computed.intervals = buckets
            .into_iter()
            .map(|(b, s)| IntervalView {
                start: b,
                offered: s.offered,
                answered: s.answered,
                abandoned: s.abandoned,
                service_level_pct: pct(s.service_level()),
            })
            .collect();
    }
}
