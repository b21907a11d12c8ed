//! ACD scenarios on a simulated clock: virtual time jumps straight to the next deadline, so
//! "ring no answer after 18 s, offer the next agent" runs in microseconds.

use ccswitch::engine::acd::{
    Acd, AcdAction, AcdEvent, AgentProfile, AgentState, ExitReason, ExitThen, MaxWaitPolicy,
    NoAgentsPolicy, OfferOutcome, QueueSet, QueueSpec, QueuedCall, Relaxation, VipRules,
};
use ccswitch::engine::Millis;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

struct Sim {
    acd: Acd,
    now: Millis,
    actions: Vec<AcdAction>,
    events: Vec<AcdEvent>,
}

impl Sim {
    fn new(queues: Vec<QueueSpec>, agents: Vec<AgentProfile>) -> Sim {
        let vip = VipRules {
            numbers: ["+8610888".to_string()].into(),
            prefixes: vec!["+86999".into()],
            priority_boost: 10,
        };
        let set = QueueSet::new(queues, vip, 86_400_000, 20).expect("queues");
        Sim {
            acd: Acd::new(Arc::new(set), agents),
            now: Millis(1_000_000),
            actions: Vec::new(),
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(a) = self.acd.poll_action() {
            self.actions.push(a);
        }
        while let Some(e) = self.acd.poll_event() {
            self.events.push(e);
        }
        self.acd.check_invariants().expect("invariants");
    }

    /// Runs every deadline up to `now + ms`, in order.
    fn advance(&mut self, ms: u64) {
        let end = self.now.plus(ms);
        while let Some(t) = self.acd.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.acd.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    fn take_actions(&mut self) -> Vec<AcdAction> {
        self.drain();
        std::mem::take(&mut self.actions)
    }

    fn take_events(&mut self) -> Vec<AcdEvent> {
        self.drain();
        std::mem::take(&mut self.events)
    }

    fn login(&mut self, agents: &[&str]) {
        for a in agents {
            self.acd.login(self.now, a).expect("login");
        }
        self.drain();
    }

    fn call(&mut self, call: u64, caller: &str, queue: &str) {
        self.call_lang(call, caller, queue, None);
    }

    fn call_lang(&mut self, call: u64, caller: &str, queue: &str, lang: Option<&str>) {
        self.acd
            .enqueue(
                self.now,
                QueuedCall {
                    call,
                    caller: caller.into(),
                    queue: queue.into(),
                    language: lang.map(str::to_string),
                    priority: 0,
                },
            )
            .expect("enqueue");
        self.drain();
    }

    fn state(&self, agent: &str) -> AgentState {
        self.acd.agent_state(agent).cloned().expect("agent")
    }
}

fn agent(id: &str, skills: &[(&str, u8)], langs: &[&str], queues: &[&str]) -> AgentProfile {
    AgentProfile {
        id: id.into(),
        skills: skills.iter().map(|(s, l)| (s.to_string(), *l)).collect(),
        languages: langs.iter().map(|l| l.to_string()).collect(),
        queues: queues.iter().map(|q| q.to_string()).collect(),
    }
}

fn tech() -> QueueSpec {
    let mut q = QueueSpec::new("tech", "tech", 3);
    q.relax = vec![Relaxation {
        after_ms: 60_000,
        min_proficiency: Some(1),
        alt_skill: None,
    }];
    q
}

/// A queue that keeps callers waiting with nobody logged in (for scenarios about other
/// things that start with an empty room).
fn waits(mut q: QueueSpec) -> QueueSpec {
    q.when_no_agents = NoAgentsPolicy::Wait;
    q
}

fn offers(actions: &[AcdAction]) -> Vec<(u64, String, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            AcdAction::Offer {
                call,
                agent,
                attempt,
                ..
            } => Some((*call, agent.clone(), *attempt)),
            _ => None,
        })
        .collect()
}

fn offer(call: u64, agent: &str, attempt: u32) -> (u64, String, u32) {
    (call, agent.to_string(), attempt)
}

fn outcomes(events: &[AcdEvent]) -> Vec<(String, &'static str)> {
    events
        .iter()
        .filter_map(|e| match e {
            AcdEvent::OfferEnded { agent, outcome, .. } => Some((agent.clone(), *outcome)),
            _ => None,
        })
        .collect()
}

fn two_tech_agents() -> Sim {
    let mut s = Sim::new(
        vec![tech()],
        vec![
            agent("1001", &[("tech", 5)], &["en"], &["tech"]),
            agent("1002", &[("tech", 4)], &["en", "zh"], &["tech"]),
        ],
    );
    s.login(&["1001", "1002"]);
    s.take_events();
    s
}

#[test]
fn best_proficiency_gets_the_offer_and_ring_no_answer_moves_on() {
    let mut s = two_tech_agents();
    s.call(1, "+8613800000001", "tech");
    let a = s.take_actions();
    assert_eq!(offers(&a), vec![offer(1, "1001", 1)]);
    assert!(a
        .iter()
        .any(|x| matches!(x, AcdAction::PlayHold { prompt, .. } if prompt == "hold_music")));
    assert_eq!(s.state("1001"), AgentState::Reserved { call: 1 });
    s.advance(17_999);
    assert!(s.take_actions().is_empty(), "still ringing");
    s.advance(1);
    let a = s.take_actions();
    assert_eq!(
        a[0],
        AcdAction::CancelOffer {
            call: 1,
            agent: "1001".into()
        }
    );
    assert_eq!(offers(&a), vec![offer(1, "1002", 2)]);
    assert_eq!(s.state("1001"), AgentState::NotReady("missed_call".into()));
    let ev = s.take_events();
    assert_eq!(outcomes(&ev), vec![("1001".to_string(), "no_answer")]);
    assert!(ev.iter().any(|e| matches!(e, AcdEvent::AgentState { agent, state: "not_ready", reason: Some(r), .. } if agent == "1001" && r == "missed_call")));
    s.acd.offer_answered(s.now, 1, "1002").unwrap();
    let ev = s.take_events();
    assert_eq!(outcomes(&ev), vec![("1002".to_string(), "answered")]);
    assert!(ev
        .iter()
        .any(|e| matches!(e, AcdEvent::AgentAnswered { call: 1, agent, .. } if agent == "1002")));
}

