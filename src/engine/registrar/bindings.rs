//! The binding table: which contacts each agent has registered, and how a REGISTER's
//! Contact list changes them (add, refresh, replace, remove, expire).

use super::contact::{contact_list, parse_delta, ContactSpec};
use super::reply::RegisterReply;
use super::{Registrar, MAX_CONTACTS_PER_AGENT};
use crate::engine::{Millis, Transport};
use crate::proto::sip::Request;
use std::net::SocketAddr;

/// One registered contact of an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as sent (Request-URI of offers).
    pub uri: String,
    /// Where the REGISTER came from: offers are sent here.
    pub source: SocketAddr,
    pub transport: Transport,
    pub expires_at: Millis,
    /// When this binding (from this source) was first registered.
    pub registered_at: Millis,
    /// Call-ID and CSeq of the last REGISTER that touched it (RFC 3261 10.3 step 7).
    pub call_id: String,
    pub cseq: u32,
}

/// Why a binding ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnregisterReason {
    /// The phone unregistered (Expires: 0 or `*`).
    Expires0,
    /// Not refreshed in time.
    Expired,
    /// Superseded by a newer binding of the same phone.
    Replaced,
    /// The connection it was registered over (WebSocket) closed.
    ConnectionClosed,
}

impl UnregisterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnregisterReason::Expires0 => "expires0",
            UnregisterReason::Expired => "expired",
            UnregisterReason::Replaced => "replaced",
            UnregisterReason::ConnectionClosed => "connection_closed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrarEvent {
    /// A new binding (not emitted for a plain refresh).
    Registered { extension: String, contact: Binding },
    Unregistered {
        extension: String,
        contact_uri: String,
        why: UnregisterReason,
    },
}

impl Registrar {
    pub(super) fn apply(
        &mut self,
        now: Millis,
        source: SocketAddr,
        transport: Transport,
        req: &Request,
        ext: &str,
    ) -> RegisterReply {
        let Some(contacts) = contact_list(req) else {
            return RegisterReply::plain(400, "Bad Request (malformed Contact)");
        };
        let expires_header = match req.header("Expires").map(str::trim) {
            None => None,
            Some(v) => match parse_delta(v) {
                Some(n) => Some(n),
                None => return RegisterReply::plain(400, "Bad Request (malformed Expires)"),
            },
        };
        let mut events = Vec::new();
        if contacts.iter().any(|c| matches!(c, ContactSpec::Star)) {
            // RFC 3261 10.3 step 6: `*` only alone and with Expires: 0.
            if contacts.len() != 1 || expires_header != Some(0) {
                return RegisterReply::plain(400, "Bad Request (* needs Expires: 0 alone)");
            }
            let bound: Vec<Binding> = self.contacts(ext).to_vec();
            if bound
                .iter()
                .any(|b| b.call_id == req.call_id && req.cseq <= b.cseq)
            {
                return RegisterReply::plain(500, "Server Internal Error (CSeq out of order)");
            }
            for b in bound {
                self.remove_binding(ext, &b.uri, UnregisterReason::Expires0, &mut events);
            }
            return self.ok(now, ext, events);
        }
        // Expiry of each contact, checked before anything changes (the request is atomic).
        let mut wanted: Vec<(String, u64)> = Vec::with_capacity(contacts.len());
        for c in contacts {
            let ContactSpec::Uri { uri, expires } = c else {
                continue;
            };
            let asked = expires
                .or(expires_header)
                .unwrap_or(self.cfg.default_expires_s);
            if asked != 0 && asked < self.cfg.min_expires_s {
                let mut r = RegisterReply::plain(423, "Interval Too Brief");
                r.headers
                    .push(("Min-Expires", self.cfg.min_expires_s.to_string()));
                return r;
            }
            let secs = asked.min(self.cfg.max_expires_s);
            wanted.retain(|(u, _)| *u != uri);
            wanted.push((uri, secs));
        }
        let existing = self.contacts(ext);
        for (uri, _) in &wanted {
            if existing
                .iter()
                .any(|b| b.uri == *uri && b.call_id == req.call_id && req.cseq <= b.cseq)
            {
                return RegisterReply::plain(500, "Server Internal Error (CSeq out of order)");
            }
        }
        let mut added = Vec::new();
        for (uri, secs) in &wanted {
            let old = self.contacts(ext).iter().find(|b| b.uri == *uri).cloned();
            if *secs == 0 {
                if old.is_some() {
                    self.remove_binding(ext, uri, UnregisterReason::Expires0, &mut events);
                }
                continue;
            }
            let expires_at = now.plus(secs.saturating_mul(1000));
            match old {
                Some(b) if b.source == source && b.transport == transport => {
                    self.set_binding(
                        ext,
                        Binding {
                            expires_at,
                            call_id: req.call_id.clone(),
                            cseq: req.cseq,
                            ..b
                        },
                    );
                }
                other => {
                    if other.is_some() {
                        self.remove_binding(ext, uri, UnregisterReason::Replaced, &mut events);
                    }
                    let b = Binding {
                        uri: uri.clone(),
                        source,
                        transport,
                        expires_at,
                        registered_at: now,
                        call_id: req.call_id.clone(),
                        cseq: req.cseq,
                    };
                    self.set_binding(ext, b.clone());
                    added.push(b);
                }
            }
        }
        if !added.is_empty() {
            // The same phone (Call-ID) moved to a new contact: its old ones are gone.
            let stale: Vec<String> = self
                .contacts(ext)
                .iter()
                .filter(|b| b.call_id == req.call_id && !wanted.iter().any(|(u, _)| *u == b.uri))
                .map(|b| b.uri.clone())
                .collect();
            for uri in stale {
                self.remove_binding(ext, &uri, UnregisterReason::Replaced, &mut events);
            }
            while self.contacts(ext).len() > MAX_CONTACTS_PER_AGENT {
                let Some(victim) = self
                    .contacts(ext)
                    .iter()
                    .filter(|b| !added.iter().any(|a| a.uri == b.uri))
                    .min_by_key(|b| (b.expires_at, b.registered_at))
                    .or_else(|| self.contacts(ext).first())
                    .map(|b| b.uri.clone())
                else {
                    break;
                };
                added.retain(|a| a.uri != victim);
                self.remove_binding(ext, &victim, UnregisterReason::Replaced, &mut events);
            }
        }
        for b in added {
            events.push(RegistrarEvent::Registered {
                extension: ext.to_string(),
                contact: b,
            });
        }
        self.ok(now, ext, events)
    }

