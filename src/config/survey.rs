//! `survey.toml` -> `SurveyPolicy` (issue 8). Optional file: absent, or `enabled = false`,
//! means no surveys; a present file is validated in full either way, so `check-config`
//! catches faults before anyone turns surveys on. The format is documented in the shipped
//! `config/survey.toml`.

use super::toml_error::{self, ConfigError};
use crate::engine::acd::QueueSet;
use crate::engine::agents::AgentDirectory;
use crate::engine::survey::numbers::{self, NumberRules};
use crate::engine::survey::template::{Placeholder, Template};
use crate::engine::survey::{LanguageTexts, QueueRules, QuietHours, SurveyPolicy};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What `survey.toml` is checked against: the rest of the config.
pub(crate) struct Context<'a> {
    /// `prompts.languages` of ccswitch.toml: the languages a caller can choose.
    pub languages: &'a [String],
    /// The IVR's time zone: quiet hours are local time there.
    pub time_zone: Tz,
    pub queues: &'a QueueSet,
    pub agents: &'a AgentDirectory,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    enabled: bool,
    company: String,
    gateway: String,
    default_language: String,
    #[serde(default = "default_delay")]
    delay_s: u64,
    #[serde(default = "default_reply_window")]
    reply_window_h: u64,
    #[serde(default = "default_cap")]
    frequency_cap_days: u32,
    #[serde(default)]
    quiet_hours: RawQuiet,
    #[serde(default)]
    qualify: RawQualify,
    #[serde(default)]
    nps: RawNps,
    #[serde(default)]
    numbers: RawNumbers,
    #[serde(default)]
    follow_up: RawFollowUp,
    #[serde(default)]
    privacy: RawPrivacy,
    templates: BTreeMap<String, RawTexts>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawPrivacy {
    allow_unmask: bool,
    retention_days: u32,
}

impl Default for RawPrivacy {
    fn default() -> Self {
        let p = Privacy::default();
        RawPrivacy {
            allow_unmask: p.allow_unmask,
            retention_days: p.retention_days,
        }
    }
}

/// `[privacy]` of survey.toml (PIPL, minimum necessary). Applies whether or not surveys are
/// enabled; the defaults when the file is absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Privacy {
    /// `report ... --unmask` may print full caller numbers.
    pub allow_unmask: bool,
    /// Days a caller's full number is kept after its survey and tasks no longer need it
    /// (1-3650); then only its keyed hash stays.
    pub retention_days: u32,
}

impl Default for Privacy {
    fn default() -> Self {
        Privacy {
            allow_unmask: false,
            retention_days: 30,
        }
    }
}

impl Privacy {
    pub fn retention_ms(&self) -> u64 {
        u64::from(self.retention_days) * 86_400_000
    }
}

