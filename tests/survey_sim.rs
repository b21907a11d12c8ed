//! Surveys at hang-up on virtual time (issue 8): callers and agent phones speak raw SIP to
//! the sans-IO engine with the shipped config and survey policy; the clock jumps to the next
//! deadline. We check the records that follow each call's `CallEnded`.

use bytes::Bytes;
use ccswitch::engine::survey::{number_hash, SurveyPolicy};
use ccswitch::engine::txn::TxnConfig;
use ccswitch::engine::{
    Command, Engine, EngineConfig, Input, MediaCommand, MediaEvent, Millis, Output, Peer, Record,
    SurveySetup, Transport,
};
use ccswitch::proto::digest::{self, Algorithm, QopAuth};
use chrono::TimeZone;
use chrono_tz::Asia::Shanghai;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

const CALLER: &str = "127.0.0.1:5070";
const ALICE: (&str, &str) = ("1001", "127.0.0.1:5081");
const BOB: (&str, &str) = ("1002", "127.0.0.1:5082");
const CHEN: (&str, &str) = ("1003", "127.0.0.1:5083");
const KEY: &[u8] = b"survey sim number-hash key";
const MOBILE: &str = "+8613812345678";
const MINUTE: u64 = 60_000;
const HOUR: u64 = 3_600_000;

/// Shanghai wall time on 2026-09-`day` (the 22nd is a Tuesday).
fn sh(day: u32, h: u32, m: u32) -> Millis {
    let t = Shanghai
        .with_ymd_and_hms(2026, 9, day, h, m, 0)
        .single()
        .expect("a valid local time");
    Millis(u64::try_from(t.timestamp_millis()).unwrap())
}

