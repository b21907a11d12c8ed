//! HTTP: health and Prometheus metrics (the supervisor API comes with the agents issue), and
//! the SMS webhooks of the HTTP gateway (`sms_webhooks`) when surveys run.

mod sms_webhooks;

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
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
