//! REGISTER as Linphone (belle-sip) and pjsua send it, byte for byte in shape, through
//! `proto::sip::parse` and the registrar with the shipped `config/agents.toml`; the digest
//! responses are computed here independently of `proto::digest` (md-5 / sha2 directly).
//! The replies are written with `proto::sip::response` and parsed back as a phone would.

use ccswitch::config::agents::AgentDirectory;
use ccswitch::engine::registrar::{
    AuthResult, RegisterReply, Registrar, RegistrarEvent, UnregisterReason,
};
use ccswitch::engine::{Millis, Transport};
use ccswitch::proto::sip::{self, Message, Request, Response, ResponseOpts};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

const T0: Millis = Millis(1_795_000_000_000);

fn shipped() -> Registrar {
    let dir = AgentDirectory::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join("agents.toml"),
    )
    .unwrap();
    assert_eq!(dir.len(), 3);
    let cfg = dir.registrar.clone();
    Registrar::new(Arc::new(dir), cfg, *b"0123456789abcdef0123456789abcdef")
}

fn h(alg: &str, s: &str) -> String {
    match alg {
        "MD5" => hex::encode(Md5::digest(s.as_bytes())),
        "SHA-256" => hex::encode(Sha256::digest(s.as_bytes())),
        _ => unreachable!(),
    }
}

