//! One datagram from the leg's phone: symmetric-RTP latching, the second-port digit path
//! (module docs of `leg`), counters, inactivity and RFC 4733 digits.

use super::{Inbound, Leg, Received};
use crate::engine::media::MediaEvent;
use crate::engine::time::Millis;
use crate::media::bridge;
use crate::proto::dtmf;
use std::net::SocketAddr;

impl Leg {
    /// Feeds one received datagram from `from` (a leg that is not bridged).
    pub fn handle_packet(&mut self, now: Millis, bytes: &[u8], from: SocketAddr) -> Received {
        if self.receive(now, bytes, from) == Inbound::Dropped {
            return Received::Dropped;
        }
        if self.digit_seen && self.playback.as_ref().is_some_and(|p| p.barge_in) {
            self.finish_play(true);
        }
        Received::Rtp
    }

    /// Takes one datagram from this leg's phone: latching, counters, inactivity, digits (as
    /// `Digit` events, never barge-in). `Inbound::Media` carries the packet for the bridge to
    /// relay. No allocation.
    pub fn receive<'b>(&mut self, now: Millis, bytes: &'b [u8], from: SocketAddr) -> Inbound<'b> {
        self.digit_seen = false;
        if self.closed {
            return Inbound::Dropped;
        }
        let Some(packet) = bridge::view(bytes) else {
            self.stats.dropped += 1;
            return Inbound::Dropped;
        };
        let side = match self.latched {
            Some(addr) if addr == from => false,
            Some(addr) => {
                if !self.is_side_event(addr, from, packet.payload_type) {
                    self.stats.dropped += 1;
                    return Inbound::Dropped;
                }
                true
            }
            None => match self.signalled {
                Some(sig) if sig != from && self.is_side_event(sig, from, packet.payload_type) => {
                    true
                }
                _ => {
                    self.latched = Some(from);
                    false
                }
            },
        };
        self.stats.received += 1;
        self.last_rx = now;
        self.inactive_reported = false;
        if self.telephone_event_pt == Some(packet.payload_type) {
            if let Ok(event) = dtmf::parse_rfc4733(packet.payload) {
                if let Some(digit) = self.digits.feed(packet.timestamp, &event) {
                    self.digit_seen = true;
                    self.events.push_back(MediaEvent::Digit {
                        leg: self.id,
                        digit,
                        at: now,
                    });
                }
            }
        }
        if side {
            self.stats.side_events += 1;
            return Inbound::SideEvent;
        }
        Inbound::Media(packet)
    }

    /// A telephone-event from `host`'s IP on another port, and the leg takes those.
    fn is_side_event(&self, host: SocketAddr, from: SocketAddr, payload_type: u8) -> bool {
        self.accept_events_from_same_host
            && self.telephone_event_pt == Some(payload_type)
            && host.ip().to_canonical() == from.ip().to_canonical()
    }
}
