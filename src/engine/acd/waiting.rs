//! A call waiting in a queue: entering it, relaxation steps, announcements with the
//! expected wait, and leaving it at max wait (overflow, or the closing prompt and a callback).

use super::queue::MaxWaitPolicy;
use super::select::WaitKey;
use super::timers::Timer;
use super::{Acd, AcdAction, AcdEvent, Call, CallState, ExitReason, ExitThen};
use crate::engine::Millis;
use std::cmp::Reverse;

impl Acd {
    /// Puts a (Waiting-state) call into queue `q` as a new entry and arms its timers.
    pub(super) fn enter_queue(&mut self, now: Millis, call: u64, q: usize) {
        self.enter_queue_ranked(now, call, q, now);
    }

    /// `enter_queue`, ranked in the queue's order (and relaxed) as if it had entered at
    /// `ranked_since`: a caller whose agent vanished keeps the wait they already had.
    /// Announcements and max wait count from `now` (max wait would otherwise end the call
    /// at once after a long conversation).
    pub(super) fn enter_queue_ranked(
        &mut self,
        now: Millis,
        call: u64,
        q: usize,
        ranked_since: Millis,
    ) {
        self.seq += 1;
        let seq = self.seq;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.queue = q;
        c.key = WaitKey {
            priority: Reverse(c.priority),
            entered_at: ranked_since,
            seq,
        };
        c.step = 0;
        c.refused.clear();
        c.max_wait_due = false;
        c.state = CallState::Waiting;
        self.rt[q].waiting.insert(&c.language, c.step, c.key, call);
        self.cancel_wait_timers(call);
        let spec = &self.specs[q];
        self.events.push_back(AcdEvent::Queued {
            call,
            queue: spec.name.clone(),
            at: now,
        });
        self.actions.push_back(AcdAction::PlayHold {
            call,
            prompt: spec.hold_prompt.clone(),
        });
        if let Some(r) = spec.relax.first() {
            let at = ranked_since.plus(r.after_ms).max(now);
            self.timers.set(Timer::Relax(call), at);
        }
        if spec.announce_every_ms > 0 {
            self.timers
                .set(Timer::Announce(call), now.plus(spec.announce_every_ms));
        }
        if spec.max_wait_ms > 0 {
            self.timers
                .set(Timer::MaxWait(call), now.plus(spec.max_wait_ms));
        }
        self.route_call(now, call);
        self.check_staffed(now, call);
    }

    pub(super) fn cancel_wait_timers(&mut self, call: u64) {
        self.timers.cancel(Timer::Relax(call));
        self.timers.cancel(Timer::Announce(call));
        self.timers.cancel(Timer::MaxWait(call));
        self.timers.cancel(Timer::NoAgents(call));
    }

    pub(super) fn unwait(&mut self, call: u64) {
        if let Some(c) = self.calls.get(&call) {
            self.rt[c.queue]
                .waiting
                .remove(&c.language, c.step, c.key, call);
        }
    }

    pub(super) fn forget_call(&mut self, call: u64) -> Option<Call> {
        self.cancel_wait_timers(call);
        self.timers.cancel(Timer::Ring(call));
        self.calls.remove(&call)
    }

    pub(super) fn relax(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let spec = &self.specs[c.queue];
        if c.step < spec.relax.len() {
            // Waiting calls live in a bucket per step: move it.
            let w = &mut self.rt[c.queue].waiting;
            let moved = w.remove(&c.language, c.step, c.key, call);
            c.step += 1;
            if moved {
                w.insert(&c.language, c.step, c.key, call);
            }
        }
        if let Some(next) = spec.relax.get(c.step) {
            let at = c.key.entered_at.plus(next.after_ms);
            self.timers.set(Timer::Relax(call), at.max(now));
        }
        if c.state == CallState::Waiting {
            self.route_call(now, call);
        }
    }

    pub(super) fn announce(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let spec = &self.specs[c.queue];
        if spec.announce_every_ms > 0 {
            self.timers
                .set(Timer::Announce(call), now.plus(spec.announce_every_ms));
        }
        if c.state != CallState::Waiting {
            return;
        }
        let position = self.rt[c.queue].waiting.position(c.key, call);
        let expected_wait_s = self.estimate_s(c.queue, position);
        if expected_wait_s >= spec.announce_min_wait_s {
            self.actions.push_back(AcdAction::Announce {
                call,
                position,
                expected_wait_s,
            });
        }
    }

    pub(super) fn estimate_s(&self, q: usize, position: usize) -> u64 {
        let rt = &self.rt[q];
        let aht = rt.handle.average_ms(self.specs[q].default_handle_time_ms);
        let staffed = rt.staffed.max(1) as u64;
        aht.saturating_mul(position as u64) / staffed / 1000
    }

    pub(super) fn max_wait(&mut self, now: Millis, call: u64) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match c.state {
            CallState::Connected(_) => return,
            CallState::Offering(_) => {
                c.max_wait_due = true;
                return;
            }
            CallState::Waiting => {}
        }
        let policy = self.specs[c.queue].on_max_wait.clone();
        match policy {
            MaxWaitPolicy::Overflow { queue } => {
                self.exit_to_overflow(now, call, ExitReason::MaxWait, queue)
            }
            MaxWaitPolicy::Closing { prompt } => {
                self.exit_closing(now, call, ExitReason::MaxWait, prompt)
            }
        }
    }

    /// A waiting call moves to `queue` (which starts its own timers and checks).
    pub(super) fn exit_to_overflow(
        &mut self,
        now: Millis,
        call: u64,
        reason: ExitReason,
        queue: String,
    ) {
        self.unwait(call);
        self.actions.push_back(AcdAction::QueueExit {
            call,
            reason,
            then: ExitThen::Overflow {
                queue: queue.clone(),
            },
        });
        self.events.push_back(AcdEvent::QueueExit {
            call,
            at: now,
            reason,
            overflow_to: Some(queue.clone()),
        });
        if let Some(&q) = self.q_index.get(&queue) {
            self.enter_queue(now, call, q);
        }
    }

    /// A waiting call leaves the ACD: closing prompt and a callback request.
    pub(super) fn exit_closing(
        &mut self,
        now: Millis,
        call: u64,
        reason: ExitReason,
        prompt: String,
    ) {
        self.unwait(call);
        self.forget_call(call);
        self.actions.push_back(AcdAction::QueueExit {
            call,
            reason,
            then: ExitThen::Closing {
                prompt,
                callback: true,
            },
        });
        self.events.push_back(AcdEvent::QueueExit {
            call,
            at: now,
            reason,
            overflow_to: None,
        });
    }
}
