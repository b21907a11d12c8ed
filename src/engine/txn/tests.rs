//! State transition tests; every timer's exact schedule is in tests/txn_timers.rs.

use super::*;
use crate::engine::Transport;

fn peer(transport: Transport) -> Peer {
    Peer {
        transport,
        addr: "127.0.0.1:5060".parse().unwrap(),
    }
}

fn skey(branch: &str, method: &str) -> TxnKey {
    TxnKey {
        branch: branch.into(),
        method: method.into(),
        sent_by: "10.0.0.1:5060".into(),
    }
}

fn ckey(branch: &str, method: &str) -> TxnKey {
    TxnKey {
        branch: branch.into(),
        method: method.into(),
        sent_by: String::new(),
    }
}

fn drain(t: &mut Transactions) -> Vec<TxnOutput> {
    std::iter::from_fn(|| t.poll_output()).collect()
}

fn sent(out: &[TxnOutput]) -> Vec<&[u8]> {
    out.iter()
        .filter_map(|o| match o {
            TxnOutput::Transmit { bytes, .. } => Some(bytes.as_ref()),
            _ => None,
        })
        .collect()
}

fn terminated(out: &[TxnOutput]) -> usize {
    out.iter()
        .filter(|o| matches!(o, TxnOutput::Terminated { .. }))
        .count()
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn state(t: &Transactions, key: &TxnKey, client: bool) -> Option<Machine> {
    let id = if client {
        t.client_index.get(&client_index_key(key))
    } else {
        t.server_index.get(key)
    }?;
    t.txns.get(id).map(|x| x.machine)
}

// ---- server INVITE -------------------------------------------------------------------------

#[test]
fn server_invite_new_then_proceeding_and_provisional_resent() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = skey("z9hG4bK1", "INVITE");
    assert_eq!(t.server_request(Millis(0), &k, false), ServerMatch::New);
    t.server_create(Millis(0), k.clone(), peer(Transport::Udp), true);
    assert_eq!(
        state(&t, &k, false),
        Some(Machine::InviteServer(ServerInviteState::Proceeding))
    );
    // No provisional yet: absorbed.
    assert_eq!(
        t.server_request(Millis(10), &k, false),
        ServerMatch::Absorbed
    );
    t.server_respond(Millis(20), &k, 180, b("180"));
    assert_eq!(sent(&drain(&mut t)), vec![b"180".as_ref()]);
    assert_eq!(
        t.server_request(Millis(30), &k, false),
        ServerMatch::Retransmission
    );
    assert_eq!(sent(&drain(&mut t)), vec![b"180".as_ref()]);
    assert_eq!(t.poll_timeout(), None, "no timers in Proceeding");
}

#[test]
fn server_invite_non2xx_completed_ack_confirmed_then_terminated() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = skey("z9hG4bK2", "INVITE");
    t.server_create(Millis(0), k.clone(), peer(Transport::Udp), true);
    t.server_respond(Millis(0), &k, 486, b("486"));
    assert_eq!(sent(&drain(&mut t)), vec![b"486".as_ref()]);
    assert_eq!(
        state(&t, &k, false),
        Some(Machine::InviteServer(ServerInviteState::Completed))
    );
    // Retransmitted INVITE re-sends the final response.
    assert_eq!(
        t.server_request(Millis(100), &k, false),
        ServerMatch::Retransmission
    );
    assert_eq!(sent(&drain(&mut t)), vec![b"486".as_ref()]);
    // A second final response from the TU is dropped.
    t.server_respond(Millis(100), &k, 500, b("500"));
    assert!(drain(&mut t).is_empty());
    assert_eq!(
        t.server_request(Millis(200), &k, true),
        ServerMatch::AckMatched
    );
    assert_eq!(
        state(&t, &k, false),
        Some(Machine::InviteServer(ServerInviteState::Confirmed))
    );
    assert_eq!(t.poll_timeout(), Some(Millis(5200)), "Timer I = T4");
    // ACK retransmits and INVITE retransmits are absorbed in Confirmed.
    assert_eq!(
        t.server_request(Millis(300), &k, true),
        ServerMatch::AckMatched
    );
    assert_eq!(
        t.server_request(Millis(300), &k, false),
        ServerMatch::Absorbed
    );
    assert!(drain(&mut t).is_empty());
    t.handle_timeout(Millis(5200));
    assert_eq!(
        drain(&mut t),
        vec![TxnOutput::Terminated { key: k.clone() }]
    );
    assert!(t.is_empty());
    assert_eq!(t.server_request(Millis(5300), &k, true), ServerMatch::New);
}

