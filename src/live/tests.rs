//! The read model fed hand-built records: no IO but the shipped config folder.

use super::model::{LiveModel, ModelConfig};
use super::snapshot::Section;
use crate::config::wallboard::Wallboard;
use crate::engine::live::{AgentCounts, LiveEvent, QueueCounts};
use crate::engine::record::{EndedBy, IvrOutcome, Record};
use crate::engine::time::Millis;
use crate::kpi::{self, CallTimes, QueueStats};

/// 2025-12-05 03:00 UTC = 11:00 in Shanghai; the local day began at 1_764_864_000_000.
const NOON: u64 = 1_764_903_600_000;
const DAY_START: u64 = 1_764_864_000_000;

fn cfg() -> ModelConfig {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let c = crate::config::load(&dir).expect("shipped config");
    ModelConfig {
        time_zone: chrono_tz::Asia::Shanghai,
        wallboard: Wallboard::default(),
        queues: c.queues.clone(),
        agents: c.agents.clone(),
    }
}

fn at(s: u64) -> Millis {
    Millis(NOON + s * 1000)
}

fn started(id: &str, t: u64) -> Record {
    Record::CallStarted {
        call_id: id.into(),
        sip_call_id: format!("sip-{id}"),
        caller: "+8613812345678".into(),
        dialled: "4000".into(),
        transport: "udp".into(),
        arrived_at: at(t),
        ring_cycle_ms: 6000,
    }
}

fn queued(id: &str, t: u64, queue: &str, priority: i32) -> Record {
    Record::CallQueued {
        call_id: id.into(),
        at: at(t),
        queue: queue.into(),
        priority,
    }
}

fn state(agent: &str, t: u64, s: &str, reason: Option<&str>) -> Record {
    Record::AgentStateChanged {
        agent: agent.into(),
        at: at(t),
        state: s.into(),
        reason: reason.map(str::to_string),
    }
}

fn ended(id: &str, t: u64, by: EndedBy) -> Record {
    Record::CallEnded {
        call_id: id.into(),
        ended_at: at(t),
        ended_by: by,
        reason: "bye".into(),
        final_status: 200,
    }
}

/// A call through the IVR into `queue`, answered by `agent` after `wait` s, talking
/// `talk` s, wrapping up `acw` s. Returns the records in order.
fn handled(
    id: &str,
    t: u64,
    queue: &str,
    agent: &str,
    wait: u64,
    talk: u64,
    acw: u64,
) -> Vec<Record> {
    let q = t + 5;
    let ans = q + wait;
    vec![
        started(id, t),
        Record::CallAnswered {
            call_id: id.into(),
            answered_at: at(t + 1),
            within_three_rings: true,
        },
        Record::IvrLeft {
            call_id: id.into(),
            at: at(q),
            outcome: IvrOutcome::Queued,
        },
        queued(id, q, queue, 0),
        Record::OfferStarted {
            call_id: id.into(),
            attempt: 1,
            agent: agent.into(),
            at: at(ans - 1),
        },
        Record::AgentAnswered {
            call_id: id.into(),
            agent: agent.into(),
            at: at(ans),
        },
        ended(id, ans + talk, EndedBy::Caller),
        Record::WrapUpEnded {
            call_id: id.into(),
            agent: agent.into(),
            at: at(ans + talk + acw),
        },
    ]
}

fn model() -> LiveModel {
    LiveModel::new(cfg(), at(0))
}

