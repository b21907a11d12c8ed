//! API tokens for integrations: 256 random bits shown once (`ccswitch user token`), stored
//! only as their SHA-256. A plain hash is enough for a token this random (no dictionary to
//! try); it makes the lookup a database index search on the hash.

use sha2::{Digest, Sha256};

/// Every token starts with this, so a leaked one is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "ccst_";

/// The token text for 32 random bytes from the shell.
pub fn token_from_bytes(bytes: [u8; 32]) -> String {
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// A fresh random token.
pub fn new_token() -> String {
    token_from_bytes(rand::random())
}

/// What is stored and looked up: SHA-256 of the whole token text, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `s` has the shape of one of our tokens (cheap check before a database lookup).
pub fn looks_like_token(s: &str) -> bool {
    s.strip_prefix(TOKEN_PREFIX)
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Token names (`ccswitch user token NAME`): 1-64 of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a name has 1 to 64 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
    {
        return Err(format!(
            "`{name}`: a name has only letters, digits, `.`, `_`, `-` and `@`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_a_prefix_256_bits_and_a_stable_hash() {
        let t = token_from_bytes([0xab; 32]);
        assert_eq!(t.len(), TOKEN_PREFIX.len() + 64);
        assert!(looks_like_token(&t));
        assert!(!looks_like_token("ccst_xyz"));
        assert!(!looks_like_token(&t.replace("ccst_", "")));
        assert_eq!(token_hash(&t), token_hash(&t.clone()));
        assert_ne!(token_hash(&t), token_hash(&new_token()));
        assert_eq!(token_hash(&t).len(), 64);
        assert_ne!(new_token(), new_token());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("crm-sync@acme.example").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
    }
}
