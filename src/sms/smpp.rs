//! The SMPP v3.4 gateway: one bind_transceiver to an SMSC, kept up with enquire_link and
//! re-established with bounded exponential backoff. Messages queue here; at most `window`
//! submit_sm wait for their response at once and at most `max_per_s` go out per second.
//! The PDUs come from `rusmpp`, the session from `rusmppc` (bound as v3.4: its SMPP 5.0
//! interface-version check is off, and nothing v5-only is sent).
//!
//! Replies longer than one SMS (UDH concatenation or `sar_*` TLVs) are put back together by
//! `concat::Reassembler` and reported as one `SmsEvent::Inbound`; a text still incomplete
//! after 5 minutes is reported with the parts that came (counted, logged).
//!
//! Guarantees: a part the SMSC acknowledged (submit_sm_resp OK) is never sent again, even
//! across reconnects; a part whose response never came (timeout, lost connection) is sent
//! again after the reconnect, so it may reach the handset twice. Every submit_sm carries the
//! message id (its low 16 bits) in `user_message_reference`, the same on every resend, so an
//! SMSC that checks duplicates by client reference can drop the second.

use super::concat::{self, Assembled, ConcatRef, Reassembler};
use super::rate::RateCap;
use super::{encode_text, EncodedText, SmsError, SmsEvent, SmsMessage};
use crate::config::sms::SmppConfig;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::Stream;
use rusmpp::pdus::{BindTransceiver, DeliverSm, DeliverSmResp, SubmitSm, SubmitSmResp};
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvValue};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, ServiceType, Ton,
    UserMessageReference,
};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Counters of one gateway (also exported as `ccswitch_sms_smpp_*_total` metrics).
#[derive(Debug, Default)]
pub struct SmppStats {
    pub binds: AtomicU64,
    pub bind_failures: AtomicU64,
    pub disconnects: AtomicU64,
    pub parts_submitted: AtomicU64,
    pub throttled: AtomicU64,
    pub failed: AtomicU64,
    pub timeouts: AtomicU64,
    pub generic_nacks: AtomicU64,
    pub receipts: AtomicU64,
    /// Texts from handsets (a concatenated text counts once).
    pub inbound: AtomicU64,
    /// Parts of concatenated texts received (duplicates included).
    pub concat_parts: AtomicU64,
    /// Concatenated texts reported without every part (timed out, evicted by the memory cap,
    /// or open when the gateway stopped).
    pub concat_incomplete: AtomicU64,
    /// Parts received again (an SMSC resending): ignored.
    pub concat_duplicates: AtomicU64,
    /// PDUs from the SMSC that could not be decoded, and deliver_sm we could not make sense of.
    pub malformed: AtomicU64,
    /// Time from sending a submit_sm to its positive submit_sm_resp.
    pub submit_response: LatencyHistogram,
}

/// Names and meanings of the gateway's metrics, for /metrics.
fn describe_metrics() {
    for (name, what) in [
        ("ccswitch_sms_smpp_binds_total", "SMPP binds that succeeded"),
        (
            "ccswitch_sms_smpp_bind_failures_total",
            "SMPP connects or binds that failed",
        ),
        (
            "ccswitch_sms_smpp_disconnects_total",
            "SMPP sessions lost after a bind",
        ),
        (
            "ccswitch_sms_smpp_parts_submitted_total",
            "SMS parts the SMSC accepted (submit_sm_resp OK)",
        ),
        (
            "ccswitch_sms_smpp_throttled_total",
            "submit_sm answered with throttling (0x58, 0x14)",
        ),
        (
            "ccswitch_sms_smpp_failed_total",
            "texts the SMPP gateway reported failed",
        ),
        (
            "ccswitch_sms_smpp_timeouts_total",
            "SMPP requests without a response in time",
        ),
        (
            "ccswitch_sms_smpp_generic_nacks_total",
            "generic_nack received from the SMSC",
        ),
        (
            "ccswitch_sms_smpp_receipts_total",
            "delivery receipts received",
        ),
        (
            "ccswitch_sms_smpp_inbound_total",
            "texts from handsets (a long reply counts once)",
        ),
        (
            "ccswitch_sms_smpp_malformed_total",
            "undecodable PDUs and unusable deliver_sm",
        ),
        (
            "ccswitch_sms_smpp_concat_parts_total",
            "parts of long replies received",
        ),
        (
            "ccswitch_sms_smpp_concat_incomplete_total",
            "long replies reported without every part (timed out, memory cap, stop)",
        ),
        (
            "ccswitch_sms_smpp_concat_duplicates_total",
            "parts of long replies received again (ignored)",
        ),
    ] {
        metrics::describe_counter!(name, what);
    }
    metrics::describe_histogram!(
        "ccswitch_sms_smpp_submit_response_seconds",
        metrics::Unit::Seconds,
        "time from submit_sm to its positive submit_sm_resp"
    );
}

