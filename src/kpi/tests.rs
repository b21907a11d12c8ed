use super::*;

#[test]
fn rings_before_answer_hand_worked() {
    // 6 s cycle (2 s on / 4 s off), answered 9 s after arrival: 1.5 rings.
    let r = rings_before_answer(Millis(1_000), Some(Millis(10_000)), Some(6_000));
    assert_eq!(r, Some(1.5));
    assert_eq!(rings_before_answer(Millis(1_000), None, Some(6_000)), None);
    assert_eq!(
        rings_before_answer(Millis(1_000), Some(Millis(2_000)), Some(0)),
        None
    );
}

#[test]
fn within_three_rings_boundary_is_inclusive() {
    let cycle = Some(5_000);
    assert_eq!(
        within_three_rings(Millis(0), Some(Millis(15_000)), cycle),
        Some(true)
    );
    assert_eq!(
        within_three_rings(Millis(0), Some(Millis(15_001)), cycle),
        Some(false)
    );
    assert_eq!(within_three_rings(Millis(0), None, cycle), None);
    assert_eq!(within_three_rings(Millis(0), Some(Millis(1)), None), None);
}

#[test]
fn hold_ms_closes_open_segments_at_call_end_or_last_event() {
    let segs = [
        HoldSpan {
            started_at: Millis(1_000),
            ended_at: Some(Millis(4_000)),
        },
        HoldSpan {
            started_at: Millis(10_000),
            ended_at: None,
        },
    ];
    assert_eq!(
        hold_ms(&segs, Some(Millis(12_500)), Millis(12_500)),
        3_000 + 2_500
    );
    assert_eq!(hold_ms(&segs, None, Millis(11_000)), 3_000 + 1_000);
    assert_eq!(hold_ms(&[], None, Millis(5)), 0);
}

#[test]
fn summary_hand_worked() {
    let answered = |delay: u64, outcome| CallFacts {
        arrived_at: Millis(100_000),
        answered_at: Some(Millis(100_000 + delay)),
        ring_cycle_ms: Some(6_000),
        ivr_outcome: outcome,
        hold_ms: 0,
    };
    let calls = [
        answered(2_000, Some(IvrOutcome::SelfServed)),
        answered(18_000, Some(IvrOutcome::SelfServed)),
        answered(19_000, Some(IvrOutcome::Queued)),
        answered(1_000, None),
        CallFacts {
            arrived_at: Millis(0),
            answered_at: None,
            ring_cycle_ms: Some(6_000),
            ivr_outcome: None,
            hold_ms: 7,
        },
    ];
    let s = Summary::of(&calls);
    assert_eq!(s.calls, 5);
    assert_eq!(s.answered, 4);
    assert_eq!(s.answered_within_three_rings, 3);
    assert_eq!(s.answer_delay_ms_total, 40_000);
    assert_eq!(s.self_served, 2);
    assert_eq!(s.queued, 1);
    assert_eq!(s.hold_ms_total, 7);
    assert_eq!(s.three_ring_compliance(), Some(0.75));
    assert_eq!(s.ivr_containment(), Some(0.5));
    assert_eq!(s.mean_answer_delay_ms(), Some(10_000.0));
    assert_eq!(Summary::default().ivr_containment(), None);
}
fn call(queued: u64, answered: Option<u64>, ended: Option<(u64, EndedBy)>) -> CallTimes {
    CallTimes {
        arrived_at: Millis(0),
        queue: Some("support".into()),
        queued_at: Some(Millis(queued)),
        agent: answered.map(|_| "alice".into()),
        agent_answered_at: answered.map(Millis),
        ended_at: ended.map(|e| Millis(e.0)),
        ended_by: ended.map(|e| e.1),
        wrapup_ended_at: None,
        hold_ms: 0,
    }
}

#[test]
fn per_call_figures_hand_worked() {
    // Arrived 0, queued 10 s, agent answers 25 s, 30 s hold, ends 205 s, wrap-up 235 s.
    let mut c = call(10_000, Some(25_000), Some((205_000, EndedBy::Agent)));
    c.hold_ms = 30_000;
    c.wrapup_ended_at = Some(Millis(235_000));
    assert_eq!(c.frt_ms(), Some(25_000));
    assert_eq!(c.queue_wait_ms(), Some(15_000));
    assert_eq!(c.talk_ms(), Some(150_000));
    assert_eq!(c.acw_ms(), Some(30_000));
    assert_eq!(c.aht_ms(), Some(210_000));
    assert!(!c.abandoned());

    // Abandoned after 4 s in queue: short abandon; wait measured to the hang-up.
    let a = call(10_000, None, Some((14_000, EndedBy::Caller)));
    assert!(a.abandoned() && a.short_abandon());
    assert_eq!(a.queue_wait_ms(), Some(4_000));
    let long = call(10_000, None, Some((15_000, EndedBy::Caller)));
    assert!(long.abandoned() && !long.short_abandon());
    // Ended by the system before an agent answered: not abandoned, no wait.
    let s = call(10_000, None, Some((15_000, EndedBy::System)));
    assert!(!s.abandoned());
    assert_eq!(s.queue_wait_ms(), None);
    // Never queued: never abandoned.
    let mut n = call(0, None, Some((1, EndedBy::Caller)));
    n.queued_at = None;
    assert!(!n.abandoned());
    // Hold longer than the talk window: talk is 0, not negative.
    assert_eq!(talk_ms(Some(Millis(10)), Some(Millis(20)), 50), Some(0));
    // No wrap-up end seen: no AHT.
    let open = call(0, Some(1_000), Some((9_000, EndedBy::Caller)));
    assert_eq!(open.aht_ms(), None);
    assert_eq!(open.talk_ms(), Some(8_000));
}

