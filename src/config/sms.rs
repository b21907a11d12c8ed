//! `sms.toml` -> `SmsConfig`: the SMS gateways. Optional: without the file there is no
//! gateway. The format is documented in the shipped `config/sms.toml`.

use super::toml_error::{self, ConfigError};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The SMS gateway settings inside the config folder; optional.
pub const SMS_FILE: &str = "sms.toml";

#[derive(Clone, Debug, PartialEq, Default)]
pub struct SmsConfig {
    /// `[smpp]`; `None` when the table is absent or `enabled = false`.
    pub smpp: Option<SmppConfig>,
    /// `[http]`; `None` when the table is absent or `enabled = false`.
    pub http: Option<HttpConfig>,
}

/// Where a secret (the SMPP bind password, the HTTP bearer token, the webhook secret) comes
/// from. The secret itself is never kept in the config (nor logged): it is read when the
/// gateway starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    Env(String),
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SmppConfig {
    pub host: String,
    pub port: u16,
    pub system_id: String,
    pub password: PasswordSource,
    pub system_type: String,
    /// Our sender address on submit_sm (a short code or alphanumeric id).
    pub source_addr: String,
    /// Most submit_sm waiting for their submit_sm_resp at once.
    pub window: usize,
    /// Most submit_sm per second (each part of a long text counts).
    pub max_per_s: u32,
    pub enquire_link: Duration,
    /// How long a bind or submit_sm may wait for its response.
    pub response_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// The first pause after ESME_RTHROTTLED; doubled per throttled answer in a row.
    pub throttle_backoff: Duration,
    /// Temporary failures (throttled, timed out, connection lost) a message may meet before
    /// the gateway reports it failed.
    pub max_attempts: u32,
}

impl SmppConfig {
    /// Reads the bind password from its source.
    pub fn read_password(&self) -> Result<String, String> {
        match &self.password {
            PasswordSource::Env(var) => std::env::var(var)
                .map_err(|_| format!("environment variable {var} (smpp.password_env) is not set")),
            PasswordSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("{} (smpp.password_file): {e}", path.display())),
        }
    }
}

impl PasswordSource {
    /// Reads the secret: the variable's value, or the file's first line. `key` names the
    /// config key in the error (never the secret).
    pub fn read(&self, key: &str) -> Result<String, String> {
        match self {
            PasswordSource::Env(var) => std::env::var(var)
                .map_err(|_| format!("environment variable {var} ({key}_env) is not set")),
            PasswordSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.lines().next().unwrap_or("").to_string())
                .map_err(|e| format!("{} ({key}_file): {e}", path.display())),
        }
    }
}

/// `[http]`: a provider's JSON API for sending, and its signed webhooks for replies and
/// delivery reports.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// Where each text is POSTed (https, or http to a loopback address only).
    pub url: String,
    /// The bearer token for `Authorization`.
    pub token: PasswordSource,
    /// The HMAC-SHA256 key the provider signs its webhooks with.
    pub webhook_secret: PasswordSource,
    /// One request, connect included, may take at most this long.
    pub timeout: Duration,
    /// Tries per text (the first included) before it is reported failed.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled per retry up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A webhook's timestamp may be at most this far from our clock (either way).
    pub webhook_window: Duration,
    /// Larger webhook bodies are refused unread.
    pub webhook_max_body: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    smpp: Option<RawSmpp>,
    http: Option<RawHttp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default)]
    enabled: bool,
    url: String,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    webhook_secret_env: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    #[serde(default = "default_http_timeout_s")]
    timeout_s: u64,
    #[serde(default = "default_http_max_attempts")]
    max_attempts: u32,
    #[serde(default = "default_backoff_min_ms")]
    backoff_min_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    backoff_max_ms: u64,
    #[serde(default = "default_webhook_window_s")]
    webhook_window_s: u64,
    #[serde(default = "default_webhook_max_body")]
    webhook_max_body: usize,
}

