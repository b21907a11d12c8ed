//! One call's walk through the menu graph, sans-IO.
//!
//! Rules the engine can rely on:
//! - Every node entered yields a `Step` (digits `None`); every caller entry or its absence
//!   yields another `Step` at the same node with the digits and a detail ("invalid",
//!   "timeout", "fallback", "lang=zh", "skipped"). Office-hours and lookup nodes decide on
//!   entry, so their entry step carries the decision ("open", "closed", "closed:holiday",
//!   "found", "not_found").
//! - Listening timers start when a prompt has finished (or was cut: by a barge-in digit, or
//!   by the media plane for any other reason, so a session never waits forever);
//!   while a non-barge-in prompt plays, digits are ignored.
//! - A `play` or `lookup` node marked `resolves` counts as self-service once its information
//!   prompt has played to the end or the caller pressed a digit during it (they heard the
//!   answer and moved on). A lookup that finds nothing does not resolve.
//! - The hangup node's goodbye ends in `HangUp { outcome }`: `SelfServed` if the call was
//!   resolved, otherwise `Failed` (the IVR could not help and ended the call itself). A
//!   caller hanging up is the engine's business (`abandoned_in_ivr`).

use super::graph::{digit_prompt, InputSpec, IvrGraph, Node};
use crate::engine::media::PromptKey;
use crate::engine::record::IvrOutcome;
use crate::engine::time::Millis;
use chrono::{Datelike, TimeZone, Timelike, Utc};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// What the session asks of the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum IvrAction {
    /// Play these prompts (replacing whatever plays); `PlayFinished` reports `play_id`.
    Play {
        play_id: u64,
        prompts: Vec<PromptKey>,
        barge_in: bool,
    },
    /// Stop the current prompt (a barge-in digit arrived).
    StopPlay,
    /// One row of the call's IVR path.
    Step {
        at: Millis,
        node: String,
        kind: &'static str,
        digits: Option<String>,
        detail: Option<String>,
    },
    /// A value to keep on the call (e.g. an order number).
    Variable { name: String, value: String },
    /// The IVR ended the call.
    HangUp { outcome: IvrOutcome },
    /// The caller goes to this ACD queue; the session is finished (no more actions).
    Queue { queue: String },
}

/// More node entries than this without waiting for the caller is a broken graph.
const MAX_HOPS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// At a menu, collect or language node: prompting (`listening == false`) or waiting for
    /// digits with a timer armed.
    Input {
        attempt: u32,
        digits: String,
        listening: bool,
    },
    /// An information prompt (play, lookup) is playing; then `next`.
    Inform {
        next: String,
        resolves: bool,
    },
    /// The goodbye is playing.
    Goodbye,
    Done,
}

/// Why an entry attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Miss {
    Invalid,
    NoInput,
}

pub struct IvrSession {
    /// Shared by every call; left out of `Debug`.
    graph: Arc<IvrGraph>,
    lang: String,
    node: String,
    state: State,
    actions: VecDeque<IvrAction>,
    next_play_id: u64,
    playing: Option<u64>,
    deadline: Option<Millis>,
    resolved: bool,
    variables: BTreeMap<String, String>,
}

impl std::fmt::Debug for IvrSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IvrSession")
            .field("node", &self.node)
            .field("lang", &self.lang)
            .field("state", &self.state)
            .field("playing", &self.playing)
            .field("deadline", &self.deadline)
            .field("resolved", &self.resolved)
            .field("variables", &self.variables)
            .finish_non_exhaustive()
    }
}

impl IvrSession {
    /// Starts at `entry` (normally `graph.entry_for(dialled)`), speaking `default_lang`.
    pub fn start(graph: Arc<IvrGraph>, entry: &str, now: Millis, default_lang: &str) -> IvrSession {
        let mut s = IvrSession {
            graph,
            lang: default_lang.to_string(),
            node: entry.to_string(),
            state: State::Done,
            actions: VecDeque::new(),
            next_play_id: 1,
            playing: None,
            deadline: None,
            resolved: false,
            variables: BTreeMap::new(),
        };
        s.enter(now, entry.to_string());
        s
    }

