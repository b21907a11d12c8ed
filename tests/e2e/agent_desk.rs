//! The agent desk (`/agent`) in real headless Chromium (tests/web/driver.mjs, playwright-core)
//! with a fake microphone (`--use-fake-ui-for-media-stream --use-fake-device-for-media-stream`)
//! against the real switch: the agent signs in with extension + SIP password, the page's
//! JsSIP phone registers over SIP-over-WebSocket (/sip), the live feed shows the agent ready.
//! The same agent also has a pjsua2 desk phone. A pjsua2 caller (whose earlier call two days
//! ago is in the database, resolved and scored 4) reaches the tech queue: both phones ring;
//! the page rings with the three-ring countdown (ring 1, then ring 2) and a generated ring
//! tone, and pops the screen (masked number, language, IVR path, queue, wait, the earlier
//! contact with its outcome, disposition and survey score). The desk phone answers first
//! and takes the call; the page follows (on a call on the other device). The caller hangs up:
//! the page shows wrap-up; the agent picks a disposition and types a note, and it lands on
//! the call. The language toggle switches to Chinese. Break (lunch) from the page changes the
//! agent's state in the switch. Screenshots go to target/wallboard-screenshots/.
//!
//! The second test answers in the browser (the switch's WebRTC media) and checks audio both
//! ways, mute, hold (the caller hears hold audio, the hold is on the call row) and resume,
//! and a blind transfer from the page. The third lets the page ring unanswered: the next
//! agent's desk phone takes the call and the page's agent is not ready (missed_call). The
//! fourth closes the tab mid-call: the caller goes on to the next agent and the page's
//! agent is not ready (connection_lost).
//!
//! Needs `npm ci` in tests/web, /usr/bin/chromium (or CHROMIUM_PATH) and pjsua2;
//! CCSWITCH_E2E_SKIP_BROWSER=1 skips it.

use super::browser::Browser;
use super::sipws::ws_config;
use super::wallboard::{api_sign_in, http_call, snapshot_agent};
use super::*;
use ccswitch::engine::record::{EndedBy, IvrOutcome};
use ccswitch::engine::{Millis, Record};

const SLOT: u16 = 30;
/// Alice serves the tech queue (config/agents.toml), password demo1001.
const AGENT: &str = "1001";
/// The caller's number (From user part); stored as the caller.
const CALLER: &str = "+8613912340042";
const EARLIER: &str = "c-earlier";
const DAY: u64 = 86_400_000;

/// An answered call of CALLER two days ago in the tech queue: resolved by 1002, survey 4.
fn seed_earlier_call(db_url: &str) {
    with_store(db_url, async |store| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64;
        let t = now - 2 * DAY;
        let c = || EARLIER.to_string();
        let records = vec![
            Record::CallStarted {
                call_id: c(),
                sip_call_id: "earlier@10.0.0.9".into(),
                caller: CALLER.into(),
                dialled: "100".into(),
                transport: "udp".into(),
                arrived_at: Millis(t),
                ring_cycle_ms: 6_000,
            },
            Record::IvrLeft {
                call_id: c(),
                at: Millis(t + 5_000),
                outcome: IvrOutcome::Queued,
            },
            Record::CallQueued {
                call_id: c(),
                at: Millis(t + 5_000),
                queue: "tech".into(),
                priority: 0,
            },
            Record::OfferStarted {
                call_id: c(),
                attempt: 1,
                agent: "1002".into(),
                at: Millis(t + 6_000),
            },
            Record::AgentAnswered {
                call_id: c(),
                agent: "1002".into(),
                at: Millis(t + 9_000),
            },
            Record::CallEnded {
                call_id: c(),
                ended_at: Millis(t + 120_000),
                ended_by: EndedBy::Caller,
                reason: "bye".into(),
                final_status: 200,
            },
            Record::DispositionSet {
                call_id: c(),
                agent: "1002".into(),
                at: Millis(t + 130_000),
                code: 1,
                name: "resolved".into(),
                resolved: true,
                queue: Some("tech".into()),
                note: Some("router reset".into()),
            },
            Record::SurveyScheduled {
                call_id: c(),
                survey_id: 9,
                at: Millis(t + 120_000),
                number: CALLER.into(),
                number_hash: "ef".repeat(32),
                language: "en".into(),
                text: "rate us".into(),
                send_at: Millis(t + 180_000),
                deferred: false,
                reply_by: Millis(t + DAY),
                agent: Some("1002".into()),
                queue: Some("tech".into()),
                complaint: false,
            },
        ];
        store
            .write_batch(&records)
            .await
            .expect("seed the earlier call");
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(db_url)
            .await
            .expect("sqlite");
        sqlx::query("UPDATE surveys SET state = 'answered', csat = 4 WHERE call_id = $1")
            .bind(EARLIER)
            .execute(&mut conn)
            .await
            .expect("score the earlier survey");
    });
}