#[test]
fn busy_agent_passes_to_the_next_and_stays_ready() {
    let mut s = two_tech_agents();
    s.call(1, "+8613800000001", "tech");
    s.take_actions();
    s.acd
        .offer_failed(s.now, 1, "1001", OfferOutcome::Busy)
        .unwrap();
    assert_eq!(offers(&s.take_actions()), vec![offer(1, "1002", 2)]);
    assert_eq!(s.state("1001"), AgentState::Ready);
    assert_eq!(
        outcomes(&s.take_events()),
        vec![("1001".to_string(), "busy")]
    );
    // 1002 rejects too: 1001 already refused this call, so it waits.
    s.acd
        .offer_failed(s.now, 1, "1002", OfferOutcome::Rejected)
        .unwrap();
    assert!(offers(&s.take_actions()).is_empty());
    assert_eq!(s.acd.waiting("tech"), 1);
    // A new call still reaches 1001.
    s.call(2, "+8613800000002", "tech");
    assert_eq!(offers(&s.take_actions()), vec![offer(2, "1001", 1)]);
    // Stale answers are refused, not panicked on.
    assert!(s.acd.offer_answered(s.now, 1, "1001").is_err());
}

#[test]
fn abandon_in_queue_and_short_abandon() {
    let mut s = Sim::new(
        vec![waits(tech())],
        vec![agent("1001", &[("tech", 5)], &[], &["tech"])],
    );
    s.call(1, "+1", "tech");
    s.call(2, "+2", "tech");
    s.advance(3_000);
    s.acd.abandon(s.now, 1).unwrap();
    s.advance(30_000);
    s.acd.abandon(s.now, 2).unwrap();
    let ab: Vec<(u64, bool)> = s
        .take_events()
        .iter()
        .filter_map(|e| match e {
            AcdEvent::Abandoned { call, short, .. } => Some((*call, *short)),
            _ => None,
        })
        .collect();
    assert_eq!(ab, vec![(1, true), (2, false)]);
    assert_eq!(s.acd.calls(), 0);
    assert_eq!(s.acd.poll_timeout(), None, "no timer left behind");
    assert!(s.acd.abandon(s.now, 2).is_err());
}

#[test]
fn abandon_while_ringing_cancels_the_offer() {
    let mut s = two_tech_agents();
    s.call(1, "+1", "tech");
    s.take_actions();
    s.advance(2_000);
    s.acd.abandon(s.now, 1).unwrap();
    let a = s.take_actions();
    assert_eq!(
        a,
        vec![AcdAction::CancelOffer {
            call: 1,
            agent: "1001".into()
        }]
    );
    assert_eq!(
        outcomes(&s.take_events()),
        vec![("1001".to_string(), "cancelled")]
    );
    assert_eq!(s.state("1001"), AgentState::Ready);
}

#[test]
fn relaxation_widens_the_pool_after_the_configured_wait() {
    let mut s = Sim::new(
        vec![tech()],
        vec![agent("1003", &[("tech", 1)], &[], &["tech"])],
    );
    s.login(&["1003"]);
    s.call(1, "+1", "tech");
    assert!(offers(&s.take_actions()).is_empty(), "tech 1 is below 3");
    s.advance(59_999);
    assert!(offers(&s.take_actions()).is_empty());
    s.advance(1);
    assert_eq!(offers(&s.take_actions()), vec![offer(1, "1003", 1)]);
}

#[test]
fn alternative_skill_step() {
    let mut q = QueueSpec::new("tech", "tech", 3);
    q.relax = vec![Relaxation {
        after_ms: 30_000,
        min_proficiency: None,
        alt_skill: Some(("after_sales".into(), 2)),
    }];
    let mut s = Sim::new(
        vec![q],
        vec![agent("1004", &[("after_sales", 3)], &[], &["tech"])],
    );
    s.login(&["1004"]);
    s.call(1, "+1", "tech");
    assert!(offers(&s.take_actions()).is_empty());
    s.advance(30_000);
    assert_eq!(offers(&s.take_actions()), vec![offer(1, "1004", 1)]);
}

#[test]
fn vip_goes_ahead_of_earlier_callers() {
    let mut s = Sim::new(
        vec![tech()],
        vec![agent("1001", &[("tech", 5)], &[], &["tech"])],
    );
    s.call(1, "+8613800000001", "tech");
    s.advance(1_000);
    s.call(2, "+8699912345", "tech");
    s.advance(1_000);
    s.call(3, "+8613800000003", "tech");
    s.take_actions();
    s.login(&["1001"]);
    assert_eq!(offers(&s.take_actions()), vec![offer(2, "1001", 1)]);
}

