//! Black-box tests of the whole service: the real app on a real port, a real SQLite file and,
//! when TEST_DATABASE_URL points at PostgreSQL, a real PostgreSQL database of its own per test.
//! Upstream is faked over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test and measuring code: a panic is a failed run

mod helpers;

mod architecture;
mod auth;
mod browser;
mod browser_contract;
mod browser_driver;
mod cli;
mod connect;
mod connect_contract;
mod connection;
mod credentials;
mod docs;
mod events;
mod first_hour;
mod fleet;
mod foundation;
mod memory;
mod promises;
mod rotate_keys;
mod rotation;
mod schema_equivalence;
mod secrets;
mod simulator;
mod soap;
mod token_store;
mod tokens;
mod webhooks;

/// How long the service reuses a database read from memory.
pub fn read_window() -> std::time::Duration {
    schema::visibility::SETTLE
}
