//! Agent profiles and the agent state machine (METRICS.md / issue #3 item 2):
//!
//! ```text
//! LoggedOut --login--> Ready --offer--> Reserved --answered--> OnCall --call_ended--> WrapUp
//!    ^                  ^ |                |  no answer: NotReady(missed_call)          |
//!    |                  | +--not_ready-->  |  busy/rejected/failed/cancel: Ready       |
//!    +---logout / registration lost (from any state; OnCall defers it to after wrap-up) |
//!                       +<----------- wrap-up timer or the ready code ------------------+
//! ```
//!
//! `transition` only answers "is this command allowed now and where does it lead"; the side
//! effects (cancel the offer, end wrap-up, re-route) live in `Acd`.

use super::AcdError;
use crate::engine::Millis;
use std::collections::{BTreeMap, BTreeSet};

/// What an agent can do, from `agents.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentProfile {
    /// The extension; also the agent's id everywhere.
    pub id: String,
    /// Skill name -> proficiency 1-5.
    pub skills: BTreeMap<String, u8>,
    pub languages: BTreeSet<String>,
    /// Names of the queues this agent serves.
    pub queues: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentState {
    LoggedOut,
    Ready,
    /// An offer is ringing the agent's phone.
    Reserved {
        call: u64,
    },
    OnCall {
        call: u64,
    },
    WrapUp {
        call: u64,
    },
    NotReady(String),
}

impl AgentState {
    /// The persisted name (agent_state_changes.state).
    pub fn name(&self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged_out",
            AgentState::Ready => "ready",
            AgentState::Reserved { .. } => "reserved",
            AgentState::OnCall { .. } => "on_call",
            AgentState::WrapUp { .. } => "wrap_up",
            AgentState::NotReady(_) => "not_ready",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            AgentState::NotReady(r) => Some(r),
            _ => None,
        }
    }

    /// The call this agent holds (ringing, talking or wrapping up).
    pub fn call(&self) -> Option<u64> {
        match self {
            AgentState::Reserved { call }
            | AgentState::OnCall { call }
            | AgentState::WrapUp { call } => Some(*call),
            _ => None,
        }
    }
}

/// A state an on-call agent asked for; applied when wrap-up ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Pending {
    NotReady(String),
    LogOut,
}

#[derive(Clone, Debug)]
pub(crate) struct Agent {
    pub(crate) profile: AgentProfile,
    pub(crate) state: AgentState,
    /// When the agent last entered Ready from a non-routing state; longest idle goes first.
    /// A failed or cancelled offer that returns the agent to Ready keeps it.
    pub(crate) ready_since: Millis,
    pub(crate) pending: Option<Pending>,
    /// For the handle-time sample: when the current call was answered and ended.
    pub(crate) answered_at: Millis,
    pub(crate) ended_at: Millis,
    pub(crate) wrap_queue: String,
}

/// User commands (feature codes, API). Registration loss is not a command: it always wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Login,
    Ready,
    NotReady,
    Logout,
}

/// What a command does from the agent's current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Go straight to the target state.
    Now,
    /// Cancel the ringing offer first.
    CancelOffer(u64),
    /// End wrap-up first (WrapUpEnded is recorded).
    EndWrapUp(u64),
    /// On a call: remember it for after wrap-up.
    Defer,
}

impl Agent {
    pub(crate) fn new(profile: AgentProfile) -> Agent {
        Agent {
            profile,
            state: AgentState::LoggedOut,
            ready_since: Millis::ZERO,
            pending: None,
            answered_at: Millis::ZERO,
            ended_at: Millis::ZERO,
            wrap_queue: String::new(),
        }
    }

    pub(crate) fn check(&self, cmd: Command) -> Result<Effect, AcdError> {
        let id = || self.profile.id.clone();
        use AgentState as S;
        match (cmd, &self.state) {
            (Command::Login, S::LoggedOut) => Ok(Effect::Now),
            (Command::Login, _) => Err(AcdError::AlreadyLoggedIn(id())),
            (_, S::LoggedOut) => Err(AcdError::NotLoggedIn(id())),
            (Command::Ready, S::Ready) => Err(AcdError::AlreadyReady(id())),
            (Command::Ready, S::NotReady(_)) => Ok(Effect::Now),
            (Command::Ready, S::WrapUp { call }) => Ok(Effect::EndWrapUp(*call)),
            // Ready while ringing or talking means nothing: the agent is already routed to.
            (Command::Ready, S::Reserved { .. } | S::OnCall { .. }) => Err(AcdError::Busy(id())),
            (Command::NotReady | Command::Logout, S::Ready | S::NotReady(_)) => Ok(Effect::Now),
            (Command::NotReady | Command::Logout, S::Reserved { call }) => {
                Ok(Effect::CancelOffer(*call))
            }
            (Command::NotReady | Command::Logout, S::WrapUp { call }) => {
                Ok(Effect::EndWrapUp(*call))
            }
            (Command::NotReady | Command::Logout, S::OnCall { .. }) => Ok(Effect::Defer),
        }
    }

    /// Eligible for new offers at all (queue/skill/language checks are the selector's).
    pub(crate) fn is_ready(&self) -> bool {
        self.state == AgentState::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(state: AgentState) -> Agent {
        let mut a = Agent::new(AgentProfile {
            id: "1001".into(),
            skills: BTreeMap::new(),
            languages: BTreeSet::new(),
            queues: vec![],
        });
        a.state = state;
        a
    }

    #[test]
    fn legal_and_refused_transitions() {
        use AgentState as S;
        assert_eq!(agent(S::LoggedOut).check(Command::Login), Ok(Effect::Now));
        assert!(agent(S::Ready).check(Command::Login).is_err());
        assert!(agent(S::LoggedOut).check(Command::Ready).is_err());
        assert!(agent(S::LoggedOut).check(Command::Logout).is_err());
        assert!(agent(S::Ready).check(Command::Ready).is_err());
        assert!(agent(S::OnCall { call: 1 }).check(Command::Ready).is_err());
        assert_eq!(
            agent(S::WrapUp { call: 4 }).check(Command::Ready),
            Ok(Effect::EndWrapUp(4))
        );
        assert_eq!(
            agent(S::Reserved { call: 2 }).check(Command::NotReady),
            Ok(Effect::CancelOffer(2))
        );
        assert_eq!(
            agent(S::OnCall { call: 2 }).check(Command::Logout),
            Ok(Effect::Defer)
        );
        assert_eq!(
            agent(S::NotReady("break".into())).check(Command::NotReady),
            Ok(Effect::Now)
        );
    }

    #[test]
    fn state_names_match_the_schema() {
        assert_eq!(AgentState::Reserved { call: 1 }.name(), "reserved");
        assert_eq!(AgentState::NotReady("lunch".into()).reason(), Some("lunch"));
        assert_eq!(AgentState::WrapUp { call: 9 }.call(), Some(9));
    }
}