#[test]
fn a_caller_in_the_ivr_then_waiting_then_talking() {
    let mut m = model();
    assert_eq!(m.day_start(), Millis(DAY_START));
    m.take_dirty();
    m.apply(&started("c1", 0));
    m.apply(&Record::IvrStep {
        call_id: "c1".into(),
        seq: 0,
        at: at(1),
        node: "main_menu".into(),
        kind: "menu".into(),
        digits: None,
        detail: None,
    });
    let calls = m.calls_view();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].state, "ivr");
    assert_eq!(calls[0].ivr_node.as_deref(), Some("main_menu"));
    assert_eq!(calls[0].number, "+86 138****5678");
    assert_eq!(m.take_dirty(), Section::Calls.bit());

    m.apply_event(&LiveEvent::CallerQueued {
        call_id: "c1".into(),
        queue: "tech".into(),
        language: "zh".into(),
    });
    m.apply(&queued("c1", 5, "tech", 0));
    m.apply(&started("c2", 6));
    m.apply(&queued("c2", 7, "tech", 10));
    let w = m.waiting();
    assert_eq!(w.len(), 2);
    // The VIP goes first although they came later.
    assert_eq!(
        (w[0].call_id.as_str(), w[0].position, w[0].vip),
        ("c2", 1, true)
    );
    assert_eq!(
        (w[1].call_id.as_str(), w[1].position, w[1].vip),
        ("c1", 2, false)
    );
    assert_eq!(w[1].language.as_deref(), Some("zh"));
    assert_eq!(w[1].since, at(5).as_u64());
    assert!(m.take_dirty() & Section::Waiting.bit() != 0);

    m.apply(&Record::OfferStarted {
        call_id: "c2".into(),
        attempt: 1,
        agent: "1001".into(),
        at: at(8),
    });
    m.apply(&state("1001", 8, "reserved", None));
    m.apply(&Record::AgentAnswered {
        call_id: "c2".into(),
        agent: "1001".into(),
        at: at(10),
    });
    m.apply(&state("1001", 10, "on_call", None));
    let w = m.waiting();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].position, 1);
    let agents = m.agents_view();
    let alice = agents.iter().find(|a| a.extension == "1001").unwrap();
    assert_eq!(alice.name, "Alice");
    assert_eq!(alice.state, "on_call");
    let call = alice.call.as_ref().unwrap();
    assert_eq!(
        (call.call_id.as_str(), call.queue.as_deref()),
        ("c2", Some("tech"))
    );
    assert_eq!(call.since, at(10).as_u64());
    let talking = m
        .calls_view()
        .into_iter()
        .find(|c| c.call_id == "c2")
        .unwrap();
    assert_eq!(
        (talking.state.as_str(), talking.agent.as_deref()),
        ("talking", Some("1001"))
    );

    m.apply(&ended("c2", 70, EndedBy::Agent));
    m.apply(&state("1001", 70, "wrap_up", None));
    let alice = m
        .agents_view()
        .into_iter()
        .find(|a| a.extension == "1001")
        .unwrap();
    assert_eq!(alice.state, "wrap_up");
    assert!(
        alice.call.is_some(),
        "the wrap-up still belongs to the call"
    );
    m.apply(&Record::WrapUpEnded {
        call_id: "c2".into(),
        agent: "1001".into(),
        at: at(100),
    });
    m.apply(&state("1001", 100, "ready", None));
    let alice = m
        .agents_view()
        .into_iter()
        .find(|a| a.extension == "1001")
        .unwrap();
    assert!(alice.call.is_none());
    assert_eq!(alice.calls_today, 1);
    assert_eq!(alice.aht_secs_today, Some(90.0));
    assert_eq!(m.calls_view().len(), 1);
}

