//! Supervisor monitoring in the media plane, sans-IO: who hears whom, and the 16-bit linear
//! mix each listener gets (issue 10 item 5).
//!
//! A [`Conference`] joins three legs: the caller, the agent and the supervisor. Audio a member
//! sends is decoded to linear 16-bit once and appended to one sample queue per listener that
//! may hear it in the current [`MonitorMode`] ([`hears`]). Every listener is served on its own
//! 20 ms grid: [`Conference::pull`] takes one frame (160 samples) from each queue it hears,
//! sums them in 32 bits and saturates to 16 bits; the runtime encodes that in the listener's
//! codec and sends it as the leg's own next packet. Nobody ever hears themselves. A listener
//! who hears one source only ([`sole_source`]: caller and agent in listen mode, the caller in
//! whisper mode) is not mixed: the runtime keeps relaying that source's packets over the
//! caller-agent bridge, so silent monitoring adds no delay, no transcoding and no lost
//! RFC 4733 digits to the call it watches.
//!
//! Jitter: a queue starts to give samples only once it holds [`PRIME`] samples (two frames,
//! 40 ms), and primes again after it ran dry, so packets that arrive a little early or late
//! against the listener's grid do not cut the audio into pieces. A queue longer than [`CAP`]
//! loses its oldest samples (clock drift between phones cannot make the delay grow).
//!
//! [`Mixer`] holds a worker's conferences and a decode buffer (no allocation per packet once
//! the buffers have grown to a packet's size).

use crate::engine::media::{Codec, LegId, MonitorMode};
use crate::proto::g711;
use std::collections::VecDeque;

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;
/// A queue gives samples once it holds this many (40 ms of buffering).
pub const PRIME: usize = 2 * FRAME;
/// A queue never holds more than this (160 ms); the oldest samples go first.
pub const CAP: usize = 8 * FRAME;

/// A member's part in a monitored call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Caller = 0,
    Agent = 1,
    Supervisor = 2,
}

pub const ROLES: [Role; 3] = [Role::Caller, Role::Agent, Role::Supervisor];

/// Whether `listener` hears `source` in `mode` (issue 10: listen: the supervisor hears caller
/// and agent; whisper: the agent hears caller and supervisor, the caller hears the agent only;
/// barge: each hears the other two). Caller and agent always hear each other; the supervisor
/// always hears both; nobody hears themselves.
pub fn hears(mode: MonitorMode, listener: Role, source: Role) -> bool {
    use Role::*;
    if listener == source {
        return false;
    }
    match (mode, listener, source) {
        (_, Supervisor, _) => true,
        (_, Caller, Agent) | (_, Agent, Caller) => true,
        (MonitorMode::Listen, _, Supervisor) => false,
        (MonitorMode::Whisper, Agent, Supervisor) => true,
        (MonitorMode::Whisper, Caller, Supervisor) => false,
        (MonitorMode::Barge, _, Supervisor) => true,
        _ => false,
    }
}

/// The only source `listener` hears in `mode`, if it hears exactly one (the caller in listen
/// and whisper, the agent in listen). That audio needs no mixing: the runtime relays it packet
/// by packet over the caller-agent bridge, so a silently monitored call keeps its delay (no
/// jitter buffer), its codec bytes and its RFC 4733 digits.
pub fn sole_source(mode: MonitorMode, listener: Role) -> Option<Role> {
    let mut heard = ROLES.into_iter().filter(|s| hears(mode, listener, *s));
    match (heard.next(), heard.next()) {
        (Some(s), None) => Some(s),
        _ => None,
    }
}

/// Saturating sum of `src` into `acc` (i32 accumulators, so three sources never overflow).
pub fn accumulate(acc: &mut [i32; FRAME], src: impl Iterator<Item = i16>) {
    for (a, s) in acc.iter_mut().zip(src) {
        *a += i32::from(s);
    }
}

/// Clamps 32-bit sums to the 16-bit range.
pub fn saturate(acc: &[i32; FRAME], out: &mut [i16; FRAME]) {
    for (o, a) in out.iter_mut().zip(acc) {
        *o = (*a).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
    }
}

#[derive(Clone, Debug, Default)]
struct Queue {
    samples: VecDeque<i16>,
    primed: bool,
}

impl Queue {
    fn push(&mut self, samples: &[i16]) {
        self.samples.extend(samples.iter().copied());
        let excess = self.samples.len().saturating_sub(CAP);
        if excess > 0 {
            self.samples.drain(..excess);
        }
        if self.samples.len() >= PRIME {
            self.primed = true;
        }
    }

