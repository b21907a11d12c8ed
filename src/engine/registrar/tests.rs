use super::*;
use crate::engine::agents::{AgentConfig, FeatureCodes};
use crate::proto::digest::{self, ha1, Algorithm, QopAuth};
use crate::proto::sip::{parse, Message};
use std::collections::BTreeMap;

const SRC: &str = "192.0.2.7:5062";

fn agent(ext: &str, pw: &str, md5: bool, sha: bool) -> AgentConfig {
    AgentConfig {
        extension: ext.into(),
        name: format!("Agent {ext}"),
        skills: BTreeMap::new(),
        languages: vec!["en".into()],
        queues: vec![],
        ha1_md5: md5.then(|| ha1(Algorithm::Md5, ext, "ccswitch", pw)),
        ha1_sha256: sha.then(|| ha1(Algorithm::Sha256, ext, "ccswitch", pw)),
        realm: "ccswitch".into(),
        display_id: None,
    }
}

fn cfg() -> RegistrarConfig {
    RegistrarConfig {
        realm: "ccswitch".into(),
        nonce_ttl_ms: 300_000,
        min_expires_s: 60,
        max_expires_s: 3600,
        default_expires_s: 1800,
        max_failures: 3,
        failure_window_ms: 60_000,
        block_ms: 120_000,
    }
}

fn registrar() -> Registrar {
    let dir = AgentDirectory::new(
        vec![
            agent("1001", "pw1001", true, true),
            agent("1002", "pw1002", true, false),
        ],
        RegistrarConfig::default(),
        FeatureCodes::default(),
    );
    Registrar::new(Arc::new(dir), cfg(), [7; 32])
}

struct Reg<'a> {
    user: &'a str,
    contacts: Vec<&'a str>,
    expires: Option<&'a str>,
    call_id: &'a str,
    cseq: u32,
    auth: Option<String>,
}

fn reg(user: &str) -> Reg<'_> {
    Reg {
        user,
        contacts: vec!["<sip:1001@10.0.0.5:5062;transport=udp>"],
        expires: None,
        call_id: "reg-1",
        cseq: 1,
        auth: None,
    }
}