fn default_http_timeout_s() -> u64 {
    10
}
fn default_http_max_attempts() -> u32 {
    4
}
fn default_backoff_min_ms() -> u64 {
    1_000
}
fn default_backoff_max_ms() -> u64 {
    30_000
}
fn default_webhook_window_s() -> u64 {
    300
}
fn default_webhook_max_body() -> usize {
    16_384
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmpp {
    #[serde(default)]
    enabled: bool,
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    system_id: String,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    #[serde(default)]
    system_type: String,
    source_addr: String,
    #[serde(default = "default_window")]
    window: usize,
    #[serde(default = "default_max_per_s")]
    max_per_s: u32,
    #[serde(default = "default_enquire_link_s")]
    enquire_link_s: u64,
    #[serde(default = "default_response_timeout_s")]
    response_timeout_s: u64,
    #[serde(default = "default_reconnect_min_ms")]
    reconnect_min_ms: u64,
    #[serde(default = "default_reconnect_max_ms")]
    reconnect_max_ms: u64,
    #[serde(default = "default_throttle_backoff_ms")]
    throttle_backoff_ms: u64,
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
}

fn default_port() -> u16 {
    2775
}
fn default_window() -> usize {
    10
}
fn default_max_per_s() -> u32 {
    50
}
fn default_enquire_link_s() -> u64 {
    30
}
fn default_response_timeout_s() -> u64 {
    10
}
fn default_reconnect_min_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_throttle_backoff_ms() -> u64 {
    1_000
}
fn default_max_attempts() -> u32 {
    5
}

/// Loads `dir/sms.toml`; an absent file means no SMS gateway.
pub fn load(dir: &Path) -> Result<SmsConfig, ConfigError> {
    let path = dir.join(SMS_FILE);
    if !path.exists() {
        return Ok(SmsConfig::default());
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::new(&path, "", format!("cannot read: {e}")))?;
    parse(&path, &text, dir)
}

/// Parses the text of `sms.toml` (`file` names it in errors; relative password files are
/// taken from `dir`).
pub fn parse(file: &Path, text: &str, dir: &Path) -> Result<SmsConfig, ConfigError> {
    let raw: RawFile = toml_error::parse(file, text)?;
    let smpp = match raw.smpp {
        Some(s) if s.enabled => Some(parse_smpp(file, s, dir)?),
        _ => None,
    };
    let http = match raw.http {
        Some(h) if h.enabled => Some(parse_http(file, h, dir)?),
        _ => None,
    };
    Ok(SmsConfig { smpp, http })
}

/// A secret's source from its `KEY_env` / `KEY_file` pair: exactly one must be set.
fn secret_source(
    file: &Path,
    key: &str,
    env: Option<String>,
    path: Option<PathBuf>,
    dir: &Path,
) -> Result<PasswordSource, ConfigError> {
    let err = |reason: String| ConfigError::new(file, format!("{key}_env"), reason);
    match (env, path) {
        (Some(_), Some(_)) => Err(err(format!("set {key}_env or {key}_file, not both"))),
        (None, None) => Err(err(format!(
            "set {key}_env (a variable name) or {key}_file (a path)"
        ))),
        (Some(var), None) => {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                return Err(err("not a variable name".into()));
            }
            Ok(PasswordSource::Env(var))
        }
        (None, Some(p)) => Ok(PasswordSource::File(if p.is_relative() {
            dir.join(p)
        } else {
            p
        })),
    }
}