    pub fn on_digit(&mut self, now: Millis, digit: char) {
        let graph = Arc::clone(&self.graph);
        let Some(node) = graph.node(&self.node) else {
            return;
        };
        match &mut self.state {
            State::Input {
                digits, listening, ..
            } => {
                if !*listening {
                    if !input_spec(node).is_some_and(|i| i.barge_in) {
                        return;
                    }
                    *listening = true;
                    if self.playing.take().is_some() {
                        self.actions.push_back(IvrAction::StopPlay);
                    }
                }
                digits.push(digit);
                self.deadline = None;
                self.evaluate(now, false);
            }
            State::Inform { next, resolves } => {
                let barge_in = match node {
                    Node::Play { barge_in, .. } | Node::Lookup { barge_in, .. } => *barge_in,
                    _ => false,
                };
                if !barge_in {
                    return;
                }
                let (next, resolves) = (next.clone(), *resolves);
                if self.playing.take().is_some() {
                    self.actions.push_back(IvrAction::StopPlay);
                }
                self.step(now, Some(digit.to_string()), Some("skipped"));
                self.resolved |= resolves;
                self.enter(now, next);
                // Type-ahead: a caller who knows the menu presses its digit during the
                // information before it; the digit answers the menu instead of being lost.
                if matches!(self.state, State::Input { .. }) {
                    self.on_digit(now, digit);
                }
            }
            State::Goodbye | State::Done => {}
        }
    }

    pub fn on_play_finished(&mut self, now: Millis, play_id: u64, interrupted: bool) {
        if self.playing != Some(play_id) {
            return; // an older prompt, already replaced or cut by a digit
        }
        self.playing = None;
        match &mut self.state {
            State::Input { listening, .. } => {
                if !*listening {
                    *listening = true;
                    self.arm_first_digit(now);
                }
            }
            State::Inform { next, resolves } => {
                let next = next.clone();
                self.resolved |= *resolves && !interrupted;
                self.enter(now, next);
            }
            State::Goodbye => self.hang_up(),
            State::Done => {}
        }
    }

    /// Call when `deadline()` has passed; early calls are ignored.
    pub fn on_timeout(&mut self, now: Millis) {
        match self.deadline {
            Some(at) if at <= now => {}
            _ => return,
        }
        self.deadline = None;
        let State::Input { digits, .. } = &self.state else {
            return;
        };
        if digits.is_empty() {
            self.miss(now, Miss::NoInput, None);
        } else {
            self.evaluate(now, true);
        }
    }

    pub fn poll_action(&mut self) -> Option<IvrAction> {
        self.actions.pop_front()
    }

    pub fn deadline(&self) -> Option<Millis> {
        self.deadline
    }

    /// The caller reached a node marked `resolves` (self-service).
    pub fn resolved(&self) -> bool {
        self.resolved
    }

    pub fn language(&self) -> &str {
        &self.lang
    }

    /// The node the caller is at.
    pub fn current_node(&self) -> &str {
        &self.node
    }

    /// The IVR has ended the call (`HangUp` was emitted).
    pub fn is_finished(&self) -> bool {
        self.state == State::Done
    }

    /// Values collected so far (name -> value).
    pub fn variables(&self) -> &BTreeMap<String, String> {
        &self.variables
    }

