//! A worker's side of the engine's commands: opening and closing legs, bridges (and the
//! migration of a leg between workers that a bridge needs), recordings.

use super::worker::{LegSlot, Worker, SLOTS};
use super::{command_leg, WorkerMsg};
use crate::engine::media::{LegId, MediaCommand, MediaEvent};
use crate::media::leg::{Leg, LegParams};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::PoisonError;

impl Worker {
    /// The first of `legs` that is migrating here (messages about it wait for it).
    fn waiting_for(&self, legs: &[LegId]) -> Option<LegId> {
        legs.iter().copied().find(|l| self.incoming.contains_key(l))
    }

    pub(super) fn dispatch(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Stop => {}
            WorkerMsg::Expect { leg } => {
                if !self.index.contains_key(&leg) {
                    self.incoming.entry(leg).or_default();
                }
            }
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
                    MediaCommand::Monitor {
                        caller,
                        agent,
                        supervisor,
                        ..
                    } => vec![*caller, *agent, *supervisor],
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
        self.poll_peers(idx, true);
        self.publish_load();
        idx
    }

    fn remove_slot(&mut self, idx: usize) -> Option<LegSlot> {
        self.end_mix(idx);
        self.poll_peers(idx, false);
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

    pub(super) fn slot(&mut self, idx: usize) -> Option<&mut LegSlot> {
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
    pub(super) fn unbridge(&mut self, idx: usize, reason: Option<String>) {
        self.end_mix(idx);
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
                    webrtc: Vec::new(),
                });
                self.counters.legs.fetch_add(1, Ordering::Relaxed);
            }
            MediaCommand::Close { leg } => {
                if let Some(idx) = self.index.get(&leg).copied() {
                    self.unbridge(idx, None);
                    self.drop_peers(idx, None);
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
            MediaCommand::Monitor {
                caller,
                agent,
                supervisor,
                mode,
            } => self.monitor([caller, agent, supervisor], mode),
            MediaCommand::WebRtcOffer { leg, fork, .. } => self.webrtc_offer(leg, fork),
            MediaCommand::WebRtcAccept { leg, offer, .. } => self.webrtc_accept(leg, offer),
            MediaCommand::WebRtcAnswer { leg, fork, sdp } => self.webrtc_answer(leg, fork, sdp),
            MediaCommand::Unmonitor { supervisor } => {
                if let Some(idx) = self.index.get(&supervisor).copied() {
                    self.end_mix(idx);
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
}

fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}
