//! ACD routing decision time with 1,000 agents and 5,000 waiting calls (issue #3 checks).
//!
//!   cargo bench --bench acd_routing            # full run
//!   cargo test --benches / --all-targets       # quick mode (no `--bench` argument)
//!
//! Two decisions are timed, each including the whole ACD call that makes it:
//! * agent free: a busy agent's wrap-up ends with the ready code and the ACD picks the best
//!   of 5,000 waiting calls across the agent's queues (languages, skill steps, priorities);
//! * call arrives: a call enters a queue with 1,000 agents, most of them Ready, and the ACD
//!   picks the best agent.
//!
//! Numbers are printed, never asserted. Agents and calls come from a seeded generator.
#![allow(clippy::disallowed_methods)] // a benchmark measures wall-clock time on purpose

use ccswitch::engine::acd::{
    Acd, AcdAction, AgentProfile, QueueSet, QueueSpec, QueuedCall, Relaxation, VipRules,
};
use ccswitch::engine::Millis;
use std::sync::Arc;
use std::time::Instant;

const AGENTS: usize = 1_000;
const WAITING: usize = 5_000;
const QUEUES: [&str; 3] = ["tech", "after_sales", "complaints"];
const LANGS: [&str; 2] = ["en", "zh"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: deterministic, good enough to spread skills and languages.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn queues() -> Arc<QueueSet> {
    let mut tech = QueueSpec::new("tech", "tech", 3);
    tech.relax = vec![Relaxation {
        after_ms: 60_000,
        min_proficiency: Some(1),
        alt_skill: None,
    }];
    let sales = QueueSpec::new("after_sales", "after_sales", 1);
    let mut comp = QueueSpec::new("complaints", "complaints", 1);
    comp.priority = 10;
    let specs = [tech, sales, comp]
        .into_iter()
        .map(|mut q| {
            // Long waits on purpose: no caller times out during the run.
            q.max_wait_ms = 0;
            q.announce_every_ms = 0;
            q
        })
        .collect();
    Arc::new(QueueSet::new(specs, VipRules::default(), 86_400_000, 20).expect("queues"))
}

fn agents(rng: &mut Rng) -> Vec<AgentProfile> {
    (0..AGENTS)
        .map(|i| {
            let mut p = AgentProfile {
                id: format!("{}", 10_000 + i),
                skills: Default::default(),
                languages: Default::default(),
                queues: Vec::new(),
            };
            for q in QUEUES {
                if rng.below(3) > 0 {
                    p.skills.insert(q.to_string(), 1 + rng.below(5) as u8);
                    p.queues.push(q.to_string());
                }
            }
            p.languages.insert(LANGS[rng.below(2) as usize].into());
            if rng.below(3) == 0 {
                p.languages.insert("en".into());
            }
            p
        })
        .collect()
}

fn call(rng: &mut Rng, id: u64) -> QueuedCall {
    QueuedCall {
        call: id,
        caller: format!("+86138{:08}", rng.below(100_000_000)),
        queue: QUEUES[rng.below(3) as usize].into(),
        language: match rng.below(4) {
            0 => None,
            1 => Some("zh".into()),
            _ => Some("en".into()),
        },
        priority: if rng.below(20) == 0 { 10 } else { 0 },
    }
}

/// The offers just made (call, agent).
fn drain(acd: &mut Acd) -> Vec<(u64, String)> {
    let mut offers = Vec::new();
    while let Some(a) = acd.poll_action() {
        if let AcdAction::Offer { call, agent, .. } = a {
            offers.push((call, agent));
        }
    }
    while acd.poll_event().is_some() {}
    offers
}

/// Drains and answers any offer at once (agents on auto-answer).
fn drain_answering(acd: &mut Acd, now: Millis, on_call: &mut Vec<(u64, String)>) {
    loop {
        let offers = drain(acd);
        if offers.is_empty() {
            return;
        }
        for (c, a) in offers {
            acd.offer_answered(now, c, &a).expect("answer");
            on_call.push((c, a));
        }
    }
}

fn percentiles(name: &str, mut ns: Vec<u128>) {
    ns.sort_unstable();
    let p = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "{name}: n={} p50={:.1} us p90={:.1} us p99={:.1} us max={:.1} us",
        ns.len(),
        p(0.50),
        p(0.90),
        p(0.99),
        p(1.0)
    );
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 200 } else { 20_000 };
    let mut rng = Rng(0x5eed_acd0_0001);
    let profiles = agents(&mut rng);
    let ids: Vec<String> = profiles.iter().map(|p| p.id.clone()).collect();
    let mut acd = Acd::new(queues(), profiles);
    let mut now = Millis(1_000_000);
    let mut next_id = 1u64;

    // Agent-free decisions: fill the queues, let every agent take a call, then keep about
    // 5,000 calls waiting while agents finish calls and come back with the ready code.
    while acd.calls() < WAITING + AGENTS {
        acd.enqueue(now, call(&mut rng, next_id)).expect("enqueue");
        next_id += 1;
        drain(&mut acd);
    }
    let mut on_call: Vec<(u64, String)> = Vec::new();
    for id in &ids {
        acd.login(now, id).expect("login");
        drain_answering(&mut acd, now, &mut on_call);
    }
    let waiting: usize = QUEUES.iter().map(|q| acd.waiting(q)).sum();
    println!(
        "setup: {AGENTS} agents, {} on calls, {waiting} waiting calls",
        on_call.len()
    );
    let mut agent_free = Vec::with_capacity(rounds);
    let mut i = 0;
    while agent_free.len() < rounds && !on_call.is_empty() {
        now = now.plus(1_000);
        // Relaxation steps fall due as in production (not timed).
        acd.handle_timeout(now);
        drain_answering(&mut acd, now, &mut on_call);
        let (c, a) = on_call.swap_remove(i % on_call.len());
        i += 7;
        acd.call_ended(now, c).expect("end");
        drain(&mut acd);
        let t = Instant::now();
        acd.set_ready(now, &a).expect("ready");
        agent_free.push(t.elapsed().as_nanos());
        drain_answering(&mut acd, now, &mut on_call);
        // Keep the queues at about 5,000.
        acd.enqueue(now, call(&mut rng, next_id)).expect("enqueue");
        next_id += 1;
        drain_answering(&mut acd, now, &mut on_call);
    }
    let waiting: usize = QUEUES.iter().map(|q| acd.waiting(q)).sum();
    percentiles(
        &format!("agent free -> best of {waiting} waiting calls"),
        agent_free,
    );

    // Call-arrival decisions: a fresh ACD with every agent Ready and nobody waiting; each
    // call is offered and then abandoned, which puts the agent back (idle time kept).
    let mut rng = Rng(0x5eed_acd0_0002);
    let mut acd = Acd::new(queues(), agents(&mut rng));
    for id in &ids {
        acd.login(now, id).expect("login");
    }
    drain(&mut acd);
    let ready: usize = QUEUES.iter().map(|q| acd.ready_agents(q)).sum();
    let mut arrive = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        now = now.plus(100);
        let qc = call(&mut rng, next_id);
        next_id += 1;
        let t = Instant::now();
        acd.enqueue(now, qc).expect("enqueue");
        arrive.push(t.elapsed().as_nanos());
        drain(&mut acd);
        acd.abandon(now, next_id - 1).expect("abandon");
        drain(&mut acd);
    }
    percentiles(
        &format!("call arrives -> best of {ready} ready agent slots"),
        arrive,
    );
    if quick {
        println!("(quick mode; run `cargo bench --bench acd_routing` for the full run)");
    }
}