fn local(t: Millis) -> String {
    let utc = chrono::Utc
        .timestamp_millis_opt(i64::try_from(t.as_u64()).unwrap())
        .unwrap();
    utc.with_timezone(&Shanghai)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn shipped() -> ccswitch::config::Config {
    ccswitch::config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
        .expect("shipped config loads")
}

fn shipped_policy() -> Arc<SurveyPolicy> {
    shipped()
        .survey
        .expect("the shipped config enables surveys")
}

fn engine_config(surveys: SurveySetup) -> EngineConfig {
    let cfg = shipped();
    EngineConfig {
        sent_by: "127.0.0.1:5060".to_string(),
        media_ip: "127.0.0.1".parse().unwrap(),
        ring_cycle_ms: 6000,
        answer_after_rings: 1,
        max_calls: 100,
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
        seed: 11,
        agents: cfg.agents.clone(),
        queues: cfg.queues.clone(),
        registrar_secret: [9; 32],
        recordings_dir: std::env::temp_dir(),
        limits: {
            let mut limits = cfg.limits.to_limits_config();
            limits.trusted.push("127.0.0.1".parse().unwrap());
            limits
        },
        surveys,
    }
}

fn surveys_on(policy: Arc<SurveyPolicy>) -> SurveySetup {
    SurveySetup {
        policy: Some(policy),
        number_hash_key: KEY.to_vec(),
        ledger: Default::default(),
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

fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
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

/// One caller's call in progress.
struct Placed {
    sip_id: String,
    from: String,
    tag: String,
    leg: u64,
    /// The engine's call id.
    id: String,
}

struct Net {
    engine: Engine,
    now: Millis,
    sent: Vec<(SocketAddr, String)>,
    records: Vec<Record>,
    media: Vec<MediaCommand>,
    branch: u32,
}

impl Net {
    fn new(surveys: SurveySetup, start: Millis) -> Net {
        Net {
            engine: Engine::new(engine_config(surveys)),
            now: start,
            sent: vec![],
            records: vec![],
            media: vec![],
            branch: 0,
        }
    }

    fn input(&mut self, input: Input) {
        self.engine.handle_input(self.now, input);
        while let Some(o) = self.engine.poll_output() {
            match o {
                Output::Transmit { peer, bytes } => self
                    .sent
                    .push((peer.addr, String::from_utf8_lossy(&bytes).to_string())),
                Output::Persist(r) => self.records.push(r),
                Output::Media(m) => self.media.push(m),
                Output::Drained => {}
                Output::Live(_) | Output::MonitorAnswer { .. } => {}
            }
        }
    }

    fn send(&mut self, from: &str, text: &str) {
        let peer = Peer {
            transport: Transport::Udp,
            addr: from.parse().unwrap(),
        };
        self.input(Input::Sip {
            peer,
            bytes: Bytes::from(crlf(text)),
        });
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

    fn advance_to(&mut self, at: Millis) {
        assert!(
            at >= self.now,
            "{} is past ({})",
            local(at),
            local(self.now)
        );
        self.advance(at.since(self.now));
    }

    fn next_branch(&mut self) -> String {
        self.branch += 1;
        format!("z9hG4bKs{}", self.branch)
    }

    fn to(&self, dest: &str) -> Vec<String> {
        let d: SocketAddr = dest.parse().unwrap();
        self.sent
            .iter()
            .filter(|(a, _)| *a == d)
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn register(&mut self, (ext, at): (&str, &str)) {
        let b = self.next_branch();
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
Expires: 3600
"
        );
        self.send(at, &format!("{base}Content-Length: 0\n\n"));
        let challenge = self.to(at).last().cloned().expect("a challenge");
        assert_eq!(status_of(&challenge), Some(401), "{challenge}");
        let auth = authorization(&challenge, ext, &format!("demo{ext}"));
        let b2 = self.next_branch();
        let second = base
            .replace(
                &format!("CSeq: {n1} REGISTER"),
                &format!("CSeq: {} REGISTER", n1 + 1),
            )
            .replace(&format!("branch={b}"), &format!("branch={b2}"));
        self.send(
            at,
            &format!("{second}Authorization: {auth}\nContent-Length: 0\n\n"),
        );
        let last = self.to(at).last().cloned().unwrap_or_default();
        assert_eq!(status_of(&last), Some(200), "{last}");
    }

    /// A call from `from` (SIP From user part) to `dialled`: INVITE, answer, ACK.
    fn place(&mut self, sip_id: &str, from: &str, dialled: &str) -> Placed {
        let media_before = self.media.len();
        let branch = self.next_branch();
        let body = crlf(SDP_OFFER);
        let invite = format!(
            "INVITE sip:{dialled}@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {CALLER};branch={branch};rport
Max-Forwards: 70
From: <sip:{from}@127.0.0.1>;tag=t-{sip_id}
To: <sip:{dialled}@127.0.0.1>
Call-ID: {sip_id}
CSeq: 1 INVITE
Contact: <sip:caller@{CALLER}>
Content-Type: application/sdp
Content-Length: {}

",
            body.len()
        );
        self.send(CALLER, &(crlf(&invite) + &body));
        self.advance(6000);
        let ok = self
            .to(CALLER)
            .into_iter()
            .rev()
            .find(|m| status_of(m) == Some(200) && header(m, "Call-ID") == Some(sip_id))
            .unwrap_or_else(|| {
                panic!(
                    "the call is answered: {:#?}",
                    &self.to(CALLER)[self.to(CALLER).len().saturating_sub(3)..]
                )
            });
        let tag = header(&ok, "To")
            .and_then(|t| t.split(";tag=").nth(1))
            .unwrap()
            .to_string();
        let id = self
            .records
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::CallStarted {
                    call_id,
                    sip_call_id,
                    ..
                } if sip_call_id == sip_id => Some(call_id.clone()),
                _ => None,
            })
            .expect("CallStarted");
        let leg = self.media[media_before..]
            .iter()
            .find_map(|m| match m {
                MediaCommand::Open { leg, .. } => Some(*leg),
                _ => None,
            })
            .expect("the caller's media leg");
        let p = Placed {
            sip_id: sip_id.to_string(),
            from: from.to_string(),
            tag,
            leg,
            id,
        };
        self.in_dialog(&p, "ACK", 1);
        p
    }

    fn in_dialog(&mut self, p: &Placed, method: &str, cseq: u32) {
        let branch = self.next_branch();
        let m = format!(
            "{method} sip:8000@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP {CALLER};branch={branch};rport
Max-Forwards: 70
From: <sip:{from}@127.0.0.1>;tag=t-{sip_id}
To: <sip:8000@127.0.0.1>;tag={tag}
Call-ID: {sip_id}
CSeq: {cseq} {method}
Content-Length: 0

",
            from = p.from,
            sip_id = p.sip_id,
            tag = p.tag,
        );
        self.send(CALLER, &m);
    }

    fn hang_up(&mut self, p: &Placed) {
        self.in_dialog(p, "BYE", 2);
        assert!(self.ended(p), "the caller's BYE ends the call");
    }

    fn ended(&self, p: &Placed) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r, Record::CallEnded { call_id, .. } if *call_id == p.id))
    }

    fn queued(&self, p: &Placed) -> bool {
        self.records
            .iter()
            .any(|r| matches!(r, Record::CallQueued { call_id, .. } if *call_id == p.id))
    }

    /// The latest prompt on the caller's leg.
    fn last_play(&self, p: &Placed) -> Option<(u64, Vec<String>)> {
        self.media.iter().rev().find_map(|m| match m {
            MediaCommand::Play {
                leg,
                play_id,
                prompts,
                ..
            } if *leg == p.leg => Some((*play_id, prompts.iter().map(|k| k.id.clone()).collect())),
            _ => None,
        })
    }

    /// Walks the IVR: `lang` at the language menu (None: no choice, the menu times out),
    /// `choice` at the main menu; every other prompt plays to the end. Stops when the call
    /// is queued or over.
    fn walk_ivr(&mut self, p: &Placed, lang: Option<char>, choice: char) {
        let mut pressed_lang = false;
        let mut pressed_choice = false;
        for _ in 0..60 {
            if self.queued(p) || self.ended(p) {
                return;
            }
            let (play_id, prompts) = self.last_play(p).expect("a prompt");
            let digit = if prompts.iter().any(|k| k == "language_menu") && !pressed_lang {
                pressed_lang = true;
                lang
            } else if prompts.iter().any(|k| k == "main_menu") && !pressed_choice {
                pressed_choice = true;
                Some(choice)
            } else {
                None
            };
            match digit {
                Some(d) => {
                    let (leg, at) = (p.leg, self.now);
                    self.input(Input::Media(MediaEvent::Digit { leg, digit: d, at }));
                }
                None => {
                    self.advance(2000);
                    let leg = p.leg;
                    self.input(Input::Media(MediaEvent::PlayFinished {
                        leg,
                        play_id,
                        interrupted: false,
                    }));
                }
            }
        }
        panic!("the IVR walk went nowhere: {:#?}", self.records);
    }

    /// The agent phone at `at` answers its latest INVITE with 200 and SDP.
    fn agent_answers(&mut self, p: &Placed, (ext, at): (&str, &str)) {
        // The offer may wait for the agent's wrap-up to end.
        for _ in 0..120 {
            if self.records.iter().any(|r| {
                matches!(r,
                Record::OfferStarted { agent, call_id, .. } if agent == ext && *call_id == p.id)
            }) {
                break;
            }
            self.advance(1000);
        }
        let invite = self
            .to(at)
            .into_iter()
            .rev()
            .find(|m| m.starts_with("INVITE "))
            .unwrap_or_else(|| panic!("no INVITE reached {ext}"));
        let mut m = "SIP/2.0 200 OK\n".to_string();
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            m.push_str(&format!("{name}: {}\n", header(&invite, name).unwrap()));
        }
        m.push_str(&format!(
            "To: {};tag=agent{ext}\n",
            header(&invite, "To").unwrap()
        ));
        m.push_str(&format!("Contact: <sip:{ext}@{at}>\n"));
        let body = crlf(
            "v=0\no=agent 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 42000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=sendrecv\n",
        );
        m.push_str(&format!(
            "Content-Type: application/sdp\nContent-Length: {}\n\n",
            body.len()
        ));
        self.send(at, &(crlf(&m) + &body));
        assert!(
            self.records.iter().any(|r| matches!(r,
                Record::AgentAnswered { agent, call_id, .. } if agent == ext && *call_id == p.id)),
            "{ext} answered {}",
            p.id
        );
    }

    /// A caller picks `lang` and `choice`, `agent` answers, they talk `talk_ms`, the caller
    /// hangs up; then the agent's wrap-up runs out. Returns the call.
    fn agent_call(
        &mut self,
        sip_id: &str,
        from: &str,
        lang: Option<char>,
        choice: char,
        agent: (&str, &str),
        talk_ms: u64,
    ) -> Placed {
        // Registrations last an hour: refresh it (a logged-in agent stays as they are).
        self.register(agent);
        let p = self.place(sip_id, from, "8000");
        self.walk_ivr(&p, lang, choice);
        assert!(self.queued(&p), "queued");
        self.agent_answers(&p, agent);
        self.advance(talk_ms);
        self.hang_up(&p);
        p
    }

    /// The records that follow the call's `CallEnded`, as long as they are its survey
    /// records; checks nothing of the call comes after them.
    fn survey_records(&self, p: &Placed) -> Vec<Record> {
        let end = self
            .records
            .iter()
            .position(|r| matches!(r, Record::CallEnded { call_id, .. } if *call_id == p.id))
            .expect("CallEnded");
        let group: Vec<Record> = self.records[end + 1..]
            .iter()
            .take_while(|r| {
                matches!(
                    r,
                    Record::SurveyScheduled { .. }
                        | Record::SurveySkipped { .. }
                        | Record::FollowUpOpened { .. }
                ) && r.call_id() == Some(p.id.as_str())
            })
            .cloned()
            .collect();
        let later = self.records[end + 1 + group.len()..].iter().any(|r| {
            r.call_id() == Some(p.id.as_str())
                && matches!(
                    r,
                    Record::SurveyScheduled { .. }
                        | Record::SurveySkipped { .. }
                        | Record::FollowUpOpened { .. }
                )
        });
        assert!(!later, "survey records of {} apart from its end", p.id);
        group
    }

    /// The call's one survey decision: Ok(scheduled) or Err(skip reason).
    fn decision(&self, p: &Placed) -> Result<Record, String> {
        let group = self.survey_records(p);
        let last = group.last().cloned().expect("a survey decision");
        let decisions = group
            .iter()
            .filter(|r| !matches!(r, Record::FollowUpOpened { .. }))
            .count();
        assert_eq!(decisions, 1, "one decision per call: {group:#?}");
        match last {
            Record::SurveySkipped {
                reason, survey_id, ..
            } => {
                assert!(survey_id > 0 && survey_id < 1 << 63);
                Err(reason)
            }
            r @ Record::SurveyScheduled { .. } => Ok(r),
            other => panic!("the decision comes last: {other:?}"),
        }
    }

    fn skip_reason(&self, p: &Placed) -> String {
        match self.decision(p) {
            Err(reason) => reason,
            Ok(r) => panic!("expected a skip, got {r:#?}"),
        }
    }
}

