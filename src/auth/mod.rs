//! Supervisor authentication and authorisation, sans-IO: roles and their permissions,
//! password and token hashing, browser sessions with CSRF tokens, and the sign-in throttle.
//! The HTTP shell is `api::auth_routes`; the rows (API tokens, audit log) are in `store`.
//!
//! Callers authenticate either with a browser session (cookie `ccswitch_session`, made by
//! signing in with a `users.toml` user) or with an API token (`Authorization: Bearer`, made by
//! `ccswitch user token`). Both carry a role; a route asks for a `Permission`.

pub mod password;
pub mod role;
pub mod session;
pub mod throttle;
pub mod token;

pub use role::{Permission, Role};
pub use session::{SessionConfig, SessionError, SessionId, Sessions};
pub use throttle::{SignInThrottle, ThrottleConfig, ThrottleDecision};

/// Byte-wise equality whose time does not depend on where the inputs differ (only on their
/// lengths, which are public here: CSRF tokens and hashes have fixed lengths).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box: keep the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