/// The desk tests' RTP slots; each gets its own WebRTC port range (`desk_config`).
/// The monitor module's browser-phone test (`monitor::BROWSER_SLOT`) uses one too.
const DESK_SLOTS: [u16; 5] = [SLOT, SLOT + 1, 28, 29, 13];

/// The desk test's config: SIP over WebSocket on, and the WebRTC peers' ports in a range of
/// their own for `slot` (above every RTP slot's range and the ephemeral ports, by pid like
/// `rtp_range`: 16 buckets of 160 ports, 61000..=63559 in all, 32 per slot).
pub(super) fn desk_config(slot: u16) -> TestConfig {
    let idx = DESK_SLOTS
        .iter()
        .position(|&s| s == slot)
        .unwrap_or_else(|| panic!("slot {slot} is not a desk test slot"));
    let cfg = ws_config("[]");
    let main = cfg.main_file();
    let mut text = std::fs::read_to_string(&main).expect("read ccswitch.toml");
    if !text.contains("[webrtc]") {
        let lo = 61000 + (std::process::id() % 16) as u16 * 160 + idx as u16 * 32;
        text.push_str(&format!(
            "\n[webrtc]\nhost_ip = \"127.0.0.1\"\nport_min = {lo}\nport_max = {}\n",
            lo + 31
        ));
        std::fs::write(&main, text).expect("write ccswitch.toml");
    }
    cfg
}