#[test]
fn todays_figures_equal_kpi_over_the_same_calls() {
    let mut m = model();
    let mut recs = Vec::new();
    recs.extend(handled("a", 0, "tech", "1001", 10, 100, 20));
    recs.extend(handled("b", 200, "tech", "1002", 40, 50, 10));
    recs.extend(handled("c", 400, "after_sales", "1003", 3, 30, 5));
    // Abandoned after 30 s in queue, and a short abandon after 2 s.
    recs.extend([
        started("d", 600),
        queued("d", 605, "tech", 0),
        ended("d", 635, EndedBy::Caller),
    ]);
    recs.extend([
        started("e", 700),
        queued("e", 705, "tech", 0),
        ended("e", 707, EndedBy::Caller),
    ]);
    // Self-served in the IVR.
    recs.extend([
        started("f", 800),
        Record::CallAnswered {
            call_id: "f".into(),
            answered_at: at(820),
            within_three_rings: false,
        },
        Record::IvrLeft {
            call_id: "f".into(),
            at: at(850),
            outcome: IvrOutcome::SelfServed,
        },
        ended("f", 851, EndedBy::Caller),
    ]);
    for r in &recs {
        m.apply(r);
    }
    // The same calls through kpi directly.
    let times = |q: &str| -> Vec<CallTimes> {
        let mut v = Vec::new();
        for id in ["a", "b", "c", "d", "e"] {
            let t = m.today[id].times.clone();
            if t.queue.as_deref() == Some(q) {
                v.push(t);
            }
        }
        v
    };
    let mut tech = QueueStats::default();
    for t in times("tech") {
        tech.add(&t, 20_000);
    }
    assert_eq!((tech.offered, tech.answered, tech.abandoned), (4, 2, 2));
    let snap = m.snapshot(at(890));
    let q = snap.queues.iter().find(|q| q.name == "tech").unwrap();
    assert_eq!(q.label, "Technical support");
    assert_eq!(
        (q.today.offered, q.today.answered, q.today.abandoned),
        (4, 2, 2)
    );
    // SL: 1 of (4 - 1 short abandon) within 20 s.
    assert_eq!(q.today.service_level_pct, Some(33.3));
    assert_eq!(tech.service_level(), Some(1.0 / 3.0));
    assert_eq!(q.today.asa_secs, Some(25.0));
    assert_eq!(q.today.aht_secs, Some(90.0));
    assert_eq!(q.today.abandon_pct, Some(50.0));
    assert_eq!(q.today.frt_secs, Some(tech.mean_frt_ms().unwrap() / 1000.0));
    let t = &snap.totals;
    assert_eq!((t.offered, t.answered, t.abandoned), (5, 3, 2));
    // IVR: 4 answered calls entered the IVR (a, b, c, f; d and e never were answered);
    // f self-served; f's answer came after 20 s > 3 rings of 6 s.
    let facts: Vec<_> = m.today.values().map(|d| d.facts).collect();
    let summary = kpi::Summary::of(&facts);
    assert_eq!(
        t.containment_pct,
        Some((summary.ivr_containment().unwrap() * 1000.0).round() / 10.0)
    );
    assert_eq!(t.containment_pct, Some(25.0));
    assert_eq!(t.three_ring_pct, Some(75.0));
    assert_eq!(t.csat_pct, None);
    // Intervals from local midnight to now; the calls are in the 11:00 bucket.
    assert_eq!(snap.intervals.first().unwrap().start, DAY_START);
    let last = snap.intervals.last().unwrap();
    assert_eq!(last.start, NOON);
    assert_eq!((last.offered, last.answered, last.abandoned), (5, 3, 2));
    assert_eq!(snap.intervals.len(), 11 * 4 + 1);
    assert_eq!(snap.time_zone, "Asia/Shanghai");
}

#[test]
fn seeded_calls_and_surveys_count_today() {
    let mut m = model();
    let t = CallTimes {
        arrived_at: at(0),
        queue: Some("tech".into()),
        queued_at: Some(at(5)),
        agent: Some("1002".into()),
        agent_answered_at: Some(at(10)),
        ended_at: Some(at(70)),
        ended_by: Some(EndedBy::Caller),
        wrapup_ended_at: Some(at(80)),
        hold_ms: 0,
    };
    let facts = kpi::CallFacts {
        arrived_at: at(0),
        answered_at: Some(at(1)),
        ring_cycle_ms: Some(6000),
        ivr_outcome: Some(IvrOutcome::Queued),
        hold_ms: 0,
    };
    m.seed_call("old".into(), t, facts);
    // Yesterday's call does not count.
    let mut y = CallTimes {
        arrived_at: Millis(DAY_START - 3_600_000),
        queued_at: Some(Millis(DAY_START - 3_590_000)),
        queue: Some("tech".into()),
        ..Default::default()
    };
    y.ended_at = Some(Millis(DAY_START - 3_500_000));
    m.seed_call("yesterday".into(), y, kpi::CallFacts::default());
    let mut s = kpi::survey::SurveyStats {
        sent: 4,
        answered: 2,
        csat_satisfied: 1,
        ..Default::default()
    };
    m.seed_surveys(s, Default::default());
    let snap = m.snapshot(at(100));
    assert_eq!(snap.totals.offered, 1);
    assert_eq!(snap.totals.response_rate_pct, Some(50.0));
    assert_eq!(snap.totals.csat_pct, Some(50.0));
    // A survey decided now, sent, answered 5 (twice: counted once); unknown ids ignored.
    m.apply(&Record::SurveyScheduled {
        call_id: "old".into(),
        survey_id: 77,
        at: at(90),
        number: "+8613812345678".into(),
        number_hash: "0".repeat(64),
        language: "zh".into(),
        text: "?".into(),
        send_at: at(150),
        deferred: false,
        reply_by: at(90_000),
        agent: Some("1002".into()),
        queue: Some("tech".into()),
        complaint: false,
    });
    m.survey_sent(77);
    m.survey_sent(78);
    m.survey_answered(77, 5);
    m.survey_answered(77, 1);
    s.sent += 1;
    s.answered += 1;
    s.csat_satisfied += 1;
    let totals = m.totals();
    assert_eq!(
        totals.csat_pct,
        Some((s.csat().unwrap() * 1000.0).round() / 10.0)
    );
    assert_eq!(totals.response_rate_pct, Some(60.0));
    let tech = m
        .queues(at(200))
        .into_iter()
        .find(|q| q.name == "tech")
        .unwrap();
    assert_eq!(
        (tech.today.csat_pct, tech.today.response_rate_pct),
        (Some(100.0), Some(100.0))
    );
    let bob = m
        .agents_view()
        .into_iter()
        .find(|a| a.extension == "1002")
        .unwrap();
    assert_eq!((bob.calls_today, bob.aht_secs_today), (1, Some(70.0)));
}

