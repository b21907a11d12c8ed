//! A worker's side of supervisor monitoring (`media::mix`): starting, re-moding and ending a
//! conference of three legs it owns (`MediaHandle::send` brings them to one worker first).

use super::worker::Worker;
use crate::engine::media::{LegId, MonitorMode};

impl Worker {
    /// `MediaCommand::Monitor`: legs are caller, agent, supervisor.
    pub(super) fn monitor(&mut self, legs: [LegId; 3], mode: MonitorMode) {
        let mut ix = [0usize; 3];
        for (i, leg) in legs.iter().enumerate() {
            let Some(&idx) = self.index.get(leg) else {
                tracing::debug!(leg, "monitor of a leg this worker does not have");
                return;
            };
            ix[i] = idx;
        }
        // The supervisor's leg leaves any bridge of its own (never the monitored one).
        if self.slot(ix[2]).and_then(|s| s.peer).is_some() {
            self.unbridge(ix[2], None);
        }
        let Some(released) = self.mixer.start(legs, mode) else {
            tracing::debug!(?legs, "monitor needs three different legs");
            return;
        };
        for leg in released {
            if let Some(&i) = self.index.get(&leg) {
                self.release_from_mix(i);
            }
        }
        for i in ix {
            if let Some(s) = self.slot(i) {
                s.leg.enter_mix();
            }
            self.emit_leg_events(i);
        }
        tracing::debug!(?legs, mode = mode.as_str(), "monitoring starts");
    }

    /// Ends the conference the leg at `idx` is in (if any); its legs go back to relay (still
    /// bridged) or idle.
    pub(super) fn end_mix(&mut self, idx: usize) {
        if self.mixer.is_empty() {
            return;
        }
        let Some(id) = self.slot(idx).map(|s| s.leg.id()) else {
            return;
        };
        let Some(legs) = self.mixer.end(id) else {
            return;
        };
        for leg in legs {
            if let Some(&i) = self.index.get(&leg) {
                self.release_from_mix(i);
            }
        }
        tracing::debug!(?legs, "monitoring ends");
    }

    fn release_from_mix(&mut self, idx: usize) {
        if let Some(s) = self.slot(idx) {
            if s.peer.is_some() {
                s.leg.leave_mix();
            } else {
                s.leg.unbridge();
            }
        }
    }
}