fn authorization(resp: &str, user: &str, pw: &str) -> String {
    let chal = resp
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case("WWW-Authenticate"))
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
    let uri = "sip:127.0.0.1:5060";
    let ha1 = digest::ha1(Algorithm::Md5, user, &realm, pw);
    let qop = QopAuth {
        nc: "00000001",
        cnonce: "0a4f113b",
    };
    let r = digest::response(Algorithm::Md5, &ha1, "REGISTER", uri, &nonce, Some(qop));
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\""
    )
}

struct Scheduled {
    survey_id: u64,
    number: String,
    number_hash: String,
    language: String,
    text: String,
    send_at: Millis,
    deferred: bool,
    reply_by: Millis,
    agent: Option<String>,
    queue: Option<String>,
    complaint: bool,
}

fn scheduled(r: Result<Record, String>) -> Scheduled {
    match r {
        Ok(Record::SurveyScheduled {
            survey_id,
            number,
            number_hash,
            language,
            text,
            send_at,
            deferred,
            reply_by,
            agent,
            queue,
            complaint,
            ..
        }) => Scheduled {
            survey_id,
            number,
            number_hash,
            language,
            text,
            send_at,
            deferred,
            reply_by,
            agent,
            queue,
            complaint,
        },
        other => panic!("expected a scheduled survey, got {other:?}"),
    }
}

