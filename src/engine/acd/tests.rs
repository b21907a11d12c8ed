use super::*;

fn acd() -> Acd {
    let mut q = QueueSpec::new("tech", "tech", 1);
    q.wrap_up_ms = 0;
    let vip = VipRules {
        numbers: ["+1vip".to_string()].into(),
        prefixes: vec![],
        priority_boost: 7,
    };
    let set = QueueSet::new(vec![q], vip, 1000, 2).unwrap();
    let agent = AgentProfile {
        id: "a".into(),
        skills: [("tech".to_string(), 2)].into(),
        languages: Default::default(),
        queues: vec!["tech".into(), "unknown".into()],
    };
    Acd::new(Arc::new(set), vec![agent.clone(), agent])
}

fn qc(call: u64, caller: &str) -> QueuedCall {
    QueuedCall {
        call,
        caller: caller.into(),
        queue: "tech".into(),
        language: None,
        priority: 0,
    }
}

#[test]
fn stale_and_unknown_inputs_are_refused() {
    let mut acd = acd();
    let t = Millis(10);
    assert_eq!(
        acd.enqueue(
            t,
            QueuedCall {
                queue: "x".into(),
                ..qc(1, "+1")
            }
        ),
        Err(AcdError::UnknownQueue("x".into()))
    );
    acd.enqueue(t, qc(1, "+1")).unwrap();
    assert_eq!(acd.enqueue(t, qc(1, "+1")), Err(AcdError::DuplicateCall(1)));
    assert_eq!(acd.call_ended(t, 1), Err(AcdError::NotConnected(1)));
    assert_eq!(acd.call_ended(t, 9), Err(AcdError::UnknownCall(9)));
    assert!(matches!(
        acd.offer_answered(t, 1, "a"),
        Err(AcdError::NotOffered { .. })
    ));
    assert_eq!(
        acd.set_ready(t, "a"),
        Err(AcdError::NotLoggedIn("a".into()))
    );
    acd.login(t, "a").unwrap();
    assert_eq!(
        acd.login(t, "a"),
        Err(AcdError::AlreadyLoggedIn("a".into()))
    );
    acd.offer_answered(t, 1, "a").unwrap();
    assert_eq!(acd.abandon(t, 1), Err(AcdError::Connected(1)));
    assert_eq!(acd.set_ready(t, "a"), Err(AcdError::Busy("a".into())));
    acd.check_invariants().unwrap();
}

#[test]
fn vip_boost_and_zero_wrap_up() {
    let mut acd = acd();
    acd.enqueue(Millis(1), qc(1, "+1")).unwrap();
    acd.enqueue(Millis(2), qc(2, "+1vip")).unwrap();
    acd.login(Millis(3), "a").unwrap();
    while let Some(a) = acd.poll_action() {
        if let AcdAction::Offer { call, .. } = a {
            assert_eq!(call, 2);
        }
    }
    acd.offer_answered(Millis(4), 2, "a").unwrap();
    acd.call_ended(Millis(5), 2).unwrap();
    // wrap_up 0: over at the next timeout check, then call 1 is offered.
    assert_eq!(acd.poll_timeout(), Some(Millis(5)));
    acd.handle_timeout(Millis(5));
    assert_eq!(
        acd.agent_state("a"),
        Some(&AgentState::Reserved { call: 1 })
    );
}

#[test]
fn expected_wait_follows_recent_handle_times() {
    let mut acd = acd();
    acd.login(Millis(0), "a").unwrap();
    acd.set_not_ready(Millis(0), "a", "break").unwrap();
    acd.enqueue(Millis(0), qc(1, "+1")).unwrap();
    assert_eq!(
        acd.expected_wait_s(1),
        Some(180),
        "default until samples exist"
    );
    acd.set_ready(Millis(0), "a").unwrap();
    acd.offer_answered(Millis(0), 1, "a").unwrap();
    acd.call_ended(Millis(60_000), 1).unwrap();
    acd.handle_timeout(Millis(60_000));
    acd.set_not_ready(Millis(60_000), "a", "break").unwrap();
    acd.enqueue(Millis(60_000), qc(2, "+2")).unwrap();
    acd.enqueue(Millis(60_000), qc(3, "+3")).unwrap();
    assert_eq!(acd.expected_wait_s(3), Some(120), "2 * 60 s / 1 agent");
    acd.logout(Millis(60_000), "a").unwrap();
    assert_eq!(acd.expected_wait_s(3), Some(120), "no agent counts as one");
    assert_eq!(acd.expected_wait_s(99), None);
}

