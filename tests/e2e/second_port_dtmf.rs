//! RFC 4733 digits from a second socket (issue 7, item 2). Some phones and load tools send
//! audio from one UDP port and telephone-events from another port of the same host. The
//! raw caller here does exactly that on 127.0.0.1: silence from the socket its SDP names,
//! digits from a second socket. With the shipped `[rtp] accept_events_from_same_host = true`
//! the IVR takes the digits (language 1, then main menu 1 = opening hours); with `false`
//! the strict latch drops them and the caller never leaves the menus by DTMF.

use super::*;

/// Audio (20 ms mu-law silence) from `call.rtp`, RFC 4733 `digits` (seconds after start)
/// from `events`, for `secs`. Re-ACKs a retransmitted 200; answers a BYE. Returns the
/// number of RTP packets heard from the switch and whether it hung up.
fn media_from_two_ports(
    call: &mut RawCall,
    events: &UdpSocket,
    secs: f64,
    digits: &[(f64, char)],
) -> (usize, bool) {
    let _ = call.rtp.set_read_timeout(Some(Duration::from_millis(2)));
    let _ = call.sip.set_nonblocking(true);
    let te = call.answer.telephone_event.unwrap_or(101);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut pkt = Vec::with_capacity(200);
    let mut buf = vec![0u8; 2048];
    let (mut audio_seq, mut event_seq) = (2000u16, 7000u16);
    let mut tick: u64 = 0;
    // (first tick, event code): 5 progress packets then 3 end packets, one per tick.
    let mut pending: Vec<(u64, char)> = digits
        .iter()
        .map(|(s, d)| ((s * 50.0) as u64, *d))
        .collect();
    let mut event: Option<(u64, u8)> = None;
    let mut heard = 0;
    let mut got_bye = false;
    while Instant::now() < end && !got_bye {
        if Instant::now() >= start + Duration::from_millis(20 * tick) {
            let ts = (tick as u32).wrapping_mul(160);
            sipwire::rtp_packet(
                &mut pkt,
                tick == 0,
                0,
                audio_seq,
                ts,
                0xa0d1_0001,
                &sipwire::ULAW_SILENCE,
            );
            let _ = call.rtp.send_to(&pkt, call.answer.rtp);
            audio_seq = audio_seq.wrapping_add(1);
            if event.is_none() {
                if let Some(pos) = pending.iter().position(|(t, _)| *t <= tick) {
                    let (_, d) = pending.remove(pos);
                    event = sipwire::digit_event(d).map(|e| (tick, e));
                }
            }
            if let Some((t0, e)) = event {
                let i = tick - t0;
                let dur = ((i.min(5) + 1) * 160) as u16;
                let payload = sipwire::rfc4733_payload(e, i >= 5, dur);
                // The event stream's own SSRC, sequence and timestamp (an independent sender).
                sipwire::rtp_packet(
                    &mut pkt,
                    i == 0,
                    te,
                    event_seq,
                    (t0 as u32).wrapping_mul(160).wrapping_add(40_000),
                    0xe7e7_0002,
                    &payload,
                );
                let _ = events.send_to(&pkt, call.answer.rtp);
                event_seq = event_seq.wrapping_add(1);
                if i >= 7 {
                    event = None;
                }
            }
            tick += 1;
        }
        if let Ok((n, _)) = call.rtp.recv_from(&mut buf) {
            if sipwire::parse_rtp(&buf[..n]).is_some() {
                heard += 1;
            }
        }
        if let Ok((n, from)) = call.sip.recv_from(&mut buf) {
            if let Some(msg) = sipwire::parse(&buf[..n]) {
                if msg.status == Some(200) && msg.cseq().map(|c| c.1) == Some("INVITE".into()) {
                    let b = call.branch();
                    let ack = call.ids.ack_2xx(&call.target, &call.to_hdr, 1, &b);
                    let _ = call.sip.send_to(&ack, call.switch);
                } else if msg.method == "BYE" {
                    let _ = call.sip.send_to(&msg.response(200, "OK"), from);
                    got_bye = true;
                }
            }
        }
    }
    let _ = call.sip.set_nonblocking(false);
    (heard, got_bye)
}