#[test]
fn an_agent_handled_call_gets_its_survey_in_the_chosen_language_a_minute_after_hang_up() {
    let mut net = Net::new(surveys_on(shipped_policy()), sh(22, 10, 0));
    net.register(ALICE);
    // Chinese chosen in the IVR (digit 2), technical support (6), Alice answers.
    let p = net.agent_call("s1", "13812345678", Some('2'), '6', ALICE, 2 * MINUTE);
    let hung_up = net.now;
    let s = scheduled(net.decision(&p));
    assert!(s.survey_id > 0 && s.survey_id < 1 << 63);
    assert_eq!(s.number, MOBILE);
    assert_eq!(s.number_hash, number_hash(KEY, MOBILE));
    assert_eq!(s.language, "zh");
    assert_eq!(
        s.text,
        "感谢致电Example Co，请为本次服务打分：回复1-5（5为非常满意），回复TD退订。"
    );
    assert_eq!(s.send_at, hung_up.plus(MINUTE), "{}", local(s.send_at));
    assert!(!s.deferred);
    assert_eq!(s.reply_by, s.send_at.plus(48 * HOUR));
    assert_eq!(s.agent.as_deref(), Some("1001"));
    assert_eq!(s.queue.as_deref(), Some("tech"));
    assert!(!s.complaint);
    assert_eq!(net.survey_records(&p).len(), 1, "no follow-up for tech");

    // English, from the same caller a week later: the English text names the agent.
    net.advance_to(sh(29, 11, 0));
    let p = net.agent_call("s2", "+8613812345678", Some('1'), '6', ALICE, MINUTE);
    let s = scheduled(net.decision(&p));
    assert_eq!(s.language, "en");
    assert_eq!(
        s.text,
        "Thank you for calling Example Co. How satisfied were you with agent 1001 today? \
         Reply 1-5 (5 = very satisfied). Reply TD to opt out."
    );
    assert_eq!(net.engine.stats().surveys_scheduled, 2);
}