#[test]
fn queue_stats_hand_worked() {
    let mut handled = call(0, Some(12_000), Some((72_000, EndedBy::Caller)));
    handled.wrapup_ended_at = Some(Millis(82_000));
    let calls = vec![
        handled,
        call(1_000, Some(31_000), Some((40_000, EndedBy::Agent))),
        call(2_000, None, Some((4_000, EndedBy::Caller))),
        call(3_000, None, Some((63_000, EndedBy::Caller))),
        call(4_000, None, None),
    ];
    let m = queue_stats(
        &calls,
        Range::default(),
        Interval::Day,
        DEFAULT_SERVICE_LEVEL_MS,
    );
    assert_eq!(m.len(), 1);
    let s = m[&("support".to_string(), Millis(0))];
    assert_eq!(s.offered, 5);
    assert_eq!(s.answered, 2);
    assert_eq!(s.answered_within_sl, 1);
    assert_eq!(s.abandoned, 2);
    assert_eq!(s.short_abandoned, 1);
    assert_eq!(s.answer_wait_ms_total, 12_000 + 30_000);
    assert_eq!(s.handled, 1);
    assert_eq!(s.aht_ms_total, 60_000 + 10_000);
    // SL = 1 / (5 - 1); ASA = 21 s; abandonment 2/5.
    assert_eq!(s.service_level(), Some(0.25));
    assert_eq!(s.asa_ms(), Some(21_000.0));
    assert_eq!(s.abandonment_rate(), Some(0.4));
    assert_eq!(s.aht_ms(), Some(70_000.0));
    // Range filters on queued_at.
    let r = Range {
        since: Some(Millis(1_000)),
        until: Some(Millis(3_000)),
    };
    let m = queue_stats(&calls, r, Interval::Quarter, 20_000);
    assert_eq!(m[&("support".to_string(), Millis(0))].offered, 2);
}

#[test]
fn staffed_time_splits_across_buckets_and_skips_breaks() {
    let ch = |at: u64, seq: i64, state: &str| StateChange {
        agent: "alice".into(),
        at: Millis(at),
        seq,
        state: state.into(),
        reason: None,
    };
    let q = 900_000;
    let changes = vec![
        ch(q - 100_000, 1, "ready"),
        ch(q + 50_000, 2, "not_ready"),
        ch(q + 80_000, 3, "on_call"),
        ch(2 * q + 10, 4, "logged_out"),
    ];
    let m = staffed_ms(&changes, None, Millis(3 * q), Interval::Quarter);
    assert_eq!(m[&("alice".to_string(), Millis(0))], 100_000);
    assert_eq!(m[&("alice".to_string(), Millis(q))], 50_000 + (q - 80_000));
    assert_eq!(m[&("alice".to_string(), Millis(2 * q))], 10);
    // Clipped to since; the last state runs to `until`.
    let m = staffed_ms(&changes[..1], Some(Millis(q)), Millis(q + 5), Interval::Day);
    assert_eq!(m[&("alice".to_string(), Millis(0))], 5);

    let mut c = call(0, Some(q + 100_000), Some((q + 400_000, EndedBy::Agent)));
    c.wrapup_ended_at = Some(Millis(q + 460_000));
    let offers = [
        OfferFacts {
            agent: "alice".into(),
            offered_at: Millis(q + 90_000),
            outcome: Some("answered".into()),
        },
        OfferFacts {
            agent: "alice".into(),
            offered_at: Millis(q + 80_000),
            outcome: Some("no_answer".into()),
        },
    ];
    let m = agent_stats(
        &[c],
        &offers,
        &changes,
        None,
        Millis(3 * q),
        Interval::Quarter,
    );
    let a = m[&("alice".to_string(), Millis(q))];
    assert_eq!(a.offers, 2);
    assert_eq!(a.offers_answered, 1);
    assert_eq!(a.offers_no_answer, 1);
    assert_eq!(a.answered, 1);
    assert_eq!(a.handled, 1);
    assert_eq!(a.aht_ms_total, 360_000);
    assert_eq!(a.occupancy(), Some(360_000.0 / a.staffed_ms as f64));
}
