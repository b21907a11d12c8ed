//! `ivr.toml` (and the CSV tables it names) -> `IvrGraph`. The file format is documented at
//! the top of the shipped `config/ivr.toml`. Field-level checks live here; graph-level checks
//! (dangling edges, unreachable nodes) in `IvrGraph::new`, whose keys are reused as is.

use super::toml_error::{self, ConfigError};
use crate::engine::ivr::graph::{InputSpec, IvrGraph, Node, WeeklyHours};
use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

const DEFAULT_FIRST_DIGIT_TIMEOUT_MS: u64 = 5000;
const DEFAULT_INTER_DIGIT_TIMEOUT_MS: u64 = 3000;
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_MAX_DIGITS: usize = 16;
const MAX_RETRIES: u32 = 10;
const MAX_COLLECT_DIGITS: usize = 32;
const MAX_OPTION_DIGITS: usize = 8;
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIvr {
    /// IANA zone for office hours and holidays, e.g. "Asia/Shanghai".
    time_zone: String,
    #[serde(default)]
    holidays: Vec<RawHoliday>,
    /// Dialled number -> entry node; `default` for every other number.
    entries: BTreeMap<String, String>,
    #[serde(default)]
    defaults: RawDefaults,
    nodes: BTreeMap<String, RawNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    /// "YYYY-MM-DD" or a TOML local date.
    date: toml::Value,
    #[serde(default)]
    #[allow(dead_code)] // documentation for the operator
    name: Option<String>,
}

/// Values for input nodes that do not set their own.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    first_digit_timeout_ms: Option<u64>,
    inter_digit_timeout_ms: Option<u64>,
    retries: Option<u32>,
    invalid_prompt: Option<String>,
    no_input_prompt: Option<String>,
}