#[test]
fn no_language_chosen_gets_the_default_language() {
    let mut net = Net::new(surveys_on(shipped_policy()), sh(22, 10, 0));
    net.register(ALICE);
    // The tech hotline goes straight to the queue: no language menu at all.
    let p = net.place("s1", "13812345678", "4008006");
    net.walk_ivr(&p, None, '6');
    net.agent_answers(&p, ALICE);
    net.advance(MINUTE);
    net.hang_up(&p);
    assert_eq!(scheduled(net.decision(&p)).language, "en");
    // Language menu timed out (no digit): still no choice, still the default.
    net.advance(10 * MINUTE);
    let p = net.place("s2", "13900001111", "8000");
    net.walk_ivr(&p, None, '6');
    net.agent_answers(&p, ALICE);
    net.advance(MINUTE);
    net.hang_up(&p);
    assert_eq!(scheduled(net.decision(&p)).language, "en");
}

#[test]
fn a_call_ending_at_half_past_ten_at_night_is_held_until_eight() {
    let mut net = Net::new(surveys_on(shipped_policy()), sh(22, 22, 20));
    net.register(ALICE);
    let p = net.place("s1", "13812345678", "8000");
    net.walk_ivr(&p, Some('1'), '6');
    net.agent_answers(&p, ALICE);
    net.advance_to(sh(22, 22, 30));
    net.hang_up(&p);
    let s = scheduled(net.decision(&p));
    assert!(s.deferred);
    assert_eq!(s.send_at, sh(23, 8, 0), "{}", local(s.send_at));
    assert_eq!(
        s.reply_by,
        sh(25, 8, 0),
        "the full window from the send time"
    );
}

