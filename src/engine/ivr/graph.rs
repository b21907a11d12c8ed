//! The validated IVR menu graph. `config::ivr` parses `ivr.toml` field by field into these
//! types; `IvrGraph::new` checks the graph as a whole (every edge lands on a node, every node
//! is reachable from an entry, no loop that never waits for the caller).

use chrono::NaiveDate;
use chrono_tz::Tz;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// A graph-level fault: the dotted key in `ivr.toml` and why it is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphError {
    pub key: String,
    pub reason: String,
}

impl GraphError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> GraphError {
        GraphError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// How a node that waits for digits prompts, listens and retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    /// Played on entry and again before each retry.
    pub prompt: Vec<String>,
    /// From the end of the prompt (or the first barge-in digit) to the first digit.
    pub first_digit_timeout_ms: u64,
    /// Between two digits of a multi-digit entry.
    pub inter_digit_timeout_ms: u64,
    /// Re-prompts after the first attempt before the fallback is taken.
    pub retries: u32,
    /// Played before the prompt when a retry follows an invalid entry.
    pub invalid_prompt: Option<String>,
    /// Played before the prompt when a retry follows silence.
    pub no_input_prompt: Option<String>,
    /// A digit stops the prompt at once and counts as input; otherwise digits during the
    /// prompt are ignored.
    pub barge_in: bool,
}

/// Opening hours per weekday as `[start, end)` minute ranges, Monday first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeeklyHours {
    pub days: [Vec<(u32, u32)>; 7],
}

impl WeeklyHours {
    /// Whether `minute` (0..1440) of weekday `day` (0 = Monday) is inside opening hours.
    pub fn is_open(&self, day: usize, minute: u32) -> bool {
        self.days
            .get(day)
            .is_some_and(|ranges| ranges.iter().any(|&(s, e)| s <= minute && minute < e))
    }
}

/// One node of the menu graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// Digits choose the next node (`options`: digit string -> node id).
    Menu {
        input: InputSpec,
        options: BTreeMap<String, String>,
        fallback: String,
    },
    /// An information prompt, then `next`.
    Play {
        prompt: Vec<String>,
        next: String,
        /// Hearing this prompt answers the caller's question (self-service).
        resolves: bool,
        barge_in: bool,
    },
    /// Multi-digit entry kept on the call as `variable`.
    Collect {
        input: InputSpec,
        variable: String,
        min_digits: usize,
        max_digits: usize,
        terminator: Option<char>,
        next: String,
        fallback: String,
    },
    /// Digits choose the prompt language for the rest of the call.
    Language {
        input: InputSpec,
        /// digit string -> language code.
        options: BTreeMap<String, String>,
        next: String,
        /// Taken (keeping the current language) when retries run out.
        fallback: String,
    },
    /// Branches on the configured time zone's weekday, time and holiday calendar.
    OfficeHours {
        hours: WeeklyHours,
        open: String,
        closed: String,
    },
    /// Looks a collected variable up in a table and plays the matching status prompt.
    Lookup {
        variable: String,
        /// key -> status, from a CSV file.
        table: Arc<BTreeMap<String, String>>,
        /// status -> prompt id.
        statuses: BTreeMap<String, String>,
        /// Played before the read-back digits when found.
        found_prompt: Option<String>,
        /// Read the key back digit by digit (`digit_0` .. `digit_9`).
        read_back: bool,
        not_found_prompt: String,
        found: String,
        not_found: String,
        /// A found entry answers the caller's question (not-found does not).
        resolves: bool,
        barge_in: bool,
    },
    /// Say goodbye, then end the call.
    HangUp { prompt: Vec<String> },
    /// Hand the call to an ACD queue; the IVR's part of the call ends here.
    Queue { queue: String },
}

