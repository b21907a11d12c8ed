//! The supervisor REST API under `/api/v1` (issue 9): its shared state and its router. Each
//! concern has its own module: `agents` (state commands), `reports`, `calls` (search, one
//! call's timeline, unmask), `recordings`, `audit_routes`, `openapi` (the served document).
//! Authentication and permissions come from `auth_routes` (`Authorized<perm::X>`).

use super::auth_routes::AuthState;
use super::{agent_desk, agents, audit_routes, calls, monitor, openapi, recordings, reports};
use crate::clock::Clock;
use crate::config::Config;
use crate::engine::agents::AgentDirectory;
use crate::engine::Command;
use crate::kpi::ServiceLevelTargets;
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::{get, post};
use axum::Router;
use chrono_tz::Tz;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the REST handlers share. Cheap to clone.
#[derive(Clone)]
pub struct RestState {
    pub auth: AuthState,
    pub store: Store,
    /// The engine's command channel (agent state changes).
    pub commands: mpsc::Sender<Command>,
    /// agents.toml: which extensions exist.
    pub agents: Arc<AgentDirectory>,
    /// queues.toml: queue labels, transfer targets and disposition codes (agent desk).
    pub queues: Arc<crate::engine::acd::QueueSet>,
    /// ccswitch.toml `recording.dir`: recordings are served from inside it only.
    pub recordings_dir: PathBuf,
    /// Each queue's service-level standard (queues.toml), as `ccswitch report queues` uses.
    pub service_levels: Arc<ServiceLevelTargets>,
    /// The IVR's time zone: survey report days are local days, as in the CLI.
    pub time_zone: Tz,
    pub clock: Clock,
    /// The control loop's monitoring requests (`with_monitor`); None: 503.
    pub monitor: Option<mpsc::Sender<crate::control::MonitorAsk>>,
}

impl RestState {
    /// From the validated config: agents, recordings folder, service levels, time zone.
    pub fn new(
        config: &Config,
        auth: AuthState,
        store: Store,
        commands: mpsc::Sender<Command>,
        clock: Clock,
    ) -> RestState {
        RestState {
            auth,
            store,
            commands,
            agents: config.agents.clone(),
            queues: config.queues.clone(),
            recordings_dir: config.recording.dir.clone(),
            service_levels: Arc::new(ServiceLevelTargets::from_queues(&config.queues, None)),
            time_zone: config.ivr.time_zone(),
            clock,
            monitor: None,
        }
    }

    /// Monitoring requests (`POST /api/v1/calls/{id}/monitor`) go to the engine on `tx`.
    pub fn with_monitor(mut self, tx: mpsc::Sender<crate::control::MonitorAsk>) -> RestState {
        self.monitor = Some(tx);
        self
    }
}

impl FromRef<RestState> for AuthState {
    fn from_ref(s: &RestState) -> AuthState {
        s.auth.clone()
    }
}

/// The REST routes, ready to merge into the API router.
pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/api/v1/agents/{extension}/state", post(agents::set_state))
        .route("/api/v1/agents/{extension}/desk", get(agent_desk::desk))
        .route("/api/v1/calls/{call_id}/history", get(agent_desk::history))
        .route(
            "/api/v1/calls/{call_id}/disposition",
            post(agent_desk::set_disposition),
        )
        .route("/api/v1/reports/queues", get(reports::queues))
        .route("/api/v1/reports/agents", get(reports::agents))
        .route("/api/v1/reports/system", get(reports::system))
        .route("/api/v1/reports/surveys", get(reports::surveys))
        .route("/api/v1/calls", get(calls::search))
        .route("/api/v1/calls/{call_id}", get(calls::timeline))
        .route("/api/v1/calls/{call_id}/unmask", post(calls::unmask))
        .route(
            "/api/v1/calls/{call_id}/monitor",
            post(monitor::request_monitor),
        )
        .route(
            "/api/v1/calls/{call_id}/recording",
            get(recordings::download),
        )
        .route("/api/v1/audit", get(audit_routes::list))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Request bodies here are small JSON objects; anything larger is refused (413 problem).
pub const MAX_BODY_BYTES: usize = 4096;

/// Client-supplied text for a problem detail: control characters dropped, cut to `max`.
pub fn printable(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}
