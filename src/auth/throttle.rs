//! Sign-in throttling per source address, sans-IO: a few failed sign-ins are free, further
//! ones must wait a delay that doubles per failure, and past a limit the source is blocked
//! for a while. A success, the end of a block, or a quiet spell forgives the failures.
//!
//! Each attempt is `begin` (may it try now?) then `finish` (did it succeed?). At most
//! `max_in_flight` attempts per source run at once, so parallel guesses cannot all slip in
//! before the first failure is counted (and each costs an argon2 verification).
//!
//! Memory is bounded: at most `max_sources` addresses are tracked; when full, forgiven
//! entries go first, then the one whose last failure is oldest, blocked sources last. IPv6 sources count per /64
//! (one host usually holds a whole /64).

use crate::engine::Millis;
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures in a row before any delay.
    pub free_failures: u32,
    /// The wait after the `free_failures`-th failure; doubled per further failure.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// This many failures in a row block the source for `block_ms`.
    pub block_after: u32,
    pub block_ms: u64,
    /// Failures are forgotten this long after the last one.
    pub forget_after_ms: u64,
    pub max_sources: usize,
    /// Sign-in attempts of one source being checked at once.
    pub max_in_flight: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            free_failures: 3,
            base_delay_ms: 1_000,
            max_delay_ms: 30_000,
            block_after: 10,
            block_ms: 15 * 60_000,
            forget_after_ms: 15 * 60_000,
            max_sources: 10_000,
            max_in_flight: 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleDecision {
    /// Go ahead (and call `finish`).
    Allow,
    /// Too soon after a failure (or too many attempts at once): try again after this long.
    Slowed { retry_after_ms: u64 },
    /// Blocked after too many failures: try again after this long.
    Blocked { retry_after_ms: u64 },
}

/// What a failure did to its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Failures in a row so far; the next attempt may have to wait.
    Counted { failures: u32 },
    /// This failure blocked the source.
    Blocked { until: Millis },
}

#[derive(Clone, Debug, Default)]
struct Entry {
    failures: u32,
    last_failure: Millis,
    not_before: Millis,
    blocked_until: Option<Millis>,
    in_flight: u32,
}

impl Entry {
    fn forgiven(&self, cfg: &ThrottleConfig, now: Millis) -> bool {
        self.blocked_until.is_none_or(|u| now >= u)
            && (self.failures == 0 || now >= self.last_failure.plus(cfg.forget_after_ms))
    }
}

#[derive(Debug, Default)]
pub struct SignInThrottle {
    cfg: ThrottleConfig,
    sources: HashMap<IpAddr, Entry>,
}

/// The address a source is counted under: IPv4 (also when mapped into IPv6) as is, IPv6 by
/// its /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        v4 => v4,
    }
}

impl SignInThrottle {
    pub fn new(cfg: ThrottleConfig) -> SignInThrottle {
        SignInThrottle {
            cfg,
            sources: HashMap::new(),
        }
    }

    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// May `source` try to sign in at `now`? On `Allow`, `finish` must follow.
    pub fn begin(&mut self, source: IpAddr, now: Millis) -> ThrottleDecision {
        let k = source_key(source);
        if !self.sources.contains_key(&k) && !self.make_room(now) {
            // Every tracked source is mid-attempt: a flood; the newcomer waits.
            return ThrottleDecision::Slowed {
                retry_after_ms: 1_000,
            };
        }
        let cfg = self.cfg;
        let e = self.sources.entry(k).or_default();
        if let Some(until) = e.blocked_until {
            if now < until {
                return ThrottleDecision::Blocked {
                    retry_after_ms: until.since(now),
                };
            }
            // The block is served: start afresh.
            e.blocked_until = None;
            e.failures = 0;
            e.not_before = now;
        }
        if e.failures > 0 && now >= e.last_failure.plus(cfg.forget_after_ms) {
            e.failures = 0;
            e.not_before = now;
        }
        if now < e.not_before {
            return ThrottleDecision::Slowed {
                retry_after_ms: e.not_before.since(now),
            };
        }
        if e.in_flight >= cfg.max_in_flight.max(1) {
            return ThrottleDecision::Slowed {
                retry_after_ms: 1_000,
            };
        }
        e.in_flight += 1;
        ThrottleDecision::Allow
    }

