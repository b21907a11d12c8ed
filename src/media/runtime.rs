//! The media plane's threads. `workers` OS threads each own a subset of the legs (assigned
//! round-robin on Open) and run ONE ticker on a 1 ms grid: the 20 ms frame period is split into
//! 20 phase slots, every leg lives in one slot (the emptiest when it opened), and each tick
//! serves one slot: drain that slot's sockets (non-blocking), run inactivity, send the frame
//! due. So each millisecond sends about 1/20 of the legs and no tick sends them all.
//!
//! Why threads and not tokio tasks: per-socket tasks and per-leg timers cost a wake-up per
//! packet; one thread per worker with an absolute-deadline ticker keeps wake-ups at 1000/s
//! per worker whatever the number of legs, which is what keeps pacing tight at thousands
//! of legs on two cores. The engine is never waited on: events go out on an unbounded
//! channel, commands come in on one per worker.

use super::leg::{Leg, LegParams, FRAME_MS, PACKET_LEN};
use super::prompts::PromptSet;
use crate::clock::Clock;
use crate::engine::media::{LegId, MediaCommand, MediaEvent};
use crate::engine::time::Millis;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// Totals over all workers since start (the same figures go to the metrics counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaStats {
    pub packets_sent: u64,
    pub packets_received: u64,
    pub late_frames: u64,
    /// Send attempts the socket refused (buffer full or network error).
    pub send_errors: u64,
    pub legs: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    late: AtomicU64,
    send_errors: AtomicU64,
    legs: AtomicU64,
}

enum WorkerMsg {
    Command(MediaCommand),
    Stop,
}

struct Inner {
    senders: Vec<Sender<WorkerMsg>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Which worker owns each open leg (workers drop the entry when an Open fails).
    routes: Arc<Mutex<HashMap<LegId, usize>>>,
    next_worker: AtomicUsize,
    stopped: AtomicBool,
    events: UnboundedSender<MediaEvent>,
    counters: Arc<Counters>,
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
        let counters = Arc::new(Counters::default());
        let routes = Arc::new(Mutex::new(HashMap::new()));
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for index in 0..cfg.workers.max(1) {
            let (tx, rx) = mpsc::channel();
            let worker = Worker::new(
                cfg.bind_ip,
                prompts.clone(),
                clock,
                events.clone(),
                rx,
                counters.clone(),
                routes.clone(),
            );
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
                next_worker: AtomicUsize::new(0),
                stopped: AtomicBool::new(false),
                events,
                counters,
            }),
        })
    }

    /// Hands a command to the worker owning the leg. Never blocks on the workers.
    pub fn send(&self, cmd: MediaCommand) {
        let inner = &self.inner;
        let Some(leg) = command_leg(&cmd) else {
            // Bridging lands with the `bridge` branch; until then these are dropped.
            tracing::warn!(
                ?cmd,
                "media bridging/recording not supported by this media plane"
            );
            return;
        };
        if inner.stopped.load(Ordering::Acquire) {
            if let MediaCommand::Open { leg, .. } = cmd {
                let reason = "media plane is shut down".to_string();
                let _ = inner.events.send(MediaEvent::OpenFailed { leg, reason });
            }
            return;
        }
        let worker = {
            let mut routes = inner.routes.lock().unwrap_or_else(PoisonError::into_inner);
            match &cmd {
                MediaCommand::Open { .. } => {
                    if routes.contains_key(&leg) {
                        drop(routes);
                        let reason = format!("leg {leg} is already open");
                        let _ = inner.events.send(MediaEvent::OpenFailed { leg, reason });
                        return;
                    }
                    let w = inner.next_worker.fetch_add(1, Ordering::Relaxed) % inner.senders.len();
                    routes.insert(leg, w);
                    Some(w)
                }
                MediaCommand::Close { .. } => routes.remove(&leg),
                _ => routes.get(&leg).copied(),
            }
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
            inner
                .routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&leg);
            tracing::error!(leg, worker, "media worker is not running");
        }
    }

    /// Closes every leg and stops the workers (waits for them, a few milliseconds).
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
        }
    }
}

