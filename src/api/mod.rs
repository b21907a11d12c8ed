//! HTTP: health, Prometheus metrics, the supervisor API under `/api/v1` (sign-in and
//! authentication in `auth_routes`, error documents in `problem`), and the SMS webhooks of
//! the HTTP gateway (`sms_webhooks`) when surveys run, and the embedded wallboard page (`web`).

pub mod agent_desk;
pub mod agents;
pub mod audit_routes;
pub mod auth_routes;
pub mod call_timeline;
pub mod calls;
pub mod csv_export;
mod cursor;
pub mod live_routes;
pub mod monitor;
pub mod openapi;
pub mod params;
pub mod problem;
pub mod recordings;
pub mod report_schemas;
pub mod reports;
pub mod rest;
mod sms_webhooks;
pub mod web;

pub use sms_webhooks::{SurveyWebhooks, SIGNATURE_HEADER, TIMESTAMP_HEADER};

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct ApiState {
    pub metrics: PrometheusHandle,
    /// `POST /sms/inbound` and `/sms/status`; None: those routes answer 404.
    pub surveys: Option<SurveyWebhooks>,
}

pub fn router(state: ApiState) -> Router {
    let webhooks = sms_webhooks::router(state.surveys.clone());
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(webhooks)
        .merge(web::router())
}

async fn metrics(State(state): State<ApiState>) -> String {
    state.metrics.render()
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(state), shutdown).await
}

/// Serves `app` (e.g. `router(state)` merged with `auth_routes::router(auth)`) until
/// `shutdown` resolves. Handlers see the peer address (`ConnectInfo<SocketAddr>`): sign-in
/// throttling and the audit log need it.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