/// RFC 7616 3.4.1, qop=auth, by hand.
#[allow(clippy::too_many_arguments)] // the RFC's own inputs, named
fn digest_response(
    alg: &str,
    user: &str,
    pw: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
) -> String {
    let ha1 = h(alg, &format!("{user}:ccswitch:{pw}"));
    let ha2 = h(alg, &format!("{method}:{uri}"));
    h(alg, &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
}

fn request(text: &str) -> Request {
    let text = text.replace('\n', "\r\n");
    match sip::parse(text.as_bytes()).expect("parses") {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

/// The reply as bytes on the wire, parsed back.
fn wire(req: &Request, reply: &RegisterReply, source: SocketAddr) -> Response {
    let bytes = sip::response(
        req,
        reply.status,
        &reply.reason,
        &ResponseOpts {
            to_tag: Some("srv1"),
            extra_headers: reply.headers.clone(),
            source: Some(source),
            ..Default::default()
        },
    );
    match sip::parse(&bytes).expect("our reply parses") {
        Message::Response(r) => r,
        Message::Request(_) => panic!("not a response"),
    }
}

/// (nonce, opaque) of the challenge for `alg` in a parsed 401/407.
fn challenge_for(resp: &Response, header: &str, alg: &str) -> (String, String, bool) {
    for (n, v) in &resp.headers {
        if !n.eq_ignore_ascii_case(header) {
            continue;
        }
        let c = ccswitch::proto::digest::parse_credentials(v).expect("challenge parses");
        if c.algorithm() == Some(alg) {
            assert_eq!(c.qop(), Some("auth"));
            assert_eq!(c.realm(), Some("ccswitch"));
            return (
                c.nonce().unwrap().to_string(),
                c.opaque().unwrap().to_string(),
                c.get("stale") == Some("true"),
            );
        }
    }
    panic!("no {alg} challenge in {resp:?}");
}

fn linphone_register(cseq: u32, expires: u32, auth: Option<&str>) -> String {
    let mut s = format!(
        "REGISTER sip:192.0.2.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.23:5060;branch=z9hG4bK.kU7eXq1B{cseq};rport
From: <sip:1001@192.0.2.1>;tag=ZrO9Kv4fT
To: sip:1001@192.0.2.1
CSeq: {cseq} REGISTER
Call-ID: 4dQ8l3pG-R
Max-Forwards: 70
Supported: replaces, outbound, gruu, path
Accept: application/sdp
Accept: text/plain
Contact: <sip:1001@10.0.0.23;transport=udp>;+sip.instance=\"<urn:uuid:8d2f1b8c-3d7e-4f5e-9d8c-2a4b6c8e0f12>\";+org.linphone.specs=\"lime,ephemeral\";expires={expires}
Expires: {expires}
User-Agent: LinphoneAndroid/5.2.5 (Pixel 7) LinphoneSDK/5.3.47 (tags/5.3.47^0)
"
    );
    if let Some(a) = auth {
        s.push_str(&format!("Authorization:  {a}\n"));
    }
    s.push_str("Content-Length: 0\n\n");
    s
}

#[test]
fn linphone_sha256_register_refresh_and_unregister() {
    let mut reg = shipped();
    let nat: SocketAddr = "203.0.113.20:38211".parse().unwrap();

    let req = request(&linphone_register(20, 3600, None));
    let r = reg.register(T0, nat, Transport::Udp, &req);
    let resp = wire(&req, &r, nat);
    assert_eq!(resp.status, 401);
    // SHA-256 is offered first, MD5 second.
    let auths: Vec<&str> = resp
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("WWW-Authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(auths.len(), 2, "{resp:?}");
    assert!(auths[0].contains("algorithm=SHA-256"));
    let (nonce, opaque, stale) = challenge_for(&resp, "WWW-Authenticate", "SHA-256");
    assert!(!stale);

    // belle-sip's Authorization layout.
    let cnonce = "lVkr8ZbqVVr7dQwR";
    let resp_hash = digest_response(
        "SHA-256",
        "1001",
        "demo1001",
        "REGISTER",
        "sip:192.0.2.1",
        &nonce,
        "00000001",
        cnonce,
    );
    let auth = format!(
        "Digest realm=\"ccswitch\", nonce=\"{nonce}\", algorithm=SHA-256, opaque=\"{opaque}\", username=\"1001\",  uri=\"sip:192.0.2.1\", response=\"{resp_hash}\", cnonce=\"{cnonce}\", nc=00000001, qop=auth"
    );
    let req = request(&linphone_register(21, 3600, Some(&auth)));
    let r = reg.register(T0.plus(40), nat, Transport::Udp, &req);
    let resp = wire(&req, &r, nat);
    assert_eq!(resp.status, 200, "{r:?}");
    let contact = resp.header("Contact").unwrap();
    assert_eq!(contact, "<sip:1001@10.0.0.23;transport=udp>;expires=3600");
    assert!(resp.header("Date").unwrap().ends_with(" GMT"));
    let b = &reg.contacts("1001")[0];
    assert_eq!(b.source, nat, "offers go where the REGISTER came from");
    assert_eq!(b.uri, "sip:1001@10.0.0.23;transport=udp");
    assert!(
        matches!(&r.events[..], [RegistrarEvent::Registered { extension, .. }] if extension == "1001")
    );

    // Refresh half-way with the same nonce, nc 2 (belle-sip reuses its nonce).
    let at = T0.plus(1_800_000);
    let resp_hash = digest_response(
        "SHA-256",
        "1001",
        "demo1001",
        "REGISTER",
        "sip:192.0.2.1",
        &nonce,
        "00000002",
        cnonce,
    );
    let auth2 = format!(
        "Digest realm=\"ccswitch\", nonce=\"{nonce}\", algorithm=SHA-256, opaque=\"{opaque}\", username=\"1001\",  uri=\"sip:192.0.2.1\", response=\"{resp_hash}\", cnonce=\"{cnonce}\", nc=00000002, qop=auth"
    );
    let req = request(&linphone_register(22, 3600, Some(&auth2)));
    let r = reg.register(at, nat, Transport::Udp, &req);
    // The nonce is 30 minutes old, over the shipped 300 s lifetime: stale, no failure.
    assert_eq!(r.status, 401);
    let resp = wire(&req, &r, nat);
    let (nonce2, opaque2, stale) = challenge_for(&resp, "WWW-Authenticate", "SHA-256");
    assert!(stale);
    let resp_hash = digest_response(
        "SHA-256",
        "1001",
        "demo1001",
        "REGISTER",
        "sip:192.0.2.1",
        &nonce2,
        "00000001",
        cnonce,
    );
    let auth3 = format!(
        "Digest realm=\"ccswitch\", nonce=\"{nonce2}\", algorithm=SHA-256, opaque=\"{opaque2}\", username=\"1001\",  uri=\"sip:192.0.2.1\", response=\"{resp_hash}\", cnonce=\"{cnonce}\", nc=00000001, qop=auth"
    );
    let req = request(&linphone_register(23, 3600, Some(&auth3)));
    let r = reg.register(at, nat, Transport::Udp, &req);
    assert_eq!(r.status, 200);
    assert!(r.events.is_empty(), "a refresh is silent");
    assert_eq!(reg.poll_timeout(), Some(at.plus(3_600_000)));

    // Unregister: Expires: 0 and ;expires=0, next nc on the fresh nonce.
    let resp_hash = digest_response(
        "SHA-256",
        "1001",
        "demo1001",
        "REGISTER",
        "sip:192.0.2.1",
        &nonce2,
        "00000002",
        cnonce,
    );
    let auth4 = format!(
        "Digest realm=\"ccswitch\", nonce=\"{nonce2}\", algorithm=SHA-256, opaque=\"{opaque2}\", username=\"1001\",  uri=\"sip:192.0.2.1\", response=\"{resp_hash}\", cnonce=\"{cnonce}\", nc=00000002, qop=auth"
    );
    let req = request(&linphone_register(24, 0, Some(&auth4)));
    let r = reg.register(at.plus(60_000), nat, Transport::Udp, &req);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.events,
        vec![RegistrarEvent::Unregistered {
            extension: "1001".into(),
            contact_uri: "sip:1001@10.0.0.23;transport=udp".into(),
            why: UnregisterReason::Expires0,
        }]
    );
    assert!(!reg.is_registered("1001"));
    // The captured unregister replayed: refused with a fresh challenge.
    let r = reg.register(at.plus(61_000), nat, Transport::Udp, &req);
    assert_eq!(r.status, 401);
}

fn pjsua_register(cseq: u32, contact: &str, expires: u32, auth: Option<&str>) -> String {
    let mut s = format!(
        "REGISTER sip:192.0.2.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.42:5060;rport;branch=z9hG4bKPj5d3e0b6c-8f1a-4c2b-9e7d-{cseq:012}
Max-Forwards: 70
From: <sip:1002@192.0.2.1>;tag=0a1b2c3d-4e5f-6789-abcd-ef0123456789
To: <sip:1002@192.0.2.1>
Call-ID: 2c6f8e1a-3b5d-4f7e-9a1c-2e4f6a8b0c1d
CSeq: {cseq} REGISTER
User-Agent: PJSUA v2.14.1 Linux-6.1/x86_64/glibc-2.36
Contact: <{contact}>
Expires: {expires}
Allow: PRACK, INVITE, ACK, BYE, CANCEL, UPDATE, INFO, SUBSCRIBE, NOTIFY, REFER, MESSAGE, OPTIONS
"
    );
    if let Some(a) = auth {
        s.push_str(&format!("Authorization: {a}\n"));
    }
    s.push_str("Content-Length:  0\n\n");
    s
}

fn pjsua_auth(nonce: &str, opaque: &str, nc: u32, pw: &str) -> String {
    let nc = format!("{nc:08x}");
    let cnonce = "b1c3e5a7d9f24680aceb1357";
    let r = digest_response(
        "MD5",
        "1002",
        pw,
        "REGISTER",
        "sip:192.0.2.1",
        nonce,
        &nc,
        cnonce,
    );
    format!(
        "Digest username=\"1002\", realm=\"ccswitch\", nonce=\"{nonce}\", uri=\"sip:192.0.2.1\", response=\"{r}\", algorithm=MD5, cnonce=\"{cnonce}\", opaque=\"{opaque}\", qop=auth, nc={nc}"
    )
}

#[test]
fn pjsua_md5_contact_rewrite_expiry_and_brute_force_block() {
    let mut reg = shipped();
    let lan: SocketAddr = "10.0.0.42:5060".parse().unwrap();

    let req = request(&pjsua_register(
        57204,
        "sip:1002@10.0.0.42:5060;ob",
        300,
        None,
    ));
    let r = reg.register(T0, lan, Transport::Udp, &req);
    let resp = wire(&req, &r, lan);
    assert_eq!(resp.status, 401);
    let (nonce, opaque, _) = challenge_for(&resp, "WWW-Authenticate", "MD5");

    let auth = pjsua_auth(&nonce, &opaque, 1, "demo1002");
    let req = request(&pjsua_register(
        57205,
        "sip:1002@10.0.0.42:5060;ob",
        300,
        Some(&auth),
    ));
    let r = reg.register(T0, lan, Transport::Udp, &req);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        wire(&req, &r, lan).header("Contact"),
        Some("<sip:1002@10.0.0.42:5060;ob>;expires=300")
    );

    // pjsua rewrites its Contact to the public address (same Call-ID): the old one goes.
    let auth = pjsua_auth(&nonce, &opaque, 2, "demo1002");
    let req = request(&pjsua_register(
        57206,
        "sip:1002@203.0.113.5:40001;ob",
        300,
        Some(&auth),
    ));
    let r = reg.register(T0.plus(100), lan, Transport::Udp, &req);
    assert_eq!(r.status, 200);
    assert!(r.events.iter().any(|e| matches!(
        e,
        RegistrarEvent::Unregistered { why: UnregisterReason::Replaced, contact_uri, .. }
            if contact_uri == "sip:1002@10.0.0.42:5060;ob"
    )));
    assert_eq!(reg.contacts("1002").len(), 1);
    assert_eq!(reg.contacts("1002")[0].uri, "sip:1002@203.0.113.5:40001;ob");

    // Not refreshed: gone at expiry, the agent is out of routing.
    let due = reg.poll_timeout().unwrap();
    assert_eq!(due, T0.plus(100 + 300_000));
    let ev = reg.handle_timeout(due);
    assert!(matches!(
        &ev[..],
        [RegistrarEvent::Unregistered { extension, why: UnregisterReason::Expired, .. }]
            if extension == "1002"
    ));
    assert!(!reg.is_registered("1002"));

    // A password guesser from one address: five wrong answers (shipped max_failures),
    // then 403 without a challenge for block_s, even with the right password.
    let attacker: SocketAddr = "198.51.100.66:5060".parse().unwrap();
    let mut statuses = Vec::new();
    for i in 0..5u32 {
        let req = request(&pjsua_register(
            100 + 2 * i,
            "sip:1002@198.51.100.66",
            300,
            None,
        ));
        let r = reg.register(T0.plus(400_000), attacker, Transport::Udp, &req);
        let (nonce, opaque, _) =
            challenge_for(&wire(&req, &r, attacker), "WWW-Authenticate", "MD5");
        let auth = pjsua_auth(&nonce, &opaque, 1, &format!("guess{i}"));
        let req = request(&pjsua_register(
            101 + 2 * i,
            "sip:1002@198.51.100.66",
            300,
            Some(&auth),
        ));
        statuses.push(
            reg.register(T0.plus(400_000), attacker, Transport::Udp, &req)
                .status,
        );
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 403]);
    let req = request(&pjsua_register(200, "sip:1002@198.51.100.66", 300, None));
    let r = reg.register(T0.plus(401_000), attacker, Transport::Udp, &req);
    assert_eq!(r.status, 403);
    assert!(r.headers.is_empty());
    // The real phone elsewhere is unaffected.
    let req = request(&pjsua_register(
        57300,
        "sip:1002@10.0.0.42:5060;ob",
        300,
        None,
    ));
    assert_eq!(
        reg.register(T0.plus(401_000), lan, Transport::Udp, &req)
            .status,
        401
    );
    // After block_s (shipped 300 s) the address is challenged again.
    let r = reg.register(
        T0.plus(400_000 + 300_000),
        attacker,
        Transport::Udp,
        &request(&pjsua_register(201, "sip:1002@198.51.100.66", 300, None)),
    );
    assert_eq!(r.status, 401);
}

#[test]
fn softphone_dials_a_feature_code_with_proxy_auth() {
    let mut reg = shipped();
    let src: SocketAddr = "10.0.0.23:5060".parse().unwrap();
    let invite = |cseq: u32, auth: Option<&str>| {
        let mut s = format!(
            "INVITE sip:*21@192.0.2.1 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.23:5060;branch=z9hG4bK.inv{cseq};rport
From: \"Chen\" <sip:1003@192.0.2.1>;tag=Hq1
To: sip:*21@192.0.2.1
CSeq: {cseq} INVITE
Call-ID: fc-21-abc
Max-Forwards: 70
Contact: <sip:1003@10.0.0.23;transport=udp>
Content-Length: 0
"
        );
        if let Some(a) = auth {
            s.insert_str(
                s.find("Content-Length").unwrap(),
                &format!("Proxy-Authorization: {a}\n"),
            );
        }
        s.push('\n');
        request(&s)
    };
    let req = invite(1, None);
    let AuthResult::Challenge(r) = reg.authenticate_request(T0, src, &req) else {
        panic!("expected a 407 challenge");
    };
    let resp = wire(&req, &r, src);
    assert_eq!(resp.status, 407);
    let (nonce, opaque, _) = challenge_for(&resp, "Proxy-Authenticate", "MD5");
    let hash = digest_response(
        "MD5",
        "1003",
        "demo1003",
        "INVITE",
        "sip:*21@192.0.2.1",
        &nonce,
        "00000001",
        "x1",
    );
    let auth = format!(
        "Digest username=\"1003\", realm=\"ccswitch\", nonce=\"{nonce}\", uri=\"sip:*21@192.0.2.1\", response=\"{hash}\", algorithm=MD5, cnonce=\"x1\", opaque=\"{opaque}\", qop=auth, nc=00000001"
    );
    assert_eq!(
        reg.authenticate_request(T0, src, &invite(2, Some(&auth))),
        AuthResult::Ok("1003".into())
    );
}