/// `prompt = "id"` or `prompt = ["id", ...]`.
enum Prompts {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for Prompts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Prompts;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a prompt id or a list of prompt ids")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Prompts, E> {
                Ok(Prompts::One(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Prompts, A::Error> {
                let mut out = Vec::new();
                while let Some(id) = seq.next_element::<String>()? {
                    out.push(id);
                }
                Ok(Prompts::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Prompts {
    fn list(&self) -> Vec<String> {
        match self {
            Prompts::One(p) => vec![p.clone()],
            Prompts::Many(v) => v.clone(),
        }
    }
}

/// Every field any kind uses; which ones a kind accepts is checked after parsing, so an
/// error can name the exact key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    kind: String,
    #[allow(dead_code)] // documentation for the operator
    description: Option<String>,
    prompt: Option<Prompts>,
    options: Option<BTreeMap<String, String>>,
    next: Option<String>,
    fallback: Option<String>,
    first_digit_timeout_ms: Option<u64>,
    inter_digit_timeout_ms: Option<u64>,
    retries: Option<u32>,
    invalid_prompt: Option<String>,
    no_input_prompt: Option<String>,
    barge_in: Option<bool>,
    resolves: Option<bool>,
    variable: Option<String>,
    min_digits: Option<usize>,
    max_digits: Option<usize>,
    terminator: Option<String>,
    hours: Option<BTreeMap<String, String>>,
    open: Option<String>,
    closed: Option<String>,
    table: Option<String>,
    statuses: Option<BTreeMap<String, String>>,
    found_prompt: Option<String>,
    read_back: Option<bool>,
    not_found_prompt: Option<String>,
    found: Option<String>,
    not_found: Option<String>,
    queue: Option<String>,
}

const INPUT_FIELDS: &[&str] = &[
    "prompt",
    "first_digit_timeout_ms",
    "inter_digit_timeout_ms",
    "retries",
    "invalid_prompt",
    "no_input_prompt",
    "barge_in",
];

impl RawNode {
    fn set_fields(&self) -> Vec<&'static str> {
        let flags = [
            ("prompt", self.prompt.is_some()),
            ("options", self.options.is_some()),
            ("next", self.next.is_some()),
            ("fallback", self.fallback.is_some()),
            (
                "first_digit_timeout_ms",
                self.first_digit_timeout_ms.is_some(),
            ),
            (
                "inter_digit_timeout_ms",
                self.inter_digit_timeout_ms.is_some(),
            ),
            ("retries", self.retries.is_some()),
            ("invalid_prompt", self.invalid_prompt.is_some()),
            ("no_input_prompt", self.no_input_prompt.is_some()),
            ("barge_in", self.barge_in.is_some()),
            ("resolves", self.resolves.is_some()),
            ("variable", self.variable.is_some()),
            ("min_digits", self.min_digits.is_some()),
            ("max_digits", self.max_digits.is_some()),
            ("terminator", self.terminator.is_some()),
            ("hours", self.hours.is_some()),
            ("open", self.open.is_some()),
            ("closed", self.closed.is_some()),
            ("table", self.table.is_some()),
            ("statuses", self.statuses.is_some()),
            ("found_prompt", self.found_prompt.is_some()),
            ("read_back", self.read_back.is_some()),
            ("not_found_prompt", self.not_found_prompt.is_some()),
            ("found", self.found.is_some()),
            ("not_found", self.not_found.is_some()),
            ("queue", self.queue.is_some()),
        ];
        flags
            .iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect()
    }
}

/// Fields each kind accepts besides `kind` and `description`.
fn allowed_fields(kind: &str) -> Option<Vec<&'static str>> {
    let with_input = |extra: &[&'static str]| {
        let mut v = INPUT_FIELDS.to_vec();
        v.extend_from_slice(extra);
        v
    };
    Some(match kind {
        "menu" => with_input(&["options", "fallback"]),
        "collect" => with_input(&[
            "variable",
            "min_digits",
            "max_digits",
            "terminator",
            "next",
            "fallback",
        ]),
        "language" => with_input(&["options", "next", "fallback"]),
        "play" => vec!["prompt", "next", "resolves", "barge_in"],
        "office_hours" => vec!["hours", "open", "closed"],
        "lookup" => vec![
            "variable",
            "table",
            "statuses",
            "found_prompt",
            "read_back",
            "not_found_prompt",
            "found",
            "not_found",
            "resolves",
            "barge_in",
        ],
        "hangup" => vec!["prompt"],
        "queue" => vec!["queue"],
        _ => return None,
    })
}

type Fault = (String, String);

fn fault(key: impl Into<String>, reason: impl Into<String>) -> Fault {
    (key.into(), reason.into())
}

/// Parses `ivr.toml` (`text`, read from `file`); tables are read relative to `dir`.
pub(crate) fn parse(
    file: &Path,
    text: &str,
    dir: &Path,
    languages: &[String],
) -> Result<IvrGraph, ConfigError> {
    let raw: RawIvr = toml_error::parse(file, text)?;
    let mut tables = TableLoader { dir, error: None };
    let built = build(raw, languages, &mut tables);
    built.map_err(|(key, reason)| {
        tables
            .error
            .take()
            .unwrap_or_else(|| ConfigError::new(file, key, reason))
    })
}

/// Reads CSV tables; a fault inside a CSV file is kept whole (it names that file).
struct TableLoader<'a> {
    dir: &'a Path,
    error: Option<ConfigError>,
}

impl TableLoader<'_> {
    fn load(
        &mut self,
        key: &str,
        name: &str,
        statuses: &BTreeMap<String, String>,
        digits_only: bool,
    ) -> Result<BTreeMap<String, String>, Fault> {
        let path = self.dir.join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| fault(key, format!("cannot read {}: {e}", path.display())))?;
        parse_table(&text, statuses, digits_only).map_err(|(line_key, reason)| {
            self.error = Some(ConfigError::new(&path, line_key.clone(), reason.clone()));
            fault(line_key, reason)
        })
    }
}

/// `key,status` rows after one header row; blank lines and `#` comments skipped.
fn parse_table(
    text: &str,
    statuses: &BTreeMap<String, String>,
    digits_only: bool,
) -> Result<BTreeMap<String, String>, Fault> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut table = BTreeMap::new();
    let mut header = false;
    for (n, line) in text.lines().enumerate() {
        let key = format!("line {}", n + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 2 {
            return Err(fault(
                key,
                format!("expected 2 comma-separated columns, found {}", fields.len()),
            ));
        }
        if !header {
            header = true;
            continue;
        }
        let (k, status) = (fields[0], fields[1]);
        if k.is_empty() || (digits_only && !k.bytes().all(|b| b.is_ascii_digit())) {
            return Err(fault(
                key,
                format!("key `{k}` must be digits only (it is read back digit by digit)"),
            ));
        }
        if !statuses.contains_key(status) {
            let known: Vec<&str> = statuses.keys().map(String::as_str).collect();
            return Err(fault(
                key,
                format!("status `{status}` has no prompt in the lookup node's statuses {known:?}"),
            ));
        }
        if table.insert(k.to_string(), status.to_string()).is_some() {
            return Err(fault(key, format!("key `{k}` appears twice")));
        }
    }
    if !header {
        return Err(fault(
            "line 1",
            "missing the header row (e.g. `order_number,status`)",
        ));
    }
    if table.is_empty() {
        return Err(fault("line 2", "the table has no rows"));
    }
    Ok(table)
}

