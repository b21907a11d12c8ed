//! RFC 4475 torture messages (tests/data/sip, written by make_fixtures.py there) through
//! `proto::sip::parse`, with the outcome each one must have.

use ccswitch::proto::sip::{self, Message, Method, ParseError};
use std::path::PathBuf;

fn load(kind: &str, name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sip")
        .join(kind)
        .join(format!("{name}.sip"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn request(name: &str) -> sip::Request {
    match sip::parse(&load("valid", name)) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: expected a request, got {other:?}"),
    }
}

fn response(name: &str) -> sip::Response {
    match sip::parse(&load("valid", name)) {
        Ok(Message::Response(r)) => r,
        other => panic!("{name}: expected a response, got {other:?}"),
    }
}

fn invalid(name: &str) -> ParseError {
    match sip::parse(&load("invalid", name)) {
        Err(e) => e,
        Ok(m) => panic!("{name}: parsed but must not: {m:?}"),
    }
}

/// An invalid request: 400-class status, reason naming `fault`, and a salvage that builds
/// an error response.
fn rejected(name: &str, status: u16, fault: &str) -> ParseError {
    let e = invalid(name);
    assert_eq!(e.status, status, "{name}: {}", e.reason);
    assert!(
        e.reason.contains(fault),
        "{name}: reason {:?} lacks {fault:?}",
        e.reason
    );
    let s = e
        .salvage
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: no salvage"));
    let src = "192.0.2.200:5060".parse().unwrap();
    let out = sip::error_response(s, e.status, &e.reason, src).expect("error response");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with(&format!("SIP/2.0 {status} ")),
        "{name}: {text}"
    );
    assert!(text.contains("received=192.0.2.200"), "{name}: {text}");
    e
}

#[test]
fn every_fixture_is_covered() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip");
    let mut n = 0;
    for kind in ["valid", "invalid"] {
        for f in std::fs::read_dir(dir.join(kind)).unwrap() {
            let f = f.unwrap().path();
            let _ = sip::parse(&std::fs::read(&f).unwrap());
            n += 1;
        }
    }
    assert_eq!(n, 49, "a fixture was added without an assertion below");
}

// ---- 3.1.1 valid messages -------------------------------------------------------------

