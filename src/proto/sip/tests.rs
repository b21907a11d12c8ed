use super::*;
use crate::engine::Transport;
use proptest::prelude::*;
use std::net::SocketAddr;

const INVITE: &str = "INVITE sip:100@10.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:100@10.0.0.1>\r\n\
From: \"Alice\" <sip:alice@192.168.1.20:5062>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.168.1.20:5062;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 5\r\n\r\nv=0\r\n";

fn req(s: &str) -> Request {
    match parse(s.as_bytes()) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn err(s: &str) -> ParseError {
    match parse(s.as_bytes()) {
        Err(e) => e,
        Ok(m) => panic!("parsed: {m:?}"),
    }
}

#[test]
fn parses_a_linphone_style_invite() {
    let r = req(INVITE);
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri_user.as_deref(), Some("100"));
    assert_eq!(r.vias.len(), 1);
    let v = r.top_via();
    assert_eq!(
        (v.transport.as_str(), v.host.as_str(), v.port),
        ("UDP", "192.168.1.20", Some(5062))
    );
    assert_eq!(v.branch.as_deref(), Some("z9hG4bK776asdhds"));
    assert_eq!(v.rport, Some(None));
    assert_eq!(r.from.display.as_deref(), Some("Alice"));
    assert_eq!(r.from.tag.as_deref(), Some("1928301774"));
    assert_eq!(r.from.user.as_deref(), Some("alice"));
    assert_eq!(r.to.tag, None);
    assert_eq!(r.cseq, 314159);
    assert_eq!(r.max_forwards, Some(70));
    assert_eq!(
        r.contact.as_ref().map(|c| c.uri.as_str()),
        Some("sip:alice@192.168.1.20:5062;transport=udp")
    );
    assert_eq!(r.content_type.as_deref(), Some("application/sdp"));
    assert_eq!(&r.body[..], b"v=0\r\n");
    assert_eq!(r.header("content-length"), Some("5"));
    assert_eq!(r.header("l"), Some("5"));
    assert_eq!(r.header("i"), Some("a84b4c76e66710@pc33"));
}

#[test]
fn compact_headers_and_folding() {
    let r = req("OPTIONS sip:a@b.example SIP/2.0\r\nv: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx\r\nf: <sip:c@d.example>;tag=1\r\nt: sip:a@b.example\r\ni: x1\r\nCSeq: 1\r\n OPTIONS\r\nl: 0\r\n\r\n");
    assert_eq!(r.top_via().host, "2001:db8::1");
    assert_eq!(r.top_via().port, Some(5070));
    assert_eq!(r.call_id, "x1");
    assert_eq!(r.headers[0].0, "Via");
    assert_eq!(
        r.header("Via"),
        Some("SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx")
    );
}

