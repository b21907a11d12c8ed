//! ccswitch: a call-centre switch. `engine` decides, the other modules move bytes and rows.

// pub mod api; (integration)
// pub mod app; (integration)
pub mod clock;
pub mod config;
// pub mod control; (integration)
pub mod engine;
pub mod kpi;
pub mod media;
// pub mod net; (integration)
pub mod proto;
pub mod store;
pub mod telemetry;
