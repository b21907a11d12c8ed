//! The SMPP gateway against a real SMSC: `tests/smsc/smsc.js` on the npm `smpp` package
//! (node-smpp), one process per test on its own 127.0.0.1 port, killed in teardown.
//!
//! Needs `node` and `npm` (the harness runs `npm ci` in tests/smsc when node_modules is
//! missing). `CCSWITCH_TEST_SKIP_SMSC=1` skips these tests; otherwise a missing node fails.

#![allow(clippy::disallowed_methods)] // bounded waits on the wall clock

use ccswitch::config::sms::{PasswordSource, SmppConfig};
use ccswitch::sms::smpp::SmppGateway;
use ccswitch::sms::{SmsEvent, SmsMessage};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

const SYSTEM_ID: &str = "ccswitch";
const PASSWORD: &str = "s3cret";
const TO: &str = "+8613800138000";

fn skip() -> bool {
    if std::env::var("CCSWITCH_TEST_SKIP_SMSC").as_deref() == Ok("1") {
        eprintln!("CCSWITCH_TEST_SKIP_SMSC=1: SMPP tests against the node SMSC are skipped");
        return true;
    }
    false
}

fn smsc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smsc")
}

/// `npm ci` once per test binary when the SMSC's dependencies are not installed yet.
fn ensure_node_modules() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    let dir = smsc_dir();
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is needed for the SMPP tests (tests/smsc); install Node.js, or set \
         CCSWITCH_TEST_SKIP_SMSC=1 to skip them"
    );
    if !dir.join("node_modules/smpp/package.json").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed to install the test SMSC (tests/smsc): install npm, or set CCSWITCH_TEST_SKIP_SMSC=1");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    *done = true;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The node SMSC: its stdout as JSON records, its stdin for commands.
struct Smsc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    /// Every record seen so far, in order.
    seen: Vec<Value>,
    port: u16,
}

