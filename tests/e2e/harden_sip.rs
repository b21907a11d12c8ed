//! Hardening (issue 12, items 1 and 3) against the real binary:
//! * one source flooding INVITEs (127.0.0.2) does not shut out a caller at 127.0.0.1;
//! * demo agent passwords on a non-loopback SIP address stop `run` unless
//!   `--allow-demo-credentials` is given.

use super::*;

/// A switch process started with `args` after `run --config DIR --database URL`; its stderr
/// is collected. Killed (by pid) when dropped.
struct RawRun {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl RawRun {
    fn start(cfg: &TestConfig, args: &[&str]) -> RawRun {
        let mut child = Command::new(bin())
            .arg("run")
            .arg("--config")
            .arg(&cfg.dir)
            .args(["--database", &cfg.db_url])
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ccswitch");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let stderr = child.stderr.take().expect("stderr piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push(strip_ansi(&line));
                }
            }
        });
        RawRun { child, log }
    }

    fn text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits (bounded) until a log line contains `needle` or the process exits.
    fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.text().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for RawRun {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[test]
fn run_refuses_demo_credentials_on_a_wildcard_address() {
    let cfg = TestConfig::new(0);
    let sip = format!("0.0.0.0:{}", free_sip_port());
    let http = format!("127.0.0.1:{}", free_tcp_port());
    let mut run = RawRun::start(&cfg, &["--sip-listen", &sip, "--http-listen", &http]);
    let status = run
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("still running after 20 s:\n{}", run.text()));
    let text = run.text();
    assert!(!status.success(), "refused: {status}\n{text}");
    for part in [
        "agents.toml: agents[0].ha1_md5: agent 1001 still has the demo password `demo1001`",
        &format!("SIP listens on {sip}"),
        "--allow-demo-credentials",
        "agents[2].ha1_md5",
    ] {
        assert!(text.contains(part), "`{part}` in:\n{text}");
    }
    assert!(!text.contains("SIP listening"), "{text}");
    // Nothing was created before the refusal: not even the database.
    assert!(!cfg.tmp.path().join("calls.db").exists());
}

#[test]
fn run_with_allow_demo_credentials_starts_and_warns() {
    let cfg = TestConfig::new(0);
    let sip = format!("0.0.0.0:{}", free_sip_port());
    let http = format!("127.0.0.1:{}", free_tcp_port());
    let (lo, hi) = rtp_range(22);
    let rtp = format!("{lo}-{hi}");
    let mut run = RawRun::start(
        &cfg,
        &[
            "--sip-listen",
            &sip,
            "--http-listen",
            &http,
            "--rtp-ports",
            &rtp,
            "--allow-demo-credentials",
        ],
    );
    assert!(
        run.wait_for("SIP listening", Duration::from_secs(20)),
        "started:\n{}",
        run.text()
    );
    let text = run.text();
    assert!(
        text.contains("DEMO CREDENTIALS") && text.contains("agents[0].ha1_md5"),
        "a loud warning:\n{text}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status();
    let status = run
        .wait_exit(Duration::from_secs(15))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status}\n{}", run.text());
}

