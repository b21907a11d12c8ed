//! Server transactions: INVITE (RFC 3261 17.2.1 + RFC 6026 7.1) and non-INVITE (17.2.2).

use super::{
    Machine, ServerInviteState as Si, ServerMatch, ServerNonInviteState as Sn, Timer, Transactions,
    TxnKey,
};
use crate::engine::{Millis, Peer};
use bytes::Bytes;

impl Transactions {
    /// Matches an incoming request against the server transactions (17.2.3).
    ///
    /// - ACK: `AckMatched` if a server INVITE transaction with this key is `Completed` (it moves
    ///   to `Confirmed`) or already `Confirmed`; `New` if none matches or it is `Accepted` (RFC
    ///   6026 7.1: the ACK for a 2xx goes to the TU; no transaction is created for it);
    ///   `Absorbed` for an ACK before any final response, which no RFC state accepts.
    /// - Other requests: `New` if no transaction has the key; otherwise `Retransmission` when
    ///   the last response was re-sent, or `Absorbed` when there is nothing to re-send
    ///   (`Trying`, `Proceeding` without a provisional, `Confirmed`, and `Accepted`, where RFC
    ///   6026 7.1 leaves 2xx retransmission to the TU).
    pub fn server_request(&mut self, now: Millis, key: &TxnKey, is_ack: bool) -> ServerMatch {
        let Some(&id) = self.server_index.get(key) else {
            return ServerMatch::New;
        };
        let Some(txn) = self.txns.get(&id) else {
            return ServerMatch::New;
        };
        let machine = txn.machine;
        let reliable = txn.reliable();
        if is_ack {
            return match machine {
                Machine::InviteServer(Si::Completed) => {
                    // 17.2.1: ACK -> Confirmed; stop G/H, Timer I absorbs ACK retransmits.
                    self.cancel_timers(id);
                    if let Some(txn) = self.txns.get_mut(&id) {
                        txn.machine = Machine::InviteServer(Si::Confirmed);
                    }
                    let t4 = if reliable { 0 } else { self.cfg.t4_ms };
                    self.set_lifetime_or_terminate(now, id, Timer::I, t4);
                    ServerMatch::AckMatched
                }
                Machine::InviteServer(Si::Confirmed) => ServerMatch::AckMatched,
                Machine::InviteServer(Si::Accepted) => ServerMatch::New,
                _ => ServerMatch::Absorbed,
            };
        }
        match machine {
            Machine::InviteServer(Si::Proceeding | Si::Completed)
            | Machine::NonInviteServer(Sn::Proceeding | Sn::Completed) => {
                match txn.message.clone() {
                    Some(bytes) => {
                        let peer = txn.peer;
                        self.transmit(peer, bytes);
                        ServerMatch::Retransmission
                    }
                    None => ServerMatch::Absorbed,
                }
            }
            _ => ServerMatch::Absorbed,
        }
    }

    /// Creates a server transaction for a request `server_request` reported as `New`:
    /// INVITE starts in `Proceeding` (17.2.1), others in `Trying` (17.2.2). A key that already
    /// has a transaction is left alone.
    pub fn server_create(&mut self, now: Millis, key: TxnKey, peer: Peer, invite: bool) {
        // No timer starts in Proceeding/Trying: the TU owns the 100 Trying (17.2.1).
        let _ = now;
        if self.server_index.contains_key(&key) {
            tracing::debug!(branch = %key.branch, "server transaction exists already");
            return;
        }
        let machine = if invite {
            Machine::InviteServer(Si::Proceeding)
        } else {
            Machine::NonInviteServer(Sn::Trying)
        };
        self.insert(key, peer, machine, None);
    }

    /// Sends a response from the TU through its server transaction (emits `Transmit`).
    ///
    /// INVITE: 1xx keeps `Proceeding`; 2xx -> `Accepted` with Timer L (RFC 6026 7.1), later
    /// 2xx retransmissions from the TU are sent as well; 300-699 -> `Completed` with Timer G
    /// (unreliable only) and Timer H. Non-INVITE: 1xx -> `Proceeding`; final -> `Completed`
    /// with Timer J (zero on reliable transports). Responses the state does not allow
    /// (a second final response, unknown key, status below 100) are dropped.
    pub fn server_respond(&mut self, now: Millis, key: &TxnKey, status: u16, bytes: Bytes) {
        let Some(&id) = self.server_index.get(key) else {
            tracing::debug!(branch = %key.branch, status, "response for no server transaction");
            return;
        };
        let t1 = self.cfg.t1_ms;
        let t1x64 = self.t1x64();
        let Some(txn) = self.txns.get_mut(&id) else {
            return;
        };
        if status < 100 {
            return;
        }
        let peer = txn.peer;
        let reliable = txn.reliable();
        match txn.machine {
            Machine::InviteServer(Si::Proceeding) => match status {
                100..=199 => {
                    txn.message = Some(bytes.clone());
                    self.transmit(peer, bytes);
                }
                200..=299 => {
                    txn.message = None;
                    txn.machine = Machine::InviteServer(Si::Accepted);
                    self.transmit(peer, bytes);
                    self.set_timer(id, Timer::L, now.plus(t1x64));
                }
                _ => {
                    txn.message = Some(bytes.clone());
                    txn.machine = Machine::InviteServer(Si::Completed);
                    txn.interval_ms = t1;
                    self.transmit(peer, bytes);
                    if !reliable {
                        self.set_timer(id, Timer::G, now.plus(t1));
                    }
                    self.set_timer(id, Timer::H, now.plus(t1x64));
                }
            },
            // RFC 6026 7.1: 2xx retransmissions from the TU pass through `Accepted`.
            Machine::InviteServer(Si::Accepted) if (200..=299).contains(&status) => {
                self.transmit(peer, bytes);
            }
            Machine::NonInviteServer(Sn::Trying | Sn::Proceeding) => {
                txn.message = Some(bytes.clone());
                if status < 200 {
                    txn.machine = Machine::NonInviteServer(Sn::Proceeding);
                    self.transmit(peer, bytes);
                } else {
                    txn.machine = Machine::NonInviteServer(Sn::Completed);
                    self.transmit(peer, bytes);
                    let j = if reliable { 0 } else { t1x64 };
                    self.set_lifetime_or_terminate(now, id, Timer::J, j);
                }
            }
            _ => {
                tracing::debug!(branch = %key.branch, status, "response not allowed in this state");
            }
        }
    }
}
