//! Building the snapshot and its sections from the model, and the alerts.

use super::model::{CallPhase, LiveModel};
use super::snapshot::*;
use super::today::INTERVAL_MS;
use crate::engine::time::Millis;
use crate::kpi::erlang;
use std::cmp::Reverse;

impl LiveModel {
    pub fn targets(&self) -> TargetsView {
        let t = &self.cfg.wallboard.targets;
        TargetsView {
            service_level_pct: t.service_level_pct,
            service_level_secs: t.service_level_secs,
            frt_secs: t.frt_secs,
            aht_secs: t.aht_secs,
            abandon_pct: t.abandon_pct,
            containment_pct: t.containment_pct,
            three_ring_pct: t.three_ring_pct,
            csat_pct: t.csat_pct,
            response_rate_pct: t.response_rate_pct,
            asa_secs: t.asa_secs,
            not_ready_max_secs: self.cfg.wallboard.alerts.not_ready_max_secs,
        }
    }

    pub fn totals(&mut self) -> Figures {
        self.compute();
        self.computed.totals.clone()
    }

    pub fn queues(&mut self, now: Millis) -> Vec<QueueView> {
        self.compute();
        let last_hour = self.aht_last_hour(now);
        let names: Vec<String> = self.cfg.queues.names().map(str::to_string).collect();
        names
            .iter()
            .map(|name| {
                let spec = self.cfg.queues.get(name);
                let counts = self.queue_counts.get(name).copied().unwrap_or_default();
                let today = self.computed.queues.get(name).cloned().unwrap_or_default();
                let arrivals = self.recent.iter().filter(|(_, q)| q == name).count() as u64;
                // Erlang C at the last hour's arrivals and AHT; without calls handled in the
                // last hour, today's AHT, else the queue's default handle time.
                let aht_secs = last_hour
                    .get(name)
                    .map(|(sum, n)| (*sum as f64 / *n as f64 / 100.0).round() / 10.0)
                    .or(today.aht_secs)
                    .unwrap_or_else(|| {
                        spec.map_or(f64::from(self.cfg.wallboard.targets.aht_secs as u32), |s| {
                            s.default_handle_time_ms as f64 / 1000.0
                        })
                    });
                let target = self.sl.get(name);
                let needed = erlang::agents_needed(
                    arrivals as f64,
                    aht_secs,
                    target.threshold_ms as f64 / 1000.0,
                    f64::from(target.target_pct) / 100.0,
                );
                let a = counts.agents;
                QueueView {
                    name: name.clone(),
                    label: spec.map_or_else(|| name.clone(), |s| s.label.clone()),
                    waiting: counts.waiting,
                    longest_wait_since: counts.longest_wait_since.map(|m| m.as_u64()),
                    agents: AgentCountsView {
                        logged_in: a.logged_in,
                        ready: a.ready,
                        reserved: a.reserved,
                        on_call: a.on_call,
                        wrap_up: a.wrap_up,
                        not_ready: a.not_ready,
                    },
                    staffing: StaffingView {
                        needed,
                        arrivals_last_hour: arrivals,
                        aht_secs,
                    },
                    today,
                }
            })
            .collect()
    }

    /// Per queue: (sum of AHT ms, calls) of calls whose wrap-up ended in the hour before
    /// `now`.
    fn aht_last_hour(&self, now: Millis) -> std::collections::HashMap<String, (u64, u64)> {
        let since = now.as_u64().saturating_sub(3_600_000);
        let mut out: std::collections::HashMap<String, (u64, u64)> = Default::default();
        for d in self.today.values() {
            let t = &d.times;
            let (Some(done), Some(q), Some(aht)) = (t.wrapup_ended_at, &t.queue, t.aht_ms()) else {
                continue;
            };
            if done.as_u64() >= since && done <= now {
                let e = out.entry(q.clone()).or_default();
                e.0 += aht;
                e.1 += 1;
            }
        }
        out
    }

