// Monitoring requests (the wallboard's Listen / Whisper / Barge buttons, issue 10 item 5):
// `Input::MonitorRequest` rings the supervisor's registered phone; answered, the phone joins
// the call's mix as the feature codes do; unanswered, CANCEL after the ring timeout; the
// call ending while it rings, CANCEL; refusals come back at once.

use super::*;
use ccswitch::engine::agents::AgentConfig;
use ccswitch::engine::media::MonitorMode;
use ccswitch::engine::{MonitorRefusal, MonitorRequest, MONITOR_RING_MS};

/// The supervisor's phone (extension 9001, user `sue`, password demo9001).
const SUP: &str = "127.0.0.1:5091";

/// A network whose directory has supervisor `sue` with SIP extension 9001; agent 1001 and
/// the supervisor registered.
fn net_with_supervisor() -> Net {
    let mut net = supervisor_net();
    net.register("9001", SUP, 3600);
    net
}

/// The same with the supervisor's phone not registered.
fn supervisor_net() -> Net {
    let mut cfg = config(1, 100);
    let realm = cfg.agents.registrar.realm.clone();
    let sue = AgentConfig {
        extension: "9001".into(),
        name: "sue".into(),
        skills: Default::default(),
        languages: vec![],
        queues: vec![],
        ha1_md5: Some(digest::ha1(Algorithm::Md5, "9001", &realm, "demo9001")),
        ha1_sha256: None,
        realm,
        display_id: None,
    };
    cfg.agents = std::sync::Arc::new((*cfg.agents).clone().with_supervisors(vec![sue]));
    let mut net = Net::new();
    net.engine = Engine::new(cfg);
    net.register("1001", AGENT1, 3600);
    net
}