    /// Adds up to one frame into `acc`; true when it gave any samples.
    fn take_into(&mut self, acc: &mut [i32; FRAME]) -> bool {
        if !self.primed {
            return false;
        }
        let n = self.samples.len().min(FRAME);
        accumulate(acc, self.samples.drain(..n));
        if self.samples.is_empty() {
            self.primed = false;
        }
        n > 0
    }

    fn clear(&mut self) {
        self.samples.clear();
        self.primed = false;
    }
}

/// One monitored call: three legs and a queue per (listener, source).
#[derive(Clone, Debug)]
pub struct Conference {
    legs: [LegId; 3],
    mode: MonitorMode,
    queues: [[Queue; 3]; 3],
}

impl Conference {
    /// `legs` in [`ROLES`] order: caller, agent, supervisor.
    pub fn new(legs: [LegId; 3], mode: MonitorMode) -> Conference {
        Conference {
            legs,
            mode,
            queues: Default::default(),
        }
    }

    pub fn legs(&self) -> [LegId; 3] {
        self.legs
    }

    pub fn mode(&self) -> MonitorMode {
        self.mode
    }

    pub fn role(&self, leg: LegId) -> Option<Role> {
        ROLES.into_iter().find(|r| self.legs[*r as usize] == leg)
    }

    /// Switches the mode; queues of pairs that no longer hear each other, or that the relay
    /// serves now, are emptied.
    pub fn set_mode(&mut self, mode: MonitorMode) {
        self.mode = mode;
        for l in ROLES {
            let relayed = sole_source(mode, l).is_some();
            for s in ROLES {
                if relayed || !hears(mode, l, s) {
                    self.queues[l as usize][s as usize].clear();
                }
            }
        }
    }

    /// Linear audio `source` sent, for every listener that hears it in the mix (not those
    /// the relay serves: [`sole_source`]).
    pub fn push(&mut self, source: Role, samples: &[i16]) {
        for l in ROLES {
            if hears(self.mode, l, source) && sole_source(self.mode, l).is_none() {
                self.queues[l as usize][source as usize].push(samples);
            }
        }
    }

    /// The next 20 ms frame `listener` hears, into `out`; false when no source it hears had
    /// audio (nothing to send).
    pub fn pull(&mut self, listener: Role, out: &mut [i16; FRAME]) -> bool {
        if sole_source(self.mode, listener).is_some() {
            return false;
        }
        let mut acc = [0i32; FRAME];
        let mut any = false;
        for s in ROLES {
            if hears(self.mode, listener, s) {
                any |= self.queues[listener as usize][s as usize].take_into(&mut acc);
            }
        }
        saturate(&acc, out);
        any
    }
}

/// A media worker's conferences.
#[derive(Debug, Default)]
pub struct Mixer {
    confs: Vec<Conference>,
    decoded: Vec<i16>,
}

impl Mixer {
    pub fn is_empty(&self) -> bool {
        self.confs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.confs.len()
    }

    /// True when `leg` is in a conference (its audio goes to the mix, not the relay).
    pub fn contains(&self, leg: LegId) -> bool {
        !self.confs.is_empty() && self.confs.iter().any(|c| c.role(leg).is_some())
    }

    /// True when `listener` hears only `source` (both in one conference): `source`'s packets
    /// are relayed to it as over a plain bridge instead of being mixed.
    pub fn relays(&self, source: LegId, listener: LegId) -> bool {
        self.conference(source)
            .is_some_and(|c| match (c.role(source), c.role(listener)) {
                (Some(s), Some(l)) => sole_source(c.mode, l) == Some(s),
                _ => false,
            })
    }

    pub fn conference(&self, leg: LegId) -> Option<&Conference> {
        self.confs.iter().find(|c| c.role(leg).is_some())
    }

    /// Starts (or re-modes) the conference of `legs` (caller, agent, supervisor). The same
    /// three legs: the mode changes, the audio queued stays. Otherwise any conference holding
    /// one of the legs ends first; their legs are returned (except the three joining) so the
    /// runtime can put them back to relay or idle. Three distinct legs are required; None
    /// (and nothing changes) otherwise.
    pub fn start(&mut self, legs: [LegId; 3], mode: MonitorMode) -> Option<Vec<LegId>> {
        if legs[0] == legs[1] || legs[0] == legs[2] || legs[1] == legs[2] {
            return None;
        }
        if let Some(c) = self.confs.iter_mut().find(|c| c.legs == legs) {
            c.set_mode(mode);
            return Some(Vec::new());
        }
        let mut released = Vec::new();
        for leg in legs {
            if let Some(old) = self.end(leg) {
                released.extend(old.into_iter().filter(|l| !legs.contains(l)));
            }
        }
        self.confs.push(Conference::new(legs, mode));
        Some(released)
    }

