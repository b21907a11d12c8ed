//! What a SIP-over-TCP connection may cost (`[sip.tcp]`): half-sent messages and idle
//! connections are closed after their timeouts, connections are capped per source and in
//! total, over-large messages get 513 (or a plain close), and a connection an agent
//! registered over stays open, answering RFC 5626 keep-alive pings with a pong.
//! Real sockets on 127.0.0.1 against the real binary, with short configured timeouts.
//! Every wait is bounded; elapsed times are printed, never asserted.

use super::*;
use std::io::ErrorKind;

/// A config whose `[sip.tcp]` lines `key = shipped value` are replaced by `key = value`.
fn tcp_config(edits: &[(&str, &str)]) -> TestConfig {
    let cfg = TestConfig::new(0);
    let path = cfg.main_file();
    let mut text = std::fs::read_to_string(&path).expect("read ccswitch.toml");
    for (key, value) in edits {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("ccswitch.toml has no `{key} = ` line"))
            .to_string();
        text = text.replacen(&line, &format!("{key} = {value}"), 1);
    }
    std::fs::write(&path, text).expect("write ccswitch.toml");
    cfg
}

/// One sample of a metric with one label, e.g. `closed_total{reason="too_large"}`.
fn labelled(sw: &Switch, name: &str, label: &str, value: &str) -> Option<f64> {
    let (_, body) = sw.http_get("/metrics");
    let prefix = format!("{name}{{{label}=\"{value}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn closed_by(sw: &Switch, reason: &str) -> f64 {
    labelled(
        sw,
        "ccswitch_sip_tcp_connections_closed_total",
        "reason",
        reason,
    )
    .unwrap_or_else(|| panic!("no closed_total sample for reason {reason}"))
}

fn open_connections(sw: &Switch) -> f64 {
    sw.metric("ccswitch_sip_tcp_connections")
        .expect("ccswitch_sip_tcp_connections in /metrics")
}

/// Polls `read` until it returns at least `want` (bounded); the last value.
fn wait_for(within: Duration, want: f64, read: impl Fn() -> f64) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = read();
        if v >= want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connect(sw: &Switch) -> TcpStream {
    let s = TcpStream::connect_timeout(&sw.sip, Duration::from_secs(5)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Reads until the switch closes the connection (EOF or reset) or `deadline` passes.
/// Ok(bytes received before the close) or Err(what was received by the deadline).
fn read_until_closed(s: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(got);
        }
        s.set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Ok(got),
        }
    }
}

/// True when the connection is still open after `wait` (nothing but `expect` arrives).
fn still_open(s: &mut TcpStream, wait: Duration) -> bool {
    read_until_closed(s, Instant::now() + wait).is_err()
}

