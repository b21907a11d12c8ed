//! Sans-IO SIP transaction layer: RFC 3261 section 17 as updated by RFC 6026.
//!
//! The layer never parses SIP. Callers (the engine, acting as transaction user, "TU") hand in
//! the transaction key they built from the message, status codes, and pre-built bytes; the
//! layer keeps the four state machines, decides what to (re)send and when, and reports
//! timeouts and terminations through [`TxnOutput`]. Time is an argument (`now: Millis`).
//!
//! State machines (a terminated transaction is removed and reported once as
//! [`TxnOutput::Terminated`]):
//! - server INVITE (17.2.1, RFC 6026 section 7.1): `Proceeding` -> `Completed` on 300-699
//!   (Timer G retransmits the final response on unreliable transports, Timer H gives up waiting
//!   for the ACK) -> `Confirmed` on ACK (Timer I absorbs ACK retransmits); `Proceeding` ->
//!   `Accepted` on 2xx (Timer L absorbs INVITE retransmits; the TU retransmits the 2xx itself).
//! - server non-INVITE (17.2.2): `Trying` -> `Proceeding` on 1xx -> `Completed` on a final
//!   response (Timer J absorbs request retransmits).
//! - client INVITE (17.1.1, RFC 6026 section 8.4): `Calling` (Timer A retransmits, Timer B
//!   times out) -> `Proceeding` on 1xx -> `Completed` on 300-699 (ACK sent, Timer D) or
//!   `Accepted` on 2xx (Timer M; 2xx retransmits go to the TU).
//! - client non-INVITE (17.1.2): `Trying` (Timer E from T1 doubling to T2, Timer F times out)
//!   -> `Proceeding` on 1xx (Timer E at T2) -> `Completed` on a final response (Timer K).
//!
//! Decisions the RFCs leave to the implementation:
//! - An ACK whose key matches a server INVITE transaction in `Accepted` returns
//!   [`ServerMatch::New`] and creates nothing: RFC 6026 section 7.1 says such an ACK is passed
//!   to the TU, not absorbed, so the engine must see it (it stops the 2xx retransmissions).
//!   Normally the ACK for a 2xx carries a new branch and matches nothing anyway; this matters for
//!   RFC 2543 style keys. An ACK in `Completed`/`Confirmed` returns [`ServerMatch::AckMatched`].
//! - Client transactions are matched on (branch, method) only (17.1.3); `sent_by` of a client
//!   key is ignored for matching and should be `""`.
//! - RFC 3261 lets a client INVITE wait in `Proceeding` indefinitely (the TU is expected to
//!   CANCEL). With no API to destroy a transaction that would leak memory on a peer that never
//!   sends a final response, so a guard Timer C (3 minutes, the minimum of 16.6 step 11, re-armed
//!   on every provisional) ends it with `Timeout { timer: "C" }`.
//! - Timer D is `max(32 s, 64*T1)` on unreliable transports, so it always covers the peer's
//!   Timer H window (17.1.1.2 only says "at least 32 s").
//! - Zero-length timers (I, J, K, D on reliable transports) terminate the transaction at once,
//!   inside the call that caused the transition.
//! - A retransmit timer is re-armed relative to the instant it was handled, so a late
//!   `handle_timeout` never produces a burst of retransmissions.

mod client;
mod server;
mod timers;

use crate::engine::{Millis, Peer};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use timers::{Handle, Slot, Timer, TimerQueue};

/// Identifies a transaction (RFC 3261 17.1.3 / 17.2.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TxnKey {
    /// Top Via branch (or a synthetic RFC 2543 key built by the caller).
    pub branch: String,
    /// "INVITE" for INVITE and its ACK; the request method otherwise.
    pub method: String,
    /// Top Via sent-by for server transactions; `""` for client transactions.
    pub sent_by: String,
}

/// RFC 3261 timer base values (section 17.1.1.1, table 4).
#[derive(Clone, Debug)]
pub struct TxnConfig {
    /// RTT estimate (default 500 ms).
    pub t1_ms: u64,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2_ms: u64,
    /// Maximum time a message stays in the network (5 s).
    pub t4_ms: u64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        }
    }
}

/// What to do with an incoming request (RFC 3261 17.2.3 matching).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerMatch {
    /// No transaction absorbed it: the TU handles it (creating a transaction unless it is an ACK).
    New,
    /// Retransmitted request; the last response was re-sent (if any).
    Retransmission,
    /// ACK absorbed by a server INVITE transaction in `Completed`/`Confirmed`.
    AckMatched,
    /// Retransmitted request absorbed without a re-send.
    Absorbed,
}

