//! The running service: settings (flags and environment → `Config`), start-up, the data
//! directory's generated secrets, logging, metrics, and the live-events reader.

pub mod claim_pace;
pub mod connect_settings;
pub mod dev_secrets;
pub mod live_events;
pub mod metrics;
pub mod settings;
pub mod telemetry;
