//! The sending half of the survey outbox, sans-IO: which due texts to claim, what to send,
//! and what each gateway event means for the stored rows. The shell (`crate::surveys`)
//! claims rows in the store (committed before anything is submitted), hands them here, and
//! carries out the returned actions.
//!
//! - **Claims** are bounded by `max_in_flight` (texts handed to the gateway and not yet
//!   answered) and stop while the SMSC throttles us (`paused_until`).
//! - **Temporary failures** (the gateway used up its own retries) go back to the outbox with
//!   exponential backoff from `backoff_min_ms`; after `max_attempts` claims the text fails.
//!   Permanent refusals fail at once.
//! - **Receipts** are final for DELIVRD (delivered) and UNDELIV/EXPIRED/REJECTD/DELETED/
//!   UNKNOWN (undeliverable); ENROUTE/ACCEPTD are intermediate and change nothing.

use crate::engine::time::Millis;
use crate::sms::{SmsError, SmsEvent, SmsMessage};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxConfig {
    /// Most texts handed to the gateway without an outcome yet.
    pub max_in_flight: usize,
    /// Claims per text (each a full gateway attempt) before it fails.
    pub max_attempts: u32,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// A survey's reply window counted from the real send time (`SurveyPolicy::reply_window_ms`).
    pub reply_window_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            max_in_flight: 100,
            max_attempts: 5,
            backoff_min_ms: 30_000,
            backoff_max_ms: 30 * 60_000,
            reply_window_ms: 48 * 3_600_000,
        }
    }
}

/// A text claimed from the store (state `sending`, attempts already counted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedText {
    pub message_id: u64,
    /// None for an opt-out confirmation to a number without a survey.
    pub survey_id: Option<u64>,
    /// survey, nps, clarify, opt_out_confirm.
    pub kind: String,
    /// E.164; None when retention already dropped it.
    pub number: Option<String>,
    pub body: String,
    /// Claims so far, this one included.
    pub attempts: u32,
}

/// What the shell does, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboxAction {
    /// Hand the text to the gateway.
    Send(SmsMessage),
    /// The SMSC accepted every part: state `sent`; a survey's reply deadline becomes at least
    /// `reply_by` (the window counts from the real send time).
    MarkSent {
        message_id: u64,
        gateway_ids: Vec<String>,
        reply_by: Millis,
    },
    /// Back to `queued`, due at `due_at`.
    Retry {
        message_id: u64,
        due_at: Millis,
        reason: String,
    },
    /// State `failed(reason)`.
    Fail { message_id: u64, reason: String },
    /// A final receipt for one part.
    Receipt {
        gateway_id: String,
        delivered: bool,
        state: String,
    },
    /// A text from a handset, for the reply handling.
    Inbound { from: String, text: String },
}

/// Receipt states that say nothing final yet.
fn intermediate(state: &str) -> bool {
    matches!(state.to_ascii_uppercase().as_str(), "ENROUTE" | "ACCEPTD")
}

#[derive(Debug)]
pub struct Outbox {
    cfg: OutboxConfig,
    /// message id -> claims so far.
    in_flight: HashMap<u64, u32>,
    /// No claims before this (the SMSC throttles us).
    paused_until: Millis,
}

