use super::super::graph::WeeklyHours;
use super::*;
use chrono::NaiveDate;
use std::collections::BTreeSet;

fn input(prompt: &str, retries: u32, barge_in: bool) -> InputSpec {
    InputSpec {
        prompt: vec![prompt.into()],
        first_digit_timeout_ms: 5000,
        inter_digit_timeout_ms: 2000,
        retries,
        invalid_prompt: Some("invalid".into()),
        no_input_prompt: Some("no_input".into()),
        barge_in,
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

/// menu -> {1: info (resolves), 12: collect, 2: lang, 3: hours, 4: quiet menu}.
fn graph() -> Arc<IvrGraph> {
    let mut hours = WeeklyHours::default();
    hours.days[0] = vec![(9 * 60, 18 * 60)]; // Monday 09:00-18:00
    let nodes = BTreeMap::from([
        (
            s("menu"),
            Node::Menu {
                input: input("main_menu", 1, true),
                options: BTreeMap::from([
                    (s("1"), s("info")),
                    (s("12"), s("collect")),
                    (s("2"), s("lang")),
                    (s("3"), s("hours")),
                    (s("4"), s("quiet")),
                ]),
                fallback: s("bye"),
            },
        ),
        (
            s("quiet"),
            Node::Menu {
                input: input("quiet_menu", 0, false),
                options: BTreeMap::from([(s("1"), s("info"))]),
                fallback: s("bye"),
            },
        ),
        (
            s("info"),
            Node::Play {
                prompt: vec![s("hours")],
                next: s("bye"),
                resolves: true,
                barge_in: true,
            },
        ),
        (
            s("collect"),
            Node::Collect {
                input: input("order_prompt", 1, true),
                variable: s("order"),
                min_digits: 2,
                max_digits: 5,
                terminator: Some('#'),
                next: s("lookup"),
                fallback: s("bye"),
            },
        ),
        (
            s("lookup"),
            Node::Lookup {
                variable: s("order"),
                table: Arc::new(BTreeMap::from([(s("123"), s("shipped"))])),
                statuses: BTreeMap::from([(s("shipped"), s("order_status_shipped"))]),
                found_prompt: Some(s("order_found_prefix")),
                read_back: true,
                not_found_prompt: s("order_not_found"),
                found: s("bye"),
                not_found: s("bye"),
                resolves: true,
                barge_in: false,
            },
        ),
        (
            s("lang"),
            Node::Language {
                input: input("language_menu", 0, true),
                options: BTreeMap::from([(s("1"), s("en")), (s("2"), s("zh"))]),
                next: s("menu"),
                fallback: s("menu"),
            },
        ),
        (
            s("hours"),
            Node::OfficeHours {
                hours,
                open: s("info"),
                closed: s("bye"),
            },
        ),
        (
            s("bye"),
            Node::HangUp {
                prompt: vec![s("goodbye")],
            },
        ),
    ]);
    let holidays = BTreeSet::from([NaiveDate::from_ymd_opt(2026, 10, 5).unwrap()]);
    Arc::new(
        IvrGraph::new(
            BTreeMap::new(),
            s("menu"),
            chrono_tz::Asia::Shanghai,
            holidays,
            nodes,
        )
        .unwrap(),
    )
}

fn drain(s: &mut IvrSession) -> Vec<IvrAction> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

/// (node, digits, detail) of the steps in `actions`.
fn steps(actions: &[IvrAction]) -> Vec<(String, Option<String>, Option<String>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            IvrAction::Step {
                node,
                digits,
                detail,
                ..
            } => Some((node.clone(), digits.clone(), detail.clone())),
            _ => None,
        })
        .collect()
}

/// (play_id, prompt ids, lang of the first) of the last Play in `actions`.
fn last_play(actions: &[IvrAction]) -> (u64, Vec<String>, String) {
    actions
        .iter()
        .rev()
        .find_map(|a| match a {
            IvrAction::Play {
                play_id, prompts, ..
            } => Some((
                *play_id,
                prompts.iter().map(|p| p.id.clone()).collect(),
                prompts.first().map(|p| p.lang.clone()).unwrap_or_default(),
            )),
            _ => None,
        })
        .expect("a Play action")
}