fn build(r: &Reg, method: &str) -> Request {
    let mut s = format!(
            "{method} sip:ccswitch.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK{}\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@ccswitch.example>;tag=f1\r\nTo: <sip:{u}@ccswitch.example>\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n",
            r.cseq, r.call_id, r.cseq, u = r.user
        );
    for c in &r.contacts {
        s.push_str(&format!("Contact: {c}\r\n"));
    }
    if let Some(e) = r.expires {
        s.push_str(&format!("Expires: {e}\r\n"));
    }
    if let Some(a) = &r.auth {
        let name = if method == "REGISTER" {
            "Authorization"
        } else {
            "Proxy-Authorization"
        };
        s.push_str(&format!("{name}: {a}\r\n"));
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    match parse(s.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

/// Answers the challenge in `reply` for `alg` the way a phone does.
fn answer(
    reply: &RegisterReply,
    alg: Algorithm,
    user: &str,
    pw: &str,
    nc: u32,
    method: &str,
) -> String {
    let ch = reply
        .headers
        .iter()
        .filter_map(|(_, v)| digest::parse_credentials(v))
        .find(|c| Algorithm::from_param(c.algorithm()) == Some(alg))
        .expect("challenge for the algorithm");
    answer_nonce(ch.nonce().unwrap(), ch.opaque(), alg, user, pw, nc, method)
}

fn answer_nonce(
    nonce: &str,
    opaque: Option<&str>,
    alg: Algorithm,
    user: &str,
    pw: &str,
    nc: u32,
    method: &str,
) -> String {
    let uri = "sip:ccswitch.example";
    let h = ha1(alg, user, "ccswitch", pw);
    let nc = format!("{nc:08x}");
    let resp = digest::response(
        alg,
        &h,
        method,
        uri,
        nonce,
        Some(QopAuth {
            nc: &nc,
            cnonce: "c0ffee",
        }),
    );
    let mut a = format!(
            "Digest username=\"{user}\", realm=\"ccswitch\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={}, cnonce=\"c0ffee\", qop=auth, nc={nc}",
            alg.as_str()
        );
    if let Some(o) = opaque {
        a.push_str(&format!(", opaque=\"{o}\""));
    }
    a
}

fn src() -> SocketAddr {
    SRC.parse().unwrap()
}

/// REGISTER without credentials, then with the right ones: the 200.
fn login(r: &mut Registrar, now: Millis, mut m: Reg) -> RegisterReply {
    m.auth = None;
    let ch = r.register(now, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert_eq!(ch.status, 401);
    m.auth = Some(answer(
        &ch,
        Algorithm::Sha256,
        m.user,
        "pw1001",
        1,
        "REGISTER",
    ));
    m.cseq += 1;
    r.register(now, src(), Transport::Udp, &build(&m, "REGISTER"))
}

#[test]
fn challenge_then_ok_with_contact_expires() {
    let mut r = registrar();
    let t0 = Millis(1_700_000_000_000);
    let ch = r.register(t0, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
    assert_eq!((ch.status, ch.reason.as_str()), (401, "Unauthorized"));
    let www: Vec<&str> = ch
        .headers
        .iter()
        .filter(|(n, _)| *n == "WWW-Authenticate")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(www.len(), 2);
    assert!(www[0].contains("algorithm=SHA-256"), "{}", www[0]);
    assert!(www[1].contains("algorithm=MD5"));
    assert!(www[0].contains("qop=\"auth\"") && www[0].contains("realm=\"ccswitch\""));
    assert!(!www[0].contains("stale"));
    assert!(ch.events.is_empty());
    assert!(!r.is_registered("1001"));

    for (nc, alg) in [(1, Algorithm::Sha256), (2, Algorithm::Md5)] {
        let mut m = reg("1001");
        m.cseq = 1 + nc;
        m.expires = Some("600");
        m.auth = Some(answer(&ch, alg, "1001", "pw1001", nc, "REGISTER"));
        let ok = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(ok.status, 200, "{alg:?} {ok:?}");
        assert_eq!(
            contact_header_values(&ok),
            vec!["<sip:1001@10.0.0.5:5062;transport=udp>;expires=600"]
        );
        assert_eq!(ok.header("Date"), Some("Tue, 14 Nov 2023 22:13:20 GMT"));
        if alg == Algorithm::Sha256 {
            assert!(matches!(
                &ok.events[..],
                [RegistrarEvent::Registered { extension, contact }]
                    if extension == "1001" && contact.source == src()
                        && contact.transport == Transport::Udp
                        && contact.expires_at == t0.plus(600_000)
            ));
        } else {
            // A refresh from the same place is silent.
            assert!(ok.events.is_empty());
        }
    }
    assert!(r.is_registered("1001"));
    assert_eq!(r.poll_timeout(), Some(t0.plus(600_000)));
}

#[test]
fn md5_only_agent_is_offered_md5_only() {
    let mut r = registrar();
    let ch = r.register(
        Millis(1000),
        src(),
        Transport::Udp,
        &build(&reg("1002"), "REGISTER"),
    );
    assert_eq!(ch.headers.len(), 1);
    assert!(ch.headers[0].1.contains("algorithm=MD5"));
    // Unknown users get both, like a known one would.
    let ch = r.register(
        Millis(1000),
        src(),
        Transport::Udp,
        &build(&reg("4242"), "REGISTER"),
    );
    assert_eq!(ch.status, 401);
    assert_eq!(ch.headers.len(), 2);
}

#[test]
fn wrong_password_then_block_then_unblocked() {
    let mut r = registrar();
    let t0 = Millis(10_000_000);
    let mut now = t0;
    let mut last = None;
    for i in 0..3 {
        let ch = r.register(now, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
        assert_eq!(ch.status, 401);
        let mut m = reg("1001");
        m.cseq = 2 + i;
        m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "nope", 1, "REGISTER"));
        let rep = r.register(now, src(), Transport::Udp, &build(&m, "REGISTER"));
        last = Some(rep.status);
        if i < 2 {
            assert_eq!(rep.status, 401, "failure {i}");
            assert!(rep.header("WWW-Authenticate").is_some());
        }
        now = now.plus(1000);
    }
    // The third failure blocks: 403 without a challenge, even for right credentials.
    assert_eq!(last, Some(403));
    let rep = r.register(now, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
    assert_eq!(rep.status, 403);
    assert!(rep.headers.is_empty());
    assert!(r.is_blocked(now, src().ip()));
    // Another address is not blocked.
    let other: SocketAddr = "198.51.100.1:5060".parse().unwrap();
    let rep = r.register(now, other, Transport::Udp, &build(&reg("1001"), "REGISTER"));
    assert_eq!(rep.status, 401);
    // After block_ms the address may try again.
    let later = t0.plus(2000 + 120_000);
    assert!(!r.is_blocked(later, src().ip()));
    assert_eq!(login(&mut r, later, reg("1001")).status, 200);
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    let mut r = registrar();
    let mut now = Millis(5_000_000);
    for i in 0..6 {
        let ch = r.register(now, src(), Transport::Udp, &build(&reg("4242"), "REGISTER"));
        let mut m = reg("4242");
        m.cseq = 2 + i;
        m.auth = Some(answer(&ch, Algorithm::Md5, "4242", "x", 1, "REGISTER"));
        let rep = r.register(now, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 401, "unknown user, failure {i}");
        now = now.plus(40_000);
    }
}

#[test]
fn stale_nonce_gets_stale_true_and_forged_nonce_too() {
    let mut r = registrar();
    let t0 = Millis(50_000_000);
    let ch = r.register(t0, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
    let mut m = reg("1001");
    m.cseq = 2;
    m.auth = Some(answer(
        &ch,
        Algorithm::Sha256,
        "1001",
        "pw1001",
        1,
        "REGISTER",
    ));
    let late = t0.plus(300_001);
    let rep = r.register(late, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 401);
    assert!(rep.headers.iter().all(|(_, v)| v.ends_with("stale=true")));
    // A nonce we did not make (another process's secret), right password: stale.
    let mut other = Registrar::new(Arc::clone(&r.dir), cfg(), [9; 32]);
    let ch2 = other.register(
        late,
        src(),
        Transport::Udp,
        &build(&reg("1001"), "REGISTER"),
    );
    m.cseq = 3;
    m.auth = Some(answer(
        &ch2,
        Algorithm::Md5,
        "1001",
        "pw1001",
        1,
        "REGISTER",
    ));
    let rep = r.register(late, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 401);
    assert!(rep.headers[0].1.contains("stale=true"));
    // Neither counted as a failure.
    assert!(r.failures.is_empty());
    // The fresh nonce works.
    m.cseq = 4;
    m.auth = Some(answer(
        &rep,
        Algorithm::Md5,
        "1001",
        "pw1001",
        1,
        "REGISTER",
    ));
    assert_eq!(
        r.register(late, src(), Transport::Udp, &build(&m, "REGISTER"))
            .status,
        200
    );
}

#[test]
fn nc_replay_is_challenged() {
    let mut r = registrar();
    let t0 = Millis(60_000_000);
    let ch = r.register(t0, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
    let mut m = reg("1001");
    m.cseq = 2;
    m.auth = Some(answer(
        &ch,
        Algorithm::Sha256,
        "1001",
        "pw1001",
        5,
        "REGISTER",
    ));
    assert_eq!(
        r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"))
            .status,
        200
    );
    // The same credentials again (a captured request replayed), and a lower nc.
    for nc in [5, 4] {
        m.cseq += 1;
        m.auth = Some(answer(
            &ch,
            Algorithm::Sha256,
            "1001",
            "pw1001",
            nc,
            "REGISTER",
        ));
        let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 401, "nc {nc}");
        assert!(!rep.headers[0].1.contains("stale"));
    }
    // The next nc on the same nonce is fine (a phone's refresh).
    m.cseq += 1;
    m.auth = Some(answer(
        &ch,
        Algorithm::Sha256,
        "1001",
        "pw1001",
        6,
        "REGISTER",
    ));
    assert_eq!(
        r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"))
            .status,
        200
    );
}

#[test]
fn to_user_must_be_the_authenticated_user() {
    let mut r = registrar();
    let t0 = Millis(1000);
    let ch = r.register(t0, src(), Transport::Udp, &build(&reg("1002"), "REGISTER"));
    let mut m = reg("1002");
    m.cseq = 2;
    // 1001's credentials in a REGISTER for 1002.
    m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER"));
    let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 403);
    assert!(!r.is_registered("1002") && !r.is_registered("1001"));
}

#[test]
fn expiry_unregisters_and_expires_zero_removes_one() {
    let mut r = registrar();
    let t0 = Millis(1_000_000);
    let mut m = reg("1001");
    m.contacts = vec![
        "<sip:1001@10.0.0.5:5062>;expires=120",
        "\"Desk, 2\" <sip:1001@10.0.0.6:5060>",
    ];
    m.expires = Some("300");
    let ok = login(&mut r, t0, m);
    assert_eq!(ok.status, 200);
    assert_eq!(
        contact_header_values(&ok),
        vec![
            "<sip:1001@10.0.0.5:5062>;expires=120",
            "<sip:1001@10.0.0.6:5060>;expires=300"
        ]
    );
    assert_eq!(ok.events.len(), 2);
    assert_eq!(r.contacts("1001").len(), 2);
    assert_eq!(r.poll_timeout(), Some(t0.plus(120_000)));
    assert!(r.handle_timeout(t0.plus(119_999)).is_empty());
    let ev = r.handle_timeout(t0.plus(120_000));
    assert_eq!(
        ev,
        vec![RegistrarEvent::Unregistered {
            extension: "1001".into(),
            contact_uri: "sip:1001@10.0.0.5:5062".into(),
            why: UnregisterReason::Expired
        }]
    );
    assert!(r.is_registered("1001"));
    // Expires: 0 on the remaining one (the phone reuses its nonce with nc 2).
    let ch_nonce = r.new_nonce(t0.plus(130_000), "ccswitch");
    let mut m = reg("1001");
    m.contacts = vec!["<sip:1001@10.0.0.6:5060>"];
    m.expires = Some("0");
    m.call_id = "reg-2";
    m.auth = Some(answer_nonce(
        &ch_nonce,
        None,
        Algorithm::Md5,
        "1001",
        "pw1001",
        1,
        "REGISTER",
    ));
    let rep = r.register(
        t0.plus(130_000),
        src(),
        Transport::Udp,
        &build(&m, "REGISTER"),
    );
    assert_eq!(rep.status, 200);
    assert_eq!(contact_header_values(&rep), Vec::<&str>::new());
    assert_eq!(
        rep.events,
        vec![RegistrarEvent::Unregistered {
            extension: "1001".into(),
            contact_uri: "sip:1001@10.0.0.6:5060".into(),
            why: UnregisterReason::Expires0
        }]
    );
    assert!(!r.is_registered("1001"));
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn star_removes_all_and_needs_expires_zero() {
    let mut r = registrar();
    let t0 = Millis(1_000_000);
    let mut m = reg("1001");
    m.contacts = vec!["<sip:a@10.0.0.5>, <sip:b@10.0.0.5>", "<sip:c@10.0.0.5>"];
    assert_eq!(login(&mut r, t0, m).status, 200);
    assert_eq!(r.contacts("1001").len(), 3);
    let mut m = reg("1001");
    m.contacts = vec!["*"];
    m.cseq = 10;
    let ch = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
    m.cseq = 11;
    m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER"));
    // `*` without Expires: 0 is a bad request.
    let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 400);
    m.cseq = 12;
    m.expires = Some("0");
    m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 2, "REGISTER"));
    let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 200);
    assert_eq!(rep.events.len(), 3);
    assert!(rep.events.iter().all(|e| matches!(
        e,
        RegistrarEvent::Unregistered {
            why: UnregisterReason::Expires0,
            ..
        }
    )));
    assert!(!r.is_registered("1001"));
}

#[test]
fn interval_too_brief_and_clamp() {
    let mut r = registrar();
    let t0 = Millis(1_000_000);
    let mut m = reg("1001");
    m.expires = Some("30");
    let ch = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
    m.cseq = 2;
    m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER"));
    let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert_eq!(
        (rep.status, rep.reason.as_str()),
        (423, "Interval Too Brief")
    );
    assert_eq!(rep.header("Min-Expires"), Some("60"));
    assert!(!r.is_registered("1001"));
    m.cseq = 3;
    m.expires = Some("99999999999");
    m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 2, "REGISTER"));
    let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 200);
    assert!(contact_header_values(&rep)[0].ends_with(";expires=3600"));
    // No Expires at all: the default.
    let mut m = reg("1001");
    m.cseq = 4;
    m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 3, "REGISTER"));
    let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert!(contact_header_values(&rep)[0].ends_with(";expires=1800"));
}

