//! The control loop: owns the engine, feeds it inputs with the current time, carries its
//! outputs to the shells, and sleeps until its one deadline. No locks around protocol state.

use crate::clock::Clock;
use crate::engine::{
    Command, Engine, EngineStats, Input, MediaEvent, MonitorRefusal, MonitorRequest, Output,
};
use crate::media::runtime::MediaHandle;
use crate::net::tcp::InUseQuery;
use crate::net::{Inbound, NetSender};
use crate::store::RecordSink;
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

/// A monitoring request (REST) and where the engine's answer goes.
pub struct MonitorAsk {
    pub request: MonitorRequest,
    pub reply: oneshot::Sender<Result<(), MonitorRefusal>>,
}

pub struct Shells {
    pub net: NetSender,
    pub media: MediaHandle,
    pub records: RecordSink,
    /// The live view's hub (`crate::live`): gets a copy of every record and the live
    /// events; never waits.
    pub live: Option<crate::live::LiveSender>,
}

pub struct Inputs {
    pub sip: mpsc::Receiver<Inbound>,
    pub media: mpsc::UnboundedReceiver<MediaEvent>,
    pub commands: mpsc::Receiver<Command>,
    /// The TCP and WebSocket transports asking whether the engine still needs an idle
    /// connection.
    pub tcp_in_use: mpsc::Receiver<InUseQuery>,
    /// Supervisors asking to be rung to monitor a call (answered at once).
    pub monitor: mpsc::Receiver<MonitorAsk>,
}

/// Runs until the engine reports `Drained` after a shutdown command (or every input closes).
pub async fn run(mut engine: Engine, clock: Clock, mut inputs: Inputs, shells: Shells) {
    let mut published = EngineStats::default();
    // Monitoring requests waiting for the engine's answer (in the same drain).
    let mut asking: HashMap<String, oneshot::Sender<Result<(), MonitorRefusal>>> = HashMap::new();
    loop {
        let deadline = engine.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(clock.instant_at(at).into()).await,
                None => std::future::pending::<()>().await,
            }
        };
        let input = tokio::select! {
            Some(m) = inputs.sip.recv() => match m {
                Inbound::Sip { peer, bytes } => Input::Sip { peer, bytes },
                Inbound::Closed(peer) => Input::ConnectionClosed(peer),
            },
            Some(ev) = inputs.media.recv() => Input::Media(ev),
            Some(cmd) = inputs.commands.recv() => Input::Command(cmd),
            Some(ask) = inputs.monitor.recv() => {
                asking.insert(ask.request.id.clone(), ask.reply);
                Input::MonitorRequest(ask.request)
            }
            Some(q) = inputs.tcp_in_use.recv() => {
                // A question, not an input: the engine's state does not change.
                let _ = q.reply.send(engine.uses_connection(q.conn));
                continue;
            }
            _ = sleep => Input::Timeout,
            else => break,
        };
        engine.handle_input(clock.now(), input);
        // Counters first: whoever sees our reply and then scrapes /metrics finds it counted.
        publish(&engine, &mut published);
        if drain(&mut engine, &shells, &mut asking) {
            break;
        }
    }
}

/// Carries every pending output; true when the engine says it has drained.
fn drain(
    engine: &mut Engine,
    shells: &Shells,
    asking: &mut HashMap<String, oneshot::Sender<Result<(), MonitorRefusal>>>,
) -> bool {
    let mut drained = false;
    while let Some(out) = engine.poll_output() {
        match out {
            Output::Transmit { peer, bytes } => shells.net.send(peer, bytes),
            Output::Media(cmd) => shells.media.send(cmd),
            Output::Persist(record) => {
                if let Some(live) = &shells.live {
                    live.record(&record);
                }
                shells.records.push(record);
            }
            Output::Live(event) => {
                if let Some(live) = &shells.live {
                    live.event(event);
                }
            }
            Output::MonitorAnswer { id, result } => {
                if let Some(reply) = asking.remove(&id) {
                    let _ = reply.send(result);
                }
            }
            Output::Drained => drained = true,
        }
    }
    drained
}

fn publish(engine: &Engine, last: &mut EngineStats) {
    let s = engine.stats();
    metrics::counter!("ccswitch_sip_messages_received_total")
        .increment(s.sip_received - last.sip_received);
    metrics::counter!("ccswitch_sip_messages_sent_total").increment(s.sip_sent - last.sip_sent);
    metrics::counter!("ccswitch_sip_retransmissions_total")
        .increment(s.retransmissions - last.retransmissions);
    metrics::counter!("ccswitch_sip_malformed_total").increment(s.malformed - last.malformed);
    metrics::counter!("ccswitch_calls_started_total")
        .increment(s.calls_started - last.calls_started);
    metrics::counter!("ccswitch_calls_rejected_total")
        .increment(s.calls_rejected - last.calls_rejected);
    metrics::counter!("ccswitch_sip_source_rate_limited_total")
        .increment(s.source_rate_limited - last.source_rate_limited);
    metrics::counter!("ccswitch_sip_source_over_concurrency_total")
        .increment(s.source_over_concurrency - last.source_over_concurrency);
    metrics::counter!("ccswitch_sip_source_ignored_total")
        .increment(s.source_ignored - last.source_ignored);
    metrics::gauge!("ccswitch_sip_sources_banned").set(s.sources_banned as f64);
    metrics::counter!("ccswitch_surveys_decided_total", "decision" => "scheduled")
        .increment(s.surveys_scheduled - last.surveys_scheduled);
    metrics::counter!("ccswitch_surveys_decided_total", "decision" => "skipped")
        .increment(s.surveys_skipped - last.surveys_skipped);
    metrics::counter!("ccswitch_follow_ups_opened_total", "reason" => "complaint_queue")
        .increment(s.follow_ups_opened - last.follow_ups_opened);
    metrics::counter!("ccswitch_follow_ups_opened_total", "reason" => "disposition")
        .increment(s.follow_ups_opened_by_disposition - last.follow_ups_opened_by_disposition);
    metrics::counter!("ccswitch_dispositions_total", "result" => "set")
        .increment(s.dispositions_set - last.dispositions_set);
    metrics::counter!("ccswitch_dispositions_total", "result" => "refused")
        .increment(s.dispositions_refused - last.dispositions_refused);
    metrics::counter!("ccswitch_survey_opt_outs_refused_total")
        .increment(s.survey_opt_outs_refused - last.survey_opt_outs_refused);
    metrics::gauge!("ccswitch_active_calls").set(engine.active_calls() as f64);
    *last = s.clone();
}