#[test]
fn repeat_caller_reaches_the_same_agent_when_ready() {
    let mut s = two_tech_agents();
    // First contact handled by 1002 (1001, the better match, is on a break).
    s.acd.set_not_ready(s.now, "1001", "break").unwrap();
    s.call(1, "+8613811112222", "tech");
    assert_eq!(offers(&s.take_actions()), vec![offer(1, "1002", 1)]);
    s.acd.offer_answered(s.now, 1, "1002").unwrap();
    s.advance(60_000);
    s.acd.call_ended(s.now, 1).unwrap();
    s.acd.set_ready(s.now, "1002").unwrap();
    s.acd.set_ready(s.now, "1001").unwrap();
    s.take_actions();
    // Calls again: 1002 owns the caller although 1001 is more proficient.
    s.advance(3_600_000);
    s.call(2, "+8613811112222", "tech");
    assert_eq!(offers(&s.take_actions()), vec![offer(2, "1002", 1)]);
    s.acd.offer_answered(s.now, 2, "1002").unwrap();
    // A third call while 1002 is busy goes to someone else.
    s.call(3, "+8613811112222", "tech");
    assert_eq!(offers(&s.take_actions()), vec![offer(3, "1001", 1)]);
}

#[test]
fn repeat_window_expires() {
    let mut s = two_tech_agents();
    s.acd.set_not_ready(s.now, "1001", "break").unwrap();
    s.call(1, "+86138", "tech");
    s.acd.offer_answered(s.now, 1, "1002").unwrap();
    s.acd.call_ended(s.now, 1).unwrap();
    s.acd.set_ready(s.now, "1002").unwrap();
    s.acd.set_ready(s.now, "1001").unwrap();
    s.take_actions();
    s.advance(86_400_001);
    s.call(2, "+86138", "tech");
    assert_eq!(offers(&s.take_actions()), vec![offer(2, "1001", 1)]);
}

fn wrap_up_ended(events: &[AcdEvent]) -> Vec<(u64, Millis)> {
    events
        .iter()
        .filter_map(|e| match e {
            AcdEvent::WrapUpEnded { call, at, .. } => Some((*call, *at)),
            _ => None,
        })
        .collect()
}

#[test]
fn wrap_up_ends_by_timer_and_by_the_ready_code() {
    let mut s = two_tech_agents();
    s.call(1, "+1", "tech");
    s.acd.offer_answered(s.now, 1, "1001").unwrap();
    s.advance(100_000);
    s.acd.call_ended(s.now, 1).unwrap();
    let ended = s.now;
    assert_eq!(s.state("1001"), AgentState::WrapUp { call: 1 });
    s.take_events();
    s.advance(29_999);
    assert!(wrap_up_ended(&s.take_events()).is_empty());
    s.advance(1);
    assert_eq!(
        wrap_up_ended(&s.take_events()),
        vec![(1, ended.plus(30_000))]
    );
    assert_eq!(s.state("1001"), AgentState::Ready);

    s.call(2, "+2", "tech");
    s.acd.offer_answered(s.now, 2, "1001").unwrap();
    s.advance(10_000);
    s.acd.call_ended(s.now, 2).unwrap();
    s.advance(5_000);
    s.take_events();
    s.acd.set_ready(s.now, "1001").unwrap();
    assert_eq!(wrap_up_ended(&s.take_events()), vec![(2, s.now)]);
    assert_eq!(s.state("1001"), AgentState::Ready);
    // A call that waited during wrap-up is offered the moment the agent is ready.
    s.acd.set_not_ready(s.now, "1002", "lunch").unwrap();
    s.take_actions();
    s.call(3, "+3", "tech");
    assert_eq!(offers(&s.take_actions()), vec![offer(3, "1001", 1)]);
}

#[test]
fn not_ready_during_a_call_applies_after_wrap_up() {
    let mut s = two_tech_agents();
    s.call(1, "+1", "tech");
    s.acd.offer_answered(s.now, 1, "1001").unwrap();
    s.acd.set_not_ready(s.now, "1001", "break").unwrap();
    assert_eq!(s.state("1001"), AgentState::OnCall { call: 1 });
    s.acd.call_ended(s.now, 1).unwrap();
    s.advance(30_000);
    assert_eq!(s.state("1001"), AgentState::NotReady("break".into()));
}

#[test]
fn registration_lost_mid_offer_moves_to_the_next_agent() {
    let mut s = two_tech_agents();
    s.call(1, "+1", "tech");
    s.take_actions();
    s.advance(4_000);
    s.acd.registration_lost(s.now, "1001").unwrap();
    let a = s.take_actions();
    assert_eq!(
        a[0],
        AcdAction::CancelOffer {
            call: 1,
            agent: "1001".into()
        }
    );
    assert_eq!(offers(&a), vec![offer(1, "1002", 2)]);
    assert_eq!(s.state("1001"), AgentState::LoggedOut);
    assert_eq!(
        outcomes(&s.take_events()),
        vec![("1001".to_string(), "cancelled")]
    );
    // Losing it again is harmless; commands on a logged-out agent are refused.
    s.acd.registration_lost(s.now, "1001").unwrap();
    assert!(s.acd.set_ready(s.now, "1001").is_err());
    assert!(s.acd.login(s.now, "9999").is_err());
}

