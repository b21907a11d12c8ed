//! Survey figures (issue 8, METRICS.md "survey response rate", "CSAT", "NPS") as pure
//! functions over per-survey and per-task facts. `Store::survey_stats` computes the same in
//! SQL; a property test (tests/survey_reports.rs) keeps the two equal on both databases.
//!
//! Counts are exact integers (ratios are derived), so Rust and SQL agree exactly.
//!
//! Formulas (METRICS.md where it has one; the rest are the usual definitions, said here):
//! - **sent**: the survey question was accepted by the gateway (`sent_at` known).
//! - **delivered**: a delivery receipt said delivered (`delivered_at` known).
//! - **answered**: a CSAT score arrived (`csat` known). A reply we could not read, kept as a
//!   comment only, is not an answer.
//! - **response rate** = answered / sent (METRICS.md; target >= 80 %). Shown with its
//!   denominator.
//! - **CSAT** = answers of 4 or 5 / answers (METRICS.md; target >= 90 %), and the **mean**
//!   score = sum of scores / answers (target >= 4.2).
//! - **NPS** = % promoters (9-10) - % detractors (0-6), over the NPS answers (METRICS.md;
//!   target >= 70). Ranges -100..=100.
//! - **opt-outs**: surveys that ended in `opted_out`, or that an `sms_opt_outs` row names
//!   (not in METRICS.md; the count of callers lost to the survey).
//! - **follow-ups** (not in METRICS.md): opened = tasks opened; closed in time = closed at
//!   or before `due_at`; overdue = closed after `due_at`, or still open at `now` with `due_at`
//!   passed (`now > due_at`); open = still open and not yet due.
//!
//! Buckets: a survey counts in the bucket of `decided_at` (when the call ended and the policy
//! decided), so a bucket's response rate is that of the calls of the bucket, whenever the
//! replies came. A task counts in the bucket of `opened_at`. Buckets are days or 15 minutes
//! of local time at a fixed UTC offset (`Buckets`): the report uses the IVR time zone's
//! offset (for zones with daylight saving time, the offset at the start of the report).
//! Grouping: by the survey's (or task's) queue or agent; none is the group `""`.

use super::{ratio, Interval, Range};
use crate::engine::time::Millis;
use serde::Serialize;
use std::collections::BTreeMap;

/// Survey states after which nothing more happens to the survey (retention may then drop
/// the number once no follow-up task needs it).
pub const FINAL_STATES: [&str; 6] = [
    "answered",
    "expired",
    "opted_out",
    "skipped",
    "failed",
    "undeliverable",
];

/// Bucket width and the local time's offset from UTC (east positive, ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buckets {
    pub interval: Interval,
    pub utc_offset_ms: i64,
}

impl Buckets {
    pub fn utc(interval: Interval) -> Self {
        Buckets {
            interval,
            utc_offset_ms: 0,
        }
    }

    /// Start (UTC ms) of the local bucket holding `t`:
    /// `floor((t + offset) / width) * width - offset`.
    pub fn bucket(&self, t: Millis) -> Millis {
        let w = self.interval.width_ms() as i128;
        let off = i128::from(self.utc_offset_ms);
        let local = i128::from(t.as_u64()) + off;
        let start = local.div_euclid(w) * w - off;
        Millis(u64::try_from(start.max(0)).unwrap_or(0))
    }
}

/// How rows are grouped besides the interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SurveyGroup {
    /// One group, `""`.
    All,
    Queue,
    Agent,
}

/// What the figures need from one `surveys` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SurveyFacts {
    pub decided_at: Millis,
    pub state: String,
    pub agent: Option<String>,
    pub queue: Option<String>,
    pub sent_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub csat: Option<u8>,
    pub nps: Option<u8>,
    /// An `sms_opt_outs` row names this survey.
    pub opt_out_recorded: bool,
}

/// What the figures need from one `follow_up_tasks` row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFacts {
    pub agent: Option<String>,
    pub queue: Option<String>,
    pub opened_at: Millis,
    pub due_at: Millis,
    pub closed_at: Option<Millis>,
}

