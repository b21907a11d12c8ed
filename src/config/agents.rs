//! `agents.toml`: the agents (extension, skills, languages, queues, digest HA1s), the
//! `[registrar]` settings and the `[feature_codes]` agents dial. Passwords are never
//! stored: `ccswitch agent hash-password` prints the HA1 lines. Queue names are checked
//! against the queues config by whoever loads both.

use super::toml_error::{self, ConfigError};
pub use crate::engine::agents::{AgentConfig, AgentDirectory, FeatureCodes};
use crate::engine::registrar::RegistrarConfig;
pub use crate::engine::registrar::DEFAULT_REALM;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The agents file inside the config folder (optional: absent means no agents).
pub const AGENTS_FILE: &str = "agents.toml";

/// Skill proficiency range.
pub const MIN_PROFICIENCY: u8 = 1;
pub const MAX_PROFICIENCY: u8 = 5;

/// `[registrar]`, in the file's units (seconds).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarSection {
    pub realm: String,
    /// A nonce older than this is answered 401 stale=true.
    pub nonce_ttl_s: u64,
    /// Shorter asked expiries get 423 Interval Too Brief.
    pub min_expires_s: u64,
    /// Longer asked expiries are cut to this.
    pub max_expires_s: u64,
    /// When the REGISTER names no expiry.
    pub default_expires_s: u64,
    /// Failed authentications from one source IP within `failure_window_s` that block it.
    pub max_failures: u32,
    pub failure_window_s: u64,
    /// How long a blocked IP gets 403.
    pub block_s: u64,
}

impl Default for RegistrarSection {
    /// The registrar's own defaults, in the file's units.
    fn default() -> Self {
        let d = RegistrarConfig::default();
        RegistrarSection {
            realm: d.realm,
            nonce_ttl_s: d.nonce_ttl_ms / 1000,
            min_expires_s: d.min_expires_s,
            max_expires_s: d.max_expires_s,
            default_expires_s: d.default_expires_s,
            max_failures: d.max_failures,
            failure_window_s: d.failure_window_ms / 1000,
            block_s: d.block_ms / 1000,
        }
    }
}

impl RegistrarSection {
    /// The registrar's settings in milliseconds.
    pub fn to_registrar_config(&self) -> RegistrarConfig {
        RegistrarConfig {
            realm: self.realm.clone(),
            nonce_ttl_ms: self.nonce_ttl_s.saturating_mul(1000),
            min_expires_s: self.min_expires_s,
            max_expires_s: self.max_expires_s,
            default_expires_s: self.default_expires_s,
            max_failures: self.max_failures,
            failure_window_ms: self.failure_window_s.saturating_mul(1000),
            block_ms: self.block_s.saturating_mul(1000),
        }
    }
}

impl AgentDirectory {
    /// Agents whose HA1 is still the one of the documented demo password `demo<extension>`,
    /// as (agent index, HA1 key, extension). Computed for each agent's own realm rather than
    /// matched against the shipped hashes, so a renamed realm or a copied demo agent is
    /// still caught. One entry per agent: the first demo HA1 found.
    pub fn demo_credentials(&self) -> Vec<(usize, &'static str, &str)> {
        use crate::proto::digest::{ha1, Algorithm};
        let mut found = Vec::new();
        for (i, a) in self.agents.iter().enumerate() {
            let demo = demo_password(&a.extension);
            let hashes = [
                ("ha1_md5", Algorithm::Md5, &a.ha1_md5),
                ("ha1_sha256", Algorithm::Sha256, &a.ha1_sha256),
            ];
            let hit = hashes.into_iter().find(|(_, alg, stored)| {
                stored.as_deref().is_some_and(|h| {
                    h.eq_ignore_ascii_case(&ha1(*alg, &a.extension, &a.realm, &demo))
                })
            });
            if let Some((key, _, _)) = hit {
                found.push((i, key, a.extension.as_str()));
            }
        }
        found
    }

