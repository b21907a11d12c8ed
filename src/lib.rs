//! ccswitch: a call-centre switch. `engine` decides, the other modules move bytes and rows.

pub mod api;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod control;
pub mod engine;
pub mod kpi;
pub mod live;
pub mod media;
pub mod net;
pub mod proto;
pub mod sms;
pub mod store;
pub mod surveys;
pub mod telemetry;