/// A latency histogram of atomics: 8 buckets per power of two of microseconds (at most
/// 12.5 % wide), so quantiles are cheap to record from any task and close enough to read.
pub struct LatencyHistogram {
    buckets: [AtomicU64; LatencyHistogram::BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

impl LatencyHistogram {
    const BUCKETS: usize = 8 + 40 * 8;

    fn index(us: u64) -> usize {
        if us < 8 {
            return us as usize;
        }
        let e = 63 - us.leading_zeros() as usize; // 3..
        let sub = ((us >> (e - 3)) & 7) as usize;
        (8 + (e - 3) * 8 + sub).min(Self::BUCKETS - 1)
    }

    /// The largest value (µs) a bucket holds.
    fn upper(index: usize) -> u64 {
        if index < 8 {
            return index as u64;
        }
        let e = (index - 8) / 8 + 3;
        let sub = ((index - 8) % 8) as u64;
        ((8 + sub + 1) << (e - 3)) - 1
    }

    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("ccswitch_sms_smpp_submit_response_seconds").record(d.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `q` quantile (0-1), as the upper edge of its bucket; None when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_micros(Self::upper(i)));
            }
        }
        None
    }
}

impl SmppStats {
    fn bump(&self, field: &AtomicU64, metric: &'static str) {
        field.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(metric).increment(1);
    }
}

/// The bind password; never printed.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

enum Request {
    Send(Pending),
    Stop,
}

/// A message on its way: its parts, and the SMSC ids of the parts already accepted.
#[derive(Debug)]
struct Pending {
    id: u64,
    dest: String,
    text: EncodedText,
    gateway_ids: Vec<String>,
    attempts: u32,
}

/// A running SMPP gateway. Dropping it stops the gateway task.
pub struct SmppGateway {
    requests: mpsc::UnboundedSender<Request>,
    task: Option<JoinHandle<()>>,
    stats: Arc<SmppStats>,
}

impl fmt::Debug for SmppGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmppGateway")
            .field("stats", &self.stats)
            .finish()
    }
}

impl SmppGateway {
    /// Reads the password from its configured source and starts the gateway task (it binds in
    /// the background; `SmsEvent::Connected` tells when it is up).
    pub fn start(
        cfg: SmppConfig,
    ) -> Result<(SmppGateway, mpsc::UnboundedReceiver<SmsEvent>), String> {
        let password = cfg.read_password()?;
        if password.len() > 8 || !password.is_ascii() {
            return Err("the SMPP password must be at most 8 ASCII characters (SMPP 3.4)".into());
        }
        describe_metrics();
        let cfg_rate = cfg.max_per_s;
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(SmppStats::default());
        let worker = Worker {
            cfg,
            password: Secret(password),
            requests: req_rx,
            events: ev_tx,
            stats: stats.clone(),
            queue: VecDeque::new(),
            reassembler: Reassembler::new(concat::Limits::default()),
            rate: RateCap::new(cfg_rate),
        };
        let task = tokio::spawn(worker.run());
        Ok((
            SmppGateway {
                requests: req_tx,
                task: Some(task),
                stats,
            },
            ev_rx,
        ))
    }

    /// Checks and encodes the message and queues it. Errors are about the message itself
    /// (bad number, empty or too long text) or a stopped gateway.
    pub fn send(&self, msg: SmsMessage) -> Result<(), SmsError> {
        let dest = super::check_e164(&msg.to)?.to_string();
        // The concatenation reference comes from the id, so a retry reuses it.
        let text = encode_text(&msg.text, (msg.id % 256) as u8)?;
        self.requests
            .send(Request::Send(Pending {
                id: msg.id,
                dest,
                text,
                gateway_ids: Vec::new(),
                attempts: 0,
            }))
            .map_err(|_| SmsError::Stopped)
    }

    pub fn stats(&self) -> &SmppStats {
        &self.stats
    }

    /// The same counters, shared: still readable once the gateway is handed on (to the
    /// survey service).
    pub fn shared_stats(&self) -> Arc<SmppStats> {
        self.stats.clone()
    }