fn step(
    node: &str,
    digits: Option<&str>,
    detail: Option<&str>,
) -> (String, Option<String>, Option<String>) {
    (s(node), digits.map(s), detail.map(s))
}

const T0: Millis = Millis(1_000_000);

#[test]
fn menu_barge_in_digit_chooses_and_stops_the_prompt() {
    let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
    let a = drain(&mut ivr);
    assert_eq!(steps(&a), vec![step("menu", None, None)]);
    assert_eq!(last_play(&a), (1, vec![s("main_menu")], s("en")));
    assert_eq!(ivr.deadline(), None, "no timer while the prompt plays");

    ivr.on_digit(T0.plus(500), '3');
    let a = drain(&mut ivr);
    assert_eq!(a.first(), Some(&IvrAction::StopPlay));
    // T0 is a Thursday in 1970 and `hours` opens on Mondays only: closed -> goodbye.
    assert_eq!(
        steps(&a),
        vec![
            step("menu", Some("3"), None),
            step("hours", None, Some("closed")),
            step("bye", None, None)
        ]
    );
    // The interrupted menu prompt reports late: ignored.
    ivr.on_play_finished(T0.plus(510), 1, true);
    assert!(drain(&mut ivr).is_empty());
}

#[test]
fn menu_timeouts_retry_then_fall_back() {
    let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
    drain(&mut ivr);
    ivr.on_play_finished(T0.plus(4000), 1, false);
    assert_eq!(ivr.deadline(), Some(T0.plus(9000)));
    ivr.on_timeout(T0.plus(8999)); // early: ignored
    assert!(drain(&mut ivr).is_empty());
    ivr.on_timeout(T0.plus(9000));
    let a = drain(&mut ivr);
    assert_eq!(steps(&a), vec![step("menu", None, Some("timeout"))]);
    assert_eq!(last_play(&a).1, vec![s("no_input"), s("main_menu")]);
    assert_eq!(ivr.deadline(), None);
    let id = last_play(&a).0;
    ivr.on_play_finished(T0.plus(12_000), id, false);
    ivr.on_timeout(T0.plus(17_000));
    let a = drain(&mut ivr);
    assert_eq!(
        steps(&a),
        vec![
            step("menu", None, Some("timeout")),
            step("menu", None, Some("fallback")),
            step("bye", None, None)
        ]
    );
    let id = last_play(&a).0;
    ivr.on_play_finished(T0.plus(19_000), id, false);
    assert_eq!(
        drain(&mut ivr),
        vec![IvrAction::HangUp {
            outcome: IvrOutcome::Failed
        }]
    );
    assert!(ivr.is_finished());
    ivr.on_digit(T0.plus(20_000), '1');
    assert!(drain(&mut ivr).is_empty());
}

#[test]
fn invalid_digit_replays_with_apology() {
    let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
    drain(&mut ivr);
    ivr.on_play_finished(T0.plus(4000), 1, false);
    ivr.on_digit(T0.plus(4500), '7');
    let a = drain(&mut ivr);
    assert_eq!(steps(&a), vec![step("menu", Some("7"), Some("invalid"))]);
    assert_eq!(last_play(&a).1, vec![s("invalid"), s("main_menu")]);
}

#[test]
fn multi_digit_options_wait_for_the_inter_digit_timeout() {
    let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
    drain(&mut ivr);
    ivr.on_play_finished(T0.plus(4000), 1, false);
    ivr.on_digit(T0.plus(4100), '1');
    assert!(
        steps(&drain(&mut ivr)).is_empty(),
        "1 could still become 12"
    );
    assert_eq!(ivr.deadline(), Some(T0.plus(6100)));
    ivr.on_timeout(T0.plus(6100));
    let a = drain(&mut ivr);
    assert_eq!(
        steps(&a),
        vec![step("menu", Some("1"), None), step("info", None, None)]
    );

    let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
    drain(&mut ivr);
    ivr.on_digit(T0.plus(100), '1');
    ivr.on_digit(T0.plus(300), '2');
    let a = drain(&mut ivr);
    assert_eq!(
        steps(&a),
        vec![step("menu", Some("12"), None), step("collect", None, None)]
    );
}

