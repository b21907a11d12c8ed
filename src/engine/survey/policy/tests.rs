//! The policy on virtual time: every `now` is built from a local wall time.

use super::*;
use crate::engine::survey::numbers::{number_hash, region};
use chrono_tz::Asia::Shanghai;

const EN_CSAT: &str = "Thank you for calling {company}. How satisfied were you with agent {agent} today? Reply 1-5 (5 = very satisfied). Reply TD to opt out.";
const ZH_CSAT: &str = "感谢致电{company}，请为本次服务打分：回复1-5（5为非常满意），回复TD退订。";
const MOBILE: &str = "13812345678";

fn texts(csat: &str) -> LanguageTexts {
    LanguageTexts {
        csat: Template::parse(csat).unwrap(),
        self_served: Some(Template::parse("{company}: did the menu help? Reply 1-5.").unwrap()),
        nps: None,
        clarify: Template::parse("Reply 1-5.").unwrap(),
        opted_out: Template::parse("No more surveys.").unwrap(),
    }
}

fn policy() -> SurveyPolicy {
    SurveyPolicy {
        agent_display: BTreeMap::from([("1009".to_string(), "A-09".to_string())]),
        company: "Example Co".into(),
        gateway: "default".into(),
        agent_handled: true,
        self_served: false,
        min_talk_ms: 15_000,
        queues: QueueRules::default(),
        delay_ms: 60_000,
        time_zone: Shanghai,
        quiet_hours: Some(QuietHours {
            start_minute: 21 * 60,
            end_minute: 8 * 60,
        }),
        frequency_cap_days: 7,
        reply_window_ms: 48 * 3_600_000,
        nps: false,
        numbers: NumberRules {
            default_region: region("CN").unwrap(),
            internal_max_digits: 6,
            extensions: ["1001".to_string(), "1002".to_string()].into(),
        },
        default_language: "en".into(),
        default_texts: texts(EN_CSAT),
        texts: [("zh".to_string(), texts(ZH_CSAT))].into(),
        queue_labels: [("tech".to_string(), "Technical support".to_string())].into(),
        follow_up_max_score: 2,
        complaint_queues: ["complaints".to_string()].into(),
        follow_up_due_ms: 24 * 3_600_000,
    }
}

