//! The survey service: the shell around the outbox and reply cores
//! (`engine::survey::{outbox, replies}`). One tokio task that
//!
//! - at start puts texts left `sending` by a crash back to due (`Store::requeue_sending`);
//! - polls due texts (every `poll_interval`, and at once when woken), claims them in the
//!   store (committed before the submit) and hands them to the gateway;
//! - records what the gateway reports (sent, failed/retry, receipts) and handles replies
//!   (SMPP deliver_sm, or the HTTP webhooks through `SurveyHandle::webhook`);
//! - every `sweep_interval` expires unanswered surveys and escalates overdue tasks;
//! - sends the keyed hash of every newly opted-out number on `opt_outs` (the engine's
//!   `Command::SurveyOptOut`), so the number is never surveyed again.
//!
//! Numbers in logs are masked. Stopping drains texts in flight for at most the grace time,
//! then stops the gateway; what is still `sending` goes again after the next start.

pub mod gateway;

pub use gateway::Gateway;

use crate::clock::Clock;
use crate::engine::survey::numbers::{mask_number, number_hash};
use crate::engine::survey::outbox::{Outbox, OutboxAction, OutboxConfig};
use crate::engine::survey::replies::{handle_reply, SurveyUpdate};
use crate::engine::survey::SurveyPolicy;
use crate::engine::time::Millis;
use crate::sms::SmsEvent;
use crate::store::{InboundText, ReplyApplied, Store, StoreError};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// What the service needs besides the store and the gateway.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub policy: Arc<SurveyPolicy>,
    /// The key of `number_hash` (HMAC-SHA256), the same the engine uses.
    pub number_key: Vec<u8>,
    pub outbox: OutboxConfig,
    /// How often due texts are looked for when nobody wakes the service.
    pub poll_interval: Duration,
    /// How often expiry and escalation run.
    pub sweep_interval: Duration,
    /// The live view's hub: told when a survey question is sent and a CSAT answer stored.
    pub live: Option<crate::live::LiveSender>,
}

impl ServiceConfig {
    /// Defaults: poll every second, sweep every minute, at most 100 texts in flight, 5
    /// claims per text with backoff from 30 s to 30 min.
    pub fn new(policy: Arc<SurveyPolicy>, number_key: Vec<u8>) -> ServiceConfig {
        let outbox = OutboxConfig {
            reply_window_ms: policy.reply_window_ms,
            ..OutboxConfig::default()
        };
        ServiceConfig {
            policy,
            number_key,
            outbox,
            poll_interval: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(60),
            live: None,
        }
    }
}

/// Counters of one service (also exported as `ccswitch_survey_*_total` metrics).
#[derive(Debug, Default)]
pub struct ServiceStats {
    pub claimed: AtomicU64,
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub receipts: AtomicU64,
    pub receipts_unmatched: AtomicU64,
    pub replies: AtomicU64,
    pub replies_unmatched: AtomicU64,
    pub replies_unreadable: AtomicU64,
    pub replies_duplicate: AtomicU64,
    pub opt_outs: AtomicU64,
    pub expired: AtomicU64,
    pub escalated: AtomicU64,
    pub store_errors: AtomicU64,
}

impl ServiceStats {
    fn bump(&self, field: &AtomicU64, metric: &'static str, n: u64) {
        field.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(metric).increment(n);
    }

    pub fn get(field: &AtomicU64) -> u64 {
        field.load(Ordering::Relaxed)
    }
}

enum Input {
    Wake,
    Webhook {
        event: SmsEvent,
        dedupe_key: Option<String>,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// Talks to a running service; cheap to clone.
#[derive(Clone, Debug)]
pub struct SurveyHandle {
    inputs: mpsc::UnboundedSender<Input>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Wake => "Wake",
            Input::Webhook { .. } => "Webhook",
        })
    }
}

impl SurveyHandle {
    /// Look for due texts now (e.g. right after the engine scheduled a survey).
    pub fn wake(&self) {
        let _ = self.inputs.send(Input::Wake);
    }

