//! Digest verification (RFC 7616): checking credentials against the agent directory,
//! stateless signed nonces with replay tracking, and the 401/407 challenges.

use super::reply::RegisterReply;
use super::{Registrar, MAX_TRACKED_NONCES};
use crate::engine::agents::AgentConfig;
use crate::engine::Millis;
use crate::proto::digest::{self, Algorithm, Credentials};
use crate::proto::sip::Request;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::net::IpAddr;
use std::sync::Arc;

/// Outcome of checking one request's credentials.
pub(super) enum Check {
    Ok(String),
    Challenge { stale: bool },
    Forbidden,
    Bad(&'static str),
}

impl Registrar {
    pub(super) fn check(&mut self, now: Millis, ip: IpAddr, req: &Request, header: &str) -> Check {
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
                .and_then(|u| dir.credentials(u))
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

    pub(super) fn new_nonce(&mut self, now: Millis, realm: &str) -> String {
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
    pub(super) fn challenge(
        &mut self,
        now: Millis,
        status: u16,
        user: Option<&str>,
        stale: bool,
    ) -> RegisterReply {
        let dir = Arc::clone(&self.dir);
        let agent = user.and_then(|u| dir.credentials(u));
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
}

pub(super) fn mac(secret: &[u8; 32], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for p in parts {
        m.update(&(p.len() as u32).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}