#[test]
fn a_second_call_within_the_cap_is_skipped_and_the_cap_survives_a_restart() {
    let mut net = Net::new(surveys_on(shipped_policy()), sh(22, 10, 0));
    net.register(ALICE);
    let p = net.agent_call("s1", "13812345678", Some('1'), '6', ALICE, MINUTE);
    let first = scheduled(net.decision(&p));
    net.advance(HOUR);
    let p = net.agent_call("s2", "008613812345678", Some('1'), '6', ALICE, MINUTE);
    assert_eq!(net.skip_reason(&p), "frequency_cap");
    // Another number is not capped.
    let p = net.agent_call("s3", "13900001111", Some('1'), '6', ALICE, MINUTE);
    scheduled(net.decision(&p));

    // A restarted switch fills its ledger from the store: hashes only.
    let setup = SurveySetup {
        ledger: ccswitch::engine::survey::LedgerFacts {
            last_sent: vec![(first.number_hash.clone(), first.send_at)],
            opted_out: vec![],
        },
        ..surveys_on(shipped_policy())
    };
    let mut net = Net::new(setup, sh(25, 10, 0));
    net.register(ALICE);
    let p = net.agent_call("s4", "13812345678", Some('1'), '6', ALICE, MINUTE);
    assert_eq!(net.skip_reason(&p), "frequency_cap");
    // Seven days after the first send: surveyed again.
    net.advance_to(first.send_at.plus(7 * 24 * HOUR));
    let p = net.agent_call("s5", "13812345678", Some('1'), '6', ALICE, MINUTE);
    scheduled(net.decision(&p));
}

#[test]
fn an_opted_out_number_is_skipped() {
    let mut net = Net::new(surveys_on(shipped_policy()), sh(22, 10, 0));
    net.register(ALICE);
    // Malformed hashes are refused and counted, never applied.
    for bad in ["", "xyz", &"g".repeat(64), MOBILE] {
        net.input(Input::Command(Command::SurveyOptOut {
            number_hash: bad.to_string(),
        }));
    }
    assert_eq!(net.engine.stats().survey_opt_outs_refused, 4);
    net.input(Input::Command(Command::SurveyOptOut {
        number_hash: number_hash(KEY, MOBILE).to_uppercase(),
    }));
    let p = net.agent_call("s1", "13812345678", Some('1'), '6', ALICE, MINUTE);
    assert_eq!(net.skip_reason(&p), "opted_out");
    // Opt-outs from the store at startup count the same.
    let setup = SurveySetup {
        ledger: ccswitch::engine::survey::LedgerFacts {
            last_sent: vec![],
            opted_out: vec![number_hash(KEY, "+8613900001111")],
        },
        ..surveys_on(shipped_policy())
    };
    let mut net = Net::new(setup, sh(22, 10, 0));
    net.register(ALICE);
    let p = net.agent_call("s2", "13900001111", Some('1'), '6', ALICE, MINUTE);
    assert_eq!(net.skip_reason(&p), "opted_out");
}

#[test]
fn anonymous_internal_and_landline_callers_are_skipped_with_their_reason() {
    let mut net = Net::new(surveys_on(shipped_policy()), sh(22, 10, 0));
    net.register(ALICE);
    for (n, (from, reason)) in [
        ("anonymous", "anonymous"),
        ("1002", "internal"),
        ("555", "internal"),
        ("01088880000", "not_mobile"),
    ]
    .into_iter()
    .enumerate()
    {
        let p = net.agent_call(&format!("a{n}"), from, Some('1'), '6', ALICE, MINUTE);
        assert_eq!(net.skip_reason(&p), reason, "{from}");
        // The skip keeps who handled the call.
        match net.survey_records(&p).last() {
            Some(Record::SurveySkipped { agent, queue, .. }) => {
                assert_eq!(agent.as_deref(), Some("1001"));
                assert_eq!(queue.as_deref(), Some("tech"));
            }
            other => panic!("{other:?}"),
        }
        net.advance(MINUTE);
    }
    assert_eq!(net.engine.stats().surveys_skipped, 4);
}

#[test]
fn a_short_call_is_skipped_short_talk() {
    let mut net = Net::new(surveys_on(shipped_policy()), sh(22, 10, 0));
    net.register(ALICE);
    let p = net.agent_call("s1", "13812345678", Some('1'), '6', ALICE, 5_000);
    assert_eq!(net.skip_reason(&p), "short_talk");
}

