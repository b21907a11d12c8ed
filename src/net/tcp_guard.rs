//! The decisions of the TCP transport, sans-IO (fed `now`, no sockets, no clock): which
//! connections to admit (caps per source IP and in total), when a connection has taken too
//! long to complete a message or has been idle too long, and how often to log about it.
//! `tcp.rs` carries them out.
//!
//! Timers of one connection (`ConnectionTimers`):
//! - a message started (any byte that is not a keep-alive CR/LF) must be complete within
//!   `message_timeout_ms` of its first byte: trickling bytes does not extend it
//!   (slowloris), and it is the same 64*T1 a transaction would wait;
//! - a connection with nothing pending must see some traffic (a message or a keep-alive
//!   CRLF) every `idle_timeout_ms`; when it does not, the engine is asked whether it still
//!   needs the connection (a registration bound over it, a dialog on it). If it does, the
//!   connection stays open and the idle timer starts again.

use crate::engine::Millis;
use std::collections::HashMap;
use std::net::IpAddr;

/// Limits of the SIP TCP transport (`[sip.tcp]` in ccswitch.toml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    pub message_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub max_message_bytes: usize,
}

/// Why the transport closed (or refused) a connection: the `reason` label of
/// `ccswitch_sip_tcp_connections_closed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// A message was started and not finished within `message_timeout_ms`.
    HalfMessageTimeout,
    /// Nothing received for `idle_timeout_ms` and the engine does not need the connection.
    IdleTimeout,
    /// Refused at accept: the source IP already has `max_connections_per_source`.
    PerSourceCap,
    /// Refused at accept: `max_connections` are open.
    TotalCap,
    /// A message over `max_message_bytes` (a request is answered 513 first when possible).
    TooLarge,
    /// The stream could not be framed (missing or bad Content-Length).
    BadFraming,
    /// The peer closed it, or reading failed.
    PeerClosed,
}

impl CloseReason {
    pub const ALL: [CloseReason; 7] = [
        CloseReason::HalfMessageTimeout,
        CloseReason::IdleTimeout,
        CloseReason::PerSourceCap,
        CloseReason::TotalCap,
        CloseReason::TooLarge,
        CloseReason::BadFraming,
        CloseReason::PeerClosed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HalfMessageTimeout => "half_message_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::PerSourceCap => "per_source_cap",
            CloseReason::TotalCap => "total_cap",
            CloseReason::TooLarge => "too_large",
            CloseReason::BadFraming => "bad_framing",
            CloseReason::PeerClosed => "peer_closed",
        }
    }

    /// A peer fault worth a warning (rate-limited); the others are routine.
    pub fn is_fault(self) -> bool {
        !matches!(self, CloseReason::IdleTimeout | CloseReason::PeerClosed)
    }
}

/// Open connections, in total and per source IP.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_source: usize,
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl Admission {
    pub fn new(limits: &TcpLimits) -> Admission {
        Admission::with_caps(limits.max_connections, limits.max_connections_per_source)
    }

    /// Caps in total and per source IP (the WebSocket transport uses its own).
    pub fn with_caps(max_total: usize, max_per_source: usize) -> Admission {
        Admission {
            max_total,
            max_per_source,
            total: 0,
            per_source: HashMap::new(),
        }
    }

    /// Counts a new connection from `ip`, or says which cap refuses it (nothing counted).
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), CloseReason> {
        if self.total >= self.max_total {
            return Err(CloseReason::TotalCap);
        }
        let n = self.per_source.entry(ip).or_insert(0);
        if *n >= self.max_per_source {
            return Err(CloseReason::PerSourceCap);
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    /// Uncounts a connection `admit` let in.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_source.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&ip);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    pub fn open(&self) -> usize {
        self.total
    }

    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.per_source.get(&ip).copied().unwrap_or(0)
    }
}

/// What a connection's timers say at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerCheck {
    /// Nothing due yet; sleep until `deadline()`.
    Open,
    /// Close with `CloseReason::HalfMessageTimeout`.
    HalfMessageTimeout,
    /// Idle for the idle timeout: ask the engine; `keep` if it needs the connection,
    /// else close with `CloseReason::IdleTimeout`.
    Idle,
}

/// The two timers of one connection.
#[derive(Clone, Debug)]
pub struct ConnectionTimers {
    message_timeout_ms: u64,
    idle_timeout_ms: u64,
    /// Last time bytes arrived, or the engine said it needs the connection.
    last_activity: Millis,
    /// First byte of the message not yet complete.
    message_started: Option<Millis>,
}

impl ConnectionTimers {
    pub fn new(now: Millis, limits: &TcpLimits) -> ConnectionTimers {
        ConnectionTimers {
            message_timeout_ms: limits.message_timeout_ms,
            idle_timeout_ms: limits.idle_timeout_ms,
            last_activity: now,
            message_started: None,
        }
    }

    /// Bytes arrived at `now` and were framed: `completed` messages came out of them (a
    /// keep-alive is not a message), and `partial` says whether the buffer now holds the
    /// start of an unfinished one.
    pub fn on_received(&mut self, now: Millis, completed: bool, partial: bool) {
        self.last_activity = now;
        self.message_started = match (partial, completed, self.message_started) {
            (false, _, _) => None,
            // The unfinished message is a new one: its clock starts now.
            (true, true, _) | (true, false, None) => Some(now),
            (true, false, Some(t)) => Some(t),
        };
    }

    /// The engine needs the connection: idle from `now` on.
    pub fn keep(&mut self, now: Millis) {
        self.last_activity = now;
    }

