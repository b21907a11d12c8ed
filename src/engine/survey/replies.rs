//! What an SMS reply does, sans-IO: given the text, the open survey it matched (if any) and
//! whether the number has opted out already, `handle_reply` returns every effect, which the
//! store applies in one transaction (`Store::apply_reply`), the inbound row first: a replayed
//! delivery (same dedupe key) changes nothing.
//!
//! - The open survey is the number's most recent one that went out (`sending` and later)
//!   and whose `reply_by` has not passed; none: the text is stored `unmatched`.
//! - TD/退订/STOP: the number is opted out for good (matched or not), an unanswered survey
//!   becomes `opted_out`, and one confirmation goes out, at once (an answer to the caller's
//!   own request, so not held for quiet hours). A number already opted out gets none.
//! - A CSAT score: `answered` (score, comment); a low score opens a follow-up task (not
//!   when the call has its complaint task); with NPS on, the NPS question is queued once.
//! - After the NPS question, a score 0-10 records the NPS.
//! - Unreadable or out of range: the first time, one clarification text (CSAT only; the
//!   clarification asks for 1-5); after that, or for NPS, the text is kept as a comment.
//! - Anything else on an answered survey is kept as a comment.
//! - NPS and clarification texts wait for the end of quiet hours (`release_time`).

use super::policy::{FollowUpReason, SurveyPolicy};
use super::reply::{parse_reply, Reply, Scale, MAX_COMMENT_CHARS};
use crate::engine::time::Millis;

/// The open survey a reply matched, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSurvey {
    pub survey_id: u64,
    pub call_id: String,
    pub state: String,
    pub language: Option<String>,
    pub agent: Option<String>,
    pub queue: Option<String>,
    pub complaint: bool,
    pub csat: Option<u8>,
    pub nps: Option<u8>,
    pub nps_asked: bool,
    pub clarified: bool,
    pub comment: Option<String>,
}

/// What the store knows about the sender.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyContext {
    pub survey: Option<OpenSurvey>,
    pub opted_out: bool,
}

/// A change to the matched survey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SurveyUpdate {
    /// CSAT answer; `ask_nps`: the NPS question is queued in the same step.
    Answered {
        csat: u8,
        comment: Option<String>,
        ask_nps: bool,
    },
    Nps {
        nps: u8,
        comment: Option<String>,
    },
    /// State `opted_out` unless already answered (the answer stands).
    OptedOut,
    /// The one clarification was sent; the text is kept as the comment.
    Clarified {
        comment: Option<String>,
    },
    /// Kept as a comment only (appended).
    Comment {
        comment: String,
    },
}

/// A text to queue in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedText {
    /// nps, clarify, opt_out_confirm.
    pub kind: &'static str,
    pub body: String,
    pub due_at: Millis,
}

/// A follow-up task opened by a low score.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskToOpen {
    pub call_id: String,
    pub survey_id: u64,
    pub agent: Option<String>,
    pub queue: Option<String>,
    pub reason: &'static str,
    pub score: u8,
    pub due_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyEffects {
    /// sms_inbound.outcome: csat, nps, opt_out, unreadable, comment, unmatched.
    pub outcome: &'static str,
    pub survey_id: Option<u64>,
    pub update: Option<SurveyUpdate>,
    /// Insert the number into sms_opt_outs (and tell the engine).
    pub opt_out: bool,
    pub texts: Vec<QueuedText>,
    pub task: Option<TaskToOpen>,
}

impl ReplyEffects {
    fn only(outcome: &'static str, survey_id: Option<u64>) -> ReplyEffects {
        ReplyEffects {
            outcome,
            survey_id,
            update: None,
            opt_out: false,
            texts: Vec::new(),
            task: None,
        }
    }
}

/// The comment kept after `previous` gets `more`, capped at `MAX_COMMENT_CHARS` characters.
pub fn append_comment(previous: Option<&str>, more: &str) -> String {
    let joined = match previous {
        Some(p) if !p.is_empty() => format!("{p} / {more}"),
        _ => more.to_string(),
    };
    joined.chars().take(MAX_COMMENT_CHARS).collect()
}

