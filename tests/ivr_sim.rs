//! Simulated-clock walks through the shipped IVR (`config/`), as the engine would drive it:
//! prompts "finish" when the test says so, timers fire at `deadline()`.

use ccswitch::config;
use ccswitch::engine::ivr::{IvrAction, IvrSession};
use ccswitch::engine::record::IvrOutcome;
use ccswitch::engine::{Millis, PromptKey};
use chrono::TimeZone;
use std::path::Path;

struct Sim {
    ivr: IvrSession,
    now: Millis,
    /// The prompt list currently playing: (play_id, prompts, barge_in).
    playing: Option<(u64, Vec<PromptKey>, bool)>,
    plays: Vec<Vec<PromptKey>>,
    /// (node, kind, digits, detail)
    steps: Vec<(String, String, Option<String>, Option<String>)>,
    variables: Vec<(String, String)>,
    outcome: Option<IvrOutcome>,
}

impl Sim {
    fn start(dialled: &str, now: Millis) -> Sim {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let cfg = config::load(&dir).expect("shipped config loads");
        let entry = cfg.ivr.entry_for(dialled).to_string();
        let ivr = IvrSession::start(cfg.ivr.clone(), &entry, now, &cfg.prompts.default_language);
        let mut sim = Sim {
            ivr,
            now,
            playing: None,
            plays: Vec::new(),
            steps: Vec::new(),
            variables: Vec::new(),
            outcome: None,
        };
        sim.pump();
        sim
    }

    fn pump(&mut self) {
        while let Some(a) = self.ivr.poll_action() {
            match a {
                IvrAction::Play {
                    play_id,
                    prompts,
                    barge_in,
                } => {
                    self.plays.push(prompts.clone());
                    self.playing = Some((play_id, prompts, barge_in));
                }
                IvrAction::StopPlay => self.playing = None,
                IvrAction::Step {
                    at,
                    node,
                    kind,
                    digits,
                    detail,
                } => {
                    assert_eq!(at, self.now, "steps are stamped with the current time");
                    self.steps.push((node, kind.to_string(), digits, detail));
                }
                IvrAction::Variable { name, value } => self.variables.push((name, value)),
                IvrAction::HangUp { outcome } => {
                    assert!(self.outcome.is_none(), "one hang-up only");
                    self.outcome = Some(outcome);
                }
                IvrAction::Queue { .. } => {
                    assert!(self.outcome.is_none(), "one exit only");
                    self.outcome = Some(IvrOutcome::Queued);
                }
            }
        }
    }

    /// The current prompt plays to its end after `ms`.
    fn hear(&mut self, ms: u64) {
        let (id, _, _) = self.playing.take().expect("something is playing");
        self.now = self.now.plus(ms);
        self.ivr.on_play_finished(self.now, id, false);
        self.pump();
    }

    /// The caller presses keys, 300 ms apart; a barge-in prompt is cut as the media plane
    /// would do it.
    fn press(&mut self, keys: &str) {
        for k in keys.chars() {
            self.now = self.now.plus(300);
            if let Some((id, _, true)) = self.playing {
                self.ivr.on_digit(self.now, k);
                self.pump();
                // The media plane reports the cut prompt; the session must ignore it.
                self.ivr.on_play_finished(self.now, id, true);
            } else {
                self.ivr.on_digit(self.now, k);
            }
            self.pump();
        }
    }

    /// Time runs to the session's deadline.
    fn wait_for_timeout(&mut self) {
        let at = self.ivr.deadline().expect("a timer is armed");
        assert!(at >= self.now);
        self.now = at;
        self.ivr.on_timeout(self.now);
        self.pump();
    }

    fn nodes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (node, _, digits, detail) in &self.steps {
            if digits.is_none() && detail.is_none()
                || matches!(
                    detail.as_deref(),
                    Some("open" | "closed" | "closed:holiday" | "found" | "not_found")
                )
            {
                out.push(node);
            }
        }
        out
    }

    fn current_prompt_ids(&self) -> Vec<String> {
        self.playing
            .as_ref()
            .map(|(_, p, _)| p.iter().map(|k| k.id.clone()).collect())
            .unwrap_or_default()
    }

    fn has_step(&self, node: &str, digits: Option<&str>, detail: Option<&str>) -> bool {
        self.steps
            .iter()
            .any(|(n, _, d, x)| n == node && d.as_deref() == digits && x.as_deref() == detail)
    }
}

/// UTC ms of a local time in Shanghai (the shipped time zone).
fn shanghai(y: i32, m: u32, d: u32, h: u32, min: u32) -> Millis {
    let t = chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("valid local time");
    Millis(t.timestamp_millis() as u64)
}

