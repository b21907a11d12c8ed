//! The JSON shapes of the live view (API_CONTRACT.md "Live"): the snapshot and its sections.
//! Times are UTC epoch milliseconds; `_secs` seconds; `_pct` 0-100; a figure without a
//! denominator is null. Numbers are masked.

use serde::Serialize;
use utoipa::ToSchema;

/// Everything the wallboard shows. Sent first on the WebSocket (`type` = "snapshot") and
/// served by `GET /api/v1/live/snapshot`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Snapshot {
    /// Always "snapshot".
    #[serde(rename = "type")]
    pub kind: String,
    /// Per WebSocket client: the number of the message (0 for the first snapshot).
    pub seq: u64,
    pub at: u64,
    /// Today's local midnight in `time_zone` (the IVR's), where today's figures start.
    pub day_start: u64,
    pub time_zone: String,
    pub targets: TargetsView,
    pub totals: Figures,
    pub queues: Vec<QueueView>,
    pub agents: Vec<AgentView>,
    pub waiting: Vec<WaitingView>,
    pub calls: Vec<CallView>,
    pub alerts: Vec<Alert>,
    pub intervals: Vec<IntervalView>,
}

/// wallboard.toml `[targets]` plus the not-ready alert threshold.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct TargetsView {
    pub service_level_pct: f64,
    pub service_level_secs: u64,
    pub frt_secs: u64,
    pub aht_secs: u64,
    pub abandon_pct: f64,
    pub containment_pct: f64,
    pub three_ring_pct: f64,
    pub csat_pct: f64,
    pub response_rate_pct: f64,
    pub asa_secs: u64,
    pub not_ready_max_secs: u64,
}

/// Today's figures (METRICS.md, computed with `kpi`, as `ccswitch report` does).
#[derive(Clone, Debug, Default, Serialize, ToSchema, PartialEq)]
pub struct Figures {
    /// Calls offered to queues (queued today).
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub service_level_pct: Option<f64>,
    pub asa_secs: Option<f64>,
    pub frt_secs: Option<f64>,
    pub aht_secs: Option<f64>,
    pub abandon_pct: Option<f64>,
    /// Self-served / calls that entered the IVR (totals only; null per queue).
    pub containment_pct: Option<f64>,
    pub three_ring_pct: Option<f64>,
    pub csat_pct: Option<f64>,
    pub response_rate_pct: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, ToSchema, PartialEq, Eq)]
pub struct AgentCountsView {
    pub logged_in: u32,
    pub ready: u32,
    pub reserved: u32,
    pub on_call: u32,
    pub wrap_up: u32,
    pub not_ready: u32,
}

/// Erlang C: agents needed now for the queue's service-level target.
#[derive(Clone, Debug, Default, Serialize, ToSchema, PartialEq)]
pub struct StaffingView {
    pub needed: u32,
    pub arrivals_last_hour: u64,
    /// The AHT used: today's, else the queue's default handle time.
    pub aht_secs: f64,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct QueueView {
    pub name: String,
    /// queues.toml label.
    pub label: String,
    pub waiting: u32,
    pub longest_wait_since: Option<u64>,
    pub agents: AgentCountsView,
    pub staffing: StaffingView,
    pub today: Figures,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct AgentCallView {
    pub call_id: String,
    pub queue: Option<String>,
    /// When the agent's part began (offer, then answer).
    pub since: u64,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct AgentView {
    pub extension: String,
    pub name: String,
    /// logged_out, ready, reserved, on_call, wrap_up, not_ready.
    pub state: String,
    pub reason: Option<String>,
    pub since: Option<u64>,
    pub queues: Vec<String>,
    pub call: Option<AgentCallView>,
    /// Calls the agent answered today.
    pub calls_today: u64,
    pub aht_secs_today: Option<f64>,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct WaitingView {
    pub call_id: String,
    /// Masked.
    pub number: String,
    pub language: Option<String>,
    pub queue: String,
    /// When the call entered this queue.
    pub since: u64,
    /// 1-based, in service order (priority, then time in queue).
    pub position: u32,
    pub vip: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct CallView {
    pub call_id: String,
    /// Masked.
    pub number: String,
    /// ivr, queued, offered, talking, held.
    pub state: String,
    pub ivr_node: Option<String>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    /// When the call entered its current state.
    pub since: u64,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct Alert {
    /// service_level_low, wait_over_frt, agent_not_ready_long, queue_unstaffed.
    pub kind: String,
    pub queue: Option<String>,
    pub agent: Option<String>,
    pub call_id: Option<String>,
    /// When the condition began (the wait or the not-ready state began; service level:
    /// when it fell under target).
    pub since: u64,
    /// service_level_low: today's service level %; queue_unstaffed: callers waiting;
    /// time-based alerts: null (the duration is `at - since`).
    pub value: Option<f64>,
    /// The target or limit crossed (%, seconds, or 0 agents).
    pub threshold: f64,
}

#[derive(Clone, Debug, Serialize, ToSchema, PartialEq)]
pub struct IntervalView {
    pub start: u64,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub service_level_pct: Option<f64>,
}

/// The sections of a snapshot an update may carry (whole, replacing the client's copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Totals,
    Queues,
    Agents,
    Waiting,
    Calls,
    Alerts,
    Intervals,
}

impl Section {
    pub const ALL: [Section; 7] = [
        Section::Totals,
        Section::Queues,
        Section::Agents,
        Section::Waiting,
        Section::Calls,
        Section::Alerts,
        Section::Intervals,
    ];

    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn key(self) -> &'static str {
        match self {
            Section::Totals => "totals",
            Section::Queues => "queues",
            Section::Agents => "agents",
            Section::Waiting => "waiting",
            Section::Calls => "calls",
            Section::Alerts => "alerts",
            Section::Intervals => "intervals",
        }
    }
}
