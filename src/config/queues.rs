//! `queues.toml` -> `QueueSet`. The format is documented in the shipped `config/queues.toml`:
//! top-level routing settings, `[vip]`, `[defaults]` (any per-queue setting), and one
//! `[queues.<name>]` table per queue that may override every default.

use super::dispositions::{self, RawCode, RawDispositions};
use super::toml_error::{self, ConfigError};
use crate::engine::acd::{
    MaxWaitPolicy, NoAgentsPolicy, QueueSet, QueueSpec, Relaxation, VipRules,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Rings an offer may last when `ring_timeout_ms` is not set (the three-ring rule).
const DEFAULT_OFFER_RINGS: u64 = 3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default = "default_repeat_window")]
    repeat_window_s: u64,
    #[serde(default = "default_samples")]
    handle_time_samples: usize,
    #[serde(default)]
    vip: RawVip,
    #[serde(default)]
    defaults: Settings,
    #[serde(default)]
    queues: BTreeMap<String, RawQueue>,
    /// Disposition codes (config/dispositions.rs); absent: the shipped codes.
    dispositions: Option<RawDispositions>,
}

fn default_repeat_window() -> u64 {
    86_400
}

fn default_samples() -> usize {
    20
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    #[serde(default)]
    numbers: Vec<String>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    priority_boost: Option<i32>,
}

/// Settings a queue may take from `[defaults]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    service_level_s: Option<u64>,
    service_level_pct: Option<u8>,
    ring_timeout_ms: Option<u64>,
    wrap_up_s: Option<u64>,
    max_wait_s: Option<u64>,
    closing_prompt: Option<String>,
    /// "wait", "overflow" or "close": a caller with nobody logged in who could take the call.
    when_no_agents: Option<String>,
    no_agents_grace_s: Option<u64>,
    announce_every_s: Option<u64>,
    announce_min_wait_s: Option<u64>,
    apology_after_s: Option<u64>,
    apology_prompt: Option<String>,
    hold_prompt: Option<String>,
    default_handle_time_s: Option<u64>,
    /// Record connected calls (stereo WAV in `[recording] dir` of ccswitch.toml).
    record: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    label: Option<String>,
    #[serde(default)]
    priority: i32,
    skill: String,
    min_proficiency: u8,
    #[serde(default)]
    extra_skills: BTreeMap<String, u8>,
    #[serde(default)]
    relax: Vec<RawRelax>,
    /// Queue to move the caller to at max wait (and with `when_no_agents = "overflow"`);
    /// without it the caller hears the closing prompt and a callback is requested.
    overflow: Option<String>,
    service_level_s: Option<u64>,
    service_level_pct: Option<u8>,
    ring_timeout_ms: Option<u64>,
    wrap_up_s: Option<u64>,
    max_wait_s: Option<u64>,
    closing_prompt: Option<String>,
    /// "wait", "overflow" or "close": a caller with nobody logged in who could take the call.
    when_no_agents: Option<String>,
    no_agents_grace_s: Option<u64>,
    announce_every_s: Option<u64>,
    announce_min_wait_s: Option<u64>,
    apology_after_s: Option<u64>,
    apology_prompt: Option<String>,
    hold_prompt: Option<String>,
    default_handle_time_s: Option<u64>,
    /// Record connected calls (stereo WAV in `[recording] dir` of ccswitch.toml).
    record: Option<bool>,
    /// A complaints queue (follow-up task for every call handled here). Per queue only:
    /// not a `[defaults]` key, so no queue becomes one by accident.
    #[serde(default)]
    complaint: bool,
    /// This queue's disposition codes, replacing `[dispositions] codes`.
    dispositions: Option<Vec<RawCode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelax {
    after_s: u64,
    min_proficiency: Option<u8>,
    /// An alternative skill accepted from this step on...
    skill: Option<String>,
    /// ...at this proficiency (default 1).
    skill_min: Option<u8>,
}