/// What to do with an incoming response (RFC 3261 17.1.3 matching).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMatch {
    /// Deliver to the TU.
    Pass,
    /// Retransmitted response, dropped (the ACK was re-sent for a non-2xx INVITE final).
    Absorbed,
    /// No client transaction has this key.
    NotFound,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutput {
    Transmit {
        peer: crate::engine::Peer,
        bytes: bytes::Bytes,
    },
    /// The transaction gave up ("B", "F", "H", or the "C" guard); `Terminated` follows.
    Timeout {
        key: TxnKey,
        client: bool,
        timer: &'static str,
    },
    Terminated {
        key: TxnKey,
    },
}

/// Server INVITE states (17.2.1, RFC 6026 section 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerInviteState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
}

/// Server non-INVITE states (17.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
}

/// Client INVITE states (17.1.1, RFC 6026 section 8.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientInviteState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
}

/// Client non-INVITE states (17.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Machine {
    InviteServer(ServerInviteState),
    NonInviteServer(ServerNonInviteState),
    InviteClient(ClientInviteState),
    NonInviteClient(ClientNonInviteState),
}

impl Machine {
    fn is_client(self) -> bool {
        matches!(self, Machine::InviteClient(_) | Machine::NonInviteClient(_))
    }
}

#[derive(Debug)]
struct Txn {
    /// The key as the caller gave it (reported back in outputs).
    key: TxnKey,
    peer: Peer,
    machine: Machine,
    /// Server: last response sent. Client: the request.
    message: Option<Bytes>,
    /// Client INVITE: the ACK sent for a non-2xx final response.
    ack: Option<Bytes>,
    /// Current retransmit interval of timer A/E/G.
    interval_ms: u64,
    timers: [Option<Handle>; 2],
}

impl Txn {
    fn reliable(&self) -> bool {
        self.peer.transport.is_reliable()
    }
}

/// Guard for a client INVITE in `Proceeding` (see module docs).
const TIMER_C_MS: u64 = 180_000;
/// Minimum Timer D on unreliable transports (17.1.1.2).
const TIMER_D_MIN_MS: u64 = 32_000;

/// All live transactions of one engine.
#[derive(Debug)]
pub struct Transactions {
    cfg: TxnConfig,
    txns: HashMap<u64, Txn>,
    server_index: HashMap<TxnKey, u64>,
    /// Keyed with `sent_by` cleared: clients match on (branch, method).
    client_index: HashMap<TxnKey, u64>,
    timers: TimerQueue,
    out: VecDeque<TxnOutput>,
    next_id: u64,
}

impl Transactions {
    pub fn new(cfg: TxnConfig) -> Self {
        // A zero T1 would make retransmit timers re-fire at the same instant forever.
        let t1 = cfg.t1_ms.max(1);
        let cfg = TxnConfig {
            t1_ms: t1,
            t2_ms: cfg.t2_ms.max(t1),
            t4_ms: cfg.t4_ms,
        };
        Transactions {
            cfg,
            txns: HashMap::new(),
            server_index: HashMap::new(),
            client_index: HashMap::new(),
            timers: TimerQueue::default(),
            out: VecDeque::new(),
            next_id: 0,
        }
    }