    /// Inserts or replaces (same URI) a binding, keeping the expiry index in step.
    fn set_binding(&mut self, ext: &str, b: Binding) {
        let list = self.bindings.entry(ext.to_string()).or_default();
        match list.iter_mut().find(|x| x.uri == b.uri) {
            Some(x) => {
                self.expiry
                    .remove(&(x.expires_at, ext.to_string(), x.uri.clone()));
                *x = b.clone();
            }
            None => list.push(b.clone()),
        }
        self.expiry.insert((b.expires_at, ext.to_string(), b.uri));
    }

    /// Removes every binding registered over the connection `source` of `transport`
    /// (RFC 7118 section 5: such a contact is reachable over that connection only).
    pub fn connection_closed(
        &mut self,
        transport: Transport,
        source: SocketAddr,
    ) -> Vec<RegistrarEvent> {
        let mut gone: Vec<(String, String)> = self
            .bindings
            .iter()
            .flat_map(|(ext, list)| {
                list.iter()
                    .filter(|b| b.transport == transport && b.source == source)
                    .map(move |b| (ext.clone(), b.uri.clone()))
            })
            .collect();
        gone.sort();
        let mut events = Vec::new();
        for (ext, uri) in gone {
            self.remove_binding(&ext, &uri, UnregisterReason::ConnectionClosed, &mut events);
        }
        events
    }

    pub(super) fn remove_binding(
        &mut self,
        ext: &str,
        uri: &str,
        why: UnregisterReason,
        events: &mut Vec<RegistrarEvent>,
    ) {
        let Some(list) = self.bindings.get_mut(ext) else {
            return;
        };
        let Some(i) = list.iter().position(|b| b.uri == uri) else {
            return;
        };
        let b = list.remove(i);
        if list.is_empty() {
            self.bindings.remove(ext);
        }
        self.expiry
            .remove(&(b.expires_at, ext.to_string(), b.uri.clone()));
        events.push(RegistrarEvent::Unregistered {
            extension: ext.to_string(),
            contact_uri: b.uri,
            why,
        });
    }
}
