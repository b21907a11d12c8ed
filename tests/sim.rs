//! Whole-switch scenarios on virtual time: a simulated caller speaks raw SIP to the sans-IO
//! engine, the clock jumps straight to the next deadline, and we check what the caller
//! receives and what the engine records. Microseconds per "ring for 6 s" scenario.

use bytes::Bytes;
use ccswitch::engine::record::{EndedBy, IvrOutcome};
use ccswitch::engine::txn::TxnConfig;
use ccswitch::engine::{
    Command, Engine, EngineConfig, Input, MediaCommand, MediaEvent, Millis, Output, Peer, Record,
    Transport,
};
use std::net::SocketAddr;
use std::path::Path;

const START: Millis = Millis(1_790_000_000_000);
const CALLER: &str = "127.0.0.1:5070";

fn config(answer_after_rings: u8, max_calls: usize) -> EngineConfig {
    let cfg = ccswitch::config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
        .expect("shipped config loads");
    EngineConfig {
        sent_by: "127.0.0.1:5060".to_string(),
        media_ip: "127.0.0.1".parse().unwrap(),
        ring_cycle_ms: 6000,
        answer_after_rings,
        max_calls,
        rtp_port_min: 30000,
        rtp_port_max: 31999,
        rtp_inactivity_ms: 30_000,
        txn: TxnConfig {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        },
        ivr: cfg.ivr.clone(),
        default_language: "en".to_string(),
        seed: 7,
        agents: cfg.agents.clone(),
        queues: cfg.queues.clone(),
        registrar_secret: [9; 32],
        recordings_dir: std::env::temp_dir(),
        limits: {
            // The simulated caller at 127.0.0.1 stands for many callers (a trunk).
            let mut limits = cfg.limits.to_limits_config();
            limits.trusted.push("127.0.0.1".parse().unwrap());
            limits
        },
        surveys: Default::default(),
    }
}

struct Sim {
    engine: Engine,
    now: Millis,
    peer: Peer,
    /// Everything the caller received, as text, with the time it was sent.
    sent: Vec<(Millis, String)>,
    records: Vec<Record>,
    media: Vec<MediaCommand>,
    drained: bool,
}

impl Sim {
    fn new(cfg: EngineConfig) -> Sim {
        Self::with_transport(cfg, Transport::Udp)
    }

    fn with_transport(cfg: EngineConfig, transport: Transport) -> Sim {
        Sim {
            engine: Engine::new(cfg),
            now: START,
            peer: Peer {
                transport,
                addr: CALLER.parse::<SocketAddr>().unwrap(),
            },
            sent: vec![],
            records: vec![],
            media: vec![],
            drained: false,
        }
    }

    fn input(&mut self, input: Input) {
        self.engine.handle_input(self.now, input);
        while let Some(o) = self.engine.poll_output() {
            match o {
                Output::Transmit { bytes, .. } => self
                    .sent
                    .push((self.now, String::from_utf8_lossy(&bytes).to_string())),
                Output::Persist(r) => self.records.push(r),
                Output::Media(m) => self.media.push(m),
                Output::Drained => self.drained = true,
                Output::Live(_) | Output::MonitorAnswer { .. } => {}
            }
        }
    }

    fn sip(&mut self, text: &str) {
        let peer = self.peer;
        self.input(Input::Sip {
            peer,
            bytes: Bytes::from(text.replace("\r\n", "\n").replace('\n', "\r\n")),
        });
    }

    fn media_event(&mut self, ev: MediaEvent) {
        self.input(Input::Media(ev));
    }

    /// Jumps virtual time forward, firing every deadline on the way.
    fn advance(&mut self, ms: u64) {
        let target = self.now.plus(ms);
        while let Some(t) = self.engine.poll_timeout() {
            if t > target {
                break;
            }
            self.now = t.max(self.now);
            self.input(Input::Timeout);
        }
        self.now = target;
    }

    fn statuses(&self) -> Vec<u16> {
        self.sent.iter().filter_map(|(_, m)| status_of(m)).collect()
    }

    fn last_response(&self, status: u16) -> Option<&(Millis, String)> {
        self.sent
            .iter()
            .rev()
            .find(|(_, m)| status_of(m) == Some(status))
    }

    fn to_tag(&self) -> String {
        let (_, m) = self
            .last_response(180)
            .or(self.last_response(200))
            .expect("a response with To tag");
        header(m, "To")
            .and_then(|to| {
                to.split(";tag=")
                    .nth(1)
                    .map(|t| t.split(';').next().unwrap_or("").to_string())
            })
            .expect("to tag")
    }

    fn leg(&self) -> u64 {
        self.media
            .iter()
            .find_map(|m| match m {
                MediaCommand::Open { leg, .. } => Some(*leg),
                _ => None,
            })
            .expect("a media leg")
    }

    /// The prompt ids of the latest Play command and its play id.
    fn last_play(&self) -> Option<(u64, Vec<String>)> {
        self.media.iter().rev().find_map(|m| match m {
            MediaCommand::Play {
                play_id, prompts, ..
            } => Some((*play_id, prompts.iter().map(|p| p.id.clone()).collect())),
            _ => None,
        })
    }

    /// Lets the latest prompt finish playing after `ms`.
    fn finish_play(&mut self, ms: u64) {
        self.advance(ms);
        let (play_id, _) = self.last_play().expect("something playing");
        let leg = self.leg();
        self.media_event(MediaEvent::PlayFinished {
            leg,
            play_id,
            interrupted: false,
        });
    }

    fn digit(&mut self, d: char) {
        let leg = self.leg();
        let at = self.now;
        self.media_event(MediaEvent::Digit { leg, digit: d, at });
    }

    fn ended(&self) -> Option<(EndedBy, String, u16)> {
        self.records.iter().find_map(|r| match r {
            Record::CallEnded {
                ended_by,
                reason,
                final_status,
                ..
            } => Some((*ended_by, reason.clone(), *final_status)),
            _ => None,
        })
    }

    fn outcome(&self) -> Option<IvrOutcome> {
        self.records.iter().find_map(|r| match r {
            Record::IvrLeft { outcome, .. } => Some(*outcome),
            _ => None,
        })
    }
}

fn status_of(m: &str) -> Option<u16> {
    m.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn header<'a>(m: &'a str, name: &str) -> Option<&'a str> {
    m.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

const SDP_OFFER: &str = "v=0
o=caller 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv
";

fn invite(call_id: &str, branch: &str, body: &str) -> String {
    let body = body.replace('\n', "\r\n");
    let mut m = format!(
        "INVITE sip:8000@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport
Max-Forwards: 70
From: \"Alice\" <sip:+8613812345678@127.0.0.1>;tag=caller1
To: <sip:8000@127.0.0.1>
Call-ID: {call_id}
CSeq: 1 INVITE
Contact: <sip:alice@127.0.0.1:5070>
"
    );
    if body.is_empty() {
        m.push_str("Content-Length: 0\n\n");
        m
    } else {
        m.push_str(&format!(
            "Content-Type: application/sdp\nContent-Length: {}\n\n",
            body.len()
        ));
        m.replace('\n', "\r\n") + &body
    }
}

fn in_dialog(
    method: &str,
    call_id: &str,
    branch: &str,
    to_tag: &str,
    cseq: u32,
    extra: &str,
    body: &str,
) -> String {
    let body = body.replace('\n', "\r\n");
    format!(
        "{method} sip:8000@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport
Max-Forwards: 70
From: \"Alice\" <sip:+8613812345678@127.0.0.1>;tag=caller1
To: <sip:8000@127.0.0.1>;tag={to_tag}
Call-ID: {call_id}
CSeq: {cseq} {cseq_method}
{extra}Content-Length: {len}

",
        cseq_method = if method == "REINVITE" {
            "INVITE".to_string()
        } else {
            method.to_string()
        },
        len = body.len()
    )
    .replace("REINVITE sip", "INVITE sip")
    .replace('\n', "\r\n")
        + &body
}

/// Calls in, waits for the answer, ACKs it. Returns the To tag.
fn answered_call(sim: &mut Sim) -> String {
    sim.sip(&invite("c1", "z9hG4bKinv1", SDP_OFFER));
    sim.advance(6000);
    assert!(
        sim.statuses().contains(&200),
        "answered: {:?}",
        sim.statuses()
    );
    let tag = sim.to_tag();
    sim.sip(&in_dialog("ACK", "c1", "z9hG4bKack1", &tag, 1, "", ""));
    tag
}

#[test]
fn answers_after_the_configured_rings_with_100_and_180_at_once() {
    for rings in 0..=3u8 {
        let mut sim = Sim::new(config(rings, 10));
        sim.sip(&invite("c1", "z9hG4bKinv1", SDP_OFFER));
        let early: Vec<u16> = sim
            .sent
            .iter()
            .filter(|(t, _)| *t == START)
            .filter_map(|(_, m)| status_of(m))
            .collect();
        assert_eq!(&early[..2], &[100, 180], "rings={rings}");
        sim.advance(30_000);
        let (at, ok) = sim
            .sent
            .iter()
            .find(|(_, m)| status_of(m) == Some(200))
            .expect("200 OK")
            .clone();
        assert_eq!(
            at.since(START),
            u64::from(rings) * 6000,
            "answered after {rings} rings"
        );
        assert!(ok.contains("m=audio"), "200 carries the SDP answer");
        assert!(ok.contains("a=rtpmap:0 PCMU/8000") || ok.contains("RTP/AVP 0"));
        let within = sim.records.iter().find_map(|r| match r {
            Record::CallAnswered {
                within_three_rings, ..
            } => Some(*within_three_rings),
            _ => None,
        });
        assert_eq!(within, Some(true));
    }
}

