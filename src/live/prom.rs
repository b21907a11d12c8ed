//! Prometheus per queue (label `queue`): waiting callers, longest wait, agents by state
//! (label `state`), and histograms of queue wait, FRT and talk time, observed as calls are
//! answered or end. Kept by the hub from the same records and live events as the model.

use super::model::LiveModel;
use crate::engine::live::{LiveEvent, QueueCounts};
use crate::engine::record::Record;
use crate::engine::time::Millis;
use std::collections::HashMap;

pub const WAITING: &str = "ccswitch_queue_waiting";
pub const LONGEST_WAIT: &str = "ccswitch_queue_longest_wait_seconds";
pub const AGENTS: &str = "ccswitch_queue_agents";
pub const QUEUE_WAIT: &str = "ccswitch_queue_wait_seconds";
pub const FRT: &str = "ccswitch_queue_frt_seconds";
pub const TALK: &str = "ccswitch_queue_talk_seconds";
pub const CLIENTS: &str = "ccswitch_live_clients";
pub const RESYNCS: &str = "ccswitch_live_resyncs_total";
pub const DROPPED: &str = "ccswitch_live_clients_dropped_total";

/// Histogram buckets (seconds) of the three histograms (see `telemetry::init_metrics`).
pub const WAIT_BUCKETS: &[f64] = &[
    5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1200.0,
];
pub const TALK_BUCKETS: &[f64] = &[
    30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
];

pub fn describe() {
    metrics::describe_gauge!(WAITING, "callers waiting in the queue (label queue)");
    metrics::describe_gauge!(
        LONGEST_WAIT,
        "seconds the longest-waiting caller of the queue has waited (label queue)"
    );
    metrics::describe_gauge!(
        AGENTS,
        "agents serving the queue by state (labels queue, state; logged_in = any but logged out)"
    );
    metrics::describe_histogram!(
        QUEUE_WAIT,
        "queue wait of answered and abandoned calls, seconds (label queue)"
    );
    metrics::describe_histogram!(
        FRT,
        "first response time of answered calls, seconds (label queue)"
    );
    metrics::describe_histogram!(
        TALK,
        "talk time of agent-answered calls, seconds (label queue)"
    );
    metrics::describe_gauge!(CLIENTS, "live WebSocket clients connected");
    metrics::describe_counter!(
        RESYNCS,
        "live clients that fell behind and got a fresh snapshot"
    );
    metrics::describe_counter!(DROPPED, "live clients dropped after stalling");
}

#[derive(Default)]
pub struct QueueMetrics {
    longest: HashMap<String, Option<Millis>>,
}

impl QueueMetrics {
    pub fn event(&mut self, e: &LiveEvent) {
        let LiveEvent::QueueFigures { queue, counts } = e else {
            return;
        };
        let QueueCounts {
            waiting,
            longest_wait_since,
            agents: a,
        } = *counts;
        let q = queue.clone();
        metrics::gauge!(WAITING, "queue" => q.clone()).set(f64::from(waiting));
        for (state, n) in [
            ("logged_in", a.logged_in),
            ("ready", a.ready),
            ("reserved", a.reserved),
            ("on_call", a.on_call),
            ("wrap_up", a.wrap_up),
            ("not_ready", a.not_ready),
        ] {
            metrics::gauge!(AGENTS, "queue" => q.clone(), "state" => state).set(f64::from(n));
        }
        if longest_wait_since.is_none() {
            metrics::gauge!(LONGEST_WAIT, "queue" => q.clone()).set(0.0);
        }
        self.longest.insert(q, longest_wait_since);
    }

    /// Longest waits grow with time.
    pub fn tick(&mut self, _model: &LiveModel, now: Millis) {
        for (q, since) in &self.longest {
            if let Some(s) = since {
                metrics::gauge!(LONGEST_WAIT, "queue" => q.clone())
                    .set(now.since(*s) as f64 / 1000.0);
            }
        }
    }

    /// After the model applied `r`: histogram observations.
    pub fn observe(&mut self, model: &LiveModel, r: &Record) {
        let (call_id, answered) = match r {
            Record::AgentAnswered { call_id, .. } => (call_id, true),
            Record::CallEnded { call_id, .. } => (call_id, false),
            _ => return,
        };
        let Some(d) = model.today.get(call_id) else {
            return;
        };
        let t = &d.times;
        let Some(q) = t.queue.clone() else { return };
        let secs = |ms: u64| ms as f64 / 1000.0;
        if answered {
            if let Some(w) = t.queue_wait_ms() {
                metrics::histogram!(QUEUE_WAIT, "queue" => q.clone()).record(secs(w));
            }
            if let Some(f) = t.frt_ms() {
                metrics::histogram!(FRT, "queue" => q).record(secs(f));
            }
        } else if t.abandoned() {
            if let Some(w) = t.queue_wait_ms() {
                metrics::histogram!(QUEUE_WAIT, "queue" => q).record(secs(w));
            }
        } else if let Some(talk) = t.talk_ms() {
            metrics::histogram!(TALK, "queue" => q).record(secs(talk));
        }
    }
}
