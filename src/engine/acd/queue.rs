//! Validated queue definitions (`config/queues.toml` is parsed into these by
//! `config::queues`), the relaxation ladder, VIP rules and the handle-time moving average.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One relaxation step as configured: after `after_ms` of waiting in the queue, the primary
/// skill's minimum drops to `min_proficiency` and/or `alt_skill` (name, minimum) becomes an
/// alternative to the primary skill. Steps are cumulative: each one widens the pool further.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relaxation {
    pub after_ms: u64,
    pub min_proficiency: Option<u8>,
    pub alt_skill: Option<(String, u8)>,
}

/// What happens when a caller has waited `max_wait_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaxWaitPolicy {
    /// Move the call to another queue (keeps its place in time for apology / max wait there).
    Overflow { queue: String },
    /// Play `prompt` and record a callback request; the call leaves the ACD.
    Closing { prompt: String },
}

/// What happens to a waiting caller when no logged-in agent could ever take their call
/// (`when_no_agents` in queues.toml; Asterisk's joinempty / leavewhenempty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoAgentsPolicy {
    /// Keep waiting (until max wait or the caller hangs up).
    Wait,
    /// After the grace period, move the caller to the queue's overflow queue.
    Overflow,
    /// After the grace period, play the closing prompt and record a callback request.
    Close,
}

impl NoAgentsPolicy {
    pub fn parse(s: &str) -> Option<NoAgentsPolicy> {
        Some(match s {
            "wait" => NoAgentsPolicy::Wait,
            "overflow" => NoAgentsPolicy::Overflow,
            "close" => NoAgentsPolicy::Close,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    /// Shown on the wallboard and in the agent's INVITE.
    pub label: String,
    /// Across queues, a free agent takes calls from higher-priority queues first.
    pub priority: i32,
    /// The call's skill: proficiency in it orders agents (best match first).
    pub skill: String,
    pub min_proficiency: u8,
    /// Further skills every agent must have at these minimums (never relaxed).
    pub extra_skills: BTreeMap<String, u8>,
    pub service_level_s: u64,
    pub service_level_pct: u8,
    pub ring_timeout_ms: u64,
    pub wrap_up_ms: u64,
    /// 0 = callers wait until answered or they hang up.
    pub max_wait_ms: u64,
    pub on_max_wait: MaxWaitPolicy,
    /// Played before hanging up when the queue closes a call (max wait without an overflow
    /// queue, or `when_no_agents = "close"`).
    pub closing_prompt: String,
    /// When nobody logged in could ever take a waiting call (skills, language).
    pub when_no_agents: NoAgentsPolicy,
    /// How long a caller keeps waiting with nobody logged in before `when_no_agents`
    /// applies, so an agent who is just logging in still catches the call.
    pub no_agents_grace_ms: u64,
    /// 0 = never announce.
    pub announce_every_ms: u64,
    /// Position and expected wait are announced only when the expected wait is at least this.
    pub announce_min_wait_s: u64,
    /// 0 = never apologise.
    pub apology_after_ms: u64,
    pub hold_prompt: String,
    pub apology_prompt: String,
    /// Handle time assumed for the expected-wait estimate until real samples exist.
    pub default_handle_time_ms: u64,
    /// Sorted by `after_ms` (QueueSet::new sorts).
    pub relax: Vec<Relaxation>,
    /// Record connected calls (stereo WAV: caller left, agent right).
    pub record: bool,
    /// A complaints queue: every call an agent handles here opens a follow-up task when it
    /// ends (when surveys are enabled: the survey policy owns follow-up tasks).
    pub complaint: bool,
}

impl QueueSpec {
    /// The overflow queue, if the queue has one (`overflow` in queues.toml).
    pub fn overflow_queue(&self) -> Option<&str> {
        match &self.on_max_wait {
            MaxWaitPolicy::Overflow { queue } => Some(queue),
            MaxWaitPolicy::Closing { .. } => None,
        }
    }
}

impl QueueSpec {
    /// A queue with the shipped defaults; tests and `config::queues` start from this.
    pub fn new(name: &str, skill: &str, min_proficiency: u8) -> QueueSpec {
        QueueSpec {
            name: name.to_string(),
            label: name.to_string(),
            priority: 0,
            skill: skill.to_string(),
            min_proficiency,
            extra_skills: BTreeMap::new(),
            service_level_s: 20,
            service_level_pct: 80,
            ring_timeout_ms: 18_000,
            wrap_up_ms: 30_000,
            max_wait_ms: 600_000,
            on_max_wait: MaxWaitPolicy::Closing {
                prompt: "closed".into(),
            },
            closing_prompt: "closed".into(),
            when_no_agents: NoAgentsPolicy::Close,
            no_agents_grace_ms: 10_000,
            announce_every_ms: 45_000,
            announce_min_wait_s: 60,
            apology_after_ms: 60_000,
            hold_prompt: "hold_music".into(),
            apology_prompt: "sorry_wait".into(),
            default_handle_time_ms: 180_000,
            relax: Vec::new(),
            record: false,
            complaint: false,
        }
    }
}

/// Caller numbers that are raised in priority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VipRules {
    pub numbers: BTreeSet<String>,
    pub prefixes: Vec<String>,
    /// Added to the call's priority when the caller matches.
    pub priority_boost: i32,
}

impl VipRules {
    pub fn is_vip(&self, caller: &str) -> bool {
        self.numbers.contains(caller) || self.prefixes.iter().any(|p| caller.starts_with(p))
    }
}

/// The requirement of one step of a queue's ladder (step 0 = no relaxation yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) primary_min: u8,
    pub(crate) alternatives: Vec<(String, u8)>,
}

/// All queues plus the global routing settings. Cheap to share (`Arc`) between config and ACD.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSet {
    queues: BTreeMap<String, QueueSpec>,
    steps: BTreeMap<String, Vec<Step>>,
    pub vip: VipRules,
    /// A caller who calls again within this window is offered first to their last agent.
    pub repeat_window_ms: u64,
    /// How many recent talk + ACW durations the expected-wait average keeps per queue.
    pub handle_time_samples: usize,
    /// Disposition codes agents set on their calls (`[dispositions]`, per queue override).
    pub dispositions: crate::engine::dispositions::DispositionCatalog,
}