    /// Unbinds (when bound) and stops, waiting at most `grace` before abandoning the task.
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.requests.send(Request::Stop);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for SmppGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

type EventStream = Box<dyn Stream<Item = Event> + Unpin + Send>;
type SubmitFuture =
    Pin<Box<dyn Future<Output = (u64, Result<SubmitSmResp, rusmppc::error::Error>)> + Send>>;

/// How a session ended.
enum SessionEnd {
    Stop,
    Lost(String),
}

struct Worker {
    cfg: SmppConfig,
    password: Secret,
    requests: mpsc::UnboundedReceiver<Request>,
    events: mpsc::UnboundedSender<SmsEvent>,
    stats: Arc<SmppStats>,
    /// Messages waiting to be (re)submitted, oldest first.
    queue: VecDeque<Pending>,
    /// Parts of concatenated replies; kept across reconnects (parts may span them).
    reassembler: Reassembler,
    /// The `max_per_s` cap; kept across reconnects (a new bind does not reset the count).
    rate: RateCap,
}

impl Worker {
    fn emit(&self, ev: SmsEvent) {
        // A caller that dropped the receiver has no use for events; keep sending anyway.
        let _ = self.events.send(ev);
    }

    fn peer(&self) -> String {
        format!("{}:{}", self.cfg.host, self.cfg.port)
    }

    async fn run(mut self) {
        self.connect_loop().await;
        // Parts of replies still waiting for the rest: report what came rather than lose it.
        for text in self.reassembler.flush() {
            self.emit_assembled(text);
        }
        // Stopped: whatever is still queued was not (completely) sent; say so, so the caller
        // can keep it for the next start.
        while let Ok(Request::Send(p)) = self.requests.try_recv() {
            self.queue.push_back(p);
        }
        for p in std::mem::take(&mut self.queue) {
            let reason = if p.gateway_ids.is_empty() {
                "the gateway stopped before sending it".to_string()
            } else {
                format!(
                    "the gateway stopped after {} of {} parts were accepted",
                    p.gateway_ids.len(),
                    p.text.parts.len()
                )
            };
            self.fail(&p, false, reason);
        }
    }

    async fn connect_loop(&mut self) {
        let mut backoff = self.cfg.reconnect_min;
        loop {
            let bound = {
                let connect = connect_and_bind(&self.cfg, &self.password);
                tokio::pin!(connect);
                loop {
                    tokio::select! {
                        r = &mut connect => break Some(r),
                        req = self.requests.recv() => match req {
                            Some(Request::Send(p)) => self.queue.push_back(p),
                            Some(Request::Stop) | None => break None,
                        },
                    }
                }
            };
            let reason = match bound {
                None => return,
                Some(Ok((client, events))) => {
                    let bound_at = Instant::now();
                    self.stats
                        .bump(&self.stats.binds, "ccswitch_sms_smpp_binds_total");
                    tracing::info!(peer = %self.peer(), system_id = %self.cfg.system_id, "SMPP bound (transceiver, v3.4)");
                    self.emit(SmsEvent::Connected { peer: self.peer() });
                    match self.session(client, events).await {
                        SessionEnd::Stop => return,
                        SessionEnd::Lost(reason) => {
                            // Only a bind that lasted counts as recovery: an SMSC that
                            // accepts the bind and drops us at once still gets backoff.
                            if bound_at.elapsed() >= self.cfg.reconnect_max {
                                backoff = self.cfg.reconnect_min;
                            }
                            self.stats.bump(
                                &self.stats.disconnects,
                                "ccswitch_sms_smpp_disconnects_total",
                            );
                            reason
                        }
                    }
                }
                Some(Err(reason)) => {
                    self.stats.bump(
                        &self.stats.bind_failures,
                        "ccswitch_sms_smpp_bind_failures_total",
                    );
                    reason
                }
            };
            tracing::warn!(peer = %self.peer(), %reason, retry_in_ms = backoff.as_millis() as u64, queued = self.queue.len(), "SMPP not bound");
            self.emit(SmsEvent::Disconnected {
                reason,
                retry_in: backoff,
            });
            let wake = Instant::now() + backoff;
            backoff = (backoff * 2).min(self.cfg.reconnect_max);
            loop {
                let give_up = self.reassembler.next_deadline();
                tokio::select! {
                    _ = tokio::time::sleep_until(wake) => break,
                    _ = sleep_until_some(give_up) => self.expire_parts(),
                    req = self.requests.recv() => match req {
                        Some(Request::Send(p)) => self.queue.push_back(p),
                        Some(Request::Stop) | None => return,
                    },
                }
            }
        }
    }