/// Per group and bucket, as exact integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SurveyStats {
    /// Surveys decided (scheduled or skipped).
    pub surveys: u64,
    pub skipped: u64,
    pub sent: u64,
    pub delivered: u64,
    /// CSAT answers (see the module notes).
    pub answered: u64,
    /// Answers of 4 or 5.
    pub csat_satisfied: u64,
    pub csat_sum: u64,
    pub nps_answers: u64,
    pub nps_promoters: u64,
    pub nps_detractors: u64,
    pub opt_outs: u64,
    pub follow_ups_opened: u64,
    pub follow_ups_closed_in_time: u64,
    pub follow_ups_overdue: u64,
    /// Open and not yet due.
    pub follow_ups_open: u64,
}

impl SurveyStats {
    pub fn add_survey(&mut self, s: &SurveyFacts) {
        self.surveys += 1;
        if s.state == "skipped" {
            self.skipped += 1;
        }
        if s.sent_at.is_some() {
            self.sent += 1;
        }
        if s.delivered_at.is_some() {
            self.delivered += 1;
        }
        if let Some(c) = s.csat {
            self.answered += 1;
            self.csat_sum += u64::from(c);
            if c >= 4 {
                self.csat_satisfied += 1;
            }
        }
        if let Some(n) = s.nps {
            self.nps_answers += 1;
            if n >= 9 {
                self.nps_promoters += 1;
            } else if n <= 6 {
                self.nps_detractors += 1;
            }
        }
        if s.state == "opted_out" || s.opt_out_recorded {
            self.opt_outs += 1;
        }
    }

    pub fn add_task(&mut self, t: &TaskFacts, now: Millis) {
        self.follow_ups_opened += 1;
        match t.closed_at {
            Some(c) if c <= t.due_at => self.follow_ups_closed_in_time += 1,
            Some(_) => self.follow_ups_overdue += 1,
            None if now > t.due_at => self.follow_ups_overdue += 1,
            None => self.follow_ups_open += 1,
        }
    }

    /// answered / sent (target >= 80 %); `None` with nothing sent.
    pub fn response_rate(&self) -> Option<f64> {
        ratio(self.answered, self.sent)
    }

    /// Answers of 4-5 / answers (target >= 90 %).
    pub fn csat(&self) -> Option<f64> {
        ratio(self.csat_satisfied, self.answered)
    }

    /// Mean CSAT score, 1-5 (target >= 4.2).
    pub fn csat_mean(&self) -> Option<f64> {
        ratio(self.csat_sum, self.answered)
    }

    /// % promoters - % detractors, -100..=100 (target >= 70).
    pub fn nps(&self) -> Option<f64> {
        ratio(self.nps_promoters, self.nps_answers)
            .zip(ratio(self.nps_detractors, self.nps_answers))
            .map(|(p, d)| (p - d) * 100.0)
    }
}

fn group_key(by: SurveyGroup, agent: &Option<String>, queue: &Option<String>) -> String {
    match by {
        SurveyGroup::All => String::new(),
        SurveyGroup::Queue => queue.clone().unwrap_or_default(),
        SurveyGroup::Agent => agent.clone().unwrap_or_default(),
    }
}

/// Per (group, bucket start): surveys decided in `range`, tasks opened in it; tasks still open
/// count as overdue when `now` is past their due time.
pub fn survey_stats<'a>(
    surveys: impl IntoIterator<Item = &'a SurveyFacts>,
    tasks: impl IntoIterator<Item = &'a TaskFacts>,
    range: Range,
    buckets: Buckets,
    by: SurveyGroup,
    now: Millis,
) -> BTreeMap<(String, Millis), SurveyStats> {
    let mut out: BTreeMap<(String, Millis), SurveyStats> = BTreeMap::new();
    for s in surveys.into_iter().filter(|s| range.contains(s.decided_at)) {
        let key = (
            group_key(by, &s.agent, &s.queue),
            buckets.bucket(s.decided_at),
        );
        out.entry(key).or_default().add_survey(s);
    }
    for t in tasks.into_iter().filter(|t| range.contains(t.opened_at)) {
        let key = (
            group_key(by, &t.agent, &t.queue),
            buckets.bucket(t.opened_at),
        );
        out.entry(key).or_default().add_task(t, now);
    }
    out
}

