//! The hub with real channels and time: coalescing, resync and dropping of clients.

use super::*;
use serde_json::Value;

fn model(clock: Clock) -> LiveModel {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let c = crate::config::load(&dir).expect("shipped config");
    let cfg = ModelConfig {
        time_zone: c.ivr.time_zone(),
        wallboard: (*c.wallboard).clone(),
        queues: c.queues.clone(),
        agents: c.agents.clone(),
    };
    LiveModel::new(cfg, clock.now())
}

fn drain(rx: &mut mpsc::Receiver<String>) -> (Vec<Value>, bool) {
    let mut got = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(t) => got.push(serde_json::from_str(&t).unwrap()),
            Err(mpsc::error::TryRecvError::Empty) => return (got, false),
            Err(mpsc::error::TryRecvError::Disconnected) => return (got, true),
        }
    }
}

/// One client reads along, one never reads, one pauses and then catches up: the reader
/// sees every change in order, the paused one gets a fresh snapshot, the stalled one
/// is dropped.
#[tokio::test]
async fn a_stalled_client_is_dropped_a_slow_one_resynced_and_others_keep_going() {
    let clock = Clock::new();
    let opts = HubOptions {
        client_queue: 4,
        stall_limit_ms: 2500,
    };
    let (tx, live) = spawn_with(model(clock), clock, opts);
    let mut reader = live.subscribe().await.unwrap();
    let mut stalled = live.subscribe().await.unwrap();
    let mut paused = live.subscribe().await.unwrap();
    let mut seqs = Vec::new();
    let mut paused_msgs = Vec::new();
    for i in 0..20u64 {
        let state = if i % 2 == 0 { "ready" } else { "not_ready" };
        tx.record(&Record::AgentStateChanged {
            agent: "1001".into(),
            at: clock.now(),
            state: state.into(),
            reason: (state == "not_ready").then(|| "break".into()),
        });
        tokio::time::sleep(Duration::from_millis(FLUSH_MS + 30)).await;
        let (got, closed) = drain(&mut reader);
        assert!(!closed);
        for m in got {
            seqs.push(m["seq"].as_u64().unwrap());
            if m["type"] == "update" {
                assert!(m["agents"].is_array(), "{m}");
                // The change reached the hub before the update went out (the bench measures
                // how long before: no timing is asserted here).
                let at = m["at"].as_u64().unwrap();
                assert!(m["changed_at"].as_u64().unwrap() <= at, "{m}");
                assert!(m.get("waiting").is_none(), "only changed sections: {m}");
            }
        }
        // The paused client reads nothing for a while (its queue fills), then catches up.
        if i >= 5 {
            paused_msgs.extend(drain(&mut paused).0);
        }
    }
    assert_eq!(
        seqs,
        (0..seqs.len() as u64).collect::<Vec<_>>(),
        "every update, in order"
    );
    assert!(seqs.len() >= 18, "{seqs:?}");
    let kinds: Vec<(String, u64)> = paused_msgs
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_string(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    let resync = kinds
        .iter()
        .position(|(k, s)| k == "snapshot" && *s > 0)
        .unwrap_or_else(|| panic!("a fresh snapshot after falling behind: {kinds:?}"));
    assert!(
        kinds.windows(2).all(|w| w[1].1 == w[0].1 + 1),
        "seq still goes up by one: {kinds:?}"
    );
    assert!(
        kinds.len() > resync + 1,
        "updates follow the resync: {kinds:?}"
    );
    let (got, closed) = drain(&mut stalled);
    assert_eq!(got.len(), 4, "what fitted in its queue");
    assert!(closed, "the stalled client was dropped");
}