/// A caller reaches the tech queue and agent 1001 answers. Returns (call id, To tag).
fn bridged_call(net: &mut Net) -> (String, String) {
    let tag = net.call_and_pick('6');
    let inv = agent_invites(net, AGENT1);
    assert_eq!(inv.len(), 1, "{:?}", net.to(AGENT1));
    net.answer(AGENT1, &inv[0], 200, "OK");
    assert!(net.has(|r| matches!(r, Record::AgentAnswered { agent, .. } if agent == "1001")));
    let call_id = net
        .records
        .iter()
        .find_map(|r| match r {
            Record::CallStarted { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .expect("CallStarted");
    (call_id, tag)
}

fn ask(net: &mut Net, id: &str, call_id: &str, supervisor: &str, mode: MonitorMode) {
    net.input(Input::MonitorRequest(MonitorRequest {
        id: id.into(),
        call_id: call_id.into(),
        supervisor: supervisor.into(),
        mode,
    }));
}

fn answer_of(net: &Net, id: &str) -> Result<(), MonitorRefusal> {
    let found: Vec<_> = net
        .monitor_answers
        .iter()
        .filter(|(i, _)| i == id)
        .map(|(_, r)| *r)
        .collect();
    assert_eq!(found.len(), 1, "one answer to {id}: {:?}", net.monitor_answers);
    found[0]
}

fn monitor_records(net: &Net) -> Vec<&Record> {
    net.records
        .iter()
        .filter(|r| {
            matches!(
                r,
                Record::MonitorStarted { .. } | Record::MonitorEnded { .. }
            )
        })
        .collect()
}

/// The supervisor's phone answers our CANCEL with 200 (ending its retransmissions).
fn ok_cancel(net: &mut Net) {
    let cancel = net.requests_to(SUP, "CANCEL").pop().expect("a CANCEL");
    let mut m = String::from("SIP/2.0 200 OK\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        m.push_str(&format!("{name}: {}\n", header(&cancel, name).unwrap()));
    }
    m.push_str("Content-Length: 0\n\n");
    net.send(SUP, &m);
}

fn caller_bye(net: &mut Net, tag: &str) {
    net.send(
        CALLER,
        &in_dialog("BYE", "c1", "z9hG4bKbye1", tag, 2, "", ""),
    );
}

#[test]
fn answered_request_joins_the_mix_switches_mode_and_ends_with_the_call() {
    let mut net = net_with_supervisor();
    let (call_id, tag) = bridged_call(&mut net);
    ask(&mut net, "r1", &call_id, "9001", MonitorMode::Listen);
    assert_eq!(answer_of(&net, "r1"), Ok(()));

    // The supervisor's phone rings with what it is.
    let inv = net.requests_to(SUP, "INVITE");
    assert_eq!(inv.len(), 1, "{:?}", net.to(SUP));
    assert!(inv[0].starts_with("INVITE sip:9001@127.0.0.1:5091 SIP/2.0"));
    let from = header(&inv[0], "From").unwrap();
    assert!(from.starts_with("\"Listen 1001\""), "{from}");
    assert_eq!(header(&inv[0], "X-Monitor-Mode"), Some("listen"));
    assert_eq!(header(&inv[0], "X-Call-Id"), Some(call_id.as_str()));
    assert!(header(&inv[0], "Content-Type").is_some_and(|c| c == "application/sdp"));
    // Nothing recorded while it rings.
    assert!(monitor_records(&net).is_empty());

    net.answer(SUP, &inv[0], 180, "Ringing");
    net.advance(4_000);
    net.answer(SUP, &inv[0], 200, "OK");
    assert_eq!(net.requests_to(SUP, "ACK").len(), 1);
    let caller_leg = net.caller_leg();
    let sup_leg = net
        .media
        .iter()
        .find_map(|m| match m {
            MediaCommand::Monitor {
                caller,
                supervisor,
                mode: MonitorMode::Listen,
                ..
            } if *caller == caller_leg => Some(*supervisor),
            _ => None,
        })
        .expect("the supervisor's leg joins the mix in listen mode");
    assert!(net.has(|r| matches!(r, Record::MonitorStarted { call_id: c, supervisor, agent, mode, .. }
        if *c == call_id && supervisor == "sue" && agent == "1001" && mode == "listen")));
    assert_eq!(net.engine.monitoring_sessions(), 1);

    // Digit 3 on the supervisor's leg: barge, a new segment.
    let at = net.now;
    net.input(Input::Media(MediaEvent::Digit {
        leg: sup_leg,
        digit: '3',
        at,
    }));
    assert!(net.media.iter().any(|m| matches!(m,
        MediaCommand::Monitor { supervisor, mode: MonitorMode::Barge, .. } if *supervisor == sup_leg)));
    // Another request for the same call is refused while it is monitored.
    ask(&mut net, "r2", &call_id, "9001", MonitorMode::Whisper);
    assert_eq!(answer_of(&net, "r2"), Err(MonitorRefusal::AlreadyMonitored));

    // The caller hangs up: the supervisor's phone gets a BYE, the segment ends.
    net.advance(5_000);
    caller_bye(&mut net, &tag);
    assert_eq!(net.requests_to(SUP, "BYE").len(), 1, "{:?}", net.to(SUP));
    let modes: Vec<String> = monitor_records(&net)
        .iter()
        .map(|r| match r {
            Record::MonitorStarted { mode, .. } => format!("start {mode}"),
            Record::MonitorEnded { reason, .. } => format!("end {reason}"),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        modes,
        [
            "start listen",
            "end mode_changed",
            "start barge",
            "end call_ended"
        ]
    );
    assert_eq!(net.engine.monitoring_sessions(), 0);
    net.engine.check_agent_invariants().unwrap();
}

#[test]
fn supervisor_hanging_up_leaves_the_call_as_it_was() {
    let mut net = net_with_supervisor();
    let (call_id, _tag) = bridged_call(&mut net);
    ask(&mut net, "r1", &call_id, "9001", MonitorMode::Whisper);
    let inv = net.requests_to(SUP, "INVITE").remove(0);
    assert!(header(&inv, "From").unwrap().starts_with("\"Whisper 1001\""));
    net.answer(SUP, &inv, 200, "OK");
    assert!(net.has(|r| matches!(r, Record::MonitorStarted { mode, .. } if mode == "whisper")));
    let legs_before = net.engine.agent_legs();

    // The supervisor's BYE, in the dialog we opened.
    let to = header(&inv, "From").unwrap();
    let from = format!("{};tag=agent{}", header(&inv, "To").unwrap(), SUP.len());
    let bye = format!(
        "BYE sip:ccswitch@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {SUP};branch=z9hG4bKsupbye
Max-Forwards: 70
From: {from}
To: {to}
Call-ID: {}
CSeq: 1 BYE
Content-Length: 0

",
        header(&inv, "Call-ID").unwrap()
    );
    net.send(SUP, &bye);
    assert_eq!(net.last_status_to(SUP), Some(200));
    assert!(net.has(|r| matches!(r, Record::MonitorEnded { reason, .. } if reason == "supervisor_hung_up")));
    assert!(net
        .media
        .iter()
        .any(|m| matches!(m, MediaCommand::Unmonitor { .. })));
    // The call goes on: not ended, the agent still on it, no BYE to anyone.
    assert!(!net.has(|r| matches!(r, Record::CallEnded { .. })));
    assert!(net.requests_to(AGENT1, "BYE").is_empty());
    assert!(net.requests_to(CALLER, "BYE").is_empty());
    assert_eq!(net.engine.agent_legs(), legs_before - 1);
    assert!(matches!(net.state("1001"), AgentState::OnCall { .. }));
    // And can be monitored again.
    ask(&mut net, "r2", &call_id, "9001", MonitorMode::Barge);
    assert_eq!(answer_of(&net, "r2"), Ok(()));
}

#[test]
fn unanswered_request_is_cancelled_after_the_ring_timeout_and_records_nothing() {
    let mut net = net_with_supervisor();
    let (call_id, _tag) = bridged_call(&mut net);
    ask(&mut net, "r1", &call_id, "9001", MonitorMode::Barge);
    assert_eq!(answer_of(&net, "r1"), Ok(()));
    let inv = net.requests_to(SUP, "INVITE").remove(0);
    net.answer(SUP, &inv, 180, "Ringing");
    net.advance(MONITOR_RING_MS - 1_000);
    assert!(net.requests_to(SUP, "CANCEL").is_empty());
    net.advance(1_100);
    let cancels = net.requests_to(SUP, "CANCEL");
    assert_eq!(cancels.len(), 1, "{:?}", net.to(SUP));
    assert_eq!(header(&cancels[0], "Call-ID"), header(&inv, "Call-ID"));
    ok_cancel(&mut net);
    net.answer(SUP, &inv, 487, "Request Terminated");
    assert!(monitor_records(&net).is_empty());
    assert_eq!(net.engine.monitoring_sessions(), 0);
    assert_eq!(net.engine.agent_legs(), 1, "only the agent's leg is left");
    // The call was never touched, and the supervisor may ask again.
    assert!(!net.has(|r| matches!(r, Record::CallEnded { .. })));
    ask(&mut net, "r2", &call_id, "9001", MonitorMode::Listen);
    assert_eq!(answer_of(&net, "r2"), Ok(()));
}

#[test]
fn call_ending_while_the_supervisor_rings_cancels_it() {
    let mut net = net_with_supervisor();
    let (call_id, tag) = bridged_call(&mut net);
    ask(&mut net, "r1", &call_id, "9001", MonitorMode::Listen);
    let inv = net.requests_to(SUP, "INVITE").remove(0);
    net.answer(SUP, &inv, 180, "Ringing");
    caller_bye(&mut net, &tag);
    assert_eq!(net.requests_to(SUP, "CANCEL").len(), 1, "{:?}", net.to(SUP));
    ok_cancel(&mut net);
    net.answer(SUP, &inv, 487, "Request Terminated");
    assert!(monitor_records(&net).is_empty());
    assert_eq!(net.engine.monitoring_sessions(), 0);
    // The ring timer is gone with the leg: nothing more goes to the phone.
    let sent = net.to(SUP).len();
    net.advance(MONITOR_RING_MS * 2);
    assert_eq!(net.to(SUP).len(), sent, "{:?}", net.to(SUP));
}

#[test]
fn refusals_come_back_at_once_and_ring_nobody() {
    let mut net = net_with_supervisor();
    // An agent's extension is no supervisor's phone.
    ask(&mut net, "a", "whatever", "1001", MonitorMode::Listen);
    assert_eq!(answer_of(&net, "a"), Err(MonitorRefusal::NotSupervisor));
    ask(&mut net, "b", "no-such-call", "9001", MonitorMode::Listen);
    assert_eq!(answer_of(&net, "b"), Err(MonitorRefusal::UnknownCall));

    let (call_id, tag) = bridged_call(&mut net);
    ask(&mut net, "c", &call_id, "9001", MonitorMode::Listen);
    assert_eq!(answer_of(&net, "c"), Ok(()));
    // The same supervisor again, for the same call: already being rung for it.
    ask(&mut net, "d", &call_id, "9001", MonitorMode::Listen);
    assert_eq!(answer_of(&net, "d"), Err(MonitorRefusal::AlreadyMonitored));
    caller_bye(&mut net, &tag);
    ask(&mut net, "e", &call_id, "9001", MonitorMode::Listen);
    assert_eq!(answer_of(&net, "e"), Err(MonitorRefusal::UnknownCall));
    assert_eq!(net.requests_to(SUP, "INVITE").len(), 1);
}

#[test]
fn unregistered_supervisor_and_call_without_agent_are_refused() {
    // Offered to 1001, still ringing: no agent on the call yet.
    let mut net = net_with_supervisor();
    net.call_and_pick('6');
    let call_id = net
        .records
        .iter()
        .find_map(|r| match r {
            Record::CallStarted { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .unwrap();
    ask(&mut net, "q", &call_id, "9001", MonitorMode::Listen);
    assert_eq!(answer_of(&net, "q"), Err(MonitorRefusal::NotBridged));

    // A supervisor whose phone is not registered.
    let mut net = supervisor_net();
    let (call_id, _) = bridged_call(&mut net);
    ask(&mut net, "n", &call_id, "9001", MonitorMode::Listen);
    assert_eq!(answer_of(&net, "n"), Err(MonitorRefusal::NotRegistered));
    assert!(net.to(SUP).is_empty());
}

/// `ext` at `at` dials `code` (407, then authenticated with `demo<ext>`); the final status.
fn dial_code(net: &mut Net, ext: &str, at: &str, code: &str, cseq: u32) -> Option<u16> {
    let b = net.to(at).len();
    let first = format!("z9hG4bKm{cseq}");
    net.send(at, &feature_invite(ext, at, code, &first, cseq, None));
    let chal = net.to(at)[b..]
        .iter()
        .find(|m| status_of(m) == Some(407))
        .cloned()
        .expect("407");
    let uri = format!("sip:{code}@127.0.0.1:5060");
    let pw = format!("demo{ext}");
    let auth = authorization(&chal, "Proxy-Authenticate", ext, &pw, "INVITE", &uri);
    let second = format!("z9hG4bKn{cseq}");
    net.send(
        at,
        &feature_invite(ext, at, code, &second, cseq + 1, Some(&auth)),
    );
    net.last_status_to(at)
}

#[test]
fn refused_monitoring_codes_are_recorded_for_the_audit_log() {
    let mut net = net_with_supervisor();
    // An agent is no supervisor: 403.
    assert_eq!(dial_code(&mut net, "1001", AGENT1, "*311001", 10), Some(403));
    // The supervisor, for an agent not on a call: 480.
    assert_eq!(dial_code(&mut net, "9001", SUP, "*321001", 20), Some(480));
    let refused: Vec<(String, String, String, String)> = net
        .records
        .iter()
        .filter_map(|r| match r {
            Record::MonitorRefused {
                user,
                agent,
                mode,
                reason,
                ..
            } => Some((user.clone(), agent.clone(), mode.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    let row = |u: &str, m: &str, r: &str| (u.into(), "1001".into(), m.into(), r.into());
    assert_eq!(
        refused,
        vec![
            row("agent:1001", "listen", "forbidden"),
            row("sue", "whisper", "not_bridged"),
        ]
    );
}

/// A supervisor whose phone is a browser (registered over WebSocket, the wallboard's): the
/// request rings it with the WebRTC peer's offer, answered it joins the mix; a SIP INFO digit
/// switches the mode; the tab closing takes the leg out of the mix (Unmonitor) and ends the
/// session, and the call goes on.
#[test]
fn browser_supervisor_is_rung_with_a_webrtc_offer_and_leaves_when_the_tab_closes() {
    let mut net = supervisor_net();
    net.transport = Transport::Ws;
    net.register("9001", SUP, 3600);
    net.transport = Transport::Udp;
    let (call_id, _tag) = bridged_call(&mut net);
    ask(&mut net, "r1", &call_id, "9001", MonitorMode::Listen);
    assert_eq!(answer_of(&net, "r1"), Ok(()));
    let inv = net.requests_to(SUP, "INVITE").remove(0);
    assert!(inv.contains("UDP/TLS/RTP/SAVPF"), "the peer's offer: {inv}");
    assert_eq!(header(&inv, "X-Monitor-Mode"), Some("listen"));
    net.transport = Transport::Ws;
    net.answer(SUP, &inv, 200, "OK");
    let sup_leg = net
        .media
        .iter()
        .find_map(|m| match m {
            MediaCommand::Monitor { supervisor, .. } => Some(*supervisor),
            _ => None,
        })
        .expect("joined the mix");

    // "2" as SIP INFO, in the dialog: whisper.
    let to = header(&inv, "From").unwrap();
    let from = format!("{};tag=agent{}", header(&inv, "To").unwrap(), SUP.len());
    let body = "Signal=2\r\nDuration=160\r\n";
    let info = format!(
        "INFO sip:ccswitch@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/WS {SUP};branch=z9hG4bKsupinfo
Max-Forwards: 70
From: {from}
To: {to}
Call-ID: {}
CSeq: 2 INFO
Content-Type: application/dtmf-relay
Content-Length: {}

{body}",
        header(&inv, "Call-ID").unwrap(),
        body.len()
    );
    net.send(SUP, &info);
    assert_eq!(net.last_status_to(SUP), Some(200));
    assert!(net.media.iter().any(|m| matches!(m,
        MediaCommand::Monitor { supervisor, mode: MonitorMode::Whisper, .. } if *supervisor == sup_leg)));

    // The tab closes.
    net.input(Input::ConnectionClosed(Peer {
        transport: Transport::Ws,
        addr: SUP.parse().unwrap(),
    }));
    assert!(net.media.iter().any(
        |m| matches!(m, MediaCommand::Unmonitor { supervisor } if *supervisor == sup_leg)
    ));
    assert!(net.has(|r| matches!(r, Record::MonitorEnded { reason, .. } if reason == "supervisor_hung_up")));
    assert_eq!(net.engine.monitoring_sessions(), 0);
    assert!(!net.has(|r| matches!(r, Record::CallEnded { .. })));
    assert!(matches!(net.state("1001"), AgentState::OnCall { .. }));
    net.engine.check_agent_invariants().unwrap();
}
