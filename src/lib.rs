//! ca-connector: the HTTP service and CLI behind an ERP's ChannelAdvisor settings screen.

pub mod auth;
pub mod body;
pub mod commands;
pub mod connect_flow;
pub mod connect_settings;
pub mod connection_test;
pub mod dev_secrets;
pub mod header_limit;
pub mod health_checks;
pub mod live_events;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod request_context;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod telemetry;
pub mod tokens;
pub mod verified_tokens;

pub use settings::{Config, Settings};
pub use startup::Application;
