//! One media worker thread: its legs in a slab spread over 20 phase slots, the 1 ms ticker
//! loop, and the packet path (receive, relay between bridged legs, send the frame due).

use super::poller::Poller;
use super::webrtc_legs::{split_token, transmit};
use super::{Counters, LegPolicy, Routes, WorkerMsg};
use crate::clock::Clock;
use crate::engine::media::{LegId, MediaEvent};
use crate::engine::time::Millis;
use crate::media::bridge::PacketKind;
use crate::media::leg::{Inbound, Leg, Received, FRAME_MS, PACKET_LEN};
use crate::media::mix::{Mixer, FRAME};
use crate::media::prompts::PromptSet;
use crate::media::recorder::{RecorderTap, RecordingId};
use crate::media::webrtc::peer::Peer;
use crate::media::webrtc::WebRtcGateway;
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Slots per frame period: one per millisecond.
pub(super) const SLOTS: usize = FRAME_MS as usize;
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

pub(super) struct LegSlot {
    pub(super) leg: Leg,
    pub(super) socket: UdpSocket,
    pub(super) late_seen: u64,
    /// Phase slot (worker-local).
    pub(super) phase: usize,
    /// Slab index of the bridge peer (worker-local).
    pub(super) peer: Option<usize>,
    /// The recording this leg feeds and its channel (0 left, 1 right).
    pub(super) rec: Option<(RecordingId, u8)>,
    /// The socket is in the epoll set (bridged): drained on readiness, not on the tick.
    pub(super) polled: bool,
    /// WebRTC peers of a browser leg (one per INVITE fork until one answers); their ICE
    /// sockets are always in the epoll set (`webrtc_legs`).
    pub(super) webrtc: Vec<Peer>,
}

pub(super) struct Worker {
    pub(super) me: usize,
    pub(super) bind_ip: IpAddr,
    pub(super) policy: LegPolicy,
    pub(super) prompts: Arc<PromptSet>,
    pub(super) clock: Clock,
    events: UnboundedSender<MediaEvent>,
    commands: Receiver<WorkerMsg>,
    pub(super) counters: Arc<Counters>,
    pub(super) routes: Arc<Mutex<Routes>>,
    /// `ccswitch_rtp_worker_legs{worker="me"}`, set when a leg arrives or leaves.
    legs_gauge: metrics::Gauge,
    /// Grid origin: slot s serves legs whose frames are due at epoch + s (mod 20 ms).
    pub(super) epoch: Millis,
    /// Legs by slab index (the epoll token); `free` lists empty entries.
    pub(super) slab: Vec<Option<LegSlot>>,
    pub(super) free: Vec<usize>,
    /// Slab indices per phase slot.
    pub(super) phases: Vec<Vec<usize>>,
    /// Leg id -> slab index.
    pub(super) index: HashMap<LegId, usize>,
    /// Legs migrating here, with the messages about them held until they arrive.
    pub(super) incoming: HashMap<LegId, Vec<WorkerMsg>>,
    pub(super) poller: Poller,
    ready: Vec<u64>,
    /// Bridged legs registered with the poller.
    pub(super) registered: usize,
    pub(super) recorder: RecorderTap,
    /// Supervisors' conferences among this worker's legs (`media::mix`).
    pub(super) mixer: Mixer,
    /// Settings and certificate for WebRTC peers, once the app attached them.
    pub(super) webrtc: Arc<OnceLock<WebRtcGateway>>,
    /// RTP packets a peer decrypted, on their way into the leg (reused).
    pub(super) webrtc_rtp: Vec<bytes::Bytes>,
    pub(super) recv_buf: Vec<u8>,
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
    pub(super) fn new(
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
        webrtc: Arc<OnceLock<WebRtcGateway>>,
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
            mixer: Mixer::default(),
            webrtc,
            webrtc_rtp: Vec::new(),
            recv_buf: vec![0u8; 2048],
            send_buf: vec![0u8; MAX_DATAGRAM],
            tick_sent: 0,
            tick_received: 0,
            tick_late: 0,
            tick_send_errors: 0,
            tick_relayed: 0,
        })
    }

    pub(super) fn run(mut self) {
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
        for idx in 0..self.slab.len() {
            self.drop_peers(idx, None);
        }
        let legs = self.index.len() as u64;
        self.counters.legs.fetch_sub(legs, Ordering::Relaxed);
        // The legs end with the worker.
        self.index.clear();
        self.publish_load();
    }

    /// This worker's leg count to `worker_legs` and its gauge (on arrival and departure only).
    pub(super) fn publish_load(&self) {
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
                match split_token(token) {
                    Some((idx, fork)) => self.receive_webrtc(idx, fork),
                    None => self.receive(token as usize, 1),
                }
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
}

impl Worker {
    pub(super) fn emit(&self, ev: MediaEvent) {
        // The engine may have gone away during shutdown; nothing to do then.
        let _ = self.events.send(ev);
    }

