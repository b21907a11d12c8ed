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
    /// The caller picked `lang` at a language node (not just the default).
    lang_chosen: bool,
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
            lang_chosen: false,
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

    /// The language the caller picked at a language node; None when they picked none.
    pub fn chosen_language(&self) -> Option<&str> {
        self.lang_chosen.then_some(self.lang.as_str())
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
                        self.lang_chosen = true;
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
mod tests;
