//! Opaque paging cursors: hex of `v1|<fingerprint>|<position>`. The fingerprint binds a
//! cursor to the query that made it, so a cursor reused with other filters, or edited, is
//! refused (400) instead of silently paging something else. It is a checksum, not a secret:
//! a forged cursor only names another position in results the caller may see anyway.

use super::params::bad_param;
use super::problem::Problem;
use sha2::{Digest, Sha256};

/// Longest cursor taken (a call id is short; this bounds the decoding work).
const MAX_CURSOR_CHARS: usize = 600;

fn fingerprint(query: &str, position: &str) -> String {
    let mut h = Sha256::new();
    h.update(query.as_bytes());
    h.update([0]);
    h.update(position.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// The cursor for `position` within the query described by `query` (its filters, canonical).
pub fn encode(query: &str, position: &str) -> String {
    hex::encode(format!("v1|{}|{position}", fingerprint(query, position)))
}

/// The position of a cursor made by `encode` with the same `query`.
pub fn decode(query: &str, cursor: &str) -> Result<String, Problem> {
    let bad = || {
        bad_param(
            "cursor",
            "not a cursor of this query: start again without it",
        )
    };
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(bad());
    }
    let raw = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.splitn(3, '|');
    let (Some("v1"), Some(fp), Some(position)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if !crate::auth::constant_time_eq(fp.as_bytes(), fingerprint(query, position).as_bytes()) {
        return Err(bad());
    }
    Ok(position.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_edits() {
        let c = encode("q=1", "1700000000000|c-42");
        assert_eq!(decode("q=1", &c).unwrap(), "1700000000000|c-42");
        assert_eq!(decode("q=2", &c).unwrap_err().status, 400);
        let edited = encode("q=1", "1700000000000|c-42").replace("31", "32");
        assert!(decode("q=1", &edited).is_err());
        assert!(decode("q=1", "zz").is_err());
        assert!(decode("q=1", &hex::encode("v1|x")).is_err());
        assert!(decode("q=1", &"a".repeat(1000)).is_err());
    }
}