/// One flooder at 127.0.0.2 sends 400 new INVITEs over about 2 s (never ACKing anything);
/// a caller at 127.0.0.1 dials in the middle of it and is answered within three rings.
/// The flooder sees 503 with Retry-After, then silence; /metrics counts it all.
#[test]
fn a_flooding_source_does_not_shut_out_another_caller() {
    const FLOOD: u32 = 400;
    let cfg = TestConfig::new(1);
    let main = cfg.main_file();
    let text = std::fs::read_to_string(&main).expect("read ccswitch.toml");
    // 10 flood calls at most: the 40-port RTP slot has 20 even ports, one per call.
    let text = text.replace("max_calls_per_source = 50", "max_calls_per_source = 10");
    assert!(text.contains("max_calls_per_source = 10"));
    std::fs::write(&main, text).expect("write ccswitch.toml");
    let sw = Switch::start(&cfg, 22);
    let target = sw.sip;

    let flooder = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2 (loopback /8)");
    let local = flooder.local_addr().expect("local");
    let flood = std::thread::spawn(move || {
        let _ = flooder.set_read_timeout(Some(Duration::from_millis(1)));
        let uri = format!("sip:100@{target}");
        let rtp: SocketAddr = "127.0.0.2:9".parse().expect("addr");
        let mut replies: Vec<(u16, String, bool)> = Vec::new();
        let mut buf = vec![0u8; 65536];
        let mut drain = |replies: &mut Vec<(u16, String, bool)>| {
            while let Ok((n, _)) = flooder.recv_from(&mut buf) {
                if let Some(m) = sipwire::parse(&buf[..n]) {
                    if let Some(status) = m.status {
                        let call_id = m.call_id().unwrap_or("").to_string();
                        replies.push((status, call_id, m.header("retry-after").is_some()));
                    }
                }
            }
        };
        let start = Instant::now();
        for i in 0..FLOOD {
            let ids = sipwire::CallIds::new(0xf100_0000 + u64::from(i), local, &uri, "5559999");
            let invite = ids.invite(&format!("z9hG4bKflood{i}"), 1, rtp);
            let _ = flooder.send_to(&invite, target);
            // 200 a second: each INVITE at its own time, whatever the scheduler does.
            let due = start + Duration::from_millis(u64::from(i + 1) * 5);
            while Instant::now() < due {
                drain(&mut replies);
            }
        }
        let end = Instant::now() + Duration::from_secs(1);
        while Instant::now() < end {
            drain(&mut replies);
        }
        replies
    });

    std::thread::sleep(Duration::from_millis(1000));
    let mut good = RawCall::dial(sw.sip, "100");
    let answered = good
        .responses
        .iter()
        .find(|(s, _)| *s == 200)
        .map(|(_, t)| *t)
        .expect("good call answered");
    println!("good caller answered after {answered:?} during the flood");
    assert!(answered <= Duration::from_secs(18), "within three rings");
    assert!(good.responses.iter().all(|(s, _)| *s < 300));
    assert_eq!(good.hang_up(), Some(200));

    let replies = flood.join().expect("flood thread");
    let refused: std::collections::BTreeSet<&str> = replies
        .iter()
        .filter(|(s, _, _)| *s == 503)
        .map(|(_, c, _)| c.as_str())
        .collect();
    let trying: std::collections::BTreeSet<&str> = replies
        .iter()
        .filter(|(s, _, _)| *s == 100)
        .map(|(_, c, _)| c.as_str())
        .collect();
    let answered_any: std::collections::BTreeSet<&str> =
        replies.iter().map(|(_, c, _)| c.as_str()).collect();
    println!(
        "flood: {FLOOD} INVITEs, {} got 100 Trying, {} got 503, {} got no reply",
        trying.len(),
        refused.len(),
        FLOOD as usize - answered_any.len()
    );
    assert!(!refused.is_empty(), "some flood INVITEs got 503");
    assert!(
        replies
            .iter()
            .filter(|(s, _, _)| *s == 503)
            .all(|(_, _, retry_after)| *retry_after),
        "every 503 has Retry-After"
    );
    assert!(trying.len() <= 10, "max_calls_per_source: {}", trying.len());
    assert!(
        answered_any.len() < FLOOD as usize,
        "the banned flooder got silence"
    );

    let rate_limited = sw
        .metric("ccswitch_sip_source_rate_limited_total")
        .unwrap_or(0.0);
    let over_concurrency = sw
        .metric("ccswitch_sip_source_over_concurrency_total")
        .unwrap_or(0.0);
    let ignored = sw
        .metric("ccswitch_sip_source_ignored_total")
        .unwrap_or(0.0);
    let banned = sw.metric("ccswitch_sip_sources_banned");
    println!(
        "metrics: rate_limited {rate_limited}, over_concurrency {over_concurrency}, \
         ignored {ignored}, banned {banned:?}"
    );
    assert_eq!(
        (rate_limited + over_concurrency) as usize,
        refused.len(),
        "each 503 counted once (retransmitted 503s are not new refusals)"
    );
    assert_eq!(
        ignored as usize,
        FLOOD as usize - answered_any.len(),
        "each unanswered INVITE counted as ignored"
    );
    assert_eq!(banned, Some(1.0), "the flooder is banned");
    assert!(sw
        .log_lines()
        .iter()
        .any(|l| l.contains("source far over its rate") && l.contains("127.0.0.2")));
    let warn_lines = sw
        .log_lines()
        .iter()
        .filter(|l| l.contains("source over its limit"))
        .count();
    assert!(
        (1..=2).contains(&warn_lines),
        "refusals are logged once per 10 s per source: {warn_lines}"
    );
}
