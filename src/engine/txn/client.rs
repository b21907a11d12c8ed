//! Client transactions: INVITE (RFC 3261 17.1.1 + RFC 6026 7.2, 8.4) and non-INVITE (17.1.2).

use super::{
    client_index_key, ClientInviteState as Ci, ClientMatch, ClientNonInviteState as Cn, Machine,
    Slot, Timer, Transactions, TxnKey, TIMER_C_MS, TIMER_D_MIN_MS,
};
use crate::engine::{Millis, Peer};
use bytes::Bytes;

impl Transactions {
    /// Sends a request in a new client transaction (emits `Transmit`).
    ///
    /// INVITE starts in `Calling` with Timer A (unreliable only) and Timer B (17.1.1.2);
    /// non-INVITE starts in `Trying` with Timer E (unreliable only) and Timer F (17.1.2.2).
    /// A live transaction with the same (branch, method) is terminated first: branches are
    /// unique per request, so a reuse means the TU gave up on the old one.
    pub fn client_send(
        &mut self,
        now: Millis,
        key: TxnKey,
        peer: Peer,
        invite: bool,
        bytes: Bytes,
    ) {
        if let Some(&old) = self.client_index.get(&client_index_key(&key)) {
            tracing::debug!(branch = %key.branch, "client transaction key reused");
            self.terminate(old);
        }
        let machine = if invite {
            Machine::InviteClient(Ci::Calling)
        } else {
            Machine::NonInviteClient(Cn::Trying)
        };
        self.transmit(peer, bytes.clone());
        let id = self.insert(key, peer, machine, Some(bytes));
        let t1 = self.cfg.t1_ms;
        if !peer.transport.is_reliable() {
            let retransmit = if invite { Timer::A } else { Timer::E };
            self.set_timer(id, retransmit, now.plus(t1));
        }
        let timeout = if invite { Timer::B } else { Timer::F };
        self.set_timer(id, timeout, now.plus(self.t1x64()));
    }

    /// Matches a response (by top Via branch and CSeq method, 17.1.3) and drives the client
    /// transaction. `ack` is the ACK to send for a 300-699 final response to an INVITE.
    ///
    /// INVITE: 1xx -> `Proceeding` (Pass); 2xx -> `Accepted` with Timer M, every 2xx is passed
    /// (RFC 6026 8.4); 300-699 -> `Completed`: ACK sent, Timer D (zero on reliable transports),
    /// the first is passed, retransmissions re-send the ACK and are absorbed.
    /// Non-INVITE: 1xx -> `Proceeding` (Pass); the first final -> `Completed` with Timer K
    /// (Pass), later ones are absorbed.
    pub fn client_response(
        &mut self,
        now: Millis,
        key: &TxnKey,
        status: u16,
        ack: Option<Bytes>,
    ) -> ClientMatch {
        let Some(&id) = self.client_index.get(&client_index_key(key)) else {
            return ClientMatch::NotFound;
        };
        let t1x64 = self.t1x64();
        let t4 = self.cfg.t4_ms;
        let Some(txn) = self.txns.get_mut(&id) else {
            return ClientMatch::NotFound;
        };
        if status < 100 {
            return ClientMatch::Absorbed;
        }
        let peer = txn.peer;
        let reliable = txn.reliable();
        match txn.machine {
            Machine::InviteClient(Ci::Calling | Ci::Proceeding) => match status {
                100..=199 => {
                    txn.machine = Machine::InviteClient(Ci::Proceeding);
                    // 17.1.1.2: no more retransmits, no Timer B once a provisional arrived.
                    self.cancel_slot(id, Slot::Retransmit);
                    self.set_timer(id, Timer::C, now.plus(TIMER_C_MS));
                    ClientMatch::Pass
                }
                200..=299 => {
                    txn.machine = Machine::InviteClient(Ci::Accepted);
                    self.cancel_slot(id, Slot::Retransmit);
                    self.set_timer(id, Timer::M, now.plus(t1x64));
                    ClientMatch::Pass
                }
                _ => {
                    txn.machine = Machine::InviteClient(Ci::Completed);
                    txn.ack = ack.clone();
                    self.cancel_slot(id, Slot::Retransmit);
                    if let Some(ack) = ack {
                        self.transmit(peer, ack);
                    }
                    let d = if reliable {
                        0
                    } else {
                        TIMER_D_MIN_MS.max(t1x64)
                    };
                    self.set_lifetime_or_terminate(now, id, Timer::D, d);
                    ClientMatch::Pass
                }
            },
            Machine::InviteClient(Ci::Completed) => {
                if status >= 300 {
                    if let Some(ack) = txn.ack.clone() {
                        self.transmit(peer, ack);
                    }
                }
                ClientMatch::Absorbed
            }
            Machine::InviteClient(Ci::Accepted) if (200..=299).contains(&status) => {
                ClientMatch::Pass
            }
            Machine::InviteClient(Ci::Accepted) => ClientMatch::Absorbed,
            Machine::NonInviteClient(Cn::Trying | Cn::Proceeding) => {
                if status < 200 {
                    // Timer E keeps running; it re-arms at T2 from now on (17.1.2.2).
                    txn.machine = Machine::NonInviteClient(Cn::Proceeding);
                } else {
                    txn.machine = Machine::NonInviteClient(Cn::Completed);
                    self.cancel_timers(id);
                    let k = if reliable { 0 } else { t4 };
                    self.set_lifetime_or_terminate(now, id, Timer::K, k);
                }
                ClientMatch::Pass
            }
            Machine::NonInviteClient(Cn::Completed) => ClientMatch::Absorbed,
            // Server machines are never in the client index.
            Machine::InviteServer(_) | Machine::NonInviteServer(_) => ClientMatch::NotFound,
        }
    }
}
