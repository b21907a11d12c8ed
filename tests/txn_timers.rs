//! Simulated-clock tests of every RFC 3261 / RFC 6026 transaction timer (A..M) on UDP and TCP,
//! plus a property test that random operation sequences never panic and always drain.

use bytes::Bytes;
use ccswitch::engine::txn::{ClientMatch, ServerMatch, Transactions, TxnConfig, TxnKey, TxnOutput};
use ccswitch::engine::{Millis, Peer, Transport};
use proptest::prelude::*;
use std::collections::HashSet;

const T1: u64 = 500;

fn peer(transport: Transport) -> Peer {
    Peer {
        transport,
        addr: "127.0.0.1:5070".parse().unwrap(),
    }
}

fn skey(branch: &str, method: &str) -> TxnKey {
    TxnKey {
        branch: branch.into(),
        method: method.into(),
        sent_by: "192.0.2.1:5060".into(),
    }
}

fn ckey(branch: &str, method: &str) -> TxnKey {
    TxnKey {
        branch: branch.into(),
        method: method.into(),
        sent_by: String::new(),
    }
}

/// One thing the layer did, stamped with the virtual instant.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Sent(u64, &'static str),
    Timeout(u64, &'static str),
    Terminated(u64),
}

struct Sim {
    t: Transactions,
    now: u64,
    log: Vec<Ev>,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            t: Transactions::new(TxnConfig::default()),
            now: 0,
            log: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(o) = self.t.poll_output() {
            let ev = match o {
                TxnOutput::Transmit { bytes, .. } => Sent(self.now, label(&bytes)),
                TxnOutput::Timeout { timer, .. } => Ev::Timeout(self.now, timer),
                TxnOutput::Terminated { .. } => Ev::Terminated(self.now),
            };
            self.log.push(ev);
        }
    }

    /// Runs the timers up to and including `until`, like a shell sleeping on `poll_timeout`.
    fn run_until(&mut self, until: u64) {
        let mut guard = 0;
        while let Some(at) = self.t.poll_timeout() {
            if at.0 > until {
                break;
            }
            assert!(at.0 >= self.now, "deadline in the past");
            self.now = at.0;
            self.t.handle_timeout(at);
            self.drain();
            guard += 1;
            assert!(guard < 10_000, "timer loop does not settle");
        }
        self.now = until;
    }

    fn at(&mut self, ms: u64) -> Millis {
        self.run_until(ms);
        Millis(ms)
    }

    fn sent_at(&self, what: &str) -> Vec<u64> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Ev::Sent(at, w) if *w == what => Some(*at),
                _ => None,
            })
            .collect()
    }

    fn end(&self) -> Vec<&Ev> {
        self.log
            .iter()
            .filter(|e| !matches!(e, Ev::Sent(..)))
            .collect()
    }
}

use Ev::Sent;

fn label(bytes: &Bytes) -> &'static str {
    match bytes.as_ref() {
        b"INVITE" => "INVITE",
        b"BYE" => "BYE",
        b"ACK" => "ACK",
        b"180" => "180",
        b"200" => "200",
        b"486" => "486",
        _ => "other",
    }
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

// ---- client INVITE: A, B, D, M ---------------------------------------------------------------

#[test]
fn timer_a_doubles_without_cap_and_timer_b_times_out_udp() {
    let mut s = Sim::new();
    let k = ckey("z9hG4bKa", "INVITE");
    s.t.client_send(Millis(0), k, peer(Transport::Udp), true, b("INVITE"));
    s.drain();
    s.run_until(100_000);
    // Sent at 0, then T1, 3*T1, 7*T1, 15*T1, 31*T1, 63*T1; Timer B at 64*T1.
    assert_eq!(
        s.sent_at("INVITE"),
        vec![0, 500, 1500, 3500, 7500, 15_500, 31_500]
    );
    assert_eq!(
        s.end(),
        vec![&Ev::Timeout(32_000, "B"), &Ev::Terminated(32_000)]
    );
    assert!(s.t.is_empty());
}

