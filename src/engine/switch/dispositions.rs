//! Dispositions (issue 10 item 4): the agent classifies the call they handled, by feature
//! code (`*4` + number, answered like `*21`) or by `Command::Disposition` (agent page, API).
//!
//! Choices:
//! - The call is the agent's current or last answered call: while talking, in wrap-up, and
//!   after it until they answer the next one (a wrap-up timer that ran out does not lose
//!   the disposition). A `call_id` given with the command must be that call.
//! - The codes are those of the queue the agent answered the call from (the default list
//!   for a direct transfer to the agent).
//! - A code with `follow_up` or `complaint` opens a follow-up task for the agent, due after
//!   `[dispositions] follow_up_due_h` (24 h): `FollowUpOpened` right after the
//!   `DispositionSet`, reason `disposition:<name>` (the store keeps one task per call and
//!   reason, so setting the same code twice opens one task).
//! - Last wins: a later disposition replaces the call's disposition; the store keeps them all.

use super::Engine;
use crate::engine::dispositions::clean_note;
use crate::engine::record::Record;
use crate::engine::time::Millis;

/// The call a disposition applies to (per agent, replaced at each answer).
#[derive(Clone, Debug)]
pub(super) struct AgentLastCall {
    pub(super) call_id: String,
    pub(super) queue: Option<String>,
}

/// Why a disposition was not set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DispositionRefusal {
    /// The agent has answered no call since the switch started.
    NoCall,
    /// The command named another call than the agent's current/last one.
    NotTheAgentsCall,
    /// No code with this number or name for the call's queue.
    UnknownCode,
}

impl std::fmt::Display for DispositionRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DispositionRefusal::NoCall => "the agent has no call to classify",
            DispositionRefusal::NotTheAgentsCall => "not the agent's current or last call",
            DispositionRefusal::UnknownCode => "no such disposition code for the call's queue",
        })
    }
}

/// Which code: its number (feature code) or its name or number as text (command).
pub(super) enum CodeRef<'a> {
    Number(u8),
    Text(&'a str),
}

impl Engine {
    /// An agent answered `call_id` (from `queue`): their dispositions go to it from now on.
    pub(super) fn note_agent_call(&mut self, agent: &str, call_id: String, queue: Option<String>) {
        self.last_calls
            .insert(agent.to_string(), AgentLastCall { call_id, queue });
    }

    /// Sets the disposition of the agent's current/last call: `DispositionSet`, then
    /// `FollowUpOpened` when the code opens a task.
    pub(super) fn set_disposition(
        &mut self,
        now: Millis,
        agent: &str,
        call_id: Option<&str>,
        code: CodeRef<'_>,
        note: Option<&str>,
    ) -> Result<(), DispositionRefusal> {
        let res = self.try_set_disposition(now, agent, call_id, code, note);
        match &res {
            Ok(()) => self.stats.dispositions_set += 1,
            Err(e) => {
                self.stats.dispositions_refused += 1;
                tracing::info!(agent, error = %e, "disposition refused");
            }
        }
        res
    }

    fn try_set_disposition(
        &mut self,
        now: Millis,
        agent: &str,
        call_id: Option<&str>,
        code: CodeRef<'_>,
        note: Option<&str>,
    ) -> Result<(), DispositionRefusal> {
        let last = self
            .last_calls
            .get(agent)
            .ok_or(DispositionRefusal::NoCall)?
            .clone();
        if call_id.is_some_and(|id| id != last.call_id) {
            return Err(DispositionRefusal::NotTheAgentsCall);
        }
        let catalog = &self.cfg.queues.dispositions;
        let queue = last.queue.as_deref();
        let found = match code {
            CodeRef::Number(n) => catalog.by_number(queue, n),
            CodeRef::Text(t) => {
                let t = t.trim();
                catalog.by_name(queue, t).or_else(|| {
                    t.parse::<u8>()
                        .ok()
                        .and_then(|n| catalog.by_number(queue, n))
                })
            }
        };
        let code = found.ok_or(DispositionRefusal::UnknownCode)?.clone();
        let due_at = now.plus(catalog.follow_up_due_ms);
        tracing::info!(agent, call = %last.call_id, disposition = %code.name, "disposition set");
        self.persist(Record::DispositionSet {
            call_id: last.call_id.clone(),
            agent: agent.to_string(),
            at: now,
            code: code.number,
            name: code.name.clone(),
            resolved: code.resolved,
            queue: last.queue.clone(),
            note: clean_note(note),
        });
        if code.opens_task() {
            self.stats.follow_ups_opened_by_disposition += 1;
            self.persist(Record::FollowUpOpened {
                call_id: last.call_id,
                at: now,
                agent: Some(agent.to_string()),
                queue: last.queue,
                reason: format!("disposition:{}", code.name),
                due_at,
            });
        }
        Ok(())
    }
}
