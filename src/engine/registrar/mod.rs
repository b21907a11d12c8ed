//! SIP registrar for agents' softphones (RFC 3261 section 10, digest auth per RFC 7616),
//! sans-IO: the engine feeds parsed requests with `now` and the source address and sends
//! the reply it gets back; it never reads a clock or a socket.
//!
//! Wiring (integrator):
//! - REGISTER (after the server transaction layer absorbed retransmissions):
//!   `let r = registrar.register(now, peer.addr, peer.transport, &req);` then
//!   `sip::response(&req, r.status, &r.reason, &ResponseOpts { extra_headers: r.headers,
//!   to_tag: Some(tag), source: Some(peer.addr), .. })`, and act on `r.events`
//!   (`Unregistered` of an agent's last contact: `is_registered` is false, log them out
//!   of routing).
//! - Requests from agents that must be authenticated (INVITE to a feature code such as
//!   `*21`): `authenticate_request(now, peer.addr, &req)`; `Challenge(r)` is answered
//!   like a REGISTER reply (407 with `Proxy-Authenticate`), `Forbidden` with 403.
//! - Timers: `poll_timeout()` is the next binding expiry; at that time call
//!   `handle_timeout(now)` and act on its `Unregistered { why: Expired }` events.
//! - Offers go to `contacts(ext)`: each binding's `source` and `transport` (where the
//!   REGISTER came from: NAT-safe, RFC 5626-lite), its `uri` as the Request-URI.
//!
//! Nonces are stateless and verifiable: `ts(12 hex) counter(8 hex) HMAC-SHA256(secret,
//! ts|counter|realm)[..16] (32 hex)`. A nonce older than `nonce_ttl_ms`, or one this
//! process did not make (e.g. after a restart) with otherwise right credentials, gets a
//! 401 with `stale=true`, so phones retry without asking the user. The highest `nc` seen
//! per nonce is kept in a bounded map; a repeated or lower `nc` is a replay and gets a
//! fresh challenge. When the map is full the oldest nonce is dropped and every nonce
//! issued up to it becomes stale (never replayable).
//!
//! Failed authentications (unknown user, wrong password, wrong realm, malformed
//! credentials) are counted per source IP; `max_failures` within `failure_window_ms`
//! block the IP for `block_ms` (403 without a challenge). Unknown users are challenged
//! like agents with both HA1s (SHA-256 and MD5), so the replies do not reveal which
//! extensions exist; an agent with only one HA1 is offered only that algorithm (the way
//! to serve old phones that fail on a SHA-256 challenge). Stale nonces, nc replays and
//! unsupported algorithms are re-challenged without counting as failures.
//!
//! Other answers: 400 when the digest `uri` is not the Request-URI, a `*` Contact is not
//! alone with `Expires: 0`, or Contact/Expires are malformed; 403 when the To user (From
//! user for `authenticate_request`) is not the authenticated extension; 423 with
//! `Min-Expires` below `min_expires_s` (nothing changes); 500 for a CSeq not above the
//! binding's on the same Call-ID (RFC 3261 10.3 step 7). Credentials without `qop`
//! (RFC 2069 phones) are accepted; only the nonce lifetime bounds their replay.
//!
//! `secret` (32 bytes) should be drawn at random by the shell at startup; a restart then
//! makes every outstanding nonce stale, which phones handle silently.
//!
//! Bindings are keyed by the Contact URI as sent. A refresh from a new source address
//! or transport replaces the binding (`Unregistered{Replaced}` then `Registered`). A new
//! Contact URI on the same Call-ID (a phone that changed its contact, e.g. after learning
//! its public address) replaces that phone's earlier bindings. At most
//! `MAX_CONTACTS_PER_AGENT` bindings per agent: beyond that the soonest-expiring goes.

mod auth;
mod bindings;
mod blocking;
mod contact;
mod reply;

use super::{Millis, Transport};
use crate::engine::agents::AgentDirectory;
use crate::proto::sip::{Method, Request};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use auth::{mac, Check};
pub use bindings::{Binding, RegistrarEvent, UnregisterReason};
use blocking::Failures;
pub use reply::{contact_header_values, AuthResult, RegisterReply};

/// Bindings kept per agent (softphone + desk phone + mobile is plenty).
pub const MAX_CONTACTS_PER_AGENT: usize = 10;
/// Nonces whose highest nc is remembered.
pub const MAX_TRACKED_NONCES: usize = 65_536;
/// Source IPs whose failures are remembered.
pub const MAX_TRACKED_SOURCES: usize = 100_000;

/// Registrar settings (times in ms except expiries, which SIP gives in seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    pub realm: String,
    pub nonce_ttl_ms: u64,
    pub min_expires_s: u64,
    pub max_expires_s: u64,
    pub default_expires_s: u64,
    pub max_failures: u32,
    pub failure_window_ms: u64,
    pub block_ms: u64,
}