impl Outbox {
    pub fn new(cfg: OutboxConfig) -> Outbox {
        Outbox {
            cfg,
            in_flight: HashMap::new(),
            paused_until: Millis(0),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// How many due texts to claim now.
    pub fn claim_budget(&self, now: Millis) -> usize {
        if now < self.paused_until {
            return 0;
        }
        self.cfg.max_in_flight.saturating_sub(self.in_flight.len())
    }

    /// When claiming may start again after throttling (None: not paused).
    pub fn paused_until(&self, now: Millis) -> Option<Millis> {
        (now < self.paused_until).then_some(self.paused_until)
    }

    fn backoff(&self, attempts: u32) -> u64 {
        let shift = attempts.saturating_sub(1).min(20);
        self.cfg
            .backoff_min_ms
            .saturating_mul(1u64 << shift)
            .min(self.cfg.backoff_max_ms)
    }

    /// Retry later, or fail when the claims are used up.
    fn retry_or_fail(
        &self,
        now: Millis,
        message_id: u64,
        attempts: u32,
        reason: String,
    ) -> OutboxAction {
        if attempts >= self.cfg.max_attempts {
            OutboxAction::Fail {
                message_id,
                reason: format!("{reason} (after {attempts} attempts)"),
            }
        } else {
            OutboxAction::Retry {
                message_id,
                due_at: now.plus(self.backoff(attempts)),
                reason,
            }
        }
    }

    /// Texts just claimed: send each (one without a number fails: nothing to send to).
    pub fn on_claimed(&mut self, texts: Vec<ClaimedText>) -> Vec<OutboxAction> {
        let mut out = Vec::with_capacity(texts.len());
        for t in texts {
            match t.number {
                Some(to) => {
                    self.in_flight.insert(t.message_id, t.attempts);
                    out.push(OutboxAction::Send(SmsMessage {
                        id: t.message_id,
                        to,
                        text: t.body,
                    }));
                }
                None => out.push(OutboxAction::Fail {
                    message_id: t.message_id,
                    reason: "no number (removed by retention)".into(),
                }),
            }
        }
        out
    }

    /// The gateway refused a text before trying (`send` returned an error).
    pub fn on_send_error(&mut self, now: Millis, message_id: u64, err: &SmsError) -> OutboxAction {
        let attempts = self
            .in_flight
            .remove(&message_id)
            .unwrap_or(self.cfg.max_attempts);
        match err {
            SmsError::Stopped => {
                self.retry_or_fail(now, message_id, attempts, "the gateway has stopped".into())
            }
            bad => OutboxAction::Fail {
                message_id,
                reason: bad.to_string(),
            },
        }
    }

    /// A gateway event.
    pub fn on_event(&mut self, now: Millis, ev: SmsEvent) -> Vec<OutboxAction> {
        match ev {
            SmsEvent::Connected { .. } | SmsEvent::Disconnected { .. } => Vec::new(),
            SmsEvent::Submitted { id, gateway_ids } => {
                self.in_flight.remove(&id);
                vec![OutboxAction::MarkSent {
                    message_id: id,
                    gateway_ids,
                    reply_by: now.plus(self.cfg.reply_window_ms),
                }]
            }
            SmsEvent::Failed {
                id,
                permanent,
                reason,
            } => {
                // An id we did not hand over (cannot happen in one process): treat it as used up
                // only if permanent; otherwise one more backoff round.
                let attempts = self.in_flight.remove(&id).unwrap_or(1);
                if permanent {
                    vec![OutboxAction::Fail {
                        message_id: id,
                        reason,
                    }]
                } else {
                    vec![self.retry_or_fail(now, id, attempts, reason)]
                }
            }
            SmsEvent::Throttled { retry_in, .. } => {
                // The gateway keeps the text and retries it itself; we stop feeding it.
                let until = now.plus(retry_in.as_millis() as u64);
                self.paused_until = self.paused_until.max(until);
                Vec::new()
            }
            SmsEvent::DeliveryReceipt {
                gateway_id,
                delivered,
                state,
                ..
            } => {
                if intermediate(&state) {
                    Vec::new()
                } else {
                    vec![OutboxAction::Receipt {
                        gateway_id,
                        delivered,
                        state,
                    }]
                }
            }
            SmsEvent::Inbound { from, text, .. } => vec![OutboxAction::Inbound { from, text }],
        }
    }

    /// Forget texts handed to a gateway that is gone (shutdown): the store still has them
    /// as `sending`, and startup puts them back.
    pub fn forget_in_flight(&mut self) {
        self.in_flight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg() -> OutboxConfig {
        OutboxConfig {
            max_in_flight: 2,
            max_attempts: 3,
            backoff_min_ms: 1_000,
            backoff_max_ms: 3_000,
            reply_window_ms: 10_000,
        }
    }

    fn text(id: u64, attempts: u32) -> ClaimedText {
        ClaimedText {
            message_id: id,
            survey_id: Some(id),
            kind: "survey".into(),
            number: Some("+8613800138000".into()),
            body: "hi".into(),
            attempts,
        }
    }

    fn failed(id: u64) -> SmsEvent {
        SmsEvent::Failed {
            id,
            permanent: false,
            reason: "timeout".into(),
        }
    }

    #[test]
    fn claims_are_bounded_by_the_window() {
        let mut o = Outbox::new(cfg());
        assert_eq!(o.claim_budget(Millis(0)), 2);
        let acts = o.on_claimed(vec![text(1, 1), text(2, 1)]);
        assert!(matches!(&acts[0], OutboxAction::Send(m) if m.id == 1 && m.to == "+8613800138000"));
        assert_eq!(o.claim_budget(Millis(0)), 0);
        let acts = o.on_event(
            Millis(500),
            SmsEvent::Submitted {
                id: 1,
                gateway_ids: vec!["g1".into()],
            },
        );
        assert_eq!(
            acts,
            vec![OutboxAction::MarkSent {
                message_id: 1,
                gateway_ids: vec!["g1".into()],
                reply_by: Millis(10_500)
            }]
        );
        assert_eq!(o.claim_budget(Millis(500)), 1);
    }

    #[test]
    fn temporary_failures_back_off_then_fail() {
        let mut o = Outbox::new(cfg());
        let mut dues = Vec::new();
        for attempt in 1..=3 {
            o.on_claimed(vec![text(7, attempt)]);
            match o.on_event(Millis(100_000), failed(7)).remove(0) {
                OutboxAction::Retry { due_at, .. } => dues.push(due_at.since(Millis(100_000))),
                OutboxAction::Fail { reason, .. } => {
                    assert_eq!(attempt, 3);
                    assert!(reason.contains("after 3 attempts"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
        // 1 s, then 2 s (doubling, capped at 3 s).
        assert_eq!(dues, vec![1_000, 2_000]);
        assert_eq!(o.in_flight(), 0);
    }

    #[test]
    fn backoff_is_capped() {
        let o = Outbox::new(OutboxConfig {
            max_attempts: 50,
            ..cfg()
        });
        assert_eq!(o.backoff(1), 1_000);
        assert_eq!(o.backoff(2), 2_000);
        assert_eq!(o.backoff(3), 3_000);
        assert_eq!(o.backoff(40), 3_000);
    }

    #[test]
    fn permanent_failure_fails_at_once() {
        let mut o = Outbox::new(cfg());
        o.on_claimed(vec![text(3, 1)]);
        let acts = o.on_event(
            Millis(1),
            SmsEvent::Failed {
                id: 3,
                permanent: true,
                reason: "refused".into(),
            },
        );
        assert_eq!(
            acts,
            vec![OutboxAction::Fail {
                message_id: 3,
                reason: "refused".into()
            }]
        );
    }

    #[test]
    fn bad_message_fails_and_stopped_gateway_retries() {
        let mut o = Outbox::new(cfg());
        o.on_claimed(vec![text(1, 1), text(2, 1)]);
        assert!(matches!(
            o.on_send_error(Millis(0), 1, &SmsError::BadDestination("x".into())),
            OutboxAction::Fail { message_id: 1, .. }
        ));
        assert!(matches!(
            o.on_send_error(Millis(0), 2, &SmsError::Stopped),
            OutboxAction::Retry {
                message_id: 2,
                due_at: Millis(1_000),
                ..
            }
        ));
    }

    #[test]
    fn throttling_pauses_claims() {
        let mut o = Outbox::new(cfg());
        o.on_claimed(vec![text(1, 1)]);
        let acts = o.on_event(
            Millis(1_000),
            SmsEvent::Throttled {
                id: 1,
                retry_in: Duration::from_millis(400),
            },
        );
        assert!(acts.is_empty());
        assert_eq!(o.claim_budget(Millis(1_000)), 0);
        assert_eq!(o.paused_until(Millis(1_200)), Some(Millis(1_400)));
        assert_eq!(o.claim_budget(Millis(1_400)), 1);
        // The text stays in flight: the gateway retries it.
        assert_eq!(o.in_flight(), 1);
    }

    #[test]
    fn receipts_final_and_intermediate() {
        let mut o = Outbox::new(cfg());
        let r = |state: &str, delivered| SmsEvent::DeliveryReceipt {
            gateway_id: "g".into(),
            delivered,
            state: state.into(),
            error: None,
        };
        assert!(o.on_event(Millis(0), r("ENROUTE", false)).is_empty());
        assert!(o.on_event(Millis(0), r("ACCEPTD", false)).is_empty());
        assert_eq!(
            o.on_event(Millis(0), r("DELIVRD", true)),
            vec![OutboxAction::Receipt {
                gateway_id: "g".into(),
                delivered: true,
                state: "DELIVRD".into()
            }]
        );
        assert!(matches!(
            &o.on_event(Millis(0), r("UNDELIV", false))[0],
            OutboxAction::Receipt {
                delivered: false,
                ..
            }
        ));
    }

    #[test]
    fn a_text_without_number_fails() {
        let mut o = Outbox::new(cfg());
        let mut t = text(9, 1);
        t.number = None;
        assert!(matches!(
            &o.on_claimed(vec![t])[0],
            OutboxAction::Fail { message_id: 9, .. }
        ));
        assert_eq!(o.in_flight(), 0);
    }
}