    /// Ends the conference `leg` is in; its legs (caller, agent, supervisor).
    pub fn end(&mut self, leg: LegId) -> Option<[LegId; 3]> {
        let i = self.confs.iter().position(|c| c.role(leg).is_some())?;
        Some(self.confs.swap_remove(i).legs)
    }

    /// Audio (G.711 in `codec`) that `leg` sent. Ignored when the leg is in no conference.
    pub fn push(&mut self, leg: LegId, codec: Codec, payload: &[u8]) {
        let Some(c) = self.confs.iter_mut().find(|c| c.role(leg).is_some()) else {
            return;
        };
        let Some(role) = c.role(leg) else { return };
        self.decoded.clear();
        g711::decode(codec, payload, &mut self.decoded);
        c.push(role, &self.decoded);
    }

    /// The frame `leg` hears next (see [`Conference::pull`]).
    pub fn pull(&mut self, leg: LegId, out: &mut [i16; FRAME]) -> bool {
        let Some(c) = self.confs.iter_mut().find(|c| c.role(leg).is_some()) else {
            return false;
        };
        let Some(role) = c.role(leg) else {
            return false;
        };
        c.pull(role, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MonitorMode::*;
    use Role::*;

    #[test]
    fn who_hears_whom_is_exactly_the_issue_text() {
        let table = |m| {
            let mut v = Vec::new();
            for l in ROLES {
                for s in ROLES {
                    if hears(m, l, s) {
                        v.push((l, s));
                    }
                }
            }
            v
        };
        assert_eq!(
            table(Listen),
            vec![
                (Caller, Agent),
                (Agent, Caller),
                (Supervisor, Caller),
                (Supervisor, Agent)
            ]
        );
        assert_eq!(
            table(Whisper),
            vec![
                (Caller, Agent),
                (Agent, Caller),
                (Agent, Supervisor),
                (Supervisor, Caller),
                (Supervisor, Agent)
            ]
        );
        assert_eq!(
            table(Barge),
            vec![
                (Caller, Agent),
                (Caller, Supervisor),
                (Agent, Caller),
                (Agent, Supervisor),
                (Supervisor, Caller),
                (Supervisor, Agent)
            ]
        );
    }

    fn frame(v: i16) -> Vec<i16> {
        vec![v; FRAME]
    }

    #[test]
    fn mixes_sum_with_saturation_per_listener() {
        let mut c = Conference::new([1, 2, 3], Barge);
        for _ in 0..2 {
            c.push(Caller, &frame(1000));
            c.push(Agent, &frame(-300));
            c.push(Supervisor, &frame(32_000));
        }
        let mut out = [0i16; FRAME];
        assert!(c.pull(Caller, &mut out));
        assert_eq!(out[0], 31_700, "agent + supervisor");
        assert!(c.pull(Agent, &mut out));
        assert_eq!(out[7], i16::MAX, "caller + supervisor saturates");
        assert!(c.pull(Supervisor, &mut out));
        assert_eq!(out[159], 700);
        // Negative saturation.
        let mut c = Conference::new([1, 2, 3], Barge);
        for _ in 0..2 {
            c.push(Caller, &frame(-30_000));
            c.push(Agent, &frame(-30_000));
        }
        assert!(c.pull(Supervisor, &mut out));
        assert_eq!(out[0], i16::MIN);
    }

    #[test]
    fn listen_and_whisper_keep_the_supervisor_from_whom_they_must() {
        let mut c = Conference::new([1, 2, 3], Listen);
        let mut out = [0i16; FRAME];
        for _ in 0..2 {
            c.push(Supervisor, &frame(5000));
        }
        assert!(!c.pull(Caller, &mut out));
        assert!(!c.pull(Agent, &mut out));
        assert_eq!(out, [0; FRAME]);
        c.set_mode(Whisper);
        for _ in 0..2 {
            c.push(Supervisor, &frame(5000));
        }
        assert!(
            !c.pull(Caller, &mut out),
            "the caller never hears a whisper"
        );
        assert!(c.pull(Agent, &mut out));
        assert_eq!(out[0], 5000);
    }

    #[test]
    fn queues_prime_then_drain_and_never_grow_past_the_cap() {
        let mut c = Conference::new([1, 2, 3], Listen);
        let mut out = [0i16; FRAME];
        c.push(Caller, &frame(100));
        assert!(!c.pull(Supervisor, &mut out), "one frame is not primed yet");
        c.push(Caller, &frame(200));
        assert!(c.pull(Supervisor, &mut out));
        assert_eq!(out[0], 100);
        assert!(c.pull(Supervisor, &mut out));
        assert_eq!(out[0], 200);
        assert!(!c.pull(Supervisor, &mut out), "dry: primes again");
        // Odd packet sizes (10 ms) still come out as 20 ms frames.
        for i in 0..4 {
            c.push(Caller, &[i; 80]);
        }
        assert!(c.pull(Supervisor, &mut out));
        assert_eq!((out[0], out[80]), (0, 1));
        // A flood keeps only the newest CAP samples.
        let mut frames = 0;
        let mut first = None;
        let mut agent_only = Conference::new([1, 2, 3], Listen);
        for i in 0..100 {
            agent_only.push(Agent, &frame(i));
        }
        while agent_only.pull(Supervisor, &mut out) {
            first.get_or_insert(out[0]);
            frames += 1;
        }
        assert_eq!(frames, CAP / FRAME);
        assert_eq!(first, Some(100 - (CAP / FRAME) as i16));
    }

    #[test]
    fn only_listeners_of_two_sources_are_mixed() {
        use MonitorMode::*;
        // Listen: caller and agent hear each other alone (relayed); whisper: the caller
        // hears the agent alone; barge: everyone hears two.
        let sole = |m, l| sole_source(m, l);
        assert_eq!(sole(Listen, Caller), Some(Agent));
        assert_eq!(sole(Listen, Agent), Some(Caller));
        assert_eq!(sole(Listen, Supervisor), None);
        assert_eq!(sole(Whisper, Caller), Some(Agent));
        assert_eq!(sole(Whisper, Agent), None);
        for l in ROLES {
            assert_eq!(sole(Barge, l), None);
        }
        // Switching to a mode where the relay serves a listener drops its queued mix, so a
        // later switch back does not replay stale audio.
        let mut c = Conference::new([1, 2, 3], Barge);
        for _ in 0..4 {
            c.push(Agent, &frame(700));
        }
        c.set_mode(Listen);
        c.set_mode(Barge);
        let mut out = [0i16; FRAME];
        assert!(!c.pull(Caller, &mut out), "nothing stale for the caller");
        assert!(c.pull(Supervisor, &mut out), "the supervisor's queue stays");
    }

    #[test]
    fn mixer_decodes_g711_routes_by_leg_and_restarts_conferences() {
        let mut m = Mixer::default();
        assert!(m.is_empty());
        assert_eq!(m.start([1, 1, 2], Listen), None, "legs must differ");
        assert_eq!(m.start([10, 20, 30], Listen), Some(vec![]));
        assert!(m.contains(10) && m.contains(30) && !m.contains(40));
        let loud = g711::encode_ulaw(8000);
        m.push(10, Codec::Pcmu, &[loud; FRAME]);
        m.push(10, Codec::Pcmu, &[loud; FRAME]);
        m.push(99, Codec::Pcmu, &[loud; FRAME]); // no conference: ignored
        let mut out = [0i16; FRAME];
        assert!(m.pull(30, &mut out));
        assert!((i32::from(out[0]) - 8000).abs() < 300, "{}", out[0]);
        assert!(!m.pull(10, &mut out), "the caller never hears itself");
        // The agent hears the caller alone in listen mode: over the relay, not the mix.
        assert!(!m.pull(20, &mut out), "the relay serves the agent");
        assert!(m.relays(10, 20) && m.relays(20, 10));
        assert!(!m.relays(10, 30) && !m.relays(30, 20) && !m.relays(99, 20));
        // Same legs: a mode switch, nothing released.
        assert_eq!(m.start([10, 20, 30], Barge), Some(vec![]));
        assert_eq!(m.conference(20).map(Conference::mode), Some(Barge));
        // Another supervisor on the same call replaces the first, who is released.
        assert_eq!(m.start([10, 20, 31], Barge), Some(vec![30]));
        assert_eq!(m.len(), 1);
        assert_eq!(m.end(31), Some([10, 20, 31]));
        assert!(m.is_empty() && m.end(31).is_none());
    }
}
