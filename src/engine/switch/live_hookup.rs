//! Live outputs (`Output::Live`) for the supervisors' read model: per-queue figures when
//! they changed, checked only after inputs that made the ACD report something.

use super::Engine;
use crate::engine::live::LiveEvent;
use crate::engine::Output;

impl Engine {
    /// Emits `QueueFigures` for every queue whose figures differ from the last emitted.
    pub(super) fn emit_live_figures(&mut self) {
        if !self.live.dirty {
            return;
        }
        self.live.dirty = false;
        let mut scratch = std::mem::take(&mut self.live.scratch);
        self.acd.queue_counts(&mut scratch);
        if self.live.last.len() != scratch.len() {
            self.live.last.resize(scratch.len(), Default::default());
            // A fresh engine announces every queue once, even idle ones.
            for (i, counts) in scratch.iter().enumerate() {
                self.out.push_back(Output::Live(LiveEvent::QueueFigures {
                    queue: self.acd.queue_names()[i].clone(),
                    counts: *counts,
                }));
            }
            self.live.last.copy_from_slice(&scratch);
        } else {
            for (i, counts) in scratch.iter().enumerate() {
                if self.live.last[i] != *counts {
                    self.live.last[i] = *counts;
                    self.out.push_back(Output::Live(LiveEvent::QueueFigures {
                        queue: self.acd.queue_names()[i].clone(),
                        counts: *counts,
                    }));
                }
            }
        }
        self.live.scratch = scratch;
    }
}