impl Node {
    /// The kind name stored in `ivr_steps.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Menu { .. } => "menu",
            Node::Play { .. } => "play",
            Node::Collect { .. } => "collect",
            Node::Language { .. } => "language",
            Node::OfficeHours { .. } => "office_hours",
            Node::Lookup { .. } => "lookup",
            Node::HangUp { .. } => "hangup",
            Node::Queue { .. } => "queue",
        }
    }

    /// Outgoing edges as (dotted key below the node, target node id).
    pub fn edges(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = Vec::new();
        match self {
            Node::Menu {
                options, fallback, ..
            } => {
                for (digit, target) in options {
                    out.push((format!("options.{digit}"), target));
                }
                out.push(("fallback".into(), fallback));
            }
            Node::Play { next, .. } => out.push(("next".into(), next)),
            Node::Collect { next, fallback, .. } | Node::Language { next, fallback, .. } => {
                out.push(("next".into(), next));
                out.push(("fallback".into(), fallback));
            }
            Node::OfficeHours { open, closed, .. } => {
                out.push(("open".into(), open));
                out.push(("closed".into(), closed));
            }
            Node::Lookup {
                found, not_found, ..
            } => {
                out.push(("found".into(), found));
                out.push(("not_found".into(), not_found));
            }
            Node::HangUp { .. } | Node::Queue { .. } => {}
        }
        out
    }

    /// Every prompt id this node can play.
    fn prompt_ids(&self, out: &mut BTreeSet<String>) {
        let mut input = |i: &InputSpec| {
            out.extend(i.prompt.iter().cloned());
            out.extend(i.invalid_prompt.iter().cloned());
            out.extend(i.no_input_prompt.iter().cloned());
        };
        match self {
            Node::Menu { input: i, .. }
            | Node::Collect { input: i, .. }
            | Node::Language { input: i, .. } => input(i),
            Node::Play { prompt, .. } | Node::HangUp { prompt } => {
                out.extend(prompt.iter().cloned())
            }
            Node::OfficeHours { .. } | Node::Queue { .. } => {}
            Node::Lookup {
                statuses,
                found_prompt,
                read_back,
                not_found_prompt,
                ..
            } => {
                out.extend(statuses.values().cloned());
                out.extend(found_prompt.iter().cloned());
                out.insert(not_found_prompt.clone());
                if *read_back {
                    out.extend((0..10).map(digit_prompt));
                }
            }
        }
    }
}

/// The prompt id that speaks one digit.
pub fn digit_prompt(d: u32) -> String {
    format!("digit_{d}")
}

/// The validated menu graph shared by every call.
#[derive(Clone, Debug)]
pub struct IvrGraph {
    entries: BTreeMap<String, String>,
    default_entry: String,
    time_zone: Tz,
    holidays: BTreeSet<NaiveDate>,
    nodes: BTreeMap<String, Node>,
}

impl IvrGraph {
    /// Checks the graph as a whole. Keys in errors are dotted paths of `ivr.toml`.
    pub fn new(
        entries: BTreeMap<String, String>,
        default_entry: String,
        time_zone: Tz,
        holidays: BTreeSet<NaiveDate>,
        nodes: BTreeMap<String, Node>,
    ) -> Result<IvrGraph, GraphError> {
        if nodes.is_empty() {
            return Err(GraphError::new("nodes", "no node defined"));
        }
        if !nodes.contains_key(&default_entry) {
            return Err(GraphError::new(
                "entries.default",
                format!("node `{default_entry}` does not exist"),
            ));
        }
        for (number, target) in &entries {
            if !nodes.contains_key(target) {
                return Err(GraphError::new(
                    format!("entries.{number}"),
                    format!("node `{target}` does not exist"),
                ));
            }
        }
        for (id, node) in &nodes {
            for (key, target) in node.edges() {
                if !nodes.contains_key(target) {
                    return Err(GraphError::new(
                        format!("nodes.{id}.{key}"),
                        format!("node `{target}` does not exist"),
                    ));
                }
            }
        }
        let graph = IvrGraph {
            entries,
            default_entry,
            time_zone,
            holidays,
            nodes,
        };
        graph.check_reachable()?;
        graph.check_no_silent_loop()?;
        Ok(graph)
    }

    fn check_reachable(&self) -> Result<(), GraphError> {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut todo: VecDeque<&str> = VecDeque::new();
        todo.push_back(&self.default_entry);
        todo.extend(self.entries.values().map(String::as_str));
        while let Some(id) = todo.pop_front() {
            if !seen.insert(id) {
                continue;
            }
            if let Some(node) = self.nodes.get(id) {
                todo.extend(node.edges().into_iter().map(|(_, t)| t));
            }
        }
        match self.nodes.keys().find(|id| !seen.contains(id.as_str())) {
            Some(id) => Err(GraphError::new(
                format!("nodes.{id}"),
                "unreachable: no entry leads to this node",
            )),
            None => Ok(()),
        }
    }