#[test]
fn server_invite_2xx_accepted_absorbs_invite_and_passes_ack() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = skey("z9hG4bK3", "INVITE");
    t.server_create(Millis(0), k.clone(), peer(Transport::Udp), true);
    t.server_respond(Millis(0), &k, 180, b("180"));
    t.server_respond(Millis(10), &k, 200, b("200"));
    assert_eq!(sent(&drain(&mut t)), vec![b"180".as_ref(), b"200".as_ref()]);
    assert_eq!(
        state(&t, &k, false),
        Some(Machine::InviteServer(ServerInviteState::Accepted))
    );
    // RFC 6026: retransmitted INVITE absorbed without a re-send; the TU re-sends the 2xx.
    assert_eq!(
        t.server_request(Millis(20), &k, false),
        ServerMatch::Absorbed
    );
    assert!(drain(&mut t).is_empty());
    t.server_respond(Millis(500), &k, 200, b("200"));
    assert_eq!(sent(&drain(&mut t)), vec![b"200".as_ref()]);
    // Non-2xx in Accepted is dropped.
    t.server_respond(Millis(600), &k, 486, b("486"));
    assert!(drain(&mut t).is_empty());
    // ACK goes to the TU, the txn stays and no new txn appears.
    assert_eq!(t.server_request(Millis(700), &k, true), ServerMatch::New);
    assert_eq!(t.len(), 1);
    assert_eq!(
        t.poll_timeout(),
        Some(Millis(10 + 32_000)),
        "Timer L = 64*T1"
    );
    t.handle_timeout(Millis(32_010));
    assert_eq!(terminated(&drain(&mut t)), 1);
    assert!(t.is_empty());
}

#[test]
fn server_invite_ack_before_final_is_absorbed() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = skey("z9hG4bK4", "INVITE");
    t.server_create(Millis(0), k.clone(), peer(Transport::Udp), true);
    assert_eq!(t.server_request(Millis(1), &k, true), ServerMatch::Absorbed);
    assert_eq!(
        state(&t, &k, false),
        Some(Machine::InviteServer(ServerInviteState::Proceeding))
    );
}

#[test]
fn server_invite_reliable_ack_terminates_at_once() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = skey("z9hG4bK5", "INVITE");
    t.server_create(Millis(0), k.clone(), peer(Transport::Tcp), true);
    t.server_respond(Millis(0), &k, 603, b("603"));
    assert_eq!(
        t.poll_timeout(),
        Some(Millis(32_000)),
        "only Timer H on TCP"
    );
    drain(&mut t);
    assert_eq!(
        t.server_request(Millis(50), &k, true),
        ServerMatch::AckMatched
    );
    assert_eq!(drain(&mut t), vec![TxnOutput::Terminated { key: k }]);
    assert!(t.is_empty());
    assert_eq!(t.poll_timeout(), None);
}

#[test]
fn server_invite_timer_h_reports_timeout() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = skey("z9hG4bK6", "INVITE");
    t.server_create(Millis(0), k.clone(), peer(Transport::Tcp), true);
    t.server_respond(Millis(0), &k, 404, b("404"));
    drain(&mut t);
    t.handle_timeout(Millis(32_000));
    assert_eq!(
        drain(&mut t),
        vec![
            TxnOutput::Timeout {
                key: k.clone(),
                client: false,
                timer: "H"
            },
            TxnOutput::Terminated { key: k }
        ]
    );
}

// ---- server non-INVITE ---------------------------------------------------------------------