#[test]
fn new_source_replaces_and_same_call_id_moves_contact() {
    let mut r = registrar();
    let t0 = Millis(1_000_000);
    assert_eq!(login(&mut r, t0, reg("1001")).status, 200);
    // The same contact now from another address (NAT rebinding): replaced.
    let nat: SocketAddr = "203.0.113.9:40000".parse().unwrap();
    let ch_nonce = r.new_nonce(t0, "ccswitch");
    let mut m = reg("1001");
    m.cseq = 5;
    m.auth = Some(answer_nonce(
        &ch_nonce,
        None,
        Algorithm::Md5,
        "1001",
        "pw1001",
        1,
        "REGISTER",
    ));
    let rep = r.register(t0.plus(1000), nat, Transport::Tcp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 200);
    assert!(matches!(
        &rep.events[..],
        [RegistrarEvent::Unregistered { why: UnregisterReason::Replaced, .. },
         RegistrarEvent::Registered { contact, .. }]
            if contact.source == nat && contact.transport == Transport::Tcp
    ));
    // The same phone (Call-ID) registers a new contact: the old one goes.
    m.cseq = 6;
    m.contacts = vec!["<sip:1001@203.0.113.9:40000;ob>"];
    m.auth = Some(answer_nonce(
        &ch_nonce,
        None,
        Algorithm::Md5,
        "1001",
        "pw1001",
        2,
        "REGISTER",
    ));
    let rep = r.register(t0.plus(2000), nat, Transport::Tcp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 200);
    assert_eq!(r.contacts("1001").len(), 1);
    assert_eq!(r.contacts("1001")[0].uri, "sip:1001@203.0.113.9:40000;ob");
    // An older CSeq on the same Call-ID is refused.
    m.cseq = 3;
    m.auth = Some(answer_nonce(
        &ch_nonce,
        None,
        Algorithm::Md5,
        "1001",
        "pw1001",
        3,
        "REGISTER",
    ));
    let rep = r.register(t0.plus(3000), nat, Transport::Tcp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 500);
    // Several phones (different Call-IDs) coexist, up to the cap.
    for i in 0..(MAX_CONTACTS_PER_AGENT + 2) {
        let cid = format!("phone-{i}");
        let uri = format!("<sip:1001@10.1.0.{i}:5060>");
        let mut m = reg("1001");
        m.call_id = &cid;
        m.contacts = vec![&uri];
        m.auth = Some(answer_nonce(
            &ch_nonce,
            None,
            Algorithm::Md5,
            "1001",
            "pw1001",
            10 + i as u32,
            "REGISTER",
        ));
        let rep = r.register(
            t0.plus(4000 + i as u64),
            src(),
            Transport::Udp,
            &build(&m, "REGISTER"),
        );
        assert_eq!(rep.status, 200);
    }
    assert_eq!(r.contacts("1001").len(), MAX_CONTACTS_PER_AGENT);
    assert!(r.contacts("1001").iter().any(|b| b.call_id == "phone-11"));
}

