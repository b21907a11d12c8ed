//! The hub: a tokio task owning the read model. The control loop sends it every record and
//! live event without ever waiting (unbounded channel, `send` never blocks); WebSocket
//! clients subscribe and get a bounded queue each. Every 250 ms (so at most 4 updates a
//! second per client) the changed sections go out whole as one `update`; a client whose
//! queue is full is marked for a fresh snapshot once it has room again, and dropped
//! (its queue closed) if it stays full longer than `HubOptions::stall_limit_ms`.

use super::model::{LiveModel, ModelConfig};
use super::prom;
use super::snapshot::{Section, Snapshot};
use crate::clock::Clock;
use crate::engine::live::LiveEvent;
use crate::engine::record::Record;
use crate::engine::time::Millis;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How clients are served.
#[derive(Clone, Copy, Debug)]
pub struct HubOptions {
    /// Messages a client's queue holds before it counts as stalled.
    pub client_queue: usize,
    /// A stalled client is dropped after this long.
    pub stall_limit_ms: u64,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            client_queue: 16,
            stall_limit_ms: 10_000,
        }
    }
}
/// Updates are coalesced over this period.
pub const FLUSH_MS: u64 = 250;

/// What the control loop (and the survey service) feed the hub.
#[derive(Debug)]
pub enum LiveInput {
    Record(Record),
    Event(LiveEvent),
    /// The survey service sent survey `survey_id`'s question.
    SurveySent {
        survey_id: u64,
    },
    /// The survey service stored survey `survey_id`'s CSAT answer (1-5).
    SurveyAnswered {
        survey_id: u64,
        csat: u8,
    },
}

/// The control loop's side: never waits. The control loop holds the one strong sender: when
/// it ends, the hub ends (and its clients are closed with 1001); others hold a weak one.
#[derive(Clone, Debug)]
pub struct LiveSender(Tx);

#[derive(Clone, Debug)]
enum Tx {
    Strong(mpsc::UnboundedSender<LiveInput>),
    Weak(mpsc::WeakUnboundedSender<LiveInput>),
}

impl LiveSender {
    pub fn record(&self, r: &Record) {
        self.send(LiveInput::Record(r.clone()));
    }

    pub fn event(&self, e: LiveEvent) {
        self.send(LiveInput::Event(e));
    }

    pub fn send(&self, input: LiveInput) {
        match &self.0 {
            Tx::Strong(tx) => {
                let _ = tx.send(input);
            }
            Tx::Weak(tx) => {
                if let Some(tx) = tx.upgrade() {
                    let _ = tx.send(input);
                }
            }
        }
    }

    /// A sender that does not keep the hub running (for the survey service).
    pub fn downgrade(&self) -> LiveSender {
        LiveSender(Tx::Weak(match &self.0 {
            Tx::Strong(tx) => tx.downgrade(),
            Tx::Weak(tx) => tx.clone(),
        }))
    }
}

enum Request {
    Snapshot(oneshot::Sender<Snapshot>),
    Subscribe(oneshot::Sender<mpsc::Receiver<String>>),
}