#[test]
fn server_non_invite_trying_proceeding_completed() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = skey("z9hG4bK7", "BYE");
    assert_eq!(t.server_request(Millis(0), &k, false), ServerMatch::New);
    t.server_create(Millis(0), k.clone(), peer(Transport::Udp), false);
    assert_eq!(
        state(&t, &k, false),
        Some(Machine::NonInviteServer(ServerNonInviteState::Trying))
    );
    assert_eq!(
        t.server_request(Millis(1), &k, false),
        ServerMatch::Absorbed
    );
    t.server_respond(Millis(2), &k, 100, b("100"));
    assert_eq!(
        state(&t, &k, false),
        Some(Machine::NonInviteServer(ServerNonInviteState::Proceeding))
    );
    assert_eq!(
        t.server_request(Millis(3), &k, false),
        ServerMatch::Retransmission
    );
    t.server_respond(Millis(4), &k, 200, b("200"));
    assert_eq!(
        state(&t, &k, false),
        Some(Machine::NonInviteServer(ServerNonInviteState::Completed))
    );
    assert_eq!(
        t.server_request(Millis(5), &k, false),
        ServerMatch::Retransmission
    );
    t.server_respond(Millis(6), &k, 500, b("500"));
    assert_eq!(
        sent(&drain(&mut t)),
        vec![b"100".as_ref(), b"100", b"200", b"200"]
    );
    assert_eq!(
        t.poll_timeout(),
        Some(Millis(4 + 32_000)),
        "Timer J = 64*T1"
    );
    t.handle_timeout(Millis(32_004));
    assert_eq!(terminated(&drain(&mut t)), 1);
    assert!(t.is_empty());
}

#[test]
fn server_non_invite_reliable_final_terminates_at_once() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = skey("z9hG4bK8", "OPTIONS");
    t.server_create(Millis(0), k.clone(), peer(Transport::Tcp), false);
    t.server_respond(Millis(0), &k, 200, b("200"));
    let out = drain(&mut t);
    assert_eq!(sent(&out), vec![b"200".as_ref()]);
    assert_eq!(terminated(&out), 1);
    assert!(t.is_empty());
}

#[test]
fn server_unknown_key_and_duplicate_create_are_harmless() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = skey("z9hG4bK9", "INFO");
    t.server_respond(Millis(0), &k, 200, b("200"));
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.server_request(Millis(0), &k, true), ServerMatch::New);
    t.server_create(Millis(0), k.clone(), peer(Transport::Udp), false);
    t.server_create(Millis(0), k.clone(), peer(Transport::Udp), false);
    assert_eq!(t.len(), 1);
    // The ACK key of an INVITE never matches a non-INVITE txn with another method.
    assert_eq!(
        t.server_request(Millis(0), &skey("z9hG4bK9", "INVITE"), true),
        ServerMatch::New
    );
    // Different sent-by is a different server transaction (17.2.3).
    let mut other = k.clone();
    other.sent_by = "10.9.9.9:5060".into();
    assert_eq!(t.server_request(Millis(0), &other, false), ServerMatch::New);
}

// ---- client INVITE -------------------------------------------------------------------------

#[test]
fn client_invite_calling_proceeding_accepted() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = ckey("z9hG4bKc1", "INVITE");
    t.client_send(
        Millis(0),
        k.clone(),
        peer(Transport::Udp),
        true,
        b("INVITE"),
    );
    assert_eq!(sent(&drain(&mut t)), vec![b"INVITE".as_ref()]);
    assert_eq!(
        state(&t, &k, true),
        Some(Machine::InviteClient(ClientInviteState::Calling))
    );
    assert_eq!(
        t.client_response(Millis(100), &k, 180, None),
        ClientMatch::Pass
    );
    assert_eq!(
        state(&t, &k, true),
        Some(Machine::InviteClient(ClientInviteState::Proceeding))
    );
    assert_eq!(
        t.poll_timeout(),
        Some(Millis(100 + TIMER_C_MS)),
        "A and B stopped"
    );
    assert_eq!(
        t.client_response(Millis(150), &k, 183, None),
        ClientMatch::Pass
    );
    assert_eq!(
        t.client_response(Millis(200), &k, 200, None),
        ClientMatch::Pass
    );
    assert_eq!(
        state(&t, &k, true),
        Some(Machine::InviteClient(ClientInviteState::Accepted))
    );
    assert_eq!(
        t.client_response(Millis(300), &k, 200, None),
        ClientMatch::Pass
    );
    assert_eq!(
        t.client_response(Millis(300), &k, 180, None),
        ClientMatch::Absorbed
    );
    assert_eq!(
        t.client_response(Millis(300), &k, 486, None),
        ClientMatch::Absorbed
    );
    assert!(
        drain(&mut t).is_empty(),
        "no ACK for a 2xx from the txn layer"
    );
    assert_eq!(
        t.poll_timeout(),
        Some(Millis(200 + 32_000)),
        "Timer M = 64*T1"
    );
    t.handle_timeout(Millis(32_200));
    assert_eq!(
        drain(&mut t),
        vec![TxnOutput::Terminated { key: k.clone() }]
    );
    assert_eq!(
        t.client_response(Millis(40_000), &k, 200, None),
        ClientMatch::NotFound
    );
}