#[test]
fn invite_feature_code_uses_407() {
    let mut r = registrar();
    let t0 = Millis(1_000_000);
    let mut m = reg("1001");
    m.contacts = vec!["<sip:1001@10.0.0.5:5062>"];
    let inv = build(&m, "INVITE");
    let AuthResult::Challenge(ch) = r.authenticate_request(t0, src(), &inv) else {
        panic!("challenge expected");
    };
    assert_eq!(
        (ch.status, ch.reason.as_str()),
        (407, "Proxy Authentication Required")
    );
    assert_eq!(ch.headers[0].0, "Proxy-Authenticate");
    m.cseq = 2;
    m.auth = Some(answer(
        &ch,
        Algorithm::Sha256,
        "1001",
        "pw1001",
        1,
        "INVITE",
    ));
    assert_eq!(
        r.authenticate_request(t0, src(), &build(&m, "INVITE")),
        AuthResult::Ok("1001".into())
    );
    // Credentials for REGISTER do not authenticate an INVITE (method is hashed).
    m.cseq = 3;
    m.auth = Some(answer(
        &ch,
        Algorithm::Sha256,
        "1001",
        "pw1001",
        2,
        "REGISTER",
    ));
    assert!(matches!(
        r.authenticate_request(t0, src(), &build(&m, "INVITE")),
        AuthResult::Challenge(_)
    ));
}