/// A semantic fault: (dotted key, reason), turned into a `ConfigError` by the loader.
pub type QueueFault = (String, String);

impl QueueSet {
    pub fn new(
        queues: Vec<QueueSpec>,
        vip: VipRules,
        repeat_window_ms: u64,
        handle_time_samples: usize,
    ) -> Result<QueueSet, QueueFault> {
        let mut map = BTreeMap::new();
        for mut q in queues {
            let key = |k: &str| format!("queues.{}.{k}", q.name);
            if !(1..=5).contains(&q.min_proficiency) {
                return Err((key("min_proficiency"), "must be 1 to 5".into()));
            }
            for (s, lvl) in &q.extra_skills {
                if !(1..=5).contains(lvl) {
                    return Err((key(&format!("extra_skills.{s}")), "must be 1 to 5".into()));
                }
            }
            if q.ring_timeout_ms < 1000 || q.ring_timeout_ms > 120_000 {
                return Err((key("ring_timeout_ms"), "must be 1000 to 120000".into()));
            }
            if q.service_level_pct > 100 {
                return Err((key("service_level_pct"), "must be 0 to 100".into()));
            }
            q.relax.sort_by_key(|r| r.after_ms);
            for (i, r) in q.relax.iter().enumerate() {
                let k = key(&format!("relax.{i}"));
                if r.after_ms == 0 {
                    return Err((k, "after_s must be above 0".into()));
                }
                if r.min_proficiency.is_none() && r.alt_skill.is_none() {
                    return Err((k, "needs min_proficiency and/or skill".into()));
                }
                if r.min_proficiency.is_some_and(|m| !(1..=5).contains(&m))
                    || r.alt_skill
                        .as_ref()
                        .is_some_and(|(_, m)| !(1..=5).contains(m))
                {
                    return Err((k, "proficiency must be 1 to 5".into()));
                }
            }
            if map.contains_key(&q.name) {
                return Err((format!("queues.{}", q.name), "defined twice".into()));
            }
            map.insert(q.name.clone(), q);
        }
        for q in map.values() {
            if let MaxWaitPolicy::Overflow { queue } = &q.on_max_wait {
                if !map.contains_key(queue) {
                    return Err((
                        format!("queues.{}.overflow", q.name),
                        format!("`{queue}` is not a queue"),
                    ));
                }
                if q.max_wait_ms == 0 && q.when_no_agents != NoAgentsPolicy::Overflow {
                    return Err((
                        format!("queues.{}.overflow", q.name),
                        "needs max_wait_s above 0 or when_no_agents = \"overflow\"".into(),
                    ));
                }
            } else if q.when_no_agents == NoAgentsPolicy::Overflow {
                return Err((
                    format!("queues.{}.when_no_agents", q.name),
                    "\"overflow\" needs an `overflow` queue".into(),
                ));
            }
        }
        // Overflow chains must end, or a caller could bounce between queues forever.
        for start in map.keys() {
            let mut seen = BTreeSet::new();
            let mut at = start;
            while let Some(MaxWaitPolicy::Overflow { queue }) = map.get(at).map(|q| &q.on_max_wait)
            {
                if !seen.insert(at.clone()) {
                    return Err((
                        format!("queues.{start}.overflow"),
                        "overflow queues form a cycle".into(),
                    ));
                }
                at = queue;
            }
        }
        let steps = map
            .iter()
            .map(|(name, q)| (name.clone(), ladder(q)))
            .collect();
        Ok(QueueSet {
            queues: map,
            steps,
            vip,
            repeat_window_ms,
            handle_time_samples: handle_time_samples.max(1),
            dispositions: Default::default(),
        })
    }

