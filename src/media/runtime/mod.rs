//! The media plane's threads. `workers` OS threads each own a subset of the legs (a new leg goes to
//! the worker that owns the fewest, see `Routes`) and run ONE ticker on a 1 ms grid: the 20 ms
//! frame period is split into 20 phase slots, every leg lives in one slot (the emptiest when it
//! opened), and each tick serves one slot: drain that slot's sockets (non-blocking), run
//! inactivity, send the frame due. So each millisecond sends about 1/20 of the legs and no tick
//! sends them all.
//!
//! Why threads and not tokio tasks: per-socket tasks and per-leg timers cost a wake-up per
//! packet; one thread per worker with an absolute-deadline ticker keeps wake-ups at 1000/s
//! per worker whatever the number of legs, which is what keeps pacing tight at thousands
//! of legs on two cores. The engine is never waited on: events go out on an unbounded
//! channel, commands come in on one per worker.
//!
//! Bridging. Both legs of a bridge are owned by ONE worker: on `Bridge { a, b }` with the legs on
//! different workers, `b` (its `Leg` and socket) migrates to `a`'s worker; the handle re-routes `b`
//! at once and `a`'s worker holds back messages about `b` until it arrives (so the per-packet relay
//! never crosses threads or takes a lock). Legs do not move back on Unbridge; instead new legs go
//! to the least-loaded worker, counting the legs bridges moved in, so the moves do not pile legs
//! onto one thread over a day (each worker's count is the gauge
//! `ccswitch_rtp_worker_legs{worker="N"}`). Relayed packets are forwarded the moment they arrive,
//! not on the 20 ms grid: the sockets of bridged legs are registered with the worker's epoll set,
//! and between ticks the worker waits in `epoll_wait` with a timerfd for the next tick (ns
//! precision), so a packet wakes it at once (measured by benches/media_bridge). Idle and playing
//! legs are still drained on their slot tick, as before. Recording: each worker has a tap into the
//! single recorder thread (`recorder.rs`).

use super::bridge::PacketKind;
use super::leg::{Inbound, Leg, LegParams, Received, FRAME_MS, PACKET_LEN};
use super::prompts::PromptSet;
use super::recorder::{Recorder, RecorderTap, RecordingId, CHANNEL_CAPACITY};
use crate::clock::Clock;
use crate::engine::media::{LegId, MediaCommand, MediaEvent};
use crate::engine::time::Millis;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

#[derive(Clone, Debug)]
pub struct MediaConfig {
    pub bind_ip: IpAddr,
    /// Worker threads (0 is taken as 1).
    pub workers: usize,
}

/// Tuning beyond the contract's `MediaConfig`; `MediaHandle::start` uses the defaults.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// SCHED_FIFO priority for the worker threads (Linux; silently normal priority when not
    /// permitted). On a shared machine CPU-bound neighbours otherwise delay ticks by tens of
    /// milliseconds; measured with benches/media_pacing. None keeps normal scheduling.
    pub realtime_priority: Option<i32>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            realtime_priority: Some(10),
        }
    }
}

/// How legs treat what their phones send (`[rtp]` in ccswitch.toml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegPolicy {
    /// RFC 4733 events from the latched host's other ports count as digits (see `leg.rs`).
    pub accept_events_from_same_host: bool,
}

impl Default for LegPolicy {
    fn default() -> Self {
        LegPolicy {
            accept_events_from_same_host: true,
        }
    }
}

/// Totals over all workers since start (the same figures go to the metrics counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// Prompt packets and relayed packets.
    pub packets_sent: u64,
    pub packets_received: u64,
    pub late_frames: u64,
    /// Send attempts the socket refused (buffer full or network error).
    pub send_errors: u64,
    pub legs: u64,
    /// Packets forwarded from one bridged leg to the other (included in `packets_sent`).
    pub packets_relayed: u64,
    /// Recording audio chunks dropped because the writer was behind.
    pub recording_drops: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    late: AtomicU64,
    send_errors: AtomicU64,
    legs: AtomicU64,
    relayed: AtomicU64,
    /// Legs each worker holds, as the worker itself counts them.
    worker_legs: Vec<AtomicU64>,
}

/// Which worker owns each open leg, and how many legs each owns: the load new legs are placed
/// by. One lock, taken per command (never per packet); workers drop a failed Open's entry.
#[derive(Debug)]
struct Routes {
    owner: HashMap<LegId, usize>,
    /// `load[w]` = number of `owner` entries equal to `w`.
    load: Vec<usize>,
}

impl Routes {
    fn new(workers: usize) -> Routes {
        Routes {
            owner: HashMap::new(),
            load: vec![0; workers.max(1)],
        }
    }

    fn get(&self, leg: &LegId) -> Option<usize> {
        self.owner.get(leg).copied()
    }

    fn contains(&self, leg: &LegId) -> bool {
        self.owner.contains_key(leg)
    }

    /// Routes `leg` to `worker` (a new leg, or one a bridge moves).
    fn insert(&mut self, leg: LegId, worker: usize) {
        if let Some(old) = self.owner.insert(leg, worker) {
            if let Some(n) = self.load.get_mut(old) {
                *n = n.saturating_sub(1);
            }
        }
        if let Some(n) = self.load.get_mut(worker) {
            *n += 1;
        }
    }

    fn remove(&mut self, leg: &LegId) -> Option<usize> {
        let worker = self.owner.remove(leg)?;
        if let Some(n) = self.load.get_mut(worker) {
            *n = n.saturating_sub(1);
        }
        Some(worker)
    }

    /// Routes a new leg to the least-loaded worker and returns it.
    fn place(&mut self, leg: LegId) -> usize {
        let worker = least_loaded(&self.load);
        self.insert(leg, worker);
        worker
    }

    fn clear(&mut self) {
        self.owner.clear();
        self.load.iter_mut().for_each(|n| *n = 0);
    }
}

