//! `users.toml` -> `UsersConfig`: who may sign in to the supervisor API and wallboard, with
//! which role, and the session and sign-in throttle settings. Optional: without the file
//! nobody can sign in (API tokens still work). The format is documented in the shipped
//! `config/users.toml`.

use super::toml_error::{self, ConfigError};
use crate::auth::password;
use crate::auth::{Role, SessionConfig, ThrottleConfig};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;

/// The users file inside the config folder; optional.
pub const USERS_FILE: &str = "users.toml";

/// The documented demo password of the shipped `admin` user (README, config/users.toml).
pub const DEMO_PASSWORD: &str = "ccswitch-demo";

#[derive(Clone, Debug, PartialEq, Default)]
pub struct UsersConfig {
    pub users: Vec<User>,
    /// Users with a SIP phone (`sip_extension`): supervisors and admins who may monitor
    /// calls by feature code or have the switch ring them (issue 10 item 5).
    pub sip_accounts: Vec<SipAccount>,
    pub sessions: SessionConfig,
    pub throttle: ThrottleConfig,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// argon2id PHC string, checked at load.
    pub password_hash: String,
}

/// A supervisor's (or admin's) SIP phone account: digest HA1s like an agent's, for the
/// agents.toml realm. Checked against the agents' extensions when the whole config loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipAccount {
    /// The user's name in `users`.
    pub user: String,
    pub extension: String,
    pub ha1_md5: Option<String>,
    pub ha1_sha256: Option<String>,
}