/// Reads one complete SIP message (skipping keep-alive CRLFs) within `within`.
fn read_message(s: &mut TcpStream, pending: &mut Vec<u8>, within: Duration) -> sipwire::Msg {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 8192];
    loop {
        let skip = pending
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        pending.drain(..skip);
        if let Some(n) = sipwire::tcp_frame_len(pending) {
            let msg: Vec<u8> = pending.drain(..n).collect();
            return sipwire::parse(&msg).unwrap_or_else(|| {
                panic!("unparsable message: {}", String::from_utf8_lossy(&msg))
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no complete SIP message within {within:?}; have {:?}",
            String::from_utf8_lossy(pending)
        );
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "connection closed while waiting for a message; have {:?}",
                String::from_utf8_lossy(pending)
            ),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Reads messages like a busy phone (486 to INVITE, 200 to CANCEL/BYE/OPTIONS, ACKs
/// ignored) until one satisfies `want`; at most 20 messages.
fn busy_phone_until(
    s: &mut TcpStream,
    pending: &mut Vec<u8>,
    within: Duration,
    want: impl Fn(&sipwire::Msg) -> bool,
) -> sipwire::Msg {
    let deadline = Instant::now() + within;
    for _ in 0..20 {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = read_message(s, pending, left.max(Duration::from_millis(1)));
        if want(&m) {
            return m;
        }
        let answer = match m.method.as_str() {
            "INVITE" => Some(m.response(486, "Busy Here")),
            "CANCEL" | "BYE" | "OPTIONS" => Some(m.response(200, "OK")),
            _ => None,
        };
        if let Some(a) = answer {
            s.write_all(&a).expect("answer the switch");
        }
    }
    panic!("20 messages without the one expected");
}

fn options(local: SocketAddr, switch: SocketAddr, n: u32, body_len: Option<usize>) -> String {
    let mut m = format!(
        "OPTIONS sip:100@{switch} SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bKtcplim{n}x{pid}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=p{n}\r\n\
         To: <sip:100@{switch}>\r\n\
         Call-ID: tcplim-{n}-{pid}@127.0.0.1\r\n\
         CSeq: {n} OPTIONS\r\n",
        pid = std::process::id()
    );
    match body_len {
        Some(len) => m.push_str(&format!(
            "Content-Type: text/plain\r\nContent-Length: {len}\r\n\r\n"
        )),
        None => m.push_str("Content-Length: 0\r\n\r\n"),
    }
    m
}

/// (a) Fifty connections each send half a request and go quiet: every one is closed by the
/// switch after the message timeout (the peer sees EOF), the counter says why, and a
/// connection that sent a whole request is left alone.
#[test]
fn half_sent_requests_are_closed_after_the_message_timeout() {
    let cfg = tcp_config(&[("message_timeout_ms", "2000"), ("idle_timeout_s", "600")]);
    let sw = Switch::start(&cfg, 23);
    let mut control = connect(&sw);
    let local = control.local_addr().expect("local");
    control
        .write_all(options(local, sw.sip, 1, None).as_bytes())
        .expect("send OPTIONS");
    let mut pending = Vec::new();
    let reply = read_message(&mut control, &mut pending, Duration::from_secs(10));
    assert_eq!(reply.status, Some(200), "a whole request is answered");

    let started = Instant::now();
    let mut halves: Vec<TcpStream> = (0..50)
        .map(|i| {
            let mut s = connect(&sw);
            let local = s.local_addr().expect("local");
            let whole = options(local, sw.sip, 100 + i, None);
            // Up to the middle of the headers, never the blank line.
            s.write_all(&whole.as_bytes()[..whole.len() / 2])
                .expect("send half a request");
            s
        })
        .collect();
    let deadline = started + Duration::from_secs(30);
    let mut closed_after = Vec::new();
    for (i, s) in halves.iter_mut().enumerate() {
        match read_until_closed(s, deadline) {
            Ok(got) => {
                assert!(
                    got.is_empty(),
                    "connection {i} got {got:?} before its close"
                );
                closed_after.push(started.elapsed().as_secs_f64());
            }
            Err(_) => panic!("half-sent connection {i} still open 30 s later"),
        }
    }
    eprintln!(
        "50 half-sent connections closed {:.2}-{:.2} s after the first was opened (timeout 2 s)",
        closed_after.iter().cloned().fold(f64::MAX, f64::min),
        closed_after.iter().cloned().fold(0.0, f64::max)
    );
    let counted = wait_for(Duration::from_secs(5), 50.0, || {
        closed_by(&sw, "half_message_timeout")
    });
    assert_eq!(counted, 50.0, "closed_total{{reason=half_message_timeout}}");
    assert_eq!(closed_by(&sw, "idle_timeout"), 0.0);
    // The connection that sent a whole request is still there and still served.
    control
        .write_all(options(local, sw.sip, 2, None).as_bytes())
        .expect("send OPTIONS again");
    let reply = read_message(&mut control, &mut pending, Duration::from_secs(10));
    assert_eq!(reply.status, Some(200));
    assert_eq!(
        open_connections(&sw),
        1.0,
        "only the whole-request connection is open"
    );
}

/// (b) A connection with nothing on it is closed after the idle timeout; a keep-alive
/// ping is answered with a pong and counts as traffic.
#[test]
fn idle_connection_is_closed_after_the_idle_timeout() {
    let cfg = tcp_config(&[("idle_timeout_s", "2")]);
    let sw = Switch::start(&cfg, 23);
    let started = Instant::now();
    let mut idle = connect(&sw);
    let mut pinging = connect(&sw);
    // Pings every 0.5 s for 4 s (twice the idle timeout): each gets its pong.
    for _ in 0..8 {
        pinging.write_all(b"\r\n\r\n").expect("ping");
        let mut pong = [0u8; 2];
        pinging
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        pinging.read_exact(&mut pong).expect("a pong for each ping");
        assert_eq!(&pong, b"\r\n", "RFC 5626 pong is one CRLF");
        std::thread::sleep(Duration::from_millis(500));
    }
    match read_until_closed(&mut idle, started + Duration::from_secs(20)) {
        Ok(got) => assert!(got.is_empty(), "idle connection got {got:?}"),
        Err(_) => panic!("idle connection still open 20 s later"),
    }
    eprintln!(
        "idle connection seen closed {:.2} s after it opened (looked at after 4 s of pings on the other; idle timeout 2 s)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        wait_for(Duration::from_secs(5), 1.0, || closed_by(
            &sw,
            "idle_timeout"
        )) >= 1.0,
        "closed_total{{reason=idle_timeout}}"
    );
    // Once the pings stop, the pinging connection goes idle too.
    match read_until_closed(&mut pinging, Instant::now() + Duration::from_secs(20)) {
        Ok(got) => assert!(got.is_empty(), "got {got:?}"),
        Err(_) => panic!("connection still open 20 s after its last ping"),
    }
    assert_eq!(
        wait_for(Duration::from_secs(5), 2.0, || closed_by(
            &sw,
            "idle_timeout"
        )),
        2.0
    );
}

/// (c) Connections over the per-source cap, and over the total cap, are closed at once;
/// the ones within the caps keep working.
#[test]
fn connections_over_the_caps_are_refused() {
    {
        let cfg = tcp_config(&[
            ("max_connections", "10"),
            ("max_connections_per_source", "3"),
        ]);
        let sw = Switch::start(&cfg, 23);
        let mut kept: Vec<TcpStream> = (0..3).map(|_| connect(&sw)).collect();
        assert_eq!(
            wait_for(Duration::from_secs(5), 3.0, || open_connections(&sw)),
            3.0
        );
        let mut extra = connect(&sw);
        match read_until_closed(&mut extra, Instant::now() + Duration::from_secs(10)) {
            Ok(got) => assert!(got.is_empty(), "refused connection got {got:?}"),
            Err(_) => panic!("the 4th connection from one source was not closed"),
        }
        assert_eq!(closed_by(&sw, "per_source_cap"), 1.0);
        assert_eq!(closed_by(&sw, "total_cap"), 0.0);
        assert_eq!(open_connections(&sw), 3.0);
        let local = kept[0].local_addr().expect("local");
        kept[0]
            .write_all(options(local, sw.sip, 1, None).as_bytes())
            .expect("send");
        let reply = read_message(&mut kept[0], &mut Vec::new(), Duration::from_secs(10));
        assert_eq!(reply.status, Some(200), "connections within the cap work");
        // A slot freed is a slot free again.
        drop(kept.pop());
        assert_eq!(
            wait_for(Duration::from_secs(5), 1.0, || 3.0 - open_connections(&sw)),
            1.0
        );
        let mut again = connect(&sw);
        assert!(still_open(&mut again, Duration::from_millis(1500)));
    }
    {
        let cfg = tcp_config(&[
            ("max_connections", "2"),
            ("max_connections_per_source", "2"),
        ]);
        let sw = Switch::start(&cfg, 23);
        let _kept: Vec<TcpStream> = (0..2).map(|_| connect(&sw)).collect();
        assert_eq!(
            wait_for(Duration::from_secs(5), 2.0, || open_connections(&sw)),
            2.0
        );
        let mut extra = connect(&sw);
        match read_until_closed(&mut extra, Instant::now() + Duration::from_secs(10)) {
            Ok(got) => assert!(got.is_empty(), "refused connection got {got:?}"),
            Err(_) => panic!("the 3rd connection over a total of 2 was not closed"),
        }
        assert_eq!(closed_by(&sw, "total_cap"), 1.0);
        assert_eq!(
            labelled(&sw, "ccswitch_sip_tcp_limit", "limit", "max_connections"),
            Some(2.0),
            "the limits are shown in /metrics"
        );
    }
}

/// (d) A request whose Content-Length exceeds the limit gets 513 and the connection
/// closes; a header section that never ends within the limit is closed without a word.
#[test]
fn over_large_messages_get_513_or_a_close() {
    let cfg = tcp_config(&[("max_message_bytes", "4096")]);
    let sw = Switch::start(&cfg, 23);

    let mut announced = connect(&sw);
    let local = announced.local_addr().expect("local");
    announced
        .write_all(options(local, sw.sip, 1, Some(100_000)).as_bytes())
        .expect("send headers");
    // Some of the announced body: the switch answers without waiting for the rest, and
    // reads on until we close, so its close does not reset the connection under the 513.
    let _ = announced.write_all(&[b'x'; 1000]);
    let got = read_until_closed(&mut announced, Instant::now() + Duration::from_secs(10))
        .unwrap_or_else(|g| panic!("still open; got {:?}", String::from_utf8_lossy(&g)));
    let reply = sipwire::parse(&got)
        .unwrap_or_else(|| panic!("no response: {:?}", String::from_utf8_lossy(&got)));
    assert_eq!(reply.status, Some(513), "{}", String::from_utf8_lossy(&got));
    assert_eq!(reply.cseq(), Some((1, "OPTIONS".to_string())));

    let mut endless = connect(&sw);
    let start = format!(
        "OPTIONS sip:100@{} SIP/2.0\r\nVia: SIP/2.0/TCP {};branch=z9hG4bKbig\r\n",
        sw.sip,
        endless.local_addr().expect("local")
    );
    let _ = endless.write_all(start.as_bytes());
    for i in 0..100 {
        if endless
            .write_all(format!("X-Filler-{i}: {}\r\n", "a".repeat(100)).as_bytes())
            .is_err()
        {
            break;
        }
    }
    match read_until_closed(&mut endless, Instant::now() + Duration::from_secs(10)) {
        Ok(got) => assert!(got.is_empty(), "no answer to endless headers: {got:?}"),
        Err(_) => panic!("endless headers: still open"),
    }
    assert_eq!(
        wait_for(Duration::from_secs(5), 2.0, || closed_by(&sw, "too_large")),
        2.0
    );
    // A message just within the limit is fine.
    let mut fine = connect(&sw);
    let local = fine.local_addr().expect("local");
    let head = options(local, sw.sip, 3, Some(2000));
    fine.write_all(head.as_bytes()).expect("send");
    fine.write_all(&[b'y'; 2000]).expect("send body");
    let reply = read_message(&mut fine, &mut Vec::new(), Duration::from_secs(10));
    assert_eq!(reply.status, Some(200));
}

/// REGISTER over `s` with digest auth (challenge, then credentials); the final status.
fn tcp_register(
    s: &mut TcpStream,
    pending: &mut Vec<u8>,
    switch: SocketAddr,
    user: &str,
    expires: u32,
    cseq_base: u32,
) -> u16 {
    use ccswitch::proto::digest::{ha1, response, Algorithm, QopAuth};
    let local = s.local_addr().expect("local");
    let call_id = format!("tcp-reg-{user}-{}@127.0.0.1", std::process::id());
    let mut auth: Option<String> = None;
    for cseq in cseq_base..cseq_base + 2 {
        let msg = sipwire::register(
            user,
            switch,
            local,
            &call_id,
            "rtcp",
            cseq,
            &format!("z9hG4bKtcpreg{cseq}"),
            expires,
            auth.as_deref(),
        );
        let msg = String::from_utf8(msg)
            .expect("utf8")
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .replace(&format!("@{local}>"), &format!("@{local};transport=tcp>"));
        s.write_all(msg.as_bytes()).expect("send REGISTER");
        let want = Some((cseq, "REGISTER".to_string()));
        let reply = busy_phone_until(s, pending, Duration::from_secs(10), |m| {
            m.status.is_some() && m.cseq() == want
        });
        let status = reply.status.expect("a response");
        if status != 401 {
            return status;
        }
        let challenge = reply
            .headers_named("www-authenticate")
            .filter_map(sipwire::digest_params)
            .find(|c| {
                c.iter()
                    .any(|(n, v)| n == "algorithm" && v.eq_ignore_ascii_case("MD5"))
            })
            .expect("an MD5 challenge");
        let get = |k: &str| {
            challenge
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let (realm, nonce) = (get("realm"), get("nonce"));
        let uri = sipwire::register_uri(switch);
        let key = ha1(Algorithm::Md5, user, &realm, &format!("demo{user}"));
        let cnonce = "0a4f113b";
        let resp = response(
            Algorithm::Md5,
            &key,
            "REGISTER",
            &uri,
            &nonce,
            Some(QopAuth {
                nc: "00000001",
                cnonce,
            }),
        );
        auth = Some(format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\""
        ));
    }
    panic!("REGISTER challenged again after credentials");
}

/// (e) An agent registered over TCP stays connected past the idle timeout (the engine
/// still needs the connection), gets pongs to its keep-alive pings and an INVITE when a
/// caller queues for it; once it unregisters, the connection is closed as idle.
#[test]
fn registered_tcp_agent_stays_connected_and_gets_offers() {
    let cfg = tcp_config(&[("idle_timeout_s", "2")]);
    let sw = Switch::start(&cfg, 23);
    let mut agent = connect(&sw);
    let mut pending = Vec::new();
    assert_eq!(
        tcp_register(&mut agent, &mut pending, sw.sip, "1001", 600, 1),
        200
    );
    // Silent for twice the idle timeout: still open, because the registration uses it.
    assert!(
        still_open(&mut agent, Duration::from_secs(5)),
        "the registered connection was closed"
    );
    agent.write_all(b"\r\n\r\n").expect("ping");
    let mut pong = [0u8; 2];
    agent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    agent.read_exact(&mut pong).expect("pong");
    assert_eq!(&pong, b"\r\n");
    assert_eq!(closed_by(&sw, "idle_timeout"), 0.0);

    // A caller queues for tech (language 1, then 6 in the main menu): Alice is offered it
    // on her TCP connection.
    let t = timeline();
    let switch = sw.sip;
    let caller = std::thread::spawn(move || {
        let mut call = RawCall::dial(switch, "100");
        let _ = call.media(t.main + 6.0, &[(t.language, '1'), (t.main, '6')]);
        call.hang_up()
    });
    let invite = read_message(&mut agent, &mut pending, Duration::from_secs(60));
    assert_eq!(invite.method, "INVITE", "{invite:?}");
    assert!(
        invite
            .header("via")
            .is_some_and(|v| v.contains("SIP/2.0/TCP")),
        "{invite:?}"
    );
    agent
        .write_all(&invite.response(486, "Busy Here"))
        .expect("486");
    let _ = caller.join();

    // Unregistered, the connection is no longer needed: closed as idle.
    let cseq = 10;
    assert_eq!(
        tcp_register(&mut agent, &mut pending, sw.sip, "1001", 0, cseq),
        200
    );
    let unregistered = Instant::now();
    match read_until_closed(&mut agent, unregistered + Duration::from_secs(30)) {
        Ok(_) => {}
        Err(_) => panic!("unregistered connection still open 30 s later"),
    }
    eprintln!(
        "unregistered agent's connection closed {:.2} s after unregistering (idle timeout 2 s)",
        unregistered.elapsed().as_secs_f64()
    );
    assert!(
        wait_for(Duration::from_secs(5), 1.0, || closed_by(
            &sw,
            "idle_timeout"
        )) >= 1.0,
        "closed_total{{reason=idle_timeout}}"
    );
}
