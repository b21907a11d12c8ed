//! The config folder (`ccswitch.toml`, `ivr.toml` and the tables it names) turned into
//! validated types at startup. Every fault names the file, the dotted key and the reason;
//! `ccswitch check-config` runs the same `load` offline.
//!
//! Relative paths in `ccswitch.toml` (`prompts.dir`, a relative `sqlite:` database path) are
//! resolved against the config folder's parent: in the shipped layout that is the project
//! root, so `prompts` and `sqlite:ccswitch.db` land next to `config/` whatever the working
//! directory. Tables named in `ivr.toml` are relative to the config folder itself.

pub mod agents;
mod dispositions;
mod ivr;
mod queues;
mod sip_ws;
pub mod sms;
mod webrtc;
pub use self::webrtc::{IceServerSection, WebRtcSection};
pub use sip_ws::SipWebSocketSection;
mod survey;
pub use survey::Privacy;
mod toml_error;
pub mod users;
pub mod wallboard;

use crate::engine::acd::QueueSet;
use crate::engine::ivr::IvrGraph;
use crate::engine::limits::{Cidr, LimitsConfig, Rate};
use crate::engine::survey::SurveyPolicy;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use agents::{AgentConfig, AgentDirectory, AGENTS_FILE};
pub use toml_error::ConfigError;

/// The main settings file inside the config folder.
pub const MAIN_FILE: &str = "ccswitch.toml";
/// The IVR menu graph inside the config folder.
pub const IVR_FILE: &str = "ivr.toml";
/// Queues for the ACD inside the config folder; optional (no queues when absent).
pub const QUEUES_FILE: &str = "queues.toml";
/// SMS satisfaction surveys inside the config folder; optional (no surveys when absent).
pub const SURVEY_FILE: &str = "survey.toml";

/// The most rings a caller may hear before we answer (the three-ring rule).
pub const MAX_ANSWER_AFTER_RINGS: u8 = 3;