fn step_digits(call: &Value, node: &str) -> Vec<String> {
    call["ivr_path"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter(|s| s["node"] == node)
                .filter_map(|s| s["digits"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn entered(call: &Value, node: &str) -> bool {
    call["ivr_path"]
        .as_array()
        .is_some_and(|p| p.iter().any(|s| s["node"] == node))
}

/// One call pressing 1 (English) and 1 (opening hours) from a second port; returns the
/// switch's record of it.
fn call_pressing_from_a_second_port(cfg: &TestConfig, slot: u16, accept: bool) -> Value {
    let mut sw = Switch::start(cfg, slot);
    let mut call = RawCall::dial(sw.sip, "100");
    let events = UdpSocket::bind("127.0.0.1:0").expect("bind the event socket");
    assert_ne!(
        events.local_addr().expect("addr"),
        call.rtp.local_addr().expect("addr")
    );
    let t = timeline();
    let secs = if accept {
        // Until the opening-hours answer has been heard.
        t.main + prompt_secs("hours", 7.4) + 2.0
    } else {
        t.main + 2.0
    };
    let (heard, got_bye) = media_from_two_ports(
        &mut call,
        &events,
        secs,
        &[(t.language, '1'), (t.main, '1')],
    );
    assert!(!got_bye, "switch hung up during the IVR");
    assert!(heard > 50, "only {heard} RTP packets from the switch");
    // While the call is up, /metrics shows its one leg on one of the media workers.
    let (_, body) = sw.http_get("/metrics");
    assert!(
        body.contains("ccswitch_rtp_worker_legs{worker=\"0\"}")
            && body.contains("ccswitch_rtp_worker_legs{worker=\"1\"}"),
        "per-worker legs gauge missing:\n{body}"
    );
    assert_eq!(
        metric_value(&body, "ccswitch_rtp_worker_legs"),
        Some(1.0),
        "one leg in the media plane"
    );
    assert_eq!(call.hang_up(), Some(200), "BYE should get 200");
    assert!(sw.terminate(Duration::from_secs(30)).success());
    let calls = cfg.calls();
    let c = find_call(&calls, "udp").clone();
    eprintln!("report: {c:#}");
    c
}

#[test]
fn raw_caller_digits_from_a_second_port_reach_the_ivr() {
    let cfg = TestConfig::new(0);
    let c = call_pressing_from_a_second_port(&cfg, 20, true);
    assert_eq!(step_digits(&c, "language"), vec!["1"], "{}", c["ivr_path"]);
    assert_eq!(step_digits(&c, "main_menu"), vec!["1"], "{}", c["ivr_path"]);
    assert!(
        entered(&c, "hours"),
        "opening hours not reached: {}",
        c["ivr_path"]
    );
    assert_eq!(c["ivr_outcome"], "self_served");
    assert_eq!(c["ended_by"], "caller");
}

#[test]
fn raw_caller_digits_from_a_second_port_dropped_when_strict() {
    let cfg = TestConfig::new(0);
    let main = cfg.main_file();
    let text = std::fs::read_to_string(&main).expect("read ccswitch.toml");
    assert!(text.contains("accept_events_from_same_host = true"));
    let text = text.replace(
        "accept_events_from_same_host = true",
        "accept_events_from_same_host = false",
    );
    std::fs::write(&main, text).expect("write ccswitch.toml");
    let c = call_pressing_from_a_second_port(&cfg, 21, false);
    let pressed: Vec<&Value> = c["ivr_path"]
        .as_array()
        .map(|p| p.iter().filter(|s| s["digits"].is_string()).collect())
        .unwrap_or_default();
    assert!(pressed.is_empty(), "digits got through: {}", c["ivr_path"]);
    assert!(!entered(&c, "hours"), "{}", c["ivr_path"]);
    assert_ne!(c["ivr_outcome"], "self_served");
    assert_eq!(c["ended_by"], "caller");
}