    /// Enters `id` and every node that decides without the caller, up to one that plays.
    fn enter(&mut self, now: Millis, mut id: String) {
        self.deadline = None;
        let graph = Arc::clone(&self.graph);
        for _ in 0..MAX_HOPS {
            let Some(node) = graph.node(&id) else {
                self.fail(now, &format!("error: no node `{id}`"));
                return;
            };
            self.node = id;
            match node {
                Node::OfficeHours {
                    hours,
                    open,
                    closed,
                } => {
                    let (is_open, detail) = office_state(&graph, hours, now);
                    self.step(now, None, Some(detail));
                    id = if is_open {
                        open.clone()
                    } else {
                        closed.clone()
                    };
                }
                Node::Menu { input, .. }
                | Node::Collect { input, .. }
                | Node::Language { input, .. } => {
                    self.step(now, None, None);
                    self.state = State::Input {
                        attempt: 0,
                        digits: String::new(),
                        listening: false,
                    };
                    self.prompt_input(now, input, None);
                    return;
                }
                Node::Play {
                    prompt,
                    next,
                    resolves,
                    barge_in,
                } => {
                    self.step(now, None, None);
                    self.state = State::Inform {
                        next: next.clone(),
                        resolves: *resolves,
                    };
                    self.play(prompt, *barge_in);
                    return;
                }
                Node::Lookup {
                    variable,
                    table,
                    statuses,
                    found_prompt,
                    read_back,
                    not_found_prompt,
                    found,
                    not_found,
                    resolves,
                    barge_in,
                } => {
                    let hit = self.variables.get(variable).and_then(|key| {
                        let prompt = table.get(key).and_then(|st| statuses.get(st))?;
                        Some((key.clone(), prompt.clone()))
                    });
                    let (prompts, next, resolves, detail) = match hit {
                        Some((key, status_prompt)) => {
                            let mut p: Vec<String> = found_prompt.iter().cloned().collect();
                            if *read_back {
                                p.extend(
                                    key.chars().filter_map(|c| c.to_digit(10)).map(digit_prompt),
                                );
                            }
                            p.push(status_prompt);
                            (p, found.clone(), *resolves, "found")
                        }
                        None => (
                            vec![not_found_prompt.clone()],
                            not_found.clone(),
                            false,
                            "not_found",
                        ),
                    };
                    self.step(now, None, Some(detail));
                    self.state = State::Inform { next, resolves };
                    self.play(&prompts, *barge_in);
                    return;
                }
                Node::Queue { queue } => {
                    self.step(now, None, Some(queue));
                    self.state = State::Done;
                    self.deadline = None;
                    self.playing = None;
                    self.actions.push_back(IvrAction::Queue {
                        queue: queue.clone(),
                    });
                    return;
                }
                Node::HangUp { prompt } => {
                    self.step(now, None, None);
                    if prompt.is_empty() {
                        self.hang_up();
                    } else {
                        self.state = State::Goodbye;
                        self.play(prompt, false);
                    }
                    return;
                }
            }
        }
        self.fail(now, "error: too many nodes without a prompt");
    }

    /// Judges the digits collected so far at an input node.
    fn evaluate(&mut self, now: Millis, timed_out: bool) {
        let graph = Arc::clone(&self.graph);
        let Some(node) = graph.node(&self.node) else {
            return;
        };
        let State::Input { digits, .. } = &self.state else {
            return;
        };
        let digits = digits.clone();
        match node {
            Node::Menu { options, .. } | Node::Language { options, .. } => {
                let longer = options
                    .keys()
                    .any(|k| k.len() > digits.len() && k.starts_with(&digits));
                if longer && !timed_out {
                    self.arm_inter_digit(now);
                    return;
                }
                let Some(target) = options.get(&digits) else {
                    self.miss(now, Miss::Invalid, Some(digits));
                    return;
                };
                match node {
                    Node::Language { next, .. } => {
                        self.lang = target.clone();
                        let detail = format!("lang={target}");
                        self.step(now, Some(digits), Some(&detail));
                        self.enter(now, next.clone());
                    }
                    _ => {
                        self.step(now, Some(digits), None);
                        self.enter(now, target.clone());
                    }
                }
            }
            Node::Collect {
                variable,
                min_digits,
                max_digits,
                terminator,
                next,
                ..
            } => {
                let last = digits.chars().last();
                let value = match last {
                    Some(c) if Some(c) == *terminator => &digits[..digits.len() - c.len_utf8()],
                    Some(c) if !c.is_ascii_digit() => {
                        self.miss(now, Miss::Invalid, Some(digits));
                        return;
                    }
                    _ if digits.len() >= *max_digits || timed_out => digits.as_str(),
                    _ => {
                        self.arm_inter_digit(now);
                        return;
                    }
                };
                if value.len() < *min_digits {
                    self.miss(now, Miss::Invalid, Some(digits));
                    return;
                }
                let value = value.to_string();
                self.step(now, Some(digits), None);
                self.variables.insert(variable.clone(), value.clone());
                self.actions.push_back(IvrAction::Variable {
                    name: variable.clone(),
                    value,
                });
                self.enter(now, next.clone());
            }
            _ => {}
        }
    }