    pub fn agents_view(&mut self) -> Vec<AgentView> {
        self.compute();
        self.agents
            .iter()
            .map(|a| {
                let (calls, aht_sum, aht_n) = self
                    .computed
                    .agents
                    .get(&a.extension)
                    .copied()
                    .unwrap_or_default();
                AgentView {
                    extension: a.extension.clone(),
                    name: a.name.clone(),
                    state: a.state.clone(),
                    reason: a.reason.clone(),
                    since: a.since.map(|m| m.as_u64()),
                    queues: a.queues.clone(),
                    call: a.call.as_ref().map(|(id, q, since)| AgentCallView {
                        call_id: id.clone(),
                        queue: q.clone(),
                        since: since.as_u64(),
                    }),
                    calls_today: calls,
                    aht_secs_today: (aht_n > 0)
                        .then(|| (aht_sum as f64 / aht_n as f64 / 100.0).round() / 10.0),
                }
            })
            .collect()
    }

    pub fn waiting(&self) -> Vec<WaitingView> {
        let mut w: Vec<_> = self
            .calls
            .values()
            .filter(|c| matches!(c.phase, CallPhase::Queued | CallPhase::Offered))
            .filter_map(|c| Some((c.queue.clone()?, c)))
            .collect();
        w.sort_by_key(|(q, c)| {
            (
                q.clone(),
                Reverse(c.priority),
                c.queued_at,
                c.call_id.clone(),
            )
        });
        let mut out = Vec::with_capacity(w.len());
        let mut position = 0;
        let mut last_queue: Option<&str> = None;
        for (q, c) in &w {
            if last_queue != Some(q.as_str()) {
                position = 0;
                last_queue = Some(q.as_str());
            }
            position += 1;
            out.push(WaitingView {
                call_id: c.call_id.clone(),
                number: c.number.clone(),
                language: c.language.clone(),
                queue: q.clone(),
                since: c.queued_at.map_or(c.since.as_u64(), |m| m.as_u64()),
                position,
                vip: c.priority > 0,
            });
        }
        out
    }

    pub fn calls_view(&self) -> Vec<CallView> {
        let mut v: Vec<CallView> = self
            .calls
            .values()
            .map(|c| CallView {
                call_id: c.call_id.clone(),
                number: c.number.clone(),
                state: c.phase.as_str().to_string(),
                ivr_node: c.ivr_node.clone(),
                queue: c.queue.clone(),
                agent: c.agent.clone(),
                since: c.since.as_u64(),
            })
            .collect();
        v.sort_by(|a, b| {
            a.since
                .cmp(&b.since)
                .then_with(|| a.call_id.cmp(&b.call_id))
        });
        v
    }

    /// Today's 15-minute intervals from local midnight to the one holding `now`.
    pub fn intervals(&mut self, now: Millis) -> Vec<IntervalView> {
        self.compute();
        let start = self.day.start().as_u64();
        let last = start + now.as_u64().saturating_sub(start) / INTERVAL_MS * INTERVAL_MS;
        let mut got = self.computed.intervals.iter().peekable();
        let mut out = Vec::new();
        let mut b = start;
        while b <= last || got.peek().is_some() {
            match got.peek() {
                Some(i) if i.start == b => {
                    out.push(got.next().cloned().unwrap_or_else(|| empty(b)))
                }
                _ => out.push(empty(b)),
            }
            b += INTERVAL_MS;
            if out.len() > 200 {
                break;
            }
        }
        out
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.alerts.clone()
    }

    pub fn snapshot(&mut self, now: Millis) -> Snapshot {
        Snapshot {
            kind: "snapshot".into(),
            seq: 0,
            at: now.as_u64(),
            day_start: self.day.start().as_u64(),
            time_zone: self.day.time_zone().name().to_string(),
            targets: self.targets(),
            totals: self.totals(),
            queues: self.queues(now),
            agents: self.agents_view(),
            waiting: self.waiting(),
            calls: self.calls_view(),
            alerts: self.alerts(),
            intervals: self.intervals(now),
        }
    }