#[test]
fn agent_desk_in_chromium_rings_pops_the_screen_wraps_up_and_takes_a_break() {
    let Some(py) = pjsua_python() else { return };
    let Some(mut browser) = Browser::start_with_args(&[
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required",
    ]) else {
        return;
    };
    let cfg = desk_config(SLOT);
    seed_earlier_call(&cfg.db_url);
    let sw = Switch::start(&cfg, SLOT);
    let base = format!("http://{}", sw.http);
    let t = timeline();

    // The real binary serves the page with its security headers.
    let (status, headers, page) = http_call(sw.http, "GET", "/agent", None, None);
    assert_eq!(status, 200, "GET /agent: {page}");
    assert!(page.contains("js/agent/main.js"), "{page}");
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-security-policy" && v.contains("default-src 'self'")));

    // 1. Sign in: the microphone is allowed, the phone registers over WebSocket, the live
    //    feed shows the agent ready (registering signs them in).
    browser.goto(&format!("{base}/agent"));
    browser.wait_for("#sign-in-form", Duration::from_secs(10));
    browser.fill("#sign-in-extension", AGENT);
    browser.fill("#sign-in-password", "wrong-password");
    browser.click("#sign-in-submit");
    browser.wait_for_text("#sign-in-error", "Sign-in failed", Duration::from_secs(10));
    browser.fill("#sign-in-password", &format!("demo{AGENT}"));
    browser.click("#sign-in-submit");
    browser.wait_for("#mic-state[data-state=\"ok\"]", Duration::from_secs(15));
    browser.wait_for(
        "#phone-state[data-state=\"registered\"]",
        Duration::from_secs(15),
    );
    browser.wait_for(
        "#agent-state[data-state=\"ready\"]",
        Duration::from_secs(15),
    );
    assert!(browser.text("#who-agent").contains("Alice"));

    // 2. The same agent's desk phone registers too; it answers 9 s into the offer.
    let desk_phone = spawn_agent(
        &py,
        &sw,
        AGENT,
        9.0,
        None,
        None,
        t.main + 120.0,
        &["--linger", "5"],
    );
    desk_phone.wait_event("registered", Duration::from_secs(15));

    // 3. The caller picks English, then technical support; they hang up HANG_UP_S after the
    //    main menu.
    const HANG_UP_S: f64 = 30.0;
    let caller = tech_caller(&py, &sw, &t, t.main + HANG_UP_S, None);

    // 4. The page rings: countdown at ring 1 with the tone on, then ring 2; the screen pops.
    browser.wait_for(
        "#call-panel[data-phase=\"ringing\"]",
        Duration::from_secs_f64(t.main + 20.0),
    );
    let countdown = browser.text("#ring-countdown");
    assert!(countdown.contains("Ring 1 of 3"), "{countdown:?}");
    browser.wait_for("#ring-countdown[data-tone=\"on\"]", Duration::from_secs(2));
    browser.wait_for_text("#pop-number", "0042", Duration::from_secs(10));
    let number = browser.text("#pop-number");
    assert!(!number.contains("13912340042"), "masked: {number:?}");
    browser.wait_for_text("#pop-language", "English", Duration::from_secs(5));
    browser.wait_for_text("#pop-queue", "Technical support", Duration::from_secs(5));
    browser.wait_for_text("#pop-ivr", "(6)", Duration::from_secs(5));
    let earlier = format!("#pop-history tr[data-call-id=\"{EARLIER}\"]");
    browser.wait_for(&earlier, Duration::from_secs(5));
    let row = browser.text(&earlier);
    assert!(row.contains("Resolved"), "{row:?}");
    assert!(row.contains("4/5"), "{row:?}");
    assert!(row.contains("answered"), "{row:?}");
    browser.wait_for("#ring-countdown[data-ring=\"2\"]", Duration::from_secs(9));
    assert!(browser.text("#ring-countdown").contains("Ring 2 of 3"));
    browser.screenshot("agent-desk-ringing-en.png");

    // 5. The desk phone answers first and takes the call: the page stops ringing and shows
    //    the call on the other device, screen pop kept.
    browser.wait_for(
        "#call-panel[data-phase=\"talking\"][data-device=\"other\"]",
        Duration::from_secs(15),
    );
    assert_eq!(
        browser.evaluate("document.getElementById('ring-countdown').dataset.tone"),
        "off"
    );
    assert!(browser.text("#pop-number").contains("0042"));

    // 6. The caller hangs up: wrap-up. The agent picks "Follow-up needed", types a note and
    //    saves; the page reads it back from the call.
    browser.wait_for(
        "#agent-state[data-state=\"wrap_up\"]",
        Duration::from_secs_f64(HANG_UP_S + 20.0),
    );
    browser.wait_for("#wrapup", Duration::from_secs(5));
    browser.evaluate("document.getElementById('dispo-select').value = 'follow_up'");
    browser.fill(
        "#dispo-note",
        "Customer will send the router's serial number",
    );
    browser.click("#btn-dispo-save");
    browser.wait_for(
        "#dispo-status[data-state=\"saved\"]",
        Duration::from_secs(10),
    );
    assert!(browser.text("#dispo-status").contains("Follow-up needed"));
    browser.screenshot("agent-desk-wrap-up-en.png");
    let summary = caller.finish();
    assert_eq!(summary["confirmed"], true, "caller: {summary}");
    let calls = cfg.calls();
    let call = calls
        .iter()
        .find(|c| c["disposition"]["name"] == "follow_up")
        .unwrap_or_else(|| panic!("no call with the page's disposition: {calls:?}"));
    assert_eq!(call["disposition"]["agent"], AGENT, "{call}");
    assert_eq!(
        call["disposition"]["note"],
        "Customer will send the router's serial number"
    );

    // 7. Chinese labels.
    browser.click("#lang-toggle");
    browser.wait_for_text("#wrap-heading", "话后处理", Duration::from_secs(5));
    browser.screenshot("agent-desk-wrap-up-zh.png");
    browser.click("#lang-toggle");
    browser.wait_for_text("#wrap-heading", "Wrap-up", Duration::from_secs(5));

    // 8. Break (lunch) from the page: the switch has the agent not ready, reason lunch.
    browser.evaluate("document.getElementById('break-reason').value = 'lunch'");
    browser.click("#btn-break");
    browser.wait_for(
        "#agent-state[data-state=\"not_ready\"]",
        Duration::from_secs(10),
    );
    let cookie = api_sign_in(sw.http);
    let seen = snapshot_agent(sw.http, &cookie, AGENT);
    assert_eq!(seen["state"], "not_ready", "the switch's view: {seen}");
    assert_eq!(seen["reason"], "lunch", "the switch's view: {seen}");
    browser.click("#btn-ready");
    browser.wait_for(
        "#agent-state[data-state=\"ready\"]",
        Duration::from_secs(10),
    );

    // No script error and no Content-Security-Policy refusal (the failed sign-in's 401 is
    // the only console error allowed).
    let errors = browser.run(serde_json::json!({"cmd": "errors"}));
    eprintln!("page console errors: {errors}");
    for e in errors.as_array().cloned().unwrap_or_default() {
        let e = e.as_str().unwrap_or("");
        assert!(
            !e.starts_with("pageerror") && !e.contains("Content Security Policy"),
            "page error: {e}"
        );
    }
    drop(desk_phone);
    drop(sw);
}