    /// Number of live transactions (server and client).
    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    /// Earliest pending timer deadline.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.next()
    }

    pub fn poll_output(&mut self) -> Option<TxnOutput> {
        self.out.pop_front()
    }

    /// Fires every timer due at `now`, earliest deadline first.
    pub fn handle_timeout(&mut self, now: Millis) {
        while let Some((handle, id, timer)) = self.timers.pop_due(now) {
            let Some(txn) = self.txns.get_mut(&id) else {
                continue;
            };
            let slot = timer.slot() as usize;
            if txn.timers[slot] != Some(handle) {
                // Stale entry; cancelled timers are removed, so this is only defensive.
                continue;
            }
            txn.timers[slot] = None;
            self.fire(now, id, timer);
        }
    }

    fn fire(&mut self, now: Millis, id: u64, timer: Timer) {
        let Some(txn) = self.txns.get(&id) else {
            return;
        };
        let machine = txn.machine;
        match timer {
            Timer::A | Timer::E | Timer::G => self.retransmit(now, id, timer),
            Timer::B | Timer::C | Timer::F | Timer::H => {
                self.out.push_back(TxnOutput::Timeout {
                    key: txn.key.clone(),
                    client: machine.is_client(),
                    timer: timer.name(),
                });
                self.terminate(id);
            }
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M => self.terminate(id),
        }
    }

    /// Timer A (17.1.1.2): request again, interval doubles without a cap (Timer B bounds it).
    /// Timer E (17.1.2.2): request again, interval doubles up to T2; T2 once `Proceeding`.
    /// Timer G (17.2.1): final response again, interval doubles up to T2.
    fn retransmit(&mut self, now: Millis, id: u64, timer: Timer) {
        let t2 = self.cfg.t2_ms;
        let Some(txn) = self.txns.get_mut(&id) else {
            return;
        };
        let next = match (timer, txn.machine) {
            (Timer::A, Machine::InviteClient(ClientInviteState::Calling)) => {
                txn.interval_ms.saturating_mul(2)
            }
            (Timer::E, Machine::NonInviteClient(ClientNonInviteState::Trying)) => {
                txn.interval_ms.saturating_mul(2).min(t2)
            }
            (Timer::E, Machine::NonInviteClient(ClientNonInviteState::Proceeding)) => t2,
            (Timer::G, Machine::InviteServer(ServerInviteState::Completed)) => {
                txn.interval_ms.saturating_mul(2).min(t2)
            }
            // Timers are cancelled on every transition, so this is only defensive.
            _ => return,
        };
        txn.interval_ms = next;
        if let Some(bytes) = txn.message.clone() {
            self.out.push_back(TxnOutput::Transmit {
                peer: txn.peer,
                bytes,
            });
        }
        self.set_timer(id, timer, now.plus(next));
    }

    fn insert(&mut self, key: TxnKey, peer: Peer, machine: Machine, message: Option<Bytes>) -> u64 {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let index_key = if machine.is_client() {
            client_index_key(&key)
        } else {
            key.clone()
        };
        if machine.is_client() {
            self.client_index.insert(index_key, id);
        } else {
            self.server_index.insert(index_key, id);
        }
        self.txns.insert(
            id,
            Txn {
                key,
                peer,
                machine,
                message,
                ack: None,
                interval_ms: self.cfg.t1_ms,
                timers: [None, None],
            },
        );
        id
    }

    /// Arms `timer` (replacing whatever ran in its slot).
    fn set_timer(&mut self, id: u64, timer: Timer, at: Millis) {
        let Some(txn) = self.txns.get_mut(&id) else {
            return;
        };
        let slot = timer.slot() as usize;
        if let Some(old) = txn.timers[slot].take() {
            self.timers.cancel(old);
        }
        txn.timers[slot] = Some(self.timers.schedule(at, id, timer));
    }

    fn cancel_slot(&mut self, id: u64, slot: Slot) {
        if let Some(txn) = self.txns.get_mut(&id) {
            if let Some(old) = txn.timers[slot as usize].take() {
                self.timers.cancel(old);
            }
        }
    }

    fn cancel_timers(&mut self, id: u64) {
        self.cancel_slot(id, Slot::Retransmit);
        self.cancel_slot(id, Slot::Lifetime);
    }

    /// Arms a lifetime timer, or terminates at once when its duration is zero (reliable I/J/K/D).
    fn set_lifetime_or_terminate(&mut self, now: Millis, id: u64, timer: Timer, ms: u64) {
        if ms == 0 {
            self.terminate(id);
        } else {
            self.set_timer(id, timer, now.plus(ms));
        }
    }

    fn terminate(&mut self, id: u64) {
        self.cancel_timers(id);
        let Some(txn) = self.txns.remove(&id) else {
            return;
        };
        if txn.machine.is_client() {
            self.client_index.remove(&client_index_key(&txn.key));
        } else {
            self.server_index.remove(&txn.key);
        }
        self.out.push_back(TxnOutput::Terminated { key: txn.key });
    }

    fn transmit(&mut self, peer: Peer, bytes: Bytes) {
        self.out.push_back(TxnOutput::Transmit { peer, bytes });
    }

    fn t1x64(&self) -> u64 {
        self.cfg.t1_ms.saturating_mul(64)
    }
}

fn client_index_key(key: &TxnKey) -> TxnKey {
    TxnKey {
        branch: key.branch.clone(),
        method: key.method.clone(),
        sent_by: String::new(),
    }
}

#[cfg(test)]
mod tests;