/// The API's side: snapshots and subscriptions.
#[derive(Clone, Debug)]
pub struct LiveHandle {
    requests: mpsc::Sender<Request>,
    /// The live view's own runtime (one thread): the hub and the WebSocket clients' loops
    /// run there, so building and writing updates never holds up the control loop's workers.
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

impl LiveHandle {
    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(Request::Snapshot(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Runs `fut` (a WebSocket client's loop) on the live view's thread.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(fut)
    }

    /// False once the hub stopped (the switch is shutting down).
    pub fn is_running(&self) -> bool {
        !self.requests.is_closed()
    }

    /// A client's queue of JSON text messages: a snapshot first, then updates. It closes
    /// when the hub drops a stalled client (or stops).
    pub async fn subscribe(&self) -> Option<mpsc::Receiver<String>> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(Request::Subscribe(tx)).await.ok()?;
        rx.await.ok()
    }
}

struct Client {
    tx: mpsc::Sender<String>,
    seq: u64,
    resync: bool,
    stalled_since: Option<Millis>,
    /// Stalled too long: removed (its queue closes) at the end of the flush.
    dropped: bool,
}

struct Hub {
    model: LiveModel,
    clients: Vec<Client>,
    clock: Clock,
    /// When the oldest change not yet sent reached the hub (an update's `changed_at`: what
    /// its clients' lag is measured from, coalescing wait included).
    pending_since: Option<Millis>,
    prom: prom::QueueMetrics,
    opts: HubOptions,
}

/// Starts the hub with `model` (seeded already).
pub fn spawn(model: LiveModel, clock: Clock) -> (LiveSender, LiveHandle) {
    spawn_with(model, clock, HubOptions::default())
}

pub fn spawn_with(model: LiveModel, clock: Clock, opts: HubOptions) -> (LiveSender, LiveHandle) {
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (req_tx, req_rx) = mpsc::channel(256);
    prom::describe();
    let hub = Hub {
        model,
        clients: Vec::new(),
        clock,
        pending_since: None,
        prom: prom::QueueMetrics::default(),
        opts,
    };
    let (rt_tx, rt_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("ccswitch-live".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "live view: no runtime; the feed is off");
                    return;
                }
            };
            let _ = rt_tx.send(rt.handle().clone());
            rt.block_on(async move {
                hub.run(in_rx, req_rx).await;
                // Let the clients' loops send their close frames.
                tokio::time::sleep(Duration::from_millis(300)).await;
            });
        });
    let runtime = match spawned.ok().and_then(|_| rt_rx.recv().ok()) {
        Some(h) => h,
        // No thread or runtime: clients are served on the caller's runtime, nobody answers
        // requests (routes answer 503).
        None => tokio::runtime::Handle::current(),
    };
    (
        LiveSender(Tx::Strong(in_tx)),
        LiveHandle {
            requests: req_tx,
            runtime,
        },
    )
}

/// A model for `cfg`, seeded with today's calls and surveys from the store (one query each).
pub async fn seeded_model(cfg: ModelConfig, store: &crate::store::Store, now: Millis) -> LiveModel {
    let mut model = LiveModel::new(cfg, now);
    let since = model.day_start();
    match store.calls(Some(since), None).await {
        Ok(calls) => {
            let n = calls.len();
            for c in calls {
                let (times, facts) = (c.times(), c.facts());
                model.seed_call(c.call_id, times, facts);
            }
            tracing::info!(calls = n, "live view seeded with today's calls");
        }
        Err(e) => {
            tracing::warn!(error = %e, "live view: today's calls not read; figures start at 0")
        }
    }
    match store
        .survey_facts(crate::kpi::Range {
            since: Some(since),
            until: None,
        })
        .await
    {
        Ok(facts) => {
            let mut all = crate::kpi::survey::SurveyStats::default();
            let mut by_queue: std::collections::HashMap<String, _> = Default::default();
            for f in &facts {
                all.add_survey(f);
                if let Some(q) = &f.queue {
                    by_queue
                        .entry(q.clone())
                        .or_insert_with(crate::kpi::survey::SurveyStats::default)
                        .add_survey(f);
                }
            }
            model.seed_surveys(all, by_queue);
        }
        Err(e) => tracing::warn!(error = %e, "live view: today's surveys not read"),
    }
    model
}