/// A 48 kHz tone WAV for Chromium's fake microphone (it loops the file).
fn mic_tone_wav(dir: &Path, hz: u32) -> PathBuf {
    let out = dir.join(format!("mic_{hz}.wav"));
    let ok = Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "1", "-b", "16"])
        .arg(&out)
        .args(["synth", "20", "sine", &hz.to_string(), "vol", "0.3"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "sox could not make the microphone tone (apt-get install -y sox)"
    );
    out
}

/// A call's hold segments from the database: (started_at, ended_at) in epoch ms.
fn hold_segments(db_url: &str, call_id: &str) -> Vec<(u64, Option<u64>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(db_url)
            .await
            .expect("sqlite");
        let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT started_at, ended_at FROM hold_segments WHERE call_id = $1 \
             ORDER BY started_at",
        )
        .bind(call_id)
        .fetch_all(&mut conn)
        .await
        .expect("read hold segments");
        rows.into_iter()
            .map(|(s, e)| (s as u64, e.map(|e| e as u64)))
            .collect()
    })
}

/// Seconds from the call record's `answered_at` (where the caller's recording starts) to
/// the epoch-ms time `at`.
fn secs_into_call(c: &serde_json::Value, at: u64) -> f64 {
    let answered = c["answered_at_ms"].as_u64().expect("answered_at_ms");
    (at as f64 - answered as f64) / 1000.0
}

/// The received level the page measures now (RMS of the last 100 ms), the highest of
/// `samples` reads 200 ms apart.
fn page_level_now(browser: &mut Browser, samples: u32) -> f64 {
    let mut best: f64 = 0.0;
    for _ in 0..samples {
        browser.evaluate("new Promise(r => setTimeout(r, 200))");
        let v = browser
            .evaluate("Number(document.getElementById('remote-level').dataset.level || 0)")
            .as_f64()
            .unwrap_or(0.0);
        best = best.max(v);
    }
    best
}

