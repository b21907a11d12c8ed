//! Browser sessions, sans-IO: made at sign-in, found by the cookie's random id, ended by
//! sign-out, a lifetime, or an idle timeout. Each session has its own CSRF token that
//! state-changing requests must echo in `X-CSRF-Token` (the cookie alone, which a browser
//! attaches by itself, is not enough).
//!
//! Kept in memory: a restart signs everyone out (the page signs in again). Sessions are
//! keyed by the SHA-256 of their id, so a lookup's timing says nothing about valid ids, and
//! their number is bounded (the least recently used goes first).

use super::{constant_time_eq, Role};
use crate::engine::Millis;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

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
    #[error("no such session (signed out, or the switch restarted)")]
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
        let id = SessionId::from_bytes(id);
        let session = Session {
            user: user.to_string(),
            role,
            csrf_token: hex::encode(csrf),
            created_at: now,
            last_seen: now,
        };
        self.by_hash.insert(key(id.as_str()), session.clone());
        (id, session)
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