/// Monday 2026-11-23, 10:00 in Shanghai: open.
fn open_monday() -> Millis {
    shanghai(2026, 11, 23, 10, 0)
}

#[test]
fn hours_question_is_self_served() {
    let mut sim = Sim::start("anything", open_monday());
    assert_eq!(sim.current_prompt_ids(), vec!["greeting"]);
    sim.press("1"); // greeting is not barge-in: ignored
    assert_eq!(sim.current_prompt_ids(), vec!["greeting"]);
    sim.hear(4000);
    assert_eq!(sim.current_prompt_ids(), vec!["language_menu"]);
    sim.press("1");
    assert!(sim.has_step("language", Some("1"), Some("lang=en")));
    assert!(sim.has_step("office_hours", None, Some("open")));
    assert_eq!(sim.current_prompt_ids(), vec!["main_menu"]);
    sim.hear(9000);
    sim.press("1");
    assert_eq!(sim.current_prompt_ids(), vec!["hours"]);
    assert!(!sim.ivr.resolved(), "not until the answer is heard");
    sim.hear(6000);
    assert!(sim.ivr.resolved());
    assert_eq!(sim.current_prompt_ids(), vec!["anything_else"]);
    sim.hear(4000);
    sim.wait_for_timeout();
    assert_eq!(sim.current_prompt_ids(), vec!["goodbye"]);
    sim.hear(2000);
    assert_eq!(sim.outcome, Some(IvrOutcome::SelfServed));
    assert_eq!(
        sim.nodes(),
        vec![
            "greeting",
            "language",
            "office_hours",
            "main_menu",
            "hours",
            "anything_else",
            "goodbye"
        ]
    );
    assert!(sim.plays.iter().flatten().all(|k| k.lang == "en"));
}

#[test]
fn order_number_is_looked_up_and_read_back() {
    let mut sim = Sim::start("", open_monday());
    sim.hear(4000);
    sim.press("1");
    sim.hear(9000);
    sim.press("5");
    assert_eq!(sim.current_prompt_ids(), vec!["order_prompt"]);
    sim.hear(3000);
    sim.press("12345#");
    assert!(sim.has_step("order_number", Some("12345#"), None));
    assert_eq!(
        sim.variables,
        vec![("order_number".to_string(), "12345".to_string())]
    );
    assert!(sim.has_step("order_lookup", None, Some("found")));
    assert_eq!(
        sim.current_prompt_ids(),
        vec![
            "order_found_prefix",
            "digit_1",
            "digit_2",
            "digit_3",
            "digit_4",
            "digit_5",
            "order_status_shipped"
        ]
    );
    sim.hear(7000);
    assert!(sim.ivr.resolved());
    // Back to the main menu from "anything else?", then hang up by silence.
    sim.press("9");
    assert_eq!(sim.current_prompt_ids(), vec!["main_menu"]);
}

#[test]
fn unknown_order_is_not_self_service() {
    let mut sim = Sim::start("4008005", open_monday());
    assert_eq!(sim.nodes(), vec!["order_number"], "hotline entry");
    sim.press("999#");
    assert!(sim.has_step("order_lookup", None, Some("not_found")));
    assert_eq!(sim.current_prompt_ids(), vec!["order_not_found"]);
    sim.hear(3000);
    assert!(!sim.ivr.resolved());
    sim.hear(4000); // anything_else
    sim.wait_for_timeout();
    sim.hear(2000); // goodbye
    assert_eq!(sim.outcome, Some(IvrOutcome::Failed));
}

#[test]
fn main_menu_timeouts_and_retries_fall_back_to_goodbye() {
    let mut sim = Sim::start("", open_monday());
    sim.hear(4000);
    sim.press("1");
    sim.hear(9000);
    sim.wait_for_timeout();
    assert!(sim.has_step("main_menu", None, Some("timeout")));
    assert_eq!(sim.current_prompt_ids(), vec!["no_input", "main_menu"]);
    sim.hear(10_000);
    sim.press("0");
    assert!(sim.has_step("main_menu", Some("0"), Some("invalid")));
    assert_eq!(sim.current_prompt_ids(), vec!["invalid", "main_menu"]);
    sim.hear(10_000);
    sim.wait_for_timeout();
    assert!(sim.has_step("main_menu", None, Some("fallback")));
    assert_eq!(sim.current_prompt_ids(), vec!["goodbye"]);
    sim.hear(2000);
    assert_eq!(sim.outcome, Some(IvrOutcome::Failed));
}