    /// Runs one bound session until it is lost or the gateway is stopped. Messages in flight
    /// when it ends go back to the front of the queue with their accepted parts kept.
    async fn session(&mut self, client: Client, mut events: EventStream) -> SessionEnd {
        let window = self.cfg.window;
        let mut throttle_streak: u32 = 0;
        let mut in_flight: HashMap<u64, Pending> = HashMap::new();
        let mut submits: FuturesUnordered<SubmitFuture> = FuturesUnordered::new();
        let mut next_key: u64 = 0;

        let end = loop {
            let now = Instant::now();
            while in_flight.len() < window && self.rate.ready(now) {
                let Some(p) = self.queue.pop_front() else {
                    break;
                };
                let pdu = match submit_pdu(&self.cfg, &p) {
                    Ok(pdu) => pdu,
                    Err(reason) => {
                        self.fail(&p, true, reason);
                        continue;
                    }
                };
                next_key += 1;
                let key = next_key;
                let c = client.clone();
                let stats = self.stats.clone();
                submits.push(Box::pin(async move {
                    let sent = Instant::now();
                    let result = c.submit_sm(pdu).await;
                    if result.is_ok() {
                        stats.submit_response.record(sent.elapsed());
                    }
                    (key, result)
                }));
                in_flight.insert(key, p);
                self.rate.take(now);
            }
            let waiting_for_slot = in_flight.len() < window && !self.queue.is_empty();
            let give_up = self.reassembler.next_deadline();
            let next_slot = self.rate.next_at(now);

            tokio::select! {
                _ = sleep_until_some(give_up) => self.expire_parts(),
                Some((key, result)) = submits.next(), if !submits.is_empty() => {
                    let Some(p) = in_flight.remove(&key) else { continue };
                    match self.on_submit_result(p, result, &mut throttle_streak) {
                        Ok(()) => {}
                        Err(reason) => break SessionEnd::Lost(reason),
                    }
                }
                req = self.requests.recv() => match req {
                    Some(Request::Send(p)) => self.queue.push_back(p),
                    Some(Request::Stop) | None => break SessionEnd::Stop,
                },
                ev = events.next() => match ev {
                    Some(Event::Incoming(cmd)) => self.on_incoming(&client, cmd).await,
                    Some(Event::Error(e)) => self.on_session_error(&e),
                    None => break SessionEnd::Lost("the SMSC connection closed".into()),
                },
                _ = tokio::time::sleep_until(next_slot), if waiting_for_slot && next_slot > now => {}
            }
        };

        // Parts in flight have no answer: send them again on the next bind (at-least-once).
        let mut back: Vec<Pending> = in_flight.into_values().collect();
        back.sort_by_key(|p| std::cmp::Reverse(p.id));
        for mut p in back {
            if matches!(end, SessionEnd::Lost(_)) {
                p.attempts += 1;
                if p.attempts >= self.cfg.max_attempts {
                    self.fail(
                        &p,
                        false,
                        "connection lost while waiting for submit_sm_resp; attempts used up".into(),
                    );
                    continue;
                }
            }
            self.queue.push_front(p);
        }
        match end {
            SessionEnd::Stop => {
                // Best effort: tell the SMSC we are going, but never wait long.
                let _ = tokio::time::timeout(Duration::from_secs(1), client.unbind()).await;
                let _ = tokio::time::timeout(Duration::from_secs(1), client.close()).await;
                SessionEnd::Stop
            }
            lost => {
                let _ = tokio::time::timeout(Duration::from_millis(200), client.close()).await;
                lost
            }
        }
    }

    fn fail(&self, p: &Pending, permanent: bool, reason: String) {
        self.stats
            .bump(&self.stats.failed, "ccswitch_sms_smpp_failed_total");
        tracing::warn!(id = p.id, permanent, %reason, parts_accepted = p.gateway_ids.len(), "SMS not sent");
        self.emit(SmsEvent::Failed {
            id: p.id,
            permanent,
            reason,
        });
    }