    pub(super) fn emit_leg_events(&mut self, idx: usize) {
        let Some(s) = self.slab.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        while let Some(ev) = s.leg.poll_event() {
            let _ = self.events.send(ev);
        }
    }

    /// Reads up to `max` datagrams from one leg's socket.
    fn receive(&mut self, idx: usize, max: usize) {
        let mut buf = std::mem::take(&mut self.recv_buf);
        for _ in 0..max {
            let Some(slot) = self.slab.get_mut(idx).and_then(Option::as_mut) else {
                break;
            };
            let (n, from) = match slot.socket.recv_from(&mut buf) {
                Ok(r) => r,
                // WouldBlock: drained. Other errors (ICMP unreachable reported on the
                // socket) carry no data: stop for this visit.
                Err(_) => break,
            };
            self.on_datagram(idx, buf.get(..n).unwrap_or(&[]), from);
        }
        self.recv_buf = buf;
    }

    /// One datagram for the leg at `idx` (from its socket, or RTP a WebRTC peer decrypted,
    /// `from` being the peer's address); bridged legs relay it to their peer at once.
    pub(super) fn on_datagram(&mut self, idx: usize, bytes: &[u8], from: SocketAddr) {
        // In a supervisor's conference the audio goes to the mix; a bridge peer that hears
        // this leg only (`mix::sole_source`) still gets it relayed.
        let (mixed, relayed) = self.mix_routing(idx);
        let Some(slot) = self.slab.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let now = self.clock.now();
        match slot.peer {
            _ if mixed && !relayed => {
                // Heard only through the mix (sent on the listeners' ticks), never
                // relayed; digits and recording as usual.
                if let Inbound::Media(pkt) = slot.leg.receive(now, bytes, from) {
                    let src = slot.leg.source();
                    if src.kind(pkt.payload_type) == PacketKind::Audio {
                        if let Some((id, side)) = slot.rec {
                            self.recorder.audio(id, side, now, src.codec, pkt.payload);
                        }
                        self.mixer.push(slot.leg.id(), src.codec, pkt.payload);
                    }
                }
                self.tick_received += 1;
            }
            None => {
                if slot.leg.handle_packet(now, bytes, from) == Received::Rtp {
                    self.tick_received += 1;
                }
            }
            Some(peer) => {
                let Some((x, y)) = pair_mut(&mut self.slab, idx, peer) else {
                    return;
                };
                let pkt = match x.leg.receive(now, bytes, from) {
                    Inbound::Media(pkt) => pkt,
                    Inbound::SideEvent => {
                        // The digit path only: reported, never relayed (bridge.rs).
                        self.tick_received += 1;
                        self.emit_leg_events(idx);
                        return;
                    }
                    Inbound::Dropped => return,
                };
                self.tick_received += 1;
                let src = x.leg.source();
                if src.kind(pkt.payload_type) == PacketKind::Audio {
                    if let Some((id, side)) = x.rec {
                        self.recorder.audio(id, side, now, src.codec, pkt.payload);
                    }
                    if mixed {
                        self.mixer.push(x.leg.id(), src.codec, pkt.payload);
                    }
                }
                if let Some((dest, len)) = y.leg.relay_packet(now, &pkt, src, &mut self.send_buf) {
                    let at = self.clock.instant();
                    match transmit(y, at, &self.send_buf[..len], dest) {
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

    /// Whether the leg at `idx` is in a supervisor's conference, and whether its audio is
    /// also relayed to its bridge peer (the peer hears it alone).
    fn mix_routing(&self, idx: usize) -> (bool, bool) {
        if self.mixer.is_empty() {
            return (false, false);
        }
        let slot_of = |i: usize| self.slab.get(i).and_then(Option::as_ref);
        let Some(slot) = slot_of(idx) else {
            return (false, false);
        };
        let id = slot.leg.id();
        if !self.mixer.contains(id) {
            return (false, false);
        }
        let relayed = slot
            .peer
            .and_then(slot_of)
            .is_some_and(|p| self.mixer.relays(id, p.leg.id()));
        (true, relayed)
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
            self.tick_webrtc(idx);
            let now = self.clock.now();
            let at = self.clock.instant();
            let Some(l) = self.slab.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            l.leg.handle_timeout(now);
            if let Some(tx) = l.leg.poll_transmit(now) {
                let sent = transmit(l, at, &tx.packet[..PACKET_LEN], tx.dest);
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
            if !self.mixer.is_empty() {
                let mut frame = [0i16; FRAME];
                if self.mixer.pull(l.leg.id(), &mut frame) {
                    if let Some((dest, len)) = l.leg.mixed_packet(now, &frame, &mut self.send_buf) {
                        match transmit(l, at, &self.send_buf[..len], dest) {
                            Ok(_) => self.tick_sent += 1,
                            Err(_) => self.tick_send_errors += 1,
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
