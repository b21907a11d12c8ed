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

mod commands;
mod mixing;
mod poller;
mod routes;
mod webrtc_legs;
mod worker;

use super::prompts::PromptSet;
use super::recorder::{Recorder, CHANNEL_CAPACITY};
use crate::clock::Clock;
use crate::engine::media::{LegId, MediaCommand, MediaEvent};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use tokio::sync::mpsc::UnboundedSender;

use super::webrtc::WebRtcGateway;
use routes::Routes;
use worker::{LegSlot, Worker};

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
    /// `leg` is migrating here (a Monitor brings the supervisor to the caller's worker):
    /// messages about it wait for its `Adopt`.
    Expect {
        leg: LegId,
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
    /// What the workers' WebRTC peers share (`attach_webrtc`); none until attached.
    webrtc: Arc<OnceLock<WebRtcGateway>>,
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
        let webrtc = Arc::new(OnceLock::new());
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
                webrtc.clone(),
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
                webrtc,
            }),
        })
    }

    /// Hands a command to the worker owning the leg. Never blocks on the workers. The routes
    /// lock is held while queueing, so a Bridge's re-routing and its messages are ordered
    /// with every other command.
    pub fn send(&self, cmd: MediaCommand) {
        let inner = &self.inner;
        let leg = command_leg(&cmd);
        // A WebRTC peer is made by the worker owning its leg; without a gateway or a leg the
        // engine hears why at once.
        let webrtc_fork = match &cmd {
            MediaCommand::WebRtcOffer { fork, .. } | MediaCommand::WebRtcAnswer { fork, .. } => {
                Some(*fork)
            }
            MediaCommand::WebRtcAccept { .. } => Some(0),
            _ => None,
        };
        if let Some(fork) = webrtc_fork {
            let reason = if inner.webrtc.get().is_none() || inner.stopped.load(Ordering::Acquire) {
                Some("WebRTC media is not running".to_string())
            } else if !inner
                .routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&leg)
            {
                Some(format!("leg {leg} is not open"))
            } else {
                None
            };
            if let Some(reason) = reason {
                let _ = inner
                    .events
                    .send(MediaEvent::WebRtcFailed { leg, fork, reason });
                return;
            }
        }
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
            &MediaCommand::Monitor {
                caller,
                agent,
                supervisor,
                ..
            } => {
                let Some(wc) = routes.get(&caller) else {
                    tracing::debug!(caller, "monitor of an unknown leg dropped");
                    return;
                };
                let Some(tc) = inner.senders.get(wc) else {
                    return;
                };
                for leg in [agent, supervisor] {
                    let Some(w) = routes.get(&leg) else {
                        tracing::debug!(leg, "monitor with an unknown leg dropped");
                        return;
                    };
                    if w == wc {
                        continue;
                    }
                    let Some(tw) = inner.senders.get(w) else {
                        return;
                    };
                    let _ = tc.send(WorkerMsg::Expect { leg });
                    let _ = tw.send(WorkerMsg::Migrate {
                        leg,
                        to: tc.clone(),
                    });
                    routes.insert(leg, wc);
                }
                Some(wc)
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

    /// Serves `MediaCommand::WebRtcOffer`/`WebRtcAnswer` with `gw` from now on (once; a
    /// second gateway is refused and returned).
    pub fn attach_webrtc(&self, gw: WebRtcGateway) -> Result<(), WebRtcGateway> {
        self.inner.webrtc.set(gw)
    }

    /// The WebRTC gateway, if attached.
    pub fn webrtc(&self) -> Option<&WebRtcGateway> {
        self.inner.webrtc.get()
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
        | MediaCommand::StopRecording { a: leg }
        | MediaCommand::WebRtcOffer { leg, .. }
        | MediaCommand::WebRtcAnswer { leg, .. }
        | MediaCommand::WebRtcAccept { leg, .. }
        | MediaCommand::Monitor { caller: leg, .. }
        | MediaCommand::Unmonitor { supervisor: leg } => *leg,
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

#[cfg(test)]
mod tests;