/// The worker with the fewest legs (the lowest index among equals; 0 for an empty list).
fn least_loaded(load: &[usize]) -> usize {
    load.iter()
        .enumerate()
        .min_by_key(|&(i, &n)| (n, i))
        .map_or(0, |(i, _)| i)
}

enum WorkerMsg {
    Command(MediaCommand),
    /// Bridge two legs of this worker; `b_incoming`: `b` is migrating here from another one.
    Bridge {
        a: LegId,
        b: LegId,
        b_incoming: bool,
    },
    /// Hand `leg` over to the worker behind `to` (which then gets `Adopt`).
    Migrate {
        leg: LegId,
        to: Sender<WorkerMsg>,
    },
    /// A migrating leg arrives (None: the sender did not have it, e.g. its Open failed).
    Adopt {
        leg: LegId,
        slot: Option<Box<LegSlot>>,
    },
    Stop,
}

struct Inner {
    senders: Vec<Sender<WorkerMsg>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    routes: Arc<Mutex<Routes>>,
    stopped: AtomicBool,
    events: UnboundedSender<MediaEvent>,
    counters: Arc<Counters>,
    recorder: Recorder,
}

#[derive(Clone)]
pub struct MediaHandle {
    inner: Arc<Inner>,
}

impl MediaHandle {
    pub fn start(
        cfg: MediaConfig,
        prompts: Arc<PromptSet>,
        clock: Clock,
        events: UnboundedSender<MediaEvent>,
    ) -> std::io::Result<MediaHandle> {
        Self::start_with(cfg, RuntimeOptions::default(), prompts, clock, events)
    }

    pub fn start_with(
        cfg: MediaConfig,
        opts: RuntimeOptions,
        prompts: Arc<PromptSet>,
        clock: Clock,
        events: UnboundedSender<MediaEvent>,
    ) -> std::io::Result<MediaHandle> {
        Self::start_with_policy(cfg, opts, LegPolicy::default(), prompts, clock, events)
    }

    pub fn start_with_policy(
        cfg: MediaConfig,
        opts: RuntimeOptions,
        policy: LegPolicy,
        prompts: Arc<PromptSet>,
        clock: Clock,
        events: UnboundedSender<MediaEvent>,
    ) -> std::io::Result<MediaHandle> {
        let workers = cfg.workers.max(1);
        let counters = Arc::new(Counters {
            worker_legs: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            ..Counters::default()
        });
        let routes = Arc::new(Mutex::new(Routes::new(workers)));
        let recorder = Recorder::start(clock, events.clone(), CHANNEL_CAPACITY)?;
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for index in 0..workers {
            let (tx, rx) = mpsc::channel();
            let worker = Worker::new(
                index,
                cfg.bind_ip,
                policy,
                prompts.clone(),
                clock,
                events.clone(),
                rx,
                counters.clone(),
                routes.clone(),
                recorder.tap(),
            )?;
            let thread = std::thread::Builder::new()
                .name(format!("ccswitch-media-{index}"))
                .spawn(move || {
                    if let Some(priority) = opts.realtime_priority {
                        if !set_realtime(priority) {
                            tracing::info!(index, "media worker runs without real-time priority");
                        }
                    }
                    worker.run()
                })?;
            senders.push(tx);
            threads.push(thread);
        }
        Ok(MediaHandle {
            inner: Arc::new(Inner {
                senders,
                threads: Mutex::new(threads),
                routes,
                stopped: AtomicBool::new(false),
                events,
                counters,
                recorder,
            }),
        })
    }

    /// Hands a command to the worker owning the leg. Never blocks on the workers. The routes
    /// lock is held while queueing, so a Bridge's re-routing and its messages are ordered
    /// with every other command.
    pub fn send(&self, cmd: MediaCommand) {
        let inner = &self.inner;
        let leg = command_leg(&cmd);
        if inner.stopped.load(Ordering::Acquire) {
            if let MediaCommand::Open { leg, .. } = cmd {
                let reason = "media plane is shut down".to_string();
                let _ = inner.events.send(MediaEvent::OpenFailed { leg, reason });
            }
            return;
        }
        let mut routes = inner.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let worker = match &cmd {
            MediaCommand::Open { .. } => {
                if routes.contains(&leg) {
                    drop(routes);
                    let reason = format!("leg {leg} is already open");
                    let _ = inner.events.send(MediaEvent::OpenFailed { leg, reason });
                    return;
                }
                Some(routes.place(leg))
            }
            MediaCommand::Close { .. } => routes.remove(&leg),
            &MediaCommand::Bridge { a, b } => {
                let (Some(wa), Some(wb)) = (routes.get(&a), routes.get(&b)) else {
                    tracing::debug!(a, b, "bridge of an unknown leg dropped");
                    return;
                };
                if a == b {
                    return;
                }
                let (Some(ta), Some(tb)) = (inner.senders.get(wa), inner.senders.get(wb)) else {
                    return;
                };
                let b_incoming = wa != wb;
                let _ = ta.send(WorkerMsg::Bridge { a, b, b_incoming });
                if b_incoming {
                    let _ = tb.send(WorkerMsg::Migrate {
                        leg: b,
                        to: ta.clone(),
                    });
                    routes.insert(b, wa);
                }
                return;
            }
            MediaCommand::StartRecording { a, path, .. } => {
                let w = routes.get(a);
                if w.is_none() {
                    let _ = inner.events.send(MediaEvent::RecordingFinished {
                        leg: *a,
                        path: path.clone(),
                        ok: false,
                        reason: Some(format!("leg {a} is not open")),
                    });
                }
                w
            }
            _ => routes.get(&leg),
        };
        let Some(worker) = worker else {
            tracing::debug!(leg, "media command for an unknown leg dropped");
            return;
        };
        let Some(tx) = inner.senders.get(worker) else {
            return;
        };
        if tx.send(WorkerMsg::Command(cmd)).is_err() {
            // The worker thread is gone (it only exits on shutdown or a panic).
            routes.remove(&leg);
            tracing::error!(leg, worker, "media worker is not running");
        }
    }