fn command_leg(cmd: &MediaCommand) -> Option<LegId> {
    match cmd {
        MediaCommand::Open { leg, .. }
        | MediaCommand::Update { leg, .. }
        | MediaCommand::Play { leg, .. }
        | MediaCommand::StopPlay { leg }
        | MediaCommand::Close { leg } => Some(*leg),
        MediaCommand::Bridge { .. }
        | MediaCommand::Unbridge { .. }
        | MediaCommand::StartRecording { .. }
        | MediaCommand::StopRecording { .. } => None,
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

struct LegSlot {
    leg: Leg,
    socket: UdpSocket,
    late_seen: u64,
}

struct Worker {
    bind_ip: IpAddr,
    prompts: Arc<PromptSet>,
    clock: Clock,
    events: UnboundedSender<MediaEvent>,
    commands: Receiver<WorkerMsg>,
    counters: Arc<Counters>,
    routes: Arc<Mutex<HashMap<LegId, usize>>>,
    /// Grid origin: slot s serves legs whose frames are due at epoch + s (mod 20 ms).
    epoch: Millis,
    slots: Vec<Vec<LegSlot>>,
    /// Leg id -> slot index.
    index: HashMap<LegId, usize>,
    recv_buf: Vec<u8>,
    /// Counter deltas for this tick, flushed to metrics once per tick.
    tick_sent: u64,
    tick_received: u64,
    tick_late: u64,
    tick_send_errors: u64,
}

impl Worker {
    fn new(
        bind_ip: IpAddr,
        prompts: Arc<PromptSet>,
        clock: Clock,
        events: UnboundedSender<MediaEvent>,
        commands: Receiver<WorkerMsg>,
        counters: Arc<Counters>,
        routes: Arc<Mutex<HashMap<LegId, usize>>>,
    ) -> Worker {
        Worker {
            bind_ip,
            prompts,
            clock,
            events,
            commands,
            counters,
            routes,
            epoch: clock.now(),
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            index: HashMap::new(),
            recv_buf: vec![0u8; 2048],
            tick_sent: 0,
            tick_received: 0,
            tick_late: 0,
            tick_send_errors: 0,
        }
    }

    fn run(mut self) {
        // Next tick, in milliseconds since `epoch`.
        let mut tick: u64 = 0;
        loop {
            if self.index.is_empty() {
                match self.commands.recv_timeout(IDLE_WAIT) {
                    Ok(WorkerMsg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                    Ok(WorkerMsg::Command(cmd)) => self.command(cmd),
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
            sleep_until(&self.clock, deadline);
            let now_ms = self.clock.now().since(self.epoch);
            // Serve every slot whose tick has come. After a long stall each slot is served
            // once (legs skip their missed frames themselves), not once per missed tick.
            let first = tick.max(now_ms.saturating_sub(SLOTS as u64 - 1));
            for t in first..=now_ms.max(tick) {
                self.serve_slot((t % SLOTS as u64) as usize);
            }
            tick = now_ms.max(tick) + 1;
            self.flush_counters();
        }
        let legs = self.index.len() as u64;
        self.counters.legs.fetch_sub(legs, Ordering::Relaxed);
    }

    /// Applies queued commands; false when told to stop.
    fn drain_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(WorkerMsg::Command(cmd)) => self.command(cmd),
                Ok(WorkerMsg::Stop) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
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
                        self.routes
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&leg);
                        let reason = format!("cannot bind {}:{local_port}: {e}", self.bind_ip);
                        self.emit(MediaEvent::OpenFailed { leg, reason });
                        return;
                    }
                };
                // The emptiest phase slot spreads sends evenly over the 20 ms period.
                let slot = (0..SLOTS).min_by_key(|&s| self.slots[s].len()).unwrap_or(0);
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
                };
                self.slots[slot].push(LegSlot {
                    leg: Leg::new(now, params),
                    socket,
                    late_seen: 0,
                });
                self.index.insert(leg, slot);
                self.counters.legs.fetch_add(1, Ordering::Relaxed);
            }
            MediaCommand::Close { leg } => {
                if let Some(slot) = self.index.remove(&leg) {
                    let legs = &mut self.slots[slot];
                    if let Some(pos) = legs.iter().position(|l| l.leg.id() == leg) {
                        // Dropping the socket releases the port.
                        legs.swap_remove(pos);
                        self.counters.legs.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
            other => {
                let Some(leg) = command_leg(&other) else {
                    return;
                };
                let Some(&slot) = self.index.get(&leg) else {
                    return;
                };
                let prompts = self.prompts.clone();
                if let Some(l) = self.slots[slot].iter_mut().find(|l| l.leg.id() == leg) {
                    l.leg.handle_command(now, &other, &prompts);
                    while let Some(ev) = l.leg.poll_event() {
                        let _ = self.events.send(ev);
                    }
                }
            }
        }
    }

    fn emit(&self, ev: MediaEvent) {
        // The engine may have gone away during shutdown; nothing to do then.
        let _ = self.events.send(ev);
    }

    /// One slot's turn: receive, timers, the frame due, events.
    fn serve_slot(&mut self, slot: usize) {
        let Some(legs) = self.slots.get_mut(slot) else {
            return;
        };
        for l in legs.iter_mut() {
            // Receive before sending so a barge-in digit stops this very frame.
            for _ in 0..MAX_RECV_PER_VISIT {
                match l.socket.recv_from(&mut self.recv_buf) {
                    Ok((n, from)) => {
                        let now = self.clock.now();
                        let bytes = self.recv_buf.get(..n).unwrap_or(&[]);
                        if l.leg.handle_packet(now, bytes, from) == super::leg::Received::Rtp {
                            self.tick_received += 1;
                        }
                    }
                    // WouldBlock: drained. Other errors (ICMP unreachable reported on the
                    // socket) carry no data: stop for this visit.
                    Err(_) => break,
                }
            }
            let now = self.clock.now();
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
            while let Some(ev) = l.leg.poll_event() {
                let _ = self.events.send(ev);
            }
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
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
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
