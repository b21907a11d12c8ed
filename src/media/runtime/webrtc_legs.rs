//! A worker's side of WebRTC legs: each peer (`media::webrtc::peer`) lives in the `LegSlot`
//! of the leg it serves (so it moves with the leg when a bridge migrates it), its ICE socket
//! sits in the worker's epoll set from the start, and its decrypted RTP enters the leg's
//! packet path as if the leg's socket had received it from the peer's address. What the leg
//! sends to that address is encrypted by the peer instead of leaving on the leg's socket.

use super::worker::{LegSlot, Worker};
use crate::engine::media::{LegId, MediaEvent};
use crate::media::webrtc::peer::{Peer, PeerEvent, Role};
use std::net::SocketAddr;
use std::time::Instant;

/// Poller tokens of ICE sockets carry this bit, the leg's slab index (<< 16) and the fork.
const PEER_TOKEN: u64 = 1 << 62;
/// Forks a token can tell apart (an INVITE forks to a handful of contacts).
const MAX_FORK: usize = 0xffff;

pub(super) fn peer_token(idx: usize, fork: usize) -> u64 {
    PEER_TOKEN | ((idx as u64) << 16) | (fork & MAX_FORK) as u64
}

/// (slab index, fork) of an ICE socket's token; None for a leg socket's.
pub(super) fn split_token(token: u64) -> Option<(usize, usize)> {
    (token & PEER_TOKEN != 0).then(|| {
        let t = token & !PEER_TOKEN;
        ((t >> 16) as usize, (t & MAX_FORK as u64) as usize)
    })
}

/// Sends one packet of the leg to `dest`: through its peer when `dest` is a peer's address,
/// else on the leg's socket.
pub(super) fn transmit(
    slot: &mut LegSlot,
    now: Instant,
    bytes: &[u8],
    dest: SocketAddr,
) -> std::io::Result<usize> {
    match slot.webrtc.iter_mut().find(|p| p.local() == dest) {
        Some(peer) => peer.send_rtp(now, bytes),
        None => slot.socket.send_to(bytes, dest),
    }
}

impl Worker {
    /// `MediaCommand::WebRtcOffer`: a peer offering to a browser, for `leg`'s INVITE `fork`.
    pub(super) fn webrtc_offer(&mut self, leg: LegId, fork: usize) {
        self.new_peer(leg, fork, Role::Offer);
    }

    /// `MediaCommand::WebRtcAccept`: a peer answering a browser caller's `offer`.
    pub(super) fn webrtc_accept(&mut self, leg: LegId, offer: String) {
        self.new_peer(leg, 0, Role::Accept(offer));
    }

    /// `MediaCommand::WebRtcAnswer`: the browser of `fork` answered; the leg's other peers end.
    pub(super) fn webrtc_answer(&mut self, leg: LegId, fork: usize, sdp: String) {
        let now = self.clock.instant();
        let Some(idx) = self.index.get(&leg).copied() else {
            let reason = format!("no WebRTC peer for leg {leg}");
            self.emit(MediaEvent::WebRtcFailed { leg, fork, reason });
            return;
        };
        self.drop_peers(idx, Some(fork));
        let result = match self.slot(idx).and_then(|s| s.webrtc.first_mut()) {
            Some(peer) => peer.set_answer(now, sdp),
            None => Err(format!("no WebRTC peer for leg {leg} fork {fork}")),
        };
        if let Err(reason) = result {
            self.drop_peers(idx, None);
            self.emit(MediaEvent::WebRtcFailed { leg, fork, reason });
            return;
        }
        self.peer_events(idx);
    }

    fn new_peer(&mut self, leg: LegId, fork: usize, role: Role) {
        let now = self.clock.instant();
        let made = match (self.webrtc.get(), self.index.get(&leg).copied()) {
            (None, _) => Err("WebRTC media is not running".to_string()),
            (_, None) => Err(format!("leg {leg} is not open")),
            (_, Some(_)) if fork > MAX_FORK => Err(format!("fork {fork} out of range")),
            (Some(gw), Some(idx)) => Peer::new(gw, fork, role, now).map(|p| (p, idx)),
        };
        let (peer, idx) = match made {
            Ok(made) => made,
            Err(reason) => {
                tracing::info!(leg, fork, reason = %reason, "WebRTC peer not created");
                self.emit(MediaEvent::WebRtcFailed { leg, fork, reason });
                return;
            }
        };
        if let Err(e) = self.poller.add(peer.socket(), peer_token(idx, fork)) {
            let reason = format!("cannot poll the ICE socket: {e}");
            self.emit(MediaEvent::WebRtcFailed { leg, fork, reason });
            return;
        }
        self.registered += 1;
        if let Some(gw) = self.webrtc.get() {
            gw.peer_opened();
        }
        // A second offer for the same fork replaces the first.
        self.drop_fork(idx, fork);
        if let Some(s) = self.slot(idx) {
            s.webrtc.push(peer);
        }
        self.peer_events(idx);
    }