    /// Handles a submit_sm outcome; `Err` ends the session (the SMSC stopped answering).
    fn on_submit_result(
        &mut self,
        mut p: Pending,
        result: Result<SubmitSmResp, rusmppc::error::Error>,
        throttle_streak: &mut u32,
    ) -> Result<(), String> {
        use rusmppc::error::Error as E;
        match result {
            Ok(resp) => {
                *throttle_streak = 0;
                self.stats.bump(
                    &self.stats.parts_submitted,
                    "ccswitch_sms_smpp_parts_submitted_total",
                );
                p.gateway_ids.push(resp.message_id().as_str().to_string());
                if p.gateway_ids.len() == p.text.parts.len() {
                    tracing::debug!(id = p.id, gateway_ids = ?p.gateway_ids, "SMS submitted");
                    self.emit(SmsEvent::Submitted {
                        id: p.id,
                        gateway_ids: p.gateway_ids,
                    });
                } else {
                    // The next part goes right after this one.
                    self.queue.push_front(p);
                }
                Ok(())
            }
            Err(E::UnexpectedResponse { response }) => {
                let status = response.status();
                let code = u32::from(status);
                if response.id() == CommandId::GenericNack {
                    self.stats.bump(
                        &self.stats.generic_nacks,
                        "ccswitch_sms_smpp_generic_nacks_total",
                    );
                }
                if matches!(
                    status,
                    CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful
                ) {
                    self.stats
                        .bump(&self.stats.throttled, "ccswitch_sms_smpp_throttled_total");
                    *throttle_streak += 1;
                    let pause = (self.cfg.throttle_backoff
                        * 2u32.saturating_pow(throttle_streak.saturating_sub(1).min(16)))
                    .min(self.cfg.reconnect_max);
                    self.rate.pause_until(Instant::now() + pause);
                    p.attempts += 1;
                    tracing::info!(
                        id = p.id,
                        status = format_args!("{code:#010x}"),
                        pause_ms = pause.as_millis() as u64,
                        "SMSC throttling: slowing down"
                    );
                    if p.attempts >= self.cfg.max_attempts {
                        self.fail(
                            &p,
                            false,
                            format!(
                                "SMSC kept throttling ({code:#010x}) for {} attempts",
                                p.attempts
                            ),
                        );
                    } else {
                        self.emit(SmsEvent::Throttled {
                            id: p.id,
                            retry_in: pause,
                        });
                        self.queue.push_front(p);
                    }
                    return Ok(());
                }
                let what = if response.id() == CommandId::GenericNack {
                    "generic_nack"
                } else {
                    "submit_sm_resp"
                };
                if temporary(status) {
                    p.attempts += 1;
                    let reason =
                        format!("SMSC answered {what} with status {code:#010x} ({status:?})");
                    if p.attempts >= self.cfg.max_attempts {
                        self.fail(&p, false, format!("{reason}; attempts used up"));
                    } else {
                        // Give the SMSC a moment before anything else goes out.
                        self.rate
                            .pause_until(Instant::now() + self.cfg.throttle_backoff);
                        tracing::info!(id = p.id, %reason, "temporary SMSC error: retrying");
                        self.queue.push_back(p);
                    }
                    if status == CommandStatus::EsmeRinvbndsts {
                        return Err("the SMSC says we are not bound".into());
                    }
                    return Ok(());
                }
                let mut reason =
                    format!("SMSC refused the text: {what} status {code:#010x} ({status:?})");
                if !p.gateway_ids.is_empty() {
                    reason.push_str(&format!(
                        "; {} of {} parts were already accepted",
                        p.gateway_ids.len(),
                        p.text.parts.len()
                    ));
                }
                self.fail(&p, true, reason);
                Ok(())
            }
            Err(E::ResponseTimeout { timeout, .. }) => {
                self.stats
                    .bump(&self.stats.timeouts, "ccswitch_sms_smpp_timeouts_total");
                p.attempts += 1;
                let reason = format!(
                    "no submit_sm_resp within {} ms: the SMSC stopped answering",
                    timeout.as_millis()
                );
                if p.attempts >= self.cfg.max_attempts {
                    self.fail(&p, false, format!("{reason}; attempts used up"));
                } else {
                    self.queue.push_front(p);
                }
                Err(reason)
            }
            Err(e) => {
                // Connection-level: the part goes again on the next bind.
                self.queue.push_front(p);
                Err(format!("submit_sm failed: {e}"))
            }
        }
    }

    fn on_session_error(&self, e: &rusmppc::error::Error) {
        use rusmppc::error::Error as E;
        match e {
            E::Decode(err) => {
                self.stats
                    .bump(&self.stats.malformed, "ccswitch_sms_smpp_malformed_total");
                tracing::warn!(peer = %self.peer(), error = %err, "malformed PDU from the SMSC: dropping the connection");
            }
            E::EnquireLinkTimeout { timeout } => {
                self.stats
                    .bump(&self.stats.timeouts, "ccswitch_sms_smpp_timeouts_total");
                tracing::warn!(peer = %self.peer(), timeout_ms = timeout.as_millis() as u64, "no enquire_link_resp from the SMSC");
            }
            other => tracing::warn!(peer = %self.peer(), error = %other, "SMPP connection error"),
        }
    }

    async fn on_incoming(&mut self, client: &Client, cmd: Command) {
        let seq = cmd.sequence_number();
        let id = cmd.id();
        match cmd.pdu() {
            Some(Pdu::DeliverSm(sm)) => {
                let status = self.on_deliver_sm(sm, Instant::now());
                let resp = client
                    .status(status)
                    .deliver_sm_resp(seq, DeliverSmResp::default());
                if let Err(e) = tokio::time::timeout(self.cfg.response_timeout, resp).await {
                    tracing::warn!(error = %e, "deliver_sm_resp not sent");
                }
            }
            Some(Pdu::Unbind) => {
                tracing::info!(peer = %self.peer(), "SMSC asked to unbind");
                let _ =
                    tokio::time::timeout(self.cfg.response_timeout, client.unbind_resp(seq)).await;
            }
            Some(Pdu::GenericNack) | None if id == CommandId::GenericNack => {
                self.stats.bump(
                    &self.stats.generic_nacks,
                    "ccswitch_sms_smpp_generic_nacks_total",
                );
                tracing::warn!(sequence_number = seq, status = ?cmd.status(), "generic_nack from the SMSC for no request of ours");
            }
            _ if id.is_response() => {
                // A response after its request timed out: that part went again (or failed).
                tracing::warn!(sequence_number = seq, ?id, status = ?cmd.status(), "late response from the SMSC ignored");
            }
            _ => {
                tracing::warn!(
                    sequence_number = seq,
                    ?id,
                    "unexpected request from the SMSC: generic_nack"
                );
                let nack = client
                    .status(CommandStatus::EsmeRinvcmdid)
                    .generic_nack(seq);
                let _ = tokio::time::timeout(self.cfg.response_timeout, nack).await;
            }
        }
    }