/// Local wall time in `tz` as Millis.
fn at(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Millis {
    Millis(
        u64::try_from(
            tz.with_ymd_and_hms(y, mo, d, h, mi, s)
                .single()
                .unwrap()
                .timestamp_millis(),
        )
        .unwrap(),
    )
}

fn sh(d: u32, h: u32, mi: u32, s: u32) -> Millis {
    at(Shanghai, 2026, 12, d, h, mi, s)
}

fn agent_call(caller: &str, ended_at: Millis) -> CallSummary {
    CallSummary {
        call_id: "c1".into(),
        caller: caller.into(),
        ended_at,
        language: None,
        outcome: CallOutcome::AgentHandled {
            agent: "1002".into(),
            queue: Some("tech".into()),
            talk_ms: 120_000,
        },
        queues_visited: vec!["tech".into()],
    }
}

fn scheduled(d: SurveyDecision) -> ScheduledSurvey {
    match d {
        SurveyDecision::Schedule(s) => s,
        SurveyDecision::Skip(r) => panic!("skipped: {r}"),
    }
}

fn skipped(d: SurveyDecision) -> SkipReason {
    match d {
        SurveyDecision::Skip(r) => r,
        SurveyDecision::Schedule(s) => panic!("scheduled: {s:?}"),
    }
}

#[test]
fn a_daytime_call_is_surveyed_a_minute_after_hang_up_in_the_issue_words() {
    let p = policy();
    let end = sh(4, 14, 0, 0);
    let s = scheduled(p.decide(end, &agent_call(MOBILE, end), &SurveyLedger::default()));
    assert_eq!(s.to.as_str(), "+8613812345678");
    assert_eq!(s.send_at, end.plus(60_000));
    assert!(!s.deferred);
    assert_eq!(s.language, "en");
    assert_eq!(
        s.text,
        "Thank you for calling Example Co. How satisfied were you with agent 1002 today? \
         Reply 1-5 (5 = very satisfied). Reply TD to opt out."
    );
    assert_eq!(s.owner.as_deref(), Some("1002"));
    assert!(!s.complaint);
}

#[test]
fn quiet_hours_hold_the_text_until_eight_the_next_morning() {
    let p = policy();
    let end = sh(4, 20, 59, 30);
    let s = scheduled(p.decide(end, &agent_call(MOBILE, end), &SurveyLedger::default()));
    assert_eq!(s.send_at, sh(5, 8, 0, 0));
    assert!(s.deferred);
    // Shanghai is UTC+8: 08:00 local is 00:00 UTC.
    assert_eq!(s.send_at, at(chrono_tz::UTC, 2026, 12, 5, 0, 0, 0));

    // 20:58:59 + 60 s is still before 21:00.
    let end = sh(4, 20, 58, 59);
    let s = scheduled(p.decide(end, &agent_call(MOBILE, end), &SurveyLedger::default()));
    assert_eq!((s.send_at, s.deferred), (sh(4, 20, 59, 59), false));
    // After midnight: the same morning.
    let end = sh(5, 3, 0, 0);
    let s = scheduled(p.decide(end, &agent_call(MOBILE, end), &SurveyLedger::default()));
    assert_eq!((s.send_at, s.deferred), (sh(5, 8, 0, 0), true));
    // 07:59:30 + 60 s = 08:00:30: open, not moved.
    let end = sh(5, 7, 59, 30);
    let s = scheduled(p.decide(end, &agent_call(MOBILE, end), &SurveyLedger::default()));
    assert_eq!((s.send_at, s.deferred), (sh(5, 8, 0, 30), false));
}

#[test]
fn quiet_hours_within_one_day_and_off() {
    let mut p = policy();
    p.quiet_hours = Some(QuietHours {
        start_minute: 12 * 60,
        end_minute: 14 * 60,
    });
    assert_eq!(p.release_time(sh(4, 12, 30, 0)), (sh(4, 14, 0, 0), true));
    assert_eq!(p.release_time(sh(4, 14, 0, 0)), (sh(4, 14, 0, 0), false));
    assert_eq!(
        p.release_time(sh(4, 11, 59, 59)),
        (sh(4, 11, 59, 59), false)
    );
    p.quiet_hours = None;
    assert_eq!(p.release_time(sh(4, 23, 0, 0)), (sh(4, 23, 0, 0), false));
}

#[test]
fn quiet_hours_ending_in_a_dst_gap_or_overlap() {
    use chrono_tz::America::New_York;
    let mut p = policy();
    p.time_zone = New_York;
    // 2026-03-08 02:00 EST jumps to 03:00 EDT: 02:30 does not exist.
    p.quiet_hours = Some(QuietHours {
        start_minute: 21 * 60,
        end_minute: 2 * 60 + 30,
    });
    let (send, moved) = p.release_time(at(New_York, 2026, 3, 7, 23, 0, 0));
    assert!(moved);
    assert_eq!(send, at(New_York, 2026, 3, 8, 3, 0, 0));
    assert_eq!(send, at(chrono_tz::UTC, 2026, 3, 8, 7, 0, 0));
    // 2026-11-01 01:30 happens twice (EDT, then EST): the earlier one.
    p.quiet_hours = Some(QuietHours {
        start_minute: 21 * 60,
        end_minute: 90,
    });
    let (send, moved) = p.release_time(at(New_York, 2026, 10, 31, 22, 0, 0));
    assert!(moved);
    assert_eq!(send, at(chrono_tz::UTC, 2026, 11, 1, 5, 30, 0));
    // Normal days keep the wall-clock opening across the change: 08:00 local both sides.
    p.quiet_hours = Some(QuietHours {
        start_minute: 21 * 60,
        end_minute: 8 * 60,
    });
    let (send, _) = p.release_time(at(New_York, 2026, 3, 7, 22, 0, 0));
    assert_eq!(send, at(chrono_tz::UTC, 2026, 3, 8, 12, 0, 0), "08:00 EDT");
    let (send, _) = p.release_time(at(New_York, 2026, 3, 6, 22, 0, 0));
    assert_eq!(send, at(chrono_tz::UTC, 2026, 3, 7, 13, 0, 0), "08:00 EST");
}

#[test]
fn a_late_decision_never_schedules_into_the_past() {
    let p = policy();
    let end = sh(4, 14, 0, 0);
    let now = sh(4, 14, 10, 0);
    let s = scheduled(p.decide(now, &agent_call(MOBILE, end), &SurveyLedger::default()));
    assert_eq!(s.send_at, now);
}

#[test]
fn at_most_one_survey_per_number_per_seven_days() {
    let p = policy();
    let mut ledger = SurveyLedger::default();
    let first_end = sh(1, 10, 0, 0);
    let first = scheduled(p.decide(first_end, &agent_call(MOBILE, first_end), &ledger));
    ledger.note_scheduled(&first.number_hash, first.send_at);

    // The same number in another spelling, an hour later and 6 days 23 h later: capped.
    for end in [sh(1, 11, 0, 0), first.send_at.plus(7 * MS_PER_DAY - 60_001)] {
        let d = p.decide(end, &agent_call("+86 138 1234 5678", end), &ledger);
        assert_eq!(skipped(d), SkipReason::FrequencyCap);
    }
    // Seven days after the first send: surveyed again.
    let end = first.send_at.plus(7 * MS_PER_DAY - 60_000);
    let s = scheduled(p.decide(end, &agent_call(MOBILE, end), &ledger));
    assert_eq!(s.send_at, first.send_at.plus(7 * MS_PER_DAY));
    // Another number is not affected.
    let end = sh(1, 11, 0, 0);
    scheduled(p.decide(end, &agent_call("13900001111", end), &ledger));

    // A survey still pending (deferred to the morning) counts too.
    let mut ledger = SurveyLedger::default();
    ledger.note_scheduled(&first.number_hash, sh(2, 8, 0, 0));
    let end = sh(1, 22, 0, 0);
    assert_eq!(
        skipped(p.decide(end, &agent_call(MOBILE, end), &ledger)),
        SkipReason::FrequencyCap
    );

    // No cap.
    let mut p = policy();
    p.frequency_cap_days = 0;
    scheduled(p.decide(end, &agent_call(MOBILE, end), &ledger));
}

#[test]
fn the_ledger_forgets_old_send_times() {
    let mut ledger = SurveyLedger::default();
    let n = ledger.hash_of(&policy().numbers.normalise(MOBILE).unwrap());
    ledger.note_scheduled(&n, sh(1, 10, 0, 0));
    ledger.note_scheduled(&n, sh(1, 9, 0, 0));
    assert_eq!(
        ledger.last_survey_at(&n),
        Some(sh(1, 10, 0, 0)),
        "the latest wins"
    );
    ledger.forget_before(sh(1, 10, 0, 1));
    assert!(ledger.is_empty());
}

#[test]
fn opted_out_numbers_are_skipped_before_the_cap() {
    let p = policy();
    let mut ledger = SurveyLedger::default();
    let n = ledger.hash_of(&p.numbers.normalise(MOBILE).unwrap());
    ledger.note_opt_out(&n);
    ledger.note_scheduled(&n, sh(1, 10, 0, 0));
    let end = sh(1, 12, 0, 0);
    for caller in [MOBILE, "+8613812345678", "008613812345678"] {
        assert_eq!(
            skipped(p.decide(end, &agent_call(caller, end), &ledger)),
            SkipReason::OptedOut
        );
    }
}

#[test]
fn facts_by_hash_alone_keep_the_cap_and_opt_outs() {
    // After retention the store has only hashes: the ledger built from them must still
    // recognise the caller, and only under the same key.
    let p = policy();
    let key = b"switch key".to_vec();
    let mobile = number_hash(&key, "+8613812345678");
    let other = number_hash(&key, "+8613900001111");
    let facts = LedgerFacts {
        last_sent: vec![(mobile.clone(), sh(1, 10, 0, 0)), (mobile, sh(1, 9, 0, 0))],
        opted_out: vec![other],
    };
    let ledger = SurveyLedger::with_facts(key.clone(), &facts);
    assert_eq!((ledger.len(), ledger.opted_out_len()), (1, 1));
    let end = sh(2, 12, 0, 0);
    assert_eq!(
        skipped(p.decide(end, &agent_call("138 1234 5678", end), &ledger)),
        SkipReason::FrequencyCap
    );
    assert_eq!(
        skipped(p.decide(end, &agent_call("13900001111", end), &ledger)),
        SkipReason::OptedOut
    );
    let s = scheduled(p.decide(end, &agent_call("13700001111", end), &ledger));
    assert_eq!(s.number_hash, number_hash(&key, "+8613700001111"));
    // Another key: the same facts say nothing about these numbers.
    let foreign = SurveyLedger::with_facts(b"another key".to_vec(), &facts);
    scheduled(p.decide(end, &agent_call(MOBILE, end), &foreign));
    scheduled(p.decide(end, &agent_call("13900001111", end), &foreign));
    assert!(
        !format!("{ledger:?}").contains("key"),
        "the key stays out of logs"
    );
}

#[test]
fn the_reply_window_runs_from_the_send_time() {
    let p = policy();
    let end = sh(4, 14, 0, 0);
    let s = scheduled(p.decide(end, &agent_call(MOBILE, end), &SurveyLedger::default()));
    assert_eq!(s.reply_by, s.send_at.plus(48 * 3_600_000));
    assert!(!SurveyPolicy::is_expired(
        s.reply_by,
        Millis(s.reply_by.0 - 1)
    ));
    assert!(SurveyPolicy::is_expired(s.reply_by, s.reply_by));
    // Deferred overnight: the full 48 h from 08:00.
    let end = sh(4, 22, 0, 0);
    let s = scheduled(p.decide(end, &agent_call(MOBILE, end), &SurveyLedger::default()));
    assert_eq!(s.reply_by, sh(7, 8, 0, 0));
    assert_eq!(p.reply_deadline(sh(5, 9, 0, 0)), sh(7, 9, 0, 0));
}

#[test]
fn the_text_is_in_the_callers_language_or_the_default() {
    let p = policy();
    let end = sh(4, 14, 0, 0);
    let mut call = agent_call(MOBILE, end);
    call.language = Some("zh".into());
    let s = scheduled(p.decide(end, &call, &SurveyLedger::default()));
    assert_eq!(s.language, "zh");
    assert_eq!(
        s.text,
        "感谢致电Example Co，请为本次服务打分：回复1-5（5为非常满意），回复TD退订。"
    );
    for lang in [Some("fr"), None, Some("")] {
        call.language = lang.map(str::to_string);
        let s = scheduled(p.decide(end, &call, &SurveyLedger::default()));
        assert_eq!(s.language, "en", "{lang:?}");
        assert!(s.text.starts_with("Thank you for calling Example Co."));
    }
}

#[test]
fn numbers_that_cannot_take_a_text_are_skipped_with_their_reason() {
    let p = policy();
    let end = sh(4, 14, 0, 0);
    for (caller, reason) in [
        ("anonymous", SkipReason::Anonymous),
        ("", SkipReason::Anonymous),
        ("1001", SkipReason::Internal),
        ("2001", SkipReason::Internal),
        ("alice", SkipReason::Malformed),
        ("12", SkipReason::Internal),
        ("+12", SkipReason::Malformed),
        ("01088880000", SkipReason::NotMobile),
    ] {
        let d = p.decide(end, &agent_call(caller, end), &SurveyLedger::default());
        assert_eq!(skipped(d), reason, "{caller:?}");
    }
}

#[test]
fn which_calls_qualify() {
    let end = sh(4, 14, 0, 0);
    let ledger = SurveyLedger::default();
    let p = policy();
    let mut call = agent_call(MOBILE, end);
    call.outcome = CallOutcome::AgentHandled {
        agent: "1002".into(),
        queue: Some("tech".into()),
        talk_ms: 14_999,
    };
    assert_eq!(
        skipped(p.decide(end, &call, &ledger)),
        SkipReason::ShortTalk
    );
    call.outcome = CallOutcome::NotServed;
    assert_eq!(
        skipped(p.decide(end, &call, &ledger)),
        SkipReason::NotServed
    );
    call.outcome = CallOutcome::SelfServed;
    assert_eq!(
        skipped(p.decide(end, &call, &ledger)),
        SkipReason::NotSurveyed
    );

    let mut on = policy();
    on.self_served = true;
    let s = scheduled(on.decide(end, &call, &ledger));
    assert_eq!(s.text, "Example Co: did the menu help? Reply 1-5.");
    assert_eq!(s.owner, None);
    on.agent_handled = false;
    assert_eq!(
        skipped(on.decide(end, &agent_call(MOBILE, end), &ledger)),
        SkipReason::NotSurveyed
    );

    // Excluded anywhere on the way; included only by the answering queue.
    let mut p = policy();
    p.queues.exclude.insert("complaints".into());
    let mut call = agent_call(MOBILE, end);
    call.queues_visited = vec!["complaints".into(), "tech".into()];
    assert_eq!(
        skipped(p.decide(end, &call, &ledger)),
        SkipReason::QueueExcluded
    );
    let mut p = policy();
    p.queues.include.insert("after_sales".into());
    assert_eq!(
        skipped(p.decide(end, &agent_call(MOBILE, end), &ledger)),
        SkipReason::QueueExcluded
    );
    p.queues.include.insert("tech".into());
    scheduled(p.decide(end, &agent_call(MOBILE, end), &ledger));
    let mut direct = agent_call(MOBILE, end);
    direct.outcome = CallOutcome::AgentHandled {
        agent: "1002".into(),
        queue: None,
        talk_ms: 60_000,
    };
    assert_eq!(
        skipped(p.decide(end, &direct, &ledger)),
        SkipReason::QueueExcluded
    );
    scheduled(policy().decide(end, &direct, &ledger));
}

#[test]
fn queue_placeholder_shows_the_label() {
    let mut p = policy();
    p.default_texts.csat = Template::parse("{queue}/{agent}").unwrap();
    let end = sh(4, 14, 0, 0);
    let s = scheduled(p.decide(end, &agent_call(MOBILE, end), &SurveyLedger::default()));
    assert_eq!(s.text, "Technical support/1002");
    assert_eq!(p.fields("1", Some("unlabelled")).queue, "unlabelled");
    // An agent with a display id (agents.toml `display_id`) is shown by it, never by name;
    // the survey still belongs to the extension.
    assert_eq!(p.fields("1009", None).agent, "A-09");
}

#[test]
fn complaint_calls_and_low_scores_open_a_task_for_the_answering_agent() {
    let p = policy();
    let end = sh(4, 14, 0, 0);
    let day = 24 * 3_600_000;

    let mut call = agent_call(MOBILE, end);
    call.outcome = CallOutcome::AgentHandled {
        agent: "1003".into(),
        queue: Some("complaints".into()),
        talk_ms: 300_000,
    };
    call.queues_visited = vec!["complaints".into()];
    let task = p.follow_up_for_call(&call).expect("complaint task");
    assert_eq!(task.owner.as_deref(), Some("1003"));
    assert_eq!(task.reason, FollowUpReason::ComplaintQueue);
    assert_eq!(task.due_at, end.plus(day));
    // Surveyed as usual; a low score opens no second task.
    let s = scheduled(p.decide(end, &call, &SurveyLedger::default()));
    assert!(s.complaint);
    assert_eq!(p.follow_up_for_answer(&s, 1, sh(4, 15, 0, 0)), None);
    // A short complaint call still gets its task; a caller lost in the queue has no owner.
    if let CallOutcome::AgentHandled { talk_ms, .. } = &mut call.outcome {
        *talk_ms = 1000;
    }
    assert!(p.follow_up_for_call(&call).is_some());
    call.outcome = CallOutcome::NotServed;
    assert_eq!(p.follow_up_for_call(&call), None);

    // Other queues: no task at the end; a 1 or 2 opens one, a 3 does not.
    let call = agent_call(MOBILE, end);
    assert_eq!(p.follow_up_for_call(&call), None);
    let s = scheduled(p.decide(end, &call, &SurveyLedger::default()));
    let answered = sh(4, 18, 0, 0);
    for score in [1, 2] {
        let task = p
            .follow_up_for_answer(&s, score, answered)
            .expect("low score");
        assert_eq!(task.owner.as_deref(), Some("1002"));
        assert_eq!(task.reason, FollowUpReason::LowScore(score));
        assert_eq!(task.due_at, answered.plus(day));
        assert_eq!(task.call_id, "c1");
    }
    for score in [3, 4, 5] {
        assert_eq!(p.follow_up_for_answer(&s, score, answered), None);
    }
}
