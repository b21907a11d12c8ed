//! The IVR: a validated menu graph (`graph`) and a sans-IO interpreter per call (`session`).
//!
//! The engine feeds a session digits, "prompt finished" events and timeouts, and drains
//! `IvrAction`s: prompts to play, steps to record, variables to keep, and the final hang-up.

pub mod graph;
pub mod session;

pub use graph::{GraphError, InputSpec, IvrGraph, Node, WeeklyHours};
pub use session::{IvrAction, IvrSession};
