//! The IVR hookup: media events (plays finished, digits, RTP timeouts) drive the caller's
//! IVR session, and its actions become prompts, queueing or the end of the call.

use super::Engine;
use crate::engine::call::{CallState, CallTimer};
use crate::engine::ivr::IvrAction;
use crate::engine::media::{MediaCommand, MediaEvent};
use crate::engine::record::{EndedBy, IvrOutcome, Record};
use crate::engine::time::Millis;
use crate::engine::Output;

impl Engine {
    pub(super) fn on_media(&mut self, now: Millis, ev: MediaEvent) {
        if let MediaEvent::RecordingFinished {
            leg,
            path,
            ok,
            reason,
        } = &ev
        {
            self.on_recording_finished(now, *leg, path, *ok, reason.as_deref());
            return;
        }
        match ev {
            MediaEvent::WebRtcOffer {
                leg,
                fork,
                sdp,
                relay,
            } => {
                self.on_webrtc_offer(now, leg, fork, sdp, relay);
                return;
            }
            MediaEvent::WebRtcAccepted { leg, sdp, relay } => {
                self.on_webrtc_accepted(now, leg, sdp, relay);
                return;
            }
            MediaEvent::WebRtcFailed { leg, fork, reason } => {
                if !self.on_webrtc_caller_failed(now, leg, &reason) {
                    self.on_webrtc_failed(now, leg, fork, &reason);
                }
                return;
            }
            _ => {}
        }
        let leg = match &ev {
            MediaEvent::OpenFailed { leg, .. }
            | MediaEvent::Digit { leg, .. }
            | MediaEvent::PlayFinished { leg, .. }
            | MediaEvent::Inactive { leg, .. }
            | MediaEvent::RecordingFinished { leg, .. }
            | MediaEvent::WebRtcOffer { leg, .. }
            | MediaEvent::WebRtcAccepted { leg, .. }
            | MediaEvent::WebRtcFailed { leg, .. } => *leg,
        };
        if let MediaEvent::Digit { digit, .. } = ev {
            if self.monitor_leg_digit(now, leg, digit) {
                return;
            }
        }
        let failed = matches!(ev, MediaEvent::OpenFailed { .. });
        let inactive = matches!(ev, MediaEvent::Inactive { .. });
        if self.on_agent_media(now, leg, failed, inactive) {
            return;
        }
        let Some(&call_key) = self.by_leg.get(&leg) else {
            return;
        };
        let span = self.calls.get(&call_key).map(|c| c.span.clone());
        let _entered = span.as_ref().map(|s| s.enter());
        match ev {
            MediaEvent::OpenFailed { reason, .. } => {
                tracing::error!(reason = %reason, "media leg failed to open");
                let Some(call) = self.calls.get(&call_key) else {
                    return;
                };
                if call.state == CallState::Ringing {
                    self.refuse_ringing(now, call_key, 503, "Service Unavailable", Some(5));
                    let why = format!("error: media: {reason}");
                    self.end_call_with_status(now, call_key, EndedBy::System, &why, 503, false);
                } else {
                    let why = format!("error: media: {reason}");
                    self.end_call(now, call_key, EndedBy::System, &why, true);
                }
            }
            MediaEvent::Digit { digit, at, .. } => {
                self.on_digit(at.min(now), call_key, digit, true)
            }
            MediaEvent::PlayFinished {
                play_id,
                interrupted,
                ..
            } => {
                let Some(call) = self.calls.get_mut(&call_key) else {
                    return;
                };
                if call.current_play.map(|(p, _)| p) == Some(play_id) {
                    call.current_play = None;
                }
                if call.goodbye_play == Some(play_id) {
                    let reason = call.goodbye_reason;
                    self.end_call(now, call_key, EndedBy::System, reason, true);
                    return;
                }
                if self.on_system_play_finished(now, call_key, play_id) {
                    return;
                }
                let Some(call) = self.calls.get_mut(&call_key) else {
                    return;
                };
                if let Some(ivr) = call.ivr.as_mut() {
                    ivr.on_play_finished(now, play_id, interrupted);
                }
                self.drive_ivr(now, call_key);
            }
            MediaEvent::Inactive { .. } => {
                tracing::warn!("no RTP from the caller: ending the call");
                self.end_call(now, call_key, EndedBy::System, "rtp_timeout", true);
            }
            // handled above, call or no call
            MediaEvent::RecordingFinished { .. }
            | MediaEvent::WebRtcOffer { .. }
            | MediaEvent::WebRtcAccepted { .. }
            | MediaEvent::WebRtcFailed { .. } => {}
        }
    }