fn default_delay() -> u64 {
    60
}
fn default_reply_window() -> u64 {
    48
}
fn default_cap() -> u32 {
    7
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawQuiet {
    enabled: bool,
    start: String,
    end: String,
}

impl Default for RawQuiet {
    fn default() -> Self {
        RawQuiet {
            enabled: true,
            start: "21:00".into(),
            end: "08:00".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawQualify {
    agent_handled: bool,
    self_served: bool,
    min_talk_s: u64,
    include_queues: Vec<String>,
    exclude_queues: Vec<String>,
}

impl Default for RawQualify {
    fn default() -> Self {
        RawQualify {
            agent_handled: true,
            self_served: false,
            min_talk_s: 15,
            include_queues: Vec::new(),
            exclude_queues: Vec::new(),
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawNps {
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawNumbers {
    default_region: String,
    internal_max_digits: usize,
}

impl Default for RawNumbers {
    fn default() -> Self {
        RawNumbers {
            default_region: "CN".into(),
            internal_max_digits: 6,
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawFollowUp {
    max_score: u8,
    complaint_queues: Vec<String>,
    due_h: u64,
}

impl Default for RawFollowUp {
    fn default() -> Self {
        RawFollowUp {
            max_score: 2,
            complaint_queues: Vec::new(),
            due_h: 24,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTexts {
    csat: String,
    self_served: Option<String>,
    nps: Option<String>,
    clarify: String,
    opted_out: String,
}

type Fault = (String, String);

/// Parses `text` (the contents of `file`); None when surveys are disabled.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn parse(
    file: &Path,
    text: &str,
    ctx: &Context<'_>,
) -> Result<Option<SurveyPolicy>, ConfigError> {
    parse_with_privacy(file, text, ctx).map(|(policy, _)| policy)
}

/// `parse`, and the `[privacy]` section (validated whether or not surveys are enabled).
pub(crate) fn parse_with_privacy(
    file: &Path,
    text: &str,
    ctx: &Context<'_>,
) -> Result<(Option<SurveyPolicy>, Privacy), ConfigError> {
    let raw: RawFile = toml_error::parse(file, text)?;
    let enabled = raw.enabled;
    let privacy =
        privacy(&raw.privacy).map_err(|(key, reason)| ConfigError::new(file, key, reason))?;
    let policy = build(raw, ctx).map_err(|(key, reason)| ConfigError::new(file, key, reason))?;
    Ok((enabled.then_some(policy), privacy))
}

fn privacy(raw: &RawPrivacy) -> Result<Privacy, Fault> {
    if !(1..=3650).contains(&raw.retention_days) {
        return Err(fault(
            "privacy.retention_days",
            "must be 1 to 3650 (ten years)",
        ));
    }
    Ok(Privacy {
        allow_unmask: raw.allow_unmask,
        retention_days: raw.retention_days,
    })
}

fn fault(key: impl Into<String>, reason: impl Into<String>) -> Fault {
    (key.into(), reason.into())
}

fn build(raw: RawFile, ctx: &Context<'_>) -> Result<SurveyPolicy, Fault> {
    if raw.company.trim().is_empty() {
        return Err(fault("company", "must not be empty"));
    }
    if !is_identifier(&raw.gateway) {
        return Err(fault(
            "gateway",
            format!(
                "`{}` is not a gateway name (letters, digits, `_` and `-`)",
                raw.gateway
            ),
        ));
    }
    if raw.delay_s > 86_400 {
        return Err(fault("delay_s", "must be at most 86400 (a day)"));
    }
    if !(1..=720).contains(&raw.reply_window_h) {
        return Err(fault("reply_window_h", "must be 1 to 720 (30 days)"));
    }
    if raw.frequency_cap_days > 365 {
        return Err(fault("frequency_cap_days", "must be 0 (no cap) to 365"));
    }
    let quiet_hours = quiet_hours(&raw.quiet_hours)?;

    let q = &raw.qualify;
    if !q.agent_handled && !q.self_served {
        return Err(fault(
            "qualify",
            "agent_handled and self_served are both false: no call would ever qualify \
             (set enabled = false to turn surveys off)",
        ));
    }
    if q.min_talk_s > 3600 {
        return Err(fault("qualify.min_talk_s", "must be at most 3600"));
    }
    let include = queue_set(ctx, "qualify.include_queues", &q.include_queues)?;
    let exclude = queue_set(ctx, "qualify.exclude_queues", &q.exclude_queues)?;
    if let Some(both) = include.intersection(&exclude).next() {
        return Err(fault(
            "qualify.exclude_queues",
            format!("`{both}` is also in qualify.include_queues"),
        ));
    }

    let default_region = numbers::region(&raw.numbers.default_region).ok_or_else(|| {
        fault(
            "numbers.default_region",
            format!(
                "`{}` is not a region the phone number metadata knows (a CLDR code like \
                 \"CN\", \"US\", \"GB\")",
                raw.numbers.default_region
            ),
        )
    })?;
    if raw.numbers.internal_max_digits > 8 {
        return Err(fault(
            "numbers.internal_max_digits",
            "must be 0 to 8 (longer numbers are real subscriber numbers)",
        ));
    }

    let f = &raw.follow_up;
    if f.max_score > 4 {
        return Err(fault(
            "follow_up.max_score",
            "must be 0 (no task for low scores) to 4",
        ));
    }
    if !(1..=720).contains(&f.due_h) {
        return Err(fault("follow_up.due_h", "must be 1 to 720"));
    }
    // `complaint = true` in queues.toml is the primary way; the list here adds to it.
    let mut complaint_queues = queue_set(ctx, "follow_up.complaint_queues", &f.complaint_queues)?;
    complaint_queues.extend(
        ctx.queues
            .names()
            .filter(|n| ctx.queues.get(n).is_some_and(|q| q.complaint))
            .map(str::to_string),
    );

    let mut texts = BTreeMap::new();
    for (lang, t) in raw.templates {
        if !ctx.languages.contains(&lang) {
            return Err(fault(
                format!("templates.{lang}"),
                format!(
                    "`{lang}` is not one of prompts.languages {:?} in ccswitch.toml: no \
                     caller could choose it",
                    ctx.languages
                ),
            ));
        }
        let parsed = language_texts(&lang, t, q.self_served, raw.nps.enabled)?;
        texts.insert(lang, parsed);
    }
    let default_texts = texts.remove(&raw.default_language).ok_or_else(|| {
        fault(
            "default_language",
            format!(
                "there is no [templates.{}] for the default language",
                raw.default_language
            ),
        )
    })?;

    Ok(SurveyPolicy {
        agent_display: ctx
            .agents
            .agents
            .iter()
            .filter_map(|a| Some((a.extension.clone(), a.display_id.clone()?)))
            .collect(),
        company: raw.company,
        gateway: raw.gateway,
        agent_handled: q.agent_handled,
        self_served: q.self_served,
        min_talk_ms: q.min_talk_s * 1000,
        queues: QueueRules { include, exclude },
        delay_ms: raw.delay_s * 1000,
        time_zone: ctx.time_zone,
        quiet_hours,
        frequency_cap_days: raw.frequency_cap_days,
        reply_window_ms: raw.reply_window_h * 3_600_000,
        nps: raw.nps.enabled,
        numbers: NumberRules {
            default_region,
            internal_max_digits: raw.numbers.internal_max_digits,
            extensions: ctx
                .agents
                .agents
                .iter()
                .map(|a| a.extension.clone())
                .collect(),
        },
        default_language: raw.default_language,
        default_texts,
        texts,
        queue_labels: ctx
            .queues
            .names()
            .filter_map(|n| ctx.queues.get(n).map(|q| (n.to_string(), q.label.clone())))
            .collect(),
        follow_up_max_score: f.max_score,
        complaint_queues,
        follow_up_due_ms: f.due_h * 3_600_000,
    })
}

fn quiet_hours(raw: &RawQuiet) -> Result<Option<QuietHours>, Fault> {
    let start =
        minute_of_day(&raw.start).ok_or_else(|| bad_time("quiet_hours.start", &raw.start))?;
    let end = minute_of_day(&raw.end).ok_or_else(|| bad_time("quiet_hours.end", &raw.end))?;
    if start == end {
        return Err(fault(
            "quiet_hours.end",
            "equals start: an empty window (set quiet_hours.enabled = false for none)",
        ));
    }
    Ok(raw.enabled.then_some(QuietHours {
        start_minute: start,
        end_minute: end,
    }))
}

fn bad_time(key: &str, value: &str) -> Fault {
    fault(
        key,
        format!("`{value}` is not a time of day \"HH:MM\" (00:00 to 23:59)"),
    )
}

/// "HH:MM" -> minutes since midnight.
fn minute_of_day(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn queue_set(ctx: &Context<'_>, key: &str, names: &[String]) -> Result<BTreeSet<String>, Fault> {
    let mut set = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        if ctx.queues.get(name).is_none() {
            return Err(fault(
                format!("{key}[{i}]"),
                format!("queue `{name}` is not defined in queues.toml"),
            ));
        }
        set.insert(name.clone());
    }
    Ok(set)
}

fn language_texts(
    lang: &str,
    raw: RawTexts,
    self_served: bool,
    nps: bool,
) -> Result<LanguageTexts, Fault> {
    let key = |k: &str| format!("templates.{lang}.{k}");
    let template = |k: &str, text: &str| Template::parse(text).map_err(|r| fault(key(k), r));
    let required = |k: &str, text: Option<String>, needed: bool, why: &str| match text {
        Some(t) => template(k, &t).map(Some),
        None if needed => Err(fault(key(k), format!("missing: needed because {why}"))),
        None => Ok(None),
    };
    let texts = LanguageTexts {
        csat: template("csat", &raw.csat)?,
        self_served: required(
            "self_served",
            raw.self_served,
            self_served,
            "qualify.self_served = true",
        )?,
        nps: required("nps", raw.nps, nps, "nps.enabled = true")?,
        clarify: template("clarify", &raw.clarify)?,
        opted_out: template("opted_out", &raw.opted_out)?,
    };
    // A self-served caller spoke to no agent and no queue: those would render empty.
    let no_call_fields: [(&str, Option<&Template>); 3] = [
        ("self_served", texts.self_served.as_ref()),
        ("clarify", Some(&texts.clarify)),
        ("opted_out", Some(&texts.opted_out)),
    ];
    for (k, t) in no_call_fields {
        for p in [Placeholder::Agent, Placeholder::Queue] {
            if t.is_some_and(|t| t.uses(p)) {
                return Err(fault(
                    key(k),
                    format!(
                        "{{{}}} is not known for this text (only {{company}} is)",
                        p.name()
                    ),
                ));
            }
        }
    }
    Ok(texts)
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::acd::{QueueSpec, VipRules};

    const SHIPPED: &str = include_str!("../../config/survey.toml");
    const NPS_OFF: &str = "templates.<lang>.nps) once.\nenabled = false";
    const NPS_ON: &str = "templates.<lang>.nps) once.\nenabled = true";

    /// The shipped queues: `complaints` has `complaint = true`.
    fn queues() -> QueueSet {
        QueueSet::new(
            ["tech", "after_sales", "complaints"]
                .iter()
                .map(|n| {
                    let mut q = QueueSpec::new(n, n, 1);
                    q.complaint = *n == "complaints";
                    q
                })
                .collect(),
            VipRules::default(),
            0,
            1,
        )
        .unwrap()
    }

    fn p(text: &str) -> Result<Option<SurveyPolicy>, ConfigError> {
        let languages = vec!["en".to_string(), "zh".to_string()];
        let queues = queues();
        let agents = AgentDirectory::empty();
        let ctx = Context {
            languages: &languages,
            time_zone: chrono_tz::Asia::Shanghai,
            queues: &queues,
            agents: &agents,
        };
        parse(Path::new("survey.toml"), text, &ctx)
    }

    fn fault_of(edit: (&str, &str)) -> ConfigError {
        assert!(
            SHIPPED.contains(edit.0),
            "`{}` not in the shipped file",
            edit.0
        );
        p(&SHIPPED.replacen(edit.0, edit.1, 1)).expect_err("refused")
    }

    #[test]
    fn shipped_file_parses_to_the_documented_values() {
        let s = p(SHIPPED).unwrap().expect("enabled");
        assert_eq!(s.company, "Example Co");
        assert_eq!(s.gateway, "default");
        assert_eq!(s.delay_ms, 60_000);
        assert_eq!(s.reply_window_ms, 48 * 3_600_000);
        assert_eq!(s.frequency_cap_days, 7);
        assert_eq!(
            s.quiet_hours,
            Some(QuietHours {
                start_minute: 21 * 60,
                end_minute: 8 * 60
            })
        );
        assert!(s.agent_handled && !s.self_served && !s.nps);
        assert_eq!(s.min_talk_ms, 15_000);
        assert_eq!(s.numbers.default_region, numbers::region("CN").unwrap());
        assert_eq!(s.default_language, "en");
        assert!(s.texts.contains_key("zh"));
        assert!(s.complaint_queues.contains("complaints"));
        assert_eq!(s.follow_up_max_score, 2);
        assert_eq!(s.follow_up_due_ms, 24 * 3_600_000);
    }

    #[test]
    fn disabled_is_none_but_still_checked() {
        assert_eq!(
            p(&SHIPPED.replacen("enabled = true", "enabled = false", 1)).unwrap(),
            None
        );
        let e = p(&SHIPPED
            .replacen("enabled = true", "enabled = false", 1)
            .replacen("default_region = \"CN\"", "default_region = \"XX\"", 1))
        .unwrap_err();
        assert_eq!(e.key, "numbers.default_region");
    }

    #[test]
    fn faults_name_the_key() {
        let cases = [
            (
                ("{agent} today", "{agnet} today"),
                "templates.en.csat",
                "unknown placeholder `{agnet}`",
            ),
            (
                ("start = \"21:00\"", "start = \"25:00\""),
                "quiet_hours.start",
                "HH:MM",
            ),
            (
                ("end = \"08:00\"", "end = \"8am\""),
                "quiet_hours.end",
                "HH:MM",
            ),
            (
                ("end = \"08:00\"", "end = \"21:00\""),
                "quiet_hours.end",
                "empty window",
            ),
            (
                ("default_region = \"CN\"", "default_region = \"XX\""),
                "numbers.default_region",
                "CLDR",
            ),
            (
                ("gateway = \"default\"", "gateway = \"a b\""),
                "gateway",
                "gateway name",
            ),
            (
                ("reply_window_h = 48", "reply_window_h = 0"),
                "reply_window_h",
                "1 to 720",
            ),
            (
                ("frequency_cap_days = 7", "frequency_cap_days = 400"),
                "frequency_cap_days",
                "365",
            ),
            (
                ("complaint_queues = []", "complaint_queues = [\"gripes\"]"),
                "follow_up.complaint_queues[0]",
                "not defined",
            ),
            (
                ("exclude_queues = []", "exclude_queues = [\"nope\"]"),
                "qualify.exclude_queues[0]",
                "not defined",
            ),
            (
                ("default_language = \"en\"", "default_language = \"fr\""),
                "default_language",
                "[templates.fr]",
            ),
            (
                ("[templates.zh]", "[templates.fr]"),
                "templates.fr",
                "prompts.languages",
            ),
            (
                ("max_score = 2", "max_score = 5"),
                "follow_up.max_score",
                "0 (no task",
            ),
            (
                ("delay_s = 60", "delay_s = 60\ncolour = 1"),
                "colour",
                "unknown field",
            ),
            (
                ("agent_handled = true", "agent_handled = false"),
                "qualify",
                "no call would ever qualify",
            ),
        ];
        for ((from, to), key, reason) in cases {
            let e = fault_of((from, to));
            assert_eq!(e.key, key, "{from} -> {to}: {e}");
            assert!(e.reason.contains(reason), "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn self_served_texts_cannot_name_an_agent() {
        let text = SHIPPED.replacen("self_served = false", "self_served = true", 1);
        let s = p(&text).unwrap().unwrap();
        assert!(s.self_served && s.default_texts.self_served.is_some());
        let e = p(&text.replacen(
            "Did our phone menu",
            "Did agent {agent} in our phone menu",
            1,
        ))
        .unwrap_err();
        assert_eq!(e.key, "templates.en.self_served");
    }

    #[test]
    fn optional_texts_are_required_once_their_feature_is_on() {
        let without = |key: &str| {
            SHIPPED
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} = \"")))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let text = without("self_served");
        assert!(p(&text)
            .unwrap()
            .unwrap()
            .default_texts
            .self_served
            .is_none());
        let e = p(&text.replacen("self_served = false", "self_served = true", 1)).unwrap_err();
        assert_eq!(e.key, "templates.en.self_served");
        assert!(e.reason.contains("missing"), "{e}");
        let text = without("nps");
        assert!(text.contains(NPS_OFF));
        p(&text).unwrap();
        let e = p(&text.replacen(NPS_OFF, NPS_ON, 1)).unwrap_err();
        assert_eq!(e.key, "templates.en.nps");
        assert!(
            p(&SHIPPED.replacen(NPS_OFF, NPS_ON, 1))
                .unwrap()
                .unwrap()
                .nps
        );
    }

    #[test]
    fn times_of_day() {
        assert_eq!(minute_of_day("00:00"), Some(0));
        assert_eq!(minute_of_day("23:59"), Some(23 * 60 + 59));
        for bad in [
            "24:00", "7:00", "07:60", "0700", "", "07:00:00", "+7:00", "０7:00",
        ] {
            assert_eq!(minute_of_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn complaint_queues_are_the_flagged_queues_plus_the_list() {
        let s = p(SHIPPED).unwrap().expect("enabled");
        // From `complaint = true` in queues.toml alone (the shipped list is empty).
        assert_eq!(
            s.complaint_queues.iter().collect::<Vec<_>>(),
            vec!["complaints"]
        );
        let listed = SHIPPED.replacen(
            "complaint_queues = []",
            "complaint_queues = [\"after_sales\", \"complaints\"]",
            1,
        );
        let s = p(&listed).unwrap().expect("enabled");
        assert_eq!(
            s.complaint_queues.iter().collect::<Vec<_>>(),
            vec!["after_sales", "complaints"],
            "the union, each once"
        );
    }
}