#[test]
fn queue_figures_staffing_and_alerts() {
    let mut m = model();
    let counts = QueueCounts {
        waiting: 2,
        longest_wait_since: Some(at(0)),
        agents: AgentCounts::default(),
    };
    m.apply_event(&LiveEvent::QueueFigures {
        queue: "tech".into(),
        counts,
    });
    m.apply(&started("c1", 0));
    m.apply(&queued("c1", 1, "tech", 0));
    m.tick(at(10));
    let kinds: Vec<_> = m.alerts().iter().map(|a| a.kind.clone()).collect();
    assert_eq!(kinds, ["queue_unstaffed"]);
    assert_eq!(m.alerts()[0].value, Some(2.0));
    m.take_dirty();
    // Nothing changed: no section is dirty.
    m.tick(at(11));
    assert_eq!(m.take_dirty(), 0);
    // Past the FRT target (20 s from arrival).
    m.tick(at(21));
    assert!(m.alerts().iter().any(|a| a.kind == "wait_over_frt"
        && a.call_id.as_deref() == Some("c1")
        && a.since == at(0).as_u64()));
    assert_eq!(m.take_dirty(), Section::Alerts.bit());

    // An agent on a break for longer than 900 s.
    m.apply(&state("1003", 30, "not_ready", Some("break")));
    m.tick(at(30 + 901));
    assert!(m
        .alerts()
        .iter()
        .any(|a| a.kind == "agent_not_ready_long" && a.agent.as_deref() == Some("1003")));

    // Service level low only from 5 calls on: 5 calls abandoned after 30 s.
    for i in 0..5 {
        let id = format!("x{i}");
        m.apply(&started(&id, 1000));
        m.apply(&queued(&id, 1001, "after_sales", 0));
        m.apply(&ended(&id, 1031, EndedBy::Caller));
    }
    m.tick(at(1040));
    let low = m
        .alerts()
        .into_iter()
        .find(|a| a.kind == "service_level_low")
        .unwrap();
    assert_eq!(
        (low.queue.as_deref(), low.value, low.threshold),
        (Some("after_sales"), Some(0.0), 80.0)
    );

    // Staffing: 5 arrivals in the last hour of after_sales at its default handle time.
    let q = m
        .queues(at(1040))
        .into_iter()
        .find(|q| q.name == "after_sales")
        .unwrap();
    assert_eq!(q.staffing.arrivals_last_hour, 5);
    assert!(q.staffing.needed >= 1);
    let tech = m
        .queues(at(1040))
        .into_iter()
        .find(|q| q.name == "tech")
        .unwrap();
    assert_eq!(
        (tech.waiting, tech.longest_wait_since),
        (2, Some(at(0).as_u64()))
    );
    // An hour later the arrivals have left the window.
    m.tick(at(1040 + 3600));
    let q = m
        .queues(at(1040 + 3600))
        .into_iter()
        .find(|q| q.name == "after_sales")
        .unwrap();
    assert_eq!((q.staffing.arrivals_last_hour, q.staffing.needed), (0, 0));
}