fn build(
    raw: RawIvr,
    languages: &[String],
    tables: &mut TableLoader<'_>,
) -> Result<IvrGraph, Fault> {
    let time_zone: Tz = raw.time_zone.parse().map_err(|_| {
        fault(
            "time_zone",
            format!(
                "`{}` is not an IANA time zone (e.g. \"Asia/Shanghai\")",
                raw.time_zone
            ),
        )
    })?;
    let mut holidays = BTreeSet::new();
    for (i, h) in raw.holidays.iter().enumerate() {
        holidays
            .insert(holiday_date(&h.date).map_err(|r| fault(format!("holidays[{i}].date"), r))?);
    }
    let mut entries = raw.entries;
    let default_entry = entries.remove("default").ok_or_else(|| {
        fault(
            "entries.default",
            "missing: the entry node for any other number",
        )
    })?;
    for number in entries.keys() {
        if number.is_empty() || number.chars().any(char::is_whitespace) {
            return Err(fault(
                format!("entries.{number}"),
                "a dialled number must be non-empty without spaces",
            ));
        }
    }
    check_prompt_opt(
        "defaults.invalid_prompt",
        raw.defaults.invalid_prompt.as_deref(),
    )?;
    check_prompt_opt(
        "defaults.no_input_prompt",
        raw.defaults.no_input_prompt.as_deref(),
    )?;

    let collected: BTreeSet<&str> = raw
        .nodes
        .values()
        .filter(|n| n.kind == "collect")
        .filter_map(|n| n.variable.as_deref())
        .collect();
    let mut nodes = BTreeMap::new();
    for (id, node) in &raw.nodes {
        if !is_identifier(id) {
            return Err(fault(
                format!("nodes.{id}"),
                "a node id uses letters, digits, `_` and `-` only",
            ));
        }
        let ctx = NodeCtx {
            id,
            raw: node,
            defaults: &raw.defaults,
            languages,
            collected: &collected,
        };
        nodes.insert(id.clone(), ctx.build(tables)?);
    }
    IvrGraph::new(entries, default_entry, time_zone, holidays, nodes).map_err(|e| (e.key, e.reason))
}

fn holiday_date(v: &toml::Value) -> Result<NaiveDate, String> {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) if d.date.is_some() && d.time.is_none() => d.to_string(),
        _ => return Err("expected a date like \"2026-10-01\"".into()),
    };
    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map_err(|e| format!("`{text}` is not a date like \"2026-10-01\": {e}"))
}

struct NodeCtx<'a> {
    id: &'a str,
    raw: &'a RawNode,
    defaults: &'a RawDefaults,
    languages: &'a [String],
    collected: &'a BTreeSet<&'a str>,
}