#[test]
fn garbage_credentials_never_panic_and_count_as_failures() {
    let mut r = registrar();
    let t0 = Millis(1_000_000);
    for (i, junk) in [
            "Digest",
            "Digest username=\"1001\"",
            "Basic Zm9vOmJhcg==",
            "Digest username=\"1001\", realm=\"ccswitch\", nonce=\"zz\", uri=\"sip:ccswitch.example\", response=\"00\"",
        ]
        .iter()
        .enumerate()
        {
            let mut m = reg("1001");
            m.cseq = i as u32 + 1;
            m.auth = Some(junk.to_string());
            let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
            assert!(matches!(rep.status, 401 | 403), "{junk}: {}", rep.status);
        }
    assert!(r.is_blocked(t0, src().ip()));
}

#[test]
fn digest_uri_must_match() {
    let mut r = registrar();
    let ch = r.register(
        Millis(1),
        src(),
        Transport::Udp,
        &build(&reg("1001"), "REGISTER"),
    );
    let mut m = reg("1001");
    m.cseq = 2;
    m.auth = Some(
        answer(&ch, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER")
            .replace("uri=\"sip:ccswitch.example\"", "uri=\"sip:other.example\""),
    );
    assert_eq!(
        r.register(Millis(1), src(), Transport::Udp, &build(&m, "REGISTER"))
            .status,
        400
    );
}

#[test]
fn nonce_table_is_bounded_and_evicted_nonces_are_stale() {
    let mut r = registrar();
    let t0 = Millis(1_000_000);
    let first = r.new_nonce(t0, "ccswitch");
    let mut m = reg("1001");
    m.auth = Some(answer_nonce(
        &first,
        None,
        Algorithm::Md5,
        "1001",
        "pw1001",
        1,
        "REGISTER",
    ));
    assert_eq!(
        r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"))
            .status,
        200
    );
    // Pretend the table overflowed past the first nonce.
    r.nc_floor = t0.as_u64() + 1;
    r.nc_seen.clear();
    m.cseq = 2;
    m.auth = Some(answer_nonce(
        &first,
        None,
        Algorithm::Md5,
        "1001",
        "pw1001",
        1,
        "REGISTER",
    ));
    let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 401);
    assert!(rep.headers[0].1.contains("stale=true"));
}

