//! The sans-IO core. Fed `(now, Input)`, it yields `Output`s; it never touches a socket, a
//! clock, the database or an unseeded RNG. See DESIGN.md section 3.

pub mod acd;
pub mod agents;
pub mod call;
pub mod deadlines;
pub mod dispositions;
pub mod ivr;
pub mod limits;
pub mod live;
pub mod media;
pub mod ports;
pub mod record;
pub mod registrar;
pub mod survey;
pub mod switch;
pub mod time;
pub mod txn;

use bytes::Bytes;
use std::net::SocketAddr;

pub use live::LiveEvent;
pub use media::{Codec, LegId, MediaCommand, MediaEvent, PromptKey};
pub use record::Record;
pub use time::{Millis, TimerTable};

/// SIP transport of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    /// SIP over WebSocket (RFC 7118) on the HTTP listener's `/sip`.
    Ws,
    /// SIP over secure WebSocket: the same connections behind a TLS-terminating proxy.
    Wss,
}

impl Transport {
    /// Reliable transports skip retransmission timers (RFC 3261 17.1.1.2, 17.2.1).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Connection-oriented transports on which a contact is reachable only over the
    /// connection it registered on (RFC 5626 / RFC 7118 section 5): WebSocket.
    pub fn is_connection_bound(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// Our Contact URI for a peer on this transport (`transport=` param for all but UDP).
    pub fn contact_uri(self, sent_by: &str) -> String {
        match self {
            Transport::Udp => format!("<sip:ccswitch@{sent_by}>"),
            other => format!("<sip:ccswitch@{sent_by};transport={}>", other.as_str()),
        }
    }
}

/// Where a SIP message came from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Operator commands the engine accepts.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Refuse new calls with 503, say goodbye to active calls and end them within
    /// `grace_ms`; `Output::Drained` follows when no call is left.
    Shutdown { grace_ms: u64 },
    /// Change an agent's state as the feature codes do (supervisor or API). Refusals
    /// (unknown agent, not allowed now) are logged; the state records show what happened.
    Agent { agent: String, change: AgentChange },
    /// The number with this hash (`survey::number_hash`, 64 lower-case hex digits) opted
    /// out of surveys (the survey service read TD/STOP): later calls from it are skipped
    /// `opted_out`. Anything else is logged and counted, never applied.
    SurveyOptOut { number_hash: String },
    /// The agent classifies their current or last call (agent page, API): `code` is the
    /// code's name (`follow_up`) or number (`2`) in queues.toml `[dispositions]`; `call_id`,
    /// when given, must be that call; `note` is cleaned and capped
    /// (`dispositions::MAX_DISPOSITION_NOTE_CHARS`). Refusals are logged and counted.
    Disposition {
        agent: String,
        call_id: Option<String>,
        code: String,
        note: Option<String>,
    },
}

/// What `Command::Agent` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentChange {
    /// Log in if logged out, else ready (ends wrap-up early).
    Ready,
    NotReady {
        reason: String,
    },
    Logout,
}

#[derive(Clone, Debug)]
pub enum Input {
    Sip {
        peer: Peer,
        bytes: Bytes,
    },
    Media(MediaEvent),
    Command(Command),
    /// A connection-bound transport (WebSocket) lost the connection of `Peer`: the
    /// registrations bound to it go (their contacts are unreachable now).
    ConnectionClosed(Peer),
    /// A supervisor asks to be rung to monitor a call (REST, the wallboard's buttons): the
    /// engine answers at once with `Output::MonitorAnswer` (same `id`), and when accepted
    /// rings the supervisor's registered phones.
    MonitorRequest(MonitorRequest),
    /// A deadline from `poll_timeout` passed.
    Timeout,
}

#[derive(Clone, Debug)]
pub enum Output {
    Transmit {
        peer: Peer,
        bytes: Bytes,
    },
    Media(MediaCommand),
    Persist(Record),
    /// For the live read model (`crate::live`): what the records do not carry.
    Live(LiveEvent),
    /// The engine's answer to `Input::MonitorRequest` `id`: `Ok` when the supervisor's
    /// phone is being rung, else why not.
    MonitorAnswer {
        id: String,
        result: Result<(), MonitorRefusal>,
    },
    /// Shutdown finished: no call is left.
    Drained,
}

pub use switch::{
    Engine, EngineConfig, EngineStats, MonitorRefusal, MonitorRequest, SurveySetup, MONITOR_RING_MS,
};

/// Masks a phone number for logs, reports, the API and the live feed, one format everywhere
/// (PIPL: minimum necessary): `+86 138****5678`, `138****5678`; short numbers fully hidden.
pub fn mask_number(number: &str) -> String {
    survey::numbers::mask_caller(number)
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_like_the_reports() {
        assert_eq!(super::mask_number("+8613812345678"), "+86 138****5678");
        assert_eq!(super::mask_number("13812345678"), "138****5678");
        assert_eq!(super::mask_number("1234"), "****");
    }
}
