//! The supervisors' live view (issue 9): a read model fed by the engine's records and live
//! outputs (`model`, sans IO), the hub that owns it and feeds WebSocket clients (`hub`),
//! and the JSON shapes (`snapshot`).

mod apply;
mod day;
pub mod hub;
pub mod model;
pub mod prom;
pub mod snapshot;
mod today;
mod view;

pub use hub::{LiveHandle, LiveInput, LiveSender};
pub use model::{LiveModel, ModelConfig};
pub use snapshot::{Section, Snapshot};

#[cfg(test)]
mod tests;

/// Starts the live view for a loaded config: the model (targets from wallboard.toml, today
/// in the IVR's time zone) seeded from the store once, and its hub.
pub async fn start(
    config: &crate::config::Config,
    store: &crate::store::Store,
    clock: crate::clock::Clock,
) -> (LiveSender, LiveHandle) {
    let cfg = ModelConfig {
        time_zone: config.ivr.time_zone(),
        wallboard: (*config.wallboard).clone(),
        queues: config.queues.clone(),
        agents: config.agents.clone(),
    };
    let model = hub::seeded_model(cfg, store, clock.now()).await;
    hub::spawn(model, clock)
}