#[test]
fn abandoned_and_refused_calls_are_not_served() {
    let mut net = Net::new(surveys_on(shipped_policy()), sh(22, 10, 0));
    net.register(ALICE);
    // Hangs up while Alice's phone rings.
    let p = net.place("s1", "13812345678", "8000");
    net.walk_ivr(&p, Some('1'), '6');
    net.advance(4000);
    net.hang_up(&p);
    assert_eq!(net.skip_reason(&p), "not_served");
    // Hangs up in the IVR.
    net.advance(MINUTE);
    let p = net.place("s2", "13900001111", "8000");
    net.advance(1000);
    net.hang_up(&p);
    assert_eq!(net.skip_reason(&p), "not_served");

    // A call refused at once (switch full) gets its decision too.
    let mut cfg = engine_config(surveys_on(shipped_policy()));
    cfg.max_calls = 0;
    let mut net = Net::new(SurveySetup::default(), sh(22, 10, 0));
    net.engine = Engine::new(cfg);
    let branch = "z9hG4bKfull";
    let body = crlf(SDP_OFFER);
    let invite = format!(
        "INVITE sip:8000@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP {CALLER};branch={branch};rport\nMax-Forwards: 70\nFrom: <sip:13812345678@127.0.0.1>;tag=full\nTo: <sip:8000@127.0.0.1>\nCall-ID: full\nCSeq: 1 INVITE\nContact: <sip:caller@{CALLER}>\nContent-Type: application/sdp\nContent-Length: {}\n\n",
        body.len()
    );
    net.send(CALLER, &(crlf(&invite) + &body));
    let kinds: Vec<&str> = net.records.iter().map(Record::kind).collect();
    assert_eq!(
        kinds,
        ["call_started", "call_ended", "survey_skipped"],
        "{:#?}",
        net.records
    );
    assert!(
        matches!(&net.records[2], Record::SurveySkipped { reason, .. } if reason == "not_served")
    );
}

#[test]
fn a_complaint_queue_call_opens_a_follow_up_due_in_24_hours() {
    let mut net = Net::new(surveys_on(shipped_policy()), sh(22, 10, 0));
    net.register(CHEN);
    // Complaints (8) in Chinese: Chen answers.
    let p = net.agent_call("s1", "13812345678", Some('2'), '8', CHEN, 3 * MINUTE);
    let hung_up = net.now;
    let group = net.survey_records(&p);
    assert_eq!(group.len(), 2, "{group:#?}");
    match &group[0] {
        Record::FollowUpOpened {
            agent,
            queue,
            reason,
            due_at,
            at,
            ..
        } => {
            assert_eq!(agent.as_deref(), Some("1003"));
            assert_eq!(queue.as_deref(), Some("complaints"));
            assert_eq!(reason, "complaint_queue");
            assert_eq!(*at, hung_up);
            assert_eq!(*due_at, hung_up.plus(24 * HOUR));
        }
        other => panic!("the follow-up comes first: {other:?}"),
    }
    let s = scheduled(net.decision(&p));
    assert!(s.complaint);
    assert_eq!(s.queue.as_deref(), Some("complaints"));
    assert_eq!(net.engine.stats().follow_ups_opened, 1);

    // A skipped survey (short talk) still opens the task: the complaint stands.
    net.advance(HOUR);
    let p = net.agent_call("s2", "13900001111", Some('2'), '8', CHEN, 5_000);
    let group = net.survey_records(&p);
    assert!(
        matches!(&group[0], Record::FollowUpOpened { .. }),
        "{group:#?}"
    );
    assert_eq!(net.skip_reason(&p), "short_talk");
}