    pub fn get(&self, name: &str) -> Option<&QueueSpec> {
        self.queues.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.queues.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    pub(crate) fn steps(&self, name: &str) -> &[Step] {
        self.steps.get(name).map_or(&[], Vec::as_slice)
    }
}

/// Cumulative requirements: step k applies every relaxation up to k.
fn ladder(q: &QueueSpec) -> Vec<Step> {
    let mut cur = Step {
        primary_min: q.min_proficiency,
        alternatives: Vec::new(),
    };
    let mut out = vec![cur.clone()];
    for r in &q.relax {
        if let Some(m) = r.min_proficiency {
            cur.primary_min = cur.primary_min.min(m);
        }
        if let Some(alt) = &r.alt_skill {
            cur.alternatives.push(alt.clone());
        }
        out.push(cur.clone());
    }
    out
}

/// The first step of `q`'s ladder at which an agent with `skills` qualifies, if any.
/// Steps only widen the pool, so "eligible at step s" is `min_step <= s`.
pub(crate) fn min_step(
    q: &QueueSpec,
    steps: &[Step],
    skills: &BTreeMap<String, u8>,
) -> Option<usize> {
    let level = |s: &str| skills.get(s).copied().unwrap_or(0);
    if q.extra_skills.iter().any(|(s, m)| level(s) < *m) {
        return None;
    }
    steps.iter().position(|st| {
        level(&q.skill) >= st.primary_min || st.alternatives.iter().any(|(s, m)| level(s) >= *m)
    })
}

/// Moving average of the last N handle times (talk + ACW) of one queue.
#[derive(Clone, Debug, Default)]
pub(crate) struct HandleTimes {
    samples: VecDeque<u64>,
    sum: u64,
}

impl HandleTimes {
    pub(crate) fn push(&mut self, ms: u64, keep: usize) {
        self.samples.push_back(ms);
        self.sum = self.sum.saturating_add(ms);
        while self.samples.len() > keep.max(1) {
            if let Some(old) = self.samples.pop_front() {
                self.sum -= old;
            }
        }
    }