#[test]
fn wsinv() {
    let r = request("wsinv");
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri_user.as_deref(), Some("vivekg"));
    assert_eq!(r.to.tag.as_deref(), Some("1918181833n"));
    assert_eq!(r.from.tag.as_deref(), Some("98asjd8"));
    assert_eq!(r.from.display.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(r.max_forwards, Some(68));
    assert_eq!((r.cseq, &r.cseq_method), (9, &Method::Invite));
    let vias: Vec<_> = r
        .vias
        .iter()
        .map(|v| (v.transport.as_str(), v.host.as_str(), v.branch.as_deref()))
        .collect();
    assert_eq!(
        vias,
        vec![
            ("UDP", "192.0.2.2", Some("390skdjuw")),
            ("TCP", "spindle.example.com", Some("z9hG4bK9ikj8")),
            ("UDP", "192.168.255.111", Some("z9hG4bK30239")),
        ]
    );
    assert_eq!(r.header("Subject"), Some(""));
    assert_eq!(
        r.header("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(r.header("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
    let c = r.contact.unwrap();
    assert_eq!(c.display.as_deref(), Some("Quoted string \"\""));
    assert_eq!(c.uri, "sip:jdrosen@example.com");
    assert_eq!(r.body.len(), 150);
}

#[test]
fn intmeth() {
    // An extension method: parsed so the UAS can answer 501.
    let r = request("intmeth");
    assert_eq!(
        r.method,
        Method::Other("!interesting-Method0123456789_*+`.%indeed'~".into())
    );
    assert_eq!(r.cseq_method, r.method);
    assert_eq!(
        r.uri_user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(r.top_via().branch.as_deref(), Some("z9hG4bK-.!%66*_+`'~"));
    assert_eq!(
        r.to.display.as_deref(),
        Some("BEL:\u{7} NUL:\u{0} DEL:\u{7f}")
    );
    assert_eq!(r.from.tag.as_deref(), Some("_token~1'+`*%!-."));
    assert_eq!(
        r.from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(r.call_id, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(r.max_forwards, Some(255));
    assert_eq!(
        r.header("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電")
    );
    let out = sip::response(&r, 501, "Not Implemented", &Default::default());
    assert!(matches!(sip::parse(&out), Ok(Message::Response(_))));
}

#[test]
fn esc01() {
    let r = request("esc01");
    assert_eq!(r.uri_user.as_deref(), Some("sips%3Auser%40example.com"));
    assert_eq!(r.to.user.as_deref(), Some("%75se%72"));
    assert_eq!(r.from.user.as_deref(), Some("I%20have%20spaces"));
    assert_eq!(r.call_id, "esc01.239409asdfakjkn23onasd0-3234");
    assert_eq!(r.content_type.as_deref(), Some("application/sdp"));
    assert_eq!(
        r.contact.unwrap().uri,
        "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"
    );
}

#[test]
fn escnull() {
    let r = request("escnull");
    assert_eq!(r.method, Method::Register);
    assert_eq!(r.to.user.as_deref(), Some("null-%00-null"));
    assert_eq!(r.contact.unwrap().user.as_deref(), Some("%00"));
    assert_eq!(r.headers.iter().filter(|(n, _)| n == "Contact").count(), 2);
}

#[test]
fn esc02() {
    // RE%47IST%45R is not REGISTER; C%6Fntact is not Contact.
    let r = request("esc02");
    assert_eq!(r.method, Method::Other("RE%47IST%45R".into()));
    assert_eq!(r.to.display.as_deref(), Some("%Z%45"));
    assert_eq!(r.headers.iter().filter(|(n, _)| n == "Contact").count(), 2);
    assert_eq!(
        r.header("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );
    assert_eq!(r.top_via().branch.as_deref(), Some("z9hG4bK209%fzsnel234"));
}

#[test]
fn lwsdisp() {
    let r = request("lwsdisp");
    assert_eq!(r.from.display.as_deref(), Some("caller"));
    assert_eq!(r.from.tag.as_deref(), Some("323"));
}

#[test]
fn longreq() {
    let r = request("longreq");
    assert_eq!(r.vias.len(), 34);
    assert_eq!(r.vias[33].received.as_deref(), Some("192.0.2.5"));
    assert_eq!(r.from.tag.as_ref().map(|t| t.len()), Some(155));
    assert_eq!(r.to.display.as_deref().map(|d| d.len()), Some(103));
    assert_eq!(r.body.len(), 150);
}

#[test]
fn dblreq() {
    // One datagram, two requests: the first is read, the rest ignored (RFC 3261 18.3).
    let r = request("dblreq");
    assert_eq!(r.method, Method::Register);
    assert_eq!(r.call_id, "dblreq.0ha0isndaksdj99sdfafnl3lk233412");
    assert!(r.body.is_empty());
}

#[test]
fn semiuri() {
    let r = request("semiuri");
    assert_eq!(r.uri_user.as_deref(), Some("user;par=u%40example.net"));
    assert!(r
        .header("Accept")
        .unwrap()
        .ends_with("message/sip, message/sipfrag"));
}

#[test]
fn transports() {
    let r = request("transports");
    let t: Vec<_> = r.vias.iter().map(|v| v.transport.as_str()).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(r.call_id, "transports.kijh4akdnaqjkwendsasfdj");
}

#[test]
fn mpart01() {
    let r = request("mpart01");
    assert_eq!(r.method, Method::Message);
    assert!(r.content_type.unwrap().starts_with("multipart/mixed"));
    assert!(r.body.contains(&0) && r.body.ends_with(b"--7a9cbec02ceef655--\r\n"));
}

#[test]
fn unreason() {
    let r = response("unreason");
    assert_eq!(r.status, 200);
    assert!(r.reason.starts_with("= 2**3 * 5**2 но"));
    assert_eq!(r.body.len(), 154);
}

#[test]
fn noreason() {
    let r = response("noreason");
    assert_eq!((r.status, r.reason.as_str()), (100, ""));
}

// ---- 3.2 / 3.3: syntactically valid, decided above the parser ------------------------

#[test]
fn badbranch() {
    // The branch is only the magic cookie: still a branch; the transaction layer decides.
    assert_eq!(
        request("badbranch").top_via().branch.as_deref(),
        Some("z9hG4bK")
    );
}

#[test]
fn zeromf() {
    // Max-Forwards 0 is valid; a UAS answers OPTIONS itself (RFC 3261 8.2.1 no longer applies to UAS).
    assert_eq!(request("zeromf").max_forwards, Some(0));
}

#[test]
fn bext01() {
    // Unknown Require options: parsed; the UAS answers 420 Bad Extension.
    let r = request("bext01");
    assert_eq!(
        r.header("Require"),
        Some("nothingSupportsThis, nothingSupportsThisEither")
    );
    assert_eq!(r.top_via().transport, "TLS");
}

#[test]
fn invut() {
    // Unknown body type: parsed; the UAS answers 415.
    let r = request("invut");
    assert_eq!(r.content_type.as_deref(), Some("application/unknownformat"));
    assert_eq!(r.body.len(), 40);
}

#[test]
fn regaut01() {
    let r = request("regaut01");
    assert_eq!(
        r.header("Authorization"),
        Some("NoOneKnowsThisScheme opaque-data=here")
    );
    assert!(r.body.is_empty());
}

#[test]
fn bcast() {
    // A response whose second Via is a broadcast address: syntax is fine.
    let r = response("bcast");
    assert_eq!(r.vias[1].host, "255.255.255.255");
}

#[test]
fn cparam01_cparam02() {
    // addr-spec form: `unknownparam` is a Contact header param; name-addr: a URI param.
    let c = request("cparam01").contact.unwrap();
    assert_eq!(c.uri, "sip:+19725552222@gw1.example.net");
    let c = request("cparam02").contact.unwrap();
    assert_eq!(c.uri, "sip:+19725552222@gw1.example.net;unknownparam");
}

#[test]
fn regescrt() {
    // Escaped headers are allowed in a Contact URI inside <>.
    let c = request("regescrt").contact.unwrap();
    assert_eq!(
        c.uri,
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    );
}

#[test]
fn sdp01() {
    assert_eq!(request("sdp01").body.len(), 150);
}

#[test]
fn unksm2() {
    // Unknown schemes in To/From/Contact are syntactically valid; only the Request-URI
    // scheme is checked by the parser.
    let r = request("unksm2");
    assert_eq!(r.to.uri, "isbn:2983792873");
    assert_eq!(r.from.uri, "http://www.example.com");
    assert_eq!(r.contact.unwrap().uri, "name:John_Smith");
}

#[test]
fn inv2543() {
    // RFC 2543 style: no branch, no Max-Forwards, no From tag, no Content-Length (the body
    // runs to the end of the datagram).
    let r = request("inv2543");
    assert_eq!(r.top_via().branch, None);
    assert_eq!(r.max_forwards, None);
    assert_eq!(r.from.tag, None);
    assert!(r.body.ends_with(b"m=audio 49217 RTP/AVP 0\r\n"));
}

// ---- 3.1.2 invalid messages (and 3.3 ones that must be refused) -----------------------

#[test]
fn badinv01() {
    rejected("badinv01", 400, "Via");
}

#[test]
fn clerr() {
    rejected("clerr", 400, "Content-Length exceeds body");
}

#[test]
fn ncl() {
    rejected("ncl", 400, "invalid Content-Length");
}

#[test]
fn scalar02() {
    rejected("scalar02", 400, "CSeq number out of range");
}

#[test]
fn scalarlg() {
    // A response: dropped, nothing to answer.
    let e = invalid("scalarlg");
    assert_eq!(e.status, 400);
    assert!(e.salvage.is_none());
}

#[test]
fn quotbal() {
    rejected("quotbal", 400, "To");
}

#[test]
fn ltgtruri() {
    rejected("ltgtruri", 400, "Request-URI");
}

#[test]
fn lwsruri() {
    rejected("lwsruri", 400, "Request-Line");
}

#[test]
fn lwsstart() {
    rejected("lwsstart", 400, "Request-Line");
}

#[test]
fn trws() {
    rejected("trws", 400, "Request-Line");
}

#[test]
fn escruri() {
    rejected("escruri", 400, "Request-URI");
}

#[test]
fn baddate() {
    rejected("baddate", 400, "Date");
}

#[test]
fn regbadct() {
    rejected("regbadct", 400, "Contact");
}

#[test]
fn badaspec() {
    rejected("badaspec", 400, "To");
}

#[test]
fn baddn() {
    rejected("baddn", 400, "From");
}

#[test]
fn badvers() {
    rejected("badvers", 505, "Version Not Supported");
}

#[test]
fn mismatch01() {
    rejected("mismatch01", 400, "CSeq method does not match");
}

#[test]
fn mismatch02() {
    rejected("mismatch02", 400, "CSeq method does not match");
}

#[test]
fn bigcode() {
    let e = invalid("bigcode");
    assert_eq!(e.status, 400);
    assert!(e.salvage.is_none());
}

#[test]
fn insuf() {
    let e = rejected("insuf", 400, "missing");
    assert!(e.salvage.unwrap().call_id.is_none());
}

#[test]
fn novelsc() {
    rejected("novelsc", 416, "Unsupported URI Scheme");
}

#[test]
fn unkscm() {
    rejected("unkscm", 416, "Unsupported URI Scheme");
}

#[test]
fn multi01() {
    rejected("multi01", 400, "more than one");
}

#[test]
fn mcl01() {
    rejected("mcl01", 400, "more than one Content-Length");
}

mod mutated {
    use super::*;
    use proptest::prelude::*;

    fn all() -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip");
        let mut out = Vec::new();
        for kind in ["valid", "invalid"] {
            let mut names: Vec<_> = std::fs::read_dir(dir.join(kind))
                .unwrap()
                .map(|f| f.unwrap().path())
                .collect();
            names.sort();
            out.extend(names.into_iter().map(|p| std::fs::read(p).unwrap()));
        }
        out
    }

    proptest! {
        /// Byte flips, cuts and insertions in the torture messages never panic, and every
        /// parsed request can be answered with bytes that parse back.
        #[test]
        fn never_panics(which in any::<prop::sample::Index>(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)) {
            let files = all();
            let mut m = which.get(&files).clone();
            for (at, byte, kind) in edits {
                if m.is_empty() { break; }
                let i = at.index(m.len());
                match kind {
                    0 => m[i] = byte,
                    1 => m.truncate(i),
                    _ => m.insert(i, byte),
                }
            }
            let _ = sip::frame(&m);
            match sip::parse(&m) {
                Ok(Message::Request(r)) => {
                    let out = sip::response(&r, 400, "Bad", &sip::ResponseOpts {
                        source: Some("192.0.2.1:5060".parse().unwrap()),
                        to_tag: Some("x"),
                        ..Default::default()
                    });
                    prop_assert!(sip::parse(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
                }
                Ok(Message::Response(_)) => {}
                Err(e) => {
                    if let Some(s) = e.salvage {
                        let _ = sip::error_response(&s, e.status, &e.reason, "192.0.2.1:5060".parse().unwrap());
                    }
                }
            }
        }
    }
}