/// Answering in the browser (WebRTC media, issue 10 item 2): the page answers, the caller
/// hears the page's microphone (a 1300 Hz tone) and not its own tone, the page receives the
/// caller's tone (its level read through WebAudio); mute toggles; Hold from the page (a
/// re-INVITE the switch answers from its WebRTC session): the caller hears hold audio (loud,
/// neither tone) and the call row gets the hold segment; Resume, and audio flows both ways
/// again; the agent blind-transfers the caller to the after-sales queue from the page
/// (REFER), the wrap-up follows, and the call record names the transfer.
#[test]
fn agent_desk_answers_in_chromium_with_audio_both_ways() {
    let Some(py) = pjsua_python() else { return };
    let cfg = desk_config(SLOT + 1);
    let Some(mut browser) = desk_browser(&cfg) else {
        return;
    };
    let sw = Switch::start(&cfg, SLOT + 1);
    let base = format!("http://{}", sw.http);
    let t = timeline();
    sign_in_desk(&mut browser, &base);

    const HANG_UP_S: f64 = 55.0;
    let caller = tech_caller(&py, &sw, &t, t.main + HANG_UP_S, Some(&cfg));
    browser.wait_for(
        "#call-panel[data-phase=\"ringing\"]",
        Duration::from_secs_f64(t.main + 20.0),
    );
    browser.click("#btn-answer");
    browser.wait_for(
        "#call-panel[data-phase=\"talking\"][data-device=\"browser\"]",
        Duration::from_secs(15),
    );
    browser.wait_for(
        "#agent-state[data-state=\"on_call\"]",
        Duration::from_secs(10),
    );
    // Talk for a while; the page's received level comes from the caller's tone.
    browser.evaluate("new Promise(r => setTimeout(r, 6000))");
    let level: f64 = browser
        .evaluate("Number(document.getElementById('remote-level').dataset.max || 0)")
        .as_f64()
        .unwrap_or(0.0);
    eprintln!("page's received audio level (RMS, max): {level}");
    assert!(
        level > 0.02,
        "the page should receive the caller's audio, level {level}"
    );
    browser.screenshot("agent-desk-talking-en.png");
    // Mute is the browser's own (the track is disabled), and back.
    browser.click("#btn-mute");
    browser.wait_for("#btn-mute[data-on=\"true\"]", Duration::from_secs(2));
    browser.click("#btn-mute");
    browser.wait_for("#btn-mute[data-on=\"false\"]", Duration::from_secs(2));
    // Hold: the caller hears hold audio for a while, then Resume.
    browser.click("#btn-hold");
    browser.wait_for("#call-panel[data-phase=\"held\"]", Duration::from_secs(5));
    browser.wait_for("#btn-hold[data-on=\"true\"]", Duration::from_secs(2));
    browser.screenshot("agent-desk-held-en.png");
    browser.evaluate("new Promise(r => setTimeout(r, 8000))");
    browser.click("#btn-hold");
    browser.wait_for(
        "#call-panel[data-phase=\"talking\"][data-device=\"browser\"]",
        Duration::from_secs(5),
    );
    browser.evaluate("new Promise(r => setTimeout(r, 2000))");
    let level = page_level_now(&mut browser, 10);
    eprintln!("page's received audio level after Resume (RMS, max of 10 reads): {level}");
    assert!(
        level > 0.02,
        "after Resume the page should receive the caller's audio again, level {level}"
    );
    browser.evaluate("new Promise(r => setTimeout(r, 4000))");
    // Blind transfer to the after-sales queue: the switch takes the REFER and hangs up on
    // the page, which goes to wrap-up; the caller waits in the new queue until they hang up.
    browser.evaluate("document.getElementById('transfer-target').value = 'after_sales'");
    browser.click("#btn-transfer");
    browser.wait_for("#call-panel[data-phase=\"idle\"]", Duration::from_secs(10));
    browser.wait_for(
        "#agent-state[data-state=\"wrap_up\"]",
        Duration::from_secs(10),
    );
    browser.wait_for("#wrapup", Duration::from_secs(5));
    let summary = caller.finish();
    assert_eq!(summary["confirmed"], true, "caller: {summary}");
    let calls = cfg.calls();
    let c = find_call(&calls, "udp").clone();
    eprintln!("report: {c:#}");
    assert_eq!(c["agent"], AGENT, "{c:#}");
    assert_eq!(c["transferred_to"], "after_sales", "{c:#}");
    assert_eq!(c["transferred_by"], AGENT, "{c:#}");
    // The hold is on the call row (hold_ms) and in its segments.
    assert!(c["hold_ms"].as_u64().unwrap_or(0) > 0, "hold_ms: {c:#}");
    let call_id = c["call_id"].as_str().expect("call_id");
    let holds = hold_segments(&cfg.db_url, call_id);
    eprintln!("hold segments: {holds:?}");
    assert_eq!(holds.len(), 1, "one hold segment: {holds:?}");
    let (held_at, resumed_at) = (holds[0].0, holds[0].1.expect("the hold ended"));
    let hold_from = secs_into_call(&c, held_at);
    let hold_to = secs_into_call(&c, resumed_at);
    let bridged_from = record_secs_between(&c, "answered_at", "agent_answered_at");
    let bridged_to = record_secs_between(&c, "answered_at", "transferred_at");
    let heard = cfg.path("caller_heard.wav");
    // Before the hold and after the resume: the page's tone, not the caller's own.
    for (start, end) in [(bridged_from, hold_from), (hold_to, bridged_to)] {
        assert_hears(
            &py,
            &heard,
            &Hears {
                who: "caller",
                tone: AGENT_TONE_HZ,
                not: &[CALLER_TONE_HZ],
                start: start + 1.0,
                end: Some(end - 1.0),
            },
        );
    }
    // During the hold: hold audio (loud, with next to nothing at either tone), not the
    // page's tone and not silence.
    let (_, during) = check_hears(
        &py,
        &heard,
        &Hears {
            who: "caller on hold",
            tone: AGENT_TONE_HZ,
            not: &[CALLER_TONE_HZ],
            start: hold_from + 1.0,
            end: Some(hold_to - 1.0),
        },
    );
    eprintln!("caller on hold hears: {during}");
    let share = |hz: u32| {
        during["tones"][format!("{hz}.0")]["share"]
            .as_f64()
            .unwrap_or(1.0)
    };
    let windows = during["windows"].as_f64().unwrap_or(0.0);
    let voiced = during["voiced_windows"].as_f64().unwrap_or(0.0);
    assert!(windows > 0.0, "no hold window in the recording: {during}");
    assert!(
        share(AGENT_TONE_HZ) <= 0.05 && share(CALLER_TONE_HZ) <= 0.05,
        "on hold the caller should hear neither tone: {during}"
    );
    assert!(
        voiced / windows >= 0.6,
        "on hold the caller should hear hold audio, not silence: {during}"
    );
    assert_no_page_errors(&mut browser);
    drop(sw);
}