#[test]
fn apology_only_after_a_long_wait() {
    let mut s = Sim::new(
        vec![waits(tech())],
        vec![agent("1001", &[("tech", 5)], &[], &["tech"])],
    );
    s.call(1, "+1", "tech");
    s.advance(59_000);
    s.login(&["1001"]);
    s.acd.offer_answered(s.now, 1, "1001").unwrap();
    assert!(!s
        .take_actions()
        .iter()
        .any(|a| matches!(a, AcdAction::PlayApology { .. })));
    s.acd.call_ended(s.now, 1).unwrap();
    s.acd.set_not_ready(s.now, "1001", "break").unwrap();
    s.call(2, "+2", "tech");
    s.advance(61_000);
    s.acd.set_ready(s.now, "1001").unwrap();
    s.acd.offer_answered(s.now, 2, "1001").unwrap();
    assert!(s.take_actions().contains(&AcdAction::PlayApology {
        call: 2,
        prompt: "sorry_wait".into()
    }));
}

#[test]
fn announcements_when_the_expected_wait_is_long() {
    // One logged-in agent on a break: 180 s default handle time / 1 agent * position.
    let mut s = Sim::new(
        vec![tech()],
        vec![agent("1001", &[("tech", 5)], &[], &["tech"])],
    );
    s.login(&["1001"]);
    s.acd.set_not_ready(s.now, "1001", "break").unwrap();
    s.call(1, "+1", "tech");
    s.call(2, "+2", "tech");
    s.take_actions();
    assert_eq!(s.acd.expected_wait_s(2), Some(360));
    s.advance(45_000);
    let ann: Vec<AcdAction> = s
        .take_actions()
        .into_iter()
        .filter(|a| matches!(a, AcdAction::Announce { .. }))
        .collect();
    assert_eq!(
        ann,
        vec![
            AcdAction::Announce {
                call: 1,
                position: 1,
                expected_wait_s: 180
            },
            AcdAction::Announce {
                call: 2,
                position: 2,
                expected_wait_s: 360
            }
        ]
    );
    s.acd.abandon(s.now, 1).unwrap();
    s.advance(45_000);
    assert!(s.take_actions().contains(&AcdAction::Announce {
        call: 2,
        position: 1,
        expected_wait_s: 180
    }));
}

#[test]
fn no_announcement_when_the_wait_is_short() {
    let agents: Vec<AgentProfile> = (0..4)
        .map(|i| agent(&format!("10{i}"), &[("tech", 5)], &[], &["tech"]))
        .collect();
    let mut s = Sim::new(vec![tech()], agents);
    for i in 0..4 {
        let id = format!("10{i}");
        s.acd.login(s.now, &id).unwrap();
        s.acd.set_not_ready(s.now, &id, "training").unwrap();
    }
    s.call(1, "+1", "tech");
    s.advance(50_000);
    assert!(
        !s.take_actions()
            .iter()
            .any(|a| matches!(a, AcdAction::Announce { .. })),
        "180 s / 4 agents = 45 s < 60 s"
    );
}

#[test]
fn max_wait_overflows_then_closes() {
    let mut a = QueueSpec::new("tech", "tech", 3);
    a.max_wait_ms = 100_000;
    a.on_max_wait = MaxWaitPolicy::Overflow {
        queue: "general".into(),
    };
    let mut b = QueueSpec::new("general", "general", 1);
    b.max_wait_ms = 50_000;
    b.ring_timeout_ms = 60_000;
    let mut s = Sim::new(
        vec![waits(a), waits(b)],
        vec![agent("2001", &[("general", 2)], &[], &["general"])],
    );
    s.call(1, "+1", "tech");
    s.call(2, "+2", "tech");
    s.advance(100_000);
    let acts = s.take_actions();
    assert!(acts.contains(&AcdAction::QueueExit {
        call: 1,
        reason: ExitReason::MaxWait,
        then: ExitThen::Overflow {
            queue: "general".into()
        }
    }));
    assert_eq!(s.acd.waiting("general"), 2);
    assert!(s
        .take_events()
        .iter()
        .any(|e| matches!(e, AcdEvent::Queued { call: 1, queue, .. } if queue == "general")));
    s.login(&["2001"]);
    assert_eq!(offers(&s.take_actions()), vec![offer(1, "2001", 1)]);
    s.advance(50_000);
    // Call 1 is ringing at its max wait: the offer finishes first (here: no answer).
    let acts = s.take_actions();
    assert!(acts.contains(&AcdAction::QueueExit {
        call: 2,
        reason: ExitReason::MaxWait,
        then: ExitThen::Closing {
            prompt: "closed".into(),
            callback: true
        }
    }));
    assert!(!acts
        .iter()
        .any(|a| matches!(a, AcdAction::QueueExit { call: 1, .. })));
    s.acd
        .offer_failed(s.now, 1, "2001", OfferOutcome::NoAnswer)
        .unwrap();
    assert!(s.take_actions().contains(&AcdAction::QueueExit {
        call: 1,
        reason: ExitReason::MaxWait,
        then: ExitThen::Closing {
            prompt: "closed".into(),
            callback: true
        }
    }));
    assert_eq!(s.acd.calls(), 0);
}

#[test]
fn language_and_cross_queue_order() {
    let mut c = QueueSpec::new("complaints", "complaints", 1);
    c.priority = 10;
    let mut s = Sim::new(
        vec![tech(), c],
        vec![
            agent(
                "1001",
                &[("tech", 5), ("complaints", 1)],
                &["en"],
                &["tech", "complaints"],
            ),
            agent("1002", &[("tech", 5)], &["zh"], &["tech"]),
        ],
    );
    s.call_lang(1, "+1", "tech", Some("en"));
    s.advance(1_000);
    s.call_lang(2, "+2", "complaints", None);
    s.call_lang(3, "+3", "tech", Some("zh"));
    s.take_actions();
    s.login(&["1001"]);
    assert_eq!(
        offers(&s.take_actions()),
        vec![offer(2, "1001", 1)],
        "complaints has the higher queue priority"
    );
    s.login(&["1002"]);
    assert_eq!(
        offers(&s.take_actions()),
        vec![offer(3, "1002", 1)],
        "zh only"
    );
}

