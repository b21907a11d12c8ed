//! What the engine tells the live read model (`crate::live`) beyond its records: figures only
//! the ACD knows (per-queue waiting calls and agents by state) and the caller's language.
//! Queue figures are emitted only when they changed since the last emission for that queue,
//! and only computed after an input that made the ACD report something.

use super::time::Millis;

/// Agents serving a queue, by state (an agent serving two queues counts in both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentCounts {
    /// Any state but logged out.
    pub logged_in: u32,
    pub ready: u32,
    pub reserved: u32,
    pub on_call: u32,
    pub wrap_up: u32,
    pub not_ready: u32,
}

/// One queue as the ACD sees it now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Calls in the queue not yet connected to an agent (ringing one included).
    pub waiting: u32,
    /// When the longest-waiting of them entered this queue.
    pub longest_wait_since: Option<Millis>,
    pub agents: AgentCounts,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveEvent {
    /// A queue's figures changed.
    QueueFigures { queue: String, counts: QueueCounts },
    /// The call is entering `queue`; the caller speaks `language` (the `CallQueued` record
    /// follows).
    CallerQueued {
        call_id: String,
        queue: String,
        language: String,
    },
}

/// The last figures emitted per queue (index = ACD queue index), and a scratch buffer, so
/// a check with nothing changed allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct LiveFigures {
    pub(crate) dirty: bool,
    pub(crate) last: Vec<QueueCounts>,
    pub(crate) scratch: Vec<QueueCounts>,
}