    /// Reads `path` if it exists; an absent file is an empty directory.
    pub fn load(path: &Path) -> Result<AgentDirectory, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentDirectory::empty()),
            Err(e) => Err(ConfigError::new(
                path,
                "",
                format!("cannot read the file: {e}"),
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentsFile {
    #[serde(default)]
    registrar: RegistrarSection,
    #[serde(default)]
    feature_codes: FeatureCodes,
    #[serde(default)]
    agents: Vec<RawAgent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    extension: String,
    name: String,
    #[serde(default)]
    skills: BTreeMap<String, i64>,
    #[serde(default)]
    languages: Vec<String>,
    #[serde(default)]
    queues: Vec<String>,
    ha1_md5: Option<String>,
    ha1_sha256: Option<String>,
    realm: Option<String>,
    /// Shown to callers in survey texts instead of the extension (a badge number).
    display_id: Option<String>,
    /// Only here to refuse it with a clear reason (deny_unknown_fields would say
    /// "unknown field").
    password: Option<toml::Value>,
}

/// Parses and validates the text of `agents.toml` (`path` names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<AgentDirectory, ConfigError> {
    let file: AgentsFile = toml_error::parse(path, text)?;
    let err = |key: String, reason: String| ConfigError::new(path, key, reason);
    check_registrar(&file.registrar).map_err(|(k, r)| err(k.into(), r))?;
    check_feature_codes(&file.feature_codes).map_err(|(k, r)| err(k, r))?;
    let mut agents = Vec::with_capacity(file.agents.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, raw) in file.agents.into_iter().enumerate() {
        let key = |field: &str| format!("agents[{i}].{field}");
        let a = check_agent(raw, &file.registrar.realm).map_err(|(f, r)| err(key(&f), r))?;
        if let Some(first) = seen.insert(a.extension.clone(), i) {
            return Err(err(
                key("extension"),
                format!(
                    "extension `{}` is already used by agents[{first}]",
                    a.extension
                ),
            ));
        }
        agents.push(a);
    }
    Ok(AgentDirectory::new(
        agents,
        file.registrar.to_registrar_config(),
        file.feature_codes,
    ))
}

fn check_registrar(r: &RegistrarSection) -> Result<(), (&'static str, String)> {
    if !is_realm(&r.realm) {
        return Err(("registrar.realm", realm_reason(&r.realm)));
    }
    if !(10..=86_400).contains(&r.nonce_ttl_s) {
        return Err((
            "registrar.nonce_ttl_s",
            "must be between 10 and 86400".into(),
        ));
    }
    if !(1..=86_400).contains(&r.min_expires_s) {
        return Err((
            "registrar.min_expires_s",
            "must be between 1 and 86400".into(),
        ));
    }
    if r.max_expires_s < r.min_expires_s || r.max_expires_s > 604_800 {
        return Err((
            "registrar.max_expires_s",
            format!(
                "must be at least min_expires_s ({}) and at most 604800 (a week)",
                r.min_expires_s
            ),
        ));
    }
    if !(r.min_expires_s..=r.max_expires_s).contains(&r.default_expires_s) {
        return Err((
            "registrar.default_expires_s",
            format!(
                "must be between min_expires_s ({}) and max_expires_s ({})",
                r.min_expires_s, r.max_expires_s
            ),
        ));
    }
    if !(1..=1000).contains(&r.max_failures) {
        return Err((
            "registrar.max_failures",
            "must be between 1 and 1000".into(),
        ));
    }
    if !(1..=86_400).contains(&r.failure_window_s) {
        return Err((
            "registrar.failure_window_s",
            "must be between 1 and 86400".into(),
        ));
    }
    if r.block_s > 604_800 {
        return Err((
            "registrar.block_s",
            "must be at most 604800 (a week)".into(),
        ));
    }
    Ok(())
}

/// The documented demo password of an extension (README, the shipped agents.toml).
pub fn demo_password(extension: &str) -> String {
    format!("demo{extension}")
}

/// The `ha1_md5 = "..."` and `ha1_sha256 = "..."` lines (with a comment naming extension
/// and realm) for `ccswitch agent hash-password`. Errors name what is wrong.
pub fn hash_password_lines(extension: &str, realm: &str, password: &str) -> Result<String, String> {
    use crate::proto::digest::{ha1, Algorithm};
    if extension.is_empty()
        || extension.len() > 16
        || !extension.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("`{extension}` is not an extension: 1-16 digits"));
    }
    if !is_realm(realm) {
        return Err(realm_reason(realm));
    }
    if password.is_empty() {
        return Err("the password (first line of standard input) is empty".into());
    }
    Ok(format!(
        "# extension {extension}, realm \"{realm}\"\nha1_md5 = \"{}\"\nha1_sha256 = \"{}\"\n",
        ha1(Algorithm::Md5, extension, realm, password),
        ha1(Algorithm::Sha256, extension, realm, password)
    ))
}

