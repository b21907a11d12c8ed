//! Logs (tracing) and operations metrics (Prometheus). Phone numbers are masked where they are
//! logged (`engine::mask_number`), at info and above.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Logs to stderr; `RUST_LOG` overrides the default `info`.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Installs the global metrics recorder; the handle renders `/metrics`.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    crate::api::auth_routes::describe_metrics();
    metrics::describe_counter!(
        "ccswitch_sip_messages_received_total",
        "SIP messages received"
    );
    metrics::describe_counter!("ccswitch_sip_messages_sent_total", "SIP messages sent");
    metrics::describe_counter!(
        "ccswitch_sip_retransmissions_total",
        "retransmitted requests absorbed plus 2xx re-sent"
    );
    metrics::describe_counter!(
        "ccswitch_sip_malformed_total",
        "SIP messages that did not parse"
    );
    metrics::describe_gauge!("ccswitch_active_calls", "calls up or ringing");
    metrics::describe_counter!("ccswitch_rtp_late_frames_total", "RTP frames sent late");
    metrics::describe_counter!("ccswitch_rtp_packets_sent_total", "RTP packets sent");
    metrics::describe_counter!(
        "ccswitch_rtp_packets_received_total",
        "RTP packets received"
    );
    metrics::describe_gauge!(
        "ccswitch_rtp_worker_legs",
        "media legs each worker thread owns (label worker)"
    );
    metrics::describe_counter!(
        "ccswitch_calls_started_total",
        "calls that reached the switch"
    );
    metrics::describe_counter!(
        "ccswitch_calls_rejected_total",
        "calls refused at once (capacity, shutdown, codec)"
    );
    metrics::describe_gauge!(
        "ccswitch_store_queue_depth",
        "records waiting to be written"
    );
    // Register every series at zero so a scrape right after start already lists them.
    for name in [
        "ccswitch_sip_messages_received_total",
        "ccswitch_sip_messages_sent_total",
        "ccswitch_sip_retransmissions_total",
        "ccswitch_sip_malformed_total",
        "ccswitch_rtp_late_frames_total",
        "ccswitch_rtp_packets_sent_total",
        "ccswitch_rtp_packets_received_total",
        "ccswitch_calls_started_total",
        "ccswitch_calls_rejected_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    metrics::gauge!("ccswitch_active_calls").set(0.0);
    Ok(handle)
}