    /// Closes every leg, finalizes recordings and stops the threads (waits for them).
    pub fn shutdown(&self) {
        if self.inner.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        for tx in &self.inner.senders {
            let _ = tx.send(WorkerMsg::Stop);
        }
        let threads: Vec<JoinHandle<()>> = std::mem::take(
            &mut *self
                .inner
                .threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for t in threads {
            if t.join().is_err() {
                tracing::error!("media worker panicked");
            }
        }
        // After the workers: they queued the end of every recording they had.
        self.inner.recorder.shutdown();
        self.inner
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    pub fn stats(&self) -> MediaStats {
        let c = &self.inner.counters;
        MediaStats {
            packets_sent: c.sent.load(Ordering::Relaxed),
            packets_received: c.received.load(Ordering::Relaxed),
            late_frames: c.late.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            legs: c.legs.load(Ordering::Relaxed),
            packets_relayed: c.relayed.load(Ordering::Relaxed),
            recording_drops: self.inner.recorder.dropped(),
        }
    }

    /// Legs each worker thread holds now, by worker index (as the workers count them, so a
    /// leg in flight between two workers for a bridge shows on neither for a moment).
    pub fn worker_legs(&self) -> Vec<u64> {
        self.inner
            .counters
            .worker_legs
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

/// The leg a command is routed by.
fn command_leg(cmd: &MediaCommand) -> LegId {
    match cmd {
        MediaCommand::Open { leg, .. }
        | MediaCommand::Update { leg, .. }
        | MediaCommand::Play { leg, .. }
        | MediaCommand::StopPlay { leg }
        | MediaCommand::Close { leg }
        | MediaCommand::Unbridge { leg }
        | MediaCommand::Bridge { a: leg, .. }
        | MediaCommand::StartRecording { a: leg, .. }
        | MediaCommand::StopRecording { a: leg } => *leg,
    }
}

/// Slots per frame period: one per millisecond.
const SLOTS: usize = FRAME_MS as usize;
/// Datagrams read per leg per visit, so one flooding peer cannot starve the tick.
const MAX_RECV_PER_VISIT: usize = 32;
/// A tick this late counts as an overrun...
const OVERRUN: Duration = Duration::from_millis(2);
/// ...and the worker then pauses this long before catching up.
const OVERRUN_PAUSE: Duration = Duration::from_micros(200);
/// With no legs the worker only waits for commands.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// Largest relayed datagram.
const MAX_DATAGRAM: usize = 1500;

struct LegSlot {
    leg: Leg,
    socket: UdpSocket,
    late_seen: u64,
    /// Phase slot (worker-local).
    phase: usize,
    /// Slab index of the bridge peer (worker-local).
    peer: Option<usize>,
    /// The recording this leg feeds and its channel (0 left, 1 right).
    rec: Option<(RecordingId, u8)>,
    /// The socket is in the epoll set (bridged): drained on readiness, not on the tick.
    polled: bool,
}

struct Worker {
    me: usize,
    bind_ip: IpAddr,
    policy: LegPolicy,
    prompts: Arc<PromptSet>,
    clock: Clock,
    events: UnboundedSender<MediaEvent>,
    commands: Receiver<WorkerMsg>,
    counters: Arc<Counters>,
    routes: Arc<Mutex<Routes>>,
    /// `ccswitch_rtp_worker_legs{worker="me"}`, set when a leg arrives or leaves.
    legs_gauge: metrics::Gauge,
    /// Grid origin: slot s serves legs whose frames are due at epoch + s (mod 20 ms).
    epoch: Millis,
    /// Legs by slab index (the epoll token); `free` lists empty entries.
    slab: Vec<Option<LegSlot>>,
    free: Vec<usize>,
    /// Slab indices per phase slot.
    phases: Vec<Vec<usize>>,
    /// Leg id -> slab index.
    index: HashMap<LegId, usize>,
    /// Legs migrating here, with the messages about them held until they arrive.
    incoming: HashMap<LegId, Vec<WorkerMsg>>,
    poller: Poller,
    ready: Vec<u64>,
    /// Bridged legs registered with the poller.
    registered: usize,
    recorder: RecorderTap,
    recv_buf: Vec<u8>,
    send_buf: Vec<u8>,
    /// Counter deltas for this tick, flushed to metrics once per tick.
    tick_sent: u64,
    tick_received: u64,
    tick_late: u64,
    tick_send_errors: u64,
    tick_relayed: u64,
}

/// Two distinct entries of the slab, mutably.
fn pair_mut(
    slab: &mut [Option<LegSlot>],
    i: usize,
    j: usize,
) -> Option<(&mut LegSlot, &mut LegSlot)> {
    if i == j || i >= slab.len() || j >= slab.len() {
        return None;
    }
    let (x, y) = if i < j {
        let (lo, hi) = slab.split_at_mut(j);
        (&mut lo[i], &mut hi[0])
    } else {
        let (lo, hi) = slab.split_at_mut(i);
        (&mut hi[0], &mut lo[j])
    };
    Some((x.as_mut()?, y.as_mut()?))
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    fn new(
        me: usize,
        bind_ip: IpAddr,
        policy: LegPolicy,
        prompts: Arc<PromptSet>,
        clock: Clock,
        events: UnboundedSender<MediaEvent>,
        commands: Receiver<WorkerMsg>,
        counters: Arc<Counters>,
        routes: Arc<Mutex<Routes>>,
        recorder: RecorderTap,
    ) -> std::io::Result<Worker> {
        let legs_gauge = metrics::gauge!("ccswitch_rtp_worker_legs", "worker" => me.to_string());
        legs_gauge.set(0.0);
        Ok(Worker {
            me,
            bind_ip,
            policy,
            prompts,
            clock,
            events,
            commands,
            counters,
            routes,
            legs_gauge,
            epoch: clock.now(),
            slab: Vec::new(),
            free: Vec::new(),
            phases: (0..SLOTS).map(|_| Vec::new()).collect(),
            index: HashMap::new(),
            incoming: HashMap::new(),
            poller: Poller::new()?,
            ready: Vec::with_capacity(256),
            registered: 0,
            recorder,
            recv_buf: vec![0u8; 2048],
            send_buf: vec![0u8; MAX_DATAGRAM],
            tick_sent: 0,
            tick_received: 0,
            tick_late: 0,
            tick_send_errors: 0,
            tick_relayed: 0,
        })
    }

    fn run(mut self) {
        // Next tick, in milliseconds since `epoch`.
        let mut tick: u64 = 0;
        loop {
            if self.index.is_empty() && self.incoming.is_empty() {
                self.recorder.flush();
                match self.commands.recv_timeout(IDLE_WAIT) {
                    Ok(WorkerMsg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    Ok(msg) => self.dispatch(msg),
                    Err(RecvTimeoutError::Timeout) => {}
                }
                tick = self.clock.now().since(self.epoch) + 1;
                continue;
            }
            if !self.drain_commands() {
                break;
            }
            let deadline = self.clock.instant_at(self.epoch.plus(tick));
            if self.clock.instant() > deadline + OVERRUN {
                // Behind (overloaded or stalled): missed slots are served together below, so a
                // short sleep costs no pacing and keeps a real-time worker from starving the
                // rest of the process.
                std::thread::sleep(OVERRUN_PAUSE);
            }
            self.wait_until(deadline);
            let now_ms = self.clock.now().since(self.epoch);
            // Serve every slot whose tick has come. After a long stall each slot is served
            // once (legs skip their missed frames themselves), not once per missed tick.
            let first = tick.max(now_ms.saturating_sub(SLOTS as u64 - 1));
            for t in first..=now_ms.max(tick) {
                self.serve_slot((t % SLOTS as u64) as usize);
            }
            tick = now_ms.max(tick) + 1;
            self.recorder.flush();
            self.flush_counters();
        }
        // Recordings end with the worker (the recorder thread finalizes them).
        let recs: Vec<RecordingId> = self
            .slab
            .iter()
            .flatten()
            .filter_map(|s| s.rec.filter(|r| r.1 == 0).map(|r| r.0))
            .collect();
        for id in recs {
            self.recorder.end(id, Some("media plane shut down".into()));
        }
        self.recorder.flush_blocking();
        self.flush_counters();
        let legs = self.index.len() as u64;
        self.counters.legs.fetch_sub(legs, Ordering::Relaxed);
        // The legs end with the worker.
        self.index.clear();
        self.publish_load();
    }

    /// This worker's leg count to `worker_legs` and its gauge (on arrival and departure only).
    fn publish_load(&self) {
        let legs = self.index.len();
        if let Some(n) = self.counters.worker_legs.get(self.me) {
            n.store(legs as u64, Ordering::Relaxed);
        }
        self.legs_gauge.set(legs as f64);
    }

    /// Until `deadline`: relays packets of bridged legs as they arrive.
    fn wait_until(&mut self, deadline: Instant) {
        loop {
            let now = self.clock.instant();
            let Some(left) = deadline.checked_duration_since(now) else {
                return;
            };
            if left.is_zero() {
                return;
            }
            if self.registered == 0 {
                sleep_until(&self.clock, deadline);
                return;
            }
            let mut ready = std::mem::take(&mut self.ready);
            self.poller.wait(&self.clock, deadline, &mut ready);
            // One datagram per readiness report: the set is level-triggered, so a socket with
            // more queued is reported again, and the recv that would find it empty is saved.
            for &token in &ready {
                self.receive(token as usize, 1);
            }
            self.ready = ready;
        }
    }

    /// Applies queued messages; false when told to stop.
    fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(WorkerMsg::Stop) | Err(TryRecvError::Disconnected) => return false,
                Ok(msg) => self.dispatch(msg),
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    /// The first of `legs` that is migrating here (messages about it wait for it).
    fn waiting_for(&self, legs: &[LegId]) -> Option<LegId> {
        legs.iter().copied().find(|l| self.incoming.contains_key(l))
    }

    fn dispatch(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Stop => {}
            WorkerMsg::Bridge { a, b, b_incoming } => {
                if b_incoming && !self.index.contains_key(&b) {
                    self.incoming.entry(b).or_default();
                }
                let msg = WorkerMsg::Bridge {
                    a,
                    b,
                    b_incoming: false,
                };
                if let Some(l) = self.waiting_for(&[a, b]) {
                    self.incoming.entry(l).or_default().push(msg);
                    return;
                }
                if let (Some(&ia), Some(&ib)) = (self.index.get(&a), self.index.get(&b)) {
                    self.bridge(ia, ib);
                }
            }
            WorkerMsg::Migrate { leg, to } => {
                if self.incoming.contains_key(&leg) {
                    self.incoming
                        .entry(leg)
                        .or_default()
                        .push(WorkerMsg::Migrate { leg, to });
                    return;
                }
                let slot = match self.index.get(&leg).copied() {
                    Some(idx) => {
                        self.unbridge(idx, None);
                        self.remove_slot(idx).map(Box::new)
                    }
                    None => None,
                };
                if let Err(mpsc::SendError(WorkerMsg::Adopt { slot: Some(_), .. })) =
                    to.send(WorkerMsg::Adopt { leg, slot })
                {
                    // The target stopped (shutdown): the leg is gone with it.
                    self.counters.legs.fetch_sub(1, Ordering::Relaxed);
                }
            }
            WorkerMsg::Adopt { leg, slot } => {
                let held = self.incoming.remove(&leg).unwrap_or_default();
                if let Some(slot) = slot {
                    if !self.index.contains_key(&leg) {
                        self.install(*slot);
                    }
                }
                for msg in held {
                    self.dispatch(msg);
                }
            }
            WorkerMsg::Command(cmd) => {
                let legs = match &cmd {
                    MediaCommand::StartRecording { a, b, .. } => vec![*a, *b],
                    other => vec![command_leg(other)],
                };
                if let Some(l) = self.waiting_for(&legs) {
                    self.incoming
                        .entry(l)
                        .or_default()
                        .push(WorkerMsg::Command(cmd));
                    return;
                }
                self.command(cmd);
            }
        }
    }

    fn install(&mut self, mut slot: LegSlot) -> usize {
        // Keep the leg's own grid: the phase here is where its deadlines fall.
        let g = slot.leg.grid_start().as_u64() % SLOTS as u64;
        let e = self.epoch.as_u64() % SLOTS as u64;
        slot.phase = ((g + SLOTS as u64 - e) % SLOTS as u64) as usize;
        slot.peer = None;
        slot.rec = None;
        slot.polled = false;
        let phase = slot.phase;
        let id = slot.leg.id();
        let idx = match self.free.pop() {
            Some(i) => {
                self.slab[i] = Some(slot);
                i
            }
            None => {
                self.slab.push(Some(slot));
                self.slab.len() - 1
            }
        };
        self.phases[phase].push(idx);
        self.index.insert(id, idx);
        self.publish_load();
        idx
    }

    fn remove_slot(&mut self, idx: usize) -> Option<LegSlot> {
        let slot = self.slab.get_mut(idx)?.take()?;
        let list = &mut self.phases[slot.phase];
        if let Some(pos) = list.iter().position(|&i| i == idx) {
            list.swap_remove(pos);
        }
        self.index.remove(&slot.leg.id());
        self.free.push(idx);
        self.publish_load();
        Some(slot)
    }

    fn slot(&mut self, idx: usize) -> Option<&mut LegSlot> {
        self.slab.get_mut(idx)?.as_mut()
    }

    fn bridge(&mut self, ia: usize, ib: usize) {
        if ia == ib {
            return;
        }
        self.unbridge(ia, None);
        self.unbridge(ib, None);
        for (x, y) in [(ia, ib), (ib, ia)] {
            let Some(s) = self.slab.get_mut(x).and_then(Option::as_mut) else {
                return;
            };
            s.peer = Some(y);
            s.leg.bridge();
            let registered = self.poller.add(&s.socket, x as u64);
            if let Err(e) = registered {
                // Still relayed, on its slot tick (up to 20 ms late).
                tracing::error!(error = %e, "cannot poll a bridged leg's socket");
            } else {
                s.polled = true;
                self.registered += 1;
            }
            self.emit_leg_events(x);
        }
    }

    /// Ends the bridge (and recording) `idx` is in; both legs idle.
    fn unbridge(&mut self, idx: usize, reason: Option<String>) {
        let Some(peer) = self.slot(idx).and_then(|s| s.peer) else {
            return;
        };
        self.stop_recording(idx, reason);
        for x in [idx, peer] {
            if let Some(s) = self.slab.get_mut(x).and_then(Option::as_mut) {
                s.peer = None;
                s.leg.unbridge();
                if s.polled && self.poller.remove(&s.socket).is_ok() {
                    self.registered = self.registered.saturating_sub(1);
                }
                s.polled = false;
            }
        }
    }

    fn stop_recording(&mut self, idx: usize, reason: Option<String>) {
        let Some((id, _)) = self.slot(idx).and_then(|s| s.rec.take()) else {
            return;
        };
        if let Some(peer) = self.slot(idx).and_then(|s| s.peer) {
            if let Some(p) = self.slot(peer) {
                if p.rec.map(|r| r.0) == Some(id) {
                    p.rec = None;
                }
            }
        }
        self.recorder.end(id, reason);
    }

    fn command(&mut self, cmd: MediaCommand) {
        let now = self.clock.now();
        match cmd {
            MediaCommand::Open {
                leg,
                local_port,
                remote,
                codec,
                telephone_event_pt,
                inactivity_ms,
                ..
            } => {
                if self.index.contains_key(&leg) {
                    self.emit(MediaEvent::OpenFailed {
                        leg,
                        reason: format!("leg {leg} is already open"),
                    });
                    return;
                }
                let socket = match bind(SocketAddr::new(self.bind_ip, local_port)) {
                    Ok(s) => s,
                    Err(e) => {
                        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
                        if routes.get(&leg) == Some(self.me) {
                            routes.remove(&leg);
                        }
                        drop(routes);
                        let reason = format!("cannot bind {}:{local_port}: {e}", self.bind_ip);
                        self.emit(MediaEvent::OpenFailed { leg, reason });
                        return;
                    }
                };
                // The emptiest phase slot spreads sends evenly over the 20 ms period.
                let slot = (0..SLOTS)
                    .min_by_key(|&s| self.phases[s].len())
                    .unwrap_or(0);
                let params = LegParams {
                    leg,
                    remote,
                    codec,
                    telephone_event_pt,
                    inactivity_ms,
                    ssrc: rand::random(),
                    initial_seq: rand::random(),
                    initial_ts: rand::random(),
                    grid_start: self.epoch.plus(slot as u64),
                    accept_events_from_same_host: self.policy.accept_events_from_same_host,
                };
                self.install(LegSlot {
                    leg: Leg::new(now, params),
                    socket,
                    late_seen: 0,
                    phase: slot,
                    peer: None,
                    rec: None,
                    polled: false,
                });
                self.counters.legs.fetch_add(1, Ordering::Relaxed);
            }
            MediaCommand::Close { leg } => {
                if let Some(idx) = self.index.get(&leg).copied() {
                    self.unbridge(idx, None);
                    // Dropping the socket releases the port.
                    if self.remove_slot(idx).is_some() {
                        self.counters.legs.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
            MediaCommand::Bridge { a, b } => {
                if let (Some(&ia), Some(&ib)) = (self.index.get(&a), self.index.get(&b)) {
                    self.bridge(ia, ib);
                }
            }
            MediaCommand::Unbridge { leg } => {
                if let Some(idx) = self.index.get(&leg).copied() {
                    self.unbridge(idx, None);
                }
            }
            MediaCommand::StartRecording { a, b, path } => {
                let pair = match (self.index.get(&a).copied(), self.index.get(&b).copied()) {
                    (Some(ia), Some(ib)) if self.slot(ia).and_then(|s| s.peer) == Some(ib) => {
                        Some((ia, ib))
                    }
                    _ => None,
                };
                let Some((ia, ib)) = pair else {
                    self.emit(MediaEvent::RecordingFinished {
                        leg: a,
                        path,
                        ok: false,
                        reason: Some(format!("legs {a} and {b} are not bridged together")),
                    });
                    return;
                };
                self.stop_recording(ia, Some("replaced by a new recording".into()));
                self.recorder.begin(a, path, now);
                if let Some(s) = self.slot(ia) {
                    s.rec = Some((a, 0));
                }
                if let Some(s) = self.slot(ib) {
                    s.rec = Some((a, 1));
                }
            }
            MediaCommand::StopRecording { a } => {
                if let Some(idx) = self.index.get(&a).copied() {
                    self.stop_recording(idx, None);
                }
            }
            other => {
                let leg = command_leg(&other);
                let Some(idx) = self.index.get(&leg).copied() else {
                    return;
                };
                let prompts = self.prompts.clone();
                if let Some(l) = self.slot(idx) {
                    l.leg.handle_command(now, &other, &prompts);
                }
                self.emit_leg_events(idx);
            }
        }
    }

    fn emit(&self, ev: MediaEvent) {
        // The engine may have gone away during shutdown; nothing to do then.
        let _ = self.events.send(ev);
    }

    fn emit_leg_events(&mut self, idx: usize) {
        let Some(s) = self.slab.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        while let Some(ev) = s.leg.poll_event() {
            let _ = self.events.send(ev);
        }
    }

    /// Reads up to `max` datagrams from one leg's socket; bridged legs relay each packet to
    /// their peer at once.
    fn receive(&mut self, idx: usize, max: usize) {
        for _ in 0..max {
            let Some(slot) = self.slab.get_mut(idx).and_then(Option::as_mut) else {
                return;
            };
            let (n, from) = match slot.socket.recv_from(&mut self.recv_buf) {
                Ok(r) => r,
                // WouldBlock: drained. Other errors (ICMP unreachable reported on the
                // socket) carry no data: stop for this visit.
                Err(_) => break,
            };
            let now = self.clock.now();
            let bytes = self.recv_buf.get(..n).unwrap_or(&[]);
            match slot.peer {
                None => {
                    if slot.leg.handle_packet(now, bytes, from) == Received::Rtp {
                        self.tick_received += 1;
                    }
                }
                Some(peer) => {
                    let Some((x, y)) = pair_mut(&mut self.slab, idx, peer) else {
                        continue;
                    };
                    let pkt = match x.leg.receive(now, bytes, from) {
                        Inbound::Media(pkt) => pkt,
                        Inbound::SideEvent => {
                            // The digit path only: reported, never relayed (bridge.rs).
                            self.tick_received += 1;
                            self.emit_leg_events(idx);
                            continue;
                        }
                        Inbound::Dropped => continue,
                    };
                    self.tick_received += 1;
                    let src = x.leg.source();
                    if let Some((id, side)) = x.rec {
                        if src.kind(pkt.payload_type) == PacketKind::Audio {
                            self.recorder.audio(id, side, now, src.codec, pkt.payload);
                        }
                    }
                    if let Some((dest, len)) =
                        y.leg.relay_packet(now, &pkt, src, &mut self.send_buf)
                    {
                        match y.socket.send_to(&self.send_buf[..len], dest) {
                            Ok(_) => {
                                self.tick_sent += 1;
                                self.tick_relayed += 1;
                            }
                            Err(e) => {
                                self.tick_send_errors += 1;
                                if e.kind() != ErrorKind::WouldBlock {
                                    tracing::trace!(error = %e, "relay send failed");
                                }
                            }
                        }
                    }
                }
            }
            self.emit_leg_events(idx);
        }
    }

    /// One slot's turn: receive, timers, the frame due, events.
    fn serve_slot(&mut self, phase: usize) {
        let count = self.phases.get(phase).map_or(0, Vec::len);
        for k in 0..count {
            let Some(&idx) = self.phases[phase].get(k) else {
                return;
            };
            // Receive before sending so a barge-in digit stops this very frame. Polled sockets
            // were drained as packets came (a recv here would only find it empty).
            if self
                .slab
                .get(idx)
                .and_then(Option::as_ref)
                .is_some_and(|s| !s.polled)
            {
                self.receive(idx, MAX_RECV_PER_VISIT);
            }
            let now = self.clock.now();
            let Some(l) = self.slab.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            l.leg.handle_timeout(now);
            if let Some(tx) = l.leg.poll_transmit(now) {
                let sent: std::io::Result<usize> =
                    l.socket.send_to(&tx.packet[..PACKET_LEN], tx.dest);
                match sent {
                    Ok(_) => self.tick_sent += 1,
                    Err(e) => {
                        self.tick_send_errors += 1;
                        if e.kind() != ErrorKind::WouldBlock {
                            tracing::trace!(leg = l.leg.id(), error = %e, "RTP send failed");
                        }
                    }
                }
            }
            let late = l.leg.stats().late;
            self.tick_late += late - l.late_seen.min(late);
            l.late_seen = late;
            self.emit_leg_events(idx);
        }
    }

    fn flush_counters(&mut self) {
        let c = &self.counters;
        if self.tick_sent > 0 {
            metrics::counter!("ccswitch_rtp_packets_sent_total").increment(self.tick_sent);
            c.sent.fetch_add(self.tick_sent, Ordering::Relaxed);
        }
        if self.tick_received > 0 {
            metrics::counter!("ccswitch_rtp_packets_received_total").increment(self.tick_received);
            c.received.fetch_add(self.tick_received, Ordering::Relaxed);
        }
        if self.tick_relayed > 0 {
            metrics::counter!("ccswitch_rtp_packets_relayed_total").increment(self.tick_relayed);
            c.relayed.fetch_add(self.tick_relayed, Ordering::Relaxed);
        }
        if self.tick_late > 0 {
            metrics::counter!("ccswitch_rtp_late_frames_total").increment(self.tick_late);
            c.late.fetch_add(self.tick_late, Ordering::Relaxed);
        }
        if self.tick_send_errors > 0 {
            c.send_errors
                .fetch_add(self.tick_send_errors, Ordering::Relaxed);
        }
        self.tick_sent = 0;
        self.tick_received = 0;
        self.tick_late = 0;
        self.tick_send_errors = 0;
        self.tick_relayed = 0;
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Readiness of bridged legs' sockets plus a timer for the next tick: epoll + timerfd on
/// Linux (woken by the first packet, or at the tick with ns precision).
#[cfg(target_os = "linux")]
struct Poller {
    epoll: std::os::fd::OwnedFd,
    timer: std::os::fd::OwnedFd,
    armed: Option<Instant>,
    events: Vec<libc::epoll_event>,
}

#[cfg(target_os = "linux")]
impl Poller {
    const TIMER: u64 = u64::MAX;

    fn new() -> std::io::Result<Poller> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscalls; the returned fds are owned from here on.
        let (epoll, timer) = unsafe {
            let e = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            if e < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let epoll = std::os::fd::OwnedFd::from_raw_fd(e);
            let t = libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            );
            if t < 0 {
                return Err(std::io::Error::last_os_error());
            }
            (epoll, std::os::fd::OwnedFd::from_raw_fd(t))
        };
        let p = Poller {
            epoll,
            timer,
            armed: None,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        };
        use std::os::fd::AsRawFd;
        p.ctl(libc::EPOLL_CTL_ADD, p.timer.as_raw_fd(), Self::TIMER)?;
        Ok(p)
    }

    fn ctl(&self, op: libc::c_int, fd: libc::c_int, token: u64) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid epoll fd, a live event struct.
        let r = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn add(&mut self, socket: &UdpSocket, token: u64) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        self.ctl(libc::EPOLL_CTL_ADD, socket.as_raw_fd(), token)
    }

    fn remove(&mut self, socket: &UdpSocket) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        self.ctl(libc::EPOLL_CTL_DEL, socket.as_raw_fd(), 0)
    }

    /// Waits until a registered socket is readable or `deadline`; readable tokens go to `ready`.
    fn wait(&mut self, clock: &Clock, deadline: Instant, ready: &mut Vec<u64>) {
        use std::os::fd::AsRawFd;
        ready.clear();
        if self.armed != Some(deadline) {
            let left = deadline.saturating_duration_since(clock.instant());
            // A zero it_value disarms the timer: at least 1 ns.
            let left = left.max(Duration::from_nanos(1));
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: libc::timespec {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
                },
            };
            // SAFETY: valid timerfd and itimerspec; the old value is not asked for.
            unsafe {
                libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut());
            }
            self.armed = Some(deadline);
        }
        // SAFETY: the buffer holds `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                // Bounded anyway, in case the timer was lost.
                20,
            )
        };
        for ev in self.events.iter().take(n.max(0) as usize) {
            let token = ev.u64;
            if token != Self::TIMER {
                ready.push(token);
            }
        }
    }
}

/// Elsewhere: sleep to the tick in 1 ms steps and try every registered socket after each.
#[cfg(not(target_os = "linux"))]
struct Poller {
    tokens: Vec<(u64, SocketAddr)>,
}

#[cfg(not(target_os = "linux"))]
impl Poller {
    fn new() -> std::io::Result<Poller> {
        Ok(Poller { tokens: Vec::new() })
    }

