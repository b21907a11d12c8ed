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
    use crate::live::prom;
    use metrics_exporter_prometheus::Matcher;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(prom::QUEUE_WAIT.into()), prom::WAIT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(prom::FRT.into()), prom::WAIT_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(prom::TALK.into()), prom::TALK_BUCKETS)?
        .install_recorder()?;
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
    metrics::describe_counter!(
        "ccswitch_surveys_decided_total",
        "ended calls by survey decision at hang-up (label decision: scheduled, skipped)"
    );
    metrics::describe_counter!(
        "ccswitch_follow_ups_opened_total",
        "follow-up tasks opened (label reason)"
    );
    metrics::describe_counter!(
        "ccswitch_survey_opt_outs_refused_total",
        "survey opt-out commands ignored: not a number hash"
    );
    metrics::describe_counter!(
        "ccswitch_store_survey_group_cut_total",
        "batches cut before a call's survey records arrived (engine too slow; logged)"
    );
    // The survey service (src/surveys) and its webhooks (src/api/sms_webhooks.rs).
    for (name, help) in SURVEY_COUNTERS {
        metrics::describe_counter!(*name, *help);
    }
    metrics::describe_counter!(
        "ccswitch_survey_numbers_dropped_total",
        "rows whose caller number retention replaced by its keyed hash (survey.toml [privacy])"
    );
    metrics::describe_counter!(
        "ccswitch_survey_retention_errors_total",
        "retention runs that failed (tried again at the next run)"
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
        "ccswitch_survey_numbers_dropped_total",
        "ccswitch_survey_retention_errors_total",
    ]
    .into_iter()
    .chain(SURVEY_COUNTERS.iter().map(|(n, _)| *n))
    {
        metrics::counter!(name).absolute(0);
    }
    metrics::gauge!("ccswitch_active_calls").set(0.0);
    Ok(handle)
}

/// Counters of the survey service and the SMS webhooks.
const SURVEY_COUNTERS: &[(&str, &str)] = &[
    (
        "ccswitch_survey_texts_claimed_total",
        "survey texts claimed from the outbox for sending",
    ),
    (
        "ccswitch_survey_texts_sent_total",
        "survey texts the gateway accepted (sent)",
    ),
    (
        "ccswitch_survey_texts_retried_total",
        "survey texts put back after a temporary failure",
    ),
    (
        "ccswitch_survey_texts_failed_total",
        "survey texts given up (permanent refusal or attempts used up)",
    ),
    (
        "ccswitch_survey_receipts_total",
        "final delivery receipts matched to a sent text",
    ),
    (
        "ccswitch_survey_receipts_unmatched_total",
        "delivery receipts naming no text of ours",
    ),
    ("ccswitch_survey_replies_total", "SMS replies stored"),
    (
        "ccswitch_survey_replies_unmatched_total",
        "replies matching no open survey (unknown number, after the window)",
    ),
    (
        "ccswitch_survey_replies_unreadable_total",
        "replies without a readable score (a clarification was asked)",
    ),
    (
        "ccswitch_survey_replies_duplicate_total",
        "replies seen before (replayed deliveries), ignored",
    ),
    ("ccswitch_survey_opt_outs_total", "numbers newly opted out"),
    (
        "ccswitch_survey_expired_total",
        "surveys expired without an answer",
    ),
    (
        "ccswitch_survey_tasks_escalated_total",
        "follow-up tasks escalated as overdue",
    ),
    (
        "ccswitch_survey_store_errors_total",
        "survey service database operations that failed",
    ),
    (
        "ccswitch_sms_webhook_rejected_total",
        "SMS webhooks refused (signature, timestamp, replay, size, JSON)",
    ),
];