#[test]
fn records_the_timeline_in_order() {
    let mut sim = Sim::new(config(1, 10));
    answered_call(&mut sim);
    let kinds: Vec<&str> = sim
        .records
        .iter()
        .map(|r| match r {
            Record::CallStarted { .. } => "started",
            Record::CallRinging { .. } => "ringing",
            Record::CallAnswered { .. } => "answered",
            Record::IvrStep { .. } => "step",
            _ => "other",
        })
        .collect();
    assert_eq!(&kinds[..4], &["started", "ringing", "answered", "step"]);
    match &sim.records[0] {
        Record::CallStarted {
            caller,
            dialled,
            arrived_at,
            transport,
            ..
        } => {
            assert_eq!(caller, "+8613812345678");
            assert_eq!(dialled, "8000");
            assert_eq!(*arrived_at, START);
            assert_eq!(transport, "udp");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn retransmits_2xx_until_ack_then_byes_after_64_t1() {
    let mut sim = Sim::new(config(0, 10));
    sim.sip(&invite("c1", "z9hG4bKinv1", SDP_OFFER));
    sim.advance(40_000);
    let oks: Vec<u64> = sim
        .sent
        .iter()
        .filter(|(_, m)| status_of(m) == Some(200))
        .map(|(t, _)| t.since(START))
        .collect();
    // T1 doubling, capped at T2: 0, 0.5, 1.5, 3.5, 7.5, 11.5, ...
    assert_eq!(&oks[..5], &[0, 500, 1500, 3500, 7500]);
    assert!(oks.iter().all(|t| *t < 32_000));
    let bye = sim
        .sent
        .iter()
        .find(|(_, m)| m.starts_with("BYE "))
        .expect("BYE after ACK timeout");
    assert_eq!(bye.0.since(START), 32_000);
    assert_eq!(sim.ended().map(|e| e.1), Some("ack_timeout".to_string()));
}

#[test]
fn ack_stops_2xx_retransmission() {
    let mut sim = Sim::new(config(0, 10));
    answered_call(&mut sim);
    let before = sim.statuses().iter().filter(|s| **s == 200).count();
    sim.advance(10_000);
    let after = sim.statuses().iter().filter(|s| **s == 200).count();
    assert_eq!(before, after);
}

#[test]
fn cancel_before_answer_gets_200_and_487() {
    let mut sim = Sim::new(config(2, 10));
    sim.sip(&invite("c1", "z9hG4bKinv1", SDP_OFFER));
    sim.advance(3000);
    sim.sip(
        "CANCEL sip:8000@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKinv1;rport
Max-Forwards: 70
From: \"Alice\" <sip:+8613812345678@127.0.0.1>;tag=caller1
To: <sip:8000@127.0.0.1>
Call-ID: c1
CSeq: 1 CANCEL
Content-Length: 0

",
    );
    let st = sim.statuses();
    assert!(st.contains(&487), "{st:?}");
    assert!(
        st.iter().filter(|s| **s == 200).count() == 1,
        "200 to CANCEL only: {st:?}"
    );
    assert_eq!(
        sim.ended(),
        Some((EndedBy::Caller, "cancel".to_string(), 487))
    );
    sim.advance(20_000);
    // No 200 to the INVITE, ever: the only 200 is the CANCEL's.
    assert_eq!(sim.statuses().iter().filter(|s| **s == 200).count(), 1);
    assert!(!sim
        .sent
        .iter()
        .any(|(_, m)| status_of(m) == Some(200) && m.contains("CSeq: 1 INVITE")));
    assert!(sim
        .media
        .iter()
        .any(|m| matches!(m, MediaCommand::Close { .. })));
}

#[test]
fn caller_bye_ends_call_and_marks_abandoned_in_ivr() {
    let mut sim = Sim::new(config(0, 10));
    let tag = answered_call(&mut sim);
    sim.sip(&in_dialog("BYE", "c1", "z9hG4bKbye1", &tag, 2, "", ""));
    assert_eq!(sim.statuses().last(), Some(&200));
    assert_eq!(sim.ended(), Some((EndedBy::Caller, "bye".to_string(), 200)));
    assert_eq!(sim.outcome(), Some(IvrOutcome::AbandonedInIvr));
    assert_eq!(sim.engine.active_calls(), 0);
    // A retransmitted BYE is answered again by its transaction, not 481.
    sim.sip(&in_dialog("BYE", "c1", "z9hG4bKbye1", &tag, 2, "", ""));
    assert_eq!(sim.statuses().last(), Some(&200));
    // A new request in the dead dialog gets 481.
    sim.sip(&in_dialog("BYE", "c1", "z9hG4bKbye2", &tag, 3, "", ""));
    assert_eq!(sim.statuses().last(), Some(&481));
}

#[test]
fn options_unknown_methods_max_forwards_and_malformed() {
    let mut sim = Sim::new(config(0, 10));
    sim.sip(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKopt1
Max-Forwards: 70
From: <sip:probe@127.0.0.1>;tag=p1
To: <sip:127.0.0.1>
Call-ID: o1
CSeq: 1 OPTIONS
Content-Length: 0

",
    );
    let (_, ok) = sim.last_response(200).expect("200 to OPTIONS").clone();
    assert!(header(&ok, "Allow").is_some_and(|a| a.contains("INVITE") && a.contains("INFO")));

    sim.sip(
        "FOO sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKfoo1
Max-Forwards: 70
From: <sip:probe@127.0.0.1>;tag=p1
To: <sip:127.0.0.1>
Call-ID: f1
CSeq: 1 FOO
Content-Length: 0

",
    );
    assert_eq!(sim.statuses().last(), Some(&501));

    sim.sip(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKmf0
Max-Forwards: 0
From: <sip:probe@127.0.0.1>;tag=p1
To: <sip:127.0.0.1>
Call-ID: m1
CSeq: 1 OPTIONS
Content-Length: 0

",
    );
    assert_eq!(sim.statuses().last(), Some(&483));

    // CSeq is not a number: 400 naming the fault.
    sim.sip(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbad1
Max-Forwards: 70
From: <sip:probe@127.0.0.1>;tag=p1
To: <sip:127.0.0.1>
Call-ID: b1
CSeq: abc OPTIONS
Content-Length: 0

",
    );
    let (_, bad) = sim.sent.last().unwrap().clone();
    assert_eq!(status_of(&bad), Some(400), "{bad}");
    assert!(
        bad.lines().next().unwrap().len() > "SIP/2.0 400 ".len(),
        "reason phrase names the fault"
    );

    // Garbage: dropped and counted, no panic.
    let before = sim.sent.len();
    sim.input(Input::Sip {
        peer: sim.peer,
        bytes: Bytes::from_static(b"\x00\x01garbage\xff"),
    });
    assert_eq!(sim.sent.len(), before);
    assert!(sim.engine.stats().malformed >= 2);
}

#[test]
fn retransmitted_invite_is_absorbed_by_resending_the_last_response() {
    let mut sim = Sim::new(config(2, 10));
    sim.sip(&invite("c1", "z9hG4bKinv1", SDP_OFFER));
    let n = sim.sent.len();
    sim.advance(500);
    sim.sip(&invite("c1", "z9hG4bKinv1", SDP_OFFER));
    assert_eq!(sim.sent.len(), n + 1);
    assert_eq!(status_of(&sim.sent.last().unwrap().1), Some(180));
    assert_eq!(
        sim.records
            .iter()
            .filter(|r| matches!(r, Record::CallStarted { .. }))
            .count(),
        1
    );
}

#[test]
fn refuses_with_503_over_capacity_and_never_leaves_a_caller_ringing() {
    let mut sim = Sim::new(config(1, 1));
    sim.sip(&invite("c1", "z9hG4bKinv1", SDP_OFFER));
    sim.sip(&invite("c2", "z9hG4bKinv2", SDP_OFFER).replace("tag=caller1", "tag=caller2"));
    let (_, busy) = sim.last_response(503).expect("503").clone();
    assert!(header(&busy, "Retry-After").is_some());
    assert!(sim.records.iter().any(|r| matches!(r, Record::CallEnded { reason, final_status: 503, .. } if reason == "rejected_busy")));
}

#[test]
fn no_common_codec_gets_488() {
    let mut sim = Sim::new(config(1, 10));
    let g729 = SDP_OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 18").replace(
        "a=rtpmap:101 telephone-event/8000\n",
        "a=rtpmap:18 G729/8000\n",
    );
    sim.sip(&invite("c1", "z9hG4bKinv1", &g729));
    assert_eq!(sim.statuses().last(), Some(&488));
}

#[test]
fn offerless_invite_puts_the_offer_in_the_200_and_takes_the_answer_from_the_ack() {
    let mut sim = Sim::new(config(0, 10));
    sim.sip(&invite("c1", "z9hG4bKinv1", ""));
    let (_, ok) = sim.last_response(200).expect("200").clone();
    assert!(ok.contains("telephone-event"), "our offer: {ok}");
    let tag = sim.to_tag();
    let answer = SDP_OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 8 101");
    sim.sip(&in_dialog(
        "ACK",
        "c1",
        "z9hG4bKack1",
        &tag,
        1,
        "Content-Type: application/sdp\n",
        &answer,
    ));
    let update = sim.media.iter().find_map(|m| match m {
        MediaCommand::Update { codec, remote, .. } => Some((*codec, *remote)),
        _ => None,
    });
    let (codec, remote) = update.expect("media updated from the ACK's answer");
    assert_eq!(codec, ccswitch::engine::Codec::Pcma);
    assert_eq!(remote, Some("127.0.0.1:40000".parse().unwrap()));
}

#[test]
fn reinvite_hold_and_unhold_are_recorded() {
    let mut sim = Sim::new(config(0, 10));
    let tag = answered_call(&mut sim);
    let hold = SDP_OFFER
        .replace("a=sendrecv", "a=sendonly")
        .replace("o=caller 1 1", "o=caller 1 2");
    sim.sip(&in_dialog(
        "REINVITE",
        "c1",
        "z9hG4bKre1",
        &tag,
        2,
        "Content-Type: application/sdp\n",
        &hold,
    ));
    let (_, ok) = sim.last_response(200).unwrap().clone();
    assert!(
        ok.contains("a=recvonly"),
        "we answer recvonly to sendonly: {ok}"
    );
    sim.sip(&in_dialog("ACK", "c1", "z9hG4bKack2", &tag, 2, "", ""));
    let unhold = SDP_OFFER.replace("o=caller 1 1", "o=caller 1 3");
    sim.sip(&in_dialog(
        "REINVITE",
        "c1",
        "z9hG4bKre2",
        &tag,
        3,
        "Content-Type: application/sdp\n",
        &unhold,
    ));
    sim.sip(&in_dialog("ACK", "c1", "z9hG4bKack3", &tag, 3, "", ""));
    let holds: Vec<&str> = sim
        .records
        .iter()
        .filter_map(|r| match r {
            Record::HoldStarted { .. } => Some("start"),
            Record::HoldEnded { .. } => Some("end"),
            _ => None,
        })
        .collect();
    assert_eq!(holds, vec!["start", "end"]);
    assert!(sim
        .media
        .iter()
        .any(|m| matches!(m, MediaCommand::Update { send: false, .. })));
}

#[test]
fn rtp_inactivity_ends_the_call_with_bye() {
    let mut sim = Sim::new(config(0, 10));
    answered_call(&mut sim);
    let leg = sim.leg();
    let at = sim.now;
    sim.media_event(MediaEvent::Inactive { leg, at });
    assert!(sim.sent.iter().any(|(_, m)| m.starts_with("BYE ")));
    assert_eq!(
        sim.ended().map(|e| (e.0, e.1)),
        Some((EndedBy::System, "rtp_timeout".to_string()))
    );
    assert_eq!(sim.outcome(), Some(IvrOutcome::AbandonedInIvr));
}

/// Walks the shipped IVR to the opening-hours answer with digits from `press`.
fn walk_to_opening_hours(sim: &mut Sim, press: &mut dyn FnMut(&mut Sim, char)) {
    let mut guard = 0;
    loop {
        guard += 1;
        assert!(
            guard < 30,
            "IVR never reached opening_hours: {:?}",
            sim.records
        );
        let Some((_, prompts)) = sim.last_play() else {
            panic!("nothing played")
        };
        if prompts.iter().any(|p| p == "hours") {
            return;
        }
        if prompts
            .iter()
            .any(|p| p == "language_menu" || p == "main_menu")
        {
            press(sim, '1');
        } else {
            sim.finish_play(2000);
        }
    }
}

#[test]
fn ivr_self_service_by_rfc4733_digits_ends_self_served() {
    let mut sim = Sim::new(config(0, 10));
    let tag = answered_call(&mut sim);
    assert_eq!(sim.last_play().unwrap().1, vec!["greeting".to_string()]);
    walk_to_opening_hours(&mut sim, &mut |s, d| {
        s.advance(300);
        s.digit(d)
    });
    sim.finish_play(3000);
    sim.sip(&in_dialog("BYE", "c1", "z9hG4bKbye1", &tag, 2, "", ""));
    assert_eq!(sim.outcome(), Some(IvrOutcome::SelfServed));
    let digits: Vec<String> = sim
        .records
        .iter()
        .filter_map(|r| match r {
            Record::IvrStep {
                digits: Some(d), ..
            } => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert!(
        digits.iter().any(|d| d == "1"),
        "digits recorded: {digits:?}"
    );
}

#[test]
fn ivr_digits_by_sip_info_take_the_same_path() {
    let mut sim = Sim::new(config(0, 10));
    let tag = answered_call(&mut sim);
    let mut cseq = 2;
    walk_to_opening_hours(&mut sim, &mut |s, d| {
        s.advance(300);
        let body = format!("Signal={d}\nDuration=160\n");
        let branch = format!("z9hG4bKinfo{cseq}");
        s.sip(&in_dialog(
            "INFO",
            "c1",
            &branch,
            &tag,
            cseq,
            "Content-Type: application/dtmf-relay\n",
            &body,
        ));
        assert_eq!(s.statuses().last(), Some(&200));
        cseq += 1;
    });
    assert!(sim
        .records
        .iter()
        .any(|r| matches!(r, Record::IvrStep { digits: Some(d), .. } if d == "1")));
}

#[test]
fn ivr_no_input_eventually_hangs_up_with_bye() {
    let mut sim = Sim::new(config(0, 10));
    answered_call(&mut sim);
    // Never press anything; let every prompt finish and every timeout run.
    for _ in 0..40 {
        if sim.ended().is_some() {
            break;
        }
        sim.finish_play(1000);
        sim.advance(10_000);
    }
    let (by, _, _) = sim.ended().expect("the IVR gave up and hung up");
    assert_eq!(by, EndedBy::System);
    assert!(sim.sent.iter().any(|(_, m)| m.starts_with("BYE ")));
    // The goodbye prompt was played before the BYE.
    assert!(sim.media.iter().any(|m| matches!(m, MediaCommand::Play { prompts, .. } if prompts.iter().any(|p| p.id == "goodbye"))));
}

#[test]
fn shutdown_refuses_new_calls_says_goodbye_and_drains() {
    let mut sim = Sim::new(config(0, 10));
    answered_call(&mut sim);
    sim.input(Input::Command(Command::Shutdown { grace_ms: 5000 }));
    let (goodbye, prompts) = sim.last_play().unwrap();
    assert_eq!(prompts, vec!["goodbye".to_string()]);
    sim.sip(&invite("c2", "z9hG4bKinv2", SDP_OFFER).replace("tag=caller1", "tag=caller2"));
    assert_eq!(sim.statuses().last(), Some(&503));
    let leg = sim.leg();
    sim.advance(1500);
    sim.media_event(MediaEvent::PlayFinished {
        leg,
        play_id: goodbye,
        interrupted: false,
    });
    assert!(sim.sent.iter().any(|(_, m)| m.starts_with("BYE ")));
    assert!(sim.drained);
}

#[test]
fn shutdown_grace_hangs_up_even_if_goodbye_never_ends() {
    let mut sim = Sim::new(config(0, 10));
    answered_call(&mut sim);
    sim.input(Input::Command(Command::Shutdown { grace_ms: 3000 }));
    sim.advance(3000);
    assert!(sim.sent.iter().any(|(_, m)| m.starts_with("BYE ")));
    assert!(sim.drained);
}

#[test]
fn tcp_calls_skip_retransmission_timers() {
    let mut sim = Sim::with_transport(config(0, 10), Transport::Tcp);
    sim.sip(&invite("c1", "z9hG4bKinv1", SDP_OFFER).replace("SIP/2.0/UDP", "SIP/2.0/TCP"));
    sim.advance(20_000);
    assert_eq!(sim.statuses().iter().filter(|s| **s == 200).count(), 1);
}

/// A caller over WebSocket whose connection drops has hung up: the call ends, nothing is
/// sent to the dead connection.
#[test]
fn websocket_caller_losing_the_connection_ends_the_call() {
    let mut sim = Sim::with_transport(config(0, 10), Transport::Ws);
    let _tag = answered_call(&mut sim);
    assert_eq!(sim.engine.active_calls(), 1);
    let sent = sim.sent.len();
    sim.input(Input::ConnectionClosed(Peer {
        transport: Transport::Ws,
        addr: CALLER.parse().unwrap(),
    }));
    assert_eq!(
        sim.ended().map(|(by, reason, _)| (by, reason)),
        Some((EndedBy::Caller, "connection_lost".to_string()))
    );
    sim.advance(60_000);
    assert_eq!(sim.engine.active_calls(), 0);
    assert_eq!(sim.sent.len(), sent, "nothing for a closed connection");
}

#[test]
fn many_calls_leave_nothing_behind() {
    let mut sim = Sim::new(config(0, 1000));
    for i in 0..200 {
        let inv = invite(&format!("c{i}"), &format!("z9hG4bKi{i}"), SDP_OFFER)
            .replace("tag=caller1", &format!("tag=t{i}"));
        sim.sip(&inv);
    }
    assert_eq!(sim.engine.active_calls(), 200);
    for i in 0..200 {
        let tag = sim
            .sent
            .iter()
            .find(|(_, m)| status_of(m) == Some(200) && m.contains(&format!("Call-ID: c{i}\r")))
            .and_then(|(_, m)| header(m, "To"))
            .and_then(|t| t.split(";tag=").nth(1))
            .unwrap()
            .to_string();
        let ack = in_dialog(
            "ACK",
            &format!("c{i}"),
            &format!("z9hG4bKa{i}"),
            &tag,
            1,
            "",
            "",
        )
        .replace("tag=caller1", &format!("tag=t{i}"));
        sim.sip(&ack);
        let bye = in_dialog(
            "BYE",
            &format!("c{i}"),
            &format!("z9hG4bKb{i}"),
            &tag,
            2,
            "",
            "",
        )
        .replace("tag=caller1", &format!("tag=t{i}"));
        sim.sip(&bye);
    }
    assert_eq!(sim.engine.active_calls(), 0);
    sim.advance(120_000);
    assert_eq!(
        sim.engine.pending_transactions(),
        0,
        "every transaction terminated"
    );
    assert_eq!(sim.engine.poll_timeout(), None, "no timer left");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn valid_messages() -> Vec<String> {
        vec![
            invite("p1", "z9hG4bKp1", SDP_OFFER),
            invite("p2", "z9hG4bKp2", ""),
            in_dialog("BYE", "p1", "z9hG4bKpb", "x", 2, "", ""),
            in_dialog(
                "INFO",
                "p1",
                "z9hG4bKpi",
                "x",
                3,
                "Content-Type: application/dtmf\n",
                "5",
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn arbitrary_bytes_never_panic(msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..8)) {
            let mut sim = Sim::new(config(0, 10));
            for m in msgs {
                let peer = sim.peer;
                sim.input(Input::Sip { peer, bytes: Bytes::from(m) });
                sim.advance(100);
            }
        }

        #[test]
        fn mutated_valid_messages_never_panic(which in 0usize..4, pos in 0usize..2000, byte in any::<u8>(), cut in 0usize..2000) {
            let mut sim = Sim::new(config(0, 10));
            let mut m = valid_messages()[which].clone().into_bytes();
            if !m.is_empty() {
                let p = pos % m.len();
                m[p] = byte;
                m.truncate(cut.max(p + 1).min(m.len()));
            }
            let peer = sim.peer;
            sim.input(Input::Sip { peer, bytes: Bytes::from(m) });
            sim.advance(60_000);
        }

        /// Whatever the caller does, every call that started ends, and nothing is left behind.
        #[test]
        fn every_call_ends_and_nothing_leaks(actions in prop::collection::vec((0u8..6, 0u64..8000), 1..25)) {
            let mut sim = Sim::new(config(1, 10));
            sim.sip(&invite("c1", "z9hG4bKinv1", SDP_OFFER));
            for (cseq, (action, wait)) in (2u32..).zip(actions) {
                sim.advance(wait);
                let tag = sim.last_response(180).map(|_| sim.to_tag()).unwrap_or_default();
                match action {
                    0 => sim.sip(&in_dialog("ACK", "c1", "z9hG4bKack1", &tag, 1, "", "")),
                    1 => { let b = format!("z9hG4bKbye{cseq}"); sim.sip(&in_dialog("BYE", "c1", &b, &tag, cseq, "", "")); }
                    2 => sim.sip("CANCEL sip:8000@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKinv1;rport\nMax-Forwards: 70\nFrom: \"Alice\" <sip:+8613812345678@127.0.0.1>;tag=caller1\nTo: <sip:8000@127.0.0.1>\nCall-ID: c1\nCSeq: 1 CANCEL\nContent-Length: 0\n\n"),
                    3 => { if sim.media.iter().any(|m| matches!(m, MediaCommand::Open { .. })) { sim.digit('1') } }
                    4 => { if sim.last_play().is_some() { sim.finish_play(10) } }
                    _ => { let b = format!("z9hG4bKinfo{cseq}"); sim.sip(&in_dialog("INFO", "c1", &b, &tag, cseq, "Content-Type: application/dtmf\n", "2")); }
                }
            }
            // Hang up if still up, then let every timer run out.
            let tag = sim.last_response(180).map(|_| sim.to_tag()).unwrap_or_default();
            sim.sip(&in_dialog("BYE", "c1", "z9hG4bKfinal", &tag, 1000, "", ""));
            sim.advance(200_000);
            let started = sim.records.iter().filter(|r| matches!(r, Record::CallStarted { .. })).count();
            let ended = sim.records.iter().filter(|r| matches!(r, Record::CallEnded { .. })).count();
            prop_assert_eq!(started, ended);
            prop_assert_eq!(sim.engine.active_calls(), 0);
            prop_assert_eq!(sim.engine.poll_timeout(), None);
        }
    }
}

// ---- agents: registration, feature codes, queues and offers ------------------------------

mod agents {
    use super::*;
    use ccswitch::engine::acd::{AgentState, MaxWaitPolicy, NoAgentsPolicy, QueueSet, QueueSpec};
    use ccswitch::proto::digest::{self, Algorithm, QopAuth};

    const AGENT1: &str = "127.0.0.1:5081";
    const AGENT2: &str = "127.0.0.1:5082";

    /// What the fake media shell's WebRTC peer offers (the real one: tests/webrtc_media.rs).
    const WEBRTC_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 AA:BB\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8 101\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\na=mid:0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\na=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n";

    /// What the fake media shell's WebRTC peer answers to a browser caller's offer.
    const WEBRTC_ANSWER: &str = "v=0\r\no=- 2 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 CC:DD\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 126\r\nc=IN IP4 0.0.0.0\r\na=setup:active\r\na=mid:0\r\na=ice-ufrag:w\r\na=ice-pwd:q\r\na=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\na=sendrecv\r\na=candidate:1 1 udp 2130706431 127.0.0.1 61000 typ host\r\n";

    /// A browser's (Chromium's) offer: Opus first, G.711 after, telephone-event at 126.
    const BROWSER_OFFER: &str = "v=0\r\no=- 3 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\nc=IN IP4 0.0.0.0\r\na=fingerprint:sha-256 EE:FF\r\na=setup:actpass\r\na=mid:0\r\na=ice-ufrag:b\r\na=ice-pwd:r\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:126 telephone-event/8000\r\na=sendrecv\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50001 typ host\r\n";

    fn webrtc_relay(leg: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40_000 + leg as u16))
    }

    /// Several SIP peers around one engine; every message the engine sends is kept with its
    /// destination.
    struct Net {
        engine: Engine,
        now: Millis,
        sent: Vec<(Millis, SocketAddr, String)>,
        records: Vec<Record>,
        media: Vec<MediaCommand>,
        /// The fake media shell fails WebRTC offers.
        webrtc_fails: bool,
        live: Vec<ccswitch::engine::LiveEvent>,
        branch: u32,
        /// Transport of what `send` delivers.
        transport: Transport,
        /// The engine's answers to monitoring requests.
        monitor_answers: Vec<(String, Result<(), ccswitch::engine::MonitorRefusal>)>,
    }

    fn addr(a: &str) -> SocketAddr {
        a.parse().unwrap()
    }

    fn crlf(text: &str) -> String {
        text.replace("\r\n", "\n").replace('\n', "\r\n")
    }

    impl Net {
        fn new() -> Net {
            Net::with_queues(|_| {})
        }

        /// The shipped config with every queue changed by `edit`.
        /// Queues that keep callers waiting with nobody logged in (`when_no_agents = "wait"`).
        fn waiting() -> Net {
            Net::with_queues(|q| q.when_no_agents = NoAgentsPolicy::Wait)
        }

        fn with_queues(edit: impl Fn(&mut QueueSpec)) -> Net {
            let mut cfg = config(1, 100);
            let set = &cfg.queues;
            let specs: Vec<QueueSpec> = set
                .names()
                .filter_map(|n| set.get(n).cloned())
                .map(|mut q| {
                    edit(&mut q);
                    q
                })
                .collect();
            let vip = set.vip.clone();
            let mut rebuilt =
                QueueSet::new(specs, vip, set.repeat_window_ms, set.handle_time_samples)
                    .expect("queues");
            rebuilt.dispositions = set.dispositions.clone();
            cfg.queues = std::sync::Arc::new(rebuilt);
            Net {
                engine: Engine::new(cfg),
                now: START,
                sent: vec![],
                records: vec![],
                media: vec![],
                live: vec![],
                branch: 0,
                transport: Transport::Udp,
                webrtc_fails: false,
                monitor_answers: vec![],
            }
        }

        fn input(&mut self, input: Input) {
            let mut inputs = vec![input];
            while !inputs.is_empty() {
                for input in std::mem::take(&mut inputs) {
                    self.engine.handle_input(self.now, input);
                    while let Some(o) = self.engine.poll_output() {
                        match o {
                            Output::Transmit { peer, bytes } => self.sent.push((
                                self.now,
                                peer.addr,
                                String::from_utf8_lossy(&bytes).to_string(),
                            )),
                            Output::Persist(r) => self.records.push(r),
                            Output::Media(m) => {
                                // The media shell's WebRTC peer answers at once with its offer
                                // (unless a test makes it fail).
                                if let MediaCommand::WebRtcOffer { leg, fork, .. } = &m {
                                    let ev = if self.webrtc_fails {
                                        MediaEvent::WebRtcFailed {
                                            leg: *leg,
                                            fork: *fork,
                                            reason: "test".into(),
                                        }
                                    } else {
                                        MediaEvent::WebRtcOffer {
                                            leg: *leg,
                                            fork: *fork,
                                            sdp: WEBRTC_OFFER.to_string(),
                                            relay: webrtc_relay(*leg),
                                        }
                                    };
                                    inputs.push(Input::Media(ev));
                                }
                                // ... and answers a browser caller's offer likewise.
                                if let MediaCommand::WebRtcAccept { leg, .. } = &m {
                                    let ev = if self.webrtc_fails {
                                        MediaEvent::WebRtcFailed {
                                            leg: *leg,
                                            fork: 0,
                                            reason: "test".into(),
                                        }
                                    } else {
                                        MediaEvent::WebRtcAccepted {
                                            leg: *leg,
                                            sdp: WEBRTC_ANSWER.to_string(),
                                            relay: webrtc_relay(*leg),
                                        }
                                    };
                                    inputs.push(Input::Media(ev));
                                }
                                self.media.push(m)
                            }
                            Output::Drained => {}
                            Output::Live(e) => self.live.push(e),
                            Output::MonitorAnswer { id, result } => {
                                self.monitor_answers.push((id, result))
                            }
                        }
                    }
                }
            }
        }

        fn send(&mut self, from: &str, text: &str) {
            let peer = Peer {
                transport: self.transport,
                addr: addr(from),
            };
            let bytes = Bytes::from(crlf(text));
            self.input(Input::Sip { peer, bytes });
        }

        fn advance(&mut self, ms: u64) {
            let target = self.now.plus(ms);
            while let Some(t) = self.engine.poll_timeout() {
                if t > target {
                    break;
                }
                self.now = t.max(self.now);
                self.input(Input::Timeout);
            }
            self.now = target;
        }

        fn next_branch(&mut self) -> String {
            self.branch += 1;
            format!("z9hG4bKt{}", self.branch)
        }

        fn to(&self, dest: &str) -> Vec<String> {
            let d = addr(dest);
            self.sent
                .iter()
                .filter(|(_, a, _)| *a == d)
                .map(|(_, _, m)| m.clone())
                .collect()
        }

        fn requests_to(&self, dest: &str, method: &str) -> Vec<String> {
            let prefix = format!("{method} ");
            self.to(dest)
                .into_iter()
                .filter(|m| m.starts_with(&prefix))
                .collect()
        }

        fn last_status_to(&self, dest: &str) -> Option<u16> {
            self.to(dest).iter().rev().find_map(|m| status_of(m))
        }

        fn register(&mut self, ext: &str, at: &str, expires: u32) {
            let pw = format!("demo{ext}");
            let b = self.next_branch();
            // CSeq must rise on the phone's registration Call-ID (RFC 3261 10.3 step 7).
            let n1 = self.branch * 2;
            let base = format!(
                "REGISTER sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {at};branch={b};rport
Max-Forwards: 70
From: <sip:{ext}@127.0.0.1>;tag=r{ext}
To: <sip:{ext}@127.0.0.1>
Call-ID: reg-{ext}-{at}
CSeq: {n1} REGISTER
Contact: <sip:{ext}@{at}>
Expires: {expires}
"
            );
            self.send(at, &format!("{base}Content-Length: 0\n\n"));
            let challenge = self.to(at).last().cloned().expect("a challenge");
            assert_eq!(status_of(&challenge), Some(401), "{challenge}");
            let auth = authorization(
                &challenge,
                "WWW-Authenticate",
                ext,
                &pw,
                "REGISTER",
                "sip:127.0.0.1:5060",
            );
            let b = self.next_branch();
            let second = base
                .replace(
                    &format!("CSeq: {n1} REGISTER"),
                    &format!("CSeq: {} REGISTER", n1 + 1),
                )
                .replace(
                    &format!("branch=z9hG4bKt{}", self.branch - 1),
                    &format!("branch={b}"),
                );
            self.send(
                at,
                &format!("{second}Authorization: {auth}\nContent-Length: 0\n\n"),
            );
            assert_eq!(
                self.last_status_to(at),
                Some(200),
                "{:?}",
                self.to(at).last()
            );
        }

        fn caller_leg(&self) -> u64 {
            self.media
                .iter()
                .find_map(|m| match m {
                    MediaCommand::Open { leg, .. } => Some(*leg),
                    _ => None,
                })
                .expect("caller leg")
        }

        fn last_caller_play(&self) -> Option<(u64, Vec<String>)> {
            let leg = self.caller_leg();
            self.media.iter().rev().find_map(|m| match m {
                MediaCommand::Play {
                    leg: l,
                    play_id,
                    prompts,
                    ..
                } if *l == leg => Some((*play_id, prompts.iter().map(|p| p.id.clone()).collect())),
                _ => None,
            })
        }

        /// A caller dials in, picks English, then `choice` in the main menu.
        fn call_and_pick(&mut self, choice: char) -> String {
            self.send(CALLER, &invite("c1", "z9hG4bKinv1", SDP_OFFER));
            self.advance(6000);
            let ok = self
                .to(CALLER)
                .into_iter()
                .rev()
                .find(|m| status_of(m) == Some(200))
                .expect("answered");
            let tag = header(&ok, "To")
                .and_then(|t| t.split(";tag=").nth(1))
                .unwrap()
                .to_string();
            self.send(
                CALLER,
                &in_dialog("ACK", "c1", "z9hG4bKack1", &tag, 1, "", ""),
            );
            let leg = self.caller_leg();
            for _ in 0..30 {
                if self
                    .records
                    .iter()
                    .any(|r| matches!(r, Record::CallQueued { .. }))
                {
                    return tag;
                }
                let (play_id, prompts) = self.last_caller_play().expect("a prompt");
                let digit = if prompts.iter().any(|p| p == "language_menu") {
                    Some('1')
                } else if prompts.iter().any(|p| p == "main_menu") {
                    Some(choice)
                } else {
                    None
                };
                match digit {
                    Some(d) => {
                        let at = self.now;
                        self.input(Input::Media(MediaEvent::Digit { leg, digit: d, at }));
                    }
                    None => {
                        self.advance(2000);
                        self.input(Input::Media(MediaEvent::PlayFinished {
                            leg,
                            play_id,
                            interrupted: false,
                        }));
                    }
                }
            }
            panic!("never queued: {:#?}", self.records);
        }

        /// The agent phone at `at` answers `invite` with `status` (and SDP for 2xx).
        fn answer(&mut self, at: &str, invite: &str, status: u16, reason: &str) {
            let mut m = format!("SIP/2.0 {status} {reason}\n");
            for name in ["Via", "From", "Call-ID", "CSeq"] {
                m.push_str(&format!("{name}: {}\n", header(invite, name).unwrap()));
            }
            m.push_str(&format!(
                "To: {};tag=agent{}\n",
                header(invite, "To").unwrap(),
                at.len()
            ));
            let ext = if at == AGENT2 { "1002" } else { "1001" };
            m.push_str(&format!("Contact: <sip:{ext}@{at}>\n"));
            if (200..300).contains(&status) {
                let body = "v=0\no=agent 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 42000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=sendrecv\n".replace('\n', "\r\n");
                m.push_str(&format!(
                    "Content-Type: application/sdp\nContent-Length: {}\n\n",
                    body.len()
                ));
                self.send(at, &(crlf(&m) + &body));
            } else {
                m.push_str("Content-Length: 0\n\n");
                self.send(at, &m);
            }
        }

        fn state(&self, agent: &str) -> AgentState {
            self.engine
                .agent_state(agent)
                .cloned()
                .expect("known agent")
        }

        fn has(&self, f: impl Fn(&Record) -> bool) -> bool {
            self.records.iter().any(f)
        }
    }

    /// The Proxy-Authorization answering the last 407 sent to `at`, for phone `ext`
    /// (password demo<ext>) re-sending its INVITE to `code`.
    fn proxy_auth(net: &Net, at: &str, ext: &str, code: &str) -> String {
        let chal = net
            .to(at)
            .into_iter()
            .rev()
            .find(|m| status_of(m) == Some(407))
            .expect("407");
        let uri = format!("sip:{code}@127.0.0.1:5060");
        authorization(
            &chal,
            "Proxy-Authenticate",
            ext,
            &format!("demo{ext}"),
            "INVITE",
            &uri,
        )
    }

    /// An Authorization value answering the MD5 challenge in `resp`'s `hname` headers.
    fn authorization(
        resp: &str,
        hname: &str,
        user: &str,
        pw: &str,
        method: &str,
        uri: &str,
    ) -> String {
        let chal = resp
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(hname))
            .map(|(_, v)| v.trim().to_string())
            .find(|v| v.contains("algorithm=MD5"))
            .unwrap_or_else(|| panic!("an MD5 challenge in {resp}"));
        let param = |name: &str| -> String {
            let start = chal.find(&format!("{name}=")).expect("param") + name.len() + 1;
            let rest = &chal[start..];
            if let Some(r) = rest.strip_prefix('"') {
                r.split('"').next().unwrap().to_string()
            } else {
                rest.split(',').next().unwrap().trim().to_string()
            }
        };
        let (realm, nonce) = (param("realm"), param("nonce"));
        let ha1 = digest::ha1(Algorithm::Md5, user, &realm, pw);
        let qop = QopAuth {
            nc: "00000001",
            cnonce: "0a4f113b",
        };
        let r = digest::response(Algorithm::Md5, &ha1, method, uri, &nonce, Some(qop));
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\""
        )
    }

    fn agent_invites(net: &Net, at: &str) -> Vec<String> {
        net.requests_to(at, "INVITE")
    }

    #[test]
    fn registered_agent_gets_the_tech_call_and_is_bridged_then_wraps_up() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.register("1002", AGENT2, 3600);
        assert_eq!(net.state("1001"), AgentState::Ready);
        assert!(net.has(|r| matches!(r, Record::AgentStateChanged { agent, state, .. } if agent == "1001" && state == "ready")));

        net.call_and_pick('6');
        assert!(net.has(|r| matches!(
            r,
            Record::IvrLeft {
                outcome: IvrOutcome::Queued,
                ..
            }
        )));
        assert!(net.has(|r| matches!(r, Record::CallQueued { queue, .. } if queue == "tech")));
        // Hold audio loops on the caller leg.
        assert!(net.media.iter().any(|m| matches!(m, MediaCommand::Play { looped: true, prompts, .. } if prompts[0].id == "hold_music")));
        // Best proficiency first: Alice (tech 5), never Bob (tech 3) at the same time.
        let inv = agent_invites(&net, AGENT1);
        assert_eq!(inv.len(), 1, "{:?}", net.to(AGENT1));
        assert!(agent_invites(&net, AGENT2).is_empty());
        assert_eq!(header(&inv[0], "X-Caller"), Some("+8613812345678"));
        assert_eq!(header(&inv[0], "X-Queue"), Some("tech"));
        let path = header(&inv[0], "X-IVR-Path").expect("X-IVR-Path");
        assert!(path.contains("main_menu:6"), "{path}");
        assert!(path.ends_with("queue_tech"), "{path}");
        assert!(header(&inv[0], "From").unwrap().contains("+8613812345678"));
        assert!(inv[0].starts_with("INVITE sip:1001@127.0.0.1:5081 SIP/2.0"));
        assert!(net.has(
            |r| matches!(r, Record::OfferStarted { agent, attempt: 1, .. } if agent == "1001")
        ));
        assert!(matches!(net.state("1001"), AgentState::Reserved { .. }));

        net.answer(AGENT1, &inv[0], 180, "Ringing");
        net.advance(3000);
        net.answer(AGENT1, &inv[0], 200, "OK");
        let acks = net.requests_to(AGENT1, "ACK");
        assert_eq!(acks.len(), 1);
        assert!(acks[0].starts_with("ACK sip:1001@127.0.0.1:5081"));
        assert!(
            net.has(|r| matches!(r, Record::OfferEnded { outcome, .. } if outcome == "answered"))
        );
        assert!(net.has(|r| matches!(r, Record::AgentAnswered { agent, .. } if agent == "1001")));
        let caller_leg = net.caller_leg();
        assert!(net
            .media
            .iter()
            .any(|m| matches!(m, MediaCommand::Bridge { a, .. } if *a == caller_leg)));
        assert!(matches!(net.state("1001"), AgentState::OnCall { .. }));

        // The caller hangs up: the agent gets a BYE and wraps up, then is ready again.
        net.advance(20_000);
        let tag = header(
            &net.to(CALLER)
                .into_iter()
                .rev()
                .find(|m| status_of(m) == Some(200))
                .unwrap(),
            "To",
        )
        .and_then(|t| t.split(";tag=").nth(1))
        .unwrap()
        .to_string();
        net.send(
            CALLER,
            &in_dialog("BYE", "c1", "z9hG4bKbye1", &tag, 2, "", ""),
        );
        assert_eq!(net.requests_to(AGENT1, "BYE").len(), 1);
        assert!(net.has(|r| matches!(
            r,
            Record::CallEnded {
                ended_by: EndedBy::Caller,
                ..
            }
        )));
        assert!(matches!(net.state("1001"), AgentState::WrapUp { .. }));
        assert!(net
            .media
            .iter()
            .any(|m| matches!(m, MediaCommand::Unbridge { .. })));
        net.advance(31_000);
        assert_eq!(net.state("1001"), AgentState::Ready);
        assert!(net.has(|r| matches!(r, Record::WrapUpEnded { agent, .. } if agent == "1001")));
    }

    #[test]
    fn live_outputs_carry_queue_figures_when_they_change_and_the_callers_language() {
        use ccswitch::engine::live::{LiveEvent, QueueCounts};
        let figures = |net: &Net, q: &str| -> Vec<QueueCounts> {
            net.live
                .iter()
                .filter_map(|e| match e {
                    LiveEvent::QueueFigures { queue, counts } if queue == q => Some(*counts),
                    _ => None,
                })
                .collect()
        };
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        let tech = figures(&net, "tech");
        assert_eq!(tech.last().unwrap().agents.ready, 1, "{tech:?}");
        assert_eq!(tech.last().unwrap().waiting, 0);
        let emitted = net.live.len();
        // Nothing the ACD cares about: no live output at all.
        net.advance(1000);
        assert_eq!(net.live.len(), emitted);

        net.call_and_pick('6');
        assert!(net.live.iter().any(|e| matches!(e,
            LiveEvent::CallerQueued { queue, language, .. } if queue == "tech" && !language.is_empty())));
        let last = *figures(&net, "tech").last().unwrap();
        assert_eq!(last.waiting, 1);
        assert!(last.longest_wait_since.is_some());
        assert_eq!(last.agents.reserved, 1);
        // Consecutive emissions for one queue always differ.
        let all = figures(&net, "tech");
        assert!(all.windows(2).all(|w| w[0] != w[1]), "{all:?}");

        let inv = agent_invites(&net, AGENT1);
        net.answer(AGENT1, &inv[0], 200, "OK");
        let last = *figures(&net, "tech").last().unwrap();
        assert_eq!((last.waiting, last.agents.on_call), (0, 1));
        assert_eq!(last.longest_wait_since, None);
    }

    #[test]
    fn our_2xx_to_an_agent_reinvite_is_retransmitted_until_the_ack() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.call_and_pick('6');
        let inv = agent_invites(&net, AGENT1);
        net.answer(AGENT1, &inv[0], 200, "OK");
        let call_id = header(&inv[0], "Call-ID").unwrap().to_string();
        let from = header(&inv[0], "From").unwrap().to_string();
        let to = format!(
            "{};tag=agent{}",
            header(&inv[0], "To").unwrap(),
            AGENT1.len()
        );
        let req = |method: &str, branch: &str, cseq: u32, body: &str| {
            let ct = if body.is_empty() {
                String::new()
            } else {
                "Content-Type: application/sdp\r\n".to_string()
            };
            format!(
                "{method} sip:ccswitch@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {AGENT1};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: {to}\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1001@{AGENT1}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let hold_sdp = "v=0\r\no=agent 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42000 RTP/AVP 0\r\na=sendonly\r\n";
        let oks = |net: &Net| {
            net.to(AGENT1)
                .iter()
                .filter(|m| status_of(m) == Some(200) && m.contains("CSeq: 10 INVITE"))
                .count()
        };
        net.send(AGENT1, &req("INVITE", "z9hG4bKrx1", 10, hold_sdp));
        assert_eq!(oks(&net), 1);
        // T1 = 500 ms: re-sent at 500, 1500, 3500 ms.
        net.advance(3600);
        assert_eq!(oks(&net), 4, "2xx re-sent on T1 doubling");
        // The ACK (CSeq 10 ACK, a new branch) stops it.
        let ack = req("ACK", "z9hG4bKrx1ack", 10, "");
        net.send(AGENT1, &ack);
        net.advance(20_000);
        assert_eq!(oks(&net), 4, "no 2xx after the ACK");
        assert!(
            !net.has(|r| matches!(r, Record::CallEnded { .. })),
            "the call goes on"
        );
    }

    #[test]
    fn an_agent_phone_that_vanishes_ends_the_call_on_rtp_inactivity() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.call_and_pick('6');
        let inv = agent_invites(&net, AGENT1);
        net.answer(AGENT1, &inv[0], 200, "OK");
        let caller_leg = net.caller_leg();
        let agent_leg = net
            .media
            .iter()
            .find_map(|m| match m {
                MediaCommand::Bridge { a, b } if *a == caller_leg => Some(*b),
                _ => None,
            })
            .expect("bridged");
        // The agent leg is opened with the same inactivity guard as the caller's.
        assert!(net.media.iter().any(|m| matches!(
            m,
            MediaCommand::Open { leg, inactivity_ms, .. } if *leg == agent_leg && *inactivity_ms > 0
        )));
        let at = net.now;
        net.input(Input::Media(MediaEvent::Inactive { leg: agent_leg, at }));
        assert_eq!(net.requests_to(AGENT1, "BYE").len(), 1, "BYE to the agent");
        assert_eq!(net.requests_to(CALLER, "BYE").len(), 1, "BYE to the caller");
        assert!(net.has(|r| matches!(
            r,
            Record::CallEnded { ended_by: EndedBy::System, reason, .. } if reason == "rtp_timeout"
        )));
        assert!(matches!(net.state("1001"), AgentState::WrapUp { .. }));
    }

    #[test]
    fn ring_no_answer_cancels_after_18_s_and_offers_the_next_agent() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.register("1002", AGENT2, 3600);
        net.call_and_pick('6');
        let inv = agent_invites(&net, AGENT1);
        assert_eq!(inv.len(), 1);
        net.answer(AGENT1, &inv[0], 180, "Ringing");
        net.advance(17_000);
        assert!(net.requests_to(AGENT1, "CANCEL").is_empty());
        net.advance(2_000);
        let mut cancels = net.requests_to(AGENT1, "CANCEL");
        cancels.dedup(); // Timer E retransmits the CANCEL until the phone answers it.
        assert_eq!(cancels.len(), 1, "{:?}", net.to(AGENT1));
        // RFC 3261 9.1: same branch as the INVITE.
        assert_eq!(header(&cancels[0], "Via"), header(&inv[0], "Via"));
        assert_eq!(
            net.state("1001"),
            AgentState::NotReady("missed_call".into())
        );
        assert!(net.has(|r| matches!(r, Record::OfferEnded { outcome, attempt: 1, .. } if outcome == "no_answer")));
        // The phone answers the CANCEL and the INVITE (487); we ACK the 487.
        net.answer(AGENT1, &inv[0], 487, "Request Terminated");
        assert_eq!(net.requests_to(AGENT1, "ACK").len(), 1);
        // Bob rings next.
        let mut inv2 = agent_invites(&net, AGENT2);
        inv2.dedup(); // Timer A retransmissions while Bob's phone says nothing
        assert_eq!(inv2.len(), 1, "{:?}", net.to(AGENT2));
        assert!(net.has(
            |r| matches!(r, Record::OfferStarted { agent, attempt: 2, .. } if agent == "1002")
        ));
    }

    #[test]
    fn busy_agent_486_passes_the_call_to_the_next() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.register("1002", AGENT2, 3600);
        net.call_and_pick('6');
        let inv = agent_invites(&net, AGENT1);
        net.answer(AGENT1, &inv[0], 486, "Busy Here");
        assert_eq!(net.requests_to(AGENT1, "ACK").len(), 1);
        assert!(net.has(|r| matches!(r, Record::OfferEnded { outcome, .. } if outcome == "busy")));
        assert_eq!(net.state("1001"), AgentState::Ready);
        assert_eq!(agent_invites(&net, AGENT2).len(), 1);
    }

    #[test]
    fn caller_abandons_while_the_agent_rings() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        let tag = net.call_and_pick('6');
        let inv = agent_invites(&net, AGENT1);
        net.answer(AGENT1, &inv[0], 180, "Ringing");
        net.advance(4000);
        net.send(
            CALLER,
            &in_dialog("BYE", "c1", "z9hG4bKbye1", &tag, 2, "", ""),
        );
        assert_eq!(net.requests_to(AGENT1, "CANCEL").len(), 1);
        assert_eq!(net.state("1001"), AgentState::Ready);
        assert!(
            net.has(|r| matches!(r, Record::OfferEnded { outcome, .. } if outcome == "cancelled"))
        );
        assert!(net.has(|r| matches!(
            r,
            Record::CallEnded {
                ended_by: EndedBy::Caller,
                ..
            }
        )));
        assert!(net.has(|r| matches!(
            r,
            Record::IvrLeft {
                outcome: IvrOutcome::Queued,
                ..
            }
        )));
        net.answer(AGENT1, &inv[0], 487, "Request Terminated");
        net.advance(60_000);
        assert_eq!(net.engine.active_calls(), 0);
    }

    #[test]
    fn caller_abandons_in_queue_with_no_agent() {
        let mut net = Net::new();
        let tag = net.call_and_pick('7');
        assert!(
            net.has(|r| matches!(r, Record::CallQueued { queue, .. } if queue == "after_sales"))
        );
        net.advance(3000);
        net.send(
            CALLER,
            &in_dialog("BYE", "c1", "z9hG4bKbye1", &tag, 2, "", ""),
        );
        assert!(net.has(|r| matches!(
            r,
            Record::CallEnded {
                ended_by: EndedBy::Caller,
                ..
            }
        )));
        assert_eq!(net.engine.active_calls(), 0);
    }

    #[test]
    fn agent_hangs_up_first_and_hold_is_recorded() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.call_and_pick('6');
        let inv = agent_invites(&net, AGENT1);
        net.answer(AGENT1, &inv[0], 200, "OK");
        let call_id = header(&inv[0], "Call-ID").unwrap().to_string();
        let from = header(&inv[0], "From").unwrap().to_string();
        let to = format!(
            "{};tag=agent{}",
            header(&inv[0], "To").unwrap(),
            AGENT1.len()
        );
        let hold_sdp = "v=0\r\no=agent 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42000 RTP/AVP 0\r\na=sendonly\r\n";
        // In-dialog requests from the agent: From/To swap.
        let req = |method: &str, branch: &str, cseq: u32, body: &str| {
            let ct = if body.is_empty() {
                String::new()
            } else {
                "Content-Type: application/sdp\r\n".to_string()
            };
            format!(
                "{method} sip:ccswitch@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {AGENT1};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: {to}\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1001@{AGENT1}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let caller_leg = bridged_caller_leg(&net);
        let before = net.media.len();
        net.send(AGENT1, &req("INVITE", "z9hG4bKah1", 10, hold_sdp));
        assert_eq!(net.last_status_to(AGENT1), Some(200));
        assert!(net.has(|r| matches!(r, Record::HoldStarted { .. })));
        assert!(
            hears_hold_audio(&net.media[before..], caller_leg),
            "the held caller hears hold audio: {:?}",
            &net.media[before..]
        );
        net.advance(5000);
        let before = net.media.len();
        net.send(
            AGENT1,
            &req(
                "INVITE",
                "z9hG4bKah2",
                11,
                &hold_sdp.replace("sendonly", "sendrecv"),
            ),
        );
        assert!(net.has(|r| matches!(r, Record::HoldEnded { .. })));
        assert!(
            net.media[before..].contains(&MediaCommand::StopPlay { leg: caller_leg }),
            "hold audio stops on resume: {:?}",
            &net.media[before..]
        );
        net.advance(5000);
        net.send(AGENT1, &req("BYE", "z9hG4bKab1", 12, ""));
        assert_eq!(net.last_status_to(AGENT1), Some(200));
        assert!(net.has(|r| matches!(
            r,
            Record::CallEnded {
                ended_by: EndedBy::Agent,
                ..
            }
        )));
        assert_eq!(net.requests_to(CALLER, "BYE").len(), 1);
        assert!(matches!(net.state("1001"), AgentState::WrapUp { .. }));
    }

    /// The caller leg of the (last) bridge with an agent.
    fn bridged_caller_leg(net: &Net) -> u64 {
        net.media
            .iter()
            .rev()
            .find_map(|m| match m {
                MediaCommand::Bridge { a, .. } => Some(*a),
                _ => None,
            })
            .expect("a bridge")
    }

    /// `cmds` play the looped hold audio on `leg`.
    fn hears_hold_audio(cmds: &[MediaCommand], leg: u64) -> bool {
        cmds.iter().any(|m| {
            matches!(m, MediaCommand::Play { leg: l, looped: true, prompts, .. }
                if *l == leg && prompts[0].id == "hold_music")
        })
    }

    /// A browser agent's hold re-INVITE (SAVPF) is answered from its WebRTC session: our
    /// offer's ICE credentials and fingerprint, recvonly, the hold is recorded and the
    /// caller hears hold audio.
    #[test]
    fn browser_agent_hold_reinvite_is_answered_from_the_webrtc_session() {
        let mut net = Net::new();
        net.transport = Transport::Ws;
        net.register("1001", AGENT1, 3600);
        net.transport = Transport::Udp;
        net.call_and_pick('6');
        let inv = agent_invites(&net, AGENT1);
        net.transport = Transport::Ws;
        net.answer(AGENT1, &inv[0], 200, "OK");
        let call_id = header(&inv[0], "Call-ID").unwrap().to_string();
        let from = header(&inv[0], "From").unwrap().to_string();
        let to = format!(
            "{};tag=agent{}",
            header(&inv[0], "To").unwrap(),
            AGENT1.len()
        );
        let hold_sdp = "v=0\r\no=b 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 101\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=setup:actpass\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";
        let reinvite = format!(
            "INVITE sip:ccswitch@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/WS {AGENT1};branch=z9hG4bKwh1\r\nMax-Forwards: 70\r\nFrom: {to}\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: 10 INVITE\r\nContact: <sip:1001@{AGENT1};transport=ws>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{hold_sdp}",
            hold_sdp.len()
        );
        let caller_leg = bridged_caller_leg(&net);
        let before = net.media.len();
        net.send(AGENT1, &reinvite);
        assert_eq!(net.last_status_to(AGENT1), Some(200));
        assert!(hears_hold_audio(&net.media[before..], caller_leg));
        let ok = net
            .sent
            .iter()
            .rev()
            .find(|(_, to, m)| *to == addr(AGENT1) && status_of(m) == Some(200))
            .map(|(_, _, m)| m.clone())
            .unwrap();
        assert!(ok.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0 8 101"), "{ok}");
        assert!(
            ok.contains("a=recvonly") && ok.contains("a=ice-ufrag:u"),
            "{ok}"
        );
        assert!(ok.contains("a=setup:passive"), "{ok}");
        assert!(net.has(|r| matches!(r, Record::HoldStarted { .. })));
    }

    fn feature_invite(
        ext: &str,
        at: &str,
        code: &str,
        branch: &str,
        cseq: u32,
        auth: Option<&str>,
    ) -> String {
        phone_invite(ext, at, code, (branch, cseq), auth, ("UDP", SDP_OFFER))
    }

    /// An INVITE from phone `ext` at `at` to `code`, over `via.0` (UDP, WS) with SDP `via.1`.
    fn phone_invite(
        ext: &str,
        at: &str,
        code: &str,
        (branch, cseq): (&str, u32),
        auth: Option<&str>,
        (transport, sdp): (&str, &str),
    ) -> String {
        let auth = auth
            .map(|a| format!("Proxy-Authorization: {a}\n"))
            .unwrap_or_default();
        format!(
            "INVITE sip:{code}@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/{transport} {at};branch={branch};rport
Max-Forwards: 70
From: <sip:{ext}@127.0.0.1>;tag=f{ext}
To: <sip:{code}@127.0.0.1>
Call-ID: feat-{ext}-{cseq}
CSeq: {cseq} INVITE
Contact: <sip:{ext}@{at}>
{auth}Content-Type: application/sdp
Content-Length: {}

{}",
            sdp.replace("\r\n", "\n").replace('\n', "\r\n").len(),
            sdp
        )
    }

    /// A browser phone (WebSocket, a WebRTC offer) dialling a feature code: the offer goes to
    /// the media shell's WebRTC peer, the 200 OK carries the peer's answer, the leg talks RTP
    /// with the peer's relay in the codec of that answer; the browser's hold re-INVITE is
    /// answered from the same session (our ICE credentials, our DTLS role).
    #[test]
    fn browser_caller_is_answered_with_its_webrtc_peers_answer() {
        let mut net = Net::new();
        net.transport = Transport::Ws;
        net.register("1001", AGENT1, 3600);
        let browser = |branch: &str, cseq: u32, auth: Option<&str>| {
            phone_invite(
                "1001",
                AGENT1,
                "*22",
                (branch, cseq),
                auth,
                ("WS", BROWSER_OFFER),
            )
        };
        net.send(AGENT1, &browser("z9hG4bKb1", 1, None));
        let auth = proxy_auth(&net, AGENT1, "1001", "*22");
        net.send(AGENT1, &browser("z9hG4bKb2", 2, Some(&auth)));
        let leg = net
            .media
            .iter()
            .find_map(|m| match m {
                MediaCommand::WebRtcAccept { leg, offer, .. } => {
                    assert!(offer.contains("a=fingerprint:sha-256 EE:FF"), "{offer}");
                    Some(*leg)
                }
                _ => None,
            })
            .expect("WebRtcAccept");
        let ok = net
            .to(AGENT1)
            .into_iter()
            .find(|m| status_of(m) == Some(200) && header(m, "CSeq") == Some("2 INVITE"))
            .expect("200 OK");
        assert!(ok.ends_with(WEBRTC_ANSWER), "{ok}");
        assert!(net.media.iter().any(|m| matches!(
            m,
            MediaCommand::Update { leg: l, remote: Some(r), codec: ccswitch::engine::media::Codec::Pcmu, telephone_event_pt: Some(126), .. }
                if *l == leg && *r == webrtc_relay(leg)
        )));
        assert_eq!(net.state("1001"), AgentState::NotReady("break".into()));

        // Hold from the browser: recvonly from our session, our role kept (active).
        let to = header(&ok, "To").unwrap().to_string();
        let ack = format!(
            "ACK sip:ccswitch@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/WS {AGENT1};branch=z9hG4bKb2a\r\nMax-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=f1001\r\nTo: {to}\r\nCall-ID: feat-1001-2\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        net.send(AGENT1, &ack);
        let hold = BROWSER_OFFER.replace("a=sendrecv", "a=sendonly");
        let reinvite = format!(
            "INVITE sip:ccswitch@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/WS {AGENT1};branch=z9hG4bKb3\r\nMax-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=f1001\r\nTo: {to}\r\nCall-ID: feat-1001-2\r\nCSeq: 3 INVITE\r\nContact: <sip:1001@{AGENT1};transport=ws>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{hold}",
            hold.len()
        );
        net.send(AGENT1, &reinvite);
        let ok = net
            .to(AGENT1)
            .into_iter()
            .find(|m| status_of(m) == Some(200) && header(m, "CSeq") == Some("3 INVITE"))
            .expect("200 OK to the re-INVITE");
        assert!(
            ok.contains("a=recvonly") && ok.contains("a=ice-ufrag:w"),
            "{ok}"
        );
        assert!(
            ok.contains("a=setup:active") && ok.contains("o=- 2 2 IN IP4"),
            "{ok}"
        );
    }

    /// A browser caller whose WebRTC peer cannot answer is refused (488), recorded.
    #[test]
    fn browser_caller_whose_webrtc_peer_fails_gets_488() {
        let mut net = Net::new();
        net.webrtc_fails = true;
        net.transport = Transport::Ws;
        net.send(
            "127.0.0.1:5099",
            &phone_invite(
                "2000",
                "127.0.0.1:5099",
                "100",
                ("z9hG4bKc1", 1),
                None,
                ("WS", BROWSER_OFFER),
            ),
        );
        assert_eq!(net.last_status_to("127.0.0.1:5099"), Some(488));
        assert!(
            net.has(|r| matches!(r, Record::CallEnded { reason, .. } if reason == "webrtc_failed"))
        );
        assert_eq!(net.engine.active_calls(), 0);
    }

    #[test]
    fn feature_codes_with_proxy_auth_break_logout_and_refusal() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.send(
            AGENT1,
            &feature_invite("1001", AGENT1, "*22", "z9hG4bKf1", 1, None),
        );
        let chal = net
            .to(AGENT1)
            .into_iter()
            .rev()
            .find(|m| status_of(m) == Some(407))
            .expect("407");
        assert_eq!(net.state("1001"), AgentState::Ready);
        let auth = authorization(
            &chal,
            "Proxy-Authenticate",
            "1001",
            "demo1001",
            "INVITE",
            "sip:*22@127.0.0.1:5060",
        );
        net.send(
            AGENT1,
            &feature_invite("1001", AGENT1, "*22", "z9hG4bKf2", 2, Some(&auth)),
        );
        assert_eq!(net.state("1001"), AgentState::NotReady("break".into()));
        assert!(net.has(|r| matches!(r, Record::AgentStateChanged { state, reason: Some(r), .. } if state == "not_ready" && r == "break")));
        // Answered at once with a confirmation, then our BYE.
        assert!(net
            .to(AGENT1)
            .iter()
            .any(|m| status_of(m) == Some(200) && header(m, "CSeq") == Some("2 INVITE")));
        let (leg, play_id) = net
            .media
            .iter()
            .find_map(|m| match m {
                MediaCommand::Play {
                    leg,
                    play_id,
                    prompts,
                    ..
                } if prompts[0].id == "feature_not_ready" => Some((*leg, *play_id)),
                _ => None,
            })
            .expect("confirmation prompt");
        net.input(Input::Media(MediaEvent::PlayFinished {
            leg,
            play_id,
            interrupted: false,
        }));
        assert_eq!(net.requests_to(AGENT1, "BYE").len(), 1);
        assert!(net.has(
            |r| matches!(r, Record::CallEnded { reason, ended_by: EndedBy::System, .. } if reason == "feature_code")
        ));
        // Log out, then log out again: the second is refused by the ACD.
        for (cseq, expect) in [(3u32, "feature_logged_out"), (5, "feature_refused")] {
            let b = net.to(AGENT1).len();
            let first = format!("z9hG4bKfl{cseq}");
            net.send(
                AGENT1,
                &feature_invite("1001", AGENT1, "*23", &first, cseq, None),
            );
            let chal = net.to(AGENT1)[b..]
                .iter()
                .find(|m| status_of(m) == Some(407))
                .cloned()
                .expect("407");
            let auth = authorization(
                &chal,
                "Proxy-Authenticate",
                "1001",
                "demo1001",
                "INVITE",
                "sip:*23@127.0.0.1:5060",
            );
            let second = format!("z9hG4bKfm{cseq}");
            net.send(
                AGENT1,
                &feature_invite("1001", AGENT1, "*23", &second, cseq + 1, Some(&auth)),
            );
            let last = net.media.iter().rev().find_map(|m| match m {
                MediaCommand::Play { prompts, .. } => Some(prompts[0].id.clone()),
                _ => None,
            });
            assert_eq!(last.as_deref(), Some(expect));
        }
        assert_eq!(net.state("1001"), AgentState::LoggedOut);
    }

    #[test]
    fn unauthenticated_feature_codes_and_agent_extensions_are_refused() {
        let mut net = Net::new();
        // A stranger with made-up credentials gets challenged, then refused.
        net.send(
            CALLER,
            &feature_invite("1001", CALLER, "*21", "z9hG4bKx1", 1, None),
        );
        assert_eq!(net.last_status_to(CALLER), Some(407));
        let chal = net.to(CALLER).last().cloned().unwrap();
        let auth = authorization(
            &chal,
            "Proxy-Authenticate",
            "1001",
            "wrong",
            "INVITE",
            "sip:*21@127.0.0.1:5060",
        );
        net.send(
            CALLER,
            &feature_invite("1001", CALLER, "*21", "z9hG4bKx2", 2, Some(&auth)),
        );
        assert!(matches!(net.last_status_to(CALLER), Some(403) | Some(407)));
        // Dialling an agent's extension or another star code never reaches anyone.
        net.send(
            CALLER,
            &feature_invite("9999", CALLER, "1001", "z9hG4bKx3", 3, None),
        );
        assert_eq!(net.last_status_to(CALLER), Some(404));
        net.send(
            CALLER,
            &feature_invite("9999", CALLER, "*99", "z9hG4bKx4", 4, None),
        );
        assert_eq!(net.last_status_to(CALLER), Some(404));
        assert_eq!(net.engine.active_calls(), 0);
    }

    #[test]
    fn registration_expiry_logs_the_agent_out() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 60);
        assert_eq!(net.state("1001"), AgentState::Ready);
        net.advance(61_000);
        assert_eq!(net.state("1001"), AgentState::LoggedOut);
        assert!(net.has(
            |r| matches!(r, Record::AgentStateChanged { state, .. } if state == "logged_out")
        ));
    }

    /// Sends an in-dialog request from agent 1's phone in the dialog of `inv`.
    fn agent_request(
        net: &mut Net,
        inv: &str,
        method: &str,
        branch: &str,
        cseq: u32,
        extra: &str,
        body: &str,
    ) {
        agent_request_from(net, AGENT1, inv, method, branch, cseq, extra, body)
    }

    /// Like `agent_request`, sent from `src` (a spoofer when it is not the phone).
    #[allow(clippy::too_many_arguments)]
    fn agent_request_from(
        net: &mut Net,
        src: &str,
        inv: &str,
        method: &str,
        branch: &str,
        cseq: u32,
        extra: &str,
        body: &str,
    ) {
        let call_id = header(inv, "Call-ID").unwrap().to_string();
        let from = header(inv, "From").unwrap().to_string();
        let to = format!("{};tag=agent{}", header(inv, "To").unwrap(), AGENT1.len());
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_string()
        };
        let m = format!(
            "{method} sip:ccswitch@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {AGENT1};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: {to}\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1001@{AGENT1}>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        net.send(src, &m);
    }

    #[test]
    fn wrap_up_ended_by_the_ready_code() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.call_and_pick('6');
        let inv = agent_invites(&net, AGENT1);
        net.answer(AGENT1, &inv[0], 200, "OK");
        net.advance(10_000);
        agent_request(&mut net, &inv[0], "BYE", "z9hG4bKab1", 5, "", "");
        assert!(matches!(net.state("1001"), AgentState::WrapUp { .. }));
        net.advance(5_000);
        net.send(
            AGENT1,
            &feature_invite("1001", AGENT1, "*21", "z9hG4bKr1", 1, None),
        );
        let auth = proxy_auth(&net, AGENT1, "1001", "*21");
        net.send(
            AGENT1,
            &feature_invite("1001", AGENT1, "*21", "z9hG4bKr2", 2, Some(&auth)),
        );
        assert_eq!(net.state("1001"), AgentState::Ready);
        assert!(net.has(|r| matches!(r, Record::WrapUpEnded { agent, .. } if agent == "1001")));
    }

    #[test]
    fn blind_transfer_to_a_queue_by_refer() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.call_and_pick('6');
        let inv = agent_invites(&net, AGENT1);
        net.answer(AGENT1, &inv[0], 200, "OK");
        net.advance(10_000);
        // A REFER from another address (a leaked Call-ID) and one to a target that is not
        // a queue are refused; the call stays with the agent.
        let refer_to = "Refer-To: <sip:after_sales@127.0.0.1>\r\n";
        agent_request_from(
            &mut net,
            CALLER,
            &inv[0],
            "REFER",
            "z9hG4bKrf0",
            4,
            refer_to,
            "",
        );
        assert_eq!(net.last_status_to(CALLER), Some(403));
        let bad = "Refer-To: <sip:+19005550000@127.0.0.1>\r\n";
        agent_request(&mut net, &inv[0], "REFER", "z9hG4bKrfx", 4, bad, "");
        assert_eq!(net.last_status_to(AGENT1), Some(404));
        assert!(matches!(net.state("1001"), AgentState::OnCall { .. }));
        agent_request(
            &mut net,
            &inv[0],
            "REFER",
            "z9hG4bKrf1",
            5,
            "Refer-To: <sip:after_sales@127.0.0.1>\r\n",
            "",
        );
        assert!(net.to(AGENT1).iter().any(|m| status_of(m) == Some(202)));
        let notify = net.requests_to(AGENT1, "NOTIFY");
        assert_eq!(notify.len(), 1);
        assert!(notify[0].contains("SIP/2.0 200 OK"));
        assert_eq!(net.requests_to(AGENT1, "BYE").len(), 1);
        assert!(net.has(|r| matches!(r, Record::CallTransferred { target, by, .. } if target == "after_sales" && by == "1001")));
        assert!(
            net.has(|r| matches!(r, Record::CallQueued { queue, .. } if queue == "after_sales"))
        );
        assert!(matches!(net.state("1001"), AgentState::WrapUp { .. }));
        // The caller is not hung up and hears hold audio again.
        assert!(net.requests_to(CALLER, "BYE").is_empty());
        assert!(matches!(
            net.media.last(),
            Some(MediaCommand::Play { looped: true, .. })
        ));
        assert_eq!(net.engine.active_calls(), 1);
    }

    #[test]
    fn blind_transfer_to_an_agent_extension_by_refer() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.call_and_pick('6');
        let inv = agent_invites(&net, AGENT1);
        net.answer(AGENT1, &inv[0], 200, "OK");
        net.advance(5_000);
        // Bob is not signed in yet: 480, the call stays with Alice.
        let to_bob = "Refer-To: <sip:1002@127.0.0.1>\r\n";
        agent_request(&mut net, &inv[0], "REFER", "z9hG4bKre0", 4, to_bob, "");
        assert_eq!(net.last_status_to(AGENT1), Some(480));
        assert!(matches!(net.state("1001"), AgentState::OnCall { .. }));
        net.register("1002", AGENT2, 3600);
        agent_request(&mut net, &inv[0], "REFER", "z9hG4bKre1", 5, to_bob, "");
        assert!(net.to(AGENT1).iter().any(|m| status_of(m) == Some(202)));
        assert_eq!(net.requests_to(AGENT1, "BYE").len(), 1);
        assert!(net.has(|r| matches!(r, Record::CallTransferred { target, by, .. } if target == "1002" && by == "1001")));
        assert!(matches!(net.state("1001"), AgentState::WrapUp { .. }));
        // Bob's phone rings with the caller's details and takes the call.
        let bob = agent_invites(&net, AGENT2);
        assert_eq!(bob.len(), 1, "{:?}", net.to(AGENT2));
        assert_eq!(header(&bob[0], "X-Caller"), Some("+8613812345678"));
        net.answer(AGENT2, &bob[0], 200, "OK");
        assert!(matches!(net.state("1002"), AgentState::OnCall { .. }));
        assert!(net.has(|r| matches!(r, Record::AgentAnswered { agent, .. } if agent == "1002")));
        assert!(net.requests_to(CALLER, "BYE").is_empty());
    }

    #[test]
    fn offers_fork_to_every_contact_and_the_first_answer_wins() {
        const DESK: &str = "127.0.0.1:5091";
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.register("1001", DESK, 3600);
        net.call_and_pick('6');
        let soft = agent_invites(&net, AGENT1);
        let desk = agent_invites(&net, DESK);
        assert_eq!((soft.len(), desk.len()), (1, 1), "both contacts ring");
        assert_eq!(header(&soft[0], "Call-ID"), header(&desk[0], "Call-ID"));
        assert_ne!(header(&soft[0], "Via"), header(&desk[0], "Via"));
        net.answer(DESK, &desk[0], 180, "Ringing");
        net.answer(AGENT1, &soft[0], 180, "Ringing");
        net.answer(DESK, &desk[0], 200, "OK");
        assert_eq!(net.requests_to(DESK, "ACK").len(), 1);
        // The softphone's fork is withdrawn.
        let cancels = net.requests_to(AGENT1, "CANCEL");
        assert_eq!(cancels.len(), 1, "{:?}", net.to(AGENT1));
        assert_eq!(header(&cancels[0], "Via"), header(&soft[0], "Via"));
        assert!(matches!(net.state("1001"), AgentState::OnCall { .. }));
        // A retransmitted 200 gets the same ACK again.
        net.answer(DESK, &desk[0], 200, "OK");
        let acks = net.requests_to(DESK, "ACK");
        assert_eq!(acks.len(), 2);
        assert_eq!(acks[0], acks[1]);
        net.answer(AGENT1, &soft[0], 487, "Request Terminated");
        assert_eq!(net.requests_to(AGENT1, "ACK").len(), 1);
        assert_eq!(
            net.records
                .iter()
                .filter(|r| matches!(r, Record::OfferStarted { .. }))
                .count(),
            1,
            "one offer, two forks"
        );
    }

    #[test]
    fn waiting_caller_hears_position_and_expected_wait_then_hold_again() {
        let mut net = Net::waiting();
        net.call_and_pick('7');
        let holds = |net: &Net| {
            net.media
                .iter()
                .filter(|m| matches!(m, MediaCommand::Play { looped: true, .. }))
                .count()
        };
        assert_eq!(holds(&net), 1);
        net.advance(46_000);
        let (play_id, prompts) = net.last_caller_play().expect("announcement");
        assert_eq!(prompts.first().map(String::as_str), Some("queue_position"));
        assert!(prompts.contains(&"digit_1".to_string()), "{prompts:?}");
        assert_eq!(prompts.last().map(String::as_str), Some("please_hold"));
        let leg = net.caller_leg();
        net.input(Input::Media(MediaEvent::PlayFinished {
            leg,
            play_id,
            interrupted: false,
        }));
        assert_eq!(holds(&net), 2, "hold audio resumes after the announcement");
    }

    #[test]
    fn max_wait_plays_the_closing_prompt_records_a_callback_and_hangs_up() {
        let mut net = Net::waiting();
        net.call_and_pick('7');
        net.advance(601_000);
        assert!(net.has(
            |r| matches!(r, Record::CallbackRequested { queue, number, .. } if queue == "after_sales" && number == "+8613812345678")
        ));
        let (play_id, prompts) = net.last_caller_play().expect("closing prompt");
        assert_eq!(prompts, vec!["closed".to_string()]);
        let leg = net.caller_leg();
        net.input(Input::Media(MediaEvent::PlayFinished {
            leg,
            play_id,
            interrupted: false,
        }));
        assert_eq!(net.requests_to(CALLER, "BYE").len(), 1);
        assert!(net.has(|r| matches!(r, Record::CallEnded { ended_by: EndedBy::System, reason, .. } if reason == "max_wait")));
        assert!(net.has(|r| matches!(
            r,
            Record::IvrLeft {
                outcome: IvrOutcome::Queued,
                ..
            }
        )));
    }

    fn caller_addr(n: usize) -> String {
        format!("127.0.0.1:{}", 6000 + n)
    }

    /// Caller `n` on the tech hotline (straight into the tech queue).
    fn hotline_request(n: usize, method: &str, branch: &str, to_tag: &str, cseq: u32) -> String {
        let at = caller_addr(n);
        let to_tag = if to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={to_tag}")
        };
        let body = if method == "INVITE" {
            SDP_OFFER.replace('\n', "\r\n")
        } else {
            String::new()
        };
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\n"
        };
        let cseq_method = if method == "CANCEL" { "INVITE" } else { method };
        let cseq_line = if method == "CANCEL" {
            "1 CANCEL".to_string()
        } else {
            format!("{cseq} {cseq_method}")
        };
        crlf(&format!(
            "{method} sip:4008006@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {at};branch={branch};rport
Max-Forwards: 70
From: <sip:+86138000{n:05}@127.0.0.1>;tag=pc{n}
To: <sip:4008006@127.0.0.1>{to_tag}
Call-ID: prop-{n}
CSeq: {cseq_line}
Contact: <sip:c{n}@{at}>
{ct}Content-Length: {}

",
            body.len()
        )) + &body
    }

    fn to_tag_from(net: &Net, at: &str) -> String {
        net.to(at)
            .iter()
            .rev()
            .find(|m| {
                matches!(status_of(m), Some(180..=299))
                    && header(m, "CSeq").is_some_and(|c| c.ends_with("INVITE"))
            })
            .and_then(|m| header(m, "To"))
            .and_then(|t| t.split(";tag=").nth(1))
            .map(|t| t.split(';').next().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Callers come and go, agents answer, refuse, ignore or hang up at random: no
            /// agent is ever offered two calls or talks on two, and everything ends cleanly.
            #[test]
            fn agents_are_never_double_booked_and_nothing_leaks(
                actions in prop::collection::vec((0u8..8, 0usize..4, 0u64..12_000), 1..40)
            ) {
                let mut net = Net::new();
                net.register("1001", AGENT1, 3600);
                net.register("1002", AGENT2, 3600);
                let mut callers = 0usize;
                for (i, (action, who, wait)) in actions.into_iter().enumerate() {
                    net.advance(wait);
                    let agent = if who % 2 == 0 { AGENT1 } else { AGENT2 };
                    let cseq = 10 + i as u32;
                    match action {
                        0 | 1 if callers < 4 => {
                            let b = format!("z9hG4bKpi{callers}");
                            let m = hotline_request(callers, "INVITE", &b, "", 1);
                            let at = caller_addr(callers);
                            net.send(&at, &m);
                            callers += 1;
                        }
                        2 if callers > 0 => {
                            let n = who % callers;
                            let at = caller_addr(n);
                            let tag = to_tag_from(&net, &at);
                            if !tag.is_empty() {
                                let m = hotline_request(n, "ACK", &format!("z9hG4bKpa{i}"), &tag, 1);
                                net.send(&at, &m);
                            }
                        }
                        3 if callers > 0 => {
                            let n = who % callers;
                            let at = caller_addr(n);
                            let tag = to_tag_from(&net, &at);
                            let m = hotline_request(n, "BYE", &format!("z9hG4bKpb{i}"), &tag, cseq);
                            net.send(&at, &m);
                        }
                        _ => {
                            // The agent's phone answers its latest INVITE.
                            if let Some(inv) = agent_invites(&net, agent).last().cloned() {
                                let (status, reason) = match (action, who) {
                                    (4, _) => (180, "Ringing"),
                                    (5, 0 | 1) => (200, "OK"),
                                    (5, _) => (486, "Busy Here"),
                                    (6, 0) => (603, "Decline"),
                                    (6, _) => (487, "Request Terminated"),
                                    _ => (200, "OK"),
                                };
                                net.answer(agent, &inv, status, reason);
                            }
                        }
                    }
                    prop_assert_eq!(net.engine.check_agent_invariants(), Ok(()));
                }
                // Everyone hangs up; phones answer what is left with 487; timers run out.
                for n in 0..callers {
                    let at = caller_addr(n);
                    let tag = to_tag_from(&net, &at);
                    let m = hotline_request(n, "BYE", &format!("z9hG4bKpz{n}"), &tag, 999);
                    net.send(&at, &m);
                }
                for agent in [AGENT1, AGENT2] {
                    for inv in agent_invites(&net, agent) {
                        net.answer(agent, &inv, 487, "Request Terminated");
                    }
                }
                net.advance(300_000);
                prop_assert_eq!(net.engine.check_agent_invariants(), Ok(()));
                prop_assert_eq!(net.engine.active_calls(), 0);
                prop_assert_eq!(net.engine.agent_legs(), 0, "agent legs left behind");
                for a in ["1001", "1002"] {
                    let st = net.state(a);
                    prop_assert!(matches!(st, AgentState::Ready | AgentState::NotReady(_)), "{} {:?}", a, st);
                }
                let started = net.records.iter().filter(|r| matches!(r, Record::CallStarted { .. })).count();
                let ended = net.records.iter().filter(|r| matches!(r, Record::CallEnded { .. })).count();
                prop_assert_eq!(started, ended);
            }
        }
    }

    #[test]
    fn unregistering_the_last_contact_logs_the_agent_out() {
        const DESK: &str = "127.0.0.1:5091";
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        net.register("1001", DESK, 3600);
        assert_eq!(net.state("1001"), AgentState::Ready);
        net.register("1001", AGENT1, 0);
        assert_eq!(net.state("1001"), AgentState::Ready, "one phone is left");
        net.register("1001", DESK, 0);
        assert_eq!(net.state("1001"), AgentState::LoggedOut);
        net.register("1001", DESK, 3600);
        assert_eq!(
            net.state("1001"),
            AgentState::Ready,
            "registering again logs in"
        );
    }

    #[test]
    fn long_wait_hears_the_apology_before_the_bridge() {
        let mut net = Net::waiting();
        net.call_and_pick('6');
        net.advance(61_000);
        net.register("1001", AGENT1, 3600);
        let inv = agent_invites(&net, AGENT1);
        assert_eq!(inv.len(), 1);
        net.answer(AGENT1, &inv[0], 200, "OK");
        let (play_id, prompts) = net.last_caller_play().expect("apology");
        assert_eq!(prompts, vec!["sorry_wait".to_string()]);
        let bridged = |net: &Net| {
            net.media
                .iter()
                .any(|m| matches!(m, MediaCommand::Bridge { .. }))
        };
        assert!(!bridged(&net), "the apology plays before the bridge");
        let leg = net.caller_leg();
        net.input(Input::Media(MediaEvent::PlayFinished {
            leg,
            play_id,
            interrupted: false,
        }));
        assert!(bridged(&net));
    }

    #[test]
    fn agent_commands_change_state_like_feature_codes() {
        use ccswitch::engine::AgentChange;
        let mut net = Net::new();
        let cmd = |agent: &str, change: AgentChange| {
            Input::Command(Command::Agent {
                agent: agent.to_string(),
                change,
            })
        };
        net.input(cmd("1001", AgentChange::Ready));
        assert_eq!(net.state("1001"), AgentState::Ready, "ready logs in");
        let reason = "training".to_string();
        net.input(cmd("1001", AgentChange::NotReady { reason }));
        assert_eq!(net.state("1001"), AgentState::NotReady("training".into()));
        net.input(cmd("1001", AgentChange::Logout));
        assert_eq!(net.state("1001"), AgentState::LoggedOut);
        // Unknown agents and refused changes are only logged.
        net.input(cmd("4242", AgentChange::Ready));
        net.input(cmd("1001", AgentChange::Logout));
        assert!(net.has(|r| matches!(r, Record::AgentStateChanged { agent, state, reason: Some(r), .. } if agent == "1001" && state == "not_ready" && r == "training")));
    }

    // ---- a queue with nobody logged in (issue #7) --------------------------------------

    fn agent_cmd(net: &mut Net, agent: &str, change: ccswitch::engine::AgentChange) {
        net.input(Input::Command(Command::Agent {
            agent: agent.to_string(),
            change,
        }));
    }

    fn callbacks(net: &Net) -> usize {
        net.records
            .iter()
            .filter(|r| matches!(r, Record::CallbackRequested { .. }))
            .count()
    }

    #[test]
    fn a_queue_with_nobody_logged_in_closes_after_the_grace_with_a_callback() {
        // Only Bob (tech, complaints) is registered; the caller presses 7 (after-sales).
        let mut net = Net::new();
        net.register("1002", AGENT1, 3600);
        net.call_and_pick('7');
        net.advance(9_000);
        assert_eq!(callbacks(&net), 0, "still in the grace period");
        net.advance(1_000);
        assert!(net.has(
            |r| matches!(r, Record::CallbackRequested { queue, number, .. } if queue == "after_sales" && number == "+8613812345678")
        ));
        let (play_id, prompts) = net.last_caller_play().expect("closing prompt");
        assert_eq!(prompts, vec!["closed".to_string()]);
        let leg = net.caller_leg();
        net.input(Input::Media(MediaEvent::PlayFinished {
            leg,
            play_id,
            interrupted: false,
        }));
        assert_eq!(net.requests_to(CALLER, "BYE").len(), 1);
        assert!(net.has(|r| matches!(r, Record::CallEnded { ended_by: EndedBy::System, reason, .. } if reason == "no_agents")));
        assert!(agent_invites(&net, AGENT1).is_empty());
    }

    #[test]
    fn the_last_after_sales_agent_logging_out_closes_the_waiting_call() {
        use ccswitch::engine::AgentChange;
        let mut net = Net::new();
        agent_cmd(&mut net, "1003", AgentChange::Ready);
        let reason = "break".to_string();
        agent_cmd(&mut net, "1003", AgentChange::NotReady { reason });
        net.call_and_pick('7');
        net.advance(120_000);
        assert_eq!(callbacks(&net), 0, "Chen is on a break, not gone");
        agent_cmd(&mut net, "1003", AgentChange::Logout);
        net.advance(9_999);
        assert_eq!(callbacks(&net), 0);
        net.advance(1);
        assert_eq!(callbacks(&net), 1);
        assert_eq!(
            net.last_caller_play().map(|p| p.1),
            Some(vec!["closed".to_string()])
        );
    }

    #[test]
    fn the_last_agents_registration_expiring_closes_the_waiting_call() {
        use ccswitch::engine::AgentChange;
        let mut net = Net::new();
        net.register("1003", AGENT2, 60);
        let reason = "break".to_string();
        agent_cmd(&mut net, "1003", AgentChange::NotReady { reason });
        net.call_and_pick('7');
        net.advance(40_000);
        assert_eq!(callbacks(&net), 0, "Chen is registered, on a break");
        // The registration runs out (60 s, never refreshed): logged out, then the grace.
        net.advance(60_000);
        assert_eq!(net.state("1003"), AgentState::LoggedOut);
        assert_eq!(callbacks(&net), 1);
        assert!(net.has(|r| matches!(
            r,
            Record::AgentStateChanged { agent, state, .. } if agent == "1003" && state == "logged_out"
        )));
    }

    #[test]
    fn no_agents_overflow_moves_the_caller_and_records_why() {
        let mut net = Net::with_queues(|q| {
            if q.name == "after_sales" {
                q.when_no_agents = NoAgentsPolicy::Overflow;
                q.on_max_wait = MaxWaitPolicy::Overflow {
                    queue: "tech".into(),
                };
            }
        });
        net.register("1002", AGENT1, 3600);
        net.call_and_pick('7');
        net.advance(9_000);
        assert!(agent_invites(&net, AGENT1).is_empty());
        net.advance(1_000);
        assert!(net.has(|r| matches!(
            r,
            Record::CallOverflowed { from_queue, to_queue, reason, .. }
                if from_queue == "after_sales" && to_queue == "tech" && reason == "no_agents"
        )));
        assert_eq!(
            agent_invites(&net, AGENT1).len(),
            1,
            "Bob is offered the call in tech"
        );
        assert_eq!(callbacks(&net), 0);
    }

    /// The TCP transport's idle timeout asks the engine whether a connection is still
    /// needed: yes while an agent's registration over it lives, or a call runs on it.
    #[test]
    fn engine_says_which_tcp_connections_it_still_needs() {
        let mut net = Net::new();
        net.transport = Transport::Tcp;
        assert!(!net.engine.uses_tcp_connection(addr(AGENT1)));
        net.register("1001", AGENT1, 3600);
        assert!(net.engine.uses_tcp_connection(addr(AGENT1)));
        assert!(!net.engine.uses_tcp_connection(addr(AGENT2)));
        // The same agent over UDP holds no TCP connection.
        net.transport = Transport::Udp;
        net.register("1002", AGENT2, 3600);
        assert!(!net.engine.uses_tcp_connection(addr(AGENT2)));
        // The registration expires: the connection is no longer needed.
        net.advance(3_601_000);
        assert!(!net.engine.uses_tcp_connection(addr(AGENT1)));

        let mut sim = Sim::with_transport(config(0, 10), Transport::Tcp);
        let caller = addr(CALLER);
        assert!(!sim.engine.uses_tcp_connection(caller));
        let tag = answered_call(&mut sim);
        assert!(sim.engine.uses_tcp_connection(caller));
        sim.sip(&in_dialog("BYE", "c1", "z9hG4bKbye1", &tag, 2, "", ""));
        sim.advance(60_000);
        assert_eq!(sim.engine.active_calls(), 0);
        assert!(!sim.engine.uses_tcp_connection(caller));
    }

    /// SIP over WebSocket (RFC 7118): an offer to an agent registered over a WebSocket goes
    /// over that connection (Via `SIP/2.0/WS`, our Contact `transport=ws`, no Timer A
    /// retransmissions); the connection closing removes the registration at once and the
    /// ringing offer fails over to the next agent.
    #[test]
    fn websocket_agent_is_offered_over_its_connection_and_goes_with_it() {
        let mut net = Net::new();
        let ws = Peer {
            transport: Transport::Ws,
            addr: addr(AGENT1),
        };
        net.transport = Transport::Ws;
        net.register("1001", AGENT1, 3600);
        assert!(net.engine.uses_connection(ws));
        assert!(!net.engine.uses_tcp_connection(addr(AGENT1)));
        net.transport = Transport::Udp;
        net.register("1002", AGENT2, 3600);
        net.call_and_pick('6');
        let inv = agent_invites(&net, AGENT1);
        assert_eq!(inv.len(), 1);
        assert!(
            header(&inv[0], "Via").is_some_and(|v| v.starts_with("SIP/2.0/WS ")),
            "{}",
            inv[0]
        );
        // The browser gets the media shell's WebRTC offer, the desk phone plain RTP.
        assert!(inv[0].ends_with(WEBRTC_OFFER), "{}", inv[0]);
        assert!(net
            .media
            .iter()
            .any(|m| matches!(m, MediaCommand::WebRtcOffer { fork: 0, .. })));
        assert!(header(&inv[0], "Contact").is_some_and(|c| c.contains(";transport=ws>")));
        net.advance(2_000);
        assert_eq!(agent_invites(&net, AGENT1).len(), 1, "reliable: no Timer A");
        assert!(agent_invites(&net, AGENT2).is_empty());
        // The browser tab closes.
        net.input(Input::ConnectionClosed(ws));
        assert!(!net.engine.uses_connection(ws));
        assert_eq!(net.state("1001"), AgentState::LoggedOut);
        assert!(
            net.has(|r| matches!(
                r,
                Record::OfferEnded { attempt: 1, outcome, .. } if outcome == "failed"
            )),
            "{:#?}",
            net.records
        );
        assert_eq!(agent_invites(&net, AGENT2).len(), 1, "Bob rings next");
        // A UDP or TCP peer "closing" means nothing: 1002 stays registered.
        net.input(Input::ConnectionClosed(Peer {
            transport: Transport::Udp,
            addr: addr(AGENT2),
        }));
        assert_ne!(net.state("1002"), AgentState::LoggedOut);
    }

    /// A browser whose WebRTC peer cannot be created is not rung: the offer fails over to the
    /// next agent, and no INVITE ever reaches the browser.
    #[test]
    fn websocket_agent_whose_webrtc_peer_fails_is_skipped() {
        let mut net = Net::new();
        net.webrtc_fails = true;
        net.transport = Transport::Ws;
        net.register("1001", AGENT1, 3600);
        net.transport = Transport::Udp;
        net.register("1002", AGENT2, 3600);
        net.call_and_pick('6');
        assert!(agent_invites(&net, AGENT1).is_empty());
        assert!(
            net.has(|r| matches!(
                r,
                Record::OfferEnded { attempt: 1, outcome, .. } if outcome == "failed"
            )),
            "{:#?}",
            net.records
        );
        let inv = agent_invites(&net, AGENT2);
        assert_eq!(inv.len(), 1, "Bob rings next");
        assert!(inv[0].contains("RTP/AVP"), "{}", inv[0]);
    }

    /// Alice (1001) registered over WebSocket answers the tech call in her browser; Bob
    /// (1002, UDP desk phone) is registered too when `bob` (on a break, so the call is
    /// Alice's). Returns her connection and her agent leg.
    fn browser_call_answered(net: &mut Net, bob: bool) -> (Peer, u64) {
        let ws = Peer {
            transport: Transport::Ws,
            addr: addr(AGENT1),
        };
        net.transport = Transport::Ws;
        net.register("1001", AGENT1, 3600);
        net.transport = Transport::Udp;
        if bob {
            net.register("1002", AGENT2, 3600);
            net.input(Input::Command(Command::Agent {
                agent: "1002".into(),
                change: AgentChange::NotReady {
                    reason: "break".into(),
                },
            }));
        }
        net.call_and_pick('6');
        let inv = agent_invites(net, AGENT1);
        assert_eq!(inv.len(), 1);
        net.transport = Transport::Ws;
        net.answer(AGENT1, &inv[0], 200, "OK");
        net.transport = Transport::Udp;
        assert_eq!(net.requests_to(AGENT1, "ACK").len(), 1);
        // The answer went to the WebRTC peer; the agent leg talks RTP with its relay socket.
        let answered = net.media.iter().find_map(|m| match m {
            MediaCommand::WebRtcAnswer { leg, fork: 0, sdp } => Some((*leg, sdp.clone())),
            _ => None,
        });
        let (leg, sdp) = answered.expect("WebRtcAnswer");
        assert!(sdp.contains("m=audio 42000"), "{sdp}");
        assert!(net.media.iter().any(|m| matches!(
            m,
            MediaCommand::Update { leg: l, remote: Some(r), .. } if *l == leg && *r == webrtc_relay(leg)
        )));
        assert!(net
            .media
            .iter()
            .any(|m| matches!(m, MediaCommand::Bridge { b, .. } if *b == leg)));
        assert!(matches!(net.state("1001"), AgentState::OnCall { .. }));
        (ws, leg)
    }

    use ccswitch::engine::AgentChange;

    fn connection_lost() -> AgentState {
        AgentState::NotReady("connection_lost".into())
    }

    /// A browser agent's WebSocket dropping mid-call with nobody else to take the call: the
    /// caller hears goodbye and is hung up (reason agent_connection_lost); the agent is not
    /// ready (connection_lost), still logged in though the connection took her binding.
    #[test]
    fn websocket_agent_closing_mid_call_alone_caller_hears_goodbye() {
        let mut net = Net::new();
        let (ws, _) = browser_call_answered(&mut net, false);
        let caller_leg = net.caller_leg();
        let before = net.media.len();
        net.input(Input::ConnectionClosed(ws));
        assert_eq!(net.state("1001"), connection_lost());
        assert!(net.has(|r| matches!(
            r,
            Record::AgentStateChanged { agent, state, reason: Some(why), .. }
                if agent == "1001" && state == "not_ready" && why == "connection_lost"
        )));
        assert!(!net.has(|r| matches!(
            r,
            Record::AgentStateChanged { state, .. } if state == "wrap_up"
        )));
        let goodbye = net.media[before..].iter().find_map(|m| match m {
            MediaCommand::Play {
                leg,
                play_id,
                prompts,
                ..
            } if *leg == caller_leg && prompts[0].id == "goodbye" => Some(*play_id),
            _ => None,
        });
        let play_id = goodbye.expect("goodbye to the caller");
        assert!(
            net.requests_to(CALLER, "BYE").is_empty(),
            "not before goodbye"
        );
        net.input(Input::Media(MediaEvent::PlayFinished {
            leg: caller_leg,
            play_id,
            interrupted: false,
        }));
        assert!(net.has(|r| matches!(
            r,
            Record::CallEnded { ended_by: EndedBy::System, reason, .. } if reason == "agent_connection_lost"
        )), "{:#?}", net.records);
        assert_eq!(net.requests_to(CALLER, "BYE").len(), 1);
        assert!(
            net.requests_to(AGENT1, "BYE").is_empty(),
            "nothing to send it on"
        );
        net.advance(60_000);
        assert_eq!(net.engine.active_calls(), 0);
        assert!(!net.engine.uses_connection(ws));
        assert_eq!(net.state("1001"), connection_lost());
    }

    /// The same with Bob logged in (on a break): the caller goes back to the queue with
    /// hold audio, and when Bob is ready he is offered the call and takes it.
    #[test]
    fn websocket_agent_closing_mid_call_caller_goes_to_the_next_agent() {
        let mut net = Net::new();
        let (ws, _) = browser_call_answered(&mut net, true);
        let caller_leg = net.caller_leg();
        let before = net.media.len();
        net.input(Input::ConnectionClosed(ws));
        assert_eq!(net.state("1001"), connection_lost());
        assert!(hears_hold_audio(&net.media[before..], caller_leg));
        assert_eq!(
            net.records
                .iter()
                .filter(|r| matches!(r, Record::CallQueued { queue, .. } if queue == "tech"))
                .count(),
            2,
            "back in the tech queue"
        );
        assert!(net.requests_to(CALLER, "BYE").is_empty());
        assert!(!net.has(|r| matches!(r, Record::CallEnded { .. })));
        net.input(Input::Command(Command::Agent {
            agent: "1002".into(),
            change: AgentChange::Ready,
        }));
        let inv = agent_invites(&net, AGENT2);
        assert_eq!(inv.len(), 1, "Bob is offered the call");
        assert!(net.has(|r| matches!(
            r,
            Record::OfferStarted { attempt: 2, agent, .. } if agent == "1002"
        )));
        net.answer(AGENT2, &inv[0], 200, "OK");
        assert!(matches!(net.state("1002"), AgentState::OnCall { .. }));
        assert_eq!(
            net.media
                .iter()
                .filter(|m| matches!(m, MediaCommand::Bridge { a, .. } if *a == caller_leg))
                .count(),
            2,
            "the caller is bridged again"
        );
        assert_eq!(net.state("1001"), connection_lost());
    }

    /// A browser whose media dies while its WebSocket stays up (ICE/DTLS failing): the RTP
    /// inactivity guard ends its part the same way: BYE to the browser, the agent not ready
    /// (connection_lost), the caller on to the next agent.
    #[test]
    fn browser_agent_whose_media_dies_is_handled_like_a_closed_tab() {
        let mut net = Net::new();
        let (_, leg) = browser_call_answered(&mut net, true);
        let at = net.now;
        net.input(Input::Media(MediaEvent::Inactive { leg, at }));
        assert_eq!(
            net.requests_to(AGENT1, "BYE").len(),
            1,
            "BYE to the browser"
        );
        assert_eq!(net.state("1001"), connection_lost());
        assert!(net.requests_to(CALLER, "BYE").is_empty());
        assert!(!net.has(|r| matches!(r, Record::CallEnded { .. })));
        assert_eq!(
            net.records
                .iter()
                .filter(|r| matches!(r, Record::CallQueued { .. }))
                .count(),
            2
        );
        // Still registered: the agent says ready again when the browser is back.
        net.input(Input::Command(Command::Agent {
            agent: "1001".into(),
            change: AgentChange::Ready,
        }));
    }

    // ---- dispositions (issue 10) -----------------------------------------------------

    /// Agent 1001 dials `code` (407, then authenticated); returns the confirmation prompt.
    fn dial_feature(net: &mut Net, code: &str, cseq: u32) -> Option<String> {
        let b = net.to(AGENT1).len();
        let first = format!("z9hG4bKd{cseq}");
        net.send(
            AGENT1,
            &feature_invite("1001", AGENT1, code, &first, cseq, None),
        );
        let chal = net.to(AGENT1)[b..]
            .iter()
            .find(|m| status_of(m) == Some(407))
            .cloned()
            .expect("407");
        let uri = format!("sip:{code}@127.0.0.1:5060");
        let auth = authorization(
            &chal,
            "Proxy-Authenticate",
            "1001",
            "demo1001",
            "INVITE",
            &uri,
        );
        let plays = net.media.len();
        let second = format!("z9hG4bKe{cseq}");
        net.send(
            AGENT1,
            &feature_invite("1001", AGENT1, code, &second, cseq + 1, Some(&auth)),
        );
        net.media[plays..].iter().find_map(|m| match m {
            MediaCommand::Play { prompts, .. } => Some(prompts[0].id.clone()),
            _ => None,
        })
    }

    fn dispositions(net: &Net) -> Vec<(String, String, Option<String>)> {
        net.records
            .iter()
            .filter_map(|r| match r {
                Record::DispositionSet {
                    call_id,
                    name,
                    note,
                    ..
                } => Some((call_id.clone(), name.clone(), note.clone())),
                _ => None,
            })
            .collect()
    }

    fn disposition_tasks(net: &Net) -> Vec<(String, Option<String>, String, u64)> {
        net.records
            .iter()
            .filter_map(|r| match r {
                Record::FollowUpOpened {
                    call_id,
                    agent,
                    reason,
                    at,
                    due_at,
                    ..
                } => Some((
                    call_id.clone(),
                    agent.clone(),
                    reason.clone(),
                    due_at.as_u64() - at.as_u64(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dispositions_by_feature_code_in_wrap_up_and_by_command() {
        let mut net = Net::new();
        net.register("1001", AGENT1, 3600);
        // Nothing handled yet: refused.
        net.input(Input::Command(Command::Disposition {
            agent: "1001".into(),
            call_id: None,
            code: "resolved".into(),
            note: None,
        }));
        let tag = net.call_and_pick('6');
        let call_id = net
            .records
            .iter()
            .find_map(|r| match r {
                Record::CallStarted {
                    call_id,
                    sip_call_id,
                    ..
                } if sip_call_id == "c1" => Some(call_id.clone()),
                _ => None,
            })
            .expect("the call");
        let inv = agent_invites(&net, AGENT1);
        net.answer(AGENT1, &inv[0], 200, "OK");
        net.advance(10_000);
        net.send(
            CALLER,
            &in_dialog("BYE", "c1", "z9hG4bKbye1", &tag, 2, "", ""),
        );
        assert!(matches!(net.state("1001"), AgentState::WrapUp { .. }));

        // *42 in wrap-up: follow-up needed, and a task for the agent due in 24 h.
        assert_eq!(
            dial_feature(&mut net, "*42", 20).as_deref(),
            Some("feature_disposition_saved")
        );
        assert!(net.has(|r| matches!(r, Record::DispositionSet { agent, code: 2, name, resolved: false, queue: Some(q), note: None, .. } if agent == "1001" && name == "follow_up" && q == "tech")));
        assert_eq!(
            dispositions(&net),
            vec![(call_id.clone(), "follow_up".to_string(), None)]
        );
        assert_eq!(
            disposition_tasks(&net),
            vec![(
                call_id.clone(),
                Some("1001".to_string()),
                "disposition:follow_up".to_string(),
                86_400_000
            )]
        );
        // The feature call does not end wrap-up.
        assert!(matches!(net.state("1001"), AgentState::WrapUp { .. }));

        // An unknown number is refused; nothing recorded.
        assert_eq!(
            dial_feature(&mut net, "*499", 30).as_deref(),
            Some("feature_refused")
        );
        // A malformed one is not a code at all.
        let b = net.to(AGENT1).len();
        net.send(
            AGENT1,
            &feature_invite("1001", AGENT1, "*4x", "z9hG4bKmal", 40, None),
        );
        assert_eq!(status_of(&net.to(AGENT1)[b]), Some(404));

        // *41 replaces it (last wins): resolved, no task.
        assert_eq!(
            dial_feature(&mut net, "*41", 50).as_deref(),
            Some("feature_disposition_saved")
        );
        assert_eq!(dispositions(&net).len(), 2);
        assert_eq!(disposition_tasks(&net).len(), 1);

        // After wrap-up, the command still reaches the last call, with a note.
        net.advance(31_000);
        assert_eq!(net.state("1001"), AgentState::Ready);
        let cmd = |call: Option<&str>, code: &str, note: Option<&str>| {
            Input::Command(Command::Disposition {
                agent: "1001".into(),
                call_id: call.map(str::to_string),
                code: code.into(),
                note: note.map(str::to_string),
            })
        };
        net.input(cmd(
            Some(&call_id),
            "callback_requested",
            Some("  wants a call back after 6 pm \u{7}"),
        ));
        assert_eq!(
            dispositions(&net).last().cloned(),
            Some((
                call_id.clone(),
                "callback_requested".to_string(),
                Some("wants a call back after 6 pm".to_string())
            ))
        );
        assert_eq!(disposition_tasks(&net).len(), 2);
        // By number, too; refusals change nothing.
        net.input(cmd(None, "6", None));
        assert_eq!(dispositions(&net).last().unwrap().1, "info_only");
        net.input(cmd(Some("other-call"), "resolved", None));
        net.input(cmd(None, "no_such_code", None));
        net.input(Input::Command(Command::Disposition {
            agent: "4242".into(),
            call_id: None,
            code: "resolved".into(),
            note: None,
        }));
        assert_eq!(dispositions(&net).len(), 4);
        assert_eq!(net.engine.stats().dispositions_set, 4);
        assert_eq!(net.engine.stats().dispositions_refused, 5);
        assert!(net.engine.check_agent_invariants().is_ok());
    }

    /// On the call, from the agent page: a complaints-queue call uses that queue's own codes.
    #[test]
    fn dispositions_on_the_call_use_the_queue_s_own_codes() {
        let mut net = Net::new();
        net.register("1002", AGENT2, 3600);
        net.call_and_pick('8');
        assert!(net.has(|r| matches!(r, Record::CallQueued { queue, .. } if queue == "complaints")));
        let inv = agent_invites(&net, AGENT2);
        net.answer(AGENT2, &inv[0], 200, "OK");
        assert!(matches!(net.state("1002"), AgentState::OnCall { .. }));
        let set = |net: &mut Net, code: &str| {
            net.input(Input::Command(Command::Disposition {
                agent: "1002".into(),
                call_id: None,
                code: code.into(),
                note: None,
            }));
        };
        // Number 3 is `compensation_offered` here (resolved); `complaint` is not a code here.
        set(&mut net, "3");
        assert!(net.has(|r| matches!(r, Record::DispositionSet { name, resolved: true, queue: Some(q), .. } if name == "compensation_offered" && q == "complaints")));
        set(&mut net, "complaint");
        assert_eq!(net.engine.stats().dispositions_refused, 1);
        // `escalated` is a complaint here: a task for Bob.
        set(&mut net, "escalated");
        assert!(net.has(|r| matches!(r, Record::FollowUpOpened { reason, agent: Some(a), queue: Some(q), .. } if reason == "disposition:escalated" && a == "1002" && q == "complaints")));
        assert_eq!(disposition_tasks(&net).len(), 1);
    }

    /// Monitoring requests: tests/sim/monitor_request.rs.
    mod monitor_requests {
        include!("sim/monitor_request.rs");
    }
}

/// Per-source limits: one address flooding INVITEs must not shut out everyone else.
mod source_limits {
    use super::*;
    use ccswitch::engine::limits::LimitsConfig;

    const FLOODER: &str = "10.0.0.66:5070";
    const GOOD: &str = "10.0.0.7:5070";
    const RING_MS: u64 = 6000;

    fn from(addr: &str, call_id: &str, branch: &str, tag: &str) -> String {
        invite(call_id, branch, SDP_OFFER)
            .replace("127.0.0.1:5070", addr)
            .replace("tag=caller1", &format!("tag={tag}"))
    }

    /// The engine with one caller address per peer; remembers what each address was sent.
    struct Net {
        engine: Engine,
        now: Millis,
        /// (time, first line, whole message) per destination; flood replies keep only the
        /// first line and the Retry-After header to stay small.
        sent: Vec<(Millis, SocketAddr, String)>,
    }

    impl Net {
        fn new(limits: LimitsConfig, max_calls: usize) -> Net {
            let mut cfg = config(1, max_calls);
            cfg.limits = limits;
            Net {
                engine: Engine::new(cfg),
                now: START,
                sent: vec![],
            }
        }

        fn input(&mut self, input: Input) {
            self.engine.handle_input(self.now, input);
            while let Some(o) = self.engine.poll_output() {
                if let Output::Transmit { peer, bytes } = o {
                    let text = String::from_utf8_lossy(&bytes);
                    let kept: String = if peer.addr.to_string() == FLOODER {
                        let first = text.lines().next().unwrap_or("");
                        match header(&text, "Retry-After") {
                            Some(r) => format!("{first}\r\nRetry-After: {r}\r\n"),
                            None => first.to_string(),
                        }
                    } else {
                        text.to_string()
                    };
                    self.sent.push((self.now, peer.addr, kept));
                }
            }
        }

        /// Runs every timer up to `t`, then sets the clock to `t`.
        fn advance_to(&mut self, t: Millis) {
            while let Some(due) = self.engine.poll_timeout() {
                if due > t {
                    break;
                }
                self.now = due.max(self.now);
                self.input(Input::Timeout);
            }
            self.now = t.max(self.now);
        }

        fn send(&mut self, addr: &str, text: &str) {
            let peer = Peer {
                transport: Transport::Udp,
                addr: addr.parse().unwrap(),
            };
            self.input(Input::Sip {
                peer,
                bytes: Bytes::from(text.to_string()),
            });
        }

        fn to(&self, addr: &str) -> impl Iterator<Item = &(Millis, SocketAddr, String)> {
            let addr: SocketAddr = addr.parse().unwrap();
            self.sent.iter().filter(move |(_, a, _)| *a == addr)
        }
    }

    struct FloodOutcome {
        net: Net,
        /// Per good call: when its INVITE went and when its first 200 came (if it did).
        good: Vec<(Millis, Option<Millis>, Vec<u16>)>,
    }

    /// 1,500 INVITEs/s for 10 s from FLOODER (never ACKed), and one call every 500 ms from
    /// GOOD, on virtual time; then 30 s more for the last good call to be answered.
    fn flood(limits: LimitsConfig, max_calls: usize) -> FloodOutcome {
        let mut net = Net::new(limits, max_calls);
        let mut good_invites = Vec::new();
        let mut next_good = 0u64;
        for i in 0..15_000u64 {
            let at_us = i * 1_000_000 / 1500;
            while next_good * 500_000 <= at_us && next_good < 20 {
                net.advance_to(START.plus(next_good * 500));
                let id = format!("good{next_good}");
                net.send(GOOD, &from(GOOD, &id, &format!("z9hG4bKg{next_good}"), &id));
                good_invites.push((id, net.now));
                next_good += 1;
            }
            net.advance_to(START.plus(at_us / 1000));
            let id = format!("flood{i}");
            net.send(FLOODER, &from(FLOODER, &id, &format!("z9hG4bKf{i}"), &id));
        }
        net.advance_to(START.plus(40_000));
        let good = good_invites
            .iter()
            .map(|(id, at)| {
                let replies: Vec<&(Millis, SocketAddr, String)> = net
                    .to(GOOD)
                    .filter(|(_, _, m)| m.contains(&format!("Call-ID: {id}\r")))
                    .collect();
                let answered = replies
                    .iter()
                    .find(|(_, _, m)| status_of(m) == Some(200))
                    .map(|(t, _, _)| *t);
                let statuses = replies
                    .iter()
                    .filter_map(|(_, _, m)| status_of(m))
                    .collect();
                (*at, answered, statuses)
            })
            .collect();
        FloodOutcome { net, good }
    }

    fn shipped_limits() -> LimitsConfig {
        ccswitch::config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
            .expect("shipped config loads")
            .limits
            .to_limits_config()
    }

    #[test]
    fn a_flooding_source_does_not_shut_out_other_callers() {
        let FloodOutcome { net, good } = flood(shipped_limits(), 5000);
        assert_eq!(good.len(), 20);
        for (i, (at, answered, statuses)) in good.iter().enumerate() {
            let answered =
                answered.unwrap_or_else(|| panic!("good call {i} answered: {statuses:?}"));
            assert!(
                answered.since(*at) <= 3 * RING_MS,
                "good call {i} answered within three rings"
            );
            assert!(!statuses.contains(&503), "good call {i}: {statuses:?}");
        }
        let stats = net.engine.stats().clone();
        // The flooder got its burst, then 503 with Retry-After, then silence (banned).
        let flood_replies: Vec<&String> = net.to(FLOODER).map(|(_, _, m)| m).collect();
        let refused: Vec<&&String> = flood_replies
            .iter()
            .filter(|m| status_of(m) == Some(503))
            .collect();
        assert!(!refused.is_empty(), "some flood INVITEs got 503");
        assert!(refused.iter().all(|m| header(m, "Retry-After").is_some()));
        assert!(stats.source_rate_limited > 0, "{stats:?}");
        assert!(
            stats.source_ignored > 10_000,
            "most of the flood was ignored: {stats:?}"
        );
        let flood_calls = net
            .to(FLOODER)
            .filter(|(_, _, m)| status_of(m) == Some(100))
            .count();
        assert!(
            flood_calls <= 50,
            "at most max_calls_per_source: {flood_calls}"
        );
        // 40 s in, the 60 s ban still holds; after it the gauge is back to zero.
        assert_eq!(stats.sources_banned, 1, "{stats:?}");
        let mut net = net;
        net.advance_to(START.plus(200_000));
        assert_eq!(net.engine.stats().sources_banned, 0);
    }

    /// Without the limits the same flood fills `max_calls` and the good caller gets 503: the
    /// scenario above is a real denial of service, not a gentle one.
    #[test]
    fn without_limits_the_same_flood_shuts_out_everyone() {
        // 1000 call slots instead of 5000: the same point, a fifth of the work.
        let FloodOutcome { good, .. } = flood(LimitsConfig::off(), 1000);
        let refused = good.iter().filter(|(_, _, s)| s.contains(&503)).count();
        assert!(refused >= 10, "{refused} of 20 good calls refused");
    }

    #[test]
    fn retransmissions_and_in_dialog_requests_cost_no_tokens() {
        let mut net = Net::new(shipped_limits(), 100);
        let src = "10.0.0.8:5070";
        let first = from(src, "c1", "z9hG4bKc1", "t1");
        // One INVITE and 40 retransmissions of it (twice the shipped burst).
        for _ in 0..41 {
            net.send(src, &first);
        }
        assert_eq!(net.engine.stats().source_rate_limited, 0);
        assert_eq!(net.engine.active_calls(), 1);
        net.advance_to(START.plus(RING_MS));
        let tag = net
            .to(src)
            .find(|(_, _, m)| status_of(m) == Some(200))
            .and_then(|(_, _, m)| header(m, "To"))
            .and_then(|t| t.split(";tag=").nth(1))
            .expect("answered")
            .to_string();
        let ack = in_dialog("ACK", "c1", "z9hG4bKa1", &tag, 1, "", "")
            .replace("127.0.0.1:5070", src)
            .replace("tag=caller1", "tag=t1");
        net.send(src, &ack);
        // Use up the burst with new calls: the excess gets 503.
        for i in 0..25 {
            let id = format!("n{i}");
            net.send(src, &from(src, &id, &format!("z9hG4bKn{i}"), &id));
        }
        assert!(net.engine.stats().source_rate_limited > 0);
        // A re-INVITE and the BYE of the first call still go through.
        let hold = in_dialog(
            "REINVITE",
            "c1",
            "z9hG4bKr1",
            &tag,
            2,
            "Content-Type: application/sdp\r\n",
            &SDP_OFFER.replace("sendrecv", "sendonly"),
        )
        .replace("127.0.0.1:5070", src)
        .replace("tag=caller1", "tag=t1");
        net.send(src, &hold);
        let limited = net.engine.stats().source_rate_limited;
        let bye = in_dialog("BYE", "c1", "z9hG4bKb1", &tag, 3, "", "")
            .replace("127.0.0.1:5070", src)
            .replace("tag=caller1", "tag=t1");
        net.send(src, &bye);
        assert_eq!(net.engine.stats().source_rate_limited, limited);
        let replies: Vec<(u16, bool)> = net
            .to(src)
            .filter(|(_, _, m)| m.contains("Call-ID: c1\r"))
            .filter_map(|(_, _, m)| Some((status_of(m)?, m.contains("CSeq: 3 BYE"))))
            .collect();
        assert!(
            replies.contains(&(200, true)),
            "BYE answered 200: {replies:?}"
        );
        assert!(
            net.to(src)
                .any(|(_, _, m)| status_of(m) == Some(200) && m.contains("CSeq: 2 INVITE")),
            "re-INVITE answered"
        );
    }

    #[test]
    fn registers_are_limited_per_source_too() {
        let mut net = Net::new(shipped_limits(), 100);
        let src = "10.0.0.9:5070";
        for i in 0..150 {
            let reg = format!(
                "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bKr{i}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=r{i}\r\nTo: <sip:1001@127.0.0.1>\r\n\
                 Call-ID: reg{i}\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@{src}>\r\nContent-Length: 0\r\n\r\n"
            );
            net.send(src, &reg);
        }
        let statuses: Vec<u16> = net.to(src).filter_map(|(_, _, m)| status_of(m)).collect();
        let challenged = statuses.iter().filter(|s| **s == 401).count();
        let refused = statuses.iter().filter(|s| **s == 503).count();
        assert_eq!(challenged, 100, "the burst is challenged: {statuses:?}");
        assert!(refused > 0, "then 503");
        assert_eq!(net.engine.stats().source_rate_limited as usize, refused);
    }
}