    /// RFC 4733 and SIP INFO digits take this one path.
    pub(super) fn on_digit(&mut self, now: Millis, call_key: u64, digit: char, from_rtp: bool) {
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        if call.state != CallState::Answered || call.goodbye_play.is_some() {
            return;
        }
        if self.monitor_digit(now, call_key, digit) {
            return;
        }
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        // The media plane cuts barge-in prompts itself on RTP digits; INFO digits reach it
        // only through us.
        if !from_rtp {
            if let Some((_, true)) = call.current_play {
                let leg = call.leg;
                self.out
                    .push_back(Output::Media(MediaCommand::StopPlay { leg }));
            }
        }
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        if let Some(ivr) = call.ivr.as_mut() {
            ivr.on_digit(now, digit);
        }
        self.drive_ivr(now, call_key);
    }

    pub(super) fn drive_ivr(&mut self, now: Millis, call_key: u64) {
        let mut actions = Vec::new();
        let deadline;
        {
            let Some(call) = self.calls.get_mut(&call_key) else {
                return;
            };
            if call.ivr_left {
                return;
            }
            let Some(ivr) = call.ivr.as_mut() else {
                return;
            };
            while let Some(a) = ivr.poll_action() {
                actions.push(a);
            }
            deadline = ivr.deadline();
        }
        match deadline {
            Some(at) => self.set_timer(call_key, CallTimer::Ivr, at),
            None => self.cancel_timer(call_key, CallTimer::Ivr),
        }
        for action in actions {
            let Some(call) = self.calls.get_mut(&call_key) else {
                return;
            };
            let (leg, call_id) = (call.leg, call.id.clone());
            match action {
                IvrAction::Play {
                    play_id,
                    prompts,
                    barge_in,
                } => {
                    call.current_play = Some((play_id, barge_in));
                    self.media(MediaCommand::Play {
                        leg,
                        play_id,
                        prompts,
                        looped: false,
                        barge_in,
                    });
                }
                IvrAction::StopPlay => {
                    call.current_play = None;
                    self.media(MediaCommand::StopPlay { leg });
                }
                IvrAction::Step {
                    at,
                    node,
                    kind,
                    digits,
                    detail,
                } => {
                    let seq = call.ivr_seq;
                    call.ivr_seq += 1;
                    // Bounded: a caller looping in a menu must not grow the call forever.
                    if call.ivr_path.len() < 32 {
                        call.ivr_path.push(match &digits {
                            Some(d) => format!("{node}:{d}"),
                            None => node.clone(),
                        });
                    }
                    tracing::debug!(call = %call_id, node = %node, kind, "ivr step");
                    self.persist(Record::IvrStep {
                        call_id,
                        seq,
                        at,
                        node,
                        kind: kind.to_string(),
                        digits,
                        detail,
                    });
                }
                IvrAction::Variable { name, value } => {
                    self.persist(Record::CallVariable {
                        call_id,
                        at: now,
                        name,
                        value,
                    });
                }
                IvrAction::Queue { queue } => {
                    self.enqueue_call(now, call_key, queue);
                    return;
                }
                IvrAction::HangUp { outcome } => {
                    self.leave_ivr(now, call_key, outcome);
                    self.end_call(now, call_key, EndedBy::System, "ivr_hangup", true);
                    return;
                }
            }
        }
    }

    pub(super) fn leave_ivr(&mut self, now: Millis, call_key: u64, outcome: IvrOutcome) {
        let Some(call) = self.calls.get_mut(&call_key) else {
            return;
        };
        if call.ivr.is_none() || call.ivr_left {
            return;
        }
        call.ivr_left = true;
        call.service.ivr_outcome = Some(outcome);
        let call_id = call.id.clone();
        self.cancel_timer(call_key, CallTimer::Ivr);
        self.persist(Record::IvrLeft {
            call_id,
            at: now,
            outcome,
        });
    }
}
