//! ca-connector: the HTTP service and CLI behind an ERP's ChannelAdvisor settings screen.
//!
//! - `http/`: the edge — authentication, body rules, errors, routes, OpenAPI;
//! - `tokens/`: access tokens for connector jobs, and the exchange Test Connection shares;
//! - `connection_test/`: Test Connection and the scheduled health checks;
//! - `connect/`: Connect to ChannelAdvisor;
//! - `commands/`: the CLI;
//! - `service/`: settings, start-up, logging, metrics, live events.

pub mod commands;
pub mod connect;
pub mod connection_test;
pub mod fault;
pub mod http;
pub mod service;
pub mod startup;
pub mod tokens;

pub use service::settings::{Config, Settings};
pub use startup::Application;