/// Decides what the reply `text` received at `now` does.
pub fn handle_reply(
    policy: &SurveyPolicy,
    ctx: &ReplyContext,
    text: &str,
    now: Millis,
) -> ReplyEffects {
    let survey = ctx.survey.as_ref();
    let nps_pending = survey.is_some_and(|s| s.csat.is_some() && s.nps_asked && s.nps.is_none());
    let scale = if nps_pending { Scale::Nps } else { Scale::Csat };
    let reply = parse_reply(text, scale);
    let language = survey.and_then(|s| s.language.as_deref());
    let (_, texts) = policy.texts_for(language);
    let fields_of = |s: &OpenSurvey| -> (String, Option<String>) {
        (s.agent.clone().unwrap_or_default(), s.queue.clone())
    };

    if reply == Reply::OptOut {
        let mut fx = ReplyEffects::only("opt_out", survey.map(|s| s.survey_id));
        fx.opt_out = !ctx.opted_out;
        fx.update = survey.map(|_| SurveyUpdate::OptedOut);
        if !ctx.opted_out {
            let (agent, queue) = survey.map(fields_of).unwrap_or_default();
            fx.texts.push(QueuedText {
                kind: "opt_out_confirm",
                body: texts
                    .opted_out
                    .render(&policy.fields(&agent, queue.as_deref())),
                due_at: now,
            });
        }
        return fx;
    }
    let Some(s) = survey else {
        return ReplyEffects::only("unmatched", None);
    };
    let (agent, queue) = fields_of(s);
    let fields = policy.fields(&agent, queue.as_deref());
    let held = |body: String, kind: &'static str| QueuedText {
        kind,
        body,
        due_at: policy.release_time(now).0,
    };
    let whole_text = || {
        let t = text.trim();
        (!t.is_empty()).then(|| t.chars().take(MAX_COMMENT_CHARS).collect::<String>())
    };
    let as_comment = |fx_outcome: &'static str| {
        let mut fx = ReplyEffects::only(fx_outcome, Some(s.survey_id));
        fx.update = whole_text().map(|t| SurveyUpdate::Comment {
            comment: append_comment(s.comment.as_deref(), &t),
        });
        fx
    };
    match (reply, s.csat) {
        (Reply::Score { score, comment }, None) => {
            let mut fx = ReplyEffects::only("csat", Some(s.survey_id));
            let comment = match (s.comment.as_deref(), comment) {
                // The text of an earlier unreadable reply stays in front.
                (Some(prev), Some(c)) => Some(append_comment(Some(prev), &c)),
                (Some(prev), None) => Some(prev.to_string()),
                (None, c) => c,
            };
            let ask_nps = policy.nps && !s.nps_asked;
            if ask_nps {
                if let Some(t) = &texts.nps {
                    fx.texts.push(held(t.render(&fields), "nps"));
                }
            }
            fx.update = Some(SurveyUpdate::Answered {
                csat: score,
                comment,
                ask_nps: ask_nps && texts.nps.is_some(),
            });
            if !s.complaint && score <= policy.follow_up_max_score {
                fx.task = Some(TaskToOpen {
                    call_id: s.call_id.clone(),
                    survey_id: s.survey_id,
                    agent: s.agent.clone(),
                    queue: s.queue.clone(),
                    reason: FollowUpReason::LowScore(score).as_str(),
                    score,
                    due_at: now.plus(policy.follow_up_due_ms),
                });
            }
            fx
        }
        (Reply::Score { score, comment }, Some(_)) if nps_pending => {
            let mut fx = ReplyEffects::only("nps", Some(s.survey_id));
            fx.update = Some(SurveyUpdate::Nps {
                nps: score,
                comment: comment.map(|c| append_comment(s.comment.as_deref(), &c)),
            });
            fx
        }
        (Reply::Unreadable { comment }, None) if !s.clarified => {
            let mut fx = ReplyEffects::only("unreadable", Some(s.survey_id));
            fx.texts
                .push(held(texts.clarify.render(&fields), "clarify"));
            fx.update = Some(SurveyUpdate::Clarified {
                comment: comment.map(|c| append_comment(s.comment.as_deref(), &c)),
            });
            fx
        }
        // Unreadable after the clarification, unreadable NPS, anything after the answer.
        _ => as_comment("comment"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::survey::numbers::NumberRules;
    use crate::engine::survey::policy::{LanguageTexts, QueueRules, QuietHours};
    use crate::engine::survey::template::Template;
    use std::collections::{BTreeMap, BTreeSet};

    fn t(s: &str) -> Template {
        Template::parse(s).unwrap()
    }

    fn policy(nps: bool) -> SurveyPolicy {
        SurveyPolicy {
            agent_display: Default::default(),
            company: "Example Co".into(),
            gateway: "default".into(),
            agent_handled: true,
            self_served: false,
            min_talk_ms: 0,
            queues: QueueRules::default(),
            delay_ms: 60_000,
            time_zone: chrono_tz::Asia::Shanghai,
            quiet_hours: Some(QuietHours {
                start_minute: 21 * 60,
                end_minute: 8 * 60,
            }),
            frequency_cap_days: 7,
            reply_window_ms: 48 * 3_600_000,
            nps,
            numbers: NumberRules {
                default_region: phonenumber::country::Id::CN,
                internal_max_digits: 6,
                extensions: BTreeSet::new(),
            },
            default_language: "en".into(),
            default_texts: LanguageTexts {
                csat: t("How was agent {agent}? Reply 1-5"),
                self_served: None,
                nps: Some(t("0-10: recommend {company}?")),
                clarify: t("Please reply 1-5"),
                opted_out: t("You will get no more surveys"),
            },
            texts: BTreeMap::new(),
            queue_labels: BTreeMap::new(),
            follow_up_max_score: 2,
            complaint_queues: BTreeSet::new(),
            follow_up_due_ms: 24 * 3_600_000,
        }
    }

    fn open() -> OpenSurvey {
        OpenSurvey {
            survey_id: 42,
            call_id: "c1".into(),
            state: "delivered".into(),
            language: None,
            agent: Some("1002".into()),
            queue: Some("sales".into()),
            complaint: false,
            csat: None,
            nps: None,
            nps_asked: false,
            clarified: false,
            comment: None,
        }
    }

    fn ctx(s: OpenSurvey) -> ReplyContext {
        ReplyContext {
            survey: Some(s),
            opted_out: false,
        }
    }

    /// 2026-12-04 12:00 in Shanghai (04:00 UTC): outside quiet hours.
    const NOON: Millis = Millis(1_796_356_800_000);
    /// 2026-12-04 23:00 in Shanghai (15:00 UTC): inside quiet hours.
    const LATE: Millis = Millis(1_796_356_800_000 + 11 * 3_600_000);

    #[test]
    fn score_answers_with_comment() {
        let fx = handle_reply(&policy(false), &ctx(open()), "5 很好", NOON);
        assert_eq!(fx.outcome, "csat");
        assert_eq!(
            fx.update,
            Some(SurveyUpdate::Answered {
                csat: 5,
                comment: Some("很好".into()),
                ask_nps: false
            })
        );
        assert!(fx.texts.is_empty() && fx.task.is_none() && !fx.opt_out);
    }

    #[test]
    fn low_score_opens_a_task_unless_complaint() {
        let fx = handle_reply(&policy(false), &ctx(open()), "2", NOON);
        let task = fx.task.unwrap();
        assert_eq!(
            (task.reason, task.score, task.agent.as_deref(), task.due_at),
            ("low_score", 2, Some("1002"), NOON.plus(24 * 3_600_000))
        );
        let mut s = open();
        s.complaint = true;
        assert!(handle_reply(&policy(false), &ctx(s), "1", NOON)
            .task
            .is_none());
        assert!(handle_reply(&policy(false), &ctx(open()), "3", NOON)
            .task
            .is_none());
    }

    #[test]
    fn nps_is_asked_once_then_recorded() {
        let p = policy(true);
        let fx = handle_reply(&p, &ctx(open()), "4", NOON);
        assert_eq!(fx.texts.len(), 1);
        assert_eq!(fx.texts[0].kind, "nps");
        assert_eq!(fx.texts[0].body, "0-10: recommend Example Co?");
        assert_eq!(fx.texts[0].due_at, NOON);
        let mut s = open();
        s.csat = Some(4);
        s.nps_asked = true;
        s.state = "answered".into();
        let fx = handle_reply(&p, &ctx(s.clone()), "九", NOON);
        assert_eq!(fx.outcome, "nps");
        assert_eq!(
            fx.update,
            Some(SurveyUpdate::Nps {
                nps: 9,
                comment: None
            })
        );
        assert!(fx.texts.is_empty());
        // After the NPS answer: a comment only, no new question.
        s.nps = Some(9);
        let fx = handle_reply(&p, &ctx(s), "8", NOON);
        assert_eq!(fx.outcome, "comment");
        assert!(fx.texts.is_empty());
    }

    #[test]
    fn one_clarification_then_comments() {
        let p = policy(false);
        let fx = handle_reply(&p, &ctx(open()), "what?", NOON);
        assert_eq!(fx.outcome, "unreadable");
        assert_eq!(fx.texts[0].kind, "clarify");
        assert_eq!(
            fx.update,
            Some(SurveyUpdate::Clarified {
                comment: Some("what".into())
            })
        );
        let mut s = open();
        s.clarified = true;
        s.comment = Some("what?".into());
        let fx = handle_reply(&p, &ctx(s.clone()), "7", NOON);
        assert_eq!(fx.outcome, "comment");
        assert!(fx.texts.is_empty());
        assert_eq!(
            fx.update,
            Some(SurveyUpdate::Comment {
                comment: "what? / 7".into()
            })
        );
        // A score after the clarification still answers, keeping the earlier text.
        let fx = handle_reply(&p, &ctx(s), "4 ok", NOON);
        assert_eq!(
            fx.update,
            Some(SurveyUpdate::Answered {
                csat: 4,
                comment: Some("what? / ok".into()),
                ask_nps: false
            })
        );
    }

    #[test]
    fn opt_out_confirms_once() {
        let p = policy(true);
        let fx = handle_reply(&p, &ctx(open()), "退订", NOON);
        assert_eq!(fx.outcome, "opt_out");
        assert!(fx.opt_out);
        assert_eq!(fx.update, Some(SurveyUpdate::OptedOut));
        assert_eq!(fx.texts.len(), 1);
        assert_eq!(fx.texts[0].kind, "opt_out_confirm");
        // Sent at once, even late at night.
        let late = handle_reply(&p, &ctx(open()), "TD", LATE);
        assert_eq!(late.texts[0].due_at, LATE);
        let again = handle_reply(
            &p,
            &ReplyContext {
                survey: None,
                opted_out: true,
            },
            "STOP",
            NOON,
        );
        assert!(!again.opt_out && again.texts.is_empty());
        // Unmatched TD still opts the number out.
        let unmatched = handle_reply(&p, &ReplyContext::default(), "ＴＤ", NOON);
        assert!(unmatched.opt_out && unmatched.survey_id.is_none());
        assert_eq!(unmatched.texts.len(), 1);
    }

    #[test]
    fn unmatched_without_survey() {
        let fx = handle_reply(&policy(false), &ReplyContext::default(), "5", NOON);
        assert_eq!(fx, ReplyEffects::only("unmatched", None));
    }

    #[test]
    fn follow_up_texts_wait_for_quiet_hours_to_end() {
        let p = policy(true);
        let nps = handle_reply(&p, &ctx(open()), "5", LATE);
        let clarify = handle_reply(&p, &ctx(open()), "??", LATE);
        // 08:00 next morning in Shanghai = 00:00 UTC.
        let open_at = Millis(1_796_356_800_000 + 20 * 3_600_000);
        assert_eq!(nps.texts[0].due_at, open_at);
        assert_eq!(clarify.texts[0].due_at, open_at);
    }

    #[test]
    fn extra_text_after_answer_is_a_comment() {
        let mut s = open();
        s.csat = Some(5);
        s.comment = Some("good".into());
        let fx = handle_reply(&policy(false), &ctx(s), "thanks again", NOON);
        assert_eq!(fx.outcome, "comment");
        assert_eq!(
            fx.update,
            Some(SurveyUpdate::Comment {
                comment: "good / thanks again".into()
            })
        );
    }
}
