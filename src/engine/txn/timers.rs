//! Transaction timers as data: one ordered queue of `(deadline, seq) -> (txn, timer)` shared
//! by every transaction, so scheduling, cancelling and popping the earliest are O(log n) and the
//! queue scales to 100k live transactions. `seq` breaks ties in scheduling order, which keeps
//! firing order deterministic.

use crate::engine::Millis;
use std::collections::BTreeMap;

/// The timers of RFC 3261 section 17 (table 4) and RFC 6026 sections 7.1 and 8.4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// Client INVITE request retransmit, `Calling` (17.1.1.2).
    A,
    /// Client INVITE transaction timeout, `Calling` (17.1.1.2).
    B,
    /// Guard on a client INVITE stuck in `Proceeding` (borrowed from 16.6 step 11, see mod docs).
    C,
    /// Client INVITE wait for response retransmits, `Completed` (17.1.1.2).
    D,
    /// Client non-INVITE request retransmit, `Trying`/`Proceeding` (17.1.2.2).
    E,
    /// Client non-INVITE transaction timeout (17.1.2.2).
    F,
    /// Server INVITE final response retransmit, `Completed` (17.2.1).
    G,
    /// Server INVITE wait for ACK, `Completed` (17.2.1).
    H,
    /// Server INVITE wait for ACK retransmits, `Confirmed` (17.2.1).
    I,
    /// Server non-INVITE wait for request retransmits, `Completed` (17.2.2).
    J,
    /// Client non-INVITE wait for response retransmits, `Completed` (17.1.2.2).
    K,
    /// Server INVITE wait for INVITE/ACK retransmits after a 2xx, `Accepted` (RFC 6026 7.1).
    L,
    /// Client INVITE wait for 2xx retransmits, `Accepted` (RFC 6026 8.4).
    M,
}

impl Timer {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Timer::A => "A",
            Timer::B => "B",
            Timer::C => "C",
            Timer::D => "D",
            Timer::E => "E",
            Timer::F => "F",
            Timer::G => "G",
            Timer::H => "H",
            Timer::I => "I",
            Timer::J => "J",
            Timer::K => "K",
            Timer::L => "L",
            Timer::M => "M",
        }
    }

    /// A transaction runs at most one retransmit timer and one lifetime timer at a time.
    pub(crate) fn slot(self) -> Slot {
        match self {
            Timer::A | Timer::E | Timer::G => Slot::Retransmit,
            _ => Slot::Lifetime,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Retransmit = 0,
    Lifetime = 1,
}

/// Handle of one scheduled timer, used to cancel it.
pub(crate) type Handle = (Millis, u64);

#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    queue: BTreeMap<Handle, (u64, Timer)>,
    seq: u64,
}

impl TimerQueue {
    pub(crate) fn schedule(&mut self, at: Millis, txn: u64, timer: Timer) -> Handle {
        self.seq = self.seq.wrapping_add(1);
        let handle = (at, self.seq);
        self.queue.insert(handle, (txn, timer));
        handle
    }

    pub(crate) fn cancel(&mut self, handle: Handle) {
        self.queue.remove(&handle);
    }

    pub(crate) fn next(&self) -> Option<Millis> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<(Handle, u64, Timer)> {
        let (&handle, _) = self.queue.first_key_value()?;
        if handle.0 > now {
            return None;
        }
        let (txn, timer) = self.queue.remove(&handle)?;
        Some((handle, txn, timer))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_then_schedule_order() {
        let mut q = TimerQueue::default();
        q.schedule(Millis(500), 1, Timer::A);
        let h = q.schedule(Millis(100), 2, Timer::E);
        q.schedule(Millis(500), 3, Timer::B);
        assert_eq!(q.next(), Some(Millis(100)));
        q.cancel(h);
        assert_eq!(q.next(), Some(Millis(500)));
        assert!(q.pop_due(Millis(499)).is_none());
        assert_eq!(q.pop_due(Millis(500)).map(|x| x.1), Some(1));
        assert_eq!(q.pop_due(Millis(500)).map(|x| x.1), Some(3));
        assert!(q.pop_due(Millis(10_000)).is_none());
        assert_eq!(q.len(), 0);
    }
}