    /// An invalid entry or silence: retry with the matching apology, or take the fallback.
    fn miss(&mut self, now: Millis, miss: Miss, digits: Option<String>) {
        let graph = Arc::clone(&self.graph);
        let Some(node) = graph.node(&self.node) else {
            return;
        };
        let (Some(input), Some(fallback)) = (input_spec(node), fallback_of(node)) else {
            return;
        };
        let State::Input { attempt, .. } = self.state else {
            return;
        };
        let detail = match miss {
            Miss::Invalid => "invalid",
            Miss::NoInput => "timeout",
        };
        self.step(now, digits, Some(detail));
        let attempt = attempt + 1;
        if attempt > input.retries {
            self.step(now, None, Some("fallback"));
            self.enter(now, fallback.to_string());
            return;
        }
        self.state = State::Input {
            attempt,
            digits: String::new(),
            listening: false,
        };
        let apology = match miss {
            Miss::Invalid => input.invalid_prompt.as_deref(),
            Miss::NoInput => input.no_input_prompt.as_deref(),
        };
        self.prompt_input(now, input, apology);
    }

    fn prompt_input(&mut self, now: Millis, input: &InputSpec, apology: Option<&str>) {
        let prompts: Vec<String> = apology
            .map(str::to_string)
            .into_iter()
            .chain(input.prompt.iter().cloned())
            .collect();
        if prompts.is_empty() {
            if let State::Input { listening, .. } = &mut self.state {
                *listening = true;
            }
            self.arm_first_digit(now);
        } else {
            self.play(&prompts, input.barge_in);
        }
    }

    fn arm_first_digit(&mut self, now: Millis) {
        self.deadline = self.input().map(|i| now.plus(i.first_digit_timeout_ms));
    }

    fn arm_inter_digit(&mut self, now: Millis) {
        self.deadline = self.input().map(|i| now.plus(i.inter_digit_timeout_ms));
    }

    /// The current node's input rules, if it waits for digits.
    fn input(&self) -> Option<&InputSpec> {
        input_spec(self.graph.node(&self.node)?)
    }

    fn play(&mut self, prompts: &[String], barge_in: bool) {
        let play_id = self.next_play_id;
        self.next_play_id += 1;
        self.playing = Some(play_id);
        let prompts = prompts
            .iter()
            .map(|id| PromptKey {
                id: id.clone(),
                lang: self.lang.clone(),
            })
            .collect();
        self.actions.push_back(IvrAction::Play {
            play_id,
            prompts,
            barge_in,
        });
    }

    fn step(&mut self, now: Millis, digits: Option<String>, detail: Option<&str>) {
        let kind = self.graph.node(&self.node).map_or("unknown", Node::kind);
        self.actions.push_back(IvrAction::Step {
            at: now,
            node: self.node.clone(),
            kind,
            digits,
            detail: detail.map(str::to_string),
        });
    }

    fn hang_up(&mut self) {
        let outcome = if self.resolved {
            IvrOutcome::SelfServed
        } else {
            IvrOutcome::Failed
        };
        self.finish(outcome);
    }

    fn fail(&mut self, now: Millis, detail: &str) {
        self.step(now, None, Some(detail));
        self.finish(IvrOutcome::Failed);
    }

    fn finish(&mut self, outcome: IvrOutcome) {
        self.state = State::Done;
        self.deadline = None;
        self.playing = None;
        self.actions.push_back(IvrAction::HangUp { outcome });
    }
}

fn input_spec(node: &Node) -> Option<&InputSpec> {
    match node {
        Node::Menu { input, .. } | Node::Collect { input, .. } | Node::Language { input, .. } => {
            Some(input)
        }
        _ => None,
    }
}

fn fallback_of(node: &Node) -> Option<&str> {
    match node {
        Node::Menu { fallback, .. }
        | Node::Collect { fallback, .. }
        | Node::Language { fallback, .. } => Some(fallback),
        _ => None,
    }
}

/// Whether the office is open at `now` in the graph's time zone, and the step detail.
fn office_state(
    graph: &IvrGraph,
    hours: &super::graph::WeeklyHours,
    now: Millis,
) -> (bool, &'static str) {
    let Some(utc) = Utc.timestamp_millis_opt(now.as_i64()).single() else {
        return (false, "closed");
    };
    let local = utc.with_timezone(&graph.time_zone());
    if graph.is_holiday(local.date_naive()) {
        return (false, "closed:holiday");
    }
    let day = local.weekday().num_days_from_monday() as usize;
    let minute = local.hour() * 60 + local.minute();
    if hours.is_open(day, minute) {
        (true, "open")
    } else {
        (false, "closed")
    }
}