#[test]
fn timer_b_without_retransmits_tcp() {
    let mut s = Sim::new();
    let k = ckey("z9hG4bKa", "INVITE");
    s.t.client_send(Millis(0), k, peer(Transport::Tcp), true, b("INVITE"));
    s.drain();
    s.run_until(100_000);
    assert_eq!(s.sent_at("INVITE"), vec![0]);
    assert_eq!(
        s.end(),
        vec![&Ev::Timeout(32_000, "B"), &Ev::Terminated(32_000)]
    );
}

#[test]
fn timer_a_stops_on_provisional() {
    let mut s = Sim::new();
    let k = ckey("z9hG4bKa", "INVITE");
    s.t.client_send(
        Millis(0),
        k.clone(),
        peer(Transport::Udp),
        true,
        b("INVITE"),
    );
    s.drain();
    let now = s.at(2000);
    assert_eq!(s.t.client_response(now, &k, 180, None), ClientMatch::Pass);
    let now = s.at(10_000);
    assert_eq!(s.t.client_response(now, &k, 200, None), ClientMatch::Pass);
    s.run_until(100_000);
    assert_eq!(s.sent_at("INVITE"), vec![0, 500, 1500]);
    // Timer M = 64*T1 after the 2xx, no timeout report.
    assert_eq!(s.end(), vec![&Ev::Terminated(42_000)]);
}

#[test]
fn timer_d_udp_is_32s_and_acks_retransmitted_finals() {
    let mut s = Sim::new();
    let k = ckey("z9hG4bKd", "INVITE");
    s.t.client_send(
        Millis(0),
        k.clone(),
        peer(Transport::Udp),
        true,
        b("INVITE"),
    );
    s.drain();
    let now = s.at(1000);
    assert_eq!(
        s.t.client_response(now, &k, 486, Some(b("ACK"))),
        ClientMatch::Pass
    );
    s.drain();
    for at in [2000, 4000, 8000] {
        let now = s.at(at);
        assert_eq!(
            s.t.client_response(now, &k, 486, Some(b("ACK"))),
            ClientMatch::Absorbed
        );
        s.drain();
    }
    s.run_until(100_000);
    assert_eq!(s.sent_at("INVITE"), vec![0, 500]);
    assert_eq!(s.sent_at("ACK"), vec![1000, 2000, 4000, 8000]);
    assert_eq!(s.end(), vec![&Ev::Terminated(33_000)]);
}

#[test]
fn timer_d_tcp_is_zero() {
    let mut s = Sim::new();
    let k = ckey("z9hG4bKd", "INVITE");
    s.t.client_send(
        Millis(0),
        k.clone(),
        peer(Transport::Tcp),
        true,
        b("INVITE"),
    );
    s.drain();
    let now = s.at(1000);
    assert_eq!(
        s.t.client_response(now, &k, 486, Some(b("ACK"))),
        ClientMatch::Pass
    );
    s.drain();
    assert_eq!(s.sent_at("ACK"), vec![1000]);
    assert_eq!(s.end(), vec![&Ev::Terminated(1000)]);
    assert!(s.t.is_empty());
    assert_eq!(s.t.poll_timeout(), None);
}

#[test]
fn timer_m_udp_and_tcp_pass_2xx_retransmissions() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut s = Sim::new();
        let k = ckey("z9hG4bKm", "INVITE");
        s.t.client_send(Millis(0), k.clone(), peer(transport), true, b("INVITE"));
        s.drain();
        let now = s.at(1000);
        assert_eq!(s.t.client_response(now, &k, 200, None), ClientMatch::Pass);
        let now = s.at(1500);
        assert_eq!(s.t.client_response(now, &k, 200, None), ClientMatch::Pass);
        let now = s.at(32_999);
        assert_eq!(s.t.client_response(now, &k, 200, None), ClientMatch::Pass);
        s.run_until(100_000);
        assert_eq!(s.end(), vec![&Ev::Terminated(33_000)], "{transport:?}");
        assert_eq!(
            s.t.client_response(Millis(40_000), &k, 200, None),
            ClientMatch::NotFound
        );
    }
}