#[test]
fn transfer_to_queue_frees_the_agent() {
    let mut s = Sim::new(
        vec![tech(), QueueSpec::new("after_sales", "after_sales", 1)],
        vec![
            agent("1001", &[("tech", 5)], &[], &["tech"]),
            agent("3001", &[("after_sales", 2)], &[], &["after_sales"]),
        ],
    );
    s.login(&["1001", "3001"]);
    s.call(1, "+1", "tech");
    s.acd.offer_answered(s.now, 1, "1001").unwrap();
    s.take_actions();
    s.acd.transfer_to_queue(s.now, 1, "after_sales").unwrap();
    assert_eq!(s.state("1001"), AgentState::WrapUp { call: 1 });
    // Attempts are numbered per call, across queues.
    assert_eq!(offers(&s.take_actions()), vec![offer(1, "3001", 2)]);
    assert!(s.acd.transfer_to_queue(s.now, 1, "nope").is_err());
}

// ---- property: never double-booked, exactly one outcome per call ----------------------

#[derive(Clone, Debug)]
enum Op {
    Enqueue { queue: u8, lang: u8, vip: bool },
    Abandon(u8),
    Answer(u8),
    Fail(u8, u8),
    End(u8),
    Ready(u8),
    NotReady(u8),
    Logout(u8),
    Login(u8),
    RegLost(u8),
    Transfer(u8, u8),
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3, 0u8..3, any::<bool>()).prop_map(|(queue, lang, vip)| Op::Enqueue { queue, lang, vip }),
        1 => any::<u8>().prop_map(Op::Abandon),
        2 => any::<u8>().prop_map(Op::Answer),
        1 => (any::<u8>(), 0u8..4).prop_map(|(c, o)| Op::Fail(c, o)),
        2 => any::<u8>().prop_map(Op::End),
        2 => any::<u8>().prop_map(Op::Ready),
        1 => any::<u8>().prop_map(Op::NotReady),
        1 => any::<u8>().prop_map(Op::Logout),
        2 => any::<u8>().prop_map(Op::Login),
        1 => any::<u8>().prop_map(Op::RegLost),
        1 => (any::<u8>(), 0u8..3).prop_map(|(c, q)| Op::Transfer(c, q)),
        3 => (0u32..120_000).prop_map(Op::Advance),
    ]
}

const QUEUES: [&str; 3] = ["tech", "after_sales", "complaints"];
const AGENTS: [&str; 5] = ["a1", "a2", "a3", "a4", "a5"];

fn prop_sim() -> Sim {
    let mut t = tech();
    t.max_wait_ms = 300_000;
    t.on_max_wait = MaxWaitPolicy::Overflow {
        queue: "after_sales".into(),
    };
    // Every `when_no_agents` policy is in play: tech overflows, after_sales closes (the
    // default), complaints waits.
    t.when_no_agents = NoAgentsPolicy::Overflow;
    let mut s = QueueSpec::new("after_sales", "after_sales", 1);
    s.max_wait_ms = 200_000;
    s.wrap_up_ms = 5_000;
    let mut c = QueueSpec::new("complaints", "complaints", 2);
    c.priority = 5;
    c.relax = vec![Relaxation {
        after_ms: 20_000,
        min_proficiency: None,
        alt_skill: Some(("tech".into(), 4)),
    }];
    c.max_wait_ms = 0;
    c.when_no_agents = NoAgentsPolicy::Wait;
    Sim::new(
        vec![t, s, c],
        vec![
            agent(
                "a1",
                &[("tech", 5), ("complaints", 2)],
                &["en"],
                &["tech", "complaints"],
            ),
            agent(
                "a2",
                &[("tech", 2), ("after_sales", 3)],
                &["zh"],
                &["tech", "after_sales"],
            ),
            agent(
                "a3",
                &[("after_sales", 5)],
                &["en", "zh"],
                &["after_sales", "complaints"],
            ),
            agent(
                "a4",
                &[("complaints", 1), ("tech", 4)],
                &["en"],
                &["complaints", "tech"],
            ),
            agent(
                "a5",
                &[("tech", 3), ("after_sales", 1), ("complaints", 5)],
                &["en", "zh"],
                &["tech", "after_sales", "complaints"],
            ),
        ],
    )
}

