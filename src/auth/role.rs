//! Roles (viewer < supervisor < admin, and the separate agent role of the agent desk) and the
//! named permissions a route asks for.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a user or an API token may do. Ordered: each role may do all a lower one may.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An agent signed in to the agent desk (`/agent`) with their extension and SIP password:
    /// the live feed and their own extension's desk (state, screen pop, dispositions), nothing
    /// else. Never a users.toml role or an API token's role.
    Agent,
    /// The wallboard only (issue 9: a wall screen's sign-in): live figures, masked numbers.
    Viewer,
    /// Also the reports, agent commands, call details, recordings, and unmasking one call
    /// (audited).
    Supervisor,
    /// Everything.
    Admin,
}

/// A named thing a route may require. `Role::allows` is the whole matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// The live wallboard: queues, agents, callers waiting (numbers masked).
    ViewLive,
    /// Queue, agent and system reports.
    ViewReports,
    /// Set an agent ready, on break, logged out.
    AgentCommands,
    /// One call's timeline, calls search.
    CallDetails,
    /// Listen to and download recordings.
    Recordings,
    /// See one call's number unmasked.
    Unmask,
    /// Have the switch ring one's own SIP phone to listen to, whisper in or barge into a
    /// call (needs a users.toml `sip_extension`).
    Monitor,
    /// Settings, tokens, the audit log.
    Admin,
    /// The agent desk for the caller's own extension only (the agent role): its state,
    /// the screen pop and history of its calls, dispositions on its calls. Supervisors do
    /// the same for any extension with `agent_commands` / `call_details`.
    AgentDesk,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Permission::ViewLive,
        Permission::ViewReports,
        Permission::AgentCommands,
        Permission::CallDetails,
        Permission::Recordings,
        Permission::Unmask,
        Permission::Monitor,
        Permission::Admin,
        Permission::AgentDesk,
    ];

    /// The lowest user role that has this permission (`agent_desk`: the agent role only).
    pub fn min_role(self) -> Role {
        match self {
            Permission::AgentDesk => Role::Agent,
            Permission::ViewLive => Role::Viewer,
            Permission::ViewReports
            | Permission::AgentCommands
            | Permission::CallDetails
            | Permission::Recordings
            | Permission::Unmask
            | Permission::Monitor => Role::Supervisor,
            Permission::Admin => Role::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ViewLive => "view_live",
            Permission::ViewReports => "view_reports",
            Permission::AgentCommands => "agent_commands",
            Permission::CallDetails => "call_details",
            Permission::Recordings => "recordings",
            Permission::Unmask => "unmask",
            Permission::Monitor => "monitor",
            Permission::Admin => "admin",
            Permission::AgentDesk => "agent_desk",
        }
    }
}

impl Role {
    /// The roles of users.toml users and API tokens (not `Agent`).
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Supervisor, Role::Admin];

    pub fn allows(self, p: Permission) -> bool {
        match (self, p) {
            // The agent sees the live feed (numbers masked) and their own desk, no more.
            (Role::Agent, p) => matches!(p, Permission::ViewLive | Permission::AgentDesk),
            // The desk is an agent's own; supervisors use agent_commands / call_details.
            (_, Permission::AgentDesk) => false,
            (r, p) => r >= p.min_role(),
        }
    }

    /// Every permission of this role, in `Permission::ALL` order.
    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.allows(*p))
            .collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Viewer => "viewer",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a role: use viewer, supervisor or admin"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matrix of issue 9: viewer sees the wallboard only; supervisor also reads reports,
    /// commands agents, sees calls, recordings and unmasks; admin everything.
    #[test]
    fn role_matrix() {
        use Permission::*;
        let expect: [(Role, &[Permission]); 4] = [
            (Role::Viewer, &[ViewLive]),
            (
                Role::Supervisor,
                &[
                    ViewLive,
                    ViewReports,
                    AgentCommands,
                    CallDetails,
                    Recordings,
                    Unmask,
                    Monitor,
                ],
            ),
            (
                Role::Admin,
                &[
                    ViewLive,
                    ViewReports,
                    AgentCommands,
                    CallDetails,
                    Recordings,
                    Unmask,
                    Monitor,
                    Admin,
                ],
            ),
            (Role::Agent, &[ViewLive, AgentDesk]),
        ];
        for (role, allowed) in expect {
            for p in Permission::ALL {
                assert_eq!(role.allows(p), allowed.contains(&p), "{role} {p:?}");
            }
            assert_eq!(role.permissions(), allowed.to_vec());
        }
        assert!(Role::Viewer < Role::Supervisor && Role::Supervisor < Role::Admin);
    }

    #[test]
    fn roles_parse_and_print() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().unwrap_err().contains("viewer"));
        // Agents sign in with their extension; no user or token has the agent role.
        assert!("agent".parse::<Role>().is_err());
        assert_eq!(
            serde_json::to_string(&Permission::AgentCommands).unwrap(),
            "\"agent_commands\""
        );
        for p in Permission::ALL {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
    }
}