#[test]
fn a_self_served_call_is_surveyed_only_when_configured() {
    let mut policy = (*shipped_policy()).clone();
    // Off (shipped): skipped not_surveyed.
    let mut net = Net::new(surveys_on(Arc::new(policy.clone())), sh(22, 10, 0));
    let p = net.place("s1", "13812345678", "8000");
    net.walk_ivr(&p, Some('1'), '1');
    assert!(net.ended(&p), "the menu ends the call itself");
    assert_eq!(net.skip_reason(&p), "not_surveyed");
    // On: the self-service question.
    policy.self_served = true;
    let mut net = Net::new(surveys_on(Arc::new(policy)), sh(22, 10, 0));
    let p = net.place("s1", "13812345678", "8000");
    net.walk_ivr(&p, Some('1'), '1');
    let s = scheduled(net.decision(&p));
    assert!(
        s.text.contains("Did our phone menu solve your problem?"),
        "{}",
        s.text
    );
    assert_eq!(s.agent, None);
    assert_eq!(s.queue, None);
}

#[test]
fn after_a_blind_transfer_the_survey_names_the_agent_who_took_the_call() {
    let mut net = Net::new(surveys_on(shipped_policy()), sh(22, 10, 0));
    net.register(ALICE);
    net.register(BOB);
    let p = net.place("s1", "13812345678", "8000");
    net.walk_ivr(&p, Some('1'), '6');
    net.agent_answers(&p, ALICE);
    net.advance(MINUTE);
    // Alice transfers to the complaints queue; Bob (complaints 4) takes it.
    let invite = net
        .to(ALICE.1)
        .into_iter()
        .rev()
        .find(|m| m.starts_with("INVITE "))
        .unwrap();
    let branch = net.next_branch();
    let refer = format!(
        "REFER {contact} SIP/2.0
Via: SIP/2.0/UDP {at};branch={branch};rport
Max-Forwards: 70
From: {to};tag=agent1001
To: {from}
Call-ID: {cid}
CSeq: 2 REFER
Refer-To: <sip:complaints@127.0.0.1>
Contact: <sip:1001@{at}>
Content-Length: 0

",
        contact = header(&invite, "Contact")
            .unwrap()
            .trim_start_matches('<')
            .trim_end_matches('>'),
        at = ALICE.1,
        to = header(&invite, "To").unwrap(),
        from = header(&invite, "From").unwrap(),
        cid = header(&invite, "Call-ID").unwrap(),
    );
    net.send(ALICE.1, &refer);
    assert!(
        net.records
            .iter()
            .any(|r| matches!(r, Record::CallTransferred { .. })),
        "transferred: {:?}",
        net.to(ALICE.1).last()
    );
    net.agent_answers(&p, BOB);
    net.advance(2 * MINUTE);
    net.hang_up(&p);
    let visited: Vec<String> = net
        .records
        .iter()
        .filter_map(|r| match r {
            Record::CallQueued { queue, .. } => Some(queue.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(visited, ["tech", "complaints"]);
    let group = net.survey_records(&p);
    assert!(
        matches!(&group[0], Record::FollowUpOpened { agent, .. } if agent.as_deref() == Some("1002")),
        "{group:#?}"
    );
    let s = scheduled(net.decision(&p));
    assert_eq!(s.agent.as_deref(), Some("1002"));
    assert_eq!(s.queue.as_deref(), Some("complaints"));
    assert!(s.text.contains("agent 1002"), "{}", s.text);
}

#[test]
fn no_policy_no_survey_records() {
    let mut net = Net::new(SurveySetup::default(), sh(22, 10, 0));
    net.register(ALICE);
    net.register(CHEN);
    let a = net.agent_call("s1", "13812345678", Some('1'), '6', ALICE, MINUTE);
    let b = net.agent_call("s2", "13900001111", Some('2'), '8', CHEN, MINUTE);
    let c = net.place("s3", "anonymous", "8000");
    net.hang_up(&c);
    for p in [&a, &b, &c] {
        assert!(net.ended(p));
        assert!(net.survey_records(p).is_empty());
    }
    assert!(!net.records.iter().any(|r| matches!(
        r,
        Record::SurveyScheduled { .. }
            | Record::SurveySkipped { .. }
            | Record::FollowUpOpened { .. }
    )));
    let s = net.engine.stats();
    assert_eq!(
        (s.surveys_scheduled, s.surveys_skipped, s.follow_ups_opened),
        (0, 0, 0)
    );
}