#[test]
fn non_barge_in_prompt_ignores_digits() {
    let mut ivr = IvrSession::start(graph(), "quiet", T0, "en");
    let a = drain(&mut ivr);
    assert!(matches!(
        a.last(),
        Some(IvrAction::Play {
            barge_in: false,
            ..
        })
    ));
    ivr.on_digit(T0.plus(100), '1');
    assert!(drain(&mut ivr).is_empty());
    ivr.on_play_finished(T0.plus(3000), 1, false);
    ivr.on_digit(T0.plus(3100), '1');
    assert_eq!(
        steps(&drain(&mut ivr)),
        vec![step("quiet", Some("1"), None), step("info", None, None)]
    );
}

#[test]
fn play_resolves_when_heard_to_the_end() {
    let mut ivr = IvrSession::start(graph(), "info", T0, "en");
    let a = drain(&mut ivr);
    assert!(!ivr.resolved());
    ivr.on_play_finished(T0.plus(5000), last_play(&a).0, false);
    assert!(ivr.resolved());
    let a = drain(&mut ivr);
    assert_eq!(steps(&a), vec![step("bye", None, None)]);
    ivr.on_play_finished(T0.plus(7000), last_play(&a).0, false);
    assert_eq!(
        drain(&mut ivr),
        vec![IvrAction::HangUp {
            outcome: IvrOutcome::SelfServed
        }]
    );
}

#[test]
fn play_resolves_when_skipped_by_a_digit_but_not_when_cut_otherwise() {
    let mut ivr = IvrSession::start(graph(), "info", T0, "en");
    drain(&mut ivr);
    ivr.on_digit(T0.plus(1000), '5');
    let a = drain(&mut ivr);
    assert_eq!(a.first(), Some(&IvrAction::StopPlay));
    assert_eq!(steps(&a)[0], step("info", Some("5"), Some("skipped")));
    assert!(ivr.resolved());

    let mut ivr = IvrSession::start(graph(), "info", T0, "en");
    drain(&mut ivr);
    ivr.on_play_finished(T0.plus(1000), 1, true);
    assert!(!ivr.resolved());
}

#[test]
fn collect_ends_on_terminator_and_keeps_the_variable() {
    let mut ivr = IvrSession::start(graph(), "collect", T0, "en");
    drain(&mut ivr);
    for (i, d) in "123#".chars().enumerate() {
        ivr.on_digit(T0.plus(100 * i as u64), d);
    }
    let a = drain(&mut ivr);
    assert_eq!(
        steps(&a),
        vec![
            step("collect", Some("123#"), None),
            step("lookup", None, Some("found"))
        ]
    );
    assert!(a.contains(&IvrAction::Variable {
        name: s("order"),
        value: s("123")
    }));
    assert_eq!(ivr.variables().get("order"), Some(&s("123")));
    assert_eq!(
        last_play(&a).1,
        vec![
            s("order_found_prefix"),
            s("digit_1"),
            s("digit_2"),
            s("digit_3"),
            s("order_status_shipped")
        ]
    );
    assert!(!ivr.resolved(), "resolved once the status was heard");
    ivr.on_digit(T0.plus(1000), '9'); // lookup prompt is not barge-in
    assert!(drain(&mut ivr).is_empty());
    ivr.on_play_finished(T0.plus(5000), last_play(&a).0, false);
    assert!(ivr.resolved());
}

#[test]
fn collect_ends_at_max_digits_or_inter_digit_timeout() {
    let mut ivr = IvrSession::start(graph(), "collect", T0, "en");
    drain(&mut ivr);
    for d in "99999".chars() {
        ivr.on_digit(T0, d);
    }
    let a = drain(&mut ivr);
    assert_eq!(
        steps(&a),
        vec![
            step("collect", Some("99999"), None),
            step("lookup", None, Some("not_found"))
        ]
    );
    assert_eq!(last_play(&a).1, vec![s("order_not_found")]);
    ivr.on_play_finished(T0.plus(3000), last_play(&a).0, false);
    assert!(!ivr.resolved(), "not found does not resolve");

    let mut ivr = IvrSession::start(graph(), "collect", T0, "en");
    drain(&mut ivr);
    ivr.on_digit(T0.plus(100), '1');
    ivr.on_digit(T0.plus(200), '2');
    assert_eq!(ivr.deadline(), Some(T0.plus(2200)));
    ivr.on_timeout(T0.plus(2200));
    let a = drain(&mut ivr);
    assert_eq!(steps(&a)[0], step("collect", Some("12"), None));
}

