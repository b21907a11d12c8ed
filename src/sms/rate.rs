//! The submit rate cap, sans-IO: when may the next submit_sm go, given the ones before.
//!
//! Two rules, both kept:
//! - Pacing (GCRA, a token bucket): one submit per `1/max_per_s`, with a small tolerance
//!   (about 20 ms of sending at high rates, a few ms at low ones) so a timer that wakes a little late is caught up on
//!   instead of lost. A plain "next = max(next, now) + interval" loses that lateness on
//!   every wake-up; at 500/s with 1 ms timers that alone cost about a third of the rate.
//! - The cap itself: never more than `max_per_s` submits in any one-second window (the
//!   send times of the last `max_per_s` are kept), so the tolerance never turns into more
//!   than the SMSC allows per second.

use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(1);
/// How far a late timer may be caught up on, as sending time.
const TOLERANCE: Duration = Duration::from_millis(20);

#[derive(Debug)]
pub struct RateCap {
    max_per_s: usize,
    interval: Duration,
    /// How far ahead of schedule a submit may go (the bucket's depth minus one token).
    tolerance: Duration,
    /// GCRA's theoretical arrival time: when the next submit is due at the steady rate.
    tat: Option<Instant>,
    /// Nothing before this (a throttling pause).
    paused_until: Option<Instant>,
    /// Send times of the last `max_per_s` submits, oldest first.
    recent: VecDeque<Instant>,
}

impl RateCap {
    /// `max_per_s` at least 1.
    pub fn new(max_per_s: u32) -> RateCap {
        let max_per_s = max_per_s.max(1);
        let interval = Duration::from_secs_f64(1.0 / f64::from(max_per_s));
        RateCap {
            max_per_s: max_per_s as usize,
            interval,
            // High rates: about 20 ms of catch-up (several submits). Low rates: a few ms, so a
            // late timer costs nothing yet two submits never go back to back.
            tolerance: TOLERANCE
                .saturating_sub(interval)
                .max((interval / 4).min(Duration::from_millis(5))),
            tat: None,
            paused_until: None,
            recent: VecDeque::with_capacity((max_per_s as usize).min(16_384)),
        }
    }

    /// The earliest time the next submit may go (`now` or earlier: it may go now).
    pub fn next_at(&self, now: Instant) -> Instant {
        let mut at = now;
        if let Some(tat) = self.tat {
            at = at.max(tat.checked_sub(self.tolerance).unwrap_or(tat));
        }
        if let Some(p) = self.paused_until {
            at = at.max(p);
        }
        if self.recent.len() >= self.max_per_s {
            if let Some(oldest) = self.recent.front() {
                at = at.max(*oldest + WINDOW);
            }
        }
        at
    }

    /// Whether a submit may go at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.next_at(now) <= now
    }

    /// Records a submit sent at `now` (after `ready(now)`).
    pub fn take(&mut self, now: Instant) {
        let base = self.tat.map_or(now, |t| t.max(now));
        self.tat = Some(base + self.interval);
        if self.recent.len() >= self.max_per_s {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
    }

    /// Nothing goes before `until` (the SMSC asked us to slow down); afterwards the steady
    /// rate resumes without a catch-up burst.
    pub fn pause_until(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
        let tat = self.tat.map_or(until, |t| t.max(until));
        self.tat = Some(tat.max(until + self.tolerance));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the cap like the gateway does: wake at `next_at` plus `late`, send what may go.
    fn run(cap: &mut RateCap, t0: Instant, until: Duration, late: Duration) -> Vec<Instant> {
        let mut sent = Vec::new();
        let mut now = t0;
        while now < t0 + until {
            while cap.ready(now) {
                cap.take(now);
                sent.push(now);
            }
            now = cap.next_at(now) + late;
        }
        sent
    }

    fn most_in_any_second(sent: &[Instant]) -> usize {
        let mut most = 0;
        let mut lo = 0;
        for hi in 0..sent.len() {
            while sent[hi] - sent[lo] >= WINDOW {
                lo += 1;
            }
            most = most.max(hi - lo + 1);
        }
        most
    }

    #[test]
    fn late_timers_are_caught_up_on_so_the_rate_holds() {
        let t0 = Instant::now();
        // Every wake-up 1 ms late (a 1 ms timer), 500/s: a 2 ms interval.
        let mut cap = RateCap::new(500);
        let sent = run(
            &mut cap,
            t0,
            Duration::from_secs(10),
            Duration::from_millis(1),
        );
        let rate = sent.len() as f64 / 10.0;
        assert!(rate >= 495.0, "{rate}/s");
        assert!(most_in_any_second(&sent) <= 500);
        // Without catching up (next = now + interval after each wake) it would be 333/s.
    }

    #[test]
    fn never_more_than_max_per_s_in_any_second() {
        let t0 = Instant::now();
        for (max, late_us) in [(500, 0), (500, 1_900), (50, 7_000), (7, 300), (1, 0)] {
            let mut cap = RateCap::new(max);
            let sent = run(
                &mut cap,
                t0,
                Duration::from_secs(5),
                Duration::from_micros(late_us),
            );
            assert!(most_in_any_second(&sent) <= max as usize, "{max}/s");
            assert!(
                sent.len() as u32 >= max * 5 * 9 / 10,
                "{max}/s: {}",
                sent.len()
            );
        }
    }

    #[test]
    fn an_idle_gateway_starts_with_a_small_burst_only() {
        let t0 = Instant::now();
        let mut cap = RateCap::new(500);
        let mut n = 0;
        while cap.ready(t0) {
            cap.take(t0);
            n += 1;
        }
        // 20 ms of sending at once at most, then paced.
        assert_eq!(n, 10);
        assert_eq!(cap.next_at(t0), t0 + Duration::from_millis(2));
        // A low rate: one at a time, each at most 5 ms ahead of its schedule.
        let mut cap = RateCap::new(5);
        cap.take(t0);
        assert_eq!(cap.next_at(t0), t0 + Duration::from_millis(195));
    }

    #[test]
    fn a_throttling_pause_holds_everything_then_the_steady_rate_resumes() {
        let t0 = Instant::now();
        let mut cap = RateCap::new(100);
        cap.take(t0);
        let until = t0 + Duration::from_secs(1);
        cap.pause_until(until);
        assert_eq!(cap.next_at(t0), until);
        assert!(!cap.ready(until - Duration::from_millis(1)));
        assert!(cap.ready(until));
        cap.take(until);
        // No burst after the pause: the next one a full interval later.
        assert_eq!(cap.next_at(until), until + Duration::from_millis(10));
    }
}
