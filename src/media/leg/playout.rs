//! Prompt playout: what a leg plays, and the packet due on its 20 ms grid (absolute
//! deadlines; late polls skip frames instead of bursting).

use super::{Leg, Transmit, FRAME_MS, PACKET_LEN};
use crate::engine::media::{MediaEvent, PromptKey};
use crate::engine::time::Millis;
use crate::media::prompts::{Prompt, PromptSet, FRAME_SAMPLES};
use crate::proto::rtp;
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct Playback {
    play_id: u64,
    prompts: Vec<Arc<Prompt>>,
    looped: bool,
    pub(super) barge_in: bool,
    /// Index into `prompts` and frame within it of the next frame to play.
    prompt: usize,
    frame: usize,
}

impl Playback {
    /// Moves past one frame; false when a non-looped list is exhausted. `prompts` holds only
    /// non-empty prompts, so the loop wraps at most once per call.
    fn advance(&mut self) -> bool {
        self.frame += 1;
        let len = self.prompts.get(self.prompt).map_or(0, |p| p.frames());
        if self.frame >= len {
            self.frame = 0;
            self.prompt += 1;
            if self.prompt >= self.prompts.len() {
                if !self.looped {
                    return false;
                }
                self.prompt = 0;
            }
        }
        true
    }
}

impl Leg {
    /// Starts playing `prompts` in order, replacing (and reporting as interrupted) any play in
    /// progress. Prompts without frames are skipped; an empty list finishes at once. On a
    /// bridged leg the prompt takes the leg's outgoing stream over (hold audio while the other
    /// side holds): nothing relayed or mixed is sent to it until the play ends.
    pub fn play(
        &mut self,
        now: Millis,
        play_id: u64,
        prompts: Vec<Arc<Prompt>>,
        looped: bool,
        barge_in: bool,
    ) {
        self.finish_play(true);
        let prompts: Vec<Arc<Prompt>> = prompts.into_iter().filter(|p| p.frames() > 0).collect();
        if prompts.is_empty() {
            self.events.push_back(MediaEvent::PlayFinished {
                leg: self.id,
                play_id,
                interrupted: false,
            });
            return;
        }
        if self.bridged {
            // The prompt interrupts the relayed stream: its first packet starts a talk-spurt.
            self.talking = false;
        }
        // First frame goes in the first grid slot at or after now (the grid never moves).
        self.next_k = self.next_k.max(self.slot_at_or_after(now));
        self.playback = Some(Playback {
            play_id,
            prompts,
            looped,
            barge_in,
            prompt: 0,
            frame: 0,
        });
    }

    pub fn stop_play(&mut self) {
        self.finish_play(true);
    }

    pub(super) fn finish_play(&mut self, interrupted: bool) {
        if let Some(p) = self.playback.take() {
            self.talking = false;
            // A bridged leg goes back to the relayed stream, anchored anew after the prompt.
            self.relay = None;
            self.events.push_back(MediaEvent::PlayFinished {
                leg: self.id,
                play_id: p.play_id,
                interrupted,
            });
        }
    }

    fn slot_at_or_after(&self, now: Millis) -> u64 {
        now.since(self.grid_start).div_ceil(FRAME_MS)
    }

    pub(super) fn deadline_of(&self, k: u64) -> Millis {
        self.grid_start.plus(k.saturating_mul(FRAME_MS))
    }

    /// The packet due at `now`, if any. Call once per frame slot (more often is harmless).
    pub fn poll_transmit(&mut self, now: Millis) -> Option<Transmit> {
        if self.closed || self.playback.is_none() {
            return None;
        }
        if now < self.deadline_of(self.next_k) {
            return None;
        }
        // The slot that `now` falls in; anything before it is too late to send.
        let due_k = now.since(self.grid_start) / FRAME_MS;
        if due_k > self.next_k {
            let skipped = due_k - self.next_k;
            self.stats.late += skipped;
            // A looped list repeats, so skipping whole loops changes nothing; this bounds the
            // work after a long stall to one pass over the list.
            let total: u64 = self
                .playback
                .as_ref()
                .map_or(0, |p| p.prompts.iter().map(|pr| pr.frames() as u64).sum());
            let looped = self.playback.as_ref().is_some_and(|p| p.looped);
            let steps = if looped && total > 0 {
                skipped % total
            } else {
                skipped.min(total)
            };
            for _ in 0..steps {
                if !self.advance_playback() {
                    self.next_k = due_k;
                    return None;
                }
            }
            self.next_k = due_k;
        }
        let k = self.next_k;
        self.next_k += 1;
        let dest = self.destination().filter(|_| self.send);
        let codec = self.codec;
        let packet = match (dest, self.playback.as_ref()) {
            (Some(dest), Some(p)) => {
                let frame = p
                    .prompts
                    .get(p.prompt)
                    .and_then(|pr| pr.frame(codec, p.frame));
                frame.map(|frame| {
                    let mut packet = [0u8; PACKET_LEN];
                    let mut head = [0u8; rtp::HEADER_LEN];
                    let ts = self
                        .ts_base
                        .wrapping_add((k as u32).wrapping_mul(FRAME_SAMPLES as u32));
                    rtp::write_header(
                        &mut head,
                        !self.talking,
                        codec.payload_type(),
                        self.seq,
                        ts,
                        self.ssrc,
                    );
                    packet[..rtp::HEADER_LEN].copy_from_slice(&head);
                    packet[rtp::HEADER_LEN..].copy_from_slice(frame);
                    Transmit { dest, packet }
                })
            }
            _ => None,
        };
        if let Some(tx) = &packet {
            let ts = u32::from_be_bytes([tx.packet[4], tx.packet[5], tx.packet[6], tx.packet[7]]);
            self.ts_end = Some(ts.wrapping_add(FRAME_SAMPLES as u32));
            self.seq = self.seq.wrapping_add(1);
            self.stats.sent += 1;
            self.talking = true;
        }
        self.advance_playback();
        packet
    }

    /// Moves playback one frame on; reports the natural end. False when playback ended.
    fn advance_playback(&mut self) -> bool {
        let more = self.playback.as_mut().is_some_and(Playback::advance);
        if !more {
            self.finish_play(false);
        }
        more
    }
}

/// Looks up prompt keys; unknown keys are skipped (config validation checks them up front).
pub fn resolve(prompts: &PromptSet, keys: &[PromptKey]) -> Vec<Arc<Prompt>> {
    keys.iter()
        .filter_map(|k| prompts.get(k).cloned())
        .collect()
}