// ---- client non-INVITE: E, F, K --------------------------------------------------------------

#[test]
fn timer_e_doubles_to_t2_and_timer_f_times_out_udp() {
    let mut s = Sim::new();
    let k = ckey("z9hG4bKe", "BYE");
    s.t.client_send(Millis(0), k, peer(Transport::Udp), false, b("BYE"));
    s.drain();
    s.run_until(100_000);
    assert_eq!(
        s.sent_at("BYE"),
        vec![0, 500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert_eq!(
        s.end(),
        vec![&Ev::Timeout(32_000, "F"), &Ev::Terminated(32_000)]
    );
}

#[test]
fn timer_e_runs_at_t2_in_proceeding() {
    let mut s = Sim::new();
    let k = ckey("z9hG4bKe", "BYE");
    s.t.client_send(Millis(0), k.clone(), peer(Transport::Udp), false, b("BYE"));
    s.drain();
    let now = s.at(100);
    assert_eq!(s.t.client_response(now, &k, 100, None), ClientMatch::Pass);
    s.run_until(100_000);
    // The pending Timer E still fires at T1, then every T2 (17.1.2.2).
    assert_eq!(
        s.sent_at("BYE"),
        vec![0, 500, 4500, 8500, 12_500, 16_500, 20_500, 24_500, 28_500]
    );
    assert_eq!(
        s.end(),
        vec![&Ev::Timeout(32_000, "F"), &Ev::Terminated(32_000)]
    );
}

#[test]
fn timer_f_without_retransmits_tcp() {
    let mut s = Sim::new();
    let k = ckey("z9hG4bKf", "BYE");
    s.t.client_send(Millis(0), k, peer(Transport::Tcp), false, b("BYE"));
    s.drain();
    s.run_until(100_000);
    assert_eq!(s.sent_at("BYE"), vec![0]);
    assert_eq!(
        s.end(),
        vec![&Ev::Timeout(32_000, "F"), &Ev::Terminated(32_000)]
    );
}

#[test]
fn timer_k_udp_is_t4_and_absorbs_retransmissions() {
    let mut s = Sim::new();
    let k = ckey("z9hG4bKk", "BYE");
    s.t.client_send(Millis(0), k.clone(), peer(Transport::Udp), false, b("BYE"));
    s.drain();
    let now = s.at(1000);
    assert_eq!(s.t.client_response(now, &k, 200, None), ClientMatch::Pass);
    let now = s.at(3000);
    assert_eq!(
        s.t.client_response(now, &k, 200, None),
        ClientMatch::Absorbed
    );
    s.run_until(100_000);
    assert_eq!(s.sent_at("BYE"), vec![0, 500]);
    assert_eq!(s.end(), vec![&Ev::Terminated(6000)]);
}

#[test]
fn timer_k_tcp_is_zero() {
    let mut s = Sim::new();
    let k = ckey("z9hG4bKk", "BYE");
    s.t.client_send(Millis(0), k.clone(), peer(Transport::Tcp), false, b("BYE"));
    s.drain();
    let now = s.at(1000);
    assert_eq!(s.t.client_response(now, &k, 200, None), ClientMatch::Pass);
    s.drain();
    assert_eq!(s.end(), vec![&Ev::Terminated(1000)]);
    assert!(s.t.is_empty());
}

// ---- server INVITE: G, H, I, L ---------------------------------------------------------------

#[test]
fn timer_g_doubles_to_t2_and_timer_h_times_out_udp() {
    let mut s = Sim::new();
    let k = skey("z9hG4bKg", "INVITE");
    s.t.server_create(Millis(0), k.clone(), peer(Transport::Udp), true);
    s.t.server_respond(Millis(0), &k, 486, b("486"));
    s.drain();
    s.run_until(100_000);
    assert_eq!(
        s.sent_at("486"),
        vec![0, 500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
    );
    assert_eq!(
        s.end(),
        vec![&Ev::Timeout(32_000, "H"), &Ev::Terminated(32_000)]
    );
}

#[test]
fn timer_h_without_retransmits_tcp() {
    let mut s = Sim::new();
    let k = skey("z9hG4bKh", "INVITE");
    s.t.server_create(Millis(0), k.clone(), peer(Transport::Tcp), true);
    s.t.server_respond(Millis(0), &k, 486, b("486"));
    s.drain();
    s.run_until(100_000);
    assert_eq!(s.sent_at("486"), vec![0]);
    assert_eq!(
        s.end(),
        vec![&Ev::Timeout(32_000, "H"), &Ev::Terminated(32_000)]
    );
}

#[test]
fn timer_i_udp_is_t4_after_ack_and_g_stops() {
    let mut s = Sim::new();
    let k = skey("z9hG4bKi", "INVITE");
    s.t.server_create(Millis(0), k.clone(), peer(Transport::Udp), true);
    s.t.server_respond(Millis(0), &k, 486, b("486"));
    s.drain();
    let now = s.at(2000);
    assert_eq!(s.t.server_request(now, &k, true), ServerMatch::AckMatched);
    let now = s.at(4000);
    assert_eq!(s.t.server_request(now, &k, true), ServerMatch::AckMatched);
    s.run_until(100_000);
    assert_eq!(s.sent_at("486"), vec![0, 500, 1500]);
    assert_eq!(s.end(), vec![&Ev::Terminated(7000)]);
}

#[test]
fn timer_i_tcp_is_zero() {
    let mut s = Sim::new();
    let k = skey("z9hG4bKi", "INVITE");
    s.t.server_create(Millis(0), k.clone(), peer(Transport::Tcp), true);
    s.t.server_respond(Millis(0), &k, 486, b("486"));
    s.drain();
    let now = s.at(2000);
    assert_eq!(s.t.server_request(now, &k, true), ServerMatch::AckMatched);
    s.drain();
    assert_eq!(s.end(), vec![&Ev::Terminated(2000)]);
    assert!(s.t.is_empty());
}

#[test]
fn timer_l_udp_and_tcp_absorbs_invites_without_resend() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut s = Sim::new();
        let k = skey("z9hG4bKl", "INVITE");
        s.t.server_create(Millis(0), k.clone(), peer(transport), true);
        s.t.server_respond(Millis(0), &k, 180, b("180"));
        let now = s.at(1000);
        s.t.server_respond(now, &k, 200, b("200"));
        s.drain();
        let now = s.at(1500);
        assert_eq!(s.t.server_request(now, &k, false), ServerMatch::Absorbed);
        assert_eq!(s.t.server_request(now, &k, true), ServerMatch::New);
        s.run_until(100_000);
        assert_eq!(s.sent_at("200"), vec![1000], "{transport:?}");
        assert_eq!(s.end(), vec![&Ev::Terminated(33_000)], "{transport:?}");
    }
}

// ---- server non-INVITE: J --------------------------------------------------------------------

#[test]
fn timer_j_udp_is_64_t1_and_resends_final() {
    let mut s = Sim::new();
    let k = skey("z9hG4bKj", "BYE");
    s.t.server_create(Millis(0), k.clone(), peer(Transport::Udp), false);
    let now = s.at(100);
    s.t.server_respond(now, &k, 200, b("200"));
    s.drain();
    let now = s.at(600);
    assert_eq!(
        s.t.server_request(now, &k, false),
        ServerMatch::Retransmission
    );
    s.drain();
    s.run_until(100_000);
    assert_eq!(s.sent_at("200"), vec![100, 600], "no timer-driven resends");
    assert_eq!(s.end(), vec![&Ev::Terminated(100 + 64 * T1)]);
}

#[test]
fn timer_j_tcp_is_zero() {
    let mut s = Sim::new();
    let k = skey("z9hG4bKj", "BYE");
    s.t.server_create(Millis(0), k.clone(), peer(Transport::Tcp), false);
    let now = s.at(100);
    s.t.server_respond(now, &k, 200, b("200"));
    s.drain();
    assert_eq!(s.end(), vec![&Ev::Terminated(100)]);
    assert!(s.t.is_empty());
}

// ---- scale -----------------------------------------------------------------------------------

#[test]
fn hundred_thousand_transactions_drain() {
    let mut t = Transactions::new(TxnConfig::default());
    let n = 100_000u64;
    for i in 0..n {
        let now = Millis(i / 10);
        if i % 2 == 0 {
            let k = ckey(&format!("z9hG4bK{i}"), "BYE");
            t.client_send(now, k, peer(Transport::Udp), false, b("BYE"));
        } else {
            let k = skey(&format!("z9hG4bK{i}"), "INVITE");
            t.server_create(now, k.clone(), peer(Transport::Udp), true);
            t.server_respond(now, &k, 486, b("486"));
        }
    }
    assert_eq!(t.len(), n as usize);
    let mut terminated = 0u64;
    let mut steps = 0u64;
    while let Some(at) = t.poll_timeout() {
        t.handle_timeout(at);
        while let Some(o) = t.poll_output() {
            if matches!(o, TxnOutput::Terminated { .. }) {
                terminated += 1;
            }
        }
        steps += 1;
        assert!(steps < 5_000_000);
    }
    assert_eq!(terminated, n);
    assert!(t.is_empty());
}

// ---- property: random operations never panic and always drain -------------------------------

#[derive(Clone, Debug)]
enum Op {
    ServerCreate {
        k: u8,
        invite: bool,
        tcp: bool,
    },
    ServerRequest {
        k: u8,
        invite: bool,
        ack: bool,
    },
    ServerRespond {
        k: u8,
        invite: bool,
        status: u16,
    },
    ClientSend {
        k: u8,
        invite: bool,
        tcp: bool,
    },
    ClientResponse {
        k: u8,
        invite: bool,
        status: u16,
        ack: bool,
    },
    Advance {
        ms: u64,
    },
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(100u16),
        Just(180),
        Just(183),
        Just(200),
        Just(202),
        Just(302),
        Just(404),
        Just(486),
        Just(503),
        Just(603),
        any::<u16>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, any::<bool>(), any::<bool>()).prop_map(|(k, invite, tcp)| Op::ServerCreate {
            k,
            invite,
            tcp
        }),
        (0u8..4, any::<bool>(), any::<bool>()).prop_map(|(k, invite, ack)| Op::ServerRequest {
            k,
            invite,
            ack
        }),
        (0u8..4, any::<bool>(), status()).prop_map(|(k, invite, status)| Op::ServerRespond {
            k,
            invite,
            status
        }),
        (0u8..4, any::<bool>(), any::<bool>()).prop_map(|(k, invite, tcp)| Op::ClientSend {
            k,
            invite,
            tcp
        }),
        (0u8..4, any::<bool>(), status(), any::<bool>()).prop_map(|(k, invite, status, ack)| {
            Op::ClientResponse {
                k,
                invite,
                status,
                ack,
            }
        }),
        prop_oneof![0u64..600, 0u64..40_000].prop_map(|ms| Op::Advance { ms }),
    ]
}