    /// A verified webhook's event (a reply or a delivery report); returns once it is stored
    /// (Err: the service is gone or the store failed: the provider should retry).
    /// `dedupe_key`: the same key twice stores a reply once.
    pub async fn webhook(&self, event: SmsEvent, dedupe_key: Option<String>) -> Result<(), String> {
        let (done, rx) = oneshot::channel();
        self.inputs
            .send(Input::Webhook {
                event,
                dedupe_key,
                done,
            })
            .map_err(|_| "the survey service has stopped".to_string())?;
        rx.await
            .map_err(|_| "the survey service has stopped".to_string())?
    }
}

/// A running service.
pub struct SurveyService {
    handle: SurveyHandle,
    stop: Option<oneshot::Sender<Duration>>,
    task: Option<JoinHandle<()>>,
    stats: Arc<ServiceStats>,
}

impl std::fmt::Debug for SurveyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurveyService")
            .field("stats", &self.stats)
            .finish()
    }
}

impl SurveyService {
    /// Puts texts left `sending` back to due, then starts the service task.
    pub async fn start(
        store: Store,
        cfg: ServiceConfig,
        gateway: Gateway,
        events: mpsc::UnboundedReceiver<SmsEvent>,
        opt_outs: mpsc::UnboundedSender<String>,
        clock: Clock,
    ) -> Result<SurveyService, StoreError> {
        let requeued = store.requeue_sending(clock.now()).await?;
        if requeued > 0 {
            tracing::warn!(
                texts = requeued,
                "survey texts in flight at the last stop are due again (each goes at most once more, same id)"
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let stats = Arc::new(ServiceStats::default());
        let worker = Worker {
            outbox: Outbox::new(cfg.outbox.clone()),
            cfg,
            store,
            gateway: Some(gateway),
            clock,
            opt_outs,
            stats: stats.clone(),
        };
        let task = tokio::spawn(worker.run(events, rx, stop_rx));
        Ok(SurveyService {
            handle: SurveyHandle { inputs: tx },
            stop: Some(stop_tx),
            task: Some(task),
            stats,
        })
    }

    pub fn handle(&self) -> SurveyHandle {
        self.handle.clone()
    }

    pub fn stats(&self) -> &Arc<ServiceStats> {
        &self.stats
    }

    /// Stops claiming, waits at most `grace` for texts in flight, stops the gateway.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(grace);
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(grace + Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for SurveyService {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Worker {
    cfg: ServiceConfig,
    store: Store,
    gateway: Option<Gateway>,
    outbox: Outbox,
    clock: Clock,
    opt_outs: mpsc::UnboundedSender<String>,
    stats: Arc<ServiceStats>,
}

/// A store call that failed: logged and counted; the loop goes on (rows stay as they were,
/// so nothing is lost: a claimed text stays `sending` and goes again after a restart).
fn store_failed(stats: &ServiceStats, what: &str, e: &StoreError) {
    stats.bump(&stats.store_errors, "ccswitch_survey_store_errors_total", 1);
    tracing::error!(error = %e, "survey service: {what} failed");
}

impl Worker {
    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<SmsEvent>,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut stop: oneshot::Receiver<Duration>,
    ) {
        let mut next_sweep = self.clock.now();
        let mut drain_until: Option<tokio::time::Instant> = None;
        let mut events_open = true;
        loop {
            let now = self.clock.now();
            let mut more_due = false;
            if drain_until.is_none() {
                more_due = self.claim_and_send(now).await;
                if now >= next_sweep {
                    self.sweep(now).await;
                    next_sweep = now.plus(self.cfg.sweep_interval.as_millis() as u64);
                }
            } else if self.outbox.in_flight() == 0 {
                break;
            }
            let mut wait = if more_due {
                Duration::ZERO
            } else {
                self.cfg.poll_interval
            };
            if let Some(until) = self.outbox.paused_until(now) {
                wait = wait.max(Duration::from_millis(until.since(now)));
            }
            let sleep_until = match drain_until {
                Some(d) => d,
                None => tokio::time::Instant::now() + wait,
            };
            tokio::select! {
                biased;
                grace = &mut stop, if drain_until.is_none() => {
                    let grace = grace.unwrap_or(Duration::ZERO);
                    tracing::info!(in_flight = self.outbox.in_flight(), "survey service stopping");
                    drain_until = Some(tokio::time::Instant::now() + grace);
                }
                ev = events.recv(), if events_open => match ev {
                    Some(ev) => {
                        let _ = self.on_event(ev, None).await;
                    }
                    None => {
                        tracing::warn!("SMS gateway event stream closed");
                        events_open = false;
                    }
                },
                input = inputs.recv() => match input {
                    Some(Input::Wake) => {}
                    Some(Input::Webhook { event, dedupe_key, done }) => {
                        let r = self.on_event(event, dedupe_key).await;
                        let _ = done.send(r);
                    }
                    // Every handle is gone: keep running until stopped.
                    None => std::future::pending::<()>().await,
                },
                _ = tokio::time::sleep_until(sleep_until) => {
                    if drain_until.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        break;
                    }
                }
            }
        }
        let left = self.outbox.in_flight();
        self.outbox.forget_in_flight();
        if let Some(g) = self.gateway.take() {
            g.stop(Duration::from_secs(1)).await;
        }
        tracing::info!(
            in_flight_left = left,
            "survey service stopped (texts still in flight go again after the next start)"
        );
    }

    /// Claims what is due and sends it; true when the claim was full (more may be due).
    async fn claim_and_send(&mut self, now: Millis) -> bool {
        // Quiet hours hold every text, also one that was due before them: a retry after
        // backoff, a backlog after a gateway outage or a restart. It goes when they end.
        if self.cfg.policy.release_time(now).1 {
            return false;
        }
        let budget = self.outbox.claim_budget(now);
        if budget == 0 {
            return false;
        }
        let claimed = match self.store.claim_due(now, budget).await {
            Ok(c) => c,
            Err(e) => {
                store_failed(&self.stats, "claiming due texts", &e);
                return false;
            }
        };
        let full = claimed.len() == budget;
        self.stats.bump(
            &self.stats.claimed,
            "ccswitch_survey_texts_claimed_total",
            claimed.len() as u64,
        );
        for action in self.outbox.on_claimed(claimed) {
            let _ = self.apply(now, action, None).await;
        }
        full
    }

    async fn sweep(&mut self, now: Millis) {
        match self
            .store
            .expire_surveys(now, self.cfg.policy.reply_window_ms)
            .await
        {
            Ok(ids) if !ids.is_empty() => {
                self.stats.bump(
                    &self.stats.expired,
                    "ccswitch_survey_expired_total",
                    ids.len() as u64,
                );
                tracing::info!(surveys = ids.len(), "surveys expired without an answer");
            }
            Ok(_) => {}
            Err(e) => store_failed(&self.stats, "expiring surveys", &e),
        }
        match self.store.escalate_tasks(now).await {
            Ok(tasks) => {
                for t in tasks {
                    self.stats.bump(
                        &self.stats.escalated,
                        "ccswitch_survey_tasks_escalated_total",
                        1,
                    );
                    tracing::warn!(
                        task = t.task_id,
                        call_id = %t.call_id,
                        agent = t.agent.as_deref().unwrap_or("-"),
                        reason = %t.reason,
                        overdue_ms = now.since(t.due_at),
                        "follow-up task overdue: escalated"
                    );
                }
            }
            Err(e) => store_failed(&self.stats, "escalating tasks", &e),
        }
    }

    async fn on_event(&mut self, ev: SmsEvent, dedupe_key: Option<String>) -> Result<(), String> {
        let now = self.clock.now();
        let mut result = Ok(());
        for action in self.outbox.on_event(now, ev) {
            if let Err(e) = self.apply(now, action, dedupe_key.clone()).await {
                result = Err(e);
            }
        }
        result
    }

    /// Carries out one action. Store failures are retried a few times: a text the gateway
    /// accepted must not stay `sending` (it would go again after a restart).
    async fn apply(
        &mut self,
        now: Millis,
        action: OutboxAction,
        dedupe_key: Option<String>,
    ) -> Result<(), String> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_apply(now, &action, dedupe_key.as_deref()).await {
                Ok(()) => return Ok(()),
                Err(e) if tries < 3 => {
                    store_failed(&self.stats, "recording an outbox change (retrying)", &e);
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => {
                    store_failed(&self.stats, "recording an outbox change", &e);
                    return Err(e.to_string());
                }
            }
        }
    }

    async fn try_apply(
        &mut self,
        now: Millis,
        action: &OutboxAction,
        dedupe_key: Option<&str>,
    ) -> Result<(), StoreError> {
        let s = &self.stats;
        match action {
            OutboxAction::Send(msg) => {
                let Some(g) = &self.gateway else {
                    return Ok(());
                };
                if let Err(e) = g.send(msg.clone()) {
                    tracing::warn!(id = msg.id, to = %mask_number(&msg.to), error = %e, "SMS not accepted by the gateway");
                    match self.outbox.on_send_error(now, msg.id, &e) {
                        OutboxAction::Fail { message_id, reason } => {
                            let changed = self.store.fail_text(message_id, &reason, now).await?;
                            if changed {
                                s.bump(&s.failed, "ccswitch_survey_texts_failed_total", 1);
                            }
                        }
                        OutboxAction::Retry {
                            message_id,
                            due_at,
                            reason,
                        } => {
                            let changed = self
                                .store
                                .retry_text(message_id, due_at, &reason, now)
                                .await?;
                            if changed {
                                s.bump(&s.retried, "ccswitch_survey_texts_retried_total", 1);
                            }
                        }
                        _ => {}
                    }
                }
            }
            OutboxAction::MarkSent {
                message_id,
                gateway_ids,
                reply_by,
            } => {
                let name = self.gateway.as_ref().map_or("-", Gateway::name);
                if self
                    .store
                    .mark_sent(*message_id, name, gateway_ids, *reply_by, now)
                    .await?
                {
                    s.bump(&s.sent, "ccswitch_survey_texts_sent_total", 1);
                    // The survey question is message `survey_id`; other ids are ignored.
                    if let Some(live) = &self.cfg.live {
                        live.send(crate::live::LiveInput::SurveySent {
                            survey_id: *message_id,
                        });
                    }
                }
            }
            OutboxAction::Retry {
                message_id,
                due_at,
                reason,
            } => {
                if self
                    .store
                    .retry_text(*message_id, *due_at, reason, now)
                    .await?
                {
                    s.bump(&s.retried, "ccswitch_survey_texts_retried_total", 1);
                    tracing::info!(id = message_id, %reason, retry_in_ms = due_at.since(now), "survey text: temporary failure, retrying later");
                }
            }
            OutboxAction::Fail { message_id, reason } => {
                if self.store.fail_text(*message_id, reason, now).await? {
                    s.bump(&s.failed, "ccswitch_survey_texts_failed_total", 1);
                    tracing::warn!(id = message_id, %reason, "survey text failed");
                }
            }
            OutboxAction::Receipt {
                gateway_id,
                delivered,
                state,
            } => {
                match self
                    .store
                    .record_receipt(gateway_id, *delivered, state, now)
                    .await?
                {
                    Some(_) => s.bump(&s.receipts, "ccswitch_survey_receipts_total", 1),
                    None => {
                        s.bump(
                            &s.receipts_unmatched,
                            "ccswitch_survey_receipts_unmatched_total",
                            1,
                        );
                        tracing::warn!(%gateway_id, %state, "delivery receipt for no text of ours");
                    }
                }
            }
            OutboxAction::Inbound { from, text } => {
                self.on_inbound(now, from, text, dedupe_key).await?;
            }
        }
        Ok(())
    }

    /// The sender's number as E.164: as given (`+86...`, national `138...`), or digits with
    /// the country code but without the `+` (`86138...`, how SMSCs often give it).
    fn sender_number(&self, from: &str) -> Option<String> {
        let rules = &self.cfg.policy.numbers;
        let digits: String = from.chars().filter(char::is_ascii_digit).collect();
        let mut candidates = vec![from.trim().to_string()];
        if !from.trim_start().starts_with('+') && !digits.is_empty() {
            candidates.push(format!("+{digits}"));
        }
        candidates
            .iter()
            .find_map(|c| rules.normalise(c).ok())
            .map(|e| e.as_str().to_string())
    }

    async fn on_inbound(
        &mut self,
        now: Millis,
        from: &str,
        text: &str,
        dedupe_key: Option<&str>,
    ) -> Result<(), StoreError> {
        let s = self.stats.clone();
        let number = self.sender_number(from);
        let hash = number
            .as_deref()
            .map(|n| number_hash(&self.cfg.number_key, n));
        let ctx = match &hash {
            Some(h) => self.store.reply_context(h, now).await?,
            None => Default::default(),
        };
        let mut fx = handle_reply(&self.cfg.policy, &ctx, text, now);
        if hash.is_none() {
            // Not a number we can text or remember: stored, nothing else.
            fx.opt_out = false;
            fx.texts.clear();
        }
        // SMPP gives no id for a reply: the sender, the text and the second it came in make
        // a redelivery of the same deliver_sm a no-op.
        let dedupe_key = dedupe_key.map(str::to_string).unwrap_or_else(|| {
            let mut h = Sha256::new();
            h.update(from.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
            h.update((now.as_u64() / 1000).to_be_bytes());
            format!("mo:{}", hex::encode(h.finalize()))
        });
        let inbound = InboundText {
            received_at: now,
            number: number.clone().or_else(|| Some(from.to_string())),
            number_hash: hash.clone(),
            body: text.to_string(),
            dedupe_key,
        };
        let masked = mask_number(number.as_deref().unwrap_or(from));
        match self.store.apply_reply(&inbound, &fx, now).await? {
            ReplyApplied::Duplicate => {
                s.bump(
                    &s.replies_duplicate,
                    "ccswitch_survey_replies_duplicate_total",
                    1,
                );
                tracing::info!(from = %masked, "reply seen before (replay): ignored");
            }
            ReplyApplied::Applied { opted_out } => {
                s.bump(&s.replies, "ccswitch_survey_replies_total", 1);
                if let (Some(live), Some(survey_id), Some(SurveyUpdate::Answered { csat, .. })) =
                    (&self.cfg.live, fx.survey_id, &fx.update)
                {
                    live.send(crate::live::LiveInput::SurveyAnswered {
                        survey_id,
                        csat: *csat,
                    });
                }
                match fx.outcome {
                    "unmatched" => {
                        s.bump(
                            &s.replies_unmatched,
                            "ccswitch_survey_replies_unmatched_total",
                            1,
                        );
                        tracing::info!(from = %masked, "reply matches no open survey: stored unmatched");
                    }
                    "unreadable" => {
                        s.bump(
                            &s.replies_unreadable,
                            "ccswitch_survey_replies_unreadable_total",
                            1,
                        );
                        tracing::info!(from = %masked, survey = ?fx.survey_id, "reply without a readable score: clarification asked");
                    }
                    outcome => {
                        tracing::info!(from = %masked, survey = ?fx.survey_id, outcome, "survey reply")
                    }
                }
                if opted_out {
                    s.bump(&s.opt_outs, "ccswitch_survey_opt_outs_total", 1);
                    tracing::info!(from = %masked, "number opted out of surveys");
                    if let Some(h) = hash {
                        let _ = self.opt_outs.send(h);
                    }
                }
            }
        }
        Ok(())
    }
}