/// Chromium for a desk test that talks: the fake microphone plays the page's tone
/// (AGENT_TONE_HZ). None when browser tests are skipped.
fn desk_browser(cfg: &TestConfig) -> Option<Browser> {
    talking_browser(&mic_tone_wav(cfg.tmp.path(), AGENT_TONE_HZ))
}

/// Chromium whose fake microphone plays `mic` (a WAV, looped), and audio that plays without
/// a gesture. WebRTC as agents' browsers have it: host candidates hidden behind mDNS names
/// (the switch cannot resolve them; Chromium's checks to the switch's candidate show its
/// address, as peer-reflexive). None when browser tests are skipped.
pub(super) fn talking_browser(mic: &Path) -> Option<Browser> {
    let fake_mic = format!("--use-file-for-fake-audio-capture={}", mic.display());
    Browser::start_with_args(&[
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        &fake_mic,
        "--autoplay-policy=no-user-gesture-required",
    ])
}

/// Signs the page in as AGENT: microphone allowed, phone registered, agent ready.
fn sign_in_desk(browser: &mut Browser, base: &str) {
    browser.goto(&format!("{base}/agent"));
    browser.wait_for("#sign-in-form", Duration::from_secs(10));
    browser.fill("#sign-in-extension", AGENT);
    browser.fill("#sign-in-password", &format!("demo{AGENT}"));
    browser.click("#sign-in-submit");
    browser.wait_for("#mic-state[data-state=\"ok\"]", Duration::from_secs(15));
    browser.wait_for(
        "#phone-state[data-state=\"registered\"]",
        Duration::from_secs(15),
    );
    browser.wait_for(
        "#agent-state[data-state=\"ready\"]",
        Duration::from_secs(15),
    );
}

/// The switch's view of agent `ext` (live snapshot) once it is in `state` (bounded).
fn wait_agent_state(sw: &Switch, cookie: &str, ext: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let seen = snapshot_agent(sw.http, cookie, ext);
        if seen["state"] == state {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "agent {ext} not {state} within {within:?}: {seen}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// (state, reason) rows of agent_state_changes for `agent`, in order.
fn agent_states(db_url: &str, agent: &str) -> Vec<(String, Option<String>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(db_url)
            .await
            .expect("sqlite");
        sqlx::query_as(
            "SELECT state, reason FROM agent_state_changes WHERE agent = $1 ORDER BY at, id",
        )
        .bind(agent)
        .fetch_all(&mut conn)
        .await
        .expect("read agent_state_changes")
    })
}