/// Realm when `[registrar] realm` is not given.
pub const DEFAULT_REALM: &str = "ccswitch";

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            realm: DEFAULT_REALM.into(),
            nonce_ttl_ms: 300_000,
            min_expires_s: 60,
            max_expires_s: 3600,
            default_expires_s: 3600,
            max_failures: 5,
            failure_window_ms: 60_000,
            block_ms: 300_000,
        }
    }
}

/// See the module documentation.
pub struct Registrar {
    dir: Arc<AgentDirectory>,
    cfg: RegistrarConfig,
    secret: [u8; 32],
    opaque: String,
    nonce_counter: u32,
    /// (nonce timestamp, nonce) -> highest nc seen.
    nc_seen: BTreeMap<(u64, String), u32>,
    /// Nonces issued before this (ms) that are not in `nc_seen` are stale.
    nc_floor: u64,
    failures: HashMap<IpAddr, Failures>,
    bindings: HashMap<String, Vec<Binding>>,
    /// (expires_at, extension, uri) of every binding.
    expiry: BTreeSet<(Millis, String, String)>,
}

impl Registrar {
    /// `secret` signs nonces: give it 32 random bytes at startup.
    pub fn new(dir: Arc<AgentDirectory>, cfg: RegistrarConfig, secret: [u8; 32]) -> Registrar {
        let opaque = hex::encode(&mac(&secret, &[b"opaque", cfg.realm.as_bytes()])[..8]);
        Registrar {
            dir,
            cfg,
            secret,
            opaque,
            nonce_counter: 0,
            nc_seen: BTreeMap::new(),
            nc_floor: 0,
            failures: HashMap::new(),
            bindings: HashMap::new(),
            expiry: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.cfg
    }

    /// Current bindings of `extension` (empty if none). Bindings past their expiry stay
    /// until `handle_timeout` runs at `poll_timeout`.
    pub fn contacts(&self, extension: &str) -> &[Binding] {
        self.bindings.get(extension).map_or(&[], Vec::as_slice)
    }

    pub fn is_registered(&self, extension: &str) -> bool {
        !self.contacts(extension).is_empty()
    }

    /// Extensions with at least one binding.
    pub fn registered(&self) -> impl Iterator<Item = &str> {
        self.bindings.keys().map(String::as_str)
    }

    /// The next binding expiry.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.expiry.first().map(|(t, _, _)| *t)
    }

    /// Removes bindings expired at `now`; also prunes the nonce and failure tables.
    pub fn handle_timeout(&mut self, now: Millis) -> Vec<RegistrarEvent> {
        let mut events = Vec::new();
        while let Some((t, ext, uri)) = self.expiry.first().cloned() {
            if t > now {
                break;
            }
            self.remove_binding(&ext, &uri, UnregisterReason::Expired, &mut events);
        }
        self.prune(now);
        events
    }

    /// Handles one REGISTER from `source` over `transport`.
    pub fn register(
        &mut self,
        now: Millis,
        source: SocketAddr,
        transport: Transport,
        req: &Request,
    ) -> RegisterReply {
        if req.method != Method::Register {
            return RegisterReply::plain(400, "Bad Request");
        }
        let hint = req.to.user.clone();
        let user = match self.check(now, source.ip(), req, "Authorization") {
            Check::Ok(user) => user,
            Check::Challenge { stale } => {
                return self.challenge(now, 401, hint.as_deref(), stale);
            }
            Check::Forbidden => return RegisterReply::plain(403, "Forbidden"),
            Check::Bad(why) => return RegisterReply::plain(400, why),
        };
        // One agent may not register contacts for another (RFC 3261 10.3 step 3).
        if req.to.user.as_deref() != Some(user.as_str()) {
            return RegisterReply::plain(403, "Forbidden");
        }
        self.apply(now, source, transport, req, &user)
    }

    /// Authenticates a non-REGISTER request from an agent (`Proxy-Authorization`, 407
    /// flow). The From user must be the authenticated extension.
    pub fn authenticate_request(
        &mut self,
        now: Millis,
        source: SocketAddr,
        req: &Request,
    ) -> AuthResult {
        let hint = req.from.user.clone();
        match self.check(now, source.ip(), req, "Proxy-Authorization") {
            Check::Ok(user) if req.from.user.as_deref() == Some(user.as_str()) => {
                AuthResult::Ok(user)
            }
            Check::Ok(_) | Check::Forbidden | Check::Bad(_) => AuthResult::Forbidden,
            Check::Challenge { stale } => {
                AuthResult::Challenge(self.challenge(now, 407, hint.as_deref(), stale))
            }
        }
    }

    fn prune(&mut self, now: Millis) {
        let window = self.cfg.failure_window_ms;
        self.failures.retain(|_, f| {
            while f.times.front().is_some_and(|t| now.since(*t) >= window) {
                f.times.pop_front();
            }
            f.blocked_until > now || !f.times.is_empty()
        });
        let ttl = self.cfg.nonce_ttl_ms;
        while let Some(((ts, _), _)) = self.nc_seen.first_key_value() {
            if now.as_u64().saturating_sub(*ts) <= ttl {
                break;
            }
            self.nc_seen.pop_first();
        }
    }
}

#[cfg(test)]
mod tests;
