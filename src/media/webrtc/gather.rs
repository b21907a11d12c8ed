//! Server-reflexive candidates for a peer's ICE socket (a switch behind NAT): a STUN Binding
//! request (RFC 8489) to each configured STUN server from that socket, the mapped address of
//! each answer becoming a `srflx` candidate. Sans-IO: the peer sends the requests this hands
//! out and feeds back the datagrams that come from the servers.

use rtc::stun::message::{Getter, Message, TransactionId, BINDING_REQUEST, BINDING_SUCCESS};
use rtc::stun::xoraddr::XorMappedAddress;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long the offer waits for the STUN servers' answers.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(2);
/// A request without an answer is sent again after this long (RFC 8489 RTO).
const RETRANSMIT: Duration = Duration::from_millis(500);

/// One server asked.
struct Request {
    server: SocketAddr,
    id: TransactionId,
    raw: Vec<u8>,
    answered: bool,
}

/// The Binding requests of one ICE socket and what they found.
pub struct StunGather {
    requests: Vec<Request>,
    /// Mapped (public) addresses, deduplicated, each with the server that reported it.
    found: Vec<(SocketAddr, SocketAddr)>,
    deadline: Instant,
    next_send: Instant,
}

impl StunGather {
    /// Requests to `servers` (those of another address family than `local` are skipped).
    pub fn new(servers: &[SocketAddr], local: SocketAddr, now: Instant) -> StunGather {
        let requests = servers
            .iter()
            .filter(|s| s.is_ipv4() == local.is_ipv4())
            .filter_map(|&server| {
                let mut msg = Message::new();
                let id = TransactionId::new();
                msg.build(&[Box::new(id), Box::new(BINDING_REQUEST)]).ok()?;
                Some(Request {
                    server,
                    id,
                    raw: msg.raw,
                    answered: false,
                })
            })
            .collect();
        StunGather {
            requests,
            found: Vec::new(),
            deadline: now + GATHER_TIMEOUT,
            next_send: now,
        }
    }

    /// Requests due now (first sends and retransmissions), as (server, datagram).
    pub fn poll_transmit(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        if self.done(now) || now < self.next_send {
            return Vec::new();
        }
        self.next_send = now + RETRANSMIT;
        self.requests
            .iter()
            .filter(|r| !r.answered)
            .map(|r| (r.server, r.raw.clone()))
            .collect()
    }

    /// Whether `from` is one of the servers asked (its datagrams go to `handle`).
    pub fn is_server(&self, from: SocketAddr) -> bool {
        self.requests.iter().any(|r| r.server == from)
    }

    /// A datagram from a server: a Binding success answering our request adds its mapped
    /// address. Anything else is ignored.
    pub fn handle(&mut self, from: SocketAddr, bytes: &[u8]) {
        let mut msg = Message::new();
        if msg.unmarshal_binary(bytes).is_err() || msg.typ != BINDING_SUCCESS {
            return;
        }
        let Some(req) = self
            .requests
            .iter_mut()
            .find(|r| r.server == from && r.id == msg.transaction_id && !r.answered)
        else {
            return;
        };
        req.answered = true;
        let mut mapped = XorMappedAddress::default();
        if mapped.get_from(&msg).is_ok() {
            let addr = SocketAddr::new(mapped.ip, mapped.port);
            if !self.found.iter().any(|(a, _)| *a == addr) {
                self.found.push((addr, from));
            }
        }
    }

    /// Every server answered, or the time is up.
    pub fn done(&self, now: Instant) -> bool {
        now >= self.deadline || self.requests.iter().all(|r| r.answered)
    }

    /// The mapped addresses found, with the server that reported each.
    pub fn found(&self) -> &[(SocketAddr, SocketAddr)] {
        &self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::stun::message::Setter;

    fn answer(to: &[u8], mapped: SocketAddr) -> Vec<u8> {
        let mut req = Message::new();
        req.unmarshal_binary(to).unwrap();
        let mut resp = Message::new();
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(req.transaction_id),
            Box::new(BINDING_SUCCESS),
            Box::new(XorMappedAddress {
                ip: mapped.ip(),
                port: mapped.port(),
            }),
        ];
        resp.build(&setters).unwrap();
        resp.raw
    }

    #[test]
    fn a_binding_answer_gives_the_mapped_address_and_strangers_are_ignored() {
        let t0 = crate::clock::Clock::new().instant();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:3478".parse().unwrap();
        let local: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let mut g = StunGather::new(&[server, v6], local, t0);
        let sent = g.poll_transmit(t0);
        assert_eq!(
            sent.len(),
            1,
            "the IPv6 server is skipped for an IPv4 socket"
        );
        assert!(g.poll_transmit(t0).is_empty(), "no resend before the RTO");
        assert_eq!(g.poll_transmit(t0 + RETRANSMIT).len(), 1, "resent");
        assert!(!g.done(t0));
        let public: SocketAddr = "203.0.113.7:61000".parse().unwrap();
        let reply = answer(&sent[0].1, public);
        g.handle("192.0.2.9:3478".parse().unwrap(), &reply);
        assert!(
            g.found().is_empty(),
            "an answer from another host is not ours"
        );
        g.handle(server, b"not stun");
        g.handle(server, &reply);
        assert_eq!(g.found(), &[(public, server)]);
        assert!(g.done(t0), "every server answered");
        assert!(g.poll_transmit(t0 + RETRANSMIT * 2).is_empty());
    }

    #[test]
    fn silent_servers_end_the_gathering_at_the_deadline() {
        let t0 = crate::clock::Clock::new().instant();
        let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let g = StunGather::new(&[server], "10.0.0.5:40000".parse().unwrap(), t0);
        assert!(!g.done(t0 + GATHER_TIMEOUT - Duration::from_millis(1)));
        assert!(g.done(t0 + GATHER_TIMEOUT));
        let none = StunGather::new(&[], "10.0.0.5:40000".parse().unwrap(), t0);
        assert!(none.done(t0), "no server: nothing to wait for");
    }
}