fn method(invite: bool) -> &'static str {
    if invite {
        "INVITE"
    } else {
        "BYE"
    }
}

struct Model {
    t: Transactions,
    now: u64,
    live: HashSet<TxnKey>,
}

impl Model {
    fn drain(&mut self) {
        while let Some(o) = self.t.poll_output() {
            match o {
                TxnOutput::Terminated { key } => {
                    assert!(
                        self.live.remove(&key),
                        "terminated twice or unknown: {key:?}"
                    );
                }
                TxnOutput::Timeout { key, .. } => {
                    assert!(self.live.contains(&key), "timeout for a dead txn: {key:?}");
                }
                TxnOutput::Transmit { .. } => {}
            }
        }
        assert_eq!(self.t.len(), self.live.len());
    }

    fn advance(&mut self, ms: u64) {
        let until = self.now + ms;
        let mut guard = 0;
        while let Some(at) = self.t.poll_timeout() {
            if at.0 > until {
                break;
            }
            assert!(at.0 >= self.now);
            self.now = at.0;
            self.t.handle_timeout(at);
            self.drain();
            if let Some(next) = self.t.poll_timeout() {
                assert!(next.0 > self.now, "a due timer survived handle_timeout");
            }
            guard += 1;
            assert!(guard < 100_000);
        }
        self.now = until;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_operations_never_panic_and_always_drain(
        ops in proptest::collection::vec(op(), 0..60),
        t1 in 1u64..1000,
        t2_factor in 1u64..10,
        t4 in 0u64..6000,
    ) {
        let cfg = TxnConfig { t1_ms: t1, t2_ms: t1 * t2_factor, t4_ms: t4 };
        let mut m = Model { t: Transactions::new(cfg), now: 0, live: HashSet::new() };
        let branch = |k: u8| format!("z9hG4bK{k}");
        for op in ops {
            let now = Millis(m.now);
            match op {
                Op::ServerCreate { k, invite, tcp } => {
                    let key = skey(&branch(k), method(invite));
                    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
                    m.t.server_create(now, key.clone(), peer(transport), invite);
                    m.live.insert(key);
                }
                Op::ServerRequest { k, invite, ack } => {
                    let key = skey(&branch(k), method(invite || ack));
                    let r = m.t.server_request(now, &key, ack);
                    if !m.live.contains(&key) {
                        prop_assert_eq!(r, ServerMatch::New);
                    }
                }
                Op::ServerRespond { k, invite, status } => {
                    let key = skey(&branch(k), method(invite));
                    m.t.server_respond(now, &key, status, b("200"));
                }
                Op::ClientSend { k, invite, tcp } => {
                    let key = ckey(&branch(k), method(invite));
                    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
                    m.t.client_send(now, key.clone(), peer(transport), invite, b("INVITE"));
                    // A reused key terminates the old txn (drained below) before the new one.
                    m.drain_reuse(&key);
                    m.live.insert(key);
                }
                Op::ClientResponse { k, invite, status, ack } => {
                    let key = ckey(&branch(k), method(invite));
                    let r = m.t.client_response(now, &key, status, ack.then(|| b("ACK")));
                    if !m.live.contains(&key) {
                        prop_assert_eq!(r, ClientMatch::NotFound);
                    }
                }
                Op::Advance { ms } => m.advance(ms),
            }
            m.drain();
        }
        // The TU always answers its server transactions with a final response.
        let open: Vec<TxnKey> = m.live.iter().filter(|k| !k.sent_by.is_empty()).cloned().collect();
        for key in open {
            let now = Millis(m.now);
            m.t.server_respond(now, &key, 486, b("486"));
            m.t.server_respond(now, &key, 200, b("200"));
            m.drain();
        }
        // Longest wait: Timer C guard (3 min) > Timer D / H / L / M / B / F (64*T1, 32 s) > T4.
        let bound = (64 * t1).max(32_000) + 180_000 + t4 + 1;
        m.advance(bound);
        prop_assert!(m.t.is_empty(), "{} txns left", m.t.len());
        prop_assert!(m.live.is_empty());
        prop_assert_eq!(m.t.poll_timeout(), None);
    }
}

impl Model {
    /// `client_send` on a live key emits `Terminated` for the old txn before the new one exists;
    /// the key is re-inserted by the caller.
    fn drain_reuse(&mut self, key: &TxnKey) {
        while let Some(o) = self.t.poll_output() {
            if let TxnOutput::Terminated { key: k } = o {
                assert!(self.live.remove(&k), "terminated twice or unknown: {k:?}");
                assert_eq!(&k, key);
            }
        }
    }
}
