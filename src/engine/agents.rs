//! The agent directory the engine reads: who may register (extension, digest HA1s,
//! skills, languages, queues), the registrar's settings and the feature codes. Built by
//! `config::agents` from `agents.toml`; the engine never reads a file.

use crate::engine::registrar::RegistrarConfig;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// One agent, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// Digits only; also the SIP digest username.
    pub extension: String,
    pub name: String,
    /// Skill name -> proficiency 1-5.
    pub skills: BTreeMap<String, u8>,
    /// Language skills ("en", "zh").
    pub languages: Vec<String>,
    /// Queue names served, in the order given.
    pub queues: Vec<String>,
    /// Lower-case hex, 32 digits: MD5(extension:realm:password).
    pub ha1_md5: Option<String>,
    /// Lower-case hex, 64 digits: SHA-256(extension:realm:password).
    pub ha1_sha256: Option<String>,
    /// The realm the HA1s were made for.
    pub realm: String,
    /// What callers are told in survey texts (`{agent}`) instead of the extension, e.g. a
    /// badge number; never the name.
    pub display_id: Option<String>,
}

impl AgentConfig {
    /// Proficiency in `skill` (1-5), if the agent has it.
    pub fn proficiency(&self, skill: &str) -> Option<u8> {
        self.skills.get(skill).copied()
    }

    pub fn speaks(&self, language: &str) -> bool {
        self.languages.iter().any(|l| l == language)
    }

    pub fn serves(&self, queue: &str) -> bool {
        self.queues.iter().any(|q| q == queue)
    }
}

/// `[feature_codes]`: what an agent dials to change state.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureCodes {
    pub ready: String,
    #[serde(rename = "break")]
    pub break_: String,
    pub logout: String,
    pub lunch: String,
    pub training: String,
    /// Prefix of the disposition codes: prefix + the code's number (`*41`, `*412`).
    pub disposition: String,
}

impl Default for FeatureCodes {
    fn default() -> Self {
        FeatureCodes {
            ready: "*21".into(),
            break_: "*22".into(),
            logout: "*23".into(),
            lunch: "*24".into(),
            training: "*25".into(),
            disposition: "*4".into(),
        }
    }
}

impl FeatureCodes {
    /// (config key, code) pairs in a fixed order.
    pub fn all(&self) -> [(&'static str, &str); 5] {
        [
            ("ready", &self.ready),
            ("break", &self.break_),
            ("logout", &self.logout),
            ("lunch", &self.lunch),
            ("training", &self.training),
        ]
    }

    /// The disposition number in a dialled string (`*41` -> 1), if it is a disposition code.
    pub fn disposition_number(&self, dialled: &str) -> Option<u8> {
        crate::engine::dispositions::dialled_number(&self.disposition, dialled)
    }

    /// Which feature (config key) a dialled string is, if any.
    pub fn lookup(&self, dialled: &str) -> Option<&'static str> {
        self.all()
            .into_iter()
            .find(|(_, code)| *code == dialled)
            .map(|(k, _)| k)
    }
}

/// Every agent plus the registrar settings and feature codes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentDirectory {
    pub agents: Vec<AgentConfig>,
    by_extension: HashMap<String, usize>,
    pub registrar: RegistrarConfig,
    pub feature_codes: FeatureCodes,
    /// Supervisors' SIP accounts (`users.toml` `sip_extension`): they may register and dial
    /// the monitoring codes (`*31`/`*32`/`*33` + agent), never take calls. `name` is the
    /// user name; no skills or queues.
    pub supervisors: Vec<AgentConfig>,
}

impl AgentDirectory {
    /// No agents, default settings (no `agents.toml`).
    pub fn empty() -> AgentDirectory {
        AgentDirectory::default()
    }

    /// Builds a directory from already valid parts (tests, tools).
    pub fn new(
        agents: Vec<AgentConfig>,
        registrar: RegistrarConfig,
        feature_codes: FeatureCodes,
    ) -> AgentDirectory {
        let by_extension = agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.extension.clone(), i))
            .collect();
        AgentDirectory {
            agents,
            by_extension,
            registrar,
            feature_codes,
            supervisors: Vec::new(),
        }
    }

    pub fn get(&self, extension: &str) -> Option<&AgentConfig> {
        self.by_extension
            .get(extension)
            .and_then(|i| self.agents.get(*i))
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Adds supervisors' SIP accounts (extensions distinct from the agents', checked by the
    /// config loader).
    pub fn with_supervisors(mut self, supervisors: Vec<AgentConfig>) -> AgentDirectory {
        self.supervisors = supervisors;
        self
    }

    /// A supervisor's SIP account by extension.
    pub fn supervisor(&self, extension: &str) -> Option<&AgentConfig> {
        self.supervisors.iter().find(|s| s.extension == extension)
    }

    /// Whoever may authenticate with this extension: an agent or a supervisor.
    pub fn credentials(&self, extension: &str) -> Option<&AgentConfig> {
        self.get(extension).or_else(|| self.supervisor(extension))
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}