/// Longest follow-up note kept, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// A closing note must say something: trimmed, non-empty, at most `MAX_NOTE_CHARS`.
pub fn validate_note(note: &str) -> Result<String, String> {
    let t = note.trim();
    if t.is_empty() {
        return Err("the note must not be empty: say what was done".into());
    }
    let n = t.chars().count();
    if n > MAX_NOTE_CHARS {
        return Err(format!(
            "the note has {n} characters; at most {MAX_NOTE_CHARS} are kept"
        ));
    }
    if t.chars().any(|c| c.is_control() && c != '\n') {
        return Err("the note must not contain control characters".into());
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn survey(state: &str, sent: bool, csat: Option<u8>, nps: Option<u8>) -> SurveyFacts {
        SurveyFacts {
            decided_at: Millis(1_000),
            state: state.into(),
            sent_at: sent.then_some(Millis(2_000)),
            csat,
            nps,
            ..SurveyFacts::default()
        }
    }

    #[test]
    fn formulas_follow_metrics_md() {
        let mut s = SurveyStats::default();
        for f in [
            survey("answered", true, Some(5), Some(10)),
            survey("answered", true, Some(4), Some(9)),
            survey("answered", true, Some(2), Some(3)),
            survey("answered", true, Some(5), Some(7)),
            survey("expired", true, None, None),
            survey("skipped", false, None, None),
            survey("opted_out", true, None, None),
        ] {
            s.add_survey(&f);
        }
        assert_eq!((s.surveys, s.sent, s.answered, s.skipped), (7, 6, 4, 1));
        assert_eq!(s.response_rate(), Some(4.0 / 6.0));
        assert_eq!(s.csat(), Some(0.75));
        assert_eq!(s.csat_mean(), Some(4.0));
        // 2 promoters, 1 detractor, 1 passive of 4: 50 % - 25 % = 25.
        assert_eq!(s.nps(), Some(25.0));
        assert_eq!(s.opt_outs, 1);
        assert_eq!(SurveyStats::default().response_rate(), None);
        assert_eq!(SurveyStats::default().nps(), None);
    }

    #[test]
    fn follow_ups_closed_in_time_overdue_open() {
        let mut s = SurveyStats::default();
        let due = Millis(100);
        for closed in [Some(Millis(100)), Some(Millis(101)), None] {
            s.add_task(
                &TaskFacts {
                    due_at: due,
                    closed_at: closed,
                    ..TaskFacts::default()
                },
                Millis(100),
            );
        }
        assert_eq!(
            (
                s.follow_ups_opened,
                s.follow_ups_closed_in_time,
                s.follow_ups_overdue,
                s.follow_ups_open
            ),
            (3, 1, 1, 1)
        );
        s.add_task(
            &TaskFacts {
                due_at: due,
                ..TaskFacts::default()
            },
            Millis(101),
        );
        assert_eq!(s.follow_ups_overdue, 2);
    }

    #[test]
    fn local_day_buckets() {
        // 2026-11-22T16:30Z is 00:30 on the 23rd in Shanghai (UTC+8).
        let t = Millis(1_795_305_600_000 + 16 * 3_600_000 + 1_800_000);
        let utc_day = Buckets::utc(Interval::Day).bucket(t);
        let cn = Buckets {
            interval: Interval::Day,
            utc_offset_ms: 8 * 3_600_000,
        };
        let local_day = cn.bucket(t);
        assert_eq!(local_day.as_u64(), utc_day.as_u64() + 16 * 3_600_000);
        assert!(local_day <= t && t.as_u64() < local_day.as_u64() + 86_400_000);
        let west = Buckets {
            interval: Interval::Day,
            utc_offset_ms: -5 * 3_600_000,
        };
        let b = west.bucket(t);
        assert!(b <= t && t.as_u64() < b.as_u64() + 86_400_000);
        assert_eq!(
            (b.as_u64() - 5 * 3_600_000) % 86_400_000,
            0,
            "local midnight is 05:00 UTC"
        );
    }

    #[test]
    fn notes_are_required_and_capped() {
        assert!(validate_note("  ").is_err());
        assert!(validate_note(&"x".repeat(MAX_NOTE_CHARS + 1)).is_err());
        assert!(validate_note("a\u{1b}[2J").is_err());
        assert_eq!(
            validate_note(" called back, refund agreed ").unwrap(),
            "called back, refund agreed"
        );
    }
}