    /// When `check` may next say something other than `Open`.
    pub fn deadline(&self) -> Millis {
        match self.message_started {
            Some(t) => t.plus(self.message_timeout_ms),
            None => self.last_activity.plus(self.idle_timeout_ms),
        }
    }

    pub fn check(&self, now: Millis) -> TimerCheck {
        if now < self.deadline() {
            TimerCheck::Open
        } else if self.message_started.is_some() {
            TimerCheck::HalfMessageTimeout
        } else {
            TimerCheck::Idle
        }
    }
}

/// At most one log line per `CloseReason` per interval; the rest are counted and the count
/// is reported with the next line let through (a flood of bad connections must not flood
/// the log too).
#[derive(Debug)]
pub struct LogLimiter {
    interval_ms: u64,
    last: HashMap<CloseReason, (Millis, u64)>,
}

impl LogLimiter {
    pub fn new(interval_ms: u64) -> LogLimiter {
        LogLimiter {
            interval_ms,
            last: HashMap::new(),
        }
    }

    /// Some(lines suppressed since the last one) when a line about `reason` may be logged
    /// at `now`; None when it is suppressed.
    pub fn allow(&mut self, now: Millis, reason: CloseReason) -> Option<u64> {
        match self.last.get_mut(&reason) {
            Some((at, suppressed)) if now < at.plus(self.interval_ms) => {
                *suppressed += 1;
                None
            }
            Some((at, suppressed)) => {
                let n = *suppressed;
                *at = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                self.last.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TcpLimits {
        TcpLimits {
            message_timeout_ms: 32_000,
            idle_timeout_ms: 120_000,
            max_connections: 3,
            max_connections_per_source: 2,
            max_message_bytes: 65_536,
        }
    }

    const T0: Millis = Millis(1_000_000);

    #[test]
    fn caps_per_source_and_in_total() {
        let mut a = Admission::new(&limits());
        let (x, y, z): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        assert_eq!(a.admit(x), Ok(()));
        assert_eq!(a.admit(x), Ok(()));
        assert_eq!(a.admit(x), Err(CloseReason::PerSourceCap));
        assert_eq!(a.open_from(x), 2);
        assert_eq!(a.admit(y), Ok(()));
        assert_eq!(a.admit(z), Err(CloseReason::TotalCap));
        assert_eq!(a.open(), 3);
        a.release(x);
        assert_eq!(a.admit(z), Ok(()));
        // Releasing what was never admitted changes nothing.
        a.release("10.9.9.9".parse().unwrap());
        assert_eq!(a.open(), 3);
        for ip in [x, y, z] {
            a.release(ip);
        }
        assert_eq!(a.open(), 0);
        assert_eq!(a.open_from(x), 0);
    }

    #[test]
    fn half_message_times_out_from_its_first_byte_however_it_trickles() {
        let mut t = ConnectionTimers::new(T0, &limits());
        t.on_received(T0.plus(1000), false, true);
        for s in 2..30 {
            t.on_received(T0.plus(s * 1000), false, true);
        }
        assert_eq!(t.deadline(), T0.plus(33_000));
        assert_eq!(t.check(T0.plus(32_999)), TimerCheck::Open);
        assert_eq!(t.check(T0.plus(33_000)), TimerCheck::HalfMessageTimeout);
    }

    #[test]
    fn completed_message_stops_the_message_timer_and_a_new_one_restarts_it() {
        let mut t = ConnectionTimers::new(T0, &limits());
        t.on_received(T0.plus(1000), false, true);
        t.on_received(T0.plus(5000), true, false);
        assert_eq!(t.deadline(), T0.plus(125_000));
        t.on_received(T0.plus(6000), false, true);
        // One message ends and the next begins in the same read.
        t.on_received(T0.plus(20_000), true, true);
        assert_eq!(t.deadline(), T0.plus(52_000));
    }

    #[test]
    fn idle_connection_is_due_after_the_idle_timeout_and_keep_rearms() {
        let mut t = ConnectionTimers::new(T0, &limits());
        assert_eq!(t.check(T0.plus(119_999)), TimerCheck::Open);
        assert_eq!(t.check(T0.plus(120_000)), TimerCheck::Idle);
        t.keep(T0.plus(120_000));
        assert_eq!(t.check(T0.plus(200_000)), TimerCheck::Open);
        assert_eq!(t.check(T0.plus(240_000)), TimerCheck::Idle);
        // A keep-alive is activity: nothing completed, nothing partial.
        t.on_received(T0.plus(230_000), false, false);
        assert_eq!(t.check(T0.plus(240_000)), TimerCheck::Open);
        assert_eq!(t.deadline(), T0.plus(350_000));
    }

    #[test]
    fn log_limiter_lets_one_line_per_interval_through_and_counts_the_rest() {
        let mut l = LogLimiter::new(10_000);
        assert_eq!(l.allow(T0, CloseReason::TooLarge), Some(0));
        assert_eq!(l.allow(T0.plus(1), CloseReason::TooLarge), None);
        assert_eq!(l.allow(T0.plus(2), CloseReason::TooLarge), None);
        assert_eq!(l.allow(T0.plus(3), CloseReason::TotalCap), Some(0));
        assert_eq!(l.allow(T0.plus(10_000), CloseReason::TooLarge), Some(2));
        assert_eq!(l.allow(T0.plus(10_001), CloseReason::TooLarge), None);
    }

    #[test]
    fn reasons_have_distinct_labels() {
        let labels: std::collections::HashSet<&str> =
            CloseReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), CloseReason::ALL.len());
    }
}
