//! Browser sessions, sans-IO: made at sign-in, found by the cookie's random id, ended by
//! sign-out, a lifetime, or an idle timeout. Each session has its own CSRF token that
//! state-changing requests must echo in `X-CSRF-Token` (the cookie alone, which a browser
//! attaches by itself, is not enough).
//!
//! Kept in memory and mirrored in the store by the shell (`api::auth_routes`), so a restart
//! keeps them: `restore` puts stored sessions back. Sessions are keyed by the SHA-256 of
//! their id (the store keeps only that hash), so a lookup's timing says nothing about valid
//! ids, and their number is bounded (the least recently used goes first). `last_seen` is
//! written back at most once per `TOUCH_INTERVAL_MS` (`take_touch`), not per request: after a
//! restart, idle time counts from the last value written.

use super::{constant_time_eq, Role};
use crate::engine::Millis;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// `last_seen` goes back to the store at most this often per session.
pub const TOUCH_INTERVAL_MS: u64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session unused this long is over.
    pub idle_timeout_ms: u64,
    /// A session is over this long after sign-in, used or not.
    pub max_age_ms: u64,
    /// Sessions kept at once.
    pub max_sessions: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout_ms: 30 * 60_000,
            max_age_ms: 12 * 3_600_000,
            max_sessions: 10_000,
        }
    }
}

/// The cookie value: 256 random bits, hex.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    pub fn from_bytes(bytes: [u8; 32]) -> SessionId {
        SessionId(hex::encode(bytes))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Never printed: it is a bearer secret.
impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(..)")
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    /// 256 random bits, hex; given to the page at sign-in and by `GET /api/v1/session`.
    pub csrf_token: String,
    pub created_at: Millis,
    pub last_seen: Millis,
    /// The `last_seen` the store has (see `take_touch`).
    pub stored_seen: Millis,
}

impl Session {
    /// When the session ends if it is used now and then: its lifetime.
    pub fn expires_at(&self, cfg: &SessionConfig) -> Millis {
        self.created_at.plus(cfg.max_age_ms)
    }