fn pick<T: Copy>(v: &[T], i: u8) -> Option<T> {
    (!v.is_empty()).then(|| v[i as usize % v.len()])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn never_double_booked_and_one_outcome_per_call(ops in proptest::collection::vec(op(), 1..120)) {
        let mut s = prop_sim();
        // Start staffed so most cases reach offers and answers; ops log agents out and in.
        s.login(&AGENTS);
        s.take_events();
        let mut next_call = 1u64;
        let mut enqueued: Vec<u64> = Vec::new();
        // call -> agent ringing / connected, as seen from the events.
        let mut ringing: BTreeMap<u64, String> = BTreeMap::new();
        let mut connected: BTreeMap<u64, String> = BTreeMap::new();
        let mut holds: HashMap<String, u64> = HashMap::new();
        let mut finals: HashMap<u64, u32> = HashMap::new();
        let mut answered: BTreeSet<u64> = BTreeSet::new();

        let absorb = |s: &mut Sim, ringing: &mut BTreeMap<u64, String>, connected: &mut BTreeMap<u64, String>,
                      holds: &mut HashMap<String, u64>, finals: &mut HashMap<u64, u32>, answered: &mut BTreeSet<u64>| {
            for e in s.take_events() {
                match e {
                    AcdEvent::OfferStarted { call, agent, .. } => {
                        assert!(!holds.contains_key(&agent), "agent {agent} double-booked with call {call}");
                        assert!(!ringing.contains_key(&call) && !connected.contains_key(&call));
                        holds.insert(agent.clone(), call);
                        ringing.insert(call, agent);
                    }
                    AcdEvent::OfferEnded { call, agent, outcome, .. } => {
                        assert_eq!(ringing.remove(&call).as_deref(), Some(agent.as_str()));
                        if outcome == "answered" {
                            connected.insert(call, agent);
                        } else {
                            holds.remove(&agent);
                        }
                    }
                    // A transferred call can be answered again; the first answer is its
                    // outcome, and a later abandon or max wait is not a second one.
                    AcdEvent::AgentAnswered { call, .. } if answered.insert(call) => {
                        *finals.entry(call).or_default() += 1;
                    }
                    AcdEvent::Abandoned { call, .. } | AcdEvent::QueueExit { call, overflow_to: None, .. }
                        if !answered.contains(&call) =>
                    {
                        *finals.entry(call).or_default() += 1;
                    }
                    _ => {}
                }
            }
            s.take_actions();
        };

        for op in ops {
            let now = s.now;
            match op {
                Op::Enqueue { queue, lang, vip } => {
                    let call = next_call;
                    next_call += 1;
                    let caller = if vip { "+8699900".to_string() } else { format!("+86138{}", call % 7) };
                    let language = [None, Some("en"), Some("zh")][lang as usize].map(str::to_string);
                    s.acd.enqueue(now, QueuedCall { call, caller, queue: QUEUES[queue as usize].into(), language, priority: 0 }).unwrap();
                    enqueued.push(call);
                }
                Op::Abandon(i) => {
                    let live: Vec<u64> = enqueued.iter().copied().filter(|c| !connected.contains_key(c)).collect();
                    if let Some(c) = pick(&live, i) {
                        let _ = s.acd.abandon(now, c);
                    }
                }
                Op::Answer(i) => {
                    let r: Vec<u64> = ringing.keys().copied().collect();
                    if let Some(c) = pick(&r, i) {
                        let a = ringing[&c].clone();
                        s.acd.offer_answered(now, c, &a).unwrap();
                    }
                }
                Op::Fail(i, o) => {
                    let r: Vec<u64> = ringing.keys().copied().collect();
                    if let Some(c) = pick(&r, i) {
                        let a = ringing[&c].clone();
                        let o = [OfferOutcome::NoAnswer, OfferOutcome::Busy, OfferOutcome::Rejected, OfferOutcome::Failed][o as usize];
                        s.acd.offer_failed(now, c, &a, o).unwrap();
                    }
                }
                Op::End(i) => {
                    let cs: Vec<u64> = connected.keys().copied().collect();
                    if let Some(c) = pick(&cs, i) {
                        let a = connected.remove(&c).unwrap();
                        holds.remove(&a);
                        s.acd.call_ended(now, c).unwrap();
                    }
                }
                Op::Transfer(i, q) => {
                    let cs: Vec<u64> = connected.keys().copied().collect();
                    if let Some(c) = pick(&cs, i) {
                        let a = connected.remove(&c).unwrap();
                        holds.remove(&a);
                        s.acd.transfer_to_queue(now, c, QUEUES[q as usize]).unwrap();
                        // The transferred call is live again: its earlier answer stays its outcome.
                    }
                }
                Op::Ready(i) => { let _ = s.acd.set_ready(now, AGENTS[i as usize % 5]); }
                Op::NotReady(i) => { let _ = s.acd.set_not_ready(now, AGENTS[i as usize % 5], "break"); }
                Op::Logout(i) => { let _ = s.acd.logout(now, AGENTS[i as usize % 5]); }
                Op::Login(i) => { let _ = s.acd.login(now, AGENTS[i as usize % 5]); }
                Op::RegLost(i) => { s.acd.registration_lost(now, AGENTS[i as usize % 5]).unwrap(); }
                Op::Advance(ms) => s.advance(u64::from(ms)),
            }
            s.drain();
            absorb(&mut s, &mut ringing, &mut connected, &mut holds, &mut finals, &mut answered);
        }
        // Wind down: the remaining callers hang up, connected calls end.
        for c in connected.keys().copied().collect::<Vec<_>>() {
            s.acd.call_ended(s.now, c).unwrap();
        }
        for &c in &enqueued {
            let _ = s.acd.abandon(s.now, c);
        }
        s.drain();
        absorb(&mut s, &mut ringing, &mut BTreeMap::new(), &mut holds, &mut finals, &mut answered);
        prop_assert_eq!(s.acd.calls(), 0);
        for c in enqueued {
            prop_assert_eq!(finals.get(&c).copied(), Some(1), "call {} outcomes", c);
        }
    }
}

// ---- nobody logged in who could take the call (`when_no_agents`, issue #7) -------------

fn after_sales() -> QueueSpec {
    QueueSpec::new("after_sales", "after_sales", 1)
}

fn exits(s: &mut Sim) -> Vec<(u64, ExitReason, ExitThen)> {
    s.take_actions()
        .into_iter()
        .filter_map(|a| match a {
            AcdAction::QueueExit { call, reason, then } => Some((call, reason, then)),
            _ => None,
        })
        .collect()
}