#[test]
fn invalid_digit_then_valid_choice() {
    let mut sim = Sim::start("", open_monday());
    sim.hear(4000);
    sim.press("1");
    sim.press("0"); // barge-in into the main menu with a wrong key
    assert!(sim.has_step("main_menu", Some("0"), Some("invalid")));
    assert_eq!(sim.current_prompt_ids(), vec!["invalid", "main_menu"]);
    sim.press("2");
    assert_eq!(sim.current_prompt_ids(), vec!["address"]);
}

#[test]
fn nine_repeats_the_main_menu() {
    let mut sim = Sim::start("", open_monday());
    sim.hear(4000);
    sim.press("1");
    sim.hear(9000);
    sim.press("9");
    assert!(sim.has_step("main_menu", Some("9"), None));
    assert_eq!(sim.current_prompt_ids(), vec!["main_menu"]);
    assert_eq!(sim.nodes().iter().filter(|n| **n == "main_menu").count(), 2);
}

#[test]
fn office_hours_open_closed_and_holiday() {
    let cases = [
        (shanghai(2026, 11, 23, 9, 0), "open"),     // Monday opening
        (shanghai(2026, 11, 23, 17, 59), "open"),   // Monday before closing
        (shanghai(2026, 11, 23, 18, 0), "closed"),  // Monday closing time
        (shanghai(2026, 11, 28, 10, 30), "open"),   // Saturday
        (shanghai(2026, 11, 28, 16, 30), "closed"), // Saturday afternoon
        (shanghai(2026, 11, 29, 11, 0), "closed"),  // Sunday
        (shanghai(2026, 10, 1, 11, 0), "closed:holiday"), // National Day, a Thursday
    ];
    for (at, expected) in cases {
        let mut sim = Sim::start("", at);
        sim.hear(4000);
        sim.press("1");
        assert!(
            sim.has_step("office_hours", None, Some(expected)),
            "{expected}: {:?}",
            sim.steps
        );
        let first = if expected == "open" {
            "main_menu"
        } else {
            "closed"
        };
        assert_eq!(sim.current_prompt_ids(), vec![first]);
        if first == "closed" {
            // Out of hours, self-service still works.
            sim.hear(8000);
            assert_eq!(sim.current_prompt_ids(), vec!["main_menu"]);
            assert!(!sim.ivr.resolved(), "the closed notice does not resolve");
        }
    }
}

#[test]
fn chinese_changes_the_prompt_language_for_the_rest_of_the_call() {
    let mut sim = Sim::start("", open_monday());
    sim.hear(4000);
    sim.press("2");
    assert!(sim.has_step("language", Some("2"), Some("lang=zh")));
    assert_eq!(sim.ivr.language(), "zh");
    sim.hear(9000);
    sim.press("3");
    let (_, prompts, _) = sim.playing.clone().expect("returns plays");
    assert_eq!(
        prompts,
        vec![PromptKey {
            id: "returns".into(),
            lang: "zh".into()
        }]
    );
    // Everything after the choice is in Chinese, everything before in English.
    let langs: Vec<&str> = sim
        .plays
        .iter()
        .flatten()
        .map(|k| k.lang.as_str())
        .collect();
    assert_eq!(langs, vec!["en", "en", "zh", "zh"]);
}

#[test]
fn language_menu_silence_keeps_the_default() {
    let mut sim = Sim::start("", open_monday());
    sim.hear(4000);
    sim.hear(5000);
    sim.wait_for_timeout();
    assert_eq!(sim.current_prompt_ids(), vec!["no_input", "language_menu"]);
    sim.hear(5000);
    sim.wait_for_timeout();
    assert!(sim.has_step("language", None, Some("fallback")));
    assert_eq!(sim.ivr.language(), "en");
    assert_eq!(sim.current_prompt_ids(), vec!["main_menu"]);
}

mod random_walks {
    use super::*;
    use ccswitch::engine::ivr::IvrGraph;
    use proptest::prelude::*;
    use std::sync::Arc;