impl UsersConfig {
    pub fn get(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Users whose password is still `DEMO_PASSWORD`: (index in `users`, name). Verifies
    /// every hash (tens of ms each): call it at startup and in check-config only.
    pub fn demo_users(&self) -> Vec<(usize, &str)> {
        self.users
            .iter()
            .enumerate()
            .filter(|(_, u)| password::verify_password(&u.password_hash, DEMO_PASSWORD))
            .map(|(i, u)| (i, u.name.as_str()))
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default)]
    sign_in: RawSignIn,
    #[serde(default)]
    users: Vec<RawUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSessions {
    idle_timeout_s: u64,
    max_age_s: u64,
    max_sessions: usize,
}

impl Default for RawSessions {
    fn default() -> Self {
        let d = SessionConfig::default();
        RawSessions {
            idle_timeout_s: d.idle_timeout_ms / 1000,
            max_age_s: d.max_age_ms / 1000,
            max_sessions: d.max_sessions,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSignIn {
    free_failures: u32,
    block_after: u32,
    block_s: u64,
    max_tracked_sources: usize,
}

impl Default for RawSignIn {
    fn default() -> Self {
        let d = ThrottleConfig::default();
        RawSignIn {
            free_failures: d.free_failures,
            block_after: d.block_after,
            block_s: d.block_ms / 1000,
            max_tracked_sources: d.max_sources,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    role: Role,
    password_hash: String,
    /// The supervisor's SIP phone (optional): extension and digest HA1s.
    sip_extension: Option<String>,
    sip_ha1_md5: Option<String>,
    sip_ha1_sha256: Option<String>,
}

/// Loads `<dir>/users.toml`; no users when the file is absent.
pub fn load(dir: &Path) -> Result<UsersConfig, ConfigError> {
    let path = dir.join(USERS_FILE);
    if !path.exists() {
        return Ok(UsersConfig::default());
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::new(&path, "", format!("cannot read the file: {e}")))?;
    parse(&path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<UsersConfig, ConfigError> {
    let raw: RawFile = toml_error::parse(path, text)?;
    let err = |key: String, reason: String| ConfigError::new(path, key, reason);

    let s = &raw.sessions;
    if !(60..=86_400).contains(&s.idle_timeout_s) {
        return Err(err(
            "sessions.idle_timeout_s".into(),
            "must be between 60 and 86400 (a day)".into(),
        ));
    }
    if s.max_age_s < s.idle_timeout_s || s.max_age_s > 30 * 86_400 {
        return Err(err(
            "sessions.max_age_s".into(),
            format!(
                "must be at least sessions.idle_timeout_s ({}) and at most 2592000 (30 days)",
                s.idle_timeout_s
            ),
        ));
    }
    if !(1..=1_000_000).contains(&s.max_sessions) {
        return Err(err(
            "sessions.max_sessions".into(),
            "must be between 1 and 1000000".into(),
        ));
    }
    let t = &raw.sign_in;
    if !(1..=100).contains(&t.free_failures) {
        return Err(err(
            "sign_in.free_failures".into(),
            "must be between 1 and 100".into(),
        ));
    }
    if t.block_after <= t.free_failures || t.block_after > 1000 {
        return Err(err(
            "sign_in.block_after".into(),
            format!(
                "must be above sign_in.free_failures ({}) and at most 1000",
                t.free_failures
            ),
        ));
    }
    if !(1..=86_400).contains(&t.block_s) {
        return Err(err(
            "sign_in.block_s".into(),
            "must be between 1 and 86400 (a day)".into(),
        ));
    }
    if !(1..=10_000_000).contains(&t.max_tracked_sources) {
        return Err(err(
            "sign_in.max_tracked_sources".into(),
            "must be between 1 and 10000000".into(),
        ));
    }

    let mut names = BTreeSet::new();
    let mut users = Vec::with_capacity(raw.users.len());
    let mut sip_accounts: Vec<SipAccount> = Vec::new();
    for (i, u) in raw.users.into_iter().enumerate() {
        crate::auth::token::check_name(&u.name)
            .map_err(|reason| err(format!("users[{i}].name"), reason))?;
        if !names.insert(u.name.clone()) {
            return Err(err(
                format!("users[{i}].name"),
                format!("user `{}` is listed twice", u.name),
            ));
        }
        if u.role == Role::Agent {
            return Err(err(
                format!("users[{i}].role"),
                format!(
                    "user `{}`: agents sign in to /agent with their extension and SIP \
                     password (agents.toml), not as users: use viewer, supervisor or admin",
                    u.name
                ),
            ));
        }
        password::check_phc(&u.password_hash).map_err(|reason| {
            err(
                format!("users[{i}].password_hash"),
                format!("user `{}`: the password hash {reason}", u.name),
            )
        })?;
        match (&u.sip_extension, &u.sip_ha1_md5, &u.sip_ha1_sha256) {
            (None, None, None) => {}
            (None, _, _) => {
                return Err(err(
                    format!("users[{i}].sip_extension"),
                    format!("user `{}` has a SIP HA1 but no sip_extension", u.name),
                ))
            }
            (Some(ext), md5, sha) => {
                if u.role == Role::Viewer {
                    return Err(err(
                        format!("users[{i}].sip_extension"),
                        format!(
                            "user `{}` is a viewer: only supervisors and admins may have a \
                             SIP phone for monitoring",
                            u.name
                        ),
                    ));
                }
                // The realm is checked against agents.toml's when the config loads.
                let realm = crate::engine::registrar::RegistrarConfig::default().realm;
                let a = super::agents::check_sip_account(
                    ext,
                    &u.name,
                    md5.clone(),
                    sha.clone(),
                    &realm,
                )
                .map_err(|(f, r)| {
                    let field = match f.as_str() {
                        "extension" => "sip_extension".to_string(),
                        "ha1_md5" => "sip_ha1_md5".to_string(),
                        "ha1_sha256" => "sip_ha1_sha256".to_string(),
                        other => other.to_string(),
                    };
                    err(format!("users[{i}].{field}"), r)
                })?;
                if let Some(other) = sip_accounts.iter().find(|s| s.extension == a.extension) {
                    return Err(err(
                        format!("users[{i}].sip_extension"),
                        format!(
                            "extension `{}` is already the SIP phone of user `{}`",
                            a.extension, other.user
                        ),
                    ));
                }
                sip_accounts.push(SipAccount {
                    user: u.name.clone(),
                    extension: a.extension,
                    ha1_md5: a.ha1_md5,
                    ha1_sha256: a.ha1_sha256,
                });
            }
        }
        users.push(User {
            name: u.name,
            role: u.role,
            password_hash: u.password_hash,
        });
    }
    let defaults = ThrottleConfig::default();
    Ok(UsersConfig {
        users,
        sip_accounts,
        sessions: SessionConfig {
            idle_timeout_ms: s.idle_timeout_s * 1000,
            max_age_ms: s.max_age_s * 1000,
            max_sessions: s.max_sessions,
        },
        throttle: ThrottleConfig {
            free_failures: t.free_failures,
            block_after: t.block_after,
            block_ms: t.block_s * 1000,
            forget_after_ms: (t.block_s * 1000).max(defaults.forget_after_ms),
            max_sources: t.max_tracked_sources,
            ..defaults
        },
    })
}

/// Users with the demo password while HTTP listens on a non-loopback address (a wildcard
/// counts): anyone who can reach the page could sign in as them. Empty on loopback.
pub fn exposed_demo_users(config: &super::Config) -> Vec<ConfigError> {
    let listen = config.http.listen;
    if listen.ip().to_canonical().is_loopback() {
        return Vec::new();
    }
    let file = config.dir.join(USERS_FILE);
    config
        .users
        .demo_users()
        .into_iter()
        .map(|(i, name)| {
            ConfigError::new(
                &file,
                format!("users[{i}].password_hash"),
                format!(
                    "user {name} still has the demo password `{DEMO_PASSWORD}` while HTTP \
                     listens on {listen}, which is not a loopback address: anyone who can \
                     reach it can sign in as this user. Make a new hash with `ccswitch user \
                     hash-password --name {name}`, listen on 127.0.0.1, or start with \
                     --allow-demo-credentials"
                ),
            )
        })
        .collect()
}