/// Parses `text` (the contents of `file`); `ring_cycle_ms` gives the default ring timeout.
pub(crate) fn parse(file: &Path, text: &str, ring_cycle_ms: u64) -> Result<QueueSet, ConfigError> {
    let raw: RawFile = toml_error::parse(file, text)?;
    let err = |key: String, reason: String| ConfigError::new(file, key, reason);
    let d = &raw.defaults;
    for (key, id) in [
        ("defaults.closing_prompt", &d.closing_prompt),
        ("defaults.apology_prompt", &d.apology_prompt),
        ("defaults.hold_prompt", &d.hold_prompt),
    ] {
        if let Some(id) = id {
            check_id(key, id).map_err(|(k, r)| err(k, r))?;
        }
    }
    if let Some(p) = &d.when_no_agents {
        if NoAgentsPolicy::parse(p).is_none() {
            return Err(err(
                "defaults.when_no_agents".into(),
                format!("`{p}` is not one of \"wait\", \"overflow\", \"close\""),
            ));
        }
    }
    if raw.repeat_window_s > 30 * 86_400 {
        return Err(err(
            "repeat_window_s".into(),
            "must be at most 2592000 (30 days)".into(),
        ));
    }
    if !(1..=10_000).contains(&raw.handle_time_samples) {
        return Err(err(
            "handle_time_samples".into(),
            "must be 1 to 10000".into(),
        ));
    }
    let mut specs = Vec::new();
    let mut queue_codes = Vec::new();
    for (name, mut q) in raw.queues {
        if let Some(codes) = q.dispositions.take() {
            queue_codes.push((name.clone(), codes));
        }
        specs.push(queue(&name, q, d, ring_cycle_ms).map_err(|(k, r)| err(k, r))?);
    }
    let catalog =
        dispositions::catalog(raw.dispositions, queue_codes).map_err(|(k, r)| err(k, r))?;
    for (i, n) in raw.vip.numbers.iter().enumerate() {
        if n.trim().is_empty() {
            return Err(err(format!("vip.numbers.{i}"), "must not be empty".into()));
        }
    }
    for (i, p) in raw.vip.prefixes.iter().enumerate() {
        if p.trim().is_empty() {
            return Err(err(
                format!("vip.prefixes.{i}"),
                "an empty prefix would make every caller a VIP".into(),
            ));
        }
    }
    let vip = VipRules {
        numbers: raw.vip.numbers.into_iter().collect(),
        prefixes: raw.vip.prefixes,
        priority_boost: raw.vip.priority_boost.unwrap_or(10),
    };
    let mut set = QueueSet::new(
        specs,
        vip,
        raw.repeat_window_s * 1000,
        raw.handle_time_samples,
    )
    .map_err(|(k, r)| err(k, r))?;
    set.dispositions = catalog;
    Ok(set)
}

type Fault = (String, String);

fn queue(name: &str, q: RawQueue, d: &Settings, ring_cycle_ms: u64) -> Result<QueueSpec, Fault> {
    let key = |k: &str| format!("queues.{name}.{k}");
    check_id(&format!("queues.{name}"), name)?;
    check_id(&key("skill"), &q.skill)?;
    let mut s = QueueSpec::new(name, &q.skill, q.min_proficiency);
    s.label = q.label.unwrap_or_else(|| name.to_string());
    s.priority = q.priority;
    for sk in q.extra_skills.keys() {
        check_id(&key(&format!("extra_skills.{sk}")), sk)?;
    }
    s.extra_skills = q.extra_skills;
    s.record = q.record.or(d.record).unwrap_or(false);
    s.complaint = q.complaint;
    s.service_level_s = q.service_level_s.or(d.service_level_s).unwrap_or(20);
    s.service_level_pct = q.service_level_pct.or(d.service_level_pct).unwrap_or(80);
    s.ring_timeout_ms = q
        .ring_timeout_ms
        .or(d.ring_timeout_ms)
        .unwrap_or(DEFAULT_OFFER_RINGS * ring_cycle_ms);
    s.wrap_up_ms = secs(
        &key("wrap_up_s"),
        q.wrap_up_s.or(d.wrap_up_s).unwrap_or(30),
        3600,
    )?;
    s.max_wait_ms = secs(
        &key("max_wait_s"),
        q.max_wait_s.or(d.max_wait_s).unwrap_or(600),
        86_400,
    )?;
    s.announce_every_ms = secs(
        &key("announce_every_s"),
        q.announce_every_s.or(d.announce_every_s).unwrap_or(45),
        3600,
    )?;
    if s.announce_every_ms > 0 && s.announce_every_ms < 10_000 {
        return Err((
            key("announce_every_s"),
            "must be 0 (never) or at least 10".into(),
        ));
    }
    s.announce_min_wait_s = q
        .announce_min_wait_s
        .or(d.announce_min_wait_s)
        .unwrap_or(60);
    s.apology_after_ms = secs(
        &key("apology_after_s"),
        q.apology_after_s.or(d.apology_after_s).unwrap_or(60),
        86_400,
    )?;
    s.default_handle_time_ms = secs(
        &key("default_handle_time_s"),
        q.default_handle_time_s
            .or(d.default_handle_time_s)
            .unwrap_or(180),
        86_400,
    )?;
    let prompt = |k: &str, own: Option<String>, def: &Option<String>, builtin: &str| {
        let id = own
            .or_else(|| def.clone())
            .unwrap_or_else(|| builtin.into());
        check_id(&key(k), &id).map(|_| id)
    };
    s.hold_prompt = prompt("hold_prompt", q.hold_prompt, &d.hold_prompt, "hold_music")?;
    s.apology_prompt = prompt(
        "apology_prompt",
        q.apology_prompt,
        &d.apology_prompt,
        "sorry_wait",
    )?;
    let closing = prompt(
        "closing_prompt",
        q.closing_prompt,
        &d.closing_prompt,
        "closed",
    )?;
    let policy = q
        .when_no_agents
        .or_else(|| d.when_no_agents.clone())
        .unwrap_or_else(|| "close".into());
    s.when_no_agents = NoAgentsPolicy::parse(&policy).ok_or_else(|| {
        (
            key("when_no_agents"),
            format!("`{policy}` is not one of \"wait\", \"overflow\", \"close\""),
        )
    })?;
    s.no_agents_grace_ms = secs(
        &key("no_agents_grace_s"),
        q.no_agents_grace_s.or(d.no_agents_grace_s).unwrap_or(10),
        3600,
    )?;
    s.closing_prompt = closing.clone();
    s.on_max_wait = match q.overflow {
        Some(queue) => MaxWaitPolicy::Overflow { queue },
        None => MaxWaitPolicy::Closing { prompt: closing },
    };
    for (i, r) in q.relax.into_iter().enumerate() {
        let k = key(&format!("relax.{i}"));
        if r.skill_min.is_some() && r.skill.is_none() {
            return Err((k, "skill_min needs skill".into()));
        }
        if let Some(sk) = &r.skill {
            check_id(&format!("{k}.skill"), sk)?;
        }
        s.relax.push(Relaxation {
            after_ms: secs(&format!("{k}.after_s"), r.after_s, 86_400)?,
            min_proficiency: r.min_proficiency,
            alt_skill: r.skill.map(|sk| (sk, r.skill_min.unwrap_or(1))),
        });
    }
    Ok(s)
}