/// A realm goes into quoted strings and HA1 input: printable ASCII, no quote/backslash.
fn is_realm(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

fn realm_reason(s: &str) -> String {
    format!("`{s}` is not a realm: 1-128 printable ASCII characters without spaces, `\"` or `\\`")
}

fn check_feature_codes(f: &FeatureCodes) -> Result<(), (String, String)> {
    let p = &f.disposition;
    if p.is_empty()
        || p.len() > 14
        || !p
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
    {
        return Err((
            "feature_codes.disposition".into(),
            format!("`{p}` is not dialable: 1-14 of the keys 0-9, * and # (two digits follow it)"),
        ));
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, code) in f.all() {
        let key = format!("feature_codes.{name}");
        if code.is_empty()
            || code.len() > 16
            || !code
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
        {
            return Err((
                key,
                format!("`{code}` is not dialable: 1-16 of the keys 0-9, * and #"),
            ));
        }
        if let Some(other) = seen.insert(code, name) {
            return Err((
                key,
                format!("`{code}` is already the code for feature_codes.{other}"),
            ));
        }
        if code.starts_with(f.disposition.as_str()) {
            return Err((
                key,
                format!(
                    "`{code}` starts with the disposition prefix `{}` (feature_codes.disposition)",
                    f.disposition
                ),
            ));
        }
    }
    Ok(())
}

/// Returns the agent or (field within the agent, reason).
/// A supervisor's SIP account from `users.toml` (`sip_extension`, `sip_ha1_md5`,
/// `sip_ha1_sha256`), checked like an agent's: an error is (field, reason), the field named
/// as in agents.toml (`extension`, `ha1_md5`, ...).
pub(crate) fn check_sip_account(
    extension: &str,
    name: &str,
    ha1_md5: Option<String>,
    ha1_sha256: Option<String>,
    realm: &str,
) -> Result<AgentConfig, (String, String)> {
    let raw = RawAgent {
        extension: extension.to_string(),
        name: name.to_string(),
        skills: BTreeMap::new(),
        languages: Vec::new(),
        queues: Vec::new(),
        ha1_md5,
        ha1_sha256,
        realm: None,
        display_id: None,
        password: None,
    };
    check_agent(raw, realm)
}

fn check_agent(raw: RawAgent, default_realm: &str) -> Result<AgentConfig, (String, String)> {
    if raw.password.is_some() {
        return Err((
            "password".into(),
            "plaintext passwords are not accepted: store ha1_md5 / ha1_sha256 made by \
             `ccswitch agent hash-password --extension EXT`"
                .into(),
        ));
    }
    let ext = &raw.extension;
    if ext.is_empty() || ext.len() > 16 || !ext.bytes().all(|b| b.is_ascii_digit()) {
        return Err((
            "extension".into(),
            format!("`{ext}` is not an extension: 1-16 digits"),
        ));
    }
    let name = raw.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err((
            "name".into(),
            "must be 1-100 characters without control characters".into(),
        ));
    }
    let mut skills = BTreeMap::new();
    for (skill, level) in &raw.skills {
        if !is_name(skill) {
            return Err((
                format!("skills.{skill}"),
                format!("`{skill}` is not a skill name: lower-case letters, digits and _"),
            ));
        }
        let level = u8::try_from(*level)
            .ok()
            .filter(|l| (MIN_PROFICIENCY..=MAX_PROFICIENCY).contains(l))
            .ok_or_else(|| {
                (
                    format!("skills.{skill}"),
                    format!(
                        "proficiency {level} is out of range: must be {MIN_PROFICIENCY} to {MAX_PROFICIENCY}"
                    ),
                )
            })?;
        skills.insert(skill.clone(), level);
    }
    for (j, lang) in raw.languages.iter().enumerate() {
        if !super::is_language_code(lang) {
            return Err((
                format!("languages[{j}]"),
                format!("`{lang}` is not a language code like \"en\" or \"zh\""),
            ));
        }
        if raw.languages[..j].contains(lang) {
            return Err((
                format!("languages[{j}]"),
                format!("`{lang}` is listed twice"),
            ));
        }
    }
    for (j, q) in raw.queues.iter().enumerate() {
        if !is_name(q) {
            return Err((
                format!("queues[{j}]"),
                format!("`{q}` is not a queue name: lower-case letters, digits and _"),
            ));
        }
        if raw.queues[..j].contains(q) {
            return Err((format!("queues[{j}]"), format!("`{q}` is listed twice")));
        }
    }
    let ha1_md5 = check_ha1(raw.ha1_md5, 32).map_err(|r| ("ha1_md5".to_string(), r))?;
    let ha1_sha256 = check_ha1(raw.ha1_sha256, 64).map_err(|r| ("ha1_sha256".to_string(), r))?;
    if ha1_md5.is_none() && ha1_sha256.is_none() {
        return Err((
            "ha1_md5".into(),
            "an agent needs ha1_md5 and/or ha1_sha256 (from `ccswitch agent hash-password`)".into(),
        ));
    }
    let realm = raw.realm.unwrap_or_else(|| default_realm.to_string());
    if !is_realm(&realm) {
        return Err(("realm".into(), realm_reason(&realm)));
    }
    if let Some(d) = &raw.display_id {
        let ok_chars = d
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if d.is_empty() || d.chars().count() > 16 || !ok_chars {
            return Err((
                "display_id".into(),
                format!(
                    "`{d}` is not a display id: 1-16 letters, digits, `-` or `_` (a badge \
                     number, never a name)"
                ),
            ));
        }
        if d.eq_ignore_ascii_case(name.trim()) {
            return Err((
                "display_id".into(),
                "must not be the agent's name: callers see it in survey texts".into(),
            ));
        }
    }
    Ok(AgentConfig {
        display_id: raw.display_id,
        extension: raw.extension,
        name: name.to_string(),
        skills,
        languages: raw.languages,
        queues: raw.queues,
        ha1_md5,
        ha1_sha256,
        realm,
    })
}