/// (agent, outcome) of a call record's offers, in order.
fn offer_outcomes(c: &Value) -> Vec<(String, String)> {
    c["offers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|o| {
            (
                o["agent"].as_str().unwrap_or("").to_string(),
                o["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// No script error and no Content-Security-Policy refusal in the page.
/// CALLER dials 100, picks English and technical support, and hangs up `hangup` s in. With
/// `tone`, they play the caller's tone and record what they hear (`caller_heard.wav`).
fn tech_caller(
    py: &Path,
    sw: &Switch,
    t: &Timeline,
    hangup: f64,
    tone: Option<&TestConfig>,
) -> PjCall {
    spawn_caller(
        py,
        &sw.uri("100"),
        &CallerArgs {
            transport: "udp",
            dtmf: format!("1@{:.2}s,6@{:.2}s", t.language, t.main),
            dtmf_method: "rfc4733",
            hangup_after: hangup,
            max_duration: hangup + 30.0,
            record: tone.map(|c| c.path("caller_heard.wav")),
            play: tone.map(|c| tone_wav(c.tmp.path(), CALLER_TONE_HZ, 10)),
            from_user: Some(CALLER),
        },
    )
}

/// Bob (1002) on his pjsua2 desk phone, registered: answers after 1 s with the agent's tone
/// and stays registered through his wrap-up (unregistering would log him out).
fn bob_desk_phone(py: &Path, sw: &Switch, cfg: &TestConfig, until: f64) -> PjAgent {
    let bob = spawn_agent(
        py,
        sw,
        "1002",
        1.0,
        None,
        Some(&tone_wav(cfg.tmp.path(), AGENT_TONE_HZ, 10)),
        until,
        &["--linger", "5"],
    );
    bob.wait_event("registered", Duration::from_secs(15));
    bob
}

pub(super) fn assert_no_page_errors(browser: &mut Browser) {
    let errors = browser.run(serde_json::json!({"cmd": "errors"}));
    eprintln!("page console errors: {errors}");
    for e in errors.as_array().cloned().unwrap_or_default() {
        let e = e.as_str().unwrap_or("");
        assert!(
            !e.starts_with("pageerror") && !e.contains("Content Security Policy"),
            "page error: {e}"
        );
    }
}

/// Ring-no-answer in the browser: the page (Alice, tech 5, the best match) is offered the
/// call and rings with its countdown (to ring 3 of 3), and nobody answers. At the ring
/// timeout (18 s) the switch CANCELs: the page stops ringing (tone off, no screen pop left
/// behind) and Alice goes not ready (missed_call), as the ACD does after every unanswered
/// offer (src/engine/acd/mod.rs), in the page and in the switch. Bob's desk phone (pjsua2,
/// tech 3) is offered the call next and answers; the caller hears Bob; the call's offers
/// read Alice no_answer, Bob answered.
#[test]
fn agent_desk_rings_unanswered_and_the_next_agent_takes_the_call() {
    const SLOT_RNA: u16 = 29;
    let Some(py) = pjsua_python() else { return };
    let cfg = desk_config(SLOT_RNA);
    let Some(mut browser) = desk_browser(&cfg) else {
        return;
    };
    let sw = Switch::start(&cfg, SLOT_RNA);
    let base = format!("http://{}", sw.http);
    let t = timeline();
    sign_in_desk(&mut browser, &base);
    // The caller's call reaches the queue at about t.main; 18 s ringing Alice, Bob answers
    // after 1 s, then they talk until the caller hangs up.
    let hangup = t.main + 18.0 + 16.0;
    let bob = bob_desk_phone(&py, &sw, &cfg, hangup + 30.0);
    let caller = tech_caller(&py, &sw, &t, hangup, Some(&cfg));
    browser.wait_for(
        "#call-panel[data-phase=\"ringing\"]",
        Duration::from_secs_f64(t.main + 20.0),
    );
    assert!(browser.text("#ring-countdown").contains("Ring 1 of 3"));
    browser.wait_for_text("#pop-number", "0042", Duration::from_secs(10));
    browser.wait_for("#ring-countdown[data-ring=\"3\"]", Duration::from_secs(20));
    assert!(browser.text("#ring-countdown").contains("Ring 3 of 3"));
    browser.screenshot("agent-desk-ring-3-en.png");
    // The rings run out: the page stops ringing and shows Alice not ready (missed call).
    browser.wait_for("#call-panel[data-phase=\"idle\"]", Duration::from_secs(20));
    browser.evaluate("new Promise(r => setTimeout(r, 500))");
    assert_eq!(
        browser.evaluate("document.getElementById('ring-countdown').dataset.tone"),
        "off",
        "the ring tone stops"
    );
    browser.wait_for(
        "#agent-state[data-state=\"not_ready\"]",
        Duration::from_secs(10),
    );
    assert!(
        browser.text("#agent-state").contains("missed call"),
        "{}",
        browser.text("#agent-state")
    );
    assert_eq!(
        browser.evaluate("document.getElementById('screen-pop').hidden"),
        true,
        "no screen pop left for a call that went to someone else"
    );
    browser.screenshot("agent-desk-missed-en.png");
    let cookie = api_sign_in(sw.http);
    let alice = wait_agent_state(&sw, &cookie, AGENT, "not_ready", Duration::from_secs(10));
    assert_eq!(alice["reason"], "missed_call", "the switch's view: {alice}");
    wait_agent_state(&sw, &cookie, "1002", "on_call", Duration::from_secs(15));

    let summary = caller.finish();
    assert_eq!(summary["confirmed"], true, "caller: {summary}");
    let bob_done = bob.wait_event("done", Duration::from_secs(40));
    let bob_calls = bob_done["calls"].as_array().cloned().unwrap_or_default();
    assert_eq!(bob_calls.len(), 1, "Bob rang once: {bob_done}");
    assert_eq!(bob_calls[0]["confirmed"], true, "{bob_done}");
    let calls = cfg.calls();
    let c = find_call(&calls, "udp").clone();
    eprintln!("report: {c:#}");
    assert_eq!(c["agent"], "1002", "{c:#}");
    assert_eq!(
        offer_outcomes(&c),
        vec![
            (AGENT.to_string(), "no_answer".to_string()),
            ("1002".to_string(), "answered".to_string())
        ],
        "{c:#}"
    );
    assert_hears(
        &py,
        &cfg.path("caller_heard.wav"),
        &Hears {
            who: "caller",
            tone: AGENT_TONE_HZ,
            not: &[CALLER_TONE_HZ],
            start: record_secs_between(&c, "answered_at", "agent_answered_at") + 1.0,
            end: Some(record_secs_between(&c, "answered_at", "ended_at") - 1.0),
        },
    );
    assert_no_page_errors(&mut browser);
    drop(sw);
}

/// A browser tab closed mid-call: the page (Alice) answers over WebRTC, talks, and the tab
/// is closed. The caller is not dropped: back in the tech queue at their place (with hold
/// audio), the call goes to Bob's desk phone (pjsua2), who answers, and the caller hears
/// Bob until they hang up. Alice vanished rather than hung up: the switch has her not
/// ready (connection_lost), with no wrap-up, in the live view and in agent_state_changes,
/// though the tab took her only registration with it.
#[test]
fn agent_desk_tab_closed_mid_call_moves_the_caller_to_the_next_agent() {
    const SLOT_TAB: u16 = 28;
    let Some(py) = pjsua_python() else { return };
    let cfg = desk_config(SLOT_TAB);
    let Some(mut browser) = desk_browser(&cfg) else {
        return;
    };
    let sw = Switch::start(&cfg, SLOT_TAB);
    let base = format!("http://{}", sw.http);
    let t = timeline();
    sign_in_desk(&mut browser, &base);
    let hangup = t.main + 45.0;
    // Bob (tech 3) is ready too, but Alice (tech 5) is the better match: she is offered
    // the call first.
    let bob = bob_desk_phone(&py, &sw, &cfg, hangup + 30.0);
    let caller = tech_caller(&py, &sw, &t, hangup, Some(&cfg));
    browser.wait_for(
        "#call-panel[data-phase=\"ringing\"]",
        Duration::from_secs_f64(t.main + 20.0),
    );
    browser.click("#btn-answer");
    browser.wait_for(
        "#call-panel[data-phase=\"talking\"][data-device=\"browser\"]",
        Duration::from_secs(15),
    );
    browser.wait_for(
        "#agent-state[data-state=\"on_call\"]",
        Duration::from_secs(10),
    );
    browser.evaluate("new Promise(r => setTimeout(r, 4000))");
    assert_no_page_errors(&mut browser);
    // The tab goes.
    browser.run(serde_json::json!({"cmd": "closePage"}));
    let cookie = api_sign_in(sw.http);
    let alice = wait_agent_state(&sw, &cookie, AGENT, "not_ready", Duration::from_secs(15));
    assert_eq!(
        alice["reason"], "connection_lost",
        "the switch's view: {alice}"
    );
    wait_agent_state(&sw, &cookie, "1002", "on_call", Duration::from_secs(20));

    let summary = caller.finish();
    assert_eq!(summary["confirmed"], true, "caller: {summary}");
    assert_eq!(
        summary["disconnected_by"], "local",
        "the caller hung up, not the switch: {summary}"
    );
    let bob_done = bob.wait_event("done", Duration::from_secs(40));
    let bob_calls = bob_done["calls"].as_array().cloned().unwrap_or_default();
    assert_eq!(bob_calls.len(), 1, "Bob rang once: {bob_done}");
    assert_eq!(bob_calls[0]["confirmed"], true, "{bob_done}");
    let calls = cfg.calls();
    let c = find_call(&calls, "udp").clone();
    eprintln!("report: {c:#}");
    assert_eq!(c["ended_by"], "caller", "{c:#}");
    assert_eq!(
        offer_outcomes(&c),
        vec![
            (AGENT.to_string(), "answered".to_string()),
            ("1002".to_string(), "answered".to_string())
        ],
        "{c:#}"
    );
    // The caller hears Bob from his answer to their hang-up.
    let offers = c["offers"].as_array().cloned().unwrap_or_default();
    let bob_answered = offers[1]["ended_at_ms"]
        .as_u64()
        .expect("Bob's answer time");
    assert_hears(
        &py,
        &cfg.path("caller_heard.wav"),
        &Hears {
            who: "caller",
            tone: AGENT_TONE_HZ,
            not: &[CALLER_TONE_HZ],
            start: secs_into_call(&c, bob_answered) + 1.0,
            end: Some(record_secs_between(&c, "answered_at", "ended_at") - 1.0),
        },
    );
    let states = agent_states(&cfg.db_url, AGENT);
    eprintln!("Alice's states: {states:?}");
    let lost = ("not_ready".to_string(), Some("connection_lost".to_string()));
    assert!(states.contains(&lost), "{states:?}");
    assert!(
        !states
            .iter()
            .any(|(s, _)| s == "wrap_up" || s == "logged_out"),
        "no wrap-up and no logout for a vanished agent: {states:?}"
    );
    drop(browser);
    drop(sw);
}