    #[derive(Clone, Debug)]
    enum Event {
        Digit(char),
        /// The current prompt ends (cut or not) after this many ms.
        PromptEnds(u16, bool),
        /// Time runs to the armed deadline.
        Timeout,
        /// A stale or made-up play id finishing.
        StrayFinish(u8),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => proptest::sample::select(vec!['0', '1', '2', '3', '4', '5', '7', '9', '#', '*'])
                .prop_map(Event::Digit),
            3 => (0u16..20_000, any::<bool>()).prop_map(|(ms, cut)| Event::PromptEnds(ms, cut)),
            2 => Just(Event::Timeout),
            1 => any::<u8>().prop_map(Event::StrayFinish),
        ]
    }

    /// Plays the engine's part and checks every action the session emits.
    struct Checker {
        graph: Arc<IvrGraph>,
        ivr: IvrSession,
        now: Millis,
        playing: Option<u64>,
        last_play_id: u64,
        hung_up: bool,
    }

    impl Checker {
        /// Time runs to `to`, firing every deadline on the way as the engine would.
        fn advance(&mut self, to: Millis) -> Result<(), TestCaseError> {
            while let Some(at) = self.ivr.deadline().filter(|at| *at <= to) {
                self.now = at;
                self.ivr.on_timeout(at);
                self.drain()?;
            }
            self.now = to;
            Ok(())
        }

        fn drain(&mut self) -> Result<(), TestCaseError> {
            while let Some(a) = self.ivr.poll_action() {
                prop_assert!(!self.hung_up, "action after hang-up: {a:?}");
                match a {
                    IvrAction::Play {
                        play_id, prompts, ..
                    } => {
                        prop_assert!(play_id > self.last_play_id);
                        prop_assert!(!prompts.is_empty());
                        self.last_play_id = play_id;
                        self.playing = Some(play_id);
                    }
                    IvrAction::StopPlay => self.playing = None,
                    IvrAction::Step { node, kind, at, .. } => {
                        let n = self.graph.node(&node);
                        prop_assert!(n.is_some(), "step at unknown node {node}");
                        prop_assert_eq!(n.map(|n| n.kind()), Some(kind));
                        prop_assert_eq!(at, self.now);
                    }
                    IvrAction::Variable { value, .. } => {
                        prop_assert!(value.bytes().all(|b| b.is_ascii_digit()));
                    }
                    IvrAction::HangUp { outcome } => {
                        let expected = if self.ivr.resolved() {
                            IvrOutcome::SelfServed
                        } else {
                            IvrOutcome::Failed
                        };
                        prop_assert_eq!(outcome, expected);
                        self.hung_up = true;
                    }
                    // Leaving for a queue ends the session like a hang-up.
                    IvrAction::Queue { .. } => self.hung_up = true,
                }
            }
            if let Some(at) = self.ivr.deadline() {
                prop_assert!(at > self.now, "deadline not in the future");
                prop_assert!(self.playing.is_none(), "no timer while a prompt plays");
            }
            prop_assert_eq!(self.hung_up, self.ivr.is_finished());
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever the caller and the media plane do, the session stays consistent: one
        /// hang-up at most and nothing after it, increasing play ids, timers in the future
        /// and never while a prompt plays, steps only at real nodes.
        #[test]
        fn any_event_sequence_keeps_the_session_consistent(
            events in proptest::collection::vec(event(), 0..80),
            start_hour in 0u32..24,
        ) {
            let start = shanghai(2026, 11, 23, start_hour, 0);
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
            let cfg = config::load(&dir).expect("shipped config loads");
            let graph = cfg.ivr.clone();
            let ivr = IvrSession::start(graph.clone(), graph.entry_for(""), start, "en");
            let mut c = Checker { graph, ivr, now: start, playing: None, last_play_id: 0, hung_up: false };
            c.drain()?;
            for ev in events {
                match ev {
                    Event::Digit(d) => {
                        c.advance(c.now.plus(250))?;
                        c.ivr.on_digit(c.now, d);
                    }
                    Event::PromptEnds(ms, cut) => {
                        c.advance(c.now.plus(u64::from(ms)))?;
                        if let Some(id) = c.playing.take() {
                            c.ivr.on_play_finished(c.now, id, cut);
                        }
                    }
                    Event::Timeout => {
                        if let Some(at) = c.ivr.deadline() {
                            c.advance(at)?;
                        }
                    }
                    Event::StrayFinish(id) => {
                        let id = u64::from(id);
                        if c.playing == Some(id) {
                            c.playing = None; // not stray after all: the real prompt ended
                        }
                        c.ivr.on_play_finished(c.now, id, false);
                    }
                }
                c.drain()?;
            }
        }
    }
}

#[test]
fn a_digit_pressed_during_the_closed_notice_answers_the_main_menu() {
    let mut sim = Sim::start("anything", shanghai(2026, 11, 29, 11, 0)); // Sunday: closed
    sim.hear(4000);
    sim.press("1"); // English
    assert_eq!(sim.current_prompt_ids(), vec!["closed"]);
    sim.press("1"); // typed ahead: opening hours
    assert!(sim.has_step("closed", Some("1"), Some("skipped")));
    assert!(sim.has_step("main_menu", Some("1"), None));
    assert_eq!(sim.current_prompt_ids(), vec!["hours"]);
}