    fn add(&mut self, socket: &UdpSocket, token: u64) -> std::io::Result<()> {
        self.tokens.push((token, socket.local_addr()?));
        Ok(())
    }

    fn remove(&mut self, socket: &UdpSocket) -> std::io::Result<()> {
        let addr = socket.local_addr()?;
        self.tokens.retain(|t| t.1 != addr);
        Ok(())
    }

    fn wait(&mut self, clock: &Clock, deadline: Instant, ready: &mut Vec<u64>) {
        let left = deadline.saturating_duration_since(clock.instant());
        std::thread::sleep(left.min(Duration::from_millis(1)));
        ready.clear();
        ready.extend(self.tokens.iter().map(|t| t.0));
    }
}

/// Asks for SCHED_FIFO at `priority` for the calling thread; false when not permitted.
#[cfg(target_os = "linux")]
fn set_realtime(priority: i32) -> bool {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pthread_self() is the calling thread; param is a valid sched_param.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn set_realtime(_priority: i32) -> bool {
    false
}

/// Sleeps until `deadline`. No spinning: the sleep's overshoot (timer slack, ~50 µs for
/// normal threads, none for real-time ones) is nearly the same every tick, so it cancels out
/// of inter-packet gaps, while a spin would take CPU from the engine on a small machine.
fn sleep_until(clock: &Clock, deadline: Instant) {
    // Each pass sleeps the whole remainder, so this ends after one or two passes.
    while let Some(left) = deadline.checked_duration_since(clock.instant()) {
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::{Codec, PromptKey};
    use crate::proto::rtp;

    fn prompts() -> Arc<PromptSet> {
        let mut set = PromptSet::new();
        // 25 frames of a ramp so frames differ.
        let samples: Vec<i16> = (0..4000).map(|i| (i * 8) as i16).collect();
        set.insert_samples(
            PromptKey {
                id: "p".into(),
                lang: "en".into(),
            },
            &samples,
        );
        Arc::new(set)
    }

    fn recv_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<MediaEvent>) -> MediaEvent {
        for _ in 0..300 {
            if let Ok(ev) = rx.try_recv() {
                return ev;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no media event within 3 s");
    }

    #[test]
    fn plays_to_a_peer_latches_and_reports_digits_and_bind_failures() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cfg = MediaConfig {
            bind_ip: "127.0.0.1".parse().unwrap(),
            workers: 2,
        };
        let media = MediaHandle::start(cfg, prompts(), Clock::new(), tx).unwrap();

        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        // Find a free port for the leg.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        media.send(MediaCommand::Open {
            leg: 1,
            call_id: "c1".into(),
            local_port: port,
            remote: Some(peer.local_addr().unwrap()),
            codec: Codec::Pcma,
            telephone_event_pt: Some(101),
            inactivity_ms: 0,
        });
        media.send(MediaCommand::Play {
            leg: 1,
            play_id: 9,
            prompts: vec![PromptKey {
                id: "p".into(),
                lang: "en".into(),
            }],
            looped: false,
            barge_in: false,
        });
        let mut buf = [0u8; 1500];
        let mut seqs = Vec::new();
        let mut from = None;
        // Only 5 of the 25 frames are awaited: a loaded test machine may skip late frames.
        for _ in 0..5 {
            let (n, src) = peer.recv_from(&mut buf).unwrap();
            let p = rtp::parse(&buf[..n]).unwrap();
            assert_eq!(p.payload_type, 8);
            assert_eq!(p.payload.len(), 160);
            seqs.push(p.sequence);
            from = Some(src);
        }
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1));
        }
        assert_eq!(
            recv_event(&mut rx),
            MediaEvent::PlayFinished {
                leg: 1,
                play_id: 9,
                interrupted: false
            }
        );

        // A digit from the peer comes back as an event.
        let mut head = [0u8; rtp::HEADER_LEN];
        rtp::write_header(&mut head, true, 101, 1, 4000, 77);
        let mut pkt = head.to_vec();
        pkt.extend_from_slice(&[3, 0x8a, 0, 160]);
        let leg_addr = from.unwrap();
        for _ in 0..3 {
            peer.send_to(&pkt, leg_addr).unwrap();
        }
        match recv_event(&mut rx) {
            MediaEvent::Digit {
                leg: 1, digit: '3', ..
            } => {}
            other => panic!("unexpected {other:?}"),
        }

        // The same port again cannot be bound.
        media.send(MediaCommand::Open {
            leg: 2,
            call_id: "c2".into(),
            local_port: port,
            remote: None,
            codec: Codec::Pcmu,
            telephone_event_pt: None,
            inactivity_ms: 0,
        });
        match recv_event(&mut rx) {
            MediaEvent::OpenFailed { leg: 2, reason } => assert!(reason.contains("cannot bind")),
            other => panic!("unexpected {other:?}"),
        }
        // The failed Open freed the leg id: opening it again on a free port works.
        media.send(MediaCommand::Open {
            leg: 2,
            call_id: "c2".into(),
            local_port: 0,
            remote: None,
            codec: Codec::Pcmu,
            telephone_event_pt: None,
            inactivity_ms: 0,
        });
        for _ in 0..300 {
            if media.stats().legs == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(media.stats().legs, 2);
        assert!(media.stats().packets_sent >= 5);
        assert!(media.stats().packets_received >= 1);
        media.send(MediaCommand::Close { leg: 1 });
        media.shutdown();
        // After shutdown the port is free again.
        assert!(UdpSocket::bind(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn new_legs_go_to_the_least_loaded_worker() {
        assert_eq!(least_loaded(&[3, 1, 2]), 1);
        assert_eq!(least_loaded(&[2, 2, 2]), 0, "the lowest index among equals");
        assert_eq!(least_loaded(&[5, 0, 0]), 1);
        assert_eq!(least_loaded(&[7]), 0);
        assert_eq!(least_loaded(&[]), 0);
    }

    #[test]
    fn routes_count_legs_moved_by_bridges() {
        let mut r = Routes::new(2);
        let placed: Vec<usize> = (1..=4).map(|leg| r.place(leg)).collect();
        assert_eq!(placed, vec![0, 1, 0, 1]);
        // Two bridges move 2 and 4 to worker 0: the next two legs go to worker 1.
        r.insert(2, 0);
        r.insert(4, 0);
        assert_eq!(r.load, vec![4, 0]);
        assert_eq!((r.place(5), r.place(6)), (1, 1));
        assert_eq!(r.load, vec![4, 2]);
        assert_eq!(r.remove(&1), Some(0));
        assert_eq!(r.remove(&1), None, "a second remove changes nothing");
        assert_eq!(r.load, vec![3, 2]);
        assert_eq!(r.get(&6), Some(1));
        r.clear();
        assert_eq!(r.load, vec![0, 0]);
        assert!(!r.contains(&2));
        assert_eq!(Routes::new(0).load, vec![0], "at least one worker");
    }

    #[test]
    fn inactivity_is_reported() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cfg = MediaConfig {
            bind_ip: "127.0.0.1".parse().unwrap(),
            workers: 1,
        };
        let media = MediaHandle::start(cfg, prompts(), Clock::new(), tx).unwrap();
        media.send(MediaCommand::Open {
            leg: 5,
            call_id: "c".into(),
            local_port: 0,
            remote: None,
            codec: Codec::Pcmu,
            telephone_event_pt: None,
            inactivity_ms: 100,
        });
        match recv_event(&mut rx) {
            MediaEvent::Inactive { leg: 5, .. } => {}
            other => panic!("unexpected {other:?}"),
        }
        media.shutdown();
    }
}