    /// The JSON text of one section.
    pub fn section(&mut self, s: Section, now: Millis) -> String {
        let v = match s {
            Section::Totals => serde_json::to_string(&self.totals()),
            Section::Queues => serde_json::to_string(&self.queues(now)),
            Section::Agents => serde_json::to_string(&self.agents_view()),
            Section::Waiting => serde_json::to_string(&self.waiting()),
            Section::Calls => serde_json::to_string(&self.calls_view()),
            Section::Alerts => serde_json::to_string(&self.alerts()),
            Section::Intervals => serde_json::to_string(&self.intervals(now)),
        };
        v.unwrap_or_else(|_| "null".into())
    }

    /// Recomputes the alerts; marks the section when the set changed.
    pub(super) fn refresh_alerts(&mut self, now: Millis) {
        self.compute();
        let mut alerts = Vec::new();
        let cfg = &self.cfg.wallboard;
        let frt_ms = cfg.targets.frt_secs * 1000;
        let nr_ms = cfg.alerts.not_ready_max_secs * 1000;
        let names: Vec<String> = self.cfg.queues.names().map(str::to_string).collect();
        for name in &names {
            let target = self.sl.get(name);
            let stats = self
                .computed
                .queue_stats
                .get(name)
                .copied()
                .unwrap_or_default();
            let measured = stats.offered.saturating_sub(stats.short_abandoned);
            let sl = stats.service_level().map(|f| (f * 1000.0).round() / 10.0);
            match sl {
                Some(v)
                    if measured >= cfg.alerts.service_level_min_calls
                        && v < f64::from(target.target_pct) =>
                {
                    let since = *self.sl_low_since.entry(name.clone()).or_insert(now);
                    alerts.push(Alert {
                        kind: "service_level_low".into(),
                        queue: Some(name.clone()),
                        agent: None,
                        call_id: None,
                        since: since.as_u64(),
                        value: Some(v),
                        threshold: f64::from(target.target_pct),
                    });
                }
                _ => {
                    self.sl_low_since.remove(name);
                }
            }
            let counts = self.queue_counts.get(name).copied().unwrap_or_default();
            if counts.waiting > 0 && counts.agents.logged_in == 0 {
                alerts.push(Alert {
                    kind: "queue_unstaffed".into(),
                    queue: Some(name.clone()),
                    agent: None,
                    call_id: None,
                    since: counts.longest_wait_since.unwrap_or(now).as_u64(),
                    value: Some(f64::from(counts.waiting)),
                    threshold: 0.0,
                });
            }
        }
        let mut waits: Vec<_> = self
            .calls
            .values()
            .filter(|c| matches!(c.phase, CallPhase::Queued | CallPhase::Offered))
            .filter_map(|c| {
                let arrived = self.today.get(&c.call_id)?.times.arrived_at;
                (now.since(arrived) > frt_ms).then_some((arrived, c))
            })
            .collect();
        waits.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.call_id.cmp(&b.1.call_id)));
        for (arrived, c) in waits {
            alerts.push(Alert {
                kind: "wait_over_frt".into(),
                queue: c.queue.clone(),
                agent: None,
                call_id: Some(c.call_id.clone()),
                since: arrived.as_u64(),
                value: None,
                threshold: cfg.targets.frt_secs as f64,
            });
        }
        for a in &self.agents {
            if let (true, Some(since)) = (a.state == "not_ready", a.since) {
                if now.since(since) > nr_ms {
                    alerts.push(Alert {
                        kind: "agent_not_ready_long".into(),
                        queue: None,
                        agent: Some(a.extension.clone()),
                        call_id: None,
                        since: since.as_u64(),
                        value: None,
                        threshold: cfg.alerts.not_ready_max_secs as f64,
                    });
                }
            }
        }
        if alerts != self.alerts {
            self.alerts = alerts;
            self.mark(&[Section::Alerts]);
        }
    }
}

fn empty(start: u64) -> IntervalView {
    IntervalView {
        start,
        offered: 0,
        answered: 0,
        abandoned: 0,
        service_level_pct: None,
    }
}
