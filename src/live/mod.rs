//! The supervisors' live view (issue 9): a read model fed by the engine's records and live
//! outputs (`model`, sans IO), the hub that owns it and feeds WebSocket clients (`hub`),
//! and the JSON shapes (`snapshot`).

mod day;
pub mod model;
pub mod snapshot;
mod today;
mod view;

pub use model::{LiveModel, ModelConfig};
pub use snapshot::{Section, Snapshot};

#[cfg(test)]
mod tests;
