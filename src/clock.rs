//! The only place that reads a clock. Everything else gets `Millis` handed in.

#![allow(clippy::disallowed_methods)]

use crate::engine::Millis;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Wall time anchored once, advanced by the monotonic clock: UTC milliseconds that never go
/// backwards within the process.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    anchor: Instant,
    anchor_utc_ms: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Clock {
        let utc = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Clock {
            anchor: Instant::now(),
            anchor_utc_ms: utc.as_millis() as u64,
        }
    }

    pub fn now(&self) -> Millis {
        Millis(self.anchor_utc_ms + self.anchor.elapsed().as_millis() as u64)
    }

    /// Monotonic instant for a deadline on this clock's timeline (for sleeping until it).
    pub fn instant_at(&self, at: Millis) -> Instant {
        self.anchor + Duration::from_millis(at.0.saturating_sub(self.anchor_utc_ms))
    }

    /// Current monotonic instant (for shells that pace work, e.g. RTP).
    pub fn instant(&self) -> Instant {
        Instant::now()
    }

    /// The timeline point of a monotonic instant.
    pub fn millis_at(&self, at: Instant) -> Millis {
        Millis(self.anchor_utc_ms + at.saturating_duration_since(self.anchor).as_millis() as u64)
    }
}