    /// Whether `presented` (the `X-CSRF-Token` header) is this session's token.
    pub fn csrf_matches(&self, presented: Option<&str>) -> bool {
        presented.is_some_and(|p| constant_time_eq(p.as_bytes(), self.csrf_token.as_bytes()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no such session (signed out, or ended)")]
    Unknown,
    #[error("the session has expired")]
    Expired,
    #[error("the session was idle too long")]
    Idle,
}

#[derive(Debug, Default)]
pub struct Sessions {
    cfg: SessionConfig,
    by_hash: HashMap<[u8; 32], Session>,
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The store's key for the session with cookie value `id`: its SHA-256, hex.
pub fn session_hash(id: &str) -> String {
    hex::encode(key(id))
}

impl Sessions {
    pub fn new(cfg: SessionConfig) -> Sessions {
        Sessions {
            cfg,
            by_hash: HashMap::new(),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// A new session for `user`; `id` and `csrf` are fresh random bytes from the shell.
    pub fn create(
        &mut self,
        user: &str,
        role: Role,
        now: Millis,
        id: [u8; 32],
        csrf: [u8; 32],
    ) -> (SessionId, Session) {
        self.make_room(now);
        let id = SessionId::from_bytes(id);
        let session = Session {
            user: user.to_string(),
            role,
            csrf_token: hex::encode(csrf),
            created_at: now,
            last_seen: now,
            stored_seen: now,
        };
        self.by_hash.insert(key(id.as_str()), session.clone());
        (id, session)
    }

    /// Puts back a stored session (hash = `session_hash` of its id, hex) at startup; false
    /// (nothing kept) when the hash is malformed or the session is over at `now`.
    pub fn restore(&mut self, hash: &str, session: Session, now: Millis) -> bool {
        let Some(k) = hex::decode(hash)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        else {
            return false;
        };
        if !self.alive(&session, now) {
            return false;
        }
        self.make_room(now);
        self.by_hash.insert(k, session);
        true
    }

    fn alive(&self, s: &Session, now: Millis) -> bool {
        now < s.created_at.plus(self.cfg.max_age_ms)
            && now < s.last_seen.plus(self.cfg.idle_timeout_ms)
    }

    /// Frees a place for one more session: over ones first, then the least recently used.
    fn make_room(&mut self, now: Millis) {
        if self.by_hash.len() >= self.cfg.max_sessions.max(1) {
            self.sweep(now);
        }
        while self.by_hash.len() >= self.cfg.max_sessions.max(1) {
            let oldest = self
                .by_hash
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.by_hash.remove(&k);
                }
                None => break,
            }
        }
    }

    /// When the store's `last_seen` of session `id` is `TOUCH_INTERVAL_MS` behind: the value
    /// to write (now counted as stored). Called after `authenticate`.
    pub fn take_touch(&mut self, id: &str) -> Option<Millis> {
        let s = self.by_hash.get_mut(&key(id))?;
        if s.last_seen < s.stored_seen.plus(TOUCH_INTERVAL_MS) {
            return None;
        }
        s.stored_seen = s.last_seen;
        Some(s.last_seen)
    }

    /// The session with cookie value `id`, marked used at `now`; an expired or idle one is
    /// removed and reported as such.
    pub fn authenticate(&mut self, id: &str, now: Millis) -> Result<Session, SessionError> {
        let k = key(id);
        let Some(s) = self.by_hash.get_mut(&k) else {
            return Err(SessionError::Unknown);
        };
        let verdict = if now >= s.created_at.plus(self.cfg.max_age_ms) {
            Err(SessionError::Expired)
        } else if now >= s.last_seen.plus(self.cfg.idle_timeout_ms) {
            Err(SessionError::Idle)
        } else {
            s.last_seen = s.last_seen.max(now);
            Ok(s.clone())
        };
        if verdict.is_err() {
            self.by_hash.remove(&k);
        }
        verdict
    }

    /// Sign-out: the session with cookie value `id` is gone.
    pub fn remove(&mut self, id: &str) -> Option<Session> {
        self.by_hash.remove(&key(id))
    }

    /// Drops every expired or idle session; returns how many.
    pub fn sweep(&mut self, now: Millis) -> usize {
        let before = self.by_hash.len();
        let cfg = self.cfg;
        self.by_hash.retain(|_, s| {
            now < s.created_at.plus(cfg.max_age_ms) && now < s.last_seen.plus(cfg.idle_timeout_ms)
        });
        before - self.by_hash.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SessionConfig {
        SessionConfig {
            idle_timeout_ms: 1_000,
            max_age_ms: 5_000,
            max_sessions: 3,
        }
    }

    #[test]
    fn a_used_session_lives_until_its_lifetime() {
        let mut s = Sessions::new(cfg());
        let (id, sess) = s.create("ann", Role::Supervisor, Millis(0), [1; 32], [2; 32]);
        assert_eq!(id.as_str().len(), 64);
        assert_eq!(sess.csrf_token, hex::encode([2u8; 32]));
        for t in (900..5_000).step_by(900) {
            assert_eq!(s.authenticate(id.as_str(), Millis(t)).unwrap().user, "ann");
        }
        assert_eq!(
            s.authenticate(id.as_str(), Millis(5_000)),
            Err(SessionError::Expired)
        );
        assert_eq!(
            s.authenticate(id.as_str(), Millis(5_001)),
            Err(SessionError::Unknown),
            "an expired session is removed"
        );
    }

    #[test]
    fn an_idle_session_ends() {
        let mut s = Sessions::new(cfg());
        let (id, _) = s.create("ann", Role::Viewer, Millis(0), [1; 32], [2; 32]);
        assert!(s.authenticate(id.as_str(), Millis(999)).is_ok());
        assert_eq!(
            s.authenticate(id.as_str(), Millis(1_999)),
            Err(SessionError::Idle)
        );
        assert!(s.is_empty());
    }

    #[test]
    fn sign_out_and_unknown_ids() {
        let mut s = Sessions::new(cfg());
        let (id, _) = s.create("ann", Role::Viewer, Millis(0), [1; 32], [2; 32]);
        assert_eq!(
            s.authenticate(&"0".repeat(64), Millis(1)),
            Err(SessionError::Unknown)
        );
        assert!(s.remove(id.as_str()).is_some());
        assert_eq!(
            s.authenticate(id.as_str(), Millis(1)),
            Err(SessionError::Unknown)
        );
    }

    #[test]
    fn csrf_token_must_match_exactly() {
        let mut s = Sessions::new(cfg());
        let (_, sess) = s.create("ann", Role::Viewer, Millis(0), [1; 32], [0xab; 32]);
        assert!(sess.csrf_matches(Some(&"ab".repeat(32))));
        assert!(!sess.csrf_matches(None));
        assert!(!sess.csrf_matches(Some("")));
        assert!(!sess.csrf_matches(Some(&"ab".repeat(31))));
        assert!(!sess.csrf_matches(Some(&format!("{}ac", "ab".repeat(31)))));
    }

    #[test]
    fn a_restored_session_authenticates_with_its_stored_times() {
        let mut first = Sessions::new(cfg());
        let (id, sess) = first.create("ann", Role::Viewer, Millis(100), [7; 32], [8; 32]);
        let hash = session_hash(id.as_str());
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, id.as_str(), "the stored key is not the cookie value");

        let mut after = Sessions::new(cfg());
        assert!(!after.restore("zz", sess.clone(), Millis(200)));
        assert!(!after.restore(&hash[..62], sess.clone(), Millis(200)));
        assert!(after.restore(&hash, sess.clone(), Millis(200)));
        let back = after.authenticate(id.as_str(), Millis(900)).unwrap();
        assert_eq!(
            (back.user.as_str(), back.csrf_token),
            ("ann", sess.csrf_token.clone())
        );
        // Idle time counts from the stored last_seen; the lifetime from created_at.
        let mut idle = Sessions::new(cfg());
        assert!(!idle.restore(&hash, sess.clone(), Millis(1_100)), "idle");
        let mut old = Sessions::new(cfg());
        let used = Session {
            last_seen: Millis(5_000),
            ..sess
        };
        assert!(
            !old.restore(&hash, used, Millis(5_100)),
            "past its lifetime"
        );
    }

    #[test]
    fn last_seen_is_written_back_at_most_once_per_interval() {
        let mut s = Sessions::new(SessionConfig {
            idle_timeout_ms: 10 * TOUCH_INTERVAL_MS,
            max_age_ms: 100 * TOUCH_INTERVAL_MS,
            max_sessions: 3,
        });
        let (id, _) = s.create("ann", Role::Viewer, Millis(0), [1; 32], [2; 32]);
        let id = id.as_str();
        assert_eq!(s.take_touch(id), None, "just created: stored at sign-in");
        s.authenticate(id, Millis(TOUCH_INTERVAL_MS - 1)).unwrap();
        assert_eq!(s.take_touch(id), None);
        s.authenticate(id, Millis(TOUCH_INTERVAL_MS)).unwrap();
        assert_eq!(s.take_touch(id), Some(Millis(TOUCH_INTERVAL_MS)));
        assert_eq!(s.take_touch(id), None, "taken");
        s.authenticate(id, Millis(TOUCH_INTERVAL_MS + 5)).unwrap();
        assert_eq!(s.take_touch(id), None);
        assert_eq!(s.take_touch(&"0".repeat(64)), None);
    }

    #[test]
    fn the_number_of_sessions_is_bounded_least_recently_used_first() {
        let mut s = Sessions::new(cfg());
        let (a, _) = s.create("a", Role::Viewer, Millis(0), [1; 32], [0; 32]);
        let (b, _) = s.create("b", Role::Viewer, Millis(10), [2; 32], [0; 32]);
        let (c, _) = s.create("c", Role::Viewer, Millis(20), [3; 32], [0; 32]);
        assert!(s.authenticate(a.as_str(), Millis(30)).is_ok());
        let (d, _) = s.create("d", Role::Viewer, Millis(40), [4; 32], [0; 32]);
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.authenticate(b.as_str(), Millis(50)),
            Err(SessionError::Unknown),
            "b was the least recently used"
        );
        for id in [&a, &c, &d] {
            assert!(s.authenticate(id.as_str(), Millis(50)).is_ok());
        }
        assert_eq!(s.sweep(Millis(10_000)), 3);
    }
}