fn closed() -> ExitThen {
    ExitThen::Closing {
        prompt: "closed".into(),
        callback: true,
    }
}

#[test]
fn no_agents_closes_after_the_grace_period() {
    // Only an agent of another queue is logged in: the after-sales caller is closed after
    // the grace period, not left on hold until max wait.
    let mut s = Sim::new(
        vec![tech(), after_sales()],
        vec![
            agent("1001", &[("tech", 5)], &[], &["tech"]),
            agent("3001", &[("after_sales", 3)], &[], &["after_sales"]),
        ],
    );
    s.login(&["1001"]);
    s.call(7, "+7", "after_sales");
    s.advance(9_999);
    assert!(exits(&mut s).is_empty(), "still in the grace period");
    assert_eq!(s.acd.waiting("after_sales"), 1);
    s.advance(1);
    assert_eq!(exits(&mut s), vec![(7, ExitReason::NoAgents, closed())]);
    assert!(s.take_events().iter().any(|e| matches!(
        e,
        AcdEvent::QueueExit {
            call: 7,
            reason: ExitReason::NoAgents,
            overflow_to: None,
            ..
        }
    )));
    assert_eq!(s.acd.calls(), 0);
    assert_eq!(s.acd.poll_timeout(), None, "no timer left behind");
}

#[test]
fn a_login_during_the_grace_period_catches_the_call() {
    let mut s = Sim::new(
        vec![after_sales()],
        vec![agent("3001", &[("after_sales", 3)], &[], &["after_sales"])],
    );
    s.call(1, "+1", "after_sales");
    s.advance(5_000);
    s.login(&["3001"]);
    assert_eq!(offers(&s.take_actions()), vec![offer(1, "3001", 1)]);
    // Ring no answer: the agent is NotReady(missed_call) but still logged in, so the caller
    // keeps waiting for them (nobody ready is not nobody there).
    s.advance(18_000);
    s.advance(120_000);
    assert!(exits(&mut s).is_empty());
    assert_eq!(s.acd.waiting("after_sales"), 1);
    assert_eq!(s.state("3001"), AgentState::NotReady("missed_call".into()));
}

#[test]
fn an_agent_on_a_break_counts_and_the_last_logout_rearms_everyone() {
    let mut s = Sim::new(
        vec![after_sales()],
        vec![
            agent("3001", &[("after_sales", 3)], &[], &["after_sales"]),
            agent("3002", &[("after_sales", 1)], &[], &["after_sales"]),
        ],
    );
    s.login(&["3001", "3002"]);
    s.acd.set_not_ready(s.now, "3001", "break").unwrap();
    s.acd.set_not_ready(s.now, "3002", "lunch").unwrap();
    s.call(1, "+1", "after_sales");
    s.call(2, "+2", "after_sales");
    s.advance(30_000);
    assert!(exits(&mut s).is_empty(), "agents on a break will come back");
    s.acd.logout(s.now, "3001").unwrap();
    s.advance(30_000);
    assert!(exits(&mut s).is_empty(), "3002 is still logged in");
    // The last one's phone goes away: both waiting callers get the grace period, then close.
    s.acd.registration_lost(s.now, "3002").unwrap();
    s.advance(9_000);
    assert!(exits(&mut s).is_empty());
    s.advance(1_000);
    let mut got = exits(&mut s);
    got.sort_by_key(|e| e.0);
    assert_eq!(
        got,
        vec![
            (1, ExitReason::NoAgents, closed()),
            (2, ExitReason::NoAgents, closed())
        ]
    );
    assert_eq!(s.acd.calls(), 0);
}

#[test]
fn logout_then_login_within_the_grace_cancels_it() {
    let mut s = Sim::new(
        vec![after_sales()],
        vec![agent("3001", &[("after_sales", 3)], &[], &["after_sales"])],
    );
    s.login(&["3001"]);
    s.acd.set_not_ready(s.now, "3001", "break").unwrap();
    s.call(1, "+1", "after_sales");
    s.acd.logout(s.now, "3001").unwrap();
    s.advance(6_000);
    s.acd.login(s.now, "3001").unwrap();
    assert_eq!(offers(&s.take_actions()), vec![offer(1, "3001", 1)]);
    s.acd.set_not_ready(s.now, "3001", "break").unwrap();
    s.advance(600_000 - 6_000 - 1);
    assert!(exits(&mut s).is_empty(), "the grace timer was cancelled");
    s.advance(1);
    assert_eq!(
        exits(&mut s),
        vec![(1, ExitReason::MaxWait, closed())],
        "max wait still applies"
    );
}

#[test]
fn an_agent_ringing_or_talking_keeps_the_queue_staffed() {
    let mut s = Sim::new(
        vec![after_sales()],
        vec![agent("3001", &[("after_sales", 3)], &[], &["after_sales"])],
    );
    s.login(&["3001"]);
    s.call(1, "+1", "after_sales");
    s.call(2, "+2", "after_sales");
    s.acd.offer_answered(s.now, 1, "3001").unwrap();
    // Logging out on a call is deferred to after wrap-up: call 2 still has someone.
    s.acd.logout(s.now, "3001").unwrap();
    s.advance(60_000);
    assert!(exits(&mut s).is_empty());
    s.acd.call_ended(s.now, 1).unwrap();
    s.advance(30_000); // wrap-up ends, the deferred logout applies
    assert_eq!(s.state("3001"), AgentState::LoggedOut);
    assert!(exits(&mut s).is_empty());
    s.advance(10_000);
    assert_eq!(exits(&mut s), vec![(2, ExitReason::NoAgents, closed())]);
    // Logging out while ringing puts the call back unstaffed: the grace starts then.
    s.acd.login(s.now, "3001").unwrap();
    s.call(3, "+3", "after_sales");
    assert_eq!(offers(&s.take_actions()), vec![offer(3, "3001", 1)]);
    s.acd.logout(s.now, "3001").unwrap();
    s.advance(9_999);
    assert!(exits(&mut s).is_empty());
    s.advance(1);
    assert_eq!(exits(&mut s), vec![(3, ExitReason::NoAgents, closed())]);
}