#[test]
fn extension_method_and_tel_uri_parse() {
    let r = req("FOO tel:+15551234567 SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <tel:+15551234567>\r\nCall-ID: c\r\nCSeq: 2 FOO\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.method, Method::Other("FOO".into()));
    assert_eq!(r.cseq_method, Method::Other("FOO".into()));
    assert_eq!(r.uri_user.as_deref(), Some("+15551234567"));
    assert_eq!(r.to.user.as_deref(), Some("+15551234567"));
}

#[test]
fn extension_param_values_are_valid() {
    let r = req("OPTIONS sip:a@b.example;transport=foo;method=FOO SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b;transport=bar>;tag=77\r\nTo: <sip:c@d>\r\nCall-ID: c\r\nCSeq: 2 OPTIONS\r\nContact: <sip:x@y;transport=zzz>;expires=60\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.from.tag.as_deref(), Some("77"));
    assert_eq!(r.contact.unwrap().uri, "sip:x@y;transport=zzz");
    assert_eq!(r.uri_user.as_deref(), Some("a"));
}

#[test]
fn zoiper_register_and_jssip_invite() {
    let r = req("REGISTER sip:10.100.54.52:5060;transport=UDP SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.100.54.52:60901;branch=z9hG4bK-524287-1---0f3eb40b11f97a9c;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:6002@10.100.54.52:60901;rinstance=1964f334d2b5ba69;transport=UDP>\r\n\
To: <sip:6002@10.100.54.52:5060;transport=UDP>\r\n\
From: <sip:6002@10.100.54.52:5060;transport=UDP>;tag=5e00e125\r\n\
Call-ID: wSSsR1c-lUjKuRhxr0iEKA..\r\n\
CSeq: 1 REGISTER\r\n\
Expires: 70\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
User-Agent: Z 5.6.1 v2.10.19.9\r\n\
Allow-Events: presence, kpml, talk, as-feature-event\r\n\
Content-Length: 0\r\n\r\n");
    assert_eq!(r.method, Method::Register);
    assert_eq!(r.from.tag.as_deref(), Some("5e00e125"));
    assert_eq!(r.uri_user, None);
    assert_eq!(r.top_via().port, Some(60901));

    let r = req("INVITE sip:100@example.com SIP/2.0\r\n\
Via: SIP/2.0/WSS 2u5fcbg3dh6n.invalid;branch=z9hG4bK2334951\r\n\
Max-Forwards: 69\r\n\
To: <sip:100@example.com>\r\n\
From: \"Web\" <sip:web@example.com>;tag=mq3k5rpa6k\r\n\
Call-ID: 8prt6ge1sdvnvhh1snng\r\n\
CSeq: 3771 INVITE\r\n\
Contact: <sip:ke3q1b9i@2u5fcbg3dh6n.invalid;transport=ws;ob>;+sip.instance=\"<urn:uuid:7a0c4b9e-1c2d-4e5f-8a9b-0c1d2e3f4a5b>\";expires=600\r\n\
Session-Expires: 90\r\n\
Supported: timer,ice,replaces,outbound\r\n\
User-Agent: JsSIP 3.10.0\r\n\
Content-Length: 0\r\n\r\n");
    assert_eq!(r.top_via().transport, "WSS");
    assert_eq!(
        r.contact.unwrap().uri,
        "sip:ke3q1b9i@2u5fcbg3dh6n.invalid;transport=ws;ob"
    );
    assert_eq!(r.max_forwards, Some(69));
}

#[test]
fn unquoted_utf8_display_name_is_tolerated() {
    let r = req(&INVITE.replace("\"Alice\" <sip:alice", "Jürgen Müller <sip:alice"));
    assert_eq!(r.from.display.as_deref(), Some("Jürgen Müller"));
    let e = err(&INVITE.replace("\"Alice\" <sip:alice", "Müller, J <sip:alice"));
    assert_eq!(e.reason, "Bad Request: malformed From");
}

#[test]
fn faults_are_named_and_salvaged() {
    let no_callid = INVITE.replace("Call-ID: a84b4c76e66710@pc33\r\n", "");
    let e = err(&no_callid);
    assert_eq!(
        (e.status, e.reason.as_str()),
        (400, "Bad Request: missing Call-ID")
    );
    let s = e.salvage.expect("salvage");
    assert_eq!(s.vias.len(), 1);
    assert!(s.call_id.is_none());

    let e = err(&INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE"));
    assert_eq!(e.reason, "Bad Request: CSeq method does not match");
    let e = err(&INVITE.replace("Content-Length: 5", "Content-Length: 40"));
    assert_eq!(e.reason, "Bad Request: Content-Length exceeds body");
    let e = err(&INVITE.replace("Max-Forwards: 70", "Max-Forwards: x"));
    assert_eq!(e.reason, "Bad Request: invalid Max-Forwards");
    let e = err(&INVITE.replace("sip:100@10.0.0.1 SIP/2.0", "sip:100@10.0.0.1 SIP/3.0"));
    assert_eq!(e.status, 505);
    // A multi-byte character where "SIP/" would end must not panic a slice.
    let e = err(&INVITE.replace("sip:100@10.0.0.1 SIP/2.0", "sip:100@10.0.0.1 SIPé2.0"));
    assert_eq!(e.status, 400);
    let e = err(&INVITE.replace("INVITE sip:100@10.0.0.1", "INVITE mailto:x@y"));
    assert_eq!(e.status, 416);
    let e = err("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n");
    assert!(e.salvage.is_none());
}

#[test]
fn response_parse() {
    let m = parse(b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").unwrap();
    let Message::Response(r) = m else { panic!() };
    assert_eq!((r.status, r.reason.as_str()), (486, "Busy Here"));
    assert_eq!(r.to.tag.as_deref(), Some("2"));
}

#[test]
fn response_copies_vias_and_stamps_received_rport() {
    let r = req(&INVITE.replace(
        "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK776asdhds;rport\r\n",
        "Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK776asdhds;rport, SIP/2.0/UDP p.example;branch=z9hG4bK2\r\n",
    ));
    let src: SocketAddr = "203.0.113.5:40000".parse().unwrap();
    let out = response(
        &r,
        180,
        "Ringing",
        &ResponseOpts {
            to_tag: Some("abc"),
            source: Some(src),
            ..Default::default()
        },
    );
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.starts_with("SIP/2.0 180 Ringing\r\n"));
    assert!(text.contains("Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK776asdhds;rport=40000;received=203.0.113.5\r\nVia: SIP/2.0/UDP p.example;branch=z9hG4bK2\r\n"), "{text}");
    assert!(text.contains("To: <sip:100@10.0.0.1>;tag=abc\r\n"));
    assert!(text.contains("Server: ccswitch\r\nContent-Length: 0\r\n\r\n"));
    let Message::Response(p) = parse(&out).unwrap() else {
        panic!()
    };
    assert_eq!(p.vias[0].received.as_deref(), Some("203.0.113.5"));
    assert_eq!(p.vias[0].rport, Some(Some(40000)));
    assert_eq!(p.vias.len(), 2);

    // Same host, no rport: Via unchanged.
    let plain = req(&INVITE.replace(";rport", ""));
    let src: SocketAddr = "192.168.1.20:5062".parse().unwrap();
    let out = response(
        &plain,
        200,
        "OK",
        &ResponseOpts {
            source: Some(src),
            body: Some(("application/sdp", b"v=0\r\n")),
            ..Default::default()
        },
    );
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.contains("Via: SIP/2.0/UDP 192.168.1.20:5062;branch=z9hG4bK776asdhds\r\n"));
    assert!(text.ends_with("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"));
}

#[test]
fn error_response_from_salvage() {
    let e = err(&INVITE.replace("CSeq: 314159 INVITE", "CSeq: 99999999999 INVITE"));
    let src: SocketAddr = "203.0.113.5:40000".parse().unwrap();
    let out = error_response(e.salvage.as_ref().unwrap(), e.status, &e.reason, src).unwrap();
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.starts_with("SIP/2.0 400 Bad Request: CSeq number out of range\r\n"));
    assert!(text.contains("rport=40000;received=203.0.113.5"));
    assert!(text.contains("To: <sip:100@10.0.0.1>;tag="));
    assert!(error_response(&Salvage::default(), 400, "x", src).is_none());
}

#[test]
fn ack_for_error_response() {
    let inv = request(&RequestOpts {
        method: Method::Invite,
        uri: "sip:bob@10.0.0.2",
        transport: Transport::Udp,
        sent_by: "10.0.0.1:5060",
        branch: &new_branch(7),
        from: "<sip:ivr@10.0.0.1>;tag=f1",
        to: "<sip:bob@10.0.0.2>",
        call_id: "cid1",
        cseq: 5,
        contact: Some("<sip:ivr@10.0.0.1:5060>"),
        route: vec!["<sip:proxy.example;lr>".into()],
        extra_headers: vec![],
        body: None,
    });
    let resp = match parse(b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK0000000000000007;rport\r\nFrom: <sip:ivr@10.0.0.1>;tag=f1\r\nTo: <sip:bob@10.0.0.2>;tag=t9\r\nCall-ID: cid1\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n").unwrap() {
        Message::Response(r) => r,
        _ => panic!(),
    };
    let ack = ack_for_non2xx(&inv, &resp).unwrap();
    let a = req(std::str::from_utf8(&ack).unwrap());
    assert_eq!(a.method, Method::Ack);
    assert_eq!(a.uri, "sip:bob@10.0.0.2");
    assert_eq!(a.cseq, 5);
    assert_eq!(a.cseq_method, Method::Ack);
    assert_eq!(a.to.tag.as_deref(), Some("t9"));
    assert_eq!(
        a.top_via().branch.as_deref(),
        Some("z9hG4bK0000000000000007")
    );
    assert_eq!(a.header("Route"), Some("<sip:proxy.example;lr>"));
}

#[test]
fn branch_format() {
    assert_eq!(new_branch(0xab), "z9hG4bK00000000000000ab");
}

#[test]
fn tcp_framing() {
    assert_eq!(frame(b"\r\nINVITE"), Frame::KeepAlive(2));
    assert_eq!(
        frame(b"INVITE sip:a@b SIP/2.0\r\nVia: x"),
        Frame::Incomplete
    );
    let m = INVITE.as_bytes();
    assert_eq!(frame(m), Frame::Message(m.len()));
    let mut two = m.to_vec();
    two.extend_from_slice(m);
    assert_eq!(frame(&two), Frame::Message(m.len()));
    assert_eq!(frame(&m[..m.len() - 1]), Frame::Incomplete);
    let no_cl = INVITE.replace("Content-Length: 5\r\n", "");
    assert!(matches!(frame(no_cl.as_bytes()), Frame::Invalid(_)));
    let bad_cl = INVITE.replace("Content-Length: 5", "l: -4");
    assert!(matches!(frame(bad_cl.as_bytes()), Frame::Invalid(_)));
    assert_eq!(
        frame(&vec![b'a'; 70 * 1024]),
        Frame::TooLarge { header_end: None }
    );
}

/// RFC 5626 3.5.1: a double CRLF is a ping (answered with one CRLF), a single CRLF between
/// messages is ignored, and half a ping waits for the rest.
#[test]
fn keep_alive_ping_and_single_crlf() {
    assert_eq!(frame(b"\r\n\r\n"), Frame::Ping(4));
    assert_eq!(frame(b"\r\n\r\nINVITE"), Frame::Ping(4));
    assert_eq!(frame(b"\r\n"), Frame::Incomplete);
    assert_eq!(frame(b"\r\n\r"), Frame::Incomplete);
    assert_eq!(frame(b"\r\nOPTIONS"), Frame::KeepAlive(2));
    assert_eq!(frame(b"\n\n\n\n"), Frame::KeepAlive(4));
    assert!(!holds_partial_message(b"\r\n"));
    assert!(!holds_partial_message(b""));
    assert!(holds_partial_message(b"\r\nINV"));
}

/// RFC 3261 18.3 / 21.5.14: a message over the limit is TooLarge; with its header section
/// complete (so a 513 can be built) whether the body has arrived or only been announced.
#[test]
fn message_size_limit() {
    let m = INVITE.as_bytes();
    assert_eq!(frame_limited(m, m.len()), Frame::Message(m.len()));
    let header_end = INVITE.find("\r\n\r\n").unwrap() + 4;
    assert_eq!(
        frame_limited(m, m.len() - 1),
        Frame::TooLarge {
            header_end: Some(header_end)
        }
    );
    // Announced, not yet sent: refused at once rather than buffered.
    let huge = INVITE.replace("Content-Length: 5", "Content-Length: 900000");
    assert_eq!(
        frame_limited(&huge.as_bytes()[..header_end + 6], 4096),
        Frame::TooLarge {
            header_end: Some(header_end + 5)
        }
    );
    let absurd = INVITE.replace(
        "Content-Length: 5",
        "Content-Length: 99999999999999999999999",
    );
    assert!(matches!(
        frame_limited(absurd.as_bytes(), 4096),
        Frame::TooLarge {
            header_end: Some(_)
        }
    ));
    // Headers that never end: nothing to answer.
    let endless = format!("INVITE sip:a@b SIP/2.0\r\nX: {}", "a".repeat(5000));
    assert_eq!(
        frame_limited(endless.as_bytes(), 4096),
        Frame::TooLarge { header_end: None }
    );
    assert_eq!(
        frame_limited(&endless.as_bytes()[..4000], 4096),
        Frame::Incomplete
    );
}

/// The incremental framer agrees with the stateless one however the stream is cut.
#[test]
fn framer_matches_frame_on_every_split() {
    let mut stream = b"\r\n".to_vec();
    stream.extend_from_slice(INVITE.as_bytes());
    stream.extend_from_slice(b"\r\n\r\n");
    stream.extend_from_slice(INVITE.as_bytes());
    stream.extend_from_slice(b"\r\n");
    for chunk in [1, 2, 3, 5, 7, 64] {
        let (mut framer, mut buf, mut got, mut want) =
            (Framer::new(4096), Vec::new(), Vec::new(), Vec::new());
        let mut reference = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            reference.extend_from_slice(piece);
            loop {
                let f = framer.next(&buf);
                let g = frame_limited(&reference, 4096);
                assert_eq!(
                    f,
                    g,
                    "chunk {chunk}, buffered {:?}",
                    String::from_utf8_lossy(&buf)
                );
                let n = match f {
                    Frame::Incomplete => break,
                    Frame::KeepAlive(n) | Frame::Ping(n) | Frame::Message(n) => n,
                    other => panic!("{other:?}"),
                };
                got.push(f.clone());
                want.push(g);
                buf.drain(..n);
                reference.drain(..n);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame::KeepAlive(2),
                Frame::Message(INVITE.len()),
                Frame::Ping(4),
                Frame::Message(INVITE.len())
            ],
            "chunk {chunk}"
        );
        assert_eq!(got, want);
    }
    // Headers trickling past the limit are refused just the same.
    let mut framer = Framer::new(1024);
    let mut buf = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    let mut seen = Frame::Incomplete;
    for _ in 0..2000 {
        buf.push(b'a');
        seen = framer.next(&buf);
        if seen != Frame::Incomplete {
            break;
        }
    }
    assert_eq!(seen, Frame::TooLarge { header_end: None });
    assert_eq!(buf.len(), 1025);
}

#[test]
fn too_large_requests_get_513_responses_get_nothing() {
    let src: SocketAddr = "192.168.1.20:5062".parse().unwrap();
    let header_end = INVITE.find("\r\n\r\n").unwrap() + 4;
    let r = message_too_large(&INVITE.as_bytes()[..header_end], src).expect("a 513");
    let text = String::from_utf8_lossy(&r);
    assert!(
        text.starts_with("SIP/2.0 513 Message Too Large\r\n"),
        "{text}"
    );
    assert!(text.contains("branch=z9hG4bK776asdhds"), "{text}");
    assert!(text.contains("Call-ID: "), "{text}");
    assert_eq!(frame(&r), Frame::Message(r.len()));
    assert!(message_too_large(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\n\r\n",
        src
    )
    .is_none());
    assert!(message_too_large(
        b"ACK sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\n\r\n",
        src
    )
    .is_none());
    assert!(message_too_large(b"garbage\r\n\r\n", src).is_none());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse(&data);
        let _ = frame(&data);
    }

    #[test]
    fn mutated_invites_never_panic(pos in 0usize..600, byte in any::<u8>(), cut in 0usize..700) {
        let mut m = INVITE.as_bytes().to_vec();
        if pos < m.len() { m[pos] = byte; }
        m.truncate(cut.min(m.len()));
        if let Err(e) = parse(&m) {
            if let Some(s) = e.salvage {
                let _ = error_response(&s, e.status, &e.reason, "127.0.0.1:5060".parse().unwrap());
            }
        }
        let _ = frame(&m);
    }

    #[test]
    fn request_round_trips(user in "[a-z0-9]{1,12}", host in "[a-z]{1,10}\\.example", cseq in 1u32..2_000_000_000, rnd in any::<u64>(), tag in "[a-zA-Z0-9]{1,10}", body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let uri = format!("sip:{user}@{host}");
        let from = format!("\"IVR\" <sip:ivr@{host}>;tag={tag}");
        let to = format!("<{uri}>");
        let branch = new_branch(rnd);
        let bytes = request(&RequestOpts {
            method: Method::Info, uri: &uri, transport: Transport::Tcp, sent_by: "10.1.2.3:5070",
            branch: &branch, from: &from, to: &to, call_id: "abc@10.1.2.3", cseq,
            contact: None, route: vec![], extra_headers: vec![("X-Test", "1".into())],
            body: Some(("application/dtmf-relay", &body)),
        });
        prop_assert_eq!(frame(&bytes), Frame::Message(bytes.len()));
        let r = match parse(&bytes) { Ok(Message::Request(r)) => r, other => return Err(TestCaseError::fail(format!("{other:?}"))) };
        prop_assert_eq!(&r.method, &Method::Info);
        prop_assert_eq!(&r.uri, &uri);
        prop_assert_eq!(r.uri_user.as_deref(), Some(user.as_str()));
        prop_assert_eq!(r.top_via().branch.as_deref(), Some(branch.as_str()));
        prop_assert_eq!(r.top_via().transport.as_str(), "TCP");
        prop_assert_eq!(r.top_via().port, Some(5070));
        prop_assert_eq!(r.from.tag.as_deref(), Some(tag.as_str()));
        prop_assert_eq!(r.from.display.as_deref(), Some("IVR"));
        prop_assert_eq!(&r.to.raw, &to);
        prop_assert_eq!(r.call_id.as_str(), "abc@10.1.2.3");
        prop_assert_eq!(r.cseq, cseq);
        prop_assert_eq!(r.max_forwards, Some(70));
        prop_assert_eq!(r.header("X-Test"), Some("1"));
        prop_assert_eq!(&r.body[..], &body[..]);
    }
}