fn parse_http(file: &Path, h: RawHttp, dir: &Path) -> Result<HttpConfig, ConfigError> {
    let err = |key: &str, reason: String| ConfigError::new(file, format!("http.{key}"), reason);
    let url = reqwest::Url::parse(&h.url).map_err(|e| err("url", format!("not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        // A bearer token in clear text is only acceptable on this machine.
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(err(
                "url",
                "must be https (plain http only to 127.0.0.1, ::1 or localhost)".into(),
            ))
        }
        other => return Err(err("url", format!("scheme {other:?}: must be https"))),
    }
    let token = secret_source(file, "http.token", h.token_env, h.token_file, dir)?;
    let webhook_secret = secret_source(
        file,
        "http.webhook_secret",
        h.webhook_secret_env,
        h.webhook_secret_file,
        dir,
    )?;
    if !(1..=120).contains(&h.timeout_s) {
        return Err(err("timeout_s", "must be 1-120".into()));
    }
    if !(1..=20).contains(&h.max_attempts) {
        return Err(err("max_attempts", "must be 1-20".into()));
    }
    if !(10..=600_000).contains(&h.backoff_min_ms) {
        return Err(err("backoff_min_ms", "must be 10-600000".into()));
    }
    if h.backoff_max_ms < h.backoff_min_ms || h.backoff_max_ms > 3_600_000 {
        return Err(err(
            "backoff_max_ms",
            "must be at least backoff_min_ms and at most 3600000".into(),
        ));
    }
    if !(10..=3600).contains(&h.webhook_window_s) {
        return Err(err("webhook_window_s", "must be 10-3600".into()));
    }
    if !(256..=1_048_576).contains(&h.webhook_max_body) {
        return Err(err("webhook_max_body", "must be 256-1048576".into()));
    }
    Ok(HttpConfig {
        url: h.url,
        token,
        webhook_secret,
        timeout: Duration::from_secs(h.timeout_s),
        max_attempts: h.max_attempts,
        backoff_min: Duration::from_millis(h.backoff_min_ms),
        backoff_max: Duration::from_millis(h.backoff_max_ms),
        webhook_window: Duration::from_secs(h.webhook_window_s),
        webhook_max_body: h.webhook_max_body,
    })
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

fn parse_smpp(file: &Path, s: RawSmpp, dir: &Path) -> Result<SmppConfig, ConfigError> {
    let err = |key: &str, reason: String| ConfigError::new(file, format!("smpp.{key}"), reason);
    if s.host.trim().is_empty() {
        return Err(err("host", "must not be empty".into()));
    }
    if s.port == 0 {
        return Err(err("port", "must be 1-65535".into()));
    }
    // SMPP 3.4: system_id is a C-octet string of at most 16 octets, system_type 13, password 9.
    if s.system_id.is_empty() || s.system_id.len() > 15 || !s.system_id.is_ascii() {
        return Err(err("system_id", "must be 1-15 ASCII characters".into()));
    }
    if s.system_type.len() > 12 || !s.system_type.is_ascii() {
        return Err(err(
            "system_type",
            "must be at most 12 ASCII characters".into(),
        ));
    }
    if s.source_addr.is_empty() || s.source_addr.len() > 20 || !s.source_addr.is_ascii() {
        return Err(err("source_addr", "must be 1-20 ASCII characters".into()));
    }
    let password = match (s.password_env, s.password_file) {
        (Some(_), Some(_)) => {
            return Err(err(
                "password_env",
                "set password_env or password_file, not both".into(),
            ))
        }
        (None, None) => {
            return Err(err(
                "password_env",
                "set password_env (a variable name) or password_file (a path)".into(),
            ))
        }
        (Some(var), None) => {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                return Err(err("password_env", "not a variable name".into()));
            }
            PasswordSource::Env(var)
        }
        (None, Some(p)) => PasswordSource::File(if p.is_relative() { dir.join(p) } else { p }),
    };
    if !(1..=1000).contains(&s.window) {
        return Err(err("window", "must be 1-1000".into()));
    }
    if !(1..=10_000).contains(&s.max_per_s) {
        return Err(err("max_per_s", "must be 1-10000".into()));
    }
    if !(1..=3600).contains(&s.enquire_link_s) {
        return Err(err("enquire_link_s", "must be 1-3600".into()));
    }
    if !(1..=300).contains(&s.response_timeout_s) {
        return Err(err("response_timeout_s", "must be 1-300".into()));
    }
    if !(10..=600_000).contains(&s.reconnect_min_ms) {
        return Err(err("reconnect_min_ms", "must be 10-600000".into()));
    }
    if s.reconnect_max_ms < s.reconnect_min_ms || s.reconnect_max_ms > 3_600_000 {
        return Err(err(
            "reconnect_max_ms",
            "must be at least reconnect_min_ms and at most 3600000".into(),
        ));
    }
    if !(10..=600_000).contains(&s.throttle_backoff_ms) {
        return Err(err("throttle_backoff_ms", "must be 10-600000".into()));
    }
    if !(1..=100).contains(&s.max_attempts) {
        return Err(err("max_attempts", "must be 1-100".into()));
    }
    Ok(SmppConfig {
        host: s.host,
        port: s.port,
        system_id: s.system_id,
        password,
        system_type: s.system_type,
        source_addr: s.source_addr,
        window: s.window,
        max_per_s: s.max_per_s,
        enquire_link: Duration::from_secs(s.enquire_link_s),
        response_timeout: Duration::from_secs(s.response_timeout_s),
        reconnect_min: Duration::from_millis(s.reconnect_min_ms),
        reconnect_max: Duration::from_millis(s.reconnect_max_ms),
        throttle_backoff: Duration::from_millis(s.throttle_backoff_ms),
        max_attempts: s.max_attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[smpp]
enabled = true
host = "127.0.0.1"
system_id = "ccswitch"
password_env = "SMPP_PW"
source_addr = "10690000"
"#;

    fn p(text: &str) -> Result<SmsConfig, ConfigError> {
        parse(Path::new("sms.toml"), text, Path::new("/etc/cc"))
    }

    #[test]
    fn defaults_and_disabled() {
        let c = p(GOOD).unwrap().smpp.unwrap();
        assert_eq!(c.port, 2775);
        assert_eq!(c.window, 10);
        assert_eq!(c.password, PasswordSource::Env("SMPP_PW".into()));
        let off = GOOD.replace("enabled = true", "enabled = false");
        assert_eq!(p(&off).unwrap().smpp, None);
        assert_eq!(p("").unwrap().smpp, None);
    }

    #[test]
    fn bad_values_name_file_and_key() {
        let cases = [
            ("window = 0", "smpp.window"),
            ("max_per_s = 0", "smpp.max_per_s"),
            ("reconnect_max_ms = 20", "smpp.reconnect_max_ms"),
            ("password_file = \"pw\"", "smpp.password_env"),
            ("colour = 1", "smpp.colour"),
        ];
        for (extra, key) in cases {
            let text = format!("{GOOD}{extra}\n");
            let e = p(&text).unwrap_err();
            assert!(e.to_string().starts_with("sms.toml: "), "{e}");
            assert!(e.key.starts_with(key), "{extra}: {e}");
        }
        let long = GOOD.replace("\"ccswitch\"", "\"a-much-too-long-system-id\"");
        assert_eq!(p(&long).unwrap_err().key, "smpp.system_id");
    }

    const HTTP: &str = r#"
[http]
enabled = true
url = "https://sms.example.com/v1/messages"
token_env = "TOKEN"
webhook_secret_file = "hook.secret"
"#;

    #[test]
    fn http_defaults_and_disabled() {
        let c = p(HTTP).unwrap();
        assert_eq!(c.smpp, None);
        let h = c.http.unwrap();
        assert_eq!(h.token, PasswordSource::Env("TOKEN".into()));
        assert_eq!(
            h.webhook_secret,
            PasswordSource::File("/etc/cc/hook.secret".into())
        );
        assert_eq!(h.timeout, Duration::from_secs(10));
        assert_eq!(h.max_attempts, 4);
        assert_eq!(h.backoff_min, Duration::from_millis(1000));
        assert_eq!(h.backoff_max, Duration::from_millis(30_000));
        assert_eq!(h.webhook_window, Duration::from_secs(300));
        assert_eq!(h.webhook_max_body, 16_384);
        let off = HTTP.replace("enabled = true", "enabled = false");
        assert_eq!(p(&off).unwrap().http, None);
        // Both gateways at once.
        let both = p(&format!("{GOOD}{HTTP}")).unwrap();
        assert!(both.smpp.is_some() && both.http.is_some());
    }

    #[test]
    fn http_bad_values_name_file_and_key() {
        let cases = [
            ("timeout_s = 0", "http.timeout_s"),
            ("max_attempts = 21", "http.max_attempts"),
            ("backoff_min_ms = 5", "http.backoff_min_ms"),
            ("backoff_max_ms = 500", "http.backoff_max_ms"),
            ("webhook_window_s = 5", "http.webhook_window_s"),
            ("webhook_max_body = 10", "http.webhook_max_body"),
            ("token_file = \"t\"", "http.token_env"),
            ("webhook_secret_env = \"S\"", "http.webhook_secret_env"),
            ("colour = 1", "http.colour"),
        ];
        for (extra, key) in cases {
            let e = p(&format!("{HTTP}{extra}\n")).unwrap_err();
            assert!(e.to_string().starts_with("sms.toml: "), "{e}");
            assert!(e.key.starts_with(key), "{extra}: {e}");
        }
        for (url, ok) in [
            ("http://127.0.0.1:8080/sms", true),
            ("http://[::1]/sms", true),
            ("http://localhost/sms", true),
            ("http://sms.example.com/sms", false),
            ("ftp://sms.example.com/", false),
            ("not a url", false),
        ] {
            let text = HTTP.replace("https://sms.example.com/v1/messages", url);
            match p(&text) {
                Ok(c) => assert!(ok && c.http.is_some(), "{url}"),
                Err(e) => assert!(!ok && e.key == "http.url", "{url}: {e}"),
            }
        }
        let no_token = HTTP.replace("token_env = \"TOKEN\"\n", "");
        assert_eq!(p(&no_token).unwrap_err().key, "http.token_env");
    }

    #[test]
    fn password_file_is_relative_to_the_config_folder() {
        let text = GOOD.replace(
            "password_env = \"SMPP_PW\"",
            "password_file = \"smpp.secret\"",
        );
        let c = p(&text).unwrap().smpp.unwrap();
        assert_eq!(
            c.password,
            PasswordSource::File("/etc/cc/smpp.secret".into())
        );
    }
}