    /// Turns a deliver_sm into a receipt, an inbound text or a part of one; the status for
    /// deliver_sm_resp.
    fn on_deliver_sm(&mut self, sm: &DeliverSm, now: Instant) -> CommandStatus {
        match read_deliver(sm) {
            Ok(Deliver::Event(ev)) => {
                match &ev {
                    SmsEvent::DeliveryReceipt {
                        gateway_id, state, ..
                    } => {
                        self.stats
                            .bump(&self.stats.receipts, "ccswitch_sms_smpp_receipts_total");
                        tracing::debug!(%gateway_id, %state, "delivery receipt");
                    }
                    _ => self
                        .stats
                        .bump(&self.stats.inbound, "ccswitch_sms_smpp_inbound_total"),
                }
                self.emit(ev);
            }
            Ok(Deliver::Part(part)) => {
                self.stats.bump(
                    &self.stats.concat_parts,
                    "ccswitch_sms_smpp_concat_parts_total",
                );
                let (reference, seq, total) =
                    (part.concat.reference, part.concat.seq, part.concat.total);
                let pushed = self.reassembler.push(part, now);
                if pushed.duplicate {
                    self.stats.bump(
                        &self.stats.concat_duplicates,
                        "ccswitch_sms_smpp_concat_duplicates_total",
                    );
                    tracing::info!(
                        reference,
                        seq,
                        total,
                        "part of a long reply received again: ignored"
                    );
                }
                for text in pushed.ready {
                    self.emit_assembled(text);
                }
            }
            Err(problem) => {
                self.stats
                    .bump(&self.stats.malformed, "ccswitch_sms_smpp_malformed_total");
                tracing::warn!(%problem, "deliver_sm ignored");
            }
        }
        // Answer OK either way: an error would only make the SMSC send it again.
        CommandStatus::EsmeRok
    }

    /// Hands out long replies whose missing parts did not come in time.
    fn expire_parts(&mut self) {
        for text in self.reassembler.expire(Instant::now()) {
            self.emit_assembled(text);
        }
    }