    pub(crate) fn average_ms(&self, default_ms: u64) -> u64 {
        if self.samples.is_empty() {
            default_ms
        } else {
            self.sum / self.samples.len() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skills(v: &[(&str, u8)]) -> BTreeMap<String, u8> {
        v.iter().map(|(s, l)| (s.to_string(), *l)).collect()
    }

    #[test]
    fn ladder_widens_step_by_step() {
        let mut q = QueueSpec::new("tech", "tech", 3);
        q.relax = vec![
            Relaxation {
                after_ms: 120_000,
                min_proficiency: None,
                alt_skill: Some(("after_sales".into(), 4)),
            },
            Relaxation {
                after_ms: 60_000,
                min_proficiency: Some(1),
                alt_skill: None,
            },
        ];
        let set = QueueSet::new(vec![q], VipRules::default(), 0, 10).unwrap();
        let q = set.get("tech").unwrap();
        let st = set.steps("tech");
        assert_eq!(st.len(), 3);
        assert_eq!(q.relax[0].after_ms, 60_000, "sorted");
        assert_eq!(min_step(q, st, &skills(&[("tech", 4)])), Some(0));
        assert_eq!(min_step(q, st, &skills(&[("tech", 1)])), Some(1));
        assert_eq!(min_step(q, st, &skills(&[("after_sales", 5)])), Some(2));
        assert_eq!(min_step(q, st, &skills(&[("after_sales", 3)])), None);
    }

    #[test]
    fn extra_skills_are_never_relaxed() {
        let mut q = QueueSpec::new("c", "complaints", 2);
        q.extra_skills = skills(&[("tech", 2)]);
        q.relax = vec![Relaxation {
            after_ms: 1,
            min_proficiency: Some(1),
            alt_skill: None,
        }];
        let set = QueueSet::new(vec![q], VipRules::default(), 0, 10).unwrap();
        let q = set.get("c").unwrap();
        assert_eq!(
            min_step(q, set.steps("c"), &skills(&[("complaints", 5)])),
            None
        );
        assert_eq!(
            min_step(
                q,
                set.steps("c"),
                &skills(&[("complaints", 1), ("tech", 2)])
            ),
            Some(1)
        );
    }

    #[test]
    fn overflow_must_exist_and_not_cycle() {
        let mut a = QueueSpec::new("a", "x", 1);
        a.on_max_wait = MaxWaitPolicy::Overflow { queue: "b".into() };
        let e = QueueSet::new(vec![a.clone()], VipRules::default(), 0, 10).unwrap_err();
        assert_eq!(e.0, "queues.a.overflow");
        let mut b = QueueSpec::new("b", "x", 1);
        b.on_max_wait = MaxWaitPolicy::Overflow { queue: "a".into() };
        let e = QueueSet::new(vec![a, b], VipRules::default(), 0, 10).unwrap_err();
        assert!(e.1.contains("cycle"), "{e:?}");
    }

    #[test]
    fn bad_levels_are_refused() {
        let q = QueueSpec::new("a", "x", 6);
        let e = QueueSet::new(vec![q], VipRules::default(), 0, 10).unwrap_err();
        assert_eq!(e.0, "queues.a.min_proficiency");
    }

    #[test]
    fn vip_numbers_and_prefixes() {
        let vip = VipRules {
            numbers: ["+8610000".to_string()].into(),
            prefixes: vec!["+86139".into()],
            priority_boost: 10,
        };
        assert!(vip.is_vip("+8610000"));
        assert!(vip.is_vip("+8613912345678"));
        assert!(!vip.is_vip("+8613812345678"));
    }

    #[test]
    fn handle_time_average_keeps_the_last_n() {
        let mut h = HandleTimes::default();
        assert_eq!(h.average_ms(7), 7);
        for ms in [100, 200, 300, 400] {
            h.push(ms, 3);
        }
        assert_eq!(h.average_ms(7), 300);
    }
}