fn check_ha1(v: Option<String>, len: usize) -> Result<Option<String>, String> {
    let Some(v) = v else { return Ok(None) };
    if v.len() != len || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "must be {len} hex digits (got {} characters); make it with `ccswitch agent hash-password`",
            v.chars().count()
        ));
    }
    Ok(Some(v.to_ascii_lowercase()))
}

/// Skill and queue names: `[a-z0-9_]{1,32}`.
fn is_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::digest::{ha1, Algorithm};

    fn shipped() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config")
                .join(AGENTS_FILE),
        )
        .unwrap()
    }

    fn p(text: &str) -> Result<AgentDirectory, ConfigError> {
        parse(Path::new("agents.toml"), text)
    }

    #[test]
    fn demo_passwords_are_found_for_any_realm_and_new_ones_are_not() {
        let d = p(&shipped()).unwrap();
        assert_eq!(
            d.demo_credentials(),
            vec![
                (0, "ha1_md5", "1001"),
                (1, "ha1_md5", "1002"),
                (2, "ha1_md5", "1003")
            ]
        );
        let agent = |realm: &str, md5: Option<&str>, sha: Option<&str>| {
            let mut t = format!(
                "[registrar]\nrealm = \"{realm}\"\n[[agents]]\nextension = \"2001\"\nname = \"X\"\n"
            );
            if let Some(h) = md5 {
                t.push_str(&format!(
                    "ha1_md5 = \"{}\"\n",
                    ha1(Algorithm::Md5, "2001", realm, h)
                ));
            }
            if let Some(h) = sha {
                t.push_str(&format!(
                    "ha1_sha256 = \"{}\"\n",
                    ha1(Algorithm::Sha256, "2001", realm, h)
                ));
            }
            p(&t)
                .unwrap()
                .demo_credentials()
                .into_iter()
                .map(|(i, k, e)| (i, k, e.to_string()))
                .collect::<Vec<_>>()
        };
        // A renamed realm with hashes of the demo password: still the demo password.
        assert_eq!(
            agent("acme.example", Some("demo2001"), None),
            vec![(0, "ha1_md5", "2001".to_string())]
        );
        // SHA-256 only, or a fresh MD5 next to a demo SHA-256.
        assert_eq!(
            agent("acme.example", None, Some("demo2001")),
            vec![(0, "ha1_sha256", "2001".to_string())]
        );
        assert_eq!(
            agent("ccswitch", Some("s3cret-2001"), Some("demo2001")),
            vec![(0, "ha1_sha256", "2001".to_string())]
        );
        assert!(agent("ccswitch", Some("s3cret-2001"), Some("s3cret-2001")).is_empty());
        // Another extension's demo password is not this agent's demo password.
        assert!(agent("ccswitch", Some("demo1001"), None).is_empty());
    }

    #[test]
    fn shipped_file_loads_with_the_documented_demo_passwords() {
        let d = p(&shipped()).unwrap();
        assert_eq!(d.len(), 3);
        let alice = d.get("1001").unwrap();
        assert_eq!(alice.name, "Alice");
        assert_eq!(alice.skills.get("tech"), Some(&5));
        assert_eq!(alice.languages, vec!["en", "zh"]);
        assert_eq!(alice.proficiency("tech"), Some(5));
        assert_eq!(alice.proficiency("complaints"), None);
        assert!(alice.speaks("zh") && !d.get("1002").unwrap().speaks("zh"));
        assert!(alice.serves("tech") && !alice.serves("complaints"));
        assert_eq!(d.get("1003").unwrap().skills.get("complaints"), Some(&5));
        assert_eq!(d.feature_codes.lookup("*21"), Some("ready"));
        assert_eq!(d.feature_codes.lookup("*99"), None);
        // The comments document demo passwords `demo<extension>`; keep them in sync.
        for a in &d.agents {
            let pw = format!("demo{}", a.extension);
            assert_eq!(
                a.ha1_md5.as_deref(),
                Some(ha1(Algorithm::Md5, &a.extension, &a.realm, &pw).as_str())
            );
            assert_eq!(
                a.ha1_sha256.as_deref(),
                Some(ha1(Algorithm::Sha256, &a.extension, &a.realm, &pw).as_str())
            );
        }
        let rc = &d.registrar;
        assert_eq!(rc.realm, "ccswitch");
        assert_eq!(rc.nonce_ttl_ms, 300 * 1000);
    }

    #[test]
    fn empty_text_is_an_empty_directory() {
        let d = p("").unwrap();
        assert!(d.is_empty());
        assert_eq!(
            d.registrar,
            RegistrarSection::default().to_registrar_config()
        );
        assert_eq!(d.feature_codes.ready, "*21");
    }

    /// The shipped file with `from` replaced by `to` must fail at `key`, reason containing `why`.
    fn broken(from: &str, to: &str, key: &str, why: &str) {
        let text = shipped();
        assert!(text.contains(from), "shipped file lacks {from:?}");
        let e = p(&text.replacen(from, to, 1)).unwrap_err();
        assert_eq!(e.file, Path::new("agents.toml"));
        assert_eq!(e.key, key, "{e}");
        assert!(e.reason.contains(why), "{e}");
    }

    #[test]
    fn broken_copies_name_file_key_and_reason() {
        broken(
            "extension = \"1002\"",
            "extension = \"1001\"",
            "agents[1].extension",
            "already used by agents[0]",
        );
        broken(
            "extension = \"1002\"",
            "extension = \"10a2\"",
            "agents[1].extension",
            "1-16 digits",
        );
        broken(
            "tech = 5",
            "tech = 6",
            "agents[0].skills.tech",
            "out of range",
        );
        broken(
            "tech = 5",
            "tech = 0",
            "agents[0].skills.tech",
            "out of range",
        );
        broken(
            "ha1_md5 = \"",
            "ha1_md5 = \"ab",
            "agents[0].ha1_md5",
            "32 hex digits",
        );
        broken(
            "name = \"Alice\"",
            "name = \"Alice\"\npassword = \"secret\"",
            "agents[0].password",
            "plaintext passwords are not accepted",
        );
        broken(
            "languages = [\"en\", \"zh\"]",
            "languages = [\"EN\"]",
            "agents[0].languages[0]",
            "language code",
        );
        broken(
            "lunch = \"*24\"",
            "lunch = \"*21\"",
            "feature_codes.lunch",
            "already the code for feature_codes.ready",
        );
        broken(
            "min_expires_s = 60",
            "min_expires_s = 0",
            "registrar.min_expires_s",
            "between",
        );
        broken(
            "name = \"Bob\"",
            "nme = \"Bob\"",
            "agents[1].nme",
            "unknown field",
        );
    }

    #[test]
    fn agent_needs_a_hash_and_passwords_are_refused_even_alone() {
        let e = p("[[agents]]\nextension = \"7\"\nname = \"X\"\n").unwrap_err();
        assert_eq!(e.key, "agents[0].ha1_md5");
        let e = p("[[agents]]\nextension = \"7\"\nname = \"X\"\npassword = \"pw\"\n").unwrap_err();
        assert_eq!(e.key, "agents[0].password");
        // Upper-case hex is accepted and stored lower-case.
        let d = p(&format!(
            "[[agents]]\nextension = \"7\"\nname = \"X\"\nrealm = \"other\"\nha1_md5 = \"{}\"\n",
            "AB".repeat(16)
        ))
        .unwrap();
        let a = d.get("7").unwrap();
        assert_eq!(a.ha1_md5.as_deref(), Some("ab".repeat(16).as_str()));
        assert_eq!(a.realm, "other");
    }

    #[test]
    fn hash_password_lines_paste_into_agents_toml() {
        let lines = hash_password_lines("1001", "ccswitch", "demo1001").unwrap();
        let text = format!("[[agents]]\nextension = \"1001\"\nname = \"A\"\n{lines}");
        let d = p(&text).unwrap();
        let shipped = p(&shipped()).unwrap();
        assert_eq!(
            d.get("1001").unwrap().ha1_md5,
            shipped.get("1001").unwrap().ha1_md5
        );
        assert_eq!(
            d.get("1001").unwrap().ha1_sha256,
            shipped.get("1001").unwrap().ha1_sha256
        );
        assert!(hash_password_lines("10a", "ccswitch", "x").is_err());
        assert!(hash_password_lines("1", "bad realm", "x").is_err());
        assert!(hash_password_lines("1", "r", "").is_err());
    }

    #[test]
    fn config_load_wires_the_agents_and_names_a_broken_file() {
        let shipped_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let cfg = crate::config::load(&shipped_dir).unwrap();
        assert_eq!(cfg.agents.len(), 3);
        // A copy of the folder with a broken agents.toml: file, key and reason.
        let tmp = tempfile::tempdir().unwrap();
        for e in std::fs::read_dir(&shipped_dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
            }
        }
        let path = tmp.path().join(AGENTS_FILE);
        std::fs::write(&path, shipped().replacen("tech = 5", "tech = 9", 1)).unwrap();
        let e = crate::config::load(tmp.path()).unwrap_err();
        assert_eq!(e.file, path);
        assert_eq!(e.key, "agents[0].skills.tech");
        assert!(e.reason.contains("out of range"), "{e}");
        // Without the file: no agents, default settings.
        std::fs::remove_file(&path).unwrap();
        let cfg = crate::config::load(tmp.path()).unwrap();
        assert!(cfg.agents.is_empty());
        assert_eq!(cfg.agents.registrar.realm, DEFAULT_REALM);
    }

    #[test]
    fn missing_file_is_empty_and_unreadable_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = AgentDirectory::load(&dir.path().join(AGENTS_FILE)).unwrap();
        assert!(d.is_empty());
        let e = AgentDirectory::load(dir.path()).unwrap_err();
        assert!(e.reason.contains("cannot read"), "{e}");
    }
}