    /// Office-hours nodes are the only ones that move on without playing anything; a cycle
    /// made of them alone would spin forever.
    fn check_no_silent_loop(&self) -> Result<(), GraphError> {
        for start in self.nodes.keys() {
            let mut stack: Vec<&str> = vec![start];
            let mut seen: BTreeSet<&str> = BTreeSet::new();
            while let Some(id) = stack.pop() {
                let Some(Node::OfficeHours { open, closed, .. }) = self.nodes.get(id) else {
                    continue;
                };
                for next in [open.as_str(), closed.as_str()] {
                    if next == start {
                        return Err(GraphError::new(
                            format!("nodes.{start}"),
                            "office_hours nodes form a loop that never plays a prompt",
                        ));
                    }
                    if seen.insert(next) {
                        stack.push(next);
                    }
                }
            }
        }
        Ok(())
    }

    /// The entry node for a dialled number (Request-URI user part); the default otherwise.
    pub fn entry_for(&self, dialled: &str) -> &str {
        self.entries
            .get(dialled)
            .unwrap_or(&self.default_entry)
            .as_str()
    }

    /// Every prompt id the graph can play (the app checks each exists in every language).
    pub fn prompt_ids(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for node in self.nodes.values() {
            node.prompt_ids(&mut out);
        }
        out
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    pub fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.contains(&date)
    }

    pub fn default_entry(&self) -> &str {
        &self.default_entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(next: &str) -> Node {
        Node::Play {
            prompt: vec!["hours".into()],
            next: next.into(),
            resolves: true,
            barge_in: true,
        }
    }

    fn bye() -> Node {
        Node::HangUp {
            prompt: vec!["goodbye".into()],
        }
    }

    fn build(nodes: Vec<(&str, Node)>) -> Result<IvrGraph, GraphError> {
        IvrGraph::new(
            BTreeMap::from([("400".to_string(), "a".to_string())]),
            "a".into(),
            chrono_tz::UTC,
            BTreeSet::new(),
            nodes.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        )
    }

    #[test]
    fn accepts_a_connected_graph_and_picks_entries() {
        let g = build(vec![("a", play("bye")), ("bye", bye())]).unwrap();
        assert_eq!(g.entry_for("400"), "a");
        assert_eq!(g.entry_for("999"), "a");
        let ids: Vec<_> = g.prompt_ids().into_iter().collect();
        assert_eq!(ids, vec!["goodbye", "hours"]);
    }

    #[test]
    fn dangling_edge_is_named_by_key() {
        let e = build(vec![("a", play("nowhere"))]).unwrap_err();
        assert_eq!(e.key, "nodes.a.next");
        assert!(e.reason.contains("`nowhere` does not exist"), "{e:?}");
    }

    #[test]
    fn unreachable_node_is_refused() {
        let e = build(vec![("a", play("bye")), ("bye", bye()), ("lost", bye())]).unwrap_err();
        assert_eq!(e.key, "nodes.lost");
        assert!(e.reason.contains("unreachable"));
    }

    #[test]
    fn office_hours_loop_is_refused() {
        let oh = |o: &str, c: &str| Node::OfficeHours {
            hours: WeeklyHours::default(),
            open: o.into(),
            closed: c.into(),
        };
        let e = build(vec![
            ("a", oh("b", "bye")),
            ("b", oh("a", "bye")),
            ("bye", bye()),
        ])
        .unwrap_err();
        assert!(e.reason.contains("loop"), "{e:?}");
    }

    #[test]
    fn weekly_hours_are_half_open() {
        let mut h = WeeklyHours::default();
        h.days[0] = vec![(540, 1080)];
        assert!(h.is_open(0, 540));
        assert!(!h.is_open(0, 1080));
        assert!(!h.is_open(1, 600));
        assert!(!h.is_open(9, 600));
    }
}