fn secs(key: &str, s: u64, max: u64) -> Result<u64, Fault> {
    if s > max {
        return Err((key.to_string(), format!("must be at most {max} seconds")));
    }
    Ok(s * 1000)
}

/// Names and prompt ids become keys and file names: plain identifiers only.
fn check_id(key: &str, id: &str) -> Result<(), Fault> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err((
            key.to_string(),
            format!("`{id}` is not an identifier (letters, digits, `_` and `-`)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<QueueSet, ConfigError> {
        parse(Path::new("queues.toml"), text, 6000)
    }

    #[test]
    fn shipped_file_parses() {
        let text = include_str!("../../config/queues.toml");
        let set = p(text).unwrap();
        let tech = set.get("tech").unwrap();
        assert_eq!(tech.ring_timeout_ms, 18_000);
        assert_eq!(tech.min_proficiency, 3);
        assert_eq!(tech.relax[0].after_ms, 60_000);
        assert_eq!(tech.relax[0].min_proficiency, Some(1));
        assert!(set.get("complaints").unwrap().priority > tech.priority);
        assert_eq!(set.repeat_window_ms, 86_400_000);
        assert_eq!(tech.wrap_up_ms, 30_000);
        assert_eq!(tech.hold_prompt, "hold_music");
        assert_eq!(tech.when_no_agents, NoAgentsPolicy::Close);
        assert_eq!(tech.no_agents_grace_ms, 10_000);
        assert_eq!(tech.closing_prompt, "closed");
        assert_eq!(tech.service_level_s, 20);
        assert_eq!(tech.service_level_pct, 80);
        assert!(set.get("complaints").unwrap().complaint);
        assert!(!tech.complaint && !set.get("after_sales").unwrap().complaint);
    }

    #[test]
    fn complaint_is_a_per_queue_flag_off_by_default() {
        let q = "[queues.a]\nskill = \"x\"\nmin_proficiency = 1\n";
        assert!(!p(q).unwrap().get("a").unwrap().complaint);
        let set = p(&format!("{q}complaint = true\n")).unwrap();
        assert!(set.get("a").unwrap().complaint);
        let e = p(&format!("{q}complaint = \"yes\"\n")).unwrap_err();
        assert_eq!(e.key, "queues.a.complaint");
        // Not a [defaults] key: one line there must not turn every queue into a complaints queue.
        let e = p(&format!("[defaults]\ncomplaint = true\n{q}")).unwrap_err();
        assert_eq!(e.key, "defaults.complaint");
    }

    #[test]
    fn when_no_agents_and_its_grace() {
        let q = "[queues.a]\nskill = \"x\"\nmin_proficiency = 1\n";
        let set = p(q).unwrap();
        let a = set.get("a").unwrap();
        assert_eq!(a.when_no_agents, NoAgentsPolicy::Close, "built-in default");
        assert_eq!(a.no_agents_grace_ms, 10_000);
        let set = p(&format!(
            "[defaults]\nwhen_no_agents = \"wait\"\nno_agents_grace_s = 3\n{q}[queues.b]\nskill = \"y\"\nmin_proficiency = 1\nwhen_no_agents = \"overflow\"\noverflow = \"a\"\nmax_wait_s = 0\n"
        ))
        .unwrap();
        assert_eq!(set.get("a").unwrap().when_no_agents, NoAgentsPolicy::Wait);
        assert_eq!(set.get("a").unwrap().no_agents_grace_ms, 3_000);
        let b = set.get("b").unwrap();
        assert_eq!(b.when_no_agents, NoAgentsPolicy::Overflow);
        assert_eq!(b.overflow_queue(), Some("a"));
        assert_eq!(b.closing_prompt, "closed");
        let e = p(&format!("{q}when_no_agents = \"hang_up\"\n")).unwrap_err();
        assert_eq!(e.key, "queues.a.when_no_agents");
        assert!(e.reason.contains("\"wait\""), "{}", e.reason);
        let e = p(&format!("{q}when_no_agents = \"overflow\"\n")).unwrap_err();
        assert_eq!(e.key, "queues.a.when_no_agents");
        assert!(e.reason.contains("`overflow` queue"), "{}", e.reason);
        let e = p(&format!("{q}no_agents_grace_s = 3601\n")).unwrap_err();
        assert_eq!(e.key, "queues.a.no_agents_grace_s");
        let e = p("[defaults]\nwhen_no_agents = \"never\"\n").unwrap_err();
        assert_eq!(e.key, "defaults.when_no_agents");
        let e = p(&format!(
            "{q}[queues.b]\nskill = \"y\"\nmin_proficiency = 1\noverflow = \"a\"\nmax_wait_s = 0\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "queues.b.overflow", "an overflow nothing can reach");
    }

    #[test]
    fn ring_timeout_defaults_to_three_rings_of_the_cycle() {
        let set = parse(
            Path::new("q.toml"),
            "[queues.a]\nskill = \"x\"\nmin_proficiency = 1\n",
            5000,
        )
        .unwrap();
        assert_eq!(set.get("a").unwrap().ring_timeout_ms, 15_000);
    }

    #[test]
    fn defaults_apply_and_queues_override() {
        let set = p("[defaults]\nwrap_up_s = 10\n[queues.a]\nskill = \"x\"\nmin_proficiency = 1\n[queues.b]\nskill = \"y\"\nmin_proficiency = 2\nwrap_up_s = 5\n").unwrap();
        assert_eq!(set.get("a").unwrap().wrap_up_ms, 10_000);
        assert_eq!(set.get("b").unwrap().wrap_up_ms, 5_000);
    }

    #[test]
    fn faults_name_the_key() {
        let e = p("[queues.a]\nskill = \"x\"\nmin_proficiency = 9\n").unwrap_err();
        assert_eq!(e.key, "queues.a.min_proficiency");
        let e =
            p("[queues.a]\nskill = \"x\"\nmin_proficiency = 1\noverflow = \"nope\"\n").unwrap_err();
        assert_eq!(e.key, "queues.a.overflow");
        let e = p("[queues.a]\nskill = \"x\"\nmin_proficiency = 1\ncolour = 1\n").unwrap_err();
        assert_eq!(e.key, "queues.a.colour");
        let e = p("[vip]\nprefixes = [\"\"]\n").unwrap_err();
        assert_eq!(e.key, "vip.prefixes.0");
        let e = p("[queues.a]\nskill = \"x\"\nmin_proficiency = 1\nhold_prompt = \"../x\"\n")
            .unwrap_err();
        assert_eq!(e.key, "queues.a.hold_prompt");
        let e = p("[queues.a]\nskill = \"x\"\nmin_proficiency = 1\nrelax = [{ after_s = 0, min_proficiency = 1 }]\n").unwrap_err();
        assert_eq!(e.key, "queues.a.relax.0");
    }
}