#[test]
fn collect_too_short_or_bad_key_is_invalid() {
    let mut ivr = IvrSession::start(graph(), "collect", T0, "en");
    drain(&mut ivr);
    ivr.on_digit(T0, '1');
    ivr.on_digit(T0, '#');
    let a = drain(&mut ivr);
    assert_eq!(
        steps(&a),
        vec![step("collect", Some("1#"), Some("invalid"))]
    );
    assert_eq!(last_play(&a).1, vec![s("invalid"), s("order_prompt")]);
    ivr.on_digit(T0, '*');
    let a = drain(&mut ivr);
    assert_eq!(
        steps(&a),
        vec![
            step("collect", Some("*"), Some("invalid")),
            step("collect", None, Some("fallback")),
            step("bye", None, None)
        ]
    );
}

#[test]
fn language_choice_changes_the_prompt_language() {
    let mut ivr = IvrSession::start(graph(), "lang", T0, "en");
    drain(&mut ivr);
    ivr.on_digit(T0.plus(100), '2');
    let a = drain(&mut ivr);
    assert_eq!(
        steps(&a),
        vec![
            step("lang", Some("2"), Some("lang=zh")),
            step("menu", None, None)
        ]
    );
    assert_eq!(last_play(&a).2, "zh");
    assert_eq!(ivr.language(), "zh");
    assert_eq!(ivr.chosen_language(), Some("zh"));
}

#[test]
fn language_fallback_keeps_the_language() {
    let mut ivr = IvrSession::start(graph(), "lang", T0, "zh");
    drain(&mut ivr);
    ivr.on_play_finished(T0.plus(100), 1, false);
    ivr.on_timeout(T0.plus(5100));
    let a = drain(&mut ivr);
    assert_eq!(steps(&a).last(), Some(&step("menu", None, None)));
    assert_eq!(last_play(&a).2, "zh");
    // The default language was kept, not chosen (surveys fall back to their own default).
    assert_eq!(ivr.chosen_language(), None);
}

/// UTC ms of a Shanghai local time.
fn shanghai(y: i32, m: u32, d: u32, h: u32, min: u32) -> Millis {
    let t = chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .unwrap();
    Millis(t.timestamp_millis() as u64)
}

#[test]
fn office_hours_use_the_time_zone_and_holidays() {
    let detail = |now: Millis| {
        let mut ivr = IvrSession::start(graph(), "hours", now, "en");
        steps(&drain(&mut ivr))[0].2.clone().unwrap()
    };
    // 2026-09-28 is a Monday.
    assert_eq!(detail(shanghai(2026, 9, 28, 9, 0)), "open");
    assert_eq!(detail(shanghai(2026, 9, 28, 17, 59)), "open");
    assert_eq!(detail(shanghai(2026, 9, 28, 18, 0)), "closed");
    assert_eq!(detail(shanghai(2026, 9, 28, 8, 59)), "closed");
    // 01:30 UTC Monday is 09:30 in Shanghai: open, though UTC says 01:30.
    assert_eq!(detail(Millis(1_790_559_000_000)), "open");
    assert_eq!(detail(shanghai(2026, 9, 29, 10, 0)), "closed", "Tuesday");
    assert_eq!(detail(shanghai(2026, 10, 5, 10, 0)), "closed:holiday");
}

#[test]
fn broken_entry_fails_cleanly() {
    let mut ivr = IvrSession::start(graph(), "nowhere", T0, "en");
    let a = drain(&mut ivr);
    assert_eq!(
        a.last(),
        Some(&IvrAction::HangUp {
            outcome: IvrOutcome::Failed
        })
    );
    assert!(ivr.is_finished());
}

#[test]
fn play_ids_increase() {
    let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
    let a = drain(&mut ivr);
    ivr.on_digit(T0, '2');
    let b = drain(&mut ivr);
    assert!(last_play(&b).0 > last_play(&a).0);
}