impl NodeCtx<'_> {
    fn key(&self, field: &str) -> String {
        format!("nodes.{}.{field}", self.id)
    }

    fn missing(&self, field: &str) -> Fault {
        fault(
            self.key(field),
            format!("missing: required for a `{}` node", self.raw.kind),
        )
    }

    fn required<'b, T>(&self, field: &str, v: &'b Option<T>) -> Result<&'b T, Fault> {
        v.as_ref().ok_or_else(|| self.missing(field))
    }

    fn build(&self, tables: &mut TableLoader<'_>) -> Result<Node, Fault> {
        let r = self.raw;
        let allowed = allowed_fields(&r.kind).ok_or_else(|| {
            fault(
                self.key("kind"),
                format!(
                    "unknown kind `{}` (menu, play, collect, language, office_hours, lookup, hangup, queue)",
                    r.kind
                ),
            )
        })?;
        if let Some(extra) = r.set_fields().into_iter().find(|f| !allowed.contains(f)) {
            return Err(fault(
                self.key(extra),
                format!("not used by a `{}` node", r.kind),
            ));
        }
        Ok(match r.kind.as_str() {
            "menu" => Node::Menu {
                input: self.input()?,
                options: self.options(|_, _| Ok(()))?,
                fallback: self.required("fallback", &r.fallback)?.clone(),
            },
            "collect" => self.collect()?,
            "language" => {
                let langs = self.languages;
                let options = self.options(|key, lang| {
                    if langs.iter().any(|l| l == lang) {
                        Ok(())
                    } else {
                        Err(fault(
                            key,
                            format!("language `{lang}` is not in prompts.languages {langs:?}"),
                        ))
                    }
                })?;
                let next = self.required("next", &r.next)?.clone();
                Node::Language {
                    input: self.input()?,
                    options,
                    fallback: r.fallback.clone().unwrap_or_else(|| next.clone()),
                    next,
                }
            }
            "play" => Node::Play {
                prompt: self.prompts(true)?,
                next: self.required("next", &r.next)?.clone(),
                resolves: r.resolves.unwrap_or(false),
                barge_in: r.barge_in.unwrap_or(true),
            },
            "office_hours" => Node::OfficeHours {
                hours: self.hours()?,
                open: self.required("open", &r.open)?.clone(),
                closed: self.required("closed", &r.closed)?.clone(),
            },
            "lookup" => self.lookup(tables)?,
            "queue" => Node::Queue {
                queue: self.required("queue", &r.queue)?.clone(),
            },
            _ => Node::HangUp {
                prompt: self.prompts(false)?,
            },
        })
    }

    fn prompts(&self, required: bool) -> Result<Vec<String>, Fault> {
        let list = match &self.raw.prompt {
            Some(p) => p.list(),
            None if required => return Err(self.missing("prompt")),
            None => Vec::new(),
        };
        if required && list.is_empty() {
            return Err(fault(
                self.key("prompt"),
                "at least one prompt id is needed",
            ));
        }
        for p in &list {
            check_prompt(&self.key("prompt"), p)?;
        }
        Ok(list)
    }

    fn input(&self) -> Result<InputSpec, Fault> {
        let r = self.raw;
        let d = self.defaults;
        let first = r
            .first_digit_timeout_ms
            .or(d.first_digit_timeout_ms)
            .unwrap_or(DEFAULT_FIRST_DIGIT_TIMEOUT_MS);
        if !(100..=120_000).contains(&first) {
            return Err(fault(
                self.key("first_digit_timeout_ms"),
                "must be between 100 and 120000",
            ));
        }
        let inter = r
            .inter_digit_timeout_ms
            .or(d.inter_digit_timeout_ms)
            .unwrap_or(DEFAULT_INTER_DIGIT_TIMEOUT_MS);
        if !(100..=60_000).contains(&inter) {
            return Err(fault(
                self.key("inter_digit_timeout_ms"),
                "must be between 100 and 60000",
            ));
        }
        let retries = r.retries.or(d.retries).unwrap_or(DEFAULT_RETRIES);
        if retries > MAX_RETRIES {
            return Err(fault(
                self.key("retries"),
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        let invalid_prompt = r
            .invalid_prompt
            .clone()
            .or_else(|| d.invalid_prompt.clone());
        check_prompt_opt(&self.key("invalid_prompt"), invalid_prompt.as_deref())?;
        let no_input_prompt = r
            .no_input_prompt
            .clone()
            .or_else(|| d.no_input_prompt.clone());
        check_prompt_opt(&self.key("no_input_prompt"), no_input_prompt.as_deref())?;
        Ok(InputSpec {
            prompt: self.prompts(true)?,
            first_digit_timeout_ms: first,
            inter_digit_timeout_ms: inter,
            retries,
            invalid_prompt,
            no_input_prompt,
            barge_in: r.barge_in.unwrap_or(true),
        })
    }

    /// `options`: DTMF digit strings -> target, each target checked by `check`.
    fn options(
        &self,
        check: impl Fn(String, &str) -> Result<(), Fault>,
    ) -> Result<BTreeMap<String, String>, Fault> {
        let options = self.required("options", &self.raw.options)?;
        if options.is_empty() {
            return Err(fault(self.key("options"), "at least one option is needed"));
        }
        for (digits, target) in options {
            let key = self.key(&format!("options.{digits}"));
            if digits.is_empty() || digits.len() > MAX_OPTION_DIGITS || !digits.chars().all(is_dtmf)
            {
                return Err(fault(
                    key,
                    format!(
                        "`{digits}` is not a key sequence (1-{MAX_OPTION_DIGITS} of 0-9 * # A-D)"
                    ),
                ));
            }
            check(key, target)?;
        }
        Ok(options.clone())
    }

    fn collect(&self) -> Result<Node, Fault> {
        let r = self.raw;
        let variable = self.required("variable", &r.variable)?;
        if !is_identifier(variable) {
            return Err(fault(
                self.key("variable"),
                "a variable name uses letters, digits, `_` and `-` only",
            ));
        }
        let max_digits = r.max_digits.unwrap_or(DEFAULT_MAX_DIGITS);
        if !(1..=MAX_COLLECT_DIGITS).contains(&max_digits) {
            return Err(fault(
                self.key("max_digits"),
                format!("must be between 1 and {MAX_COLLECT_DIGITS}"),
            ));
        }
        let min_digits = r.min_digits.unwrap_or(1);
        if !(1..=max_digits).contains(&min_digits) {
            return Err(fault(
                self.key("min_digits"),
                format!("must be between 1 and max_digits ({max_digits})"),
            ));
        }
        let terminator = match r.terminator.as_deref().unwrap_or("#") {
            "" => None,
            "#" => Some('#'),
            "*" => Some('*'),
            other => {
                return Err(fault(
                    self.key("terminator"),
                    format!("`{other}` must be \"#\", \"*\" or \"\" (none)"),
                ))
            }
        };
        Ok(Node::Collect {
            input: self.input()?,
            variable: variable.clone(),
            min_digits,
            max_digits,
            terminator,
            next: self.required("next", &r.next)?.clone(),
            fallback: self.required("fallback", &r.fallback)?.clone(),
        })
    }

    fn hours(&self) -> Result<WeeklyHours, Fault> {
        let hours = self.required("hours", &self.raw.hours)?;
        let mut week = WeeklyHours::default();
        for (day, spec) in hours {
            let key = self.key(&format!("hours.{day}"));
            let Some(i) = WEEKDAYS.iter().position(|d| d == day) else {
                return Err(fault(
                    key,
                    format!("`{day}` is not a weekday (mon tue wed thu fri sat sun)"),
                ));
            };
            week.days[i] = parse_day(spec).map_err(|r| fault(key, r))?;
        }
        Ok(week)
    }

    fn lookup(&self, tables: &mut TableLoader<'_>) -> Result<Node, Fault> {
        let r = self.raw;
        let variable = self.required("variable", &r.variable)?;
        if !self.collected.contains(variable.as_str()) {
            return Err(fault(
                self.key("variable"),
                format!("no collect node sets `{variable}`"),
            ));
        }
        let statuses = self.required("statuses", &r.statuses)?;
        if statuses.is_empty() {
            return Err(fault(self.key("statuses"), "at least one status is needed"));
        }
        for (status, prompt) in statuses {
            check_prompt(&self.key(&format!("statuses.{status}")), prompt)?;
        }
        check_prompt_opt(&self.key("found_prompt"), r.found_prompt.as_deref())?;
        let not_found_prompt = self.required("not_found_prompt", &r.not_found_prompt)?;
        check_prompt(&self.key("not_found_prompt"), not_found_prompt)?;
        let read_back = r.read_back.unwrap_or(true);
        let table_name = self.required("table", &r.table)?;
        let table = tables.load(&self.key("table"), table_name, statuses, read_back)?;
        Ok(Node::Lookup {
            variable: variable.clone(),
            table: Arc::new(table),
            statuses: statuses.clone(),
            found_prompt: r.found_prompt.clone(),
            read_back,
            not_found_prompt: not_found_prompt.clone(),
            found: self.required("found", &r.found)?.clone(),
            not_found: self.required("not_found", &r.not_found)?.clone(),
            resolves: r.resolves.unwrap_or(true),
            barge_in: r.barge_in.unwrap_or(true),
        })
    }
}

/// "09:00-18:00", "09:00-12:00, 13:00-18:00", "closed" or "" -> minute ranges.
fn parse_day(spec: &str) -> Result<Vec<(u32, u32)>, String> {
    let spec = spec.trim();
    if spec.is_empty() || spec == "closed" {
        return Ok(Vec::new());
    }
    spec.split(',')
        .map(|range| {
            let range = range.trim();
            let bad = || format!("`{range}` is not a range like \"09:00-18:00\"");
            let (a, b) = range.split_once('-').ok_or_else(bad)?;
            let (start, end) = (
                parse_hhmm(a.trim()).ok_or_else(bad)?,
                parse_hhmm(b.trim()).ok_or_else(bad)?,
            );
            if start >= end {
                return Err(format!("`{range}`: the end must be after the start"));
            }
            Ok((start, end))
        })
        .collect()
}

/// "HH:MM" -> minutes since midnight; "24:00" allowed as an end of day.
fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn is_dtmf(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Prompt ids become file names (`<lang>/<id>.wav`), so they are plain identifiers.
fn check_prompt(key: &str, id: &str) -> Result<(), Fault> {
    if is_identifier(id) {
        Ok(())
    } else {
        Err(fault(
            key,
            format!("`{id}` is not a prompt id (letters, digits, `_` and `-`)"),
        ))
    }
}

fn check_prompt_opt(key: &str, id: Option<&str>) -> Result<(), Fault> {
    id.map_or(Ok(()), |id| check_prompt(key, id))
}

#[cfg(test)]
mod tests;