#[test]
fn client_invite_non2xx_completed_acks_and_absorbs() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = ckey("z9hG4bKc2", "INVITE");
    t.client_send(
        Millis(0),
        k.clone(),
        peer(Transport::Udp),
        true,
        b("INVITE"),
    );
    drain(&mut t);
    assert_eq!(
        t.client_response(Millis(10), &k, 486, Some(b("ACK"))),
        ClientMatch::Pass
    );
    assert_eq!(
        state(&t, &k, true),
        Some(Machine::InviteClient(ClientInviteState::Completed))
    );
    assert_eq!(sent(&drain(&mut t)), vec![b"ACK".as_ref()]);
    assert_eq!(
        t.client_response(Millis(20), &k, 486, Some(b("X"))),
        ClientMatch::Absorbed
    );
    assert_eq!(
        sent(&drain(&mut t)),
        vec![b"ACK".as_ref()],
        "the stored ACK is re-sent"
    );
    assert_eq!(
        t.client_response(Millis(20), &k, 180, None),
        ClientMatch::Absorbed
    );
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.poll_timeout(), Some(Millis(10 + 32_000)), "Timer D");
}

#[test]
fn client_invite_reliable_non2xx_terminates_after_ack() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = ckey("z9hG4bKc3", "INVITE");
    t.client_send(
        Millis(0),
        k.clone(),
        peer(Transport::Tcp),
        true,
        b("INVITE"),
    );
    assert_eq!(
        t.poll_timeout(),
        Some(Millis(32_000)),
        "only Timer B on TCP"
    );
    drain(&mut t);
    assert_eq!(
        t.client_response(Millis(10), &k, 503, Some(b("ACK"))),
        ClientMatch::Pass
    );
    let out = drain(&mut t);
    assert_eq!(sent(&out), vec![b"ACK".as_ref()]);
    assert_eq!(terminated(&out), 1);
    assert!(t.is_empty());
}

#[test]
fn client_invite_timer_c_guard_ends_stuck_proceeding() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = ckey("z9hG4bKc4", "INVITE");
    t.client_send(
        Millis(0),
        k.clone(),
        peer(Transport::Udp),
        true,
        b("INVITE"),
    );
    t.client_response(Millis(100), &k, 180, None);
    t.client_response(Millis(60_000), &k, 180, None);
    drain(&mut t);
    assert_eq!(
        t.poll_timeout(),
        Some(Millis(60_000 + TIMER_C_MS)),
        "re-armed"
    );
    t.handle_timeout(Millis(60_000 + TIMER_C_MS));
    assert_eq!(
        drain(&mut t),
        vec![
            TxnOutput::Timeout {
                key: k.clone(),
                client: true,
                timer: "C"
            },
            TxnOutput::Terminated { key: k }
        ]
    );
}

