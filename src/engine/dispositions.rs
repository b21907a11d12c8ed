//! Disposition codes: how an agent classifies a call they handled (resolved, follow-up
//! needed, complaint, ...). Configured in `queues.toml` (`[dispositions]`, per queue
//! override); set by the agent with the feature code `*4` + number from a SIP phone or by
//! `Command::Disposition`. Built and validated by `config::dispositions`.

use std::collections::BTreeMap;

/// Longest note kept with a disposition (characters); longer notes are cut.
pub const MAX_DISPOSITION_NOTE_CHARS: usize = 1000;

/// Default due time of a task a disposition opens.
pub const DEFAULT_FOLLOW_UP_DUE_MS: u64 = 24 * 3_600_000;

/// One code, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispositionCode {
    /// 1-99: the digits after the disposition prefix (`*41`, `*412`).
    pub number: u8,
    /// Stable id stored on the call (`resolved`, `follow_up`, ...).
    pub name: String,
    pub label_en: String,
    pub label_zh: String,
    /// Opens a follow-up task for the agent.
    pub follow_up: bool,
    /// A complaint: opens a follow-up task too.
    pub complaint: bool,
    /// Counts as resolved for the disposition-based FCR.
    pub resolved: bool,
}

impl DispositionCode {
    /// Whether setting this code opens a follow-up task.
    pub fn opens_task(&self) -> bool {
        self.follow_up || self.complaint
    }
}

/// The default list plus per-queue lists that replace it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispositionCatalog {
    pub default: Vec<DispositionCode>,
    pub per_queue: BTreeMap<String, Vec<DispositionCode>>,
    /// Due time of the tasks dispositions open, from the time the code is set.
    pub follow_up_due_ms: u64,
}

impl Default for DispositionCatalog {
    /// The shipped codes (also what config/queues.toml lists).
    fn default() -> Self {
        DispositionCatalog {
            default: shipped_codes(),
            per_queue: BTreeMap::new(),
            follow_up_due_ms: DEFAULT_FOLLOW_UP_DUE_MS,
        }
    }
}

impl DispositionCatalog {
    /// The codes agents of `queue` pick from (the default list unless the queue has its own).
    pub fn codes_for(&self, queue: Option<&str>) -> &[DispositionCode] {
        queue
            .and_then(|q| self.per_queue.get(q))
            .map_or(self.default.as_slice(), Vec::as_slice)
    }

    /// The code with this number for a call of `queue`.
    pub fn by_number(&self, queue: Option<&str>, number: u8) -> Option<&DispositionCode> {
        self.codes_for(queue).iter().find(|c| c.number == number)
    }

    /// The code with this name for a call of `queue`.
    pub fn by_name(&self, queue: Option<&str>, name: &str) -> Option<&DispositionCode> {
        self.codes_for(queue).iter().find(|c| c.name == name)
    }
}

/// The number in a dialled disposition code: what follows `prefix`, 1-2 digits, no leading
/// zero (`*41` -> 1, `*412` -> 12). `None`: not a disposition code.
pub fn dialled_number(prefix: &str, dialled: &str) -> Option<u8> {
    if prefix.is_empty() {
        return None;
    }
    let rest = dialled.strip_prefix(prefix)?;
    if rest.is_empty() || rest.len() > 2 || rest.starts_with('0') {
        return None;
    }
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// A note as stored: trimmed, control characters (but newlines) dropped, capped at
/// `MAX_DISPOSITION_NOTE_CHARS`; empty becomes `None`.
pub fn clean_note(note: Option<&str>) -> Option<String> {
    let t: String = note?
        .trim()
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(MAX_DISPOSITION_NOTE_CHARS)
        .collect();
    let t = t.trim_end().to_string();
    (!t.is_empty()).then_some(t)
}

fn code(number: u8, name: &str, en: &str, zh: &str, flags: (bool, bool, bool)) -> DispositionCode {
    DispositionCode {
        number,
        name: name.into(),
        label_en: en.into(),
        label_zh: zh.into(),
        follow_up: flags.0,
        complaint: flags.1,
        resolved: flags.2,
    }
}

/// (follow_up, complaint, resolved)
const NONE: (bool, bool, bool) = (false, false, false);

fn shipped_codes() -> Vec<DispositionCode> {
    vec![
        code(1, "resolved", "Resolved", "已解决", (false, false, true)),
        code(
            2,
            "follow_up",
            "Follow-up needed",
            "需跟进",
            (true, false, false),
        ),
        code(3, "complaint", "Complaint", "投诉", (false, true, false)),
        code(4, "wrong_queue", "Wrong queue", "转错队列", NONE),
        code(
            5,
            "callback_requested",
            "Callback requested",
            "客户要求回电",
            (true, false, false),
        ),
        code(
            6,
            "info_only",
            "Information given",
            "仅咨询",
            (false, false, true),
        ),
        code(7, "escalated", "Escalated", "已升级处理", NONE),
        code(8, "dropped", "Call dropped", "通话中断", NONE),
        code(
            9,
            "nuisance",
            "Nuisance or silent call",
            "骚扰或无声来电",
            NONE,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialled_numbers() {
        assert_eq!(dialled_number("*4", "*41"), Some(1));
        assert_eq!(dialled_number("*4", "*412"), Some(12));
        assert_eq!(dialled_number("*4", "*4"), None);
        assert_eq!(dialled_number("*4", "*401"), None);
        assert_eq!(dialled_number("*4", "*4123"), None);
        assert_eq!(dialled_number("*4", "*4a"), None);
        assert_eq!(dialled_number("*4", "*21"), None);
        assert_eq!(dialled_number("", "1"), None);
    }

    #[test]
    fn per_queue_lists_replace_the_default() {
        let mut c = DispositionCatalog::default();
        assert_eq!(c.by_number(None, 2).unwrap().name, "follow_up");
        assert!(c.by_number(Some("tech"), 2).unwrap().opens_task());
        c.per_queue.insert(
            "tech".into(),
            vec![code(7, "fixed", "Fixed", "已修复", NONE)],
        );
        assert!(c.by_number(Some("tech"), 2).is_none());
        assert_eq!(c.by_name(Some("tech"), "fixed").unwrap().number, 7);
        assert_eq!(c.by_name(Some("sales"), "resolved").unwrap().number, 1);
    }

    #[test]
    fn notes_are_trimmed_cleaned_and_capped() {
        assert_eq!(clean_note(None), None);
        assert_eq!(clean_note(Some("  ")), None);
        assert_eq!(clean_note(Some(" a\u{1b}b\nc ")), Some("ab\nc".to_string()));
        let long = "x".repeat(MAX_DISPOSITION_NOTE_CHARS + 5);
        assert_eq!(
            clean_note(Some(&long)).unwrap().chars().count(),
            MAX_DISPOSITION_NOTE_CHARS
        );
    }
}