#[cfg(test)]
mod tests {
    use super::super::graph::WeeklyHours;
    use super::*;
    use chrono::NaiveDate;
    use std::collections::BTreeSet;

    fn input(prompt: &str, retries: u32, barge_in: bool) -> InputSpec {
        InputSpec {
            prompt: vec![prompt.into()],
            first_digit_timeout_ms: 5000,
            inter_digit_timeout_ms: 2000,
            retries,
            invalid_prompt: Some("invalid".into()),
            no_input_prompt: Some("no_input".into()),
            barge_in,
        }
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    /// menu -> {1: info (resolves), 12: collect, 2: lang, 3: hours, 4: quiet menu}.
    fn graph() -> Arc<IvrGraph> {
        let mut hours = WeeklyHours::default();
        hours.days[0] = vec![(9 * 60, 18 * 60)]; // Monday 09:00-18:00
        let nodes = BTreeMap::from([
            (
                s("menu"),
                Node::Menu {
                    input: input("main_menu", 1, true),
                    options: BTreeMap::from([
                        (s("1"), s("info")),
                        (s("12"), s("collect")),
                        (s("2"), s("lang")),
                        (s("3"), s("hours")),
                        (s("4"), s("quiet")),
                    ]),
                    fallback: s("bye"),
                },
            ),
            (
                s("quiet"),
                Node::Menu {
                    input: input("quiet_menu", 0, false),
                    options: BTreeMap::from([(s("1"), s("info"))]),
                    fallback: s("bye"),
                },
            ),
            (
                s("info"),
                Node::Play {
                    prompt: vec![s("hours")],
                    next: s("bye"),
                    resolves: true,
                    barge_in: true,
                },
            ),
            (
                s("collect"),
                Node::Collect {
                    input: input("order_prompt", 1, true),
                    variable: s("order"),
                    min_digits: 2,
                    max_digits: 5,
                    terminator: Some('#'),
                    next: s("lookup"),
                    fallback: s("bye"),
                },
            ),
            (
                s("lookup"),
                Node::Lookup {
                    variable: s("order"),
                    table: Arc::new(BTreeMap::from([(s("123"), s("shipped"))])),
                    statuses: BTreeMap::from([(s("shipped"), s("order_status_shipped"))]),
                    found_prompt: Some(s("order_found_prefix")),
                    read_back: true,
                    not_found_prompt: s("order_not_found"),
                    found: s("bye"),
                    not_found: s("bye"),
                    resolves: true,
                    barge_in: false,
                },
            ),
            (
                s("lang"),
                Node::Language {
                    input: input("language_menu", 0, true),
                    options: BTreeMap::from([(s("1"), s("en")), (s("2"), s("zh"))]),
                    next: s("menu"),
                    fallback: s("menu"),
                },
            ),
            (
                s("hours"),
                Node::OfficeHours {
                    hours,
                    open: s("info"),
                    closed: s("bye"),
                },
            ),
            (
                s("bye"),
                Node::HangUp {
                    prompt: vec![s("goodbye")],
                },
            ),
        ]);
        let holidays = BTreeSet::from([NaiveDate::from_ymd_opt(2026, 10, 5).unwrap()]);
        Arc::new(
            IvrGraph::new(
                BTreeMap::new(),
                s("menu"),
                chrono_tz::Asia::Shanghai,
                holidays,
                nodes,
            )
            .unwrap(),
        )
    }

    fn drain(s: &mut IvrSession) -> Vec<IvrAction> {
        std::iter::from_fn(|| s.poll_action()).collect()
    }

    /// (node, digits, detail) of the steps in `actions`.
    fn steps(actions: &[IvrAction]) -> Vec<(String, Option<String>, Option<String>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                IvrAction::Step {
                    node,
                    digits,
                    detail,
                    ..
                } => Some((node.clone(), digits.clone(), detail.clone())),
                _ => None,
            })
            .collect()
    }

    /// (play_id, prompt ids, lang of the first) of the last Play in `actions`.
    fn last_play(actions: &[IvrAction]) -> (u64, Vec<String>, String) {
        actions
            .iter()
            .rev()
            .find_map(|a| match a {
                IvrAction::Play {
                    play_id, prompts, ..
                } => Some((
                    *play_id,
                    prompts.iter().map(|p| p.id.clone()).collect(),
                    prompts.first().map(|p| p.lang.clone()).unwrap_or_default(),
                )),
                _ => None,
            })
            .expect("a Play action")
    }

    fn step(
        node: &str,
        digits: Option<&str>,
        detail: Option<&str>,
    ) -> (String, Option<String>, Option<String>) {
        (s(node), digits.map(s), detail.map(s))
    }

    const T0: Millis = Millis(1_000_000);

    #[test]
    fn menu_barge_in_digit_chooses_and_stops_the_prompt() {
        let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
        let a = drain(&mut ivr);
        assert_eq!(steps(&a), vec![step("menu", None, None)]);
        assert_eq!(last_play(&a), (1, vec![s("main_menu")], s("en")));
        assert_eq!(ivr.deadline(), None, "no timer while the prompt plays");

        ivr.on_digit(T0.plus(500), '3');
        let a = drain(&mut ivr);
        assert_eq!(a.first(), Some(&IvrAction::StopPlay));
        // T0 is a Thursday in 1970 and `hours` opens on Mondays only: closed -> goodbye.
        assert_eq!(
            steps(&a),
            vec![
                step("menu", Some("3"), None),
                step("hours", None, Some("closed")),
                step("bye", None, None)
            ]
        );
        // The interrupted menu prompt reports late: ignored.
        ivr.on_play_finished(T0.plus(510), 1, true);
        assert!(drain(&mut ivr).is_empty());
    }

    #[test]
    fn menu_timeouts_retry_then_fall_back() {
        let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
        drain(&mut ivr);
        ivr.on_play_finished(T0.plus(4000), 1, false);
        assert_eq!(ivr.deadline(), Some(T0.plus(9000)));
        ivr.on_timeout(T0.plus(8999)); // early: ignored
        assert!(drain(&mut ivr).is_empty());
        ivr.on_timeout(T0.plus(9000));
        let a = drain(&mut ivr);
        assert_eq!(steps(&a), vec![step("menu", None, Some("timeout"))]);
        assert_eq!(last_play(&a).1, vec![s("no_input"), s("main_menu")]);
        assert_eq!(ivr.deadline(), None);
        let id = last_play(&a).0;
        ivr.on_play_finished(T0.plus(12_000), id, false);
        ivr.on_timeout(T0.plus(17_000));
        let a = drain(&mut ivr);
        assert_eq!(
            steps(&a),
            vec![
                step("menu", None, Some("timeout")),
                step("menu", None, Some("fallback")),
                step("bye", None, None)
            ]
        );
        let id = last_play(&a).0;
        ivr.on_play_finished(T0.plus(19_000), id, false);
        assert_eq!(
            drain(&mut ivr),
            vec![IvrAction::HangUp {
                outcome: IvrOutcome::Failed
            }]
        );
        assert!(ivr.is_finished());
        ivr.on_digit(T0.plus(20_000), '1');
        assert!(drain(&mut ivr).is_empty());
    }

    #[test]
    fn invalid_digit_replays_with_apology() {
        let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
        drain(&mut ivr);
        ivr.on_play_finished(T0.plus(4000), 1, false);
        ivr.on_digit(T0.plus(4500), '7');
        let a = drain(&mut ivr);
        assert_eq!(steps(&a), vec![step("menu", Some("7"), Some("invalid"))]);
        assert_eq!(last_play(&a).1, vec![s("invalid"), s("main_menu")]);
    }

    #[test]
    fn multi_digit_options_wait_for_the_inter_digit_timeout() {
        let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
        drain(&mut ivr);
        ivr.on_play_finished(T0.plus(4000), 1, false);
        ivr.on_digit(T0.plus(4100), '1');
        assert!(
            steps(&drain(&mut ivr)).is_empty(),
            "1 could still become 12"
        );
        assert_eq!(ivr.deadline(), Some(T0.plus(6100)));
        ivr.on_timeout(T0.plus(6100));
        let a = drain(&mut ivr);
        assert_eq!(
            steps(&a),
            vec![step("menu", Some("1"), None), step("info", None, None)]
        );

        let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
        drain(&mut ivr);
        ivr.on_digit(T0.plus(100), '1');
        ivr.on_digit(T0.plus(300), '2');
        let a = drain(&mut ivr);
        assert_eq!(
            steps(&a),
            vec![step("menu", Some("12"), None), step("collect", None, None)]
        );
    }

    #[test]
    fn non_barge_in_prompt_ignores_digits() {
        let mut ivr = IvrSession::start(graph(), "quiet", T0, "en");
        let a = drain(&mut ivr);
        assert!(matches!(
            a.last(),
            Some(IvrAction::Play {
                barge_in: false,
                ..
            })
        ));
        ivr.on_digit(T0.plus(100), '1');
        assert!(drain(&mut ivr).is_empty());
        ivr.on_play_finished(T0.plus(3000), 1, false);
        ivr.on_digit(T0.plus(3100), '1');
        assert_eq!(
            steps(&drain(&mut ivr)),
            vec![step("quiet", Some("1"), None), step("info", None, None)]
        );
    }

    #[test]
    fn play_resolves_when_heard_to_the_end() {
        let mut ivr = IvrSession::start(graph(), "info", T0, "en");
        let a = drain(&mut ivr);
        assert!(!ivr.resolved());
        ivr.on_play_finished(T0.plus(5000), last_play(&a).0, false);
        assert!(ivr.resolved());
        let a = drain(&mut ivr);
        assert_eq!(steps(&a), vec![step("bye", None, None)]);
        ivr.on_play_finished(T0.plus(7000), last_play(&a).0, false);
        assert_eq!(
            drain(&mut ivr),
            vec![IvrAction::HangUp {
                outcome: IvrOutcome::SelfServed
            }]
        );
    }

    #[test]
    fn play_resolves_when_skipped_by_a_digit_but_not_when_cut_otherwise() {
        let mut ivr = IvrSession::start(graph(), "info", T0, "en");
        drain(&mut ivr);
        ivr.on_digit(T0.plus(1000), '5');
        let a = drain(&mut ivr);
        assert_eq!(a.first(), Some(&IvrAction::StopPlay));
        assert_eq!(steps(&a)[0], step("info", Some("5"), Some("skipped")));
        assert!(ivr.resolved());

        let mut ivr = IvrSession::start(graph(), "info", T0, "en");
        drain(&mut ivr);
        ivr.on_play_finished(T0.plus(1000), 1, true);
        assert!(!ivr.resolved());
    }

    #[test]
    fn collect_ends_on_terminator_and_keeps_the_variable() {
        let mut ivr = IvrSession::start(graph(), "collect", T0, "en");
        drain(&mut ivr);
        for (i, d) in "123#".chars().enumerate() {
            ivr.on_digit(T0.plus(100 * i as u64), d);
        }
        let a = drain(&mut ivr);
        assert_eq!(
            steps(&a),
            vec![
                step("collect", Some("123#"), None),
                step("lookup", None, Some("found"))
            ]
        );
        assert!(a.contains(&IvrAction::Variable {
            name: s("order"),
            value: s("123")
        }));
        assert_eq!(ivr.variables().get("order"), Some(&s("123")));
        assert_eq!(
            last_play(&a).1,
            vec![
                s("order_found_prefix"),
                s("digit_1"),
                s("digit_2"),
                s("digit_3"),
                s("order_status_shipped")
            ]
        );
        assert!(!ivr.resolved(), "resolved once the status was heard");
        ivr.on_digit(T0.plus(1000), '9'); // lookup prompt is not barge-in
        assert!(drain(&mut ivr).is_empty());
        ivr.on_play_finished(T0.plus(5000), last_play(&a).0, false);
        assert!(ivr.resolved());
    }

    #[test]
    fn collect_ends_at_max_digits_or_inter_digit_timeout() {
        let mut ivr = IvrSession::start(graph(), "collect", T0, "en");
        drain(&mut ivr);
        for d in "99999".chars() {
            ivr.on_digit(T0, d);
        }
        let a = drain(&mut ivr);
        assert_eq!(
            steps(&a),
            vec![
                step("collect", Some("99999"), None),
                step("lookup", None, Some("not_found"))
            ]
        );
        assert_eq!(last_play(&a).1, vec![s("order_not_found")]);
        ivr.on_play_finished(T0.plus(3000), last_play(&a).0, false);
        assert!(!ivr.resolved(), "not found does not resolve");

        let mut ivr = IvrSession::start(graph(), "collect", T0, "en");
        drain(&mut ivr);
        ivr.on_digit(T0.plus(100), '1');
        ivr.on_digit(T0.plus(200), '2');
        assert_eq!(ivr.deadline(), Some(T0.plus(2200)));
        ivr.on_timeout(T0.plus(2200));
        let a = drain(&mut ivr);
        assert_eq!(steps(&a)[0], step("collect", Some("12"), None));
    }

    #[test]
    fn collect_too_short_or_bad_key_is_invalid() {
        let mut ivr = IvrSession::start(graph(), "collect", T0, "en");
        drain(&mut ivr);
        ivr.on_digit(T0, '1');
        ivr.on_digit(T0, '#');
        let a = drain(&mut ivr);
        assert_eq!(
            steps(&a),
            vec![step("collect", Some("1#"), Some("invalid"))]
        );
        assert_eq!(last_play(&a).1, vec![s("invalid"), s("order_prompt")]);
        ivr.on_digit(T0, '*');
        let a = drain(&mut ivr);
        assert_eq!(
            steps(&a),
            vec![
                step("collect", Some("*"), Some("invalid")),
                step("collect", None, Some("fallback")),
                step("bye", None, None)
            ]
        );
    }

    #[test]
    fn language_choice_changes_the_prompt_language() {
        let mut ivr = IvrSession::start(graph(), "lang", T0, "en");
        drain(&mut ivr);
        ivr.on_digit(T0.plus(100), '2');
        let a = drain(&mut ivr);
        assert_eq!(
            steps(&a),
            vec![
                step("lang", Some("2"), Some("lang=zh")),
                step("menu", None, None)
            ]
        );
        assert_eq!(last_play(&a).2, "zh");
        assert_eq!(ivr.language(), "zh");
    }

    #[test]
    fn language_fallback_keeps_the_language() {
        let mut ivr = IvrSession::start(graph(), "lang", T0, "zh");
        drain(&mut ivr);
        ivr.on_play_finished(T0.plus(100), 1, false);
        ivr.on_timeout(T0.plus(5100));
        let a = drain(&mut ivr);
        assert_eq!(steps(&a).last(), Some(&step("menu", None, None)));
        assert_eq!(last_play(&a).2, "zh");
    }

    /// UTC ms of a Shanghai local time.
    fn shanghai(y: i32, m: u32, d: u32, h: u32, min: u32) -> Millis {
        let t = chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .unwrap();
        Millis(t.timestamp_millis() as u64)
    }

    #[test]
    fn office_hours_use_the_time_zone_and_holidays() {
        let detail = |now: Millis| {
            let mut ivr = IvrSession::start(graph(), "hours", now, "en");
            steps(&drain(&mut ivr))[0].2.clone().unwrap()
        };
        // 2026-09-28 is a Monday.
        assert_eq!(detail(shanghai(2026, 9, 28, 9, 0)), "open");
        assert_eq!(detail(shanghai(2026, 9, 28, 17, 59)), "open");
        assert_eq!(detail(shanghai(2026, 9, 28, 18, 0)), "closed");
        assert_eq!(detail(shanghai(2026, 9, 28, 8, 59)), "closed");
        // 01:30 UTC Monday is 09:30 in Shanghai: open, though UTC says 01:30.
        assert_eq!(detail(Millis(1_790_559_000_000)), "open");
        assert_eq!(detail(shanghai(2026, 9, 29, 10, 0)), "closed", "Tuesday");
        assert_eq!(detail(shanghai(2026, 10, 5, 10, 0)), "closed:holiday");
    }

    #[test]
    fn broken_entry_fails_cleanly() {
        let mut ivr = IvrSession::start(graph(), "nowhere", T0, "en");
        let a = drain(&mut ivr);
        assert_eq!(
            a.last(),
            Some(&IvrAction::HangUp {
                outcome: IvrOutcome::Failed
            })
        );
        assert!(ivr.is_finished());
    }

    #[test]
    fn play_ids_increase() {
        let mut ivr = IvrSession::start(graph(), "menu", T0, "en");
        let a = drain(&mut ivr);
        ivr.on_digit(T0, '2');
        let b = drain(&mut ivr);
        assert!(last_play(&b).0 > last_play(&a).0);
    }
}