    /// The allowed attempt of `source` ended: a success forgives, a failure counts.
    pub fn finish(&mut self, source: IpAddr, now: Millis, ok: bool) -> FailureOutcome {
        let k = source_key(source);
        let cfg = self.cfg;
        let Some(e) = self.sources.get_mut(&k) else {
            return FailureOutcome::Counted { failures: 0 };
        };
        e.in_flight = e.in_flight.saturating_sub(1);
        if ok {
            e.failures = 0;
            e.not_before = now;
            if e.in_flight == 0 {
                self.sources.remove(&k);
            }
            return FailureOutcome::Counted { failures: 0 };
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        if e.failures >= cfg.block_after {
            let until = now.plus(cfg.block_ms);
            e.blocked_until = Some(until);
            return FailureOutcome::Blocked { until };
        }
        if e.failures >= cfg.free_failures {
            let doublings = (e.failures - cfg.free_failures).min(32);
            let delay = cfg
                .base_delay_ms
                .saturating_mul(1u64 << doublings)
                .min(cfg.max_delay_ms);
            e.not_before = now.plus(delay);
        }
        FailureOutcome::Counted {
            failures: e.failures,
        }
    }

    /// The allowed attempt of `source` ended without a verdict (the client went away
    /// mid-check): it no longer counts as in flight, and not as a failure either (the client
    /// learnt nothing).
    pub fn abandon(&mut self, source: IpAddr) {
        let k = source_key(source);
        if let Some(e) = self.sources.get_mut(&k) {
            e.in_flight = e.in_flight.saturating_sub(1);
            if e.in_flight == 0 && e.failures == 0 && e.blocked_until.is_none() {
                self.sources.remove(&k);
            }
        }
    }

    /// Drops forgiven sources; returns how many.
    pub fn sweep(&mut self, now: Millis) -> usize {
        let before = self.sources.len();
        let cfg = self.cfg;
        self.sources
            .retain(|_, e| e.in_flight > 0 || !e.forgiven(&cfg, now));
        before - self.sources.len()
    }

    /// Room for one more source: forgiven entries go, then the oldest failure not in flight,
    /// blocked sources last.
    fn make_room(&mut self, now: Millis) -> bool {
        let max = self.cfg.max_sources.max(1);
        if self.sources.len() < max {
            return true;
        }
        self.sweep(now);
        if self.sources.len() < max {
            return true;
        }
        let oldest = self
            .sources
            .iter()
            .filter(|(_, e)| e.in_flight == 0)
            .min_by_key(|(_, e)| (e.blocked_until.is_some_and(|u| now < u), e.last_failure))
            .map(|(k, _)| *k);
        match oldest {
            Some(k) => {
                self.sources.remove(&k);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn cfg() -> ThrottleConfig {
        ThrottleConfig {
            free_failures: 3,
            base_delay_ms: 1_000,
            max_delay_ms: 4_000,
            block_after: 6,
            block_ms: 60_000,
            forget_after_ms: 600_000,
            max_sources: 4,
            max_in_flight: 1,
        }
    }

    /// One failed attempt at `now`, which must be allowed.
    fn fail(t: &mut SignInThrottle, ip: IpAddr, now: u64) -> FailureOutcome {
        assert_eq!(
            t.begin(ip, Millis(now)),
            ThrottleDecision::Allow,
            "at {now}"
        );
        t.finish(ip, Millis(now), false)
    }

    #[test]
    fn failures_are_free_then_slowed_then_blocked_then_forgiven() {
        let mut t = SignInThrottle::new(cfg());
        // Two free failures: no wait.
        fail(&mut t, A, 0);
        fail(&mut t, A, 0);
        // The third starts the delay: 1 s, then 2 s, then 4 s (the cap).
        assert_eq!(fail(&mut t, A, 0), FailureOutcome::Counted { failures: 3 });
        assert_eq!(
            t.begin(A, Millis(999)),
            ThrottleDecision::Slowed { retry_after_ms: 1 }
        );
        fail(&mut t, A, 1_000);
        assert_eq!(
            t.begin(A, Millis(1_000)),
            ThrottleDecision::Slowed {
                retry_after_ms: 2_000
            }
        );
        fail(&mut t, A, 3_000);
        assert_eq!(
            t.begin(A, Millis(3_000)),
            ThrottleDecision::Slowed {
                retry_after_ms: 4_000
            }
        );
        // The sixth failure blocks for a minute.
        assert_eq!(
            fail(&mut t, A, 7_000),
            FailureOutcome::Blocked {
                until: Millis(67_000)
            }
        );
        assert_eq!(
            t.begin(A, Millis(7_001)),
            ThrottleDecision::Blocked {
                retry_after_ms: 59_999
            }
        );
        // Another address is not affected.
        assert_eq!(t.begin(B, Millis(7_001)), ThrottleDecision::Allow);
        t.finish(B, Millis(7_001), true);
        // After the block: a fresh start, two free failures again.
        fail(&mut t, A, 67_000);
        fail(&mut t, A, 67_000);
        assert_eq!(t.begin(A, Millis(67_000)), ThrottleDecision::Allow);
        t.finish(A, Millis(67_000), true);
        // A success forgives everything (and the entry goes).
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn a_quiet_spell_forgives() {
        let mut t = SignInThrottle::new(cfg());
        for _ in 0..3 {
            fail(&mut t, A, 0);
        }
        assert!(matches!(
            t.begin(A, Millis(10)),
            ThrottleDecision::Slowed { .. }
        ));
        assert_eq!(t.begin(A, Millis(600_000)), ThrottleDecision::Allow);
        assert_eq!(
            t.finish(A, Millis(600_000), false),
            FailureOutcome::Counted { failures: 1 }
        );
    }

    #[test]
    fn parallel_attempts_of_one_source_are_limited() {
        let mut t = SignInThrottle::new(cfg());
        assert_eq!(t.begin(A, Millis(0)), ThrottleDecision::Allow);
        assert!(matches!(
            t.begin(A, Millis(0)),
            ThrottleDecision::Slowed { .. }
        ));
        t.finish(A, Millis(5), false);
        assert_eq!(t.begin(A, Millis(5)), ThrottleDecision::Allow);
    }

    #[test]
    fn an_abandoned_attempt_frees_its_slot_without_counting() {
        let mut t = SignInThrottle::new(cfg());
        assert_eq!(t.begin(A, Millis(0)), ThrottleDecision::Allow);
        t.abandon(A);
        assert_eq!(t.tracked(), 0);
        assert_eq!(t.begin(A, Millis(0)), ThrottleDecision::Allow);
        assert_eq!(
            t.finish(A, Millis(0), false),
            FailureOutcome::Counted { failures: 1 }
        );
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(
            source_key(a),
            source_key("2001:db8:1:3::1".parse().unwrap())
        );
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(source_key(mapped), A);
        let _ = Ipv6Addr::LOCALHOST;
    }

    #[test]
    fn memory_is_bounded_and_blocked_sources_outlast_old_ones() {
        let mut t = SignInThrottle::new(cfg());
        // Source 0 is blocked (6 failures spread past the delays); 1-3 have one failure.
        let s = |i: u8| IpAddr::V4(Ipv4Addr::new(198, 51, 100, i));
        let mut now = 0;
        for _ in 0..6 {
            fail(&mut t, s(0), now);
            now += 10_000;
        }
        for i in 1..4 {
            fail(&mut t, s(i), now + u64::from(i));
        }
        assert_eq!(t.tracked(), 4);
        // Many new sources: the table never grows past 4, and the blocked source stays
        // blocked although its last failure is the oldest.
        for i in 10..200 {
            fail(&mut t, s(i), now + 100);
            assert!(t.tracked() <= 4);
        }
        assert!(matches!(
            t.begin(s(0), Millis(now + 200)),
            ThrottleDecision::Blocked { .. }
        ));
    }
}