#[test]
fn one_of_several_credentials_may_verify() {
    let mut r = registrar();
    let t0 = Millis(1_000_000);
    let ch = r.register(t0, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
    let good = answer(&ch, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER");
    let bad = answer(&ch, Algorithm::Sha256, "1001", "garbled", 1, "REGISTER");
    let mut m = reg("1001");
    m.cseq = 2;
    m.auth = Some(format!("{bad}\r\nAuthorization: {good}"));
    let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 200);
    assert!(r.failures.is_empty());
    // Only an unsupported algorithm: re-challenged, not counted.
    let mut m = reg("1001");
    m.cseq = 3;
    m.auth = Some(good.replace("algorithm=MD5", "algorithm=MD5-sess"));
    let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
    assert_eq!(rep.status, 401);
    assert!(r.failures.is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    /// Whatever a peer puts in Authorization, Contact and Expires: no panic, and only
    /// the statuses a registrar gives.
    #[test]
    fn peer_input_never_panics(
        auth in "[ -~]{0,120}",
        contact in proptest::prop_oneof![
            "<sip:1001@10\\.0\\.0\\.[0-9]{1,2}>;expires=[0-9]{0,6}",
            "\\*",
            "<sip:[a-z]{1,4}@h>, <sip:[a-z]{1,4}@h>;q=0\\.[0-9]",
            "[ -~]{0,60}",
        ],
        expires in proptest::prop_oneof!["[0-9]{1,5}", "[0-9a-z]{0,8}"],
        digest_like in proptest::bool::ANY,
        valid_creds in proptest::bool::ANY,
    ) {
        let mut r = registrar();
        let auth = if digest_like { format!("Digest {auth}") } else { auth };
        let text = format!(
            "REGISTER sip:ccswitch.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\r\nFrom: <sip:1001@x>;tag=1\r\nTo: <sip:1001@x>\r\nCall-ID: p\r\nCSeq: 1 REGISTER\r\nContact: {contact}\r\nExpires: {expires}\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n"
        );
        if let Ok(Message::Request(mut req)) = parse(text.as_bytes()) {
            // Half the time with credentials that verify, to reach the binding code.
            if valid_creds {
                let nonce = r.new_nonce(Millis(1), "ccswitch");
                // The template's Request-URI is the one `answer_nonce` signs.
                let ok = answer_nonce(&nonce, None, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER");
                req.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("Authorization"));
                req.headers.push(("Authorization".into(), ok));
            }
            let rep = r.register(Millis(1), src(), Transport::Udp, &req);
            proptest::prop_assert!(matches!(rep.status, 200 | 400 | 401 | 403 | 423 | 500));
            let _ = r.authenticate_request(Millis(2), src(), &req);
            let _ = r.handle_timeout(Millis(u64::MAX));
        }
    }
}

/// RFC 7118: a contact registered over a WebSocket (`.invalid` host, `transport=ws`) is
/// bound to that connection; its closing removes exactly the bindings made over it.
#[test]
fn ws_contact_goes_with_its_connection() {
    let mut r = registrar();
    let t0 = Millis(1_700_000_000_000);
    let ws_a: SocketAddr = "192.0.2.7:40001".parse().unwrap();
    let ws_b: SocketAddr = "192.0.2.7:40002".parse().unwrap();
    let mut m = reg("1001");
    m.contacts = vec!["<sip:abc@df7jal23ls0d.invalid;transport=ws>;+sip.ice"];
    let ch = r.register(t0, ws_a, Transport::Ws, &build(&m, "REGISTER"));
    assert_eq!(ch.status, 401);
    m.auth = Some(answer(
        &ch,
        Algorithm::Sha256,
        "1001",
        "pw1001",
        1,
        "REGISTER",
    ));
    m.cseq = 2;
    let ok = r.register(t0, ws_a, Transport::Ws, &build(&m, "REGISTER"));
    assert_eq!(ok.status, 200, "{ok:?}");
    let b = &r.contacts("1001")[0];
    assert_eq!(
        (b.uri.as_str(), b.source, b.transport),
        (
            "sip:abc@df7jal23ls0d.invalid;transport=ws",
            ws_a,
            Transport::Ws
        )
    );
    // Another connection closing (or the same address over TCP) touches nothing.
    assert!(r.connection_closed(Transport::Ws, ws_b).is_empty());
    assert!(r.connection_closed(Transport::Tcp, ws_a).is_empty());
    assert!(r.is_registered("1001"));
    let gone = r.connection_closed(Transport::Ws, ws_a);
    assert!(matches!(
        &gone[..],
        [RegistrarEvent::Unregistered { extension, why: UnregisterReason::ConnectionClosed, .. }]
            if extension == "1001"
    ));
    assert!(!r.is_registered("1001"));
    assert_eq!(r.poll_timeout(), None);
}