impl Smsc {
    fn start(extra: &[&str]) -> Smsc {
        ensure_node_modules();
        let port = free_port();
        let mut child = Command::new("node")
            .arg(smsc_dir().join("smsc.js"))
            .arg(port.to_string())
            .arg(SYSTEM_ID)
            .arg(PASSWORD)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node tests/smsc/smsc.js");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("smsc (not JSON): {line}"),
                }
            }
        });
        let stdin = child.stdin.take();
        let mut smsc = Smsc {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            port,
        };
        smsc.wait_for("listening", Duration::from_secs(10), |v| {
            v["event"] == "listening"
        });
        smsc
    }

    fn cmd(&mut self, cmd: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
    }

    /// Reads records until one matches (bounded by `limit`); returns it.
    fn wait_for(&mut self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!("SMSC: no {what} within {limit:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// Takes in whatever records arrived so far (waiting `settle` for stragglers).
    fn drain(&mut self, settle: Duration) {
        let end = Instant::now() + settle;
        while let Ok(v) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.seen.push(v);
        }
    }

    fn submits(&self) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|v| v["event"] == "submit_sm")
            .cloned()
            .collect()
    }

    fn count(&self, event: &str) -> usize {
        self.seen.iter().filter(|v| v["event"] == event).count()
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Rig {
    smsc: Smsc,
    gw: Option<SmppGateway>,
    events: UnboundedReceiver<SmsEvent>,
    /// Every gateway event so far, in order.
    log: Vec<SmsEvent>,
    _pw: tempfile::NamedTempFile,
}

fn config(port: u16, pw: &Path) -> SmppConfig {
    SmppConfig {
        host: "127.0.0.1".into(),
        port,
        system_id: SYSTEM_ID.into(),
        password: PasswordSource::File(pw.to_path_buf()),
        system_type: "survey".into(),
        source_addr: "10690000".into(),
        window: 10,
        max_per_s: 200,
        enquire_link: Duration::from_secs(30),
        response_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(800),
        throttle_backoff: Duration::from_millis(200),
        max_attempts: 5,
    }
}

impl Rig {
    fn start(smsc_args: &[&str], tweak: impl FnOnce(&mut SmppConfig)) -> Rig {
        // RUST_LOG=ccswitch=debug shows the gateway's side when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let smsc = Smsc::start(smsc_args);
        let mut pw = tempfile::NamedTempFile::new().unwrap();
        writeln!(pw, "{PASSWORD}").unwrap();
        let mut cfg = config(smsc.port, pw.path());
        tweak(&mut cfg);
        let (gw, events) = SmppGateway::start(cfg).expect("gateway starts");
        Rig {
            smsc,
            gw: Some(gw),
            events,
            log: Vec::new(),
            _pw: pw,
        }
    }

    fn gw(&self) -> &SmppGateway {
        self.gw.as_ref().unwrap()
    }

    fn send(&self, id: u64, text: &str) {
        self.gw()
            .send(SmsMessage {
                id,
                to: TO.into(),
                text: text.into(),
            })
            .unwrap();
    }

    /// Waits (bounded) for a gateway event that matches.
    async fn event(
        &mut self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&SmsEvent) -> bool,
    ) -> SmsEvent {
        let end = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(end, self.events.recv()).await {
                Ok(Some(ev)) => {
                    self.log.push(ev.clone());
                    if pred(&ev) {
                        return ev;
                    }
                }
                Ok(None) => panic!(
                    "gateway event stream ended waiting for {what}; saw {:#?}",
                    self.log
                ),
                Err(_) => panic!("no {what} within {limit:?}; gateway events {:#?}", self.log),
            }
        }
    }

    async fn connected(&mut self) {
        self.event("Connected", Duration::from_secs(10), |e| {
            matches!(e, SmsEvent::Connected { .. })
        })
        .await;
    }

    async fn submitted(&mut self, id: u64) -> Vec<String> {
        match self
            .event(
                &format!("Submitted {id}"),
                Duration::from_secs(10),
                |e| matches!(e, SmsEvent::Submitted { id: i, .. } if *i == id),
            )
            .await
        {
            SmsEvent::Submitted { gateway_ids, .. } => gateway_ids,
            _ => unreachable!(),
        }
    }

    async fn stop(&mut self) {
        let gw = self.gw.take().unwrap();
        let t = Instant::now();
        gw.stop(Duration::from_secs(3)).await;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "stop took {:?}",
            t.elapsed()
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn utf16be(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    String::from_utf16(&units).unwrap()
}

const LONG: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_as_v34_keeps_alive_and_submits_gsm_text() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |c| c.enquire_link = Duration::from_secs(1));
    rig.connected().await;
    let bind = rig.smsc.wait_for("bind", LONG, |v| v["event"] == "bind");
    assert_eq!(bind["ok"], true);
    assert_eq!(bind["interface_version"], 0x34);
    assert_eq!(bind["system_id"], SYSTEM_ID);
    assert_eq!(bind["system_type"], "survey");

    let text = "Thank you for calling Example Co. Reply 1-5 (5 = very satisfied).";
    rig.send(1, text);
    let ids = rig.submitted(1).await;
    assert_eq!(ids, vec!["m1".to_string()]);
    let sm = rig
        .smsc
        .wait_for("submit_sm", LONG, |v| v["event"] == "submit_sm");
    assert_eq!(sm["destination_addr"], "8613800138000");
    assert_eq!(sm["dest_addr_ton"], 1);
    assert_eq!(sm["dest_addr_npi"], 1);
    assert_eq!(sm["source_addr"], "10690000");
    assert_eq!(sm["data_coding"], 0);
    assert_eq!(sm["esm_class"], 0);
    assert_eq!(sm["registered_delivery"], 1);
    // GSM 7-bit unpacked: these characters have their ASCII values.
    assert_eq!(sm["short_message_hex"], hex(text.as_bytes()));

    // Keep-alive: an enquire_link reaches the SMSC within a few intervals.
    rig.smsc
        .wait_for("enquire_link", Duration::from_secs(5), |v| {
            v["event"] == "enquire_link"
        });
    assert_eq!(rig.gw().stats().parts_submitted.load(Ordering::Relaxed), 1);
    rig.stop().await;
    rig.smsc
        .wait_for("unbind on stop", LONG, |v| v["event"] == "unbind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ucs2_chinese_long_text_goes_as_concatenated_parts() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |_| {});
    rig.connected().await;
    let text =
        "感谢致电Example Co，请为本次服务打分：回复1-5（5为非常满意），回复TD退订。".repeat(3);
    let units = text.encode_utf16().count();
    assert!(
        units > 134 && units <= 201,
        "{units} UTF-16 units: three parts"
    );
    let id = 300; // concatenation reference = id % 256 = 44
    rig.send(id, &text);
    let ids = rig.submitted(id).await;
    assert_eq!(ids.len(), 3);
    rig.smsc.drain(Duration::from_millis(200));
    let parts = rig.smsc.submits();
    assert_eq!(parts.len(), 3, "{parts:#?}");
    let mut joined = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["data_coding"], 8);
        assert_eq!(p["esm_class"], 0x40);
        assert_eq!(p["registered_delivery"], 1);
        assert_eq!(p["udh_hex"], format!("0500032c03{:02x}", i + 1));
        assert_eq!(p["concat"]["ref"], 44);
        assert_eq!(p["concat"]["total"], 3);
        assert_eq!(p["concat"]["seq"], i + 1);
        let payload = unhex(p["payload_hex"].as_str().unwrap());
        assert!(payload.len() <= 134, "part {i}: {} octets", payload.len());
        assert!(unhex(p["short_message_hex"].as_str().unwrap()).len() <= 140);
        joined.extend(payload);
    }
    assert_eq!(utf16be(&joined), text);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_receipts_are_matched_to_the_gateway_id() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |_| {});
    rig.connected().await;
    rig.send(7, "Reply 1-5");
    let ids = rig.submitted(7).await;
    rig.smsc
        .cmd(serde_json::json!({"cmd": "receipt", "message_id": ids[0], "stat": "DELIVRD"}));
    let ev = rig
        .event("receipt", LONG, |e| {
            matches!(e, SmsEvent::DeliveryReceipt { .. })
        })
        .await;
    assert_eq!(
        ev,
        SmsEvent::DeliveryReceipt {
            gateway_id: ids[0].clone(),
            delivered: true,
            state: "DELIVRD".into(),
            error: Some("000".into()),
        }
    );
    // Without the receipted_message_id TLV the id comes from the receipt text.
    rig.send(8, "Reply 1-5 again");
    let ids = rig.submitted(8).await;
    rig.smsc.cmd(
        serde_json::json!({"cmd": "receipt", "message_id": ids[0], "stat": "UNDELIV", "err": "001", "tlv": false}),
    );
    let ev = rig
        .event("second receipt", LONG, |e| {
            matches!(e, SmsEvent::DeliveryReceipt { .. })
        })
        .await;
    assert_eq!(
        ev,
        SmsEvent::DeliveryReceipt {
            gateway_id: ids[0].clone(),
            delivered: false,
            state: "UNDELIV".into(),
            error: Some("001".into()),
        }
    );
    rig.smsc.wait_for("deliver_sm_resp", LONG, |v| {
        v["event"] == "deliver_sm_resp" && v["command_status"] == 0
    });
    assert_eq!(rig.gw().stats().receipts.load(Ordering::Relaxed), 2);

    // A receipt with neither an id nor a stat: counted and logged, answered, no event.
    rig.smsc
        .cmd(serde_json::json!({"cmd": "receipt", "tlv": false, "text": "garbage \u{1}"}));
    rig.smsc.wait_for("sent garbage receipt", LONG, |v| {
        v["event"] == "sent_receipt" && v["message_id"].is_null()
    });
    rig.send(9, "after the garbage");
    rig.submitted(9).await;
    rig.smsc.drain(Duration::from_millis(300));
    assert_eq!(rig.gw().stats().malformed.load(Ordering::Relaxed), 1);
    assert_eq!(rig.gw().stats().receipts.load(Ordering::Relaxed), 2);
    assert!(
        !rig.log.iter().any(|e| matches!(e, SmsEvent::DeliveryReceipt { gateway_id, .. } if gateway_id.contains("garbage"))),
        "{:?}",
        rig.log
    );
    assert_eq!(
        rig.smsc.count("deliver_sm_resp"),
        3,
        "every deliver_sm answered"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mo_replies_are_decoded_by_data_coding() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |_| {});
    rig.connected().await;
    rig.smsc.cmd(serde_json::json!({"cmd": "mo", "from": "8613800138000", "to": "10690000", "text": "5 很好"}));
    let ev = rig
        .event("MO reply", LONG, |e| matches!(e, SmsEvent::Inbound { .. }))
        .await;
    assert_eq!(
        ev,
        SmsEvent::Inbound {
            from: "8613800138000".into(),
            to: "10690000".into(),
            text: "5 很好".into(),
        }
    );
    rig.smsc
        .cmd(serde_json::json!({"cmd": "mo", "text": "4 the wait was long"}));
    let ev = rig
        .event("ASCII MO reply", LONG, |e| {
            matches!(e, SmsEvent::Inbound { .. })
        })
        .await;
    assert!(
        matches!(ev, SmsEvent::Inbound { ref text, .. } if text == "4 the wait was long"),
        "{ev:?}"
    );
    rig.smsc.drain(Duration::from_millis(300));
    assert_eq!(
        rig.smsc.count("deliver_sm_resp"),
        2,
        "every deliver_sm answered"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_slows_down_then_the_message_goes_out_once() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |_| {});
    rig.connected().await;
    rig.smsc
        .cmd(serde_json::json!({"cmd": "throttle", "count": 2}));
    rig.smsc
        .wait_for("throttle ack", LONG, |v| v["cmd"] == "throttle");
    rig.send(11, "Reply 1-5");
    let ids = rig.submitted(11).await;
    let throttles: Vec<Duration> = rig
        .log
        .iter()
        .filter_map(|e| match e {
            SmsEvent::Throttled { id: 11, retry_in } => Some(*retry_in),
            _ => None,
        })
        .collect();
    // The pause doubles per throttled answer in a row (throttle_backoff 200 ms).
    assert_eq!(
        throttles,
        vec![Duration::from_millis(200), Duration::from_millis(400)]
    );
    rig.smsc.drain(Duration::from_millis(200));
    let subs = rig.smsc.submits();
    let statuses: Vec<i64> = subs.iter().map(|v| v["status"].as_i64().unwrap()).collect();
    assert_eq!(statuses, vec![0x58, 0x58, 0]);
    assert_eq!(subs[2]["message_id"], ids[0].as_str());
    // Slowed down: the retries came no sooner than the pauses (a lower bound only).
    let t = |i: usize| subs[i]["t"].as_i64().unwrap();
    assert!(
        t(2) - t(0) >= 550,
        "retries came {} ms after the first try",
        t(2) - t(0)
    );
    assert_eq!(rig.gw().stats().throttled.load(Ordering::Relaxed), 2);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_fail_the_message_without_retry() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |_| {});
    rig.connected().await;
    // 0x0B ESME_RINVDSTADR: a bad destination will not get better.
    rig.smsc
        .cmd(serde_json::json!({"cmd": "fail", "count": 1, "status": 11}));
    rig.smsc.wait_for("fail ack", LONG, |v| v["cmd"] == "fail");
    rig.send(21, "Reply 1-5");
    let ev = rig
        .event("Failed", LONG, |e| matches!(e, SmsEvent::Failed { .. }))
        .await;
    match ev {
        SmsEvent::Failed {
            id,
            permanent,
            reason,
        } => {
            assert_eq!(id, 21);
            assert!(permanent);
            assert!(reason.contains("0x0000000b"), "{reason}");
        }
        _ => unreachable!(),
    }
    // The next message is unaffected.
    rig.send(22, "Reply 1-5");
    rig.submitted(22).await;
    rig.smsc.drain(Duration::from_millis(300));
    assert_eq!(rig.smsc.submits().len(), 2, "no retry of the refused text");

    // generic_nack to a submit_sm: 0x03 (invalid command id) is a refusal too...
    rig.smsc
        .cmd(serde_json::json!({"cmd": "nack", "count": 1, "status": 3}));
    rig.smsc.wait_for("nack ack", LONG, |v| v["cmd"] == "nack");
    rig.send(23, "Reply 1-5");
    let ev = rig
        .event("Failed 23", LONG, |e| {
            matches!(e, SmsEvent::Failed { id: 23, .. })
        })
        .await;
    assert!(
        matches!(&ev, SmsEvent::Failed { permanent: true, reason, .. } if reason.contains("generic_nack")),
        "{ev:?}"
    );
    // ...but a generic_nack saying "throttled" slows down and retries.
    rig.smsc
        .cmd(serde_json::json!({"cmd": "nack", "count": 1, "status": 0x58}));
    rig.smsc.wait_for("second nack ack", LONG, |v| {
        v["cmd"] == "nack" && v["status"] == 0x58
    });
    rig.send(24, "Reply 1-5");
    rig.submitted(24).await;
    assert!(rig
        .log
        .iter()
        .any(|e| matches!(e, SmsEvent::Throttled { id: 24, .. })));
    assert_eq!(rig.gw().stats().generic_nacks.load(Ordering::Relaxed), 2);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_bind_reconnects_and_sends_everything_exactly_once() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |_| {});
    rig.connected().await;
    rig.send(31, "first text");
    rig.submitted(31).await;
    rig.smsc.cmd(serde_json::json!({"cmd": "drop"}));
    let ev = rig
        .event("Disconnected", LONG, |e| {
            matches!(e, SmsEvent::Disconnected { .. })
        })
        .await;
    assert!(
        matches!(ev, SmsEvent::Disconnected { retry_in, .. } if retry_in == Duration::from_millis(100)),
        "{ev:?}"
    );
    // Queued while not bound: it waits for the new bind.
    rig.send(32, "second text");
    rig.connected().await;
    rig.submitted(32).await;
    rig.smsc.drain(Duration::from_millis(500));
    let texts: Vec<String> = rig
        .smsc
        .submits()
        .iter()
        .map(|v| String::from_utf8(unhex(v["short_message_hex"].as_str().unwrap())).unwrap())
        .collect();
    assert_eq!(
        texts,
        vec!["first text".to_string(), "second text".to_string()]
    );
    assert_eq!(rig.smsc.count("bind"), 2);
    assert_eq!(rig.gw().stats().binds.load(Ordering::Relaxed), 2);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_parts_are_resent_after_a_drop_but_acknowledged_ones_are_not() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |_| {});
    rig.connected().await;
    // Answers come late, so the drop catches part 2 of 3 in flight.
    rig.smsc.cmd(serde_json::json!({"cmd": "delay", "ms": 400}));
    rig.smsc
        .wait_for("delay ack", LONG, |v| v["cmd"] == "delay");
    let text = "好".repeat(150);
    rig.send(41, &text);
    rig.smsc.wait_for("part 2", LONG, |v| {
        v["event"] == "submit_sm" && v["concat"]["seq"] == 2
    });
    rig.smsc.cmd(serde_json::json!({"cmd": "drop"}));
    rig.smsc
        .wait_for("dropped", LONG, |v| v["event"] == "dropped");
    rig.smsc.cmd(serde_json::json!({"cmd": "delay", "ms": 0}));
    let ids = rig.submitted(41).await;
    assert_eq!(ids.len(), 3);
    rig.smsc.drain(Duration::from_millis(300));
    let seqs: Vec<i64> = rig
        .smsc
        .submits()
        .iter()
        .map(|v| v["concat"]["seq"].as_i64().unwrap())
        .collect();
    // Part 1 was acknowledged before the drop: never again. Part 2 had no answer: resent.
    assert_eq!(seqs, vec![1, 2, 2, 3]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_clear_error_and_retries_back_off() {
    if skip() {
        return;
    }
    let mut wrong = tempfile::NamedTempFile::new().unwrap();
    writeln!(wrong, "nope").unwrap();
    let wrong_path = wrong.path().to_path_buf();
    let mut rig = Rig::start(&[], move |c| c.password = PasswordSource::File(wrong_path));
    let mut waits = Vec::new();
    for _ in 0..5 {
        match rig
            .event("Disconnected", LONG, |e| {
                matches!(e, SmsEvent::Disconnected { .. })
            })
            .await
        {
            SmsEvent::Disconnected { reason, retry_in } => {
                assert!(
                    reason.contains("refused") && reason.contains("system_id and password"),
                    "{reason}"
                );
                assert!(
                    !reason.contains("nope"),
                    "the password must never show: {reason}"
                );
                waits.push(retry_in.as_millis());
            }
            _ => unreachable!(),
        }
    }
    // Exponential from reconnect_min (100 ms), capped at reconnect_max (800 ms).
    assert_eq!(waits, vec![100, 200, 400, 800, 800]);
    rig.smsc.drain(Duration::from_millis(100));
    let binds = rig.smsc.count("bind");
    assert!(binds >= 4, "{binds} bind attempts");
    assert!(format!("{:?}", rig.gw()).find("nope").is_none());
    rig.stop().await;
    drop(wrong);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_dropping_every_bind_gets_backoff_not_a_storm() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&["--drop-after-bind"], |_| {});
    let mut waits = Vec::new();
    while waits.len() < 4 {
        if let SmsEvent::Disconnected { retry_in, .. } = rig
            .event("Disconnected", LONG, |e| {
                matches!(e, SmsEvent::Disconnected { .. })
            })
            .await
        {
            waits.push(retry_in.as_millis());
        }
    }
    // Each bind succeeds but does not last: the wait still doubles up to reconnect_max.
    assert_eq!(waits, vec![100, 200, 400, 800]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_smsc_gives_a_timeout_error_not_a_hang() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&["--silent"], |c| {
        c.response_timeout = Duration::from_secs(1)
    });
    rig.send(51, "Reply 1-5");
    let ev = rig
        .event("Disconnected", LONG, |e| {
            matches!(e, SmsEvent::Disconnected { .. })
        })
        .await;
    match ev {
        SmsEvent::Disconnected { reason, .. } => {
            assert!(reason.contains("no answer within 1000 ms"), "{reason}");
        }
        _ => unreachable!(),
    }
    rig.smsc
        .wait_for("accept", LONG, |v| v["event"] == "silent_accept");
    assert!(
        !rig.log
            .iter()
            .any(|e| matches!(e, SmsEvent::Submitted { .. })),
        "nothing can be submitted without a bind"
    );
    assert!(rig.gw().stats().bind_failures.load(Ordering::Relaxed) >= 1);
    rig.stop().await;
    // Stopping reports the text that never went out, so the caller can keep it.
    let ev = rig
        .event("Failed on stop", LONG, |e| {
            matches!(e, SmsEvent::Failed { .. })
        })
        .await;
    assert_eq!(
        ev,
        SmsEvent::Failed {
            id: 51,
            permanent: false,
            reason: "the gateway stopped before sending it".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smsc_that_stops_answering_submits_times_out_and_reconnects() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |c| c.response_timeout = Duration::from_secs(1));
    rig.connected().await;
    rig.smsc.cmd(serde_json::json!({"cmd": "mute"}));
    rig.smsc.wait_for("mute ack", LONG, |v| v["cmd"] == "mute");
    rig.send(61, "Reply 1-5");
    let ev = rig
        .event("Disconnected", LONG, |e| {
            matches!(e, SmsEvent::Disconnected { .. })
        })
        .await;
    match ev {
        SmsEvent::Disconnected { reason, .. } => {
            assert!(
                reason.contains("no submit_sm_resp within 1000 ms"),
                "{reason}"
            );
        }
        _ => unreachable!(),
    }
    assert_eq!(rig.gw().stats().timeouts.load(Ordering::Relaxed), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_pdu_is_counted_and_the_gateway_recovers() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |_| {});
    rig.connected().await;
    rig.smsc.cmd(serde_json::json!({"cmd": "malformed"}));
    rig.smsc
        .wait_for("sent_malformed", LONG, |v| v["event"] == "sent_malformed");
    let ev = rig
        .event("Disconnected", LONG, |e| {
            matches!(e, SmsEvent::Disconnected { .. })
        })
        .await;
    assert!(matches!(ev, SmsEvent::Disconnected { .. }));
    assert_eq!(rig.gw().stats().malformed.load(Ordering::Relaxed), 1);
    // A fresh bind, and texts go out again.
    rig.connected().await;
    rig.send(71, "Reply 1-5");
    rig.submitted(71).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_caps_outstanding_submits_and_rate_caps_pace() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |c| {
        c.window = 2;
        c.max_per_s = 1000;
    });
    rig.connected().await;
    rig.smsc.cmd(serde_json::json!({"cmd": "delay", "ms": 300}));
    rig.smsc
        .wait_for("delay ack", LONG, |v| v["cmd"] == "delay");
    for id in 100..106 {
        rig.send(id, "Reply 1-5");
    }
    for id in 100..106 {
        rig.submitted(id).await;
    }
    rig.smsc.drain(Duration::from_millis(100));
    let most = rig
        .smsc
        .submits()
        .iter()
        .map(|v| v["outstanding"].as_i64().unwrap())
        .max()
        .unwrap();
    assert_eq!(
        most, 2,
        "window 2: at most two submit_sm unanswered, and it was used"
    );
    rig.stop().await;

    // Rate: 5 per second, 6 texts: the 6th goes at least ~1 s after the first.
    let mut rig = Rig::start(&[], |c| c.max_per_s = 5);
    rig.connected().await;
    for id in 200..206 {
        rig.send(id, "Reply 1-5");
    }
    for id in 200..206 {
        rig.submitted(id).await;
    }
    rig.smsc.drain(Duration::from_millis(100));
    let subs = rig.smsc.submits();
    assert_eq!(subs.len(), 6);
    let span = subs[5]["t"].as_i64().unwrap() - subs[0]["t"].as_i64().unwrap();
    assert!(span >= 900, "6 texts at 5/s took only {span} ms");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_refused_at_send() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |_| {});
    let bad = |to: &str, text: &str| {
        rig.gw()
            .send(SmsMessage {
                id: 1,
                to: to.into(),
                text: text.into(),
            })
            .unwrap_err()
            .to_string()
    };
    assert!(bad("13800138000", "x").contains("E.164"));
    assert!(bad(TO, "").contains("empty"));
    assert!(bad(TO, &"好".repeat(67 * 256)).contains("at most 255"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_mo_replies_come_out_as_one_text_whatever_the_order_and_framing() {
    if skip() {
        return;
    }
    let mut rig = Rig::start(&[], |_| {});
    rig.connected().await;
    let zh = "5 很好，客服非常耐心，问题当场就解决了，谢谢你们的服务。下次还会再来。";
    let en = "4 the wait was long but the agent was very helpful and solved it in one call";
    let cases = [
        (zh, 3, vec![3, 1, 2], 7, "udh8"),
        (en, 2, vec![2, 1], 0x1234, "udh16"),
        (zh, 4, vec![4, 2, 3, 1], 300, "sar"),
    ];
    for (text, parts, order, reference, how) in cases {
        rig.smsc.cmd(serde_json::json!({
            "cmd": "mo_long", "text": text, "parts": parts, "order": order,
            "ref": reference, "how": how,
        }));
        let ev = rig
            .event(&format!("Inbound ({how})"), LONG, |e| {
                matches!(e, SmsEvent::Inbound { .. })
            })
            .await;
        assert_eq!(
            ev,
            SmsEvent::Inbound {
                from: "8613800138000".into(),
                to: "10690000".into(),
                text: text.into(),
            },
            "{how}"
        );
    }
    rig.smsc.drain(Duration::from_millis(300));
    assert_eq!(rig.smsc.count("deliver_sm_resp"), 9, "every part answered");
    let inbound = rig
        .log
        .iter()
        .filter(|e| matches!(e, SmsEvent::Inbound { .. }))
        .count();
    assert_eq!(
        inbound, 3,
        "one event per text, not per part: {:#?}",
        rig.log
    );
    let stats = rig.gw().stats();
    assert_eq!(stats.concat_parts.load(Ordering::Relaxed), 9);
    assert_eq!(stats.inbound.load(Ordering::Relaxed), 3);
    assert_eq!(stats.concat_incomplete.load(Ordering::Relaxed), 0);

    // Two parts of three, one of them twice: held (nothing yet), the repeat ignored; on stop
    // the parts that came are reported as the text, so the reply is not lost.
    rig.smsc.cmd(serde_json::json!({
        "cmd": "mo_long", "text": "3 ok but slow", "parts": 3, "order": [3, 1, 3], "ref": 99,
    }));
    rig.smsc.wait_for("sent_mo_long", LONG, |v| {
        v["event"] == "sent_mo_long" && v["text"] == "3 ok but slow"
    });
    rig.smsc.drain(Duration::from_millis(300));
    assert_eq!(rig.smsc.count("deliver_sm_resp"), 12);
    assert_eq!(
        rig.gw().stats().concat_duplicates.load(Ordering::Relaxed),
        1
    );
    assert_eq!(
        rig.log
            .iter()
            .filter(|e| matches!(e, SmsEvent::Inbound { .. }))
            .count(),
        3,
        "an incomplete text waits for its parts"
    );
    assert_eq!(rig.gw().stats().concat_parts.load(Ordering::Relaxed), 12);
    rig.stop().await;
    let ev = rig
        .event("the incomplete text on stop", LONG, |e| {
            matches!(e, SmsEvent::Inbound { .. })
        })
        .await;
    // Parts 1 and 3 of "3 ok " / "but s" / "low": what came, in order.
    assert_eq!(
        ev,
        SmsEvent::Inbound {
            from: "8613800138000".into(),
            to: "10690000".into(),
            text: "3 ok low".into(),
        }
    );
}