#[derive(Clone, Debug)]
pub struct Config {
    /// The config folder as given.
    pub dir: PathBuf,
    pub switch: SwitchSection,
    pub sip: SipSection,
    pub answer: AnswerSection,
    pub rtp: RtpSection,
    pub http: HttpSection,
    pub database: DatabaseSection,
    pub prompts: PromptsSection,
    pub recording: RecordingSection,
    pub limits: LimitsSection,
    pub ivr: Arc<IvrGraph>,
    /// `agents.toml`; empty when the file is absent.
    pub agents: Arc<AgentDirectory>,
    /// Empty when `queues.toml` is absent.
    pub queues: Arc<QueueSet>,
    /// `sms.toml`; no gateway when the file is absent.
    pub sms: sms::SmsConfig,
    /// None when `survey.toml` is absent or says `enabled = false`.
    pub survey: Option<Arc<SurveyPolicy>>,
    /// `[privacy]` of survey.toml (the defaults without the file): unmasking in reports,
    /// retention of caller numbers.
    pub privacy: Privacy,
    /// `users.toml`: who may sign in to the supervisor API; nobody when the file is absent.
    pub users: Arc<users::UsersConfig>,
    /// `wallboard.toml`: live view targets and alert thresholds (METRICS.md without it).
    pub wallboard: Arc<wallboard::Wallboard>,
    /// `[webrtc]`: media of browser agents.
    pub webrtc: WebRtcSection,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwitchSection {
    /// Spoken in the greeting prompt; also shown on the wallboard.
    pub company: String,
    /// Calls beyond this are refused with 503.
    pub max_calls: usize,
    /// How long a shutdown lets active calls hear goodbye before ending them.
    pub shutdown_grace_ms: u64,
}

impl Default for SwitchSection {
    fn default() -> Self {
        SwitchSection {
            company: "Example Co".into(),
            max_calls: 5000,
            shutdown_grace_ms: 10_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipSection {
    pub listen: SocketAddr,
    /// Address put in Contact and SDP when `listen` is a wildcard.
    pub advertised_ip: Option<IpAddr>,
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    /// `[sip.tcp]`: limits of the TCP transport.
    pub tcp: SipTcpSection,
    /// `[sip.websocket]`: SIP over WebSocket on the HTTP listener.
    pub websocket: SipWebSocketSection,
}

impl Default for SipSection {
    fn default() -> Self {
        SipSection {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5060),
            advertised_ip: None,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            tcp: SipTcpSection::default(),
            websocket: SipWebSocketSection::default(),
        }
    }
}

/// `[sip.tcp]`: what a TCP connection may cost us (see `net::tcp_guard`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipTcpSection {
    /// A message must be complete this long after its first byte (64*T1 by default).
    pub message_timeout_ms: u64,
    /// A connection silent this long (no message, no keep-alive) is closed unless a
    /// registration or a call uses it.
    pub idle_timeout_s: u64,
    /// Connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections open at once from one IP address (phones behind one NAT share one).
    pub max_connections_per_source: usize,
    /// Largest message (headers and body); larger requests get 513 and the connection closes.
    pub max_message_bytes: usize,
}

impl Default for SipTcpSection {
    fn default() -> Self {
        SipTcpSection {
            message_timeout_ms: 32_000,
            idle_timeout_s: 120,
            max_connections: 4096,
            max_connections_per_source: 128,
            max_message_bytes: 65_536,
        }
    }
}

impl SipTcpSection {
    pub fn to_limits(&self) -> crate::net::tcp_guard::TcpLimits {
        crate::net::tcp_guard::TcpLimits {
            message_timeout_ms: self.message_timeout_ms,
            idle_timeout_ms: self.idle_timeout_s.saturating_mul(1000),
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            max_message_bytes: self.max_message_bytes,
        }
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        if !(100..=600_000).contains(&self.message_timeout_ms) {
            return Err((
                "sip.tcp.message_timeout_ms",
                "must be between 100 and 600000".into(),
            ));
        }
        if !(1..=86_400).contains(&self.idle_timeout_s) {
            return Err((
                "sip.tcp.idle_timeout_s",
                "must be between 1 and 86400 (a day)".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err((
                "sip.tcp.max_connections",
                "must be between 1 and 1000000".into(),
            ));
        }
        if self.max_connections_per_source == 0
            || self.max_connections_per_source > self.max_connections
        {
            return Err((
                "sip.tcp.max_connections_per_source",
                format!(
                    "must be between 1 and sip.tcp.max_connections ({})",
                    self.max_connections
                ),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err((
                "sip.tcp.max_message_bytes",
                "must be between 1024 and 16777216".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnswerSection {
    /// One ring: 6000 for the 2 s on / 4 s off cadence, 5000 for 1 s on / 4 s off.
    pub ring_cycle_ms: u64,
    /// 200 OK after this many ring cycles (0-3).
    #[serde(deserialize_with = "three_rings_at_most")]
    pub answer_after_rings: u8,
}

impl Default for AnswerSection {
    fn default() -> Self {
        AnswerSection {
            ring_cycle_ms: 6000,
            answer_after_rings: 1,
        }
    }
}

/// Any integer above 3 (or below 0) gets the three-ring reason, not a bare "expected u8".
fn three_rings_at_most<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let rings = i64::deserialize(d)?;
    u8::try_from(rings)
        .ok()
        .filter(|r| *r <= MAX_ANSWER_AFTER_RINGS)
        .ok_or_else(|| serde::de::Error::custom(three_ring_reason(rings)))
}

fn three_ring_reason(rings: i64) -> String {
    format!("{rings} rings breaks the three-ring rule: must be 0 to {MAX_ANSWER_AFTER_RINGS}")
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtpSection {
    pub bind_ip: IpAddr,
    pub port_min: u16,
    pub port_max: u16,
    /// No RTP from a caller for this long ends the call (0 = never).
    pub inactivity_ms: u64,
    /// Media worker threads (each owns a share of the legs and one 20 ms ticker).
    pub workers: usize,
    /// SCHED_FIFO priority of the media workers (1-99; 0 = normal scheduling). Real-time
    /// priority keeps prompt pacing exact when the host is busy; it needs CAP_SYS_NICE and
    /// silently falls back to normal scheduling without it.
    pub realtime_priority: u8,
    /// RFC 4733 digits a caller sends from another port of the host its audio comes from are
    /// taken as digits (never as audio, never re-latching); false: strictly the latched port.
    pub accept_events_from_same_host: bool,
}

impl Default for RtpSection {
    fn default() -> Self {
        RtpSection {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port_min: 20000,
            port_max: 29999,
            inactivity_ms: 30_000,
            workers: 2,
            realtime_priority: 10,
            accept_events_from_same_host: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    pub listen: SocketAddr,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSection {
    /// `sqlite:PATH` or `postgres://...`; a relative sqlite path is resolved (see module doc).
    pub url: String,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            url: "sqlite:ccswitch.db".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptsSection {
    /// `<dir>/<lang>/<id>.wav`; resolved against the config folder's parent if relative.
    pub dir: PathBuf,
    pub default_language: String,
    pub languages: Vec<String>,
}

impl Default for PromptsSection {
    fn default() -> Self {
        PromptsSection {
            dir: PathBuf::from("prompts"),
            default_language: "en".into(),
            languages: vec!["en".into(), "zh".into()],
        }
    }
}

/// Where call recordings go (queues with `record = true`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingSection {
    /// One stereo WAV per recorded call, `<dir>/<call id>.wav`; resolved against the config
    /// folder's parent if relative.
    pub dir: PathBuf,
}

impl Default for RecordingSection {
    fn default() -> Self {
        RecordingSection {
            dir: PathBuf::from("recordings"),
        }
    }
}

// ---- [limits]: protection against one source (or one connection) taking everything -------

/// `[limits]`: per-source limits on new INVITEs and REGISTERs (see `engine::limits`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Carrier trunks and SBCs (CIDRs or addresses): exempt from the per-source limits.
    pub trusted_sources: Vec<Cidr>,
    /// New INVITEs per second one source may send (0 = unlimited), plus a burst.
    pub invites_per_s: u32,
    pub invite_burst: u32,
    /// REGISTERs per second one source may send (0 = unlimited), plus a burst.
    pub registers_per_s: u32,
    pub register_burst: u32,
    /// Live calls one source may have at once (0 = no cap).
    pub max_calls_per_source: u32,
    /// A source sending more than this many times its rate is ignored (0 = never).
    pub ban_multiple: u32,
    pub ban_ms: u64,
    /// Sources tracked at once (bounds memory under a spoofed-address flood).
    pub max_tracked_sources: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            trusted_sources: Vec::new(),
            invites_per_s: 10,
            invite_burst: 20,
            registers_per_s: 20,
            register_burst: 100,
            max_calls_per_source: 50,
            ban_multiple: 5,
            ban_ms: 60_000,
            max_tracked_sources: 20_000,
        }
    }
}

impl LimitsSection {
    /// The engine's per-source limits.
    pub fn to_limits_config(&self) -> LimitsConfig {
        LimitsConfig {
            trusted: self.trusted_sources.clone(),
            invite: Rate {
                per_s: self.invites_per_s,
                burst: self.invite_burst,
            },
            register: Rate {
                per_s: self.registers_per_s,
                burst: self.register_burst,
            },
            max_calls_per_source: self.max_calls_per_source,
            ban_multiple: self.ban_multiple,
            ban_ms: self.ban_ms,
            max_sources: self.max_tracked_sources,
        }
    }
}

fn check_limits(l: &LimitsSection) -> Result<(), (&'static str, String)> {
    for (key, value) in [
        ("limits.invites_per_s", l.invites_per_s),
        ("limits.registers_per_s", l.registers_per_s),
    ] {
        if value > 100_000 {
            return Err((key, "must be 0 (unlimited) to 100000".into()));
        }
    }
    for (key, value) in [
        ("limits.invite_burst", l.invite_burst),
        ("limits.register_burst", l.register_burst),
    ] {
        if !(1..=1_000_000).contains(&value) {
            return Err((key, "must be between 1 and 1000000".into()));
        }
    }
    if l.max_calls_per_source > 1_000_000 {
        return Err((
            "limits.max_calls_per_source",
            "must be 0 (no cap) to 1000000".into(),
        ));
    }
    if l.ban_multiple == 1 || l.ban_multiple > 1000 {
        return Err((
            "limits.ban_multiple",
            "must be 0 (never ignore a source) or 2 to 1000: 1 would ignore a source as soon \
             as it is over its rate"
                .into(),
        ));
    }
    if l.ban_ms > 86_400_000 {
        return Err(("limits.ban_ms", "must be at most 86400000 (a day)".into()));
    }
    if !(1..=10_000_000).contains(&l.max_tracked_sources) {
        return Err((
            "limits.max_tracked_sources",
            "must be between 1 and 10000000".into(),
        ));
    }
    Ok(())
}

// ---- end of [limits] ------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MainFile {
    #[serde(default)]
    switch: SwitchSection,
    #[serde(default)]
    sip: SipSection,
    #[serde(default)]
    answer: AnswerSection,
    #[serde(default)]
    rtp: RtpSection,
    #[serde(default)]
    http: HttpSection,
    #[serde(default)]
    database: DatabaseSection,
    #[serde(default)]
    prompts: PromptsSection,
    #[serde(default)]
    recording: RecordingSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    webrtc: WebRtcSection,
}

/// Loads and validates the config folder `dir`.
pub fn load(dir: &Path) -> Result<Config, ConfigError> {
    let main_path = dir.join(MAIN_FILE);
    let text = read(&main_path)?;
    let main: MainFile = toml_error::parse(&main_path, &text)?;
    let err = |key: &str, reason: String| ConfigError::new(&main_path, key, reason);
    check_main(&main).map_err(|(key, reason)| err(key, reason))?;

    let base = base_dir(dir);
    let mut prompts = main.prompts;
    if prompts.dir.is_relative() {
        prompts.dir = base.join(&prompts.dir);
    }
    let mut recording = main.recording;
    if recording.dir.is_relative() {
        recording.dir = base.join(&recording.dir);
    }
    let mut database = main.database;
    database.url = resolve_sqlite_url(&database.url, &base);

    let ivr_path = dir.join(IVR_FILE);
    let ivr_text = read(&ivr_path)?;
    let graph = ivr::parse(&ivr_path, &ivr_text, dir, &prompts.languages)?;
    let agents = AgentDirectory::load(&dir.join(AGENTS_FILE))?;
    let users = users::load(dir)?;
    let agents = with_supervisor_phones(agents, &users, &dir.join(users::USERS_FILE))?;

    let queues_path = dir.join(QUEUES_FILE);
    let queues = if queues_path.exists() {
        let text = read(&queues_path)?;
        queues::parse(&queues_path, &text, main.answer.ring_cycle_ms)?
    } else {
        QueueSet::default()
    };
    // A queue node naming an unknown queue would strand its callers.
    for (id, node) in graph.nodes() {
        if let crate::engine::ivr::graph::Node::Queue { queue } = node {
            if queues.get(queue).is_none() {
                return Err(ConfigError::new(
                    &ivr_path,
                    format!("nodes.{id}.queue"),
                    format!("queue `{queue}` is not defined in {QUEUES_FILE}"),
                ));
            }
        }
    }
    // An agent serving a queue that does not exist would silently never get its calls.
    for (i, agent) in agents.agents.iter().enumerate() {
        for q in &agent.queues {
            if queues.get(q).is_none() {
                return Err(ConfigError::new(
                    &dir.join(AGENTS_FILE),
                    format!("agents[{i}].queues"),
                    format!(
                        "agent {} serves queue `{q}`, which {} does not define",
                        agent.extension, QUEUES_FILE
                    ),
                ));
            }
        }
    }

    let survey_path = dir.join(SURVEY_FILE);
    let (survey, privacy) = if survey_path.exists() {
        let text = read(&survey_path)?;
        let ctx = survey::Context {
            languages: &prompts.languages,
            time_zone: graph.time_zone(),
            queues: &queues,
            agents: &agents,
        };
        let (policy, privacy) = survey::parse_with_privacy(&survey_path, &text, &ctx)?;
        (policy.map(Arc::new), privacy)
    } else {
        (None, Privacy::default())
    };

    Ok(Config {
        dir: dir.to_path_buf(),
        switch: main.switch,
        sip: main.sip,
        answer: main.answer,
        rtp: main.rtp,
        http: main.http,
        database,
        prompts,
        recording,
        limits: main.limits,
        ivr: Arc::new(graph),
        agents: Arc::new(agents),
        queues: Arc::new(queues),
        sms: sms::load(dir)?,
        survey,
        privacy,
        users: Arc::new(users),
        wallboard: Arc::new(wallboard::load(dir)?),
        webrtc: main.webrtc,
    })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(path, "", format!("cannot read the file: {e}")))
}

/// Semantic checks serde cannot express. Returns (dotted key, reason).
fn check_main(m: &MainFile) -> Result<(), (&'static str, String)> {
    if m.switch.company.trim().is_empty() {
        return Err(("switch.company", "must not be empty".into()));
    }
    if !(1..=1_000_000).contains(&m.switch.max_calls) {
        return Err(("switch.max_calls", "must be between 1 and 1000000".into()));
    }
    if m.switch.shutdown_grace_ms > 600_000 {
        return Err((
            "switch.shutdown_grace_ms",
            "must be at most 600000 (10 minutes)".into(),
        ));
    }
    if m.sip.listen.port() == 0 {
        return Err(("sip.listen", "port must not be 0".into()));
    }
    if m.sip.advertised_ip.is_some_and(|ip| ip.is_unspecified()) {
        return Err((
            "sip.advertised_ip",
            "must be an address peers can reach, not a wildcard".into(),
        ));
    }
    if !(1..=60_000).contains(&m.sip.t1_ms) {
        return Err(("sip.t1_ms", "must be between 1 and 60000".into()));
    }
    if m.sip.t2_ms < m.sip.t1_ms || m.sip.t2_ms > 600_000 {
        return Err((
            "sip.t2_ms",
            format!(
                "must be at least t1_ms ({}) and at most 600000",
                m.sip.t1_ms
            ),
        ));
    }
    if !(1..=600_000).contains(&m.sip.t4_ms) {
        return Err(("sip.t4_ms", "must be between 1 and 600000".into()));
    }
    m.sip.tcp.check()?;
    m.sip.websocket.check()?;
    m.webrtc.check((m.rtp.port_min, m.rtp.port_max))?;
    if !(1000..=10_000).contains(&m.answer.ring_cycle_ms) {
        return Err((
            "answer.ring_cycle_ms",
            "must be between 1000 and 10000 (one ring cadence: 6000 for 2 s on / 4 s off, 5000 for 1 s on / 4 s off)"
                .into(),
        ));
    }
    if m.answer.answer_after_rings > MAX_ANSWER_AFTER_RINGS {
        return Err((
            "answer.answer_after_rings",
            three_ring_reason(i64::from(m.answer.answer_after_rings)),
        ));
    }
    if m.rtp.workers == 0 || m.rtp.workers > 64 {
        return Err(("rtp.workers", "must be 1 to 64".into()));
    }
    if m.rtp.realtime_priority > 99 {
        return Err(("rtp.realtime_priority", "must be 0 (off) to 99".into()));
    }
    if m.rtp.port_min == 0 {
        return Err(("rtp.port_min", "must not be 0".into()));
    }
    if m.rtp.port_min > m.rtp.port_max {
        return Err((
            "rtp.port_min",
            format!(
                "{} is above rtp.port_max ({})",
                m.rtp.port_min, m.rtp.port_max
            ),
        ));
    }
    if m.http.listen.port() == 0 {
        return Err(("http.listen", "port must not be 0".into()));
    }
    let url = m.database.url.as_str();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        return Err((
            "database.url",
            format!("`{url}`: expected sqlite:PATH or postgres://..."),
        ));
    }
    if url == "sqlite:" {
        return Err(("database.url", "sqlite: needs a path".into()));
    }
    check_languages(&m.prompts)?;
    check_limits(&m.limits)
}

fn check_languages(p: &PromptsSection) -> Result<(), (&'static str, String)> {
    if p.languages.is_empty() {
        return Err((
            "prompts.languages",
            "at least one language is needed".into(),
        ));
    }
    let mut seen = BTreeSet::new();
    for lang in &p.languages {
        if !is_language_code(lang) {
            return Err((
                "prompts.languages",
                format!("`{lang}` is not a language code like \"en\" or \"zh\""),
            ));
        }
        if !seen.insert(lang) {
            return Err(("prompts.languages", format!("`{lang}` is listed twice")));
        }
    }
    if !p.languages.contains(&p.default_language) {
        return Err((
            "prompts.default_language",
            format!(
                "`{}` is not one of prompts.languages {:?}",
                p.default_language, p.languages
            ),
        ));
    }
    if p.dir.as_os_str().is_empty() {
        return Err(("prompts.dir", "must not be empty".into()));
    }
    Ok(())
}

/// "en", "zh", "pt-BR", "zh_Hans": letters, then optional `-`/`_` separated alphanumerics.
/// Language codes become directory names, so nothing else is allowed.
pub(crate) fn is_language_code(s: &str) -> bool {
    let mut parts = s.split(['-', '_']);
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase()));
    first_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The folder relative paths in `ccswitch.toml` are resolved against: the config folder's
/// parent (absolute when the folder exists, so the result does not depend on later `cd`s).
fn base_dir(dir: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    match abs.parent() {
        Some(p) => p.to_path_buf(),
        None => abs.join(".."),
    }
}

/// `sqlite:rel.db?mode=rwc` -> `sqlite:<base>/rel.db?mode=rwc`; other URLs unchanged.
fn resolve_sqlite_url(url: &str, base: &Path) -> String {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return url.to_string();
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = match rest.find('?') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.is_empty() || path.starts_with(":memory:") || Path::new(path).is_absolute() {
        return url.to_string();
    }
    format!("sqlite:{}{query}", base.join(path).display())
}

#[cfg(test)]
mod tests;

/// Supervisors' SIP phones (`users.toml` `sip_extension`) join the agent directory so the
/// registrar knows them; an extension an agent already has is refused.
fn with_supervisor_phones(
    agents: AgentDirectory,
    users: &users::UsersConfig,
    users_path: &Path,
) -> Result<AgentDirectory, ConfigError> {
    let realm = agents.registrar.realm.clone();
    let mut supervisors = Vec::with_capacity(users.sip_accounts.len());
    for s in &users.sip_accounts {
        let i = users
            .users
            .iter()
            .position(|u| u.name == s.user)
            .unwrap_or_default();
        if agents.get(&s.extension).is_some() {
            return Err(ConfigError::new(
                users_path,
                format!("users[{i}].sip_extension"),
                format!(
                    "extension `{}` is an agent's in {AGENTS_FILE}: a supervisor's phone needs \
                     its own",
                    s.extension
                ),
            ));
        }
        supervisors.push(AgentConfig {
            extension: s.extension.clone(),
            name: s.user.clone(),
            skills: Default::default(),
            languages: Vec::new(),
            queues: Vec::new(),
            ha1_md5: s.ha1_md5.clone(),
            ha1_sha256: s.ha1_sha256.clone(),
            realm: realm.clone(),
            display_id: None,
        });
    }
    Ok(agents.with_supervisors(supervisors))
}
