//! Failure blocking: failed authentications counted per source IP; too many within the
//! window block the IP for a while (403 without a challenge).

use super::auth::Check;
use super::{Registrar, MAX_TRACKED_SOURCES};
use crate::engine::Millis;
use std::collections::VecDeque;
use std::net::IpAddr;

#[derive(Clone, Debug, Default)]
pub(super) struct Failures {
    pub(super) times: VecDeque<Millis>,
    pub(super) blocked_until: Millis,
}

impl Registrar {
    /// Whether `ip` is blocked at `now`.
    pub fn is_blocked(&self, now: Millis, ip: IpAddr) -> bool {
        self.failures
            .get(&ip)
            .is_some_and(|f| f.blocked_until > now)
    }

    /// Counts a failure from `ip`; blocks it when the limit is reached.
    pub(super) fn failed(&mut self, now: Millis, ip: IpAddr) -> Check {
        if !self.failures.contains_key(&ip) && self.failures.len() >= MAX_TRACKED_SOURCES {
            self.prune(now);
        }
        if !self.failures.contains_key(&ip) && self.failures.len() >= MAX_TRACKED_SOURCES {
            // Table full of live entries: not tracked, still challenged.
            return Check::Challenge { stale: false };
        }
        let window = self.cfg.failure_window_ms;
        let f = self.failures.entry(ip).or_default();
        while f.times.front().is_some_and(|t| now.since(*t) >= window) {
            f.times.pop_front();
        }
        f.times.push_back(now);
        if f.times.len() >= self.cfg.max_failures as usize {
            f.times.clear();
            f.blocked_until = now.plus(self.cfg.block_ms);
            if self.cfg.block_ms > 0 {
                return Check::Forbidden;
            }
        }
        Check::Challenge { stale: false }
    }
}
