//! Passwords of `users.toml` users: argon2id PHC strings (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`).
//! Only argon2id is accepted (argon2i/argon2d, bcrypt, plaintext are refused at config load),
//! with parameters between OWASP's minimum and a ceiling that keeps one verification cheap
//! enough to serve sign-ins.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params, PasswordHash};
use std::sync::OnceLock;

/// Shortest password `ccswitch user hash-password` accepts.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted (sign-in bodies are bounded; argon2 takes any length).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// OWASP's weakest acceptable argon2id setting is m = 7 MiB with t = 5; all of its
/// recommended settings have m * t of at least 35840 (KiB x passes).
const MIN_M_KIB: u32 = 7 * 1024;
const MIN_M_TIMES_T: u64 = 35_840;
/// One verification must stay affordable: at most 1 GiB, 20 passes, 16 lanes.
const MAX_M_KIB: u32 = 1024 * 1024;
const MAX_T: u32 = 20;
const MAX_P: u32 = 16;

/// A new argon2id hash of `password` with a random salt and the crate's defaults
/// (m = 19 MiB, t = 2, p = 1: OWASP's first recommendation).
pub fn hash_password(password: &str) -> Result<String, String> {
    check_new_password(password)?;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

/// Why `password` may not be used for a new hash.
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password is too short: at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is too long: at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Whether `phc` is an argon2id hash we accept; the reason when not. Never echoes `phc`
/// (it may be a plaintext password pasted in the wrong place).
pub fn check_phc(phc: &str) -> Result<(), String> {
    let how = "make one with `ccswitch user hash-password`";
    if !phc.starts_with('$') {
        return Err(format!(
            "is not a password hash (plaintext passwords are refused): {how}"
        ));
    }
    let parsed =
        PasswordHash::new(phc).map_err(|e| format!("is not a valid PHC string ({e}): {how}"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "is a `{}` hash; only argon2id is accepted: {how}",
            parsed.algorithm.as_str()
        ));
    }
    if parsed.version.is_some_and(|v| v != 0x13) {
        return Err(format!("argon2 version must be 19 (0x13): {how}"));
    }
    let params = Params::try_from(&parsed.params)
        .map_err(|e| format!("has bad argon2 parameters ({e}): {how}"))?;
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if m < MIN_M_KIB || u64::from(m) * u64::from(t) < MIN_M_TIMES_T {
        return Err(format!(
            "is too weak (m={m} KiB, t={t}): at least m={MIN_M_KIB} and m*t >= {MIN_M_TIMES_T} \
             (OWASP); {how}"
        ));
    }
    if m > MAX_M_KIB || t > MAX_T || p > MAX_P {
        return Err(format!(
            "is too costly to verify (m={m} KiB, t={t}, p={p}): at most m={MAX_M_KIB}, \
             t={MAX_T}, p={MAX_P}"
        ));
    }
    if parsed.salt.is_none_or(|s| s.len() < 8) || parsed.hash.is_none() {
        return Err(format!("has no salt or no hash: {how}"));
    }
    Ok(())
}

/// Whether `password` matches `phc`. False for any malformed hash (never panics). CPU-heavy
/// (tens of milliseconds): call it off the async runtime.
pub fn verify_password(phc: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES || check_phc(phc).is_err() {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password, verified against when the user name is unknown so that a
/// wrong name costs the same time as a wrong password (no user enumeration by timing).
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random: [u8; 16] = rand::random();
        hash_password(&hex::encode(random)).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(check_phc(&h), Ok(()));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "correct hors"));
        assert!(!verify_password("garbage", "correct horse"));
        assert!(!verify_password(dummy_hash(), "correct horse"));
        assert_eq!(check_phc(dummy_hash()), Ok(()));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(hash_password("short").unwrap_err().contains("too short"));
    }

    #[test]
    fn only_sound_argon2id_hashes_pass() {
        let plain = check_phc("hunter42-secret").unwrap_err();
        assert!(plain.contains("plaintext"), "{plain}");
        assert!(!plain.contains("hunter42"), "never echoed: {plain}");
        let argon2i = "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                       Z0n2ANHvS/8cA1ONwAkUeUKLpvDNdgwDCDH1sCgKcJs";
        assert!(check_phc(argon2i).unwrap_err().contains("only argon2id"));
        let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
        assert!(check_phc(bcrypt).is_err());
        let weak = "$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$\
                    Z0n2ANHvS/8cA1ONwAkUeUKLpvDNdgwDCDH1sCgKcJs";
        assert!(check_phc(weak).unwrap_err().contains("too weak"));
        let costly = "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$\
                      Z0n2ANHvS/8cA1ONwAkUeUKLpvDNdgwDCDH1sCgKcJs";
        assert!(check_phc(costly).unwrap_err().contains("too costly"));
    }
}