/// Queue "tech" with agents "a" and "b" (wrap-up 0).
fn acd_two_agents() -> Acd {
    let mut q = QueueSpec::new("tech", "tech", 1);
    q.wrap_up_ms = 0;
    let set = QueueSet::new(vec![q], VipRules::default(), 1000, 2).unwrap();
    let agent = |id: &str| AgentProfile {
        id: id.into(),
        skills: [("tech".to_string(), 2)].into(),
        languages: Default::default(),
        queues: vec!["tech".into()],
    };
    Acd::new(Arc::new(set), vec![agent("a"), agent("b")])
}

fn offers(acd: &mut Acd) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    while let Some(a) = acd.poll_action() {
        if let AcdAction::Offer { call, agent, .. } = a {
            out.push((call, agent));
        }
    }
    out
}

#[test]
fn a_vanished_agent_goes_not_ready_and_the_caller_is_requeued_ahead_of_later_callers() {
    let mut acd = acd_two_agents();
    acd.login(Millis(0), "a").unwrap();
    acd.login(Millis(0), "b").unwrap();
    acd.set_not_ready(Millis(0), "b", "break").unwrap();
    acd.enqueue(Millis(0), qc(1, "+1")).unwrap();
    assert_eq!(offers(&mut acd), vec![(1, "a".to_string())]);
    acd.offer_answered(Millis(10), 1, "a").unwrap();
    acd.set_not_ready(Millis(20), "a", "lunch").unwrap(); // deferred, then dropped
    acd.enqueue(Millis(1_000), qc(2, "+2")).unwrap();
    while acd.poll_event().is_some() {}
    assert_eq!(acd.agent_lost(Millis(30_000), 1), Ok(true));
    assert_eq!(
        acd.agent_state("a"),
        Some(&AgentState::NotReady(CONNECTION_LOST.into()))
    );
    let events: Vec<AcdEvent> = std::iter::from_fn(|| acd.poll_event()).collect();
    assert!(events.contains(&AcdEvent::WrapUpEnded {
        call: 1,
        agent: "a".into(),
        at: Millis(30_000)
    }));
    assert!(!events
        .iter()
        .any(|e| matches!(e, AcdEvent::AgentState { state, .. } if *state == "wrap_up")));
    assert_eq!(acd.waiting("tech"), 2);
    acd.check_invariants().unwrap();
    // The next free agent gets the caller who was cut off, not the one who came later.
    acd.set_ready(Millis(31_000), "b").unwrap();
    assert_eq!(offers(&mut acd), vec![(1, "b".to_string())]);
    // Max wait and the rest count from the re-queue; the call goes on normally.
    acd.offer_answered(Millis(32_000), 1, "b").unwrap();
    acd.call_ended(Millis(40_000), 1).unwrap();
    assert_eq!(
        acd.agent_state("a"),
        Some(&AgentState::NotReady(CONNECTION_LOST.into()))
    );
    acd.check_invariants().unwrap();
}

#[test]
fn a_vanished_agent_with_nobody_else_logged_in_lets_the_call_go() {
    let mut acd = acd_two_agents();
    acd.login(Millis(0), "a").unwrap();
    acd.enqueue(Millis(0), qc(1, "+1")).unwrap();
    assert_eq!(acd.agent_lost(Millis(5), 1), Err(AcdError::NotConnected(1)));
    acd.offer_answered(Millis(10), 1, "a").unwrap();
    assert_eq!(acd.agent_lost(Millis(20_000), 1), Ok(false));
    assert_eq!(acd.calls(), 0);
    assert_eq!(
        acd.agent_state("a"),
        Some(&AgentState::NotReady(CONNECTION_LOST.into()))
    );
    assert_eq!(
        acd.agent_lost(Millis(20_000), 1),
        Err(AcdError::UnknownCall(1))
    );
    acd.check_invariants().unwrap();
}