#[test]
fn client_matching_ignores_sent_by() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = ckey("z9hG4bKc5", "BYE");
    t.client_send(Millis(0), k.clone(), peer(Transport::Udp), false, b("BYE"));
    let mut other = k.clone();
    other.sent_by = "1.2.3.4:5060".into();
    assert_eq!(
        t.client_response(Millis(1), &other, 100, None),
        ClientMatch::Pass
    );
    assert_eq!(
        t.client_response(Millis(1), &ckey("z9hG4bKc5", "INVITE"), 200, None),
        ClientMatch::NotFound
    );
    assert_eq!(
        t.client_response(Millis(1), &ckey("z9hG4bKzz", "BYE"), 200, None),
        ClientMatch::NotFound
    );
}

#[test]
fn client_send_reusing_a_key_replaces_the_old_txn() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = ckey("z9hG4bKc6", "BYE");
    t.client_send(Millis(0), k.clone(), peer(Transport::Udp), false, b("BYE1"));
    t.client_send(Millis(5), k.clone(), peer(Transport::Udp), false, b("BYE2"));
    let out = drain(&mut t);
    assert_eq!(terminated(&out), 1);
    assert_eq!(sent(&out), vec![b"BYE1".as_ref(), b"BYE2"]);
    assert_eq!(t.len(), 1);
    assert_eq!(t.timers.len(), 2, "old timers cancelled");
}

// ---- client non-INVITE ---------------------------------------------------------------------

#[test]
fn client_non_invite_trying_proceeding_completed() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = ckey("z9hG4bKc7", "BYE");
    t.client_send(Millis(0), k.clone(), peer(Transport::Udp), false, b("BYE"));
    drain(&mut t);
    assert_eq!(
        t.client_response(Millis(10), &k, 100, None),
        ClientMatch::Pass
    );
    assert_eq!(
        state(&t, &k, true),
        Some(Machine::NonInviteClient(ClientNonInviteState::Proceeding))
    );
    assert_eq!(
        t.client_response(Millis(20), &k, 100, None),
        ClientMatch::Pass
    );
    assert_eq!(
        t.client_response(Millis(30), &k, 200, None),
        ClientMatch::Pass
    );
    assert_eq!(
        state(&t, &k, true),
        Some(Machine::NonInviteClient(ClientNonInviteState::Completed))
    );
    assert_eq!(
        t.client_response(Millis(40), &k, 200, None),
        ClientMatch::Absorbed
    );
    assert_eq!(
        t.client_response(Millis(40), &k, 100, None),
        ClientMatch::Absorbed
    );
    assert!(drain(&mut t).is_empty());
    assert_eq!(t.poll_timeout(), Some(Millis(30 + 5000)), "Timer K = T4");
    t.handle_timeout(Millis(5030));
    assert_eq!(drain(&mut t), vec![TxnOutput::Terminated { key: k }]);
}

#[test]
fn client_non_invite_reliable_final_terminates_at_once() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = ckey("z9hG4bKc8", "BYE");
    t.client_send(Millis(0), k.clone(), peer(Transport::Tcp), false, b("BYE"));
    drain(&mut t);
    assert_eq!(
        t.client_response(Millis(10), &k, 481, None),
        ClientMatch::Pass
    );
    assert_eq!(drain(&mut t), vec![TxnOutput::Terminated { key: k }]);
    assert!(t.is_empty());
}

#[test]
fn zero_t1_config_cannot_spin() {
    let mut t = Transactions::new(TxnConfig {
        t1_ms: 0,
        t2_ms: 0,
        t4_ms: 0,
    });
    let k = ckey("z9hG4bKc9", "BYE");
    t.client_send(Millis(0), k, peer(Transport::Udp), false, b("BYE"));
    t.handle_timeout(Millis(1_000));
    assert!(t.is_empty());
    assert!(drain(&mut t).len() < 200);
}

#[test]
fn late_timer_handling_sends_one_retransmit_not_a_burst() {
    let mut t = Transactions::new(TxnConfig::default());
    let k = ckey("z9hG4bKca", "INVITE");
    t.client_send(Millis(0), k, peer(Transport::Udp), true, b("INVITE"));
    drain(&mut t);
    t.handle_timeout(Millis(20_000));
    assert_eq!(sent(&drain(&mut t)).len(), 1);
    assert_eq!(t.poll_timeout(), Some(Millis(21_000)));
}
