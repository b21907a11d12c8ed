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

use super::{Millis, Transport};
use crate::config::{AgentConfig, AgentDirectory};
use crate::proto::digest::{self, Algorithm, Credentials};
use crate::proto::sip::{Method, Request};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

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

impl Default for RegistrarConfig {
    fn default() -> Self {
        crate::config::agents::RegistrarSection::default().to_registrar_config()
    }
}

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
}

impl UnregisterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnregisterReason::Expires0 => "expires0",
            UnregisterReason::Expired => "expired",
            UnregisterReason::Replaced => "replaced",
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

/// What to answer, and what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterReply {
    pub status: u16,
    pub reason: String,
    /// Extra response headers: `WWW-Authenticate`/`Proxy-Authenticate` (SHA-256 first),
    /// `Contact` (one per binding, with `expires`), `Min-Expires` (423), `Date` (200).
    pub headers: Vec<(&'static str, String)>,
    pub events: Vec<RegistrarEvent>,
}

impl RegisterReply {
    fn plain(status: u16, reason: &str) -> RegisterReply {
        RegisterReply {
            status,
            reason: reason.to_string(),
            headers: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Result of `authenticate_request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthResult {
    /// The authenticated extension.
    Ok(String),
    /// Answer with this (407 and `Proxy-Authenticate`).
    Challenge(RegisterReply),
    /// Answer 403 Forbidden: blocked source, or credentials for another user than From.
    Forbidden,
}

/// Outcome of checking one request's credentials.
enum Check {
    Ok(String),
    Challenge { stale: bool },
    Forbidden,
    Bad(&'static str),
}

#[derive(Clone, Debug, Default)]
struct Failures {
    times: VecDeque<Millis>,
    blocked_until: Millis,
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

    /// Whether `ip` is blocked at `now`.
    pub fn is_blocked(&self, now: Millis, ip: IpAddr) -> bool {
        self.failures
            .get(&ip)
            .is_some_and(|f| f.blocked_until > now)
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

    // ----- authentication -----

    fn check(&mut self, now: Millis, ip: IpAddr, req: &Request, header: &str) -> Check {
        if self.is_blocked(now, ip) {
            return Check::Forbidden;
        }
        let values: Vec<&str> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(header))
            .map(|(_, v)| v.as_str())
            .collect();
        if values.is_empty() {
            return Check::Challenge { stale: false };
        }
        // Several credentials may come (one per realm, or one per algorithm from phones
        // that answer every challenge): ours first, the first that verifies wins.
        let parsed: Vec<Credentials> = values
            .iter()
            .filter_map(|v| digest::parse_credentials(v))
            .collect();
        let dir = Arc::clone(&self.dir);
        let agent_of = |c: &Credentials| -> Option<&AgentConfig> {
            c.username()
                .and_then(|u| dir.get(u))
                .filter(|a| c.realm() == Some(a.realm.as_str()))
        };
        let ordered = parsed
            .iter()
            .filter(|c| agent_of(c).is_some())
            .chain(parsed.iter().filter(|c| agent_of(c).is_none()));
        let (mut supported, mut uri_mismatch, mut verified) = (false, false, None);
        for c in ordered {
            let Some(alg) = Algorithm::from_param(c.algorithm()) else {
                continue;
            };
            supported = true;
            let Some(uri) = c.uri() else { continue };
            if uri != req.uri {
                uri_mismatch = true;
                continue;
            }
            let Some(agent) = agent_of(c) else { continue };
            let ha1 = match alg {
                Algorithm::Md5 => agent.ha1_md5.as_deref(),
                Algorithm::Sha256 => agent.ha1_sha256.as_deref(),
            };
            if ha1.is_some_and(|h| digest::verify(alg, h, req.method.as_str(), uri, c)) {
                verified = Some((c, agent));
                break;
            }
        }
        let Some((creds, agent)) = verified else {
            if !parsed.is_empty() && !supported {
                // Not a password fault (e.g. MD5-sess only): offer what we support.
                return Check::Challenge { stale: false };
            }
            if uri_mismatch {
                return Check::Bad("Bad Request (digest uri differs from Request-URI)");
            }
            return self.failed(now, ip);
        };
        let user = agent.extension.clone();
        // The password is right; what remains is freshness of the nonce.
        let Some(nonce) = creds.nonce() else {
            return Check::Challenge { stale: true };
        };
        let Some(ts) = self.nonce_time(nonce, &agent.realm) else {
            return Check::Challenge { stale: true };
        };
        if ts > now.as_u64() || now.as_u64() - ts > self.cfg.nonce_ttl_ms {
            return Check::Challenge { stale: true };
        }
        if creds.opaque().is_some_and(|o| o != self.opaque) {
            return Check::Challenge { stale: true };
        }
        if creds.qop().is_some() {
            let Some(nc) = creds.nc_value() else {
                return Check::Challenge { stale: false };
            };
            let key = (ts, nonce.to_string());
            match self.nc_seen.get_mut(&key) {
                Some(seen) if nc <= *seen => return Check::Challenge { stale: false },
                Some(seen) => *seen = nc,
                None if ts < self.nc_floor => return Check::Challenge { stale: true },
                None => {
                    self.nc_seen.insert(key, nc);
                    while self.nc_seen.len() > MAX_TRACKED_NONCES {
                        if let Some(((t, _), _)) = self.nc_seen.pop_first() {
                            self.nc_floor = self.nc_floor.max(t + 1);
                        }
                    }
                }
            }
        }
        // No qop (RFC 2069 clients): nothing to count, the nonce lifetime bounds replays.
        Check::Ok(user)
    }

    /// Counts a failure from `ip`; blocks it when the limit is reached.
    fn failed(&mut self, now: Millis, ip: IpAddr) -> Check {
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

    fn new_nonce(&mut self, now: Millis, realm: &str) -> String {
        self.nonce_counter = self.nonce_counter.wrapping_add(1);
        let head = format!(
            "{:012x}{:08x}",
            now.as_u64() & 0xffff_ffff_ffff,
            self.nonce_counter
        );
        let tag = mac(&self.secret, &[b"nonce", head.as_bytes(), realm.as_bytes()]);
        format!("{head}{}", hex::encode(&tag[..16]))
    }

    /// The issue time of a nonce we made for `realm`, if it is one.
    fn nonce_time(&self, nonce: &str, realm: &str) -> Option<u64> {
        if nonce.len() != 52 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let (head, tag) = nonce.split_at(20);
        let want = mac(&self.secret, &[b"nonce", head.as_bytes(), realm.as_bytes()]);
        if !digest::ct_eq(hex::encode(&want[..16]).as_bytes(), tag.as_bytes()) {
            return None;
        }
        u64::from_str_radix(&head[..12], 16).ok()
    }

    /// 401/407 with one challenge per algorithm the user has (both for unknown users,
    /// so the reply does not tell which extensions exist), SHA-256 first.
    fn challenge(
        &mut self,
        now: Millis,
        status: u16,
        user: Option<&str>,
        stale: bool,
    ) -> RegisterReply {
        let dir = Arc::clone(&self.dir);
        let agent = user.and_then(|u| dir.get(u));
        let realm = agent.map_or(self.cfg.realm.clone(), |a| a.realm.clone());
        let realm = realm.as_str();
        let mut algs = Vec::with_capacity(2);
        if agent.is_none_or(|a| a.ha1_sha256.is_some()) {
            algs.push(Algorithm::Sha256);
        }
        if agent.is_none_or(|a| a.ha1_md5.is_some()) {
            algs.push(Algorithm::Md5);
        }
        let (name, reason) = if status == 407 {
            ("Proxy-Authenticate", "Proxy Authentication Required")
        } else {
            ("WWW-Authenticate", "Unauthorized")
        };
        let nonce = self.new_nonce(now, realm);
        let headers = algs
            .into_iter()
            .map(|algorithm| {
                (
                    name,
                    digest::challenge(&digest::Challenge {
                        realm,
                        nonce: &nonce,
                        opaque: Some(&self.opaque),
                        algorithm,
                        stale,
                    }),
                )
            })
            .collect();
        RegisterReply {
            status,
            reason: reason.into(),
            headers,
            events: Vec::new(),
        }
    }

    // ----- bindings -----

    fn apply(
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

    /// 200 OK listing every current binding with its remaining seconds, and Date.
    fn ok(&self, now: Millis, ext: &str, events: Vec<RegistrarEvent>) -> RegisterReply {
        let mut headers: Vec<(&'static str, String)> = self
            .contacts(ext)
            .iter()
            .map(|b| {
                let left = b.expires_at.since(now).div_ceil(1000);
                ("Contact", format!("<{}>;expires={left}", b.uri))
            })
            .collect();
        headers.push(("Date", http_date(now)));
        RegisterReply {
            status: 200,
            reason: "OK".into(),
            headers,
            events,
        }
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

    fn remove_binding(
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

fn mac(secret: &[u8; 32], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        m.update(&(p.len() as u32).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// RFC 1123 date in GMT (RFC 3261 20.17).
fn http_date(now: Millis) -> String {
    let t = chrono::DateTime::from_timestamp_millis(now.as_i64()).unwrap_or_default();
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// delta-seconds; larger than 2^32-1 is taken as 2^32-1 (RFC 3261 20.19 / 10.2.1).
fn parse_delta(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        v.parse::<u64>()
            .unwrap_or(u64::MAX)
            .min(u64::from(u32::MAX)),
    )
}

enum ContactSpec {
    Star,
    Uri { uri: String, expires: Option<u64> },
}

/// Every Contact of the request, in order; None if one is malformed.
fn contact_list(req: &Request) -> Option<Vec<ContactSpec>> {
    let mut out = Vec::new();
    for (_, v) in req
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Contact") || n == "m")
    {
        for part in split_outside(v, ',')? {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            if part == "*" {
                out.push(ContactSpec::Star);
                continue;
            }
            let (uri, params) = contact_parts(part)?;
            let expires = params.split(';').find_map(|p| {
                let (n, v) = p.split_once('=')?;
                n.trim()
                    .eq_ignore_ascii_case("expires")
                    .then(|| parse_delta(v.trim().trim_matches('"')))
                    .flatten()
            });
            out.push(ContactSpec::Uri {
                uri: uri.to_string(),
                expires,
            });
        }
    }
    Some(out)
}

/// (URI, header params) of one contact-param.
fn contact_parts(s: &str) -> Option<(&str, &str)> {
    if let Some(lt) = find_outside_quotes(s, '<') {
        let rest = &s[lt + 1..];
        let gt = rest.find('>')?;
        let uri = rest[..gt].trim();
        (!uri.is_empty() && uri.contains(':')).then_some((uri, &rest[gt + 1..]))
    } else {
        let (uri, params) = s.split_once(';').unwrap_or((s, ""));
        let uri = uri.trim();
        (uri.contains(':') && !uri.contains([' ', '"'])).then_some((uri, params))
    }
}

fn find_outside_quotes(s: &str, want: char) -> Option<usize> {
    let mut in_q = false;
    let mut esc = false;
    for (i, c) in s.char_indices() {
        if in_q {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_q = false;
            }
        } else if c == '"' {
            in_q = true;
        } else if c == want {
            return Some(i);
        }
    }
    None
}

/// Splits at `sep` outside quotes and angle brackets; None if a quote is left open.
fn split_outside(s: &str, sep: char) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let (mut start, mut in_q, mut esc, mut angle) = (0, false, false, false);
    for (i, c) in s.char_indices() {
        if in_q {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_q = false;
            }
            continue;
        }
        match c {
            '"' => in_q = true,
            '<' => angle = true,
            '>' => angle = false,
            c if c == sep && !angle => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_q {
        return None;
    }
    out.push(&s[start..]);
    Some(out)
}

/// Lets tests and tools write the Contact list of a reply.
pub fn contact_header_values(reply: &RegisterReply) -> Vec<&str> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| *n == "Contact")
        .map(|(_, v)| v.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::agents::{FeatureCodes, RegistrarSection};
    use crate::proto::digest::{ha1, QopAuth};
    use crate::proto::sip::{parse, Message};
    use std::collections::BTreeMap;

    const SRC: &str = "192.0.2.7:5062";

    fn agent(ext: &str, pw: &str, md5: bool, sha: bool) -> AgentConfig {
        AgentConfig {
            extension: ext.into(),
            name: format!("Agent {ext}"),
            skills: BTreeMap::new(),
            languages: vec!["en".into()],
            queues: vec![],
            ha1_md5: md5.then(|| ha1(Algorithm::Md5, ext, "ccswitch", pw)),
            ha1_sha256: sha.then(|| ha1(Algorithm::Sha256, ext, "ccswitch", pw)),
            realm: "ccswitch".into(),
        }
    }

    fn cfg() -> RegistrarConfig {
        RegistrarConfig {
            realm: "ccswitch".into(),
            nonce_ttl_ms: 300_000,
            min_expires_s: 60,
            max_expires_s: 3600,
            default_expires_s: 1800,
            max_failures: 3,
            failure_window_ms: 60_000,
            block_ms: 120_000,
        }
    }

    fn registrar() -> Registrar {
        let dir = AgentDirectory::new(
            vec![
                agent("1001", "pw1001", true, true),
                agent("1002", "pw1002", true, false),
            ],
            RegistrarSection::default(),
            FeatureCodes::default(),
        );
        Registrar::new(Arc::new(dir), cfg(), [7; 32])
    }

    struct Reg<'a> {
        user: &'a str,
        contacts: Vec<&'a str>,
        expires: Option<&'a str>,
        call_id: &'a str,
        cseq: u32,
        auth: Option<String>,
    }

    fn reg(user: &str) -> Reg<'_> {
        Reg {
            user,
            contacts: vec!["<sip:1001@10.0.0.5:5062;transport=udp>"],
            expires: None,
            call_id: "reg-1",
            cseq: 1,
            auth: None,
        }
    }

    fn build(r: &Reg, method: &str) -> Request {
        let mut s = format!(
            "{method} sip:ccswitch.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK{}\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@ccswitch.example>;tag=f1\r\nTo: <sip:{u}@ccswitch.example>\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n",
            r.cseq, r.call_id, r.cseq, u = r.user
        );
        for c in &r.contacts {
            s.push_str(&format!("Contact: {c}\r\n"));
        }
        if let Some(e) = r.expires {
            s.push_str(&format!("Expires: {e}\r\n"));
        }
        if let Some(a) = &r.auth {
            let name = if method == "REGISTER" {
                "Authorization"
            } else {
                "Proxy-Authorization"
            };
            s.push_str(&format!("{name}: {a}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        match parse(s.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    /// Answers the challenge in `reply` for `alg` the way a phone does.
    fn answer(
        reply: &RegisterReply,
        alg: Algorithm,
        user: &str,
        pw: &str,
        nc: u32,
        method: &str,
    ) -> String {
        let ch = reply
            .headers
            .iter()
            .filter_map(|(_, v)| digest::parse_credentials(v))
            .find(|c| Algorithm::from_param(c.algorithm()) == Some(alg))
            .expect("challenge for the algorithm");
        answer_nonce(ch.nonce().unwrap(), ch.opaque(), alg, user, pw, nc, method)
    }

    fn answer_nonce(
        nonce: &str,
        opaque: Option<&str>,
        alg: Algorithm,
        user: &str,
        pw: &str,
        nc: u32,
        method: &str,
    ) -> String {
        let uri = "sip:ccswitch.example";
        let h = ha1(alg, user, "ccswitch", pw);
        let nc = format!("{nc:08x}");
        let resp = digest::response(
            alg,
            &h,
            method,
            uri,
            nonce,
            Some(QopAuth {
                nc: &nc,
                cnonce: "c0ffee",
            }),
        );
        let mut a = format!(
            "Digest username=\"{user}\", realm=\"ccswitch\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={}, cnonce=\"c0ffee\", qop=auth, nc={nc}",
            alg.as_str()
        );
        if let Some(o) = opaque {
            a.push_str(&format!(", opaque=\"{o}\""));
        }
        a
    }

    fn src() -> SocketAddr {
        SRC.parse().unwrap()
    }

    /// REGISTER without credentials, then with the right ones: the 200.
    fn login(r: &mut Registrar, now: Millis, mut m: Reg) -> RegisterReply {
        m.auth = None;
        let ch = r.register(now, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(ch.status, 401);
        m.auth = Some(answer(
            &ch,
            Algorithm::Sha256,
            m.user,
            "pw1001",
            1,
            "REGISTER",
        ));
        m.cseq += 1;
        r.register(now, src(), Transport::Udp, &build(&m, "REGISTER"))
    }

    #[test]
    fn challenge_then_ok_with_contact_expires() {
        let mut r = registrar();
        let t0 = Millis(1_700_000_000_000);
        let ch = r.register(t0, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
        assert_eq!((ch.status, ch.reason.as_str()), (401, "Unauthorized"));
        let www: Vec<&str> = ch
            .headers
            .iter()
            .filter(|(n, _)| *n == "WWW-Authenticate")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(www.len(), 2);
        assert!(www[0].contains("algorithm=SHA-256"), "{}", www[0]);
        assert!(www[1].contains("algorithm=MD5"));
        assert!(www[0].contains("qop=\"auth\"") && www[0].contains("realm=\"ccswitch\""));
        assert!(!www[0].contains("stale"));
        assert!(ch.events.is_empty());
        assert!(!r.is_registered("1001"));

        for (nc, alg) in [(1, Algorithm::Sha256), (2, Algorithm::Md5)] {
            let mut m = reg("1001");
            m.cseq = 1 + nc;
            m.expires = Some("600");
            m.auth = Some(answer(&ch, alg, "1001", "pw1001", nc, "REGISTER"));
            let ok = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
            assert_eq!(ok.status, 200, "{alg:?} {ok:?}");
            assert_eq!(
                contact_header_values(&ok),
                vec!["<sip:1001@10.0.0.5:5062;transport=udp>;expires=600"]
            );
            assert_eq!(ok.header("Date"), Some("Tue, 14 Nov 2023 22:13:20 GMT"));
            if alg == Algorithm::Sha256 {
                assert!(matches!(
                    &ok.events[..],
                    [RegistrarEvent::Registered { extension, contact }]
                        if extension == "1001" && contact.source == src()
                            && contact.transport == Transport::Udp
                            && contact.expires_at == t0.plus(600_000)
                ));
            } else {
                // A refresh from the same place is silent.
                assert!(ok.events.is_empty());
            }
        }
        assert!(r.is_registered("1001"));
        assert_eq!(r.poll_timeout(), Some(t0.plus(600_000)));
    }

    #[test]
    fn md5_only_agent_is_offered_md5_only() {
        let mut r = registrar();
        let ch = r.register(
            Millis(1000),
            src(),
            Transport::Udp,
            &build(&reg("1002"), "REGISTER"),
        );
        assert_eq!(ch.headers.len(), 1);
        assert!(ch.headers[0].1.contains("algorithm=MD5"));
        // Unknown users get both, like a known one would.
        let ch = r.register(
            Millis(1000),
            src(),
            Transport::Udp,
            &build(&reg("4242"), "REGISTER"),
        );
        assert_eq!(ch.status, 401);
        assert_eq!(ch.headers.len(), 2);
    }

    #[test]
    fn wrong_password_then_block_then_unblocked() {
        let mut r = registrar();
        let t0 = Millis(10_000_000);
        let mut now = t0;
        let mut last = None;
        for i in 0..3 {
            let ch = r.register(now, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
            assert_eq!(ch.status, 401);
            let mut m = reg("1001");
            m.cseq = 2 + i;
            m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "nope", 1, "REGISTER"));
            let rep = r.register(now, src(), Transport::Udp, &build(&m, "REGISTER"));
            last = Some(rep.status);
            if i < 2 {
                assert_eq!(rep.status, 401, "failure {i}");
                assert!(rep.header("WWW-Authenticate").is_some());
            }
            now = now.plus(1000);
        }
        // The third failure blocks: 403 without a challenge, even for right credentials.
        assert_eq!(last, Some(403));
        let rep = r.register(now, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
        assert_eq!(rep.status, 403);
        assert!(rep.headers.is_empty());
        assert!(r.is_blocked(now, src().ip()));
        // Another address is not blocked.
        let other: SocketAddr = "198.51.100.1:5060".parse().unwrap();
        let rep = r.register(now, other, Transport::Udp, &build(&reg("1001"), "REGISTER"));
        assert_eq!(rep.status, 401);
        // After block_ms the address may try again.
        let later = t0.plus(2000 + 120_000);
        assert!(!r.is_blocked(later, src().ip()));
        assert_eq!(login(&mut r, later, reg("1001")).status, 200);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let mut r = registrar();
        let mut now = Millis(5_000_000);
        for i in 0..6 {
            let ch = r.register(now, src(), Transport::Udp, &build(&reg("4242"), "REGISTER"));
            let mut m = reg("4242");
            m.cseq = 2 + i;
            m.auth = Some(answer(&ch, Algorithm::Md5, "4242", "x", 1, "REGISTER"));
            let rep = r.register(now, src(), Transport::Udp, &build(&m, "REGISTER"));
            assert_eq!(rep.status, 401, "unknown user, failure {i}");
            now = now.plus(40_000);
        }
    }

    #[test]
    fn stale_nonce_gets_stale_true_and_forged_nonce_too() {
        let mut r = registrar();
        let t0 = Millis(50_000_000);
        let ch = r.register(t0, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
        let mut m = reg("1001");
        m.cseq = 2;
        m.auth = Some(answer(
            &ch,
            Algorithm::Sha256,
            "1001",
            "pw1001",
            1,
            "REGISTER",
        ));
        let late = t0.plus(300_001);
        let rep = r.register(late, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 401);
        assert!(rep.headers.iter().all(|(_, v)| v.ends_with("stale=true")));
        // A nonce we did not make (another process's secret), right password: stale.
        let mut other = Registrar::new(Arc::clone(&r.dir), cfg(), [9; 32]);
        let ch2 = other.register(
            late,
            src(),
            Transport::Udp,
            &build(&reg("1001"), "REGISTER"),
        );
        m.cseq = 3;
        m.auth = Some(answer(
            &ch2,
            Algorithm::Md5,
            "1001",
            "pw1001",
            1,
            "REGISTER",
        ));
        let rep = r.register(late, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 401);
        assert!(rep.headers[0].1.contains("stale=true"));
        // Neither counted as a failure.
        assert!(r.failures.is_empty());
        // The fresh nonce works.
        m.cseq = 4;
        m.auth = Some(answer(
            &rep,
            Algorithm::Md5,
            "1001",
            "pw1001",
            1,
            "REGISTER",
        ));
        assert_eq!(
            r.register(late, src(), Transport::Udp, &build(&m, "REGISTER"))
                .status,
            200
        );
    }

    #[test]
    fn nc_replay_is_challenged() {
        let mut r = registrar();
        let t0 = Millis(60_000_000);
        let ch = r.register(t0, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
        let mut m = reg("1001");
        m.cseq = 2;
        m.auth = Some(answer(
            &ch,
            Algorithm::Sha256,
            "1001",
            "pw1001",
            5,
            "REGISTER",
        ));
        assert_eq!(
            r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"))
                .status,
            200
        );
        // The same credentials again (a captured request replayed), and a lower nc.
        for nc in [5, 4] {
            m.cseq += 1;
            m.auth = Some(answer(
                &ch,
                Algorithm::Sha256,
                "1001",
                "pw1001",
                nc,
                "REGISTER",
            ));
            let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
            assert_eq!(rep.status, 401, "nc {nc}");
            assert!(!rep.headers[0].1.contains("stale"));
        }
        // The next nc on the same nonce is fine (a phone's refresh).
        m.cseq += 1;
        m.auth = Some(answer(
            &ch,
            Algorithm::Sha256,
            "1001",
            "pw1001",
            6,
            "REGISTER",
        ));
        assert_eq!(
            r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"))
                .status,
            200
        );
    }

    #[test]
    fn to_user_must_be_the_authenticated_user() {
        let mut r = registrar();
        let t0 = Millis(1000);
        let ch = r.register(t0, src(), Transport::Udp, &build(&reg("1002"), "REGISTER"));
        let mut m = reg("1002");
        m.cseq = 2;
        // 1001's credentials in a REGISTER for 1002.
        m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER"));
        let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 403);
        assert!(!r.is_registered("1002") && !r.is_registered("1001"));
    }

    #[test]
    fn expiry_unregisters_and_expires_zero_removes_one() {
        let mut r = registrar();
        let t0 = Millis(1_000_000);
        let mut m = reg("1001");
        m.contacts = vec![
            "<sip:1001@10.0.0.5:5062>;expires=120",
            "\"Desk, 2\" <sip:1001@10.0.0.6:5060>",
        ];
        m.expires = Some("300");
        let ok = login(&mut r, t0, m);
        assert_eq!(ok.status, 200);
        assert_eq!(
            contact_header_values(&ok),
            vec![
                "<sip:1001@10.0.0.5:5062>;expires=120",
                "<sip:1001@10.0.0.6:5060>;expires=300"
            ]
        );
        assert_eq!(ok.events.len(), 2);
        assert_eq!(r.contacts("1001").len(), 2);
        assert_eq!(r.poll_timeout(), Some(t0.plus(120_000)));
        assert!(r.handle_timeout(t0.plus(119_999)).is_empty());
        let ev = r.handle_timeout(t0.plus(120_000));
        assert_eq!(
            ev,
            vec![RegistrarEvent::Unregistered {
                extension: "1001".into(),
                contact_uri: "sip:1001@10.0.0.5:5062".into(),
                why: UnregisterReason::Expired
            }]
        );
        assert!(r.is_registered("1001"));
        // Expires: 0 on the remaining one (the phone reuses its nonce with nc 2).
        let ch_nonce = r.new_nonce(t0.plus(130_000), "ccswitch");
        let mut m = reg("1001");
        m.contacts = vec!["<sip:1001@10.0.0.6:5060>"];
        m.expires = Some("0");
        m.call_id = "reg-2";
        m.auth = Some(answer_nonce(
            &ch_nonce,
            None,
            Algorithm::Md5,
            "1001",
            "pw1001",
            1,
            "REGISTER",
        ));
        let rep = r.register(
            t0.plus(130_000),
            src(),
            Transport::Udp,
            &build(&m, "REGISTER"),
        );
        assert_eq!(rep.status, 200);
        assert_eq!(contact_header_values(&rep), Vec::<&str>::new());
        assert_eq!(
            rep.events,
            vec![RegistrarEvent::Unregistered {
                extension: "1001".into(),
                contact_uri: "sip:1001@10.0.0.6:5060".into(),
                why: UnregisterReason::Expires0
            }]
        );
        assert!(!r.is_registered("1001"));
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn star_removes_all_and_needs_expires_zero() {
        let mut r = registrar();
        let t0 = Millis(1_000_000);
        let mut m = reg("1001");
        m.contacts = vec!["<sip:a@10.0.0.5>, <sip:b@10.0.0.5>", "<sip:c@10.0.0.5>"];
        assert_eq!(login(&mut r, t0, m).status, 200);
        assert_eq!(r.contacts("1001").len(), 3);
        let mut m = reg("1001");
        m.contacts = vec!["*"];
        m.cseq = 10;
        let ch = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        m.cseq = 11;
        m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER"));
        // `*` without Expires: 0 is a bad request.
        let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 400);
        m.cseq = 12;
        m.expires = Some("0");
        m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 2, "REGISTER"));
        let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 200);
        assert_eq!(rep.events.len(), 3);
        assert!(rep.events.iter().all(|e| matches!(
            e,
            RegistrarEvent::Unregistered {
                why: UnregisterReason::Expires0,
                ..
            }
        )));
        assert!(!r.is_registered("1001"));
    }

    #[test]
    fn interval_too_brief_and_clamp() {
        let mut r = registrar();
        let t0 = Millis(1_000_000);
        let mut m = reg("1001");
        m.expires = Some("30");
        let ch = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        m.cseq = 2;
        m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER"));
        let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(
            (rep.status, rep.reason.as_str()),
            (423, "Interval Too Brief")
        );
        assert_eq!(rep.header("Min-Expires"), Some("60"));
        assert!(!r.is_registered("1001"));
        m.cseq = 3;
        m.expires = Some("99999999999");
        m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 2, "REGISTER"));
        let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 200);
        assert!(contact_header_values(&rep)[0].ends_with(";expires=3600"));
        // No Expires at all: the default.
        let mut m = reg("1001");
        m.cseq = 4;
        m.auth = Some(answer(&ch, Algorithm::Md5, "1001", "pw1001", 3, "REGISTER"));
        let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert!(contact_header_values(&rep)[0].ends_with(";expires=1800"));
    }

    #[test]
    fn new_source_replaces_and_same_call_id_moves_contact() {
        let mut r = registrar();
        let t0 = Millis(1_000_000);
        assert_eq!(login(&mut r, t0, reg("1001")).status, 200);
        // The same contact now from another address (NAT rebinding): replaced.
        let nat: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let ch_nonce = r.new_nonce(t0, "ccswitch");
        let mut m = reg("1001");
        m.cseq = 5;
        m.auth = Some(answer_nonce(
            &ch_nonce,
            None,
            Algorithm::Md5,
            "1001",
            "pw1001",
            1,
            "REGISTER",
        ));
        let rep = r.register(t0.plus(1000), nat, Transport::Tcp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 200);
        assert!(matches!(
            &rep.events[..],
            [RegistrarEvent::Unregistered { why: UnregisterReason::Replaced, .. },
             RegistrarEvent::Registered { contact, .. }]
                if contact.source == nat && contact.transport == Transport::Tcp
        ));
        // The same phone (Call-ID) registers a new contact: the old one goes.
        m.cseq = 6;
        m.contacts = vec!["<sip:1001@203.0.113.9:40000;ob>"];
        m.auth = Some(answer_nonce(
            &ch_nonce,
            None,
            Algorithm::Md5,
            "1001",
            "pw1001",
            2,
            "REGISTER",
        ));
        let rep = r.register(t0.plus(2000), nat, Transport::Tcp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 200);
        assert_eq!(r.contacts("1001").len(), 1);
        assert_eq!(r.contacts("1001")[0].uri, "sip:1001@203.0.113.9:40000;ob");
        // An older CSeq on the same Call-ID is refused.
        m.cseq = 3;
        m.auth = Some(answer_nonce(
            &ch_nonce,
            None,
            Algorithm::Md5,
            "1001",
            "pw1001",
            3,
            "REGISTER",
        ));
        let rep = r.register(t0.plus(3000), nat, Transport::Tcp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 500);
        // Several phones (different Call-IDs) coexist, up to the cap.
        for i in 0..(MAX_CONTACTS_PER_AGENT + 2) {
            let cid = format!("phone-{i}");
            let uri = format!("<sip:1001@10.1.0.{i}:5060>");
            let mut m = reg("1001");
            m.call_id = &cid;
            m.contacts = vec![&uri];
            m.auth = Some(answer_nonce(
                &ch_nonce,
                None,
                Algorithm::Md5,
                "1001",
                "pw1001",
                10 + i as u32,
                "REGISTER",
            ));
            let rep = r.register(
                t0.plus(4000 + i as u64),
                src(),
                Transport::Udp,
                &build(&m, "REGISTER"),
            );
            assert_eq!(rep.status, 200);
        }
        assert_eq!(r.contacts("1001").len(), MAX_CONTACTS_PER_AGENT);
        assert!(r.contacts("1001").iter().any(|b| b.call_id == "phone-11"));
    }

    #[test]
    fn invite_feature_code_uses_407() {
        let mut r = registrar();
        let t0 = Millis(1_000_000);
        let mut m = reg("1001");
        m.contacts = vec!["<sip:1001@10.0.0.5:5062>"];
        let inv = build(&m, "INVITE");
        let AuthResult::Challenge(ch) = r.authenticate_request(t0, src(), &inv) else {
            panic!("challenge expected");
        };
        assert_eq!(
            (ch.status, ch.reason.as_str()),
            (407, "Proxy Authentication Required")
        );
        assert_eq!(ch.headers[0].0, "Proxy-Authenticate");
        m.cseq = 2;
        m.auth = Some(answer(
            &ch,
            Algorithm::Sha256,
            "1001",
            "pw1001",
            1,
            "INVITE",
        ));
        assert_eq!(
            r.authenticate_request(t0, src(), &build(&m, "INVITE")),
            AuthResult::Ok("1001".into())
        );
        // Credentials for REGISTER do not authenticate an INVITE (method is hashed).
        m.cseq = 3;
        m.auth = Some(answer(
            &ch,
            Algorithm::Sha256,
            "1001",
            "pw1001",
            2,
            "REGISTER",
        ));
        assert!(matches!(
            r.authenticate_request(t0, src(), &build(&m, "INVITE")),
            AuthResult::Challenge(_)
        ));
    }

    #[test]
    fn garbage_credentials_never_panic_and_count_as_failures() {
        let mut r = registrar();
        let t0 = Millis(1_000_000);
        for (i, junk) in [
            "Digest",
            "Digest username=\"1001\"",
            "Basic Zm9vOmJhcg==",
            "Digest username=\"1001\", realm=\"ccswitch\", nonce=\"zz\", uri=\"sip:ccswitch.example\", response=\"00\"",
        ]
        .iter()
        .enumerate()
        {
            let mut m = reg("1001");
            m.cseq = i as u32 + 1;
            m.auth = Some(junk.to_string());
            let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
            assert!(matches!(rep.status, 401 | 403), "{junk}: {}", rep.status);
        }
        assert!(r.is_blocked(t0, src().ip()));
    }

    #[test]
    fn digest_uri_must_match() {
        let mut r = registrar();
        let ch = r.register(
            Millis(1),
            src(),
            Transport::Udp,
            &build(&reg("1001"), "REGISTER"),
        );
        let mut m = reg("1001");
        m.cseq = 2;
        m.auth = Some(
            answer(&ch, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER")
                .replace("uri=\"sip:ccswitch.example\"", "uri=\"sip:other.example\""),
        );
        assert_eq!(
            r.register(Millis(1), src(), Transport::Udp, &build(&m, "REGISTER"))
                .status,
            400
        );
    }

    #[test]
    fn nonce_table_is_bounded_and_evicted_nonces_are_stale() {
        let mut r = registrar();
        let t0 = Millis(1_000_000);
        let first = r.new_nonce(t0, "ccswitch");
        let mut m = reg("1001");
        m.auth = Some(answer_nonce(
            &first,
            None,
            Algorithm::Md5,
            "1001",
            "pw1001",
            1,
            "REGISTER",
        ));
        assert_eq!(
            r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"))
                .status,
            200
        );
        // Pretend the table overflowed past the first nonce.
        r.nc_floor = t0.as_u64() + 1;
        r.nc_seen.clear();
        m.cseq = 2;
        m.auth = Some(answer_nonce(
            &first,
            None,
            Algorithm::Md5,
            "1001",
            "pw1001",
            1,
            "REGISTER",
        ));
        let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 401);
        assert!(rep.headers[0].1.contains("stale=true"));
    }

    #[test]
    fn one_of_several_credentials_may_verify() {
        let mut r = registrar();
        let t0 = Millis(1_000_000);
        let ch = r.register(t0, src(), Transport::Udp, &build(&reg("1001"), "REGISTER"));
        let good = answer(&ch, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER");
        let bad = answer(&ch, Algorithm::Sha256, "1001", "garbled", 1, "REGISTER");
        let mut m = reg("1001");
        m.cseq = 2;
        m.auth = Some(format!("{bad}\r\nAuthorization: {good}"));
        let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 200);
        assert!(r.failures.is_empty());
        // Only an unsupported algorithm: re-challenged, not counted.
        let mut m = reg("1001");
        m.cseq = 3;
        m.auth = Some(good.replace("algorithm=MD5", "algorithm=MD5-sess"));
        let rep = r.register(t0, src(), Transport::Udp, &build(&m, "REGISTER"));
        assert_eq!(rep.status, 401);
        assert!(r.failures.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Whatever a peer puts in Authorization, Contact and Expires: no panic, and only
        /// the statuses a registrar gives.
        #[test]
        fn peer_input_never_panics(
            auth in "[ -~]{0,120}",
            contact in proptest::prop_oneof![
                "<sip:1001@10\\.0\\.0\\.[0-9]{1,2}>;expires=[0-9]{0,6}",
                "\\*",
                "<sip:[a-z]{1,4}@h>, <sip:[a-z]{1,4}@h>;q=0\\.[0-9]",
                "[ -~]{0,60}",
            ],
            expires in proptest::prop_oneof!["[0-9]{1,5}", "[0-9a-z]{0,8}"],
            digest_like in proptest::bool::ANY,
            valid_creds in proptest::bool::ANY,
        ) {
            let mut r = registrar();
            let auth = if digest_like { format!("Digest {auth}") } else { auth };
            let text = format!(
                "REGISTER sip:ccswitch.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK1\r\nFrom: <sip:1001@x>;tag=1\r\nTo: <sip:1001@x>\r\nCall-ID: p\r\nCSeq: 1 REGISTER\r\nContact: {contact}\r\nExpires: {expires}\r\nAuthorization: {auth}\r\nContent-Length: 0\r\n\r\n"
            );
            if let Ok(Message::Request(mut req)) = parse(text.as_bytes()) {
                // Half the time with credentials that verify, to reach the binding code.
                if valid_creds {
                    let nonce = r.new_nonce(Millis(1), "ccswitch");
                    // The template's Request-URI is the one `answer_nonce` signs.
                    let ok = answer_nonce(&nonce, None, Algorithm::Md5, "1001", "pw1001", 1, "REGISTER");
                    req.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("Authorization"));
                    req.headers.push(("Authorization".into(), ok));
                }
                let rep = r.register(Millis(1), src(), Transport::Udp, &req);
                proptest::prop_assert!(matches!(rep.status, 200 | 400 | 401 | 403 | 423 | 500));
                let _ = r.authenticate_request(Millis(2), src(), &req);
                let _ = r.handle_timeout(Millis(u64::MAX));
            }
        }
    }
}