#[test]
fn midnight_starts_a_new_day_keeping_calls_in_progress() {
    let mut m = model();
    for r in handled("a", 0, "tech", "1001", 10, 100, 20) {
        m.apply(&r);
    }
    m.apply(&started("live", 200));
    m.apply(&queued("live", 205, "tech", 0));
    // The caller who just started waiting is undecided: not yet counted.
    assert_eq!(m.totals().offered, 1);
    m.tick(at(230));
    assert_eq!(m.totals().offered, 2);
    let midnight = DAY_START + 86_400_000;
    m.take_dirty();
    m.tick(Millis(midnight));
    assert_eq!(m.day_start(), Millis(midnight));
    assert_eq!(m.take_dirty(), 0x7f);
    let snap = m.snapshot(Millis(midnight + 1000));
    assert_eq!(snap.totals.offered, 0, "yesterday's calls are not today's");
    assert_eq!(snap.waiting.len(), 1, "the caller still waits");
    assert_eq!(snap.intervals.len(), 1);
    assert!(snap.agents.iter().all(|a| a.calls_today == 0));
}

#[test]
fn snapshot_serialises_as_the_contract_says() {
    let mut m = model();
    m.apply(&started("c1", 0));
    let v = serde_json::to_value(m.snapshot(at(1))).unwrap();
    for key in [
        "type",
        "seq",
        "at",
        "day_start",
        "time_zone",
        "targets",
        "totals",
        "queues",
        "agents",
        "waiting",
        "calls",
        "alerts",
        "intervals",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert_eq!(v["type"], "snapshot");
    assert_eq!(v["targets"]["not_ready_max_secs"], 900);
    assert_eq!(v["totals"]["service_level_pct"], serde_json::Value::Null);
    assert_eq!(v["queues"][0]["agents"]["logged_in"], 0);
    assert_eq!(v["calls"][0]["state"], "ivr");
}

#[test]
fn a_waiting_caller_counts_in_the_service_level_only_once_past_the_threshold() {
    let mut m = LiveModel::new(cfg(), at(0));
    let sl = |m: &mut LiveModel| {
        let snap = m.snapshot(m.now);
        let q = snap.queues.iter().find(|q| q.name == "tech").unwrap();
        (q.today.offered, q.today.service_level_pct)
    };
    m.apply(&started("w", 10));
    m.apply(&queued("w", 15, "tech", 0));
    // Waiting 5 s of tech's 20: undecided, not a 0 % service level.
    m.tick(at(20));
    assert_eq!(sl(&mut m), (0, None));
    m.tick(at(35));
    assert_eq!(sl(&mut m), (0, None), "20 s exactly is still within");
    // 21 s: can no longer be answered within 20 s, so it counts as missed.
    m.tick(at(36));
    assert_eq!(sl(&mut m), (1, Some(0.0)));
    // Abandoned at 40 s: still offered once, still missed.
    m.apply(&ended("w", 40, EndedBy::Caller));
    m.tick(at(41));
    assert_eq!(sl(&mut m), (1, Some(0.0)));
}

#[test]
fn staffing_uses_the_last_hours_aht() {
    let mut m = model();
    // Talk + wrap-up: 600 s early on, 120 s more than an hour later.
    for r in handled("old", 0, "tech", "1001", 5, 500, 100) {
        m.apply(&r);
    }
    for r in handled("new", 5000, "tech", "1002", 5, 100, 20) {
        m.apply(&r);
    }
    let aht = |m: &mut LiveModel, s: u64| {
        let q = m
            .queues(at(s))
            .into_iter()
            .find(|q| q.name == "tech")
            .unwrap();
        q.staffing.aht_secs
    };
    assert_eq!(
        aht(&mut m, 5200),
        120.0,
        "only the call handled in the last hour"
    );
    assert_eq!(
        aht(&mut m, 5200 + 3600),
        360.0,
        "nobody finished in the last hour: today's AHT"
    );
}