impl Hub {
    async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<LiveInput>,
        mut requests: mpsc::Receiver<Request>,
    ) {
        let mut flush = tokio::time::interval(Duration::from_millis(FLUSH_MS));
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(i) => {
                        self.apply(i);
                        // Drain what else is queued before looking at anything else.
                        while let Ok(i) = inputs.try_recv() {
                            self.apply(i);
                        }
                    }
                    None => break,
                },
                Some(req) = requests.recv() => self.request(req),
                _ = flush.tick() => {
                    let now = self.clock.now();
                    ticks = ticks.wrapping_add(1);
                    if ticks % 4 == 0 {
                        self.model.tick(now);
                        self.prom.tick(&self.model, now);
                    }
                    self.flush(now);
                }
            }
        }
    }

    fn apply(&mut self, input: LiveInput) {
        self.apply_input(input);
        if self.pending_since.is_none() && self.model.is_dirty() {
            self.pending_since = Some(self.clock.now());
        }
    }

    fn apply_input(&mut self, input: LiveInput) {
        match input {
            LiveInput::Record(r) => {
                self.model.apply(&r);
                self.prom.observe(&self.model, &r);
            }
            LiveInput::Event(e) => {
                self.prom.event(&e);
                self.model.apply_event(&e);
            }
            LiveInput::SurveySent { survey_id } => self.model.survey_sent(survey_id),
            LiveInput::SurveyAnswered { survey_id, csat } => {
                self.model.survey_answered(survey_id, csat)
            }
        }
    }

    fn request(&mut self, req: Request) {
        let now = self.clock.now();
        match req {
            Request::Snapshot(reply) => {
                let _ = reply.send(self.model.snapshot(now));
            }
            Request::Subscribe(reply) => {
                let (tx, rx) = mpsc::channel(self.opts.client_queue);
                let snap = self.model.snapshot(now);
                let text = serde_json::to_string(&snap).unwrap_or_default();
                if tx.try_send(text).is_ok() && reply.send(rx).is_ok() {
                    self.clients.push(Client {
                        tx,
                        seq: 0,
                        resync: false,
                        stalled_since: None,
                        dropped: false,
                    });
                }
                metrics::gauge!(prom::CLIENTS).set(self.clients.len() as f64);
            }
        }
    }

    fn flush(&mut self, now: Millis) {
        self.clients.retain(|c| !c.tx.is_closed());
        let dirty = self.model.take_dirty();
        let changed_at = self.pending_since.take().unwrap_or(now).min(now);
        let body = if dirty != 0 && !self.clients.is_empty() {
            let mut body = String::new();
            for s in Section::ALL {
                if dirty & s.bit() != 0 {
                    let v = self.model.section(s, now);
                    body.push_str(&format!(",\"{}\":{}", s.key(), v));
                }
            }
            Some(body)
        } else {
            None
        };
        let mut snapshot: Option<Snapshot> = None;
        let mut dropped = 0;
        for c in &mut self.clients {
            if c.resync {
                // Room for the whole snapshot and some updates after it: resync.
                if c.tx.capacity() >= self.opts.client_queue.div_ceil(2) {
                    let snap = snapshot.get_or_insert_with(|| self.model.snapshot(now));
                    c.seq += 1;
                    let mut s = snap.clone();
                    s.seq = c.seq;
                    let text = serde_json::to_string(&s).unwrap_or_default();
                    if c.tx.try_send(text).is_ok() {
                        c.resync = false;
                        c.stalled_since = None;
                        metrics::counter!(prom::RESYNCS).increment(1);
                    }
                } else if c
                    .stalled_since
                    .is_some_and(|s| now.since(s) > self.opts.stall_limit_ms)
                {
                    dropped += 1;
                    c.dropped = true;
                }
                continue;
            }
            let Some(body) = &body else { continue };
            let msg = format!(
                "{{\"type\":\"update\",\"seq\":{},\"at\":{},\"changed_at\":{}{}}}",
                c.seq + 1,
                now.as_u64(),
                changed_at.as_u64(),
                body
            );
            match c.tx.try_send(msg) {
                Ok(()) => c.seq += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    c.resync = true;
                    c.stalled_since = Some(now);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        if dropped > 0 {
            metrics::counter!(prom::DROPPED).increment(dropped);
            tracing::info!(dropped, "live view: stalled WebSocket clients dropped");
        }
        let before = self.clients.len();
        self.clients.retain(|c| !c.dropped && !c.tx.is_closed());
        if before != self.clients.len() || dropped > 0 {
            metrics::gauge!(prom::CLIENTS).set(self.clients.len() as f64);
        }
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