    /// A reassembled reply (whole, or what came of it) as one inbound text.
    fn emit_assembled(&self, a: Assembled) {
        if a.outcome != concat::Outcome::Complete {
            self.stats.bump(
                &self.stats.concat_incomplete,
                "ccswitch_sms_smpp_concat_incomplete_total",
            );
            tracing::warn!(
                from = %crate::engine::survey::numbers::mask_number(&a.from),
                reference = a.reference,
                received = a.received,
                total = a.total,
                why = a.outcome.as_str(),
                "long reply incomplete: reporting the parts that came"
            );
        }
        self.stats
            .bump(&self.stats.inbound, "ccswitch_sms_smpp_inbound_total");
        self.emit(SmsEvent::Inbound {
            from: a.from,
            to: a.to,
            text: a.text,
        });
    }
}

/// Sleeps until `at`, or forever without one (a `select!` branch that never fires).
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a deliver_sm carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deliver {
    /// A receipt, or a whole inbound text.
    Event(SmsEvent),
    /// One part of a concatenated inbound text, for the reassembler.
    Part(concat::Part),
}

/// A deliver_sm as a receipt, a whole inbound text, or a part of a long one (UDH
/// concatenation element 0x00/0x08, or the `sar_msg_ref_num`/`sar_total_segments`/
/// `sar_segment_seqnum` TLVs). The text is `short_message`, or the `message_payload` TLV
/// when short_message is empty.
pub fn read_deliver(sm: &DeliverSm) -> Result<Deliver, String> {
    let esm = u8::from(sm.esm_class);
    let message_type = esm & 0x3C;
    if message_type == 0x04 || message_type == 0x20 {
        return read_receipt(sm).map(Deliver::Event);
    }
    let dc = u8::from(sm.data_coding);
    let mut bytes = sm.short_message().clone().into_vec();
    if bytes.is_empty() {
        if let Some(payload) = sm.tlvs().iter().find_map(|t| match t.value() {
            Some(TlvValue::MessagePayload(p)) => Some(p.value.clone().into_vec()),
            _ => None,
        }) {
            bytes = payload;
        }
    }
    let from = sm.source_addr.as_str().to_string();
    let to = sm.destination_addr.as_str().to_string();
    let udh = esm & 0x40 != 0;
    let placed = if udh {
        concat::udh_concat(&bytes)
    } else {
        sar_concat(sm)
    };
    match placed {
        Some(concat) => {
            let payload = if udh {
                let udhl = bytes.first().map_or(0, |&l| l as usize);
                bytes.get(udhl + 1..).unwrap_or(&[]).to_vec()
            } else {
                bytes
            };
            Ok(Deliver::Part(concat::Part {
                from,
                to,
                concat,
                data_coding: dc,
                payload,
            }))
        }
        None => Ok(Deliver::Event(SmsEvent::Inbound {
            from,
            to,
            text: super::decode_short_message(dc, esm, &bytes),
        })),
    }
}

/// The SAR TLVs (SMPP 3.4 5.3.2.22-24), when all three are there and make sense.
fn sar_concat(sm: &DeliverSm) -> Option<ConcatRef> {
    let (mut reference, mut total, mut seq) = (None, None, None);
    for t in sm.tlvs() {
        match t.value() {
            Some(TlvValue::SarMsgRefNum(v)) => reference = Some(*v),
            Some(TlvValue::SarTotalSegments(v)) => total = Some(*v),
            Some(TlvValue::SarSegmentSeqnum(v)) => seq = Some(*v),
            _ => {}
        }
    }
    ConcatRef::new(reference?, total?, seq?)
}

/// A deliver_sm as one event, each part of a long text on its own (`read_deliver` gives the
/// parts to put together): a receipt (esm_class message type 0x04, or 0x20 for an
/// intermediate notification) or an inbound text; `Err` says what is wrong with a receipt
/// we cannot use.
pub fn read_deliver_sm(sm: &DeliverSm) -> Result<SmsEvent, String> {
    match read_deliver(sm)? {
        Deliver::Event(ev) => Ok(ev),
        Deliver::Part(p) => Ok(SmsEvent::Inbound {
            from: p.from,
            to: p.to,
            text: super::decode_short_message(p.data_coding, 0, &p.payload),
        }),
    }
}

/// A delivery receipt (or intermediate notification) deliver_sm.
fn read_receipt(sm: &DeliverSm) -> Result<SmsEvent, String> {
    let esm = u8::from(sm.esm_class);
    let dc = u8::from(sm.data_coding);
    let bytes = sm.short_message().clone().into_vec();
    let text = super::decode_short_message(dc, esm, &bytes);
    let parsed = super::parse_receipt_text(&text);
    let tlv_id = sm.tlvs().iter().find_map(|t| match t.value() {
        Some(TlvValue::ReceiptedMessageId(id)) => Some(id.as_str().to_string()),
        _ => None,
    });
    let gateway_id = tlv_id.or_else(|| parsed.as_ref().and_then(|r| r.id.clone()));
    let state = parsed.as_ref().and_then(|r| r.stat.clone());
    match (gateway_id, state) {
        (Some(gateway_id), Some(state)) => Ok(SmsEvent::DeliveryReceipt {
            delivered: state.eq_ignore_ascii_case("DELIVRD"),
            gateway_id,
            state,
            error: parsed.and_then(|r| r.err),
        }),
        _ => Err(format!(
            "delivery receipt without a message id or stat: {:?}",
            text.chars().take(160).collect::<String>()
        )),
    }
}

/// Whether an error status is worth retrying (SMSC-side trouble, not our text).
fn temporary(status: CommandStatus) -> bool {
    matches!(
        status,
        CommandStatus::EsmeRsyserr
            | CommandStatus::EsmeRinvbndsts
            | CommandStatus::EsmeRxTAppn
            | CommandStatus::EsmeRdeliveryfailure
    )
}

/// The `user_message_reference` TLV value sent for message `id`: its low 16 bits.
pub fn user_message_reference(id: u64) -> u16 {
    (id & 0xFFFF) as u16
}

fn submit_pdu(cfg: &SmppConfig, p: &Pending) -> Result<SubmitSm, String> {
    let part = p
        .text
        .parts
        .get(p.gateway_ids.len())
        .ok_or_else(|| "no part left to send".to_string())?;
    let source = COctetString::from_str(&cfg.source_addr)
        .map_err(|e| format!("source_addr {:?}: {e}", cfg.source_addr))?;
    let (source_ton, source_npi) = if cfg.source_addr.bytes().all(|b| b.is_ascii_digit()) {
        (Ton::Unknown, Npi::Isdn)
    } else {
        (Ton::Alphanumeric, Npi::Unknown)
    };
    let dest =
        COctetString::from_str(&p.dest).map_err(|e| format!("destination {:?}: {e}", p.dest))?;
    let short_message =
        OctetString::from_vec(part.clone()).map_err(|e| format!("short_message: {e}"))?;
    // Not EsmClass::default(): that sets an ANSI-41 bit (0x08). Default mode and type, plus
    // the UDH indicator (0x40) for a part of a concatenated text.
    let esm = EsmClass::from(if p.text.concatenated() { 0x40u8 } else { 0x00 });
    Ok(SubmitSm::builder()
        .service_type(ServiceType::default())
        .source_addr_ton(source_ton)
        .source_addr_npi(source_npi)
        .source_addr(source)
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(dest)
        .esm_class(esm)
        .registered_delivery(RegisteredDelivery::from(0x01))
        .data_coding(DataCoding::from(p.text.coding.data_coding()))
        .short_message(short_message)
        // The survey id as the client reference (SMPP 3.4 user_message_reference holds 16
        // bits: the id's low 16), the same on every resend, for the SMSC's duplicate checks.
        .push_tlv(MessageSubmissionRequestTlvValue::UserMessageReference(
            UserMessageReference::new(user_message_reference(p.id)),
        ))
        .build())
}

async fn connect_and_bind(
    cfg: &SmppConfig,
    password: &Secret,
) -> Result<(Client, EventStream), String> {
    let peer = format!("{}:{}", cfg.host, cfg.port);
    let url = format!("smpp://{peer}");
    let connect = ConnectionBuilder::new()
        .max_command_length(4096)
        .enquire_link_interval(cfg.enquire_link)
        .enquire_link_response_timeout(cfg.response_timeout)
        .response_timeout(cfg.response_timeout)
        // rusmppc speaks SMPP 5.0 by default; we bind as 3.4 and send only 3.4 PDUs.
        .disable_interface_version_check()
        .connect(url);
    let (client, events) = tokio::time::timeout(cfg.response_timeout, connect)
        .await
        .map_err(|_| {
            format!(
                "connect to {peer}: no answer within {} ms",
                cfg.response_timeout.as_millis()
            )
        })?
        .map_err(|e| format!("connect to {peer}: {e}"))?;
    let bind = BindTransceiver::builder()
        .system_id(COctetString::from_str(&cfg.system_id).map_err(|e| format!("system_id: {e}"))?)
        .password(
            COctetString::from_str(&password.0)
                .map_err(|_| "password: not a valid SMPP string".to_string())?,
        )
        .system_type(
            COctetString::from_str(&cfg.system_type).map_err(|e| format!("system_type: {e}"))?,
        )
        .interface_version(InterfaceVersion::Smpp3_4)
        .addr_ton(Ton::Unknown)
        .addr_npi(Npi::Unknown)
        .address_range(COctetString::empty())
        .build();
    match client.bind_transceiver(bind).await {
        Ok(_) => Ok((client, Box::new(events))),
        Err(e) => {
            let _ = tokio::time::timeout(Duration::from_millis(200), client.close()).await;
            Err(match e {
                rusmppc::error::Error::ResponseTimeout { timeout, .. } => format!(
                    "bind_transceiver to {peer}: no answer within {} ms (the SMSC accepted the connection but is silent)",
                    timeout.as_millis()
                ),
                rusmppc::error::Error::UnexpectedResponse { response } => format!(
                    "bind_transceiver to {peer} refused: status {:#010x} ({:?}); check system_id and password",
                    u32::from(response.status()),
                    response.status()
                ),
                other => format!("bind_transceiver to {peer}: {other}"),
            })
        }
    }
}

/// Decodes `bytes` as SMPP PDUs with rusmpp's codec, the way the session does (and reads
/// each deliver_sm as the gateway would), and returns how many decoded and whether decoding
/// stopped on an error. Used by the fuzz test: bad
/// bytes from an SMSC must give errors, never a panic.
pub fn decode_pdus(bytes: &[u8]) -> (usize, bool) {
    use tokio_util::codec::Decoder;
    let mut codec = rusmpp::tokio_codec::CommandCodec::new().with_max_length(4096);
    let mut buf = bytes::BytesMut::from(bytes);
    let mut n = 0;
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(cmd)) => {
                n += 1;
                if let Some(Pdu::DeliverSm(sm)) = cmd.pdu() {
                    let _ = read_deliver_sm(sm);
                }
            }
            Ok(None) => return (n, false),
            Err(_) => return (n, true),
        }
        if n > bytes.len() {
            return (n, false);
        }
    }
}