    /// Closes and removes the peers of the leg at `idx` (all, or all but fork `keep`).
    pub(super) fn drop_peers(&mut self, idx: usize, keep: Option<usize>) {
        self.remove_peers(idx, |p| Some(p.fork) != keep);
    }

    fn drop_fork(&mut self, idx: usize, fork: usize) {
        self.remove_peers(idx, |p| p.fork == fork);
    }

    /// Closes and removes the leg's peers that `gone` picks.
    fn remove_peers(&mut self, idx: usize, gone: impl Fn(&Peer) -> bool) {
        let Some(s) = self.slab.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let (gone, kept): (Vec<Peer>, Vec<Peer>) = std::mem::take(&mut s.webrtc)
            .into_iter()
            .partition(|p| gone(p));
        s.webrtc = kept;
        for mut p in gone {
            self.forget_peer(&mut p);
        }
    }

    /// A peer leaving the worker for good: out of the epoll set, session closed.
    fn forget_peer(&mut self, p: &mut Peer) {
        if self.poller.remove(p.socket()).is_ok() {
            self.registered = self.registered.saturating_sub(1);
        }
        if !p.is_ended() {
            p.close();
        }
        if let Some(gw) = self.webrtc.get() {
            gw.peer_closed();
        }
    }

    /// The leg's ICE sockets into (`add`) or out of this worker's epoll set, as the leg
    /// arrives or leaves (its peers move with it).
    pub(super) fn poll_peers(&mut self, idx: usize, add: bool) {
        let Some(s) = self.slab.get(idx).and_then(Option::as_ref) else {
            return;
        };
        for p in &s.webrtc {
            let ok = if add {
                self.poller.add(p.socket(), peer_token(idx, p.fork)).is_ok()
            } else {
                self.poller.remove(p.socket()).is_ok()
            };
            if ok && add {
                self.registered += 1;
            } else if ok {
                self.registered = self.registered.saturating_sub(1);
            }
        }
    }

    /// Reads fork `fork`'s ICE socket of the leg at `idx`; its RTP goes down the leg's path.
    pub(super) fn receive_webrtc(&mut self, idx: usize, fork: usize) {
        let now = self.clock.instant();
        let mut rtp = std::mem::take(&mut self.webrtc_rtp);
        let mut buf = std::mem::take(&mut self.recv_buf);
        let from = match self
            .slab
            .get_mut(idx)
            .and_then(Option::as_mut)
            .and_then(|s| s.webrtc.iter_mut().find(|p| p.fork == fork))
        {
            Some(peer) => {
                peer.read(now, &mut buf, &mut rtp);
                Some(peer.local())
            }
            None => None,
        };
        self.recv_buf = buf;
        if let Some(from) = from {
            for pkt in rtp.drain(..) {
                self.on_datagram(idx, &pkt, from);
            }
        }
        rtp.clear();
        self.webrtc_rtp = rtp;
        self.peer_events(idx);
    }

    /// The timers of the leg's peers (on the leg's slot tick).
    pub(super) fn tick_webrtc(&mut self, idx: usize) {
        let now = self.clock.instant();
        let Some(s) = self.slab.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if s.webrtc.is_empty() {
            return;
        }
        for p in &mut s.webrtc {
            p.tick(now);
        }
        self.peer_events(idx);
    }

    /// Reports what the leg's peers did; ended peers are removed.
    fn peer_events(&mut self, idx: usize) {
        let Some(s) = self.slab.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let leg = s.leg.id();
        let mut out = Vec::new();
        for p in &mut s.webrtc {
            for ev in p.take_events() {
                out.push((p.fork, p.local(), p.is_accepting(), ev));
            }
        }
        let any_ended = s.webrtc.iter().any(Peer::is_ended);
        for (fork, relay, accepting, ev) in out {
            match ev {
                PeerEvent::Sdp(sdp) if accepting => {
                    self.emit(MediaEvent::WebRtcAccepted { leg, sdp, relay })
                }
                PeerEvent::Sdp(sdp) => self.emit(MediaEvent::WebRtcOffer {
                    leg,
                    fork,
                    sdp,
                    relay,
                }),
                PeerEvent::Connected => tracing::debug!(leg, fork, "WebRTC peer connected"),
                PeerEvent::Failed(reason) => {
                    tracing::info!(leg, fork, reason = %reason, "WebRTC peer ended");
                    self.emit(MediaEvent::WebRtcFailed { leg, fork, reason });
                }
            }
        }
        if any_ended {
            let Some(s) = self.slab.get_mut(idx).and_then(Option::as_mut) else {
                return;
            };
            let (gone, kept): (Vec<Peer>, Vec<Peer>) = std::mem::take(&mut s.webrtc)
                .into_iter()
                .partition(Peer::is_ended);
            s.webrtc = kept;
            for mut p in gone {
                self.forget_peer(&mut p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_tokens_round_trip_and_leg_tokens_are_not_peers() {
        assert_eq!(split_token(peer_token(7, 3)), Some((7, 3)));
        assert_eq!(split_token(peer_token(123_456, 0)), Some((123_456, 0)));
        assert_eq!(split_token(7), None);
    }
}