#[test]
fn language_and_relaxation_decide_who_could_ever_take_the_call() {
    // tech wants proficiency 3 until 60 s, then 1. The only agent logged in has tech 1 and
    // speaks English: an English caller waits for them (relaxation will reach them), a
    // Chinese caller has nobody and is closed after the grace period.
    let mut s = Sim::new(
        vec![tech()],
        vec![agent("1009", &[("tech", 1)], &["en"], &["tech"])],
    );
    s.login(&["1009"]);
    s.call_lang(1, "+1", "tech", Some("en"));
    s.call_lang(2, "+2", "tech", Some("zh"));
    s.call(3, "+3", "tech");
    s.advance(10_000);
    assert_eq!(exits(&mut s), vec![(2, ExitReason::NoAgents, closed())]);
    s.advance(50_000);
    let o = offers(&s.take_actions());
    assert_eq!(o.len(), 1, "{o:?}");
    assert!(o[0].0 == 1 || o[0].0 == 3);
    assert!(exits(&mut s).is_empty());
}

#[test]
fn overflow_when_no_agents_and_the_overflow_queue_applies_its_own_rules() {
    let mut a = after_sales();
    a.when_no_agents = NoAgentsPolicy::Overflow;
    a.on_max_wait = MaxWaitPolicy::Overflow {
        queue: "general".into(),
    };
    let mut g = QueueSpec::new("general", "general", 1);
    g.no_agents_grace_ms = 5_000;
    let mut s = Sim::new(
        vec![a, g],
        vec![agent("2001", &[("general", 2)], &[], &["general"])],
    );
    s.call(1, "+1", "after_sales");
    s.advance(10_000);
    assert_eq!(
        exits(&mut s),
        vec![(
            1,
            ExitReason::NoAgents,
            ExitThen::Overflow {
                queue: "general".into()
            }
        )]
    );
    assert!(s.take_events().iter().any(|e| matches!(
        e,
        AcdEvent::QueueExit { call: 1, reason: ExitReason::NoAgents, overflow_to: Some(q), .. }
            if q == "general"
    )));
    assert_eq!(s.acd.waiting("general"), 1);
    // general has nobody either: its own 5 s grace, then its own policy (close).
    s.advance(4_999);
    assert!(exits(&mut s).is_empty());
    s.advance(1);
    assert_eq!(exits(&mut s), vec![(1, ExitReason::NoAgents, closed())]);
    // With general staffed, the overflowed caller is offered there.
    s.login(&["2001"]);
    s.acd.set_not_ready(s.now, "2001", "break").unwrap();
    s.call(2, "+2", "after_sales");
    s.advance(10_000);
    assert_eq!(exits(&mut s).len(), 1);
    s.acd.set_ready(s.now, "2001").unwrap();
    assert_eq!(offers(&s.take_actions()), vec![offer(2, "2001", 1)]);
}

#[test]
fn wait_policy_and_zero_grace() {
    let mut w = after_sales();
    w.when_no_agents = NoAgentsPolicy::Wait;
    let mut c = QueueSpec::new("complaints", "complaints", 1);
    c.no_agents_grace_ms = 0;
    let mut s = Sim::new(vec![w, c], vec![]);
    s.call(1, "+1", "after_sales");
    s.call(2, "+2", "complaints");
    s.advance(0);
    assert_eq!(exits(&mut s), vec![(2, ExitReason::NoAgents, closed())]);
    s.advance(599_999);
    assert!(exits(&mut s).is_empty(), "\"wait\" waits until max wait");
    s.advance(1);
    assert_eq!(exits(&mut s), vec![(1, ExitReason::MaxWait, closed())]);
}

#[test]
fn a_direct_transfer_out_of_an_unstaffed_queue_then_a_login_leaves_no_stale_grace() {
    let mut s = Sim::new(
        vec![tech(), after_sales()],
        vec![
            agent("1001", &[("tech", 5)], &[], &["tech"]),
            agent("3001", &[("after_sales", 3)], &[], &["after_sales"]),
        ],
    );
    s.login(&["1001"]);
    s.call(1, "+1", "after_sales");
    // Blind transfer to 1001 (not an after-sales agent) while nobody serves after-sales.
    s.acd.transfer_to_agent(s.now, 1, "1001").unwrap();
    s.drain();
    s.advance(5_000);
    s.acd.login(s.now, "3001").unwrap();
    s.acd.set_not_ready(s.now, "3001", "break").unwrap();
    s.drain();
    // 1001 is busy: the call is back in after-sales, which now has someone (on a break).
    s.acd
        .offer_failed(s.now, 1, "1001", OfferOutcome::Busy)
        .unwrap();
    s.drain();
    s.advance(60_000);
    assert!(exits(&mut s).is_empty());
    assert_eq!(s.acd.waiting("after_sales"), 1);
}
